/*  =========================================================================
    mqtt_offline - a plug's will takes its ports offline for detection

    Which ports: those the plug's channels map to (mqtt_channels), read
    when the will comes, so a channel mapped by hand since is included.
    As of when: the will's receipt on this host, the clock the plug's
    readings get as their received time; the detector leaves a port alone
    whose last reading was received after it (the plug came back and a
    second instance handled its reading first: presence topics are not
    shared, so every instance handles every will, and the detector takes
    the second frame for a port already offline as nothing).

    Not acknowledged: a partition with no detector or a full queue does not
    get the frame (counted, logged); that port then goes offline when its
    detector's timer runs out, as before.
    =========================================================================
*/
#include "mqtt_offline.h"

#include <czmq.h>
#include <inttypes.h>

//  Ports one will may name: a plug has a handful of channels; more than
//  this are mapped by hand to one device, and the rest wait for the timer.
#define PORTS_MAX 256

struct _mqtt_offline_t {
    mqtt_channels_t *channels;    //  borrowed: (plug, channel) -> port
    gateway_pipeline_t *pipeline; //  borrowed: the readings' links
    mqtt_counters_t *counters;    //  borrowed: ports told, unsent
};

mqtt_offline_t *
mqtt_offline_new (mqtt_channels_t *channels, gateway_pipeline_t *pipeline,
                  mqtt_counters_t *counters)
{
    assert (channels && pipeline && counters);
    mqtt_offline_t *self = (mqtt_offline_t *)zmalloc (sizeof (mqtt_offline_t));
    assert (self);
    self->channels = channels;
    self->pipeline = pipeline;
    self->counters = counters;
    return self;
}

