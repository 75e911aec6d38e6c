/*  =========================================================================
    load_verify - --verify: does PostgreSQL hold exactly what was
    acknowledged?
    =========================================================================
*/
#include "load_verify.h"
#include "proto_pg.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Bounds the one query: a hash join over every key of the run.
#define S_STATEMENT_TIMEOUT_MS 120000

static int
s_compare_ack (const void *left, const void *right)
{
    int64_t a = ((const load_ack_t *)left)->seq, b = ((const load_ack_t *)right)->seq;
    return (a > b) - (a < b);
}

static int
s_compare_seq (const void *left, const void *right)
{
    int64_t a = *(const int64_t *)left, b = *(const int64_t *)right;
    return (a > b) - (a < b);
}

void
load_verify_sort (load_ack_t *acked, size_t acked_count, int64_t *unknown, size_t unknown_count)
{
    qsort (acked, acked_count, sizeof (load_ack_t), s_compare_ack);
    qsort (unknown, unknown_count, sizeof (int64_t), s_compare_seq);
}

int
load_verify_run (const char *conninfo, const char *run, const load_ack_t *acked, size_t acked_count,
                 const int64_t *unknown, size_t unknown_count, int patience_ms,
                 load_verify_t *result)
{
    memset (result, 0, sizeof *result);
    int64_t deadline = zclock_mono () + patience_ms;
    PGconn *db = proto_pg_connect (conninfo, "phantom-load", S_STATEMENT_TIMEOUT_MS);
    while (!db && zclock_mono () < deadline) {
        zclock_sleep (500);
        db = proto_pg_connect (conninfo, "phantom-load", S_STATEMENT_TIMEOUT_MS);
    }
    if (!db)
        return -1;
    char pattern[32];
    snprintf (pattern, sizeof pattern, "%s-%%", run);
    const char *params[] = {pattern};
    //  A hash join: readings has no index on id alone.
    PGresult *rows = proto_pg_exec (db, "phantom-load", "verify",
                                    "SELECT k.reading_key, k.reading_id, r.id IS NOT NULL"
                                    "  FROM reading_keys k LEFT JOIN readings r ON r.id = "
                                    "k.reading_id"
                                    " WHERE k.reading_key LIKE $1",
                                    1, params);
    if (!rows) {
        PQfinish (db);
        return -1;
    }
    int row_count = PQntuples (rows);
    uint8_t *seen = (uint8_t *)calloc (acked_count + 1, 1);
    size_t prefix_length = strlen (run) + 1;
    for (int row = 0; row < row_count && seen; row++) {
        result->stored++;
        const char *key = PQgetvalue (rows, row, 0);
        int64_t id = strtoll (PQgetvalue (rows, row, 1), NULL, 10);
        bool has_reading = PQgetvalue (rows, row, 2)[0] == 't';
        char *end = NULL;
        load_ack_t probe = {strtoll (key + prefix_length, &end, 10), 0};
        const load_ack_t *ack =
            (strlen (key) > prefix_length && end && *end == 0)
                ? bsearch (&probe, acked, acked_count, sizeof (load_ack_t), s_compare_ack)
                : NULL;
        if (ack) {
            size_t at = (size_t)(ack - acked);
            if (seen[at]++ || ack->id != id)
                result->duplicates++;
            else if (has_reading)
                result->present++;
        } else if (bsearch (&probe.seq, unknown, unknown_count, sizeof (int64_t), s_compare_seq))
            result->extra++;
        else
            result->unexpected++;
    }
    result->lost = (int64_t)acked_count - result->present;
    if (result->lost < 0)
        result->lost = 0;
    free (seen);
    PQclear (rows);
    PQfinish (db);
    return 0;
}

void
load_verify_test (bool verbose)
{
    if (verbose)
        printf (" * load_verify: ");
    load_ack_t acked[] = {{7, 70}, {2, 20}, {5, 50}};
    int64_t unknown[] = {9, 1, 4};
    load_verify_sort (acked, 3, unknown, 3);
    assert (acked[0].seq == 2 && acked[1].seq == 5 && acked[2].seq == 7 && acked[2].id == 70);
    assert (unknown[0] == 1 && unknown[1] == 4 && unknown[2] == 9);

    //  A database that cannot be reached is an error, not a pass: at once
    //  without patience, after it with.
    load_verify_t result;
    int64_t started = zclock_mono ();
    assert (load_verify_run ("host=127.0.0.1 port=1 dbname=none", "00000000000000ab", acked, 3,
                             unknown, 3, 0, &result) == -1);
    assert (zclock_mono () - started < (PROTO_PG_CONNECT_TIMEOUT_S + 1) * 1000);
    assert (result.stored == 0 && result.lost == 0);
    started = zclock_mono ();
    assert (load_verify_run ("host=127.0.0.1 port=1 dbname=none", "00000000000000ab", acked, 3,
                             unknown, 3, 1200, &result) == -1);
    int64_t waited = zclock_mono () - started;
    assert (waited >= 1200 && waited < 1200 + (PROTO_PG_CONNECT_TIMEOUT_S + 1) * 1000);
    if (verbose)
        printf ("OK\n");
}
