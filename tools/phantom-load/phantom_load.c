//  phantom-load: load generator for PhantomWatch's sensor endpoint.
//
//  N keep-alive HTTP/1.1 connections spread over T threads, each thread with
//  its own epoll and its own connections, one request in flight per
//  connection (like wrk). Every reading carries readingId "<run>-<seq>", so
//  --verify can check that PostgreSQL holds exactly what was acknowledged,
//  and --retry can resend a reading without storing it twice.
//
//  Usage: phantom-load -f CREDENTIALS [-u URL] [-c CONNS] [-t THREADS]
//             [-d SECONDS | -n READINGS] [-r RATE] [-b BATCH] [-T TIMEOUT_MS]
//             [--retry] [--ids FILE] [--verify CONNINFO] [-v]
//         phantom-load --selftest

#include <arpa/inet.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#define S_BATCH_MAX         10000           //  above the gateway's 1000, to provoke 400/413
#define S_HEADER_MAX        (64 * 1024)     //  a response header larger than this is malformed
#define S_RESPONSE_MAX      (16 * 1024 * 1024)
#define S_ATTEMPTS_MAX      6               //  --retry: first try plus five retries
#define S_BACKOFF_BASE_US   100000          //  --retry: 100 ms, doubling ...
#define S_BACKOFF_CAP_US    2000000         //  ... up to 2 s (Retry-After is honoured up to this)
#define S_FIELD_MAX         200             //  longest deviceToken / portId we accept from -f

//  Final outcome of one reading; each reading ends in exactly one bucket.
enum {
    OUT_201, OUT_400, OUT_401, OUT_404, OUT_413, OUT_429, OUT_503, OUT_504,
    OUT_OTHER, OUT_CONNECT, OUT_TIMEOUT, OUT_COUNT, OUT_NONE = -1
};
static const char *s_outcome_names [OUT_COUNT] = {
    "201", "400", "401", "404", "413", "429", "503", "504", "other", "conn_errors", "timeouts"
};

static int
s_outcome_of_status (int status)
{
    switch (status) {
        case 201: return OUT_201;
        case 400: return OUT_400;
        case 401: return OUT_401;
        case 404: return OUT_404;
        case 413: return OUT_413;
        case 429: return OUT_429;
        case 503: return OUT_503;
        case 504: return OUT_504;
        default:  return OUT_OTHER;
    }
}

//  Outcomes after which the reading may still reach the database (the request
//  left us but no definite answer came back), and which --retry retries.
static bool
s_outcome_transient (int outcome)
{
    return outcome == OUT_503 || outcome == OUT_504
        || outcome == OUT_CONNECT || outcome == OUT_TIMEOUT;
}

static int64_t
s_now_us (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t
s_epoch_ms (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


//  --------------------------------------------------------------------------
//  Latency histogram in microseconds, HdrHistogram-like: exact below 2048 us,
//  then 1024 sub-buckets per power of two (better than 0.1 % precision), so
//  percentiles over any number of samples cost a fixed 250 KB per thread.

#define S_HIST_LINEAR   2048
#define S_HIST_SUB      1024
#define S_HIST_GROUPS   29                  //  covers values up to 2^40 us
#define S_HIST_SIZE     (S_HIST_LINEAR + S_HIST_GROUPS * S_HIST_SUB)
#define S_HIST_CLAMP    ((UINT64_C (1) << 40) - 1)

typedef struct {
    uint64_t counts [S_HIST_SIZE];
    uint64_t total;                         //  samples recorded
    uint64_t max;                           //  exact largest sample
} histogram_t;

static size_t
s_hist_index (uint64_t value)
{
    if (value > S_HIST_CLAMP)
        value = S_HIST_CLAMP;
    if (value < S_HIST_LINEAR)
        return (size_t) value;
    int shift = 63 - __builtin_clzll (value) - 10;     //  value >> shift is 1024..2047
    return S_HIST_LINEAR + (size_t) (shift - 1) * S_HIST_SUB
         + (size_t) ((value >> shift) - S_HIST_SUB);
}

//  Largest value that lands in the bucket, as HdrHistogram reports percentiles.
static uint64_t
s_hist_highest (size_t index)
{
    if (index < S_HIST_LINEAR)
        return index;
    int shift = (int) ((index - S_HIST_LINEAR) / S_HIST_SUB) + 1;
    uint64_t top = (index - S_HIST_LINEAR) % S_HIST_SUB + S_HIST_SUB;
    return (top << shift) + (UINT64_C (1) << shift) - 1;
}

static void
s_hist_record (histogram_t *self, uint64_t value)
{
    self->counts [s_hist_index (value)]++;
    self->total++;
    if (value > self->max)
        self->max = value;
}

static void
s_hist_merge (histogram_t *self, const histogram_t *other)
{
    for (size_t index = 0; index < S_HIST_SIZE; index++)
        self->counts [index] += other->counts [index];
    self->total += other->total;
    if (other->max > self->max)
        self->max = other->max;
}

//  The smallest recorded value v such that `percentile` % of samples are <= v
//  (within bucket precision); 0 when empty.
static uint64_t
s_hist_percentile (const histogram_t *self, double percentile)
{
    if (self->total == 0)
        return 0;
    uint64_t rank = (uint64_t) ceil (percentile / 100.0 * (double) self->total);
    if (rank < 1)
        rank = 1;
    if (rank > self->total)
        rank = self->total;
    uint64_t seen = 0;
    for (size_t index = 0; index < S_HIST_SIZE; index++) {
        seen += self->counts [index];
        if (seen >= rank) {
            uint64_t value = s_hist_highest (index);
            return value < self->max ? value : self->max;
        }
    }
    return self->max;
}


//  --------------------------------------------------------------------------
//  HTTP/1.1 response parsing: status line, headers, Content-Length body (or,
//  with Connection: close and no length, a body that runs to EOF).

typedef struct {
    int status;                             //  HTTP status code
    size_t size;                            //  bytes of the whole response
    size_t body_offset;                     //  where the body starts
    size_t body_size;                       //  bytes of body
    bool close;                             //  the server will close after it
    int retry_after_s;                      //  Retry-After in seconds, 0 if absent
} http_response_t;

static bool
s_header_is (const char *line, size_t length, const char *name)
{
    size_t name_length = strlen (name);
    return length > name_length && line [name_length] == ':'
        && strncasecmp (line, name, name_length) == 0;
}

//  True if the comma-separated header value holds the token (case-insensitive).
static bool
s_value_has_token (const char *value, size_t length, const char *token)
{
    size_t token_length = strlen (token);
    size_t index = 0;
    while (index < length) {
        while (index < length && (value [index] == ' ' || value [index] == '\t' || value [index] == ','))
            index++;
        size_t start = index;
        while (index < length && value [index] != ',')
            index++;
        size_t end = index;
        while (end > start && (value [end - 1] == ' ' || value [end - 1] == '\t'))
            end--;
        if (end - start == token_length && strncasecmp (value + start, token, token_length) == 0)
            return true;
    }
    return false;
}

//  Parses one response from the start of data. Returns 1 when complete (fills
//  response), 0 when more bytes are needed, -2 when malformed or unsupported
//  (chunked). eof says the peer closed, which ends a body without a length.
static int
s_http_parse (const char *data, size_t size, bool eof, http_response_t *response)
{
    memset (response, 0, sizeof *response);
    const char *end = (const char *) memmem (data, size, "\r\n\r\n", 4);
    if (!end)
        return size > S_HEADER_MAX ? -2 : 0;
    size_t header_size = (size_t) (end - data) + 4;
    if (header_size > S_HEADER_MAX)
        return -2;

    //  Status line: HTTP/1.x SSS reason
    if (header_size < 14 || memcmp (data, "HTTP/1.", 7) != 0
    || (data [7] != '0' && data [7] != '1') || data [8] != ' '
    ||  !isdigit ((unsigned char) data [9]) || !isdigit ((unsigned char) data [10])
    ||  !isdigit ((unsigned char) data [11])
    ||  (data [12] != ' ' && data [12] != '\r'))
        return -2;
    response->status = (data [9] - '0') * 100 + (data [10] - '0') * 10 + (data [11] - '0');
    if (response->status < 100)
        return -2;
    bool http10 = data [7] == '0';
    bool keep_alive = false;
    response->close = http10;

    bool has_length = false;
    uint64_t length = 0;
    const char *line = (const char *) memchr (data, '\n', header_size);
    if (line [-1] != '\r')
        return -2;
    line++;
    while (line < end + 2) {
        const char *eol = (const char *) memchr (line, '\n', (size_t) (end + 4 - line));
        if (!eol || eol == line || eol [-1] != '\r')
            return -2;
        size_t line_length = (size_t) (eol - 1 - line);
        if (line_length == 0)
            break;
        const char *colon = (const char *) memchr (line, ':', line_length);
        if (!colon)
            return -2;
        const char *value = colon + 1;
        size_t value_length = line_length - (size_t) (value - line);
        while (value_length && (*value == ' ' || *value == '\t')) {
            value++;
            value_length--;
        }
        while (value_length && (value [value_length - 1] == ' ' || value [value_length - 1] == '\t'))
            value_length--;

        if (s_header_is (line, line_length, "Content-Length")) {
            if (value_length == 0 || value_length > 12)
                return -2;
            uint64_t parsed = 0;
            for (size_t index = 0; index < value_length; index++) {
                if (!isdigit ((unsigned char) value [index]))
                    return -2;
                parsed = parsed * 10 + (uint64_t) (value [index] - '0');
            }
            if (has_length && parsed != length)
                return -2;                  //  conflicting lengths: a smuggling sign
            has_length = true;
            length = parsed;
        }
        else
        if (s_header_is (line, line_length, "Connection")) {
            if (s_value_has_token (value, value_length, "close"))
                response->close = true;
            if (s_value_has_token (value, value_length, "keep-alive"))
                keep_alive = true;
        }
        else
        if (s_header_is (line, line_length, "Transfer-Encoding"))
            return -2;                      //  the gateway never chunks; we do not either
        else
        if (s_header_is (line, line_length, "Retry-After")) {
            int seconds = 0;
            for (size_t index = 0; index < value_length && index < 6; index++) {
                if (!isdigit ((unsigned char) value [index]))
                    break;
                seconds = seconds * 10 + (value [index] - '0');
            }
            response->retry_after_s = seconds;
        }
        line = eol + 1;
    }
    if (http10 && keep_alive)
        response->close = false;
    response->body_offset = header_size;

    if (!has_length
    && (response->status / 100 == 1 || response->status == 204 || response->status == 304))
        has_length = true;                  //  no body by definition
    if (has_length) {
        if (length > S_RESPONSE_MAX)
            return -2;
        if (size - header_size < length)
            return 0;
        response->body_size = (size_t) length;
        response->size = header_size + (size_t) length;
        return 1;
    }
    if (!response->close)
        return -2;                          //  keep-alive without a length: cannot frame it
    if (!eof)
        return 0;
    response->body_size = size - header_size;
    response->size = size;
    return 1;
}


//  --------------------------------------------------------------------------
//  Response bodies

//  The gateway's answers are read by a direct scan when they have its exact
//  shape, and by jansson otherwise: at 500 readings per request jansson's
//  object per value was a third of the load generator's CPU, and this
//  tool's cost counts against the machine it measures.

//  Reads a JSON integer at *cursor (below end); advances past it. 0 or -1.
static int
s_scan_int (const char **cursor, const char *end, int64_t *value)
{
    const char *at = *cursor;
    bool negative = at < end && *at == '-';
    if (negative)
        at++;
    if (at >= end || *at < '0' || *at > '9')
        return -1;
    int64_t result = 0;
    int digits = 0;
    while (at < end && *at >= '0' && *at <= '9') {
        if (++digits > 18)
            return -1;
        result = result * 10 + (*at++ - '0');
    }
    if (at < end && (*at == '.' || *at == 'e' || *at == 'E'))
        return -1;
    *value = negative ? -result : result;
    *cursor = at;
    return 0;
}

//  Consumes literal at *cursor; 0, or -1 if it is not there.
static int
s_scan_literal (const char **cursor, const char *end, const char *literal)
{
    size_t length = strlen (literal);
    if ((size_t) (end - *cursor) < length || memcmp (*cursor, literal, length) != 0)
        return -1;
    *cursor += length;
    return 0;
}

//  Skips the rest of an object whose "{" is behind *cursor: strings (with
//  escapes) and nested objects and arrays. 0, or -1 if it does not end.
static int
s_scan_skip_object (const char **cursor, const char *end)
{
    int depth = 1;
    const char *at = *cursor;
    while (at < end) {
        char c = *at++;
        if (c == '"') {
            while (at < end && *at != '"')
                at += *at == '\\' ? 2 : 1;
            if (at >= end)
                return -1;
            at++;
        }
        else
        if (c == '{' || c == '[')
            depth++;
        else
        if ((c == '}' || c == ']') && --depth == 0) {
            *cursor = at;
            return 0;
        }
    }
    return -1;
}

static const char s_single_prefix [] =
    "{\"success\":true,\"message\":\"Sensor reading created successfully\","
    "\"data\":{\"reading\":{\"id\":";

//  Reads data.reading.id of a single reading's 201 answer; 0 if it has none.
static int64_t
s_single_reading_id (const char *body, size_t size)
{
    const char *cursor = body;
    const char *end = body + size;
    int64_t value;
    if (s_scan_literal (&cursor, end, s_single_prefix) == 0
    &&  s_scan_int (&cursor, end, &value) == 0 && cursor < end && *cursor == ',')
        return value;
    json_t *root = json_loadb (body, size, 0, NULL);
    json_t *id = json_object_get (json_object_get (json_object_get (root, "data"), "reading"), "id");
    value = json_is_integer (id) ? (int64_t) json_integer_value (id) : 0;
    json_decref (root);
    return value;
}

//  s_batch_results on the gateway's exact form: {"success":true,"data":
//  {"results":[{"index":I,"status":S[,"id":N]...},...],...}. 0, or -1 if
//  the text is not in that form (statuses and ids then hold junk).
static int
s_batch_results_scan (const char *body, size_t size, size_t count, int *statuses, int64_t *ids)
{
    const char *cursor = body;
    const char *end = body + size;
    if (s_scan_literal (&cursor, end, "{\"success\":true,\"data\":{\"results\":["))
        return -1;
    if (cursor < end && *cursor == ']')
        return 0;
    while (true) {
        int64_t index, status, id = 0;
        if (s_scan_literal (&cursor, end, "{\"index\":")
        ||  s_scan_int (&cursor, end, &index)
        ||  s_scan_literal (&cursor, end, ",\"status\":")
        ||  s_scan_int (&cursor, end, &status))
            return -1;
        if (s_scan_literal (&cursor, end, ",\"id\":") == 0 && s_scan_int (&cursor, end, &id))
            return -1;
        if (cursor < end && *cursor == '}')
            cursor++;
        else
        if (s_scan_skip_object (&cursor, end))
            return -1;
        if (index >= 0 && (uint64_t) index < count && status >= INT32_MIN && status <= INT32_MAX) {
            statuses [index] = (int) status;
            ids [index] = id;
        }
        if (cursor < end && *cursor == ']')
            return 0;
        if (s_scan_literal (&cursor, end, ","))
            return -1;
    }
}

//  Fills statuses [count] and ids [count] from a batch answer's
//  data.results[] (matched by "index"); entries the answer does not mention
//  stay 0. Returns 0, or -2 if the body is not a batch answer.
static int
s_batch_results (const char *body, size_t size, size_t count, int *statuses, int64_t *ids)
{
    for (size_t index = 0; index < count; index++) {
        statuses [index] = 0;
        ids [index] = 0;
    }
    if (s_batch_results_scan (body, size, count, statuses, ids) == 0)
        return 0;
    for (size_t index = 0; index < count; index++) {
        statuses [index] = 0;
        ids [index] = 0;
    }
    json_t *root = json_loadb (body, size, 0, NULL);
    json_t *results = json_object_get (json_object_get (root, "data"), "results");
    if (!json_is_array (results)) {
        json_decref (root);
        return -2;
    }
    size_t position;
    json_t *result;
    json_array_foreach (results, position, result) {
        json_t *index = json_object_get (result, "index");
        json_t *status = json_object_get (result, "status");
        if (!json_is_integer (index) || !json_is_integer (status))
            continue;
        json_int_t at = json_integer_value (index);
        if (at < 0 || (size_t) at >= count)
            continue;
        statuses [at] = (int) json_integer_value (status);
        json_t *id = json_object_get (result, "id");
        ids [at] = json_is_integer (id) ? (int64_t) json_integer_value (id) : 0;
    }
    json_decref (root);
    return 0;
}


//  --------------------------------------------------------------------------
//  Run-wide settings and state, shared by all threads

typedef struct {
    char *token;                            //  deviceToken
    char **ports;                           //  its portIds
    size_t port_count;
    atomic_size_t cursor;                   //  next port for batches of this device
} device_t;

typedef struct {
    size_t device;                          //  index into devices
    size_t port;                            //  index into that device's ports
} pair_t;

typedef struct {
    //  Settings
    char host [256];                        //  for connect and the Host header
    char port [16];
    char prefix [256];                      //  path before /api/..., without trailing /
    struct sockaddr_storage address;
    socklen_t address_length;
    int connections;
    int threads;
    double duration_s;
    int64_t total;                          //  -n readings, 0 = by duration
    double rate;                            //  readings/s over all connections, 0 = flat out
    int batch;
    int64_t timeout_us;
    bool retry;
    bool verbose;
    const char *ids_path;
    const char *verify;
    char run [17];                          //  hex run prefix of every readingId
    char head [640];                        //  request line and headers up to Content-Length
    size_t head_length;

    //  Credentials
    device_t *devices;
    size_t device_count;
    pair_t *pairs;                          //  every (device, port), in file order
    size_t pair_count;
    atomic_size_t pair_cursor;
    atomic_size_t device_cursor;

    //  Shared progress
    atomic_llong next_seq;                  //  next readingId sequence number
    atomic_bool stop;                       //  no new requests
    atomic_llong abort_at_us;               //  give up on requests in flight (0 = not yet)
    atomic_llong requests;                  //  responses received (progress line)
    atomic_llong acked;                     //  readings acknowledged (progress line)
    atomic_int running;                     //  workers still running
} run_t;

typedef struct {
    int64_t seq;
    int64_t id;
} ack_t;

typedef struct {
    void *items;
    size_t count;
    size_t capacity;
} vector_t;

static int
s_vector_push (vector_t *self, const void *item, size_t item_size)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 1024;
        void *items = realloc (self->items, capacity * item_size);
        if (!items)
            return -1;
        self->items = items;
        self->capacity = capacity;
    }
    memcpy ((char *) self->items + self->count * item_size, item, item_size);
    self->count++;
    return 0;
}

