/*  =========================================================================
    load_report - the run's results, merged, printed, written and verified
    =========================================================================
*/
#include "load_report.h"
#include "load_verify.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

load_report_t *
load_report_new (const load_worker_t *workers, int count)
{
    load_report_t *self = (load_report_t *)calloc (1, sizeof (load_report_t));
    if (!self)
        return NULL;
    self->latency = load_histogram_new ();
    for (int index = 0; index < count; index++) {
        const load_worker_t *worker = &workers[index];
        if (self->latency && worker->latency)
            load_histogram_merge (self->latency, worker->latency);
        for (int outcome = 0; outcome < OUT_COUNT; outcome++)
            self->outcomes[outcome] += worker->outcomes[outcome];
        self->requests += worker->requests;
        self->retries += worker->retries;
        self->reconnects += worker->reconnects;
        self->acked_count += worker->acked.count;
        self->unknown_count += worker->unknown.count;
        self->failed |= worker->failed;
    }
    self->acked = (load_ack_t *)malloc ((self->acked_count + 1) * sizeof (load_ack_t));
    self->unknown = (int64_t *)malloc ((self->unknown_count + 1) * sizeof (int64_t));
    if (!self->latency || !self->acked || !self->unknown) {
        load_report_destroy (&self);
        return NULL;
    }
    size_t acked_at = 0, unknown_at = 0;
    for (int index = 0; index < count; index++) {
        const load_worker_t *worker = &workers[index];
        if (worker->acked.count)
            memcpy (self->acked + acked_at, worker->acked.items,
                    worker->acked.count * sizeof (load_ack_t));
        if (worker->unknown.count)
            memcpy (self->unknown + unknown_at, worker->unknown.items,
                    worker->unknown.count * sizeof (int64_t));
        acked_at += worker->acked.count;
        unknown_at += worker->unknown.count;
    }
    load_verify_sort (self->acked, self->acked_count, self->unknown, self->unknown_count);
    return self;
}

void
load_report_destroy (load_report_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        load_report_t *self = *self_p;
        load_histogram_destroy (&self->latency);
        free (self->acked);
        free (self->unknown);
        free (self);
        *self_p = NULL;
    }
}

static uint64_t
s_readings (load_report_t *self)
{
    uint64_t readings = 0;
    for (int outcome = 0; outcome < OUT_COUNT; outcome++)
        readings += self->outcomes[outcome];
    return readings;
}

void
load_report_print (load_report_t *self, const load_run_t *run, double elapsed, double active,
                   FILE *out)
{
    load_histogram_t *latency = self->latency;
    double rps = (double)self->outcomes[OUT_201] / active;
    fprintf (out, "run %s: %.2fs (last answer at %.2fs), %d connections, %d threads, batch %d\n",
             run->run, elapsed, active, run->connections, run->threads, run->batch);
    fprintf (out,
             "requests %" PRIu64 ", readings sent %" PRIu64 ", acknowledged %" PRIu64
             ", %.1f readings/s, retries %" PRIu64 ", reconnects %" PRIu64 "\n",
             self->requests, s_readings (self), self->outcomes[OUT_201], rps, self->retries,
             self->reconnects);
    fprintf (out, "latency ms: p50 %.3f  p90 %.3f  p99 %.3f  max %.3f\n",
             load_histogram_percentile (latency, 50) / 1000.0,
             load_histogram_percentile (latency, 90) / 1000.0,
             load_histogram_percentile (latency, 99) / 1000.0, latency->max / 1000.0);
    fprintf (out, "readings by outcome:");
    for (int outcome = 0; outcome < OUT_COUNT; outcome++)
        fprintf (out, " %s=%" PRIu64, load_http_outcome_name (outcome), self->outcomes[outcome]);
    fprintf (out, "\n");
}

void
load_report_write_ids (load_report_t *self, const load_run_t *run, const char *path)
{
    FILE *file = fopen (path, "w");
    if (!file) {
        fprintf (stderr, "phantom-load: cannot write %s: %s\n", path, strerror (errno));
        return;
    }
    for (size_t index = 0; index < self->acked_count; index++)
        fprintf (file, "%s-%" PRId64 " %" PRId64 "\n", run->run, self->acked[index].seq,
                 self->acked[index].id);
    if (fclose (file) != 0)
        fprintf (stderr, "phantom-load: error writing %s\n", path);
}

int
load_report_verify (load_report_t *self, const load_run_t *run, const char *conninfo, FILE *out)
{
    load_verify_t verify;
    if (load_verify_run (conninfo, run->run, self->acked, self->acked_count, self->unknown,
                         self->unknown_count, LOAD_VERIFY_PATIENCE_MS, &verify) != 0)
        return -1;
    fprintf (out,
             "verify: stored %" PRId64 ", acknowledged %zu, lost %" PRId64 ", extra %" PRId64
             " (fate unknown: allowed), unexpected %" PRId64 ", duplicates %" PRId64 "\n",
             verify.stored, self->acked_count, verify.lost, verify.extra, verify.unexpected,
             verify.duplicates);
    self->verified = true;
    self->lost = verify.lost;
    if (verify.lost || verify.unexpected || verify.duplicates) {
        fprintf (out, "verify: FAILED\n");
        return -1;
    }
    return 0;
}

