/*  =========================================================================
    store_housekeeping - partitions ahead, old data out
    =========================================================================
*/
#include "store_housekeeping.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define S_MINUTE_MS (60 * 1000)
#define S_HOUR_MS (3600 * 1000)
#define S_DAY_MS (24 * S_HOUR_MS)
//  Days of readings' partitions kept created behind and ahead of today.
#define S_DAYS_BACK "7"
#define S_DAYS_AHEAD "7"
//  Months of rollup partitions kept created behind and ahead of this one.
#define S_MONTHS_BACK "1"
#define S_MONTHS_AHEAD "2"
//  After a failure to create partitions: readings still land in
//  readings_default meanwhile, rollups in theirs.
#define S_READINGS_RETRY_MS S_MINUTE_MS
#define S_ROLLUPS_RETRY_MS (5 * S_MINUTE_MS)
//  reading_keys: kept for the clients' retry window (7 days), pruned by
//  passes over the whole heap (no index on ts: one B-tree insert less per
//  reading, 0.4-1.0 us of PostgreSQL CPU; BENCH.md): S_PRUNE_PAGES blocks
//  per call, a call a second while a pass is on, the next pass
//  S_PRUNE_EVERY_MS after one wraps (and at start). A key goes at most one
//  pass interval after it turns 7 days old: keys live 7 days plus at most
//  a day plus a pass. Why a day, not 10 minutes: a pass reads every key,
//  ~0.1 us each, and a key is read by every pass of its 7 days, so a pass
//  every 10 minutes would cost ~100 us per reading, a hundred times the
//  index; daily passes ~0.7 us, off the write path. 4096 blocks (32 MB,
//  ~400k keys) took 45-65 ms a call with nothing to delete, ~190 ms when
//  every key went (5 M keys, warm cache): a 50 M-key table (~515k blocks)
//  is a pass of ~2 minutes holding this connection ~50 ms a second.
#define S_KEYS_KEEP_DAYS 7
#define S_PRUNE_PAGES 4096
#define S_PRUNE_EVERY_MS S_DAY_MS
#define S_PRUNE_SWEEP_MS 1000
#define S_PRUNE_RETRY_MS S_MINUTE_MS

struct _store_housekeeping_t {
    store_session_t *session;  //  where it runs (borrowed)
    int tasks;                 //  STORE_HOUSEKEEPING_* mask
    int retention_days;        //  raw readings kept, days; 0 forever
    int rollup_retention_days; //  rollups kept, days; 0 forever
    bool verbose;              //  debug logs
    int64_t partitions_at;     //  monotonic ms of the next partitions check
    int64_t retention_at;      //  ... of the next prune step or drop
    int64_t pass_deleted;      //  keys deleted by the pass in progress
};

store_housekeeping_t *
store_housekeeping_new (store_session_t *session, int tasks, int retention_days,
                        int rollup_retention_days, bool verbose)
{
    assert (session);
    assert (tasks == STORE_HOUSEKEEPING_READINGS || tasks == STORE_HOUSEKEEPING_ROLLUPS);
    assert (retention_days >= 0 && rollup_retention_days >= 0);
    store_housekeeping_t *self = (store_housekeeping_t *)zmalloc (sizeof (store_housekeeping_t));
    self->session = session;
    self->tasks = tasks;
    self->retention_days = retention_days;
    self->rollup_retention_days = rollup_retention_days;
    self->verbose = verbose;
    return self;
}

