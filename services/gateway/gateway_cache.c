/*  =========================================================================
    gateway_cache - device-token hashes and port ownership in memory

    The sensor hot path authenticates and authorizes from here, without SQL.
    A listener thread with its own connection LISTENs on phantom_cache (see
    the triggers in 001_init.sql) and re-reads the one row that changed; on
    connection loss it reconnects and reloads everything, because NOTIFYs
    sent while it was away are gone. Readers take a shared lock; the
    listener and refresh calls take it exclusively for one entry.
    =========================================================================
*/
#include "gateway_pipeline.h"

#include <inttypes.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/select.h>

typedef struct {
    int64_t id;               //  device id
    int64_t user;             //  owner
    bool has_current;         //  current token set
    uint8_t current[32];      //  SHA-256 of the current token
    int64_t current_expires;  //  ms since epoch; INT64_MAX = never
    bool has_previous;        //  previous token still in its grace window
    uint8_t previous[32];     //  SHA-256 of the rotated-out token
    int64_t previous_expires; //  ms since epoch
} s_device_t;

struct _gateway_cache_t {
    char *conninfo;              //  libpq connection string, NULL in tests
    pthread_rwlock_t lock;       //  guards the three maps
    zhashx_t *devices;           //  "id" -> s_device_t (owned)
    zhashx_t *tokens;            //  hex SHA-256 -> s_device_t (borrowed from devices)
    zhashx_t *ports;             //  uuid -> gateway_port_t (owned)
    pthread_mutex_t query_mutex; //  guards query_conn
    PGconn *query_conn;          //  for refresh_* calls from handlers
    PGconn *listen_conn;         //  the listener's, handed over by load
    pthread_t thread;            //  listener
    bool thread_started;         //  joined on destroy
    atomic_bool stop;            //  ends the listener
    atomic_bool loaded;          //  a full load succeeded once
};

#define DEVICE_COLUMNS                                                                             \
    "SELECT id, user_id, encode(token_hash, 'hex'), "                                              \
    "COALESCE((extract(epoch FROM token_expires_at) * 1000)::bigint, -1), "                        \
    "encode(previous_token_hash, 'hex'), "                                                         \
    "COALESCE((extract(epoch FROM previous_token_expires_at) * 1000)::bigint, -1) FROM devices"

#define PORT_COLUMNS                                                                               \
    "SELECT p.id::text, p.user_id, p.device_id, p.off_watts, p.standby_watts, "                    \
    "p.min_phantom_seconds, p.expected_off, "                                                      \
    "COALESCE((extract(epoch FROM p.expected_off_from) / 60)::int, 0), "                           \
    "COALESCE((extract(epoch FROM p.expected_off_to) / 60)::int, 0), u.time_zone "                 \
    "FROM ports p JOIN users u ON u.id = p.user_id"

static void *s_listener (void *args);

