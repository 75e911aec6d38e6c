/*  =========================================================================
    store_maintenance - rollups and retention, on a session of its own
    =========================================================================
*/
#include "store_maintenance.h"
#include "proto.h"
#include "proto_pg.h"
#include "store_column.h"
#include "store_housekeeping.h"
#include "store_lanes.h"
#include "store_rollup.h"
#include "store_session.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BACKOFF_MAX_MS (10 * 1000)
#define S_MINUTE_MS (60 * 1000)
//  Catching up after a downtime: one statement per hour of readings, so
//  each stays far inside the statement timeout and a stop is noticed.
#define S_CHUNK_SECONDS 3600
//  Longest sleep of the thread between checks of what is due (marks
//  committed by the lanes among them).
#define S_WAIT_MAX_MS 200

struct _store_maintenance_t {
    char *conninfo;                     //  libpq connection string
    store_maintenance_policy_t policy;  //  what is kept, how far back to re-roll
    bool verbose;                       //  debug logs
    store_session_t *session;           //  its own connection
    store_housekeeping_t *housekeeping; //  rollups' partitions, retention
    int64_t rollup_at;                  //  monotonic ms of the next rollup
    zactor_t *actor;                    //  the thread, once started
    atomic_bool stopping;               //  set by destroy; the thread stops between statements
    //  Pairs a run could not write to rollup_marks, for the next run
    pthread_mutex_t dirty_lock;  //  guards dirty, overflow
    zhashx_t *dirty;             //  keys "<port> <minute>", minute in epoch seconds
    bool overflow;               //  the next run falls back (start, rollup overflow)
    atomic_int_least64_t rolled; //  see store_maintenance_rolled
    atomic_bool marks_pending;   //  rollup_marks may hold marks below rolled
    int64_t marks_at;            //  monotonic ms of the next pass over them
    store_lanes_t *lanes;        //  the lanes' rollups (store_maintenance_new_rollup)
};

//  Minutes upserted per statement from the rollups.
#define S_UPSERT_CHUNK 10000

//  Marks of rollup_marks taken by one pass at most (a pass finds more in
//  the next), and per statement at most these rows and these minutes: a
//  minute of 1 Hz readings is 60 of them, so a statement reads at most
//  ~1.2 M readings, a few seconds, far inside the statement timeout. A
//  backfill's 7 days x 4 ports at 10 s (40,320 minutes, 242 k readings)
//  found whole is three statements, ~1-1.5 s on 2 shared cores; while it
//  arrives, the passes take it in pieces.
#define S_MARKS_TAKE 100000
#define S_MARKS_ROWS 10000
#define S_MARKS_MINUTES 20000
//  A pass over the marks stops after its statement that ends past this
//  (the minute's run waits meanwhile); the next pass goes on.
#define S_MARKS_BUDGET_MS 10000
//  Marks committed by the lanes are re-rolled within this (plus the poll,
//  S_WAIT_MAX_MS): a backfill's show up in the figures seconds after its
//  last commit, not at the next minute's run.
#define S_MARKS_EVERY_MS 500
#define S_MARKS_RETRY_MS 5000
//  Longest wait of a run for the lanes' writes in flight (see Late
//  readings): past the writers' statement timeout (30 s).
#define S_LANES_WAIT_MS 40000

//  --------------------------------------------------------------------------
//  The maintenance's session

//  The statement timeout bounds every call (the catch-up is chunked to
//  stay far inside it), the lock timeout a wait behind readers and
//  writers. Rollups are recomputed after a crash anyway, so their commits
//  need not wait for the disk. (UTC, which the partition functions need
//  to name days by current_date: every session of proto_pg_connect.)
static const char *s_settings[] = {"SET lock_timeout = '5s'", "SET synchronous_commit = off"};
static const store_session_config_t s_session_config = {STORE_SESSION_MAINTENANCE,
                                                        "store maintenance",
                                                        60000,
                                                        S_BACKOFF_MAX_MS,
                                                        s_settings,
                                                        sizeof (s_settings) /
                                                            sizeof (s_settings[0]),
                                                        NULL,
                                                        0};

//  Runs sql with text params on the session; the result, or NULL after
//  logging why. Caller PQclears.
static PGresult *
s_exec (store_maintenance_t *self, const char *what, const char *sql, int count,
        const char *const *params)
{
    return store_session_exec (self->session, what, sql, count, params, NULL);
}

//  --------------------------------------------------------------------------
//  Create and destroy

store_maintenance_t *
store_maintenance_new (const char *conninfo, const store_maintenance_policy_t *policy, bool verbose)
{
    assert (conninfo);
    assert (policy);
    assert (policy->retention_days >= 0 && policy->rollup_retention_days >= 0);
    assert (policy->lookback_minutes >= 1);
    store_maintenance_t *self = (store_maintenance_t *)zmalloc (sizeof (store_maintenance_t));
    self->conninfo = strdup (conninfo);
    if (!self->conninfo) {
        free (self);
        return NULL;
    }
    self->policy = *policy;
    self->verbose = verbose;
    atomic_init (&self->stopping, false);
    pthread_mutex_init (&self->dirty_lock, NULL);
    self->session = store_session_new (conninfo, &s_session_config, verbose);
    if (self->session)
        self->housekeeping =
            store_housekeeping_new (self->session, STORE_HOUSEKEEPING_ROLLUPS,
                                    policy->retention_days, policy->rollup_retention_days, verbose);
    self->dirty = zhashx_new ();
    self->lanes = store_lanes_new (conninfo, verbose);
    if (!self->session || !self->housekeeping || !self->dirty || !self->lanes) {
        store_maintenance_destroy (&self);
        return NULL;
    }
    //  The lanes' rollups of the process before us are lost: the first
    //  run falls back to the lookback window (its marks are in
    //  rollup_marks). Until it has published how far it rolls, every
    //  reading counts as late (INT64_MAX).
    self->overflow = true;
    atomic_init (&self->rolled, INT64_MAX);
    atomic_init (&self->marks_pending, true);
    return self;
}

