/*  =========================================================================
    store_fixture - test data in a real database, for the store's tests
    =========================================================================
*/
#include "store_fixture.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *
store_fixture_database (void)
{
    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    return database && *database ? database : NULL;
}

PGresult *
store_fixture_sql (store_fixture_t *self, const char *sql, int count, const char *const *params)
{
    PGresult *result = PQexecParams (self->conn, sql, count, NULL, params, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        fprintf (stderr, "store_fixture: %s\n  failed: %s", sql, PQerrorMessage (self->conn));
        assert (false);
    }
    return result;
}

int64_t
store_fixture_int (store_fixture_t *self, const char *sql, int count, const char *const *params)
{
    PGresult *result = store_fixture_sql (self, sql, count, params);
    assert (PQntuples (result) == 1);
    int64_t value =
        PQgetisnull (result, 0, 0) ? INT64_MIN : strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);
    return value;
}

void
store_fixture_text (store_fixture_t *self, const char *sql, int count, const char *const *params,
                    char *text, size_t size)
{
    PGresult *result = store_fixture_sql (self, sql, count, params);
    assert (PQntuples (result) == 1);
    snprintf (text, size, "%s", PQgetisnull (result, 0, 0) ? "NULL" : PQgetvalue (result, 0, 0));
    PQclear (result);
}

store_fixture_t *
store_fixture_new (const char *conninfo, size_t port_count)
{
    assert (conninfo);
    assert (port_count <= STORE_FIXTURE_PORTS_MAX);
    store_fixture_t *self = (store_fixture_t *)zmalloc (sizeof (store_fixture_t));
    self->conn = PQconnectdb (conninfo);
    if (PQstatus (self->conn) != CONNECTION_OK) {
        fprintf (stderr, "store_fixture: cannot connect: %s", PQerrorMessage (self->conn));
        assert (false);
    }
    PQclear (store_fixture_sql (self, "SET TIME ZONE 'UTC'", 0, NULL));
    char email[64];
    snprintf (email, sizeof (email), "store-%d-%" PRId64 "-%u@test", (int)getpid (),
              zclock_usecs (), randof (1000000));
    const char *params[2] = {email};
    self->user = store_fixture_int (
        self,
        "INSERT INTO users (email, name, password_hash) VALUES ($1, 'store test', 'x')"
        " RETURNING id",
        1, params);
    char user[24];
    snprintf (user, sizeof (user), "%" PRId64, self->user);
    params[0] = user;
    self->device = store_fixture_int (
        self, "INSERT INTO devices (user_id, name) VALUES ($1, 'store test') RETURNING id", 1,
        params);
    char device[24];
    snprintf (device, sizeof (device), "%" PRId64, self->device);
    params[1] = device;
    char count[24];
    snprintf (count, sizeof (count), "%zu", port_count);
    const char *insert[3] = {user, device, count};
    PGresult *result = store_fixture_sql (
        self,
        "INSERT INTO ports (user_id, device_id, name)"
        " SELECT $1, $2, 'port ' || n FROM generate_series (1, $3::int) n RETURNING id",
        3, insert);
    assert ((size_t)PQntuples (result) == port_count);
    for (size_t index = 0; index < port_count; index++)
        snprintf (self->ports[index], sizeof (self->ports[index]), "%s",
                  PQgetvalue (result, (int)index, 0));
    self->port_count = port_count;
    PQclear (result);
    return self;
}

void
store_fixture_destroy (store_fixture_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_fixture_t *self = *self_p;
        char user[24], device[24];
        snprintf (user, sizeof (user), "%" PRId64, self->user);
        snprintf (device, sizeof (device), "%" PRId64, self->device);
        const char *params[1] = {user};
        //  readings have no foreign key, so they go by hand
        PQclear (store_fixture_sql (
            self, "DELETE FROM readings WHERE port_id IN (SELECT id FROM ports WHERE user_id = $1)",
            1, params));
        PQclear (store_fixture_sql (self, "DELETE FROM users WHERE id = $1", 1, params));
        params[0] = device;
        PQclear (
            store_fixture_sql (self, "DELETE FROM reading_keys WHERE device_id = $1", 1, params));
        PQfinish (self->conn);
        free (self);
        *self_p = NULL;
    }
}

void
store_fixture_verdict (store_fixture_t *self, proto_verdict_t *verdict, const char *gateway,
                       uint64_t request, const char *port, const char *key, int64_t ts,
                       double power, uint8_t status, uint8_t previous)
{
    memset (verdict, 0, sizeof (*verdict));
    proto_reading_t *reading = &verdict->reading;
    reading->request = request;
    snprintf (reading->gateway, sizeof (reading->gateway), "%s", gateway);
    reading->user = self->user;
    reading->device = self->device;
    snprintf (reading->port, sizeof (reading->port), "%s", port);
    reading->ts = ts;
    reading->received = ts;
    reading->voltage = 230.0 + (double)(request % 100) / 7.0;
    reading->power = power;
    reading->current = power / reading->voltage;
    snprintf (reading->key, sizeof (reading->key), "%s", key);
    reading->settings.off_watts = 0.5f;
    reading->settings.standby_watts = 15.0f;
    reading->settings.min_phantom_seconds = 60;
    verdict->status = status;
    verdict->previous = previous;
}

