/*  =========================================================================
    detector_server - one detector partition on the wire

    Detector: PULL readings from every gateway (partition N), PUSH verdicts
    to the store, PUB phantom events. On the same PULL come offline frames
    (a plug's will, from phantom-mqtt): the ports they name go offline as
    the offline timer would take them, in order with the readings.

      gateway[g] PUSH (bind port + N) --> PULL (connect, one socket to all)
      PUSH (connect verdict_endpoint)  --> store PULL
      PUB  (bind event_endpoint + N)   --> notifier, phantom-tap: [topic][event]
                                           (reading.<port> for live readings: gateway live)

    Durability: the verdict PUSH lingers up to S_LINGER_MS on close, so on a
    clean stop the verdicts of readings already handled still reach the
    store. A kill -9 loses whatever was queued; the gateway then sees no
    ack in time, answers 504, and the client retries the reading. The retry
    is a duplicate ts for the engine (or a fresh port after a restart) and
    gets a verdict again, so nothing acknowledged is ever lost.
    =========================================================================
*/
#include "detector_server.h"
#include "proto_curve.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "detector_fixture.h"
#include "proto_config.h"

#define S_HWM 10000            //  frames queued per socket before back-pressure / drops
#define S_LINGER_MS 1000       //  verdict PUSH: flush time on a clean stop
#define S_SEND_TIMEOUT_MS 1000 //  bound on a blocked PUSH to the store
#define S_TIMER_MS 1000        //  offline timer period

struct _detector_server_t {
    zsock_t *readings;             //  PULL, connected to every gateway
    zsock_t *verdicts;             //  PUSH, connected to the store
    zsock_t *events;               //  PUB, bound
    void *readings_handle;         //  libzmq handle of readings
    void *verdicts_handle;         //  libzmq handle of verdicts
    void *events_handle;           //  libzmq handle of events
    char *event_endpoint;          //  endpoint the PUB bound
    zpoller_t *poller;             //  waits on readings
    detector_engine_t *engine;     //  the state machines
    proto_buffer_t buffer;         //  event encoder output, reused
    proto_buffer_t out;            //  verdict frames of the message being filled
    size_t out_count;              //  how many
    proto_reading_t *batch;        //  decoded frames of one wakeup [DETECTOR_BATCH_MAX]
    detector_outcome_t *outcomes;  //  engine output for them [DETECTOR_BATCH_MAX]
    proto_offline_t offline;       //  an offline frame being handled, reused
    proto_verdict_t verdict;       //  verdict being sent, reused
    int64_t next_tick;             //  monotonic ms of the next timer run
    uint64_t dropped_logged;       //  verdicts_dropped at the last warning
    uint64_t malformed_logged;     //  malformed at the last warning
    bool verbose;                  //  debug logs
    detector_server_stats_t stats; //  counters
};

char *
detector_server_partition_endpoints (const char *list, int partition)
{
    if (!list)
        return NULL;
    char *copy = strdup (list);
    if (!copy)
        return NULL;
    char *result = strdup ("");
    char *save = NULL;
    for (char *item = strtok_r (copy, ",", &save); item && result;
         item = strtok_r (NULL, ",", &save)) {
        while (*item == ' ' || *item == '\t')
            item++;
        size_t length = strlen (item);
        while (length && (item[length - 1] == ' ' || item[length - 1] == '\t'))
            item[--length] = '\0';
        if (!*item)
            continue;
        char *shifted = proto_config_endpoint_offset (item, partition);
        if (!shifted) {
            zsys_error ("detector endpoint %s - no numeric port to offset", item);
            free (result);
            result = NULL;
            break;
        }
        char *joined = zsys_sprintf ("%s%s%s", result, *result ? "," : "", shifted);
        free (shifted);
        free (result);
        result = joined;
    }
    free (copy);
    if (result && !*result) {
        zsys_error ("detector endpoints - empty list");
        free (result);
        result = NULL;
    }
    return result;
}

