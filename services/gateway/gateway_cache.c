/*  =========================================================================
    gateway_cache - device-token hashes and port ownership in memory

    The sensor hot path authenticates and authorizes from here, without SQL.
    A listener thread with its own connection LISTENs on phantom_cache (see
    the triggers in 001_init.sql, 005_gateway_core.sql, 012_port_roles.sql)
    and re-reads the one row that changed; on connection loss it reconnects
    and reloads everything, because NOTIFYs sent while it was away are gone.
    Readers take a shared lock; the listener and refresh calls take it
    exclusively for one entry.

    Memory: 10,000 devices with 100,000 ports must fit a 64 MiB gateway
    (BENCH.md). Ports are 64-byte records in one dense array under an
    open-addressing index of 32-bit slots, keyed by the uuid's 16 bytes;
    time zones are interned. Full loads read rows one at a time (libpq
    single-row mode) so no 100,000-row result is ever held, and give freed
    memory back to the system afterwards.

    Token use: a lookup that matches a device's current token stamps the
    device's last_used in memory (at most once a second per device); the
    listener writes the stamps to devices.token_last_used_at at most every
    GATEWAY_CACHE_FLUSH_MS, and once more on destroy. No SQL per reading.
    =========================================================================
*/
#include "gateway.h"
#include "gateway_fixture.h"
#include "gateway_listener.h"
#include "gateway_port_table.h"
#include "gateway_token_table.h"
#include "gateway_token_use.h"
#include "proto_device_token.h"
#include "proto_pg.h"

#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <sys/select.h>

#define GATEWAY_CACHE_FLUSH_MS 60000
//  application_name of the connection that reloads and refreshes entries
//  (the listener's is "phantom-gateway-cache").
#define S_QUERY_APPLICATION "phantom-gateway-cache-query"
//  Distinct time zone names; IANA has about 600 with aliases.
#define ZONES_MAX 4096

typedef struct {
    int64_t id;                 //  device id
    int64_t user;               //  owner
    proto_device_token_t token; //  its token hashes and their expiries
    _Atomic int64_t last_used;  //  last match of the current token, ms; 0 = none
    _Atomic int64_t flushed;    //  last_used as last written to PostgreSQL
} s_device_t;

//  Interned time zone names; append-only, so a reader may use any index
//  an entry holds without a lock on the names. Index 0 is "" (UTC).
typedef struct {
    pthread_mutex_t mutex; //  guards appending and the lookup map
    char (*names)[PROTO_TIMEZONE_MAX + 1];
    _Atomic size_t count;
    zhashx_t *lookup; //  name -> index + 1 (as a pointer value)
} s_zones_t;

struct _gateway_cache_t {
    char *conninfo;                //  libpq connection string, NULL in tests
    pthread_rwlock_t lock;         //  guards the three maps
    zhashx_t *devices;             //  "id" -> s_device_t (owned)
    gateway_token_table_t *tokens; //  SHA-256 -> s_device_t (borrowed from devices)
    gateway_port_table_t *ports;   //  uuid -> gateway_port_entry_t
    s_zones_t zones;               //  time zone names of the ports
    pthread_mutex_t query_mutex;   //  guards query_conn
    PGconn *query_conn;            //  for refresh_* calls from handlers
    PGconn *listen_conn;           //  the listener's, handed over by load
    pthread_t thread;              //  listener
    bool thread_started;           //  joined on destroy
    atomic_bool stop;              //  ends the listener
    atomic_bool loaded;            //  a full load succeeded once
};

#define DEVICE_COLUMNS "SELECT id, user_id, " PROTO_DEVICE_TOKEN_COLUMNS " FROM devices"

#define PORT_COLUMNS                                                                               \
    "SELECT p.id::text, p.user_id, p.device_id, p.off_watts, p.standby_watts, "                    \
    "p.min_phantom_seconds, p.role, p.off_schedule::text, u.time_zone "                            \
    "FROM ports p JOIN users u ON u.id = p.user_id"

static void *s_listener (void *args);

//  --------------------------------------------------------------------------
//  Time zones.

static void
s_zones_init (s_zones_t *self)
{
    pthread_mutex_init (&self->mutex, NULL);
    //  Untouched pages cost no memory; about 600 names are ever used.
    self->names = calloc (ZONES_MAX, sizeof *self->names);
    self->lookup = zhashx_new ();
    assert (self->names && self->lookup);
    atomic_store (&self->count, 1); //  0 is "" (UTC)
}

