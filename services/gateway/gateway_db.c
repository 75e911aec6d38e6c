/*  =========================================================================
    gateway_db - a small bounded pool of PostgreSQL connections

    Connections are opened lazily, at most size of them, and handed out one
    caller at a time; acquire waits a bounded time so a slow database turns
    into 503s instead of piling up civetweb threads. A connection that comes
    back broken is reset before anyone gets it again.

    Two limits keep one caller from taking the pool: every statement has a
    timeout, and one owner (a signed-in user) holds at most share
    connections at once, so the rest of the pool stays free for the others
    however many requests that owner sends.
    =========================================================================
*/
#include "gateway.h"
#include "gateway_fixture.h"
#include "proto_pg.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

//  A connection handed out to an owner (or reserved for one while it opens).
typedef struct {
    int64_t owner; //  who holds it, 0: the entry is free
    PGconn *conn;  //  NULL while it is being opened
} s_holder_t;

struct _gateway_db_t {
    char *conninfo;           //  libpq connection string
    char *application;        //  application_name of its connections
    int statement_timeout_ms; //  bound of every statement, 0: none
    int size;                 //  most connections
    int share;                //  most connections one owner holds at once
    pthread_mutex_t mutex;    //  guards the fields below
    pthread_cond_t cond;      //  broadcast on release: waiters wait for different things
    PGconn **idle;            //  connections nobody holds
    int idle_count;           //  how many in idle
    int open_count;           //  connections in existence (held or idle)
    s_holder_t *holders;      //  connections owners hold, size entries
};

//  The application_name the connection string (or PGAPPNAME) gives, else
//  "phantom-gateway": a test names its pool's backends so that it can find
//  them in pg_stat_activity. Caller frees.
static char *
s_application (const char *conninfo)
{
    char *name = NULL;
    PQconninfoOption *parsed = PQconninfoParse (conninfo, NULL);
    for (PQconninfoOption *option = parsed; option && option->keyword; option++)
        if (streq (option->keyword, "application_name") && option->val && *option->val)
            name = strdup (option->val);
    PQconninfoFree (parsed);
    const char *environment = getenv ("PGAPPNAME");
    if (!name)
        name = strdup (environment && *environment ? environment : "phantom-gateway");
    return name;
}

