/*  =========================================================================
    load_conn - one keep-alive connection and the request in flight on it
    =========================================================================
*/
#include "load_conn.h"
#include "load_answer.h"
#include "load_http.h"
#include "load_worker.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_ATTEMPTS_MAX 6         //  --retry: first try plus five retries
#define S_BACKOFF_BASE_US 100000 //  --retry: 100 ms, doubling up to LOAD_CONN_BACKOFF_CAP_US

//  --------------------------------------------------------------------------
//  Building requests

static int
s_out_reserve (load_conn_t *self, size_t more)
{
    if (self->out_size + more <= self->out_capacity)
        return 0;
    size_t capacity = self->out_capacity ? self->out_capacity : 1024;
    while (capacity < self->out_size + more)
        capacity *= 2;
    char *out = (char *)realloc (self->out, capacity);
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
    char digits[24];
    size_t at = sizeof digits;
    do {
        digits[--at] = (char)('0' + value % 10);
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
        out[index] = (char)('0' + fraction % 10);
        fraction /= 10;
    }
    return out + decimals;
}

//  One reading's fields after portId; values vary a little around a 46 W
//  load. Fixed-point integers written by hand: printf of doubles was most
//  of this tool's CPU at 500 readings per request.
#define S_READING_MAX 200 //  longest text s_out_reading writes

static int
s_out_reading (load_conn_t *self, int64_t seq, int64_t now_ms)
{
    load_worker_t *worker = self->worker;
    if (s_out_reserve (self, S_READING_MAX))
        return -1;
    uint64_t random = load_worker_random (worker);
    uint64_t voltage = 2280 + random % 41;           //  228.0 .. 232.0 V, tenths
    uint64_t current = 150 + (random >> 16) % 101;   //  0.150 .. 0.250 A, thousandths
    uint64_t power = (voltage * current + 50) / 100; //  W, hundredths
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
    out = s_put_uint (out, (uint64_t)seq);
    out = S_PUT_LITERAL (out, "\",\"timestamp\":");
    out = s_put_uint (out, (uint64_t)now_ms);
    *out++ = '}';
    self->out_size = (size_t)(out - self->out);
    return 0;
}

//  Appends {"portId":"<port>", (a comma first unless first).
static int
s_out_port (load_conn_t *self, const char *port, bool first)
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
    self->out_size = (size_t)(out - self->out);
    return 0;
}

