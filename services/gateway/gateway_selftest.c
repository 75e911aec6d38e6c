/*  =========================================================================
    gateway_selftest - runs one gateway class test, or all of them

    gateway_selftest [-v] [gateway_<class> ...]
    A test that needs PostgreSQL reads PHANTOM_TEST_DATABASE and exits 77
    (ctest SKIP) when it is unset.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_pipeline.h"
#include "gateway_listener.h"
#include "gateway_live.h"
#include "gateway_web.h"
#include "gateway_json.h"
#include "gateway_scanner.h"
#include "gateway_port_table.h"
#include "gateway_token_table.h"
#include "gateway_token_use.h"
#include "proto_selftest.h"

static const proto_selftest_t s_tests[] = {
    {"gateway_http", gateway_http_test, false},
    {"gateway_http_client", gateway_http_client_test, false},
    {"gateway_http_rate", gateway_http_rate_test, false},
    {"gateway_pipeline", gateway_pipeline_test, false},
    {"gateway_time", gateway_time_test, false},
    {"gateway_json", gateway_json_test, false},
    {"gateway_reading", gateway_reading_test, false},
    {"gateway_scanner", gateway_scanner_test, false},
    {"gateway_sensor", gateway_sensor_test, false},
    {"gateway_emoncms", gateway_emoncms_test, false},
    {"gateway_db", gateway_db_test, false},
    {"gateway_listener", gateway_listener_test, false},
    {"gateway_cache", gateway_cache_test, false},
    {"gateway_cache_schedule", gateway_cache_schedule_test, false},
    {"gateway_port_table", gateway_port_table_test, false},
    {"gateway_token_table", gateway_token_table_test, false},
    {"gateway_token_use", gateway_token_use_test, false},
    {"gateway_api", gateway_api_test, false},
    {"gateway_api_password", gateway_api_password_test, false},
    {"gateway_api_request", gateway_api_request_test, false},
    {"gateway_api_token", gateway_api_token_test, false},
    {"gateway_api_export", gateway_api_export_test, false},
    {"gateway_live", gateway_live_test, false},
    {"gateway_web", gateway_web_test, false},
    {"gateway", gateway_test, false},
};

int
main (int argc, char *argv[])
{
    signal (SIGPIPE, SIG_IGN);
    zsys_init ();
    return proto_selftest_run ("gateway_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                               argc - 1, argv + 1);
}
