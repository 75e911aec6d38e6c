/*  =========================================================================
    store_writer - writes batches of verdicts to PostgreSQL
    =========================================================================
*/
#include "store_writer.h"
#include "proto_pg.h"
#include "store_housekeeping.h"
#include "store_session.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

//  Reading times travel as ms since the epoch; this turns one into a
//  timestamptz exactly and without depending on the session's time zone.
#define S_TS(ms) "(timestamptz 'epoch' + " ms " * interval '1 millisecond')"

//  Idempotency: reading_keys maps a device's readingId to its reading.
//  Every reading gets its id from the writer's block of ids (s_ids_sql)
//  before the transaction, so the keys can go out in the same pipeline as
//  everything else, without waiting for what the database assigns.
//
//  Fast form: a plain INSERT of the first occurrence of each (device, key)
//  in the batch. A key stored before fails it (23505 on reading_keys_pkey);
//  the writer then runs the attempt again in the safe form and stays with
//  that form for a while (retries come in storms). A plain insert is ~40 %
//  cheaper than ON CONFLICT's speculative insertion, and new keys are the
//  common case.
//
//  The fast form writes the keys and the readings in one statement: a
//  data-modifying WITH runs to completion whether or not the main query
//  reads it. A small transaction is then BEGIN, this, COMMIT (with ports
//  and episodes when due) in one pipeline, one round trip; so is a large
//  one. Parameters travel in binary (store_batch_*_binary), times as
//  timestamptz: no array text to parse, no conversion per row. With
//  generic plans (s_settings_durable) a transaction of ~10 readings costs
//  PostgreSQL ~20-35 % less CPU than text arrays, custom plans and two
//  statements (one statement instead of two: ~10 % of it); a batch of
//  1000 costs the same as text keys + binary COPY of the readings (B-tree
//  inserts are over half of it: BENCH.md, issue 5). COPY of both was no
//  cheaper either (a 1000-row COPY pins a slot per buffered row in the
//  resource owner, which costs quadratically) and takes round trips.
//  The arrays are unnested in the select list, in lockstep, not in FROM:
//  a function in FROM is first materialised into a tuplestore, which cost
//  0.8 us per 7-column row against 0.2 us here (a million rows, psql).
static const char s_write_sql[] =
    "WITH k AS (INSERT INTO reading_keys (device_id, reading_key, ts, reading_id)"
    "           SELECT unnest ($1::bigint[]), unnest ($2::text[]), unnest ($3::timestamptz[]),"
    "                  unnest ($4::bigint[]))"
    " INSERT INTO readings (id, port_id, ts, voltage, current, power, status)"
    " SELECT unnest ($5::bigint[]), unnest ($6::uuid[]), unnest ($7::timestamptz[]),"
    "        unnest ($8::float8[]), unnest ($9::float8[]), unnest ($10::float8[]),"
    "        unnest ($11::smallint[])";
#define S_WRITE_PARAMS (STORE_KEYS_PARAMS + STORE_READINGS_PARAMS)

//  Readings alone: a batch without keys, or after the safe form of keys.
static const char s_readings_sql[] =
    "INSERT INTO readings (id, port_id, ts, voltage, current, power, status)"
    " SELECT unnest ($1::bigint[]), unnest ($2::uuid[]), unnest ($3::timestamptz[]),"
    "        unnest ($4::float8[]), unnest ($5::float8[]), unnest ($6::float8[]),"
    "        unnest ($7::smallint[])";

//  Safe form: keys stored before are skipped, and only those rows come
//  back (usually none) with the stored id and time, as "{id,ms}". The
//  lookup is a scalar subquery on the primary key, run for skipped rows
//  only: no plan, generic or custom, can make it a scan of reading_keys.
//  A key that another writer committed while this statement waited for
//  it is not in the statement's snapshot: NULL, and the attempt is retried.
//  The parameters are the fast form's keys (store_batch_keys_params).
static const char s_keys_safe_sql[] =
    "WITH u AS (SELECT * FROM unnest ($1::bigint[], $2::text[], $3::timestamptz[], $4::bigint[])"
    "           WITH ORDINALITY AS u (device_id, reading_key, ts, reading_id, n)),"
    " ins AS (INSERT INTO reading_keys (device_id, reading_key, reading_id, ts)"
    "         SELECT device_id, reading_key, reading_id, ts FROM u ORDER BY n"
    "         ON CONFLICT DO NOTHING"
    "         RETURNING reading_id)"
    " SELECT u.n, (SELECT array [k.reading_id, (extract (epoch FROM k.ts) * 1000)::bigint]"
    "              FROM reading_keys k"
    "              WHERE k.device_id = u.device_id AND k.reading_key = u.reading_key)"
    " FROM u WHERE u.reading_id NOT IN (SELECT reading_id FROM ins)";

//  A block of reading ids, taken outside any transaction (sequences are
//  not transactional: an id is never handed out twice, rolled back or not).
static const char s_ids_sql[] =
    "SELECT nextval ('readings_id_seq') FROM generate_series (1, $1::int)";

//  Port rows (see store_batch.h for when). Status from the port's last
//  verdict; since when: its last change, else this write if the stored
//  status differs. NULL keeps the stored value: status (unknown), reading
//  time and power (a verdict without a reading).
//  A handful of ports is a nested loop over the primary key, in the
//  generic plan too: the session has enable_seqscan off (see s_session;
//  store_writer_test checks the plan).
//  (Not clang-formatted: it would break the statement at every S_TS.)
// clang-format off
static const char s_ports_sql[] =
    "UPDATE ports p SET"
    "  status = coalesce (u.status, p.status),"
    "  status_since = CASE"
    "    WHEN u.changed_ms IS NOT NULL THEN " S_TS ("u.changed_ms")
    "    WHEN u.status IS NOT NULL AND (u.status <> p.status OR p.status_since IS NULL)"
    "      THEN coalesce (" S_TS ("u.ts_ms") ", p.last_reading_at, now ())"
    "    ELSE p.status_since END,"
    "  last_reading_at = coalesce (" S_TS ("u.ts_ms") ", p.last_reading_at),"
    "  last_power = coalesce (u.power, p.last_power)"
    " FROM unnest ($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[])"
    "      AS u (id, status, ts_ms, changed_ms, power)"
    " WHERE p.id = u.id";
// clang-format on

static const char s_episodes_sql[] =
    "INSERT INTO episodes (port_id, user_id, started_at, ended_at, mean_watts, peak_watts,"
    "                      energy_wh, samples)"
    " SELECT port_id, user_id, " S_TS ("start_ms") ", " S_TS (
        "end_ms") ","
                  "        mean, peak, energy, samples"
                  " FROM unnest ($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], "
                  "$5::float8[],"
                  "              $6::float8[], $7::float8[], $8::bigint[])"
                  "      AS u (port_id, user_id, start_ms, end_ms, mean, peak, energy, samples)"
                  " ON CONFLICT (port_id, started_at) DO UPDATE SET"
                  "  ended_at = EXCLUDED.ended_at, mean_watts = EXCLUDED.mean_watts,"
                  "  peak_watts = EXCLUDED.peak_watts, energy_wh = EXCLUDED.energy_wh,"
                  "  samples = EXCLUDED.samples";

//  Minutes already rolled up that the transaction's late readings change,
//  as ranges per port (store_batch_marks_binary): they commit with the
//  readings, so no crash between this commit and the maintenance's re-roll
//  can lose them (rollup_marks, migration 014). Only late readings have
//  marks: a batch in order sends no such statement.
static const char s_marks_sql[] =
    "INSERT INTO rollup_marks (port_id, first_minute, last_minute)"
    " SELECT unnest ($1::uuid[]), unnest ($2::timestamptz[]), unnest ($3::timestamptz[])";

//  The prepared statements of every writer session, by name.
static const store_session_statement_t s_statements[] = {
    {"store_write", s_write_sql},         {"store_readings", s_readings_sql},
    {"store_keys_safe", s_keys_safe_sql}, {"store_ids", s_ids_sql},
    {"store_ports", s_ports_sql},         {"store_episodes", s_episodes_sql},
    {"store_marks", s_marks_sql},
};
#define S_STATEMENTS (sizeof (s_statements) / sizeof (s_statements[0]))