void
store_maintenance_destroy (store_maintenance_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_maintenance_t *self = *self_p;
        if (self->actor) {
            //  The thread checks the flag between statements; the cancel
            //  ends the one in flight. A statement started between the two
            //  still ends within the statement timeout.
            atomic_store (&self->stopping, true);
            if (self->session)
                store_session_cancel (self->session);
            zactor_destroy (&self->actor);
        }
        store_housekeeping_destroy (&self->housekeeping);
        store_session_destroy (&self->session);
        pthread_mutex_destroy (&self->dirty_lock);
        zhashx_destroy (&self->dirty);
        store_lanes_destroy (&self->lanes);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Lanes' rollups

void
store_maintenance_set_start (store_maintenance_t *self, int64_t minute)
{
    assert (self);
    store_lanes_set_from (self->lanes, minute * 1000);
    atomic_store (&self->rolled, minute);
}

store_rollup_t *
store_maintenance_new_rollup (store_maintenance_t *self)
{
    assert (self);
    return store_lanes_new_rollup (self->lanes);
}

//  --------------------------------------------------------------------------
//  Late readings
//
//  A reading can change a minute already rolled up: its own (a late one,
//  e.g. a backfill with device timestamps), or its predecessor's, whose
//  last interval it closes. Such a minute is marked in rollup_marks in the
//  transaction of the reading (the lanes decide which: store_server.c,
//  s_mark), so a mark exists exactly when its reading committed, whatever
//  happens to this process after; runs and passes re-roll and delete the
//  marks (phantom_rollup_marks: ranges, one ordered scan per port).
//
//  Why that is every minute (the race with a run): a lane decides its
//  marks against rolled, read when its write begins; a reading whose
//  minutes are all at or after that bound is not marked. A run stores
//  rolled = high BEFORE it waits for every lane write that began with a
//  lower bound to end (store_rollup_writing, set before the bound is read
//  again: a lane either sees the new high, or the run sees its write), and
//  only then sends its statements. So a reading not marked is committed,
//  and added to its lane's rollup, before any run that rolls up past its
//  minutes reads the table or takes the lanes' minutes: the run has it.
//  rolled only grows, so a lane never sees it go back below a minute that
//  some statement already skipped. The atomics are sequentially consistent.

int64_t
store_maintenance_rolled (store_maintenance_t *self)
{
    assert (self);
    return atomic_load (&self->rolled);
}

int64_t
store_maintenance_write_begin (store_maintenance_t *self, store_rollup_t *rollup)
{
    assert (self);
    assert (rollup);
    int64_t rolled = atomic_load (&self->rolled);
    while (true) {
        store_rollup_set_writing (rollup, rolled);
        int64_t again = atomic_load (&self->rolled);
        if (again == rolled)
            return rolled;
        rolled = again;
    }
}

void
store_maintenance_write_end (store_maintenance_t *self, store_rollup_t *rollup, bool marked)
{
    assert (self);
    assert (rollup);
    store_rollup_set_writing (rollup, INT64_MAX);
    if (marked)
        atomic_store (&self->marks_pending, true);
}

//  Waits until no lane writes with marks decided against a bound below
//  high (bounded: S_LANES_WAIT_MS). 0, or -1 (logged).
static int
s_wait_lanes (store_maintenance_t *self, int64_t high)
{
    int64_t deadline = zclock_mono () + S_LANES_WAIT_MS;
    while (true) {
        if (!store_lanes_writing_below (self->lanes, high))
            return 0;
        if (atomic_load (&self->stopping))
            return -1;
        if (zclock_mono () >= deadline) {
            zsys_warning ("store maintenance - a lane's write has not ended in %d ms:"
                          " rollup run skipped",
                          S_LANES_WAIT_MS);
            return -1;
        }
        zclock_sleep (1);
    }
}

//  A (port, minute) pair for rollup_marks, as the dirty keys are made.
static void
s_pair (zhashx_t *pairs, const char *port, int64_t minute)
{
    char key[PROTO_UUID_LEN + 32];
    snprintf (key, sizeof (key), "%.*s %" PRId64, PROTO_UUID_LEN, port, minute);
    if (!zhashx_lookup (pairs, key))
        zhashx_insert (pairs, key, (void *)1);
}

//  A run that failed gives back the pairs it had not written yet, and its
//  fallback: the next run does both.
static void
s_give_back (store_maintenance_t *self, zhashx_t **pairs_p, bool fallback)
{
    pthread_mutex_lock (&self->dirty_lock);
    if (fallback)
        self->overflow = true;
    for (void *item = zhashx_first (*pairs_p); item; item = zhashx_next (*pairs_p)) {
        const char *key = (const char *)zhashx_cursor (*pairs_p);
        if (!zhashx_lookup (self->dirty, key))
            zhashx_insert (self->dirty, key, (void *)1);
    }
    pthread_mutex_unlock (&self->dirty_lock);
    zhashx_destroy (pairs_p);
}

//  Runs sql with count binary array parameters (store_column.h); 0, or
//  -1 (logged).
static int
s_exec_columns (store_maintenance_t *self, const char *what, const char *sql,
                store_column_t **columns, int count)
{
    const char *params[8];
    int lengths[8];
    assert (count <= 8);
    for (int column = 0; column < count; column++) {
        params[column] = store_column_data (columns[column]);
        lengths[column] = store_column_length (columns[column]);
    }
    PGresult *result = store_session_exec (self->session, what, sql, count, params, lengths);
    PQclear (result);
    return result ? 0 : -1;
}

//  Writes pairs to rollup_marks (each a range of one minute), in one
//  statement; on success empties pairs. 0, or -1 (pairs kept).
static int
s_write_pairs (store_maintenance_t *self, zhashx_t *pairs)
{
    if (zhashx_size (pairs) == 0)
        return 0;
    store_column_t *columns[2] = {store_column_new (), store_column_new ()};
    int rc = -1;
    if (columns[0] && columns[1]) {
        store_column_begin (columns[0], STORE_COLUMN_UUID);
        store_column_begin (columns[1], STORE_COLUMN_INT8);
        for (void *item = zhashx_first (pairs); item; item = zhashx_next (pairs)) {
            const char *key = (const char *)zhashx_cursor (pairs);
            const char *space = strchr (key, ' ');
            assert (space && space - key <= PROTO_UUID_LEN);
            char port[PROTO_UUID_LEN + 1];
            snprintf (port, sizeof (port), "%.*s", (int)(space - key), key);
            store_column_uuid (columns[0], port); //  a lane's: checked by its batch
            store_column_int (columns[1], strtoll (space + 1, NULL, 10));
        }
        rc = s_exec_columns (self, "rollup marks",
                             "INSERT INTO rollup_marks (port_id, first_minute, last_minute)"
                             " SELECT port_id, to_timestamp (minute), to_timestamp (minute)"
                             " FROM unnest ($1::uuid[], $2::bigint[]) AS u (port_id, minute)",
                             columns, 2);
    }
    store_column_destroy (&columns[0]);
    store_column_destroy (&columns[1]);
    if (rc)
        return -1;
    zhashx_purge (pairs);
    atomic_store (&self->marks_pending, true);
    return 0;
}

//  Re-rolls what rollup_marks holds for minutes before below (seconds):
//  takes up to S_MARKS_TAKE marks, by port and minute, and hands them to
//  phantom_rollup_marks (which deletes each with its re-roll) in
//  statements of at most S_MARKS_ROWS marks and S_MARKS_MINUTES minutes,
//  until S_MARKS_BUDGET_MS is spent. Marks left for later keep
//  marks_pending set. Minutes written, or -1.
static int64_t
s_rollup_marks (store_maintenance_t *self, int64_t below)
{
    int64_t started = zclock_mono ();
    char below_text[24], take_text[16], gap[16];
    snprintf (below_text, sizeof (below_text), "%" PRId64, below);
    snprintf (take_text, sizeof (take_text), "%d", S_MARKS_TAKE);
    snprintf (gap, sizeof (gap), "%d", STORE_MAINTENANCE_GAP_SECONDS);
    //  Cleared before the marks are read: one committed after is in the
    //  next pass.
    atomic_store (&self->marks_pending, false);
    const char *params[3] = {below_text, take_text, gap};
    PGresult *marks = s_exec (self, "rollup marks",
                              "SELECT id, (extract (epoch FROM last_minute - first_minute)"
                              "            / 60)::bigint + 1"
                              " FROM rollup_marks WHERE first_minute < to_timestamp ($1::bigint)"
                              " ORDER BY port_id, first_minute LIMIT $2::integer",
                              2, params);
    if (!marks) {
        atomic_store (&self->marks_pending, true);
        return -1;
    }
    int rows = PQntuples (marks);
    bool more = rows == S_MARKS_TAKE;
    //  Up to 20 digits and a comma per id.
    char *ids = (char *)malloc ((size_t)(rows < S_MARKS_ROWS ? rows : S_MARKS_ROWS) * 21 + 3);
    int64_t written = 0;
    int row = 0;
    while (ids && row < rows && !atomic_load (&self->stopping)) {
        if (zclock_mono () - started >= S_MARKS_BUDGET_MS) {
            more = true;
            break;
        }
        size_t size = 0, count = 0;
        int64_t minutes = 0;
        ids[size++] = '{';
        for (; row < rows && count < S_MARKS_ROWS && (count == 0 || minutes < S_MARKS_MINUTES);
             row++, count++) {
            //  Database output: a number whatever it says, bounded.
            int64_t id = strtoll (PQgetvalue (marks, row, 0), NULL, 10);
            int64_t span = strtoll (PQgetvalue (marks, row, 1), NULL, 10);
            minutes += span < 1 ? 1 : span > S_MARKS_MINUTES ? S_MARKS_MINUTES : span;
            size += (size_t)snprintf (ids + size, 22, "%s%" PRId64, count ? "," : "", id);
        }
        ids[size++] = '}';
        ids[size] = 0;
        const char *call[3] = {ids, below_text, gap};
        PGresult *result = s_exec (self, "phantom_rollup_marks",
                                   "SELECT phantom_rollup_marks ($1::bigint[],"
                                   " to_timestamp ($2::bigint), $3::float8)",
                                   3, call);
        if (!result) {
            written = -1;
            break;
        }
        written += strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        PQclear (result);
    }
    if (!ids)
        written = -1;
    free (ids);
    PQclear (marks);
    if (written < 0 || more || atomic_load (&self->stopping))
        atomic_store (&self->marks_pending, true);
    if (self->verbose && rows)
        zsys_debug ("store maintenance - %d marks: %" PRId64 " minutes re-rolled in %" PRId64 " ms",
                    rows, written, zclock_mono () - started);
    return written;
}

int64_t
store_maintenance_rollup_marks (store_maintenance_t *self)
{
    assert (self);
    //  Below what the runs rolled up (rolled, published by the last run);
    //  nothing before the first run.
    int64_t rolled = atomic_load (&self->rolled);
    if (rolled == INT64_MAX)
        return 0;
    return s_rollup_marks (self, rolled);
}

//  --------------------------------------------------------------------------
//  Upsert the lanes' minutes

//  Upserts minutes [0, count) in one statement; false on failure.
static bool
s_upsert (store_maintenance_t *self, const store_rollup_minute_t *minutes, size_t count)
{
    static const store_column_type_t types[8] = {
        STORE_COLUMN_UUID,   STORE_COLUMN_INT8,   STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8,
        STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8, STORE_COLUMN_INT8};
    store_column_t *columns[8];
    bool ok = true;
    for (int column = 0; column < 8; column++) {
        columns[column] = store_column_new ();
        if (columns[column])
            store_column_begin (columns[column], types[column]);
        ok = ok && columns[column];
    }
    for (size_t index = 0; ok && index < count; index++) {
        const store_rollup_minute_t *minute = &minutes[index];
        store_column_uuid (columns[0], minute->port); //  a lane's: checked by its batch
        store_column_int (columns[1], minute->minute);
        store_column_double (columns[2], minute->min_power);
        store_column_double (columns[3], minute->sum_power);
        store_column_double (columns[4], minute->max_power);
        store_column_double (columns[5], minute->energy_ws);
        store_column_double (columns[6], minute->reported_seconds);
        store_column_int (columns[7], minute->samples);
    }
    //  Mean and energy in Wh as phantom_rollup derives them (sum / n,
    //  W s / 3600, in float8); ports that no longer exist are skipped.
    ok = ok &&
         s_exec_columns (
             self, "rollup upsert",
             "INSERT INTO readings_minute AS m (port_id, minute, min_power, mean_power, max_power,"
             "                                  energy_wh, reported_seconds, samples)"
             " SELECT u.port_id, timestamptz 'epoch' + u.minute * interval '1 millisecond',"
             "        u.min_power, u.sum_power / u.samples, u.max_power, u.energy_ws / 3600,"
             "        u.reported_seconds, u.samples"
             " FROM unnest ($1::uuid[], $2::bigint[], $3::float8[], $4::float8[], $5::float8[],"
             "              $6::float8[], $7::float8[], $8::bigint[])"
             "      AS u (port_id, minute, min_power, sum_power, max_power, energy_ws,"
             "            reported_seconds, samples)"
             " WHERE EXISTS (SELECT 1 FROM ports p WHERE p.id = u.port_id)"
             " ON CONFLICT (port_id, minute) DO UPDATE"
             " SET min_power = excluded.min_power, mean_power = excluded.mean_power,"
             "     max_power = excluded.max_power, energy_wh = excluded.energy_wh,"
             "     reported_seconds = excluded.reported_seconds, samples = excluded.samples",
             columns, 8) == 0;
    for (int column = 0; column < 8; column++)
        store_column_destroy (&columns[column]);
    return ok;
}

//  Upserts what the lanes' rollups hand over for the minutes before high
//  (seconds). Partial minutes join pairs, to be re-rolled from the table
//  (rollup_marks); so do the minutes of a failed statement (-1 then).
//  *overflow_p: a rollup dropped minutes (the window must be re-rolled).
//  Minutes upserted, or -1.
static int64_t
s_rollup_memory (store_maintenance_t *self, zhashx_t *pairs, int64_t high, bool *overflow_p)
{
    size_t rollups = store_lanes_count (self->lanes);
    int64_t written = 0;
    bool failed = false;
    *overflow_p = false;
    for (size_t index = 0; index < rollups; index++) {
        store_rollup_minute_t *minutes;
        bool overflow;
        size_t count = store_rollup_take (store_lanes_rollup (self->lanes, index), high * 1000,
                                          &minutes, &overflow);
        if (overflow) {
            zsys_warning ("store maintenance - a lane's rollup dropped minutes (too many):"
                          " the next run re-rolls the lookback window");
            *overflow_p = true;
        }
        if (!minutes)
            continue;
        //  Complete minutes to the front, partial ones to pairs.
        size_t complete = 0;
        for (size_t at = 0; at < count; at++)
            if (minutes[at].partial)
                s_pair (pairs, minutes[at].port, minutes[at].minute / 1000);
            else
                minutes[complete++] = minutes[at];
        for (size_t at = 0; at < complete; at += S_UPSERT_CHUNK) {
            size_t size = complete - at < S_UPSERT_CHUNK ? complete - at : S_UPSERT_CHUNK;
            if (!failed && !atomic_load (&self->stopping) && s_upsert (self, minutes + at, size))
                written += (int64_t)size;
            else {
                failed = true;
                for (size_t pair = at; pair < at + size; pair++)
                    s_pair (pairs, minutes[pair].port, minutes[pair].minute / 1000);
            }
        }
        free (minutes);
    }
    return failed ? -1 : written;
}

//  --------------------------------------------------------------------------
//  Roll up the minutes since the watermark, and the marked ones again

int64_t
store_maintenance_rollup (store_maintenance_t *self)
{
    assert (self);
    //  Pairs an earlier run gave back are this run's to write.
    zhashx_t *fresh = zhashx_new ();
    if (!fresh)
        return -1;
    pthread_mutex_lock (&self->dirty_lock);
    zhashx_t *pairs = self->dirty;
    self->dirty = fresh;
    bool fallback = self->overflow;
    self->overflow = false;
    pthread_mutex_unlock (&self->dirty_lock);

    char lookback[16], settle[16], fall[8];
    snprintf (lookback, sizeof (lookback), "%d", self->policy.lookback_minutes);
    snprintf (settle, sizeof (settle), "%d", STORE_MAINTENANCE_SETTLE_SECONDS);
    snprintf (fall, sizeof (fall), "%s", fallback ? "true" : "false");
    const char *params[3] = {lookback, settle, fall};
    //  From the watermark (or, falling back, lookback minutes back if that
    //  is older) to the last minute that ended STORE_MAINTENANCE_SETTLE_SECONDS ago; by
    //  the database's clock, the one the watermark was set by.
    PGresult *result = s_exec (
        self, "rollup window",
        "SELECT extract (epoch FROM CASE WHEN $3::boolean"
        "           THEN least (coalesce ((SELECT watermark FROM rollup_state), high),"
        "                       high - $1::integer * interval '1 minute')"
        "           ELSE least (coalesce ((SELECT watermark FROM rollup_state), high), high)"
        "       END)::bigint,"
        "       extract (epoch FROM high)::bigint"
        " FROM (SELECT date_bin ('1 minute', now () - $2::integer * interval '1 second',"
        "                        timestamptz 'epoch') AS high) window_end",
        3, params);
    if (!result) {
        s_give_back (self, &pairs, fallback);
        return -1;
    }
    int64_t from = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    int64_t high = strtoll (PQgetvalue (result, 0, 1), NULL, 10);
    PQclear (result);
    //  Published, and the lanes' writes decided against a lower bound
    //  waited for, before any statement of this run reads the table or
    //  any rollup is taken (see Late readings); never lowered, except from
    //  the INT64_MAX of "not known yet".
    int64_t rolled = atomic_load (&self->rolled);
    if (rolled == INT64_MAX || high > rolled)
        atomic_store (&self->rolled, high);
    if (s_wait_lanes (self, high) || s_write_pairs (self, pairs)) {
        s_give_back (self, &pairs, fallback);
        return -1;
    }
    if (high - from > S_CHUNK_SECONDS)
        zsys_info ("store maintenance - catching up %" PRId64 " minutes of rollups",
                   (high - from) / 60);
    //  The lanes' rollups have the minutes from memory_from on; before, or
    //  all of the window on a fallback, they are rolled up from the table.
    int64_t memory_from = store_lanes_memory_from (self->lanes);
    int64_t table_high = fallback || memory_from >= high ? high
                         : memory_from > from            ? memory_from
                                                         : from;
    int64_t written = 0;
    while (from < table_high && !atomic_load (&self->stopping)) {
        int64_t to = table_high - from > S_CHUNK_SECONDS ? from + S_CHUNK_SECONDS : table_high;
        char from_text[24], to_text[24];
        snprintf (from_text, sizeof (from_text), "%" PRId64, from);
        snprintf (to_text, sizeof (to_text), "%" PRId64, to);
        const char *range[2] = {from_text, to_text};
        result =
            s_exec (self, "phantom_rollup",
                    "SELECT phantom_rollup (to_timestamp ($1::bigint), to_timestamp ($2::bigint))",
                    2, range);
        if (!result) {
            //  Done chunks moved the watermark; a fallback's window is redone.
            s_give_back (self, &pairs, fallback);
            return -1;
        }
        written += strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        PQclear (result);
        from = to;
    }
    if (atomic_load (&self->stopping)) {
        s_give_back (self, &pairs, fallback);
        return -1;
    }
    if (memory_from < high) {
        bool overflow;
        int64_t upserted = s_rollup_memory (self, pairs, high, &overflow);
        //  What the table must re-roll goes to rollup_marks before the
        //  watermark passes it (a process killed after that has it there).
        //  A rollup that dropped minutes keeps the watermark where it is:
        //  the next run re-rolls the window from it.
        if (s_write_pairs (self, pairs) || upserted < 0 || overflow) {
            s_give_back (self, &pairs, fallback || overflow);
            return -1;
        }
        written += upserted;
        //  Rolled up to high now (where the table's part moved it to).
        char low_text[24], high_text[24];
        snprintf (low_text, sizeof (low_text), "%" PRId64, table_high);
        snprintf (high_text, sizeof (high_text), "%" PRId64, high);
        const char *range[2] = {low_text, high_text};
        result = s_exec (self, "rollup watermark",
                         "UPDATE rollup_state SET watermark = to_timestamp ($2::bigint)"
                         " WHERE watermark >= to_timestamp ($1::bigint)"
                         " AND watermark < to_timestamp ($2::bigint)",
                         2, range);
        if (!result) {
            s_give_back (self, &pairs, fallback);
            return -1;
        }
        PQclear (result);
    }
    zhashx_destroy (&pairs);
    int64_t marked = s_rollup_marks (self, high);
    if (marked < 0)
        return -1;
    written += marked;
    if (self->verbose)
        zsys_debug ("store maintenance - %" PRId64 " port minutes rolled up%s", written,
                    fallback ? " (lookback fallback)" : "");
    return written;
}

//  --------------------------------------------------------------------------
//  Do what is due

//  Until STORE_MAINTENANCE_SETTLE_SECONDS after the next minute of the wall clock.
static int64_t
s_until_next_minute (void)
{
    int64_t into = (zclock_time () - STORE_MAINTENANCE_SETTLE_SECONDS * 1000) % S_MINUTE_MS;
    return S_MINUTE_MS - into;
}

void
store_maintenance_step (store_maintenance_t *self)
{
    assert (self);
    if (store_session_ensure (self->session) == 1) {
        //  What a downtime may have left undone is due now; retention
        //  keeps its day.
        self->rollup_at = 0;
        store_housekeeping_connected (self->housekeeping);
    }
    bool connected = store_session_conn (self->session) != NULL;
    //  Partitions first: a rollup of a month not yet created would land in
    //  the default partition, and that month could then not be created.
    store_housekeeping_step_partitions (self->housekeeping);
    if (connected && zclock_mono () >= self->rollup_at) {
        store_maintenance_rollup (self);
        //  After a failure too: the next run covers the missed minutes.
        self->rollup_at = zclock_mono () + s_until_next_minute ();
        self->marks_at = zclock_mono () + S_MARKS_EVERY_MS;
    }
    //  Between runs, the marks the lanes commit (a backfill's).
    if (store_session_conn (self->session) && atomic_load (&self->marks_pending) &&
        zclock_mono () >= self->marks_at)
        self->marks_at =
            zclock_mono () +
            (store_maintenance_rollup_marks (self) < 0 ? S_MARKS_RETRY_MS : S_MARKS_EVERY_MS);
    //  After the run: raw readings go only once it has rolled them up.
    store_housekeeping_step_retention (self->housekeeping);
}

//  Monotonic ms of the next thing due.
static int64_t
s_next_due (store_maintenance_t *self)
{
    if (!store_session_conn (self->session))
        return store_session_connect_at (self->session);
    int64_t next = self->rollup_at;
    int64_t housekeeping = store_housekeeping_next_due (self->housekeeping);
    if (housekeeping < next)
        next = housekeeping;
    if (atomic_load (&self->marks_pending) && self->marks_at < next)
        next = self->marks_at;
    return next;
}

static void
s_actor (zsock_t *pipe, void *args)
{
    store_maintenance_t *self = (store_maintenance_t *)args;
    zpoller_t *poller = zpoller_new (pipe, NULL);
    zsock_signal (pipe, 0);
    while (poller && !atomic_load (&self->stopping)) {
        store_maintenance_step (self);
        int64_t wait = s_next_due (self) - zclock_mono ();
        if (wait < 0)
            wait = 0;
        if (wait > S_WAIT_MAX_MS)
            wait = S_WAIT_MAX_MS;
        if (zpoller_wait (poller, (int)wait) == pipe) {
            char *command = zstr_recv (pipe);
            bool terminate = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (terminate)
                break;
        } else if (zpoller_terminated (poller))
            break;
    }
    zpoller_destroy (&poller);
}

int
store_maintenance_start (store_maintenance_t *self)
{
    assert (self);
    assert (!self->actor);
    self->actor = zactor_new (s_actor, self);
    if (!self->actor) {
        zsys_error ("store maintenance - cannot start its thread");
        return -1;
    }
    zsys_info ("store maintenance - started: raw kept %d days, rollups %d days (0: forever),"
               " late minutes re-rolled as marked, last %d minutes on a fallback",
               self->policy.retention_days, self->policy.rollup_retention_days,
               self->policy.lookback_minutes);
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

//  Marks the minutes of port from first to last (seconds, any second of
//  them) in rollup_marks, as a lane does in the transaction of a reading
//  written behind the store's back.
static void
s_mark_range (store_fixture_t *fixture, const char *port, int64_t first, int64_t last)
{
    char first_text[24], last_text[24];
    snprintf (first_text, sizeof (first_text), "%" PRId64, first);
    snprintf (last_text, sizeof (last_text), "%" PRId64, last);
    const char *params[3] = {port, first_text, last_text};
    PQclear (store_fixture_sql (fixture,
                                "INSERT INTO rollup_marks (port_id, first_minute, last_minute)"
                                " VALUES ($1::uuid, to_timestamp ($2::bigint),"
                                "         to_timestamp ($3::bigint))",
                                3, params));
}

//  Adds a sample, by time.
static void
s_sample_add (store_fixture_sample_t *samples, size_t *count, int64_t ts, double power)
{
    size_t at = *count;
    while (at > 0 && samples[at - 1].ts > ts)
        at--;
    memmove (samples + at + 1, samples + at, (*count - at) * sizeof (store_fixture_sample_t));
    samples[at] = (store_fixture_sample_t){ts, power};
    (*count)++;
}

//  Adds a reading to the table, to rollup (unless NULL) and to samples (by
//  time; unless NULL).
static void
s_memory_reading (store_fixture_t *fixture, store_rollup_t *rollup, const char *port,
                  store_fixture_sample_t *samples, size_t *count, int64_t ts, double power)
{
    store_fixture_reading (fixture, port, ts, power);
    if (rollup)
        store_rollup_add (rollup, port, ts * 1000, power);
    if (samples)
        s_sample_add (samples, count, ts, power);
}

//  A lane's rollup: from its first minute on, runs upsert what it hands
//  over instead of reading the table, and the rows are what phantom_rollup
//  computes (store_fixture_check_minute): complete minutes, a last interval closed by
//  a later reading, an out-of-order reading (its minute then re-rolled
//  from the table). A reading put in the table behind the rollup's back
//  shows which path wrote a minute.
static void
s_memory_rollups (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port = fixture->ports[0];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self);
    store_maintenance_rollup (self); //  the first run after a start falls back: done
    int64_t high = store_fixture_rollup_high (fixture);
    int64_t base = high - 10 * 60;
    store_rollup_t *rollup = store_lanes_new_rollup_from (self->lanes, base * 1000);
    assert (rollup);

    //  Every 7 s for 7 minutes, then one behind the rollup's back.
    store_fixture_sample_t samples[80];
    size_t count = 0;
    for (int index = 0; index < 60; index++)
        s_memory_reading (fixture, rollup, port, samples, &count, base + 7 * index,
                          (index * 13 % 17) + 0.5);
    s_memory_reading (fixture, NULL, port, NULL, NULL, base + 61, 999);
    char high_text[24];
    snprintf (high_text, sizeof (high_text), "%" PRId64, high);
    const char *high_params[1] = {high_text};
    store_fixture_set_watermark (fixture, base);
    assert (store_maintenance_rollup (self) == 7);
    for (int64_t minute = base; minute < base + 420; minute += 60)
        store_fixture_check_minute (fixture, port, samples, count, minute); //  without the 999 W
    assert (store_fixture_int (fixture,
                               "SELECT (watermark = to_timestamp ($1::bigint))::int"
                               " FROM rollup_state",
                               1, high_params) == 1);
    //  Nothing new: nothing written.
    assert (store_maintenance_rollup (self) == 0);

    //  In order, 67 s after the last one: closes the last interval of
    //  base + 360 (its energy grows) and starts base + 480.
    s_memory_reading (fixture, rollup, port, samples, &count, base + 480, 40);
    assert (store_maintenance_rollup (self) == 2);
    store_fixture_check_minute (fixture, port, samples, count, base + 360);
    store_fixture_check_minute (fixture, port, samples, count, base + 480);

    //  Out of order, into base + 60: re-rolled from the table (which has
    //  the 999 W too) with its predecessor's minute.
    s_memory_reading (fixture, rollup, port, samples, &count, base + 100, 3);
    s_sample_add (samples, &count, base + 61, 999);
    assert (store_maintenance_rollup (self) >= 1);
    store_fixture_check_minute (fixture, port, samples, count, base + 60);
    store_fixture_check_minute (fixture, port, samples, count, base);

    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   memory rollups: OK\n");
}

//  The port's summed reported seconds over all its rollups.
static double
s_reported_total (store_fixture_t *fixture, const char *port)
{
    const char *params[1] = {port};
    char text[64];
    store_fixture_text (fixture,
                        "SELECT coalesce (sum (reported_seconds), -1) FROM readings_minute"
                        " WHERE port_id = $1::uuid",
                        1, params, text, sizeof (text));
    return strtod (text, NULL);
}

//  Reported time, through a lane: every 10 s for 3 minutes, 400 s of
//  silence (longer than the gap: offline, neither energy nor time), then
//  every 10 s for 2 minutes report 180 s + 120 s, and the lane's rows are
//  what phantom_rollup computes from scratch. Then a late reading in the
//  silence leaves two intervals within the gap: the re-rolled minutes (the
//  one before the silence, and its own) report them, 400 s more.
static void
s_reported_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port = fixture->ports[0];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self);
    store_maintenance_rollup (self); //  the first run after a start falls back: done
    int64_t high = store_fixture_rollup_high (fixture);
    int64_t base = high - 13 * 60;
    store_rollup_t *rollup = store_lanes_new_rollup_from (self->lanes, base * 1000);
    assert (rollup);
    store_fixture_sample_t samples[40];
    size_t count = 0;
    for (int at = 0; at <= 180; at += 10)
        s_memory_reading (fixture, rollup, port, samples, &count, base + at, 2 + at % 7);
    for (int at = 580; at <= 700; at += 10)
        s_memory_reading (fixture, rollup, port, samples, &count, base + at, 3 + at % 11);
    char base_text[24];
    snprintf (base_text, sizeof (base_text), "%" PRId64, base);
    const char *base_params[1] = {base_text};
    store_fixture_set_watermark (fixture, base);
    //  Minutes 0-3 (3 holds only the reading before the silence) and 9-11.
    assert (store_maintenance_rollup (self) == 7);
    const int64_t minutes[7] = {0, 60, 120, 180, 540, 600, 660};
    for (size_t index = 0; index < 7; index++)
        store_fixture_check_minute (fixture, port, samples, count, base + minutes[index]);
    assert (s_reported_total (fixture, port) == 300);

    //  The lane's rows against phantom_rollup's from scratch (rolled back:
    //  other ports' minutes in the range stay as they were).
    const char *port_params[2] = {port, base_text};
    PQclear (store_fixture_sql (fixture, "BEGIN", 0, NULL));
    PQclear (store_fixture_sql (fixture,
                                "CREATE TEMP TABLE lane_minutes ON COMMIT DROP AS"
                                " SELECT * FROM readings_minute WHERE port_id = $1::uuid",
                                1, port_params));
    assert (store_fixture_int (fixture,
                               "SELECT phantom_rollup (to_timestamp ($1::bigint),"
                               "                       to_timestamp ($1::bigint + 720))",
                               1, base_params) >= 7);
    assert (
        store_fixture_int (fixture,
                           "SELECT count (*) FROM lane_minutes l"
                           " FULL JOIN (SELECT * FROM readings_minute WHERE port_id = $1::uuid) t"
                           " USING (minute)"
                           " WHERE l.minute IS NULL OR t.minute IS NULL OR l.samples <> t.samples"
                           " OR l.min_power <> t.min_power OR l.max_power <> t.max_power"
                           " OR abs (l.mean_power - t.mean_power) > 1e-9"
                           " OR abs (l.energy_wh - t.energy_wh) > 1e-9"
                           " OR l.reported_seconds <> t.reported_seconds",
                           1, port_params) == 0);
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM readings_minute WHERE port_id = $1::uuid"
                               " AND minute >= to_timestamp ($2::bigint)",
                               2, port_params) == 7);
    PQclear (store_fixture_sql (fixture, "ROLLBACK", 0, NULL));

    //  Late, in the silence: 200 s from the reading before it, 200 s to
    //  the one after. Out of order for the lane: its minute and the one of
    //  its predecessor are re-rolled from the table.
    s_memory_reading (fixture, rollup, port, samples, &count, base + 380, 9);
    assert (store_maintenance_rollup (self) >= 2);
    store_fixture_check_minute (fixture, port, samples, count, base + 180);
    store_fixture_check_minute (fixture, port, samples, count, base + 360);
    char minute_text[24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, base + 180);
    const char *minute_params[2] = {port, minute_text};
    assert (store_fixture_int (fixture,
                               "SELECT reported_seconds::bigint FROM readings_minute"
                               " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)",
                               2, minute_params) == 200);
    assert (s_reported_total (fixture, port) == 700);

    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   reported time: OK\n");
}

