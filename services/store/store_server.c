/*  =========================================================================
    store_server - the store's sockets and group-commit loop
    =========================================================================
*/
#include "store_server.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

//  Verdicts queue here while a transaction commits; acks wait here for a
//  slow gateway before PUB drops them (the gateway then times out: 504).
#define S_HWM 100000
//  On a clean stop, acks of committed readings still get out.
#define S_PUB_LINGER_MS 1000
//  A wait for verdicts this long lets waiting port rows out first.
#define S_IDLE_MS 100

struct _store_server_t {
    zsock_t *pull;                  //  verdicts from detectors
    zsock_t *pub;                   //  acks to gateways
    void *pull_handle;              //  libzmq handles, for the hot path
    void *pub_handle;
    char *verdict_endpoint;         //  as bound
    char *ack_endpoint;             //  as bound
    store_writer_t *writer;         //  PostgreSQL
    store_batch_t *batch;           //  the group commit in progress
    int batch_ms;                   //  longest wait for more after the first verdict
    bool verbose;                   //  debug logs
    proto_buffer_t buffer;          //  encoded acks
    proto_ack_t *acks;              //  one group of acks
    size_t acks_max;                //  its capacity
    uint64_t verdicts;              //  verdicts received
    uint64_t malformed;             //  frames dropped as malformed
};

