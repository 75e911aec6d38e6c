/*  =========================================================================
    store_maintenance - rollups and retention, on a connection of its own

    Keeps readings_minute (per port and minute: min, mean, max, energy,
    samples; deploy/migrations/007_retention.sql) current and old data
    dropped. It runs on its own thread with its own PostgreSQL connection and
    bounded statements, so none of it ever delays a group commit.

    Every minute (5 s after it ends, so stragglers are in): rolls up the
    complete minutes since the watermark, in chunks of an hour after a
    downtime, and always the last lookback_minutes again, for readings that
    arrive late. Every hour: creates the months of rollups ahead (readings'
    daily partitions are the writer's). Every day: drops raw partitions
    older than retention_days, but only once they are rolled up, and rollups
    older than rollup_retention_days; 0 keeps either forever.
    =========================================================================
*/
#ifndef STORE_MAINTENANCE_H_INCLUDED
#define STORE_MAINTENANCE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct _store_maintenance_t store_maintenance_t;

typedef struct {
    int retention_days;             //  raw readings kept, days; 0 keeps them forever
    int rollup_retention_days;      //  rollups kept, days; 0 keeps them forever
    int lookback_minutes;           //  minutes rolled up again on every run
} store_maintenance_policy_t;

//  Config keys retention_days, rollup_retention_days, rollup_lookback_minutes.
#define STORE_MAINTENANCE_POLICY_DEFAULT { 90, 730, 10 }

//  Creates maintenance for the libpq connection string conninfo; connects
//  when first stepped (a database that is down is retried with backoff).
store_maintenance_t *store_maintenance_new (const char *conninfo,
                                            const store_maintenance_policy_t *policy,
                                            bool verbose);
//  Stops the thread if started: cancels a statement in flight, so this
//  returns promptly.
void store_maintenance_destroy (store_maintenance_t **self_p);

//  From now on the maintenance runs on its own thread; the calls below are
//  then the thread's alone. 0, or -1 if the thread cannot start.
int store_maintenance_start (store_maintenance_t *self);

//  Does what is due: connect, rollup, partitions ahead, retention.
void store_maintenance_step (store_maintenance_t *self);

//  Each task once, now. Rollup: the number of minutes written; drop: the
//  partitions dropped (raw and rollups). -1 on failure (logged).
int64_t store_maintenance_rollup (store_maintenance_t *self);
int store_maintenance_ensure (store_maintenance_t *self);
int store_maintenance_drop (store_maintenance_t *self);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_maintenance_test (bool verbose);

#endif
