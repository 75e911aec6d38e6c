/*  =========================================================================
    phantom-notifier - turns phantom events into notifications and webhooks

    Usage: phantom-notifier [-c CONFIG] [-v] [--help-config]
    SUB to every detector's event PUB (event_endpoint + partition), writes
    notifications to PostgreSQL, delivers webhooks. Foreground, logs to
    stderr, exits 0 after a clean shutdown on SIGTERM/SIGINT.
    =========================================================================
*/
#include "notifier_service.h"
#include "proto_main.h"

#include <czmq.h>
#include <sodium.h>

int
main (int argc, char *argv[])
{
    proto_main_spec_t spec = {.name = "phantom-notifier"};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    if (sodium_init () < 0) {
        zsys_error ("notifier - libsodium failed to initialise");
        proto_main_destroy (&app);
        return 1;
    }
    notifier_service_t *service =
        notifier_service_new (proto_main_config (app), proto_main_verbose (app));
    if (!service) {
        proto_main_destroy (&app);
        return 1;
    }
    while (!proto_main_stopping ())
        if (notifier_service_poll (service, 500) == -1)
            break;
    zsys_info ("notifier - shutting down");
    notifier_service_destroy (&service);
    proto_main_destroy (&app);
    return 0;
}
