/*  =========================================================================
    phantom-detector - one partition of phantom detection

    Detector: PULL readings from every gateway (partition N), PUSH verdicts
    to the store, PUB phantom events.

    phantom-detector [-c CONFIG] [-v] [--help-config] -i PARTITION
    PARTITION may come from PHANTOM_PARTITION instead (supervisord passes
    %(process_num)d); it must be in [0, partitions).
    =========================================================================
*/
#include <czmq.h>
#include <stdlib.h>

#include "detector_restore.h"
#include "detector_server.h"
#include "proto_main.h"

//  Seeds the engine from the database. Fatal when it fails: starting
//  empty would repeat every open episode; supervisord retries, and
//  detector_restore = 0 opts out. 0 or -1.
static int
s_restore (detector_server_t *server, proto_config_t *config, long partition, int64_t partitions)
{
    int64_t started = zclock_mono ();
    int64_t ports = detector_restore_load (detector_server_engine (server),
                                           proto_config_str (config, "database"),
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
    zsys_info (
        "detector partition %ld - stopping: %llu frames, %llu malformed, %llu verdicts, "
        "%llu dropped, %llu events, %llu ports, %llu duplicates, %llu out of order, "
        "%llu offline frames (%llu ports told offline)",
        partition, (unsigned long long)stats.frames, (unsigned long long)stats.malformed,
        (unsigned long long)stats.verdicts, (unsigned long long)stats.verdicts_dropped,
        (unsigned long long)stats.events, (unsigned long long)engine_stats.ports,
        (unsigned long long)engine_stats.duplicates, (unsigned long long)engine_stats.out_of_order,
        (unsigned long long)stats.offline_frames, (unsigned long long)engine_stats.told_offline);
}

//  Runs partition partition_text under config until a signal. The exit
//  status: 0, or 1 after logging why it could not start.
static int
s_run (proto_config_t *config, const char *partition_text, bool verbose)
{
    int64_t partitions = proto_config_int (config, "partitions");
    int64_t offline_seconds = proto_config_int (config, "detector_offline_seconds");
    char *end = NULL;
    long partition = strtol (partition_text, &end, 10);
    if (!*partition_text || *end || partition < 0 || partition >= partitions) {
        zsys_error ("detector partition %s - not in [0, %lld)", partition_text,
                    (long long)partitions);
        return 1;
    }
    char *readings = detector_server_partition_endpoints (
        proto_config_str (config, "reading_endpoints"), (int)partition);
    const char *verdicts = proto_config_str (config, "verdict_endpoint");
    char *events =
        proto_config_endpoint_offset (proto_config_str (config, "event_endpoint"), (int)partition);
    detector_server_t *server = NULL;
    if (!readings || !events)
        zsys_error ("detector config - reading_endpoints/event_endpoint need numeric ports");
    else
        server = detector_server_new (readings, verdicts, events, offline_seconds * 1000, verbose);
    bool restore = proto_config_int (config, "detector_restore") == 1;
    int rc = server && (!restore || s_restore (server, config, partition, partitions) == 0) ? 0 : 1;
    if (rc == 0) {
        zsys_info ("detector partition %ld - readings from %s, verdicts to %s, events on %s",
                   partition, readings, verdicts, events);
        while (!proto_main_stopping ())
            detector_server_poll (server, 500);
        s_log_stats (server, partition);
    }
    //  Destroying the server flushes queued verdicts (bounded linger).
    detector_server_destroy (&server);
    free (readings);
    free (events);
    return rc;
}

static int
s_option (int option, const char *argument, void *arg)
{
    (void)option; //  only 'i'
    *(const char **)arg = argument;
    return 0;
}

int
main (int argc, char *argv[])
{
    //  PARTITION may come from the environment (supervisord's process_num).
    const char *partition_text = getenv ("PHANTOM_PARTITION");
    proto_main_spec_t spec = {.name = "phantom-detector",
                              .usage = "-i PARTITION",
                              .options = "i:",
                              .option = s_option,
                              .arg = &partition_text};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    if (!partition_text) {
        proto_main_destroy (&app);
        return proto_main_usage (&spec);
    }
    int rc = s_run (proto_main_config (app), partition_text, proto_main_verbose (app));
    proto_main_destroy (&app);
    return rc;
}
