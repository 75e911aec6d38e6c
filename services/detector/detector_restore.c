/*  =========================================================================
    detector_restore - seeds the engine from PostgreSQL at start-up

    Two steps, both streamed row by row (libpq single-row mode) so a
    million ports do not sit in one result:
    1. One query over all ports: each row whose port hashes to this
       partition seeds the engine (status, last reading, open episode).
    2. Ports in a low-draw run (idle, or phantom with an open episode) get
       that run rebuilt from their stored readings, replayed through the
       engine from the run's first reading: an idle port has no episodes
       row yet, so without this its dwell would restart with no energy and
       one sample. The readings come in chunks of ports, one query per
       chunk (unnest + LATERAL on readings (port_id, ts)), in the order
       the store gave them ids, which is the order the engine judged them.
       The replay also brings last_ts / last_power up to date: the store
       writes a port row at most once a second, readings at once.
       A run longer than S_REPLAY_MAX readings is not replayed: a phantom
       port then keeps its episodes row (written in the same transaction
       as its readings, so exact as of the newest one), with its last
       reading from the readings table; an idle port (a dwell over ~14 h
       at 5 s readings) restarts its energy at 0, as before.
    The store is the only writer of ports, readings and episodes; this
    only reads them.
    =========================================================================
*/
#include "detector_restore.h"
#include "detector_fixture.h"
#include "proto_pg.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

//  Bound on each query (connecting is bounded by proto_pg).
#define S_STATEMENT_TIMEOUT_MS 120000
#define S_LOCK_TIMEOUT "10s"

//  Most readings replayed per port, and ports per readings query.
#define S_REPLAY_MAX 10000
#define S_CHUNK_PORTS 5000

//  Lowered by the self test to reach the long-run path cheaply.
static int s_replay_max = S_REPLAY_MAX;

//  DISTINCT ON: should a port ever have two open episodes, the newest wins.
static const char *s_ports_query =
    "SELECT DISTINCT ON (p.id) p.id::text, p.user_id, p.status,"
    "       (extract(epoch FROM p.status_since) * 1000)::bigint,"
    "       (extract(epoch FROM p.last_reading_at) * 1000)::bigint,"
    "       p.last_power,"
    "       (extract(epoch FROM e.started_at) * 1000)::bigint,"
    "       e.energy_wh, e.peak_watts, e.samples"
    "  FROM ports p LEFT JOIN episodes e ON e.port_id = p.id AND e.ended_at IS NULL"
    " ORDER BY p.id, e.started_at DESC NULLS LAST";

//  Per port of a chunk (n: its place in the chunk, from 1): its newest
//  lim readings from since on, oldest id first, each with the status the
//  engine gave it. ts >= since also prunes the daily partitions before
//  the run at run time.
static const char *s_readings_query =
    "SELECT s.n, (extract(epoch FROM r.ts) * 1000)::bigint, r.power, r.status"
    "  FROM unnest ($1::uuid[], $2::bigint[], $3::int[])"
    "       WITH ORDINALITY AS s (port_id, since, lim, n)"
    " CROSS JOIN LATERAL"
    "      (SELECT r.id, r.ts, r.power, r.status FROM readings r"
    "        WHERE r.port_id = s.port_id"
    "          AND r.ts >= timestamptz 'epoch' + s.since * interval '1 millisecond'"
    "        ORDER BY r.ts DESC LIMIT s.lim) r"
    " ORDER BY s.n, r.id";

//  A port whose low-draw run is to be rebuilt, as step 1 found it.
typedef struct {
    char port[PROTO_UUID_LEN + 1]; //  uuid text
    int64_t user;                  //  owner
    proto_status_t status;         //  idle or phantom
    int64_t status_since;          //  ms, ports.status_since
    int64_t run_start;             //  ms, first reading of the run
    bool open;                     //  episode is set (phantom)
    proto_episode_t episode;       //  the open episode row
    int limit;                     //  readings to fetch
} s_candidate_t;

