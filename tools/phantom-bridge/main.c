/*  =========================================================================
    phantom-bridge - a serial board's lines into PhantomWatch, losing nothing

    Serial reader (main thread, bridge_serial): termios device -> lines ->
    readings (bridge_line) -> SQLite spool (bridge_spool, WAL), committed
    before anything else happens to them. Uploader (one thread,
    bridge_uploader): oldest spooled readings -> POST /api/sensor/readings
    (libcurl) -> deleted only after their 201. Metrics (bridge_metrics):
    Prometheus text on a local civetweb port.
    Usage, config keys and metric names: README.md beside this file.
    =========================================================================
*/
#include "bridge_config_keys.h"
#include "bridge_line.h"
#include "bridge_metrics.h"
#include "bridge_serial.h"
#include "bridge_settings.h"
#include "bridge_spool.h"
#include "bridge_uploader.h"
#include "proto_config.h"
#include "proto_main.h"
#include "proto_selftest.h"

#include <civetweb.h>
#include <curl/curl.h>
#include <czmq.h>
#include <inttypes.h>
#include <pthread.h>
#include <sys/resource.h>

static const proto_selftest_t s_tests[] = {
    {"bridge_settings", bridge_settings_test, false},
    {"bridge_line", bridge_line_test, false},
    {"bridge_serial", bridge_serial_test, false},
    {"bridge_spool", bridge_spool_test, false},
    {"bridge_uploader", bridge_uploader_test, false},
    {"bridge_metrics", bridge_metrics_test, false},
};

//  Runs every class test, in dependency order, or the one named, always
//  verbose; 1 if there is no such class.
static int
s_selftest (const char *only)
{
    char verbose[] = "-v";
    char *args[] = {verbose, (char *)only};
    return proto_selftest_run ("phantom-bridge", s_tests, sizeof s_tests / sizeof s_tests[0],
                               only ? 2 : 1, args);
}

static void
s_usage (void)
{
    fprintf (stderr, "usage: phantom-bridge [-c CONFIG] [-v] [--device PATH] [--spool PATH]\n"
                     "       phantom-bridge --help-config\n"
                     "       phantom-bridge --selftest [CLASS] [-v]\n"
                     "       phantom-bridge -c CONFIG --fill N\n"
                     "       phantom-bridge -c CONFIG --drain\n");
}

static long
s_rss_max_kb (void)
{
    struct rusage usage;
    getrusage (RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

int
main (int argc, char *argv[])
{
    const char *config_path = NULL, *device = NULL, *spool_path = NULL;
    const char *selftest_class = NULL;
    bool selftest = false, drain = false, verbose = false;
    int64_t fill = -1;
    for (int index = 1; index < argc; index++) {
        const char *arg = argv[index];
        const char *next = index + 1 < argc ? argv[index + 1] : NULL;
        if (strcmp (arg, "-v") == 0)
            verbose = true;
        else if (strcmp (arg, "--selftest") == 0) {
            selftest = true;
            if (next && next[0] != '-')
                selftest_class = argv[++index];
        } else if (strcmp (arg, "--drain") == 0)
            drain = true;
        else if (strcmp (arg, "--help-config") == 0) {
            proto_config_print (bridge_config_keys, stdout);
            return 0;
        } else if (strcmp (arg, "-c") == 0 && next)
            config_path = argv[++index];
        else if (strcmp (arg, "--device") == 0 && next)
            device = argv[++index];
        else if (strcmp (arg, "--spool") == 0 && next)
            spool_path = argv[++index];
        else if (strcmp (arg, "--fill") == 0 && next && atoll (next) > 0)
            fill = atoll (argv[++index]);
        else {
            s_usage ();
            return 1;
        }
    }
    zsys_init ();
    zsys_set_logstream (stderr);
    zsys_set_logsystem (false);
    if (selftest)
        return s_selftest (selftest_class);
    proto_config_t *config = proto_config_new_with_keys (config_path, bridge_config_keys);
    if (!config)
        return 1;
    bridge_settings_t settings;
    if (bridge_settings_load (&settings, config)) {
        proto_config_destroy (&config);
        return 1;
    }
    if (device)
        settings.device = device;
    if (spool_path)
        settings.spool = spool_path;
    int rc = 1;
    bridge_spool_t spool;
    if (bridge_spool_open (&spool, settings.spool, settings.sync)) {
        proto_config_destroy (&config);
        return 1;
    }
    atomic_store (&bridge_counters.depth, (long)bridge_spool_count (&spool));
    zsys_info ("bridge spool %s - %ld readings, readingId prefix %s, sync %s", settings.spool,
               atomic_load (&bridge_counters.depth), spool.prefix, settings.sync);
    if (fill > 0) {
        rc = bridge_spool_fill (&settings, &spool, fill) == 0 ? 0 : 1;
        bridge_spool_close (&spool);
        proto_config_destroy (&config);
        return rc;
    }
    if (!settings.token) {
        zsys_error ("bridge config - bridge_device_token is required");
        goto done;
    }
    if (!drain && !settings.device) {
        zsys_error ("bridge config - bridge_device is required");
        goto done;
    }
    proto_main_signals ();
    curl_global_init (CURL_GLOBAL_DEFAULT);
    bridge_uploader_t uploader;
    if (bridge_uploader_init (&uploader, &settings, drain, verbose)) {
        zsys_error ("bridge - cannot start the uploader");
        goto done;
    }
    struct mg_context *metrics = bridge_metrics_start (settings.metrics);
    int64_t started = zclock_mono ();
    long depth_before = atomic_load (&bridge_counters.depth);
    pthread_t thread;
    if (pthread_create (&thread, NULL, bridge_uploader_run, &uploader) != 0) {
        zsys_error ("bridge - cannot start the uploader thread");
        goto done;
    }
    if (drain) {
        pthread_join (thread, NULL);
        double seconds = (double)(zclock_mono () - started) / 1000.0;
        printf ("BRIDGE drained=%lu refused=%lu left=%ld of=%ld seconds=%.2f rate=%.0f "
                "failures=%lu rss_max_kb=%ld\n",
                atomic_load (&bridge_counters.uploaded), atomic_load (&bridge_counters.refused),
                atomic_load (&bridge_counters.depth), depth_before, seconds,
                seconds > 0 ? atomic_load (&bridge_counters.uploaded) / seconds : 0,
                atomic_load (&bridge_counters.upload_failures), s_rss_max_kb ());
        rc = atomic_load (&bridge_counters.depth) == 0 ? 0 : 1;
    } else {
        bridge_serial_t reader = {&settings, &spool};
        bridge_serial_run (&reader);
        pthread_join (thread, NULL);
        rc = 0;
    }
    if (metrics)
        mg_stop (metrics);
    bridge_uploader_release (&uploader);
    curl_global_cleanup ();
    zsys_info ("bridge - stopped (spool %ld readings)", atomic_load (&bridge_counters.depth));
done:
    bridge_spool_close (&spool);
    proto_config_destroy (&config);
    return rc;
}