static void
s_zones_destroy (s_zones_t *self)
{
    zhashx_destroy (&self->lookup);
    free (self->names);
    pthread_mutex_destroy (&self->mutex);
}

static uint16_t
s_zones_intern (s_zones_t *self, const char *name, const char *port)
{
    if (!*name)
        return 0;
    if (strlen (name) > PROTO_TIMEZONE_MAX) {
        zsys_warning ("gateway cache - port %s: time zone too long, using UTC", port);
        return 0;
    }
    pthread_mutex_lock (&self->mutex);
    size_t index = (size_t)(uintptr_t)zhashx_lookup (self->lookup, name);
    if (index)
        index--;
    else {
        index = atomic_load (&self->count);
        if (index >= ZONES_MAX) {
            zsys_warning ("gateway cache - port %s: too many time zones, using UTC", port);
            index = 0;
        } else {
            snprintf (self->names[index], sizeof self->names[index], "%s", name);
            //  Published after the name is written.
            atomic_store (&self->count, index + 1);
            zhashx_insert (self->lookup, name, (void *)(uintptr_t)(index + 1));
        }
    }
    pthread_mutex_unlock (&self->mutex);
    return (uint16_t)index;
}

//  --------------------------------------------------------------------------
static void
s_free_device (void **item)
{
    free (*item);
    *item = NULL;
}

static void
s_new_maps (zhashx_t **devices, gateway_token_table_t **tokens, gateway_port_table_t **ports)
{
    *devices = zhashx_new ();
    *tokens = gateway_token_table_new ();
    *ports = gateway_port_table_new ();
    assert (*devices);
    zhashx_set_destructor (*devices, s_free_device);
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
    s_zones_init (&self->zones);
    return self;
}

static void s_flush_used (gateway_cache_t *self, PGconn *conn);

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
        //  Last stamps of token use, so a restart loses none.
        if (self->listen_conn && PQstatus (self->listen_conn) == CONNECTION_OK)
            s_flush_used (self, self->listen_conn);
        if (self->listen_conn)
            PQfinish (self->listen_conn);
        if (self->query_conn)
            PQfinish (self->query_conn);
        gateway_token_table_destroy (&self->tokens);
        zhashx_destroy (&self->devices);
        gateway_port_table_destroy (&self->ports);
        s_zones_destroy (&self->zones);
        pthread_rwlock_destroy (&self->lock);
        pthread_mutex_destroy (&self->query_mutex);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Entry builders; shared by the full load and the one-row refresh.

static s_device_t *
s_device_from_row (PGresult *result, int row)
{
    s_device_t *device = (s_device_t *)zmalloc (sizeof (s_device_t));
    assert (device);
    device->id = atoll (PQgetvalue (result, row, 0));
    device->user = atoll (PQgetvalue (result, row, 1));
    //  Kept, and counted, even when no token of it may match.
    proto_device_token_from_row (&device->token, result, row, 2);
    return device;
}

//  Packs a port's stored off_schedule (jsonb text). One that does not
//  parse (written around the API) is logged and read as no window.
static void
s_schedule_load (const char *text, const char *port, uint32_t windows[PROTO_WINDOWS_MAX])
{
    const char *message = "not JSON";
    json_t *schedule = json_loads (text, JSON_DECODE_ANY, NULL);
    if (!schedule || gateway_cache_schedule_pack (schedule, PROTO_WINDOWS_MAX, windows, &message)) {
        memset (windows, 0, PROTO_WINDOWS_MAX * sizeof (uint32_t));
        zsys_warning ("gateway cache - port %s: off_schedule ignored (%s)", port, message);
    }
    json_decref (schedule);
}

//  false if the row's id is not a uuid (cannot happen with the schema).
static bool
s_port_from_row (gateway_cache_t *self, PGresult *result, int row, gateway_port_entry_t *port)
{
    memset (port, 0, sizeof *port);
    const char *id = PQgetvalue (result, row, 0);
    if (!gateway_port_table_uuid_parse (id, port->uuid))
        return false;
    port->user = atoll (PQgetvalue (result, row, 1));
    port->device = atoll (PQgetvalue (result, row, 2));
    port->off_watts = strtof (PQgetvalue (result, row, 3), NULL);
    port->standby_watts = strtof (PQgetvalue (result, row, 4), NULL);
    port->min_phantom_seconds = atoi (PQgetvalue (result, row, 5));
    const char *role = PQgetvalue (result, row, 6);
    port->role = streq (role, "should_be_off") ? PROTO_ROLE_SHOULD_BE_OFF
                 : streq (role, "always_on")   ? PROTO_ROLE_ALWAYS_ON
                                               : PROTO_ROLE_STANDBY;
    if (!PQgetisnull (result, row, 7))
        s_schedule_load (PQgetvalue (result, row, 7), id, port->windows);
    port->zone = s_zones_intern (&self->zones, PQgetvalue (result, row, 8), id);
    return true;
}

