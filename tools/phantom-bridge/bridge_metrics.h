/*  =========================================================================
    bridge_metrics - the bridge's counters, and Prometheus text of them on a
    local civetweb port

    The counters are one process-wide set: the serial reader, the spool, the
    uploader and the metrics threads all update or read them, lock-free.
    Metric names: README.md beside this file.
    =========================================================================
*/
#ifndef BRIDGE_METRICS_H_INCLUDED
#define BRIDGE_METRICS_H_INCLUDED

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    atomic_ulong lines_read;      //  lines that were not blank
    atomic_ulong lines_rejected;  //  of them, refused by the line parser
    atomic_ulong spooled;         //  readings committed to the spool
    atomic_ulong uploaded;        //  readings the gateway answered 201
    atomic_ulong refused;         //  readings it answered 400 or 404 (dropped)
    atomic_ulong dropped;         //  readings the full spool dropped, oldest first
    atomic_ulong upload_failures; //  batches of which nothing was settled
    atomic_ulong reopens;         //  serial device reopened after a loss
    atomic_long depth;            //  readings in the spool
    atomic_llong oldest_ts;       //  ms of the oldest spooled reading, 0 when empty
} bridge_counters_t;

extern bridge_counters_t bridge_counters;

struct mg_context;

//  The counters as Prometheus text into out (size bytes); its length.
size_t bridge_metrics_text (char *out, size_t size);

//  Serves GET /metrics on address (host:port); NULL when address is "off"
//  or empty, or after logging that it cannot listen. mg_stop ends it.
struct mg_context *bridge_metrics_start (const char *address);

void bridge_metrics_test (bool verbose);

#endif
