/*  =========================================================================
    phantom-gateway - the HTTP surface of PhantomWatch

    phantom-gateway [-c CONFIG] [-v] [--help-config]
    Foreground, logs to stderr, exits 0 after a clean shutdown on SIGTERM/SIGINT.
    =========================================================================
*/
#include "gateway.h"
#include "proto_main.h"

int
main (int argc, char *argv[])
{
    proto_main_spec_t spec = {.name = "phantom-gateway"};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    //  gateway_new waits for PostgreSQL, and gives up when we are stopped.
    gateway_t *gateway =
        gateway_new (proto_main_config (app), proto_main_verbose (app), proto_main_stop_flag ());
    if (!gateway) {
        proto_main_destroy (&app);
        return proto_main_stopping () ? 0 : 1;
    }
    while (!proto_main_stopping ())
        zclock_sleep (200);
    zsys_info ("gateway - stopping");
    gateway_destroy (&gateway);
    proto_main_destroy (&app);
    zsys_info ("gateway - stopped");
    return 0;
}
