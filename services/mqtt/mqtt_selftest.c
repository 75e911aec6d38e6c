/*  =========================================================================
    mqtt_selftest - runs the MQTT service's class tests

    mqtt_selftest [-v] [CLASS ...]: every class, or just those named; ctest
    runs each as its own test. Those that need PostgreSQL are skipped (exit
    77) without PHANTOM_TEST_DATABASE.
    =========================================================================
*/
#include "mqtt_channels.h"
#include "mqtt_metrics.h"
#include "mqtt_offline.h"
#include "mqtt_parse.h"
#include "mqtt_reading.h"
#include "mqtt_service.h"
#include "proto_selftest.h"

static const proto_selftest_t s_tests[] = {
    {"mqtt_parse", mqtt_parse_test, false},     {"mqtt_reading", mqtt_reading_test, false},
    {"mqtt_metrics", mqtt_metrics_test, false}, {"mqtt_channels", mqtt_channels_test, true},
    {"mqtt_service", mqtt_service_test, true},  {"mqtt_offline", mqtt_offline_test, true},
};

int
main (int argc, char *argv[])
{
    return proto_selftest_run ("mqtt_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                               argc - 1, argv + 1);
}