//  Inserts readings of port (times in ms), in one statement.
static void
s_insert_many (store_fixture_t *fixture, const char *port, const store_fixture_sample_t *samples,
               size_t count, int64_t scale)
{
    char *times = NULL, *powers = NULL;
    size_t times_size, powers_size;
    FILE *time_stream = open_memstream (&times, &times_size);
    FILE *power_stream = open_memstream (&powers, &powers_size);
    assert (time_stream && power_stream);
    for (size_t index = 0; index < count; index++) {
        fprintf (time_stream, "%s%" PRId64, index ? "," : "{", samples[index].ts * scale);
        fprintf (power_stream, "%s%.17g", index ? "," : "{", samples[index].power);
    }
    fputs (count ? "}" : "{}", time_stream);
    fputs (count ? "}" : "{}", power_stream);
    fclose (time_stream);
    fclose (power_stream);
    const char *params[3] = {port, times, powers};
    PQclear (store_fixture_sql (
        fixture,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " SELECT $1::uuid, timestamptz 'epoch' + u.ms * interval '1 millisecond', 230,"
        "        u.power / 230, u.power, 1"
        " FROM unnest ($2::bigint[], $3::float8[]) AS u (ms, power)",
        3, params));
    free (times);
    free (powers);
}

//  The rows of port's rollups in [from, to) (seconds) that differ from
//  phantom_rollup's from scratch, which runs in a transaction rolled back
//  (other ports' minutes in the range stay as they were); *compared_p:
//  how many phantom_rollup has for the port there.
static int64_t
s_differ_from_scratch (store_fixture_t *fixture, const char *port, int64_t from, int64_t to,
                       int64_t *compared_p)
{
    char from_text[24], to_text[24];
    snprintf (from_text, sizeof (from_text), "%" PRId64, from);
    snprintf (to_text, sizeof (to_text), "%" PRId64, to);
    const char *params[3] = {port, from_text, to_text};
    PQclear (store_fixture_sql (fixture, "BEGIN", 0, NULL));
    PQclear (store_fixture_sql (fixture,
                                "CREATE TEMP TABLE kept ON COMMIT DROP AS"
                                " SELECT * FROM readings_minute WHERE port_id = $1::uuid"
                                " AND minute >= to_timestamp ($2::bigint)"
                                " AND minute < to_timestamp ($3::bigint)",
                                3, params));
    PQclear (store_fixture_sql (
        fixture, "SELECT phantom_rollup (to_timestamp ($1::bigint), to_timestamp ($2::bigint))", 2,
        params + 1));
    const char *scratch = "(SELECT * FROM readings_minute WHERE port_id = $1::uuid"
                          "  AND minute >= to_timestamp ($2::bigint)"
                          "  AND minute < to_timestamp ($3::bigint))";
    char sql[1024];
    snprintf (sql, sizeof (sql), "SELECT count (*) FROM %s t", scratch);
    *compared_p = store_fixture_int (fixture, sql, 3, params);
    snprintf (sql, sizeof (sql),
              "SELECT count (*) FROM kept k FULL JOIN %s t USING (minute)"
              " WHERE k.minute IS NULL OR t.minute IS NULL OR k.samples <> t.samples"
              " OR k.min_power <> t.min_power OR k.max_power <> t.max_power"
              " OR abs (k.mean_power - t.mean_power) > 1e-9"
              " OR abs (k.energy_wh - t.energy_wh) > 1e-9"
              " OR abs (k.reported_seconds - t.reported_seconds) > 1e-9",
              scratch);
    int64_t differ = store_fixture_int (fixture, sql, 3, params);
    if (differ) {
        //  What differs, for whoever reads the failure.
        snprintf (sql, sizeof (sql),
                  "SELECT minute, k.samples, t.samples, k.energy_wh, t.energy_wh,"
                  " k.reported_seconds, t.reported_seconds, k.mean_power, t.mean_power"
                  " FROM kept k FULL JOIN %s t USING (minute) ORDER BY minute",
                  scratch);
        PGresult *rows = store_fixture_sql (fixture, sql, 3, params);
        for (int row = 0; row < PQntuples (rows); row++) {
            fprintf (stderr, "  ");
            for (int column = 0; column < PQnfields (rows); column++)
                fprintf (stderr, " %s", PQgetvalue (rows, row, column));
            fprintf (stderr, "\n");
        }
        PQclear (rows);
    }
    PQclear (store_fixture_sql (fixture, "ROLLBACK", 0, NULL));
    return differ;
}

