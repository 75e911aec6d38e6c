/*  =========================================================================
    mqtt_service - smart plugs over MQTT into the readings pipeline

    Two threads. The MQTT thread runs the client loop (mosquitto_loop,
    200 ms at a time) and prepares each message: parse, map each channel
    to its port (mqtt_channels, creating it on first sight), take the
    port's detection settings from gateway_cache (kept fresh by LISTEN, as
    in the gateway), and append its readings to the window, a FIFO of at
    most mqtt_window readings (when it is full the MQTT thread waits, and
    the broker queues for us). The submit thread takes whatever is queued,
    up to mqtt_batch readings, in arrival order, PUSHes it as one
    gateway_pipeline_submit (the gateway's batch path: one message per
    partition, in order) and waits, bounded, for the store's acks; then the
    next batch. So many messages are in flight at once (one batch costs
    about one ack latency, whatever its size) and a port's readings still
    reach its detector partition in the broker's order: within a batch the
    pipeline keeps the order per partition, and a batch starts only when
    the one before it is settled. s_message_stored is the one place where
    a message is known fully stored (or given up), in arrival order; a
    plug's will (LWT, online, status) goes through the window too, so
    s_presence sees it after the readings that came before it are stored.

    Order of a port's readings. A plug publishes one channel's readings on
    one topic, in order, over one connection; the broker forwards a QoS 1
    topic's messages in order to one subscriber. With 2+ instances sharing
    $share/phantom/..., mosquitto 2.0 picks the member per message (round
    robin: eclipse/mosquitto v2.0.11 src/subs.c:110-121
    subs__shared_process moves the chosen member to the end of the list),
    so two readings of one port may be handled by two instances and reach
    the detector in either order when they are closer together than the
    instances' handling time (ack lag, milliseconds; a plug reports every
    10 s or so). The reading's time decides where it is stored: the
    device's (Tasmota Time, Shelly NotifyStatus ts) or, for plugs that
    send none, the broker's receive time when the auth plugin stamps one
    (user property pw-t, ms), else ours. The detector counts a reading
    older than its port's last as out of order and leaves its state alone
    (detector_engine.c, s_answer_stale): it is stored, only its effect on
    detection is lost. services/mqtt/README.md has the measured bound.

    Delivery. libmosquitto sends PUBACK before it calls on_message
    (eclipse/mosquitto v2.0.11 lib/handle_publish.c:140-151: case 1,
    send__puback, then on_message_v5), so a message the service received and then lost in a crash
    is not redelivered: the persistent session (clean start off, session
    expiry) keeps only what arrives while the service is away. Closing that
    window is item 4 of issue 17 (the broker plugin).
    =========================================================================
*/
#include "mqtt_service.h"
#include "gateway_cache.h"
#include "gateway_pipeline.h"
#include "mqtt_channels.h"
#include "mqtt_metrics.h"
#include "mqtt_offline.h"
#include "mqtt_parse.h"
#include "mqtt_reading.h"
#include "proto.h"

#include <czmq.h>
#include <inttypes.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#define SESSION_EXPIRY_S (7 * 24 * 3600)
#define KEEPALIVE_S 30
#define LOG_EVERY_MS 10000
#define RETRY_MS 20000
#define DRAIN_MS 5000

//  What the firmware publishes (mqtt_parse.c cites the sources). Readings
//  are shared by every instance in group "phantom" (each message to one of
//  them); presence (LWT, online, status) is not shared: every instance
//  sees every plug come and go, retained wills included, so each one's
//  connected-devices gauge counts all plugs.
static const char *s_topics[] = {"$share/phantom/tele/+/SENSOR",
                                 "$share/phantom/shellies/+/relay/+/power",
                                 "$share/phantom/+/status/+",
                                 "$share/phantom/+/events/rpc",
                                 "$share/phantom/+/sensor/+/state",
                                 "tele/+/LWT",
                                 "shellies/+/online",
                                 "+/online",
                                 "+/status"};
#define TOPICS (sizeof s_topics / sizeof s_topics[0])

//  A message in the window: its readings are the window's entries that
//  name it. Settled when every reading is stored or given up.
typedef struct {
    mqtt_parse_kind_t kind;             //  READINGS, or ONLINE / OFFLINE (a will, no readings)
    char name[MQTT_PARSE_NAME_MAX + 1]; //  the plug, for presence
    size_t readings;                    //  its readings in the window
    size_t stored;                      //  stored so far
    size_t settled;                     //  stored or given up so far
    int64_t started;                    //  zclock_usecs at receipt (ack lag)
    int64_t received;                   //  ms, the broker's receipt (a will's "as of")
    char pw_id[MQTT_SERVICE_ID_MAX];    //  the broker's stamp, "" when none
    char topic[128];                    //  for the log, truncated
} s_message_t;

//  One reading in the window, and the message it belongs to.
typedef struct {
    proto_reading_t reading; //  ready to submit (request filled by the pipeline)
    size_t message;          //  index in the messages ring
} s_entry_t;

struct _mqtt_service_t {
    struct mosquitto *mosq;                    //  the client
    char client_id[32];                        //  phantom-mqtt-<instance>
    char *host;                                //  broker
    int port;                                  //  broker port (TLS when mqtt_tls_port)
    bool connected;                            //  MQTT session up
    int64_t retry_at;                          //  next connect attempt, zclock_mono
    int backoff_ms;                            //  current backoff
    gateway_cache_t *cache;                    //  port settings, fresh by LISTEN
    mqtt_channels_t *channels;                 //  (plug, channel) -> port, the MQTT thread's
    mqtt_channels_t *offline_channels;         //  the same, the submit thread's (a will's ports)
    gateway_pipeline_t *pipeline;              //  readings out, acks back
    mqtt_metrics_t *metrics;                   //  counters and their endpoint
    mqtt_counters_t *counters;                 //  borrowed from metrics
    mqtt_offline_t *offline;                   //  a will takes the plug's ports offline
    zhashx_t *online;                          //  plug names whose last presence said online
    int64_t logged_at[MQTT_REJECT_COUNT];      //  rate limit of rejection logs
    unsigned long unlogged[MQTT_REJECT_COUNT]; //  rejections since the last log
    bool verbose;                              //  log every message
    volatile sig_atomic_t *stop;               //  while running: stop retrying too
    pthread_mutex_t reject_mutex;              //  s_reject from both threads
    //  The window: a FIFO of entries and one of messages, head .. tail.
    //  The MQTT thread appends at the tails; the submit thread takes from
    //  taken (entries handed to the pipeline, not yet settled) and frees
    //  at the heads once settled. Under window_mutex.
    pthread_mutex_t window_mutex;      //  guards the rings' indices
    pthread_cond_t window_work;        //  entries appended, or closing
    pthread_cond_t window_room;        //  entries freed
    s_entry_t *entries;                //  ring of window_size
    size_t window_size;                //  mqtt_window: most readings in flight
    size_t entry_head, entry_tail;     //  free at head, append at tail (counters)
    s_message_t *messages;             //  ring of window_size (a message has >= 1 reading)
    size_t message_head, message_tail; //  same
    size_t batch_size;                 //  mqtt_batch: most readings per submit
    proto_reading_t *batch;            //  the submit thread's copy of a batch
    proto_ack_t *batch_acks;           //  its acks
    int *batch_outcomes;               //  its outcomes
    bool *batch_stored;                //  reading stored (counted once)
    bool *batch_again;                 //  reading in the next retry
    pthread_t submitter;               //  the submit thread
    bool submitter_running;            //  created
    bool closing;                      //  destroy: drain, then leave
};

