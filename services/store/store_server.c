/*  =========================================================================
    store_server - the store's sockets and group-commit loop
    =========================================================================
*/
#include "store_server.h"
#include "proto_curve.h"
#include "store_rollup.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

//  Verdicts queue here while a transaction commits; acks wait here for a
//  slow gateway before PUB drops them (the gateway then times out: 504).
#define S_HWM 100000
//  On a clean stop, acks of committed readings still get out.
#define S_PUB_LINGER_MS 1000
//  A lane with nothing to write this long lets waiting port rows out and
//  does its housekeeping.
#define S_IDLE_MS 100
//  Verdicts a lane can hold: one batch being written, the next collecting.
#define S_QUEUE_BATCHES 2
#define S_LANES_MAX 8
//  Most verdicts one step takes before returning to its caller.
#define S_STEP_MAX 20000
//  A batch smaller than this is written in turn with the other lanes' small
//  batches, never at the same time (see s_take_turn).
#define S_SMALL_BATCH 256
//  Longest wait for the turn; then the lane writes anyway.
#define S_TURN_WAIT_MS 1000

typedef struct _s_lane_t s_lane_t;

//  A lane: one writer (its own connection) on its own thread, with a queue
//  of verdicts. Every verdict of a port goes to the same lane.
struct _s_lane_t {
    store_server_t *server; //  owner
    size_t index;           //  lane number
    store_writer_t *writer; //  its PostgreSQL connection
    store_batch_t *batch;   //  the group commit in progress
    pthread_t thread;
    bool started;           //  thread runs
    pthread_mutex_t mutex;  //  guards head, count, stop
    pthread_cond_t more;    //  count went up from 0, or stop
    pthread_cond_t space;   //  count went down
    proto_verdict_t *queue; //  ring of capacity verdicts
    size_t capacity;
    size_t head;  //  oldest queued
    size_t count; //  queued and visible to the lane
    bool stop;    //  lane: write what is queued, then end
    //  The server thread's side, no lock: verdicts written into the ring
    //  after the visible ones, handed over in one go (s_hand_over).
    size_t tail;   //  next slot to write
    size_t staged; //  written, not yet visible
    size_t known;  //  count as last seen (may be high: safe)
    //  The lane's own
    proto_buffer_t buffer; //  encoded acks
    proto_ack_t *acks;     //  one group of acks
    size_t acks_max;
    store_rollup_t *rollup; //  its ports' minutes (the maintenance's; NULL: none)
    const char **ask_ports; //  scratch: ports whose newest reading s_mark asks for
    size_t *ask_rows;       //  ... their rows in the batch
    int64_t *ask_lasts;     //  ... the answers
    uint64_t batches;       //  group commits written
};

struct _store_server_t {
    zsock_t *pull;     //  verdicts from detectors
    zsock_t *pub;      //  acks to gateways
    void *pull_handle; //  libzmq handles, for the hot path
    void *pub_handle;
    pthread_mutex_t pub_mutex;        //  lanes take turns on the PUB socket
    pthread_mutex_t turn;             //  held by the lane writing a small batch
    int in_turn;                      //  lanes writing under the turn (atomic; 0 or 1)
    uint64_t turns;                   //  small batches written in turn (atomic)
    uint64_t overlaps;                //  ... while another was (atomic; must stay 0)
    char *verdict_endpoint;           //  as bound
    char *ack_endpoint;               //  as bound
    store_maintenance_t *maintenance; //  marks late readings; NULL: none
    s_lane_t *lanes[S_LANES_MAX];     //  writers
    size_t lane_count;
    bool started;       //  lane threads run; no more lanes
    size_t batch_max;   //  most verdicts per transaction
    int batch_ms;       //  longest collection while frames keep coming
    bool verbose;       //  debug logs
    uint64_t verdicts;  //  verdicts received
    uint64_t malformed; //  frames dropped as malformed
};

static zsock_t *
s_bind (int type, const char *endpoint, char **bound)
{
    zsock_t *sock = zsock_new (type);
    if (!sock)
        return NULL;
    if (type == ZMQ_PULL) {
        zsock_set_rcvhwm (sock, S_HWM);
        zsock_set_maxmsgsize (sock, PROTO_MESSAGE_MAX);
        zsock_set_linger (sock, 0);
    } else {
        zsock_set_sndhwm (sock, S_HWM);
        zsock_set_linger (sock, S_PUB_LINGER_MS);
    }
    //  With CURVE on and its keys unreadable, binding would accept anyone.
    if (proto_curve_server (sock, NULL, NULL) != 0) {
        zsock_destroy (&sock);
        return NULL;
    }
    if (zsock_bind (sock, "%s", endpoint) == -1) {
        zsys_error ("store server - cannot bind %s: %s", endpoint, zmq_strerror (zmq_errno ()));
        zsock_destroy (&sock);
        return NULL;
    }
    *bound = zsock_last_endpoint (sock);
    return sock;
}

//  --------------------------------------------------------------------------
//  Lanes

static void
s_lane_destroy (s_lane_t **self_p)
{
    s_lane_t *self = *self_p;
    if (!self)
        return;
    store_writer_destroy (&self->writer);
    store_batch_destroy (&self->batch);
    proto_buffer_release (&self->buffer);
    pthread_cond_destroy (&self->more);
    pthread_cond_destroy (&self->space);
    pthread_mutex_destroy (&self->mutex);
    free (self->queue);
    free (self->acks);
    free (self->ask_ports);
    free (self->ask_rows);
    free (self->ask_lasts);
    free (self);
    *self_p = NULL;
}

static s_lane_t *
s_lane_new (store_server_t *server, store_writer_t **writer_p)
{
    s_lane_t *self = (s_lane_t *)zmalloc (sizeof (s_lane_t));
    self->server = server;
    self->index = server->lane_count;
    self->writer = *writer_p;
    *writer_p = NULL;
    pthread_mutex_init (&self->mutex, NULL);
    //  Waits are bounded by the monotonic clock, immune to clock steps.
    pthread_condattr_t attributes;
    pthread_condattr_init (&attributes);
    pthread_condattr_setclock (&attributes, CLOCK_MONOTONIC);
    pthread_cond_init (&self->more, &attributes);
    pthread_cond_init (&self->space, &attributes);
    pthread_condattr_destroy (&attributes);
    proto_buffer_init (&self->buffer);
    self->capacity = server->batch_max * S_QUEUE_BATCHES;
    self->queue = (proto_verdict_t *)calloc (self->capacity, sizeof (proto_verdict_t));
    self->batch = store_batch_new (server->batch_max);
    self->acks_max = server->batch_max < PROTO_ACKS_MAX ? server->batch_max : PROTO_ACKS_MAX;
    self->acks = (proto_ack_t *)calloc (self->acks_max, sizeof (proto_ack_t));
    self->ask_ports = (const char **)calloc (server->batch_max, sizeof (char *));
    self->ask_rows = (size_t *)calloc (server->batch_max, sizeof (size_t));
    self->ask_lasts = (int64_t *)calloc (server->batch_max, sizeof (int64_t));
    if (!self->queue || !self->batch || !self->acks || !self->ask_ports || !self->ask_rows ||
        !self->ask_lasts)
        s_lane_destroy (&self);
    return self;
}

