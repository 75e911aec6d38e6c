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
#define CORS_METHODS "GET, POST, PATCH, DELETE"
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

int
gateway_http_send_error (struct mg_connection *conn, int status, const char *code,
                         const char *message, int retry_after_s)
{
    json_t *envelope = json_pack ("{s:b, s:s, s:{s:s}}", "success", 0, "message",
                                  message ? message : "", "error", "code", code ? code : "error");
    return s_send_json (conn, status, envelope, retry_after_s);
}

int
gateway_http_send_field_error (struct mg_connection *conn, int status, const char *code,
                               const char *field, const char *message)
{
    json_t *envelope =
        json_pack ("{s:b, s:s, s:{s:s, s:s}}", "success", 0, "message", message ? message : "",
                   "error", "code", code ? code : "error", "field", field ? field : "");
    return s_send_json (conn, status, envelope, 0);
}

//  --------------------------------------------------------------------------
//  Abuse limits: a token bucket per key in a table per kind, so one kind
//  of failure never spends another's budget (gateway.h says which counts
//  what). A fixed table of RATE_SETS sets of RATE_WAYS entries bounds
//  memory whatever the number of keys; a key is placed by a keyed hash
//  (SipHash, key drawn at start), so no one can aim two keys at one set.
//  A new key takes the fullest entry of its set, so a key that is being
//  limited is the last to be forgotten. Readings with a valid token never
//  touch a table.

#define RATE_SETS 1024
#define RATE_WAYS 4
#define RATE_LOCKS 64

typedef struct {
    uint8_t key[16];    //  address (IPv6, IPv4-mapped) or account hash
    float tokens;       //  attempts still allowed now
    int64_t updated_ms; //  when tokens was last brought up to date; 0 = free
} s_rate_entry_t;

typedef struct {
    pthread_mutex_t locks[RATE_LOCKS];
    s_rate_entry_t entries[RATE_SETS][RATE_WAYS];
    _Atomic int burst;           //  attempts allowed at once
    _Atomic int refill_per_hour; //  attempts given back per hour
} s_rate_table_t;

static const int s_rate_defaults[GATEWAY_RATE_KINDS][2] = {
    [GATEWAY_RATE_TOKEN] = {GATEWAY_RATE_TOKEN_BURST, GATEWAY_RATE_TOKEN_PER_HOUR},
    [GATEWAY_RATE_LOGIN] = {GATEWAY_RATE_LOGIN_BURST, GATEWAY_RATE_LOGIN_PER_HOUR},
    [GATEWAY_RATE_ACCOUNT] = {GATEWAY_RATE_ACCOUNT_BURST, GATEWAY_RATE_ACCOUNT_PER_HOUR},
    [GATEWAY_RATE_REGISTER] = {GATEWAY_RATE_REGISTER_BURST, GATEWAY_RATE_REGISTER_PER_HOUR}};

static struct {
    pthread_once_t once;
    uint8_t key[crypto_shorthash_KEYBYTES];           //  places keys in sets
    uint8_t account_key[crypto_generichash_KEYBYTES]; //  hashes account names
    s_rate_table_t tables[GATEWAY_RATE_KINDS];
} s_rate = {.once = PTHREAD_ONCE_INIT};

static void
s_rate_init (void)
{
    if (sodium_init () < 0)
        zsys_warning ("gateway http - libsodium did not initialise");
    randombytes_buf (s_rate.key, sizeof s_rate.key);
    randombytes_buf (s_rate.account_key, sizeof s_rate.account_key);
    for (int kind = 0; kind < GATEWAY_RATE_KINDS; kind++) {
        s_rate_table_t *table = &s_rate.tables[kind];
        for (int index = 0; index < RATE_LOCKS; index++)
            pthread_mutex_init (&table->locks[index], NULL);
        atomic_store (&table->burst, s_rate_defaults[kind][0]);
        atomic_store (&table->refill_per_hour, s_rate_defaults[kind][1]);
    }
}

//  Address text to 16 bytes (IPv4 as IPv4-mapped IPv6); false if it is
//  not an address.
static bool
s_address_parse (const char *text, uint8_t address[16])
{
    memset (address, 0, 16);
    struct in_addr v4;
    if (text && inet_pton (AF_INET, text, &v4) == 1) {
        address[10] = address[11] = 0xff;
        memcpy (address + 12, &v4, 4);
        return true;
    }
    return text && inet_pton (AF_INET6, text, address) == 1;
}