//  Ids taken from the sequence at a time: one round trip per this many
//  readings (the rest are lost on a restart: gaps, never duplicates).
#define S_ID_BLOCK 10000
//  After a key conflict, the safe form of the keys statement for this long.
#define S_SAFE_MS 10000
//  Reconnects: from 100 ms, doubling to this.
#define S_BACKOFF_MAX_MS 2000
//  Bounds a wait on a lock held by someone else.
#define S_STATEMENT_TIMEOUT_MS 30000

//  How an attempt ended.
typedef enum {
    S_OK = 0,
    S_DATA = 1,      //  the data was refused (SQLSTATE class 22 or 23)
    S_TRANSIENT = 2, //  anything else the server said
    S_LOST = 3,      //  the connection is gone
    S_CONFLICT = 4   //  fast keys statement met a stored key
} s_outcome_t;

struct _store_writer_t {
    store_session_t *session;           //  its PostgreSQL connection
    store_housekeeping_t *housekeeping; //  readings' partitions, key pruning; NULL: another's
    bool verbose;                       //  debug logs
    int64_t safe_until;                 //  monotonic ms until which keys use the safe form
    int64_t *ids;                       //  block of reading ids not handed out yet
    size_t id_next;                     //  next unused in ids
    size_t id_count;                    //  ids held
    size_t id_capacity;                 //  allocated
    char error[256];                    //  last error, for logs
};

//  --------------------------------------------------------------------------
//  The writers' session

//  Process-wide, set once by main before any writer connects.
static bool s_synchronous_commit = true;

void
store_writer_set_synchronous_commit (bool on)
{
    s_synchronous_commit = on;
}

//  Durability is the point of the ack: synchronous_commit is forced to
//  the default even if the server or role was configured otherwise.
//  Generic plans: every statement is planned once per connection. A
//  custom plan for each call cost 50-100 us of PostgreSQL CPU per small
//  transaction (a quarter of it: BENCH.md, issue 5). The writer once used
//  custom plans because a generic plan, made while a table was empty and
//  never analysed, scanned all of it on every batch ever after
//  (BENCHMARKS.md). That cannot come back: with sequential scans off,
//  every statement here has an index path to each table it reads
//  (store_writer_test explains every plan with the tables empty and
//  unanalysed, then populated, and fails on any Seq Scan).
//  No sequential scans: every statement of this connection touches a few
//  rows by a key, and statistics can mislead (a table emptied by deletes,
//  its index bloated: the planner then prices one index lookup above a
//  scan of the whole heap). Only a penalty: without an index a scan still
//  runs.
//  No JIT: a plan whose estimate passes jit_above_cost (easily, with a
//  penalised scan in it, or a misestimate) spent 0.1-1.5 s compiling for
//  a statement that runs in a millisecond.
//  Asynchronous commit is for the fault suite only: a commit, and so an
//  ack, then returns before its WAL is on disk, and a PostgreSQL crash
//  loses acknowledged readings; the negative control sets it to prove its
//  checker catches such a loss.
static const char *s_settings_durable[] = {"SET synchronous_commit = on",
                                           "SET plan_cache_mode = force_generic_plan",
                                           "SET enable_seqscan = off", "SET jit = off"};
static const char *s_settings_fault[] = {"SET synchronous_commit = off",
                                         "SET plan_cache_mode = force_generic_plan",
                                         "SET enable_seqscan = off", "SET jit = off"};
#define S_SETTINGS (sizeof (s_settings_durable) / sizeof (s_settings_durable[0]))

//  The session of a writer connected now.
static store_session_config_t
s_session_config (void)
{
    store_session_config_t config = {STORE_SESSION_WRITERS,
                                     "store writer",
                                     S_STATEMENT_TIMEOUT_MS,
                                     S_BACKOFF_MAX_MS,
                                     s_synchronous_commit ? s_settings_durable : s_settings_fault,
                                     S_SETTINGS,
                                     s_statements,
                                     S_STATEMENTS};
    return config;
}

//  The connection, NULL while disconnected.
static PGconn *
s_conn (store_writer_t *self)
{
    return store_session_conn (self->session);
}

//  --------------------------------------------------------------------------
//  Create a writer and try to connect

store_writer_t *
store_writer_new (const char *conninfo, bool verbose)
{
    assert (conninfo);
    store_writer_t *self = (store_writer_t *)zmalloc (sizeof (store_writer_t));
    store_session_config_t config = s_session_config ();
    self->session = store_session_new (conninfo, &config, verbose);
    self->verbose = verbose;
    if (self->session)
        self->housekeeping =
            store_housekeeping_new (self->session, STORE_HOUSEKEEPING_READINGS, 0, 0, verbose);
    if (!self->session || !self->housekeeping) {
        store_writer_destroy (&self);
        return NULL;
    }
    store_writer_maintain (self);
    return self;
}

void
store_writer_destroy (store_writer_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_writer_t *self = *self_p;
        store_housekeeping_destroy (&self->housekeeping);
        store_session_destroy (&self->session);
        free (self->ids);
        free (self);
        *self_p = NULL;
    }
}

int
store_writer_backend (store_writer_t *self)
{
    assert (self);
    return store_session_backend (self->session);
}

bool
store_writer_connected (store_writer_t *self)
{
    assert (self);
    return store_session_connected (self->session);
}

void
store_writer_maintain (store_writer_t *self)
{
    assert (self);
    if (store_session_ensure (self->session) == 1) {
        if (!s_synchronous_commit)
            zsys_warning ("store writer - synchronous_commit = off: a crash of PostgreSQL"
                          " loses acknowledged readings (fault tests only)");
        if (self->housekeeping)
            store_housekeeping_connected (self->housekeeping);
    }
    if (self->housekeeping)
        store_housekeeping_step (self->housekeeping);
}

void
store_writer_set_housekeeping (store_writer_t *self, bool housekeeping)
{
    assert (self);
    if (!housekeeping)
        store_housekeeping_destroy (&self->housekeeping);
    else if (!self->housekeeping) {
        self->housekeeping = store_housekeeping_new (self->session, STORE_HOUSEKEEPING_READINGS, 0,
                                                     0, self->verbose);
        if (self->housekeeping)
            store_housekeeping_connected (self->housekeeping);
    }
}

//  --------------------------------------------------------------------------
//  One attempt: the undecided rows of [lo, hi) in one transaction

//  Classifies a failed result (NULL: libpq gave none) and keeps the message.
static s_outcome_t
s_failure (store_writer_t *self, PGresult *result, const char *step)
{
    const char *state = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    snprintf (self->error, sizeof (self->error), "%s: %s%s%s", step, state ? state : "",
              state ? " " : "", proto_pg_error (s_conn (self), result));
    if (PQstatus (s_conn (self)) != CONNECTION_OK)
        return S_LOST;
    //  A stored key: the fast form's keys met one (the statement that
    //  carries them also inserts readings, so the constraint tells).
    const char *constraint = result ? PQresultErrorField (result, PG_DIAG_CONSTRAINT_NAME) : NULL;
    if (state && streq (state, "23505") && constraint && streq (constraint, "reading_keys_pkey"))
        return S_CONFLICT;
    if (state && (strncmp (state, "22", 2) == 0 || strncmp (state, "23", 2) == 0))
        return S_DATA;
    return S_TRANSIENT;
}

//  Binary parameters (store_column.h) have format 1, each.
#define S_PARAMS_MAX S_WRITE_PARAMS
static const int s_formats[S_PARAMS_MAX] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};

//  Runs a prepared statement (binary parameters if lengths) expecting
//  status; on failure classifies it.
static s_outcome_t
s_run (store_writer_t *self, const char *name, int count, const char *const *params,
       const int *lengths, ExecStatusType expected, PGresult **result_p)
{
    assert (count <= S_PARAMS_MAX);
    PGresult *result =
        PQexecPrepared (s_conn (self), name, count, params, lengths, lengths ? s_formats : NULL, 0);
    if (PQresultStatus (result) != expected) {
        s_outcome_t outcome = s_failure (self, result, name);
        PQclear (result);
        return outcome;
    }
    if (result_p)
        *result_p = result;
    else
        PQclear (result);
    return S_OK;
}