//  A backfill: three hours of irregular readings (ms apart, silences
//  longer than the gap, one exactly the gap) arrive late into minutes
//  rolled up before from a few readings; one mark covers their minutes.
//  One pass re-rolls it (its minutes, with the readings before, in and
//  after it, and the minute of the reading before it, whose last interval
//  now ends in the range), and every row equals phantom_rollup from
//  scratch. Another port: a reading 30 s before its range, two in it. Then phantom_rollup_ranges on
//  overlapping ranges of one port in one call (one scan per island, no row written twice), and
//  phantom_rollup_ports, now ranges of one minute, give the same rows.
static void
s_ranges_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 2);
    const char *port = fixture->ports[0], *other = fixture->ports[1];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self); //  connects, and the first run
    int64_t high = store_maintenance_rolled (self);
    assert (high != INT64_MAX && high % 60 == 0);
    int64_t base = high - 4 * 3600;
    int64_t end = base + 180 * 60; //  the range: [base, end)

    //  Before the backfill: a reading every 10 minutes, and one 200 s
    //  before the range (its interval open: the next is 393 s on), rolled
    //  up.
    store_fixture_sample_t live[24];
    size_t lives = 0;
    for (int64_t at = base - 600; at < end + 1200; at += 600)
        live[lives++] = (store_fixture_sample_t){at + 7, 1.5};
    live[lives++] = (store_fixture_sample_t){base - 200, 3.25};
    s_insert_many (fixture, port, live, lives, 1000);
    char from_text[24], to_text[24];
    snprintf (from_text, sizeof (from_text), "%" PRId64, base - 1200);
    snprintf (to_text, sizeof (to_text), "%" PRId64, end + 1200);
    const char *range[2] = {from_text, to_text};
    assert (store_fixture_int (fixture,
                               "SELECT phantom_rollup (to_timestamp ($1::bigint),"
                               "                       to_timestamp ($2::bigint))",
                               2, range) >= 20);

    //  The backfill, in ms, from the range's start to 100 s past its end.
    store_fixture_sample_t *late =
        (store_fixture_sample_t *)malloc (2000 * sizeof (store_fixture_sample_t));
    assert (late);
    size_t lates = 0;
    unsigned seed = 15;
    int64_t ts = base * 1000 + 50;
    while (ts < end * 1000 && lates < 1990) {
        late[lates++] = (store_fixture_sample_t){ts, (double)(rand_r (&seed) % 50000) / 97.0};
        int step = rand_r (&seed) % 200;
        ts += step == 0   ? 400000                                    //  offline
              : step == 1 ? 300000                                    //  exactly the gap
                          : 1000 + (int64_t)(rand_r (&seed) % 19000); //  1-20 s
    }
    late[lates++] = (store_fixture_sample_t){end * 1000 + 100000, 7.0};
    s_insert_many (fixture, port, late, lates, 1);
    free (late);
    //  other: one reading 30 s before its range, two in it.
    store_fixture_sample_t others[3] = {{base - 30, 4}, {base + 100, 6}, {base + 130, 2}};
    s_insert_many (fixture, other, others, 3, 1000);

    int64_t compared = 0;
    assert (s_differ_from_scratch (fixture, port, base - 600, end + 600, &compared) > 100);
    s_mark_range (fixture, port, base, end + 100);
    s_mark_range (fixture, other, base + 100, base + 130);
    int64_t written = store_maintenance_rollup_marks (self);
    assert (written >= 100);
    assert (store_fixture_marks (fixture, port) == 0 && store_fixture_marks (fixture, other) == 0);
    assert (s_differ_from_scratch (fixture, port, base - 600, end + 600, &compared) == 0);
    assert (compared >= 100);
    assert (s_differ_from_scratch (fixture, other, base - 600, end + 600, &compared) == 0);
    assert (compared == 3);

    //  Overlapping ranges of one port in one call, the rows they re-roll
    //  spoiled first (from the predecessor's minute to the last one).
    char spoil_from[24], spoil_to[24];
    snprintf (spoil_from, sizeof (spoil_from), "%" PRId64, base - 240);
    snprintf (spoil_to, sizeof (spoil_to), "%" PRId64, end + 60);
    const char *spoil_params[3] = {port, spoil_from, spoil_to};
    const char *spoil = "UPDATE readings_minute SET energy_wh = -1, samples = 0"
                        " WHERE port_id = $1::uuid AND minute >= to_timestamp ($2::bigint)"
                        " AND minute <= to_timestamp ($3::bigint)";
    PQclear (store_fixture_sql (fixture, spoil, 3, spoil_params));
    char high_text[24];
    snprintf (high_text, sizeof (high_text), "%" PRId64, high);
    snprintf (from_text, sizeof (from_text), "%" PRId64, base);
    snprintf (to_text, sizeof (to_text), "%" PRId64, end + 100);
    const char *overlapping[4] = {port, from_text, to_text, high_text};
    assert (
        store_fixture_int (fixture,
                           "SELECT phantom_rollup_ranges (ARRAY [$1, $1, $1, $1]::uuid[],"
                           " ARRAY [to_timestamp ($2::bigint), to_timestamp ($2::bigint + 3000),"
                           "        to_timestamp ($2::bigint + 600), to_timestamp ($3::bigint)],"
                           " ARRAY [to_timestamp ($3::bigint), to_timestamp ($2::bigint + 3000),"
                           "        to_timestamp ($2::bigint + 4000), to_timestamp ($3::bigint)],"
                           " to_timestamp ($4::bigint))",
                           4, overlapping) >= 100);
    assert (s_differ_from_scratch (fixture, port, base - 600, end + 600, &compared) == 0);
    //  Pairs, every minute of the range: the same rows.
    PQclear (store_fixture_sql (fixture, spoil, 3, spoil_params));
    assert (store_fixture_int (
                fixture,
                "SELECT phantom_rollup_ports (array_agg ($1::uuid), array_agg (minute),"
                "                             to_timestamp ($4::bigint))"
                " FROM generate_series (to_timestamp ($2::bigint), to_timestamp ($3::bigint),"
                "                       interval '1 minute') minute",
                4, overlapping) >= 100);
    assert (s_differ_from_scratch (fixture, port, base - 600, end + 600, &compared) == 0);

    store_maintenance_destroy (&self);
    store_fixture_destroy (&fixture);
    if (verbose)
        printf ("   ranges of late minutes: OK\n");
}

