/*  =========================================================================
    store_lanes - the lanes' rollups, and the minute they start from

    Out of store_maintenance, whose runs read the rollups: the set grows
    from the lanes' threads and is read from the maintenance's, so it has
    a lock of its own, held only over the set.
    =========================================================================
*/
#include "store_lanes.h"
#include "proto_pg.h"
#include "store_fixture.h"
#include "store_maintenance.h"
#include "store_session.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S_MINUTE_MS (60 * 1000)
//  Ports a lane's rollup keeps; beyond, it forgets them all (their open
//  minutes are then re-rolled from the table).
#define S_ROLLUP_PORTS_MAX 1000000

struct _store_lanes_t {
    char *conninfo;       //  libpq connection string, to ask where lanes start
    bool verbose;         //  debug logs
    pthread_mutex_t lock; //  guards rollups and count
    store_rollup_t *rollups[STORE_MAINTENANCE_ROLLUPS_MAX];
    size_t count; //  rollups made
    int64_t from; //  their first minute, ms; 0 until asked
};

store_lanes_t *
store_lanes_new (const char *conninfo, bool verbose)
{
    assert (conninfo);
    store_lanes_t *self = (store_lanes_t *)zmalloc (sizeof (store_lanes_t));
    self->conninfo = strdup (conninfo);
    if (!self->conninfo) {
        free (self);
        return NULL;
    }
    self->verbose = verbose;
    pthread_mutex_init (&self->lock, NULL);
    return self;
}

void
store_lanes_destroy (store_lanes_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_lanes_t *self = *self_p;
        for (size_t index = 0; index < self->count; index++)
            store_rollup_destroy (&self->rollups[index]);
        pthread_mutex_destroy (&self->lock);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

store_rollup_t *
store_lanes_new_rollup (store_lanes_t *self)
{
    assert (self);
    //  Every lane's from: asked before the first, which comes before any
    //  lane writes (store_server_set_maintenance, store_server_add_writer).
    if (self->from == 0)
        self->from = store_lanes_ask_from (self, STORE_SESSION_WRITERS, NULL);
    return store_lanes_new_rollup_from (self, self->from);
}

store_rollup_t *
store_lanes_new_rollup_from (store_lanes_t *self, int64_t from_ms)
{
    assert (self);
    store_rollup_t *rollup = NULL;
    pthread_mutex_lock (&self->lock);
    if (self->count < STORE_MAINTENANCE_ROLLUPS_MAX) {
        rollup = store_rollup_new (from_ms, (int64_t)STORE_MAINTENANCE_GAP_SECONDS * 1000,
                                   S_ROLLUP_PORTS_MAX);
        if (rollup)
            self->rollups[self->count++] = rollup;
    }
    pthread_mutex_unlock (&self->lock);
    return rollup;
}

void
store_lanes_set_from (store_lanes_t *self, int64_t from_ms)
{
    assert (self);
    self->from = from_ms;
}

size_t
store_lanes_count (store_lanes_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    size_t count = self->count;
    pthread_mutex_unlock (&self->lock);
    return count;
}

store_rollup_t *
store_lanes_rollup (store_lanes_t *self, size_t index)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    assert (index < self->count);
    store_rollup_t *rollup = self->rollups[index];
    pthread_mutex_unlock (&self->lock);
    return rollup;
}

bool
store_lanes_writing_below (store_lanes_t *self, int64_t high)
{
    assert (self);
    bool busy = false;
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < self->count && !busy; index++)
        busy = store_rollup_writing (self->rollups[index]) < high;
    pthread_mutex_unlock (&self->lock);
    return busy;
}

int64_t
store_lanes_memory_from (store_lanes_t *self)
{
    assert (self);
    int64_t from = INT64_MIN;
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < self->count; index++) {
        int64_t first = store_rollup_from (self->rollups[index]) / 1000;
        from = first > from ? first : from; //  the latest: all keep it
    }
    if (!self->count)
        from = INT64_MAX;
    pthread_mutex_unlock (&self->lock);
    return from;
}

//  How long after the start the lanes' rollups take over when the table
//  cannot tell: an earlier process may have committed readings up to 5
//  minutes ahead of its clock (the gateway's SKEW_FUTURE_MS), and a lane
//  must have seen every reading of a minute it vouches for. A minute more
//  for clocks that differ.
#define S_MEMORY_AFTER_MS (6 * S_MINUTE_MS)
//  Longest the start waits for the table to tell.
#define S_LANES_FROM_TIMEOUT_MS 2000

