/*  =========================================================================
    store_server - the store's sockets and group-commit loop

    Store: PULL verdicts from every detector (binds verdict_endpoint), PUB
    acks to gateways (binds ack_endpoint) as [ack.<gateway>][acks], sent
    only after the transaction that stored them committed.

    The calling thread receives and decodes verdicts and hands each to a
    lane: lane = proto_partition (port, writers), so every verdict of a
    port goes to the same lane, in arrival order. Each lane is a writer
    (its own PostgreSQL connection) on its own thread with its own batch:
    with two lanes, one transaction commits while the other is written.
    Acks of a batch go out after its own commit. Lanes never write the same
    port rows or episodes, and a retried reading (same port) meets its key
    in the same lane, so they need no coordination; a readingId reused
    across ports of two lanes is still stored once (the second lane's key
    insert waits for the first's commit, then finds the key).

    Group commit is natural: a lane writes whatever is queued the moment
    it is free; batch_max bounds a transaction, and batch_ms only bounds
    how long the receiving thread collects before handing over while
    frames keep arriving. A lone verdict is written at once.
    =========================================================================
*/
#ifndef STORE_SERVER_H_INCLUDED
#define STORE_SERVER_H_INCLUDED

#include "store_maintenance.h"
#include "store_writer.h"

typedef struct _store_server_t store_server_t;

//  Binds both endpoints ("tcp://127.0.0.1:*" picks a free port) and takes
//  the writer. NULL if an endpoint cannot be bound or out of memory.
store_server_t *store_server_new (const char *verdict_endpoint, const char *ack_endpoint,
                                  store_writer_t **writer_p, size_t batch_max, int batch_ms,
                                  bool verbose);
void store_server_destroy (store_server_t **self_p);

//  Adds a lane with its own writer (taken); before the first step only.
//  The first writer (store_server_new's) does the housekeeping (partitions,
//  pruning). 0, or -1 (started, too many, out of memory).
int store_server_add_writer (store_server_t *self, store_writer_t **writer_p);
size_t store_server_writers (store_server_t *self);

//  Before the first step: the lanes keep their ports' minute rollups for
//  it, and mark the readings that change minutes it has already rolled up
//  (late readings) in rollup_marks, in the transaction of the readings
//  (see store_maintenance.h). Borrowed: it must outlive the server.
//  Without it, nothing is marked.
void store_server_set_maintenance (store_server_t *self, store_maintenance_t *maintenance);

//  Endpoints actually bound (with the port chosen for "*"); borrowed.
const char *store_server_verdict_endpoint (store_server_t *self);
const char *store_server_ack_endpoint (store_server_t *self);

//  Starts the lanes on the first call. Waits up to timeout_ms for a
//  verdict, then drains the socket into the lanes (their threads write and
//  ack). Returns the number of verdicts received (0 on timeout), -1 if
//  interrupted. Destroy writes what the lanes hold, then stops them.
int store_server_step (store_server_t *self, int timeout_ms);

//  Totals since start, for logs and tests.
uint64_t store_server_verdicts (store_server_t *self);
uint64_t store_server_malformed (store_server_t *self);
//  Group commits written by all lanes (another thread may read it).
uint64_t store_server_batches (store_server_t *self);
//  Small batches written in turn (see S_SMALL_BATCH), and in *overlaps
//  how many of them found another lane's small batch being written (0).
uint64_t store_server_turns (store_server_t *self, uint64_t *overlaps);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_server_test (bool verbose);

#endif
