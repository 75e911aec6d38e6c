/*  =========================================================================
    notifier_digest - the daily digest per user

    The whole check is one statement: PostgreSQL knows the time zones, the
    day boundaries (DST days have 23 or 25 hours) and the data, and a single
    statement is a single transaction, so a digest, its webhook deliveries
    and its announcement appear together or not at all.
    =========================================================================
*/
#include "notifier_digest.h"
#include "notifier_db.h"
#include "notifier_test_db.h"

#include <czmq.h>
#include <inttypes.h>

struct _notifier_digest_t {
    char *conninfo; //  libpq connection string
    PGconn *db;     //  NULL until connected, and after a failure
    bool ready;     //  the schema has users.digest_enabled (migration 006)
    int hour;       //  local hour from which a day's digest is due
    bool verbose;   //  log each digest
};

//  $1: now (Unix ms), $2: digest hour. A time zone PostgreSQL does not know
//  counts as UTC, so one bad row cannot fail every user's digest. Episodes
//  belong to the local day they started in. Energy is shown like the
//  episode notifications show it (Wh below 1 kWh), money to two decimals
//  (four for sums below 0.01).
static const char *s_digest_sql =
    "WITH zoned AS ("
    "    SELECT u.id AS user_id, u.tariff_per_kwh AS tariff, u.currency,"
    "           COALESCE (known.name, 'UTC') AS tz"
    "      FROM users u"
    "      LEFT JOIN (SELECT DISTINCT ON (lower (name)) name FROM pg_timezone_names) known"
    "             ON lower (known.name) = lower (u.time_zone)"
    "     WHERE u.digest_enabled AND EXISTS (SELECT 1 FROM ports p WHERE p.user_id = u.id)"
    "), localised AS ("
    "    SELECT zoned.*, to_timestamp ($1::bigint / 1000.0) AT TIME ZONE tz AS local_now"
    "      FROM zoned"
    "), due AS ("
    "    SELECT user_id, tariff, currency, tz,"
    "           'digest:' || to_char (local_now, 'YYYY-MM-DD') AS dedupe_key,"
    "           to_char (local_now::date - 1, 'YYYY-MM-DD') AS day,"
    "           (local_now::date - 1)::timestamp AT TIME ZONE tz AS day_start,"
    "           local_now::date::timestamp AT TIME ZONE tz AS day_end"
    "      FROM localised l"
    "     WHERE extract (hour FROM local_now) >= $2::int"
    "       AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.user_id = l.user_id"
    "                          AND n.dedupe_key"
    "                              = 'digest:' || to_char (l.local_now, 'YYYY-MM-DD'))"
    "), port_energy AS ("
    "    SELECT d.user_id, e.port_id, count (*) AS episodes,"
    "           sum (GREATEST (e.energy_wh, 0)) AS energy_wh"
    "      FROM due d JOIN episodes e ON e.user_id = d.user_id"
    "       AND e.started_at >= d.day_start AND e.started_at < d.day_end"
    "     GROUP BY d.user_id, e.port_id"
    "), ranked AS ("
    "    SELECT pe.*, p.name, row_number () OVER (PARTITION BY pe.user_id"
    "                             ORDER BY pe.energy_wh DESC, p.name, pe.port_id) AS rank"
    "      FROM port_energy pe JOIN ports p ON p.id = pe.port_id"
    "), totals AS ("
    "    SELECT user_id, sum (episodes) AS episodes, sum (energy_wh) AS energy_wh,"
    "           json_agg (json_build_object ('portId', port_id, 'name', name,"
    "                                        'episodes', episodes,"
    "                                        'energyWh', round (energy_wh::numeric, 1)::float8)"
    "                     ORDER BY rank) FILTER (WHERE rank <= 3) AS top_ports,"
    "           string_agg (name || ' ' || CASE WHEN energy_wh < 1000"
    "                           THEN round (energy_wh::numeric, 1) || ' Wh'"
    "                           ELSE round ((energy_wh / 1000)::numeric, 2) || ' kWh' END,"
    "                       ', ' ORDER BY rank) FILTER (WHERE rank <= 3) AS top_text"
    "      FROM ranked GROUP BY user_id"
    "), baseline AS ("
    "    SELECT d.user_id, sum (p.always_on_watts) FILTER (WHERE p.always_on_watts > 0) AS watts"
    "      FROM due d JOIN ports p ON p.user_id = d.user_id GROUP BY d.user_id"
    "), summary AS ("
    "    SELECT d.*, COALESCE (t.episodes, 0) AS episodes,"
    "           COALESCE (t.energy_wh, 0) AS energy_wh,"
    "           round ((COALESCE (t.energy_wh, 0) / 1000.0 * d.tariff)::numeric, 4) AS cost,"
    "           t.top_ports, t.top_text, b.watts,"
    "           round (b.watts::numeric * 8.76, 1) AS yearly_kwh,"
    "           round (b.watts::numeric * 8.76 * d.tariff::numeric, 2) AS yearly_cost"
    "      FROM due d LEFT JOIN totals t USING (user_id) LEFT JOIN baseline b USING (user_id)"
    "     WHERE t.episodes > 0 OR b.watts > 0"
    "), inserted AS ("
    "    INSERT INTO notifications (user_id, kind, dedupe_key, title, message, data)"
    "    SELECT user_id, 'digest', dedupe_key, 'Daily digest for ' || day,"
    "           day || ': ' || CASE WHEN episodes = 0 THEN 'no phantom episodes.'"
    "             ELSE episodes || ' phantom episode'"
    "                  || CASE WHEN episodes = 1 THEN '' ELSE 's' END"
    "                  || ' wasted ' || CASE WHEN energy_wh < 1000"
    "                                        THEN round (energy_wh::numeric, 1) || ' Wh'"
    "                                        ELSE round ((energy_wh / 1000)::numeric, 2)"
    "                                             || ' kWh' END"
    "                  || ', costing ' || CASE WHEN cost > 0 AND cost < 0.01 THEN cost::text"
    "                                          ELSE round (cost, 2)::text END"
    "                  || ' ' || currency || '.' END"
    "           || COALESCE (' Top: ' || top_text || '.', '')"
    "           || COALESCE (' Always-on baseline: ' || round (watts::numeric, 1) || ' W, about '"
    "                        || yearly_kwh || ' kWh (' || yearly_cost || ' ' || currency"
    "                        || ') a year.', ''),"
    "           json_build_object ('date', day, 'timeZone', tz, 'episodes', episodes,"
    "               'energyWh', round (energy_wh::numeric, 1)::float8,"
    "               'energyKwh', round ((energy_wh / 1000)::numeric, 4)::float8,"
    "               'cost', cost::float8, 'currency', currency,"
    "               'topPorts', COALESCE (top_ports, '[]'::json),"
    "               'baselineWatts', round (watts::numeric, 1)::float8,"
    "               'baselineYearlyKwh', yearly_kwh::float8,"
    "               'baselineYearlyCost', yearly_cost::float8)::jsonb"
    "      FROM summary"
    "    ON CONFLICT (user_id, dedupe_key) DO NOTHING"
    "    RETURNING id, user_id, dedupe_key"
    "), deliveries AS ("
    "    INSERT INTO webhook_deliveries (webhook_id, notification_id)"
    "    SELECT w.id, i.id FROM inserted i JOIN webhooks w ON w.user_id = i.user_id AND w.enabled"
    "    RETURNING notification_id"
    ")"
    " SELECT i.id, i.user_id, i.dedupe_key,"
    "        (SELECT count (*) FROM deliveries d WHERE d.notification_id = i.id),"
    "        pg_notify ('phantom_notification', i.user_id || ':' || i.id)"
    "   FROM inserted i";

