/*  =========================================================================
    notifier_test_db - fixtures for the self tests that need PostgreSQL
    =========================================================================
*/
#include "notifier_test_db.h"
#include "proto_pg.h"

#include <assert.h>
#include <czmq.h>

const char *
notifier_test_db_conninfo (void)
{
    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    return conninfo && *conninfo ? conninfo : NULL;
}

PGconn *
notifier_test_db_connect (void)
{
    const char *conninfo = notifier_test_db_conninfo ();
    assert (conninfo);
    PGconn *db = proto_pg_connect (conninfo, "notifier_test_db", 0);
    assert (db);
    return db;
}

static PGresult *
s_exec (PGconn *db, const char *sql, const char *p1, const char *p2, const char *p3)
{
    const char *values[3] = {p1, p2, p3};
    int count = p1 ? (p2 ? (p3 ? 3 : 2) : 1) : 0;
    PGresult *result = proto_pg_exec (db, "notifier_test_db", sql, sql, count, values);
    assert (result);
    return result;
}

char *
notifier_test_db_value (PGconn *db, const char *sql, const char *p1, const char *p2, const char *p3)
{
    PGresult *result = s_exec (db, sql, p1, p2, p3);
    char *value = NULL;
    if (PQntuples (result) > 0 && !PQgetisnull (result, 0, 0))
        value = strdup (PQgetvalue (result, 0, 0));
    PQclear (result);
    return value;
}

int64_t
notifier_test_db_int (PGconn *db, const char *sql, const char *p1, const char *p2, const char *p3)
{
    char *value = notifier_test_db_value (db, sql, p1, p2, p3);
    int64_t number = value ? strtoll (value, NULL, 10) : -1;
    free (value);
    return number;
}

int64_t
notifier_test_db_user (PGconn *db, double tariff, const char *currency)
{
    char *email = zsys_sprintf ("notifier-test-%d-%" PRId64 "-%u@example.com", (int)getpid (),
                                zclock_usecs (), randof (1000000));
    int64_t user = notifier_test_db_int (db,
                                         "INSERT INTO users (email, name, password_hash, currency)"
                                         " VALUES ($1, 'Notifier Test', 'x', $2) RETURNING id",
                                         email, currency, NULL);
    assert (user > 0);
    //  The user's trigger made a flat tariff for all time; this is its price.
    char *user_text = zsys_sprintf ("%" PRId64, user);
    char *tariff_text = zsys_sprintf ("%.6f", tariff);
    assert (notifier_test_db_int (db,
                                  "WITH t AS (UPDATE tariffs SET price_per_kwh = $2::float8"
                                  "           WHERE user_id = $1::bigint RETURNING 1)"
                                  " SELECT count (*) FROM t",
                                  user_text, tariff_text, NULL) == 1);
    zstr_free (&email);
    zstr_free (&user_text);
    zstr_free (&tariff_text);
    return user;
}

void
notifier_test_db_user_place (PGconn *db, int64_t user, const char *time_zone, const char *locale)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    //  "" stands for NULL: a NULL parameter would end the list.
    PQclear (s_exec (db,
                     "UPDATE users SET time_zone = $2, locale = NULLIF ($3, '')"
                     " WHERE id = $1::bigint",
                     user_text, time_zone, locale ? locale : ""));
}

char *
notifier_test_db_port (PGconn *db, int64_t user, const char *name)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    char *device = notifier_test_db_value (
        db, "INSERT INTO devices (user_id, name) VALUES ($1::bigint, 'board') RETURNING id",
        user_text, NULL, NULL);
    assert (device);
    char *port = notifier_test_db_value (
        db,
        "INSERT INTO ports (user_id, device_id, name) VALUES ($1::bigint, $2::bigint, $3)"
        " RETURNING id",
        user_text, device, name);
    assert (port);
    free (device);
    return port;
}

void
notifier_test_db_drop_user (PGconn *db, int64_t user)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    PQclear (s_exec (db, "DELETE FROM users WHERE id = $1::bigint", user_text, NULL, NULL));
}

proto_event_t
notifier_test_db_event (const char *kind, int64_t user, const char *port, int64_t start,
                        int64_t end, double watts, double energy_wh)
{
    proto_event_t event;
    memset (&event, 0, sizeof event);
    snprintf (event.kind, sizeof event.kind, "%s", kind);
    event.user = user;
    snprintf (event.port, sizeof event.port, "%s", port);
    event.ts = end ? end : start;
    event.watts = watts;
    bool ended = streq (kind, "phantom.end");
    event.status = ended ? PROTO_STATUS_ACTIVE : PROTO_STATUS_PHANTOM;
    event.previous = ended ? PROTO_STATUS_PHANTOM : PROTO_STATUS_IDLE;
    event.has_episode = !streq (kind, "status");
    event.episode.start = start;
    event.episode.end = end;
    event.episode.energy_wh = energy_wh;
    event.episode.mean_watts =
        end > start ? energy_wh / ((double)(end - start) / 3600000.0) : watts;
    event.episode.peak_watts = watts * 1.5;
    event.episode.samples = 10;
    return event;
}

proto_event_t
notifier_test_db_status (int64_t user, const char *port, int64_t ts, proto_status_t status,
                         proto_status_t previous)
{
    proto_event_t event = notifier_test_db_event ("status", user, port, ts, 0, 4, 0);
    event.status = status;
    event.previous = previous;
    return event;
}
