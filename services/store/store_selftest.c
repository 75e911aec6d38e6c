/*  =========================================================================
    store_selftest - runs the store's class tests

    store_selftest [-v] [class ...]; no class runs them all. Tests that need
    PostgreSQL read PHANTOM_TEST_DATABASE and, without it, exit 77 (ctest
    SKIP_RETURN_CODE) when run on their own, or are skipped when run all.
    =========================================================================
*/
#include <czmq.h>

#include "store_batch.h"
#include "store_column.h"
#include "store_housekeeping.h"
#include "store_lanes.h"
#include "store_maintenance.h"
#include "store_port_memory.h"
#include "store_rollup.h"
#include "store_server.h"
#include "store_session.h"
#include "store_writer.h"
#include "proto_selftest.h"

static const proto_selftest_t s_tests[] = {
    {"store_column", store_column_test, false},
    {"store_rollup", store_rollup_test, false},
    {"store_port_memory", store_port_memory_test, false},
    {"store_batch", store_batch_test, false},
    {"store_session", store_session_test, true},
    {"store_housekeeping", store_housekeeping_test, true},
    {"store_writer", store_writer_test, true},
    {"store_server", store_server_test, true},
    {"store_lanes", store_lanes_test, true},
    {"store_maintenance", store_maintenance_test, true},
};

int
main (int argc, char *argv[])
{
    int rc = proto_selftest_run ("store_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                                 argc - 1, argv + 1);
    zsys_shutdown ();
    return rc;
}
