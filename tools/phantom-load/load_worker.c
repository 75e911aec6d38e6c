/*  =========================================================================
    load_worker - one worker thread: its own epoll and its connections
    =========================================================================
*/
#include "load_worker.h"

#include <assert.h>
#include <czmq.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <unistd.h>

static int
s_vector_push (load_vector_t *self, const void *item, size_t item_size)
{
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 1024;
        void *items = realloc (self->items, capacity * item_size);
        if (!items)
            return -1;
        self->items = items;
        self->capacity = capacity;
    }
    memcpy ((char *)self->items + self->count * item_size, item, item_size);
    self->count++;
    return 0;
}

uint64_t
load_worker_random (load_worker_t *self)
{
    uint64_t x = self->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    self->rng = x;
    return x;
}

int
load_worker_acked (load_worker_t *self, int64_t seq, int64_t id)
{
    load_ack_t ack = {seq, id};
    atomic_fetch_add_explicit (&self->run->acked, 1, memory_order_relaxed);
    return s_vector_push (&self->acked, &ack, sizeof ack);
}

int
load_worker_unknown (load_worker_t *self, int64_t seq)
{
    return s_vector_push (&self->unknown, &seq, sizeof seq);
}

void *
load_worker_run (void *args)
{
    load_worker_t *self = (load_worker_t *)args;
    load_run_t *run = self->run;
    struct epoll_event events[256];
    int64_t last_scan = 0;
    int64_t wake = 0; //  earliest deadline or due time seen

    int64_t start = zclock_usecs ();
    for (int index = 0; index < self->conn_count; index++) {
        load_conn_t *conn = &self->conns[index];
        //  Stagger paced connections across one interval so they do not fire together.
        conn->next_us =
            start + (conn->interval_us > 0 ? conn->interval_us * index / self->conn_count : 0);
    }
    while (true) {
        int64_t now = zclock_usecs ();
        int64_t abort_at = atomic_load (&run->abort_at_us);
        bool aborting = abort_at > 0 && now >= abort_at;

        //  Scan for due requests and deadlines when one is due, and at
        //  least every 50 ms to see the stop flags.
        if (now >= wake || now - last_scan >= 50000 || aborting) {
            bool busy = false;
            last_scan = now;
            wake = now + 50000;
            for (int index = 0; index < self->conn_count; index++) {
                load_conn_t *conn = &self->conns[index];
                if (conn->state == CONN_CONNECTING || conn->state == CONN_SENDING ||
                    conn->state == CONN_READING) {
                    if (aborting || now >= conn->deadline_us)
                        load_conn_fail (conn, OUT_TIMEOUT, now);
                }
                if (conn->state == CONN_BACKOFF && (aborting || now >= conn->next_us)) {
                    if (aborting)
                        load_conn_finish (conn, now);
                    else
                        load_conn_attempt (conn, now);
                }
                if (conn->state == CONN_IDLE && now >= conn->next_us)
                    load_conn_start (conn, now);
                if (conn->state != CONN_IDLE)
                    busy = true;
                int64_t due = load_conn_due (conn);
                if (due < wake)
                    wake = due;
            }
            if (!busy && atomic_load (&run->stop))
                break;
        }
        int timeout_ms = wake > now ? (int)((wake - now + 999) / 1000) : 0;
        int ready = epoll_wait (self->epoll, events, 256, timeout_ms);
        now = zclock_usecs ();
        for (int index = 0; index < ready; index++) {
            load_conn_t *conn = (load_conn_t *)events[index].data.ptr;
            load_conn_event (conn, events[index].events, now);
            //  The next request goes at once when due, without waiting for a scan.
            if (conn->state == CONN_IDLE && now >= conn->next_us)
                load_conn_start (conn, now);
            int64_t due = load_conn_due (conn);
            if (due < wake)
                wake = due;
        }
    }
    for (int index = 0; index < self->conn_count; index++)
        load_conn_close (&self->conns[index]);
    atomic_fetch_sub (&run->running, 1);
    return NULL;
}

