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
    - With a spool (plugin_opt_spool, mqtt_auth_spool): each plug message
      is also appended to a local SQLite file before this event returns,
      so before the broker PUBACKs it (mosquitto v2.0.11
      src/handle_publish.c:271-284 calls the plugin, :328-335 PUBACKs
      after); if the append fails the event fails, the broker drops the
      plug's connection unacknowledged and the plug sends it again. A
      keeper thread confirms each entry against PostgreSQL's reading_keys
      after spool_delay seconds and, for an entry whose readings are not
      stored, hands it back to the broker thread, which publishes it again
      with the same pw-id (mosquitto_broker_publish_copy) on the tick.
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
      spool           the spool's path ("off" or none: no spool)
      spool_delay     seconds before an entry is first confirmed (30)
      spool_tries     confirmations that find it unstored before it is
                      dropped and counted (5)
    =========================================================================
*/
#include "mqtt_auth_acl.h"
#include "mqtt_auth_spool.h"
#include "mqtt_auth_table.h"
#include "mqtt_parse.h"
#include "mqtt_reading.h"
#include "proto.h"
#include "proto_device_token.h"
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
//  A plug that reconnects sends again what it had no PUBACK for, at once
//  (Tasmota and Shelly: on their next connect): a message in its first
//  S_YOUNG_MS after a connect that equals one it sent in the
//  S_WINDOW_MS before is that, and gets that one's pw-id - when it carries
//  the device's time (Tasmota Time, Shelly NotifyStatus ts), so equal means
//  the same reading. Without one (ESPHome, Shelly Gen1, status/switch) an
//  idle plug's "0.0" repeats for real: each copy stays a reading (at worst
//  a resend is stored twice with the same watts; dropping a real reading
//  would lose it: the 10,000-plug benchmark lost 16-21 % that way).
#define S_YOUNG_MS 30000
#define S_WINDOW_MS 120000
//  The keeper: entries per pass, passes each second; what the broker thread
//  republishes per tick; how many may wait for it.
#define S_KEEPER_BATCH 500
#define S_REPUBLISH_PER_TICK 200
//  ... and per second: the broker loop ticks many times a second when
//  busy, and a copy goes to the service's queue beside new messages.
#define S_REPUBLISH_PER_SECOND 1000
#define S_REPUBLISH_QUEUE_MAX 5000

