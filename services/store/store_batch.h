/*  =========================================================================
    store_batch - the verdicts of one group commit and their acks

    Holds up to capacity verdicts in arrival order with one ack each. For
    a range of rows it plans the write (which keys repeat, which row is the
    last of each port and of each episode) and builds the statement
    parameters: a binary array per column for unnest() (store_column.h,
    the one encoding). After the write it groups the acks per gateway,
    in arrival order, for the PUB socket.

    Rows whose ack is final ("decided") are skipped by every later plan, so
    a retry or a split of the batch only touches what is still open.

    Port rows: a port's row is written in the transaction of a verdict that
    changes its status (or has no reading: the offline timer's), otherwise
    at most once a second: what a later row would say (status, last
    reading) waits in memory (store_port_memory), across batches, and
    goes out with the first transaction at least a second after the port
    was last written (a batch, or store_writer_flush when idle). A restart of the store
    loses at most that second of last_reading_at / last_power, never a
    status change.
    =========================================================================
*/
#ifndef STORE_BATCH_H_INCLUDED
#define STORE_BATCH_H_INCLUDED

#include "proto.h"

typedef struct _store_batch_t store_batch_t;

//  Parameters of the hot statements, in $n order.
#define STORE_KEYS_PARAMS 4 //  device_id[], reading_key[], ts_ms[], reading_id[]
#define STORE_READINGS_PARAMS                                                                      \
    7                        //  id[], port_id[], ts_ms[], voltage[], current[], power[], status[]
#define STORE_PORTS_PARAMS 5 //  id[], status[], ts_ms[], changed_ms[], power[]
#define STORE_PORT_EVERY_MS 1000 //  a port row without a status change: at most this often
#define STORE_EPISODES_PARAMS                                                                      \
    8 //  port_id[], user_id[], start_ms[], end_ms[], mean[], peak[], energy[], samples[]
#define STORE_MARKS_PARAMS 3 //  port_id[], first_minute[], last_minute[]
//  Marked minutes of a port at most this far apart are one range: the
//  re-roll's one scan over the minutes between (at most the rollups' gap
//  without readings) costs less than a second range's index lookups.
#define STORE_MARKS_JOIN_MS (6 * 60 * 1000)

//  Creates a batch of at most capacity rows. NULL if out of memory.
store_batch_t *store_batch_new (size_t capacity);
void store_batch_destroy (store_batch_t **self_p);

//  Empties the batch for the next group commit; keeps memory.
void store_batch_reset (store_batch_t *self);

size_t store_batch_size (store_batch_t *self);
size_t store_batch_capacity (store_batch_t *self);

//  Appends a verdict. A verdict the database would refuse for sure (port
//  not a uuid, a time outside 1970..9999) is decided REJECTED at once. -1
//  if the batch is full.
int store_batch_add (store_batch_t *self, const proto_verdict_t *verdict);

const proto_verdict_t *store_batch_verdict (store_batch_t *self, size_t index);
const proto_ack_t *store_batch_ack (store_batch_t *self, size_t index);
bool store_batch_decided (store_batch_t *self, size_t index);
//  Whether row index's reading was inserted by its range's last write
//  (not a retry of a key stored before); read after that write.
bool store_batch_inserted (store_batch_t *self, size_t index);

//  Plans a write of the undecided rows in [lo, hi): repeated keys, last
//  verdict per port and per episode; clears what an earlier attempt
//  assigned. Returns the number of undecided rows in the range.
size_t store_batch_plan (store_batch_t *self, size_t lo, size_t hi);