void
store_housekeeping_destroy (store_housekeeping_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

void
store_housekeeping_connected (store_housekeeping_t *self)
{
    assert (self);
    self->partitions_at = 0;
}

//  Runs a statement of the session; 0, or -1 (logged by the session).
static int
s_call (store_housekeeping_t *self, const char *what, const char *sql, int count,
        const char *const *params)
{
    PGresult *result = store_session_exec (self->session, what, sql, count, params, NULL);
    if (!result)
        return -1;
    PQclear (result);
    return 0;
}

int
store_housekeeping_ensure_readings (store_housekeeping_t *self)
{
    assert (self);
    const char *params[2] = {S_DAYS_BACK, S_DAYS_AHEAD};
    int rc = s_call (self, "phantom_ensure_partitions",
                     "SELECT phantom_ensure_partitions ($1::integer, $2::integer)", 2, params);
    if (rc == 0 && self->verbose)
        zsys_debug ("store housekeeping - partitions ensured");
    return rc;
}

int
store_housekeeping_ensure_rollups (store_housekeeping_t *self)
{
    assert (self);
    const char *params[2] = {S_MONTHS_BACK, S_MONTHS_AHEAD};
    return s_call (self, "phantom_ensure_rollup_partitions",
                   "SELECT phantom_ensure_rollup_partitions ($1::integer, $2::integer)", 2, params);
}

//  One step of the sweep over reading_keys (deploy/migrations/
//  010_prune_sweep.sql: a range of blocks from a stored cursor, no index
//  on ts any more); the next step in a second while the pass goes on, the
//  next pass a day after this one ended.
int64_t
store_housekeeping_prune (store_housekeeping_t *self)
{
    assert (self);
    char days[16], pages[16];
    snprintf (days, sizeof (days), "%d", S_KEYS_KEEP_DAYS);
    snprintf (pages, sizeof (pages), "%d", S_PRUNE_PAGES);
    const char *params[2] = {days, pages};
    PGresult *result = store_session_exec (
        self->session, "pruning reading_keys",
        "SELECT deleted, wrapped FROM phantom_prune_reading_keys_sweep ($1::int, $2::int)", 2,
        params, NULL);
    int64_t now = zclock_mono ();
    //  Database output: checked, never asserted.
    if (!result || PQntuples (result) != 1 || PQnfields (result) != 2) {
        PQclear (result);
        self->retention_at = now + S_PRUNE_RETRY_MS;
        return -1;
    }
    int64_t deleted = atoll (PQgetvalue (result, 0, 0));
    self->pass_deleted += deleted;
    bool wrapped = streq (PQgetvalue (result, 0, 1), "t");
    PQclear (result);
    if (wrapped) {
        if (self->verbose || self->pass_deleted)
            zsys_debug ("store housekeeping - pass over reading_keys: %" PRId64
                        " keys older than %d days pruned",
                        self->pass_deleted, S_KEYS_KEEP_DAYS);
        self->pass_deleted = 0;
    }
    self->retention_at = now + (wrapped ? S_PRUNE_EVERY_MS : S_PRUNE_SWEEP_MS);
    return deleted;
}

int
store_housekeeping_drop (store_housekeeping_t *self)
{
    assert (self);
    int dropped = 0;
    bool failed = false;
    char days[16];
    const char *params[1] = {days};
    if (self->retention_days > 0) {
        snprintf (days, sizeof (days), "%d", self->retention_days);
        //  Raw readings go only once rolled up: after a long downtime the
        //  catch-up comes first, else those minutes would be lost for good.
        PGresult *result =
            store_session_exec (self->session, "rollup watermark",
                                "SELECT coalesce ((SELECT watermark FROM rollup_state)"
                                "                 >= (current_date - $1::integer)::timestamp AT "
                                "TIME ZONE 'UTC', false)",
                                1, params, NULL);
        bool ready = result && streq (PQgetvalue (result, 0, 0), "t");
        if (result && !ready)
            zsys_warning ("store housekeeping - readings older than %d days kept:"
                          " rollups have not caught up with them yet",
                          self->retention_days);
        PQclear (result);
        result = ready ? store_session_exec (self->session, "phantom_drop_partitions",
                                             "SELECT phantom_drop_partitions ($1::integer)", 1,
                                             params, NULL)
                       : NULL;
        if (result) {
            dropped += atoi (PQgetvalue (result, 0, 0));
            PQclear (result);
        } else
            failed = true;
    }
    if (self->rollup_retention_days > 0) {
        snprintf (days, sizeof (days), "%d", self->rollup_retention_days);
        PGresult *result =
            store_session_exec (self->session, "phantom_drop_rollups",
                                "SELECT phantom_drop_rollups ($1::integer)", 1, params, NULL);
        if (result) {
            dropped += atoi (PQgetvalue (result, 0, 0));
            PQclear (result);
        } else
            failed = true;
    }
    if (dropped)
        zsys_info ("store housekeeping - %d old partitions dropped", dropped);
    return failed ? -1 : dropped;
}

void
store_housekeeping_step_partitions (store_housekeeping_t *self)
{
    assert (self);
    if (!store_session_conn (self->session) || zclock_mono () < self->partitions_at)
        return;
    if (self->tasks & STORE_HOUSEKEEPING_READINGS)
        self->partitions_at =
            zclock_mono () +
            (store_housekeeping_ensure_readings (self) == 0 ? S_HOUR_MS : S_READINGS_RETRY_MS);
    else
        self->partitions_at =
            zclock_mono () +
            (store_housekeeping_ensure_rollups (self) == 0 ? S_HOUR_MS : S_ROLLUPS_RETRY_MS);
}

void
store_housekeeping_step_retention (store_housekeeping_t *self)
{
    assert (self);
    if (!store_session_conn (self->session) || zclock_mono () < self->retention_at)
        return;
    if (self->tasks & STORE_HOUSEKEEPING_READINGS)
        store_housekeeping_prune (self); //  sets retention_at
    else
        self->retention_at =
            zclock_mono () + (store_housekeeping_drop (self) >= 0 ? S_DAY_MS : S_HOUR_MS);
}

void
store_housekeeping_step (store_housekeeping_t *self)
{
    store_housekeeping_step_partitions (self);
    store_housekeeping_step_retention (self);
}

int64_t
store_housekeeping_next_due (store_housekeeping_t *self)
{
    assert (self);
    return self->partitions_at < self->retention_at ? self->partitions_at : self->retention_at;
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

//  Old partitions of table (readings or readings_minute) by name.
static int64_t
s_partitions_before (store_fixture_t *fixture, const char *table, const char *pattern,
                     const char *bound)
{
    const char *params[3] = {table, pattern, bound};
    return store_fixture_int (
        fixture,
        "SELECT count (*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass AND c.relname ~ $2 AND c.relname < $3",
        3, params);
}

static const store_session_config_t s_test_session = {
    "phantom-store-housekeeping-test", "store housekeeping test", 60000, 2000, NULL, 0, NULL, 0};

//  Pruning sweeps out keys older than the retry window (7 days) from
//  when the session connects, a call a second until the pass ends (one
//  call while the table is under 4096 blocks); younger ones stay.
static void
s_prune_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    char device[24];
    snprintf (device, sizeof (device), "%" PRId64, fixture->device);
    const char *key_params[1] = {device};
    PQclear (store_fixture_sql (
        fixture,
        "INSERT INTO reading_keys (device_id, reading_key, reading_id, ts) VALUES"
        " ($1, 'old-key', nextval ('readings_id_seq'), now () - interval '8 days'),"
        " ($1, 'young-key', nextval ('readings_id_seq'), now () - interval '6 days')",
        1, key_params));
    store_session_t *session = store_session_new (database, &s_test_session, verbose);
    store_housekeeping_t *keeper =
        store_housekeeping_new (session, STORE_HOUSEKEEPING_READINGS, 0, 0, verbose);
    assert (store_session_ensure (session) == 1);
    store_housekeeping_connected (keeper);
    int64_t keep_deadline = zclock_mono () + 10000;
    while (store_fixture_int (fixture,
                              "SELECT count(*) FROM reading_keys WHERE device_id = $1"
                              " AND reading_key = 'old-key'",
                              1, key_params) > 0 &&
           zclock_mono () < keep_deadline) {
        zclock_sleep (100);
        store_housekeeping_step (keeper);
    }
    assert (store_fixture_int (fixture,
                               "SELECT count(*) FROM reading_keys WHERE device_id = $1"
                               " AND reading_key IN ('old-key', 'young-key')",
                               1, key_params) == 1);
    assert (store_fixture_int (fixture,
                               "SELECT count(*) FROM reading_keys WHERE device_id = $1"
                               " AND reading_key = 'young-key'",
                               1, key_params) == 1);
    //  Partitions: today's and the week ahead exist
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM generate_series (0, 7) d WHERE to_regclass"
                               " ('readings_' || to_char (current_date + d, 'YYYYMMDD')) IS NULL",
                               0, NULL) == 0);
    assert (store_housekeeping_next_due (keeper) > zclock_mono ());
    store_housekeeping_destroy (&keeper);
    store_session_destroy (&session);
    store_fixture_destroy (&fixture);
}