//  Builds the request for readings first_seq .. first_seq+count-1 into out.
//  The header's Content-Length (10 characters, space-padded like "%10zu")
//  is patched in once the body is written.
static int
s_build_request (load_conn_t *self)
{
    load_run_t *run = self->worker->run;
    int64_t now_ms = zclock_time ();
    self->out_size = 0;
    //  Head, padded length, token and (single) portId: fields are at most LOAD_RUN_FIELD_MAX.
    if (s_out_reserve (self, run->head_length + 2 * LOAD_RUN_FIELD_MAX + 64))
        return -1;
    char *out = s_put (self->out, run->head, run->head_length);
    size_t length_at = (size_t)(out - self->out);
    out = S_PUT_LITERAL (out, "          \r\n\r\n");
    size_t body_at = (size_t)(out - self->out);
    out = S_PUT_LITERAL (out, "{\"deviceToken\":\"");

    if (run->batch > 1) {
        load_device_t *device =
            &run->devices[atomic_fetch_add (&run->device_cursor, 1) % run->device_count];
        size_t port = atomic_fetch_add (&device->cursor, self->count);
        out = s_put (out, device->token, strlen (device->token));
        out = S_PUT_LITERAL (out, "\",\"readings\":[");
        self->out_size = (size_t)(out - self->out);
        for (size_t index = 0; index < self->count; index++)
            if (s_out_port (self, device->ports[(port + index) % device->port_count], index == 0) ||
                s_out_reading (self, self->first_seq + (int64_t)index, now_ms))
                return -1;
        if (s_out_reserve (self, 2))
            return -1;
        out = S_PUT_LITERAL (self->out + self->out_size, "]}");
        self->out_size = (size_t)(out - self->out);
    } else {
        load_pair_t *pair = &run->pairs[atomic_fetch_add (&run->pair_cursor, 1) % run->pair_count];
        load_device_t *device = &run->devices[pair->device];
        const char *port = device->ports[pair->port];
        out = s_put (out, device->token, strlen (device->token));
        out = S_PUT_LITERAL (out, "\",\"portId\":\"");
        out = s_put (out, port, strlen (port));
        out = S_PUT_LITERAL (out, "\",");
        self->out_size = (size_t)(out - self->out);
        if (s_out_reading (self, self->first_seq, now_ms))
            return -1;
    }
    size_t body_size = self->out_size - body_at;
    char *digit = self->out + length_at + 10;
    do {
        *--digit = (char)('0' + body_size % 10);
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
s_conn_watch (load_conn_t *self, uint32_t events)
{
    if (self->fd < 0 || self->events == events)
        return;
    struct epoll_event event = {.events = events, .data.ptr = self};
    if (epoll_ctl (self->worker->epoll, EPOLL_CTL_MOD, self->fd, &event) == 0)
        self->events = events;
}

void
load_conn_close (load_conn_t *self)
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
s_conn_connect (load_conn_t *self)
{
    load_run_t *run = self->worker->run;
    int fd = socket (run->address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt (fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect (fd, (struct sockaddr *)&run->address, run->address_length) != 0 &&
        errno != EINPROGRESS) {
        close (fd);
        return -1;
    }
    struct epoll_event event = {.events = EPOLLOUT, .data.ptr = self};
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

//  Writes what it can of the request; once all is out, waits for the answer.
//  Listens for input while sending too: the gateway answers 413 early.
static void
s_conn_send (load_conn_t *self, int64_t now)
{
    while (self->out_sent < self->out_size) {
        ssize_t sent = send (self->fd, self->out + self->out_sent, self->out_size - self->out_sent,
                             MSG_NOSIGNAL);
        if (sent > 0)
            self->out_sent += (size_t)sent;
        else if (sent < 0 && errno == EINTR)
            continue;
        else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            s_conn_watch (self, S_WATCH | EPOLLOUT);
            return;
        } else {
            //  The server may have answered before closing (e.g. 413); read it if so.
            self->state = CONN_READING;
            s_conn_watch (self, S_WATCH);
            return;
        }
    }
    self->state = CONN_READING;
    s_conn_watch (self, S_WATCH); //  no call unless the send was partial
    (void)now;
}

//  Sends (or resends) the request on the open connection or a new one.
void
load_conn_attempt (load_conn_t *self, int64_t now)
{
    self->sent_us = now;
    self->deadline_us = now + self->worker->run->timeout_us;
    self->out_sent = 0;
    self->in_size = 0;
    self->retry_after_s = 0;
    if (self->fd < 0) {
        if (s_conn_connect (self))
            load_conn_fail (self, OUT_CONNECT, now);
        return;
    }
    self->state = CONN_SENDING;
    s_conn_send (self, now);
}

//  The request is over: counts each reading's final outcome and frees the
//  connection for the next one.
void
load_conn_finish (load_conn_t *self, int64_t now)
{
    load_worker_t *worker = self->worker;
    for (size_t index = 0; index < self->count; index++) {
        int outcome = self->outcomes[index];
        if (outcome == OUT_NONE)
            outcome = OUT_TIMEOUT;
        worker->outcomes[outcome]++;
        int64_t seq = self->first_seq + (int64_t)index;
        if (outcome == OUT_201) {
            if (load_worker_acked (worker, seq, self->ids[index]))
                worker->failed = true;
        } else if (self->maybe_stored && load_http_outcome_transient (outcome)) {
            if (load_worker_unknown (worker, seq))
                worker->failed = true;
        }
    }
    bool refused = self->count > 0 && self->outcomes[0] == OUT_CONNECT && self->out_sent == 0;
    self->count = 0;
    self->state = CONN_IDLE;
    if (self->fd >= 0)
        s_conn_watch (self, S_WATCH); //  notice the server closing it
    if (self->interval_us == 0)
        //  A refused connect would fail again at once: do not spin on it.
        self->next_us = refused ? now + 100000 : now;
    //  Paced: next_us already holds the schedule; after a long stall do not
    //  fire a burst to catch up, just resume.
    else if (self->next_us < now - 1000000)
        self->next_us = now;
}

static bool
s_conn_pending (load_conn_t *self, bool *transient)
{
    bool pending = false;
    *transient = false;
    for (size_t index = 0; index < self->count; index++)
        if (self->outcomes[index] != OUT_201) {
            pending = true;
            if (self->outcomes[index] == OUT_NONE ||
                load_http_outcome_transient (self->outcomes[index]))
                *transient = true;
        }
    return pending;
}

//  After an attempt: retry what may succeed on retry, else finish.
static void
s_conn_after_attempt (load_conn_t *self, int64_t now)
{
    load_run_t *run = self->worker->run;
    bool transient;
    bool pending = s_conn_pending (self, &transient);
    int64_t abort_at = atomic_load (&run->abort_at_us);
    if (pending && transient && run->retry && self->attempt + 1 < S_ATTEMPTS_MAX &&
        (abort_at == 0 || now < abort_at)) {
        int64_t backoff = (int64_t)S_BACKOFF_BASE_US << self->attempt;
        if (self->retry_after_s > 0)
            backoff = (int64_t)self->retry_after_s * 1000000;
        if (backoff > LOAD_CONN_BACKOFF_CAP_US)
            backoff = LOAD_CONN_BACKOFF_CAP_US;
        //  Jitter, so connections that failed together do not retry together.
        backoff = backoff / 2 +
                  (int64_t)(load_worker_random (self->worker) % (uint64_t)(backoff / 2 + 1));
        self->attempt++;
        self->worker->retries++;
        self->state = CONN_BACKOFF;
        self->next_us = now + backoff;
        if (self->fd >= 0)
            s_conn_watch (self, S_WATCH);
    } else
        load_conn_finish (self, now);
}

//  The attempt failed without an answer: marks the readings not yet
//  acknowledged and decides between retry and giving up.
void
load_conn_fail (load_conn_t *self, int outcome, int64_t now)
{
    if (self->out_sent > 0)
        self->maybe_stored = true;
    load_conn_close (self);
    for (size_t index = 0; index < self->count; index++)
        if (self->outcomes[index] != OUT_201)
            self->outcomes[index] = (int8_t)outcome;
    s_conn_after_attempt (self, now);
}

static void
s_conn_response (load_conn_t *self, const load_http_response_t *response, int64_t now)
{
    load_worker_t *worker = self->worker;
    worker->requests++;
    worker->last_response_us = now;
    atomic_fetch_add_explicit (&worker->run->requests, 1, memory_order_relaxed);
    load_histogram_record (worker->latency, (uint64_t)(now - self->sent_us));
    self->served++;
    self->retry_after_s = response->retry_after_s;
    const char *body = self->in + response->body_offset;

    if (worker->run->batch > 1 && response->status == 200) {
        if (load_answer_batch (body, response->body_size, self->count, self->statuses, self->ids) ==
            0) {
            for (size_t index = 0; index < self->count; index++)
                if (self->outcomes[index] != OUT_201) {
                    int status = self->statuses[index];
                    self->outcomes[index] = (int8_t)(status == 201 && self->ids[index] <= 0
                                                         ? OUT_OTHER
                                                         : load_http_outcome (status));
                    //  A reading answered 503/504 inside a batch may still have been stored.
                    if (self->outcomes[index] == OUT_503 || self->outcomes[index] == OUT_504)
                        self->maybe_stored = true;
                }
        } else
            for (size_t index = 0; index < self->count; index++)
                if (self->outcomes[index] != OUT_201)
                    self->outcomes[index] = OUT_OTHER;
    } else {
        int outcome = load_http_outcome (response->status);
        if (outcome == OUT_201 && worker->run->batch <= 1) {
            self->ids[0] = load_answer_single_id (body, response->body_size);
            if (self->ids[0] <= 0)
                outcome = OUT_OTHER; //  a 201 without an id breaks the contract
        } else if (outcome == OUT_201)
            outcome = OUT_OTHER; //  batches answer 200
        for (size_t index = 0; index < self->count; index++)
            if (self->outcomes[index] != OUT_201)
                self->outcomes[index] = (int8_t)outcome;
    }
    if (load_http_outcome (response->status) == OUT_503 ||
        load_http_outcome (response->status) == OUT_504)
        self->maybe_stored = true;
    //  With the request not fully sent (early answer) the stream is out of step.
    if (response->close || self->out_sent < self->out_size || response->size < self->in_size)
        load_conn_close (self);
    self->in_size = 0;
    s_conn_after_attempt (self, now);
}

//  Reads what is there; handles a complete answer or the peer closing.
//  Stops reading as soon as the answer is complete, and when a recv did not
//  fill the buffer (the socket had no more): a further recv would only say
//  EAGAIN, one more system call per request. Bytes that come later wake
//  epoll again (level-triggered).
static void
s_conn_read (load_conn_t *self, int64_t now)
{
    bool eof = false;
    while (true) {
        if (self->in_capacity - self->in_size < 4096) {
            size_t capacity = self->in_capacity ? self->in_capacity * 2 : 8192;
            if (capacity > LOAD_HTTP_RESPONSE_MAX + LOAD_HTTP_HEADER_MAX) {
                load_conn_fail (self, OUT_OTHER, now);
                return;
            }
            char *in = (char *)realloc (self->in, capacity);
            if (!in) {
                self->worker->failed = true;
                load_conn_fail (self, OUT_OTHER, now);
                return;
            }
            self->in = in;
            self->in_capacity = capacity;
        }
        size_t room = self->in_capacity - self->in_size;
        ssize_t received = recv (self->fd, self->in + self->in_size, room, 0);
        if (received > 0) {
            self->in_size += (size_t)received;
            if ((size_t)received < room)
                break;
            //  A full buffer: there may be more; a complete answer ends here though.
            load_http_response_t response;
            if (load_http_parse (self->in, self->in_size, false, &response) != 0)
                break;
        } else if (received < 0 && errno == EINTR)
            continue;
        else if (received < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        else {
            eof = true; //  closed or reset
            break;
        }
    }
    load_http_response_t response;
    int rc = load_http_parse (self->in, self->in_size, eof, &response);
    if (rc == 1) {
        s_conn_response (self, &response, now);
        return;
    }
    if (rc == -2) {
        load_conn_fail (self, OUT_OTHER, now);
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
        load_conn_close (self);
        load_conn_attempt (self, now);
        return;
    }
    load_conn_fail (self, OUT_CONNECT, now);
}

//  Starts the next request if one is due; returns false if the run issues no more.
bool
load_conn_start (load_conn_t *self, int64_t now)
{
    load_run_t *run = self->worker->run;
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
    self->count = (size_t)count;
    self->attempt = 0;
    self->raced = false;
    self->maybe_stored = false;
    for (size_t index = 0; index < self->count; index++) {
        self->outcomes[index] = OUT_NONE;
        self->ids[index] = 0;
    }
    if (self->interval_us > 0)
        self->next_us += self->interval_us;
    if (s_build_request (self)) {
        self->worker->failed = true;
        load_conn_fail (self, OUT_OTHER, now);
        return true;
    }
    load_conn_attempt (self, now);
    return true;
}

//  Handles one epoll event on the connection.
void
load_conn_event (load_conn_t *self, uint32_t events, int64_t now)
{
    switch (self->state) {
    case CONN_CONNECTING: {
        int error = 0;
        socklen_t length = sizeof error;
        if (getsockopt (self->fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0 ||
            (events & (EPOLLERR | EPOLLHUP))) {
            load_conn_fail (self, OUT_CONNECT, now);
            return;
        }
        self->state = CONN_SENDING;
        s_conn_send (self, now);
        break;
    }
    case CONN_SENDING:
        if (events & (EPOLLIN | EPOLLERR | EPOLLHUP))
            s_conn_read (self, now);
        else if (events & EPOLLOUT)
            s_conn_send (self, now);
        break;
    case CONN_READING:
        s_conn_read (self, now);
        break;
    case CONN_IDLE:
    case CONN_BACKOFF: {
        //  Nothing is expected between requests: the server closed the
        //  connection (keep-alive timeout) or sent garbage. Drop it.
        char scratch[256];
        ssize_t received = recv (self->fd, scratch, sizeof scratch, 0);
        if (received < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        load_conn_close (self);
        break;
    }
    }
}

//  When the connection next needs the worker: its deadline, its next request
//  or retry, or never (idle once the run stops issuing).
int64_t
load_conn_due (load_conn_t *self)
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

void
load_conn_destroy (load_conn_t *self)
{
    load_conn_close (self);
    free (self->outcomes);
    free (self->ids);
    free (self->statuses);
    free (self->out);
    free (self->in);
    self->outcomes = NULL;
    self->ids = NULL;
    self->statuses = NULL;
    self->out = self->in = NULL;
}

void
load_conn_test (bool verbose)
{
    if (verbose)
        printf (" * load_conn: ");
    //  Requests: fixed-point values written by hand, read back as JSON.
    load_worker_t worker;
    memset (&worker, 0, sizeof worker);
    load_run_t *load_run = (load_run_t *)calloc (1, sizeof (load_run_t));
    assert (load_run);
    snprintf (load_run->run, sizeof load_run->run, "00000000000000ab");
    worker.run = load_run;
    worker.rng = 88172645463325252ULL;
    load_conn_t conn;
    memset (&conn, 0, sizeof conn);
    conn.worker = &worker;
    for (int round = 0; round < 1000; round++) {
        conn.out_size = 0;
        assert (s_out_port (&conn, "3f2c8a1e-9b7d-4c5e-8f10-1234567890ab", true) == 0);
        assert (s_out_reading (&conn, 12345 + round, 1704110400000LL) == 0);
        json_t *reading = json_loadb (conn.out, conn.out_size, 0, NULL);
        assert (reading);
        double voltage = json_real_value (json_object_get (reading, "voltage"));
        double current = json_real_value (json_object_get (reading, "current"));
        double power = json_real_value (json_object_get (reading, "power"));
        assert (voltage >= 228.0 && voltage <= 232.0);
        assert (current >= 0.15 && current <= 0.25);
        assert (fabs (power - voltage * current) <= 0.005 + 1e-9);
        char expected[64];
        snprintf (expected, sizeof expected, "00000000000000ab-%d", 12345 + round);
        assert (strcmp (json_string_value (json_object_get (reading, "readingId")), expected) == 0);
        assert (json_integer_value (json_object_get (reading, "timestamp")) == 1704110400000LL);
        json_decref (reading);
    }
    free (conn.out);
    free (load_run);
    //  Requests as sent: the head written once, Content-Length patched in.
    {
        load_run_t *request_run = (load_run_t *)calloc (1, sizeof (load_run_t));
        assert (request_run);
        assert (load_run_parse_url (request_run, "http://127.0.0.1:3000/base") == 0);
        snprintf (request_run->run, sizeof request_run->run, "00000000000000cd");
        char *ports[] = {"port-a", "port-b"};
        load_device_t device = {.token = "token-1", .ports = ports, .port_count = 2};
        load_pair_t pair = {0, 1};
        request_run->devices = &device;
        request_run->device_count = 1;
        request_run->pairs = &pair;
        request_run->pair_count = 1;
        load_worker_t request_worker;
        memset (&request_worker, 0, sizeof request_worker);
        request_worker.run = request_run;
        request_worker.rng = 88172645463325252ULL;
        load_conn_t request;
        memset (&request, 0, sizeof request);
        request.worker = &request_worker;
        for (int batch = 1; batch <= 3; batch += 2) {
            request_run->batch = batch;
            assert (load_run_prepare_head (request_run) == 0);
            request.first_seq = 77;
            request.count = (size_t)batch;
            assert (s_build_request (&request) == 0);
            const char *expected =
                batch > 1 ? "POST /base/api/sensor/readings HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
                            "Content-Type: application/json\r\nContent-Length: "
                          : "POST /base/api/sensor/reading HTTP/1.1\r\nHost: 127.0.0.1:3000\r\n"
                            "Content-Type: application/json\r\nContent-Length: ";
            assert (request.out_size > strlen (expected) + 14);
            assert (memcmp (request.out, expected, strlen (expected)) == 0);
            const char *length_text = request.out + strlen (expected);
            assert (length_text[0] == ' ' && memcmp (length_text + 10, "\r\n\r\n", 4) == 0);
            const char *body = length_text + 14;
            size_t body_size = request.out_size - (size_t)(body - request.out);
            assert ((size_t)strtoul (length_text, NULL, 10) == body_size);
            json_t *root = json_loadb (body, body_size, 0, NULL);
            assert (root);
            assert (strcmp (json_string_value (json_object_get (root, "deviceToken")), "token-1") ==
                    0);
            json_t *first =
                batch > 1 ? json_array_get (json_object_get (root, "readings"), 0) : root;
            assert (json_array_size (json_object_get (root, "readings")) == (batch > 1 ? 3u : 0u));
            assert (strcmp (json_string_value (json_object_get (first, "portId")),
                            batch > 1 ? "port-a" : "port-b") == 0);
            assert (strcmp (json_string_value (json_object_get (first, "readingId")),
                            "00000000000000cd-77") == 0);
            json_decref (root);
        }
        free (request.out);
        free (request_run);
    }

    //  Reading answers from a socket: one recv per answer when it fits, more
    //  when it does not; the server closing an idle connection drops it.
    {
        load_run_t *socket_run = (load_run_t *)calloc (1, sizeof (load_run_t));
        assert (socket_run);
        socket_run->batch = 1;
        socket_run->timeout_us = 1000000;
        atomic_store (&socket_run->stop, true); //  no next request from finish
        load_worker_t socket_worker;
        memset (&socket_worker, 0, sizeof socket_worker);
        socket_worker.run = socket_run;
        socket_worker.epoll = epoll_create1 (EPOLL_CLOEXEC);
        socket_worker.latency = load_histogram_new ();
        assert (socket_worker.epoll >= 0 && socket_worker.latency);
        int8_t outcomes[1];
        int64_t reading_ids[1];
        int scratch[1];
        load_conn_t reader;
        memset (&reader, 0, sizeof reader);
        reader.worker = &socket_worker;
        reader.outcomes = outcomes;
        reader.ids = reading_ids;
        reader.statuses = scratch;
        int pair_fds[2];
        assert (socketpair (AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair_fds) == 0);
        reader.fd = pair_fds[0];
        struct epoll_event event = {.events = S_WATCH, .data.ptr = &reader};
        assert (epoll_ctl (socket_worker.epoll, EPOLL_CTL_ADD, reader.fd, &event) == 0);
        reader.events = S_WATCH;

        //  A 201 in two pieces, then one larger than the first buffer.
        char answer[256];
        int answer_size = snprintf (
            answer, sizeof answer, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n%s9,",
            strlen (LOAD_ANSWER_SINGLE_PREFIX) + 4, LOAD_ANSWER_SINGLE_PREFIX);
        assert (answer_size > 60 && (size_t)answer_size < sizeof answer);
        size_t big_size = 20000;
        char *big = (char *)malloc (big_size + 256);
        assert (big);
        int big_header =
            snprintf (big, 256, "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", big_size);
        assert (big_header > 0);
        char *fill =
            s_put (big + big_header, LOAD_ANSWER_SINGLE_PREFIX, strlen (LOAD_ANSWER_SINGLE_PREFIX));
        fill = S_PUT_LITERAL (fill, "10,\"pad\":\"");
        size_t pad = big_size - (size_t)(fill - (big + big_header)) - 4;
        memset (fill, 'x', pad);
        memcpy (fill + pad, "\"}}}", 4);
        size_t big_total = (size_t)big_header + big_size;

        for (int round = 0; round < 2; round++) {
            reader.state = CONN_READING;
            reader.count = 1;
            reader.first_seq = round;
            outcomes[0] = OUT_NONE;
            reader.sent_us = zclock_usecs ();
            reader.deadline_us = reader.sent_us + 1000000;
            reader.out_size = reader.out_sent = 0;
            if (round == 0) {
                assert (write (pair_fds[1], answer, 60) == 60);
                s_conn_read (&reader, zclock_usecs ());
                assert (reader.state == CONN_READING && socket_worker.requests == 0);
                assert (write (pair_fds[1], answer + 60, (size_t)answer_size - 60) ==
                        answer_size - 60);
                assert (write (pair_fds[1], "}}", 2) == 2);
            } else
                assert (write (pair_fds[1], big, big_total) == (ssize_t)big_total);
            s_conn_read (&reader, zclock_usecs ());
            assert (reader.state == CONN_IDLE && reader.fd >= 0);
            assert (socket_worker.requests == (uint64_t)round + 1);
            assert (socket_worker.outcomes[OUT_201] == (uint64_t)round + 1);
            load_ack_t *acks = (load_ack_t *)socket_worker.acked.items;
            assert (acks[round].seq == round && acks[round].id == (round ? 10 : 9));
        }
        assert (reader.in_capacity > big_total);
        //  Nothing is left to read and nothing is waiting.
        struct epoll_event ready;
        assert (epoll_wait (socket_worker.epoll, &ready, 1, 0) == 0);
        //  The server closes the idle connection: epoll says so, the connection goes.
        close (pair_fds[1]);
        assert (epoll_wait (socket_worker.epoll, &ready, 1, 100) == 1);
        assert (ready.events & EPOLLRDHUP);
        load_conn_event (&reader, ready.events, zclock_usecs ());
        assert (reader.fd == -1);
        free (big);
        free (reader.in);
        free (socket_worker.acked.items);
        load_histogram_destroy (&socket_worker.latency);
        close (socket_worker.epoll);
        free (socket_run);
    }

    if (verbose)
        printf ("OK\n");
}
