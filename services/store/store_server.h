/*  =========================================================================
    store_server - the store's sockets and group-commit loop

    Store: PULL verdicts from every detector (binds verdict_endpoint), PUB
    acks to gateways (binds ack_endpoint) as [ack.<gateway>][acks], sent
    only after the transaction that stored them committed.

    One step waits (bounded) for a first verdict, drains what follows up to
    batch_max verdicts or batch_ms after the first, writes them in one
    transaction and publishes the acks.
    =========================================================================
*/
#ifndef STORE_SERVER_H_INCLUDED
#define STORE_SERVER_H_INCLUDED

#include "store_writer.h"

typedef struct _store_server_t store_server_t;

//  Binds both endpoints ("tcp://127.0.0.1:*" picks a free port) and takes
//  the writer. NULL if an endpoint cannot be bound or out of memory.
store_server_t *store_server_new (const char *verdict_endpoint, const char *ack_endpoint,
                                  store_writer_t **writer_p, size_t batch_max, int batch_ms,
                                  bool verbose);
void store_server_destroy (store_server_t **self_p);

//  Endpoints actually bound (with the port chosen for "*"); borrowed.
const char *store_server_verdict_endpoint (store_server_t *self);
const char *store_server_ack_endpoint (store_server_t *self);

//  One group commit: waits up to timeout_ms for a first verdict, then
//  drains, writes and acks. Returns the number of verdicts handled (0 on
//  timeout), -1 if interrupted.
int store_server_step (store_server_t *self, int timeout_ms);

//  Totals since start, for logs and tests.
uint64_t store_server_verdicts (store_server_t *self);
uint64_t store_server_malformed (store_server_t *self);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_server_test (bool verbose);

#endif