static void
s_free_port (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_new_maps (zhashx_t **devices, zhashx_t **tokens, zhashx_t **ports)
{
    *devices = zhashx_new ();
    *tokens = zhashx_new ();
    *ports = zhashx_new ();
    assert (*devices && *tokens && *ports);
    zhashx_set_destructor (*devices, s_free_port);
    zhashx_set_destructor (*ports, s_free_port);
}

gateway_cache_t *
gateway_cache_new (const char *conninfo)
{
    gateway_cache_t *self = (gateway_cache_t *)zmalloc (sizeof (gateway_cache_t));
    assert (self);
    self->conninfo = conninfo ? strdup (conninfo) : NULL;
    pthread_rwlock_init (&self->lock, NULL);
    pthread_mutex_init (&self->query_mutex, NULL);
    s_new_maps (&self->devices, &self->tokens, &self->ports);
    return self;
}

void
gateway_cache_destroy (gateway_cache_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_cache_t *self = *self_p;
        if (self->thread_started) {
            atomic_store (&self->stop, true);
            pthread_join (self->thread, NULL);
        }
        if (self->listen_conn)
            PQfinish (self->listen_conn);
        if (self->query_conn)
            PQfinish (self->query_conn);
        zhashx_destroy (&self->tokens);
        zhashx_destroy (&self->devices);
        zhashx_destroy (&self->ports);
        pthread_rwlock_destroy (&self->lock);
        pthread_mutex_destroy (&self->query_mutex);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Entry builders; shared by the full load and the one-row refresh.

static void
s_hex (const uint8_t hash[32], char text[65])
{
    sodium_bin2hex (text, 65, hash, 32);
}

static bool
s_unhex (const char *text, uint8_t hash[32])
{
    size_t length = 0;
    return text && strlen (text) == 64 &&
           sodium_hex2bin (hash, 32, text, 64, NULL, &length, NULL) == 0 && length == 32;
}

static s_device_t *
s_device_from_row (PGresult *result, int row)
{
    s_device_t *device = (s_device_t *)zmalloc (sizeof (s_device_t));
    assert (device);
    device->id = atoll (PQgetvalue (result, row, 0));
    device->user = atoll (PQgetvalue (result, row, 1));
    if (!PQgetisnull (result, row, 2) && s_unhex (PQgetvalue (result, row, 2), device->current)) {
        int64_t expires = atoll (PQgetvalue (result, row, 3));
        device->has_current = true;
        device->current_expires = expires < 0 ? INT64_MAX : expires;
    }
    //  A previous token without an expiry has no grace window left.
    if (!PQgetisnull (result, row, 4) && s_unhex (PQgetvalue (result, row, 4), device->previous)) {
        int64_t expires = atoll (PQgetvalue (result, row, 5));
        device->has_previous = expires > 0;
        device->previous_expires = expires;
    }
    return device;
}

static gateway_port_t *
s_port_from_row (PGresult *result, int row)
{
    gateway_port_t *port = (gateway_port_t *)zmalloc (sizeof (gateway_port_t));
    assert (port);
    port->user = atoll (PQgetvalue (result, row, 1));
    port->device = atoll (PQgetvalue (result, row, 2));
    port->settings.off_watts = strtof (PQgetvalue (result, row, 3), NULL);
    port->settings.standby_watts = strtof (PQgetvalue (result, row, 4), NULL);
    port->settings.min_phantom_seconds = atoi (PQgetvalue (result, row, 5));
    const char *expected = PQgetvalue (result, row, 6);
    port->settings.expected_off = streq (expected, "always")   ? PROTO_EXPECTED_OFF_ALWAYS
                                  : streq (expected, "window") ? PROTO_EXPECTED_OFF_WINDOW
                                                               : PROTO_EXPECTED_OFF_NEVER;
    port->settings.off_from_min = (int16_t)atoi (PQgetvalue (result, row, 7));
    port->settings.off_to_min = (int16_t)atoi (PQgetvalue (result, row, 8));
    const char *zone = PQgetvalue (result, row, 9);
    if (strlen (zone) <= PROTO_TIMEZONE_MAX)
        snprintf (port->settings.timezone, sizeof port->settings.timezone, "%s", zone);
    else
        zsys_warning ("gateway cache - port %s: time zone too long, using UTC",
                      PQgetvalue (result, row, 0));
    return port;
}

//  Under the write lock: replaces (or with NULL removes) a device and its
//  token keys in the given maps.
static void
s_put_device (zhashx_t *devices, zhashx_t *tokens, int64_t id, s_device_t *device)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRId64, id);
    s_device_t *old = (s_device_t *)zhashx_lookup (devices, key);
    char hex[65];
    if (old) {
        if (old->has_current) {
            s_hex (old->current, hex);
            if (zhashx_lookup (tokens, hex) == old)
                zhashx_delete (tokens, hex);
        }
        if (old->has_previous) {
            s_hex (old->previous, hex);
            if (zhashx_lookup (tokens, hex) == old)
                zhashx_delete (tokens, hex);
        }
        zhashx_delete (devices, key);
    }
    if (device) {
        zhashx_insert (devices, key, device);
        if (device->has_current) {
            s_hex (device->current, hex);
            zhashx_update (tokens, hex, device);
        }
        if (device->has_previous) {
            s_hex (device->previous, hex);
            zhashx_update (tokens, hex, device);
        }
    }
}

//  Runs a query with at most one text parameter; NULL on failure (logged).
static PGresult *
s_query (PGconn *conn, const char *sql, const char *parameter)
{
    PGresult *result = PQexecParams (conn, sql, parameter ? 1 : 0, NULL,
                                     parameter ? &parameter : NULL, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        zsys_warning ("gateway cache - query failed: %s", PQerrorMessage (conn));
        PQclear (result);
        return NULL;
    }
    return result;
}