//  The first minute the lanes can vouch for (ms), asked once before they
//  write: the current minute, or the one after the newest reading an
//  earlier process committed at or after it, if no other store backend is
//  busy (a killed process's last COMMIT may still be running; an idle
//  backend of it can commit nothing more). The newest reading is found
//  port by port, backwards on the (port_id, ts) index: ~7 us a port, not a
//  read of today's partition (there is no index on ts). Ports deleted
//  since do not count: their rollups are not written. Bounded by a
//  statement timeout, after which (or on any failure) the lanes take over
//  S_MEMORY_AFTER_MS after the start, and the minutes until then are
//  rolled up from the table, each a read of today's partition. fell_back
//  (unless NULL) tells which.
int64_t
store_lanes_ask_from (store_lanes_t *self, const char *lanes_application, bool *fell_back)
{
    int64_t fallback = zclock_time () + S_MEMORY_AFTER_MS;
    PGconn *conn =
        proto_pg_connect (self->conninfo, STORE_SESSION_MAINTENANCE, S_LANES_FROM_TIMEOUT_MS);
    PGresult *result = NULL;
    if (conn) {
        const char *params[1] = {lanes_application};
        result = PQexecParams (
            conn,
            "SELECT (SELECT count (*) FROM pg_stat_activity"
            "        WHERE application_name = $1 AND state <> 'idle'"
            "          AND datname = current_database () AND pid <> pg_backend_pid ()),"
            "       (extract (epoch FROM minute) * 1000)::bigint,"
            "       (SELECT (extract (epoch FROM max (newest)) * 1000)::bigint"
            "        FROM ports p, LATERAL (SELECT r.ts AS newest FROM readings r"
            "                               WHERE r.port_id = p.id AND r.ts >= minute"
            "                               ORDER BY r.ts DESC LIMIT 1) n)"
            " FROM (SELECT date_bin ('1 minute', now (), timestamptz 'epoch') AS minute) now",
            1, NULL, params, NULL, NULL, 0);
    }
    //  (proto_pg_connect logged why it could not)
    const char *why = conn ? proto_pg_error (conn, result) : "cannot connect";
    int64_t from = fallback;
    if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1) {
        why = "another store backend is busy";
        if (strtoll (PQgetvalue (result, 0, 0), NULL, 10) == 0) {
            int64_t minute = strtoll (PQgetvalue (result, 0, 1), NULL, 10);
            int64_t newest = PQgetisnull (result, 0, 2)
                                 ? INT64_MIN
                                 : strtoll (PQgetvalue (result, 0, 2), NULL, 10);
            int64_t after = newest - newest % S_MINUTE_MS + S_MINUTE_MS;
            from = newest == INT64_MIN || after < minute ? minute : after;
            why = NULL;
        }
    }
    if (fell_back)
        *fell_back = why != NULL;
    if (why)
        zsys_info ("store maintenance - lanes' rollups from 6 minutes after the start: %s", why);
    else if (self->verbose)
        zsys_debug ("store maintenance - lanes' rollups from %" PRId64, from / 1000);
    PQclear (result);
    PQfinish (conn);
    return from;
}

//  --------------------------------------------------------------------------
//  Self test

//  Where the lanes' rollups start: the current minute, or the one after
//  the newest reading at or after it; 6 minutes on while another backend
//  of the lanes' name is in a statement or transaction, or when the
//  database cannot be asked. (The lanes' name here is this test's own, so
//  store tests running beside it do not count as busy; other tests'
//  readings can only move the answer later.)
static void
s_ask_from_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    store_lanes_t *self = store_lanes_new (database, verbose);
    assert (self);
    char lanes[64];
    snprintf (lanes, sizeof (lanes), "phantom-store-test-%d", (int)getpid ());
    bool fell_back = true;
    int64_t now = zclock_time ();
    int64_t from = store_lanes_ask_from (self, lanes, &fell_back);
    assert (!fell_back);
    assert (from % S_MINUTE_MS == 0);
    assert (from >= now - now % S_MINUTE_MS - S_MINUTE_MS); //  clocks may differ a little

    //  A reading 4 minutes ahead (an earlier process took it): after it.
    int64_t ahead = zclock_time () / 1000 + 240;
    store_fixture_reading (fixture, fixture->ports[0], ahead, 5);
    from = store_lanes_ask_from (self, lanes, &fell_back);
    assert (!fell_back);
    assert (from % S_MINUTE_MS == 0 && from > ahead * 1000);

    //  A backend of that name in a transaction (a killed store's COMMIT
    //  may still be running): 6 minutes after now.
    PGconn *busy = proto_pg_connect (database, lanes, 0);
    assert (busy);
    PQclear (PQexec (busy, "BEGIN"));
    PQclear (PQexec (busy, "SELECT 1"));
    now = zclock_time ();
    from = store_lanes_ask_from (self, lanes, &fell_back);
    assert (fell_back && from >= now + S_MEMORY_AFTER_MS);
    //  Idle once the transaction ends: it can commit nothing more.
    PQclear (PQexec (busy, "COMMIT"));
    from = store_lanes_ask_from (self, lanes, &fell_back);
    assert (!fell_back && from > ahead * 1000);
    PQfinish (busy);
    store_lanes_destroy (&self);

    //  No database to ask: 6 minutes after now.
    self = store_lanes_new ("host=/nonexistent dbname=none connect_timeout=2", verbose);
    assert (self);
    now = zclock_time ();
    from = store_lanes_ask_from (self, lanes, &fell_back);
    assert (fell_back && from >= now + S_MEMORY_AFTER_MS);
    store_lanes_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   lanes' rollups start: OK\n");
}

void
store_lanes_test (bool verbose)
{
    printf (" * store_lanes: ");
    const char *database = store_fixture_database ();
    assert (database); //  registered as needing it
    //  The set: rollups from the minute set, counted, none writing
    store_lanes_t *self = store_lanes_new (database, verbose);
    assert (self);
    assert (store_lanes_count (self) == 0);
    assert (store_lanes_memory_from (self) == INT64_MAX);
    store_lanes_set_from (self, 1764221040000);
    store_rollup_t *rollup = store_lanes_new_rollup (self);
    assert (rollup && store_lanes_count (self) == 1 && store_lanes_rollup (self, 0) == rollup);
    assert (store_lanes_memory_from (self) == 1764221040);
    assert (!store_lanes_writing_below (self, INT64_MAX - 1));
    store_rollup_set_writing (rollup, 100);
    assert (store_lanes_writing_below (self, 101) && !store_lanes_writing_below (self, 100));
    store_rollup_set_writing (rollup, INT64_MAX);
    store_lanes_destroy (&self);
    store_lanes_destroy (&self);

    s_ask_from_test (database, verbose);
    printf ("OK\n");
}
