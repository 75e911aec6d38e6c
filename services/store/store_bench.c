/*  =========================================================================
    store_bench - readings per second through the store alone

    store_bench [-n VERDICTS] [-p PORTS] [-b BATCH_MAX]
                [-d CONNINFO] [-W WRITERS] [-e PORT] [-P PID] [-k] [-l] [-v] [-w]

    Runs a store server (writer + sockets) in a thread on
    tcp://127.0.0.1:PORT/PORT+1 (-e, default 6401), PUSHes verdicts for PORTS ports of a fresh
    fixture and times until every ack has come back on the SUB side. The
    database is -d or PHANTOM_TEST_DATABASE; the fixture's rows are deleted
    afterwards. -w times the writer alone: batches built in-process, no
    sockets, no decoding. -W: writer connections (lanes) of the server,
    default 2. -l: latency, one verdict at a time (p50/p90/p99). -k gives every reading a readingId
   (as phantom-load does), so reading_keys is written too. -P: the postmaster's pid (line 1 of
   postmaster.pid); the CPU time its processes used during the timed part (from /proc: the live
   ones' utime + stime, the exited ones' through the postmaster's cutime + cstime) is printed per
   reading. Run it as the postgres user or root.
    =========================================================================
*/
#include <czmq.h>
#include <dirent.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store_fixture.h"
#include "store_server.h"

static char s_verdicts[64] = "tcp://127.0.0.1:6401";
static char s_acks[64] = "tcp://127.0.0.1:6402";
static int s_postmaster = 0; //  -P: pid whose processes' CPU is counted

//  CPU seconds used so far by the postmaster, its exited children (reaped:
//  cutime + cstime) and its live children; -1 without -P or /proc.
static double
s_pg_cpu (void)
{
    if (s_postmaster <= 0)
        return -1;
    long ticks = sysconf (_SC_CLK_TCK);
    double total = 0;
    bool found = false;
    DIR *proc = opendir ("/proc");
    struct dirent *entry;
    while (proc && (entry = readdir (proc))) {
        if (entry->d_name[0] < '0' || entry->d_name[0] > '9')
            continue;
        char path[300], text[1024];
        snprintf (path, sizeof (path), "/proc/%s/stat", entry->d_name);
        FILE *file = fopen (path, "r");
        if (!file)
            continue;
        size_t size = fread (text, 1, sizeof (text) - 1, file);
        fclose (file);
        text[size] = 0;
        //  Fields after the command, which may hold spaces: state (3), ppid
        //  (4) .. utime (14), stime, cutime, cstime (17).
        char *after = strrchr (text, ')');
        int pid = atoi (entry->d_name), ppid;
        unsigned long long utime, stime, cutime, cstime;
        if (!after ||
            sscanf (after + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %llu %llu",
                    &ppid, &utime, &stime, &cutime, &cstime) != 5)
            continue;
        if (pid == s_postmaster) {
            total += (double)(utime + stime + cutime + cstime);
            found = true;
        } else if (ppid == s_postmaster)
            total += (double)(utime + stime);
    }
    if (proc)
        closedir (proc);
    return found ? total / (double)ticks : -1;
}

//  CPU seconds a process has run so far (schedstat: nanoseconds), -1 if gone.
static double
s_process_cpu (int pid)
{
    char path[64];
    snprintf (path, sizeof (path), "/proc/%d/schedstat", pid);
    FILE *file = fopen (path, "r");
    unsigned long long ns = 0;
    int found = file ? fscanf (file, "%llu", &ns) : 0;
    if (file)
        fclose (file);
    return found == 1 ? (double)ns / 1e9 : -1;
}

//  Prints the PostgreSQL CPU of a timed part, if counted.
static void
s_pg_report (double before, size_t readings, uint64_t transactions)
{
    double after = s_pg_cpu ();
    if (before < 0 || after < 0 || readings == 0)
        return;
    printf ("store_bench: postgres CPU %.2f s = %.2f us/reading", after - before,
            (after - before) * 1e6 / (double)readings);
    if (transactions)
        printf (", %.0f us/transaction (%" PRIu64 ")",
                (after - before) * 1e6 / (double)transactions, transactions);
    printf ("\n");
}