static void
s_candidate_destroy (void **self_p)
{
    free (*self_p);
    *self_p = NULL;
}

//  What a restore did, for its log line.
typedef struct {
    int64_t restored;     //  ports seeded
    int64_t skipped;      //  bad rows
    int64_t replayed;     //  runs rebuilt from readings
    int64_t long_runs;    //  runs too long to replay
    int64_t inconsistent; //  readings that did not make the run the port row claims
    int64_t mismatched;   //  replayed episode differs from its episodes row
} s_counts_t;

static int64_t
s_int (PGresult *result, int column, int64_t null_value)
{
    if (PQgetisnull (result, 0, column))
        return null_value;
    return strtoll (PQgetvalue (result, 0, column), NULL, 10);
}

static double
s_real (PGresult *result, int column)
{
    if (PQgetisnull (result, 0, column))
        return 0;
    return strtod (PQgetvalue (result, 0, column), NULL);
}

//  Sends query in single-row mode. 0 or -1 (logged).
static int
s_send (PGconn *connection, const char *query, int count, const char *const *params)
{
    if (!PQsendQueryParams (connection, query, count, NULL, params, NULL, NULL, 0) ||
        !PQsetSingleRowMode (connection)) {
        zsys_error ("detector restore - query not sent: %s", PQerrorMessage (connection));
        return -1;
    }
    return 0;
}

//  Step 1 for one row of s_ports_query. Adds the port to candidates when
//  its run is to be rebuilt.
static void
s_seed (detector_engine_t *engine, PGresult *result, int64_t now, zlistx_t *candidates,
        s_counts_t *counts)
{
    const char *port = PQgetvalue (result, 0, 0);
    proto_episode_t episode;
    memset (&episode, 0, sizeof (episode));
    bool open = !PQgetisnull (result, 0, 6);
    if (open) {
        episode.start = s_int (result, 6, 0);
        episode.energy_wh = s_real (result, 7);
        episode.peak_watts = s_real (result, 8);
        int64_t samples = s_int (result, 9, 0);
        episode.samples = samples > 0 && samples < UINT32_MAX ? (uint32_t)samples : 0;
    }
    int64_t user = s_int (result, 1, 0);
    proto_status_t status = proto_status_parse (PQgetvalue (result, 0, 2));
    int64_t status_since = s_int (result, 3, 0);
    int64_t last_ts = s_int (result, 4, 0);
    //  Rows come from our own schema, but are checked all the same: a bad
    //  one is skipped, not trusted.
    if (detector_engine_restore (engine, port, user, status, status_since, last_ts,
                                 s_real (result, 5), open ? &episode : NULL, now)) {
        counts->skipped++;
        return;
    }
    counts->restored++;
    //  The engine's verdict on the row (no reading: unknown) decides.
    status = detector_engine_status (engine, port);
    int64_t run_start = status == PROTO_STATUS_IDLE              ? status_since
                        : status == PROTO_STATUS_PHANTOM && open ? episode.start
                                                                 : 0;
    if (status == PROTO_STATUS_PHANTOM && !open)
        counts->inconsistent++; //  nothing to rebuild from: the seed stands
    if (run_start <= 0)
        return;
    s_candidate_t *candidate = (s_candidate_t *)calloc (1, sizeof (s_candidate_t));
    if (!candidate)
        return; //  the seed stands
    memcpy (candidate->port, port, PROTO_UUID_LEN);
    candidate->user = user;
    candidate->status = status;
    candidate->status_since = status_since;
    candidate->run_start = run_start;
    candidate->open = open;
    candidate->episode = episode;
    //  A run the episodes row says is longer than a replay reads: only its
    //  newest reading is needed (see header).
    candidate->limit = open && episode.samples >= (uint32_t)s_replay_max ? 1 : s_replay_max;
    zlistx_add_end (candidates, candidate);
}

