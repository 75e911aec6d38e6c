/*  =========================================================================
    store_session - one PostgreSQL session of the store, kept open
    =========================================================================
*/
#include "store_session.h"
#include "proto_pg.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define S_BACKOFF_MIN_MS 100
//  Most binary parameters of a statement (the writer's keys and readings).
#define S_PARAMS_MAX 16

struct _store_session_t {
    char *conninfo;                //  libpq connection string
    store_session_config_t config; //  what the session is
    bool verbose;                  //  debug logs
    PGconn *conn;                  //  NULL while disconnected
    int64_t backoff;               //  next reconnect delay, ms
    int64_t connect_at;            //  monotonic ms of the next connect attempt
    pthread_mutex_t cancel_lock;   //  guards cancel (store_session_cancel)
    PGcancel *cancel;              //  cancels the statement in flight, NULL if none
    atomic_bool cancelled;         //  failures are no news any more
};

store_session_t *
store_session_new (const char *conninfo, const store_session_config_t *config, bool verbose)
{
    assert (conninfo);
    assert (config && config->application && config->name);
    store_session_t *self = (store_session_t *)zmalloc (sizeof (store_session_t));
    self->conninfo = strdup (conninfo);
    if (!self->conninfo) {
        free (self);
        return NULL;
    }
    self->config = *config;
    self->verbose = verbose;
    self->backoff = S_BACKOFF_MIN_MS;
    pthread_mutex_init (&self->cancel_lock, NULL);
    atomic_init (&self->cancelled, false);
    return self;
}

//  Closes the connection; with backoff, the next connect waits.
static void
s_close (store_session_t *self)
{
    pthread_mutex_lock (&self->cancel_lock);
    if (self->cancel) {
        PQfreeCancel (self->cancel);
        self->cancel = NULL;
    }
    pthread_mutex_unlock (&self->cancel_lock);
    PQfinish (self->conn);
    self->conn = NULL;
}

