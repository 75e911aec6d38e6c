/*  =========================================================================
    detector_restore - seeds the engine from PostgreSQL at start-up

    A restarted detector picks up each port of its partition where the last
    one left it (status, last reading, open episode), so a restart neither
    loses nor repeats a phantom episode (DESIGN.md "Sticky partitions").
    =========================================================================
*/
#ifndef DETECTOR_RESTORE_H_INCLUDED
#define DETECTOR_RESTORE_H_INCLUDED

#include "detector_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Loads every port of partition (of partitions) into engine. Returns the
//  number of ports restored, or -1 after logging why (no database, query
//  failed). conninfo is a libpq connection string.
int64_t detector_restore_load (detector_engine_t *engine, const char *conninfo, uint32_t partition,
                               uint32_t partitions);

//  Needs PHANTOM_TEST_DATABASE (a libpq connection string to a database
//  with the schema); skipped without it.
void detector_restore_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