static void
s_publish (s_lane_t *self)
{
    store_server_t *server = self->server;
    size_t cursor = 0;
    const char *gateway;
    size_t count;
    pthread_mutex_lock (&server->pub_mutex);
    while (
        (count = store_batch_group (self->batch, &cursor, &gateway, self->acks, self->acks_max))) {
        char topic[PROTO_TOPIC_MAX + 1];
        int size = snprintf (topic, sizeof (topic), "ack.%s", gateway);
        if (proto_acks_encode (self->acks, count, &self->buffer)) {
            zsys_error ("store server - cannot encode %zu acks for %s", count, gateway);
            continue;
        }
        //  PUB never blocks: at its high-water mark it drops, and the
        //  gateway's bounded wait turns that into a 504.
        if (zmq_send (server->pub_handle, topic, (size_t)size, ZMQ_SNDMORE) == -1 ||
            zmq_send (server->pub_handle, self->buffer.data, self->buffer.size, 0) == -1)
            zsys_warning ("store server - acks for %s not sent: %s", gateway,
                          zmq_strerror (zmq_errno ()));
    }
    pthread_mutex_unlock (&server->pub_mutex);
}

//  Small batches take turns. Each transaction costs PostgreSQL a fixed few
//  hundred microseconds of CPU besides its rows; with one reading per
//  request the lanes' batches are small, and written side by side they
//  would double those costs for the same rows. In turn, each lane's batch
//  grows while the other writes (as one writer's would); large batches
//  still go side by side. True if the turn is ours, false if the bounded
//  wait ran out (the lane then writes anyway: the turn saves work, it
//  must never stall a lane).
static bool
s_take_turn (store_server_t *server)
{
    struct timespec until = proto_deadline_ms (S_TURN_WAIT_MS);
    if (pthread_mutex_clocklock (&server->turn, CLOCK_MONOTONIC, &until) == 0)
        return true;
    zsys_warning ("store server - no turn for a small batch in %d ms, writing anyway",
                  S_TURN_WAIT_MS);
    return false;
}

//  Before the write of the batch: marks, in it (store_batch_mark), each
//  minute already rolled up that one of its readings changes, so that the
//  marks commit with the readings (store_maintenance.h, "Late readings":
//  rolled is what the maintenance had rolled up, or was rolling up, when
//  this write began). A reading changes its own minute, and the minute of
//  its predecessor (the port's reading just before it, whose interval to
//  it is that minute's energy). Its own minute before rolled: marked (the
//  re-roll of a minute also re-rolls its predecessor's). Else only the
//  predecessor's minute can be rolled up, and only if the predecessor can
//  be before rolled, at most the gap before the reading: when the lane
//  knows the port's newest reading and the new one comes after it, that is
//  the predecessor (or one of this batch, which marks its own minute),
//  marked when rolled up and within the gap; when the lane does not know
//  (a port first seen since the start) or the reading comes out of order,
//  the minute before the reading is marked, whose re-roll reaches the
//  predecessor wherever it is. Readings in order at their time mark
//  nothing: their minute is not rolled up yet, and the newest reading of
//  their port is in a minute that is not either (ports reporting at least
//  every few seconds; a port silent for longer marks its previous minute,
//  once). The number of readings marked.
static size_t
s_mark (s_lane_t *self, int64_t rolled)
{
    if (!self->rollup)
        return 0;
    int64_t rolled_ms = rolled > INT64_MAX / 1000 ? INT64_MAX : rolled * 1000;
    int64_t gap_ms = (int64_t)STORE_MAINTENANCE_GAP_SECONDS * 1000;
    size_t marked = 0, asks = 0;
    size_t size = store_batch_size (self->batch);
    for (size_t index = 0; index < size; index++) {
        const proto_verdict_t *verdict = store_batch_verdict (self->batch, index);
        if (verdict->no_reading || store_batch_decided (self->batch, index))
            continue;
        int64_t ts = verdict->reading.ts;
        if (ts - ts % 60000 < rolled_ms) {
            store_batch_mark (self->batch, index, ts);
            marked++;
        } else if (ts - gap_ms < rolled_ms) {
            self->ask_ports[asks] = verdict->reading.port;
            self->ask_rows[asks++] = index;
        }
    }
    if (asks)
        store_rollup_lasts (self->rollup, self->ask_ports, asks, self->ask_lasts);
    for (size_t ask = 0; ask < asks; ask++) {
        size_t index = self->ask_rows[ask];
        int64_t ts = store_batch_verdict (self->batch, index)->reading.ts;
        int64_t last = self->ask_lasts[ask];
        int64_t minute_ms = -1;
        if (last < 0 || ts < last)
            minute_ms = ts - ts % 60000 - 60000;
        else if (ts - last <= gap_ms && last - last % 60000 < rolled_ms)
            minute_ms = last;
        if (minute_ms >= 0) {
            store_batch_mark (self->batch, index, minute_ms);
            marked++;
        }
    }
    return marked;
}

//  After the commit of the batch: adds each reading it inserted to the
//  lane's rollup (store_rollup.h), which keeps its ports' minutes from
//  them as they come.
static void
s_track (s_lane_t *self)
{
    if (!self->rollup)
        return;
    size_t size = store_batch_size (self->batch);
    for (size_t index = 0; index < size; index++) {
        const proto_verdict_t *verdict = store_batch_verdict (self->batch, index);
        const proto_ack_t *ack = store_batch_ack (self->batch, index);
        if (verdict->no_reading || ack->code != PROTO_ACK_OK || ack->ts < 0 ||
            !store_batch_inserted (self->batch, index))
            continue;
        store_rollup_add (self->rollup, verdict->reading.port, ack->ts, verdict->reading.power);
    }
}

