/*  =========================================================================
    phantom-store - the only writer of readings, port status and episodes

    phantom-store [-c CONFIG] [-v]

    Store: PULL verdicts from every detector (verdict_endpoint), write them
    to PostgreSQL (database) in group commits of batch_max verdicts or
    batch_ms, PUB the acks to gateways (ack_endpoint) once committed, on
    store_writers connections (default 2; a port always on the same one).
    Beside it, on a thread and connection of its own: per-minute rollups
    (each minute once, and the minutes late readings changed again, as the
    lanes mark them in the readings' transaction; rollup_lookback_minutes
    is the window re-rolled for all ports after a start) and retention
    (retention_days of raw readings, rollup_retention_days of rollups;
    0 keeps forever).
    =========================================================================
*/
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proto_config.h"
#include "proto_curve.h"
#include "store_maintenance.h"
#include "store_server.h"

static volatile sig_atomic_t s_stop = 0;

static void
s_signal (int signum)
{
    (void)signum;
    s_stop = 1;
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
            fprintf (stderr, "usage: phantom-store [-c CONFIG] [-v]\n");
            return 1;
        }
    }
    if (!path && access ("deploy/phantomwatch.conf", R_OK) == 0)
        path = "deploy/phantomwatch.conf";

    //  Our own handler only sets the flag; the loop notices within 100 ms.
    zsys_handler_set (NULL);
    struct sigaction action;
    memset (&action, 0, sizeof (action));
    action.sa_handler = s_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);

    proto_config_t *config = proto_config_new (path);
    if (!config || proto_curve_configure (config) != 0) {
        proto_config_destroy (&config);
        return 1;
    }
    int error = 0;
    int64_t batch_max = proto_config_int (config, "batch_max", 1000, 1, PROTO_ACKS_MAX, &error);
    int64_t batch_ms = proto_config_int (config, "batch_ms", 2, 0, 1000, &error);
    //  Writer connections (lanes, see store_server.h): two keep a commit
    //  in flight while the next batch is written.
    int64_t writers = proto_config_int (config, "store_writers", 2, 1, 8, &error);
    store_maintenance_policy_t policy = STORE_MAINTENANCE_POLICY_DEFAULT;
    policy.retention_days =
        (int)proto_config_int (config, "retention_days", policy.retention_days, 0, 36500, &error);
    policy.rollup_retention_days = (int)proto_config_int (
        config, "rollup_retention_days", policy.rollup_retention_days, 0, 36500, &error);
    policy.lookback_minutes = (int)proto_config_int (config, "rollup_lookback_minutes",
                                                     policy.lookback_minutes, 1, 1440, &error);
    //  Never off in production (deploy/phantomwatch.conf); set before any
    //  writer connects.
    const char *synchronous_commit = proto_config_get (config, "store_synchronous_commit", "on");
    if (streq (synchronous_commit, "on") || streq (synchronous_commit, "off"))
        store_writer_set_synchronous_commit (streq (synchronous_commit, "on"));
    else {
        zsys_error ("config store_synchronous_commit - '%s' is not on or off", synchronous_commit);
        error = -1;
    }
    if (error) {
        proto_config_destroy (&config);
        return 1;
    }
    const char *database = proto_config_get (config, "database", "dbname=phantomwatch");
    const char *verdict_endpoint =
        proto_config_get (config, "verdict_endpoint", "tcp://127.0.0.1:5590");
    const char *ack_endpoint = proto_config_get (config, "ack_endpoint", "tcp://127.0.0.1:5591");

    zsys_set_logstream (stderr); //  logs go to stderr, one line per event
    zsys_init ();
    store_writer_t *writer = store_writer_new (database, verbose);
    store_server_t *server = store_server_new (verdict_endpoint, ack_endpoint, &writer,
                                               (size_t)batch_max, (int)batch_ms, verbose);
    store_writer_destroy (&writer);
    for (int64_t lane = 1; server && lane < writers; lane++) {
        writer = store_writer_new (database, verbose);
        if (store_server_add_writer (server, &writer))
            zsys_warning ("store main - writer %" PRId64 " not added", lane);
        store_writer_destroy (&writer);
    }
    if (!server) {
        proto_config_destroy (&config);
        zsys_shutdown ();
        return 1;
    }
    //  Rollups and retention are not on the path of an ack: a failure to
    //  start them is logged, and the store serves on without them.
    store_maintenance_t *maintenance = store_maintenance_new (database, &policy, verbose);
    if (maintenance && store_maintenance_start (maintenance))
        store_maintenance_destroy (&maintenance);
    //  The lanes keep minutes and mark late readings for it; destroyed
    //  after the server.
    if (maintenance)
        store_server_set_maintenance (server, maintenance);
    zsys_info ("store main - started");
    while (!s_stop) {
        if (store_server_step (server, 100) == -1 && !s_stop)
            zclock_sleep (10); //  a signal other than ours; go on
    }
    zsys_info ("store main - stopping after %" PRIu64 " verdicts", store_server_verdicts (server));
    store_server_destroy (&server);
    store_maintenance_destroy (&maintenance);
    proto_config_destroy (&config);
    zsys_shutdown ();
    return 0;
}
