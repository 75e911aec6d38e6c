/*  =========================================================================
    mqtt_selftest - runs one MQTT service class test, or all of them

    mqtt_selftest [-v] [mqtt_<class>]
    A test that needs PostgreSQL reads PHANTOM_TEST_DATABASE and exits 77
    (ctest SKIP) when it is unset.
    =========================================================================
*/
#include "mqtt_channels.h"
#include "mqtt_metrics.h"
#include "mqtt_parse.h"
#include "mqtt_reading.h"
#include "mqtt_service.h"

#include <czmq.h>

static const struct {
    const char *name;
    void (*test) (bool verbose);
} s_tests[] = {
    {"mqtt_parse", mqtt_parse_test},     {"mqtt_reading", mqtt_reading_test},
    {"mqtt_metrics", mqtt_metrics_test}, {"mqtt_channels", mqtt_channels_test},
    {"mqtt_service", mqtt_service_test},
};

int
main (int argc, char *argv[])
{
    bool verbose = false;
    const char *only = NULL;
    for (int index = 1; index < argc; index++) {
        if (streq (argv[index], "-v"))
            verbose = true;
        else
            only = argv[index];
    }
    bool found = false;
    for (size_t index = 0; index < sizeof s_tests / sizeof s_tests[0]; index++)
        if (!only || streq (only, s_tests[index].name)) {
            s_tests[index].test (verbose);
            found = true;
        }
    if (!found) {
        fprintf (stderr, "mqtt_selftest: no test %s\n", only);
        return 2;
    }
    return 0;
}
