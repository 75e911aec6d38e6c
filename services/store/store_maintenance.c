/*  =========================================================================
    store_maintenance - rollups and retention, on a connection of its own
    =========================================================================
*/
#include "store_maintenance.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_BACKOFF_MIN_MS 100
#define S_BACKOFF_MAX_MS (10 * 1000)
//  A minute is rolled up this long after it ended: readings of its last
//  moments are still on their way through gateway, detector and store.
#define S_SETTLE_SECONDS 5
#define S_MINUTE_MS (60 * 1000)
#define S_HOUR_MS (3600 * 1000)
#define S_DAY_MS (24 * S_HOUR_MS)
#define S_ENSURE_RETRY_MS (5 * S_MINUTE_MS)
//  Catching up after a downtime: one statement per hour of readings, so
//  each stays far inside the statement timeout and a stop is noticed.
#define S_CHUNK_SECONDS 3600
//  Months of rollup partitions kept created behind and ahead of this one.
#define S_MONTHS_BACK 1
#define S_MONTHS_AHEAD 2
//  Longest sleep of the thread between checks of what is due.
#define S_WAIT_MAX_MS 1000

struct _store_maintenance_t {
    char *conninfo;                 //  libpq connection string
    store_maintenance_policy_t policy;  //  what is kept, how far back to re-roll
    bool verbose;                   //  debug logs
    PGconn *conn;                   //  NULL while disconnected
    int64_t backoff;                //  next reconnect delay, ms
    int64_t connect_at;             //  monotonic ms of the next connect attempt
    int64_t rollup_at;              //  monotonic ms of the next rollup
    int64_t ensure_at;              //  ... of the next rollup partitions check
    int64_t drop_at;                //  ... of the next retention run
    zactor_t *actor;                //  the thread, once started
    atomic_bool stopping;           //  set by destroy; the thread stops between statements
    pthread_mutex_t cancel_lock;    //  guards cancel, shared by destroy and the thread
    PGcancel *cancel;               //  cancels the statement in flight, NULL if none
    char error [256];               //  last error, one line, for logs
};

//  --------------------------------------------------------------------------
//  Connection handling

//  libpq messages span lines; logs are one line per event.
static const char *
s_one_line (store_maintenance_t *self, const char *message)
{
    snprintf (self->error, sizeof (self->error), "%s", message? message: "out of memory");
    size_t size = strlen (self->error);
    while (size && (self->error [size - 1] == '\n' || self->error [size - 1] == ' '))
        self->error [--size] = 0;
    for (char *cursor = self->error; *cursor; cursor++)
        if (*cursor == '\n' || *cursor == '\t')
            *cursor = ' ';
    return self->error;
}

static void
s_disconnect (store_maintenance_t *self)
{
    pthread_mutex_lock (&self->cancel_lock);
    if (self->cancel) {
        PQfreeCancel (self->cancel);
        self->cancel = NULL;
    }
    pthread_mutex_unlock (&self->cancel_lock);
    if (self->conn) {
        PQfinish (self->conn);
        self->conn = NULL;
    }
    self->connect_at = zclock_mono () + self->backoff;
    self->backoff *= 2;
    if (self->backoff > S_BACKOFF_MAX_MS)
        self->backoff = S_BACKOFF_MAX_MS;
}