//  Step 2 for one port: count readings (ids ascending) of its run;
//  broken: one of them was not judged low draw.
static void
s_rebuild (detector_engine_t *engine, const s_candidate_t *candidate, const int64_t *ts,
           const double *power, size_t count, bool broken, int64_t now, s_counts_t *counts)
{
    //  The newest reading is the port's last one (the engine ignored any
    //  older one that came after it).
    size_t newest = 0;
    int64_t oldest = ts[0];
    for (size_t i = 1; i < count; i++) {
        if (ts[i] > ts[newest])
            newest = i;
        if (ts[i] < oldest)
            oldest = ts[i];
    }
    if (oldest == candidate->run_start && !broken) {
        proto_episode_t run;
        if (detector_engine_replay (engine, candidate->port, candidate->run_start, ts, power, count,
                                    now, &run) == 0) {
            counts->replayed++;
            //  The episodes row, written with the readings, must agree.
            if (candidate->open && (run.samples != candidate->episode.samples ||
                                    fabs (run.energy_wh - candidate->episode.energy_wh) >
                                        1e-9 * fabs (candidate->episode.energy_wh) + 1e-12)) {
                counts->mismatched++;
                zsys_warning ("detector restore %s - replayed episode (%u samples, %.9g Wh) "
                              "differs from its row (%u samples, %.9g Wh); keeping the replay",
                              candidate->port, run.samples, run.energy_wh,
                              candidate->episode.samples, candidate->episode.energy_wh);
            }
            return;
        }
        counts->inconsistent++;
    } else if (!broken && count >= (size_t)candidate->limit)
        counts->long_runs++;
    else
        counts->inconsistent++; //  not all low draw, or the run's first reading is not stored
    //  The seed, with the last reading from the readings table.
    detector_engine_restore (engine, candidate->port, candidate->user, candidate->status,
                             candidate->status_since, ts[newest], power[newest],
                             candidate->open ? &candidate->episode : NULL, now);
}

//  Sends the readings query for a chunk: its ports, run starts and
//  limits as array literals (uuids and integers, so no quoting needed).
//  0 or -1 (logged).
static int
s_chunk_send (PGconn *connection, s_candidate_t **chunk, size_t size)
{
    zchunk_t *arrays[3] = {zchunk_new (NULL, size * (PROTO_UUID_LEN + 1) + 3),
                           zchunk_new (NULL, size * 21 + 3), zchunk_new (NULL, size * 12 + 3)};
    int rc = arrays[0] && arrays[1] && arrays[2] ? 0 : -1;
    if (rc)
        zsys_error ("detector restore - out of memory");
    for (size_t i = 0; i < size && rc == 0; i++) {
        char since[32], limit[16];
        snprintf (since, sizeof (since), "%" PRId64, chunk[i]->run_start);
        snprintf (limit, sizeof (limit), "%d", chunk[i]->limit);
        const char *items[3] = {chunk[i]->port, since, limit};
        for (int array = 0; array < 3; array++) {
            zchunk_extend (arrays[array], i ? "," : "{", 1);
            zchunk_extend (arrays[array], items[array], strlen (items[array]));
        }
    }
    if (rc == 0) {
        const char *params[3];
        for (int array = 0; array < 3; array++) {
            zchunk_extend (arrays[array], "}", 2); //  and the NUL
            params[array] = (const char *)zchunk_data (arrays[array]);
        }
        rc = s_send (connection, s_readings_query, 3, params);
    }
    for (int array = 0; array < 3; array++)
        zchunk_destroy (&arrays[array]);
    return rc;
}