//  Reads every device and port into fresh maps and swaps them in. 0 or -1.
static int
s_load_all (gateway_cache_t *self, PGconn *conn)
{
    PGresult *devices_result = s_query (
        conn, DEVICE_COLUMNS " WHERE token_hash IS NOT NULL OR previous_token_hash IS NOT NULL",
        NULL);
    if (!devices_result)
        return -1;
    PGresult *ports_result = s_query (conn, PORT_COLUMNS, NULL);
    if (!ports_result) {
        PQclear (devices_result);
        return -1;
    }
    zhashx_t *devices, *tokens, *ports;
    s_new_maps (&devices, &tokens, &ports);
    for (int row = 0; row < PQntuples (devices_result); row++) {
        s_device_t *device = s_device_from_row (devices_result, row);
        s_put_device (devices, tokens, device->id, device);
    }
    for (int row = 0; row < PQntuples (ports_result); row++)
        zhashx_update (ports, PQgetvalue (ports_result, row, 0),
                       s_port_from_row (ports_result, row));
    PQclear (devices_result);
    PQclear (ports_result);

    pthread_rwlock_wrlock (&self->lock);
    zhashx_t *old_devices = self->devices, *old_tokens = self->tokens, *old_ports = self->ports;
    self->devices = devices;
    self->tokens = tokens;
    self->ports = ports;
    pthread_rwlock_unlock (&self->lock);
    zhashx_destroy (&old_tokens);
    zhashx_destroy (&old_devices);
    zhashx_destroy (&old_ports);
    atomic_store (&self->loaded, true);
    zsys_info ("gateway cache - loaded %zu devices with tokens, %zu ports", zhashx_size (devices),
               zhashx_size (ports));
    return 0;
}