static bool
s_address_v4 (const uint8_t address[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp (address, prefix, 12) == 0;
}

//  The bucket key of key text for kind; false if it has none. An IPv6
//  client counts by its /64: one host gets a whole /64 from its router,
//  and would otherwise have 2^64 fresh buckets.
static bool
s_rate_key (gateway_rate_kind_t kind, const char *text, uint8_t key[16])
{
    if (kind == GATEWAY_RATE_ACCOUNT) {
        if (!text || !*text)
            return false;
        crypto_generichash (key, 16, (const uint8_t *)text, strlen (text), s_rate.account_key,
                            sizeof s_rate.account_key);
        return true;
    }
    if (!s_address_parse (text, key))
        return false;
    if (!s_address_v4 (key))
        memset (key + 8, 0, 8);
    return true;
}

//  Under its set's lock: the entry of key, brought up to date, or NULL if
//  the key has none (and create is false).
static s_rate_entry_t *
s_rate_entry (s_rate_table_t *table, s_rate_entry_t *set, const uint8_t key[16], int64_t now,
              bool create)
{
    float burst = (float)atomic_load (&table->burst);
    float per_ms = (float)atomic_load (&table->refill_per_hour) / 3600000.0f;
    s_rate_entry_t *entry = NULL, *fullest = &set[0];
    for (int way = 0; way < RATE_WAYS; way++) {
        s_rate_entry_t *candidate = &set[way];
        //  Refilled first, so "fullest" compares current values.
        if (candidate->updated_ms) {
            float tokens = candidate->tokens + (float)(now - candidate->updated_ms) * per_ms;
            candidate->tokens = tokens < burst ? tokens : burst;
            candidate->updated_ms = now;
        }
        if (memcmp (candidate->key, key, 16) == 0 && candidate->updated_ms)
            entry = candidate;
        else if (!candidate->updated_ms ||
                 (fullest->updated_ms && candidate->tokens > fullest->tokens))
            fullest = candidate;
    }
    if (!entry && create) {
        entry = fullest;
        memcpy (entry->key, key, 16);
        entry->tokens = burst;
        entry->updated_ms = now;
    }
    return entry;
}

static size_t
s_rate_set (const uint8_t key[16])
{
    uint8_t hash[crypto_shorthash_BYTES];
    crypto_shorthash (hash, key, 16, s_rate.key);
    uint64_t value;
    memcpy (&value, hash, sizeof value);
    return (size_t)(value % RATE_SETS);
}

bool
gateway_http_rate_limited (gateway_rate_kind_t kind, const char *key_text, int *retry_after_s)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    uint8_t key[16];
    if (!s_rate_key (kind, key_text, key))
        return false;
    s_rate_table_t *table = &s_rate.tables[kind];
    size_t set = s_rate_set (key);
    pthread_mutex_t *lock = &table->locks[set % RATE_LOCKS];
    pthread_mutex_lock (lock);
    s_rate_entry_t *entry =
        s_rate_entry (table, table->entries[set], key, gateway_http_now_ms (), false);
    bool limited = entry && entry->tokens < 1.0f;
    float missing = entry ? 1.0f - entry->tokens : 0;
    pthread_mutex_unlock (lock);
    if (limited && retry_after_s) {
        int per_hour = atomic_load (&table->refill_per_hour);
        int seconds = (int)ceilf (missing * 3600.0f / (float)(per_hour > 0 ? per_hour : 1));
        *retry_after_s = seconds < 1 ? 1 : seconds;
    }
    return limited;
}

void
gateway_http_rate_limit_hit (gateway_rate_kind_t kind, const char *key_text)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    uint8_t key[16];
    if (!s_rate_key (kind, key_text, key))
        return;
    s_rate_table_t *table = &s_rate.tables[kind];
    size_t set = s_rate_set (key);
    pthread_mutex_t *lock = &table->locks[set % RATE_LOCKS];
    pthread_mutex_lock (lock);
    s_rate_entry_t *entry =
        s_rate_entry (table, table->entries[set], key, gateway_http_now_ms (), true);
    //  Floored at -burst: a client hammering on while limited waits at
    //  most as long as a full refill, not forever.
    if (entry->tokens > -(float)atomic_load (&table->burst))
        entry->tokens -= 1.0f;
    pthread_mutex_unlock (lock);
}