void
load_worker_destroy (load_worker_t *self)
{
    if (!self->run)
        return; //  never initialised
    for (int index = 0; self->conns && index < self->conn_count; index++)
        load_conn_destroy (&self->conns[index]);
    free (self->conns);
    load_histogram_destroy (&self->latency);
    free (self->acked.items);
    free (self->unknown.items);
    if (self->epoll >= 0)
        close (self->epoll);
}

int
load_worker_init (load_worker_t *self, load_run_t *run, int index, int conn_count)
{
    memset (self, 0, sizeof *self);
    self->run = run;
    self->index = index;
    self->epoll = epoll_create1 (EPOLL_CLOEXEC);
    self->conn_count = conn_count;
    self->conns = (load_conn_t *)calloc ((size_t)conn_count, sizeof (load_conn_t));
    self->latency = load_histogram_new ();
    if (getrandom (&self->rng, sizeof self->rng, 0) != sizeof self->rng || self->rng == 0)
        self->rng = 0x9e3779b97f4a7c15ULL + (uint64_t)index;
    if (self->conns)
        for (int at = 0; at < conn_count; at++)
            self->conns[at].fd = -1;
    if (self->epoll < 0 || !self->conns || !self->latency)
        return -1;
    //  Per-connection pacing: the rate split evenly, each connection's
    //  requests spaced by batch / (rate / connections).
    int64_t interval =
        run->rate > 0 ? (int64_t)(1e6 * run->batch * run->connections / run->rate) : 0;
    if (run->rate > 0 && interval < 1)
        interval = 1;
    for (int at = 0; at < conn_count; at++) {
        load_conn_t *conn = &self->conns[at];
        conn->worker = self;
        conn->fd = -1;
        conn->interval_us = interval;
        conn->outcomes = (int8_t *)calloc ((size_t)run->batch, sizeof (int8_t));
        conn->ids = (int64_t *)calloc ((size_t)run->batch, sizeof (int64_t));
        conn->statuses = (int *)calloc ((size_t)run->batch, sizeof (int));
        if (!conn->outcomes || !conn->ids || !conn->statuses)
            return -1;
    }
    return 0;
}

void
load_worker_test (bool verbose)
{
    if (verbose)
        printf (" * load_worker: ");
    load_run_t *run = (load_run_t *)calloc (1, sizeof (load_run_t));
    assert (run);
    run->batch = 3;
    run->connections = 4;
    run->rate = 600; //  200 requests/s over 4 connections: one each 20 ms
    load_worker_t worker;
    assert (load_worker_init (&worker, run, 0, 4) == 0);
    assert (worker.conn_count == 4 && worker.conns[3].fd == -1);
    assert (worker.conns[0].interval_us == 20000);
    assert (worker.rng != 0);
    uint64_t first = load_worker_random (&worker);
    assert (load_worker_random (&worker) != first);
    //  Kept readings grow past the first allocation.
    for (int64_t seq = 0; seq < 3000; seq++)
        assert (load_worker_acked (&worker, seq, seq + 100) == 0);
    assert (load_worker_unknown (&worker, 42) == 0);
    assert (worker.acked.count == 3000 && atomic_load (&run->acked) == 3000);
    assert (((load_ack_t *)worker.acked.items)[2999].id == 3099);
    assert (worker.unknown.count == 1 && ((int64_t *)worker.unknown.items)[0] == 42);

    //  A stopped run with nothing in flight: the thread ends at its first scan.
    atomic_store (&run->stop, true);
    atomic_store (&run->running, 1);
    assert (load_worker_run (&worker) == NULL);
    assert (atomic_load (&run->running) == 0);
    assert (worker.requests == 0);
    load_worker_destroy (&worker);
    free (run);
    if (verbose)
        printf ("OK\n");
}