typedef struct {
    mosquitto_plugin_id_t *id;      //  ours, for (un)registering callbacks
    char *conninfo;                 //  plugin_opt_database
    char *service_user;             //  plugin_opt_service_user
    bool has_service;               //  a service hash was given
    uint8_t service_hash[32];       //  SHA-256 of the service's secret
    pthread_mutex_t lock;           //  guards table
    mqtt_auth_table_t *table;       //  devices' names and token hashes
    pthread_t thread;               //  the listener
    bool thread_started;            //  thread must be joined
    atomic_bool stop;               //  asks the listener to end
    atomic_bool loaded;             //  the first full load is done
    zhashx_t *sessions;             //  name -> SHA-256 it logged in with (broker thread only)
    int64_t next_recheck;           //  monotonic ms of the next session sweep
    int64_t start_ms;               //  broker start, the first half of pw-id
    uint64_t counter;               //  the second half
    int64_t republish_second;       //  monotonic second of republish_count
    int republish_count;            //  copies published in that second
    char *spool_path;               //  plugin_opt_spool, NULL = no spool
    int64_t spool_delay_ms;         //  plugin_opt_spool_delay
    int spool_tries;                //  plugin_opt_spool_tries
    mqtt_auth_spool_t *spool;       //  the broker thread's connection
    zhashx_t *connected;            //  name -> int64_t ms of its last CONNECT (broker thread only)
    pthread_t keeper;               //  confirms and hands back entries
    bool keeper_started;            //  keeper must be joined
    pthread_mutex_t republish_lock; //  guards republish
    zlistx_t *republish;            //  mqtt_auth_spool_entry_t for the broker thread to publish
    //  Counters (logged by the keeper each 10 s when they moved).
    atomic_uint_fast64_t spooled;      //  appended
    atomic_uint_fast64_t repeats;      //  a plug's republish, given the first copy's pw-id
    atomic_uint_fast64_t spool_failed; //  appends that failed (plug disconnected unacked)
    atomic_uint_fast64_t confirmed;    //  found stored
    atomic_uint_fast64_t republished;  //  published again by the broker
    atomic_uint_fast64_t never;        //  dropped: can never make readings
    atomic_uint_fast64_t unstored;     //  dropped: out of tries, not stored
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

#define S_DEVICE_COLUMNS "SELECT id, mqtt_name, " PROTO_DEVICE_TOKEN_COLUMNS " FROM devices "

//  false if the row gives no usable token (then the device is not kept).
static bool
s_device_from_row (PGresult *result, int row, mqtt_auth_device_t *device)
{
    memset (device, 0, sizeof *device);
    device->id = atoll (PQgetvalue (result, row, 0));
    snprintf (device->name, sizeof device->name, "%s", PQgetvalue (result, row, 1));
    return proto_device_token_from_row (&device->token, result, row, 2) &&
           mqtt_auth_acl_name_valid (device->name);
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
//  The spool's keeper: a thread with its own spool and PostgreSQL
//  connections. Each second it takes the entries that are due (oldest
//  first, S_KEEPER_BATCH at most), works out the readingIds the service
//  gives them (mqtt_parse + mqtt_reading_key, the service's own code),
//  asks PostgreSQL in one statement which are stored, and in one spool
//  transaction marks each entry done (all its readings stored), drops it
//  (a message that makes no readings; out of tries) or sets it due again
//  (spool_delay x 2^tries) and queues it for the broker thread to
//  publish again. A message the service is still holding (a detector
//  restarting: it retries for 20 s) may be published twice; the copy has
//  the same pw-id, the store keeps one.

//  '"' + escaped text + '"' for an array literal (channels are firmware
//  text: sensor names).
static void
s_array_add (zchunk_t *array, const char *text)
{
    zchunk_extend (array, zchunk_size (array) ? ",\"" : "{\"", 2);
    for (const char *c = text; *c; c++) {
        if (*c == '"' || *c == '\\')
            zchunk_extend (array, "\\", 1);
        zchunk_extend (array, c, 1);
    }
    zchunk_extend (array, "\"", 1);
}

static char *
s_array_text (zchunk_t *array)
{
    if (zchunk_size (array) == 0)
        return strdup ("{}");
    zchunk_extend (array, "}", 2); //  with the NUL
    return strdup ((const char *)zchunk_data (array));
}

//  One keeper pass; false when PostgreSQL failed (reconnect).
static bool
s_keeper_pass (s_plugin_t *self, mqtt_auth_spool_t *spool, PGconn *conn)
{
    pthread_mutex_lock (&self->republish_lock);
    size_t waiting = zlistx_size (self->republish);
    pthread_mutex_unlock (&self->republish_lock);
    if (waiting > S_REPUBLISH_QUEUE_MAX)
        return true; //  the broker thread has enough to do
    int64_t now = s_now_ms ();
    zlistx_t *due = zlistx_new ();
    assert (due);
    int count = mqtt_auth_spool_due (spool, now, S_KEEPER_BATCH, due);
    if (count <= 0) {
        zlistx_destroy (&due);
        if (count == 0)
            mqtt_auth_spool_expire (spool, now - S_WINDOW_MS - S_YOUNG_MS);
        return true;
    }
    //  Each entry's readingIds, in two parallel arrays for unnest.
    zchunk_t *names = zchunk_new (NULL, 4096), *keys = zchunk_new (NULL, 8192);
    zhashx_t *entry_keys = zhashx_new (); //  entry row text -> zlistx of its keys
    zhashx_set_destructor (entry_keys, (zhashx_destructor_fn *)zlistx_destroy);
    mqtt_parse_t *parsed = (mqtt_parse_t *)malloc (sizeof (mqtt_parse_t));
    assert (names && keys && entry_keys && parsed);
    for (mqtt_auth_spool_entry_t *entry = (mqtt_auth_spool_entry_t *)zlistx_first (due); entry;
         entry = (mqtt_auth_spool_entry_t *)zlistx_next (due)) {
        mqtt_parse_message (entry->topic, entry->payload, entry->size, parsed);
        if (parsed->kind != MQTT_PARSE_READINGS || parsed->count == 0)
            continue; //  no list: dropped below
        zlistx_t *list = zlistx_new ();
        zlistx_set_destructor (list, (zlistx_destructor_fn *)zstr_free);
        zlistx_set_duplicator (list, (zlistx_duplicator_fn *)strdup);
        for (size_t index = 0; index < parsed->count; index++) {
            char key[PROTO_KEY_MAX + 1];
            mqtt_reading_key (entry->pw_id, entry->topic, entry->payload, entry->size,
                              entry->received_ms, parsed->readings[index].channel, key, sizeof key);
            zlistx_add_end (list, key);
            s_array_add (names, entry->user);
            s_array_add (keys, key);
        }
        char row[24];
        snprintf (row, sizeof row, "%" PRId64, entry->row);
        zhashx_update (entry_keys, row, list);
    }
    free (parsed);
    char *names_text = s_array_text (names), *keys_text = s_array_text (keys);
    zchunk_destroy (&names);
    zchunk_destroy (&keys);
    const char *parameters[] = {names_text, keys_text};
    PGresult *result =
        proto_pg_exec (conn, S_APPLICATION, "spool confirm",
                       "SELECT w.key FROM unnest ($1::text[], $2::text[]) AS w (name, key)"
                       " JOIN devices d ON d.mqtt_name = w.name"
                       " JOIN reading_keys k ON k.device_id = d.id AND k.reading_key = w.key",
                       2, parameters);
    free (names_text);
    free (keys_text);
    if (!result) {
        zhashx_destroy (&entry_keys);
        zlistx_destroy (&due);
        return false;
    }
    zhashx_t *stored = zhashx_new ();
    for (int row = 0; row < PQntuples (result); row++)
        zhashx_update (stored, PQgetvalue (result, row, 0), (void *)1);
    PQclear (result);

    zlistx_t *handed = zlistx_new (); //  entries moved to the republish queue
    uint64_t confirmed = 0, never = 0, unstored = 0;
    if (mqtt_auth_spool_begin (spool) == 0) {
        mqtt_auth_spool_entry_t *entry = (mqtt_auth_spool_entry_t *)zlistx_first (due);
        while (entry) {
            char row[24];
            snprintf (row, sizeof row, "%" PRId64, entry->row);
            zlistx_t *list = (zlistx_t *)zhashx_lookup (entry_keys, row);
            bool all = list != NULL;
            for (const char *key = list ? (const char *)zlistx_first (list) : NULL; key;
                 key = (const char *)zlistx_next (list))
                all = all && zhashx_lookup (stored, key);
            void *handle = zlistx_cursor (due);
            entry = (mqtt_auth_spool_entry_t *)zlistx_next (due);
            mqtt_auth_spool_entry_t *current =
                (mqtt_auth_spool_entry_t *)zlistx_handle_item (handle);
            if (!list) {
                mqtt_auth_spool_drop (spool, current->row);
                never++;
            } else if (all) {
                mqtt_auth_spool_confirm (spool, current->row);
                confirmed++;
            } else if (current->tries + 1 >= self->spool_tries) {
                mqtt_auth_spool_drop (spool, current->row);
                unstored++;
                mosquitto_log_printf (MOSQ_LOG_WARNING,
                                      "phantom-spool: %s's message %s on '%s' not stored after "
                                      "%d tries; dropped",
                                      current->user, current->pw_id, current->topic,
                                      current->tries + 1);
            } else {
                int shift = current->tries < 10 ? current->tries : 10;
                mqtt_auth_spool_retry (spool, current->row,
                                       now + (self->spool_delay_ms << (shift + 1)));
                zlistx_detach (due, handle);
                zlistx_add_end (handed, current);
            }
        }
        if (mqtt_auth_spool_commit (spool) == 0) {
            atomic_fetch_add (&self->confirmed, confirmed);
            atomic_fetch_add (&self->never, never);
            atomic_fetch_add (&self->unstored, unstored);
            pthread_mutex_lock (&self->republish_lock);
            mqtt_auth_spool_entry_t *item;
            while ((item = (mqtt_auth_spool_entry_t *)zlistx_detach (handed, NULL)))
                zlistx_add_end (self->republish, item);
            pthread_mutex_unlock (&self->republish_lock);
        }
    }
    zlistx_set_destructor (handed, (zlistx_destructor_fn *)mqtt_auth_spool_entry_destroy);
    zlistx_destroy (&handed);
    zhashx_destroy (&stored);
    zhashx_destroy (&entry_keys);
    zlistx_destroy (&due);
    mqtt_auth_spool_expire (spool, now - S_WINDOW_MS - S_YOUNG_MS);
    return true;
}

static void *
s_keeper (void *args)
{
    s_plugin_t *self = (s_plugin_t *)args;
    mqtt_auth_spool_t *spool = mqtt_auth_spool_new (self->spool_path);
    PGconn *conn = NULL;
    int64_t next_log = zclock_mono () + 10000;
    uint64_t logged[7] = {0};
    while (spool && !atomic_load (&self->stop)) {
        for (int wait = 0; wait < 10 && !atomic_load (&self->stop); wait++)
            zclock_sleep (100);
        if (!conn) {
            conn = proto_pg_connect (self->conninfo, "phantom-mqtt-spool", 10000);
            if (!conn) {
                mqtt_auth_spool_checkpoint (spool);
                continue;
            }
        }
        if (!s_keeper_pass (self, spool, conn) || PQstatus (conn) != CONNECTION_OK) {
            PQfinish (conn);
            conn = NULL;
        }
        //  The fsync of what was appended: a power loss costs at most the
        //  last second or so of acknowledged messages.
        mqtt_auth_spool_checkpoint (spool);
        if (zclock_mono () >= next_log) {
            next_log = zclock_mono () + 10000;
            uint64_t now[7] = {atomic_load (&self->spooled),     atomic_load (&self->repeats),
                               atomic_load (&self->confirmed),   atomic_load (&self->republished),
                               atomic_load (&self->never),       atomic_load (&self->unstored),
                               atomic_load (&self->spool_failed)};
            if (memcmp (now, logged, sizeof now)) {
                memcpy (logged, now, sizeof now);
                mosquitto_log_printf (MOSQ_LOG_INFO,
                                      "phantom-spool: spooled %" PRIu64 " repeats %" PRIu64
                                      " confirmed %" PRIu64 " republished %" PRIu64
                                      " never_readings %" PRIu64 " unstored %" PRIu64
                                      " failed %" PRIu64 " pending %" PRId64,
                                      now[0], now[1], now[2], now[3], now[4], now[5], now[6],
                                      mqtt_auth_spool_pending (spool));
            }
        }
    }
    if (conn)
        PQfinish (conn);
    mqtt_auth_spool_destroy (&spool);
    return NULL;
}

//  Broker thread, on the tick: publish what the keeper handed back, with
//  its pw-id, as the plug's message would have gone.
static void
s_republish (s_plugin_t *self)
{
    int64_t second = zclock_mono () / 1000;
    if (second != self->republish_second) {
        self->republish_second = second;
        self->republish_count = 0;
    }
    for (int count = 0;
         count < S_REPUBLISH_PER_TICK && self->republish_count < S_REPUBLISH_PER_SECOND; count++) {
        self->republish_count++;
        pthread_mutex_lock (&self->republish_lock);
        mqtt_auth_spool_entry_t *entry =
            (mqtt_auth_spool_entry_t *)zlistx_detach (self->republish, NULL);
        pthread_mutex_unlock (&self->republish_lock);
        if (!entry)
            break;
        //  pw-t as the first time: the reading keeps the time the broker
        //  took the plug's message, not the time of this copy.
        mosquitto_property *properties = NULL;
        char received[24];
        snprintf (received, sizeof received, "%" PRId64, entry->received_ms);
        if (mosquitto_property_add_string_pair (&properties, MQTT_PROP_USER_PROPERTY, "pw-id",
                                                entry->pw_id) == MOSQ_ERR_SUCCESS &&
            mosquitto_property_add_string_pair (&properties, MQTT_PROP_USER_PROPERTY, "pw-t",
                                                received) == MOSQ_ERR_SUCCESS &&
            mosquitto_broker_publish_copy (NULL, entry->topic, (int)entry->size, entry->payload, 1,
                                           false, properties) == MOSQ_ERR_SUCCESS)
            atomic_fetch_add (&self->republished, 1);
        else
            mosquitto_property_free_all (&properties);
        mqtt_auth_spool_entry_destroy (&entry);
    }
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
    if (self->spool) {
        int64_t *since = (int64_t *)malloc (sizeof (int64_t));
        assert (since);
        *since = s_now_ms ();
        zhashx_update (self->connected, user, since);
    }
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

//  Whether a plug's message carries the device's own time (parsed as the
//  service parses it).
static bool
s_has_device_time (const char *topic, const void *payload, uint32_t size)
{
    mqtt_parse_t parsed;
    if (mqtt_parse_message (topic, payload, size, &parsed) != MQTT_PARSE_READINGS)
        return false;
    return parsed.ts_utc_ms != 0 || parsed.ts_local[0] != 0;
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
    int64_t now = s_now_ms ();
    if (self->spool && user) {
        int64_t *since = (int64_t *)zhashx_lookup (self->connected, user);
        bool young = since && now - *since < S_YOUNG_MS &&
                     s_has_device_time (message->topic, message->payload, message->payloadlen);
        int rc = mqtt_auth_spool_append (self->spool, user, message->topic, message->payload,
                                         message->payloadlen, now, now + self->spool_delay_ms,
                                         young ? *since : 0, S_WINDOW_MS, id);
        if (rc < 0) {
            //  Not durable: no PUBACK. Any error but ACL_DENIED makes the
            //  broker drop the connection unacknowledged (handle_publish.c
            //  :280-283); the plug sends the message again.
            atomic_fetch_add (&self->spool_failed, 1);
            return MOSQ_ERR_UNKNOWN;
        }
        atomic_fetch_add (rc == 1 ? &self->repeats : &self->spooled, 1);
    }
    //  Appended to the message's own list, which the broker then stores.
    if (mosquitto_property_add_string_pair (&message->properties, MQTT_PROP_USER_PROPERTY, "pw-id",
                                            id) != MOSQ_ERR_SUCCESS)
        return MOSQ_ERR_NOMEM;
    //  pw-t: when the broker took it (ms), the reading time of firmware that
    //  sends none, the same whichever service instance handles it.
    snprintf (id, sizeof id, "%" PRId64, now);
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
    if (self->spool)
        s_republish (self);
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
    atomic_store (&self->stop, true);
    if (self->thread_started)
        pthread_join (self->thread, NULL);
    if (self->keeper_started)
        pthread_join (self->keeper, NULL);
    mqtt_auth_spool_destroy (&self->spool);
    zhashx_destroy (&self->connected);
    zlistx_destroy (&self->republish);
    pthread_mutex_destroy (&self->republish_lock);
    free (self->spool_path);
    mqtt_auth_table_destroy (&self->table);
    zhashx_destroy (&self->sessions);
    pthread_mutex_destroy (&self->lock);
    free (self->conninfo);
    free (self->service_user);
    free (self);
    *self_p = NULL;
}

static bool
s_unhex (const char *text, uint8_t hash[32])
{
    size_t length = 0;
    return text && strlen (text) == 64 &&
           sodium_hex2bin (hash, 32, text, 64, NULL, &length, NULL) == 0 && length == 32;
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
    self->spool_delay_ms = 30000;
    self->spool_tries = 5;
    self->connected = zhashx_new ();
    zhashx_set_destructor (self->connected, s_free_item);
    pthread_mutex_init (&self->republish_lock, NULL);
    self->republish = zlistx_new ();
    zlistx_set_destructor (self->republish, (zlistx_destructor_fn *)mqtt_auth_spool_entry_destroy);
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
        } else if (streq (key, "spool")) {
            free (self->spool_path);
            self->spool_path = *value && !streq (value, "off") ? strdup (value) : NULL;
        } else if (streq (key, "spool_delay") || streq (key, "spool_tries")) {
            long number = atol (value);
            if (number < 1 || number > 3600) {
                mosquitto_log_printf (MOSQ_LOG_ERR, "phantom-auth: %s must be 1..3600", key);
                s_plugin_destroy (&self);
                return MOSQ_ERR_INVAL;
            }
            if (streq (key, "spool_delay"))
                self->spool_delay_ms = number * 1000;
            else
                self->spool_tries = (int)number;
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
    if (self->spool_path) {
        //  Not durable, not started: the broker must not acknowledge what
        //  it cannot keep.
        self->spool = mqtt_auth_spool_new (self->spool_path);
        //  No fsync on the broker thread: the keeper checkpoints.
        if (!self->spool || mqtt_auth_spool_checkpoint_elsewhere (self->spool) != 0 ||
            pthread_create (&self->keeper, NULL, s_keeper, self) != 0) {
            mosquitto_log_printf (MOSQ_LOG_ERR, "phantom-auth: cannot open the spool %s",
                                  self->spool_path);
            s_plugin_destroy (&self);
            return MOSQ_ERR_UNKNOWN;
        }
        self->keeper_started = true;
    }
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
    mosquitto_log_printf (MOSQ_LOG_INFO,
                          "phantom-auth: ready (service user %s, spool %s, delay %d s, tries %d)",
                          self->has_service ? self->service_user : "none",
                          self->spool_path ? self->spool_path : "off",
                          (int)(self->spool_delay_ms / 1000), self->spool_tries);
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