static zsock_t *
s_bind (int type, const char *endpoint, char **bound)
{
    zsock_t *sock = zsock_new (type);
    if (!sock)
        return NULL;
    if (type == ZMQ_PULL) {
        zsock_set_rcvhwm (sock, S_HWM);
        zsock_set_linger (sock, 0);
    }
    else {
        zsock_set_sndhwm (sock, S_HWM);
        zsock_set_linger (sock, S_PUB_LINGER_MS);
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
//  Bind the sockets and take the writer

store_server_t *
store_server_new (const char *verdict_endpoint, const char *ack_endpoint,
                  store_writer_t **writer_p, size_t batch_max, int batch_ms, bool verbose)
{
    assert (verdict_endpoint);
    assert (ack_endpoint);
    assert (writer_p && *writer_p);
    assert (batch_max > 0);
    store_server_t *self = (store_server_t *) zmalloc (sizeof (store_server_t));
    self->writer = *writer_p;
    *writer_p = NULL;
    self->batch_ms = batch_ms;
    self->verbose = verbose;
    proto_buffer_init (&self->buffer);
    self->batch = store_batch_new (batch_max);
    self->acks_max = batch_max < PROTO_ACKS_MAX? batch_max: PROTO_ACKS_MAX;
    self->acks = (proto_ack_t *) calloc (self->acks_max, sizeof (proto_ack_t));
    self->pull = s_bind (ZMQ_PULL, verdict_endpoint, &self->verdict_endpoint);
    self->pub = s_bind (ZMQ_PUB, ack_endpoint, &self->ack_endpoint);
    if (!self->batch || !self->acks || !self->pull || !self->pub) {
        store_server_destroy (&self);
        return NULL;
    }
    self->pull_handle = zsock_resolve (self->pull);
    self->pub_handle = zsock_resolve (self->pub);
    zsys_info ("store server - verdicts on %s, acks on %s, batch %zu / %d ms",
               self->verdict_endpoint, self->ack_endpoint, batch_max, batch_ms);
    return self;
}

void
store_server_destroy (store_server_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_server_t *self = *self_p;
        //  A clean stop writes what waits in memory.
        if (self->writer && self->batch)
            store_writer_flush (self->writer, self->batch, true);
        zsock_destroy (&self->pull);
        zsock_destroy (&self->pub);
        zstr_free (&self->verdict_endpoint);
        zstr_free (&self->ack_endpoint);
        store_writer_destroy (&self->writer);
        store_batch_destroy (&self->batch);
        proto_buffer_release (&self->buffer);
        free (self->acks);
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
store_server_malformed (store_server_t *self)
{
    assert (self);
    return self->malformed;
}

//  Takes one queued message into the batch without waiting. 1 if one was
//  there (even malformed), 0 if none, -1 on a socket error (interrupted).
static int
s_receive (store_server_t *self)
{
    zmq_msg_t message;
    zmq_msg_init (&message);
    if (zmq_msg_recv (&message, self->pull_handle, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&message);
        return zmq_errno () == EAGAIN? 0: -1;
    }
    bool more = zmq_msg_more (&message);
    proto_verdict_t verdict;
    int rc = more? -2: proto_verdict_decode (zmq_msg_data (&message), zmq_msg_size (&message),
                                             &verdict);
    zmq_msg_close (&message);
    //  A verdict is one frame; the rest of a longer message is dropped.
    while (more) {
        zmq_msg_init (&message);
        if (zmq_msg_recv (&message, self->pull_handle, ZMQ_DONTWAIT) == -1)
            more = false;
        else
            more = zmq_msg_more (&message);
        zmq_msg_close (&message);
    }
    if (rc == 0) {
        self->verdicts++;
        int added = store_batch_add (self->batch, &verdict);
        assert (added == 0);        //  callers stop at capacity
    }
    else {
        //  No gateway to answer: the gateway times out (504) and the client
        //  retries. Log the first few and then every thousandth.
        self->malformed++;
        if (self->malformed <= 10 || self->malformed % 1000 == 0)
            zsys_warning ("store server - malformed verdict frame dropped (%" PRIu64 " so far)",
                          self->malformed);
    }
    return 1;
}

static void
s_publish (store_server_t *self)
{
    size_t cursor = 0;
    const char *gateway;
    size_t count;
    while ((count = store_batch_group (self->batch, &cursor, &gateway, self->acks,
                                       self->acks_max))) {
        char topic [PROTO_TOPIC_MAX + 1];
        int size = snprintf (topic, sizeof (topic), "ack.%s", gateway);
        if (proto_acks_encode (self->acks, count, &self->buffer)) {
            zsys_error ("store server - cannot encode %zu acks for %s", count, gateway);
            continue;
        }
        //  PUB never blocks: at its high-water mark it drops, and the
        //  gateway's bounded wait turns that into a 504.
        if (zmq_send (self->pub_handle, topic, (size_t) size, ZMQ_SNDMORE) == -1
        ||  zmq_send (self->pub_handle, self->buffer.data, self->buffer.size, 0) == -1)
            zsys_warning ("store server - acks for %s not sent: %s", gateway,
                          zmq_strerror (zmq_errno ()));
    }
}

//  --------------------------------------------------------------------------
//  One group commit

int
store_server_step (store_server_t *self, int timeout_ms)
{
    assert (self);
    store_writer_maintain (self->writer);
    zmq_pollitem_t item = { self->pull_handle, 0, ZMQ_POLLIN, 0 };
    //  Idle: port rows waiting in memory go out when due, not with a next
    //  batch that may be long in coming.
    int rc = zmq_poll (&item, 1, timeout_ms < S_IDLE_MS? timeout_ms: S_IDLE_MS);
    if (rc == 0) {
        store_writer_flush (self->writer, self->batch, false);
        if (timeout_ms > S_IDLE_MS)
            rc = zmq_poll (&item, 1, timeout_ms - S_IDLE_MS);
    }
    if (rc == -1)
        return -1;
    if (rc == 0)
        return 0;

    store_batch_reset (self->batch);
    size_t capacity = store_batch_capacity (self->batch);
    size_t handled = 0;
    int64_t deadline = zclock_mono () + self->batch_ms;
    while (store_batch_size (self->batch) < capacity) {
        rc = s_receive (self);
        if (rc == -1)
            break;                  //  interrupted: still commit what we hold
        if (rc == 1) {
            handled++;
            continue;
        }
        int64_t remaining = deadline - zclock_mono ();
        if (remaining <= 0 || zmq_poll (&item, 1, (long) remaining) <= 0)
            break;
    }
    size_t size = store_batch_size (self->batch);
    if (size) {
        int64_t started = zclock_usecs ();
        store_writer_write (self->writer, self->batch);
        s_publish (self);
        if (self->verbose)
            zsys_debug ("store server - batch of %zu written in %" PRId64 " us", size,
                        zclock_usecs () - started);
    }
    return (int) handled;
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

//  Steps the server and receives acks until count arrived or time is up;
//  returns how many arrived, each with its gateway (from the topic).
static size_t
s_collect (store_server_t *server, zsock_t *sub, proto_ack_t *acks, size_t count,
           char gateways [][PROTO_GATEWAY_MAX + 1], int timeout_ms)
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
            size_t got;
            int rc = proto_acks_decode (zframe_data (frame), zframe_size (frame),
                                        acks + received, count - received, &got);
            assert (rc == 0);
            assert (strncmp (topic, "ack.", 4) == 0);
            for (size_t index = 0; index < got; index++)
                snprintf (gateways [received + index], PROTO_GATEWAY_MAX + 1, "%s", topic + 4);
            received += got;
            zframe_destroy (&frame);
            zstr_free (&topic);
            zmsg_destroy (&message);
        }
    }
    return received;
}

static void
s_push (zsock_t *push, const proto_verdict_t *verdict)
{
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int rc = proto_verdict_encode (verdict, &buffer);
    assert (rc == 0);
    rc = zmq_send (zsock_resolve (push), buffer.data, buffer.size, 0);
    assert (rc == (int) buffer.size);
    proto_buffer_release (&buffer);
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
    store_server_t *server = store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*",
                                               &writer, 1000, 2, verbose);
    assert (server);
    assert (writer == NULL);
    zsock_t *push = zsock_new_push (store_server_verdict_endpoint (server));
    zsock_set_sndtimeo (push, 1000);
    zsock_t *sub = zsock_new_sub (store_server_ack_endpoint (server), "ack.");
    zsock_set_rcvtimeo (sub, 100);
    assert (push && sub);

    proto_ack_t acks [64];
    char gateways [64][PROTO_GATEWAY_MAX + 1];
    proto_verdict_t verdict;
    int64_t base = zclock_time ();

    //  Until the subscription has arrived, acks are dropped: send the same
    //  keyed probe until one ack comes back (it is stored once).
    char key [32];
    snprintf (key, sizeof (key), "probe-%" PRId64, base);
    store_fixture_verdict (fixture, &verdict, "gwA", 999, fixture->ports [0], key, base, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    size_t received = 0;
    int64_t probe_id = 0;
    for (int attempt = 0; attempt < 50 && received == 0; attempt++) {
        s_push (push, &verdict);
        received = s_collect (server, sub, acks, 1, gateways, 100);
        if (received) {
            assert (acks [0].code == PROTO_ACK_OK);
            assert (probe_id == 0 || acks [0].id == probe_id);
            probe_id = acks [0].id;
        }
    }
    assert (received == 1);
    assert (streq (gateways [0], "gwA"));

    //  Verdicts of two gateways plus one malformed frame: each gateway gets
    //  its acks on its own topic, in order, ids matching the rows
    proto_verdict_t sent [15];
    for (int index = 0; index < 15; index++) {
        store_fixture_verdict (fixture, &sent [index], index % 3? "gwA": "gwB", (uint64_t) index,
                               fixture->ports [index % 2], "", base + 1 + index, index + 0.5,
                               PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
        s_push (push, &sent [index]);
        if (index == 7)
            zstr_send (push, "not msgpack");
    }
    received = s_collect (server, sub, acks, 15, gateways, 3000);
    assert (received == 15);
    assert (store_server_malformed (server) == 1);
    uint64_t next [2] = { 0, 0 };   //  next request expected per gateway: ordered
    for (size_t index = 0; index < received; index++) {
        bool is_a = streq (gateways [index], "gwA");
        assert (is_a || streq (gateways [index], "gwB"));
        while (next [is_a] < 15 && ((next [is_a] % 3 != 0) != is_a))
            next [is_a]++;
        assert (acks [index].request == next [is_a]);
        next [is_a]++;
        assert (acks [index].code == PROTO_ACK_OK);
        assert (acks [index].ts == base + 1 + (int64_t) acks [index].request);
        char id [24];
        snprintf (id, sizeof (id), "%" PRId64, acks [index].id);
        const char *params [1] = { id };
        char port [64];
        store_fixture_text (fixture, "SELECT port_id FROM readings WHERE id = $1", 1, params,
                            port, sizeof (port));
        assert (streq (port, sent [acks [index].request].reading.port));
    }
    //  A verdict without a reading gets no ack (nobody waits for one) but
    //  is stored: the next ack is the next reading's, the port is offline
    store_fixture_verdict (fixture, &verdict, PROTO_GATEWAY_NONE, 0, fixture->ports [1], "",
                           base + 20, 0, PROTO_STATUS_OFFLINE, PROTO_STATUS_ACTIVE);
    verdict.no_reading = true;
    s_push (push, &verdict);
    store_fixture_verdict (fixture, &verdict, "gwA", 500, fixture->ports [0], "", base + 21, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    s_push (push, &verdict);
    received = s_collect (server, sub, acks, 2, gateways, 1000);
    assert (received == 1);
    assert (acks [0].request == 500 && streq (gateways [0], "gwA"));
    const char *offline_params [1] = { fixture->ports [1] };
    char status [16];
    store_fixture_text (fixture, "SELECT status FROM ports WHERE id = $1", 1, offline_params,
                        status, sizeof (status));
    assert (streq (status, "offline"));
    store_server_destroy (&server);

    //  Database down: the acks say RETRY
    writer = store_writer_new ("host=127.0.0.1 port=1 dbname=none", verbose);
    server = store_server_new ("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", &writer, 10, 2, verbose);
    assert (server);
    zsock_destroy (&push);
    zsock_destroy (&sub);
    push = zsock_new_push (store_server_verdict_endpoint (server));
    zsock_set_sndtimeo (push, 1000);
    sub = zsock_new_sub (store_server_ack_endpoint (server), "ack.");
    zsock_set_rcvtimeo (sub, 100);
    received = 0;
    for (int attempt = 0; attempt < 50 && received == 0; attempt++) {
        s_push (push, &sent [0]);
        received = s_collect (server, sub, acks, 1, gateways, 100);
    }
    assert (received == 1);
    assert (acks [0].code == PROTO_ACK_RETRY);
    assert (acks [0].request == sent [0].reading.request);

    zsock_destroy (&push);
    zsock_destroy (&sub);
    store_server_destroy (&server);
    store_fixture_destroy (&fixture);
    printf ("OK\n");
}