//  The lane's thread. Natural group commit: it writes whatever is queued
//  the moment it is free (and, for a small batch, has its turn), so while
//  one transaction commits the next batch collects by itself; a lone
//  verdict on a quiet system is written at once, without waiting for
//  company.
static void *
s_lane_run (void *argument)
{
    s_lane_t *self = (s_lane_t *)argument;
    store_server_t *server = self->server;
    bool turn = false;   //  holds the small-batch turn
    bool waited = false; //  waited for it for the batch in hand
    pthread_mutex_lock (&self->mutex);
    while (true) {
        if (self->count == 0) {
            if (turn) //  (only this lane takes from its queue)
                pthread_mutex_unlock (&server->turn);
            turn = waited = false;
            if (self->stop)
                break;
            struct timespec until = proto_deadline_ms (S_IDLE_MS);
            pthread_cond_timedwait (&self->more, &self->mutex, &until);
            if (self->count == 0 && !self->stop) {
                //  Idle: port rows waiting in memory go out when due, not
                //  with a next batch that may be long in coming.
                pthread_mutex_unlock (&self->mutex);
                store_writer_maintain (self->writer);
                store_writer_flush (self->writer, self->batch, false);
                pthread_mutex_lock (&self->mutex);
            }
            continue;
        }
        if (!waited && server->lane_count > 1 && self->count < S_SMALL_BATCH) {
            //  Waiting for the turn lets more verdicts queue: look again.
            pthread_mutex_unlock (&self->mutex);
            turn = s_take_turn (server);
            waited = true;
            pthread_mutex_lock (&self->mutex);
            continue;
        }
        waited = false;
        store_batch_reset (self->batch);
        size_t take = self->count < server->batch_max ? self->count : server->batch_max;
        for (size_t n = 0; n < take; n++) {
            int added =
                store_batch_add (self->batch, &self->queue[(self->head + n) % self->capacity]);
            assert (added == 0); //  take <= batch_max = capacity
        }
        self->head = (self->head + take) % self->capacity;
        self->count -= take;
        pthread_cond_signal (&self->space);
        pthread_mutex_unlock (&self->mutex);

        store_writer_maintain (self->writer);
        int64_t started = zclock_usecs ();
        //  From here to write_end the maintenance waits for this write
        //  before it rolls up past the minutes its marks were decided by.
        size_t marked = 0;
        if (self->rollup)
            marked =
                s_mark (self, store_maintenance_write_begin (server->maintenance, self->rollup));
        if (turn && __atomic_add_fetch (&server->in_turn, 1, __ATOMIC_RELAXED) > 1)
            __atomic_add_fetch (&server->overlaps, 1, __ATOMIC_RELAXED);
        store_writer_write (self->writer, self->batch);
        if (turn) {
            __atomic_sub_fetch (&server->in_turn, 1, __ATOMIC_RELAXED);
            __atomic_add_fetch (&server->turns, 1, __ATOMIC_RELAXED);
            pthread_mutex_unlock (&server->turn);
        }
        turn = false;
        s_publish (self);
        s_track (self); //  after the acks: it delays none
        if (self->rollup)
            store_maintenance_write_end (server->maintenance, self->rollup, marked > 0);
        __atomic_add_fetch (&self->batches, 1, __ATOMIC_RELAXED);
        if (server->verbose)
            zsys_debug ("store server - lane %zu: batch of %zu written in %" PRId64 " us",
                        self->index, take, zclock_usecs () - started);
        pthread_mutex_lock (&self->mutex);
    }
    pthread_mutex_unlock (&self->mutex);
    //  A clean stop writes what waits in memory.
    store_writer_flush (self->writer, self->batch, true);
    return NULL;
}

//  Makes the staged verdicts visible to the lane (one lock per hand-over,
//  not per verdict) and learns how full the queue is.
static void
s_hand_over (s_lane_t *self)
{
    pthread_mutex_lock (&self->mutex);
    bool was_empty = self->count == 0;
    self->count += self->staged;
    self->staged = 0;
    self->known = self->count;
    if (was_empty && self->count)
        pthread_cond_signal (&self->more);
    pthread_mutex_unlock (&self->mutex);
}

//  Makes room for one more staged verdict: hands over and, while the lane
//  is full, waits. Each wait is bounded (1 s, then a warning); the lane
//  empties its queue within its statement timeout, so the whole wait is
//  bounded too. Meanwhile verdicts queue in the PULL socket and then, at
//  its high-water mark, in the detectors: backpressure, not loss.
static void
s_room (s_lane_t *self)
{
    if (self->known + self->staged < self->capacity)
        return;
    s_hand_over (self);
    pthread_mutex_lock (&self->mutex);
    while (self->count >= self->capacity) {
        struct timespec until = proto_deadline_ms (1000);
        if (pthread_cond_timedwait (&self->space, &self->mutex, &until) == ETIMEDOUT)
            zsys_warning ("store server - lane %zu full for a second", self->index);
    }
    self->known = self->count;
    pthread_mutex_unlock (&self->mutex);
}

//  --------------------------------------------------------------------------
//  Bind the sockets and take the writer

store_server_t *
store_server_new (const char *verdict_endpoint, const char *ack_endpoint, store_writer_t **writer_p,
                  size_t batch_max, int batch_ms, bool verbose)
{
    assert (verdict_endpoint);
    assert (ack_endpoint);
    assert (writer_p && *writer_p);
    assert (batch_max > 0);
    store_server_t *self = (store_server_t *)zmalloc (sizeof (store_server_t));
    pthread_mutex_init (&self->pub_mutex, NULL);
    pthread_mutex_init (&self->turn, NULL);
    self->batch_max = batch_max;
    self->batch_ms = batch_ms;
    self->verbose = verbose;
    self->pull = s_bind (ZMQ_PULL, verdict_endpoint, &self->verdict_endpoint);
    self->pub = s_bind (ZMQ_PUB, ack_endpoint, &self->ack_endpoint);
    if (!self->pull || !self->pub || store_server_add_writer (self, writer_p)) {
        store_writer_destroy (writer_p);
        store_server_destroy (&self);
        return NULL;
    }
    self->pull_handle = zsock_resolve (self->pull);
    self->pub_handle = zsock_resolve (self->pub);
    zsys_info ("store server - verdicts on %s, acks on %s, batch %zu / %d ms",
               self->verdict_endpoint, self->ack_endpoint, batch_max, batch_ms);
    return self;
}

int
store_server_add_writer (store_server_t *self, store_writer_t **writer_p)
{
    assert (self);
    assert (writer_p && *writer_p);
    if (self->started || self->lane_count == S_LANES_MAX)
        return -1;
    s_lane_t *lane = s_lane_new (self, writer_p);
    if (!lane)
        return -1;
    //  Partitions and pruning are housekeeping for one connection.
    store_writer_set_housekeeping (lane->writer, self->lane_count == 0);
    lane->rollup = self->maintenance ? store_maintenance_new_rollup (self->maintenance) : NULL;
    self->lanes[self->lane_count++] = lane;
    return 0;
}