struct worker;

typedef enum {
    CONN_IDLE,                              //  no request; waits for next_us
    CONN_CONNECTING,
    CONN_SENDING,
    CONN_READING,
    CONN_BACKOFF                            //  --retry: waits for next_us to resend
} conn_state_t;

typedef struct {
    struct worker *worker;
    int fd;                                 //  -1 when not connected
    uint32_t events;                        //  epoll mask registered for fd
    conn_state_t state;
    uint64_t served;                        //  responses received on this fd
    int64_t next_us;                        //  when to start the next request / retry
    int64_t interval_us;                    //  pacing per request with -r, else 0

    //  The request in progress
    int64_t first_seq;                      //  readingIds first_seq .. first_seq+count-1
    size_t count;
    int attempt;                            //  0 = first try
    bool raced;                             //  already resent once after a keep-alive close
    bool maybe_stored;                      //  some attempt reached the server unanswered
    int8_t *outcomes;                       //  per reading: last outcome, OUT_NONE if none
    int64_t *ids;                           //  per reading: acknowledged id
    int *statuses;                          //  scratch for batch answers
    int64_t sent_us;                        //  start of this attempt
    int64_t deadline_us;                    //  this attempt times out here
    int retry_after_s;

    char *out;                              //  the whole request, resent unchanged on retry
    size_t out_size;
    size_t out_capacity;
    size_t out_sent;
    char *in;                               //  response bytes received so far
    size_t in_size;
    size_t in_capacity;
} conn_t;

typedef struct worker {
    run_t *run;
    int index;
    int epoll;
    conn_t *conns;
    int conn_count;
    uint64_t rng;                           //  xorshift state for the readings' values
    histogram_t *latency;
    uint64_t outcomes [OUT_COUNT];          //  final outcome per reading
    uint64_t requests;                      //  responses received
    uint64_t retries;
    uint64_t reconnects;
    int64_t last_response_us;               //  when the latest answer came
    vector_t acked;                         //  ack_t
    vector_t unknown;                       //  int64_t seq whose fate we do not know
    bool failed;                            //  out of memory
} worker_t;

static volatile sig_atomic_t s_interrupts = 0;

static void
s_signal_handler (int signal_value)
{
    (void) signal_value;
    s_interrupts++;
}

static uint64_t
s_random (worker_t *self)
{
    uint64_t x = self->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->rng = x;
    return x;
}

//  --------------------------------------------------------------------------
//  Building requests

static int
s_out_reserve (conn_t *self, size_t more)
{
    if (self->out_size + more <= self->out_capacity)
        return 0;
    size_t capacity = self->out_capacity ? self->out_capacity : 1024;
    while (capacity < self->out_size + more)
        capacity *= 2;
    char *out = (char *) realloc (self->out, capacity);
    if (!out)
        return -1;
    self->out = out;
    self->out_capacity = capacity;
    return 0;
}

