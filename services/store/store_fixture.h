/*  =========================================================================
    store_fixture - test data in a real database, for the store's tests

    Creates a user, a device and some ports with fresh ids, so tests can run
    side by side in one database; destroying it deletes them again, with
    their readings, keys and episodes. Also the maintenance the rollup
    tests share. Tests only: asserts on every failure.
    =========================================================================
*/
#ifndef STORE_FIXTURE_H_INCLUDED
#define STORE_FIXTURE_H_INCLUDED

#include <libpq-fe.h>
#include "proto.h"
#include "store_maintenance.h"

#define STORE_FIXTURE_PORTS_MAX 1000

typedef struct {
    PGconn *conn;                                            //  the test's own connection
    int64_t user;                                            //  users.id
    int64_t device;                                          //  devices.id
    size_t port_count;                                       //  ports created
    char ports[STORE_FIXTURE_PORTS_MAX][PROTO_UUID_LEN + 1]; //  ports.id
} store_fixture_t;

//  Database for tests: PHANTOM_TEST_DATABASE, or NULL (tests skip).
const char *store_fixture_database (void);

store_fixture_t *store_fixture_new (const char *conninfo, size_t port_count);
void store_fixture_destroy (store_fixture_t **self_p);

//  Runs sql with text params and asserts it succeeded; caller PQclears.
PGresult *store_fixture_sql (store_fixture_t *self, const char *sql, int count,
                             const char *const *params);
//  First column of the first row as a number / as text (copied into text).
int64_t store_fixture_int (store_fixture_t *self, const char *sql, int count,
                           const char *const *params);
void store_fixture_text (store_fixture_t *self, const char *sql, int count,
                         const char *const *params, char *text, size_t size);

//  Fills a verdict of the fixture's user and device.
void store_fixture_verdict (store_fixture_t *self, proto_verdict_t *verdict, const char *gateway,
                            uint64_t request, const char *port, const char *key, int64_t ts,
                            double power, uint8_t status, uint8_t previous);

//  A reading as the rollup tests keep them, in time order.
typedef struct {
    int64_t ts;   //  seconds since the epoch
    double power; //  W
} store_fixture_sample_t;

//  Inserts a reading of port at ts (seconds), behind the store's back.
void store_fixture_reading (store_fixture_t *fixture, const char *port, int64_t ts, double power);
//  Inserts a reading of port for each sample.
void store_fixture_readings (store_fixture_t *fixture, const char *port,
                             const store_fixture_sample_t *samples, size_t count);
//  Readings of port for the catch-up tests, into the table and into
//  samples (size at least 5): three in a minute 40 minutes before base,
//  beyond the lookback (only a catch-up from the watermark reaches it),
//  then base + 5 and base + 65. Returns how many.
size_t store_fixture_catch_up_readings (store_fixture_t *fixture, const char *port, int64_t base,
                                        store_fixture_sample_t *samples, size_t size);
//  Checks the rollup of port's minute (seconds) against one computed here
//  from samples (all the port's readings, by time), as phantom_rollup
//  defines it; asserts.
void store_fixture_check_minute (store_fixture_t *fixture, const char *port,
                                 const store_fixture_sample_t *samples, size_t count,
                                 int64_t minute);
//  Marks of port in rollup_marks.
int64_t store_fixture_marks (store_fixture_t *fixture, const char *port);

//  Where a rollup run now ends (seconds, exclusive): the start of the
//  minute it was STORE_MAINTENANCE_SETTLE_SECONDS ago, by the database's
//  clock.
int64_t store_fixture_rollup_high (store_fixture_t *fixture);
//  Sets the rollup watermark (seconds): the next run catches up from there.
void store_fixture_set_watermark (store_fixture_t *fixture, int64_t watermark);

//  Maintenance for conninfo as the rollup tests run it (not started,
//  not connected); the caller destroys it.
store_maintenance_t *store_fixture_new_maintenance (const char *conninfo, bool verbose);

#endif
