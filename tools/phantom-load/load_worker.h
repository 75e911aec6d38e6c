/*  =========================================================================
    load_worker - one worker thread: its own epoll and its connections, one
    request in flight per connection (like wrk)

    The thread scans its connections for due requests and deadlines, waits
    on epoll with the earliest of them as its bound, and keeps what it
    learnt (latency, each reading's outcome, the acknowledged and the
    unknown readingIds) until the run merges them. The struct is public:
    its connections update it on every answer.
    =========================================================================
*/
#ifndef LOAD_WORKER_H_INCLUDED
#define LOAD_WORKER_H_INCLUDED

#include "load_conn.h"
#include "load_histogram.h"
#include "load_http.h"
#include "load_run.h"

#include <stdbool.h>
#include <stdint.h>

//  A reading the gateway acknowledged: its readingId's sequence number and
//  the id it was stored under.
typedef struct {
    int64_t seq;
    int64_t id;
} load_ack_t;

//  A growing array of fixed-size items.
typedef struct {
    void *items;
    size_t count;
    size_t capacity;
} load_vector_t;

struct _load_worker_t {
    load_run_t *run;
    int index;
    int epoll;
    load_conn_t *conns;
    int conn_count;
    uint64_t rng; //  xorshift state for the readings' values
    load_histogram_t *latency;
    uint64_t outcomes[OUT_COUNT]; //  final outcome per reading
    uint64_t requests;            //  responses received
    uint64_t retries;
    uint64_t reconnects;
    int64_t last_response_us; //  when the latest answer came
    load_vector_t acked;      //  load_ack_t
    load_vector_t unknown;    //  int64_t seq whose fate we do not know
    bool failed;              //  out of memory
};

//  Sets up self (an element of the run's array) with conn_count
//  connections. 0, or -1 if out of memory (load_worker_destroy still frees
//  what was made).
int load_worker_init (load_worker_t *self, load_run_t *run, int index, int conn_count);

//  Frees what load_worker_init made; the worker lives in the caller's array,
//  so self is not freed.
void load_worker_destroy (load_worker_t *self);

//  The thread: runs until the run stops and its requests are over.
void *load_worker_run (void *args);

//  The next xorshift value of the worker's generator.
uint64_t load_worker_random (load_worker_t *self);

//  Keeps an acknowledged reading. 0, or -1 if out of memory.
int load_worker_acked (load_worker_t *self, int64_t seq, int64_t id);

//  Keeps a reading whose fate is unknown. 0, or -1 if out of memory.
int load_worker_unknown (load_worker_t *self, int64_t seq);

void load_worker_test (bool verbose);

#endif
