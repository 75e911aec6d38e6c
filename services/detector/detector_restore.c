/*  =========================================================================
    detector_restore - seeds the engine from PostgreSQL at start-up

    One query over all ports, streamed row by row (libpq single-row mode)
    so a million ports do not sit in one result; each row whose port hashes
    to this partition seeds the engine. The store is the only writer of
    ports.status / last_reading_at / last_power and of episodes; this only
    reads them.
    =========================================================================
*/
#include "detector_restore.h"

#include <assert.h>
#include <czmq.h>
#include <libpq-fe.h>
#include <stdlib.h>
#include <string.h>

//  Bounds on every wait: connecting, and the query itself.
#define S_CONNECT_TIMEOUT "5"
#define S_STATEMENT_OPTIONS "-c statement_timeout=120000"

//  DISTINCT ON: should a port ever have two open episodes, the newest wins.
static const char *s_query =
    "SELECT DISTINCT ON (p.id) p.id::text, p.user_id, p.status,"
    "       (extract(epoch FROM p.status_since) * 1000)::bigint,"
    "       (extract(epoch FROM p.last_reading_at) * 1000)::bigint,"
    "       p.last_power,"
    "       (extract(epoch FROM e.started_at) * 1000)::bigint,"
    "       e.energy_wh, e.peak_watts, e.samples"
    "  FROM ports p LEFT JOIN episodes e ON e.port_id = p.id AND e.ended_at IS NULL"
    " ORDER BY p.id, e.started_at DESC NULLS LAST";

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

int64_t
detector_restore_load (detector_engine_t *engine, const char *conninfo, uint32_t partition,
                       uint32_t partitions)
{
    assert (engine);
    assert (partitions > 0 && partition < partitions);
    //  Later keywords override what the expanded conninfo says.
    const char *keywords[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *values[] = {conninfo ? conninfo : "", S_CONNECT_TIMEOUT, S_STATEMENT_OPTIONS,
                            "phantom-detector", NULL};
    PGconn *connection = PQconnectdbParams (keywords, values, 1);
    if (!connection || PQstatus (connection) != CONNECTION_OK) {
        zsys_error ("detector restore - cannot connect: %s",
                    connection ? PQerrorMessage (connection) : "no memory");
        PQfinish (connection);
        return -1;
    }
    if (!PQsendQueryParams (connection, s_query, 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode (connection)) {
        zsys_error ("detector restore - query not sent: %s", PQerrorMessage (connection));
        PQfinish (connection);
        return -1;
    }
    int64_t restored = 0;
    int64_t skipped = 0;
    int rc = 0;
    PGresult *result;
    while ((result = PQgetResult (connection))) {
        ExecStatusType status = PQresultStatus (result);
        if (status == PGRES_SINGLE_TUPLE && rc == 0) {
            const char *port = PQgetvalue (result, 0, 0);
            if (proto_partition (port, partitions) == partition) {
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
                //  Rows come from our own schema, but are checked all the
                //  same: a bad one is skipped, not trusted.
                if (detector_engine_restore (engine, port, s_int (result, 1, 0),
                                             proto_status_parse (PQgetvalue (result, 0, 2)),
                                             s_int (result, 3, 0), s_int (result, 4, 0),
                                             s_real (result, 5), open ? &episode : NULL) == 0)
                    restored++;
                else
                    skipped++;
            }
        } else if (status != PGRES_TUPLES_OK && status != PGRES_SINGLE_TUPLE) {
            zsys_error ("detector restore - query failed: %s", PQresultErrorMessage (result));
            rc = -1;
        }
        PQclear (result);
    }
    PQfinish (connection);
    if (rc)
        return -1;
    if (skipped)
        zsys_warning ("detector restore - %" PRId64 " ports skipped (bad rows)", skipped);
    return restored;
}

//  --------------------------------------------------------------------------
//  Self test

static void
s_exec (PGconn *connection, const char *sql, int count, const char *const *params)
{
    PGresult *result = PQexecParams (connection, sql, count, NULL, params, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_COMMAND_OK && PQresultStatus (result) != PGRES_TUPLES_OK)
        fprintf (stderr, "detector_restore_test: %s: %s\n", sql, PQresultErrorMessage (result));
    assert (PQresultStatus (result) == PGRES_COMMAND_OK ||
            PQresultStatus (result) == PGRES_TUPLES_OK);
    PQclear (result);
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
    PGconn *connection = PQconnectdb (conninfo);
    assert (PQstatus (connection) == CONNECTION_OK);
    //  A user of our own; deleting it at the end cascades to everything.
    char email[64];
    snprintf (email, sizeof (email), "detector-restore-%d@test.invalid", (int)getpid ());
    const char *params[8];
    params[0] = email;
    s_exec (connection, "DELETE FROM users WHERE email = $1", 1, params);
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
    proto_reading_t reading;
    memset (&reading, 0, sizeof (reading));
    snprintf (reading.port, sizeof (reading.port), "0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90");
    reading.user = 1;
    reading.ts = reading.received = base + 12 * 60000 + 36000;
    reading.power = 5;
    reading.settings.off_watts = 0.5f;
    reading.settings.standby_watts = 15;
    reading.settings.min_phantom_seconds = 60;
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

    //  No database: -1, no crash.
    engine = detector_engine_new (0, 300000);
    assert (detector_restore_load (engine, "host=/nonexistent port=1 dbname=x", 0, 1) == -1);
    detector_engine_destroy (&engine);

    s_exec (connection, "DELETE FROM users WHERE email = $1", 1, params);
    PQfinish (connection);
    printf ("OK\n");
}
