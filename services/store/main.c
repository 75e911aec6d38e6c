/*  =========================================================================
    phantom-store - the only writer of readings, port status and episodes

    phantom-store [-c CONFIG] [-v] [--help-config]

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

#include "proto_main.h"
#include "store_maintenance.h"
#include "store_server.h"

int
main (int argc, char *argv[])
{
    proto_main_spec_t spec = {.name = "phantom-store"};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    proto_config_t *config = proto_main_config (app);
    bool verbose = proto_main_verbose (app);
    size_t batch_max = (size_t)proto_config_int (config, "batch_max");
    int batch_ms = (int)proto_config_int (config, "batch_ms");
    //  Writer connections (lanes, see store_server.h): two keep a commit
    //  in flight while the next batch is written.
    int64_t writers = proto_config_int (config, "store_writers");
    store_maintenance_policy_t policy = {
        .retention_days = (int)proto_config_int (config, "retention_days"),
        .rollup_retention_days = (int)proto_config_int (config, "rollup_retention_days"),
        .lookback_minutes = (int)proto_config_int (config, "rollup_lookback_minutes")};
    //  Never off in production (deploy/phantomwatch.conf); set before any
    //  writer connects.
    store_writer_set_synchronous_commit (
        streq (proto_config_str (config, "store_synchronous_commit"), "on"));
    const char *database = proto_config_str (config, "database");
    const char *verdict_endpoint = proto_config_str (config, "verdict_endpoint");
    const char *ack_endpoint = proto_config_str (config, "ack_endpoint");

    store_writer_t *writer = store_writer_new (database, verbose);
    store_server_t *server =
        store_server_new (verdict_endpoint, ack_endpoint, &writer, batch_max, batch_ms, verbose);
    store_writer_destroy (&writer);
    for (int64_t lane = 1; server && lane < writers; lane++) {
        writer = store_writer_new (database, verbose);
        if (store_server_add_writer (server, &writer))
            zsys_warning ("store main - writer %" PRId64 " not added", lane);
        store_writer_destroy (&writer);
    }
    if (!server) {
        proto_main_destroy (&app);
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
    while (!proto_main_stopping ()) {
        if (store_server_step (server, 100) == -1 && !proto_main_stopping ())
            zclock_sleep (10); //  a signal other than ours; go on
    }
    zsys_info ("store main - stopping after %" PRIu64 " verdicts", store_server_verdicts (server));
    store_server_destroy (&server);
    store_maintenance_destroy (&maintenance);
    proto_main_destroy (&app);
    return 0;
}
