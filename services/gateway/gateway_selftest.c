/*  =========================================================================
    gateway_selftest - runs one gateway class test, or all of them

    gateway_selftest [-v] [gateway_<class>]
    A test that needs PostgreSQL reads PHANTOM_TEST_DATABASE and exits 77
    (ctest SKIP) when it is unset.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_pipeline.h"
#include "gateway_live.h"
#include "gateway_web.h"
#include "gateway_json.h"
#include "gateway_scanner.h"
#include "gateway_port_table.h"
#include "gateway_token_table.h"
#include "gateway_token_use.h"

static const struct {
    const char *name;
    void (*test) (bool verbose);
} s_tests[] = {
    {"gateway_http", gateway_http_test},
    {"gateway_http_client", gateway_http_client_test},
    {"gateway_http_rate", gateway_http_rate_test},
    {"gateway_pipeline", gateway_pipeline_test},
    {"gateway_time", gateway_time_test},
    {"gateway_json", gateway_json_test},
    {"gateway_reading", gateway_reading_test},
    {"gateway_scanner", gateway_scanner_test},
    {"gateway_sensor", gateway_sensor_test},
    {"gateway_emoncms", gateway_emoncms_test},
    {"gateway_db", gateway_db_test},
    {"gateway_cache", gateway_cache_test},
    {"gateway_cache_schedule", gateway_cache_schedule_test},
    {"gateway_port_table", gateway_port_table_test},
    {"gateway_token_table", gateway_token_table_test},
    {"gateway_token_use", gateway_token_use_test},
    {"gateway_api", gateway_api_test},
    {"gateway_api_password", gateway_api_password_test},
    {"gateway_api_request", gateway_api_request_test},
    {"gateway_api_token", gateway_api_token_test},
    {"gateway_api_export", gateway_api_export_test},
    {"gateway_live", gateway_live_test},
    {"gateway_web", gateway_web_test},
    {"gateway", gateway_test},
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
    signal (SIGPIPE, SIG_IGN);
    zsys_init ();
    bool found = false;
    for (size_t index = 0; index < sizeof s_tests / sizeof s_tests[0]; index++) {
        if (!only || streq (only, s_tests[index].name)) {
            found = true;
            s_tests[index].test (verbose);
        }
    }
    if (!found) {
        fprintf (stderr, "gateway_selftest: unknown test '%s'\n", only);
        return 1;
    }
    return 0;
}