typedef struct {
    const char *database;
    size_t batch_max;
    volatile int stop;
    volatile int ready; //  1 bound, -1 failed
    bool verbose;
    bool direct;            //  -w: writer only, no sockets
    size_t writers;         //  -W: lanes
    store_server_t *server; //  for its batch count
} s_args_t;

static bool s_latency = false; //  -l: one at a time, percentiles

static int
s_compare (const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool s_keyed = false; //  -k: readingIds
static char s_run[24];       //  prefix of this run's readingIds

//  readingId of verdict index: unique per run, like phantom-load's.
static const char *
s_key (size_t index, char *key, size_t size)
{
    if (!s_keyed)
        return "";
    snprintf (key, size, "%s-%zu", s_run, index);
    return key;
}

static void *
s_store (void *arg)
{
    s_args_t *args = (s_args_t *)arg;
    store_writer_t *writer = store_writer_new (args->database, args->verbose);
    store_server_t *server =
        store_server_new (s_verdicts, s_acks, &writer, args->batch_max, 2, args->verbose);
    for (size_t lane = 1; server && lane < args->writers; lane++) {
        writer = store_writer_new (args->database, args->verbose);
        store_server_add_writer (server, &writer);
        store_writer_destroy (&writer);
    }
    args->server = server;
    args->ready = server ? 1 : -1;
    while (server && !args->stop)
        store_server_step (server, 100);
    store_server_destroy (&server);
    return NULL;
}

static void
s_send (zsock_t *push, const proto_verdict_t *verdict, proto_buffer_t *buffer)
{
    if (proto_verdict_encode (verdict, buffer) == 0)
        zmq_send (zsock_resolve (push), buffer->data, buffer->size, 0);
}

//  Receives ack messages for up to timeout_ms; counts acks by code.
static size_t
s_receive (zsock_t *sub, size_t *ok, int timeout_ms)
{
    static proto_ack_t acks[PROTO_ACKS_MAX];
    size_t total = 0;
    zmq_pollitem_t item = {zsock_resolve (sub), 0, ZMQ_POLLIN, 0};
    while (zmq_poll (&item, 1, timeout_ms) == 1) {
        zmsg_t *message = zmsg_recv (sub);
        if (!message)
            break;
        zframe_t *topic = zmsg_pop (message);
        zframe_t *body = zmsg_pop (message);
        size_t count = 0;
        if (body && proto_acks_decode (zframe_data (body), zframe_size (body), acks, PROTO_ACKS_MAX,
                                       &count) == 0) {
            total += count;
            for (size_t index = 0; index < count; index++)
                if (acks[index].code == PROTO_ACK_OK)
                    (*ok)++;
        }
        zframe_destroy (&topic);
        zframe_destroy (&body);
        zmsg_destroy (&message);
        timeout_ms = 0;
    }
    return total;
}

int
main (int argc, char *argv[])
{
    size_t verdicts = 200000;
    size_t ports = 1000;
    s_args_t args = {getenv ("PHANTOM_TEST_DATABASE"), 1000, 0, 0, false, false, 2, NULL};
    int option;
    while ((option = getopt (argc, argv, "n:p:b:d:W:e:P:klvw")) != -1) {
        if (option == 'v')
            args.verbose = true;
        else if (option == 'w')
            args.direct = true;
        else if (option == 'k')
            s_keyed = true;
        else if (option == 'l')
            s_latency = true;
        else if (option == 'W')
            args.writers = strtoul (optarg, NULL, 10);
        else if (option == 'e') {
            int port = atoi (optarg);
            snprintf (s_verdicts, sizeof (s_verdicts), "tcp://127.0.0.1:%d", port);
            snprintf (s_acks, sizeof (s_acks), "tcp://127.0.0.1:%d", port + 1);
        } else if (option == 'P')
            s_postmaster = atoi (optarg);
        else if (option == 'n')
            verdicts = strtoul (optarg, NULL, 10);
        else if (option == 'p')
            ports = strtoul (optarg, NULL, 10);
        else if (option == 'b')
            args.batch_max = strtoul (optarg, NULL, 10);
        else if (option == 'd')
            args.database = optarg;
        else {
            fprintf (stderr, "usage: store_bench [-n VERDICTS] [-p PORTS]"
                             " [-b BATCH_MAX] [-d CONNINFO] [-W WRITERS] [-e PORT] [-P PID]"
                             " [-k] [-l] [-v] [-w]\n");
            return 1;
        }
    }
    if (!args.database || ports < 1 || ports > STORE_FIXTURE_PORTS_MAX || args.batch_max < 1 ||
        args.batch_max > PROTO_ACKS_MAX || args.writers < 1 || args.writers > 8) {
        fprintf (stderr,
                 "store_bench: needs -d or PHANTOM_TEST_DATABASE, 1..%d ports,"
                 " batch 1..%d, 1..8 writers\n",
                 STORE_FIXTURE_PORTS_MAX, PROTO_ACKS_MAX);
        return 1;
    }
    snprintf (s_run, sizeof (s_run), "b%" PRIx64, (uint64_t)zclock_time ());
    char key[64];
    store_fixture_t *fixture = store_fixture_new (args.database, ports);
    if (args.direct) {
        store_writer_t *writer = store_writer_new (args.database, args.verbose);
        store_batch_t *batch = store_batch_new (args.batch_max);
        proto_verdict_t verdict;
        size_t ok = 0;
        int64_t base = zclock_time () - (int64_t)verdicts;
        uint64_t writes = 0;
        int backend = store_writer_backend (writer);
        double backend_cpu = s_process_cpu (backend);
        double cpu = s_pg_cpu ();
        int64_t started = zclock_usecs ();
        for (size_t index = 0; index < verdicts; writes++) {
            store_batch_reset (batch);
            for (; index < verdicts && store_batch_size (batch) < args.batch_max; index++) {
                store_fixture_verdict (
                    fixture, &verdict, "bench", index + 1, fixture->ports[index % ports],
                    s_key (index, key, sizeof (key)), base + (int64_t)index,
                    (double)(index % 50) + 0.25, PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
                store_batch_add (batch, &verdict);
            }
            store_writer_write (writer, batch);
            for (size_t row = 0; row < store_batch_size (batch); row++)
                ok += store_batch_ack (batch, row)->code == PROTO_ACK_OK;
        }
        double seconds = (double)(zclock_usecs () - started) / 1e6;
        printf ("store_bench: writer only, %zu verdicts over %zu ports, batch %zu:"
                " %zu OK in %.3f s = %.0f readings/s\n",
                verdicts, ports, args.batch_max, ok, seconds, (double)ok / seconds);
        s_pg_report (cpu, ok, writes);
        double backend_after = s_process_cpu (backend);
        if (s_postmaster > 0 && backend_cpu >= 0 && backend_after >= 0 && ok)
            printf ("store_bench: writer's backend CPU %.3f s = %.2f us/reading\n",
                    backend_after - backend_cpu, (backend_after - backend_cpu) * 1e6 / (double)ok);
        store_batch_destroy (&batch);
        store_writer_destroy (&writer);
        store_fixture_destroy (&fixture);
        zsys_shutdown ();
        return ok == verdicts ? 0 : 1;
    }
    pthread_t thread;
    pthread_create (&thread, NULL, s_store, &args);
    while (args.ready == 0)
        zclock_sleep (10);
    if (args.ready < 0) {
        pthread_join (thread, NULL);
        store_fixture_destroy (&fixture);
        return 1;
    }
    zsock_t *push = zsock_new (ZMQ_PUSH);
    zsock_set_sndhwm (push, 100000);
    zsock_set_sndtimeo (push, 5000);
    zsock_connect (push, "%s", s_verdicts);
    zsock_t *sub = zsock_new (ZMQ_SUB);
    zsock_set_rcvhwm (sub, 0);
    zsock_set_subscribe (sub, "ack.bench");
    zsock_connect (sub, "%s", s_acks);

    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    proto_verdict_t verdict;
    size_t ok = 0;
    //  Wait for the subscription with a keyed probe (stored once)
    snprintf (key, sizeof (key), "probe-%" PRId64, zclock_time ());
    store_fixture_verdict (fixture, &verdict, "bench", 0, fixture->ports[0], key, zclock_time (), 1,
                           PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    while (s_receive (sub, &ok, 100) == 0)
        s_send (push, &verdict, &buffer);
    zclock_sleep (200);
    s_receive (sub, &ok, 0);
    ok = 0;

    if (s_latency) {
        //  One verdict at a time, each sent when the last ack is back: the
        //  store's share of a lone reading's latency (sockets, decode,
        //  transaction, commit, ack).
        int64_t *times = (int64_t *)calloc (verdicts, sizeof (int64_t));
        int64_t base = zclock_time () - (int64_t)verdicts;
        size_t done = 0;
        double cpu = s_pg_cpu ();
        for (size_t index = 0; index < verdicts; index++) {
            store_fixture_verdict (fixture, &verdict, "bench", index + 1,
                                   fixture->ports[index % ports], s_key (index, key, sizeof (key)),
                                   base + (int64_t)index, 1.25, PROTO_STATUS_ACTIVE,
                                   PROTO_STATUS_ACTIVE);
            int64_t sent = zclock_usecs ();
            s_send (push, &verdict, &buffer);
            if (s_receive (sub, &ok, 2000) != 1)
                break;
            times[done++] = zclock_usecs () - sent;
        }
        qsort (times, done, sizeof (int64_t), s_compare);
        printf ("store_bench: latency, %zu writers, %zu verdicts one at a time over %zu ports:"
                " %zu OK, p50 %" PRId64 " us, p90 %" PRId64 " us, p99 %" PRId64 " us\n",
                args.writers, verdicts, ports, ok, done ? times[done / 2] : 0,
                done ? times[done * 9 / 10] : 0, done ? times[done * 99 / 100] : 0);
        s_pg_report (cpu, ok, done);
        free (times);
        args.stop = 1;
        pthread_join (thread, NULL);
        proto_buffer_release (&buffer);
        zsock_destroy (&push);
        zsock_destroy (&sub);
        store_fixture_destroy (&fixture);
        zsys_shutdown ();
        return ok == verdicts ? 0 : 1;
    }

    int64_t base = zclock_time () - (int64_t)verdicts;
    uint64_t batches = store_server_batches (args.server);
    double cpu = s_pg_cpu ();
    int64_t started = zclock_usecs ();
    size_t acked = 0;
    for (size_t index = 0; index < verdicts; index++) {
        store_fixture_verdict (fixture, &verdict, "bench", index + 1, fixture->ports[index % ports],
                               s_key (index, key, sizeof (key)), base + (int64_t)index,
                               (double)(index % 50) + 0.25, PROTO_STATUS_ACTIVE,
                               PROTO_STATUS_ACTIVE);
        s_send (push, &verdict, &buffer);
        if (index % 1000 == 999)
            acked += s_receive (sub, &ok, 0);
    }
    int64_t sent = zclock_usecs ();
    int64_t deadline = zclock_mono () + 60000;
    while (acked < verdicts && zclock_mono () < deadline)
        acked += s_receive (sub, &ok, 100);
    int64_t finished = zclock_usecs ();
    batches = store_server_batches (args.server) - batches;

    double seconds = (double)(finished - started) / 1e6;
    printf ("store_bench: %zu writers, %zu verdicts over %zu ports, batch_max %zu:"
            " %zu acked (%zu OK)"
            " in %.3f s = %.0f readings/s (sending took %.3f s, %" PRIu64 " batches,"
            " mean %.0f)\n",
            args.writers, verdicts, ports, args.batch_max, acked, ok, seconds, (double)ok / seconds,
            (double)(sent - started) / 1e6, batches,
            batches ? (double)acked / (double)batches : 0.0);
    s_pg_report (cpu, ok, batches);

    args.stop = 1;
    pthread_join (thread, NULL);
    proto_buffer_release (&buffer);
    zsock_destroy (&push);
    zsock_destroy (&sub);
    store_fixture_destroy (&fixture);
    zsys_shutdown ();
    return acked == verdicts && ok == verdicts ? 0 : 1;
}