static s_outcome_t
s_command (store_writer_t *self, const char *sql)
{
    PGresult *result = PQexec (s_conn (self), sql);
    s_outcome_t outcome = S_OK;
    if (PQresultStatus (result) != PGRES_COMMAND_OK)
        outcome = s_failure (self, result, sql);
    PQclear (result);
    return outcome;
}

//  Parses a bigint column; the database is outside input, so no asserts.
static int
s_value (PGresult *result, int row, int column, int64_t *value)
{
    if (PQgetisnull (result, row, column))
        return -1;
    char *end;
    const char *text = PQgetvalue (result, row, column);
    *value = strtoll (text, &end, 10);
    return *end == 0 && end != text ? 0 : -1;
}

//  --------------------------------------------------------------------------
//  Pipelines: statements queued without waiting, one sync, then all their
//  results. A transaction is then one round trip (two with safe keys),
//  not one per statement.

#define S_STEPS_MAX 8

typedef struct {
    int count;                      //  statements queued
    const char *names[S_STEPS_MAX]; //  for errors
    ExecStatusType expected[S_STEPS_MAX];
    int keep;       //  step whose result is kept, -1 none
    PGresult *kept; //  its result (caller clears)
    bool broken;    //  a send failed
} s_pipeline_t;

static s_outcome_t
s_pipeline_open (store_writer_t *self, s_pipeline_t *pipeline)
{
    memset (pipeline, 0, sizeof (*pipeline));
    pipeline->keep = -1;
    if (PQenterPipelineMode (s_conn (self)) != 1) {
        s_failure (self, NULL, "pipeline");
        return S_LOST; //  a connection in a state we do not know
    }
    return S_OK;
}

//  Queues a prepared statement (params; binary if lengths) or a command
//  (params NULL).
static void
s_pipeline_send (store_writer_t *self, s_pipeline_t *pipeline, const char *name, int count,
                 const char *const *params, const int *lengths, ExecStatusType expected, bool keep)
{
    assert (pipeline->count < S_STEPS_MAX);
    if (pipeline->broken)
        return;
    assert (count <= S_PARAMS_MAX);
    int rc = params ? PQsendQueryPrepared (s_conn (self), name, count, params, lengths,
                                           lengths ? s_formats : NULL, 0)
                    : PQsendQueryParams (s_conn (self), name, 0, NULL, NULL, NULL, NULL, 0);
    if (rc != 1) {
        pipeline->broken = true;
        return;
    }
    if (keep)
        pipeline->keep = pipeline->count;
    pipeline->names[pipeline->count] = name;
    pipeline->expected[pipeline->count++] = expected;
}

//  Sends the sync and reads every result; the outcome is the first
//  failure's. Leaves pipeline mode; where the protocol went off the
//  expected path, S_LOST: the writer drops the connection and reconnects.
static s_outcome_t
s_pipeline_sync (store_writer_t *self, s_pipeline_t *pipeline)
{
    if (pipeline->broken || PQpipelineSync (s_conn (self)) != 1) {
        s_failure (self, NULL, "pipeline send");
        return S_LOST;
    }
    s_outcome_t outcome = S_OK;
    for (int step = 0; step < pipeline->count; step++) {
        PGresult *result = PQgetResult (s_conn (self));
        if (!result) {
            if (outcome == S_OK)
                s_failure (self, NULL, pipeline->names[step]);
            return S_LOST;
        }
        ExecStatusType status = PQresultStatus (result);
        if (status != pipeline->expected[step] && status != PGRES_PIPELINE_ABORTED &&
            outcome == S_OK)
            outcome = s_failure (self, result, pipeline->names[step]);
        if (step == pipeline->keep && status == pipeline->expected[step])
            pipeline->kept = result;
        else
            PQclear (result);
        //  Each statement's results end with a NULL.
        while ((result = PQgetResult (s_conn (self))))
            PQclear (result);
        if (PQstatus (s_conn (self)) != CONNECTION_OK)
            return S_LOST;
    }
    PGresult *result = PQgetResult (s_conn (self));
    bool synced = result && PQresultStatus (result) == PGRES_PIPELINE_SYNC;
    PQclear (result);
    if (!synced || PQexitPipelineMode (s_conn (self)) != 1) {
        if (outcome == S_OK)
            s_failure (self, NULL, "pipeline sync");
        return S_LOST;
    }
    return outcome;
}

static void
s_pipeline_close (s_pipeline_t *pipeline)
{
    PQclear (pipeline->kept);
    pipeline->kept = NULL;
}

//  --------------------------------------------------------------------------
//  The steps of one attempt

//  Gives every reading of the planned range that may be new (first
//  occurrence of a key, or no key) an id from the block, refilled with
//  one round trip when short.
static s_outcome_t
s_assign_ids (store_writer_t *self, store_batch_t *batch)
{
    size_t keyed = store_batch_keyed_count (batch);
    size_t count = keyed + store_batch_unkeyed_count (batch);
    if (self->id_count - self->id_next < count) {
        size_t left = self->id_count - self->id_next;
        size_t want = count - left > S_ID_BLOCK ? count - left : S_ID_BLOCK;
        if (left + want > self->id_capacity) {
            int64_t *ids = (int64_t *)realloc (self->ids, (left + want) * sizeof (int64_t));
            assert (ids); //  as zmalloc: no way on without memory
            self->ids = ids;
            self->id_capacity = left + want;
        }
        memmove (self->ids, self->ids + self->id_next, left * sizeof (int64_t));
        self->id_next = 0;
        self->id_count = left;
        char text[24];
        snprintf (text, sizeof (text), "%zu", want);
        const char *params[1] = {text};
        PGresult *result = NULL;
        s_outcome_t outcome = s_run (self, "store_ids", 1, params, NULL, PGRES_TUPLES_OK, &result);
        if (outcome)
            return outcome;
        for (int row = 0; row < PQntuples (result); row++) {
            int64_t id;
            if (s_value (result, row, 0, &id)) {
                snprintf (self->error, sizeof (self->error), "store_ids: unusable id");
                PQclear (result);
                return S_TRANSIENT;
            }
            self->ids[self->id_count++] = id;
        }
        PQclear (result);
        if (self->id_count < count) {
            snprintf (self->error, sizeof (self->error), "store_ids: too few ids");
            return S_TRANSIENT;
        }
    }
    for (size_t n = 0; n < count; n++) {
        size_t row = n < keyed ? store_batch_keyed_row (batch, n)
                               : store_batch_unkeyed_row (batch, n - keyed);
        store_batch_assign (batch, row, self->ids[self->id_next++],
                            store_batch_verdict (batch, row)->reading.ts, true);
    }
    return S_OK;
}

//  Safe keys form's answer: keys stored before, with their id and time.
static s_outcome_t
s_skipped (store_writer_t *self, store_batch_t *batch, PGresult *result)
{
    size_t count = store_batch_keyed_count (batch);
    for (int row = 0; result && row < PQntuples (result); row++) {
        int64_t n;
        long long id, ts;
        if (s_value (result, row, 0, &n) || n < 1 || (size_t)n > count ||
            PQgetisnull (result, row, 1) ||
            sscanf (PQgetvalue (result, row, 1), "{%lld,%lld}", &id, &ts) != 2) {
            //  Another writer's key, committed after our snapshot: the
            //  retry of the attempt sees it.
            snprintf (self->error, sizeof (self->error),
                      "store_keys_safe: stored key not visible yet (row %d)", row);
            return S_TRANSIENT;
        }
        store_batch_assign (batch, store_batch_keyed_row (batch, (size_t)n - 1), id, ts, false);
    }
    return S_OK;
}

