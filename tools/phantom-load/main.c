/*  =========================================================================
    phantom-load - load generator for PhantomWatch's sensor endpoint

    N keep-alive HTTP/1.1 connections spread over T threads, each thread with
    its own epoll and its own connections, one request in flight per
    connection (like wrk). Every reading carries readingId "<run>-<seq>", so
    --verify can check that PostgreSQL holds exactly what was acknowledged,
    and --retry can resend a reading without storing it twice.

    Usage: phantom-load -f CREDENTIALS [-u URL] [-c CONNS] [-t THREADS]
               [-d SECONDS | -n READINGS] [-r RATE] [-b BATCH] [-T TIMEOUT_MS]
               [--retry] [--ids FILE] [--verify CONNINFO] [-v]
           phantom-load --selftest [CLASS]

    Exit: 0 done (and verified), 1 verification failed, 2 bad usage or a
    failure to start.
    =========================================================================
*/
#include "load_answer.h"
#include "load_conn.h"
#include "load_histogram.h"
#include "load_http.h"
#include "load_report.h"
#include "load_run.h"
#include "load_verify.h"
#include "load_worker.h"
#include "proto_selftest.h"

#include <czmq.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const proto_selftest_t s_tests[] = {
    {"load_histogram", load_histogram_test, false}, {"load_http", load_http_test, false},
    {"load_answer", load_answer_test, false},       {"load_run", load_run_test, false},
    {"load_conn", load_conn_test, false},           {"load_worker", load_worker_test, false},
    {"load_verify", load_verify_test, false},       {"load_report", load_report_test, false},
};

//  Runs every class test, or the one named, always verbose; 1 if there is
//  no such class.
static int
s_selftest (const char *only)
{
    char verbose[] = "-v";
    char *args[] = {verbose, (char *)only};
    return proto_selftest_run ("phantom-load", s_tests, sizeof s_tests / sizeof s_tests[0],
                               only ? 2 : 1, args);
}

//  Signal handlers only count; the watch loop below acts.
static volatile sig_atomic_t s_interrupts = 0;

static void
s_signal_handler (int signal_value)
{
    (void)signal_value;
    s_interrupts++;
}

//  Watches the clock and the signals while the workers do the work: stops
//  issuing at the end of the run (or the first ^C), lets requests in flight
//  finish within a bound (a second ^C ends them now), and with -v prints a
//  progress line every second. Returns when every worker has ended; sets
//  *stopped_at to when issuing stopped.
static void
s_watch (load_run_t *run, int64_t start, int64_t *stopped_at)
{
    int64_t last_report = start;
    long long last_acked = 0, last_requests = 0;
    int interrupts_seen = 0;
    while (atomic_load (&run->running) > 0) {
        struct timespec tick = {0, 20 * 1000 * 1000};
        nanosleep (&tick, NULL);
        int64_t now = zclock_usecs ();
        if (!*stopped_at && (s_interrupts > 0 || now - start >= (int64_t)(run->duration_s * 1e6) ||
                             atomic_load (&run->stop))) {
            *stopped_at = now;
            atomic_store (&run->stop, true);
            int64_t drain =
                run->timeout_us + (run->retry ? 2 * LOAD_CONN_BACKOFF_CAP_US + run->timeout_us : 0);
            atomic_store (&run->abort_at_us, now + drain);
            interrupts_seen = s_interrupts;
        }
        if (*stopped_at && s_interrupts > interrupts_seen)
            atomic_store (&run->abort_at_us, now); //  a second ^C: stop now
        if (run->verbose && now - last_report >= 1000000) {
            long long acked = atomic_load (&run->acked), requests = atomic_load (&run->requests);
            double seconds = (double)(now - last_report) / 1e6;
            fprintf (stderr, "phantom-load: %5.1fs requests=%lld acked=%lld rps=%.0f req/s=%.0f\n",
                     (double)(now - start) / 1e6, requests, acked,
                     (double)(acked - last_acked) / seconds,
                     (double)(requests - last_requests) / seconds);
            last_report = now;
            last_acked = acked;
            last_requests = requests;
        }
    }
}

