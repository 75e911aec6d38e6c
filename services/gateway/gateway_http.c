/*  =========================================================================
    gateway_http - request/response helpers every handler uses

    Bodies are read only after their Content-Length has been checked against
    the route's limit (civetweb's max_request_size bounds headers only), and
    parsed with duplicate keys rejected and nesting limited. Every answer is
    the JSON envelope of DESIGN.md with no-store / nosniff headers.
    =========================================================================
*/
#include "gateway.h"
#include "gateway_pipeline.h"

#include <errno.h>
#include <stdatomic.h>
#include <time.h>

//  Deeper bodies are not meant for us; jansson's own limit (2048) is far
//  above anything a route needs and costs stack on every walk.
#define GATEWAY_JSON_DEPTH_MAX 32

//  Bodies up to this size are read into the stack, so the sensor hot path
//  allocates nothing for them.
#define GATEWAY_STACK_BODY 8192

//  --------------------------------------------------------------------------
//  true when value nests no deeper than depth levels of containers.
static bool
s_depth_ok (json_t *value, int depth)
{
    if (json_is_object (value)) {
        if (depth <= 0)
            return false;
        const char *key;
        json_t *member;
        json_object_foreach (value, key, member)
        {
            if (!s_depth_ok (member, depth - 1))
                return false;
        }
    } else if (json_is_array (value)) {
        if (depth <= 0)
            return false;
        size_t index;
        json_t *member;
        json_array_foreach (value, index, member)
        {
            if (!s_depth_ok (member, depth - 1))
                return false;
        }
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
//  Reads the body as a JSON object; on error answers and returns NULL with
//  the status it sent in *status.
json_t *
gateway_http_read_json_status (struct mg_connection *conn, size_t max, int *status)
{
    int dummy;
    if (!status)
        status = &dummy;
    *status = 0;
    const struct mg_request_info *info = mg_get_request_info (conn);
    long long length = info ? info->content_length : -1;
    //  Chunked bodies have no length we could check before reading them.
    if (length < 0 || *s_header (conn, "Transfer-Encoding")) {
        *status =
            gateway_http_send_error (conn, 411, "length_required", "Content-Length is required", 0);
        return NULL;
    }
    if ((unsigned long long)length > max) {
        *status =
            gateway_http_send_error (conn, 413, "body_too_large", "Request body too large", 0);
        return NULL;
    }
    if (length == 0) {
        *status = gateway_http_send_error (conn, 400, "invalid_json", "Request body is empty", 0);
        return NULL;
    }
    char stack_buffer[GATEWAY_STACK_BODY];
    char *buffer = length <= GATEWAY_STACK_BODY ? stack_buffer : malloc ((size_t)length);
    if (!buffer) {
        *status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
        return NULL;
    }
    //  mg_read blocks at most request_timeout_ms per call, and a short
    //  read only happens when the peer closed or stalled past it.
    size_t got = 0;
    while (got < (size_t)length) {
        int rc = mg_read (conn, buffer + got, (size_t)length - got);
        if (rc <= 0)
            break;
        got += (size_t)rc;
    }
    json_t *body = NULL;
    if (got < (size_t)length)
        *status = gateway_http_send_error (conn, 400, "incomplete_body",
                                           "Request body shorter than Content-Length", 0);
    else {
        json_error_t error;
        body = json_loadb (buffer, got, JSON_REJECT_DUPLICATES, &error);
        if (!body)
            *status = gateway_http_send_error (conn, 400, "invalid_json",
                                               "Request body is not valid JSON", 0);
        else if (!json_is_object (body)) {
            *status = gateway_http_send_error (conn, 400, "invalid_json",
                                               "Request body must be a JSON object", 0);
            json_decref (body);
            body = NULL;
        } else if (!s_depth_ok (body, GATEWAY_JSON_DEPTH_MAX)) {
            *status = gateway_http_send_error (conn, 400, "invalid_json",
                                               "Request body nests too deeply", 0);
            json_decref (body);
            body = NULL;
        }
    }
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
    const struct mg_request_info *info = mg_get_request_info (conn);
    char date[40];
    s_date (date);
    char buffer[1024 + GATEWAY_SEND_INLINE];
    int length = snprintf (
        buffer, 1024,
        "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: %s\r\nContent-Type: %s\r\n"
        "Content-Length: %zu\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        "%s\r\n",
        status, mg_get_response_code_text (conn, status), date,
        s_keep_alive (info, conn) ? "keep-alive" : "close", content_type, size,
        extra_headers ? extra_headers : "");
    if (length < 0 || length >= 1024) {
        //  Headers that long are a bug of ours; answer without the extras.
        zsys_error ("gateway http - response headers too long for status %d", status);
        length = snprintf (buffer, 1024,
                           "HTTP/1.1 500 Internal Server Error\r\nConnection: close\r\n"
                           "Content-Length: 0\r\n\r\n");
        mg_write (conn, buffer, (size_t)length);
        return 500;
    }
    if (size <= GATEWAY_SEND_INLINE) {
        if (size)
            memcpy (buffer + length, body, size);
        mg_write (conn, buffer, (size_t)length + size);
    } else {
        mg_write (conn, buffer, (size_t)length);
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

int
gateway_http_send_error (struct mg_connection *conn, int status, const char *code,
                         const char *message, int retry_after_s)
{
    json_t *envelope = json_pack ("{s:b, s:s, s:{s:s}}", "success", 0, "message",
                                  message ? message : "", "error", "code", code ? code : "error");
    return s_send_json (conn, status, envelope, retry_after_s);
}

//  --------------------------------------------------------------------------
void
gateway_http_iso8601 (int64_t ms, char out[32])
{
    int64_t seconds = ms / 1000;
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    time_t when = (time_t)seconds;
    struct tm tm;
    if (!gmtime_r (&when, &tm)) {
        snprintf (out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    //  Formatted wide, then copied: the compiler cannot know tm's ranges.
    char text[96];
    snprintf (text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    snprintf (out, 32, "%.31s", text);
}

int64_t
gateway_http_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
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

//  Sends request, reads the answer until close or timeout; returns status.
static int
s_exchange (const char *request, char *reply, size_t reply_size)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct timeval timeout = {5, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons (TEST_PORT);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = connect (fd, (struct sockaddr *)&address, sizeof address);
    assert (rc == 0);
    rc = (int)send (fd, request, strlen (request), 0);
    assert (rc == (int)strlen (request));
    size_t got = 0;
    while (got < reply_size - 1) {
        ssize_t n = recv (fd, reply + got, reply_size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        reply[got] = 0;
        //  Stop once the full body is in (keep-alive would hold the socket).
        char *end = strstr (reply, "\r\n\r\n");
        char *length = strcasestr (reply, "Content-Length:");
        if (end && length && got >= (size_t)(end + 4 - reply) + (size_t)atoi (length + 15))
            break;
    }
    reply[got] = 0;
    close (fd);
    int status = 0;
    sscanf (reply, "HTTP/1.%*d %d", &status);
    return status;
}

void
gateway_http_test (bool verbose)
{
    printf (" * gateway_http: ");

    char text[32];
    gateway_http_iso8601 (0, text);
    assert (streq (text, "1970-01-01T00:00:00.000Z"));
    gateway_http_iso8601 (1704110400123LL, text);
    assert (streq (text, "2024-01-01T12:00:00.123Z"));
    gateway_http_iso8601 (951782400999LL, text); //  leap day 2000
    assert (streq (text, "2000-02-29T00:00:00.999Z"));
    gateway_http_iso8601 (-1, text);
    assert (streq (text, "1969-12-31T23:59:59.999Z"));
    int64_t now = gateway_http_now_ms ();
    assert (now > 1700000000000LL);

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

    char reply[4096];
    //  Good body: echoed inside the envelope with the safety headers.
    int status =
        s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n{\"a\":12}", reply,
                    sizeof reply);
    if (verbose)
        printf ("\n%s\n", reply);
    assert (status == 200);
    assert (strstr (reply, "{\"success\":true,\"message\":\"ok\",\"data\":{\"a\":12}}"));
    assert (strcasestr (reply, "Cache-Control: no-store"));
    assert (strcasestr (reply, "X-Content-Type-Options: nosniff"));
    assert (strcasestr (reply, "Content-Type: application/json"));

    //  10 MB announced, never sent: 413 must come back without waiting for it.
    int64_t started = gateway_http_now_ms ();
    status = s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
                         reply, sizeof reply);
    assert (status == 413);
    assert (strstr (reply, "\"body_too_large\""));
    assert (gateway_http_now_ms () - started < 1500);

    status = s_exchange (
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{\"a\":1,\"a\":2}  ", reply,
        sizeof reply);
    assert (status == 400);
    assert (strstr (reply, "\"invalid_json\""));

    status = s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", reply, sizeof reply);
    assert (status == 411);
    assert (strstr (reply, "\"length_required\""));

    status = s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                         "2\r\n{}\r\n0\r\n\r\n",
                         reply, sizeof reply);
    assert (status == 411);

    status = s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n[1,2,3]",
                         reply, sizeof reply);
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
    status = s_exchange (request, reply, sizeof reply);
    assert (status == 400);
    assert (strstr (reply, "too deeply"));
    //  31 levels inside the object (32 with it) pass.
    snprintf (body, sizeof body, "{\"a\":%.31s%.31s}", deep, deep + 33);
    snprintf (request, sizeof request,
              "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n\r\n%s", strlen (body),
              body);
    status = s_exchange (request, reply, sizeof reply);
    assert (status == 200);

    //  Body shorter than announced: the read gives up after the timeout.
    status = s_exchange ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{\"a\":1}",
                         reply, sizeof reply);
    assert (status == 400 || status == 0);

    //  Retry-After is added when asked for.
    mg_stop (http);
    printf ("OK\n");
}