void
store_server_set_maintenance (store_server_t *self, store_maintenance_t *maintenance)
{
    assert (self);
    assert (!self->started);
    self->maintenance = maintenance;
    for (size_t index = 0; index < self->lane_count; index++)
        self->lanes[index]->rollup =
            maintenance ? store_maintenance_new_rollup (maintenance) : NULL;
}

size_t
store_server_writers (store_server_t *self)
{
    assert (self);
    return self->lane_count;
}

void
store_server_destroy (store_server_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_server_t *self = *self_p;
        //  Lanes write what they hold and what waits in memory, then end.
        for (size_t index = 0; index < self->lane_count; index++) {
            s_lane_t *lane = self->lanes[index];
            if (lane->started) {
                s_hand_over (lane);
                pthread_mutex_lock (&lane->mutex);
                lane->stop = true;
                pthread_cond_signal (&lane->more);
                pthread_mutex_unlock (&lane->mutex);
            }
        }
        for (size_t index = 0; index < self->lane_count; index++) {
            if (self->lanes[index]->started)
                pthread_join (self->lanes[index]->thread, NULL);
            else if (self->lanes[index]->writer)
                store_writer_flush (self->lanes[index]->writer, self->lanes[index]->batch, true);
            s_lane_destroy (&self->lanes[index]);
        }
        zsock_destroy (&self->pull);
        zsock_destroy (&self->pub);
        zstr_free (&self->verdict_endpoint);
        zstr_free (&self->ack_endpoint);
        pthread_mutex_destroy (&self->pub_mutex);
        pthread_mutex_destroy (&self->turn);
        free (self);
        *self_p = NULL;
    }
}

const char *
store_server_verdict_endpoint (store_server_t *self)
{
    assert (self);
    return self->verdict_endpoint;
}

const char *
store_server_ack_endpoint (store_server_t *self)
{
    assert (self);
    return self->ack_endpoint;
}

uint64_t
store_server_verdicts (store_server_t *self)
{
    assert (self);
    return self->verdicts;
}

uint64_t
store_server_batches (store_server_t *self)
{
    assert (self);
    uint64_t batches = 0;
    for (size_t index = 0; index < self->lane_count; index++)
        batches += __atomic_load_n (&self->lanes[index]->batches, __ATOMIC_RELAXED);
    return batches;
}

uint64_t
store_server_malformed (store_server_t *self)
{
    assert (self);
    return self->malformed;
}

uint64_t
store_server_turns (store_server_t *self, uint64_t *overlaps)
{
    assert (self);
    if (overlaps)
        *overlaps = __atomic_load_n (&self->overlaps, __ATOMIC_RELAXED);
    return __atomic_load_n (&self->turns, __ATOMIC_RELAXED);
}

//  Queues one verdict on its port's lane.
static void
s_stage (store_server_t *self, const proto_verdict_t *verdict)
{
    self->verdicts++;
    //  Every verdict of a port goes to one lane, so a port's rows and
    //  episodes are written in order, by one connection, and the
    //  lanes' transactions never touch the same port rows. A retried
    //  reading comes with its port, so its key is checked by the same
    //  lane: idempotency needs no coordination between lanes.
    s_lane_t *lane =
        self->lanes[self->lane_count == 1
                        ? 0
                        : proto_partition (verdict->reading.port, (uint32_t)self->lane_count)];
    s_room (lane);
    lane->queue[lane->tail] = *verdict;
    lane->tail = (lane->tail + 1) % lane->capacity;
    lane->staged++;
}

//  Takes one queued message of verdict frames (proto.h, batch messages)
//  into the lanes' stages without waiting. 1 if one was there (even
//  malformed), 0 if none, -1 on a socket error (interrupted).
static int
s_receive (store_server_t *self)
{
    zmq_msg_t message;
    zmq_msg_init (&message);
    if (zmq_msg_recv (&message, self->pull_handle, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&message);
        return zmq_errno () == EAGAIN ? 0 : -1;
    }
    bool more = zmq_msg_more (&message);
    const uint8_t *data = (const uint8_t *)zmq_msg_data (&message);
    size_t size = more ? 0 : zmq_msg_size (&message);
    size_t frames = 0;
    bool malformed = size == 0;
    for (size_t offset = 0, used; offset < size; offset += used) {
        proto_verdict_t verdict;
        if (frames == PROTO_BATCH_MAX ||
            proto_verdict_decode_next (data + offset, size - offset, &verdict, &used)) {
            malformed = true;
            break;
        }
        s_stage (self, &verdict);
        frames++;
    }
    zmq_msg_close (&message);
    //  A batch is one part; the rest of a longer message is dropped.
    while (more) {
        zmq_msg_init (&message);
        if (zmq_msg_recv (&message, self->pull_handle, ZMQ_DONTWAIT) == -1)
            more = false;
        else
            more = zmq_msg_more (&message);
        zmq_msg_close (&message);
    }
    if (malformed) {
        //  No gateway to answer: the gateway times out (504) and the client
        //  retries. The frames before a broken one are kept. Log the first
        //  few and then every thousandth.
        self->malformed++;
        if (self->malformed <= 10 || self->malformed % 1000 == 0)
            zsys_warning ("store server - malformed verdict frame dropped (%" PRIu64 " so far)",
                          self->malformed);
    }
    return 1;
}

//  --------------------------------------------------------------------------
//  Receive verdicts for the lanes