//  Step 2 for one chunk of candidates. 0 or -1 (logged).
static int
s_rebuild_chunk (detector_engine_t *engine, PGconn *connection, s_candidate_t **chunk, size_t size,
                 int64_t *ts, double *power, int64_t now, s_counts_t *counts)
{
    if (s_chunk_send (connection, chunk, size))
        return -1;
    int rc = 0;
    size_t current = 0; //  1-based place of the port being collected, 0 none
    size_t count = 0;
    bool broken = false; //  a reading of the port was not judged low draw
    PGresult *result;
    while ((result = PQgetResult (connection))) {
        ExecStatusType status = PQresultStatus (result);
        int64_t n = status == PGRES_SINGLE_TUPLE ? s_int (result, 0, 0) : 0;
        if (status != PGRES_SINGLE_TUPLE && status != PGRES_TUPLES_OK) {
            zsys_error ("detector restore - readings query failed: %s",
                        PQresultErrorMessage (result));
            rc = -1;
        } else if (status != PGRES_SINGLE_TUPLE || rc)
            ; //  the end, or rows after a failure: drained
        else if (n < 1 || (size_t)n > size || (size_t)n < current) {
            zsys_error ("detector restore - readings out of order");
            rc = -1;
        } else {
            if ((size_t)n != current) {
                if (count)
                    s_rebuild (engine, chunk[current - 1], ts, power, count, broken, now, counts);
                current = (size_t)n;
                count = 0;
                broken = false;
            }
            //  Every reading of a low-draw run was judged idle or phantom;
            //  any other means the run the port row claims is not what its
            //  readings say.
            int64_t judged = s_int (result, 3, -1);
            if (judged != PROTO_STATUS_IDLE && judged != PROTO_STATUS_PHANTOM)
                broken = true;
            if (count < (size_t)s_replay_max) {
                ts[count] = s_int (result, 1, 0);
                power[count] = s_real (result, 2);
                count++;
            }
        }
        PQclear (result);
    }
    if (rc == 0 && count)
        s_rebuild (engine, chunk[current - 1], ts, power, count, broken, now, counts);
    return rc;
}

//  Step 1: seeds the partition's ports, collecting the candidates for
//  step 2. 0 or -1 (logged).
static int
s_seed_all (detector_engine_t *engine, PGconn *connection, uint32_t partition, uint32_t partitions,
            int64_t now, zlistx_t *candidates, s_counts_t *counts)
{
    int rc = s_send (connection, s_ports_query, 0, NULL);
    PGresult *result;
    while (rc == 0 && (result = PQgetResult (connection))) {
        ExecStatusType status = PQresultStatus (result);
        if (status == PGRES_SINGLE_TUPLE) {
            if (proto_partition (PQgetvalue (result, 0, 0), partitions) == partition)
                s_seed (engine, result, now, candidates, counts);
        } else if (status != PGRES_TUPLES_OK) {
            zsys_error ("detector restore - query failed: %s", PQresultErrorMessage (result));
            rc = -1;
        }
        PQclear (result);
    }
    //  Drain what a failed query left unread.
    while ((result = PQgetResult (connection)))
        PQclear (result);
    return rc;
}

//  Step 2, a chunk of candidates per query. 0 or -1 (logged).
static int
s_rebuild_all (detector_engine_t *engine, PGconn *connection, zlistx_t *candidates, int64_t now,
               s_counts_t *counts)
{
    int64_t *ts = (int64_t *)malloc (sizeof (int64_t) * (size_t)s_replay_max);
    double *power = (double *)malloc (sizeof (double) * (size_t)s_replay_max);
    s_candidate_t **chunk = (s_candidate_t **)malloc (sizeof (s_candidate_t *) * S_CHUNK_PORTS);
    int rc = ts && power && chunk ? 0 : -1;
    if (rc)
        zsys_error ("detector restore - out of memory");
    size_t size = 0;
    for (s_candidate_t *candidate = (s_candidate_t *)zlistx_first (candidates);
         rc == 0 && candidate; candidate = (s_candidate_t *)zlistx_next (candidates)) {
        chunk[size++] = candidate;
        if (size == S_CHUNK_PORTS) {
            rc = s_rebuild_chunk (engine, connection, chunk, size, ts, power, now, counts);
            size = 0;
        }
    }
    if (rc == 0 && size)
        rc = s_rebuild_chunk (engine, connection, chunk, size, ts, power, now, counts);
    free (ts);
    free (power);
    free (chunk);
    return rc;
}