notifier_digest_t *
notifier_digest_new (const char *conninfo, int hour, bool verbose)
{
    assert (conninfo);
    if (hour < 0 || hour > 23)
        return NULL;
    notifier_digest_t *self = (notifier_digest_t *)zmalloc (sizeof (notifier_digest_t));
    assert (self);
    self->conninfo = strdup (conninfo);
    assert (self->conninfo);
    self->hour = hour;
    self->verbose = verbose;
    return self;
}

void
notifier_digest_destroy (notifier_digest_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_digest_t *self = *self_p;
        PQfinish (self->db);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

//  0 if connected (self->ready says whether digests can be written).
static int
s_ensure_connected (notifier_digest_t *self)
{
    int rc = notifier_db_ensure (&self->db, self->conninfo);
    if (rc != 1)
        return rc;
    PGresult *result =
        notifier_db_exec (self->db, "notifier digest", "schema check",
                          "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
                          " WHERE table_schema = current_schema () AND table_name = 'users'"
                          " AND column_name = 'digest_enabled')"
                          " AND to_regclass ('webhook_deliveries') IS NOT NULL",
                          0, NULL);
    if (!result) {
        //  Checked again on the next connection
        PQfinish (self->db);
        self->db = NULL;
        return -1;
    }
    self->ready = streq (PQgetvalue (result, 0, 0), "t");
    PQclear (result);
    if (!self->ready)
        zsys_warning ("notifier digest - users.digest_enabled or webhook_deliveries missing"
                      " (migrations 003, 006): no digests");
    return 0;
}

int
notifier_digest_check (notifier_digest_t *self, int64_t now_ms)
{
    assert (self);
    if (s_ensure_connected (self))
        return -1;
    if (!self->ready)
        return 0;
    char now_text[24], hour_text[8];
    snprintf (now_text, sizeof now_text, "%" PRId64, now_ms);
    snprintf (hour_text, sizeof hour_text, "%d", self->hour);
    const char *values[] = {now_text, hour_text};
    //  A failure that broke the connection is mended by the next check's
    //  notifier_db_ensure.
    PGresult *result =
        notifier_db_exec (self->db, "notifier digest", "check", s_digest_sql, 2, values);
    if (!result)
        return -1;
    int written = PQntuples (result);
    for (int row = 0; row < written; row++)
        zsys_info ("notifier user %s - digest %s written (notification %s, %s deliveries)",
                   PQgetvalue (result, row, 1), PQgetvalue (result, row, 2),
                   PQgetvalue (result, row, 0), PQgetvalue (result, row, 3));
    PQclear (result);
    return written;
}

//  --------------------------------------------------------------------------
//  Self test

//  A user in time_zone with this tariff; digest_enabled as given.
static int64_t
s_test_user (PGconn *db, const char *time_zone, double tariff, const char *currency, bool enabled)
{
    int64_t user = notifier_test_db_user (db, tariff, currency);
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    free (notifier_test_db_value (db,
                                  "UPDATE users SET time_zone = $2, digest_enabled = $3::boolean"
                                  " WHERE id = $1::bigint RETURNING id",
                                  user_text, time_zone, enabled ? "true" : "false"));
    return user;
}

//  A port of user's with always_on_watts (NULL: unknown); caller frees.
static char *
s_test_port (PGconn *db, int64_t user, const char *name, const char *always_on_watts)
{
    char *port = notifier_test_db_port (db, user, name);
    if (always_on_watts)
        free (notifier_test_db_value (
            db,
            "UPDATE ports SET always_on_watts = $2::double precision WHERE id = $1::uuid"
            " RETURNING id",
            port, always_on_watts, NULL));
    return port;
}

//  An episode of port starting at started (ISO 8601, UTC) with energy_wh.
static void
s_test_episode (PGconn *db, const char *port, const char *started, const char *energy_wh)
{
    free (notifier_test_db_value (
        db,
        "INSERT INTO episodes (port_id, user_id, started_at, ended_at, mean_watts, energy_wh)"
        " SELECT id, user_id, $2::timestamptz, $2::timestamptz + interval '1 hour', 5,"
        "        $3::double precision FROM ports WHERE id = $1::uuid RETURNING id",
        port, started, energy_wh));
}

//  Digests of user (count), and of them the one with dedupe_key.
static int64_t
s_test_digests (PGconn *db, int64_t user)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    return notifier_test_db_int (
        db, "SELECT count(*) FROM notifications WHERE user_id = $1::bigint AND kind = 'digest'",
        user_text, NULL, NULL);
}