//  One try at [lo, hi) in one transaction, one pipeline: BEGIN, keys and
//  readings (one statement), ports, episodes, [marks], COMMIT; one round
//  trip (plus a refill of ids now and then). Safe keys: BEGIN and keys,
//  sync (their answer says which readings are new); readings, ports,
//  episodes, COMMIT, sync.
static s_outcome_t
s_try (store_writer_t *self, store_batch_t *batch, size_t lo, size_t hi)
{
    if (store_batch_plan (batch, lo, hi) == 0)
        return S_OK;
    store_batch_port_writes (batch, zclock_mono (), false);
    //  Step times under -v, to see where a batch spends its time.
    int64_t times[4] = {zclock_usecs ()};
    s_outcome_t outcome = s_assign_ids (self, batch);
    if (outcome)
        return outcome;
    bool safe = self->safe_until > zclock_mono ();
    bool keyed = store_batch_keyed_count (batch) > 0;
    times[1] = zclock_usecs ();

    const char *params[S_WRITE_PARAMS];
    int lengths[S_WRITE_PARAMS];
    s_pipeline_t pipeline;
    outcome = s_pipeline_open (self, &pipeline);
    if (outcome)
        return outcome;
    s_pipeline_send (self, &pipeline, "BEGIN", 0, NULL, NULL, PGRES_COMMAND_OK, false);
    if (safe && keyed) {
        store_batch_keys_params (batch, params, lengths);
        s_pipeline_send (self, &pipeline, "store_keys_safe", STORE_KEYS_PARAMS, params, lengths,
                         PGRES_TUPLES_OK, true);
        outcome = s_pipeline_sync (self, &pipeline);
        if (outcome == S_OK)
            outcome = s_skipped (self, batch, pipeline.kept);
        s_pipeline_close (&pipeline);
        keyed = false; //  written: only readings are left
        if (outcome == S_OK)
            outcome = s_pipeline_open (self, &pipeline);
    }
    times[2] = zclock_usecs ();
    if (outcome == S_OK) {
        if (keyed) {
            store_batch_keys_params (batch, params, lengths);
            store_batch_readings_params (batch, params + STORE_KEYS_PARAMS,
                                         lengths + STORE_KEYS_PARAMS);
            s_pipeline_send (self, &pipeline, "store_write", S_WRITE_PARAMS, params, lengths,
                             PGRES_COMMAND_OK, false);
        } else if (store_batch_fresh_count (batch)) {
            store_batch_readings_params (batch, params, lengths);
            s_pipeline_send (self, &pipeline, "store_readings", STORE_READINGS_PARAMS, params,
                             lengths, PGRES_COMMAND_OK, false);
        }
        //  Each builder has buffers of its own: the parameters stay valid
        //  until the sync.
        const char *ports[STORE_PORTS_PARAMS], *episodes[STORE_EPISODES_PARAMS];
        const char *marks[STORE_MARKS_PARAMS];
        int port_lengths[STORE_PORTS_PARAMS], episode_lengths[STORE_EPISODES_PARAMS];
        int mark_lengths[STORE_MARKS_PARAMS];
        if (store_batch_port_count (batch)) {
            store_batch_ports_params (batch, ports, port_lengths);
            s_pipeline_send (self, &pipeline, "store_ports", STORE_PORTS_PARAMS, ports,
                             port_lengths, PGRES_COMMAND_OK, false);
        }
        if (store_batch_episode_count (batch)) {
            store_batch_episodes_params (batch, episodes, episode_lengths);
            s_pipeline_send (self, &pipeline, "store_episodes", STORE_EPISODES_PARAMS, episodes,
                             episode_lengths, PGRES_COMMAND_OK, false);
        }
        if (store_batch_marks_params (batch, marks, mark_lengths))
            s_pipeline_send (self, &pipeline, "store_marks", STORE_MARKS_PARAMS, marks,
                             mark_lengths, PGRES_COMMAND_OK, false);
        //  A COMMIT whose answer is lost leaves the outcome unknown: the
        //  rows are acked RETRY, and a retry with a key finds its id.
        s_pipeline_send (self, &pipeline, "COMMIT", 0, NULL, NULL, PGRES_COMMAND_OK, false);
        outcome = s_pipeline_sync (self, &pipeline);
        s_pipeline_close (&pipeline);
    }
    if (outcome == S_OK) {
        times[3] = zclock_usecs ();
        if (self->verbose)
            zsys_debug ("store writer - rows %zu..%zu (%zu fresh%s): params %" PRId64
                        " keys %" PRId64 " commit %" PRId64 " us",
                        lo, hi, store_batch_fresh_count (batch), safe ? ", safe keys" : "",
                        times[1] - times[0], times[2] - times[1], times[3] - times[2]);
        store_batch_commit (batch);
        return S_OK;
    }
    if (outcome == S_CONFLICT && safe)
        outcome = S_DATA; //  the safe form has no conflicts: something else
    if (outcome != S_LOST && PQtransactionStatus (s_conn (self)) != PQTRANS_IDLE) {
        char error[sizeof (self->error)];
        memcpy (error, self->error, sizeof (error));
        if (s_command (self, "ROLLBACK") == S_LOST)
            outcome = S_LOST;
        memcpy (self->error, error, sizeof (error));
    }
    return outcome;
}

//  A try, and after a key conflict of the fast form, another in the safe
//  form (which stays on for S_SAFE_MS: retries come in storms).
static s_outcome_t
s_attempt (store_writer_t *self, store_batch_t *batch, size_t lo, size_t hi)
{
    s_outcome_t outcome = s_try (self, batch, lo, hi);
    if (outcome == S_CONFLICT) {
        if (self->verbose)
            zsys_debug ("store writer - a key was stored before, safe keys for %d ms", S_SAFE_MS);
        self->safe_until = zclock_mono () + S_SAFE_MS;
        outcome = s_try (self, batch, lo, hi);
    }
    return outcome == S_CONFLICT ? S_DATA : outcome;
}

//  Writes the port rows waiting in memory that are due (all if all), in a
//  transaction of their own (one statement). Returns how many, or -1 (they
//  keep waiting).
int
store_writer_flush (store_writer_t *self, store_batch_t *batch, bool all)
{
    assert (self);
    assert (batch);
    if (!s_conn (self))
        return -1;
    store_batch_reset (batch);
    store_batch_plan (batch, 0, 0);
    size_t count = store_batch_port_writes (batch, zclock_mono (), all);
    if (count == 0)
        return 0;
    const char *params[STORE_PORTS_PARAMS];
    int lengths[STORE_PORTS_PARAMS];
    store_batch_ports_params (batch, params, lengths);
    s_outcome_t outcome =
        s_run (self, "store_ports", STORE_PORTS_PARAMS, params, lengths, PGRES_COMMAND_OK, NULL);
    if (outcome == S_OK) {
        store_batch_commit (batch);
        if (self->verbose)
            zsys_debug ("store writer - %zu waiting port rows written", count);
        return (int)count;
    }
    zsys_warning ("store writer - waiting port rows not written: %s", self->error);
    if (outcome == S_LOST)
        store_session_drop (self->session);
    return -1;
}

//  [lo, hi) failed with a data error: halve it until the refused rows are
//  alone, commit the others. Costs about 2 log2 (n) attempts per bad row,
//  instead of one transaction (and one fsync) per row.
static s_outcome_t
s_split (store_writer_t *self, store_batch_t *batch, size_t lo, size_t hi)
{
    if (hi - lo == 1) {
        const proto_verdict_t *verdict = store_batch_verdict (batch, lo);
        zsys_warning ("store writer - reading %s/%" PRIu64 " of port %s rejected: %s",
                      verdict->reading.gateway, verdict->reading.request, verdict->reading.port,
                      self->error);
        store_batch_decide (batch, lo, hi, PROTO_ACK_REJECTED);
        return S_OK;
    }
    size_t mid = lo + (hi - lo) / 2;
    size_t bounds[3] = {lo, mid, hi};
    for (size_t half = 0; half < 2; half++) {
        s_outcome_t outcome = s_attempt (self, batch, bounds[half], bounds[half + 1]);
        if (outcome == S_DATA)
            outcome = s_split (self, batch, bounds[half], bounds[half + 1]);
        if (outcome != S_OK)
            return outcome;
    }
    return S_OK;
}

//  --------------------------------------------------------------------------
//  Write the undecided rows of batch; every row leaves decided

