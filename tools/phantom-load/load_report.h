/*  =========================================================================
    load_report - the run's results: the workers' counts merged, printed in
    the form tests/bench/run and the fault tests parse, the acknowledged
    readingIds written out (--ids) and checked in PostgreSQL (--verify)

    Output (stdout), one line each: "run ...", "requests ...", "latency ms:
    p50 ...", "readings by outcome: 201=N ...", with --verify "verify:
    stored ..." (and "verify: FAILED"), and last the machine-readable
    "RESULT readings=N rps=R p50_ms=P p99_ms=P errors=N acked=N[ lost=N]".
    =========================================================================
*/
#ifndef LOAD_REPORT_H_INCLUDED
#define LOAD_REPORT_H_INCLUDED

#include "load_histogram.h"
#include "load_http.h"
#include "load_run.h"
#include "load_worker.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    load_histogram_t *latency;    //  every answer's latency
    uint64_t outcomes[OUT_COUNT]; //  final outcome per reading
    uint64_t requests;            //  responses received
    uint64_t retries;
    uint64_t reconnects;
    load_ack_t *acked; //  acknowledged readings, by seq
    size_t acked_count;
    int64_t *unknown; //  readings whose fate is unknown, by seq
    size_t unknown_count;
    bool failed;   //  a worker ran out of memory
    bool verified; //  --verify ran; lost holds its count
    int64_t lost;
} load_report_t;

//  Merges the workers' results (sorted for verification). NULL if out of memory.
load_report_t *load_report_new (const load_worker_t *workers, int count);

//  Destroys it; nullifies the caller's reference. Safe to call twice.
void load_report_destroy (load_report_t **self_p);

//  Prints the summary: elapsed is the whole run, active up to the last
//  answer (or the stop), which throughput is measured over.
void load_report_print (load_report_t *self, const load_run_t *run, double elapsed, double active,
                        FILE *out);

//  Writes "readingId id" for every acknowledged reading to path. Failures
//  are said on stderr and do not fail the run.
void load_report_write_ids (load_report_t *self, const load_run_t *run, const char *path);

//  Checks PostgreSQL at conninfo and prints the "verify:" lines. 0 when it
//  holds exactly what was acknowledged, else -1.
int load_report_verify (load_report_t *self, const load_run_t *run, const char *conninfo,
                        FILE *out);

//  Prints the RESULT line.
void load_report_print_result (load_report_t *self, double active, FILE *out);

void load_report_test (bool verbose);

#endif
