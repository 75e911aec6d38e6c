/*  =========================================================================
    store_lanes - the lanes' rollups, and the minute they start from

    Each lane (a writer thread, store_server.c) keeps a rollup of the
    minutes it wrote (store_rollup.h); the maintenance's runs upsert what
    they hand over instead of reading those minutes from the table. This
    class holds the set of them for the maintenance, and asks the database
    once where they can start: the current minute, or the one after the
    newest reading an earlier process committed there (up to 5 minutes
    ahead); 6 minutes from the start when the database cannot tell within
    2 s. Thread-safe: lanes add rollups while the maintenance's thread
    reads them.
    =========================================================================
*/
#ifndef STORE_LANES_H_INCLUDED
#define STORE_LANES_H_INCLUDED

#include "store_rollup.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct _store_lanes_t store_lanes_t;

//  Rollups over conninfo's database; NULL if out of memory.
store_lanes_t *store_lanes_new (const char *conninfo, bool verbose);
//  Destroys the rollups too; no lane may write any more.
void store_lanes_destroy (store_lanes_t **self_p);

//  A new lane's rollup, owned here. The first call asks the database
//  where every lane starts, so it must come before any lane writes. NULL
//  past STORE_MAINTENANCE_ROLLUPS_MAX or out of memory.
store_rollup_t *store_lanes_new_rollup (store_lanes_t *self);
//  A rollup of the minutes from from_ms on, kept with the others (tests:
//  a rollup that starts elsewhere).
store_rollup_t *store_lanes_new_rollup_from (store_lanes_t *self, int64_t from_ms);
//  Tests: the lanes start at from_ms (a whole minute), not asked.
void store_lanes_set_from (store_lanes_t *self, int64_t from_ms);

size_t store_lanes_count (store_lanes_t *self);
//  Rollup index (< count); borrowed, lives as long as self.
store_rollup_t *store_lanes_rollup (store_lanes_t *self, size_t index);
//  Whether a lane writes with marks decided against a bound below high
//  (store_rollup_writing).
bool store_lanes_writing_below (store_lanes_t *self, int64_t high);
//  The first minute every rollup keeps, seconds; INT64_MAX if none.
int64_t store_lanes_memory_from (store_lanes_t *self);

//  Where lanes of application name lanes_application can start, ms, as
//  the first store_lanes_new_rollup asks it; fell_back (unless NULL):
//  the database could not tell.
int64_t store_lanes_ask_from (store_lanes_t *self, const char *lanes_application, bool *fell_back);

//  Self test
void store_lanes_test (bool verbose);

#endif