//  phantom_rollup's default gap limit, seconds
#define S_TEST_GAP 300

//  Inserts a reading of port at ts.
void
store_fixture_reading (store_fixture_t *fixture, const char *port, int64_t ts, double power)
{
    char ts_text[24], power_text[32];
    snprintf (ts_text, sizeof (ts_text), "%" PRId64, ts);
    snprintf (power_text, sizeof (power_text), "%.17g", power);
    const char *params[3] = {port, ts_text, power_text};
    PQclear (store_fixture_sql (
        fixture,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " VALUES ($1::uuid, to_timestamp ($2::bigint), 230, $3::float8 / 230, $3::float8, 1)",
        3, params));
}

void
store_fixture_readings (store_fixture_t *fixture, const char *port,
                        const store_fixture_sample_t *samples, size_t count)
{
    for (size_t index = 0; index < count; index++)
        store_fixture_reading (fixture, port, samples[index].ts, samples[index].power);
}

size_t
store_fixture_catch_up_readings (store_fixture_t *fixture, const char *port, int64_t base,
                                 store_fixture_sample_t *samples, size_t size)
{
    const store_fixture_sample_t readings[] = {
        {base - 2400, 3}, {base - 2380, 4}, {base - 2360, 8}, {base + 5, 2}, {base + 65, 1}};
    size_t count = sizeof (readings) / sizeof (readings[0]);
    assert (size >= count);
    memcpy (samples, readings, sizeof (readings));
    store_fixture_readings (fixture, port, samples, count);
    return count;
}

//  Checks the rollup of port's minute against one computed here from
//  samples (all the port's readings, by time): plain mean, trapezoid and
//  summed length of the intervals starting in the minute that are at most
//  S_TEST_GAP long (whole seconds here, so their sum is exact).
void
store_fixture_check_minute (store_fixture_t *fixture, const char *port,
                            const store_fixture_sample_t *samples, size_t count, int64_t minute)
{
    double low = INFINITY, high = -INFINITY, sum = 0, energy = 0, reported = 0;
    int n = 0;
    for (size_t index = 0; index < count; index++) {
        if (samples[index].ts - samples[index].ts % 60 != minute)
            continue;
        double power = samples[index].power;
        low = power < low ? power : low;
        high = power > high ? power : high;
        sum += power;
        n++;
        if (index + 1 < count && samples[index + 1].ts - samples[index].ts <= S_TEST_GAP) {
            energy += (power + samples[index + 1].power) / 2 *
                      (double)(samples[index + 1].ts - samples[index].ts) / 3600;
            reported += (double)(samples[index + 1].ts - samples[index].ts);
        }
    }
    assert (n > 0);
    char minute_text[24];
    snprintf (minute_text, sizeof (minute_text), "%" PRId64, minute);
    const char *params[2] = {port, minute_text};
    PGresult *result = store_fixture_sql (
        fixture,
        "SELECT min_power, mean_power, max_power, energy_wh, samples, reported_seconds"
        " FROM readings_minute WHERE port_id = $1::uuid AND minute = to_timestamp ($2::bigint)",
        2, params);
    assert (PQntuples (result) == 1);
    assert (strtod (PQgetvalue (result, 0, 0), NULL) == low);
    assert (fabs (strtod (PQgetvalue (result, 0, 1), NULL) - sum / n) < 1e-9);
    assert (strtod (PQgetvalue (result, 0, 2), NULL) == high);
    assert (fabs (strtod (PQgetvalue (result, 0, 3), NULL) - energy) < 1e-9);
    assert (atoi (PQgetvalue (result, 0, 4)) == n);
    assert (strtod (PQgetvalue (result, 0, 5), NULL) == reported);
    PQclear (result);
}

//  Marks of port in rollup_marks.
int64_t
store_fixture_marks (store_fixture_t *fixture, const char *port)
{
    const char *params[1] = {port};
    return store_fixture_int (
        fixture, "SELECT count (*) FROM rollup_marks WHERE port_id = $1::uuid", 1, params);
}

int64_t
store_fixture_rollup_high (store_fixture_t *fixture)
{
    return store_fixture_int (
        fixture,
        "SELECT extract (epoch FROM date_bin ('1 minute', now () - interval '5 seconds',"
        " timestamptz 'epoch'))::bigint",
        0, NULL);
}

void
store_fixture_set_watermark (store_fixture_t *fixture, int64_t watermark)
{
    char watermark_text[24];
    snprintf (watermark_text, sizeof (watermark_text), "%" PRId64, watermark);
    const char *params[1] = {watermark_text};
    PQclear (store_fixture_sql (
        fixture, "UPDATE rollup_state SET watermark = to_timestamp ($1::bigint)", 1, params));
}

store_maintenance_t *
store_fixture_new_maintenance (const char *conninfo, bool verbose)
{
    //  A lookback of 15 minutes: the tests' recent minutes (up to 13 back)
    //  are inside it, their old ones (40 back and more) beyond it.
    store_maintenance_policy_t policy = {30, 730, 15};
    store_maintenance_t *maintenance = store_maintenance_new (conninfo, &policy, verbose);
    assert (maintenance);
    return maintenance;
}
