/*  =========================================================================
    gateway_api_export - CSV exports of the signed-in user's readings (raw
    or in buckets) and phantom episodes, one port or all of them

    A year of one-second readings is 31 M rows, so nothing is collected:
    each statement runs in libpq's single-row mode, rows are written into
    one fixed buffer and sent as an HTTP chunk whenever it fills. A write
    that fails means the client went away; the statement is cancelled then
    and the connection drained (or, when that takes too long, dropped by the
    pool). All ports' readings are one statement per port, in port order: a
    statement over all of them cannot stream in (port, time) order, since a
    join of ports and readings gives no order the planner could rely on
    without sorting every row.

    At most S_EXPORTS_MAX exports run at once, each on one pooled
    connection, so downloads never take the connections the rest of the API
    needs; that connection counts in the user's share of the pool. Once
    the header is out an error cannot be a status any more: the download
    ends without its last chunk, which a client sees as broken.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_fixture.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_EXPORTS_MAX 2          //  exports at once, each holding a pooled connection
#define S_BUSY_RETRY_S 10        //  Retry-After when that many run
#define S_CHUNK_SIZE (64 * 1024) //  rows gathered before they go out as one chunk
#define S_DB_WAIT_MS 2000        //  longest wait for the stream's connection
//  Longest export. A year of one-second readings of one port takes about
//  a minute here; this leaves room for a slow client and a busy server.
#define S_EXPORT_TIMEOUT_MS (3600 * 1000LL)
#define S_CANCEL_WAIT_MS 2000 //  longest drain of a cancelled statement
#define S_READINGS_DEFAULT_MS (24 * 3600 * 1000LL)
#define S_EPISODES_DEFAULT_MS (30LL * 24 * 3600 * 1000)

// clang-format off
//  A timestamptz column as local time in the zone of parameter zone.
#define S_LOCAL(column, zone)                                                                      \
    "to_char (" column " AT TIME ZONE " zone ", 'YYYY-MM-DD HH24:MI:SS')"

//  The port's readings in [from, to): $1 port, $2 from ms, $3 to ms, $4 time zone.
#define S_READINGS_SQL                                                                             \
    "SELECT " GATEWAY_API_MS ("ts") ", " S_LOCAL ("ts", "$4") ", power, voltage, current, status"  \
    " FROM readings WHERE port_id = $1::uuid AND ts >= to_timestamp ($2::bigint / 1000.0)"         \
    " AND ts < to_timestamp ($3::bigint / 1000.0) ORDER BY ts"

//  The same in buckets of $5 seconds from the epoch, as the readings API.
#define S_BUCKETS_SQL                                                                              \
    "SELECT " GATEWAY_API_MS ("bucket") ", " S_LOCAL ("bucket", "$4") ","                          \
    " count (*), min (power), avg (power), max (power) FROM ("                                     \
    "   SELECT date_bin ($5::integer * interval '1 second', ts, timestamptz 'epoch') AS bucket,"   \
    "          power FROM readings WHERE port_id = $1::uuid"                                       \
    "   AND ts >= to_timestamp ($2::bigint / 1000.0) AND ts < to_timestamp ($3::bigint / 1000.0)"  \
    " ) binned GROUP BY bucket ORDER BY bucket"

//  Episodes touching [from, to) of the user $2 (of port $1, or all when
//  NULL): $3 from ms, $4 to ms, $5 time zone. Priced as
//  /api/ports/:id/episodes prices them: an open one up to the port's last
//  reading, which is also where its duration ends.
#define S_EPISODE_END                                                                              \
    "greatest (e.started_at, coalesce (e.ended_at, p.last_reading_at, e.started_at))"
#define S_EPISODES_SQL                                                                             \
    "SELECT p.id::text, p.name, " GATEWAY_API_MS ("e.started_at") ", "                             \
    GATEWAY_API_MS ("e.ended_at") ", " S_LOCAL ("e.started_at", "$5") ","                          \
    " extract (epoch FROM " S_EPISODE_END " - e.started_at)::float8,"                              \
    " e.mean_watts, e.peak_watts, e.energy_wh,"                                                    \
    " phantom_tariff_cost (p.user_id, e.started_at, " S_EPISODE_END ", e.energy_wh), u.currency"   \
    " FROM episodes e JOIN ports p ON p.id = e.port_id JOIN users u ON u.id = p.user_id"           \
    " WHERE e.user_id = $2::bigint AND p.user_id = $2::bigint"                                     \
    " AND ($1::uuid IS NULL OR e.port_id = $1::uuid)"                                              \
    " AND e.started_at < to_timestamp ($4::bigint / 1000.0)"                                       \
    " AND coalesce (e.ended_at, 'infinity') > to_timestamp ($3::bigint / 1000.0)"                  \
    " ORDER BY p.id, e.started_at, e.id"
// clang-format on

static const char s_readings_header[] =
    "timestamp,local_time,port_id,port_name,power_w,voltage_v,current_a,status\r\n";
static const char s_buckets_header[] =
    "bucket_start,local_time,port_id,port_name,samples,min_w,mean_w,max_w\r\n";
static const char s_episodes_header[] = "port_id,port_name,start,end,local_start,duration_s,"
                                        "mean_w,peak_w,energy_wh,cost,currency\r\n";

//  Exports running now, in this process.
static atomic_int s_exports;

//  One download on its way to the client.
typedef struct {
    gateway_api_request_t *request; //  the request it answers
    PGconn *pg;                     //  the pooled connection the rows come on
    char *buffer;                   //  rows not sent yet, S_CHUNK_SIZE bytes
    size_t used;                    //  bytes of them
    int64_t deadline;               //  zclock_mono () by which the statement must be done
    bool client_gone;               //  a write failed: stop, cancel
    bool failed;                    //  the database failed after the header (logged)
    bool abandoned;                 //  pg still has a statement in flight
    uint64_t rows;                  //  rows written
    const char *port;               //  the port whose readings are being written
    const char *name;               //  its name as a CSV field
} s_stream_t;

typedef void (s_row_fn) (s_stream_t *self, PGresult *row);

//  ==========================================================================
//  CSV

//  text as one CSV field (RFC 4180): quoted, quotes doubled, when it holds
//  a comma, quote or line break; with a ' in front when it starts like a
//  spreadsheet formula (= + - @, and tab or carriage return, which some
//  spreadsheets skip before one). Caller frees.
static char *
s_csv_field (const char *text)
{
    size_t length = strlen (text);
    bool formula = *text && strchr ("=+-@\t\r", *text);
    bool quoted = strpbrk (text, ",\"\r\n") != NULL;
    char *field = (char *)malloc (2 * length + 4);
    assert (field);
    char *cursor = field;
    if (quoted)
        *cursor++ = '"';
    if (formula)
        *cursor++ = '\'';
    for (const char *from = text; *from; from++) {
        if (*from == '"')
            *cursor++ = '"';
        *cursor++ = *from;
    }
    if (quoted)
        *cursor++ = '"';
    *cursor = 0;
    return field;
}

//  ==========================================================================
//  The stream: a fixed buffer sent as chunks

//  Sends what the buffer holds as one chunk. A failed write is a client
//  that went away (or stalled past civetweb's request timeout).
static void
s_flush (s_stream_t *self)
{
    if (self->used && !self->client_gone &&
        mg_send_chunk (self->request->conn, self->buffer, (unsigned int)self->used) < 0)
        self->client_gone = true;
    self->used = 0;
}

static void
s_put (s_stream_t *self, const char *text, size_t length)
{
    if (self->used + length > S_CHUNK_SIZE)
        s_flush (self);
    if (self->client_gone)
        return;
    if (length > S_CHUNK_SIZE) {
        //  Larger than any row we write; sent as a chunk of its own.
        if (mg_send_chunk (self->request->conn, text, (unsigned int)length) < 0)
            self->client_gone = true;
        return;
    }
    memcpy (self->buffer + self->used, text, length);
    self->used += length;
}

//  Writes one record of fields that are CSV already.
static void
s_put_record (s_stream_t *self, const char *const *fields, size_t count)
{
    for (size_t index = 0; index < count; index++) {
        if (index)
            s_put (self, ",", 1);
        s_put (self, fields[index], strlen (fields[index]));
    }
    s_put (self, "\r\n", 2);
}

//  The request's URI, for logs (request->path is split into segments).
static const char *
s_uri (s_stream_t *self)
{
    const struct mg_request_info *info = mg_get_request_info (self->request->conn);
    return info && info->local_uri ? info->local_uri : "";
}

//  The database failed after the header went out: logged once, and the
//  download is cut.
static void
s_fail (s_stream_t *self, const char *message)
{
    //  libpq's messages end in a newline; a log event is one line.
    int length = (int)strcspn (message, "\n");
    if (!self->failed && !self->client_gone)
        zsys_error ("gateway api - GET %s: export cut after %" PRIu64 " rows: %.*s", s_uri (self),
                    self->rows, length, message);
    self->failed = true;
}

//  Asks PostgreSQL to stop the statement, and gives the drain that follows
//  S_CANCEL_WAIT_MS.
static void
s_cancel (s_stream_t *self)
{
    char error[256] = "";
    PGcancel *cancel = PQgetCancel (self->pg);
    if (!cancel || !PQcancel (cancel, error, sizeof error))
        zsys_warning ("gateway api - GET %s: cannot cancel the export: %s", s_uri (self), error);
    PQfreeCancel (cancel);
    self->deadline = zclock_mono () + S_CANCEL_WAIT_MS;
}

//  The next result of the statement in flight into *result (NULL once it
//  is done), waiting until self->deadline at most. 0, or -1 when the wait
//  ran out.
static int
s_next_result (s_stream_t *self, PGresult **result)
{
    *result = NULL;
    while (PQisBusy (self->pg)) {
        int64_t remaining = self->deadline - zclock_mono ();
        if (remaining <= 0)
            return -1;
        struct pollfd item = {PQsocket (self->pg), POLLIN, 0};
        if (item.fd < 0)
            break; //  lost: PQgetResult says so without waiting
        if (poll (&item, 1, remaining > 60000 ? 60000 : (int)remaining) == -1 && errno != EINTR)
            break;
        if (!PQconsumeInput (self->pg))
            break; //  lost, likewise
    }
    *result = PQgetResult (self->pg);
    return 0;
}

//  Runs sql in single-row mode and writes each row with write_row. 0 when
//  every row went out; -1 when the client went away (the statement is
//  cancelled and drained) or the database failed (logged).
static int
s_stream_statement (s_stream_t *self, const char *sql, int count, const char *const *values,
                    s_row_fn *write_row)
{
    if (!PQsendQueryParams (self->pg, sql, count, NULL, values, NULL, NULL, 0)) {
        s_fail (self, PQerrorMessage (self->pg));
        return -1;
    }
    if (!PQsetSingleRowMode (self->pg)) {
        //  Never right after the send; were it refused, every row would
        //  come in one result, so none may come.
        s_fail (self, "single-row mode refused");
        s_cancel (self);
    }
    while (true) {
        PGresult *result;
        if (s_next_result (self, &result) == -1) {
            if (self->client_gone)
                zsys_warning ("gateway api - GET %s: the cancelled export did not end in %d ms,"
                              " its connection is closed",
                              s_uri (self), S_CANCEL_WAIT_MS);
            else
                s_fail (self, "the export took longer than its bound");
            //  Left mid-result: the pool closes the connection.
            self->abandoned = true;
            return -1;
        }
        if (!result)
            break;
        ExecStatusType state = PQresultStatus (result);
        if (state == PGRES_SINGLE_TUPLE) {
            if (!self->client_gone && !self->failed) {
                write_row (self, result);
                self->rows++;
                if (self->client_gone)
                    s_cancel (self);
            }
        } else if (state != PGRES_TUPLES_OK)
            s_fail (self, PQresultErrorMessage (result));
        PQclear (result);
    }
    return self->client_gone || self->failed ? -1 : 0;
}

//  ==========================================================================
//  Rows

//  Raw: ms, local time, power, voltage, current, status.
static void
s_reading_row (s_stream_t *self, PGresult *row)
{
    char time[32];
    gateway_time_format (strtoll (PQgetvalue (row, 0, 0), NULL, 10), time);
    const char *fields[] = {time,
                            PQgetvalue (row, 0, 1),
                            self->port,
                            self->name,
                            PQgetvalue (row, 0, 2),
                            PQgetvalue (row, 0, 3),
                            PQgetvalue (row, 0, 4),
                            proto_status_name (atoi (PQgetvalue (row, 0, 5)))};
    s_put_record (self, fields, sizeof fields / sizeof fields[0]);
}

//  Buckets: ms, local time, samples, min, mean, max.
static void
s_bucket_row (s_stream_t *self, PGresult *row)
{
    char time[32];
    gateway_time_format (strtoll (PQgetvalue (row, 0, 0), NULL, 10), time);
    const char *fields[] = {time,
                            PQgetvalue (row, 0, 1),
                            self->port,
                            self->name,
                            PQgetvalue (row, 0, 2),
                            PQgetvalue (row, 0, 3),
                            PQgetvalue (row, 0, 4),
                            PQgetvalue (row, 0, 5)};
    s_put_record (self, fields, sizeof fields / sizeof fields[0]);
}

//  The columns of S_EPISODES_SQL; an open episode has no end.
static void
s_episode_row (s_stream_t *self, PGresult *row)
{
    char start[32], end[32] = "";
    gateway_time_format (strtoll (PQgetvalue (row, 0, 2), NULL, 10), start);
    if (!PQgetisnull (row, 0, 3))
        gateway_time_format (strtoll (PQgetvalue (row, 0, 3), NULL, 10), end);
    char *name = s_csv_field (PQgetvalue (row, 0, 1));
    const char *fields[] = {PQgetvalue (row, 0, 0),
                            name,
                            start,
                            end,
                            PQgetvalue (row, 0, 4),
                            PQgetvalue (row, 0, 5),
                            PQgetvalue (row, 0, 6),
                            PQgetvalue (row, 0, 7),
                            PQgetvalue (row, 0, 8),
                            PQgetvalue (row, 0, 9),
                            PQgetvalue (row, 0, 10)};
    s_put_record (self, fields, sizeof fields / sizeof fields[0]);
    free (name);
}

//  ==========================================================================
//  Requests

//  Takes one of the S_EXPORTS_MAX slots; false when all are taken.
static bool
s_slot_take (void)
{
    int running = atomic_load (&s_exports);
    while (running < S_EXPORTS_MAX)
        if (atomic_compare_exchange_weak (&s_exports, &running, running + 1))
            return true;
    return false;
}

//  Gives a connection back to the pool as other requests expect it.
#define S_SESSION_RESET "RESET statement_timeout; RESET extra_float_digits; RESET enable_sort"

//  Sets pg up for the export's statements: bounded in time, floats in
//  their shortest exact text whatever the server's default, and no sort
//  where an index gives the order. A port's readings then stream in index
//  order from the first row; for a port with most of the table the planner
//  would rather sort all of them (on disk) before sending the first, and a
//  client that left would not be noticed until then. The time zone is set
//  as the pool sets it, for a connection PostgreSQL dropped (a restart) is
//  reset here and tried once more, as gateway_api_run does. 0 or -1.
static int
s_session_prepare (PGconn *pg)
{
    char timeout[24];
    snprintf (timeout, sizeof timeout, "%lld", S_EXPORT_TIMEOUT_MS);
    const char *values[] = {timeout};
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *result = PQexecParams (pg,
                                         "SELECT set_config ('statement_timeout', $1, false),"
                                         " set_config ('extra_float_digits', '1', false),"
                                         " set_config ('enable_sort', 'off', false),"
                                         " set_config ('TimeZone', 'UTC', false)",
                                         1, NULL, values, NULL, NULL, 0);
        bool ready = PQresultStatus (result) == PGRES_TUPLES_OK;
        PQclear (result);
        if (ready)
            return 0;
        if (attempt == 0)
            PQreset (pg);
    }
    return -1;
}

//  Ends a download cut short so the client sees it broken at once. The
//  last chunk is missing; civetweb 1.15 would still keep the connection
//  for a next request, and the client wait for the rest until keep-alive
//  runs out. Its error reply marks the connection to be closed after the
//  handler, and once anything has been written it writes nothing more for
//  a status without a body (its header calls refuse, as the response has
//  begun).
static void
s_cut (struct mg_connection *conn)
{
    mg_send_http_error (conn, 304, "%s", "");
}

//  Answers an export of port, or of all the user's ports when port is
//  NULL: its episodes, or its readings (raw, or in buckets of ?step=
//  seconds).
static int
s_export (gateway_api_request_t *request, const char *port, bool episodes)
{
    int64_t from, to, step = -1;
    int status =
        gateway_api_window (request, episodes ? S_EPISODES_DEFAULT_MS : S_READINGS_DEFAULT_MS,
                            &from, &to, episodes ? NULL : &step);
    if (status)
        return status;
    if (!s_slot_take ())
        return gateway_http_send_error (request->conn, 503, "export_busy",
                                        "Other exports are running, retry shortly", S_BUSY_RETRY_S);
    char from_text[24], to_text[24], step_text[24];
    snprintf (from_text, sizeof from_text, "%" PRId64, from);
    snprintf (to_text, sizeof to_text, "%" PRId64, to);
    snprintf (step_text, sizeof step_text, "%" PRId64, step);
    //  The user's time zone, the window's local dates, and the ports in
    //  the order their rows go out; no port (or not the user's): 404.
    const char *values[] = {port, request->user_text, from_text, to_text};
    PGresult *ports = gateway_api_run (
        request, &status,
        "SELECT u.time_zone,"
        " to_char (to_timestamp ($3::bigint / 1000.0) AT TIME ZONE u.time_zone, 'YYYY-MM-DD'),"
        " to_char (to_timestamp ($4::bigint / 1000.0) AT TIME ZONE u.time_zone, 'YYYY-MM-DD'),"
        " p.id::text, p.name FROM users u"
        " LEFT JOIN ports p ON p.user_id = u.id AND ($1::uuid IS NULL OR p.id = $1::uuid)"
        " WHERE u.id = $2::bigint ORDER BY p.id",
        4, values);
    s_stream_t stream = {request, NULL, NULL, 0, 0, false, false, false, 0, NULL, NULL};
    if (!ports)
        goto done;
    if (PQntuples (ports) == 0 || (port && PQgetisnull (ports, 0, 3))) {
        status = gateway_api_not_found (request);
        goto done;
    }
    //  In the user's share of the pool, as the user's other requests.
    bool over_share;
    stream.pg =
        gateway_db_acquire_for (request->gateway->db, request->user, S_DB_WAIT_MS, &over_share);
    if (!stream.pg) {
        if (over_share)
            status =
                gateway_http_send_error (request->conn, 429, "too_many_requests",
                                         "Too many of your requests at once, retry shortly", 1);
        else
            status = gateway_http_send_error (request->conn, 503, "unavailable",
                                              "Database busy, retry shortly", 1);
        goto done;
    }
    if (s_session_prepare (stream.pg) == -1) {
        const char *message = PQerrorMessage (stream.pg);
        zsys_warning ("gateway api - GET %s: database unavailable: %.*s", s_uri (&stream),
                      (int)strcspn (message, "\n"), message);
        status = gateway_http_send_error (request->conn, 503, "database_unavailable",
                                          "Database unavailable, retry shortly", 1);
        goto done;
    }
    stream.buffer = (char *)malloc (S_CHUNK_SIZE);
    if (!stream.buffer) {
        status = gateway_api_internal (request);
        goto done;
    }

    char what[32], disposition[128];
    if (episodes)
        snprintf (what, sizeof what, "episodes");
    else if (step > 0)
        snprintf (what, sizeof what, "readings-%" PRId64 "s", step);
    else
        snprintf (what, sizeof what, "readings");
    //  Fixed words and digits only: no port name, nothing to escape.
    snprintf (disposition, sizeof disposition, "attachment; filename=\"phantomwatch-%s-%s-%s.csv\"",
              what, PQgetvalue (ports, 0, 1), PQgetvalue (ports, 0, 2));
    mg_response_header_start (request->conn, 200);
    mg_response_header_add (request->conn, "Content-Type", "text/csv; charset=utf-8", -1);
    mg_response_header_add (request->conn, "Content-Disposition", disposition, -1);
    mg_response_header_add (request->conn, "Cache-Control", "no-store", -1);
    mg_response_header_add (request->conn, "X-Content-Type-Options", "nosniff", -1);
    mg_response_header_add (request->conn, "Transfer-Encoding", "chunked", -1);
    gateway_http_cors_headers_add (request->conn);
    mg_response_header_send (request->conn);
    status = 200;

    const char *time_zone = PQgetvalue (ports, 0, 0);
    stream.deadline = zclock_mono () + S_EXPORT_TIMEOUT_MS + S_CANCEL_WAIT_MS;
    if (episodes) {
        s_put (&stream, s_episodes_header, sizeof s_episodes_header - 1);
        const char *episode_values[] = {port, request->user_text, from_text, to_text, time_zone};
        s_stream_statement (&stream, S_EPISODES_SQL, 5, episode_values, s_episode_row);
    } else {
        if (step > 0)
            s_put (&stream, s_buckets_header, sizeof s_buckets_header - 1);
        else
            s_put (&stream, s_readings_header, sizeof s_readings_header - 1);
        for (int row = 0; row < PQntuples (ports) && !PQgetisnull (ports, row, 3); row++) {
            stream.port = PQgetvalue (ports, row, 3);
            char *name = s_csv_field (PQgetvalue (ports, row, 4));
            stream.name = name;
            const char *port_values[] = {stream.port, from_text, to_text, time_zone, step_text};
            int rc = s_stream_statement (&stream, step > 0 ? S_BUCKETS_SQL : S_READINGS_SQL,
                                         step > 0 ? 5 : 4, port_values,
                                         step > 0 ? s_bucket_row : s_reading_row);
            free (name);
            if (rc == -1)
                break;
        }
    }
    if (!stream.client_gone && !stream.failed) {
        s_flush (&stream);
        if (!stream.client_gone && mg_write (request->conn, "0\r\n\r\n", 5) != 5)
            stream.client_gone = true;
    }
    if (stream.failed && !stream.client_gone)
        s_cut (request->conn);
    if (stream.client_gone && request->gateway->verbose)
        zsys_debug ("gateway api - GET %s: client gone after %" PRIu64 " rows", s_uri (&stream),
                    stream.rows);

done:
    if (stream.pg && !stream.abandoned)
        PQclear (PQexec (stream.pg, S_SESSION_RESET));
    //  The pool closes a connection left mid-statement or broken.
    if (stream.pg)
        gateway_db_release (request->gateway->db, stream.pg);
    free (stream.buffer);
    PQclear (ports);
    atomic_fetch_sub (&s_exports, 1);
    return status;
}

static int
s_port_readings (gateway_api_request_t *request)
{
    return s_export (request, request->segments[1], false);
}

static int
s_all_readings (gateway_api_request_t *request)
{
    return s_export (request, NULL, false);
}

static int
s_port_episodes (gateway_api_request_t *request)
{
    return s_export (request, request->segments[1], true);
}

static int
s_all_episodes (gateway_api_request_t *request)
{
    return s_export (request, NULL, true);
}

const gateway_api_route_t gateway_api_export_routes[] = {
    {"GET", "ports/:uuid/readings.csv", true, s_port_readings},
    {"GET", "ports/:uuid/episodes.csv", true, s_port_episodes},
    {"GET", "readings.csv", true, s_all_readings},
    {"GET", "episodes.csv", true, s_all_episodes},
    {0}};

//  ==========================================================================
//  Self test: the CSV helper, then every export over real HTTP against
//  PHANTOM_TEST_DATABASE on a server with the gateway's own options
//  (keep-alive, request timeout): exact rows, quoting, buckets, errors,
//  2 million readings streamed in bounded memory, a client that leaves, a
//  database that fails mid-stream, and the bound on exports at once.

#define S_TEST_FIELDS 12     //  most fields of a record the test reads
#define S_TEST_FIELD_MAX 512 //  longest field it reads
#define S_TEST_POOL 4        //  connections of the test's pool
#define S_TEST_BIG 2000000   //  readings of the memory test

//  One download as a client sees it.
typedef struct {
    int fd;            //  the connection
    int status;        //  the answer's status
    char head[4096];   //  its status line and headers
    char raw[16384];   //  bytes received and not read yet
    size_t raw_at;     //  first of them
    size_t raw_size;   //  end of them
    size_t chunk_left; //  body bytes left in the current chunk
    bool ended;        //  the last chunk came
    bool broken;       //  the connection ended (or stalled 15 s) before it
} s_download_t;

//  One record of a download.
typedef struct {
    int count;                                    //  fields
    char fields[S_TEST_FIELDS][S_TEST_FIELD_MAX]; //  each decoded
} s_record_t;

static int
s_raw_byte (s_download_t *self)
{
    if (self->raw_at == self->raw_size) {
        ssize_t count = recv (self->fd, self->raw, sizeof self->raw, 0);
        if (count <= 0)
            return -1;
        self->raw_at = 0;
        self->raw_size = (size_t)count;
    }
    return (unsigned char)self->raw[self->raw_at++];
}

//  Sends GET path (keep-alive, as a browser would) and reads the answer's head.
static void
s_download_open (s_download_t *self, int port, const char *path, const char *auth)
{
    memset (self, 0, sizeof *self);
    self->fd = gateway_fixture_socket (port, 15);
    char authorization[128] = "", request[1024];
    if (auth)
        snprintf (authorization, sizeof authorization, "Authorization: Bearer %s\r\n", auth);
    int length =
        snprintf (request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n", path,
                  port, authorization);
    assert (send (self->fd, request, (size_t)length, 0) == length);
    size_t got = 0;
    while (got + 1 < sizeof self->head) {
        int c = s_raw_byte (self);
        assert (c >= 0);
        self->head[got++] = (char)c;
        self->head[got] = 0;
        if (got >= 4 && memcmp (self->head + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    assert (sscanf (self->head, "HTTP/1.1 %d", &self->status) == 1);
}

static void
s_download_close (s_download_t *self)
{
    if (self->fd >= 0)
        close (self->fd);
    self->fd = -1;
}

//  The value of header name in the answer, into value; false when absent.
static bool
s_download_header (s_download_t *self, const char *name, char *value, size_t size)
{
    char needle[64];
    snprintf (needle, sizeof needle, "\r\n%s: ", name);
    const char *found = strcasestr (self->head, needle);
    if (!found)
        return false;
    found += strlen (needle);
    size_t length = strcspn (found, "\r");
    snprintf (value, size, "%.*s", (int)length, found);
    return true;
}

//  The JSON body of an answer with a Content-Length (an error); caller decrefs.
static json_t *
s_download_json (s_download_t *self)
{
    char length_text[24];
    assert (s_download_header (self, "Content-Length", length_text, sizeof length_text));
    size_t length = (size_t)atol (length_text);
    char *body = (char *)malloc (length + 1);
    assert (body);
    for (size_t index = 0; index < length; index++) {
        int c = s_raw_byte (self);
        assert (c >= 0);
        body[index] = (char)c;
    }
    body[length] = 0;
    json_t *json = json_loads (body, 0, NULL);
    free (body);
    assert (json);
    return json;
}

//  Starts the next chunk; false at the last one (ended) or when broken.
static bool
s_chunk_start (s_download_t *self)
{
    size_t size = 0;
    int digits = 0, c;
    while ((c = s_raw_byte (self)) >= 0 && isxdigit (c) && digits < 8) {
        size = size * 16 + (size_t)(isdigit (c) ? c - '0' : tolower (c) - 'a' + 10);
        digits++;
    }
    if (digits == 0 || c != '\r' || s_raw_byte (self) != '\n') {
        self->broken = true;
        return false;
    }
    if (size == 0) {
        self->ended = s_raw_byte (self) == '\r' && s_raw_byte (self) == '\n';
        self->broken = !self->ended;
        return false;
    }
    self->chunk_left = size;
    return true;
}

//  The next byte of a chunked body, or -1 at its end (ended or broken).
static int
s_body_byte (s_download_t *self)
{
    if (self->ended || self->broken || (self->chunk_left == 0 && !s_chunk_start (self)))
        return -1;
    int c = s_raw_byte (self);
    if (c < 0) {
        self->broken = true;
        return -1;
    }
    if (--self->chunk_left == 0 && (s_raw_byte (self) != '\r' || s_raw_byte (self) != '\n')) {
        self->broken = true;
        return -1;
    }
    return c;
}

//  Reads the next CSV record (RFC 4180, CRLF). 1, 0 at the end of a whole
//  download, -1 when it is broken or not such CSV.
static int
s_record_next (s_download_t *self, s_record_t *record)
{
    record->count = 0;
    int c = s_body_byte (self);
    if (c < 0)
        return self->ended ? 0 : -1;
    while (record->count < S_TEST_FIELDS) {
        char *field = record->fields[record->count++];
        size_t length = 0;
        if (c == '"')
            while (true) {
                c = s_body_byte (self);
                if (c == '"' && (c = s_body_byte (self)) != '"')
                    break;
                if (c < 0 || length + 1 == S_TEST_FIELD_MAX)
                    return -1;
                field[length++] = (char)c;
            }
        else
            while (c >= 0 && c != ',' && c != '\r' && c != '\n' && c != '"') {
                if (length + 1 == S_TEST_FIELD_MAX)
                    return -1;
                field[length++] = (char)c;
                c = s_body_byte (self);
            }
        field[length] = 0;
        if (c == '\r')
            return s_body_byte (self) == '\n' ? 1 : -1;
        if (c != ',')
            return -1;
        c = s_body_byte (self);
    }
    return -1;
}

//  Reads the header record and checks it is header.
static void
s_record_header (s_download_t *self, const char *header)
{
    s_record_t record;
    assert (s_record_next (self, &record) == 1);
    char joined[256] = "";
    for (int index = 0; index < record.count; index++) {
        strcat (joined, index ? "," : "");
        strcat (joined, record.fields[index]);
    }
    strcat (joined, "\r\n");
    assert (streq (joined, header));
}

//  A user in time zone with a session; *token gets its token, returns
//  its id. Caller frees both.
static char *
s_test_user (PGconn *pg, const char *suffix, const char *name, const char *zone, char **token)
{
    char email[128], token_text[GATEWAY_API_TOKEN_CHARS + 1], hash[GATEWAY_API_HASH_TEXT];
    snprintf (email, sizeof email, "%s.%s@example.com", name, suffix);
    const char *values[] = {email, name, zone};
    char *user = gateway_fixture_sql (pg,
                                      "INSERT INTO users (email, name, password_hash, time_zone)"
                                      " VALUES ($1, $2, 'none', $3) RETURNING id::text",
                                      3, values);
    gateway_api_token_new (token_text, hash);
    const char *session[] = {hash, user};
    free (gateway_fixture_sql (pg,
                               "INSERT INTO sessions (token_hash, user_id, expires_at)"
                               " VALUES ($1::bytea, $2::bigint, now () + interval '1 day')",
                               2, session));
    *token = strdup (token_text);
    return user;
}

//  A port of user named name (on a device of its own); caller frees.
static char *
s_test_port (PGconn *pg, const char *user, const char *name)
{
    const char *values[] = {user, name};
    return gateway_fixture_sql (
        pg,
        "WITH d AS (INSERT INTO devices (user_id, name) VALUES ($1::bigint, 'Board')"
        "           RETURNING id)"
        " INSERT INTO ports (user_id, device_id, name)"
        " SELECT $1::bigint, id, $2 FROM d RETURNING id::text",
        2, values);
}

//  One reading as it goes in and as the export must give it back.
typedef struct {
    const char *ts;    //  ISO-8601 UTC with ms, as exported
    const char *local; //  Europe/Berlin, NULL when outside the window
    double power, voltage, current;
    int status;
} s_test_reading_t;

//  Around the start of summer time in Berlin (01:00 UTC, 02:00 local
//  becomes 03:00), in the window 00:58:00 to 01:01:00 UTC; the first and
//  last are just outside it.
static const s_test_reading_t s_fridge[] = {
    {"2026-03-29T00:57:59.999Z", NULL, 5, 230, 0.02, 1},
    {"2026-03-29T00:58:00.000Z", "2026-03-29 01:58:00", 1, 230, 0.0043478260869565218, 1},
    {"2026-03-29T00:58:30.123Z", "2026-03-29 01:58:30", 2, 230.1, 0.1, 2},
    {"2026-03-29T00:59:00.000Z", "2026-03-29 01:59:00", 10, 229.9, 0.043, 3},
    {"2026-03-29T00:59:15.000Z", "2026-03-29 01:59:15", 20, 230.25, 1e-7, 3},
    {"2026-03-29T00:59:59.999Z", "2026-03-29 01:59:59", 60, 231, 0.26, 1},
    {"2026-03-29T01:00:00.000Z", "2026-03-29 03:00:00", 0.1, 230, 0.0004, 2},
    {"2026-03-29T01:00:30.500Z", "2026-03-29 03:00:30", 4.6, 1234.5678, 0.02, 1},
    {"2026-03-29T01:01:00.000Z", NULL, 7, 230, 0.03, 1},
};
static const s_test_reading_t s_hostile[] = {
    {"2026-03-29T00:58:10.000Z", "2026-03-29 01:58:10", 3.25, 229, 0.5, 3},
    {"2026-03-29T01:00:10.000Z", "2026-03-29 03:00:10", 2.5, 228, 0.25, 4},
};
#define S_TEST_HOSTILE "=cmd|\"x\",y"
#define S_TEST_WINDOW "from=2026-03-29T00:58:00Z&to=2026-03-29T01:01:00.000Z"

static void
s_test_readings_insert (PGconn *pg, const char *port, const s_test_reading_t *readings,
                        size_t count)
{
    for (size_t index = 0; index < count; index++) {
        char power[32], voltage[32], current[32], status[8];
        snprintf (power, sizeof power, "%.17g", readings[index].power);
        snprintf (voltage, sizeof voltage, "%.17g", readings[index].voltage);
        snprintf (current, sizeof current, "%.17g", readings[index].current);
        snprintf (status, sizeof status, "%d", readings[index].status);
        const char *values[] = {port, readings[index].ts, voltage, current, power, status};
        free (gateway_fixture_sql (
            pg,
            "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
            " VALUES ($1::uuid, $2::timestamptz, $3::float8, $4::float8,"
            "         $5::float8, $6::smallint)",
            6, values));
    }
}

//  The next record is reading of port named name (decoded), exactly.
static void
s_test_reading_check (s_download_t *download, const char *port, const char *name,
                      const s_test_reading_t *reading)
{
    s_record_t record;
    assert (s_record_next (download, &record) == 1);
    assert (record.count == 8);
    assert (streq (record.fields[0], reading->ts));
    assert (streq (record.fields[1], reading->local));
    assert (streq (record.fields[2], port));
    assert (streq (record.fields[3], name));
    assert (strtod (record.fields[4], NULL) == reading->power);
    assert (strtod (record.fields[5], NULL) == reading->voltage);
    assert (strtod (record.fields[6], NULL) == reading->current);
    assert (streq (record.fields[7], proto_status_name (reading->status)));
}

//  Reads an export to its end and expects it whole.
static void
s_test_end (s_download_t *download)
{
    s_record_t record;
    assert (s_record_next (download, &record) == 0);
    assert (download->ended && !download->broken);
    s_download_close (download);
}

//  Expects status (with error.field when field is not NULL) for path.
static void
s_test_refused (int http, const char *path, const char *auth, int status, const char *field)
{
    s_download_t download;
    s_download_open (&download, http, path, auth);
    assert (download.status == status);
    json_t *body = s_download_json (&download);
    json_t *error = json_object_get (body, "error");
    if (field)
        assert (streq (json_string_value (json_object_get (error, "field")), field));
    if (status == 404)
        assert (streq (json_string_value (json_object_get (error, "code")), "not_found"));
    json_decref (body);
    s_download_close (&download);
}

static void
s_test_readings (int http, const char *auth, const char *fridge, const char *hostile,
                 const char *other)
{
    char path[256], value[256];
    s_download_t download;
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?" S_TEST_WINDOW, fridge);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    assert (s_download_header (&download, "Content-Type", value, sizeof value) &&
            streq (value, "text/csv; charset=utf-8"));
    assert (
        s_download_header (&download, "Content-Disposition", value, sizeof value) &&
        streq (value, "attachment; filename=\"phantomwatch-readings-2026-03-29-2026-03-29.csv\""));
    assert (s_download_header (&download, "Cache-Control", value, sizeof value) &&
            streq (value, "no-store"));
    assert (s_download_header (&download, "Transfer-Encoding", value, sizeof value) &&
            streq (value, "chunked"));
    assert (!s_download_header (&download, "Content-Length", value, sizeof value));
    s_record_header (&download, s_readings_header);
    //  Every reading of the window, nothing outside it; numbers in their
    //  shortest exact text.
    for (size_t index = 1; index < 8; index++)
        s_test_reading_check (&download, fridge, "Fridge", &s_fridge[index]);
    s_test_end (&download);

    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?" S_TEST_WINDOW, hostile);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    for (size_t index = 0; index < 2; index++)
        s_test_reading_check (&download, hostile, "'" S_TEST_HOSTILE, &s_hostile[index]);
    s_test_end (&download);

    //  All ports: by port, then time; not the other user's.
    bool fridge_first = strcmp (fridge, hostile) < 0;
    s_download_open (&download, http, "/api/readings.csv?" S_TEST_WINDOW, auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    for (int part = 0; part < 2; part++)
        if ((part == 0) == fridge_first)
            for (size_t index = 1; index < 8; index++)
                s_test_reading_check (&download, fridge, "Fridge", &s_fridge[index]);
        else
            for (size_t index = 0; index < 2; index++)
                s_test_reading_check (&download, hostile, "'" S_TEST_HOSTILE, &s_hostile[index]);
    s_test_end (&download);

    //  Buckets of a minute, against min / mean / max by hand; local times
    //  on both sides of the change to summer time.
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?" S_TEST_WINDOW "&step=60", fridge);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    assert (s_download_header (&download, "Content-Disposition", value, sizeof value) &&
            strstr (value, "phantomwatch-readings-60s-2026-03-29-2026-03-29.csv"));
    s_record_header (&download, s_buckets_header);
    const struct {
        const char *start, *local, *samples;
        double min, mean, max;
    } buckets[] = {{"2026-03-29T00:58:00.000Z", "2026-03-29 01:58:00", "2", 1, 1.5, 2},
                   {"2026-03-29T00:59:00.000Z", "2026-03-29 01:59:00", "3", 10, 30, 60},
                   {"2026-03-29T01:00:00.000Z", "2026-03-29 03:00:00", "2", 0.1, 2.35, 4.6}};
    for (size_t index = 0; index < 3; index++) {
        s_record_t record;
        assert (s_record_next (&download, &record) == 1 && record.count == 8);
        assert (streq (record.fields[0], buckets[index].start));
        assert (streq (record.fields[1], buckets[index].local));
        assert (streq (record.fields[2], fridge) && streq (record.fields[3], "Fridge"));
        assert (streq (record.fields[4], buckets[index].samples));
        assert (strtod (record.fields[5], NULL) == buckets[index].min);
        assert (fabs (strtod (record.fields[6], NULL) - buckets[index].mean) < 1e-12);
        assert (strtod (record.fields[7], NULL) == buckets[index].max);
    }
    s_test_end (&download);

    //  An empty window is the header alone; the default window (the last
    //  24 h) answers too.
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?from=0&to=1000", fridge);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    s_test_end (&download);
    s_download_open (&download, http, "/api/readings.csv", auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    s_test_end (&download);

    //  Not the user's port, no port, no session, bad parameters.
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?" S_TEST_WINDOW, other);
    s_test_refused (http, path, auth, 404, NULL);
    s_test_refused (http, "/api/ports/123e4567-e89b-12d3-a456-426614174000/readings.csv", auth, 404,
                    NULL);
    s_test_refused (http, "/api/readings.csv", NULL, 401, NULL);
    const char *bad[][2] = {{"from=yesterday", "from"},    {"to=2026-13-01T00:00:00Z", "to"},
                            {"from=2000&to=1000", "from"}, {"from=0&to=99999999999999", "from"},
                            {"step=-1", "step"},           {"step=1.5", "step"},
                            {"step=2678401", "step"}};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        snprintf (path, sizeof path, "/api/ports/%s/readings.csv?%s", fridge, bad[index][0]);
        s_test_refused (http, path, auth, 400, bad[index][1]);
        snprintf (path, sizeof path, "/api/readings.csv?%s", bad[index][0]);
        s_test_refused (http, path, auth, 400, bad[index][1]);
    }
}

//  One episode as it goes in and as the export must give it back.
typedef struct {
    const char *start, *end; //  ISO-8601 UTC, end NULL when open
    const char *local;       //  local start (Europe/Berlin)
    double mean, peak, energy;
    double duration, cost; //  by hand
} s_test_episode_t;

static void
s_test_episodes_insert (PGconn *pg, const char *port, const s_test_episode_t *episodes,
                        size_t count)
{
    for (size_t index = 0; index < count; index++) {
        char mean[32], peak[32], energy[32];
        snprintf (mean, sizeof mean, "%.17g", episodes[index].mean);
        snprintf (peak, sizeof peak, "%.17g", episodes[index].peak);
        snprintf (energy, sizeof energy, "%.17g", episodes[index].energy);
        const char *values[] = {port,  episodes[index].start, episodes[index].end, mean, peak,
                                energy};
        free (gateway_fixture_sql (
            pg,
            "INSERT INTO episodes (port_id, user_id, started_at, ended_at,"
            "                      mean_watts, peak_watts, energy_wh, samples)"
            " SELECT id, user_id, $2::timestamptz, $3::timestamptz, $4::float8,"
            "        $5::float8, $6::float8, 10 FROM ports WHERE id = $1::uuid",
            6, values));
    }
}

static void
s_test_episode_check (s_download_t *download, const char *port, const char *name,
                      const s_test_episode_t *episode)
{
    s_record_t record;
    assert (s_record_next (download, &record) == 1);
    assert (record.count == 11);
    assert (streq (record.fields[0], port) && streq (record.fields[1], name));
    assert (streq (record.fields[2], episode->start));
    assert (streq (record.fields[3], episode->end ? episode->end : ""));
    assert (streq (record.fields[4], episode->local));
    assert (strtod (record.fields[5], NULL) == episode->duration);
    assert (strtod (record.fields[6], NULL) == episode->mean);
    assert (strtod (record.fields[7], NULL) == episode->peak);
    assert (strtod (record.fields[8], NULL) == episode->energy);
    assert (fabs (strtod (record.fields[9], NULL) - episode->cost) < 1e-12);
    assert (streq (record.fields[10], "EUR"));
}

//  Fridge: touching the window's start, after a new tariff (0.50 from
//  2026-03-29 UTC, 0.30 before), open (priced and timed up to the port's
//  last reading), and one outside. Hostile: one in summer time.
static const s_test_episode_t s_fridge_episodes[] = {
    {"2026-03-27T23:30:00.000Z", "2026-03-28T00:30:00.000Z", "2026-03-28 00:30:00", 100, 120, 100,
     3600, 0.03},
    {"2026-03-29T00:30:00.000Z", "2026-03-29T00:58:30.000Z", "2026-03-29 01:30:00", 105.25, 130, 50,
     1710, 0.025},
    {"2026-03-29T00:59:00.000Z", NULL, "2026-03-29 01:59:00", 36.5, 60, 10, 90.5, 0.005},
    {"2026-03-01T00:00:00.000Z", "2026-03-01T01:00:00.000Z", "", 1, 1, 1, 0, 0},
};
static const s_test_episode_t s_hostile_episodes[] = {
    {"2026-03-29T02:00:00.000Z", "2026-03-29T02:10:00.000Z", "2026-03-29 04:00:00", 12, 13, 2, 600,
     0.001},
};
#define S_TEST_EPISODE_WINDOW "from=2026-03-28T00:00:00Z&to=1774828800000"

static void
s_test_episodes (int http, PGconn *pg, const char *user, const char *auth, const char *fridge,
                 const char *hostile, const char *other)
{
    const char *values[] = {user, fridge};
    free (gateway_fixture_sql (pg,
                               "INSERT INTO tariffs (user_id, valid_from, price_per_kwh)"
                               " VALUES ($1::bigint, '2026-03-29T00:00:00Z', 0.5)",
                               1, values));
    free (gateway_fixture_sql (pg,
                               "UPDATE ports SET last_reading_at = '2026-03-29T01:00:30.5Z'"
                               " WHERE id = $1::uuid",
                               1, values + 1));
    s_test_episodes_insert (pg, fridge, s_fridge_episodes, 4);
    s_test_episodes_insert (pg, hostile, s_hostile_episodes, 1);
    s_test_episodes_insert (pg, other, s_hostile_episodes, 1);

    char path[256], value[256];
    s_download_t download;
    snprintf (path, sizeof path, "/api/ports/%s/episodes.csv?" S_TEST_EPISODE_WINDOW, fridge);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    assert (
        s_download_header (&download, "Content-Disposition", value, sizeof value) &&
        streq (value, "attachment; filename=\"phantomwatch-episodes-2026-03-28-2026-03-30.csv\""));
    s_record_header (&download, s_episodes_header);
    for (size_t index = 0; index < 3; index++)
        s_test_episode_check (&download, fridge, "Fridge", &s_fridge_episodes[index]);
    s_test_end (&download);

    bool fridge_first = strcmp (fridge, hostile) < 0;
    s_download_open (&download, http, "/api/episodes.csv?" S_TEST_EPISODE_WINDOW, auth);
    assert (download.status == 200);
    s_record_header (&download, s_episodes_header);
    for (int part = 0; part < 2; part++)
        if ((part == 0) == fridge_first)
            for (size_t index = 0; index < 3; index++)
                s_test_episode_check (&download, fridge, "Fridge", &s_fridge_episodes[index]);
        else
            s_test_episode_check (&download, hostile, "'" S_TEST_HOSTILE, &s_hostile_episodes[0]);
    s_test_end (&download);

    snprintf (path, sizeof path, "/api/ports/%s/episodes.csv", other);
    s_test_refused (http, path, auth, 404, NULL);
    s_test_refused (http, "/api/episodes.csv?to=soon", auth, 400, "to");
    s_test_refused (http, "/api/episodes.csv", NULL, 401, NULL);
}

//  true when the plan of a port's readings, on pg as it is set up, sorts.
static bool
s_test_plan_sorts (PGconn *pg, const char *port)
{
    const char *values[] = {port, "0", "99999999999999", "UTC"};
    PGresult *result = PQexecParams (pg, "EXPLAIN " S_READINGS_SQL, 4, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    bool sorts = false;
    for (int row = 0; row < PQntuples (result); row++)
        sorts |= strstr (PQgetvalue (result, row, 0), "Sort  (") != NULL;
    PQclear (result);
    return sorts;
}

//  A field of /proc/self/status in kB.
static long
s_test_status_kb (const char *name)
{
    FILE *file = fopen ("/proc/self/status", "r");
    assert (file);
    char line[256];
    long value = -1;
    while (fgets (line, sizeof line, file))
        if (strncmp (line, name, strlen (name)) == 0)
            value = atol (line + strlen (name));
    fclose (file);
    return value;
}

//  Statements of exports running in the test database now.
static int
s_test_exports_running (PGconn *pg)
{
    char *count =
        gateway_fixture_sql (pg,
                             "SELECT count (*) FROM pg_stat_activity WHERE state = 'active'"
                             " AND datname = current_database () AND pid <> pg_backend_pid ()"
                             " AND query LIKE '%FROM readings WHERE port_id = $1::uuid AND ts >=%'",
                             0, NULL);
    int running = atoi (count);
    free (count);
    return running;
}

//  Waits (5 s at most) until every connection of the pool can be taken
//  and answers; returns how long that took, in ms.
static int64_t
s_test_pool_free (gateway_t *gateway)
{
    int64_t started = zclock_mono ();
    PGconn *taken[S_TEST_POOL];
    for (int index = 0; index < S_TEST_POOL; index++) {
        taken[index] = gateway_db_acquire (gateway->db, 5000);
        assert (taken[index]);
        PGresult *result = PQexec (taken[index], "SELECT 1");
        assert (PQresultStatus (result) == PGRES_TUPLES_OK);
        PQclear (result);
    }
    int64_t waited = zclock_mono () - started;
    for (int index = 0; index < S_TEST_POOL; index++)
        gateway_db_release (gateway->db, taken[index]);
    return waited;
}

//  2 million one-second readings of one port: every row exact, the
//  process's peak memory barely moved; then a client that leaves
//  mid-stream, a database that fails mid-stream, and exports at once.
static void
s_test_big (int http, gateway_t *gateway, PGconn *pg, const char *auth, const char *big,
            bool verbose)
{
    int64_t base = (gateway_time_now_ms () / 1000 - S_TEST_BIG - 3600) * 1000;
    char base_text[24], path[256];
    snprintf (base_text, sizeof base_text, "%" PRId64, base);
    const char *values[] = {big, base_text};
    int64_t started = zclock_mono ();
    //  Older than a week lands in readings_default, the rest in the
    //  daily partitions: the export reads both.
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " SELECT $1::uuid, to_timestamp ($2::bigint / 1000.0) + n * interval '1 second',"
        "        230 + (n % 7) / 4.0, (n % 100) / 64.0, (n % 1000) / 8.0, n % 4"
        " FROM generate_series (0, 1999999) n",
        2, values));
    free (gateway_fixture_sql (pg, "ANALYZE readings", 0, NULL));
    if (verbose)
        printf ("\n    %d readings inserted in %" PRId64 " ms", S_TEST_BIG,
                zclock_mono () - started);
    //  Where random reads look dear, the planner sorts the port's readings,
    //  unless the connection is set up as an export sets it up.
    free (gateway_fixture_sql (pg, "SET random_page_cost = 1000", 0, NULL));
    assert (s_test_plan_sorts (pg, big));
    assert (s_session_prepare (pg) == 0);
    assert (!s_test_plan_sorts (pg, big));
    free (gateway_fixture_sql (pg, "RESET ALL", 0, NULL));
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?from=%" PRId64 "&to=%" PRId64, big,
              base, base + (int64_t)S_TEST_BIG * 1000);

    long rss_before = s_test_status_kb ("VmRSS:");
    //  The peak from now on (Linux 4.0 and later): what the export adds.
    FILE *clear = fopen ("/proc/self/clear_refs", "w");
    bool peak_reset = clear && fputs ("5", clear) >= 0;
    if (clear)
        peak_reset &= fclose (clear) == 0;
    long rss_max = rss_before;
    started = zclock_mono ();
    s_download_t download;
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    s_record_t record;
    int64_t rows = 0;
    while (s_record_next (&download, &record) == 1) {
        int64_t n = rows++;
        char time[32];
        gateway_time_format (base + n * 1000, time);
        assert (record.count == 8 && streq (record.fields[0], time));
        assert (streq (record.fields[2], big) && streq (record.fields[3], "Big"));
        assert (strtod (record.fields[4], NULL) == (double)(n % 1000) / 8.0);
        assert (strtod (record.fields[5], NULL) == 230 + (double)(n % 7) / 4.0);
        assert (strtod (record.fields[6], NULL) == (double)(n % 100) / 64.0);
        assert (streq (record.fields[7], proto_status_name ((int)(n % 4))));
        if (n % 100000 == 0) {
            long rss = s_test_status_kb ("VmRSS:");
            rss_max = rss > rss_max ? rss : rss_max;
        }
    }
    assert (download.ended && !download.broken);
    assert (rows == S_TEST_BIG);
    s_download_close (&download);
    int64_t elapsed = zclock_mono () - started;
    long peak = peak_reset ? s_test_status_kb ("VmHWM:") : rss_max;
    printf ("\n    %" PRId64 " rows in %" PRId64 " ms (%" PRId64 " rows/s), memory %ld kB before,"
            " peak %ld kB during (%s)\n",
            rows, elapsed, rows * 1000 / (elapsed ? elapsed : 1), rss_before, peak,
            peak_reset ? "VmHWM" : "VmRSS samples");
    //  A few MB at most: one chunk buffer, libpq's, a row at a time.
    assert (peak - rss_before < 8 * 1024);

    //  A client that leaves after 1 MB: the statement is cancelled and
    //  every connection of the pool is free again at once.
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    for (int index = 0; index < 1024 * 1024; index++)
        assert (s_body_byte (&download) >= 0);
    assert (s_test_exports_running (pg) == 1);
    s_download_close (&download);
    int64_t waited = s_test_pool_free (gateway);
    assert (waited < 3000);
    assert (s_test_exports_running (pg) == 0);
    if (verbose)
        printf ("    client gone: pool free again after %" PRId64 " ms\n", waited);

    //  The database fails mid-stream: the download ends broken, at once
    //  (not when keep-alive runs out), and the next export works.
    printf ("    (an \"export cut\" error is expected next)\n");
    fflush (stdout);
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    for (int index = 0; index < 100; index++)
        assert (s_record_next (&download, &record) == 1);
    free (
        gateway_fixture_sql (pg,
                             "SELECT pg_terminate_backend (pid) FROM pg_stat_activity"
                             " WHERE state = 'active' AND datname = current_database ()"
                             " AND pid <> pg_backend_pid ()"
                             " AND query LIKE '%FROM readings WHERE port_id = $1::uuid AND ts >=%'",
                             0, NULL));
    started = zclock_mono ();
    int rc;
    while ((rc = s_record_next (&download, &record)) == 1)
        ;
    assert (rc == -1 && download.broken && !download.ended);
    assert (zclock_mono () - started < 5000);
    s_download_close (&download);
    s_test_pool_free (gateway);

    //  Two exports at once hold their slots (their clients read nothing);
    //  a third is 503 with Retry-After, and gets its turn once they left.
    s_download_t first, second, third;
    s_download_open (&first, http, path, auth);
    s_download_open (&second, http, path, auth);
    assert (first.status == 200 && second.status == 200);
    s_download_open (&third, http, path, auth);
    assert (third.status == 503);
    char value[32];
    assert (s_download_header (&third, "Retry-After", value, sizeof value) && atoi (value) > 0);
    json_t *body = s_download_json (&third);
    assert (streq (json_string_value (json_object_get (json_object_get (body, "error"), "code")),
                   "export_busy"));
    json_decref (body);
    s_download_close (&third);
    //  Each holds a connection of the user's share of the pool (2 here):
    //  the user's next request waits its 2 s and is 429, though the pool
    //  has connections free.
    s_download_open (&third, http, "/api/devices", auth);
    assert (third.status == 429);
    s_download_close (&third);
    s_download_close (&first);
    s_download_close (&second);
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?from=%" PRId64 "&to=%" PRId64, big,
              base, base + (int64_t)10 * 1000);
    int64_t deadline = zclock_mono () + 5000;
    do {
        s_download_open (&third, http, path, auth);
        if (third.status == 503)
            s_download_close (&third);
    } while (third.status == 503 && zclock_mono () < deadline);
    assert (third.status == 200);
    s_record_header (&third, s_readings_header);
    for (rows = 0; s_record_next (&third, &record) == 1; rows++)
        ;
    assert (rows == 10 && third.ended);
    s_download_close (&third);
    s_test_pool_free (gateway);
    assert (s_test_exports_running (pg) == 0);
}

//  What a PostgreSQL restart does to the pool: every connection it holds
//  is gone. An export's connection is reset before its statements; the
//  next export, session check included, runs.
static void
s_test_restart (int http, gateway_t *gateway, PGconn *pg, const char *pool_name, const char *auth,
                const char *big)
{
    PGconn *taken = gateway_db_acquire (gateway->db, 1000);
    assert (taken);
    char backend[16];
    snprintf (backend, sizeof backend, "%d", PQbackendPID (taken));
    const char *values[] = {backend};
    free (gateway_fixture_sql (pg, "SELECT pg_terminate_backend ($1::integer, 5000)", 1, values));
    assert (s_session_prepare (taken) == 0);
    assert (PQbackendPID (taken) != atoi (backend));
    PQclear (PQexec (taken, S_SESSION_RESET));
    gateway_db_release (gateway->db, taken);

    s_test_pool_free (gateway); //  all of them open
    char *ended =
        gateway_fixture_sql (pg,
                             "SELECT count (pg_terminate_backend (pid, 5000)) FROM pg_stat_activity"
                             " WHERE application_name = $1",
                             1, &pool_name);
    assert (ended && atoi (ended) == S_TEST_POOL);
    free (ended);
    char path[256];
    snprintf (path, sizeof path, "/api/ports/%s/readings.csv?from=0&to=1000", big);
    s_download_t download;
    s_download_open (&download, http, path, auth);
    assert (download.status == 200);
    s_record_header (&download, s_readings_header);
    s_test_end (&download);
}

void
gateway_api_export_test (bool verbose)
{
    printf (" * gateway_api_export: ");
    char *field = s_csv_field ("Fridge");
    assert (streq (field, "Fridge"));
    free (field);
    const char *cases[][2] = {{S_TEST_HOSTILE, "\"'=cmd|\"\"x\"\",y\""},
                              {"a,b", "\"a,b\""},
                              {"say \"hi\"", "\"say \"\"hi\"\"\""},
                              {"two\r\nlines", "\"two\r\nlines\""},
                              {"-5 dB", "'-5 dB"},
                              {"+1", "'+1"},
                              {"@home", "'@home"},
                              {"\tTV", "'\tTV"},
                              {"a=b", "a=b"},
                              {"Küche", "Küche"},
                              {"", ""}};
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        field = s_csv_field (cases[index][0]);
        assert (streq (field, cases[index][1]));
        free (field);
    }

    const char *conninfo =
        gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset; helpers OK)");
    PGconn *pg = gateway_fixture_connect (conninfo);
    gateway_t gateway;
    memset (&gateway, 0, sizeof gateway);
    gateway.verbose = verbose;
    //  The pool's connections (opened when first taken) carry a name the
    //  test finds them by.
    char pool_name[48];
    snprintf (pool_name, sizeof pool_name, "gateway_api_export_test_%d", (int)getpid ());
    setenv ("PGAPPNAME", pool_name, 1);
    gateway.db = gateway_db_new (conninfo, S_TEST_POOL);
    gateway_db_set_limits (gateway.db, GATEWAY_API_STATEMENT_TIMEOUT_MS, 2);
    //  The gateway's own options: keep-alive, so a cut download must close
    //  the connection itself; request timeout 5 s.
    gateway.http = gateway_http_start ("127.0.0.1:0", 8, GATEWAY_HTTP_REQUEST_TIMEOUT_MS, NULL);
    assert (gateway.http);
    gateway_api_register (&gateway);
    struct mg_server_port ports[2];
    assert (mg_get_server_ports (gateway.http, 2, ports) >= 1);
    int http = ports[0].port;

    char suffix[24];
    snprintf (suffix, sizeof suffix, "%d.%" PRId64, (int)getpid (), zclock_time ());
    char *token_a, *token_b, *token_c;
    char *user_a = s_test_user (pg, suffix, "ann", "Europe/Berlin", &token_a);
    char *user_b = s_test_user (pg, suffix, "bob", "UTC", &token_b);
    char *user_c = s_test_user (pg, suffix, "cid", "UTC", &token_c);
    char *fridge = s_test_port (pg, user_a, "Fridge");
    char *hostile = s_test_port (pg, user_a, S_TEST_HOSTILE);
    char *other = s_test_port (pg, user_b, "Fridge");
    char *big = s_test_port (pg, user_c, "Big");
    s_test_readings_insert (pg, fridge, s_fridge, sizeof s_fridge / sizeof s_fridge[0]);
    s_test_readings_insert (pg, hostile, s_hostile, 2);
    s_test_readings_insert (pg, other, s_hostile, 2);

    s_test_readings (http, token_a, fridge, hostile, other);
    s_test_episodes (http, pg, user_a, token_a, fridge, hostile, other);
    s_test_big (http, &gateway, pg, token_c, big, verbose);
    s_test_restart (http, &gateway, pg, pool_name, token_c, big);
    unsetenv ("PGAPPNAME");

    //  Readings have no foreign key: they go by hand, the rest with the users.
    const char *values[] = {user_a, user_b, user_c};
    free (gateway_fixture_sql (
        pg,
        "WITH gone AS (DELETE FROM readings WHERE port_id IN (SELECT id FROM ports"
        "              WHERE user_id IN ($1::bigint, $2::bigint, $3::bigint)))"
        " DELETE FROM users WHERE id IN ($1::bigint, $2::bigint, $3::bigint)",
        3, values));
    free (fridge);
    free (hostile);
    free (other);
    free (big);
    free (user_a);
    free (user_b);
    free (user_c);
    free (token_a);
    free (token_b);
    free (token_c);
    mg_stop (gateway.http);
    gateway_db_destroy (&gateway.db);
    PQfinish (pg);
    printf ("    OK\n");
}