void
gateway_http_rate_limit_configure (gateway_rate_kind_t kind, int burst, int refill_per_hour)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    s_rate_table_t *table = &s_rate.tables[kind];
    if (burst > 0)
        atomic_store (&table->burst, burst);
    if (refill_per_hour > 0)
        atomic_store (&table->refill_per_hour, refill_per_hour);
    //  Forget everything: a new limit starts from full buckets.
    for (int index = 0; index < RATE_LOCKS; index++)
        pthread_mutex_lock (&table->locks[index]);
    memset (table->entries, 0, sizeof table->entries);
    for (int index = RATE_LOCKS - 1; index >= 0; index--)
        pthread_mutex_unlock (&table->locks[index]);
}

int
gateway_http_send_rate_limited (struct mg_connection *conn, int retry_after_s)
{
    return gateway_http_send_error (conn, 429, "rate_limited", "Too many attempts, retry later",
                                    retry_after_s);
}

//  --------------------------------------------------------------------------
//  Client address behind reverse proxies. Only a peer in trusted_proxies
//  is believed about who it forwards for; the client is the rightmost hop
//  of the forwarding header that is not itself a trusted proxy (hops left
//  of it were written by whoever sent the request, and may be anything).
//  One header only, the one the proxy is set to write: a proxy that sets
//  X-Forwarded-For passes a client's own Forwarded header through
//  untouched, and the other way round.

#define TRUSTED_MAX 32    //  entries of trusted_proxies
#define FORWARD_HOPS 64   //  hops looked at, from the right
#define FORWARD_TEXT 2048 //  bytes of the forwarding header looked at, from the right

typedef struct {
    uint8_t address[16]; //  IPv6, or IPv4-mapped
    int bits;            //  prefix length over the 128
} s_network_t;

static struct {
    pthread_rwlock_t lock;
    s_network_t networks[TRUSTED_MAX];
    int count;
    bool rfc7239; //  Forwarded, else X-Forwarded-For / X-Forwarded-Proto
} s_proxies = {.lock = PTHREAD_RWLOCK_INITIALIZER};

