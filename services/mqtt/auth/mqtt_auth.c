/*  =========================================================================
    mqtt_auth - PhantomWatch's mosquitto plugin: plugs log in with their
    device token, the broker keeps no copy of it

    Plugin API v5 (mosquitto 2.0, mosquitto_broker.h / mosquitto_plugin.h):
    - MOSQ_EVT_BASIC_AUTH: user = a device's mqtt_name, password = its
      device token, checked against the token hashes the gateway checks
      (mqtt_auth_table); user phantom-mqtt against the SHA-256 of the
      service's secret (plugin_opt_service_sha256). Nobody else.
    - MOSQ_EVT_ACL_CHECK: mqtt_auth_acl.
    - MOSQ_EVT_MESSAGE: stamps each PUBLISH of a plug with the MQTT v5 user
      property pw-id = "<broker start, ms>-<counter>" before the broker
      stores it, so a redelivery carries the same id, and pw-t = its receive
      time (ms); a plug that sends a pw-id or pw-t of its own is refused (it
      could forge another message's id).
    - MOSQ_EVT_TICK: once a second, every plug that logged in is checked
      again against the table and kicked (mosquitto_kick_client_by_username)
      when its token no longer holds: a revocation, a rotation past its
      grace or an expiry ends its session within a second of the table
      hearing of it.
    A thread of ours keeps the table: it LISTENs on phantom_cache (the
    devices_cache trigger, migrations 001/005, that the gateway's cache
    hears too), loads every device once listening, then re-reads a device
    per "device:<id>" NOTIFY; when PostgreSQL goes away it reconnects each
    second and reloads. CONNECT only takes a mutex and a hash lookup, never
    waits on PostgreSQL. Every wait of the thread is bounded (proto_pg's
    timeouts, select of 1 s).
    Options (mosquitto.conf, plugin_opt_<name>):
      database        libpq connection string (required)
      service_sha256  hex SHA-256 of phantom-mqtt's secret (none: no service)
      service_user    the service's user name (phantom-mqtt)
    =========================================================================
*/
#include "mqtt_auth_acl.h"
#include "mqtt_auth_table.h"
#include "proto_pg.h"

#include <czmq.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>

#define S_APPLICATION "phantom-mqtt-auth"
#define S_TOKEN_CHARS 43 //  gateway_api_token: 32 random bytes, base64url
#define S_RECHECK_MS 1000

typedef struct {
    mosquitto_plugin_id_t *id; //  ours, for (un)registering callbacks
    char *conninfo;            //  plugin_opt_database
    char *service_user;        //  plugin_opt_service_user
    bool has_service;          //  a service hash was given
    uint8_t service_hash[32];  //  SHA-256 of the service's secret
    pthread_mutex_t lock;      //  guards table
    mqtt_auth_table_t *table;  //  devices' names and token hashes
    pthread_t thread;          //  the listener
    bool thread_started;       //  thread must be joined
    atomic_bool stop;          //  asks the listener to end
    atomic_bool loaded;        //  the first full load is done
    zhashx_t *sessions;        //  name -> SHA-256 it logged in with (broker thread only)
    int64_t next_recheck;      //  monotonic ms of the next session sweep
    int64_t start_ms;          //  broker start, the first half of pw-id
    uint64_t counter;          //  the second half
} s_plugin_t;

static int64_t
s_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  --------------------------------------------------------------------------
//  The table's keeper.

#define S_DEVICE_COLUMNS                                                                           \
    "SELECT id, mqtt_name, encode(token_hash, 'hex'), "                                            \
    "COALESCE((extract(epoch FROM token_expires_at) * 1000)::bigint, -1), "                        \
    "encode(previous_token_hash, 'hex'), "                                                         \
    "COALESCE((extract(epoch FROM previous_token_expires_at) * 1000)::bigint, -1) FROM devices "

static bool
s_unhex (const char *text, uint8_t hash[32])
{
    size_t length = 0;
    return text && strlen (text) == 64 &&
           sodium_hex2bin (hash, 32, text, 64, NULL, &length, NULL) == 0 && length == 32;
}

