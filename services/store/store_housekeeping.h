/*  =========================================================================
    store_housekeeping - partitions ahead, old data out

    Everything the store does to keep its tables in shape, on a session it
    is given (store_session.h), in two tasks:

    - readings (on the first writer's session, store_server.h): keeps the
      daily partitions of readings ahead (at connect and every hour), and
      prunes reading_keys older than the clients' retry window (7 days: a
      pass over the table a day, a range of blocks a second while it runs).
    - rollups (on the maintenance's session, store_maintenance.h): keeps
      the months of readings_minute ahead (at connect and every hour); every
      day drops raw partitions older than retention_days, but only once
      they are rolled up, and rollups older than rollup_retention_days; 0
      keeps either forever.

    Cheap when nothing is due: call the steps from the owner's loop.
    =========================================================================
*/
#ifndef STORE_HOUSEKEEPING_H_INCLUDED
#define STORE_HOUSEKEEPING_H_INCLUDED

#include "store_session.h"

typedef struct _store_housekeeping_t store_housekeeping_t;

typedef enum {
    STORE_HOUSEKEEPING_READINGS = 1, //  readings' partitions, key pruning
    STORE_HOUSEKEEPING_ROLLUPS = 2   //  rollups' partitions, retention
} store_housekeeping_task_t;

//  Housekeeping of tasks (a mask) on session (borrowed: it must outlive
//  this); retention days as above (rollups only). NULL if out of memory.
store_housekeeping_t *store_housekeeping_new (store_session_t *session, int tasks,
                                              int retention_days, int rollup_retention_days,
                                              bool verbose);
void store_housekeeping_destroy (store_housekeeping_t **self_p);

//  The session has just connected: partitions are due now (a downtime
//  may have passed a day or a month).
void store_housekeeping_connected (store_housekeeping_t *self);

//  What is due, if the session is connected: partitions first (a row of
//  a day or month not yet created lands in the default partition, and
//  that day could then not be created), then pruning or retention.
//  The two halves apart, for an owner with work to do between them (the
//  maintenance rolls up first, so retention finds the rollups caught up).
void store_housekeeping_step (store_housekeeping_t *self);
void store_housekeeping_step_partitions (store_housekeeping_t *self);
void store_housekeeping_step_retention (store_housekeeping_t *self);
//  Monotonic ms of the next thing due.
int64_t store_housekeeping_next_due (store_housekeeping_t *self);

//  Each once, now. Partitions: 0 or -1. Prune: one step of the sweep, the
//  keys deleted or -1. Drop: the partitions dropped (raw and rollups) or
//  -1. Failures are logged.
int store_housekeeping_ensure_readings (store_housekeeping_t *self);
int store_housekeeping_ensure_rollups (store_housekeeping_t *self);
int64_t store_housekeeping_prune (store_housekeeping_t *self);
int store_housekeeping_drop (store_housekeeping_t *self);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_housekeeping_test (bool verbose);

#endif