int64_t
detector_restore_load (detector_engine_t *engine, const char *conninfo, uint32_t partition,
                       uint32_t partitions)
{
    assert (engine);
    assert (partitions > 0 && partition < partitions);
    PGconn *connection =
        proto_pg_connect (conninfo ? conninfo : "", "phantom-detector", S_STATEMENT_TIMEOUT_MS);
    //  A lock held elsewhere fails the restore within S_LOCK_TIMEOUT, and
    //  the detector's restart (supervisord) tries again, instead of a
    //  partition that stays silent for the whole statement bound (a
    //  detector once did not come up in 90 s; cause not found).
    if (connection) {
        PGresult *set = PQexec (connection, "SET lock_timeout = '" S_LOCK_TIMEOUT "'");
        if (PQresultStatus (set) != PGRES_COMMAND_OK)
            zsys_warning ("detector restore - cannot bound lock waits: %s",
                          proto_pg_error (connection, set));
        PQclear (set);
    }
    zlistx_t *candidates = zlistx_new ();
    int rc = connection && candidates ? 0 : -1;
    if (candidates)
        zlistx_set_destructor (candidates, s_candidate_destroy);
    else
        zsys_error ("detector restore - out of memory");
    //  Server clock of the restore: the offline timer counts from it.
    int64_t now = zclock_time ();
    s_counts_t counts;
    memset (&counts, 0, sizeof (counts));
    if (rc == 0)
        rc = s_seed_all (engine, connection, partition, partitions, now, candidates, &counts);
    if (rc == 0)
        rc = s_rebuild_all (engine, connection, candidates, now, &counts);
    zlistx_destroy (&candidates);
    PQfinish (connection);
    if (rc)
        return -1;
    if (counts.skipped)
        zsys_warning ("detector restore - %" PRId64 " ports skipped (bad rows)", counts.skipped);
    if (counts.inconsistent || counts.mismatched)
        zsys_warning ("detector restore - %" PRId64 " ports whose stored readings do not make the "
                      "run their row claims (seeded from the row), %" PRId64
                      " replayed episodes that differ from their row",
                      counts.inconsistent, counts.mismatched);
    zsys_info ("detector restore - %" PRId64 " ports, %" PRId64 " low-draw runs rebuilt from "
               "readings, %" PRId64 " too long to replay (seeded from their episodes row)",
               counts.restored, counts.replayed, counts.long_runs);
    return counts.restored;
}

//  --------------------------------------------------------------------------
//  Self test

static void
s_exec (PGconn *connection, const char *sql, int count, const char *const *params)
{
    PGresult *result = proto_pg_exec (connection, "detector_restore test", sql, sql, count, params);
    assert (result);
    PQclear (result);
}