//  --------------------------------------------------------------------------
//  A rejected message: counted, logged at most once per 10 s per reason.
static void
s_reject (mqtt_service_t *self, mqtt_reject_t reason, const char *topic, size_t size)
{
    atomic_fetch_add (&self->counters->rejected[reason], 1);
    int64_t now = zclock_mono ();
    pthread_mutex_lock (&self->reject_mutex);
    if (now - self->logged_at[reason] < LOG_EVERY_MS && self->logged_at[reason]) {
        self->unlogged[reason]++;
        pthread_mutex_unlock (&self->reject_mutex);
        return;
    }
    zsys_warning ("mqtt - rejected (%s): topic '%.100s', %zu bytes (%lu more since last said)",
                  mqtt_parse_reason_name (reason), topic, size, self->unlogged[reason]);
    self->logged_at[reason] = now;
    self->unlogged[reason] = 0;
    pthread_mutex_unlock (&self->reject_mutex);
}

static void
s_presence (mqtt_service_t *self, const mqtt_parse_t *parsed)
{
    bool was = zhashx_lookup (self->online, parsed->name) != NULL;
    if (parsed->kind == MQTT_PARSE_ONLINE && !was) {
        zhashx_insert (self->online, parsed->name, (void *)1);
        atomic_fetch_add (&self->counters->devices_online, 1);
    } else if (parsed->kind == MQTT_PARSE_OFFLINE && was) {
        zhashx_delete (self->online, parsed->name);
        atomic_fetch_sub (&self->counters->devices_online, 1);
    }
    //  Offline is not 0 W: no reading; the detectors take the plug's ports
    //  offline at once (mqtt_offline).
    if (self->verbose || parsed->kind == MQTT_PARSE_OFFLINE)
        zsys_info ("mqtt - plug %s %s", parsed->name,
                   parsed->kind == MQTT_PARSE_ONLINE ? "online" : "offline");
}

//  --------------------------------------------------------------------------
//  The one point where a message is done: every reading of it stored
//  (stored == readings) or, after RETRY_MS of passing failures, given up.
//  Called on the submit thread in the broker's order of arrival. Hooks that
//  must know a message is durable (a spool that drops it, an ack of it)
//  belong here.
static void
s_message_stored (mqtt_service_t *self, const s_message_t *message)
{
    if (message->stored < message->readings) {
        atomic_fetch_add (&self->counters->readings_failed, message->readings - message->stored);
        s_reject (self, MQTT_REJECT_PIPELINE, message->topic, 0);
    }
    unsigned long lag = (unsigned long)(zclock_usecs () - message->started);
    atomic_fetch_add (&self->counters->ack_lag_us_sum, lag);
    atomic_fetch_add (&self->counters->ack_lag_count, 1);
    unsigned long max = atomic_load (&self->counters->ack_lag_us_max);
    while (lag > max && !atomic_compare_exchange_weak (&self->counters->ack_lag_us_max, &max, lag))
        ;
    if (self->verbose)
        zsys_debug ("mqtt - %s: %zu readings, %zu stored", message->topic, message->readings,
                    message->stored);
}

