/*  =========================================================================
    load_verify - --verify: does PostgreSQL hold exactly what was
    acknowledged?

    Reads every reading key with the run's prefix (and whether its readings
    row exists) and compares them with the acknowledged readings and those
    whose fate is unknown (sent, never answered).
    =========================================================================
*/
#ifndef LOAD_VERIFY_H_INCLUDED
#define LOAD_VERIFY_H_INCLUDED

#include "load_worker.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t stored;     //  reading_keys rows with the run's prefix
    int64_t present;    //  of the acked, stored with a readings row
    int64_t lost;       //  acked but no key or no readings row
    int64_t extra;      //  stored, never acked, fate unknown (allowed)
    int64_t unexpected; //  stored, never acked, though refused or never sent
    int64_t duplicates; //  keys stored twice, or under another id than acked
} load_verify_t;

//  Sorts acked[] and unknown[] by sequence number, as load_verify_run needs.
void load_verify_sort (load_ack_t *acked, size_t acked_count, int64_t *unknown,
                       size_t unknown_count);

//  Compares the database at conninfo with the sorted acked[] and unknown[]
//  of the run whose readingIds start with "<run>-". 0, or -1 if the
//  database could not be read (said on stderr). A database that refuses
//  connections is tried again for up to patience_ms: a fault test may
//  verify while a killed PostgreSQL is still in crash recovery.
int load_verify_run (const char *conninfo, const char *run, const load_ack_t *acked,
                     size_t acked_count, const int64_t *unknown, size_t unknown_count,
                     int patience_ms, load_verify_t *result);

//  The patience of --verify.
#define LOAD_VERIFY_PATIENCE_MS 60000

void load_verify_test (bool verbose);

#endif
