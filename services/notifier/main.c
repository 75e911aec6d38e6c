/*  =========================================================================
    phantom-notifier - turns phantom events into notifications and webhooks

    Usage: phantom-notifier [-c CONFIG] [-v]
    SUB to every detector's event PUB (event_endpoint + partition), writes
    notifications to PostgreSQL, delivers webhooks. Foreground, logs to
    stderr, exits 0 after a clean shutdown on SIGTERM/SIGINT.
    =========================================================================
*/
#include "notifier_service.h"
#include "proto_curve.h"
#include "proto_config.h"

#include <czmq.h>
#include <sodium.h>
#include <unistd.h>

#define DEFAULT_CONFIG "deploy/phantomwatch.conf"

int
main (int argc, char *argv[])
{
    const char *config_path = NULL;
    bool verbose = false;
    int option;
    while ((option = getopt (argc, argv, "c:vh")) != -1) {
        if (option == 'c')
            config_path = optarg;
        else if (option == 'v')
            verbose = true;
        else {
            fprintf (stderr, "usage: phantom-notifier [-c CONFIG] [-v]\n");
            return option == 'h' ? 0 : 2;
        }
    }
    if (!config_path && access (DEFAULT_CONFIG, R_OK) == 0)
        config_path = DEFAULT_CONFIG;

    //  CZMQ's handler only sets zsys_interrupted; the loop below does the rest.
    zsys_set_logstream (stderr); //  logs go to stderr, one line per event
    zsys_init ();
    zsys_set_logident ("phantom-notifier");
    if (sodium_init () < 0) {
        zsys_error ("notifier - libsodium failed to initialise");
        return 1;
    }
    proto_config_t *config = proto_config_new (config_path);
    if (!config || proto_curve_configure (config) != 0) {
        proto_config_destroy (&config);
        return 1;
    }
    if (verbose)
        zsys_info ("notifier - config %s",
                   config_path ? config_path : "(defaults and environment)");
    notifier_service_t *service = notifier_service_new (config, verbose);
    if (!service) {
        proto_config_destroy (&config);
        return 1;
    }
    while (!zsys_interrupted)
        if (notifier_service_poll (service, 500) == -1)
            break;
    zsys_info ("notifier - shutting down");
    notifier_service_destroy (&service);
    proto_config_destroy (&config);
    return 0;
}
