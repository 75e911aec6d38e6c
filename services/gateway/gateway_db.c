/*  =========================================================================
    gateway_db - a small bounded pool of PostgreSQL connections

    Connections are opened lazily, at most size of them, and handed out one
    caller at a time; acquire waits a bounded time so a slow database turns
    into 503s instead of piling up civetweb threads. A connection that comes
    back broken is reset before anyone gets it again.
    =========================================================================
*/
#include "gateway.h"

#include <errno.h>
#include <pthread.h>
#include <time.h>

struct _gateway_db_t {
    char *conninfo;        //  libpq connection string
    int size;              //  most connections
    pthread_mutex_t mutex; //  guards the fields below
    pthread_cond_t cond;   //  signalled on release
    PGconn **idle;         //  connections nobody holds
    int idle_count;        //  how many in idle
    int open_count;        //  connections in existence (held or idle)
};

gateway_db_t *
gateway_db_new (const char *conninfo, int size)
{
    assert (conninfo);
    if (size < 1)
        size = 1;
    gateway_db_t *self = (gateway_db_t *)zmalloc (sizeof (gateway_db_t));
    assert (self);
    self->conninfo = strdup (conninfo);
    self->size = size;
    self->idle = (PGconn **)calloc ((size_t)size, sizeof (PGconn *));
    assert (self->conninfo && self->idle);
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
        free (self->idle);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  Opens a connection; NULL if PostgreSQL does not answer.
static PGconn *
s_connect (gateway_db_t *self)
{
    PGconn *conn = PQconnectdb (self->conninfo);
    if (PQstatus (conn) != CONNECTION_OK) {
        zsys_warning ("gateway db - cannot connect: %s", PQerrorMessage (conn));
        PQfinish (conn);
        return NULL;
    }
    //  Timestamps in UTC, whatever the server's default.
    PQclear (PQexec (conn, "SET TIME ZONE 'UTC'"));
    return conn;
}

PGconn *
gateway_db_acquire (gateway_db_t *self, int timeout_ms)
{
    assert (self);
    struct timespec deadline;
    clock_gettime (CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock (&self->mutex);
    while (self->idle_count == 0 && self->open_count >= self->size) {
        if (pthread_cond_timedwait (&self->cond, &self->mutex, &deadline) == ETIMEDOUT)
            break;
    }
    PGconn *conn = NULL;
    bool must_open = false;
    if (self->idle_count > 0)
        conn = self->idle[--self->idle_count];
    else if (self->open_count < self->size) {
        self->open_count++; //  reserved; opened outside the lock
        must_open = true;
    }
    pthread_mutex_unlock (&self->mutex);

    if (conn && PQstatus (conn) != CONNECTION_OK) {
        PQreset (conn);
        if (PQstatus (conn) != CONNECTION_OK) {
            PQfinish (conn);
            conn = NULL;
            must_open = false;
            pthread_mutex_lock (&self->mutex);
            self->open_count--;
            pthread_cond_signal (&self->cond);
            pthread_mutex_unlock (&self->mutex);
        }
    }
    if (must_open) {
        conn = s_connect (self);
        if (!conn) {
            pthread_mutex_lock (&self->mutex);
            self->open_count--;
            pthread_cond_signal (&self->cond);
            pthread_mutex_unlock (&self->mutex);
        }
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
    if (broken || self->idle_count >= self->size) {
        self->open_count--;
        pthread_mutex_unlock (&self->mutex);
        PQfinish (conn);
        pthread_mutex_lock (&self->mutex);
    } else
        self->idle[self->idle_count++] = conn;
    pthread_cond_signal (&self->cond);
    pthread_mutex_unlock (&self->mutex);
}

//  ==========================================================================
void
gateway_db_test (bool verbose)
{
    printf (" * gateway_db: ");
    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    if (!conninfo || !*conninfo) {
        printf ("skipped (PHANTOM_TEST_DATABASE unset)\n");
        exit (77);
    }
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
        printf ("(pool bounds checked) ");
    printf ("OK\n");
}
