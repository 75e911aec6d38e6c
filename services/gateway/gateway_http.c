/*  =========================================================================
    gateway_http - request/response helpers every handler uses

    Bodies are read only after their Content-Length has been checked against
    the route's limit (civetweb's max_request_size bounds headers only), and
    parsed with duplicate keys rejected and nesting limited. Every answer is
    the JSON envelope of DESIGN.md with no-store / nosniff headers.
    =========================================================================
*/
#include "gateway.h"
#include "gateway_fixture.h"
#include "gateway_json.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>

//  Deeper bodies are not meant for us; jansson's own limit (2048) is far
//  above anything a route needs and costs stack on every walk.
#define GATEWAY_JSON_DEPTH_MAX 32

//  Bodies up to this size are read into the stack, so the sensor hot path
//  allocates nothing for them.
#define GATEWAY_STACK_BODY 8192

//  --------------------------------------------------------------------------
//  true when the JSON text nests no deeper than depth levels of containers.
//  Counted in the text, before jansson sees it: jansson parses recursively,
//  and a civetweb worker's stack (about 100 KiB in Debian's build) ran out
//  at some 700 levels, far below jansson's own limit (2048), so a 4 KiB
//  reading body of [[[[... killed the gateway. Brackets inside strings do
//  not count. Malformed text is jansson's to reject: jansson stops at the
//  first error, so it never nests deeper than the count up to there.
static bool
s_text_depth_ok (const char *text, size_t size, int depth)
{
    int level = 0;
    bool string = false;
    for (size_t index = 0; index < size; index++) {
        char c = text[index];
        if (string) {
            if (c == '\\')
                index++; //  the escaped character, whatever it is
            else if (c == '"')
                string = false;
        } else if (c == '"')
            string = true;
        else if (c == '[' || c == '{') {
            if (++level > depth)
                return false;
        } else if ((c == ']' || c == '}') && --level < 0)
            return true;
    }
    return true;
}

static const char *
s_header (struct mg_connection *conn, const char *name)
{
    const char *value = mg_get_header (conn, name);
    return value ? value : "";
}

//  --------------------------------------------------------------------------
//  Reads the raw body, at most max bytes, into *buffer (stack_buffer when
//  it fits, else malloc'd: free it if it is not stack_buffer). On error it
//  answers and returns -1 with the status it sent in *status.
int
gateway_http_read_body (struct mg_connection *conn, size_t max, char *stack_buffer,
                        size_t stack_size, char **buffer, size_t *size, int *status)
{
    *status = 0;
    *buffer = NULL;
    *size = 0;
    const struct mg_request_info *info = mg_get_request_info (conn);
    long long length = info ? info->content_length : -1;
    //  Chunked bodies have no length we could check before reading them.
    if (length < 0 || *s_header (conn, "Transfer-Encoding")) {
        *status =
            gateway_http_send_error (conn, 411, "length_required", "Content-Length is required", 0);
        return -1;
    }
    if ((unsigned long long)length > max) {
        *status =
            gateway_http_send_error (conn, 413, "body_too_large", "Request body too large", 0);
        return -1;
    }
    if (length == 0) {
        *status = gateway_http_send_error (conn, 400, "invalid_json", "Request body is empty", 0);
        return -1;
    }
    //  One byte more than the body, so a caller may terminate it.
    char *data = (size_t)length < stack_size ? stack_buffer : malloc ((size_t)length + 1);
    if (!data) {
        *status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
        return -1;
    }
    //  mg_read blocks at most request_timeout_ms per call, and a short
    //  read only happens when the peer closed or stalled past it.
    size_t got = 0;
    while (got < (size_t)length) {
        int rc = mg_read (conn, data + got, (size_t)length - got);
        if (rc <= 0)
            break;
        got += (size_t)rc;
    }
    if (got < (size_t)length) {
        *status = gateway_http_send_error (conn, 400, "incomplete_body",
                                           "Request body shorter than Content-Length", 0);
        if (data != stack_buffer)
            free (data);
        return -1;
    }
    data[got] = 0;
    *buffer = data;
    *size = got;
    return 0;
}

//  Parses a body read by gateway_http_read_body as a JSON object; on error
//  answers and returns NULL with the status it sent in *status.
json_t *
gateway_http_parse_json (struct mg_connection *conn, const char *buffer, size_t size, int *status)
{
    *status = 0;
    if (!s_text_depth_ok (buffer, size, GATEWAY_JSON_DEPTH_MAX)) {
        *status =
            gateway_http_send_error (conn, 400, "invalid_json", "Request body nests too deeply", 0);
        return NULL;
    }
    json_error_t error;
    json_t *body = json_loadb (buffer, size, JSON_REJECT_DUPLICATES, &error);
    if (!body)
        *status = gateway_http_send_error (conn, 400, "invalid_json",
                                           "Request body is not valid JSON", 0);
    else if (!json_is_object (body)) {
        *status = gateway_http_send_error (conn, 400, "invalid_json",
                                           "Request body must be a JSON object", 0);
        json_decref (body);
        body = NULL;
    }
    return body;
}