//  Rows with a key, first occurrence of each (device, key) only, in order.
size_t store_batch_keyed_count (store_batch_t *self);
size_t store_batch_keyed_row (store_batch_t *self, size_t n);
//  Rows without a key, in order.
size_t store_batch_unkeyed_count (store_batch_t *self);
size_t store_batch_unkeyed_row (store_batch_t *self, size_t n);
//  Chooses the port rows the transaction of the planned range writes at
//  monotonic time now_ms: ports of the range that changed status or are
//  due, and waiting ports (of any batch) that are due; all waiting ones
//  if flush. Returns how many.
size_t store_batch_port_writes (store_batch_t *self, int64_t now_ms, bool flush);
size_t store_batch_port_count (store_batch_t *self);
//  Ports of the range whose row waits in memory after the commit.
size_t store_batch_port_deferred (store_batch_t *self);
//  Port rows waiting in memory, from this and earlier batches.
size_t store_batch_port_waiting (store_batch_t *self);
size_t store_batch_episode_count (store_batch_t *self);

//  Records what the database gave row index: its reading id and stored
//  time, and whether the reading is new (to insert) or a retry of a key
//  already stored.
void store_batch_assign (store_batch_t *self, size_t index, int64_t id, int64_t ts, bool fresh);
size_t store_batch_fresh_count (store_batch_t *self);

//  Parameter builders for the planned range: binary arrays (format 1,
//  store_column.h), with their lengths. Types: keys bigint[], text[],
//  timestamptz[], bigint[] (reading_id: the id assigned to the row by
//  store_batch_assign); readings bigint[], uuid[], timestamptz[],
//  float8[] x 3, smallint[]; ports uuid[], text[], bigint[] x 2 (ms),
//  float8[]; episodes uuid[], bigint[] x 3 (user, ms), float8[] x 3,
//  bigint[]. NULL where the statement keeps the stored value. The bytes
//  are owned by the batch and live until the next call of the same builder.
void store_batch_keys_params (store_batch_t *self, const char *params[STORE_KEYS_PARAMS],
                              int lengths[STORE_KEYS_PARAMS]);
void store_batch_readings_params (store_batch_t *self, const char *params[STORE_READINGS_PARAMS],
                                  int lengths[STORE_READINGS_PARAMS]);
void store_batch_ports_params (store_batch_t *self, const char *params[STORE_PORTS_PARAMS],
                               int lengths[STORE_PORTS_PARAMS]);
void store_batch_episodes_params (store_batch_t *self, const char *params[STORE_EPISODES_PARAMS],
                                  int lengths[STORE_EPISODES_PARAMS]);

//  Marks row index's reading as changing the minute of minute_ms (ms
//  since the epoch, any time in it), a minute already rolled up: the
//  write of the row's range then records it (rollup_marks, migration 014)
//  in the same transaction (store_server.c says which minutes).
void store_batch_mark (store_batch_t *self, size_t index, int64_t minute_ms);
//  The marks of the planned range's undecided rows as ranges of minutes,
//  one per port and run of marked minutes (STORE_MARKS_JOIN_MS), as the
//  builders above: uuid[], timestamptz[], timestamptz[] (first and last
//  minute). Returns how many ranges (0: nothing to write).
size_t store_batch_marks_params (store_batch_t *self, const char *params[STORE_MARKS_PARAMS],
                                 int lengths[STORE_MARKS_PARAMS]);

//  After COMMIT: every undecided row of the planned range is acked OK with
//  its id (a repeated key gets the id of its first occurrence); the port
//  rows written are marked so, the deferred ones wait in memory.
void store_batch_commit (store_batch_t *self);

//  Decides every undecided row in [lo, hi) with code (RETRY or REJECTED).
void store_batch_decide (store_batch_t *self, size_t lo, size_t hi, proto_ack_code_t code);

//  Iterates the acks grouped per gateway, each group in arrival order;
//  verdicts without a reading have no ack and are left out.
//  Start with *cursor = 0; each call fills at most max acks of one gateway
//  and returns how many, 0 when all are out. *gateway is borrowed.
size_t store_batch_group (store_batch_t *self, size_t *cursor, const char **gateway,
                          proto_ack_t *acks, size_t max);

//  Self test
void store_batch_test (bool verbose);

#endif
