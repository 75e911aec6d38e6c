/*  =========================================================================
    mqtt_channels - which port a plug's channel feeds (mqtt_channels table)

    Two MQTT service instances may see a new channel at once (shared
    subscriptions spread one plug's messages over both): creation locks the
    device row (SELECT ... FOR UPDATE), looks again, and only then inserts
    the port and its mapping, so a channel never gets two ports.

    A mapping changed in the dashboard (PUT /api/devices/:id/mqtt-channels/
    :channel) must take effect for the next message, not after the cache's
    minute: the gateway sends NOTIFY phantom_mqtt_channels, payload
    "<mqtt name>\t<channel>" (our cache key), in the statement that
    changes the row. Every lookup first reads that listening connection
    without blocking (one recv when nothing came) and forgets the keys it
    names, so a lookup after the notification arrived reads PostgreSQL.
    While the listener is down (PostgreSQL restarting) the TTL is the bound,
    and on reconnecting the whole cache is dropped: notifications sent
    meanwhile are lost.
    =========================================================================
*/
#include "mqtt_channels.h"
#include "gateway_listener.h"
#include "proto_pg.h"

#include <czmq.h>
#include <inttypes.h>

//  A cached answer is trusted this long (a mapping changed by hand, or a
//  device created for a name that published before, shows after this).
#define CACHE_MS 60000
#define CACHE_MAX 200000
//  A listener that could not connect is tried again after this long, so a
//  PostgreSQL outage does not cost a connect per message.
#define LISTEN_RETRY_MS 5000

typedef struct {
    int result;           //  mqtt_channels_result_t (FOUND or UNKNOWN)
    mqtt_channel_t value; //  when FOUND
    int64_t expires;      //  zclock_mono ms
} s_entry_t;

struct _mqtt_channels_t {
    char *conninfo;       //  libpq string
    PGconn *conn;         //  NULL until connected
    zhashx_t *cache;      //  "name\tchannel" -> s_entry_t
    PGconn *listen;       //  LISTENs on MQTT_CHANNELS_NOTIFY; NULL until first lookup
    int64_t listen_retry; //  zclock_mono ms: no connect before
    size_t forgotten;     //  keys dropped by notification (tests)
};

static const char *s_app = "phantom-mqtt";

mqtt_channels_t *
mqtt_channels_new (const char *conninfo)
{
    assert (conninfo);
    mqtt_channels_t *self = (mqtt_channels_t *)zmalloc (sizeof (mqtt_channels_t));
    assert (self);
    self->conninfo = strdup (conninfo);
    self->cache = zhashx_new ();
    assert (self->conninfo && self->cache);
    zhashx_set_destructor (self->cache, (zhashx_destructor_fn *)zstr_free);
    return self;
}

