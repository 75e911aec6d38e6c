/*  =========================================================================
    store_selftest - runs the store's class tests

    store_selftest [-v] [class ...]; no class runs them all. Tests that need
    PostgreSQL read PHANTOM_TEST_DATABASE and, without it, exit 77 (ctest
    SKIP_RETURN_CODE) when run on their own, or are skipped when run all.
    =========================================================================
*/
#include <stdio.h>
#include <string.h>
#include <czmq.h>

#include "store_batch.h"
#include "store_column.h"
#include "store_fixture.h"
#include "store_housekeeping.h"
#include "store_maintenance.h"
#include "store_rollup.h"
#include "store_server.h"
#include "store_session.h"
#include "store_writer.h"

#define S_SKIP 77

static const struct {
    const char *name;
    void (*test) (bool verbose);
    bool database; //  needs PHANTOM_TEST_DATABASE
} s_tests[] = {
    {"store_column", store_column_test, false},
    {"store_rollup", store_rollup_test, false},
    {"store_batch", store_batch_test, false},
    {"store_session", store_session_test, true},
    {"store_housekeeping", store_housekeeping_test, true},
    {"store_writer", store_writer_test, true},
    {"store_server", store_server_test, true},
    {"store_maintenance", store_maintenance_test, true},
};
#define S_TESTS (sizeof (s_tests) / sizeof (s_tests[0]))

int
main (int argc, char *argv[])
{
    bool verbose = false;
    const char *only[S_TESTS + 1];
    int count = 0;
    for (int arg = 1; arg < argc; arg++) {
        if (streq (argv[arg], "-v"))
            verbose = true;
        else if (count < (int)S_TESTS)
            only[count++] = argv[arg];
    }
    for (int index = 0; index < count; index++) {
        size_t test;
        for (test = 0; test < S_TESTS; test++)
            if (streq (only[index], s_tests[test].name))
                break;
        if (test == S_TESTS) {
            fprintf (stderr, "store_selftest: unknown test %s\n", only[index]);
            return 1;
        }
    }
    int skipped = 0;
    int ran = 0;
    for (size_t test = 0; test < S_TESTS; test++) {
        bool wanted = count == 0;
        for (int index = 0; index < count; index++)
            if (streq (only[index], s_tests[test].name))
                wanted = true;
        if (!wanted)
            continue;
        if (s_tests[test].database && !store_fixture_database ()) {
            printf (" * %s: skipped (PHANTOM_TEST_DATABASE not set)\n", s_tests[test].name);
            skipped++;
            continue;
        }
        s_tests[test].test (verbose);
        ran++;
    }
    zsys_shutdown ();
    return ran == 0 && skipped ? S_SKIP : 0;
}
