/*  =========================================================================
    store_maintenance - rollups and retention, on a session of its own

    Keeps readings_minute (per port and minute: min, mean, max, energy,
    reported seconds, samples; deploy/migrations/007_retention.sql and
    011_rollup_reported.sql) current and old data dropped. It runs on its
    own thread with its own PostgreSQL connection and bounded statements,
    so none of it ever delays a group commit.

    Every minute (5 s after it ends, so stragglers are in): rolls up the
    complete minutes since the watermark, once each, in chunks of an hour
    after a downtime. From the start's minute on (see
    store_maintenance_new_rollup), the lanes keep the minutes of their
    ports as they commit (store_rollup.h) and a run upserts what they hand
    over, one row per port and minute, instead of reading the minute's
    readings back (that read the whole day's partition and sorted the
    minute: ~1.5-2 us of PostgreSQL CPU per reading at 100k readings/s).
    Readings that change a minute already rolled up (late ones, e.g. a
    backfill with device timestamps, or the first reading after a minute
    whose last interval had no next reading yet) are marked by the lanes in
    rollup_marks (migration 014) in the transaction that commits them, as
    ranges of minutes per port: a store killed right after that commit
    leaves the marks for the next one. Every run, and a pass every
    S_MARKS_EVERY_MS between runs while the lanes commit marks, re-rolls
    them range by range (phantom_rollup_marks: one ordered scan of a port's
    readings per range) and deletes them with the same commit. The first
    run after a start also re-rolls the last lookback_minutes of every port
    (the lanes' minutes of an earlier process were in its memory), and so
    does a run after a lane's rollup dropped minutes.
    Between the runs, on the same session: the rollups' housekeeping
    (store_housekeeping.h: months of rollups ahead; raw partitions older
    than retention_days, once rolled up, and rollups older than
    rollup_retention_days dropped; 0 keeps either forever).
    =========================================================================
*/
#ifndef STORE_MAINTENANCE_H_INCLUDED
#define STORE_MAINTENANCE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _store_maintenance_t store_maintenance_t;

typedef struct {
    int retention_days;        //  raw readings kept, days; 0 keeps them forever
    int rollup_retention_days; //  rollups kept, days; 0 keeps them forever
    int lookback_minutes;      //  minutes re-rolled on a fallback run (see above)
} store_maintenance_policy_t;

//  Config keys retention_days, rollup_retention_days, rollup_lookback_minutes.
#define STORE_MAINTENANCE_POLICY_DEFAULT                                                           \
    {                                                                                              \
        90, 730, 10                                                                                \
    }

//  Creates maintenance for the libpq connection string conninfo; connects
//  when first stepped (a database that is down is retried with backoff).
store_maintenance_t *store_maintenance_new (const char *conninfo,
                                            const store_maintenance_policy_t *policy, bool verbose);
//  Stops the thread if started: cancels a statement in flight, so this
//  returns promptly.
void store_maintenance_destroy (store_maintenance_t **self_p);

//  From now on the maintenance runs on its own thread; the calls below are
//  then the thread's alone. 0, or -1 if the thread cannot start.
int store_maintenance_start (store_maintenance_t *self);

//  Does what is due: connect, partitions ahead, rollup, retention.
void store_maintenance_step (store_maintenance_t *self);

//  A rollup run, now: the number of minutes written, -1 on failure (logged).
int64_t store_maintenance_rollup (store_maintenance_t *self);

//  phantom_rollup's gap limit: a longer interval counts for no energy and
//  no reported time (the port was offline).
#define STORE_MAINTENANCE_GAP_SECONDS 300

//  Late readings (the .c says why this is every minute they change): the
//  calls below are for any thread (the lanes). Minutes before this time
//  (seconds since the epoch) are rolled up or being rolled up now;
//  INT64_MAX before the first run.
int64_t store_maintenance_rolled (store_maintenance_t *self);
//  A lane about to write: returns the bound (rolled) against which it
//  marks, in the write's transaction, the minutes before it that its
//  readings change; until write_end no run rolls up past that bound.
//  marked: the write had marks (re-rolled within about a second then, not
//  at the next minute's run).
typedef struct _store_rollup_t store_rollup_t;
int64_t store_maintenance_write_begin (store_maintenance_t *self, store_rollup_t *rollup);
void store_maintenance_write_end (store_maintenance_t *self, store_rollup_t *rollup, bool marked);
//  Re-rolls what rollup_marks holds below rolled now (as between runs).
//  Minutes written, or -1 on failure (logged; the marks stay).
int64_t store_maintenance_rollup_marks (store_maintenance_t *self);
//  A rollup for a lane (store_rollup.h): runs upsert the minutes it hands
//  over instead of rolling them up from the table, from the current minute
//  on, or from the one after the newest reading an earlier process
//  committed there (up to 5 minutes ahead); 6 minutes from now when the
//  database cannot tell within 2 s. Asked of the database at the first
//  call, which must come before any lane writes. Owned by the maintenance
//  (it must outlive the lane); thread-safe. NULL past
//  STORE_MAINTENANCE_ROLLUPS_MAX or out of memory.
#define STORE_MAINTENANCE_ROLLUPS_MAX 64
store_rollup_t *store_maintenance_new_rollup (store_maintenance_t *self);

//  Tests of the lanes (store_server.c): as if the store had started in
//  minute (seconds since the epoch, a whole minute) and rolled up to it;
//  before the first store_maintenance_new_rollup.
void store_maintenance_set_start (store_maintenance_t *self, int64_t minute);

//  A minute is rolled up this long (seconds) after it ended: readings of
//  its last moments are still on their way through gateway, detector and
//  store.
#define STORE_MAINTENANCE_SETTLE_SECONDS 5

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_maintenance_test (bool verbose);

#endif
