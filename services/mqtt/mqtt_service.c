/*  =========================================================================
    mqtt_service - smart plugs over MQTT into the readings pipeline

    One thread runs the MQTT client loop (mosquitto_loop, 200 ms at a time)
    and handles each message in full before it takes the next: parse, map
    each channel to its port (mqtt_channels, creating it on first sight),
    take the port's detection settings from gateway_cache (kept fresh by
    LISTEN, as in the gateway), PUSH the readings to their partitions and
    wait (bounded, ack_timeout_ms) for the store's acks.

    Order of a port's readings. A plug publishes one channel's readings on
    one topic, in order, over one connection; the broker forwards a QoS 1
    topic's messages in order to one subscriber. With 2+ instances sharing
    $share/phantom/..., mosquitto 2.0 picks the member per message (round
    robin: eclipse/mosquitto v2.0.11 src/subs.c:110-121
    subs__shared_process moves the chosen member to the end of the list), so two readings of one
   port may be handled by two instances and reach the detector in either order. DESIGN.md has the
   reading's own timestamp decide, where the device sends one (Tasmota Time, Shelly NotifyStatus
   ts): the store keeps each reading at its own time whichever instance handled it, and the detector
   counts a reading older than its port's last as out of order and leaves its state alone
   (detector_engine.c, s_answer_stale): the reading is stored, only its effect on detection is lost.
   Plugs that send no time (Shelly Gen1, ESPHome, Shelly status/switch) get the receive time, so
   with 2+ instances their order is the instances'. With one instance (the default) the order is the
    broker's, end to end (one thread, one PUSH per partition).

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

struct _mqtt_service_t {
    struct mosquitto *mosq;                    //  the client
    char client_id[32];                        //  phantom-mqtt-<instance>
    char *host;                                //  broker
    int port;                                  //  broker port (TLS when mqtt_tls_port)
    bool connected;                            //  MQTT session up
    int64_t retry_at;                          //  next connect attempt, zclock_mono
    int backoff_ms;                            //  current backoff
    gateway_cache_t *cache;                    //  port settings, fresh by LISTEN
    mqtt_channels_t *channels;                 //  (plug, channel) -> port
    gateway_pipeline_t *pipeline;              //  readings out, acks back
    mqtt_metrics_t *metrics;                   //  counters and their endpoint
    mqtt_counters_t *counters;                 //  borrowed from metrics
    mqtt_offline_t *offline;                   //  a will takes the plug's ports offline
    zhashx_t *online;                          //  plug names whose last presence said online
    int64_t logged_at[MQTT_REJECT_COUNT];      //  rate limit of rejection logs
    unsigned long unlogged[MQTT_REJECT_COUNT]; //  rejections since the last log
    bool verbose;                              //  log every message
    volatile sig_atomic_t *stop;               //  while running: stop retrying too
};

//  --------------------------------------------------------------------------
//  A rejected message: counted, logged at most once per 10 s per reason.
static void
s_reject (mqtt_service_t *self, mqtt_reject_t reason, const char *topic, size_t size)
{
    atomic_fetch_add (&self->counters->rejected[reason], 1);
    int64_t now = zclock_mono ();
    if (now - self->logged_at[reason] < LOG_EVERY_MS && self->logged_at[reason]) {
        self->unlogged[reason]++;
        return;
    }
    zsys_warning ("mqtt - rejected (%s): topic '%.100s', %zu bytes (%lu more since last said)",
                  mqtt_parse_reason_name (reason), topic, size, self->unlogged[reason]);
    self->logged_at[reason] = now;
    self->unlogged[reason] = 0;
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

//  Submits the readings and, while some are not stored for a reason that
//  passes (no detector on the partition, queue full, no ack in time, the
//  store's RETRY), submits those again, backing off 200 ms .. 2 s, for up
//  to RETRY_MS: a detector or store restarted by supervisord is back well
//  within it. The message was PUBACKed already, so this is the only second
//  chance it gets; the same readingIds make a retry stored once. The MQTT
//  loop waits meanwhile (the broker queues; RETRY_MS stays under the
//  keepalive's 1.5 x 30 s). Returns the readings stored.
static size_t
s_submit (mqtt_service_t *self, proto_reading_t *readings, size_t count, proto_ack_t *acks,
          int *outcomes)
{
    proto_reading_t pending[MQTT_PARSE_CHANNELS_MAX];
    proto_ack_t pending_acks[MQTT_PARSE_CHANNELS_MAX];
    int pending_outcomes[MQTT_PARSE_CHANNELS_MAX];
    memcpy (pending, readings, count * sizeof (proto_reading_t));
    size_t left = count, stored = 0;
    int64_t deadline = zclock_mono () + RETRY_MS;
    int backoff = 200;
    while (true) {
        gateway_pipeline_submit (self->pipeline, pending, left, pending_acks, pending_outcomes);
        size_t again = 0;
        for (size_t index = 0; index < left; index++) {
            bool acked = pending_outcomes[index] == GATEWAY_PIPELINE_ACKED;
            if (acked && pending_acks[index].code == PROTO_ACK_OK)
                stored++;
            else if (!acked || pending_acks[index].code == PROTO_ACK_RETRY)
                pending[again++] = pending[index];
        }
        left = again;
        if (left == 0 || zclock_mono () + backoff > deadline || (self->stop && *self->stop))
            break;
        atomic_fetch_add (&self->counters->retries, 1);
        zclock_sleep (backoff);
        backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
    }
    (void)acks;
    (void)outcomes;
    return stored;
}

void
mqtt_service_message (mqtt_service_t *self, const char *topic, const void *payload, size_t size,
                      const char *pw_id)
{
    assert (self && topic);
    int64_t received = zclock_time ();
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
        s_presence (self, &parsed);
        if (kind == MQTT_PARSE_OFFLINE)
            mqtt_offline_plug (self->offline, parsed.name, received);
        return;
    }
    proto_reading_t readings[MQTT_PARSE_CHANNELS_MAX];
    proto_ack_t acks[MQTT_PARSE_CHANNELS_MAX];
    int outcomes[MQTT_PARSE_CHANNELS_MAX];
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
    size_t stored = s_submit (self, readings, count, acks, outcomes);
    atomic_fetch_add (&self->counters->readings_stored, stored);
    if (stored < count) {
        atomic_fetch_add (&self->counters->readings_failed, count - stored);
        s_reject (self, MQTT_REJECT_PIPELINE, topic, size);
    }
    unsigned long lag = (unsigned long)(zclock_usecs () - started);
    atomic_fetch_add (&self->counters->ack_lag_us_sum, lag);
    atomic_fetch_add (&self->counters->ack_lag_count, 1);
    unsigned long max = atomic_load (&self->counters->ack_lag_us_max);
    while (lag > max && !atomic_compare_exchange_weak (&self->counters->ack_lag_us_max, &max, lag))
        ;
    if (self->verbose)
        zsys_debug ("mqtt - %s: %zu readings, %zu stored", topic, count, stored);
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
    char *name = NULL, *value = NULL;
    const mosquitto_property *prop =
        mosquitto_property_read_string_pair (props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    while (prop) {
        if (name && streq (name, "pw-id") && !pw_id) {
            pw_id = value;
            value = NULL;
        }
        free (name);
        free (value);
        name = value = NULL;
        prop = mosquitto_property_read_string_pair (prop, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                    true);
    }
    mqtt_service_message (self, message->topic, message->payload, (size_t)message->payloadlen,
                          pw_id);
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
    self->offline = mqtt_offline_new (self->channels, self->pipeline, self->counters);
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
        mqtt_offline_destroy (&self->offline);
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
    proto_reading_t got[64];
    atomic_int count;
    atomic_int retry_next; //  answer this many readings PROTO_ACK_RETRY
    atomic_bool stop;
} s_fake_t;

static void *
s_fake_thread (void *args)
{
    s_fake_t *fake = (s_fake_t *)args;
    zpoller_t *poller = zpoller_new (fake->pulls[0], fake->pulls[1], NULL);
    while (!atomic_load (&fake->stop)) {
        zsock_t *which = (zsock_t *)zpoller_wait (poller, 100);
        if (!which)
            continue;
        zframe_t *frame = zframe_recv (which);
        size_t offset = 0;
        proto_reading_t reading;
        size_t used = 0;
        while (frame && offset < zframe_size (frame) &&
               proto_reading_decode_next (zframe_data (frame) + offset,
                                          zframe_size (frame) - offset, &reading, &used) == 0) {
            offset += used;
            int index = atomic_load (&fake->count);
            if (index < 64)
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
    assert (atomic_load (&self->counters->devices_online) == 1);
    s_send (self, topic, "Offline", "1-6");
    assert (atomic_load (&self->counters->devices_online) == 0);
    assert (atomic_load (&self->counters->ports_told_offline) == 4); //  its 4 channels' ports
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
