/*  =========================================================================
    store_rollup - a lane's minute rollups, kept up as it commits

    A lane writes every reading of its ports, in commit order, so it can
    keep each port's current minute (min, sum, max, samples, and the energy
    and summed length of the intervals that start in it) as phantom_rollup
    would compute it from the table (deploy/migrations/011_rollup_reported.sql;
    007_retention.sql first defined it): the maintenance
    then upserts one row per port and minute instead of reading, sorting and
    aggregating every reading of the minute again (that cost PostgreSQL
    ~1.5-2 us per reading, and read the whole day's partition each minute).

    Only minutes from `from` on are kept: the maintenance starts them at
    the store's start minute, or after the newest reading an earlier
    process committed there (up to 5 minutes ahead), and 6 minutes after
    the start when the database cannot tell in time. A minute this lane
    may not have seen all of is handed over as partial, to be re-rolled
    from the table (the maintenance marks it in rollup_marks): one with a
    reading out of order, or the first minute of a port after the lane
    forgot all ports (more than ports_max). Thread-safe: the lane adds, the
    maintenance takes.
    =========================================================================
*/
#ifndef STORE_ROLLUP_H_INCLUDED
#define STORE_ROLLUP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct _store_rollup_t store_rollup_t;

//  One port's minute, as readings_minute stores it (mean = sum / samples,
//  energy_wh = energy_ws / 3600).
typedef struct {
    char port[PROTO_UUID_LEN + 1];
    int64_t minute; //  ms since the epoch, start of the minute
    double min_power;
    double max_power;
    double sum_power;
    double energy_ws;        //  W s of the intervals starting in the minute
    double reported_seconds; //  their summed length, s
    int64_t samples;
    bool partial; //  re-roll it from the table instead
} store_rollup_minute_t;

//  Keeps the minutes from from_ms (rounded up to a whole minute) on; an
//  interval longer than gap_ms counts for no energy and no reported time
//  (the port was offline); past ports_max ports
//  it forgets them all (their open minutes are handed over as partial).
store_rollup_t *store_rollup_new (int64_t from_ms, int64_t gap_ms, size_t ports_max);
void store_rollup_destroy (store_rollup_t **self_p);

//  The first minute kept, ms since the epoch.
int64_t store_rollup_from (store_rollup_t *self);

//  A reading the lane committed (time as stored, ms). Returns the time of
//  the port's newest earlier reading, or -1 when the lane does not know it.
int64_t store_rollup_add (store_rollup_t *self, const char *port, int64_t ts, double power);

//  Before a write: the time of each port's newest reading added so far
//  (ms; -1 when the lane does not know it) into lasts, one lock for all.
void store_rollup_lasts (store_rollup_t *self, const char *const *ports, size_t count,
                         int64_t *lasts);

//  The lane's write in flight, for the maintenance (store_maintenance.h,
//  write_begin): the rolled-up bound (seconds) its marks were decided
//  against, INT64_MAX while none. Thread-safe (sequentially consistent).
void store_rollup_set_writing (store_rollup_t *self, int64_t rolled);
int64_t store_rollup_writing (store_rollup_t *self);

//  The minutes before below_ms that changed since they were last taken:
//  complete ones, and open ones (their last interval has no next reading
//  yet: taken again once it has). *minutes_p is the caller's to free.
//  Returns how many; *overflow_p is set when some were dropped since the
//  last call (more than a bound held: re-roll the window from the table).
size_t store_rollup_take (store_rollup_t *self, int64_t below_ms, store_rollup_minute_t **minutes_p,
                          bool *overflow_p);

//  Self test (no database)
void store_rollup_test (bool verbose);

#endif
