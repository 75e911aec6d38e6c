/*  =========================================================================
    detector_selftest - runs the detector's class tests

    detector_selftest [-v] [CLASS ...]: every class, or just those named; ctest runs
    each class as its own test (detector_<class>).
    =========================================================================
*/
#include "detector_engine.h"
#include "detector_restore.h"
#include "detector_server.h"
#include "proto_selftest.h"

static const proto_selftest_t s_tests[] = {
    {"detector_engine", detector_engine_test, false},
    {"detector_server", detector_server_test, false},
    {"detector_restore", detector_restore_test, false},
};

int
main (int argc, char *argv[])
{
    return proto_selftest_run ("detector_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                               argc - 1, argv + 1);
}