void
store_writer_write (store_writer_t *self, store_batch_t *batch)
{
    assert (self);
    assert (batch);
    size_t size = store_batch_size (batch);
    if (!s_conn (self))
        store_writer_maintain (self);
    s_outcome_t outcome = S_LOST;
    if (s_conn (self)) {
        outcome = s_attempt (self, batch, 0, size);
        //  Which row broke a batch is hard to tell, and a transient error
        //  (deadlock, timeout) may pass: one more try before splitting.
        if (outcome == S_DATA || outcome == S_TRANSIENT) {
            zsys_warning ("store writer - batch of %zu failed, retrying: %s", size, self->error);
            outcome = s_attempt (self, batch, 0, size);
        }
        if (outcome == S_DATA)
            outcome = s_split (self, batch, 0, size);
    }
    if (outcome != S_OK) {
        //  Never OK unless committed: the gateway answers 503 and the
        //  client retries.
        if (s_conn (self))
            zsys_warning ("store writer - batch of %zu not stored, acking RETRY: %s", size,
                          self->error);
        store_batch_decide (batch, 0, size, PROTO_ACK_RETRY);
    }
    if (outcome == S_LOST && s_conn (self)) {
        zsys_error ("store writer - connection lost, reconnecting in %" PRId64 " ms",
                    store_session_backoff (self->session));
        store_session_drop (self->session);
    }
}

//  --------------------------------------------------------------------------
//  Self test

#include "store_fixture.h"

//  Checks that the acked row is in readings with the verdict's values.
static void
s_check_reading (store_fixture_t *fixture, const proto_ack_t *ack, const proto_verdict_t *verdict)
{
    char id[24];
    snprintf (id, sizeof (id), "%" PRId64, ack->id);
    const char *params[1] = {id};
    PGresult *result = store_fixture_sql (
        fixture,
        "SELECT port_id, (extract (epoch FROM ts) * 1000)::bigint, voltage, current, power, status"
        " FROM readings WHERE id = $1",
        1, params);
    assert (PQntuples (result) == 1);
    assert (streq (PQgetvalue (result, 0, 0), verdict->reading.port));
    assert (strtoll (PQgetvalue (result, 0, 1), NULL, 10) == verdict->reading.ts);
    //  PostgreSQL prints the shortest text that reads back exactly
    assert (strtod (PQgetvalue (result, 0, 2), NULL) == verdict->reading.voltage);
    assert (strtod (PQgetvalue (result, 0, 3), NULL) == verdict->reading.current);
    assert (strtod (PQgetvalue (result, 0, 4), NULL) == verdict->reading.power);
    assert (atoi (PQgetvalue (result, 0, 5)) == verdict->status);
    PQclear (result);
}

static int64_t
s_count_readings (store_fixture_t *fixture, const char *port)
{
    const char *params[1] = {port};
    return store_fixture_int (fixture, "SELECT count(*) FROM readings WHERE port_id = $1", 1,
                              params);
}

//  Explains every statement of the writer's session (generic plans, see
//  s_settings_durable) after its first execution, in a schema of its own
//  whose tables are copies of the writer's: first empty and never
//  analysed, then populated and analysed. No plan may hold a Seq Scan.
static const char *s_plan_explains[][2] = {
    {"store_write",
     "EXPLAIN EXECUTE store_write ('{1}', '{\"k1\"}', '{\"2026-01-01 00:00:00+00\"}',"
     " '{900000001}', '{900000001}', '{00000000-0000-4000-8000-000000000001}',"
     " '{\"2026-01-01 00:00:00+00\"}', '{230}', '{0.1}', '{23}', '{1}')"},
    {"store_readings",
     "EXPLAIN EXECUTE store_readings ('{900000002}', '{00000000-0000-4000-8000-000000000001}',"
     " '{\"2026-01-01 00:00:01+00\"}', '{230}', '{0.1}', '{23}', '{1}')"},
    {"store_keys_safe", "EXPLAIN EXECUTE store_keys_safe ('{1,1}', '{\"k1\",\"k2\"}',"
                        " '{\"2026-01-01 00:00:00+00\",\"2026-01-01 00:00:01+00\"}',"
                        " '{900000003,900000004}')"},
    {"store_ids", "EXPLAIN EXECUTE store_ids (3)"},
    {"store_prune", "EXPLAIN EXECUTE store_prune (7, 4)"},
    {"store_ports",
     "EXPLAIN EXECUTE store_ports ('{00000000-0000-4000-8000-000000000001}', '{\"idle\"}',"
     " '{1767225600000}', '{NULL}', '{1.5}')"},
    {"store_episodes",
     "EXPLAIN EXECUTE store_episodes ('{00000000-0000-4000-8000-000000000001}', '{1}',"
     " '{1767225600000}', '{NULL}', '{1}', '{2}', '{0.5}', '{3}')"},
    {"store_marks", "EXPLAIN EXECUTE store_marks ('{00000000-0000-4000-8000-000000000001}',"
                    " '{\"2026-01-01 00:00:00+00\"}', '{\"2026-01-01 00:05:00+00\"}')"},
    //  What phantom_prune_reading_keys_sweep runs (010), planned the same
    //  way: its cursor, a range of blocks, the last range (to the end).
    {"sweep_cursor", "EXPLAIN EXECUTE sweep_cursor"},
    {"sweep_range", "EXPLAIN EXECUTE sweep_range (0, 4096, 7)"},
    {"sweep_tail", "EXPLAIN EXECUTE sweep_tail (0, 7)"},
    {"sweep_advance", "EXPLAIN EXECUTE sweep_advance (0)"},
};
#define S_PLAN_EXPLAINS (sizeof (s_plan_explains) / sizeof (s_plan_explains[0]))

static void
s_plan_sql (PGconn *conn, const char *sql)
{
    PGresult *result = PQexec (conn, sql);
    ExecStatusType status = PQresultStatus (result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        fprintf (stderr, "store_writer_test: %s\n  failed: %s", sql, PQerrorMessage (conn));
        assert (false);
    }
    PQclear (result);
}

//  The writer's session set-up, on conn.
static int
s_session_setup (PGconn *conn)
{
    store_session_config_t config = s_session_config ();
    store_session_t *session = store_session_new ("", &config, false);
    assert (session);
    int rc = store_session_setup (session, conn);
    store_session_destroy (&session);
    return rc;
}

static void
s_plans_check (PGconn *conn, const char *state, bool verbose)
{
    s_plan_sql (conn, "DEALLOCATE ALL");
    assert (s_session_setup (conn) == 0);
    //  The housekeeping's step of the sweep, on this session (store_housekeeping.c)
    s_plan_sql (conn, "PREPARE store_prune (int, int) AS SELECT deleted, wrapped"
                      " FROM phantom_prune_reading_keys_sweep ($1, $2)");
    s_plan_sql (conn, "PREPARE sweep_cursor AS"
                      " SELECT s.next_block FROM reading_keys_sweep s WHERE s.one FOR UPDATE");
    s_plan_sql (conn, "PREPARE sweep_range (bigint, int, int) AS DELETE FROM reading_keys"
                      " WHERE ctid >= format ('(%s,0)', $1)::tid"
                      "   AND ctid < format ('(%s,0)', $1 + $2)::tid"
                      "   AND ts < now () - make_interval (days => $3)");
    s_plan_sql (conn, "PREPARE sweep_tail (bigint, int) AS DELETE FROM reading_keys"
                      " WHERE ctid >= format ('(%s,0)', $1)::tid"
                      "   AND ts < now () - make_interval (days => $2)");
    s_plan_sql (conn, "PREPARE sweep_advance (bigint) AS"
                      " UPDATE reading_keys_sweep s SET next_block = $1 WHERE s.one");
    for (size_t index = 0; index < S_PLAN_EXPLAINS; index++) {
        //  Its first execution (EXPLAIN's statement without the EXPLAIN),
        //  in a transaction rolled back: the plan is cached all the same.
        s_plan_sql (conn, "BEGIN");
        s_plan_sql (conn, s_plan_explains[index][1] + strlen ("EXPLAIN "));
        s_plan_sql (conn, "ROLLBACK");
        PGresult *result = PQexec (conn, s_plan_explains[index][1]);
        assert (PQresultStatus (result) == PGRES_TUPLES_OK);
        bool scan = false;
        if (verbose)
            printf ("%s, %s:\n", s_plan_explains[index][0], state);
        for (int row = 0; row < PQntuples (result); row++) {
            const char *line = PQgetvalue (result, row, 0);
            if (verbose)
                printf ("  %s\n", line);
            if (strstr (line, "Seq Scan"))
                scan = true;
        }
        if (scan)
            fprintf (stderr, "store_writer_test: %s has a Seq Scan (%s)\n",
                     s_plan_explains[index][0], state);
        assert (!scan);
        PQclear (result);
    }
}