void
mqtt_channels_destroy (mqtt_channels_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mqtt_channels_t *self = *self_p;
        if (self->conn)
            PQfinish (self->conn);
        if (self->listen)
            PQfinish (self->listen);
        zhashx_destroy (&self->cache);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

static void
s_key (char *key, size_t size, const char *name, const char *channel)
{
    snprintf (key, size, "%s\t%s", name, channel);
}

static void
s_remember (mqtt_channels_t *self, const char *key, int result, const mqtt_channel_t *value)
{
    if (zhashx_size (self->cache) >= CACHE_MAX)
        zhashx_purge (self->cache);
    s_entry_t *entry = (s_entry_t *)zmalloc (sizeof (s_entry_t));
    assert (entry);
    entry->result = result;
    if (value)
        entry->value = *value;
    entry->expires = zclock_mono () + CACHE_MS;
    zhashx_update (self->cache, key, entry);
}

void
mqtt_channels_forget (mqtt_channels_t *self, const char *name, const char *channel)
{
    char key[128];
    s_key (key, sizeof key, name, channel);
    zhashx_delete (self->cache, key);
}

static void
s_notified (void *arg, PGconn *conn, const char *payload)
{
    mqtt_channels_t *self = (mqtt_channels_t *)arg;
    (void)conn;
    if (zhashx_lookup (self->cache, payload)) {
        zhashx_delete (self->cache, payload);
        self->forgotten++;
    }
}

//  Applies what the dashboard changed since the last call; connects the
//  listener when it is down (bounded by proto_pg's connect timeout, and at
//  most every LISTEN_RETRY_MS).
static void
s_listen (mqtt_channels_t *self)
{
    if (!self->listen) {
        int64_t now = zclock_mono ();
        if (now < self->listen_retry)
            return;
        self->listen_retry = now + LISTEN_RETRY_MS;
        self->listen = gateway_listener_connect (self->conninfo, s_app, 0, MQTT_CHANNELS_NOTIFY,
                                                 "mqtt channels");
        if (!self->listen)
            return;
        //  What was sent while nobody listened is gone: forget everything.
        zhashx_purge (self->cache);
    }
    gateway_listener_read (&self->listen, s_notified, self, "mqtt channels");
}

//  The device and, if mapped, the port. FOUND, UNKNOWN (no such device),
//  CREATED meaning "device found, channel not mapped", or ERROR.
static mqtt_channels_result_t
s_select (mqtt_channels_t *self, const char *name, const char *channel, mqtt_channel_t *out,
          bool lock)
{
    const char *values[2] = {name, channel};
    PGresult *result = proto_pg_exec (
        self->conn, "mqtt channels", "lookup",
        lock ? "SELECT d.id, d.user_id, c.port_id::text FROM devices d LEFT JOIN mqtt_channels c"
               " ON c.device_id = d.id AND c.channel = $2 WHERE d.mqtt_name = $1 FOR UPDATE OF d"
             : "SELECT d.id, d.user_id, c.port_id::text FROM devices d LEFT JOIN mqtt_channels c"
               " ON c.device_id = d.id AND c.channel = $2 WHERE d.mqtt_name = $1",
        2, values);
    if (!result)
        return MQTT_CHANNELS_ERROR;
    mqtt_channels_result_t answer = MQTT_CHANNELS_UNKNOWN;
    if (PQntuples (result) == 1) {
        out->device = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        out->user = strtoll (PQgetvalue (result, 0, 1), NULL, 10);
        if (PQgetisnull (result, 0, 2))
            answer = MQTT_CHANNELS_CREATED;
        else {
            snprintf (out->port, sizeof out->port, "%s", PQgetvalue (result, 0, 2));
            answer = MQTT_CHANNELS_FOUND;
        }
    }
    PQclear (result);
    return answer;
}

static bool
s_command (mqtt_channels_t *self, const char *sql)
{
    PGresult *result = proto_pg_exec (self->conn, "mqtt channels", sql, sql, 0, NULL);
    if (result)
        PQclear (result);
    return result != NULL;
}

//  Locks the device, looks again, creates port and mapping.
static mqtt_channels_result_t
s_create (mqtt_channels_t *self, const char *name, const char *channel, mqtt_channel_t *out)
{
    if (!s_command (self, "BEGIN"))
        return MQTT_CHANNELS_ERROR;
    mqtt_channels_result_t answer = s_select (self, name, channel, out, true);
    if (answer == MQTT_CHANNELS_CREATED) {
        char device[24];
        snprintf (device, sizeof device, "%" PRId64, out->device);
        const char *values[2] = {device, channel};
        PGresult *result = proto_pg_exec (
            self->conn, "mqtt channels", "create",
            "WITH port AS (INSERT INTO ports (user_id, device_id, name)"
            " SELECT user_id, id, left (name || ' ' || $2, 100) FROM devices WHERE id = $1"
            " RETURNING id)"
            " INSERT INTO mqtt_channels (device_id, channel, port_id, is_new)"
            " SELECT $1, $2, id, true FROM port RETURNING port_id::text",
            2, values);
        if (result && PQntuples (result) == 1)
            snprintf (out->port, sizeof out->port, "%s", PQgetvalue (result, 0, 0));
        else
            answer = MQTT_CHANNELS_ERROR;
        if (result)
            PQclear (result);
    }
    if (answer == MQTT_CHANNELS_ERROR)
        s_command (self, "ROLLBACK");
    else if (!s_command (self, "COMMIT"))
        answer = MQTT_CHANNELS_ERROR;
    return answer;
}

mqtt_channels_result_t
mqtt_channels_lookup (mqtt_channels_t *self, const char *name, const char *channel,
                      mqtt_channel_t *out)
{
    assert (self && name && channel && out);
    memset (out, 0, sizeof *out);
    s_listen (self);
    char key[128];
    s_key (key, sizeof key, name, channel);
    s_entry_t *entry = (s_entry_t *)zhashx_lookup (self->cache, key);
    if (entry && entry->expires > zclock_mono ()) {
        *out = entry->value;
        return (mqtt_channels_result_t)entry->result;
    }
    if (proto_pg_ensure (&self->conn, self->conninfo, s_app, 5000) < 0)
        return MQTT_CHANNELS_ERROR;
    mqtt_channels_result_t answer = s_select (self, name, channel, out, false);
    if (answer == MQTT_CHANNELS_CREATED)
        answer = s_create (self, name, channel, out);
    if (answer == MQTT_CHANNELS_FOUND || answer == MQTT_CHANNELS_UNKNOWN)
        s_remember (self, key, answer, answer == MQTT_CHANNELS_FOUND ? out : NULL);
    else if (answer == MQTT_CHANNELS_CREATED)
        s_remember (self, key, MQTT_CHANNELS_FOUND, out);
    return answer;
}

int
mqtt_channels_ports (mqtt_channels_t *self, const char *name, char (*ports)[PROTO_UUID_LEN + 1],
                     int max)
{
    assert (self && name && ports);
    if (proto_pg_ensure (&self->conn, self->conninfo, s_app, 5000) < 0)
        return -1;
    const char *values[1] = {name};
    PGresult *result = proto_pg_exec (self->conn, "mqtt channels", "ports",
                                      "SELECT c.port_id::text FROM mqtt_channels c JOIN devices d"
                                      " ON d.id = c.device_id WHERE d.mqtt_name = $1"
                                      " ORDER BY c.channel",
                                      1, values);
    if (!result)
        return -1;
    int count = 0;
    for (int row = 0; row < PQntuples (result) && count < max; row++)
        snprintf (ports[count++], PROTO_UUID_LEN + 1, "%s", PQgetvalue (result, row, 0));
    PQclear (result);
    return count;
}

//  --------------------------------------------------------------------------
//  Self test: needs PHANTOM_TEST_DATABASE (a migrated cluster), else 77.

static char *
s_scalar (PGconn *conn, const char *sql, int count, const char *const *values)
{
    PGresult *result = proto_pg_exec (conn, "test", "query", sql, count, values);
    assert (result);
    char *value = PQntuples (result) ? strdup (PQgetvalue (result, 0, 0)) : NULL;
    PQclear (result);
    return value;
}

void
mqtt_channels_test (bool verbose)
{
    printf (" * mqtt_channels: ");
    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    if (!database) {
        printf ("SKIPPED (PHANTOM_TEST_DATABASE unset)\n");
        exit (77);
    }
    PGconn *conn = proto_pg_connect (database, "mqtt_channels_test", 0);
    assert (conn);
    //  A user with a plug of a known name, fresh each run.
    char email[64], name[16];
    snprintf (email, sizeof email, "mqtt-%d-%" PRId64 "@example.com", getpid (), zclock_time ());
    snprintf (name, sizeof name, "pw-t%09x", (unsigned)(zclock_time () ^ getpid ()) & 0xfffffff);
    const char *user_values[1] = {email};
    char *user = s_scalar (
        conn,
        "INSERT INTO users (email, name, password_hash) VALUES ($1, 'MQTT test', 'x') RETURNING id",
        1, user_values);
    assert (user);
    const char *device_values[2] = {user, name};
    char *device = s_scalar (conn,
                             "INSERT INTO devices (user_id, name, mqtt_name)"
                             " VALUES ($1, 'Kitchen plug', $2) RETURNING id",
                             2, device_values);
    assert (device);

    mqtt_channels_t *channels = mqtt_channels_new (database);
    mqtt_channel_t channel, again;
    //  Unknown name: no port, nothing created.
    assert (mqtt_channels_lookup (channels, "pw-nosuch00000", "1", &channel) ==
            MQTT_CHANNELS_UNKNOWN);
    //  First sight: a new port of the owner, named from device and channel.
    assert (mqtt_channels_lookup (channels, name, "switch:0", &channel) == MQTT_CHANNELS_CREATED);
    assert (channel.user == strtoll (user, NULL, 10) &&
            channel.device == strtoll (device, NULL, 10));
    const char *port_values[1] = {channel.port};
    char *port_name = s_scalar (conn, "SELECT name FROM ports WHERE id = $1", 1, port_values);
    assert (port_name && streq (port_name, "Kitchen plug switch:0"));
    char *is_new = s_scalar (conn, "SELECT is_new::text FROM mqtt_channels WHERE port_id = $1", 1,
                             port_values);
    assert (is_new && streq (is_new, "true"));
    //  Second sight: the same port, from the cache and, after forgetting, from PostgreSQL.
    assert (mqtt_channels_lookup (channels, name, "switch:0", &again) == MQTT_CHANNELS_FOUND);
    assert (streq (again.port, channel.port));
    mqtt_channels_forget (channels, name, "switch:0");
    assert (mqtt_channels_lookup (channels, name, "switch:0", &again) == MQTT_CHANNELS_FOUND);
    assert (streq (again.port, channel.port));
    //  A second instance sees the same mapping; never a second port.
    mqtt_channels_t *other = mqtt_channels_new (database);
    assert (mqtt_channels_lookup (other, name, "switch:0", &again) == MQTT_CHANNELS_FOUND);
    assert (streq (again.port, channel.port));
    //  Mapped by hand: the dashboard wrote a row to an existing port first.
    char *manual = s_scalar (conn,
                             "INSERT INTO ports (user_id, device_id, name) VALUES ($1, $2,"
                             " 'Fridge') RETURNING id::text",
                             2, (const char *const[]){user, device});
    assert (manual);
    const char *map_values[2] = {device, manual};
    PGresult *result = proto_pg_exec (conn, "test", "map",
                                      "INSERT INTO mqtt_channels (device_id, channel, port_id,"
                                      " is_new) VALUES ($1, 'switch:1', $2, false)",
                                      2, map_values);
    assert (result);
    PQclear (result);
    assert (mqtt_channels_lookup (other, name, "switch:1", &again) == MQTT_CHANNELS_FOUND);
    assert (streq (again.port, manual));
    char ports[4][PROTO_UUID_LEN + 1];
    assert (mqtt_channels_ports (other, name, ports, 4) == 2);
    assert (streq (ports[0], channel.port) && streq (ports[1], manual));
    char *count = s_scalar (conn, "SELECT count(*) FROM ports WHERE device_id = $1", 1,
                            (const char *const[]){device});
    assert (count && streq (count, "2"));
    //  Moved by hand (as the gateway's PUT does it): without a NOTIFY the
    //  cached port stays (the control), with one the next lookup after it
    //  arrived sees the new port; bounded wait for its delivery.
    char *dryer = s_scalar (conn,
                            "INSERT INTO ports (user_id, device_id, name) VALUES ($1, $2,"
                            " 'Dryer') RETURNING id::text",
                            2, (const char *const[]){user, device});
    assert (dryer);
    const char *move_values[2] = {device, dryer};
    result = proto_pg_exec (conn, "test", "move",
                            "UPDATE mqtt_channels SET port_id = $2, is_new = false"
                            " WHERE device_id = $1 AND channel = 'switch:0'",
                            2, move_values);
    assert (result);
    PQclear (result);
    assert (mqtt_channels_lookup (channels, name, "switch:0", &again) == MQTT_CHANNELS_FOUND);
    assert (streq (again.port, channel.port));
    result = proto_pg_exec (conn, "test", "notify",
                            "SELECT pg_notify ('" MQTT_CHANNELS_NOTIFY "', $1 || E'\\tswitch:0')",
                            1, (const char *const[]){name});
    assert (result);
    PQclear (result);
    int64_t moved_at = zclock_mono ();
    bool moved = false;
    while (!moved && zclock_mono () - moved_at < 2000) {
        assert (mqtt_channels_lookup (channels, name, "switch:0", &again) == MQTT_CHANNELS_FOUND);
        moved = streq (again.port, dryer);
        if (!moved)
            zclock_sleep (5);
    }
    assert (moved && channels->forgotten == 1);
    if (verbose)
        printf ("(port %s, moved in %" PRId64 " ms) ", channel.port, zclock_mono () - moved_at);

    result = proto_pg_exec (conn, "test", "cleanup", "DELETE FROM users WHERE id = $1", 1,
                            user_values[0] ? (const char *const[]){user} : NULL);
    if (result)
        PQclear (result);
    free (count);
    free (dryer);
    free (manual);
    free (is_new);
    free (port_name);
    free (device);
    free (user);
    mqtt_channels_destroy (&other);
    mqtt_channels_destroy (&channels);
    mqtt_channels_destroy (&channels);
    PQfinish (conn);
    printf ("OK\n");
}