//  A port id is canonical lower-case uuid text, so it is also its key.
static bool
s_is_uuid (const char *text)
{
    if (!text || strlen (text) != PROTO_UUID_LEN)
        return false;
    for (int index = 0; index < PROTO_UUID_LEN; index++) {
        char c = text[index];
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

static void
s_refresh_device (gateway_cache_t *self, PGconn *conn, int64_t device_id)
{
    char id[24];
    snprintf (id, sizeof id, "%" PRId64, device_id);
    PGresult *result = s_query (conn, DEVICE_COLUMNS " WHERE id = $1::bigint", id);
    if (!result)
        return;
    s_device_t *device = PQntuples (result) == 1 ? s_device_from_row (result, 0) : NULL;
    PQclear (result);
    pthread_rwlock_wrlock (&self->lock);
    s_put_device (self->devices, self->tokens, device_id, device);
    pthread_rwlock_unlock (&self->lock);
}

static void
s_refresh_port (gateway_cache_t *self, PGconn *conn, const char *port_id)
{
    if (!s_is_uuid (port_id))
        return;
    PGresult *result = s_query (conn, PORT_COLUMNS " WHERE p.id = $1::uuid", port_id);
    if (!result)
        return;
    gateway_port_t *port = PQntuples (result) == 1 ? s_port_from_row (result, 0) : NULL;
    PQclear (result);
    pthread_rwlock_wrlock (&self->lock);
    if (port)
        zhashx_update (self->ports, port_id, port);
    else
        zhashx_delete (self->ports, port_id);
    pthread_rwlock_unlock (&self->lock);
}

static void
s_refresh_user (gateway_cache_t *self, PGconn *conn, int64_t user_id)
{
    char id[24];
    snprintf (id, sizeof id, "%" PRId64, user_id);
    PGresult *result = s_query (conn, PORT_COLUMNS " WHERE p.user_id = $1::bigint", id);
    if (!result)
        return;
    pthread_rwlock_wrlock (&self->lock);
    for (int row = 0; row < PQntuples (result); row++)
        zhashx_update (self->ports, PQgetvalue (result, row, 0), s_port_from_row (result, row));
    pthread_rwlock_unlock (&self->lock);
    PQclear (result);
}

//  --------------------------------------------------------------------------
//  Connects and LISTENs; NULL if PostgreSQL does not answer.
static PGconn *
s_connect_listen (gateway_cache_t *self)
{
    //  Named, so an operator (and the test) can tell it in pg_stat_activity.
    const char *keys[] = {"dbname", "application_name", NULL};
    const char *values[] = {self->conninfo, "phantom-gateway-cache", NULL};
    PGconn *conn = PQconnectdbParams (keys, values, 1);
    if (PQstatus (conn) != CONNECTION_OK) {
        zsys_warning ("gateway cache - cannot connect: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return NULL;
    }
    PGresult *result = PQexec (conn, "LISTEN phantom_cache");
    bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
    PQclear (result);
    if (!ok) {
        zsys_warning ("gateway cache - LISTEN failed: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return NULL;
    }
    return conn;
}

int
gateway_cache_load (gateway_cache_t *self)
{
    assert (self);
    if (!self->conninfo)
        return -1;
    if (self->thread_started) {
        //  The listener is already listening, so nothing changes unseen.
        pthread_mutex_lock (&self->query_mutex);
        if (!self->query_conn || PQstatus (self->query_conn) != CONNECTION_OK) {
            if (self->query_conn)
                PQfinish (self->query_conn);
            self->query_conn = PQconnectdb (self->conninfo);
        }
        int rc =
            PQstatus (self->query_conn) == CONNECTION_OK ? s_load_all (self, self->query_conn) : -1;
        pthread_mutex_unlock (&self->query_mutex);
        return rc;
    }
    //  LISTEN before loading: a change committed during the load is then
    //  notified after it, never lost between the two.
    PGconn *conn = s_connect_listen (self);
    if (!conn)
        return -1;
    if (s_load_all (self, conn) != 0) {
        PQfinish (conn);
        return -1;
    }
    self->listen_conn = conn;
    if (pthread_create (&self->thread, NULL, s_listener, self) != 0) {
        zsys_error ("gateway cache - cannot start listener");
        return -1;
    }
    self->thread_started = true;
    return 0;
}

static void
s_notified (gateway_cache_t *self, PGconn *conn, const char *payload)
{
    if (strncmp (payload, "device:", 7) == 0)
        s_refresh_device (self, conn, atoll (payload + 7));
    else if (strncmp (payload, "port:", 5) == 0)
        s_refresh_port (self, conn, payload + 5);
    else if (strncmp (payload, "user:", 5) == 0)
        s_refresh_user (self, conn, atoll (payload + 5));
    else
        zsys_warning ("gateway cache - unknown notification '%s'", payload);
}

static void *
s_listener (void *args)
{
    gateway_cache_t *self = (gateway_cache_t *)args;
    PGconn *conn = self->listen_conn;
    while (!atomic_load (&self->stop)) {
        if (!conn) {
            conn = s_connect_listen (self);
            if (conn && s_load_all (self, conn) != 0) {
                PQfinish (conn);
                conn = NULL;
            }
            //  Retry each second, watching the stop flag meanwhile.
            for (int wait = 0; !conn && wait < 10 && !atomic_load (&self->stop); wait++)
                zclock_sleep (100);
            self->listen_conn = conn;
            continue;
        }
        int fd = PQsocket (conn);
        fd_set readable;
        FD_ZERO (&readable);
        FD_SET (fd, &readable);
        //  One second bound so stop is seen.
        struct timeval timeout = {1, 0};
        int rc = select (fd + 1, &readable, NULL, NULL, &timeout);
        if (rc < 0)
            continue;
        if (rc > 0 && !PQconsumeInput (conn)) {
            zsys_warning ("gateway cache - listener lost PostgreSQL: %s", PQerrorMessage (conn));
            PQfinish (conn);
            conn = self->listen_conn = NULL;
            continue;
        }
        PGnotify *notify;
        while ((notify = PQnotifies (conn))) {
            s_notified (self, conn, notify->extra);
            PQfreemem (notify);
        }
        if (PQstatus (conn) != CONNECTION_OK) {
            zsys_warning ("gateway cache - listener connection broken, reconnecting");
            PQfinish (conn);
            conn = self->listen_conn = NULL;
        }
    }
    return NULL;
}

//  --------------------------------------------------------------------------
bool
gateway_cache_device (gateway_cache_t *self, const uint8_t token_hash[32], gateway_device_t *device)
{
    assert (self);
    //  Timing of the lookup reveals nothing useful: the key is the SHA-256 of a 256-bit random
    //  token.
    char hex[65];
    s_hex (token_hash, hex);
    int64_t now = gateway_http_now_ms ();
    bool found = false;
    pthread_rwlock_rdlock (&self->lock);
    s_device_t *entry = (s_device_t *)zhashx_lookup (self->tokens, hex);
    if (entry) {
        if (entry->has_current && sodium_memcmp (entry->current, token_hash, 32) == 0)
            found = now < entry->current_expires;
        else if (entry->has_previous && sodium_memcmp (entry->previous, token_hash, 32) == 0)
            found = now < entry->previous_expires;
        if (found && device) {
            device->id = entry->id;
            device->user = entry->user;
        }
    }
    pthread_rwlock_unlock (&self->lock);
    return found;
}

bool
gateway_cache_port (gateway_cache_t *self, const char *port, gateway_port_t *out)
{
    assert (self);
    if (!port)
        return false;
    pthread_rwlock_rdlock (&self->lock);
    gateway_port_t *entry = (gateway_port_t *)zhashx_lookup (self->ports, port);
    if (entry && out)
        *out = *entry;
    pthread_rwlock_unlock (&self->lock);
    return entry != NULL;
}

//  Runs fn on the shared query connection, (re)connecting as needed.
static PGconn *
s_query_conn (gateway_cache_t *self)
{
    if (!self->conninfo)
        return NULL;
    if (self->query_conn && PQstatus (self->query_conn) != CONNECTION_OK)
        PQreset (self->query_conn);
    if (!self->query_conn)
        self->query_conn = PQconnectdb (self->conninfo);
    if (PQstatus (self->query_conn) != CONNECTION_OK) {
        zsys_warning ("gateway cache - refresh cannot connect: %s",
                      PQerrorMessage (self->query_conn));
        PQfinish (self->query_conn);
        self->query_conn = NULL;
    }
    return self->query_conn;
}

void
gateway_cache_refresh_device (gateway_cache_t *self, int64_t device_id)
{
    assert (self);
    pthread_mutex_lock (&self->query_mutex);
    PGconn *conn = s_query_conn (self);
    if (conn)
        s_refresh_device (self, conn, device_id);
    pthread_mutex_unlock (&self->query_mutex);
}

void
gateway_cache_refresh_port (gateway_cache_t *self, const char *port)
{
    assert (self);
    pthread_mutex_lock (&self->query_mutex);
    PGconn *conn = s_query_conn (self);
    if (conn)
        s_refresh_port (self, conn, port);
    pthread_mutex_unlock (&self->query_mutex);
}

void
gateway_cache_refresh_user (gateway_cache_t *self, int64_t user_id)
{
    assert (self);
    pthread_mutex_lock (&self->query_mutex);
    PGconn *conn = s_query_conn (self);
    if (conn)
        s_refresh_user (self, conn, user_id);
    pthread_mutex_unlock (&self->query_mutex);
}

size_t
gateway_cache_devices (gateway_cache_t *self)
{
    pthread_rwlock_rdlock (&self->lock);
    size_t size = zhashx_size (self->devices);
    pthread_rwlock_unlock (&self->lock);
    return size;
}

size_t
gateway_cache_ports (gateway_cache_t *self)
{
    pthread_rwlock_rdlock (&self->lock);
    size_t size = zhashx_size (self->ports);
    pthread_rwlock_unlock (&self->lock);
    return size;
}

bool
gateway_cache_loaded (gateway_cache_t *self)
{
    return atomic_load (&self->loaded);
}

void
gateway_cache_put_device (gateway_cache_t *self, const uint8_t token_hash[32], int64_t device_id,
                          int64_t user_id, int64_t expires_ms)
{
    s_device_t *device = (s_device_t *)zmalloc (sizeof (s_device_t));
    assert (device);
    device->id = device_id;
    device->user = user_id;
    device->has_current = true;
    memcpy (device->current, token_hash, 32);
    device->current_expires = expires_ms > 0 ? expires_ms : INT64_MAX;
    pthread_rwlock_wrlock (&self->lock);
    s_put_device (self->devices, self->tokens, device_id, device);
    pthread_rwlock_unlock (&self->lock);
}

void
gateway_cache_put_port (gateway_cache_t *self, const char *port, const gateway_port_t *entry)
{
    gateway_port_t *copy = (gateway_port_t *)malloc (sizeof (gateway_port_t));
    assert (copy);
    *copy = *entry;
    pthread_rwlock_wrlock (&self->lock);
    zhashx_update (self->ports, port, copy);
    pthread_rwlock_unlock (&self->lock);
}

//  ==========================================================================
static void
s_exec (PGconn *conn, const char *sql, int count, const char **parameters)
{
    PGresult *result = PQexecParams (conn, sql, count, NULL, parameters, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_COMMAND_OK && PQresultStatus (result) != PGRES_TUPLES_OK) {
        fprintf (stderr, "SQL failed: %s: %s\n", sql, PQerrorMessage (conn));
        assert (false);
    }
    PQclear (result);
}

static char *
s_value (PGconn *conn, const char *sql, int count, const char **parameters)
{
    PGresult *result = PQexecParams (conn, sql, count, NULL, parameters, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1);
    char *value = strdup (PQgetvalue (result, 0, 0));
    PQclear (result);
    return value;
}

//  Waits up to limit_ms for the device lookup to give expected.
static bool
s_wait_device (gateway_cache_t *cache, const uint8_t hash[32], bool expected, int limit_ms)
{
    for (int waited = 0; waited <= limit_ms; waited += 10) {
        if (gateway_cache_device (cache, hash, NULL) == expected)
            return true;
        zclock_sleep (10);
    }
    return false;
}

void
gateway_cache_test (bool verbose)
{
    printf (" * gateway_cache: ");

    //  Without a database: direct puts, expiry and constant-time matching.
    gateway_cache_t *cache = gateway_cache_new (NULL);
    uint8_t hash[32], other[32];
    crypto_hash_sha256 (hash, (const uint8_t *)"token-a", 7);
    crypto_hash_sha256 (other, (const uint8_t *)"token-b", 7);
    gateway_cache_put_device (cache, hash, 5, 6, 0);
    gateway_device_t device;
    assert (gateway_cache_device (cache, hash, &device));
    assert (device.id == 5 && device.user == 6);
    assert (!gateway_cache_device (cache, other, &device));
    gateway_cache_put_device (cache, hash, 5, 6, gateway_http_now_ms () - 1);
    assert (!gateway_cache_device (cache, hash, &device));
    //  Re-putting a device drops its old token.
    gateway_cache_put_device (cache, other, 5, 6, 0);
    assert (gateway_cache_devices (cache) == 1);
    assert (gateway_cache_device (cache, other, &device));
    gateway_port_t port = {.user = 6, .device = 5};
    gateway_cache_put_port (cache, "00000000-0000-4000-8000-000000000001", &port);
    gateway_port_t found;
    assert (gateway_cache_port (cache, "00000000-0000-4000-8000-000000000001", &found));
    assert (found.user == 6);
    assert (!gateway_cache_port (cache, "00000000-0000-4000-8000-000000000002", &found));
    assert (gateway_cache_load (cache) == -1);
    gateway_cache_destroy (&cache);
    gateway_cache_destroy (&cache);

    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    if (!conninfo || !*conninfo) {
        printf ("skipped database part (PHANTOM_TEST_DATABASE unset)\n");
        exit (77);
    }
    PGconn *conn = PQconnectdb (conninfo);
    assert (PQstatus (conn) == CONNECTION_OK);
    char email[64];
    snprintf (email, sizeof email, "cache-%d-%" PRId64 "@test", (int)getpid (), zclock_time ());
    const char *user_parameters[] = {email};
    char *user_id = s_value (conn,
                             "INSERT INTO users (email, name, password_hash, time_zone) "
                             "VALUES ($1, 'cache test', 'x', 'Europe/Berlin') RETURNING id",
                             1, user_parameters);
    uint8_t current[32], previous[32];
    crypto_hash_sha256 (current, (const uint8_t *)"current-token", 13);
    crypto_hash_sha256 (previous, (const uint8_t *)"previous-token", 14);
    char current_hex[65], previous_hex[65];
    s_hex (current, current_hex);
    s_hex (previous, previous_hex);
    const char *device_parameters[] = {user_id, current_hex, previous_hex};
    char *device_id = s_value (conn,
                               "INSERT INTO devices (user_id, name, token_hash, "
                               "previous_token_hash, previous_token_expires_at) "
                               "VALUES ($1, 'board', decode($2, 'hex'), decode($3, 'hex'), "
                               "now() + interval '1 hour') RETURNING id",
                               3, device_parameters);
    const char *port_parameters[] = {user_id, device_id};
    char *port_id =
        s_value (conn,
                 "INSERT INTO ports (user_id, device_id, name, expected_off, "
                 "expected_off_from, expected_off_to, off_watts) "
                 "VALUES ($1, $2, 'tv', 'window', '22:30', '06:15', 1.5) RETURNING id::text",
                 2, port_parameters);

    cache = gateway_cache_new (conninfo);
    assert (!gateway_cache_loaded (cache));
    assert (gateway_cache_load (cache) == 0);
    assert (gateway_cache_loaded (cache));
    assert (gateway_cache_device (cache, current, &device));
    assert (device.id == atoll (device_id) && device.user == atoll (user_id));
    assert (gateway_cache_device (cache, previous, &device));
    assert (gateway_cache_port (cache, port_id, &found));
    assert (found.user == atoll (user_id) && found.device == atoll (device_id));
    assert (found.settings.expected_off == PROTO_EXPECTED_OFF_WINDOW);
    assert (found.settings.off_from_min == 22 * 60 + 30);
    assert (found.settings.off_to_min == 6 * 60 + 15);
    assert (found.settings.off_watts == 1.5f);
    assert (found.settings.standby_watts == 15.0f);
    assert (found.settings.min_phantom_seconds == 60);
    assert (streq (found.settings.timezone, "Europe/Berlin"));

    //  Revocation reaches the cache through NOTIFY within a second.
    const char *revoke_parameters[] = {device_id};
    s_exec (conn, "UPDATE devices SET token_hash = NULL WHERE id = $1", 1, revoke_parameters);
    assert (s_wait_device (cache, current, false, 1000));
    assert (gateway_cache_device (cache, previous, &device));
    //  Grace window over: the previous token stops working.
    s_exec (conn,
            "UPDATE devices SET previous_token_expires_at = now() - interval '1 second' "
            "WHERE id = $1",
            1, revoke_parameters);
    assert (s_wait_device (cache, previous, false, 1000));

    //  A time zone change travels to the user's ports.
    s_exec (conn, "UPDATE users SET time_zone = 'Asia/Tokyo' WHERE id = $1", 1,
            (const char **)&user_id);
    for (int wait = 0; wait < 100; wait++) {
        gateway_cache_port (cache, port_id, &found);
        if (streq (found.settings.timezone, "Asia/Tokyo"))
            break;
        zclock_sleep (10);
    }
    assert (streq (found.settings.timezone, "Asia/Tokyo"));

    //  Synchronous refresh, without waiting for NOTIFY.
    const char *restore_parameters[] = {current_hex, device_id};
    s_exec (conn, "UPDATE devices SET token_hash = decode($1, 'hex') WHERE id = $2", 2,
            restore_parameters);
    gateway_cache_refresh_device (cache, atoll (device_id));
    assert (gateway_cache_device (cache, current, &device));
    gateway_cache_refresh_port (cache, "not-a-uuid");
    gateway_cache_refresh_user (cache, atoll (user_id));

    //  Deleting the device cascades to its port; both leave the cache.
    s_exec (conn, "DELETE FROM devices WHERE id = $1", 1, revoke_parameters);
    assert (s_wait_device (cache, current, false, 1000));
    for (int wait = 0; wait < 100 && gateway_cache_port (cache, port_id, NULL); wait++)
        zclock_sleep (10);
    assert (!gateway_cache_port (cache, port_id, NULL));

    //  A lost listener connection reconnects and reloads everything.
    s_exec (conn,
            "SELECT pg_terminate_backend (pid) FROM pg_stat_activity "
            "WHERE application_name = 'phantom-gateway-cache'",
            0, NULL);
    const char *device2_parameters[] = {user_id, current_hex};
    char *device2_id = s_value (conn,
                                "INSERT INTO devices (user_id, name, token_hash) "
                                "VALUES ($1, 'board2', decode($2, 'hex')) RETURNING id",
                                2, device2_parameters);
    assert (s_wait_device (cache, current, true, 5000));
    if (verbose)
        printf ("(devices %zu, ports %zu) ", gateway_cache_devices (cache),
                gateway_cache_ports (cache));

    s_exec (conn, "DELETE FROM users WHERE id = $1", 1, (const char **)&user_id);
    gateway_cache_destroy (&cache);
    PQfinish (conn);
    free (user_id);
    free (device_id);
    free (device2_id);
    free (port_id);
    printf ("OK\n");
}