int
store_server_step (store_server_t *self, int timeout_ms)
{
    assert (self);
    if (!self->started) {
        for (size_t index = 0; index < self->lane_count; index++) {
            s_lane_t *lane = self->lanes[index];
            if (pthread_create (&lane->thread, NULL, s_lane_run, lane) == 0)
                lane->started = true;
            else {
                zsys_error ("store server - cannot start lane %zu", index);
                return -1;
            }
        }
        self->started = true;
    }
    zmq_pollitem_t item = {self->pull_handle, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc == -1)
        return -1;
    if (rc == 0)
        return 0;
    //  Drain what is queued: while frames keep coming, collect up to a
    //  batch or batch_ms before handing over; the moment the socket is
    //  empty, hand over (the lanes then commit at once).
    uint64_t before = self->verdicts;
    size_t staged = 0; //  since the last hand-over
    int64_t deadline = zclock_mono () + self->batch_ms;
    while (true) {
        uint64_t seen = self->verdicts;
        rc = s_receive (self);
        staged += (size_t)(self->verdicts - seen);
        if (rc == 1 && staged < self->batch_max && zclock_mono () < deadline)
            continue;
        for (size_t index = 0; index < self->lane_count; index++)
            if (self->lanes[index]->staged)
                s_hand_over (self->lanes[index]);
        staged = 0;
        //  Empty, interrupted, or long enough: the caller checks its stop.
        if (rc != 1 || self->verdicts - before >= S_STEP_MAX)
            break;
        deadline = zclock_mono () + self->batch_ms;
    }
    size_t handled = (size_t)(self->verdicts - before);
    return rc == -1 && handled == 0 ? -1 : (int)handled;
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

//  Steps the server and receives acks until count arrived or time is up;
//  returns how many arrived, each with its gateway (from the topic).
static size_t
s_collect (store_server_t *server, zsock_t *sub, proto_ack_t *acks, size_t count,
           char gateways[][PROTO_GATEWAY_MAX + 1], int timeout_ms)
{
    size_t received = 0;
    int64_t deadline = zclock_mono () + timeout_ms;
    while (received < count && zclock_mono () < deadline) {
        store_server_step (server, 10);
        zmsg_t *message;
        while (zsock_events (sub) & ZMQ_POLLIN && (message = zmsg_recv (sub))) {
            assert (zmsg_size (message) == 2);
            char *topic = zmsg_popstr (message);
            zframe_t *frame = zmsg_pop (message);
            //  More than expected can come (a probe sent twice is acked
            //  twice, maybe in one message): those are dropped.
            static proto_ack_t got_acks[PROTO_ACKS_MAX];
            size_t got;
            int rc = proto_acks_decode (zframe_data (frame), zframe_size (frame), got_acks,
                                        PROTO_ACKS_MAX, &got);
            assert (rc == 0);
            assert (strncmp (topic, "ack.", 4) == 0);
            if (got > count - received)
                got = count - received;
            for (size_t index = 0; index < got; index++) {
                acks[received + index] = got_acks[index];
                snprintf (gateways[received + index], PROTO_GATEWAY_MAX + 1, "%s", topic + 4);
            }
            received += got;
            zframe_destroy (&frame);
            zstr_free (&topic);
            zmsg_destroy (&message);
        }
    }
    return received;
}

//  Steps the server for ms and drops whatever acks arrive: the extra acks
//  of a probe sent more than once (the lanes answer each copy).
static void
s_drain (store_server_t *server, zsock_t *sub, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    while (zclock_mono () < deadline) {
        store_server_step (server, 10);
        zmsg_t *message;
        while (zsock_events (sub) & ZMQ_POLLIN && (message = zmsg_recv (sub)))
            zmsg_destroy (&message);
    }
}

static void
s_push (zsock_t *push, const proto_verdict_t *verdict)
{
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int rc = proto_verdict_encode (verdict, &buffer);
    assert (rc == 0);
    rc = zmq_send (zsock_resolve (push), buffer.data, buffer.size, 0);
    assert (rc == (int)buffer.size);
    proto_buffer_release (&buffer);
}

//  --------------------------------------------------------------------------
//  Lanes and the maintenance: the lanes keep their ports' minutes and mark
//  late readings in their transactions (s_mark, s_track); the
//  maintenance's runs take both (store_maintenance.h).

//  A server of one lane, whose rollup maintenance's runs take, and a PUSH
//  socket to it (*push_p); both the caller's.
static store_server_t *
s_lane_server_new (const char *database, store_maintenance_t *maintenance, zsock_t **push_p,
                   bool verbose)
{
    store_writer_t *writer = store_writer_new (database, verbose);
    store_server_t *server =
        store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", &writer, 100, 2, verbose);
    assert (server);
    store_server_set_maintenance (server, maintenance);
    zsock_t *push = zsock_new_push (store_server_verdict_endpoint (server));
    assert (push);
    zsock_set_sndtimeo (push, 1000);
    *push_p = push;
    return server;
}

//  Pushes a verdict of port at ts (seconds) to the server and steps it
//  until a lane has written (and added to its rollup) one more batch.
static void
s_lane_push (store_server_t *server, zsock_t *push, store_fixture_t *fixture, const char *port,
             int64_t ts, double power)
{
    static uint64_t request = 0;
    proto_verdict_t verdict;
    store_fixture_verdict (fixture, &verdict, "gwM", ++request, port, "", ts * 1000, power,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int rc = proto_verdict_encode (&verdict, &buffer);
    assert (rc == 0);
    uint64_t before = store_server_batches (server);
    rc = zmq_send (zsock_resolve (push), buffer.data, buffer.size, 0);
    assert (rc == (int)buffer.size);
    proto_buffer_release (&buffer);
    int64_t deadline = zclock_mono () + 5000;
    while (store_server_batches (server) == before) {
        assert (zclock_mono () < deadline);
        store_server_step (server, 10);
    }
}

//  Late readings through a store server's lane: one for a minute older
//  than the lookback (changing that minute and the energy of the one
//  before), and in order the first reading after the last rolled minute
//  (whose last interval was open). samples1 is port1's readings.
static void
s_lane_readings (store_maintenance_t *self, store_fixture_t *fixture, const char *database,
                 const char *port0, const char *port1, store_fixture_sample_t *samples1,
                 size_t *count1, int64_t base, int64_t high, bool verbose)
{
    (void)port0;
    zsock_t *push;
    store_server_t *server = s_lane_server_new (database, self, &push, verbose);
    assert (store_fixture_marks (fixture, port1) == 0);

    //  port1 has base - 2400, - 2380, - 2360 (3, 4, 8 W), then base + 5
    //  (store_fixture_catch_up_readings);
    //  one at base - 2335 is a new minute, and turns the interval from
    //  base - 2360 (longer than the gap before) into energy of its minute.
    //  Its mark is in rollup_marks as soon as the lane has written it.
    s_lane_push (server, push, fixture, port1, base - 2335, 5);
    memmove (samples1 + 4, samples1 + 3, 2 * sizeof (store_fixture_sample_t));
    samples1[3] = (store_fixture_sample_t){base - 2335, 5};
    (*count1)++;
    assert (store_fixture_marks (fixture, port1) == 1);
    assert (store_maintenance_rollup (self) >= 2);
    assert (store_fixture_marks (fixture, port1) == 0);
    store_fixture_check_minute (fixture, port1, samples1, *count1, base - 2400);
    store_fixture_check_minute (fixture, port1, samples1, *count1, base - 2340);
    store_fixture_check_minute (fixture, port1, samples1, *count1, base);
    store_fixture_check_minute (fixture, port1, samples1, *count1, base + 60);

    //  In order: the last rolled-up minute of port1 gets a reading (late
    //  itself), rolled up with its last interval open; then the next
    //  reading comes, after that minute: it closes the interval.
    int64_t rolled = store_maintenance_rolled (self);
    assert (rolled >= high);
    int64_t last_minute = rolled - 60;
    s_lane_push (server, push, fixture, port1, last_minute + 50, 20);
    samples1[(*count1)++] = (store_fixture_sample_t){last_minute + 50, 20};
    assert (store_maintenance_rollup (self) >= 1);
    assert (store_maintenance_rolled (self) >= rolled);
    rolled = store_maintenance_rolled (self);
    store_fixture_check_minute (fixture, port1, samples1, *count1, last_minute);
    int64_t next_ts = rolled + 1; //  rolled is at least 5 s back
    s_lane_push (server, push, fixture, port1, next_ts, 30);
    samples1[(*count1)++] = (store_fixture_sample_t){next_ts, 30};
    assert (store_fixture_marks (fixture, port1) == 1); //  last_minute's
    store_maintenance_rollup (self);
    store_fixture_check_minute (fixture, port1, samples1, *count1, last_minute);
    assert (store_fixture_marks (fixture, port1) == 0);

    zsock_destroy (&push);
    store_server_destroy (&server);
}

//  Late readings through a lane after a catch-up of an hour's downtime
//  (port1: a minute 40 minutes back, beyond the lookback, and two recent
//  ones); a minute of port0 changed behind the store's back meanwhile
//  stays as it is: the lanes' marks re-roll their readings' minutes only.
static void
s_late_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 2);
    const char *port0 = fixture->ports[0];
    const char *port1 = fixture->ports[1];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self); //  connects and does what is due
    int64_t high = store_fixture_rollup_high (fixture);
    int64_t base = high - 12 * 60;
    store_fixture_sample_t samples1[16];
    size_t count1 = store_fixture_catch_up_readings (fixture, port1, base, samples1, 16);
    store_fixture_reading (fixture, port0, base + 65, 1000);
    store_fixture_set_watermark (fixture, base - 3600);
    assert (store_maintenance_rollup (self) >= 4);
    char minute_text[24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, base + 60);
    const char *spoil_params[2] = {port0, minute_text};
    PQclear (store_fixture_sql (fixture,
                                "UPDATE readings_minute SET max_power = -1"
                                " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)",
                                2, spoil_params));
    const char *spoiled = "SELECT max_power = -1 FROM readings_minute"
                          " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)";

    s_lane_readings (self, fixture, database, port0, port1, samples1, &count1, base, high, verbose);
    char flag[8];
    store_fixture_text (fixture, spoiled, 2, spoil_params, flag, sizeof (flag));
    assert (streq (flag, "t")); //  untouched by all that
    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   late readings through a lane: OK\n");
}

