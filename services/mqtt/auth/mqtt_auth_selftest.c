/*  =========================================================================
    mqtt_auth_selftest - runs the auth plugin's class tests

    mqtt_auth_selftest [-v] [CLASS ...]: every class, or just those named;
    ctest runs each as its own test. The plugin in a real broker is
    mqtt_auth_broker_test.py.
    =========================================================================
*/
#include "mqtt_auth_acl.h"
#include "mqtt_auth_spool.h"
#include "mqtt_auth_table.h"
#include "proto_selftest.h"

static const proto_selftest_t s_tests[] = {
    {"mqtt_auth_acl", mqtt_auth_acl_test, false},
    {"mqtt_auth_table", mqtt_auth_table_test, false},
    {"mqtt_auth_spool", mqtt_auth_spool_test, false},
};

int
main (int argc, char *argv[])
{
    return proto_selftest_run ("mqtt_auth_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                               argc - 1, argv + 1);
}