//  A private schema, first on the search path, named prefix_<pid>_<n> into
//  schema, with copies of reading_keys (its indexes, no foreign keys or
//  triggers) and of the sweep's cursor row.
static void
s_keys_schema (PGconn *conn, const char *prefix, char *schema, size_t size)
{
    char sql[256];
    snprintf (schema, size, "%s_%d_%u", prefix, (int)getpid (), randof (1000000));
    snprintf (sql, sizeof (sql), "CREATE SCHEMA %s", schema);
    s_plan_sql (conn, sql);
    snprintf (sql, sizeof (sql), "SET search_path = %s, public", schema);
    s_plan_sql (conn, sql);
    s_plan_sql (conn, "CREATE TABLE reading_keys (LIKE public.reading_keys INCLUDING ALL)");
    s_plan_sql (conn, "CREATE TABLE reading_keys_sweep"
                      " (LIKE public.reading_keys_sweep INCLUDING ALL)");
    s_plan_sql (conn, "INSERT INTO reading_keys_sweep DEFAULT VALUES");
}

static void
s_plans_test (const char *database, bool verbose)
{
    PGconn *conn = PQconnectdb (database);
    assert (PQstatus (conn) == CONNECTION_OK);
    char schema[64], sql[256];
    s_keys_schema (conn, "store_plans", schema, sizeof schema);
    s_plan_sql (conn, "CREATE TABLE ports (LIKE public.ports INCLUDING ALL)");
    s_plan_sql (conn, "CREATE TABLE episodes (LIKE public.episodes INCLUDING ALL)");
    s_plan_sql (conn, "CREATE TABLE readings (LIKE public.readings INCLUDING DEFAULTS)"
                      " PARTITION BY RANGE (ts)");
    s_plan_sql (conn, "CREATE INDEX ON readings (port_id, ts)");
    s_plan_sql (conn, "CREATE TABLE readings_default PARTITION OF readings DEFAULT");
    s_plans_check (conn, "empty, never analysed", verbose);

    s_plan_sql (conn, "INSERT INTO ports (id, user_id, device_id, name)"
                      " SELECT ('00000000-0000-4000-8000-' || lpad (n::text, 12, '0'))::uuid,"
                      "        1, 1, 'port ' || n FROM generate_series (1, 5000) n");
    s_plan_sql (conn, "INSERT INTO reading_keys (device_id, reading_key, reading_id, ts)"
                      " SELECT n % 50, 'key-' || n, n, now () - n * interval '1 minute'"
                      " FROM generate_series (1, 20000) n");
    s_plan_sql (conn, "INSERT INTO episodes (port_id, user_id, started_at)"
                      " SELECT id, 1, now () FROM ports");
    s_plan_sql (conn, "INSERT INTO readings (id, port_id, ts, voltage, current, power, status)"
                      " SELECT n, id, now (), 230, 0.1, 23, 1 FROM ports,"
                      " generate_series (1, 4) n");
    s_plan_sql (conn, "ANALYZE reading_keys, reading_keys_sweep, ports, episodes, readings");
    s_plans_check (conn, "populated, analysed", verbose);

    s_plan_sql (conn, "RESET search_path");
    s_plan_sql (conn, "SET client_min_messages = warning");
    snprintf (sql, sizeof (sql), "DROP SCHEMA %s CASCADE", schema);
    s_plan_sql (conn, sql);
    PQfinish (conn);
}

static int64_t
s_sweep_int (PGconn *conn, const char *sql)
{
    PGresult *result = PQexec (conn, sql);
    if (PQresultStatus (result) != PGRES_TUPLES_OK || PQntuples (result) != 1) {
        fprintf (stderr, "store_writer_test: %s\n  failed: %s", sql, PQerrorMessage (conn));
        assert (false);
    }
    int64_t value = atoll (PQgetvalue (result, 0, 0));
    PQclear (result);
    return value;
}

//  One call of the sweep, in the writer's session: deleted rows, wrapped.
static int64_t
s_sweep_call (PGconn *conn, int pages, bool *wrapped)
{
    char sql[128];
    snprintf (sql, sizeof (sql),
              "SELECT deleted, wrapped FROM phantom_prune_reading_keys_sweep (7, %d)", pages);
    PGresult *result = PQexec (conn, sql);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1);
    int64_t deleted = atoll (PQgetvalue (result, 0, 0));
    *wrapped = streq (PQgetvalue (result, 0, 1), "t");
    PQclear (result);
    return deleted;
}

//  phantom_prune_reading_keys_sweep (010) on copies of reading_keys and
//  its cursor in a schema of their own (the function names them without
//  a schema): an empty table, then a pass of bounded calls over a table
//  of old and young keys, and a cursor left past the table's end.
static void
s_sweep_test (const char *database, bool verbose)
{
    PGconn *conn = PQconnectdb (database);
    assert (PQstatus (conn) == CONNECTION_OK);
    assert (s_session_setup (conn) == 0);
    char schema[64], sql[256];
    s_keys_schema (conn, "store_sweep", schema, sizeof schema);

    //  Empty: nothing deleted, the pass is over at once, cursor stays 0
    bool wrapped = false;
    assert (s_sweep_call (conn, 4, &wrapped) == 0);
    assert (wrapped);
    assert (s_sweep_int (conn, "SELECT next_block FROM reading_keys_sweep") == 0);

    //  Old (8 days) and young (6 days) keys alternating over ~30 blocks
    s_plan_sql (conn, "INSERT INTO reading_keys (device_id, reading_key, reading_id, ts)"
                      " SELECT 1, 'sweep-' || n, n, now () - CASE WHEN n % 2 = 0"
                      "   THEN interval '8 days' ELSE interval '6 days' END"
                      " FROM generate_series (1, 4000) n");
    int64_t blocks = s_sweep_int (conn, "SELECT pg_relation_size ('reading_keys')"
                                        " / current_setting ('block_size')::bigint");
    assert (blocks >= 12);
    int64_t young = s_sweep_int (conn, "SELECT count(*) FROM reading_keys"
                                       " WHERE ts > now () - interval '7 days'");
    assert (young == 2000);
    //  Each call deletes exactly the old keys of its 4 blocks, no others
    int64_t cursor = 0, calls = 0;
    do {
        snprintf (sql, sizeof (sql),
                  "SELECT count(*) FROM reading_keys WHERE ts < now () - interval '7 days'"
                  " AND ctid >= '(%" PRId64 ",0)'::tid AND ctid < '(%" PRId64 ",0)'::tid",
                  cursor, cursor + 4);
        int64_t expected = s_sweep_int (conn, sql);
        int64_t total = s_sweep_int (conn, "SELECT count(*) FROM reading_keys");
        assert (s_sweep_call (conn, 4, &wrapped) == expected);
        assert (expected > 0 || cursor + 4 > blocks);
        assert (s_sweep_int (conn, "SELECT count(*) FROM reading_keys") == total - expected);
        assert (wrapped == (cursor + 4 >= blocks));
        cursor = wrapped ? 0 : cursor + 4;
        assert (s_sweep_int (conn, "SELECT next_block FROM reading_keys_sweep") == cursor);
        calls++;
        assert (calls <= blocks);
    } while (!wrapped);
    assert (calls == (blocks + 3) / 4);
    //  After the pass: no old key, every young one
    assert (s_sweep_int (conn, "SELECT count(*) FROM reading_keys"
                               " WHERE ts < now () - interval '7 days'") == 0);
    assert (s_sweep_int (conn, "SELECT count(*) FROM reading_keys") == young);
    //  The next pass starts from block 0 and finds nothing more
    assert (s_sweep_call (conn, 4, &wrapped) == 0);
    assert (!wrapped);
    assert (s_sweep_int (conn, "SELECT next_block FROM reading_keys_sweep") == 4);

    //  A cursor past the end (vacuum truncated the table): the pass is over
    s_plan_sql (conn, "UPDATE reading_keys_sweep SET next_block = 1000000");
    assert (s_sweep_call (conn, 4, &wrapped) == 0);
    assert (wrapped);
    assert (s_sweep_int (conn, "SELECT next_block FROM reading_keys_sweep") == 0);

    //  Nonsense arguments are refused
    PGresult *result = PQexec (conn, "SELECT * FROM phantom_prune_reading_keys_sweep (7, 0)");
    assert (PQresultStatus (result) == PGRES_FATAL_ERROR);
    PQclear (result);
    if (verbose)
        printf ("  sweep: %" PRId64 " blocks in %" PRId64 " calls\n", blocks, calls);

    s_plan_sql (conn, "RESET search_path");
    s_plan_sql (conn, "SET client_min_messages = warning");
    snprintf (sql, sizeof (sql), "DROP SCHEMA %s CASCADE", schema);
    s_plan_sql (conn, sql);
    PQfinish (conn);
}