detector_server_t *
detector_server_new (const char *reading_endpoints, const char *verdict_endpoint,
                     const char *event_endpoint, int64_t offline_after_ms, bool verbose)
{
    assert (reading_endpoints);
    assert (verdict_endpoint);
    assert (event_endpoint);
    detector_server_t *self = (detector_server_t *)zmalloc (sizeof (detector_server_t));
    assert (self);
    self->verbose = verbose;
    proto_buffer_init (&self->buffer);
    proto_buffer_init (&self->out);
    self->engine = detector_engine_new (1024, offline_after_ms);
    self->batch = (proto_reading_t *)calloc (DETECTOR_BATCH_MAX, sizeof (proto_reading_t));
    self->outcomes = (detector_outcome_t *)calloc (DETECTOR_BATCH_MAX, sizeof (detector_outcome_t));
    self->readings = zsock_new (ZMQ_PULL);
    self->verdicts = zsock_new (ZMQ_PUSH);
    self->events = zsock_new (ZMQ_PUB);
    if (!self->engine || !self->batch || !self->outcomes || !self->readings || !self->verdicts ||
        !self->events) {
        zsys_error ("detector - cannot create engine or sockets");
        detector_server_destroy (&self);
        return NULL;
    }
    //  Options before connect/bind: they apply to connections made after.
    zsock_set_rcvhwm (self->readings, S_HWM);
    zsock_set_maxmsgsize (self->readings, PROTO_MESSAGE_MAX);
    zsock_set_linger (self->readings, 0); //  unread readings: the gateway times them out
    zsock_set_sndhwm (self->verdicts, S_HWM);
    zsock_set_linger (self->verdicts, S_LINGER_MS);
    zsock_set_sndtimeo (self->verdicts, S_SEND_TIMEOUT_MS);
    zsock_set_sndhwm (self->events, S_HWM);
    zsock_set_linger (self->events, 0); //  events may drop: PUB is fan-out, not durable

    //  CURVE (when on): client on the links it connects, server on its PUB.
    int rc = proto_curve_client (self->readings, NULL) ||
                     proto_curve_client (self->verdicts, NULL) ||
                     proto_curve_server (self->events, NULL, NULL)
                 ? -1
                 : 0;
    char *list = strdup (reading_endpoints);
    char *save = NULL;
    for (char *item = strtok_r (list, ",", &save); item && rc == 0;
         item = strtok_r (NULL, ",", &save)) {
        rc = zsock_connect (self->readings, "%s", item);
        if (rc)
            zsys_error ("detector readings %s - cannot connect: %s", item, zmq_strerror (errno));
        else if (verbose)
            zsys_debug ("detector readings %s - connected", item);
    }
    free (list);
    if (rc == 0 && (rc = zsock_connect (self->verdicts, "%s", verdict_endpoint)))
        zsys_error ("detector verdicts %s - cannot connect: %s", verdict_endpoint,
                    zmq_strerror (errno));
    if (rc == 0 && zsock_bind (self->events, "%s", event_endpoint) == -1) {
        zsys_error ("detector events %s - cannot bind: %s", event_endpoint, zmq_strerror (errno));
        rc = -1;
    }
    if (rc) {
        detector_server_destroy (&self);
        return NULL;
    }
    self->event_endpoint = strdup (zsock_endpoint (self->events));
    self->readings_handle = zsock_resolve (self->readings);
    self->verdicts_handle = zsock_resolve (self->verdicts);
    self->events_handle = zsock_resolve (self->events);
    self->poller = zpoller_new (self->readings, NULL);
    assert (self->poller);
    self->next_tick = zclock_mono () + S_TIMER_MS;
    return self;
}

void
detector_server_destroy (detector_server_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        detector_server_t *self = *self_p;
        zpoller_destroy (&self->poller);
        //  Readings first, so nothing new comes in while verdicts flush.
        zsock_destroy (&self->readings);
        zsock_destroy (&self->verdicts);
        zsock_destroy (&self->events);
        detector_engine_destroy (&self->engine);
        free (self->batch);
        free (self->outcomes);
        proto_buffer_release (&self->buffer);
        proto_buffer_release (&self->out);
        free (self->event_endpoint);
        free (self);
        *self_p = NULL;
    }
}

