/*  =========================================================================
    bridge_metrics - the bridge's counters, and Prometheus text of them
    =========================================================================
*/
#include "bridge_metrics.h"

#include <assert.h>
#include <civetweb.h>
#include <czmq.h>

bridge_counters_t bridge_counters;

size_t
bridge_metrics_text (char *out, size_t size)
{
    int64_t oldest = atomic_load (&bridge_counters.oldest_ts);
    long depth = atomic_load (&bridge_counters.depth);
    double age = depth > 0 && oldest > 0 ? (double)(zclock_time () - oldest) / 1000.0 : 0;
    int written = snprintf (
        out, size,
        "# TYPE phantom_bridge_lines_read_total counter\n"
        "phantom_bridge_lines_read_total %lu\n"
        "# TYPE phantom_bridge_lines_rejected_total counter\n"
        "phantom_bridge_lines_rejected_total %lu\n"
        "# TYPE phantom_bridge_readings_spooled_total counter\n"
        "phantom_bridge_readings_spooled_total %lu\n"
        "# TYPE phantom_bridge_readings_uploaded_total counter\n"
        "phantom_bridge_readings_uploaded_total %lu\n"
        "# TYPE phantom_bridge_readings_refused_total counter\n"
        "phantom_bridge_readings_refused_total %lu\n"
        "# TYPE phantom_bridge_readings_dropped_total counter\n"
        "phantom_bridge_readings_dropped_total %lu\n"
        "# TYPE phantom_bridge_upload_failures_total counter\n"
        "phantom_bridge_upload_failures_total %lu\n"
        "# TYPE phantom_bridge_serial_reopens_total counter\n"
        "phantom_bridge_serial_reopens_total %lu\n"
        "# TYPE phantom_bridge_spool_depth gauge\n"
        "phantom_bridge_spool_depth %ld\n"
        "# TYPE phantom_bridge_spool_oldest_age_seconds gauge\n"
        "phantom_bridge_spool_oldest_age_seconds %.3f\n",
        atomic_load (&bridge_counters.lines_read), atomic_load (&bridge_counters.lines_rejected),
        atomic_load (&bridge_counters.spooled), atomic_load (&bridge_counters.uploaded),
        atomic_load (&bridge_counters.refused), atomic_load (&bridge_counters.dropped),
        atomic_load (&bridge_counters.upload_failures), atomic_load (&bridge_counters.reopens),
        depth < 0 ? 0 : depth, age);
    return written < 0 ? 0 : (size_t)written < size ? (size_t)written : size - 1;
}

static int
s_metrics_handler (struct mg_connection *conn, void *cbdata)
{
    (void)cbdata;
    char text[2048];
    size_t size = bridge_metrics_text (text, sizeof text);
    mg_printf (conn,
               "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n",
               size);
    mg_write (conn, text, size);
    return 200;
}

struct mg_context *
bridge_metrics_start (const char *address)
{
    if (!address || !*address || strcmp (address, "off") == 0)
        return NULL;
    const char *options[] = {"listening_ports",    address, "num_threads", "2",
                             "request_timeout_ms", "5000",  NULL};
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    mg_init_library (0);
    struct mg_context *context = mg_start (&callbacks, NULL, options);
    if (!context) {
        zsys_error ("bridge metrics %s - cannot listen", address);
        return NULL;
    }
    mg_set_request_handler (context, "/metrics", s_metrics_handler, NULL);
    zsys_info ("bridge metrics - http://%s/metrics", address);
    return context;
}

void
bridge_metrics_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_metrics: ");
    atomic_store (&bridge_counters.dropped, 2);
    atomic_store (&bridge_counters.depth, 0);
    char metrics[2048];
    assert (bridge_metrics_text (metrics, sizeof metrics) > 0);
    assert (strstr (metrics, "phantom_bridge_readings_dropped_total 2\n"));
    assert (strstr (metrics, "phantom_bridge_spool_oldest_age_seconds 0.000\n"));
    //  A buffer too small for the text gets what fits, terminated.
    char small[16];
    assert (bridge_metrics_text (small, sizeof small) == sizeof small - 1);
    assert (small[sizeof small - 1] == 0);
    assert (bridge_metrics_start ("off") == NULL);
    if (verbose)
        printf ("OK\n");
}