//  The public view of a port record.
static void
s_port_out (gateway_cache_t *self, const gateway_port_entry_t *port, gateway_port_t *out)
{
    memset (out, 0, sizeof *out);
    out->user = port->user;
    out->device = port->device;
    out->settings.off_watts = port->off_watts;
    out->settings.standby_watts = port->standby_watts;
    out->settings.min_phantom_seconds = port->min_phantom_seconds;
    out->settings.role = port->role;
    memcpy (out->settings.windows, port->windows, sizeof out->settings.windows);
    memcpy (out->settings.timezone, self->zones.names[port->zone], sizeof out->settings.timezone);
}

//  Under the write lock: replaces (or with NULL removes) a device and its
//  token keys in the given maps. A replacement with the same current token
//  keeps the stamps of its use.
static void
s_put_device (zhashx_t *devices, gateway_token_table_t *tokens, int64_t id, s_device_t *device)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRId64, id);
    s_device_t *old = (s_device_t *)zhashx_lookup (devices, key);
    if (old) {
        if (device && device->token.has_current && old->token.has_current &&
            memcmp (device->token.current, old->token.current, 32) == 0) {
            atomic_store (&device->last_used, atomic_load (&old->last_used));
            atomic_store (&device->flushed, atomic_load (&old->flushed));
        }
        if (old->token.has_current &&
            gateway_token_table_lookup (tokens, old->token.current) == old)
            gateway_token_table_delete (tokens, old->token.current);
        if (old->token.has_previous &&
            gateway_token_table_lookup (tokens, old->token.previous) == old)
            gateway_token_table_delete (tokens, old->token.previous);
        zhashx_delete (devices, key);
    }
    if (device) {
        zhashx_insert (devices, key, device);
        if (device->token.has_current)
            gateway_token_table_update (tokens, device->token.current, device);
        if (device->token.has_previous)
            gateway_token_table_update (tokens, device->token.previous, device);
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

//  Runs sql in single-row mode, calling row_fn for each row, so memory
//  holds one row at a time however large the table. 0 or -1.
typedef void (s_row_fn) (gateway_cache_t *self, PGresult *result, void *args);

static int
s_query_rows (gateway_cache_t *self, PGconn *conn, const char *sql, s_row_fn *row_fn, void *args)
{
    if (!PQsendQueryParams (conn, sql, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode (conn)) {
        zsys_warning ("gateway cache - query failed: %s", PQerrorMessage (conn));
        //  Whatever was sent is read to its end, so the connection stays usable.
        PGresult *result;
        while ((result = PQgetResult (conn)))
            PQclear (result);
        return -1;
    }
    int rc = 0;
    PGresult *result;
    while ((result = PQgetResult (conn))) {
        ExecStatusType status = PQresultStatus (result);
        if (status == PGRES_SINGLE_TUPLE)
            row_fn (self, result, args);
        else if (status != PGRES_TUPLES_OK) {
            zsys_warning ("gateway cache - query failed: %s", PQerrorMessage (conn));
            rc = -1;
        }
        PQclear (result);
    }
    return rc;
}

typedef struct {
    zhashx_t *devices;
    gateway_token_table_t *tokens;
    gateway_port_table_t *ports;
} s_load_t;

static void
s_load_device_row (gateway_cache_t *self, PGresult *result, void *args)
{
    (void)self;
    s_load_t *load = (s_load_t *)args;
    s_device_t *device = s_device_from_row (result, 0);
    s_put_device (load->devices, load->tokens, device->id, device);
}

static void
s_load_port_row (gateway_cache_t *self, PGresult *result, void *args)
{
    s_load_t *load = (s_load_t *)args;
    gateway_port_entry_t port;
    if (s_port_from_row (self, result, 0, &port))
        gateway_port_table_put (load->ports, &port);
}

//  Reads every device and port into fresh maps and swaps them in. 0 or -1.
static int
s_load_all (gateway_cache_t *self, PGconn *conn)
{
    s_load_t load;
    s_new_maps (&load.devices, &load.tokens, &load.ports);
    int rc = s_query_rows (self, conn,
                           DEVICE_COLUMNS
                           " WHERE token_hash IS NOT NULL OR previous_token_hash IS NOT NULL",
                           s_load_device_row, &load);
    if (rc == 0)
        rc = s_query_rows (self, conn, PORT_COLUMNS, s_load_port_row, &load);
    if (rc != 0) {
        gateway_token_table_destroy (&load.tokens);
        zhashx_destroy (&load.devices);
        gateway_port_table_destroy (&load.ports);
        return -1;
    }
    pthread_rwlock_wrlock (&self->lock);
    zhashx_t *old_devices = self->devices;
    gateway_token_table_t *old_tokens = self->tokens;
    gateway_port_table_t *old_ports = self->ports;
    //  Stamps of token use not yet written survive a reload.
    for (s_device_t *device = (s_device_t *)zhashx_first (load.devices); device;
         device = (s_device_t *)zhashx_next (load.devices)) {
        char key[24];
        snprintf (key, sizeof key, "%" PRId64, device->id);
        s_device_t *old = (s_device_t *)zhashx_lookup (old_devices, key);
        if (old && old->token.has_current && device->token.has_current &&
            memcmp (old->token.current, device->token.current, 32) == 0) {
            atomic_store (&device->last_used, atomic_load (&old->last_used));
            atomic_store (&device->flushed, atomic_load (&old->flushed));
        }
    }
    self->devices = load.devices;
    self->tokens = load.tokens;
    self->ports = load.ports;
    size_t devices = zhashx_size (load.devices), ports = gateway_port_table_size (load.ports);
    pthread_rwlock_unlock (&self->lock);
    gateway_token_table_destroy (&old_tokens);
    zhashx_destroy (&old_devices);
    gateway_port_table_destroy (&old_ports);
    //  The old maps and libpq's row buffers are free now; give the pages
    //  back instead of keeping the high-water mark of the load.
    malloc_trim (0);
    atomic_store (&self->loaded, true);
    zsys_info ("gateway cache - loaded %zu devices with tokens, %zu ports", devices, ports);
    return 0;
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
    uint8_t uuid[16];
    if (!gateway_port_table_uuid_parse (port_id, uuid))
        return;
    PGresult *result = s_query (conn, PORT_COLUMNS " WHERE p.id = $1::uuid", port_id);
    if (!result)
        return;
    gateway_port_entry_t port;
    bool found = PQntuples (result) == 1 && s_port_from_row (self, result, 0, &port);
    PQclear (result);
    pthread_rwlock_wrlock (&self->lock);
    if (found)
        gateway_port_table_put (self->ports, &port);
    else
        gateway_port_table_remove (self->ports, uuid);
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
    for (int row = 0; row < PQntuples (result); row++) {
        gateway_port_entry_t port;
        if (s_port_from_row (self, result, row, &port)) {
            pthread_rwlock_wrlock (&self->lock);
            gateway_port_table_put (self->ports, &port);
            pthread_rwlock_unlock (&self->lock);
        }
    }
    PQclear (result);
}

//  --------------------------------------------------------------------------
//  Writes the stamps of token use not yet written (gateway_token_use), and
//  marks those written as flushed.
static void
s_flush_used (gateway_cache_t *self, PGconn *conn)
{
    size_t capacity = 0, count = 0;
    pthread_rwlock_rdlock (&self->lock);
    capacity = zhashx_size (self->devices);
    int64_t *ids = (int64_t *)calloc (capacity + 1, sizeof (int64_t));
    int64_t *stamps = (int64_t *)calloc (capacity + 1, sizeof (int64_t));
    uint8_t (*hashes)[32] = calloc (capacity + 1, 32);
    assert (ids && stamps && hashes);
    for (s_device_t *device = (s_device_t *)zhashx_first (self->devices);
         device && count < capacity; device = (s_device_t *)zhashx_next (self->devices)) {
        int64_t used = atomic_load (&device->last_used);
        if (device->token.has_current && used > atomic_load (&device->flushed)) {
            ids[count] = device->id;
            stamps[count] = used;
            memcpy (hashes[count], device->token.current, 32);
            count++;
        }
    }
    pthread_rwlock_unlock (&self->lock);

    size_t written = gateway_token_use_write (conn, ids, stamps, hashes, count);
    pthread_rwlock_rdlock (&self->lock);
    for (size_t index = 0; index < written; index++) {
        char key[24];
        snprintf (key, sizeof key, "%" PRId64, ids[index]);
        s_device_t *device = (s_device_t *)zhashx_lookup (self->devices, key);
        if (device && atomic_load (&device->flushed) < stamps[index])
            atomic_store (&device->flushed, stamps[index]);
    }
    pthread_rwlock_unlock (&self->lock);
    free (ids);
    free (stamps);
    free (hashes);
}

//  --------------------------------------------------------------------------
//  Connects and LISTENs; NULL if PostgreSQL does not answer.
static PGconn *
s_connect_listen (gateway_cache_t *self)
{
    //  Named, so an operator (and the test) can tell it in pg_stat_activity.
    return gateway_listener_connect (self->conninfo, "phantom-gateway-cache", 0, "phantom_cache",
                                     "gateway cache");
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
        int rc = proto_pg_ensure (&self->query_conn, self->conninfo, S_QUERY_APPLICATION, 0) >= 0
                     ? s_load_all (self, self->query_conn)
                     : -1;
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
s_notified (void *arg, PGconn *conn, const char *payload)
{
    gateway_cache_t *self = (gateway_cache_t *)arg;
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
    int64_t next_flush = zclock_mono () + GATEWAY_CACHE_FLUSH_MS;
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
        if (zclock_mono () >= next_flush) {
            s_flush_used (self, conn);
            next_flush = zclock_mono () + GATEWAY_CACHE_FLUSH_MS;
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
        //  Even without input: the refreshes' and the flush's queries may
        //  have parsed notifications that wait in libpq.
        if (gateway_listener_read (&conn, s_notified, self, "gateway cache") < 0)
            self->listen_conn = NULL;
    }
    return NULL;
}

//  --------------------------------------------------------------------------
bool
gateway_cache_device (gateway_cache_t *self, const uint8_t token_hash[32], gateway_device_t *device)
{
    assert (self);
    //  A wrong token and a revoked one take the same path: a SHA-256 (by
    //  the caller) and a map miss, as a revoked token is simply absent.
    //  The key is the SHA-256 of a 256-bit random token, so the lookup's
    //  timing reveals nothing useful either.
    int64_t now = gateway_time_now_ms ();
    bool found = false;
    pthread_rwlock_rdlock (&self->lock);
    s_device_t *entry = gateway_token_table_lookup (self->tokens, token_hash);
    if (entry) {
        proto_device_token_match_t match =
            proto_device_token_matches (&entry->token, token_hash, now);
        found = match != PROTO_DEVICE_TOKEN_NONE;
        //  Only the current token's use is stamped, at most once a second
        //  per device: many handlers using one device's token would
        //  otherwise fight over the line.
        if (match == PROTO_DEVICE_TOKEN_CURRENT &&
            now - atomic_load_explicit (&entry->last_used, memory_order_relaxed) >= 1000)
            atomic_store_explicit (&entry->last_used, now, memory_order_relaxed);
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
    uint8_t uuid[16];
    if (!gateway_port_table_uuid_parse (port, uuid))
        return false;
    pthread_rwlock_rdlock (&self->lock);
    gateway_port_entry_t *entry = gateway_port_table_find (self->ports, uuid);
    if (entry && out)
        s_port_out (self, entry, out);
    pthread_rwlock_unlock (&self->lock);
    return entry != NULL;
}

//  The shared query connection, (re)connected as needed; NULL if none.
static PGconn *
s_query_conn (gateway_cache_t *self)
{
    if (!self->conninfo)
        return NULL;
    proto_pg_ensure (&self->query_conn, self->conninfo, S_QUERY_APPLICATION, 0);
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

void
gateway_cache_flush_used (gateway_cache_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->query_mutex);
    PGconn *conn = s_query_conn (self);
    if (conn)
        s_flush_used (self, conn);
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
    size_t size = gateway_port_table_size (self->ports);
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
    device->token.has_current = true;
    memcpy (device->token.current, token_hash, 32);
    device->token.current_expires = expires_ms > 0 ? expires_ms : INT64_MAX;
    pthread_rwlock_wrlock (&self->lock);
    s_put_device (self->devices, self->tokens, device_id, device);
    pthread_rwlock_unlock (&self->lock);
}

void
gateway_cache_put_port (gateway_cache_t *self, const char *port, const gateway_port_t *entry)
{
    gateway_port_entry_t record;
    memset (&record, 0, sizeof record);
    if (!gateway_port_table_uuid_parse (port, record.uuid))
        return;
    record.user = entry->user;
    record.device = entry->device;
    record.off_watts = entry->settings.off_watts;
    record.standby_watts = entry->settings.standby_watts;
    record.min_phantom_seconds = entry->settings.min_phantom_seconds;
    record.role = entry->settings.role;
    memcpy (record.windows, entry->settings.windows, sizeof record.windows);
    record.zone = s_zones_intern (&self->zones, entry->settings.timezone, port);
    pthread_rwlock_wrlock (&self->lock);
    gateway_port_table_put (self->ports, &record);
    pthread_rwlock_unlock (&self->lock);
}

//  ==========================================================================
//  Runs a statement of the test; asserts it succeeded.
static void
s_exec (PGconn *conn, const char *sql, int count, const char **parameters)
{
    free (gateway_fixture_sql (conn, sql, count, parameters));
}

//  The one value a statement of the test returns; caller frees.
static char *
s_value (PGconn *conn, const char *sql, int count, const char **parameters)
{
    char *value = gateway_fixture_sql (conn, sql, count, parameters);
    assert (value);
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

//  The token table against a plain array: random puts and deletes, keys
//  that share their first bytes (one probe chain) among them.
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
    gateway_cache_put_device (cache, hash, 5, 6, gateway_time_now_ms () - 1);
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

    const char *conninfo =
        gateway_fixture_database ("skipped database part (PHANTOM_TEST_DATABASE unset)");
    PGconn *conn = gateway_fixture_connect (conninfo);
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
    sodium_bin2hex (current_hex, sizeof current_hex, current, 32);
    sodium_bin2hex (previous_hex, sizeof previous_hex, previous, 32);
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
                 "INSERT INTO ports (user_id, device_id, name, role, off_schedule, off_watts) "
                 "VALUES ($1, $2, 'tv', 'should_be_off', '[{\"days\": [\"mon\", \"tue\", \"wed\", "
                 "\"thu\", \"fri\"], \"from\": \"09:00\", \"to\": \"17:00\"}, {\"days\": [\"sat\", "
                 "\"sun\"], \"from\": \"22:30\", \"to\": \"06:15\"}]', 1.5) RETURNING id::text",
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
    assert (found.settings.role == PROTO_ROLE_SHOULD_BE_OFF);
    assert (found.settings.windows[0] == PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60));
    assert (found.settings.windows[1] == PROTO_WINDOW_PACK (0x60, 22 * 60 + 30, 6 * 60 + 15));
    assert (found.settings.windows[2] == 0 && found.settings.windows[3] == 0);
    assert (found.settings.off_watts == 1.5f);
    assert (found.settings.standby_watts == 15.0f);
    assert (found.settings.min_phantom_seconds == 60);
    assert (streq (found.settings.timezone, "Europe/Berlin"));

    //  A role change reaches the cache through NOTIFY (the ports_cache
    //  trigger of 012 watches role and off_schedule).
    const char *port_only[] = {port_id};
    s_exec (conn, "UPDATE ports SET role = 'always_on', off_schedule = NULL WHERE id = $1", 1,
            port_only);
    for (int wait = 0; wait < 100; wait++) {
        gateway_cache_port (cache, port_id, &found);
        if (found.settings.role == PROTO_ROLE_ALWAYS_ON)
            break;
        zclock_sleep (10);
    }
    assert (found.settings.role == PROTO_ROLE_ALWAYS_ON);
    assert (found.settings.windows[0] == 0 && found.settings.windows[1] == 0);
    //  A schedule written around the API that does not parse: logged, no
    //  window (should be off always), no crash; nor at a full load.
    s_exec (conn,
            "UPDATE ports SET role = 'should_be_off', off_schedule = "
            "'[{\"days\": [\"someday\"], \"from\": \"9\", \"to\": 5}]' WHERE id = $1",
            1, port_only);
    for (int wait = 0; wait < 100; wait++) {
        gateway_cache_port (cache, port_id, &found);
        if (found.settings.role == PROTO_ROLE_SHOULD_BE_OFF)
            break;
        zclock_sleep (10);
    }
    assert (found.settings.role == PROTO_ROLE_SHOULD_BE_OFF);
    for (size_t index = 0; index < PROTO_WINDOWS_MAX; index++)
        assert (found.settings.windows[index] == 0);
    s_exec (conn, "UPDATE ports SET off_schedule = '[\"x\", 1]' WHERE id = $1", 1, port_only);
    assert (gateway_cache_load (cache) == 0);
    assert (gateway_cache_port (cache, port_id, &found));
    assert (found.settings.role == PROTO_ROLE_SHOULD_BE_OFF && found.settings.windows[0] == 0);

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