static void
s_publish (detector_server_t *self, const proto_event_t *event)
{
    char topic[PROTO_TOPIC_MAX + 1];
    proto_event_topic (event, topic);
    if (proto_event_encode (event, &self->buffer)) {
        zsys_error ("detector events - cannot encode (no memory)");
        return;
    }
    //  DONTWAIT: PUB drops for a slow subscriber anyway; never block on it.
    if (zmq_send (self->events_handle, topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send (self->events_handle, self->buffer.data, self->buffer.size, ZMQ_DONTWAIT) == -1)
        return;
    self->stats.events++;
    if (self->verbose)
        zsys_debug ("detector port %s - %s %s -> %s", event->port, event->kind,
                    proto_status_name (event->previous), proto_status_name (event->status));
}

//  Sends the verdicts collected so far as one message to the store.
static void
s_flush_verdicts (detector_server_t *self)
{
    if (self->out_count == 0)
        return;
    //  Blocks at most S_SEND_TIMEOUT_MS when the store is slow or gone:
    //  that back-pressure reaches the gateways, whose clients then get
    //  504 and retry.
    if (zmq_send (self->verdicts_handle, self->out.data, self->out.size, 0) == -1)
        self->stats.verdicts_dropped += self->out_count;
    else
        self->stats.verdicts += self->out_count;
    proto_buffer_reset (&self->out);
    self->out_count = 0;
}

//  Adds a verdict to the message for the store: the verdicts of one
//  wakeup cross to the store as one message (proto.h, batch messages).
static void
s_send_verdict (detector_server_t *self, const proto_verdict_t *verdict)
{
    size_t size = self->out.size;
    if (proto_verdict_append (verdict, &self->out) == 0) {
        if (++self->out_count == PROTO_BATCH_MAX)
            s_flush_verdicts (self);
    } else {
        self->out.size = size; //  drop the partial frame, keep the others
        self->stats.verdicts_dropped++;
    }
}

//  Completes self->verdict (its reading set) with the engine's judgement,
//  sends it to the store and publishes the outcome's events.
static void
s_send_outcome (detector_server_t *self, const detector_outcome_t *outcome)
{
    proto_verdict_t *verdict = &self->verdict;
    verdict->status = outcome->status;
    verdict->previous = outcome->previous;
    verdict->has_episode = outcome->has_episode;
    if (outcome->has_episode)
        verdict->episode = outcome->episode;
    else
        memset (&verdict->episode, 0, sizeof (verdict->episode));
    s_send_verdict (self, verdict);
    for (size_t i = 0; i < outcome->event_count; i++)
        s_publish (self, &outcome->events[i]);
}

//  Answers one judged reading: a verdict to the store, events to the bus.
static void
s_answer (detector_server_t *self, const proto_reading_t *reading,
          const detector_outcome_t *outcome)
{
    if (outcome->rejected) {
        //  The gateway validated the port; an unusable reading here is
        //  malformed input all the same. No verdict: the gateway times out.
        self->stats.malformed++;
        return;
    }
    self->verdict.reading = *reading;
    self->verdict.no_reading = false;
    s_send_outcome (self, outcome);
    if (reading->live && !outcome->ignored) {
        //  Its sender (phantom-mqtt) has no live channel of its own: the
        //  dashboard's stream and phantom-tap get it from the bus.
        proto_event_t event = {.kind = "reading",
                               .user = reading->user,
                               .ts = reading->ts,
                               .watts = reading->power,
                               .status = outcome->status,
                               .previous = outcome->previous};
        memcpy (event.port, reading->port, PROTO_UUID_LEN + 1);
        s_publish (self, &event);
    }
}

//  A port the offline timer took offline: the store gets a verdict without
//  a reading (status offline, the closed episode) right away, not with the
//  port's next reading, which may never come.
static void
s_offline (const char *port, int64_t user, int64_t ts, const detector_outcome_t *outcome, void *arg)
{
    detector_server_t *self = (detector_server_t *)arg;
    proto_verdict_t *verdict = &self->verdict;
    memset (verdict, 0, sizeof (*verdict));
    snprintf (verdict->reading.gateway, sizeof (verdict->reading.gateway), "%s",
              PROTO_GATEWAY_NONE);
    memcpy (verdict->reading.port, port, PROTO_UUID_LEN + 1);
    verdict->reading.user = user;
    verdict->reading.ts = ts;
    verdict->reading.received = zclock_time ();
    verdict->no_reading = true;
    s_send_outcome (self, outcome);
}

//  Decodes the reading frames of one message into the batch; returns how
//  many. Frames come from the outside: a bad one is counted and dropped
//  with the rest of its message (its end is unknown), and so is anything
//  past PROTO_BATCH_MAX frames.
static size_t
s_decode_message (detector_server_t *self, const uint8_t *data, size_t size, size_t count)
{
    size_t decoded = 0;
    size_t offset = 0;
    while (offset < size) {
        size_t used;
        if (decoded == PROTO_BATCH_MAX ||
            proto_reading_decode_next (data + offset, size - offset, &self->batch[count + decoded],
                                       &used)) {
            self->stats.frames++;
            self->stats.malformed++;
            break;
        }
        offset += used;
        decoded++;
    }
    if (size == 0) {
        self->stats.frames++;
        self->stats.malformed++;
    }
    self->stats.frames += decoded;
    return decoded;
}

//  Judges the count readings decoded so far and answers each.
static void
s_judge (detector_server_t *self, size_t count)
{
    detector_engine_process_batch (self->engine, self->batch, count, self->outcomes);
    for (size_t i = 0; i < count; i++)
        s_answer (self, &self->batch[i], &self->outcomes[i]);
}

//  An offline frame: its ports go offline as the timer would take them
//  (s_offline: verdict without a reading, same events), after the
//  readings that came before it.
static void
s_told_offline (detector_server_t *self, size_t *count)
{
    s_judge (self, *count);
    *count = 0;
    self->stats.frames++;
    self->stats.offline_frames++;
    size_t offline = detector_engine_offline (self->engine, &self->offline, s_offline, self);
    if (self->verbose)
        zsys_debug ("detector offline frame - %u ports named, %zu went offline",
                    self->offline.count, offline);
}

//  Drains up to a batch of frames without blocking, one poll per batch
//  rather than per message, and has the engine judge them together (it
//  prefetches their ports' state). Their verdicts go out as one message.
static void
s_drain (detector_server_t *self)
{
    zmq_msg_t message;
    zmq_msg_init (&message);
    size_t count = 0;
    while (count + PROTO_BATCH_MAX <= DETECTOR_BATCH_MAX) {
        if (zmq_msg_recv (&message, self->readings_handle, ZMQ_DONTWAIT) == -1)
            break;
        if (zmq_msg_more (&message)) {
            //  A batch is one part; drop every part of anything else.
            self->stats.frames++;
            self->stats.malformed++;
            while (zmq_msg_more (&message) &&
                   zmq_msg_recv (&message, self->readings_handle, ZMQ_DONTWAIT) != -1)
                ;
        } else if (proto_offline_decode (zmq_msg_data (&message), zmq_msg_size (&message),
                                         &self->offline) == 0)
            s_told_offline (self, &count);
        else
            count += s_decode_message (self, (const uint8_t *)zmq_msg_data (&message),
                                       zmq_msg_size (&message), count);
    }
    zmq_msg_close (&message);
    s_judge (self, count);
    s_flush_verdicts (self);
}

//  The once-a-second work: the offline timer, and warnings that sum up
//  a second's trouble instead of one line per frame.
static void
s_tick (detector_server_t *self)
{
    //  The engine compares against the gateway clock of each port's
    //  last reading; gateways and detectors share a host or NTP.
    size_t offline = detector_engine_expire (self->engine, zclock_time (), s_offline, self);
    s_flush_verdicts (self);
    if (offline && self->verbose)
        zsys_debug ("detector timer - %zu ports went offline", offline);
    if (self->stats.malformed != self->malformed_logged) {
        zsys_warning ("detector readings - %" PRIu64 " malformed frames dropped (%" PRIu64
                      " total)",
                      self->stats.malformed - self->malformed_logged, self->stats.malformed);
        self->malformed_logged = self->stats.malformed;
    }
    if (self->stats.verdicts_dropped != self->dropped_logged) {
        zsys_warning ("detector verdicts - %" PRIu64 " verdicts not taken by the store in %d ms"
                      " (%" PRIu64 " total); their readings will be retried",
                      self->stats.verdicts_dropped - self->dropped_logged, S_SEND_TIMEOUT_MS,
                      self->stats.verdicts_dropped);
        self->dropped_logged = self->stats.verdicts_dropped;
    }
}

int
detector_server_poll (detector_server_t *self, int timeout_ms)
{
    assert (self);
    int64_t wait = self->next_tick - zclock_mono ();
    if (wait > timeout_ms)
        wait = timeout_ms;
    if (wait < 0)
        wait = 0;
    void *which = zpoller_wait (self->poller, (int)wait);
    if (which == self->readings)
        s_drain (self);
    else if (!which && zpoller_terminated (self->poller) && errno == EINTR)
        return -1;
    int64_t now = zclock_mono ();
    if (now >= self->next_tick) {
        self->next_tick = now + S_TIMER_MS;
        s_tick (self);
    }
    return 0;
}

const char *
detector_server_event_endpoint (detector_server_t *self)
{
    assert (self);
    return self->event_endpoint;
}

void
detector_server_stats (detector_server_t *self, detector_server_stats_t *stats)
{
    assert (self);
    *stats = self->stats;
}

detector_engine_t *
detector_server_engine (detector_server_t *self)
{
    assert (self);
    return self->engine;
}

//  --------------------------------------------------------------------------
//  Self test

//  Polls the server until sock has a message or about two seconds pass.
static zmsg_t *
s_pump (detector_server_t *server, zsock_t *sock)
{
    zpoller_t *poller = zpoller_new (sock, NULL);
    zmsg_t *msg = NULL;
    for (int i = 0; i < 100 && !msg; i++) {
        detector_server_poll (server, 10);
        if (zpoller_wait (poller, 10) == sock)
            msg = zmsg_recv (sock);
    }
    zpoller_destroy (&poller);
    return msg;
}

//  A socket of type bound on an ephemeral port, as gateway or store.
static zsock_t *
s_test_socket (int type)
{
    zsock_t *sock = zsock_new (type);
    assert (sock);
    zsock_set_sndhwm (sock, 100);
    zsock_set_rcvhwm (sock, 100);
    zsock_set_linger (sock, 0);
    assert (zsock_bind (sock, "tcp://127.0.0.1:*") > 0);
    return sock;
}

//  Sends reading as the gateway does.
static void
s_test_send (zsock_t *gateway, const proto_reading_t *reading, proto_buffer_t *buffer)
{
    assert (proto_reading_encode (reading, buffer) == 0);
    zframe_t *frame = zframe_new (buffer->data, buffer->size);
    assert (zframe_send (&frame, gateway, 0) == 0);
}

//  The next verdict the store gets.
static void
s_test_verdict (detector_server_t *server, zsock_t *store, proto_verdict_t *verdict)
{
    zmsg_t *msg = s_pump (server, store);
    assert (msg);
    assert (zmsg_size (msg) == 1);
    zframe_t *frame = zmsg_first (msg);
    assert (proto_verdict_decode (zframe_data (frame), zframe_size (frame), verdict) == 0);
    zmsg_destroy (&msg);
}

//  The next event on the bus, whose topic must be topic.
static void
s_test_event (detector_server_t *server, zsock_t *bus, const char *topic, proto_event_t *event)
{
    zmsg_t *msg = s_pump (server, bus);
    assert (msg);
    assert (zmsg_size (msg) == 2);
    char *got = zmsg_popstr (msg);
    assert (streq (got, topic));
    free (got);
    zframe_t *frame = zmsg_first (msg);
    assert (proto_event_decode (zframe_data (frame), zframe_size (frame), event) == 0);
    zmsg_destroy (&msg);
}

void
detector_server_test (bool verbose)
{
    printf (" * detector_server: ");
    if (verbose)
        printf ("\n");

    //  Partition offsets.
    char *list =
        detector_server_partition_endpoints ("tcp://127.0.0.1:5600, tcp://10.0.0.2:5600", 3);
    assert (list);
    assert (streq (list, "tcp://127.0.0.1:5603,tcp://10.0.0.2:5603"));
    free (list);
    assert (detector_server_partition_endpoints ("tcp://127.0.0.1", 0) == NULL);
    assert (detector_server_partition_endpoints ("", 0) == NULL);

    //  The gateway's PUSH and the store's PULL, on ephemeral ports.
    zsock_t *gateway = s_test_socket (ZMQ_PUSH);
    zsock_t *store = s_test_socket (ZMQ_PULL);
    detector_server_t *server = detector_server_new (
        zsock_endpoint (gateway), zsock_endpoint (store), "tcp://127.0.0.1:*", 300000, verbose);
    assert (server);
    assert (strncmp (detector_server_event_endpoint (server), "tcp://127.0.0.1:", 16) == 0);
    zsock_t *bus = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (bus, 100);
    zsock_set_linger (bus, 0);
    zsock_set_subscribe (bus, "phantom.");
    assert (zsock_connect (bus, "%s", detector_server_event_endpoint (server)) == 0);
    //  Let the SUB join before anything is published (slow joiner).
    for (int i = 0; i < 20; i++)
        detector_server_poll (server, 10);

    //  Garbage and a multi-part message are dropped and counted.
    zstr_send (gateway, "not msgpack");
    zstr_sendm (gateway, "two");
    zstr_send (gateway, "parts");

    //  A low reading with no dwell: phantom at once.
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    settings.min_phantom_seconds = 0;
    proto_reading_t reading;
    detector_fixture_reading (&reading, "0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90", 7, zclock_time (),
                              4.6, &settings);
    reading.request = 42;
    snprintf (reading.gateway, sizeof (reading.gateway), "gw1");
    reading.device = 3;
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    s_test_send (gateway, &reading, &buffer);
    proto_verdict_t verdict;
    s_test_verdict (server, store, &verdict);
    assert (verdict.reading.request == 42);
    assert (streq (verdict.reading.port, reading.port));
    assert (verdict.status == PROTO_STATUS_PHANTOM);
    assert (verdict.previous == PROTO_STATUS_UNKNOWN);
    assert (verdict.has_episode);
    assert (verdict.episode.start == reading.ts);
    assert (verdict.episode.end == 0);
    proto_event_t event;
    s_test_event (server, bus, "phantom.start.0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90", &event);
    assert (streq (event.kind, "phantom.start"));
    assert (event.user == 7);
    assert (event.status == PROTO_STATUS_PHANTOM);
    assert (event.has_episode);
    assert (event.episode.start == reading.ts);

    //  A retry of the same reading gets the same verdict and no new event.
    s_test_send (gateway, &reading, &buffer);
    s_test_verdict (server, store, &verdict);
    assert (verdict.status == PROTO_STATUS_PHANTOM);

    //  Switching on ends the episode: verdict with it closed, phantom.end.
    reading.ts += 10000;
    reading.power = 120;
    s_test_send (gateway, &reading, &buffer);
    s_test_verdict (server, store, &verdict);
    assert (verdict.status == PROTO_STATUS_ACTIVE);
    assert (verdict.previous == PROTO_STATUS_PHANTOM);
    assert (verdict.has_episode);
    assert (verdict.episode.end == reading.ts);
    s_test_event (server, bus, "phantom.end.0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90", &event);

    //  A batch message: three readings of three ports in one message come
    //  back as three verdicts in one message, in order; a broken frame
    //  after them is dropped and counted, the three still count.
    proto_buffer_reset (&buffer);
    static const char *batch_ports[] = {"2a6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d91",
                                        "3b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d92",
                                        "4c6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d93"};
    for (int i = 0; i < 3; i++) {
        proto_reading_t other = reading;
        snprintf (other.port, sizeof (other.port), "%s", batch_ports[i]);
        other.request = 500 + (uint64_t)i;
        assert (proto_reading_append (&other, &buffer) == 0);
    }
    uint8_t *bytes = (uint8_t *)malloc (buffer.size + 2);
    assert (bytes);
    memcpy (bytes, buffer.data, buffer.size);
    bytes[buffer.size] = 0xc1; //  never used in msgpack
    bytes[buffer.size + 1] = 0;
    zframe_t *batch_frame = zframe_new (bytes, buffer.size + 2);
    free (bytes);
    assert (zframe_send (&batch_frame, gateway, 0) == 0);
    zmsg_t *answer = s_pump (server, store);
    assert (answer && zmsg_size (answer) == 1);
    zframe_t *verdicts_frame = zmsg_first (answer);
    const uint8_t *at = zframe_data (verdicts_frame);
    size_t left = zframe_size (verdicts_frame);
    for (int i = 0; i < 3; i++) {
        size_t used;
        assert (proto_verdict_decode_next (at, left, &verdict, &used) == 0);
        assert (verdict.reading.request == 500 + (uint64_t)i);
        assert (streq (verdict.reading.port, batch_ports[i]));
        assert (verdict.status == PROTO_STATUS_ACTIVE);
        at += used;
        left -= used;
    }
    assert (left == 0);
    zmsg_destroy (&answer);

    detector_server_stats_t stats;
    detector_server_stats (server, &stats);
    assert (stats.frames == 9);
    assert (stats.malformed == 3);
    assert (stats.verdicts == 6);
    assert (stats.events == 7); //  status events too; the SUB only took phantom.*
    detector_server_destroy (&server);
    detector_server_destroy (&server);

    //  The offline timer, on a server that calls 200 ms offline;
    //  fresh sockets, so no frame goes to the old server's dead pipe.
    zsock_destroy (&gateway);
    zsock_destroy (&store);
    gateway = s_test_socket (ZMQ_PUSH);
    store = s_test_socket (ZMQ_PULL);
    server = detector_server_new (zsock_endpoint (gateway), zsock_endpoint (store),
                                  "tcp://127.0.0.1:*", 200, verbose);
    assert (server);
    snprintf (reading.port, sizeof (reading.port), "%s", "1c7a4d2f-8b63-4d2c-ae4f-3a2b7c8d9e01");
    int64_t first_ts = zclock_time () - 200000;
    for (int i = 0; i < 100; i++) {
        reading.request = 100 + (uint64_t)i;
        reading.ts = first_ts + i * 100; //  closer than offline_after: no gap
        reading.received = zclock_time ();
        reading.power = 4.6;
        s_test_send (gateway, &reading, &buffer);
        s_test_verdict (server, store, &verdict);
        assert (!verdict.no_reading);
        assert (verdict.status == PROTO_STATUS_PHANTOM);
    }
    //  Silence: within a timer period the store gets a verdict without a
    //  reading that takes the port offline and closes its episode.
    s_test_verdict (server, store, &verdict);
    assert (verdict.no_reading);
    assert (streq (verdict.reading.gateway, PROTO_GATEWAY_NONE));
    assert (streq (verdict.reading.port, reading.port));
    assert (verdict.reading.user == 7);
    assert (verdict.reading.ts == reading.ts);
    assert (verdict.status == PROTO_STATUS_OFFLINE);
    assert (verdict.previous == PROTO_STATUS_PHANTOM);
    assert (verdict.has_episode);
    assert (verdict.episode.start == first_ts);
    assert (verdict.episode.end == reading.ts);
    assert (verdict.episode.samples == 100);
    detector_server_stats (server, &stats);
    assert (stats.verdicts == 101);
    detector_server_destroy (&server);

    //  A plug's will: an offline frame on the readings link, on a server
    //  whose timer would wait 5 minutes. The readings before it are judged
    //  first; then the store gets the timer's verdict without a reading and
    //  the bus the timer's events, at once. A frame naming a port with a
    //  reading received after the will changes nothing.
    zsock_destroy (&gateway);
    zsock_destroy (&store);
    zsock_destroy (&bus);
    gateway = s_test_socket (ZMQ_PUSH);
    store = s_test_socket (ZMQ_PULL);
    server = detector_server_new (zsock_endpoint (gateway), zsock_endpoint (store),
                                  "tcp://127.0.0.1:*", 300000, verbose);
    assert (server);
    bus = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (bus, 100);
    zsock_set_linger (bus, 0);
    zsock_set_subscribe (bus, "");
    assert (zsock_connect (bus, "%s", detector_server_event_endpoint (server)) == 0);
    for (int i = 0; i < 20; i++)
        detector_server_poll (server, 10);
    snprintf (reading.port, sizeof (reading.port), "%s", "5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13");
    first_ts = zclock_time () - 60000;
    proto_buffer_reset (&buffer);
    for (int i = 0; i < 3; i++) {
        reading.request = 900 + (uint64_t)i;
        reading.ts = first_ts + i * 1000;
        reading.received = zclock_time ();
        reading.power = 4.6;
        reading.live = true; //  as phantom-mqtt sends them
        assert (proto_reading_append (&reading, &buffer) == 0);
    }
    reading.live = false;
    zframe_t *readings_frame = zframe_new (buffer.data, buffer.size);
    assert (zframe_send (&readings_frame, gateway, 0) == 0);
    proto_offline_t offline;
    memset (&offline, 0, sizeof (offline));
    offline.count = 2;
    offline.ts = reading.received - 1; //  before the last reading came: nothing
    snprintf (offline.ports[0], sizeof (offline.ports[0]), "%s", reading.port);
    snprintf (offline.ports[1], sizeof (offline.ports[1]), "%s",
              "6e9c7f4b-ad85-4f4e-8061-5c4d9e0f1a24"); //  never read: skipped
    proto_buffer_t offline_buffer;
    proto_buffer_init (&offline_buffer);
    assert (proto_offline_encode (&offline, &offline_buffer) == 0);
    zframe_t *offline_frame = zframe_new (offline_buffer.data, offline_buffer.size);
    assert (zframe_send (&offline_frame, gateway, 0) == 0);
    offline.ts = zclock_time ();
    assert (proto_offline_encode (&offline, &offline_buffer) == 0);
    offline_frame = zframe_new (offline_buffer.data, offline_buffer.size);
    assert (zframe_send (&offline_frame, gateway, 0) == 0);
    //  Three verdicts of readings, then one without: in one message or two.
    int with_reading = 0, without = 0;
    while (with_reading + without < 4) {
        zmsg_t *msg = s_pump (server, store);
        assert (msg);
        zframe_t *frame = zmsg_first (msg);
        const uint8_t *cursor = zframe_data (frame);
        size_t rest = zframe_size (frame);
        while (rest) {
            size_t used;
            assert (proto_verdict_decode_next (cursor, rest, &verdict, &used) == 0);
            if (verdict.no_reading) {
                assert (with_reading == 3);
                assert (verdict.status == PROTO_STATUS_OFFLINE);
                assert (verdict.previous == PROTO_STATUS_PHANTOM); //  no dwell (settings)
                assert (verdict.reading.ts == first_ts + 2000);
                assert (verdict.has_episode && verdict.episode.start == first_ts);
                assert (verdict.episode.end == first_ts + 2000 && verdict.episode.samples == 3);
                assert (streq (verdict.reading.port, reading.port));
                assert (streq (verdict.reading.gateway, PROTO_GATEWAY_NONE));
                without++;
            } else {
                assert (without == 0);
                with_reading++;
            }
            cursor += used;
            rest -= used;
        }
        zmsg_destroy (&msg);
    }
    //  The bus: the readings' status and phantom.start, then the timer's
    //  status offline and phantom.end.
    s_test_event (server, bus, "status.5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13", &event);
    assert (event.status == PROTO_STATUS_PHANTOM);
    s_test_event (server, bus, "phantom.start.5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13", &event);
    for (int i = 0; i < 3; i++) {
        //  Each live reading on the bus, after its status change's events.
        s_test_event (server, bus, "reading.5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13", &event);
        assert (streq (event.kind, "reading") && event.ts == first_ts + i * 1000);
        assert (event.watts == 4.6 && event.status == PROTO_STATUS_PHANTOM && !event.has_episode);
    }
    s_test_event (server, bus, "status.5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13", &event);
    assert (event.status == PROTO_STATUS_OFFLINE && event.previous == PROTO_STATUS_PHANTOM);
    assert (event.ts == first_ts + 2000 && event.user == 7);
    s_test_event (server, bus, "phantom.end.5d8b6e3a-9c74-4e3d-bf50-4b3c8d9e0f13", &event);
    assert (event.has_episode && event.episode.end == first_ts + 2000);
    detector_server_stats (server, &stats);
    assert (stats.offline_frames == 2 && stats.malformed == 0 && stats.verdicts == 4);
    detector_engine_stats_t engine_stats;
    detector_engine_stats (detector_server_engine (server), &engine_stats);
    assert (engine_stats.told_offline == 1 && engine_stats.offline == 0);
    proto_buffer_release (&offline_buffer);
    detector_server_destroy (&server);

    proto_buffer_release (&buffer);
    zsock_destroy (&bus);
    zsock_destroy (&store);
    zsock_destroy (&gateway);
    printf ("OK\n");
}