//  Reads the body as a JSON object; on error answers and returns NULL with
//  the status it sent in *status.
json_t *
gateway_http_read_json_status (struct mg_connection *conn, size_t max, int *status)
{
    int dummy;
    if (!status)
        status = &dummy;
    char stack_buffer[GATEWAY_STACK_BODY + 1];
    char *buffer;
    size_t size;
    if (gateway_http_read_body (conn, max, stack_buffer, sizeof stack_buffer, &buffer, &size,
                                status) != 0)
        return NULL;
    json_t *body = gateway_http_parse_json (conn, buffer, size, status);
    if (buffer != stack_buffer)
        free (buffer);
    return body;
}

json_t *
gateway_http_read_json (struct mg_connection *conn, size_t max)
{
    return gateway_http_read_json_status (conn, max, NULL);
}

//  --------------------------------------------------------------------------
//  The Date header of the current second, formatted once per second per
//  thread rather than once per response.
static void
s_date (char out[40])
{
    static __thread time_t cached_second = 0;
    static __thread char cached[40];
    time_t now = time (NULL);
    if (now != cached_second) {
        struct tm tm;
        gmtime_r (&now, &tm);
        strftime (cached, sizeof cached, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached_second = now;
    }
    memcpy (out, cached, 40);
}

//  Whether the client may send another request on this connection, the way
//  civetweb decides it after the handler returns (it closes otherwise, and
//  the client sees that after our Content-Length worth of body).
static bool
s_keep_alive (const struct mg_request_info *info, struct mg_connection *conn)
{
    const char *connection = mg_get_header (conn, "Connection");
    if (connection && strcasestr (connection, "close"))
        return false;
    if (info && info->http_version && streq (info->http_version, "1.1"))
        return true;
    return connection && strcasestr (connection, "keep-alive");
}

//  value as "%zu" / "%d" would write it (at most 20 / 11 bytes, no NUL);
//  returns the length.
static size_t
s_decimal_size (size_t value, char *out)
{
    char digits[24];
    size_t at = sizeof digits;
    do {
        digits[--at] = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    memcpy (out, digits + at, sizeof digits - at);
    return sizeof digits - at;
}

static size_t
s_decimal (int value, char *out)
{
    if (value >= 0)
        return s_decimal_size ((size_t)value, out);
    out[0] = '-';
    return 1 + s_decimal_size ((size_t)(-(long long)value), out + 1);
}

//  --------------------------------------------------------------------------
//  Cross-origin access (CORS): none, unless the origin is on the list
//  gateway_http_cors_configure was given (config cors_origins). civetweb's
//  own CORS answers every preflight with "*" and whatever was asked for;
//  gateway_http_start switches it off, s_begin_request answers preflights,
//  gateway_http_send and gateway_http_cors_headers_add mark answers.
//  Never Access-Control-Allow-Credentials: cross-origin clients sign in
//  with Authorization: Bearer, the session cookie (SameSite=Strict) is the
//  dashboard's, which is served from the gateway's own origin.

#define CORS_ORIGINS_MAX 16
#define CORS_ORIGIN_SIZE 256 //  "https://" + a DNS name (253) + ":65535" fits

//  What the API takes and gives, for a cross-origin client.
#define CORS_METHODS "GET, POST, PUT, PATCH, DELETE"
#define CORS_REQUEST_HEADERS                                                                       \
    "Authorization, Content-Type, Idempotency-Key, If-None-Match, X-Requested-With"
#define CORS_EXPOSED_HEADERS "Retry-After, Content-Disposition, ETag"
#define CORS_MAX_AGE_S "600"

static struct {
    char origins[CORS_ORIGINS_MAX][CORS_ORIGIN_SIZE]; //  allowed, lower case
    _Atomic int count;                                //  how many; 0: no cross-origin access
} s_cors;

//  true when text is an origin as a browser writes it: http or https,
//  a host of letters, digits, '.', '-' (or an IPv6 literal in brackets),
//  an optional port, nothing after it (no path, not even "/").
static bool
s_cors_origin_valid (const char *text)
{
    const char *host = strncmp (text, "https://", 8) == 0  ? text + 8
                       : strncmp (text, "http://", 7) == 0 ? text + 7
                                                           : NULL;
    if (!host || !*host)
        return false;
    const char *cursor = host;
    if (*cursor == '[') {
        size_t digits = strspn (cursor + 1, "0123456789abcdefABCDEF:.");
        cursor += 1 + digits;
        if (digits < 2 || *cursor++ != ']')
            return false;
    } else {
        cursor +=
            strspn (cursor, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-");
        if (cursor == host)
            return false;
    }
    if (*cursor == ':') {
        size_t digits = strspn (cursor + 1, "0123456789");
        if (digits < 1 || digits > 5 || atoi (cursor + 1) > 65535)
            return false;
        cursor += 1 + digits;
    }
    return *cursor == 0;
}

int
gateway_http_cors_configure (const char *origins)
{
    atomic_store (&s_cors.count, 0);
    int count = 0;
    const char *cursor = origins ? origins : "";
    while (*cursor) {
        cursor += strspn (cursor, ", \t");
        size_t length = strcspn (cursor, ", \t");
        if (!length)
            break;
        char origin[CORS_ORIGIN_SIZE] = "";
        if (length < CORS_ORIGIN_SIZE) {
            memcpy (origin, cursor, length);
            origin[length] = 0;
        }
        if (!s_cors_origin_valid (origin)) {
            zsys_error ("gateway http - cors_origins: '%.*s' is not an origin "
                        "(http:// or https://, a host, an optional port, no path, no '*')",
                        (int)(length < 300 ? length : 300), cursor);
            return -1;
        }
        if (count == CORS_ORIGINS_MAX) {
            zsys_error ("gateway http - cors_origins: more than %d origins", CORS_ORIGINS_MAX);
            return -1;
        }
        for (size_t index = 0; index < length; index++)
            s_cors.origins[count][index] = (char)tolower ((unsigned char)origin[index]);
        s_cors.origins[count][length] = 0;
        count++;
        cursor += length;
    }
    atomic_store (&s_cors.count, count);
    return 0;
}

//  The allowed origin the request comes from, or NULL.
static const char *
s_cors_allowed (struct mg_connection *conn)
{
    int count = atomic_load (&s_cors.count);
    const char *origin = count ? mg_get_header (conn, "Origin") : NULL;
    for (int index = 0; origin && index < count; index++)
        if (strcasecmp (origin, s_cors.origins[index]) == 0)
            return s_cors.origins[index];
    return NULL;
}

//  The CORS header lines of an answer to this request, into out: none
//  without a list; with one, Vary: Origin always (the answer depends on
//  it), and the origin and the headers it may read when it is allowed.
static size_t
s_cors_headers (struct mg_connection *conn, char *out, size_t size)
{
    out[0] = 0;
    if (!atomic_load (&s_cors.count))
        return 0;
    const char *allowed = s_cors_allowed (conn);
    int length = allowed ? snprintf (out, size,
                                     "Vary: Origin\r\nAccess-Control-Allow-Origin: %s\r\n"
                                     "Access-Control-Expose-Headers: " CORS_EXPOSED_HEADERS "\r\n",
                                     allowed)
                         : snprintf (out, size, "Vary: Origin\r\n");
    return length > 0 && (size_t)length < size ? (size_t)length : 0;
}

void
gateway_http_cors_headers_add (struct mg_connection *conn)
{
    if (!atomic_load (&s_cors.count))
        return;
    mg_response_header_add (conn, "Vary", "Origin", -1);
    const char *allowed = s_cors_allowed (conn);
    if (allowed) {
        mg_response_header_add (conn, "Access-Control-Allow-Origin", allowed, -1);
        mg_response_header_add (conn, "Access-Control-Expose-Headers", CORS_EXPOSED_HEADERS, -1);
    }
}

//  Bodies up to this size go out in the same write as the headers.
#define GATEWAY_SEND_INLINE 8192

int
gateway_http_send (struct mg_connection *conn, int status, const char *content_type,
                   const char *extra_headers, const void *body, size_t size)
{
    //  One write for status line, headers and body: civetweb's
    //  mg_response_header_send writes every header line separately, which
    //  with TCP_NODELAY is one packet each and was 40% of the gateway's CPU
    //  at 64 connections (BENCH.md). The handler's return value still gives
    //  civetweb the status.
    //  Each extra line must end in CRLF; a last one without gets it here.
    const char *extra = extra_headers ? extra_headers : "";
    size_t extra_length = strlen (extra);
    const char *extra_end = extra_length && extra[extra_length - 1] != '\n' ? "\r\n" : "";
    const struct mg_request_info *info = mg_get_request_info (conn);
    char date[40];
    s_date (date);
    char buffer[1024 + GATEWAY_SEND_INLINE];
    //  What snprintf of "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: %s\r\n"
    //  "Content-Type: %s\r\nContent-Length: %zu\r\n...%s%s\r\n" wrote, put
    //  together by hand: vfprintf was a visible share of a reading's CPU.
    char status_text[16], size_text[24];
    size_t status_length = s_decimal (status, status_text);
    size_t size_length = s_decimal_size (size, size_text);
    const char *reason = mg_get_response_code_text (conn, status);
    const char *connection = s_keep_alive (info, conn) ? "keep-alive" : "close";
    char cors[CORS_ORIGIN_SIZE + 160];
    size_t cors_length = s_cors_headers (conn, cors, sizeof cors);
    const struct {
        const char *text;
        size_t length;
    } parts[] = {{"HTTP/1.1 ", 9},
                 {status_text, status_length},
                 {" ", 1},
                 {reason, strlen (reason)},
                 {"\r\nDate: ", 8},
                 {date, strlen (date)},
                 {"\r\nConnection: ", 14},
                 {connection, strlen (connection)},
                 {"\r\nContent-Type: ", 16},
                 {content_type, strlen (content_type)},
                 {"\r\nContent-Length: ", 18},
                 {size_text, size_length},
                 {"\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n", 60},
                 {cors, cors_length},
                 {extra, extra_length},
                 {extra_end, strlen (extra_end)},
                 {"\r\n", 2}};
    size_t total = 0;
    for (size_t index = 0; index < sizeof parts / sizeof parts[0]; index++)
        total += parts[index].length;
    if (total >= 1024) {
        //  Headers that long are a bug of ours: a 500, never a cut header.
        zsys_error ("gateway http - response headers too long for status %d", status);
        int length = snprintf (buffer, 1024,
                               "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n"
                               "Content-Length: 0\r\n\r\n");
        mg_write (conn, buffer, (size_t)length);
        return 500;
    }
    size_t length = 0;
    for (size_t index = 0; index < sizeof parts / sizeof parts[0]; index++) {
        memcpy (buffer + length, parts[index].text, parts[index].length);
        length += parts[index].length;
    }
    if (size <= GATEWAY_SEND_INLINE) {
        if (size)
            memcpy (buffer + length, body, size);
        mg_write (conn, buffer, length + size);
    } else {
        mg_write (conn, buffer, length);
        mg_write (conn, body, size);
    }
    return status;
}

//  Sends a JSON value, stealing it.
static int
s_send_json (struct mg_connection *conn, int status, json_t *value, int retry_after_s)
{
    char *text = value ? json_dumps (value, JSON_COMPACT | JSON_REAL_PRECISION (17)) : NULL;
    json_decref (value);
    if (!text) {
        static const char failed[] = "{\"success\":false,\"message\":\"Internal "
                                     "error\",\"error\":{\"code\":\"internal_error\"}}";
        return gateway_http_send (conn, 500, "application/json", NULL, failed, sizeof failed - 1);
    }
    char extra[64] = "";
    if (retry_after_s > 0)
        snprintf (extra, sizeof extra, "Retry-After: %d\r\n", retry_after_s);
    gateway_http_send (conn, status, "application/json", extra, text, strlen (text));
    free (text);
    return status;
}

int
gateway_http_send_data (struct mg_connection *conn, int status, const char *message, json_t *data)
{
    json_t *envelope = json_object ();
    if (envelope) {
        json_object_set_new (envelope, "success", json_true ());
        if (message)
            json_object_set_new (envelope, "message", json_string (message));
        if (data)
            json_object_set (envelope, "data", data);
    }
    json_decref (data);
    return s_send_json (conn, status, envelope, 0);
}

//  {"success":false,"message":…,"error":{"code":…[,"field":…]}} through
//  gateway_json, the writer of every other answer, byte for byte as
//  jansson wrote it.
static int
s_send_error (struct mg_connection *conn, int status, const char *code, const char *field,
              const char *message, int retry_after_s)
{
    //  jansson refused text that is not UTF-8 (a 500); so do we
    const char *texts[] = {message, code, field};
    for (int index = 0; index < 3; index++) {
        json_t *probe = texts[index] ? json_string (texts[index]) : json_null ();
        if (!probe)
            return s_send_json (conn, status, NULL, 0);
        json_decref (probe);
    }
    char storage[512];
    gateway_json_t text;
    gateway_json_init (&text, storage, sizeof storage);
    GATEWAY_JSON_LITERAL (&text, "{\"success\":false,\"message\":");
    gateway_json_string (&text, message ? message : "");
    GATEWAY_JSON_LITERAL (&text, ",\"error\":{\"code\":");
    gateway_json_string (&text, code ? code : "error");
    if (field) {
        GATEWAY_JSON_LITERAL (&text, ",\"field\":");
        gateway_json_string (&text, field);
    }
    GATEWAY_JSON_LITERAL (&text, "}}");
    if (text.failed) {
        gateway_json_release (&text);
        return s_send_json (conn, status, NULL, 0); //  the fixed 500
    }
    char extra[64] = "";
    if (retry_after_s > 0)
        snprintf (extra, sizeof extra, "Retry-After: %d\r\n", retry_after_s);
    gateway_http_send (conn, status, "application/json", extra, text.data, text.size);
    gateway_json_release (&text);
    return status;
}

int
gateway_http_send_error (struct mg_connection *conn, int status, const char *code,
                         const char *message, int retry_after_s)
{
    return s_send_error (conn, status, code, NULL, message, retry_after_s);
}

int
gateway_http_send_field_error (struct mg_connection *conn, int status, const char *code,
                               const char *field, const char *message)
{
    return s_send_error (conn, status, code, field ? field : "", message, 0);
}

int
gateway_http_send_rate_limited (struct mg_connection *conn, int retry_after_s)
{
    return gateway_http_send_error (conn, 429, "rate_limited", "Too many attempts, retry later",
                                    retry_after_s);
}

//  --------------------------------------------------------------------------
//  civetweb calls it first for every request; > 0: answered with that status.
//  A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method)
//  is answered here for every path: 204 with what the API allows to an
//  origin on the list, 403 to any other. Anything else goes on to the routes.
static int
s_begin_request (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info || !info->request_method || !streq (info->request_method, "OPTIONS") ||
        !mg_get_header (conn, "Origin") || !mg_get_header (conn, "Access-Control-Request-Method"))
        return 0;
    const char *allowed = s_cors_allowed (conn);
    if (!allowed)
        return gateway_http_send_error (conn, 403, "origin_not_allowed",
                                        "Cross-origin requests from this origin are not allowed",
                                        0);
    char date[40];
    s_date (date);
    char head[CORS_ORIGIN_SIZE + 512];
    int length = snprintf (head, sizeof head,
                           "HTTP/1.1 204 No Content\r\nDate: %s\r\nConnection: %s\r\n"
                           "Vary: Origin\r\nAccess-Control-Allow-Origin: %s\r\n"
                           "Access-Control-Allow-Methods: " CORS_METHODS "\r\n"
                           "Access-Control-Allow-Headers: " CORS_REQUEST_HEADERS "\r\n"
                           "Access-Control-Max-Age: " CORS_MAX_AGE_S "\r\n\r\n",
                           date, s_keep_alive (info, conn) ? "keep-alive" : "close", allowed);
    if (length > 0 && (size_t)length < sizeof head)
        mg_write (conn, head, (size_t)length);
    return 204;
}

static int
s_authorized (struct mg_connection *conn, void *cbdata)
{
    (void)conn;
    (void)cbdata;
    return 1;
}

struct mg_context *
gateway_http_start (const char *listening, int threads, int request_timeout_ms, void *cbdata)
{
    char threads_text[16], timeout_text[16], keep_alive_text[16];
    snprintf (threads_text, sizeof threads_text, "%d", threads);
    snprintf (keep_alive_text, sizeof keep_alive_text, "%d", GATEWAY_HTTP_KEEP_ALIVE_MS);
    snprintf (timeout_text, sizeof timeout_text, "%d", request_timeout_ms);
    //  No document_root: the dashboard is served from a handler, which keeps
    //  civetweb's file server (CVE-2025-55763) out of reach.
    const char *options[] = {"listening_ports", listening, "num_threads", threads_text,
                             //  No CORS of civetweb's (it allows any origin, method
                             //  and header): ours is s_begin_request's.
                             "access_control_allow_origin", "", "access_control_allow_methods", "",
                             "access_control_allow_headers", "",
                             //  Bounds the whole request (headers and body) of a
                             //  slow sender, not each read: civetweb answers 400
                             //  and closes when it runs out (BENCH.md).
                             "request_timeout_ms", timeout_text, "enable_keep_alive", "yes",
                             //  An idle client holds a worker (HAProxy in front
                             //  holds none: deploy/up).
                             "keep_alive_timeout_ms", keep_alive_text,
                             //  Headers beyond this: civetweb answers 400 and closes.
                             "max_request_size", "16384", "enable_directory_listing", "no",
                             //  Without it a response's writes meet the client's
                             //  delayed ACK: 44 ms per reading (BENCH.md).
                             "tcp_nodelay", "1", NULL};
    mg_init_library (0);
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    callbacks.begin_request = s_begin_request;
    struct mg_context *context = mg_start (&callbacks, cbdata, options);
    //  Without an authorization handler civetweb looks for a .htpasswd
    //  beside the "file" of every request: with no document root that is a
    //  stat ("/.htpasswd") per request, 0.8 % of all CPU samples at 64
    //  connections, and a file anyone with root could drop in to put every
    //  route behind digest authentication. Our routes authenticate
    //  themselves; "/" as a pattern covers every URI.
    if (context)
        mg_set_auth_handler (context, "/", s_authorized, NULL);
    return context;
}

//  ==========================================================================
//  Self test: a real civetweb server and a raw socket client, so the limits
//  are checked the way a misbehaving client would hit them.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define TEST_PORT 3101

static int
s_echo_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    json_t *body = gateway_http_read_json (conn, 1024);
    if (!body)
        return 1;
    return gateway_http_send_data (conn, 200, "ok", body);
}

//  Answers who the request came from, as the limits and cookies see it.
static int
s_whoami_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    json_t *data = json_pack ("{s:s, s:b}", "ip", gateway_http_client_ip (conn), "https",
                              gateway_http_client_https (conn));
    return gateway_http_send_data (conn, 200, "ok", data);
}