//  Appends without formatting (room reserved by the caller).
static char *
s_put (char *out, const char *text, size_t length)
{
    memcpy (out, text, length);
    return out + length;
}

#define S_PUT_LITERAL(out, literal) s_put ((out), (literal), sizeof (literal) - 1)

static char *
s_put_uint (char *out, uint64_t value)
{
    char digits [24];
    size_t at = sizeof digits;
    do {
        digits [--at] = (char) ('0' + value % 10);
        value /= 10;
    } while (value);
    return s_put (out, digits + at, sizeof digits - at);
}

//  value / 10^decimals with all decimals written (value >= 0).
static char *
s_put_fixed (char *out, uint64_t value, int decimals)
{
    uint64_t scale = 1;
    for (int index = 0; index < decimals; index++)
        scale *= 10;
    out = s_put_uint (out, value / scale);
    *out++ = '.';
    uint64_t fraction = value % scale;
    for (int index = decimals - 1; index >= 0; index--) {
        out [index] = (char) ('0' + fraction % 10);
        fraction /= 10;
    }
    return out + decimals;
}

//  One reading's fields after portId; values vary a little around a 46 W
//  load. Fixed-point integers written by hand: printf of doubles was most
//  of this tool's CPU at 500 readings per request.
#define S_READING_MAX 200                   //  longest text s_out_reading writes

static int
s_out_reading (conn_t *self, int64_t seq, int64_t now_ms)
{
    worker_t *worker = self->worker;
    if (s_out_reserve (self, S_READING_MAX))
        return -1;
    uint64_t random = s_random (worker);
    uint64_t voltage = 2280 + random % 41;              //  228.0 .. 232.0 V, tenths
    uint64_t current = 150 + (random >> 16) % 101;      //  0.150 .. 0.250 A, thousandths
    uint64_t power = (voltage * current + 50) / 100;    //  W, hundredths
    char *out = self->out + self->out_size;
    out = S_PUT_LITERAL (out, "\"voltage\":");
    out = s_put_fixed (out, voltage, 1);
    out = S_PUT_LITERAL (out, ",\"current\":");
    out = s_put_fixed (out, current, 3);
    out = S_PUT_LITERAL (out, ",\"power\":");
    out = s_put_fixed (out, power, 2);
    out = S_PUT_LITERAL (out, ",\"readingId\":\"");
    out = s_put (out, worker->run->run, strlen (worker->run->run));
    *out++ = '-';
    out = s_put_uint (out, (uint64_t) seq);
    out = S_PUT_LITERAL (out, "\",\"timestamp\":");
    out = s_put_uint (out, (uint64_t) now_ms);
    *out++ = '}';
    self->out_size = (size_t) (out - self->out);
    return 0;
}

//  Appends {"portId":"<port>", (a comma first unless first).
static int
s_out_port (conn_t *self, const char *port, bool first)
{
    size_t length = strlen (port);
    if (s_out_reserve (self, length + 16))
        return -1;
    char *out = self->out + self->out_size;
    if (!first)
        *out++ = ',';
    out = S_PUT_LITERAL (out, "{\"portId\":\"");
    out = s_put (out, port, length);
    out = S_PUT_LITERAL (out, "\",");
    self->out_size = (size_t) (out - self->out);
    return 0;
}

//  Writes the part of every request before its Content-Length value once,
//  so building a request is copying, not formatting. 0, or -1 if too long.
static int
s_run_prepare_head (run_t *run)
{
    const char *path = run->batch > 1 ? "/api/sensor/readings" : "/api/sensor/reading";
    int length = snprintf (run->head, sizeof run->head,
                           "POST %s%s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: application/json\r\n"
                           "Content-Length: ", run->prefix, path, run->host, run->port);
    if (length < 0 || (size_t) length >= sizeof run->head)
        return -1;
    run->head_length = (size_t) length;
    return 0;
}

//  Builds the request for readings first_seq .. first_seq+count-1 into out.
//  The header's Content-Length (10 characters, space-padded like "%10zu")
//  is patched in once the body is written.
static int
s_build_request (conn_t *self)
{
    run_t *run = self->worker->run;
    int64_t now_ms = s_epoch_ms ();
    self->out_size = 0;
    //  Head, padded length, token and (single) portId: fields are at most S_FIELD_MAX.
    if (s_out_reserve (self, run->head_length + 2 * S_FIELD_MAX + 64))
        return -1;
    char *out = s_put (self->out, run->head, run->head_length);
    size_t length_at = (size_t) (out - self->out);
    out = S_PUT_LITERAL (out, "          \r\n\r\n");
    size_t body_at = (size_t) (out - self->out);
    out = S_PUT_LITERAL (out, "{\"deviceToken\":\"");

    if (run->batch > 1) {
        device_t *device = &run->devices [atomic_fetch_add (&run->device_cursor, 1) % run->device_count];
        size_t port = atomic_fetch_add (&device->cursor, self->count);
        out = s_put (out, device->token, strlen (device->token));
        out = S_PUT_LITERAL (out, "\",\"readings\":[");
        self->out_size = (size_t) (out - self->out);
        for (size_t index = 0; index < self->count; index++)
            if (s_out_port (self, device->ports [(port + index) % device->port_count], index == 0)
            ||  s_out_reading (self, self->first_seq + (int64_t) index, now_ms))
                return -1;
        if (s_out_reserve (self, 2))
            return -1;
        out = S_PUT_LITERAL (self->out + self->out_size, "]}");
        self->out_size = (size_t) (out - self->out);
    }
    else {
        pair_t *pair = &run->pairs [atomic_fetch_add (&run->pair_cursor, 1) % run->pair_count];
        device_t *device = &run->devices [pair->device];
        const char *port = device->ports [pair->port];
        out = s_put (out, device->token, strlen (device->token));
        out = S_PUT_LITERAL (out, "\",\"portId\":\"");
        out = s_put (out, port, strlen (port));
        out = S_PUT_LITERAL (out, "\",");
        self->out_size = (size_t) (out - self->out);
        if (s_out_reading (self, self->first_seq, now_ms))
            return -1;
    }
    size_t body_size = self->out_size - body_at;
    char *digit = self->out + length_at + 10;
    do {
        *--digit = (char) ('0' + body_size % 10);
        body_size /= 10;
    } while (body_size && digit > self->out + length_at);
    return 0;
}


//  --------------------------------------------------------------------------
//  Connections

//  A connected socket is watched for input and the peer's close all the time
//  (S_WATCH); EPOLLOUT is added only while a request is partly sent. Each
//  change is an epoll_ctl system call, and switching per request was a fifth
//  of this tool's system time.
#define S_WATCH (EPOLLIN | EPOLLRDHUP)

static void
s_conn_watch (conn_t *self, uint32_t events)
{
    if (self->fd < 0 || self->events == events)
        return;
    struct epoll_event event = { .events = events, .data.ptr = self };
    if (epoll_ctl (self->worker->epoll, EPOLL_CTL_MOD, self->fd, &event) == 0)
        self->events = events;
}

static void
s_conn_close (conn_t *self)
{
    if (self->fd >= 0) {
        epoll_ctl (self->worker->epoll, EPOLL_CTL_DEL, self->fd, NULL);
        close (self->fd);
        self->fd = -1;
        self->events = 0;
    }
}

//  Starts a non-blocking connect. Returns 0, or -1 if it failed at once.
static int
s_conn_connect (conn_t *self)
{
    run_t *run = self->worker->run;
    int fd = socket (run->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect (fd, (struct sockaddr *) &run->address, run->address_length) != 0
    &&  errno != EINPROGRESS) {
        close (fd);
        return -1;
    }
    struct epoll_event event = { .events = EPOLLOUT, .data.ptr = self };
    if (epoll_ctl (self->worker->epoll, EPOLL_CTL_ADD, fd, &event) != 0) {
        close (fd);
        return -1;
    }
    self->fd = fd;
    self->events = EPOLLOUT;
    self->served = 0;
    self->state = CONN_CONNECTING;
    return 0;
}

static void s_conn_fail (conn_t *self, int outcome, int64_t now);

//  Writes what it can of the request; once all is out, waits for the answer.
//  Listens for input while sending too: the gateway answers 413 early.
static void
s_conn_send (conn_t *self, int64_t now)
{
    while (self->out_sent < self->out_size) {
        ssize_t sent = send (self->fd, self->out + self->out_sent,
                             self->out_size - self->out_sent, MSG_NOSIGNAL);
        if (sent > 0)
            self->out_sent += (size_t) sent;
        else
        if (sent < 0 && errno == EINTR)
            continue;
        else
        if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s_conn_watch (self, S_WATCH | EPOLLOUT);
            return;
        }
        else {
            //  The server may have answered before closing (e.g. 413); read it if so.
            self->state = CONN_READING;
            s_conn_watch (self, S_WATCH);
            return;
        }
    }
    self->state = CONN_READING;
    s_conn_watch (self, S_WATCH);           //  no call unless the send was partial
    (void) now;
}

//  Sends (or resends) the request on the open connection or a new one.
static void
s_conn_attempt (conn_t *self, int64_t now)
{
    self->sent_us = now;
    self->deadline_us = now + self->worker->run->timeout_us;
    self->out_sent = 0;
    self->in_size = 0;
    self->retry_after_s = 0;
    if (self->fd < 0) {
        if (s_conn_connect (self))
            s_conn_fail (self, OUT_CONNECT, now);
        return;
    }
    self->state = CONN_SENDING;
    s_conn_send (self, now);
}

static int
s_record_ack (worker_t *self, int64_t seq, int64_t id)
{
    ack_t ack = { seq, id };
    atomic_fetch_add_explicit (&self->run->acked, 1, memory_order_relaxed);
    return s_vector_push (&self->acked, &ack, sizeof ack);
}

//  The request is over: counts each reading's final outcome and frees the
//  connection for the next one.
static void
s_conn_finish (conn_t *self, int64_t now)
{
    worker_t *worker = self->worker;
    for (size_t index = 0; index < self->count; index++) {
        int outcome = self->outcomes [index];
        if (outcome == OUT_NONE)
            outcome = OUT_TIMEOUT;
        worker->outcomes [outcome]++;
        int64_t seq = self->first_seq + (int64_t) index;
        if (outcome == OUT_201) {
            if (s_record_ack (worker, seq, self->ids [index]))
                worker->failed = true;
        }
        else
        if (self->maybe_stored && s_outcome_transient (outcome)) {
            if (s_vector_push (&worker->unknown, &seq, sizeof seq))
                worker->failed = true;
        }
    }
    bool refused = self->count > 0 && self->outcomes [0] == OUT_CONNECT && self->out_sent == 0;
    self->count = 0;
    self->state = CONN_IDLE;
    if (self->fd >= 0)
        s_conn_watch (self, S_WATCH);       //  notice the server closing it
    if (self->interval_us == 0)
        //  A refused connect would fail again at once: do not spin on it.
        self->next_us = refused ? now + 100000 : now;
    //  Paced: next_us already holds the schedule; after a long stall do not
    //  fire a burst to catch up, just resume.
    else
    if (self->next_us < now - 1000000)
        self->next_us = now;
}