void
mqtt_offline_destroy (mqtt_offline_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

int
mqtt_offline_plug (mqtt_offline_t *self, const char *name, int64_t received)
{
    assert (self && name);
    char (*ports)[PROTO_UUID_LEN + 1] = calloc (PORTS_MAX, PROTO_UUID_LEN + 1);
    assert (ports);
    int count = mqtt_channels_ports (self->channels, name, ports, PORTS_MAX);
    if (count < 0) {
        zsys_warning ("mqtt - plug %s offline: its ports could not be read; the detectors' "
                      "timer takes them offline",
                      name);
        free (ports);
        return -1;
    }
    size_t told = gateway_pipeline_offline (self->pipeline, ports, (size_t)count, received);
    free (ports);
    atomic_fetch_add (&self->counters->ports_told_offline, told);
    if (told < (size_t)count) {
        atomic_fetch_add (&self->counters->offline_unsent, (size_t)count - told);
        zsys_warning ("mqtt - plug %s offline: %zu of %d ports not told (no detector on their "
                      "partition, or its queue full); its timer takes them offline",
                      name, (size_t)count - told, count);
    }
    return (int)told;
}

//  --------------------------------------------------------------------------
//  Self test: needs PHANTOM_TEST_DATABASE (a migrated cluster), else 77.

#define TEST_READINGS "tcp://127.0.0.1:6170"
#define TEST_ACKS "tcp://127.0.0.1:6180"

//  The offline frame on pull within 2 s, decoded; false if none.
static bool
s_receive (zsock_t *pull, proto_offline_t *offline)
{
    zpoller_t *poller = zpoller_new (pull, NULL);
    bool got = false;
    if (zpoller_wait (poller, 2000) == pull) {
        zframe_t *frame = zframe_recv (pull);
        got =
            frame && proto_offline_decode (zframe_data (frame), zframe_size (frame), offline) == 0;
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    return got;
}

void
mqtt_offline_test (bool verbose)
{
    printf (" * mqtt_offline: ");
    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    if (!database) {
        printf ("SKIPPED (PHANTOM_TEST_DATABASE unset)\n");
        exit (77);
    }
    PGconn *conn = PQconnectdb (database);
    assert (PQstatus (conn) == CONNECTION_OK);
    char email[64], name[16], sql[512];
    snprintf (email, sizeof email, "mqttoff-%d-%" PRId64 "@example.com", getpid (), zclock_time ());
    snprintf (name, sizeof name, "pw-o%09x", (unsigned)(zclock_usecs () ^ getpid ()) & 0xfffffff);
    snprintf (sql, sizeof sql,
              "WITH u AS (INSERT INTO users (email, name, password_hash) VALUES ('%s', 'x', 'x')"
              " RETURNING id) INSERT INTO devices (user_id, name, mqtt_name)"
              " SELECT id, 'Shelf', '%s' FROM u RETURNING user_id",
              email, name);
    PGresult *result = PQexec (conn, sql);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    int64_t user = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);

    mqtt_metrics_t *metrics = mqtt_metrics_new (0, NULL, NULL);
    mqtt_counters_t *counters = mqtt_metrics_counters (metrics);
    mqtt_channels_t *channels = mqtt_channels_new (database);
    gateway_pipeline_options_t options = {.gateway_id = "mqtt-offline-test",
                                          .reading_endpoint = TEST_READINGS,
                                          .ack_endpoint = TEST_ACKS,
                                          .partitions = 2,
                                          .ack_timeout_ms = 300};
    gateway_pipeline_t *pipeline = gateway_pipeline_new (&options);
    assert (metrics && channels && pipeline);
    mqtt_offline_t *self = mqtt_offline_new (channels, pipeline, counters);

    //  Three channels seen: three ports.
    mqtt_channel_t channel;
    char ports[3][PROTO_UUID_LEN + 1];
    const char *names[] = {"1", "2", "switch:0"};
    for (int index = 0; index < 3; index++) {
        assert (mqtt_channels_lookup (channels, name, names[index], &channel) ==
                MQTT_CHANNELS_CREATED);
        snprintf (ports[index], sizeof ports[index], "%s", channel.port);
    }
    //  No detector yet: nothing told, counted.
    assert (mqtt_offline_plug (self, name, 1704110401000LL) == 0);
    assert (atomic_load (&counters->offline_unsent) == 3);

    zsock_t *pull[2];
    for (int index = 0; index < 2; index++) {
        pull[index] = zsock_new (ZMQ_PULL);
        zsock_set_linger (pull[index], 0);
        assert (zsock_connect (pull[index], "tcp://127.0.0.1:%d", 6170 + index) == 0);
    }
    for (int wait = 0; wait < 300 && (gateway_pipeline_peers (pipeline, 0) < 1 ||
                                      gateway_pipeline_peers (pipeline, 1) < 1);
         wait++)
        zclock_sleep (10);
    assert (mqtt_offline_plug (self, name, 1704110402000LL) == 3);
    assert (atomic_load (&counters->ports_told_offline) == 3);
    //  Each port exactly once, to its own partition, as of the will.
    int seen[3] = {0};
    for (int partition = 0; partition < 2; partition++) {
        bool has = false;
        for (int index = 0; index < 3; index++)
            has |= proto_partition (ports[index], 2) == (uint32_t)partition;
        if (!has)
            continue;
        proto_offline_t offline;
        assert (s_receive (pull[partition], &offline));
        assert (offline.ts == 1704110402000LL);
        for (uint32_t item = 0; item < offline.count; item++) {
            assert (proto_partition (offline.ports[item], 2) == (uint32_t)partition);
            for (int index = 0; index < 3; index++)
                seen[index] += streq (offline.ports[item], ports[index]);
        }
    }
    assert (seen[0] == 1 && seen[1] == 1 && seen[2] == 1);
    //  A plug nobody has: no ports, nothing sent.
    assert (mqtt_offline_plug (self, "pw-nosuchplug0", 1704110403000LL) == 0);
    assert (atomic_load (&counters->offline_unsent) == 3);
    if (verbose)
        printf ("ports %s %s %s\n", ports[0], ports[1], ports[2]);

    snprintf (sql, sizeof sql, "DELETE FROM users WHERE id = %" PRId64, user);
    PQclear (PQexec (conn, sql));
    PQfinish (conn);
    mqtt_offline_destroy (&self);
    mqtt_offline_destroy (&self);
    zsock_destroy (&pull[0]);
    zsock_destroy (&pull[1]);
    gateway_pipeline_destroy (&pipeline);
    mqtt_channels_destroy (&channels);
    mqtt_metrics_destroy (&metrics);
    printf ("OK\n");
}