//  A port's first reading through a lane, in a minute the lane's rollup
//  has whole, after a start: it marks the minute before, whose re-roll
//  reaches the reading's predecessor (in the table from before the start)
//  and gives it the interval up to the reading; its own minute is the
//  rollup's, not re-rolled from the table (a reading put there behind the
//  lane's back shows which path wrote it).
static void
s_first_reading_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port = fixture->ports[0];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    int64_t base = store_fixture_int (
        fixture,
        "SELECT extract (epoch FROM date_bin ('1 minute', now (), timestamptz 'epoch'))::bigint"
        " - 300",
        0, NULL);
    store_fixture_sample_t samples[4];
    size_t count = 0;
    store_fixture_reading (fixture, port, base - 110, 4); //  the predecessor
    samples[count++] = (store_fixture_sample_t){base - 110, 4};
    store_maintenance_step (self);
    store_maintenance_rollup (self); //  the first run after a start falls back: done
    store_fixture_check_minute (fixture, port, samples, count,
                                base - 120); //  its last interval open

    //  As if the store had started in minute base, rolled up to it.
    store_maintenance_set_start (self, base);
    store_fixture_set_watermark (fixture, base);
    zsock_t *push;
    store_server_t *server = s_lane_server_new (database, self, &push, verbose);
    s_lane_push (server, push, fixture, port, base + 30, 6);
    samples[count++] = (store_fixture_sample_t){base + 30, 6};
    assert (store_fixture_marks (fixture, port) == 1);
    store_fixture_reading (fixture, port, base + 45, 999); //  behind the lane's back

    assert (store_maintenance_rollup (self) >= 2);
    store_fixture_check_minute (fixture, port, samples, count,
                                base - 120);                          //  (4 + 6) / 2 W for 140 s
    store_fixture_check_minute (fixture, port, samples, count, base); //  without the 999 W
    zsock_destroy (&push);
    store_server_destroy (&server);
    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   a port's first reading after a start: OK\n");
}

//  A store killed right after committing a late reading: its mark is in
//  rollup_marks, and the next process's first run re-rolls the minutes it
//  changed (older than the lookback, so only the mark can bring them).
static void
s_restart_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port = fixture->ports[0];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self); //  connects, and the first run
    int64_t high = store_maintenance_rolled (self);
    int64_t minute = high - 40 * 60;
    store_fixture_sample_t samples[2] = {{minute + 10, 2}, {minute + 70, 7}};
    store_fixture_reading (fixture, port, samples[0].ts, samples[0].power);
    char minute_text[24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, minute);
    const char *minute_params[1] = {minute_text};
    PQclear (store_fixture_sql (fixture,
                                "SELECT phantom_rollup (to_timestamp ($1::bigint),"
                                "                       to_timestamp ($1::bigint + 60))",
                                1, minute_params));
    store_fixture_check_minute (fixture, port, samples, 1, minute); //  its last interval open

    zsock_t *push;
    store_server_t *server = s_lane_server_new (database, self, &push, verbose);
    s_lane_push (server, push, fixture, port, samples[1].ts, samples[1].power);
    //  Killed here: no run of this maintenance, no more of these lanes.
    zsock_destroy (&push);
    store_server_destroy (&server);
    store_maintenance_destroy (&self);
    assert (store_fixture_marks (fixture, port) == 1);

    self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self);
    assert (store_fixture_marks (fixture, port) == 0);
    store_fixture_check_minute (fixture, port, samples, 2, minute); //  2 -> 7 W over 60 s
    store_fixture_check_minute (fixture, port, samples, 2, minute + 60);
    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   marks across a restart: OK\n");
}