//  false if the row gives no usable token (then the device is not kept).
static bool
s_device_from_row (PGresult *result, int row, mqtt_auth_device_t *device)
{
    memset (device, 0, sizeof *device);
    device->id = atoll (PQgetvalue (result, row, 0));
    snprintf (device->name, sizeof device->name, "%s", PQgetvalue (result, row, 1));
    if (!PQgetisnull (result, row, 2) && s_unhex (PQgetvalue (result, row, 2), device->current)) {
        int64_t expires = atoll (PQgetvalue (result, row, 3));
        device->has_current = true;
        device->current_expires = expires < 0 ? INT64_MAX : expires;
    }
    //  As the gateway: a previous token without an expiry has no grace.
    if (!PQgetisnull (result, row, 4) && s_unhex (PQgetvalue (result, row, 4), device->previous)) {
        int64_t expires = atoll (PQgetvalue (result, row, 5));
        device->has_previous = expires > 0;
        device->previous_expires = expires;
    }
    return (device->has_current || device->has_previous) && mqtt_auth_acl_name_valid (device->name);
}

static int
s_load_all (s_plugin_t *self, PGconn *conn)
{
    PGresult *result = proto_pg_exec (
        conn, S_APPLICATION, "load devices",
        S_DEVICE_COLUMNS "WHERE token_hash IS NOT NULL OR previous_token_hash IS NOT NULL", 0,
        NULL);
    if (!result)
        return -1;
    int rows = PQntuples (result);
    size_t kept = 0;
    pthread_mutex_lock (&self->lock);
    mqtt_auth_table_purge (self->table);
    for (int row = 0; row < rows; row++) {
        mqtt_auth_device_t device;
        if (s_device_from_row (result, row, &device)) {
            mqtt_auth_table_put (self->table, &device);
            kept++;
        }
    }
    pthread_mutex_unlock (&self->lock);
    PQclear (result);
    atomic_store (&self->loaded, true);
    mosquitto_log_printf (MOSQ_LOG_INFO, "phantom-auth: loaded %zu devices with tokens", kept);
    return 0;
}

static void
s_refresh_device (s_plugin_t *self, PGconn *conn, int64_t id)
{
    char text[24];
    snprintf (text, sizeof text, "%" PRId64, id);
    const char *parameters[] = {text};
    PGresult *result = proto_pg_exec (conn, S_APPLICATION, "refresh device",
                                      S_DEVICE_COLUMNS "WHERE id = $1", 1, parameters);
    if (!result)
        return; //  the connection check after this reloads everything
    mqtt_auth_device_t device;
    bool keep = PQntuples (result) == 1 && s_device_from_row (result, 0, &device);
    pthread_mutex_lock (&self->lock);
    if (keep)
        mqtt_auth_table_put (self->table, &device);
    else
        mqtt_auth_table_remove (self->table, id);
    pthread_mutex_unlock (&self->lock);
    PQclear (result);
}

//  LISTEN first, then load: a change committed during the load is then
//  notified after it, never lost between the two. NULL if PostgreSQL does
//  not answer.
static PGconn *
s_connect_load (s_plugin_t *self)
{
    PGconn *conn = proto_pg_connect (self->conninfo, S_APPLICATION, 10000);
    if (!conn)
        return NULL;
    PGresult *result =
        proto_pg_exec (conn, S_APPLICATION, "listen", "LISTEN phantom_cache", 0, NULL);
    if (!result || s_load_all (self, conn) != 0) {
        PQclear (result);
        PQfinish (conn);
        return NULL;
    }
    PQclear (result);
    return conn;
}