void
store_session_destroy (store_session_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_session_t *self = *self_p;
        s_close (self);
        pthread_mutex_destroy (&self->cancel_lock);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

void
store_session_drop (store_session_t *self)
{
    assert (self);
    s_close (self);
    self->connect_at = zclock_mono () + self->backoff;
    self->backoff *= 2;
    if (self->backoff > self->config.backoff_max_ms)
        self->backoff = self->config.backoff_max_ms;
}

int
store_session_setup (store_session_t *self, PGconn *conn)
{
    assert (self);
    assert (conn);
    for (size_t index = 0; index < self->config.setting_count; index++) {
        PGresult *result = PQexec (conn, self->config.settings[index]);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        if (!ok)
            zsys_error ("%s - %s failed: %s", self->config.name, self->config.settings[index],
                        proto_pg_error (conn, result));
        PQclear (result);
        if (!ok)
            return -1;
    }
    for (size_t index = 0; index < self->config.statement_count; index++) {
        const store_session_statement_t *statement = &self->config.statements[index];
        PGresult *result = PQprepare (conn, statement->name, statement->sql, 0, NULL);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        if (!ok)
            zsys_error ("%s - prepare %s failed: %s", self->config.name, statement->name,
                        proto_pg_error (conn, result));
        PQclear (result);
        if (!ok)
            return -1;
    }
    return 0;
}

int
store_session_ensure (store_session_t *self)
{
    assert (self);
    if (self->conn)
        return 0;
    if (zclock_mono () < self->connect_at)
        return -1;
    //  proto_pg_connect logs why it could not.
    self->conn = proto_pg_connect (self->conninfo, self->config.application,
                                   self->config.statement_timeout_ms);
    if (!self->conn || store_session_setup (self, self->conn)) {
        if (self->verbose)
            zsys_debug ("%s - not connected, retrying in %" PRId64 " ms", self->config.name,
                        self->backoff);
        store_session_drop (self);
        return -1;
    }
    pthread_mutex_lock (&self->cancel_lock);
    self->cancel = PQgetCancel (self->conn);
    pthread_mutex_unlock (&self->cancel_lock);
    zsys_info ("%s - connected (backend %d)", self->config.name, PQbackendPID (self->conn));
    self->backoff = S_BACKOFF_MIN_MS;
    return 1;
}

PGconn *
store_session_conn (store_session_t *self)
{
    assert (self);
    return self->conn;
}

bool
store_session_connected (store_session_t *self)
{
    assert (self);
    return self->conn && PQstatus (self->conn) == CONNECTION_OK;
}

int
store_session_backend (store_session_t *self)
{
    assert (self);
    return self->conn ? PQbackendPID (self->conn) : 0;
}

int64_t
store_session_backoff (store_session_t *self)
{
    assert (self);
    return self->backoff;
}

int64_t
store_session_connect_at (store_session_t *self)
{
    assert (self);
    return self->connect_at;
}

PGresult *
store_session_exec (store_session_t *self, const char *what, const char *sql, int count,
                    const char *const *params, const int *lengths)
{
    assert (self);
    assert (count <= S_PARAMS_MAX);
    if (!self->conn)
        return NULL;
    static const int formats[S_PARAMS_MAX] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    PGresult *result =
        PQexecParams (self->conn, sql, count, NULL, params, lengths, lengths ? formats : NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
        return result;
    //  A statement cancelled by a stop is no news.
    if (!atomic_load (&self->cancelled))
        zsys_warning ("%s - %s failed: %s", self->config.name, what,
                      proto_pg_error (self->conn, result));
    PQclear (result);
    if (PQstatus (self->conn) != CONNECTION_OK)
        store_session_drop (self);
    return NULL;
}

void
store_session_cancel (store_session_t *self)
{
    assert (self);
    atomic_store (&self->cancelled, true);
    pthread_mutex_lock (&self->cancel_lock);
    if (self->cancel) {
        char error[256];
        PQcancel (self->cancel, error, sizeof (error));
    }
    pthread_mutex_unlock (&self->cancel_lock);
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

static void *
s_cancel_later (void *argument)
{
    zclock_sleep (300);
    store_session_cancel ((store_session_t *)argument);
    return NULL;
}

void
store_session_test (bool verbose)
{
    printf (" * store_session: ");
    if (verbose)
        printf ("\n");
    const char *database = store_fixture_database ();
    assert (database); //  the runner skips without one

    //  Settings and prepared statements on every connect; bounded, named
    static const char *settings[] = {"SET lock_timeout = '4s'"};
    static const store_session_statement_t statements[] = {{"session_test", "SELECT $1::int + 1"}};
    store_session_config_t config = {
        "phantom-store-session-test", "store session test", 1500, 400, settings, 1, statements, 1};
    store_session_t *session = store_session_new (database, &config, verbose);
    assert (session);
    assert (!store_session_connected (session));
    assert (store_session_conn (session) == NULL && store_session_backend (session) == 0);
    assert (store_session_ensure (session) == 1);
    assert (store_session_ensure (session) == 0);
    assert (store_session_connected (session) && store_session_backend (session) > 0);
    PGresult *result = store_session_exec (
        session, "settings",
        "SELECT current_setting ('statement_timeout'), current_setting ('application_name'),"
        " current_setting ('lock_timeout'), current_setting ('TimeZone')",
        0, NULL, NULL);
    assert (result);
    assert (streq (PQgetvalue (result, 0, 0), "1500ms"));
    assert (streq (PQgetvalue (result, 0, 1), "phantom-store-session-test"));
    assert (streq (PQgetvalue (result, 0, 2), "4s"));
    assert (streq (PQgetvalue (result, 0, 3), "UTC"));
    PQclear (result);
    const char *params[1] = {"41"};
    result =
        PQexecPrepared (store_session_conn (session), "session_test", 1, params, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK && streq (PQgetvalue (result, 0, 0), "42"));
    PQclear (result);

    //  Binary parameters: a bigint in network order
    const char eight[8] = {0, 0, 0, 0, 0, 0, 0, 7};
    const char *binary[1] = {eight};
    int lengths[1] = {8};
    result = store_session_exec (session, "binary", "SELECT $1::bigint * 6", 1, binary, lengths);
    assert (result && streq (PQgetvalue (result, 0, 0), "42"));
    PQclear (result);

    //  A failure: NULL, the connection stays
    assert (!store_session_exec (session, "bad", "SELECT nonsense FROM nowhere", 0, NULL, NULL));
    assert (store_session_connected (session));

    //  Killed under it: NULL, dropped, back after the backoff
    store_fixture_t *fixture = store_fixture_new (database, 0);
    char backend[16];
    snprintf (backend, sizeof (backend), "%d", store_session_backend (session));
    const char *kill_params[1] = {backend};
    PQclear (store_fixture_sql (fixture, "SELECT pg_terminate_backend ($1::int)", 1, kill_params));
    zclock_sleep (100);
    assert (!store_session_exec (session, "lost", "SELECT 1", 0, NULL, NULL));
    assert (!store_session_connected (session) && store_session_conn (session) == NULL);
    assert (store_session_connect_at (session) > zclock_mono ());
    assert (store_session_backoff (session) == 200);
    assert (store_session_ensure (session) == -1); //  not yet
    int64_t deadline = zclock_mono () + 2000;
    while (store_session_ensure (session) != 1) {
        assert (zclock_mono () < deadline);
        zclock_sleep (20);
    }
    assert (store_session_backoff (session) == 100);

    //  A cancel from another thread ends the statement in flight
    pthread_t thread;
    int rc = pthread_create (&thread, NULL, s_cancel_later, session);
    assert (rc == 0);
    int64_t started = zclock_mono ();
    assert (!store_session_exec (session, "sleep", "SELECT pg_sleep (1.2)", 0, NULL, NULL));
    assert (zclock_mono () - started < 1100);
    pthread_join (thread, NULL);
    store_session_destroy (&session);
    store_session_destroy (&session);

    //  Nobody there: -1, quickly, and the backoff grows to its maximum
    session = store_session_new ("host=127.0.0.1 port=1 dbname=none", &config, verbose);
    started = zclock_mono ();
    assert (store_session_ensure (session) == -1);
    assert (zclock_mono () - started < 6000);
    assert (store_session_backoff (session) == 200);
    assert (store_session_ensure (session) == -1); //  waits for the backoff
    assert (store_session_backoff (session) == 200);
    for (int attempt = 0; attempt < 3; attempt++) {
        zclock_sleep ((int)(store_session_connect_at (session) - zclock_mono ()) + 5);
        assert (store_session_ensure (session) == -1);
    }
    assert (store_session_backoff (session) == 400);
    store_session_destroy (&session);

    //  A setting the server refuses: not connected
    static const char *wrong[] = {"SET no_such_setting = 1"};
    config.settings = wrong;
    session = store_session_new (database, &config, verbose);
    assert (store_session_ensure (session) == -1);
    assert (!store_session_connected (session));
    store_session_destroy (&session);

    store_fixture_destroy (&fixture);
    printf ("OK\n");
}
