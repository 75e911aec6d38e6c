/*  =========================================================================
    phantom-detector - one partition of phantom detection

    Detector: PULL readings from every gateway (partition N), PUSH verdicts
    to the store, PUB phantom events.

    phantom-detector [-c CONFIG] [-v] -i PARTITION
    PARTITION may come from PHANTOM_PARTITION instead (supervisord passes
    %(process_num)d); it must be in [0, partitions).
    =========================================================================
*/
#include <czmq.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "detector_restore.h"
#include "proto_curve.h"
#include "detector_server.h"
#include "proto_config.h"

static volatile sig_atomic_t s_stop;

static void
s_signal (int signum)
{
    (void)signum;
    s_stop = 1;
}

static int
s_usage (void)
{
    fprintf (stderr, "usage: phantom-detector [-c CONFIG] [-v] -i PARTITION\n");
    return 2;
}

//  Seeds the engine from the database. Fatal when it fails: starting
//  empty would repeat every open episode; supervisord retries, and
//  detector_restore = 0 opts out. 0 or -1.
static int
s_restore (detector_server_t *server, proto_config_t *config, long partition, int64_t partitions)
{
    int64_t started = zclock_mono ();
    int64_t ports =
        detector_restore_load (detector_server_engine (server),
                               proto_config_get (config, "database", "dbname=phantomwatch"),
                               (uint32_t)partition, (uint32_t)partitions);
    if (ports < 0) {
        zsys_error ("detector partition %ld - cannot restore state from the database; "
                    "stopping",
                    partition);
        return -1;
    }
    zsys_info ("detector partition %ld - restored %lld ports in %lld ms", partition,
               (long long)ports, (long long)(zclock_mono () - started));
    return 0;
}

static void
s_log_stats (detector_server_t *server, long partition)
{
    detector_server_stats_t stats;
    detector_server_stats (server, &stats);
    detector_engine_stats_t engine_stats;
    detector_engine_stats (detector_server_engine (server), &engine_stats);
    zsys_info ("detector partition %ld - stopping: %llu frames, %llu malformed, %llu verdicts, "
               "%llu dropped, %llu events, %llu ports, %llu duplicates, %llu out of order",
               partition, (unsigned long long)stats.frames, (unsigned long long)stats.malformed,
               (unsigned long long)stats.verdicts, (unsigned long long)stats.verdicts_dropped,
               (unsigned long long)stats.events, (unsigned long long)engine_stats.ports,
               (unsigned long long)engine_stats.duplicates,
               (unsigned long long)engine_stats.out_of_order);
}

//  Runs partition partition_text under config until a signal. The exit
//  status: 0, or 1 after logging why it could not start.
static int
s_run (proto_config_t *config, const char *partition_text, bool verbose)
{
    int error = 0;
    int64_t partitions = proto_config_int (config, "partitions", 1, 1, 4096, &error);
    int64_t restore = proto_config_int (config, "detector_restore", 1, 0, 1, &error);
    int64_t offline_seconds = proto_config_int (
        config, "detector_offline_seconds", DETECTOR_OFFLINE_SECONDS_DEFAULT, 1, 7 * 86400, &error);
    char *end = NULL;
    long partition = strtol (partition_text, &end, 10);
    if (error || !*partition_text || *end || partition < 0 || partition >= partitions) {
        if (!error)
            zsys_error ("detector partition %s - not in [0, %lld)", partition_text,
                        (long long)partitions);
        return 1;
    }
    char *readings = detector_server_partition_endpoints (
        proto_config_get (config, "reading_endpoints", "tcp://127.0.0.1:5600"), (int)partition);
    const char *verdicts = proto_config_get (config, "verdict_endpoint", "tcp://127.0.0.1:5590");
    char *events = proto_config_endpoint_offset (
        proto_config_get (config, "event_endpoint", "tcp://127.0.0.1:5700"), (int)partition);
    detector_server_t *server = NULL;
    if (!readings || !events)
        zsys_error ("detector config - reading_endpoints/event_endpoint need numeric ports");
    else
        server = detector_server_new (readings, verdicts, events, offline_seconds * 1000, verbose);
    int rc = server && (!restore || s_restore (server, config, partition, partitions) == 0) ? 0 : 1;
    if (rc == 0) {
        zsys_info ("detector partition %ld - readings from %s, verdicts to %s, events on %s",
                   partition, readings, verdicts, events);
        while (!s_stop)
            detector_server_poll (server, 500);
        s_log_stats (server, partition);
    }
    //  Destroying the server flushes queued verdicts (bounded linger).
    detector_server_destroy (&server);
    free (readings);
    free (events);
    return rc;
}

int
main (int argc, char *argv[])
{
    const char *config_path = NULL;
    const char *partition_text = getenv ("PHANTOM_PARTITION");
    bool verbose = false;
    int option;
    while ((option = getopt (argc, argv, "c:vi:")) != -1) {
        switch (option) {
        case 'c':
            config_path = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'i':
            partition_text = optarg;
            break;
        default:
            return s_usage ();
        }
    }
    if (optind < argc || !partition_text)
        return s_usage ();
    if (!config_path && access ("deploy/phantomwatch.conf", R_OK) == 0)
        config_path = "deploy/phantomwatch.conf";

    //  Our handler only sets a flag; CZMQ must not install its own.
    zsys_handler_set (NULL);
    zsys_set_logstream (stderr); //  logs go to stderr; stdout is for data
    struct sigaction action;
    memset (&action, 0, sizeof (action));
    action.sa_handler = s_signal;
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    zsys_init ();

    proto_config_t *config = proto_config_new (config_path);
    if (!config || proto_curve_configure (config) != 0) {
        proto_config_destroy (&config);
        return 1;
    }
    int rc = s_run (config, partition_text, verbose);
    proto_config_destroy (&config);
    return rc;
}