static void *
s_listener (void *args)
{
    s_plugin_t *self = (s_plugin_t *)args;
    PGconn *conn = NULL;
    while (!atomic_load (&self->stop)) {
        if (!conn) {
            conn = s_connect_load (self);
            //  Retry each second, watching the stop flag meanwhile.
            for (int wait = 0; !conn && wait < 10 && !atomic_load (&self->stop); wait++)
                zclock_sleep (100);
            continue;
        }
        int fd = PQsocket (conn);
        fd_set readable;
        FD_ZERO (&readable);
        FD_SET (fd, &readable);
        struct timeval timeout = {1, 0}; //  so stop is seen
        int rc = select (fd + 1, &readable, NULL, NULL, &timeout);
        if (rc > 0 && !PQconsumeInput (conn)) {
            mosquitto_log_printf (MOSQ_LOG_WARNING, "phantom-auth: lost PostgreSQL: %s",
                                  proto_pg_error (conn, NULL));
            PQfinish (conn);
            conn = NULL;
            continue;
        }
        PGnotify *notify;
        while ((notify = PQnotifies (conn))) {
            if (strncmp (notify->extra, "device:", 7) == 0)
                s_refresh_device (self, conn, atoll (notify->extra + 7));
            PQfreemem (notify);
        }
        if (PQstatus (conn) != CONNECTION_OK) {
            PQfinish (conn);
            conn = NULL;
        }
    }
    if (conn)
        PQfinish (conn);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Callbacks, all on the broker's thread.

static bool
s_is_service (s_plugin_t *self, const char *user)
{
    return self->has_service && user && strcmp (user, self->service_user) == 0;
}

static int
s_on_basic_auth (int event, void *event_data, void *userdata)
{
    (void)event;
    s_plugin_t *self = (s_plugin_t *)userdata;
    struct mosquitto_evt_basic_auth *auth = (struct mosquitto_evt_basic_auth *)event_data;
    const char *user = auth->username, *password = auth->password;
    if (!user || !password)
        return MOSQ_ERR_AUTH; //  anonymous
    uint8_t hash[32];
    crypto_hash_sha256 (hash, (const uint8_t *)password, strlen (password));
    if (s_is_service (self, user))
        return sodium_memcmp (hash, self->service_hash, 32) == 0 ? MOSQ_ERR_SUCCESS : MOSQ_ERR_AUTH;
    bool ok = false;
    if (strlen (password) == S_TOKEN_CHARS && mqtt_auth_acl_name_valid (user)) {
        pthread_mutex_lock (&self->lock);
        ok = mqtt_auth_table_check (self->table, user, hash, s_now_ms ());
        pthread_mutex_unlock (&self->lock);
    }
    if (!ok) {
        mosquitto_log_printf (MOSQ_LOG_NOTICE, "phantom-auth: %s refused (%s)", user,
                              mosquitto_client_address (auth->client));
        return MOSQ_ERR_AUTH;
    }
    //  Remembered for the sweep (the hash, never the token).
    uint8_t *copy = (uint8_t *)malloc (32);
    assert (copy);
    memcpy (copy, hash, 32);
    zhashx_update (self->sessions, user, copy);
    return MOSQ_ERR_SUCCESS;
}

static int
s_on_acl_check (int event, void *event_data, void *userdata)
{
    (void)event;
    s_plugin_t *self = (s_plugin_t *)userdata;
    struct mosquitto_evt_acl_check *check = (struct mosquitto_evt_acl_check *)event_data;
    const char *user = mosquitto_client_username (check->client);
    bool allowed = s_is_service (self, user)
                       ? mqtt_auth_acl_service (check->topic, check->access)
                       : mqtt_auth_acl_device (user, check->topic, check->access);
    if (!allowed && check->access != MOSQ_ACL_READ)
        mosquitto_log_printf (MOSQ_LOG_NOTICE, "phantom-auth: %s denied %s on '%s'",
                              user ? user : "(anonymous)",
                              check->access == MOSQ_ACL_WRITE ? "publish" : "subscribe",
                              check->topic ? check->topic : "");
    return allowed ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ACL_DENIED;
}

static int
s_on_message (int event, void *event_data, void *userdata)
{
    (void)event;
    s_plugin_t *self = (s_plugin_t *)userdata;
    struct mosquitto_evt_message *message = (struct mosquitto_evt_message *)event_data;
    const char *user = mosquitto_client_username (message->client);
    if (s_is_service (self, user))
        return MOSQ_ERR_SUCCESS;
    char *name = NULL, *value = NULL;
    const mosquitto_property *found = mosquitto_property_read_string_pair (
        message->properties, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    bool forged = false;
    while (found) {
        forged = forged || (name && (strcmp (name, "pw-id") == 0 || strcmp (name, "pw-t") == 0));
        free (name);
        free (value);
        name = value = NULL;
        found = mosquitto_property_read_string_pair (found, MQTT_PROP_USER_PROPERTY, &name, &value,
                                                     true);
    }
    if (forged) {
        mosquitto_log_printf (MOSQ_LOG_WARNING, "phantom-auth: %s sent its own pw-id; refused",
                              user ? user : "(anonymous)");
        return MOSQ_ERR_ACL_DENIED;
    }
    char id[48];
    snprintf (id, sizeof id, "%" PRId64 "-%" PRIu64, self->start_ms, ++self->counter);
    //  Appended to the message's own list, which the broker then stores.
    if (mosquitto_property_add_string_pair (&message->properties, MQTT_PROP_USER_PROPERTY, "pw-id",
                                            id) != MOSQ_ERR_SUCCESS)
        return MOSQ_ERR_NOMEM;
    //  pw-t: when the broker took it (ms), the reading time of firmware that
    //  sends none, the same whichever service instance handles it.
    snprintf (id, sizeof id, "%" PRId64, s_now_ms ());
    if (mosquitto_property_add_string_pair (&message->properties, MQTT_PROP_USER_PROPERTY, "pw-t",
                                            id) != MOSQ_ERR_SUCCESS)
        return MOSQ_ERR_NOMEM;
    return MOSQ_ERR_SUCCESS;
}

static int
s_on_tick (int event, void *event_data, void *userdata)
{
    (void)event;
    (void)event_data;
    s_plugin_t *self = (s_plugin_t *)userdata;
    int64_t mono = zclock_mono ();
    if (mono < self->next_recheck)
        return MOSQ_ERR_SUCCESS;
    self->next_recheck = mono + S_RECHECK_MS;
    int64_t now = s_now_ms ();
    zlistx_t *gone = zlistx_new ();
    assert (gone);
    pthread_mutex_lock (&self->lock);
    for (uint8_t *hash = (uint8_t *)zhashx_first (self->sessions); hash;
         hash = (uint8_t *)zhashx_next (self->sessions)) {
        const char *name = (const char *)zhashx_cursor (self->sessions);
        if (!mqtt_auth_table_check (self->table, name, hash, now))
            zlistx_add_end (gone, (void *)name);
    }
    pthread_mutex_unlock (&self->lock);
    for (const char *name = (const char *)zlistx_first (gone); name;
         name = (const char *)zlistx_next (gone)) {
        mosquitto_log_printf (MOSQ_LOG_NOTICE,
                              "phantom-auth: %s's token no longer holds; disconnecting it", name);
        //  Without its will: the plug did not go offline, its token went.
        mosquitto_kick_client_by_username (name, false);
        char *key = strdup (name);
        zhashx_delete (self->sessions, key);
        free (key);
    }
    zlistx_destroy (&gone);
    return MOSQ_ERR_SUCCESS;
}

//  --------------------------------------------------------------------------
//  Plugin entry points.

static void
s_plugin_destroy (s_plugin_t **self_p)
{
    s_plugin_t *self = *self_p;
    if (!self)
        return;
    if (self->thread_started) {
        atomic_store (&self->stop, true);
        pthread_join (self->thread, NULL);
    }
    mqtt_auth_table_destroy (&self->table);
    zhashx_destroy (&self->sessions);
    pthread_mutex_destroy (&self->lock);
    free (self->conninfo);
    free (self->service_user);
    free (self);
    *self_p = NULL;
}

static void
s_free_item (void **item)
{
    free (*item);
    *item = NULL;
}

int
mosquitto_plugin_version (int supported_version_count, const int *supported_versions)
{
    for (int index = 0; index < supported_version_count; index++)
        if (supported_versions[index] == 5)
            return 5;
    return -1;
}

int
mosquitto_plugin_init (mosquitto_plugin_id_t *identifier, void **userdata,
                       struct mosquitto_opt *options, int option_count)
{
    if (sodium_init () < 0)
        return MOSQ_ERR_UNKNOWN;
    //  czmq's own signal handlers would take SIGINT/SIGTERM from mosquitto.
    zsys_handler_set (NULL);
    s_plugin_t *self = (s_plugin_t *)zmalloc (sizeof (s_plugin_t));
    assert (self);
    self->id = identifier;
    self->service_user = strdup ("phantom-mqtt");
    pthread_mutex_init (&self->lock, NULL);
    self->table = mqtt_auth_table_new ();
    self->sessions = zhashx_new ();
    zhashx_set_destructor (self->sessions, s_free_item);
    self->start_ms = s_now_ms ();
    for (int index = 0; index < option_count; index++) {
        const char *key = options[index].key, *value = options[index].value;
        if (streq (key, "database")) {
            free (self->conninfo);
            self->conninfo = strdup (value);
        } else if (streq (key, "service_user")) {
            free (self->service_user);
            self->service_user = strdup (value);
        } else if (streq (key, "service_sha256")) {
            self->has_service = s_unhex (value, self->service_hash);
            if (!self->has_service) {
                mosquitto_log_printf (MOSQ_LOG_ERR, "phantom-auth: service_sha256 is not 64 hex");
                s_plugin_destroy (&self);
                return MOSQ_ERR_INVAL;
            }
        } else
            mosquitto_log_printf (MOSQ_LOG_WARNING, "phantom-auth: unknown option %s ignored", key);
    }
    if (!self->conninfo) {
        mosquitto_log_printf (MOSQ_LOG_ERR, "phantom-auth: plugin_opt_database is required");
        s_plugin_destroy (&self);
        return MOSQ_ERR_INVAL;
    }
    if (pthread_create (&self->thread, NULL, s_listener, self) != 0) {
        s_plugin_destroy (&self);
        return MOSQ_ERR_UNKNOWN;
    }
    self->thread_started = true;
    //  Plugs connecting before the first load would be refused: wait for
    //  it (at most 5 s; PostgreSQL down: start anyway, load on its return).
    for (int wait = 0; wait < 50 && !atomic_load (&self->loaded); wait++)
        zclock_sleep (100);
    if (!atomic_load (&self->loaded))
        mosquitto_log_printf (MOSQ_LOG_WARNING,
                              "phantom-auth: no devices loaded yet; plugs are refused until then");
    int rc =
        mosquitto_callback_register (identifier, MOSQ_EVT_BASIC_AUTH, s_on_basic_auth, NULL, self);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register (identifier, MOSQ_EVT_ACL_CHECK, s_on_acl_check, NULL,
                                          self);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register (identifier, MOSQ_EVT_MESSAGE, s_on_message, NULL, self);
    if (rc == MOSQ_ERR_SUCCESS)
        rc = mosquitto_callback_register (identifier, MOSQ_EVT_TICK, s_on_tick, NULL, self);
    if (rc != MOSQ_ERR_SUCCESS) {
        s_plugin_destroy (&self);
        return rc;
    }
    *userdata = self;
    mosquitto_log_printf (MOSQ_LOG_INFO, "phantom-auth: ready (service user %s)",
                          self->has_service ? self->service_user : "none");
    return MOSQ_ERR_SUCCESS;
}

int
mosquitto_plugin_cleanup (void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)options;
    (void)option_count;
    s_plugin_t *self = (s_plugin_t *)userdata;
    if (self) {
        mosquitto_callback_unregister (self->id, MOSQ_EVT_BASIC_AUTH, s_on_basic_auth, NULL);
        mosquitto_callback_unregister (self->id, MOSQ_EVT_ACL_CHECK, s_on_acl_check, NULL);
        mosquitto_callback_unregister (self->id, MOSQ_EVT_MESSAGE, s_on_message, NULL);
        mosquitto_callback_unregister (self->id, MOSQ_EVT_TICK, s_on_tick, NULL);
        s_plugin_destroy (&self);
    }
    return MOSQ_ERR_SUCCESS;
}
