/*  =========================================================================
    phantom-gateway - the HTTP surface of PhantomWatch

    phantom-gateway [-c CONFIG] [-v]
    Foreground, logs to stderr, exits 0 after a clean shutdown on SIGTERM/SIGINT.
    =========================================================================
*/
#include "gateway.h"
#include "proto_curve.h"

#include <signal.h>
#include <unistd.h>

static volatile sig_atomic_t s_stop;
static volatile int s_stop_int;

static void
s_signal (int signum)
{
    (void)signum;
    s_stop = 1;
    s_stop_int = 1;
}

int
main (int argc, char *argv[])
{
    const char *path = NULL;
    bool verbose = false;
    int option;
    while ((option = getopt (argc, argv, "c:v")) != -1) {
        if (option == 'c')
            path = optarg;
        else if (option == 'v')
            verbose = true;
        else {
            fprintf (stderr, "usage: phantom-gateway [-c CONFIG] [-v]\n");
            return 2;
        }
    }
    if (!path && access ("deploy/phantomwatch.conf", R_OK) == 0)
        path = "deploy/phantomwatch.conf";

    //  CZMQ must not install its own handler (zsys_init would, later, on
    //  first use): ours only sets the flag.
    setenv ("ZSYS_SIGHANDLER", "false", 1);
    zsys_set_logstream (stderr); //  logs go to stderr, one line per event
    zsys_init ();
    zsys_handler_set (NULL);
    struct sigaction action;
    memset (&action, 0, sizeof action);
    action.sa_handler = s_signal;
    sigaction (SIGTERM, &action, NULL);
    sigaction (SIGINT, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    proto_config_t *config = proto_config_new (path);
    if (!config || proto_curve_configure (config) != 0) {
        proto_config_destroy (&config);
        return 1;
    }
    gateway_t *gateway = gateway_new (config, verbose, &s_stop_int);
    if (!gateway) {
        proto_config_destroy (&config);
        return s_stop ? 0 : 1;
    }
    while (!s_stop)
        zclock_sleep (200);
    zsys_info ("gateway - stopping");
    gateway_destroy (&gateway);
    proto_config_destroy (&config);
    zsys_info ("gateway - stopped");
    return 0;
}
