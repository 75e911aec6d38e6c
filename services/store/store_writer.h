/*  =========================================================================
    store_writer - writes batches of verdicts to PostgreSQL

    One session (store_session.h), hot statements prepared once per
    connection (generic plans), binary parameters (store_column.h). A batch is one transaction:
   reading keys and readings (one statement, binary parameters), port status, episodes, COMMIT, sent
   as one libpq pipeline: one round trip. Every row of the batch leaves with a decided ack: OK only
   after COMMIT succeeded; REJECTED for a row the database refuses on its own (found by splitting
   the batch); RETRY for anything transient, including a lost connection, after which the writer
    reconnects with backoff (100 ms doubling to 2 s).
    =========================================================================
*/
#ifndef STORE_WRITER_H_INCLUDED
#define STORE_WRITER_H_INCLUDED

#include "store_batch.h"

typedef struct _store_writer_t store_writer_t;

//  Creates a writer for the libpq connection string conninfo and tries to
//  connect; a database that is down is retried later, not an error.
store_writer_t *store_writer_new (const char *conninfo, bool verbose);

//  synchronous_commit of every writer connected after the call (default on).
//  Off only for the fault suite's negative control: acks would then come
//  before the WAL is durable.
void store_writer_set_synchronous_commit (bool on);
void store_writer_destroy (store_writer_t **self_p);

bool store_writer_connected (store_writer_t *self);
//  Server process id of the connection, 0 if none (logs, tests).
int store_writer_backend (store_writer_t *self);

//  Reconnects when the backoff allows; with housekeeping (the default),
//  also does the readings' housekeeping that is due (store_housekeeping.h:
//  partitions ahead, key pruning). Cheap when there is nothing to do;
//  call it from the loop.
void store_writer_maintain (store_writer_t *self);

//  With several writers on one database, one does the housekeeping.
void store_writer_set_housekeeping (store_writer_t *self, bool housekeeping);

//  Writes the undecided rows of batch; on return every row is decided.
void store_writer_write (store_writer_t *self, store_batch_t *batch);

//  Writes the port rows waiting in batch's memory that are due (all if
//  all) in a transaction of their own; empties batch first, so call it
//  between group commits. Returns how many, or -1 (they keep waiting).
int store_writer_flush (store_writer_t *self, store_batch_t *batch, bool all);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_writer_test (bool verbose);

#endif