gateway_db_t *
gateway_db_new (const char *conninfo, int size)
{
    assert (conninfo);
    if (size < 1)
        size = 1;
    gateway_db_t *self = (gateway_db_t *)zmalloc (sizeof (gateway_db_t));
    assert (self);
    self->conninfo = strdup (conninfo);
    self->application = s_application (conninfo);
    self->size = size;
    self->share = size;
    self->idle = (PGconn **)calloc ((size_t)size, sizeof (PGconn *));
    self->holders = (s_holder_t *)calloc ((size_t)size, sizeof (s_holder_t));
    assert (self->conninfo && self->application && self->idle && self->holders);
    pthread_mutex_init (&self->mutex, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init (&attr);
    pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
    pthread_cond_init (&self->cond, &attr);
    pthread_condattr_destroy (&attr);
    return self;
}

void
gateway_db_destroy (gateway_db_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_db_t *self = *self_p;
        //  Connections still held are the holders' bug; close what is idle.
        for (int index = 0; index < self->idle_count; index++)
            PQfinish (self->idle[index]);
        pthread_mutex_destroy (&self->mutex);
        pthread_cond_destroy (&self->cond);
        free (self->holders);
        free (self->idle);
        free (self->application);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

void
gateway_db_set_limits (gateway_db_t *self, int statement_timeout_ms, int share)
{
    assert (self);
    pthread_mutex_lock (&self->mutex);
    assert (self->open_count == 0);
    self->share = share < 1 ? 1 : share > self->size ? self->size : share;
    //  A startup option rather than a SET (proto_pg_connect adds it to the
    //  string's own options): it outlives PQreset (a reconnect after a
    //  PostgreSQL restart), and RESET, which the export sends before it
    //  gives a connection back, returns to it.
    self->statement_timeout_ms = statement_timeout_ms > 0 ? statement_timeout_ms : 0;
    pthread_mutex_unlock (&self->mutex);
}

//  Opens a connection, bounded and in UTC; NULL if PostgreSQL does not answer.
static PGconn *
s_connect (gateway_db_t *self)
{
    return proto_pg_connect (self->conninfo, self->application, self->statement_timeout_ms);
}

//  Connections owner holds now (or that are being opened for it).
static int
s_held_by (gateway_db_t *self, int64_t owner)
{
    int count = 0;
    for (int index = 0; index < self->size; index++)
        count += self->holders[index].owner == owner;
    return count;
}

//  Records conn (NULL: not open yet) as held by owner; returns its entry.
static s_holder_t *
s_hold (gateway_db_t *self, int64_t owner, PGconn *conn)
{
    for (int index = 0; index < self->size; index++)
        if (self->holders[index].owner == 0) {
            self->holders[index] = (s_holder_t){owner, conn};
            return &self->holders[index];
        }
    //  An owner holds one of the size connections, so an entry is free.
    assert (false);
    return NULL;
}

PGconn *
gateway_db_acquire (gateway_db_t *self, int timeout_ms)
{
    return gateway_db_acquire_for (self, 0, timeout_ms, NULL);
}

PGconn *
gateway_db_acquire_for (gateway_db_t *self, int64_t owner, int timeout_ms, bool *over_share)
{
    assert (self);
    assert (owner >= 0);
    struct timespec deadline = proto_deadline_ms (timeout_ms);
    pthread_mutex_lock (&self->mutex);
    bool full = owner && s_held_by (self, owner) >= self->share;
    while (full || (self->idle_count == 0 && self->open_count >= self->size)) {
        if (pthread_cond_timedwait (&self->cond, &self->mutex, &deadline) == ETIMEDOUT)
            break;
        full = owner && s_held_by (self, owner) >= self->share;
    }
    if (over_share)
        *over_share = full;
    PGconn *conn = NULL;
    bool must_open = false;
    if (full)
        ; //  the owner's own requests hold its share: it waits for those
    else if (self->idle_count > 0)
        conn = self->idle[--self->idle_count];
    else if (self->open_count < self->size) {
        self->open_count++; //  reserved; opened outside the lock
        must_open = true;
    }
    s_holder_t *holder = owner && (conn || must_open) ? s_hold (self, owner, conn) : NULL;
    pthread_mutex_unlock (&self->mutex);

    bool dropped = false;
    if (conn && PQstatus (conn) != CONNECTION_OK) {
        PQreset (conn);
        if (PQstatus (conn) != CONNECTION_OK) {
            PQfinish (conn);
            conn = NULL;
            dropped = true;
        }
    }
    if (must_open)
        conn = s_connect (self);
    if (must_open || dropped) {
        pthread_mutex_lock (&self->mutex);
        if (conn) {
            if (holder)
                holder->conn = conn;
        } else {
            //  The reservation, or the connection that could not be reset.
            self->open_count--;
            if (holder)
                *holder = (s_holder_t){0, NULL};
            pthread_cond_broadcast (&self->cond);
        }
        pthread_mutex_unlock (&self->mutex);
    }
    return conn;
}

void
gateway_db_release (gateway_db_t *self, PGconn *conn)
{
    assert (self);
    if (!conn)
        return;
    //  A connection left inside a failed or open transaction would poison
    //  the next user; drop it instead.
    bool broken = PQstatus (conn) != CONNECTION_OK || PQtransactionStatus (conn) != PQTRANS_IDLE;
    pthread_mutex_lock (&self->mutex);
    for (int index = 0; index < self->size; index++)
        if (self->holders[index].owner && self->holders[index].conn == conn)
            self->holders[index] = (s_holder_t){0, NULL};
    if (broken || self->idle_count >= self->size) {
        self->open_count--;
        pthread_mutex_unlock (&self->mutex);
        PQfinish (conn);
        pthread_mutex_lock (&self->mutex);
    } else
        self->idle[self->idle_count++] = conn;
    pthread_cond_broadcast (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

//  ==========================================================================
//  Self test

//  A connection to give back later, from another thread.
typedef struct {
    gateway_db_t *db;
    PGconn *conn;
} s_release_later_t;

static void *
s_release_later (void *args)
{
    s_release_later_t *later = (s_release_later_t *)args;
    zclock_sleep (200);
    gateway_db_release (later->db, later->conn);
    return NULL;
}

//  The server's value of setting on conn; caller frees.
static char *
s_show (PGconn *conn, const char *setting)
{
    const char *values[] = {setting};
    PGresult *result =
        PQexecParams (conn, "SELECT current_setting ($1)", 1, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    char *value = strdup (PQgetvalue (result, 0, 0));
    PQclear (result);
    return value;
}

//  The limits: the share, and the statement timeout through what happens
//  to a connection afterwards (cancelled statement, RESET, PQreset).
static void
s_test_limits (const char *conninfo)
{
    //  A key=value string keeps its own options beside the timeout.
    bool own_options = !strstr (conninfo, "://");
    char *with_options = own_options ? zsys_sprintf ("%s options='-c lock_timeout=1234'", conninfo)
                                     : strdup (conninfo);
    gateway_db_t *db = gateway_db_new (with_options, 3);
    gateway_db_set_limits (db, 300, 2);
    bool over_share = true;
    PGconn *mine[2];
    for (int index = 0; index < 2; index++) {
        mine[index] = gateway_db_acquire_for (db, 7, 1000, &over_share);
        assert (mine[index] && !over_share);
    }
    //  Owner 7 is at its share: it waits its bound and is told why, while
    //  owner 8 gets the pool's last connection.
    int64_t started = zclock_mono ();
    assert (gateway_db_acquire_for (db, 7, 200, &over_share) == NULL && over_share);
    assert (zclock_mono () - started >= 190);
    PGconn *other = gateway_db_acquire_for (db, 8, 1000, &over_share);
    assert (other && !over_share);
    //  Now the pool is full: that is not a share's fault.
    assert (gateway_db_acquire_for (db, 9, 100, &over_share) == NULL && !over_share);
    //  A connection owner 7 gives back lets its waiting request in.
    s_release_later_t later = {db, mine[0]};
    pthread_t thread;
    assert (pthread_create (&thread, NULL, s_release_later, &later) == 0);
    started = zclock_mono ();
    PGconn *again = gateway_db_acquire_for (db, 7, 2000, &over_share);
    assert (again == mine[0] && !over_share);
    assert (zclock_mono () - started < 1500);
    pthread_join (thread, NULL);

    //  A statement past the timeout is cancelled; the connection is idle
    //  and goes back to the pool, which hands it out again.
    PGresult *result = PQexec (other, "SELECT pg_sleep (5)");
    const char *code = PQresultErrorField (result, PG_DIAG_SQLSTATE);
    assert (PQresultStatus (result) == PGRES_FATAL_ERROR && code && streq (code, "57014"));
    PQclear (result);
    assert (PQtransactionStatus (other) == PQTRANS_IDLE);
    gateway_db_release (db, other);
    assert (gateway_db_acquire_for (db, 8, 1000, &over_share) == other);
    char *value = s_show (other, "statement_timeout");
    assert (streq (value, "300ms"));
    free (value);
    //  RESET (the export's, before it gives a connection back) and a
    //  reconnect keep it, and the connection string's own options stay.
    PQclear (PQexec (other, "SET statement_timeout = 0; RESET statement_timeout"));
    PQreset (other);
    value = s_show (other, "statement_timeout");
    assert (streq (value, "300ms"));
    free (value);
    value = s_show (other, "lock_timeout");
    assert (!own_options || streq (value, "1234ms"));
    free (value);
    gateway_db_release (db, other);
    gateway_db_release (db, mine[1]);
    gateway_db_release (db, again);
    gateway_db_destroy (&db);
    free (with_options);
}

void
gateway_db_test (bool verbose)
{
    printf (" * gateway_db: ");
    const char *conninfo = gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset)");
    s_test_limits (conninfo);
    gateway_db_t *db = gateway_db_new (conninfo, 2);
    PGconn *first = gateway_db_acquire (db, 1000);
    PGconn *second = gateway_db_acquire (db, 1000);
    assert (first && second && first != second);
    //  Pool exhausted: the third waits its bound, then gets nothing.
    int64_t started = zclock_mono ();
    PGconn *third = gateway_db_acquire (db, 200);
    assert (third == NULL);
    assert (zclock_mono () - started >= 190);
    PGresult *result = PQexec (first, "SELECT 1");
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    PQclear (result);
    gateway_db_release (db, first);
    third = gateway_db_acquire (db, 200);
    assert (third == first);
    //  A connection returned inside a transaction is not reused.
    PQclear (PQexec (third, "BEGIN"));
    gateway_db_release (db, third);
    third = gateway_db_acquire (db, 1000);
    assert (third);
    assert (PQtransactionStatus (third) == PQTRANS_IDLE);
    gateway_db_release (db, third);
    gateway_db_release (db, second);
    gateway_db_destroy (&db);
    gateway_db_destroy (&db);

    //  No server: acquire fails within its bound instead of hanging.
    db = gateway_db_new ("host=/nonexistent port=1 connect_timeout=1", 1);
    assert (gateway_db_acquire (db, 100) == NULL);
    gateway_db_destroy (&db);
    if (verbose)
        printf ("(pool bounds, share and statement timeout checked) ");
    printf ("OK\n");
}