static bool
s_conn_pending (conn_t *self, bool *transient)
{
    bool pending = false;
    *transient = false;
    for (size_t index = 0; index < self->count; index++)
        if (self->outcomes [index] != OUT_201) {
            pending = true;
            if (self->outcomes [index] == OUT_NONE || s_outcome_transient (self->outcomes [index]))
                *transient = true;
        }
    return pending;
}

//  After an attempt: retry what may succeed on retry, else finish.
static void
s_conn_after_attempt (conn_t *self, int64_t now)
{
    run_t *run = self->worker->run;
    bool transient;
    bool pending = s_conn_pending (self, &transient);
    int64_t abort_at = atomic_load (&run->abort_at_us);
    if (pending && transient && run->retry && self->attempt + 1 < S_ATTEMPTS_MAX
    &&  (abort_at == 0 || now < abort_at)) {
        int64_t backoff = (int64_t) S_BACKOFF_BASE_US << self->attempt;
        if (self->retry_after_s > 0)
            backoff = (int64_t) self->retry_after_s * 1000000;
        if (backoff > S_BACKOFF_CAP_US)
            backoff = S_BACKOFF_CAP_US;
        //  Jitter, so connections that failed together do not retry together.
        backoff = backoff / 2 + (int64_t) (s_random (self->worker) % (uint64_t) (backoff / 2 + 1));
        self->attempt++;
        self->worker->retries++;
        self->state = CONN_BACKOFF;
        self->next_us = now + backoff;
        if (self->fd >= 0)
            s_conn_watch (self, S_WATCH);
    }
    else
        s_conn_finish (self, now);
}

//  The attempt failed without an answer: marks the readings not yet
//  acknowledged and decides between retry and giving up.
static void
s_conn_fail (conn_t *self, int outcome, int64_t now)
{
    if (self->out_sent > 0)
        self->maybe_stored = true;
    s_conn_close (self);
    for (size_t index = 0; index < self->count; index++)
        if (self->outcomes [index] != OUT_201)
            self->outcomes [index] = (int8_t) outcome;
    s_conn_after_attempt (self, now);
}

static void
s_conn_response (conn_t *self, const http_response_t *response, int64_t now)
{
    worker_t *worker = self->worker;
    worker->requests++;
    worker->last_response_us = now;
    atomic_fetch_add_explicit (&worker->run->requests, 1, memory_order_relaxed);
    s_hist_record (worker->latency, (uint64_t) (now - self->sent_us));
    self->served++;
    self->retry_after_s = response->retry_after_s;
    const char *body = self->in + response->body_offset;

    if (worker->run->batch > 1 && response->status == 200) {
        if (s_batch_results (body, response->body_size, self->count, self->statuses, self->ids) == 0) {
            for (size_t index = 0; index < self->count; index++)
                if (self->outcomes [index] != OUT_201) {
                    int status = self->statuses [index];
                    self->outcomes [index] = (int8_t) (status == 201 && self->ids [index] <= 0
                                                       ? OUT_OTHER : s_outcome_of_status (status));
                    //  A reading answered 503/504 inside a batch may still have been stored.
                    if (self->outcomes [index] == OUT_503 || self->outcomes [index] == OUT_504)
                        self->maybe_stored = true;
                }
        }
        else
            for (size_t index = 0; index < self->count; index++)
                if (self->outcomes [index] != OUT_201)
                    self->outcomes [index] = OUT_OTHER;
    }
    else {
        int outcome = s_outcome_of_status (response->status);
        if (outcome == OUT_201 && worker->run->batch <= 1) {
            self->ids [0] = s_single_reading_id (body, response->body_size);
            if (self->ids [0] <= 0)
                outcome = OUT_OTHER;        //  a 201 without an id breaks the contract
        }
        else
        if (outcome == OUT_201)
            outcome = OUT_OTHER;            //  batches answer 200
        for (size_t index = 0; index < self->count; index++)
            if (self->outcomes [index] != OUT_201)
                self->outcomes [index] = (int8_t) outcome;
    }
    if (s_outcome_of_status (response->status) == OUT_503
    ||  s_outcome_of_status (response->status) == OUT_504)
        self->maybe_stored = true;
    //  With the request not fully sent (early answer) the stream is out of step.
    if (response->close || self->out_sent < self->out_size || response->size < self->in_size)
        s_conn_close (self);
    self->in_size = 0;
    s_conn_after_attempt (self, now);
}

//  Reads what is there; handles a complete answer or the peer closing.
//  Stops reading as soon as the answer is complete, and when a recv did not
//  fill the buffer (the socket had no more): a further recv would only say
//  EAGAIN, one more system call per request. Bytes that come later wake
//  epoll again (level-triggered).
static void
s_conn_read (conn_t *self, int64_t now)
{
    bool eof = false;
    while (true) {
        if (self->in_capacity - self->in_size < 4096) {
            size_t capacity = self->in_capacity ? self->in_capacity * 2 : 8192;
            if (capacity > S_RESPONSE_MAX + S_HEADER_MAX) {
                s_conn_fail (self, OUT_OTHER, now);
                return;
            }
            char *in = (char *) realloc (self->in, capacity);
            if (!in) {
                self->worker->failed = true;
                s_conn_fail (self, OUT_OTHER, now);
                return;
            }
            self->in = in;
            self->in_capacity = capacity;
        }
        size_t room = self->in_capacity - self->in_size;
        ssize_t received = recv (self->fd, self->in + self->in_size, room, 0);
        if (received > 0) {
            self->in_size += (size_t) received;
            if ((size_t) received < room)
                break;
            //  A full buffer: there may be more; a complete answer ends here though.
            http_response_t response;
            if (s_http_parse (self->in, self->in_size, false, &response) != 0)
                break;
        }
        else
        if (received < 0 && errno == EINTR)
            continue;
        else
        if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else {
            eof = true;                     //  closed or reset
            break;
        }
    }
    http_response_t response;
    int rc = s_http_parse (self->in, self->in_size, eof, &response);
    if (rc == 1) {
        s_conn_response (self, &response, now);
        return;
    }
    if (rc == -2) {
        s_conn_fail (self, OUT_OTHER, now);
        return;
    }
    if (!eof)
        return;
    //  A keep-alive connection the server closed just as we reused it: the
    //  request never got an answer. Resending it is safe (readingIds make it
    //  idempotent) and is what every HTTP client does; once per request.
    if (self->in_size == 0 && self->served > 0 && !self->raced) {
        self->raced = true;
        self->worker->reconnects++;
        if (self->out_sent > 0)
            self->maybe_stored = true;
        s_conn_close (self);
        s_conn_attempt (self, now);
        return;
    }
    s_conn_fail (self, OUT_CONNECT, now);
}

//  Starts the next request if one is due; returns false if the run issues no more.
static bool
s_conn_start (conn_t *self, int64_t now)
{
    run_t *run = self->worker->run;
    if (atomic_load (&run->stop))
        return false;
    int64_t first = atomic_fetch_add (&run->next_seq, run->batch);
    int64_t count = run->batch;
    if (run->total > 0) {
        if (first >= run->total) {
            atomic_store (&run->stop, true);
            return false;
        }
        if (count > run->total - first)
            count = run->total - first;
    }
    self->first_seq = first;
    self->count = (size_t) count;
    self->attempt = 0;
    self->raced = false;
    self->maybe_stored = false;
    for (size_t index = 0; index < self->count; index++) {
        self->outcomes [index] = OUT_NONE;
        self->ids [index] = 0;
    }
    if (self->interval_us > 0)
        self->next_us += self->interval_us;
    if (s_build_request (self)) {
        self->worker->failed = true;
        s_conn_fail (self, OUT_OTHER, now);
        return true;
    }
    s_conn_attempt (self, now);
    return true;
}