static void
s_connect (store_maintenance_t *self)
{
    //  As the writer's: every wait on a vanished server is bounded, and
    //  dbname comes last so that the configured string wins.
    const char *keywords [] = {
        "connect_timeout", "keepalives_idle", "keepalives_interval", "keepalives_count",
        "tcp_user_timeout", "application_name", "dbname", NULL
    };
    const char *values [] = {
        "5", "10", "3", "3", "15000", "phantom-store-maintenance", self->conninfo, NULL
    };
    //  UTC: the partition functions name days by current_date. The
    //  statement timeout bounds every call (the catch-up is chunked to stay
    //  far inside it), the lock timeout a wait behind readers and writers.
    //  Rollups are recomputed after a crash anyway, so their commits need
    //  not wait for the disk.
    static const char *setup [] = {
        "SET TIME ZONE 'UTC'",
        "SET statement_timeout = '60s'",
        "SET lock_timeout = '5s'",
        "SET synchronous_commit = off",
    };
    self->conn = PQconnectdbParams (keywords, values, 1);
    if (!self->conn || PQstatus (self->conn) != CONNECTION_OK) {
        zsys_warning ("store maintenance - cannot connect, retrying in %" PRId64 " ms: %s",
                      self->backoff, s_one_line (self, self->conn? PQerrorMessage (self->conn): NULL));
        s_disconnect (self);
        return;
    }
    for (size_t index = 0; index < sizeof (setup) / sizeof (setup [0]); index++) {
        PGresult *result = PQexec (self->conn, setup [index]);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        PQclear (result);
        if (!ok) {
            zsys_error ("store maintenance - %s failed: %s", setup [index],
                        s_one_line (self, PQerrorMessage (self->conn)));
            s_disconnect (self);
            return;
        }
    }
    pthread_mutex_lock (&self->cancel_lock);
    self->cancel = PQgetCancel (self->conn);
    pthread_mutex_unlock (&self->cancel_lock);
    zsys_info ("store maintenance - connected (backend %d)", PQbackendPID (self->conn));
    self->backoff = S_BACKOFF_MIN_MS;
    //  What a downtime may have left undone is due now; retention keeps its day.
    self->rollup_at = 0;
    self->ensure_at = 0;
}