static void *
s_write_end_later (void *argument)
{
    store_maintenance_t *self = (store_maintenance_t *)argument;
    zclock_sleep (1000);
    store_maintenance_write_end (
        self, store_lanes_rollup (self->lanes, store_lanes_count (self->lanes) - 1), false);
    return NULL;
}

//  A run waits for a lane's write that decided its marks against a bound
//  below the run's: the write's readings are then in what the run reads.
//  A write begun against the run's own bound is not waited for.
static void
s_wait_test (const char *database, bool verbose)
{
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self);
    int64_t high = store_maintenance_rolled (self);
    store_rollup_t *rollup = store_lanes_new_rollup_from (self->lanes, high * 1000);
    assert (rollup);
    atomic_store (&self->rolled, high - 120); //  as if the last run was 2 minutes ago
    assert (store_maintenance_write_begin (self, rollup) == high - 120);
    pthread_t thread;
    int rc = pthread_create (&thread, NULL, s_write_end_later, self);
    assert (rc == 0);
    int64_t started = zclock_mono ();
    assert (store_maintenance_rollup (self) >= 0);
    assert (zclock_mono () - started >= 900);
    pthread_join (thread, NULL);
    assert (store_maintenance_write_begin (self, rollup) >= high);
    started = zclock_mono ();
    assert (store_maintenance_rollup (self) >= 0);
    assert (zclock_mono () - started < 900);
    store_maintenance_write_end (self, rollup, false);
    store_maintenance_destroy (&self);
    if (verbose)
        printf ("   a run waits for the lanes' writes: OK\n");
}