static bool
s_depth (const char *text, int depth)
{
    return s_text_depth_ok (text, strlen (text), depth);
}

//  The same with the user routes' body limit.
static int
s_echo_large_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    json_t *body = gateway_http_read_json (conn, GATEWAY_BODY_MAX);
    if (!body)
        return 1;
    return gateway_http_send_data (conn, 200, "ok", body);
}

//  A raw connection to port on 127.0.0.1 that sent text; -1 if refused.
static int
s_open (int port, const char *text)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct timeval timeout = {5, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t)port);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    if (connect (fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close (fd);
        return -1;
    }
    if (text)
        send (fd, text, strlen (text), MSG_NOSIGNAL);
    return fd;
}

//  ms until a GET /echo on a fresh connection is answered; the status in
//  *status.
static int64_t
s_timed_get (int port, int *status)
{
    int64_t started = gateway_time_now_ms ();
    int fd = s_open (port, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 2\r\n\r\n{}");
    assert (fd >= 0);
    char reply[512] = "";
    ssize_t got = recv (fd, reply, sizeof reply - 1, 0);
    reply[got > 0 ? got : 0] = 0;
    *status = 0;
    sscanf (reply, "HTTP/1.%*d %d", status);
    close (fd);
    return gateway_time_now_ms () - started;
}

//  Slow senders (slowloris) and oversized headers, against civetweb as the
//  gateway starts it.
static void
s_slow_clients_check (bool verbose)
{
    //  40 slow senders, fewer than the workers: others are served at once,
    //  and each slow one is cut off after request_timeout_ms.
    struct mg_context *http = gateway_http_start ("127.0.0.1:3107", 48, 1500, NULL);
    assert (http);
    mg_set_request_handler (http, "/echo", s_echo_handler, NULL);
    int slow[40];
    for (int index = 0; index < 40; index++) {
        slow[index] = s_open (3107, "POST /echo HTTP/1.1\r\nHost: x\r\n");
        assert (slow[index] >= 0);
    }
    zclock_sleep (200);
    for (int round = 0; round < 3; round++)
        for (int index = 0; index < 40; index++)
            send (slow[index], "X", 1, MSG_NOSIGNAL); //  a byte now and then
    int status;
    int64_t waited = s_timed_get (3107, &status);
    if (verbose)
        printf ("\n40 slow clients, 48 workers: served in %" PRId64 " ms\n", waited);
    assert (status == 200 && waited < 500);
    //  Each slow one: 400 or closed, soon after the 1.5 s since it began.
    int64_t started = gateway_time_now_ms ();
    for (int index = 0; index < 40; index++) {
        char reply[256];
        ssize_t got = recv (slow[index], reply, sizeof reply - 1, 0);
        assert (got >= 0); //  not the 5 s receive timeout
        if (got > 0) {
            reply[got] = 0;
            assert (strstr (reply, " 400 ") || strstr (reply, " 408 "));
        }
        close (slow[index]);
    }
    assert (gateway_time_now_ms () - started < 2500);

    //  Headers beyond max_request_size (16 KiB): civetweb answers 400 (it
    //  has no 431) and closes, without calling a handler.
    size_t size = 20000;
    char *big = (char *)malloc (size + 128);
    assert (big);
    int length = snprintf (big, size + 128, "GET /echo HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset (big + length, 'a', size);
    strcpy (big + length + size, "\r\n\r\n");
    int fd = s_open (3107, big);
    free (big);
    char reply[512];
    ssize_t got = recv (fd, reply, sizeof reply - 1, 0);
    assert (got > 0);
    reply[got] = 0;
    if (verbose)
        printf ("oversized headers: %.40s\n", reply);
    assert (strstr (reply, " 400 ") || strstr (reply, " 413 ") || strstr (reply, " 431 "));
    close (fd);
    assert (s_timed_get (3107, &status) < 500 && status == 200);
    mg_stop (http);

    //  More slow senders than workers: the others wait, but no longer than
    //  request_timeout_ms, the bound on holding a worker.
    http = gateway_http_start ("127.0.0.1:3108", 4, 1000, NULL);
    assert (http);
    mg_set_request_handler (http, "/echo", s_echo_handler, NULL);
    //  Four hold every worker; two more wait in the queue ahead of ours.
    for (int index = 0; index < 6; index++)
        slow[index] = s_open (3108, "POST /echo HTTP/1.1\r\nHost: x\r\n");
    zclock_sleep (100);
    waited = s_timed_get (3108, &status);
    if (verbose)
        printf ("6 slow clients, 4 workers: served in %" PRId64 " ms\n", waited);
    assert (status == 200 && waited >= 500 && waited < 2500);
    for (int index = 0; index < 6; index++)
        close (slow[index]);
    mg_stop (http);
}

//  One request with Connection: close to port; the whole reply into reply.
static int
s_cors_exchange (int port, const char *method, const char *origin, const char *extra, char *reply,
                 size_t size)
{
    char request[1024];
    snprintf (request, sizeof request,
              "%s /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: %s\r\n%s%s", method,
              origin, extra,
              streq (method, "POST") ? "Content-Length: 8\r\n\r\n{\"a\":12}" : "\r\n");
    return gateway_fixture_exchange (port, request, reply, size);
}

#define S_PREFLIGHT                                                                                \
    "Access-Control-Request-Method: DELETE\r\n"                                                    \
    "Access-Control-Request-Headers: authorization, x-evil\r\n"

//  No cross-origin access unless cors_origins names the origin; then its
//  own origin, exactly, and never credentials.
static void
s_cors_check (bool verbose)
{
    assert (gateway_http_cors_configure (NULL) == 0);
    struct mg_context *http = gateway_http_start ("127.0.0.1:0", 4, 2000, NULL);
    assert (http);
    mg_set_request_handler (http, "/echo", s_echo_handler, NULL);
    struct mg_server_port ports[2];
    assert (mg_get_server_ports (http, 2, ports) >= 1);
    int port = ports[0].port;
    char reply[4096];

    //  The default: a preflight is refused (civetweb's own answered 200
    //  with "*" and echoed any method and headers asked for), and answers
    //  say nothing of CORS.
    int status = s_cors_exchange (port, "OPTIONS", "https://app.example.test", S_PREFLIGHT, reply,
                                  sizeof reply);
    if (verbose)
        printf ("\n%s\n", reply);
    assert (status == 403 && strstr (reply, "\"origin_not_allowed\""));
    assert (!strcasestr (reply, "Access-Control-") && !strcasestr (reply, "Vary:"));
    status = s_cors_exchange (port, "POST", "https://app.example.test", "", reply, sizeof reply);
    assert (status == 200 && !strcasestr (reply, "Access-Control-") &&
            !strcasestr (reply, "Vary:"));

    //  A list: its origins get theirs, exactly; others nothing.
    assert (gateway_http_cors_configure ("https://app.example.test, http://localhost:5173") == 0);
    status = s_cors_exchange (port, "OPTIONS", "https://app.example.test", S_PREFLIGHT, reply,
                              sizeof reply);
    if (verbose)
        printf ("%s\n", reply);
    assert (status == 204);
    assert (strstr (reply, "\r\nAccess-Control-Allow-Origin: https://app.example.test\r\n"));
    assert (strstr (reply, "\r\nVary: Origin\r\n"));
    assert (strstr (reply, "\r\nAccess-Control-Allow-Methods: GET, POST, PUT, PATCH, DELETE\r\n"));
    assert (strstr (reply, "\r\nAccess-Control-Allow-Headers: Authorization, Content-Type, "
                           "Idempotency-Key, If-None-Match, X-Requested-With\r\n"));
    assert (strstr (reply, "\r\nAccess-Control-Max-Age: 600\r\n"));
    assert (!strcasestr (reply, "Credentials") && !strcasestr (reply, "x-evil") &&
            !strchr (reply, '*'));
    status = s_cors_exchange (port, "OPTIONS", "http://localhost:5173", S_PREFLIGHT, reply,
                              sizeof reply);
    assert (status == 204 &&
            strstr (reply, "\r\nAccess-Control-Allow-Origin: http://localhost:5173\r\n"));
    //  Host names are case-blind; the answer names the origin as listed.
    status = s_cors_exchange (port, "OPTIONS", "https://App.Example.TEST", S_PREFLIGHT, reply,
                              sizeof reply);
    assert (status == 204 &&
            strstr (reply, "\r\nAccess-Control-Allow-Origin: https://app.example.test\r\n"));
    const char *strangers[] = {"https://evil.example.test",
                               "https://app.example.test.evil.test",
                               "http://app.example.test",
                               "https://app.example.test:8443",
                               "null",
                               "https://app.example.test/",
                               "*"};
    for (size_t index = 0; index < sizeof strangers / sizeof strangers[0]; index++) {
        status =
            s_cors_exchange (port, "OPTIONS", strangers[index], S_PREFLIGHT, reply, sizeof reply);
        assert (status == 403 && strstr (reply, "\"origin_not_allowed\""));
        assert (!strcasestr (reply, "Access-Control-") && strstr (reply, "\r\nVary: Origin\r\n"));
    }
    //  Answers: the listed origin may read them (and Retry-After), others not.
    status = s_cors_exchange (port, "POST", "https://app.example.test", "", reply, sizeof reply);
    assert (status == 200);
    assert (strstr (reply, "\r\nAccess-Control-Allow-Origin: https://app.example.test\r\n"));
    assert (strstr (reply, "\r\nVary: Origin\r\n"));
    assert (strstr (reply, "\r\nAccess-Control-Expose-Headers: Retry-After, "));
    assert (!strcasestr (reply, "Credentials"));
    status = s_cors_exchange (port, "POST", "https://evil.example.test", "", reply, sizeof reply);
    assert (status == 200 && !strcasestr (reply, "Access-Control-") &&
            strstr (reply, "\r\nVary: Origin\r\n"));
    //  OPTIONS that is no preflight (no Access-Control-Request-Method) is
    //  the route's: the echo wants a body.
    status = s_cors_exchange (port, "OPTIONS", "https://app.example.test", "", reply, sizeof reply);
    assert (status == 411);

    //  Lists with anything but origins stop start-up, and allow nothing.
    const char *bad[] = {"*",
                         "https://app.example.test/",
                         "https://app.example.test/api",
                         "ftp://app.example.test",
                         "app.example.test",
                         "https://",
                         "https://app.example.test:99999",
                         "https://app.example.test:",
                         "https://[]",
                         "https://app.example.test, null",
                         "https://*.example.test"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        assert (gateway_http_cors_configure (bad[index]) == -1);
    status = s_cors_exchange (port, "OPTIONS", "https://app.example.test", S_PREFLIGHT, reply,
                              sizeof reply);
    assert (status == 403 && !strcasestr (reply, "Access-Control-"));
    char many[17 * 32] = "";
    for (int index = 0; index < 17; index++)
        snprintf (many + strlen (many), sizeof many - strlen (many), "https://a%d.test ", index);
    assert (gateway_http_cors_configure (many) == -1);
    many[strlen (many) - strlen ("https://a16.test ")] = 0;
    assert (gateway_http_cors_configure (many) == 0);
    assert (gateway_http_cors_configure ("https://[::1]:8443\thttp://192.0.2.7:8080") == 0);
    assert (gateway_http_cors_configure ("") == 0);
    mg_stop (http);
}

void
gateway_http_test (bool verbose)
{
    printf (" * gateway_http: ");

    mg_init_library (0);
    char port[16];
    snprintf (port, sizeof port, "127.0.0.1:%d", TEST_PORT);
    const char *options[] = {
        "listening_ports",   port,  "num_threads", "2", "request_timeout_ms", "2000",
        "enable_keep_alive", "yes", NULL};
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    struct mg_context *http = mg_start (&callbacks, NULL, options);
    assert (http);
    mg_set_request_handler (http, "/echo", s_echo_handler, NULL);
    mg_set_request_handler (http, "/echo-large", s_echo_large_handler, NULL);
    mg_set_request_handler (http, "/whoami", s_whoami_handler, NULL);

    char reply[4096];
    //  Good body: echoed inside the envelope with the safety headers.
    int status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"a\":12}", reply,
        sizeof reply);
    if (verbose)
        printf ("\n%s\n", reply);
    assert (status == 200);
    assert (strstr (reply, "{\"success\":true,\"message\":\"ok\",\"data\":{\"a\":12}}"));
    assert (strcasestr (reply, "Cache-Control: no-store"));
    assert (strcasestr (reply, "X-Content-Type-Options: nosniff"));
    assert (strcasestr (reply, "Content-Type: application/json"));

    //  10 MB announced, never sent: 413 must come back without waiting for it.
    int64_t started = gateway_time_now_ms ();
    status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n", reply,
        sizeof reply);
    assert (status == 413);
    assert (strstr (reply, "\"body_too_large\""));
    assert (gateway_time_now_ms () - started < 1500);

    status = gateway_fixture_exchange (
        TEST_PORT,
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"a\":1,\"a\":2}  ", reply,
        sizeof reply);
    assert (status == 400);
    assert (strstr (reply, "\"invalid_json\""));

    status = gateway_fixture_exchange (TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", reply,
                                       sizeof reply);
    assert (status == 411);
    assert (strstr (reply, "\"length_required\""));

    status = gateway_fixture_exchange (
        TEST_PORT,
        "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\n{}\r\n0\r\n\r\n",
        reply, sizeof reply);
    assert (status == 411);

    status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n[1,2,3]", reply,
        sizeof reply);
    assert (status == 400);
    assert (strstr (reply, "must be a JSON object"));

    //  33 levels of nesting: valid JSON, too deep for us.
    char request[512];
    char deep[200] = "";
    for (int level = 0; level < 33; level++)
        strcat (deep, "[");
    for (int level = 0; level < 33; level++)
        strcat (deep, "]");
    char body[256];
    snprintf (body, sizeof body, "{\"a\":%s}", deep);
    snprintf (request, sizeof request,
              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen (body),
              body);
    status = gateway_fixture_exchange (TEST_PORT, request, reply, sizeof reply);
    assert (status == 400);
    assert (strstr (reply, "too deeply"));
    //  31 levels inside the object (32 with it) pass.
    snprintf (body, sizeof body, "{\"a\":%.31s%.31s}", deep, deep + 33);
    snprintf (request, sizeof request,
              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen (body),
              body);
    status = gateway_fixture_exchange (TEST_PORT, request, reply, sizeof reply);
    assert (status == 200);

    //  Nesting is counted in the text, before jansson's recursive parse:
    //  20,000 levels (40 KB, within the user routes' limit) overflowed a
    //  civetweb worker's stack (about 100 KiB) and killed the process.
    size_t levels = 20000;
    char *huge = (char *)malloc (2 * levels + 256);
    assert (huge);
    int offset = sprintf (huge,
                          "POST /echo-large HTTP/1.1\r\nHost: x\r\n"
                          "Content-Length: %zu\r\n\r\n{\"a\":",
                          2 * levels + 6);
    memset (huge + offset, '[', levels);
    memset (huge + offset + levels, ']', levels);
    strcpy (huge + offset + 2 * levels, "}");
    status = gateway_fixture_exchange (TEST_PORT, huge, reply, sizeof reply);
    free (huge);
    assert (status == 400);
    assert (strstr (reply, "too deeply"));
    status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"a\":12}", reply,
        sizeof reply);
    assert (status == 200);
    //  Brackets inside strings, escaped quotes among them, do not count.
    assert (s_depth ("{\"a\":\"[[[[[[\"}", 1));
    assert (s_depth ("{\"a\":\"\\\"[[[[\"}", 1));
    assert (!s_depth ("{\"a\":[]}", 1));
    assert (s_depth ("{\"a\":[]}", 2));
    assert (!s_depth ("{\"\\\\\":[[]]}", 2));
    assert (s_depth ("]]]][[[[", 2)); //  malformed: jansson's to reject

    //  Body shorter than announced: the read gives up after the timeout.
    status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"a\":1}", reply,
        sizeof reply);
    assert (status == 400 || status == 0);

    //  Behind a trusted proxy: every X-Forwarded-For line counts, in order
    //  (a proxy appends its own line after the client's forged one, and
    //  civetweb's mg_get_header would give the first); the nearest
    //  proxy's X-Forwarded-Proto decides https. Without trust, neither.
    const char *forwarded = "GET /whoami HTTP/1.1\r\nHost: x\r\n"
                            "X-Forwarded-For: 1.2.3.4\r\nX-Forwarded-Proto: http\r\n"
                            "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n\r\n";
    status = gateway_fixture_exchange (TEST_PORT, forwarded, reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"127.0.0.1\",\"https\":false"));
    assert (gateway_http_client_proxies_configure ("127.0.0.0/8", NULL) == 0);
    status = gateway_fixture_exchange (TEST_PORT, forwarded, reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"203.0.113.9\",\"https\":true"));
    status = gateway_fixture_exchange (
        TEST_PORT, "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https, http\r\n\r\n",
        reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"127.0.0.1\",\"https\":false"));
    //  In Forwarded mode X-Forwarded-* is the client's own and ignored.
    assert (gateway_http_client_proxies_configure ("127.0.0.0/8", "Forwarded") == 0);
    status = gateway_fixture_exchange (TEST_PORT, forwarded, reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"127.0.0.1\",\"https\":false"));
    status = gateway_fixture_exchange (
        TEST_PORT,
        "GET /whoami HTTP/1.1\r\nHost: x\r\nForwarded: for=1.2.3.4;proto=http\r\n"
        "Forwarded: for=\"[2001:db8::5]:99\";proto=https\r\n\r\n",
        reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"2001:db8::5\",\"https\":true"));
    assert (gateway_http_client_proxies_configure ("", NULL) == 0);

    mg_stop (http);

    s_slow_clients_check (verbose);
    s_cors_check (verbose);
    printf ("OK\n");
}