//  Submits batch[0 .. count) and, while some are not stored for a reason
//  that passes (no detector on the partition, queue full, no ack in time,
//  the store's RETRY), submits again, backing off 200 ms .. 2 s, for up to
//  RETRY_MS: a detector or store restarted by supervisord is back well
//  within it. What goes again is, per port, the first reading not stored
//  and every later one of that port in the batch, stored or not, so the
//  detector sees the port's readings in order again (the same readingIds:
//  stored once). The message was PUBACKed already, so this is the only
//  second chance it gets. Meanwhile nothing else is submitted (the window
//  fills, then the MQTT loop waits and the broker queues; RETRY_MS stays
//  under the keepalive's 1.5 x 30 s). batch_stored[i] says what was stored.
static void
s_submit (mqtt_service_t *self, size_t count)
{
    proto_reading_t *batch = self->batch;
    bool *stored = self->batch_stored;
    bool *again = self->batch_again;
    //  The retries go out from a copy, so batch keeps each reading's place.
    proto_reading_t *pending = (proto_reading_t *)malloc (count * sizeof (proto_reading_t));
    size_t *places = (size_t *)malloc (count * sizeof (size_t));
    assert (pending && places);
    for (size_t index = 0; index < count; index++) {
        stored[index] = false;
        pending[index] = batch[index];
        places[index] = index;
    }
    size_t left = count;
    int64_t deadline = zclock_mono () + RETRY_MS;
    int backoff = 200;
    while (true) {
        gateway_pipeline_submit (self->pipeline, pending, left, self->batch_acks,
                                 self->batch_outcomes);
        bool failed = false;
        for (size_t index = 0; index < left; index++) {
            size_t place = places[index];
            bool acked = self->batch_outcomes[index] == GATEWAY_PIPELINE_ACKED;
            again[place] = false;
            if (acked && self->batch_acks[index].code == PROTO_ACK_OK) {
                if (!stored[place])
                    atomic_fetch_add (&self->counters->readings_stored, 1);
                stored[place] = true;
            } else if (!acked || self->batch_acks[index].code == PROTO_ACK_RETRY)
                again[place] = failed = true;
            //  Any other code (the store refused it for good): not again.
        }
        if (!failed || zclock_mono () + backoff > deadline || (self->stop && *self->stop))
            break;
        //  Per port: from its first failure on, everything of that port.
        zhashx_t *ports = zhashx_new ();
        assert (ports);
        left = 0;
        for (size_t index = 0; index < count; index++) {
            bool late = zhashx_lookup (ports, batch[index].port) != NULL;
            if (!again[index] && !late)
                continue;
            if (!late)
                zhashx_insert (ports, batch[index].port, (void *)1);
            pending[left] = batch[index];
            places[left++] = index;
        }
        zhashx_destroy (&ports);
        atomic_fetch_add (&self->counters->retries, 1);
        zclock_sleep (backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    free (pending);
    free (places);
}

//  The submit thread: batches out of the window, in order, until closing
//  and drained (DRAIN_MS at most).
//  A message leaves the window, in arrival order: readings at
//  s_message_stored, presence at s_presence.
static void
s_message_done (mqtt_service_t *self, const s_message_t *message)
{
    if (message->kind == MQTT_PARSE_READINGS) {
        s_message_stored (self, message);
        return;
    }
    mqtt_parse_t parsed;
    memset (&parsed, 0, sizeof parsed);
    parsed.kind = message->kind;
    snprintf (parsed.name, sizeof parsed.name, "%s", message->name);
    s_presence (self, &parsed);
    if (message->kind == MQTT_PARSE_OFFLINE)
        mqtt_offline_plug (self->offline, message->name, message->received);
}

//  The submit thread: batches out of the window, in order, until closing
//  and drained (DRAIN_MS at most).
static void *
s_submitter (void *arg)
{
    mqtt_service_t *self = (mqtt_service_t *)arg;
    int64_t drain_until = 0;
    pthread_mutex_lock (&self->window_mutex);
    while (true) {
        //  Settled messages leave from the head, in order; the callbacks
        //  run without the lock (the MQTT thread writes only at the tail,
        //  and the head's slot stays ours until message_head moves).
        bool freed = false;
        while (self->message_head != self->message_tail) {
            s_message_t *message = &self->messages[self->message_head % self->window_size];
            if (message->settled < message->readings)
                break;
            pthread_mutex_unlock (&self->window_mutex);
            s_message_done (self, message);
            pthread_mutex_lock (&self->window_mutex);
            self->message_head++;
            freed = true;
        }
        if (freed)
            pthread_cond_broadcast (&self->window_room);
        if (self->closing && !drain_until)
            drain_until = zclock_mono () + DRAIN_MS;
        if (self->entry_head == self->entry_tail) {
            if (self->closing && self->message_head == self->message_tail)
                break;
            struct timespec until;
            clock_gettime (CLOCK_REALTIME, &until);
            until.tv_nsec += 200 * 1000000L;
            if (until.tv_nsec >= 1000000000L) {
                until.tv_sec++;
                until.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait (&self->window_work, &self->window_mutex, &until);
            continue;
        }
        if (drain_until && zclock_mono () > drain_until)
            break;
        //  Take up to batch_size entries; the ring is not touched by the
        //  MQTT thread below entry_tail, so copy without the lock.
        size_t first = self->entry_head;
        size_t count = self->entry_tail - first;
        if (count > self->batch_size)
            count = self->batch_size;
        pthread_mutex_unlock (&self->window_mutex);
        for (size_t index = 0; index < count; index++)
            self->batch[index] = self->entries[(first + index) % self->window_size].reading;
        s_submit (self, count);
        pthread_mutex_lock (&self->window_mutex);
        //  Settle: count each reading to its message (a message may
        //  straddle two batches); complete ones leave at the loop's top.
        for (size_t index = 0; index < count; index++) {
            s_entry_t *entry = &self->entries[(first + index) % self->window_size];
            s_message_t *message = &self->messages[entry->message];
            message->settled++;
            if (self->batch_stored[index])
                message->stored++;
        }
        self->entry_head = first + count;
        pthread_cond_broadcast (&self->window_room);
    }
    pthread_mutex_unlock (&self->window_mutex);
    return NULL;
}

//  Appends one message's readings to the window (the MQTT thread). Waits
//  while the window has no room for them: the submit thread frees it
//  within one batch's retries (RETRY_MS). Returns -1 when stopping.
static int
s_window_append (mqtt_service_t *self, const mqtt_parse_t *parsed, const proto_reading_t *readings,
                 size_t count, const char *topic, const char *pw_id, int64_t started,
                 int64_t received)
{
    pthread_mutex_lock (&self->window_mutex);
    while ((self->entry_tail + count - self->entry_head > self->window_size ||
            self->message_tail - self->message_head >= self->window_size) &&
           !self->closing && !(self->stop && *self->stop)) {
        struct timespec until;
        clock_gettime (CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        pthread_cond_timedwait (&self->window_room, &self->window_mutex, &until);
    }
    if (self->entry_tail + count - self->entry_head > self->window_size ||
        self->message_tail - self->message_head >= self->window_size) {
        pthread_mutex_unlock (&self->window_mutex);
        return -1;
    }
    size_t slot = self->message_tail % self->window_size;
    s_message_t *message = &self->messages[slot];
    memset (message, 0, sizeof *message);
    message->kind = parsed->kind;
    snprintf (message->name, sizeof message->name, "%s", parsed->name);
    message->readings = count;
    message->started = started;
    message->received = received;
    snprintf (message->pw_id, sizeof message->pw_id, "%s", pw_id ? pw_id : "");
    snprintf (message->topic, sizeof message->topic, "%s", topic);
    for (size_t index = 0; index < count; index++) {
        s_entry_t *entry = &self->entries[(self->entry_tail + index) % self->window_size];
        entry->reading = readings[index];
        entry->message = slot;
    }
    self->entry_tail += count;
    self->message_tail++;
    pthread_cond_signal (&self->window_work);
    pthread_mutex_unlock (&self->window_mutex);
    return 0;
}

size_t
mqtt_service_queued (mqtt_service_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->window_mutex);
    size_t queued = self->message_tail - self->message_head;
    pthread_mutex_unlock (&self->window_mutex);
    return queued;
}

void
mqtt_service_message (mqtt_service_t *self, const char *topic, const void *payload, size_t size,
                      const char *pw_id)
{
    mqtt_service_message_at (self, topic, payload, size, pw_id, 0);
}

void
mqtt_service_message_at (mqtt_service_t *self, const char *topic, const void *payload, size_t size,
                         const char *pw_id, int64_t broker_ms)
{
    assert (self && topic);
    //  The broker's receive time when it stamped one that is sane: within
    //  the session's life (a message queued while we were away keeps the
    //  time it came), not ahead of us.
    int64_t received = zclock_time ();
    if (broker_ms > received - (int64_t)SESSION_EXPIRY_S * 1000 && broker_ms <= received + 1000)
        received = broker_ms;
    int64_t started = zclock_usecs ();
    atomic_fetch_add (&self->counters->messages, 1);
    mqtt_parse_t parsed;
    mqtt_parse_kind_t kind = mqtt_parse_message (topic, payload, size, &parsed);
    if (kind == MQTT_PARSE_REJECTED) {
        s_reject (self, parsed.reason, topic, size);
        return;
    }
    if (kind == MQTT_PARSE_IGNORED) {
        atomic_fetch_add (&self->counters->ignored, 1);
        return;
    }
    if (kind == MQTT_PARSE_ONLINE || kind == MQTT_PARSE_OFFLINE) {
        //  Behind the readings that came before it: a will takes effect
        //  after the plug's last readings are stored.
        s_window_append (self, &parsed, NULL, 0, topic, pw_id, started, received);
        return;
    }
    proto_reading_t readings[MQTT_PARSE_CHANNELS_MAX];
    memset (readings, 0, sizeof readings);
    size_t count = 0;
    bool stamped = true;
    for (size_t index = 0; index < parsed.count; index++) {
        const mqtt_parse_reading_t *source = &parsed.readings[index];
        mqtt_channel_t channel;
        mqtt_channels_result_t found =
            mqtt_channels_lookup (self->channels, parsed.name, source->channel, &channel);
        if (found == MQTT_CHANNELS_UNKNOWN) {
            s_reject (self, MQTT_REJECT_UNKNOWN_DEVICE, topic, size);
            return;
        }
        gateway_port_t port;
        if (found == MQTT_CHANNELS_CREATED) {
            atomic_fetch_add (&self->counters->ports_created, 1);
            zsys_info ("mqtt - plug %s channel %s: new port %s", parsed.name, source->channel,
                       channel.port);
            gateway_cache_refresh_port (self->cache, channel.port);
        }
        bool known = found >= 0 && gateway_cache_port (self->cache, channel.port, &port);
        if (found >= 0 && !known) {
            //  Deleted since it was cached, or created by another instance
            //  a moment ago: read both again once.
            mqtt_channels_forget (self->channels, parsed.name, source->channel);
            found = mqtt_channels_lookup (self->channels, parsed.name, source->channel, &channel);
            if (found >= 0) {
                gateway_cache_refresh_port (self->cache, channel.port);
                known = gateway_cache_port (self->cache, channel.port, &port);
            }
        }
        if (!known) {
            //  PostgreSQL unreachable: the readings cannot be placed.
            atomic_fetch_add (&self->counters->readings_failed, 1);
            s_reject (self, MQTT_REJECT_PIPELINE, topic, size);
            continue;
        }
        proto_reading_t *reading = &readings[count++];
        reading->user = port.user;
        reading->device = channel.device;
        snprintf (reading->port, sizeof reading->port, "%s", channel.port);
        reading->settings = port.settings;
        reading->received = received;
        reading->ts = mqtt_reading_time (&parsed, port.settings.timezone, received);
        reading->power = source->power;
        reading->voltage = source->voltage;
        reading->current = source->current;
        reading->live = true; //  the detector publishes it for the dashboard's stream
        stamped = mqtt_reading_key (pw_id, topic, payload, size, received, source->channel,
                                    reading->key, sizeof reading->key);
    }
    if (count == 0)
        return;
    if (!stamped)
        atomic_fetch_add (&self->counters->fallback_ids, 1);
    atomic_fetch_add (&self->counters->readings_sent, count);
    if (s_window_append (self, &parsed, readings, count, topic, pw_id, started, received) != 0) {
        //  Stopping with a full window: not stored.
        atomic_fetch_add (&self->counters->readings_failed, count);
        s_reject (self, MQTT_REJECT_PIPELINE, topic, size);
    }
}

//  --------------------------------------------------------------------------
//  libmosquitto callbacks (the MQTT thread)

static void
s_on_connect (struct mosquitto *mosq, void *arg, int rc, int flags, const mosquitto_property *props)
{
    (void)props;
    mqtt_service_t *self = (mqtt_service_t *)arg;
    if (rc != 0) {
        zsys_warning ("mqtt - broker refused: %s", mosquitto_reason_string (rc));
        return;
    }
    self->connected = true;
    self->backoff_ms = 1000;
    atomic_store (&self->counters->broker_connected, 1);
    zsys_info ("mqtt - connected as %s (session %s)", self->client_id,
               flags & 1 ? "resumed" : "new");
    //  Subscribed again every time: cheap, and right after a broker that
    //  lost its persistence.
    for (size_t index = 0; index < TOPICS; index++)
        mosquitto_subscribe_v5 (mosq, NULL, s_topics[index], 1, 0, NULL);
}

static void
s_on_disconnect (struct mosquitto *mosq, void *arg, int rc, const mosquitto_property *props)
{
    (void)mosq;
    (void)props;
    mqtt_service_t *self = (mqtt_service_t *)arg;
    self->connected = false;
    atomic_store (&self->counters->broker_connected, 0);
    zsys_warning ("mqtt - disconnected: %s", mosquitto_reason_string (rc));
}

static void
s_on_message (struct mosquitto *mosq, void *arg, const struct mosquitto_message *message,
              const mosquitto_property *props)
{
    (void)mosq;
    mqtt_service_t *self = (mqtt_service_t *)arg;
    char *pw_id = NULL;
    int64_t broker_ms = 0;
    char *name = NULL, *value = NULL;
    const mosquitto_property *prop =
        mosquitto_property_read_string_pair (props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    while (prop) {
        if (name && streq (name, "pw-id") && !pw_id) {
            pw_id = value;
            value = NULL;
        } else if (name && value && streq (name, "pw-t"))
            broker_ms = strtoll (value, NULL, 10);
        free (name);
        free (value);
        name = value = NULL;
        prop = mosquitto_property_read_string_pair (prop, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                    true);
    }
    mqtt_service_message_at (self, message->topic, message->payload, (size_t)message->payloadlen,
                             pw_id, broker_ms);
    free (pw_id);
}

//  --------------------------------------------------------------------------

static char *
s_read_secret (const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file)
        return NULL;
    char line[256];
    char *secret = NULL;
    if (fgets (line, sizeof line, file)) {
        line[strcspn (line, "\r\n")] = 0;
        secret = strdup (line);
    }
    fclose (file);
    return secret;
}

static int
s_client (mqtt_service_t *self, proto_config_t *config)
{
    mosquitto_lib_init ();
    //  clean_session false: the broker keeps our subscriptions and queues
    //  QoS 1 messages while we are away (MQTT v5: clean start off, with the
    //  session expiry set in CONNECT below).
    self->mosq = mosquitto_new (self->client_id, false, self);
    if (!self->mosq)
        return -1;
    mosquitto_int_option (self->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
    mosquitto_connect_v5_callback_set (self->mosq, s_on_connect);
    mosquitto_disconnect_v5_callback_set (self->mosq, s_on_disconnect);
    mosquitto_message_v5_callback_set (self->mosq, s_on_message);
    //  In-flight QoS 1 messages from the broker: as many as it sends.
    mosquitto_int_option (self->mosq, MOSQ_OPT_RECEIVE_MAXIMUM, 1000);

    const char *secret_file = proto_config_str (config, "mqtt_service_secret_file");
    char fallback[512];
    if (!secret_file || !*secret_file) {
        const char *var = getenv ("PHANTOM_VAR");
        snprintf (fallback, sizeof fallback, "%s/mqtt/service.secret", var && *var ? var : "var");
        secret_file = fallback;
    }
    char *secret = s_read_secret (secret_file);
    if (secret) {
        mosquitto_username_pw_set (self->mosq, "phantom-mqtt", secret);
    } else {
        //  A test broker without the auth plugin: anonymous.
        zsys_warning ("mqtt - no secret in %s: connecting without credentials", secret_file);
        mosquitto_username_pw_set (self->mosq, "phantom-mqtt", NULL);
    }
    if (secret)
        explicit_bzero (secret, strlen (secret));
    free (secret);

    self->host = strdup (proto_config_str (config, "mqtt_host"));
    self->port = (int)proto_config_int (config, "mqtt_port");
    int tls_port = (int)proto_config_int (config, "mqtt_tls_port");
    const char *ca = proto_config_str (config, "mqtt_tls_ca");
    if (tls_port > 0) {
        if (!ca || !*ca || mosquitto_tls_set (self->mosq, ca, NULL, NULL, NULL, NULL) != 0) {
            zsys_error ("mqtt - mqtt_tls_port set, but mqtt_tls_ca '%s' is not usable",
                        ca ? ca : "");
            return -1;
        }
        self->port = tls_port;
    }
    return 0;
}

//  Instance i's base endpoint, which its partitions offset as the
//  gateway's do (tcp: port + p, ipc: path-p): tcp port + i * partitions,
//  ipc path.i (deploy/lib.sh lists the same for the detectors).
static char *
s_instance_endpoint (const char *endpoint, int instance, int partitions)
{
    if (strncmp (endpoint, "ipc://", 6) == 0) {
        char *base = NULL;
        if (asprintf (&base, "%s.%d", endpoint, instance) < 0)
            return NULL;
        return base;
    }
    return proto_config_endpoint_offset (endpoint, instance * partitions);
}

//  The pipeline's links, for readiness: detectors connected per
//  partition, and the store's ack link. Called from the metrics thread;
//  the pipeline's peer counts are atomics.
static void
s_metrics_append (void *arg, zchunk_t *text)
{
    mqtt_service_t *self = (mqtt_service_t *)arg;
    if (!self->pipeline)
        return;
    char line[160];
    const char *head = "# HELP phantom_mqtt_partition_peers Detectors connected to a partition\n"
                       "# TYPE phantom_mqtt_partition_peers gauge\n";
    zchunk_extend (text, head, strlen (head));
    for (int index = 0; index < gateway_pipeline_partitions (self->pipeline); index++) {
        int size =
            snprintf (line, sizeof line, "phantom_mqtt_partition_peers{partition=\"%d\"} %d\n",
                      index, gateway_pipeline_peers (self->pipeline, index));
        zchunk_extend (text, line, (size_t)size);
    }
    int size =
        snprintf (line, sizeof line,
                  "# TYPE phantom_mqtt_store_connected gauge\nphantom_mqtt_store_connected %d\n",
                  gateway_pipeline_store_connected (self->pipeline) ? 1 : 0);
    zchunk_extend (text, line, (size_t)size);
}

mqtt_service_t *
mqtt_service_new (proto_config_t *config, int instance, bool verbose)
{
    assert (config);
    mqtt_service_t *self = (mqtt_service_t *)zmalloc (sizeof (mqtt_service_t));
    assert (self);
    self->verbose = verbose;
    self->backoff_ms = 1000;
    snprintf (self->client_id, sizeof self->client_id, "phantom-mqtt-%d", instance);
    self->online = zhashx_new ();
    assert (self->online);
    pthread_mutex_init (&self->reject_mutex, NULL);
    pthread_mutex_init (&self->window_mutex, NULL);
    pthread_cond_init (&self->window_work, NULL);
    pthread_cond_init (&self->window_room, NULL);

    const char *database = proto_config_str (config, "database");
    self->cache = gateway_cache_new (database);
    if (!self->cache || gateway_cache_load (self->cache) != 0) {
        zsys_error ("mqtt - cannot load ports from PostgreSQL");
        goto failed;
    }
    self->channels = mqtt_channels_new (database);

    //  This instance's partitions: acks on ack.mqtt<instance>.
    int partitions = (int)proto_config_int (config, "partitions");
    char *endpoint = s_instance_endpoint (proto_config_str (config, "mqtt_reading_endpoint"),
                                          instance, partitions);
    if (!endpoint) {
        zsys_error ("mqtt - mqtt_reading_endpoint has no numeric port");
        goto failed;
    }
    char gateway_id[PROTO_GATEWAY_MAX + 1];
    snprintf (gateway_id, sizeof gateway_id, "mqtt%d", instance);
    gateway_pipeline_options_t options = {.gateway_id = gateway_id,
                                          .reading_endpoint = endpoint,
                                          .ack_endpoint = proto_config_str (config, "ack_endpoint"),
                                          .partitions = partitions,
                                          .ack_timeout_ms =
                                              (int)proto_config_int (config, "ack_timeout_ms")};
    self->pipeline = gateway_pipeline_new (&options);
    free (endpoint);
    if (!self->pipeline)
        goto failed;
    //  After the pipeline: the metrics thread reads it.
    int metrics_port = (int)proto_config_int (config, "mqtt_metrics_port");
    self->metrics =
        mqtt_metrics_new (metrics_port > 0 ? metrics_port + instance : 0, s_metrics_append, self);
    if (!self->metrics)
        goto failed;
    self->counters = mqtt_metrics_counters (self->metrics);
    //  A will is acted on by the submit thread, after the plug's readings
    //  before it: its own PostgreSQL connection, as the pipeline's sockets
    //  are locked per partition.
    self->offline_channels = mqtt_channels_new (database);
    self->offline = mqtt_offline_new (self->offline_channels, self->pipeline, self->counters);

    //  The window and its submit thread, after the pipeline and counters.
    self->window_size = (size_t)proto_config_int (config, "mqtt_window");
    self->batch_size = (size_t)proto_config_int (config, "mqtt_batch");
    if (self->batch_size > self->window_size)
        self->batch_size = self->window_size;
    self->entries = (s_entry_t *)calloc (self->window_size, sizeof (s_entry_t));
    self->messages = (s_message_t *)calloc (self->window_size, sizeof (s_message_t));
    self->batch = (proto_reading_t *)calloc (self->batch_size, sizeof (proto_reading_t));
    self->batch_acks = (proto_ack_t *)calloc (self->batch_size, sizeof (proto_ack_t));
    self->batch_outcomes = (int *)calloc (self->batch_size, sizeof (int));
    self->batch_stored = (bool *)calloc (self->batch_size, sizeof (bool));
    self->batch_again = (bool *)calloc (self->batch_size, sizeof (bool));
    if (!self->entries || !self->messages || !self->batch || !self->batch_acks ||
        !self->batch_outcomes || !self->batch_stored || !self->batch_again)
        goto failed;
    if (pthread_create (&self->submitter, NULL, s_submitter, self) != 0)
        goto failed;
    self->submitter_running = true;
    if (s_client (self, config) != 0)
        goto failed;
    return self;
failed:
    mqtt_service_destroy (&self);
    return NULL;
}

void
mqtt_service_destroy (mqtt_service_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mqtt_service_t *self = *self_p;
        if (self->mosq) {
            if (self->connected)
                mosquitto_disconnect_v5 (self->mosq, 0, NULL);
            mosquitto_destroy (self->mosq);
            mosquitto_lib_cleanup ();
        }
        //  No more messages come: the submit thread drains what it has
        //  (DRAIN_MS at most) before the pipeline goes.
        if (self->submitter_running) {
            pthread_mutex_lock (&self->window_mutex);
            self->closing = true;
            pthread_cond_broadcast (&self->window_work);
            pthread_cond_broadcast (&self->window_room);
            pthread_mutex_unlock (&self->window_mutex);
            pthread_join (self->submitter, NULL);
        }
        free (self->entries);
        free (self->messages);
        free (self->batch);
        free (self->batch_acks);
        free (self->batch_outcomes);
        free (self->batch_stored);
        free (self->batch_again);
        pthread_cond_destroy (&self->window_work);
        pthread_cond_destroy (&self->window_room);
        pthread_mutex_destroy (&self->window_mutex);
        pthread_mutex_destroy (&self->reject_mutex);
        mqtt_offline_destroy (&self->offline);
        mqtt_channels_destroy (&self->offline_channels);
        mqtt_metrics_destroy (&self->metrics); //  first: its thread reads the pipeline
        gateway_pipeline_destroy (&self->pipeline);
        mqtt_channels_destroy (&self->channels);
        gateway_cache_destroy (&self->cache);
        zhashx_destroy (&self->online);
        free (self->host);
        free (self);
        *self_p = NULL;
    }
}

//  Connects (bounded by the kernel's TCP connect and the keepalive), with
//  the session expiry that makes the broker keep our queue.
static void
s_connect (mqtt_service_t *self)
{
    mosquitto_property *props = NULL;
    mosquitto_property_add_int32 (&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, SESSION_EXPIRY_S);
    int rc =
        mosquitto_connect_bind_v5 (self->mosq, self->host, self->port, KEEPALIVE_S, NULL, props);
    mosquitto_property_free_all (&props);
    if (rc != MOSQ_ERR_SUCCESS) {
        zsys_warning ("mqtt - cannot connect to %s:%d: %s (again in %d ms)", self->host, self->port,
                      mosquitto_strerror (rc), self->backoff_ms);
        self->retry_at = zclock_mono () + self->backoff_ms;
        self->backoff_ms = self->backoff_ms * 2 > 30000 ? 30000 : self->backoff_ms * 2;
    } else
        self->retry_at = 0;
}

void
mqtt_service_run (mqtt_service_t *self, volatile sig_atomic_t *stop)
{
    assert (self && stop);
    self->stop = stop;
    bool socket_open = false;
    while (!*stop) {
        if (!socket_open) {
            if (zclock_mono () < self->retry_at) {
                zclock_sleep (100);
                continue;
            }
            s_connect (self);
            socket_open = self->retry_at == 0;
            continue;
        }
        int rc = mosquitto_loop (self->mosq, 200, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            self->connected = false;
            atomic_store (&self->counters->broker_connected, 0);
            zsys_warning ("mqtt - connection lost: %s (again in %d ms)", mosquitto_strerror (rc),
                          self->backoff_ms);
            socket_open = false;
            self->retry_at = zclock_mono () + self->backoff_ms;
            self->backoff_ms = self->backoff_ms * 2 > 30000 ? 30000 : self->backoff_ms * 2;
        }
    }
}

//  ==========================================================================
//  Self test: the firmware's messages through the service into a fake
//  detector+store (PULL per partition, PUB acks), against the test database.

typedef struct {
    zsock_t *pulls[2];
    zsock_t *pub;
    proto_reading_t got[512];
    atomic_int count;
    atomic_int retry_next; //  answer this many readings PROTO_ACK_RETRY
    char retry_key[64];    //  ... and the reading with this key, once
    atomic_bool hold;      //  read nothing while set
    atomic_bool stop;
} s_fake_t;

static void *
s_fake_thread (void *args)
{
    s_fake_t *fake = (s_fake_t *)args;
    zpoller_t *poller = zpoller_new (fake->pulls[0], fake->pulls[1], NULL);
    while (!atomic_load (&fake->stop)) {
        if (atomic_load (&fake->hold)) {
            zclock_sleep (5);
            continue;
        }
        zsock_t *which = (zsock_t *)zpoller_wait (poller, 100);
        if (!which || atomic_load (&fake->hold))
            continue; //  held: left unread
        zframe_t *frame = zframe_recv (which);
        size_t offset = 0;
        proto_reading_t reading;
        size_t used = 0;
        while (frame && offset < zframe_size (frame) &&
               proto_reading_decode_next (zframe_data (frame) + offset,
                                          zframe_size (frame) - offset, &reading, &used) == 0) {
            offset += used;
            int index = atomic_load (&fake->count);
            if (index < 512)
                fake->got[index] = reading;
            atomic_fetch_add (&fake->count, 1);
            proto_ack_t ack = {.request = reading.request,
                               .code = PROTO_ACK_OK,
                               .id = index + 1,
                               .ts = reading.ts};
            if (atomic_load (&fake->retry_next) > 0) {
                atomic_fetch_sub (&fake->retry_next, 1);
                ack.code = PROTO_ACK_RETRY;
            }
            if (streq (reading.key, fake->retry_key)) {
                fake->retry_key[0] = 0;
                ack.code = PROTO_ACK_RETRY;
            }
            proto_buffer_t buffer;
            proto_buffer_init (&buffer);
            proto_acks_encode (&ack, 1, &buffer);
            zmsg_t *msg = zmsg_new ();
            char topic[64];
            snprintf (topic, sizeof topic, "ack.%s", reading.gateway);
            zmsg_addstr (msg, topic);
            zmsg_addmem (msg, buffer.data, buffer.size);
            zmsg_send (&msg, fake->pub);
            proto_buffer_release (&buffer);
        }
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    return NULL;
}

#define WAIT_FOR(cond)                                                                             \
    do {                                                                                           \
        for (int wait_ = 0; wait_ < 300 && !(cond); wait_++)                                       \
            zclock_sleep (10);                                                                     \
        assert (cond);                                                                             \
    } while (0)

static void
s_send (mqtt_service_t *self, const char *topic, const char *payload, const char *pw_id)
{
    mqtt_service_message (self, topic, payload, strlen (payload), pw_id);
}

void
mqtt_service_test (bool verbose)
{
    printf (" * mqtt_service: ");
    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    if (!database) {
        printf ("SKIPPED (PHANTOM_TEST_DATABASE unset)\n");
        exit (77);
    }
    //  A config of its own: the test database, free-ish test endpoints.
    char path[] = "/tmp/mqtt_service_test_XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    FILE *file = fdopen (fd, "w");
    fprintf (file,
             "database = %s\npartitions = 2\nmqtt_reading_endpoint = tcp://127.0.0.1:6150\n"
             "ack_endpoint = tcp://127.0.0.1:6160\nmqtt_metrics_port = 0\nack_timeout_ms = 2000\n"
             "mqtt_service_secret_file = /nonexistent\nmqtt_port = 1\n",
             database);
    fclose (file);
    proto_config_t *config = proto_config_new (path);
    unlink (path);
    assert (config);

    s_fake_t fake;
    memset (&fake, 0, sizeof fake);
    fake.pub = zsock_new_pub ("tcp://127.0.0.1:6160");
    assert (fake.pub);
    mqtt_service_t *self = mqtt_service_new (config, 0, verbose);
    assert (self);
    fake.pulls[0] = zsock_new_pull (">tcp://127.0.0.1:6150");
    fake.pulls[1] = zsock_new_pull (">tcp://127.0.0.1:6151");
    assert (fake.pulls[0] && fake.pulls[1]);
    pthread_t thread;
    pthread_create (&thread, NULL, s_fake_thread, &fake);
    WAIT_FOR (gateway_pipeline_peers (self->pipeline, 0) == 1 &&
              gateway_pipeline_peers (self->pipeline, 1) == 1 &&
              gateway_pipeline_store_connected (self->pipeline));
    zclock_sleep (100); //  the SUB's subscription reaches the PUB

    //  A user in Berlin with a plug.
    PGconn *conn = PQconnectdb (database);
    assert (PQstatus (conn) == CONNECTION_OK);
    char email[64], name[16], sql[512];
    snprintf (email, sizeof email, "mqttsvc-%d-%" PRId64 "@example.com", getpid (), zclock_time ());
    snprintf (name, sizeof name, "pw-s%09x", (unsigned)(zclock_usecs () ^ getpid ()) & 0xfffffff);
    snprintf (sql, sizeof sql,
              "WITH u AS (INSERT INTO users (email, name, password_hash, time_zone)"
              " VALUES ('%s', 'x', 'x', 'Europe/Berlin') RETURNING id)"
              " INSERT INTO devices (user_id, name, mqtt_name) SELECT id, 'Desk', '%s' FROM u"
              " RETURNING user_id",
              email, name);
    PGresult *result = PQexec (conn, sql);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    int64_t user = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);

    //  Tasmota SENSOR of a two-channel plug, stamped by the broker, with a
    //  Time of a minute ago in Berlin.
    char topic[64], payload[512], local[32];
    time_t minute_ago = (time_t)(zclock_time () / 1000) - 60;
    struct tm tm;
    setenv ("TZ", "Europe/Berlin", 1);
    tzset ();
    localtime_r (&minute_ago, &tm);
    unsetenv ("TZ");
    tzset ();
    strftime (local, sizeof local, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf (topic, sizeof topic, "tele/%s/SENSOR", name);
    snprintf (payload, sizeof payload,
              "{\"Time\":\"%s\",\"ENERGY\":{\"TotalStartTime\":\"2026-01-03T10:11:12\","
              "\"Total\":[1.2,0.4],\"Yesterday\":[0.1,0.0],\"Today\":[0.05,0.0],"
              "\"Power\":[35,2],\"ApparentPower\":[40,3],\"ReactivePower\":[19,1],"
              "\"Factor\":[0.88,0.5],\"Voltage\":230,\"Current\":[0.174,0.013]}}",
              local);
    s_send (self, topic, payload, "1796610300123-7");
    WAIT_FOR (atomic_load (&fake.count) == 2);
    WAIT_FOR (mqtt_service_queued (self) == 0);
    assert (atomic_load (&self->counters->readings_stored) == 2);
    assert (atomic_load (&self->counters->ports_created) == 2);
    proto_reading_t *one = &fake.got[0];
    proto_reading_t *two = &fake.got[1];
    if (strcmp (one->key, two->key) > 0) {
        proto_reading_t *swap = one;
        one = two;
        two = swap;
    }
    assert (streq (one->key, "mqtt-1796610300123-7-1") && one->power == 35);
    assert (streq (two->key, "mqtt-1796610300123-7-2") && two->power == 2);
    assert (one->user == user && one->voltage == 230 && two->current == 0.013);
    assert (one->ts == (int64_t)minute_ago * 1000);
    assert (streq (one->settings.timezone, "Europe/Berlin"));
    assert (!streq (one->port, two->port));
    assert (streq (one->gateway, "mqtt0"));

    //  The same message again (a redelivery): same ports, same ids.
    s_send (self, topic, payload, "1796610300123-7");
    WAIT_FOR (atomic_load (&fake.count) == 4);
    assert (atomic_load (&self->counters->ports_created) == 2);
    assert (streq (fake.got[2].key, one->key) || streq (fake.got[3].key, one->key));

    //  Shelly Gen1 without pw-id: the hash id, counted.
    snprintf (topic, sizeof topic, "shellies/%s/relay/0/power", name);
    s_send (self, topic, "41.93", NULL);
    WAIT_FOR (atomic_load (&fake.count) == 5);
    assert (strncmp (fake.got[4].key, "mqtt-h", 6) == 0 && fake.got[4].power == 41.93);
    assert (atomic_load (&self->counters->fallback_ids) == 1);
    assert (atomic_load (&self->counters->ports_created) == 3);

    //  The store says RETRY once: the same reading is sent again, stored once.
    atomic_store (&fake.retry_next, 1);
    snprintf (topic, sizeof topic, "%s/sensor/power/state", name);
    s_send (self, topic, "5.2", "1796610300123-8");
    WAIT_FOR (atomic_load (&fake.count) == 7);
    WAIT_FOR (mqtt_service_queued (self) == 0);
    assert (streq (fake.got[5].key, "mqtt-1796610300123-8-power"));
    assert (streq (fake.got[6].key, fake.got[5].key));
    assert (atomic_load (&self->counters->retries) == 1);
    assert (atomic_load (&self->counters->readings_stored) == 6);

    //  Broken and unknown: counted, nothing sent.
    s_send (self, topic, "nan", "1-1");
    snprintf (topic, sizeof topic, "tele/%s/SENSOR", name);
    s_send (self, topic, "{\"ENERGY\":{\"Power\":", "1-2");
    s_send (self, "tele/pw-nosuchplug/SENSOR", "{\"ENERGY\":{\"Power\":5}}", "1-3");
    s_send (self, "weird/topic/that/is/long", "1", "1-4");
    snprintf (topic, sizeof topic, "tele/%s/LWT", name);
    s_send (self, topic, "Online", "1-5");
    WAIT_FOR (atomic_load (&self->counters->devices_online) == 1);
    s_send (self, topic, "Offline", "1-6");
    WAIT_FOR (atomic_load (&self->counters->devices_online) == 0);
    WAIT_FOR (atomic_load (&self->counters->ports_told_offline) == 4); //  its 4 channels' ports
    zclock_sleep (100);
    assert (atomic_load (&fake.count) == 7);
    assert (atomic_load (&self->counters->rejected[MQTT_REJECT_BAD_VALUE]) == 1);
    assert (atomic_load (&self->counters->rejected[MQTT_REJECT_MALFORMED]) == 1);
    assert (atomic_load (&self->counters->rejected[MQTT_REJECT_UNKNOWN_DEVICE]) == 1);
    assert (atomic_load (&self->counters->rejected[MQTT_REJECT_UNKNOWN_TOPIC]) == 1);
    assert (atomic_load (&self->counters->messages) == 10);

    zchunk_t *text = mqtt_metrics_text (self->metrics);
    zchunk_extend (text, "", 1);
    assert (strstr ((char *)zchunk_data (text), "\nphantom_mqtt_readings_stored_total 6\n"));
    assert (strstr ((char *)zchunk_data (text), "\nphantom_mqtt_ports_created_total 4\n"));
    assert (
        strstr ((char *)zchunk_data (text), "phantom_mqtt_partition_peers{partition=\"1\"} 1\n"));
    assert (strstr ((char *)zchunk_data (text), "\nphantom_mqtt_store_connected 1\n"));
    if (verbose)
        printf ("\n%s", (char *)zchunk_data (text));
    zchunk_destroy (&text);

    //  A burst on two ports in one batch (queued while the fake holds
    //  the ack of the message before it), its first reading answered
    //  RETRY: it goes again with every later reading of its port (stored
    //  once each), so the last time the detector sees each reading of a
    //  port, they are in published order.
    unsigned long stored_before = atomic_load (&self->counters->readings_stored);
    atomic_store (&fake.hold, true);
    snprintf (topic, sizeof topic, "%s/sensor/power/state", name);
    s_send (self, topic, "7", "1796610300124-x");
    zclock_sleep (50); //  the submit thread has it and waits for its ack
    int before = atomic_load (&fake.count) + 1;
    snprintf (fake.retry_key, sizeof fake.retry_key, "mqtt-1796610300124-0-power2");
    char ids[64];
    for (int index = 0; index < 100; index++) {
        snprintf (topic, sizeof topic, "%s/sensor/power%s/state", name, index % 2 ? "" : "2");
        snprintf (payload, sizeof payload, "%d", index);
        snprintf (ids, sizeof ids, "1796610300124-%d", index);
        s_send (self, topic, payload, ids);
    }
    assert (mqtt_service_queued (self) == 101);
    atomic_store (&fake.hold, false);
    WAIT_FOR (mqtt_service_queued (self) == 0);
    assert (atomic_load (&self->counters->readings_stored) == stored_before + 101);
    int after = atomic_load (&fake.count);
    assert (after > before + 100 && after <= 512); //  the RETRY made some go twice
    for (int port = 0; port < 2; port++) {
        //  Walk back: each reading's last appearance precedes the next one's.
        int expect = port ? 99 : 98;
        for (int index = after - 1; index >= before && expect >= 0; index--) {
            int value = (int)fake.got[index].power;
            if (value % 2 != (port ? 1 : 0) || value > expect)
                continue; //  another port, or an earlier copy of a later one
            assert (value == expect);
            expect -= 2;
        }
        assert (expect < 0);
    }
    assert (atomic_load (&self->counters->retries) == 2);

    //  The broker's receive time (pw-t) is the time of a reading without
    //  its own; one from the future is not.
    int64_t broker_ms = zclock_time () - 5000;
    snprintf (topic, sizeof topic, "%s/sensor/power/state", name);
    mqtt_service_message_at (self, topic, "3.5", 3, "1796610300125-1", broker_ms);
    WAIT_FOR (atomic_load (&fake.count) == after + 1);
    assert (fake.got[after].ts == broker_ms && fake.got[after].power == 3.5);
    mqtt_service_message_at (self, topic, "3.6", 3, "1796610300125-2", zclock_time () + 60000);
    WAIT_FOR (atomic_load (&fake.count) == after + 2);
    assert (fake.got[after + 1].ts <= zclock_time () && fake.got[after + 1].ts > broker_ms);

    //  A will waits for the readings before it: while the store has not
    //  answered the plug's last reading, the plug is not yet online.
    WAIT_FOR (mqtt_service_queued (self) == 0);
    stored_before = atomic_load (&self->counters->readings_stored);
    atomic_store (&fake.hold, true);
    s_send (self, topic, "3.7", "1796610300125-3");
    snprintf (topic, sizeof topic, "tele/%s/LWT", name);
    s_send (self, topic, "Online", "1796610300125-4");
    zclock_sleep (100);
    assert (atomic_load (&self->counters->devices_online) == 0);
    assert (mqtt_service_queued (self) == 2);
    atomic_store (&fake.hold, false);
    WAIT_FOR (atomic_load (&self->counters->devices_online) == 1);
    assert (atomic_load (&self->counters->readings_stored) == stored_before + 1);

    snprintf (sql, sizeof sql, "DELETE FROM users WHERE id = %" PRId64, user);
    PQclear (PQexec (conn, sql));
    PQfinish (conn);
    atomic_store (&fake.stop, true);
    pthread_join (thread, NULL);
    mqtt_service_destroy (&self);
    mqtt_service_destroy (&self);
    zsock_destroy (&fake.pulls[0]);
    zsock_destroy (&fake.pulls[1]);
    zsock_destroy (&fake.pub);
    proto_config_destroy (&config);
    printf ("OK\n");
}