//  "192.0.2.1", "10.0.0.0/8", "::1", "fd00::/8" into network; -1 if malformed.
static int
s_network_parse (const char *text, s_network_t *network)
{
    char address[INET6_ADDRSTRLEN + 8];
    size_t length = strcspn (text, "/");
    if (length == 0 || length >= sizeof address)
        return -1;
    memcpy (address, text, length);
    address[length] = 0;
    if (!s_address_parse (address, network->address))
        return -1;
    bool v4 = strchr (address, ':') == NULL;
    int max = v4 ? 32 : 128;
    int bits = max;
    if (text[length] == '/') {
        const char *digits = text + length + 1;
        char *end;
        errno = 0;
        long value = strtol (digits, &end, 10);
        if (!isdigit ((unsigned char)*digits) || *end || errno || value < 0 || value > max)
            return -1;
        bits = (int)value;
    }
    network->bits = v4 ? bits + 96 : bits;
    //  Host bits set ("10.1.2.3/8") are cleared, as every router does.
    for (int bit = network->bits; bit < 128; bit++)
        network->address[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 0;
}

static bool
s_network_contains (const s_network_t *network, const uint8_t address[16])
{
    int whole = network->bits / 8, rest = network->bits % 8;
    if (memcmp (network->address, address, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (network->address[whole] & mask) == (address[whole] & mask);
}

//  Under the read lock.
static bool
s_trusted (const uint8_t address[16])
{
    for (int index = 0; index < s_proxies.count; index++)
        if (s_network_contains (&s_proxies.networks[index], address))
            return true;
    return false;
}

int
gateway_http_trusted_proxies_configure (const char *list, const char *header)
{
    s_network_t networks[TRUSTED_MAX];
    int count = 0;
    bool rfc7239 = false;
    if (header && *header) {
        if (strcasecmp (header, "Forwarded") == 0)
            rfc7239 = true;
        else if (strcasecmp (header, "X-Forwarded-For") != 0) {
            zsys_error ("gateway http - trusted_proxy_header must be X-Forwarded-For or Forwarded, "
                        "not '%s'",
                        header);
            return -1;
        }
    }
    const char *cursor = list ? list : "";
    while (*cursor) {
        size_t length = strcspn (cursor, ", \t");
        if (length) {
            char entry[INET6_ADDRSTRLEN + 8];
            if (length >= sizeof entry || count == TRUSTED_MAX) {
                zsys_error ("gateway http - trusted_proxies: too long, at most %d entries",
                            TRUSTED_MAX);
                return -1;
            }
            memcpy (entry, cursor, length);
            entry[length] = 0;
            if (s_network_parse (entry, &networks[count]) != 0) {
                zsys_error ("gateway http - trusted_proxies: '%s' is not an address or CIDR",
                            entry);
                return -1;
            }
            count++;
            cursor += length;
        } else
            cursor++;
    }
    pthread_rwlock_wrlock (&s_proxies.lock);
    memcpy (s_proxies.networks, networks, sizeof networks);
    s_proxies.count = count;
    s_proxies.rfc7239 = rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    return 0;
}

//  Trims blanks and one pair of quotes.
static void
s_trim (const char **start, const char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t'))
        (*start)++;
    while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
    if (*end - *start >= 2 && **start == '"' && (*end)[-1] == '"') {
        (*start)++;
        (*end)--;
    }
}

//  In a Forwarded element (pairs split by ';'), the value of name, trimmed
//  and unquoted, into start/end; false if absent.
static bool
s_forwarded_pair (const char *element, const char *element_end, const char *name,
                  const char **start, const char **end)
{
    size_t name_length = strlen (name);
    const char *cursor = element;
    while (cursor < element_end) {
        const char *pair_end = memchr (cursor, ';', (size_t)(element_end - cursor));
        if (!pair_end)
            pair_end = element_end;
        const char *pair = cursor, *stop = pair_end;
        s_trim (&pair, &stop);
        if ((size_t)(stop - pair) > name_length && strncasecmp (pair, name, name_length) == 0 &&
            pair[name_length] == '=') {
            *start = pair + name_length + 1;
            *end = stop;
            s_trim (start, end);
            return true;
        }
        cursor = pair_end + 1;
    }
    return false;
}

//  A hop's node ("192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80")
//  to an address; false for anything else ("unknown", "_hidden", garbage).
static bool
s_hop_address (const char *start, const char *end, uint8_t address[16])
{
    char text[INET6_ADDRSTRLEN + 8];
    if (end - start >= 2 && *start == '[') {
        const char *close = memchr (start, ']', (size_t)(end - start));
        if (!close)
            return false;
        start++;
        end = close;
    } else {
        //  One colon: IPv4 with a port; more: IPv6 without brackets.
        const char *colon = memchr (start, ':', (size_t)(end - start));
        if (colon && !memchr (colon + 1, ':', (size_t)(end - colon - 1)))
            end = colon;
    }
    if (end <= start || (size_t)(end - start) >= sizeof text)
        return false;
    memcpy (text, start, (size_t)(end - start));
    text[end - start] = 0;
    return s_address_parse (text, address);
}

//  Every line of the header name, joined by commas in order, into buffer
//  (its rightmost size - 1 bytes when longer); false when there is none.
static bool
s_header_joined (const struct mg_request_info *info, const char *name, char *buffer, size_t size)
{
    size_t used = 0;
    bool found = false;
    buffer[0] = 0;
    for (int index = 0; index < info->num_headers; index++) {
        const struct mg_header *header = &info->http_headers[index];
        if (!header->name || !header->value || strcasecmp (header->name, name) != 0)
            continue;
        size_t length = strlen (header->value);
        size_t need = length + (found ? 1 : 0);
        //  Keep the right end: the hops our proxies wrote are there.
        if (need >= size) {
            const char *tail = header->value + length - (size - 1);
            memcpy (buffer, tail, size - 1);
            used = size - 1;
        } else {
            if (used + need >= size) {
                size_t drop = used + need - (size - 1);
                memmove (buffer, buffer + drop, used - drop);
                used -= drop;
            }
            if (found)
                buffer[used++] = ',';
            memcpy (buffer + used, header->value, length);
            used += length;
        }
        buffer[used] = 0;
        found = true;
    }
    return found;
}

//  The client of a request from peer with the forwarding header value
//  forwarded (joined lines; NULL if none), as address text into out.
//  Exposed to the self test through gateway_http_forwarded_client.
static void
s_forwarded_client (const char *peer, const char *forwarded, bool rfc7239, char *out,
                    size_t out_size)
{
    uint8_t address[16];
    snprintf (out, out_size, "%s", peer ? peer : "");
    if (!s_address_parse (peer, address))
        return;
    pthread_rwlock_rdlock (&s_proxies.lock);
    if (!forwarded || !s_trusted (address)) {
        pthread_rwlock_unlock (&s_proxies.lock);
        return;
    }
    //  Right to left: each hop a trusted proxy vouches for, until one that
    //  is not trusted (the client) or one that is not an address (then
    //  the proxy that wrote it is the client as far as we can know).
    uint8_t client[16];
    memcpy (client, address, 16);
    const char *end = forwarded + strlen (forwarded);
    for (int hop = 0; hop < FORWARD_HOPS && end > forwarded; hop++) {
        const char *start = end;
        while (start > forwarded && start[-1] != ',')
            start--;
        const char *node = start, *node_end = end;
        bool have = rfc7239 ? s_forwarded_pair (start, end, "for", &node, &node_end)
                            : (s_trim (&node, &node_end), true);
        if (!have || !s_hop_address (node, node_end, address))
            break;
        memcpy (client, address, 16);
        if (!s_trusted (address))
            break;
        end = start > forwarded ? start - 1 : forwarded;
    }
    pthread_rwlock_unlock (&s_proxies.lock);
    char text[INET6_ADDRSTRLEN];
    if (s_address_v4 (client))
        inet_ntop (AF_INET, client + 12, text, sizeof text);
    else
        inet_ntop (AF_INET6, client, text, sizeof text);
    snprintf (out, out_size, "%s", text);
}

void
gateway_http_forwarded_client (const char *peer, const char *forwarded, char *out, size_t out_size)
{
    pthread_rwlock_rdlock (&s_proxies.lock);
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    s_forwarded_client (peer, forwarded, rfc7239, out, out_size);
}

//  One per worker thread: civetweb serves a request on one thread from
//  start to end, and callers use the address within the request.
static _Thread_local char s_client_text[INET6_ADDRSTRLEN];

const char *
gateway_http_client_ip (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info)
        return "";
    pthread_rwlock_rdlock (&s_proxies.lock);
    int count = s_proxies.count;
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    if (count == 0)
        return info->remote_addr;
    char forwarded[FORWARD_TEXT];
    bool found = s_header_joined (info, rfc7239 ? "Forwarded" : "X-Forwarded-For", forwarded,
                                  sizeof forwarded);
    s_forwarded_client (info->remote_addr, found ? forwarded : NULL, rfc7239, s_client_text,
                        sizeof s_client_text);
    return s_client_text;
}

bool
gateway_http_is_https (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info)
        return false;
    if (info->is_ssl)
        return true;
    uint8_t peer[16];
    if (!s_address_parse (info->remote_addr, peer))
        return false;
    pthread_rwlock_rdlock (&s_proxies.lock);
    bool trusted = s_trusted (peer);
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    if (!trusted)
        return false;
    //  The nearest proxy's word: the rightmost value (element) of the header.
    char value[FORWARD_TEXT];
    if (!s_header_joined (info, rfc7239 ? "Forwarded" : "X-Forwarded-Proto", value, sizeof value))
        return false;
    const char *end = value + strlen (value), *start = end;
    while (start > value && start[-1] != ',')
        start--;
    const char *proto = start, *proto_end = end;
    if (rfc7239 ? !s_forwarded_pair (start, end, "proto", &proto, &proto_end)
                : (s_trim (&proto, &proto_end), false))
        return false;
    return proto_end - proto == 5 && strncasecmp (proto, "https", 5) == 0;
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

//  --------------------------------------------------------------------------
static void
s_two (char *out, int value)
{
    out[0] = (char)('0' + value / 10);
    out[1] = (char)('0' + value % 10);
}

static void s_iso8601_gmtime (int64_t ms, char out[32]);

void
gateway_http_iso8601 (int64_t ms, char out[32])
{
    //  1970 to 9999, every time a reading can have: civil date by
    //  arithmetic (Howard Hinnant's civil_from_days). gmtime_r takes
    //  glibc's global tz lock, once per reading of a batch answer.
    if (ms >= 0 && ms < 253402300800000LL) {
        int64_t seconds = ms / 1000;
        int64_t days = seconds / 86400;
        int of_day = (int)(seconds % 86400);
        int64_t z = days + 719468;
        int64_t era = z / 146097;
        int64_t day_of_era = z - era * 146097;
        int64_t year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
        int64_t day_of_year =
            day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        int64_t shifted_month = (5 * day_of_year + 2) / 153;
        int day = (int)(day_of_year - (153 * shifted_month + 2) / 5 + 1);
        int month = (int)(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
        int year = (int)(year_of_era + era * 400 + (month <= 2));
        int millis = (int)(ms % 1000);
        s_two (out, year / 100);
        s_two (out + 2, year % 100);
        out[4] = '-';
        s_two (out + 5, month);
        out[7] = '-';
        s_two (out + 8, day);
        out[10] = 'T';
        s_two (out + 11, of_day / 3600);
        out[13] = ':';
        s_two (out + 14, of_day / 60 % 60);
        out[16] = ':';
        s_two (out + 17, of_day % 60);
        out[19] = '.';
        out[20] = (char)('0' + millis / 100);
        s_two (out + 21, millis % 100);
        out[23] = 'Z';
        out[24] = 0;
        return;
    }
    s_iso8601_gmtime (ms, out);
}

//  Any other time, through gmtime_r.
static void
s_iso8601_gmtime (int64_t ms, char out[32])
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

//  Answers who the request came from, as the limits and cookies see it.
static int
s_whoami_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    json_t *data = json_pack ("{s:s, s:b}", "ip", gateway_http_client_ip (conn), "https",
                              gateway_http_is_https (conn));
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

//  The abuse limits, alone.
static void
s_rate_limit_check (void)
{
    int retry_after = 0;
    const gateway_rate_kind_t T = GATEWAY_RATE_TOKEN;
    gateway_http_rate_limit_configure (T, 3, 3600);
    assert (!gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    for (int attempt = 0; attempt < 3; attempt++) {
        assert (!gateway_http_rate_limited (T, "10.0.0.1", NULL));
        gateway_http_rate_limit_hit (T, "10.0.0.1");
    }
    assert (gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    //  One attempt back a second at 3600 an hour.
    assert (retry_after == 1);
    //  Others are not affected, in either family, nor other kinds.
    assert (!gateway_http_rate_limited (T, "10.0.0.2", NULL));
    assert (!gateway_http_rate_limited (T, "::1", NULL));
    assert (!gateway_http_rate_limited (GATEWAY_RATE_LOGIN, "10.0.0.1", NULL));
    assert (!gateway_http_rate_limited (GATEWAY_RATE_REGISTER, "10.0.0.1", NULL));
    for (int attempt = 0; attempt < 3; attempt++)
        gateway_http_rate_limit_hit (T, "2001:db8::7");
    assert (gateway_http_rate_limited (T, "2001:db8::7", NULL));
    //  An IPv6 client is its /64: the next address of it is no fresh start,
    //  the next /64 is another client.
    assert (gateway_http_rate_limited (T, "2001:db8::8:9", NULL));
    assert (!gateway_http_rate_limited (T, "2001:db8:0:1::7", NULL));
    //  IPv4 and its IPv6-mapped form are one client.
    assert (gateway_http_rate_limited (T, "::ffff:10.0.0.1", NULL));
    //  Not an address: never limited, never counted.
    gateway_http_rate_limit_hit (T, "");
    gateway_http_rate_limit_hit (T, NULL);
    assert (!gateway_http_rate_limited (T, "not-an-ip", NULL));
    //  Hammering on while limited lengthens the wait, but only up to one
    //  full refill.
    for (int attempt = 0; attempt < 100; attempt++)
        gateway_http_rate_limit_hit (T, "10.0.0.1");
    assert (gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    assert (retry_after >= 3 && retry_after <= 4);

    //  Accounts: any text, hashed; case is the caller's business.
    const gateway_rate_kind_t A = GATEWAY_RATE_ACCOUNT;
    gateway_http_rate_limit_configure (A, 2, 60);
    gateway_http_rate_limit_hit (A, "ann@example.com");
    assert (!gateway_http_rate_limited (A, "ann@example.com", NULL));
    gateway_http_rate_limit_hit (A, "ann@example.com");
    assert (gateway_http_rate_limited (A, "ann@example.com", &retry_after));
    assert (retry_after == 60);
    assert (!gateway_http_rate_limited (A, "bob@example.com", NULL));
    assert (!gateway_http_rate_limited (A, "", NULL));
    gateway_http_rate_limit_configure (A, GATEWAY_RATE_ACCOUNT_BURST,
                                       GATEWAY_RATE_ACCOUNT_PER_HOUR);

    //  Refill: 1000 a second, so two failures are forgiven in a few ms.
    gateway_http_rate_limit_configure (T, 2, 3600000);
    assert (!gateway_http_rate_limited (T, "10.0.0.1", NULL)); //  configure forgot it
    gateway_http_rate_limit_hit (T, "10.0.0.3");
    gateway_http_rate_limit_hit (T, "10.0.0.3");
    assert (gateway_http_rate_limited (T, "10.0.0.3", NULL));
    zclock_sleep (10);
    assert (!gateway_http_rate_limited (T, "10.0.0.3", NULL));

    //  Bounded: 100,000 addresses fit the fixed table; a limited address
    //  stays limited through a flood of one-off failures from others in
    //  most cases (it is the last of its set to go), and memory is fixed.
    gateway_http_rate_limit_configure (T, 2, 1);
    gateway_http_rate_limit_hit (T, "192.0.2.1");
    gateway_http_rate_limit_hit (T, "192.0.2.1");
    char address[32];
    for (int index = 0; index < 100000; index++) {
        snprintf (address, sizeof address, "10.%d.%d.%d", index >> 16, (index >> 8) & 255,
                  index & 255);
        gateway_http_rate_limit_hit (T, address);
    }
    assert (gateway_http_rate_limited (T, "192.0.2.1", NULL));
    gateway_http_rate_limit_configure (T, GATEWAY_RATE_TOKEN_BURST, GATEWAY_RATE_TOKEN_PER_HOUR);
}

//  trusted_proxies and the client address.
static void
s_forwarded_check (void)
{
    char client[64];
    //  Bad lists are refused whole, the current one stays.
    assert (gateway_http_trusted_proxies_configure ("127.0.0.1", NULL) == 0);
    assert (gateway_http_trusted_proxies_configure ("127.0.0.1, nope", NULL) == -1);
    assert (gateway_http_trusted_proxies_configure ("10.0.0.0/33", NULL) == -1);
    assert (gateway_http_trusted_proxies_configure ("::1/129", NULL) == -1);
    assert (gateway_http_trusted_proxies_configure ("10.0.0.0/", NULL) == -1);
    assert (gateway_http_trusted_proxies_configure ("/8", NULL) == -1);
    assert (gateway_http_trusted_proxies_configure ("", "X-Real-IP") == -1);
    gateway_http_forwarded_client ("127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));

    //  No proxies (the default): the header is never believed.
    assert (gateway_http_trusted_proxies_configure ("", NULL) == 0);
    gateway_http_forwarded_client ("127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "127.0.0.1"));

    assert (gateway_http_trusted_proxies_configure ("127.0.0.1, 10.0.0.0/8,fd00::/8", NULL) == 0);
    //  From a peer that is no proxy of ours: the peer, whatever it says.
    gateway_http_forwarded_client ("198.51.100.4", "203.0.113.9", client, sizeof client);
    assert (streq (client, "198.51.100.4"));
    //  No header from a proxy: the proxy.
    gateway_http_forwarded_client ("127.0.0.1", NULL, client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    //  The rightmost hop that is not ours: what a client wrote to the left
    //  of it ("1.2.3.4" forged) does not count.
    gateway_http_forwarded_client ("127.0.0.1", "1.2.3.4, 203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_forwarded_client ("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3", client,
                                   sizeof client);
    assert (streq (client, "203.0.113.9"));
    //  All hops ours: the leftmost.
    gateway_http_forwarded_client ("127.0.0.1", "10.9.9.9,10.1.2.3", client, sizeof client);
    assert (streq (client, "10.9.9.9"));
    //  Ports, brackets, IPv6, mapped forms, blanks.
    gateway_http_forwarded_client ("127.0.0.1", " 203.0.113.9:4711 ", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_forwarded_client ("127.0.0.1", "[2001:db8::1]:80", client, sizeof client);
    assert (streq (client, "2001:db8::1"));
    gateway_http_forwarded_client ("fd00::5", "2001:DB8::1", client, sizeof client);
    assert (streq (client, "2001:db8::1"));
    gateway_http_forwarded_client ("::ffff:127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    //  A hop that is not an address: the proxy that wrote it is as far as
    //  we can see, never the garbage.
    gateway_http_forwarded_client ("127.0.0.1", "203.0.113.9, unknown", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_forwarded_client ("127.0.0.1", "203.0.113.9, 300.1.1.1, 10.0.0.2", client,
                                   sizeof client);
    assert (streq (client, "10.0.0.2"));
    gateway_http_forwarded_client ("127.0.0.1", "", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_forwarded_client ("127.0.0.1", ",,,", client, sizeof client);
    assert (streq (client, "127.0.0.1"));

    //  RFC 7239 when asked: for= of each element, quoted, with port.
    assert (gateway_http_trusted_proxies_configure ("127.0.0.1", "Forwarded") == 0);
    gateway_http_forwarded_client ("127.0.0.1",
                                   "for=1.2.3.4, for=\"[2001:db8::cafe]:4711\";proto=https;by=x",
                                   client, sizeof client);
    assert (streq (client, "2001:db8::cafe"));
    gateway_http_forwarded_client ("127.0.0.1", "For=203.0.113.9;proto=http", client,
                                   sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_forwarded_client ("127.0.0.1", "for=_hidden", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_forwarded_client ("127.0.0.1", "proto=https", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    assert (gateway_http_trusted_proxies_configure ("", NULL) == 0);
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
    int64_t started = gateway_http_now_ms ();
    int fd = s_open (port, "POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                           "Content-Length: 2\r\n\r\n{}");
    assert (fd >= 0);
    char reply[512] = "";
    ssize_t got = recv (fd, reply, sizeof reply - 1, 0);
    reply[got > 0 ? got : 0] = 0;
    *status = 0;
    sscanf (reply, "HTTP/1.%*d %d", status);
    close (fd);
    return gateway_http_now_ms () - started;
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
    int64_t started = gateway_http_now_ms ();
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
    assert (gateway_http_now_ms () - started < 2500);

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
    assert (strstr (reply, "\r\nAccess-Control-Allow-Methods: GET, POST, PATCH, DELETE\r\n"));
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

    char text[32];
    gateway_http_iso8601 (0, text);
    assert (streq (text, "1970-01-01T00:00:00.000Z"));
    gateway_http_iso8601 (1704110400123LL, text);
    assert (streq (text, "2024-01-01T12:00:00.123Z"));
    gateway_http_iso8601 (951782400999LL, text); //  leap day 2000
    assert (streq (text, "2000-02-29T00:00:00.999Z"));
    gateway_http_iso8601 (-1, text);
    assert (streq (text, "1969-12-31T23:59:59.999Z"));
    gateway_http_iso8601 (253402300799999LL, text);
    assert (streq (text, "9999-12-31T23:59:59.999Z"));
    //  The arithmetic path writes what gmtime_r writes.
    char expected[32];
    uint64_t state = 88172645463325252ULL;
    for (int round = 0; round < 200000; round++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int64_t ms = (int64_t)(state % 253402300800000ULL);
        if (round % 2)
            ms = 1600000000000LL + (int64_t)(state % 400000000000ULL);
        gateway_http_iso8601 (ms, text);
        s_iso8601_gmtime (ms, expected);
        if (!streq (text, expected)) {
            fprintf (stderr, "\niso8601 %" PRId64 ": %s, gmtime %s\n", ms, text, expected);
            assert (false);
        }
    }
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
    int64_t started = gateway_http_now_ms ();
    status = gateway_fixture_exchange (
        TEST_PORT, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n", reply,
        sizeof reply);
    assert (status == 413);
    assert (strstr (reply, "\"body_too_large\""));
    assert (gateway_http_now_ms () - started < 1500);

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
    assert (gateway_http_trusted_proxies_configure ("127.0.0.0/8", NULL) == 0);
    status = gateway_fixture_exchange (TEST_PORT, forwarded, reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"203.0.113.9\",\"https\":true"));
    status = gateway_fixture_exchange (
        TEST_PORT, "GET /whoami HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https, http\r\n\r\n",
        reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"127.0.0.1\",\"https\":false"));
    //  In Forwarded mode X-Forwarded-* is the client's own and ignored.
    assert (gateway_http_trusted_proxies_configure ("127.0.0.0/8", "Forwarded") == 0);
    status = gateway_fixture_exchange (TEST_PORT, forwarded, reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"127.0.0.1\",\"https\":false"));
    status = gateway_fixture_exchange (
        TEST_PORT,
        "GET /whoami HTTP/1.1\r\nHost: x\r\nForwarded: for=1.2.3.4;proto=http\r\n"
        "Forwarded: for=\"[2001:db8::5]:99\";proto=https\r\n\r\n",
        reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"ip\":\"2001:db8::5\",\"https\":true"));
    assert (gateway_http_trusted_proxies_configure ("", NULL) == 0);

    mg_stop (http);

    s_rate_limit_check ();
    s_forwarded_check ();
    s_slow_clients_check (verbose);
    s_cors_check (verbose);
    printf ("OK\n");
}