void
store_maintenance_test (bool verbose)
{
    printf (" * store_maintenance: ");
    if (verbose)
        printf ("\n");
    const char *database = store_fixture_database ();
    assert (database);
    store_fixture_t *fixture = store_fixture_new (database, 2);
    const char *port0 = fixture->ports[0];
    const char *port1 = fixture->ports[1];
    store_maintenance_t *self = store_fixture_new_maintenance (database, verbose);
    store_maintenance_step (self); //  connects and does what is due

    //  Minutes well inside the lookback, ending by the maintenance's rule.
    int64_t high = store_fixture_rollup_high (fixture);
    int64_t base = high - 12 * 60;

    //  port0: three minutes at 10 s, then a gap longer than the limit
    //  (that interval counts for nothing), then two readings 30 s apart.
    store_fixture_sample_t samples0[32];
    size_t count0 = 0;
    for (int index = 0; index < 18; index++)
        samples0[count0++] =
            (store_fixture_sample_t){base + 10 * index, (index * 37 % 23) + 0.25 * index};
    samples0[count0++] = (store_fixture_sample_t){base + 500, 7.5};
    samples0[count0++] = (store_fixture_sample_t){base + 530, 12.0};
    store_fixture_readings (fixture, port0, samples0, count0);
    //  port1: a minute 40 minutes back, beyond the lookback: only the
    //  catch-up from the watermark reaches it.
    store_fixture_sample_t samples1[16];
    size_t count1 = store_fixture_catch_up_readings (fixture, port1, base, samples1, 16);

    //  As after an hour's downtime.
    store_fixture_set_watermark (fixture, base - 3600);
    assert (store_maintenance_rollup (self) >= 7);
    char high_text[24];
    snprintf (high_text, sizeof (high_text), "%" PRId64, high);
    const char *high_params[1] = {high_text};
    assert (store_fixture_int (fixture,
                               "SELECT (watermark >= to_timestamp ($1::bigint))::int"
                               " FROM rollup_state",
                               1, high_params) == 1);
    int64_t minutes0[] = {base, base + 60, base + 120, base + 480};
    for (size_t index = 0; index < 4; index++)
        store_fixture_check_minute (fixture, port0, samples0, count0, minutes0[index]);
    const char *port_params[1] = {port0};
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid",
                               1, port_params) == 4);
    store_fixture_check_minute (fixture, port1, samples1, count1, base - 2400);
    store_fixture_check_minute (fixture, port1, samples1, count1, base);
    store_fixture_check_minute (fixture, port1, samples1, count1, base + 60);

    //  A late reading in a minute already rolled up: the next run has it.
    memmove (samples0 + 8, samples0 + 7, (count0 - 7) * sizeof (store_fixture_sample_t));
    samples0[7] = (store_fixture_sample_t){base + 65, 1000};
    count0++;
    store_fixture_reading (fixture, port0, base + 65, 1000);
    //  (Written behind the store's back: marked as its lanes would.)
    s_mark_range (fixture, port0, base + 65, base + 65);
    assert (store_maintenance_rollup (self) >= 2);
    assert (store_fixture_marks (fixture, port0) == 0);
    for (size_t index = 0; index < 4; index++)
        store_fixture_check_minute (fixture, port0, samples0, count0, minutes0[index]);

    //  A minute rolled up is not rolled again when nothing late came:
    //  a value changed behind the store's back stays.
    char minute_text[24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, base + 60);
    const char *spoil_params[2] = {port0, minute_text};
    const char *spoil = "UPDATE readings_minute SET max_power = -1"
                        " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)";
    const char *spoiled = "SELECT max_power = -1 FROM readings_minute"
                          " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)";
    PQclear (store_fixture_sql (fixture, spoil, 2, spoil_params));
    store_maintenance_rollup (self);
    store_maintenance_rollup (self);
    char flag[8];
    store_fixture_text (fixture, spoiled, 2, spoil_params, flag, sizeof (flag));
    assert (streq (flag, "t"));

    s_mark_range (fixture, port0, base + 60, base + 60);
    assert (store_maintenance_rollup (self) >= 1);
    store_fixture_check_minute (fixture, port0, samples0, count0, base + 60);

    store_maintenance_destroy (&self);

    //  On its own thread: rolls up at once, and stops promptly.
    self = store_fixture_new_maintenance (database, verbose);
    int64_t recent = high - 120;
    store_fixture_reading (fixture, port1, recent, 42);
    assert (store_maintenance_start (self) == 0);
    char recent_text[24];
    snprintf (recent_text, sizeof (recent_text), "%" PRId64, recent);
    const char *recent_params[2] = {port1, recent_text};
    int64_t deadline = zclock_mono () + 10000;
    while (store_fixture_int (fixture,
                              "SELECT count (*) FROM readings_minute"
                              " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)"
                              " AND max_power = 42",
                              2, recent_params) == 0) {
        assert (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    int64_t stopping = zclock_mono ();
    store_maintenance_destroy (&self);
    assert (zclock_mono () - stopping < 2000);

    //  Deleting a port takes its rollups along.
    PQclear (store_fixture_sql (fixture, "DELETE FROM readings WHERE port_id = $1::uuid", 1,
                                port_params));
    PQclear (store_fixture_sql (fixture, "DELETE FROM ports WHERE id = $1::uuid", 1, port_params));
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid",
                               1, port_params) == 0);
    store_fixture_destroy (&fixture);

    s_memory_rollups (database, verbose);
    s_reported_test (database, verbose);
    s_ranges_test (database, verbose);
    s_wait_test (database, verbose);
    printf ("OK\n");
}