int
main (int argc, char *argv[])
{
    static load_run_t run; //  large and shared by threads: not on the stack
    int selftest_at = argc;
    switch (load_run_configure (&run, argc, argv, &selftest_at)) {
    case LOAD_RUN_SELFTEST:
        return s_selftest (selftest_at < argc ? argv[selftest_at] : NULL);
    case LOAD_RUN_HELP:
        return 0;
    case LOAD_RUN_BAD:
        return 2;
    case LOAD_RUN_GO:
        break;
    }
    struct sigaction action = {.sa_handler = s_signal_handler};
    sigemptyset (&action.sa_mask);
    sigaction (SIGINT, &action, NULL);
    sigaction (SIGTERM, &action, NULL);
    signal (SIGPIPE, SIG_IGN);

    load_worker_t *workers = (load_worker_t *)calloc ((size_t)run.threads, sizeof (load_worker_t));
    pthread_t *threads = (pthread_t *)calloc ((size_t)run.threads, sizeof (pthread_t));
    int started = 0;
    int rc = 0;
    if (!workers || !threads)
        rc = 2;
    for (int index = 0; index < run.threads && rc == 0; index++) {
        int share = run.connections / run.threads + (index < run.connections % run.threads);
        if (load_worker_init (&workers[index], &run, index, share)) {
            fprintf (stderr, "phantom-load: out of memory\n");
            rc = 2;
        }
    }
    fprintf (stderr, "phantom-load: run %s, %s, %d connections, %d threads, batch %d, %s\n",
             run.run, run.url, run.connections, run.threads, run.batch,
             run.rate > 0 ? "paced" : "flat out");
    atomic_store (&run.running, run.threads);
    int64_t start = zclock_usecs ();
    for (int index = 0; index < run.threads && rc == 0; index++) {
        if (pthread_create (&threads[index], NULL, load_worker_run, &workers[index]) != 0) {
            fprintf (stderr, "phantom-load: cannot start thread\n");
            atomic_store (&run.stop, true);
            atomic_store (&run.abort_at_us, zclock_usecs ());
            atomic_fetch_sub (&run.running, run.threads - index);
            rc = 2;
            break;
        }
        started++;
    }
    int64_t stopped_at = 0;
    s_watch (&run, start, &stopped_at);
    for (int index = 0; index < started; index++)
        pthread_join (threads[index], NULL);
    double elapsed = (double)(zclock_usecs () - start) / 1e6;
    //  Throughput runs to the last answer or the stop, whichever is later:
    //  that counts draining the last requests of a -n run, but not waiting
    //  out requests that time out after the stop.
    int64_t last_response = start;
    for (int index = 0; index < run.threads && workers; index++)
        if (workers[index].last_response_us > last_response)
            last_response = workers[index].last_response_us;
    if (stopped_at > last_response)
        last_response = stopped_at; //  all timed out: the run still lasted
    double active = (double)(last_response - start) / 1e6;
    if (active <= 0)
        active = elapsed > 0 ? elapsed : 1e-9;

    load_report_t *report = workers ? load_report_new (workers, run.threads) : NULL;
    if (!report) {
        fprintf (stderr, "phantom-load: out of memory\n");
        rc = 2;
    }
    if (report && report->failed)
        fprintf (stderr,
                 "phantom-load: WARNING out of memory during the run; counts are incomplete\n");
    if (report)
        load_report_print (report, &run, elapsed, active, stdout);
    if (rc == 0 && run.ids_path)
        load_report_write_ids (report, &run, run.ids_path);
    if (rc == 0 && run.verify && load_report_verify (report, &run, run.verify, stdout) != 0)
        rc = 1;
    if (report)
        load_report_print_result (report, active, stdout);
    fflush (stdout);

    load_report_destroy (&report);
    for (int index = 0; index < run.threads && workers; index++)
        load_worker_destroy (&workers[index]);
    free (workers);
    free (threads);
    load_run_release (&run);
    return rc;
}