//  Readings in order at their time write no marks once the lane knows the
//  port (its first reading after a start marks the minute before it: its
//  predecessor may be there); a late one does.
static void
s_in_order_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port = fixture->ports[0];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    //  The run rolls up to the minute that ended STORE_MAINTENANCE_SETTLE_SECONDS ago:
    //  started well inside a minute, its watermark is this minute's start
    //  and the first reading's mark (the minute before) is below it.
    while (zclock_time () / 1000 % 60 <= STORE_MAINTENANCE_SETTLE_SECONDS ||
           zclock_time () / 1000 % 60 >= 55)
        zclock_sleep (250);
    store_maintenance_step (self);
    zsock_t *push;
    store_server_t *server = s_lane_server_new (database, self, &push, verbose);

    int64_t now = zclock_time () / 1000;
    assert (now - now % 60 == store_maintenance_rolled (self)); //  now's minute not rolled up yet
    s_lane_push (server, push, fixture, port, now, 5);
    assert (store_fixture_marks (fixture, port) == 1);
    assert (store_maintenance_rollup_marks (self) >= 0);
    assert (store_fixture_marks (fixture, port) == 0);
    for (int64_t at = 1; at <= 4; at++) {
        s_lane_push (server, push, fixture, port, now + at, 5 + at);
        assert (store_fixture_marks (fixture, port) == 0);
    }
    s_lane_push (server, push, fixture, port, now - 3600, 1);
    assert (store_fixture_marks (fixture, port) == 1);
    zsock_destroy (&push);
    store_server_destroy (&server);
    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   readings in order mark nothing: OK\n");
}