//  Runs sql with text params; the result, or NULL after logging why (and
//  disconnecting if the connection is gone). Caller PQclears.
static PGresult *
s_exec (store_maintenance_t *self, const char *what, const char *sql, int count,
        const char *const *params)
{
    if (!self->conn)
        return NULL;
    PGresult *result = PQexecParams (self->conn, sql, count, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    if (status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK)
        return result;
    //  A statement cancelled by destroy is no news.
    if (!atomic_load (&self->stopping))
        zsys_warning ("store maintenance - %s failed: %s", what,
                      s_one_line (self, result? PQresultErrorMessage (result)
                                              : PQerrorMessage (self->conn)));
    PQclear (result);
    if (PQstatus (self->conn) != CONNECTION_OK)
        s_disconnect (self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Create and destroy

store_maintenance_t *
store_maintenance_new (const char *conninfo, const store_maintenance_policy_t *policy,
                       bool verbose)
{
    assert (conninfo);
    assert (policy);
    assert (policy->retention_days >= 0 && policy->rollup_retention_days >= 0);
    assert (policy->lookback_minutes >= 1);
    store_maintenance_t *self = (store_maintenance_t *) zmalloc (sizeof (store_maintenance_t));
    self->conninfo = strdup (conninfo);
    if (!self->conninfo) {
        free (self);
        return NULL;
    }
    self->policy = *policy;
    self->verbose = verbose;
    self->backoff = S_BACKOFF_MIN_MS;
    atomic_init (&self->stopping, false);
    pthread_mutex_init (&self->cancel_lock, NULL);
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
            pthread_mutex_lock (&self->cancel_lock);
            if (self->cancel) {
                char error [256];
                PQcancel (self->cancel, error, sizeof (error));
            }
            pthread_mutex_unlock (&self->cancel_lock);
            zactor_destroy (&self->actor);
        }
        if (self->conn)
            s_disconnect (self);
        pthread_mutex_destroy (&self->cancel_lock);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  --------------------------------------------------------------------------
//  Roll up the minutes since the watermark and the last lookback minutes

int64_t
store_maintenance_rollup (store_maintenance_t *self)
{
    assert (self);
    char lookback [16], settle [16];
    snprintf (lookback, sizeof (lookback), "%d", self->policy.lookback_minutes);
    snprintf (settle, sizeof (settle), "%d", S_SETTLE_SECONDS);
    const char *params [2] = { lookback, settle };
    //  From the watermark or lookback minutes back, whichever is older, to
    //  the last minute that ended S_SETTLE_SECONDS ago; by the database's
    //  clock, the one the watermark was set by.
    PGresult *result = s_exec (self, "rollup window",
        "SELECT extract (epoch FROM least (coalesce ((SELECT watermark FROM rollup_state), high),"
        "                                  high - $1::integer * interval '1 minute'))::bigint,"
        "       extract (epoch FROM high)::bigint"
        " FROM (SELECT date_bin ('1 minute', now () - $2::integer * interval '1 second',"
        "                        timestamptz 'epoch') AS high) window_end", 2, params);
    if (!result)
        return -1;
    int64_t from = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    int64_t high = strtoll (PQgetvalue (result, 0, 1), NULL, 10);
    PQclear (result);
    if (high - from > S_CHUNK_SECONDS)
        zsys_info ("store maintenance - catching up %" PRId64 " minutes of rollups",
                   (high - from) / 60);
    int64_t written = 0;
    while (from < high && !atomic_load (&self->stopping)) {
        int64_t to = high - from > S_CHUNK_SECONDS? from + S_CHUNK_SECONDS: high;
        char from_text [24], to_text [24];
        snprintf (from_text, sizeof (from_text), "%" PRId64, from);
        snprintf (to_text, sizeof (to_text), "%" PRId64, to);
        const char *range [2] = { from_text, to_text };
        result = s_exec (self, "phantom_rollup",
                         "SELECT phantom_rollup (to_timestamp ($1::bigint), to_timestamp ($2::bigint))",
                         2, range);
        if (!result)
            return -1;
        written += strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        PQclear (result);
        from = to;
    }
    if (self->verbose)
        zsys_debug ("store maintenance - %" PRId64 " port minutes rolled up", written);
    return written;
}

//  --------------------------------------------------------------------------
//  Create the months of rollups ahead

int
store_maintenance_ensure (store_maintenance_t *self)
{
    assert (self);
    char back [16], ahead [16];
    snprintf (back, sizeof (back), "%d", S_MONTHS_BACK);
    snprintf (ahead, sizeof (ahead), "%d", S_MONTHS_AHEAD);
    const char *params [2] = { back, ahead };
    PGresult *result = s_exec (self, "phantom_ensure_rollup_partitions",
        "SELECT phantom_ensure_rollup_partitions ($1::integer, $2::integer)", 2, params);
    if (!result)
        return -1;
    PQclear (result);
    return 0;
}

//  --------------------------------------------------------------------------
//  Drop what the policy no longer keeps

int
store_maintenance_drop (store_maintenance_t *self)
{
    assert (self);
    int dropped = 0;
    bool failed = false;
    char days [16];
    const char *params [1] = { days };
    if (self->policy.retention_days > 0) {
        snprintf (days, sizeof (days), "%d", self->policy.retention_days);
        //  Raw readings go only once rolled up: after a long downtime the
        //  catch-up comes first, else those minutes would be lost for good.
        PGresult *result = s_exec (self, "rollup watermark",
            "SELECT coalesce ((SELECT watermark FROM rollup_state)"
            "                 >= (current_date - $1::integer)::timestamp AT TIME ZONE 'UTC', false)",
            1, params);
        bool ready = result && streq (PQgetvalue (result, 0, 0), "t");
        if (result && !ready)
            zsys_warning ("store maintenance - readings older than %d days kept:"
                          " rollups have not caught up with them yet", self->policy.retention_days);
        PQclear (result);
        result = ready? s_exec (self, "phantom_drop_partitions",
                                "SELECT phantom_drop_partitions ($1::integer)", 1, params): NULL;
        if (result) {
            dropped += atoi (PQgetvalue (result, 0, 0));
            PQclear (result);
        }
        else
            failed = true;
    }
    if (self->policy.rollup_retention_days > 0) {
        snprintf (days, sizeof (days), "%d", self->policy.rollup_retention_days);
        PGresult *result = s_exec (self, "phantom_drop_rollups",
                                   "SELECT phantom_drop_rollups ($1::integer)", 1, params);
        if (result) {
            dropped += atoi (PQgetvalue (result, 0, 0));
            PQclear (result);
        }
        else
            failed = true;
    }
    if (dropped)
        zsys_info ("store maintenance - %d old partitions dropped", dropped);
    return failed? -1: dropped;
}

//  --------------------------------------------------------------------------
//  Do what is due

//  Until S_SETTLE_SECONDS after the next minute of the wall clock.
static int64_t
s_until_next_minute (void)
{
    int64_t into = (zclock_time () - S_SETTLE_SECONDS * 1000) % S_MINUTE_MS;
    return S_MINUTE_MS - into;
}

void
store_maintenance_step (store_maintenance_t *self)
{
    assert (self);
    if (!self->conn && zclock_mono () >= self->connect_at)
        s_connect (self);
    //  Partitions first: a rollup of a month not yet created would land in
    //  the default partition, and that month could then not be created.
    if (self->conn && zclock_mono () >= self->ensure_at)
        self->ensure_at = zclock_mono ()
                        + (store_maintenance_ensure (self) == 0? S_HOUR_MS: S_ENSURE_RETRY_MS);
    if (self->conn && zclock_mono () >= self->rollup_at) {
        store_maintenance_rollup (self);
        //  After a failure too: the next run covers the missed minutes.
        self->rollup_at = zclock_mono () + s_until_next_minute ();
    }
    if (self->conn && zclock_mono () >= self->drop_at)
        self->drop_at = zclock_mono () + (store_maintenance_drop (self) >= 0? S_DAY_MS: S_HOUR_MS);
}

//  Monotonic ms of the next thing due.
static int64_t
s_next_due (store_maintenance_t *self)
{
    if (!self->conn)
        return self->connect_at;
    int64_t next = self->rollup_at;
    if (self->ensure_at < next)
        next = self->ensure_at;
    if (self->drop_at < next)
        next = self->drop_at;
    return next;
}

static void
s_actor (zsock_t *pipe, void *args)
{
    store_maintenance_t *self = (store_maintenance_t *) args;
    zpoller_t *poller = zpoller_new (pipe, NULL);
    zsock_signal (pipe, 0);
    while (poller && !atomic_load (&self->stopping)) {
        store_maintenance_step (self);
        int64_t wait = s_next_due (self) - zclock_mono ();
        if (wait < 0)
            wait = 0;
        if (wait > S_WAIT_MAX_MS)
            wait = S_WAIT_MAX_MS;
        if (zpoller_wait (poller, (int) wait) == pipe) {
            char *command = zstr_recv (pipe);
            bool terminate = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (terminate)
                break;
        }
        else
        if (zpoller_terminated (poller))
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
               " last %d minutes rolled up again", self->policy.retention_days,
               self->policy.rollup_retention_days, self->policy.lookback_minutes);
    return 0;
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"
#include <math.h>

#define S_TEST_GAP 300              //  phantom_rollup's default gap limit, seconds

typedef struct {
    int64_t ts;                     //  seconds since the epoch
    double power;                   //  W
} s_sample_t;

//  Inserts a reading of port at ts.
static void
s_insert (store_fixture_t *fixture, const char *port, int64_t ts, double power)
{
    char ts_text [24], power_text [32];
    snprintf (ts_text, sizeof (ts_text), "%" PRId64, ts);
    snprintf (power_text, sizeof (power_text), "%.17g", power);
    const char *params [3] = { port, ts_text, power_text };
    PQclear (store_fixture_sql (fixture,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " VALUES ($1::uuid, to_timestamp ($2::bigint), 230, $3::float8 / 230, $3::float8, 1)",
        3, params));
}

//  Checks the rollup of port's minute against one computed here from
//  samples (all the port's readings, by time): plain mean, trapezoid of
//  the intervals starting in the minute that are at most S_TEST_GAP long.
static void
s_check_minute (store_fixture_t *fixture, const char *port, const s_sample_t *samples,
                size_t count, int64_t minute)
{
    double low = INFINITY, high = -INFINITY, sum = 0, energy = 0;
    int n = 0;
    for (size_t index = 0; index < count; index++) {
        if (samples [index].ts - samples [index].ts % 60 != minute)
            continue;
        double power = samples [index].power;
        low = power < low? power: low;
        high = power > high? power: high;
        sum += power;
        n++;
        if (index + 1 < count && samples [index + 1].ts - samples [index].ts <= S_TEST_GAP)
            energy += (power + samples [index + 1].power) / 2
                    * (double) (samples [index + 1].ts - samples [index].ts) / 3600;
    }
    assert (n > 0);
    char minute_text [24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, minute);
    const char *params [2] = { port, minute_text };
    PGresult *result = store_fixture_sql (fixture,
        "SELECT min_power, mean_power, max_power, energy_wh, samples FROM readings_minute"
        " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)", 2, params);
    assert (PQntuples (result) == 1);
    assert (strtod (PQgetvalue (result, 0, 0), NULL) == low);
    assert (fabs (strtod (PQgetvalue (result, 0, 1), NULL) - sum / n) < 1e-9);
    assert (strtod (PQgetvalue (result, 0, 2), NULL) == high);
    assert (fabs (strtod (PQgetvalue (result, 0, 3), NULL) - energy) < 1e-9);
    assert (atoi (PQgetvalue (result, 0, 4)) == n);
    PQclear (result);
}

//  Old partitions of table (readings or readings_minute) by name.
static int64_t
s_partitions_before (store_fixture_t *fixture, const char *table, const char *pattern,
                     const char *bound)
{
    const char *params [3] = { table, pattern, bound };
    return store_fixture_int (fixture,
        "SELECT count (*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = $1::regclass AND c.relname ~ $2 AND c.relname < $3", 3, params);
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
    const char *port0 = fixture->ports [0];
    const char *port1 = fixture->ports [1];
    store_maintenance_policy_t policy = { 30, 730, 15 };
    store_maintenance_t *self = store_maintenance_new (database, &policy, verbose);
    assert (self);
    store_maintenance_step (self);          //  connects and does what is due

    //  Minutes well inside the lookback, ending by the maintenance's rule.
    int64_t high = store_fixture_int (fixture,
        "SELECT extract (epoch FROM date_bin ('1 minute', now () - interval '5 seconds',"
        " timestamptz 'epoch'))::bigint", 0, NULL);
    int64_t base = high - 12 * 60;

    //  port0: three minutes at 10 s, then a gap longer than the limit
    //  (that interval counts for nothing), then two readings 30 s apart.
    s_sample_t samples0 [32];
    size_t count0 = 0;
    for (int index = 0; index < 18; index++)
        samples0 [count0++] = (s_sample_t) { base + 10 * index, (index * 37 % 23) + 0.25 * index };
    samples0 [count0++] = (s_sample_t) { base + 500, 7.5 };
    samples0 [count0++] = (s_sample_t) { base + 530, 12.0 };
    for (size_t index = 0; index < count0; index++)
        s_insert (fixture, port0, samples0 [index].ts, samples0 [index].power);
    //  port1: a minute 40 minutes back, beyond the lookback: only the
    //  catch-up from the watermark reaches it.
    s_sample_t samples1 [] = {
        { base - 2400, 3 }, { base - 2380, 4 }, { base - 2360, 8 }, { base + 5, 2 }, { base + 65, 1 }
    };
    size_t count1 = sizeof (samples1) / sizeof (samples1 [0]);
    for (size_t index = 0; index < count1; index++)
        s_insert (fixture, port1, samples1 [index].ts, samples1 [index].power);

    //  As after an hour's downtime.
    char watermark_text [24];
    snprintf (watermark_text, sizeof (watermark_text), "%" PRId64, base - 3600);
    const char *watermark_params [1] = { watermark_text };
    PQclear (store_fixture_sql (fixture,
        "UPDATE rollup_state SET watermark = to_timestamp ($1::bigint)", 1, watermark_params));
    assert (store_maintenance_rollup (self) >= 7);
    char high_text [24];
    snprintf (high_text, sizeof (high_text), "%" PRId64, high);
    const char *high_params [1] = { high_text };
    assert (store_fixture_int (fixture, "SELECT (watermark >= to_timestamp ($1::bigint))::int"
                               " FROM rollup_state", 1, high_params) == 1);
    int64_t minutes0 [] = { base, base + 60, base + 120, base + 480 };
    for (size_t index = 0; index < 4; index++)
        s_check_minute (fixture, port0, samples0, count0, minutes0 [index]);
    const char *port_params [1] = { port0 };
    assert (store_fixture_int (fixture, "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid", 1, port_params) == 4);
    s_check_minute (fixture, port1, samples1, count1, base - 2400);
    s_check_minute (fixture, port1, samples1, count1, base);
    s_check_minute (fixture, port1, samples1, count1, base + 60);

    //  A late reading in a minute already rolled up: the next run has it.
    memmove (samples0 + 8, samples0 + 7, (count0 - 7) * sizeof (s_sample_t));
    samples0 [7] = (s_sample_t) { base + 65, 1000 };
    count0++;
    s_insert (fixture, port0, base + 65, 1000);
    assert (store_maintenance_rollup (self) >= 4);
    for (size_t index = 0; index < 4; index++)
        s_check_minute (fixture, port0, samples0, count0, minutes0 [index]);

    //  Retention: days 40 back exist, one old reading and old rollups.
    PQclear (store_fixture_sql (fixture, "SELECT phantom_ensure_partitions (40, 0)", 0, NULL));
    PQclear (store_fixture_sql (fixture, "SELECT phantom_ensure_rollup_partitions (30, 0)", 0, NULL));
    PQclear (store_fixture_sql (fixture,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " VALUES ($1::uuid, (current_date - 35)::timestamp AT TIME ZONE 'UTC' + interval '12 hours',"
        "         230, 0, 1, 1)", 1, port_params));
    PQclear (store_fixture_sql (fixture,
        "INSERT INTO readings_minute (port_id, minute, min_power, mean_power, max_power,"
        " energy_wh, samples) SELECT $1::uuid, date_trunc ('month', current_date)::timestamp"
        " AT TIME ZONE 'UTC' - make_interval (months => months) + interval '1 day', 1, 1, 1, 0, 1"
        " FROM unnest (ARRAY [26, 23]) months", 1, port_params));
    //  readings_<cutoff> is the oldest day kept; rollups by month.
    char raw_bound [32], rollup_bound [32];
    store_fixture_text (fixture, "SELECT 'readings_' || to_char (current_date - 30, 'YYYYMMDD')",
                        0, NULL, raw_bound, sizeof (raw_bound));
    store_fixture_text (fixture, "SELECT 'readings_minute_' || to_char (current_date - 730, 'YYYYMM')",
                        0, NULL, rollup_bound, sizeof (rollup_bound));
    const char *raw_pattern = "^readings_[0-9]{8}$";
    int64_t old_days = s_partitions_before (fixture, "readings", raw_pattern, raw_bound);
    assert (old_days >= 10);
    int64_t readings_before = store_fixture_int (fixture,
        "SELECT count (*) FROM readings WHERE port_id = $1::uuid", 1, port_params);

    //  Not rolled up that far back: the raw partitions stay.
    char saved [64];
    store_fixture_text (fixture, "SELECT watermark::text FROM rollup_state", 0, NULL,
                        saved, sizeof (saved));
    PQclear (store_fixture_sql (fixture, "UPDATE rollup_state SET watermark ="
                                " (current_date - 31)::timestamp AT TIME ZONE 'UTC'", 0, NULL));
    assert (store_maintenance_drop (self) == -1);
    const char *saved_params [1] = { saved };
    PQclear (store_fixture_sql (fixture, "UPDATE rollup_state SET watermark = $1::timestamptz",
                                1, saved_params));
    assert (s_partitions_before (fixture, "readings", raw_pattern, raw_bound) == old_days);

    assert (store_maintenance_drop (self) >= old_days);
    assert (s_partitions_before (fixture, "readings", raw_pattern, raw_bound) == 0);
    const char *keep_params [1] = { raw_bound };
    assert (store_fixture_int (fixture, "SELECT (to_regclass ($1) IS NOT NULL)::int",
                               1, keep_params) == 1);
    assert (store_fixture_int (fixture, "SELECT count (*) FROM readings WHERE port_id = $1::uuid",
                               1, port_params) == readings_before - 1);
    assert (s_partitions_before (fixture, "readings_minute", "^readings_minute_[0-9]{6}$",
                                 rollup_bound) == 0);
    assert (store_fixture_int (fixture, "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid AND minute < now () - interval '1 year'",
                               1, port_params) == 1);
    store_maintenance_destroy (&self);

    //  On its own thread: rolls up at once, and stops promptly.
    self = store_maintenance_new (database, &policy, verbose);
    assert (self);
    int64_t recent = high - 120;
    s_insert (fixture, port1, recent, 42);
    assert (store_maintenance_start (self) == 0);
    char recent_text [24];
    snprintf (recent_text, sizeof (recent_text), "%" PRId64, recent);
    const char *recent_params [2] = { port1, recent_text };
    int64_t deadline = zclock_mono () + 10000;
    while (store_fixture_int (fixture, "SELECT count (*) FROM readings_minute"
                              " WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)"
                              " AND max_power = 42", 2, recent_params) == 0) {
        assert (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    int64_t stopping = zclock_mono ();
    store_maintenance_destroy (&self);
    assert (zclock_mono () - stopping < 2000);

    //  Deleting a port takes its rollups along.
    PQclear (store_fixture_sql (fixture, "DELETE FROM readings WHERE port_id = $1::uuid",
                                1, port_params));
    PQclear (store_fixture_sql (fixture, "DELETE FROM ports WHERE id = $1::uuid", 1, port_params));
    assert (store_fixture_int (fixture, "SELECT count (*) FROM readings_minute"
                               " WHERE port_id = $1::uuid", 1, port_params) == 0);
    store_fixture_destroy (&fixture);
    printf ("OK\n");
}