static char *
s_test_digest_field (PGconn *db, int64_t user, const char *dedupe_key, const char *expression)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    char *sql = zsys_sprintf ("SELECT %s FROM notifications WHERE user_id = $1::bigint"
                              " AND kind = 'digest' AND dedupe_key = $2",
                              expression);
    char *value = notifier_test_db_value (db, sql, user_text, dedupe_key, NULL);
    zstr_free (&sql);
    return value;
}

static void
s_test_expect (PGconn *db, int64_t user, const char *dedupe_key, const char *expression,
               const char *expected, bool verbose)
{
    char *value = s_test_digest_field (db, user, dedupe_key, expression);
    if (verbose || !value || !streq (value, expected))
        zsys_info ("notifier_digest - user %" PRId64 " %s: %s (expected %s)", user, expression,
                   value ? value : "(none)", expected);
    assert (value && streq (value, expected));
    free (value);
}

void
notifier_digest_test (bool verbose)
{
    printf (" * notifier_digest: ");
    if (verbose)
        printf ("\n");
    PGconn *db = notifier_test_db_connect ();
    //  2024-03-10 07:30 UTC: 08:30 in Berlin (UTC+1), 13:00 in Kolkata
    //  (UTC+5:30), 03:30 in New York (EDT since 07:00 UTC that very day).
    int64_t now = 1710055800000;
    assert (notifier_digest_new ("x", 24, verbose) == NULL);
    notifier_digest_t *digest = notifier_digest_new (notifier_test_db_conninfo (), 8, verbose);
    assert (digest);

    //  Berlin, four ports, yesterday local = [03-08 23:00Z, 03-09 23:00Z).
    int64_t berlin = s_test_user (db, "Europe/Berlin", 0.30, "EUR", true);
    char *tv = s_test_port (db, berlin, "TV", "2.5");
    char *lamp = s_test_port (db, berlin, "Desk lamp", NULL);
    char *router = s_test_port (db, berlin, "Router", "7.5");
    char *fridge = s_test_port (db, berlin, "Fridge", NULL);
    s_test_episode (db, tv, "2024-03-08T23:30:00Z", "600"); //  00:30 local: yesterday
    s_test_episode (db, tv, "2024-03-09T12:00:00Z", "200");
    s_test_episode (db, lamp, "2024-03-09T15:00:00Z", "400");
    s_test_episode (db, router, "2024-03-09T05:00:00Z", "50");
    s_test_episode (db, fridge, "2024-03-09T06:00:00Z", "10");  //  4th: not in the top 3
    s_test_episode (db, tv, "2024-03-09T23:10:00Z", "1000");    //  00:10 local today
    s_test_episode (db, fridge, "2024-03-08T22:50:00Z", "999"); //  23:50 local, the day before
    char berlin_text[24];
    snprintf (berlin_text, sizeof berlin_text, "%" PRId64, berlin);
    char *webhook = notifier_test_db_value (
        db,
        "INSERT INTO webhooks (user_id, url, secret) VALUES ($1::bigint, 'http://127.0.0.1:1/',"
        " 's') RETURNING id",
        berlin_text, NULL, NULL);
    assert (webhook);

    //  Kolkata: an episode at 23:30 local yesterday, and one just after midnight.
    int64_t kolkata = s_test_user (db, "Asia/Kolkata", 8, "INR", true);
    char *heater = s_test_port (db, kolkata, "Heater", NULL);
    s_test_episode (db, heater, "2024-03-09T18:00:00Z", "250");
    s_test_episode (db, heater, "2024-03-09T18:45:00Z", "300");

    //  New York: episodes yesterday, but not yet 08:00 there.
    int64_t new_york = s_test_user (db, "America/New_York", 0.20, "USD", true);
    char *console = s_test_port (db, new_york, "Console", NULL);
    s_test_episode (db, console, "2024-03-09T15:00:00Z", "100");

    //  Opted out, in Berlin, with episodes and a baseline.
    int64_t opted_out = s_test_user (db, "Europe/Berlin", 0.30, "EUR", false);
    char *quiet = s_test_port (db, opted_out, "Amp", "3");
    s_test_episode (db, quiet, "2024-03-09T12:00:00Z", "500");

    //  Berlin, only an older episode and no baseline: nothing to say.
    int64_t idle = s_test_user (db, "Europe/Berlin", 0.30, "EUR", true);
    char *old = s_test_port (db, idle, "Kettle", NULL);
    s_test_episode (db, old, "2024-03-07T12:00:00Z", "500");

    //  Berlin, a baseline but no episode: the baseline alone is news.
    int64_t steady = s_test_user (db, "Europe/Berlin", 0.30, "EUR", true);
    char *modem = s_test_port (db, steady, "Modem", "4");

    //  A time zone PostgreSQL does not know is taken as UTC (07:30: not yet)
    //  and does not break the others.
    int64_t unknown = s_test_user (db, "Mars/Olympus_Mons", 0.30, "EUR", true);
    char *rover = s_test_port (db, unknown, "Rover", NULL);
    s_test_episode (db, rover, "2024-03-09T10:00:00Z", "30");

    //  The first check: Berlin, Kolkata and the baseline-only user.
    int written = notifier_digest_check (digest, now);
    assert (written >= 3);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, steady) == 1);
    assert (s_test_digests (db, new_york) == 0);
    assert (s_test_digests (db, opted_out) == 0);
    assert (s_test_digests (db, idle) == 0);
    assert (s_test_digests (db, unknown) == 0);

    const char *today = "digest:2024-03-10";
    s_test_expect (db, berlin, today, "title", "Daily digest for 2024-03-09", verbose);
    s_test_expect (db, berlin, today, "message",
                   "2024-03-09: 5 phantom episodes wasted 1.26 kWh, costing 0.38 EUR."
                   " Top: TV 800.0 Wh, Desk lamp 400.0 Wh, Router 50.0 Wh."
                   " Always-on baseline: 10.0 W, about 87.6 kWh (26.28 EUR) a year.",
                   verbose);
    s_test_expect (db, berlin, today,
                   "concat_ws (' ', data->>'date', data->>'timeZone', data->>'episodes',"
                   " data->>'energyWh', data->>'energyKwh', data->>'cost', data->>'currency',"
                   " data->>'baselineWatts', data->>'baselineYearlyKwh',"
                   " data->>'baselineYearlyCost', (port_id IS NULL)::text)",
                   "2024-03-09 Europe/Berlin 5 1260 1.26 0.378 EUR 10 87.6 26.28 true", verbose);
    s_test_expect (db, berlin, today,
                   "(SELECT string_agg (p->>'name' || '=' || (p->>'energyWh') || '/' ||"
                   " (p->>'episodes'), ',' ORDER BY n) FROM jsonb_array_elements (data->'topPorts')"
                   " WITH ORDINALITY AS t (p, n))",
                   "TV=800/2,Desk lamp=400/1,Router=50/1", verbose);
    char *tv_first = s_test_digest_field (db, berlin, today, "data->'topPorts'->0->>'portId'");
    assert (tv_first && streq (tv_first, tv));
    free (tv_first);
    //  Its webhook delivery is in the same outbox as every notification.
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM webhook_deliveries d JOIN notifications n"
                                  " ON n.id = d.notification_id WHERE d.webhook_id = $1::bigint"
                                  " AND n.kind = 'digest' AND d.status = 'pending'",
                                  webhook, NULL, NULL) == 1);

    s_test_expect (db, kolkata, today, "message",
                   "2024-03-09: 1 phantom episode wasted 250.0 Wh, costing 2.00 INR."
                   " Top: Heater 250.0 Wh.",
                   verbose);
    s_test_expect (db, kolkata, today,
                   "concat_ws (' ', data->>'episodes', data->>'cost', data->>'baselineWatts',"
                   " jsonb_array_length (data->'topPorts'))",
                   "1 2 1", verbose);
    s_test_expect (db, steady, today, "message",
                   "2024-03-09: no phantom episodes."
                   " Always-on baseline: 4.0 W, about 35.0 kWh (10.51 EUR) a year.",
                   verbose);

    //  Again at the same moment, and by a fresh instance (a restart): nothing new.
    notifier_digest_check (digest, now);
    notifier_digest_destroy (&digest);
    digest = notifier_digest_new (notifier_test_db_conninfo (), 8, verbose);
    notifier_digest_check (digest, now + 60000);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, steady) == 1);
    assert (s_test_digests (db, new_york) == 0);

    //  12:30 UTC: 08:30 in New York, whose yesterday is [03-09 05:00Z,
    //  03-10 05:00Z); the unknown zone is past 08:00 UTC. Still one each
    //  for the others, and never one for the opted-out or idle users.
    int64_t later = now + 5 * 3600 * 1000;
    assert (notifier_digest_check (digest, later) >= 2);
    assert (s_test_digests (db, new_york) == 1);
    s_test_expect (db, new_york, today, "message",
                   "2024-03-09: 1 phantom episode wasted 100.0 Wh, costing 0.02 USD."
                   " Top: Console 100.0 Wh.",
                   verbose);
    assert (s_test_digests (db, unknown) == 1);
    s_test_expect (db, unknown, today, "data->>'timeZone' || ' ' || (data->>'energyWh')", "UTC 30",
                   verbose);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, opted_out) == 0);
    assert (s_test_digests (db, idle) == 0);

    //  The next day in Berlin at 09:00 local: yesterday (03-10) had the
    //  00:10 episode of 1000 Wh, and a new digest key.
    int64_t next_day = now + 86400000LL + 1800000;
    notifier_digest_check (digest, next_day);
    assert (s_test_digests (db, berlin) == 2);
    s_test_expect (db, berlin, "digest:2024-03-11", "message",
                   "2024-03-10: 1 phantom episode wasted 1.00 kWh, costing 0.30 EUR."
                   " Top: TV 1.00 kWh."
                   " Always-on baseline: 10.0 W, about 87.6 kWh (26.28 EUR) a year.",
                   verbose);

    //  A database that is not there: -1, nothing crashes.
    notifier_digest_t *lost = notifier_digest_new ("host=/nonexistent port=1 dbname=x", 8, verbose);
    assert (notifier_digest_check (lost, now) == -1);
    notifier_digest_destroy (&lost);

    notifier_digest_destroy (&digest);
    int64_t users[] = {berlin, kolkata, new_york, opted_out, idle, steady, unknown};
    for (size_t index = 0; index < sizeof users / sizeof users[0]; index++)
        notifier_test_db_drop_user (db, users[index]);
    char *ports[] = {tv, lamp, router, fridge, heater, console, quiet, old, modem, rover};
    for (size_t index = 0; index < sizeof ports / sizeof ports[0]; index++)
        free (ports[index]);
    free (webhook);
    PQfinish (db);
    printf ("OK\n");
}