//  Handles one epoll event on the connection.
static void
s_conn_event (conn_t *self, uint32_t events, int64_t now)
{
    switch (self->state) {
        case CONN_CONNECTING: {
            int error = 0;
            socklen_t length = sizeof error;
            if (getsockopt (self->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0
            ||  (events & (EPOLLERR | EPOLLHUP))) {
                s_conn_fail (self, OUT_CONNECT, now);
                return;
            }
            self->state = CONN_SENDING;
            s_conn_send (self, now);
            break;
        }
        case CONN_SENDING:
            if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                s_conn_read (self, now);
            else
            if (events & EPOLLOUT)
                s_conn_send (self, now);
            break;
        case CONN_READING:
            s_conn_read (self, now);
            break;
        case CONN_IDLE:
        case CONN_BACKOFF: {
            //  Nothing is expected between requests: the server closed the
            //  connection (keep-alive timeout) or sent garbage. Drop it.
            char scratch [256];
            ssize_t received = recv (self->fd, scratch, sizeof scratch, 0);
            if (received < 0 && (errno == EAGAIN || errno == EINTR))
                break;
            s_conn_close (self);
            break;
        }
    }
}


//  --------------------------------------------------------------------------
//  Worker threads

//  When the connection next needs the worker: its deadline, its next request
//  or retry, or never (idle once the run stops issuing).
static int64_t
s_conn_due (conn_t *self)
{
    switch (self->state) {
        case CONN_IDLE:
            return atomic_load (&self->worker->run->stop) ? INT64_MAX : self->next_us;
        case CONN_BACKOFF:
            return self->next_us;
        default:
            return self->deadline_us;
    }
}

static void *
s_worker_run (void *args)
{
    worker_t *self = (worker_t *) args;
    run_t *run = self->run;
    struct epoll_event events [256];
    int64_t last_scan = 0;
    int64_t wake = 0;                       //  earliest deadline or due time seen

    int64_t start = s_now_us ();
    for (int index = 0; index < self->conn_count; index++) {
        conn_t *conn = &self->conns [index];
        //  Stagger paced connections across one interval so they do not fire together.
        conn->next_us = start + (conn->interval_us > 0
                                 ? conn->interval_us * index / self->conn_count : 0);
    }
    while (true) {
        int64_t now = s_now_us ();
        int64_t abort_at = atomic_load (&run->abort_at_us);
        bool aborting = abort_at > 0 && now >= abort_at;

        //  Scan for due requests and deadlines when one is due, and at
        //  least every 50 ms to see the stop flags.
        if (now >= wake || now - last_scan >= 50000 || aborting) {
            bool busy = false;
            last_scan = now;
            wake = now + 50000;
            for (int index = 0; index < self->conn_count; index++) {
                conn_t *conn = &self->conns [index];
                if (conn->state == CONN_CONNECTING || conn->state == CONN_SENDING
                ||  conn->state == CONN_READING) {
                    if (aborting || now >= conn->deadline_us)
                        s_conn_fail (conn, OUT_TIMEOUT, now);
                }
                if (conn->state == CONN_BACKOFF && (aborting || now >= conn->next_us)) {
                    if (aborting)
                        s_conn_finish (conn, now);
                    else
                        s_conn_attempt (conn, now);
                }
                if (conn->state == CONN_IDLE && now >= conn->next_us)
                    s_conn_start (conn, now);
                if (conn->state != CONN_IDLE)
                    busy = true;
                int64_t due = s_conn_due (conn);
                if (due < wake)
                    wake = due;
            }
            if (!busy && atomic_load (&run->stop))
                break;
        }
        int timeout_ms = wake > now ? (int) ((wake - now + 999) / 1000) : 0;
        int ready = epoll_wait (self->epoll, events, 256, timeout_ms);
        now = s_now_us ();
        for (int index = 0; index < ready; index++) {
            conn_t *conn = (conn_t *) events [index].data.ptr;
            s_conn_event (conn, events [index].events, now);
            //  The next request goes at once when due, without waiting for a scan.
            if (conn->state == CONN_IDLE && now >= conn->next_us)
                s_conn_start (conn, now);
            int64_t due = s_conn_due (conn);
            if (due < wake)
                wake = due;
        }
    }
    for (int index = 0; index < self->conn_count; index++)
        s_conn_close (&self->conns [index]);
    atomic_fetch_sub (&run->running, 1);
    return NULL;
}

static void
s_worker_destroy (worker_t *self)
{
    if (!self->run)
        return;                             //  never initialised
    for (int index = 0; index < self->conn_count; index++) {
        conn_t *conn = &self->conns [index];
        s_conn_close (conn);
        free (conn->outcomes);
        free (conn->ids);
        free (conn->statuses);
        free (conn->out);
        free (conn->in);
    }
    free (self->conns);
    free (self->latency);
    free (self->acked.items);
    free (self->unknown.items);
    if (self->epoll >= 0)
        close (self->epoll);
}

static int
s_worker_init (worker_t *self, run_t *run, int index, int conn_count)
{
    memset (self, 0, sizeof *self);
    self->run = run;
    self->index = index;
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    self->conn_count = conn_count;
    self->conns = (conn_t *) calloc ((size_t) conn_count, sizeof (conn_t));
    self->latency = (histogram_t *) calloc (1, sizeof (histogram_t));
    if (getrandom (&self->rng, sizeof self->rng, 0) != sizeof self->rng || self->rng == 0)
        self->rng = 0x9e3779b97f4a7c15ULL + (uint64_t) index;
    if (self->conns)
        for (int at = 0; at < conn_count; at++)
            self->conns [at].fd = -1;
    if (self->epoll < 0 || !self->conns || !self->latency)
        return -1;
    //  Per-connection pacing: the rate split evenly, each connection's
    //  requests spaced by batch / (rate / connections).
    int64_t interval = run->rate > 0
                     ? (int64_t) (1e6 * run->batch * run->connections / run->rate) : 0;
    if (run->rate > 0 && interval < 1)
        interval = 1;
    for (int at = 0; at < conn_count; at++) {
        conn_t *conn = &self->conns [at];
        conn->worker = self;
        conn->fd = -1;
        conn->interval_us = interval;
        conn->outcomes = (int8_t *) calloc ((size_t) run->batch, sizeof (int8_t));
        conn->ids = (int64_t *) calloc ((size_t) run->batch, sizeof (int64_t));
        conn->statuses = (int *) calloc ((size_t) run->batch, sizeof (int));
        if (!conn->outcomes || !conn->ids || !conn->statuses)
            return -1;
    }
    return 0;
}


//  --------------------------------------------------------------------------
//  Set-up: URL, credentials

static int
s_parse_url (run_t *run, const char *url)
{
    if (strncmp (url, "http://", 7) != 0) {
        fprintf (stderr, "phantom-load: only http:// URLs are supported: %s\n", url);
        return -1;
    }
    const char *authority = url + 7;
    const char *slash = strchr (authority, '/');
    size_t authority_length = slash ? (size_t) (slash - authority) : strlen (authority);
    const char *colon = memchr (authority, ':', authority_length);
    size_t host_length = colon ? (size_t) (colon - authority) : authority_length;
    if (host_length == 0 || host_length >= sizeof run->host) {
        fprintf (stderr, "phantom-load: bad host in %s\n", url);
        return -1;
    }
    memcpy (run->host, authority, host_length);
    run->host [host_length] = 0;
    size_t port_length = colon ? authority_length - host_length - 1 : 2;
    if (port_length == 0 || port_length >= sizeof run->port) {
        fprintf (stderr, "phantom-load: bad port in %s\n", url);
        return -1;
    }
    snprintf (run->port, sizeof run->port, "%.*s", (int) port_length, colon ? colon + 1 : "80");
    snprintf (run->prefix, sizeof run->prefix, "%s", slash ? slash : "");
    size_t prefix_length = strlen (run->prefix);
    while (prefix_length > 0 && run->prefix [prefix_length - 1] == '/')
        run->prefix [--prefix_length] = 0;

    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *result = NULL;
    int rc = getaddrinfo (run->host, run->port, &hints, &result);
    if (rc != 0 || !result) {
        fprintf (stderr, "phantom-load: cannot resolve %s:%s: %s\n", run->host, run->port,
                 gai_strerror (rc));
        return -1;
    }
    memcpy (&run->address, result->ai_addr, result->ai_addrlen);
    run->address_length = result->ai_addrlen;
    freeaddrinfo (result);
    return 0;
}

//  A token or portId goes into JSON unescaped, so it must need no escaping.
static bool
s_plain_field (const char *text)
{
    size_t length = strlen (text);
    if (length == 0 || length > S_FIELD_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (text [index] <= 0x20 || text [index] > 0x7e || text [index] == '"' || text [index] == '\\')
            return false;
    return true;
}

//  Loads "<deviceToken> <portId>" lines, grouping ports by token.
static int
s_load_credentials (run_t *run, const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        fprintf (stderr, "phantom-load: cannot open %s: %s\n", path, strerror (errno));
        return -1;
    }
    char line [1024];
    int number = 0;
    int rc = 0;
    while (fgets (line, sizeof line, file)) {
        number++;
        char token [1024], port [1024], rest [2];
        int fields = sscanf (line, "%1023s %1023s %1s", token, port, rest);
        if (fields <= 0 || token [0] == '#')
            continue;
        if (fields != 2 || !s_plain_field (token) || !s_plain_field (port)) {
            fprintf (stderr, "phantom-load: %s:%d: expected \"<deviceToken> <portId>\"\n", path, number);
            rc = -1;
            break;
        }
        size_t device = 0;
        while (device < run->device_count && strcmp (run->devices [device].token, token) != 0)
            device++;
        if (device == run->device_count) {
            device_t *devices = realloc (run->devices, (run->device_count + 1) * sizeof (device_t));
            if (!devices) {
                rc = -1;
                break;
            }
            run->devices = devices;
            memset (&devices [device], 0, sizeof (device_t));
            devices [device].token = strdup (token);
            run->device_count++;
        }
        device_t *entry = &run->devices [device];
        char **ports = realloc (entry->ports, (entry->port_count + 1) * sizeof (char *));
        pair_t *pairs = realloc (run->pairs, (run->pair_count + 1) * sizeof (pair_t));
        if (ports)
            entry->ports = ports;
        if (pairs)
            run->pairs = pairs;
        if (!ports || !pairs || !entry->token) {
            rc = -1;
            break;
        }
        entry->ports [entry->port_count] = strdup (port);
        if (!entry->ports [entry->port_count]) {
            rc = -1;
            break;
        }
        run->pairs [run->pair_count++] = (pair_t) { device, entry->port_count++ };
    }
    fclose (file);
    if (rc == 0 && run->pair_count == 0) {
        fprintf (stderr, "phantom-load: %s holds no credentials\n", path);
        rc = -1;
    }
    return rc;
}

static void
s_free_credentials (run_t *run)
{
    for (size_t device = 0; device < run->device_count; device++) {
        for (size_t port = 0; port < run->devices [device].port_count; port++)
            free (run->devices [device].ports [port]);
        free (run->devices [device].ports);
        free (run->devices [device].token);
    }
    free (run->devices);
    free (run->pairs);
}


//  --------------------------------------------------------------------------
//  Verification against PostgreSQL

static int
s_compare_ack (const void *left, const void *right)
{
    int64_t a = ((const ack_t *) left)->seq, b = ((const ack_t *) right)->seq;
    return (a > b) - (a < b);
}

static int
s_compare_seq (const void *left, const void *right)
{
    int64_t a = *(const int64_t *) left, b = *(const int64_t *) right;
    return (a > b) - (a < b);
}

typedef struct {
    int64_t stored;                         //  reading_keys rows with the run's prefix
    int64_t present;                        //  of the acked, stored with a readings row
    int64_t lost;                           //  acked but no key or no readings row
    int64_t extra;                          //  stored, never acked, fate unknown (allowed)
    int64_t unexpected;                     //  stored, never acked, though refused or never sent
    int64_t duplicates;                     //  keys stored twice, or under another id than acked
} verify_t;

//  Compares the database with the sorted acked[] and unknown[] lists.
//  Returns 0, or -1 if the database could not be read.
static int
s_verify (run_t *run, const ack_t *acked, size_t acked_count,
          const int64_t *unknown, size_t unknown_count, verify_t *result)
{
    memset (result, 0, sizeof *result);
    const char *keywords [] = { "dbname", "connect_timeout", NULL };
    const char *values [] = { run->verify, "10", NULL };
    PGconn *db = PQconnectdbParams (keywords, values, 1);
    if (PQstatus (db) != CONNECTION_OK) {
        fprintf (stderr, "phantom-load: verify: cannot connect: %s", PQerrorMessage (db));
        PQfinish (db);
        return -1;
    }
    PQclear (PQexec (db, "SET statement_timeout = '120s'"));
    char pattern [32];
    snprintf (pattern, sizeof pattern, "%s-%%", run->run);
    const char *params [] = { pattern };
    //  A hash join: readings has no index on id alone.
    PGresult *rows = PQexecParams (db,
        "SELECT k.reading_key, k.reading_id, r.id IS NOT NULL"
        "  FROM reading_keys k LEFT JOIN readings r ON r.id = k.reading_id"
        " WHERE k.reading_key LIKE $1", 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (rows) != PGRES_TUPLES_OK) {
        fprintf (stderr, "phantom-load: verify: query failed: %s", PQerrorMessage (db));
        PQclear (rows);
        PQfinish (db);
        return -1;
    }
    int row_count = PQntuples (rows);
    uint8_t *seen = (uint8_t *) calloc (acked_count + 1, 1);
    size_t prefix_length = strlen (run->run) + 1;
    for (int row = 0; row < row_count && seen; row++) {
        result->stored++;
        const char *key = PQgetvalue (rows, row, 0);
        int64_t id = strtoll (PQgetvalue (rows, row, 1), NULL, 10);
        bool has_reading = PQgetvalue (rows, row, 2) [0] == 't';
        char *end = NULL;
        ack_t probe = { strtoll (key + prefix_length, &end, 10), 0 };
        const ack_t *ack = (strlen (key) > prefix_length && end && *end == 0)
                         ? bsearch (&probe, acked, acked_count, sizeof (ack_t), s_compare_ack) : NULL;
        if (ack) {
            size_t at = (size_t) (ack - acked);
            if (seen [at]++ || ack->id != id)
                result->duplicates++;
            else
            if (has_reading)
                result->present++;
        }
        else
        if (bsearch (&probe.seq, unknown, unknown_count, sizeof (int64_t), s_compare_seq))
            result->extra++;
        else
            result->unexpected++;
    }
    result->lost = (int64_t) acked_count - result->present;
    if (result->lost < 0)
        result->lost = 0;
    free (seen);
    PQclear (rows);
    PQfinish (db);
    return 0;
}


//  --------------------------------------------------------------------------
//  Self-test: the HTTP parser, batch answers, percentiles

#define S_CHECK(condition) \
    do { if (!(condition)) { fprintf (stderr, "selftest: FAILED %s:%d: %s\n", \
                                      __FILE__, __LINE__, #condition); return 1; } } while (0)

static int
phantom_load_test (bool verbose)
{
    if (verbose)
        printf (" * phantom_load: ");
    http_response_t response;

    //  A gateway 201, whole, followed by the next response's first bytes.
    const char *created =
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 29\r\n"
        "Cache-Control: no-store\r\n\r\n"
        "{\"data\":{\"reading\":{\"id\":7}}}HTTP/1.1 200";
    size_t created_size = strlen (created);
    S_CHECK (s_http_parse (created, created_size, false, &response) == 1);
    S_CHECK (response.status == 201);
    S_CHECK (response.body_size == 29);
    S_CHECK (response.size == created_size - strlen ("HTTP/1.1 200"));
    S_CHECK (!response.close);
    S_CHECK (s_single_reading_id (created + response.body_offset, response.body_size) == 7);

    //  Every prefix of it is incomplete, never malformed.
    for (size_t size = 0; size < response.size; size++)
        S_CHECK (s_http_parse (created, size, false, &response) == 0);

    //  503 with Retry-After and Connection: close, mixed case and spacing.
    const char *unavailable =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length:  2 \r\nRETRY-AFTER: 3\r\n"
        "Connection: Keep-Alive, Close\r\n\r\n{}";
    S_CHECK (s_http_parse (unavailable, strlen (unavailable), false, &response) == 1);
    S_CHECK (response.status == 503);
    S_CHECK (response.close);
    S_CHECK (response.retry_after_s == 3);
    S_CHECK (response.body_size == 2);

    //  No length: a body to EOF only when the server closes.
    const char *to_eof = "HTTP/1.0 413 Payload Too Large\r\n\r\nfar too big";
    S_CHECK (s_http_parse (to_eof, strlen (to_eof), false, &response) == 0);
    S_CHECK (s_http_parse (to_eof, strlen (to_eof), true, &response) == 1);
    S_CHECK (response.status == 413 && response.body_size == 11 && response.close);
    const char *unframed = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nxyz";
    S_CHECK (s_http_parse (unframed, strlen (unframed), false, &response) == -2);

    //  Malformed or unsupported.
    const char *bad [] = {
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad [0]; index++)
        S_CHECK (s_http_parse (bad [index], strlen (bad [index]), false, &response) == -2);
    char *huge = (char *) malloc (S_HEADER_MAX + 2);
    S_CHECK (huge);
    memset (huge, 'a', S_HEADER_MAX + 1);
    huge [S_HEADER_MAX + 1] = 0;
    int huge_rc = s_http_parse (huge, S_HEADER_MAX + 1, false, &response);
    free (huge);
    S_CHECK (huge_rc == -2);

    //  A batch answer as the gateway writes it, results out of order.
    const char *batch =
        "{\"success\":true,\"data\":{\"results\":["
        "{\"index\":2,\"status\":404,\"error\":{\"code\":\"port_not_found\",\"message\":\"Port not found\"}},"
        "{\"index\":0,\"status\":201,\"id\":41,\"timestamp\":\"2024-01-01T12:00:00.000Z\","
        "\"portStatus\":\"active\",\"phantomDetected\":false},"
        "{\"index\":1,\"status\":201,\"id\":42},{\"index\":9,\"status\":201,\"id\":1}],"
        "\"accepted\":2,\"rejected\":1}}";
    int statuses [4];
    int64_t ids [4];
    S_CHECK (s_batch_results (batch, strlen (batch), 4, statuses, ids) == 0);
    S_CHECK (statuses [0] == 201 && ids [0] == 41);
    S_CHECK (statuses [1] == 201 && ids [1] == 42);
    S_CHECK (statuses [2] == 404 && ids [2] == 0);
    S_CHECK (statuses [3] == 0);           //  not answered; index 9 is out of range
    S_CHECK (s_batch_results_scan (batch, strlen (batch), 4, statuses, ids) == 0);
    S_CHECK (s_batch_results ("{\"success\":false}", 17, 4, statuses, ids) == -2);
    //  The same answer spaced out is not the gateway's form: jansson reads it.
    const char *spaced =
        "{ \"success\": true, \"data\": { \"results\": [ {\"index\": 1, \"status\": 201,"
        " \"id\": 42}, {\"status\": 400, \"index\": 0} ] } }";
    S_CHECK (s_batch_results_scan (spaced, strlen (spaced), 4, statuses, ids) == -1);
    S_CHECK (s_batch_results (spaced, strlen (spaced), 4, statuses, ids) == 0);
    S_CHECK (statuses [0] == 400 && ids [0] == 0 && statuses [1] == 201 && ids [1] == 42);
    S_CHECK (statuses [2] == 0 && statuses [3] == 0);
    //  Truncated or broken gateway-shaped answers never pass the scan.
    size_t batch_size = strlen (batch);
    for (size_t size = 0; size < batch_size - strlen ("\"accepted\":2,\"rejected\":1}}") - 2; size++)
        S_CHECK (s_batch_results_scan (batch, size, 4, statuses, ids) == -1);
    const char *single = "{\"success\":true,\"message\":\"Sensor reading created successfully\","
                         "\"data\":{\"reading\":{\"id\":1234,\"voltage\":230}}}";
    S_CHECK (s_single_reading_id (single, strlen (single)) == 1234);

    //  Requests: fixed-point values written by hand, read back as JSON.
    worker_t worker;
    memset (&worker, 0, sizeof worker);
    run_t *load_run = (run_t *) calloc (1, sizeof (run_t));
    S_CHECK (load_run);
    snprintf (load_run->run, sizeof load_run->run, "00000000000000ab");
    worker.run = load_run;
    worker.rng = 88172645463325252ULL;
    conn_t conn;
    memset (&conn, 0, sizeof conn);
    conn.worker = &worker;
    for (int round = 0; round < 1000; round++) {
        conn.out_size = 0;
        S_CHECK (s_out_port (&conn, "3f2c8a1e-9b7d-4c5e-8f10-1234567890ab", true) == 0);
        S_CHECK (s_out_reading (&conn, 12345 + round, 1704110400000LL) == 0);
        json_t *reading = json_loadb (conn.out, conn.out_size, 0, NULL);
        S_CHECK (reading);
        double voltage = json_real_value (json_object_get (reading, "voltage"));
        double current = json_real_value (json_object_get (reading, "current"));
        double power = json_real_value (json_object_get (reading, "power"));
        S_CHECK (voltage >= 228.0 && voltage <= 232.0);
        S_CHECK (current >= 0.15 && current <= 0.25);
        S_CHECK (fabs (power - voltage * current) <= 0.005 + 1e-9);
        char expected [64];
        snprintf (expected, sizeof expected, "00000000000000ab-%d", 12345 + round);
        S_CHECK (strcmp (json_string_value (json_object_get (reading, "readingId")), expected) == 0);
        S_CHECK (json_integer_value (json_object_get (reading, "timestamp")) == 1704110400000LL);
        json_decref (reading);
    }
    free (conn.out);
    free (load_run);
    S_CHECK (s_single_reading_id ("not json", 8) == 0);

    //  Percentiles: exact below 2048 us, within 0.1 % above.
    histogram_t *histogram = (histogram_t *) calloc (1, sizeof (histogram_t));
    S_CHECK (histogram);
    S_CHECK (s_hist_percentile (histogram, 50) == 0);
    for (uint64_t value = 1; value <= 1000; value++)
        s_hist_record (histogram, value);
    S_CHECK (s_hist_percentile (histogram, 50) == 500);
    S_CHECK (s_hist_percentile (histogram, 90) == 900);
    S_CHECK (s_hist_percentile (histogram, 99) == 990);
    S_CHECK (s_hist_percentile (histogram, 100) == 1000);
    memset (histogram, 0, sizeof *histogram);
    for (uint64_t value = 1; value <= 100000; value++)
        s_hist_record (histogram, value * 10);            //  10 us .. 1 s
    uint64_t p50 = s_hist_percentile (histogram, 50);
    uint64_t p99 = s_hist_percentile (histogram, 99);
    S_CHECK (p50 >= 500000 && p50 <= 500000 + 500000 / 1000);
    S_CHECK (p99 >= 990000 && p99 <= 990000 + 990000 / 1000);
    S_CHECK (s_hist_percentile (histogram, 100) == 1000000);
    S_CHECK (histogram->max == 1000000);
    //  One slow outlier among fast samples shows in the max, not in p99.
    memset (histogram, 0, sizeof *histogram);
    for (int index = 0; index < 999; index++)
        s_hist_record (histogram, 1500);
    s_hist_record (histogram, UINT64_C (30000000));
    S_CHECK (s_hist_percentile (histogram, 99) == 1500);
    S_CHECK (s_hist_percentile (histogram, 100) == 30000000);
    //  Bucket edges are consistent: every value maps to a bucket that holds it.
    for (uint64_t value = 1; value < (UINT64_C (1) << 40); value = value * 3 / 2 + 1) {
        size_t index = s_hist_index (value);
        S_CHECK (s_hist_highest (index) >= value);
        S_CHECK (index == 0 || s_hist_highest (index - 1) < value);
    }
    //  Merging adds counts.
    histogram_t *other = (histogram_t *) calloc (1, sizeof (histogram_t));
    S_CHECK (other);
    s_hist_record (other, 5);
    s_hist_merge (histogram, other);
    S_CHECK (histogram->total == 1001);
    S_CHECK (s_hist_percentile (histogram, 0) == 5);
    free (other);
    free (histogram);

    //  Requests as sent: the head written once, Content-Length patched in.
    {
        run_t *request_run = (run_t *) calloc (1, sizeof (run_t));
        S_CHECK (request_run);
        S_CHECK (s_parse_url (request_run, "http://127.0.0.1:3000/base") == 0);
        snprintf (request_run->run, sizeof request_run->run, "00000000000000cd");
        char *ports [] = { "port-a", "port-b" };
        device_t device = { .token = "token-1", .ports = ports, .port_count = 2 };
        pair_t pair = { 0, 1 };
        request_run->devices = &device;
        request_run->device_count = 1;
        request_run->pairs = &pair;
        request_run->pair_count = 1;
        worker_t request_worker;
        memset (&request_worker, 0, sizeof request_worker);
        request_worker.run = request_run;
        request_worker.rng = 88172645463325252ULL;
        conn_t request;
        memset (&request, 0, sizeof request);
        request.worker = &request_worker;
        for (int batch = 1; batch <= 3; batch += 2) {
            request_run->batch = batch;
            S_CHECK (s_run_prepare_head (request_run) == 0);
            request.first_seq = 77;
            request.count = (size_t) batch;
            S_CHECK (s_build_request (&request) == 0);
            const char *expected = batch > 1
                ? "POST /base/api/sensor/readings HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
                  "Content-Type: application/json\r\nContent-Length: "
                : "POST /base/api/sensor/reading HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
                  "Content-Type: application/json\r\nContent-Length: ";
            S_CHECK (request.out_size > strlen (expected) + 14);
            S_CHECK (memcmp (request.out, expected, strlen (expected)) == 0);
            const char *length_text = request.out + strlen (expected);
            S_CHECK (length_text [0] == ' ' && memcmp (length_text + 10, "\r\n\r\n", 4) == 0);
            const char *body = length_text + 14;
            size_t body_size = request.out_size - (size_t) (body - request.out);
            S_CHECK ((size_t) strtoul (length_text, NULL, 10) == body_size);
            json_t *root = json_loadb (body, body_size, 0, NULL);
            S_CHECK (root);
            S_CHECK (strcmp (json_string_value (json_object_get (root, "deviceToken")), "token-1") == 0);
            json_t *first = batch > 1 ? json_array_get (json_object_get (root, "readings"), 0) : root;
            S_CHECK (json_array_size (json_object_get (root, "readings")) == (batch > 1 ? 3u : 0u));
            S_CHECK (strcmp (json_string_value (json_object_get (first, "portId")),
                             batch > 1 ? "port-a" : "port-b") == 0);
            S_CHECK (strcmp (json_string_value (json_object_get (first, "readingId")),
                             "00000000000000cd-77") == 0);
            json_decref (root);
        }
        free (request.out);
        free (request_run);
    }

    //  Reading answers from a socket: one recv per answer when it fits, more
    //  when it does not; the server closing an idle connection drops it.
    {
        run_t *socket_run = (run_t *) calloc (1, sizeof (run_t));
        S_CHECK (socket_run);
        socket_run->batch = 1;
        socket_run->timeout_us = 1000000;
        atomic_store (&socket_run->stop, true);     //  no next request from finish
        worker_t socket_worker;
        memset (&socket_worker, 0, sizeof socket_worker);
        socket_worker.run = socket_run;
        socket_worker.epoll = epoll_create1 (EPOLL_CLOEXEC);
        socket_worker.latency = (histogram_t *) calloc (1, sizeof (histogram_t));
        S_CHECK (socket_worker.epoll >= 0 && socket_worker.latency);
        int8_t outcomes [1];
        int64_t reading_ids [1];
        int scratch [1];
        conn_t reader;
        memset (&reader, 0, sizeof reader);
        reader.worker = &socket_worker;
        reader.outcomes = outcomes;
        reader.ids = reading_ids;
        reader.statuses = scratch;
        int pair_fds [2];
        S_CHECK (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair_fds) == 0);
        reader.fd = pair_fds [0];
        struct epoll_event event = { .events = S_WATCH, .data.ptr = &reader };
        S_CHECK (epoll_ctl (socket_worker.epoll, EPOLL_CTL_ADD, reader.fd, &event) == 0);
        reader.events = S_WATCH;

        //  A 201 in two pieces, then one larger than the first buffer.
        char answer [256];
        int answer_size = snprintf (answer, sizeof answer,
                                    "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n%s9,",
                                    strlen (s_single_prefix) + 4, s_single_prefix);
        S_CHECK (answer_size > 60 && (size_t) answer_size < sizeof answer);
        size_t big_size = 20000;
        char *big = (char *) malloc (big_size + 256);
        S_CHECK (big);
        int big_header = snprintf (big, 256, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n",
                                   big_size);
        S_CHECK (big_header > 0);
        char *fill = s_put (big + big_header, s_single_prefix, strlen (s_single_prefix));
        fill = S_PUT_LITERAL (fill, "10,\"pad\":\"");
        size_t pad = big_size - (size_t) (fill - (big + big_header)) - 4;
        memset (fill, 'x', pad);
        memcpy (fill + pad, "\"}}}", 4);
        size_t big_total = (size_t) big_header + big_size;

        for (int round = 0; round < 2; round++) {
            reader.state = CONN_READING;
            reader.count = 1;
            reader.first_seq = round;
            outcomes [0] = OUT_NONE;
            reader.sent_us = s_now_us ();
            reader.deadline_us = reader.sent_us + 1000000;
            reader.out_size = reader.out_sent = 0;
            if (round == 0) {
                S_CHECK (write (pair_fds [1], answer, 60) == 60);
                s_conn_read (&reader, s_now_us ());
                S_CHECK (reader.state == CONN_READING && socket_worker.requests == 0);
                S_CHECK (write (pair_fds [1], answer + 60, (size_t) answer_size - 60)
                         == answer_size - 60);
                S_CHECK (write (pair_fds [1], "}}", 2) == 2);
            }
            else
                S_CHECK (write (pair_fds [1], big, big_total) == (ssize_t) big_total);
            s_conn_read (&reader, s_now_us ());
            S_CHECK (reader.state == CONN_IDLE && reader.fd >= 0);
            S_CHECK (socket_worker.requests == (uint64_t) round + 1);
            S_CHECK (socket_worker.outcomes [OUT_201] == (uint64_t) round + 1);
            ack_t *acks = (ack_t *) socket_worker.acked.items;
            S_CHECK (acks [round].seq == round && acks [round].id == (round ? 10 : 9));
        }
        S_CHECK (reader.in_capacity > big_total);
        //  Nothing is left to read and nothing is waiting.
        struct epoll_event ready;
        S_CHECK (epoll_wait (socket_worker.epoll, &ready, 1, 0) == 0);
        //  The server closes the idle connection: epoll says so, the connection goes.
        close (pair_fds [1]);
        S_CHECK (epoll_wait (socket_worker.epoll, &ready, 1, 100) == 1);
        S_CHECK (ready.events & EPOLLRDHUP);
        s_conn_event (&reader, ready.events, s_now_us ());
        S_CHECK (reader.fd == -1);
        free (big);
        free (reader.in);
        free (socket_worker.acked.items);
        free (socket_worker.latency);
        close (socket_worker.epoll);
        free (socket_run);
    }

    //  Header values and tokens.
    S_CHECK (s_value_has_token ("keep-alive , close", 18, "close"));
    S_CHECK (!s_value_has_token ("closed", 6, "close"));
    S_CHECK (s_plain_field ("3f2a-b"));
    S_CHECK (!s_plain_field ("a\"b"));
    S_CHECK (!s_plain_field (""));

    //  A URL with a path prefix and no port.
    run_t run;
    memset (&run, 0, sizeof run);
    S_CHECK (s_parse_url (&run, "http://127.0.0.1/base/") == 0);
    S_CHECK (strcmp (run.port, "80") == 0 && strcmp (run.prefix, "/base") == 0);
    S_CHECK (s_parse_url (&run, "https://127.0.0.1") == -1);

    if (verbose)
        printf ("OK\n");
    return 0;
}


//  --------------------------------------------------------------------------
//  Main

static void
s_usage (void)
{
    fprintf (stderr,
        "usage: phantom-load -f CREDENTIALS [options]\n"
        "  -u URL        gateway base URL (http://127.0.0.1:3000)\n"
        "  -f FILE       lines \"<deviceToken> <portId>\", used round-robin\n"
        "  -c N          keep-alive connections (64)\n"
        "  -t N          threads, each with its own epoll and connections (1)\n"
        "  -d SECONDS    run time (10 unless -n); with -n, an upper bound\n"
        "  -n READINGS   send this many readings, then stop\n"
        "  -r RATE       target readings/s over all connections (0 = flat out)\n"
        "  -b BATCH      readings per request; >1 uses POST /api/sensor/readings (1)\n"
        "  -T MS         request timeout (10000)\n"
        "  --retry       retry 503/504/timeouts/connection errors with the same readingId\n"
        "  --ids FILE    write \"readingId id\" for every acknowledged reading\n"
        "  --verify CONNINFO  check PostgreSQL holds exactly the acknowledged readings\n"
        "  -v            a progress line every second on stderr\n"
        "  --selftest    run the unit tests and exit\n");
}

static int
s_parse_number (const char *text, double low, double high, double *value)
{
    char *end = NULL;
    errno = 0;
    double parsed = strtod (text, &end);
    if (errno || end == text || *end || !(parsed >= low && parsed <= high))
        return -1;
    *value = parsed;
    return 0;
}

int
main (int argc, char *argv [])
{
    static run_t run;                       //  large and shared by threads: not on the stack
    const char *url = "http://127.0.0.1:3000";
    const char *credentials = NULL;
    double value;
    run.connections = 64;
    run.threads = 1;
    run.batch = 1;
    run.timeout_us = 10000000;
    bool have_duration = false;

    static const struct option options [] = {
        { "retry", no_argument, NULL, 'R' },
        { "ids", required_argument, NULL, 'I' },
        { "verify", required_argument, NULL, 'V' },
        { "selftest", no_argument, NULL, 'S' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    int option;
    while ((option = getopt_long (argc, argv, "u:c:t:d:n:r:b:f:T:vh", options, NULL)) != -1) {
        bool bad = false;
        switch (option) {
            case 'u': url = optarg; break;
            case 'f': credentials = optarg; break;
            case 'c': bad = s_parse_number (optarg, 1, 100000, &value); run.connections = (int) value; break;
            case 't': bad = s_parse_number (optarg, 1, 256, &value); run.threads = (int) value; break;
            case 'd': bad = s_parse_number (optarg, 0.001, 1e7, &run.duration_s); have_duration = true; break;
            case 'n': bad = s_parse_number (optarg, 1, 1e15, &value); run.total = (int64_t) value; break;
            case 'r': bad = s_parse_number (optarg, 0, 1e9, &run.rate); break;
            case 'b': bad = s_parse_number (optarg, 1, S_BATCH_MAX, &value); run.batch = (int) value; break;
            case 'T': bad = s_parse_number (optarg, 1, 3600000, &value); run.timeout_us = (int64_t) (value * 1000); break;
            case 'v': run.verbose = true; break;
            case 'R': run.retry = true; break;
            case 'I': run.ids_path = optarg; break;
            case 'V': run.verify = optarg; break;
            case 'S': return phantom_load_test (true) == 0 ? 0 : 1;
            case 'h': s_usage (); return 0;
            default: s_usage (); return 2;
        }
        if (bad) {
            fprintf (stderr, "phantom-load: bad value for -%c: %s\n", option, optarg);
            return 2;
        }
    }
    if (optind < argc || !credentials) {
        s_usage ();
        return 2;
    }
    if (!have_duration)
        run.duration_s = run.total > 0 ? 3600 : 10;
    if (run.threads > run.connections)
        run.threads = run.connections;
    if (s_parse_url (&run, url) || s_run_prepare_head (&run) || s_load_credentials (&run, credentials)) {
        s_free_credentials (&run);
        return 2;
    }
    uint64_t run_id = 0;
    if (getrandom (&run_id, sizeof run_id, 0) != sizeof run_id)
        run_id = (uint64_t) s_epoch_ms () ^ ((uint64_t) getpid () << 40);
    snprintf (run.run, sizeof run.run, "%016" PRIx64, run_id);

    struct sigaction action = { .sa_handler = s_signal_handler };
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    worker_t *workers = (worker_t *) calloc ((size_t) run.threads, sizeof (worker_t));
    pthread_t *threads = (pthread_t *) calloc ((size_t) run.threads, sizeof (pthread_t));
    int started = 0;
    int rc = 0;
    if (!workers || !threads)
        rc = 2;
    for (int index = 0; index < run.threads && rc == 0; index++) {
        int share = run.connections / run.threads + (index < run.connections % run.threads);
        if (s_worker_init (&workers [index], &run, index, share)) {
            fprintf (stderr, "phantom-load: out of memory\n");
            rc = 2;
        }
    }
    fprintf (stderr, "phantom-load: run %s, %s, %d connections, %d threads, batch %d, %s\n",
             run.run, url, run.connections, run.threads, run.batch,
             run.rate > 0 ? "paced" : "flat out");
    atomic_store (&run.running, run.threads);
    int64_t start = s_now_us ();
    for (int index = 0; index < run.threads && rc == 0; index++) {
        if (pthread_create (&threads [index], NULL, s_worker_run, &workers [index]) != 0) {
            fprintf (stderr, "phantom-load: cannot start thread\n");
            atomic_store (&run.stop, true);
            atomic_store (&run.abort_at_us, s_now_us ());
            atomic_fetch_sub (&run.running, run.threads - index);
            rc = 2;
            break;
        }
        started++;
    }

    //  Watch the clock and the signals; the workers do the work.
    int64_t stopped_at = 0;
    int64_t last_report = start;
    long long last_acked = 0, last_requests = 0;
    int interrupts_seen = 0;
    while (atomic_load (&run.running) > 0) {
        struct timespec tick = { 0, 20 * 1000 * 1000 };
        nanosleep (&tick, NULL);
        int64_t now = s_now_us ();
        if (!stopped_at && (s_interrupts > 0 || now - start >= (int64_t) (run.duration_s * 1e6)
                            || atomic_load (&run.stop))) {
            //  Stop issuing; let requests in flight finish, within a bound.
            stopped_at = now;
            atomic_store (&run.stop, true);
            int64_t drain = run.timeout_us + (run.retry ? 2 * S_BACKOFF_CAP_US + run.timeout_us : 0);
            atomic_store (&run.abort_at_us, now + drain);
            interrupts_seen = s_interrupts;
        }
        if (stopped_at && s_interrupts > interrupts_seen)
            atomic_store (&run.abort_at_us, now);          //  a second ^C: stop now
        if (run.verbose && now - last_report >= 1000000) {
            long long acked = atomic_load (&run.acked), requests = atomic_load (&run.requests);
            double seconds = (double) (now - last_report) / 1e6;
            fprintf (stderr, "phantom-load: %5.1fs requests=%lld acked=%lld rps=%.0f req/s=%.0f\n",
                     (double) (now - start) / 1e6, requests, acked,
                     (double) (acked - last_acked) / seconds,
                     (double) (requests - last_requests) / seconds);
            last_report = now;
            last_acked = acked;
            last_requests = requests;
        }
    }
    for (int index = 0; index < started; index++)
        pthread_join (threads [index], NULL);
    double elapsed = (double) (s_now_us () - start) / 1e6;
    //  Throughput runs to the last answer or the stop, whichever is later:
    //  that counts draining the last requests of a -n run, but not waiting
    //  out requests that time out after the stop.
    int64_t last_response = start;
    for (int index = 0; index < run.threads && workers; index++)
        if (workers [index].last_response_us > last_response)
            last_response = workers [index].last_response_us;
    if (stopped_at > last_response)
        last_response = stopped_at;         //  all timed out: the run still lasted
    double active = (double) (last_response - start) / 1e6;
    if (active <= 0)
        active = elapsed > 0 ? elapsed : 1e-9;

    //  Merge the workers' results.
    histogram_t *latency = (histogram_t *) calloc (1, sizeof (histogram_t));
    uint64_t outcomes [OUT_COUNT] = { 0 };
    uint64_t requests = 0, retries = 0, reconnects = 0;
    size_t acked_count = 0, unknown_count = 0;
    bool failed = false;
    for (int index = 0; index < run.threads && workers; index++) {
        worker_t *worker = &workers [index];
        if (latency && worker->latency)
            s_hist_merge (latency, worker->latency);
        for (int outcome = 0; outcome < OUT_COUNT; outcome++)
            outcomes [outcome] += worker->outcomes [outcome];
        requests += worker->requests;
        retries += worker->retries;
        reconnects += worker->reconnects;
        acked_count += worker->acked.count;
        unknown_count += worker->unknown.count;
        failed |= worker->failed;
    }
    ack_t *acked = (ack_t *) malloc ((acked_count + 1) * sizeof (ack_t));
    int64_t *unknown = (int64_t *) malloc ((unknown_count + 1) * sizeof (int64_t));
    if (!latency || !acked || !unknown) {
        fprintf (stderr, "phantom-load: out of memory\n");
        rc = 2;
    }
    size_t acked_at = 0, unknown_at = 0;
    for (int index = 0; index < run.threads && acked && unknown && workers; index++) {
        worker_t *worker = &workers [index];
        if (worker->acked.count)
            memcpy (acked + acked_at, worker->acked.items, worker->acked.count * sizeof (ack_t));
        if (worker->unknown.count)
            memcpy (unknown + unknown_at, worker->unknown.items, worker->unknown.count * sizeof (int64_t));
        acked_at += worker->acked.count;
        unknown_at += worker->unknown.count;
    }
    if (acked && unknown) {
        qsort (acked, acked_count, sizeof (ack_t), s_compare_ack);
        qsort (unknown, unknown_count, sizeof (int64_t), s_compare_seq);
    }
    if (failed)
        fprintf (stderr, "phantom-load: WARNING out of memory during the run; counts are incomplete\n");

    uint64_t readings = 0;
    for (int outcome = 0; outcome < OUT_COUNT; outcome++)
        readings += outcomes [outcome];
    uint64_t errors = readings - outcomes [OUT_201];
    double rps = (double) outcomes [OUT_201] / active;
    if (latency) {
        printf ("run %s: %.2fs (last answer at %.2fs), %d connections, %d threads, batch %d\n",
                run.run, elapsed, active, run.connections, run.threads, run.batch);
        printf ("requests %" PRIu64 ", readings sent %" PRIu64 ", acknowledged %" PRIu64
                ", %.1f readings/s, retries %" PRIu64 ", reconnects %" PRIu64 "\n",
                requests, readings, outcomes [OUT_201], rps, retries, reconnects);
        printf ("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
                s_hist_percentile (latency, 50) / 1000.0, s_hist_percentile (latency, 90) / 1000.0,
                s_hist_percentile (latency, 99) / 1000.0, latency->max / 1000.0);
        printf ("readings by outcome:");
        for (int outcome = 0; outcome < OUT_COUNT; outcome++)
            printf (" %s=%" PRIu64, s_outcome_names [outcome], outcomes [outcome]);
        printf ("\n");
    }

    if (rc == 0 && run.ids_path) {
        FILE *file = fopen (run.ids_path, "w");
        if (!file)
            fprintf (stderr, "phantom-load: cannot write %s: %s\n", run.ids_path, strerror (errno));
        else {
            for (size_t index = 0; index < acked_count; index++)
                fprintf (file, "%s-%" PRId64 " %" PRId64 "\n", run.run, acked [index].seq, acked [index].id);
            if (fclose (file) != 0)
                fprintf (stderr, "phantom-load: error writing %s\n", run.ids_path);
        }
    }
    char lost_text [32] = "";
    if (rc == 0 && run.verify) {
        verify_t verify;
        if (s_verify (&run, acked, acked_count, unknown, unknown_count, &verify) == 0) {
            printf ("verify: stored %" PRId64 ", acknowledged %zu, lost %" PRId64
                    ", extra %" PRId64 " (fate unknown: allowed), unexpected %" PRId64
                    ", duplicates %" PRId64 "\n", verify.stored, acked_count, verify.lost,
                    verify.extra, verify.unexpected, verify.duplicates);
            snprintf (lost_text, sizeof lost_text, " lost=%" PRId64, verify.lost);
            if (verify.lost || verify.unexpected || verify.duplicates) {
                printf ("verify: FAILED\n");
                rc = 1;
            }
        }
        else
            rc = 1;
    }
    if (latency)
        printf ("RESULT readings=%" PRIu64 " rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%" PRIu64
                " acked=%" PRIu64 "%s\n", readings, rps, s_hist_percentile (latency, 50) / 1000.0,
                s_hist_percentile (latency, 99) / 1000.0, errors, outcomes [OUT_201], lost_text);
    fflush (stdout);

    for (int index = 0; index < run.threads && workers; index++)
        s_worker_destroy (&workers [index]);
    free (workers);
    free (threads);
    free (latency);
    free (acked);
    free (unknown);
    s_free_credentials (&run);
    return rc;
}