void
store_writer_test (bool verbose)
{
    printf (" * store_writer: ");
    if (verbose)
        printf ("\n");
    const char *database = store_fixture_database ();
    assert (database); //  the runner skips without one
    store_fixture_t *fixture = store_fixture_new (database, 4);
    const char *port_a = fixture->ports[0];
    const char *port_b = fixture->ports[1];
    const char *port_c = fixture->ports[2];
    const char *port_d = fixture->ports[3];
    //  Generic plans without scans, whatever the tables hold
    s_plans_test (database, verbose);
    //  The sweep that prunes reading_keys, call by call
    s_sweep_test (database, verbose);

    store_writer_t *writer = store_writer_new (database, verbose);
    assert (store_writer_connected (writer));
    store_batch_t *batch = store_batch_new (64);
    proto_verdict_t verdict;
    char text[64];
    //  Whole milliseconds, inside the partitions kept ahead
    int64_t base = zclock_time ();

    //  N verdicts -> N rows with the right values, acks in order
    store_batch_reset (batch);
    for (int index = 0; index < 40; index++) {
        store_fixture_verdict (fixture, &verdict, "gw1", (uint64_t)index,
                               index % 2 ? port_a : port_b, "", base + index * 10 + 1,
                               index * 1.37 + 0.1, PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
        assert (store_batch_add (batch, &verdict) == 0);
    }
    store_writer_write (writer, batch);
    for (size_t index = 0; index < 40; index++) {
        const proto_ack_t *ack = store_batch_ack (batch, index);
        assert (ack->code == PROTO_ACK_OK);
        assert (ack->request == index);
        assert (ack->status == PROTO_STATUS_ACTIVE);
        assert (ack->ts == store_batch_verdict (batch, index)->reading.ts);
        assert (index == 0 || ack->id != store_batch_ack (batch, index - 1)->id);
        s_check_reading (fixture, ack, store_batch_verdict (batch, index));
    }
    assert (s_count_readings (fixture, port_a) + s_count_readings (fixture, port_b) == 40);

    //  The same readingId twice in one batch, then again in a later one:
    //  one row, the same id and time in every ack
    char key[32];
    snprintf (key, sizeof (key), "key-%" PRId64, base);
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 1, port_c, key, base + 1000, 50,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    store_fixture_verdict (fixture, &verdict, "gw1", 2, port_c, "other", base + 1001, 51,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    store_fixture_verdict (fixture, &verdict, "gw1", 3, port_c, key, base + 1002, 50,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    proto_ack_t first = *store_batch_ack (batch, 0);
    assert (first.code == PROTO_ACK_OK);
    assert (first.ts == base + 1000);
    assert (store_batch_ack (batch, 1)->code == PROTO_ACK_OK);
    assert (store_batch_ack (batch, 1)->id != first.id);
    assert (store_batch_ack (batch, 2)->code == PROTO_ACK_OK);
    assert (store_batch_ack (batch, 2)->id == first.id);
    assert (store_batch_ack (batch, 2)->ts == first.ts);
    assert (s_count_readings (fixture, port_c) == 2);
    s_check_reading (fixture, &first, store_batch_verdict (batch, 0));
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 4, port_c, key, base + 5000, 50,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_OK);
    assert (store_batch_ack (batch, 0)->id == first.id);
    assert (store_batch_ack (batch, 0)->ts == first.ts);
    assert (s_count_readings (fixture, port_c) == 2);

    //  Port status from the last verdict; since when from the last change
    const char *params[1] = {port_d};
    store_batch_reset (batch);
    uint8_t statuses[4][2] = {{PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE},
                              {PROTO_STATUS_IDLE, PROTO_STATUS_ACTIVE},
                              {PROTO_STATUS_PHANTOM, PROTO_STATUS_IDLE},
                              {PROTO_STATUS_PHANTOM, PROTO_STATUS_PHANTOM}};
    for (int index = 0; index < 4; index++) {
        store_fixture_verdict (fixture, &verdict, "gw1", 10 + index, port_d, "",
                               base + 100 * (index + 1), 3.5 - index * 0.25, statuses[index][0],
                               statuses[index][1]);
        store_batch_add (batch, &verdict);
    }
    store_writer_write (writer, batch);
    const char *status_sql =
        "SELECT status || ' ' || (extract (epoch FROM status_since) * 1000)::bigint"
        " || ' ' || (extract (epoch FROM last_reading_at) * 1000)::bigint"
        " || ' ' || last_power FROM ports WHERE id = $1";
    char expected[128];
    store_fixture_text (fixture, status_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "phantom %" PRId64 " %" PRId64 " 2.75", base + 300,
              base + 400);
    if (verbose)
        printf ("port: %s\n", text);
    assert (streq (text, expected));
    //  Still phantom: since stays; unknown status: status stays too
    assert (store_writer_flush (writer, batch, true) >= 1); //  what waits from earlier
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 20, port_d, "", base + 500, 2.5,
                           PROTO_STATUS_PHANTOM, PROTO_STATUS_PHANTOM);
    store_batch_add (batch, &verdict);
    store_fixture_verdict (fixture, &verdict, "gw1", 21, port_d, "", base + 600, 2.25,
                           PROTO_STATUS_UNKNOWN, PROTO_STATUS_UNKNOWN);
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 1)->code == PROTO_ACK_OK);
    //  No status change, and the row was written just now: it waits
    store_fixture_text (fixture, status_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "phantom %" PRId64 " %" PRId64 " 2.75", base + 300,
              base + 400);
    assert (streq (text, expected));
    assert (store_writer_flush (writer, batch, false) == 0); //  not due yet
    //  A second later it is due
    zclock_sleep (STORE_PORT_EVERY_MS + 50);
    assert (store_writer_flush (writer, batch, false) == 1);
    store_fixture_text (fixture, status_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "phantom %" PRId64 " %" PRId64 " 2.25", base + 300,
              base + 600);
    assert (streq (text, expected));
    assert (store_writer_flush (writer, batch, true) == 0); //  nothing waits

    //  Episode upserted, then updated twice in one batch and closed
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 30, port_d, "", base + 700, 3,
                           PROTO_STATUS_PHANTOM, PROTO_STATUS_PHANTOM);
    verdict.has_episode = true;
    verdict.episode.start = base + 300;
    verdict.episode.samples = 1;
    verdict.episode.energy_wh = 0.1;
    verdict.episode.mean_watts = 3;
    verdict.episode.peak_watts = 3;
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_OK);
    const char *episode_sql =
        "SELECT count(*) || ' ' || min (user_id) || ' ' || min (samples) || ' '"
        " || coalesce (max ((extract (epoch FROM ended_at) * 1000)::bigint)::text, 'open')"
        " || ' ' || max (energy_wh) || ' ' || max (peak_watts)"
        " FROM episodes WHERE port_id = $1";
    store_fixture_text (fixture, episode_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "1 %" PRId64 " 1 open 0.1 3", fixture->user);
    assert (streq (text, expected));
    store_batch_reset (batch);
    verdict.reading.ts = base + 800;
    verdict.episode.samples = 2;
    verdict.episode.energy_wh = 0.2;
    store_batch_add (batch, &verdict);
    verdict.reading.ts = base + 900;
    verdict.status = PROTO_STATUS_ACTIVE;
    verdict.episode.end = base + 900;
    verdict.episode.samples = 3;
    verdict.episode.energy_wh = 0.25;
    verdict.episode.peak_watts = 3.5;
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    store_fixture_text (fixture, episode_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "1 %" PRId64 " 3 %" PRId64 " 0.25 3.5", fixture->user,
              base + 900);
    if (verbose)
        printf ("episode: %s\n", text);
    assert (streq (text, expected));

    //  Reopened, then the offline timer's verdict without a reading: the
    //  episode closes and the port goes offline in that transaction, with
    //  no readings row and the last reading's time and power kept
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 40, port_d, "", base + 1000, 3,
                           PROTO_STATUS_PHANTOM, PROTO_STATUS_ACTIVE);
    verdict.has_episode = true;
    verdict.episode.start = base + 1000;
    verdict.episode.end = 0;
    verdict.episode.samples = 1;
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    int64_t readings_before = s_count_readings (fixture, port_d);
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, PROTO_GATEWAY_NONE, 0, port_d, "", base + 1000, 0,
                           PROTO_STATUS_OFFLINE, PROTO_STATUS_PHANTOM);
    verdict.no_reading = true;
    verdict.has_episode = true;
    verdict.episode.start = base + 1000;
    verdict.episode.end = base + 1000;
    verdict.episode.samples = 1;
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_OK);
    assert (s_count_readings (fixture, port_d) == readings_before);
    store_fixture_text (fixture, status_sql, 1, params, text, sizeof (text));
    snprintf (expected, sizeof (expected), "offline %" PRId64 " %" PRId64 " 3", base + 1000,
              base + 1000);
    assert (streq (text, expected));
    char start[24];
    snprintf (start, sizeof (start), "%" PRId64, base + 1000);
    const char *episode_params[2] = {port_d, start};
    assert (store_fixture_int (fixture,
                               "SELECT (extract (epoch FROM ended_at) * 1000)::bigint FROM episodes"
                               " WHERE port_id = $1 AND started_at = timestamptz 'epoch' + "
                               "$2::bigint * interval '1 ms'",
                               2, episode_params) == base + 1000);

    //  A poisoned row (episode of a port that does not exist: foreign key)
    //  is rejected alone; the others are committed
    int64_t before = s_count_readings (fixture, port_a);
    store_batch_reset (batch);
    const char *ghost = "00000000-0000-4000-8000-000000000000";
    for (int index = 0; index < 21; index++) {
        store_fixture_verdict (fixture, &verdict, "gw1", 100 + index, index == 7 ? ghost : port_a,
                               "", base + 2000 + index, 10, PROTO_STATUS_ACTIVE,
                               PROTO_STATUS_ACTIVE);
        verdict.has_episode = index == 7;
        verdict.episode.start = base;
        store_batch_add (batch, &verdict);
    }
    store_writer_write (writer, batch);
    for (size_t index = 0; index < 21; index++) {
        const proto_ack_t *ack = store_batch_ack (batch, index);
        assert (ack->code == (index == 7 ? PROTO_ACK_REJECTED : PROTO_ACK_OK));
        if (index != 7)
            s_check_reading (fixture, ack, store_batch_verdict (batch, index));
    }
    assert (s_count_readings (fixture, port_a) == before + 20);
    assert (s_count_readings (fixture, ghost) == 0);

    //  A batch of 100 keys, then the same batch again (a client retrying
    //  it all) and a batch of half retries, half new: stored once each,
    //  retries answered with the first ids and times, in both the fast
    //  (keys and readings in one statement) and the safe keys form. Fresh
    //  writers, so that each starts with the fast form and meets the
    //  conflict itself
    store_batch_t *big = store_batch_new (128);
    store_writer_t *keys_writer = store_writer_new (database, verbose);
    int64_t key_base = base + 10000;
    proto_ack_t first_acks[100];
    before = s_count_readings (fixture, port_b);
    for (int round = 0; round < 2; round++) {
        store_batch_reset (big);
        for (int index = 0; index < 100; index++) {
            char many[48];
            snprintf (many, sizeof (many), "many-%" PRId64 "-%d", base, index);
            store_fixture_verdict (fixture, &verdict, "gw1", 300 + index, port_b, many,
                                   key_base + index + round * 100000, 5, PROTO_STATUS_ACTIVE,
                                   PROTO_STATUS_ACTIVE);
            assert (store_batch_add (big, &verdict) == 0);
        }
        store_writer_write (keys_writer, big);
        for (size_t index = 0; index < 100; index++) {
            const proto_ack_t *ack = store_batch_ack (big, index);
            assert (ack->code == PROTO_ACK_OK);
            if (round == 0)
                first_acks[index] = *ack;
            else {
                assert (ack->id == first_acks[index].id);
                assert (ack->ts == key_base + (int64_t)index);
            }
        }
        assert (s_count_readings (fixture, port_b) == before + 100);
    }
    store_writer_destroy (&keys_writer);
    keys_writer = store_writer_new (database, verbose);
    store_batch_reset (big);
    for (int index = 0; index < 20; index++) {
        char many[48];
        snprintf (many, sizeof (many), "many-%" PRId64 "-%d", base, index * 5);
        if (index % 2)
            snprintf (many, sizeof (many), "more-%" PRId64 "-%d", base, index);
        store_fixture_verdict (fixture, &verdict, "gw1", 500 + index, port_b, many,
                               key_base + 200000 + index, 6, PROTO_STATUS_ACTIVE,
                               PROTO_STATUS_ACTIVE);
        store_batch_add (big, &verdict);
    }
    store_writer_write (keys_writer, big);
    for (size_t index = 0; index < 20; index++) {
        const proto_ack_t *ack = store_batch_ack (big, index);
        assert (ack->code == PROTO_ACK_OK);
        if (index % 2 == 0)
            assert (ack->id == first_acks[index * 5].id);
        else
            s_check_reading (fixture, ack, store_batch_verdict (big, index));
    }
    assert (s_count_readings (fixture, port_b) == before + 110);
    store_batch_destroy (&big);
    store_writer_destroy (&keys_writer);

    //  Database unreachable: RETRY, never OK
    store_writer_t *lost = store_writer_new ("host=127.0.0.1 port=1 dbname=none", verbose);
    assert (!store_writer_connected (lost));
    store_batch_reset (batch);
    store_fixture_verdict (fixture, &verdict, "gw1", 200, port_a, "", base + 3000, 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    store_writer_write (lost, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_RETRY);
    store_writer_destroy (&lost);

    //  Connection killed under the writer: RETRY, then it reconnects
    before = s_count_readings (fixture, port_a);
    snprintf (text, sizeof (text), "%d", store_writer_backend (writer));
    params[0] = text;
    PQclear (store_fixture_sql (fixture, "SELECT pg_terminate_backend ($1::int)", 1, params));
    zclock_sleep (100);
    store_batch_reset (batch);
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_RETRY);
    assert (!store_writer_connected (writer));
    assert (s_count_readings (fixture, port_a) == before);
    int64_t deadline = zclock_mono () + 5000;
    while (!store_writer_connected (writer) && zclock_mono () < deadline) {
        zclock_sleep (20);
        store_writer_maintain (writer);
    }
    assert (store_writer_connected (writer));
    store_batch_reset (batch);
    store_batch_add (batch, &verdict);
    store_writer_write (writer, batch);
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_OK);
    assert (s_count_readings (fixture, port_a) == before + 1);

    store_batch_destroy (&batch);
    store_writer_destroy (&writer);
    store_fixture_destroy (&fixture);
    printf ("OK\n");
}