//  Runs the first kill_at readings of the series through a detector that
//  then dies, and stores what the store would have: every reading with its
//  status, the open episode, the port row. With stale_row the port row
//  holds the reading before the last (the store writes a port row at most
//  once a second, readings at once).
static void
s_store_until_kill (PGconn *connection, const char *port, int64_t user, int64_t base, int kill_at,
                    bool stale_row)
{
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    char text[5][64];
    const char *params[8] = {port, text[0], text[1], text[2], text[3], text[4]};
    int64_t changed = 0;
    uint8_t status = PROTO_STATUS_UNKNOWN;
    for (int i = 0; i < kill_at; i++) {
        proto_reading_t reading;
        detector_outcome_t outcome;
        int64_t ts = base + i * 5000LL;
        detector_fixture_reading (&reading, port, user, ts, detector_fixture_watts (i), &settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
        snprintf (text[0], sizeof (text[0]), "%" PRId64, ts);
        snprintf (text[1], sizeof (text[1]), "%.17g", detector_fixture_watts (i));
        snprintf (text[2], sizeof (text[2]), "%d", outcome.status);
        s_exec (connection,
                "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
                " VALUES ($1, timestamptz 'epoch' + $2::bigint * interval '1 millisecond', 230, 0,"
                "         $3, $4)",
                4, params);
        if (outcome.status != outcome.previous)
            changed = ts;
        status = outcome.status;
        if (outcome.has_episode) {
            snprintf (text[0], sizeof (text[0]), "%" PRId64, outcome.episode.start);
            snprintf (text[1], sizeof (text[1]), "%.17g", outcome.episode.energy_wh);
            snprintf (text[2], sizeof (text[2]), "%.17g", outcome.episode.peak_watts);
            snprintf (text[3], sizeof (text[3]), "%u", outcome.episode.samples);
            s_exec (
                connection,
                "INSERT INTO episodes (port_id, user_id, started_at, energy_wh, peak_watts,"
                "                      samples)"
                " SELECT id, user_id, timestamptz 'epoch' + $2::bigint * interval '1 millisecond',"
                "        $3, $4, $5 FROM ports WHERE id = $1"
                " ON CONFLICT (port_id, started_at) DO UPDATE SET energy_wh = EXCLUDED.energy_wh,"
                "  peak_watts = EXCLUDED.peak_watts, samples = EXCLUDED.samples",
                5, params);
        }
    }
    int row = stale_row ? kill_at - 2 : kill_at - 1;
    snprintf (text[0], sizeof (text[0]), "%s", proto_status_name (status));
    snprintf (text[1], sizeof (text[1]), "%" PRId64, changed);
    snprintf (text[2], sizeof (text[2]), "%" PRId64, base + (int64_t)row * 5000);
    snprintf (text[3], sizeof (text[3]), "%.17g", detector_fixture_watts (row));
    s_exec (connection,
            "UPDATE ports SET status = $2,"
            "  status_since = timestamptz 'epoch' + $3::bigint * interval '1 millisecond',"
            "  last_reading_at = timestamptz 'epoch' + $4::bigint * interval '1 millisecond',"
            "  last_power = $5 WHERE id = $1",
            5, params);
    detector_engine_destroy (&engine);
}

//  A port killed while idle, one killed while phantom (with a stale port
//  row), restored and fed the rest of the series, close the same episode
//  as a detector that never stopped: same start, end and samples, energy
//  within 1e-9. replay_max: as restores with runs longer than a replay
//  reads (the phantom port then comes from its episodes row).
static void
s_kill_test (const char *conninfo, const char *const *ports, int64_t user, int64_t base,
             int replay_max, bool verbose)
{
    const int kill_after[2] = {4, 16}; //  low readings before the kill: idle, phantom
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    s_replay_max = replay_max;
    detector_engine_t *restored = detector_engine_new (0, 300000);
    assert (detector_restore_load (restored, conninfo, 0, 1) >= 2);
    s_replay_max = S_REPLAY_MAX;
    //  Device clocks are years behind the server here: nothing goes
    //  offline until offline_after of server time has passed.
    assert (detector_engine_expire (restored, zclock_time () + 1000, NULL, NULL) == 0);
    for (int which = 0; which < 2; which++) {
        const char *port = ports[which];
        int kill_at = DETECTOR_FIXTURE_LOW_FIRST + kill_after[which];
        assert (detector_engine_status (restored, port) ==
                (which ? PROTO_STATUS_PHANTOM : PROTO_STATUS_IDLE));
        detector_engine_t *steady = detector_engine_new (0, 300000);
        proto_reading_t reading;
        detector_outcome_t outcome, expected;
        for (int i = 0; i < DETECTOR_FIXTURE_COUNT; i++) {
            detector_fixture_reading (&reading, port, user, base + i * 5000LL,
                                      detector_fixture_watts (i), &settings);
            assert (detector_engine_process (steady, &reading, &expected) == 0);
            //  The reading the dead detector judged last comes again (a
            //  retry): the same answer, nothing counted twice.
            if (i < kill_at - 1)
                continue;
            assert (detector_engine_process (restored, &reading, &outcome) == 0);
            assert (outcome.ignored == (i == kill_at - 1));
            assert (outcome.status == expected.status);
            assert (outcome.has_episode == expected.has_episode);
            if (outcome.has_episode) {
                assert (outcome.episode.start == expected.episode.start);
                assert (outcome.episode.samples == expected.episode.samples);
            }
        }
        if (verbose)
            printf ("  %s (replay max %d): %u samples, %.9f Wh; without a kill %u, %.9f Wh\n",
                    which ? "phantom" : "idle", replay_max, outcome.episode.samples,
                    outcome.episode.energy_wh, expected.episode.samples,
                    expected.episode.energy_wh);
        detector_fixture_assert_same_end (&expected, &outcome, base);
        detector_engine_destroy (&steady);
    }
    detector_engine_destroy (&restored);
}

void
detector_restore_test (bool verbose)
{
    printf (" * detector_restore: ");
    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    if (!conninfo || !*conninfo) {
        printf ("skipped (set PHANTOM_TEST_DATABASE)\n");
        return;
    }
    if (verbose)
        printf ("\n");
    PGconn *connection = proto_pg_connect (conninfo, "detector_restore test", 0);
    assert (connection);
    //  A user of our own; deleting it at the end cascades to everything.
    char email[64];
    snprintf (email, sizeof (email), "detector-restore-%d@test.invalid", (int)getpid ());
    const char *params[8];
    params[0] = email;
    s_exec (connection, "DELETE FROM users WHERE email = $1", 1, params);
    //  What an aborted run left (its user has another pid in its email).
    s_exec (connection,
            "DELETE FROM users WHERE id IN (SELECT user_id FROM ports WHERE id IN"
            " ('0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90', '3e9c6f41-ad85-4f4e-8061-5c4d9eafb023'))",
            0, NULL);
    s_exec (connection,
            "WITH u AS (INSERT INTO users (email, name, password_hash)"
            "           VALUES ($1, 'restore test', 'x') RETURNING id),"
            "     d AS (INSERT INTO devices (user_id, name) SELECT id, 'board' FROM u RETURNING "
            "id, user_id)"
            " INSERT INTO ports (id, user_id, device_id, name, status, status_since,"
            "                    last_reading_at, last_power)"
            " SELECT v.id::uuid, d.user_id, d.id, 'p', v.status,"
            "        '2024-01-01T00:01:00Z', '2024-01-01T00:12:00Z', 5 FROM d,"
            " (VALUES ('0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90', 'phantom'),"
            "         ('1c7a4d2f-8b63-4d2c-ae4f-3a2b7c8d9e01', 'idle'),"
            "         ('2d8b5e30-9c74-4e3d-bf50-4b3c8d9eaf12', 'active')) AS v (id, status)",
            1, params);
    s_exec (connection,
            "INSERT INTO episodes (port_id, user_id, started_at, ended_at, energy_wh, peak_watts, "
            "samples)"
            " SELECT p.id, p.user_id, v.started::timestamptz, v.ended::timestamptz, v.energy, 6, 70"
            "   FROM ports p JOIN users u ON u.id = p.user_id,"
            " (VALUES ('2023-12-31T00:00:00Z', '2023-12-31T01:00:00Z', 9.0),"
            "         ('2024-01-01T00:00:00Z', NULL, 1.25)) AS v (started, ended, energy)"
            "  WHERE u.email = $1 AND p.status = 'phantom'",
            1, params);

    int64_t base = 1704067200000LL; //  2024-01-01T00:00:00Z
    detector_engine_t *engine = detector_engine_new (0, 300000);
    int64_t restored = detector_restore_load (engine, conninfo, 0, 1);
    assert (restored >= 3);
    assert (detector_engine_status (engine, "0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90") ==
            PROTO_STATUS_PHANTOM);
    assert (detector_engine_status (engine, "1c7a4d2f-8b63-4d2c-ae4f-3a2b7c8d9e01") ==
            PROTO_STATUS_IDLE);
    assert (detector_engine_status (engine, "2d8b5e30-9c74-4e3d-bf50-4b3c8d9eaf12") ==
            PROTO_STATUS_ACTIVE);
    //  The open episode goes on, with its start and energy from the database.
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    proto_reading_t reading;
    detector_fixture_reading (&reading, "0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90", 1,
                              base + 12 * 60000 + 36000, 5, &settings);
    detector_outcome_t outcome;
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.previous == PROTO_STATUS_PHANTOM);
    assert (outcome.event_count == 0);
    assert (outcome.episode.start == base);
    assert (outcome.episode.samples == 71);
    assert (outcome.episode.energy_wh > 1.25 + 0.04 && outcome.episode.energy_wh < 1.25 + 0.06);
    detector_engine_destroy (&engine);

    //  Only the partition's own ports are loaded.
    for (uint32_t partition = 0; partition < 2; partition++) {
        engine = detector_engine_new (0, 300000);
        assert (detector_restore_load (engine, conninfo, partition, 2) >= 0);
        const char *port = "2d8b5e30-9c74-4e3d-bf50-4b3c8d9eaf12";
        proto_status_t expected =
            proto_partition (port, 2) == partition ? PROTO_STATUS_ACTIVE : PROTO_STATUS_UNKNOWN;
        assert (detector_engine_status (engine, port) == expected);
        detector_engine_destroy (&engine);
    }

    //  Low-draw runs rebuilt from their readings (the fault test's case:
    //  killed while idle, the run's energy and samples had no row yet).
    {
        static const char *kill_ports[2] = {"3e9c6f41-ad85-4f4e-8061-5c4d9eafb023",
                                            "4fad7052-be96-4a5f-9172-6d5eafb0c134"};
        const char *kill_params[3] = {email, kill_ports[0], kill_ports[1]};
        s_exec (connection, "DELETE FROM readings WHERE port_id IN ($1, $2)", 2, kill_params + 1);
        PGresult *result = PQexecParams (
            connection,
            "INSERT INTO ports (id, user_id, device_id, name)"
            " SELECT v.id, d.user_id, d.id, 'k' FROM devices d JOIN users u ON u.id = d.user_id,"
            "      (VALUES ($2::uuid), ($3::uuid)) AS v (id)"
            "  WHERE u.email = $1 RETURNING user_id",
            3, NULL, kill_params, NULL, NULL, 0);
        assert (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 2);
        int64_t user = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        PQclear (result);
        int64_t start = base + 86400000LL;
        s_store_until_kill (connection, kill_ports[0], user, start, DETECTOR_FIXTURE_LOW_FIRST + 4,
                            false);
        s_store_until_kill (connection, kill_ports[1], user, start, DETECTOR_FIXTURE_LOW_FIRST + 16,
                            true);
        s_kill_test (conninfo, kill_ports, user, start, S_REPLAY_MAX, verbose);
        s_kill_test (conninfo, kill_ports, user, start, 8, verbose);

        //  A port row that claims a run its readings do not show (the
        //  run's first reading is a 100 W one) is seeded from the row.
        s_exec (connection,
                "UPDATE ports SET status_since = timestamptz 'epoch' + $2::bigint"
                " * interval '1 millisecond' WHERE id = $1",
                2, (const char *[]){kill_ports[0], "1704153600000"}); //  start: the first 100 W
        engine = detector_engine_new (0, 300000);
        assert (detector_restore_load (engine, conninfo, 0, 1) >= 2);
        assert (detector_engine_status (engine, kill_ports[0]) == PROTO_STATUS_IDLE);
        detector_engine_destroy (&engine);
        s_exec (connection, "DELETE FROM readings WHERE port_id IN ($1, $2)", 2, kill_params + 1);
    }

    //  No database: -1, no crash.
    engine = detector_engine_new (0, 300000);
    assert (detector_restore_load (engine, "host=/nonexistent port=1 dbname=x", 0, 1) == -1);
    detector_engine_destroy (&engine);

    s_exec (connection, "DELETE FROM users WHERE email = $1", 1, params);
    PQfinish (connection);
    printf ("OK\n");
}