//  Retention: days 40 back exist, one old reading and old rollups; raw
//  partitions go only once rolled up.
static void
s_retention_test (const char *database, bool verbose)
{
    store_fixture_t *fixture = store_fixture_new (database, 1);
    const char *port_params[1] = {fixture->ports[0]};
    store_session_t *session = store_session_new (database, &s_test_session, verbose);
    store_housekeeping_t *self =
        store_housekeeping_new (session, STORE_HOUSEKEEPING_ROLLUPS, 30, 730, verbose);
    assert (store_session_ensure (session) == 1);
    store_housekeeping_connected (self);
    store_housekeeping_step_partitions (self);
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM generate_series (0, 2) m WHERE to_regclass"
                               " ('readings_minute_' || to_char (current_date"
                               "  + make_interval (months => m), 'YYYYMM')) IS NULL",
                               0, NULL) == 0);
    PQclear (store_fixture_sql (fixture, "SELECT phantom_ensure_partitions (40, 0)", 0, NULL));
    PQclear (
        store_fixture_sql (fixture, "SELECT phantom_ensure_rollup_partitions (30, 0)", 0, NULL));
    PQclear (
        store_fixture_sql (fixture,
                           "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
                           " VALUES ($1::uuid, (current_date - 35)::timestamp AT TIME ZONE 'UTC' + "
                           "interval '12 hours',"
                           "         230, 0, 1, 1)",
                           1, port_params));
    PQclear (store_fixture_sql (
        fixture,
        "INSERT INTO readings_minute (port_id, minute, min_power, mean_power, max_power,"
        " energy_wh, samples) SELECT $1::uuid, date_trunc ('month', current_date)::timestamp"
        " AT TIME ZONE 'UTC' - make_interval (months => months) + interval '1 day', 1, 1, 1, 0, 1"
        " FROM unnest (ARRAY [26, 23]) months",
        1, port_params));
    //  readings_<cutoff> is the oldest day kept; rollups by month.
    char raw_bound[32], rollup_bound[32];
    store_fixture_text (fixture, "SELECT 'readings_' || to_char (current_date - 30, 'YYYYMMDD')", 0,
                        NULL, raw_bound, sizeof (raw_bound));
    store_fixture_text (fixture,
                        "SELECT 'readings_minute_' || to_char (current_date - 730, 'YYYYMM')", 0,
                        NULL, rollup_bound, sizeof (rollup_bound));
    const char *raw_pattern = "^readings_[0-9]{8}$";
    int64_t old_days = s_partitions_before (fixture, "readings", raw_pattern, raw_bound);
    assert (old_days >= 10);
    int64_t readings_before = store_fixture_int (
        fixture, "SELECT count (*) FROM readings WHERE port_id = $1::uuid", 1, port_params);

    //  Not rolled up that far back: the raw partitions stay.
    char saved[64];
    store_fixture_text (fixture, "SELECT watermark::text FROM rollup_state", 0, NULL, saved,
                        sizeof (saved));
    PQclear (store_fixture_sql (fixture,
                                "UPDATE rollup_state SET watermark ="
                                " (current_date - 31)::timestamp AT TIME ZONE 'UTC'",
                                0, NULL));
    assert (store_housekeeping_drop (self) == -1);
    const char *saved_params[1] = {saved};
    PQclear (store_fixture_sql (fixture, "UPDATE rollup_state SET watermark = $1::timestamptz", 1,
                                saved_params));
    assert (s_partitions_before (fixture, "readings", raw_pattern, raw_bound) == old_days);
    //  Rolled up that far (the maintenance's runs would have)
    PQclear (store_fixture_sql (fixture,
                                "UPDATE rollup_state SET watermark = greatest (watermark,"
                                " (current_date - 30)::timestamp AT TIME ZONE 'UTC')",
                                0, NULL));

    assert (store_housekeeping_drop (self) >= old_days);
    assert (s_partitions_before (fixture, "readings", raw_pattern, raw_bound) == 0);
    const char *keep_params[1] = {raw_bound};
    assert (store_fixture_int (fixture, "SELECT (to_regclass ($1) IS NOT NULL)::int", 1,
                               keep_params) == 1);
    assert (store_fixture_int (fixture, "SELECT count (*) FROM readings WHERE port_id = $1::uuid",
                               1, port_params) == readings_before - 1);
    assert (s_partitions_before (fixture, "readings_minute", "^readings_minute_[0-9]{6}$",
                                 rollup_bound) == 0);
    assert (store_fixture_int (fixture,
                               "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid AND minute < now () - interval '1 year'",
                               1, port_params) == 1);
    //  Done for the day
    store_housekeeping_step_retention (self);
    assert (store_housekeeping_next_due (self) > zclock_mono () + 30 * S_MINUTE_MS);
    store_housekeeping_destroy (&self);
    store_session_destroy (&session);
    store_fixture_destroy (&fixture);
}

void
store_housekeeping_test (bool verbose)
{
    printf (" * store_housekeeping: ");
    if (verbose)
        printf ("\n");
    const char *database = store_fixture_database ();
    assert (database); //  the runner skips without one
    s_prune_test (database, verbose);
    s_retention_test (database, verbose);

    //  Nothing connected: nothing done, nothing due before the session is
    store_session_t *session =
        store_session_new ("host=127.0.0.1 port=1 dbname=none", &s_test_session, verbose);
    store_housekeeping_t *self =
        store_housekeeping_new (session, STORE_HOUSEKEEPING_ROLLUPS, 30, 730, verbose);
    store_housekeeping_step (self);
    assert (store_housekeeping_next_due (self) == 0);
    store_housekeeping_destroy (&self);
    store_housekeeping_destroy (&self);
    store_session_destroy (&session);
    printf ("OK\n");
}