void
store_server_test (bool verbose)
{
    printf (" * store_server: ");
    if (verbose)
        printf ("\n");
    const char *database = store_fixture_database ();
    assert (database);
    store_fixture_t *fixture = store_fixture_new (database, 2);
    store_writer_t *writer = store_writer_new (database, verbose);
    store_server_t *server =
        store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", &writer, 1000, 2, verbose);
    assert (server);
    assert (writer == NULL);
    zsock_t *push = zsock_new_push (store_server_verdict_endpoint (server));
    zsock_set_sndtimeo (push, 1000);
    zsock_t *sub = zsock_new_sub (store_server_ack_endpoint (server), "ack.");
    zsock_set_rcvtimeo (sub, 100);
    assert (push && sub);

    proto_ack_t acks[64];
    char gateways[64][PROTO_GATEWAY_MAX + 1];
    proto_verdict_t verdict;
    int64_t base = zclock_time ();

    //  Until the subscription has arrived, acks are dropped: send the same
    //  keyed probe until one ack comes back (it is stored once).
    char key[32];
    snprintf (key, sizeof (key), "probe-%" PRId64, base);
    store_fixture_verdict (fixture, &verdict, "gwA", 999, fixture->ports[0], key, base, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    size_t received = 0;
    int64_t probe_id = 0;
    for (int attempt = 0; attempt < 50 && received == 0; attempt++) {
        s_push (push, &verdict);
        received = s_collect (server, sub, acks, 1, gateways, 100);
        if (received) {
            assert (acks[0].code == PROTO_ACK_OK);
            assert (probe_id == 0 || acks[0].id == probe_id);
            probe_id = acks[0].id;
        }
    }
    assert (received == 1);
    assert (streq (gateways[0], "gwA"));
    s_drain (server, sub, 300);

    //  Verdicts of two gateways plus one malformed frame: each gateway gets
    //  its acks on its own topic, in order, ids matching the rows
    proto_verdict_t sent[15];
    for (int index = 0; index < 15; index++) {
        store_fixture_verdict (fixture, &sent[index], index % 3 ? "gwA" : "gwB", (uint64_t)index,
                               fixture->ports[index % 2], "", base + 1 + index, index + 0.5,
                               PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
        s_push (push, &sent[index]);
        if (index == 7)
            zstr_send (push, "not msgpack");
    }
    received = s_collect (server, sub, acks, 15, gateways, 3000);
    assert (received == 15);
    assert (store_server_malformed (server) == 1);
    uint64_t next[2] = {0, 0}; //  next request expected per gateway: ordered
    for (size_t index = 0; index < received; index++) {
        bool is_a = streq (gateways[index], "gwA");
        assert (is_a || streq (gateways[index], "gwB"));
        while (next[is_a] < 15 && ((next[is_a] % 3 != 0) != is_a))
            next[is_a]++;
        assert (acks[index].request == next[is_a]);
        next[is_a]++;
        assert (acks[index].code == PROTO_ACK_OK);
        assert (acks[index].ts == base + 1 + (int64_t)acks[index].request);
        char id[24];
        snprintf (id, sizeof (id), "%" PRId64, acks[index].id);
        const char *params[1] = {id};
        char port[64];
        store_fixture_text (fixture, "SELECT port_id FROM readings WHERE id = $1", 1, params, port,
                            sizeof (port));
        assert (streq (port, sent[acks[index].request].reading.port));
    }
    //  A batch message: three verdicts in one message, then a broken
    //  frame; the three are stored and acked, the rest is counted
    proto_buffer_t batch;
    proto_buffer_init (&batch);
    for (int index = 0; index < 3; index++) {
        store_fixture_verdict (fixture, &sent[index], "gwA", 200 + (uint64_t)index,
                               fixture->ports[index % 2], "", base + 100 + index, 7,
                               PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
        assert (proto_verdict_append (&sent[index], &batch) == 0);
    }
    zframe_t *frame = zframe_new (NULL, batch.size + 1);
    memcpy (zframe_data (frame), batch.data, batch.size);
    zframe_data (frame)[batch.size] = 0xc1; //  never used in msgpack
    assert (zframe_send (&frame, push, 0) == 0);
    received = s_collect (server, sub, acks, 3, gateways, 3000);
    assert (received == 3);
    assert (store_server_malformed (server) == 2);
    for (size_t index = 0; index < received; index++) {
        assert (acks[index].code == PROTO_ACK_OK);
        assert (acks[index].request >= 200 && acks[index].request < 203);
        assert (acks[index].ts == base + 100 + (int64_t)(acks[index].request - 200));
    }
    proto_buffer_release (&batch);

    //  A verdict without a reading gets no ack (nobody waits for one) but
    //  is stored: the next ack is the next reading's, the port is offline
    store_fixture_verdict (fixture, &verdict, PROTO_GATEWAY_NONE, 0, fixture->ports[1], "",
                           base + 20, 0, PROTO_STATUS_OFFLINE, PROTO_STATUS_ACTIVE);
    verdict.no_reading = true;
    s_push (push, &verdict);
    store_fixture_verdict (fixture, &verdict, "gwA", 500, fixture->ports[0], "", base + 21, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    s_push (push, &verdict);
    received = s_collect (server, sub, acks, 2, gateways, 1000);
    assert (received == 1);
    assert (acks[0].request == 500 && streq (gateways[0], "gwA"));
    const char *offline_params[1] = {fixture->ports[1]};
    char status[16];
    store_fixture_text (fixture, "SELECT status FROM ports WHERE id = $1", 1, offline_params,
                        status, sizeof (status));
    assert (streq (status, "offline"));
    store_server_destroy (&server);
    zsock_destroy (&push);
    zsock_destroy (&sub);

    //  Two lanes (writers). Ports of both; the server is handed its second
    //  writer before its first step.
    store_fixture_t *many = store_fixture_new (database, 32);
    const char *lane_port[2] = {NULL, NULL};
    for (size_t index = 0; index < many->port_count; index++) {
        uint32_t lane = proto_partition (many->ports[index], 2);
        if (!lane_port[lane])
            lane_port[lane] = many->ports[index];
    }
    assert (lane_port[0] && lane_port[1]);
    writer = store_writer_new (database, verbose);
    server = store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", &writer, 1000, 2, verbose);
    assert (server);
    writer = store_writer_new (database, verbose);
    assert (store_server_add_writer (server, &writer) == 0);
    assert (writer == NULL);
    assert (store_server_writers (server) == 2);
    push = zsock_new_push (store_server_verdict_endpoint (server));
    zsock_set_sndtimeo (push, 1000);
    sub = zsock_new_sub (store_server_ack_endpoint (server), "ack.");
    zsock_set_rcvtimeo (sub, 100);
    snprintf (key, sizeof (key), "probe2-%" PRId64, base);
    store_fixture_verdict (many, &verdict, "gwA", 999, lane_port[0], key, base, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    received = 0;
    for (int attempt = 0; attempt < 50 && received == 0; attempt++) {
        s_push (push, &verdict);
        received = s_collect (server, sub, acks, 1, gateways, 100);
    }
    assert (received == 1 && acks[0].code == PROTO_ACK_OK);
    s_drain (server, sub, 300);
    writer = store_writer_new ("host=127.0.0.1 port=1 dbname=none", false);
    assert (store_server_add_writer (server, &writer) == -1); //  started: no more lanes
    store_writer_destroy (&writer);

    //  The same readingId on ports of both lanes (a client reusing an id):
    //  one readings row, both acks with its id; repeated, still one
    snprintf (key, sizeof (key), "both-%" PRId64, base);
    for (int round = 0; round < 3; round++) {
        for (int lane = 0; lane < 2; lane++) {
            store_fixture_verdict (many, &verdict, "gwA", (uint64_t)(10 + round * 2 + lane),
                                   lane_port[lane], key, base + 1 + round * 2 + lane, 7,
                                   PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
            s_push (push, &verdict);
        }
        received = s_collect (server, sub, acks, 2, gateways, 5000);
        assert (received == 2);
        assert (acks[0].code == PROTO_ACK_OK && acks[1].code == PROTO_ACK_OK);
        assert (acks[0].id == acks[1].id);
        assert (acks[0].ts == acks[1].ts);
        char device[24];
        snprintf (device, sizeof (device), "%" PRId64, many->device);
        const char *key_params[2] = {device, key};
        assert (store_fixture_int (many,
                                   "SELECT count(*) FROM reading_keys"
                                   " WHERE device_id = $1 AND reading_key = $2",
                                   2, key_params) == 1);
        char id[24];
        snprintf (id, sizeof (id), "%" PRId64, acks[0].id);
        const char *id_params[1] = {id};
        assert (store_fixture_int (many, "SELECT count(*) FROM readings WHERE id = $1", 1,
                                   id_params) == 1);
    }

//  Per-port order through the lanes: each port's status flips with
//  every verdict (so every row is written at once); the stored status,
//  its time and each port's ack order follow the last verdict
#define S_FLIPS 300
    static proto_ack_t flips[2 * S_FLIPS];
    static char flip_gateways[2 * S_FLIPS][PROTO_GATEWAY_MAX + 1];
    for (int index = 0; index < S_FLIPS; index++)
        for (int lane = 0; lane < 2; lane++) {
            bool odd = index % 2;
            store_fixture_verdict (many, &verdict, lane ? "gwB" : "gwA", (uint64_t)(1000 + index),
                                   lane_port[lane], "", base + 100 + index, 2 + index,
                                   odd ? PROTO_STATUS_IDLE : PROTO_STATUS_ACTIVE,
                                   odd ? PROTO_STATUS_ACTIVE : PROTO_STATUS_IDLE);
            s_push (push, &verdict);
        }
    received = s_collect (server, sub, flips, 2 * S_FLIPS, flip_gateways, 10000);
    assert (received == 2 * S_FLIPS);
    uint64_t last[2] = {999, 999};
    int64_t rows = 0;
    for (size_t index = 0; index < received; index++) {
        int lane = streq (flip_gateways[index], "gwB");
        assert (flips[index].code == PROTO_ACK_OK);
        assert (flips[index].request == last[lane] + 1);
        last[lane] = flips[index].request;
    }
    for (int lane = 0; lane < 2; lane++) {
        const char *port_params[1] = {lane_port[lane]};
        char expected[64], stored[64];
        snprintf (expected, sizeof (expected), "idle %" PRId64, base + 100 + S_FLIPS - 1);
        store_fixture_text (
            many,
            "SELECT status || ' ' || (extract (epoch FROM status_since) * 1000)::bigint"
            " FROM ports WHERE id = $1",
            1, port_params, stored, sizeof (stored));
        assert (streq (stored, expected));
        rows += store_fixture_int (many, "SELECT count(*) FROM readings WHERE port_id = $1", 1,
                                   port_params);
    }
    //  the flips, the probe and the shared key once
    assert (rows == 2 * S_FLIPS + 2);
    //  Small batches of both lanes were written in turn, never together
    uint64_t overlaps;
    assert (store_server_turns (server, &overlaps) > 0);
    assert (overlaps == 0);
    zsock_destroy (&push);
    zsock_destroy (&sub);
    store_server_destroy (&server);
    store_fixture_destroy (&many);

    //  Database down: the acks say RETRY
    writer = store_writer_new ("host=127.0.0.1 port=1 dbname=none", verbose);
    server = store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", &writer, 10, 2, verbose);
    assert (server);
    push = zsock_new_push (store_server_verdict_endpoint (server));
    zsock_set_sndtimeo (push, 1000);
    sub = zsock_new_sub (store_server_ack_endpoint (server), "ack.");
    zsock_set_rcvtimeo (sub, 100);
    received = 0;
    for (int attempt = 0; attempt < 50 && received == 0; attempt++) {
        s_push (push, &sent[0]);
        received = s_collect (server, sub, acks, 1, gateways, 100);
    }
    assert (received == 1);
    assert (acks[0].code == PROTO_ACK_RETRY);
    assert (acks[0].request == sent[0].reading.request);

    zsock_destroy (&push);
    zsock_destroy (&sub);
    store_server_destroy (&server);
    store_fixture_destroy (&fixture);

    s_late_test (database, verbose);
    s_first_reading_test (database, verbose);
    s_restart_test (database, verbose);
    s_in_order_test (database, verbose);
    printf ("OK\n");
}