void
load_report_print_result (load_report_t *self, double active, FILE *out)
{
    char lost_text[32] = "";
    if (self->verified)
        snprintf (lost_text, sizeof lost_text, " lost=%" PRId64, self->lost);
    uint64_t readings = s_readings (self);
    fprintf (out,
             "RESULT readings=%" PRIu64 " rps=%.1f p50_ms=%.3f p99_ms=%.3f errors=%" PRIu64
             " acked=%" PRIu64 "%s\n",
             readings, (double)self->outcomes[OUT_201] / active,
             load_histogram_percentile (self->latency, 50) / 1000.0,
             load_histogram_percentile (self->latency, 99) / 1000.0,
             readings - self->outcomes[OUT_201], self->outcomes[OUT_201], lost_text);
}

void
load_report_test (bool verbose)
{
    if (verbose)
        printf (" * load_report: ");
    load_run_t *run = (load_run_t *)calloc (1, sizeof (load_run_t));
    assert (run);
    snprintf (run->run, sizeof run->run, "00000000000000ef");
    run->connections = 2;
    run->threads = 2;
    run->batch = 1;
    run->acked = 0;

    //  Two workers' results merge; acknowledged readings come out by seq.
    load_worker_t workers[2];
    memset (workers, 0, sizeof workers);
    for (int index = 0; index < 2; index++) {
        workers[index].run = run;
        workers[index].epoll = -1;
        workers[index].latency = load_histogram_new ();
        assert (workers[index].latency);
        load_histogram_record (workers[index].latency, 1000 * (uint64_t)(index + 1));
        workers[index].requests = 2;
        workers[index].retries = (uint64_t)index;
    }
    workers[0].outcomes[OUT_201] = 2;
    workers[1].outcomes[OUT_201] = 1;
    workers[1].outcomes[OUT_TIMEOUT] = 1;
    assert (load_worker_acked (&workers[0], 3, 30) == 0);
    assert (load_worker_acked (&workers[0], 1, 10) == 0);
    assert (load_worker_acked (&workers[1], 2, 20) == 0);
    assert (load_worker_unknown (&workers[1], 4) == 0);
    load_report_t *report = load_report_new (workers, 2);
    assert (report);
    assert (report->requests == 4 && report->retries == 1 && report->latency->total == 2);
    assert (report->acked_count == 3 && report->unknown_count == 1);
    assert (report->acked[0].seq == 1 && report->acked[2].id == 30);

    //  The lines the benchmark and fault scripts parse, exactly.
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream (&text, &size);
    assert (out);
    load_report_print (report, run, 2.5, 2.0, out);
    load_report_print_result (report, 2.0, out);
    report->verified = true;
    report->lost = 0;
    load_report_print_result (report, 2.0, out);
    fclose (out);
    const char *expected =
        "run 00000000000000ef: 2.50s (last answer at 2.00s), 2 connections, 2 threads, batch 1\n"
        "requests 4, readings sent 4, acknowledged 3, 1.5 readings/s, retries 1, reconnects 0\n"
        "latency ms: p50 1.000  p90 2.000  p99 2.000  max 2.000\n"
        "readings by outcome: 201=3 400=0 401=0 404=0 413=0 429=0 503=0 504=0 other=0 "
        "conn_errors=0 timeouts=1\n"
        "RESULT readings=4 rps=1.5 p50_ms=1.000 p99_ms=2.000 errors=1 acked=3\n"
        "RESULT readings=4 rps=1.5 p50_ms=1.000 p99_ms=2.000 errors=1 acked=3 lost=0\n";
    if (strcmp (text, expected) != 0)
        fprintf (stderr, "load_report: got\n%s", text);
    assert (strcmp (text, expected) == 0);
    free (text);

    //  --ids: one "readingId id" line per acknowledged reading, by seq.
    char path[] = "/tmp/load_report_test.XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    close (fd);
    load_report_write_ids (report, run, path);
    FILE *ids = fopen (path, "r");
    assert (ids);
    char ids_text[256] = "";
    size_t read = fread (ids_text, 1, sizeof ids_text - 1, ids);
    fclose (ids);
    unlink (path);
    assert (read > 0);
    assert (strcmp (ids_text, "00000000000000ef-1 10\n00000000000000ef-2 20\n"
                              "00000000000000ef-3 30\n") == 0);

    load_report_destroy (&report);
    load_report_destroy (&report);
    assert (report == NULL);
    for (int index = 0; index < 2; index++)
        load_worker_destroy (&workers[index]);
    free (run);
    if (verbose)
        printf ("OK\n");
}
