/*  =========================================================================
    notifier_digest - the daily digest per user

    PostgreSQL knows the time zones, the day boundaries (DST days have 23
    or 25 hours) and the figures, so one statement finds the users due and
    their ports' figures for yesterday; the text is written here (ICU, in
    the user's locale), and one statement per user writes it with its
    webhook deliveries and its announcement, together or not at all.
    =========================================================================
*/
#include "notifier_digest.h"
#include "notifier_db.h"
#include "notifier_format.h"
#include "notifier_test_db.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>

#define BATCH_USERS 64 //  users whose figures one statement reads
#define TOP_PORTS 3    //  ports named as wasting most

struct _notifier_digest_t {
    char *conninfo; //  libpq connection string
    PGconn *db;     //  NULL until connected, and after a failure
    bool ready;     //  the schema has what the digest needs
    int hour;       //  local hour from which a day's digest is due
    bool verbose;   //  log each digest
};

//  $1: now (Unix ms), $2: digest hour, $3: the last user id of the batch
//  before, $4: users per batch. One row per port of each due user, in
//  user order. A time zone PostgreSQL does not know counts as UTC, so one
//  bad row cannot fail every user's digest. A user whose ports have
//  neither a reading nor a rolled-up reported minute yesterday is not
//  asked for figures (a quick test; the rule, no reported time, is
//  applied to the figures).
static const char *s_figures_sql =
    "WITH zoned AS ("
    "    SELECT u.id AS user_id, u.currency, COALESCE (u.locale, '') AS locale,"
    "           COALESCE (known.name, 'UTC') AS tz"
    "      FROM users u"
    "      LEFT JOIN (SELECT DISTINCT ON (lower (name)) name FROM pg_timezone_names) known"
    "             ON lower (known.name) = lower (u.time_zone)"
    "     WHERE u.digest_enabled AND u.id > $3::bigint"
    "       AND EXISTS (SELECT 1 FROM ports p WHERE p.user_id = u.id)"
    "), localised AS ("
    "    SELECT zoned.*, to_timestamp ($1::bigint / 1000.0) AT TIME ZONE tz AS local_now"
    "      FROM zoned"
    "), days AS ("
    "    SELECT user_id, currency, locale, tz,"
    "           'digest:' || to_char (local_now, 'YYYY-MM-DD') AS dedupe_key,"
    "           to_char (local_now::date - 1, 'YYYY-MM-DD') AS day,"
    "           (local_now::date - 1)::timestamp AT TIME ZONE tz AS day_start,"
    "           local_now::date::timestamp AT TIME ZONE tz AS day_end"
    "      FROM localised"
    "     WHERE extract (hour FROM local_now) >= $2::int"
    "), due AS ("
    "    SELECT * FROM days d"
    "     WHERE NOT EXISTS (SELECT 1 FROM notifications n WHERE n.user_id = d.user_id"
    "                          AND n.dedupe_key = d.dedupe_key)"
    "       AND (EXISTS (SELECT 1 FROM ports p JOIN readings r ON r.port_id = p.id"
    "                     WHERE p.user_id = d.user_id AND r.ts >= d.day_start"
    "                       AND r.ts < d.day_end)"
    "            OR EXISTS (SELECT 1 FROM ports p JOIN readings_minute m ON m.port_id = p.id"
    "                        WHERE p.user_id = d.user_id AND m.minute >= d.day_start"
    "                          AND m.minute < d.day_end AND m.reported_seconds > 0))"
    "     ORDER BY user_id LIMIT $4::int"
    ")"
    " SELECT d.user_id, d.dedupe_key, d.day, d.tz, d.locale, d.currency,"
    "        (extract (epoch FROM d.day_start) * 1000)::bigint,"
    "        f.port_id, f.name, f.role, f.day_energy_wh, f.day_reported_s, f.day_phantom_wh,"
    "        f.day_phantom_cost, f.reported_hours, f.year_phantom_kwh, f.year_phantom_cost"
    "   FROM due d"
    "   CROSS JOIN LATERAL phantom_figures (d.user_id, d.day_start, d.day_end,"
    "                                       to_timestamp ($1::bigint / 1000.0)) f"
    "  ORDER BY d.user_id";

//  Columns of s_figures_sql.
enum {
    S_USER,
    S_KEY,
    S_DAY,
    S_ZONE,
    S_LOCALE,
    S_CURRENCY,
    S_DAY_START,
    S_PORT,
    S_NAME,
    S_ROLE,
    S_ENERGY,
    S_REPORTED,
    S_PHANTOM,
    S_PHANTOM_COST,
    S_HOURS,
    S_YEAR_KWH,
    S_YEAR_COST
};

//  $1 user, $2 dedupe key, $3 title, $4 message, $5 data. Nothing if the
//  digest exists already (a concurrent check won).
static const char *s_insert_sql =
    "WITH inserted AS ("
    "    INSERT INTO notifications (user_id, kind, dedupe_key, title, message, data)"
    "    VALUES ($1::bigint, 'digest', $2, $3, $4, $5::jsonb)"
    "    ON CONFLICT (user_id, dedupe_key) DO NOTHING"
    "    RETURNING id, user_id"
    "), deliveries AS ("
    "    INSERT INTO webhook_deliveries (webhook_id, notification_id)"
    "    SELECT w.id, i.id FROM inserted i JOIN webhooks w ON w.user_id = i.user_id AND w.enabled"
    "    RETURNING notification_id"
    ")"
    " SELECT i.id, (SELECT count (*) FROM deliveries),"
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
    int rc = proto_pg_ensure (&self->db, self->conninfo, NOTIFIER_DB_APPLICATION,
                              NOTIFIER_DB_STATEMENT_TIMEOUT_MS);
    if (rc != 1)
        return rc;
    PGresult *result =
        proto_pg_exec (self->db, "notifier digest", "schema check",
                       "SELECT EXISTS (SELECT 1 FROM information_schema.columns"
                       " WHERE table_schema = current_schema () AND table_name = 'users'"
                       " AND column_name = 'digest_enabled')"
                       " AND to_regclass ('webhook_deliveries') IS NOT NULL"
                       " AND to_regproc ('phantom_figures') IS NOT NULL",
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
        zsys_warning ("notifier digest - users.digest_enabled, webhook_deliveries or"
                      " phantom_figures missing (migrations 003, 006, 013): no digests");
    return 0;
}

//  A port named in the digest.
typedef struct {
    const char *port; //  its id, borrowed from the result
    const char *name; //  borrowed too
    double wh;        //  phantom energy yesterday
    double cost;      //  and its cost
} s_top_t;

//  One user's figures for yesterday: the sums of phantom_figures' rows.
typedef struct {
    double energy_wh;    //  energy used
    double reported_s;   //  reported time
    double phantom_wh;   //  phantom energy
    double phantom_cost; //  its cost
    double year_kwh;     //  projection of the ports that are not learning
    double year_cost;
    int year_ports;         //  ports not learning
    int learning;           //  ports learning
    double learning_hours;  //  the most reported hours of a learning port
    s_top_t top[TOP_PORTS]; //  ports that wasted most, not always-on
    int tops;               //  of top used
} s_day_t;

static double
s_real (PGresult *result, int row, int column)
{
    if (PQgetisnull (result, row, column))
        return 0;
    double value = strtod (PQgetvalue (result, row, column), NULL);
    return isfinite (value) ? value : 0;
}

//  Whether a goes before b in the top: more waste, then by name and id.
static bool
s_top_before (const s_top_t *a, const s_top_t *b)
{
    if (a->wh != b->wh)
        return a->wh > b->wh;
    int order = strcmp (a->name, b->name);
    return order ? order < 0 : strcmp (a->port, b->port) < 0;
}

static void
s_day_add (s_day_t *self, PGresult *result, int row)
{
    self->energy_wh += s_real (result, row, S_ENERGY);
    self->reported_s += s_real (result, row, S_REPORTED);
    double wh = s_real (result, row, S_PHANTOM), cost = s_real (result, row, S_PHANTOM_COST);
    self->phantom_wh += wh;
    self->phantom_cost += cost;
    if (PQgetisnull (result, row, S_YEAR_KWH)) {
        self->learning++;
        self->learning_hours = fmax (self->learning_hours, s_real (result, row, S_HOURS));
    } else {
        self->year_ports++;
        self->year_kwh += s_real (result, row, S_YEAR_KWH);
        self->year_cost += s_real (result, row, S_YEAR_COST);
    }
    //  An always-on port's draw is its job: never named as waste.
    if (wh <= 0 || streq (PQgetvalue (result, row, S_ROLE), "always_on"))
        return;
    s_top_t port = {PQgetvalue (result, row, S_PORT), PQgetvalue (result, row, S_NAME), wh, cost};
    int at = self->tops < TOP_PORTS ? self->tops++ : TOP_PORTS;
    while (at > 0 && s_top_before (&port, &self->top[at - 1])) {
        if (at < TOP_PORTS)
            self->top[at] = self->top[at - 1];
        at--;
    }
    if (at < TOP_PORTS)
        self->top[at] = port;
}

//  Appends what format makes of the arguments to *text (NULL: empty).
static void
s_append (char **text, const char *format, ...)
{
    va_list arguments;
    va_start (arguments, format);
    char *part = zsys_vprintf (format, arguments);
    va_end (arguments);
    char *joined = part ? zsys_sprintf ("%s%s", *text ? *text : "", part) : NULL;
    zstr_free (&part);
    zstr_free (text);
    *text = joined;
}

static double
s_rounded (double value, double unit)
{
    return round (value / unit) * unit;
}

//  The digest's title, message and data (JSON text); false if out of memory.
static bool
s_compose (const s_day_t *day, PGresult *result, int row, char **title, char **message, char **data)
{
    const char *locale = PQgetvalue (result, row, S_LOCALE);
    const char *currency = PQgetvalue (result, row, S_CURRENCY);
    const char *zone = PQgetvalue (result, row, S_ZONE);
    notifier_format_t *format = notifier_format_new (locale, currency, zone);
    char date[NOTIFIER_FORMAT_MAX], wasted[NOTIFIER_FORMAT_MAX], cost[NOTIFIER_FORMAT_MAX],
        used[NOTIFIER_FORMAT_MAX], year_kwh[NOTIFIER_FORMAT_MAX], year_cost[NOTIFIER_FORMAT_MAX];
    notifier_format_date (format, strtoll (PQgetvalue (result, row, S_DAY_START), NULL, 10), date);
    notifier_format_energy (format, day->energy_wh, used);
    *title = zsys_sprintf ("Daily digest for %s", date);
    *message = NULL;
    if (day->phantom_wh > 0)
        s_append (message, "%s: phantom load wasted %s, costing %s, of %s used.", date,
                  notifier_format_energy (format, day->phantom_wh, wasted),
                  notifier_format_money (format, day->phantom_cost, cost), used);
    else
        s_append (message, "%s: no phantom load, %s used.", date, used);
    for (int index = 0; index < day->tops; index++) {
        const s_top_t *top = &day->top[index];
        s_append (message, "%s %s %s (%s)%s", index ? "" : " Wasted most:", top->name,
                  notifier_format_energy (format, top->wh, wasted),
                  notifier_format_money (format, top->cost, cost),
                  index + 1 < day->tops ? "," : ".");
    }
    if (day->year_ports == 0)
        s_append (message, " Projected per year: still learning (%d h of data).",
                  (int)floor (day->learning_hours));
    else {
        s_append (message, " Projected per year: %s (%s)",
                  notifier_format_energy (format, day->year_kwh * 1000, year_kwh),
                  notifier_format_money (format, day->year_cost, year_cost));
        if (day->learning)
            s_append (message, ", %d port%s still learning", day->learning,
                      day->learning == 1 ? "" : "s");
        s_append (message, ".");
    }
    json_t *tops = json_array ();
    for (int index = 0; index < day->tops; index++)
        json_array_append_new (tops, json_pack ("{s:s, s:s, s:f, s:f}", "portId",
                                                day->top[index].port, "name", day->top[index].name,
                                                "energyWh", s_rounded (day->top[index].wh, 0.001),
                                                "cost", s_rounded (day->top[index].cost, 0.0001)));
    json_t *year_kwh_value =
        day->year_ports ? json_real (s_rounded (day->year_kwh, 0.0001)) : json_null ();
    json_t *year_cost_value =
        day->year_ports ? json_real (s_rounded (day->year_cost, 0.0001)) : json_null ();
    json_t *object = json_pack (
        "{s:s, s:s, s:s, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:o, s:i, s:i, s:o}", "date",
        PQgetvalue (result, row, S_DAY), "timeZone", notifier_format_time_zone (format), "locale",
        *locale ? locale : "en", "currency", currency, "energyWh",
        s_rounded (day->phantom_wh, 0.001), "energyKwh", s_rounded (day->phantom_wh / 1000, 1e-6),
        "cost", s_rounded (day->phantom_cost, 0.0001), "usedWh", s_rounded (day->energy_wh, 0.001),
        "usedKwh", s_rounded (day->energy_wh / 1000, 1e-6), "reportedHours",
        s_rounded (day->reported_s / 3600, 0.001), "phantomKwhYear", year_kwh_value,
        "phantomCostYear", year_cost_value, "yearPorts", day->year_ports, "learningPorts",
        day->learning, "topPorts", tops);
    *data = object ? json_dumps (object, JSON_COMPACT | JSON_REAL_PRECISION (12)) : NULL;
    json_decref (object);
    notifier_format_destroy (&format);
    return *title && *message && *data;
}

//  Writes the digest of the user whose rows start at row and end before
//  end. 1 if written, 0 if not due (no reported time yesterday, or written
//  meanwhile), -1 if the database failed.
static int
s_write (notifier_digest_t *self, PGresult *result, int row, int end)
{
    s_day_t day;
    memset (&day, 0, sizeof day);
    for (int port = row; port < end; port++)
        s_day_add (&day, result, port);
    const char *user = PQgetvalue (result, row, S_USER);
    const char *dedupe_key = PQgetvalue (result, row, S_KEY);
    if (day.reported_s <= 0) {
        if (self->verbose)
            zsys_debug ("notifier user %s - no port reported on %s: no digest", user,
                        PQgetvalue (result, row, S_DAY));
        return 0;
    }
    char *title = NULL, *message = NULL, *data = NULL;
    int written = -1;
    if (s_compose (&day, result, row, &title, &message, &data)) {
        const char *values[] = {user, dedupe_key, title, message, data};
        PGresult *inserted =
            proto_pg_exec (self->db, "notifier digest", "insert", s_insert_sql, 5, values);
        if (inserted) {
            written = PQntuples (inserted) == 1;
            if (written)
                zsys_info ("notifier user %s - digest %s written (notification %s, %s"
                           " deliveries)",
                           user, dedupe_key, PQgetvalue (inserted, 0, 0),
                           PQgetvalue (inserted, 0, 1));
        }
        PQclear (inserted);
    } else
        zsys_warning ("notifier user %s - cannot build digest %s", user, dedupe_key);
    zstr_free (&title);
    zstr_free (&message);
    free (data);
    return written;
}

int
notifier_digest_check (notifier_digest_t *self, int64_t now_ms)
{
    assert (self);
    if (s_ensure_connected (self))
        return -1;
    if (!self->ready)
        return 0;
    char now_text[24], hour_text[8], after_text[24] = "0", batch_text[8];
    snprintf (now_text, sizeof now_text, "%" PRId64, now_ms);
    snprintf (hour_text, sizeof hour_text, "%d", self->hour);
    snprintf (batch_text, sizeof batch_text, "%d", BATCH_USERS);
    int written = 0;
    //  A batch of users at a time bounds each statement; a user whose day
    //  had no reported time is passed over (and asked again next check).
    while (true) {
        const char *values[] = {now_text, hour_text, after_text, batch_text};
        //  A failure that broke the connection is mended by the next
        //  check's proto_pg_ensure.
        PGresult *result =
            proto_pg_exec (self->db, "notifier digest", "figures", s_figures_sql, 4, values);
        if (!result)
            return -1;
        int rows = PQntuples (result), users = 0;
        for (int row = 0, end; row < rows; row = end) {
            const char *user = PQgetvalue (result, row, S_USER);
            for (end = row + 1; end < rows && streq (PQgetvalue (result, end, S_USER), user);)
                end++;
            users++;
            int rc = s_write (self, result, row, end);
            if (rc == -1) {
                PQclear (result);
                return -1;
            }
            written += rc;
            snprintf (after_text, sizeof after_text, "%s", user);
        }
        PQclear (result);
        if (users < BATCH_USERS)
            return written;
    }
}

//  --------------------------------------------------------------------------
//  Self test

//  Runs sql with count text parameters; asserts it worked.
static void
s_test_exec (PGconn *db, const char *sql, int count, const char *const *values)
{
    PGresult *result = PQexecParams (db, sql, count, NULL, values, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_COMMAND_OK && PQresultStatus (result) != PGRES_TUPLES_OK)
        zsys_error ("notifier_digest test - %s: %s", sql, PQerrorMessage (db));
    assert (PQresultStatus (result) == PGRES_COMMAND_OK ||
            PQresultStatus (result) == PGRES_TUPLES_OK);
    PQclear (result);
}

//  A user in time_zone with this flat tariff and locale (NULL: none);
//  digest_enabled as given.
static int64_t
s_test_user (PGconn *db, const char *time_zone, double tariff, const char *currency,
             const char *locale, bool enabled)
{
    int64_t user = notifier_test_db_user (db, tariff, currency);
    notifier_test_db_user_place (db, user, time_zone, locale);
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    const char *values[] = {user_text, enabled ? "true" : "false"};
    s_test_exec (db, "UPDATE users SET digest_enabled = $2::boolean WHERE id = $1::bigint", 2,
                 values);
    return user;
}

//  A port of user's with role; caller frees.
static char *
s_test_port (PGconn *db, int64_t user, const char *name, const char *role)
{
    char *port = notifier_test_db_port (db, user, name);
    const char *values[] = {port, role};
    s_test_exec (db, "UPDATE ports SET role = $2 WHERE id = $1::uuid", 2, values);
    return port;
}

//  count rolled-up minutes of port from from (ISO 8601), each with
//  energy_wh and reported seconds, as the store's rollups keep them.
static void
s_test_minutes (PGconn *db, const char *port, const char *from, const char *count,
                const char *energy_wh, const char *reported)
{
    const char *values[] = {port, from, count, energy_wh, reported};
    s_test_exec (db,
                 "INSERT INTO readings_minute (port_id, minute, min_power, mean_power, max_power,"
                 "                             energy_wh, samples, reported_seconds)"
                 " SELECT $1::uuid, m, 1, 1, 1, $4::float8, 12, $5::float8"
                 "   FROM generate_series ($2::timestamptz,"
                 "                         $2::timestamptz + ($3::int - 1) * interval '1 minute',"
                 "                         interval '1 minute') m",
                 5, values);
}

//  An episode of port from started to ended (ISO 8601) with energy_wh.
static void
s_test_episode (PGconn *db, const char *port, const char *started, const char *ended,
                const char *energy_wh)
{
    const char *values[] = {port, started, ended, energy_wh};
    s_test_exec (db,
                 "INSERT INTO episodes (port_id, user_id, started_at, ended_at, mean_watts,"
                 "                      energy_wh)"
                 " SELECT id, user_id, $2::timestamptz, $3::timestamptz, 5, $4::float8"
                 "   FROM ports WHERE id = $1::uuid",
                 4, values);
}

//  Digests of user.
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
    //  The figures read whole minutes before the rollups' watermark from
    //  readings_minute: the minutes below are seeded there.
    if (notifier_test_db_int (db,
                              "SELECT count(*) FROM rollup_state"
                              " WHERE watermark > '2024-04-01T00:00:00Z'",
                              NULL, NULL, NULL) != 1) {
        zsys_error ("notifier_digest test - the test database's rollup watermark is before"
                    " 2024-04: the seeded minutes would not be read");
        assert (false);
    }
    //  2024-03-10 07:30 UTC: 08:30 in Berlin (UTC+1), 13:00 in Kolkata
    //  (UTC+5:30), 03:30 in New York (EDT since 07:00 UTC that very day).
    int64_t now = 1710055800000;
    const char *today = "digest:2024-03-10";
    assert (notifier_digest_new ("x", 24, verbose) == NULL);
    notifier_digest_t *digest = notifier_digest_new (notifier_test_db_conninfo (), 8, verbose);
    assert (digest);

    //  Berlin, yesterday local = [03-08 23:00Z, 03-09 23:00Z). The TV
    //  reported all day (1440 minutes, 72 Wh) and 16 h the day before: 40
    //  h in the last 30 days; two episodes yesterday, 10 and 20 Wh at a
    //  flat 0.30 EUR/kWh. The lamp reported 10 h (12 Wh): still learning.
    int64_t berlin = s_test_user (db, "Europe/Berlin", 0.30, "EUR", NULL, true);
    char *tv = s_test_port (db, berlin, "TV", "standby");
    char *lamp = s_test_port (db, berlin, "Lamp", "standby");
    s_test_minutes (db, tv, "2024-03-08T23:00:00Z", "1440", "0.05", "60");
    s_test_minutes (db, tv, "2024-03-08T07:00:00Z", "960", "0.05", "60");
    s_test_minutes (db, lamp, "2024-03-09T06:00:00Z", "600", "0.02", "60");
    s_test_episode (db, tv, "2024-03-09T01:00:00Z", "2024-03-09T02:00:00Z", "10");
    s_test_episode (db, tv, "2024-03-09T10:00:00Z", "2024-03-09T11:00:00Z", "20");
    char berlin_text[24];
    snprintf (berlin_text, sizeof berlin_text, "%" PRId64, berlin);
    char *webhook = notifier_test_db_value (
        db,
        "INSERT INTO webhooks (user_id, url, secret) VALUES ($1::bigint, 'http://127.0.0.1:1/',"
        " 's') RETURNING id",
        berlin_text, NULL, NULL);
    assert (webhook);

    //  Munich, in German, five wasting ports: the top three by waste are
    //  named, never the always-on router (though its episode, from before
    //  it was made always-on, counts in the total as on the overview). An
    //  episode across midnight counts its part of the day; the tariff
    //  changes at noon.
    int64_t munich = s_test_user (db, "Europe/Berlin", 0.25, "EUR", "de-DE", true);
    char munich_text[24];
    snprintf (munich_text, sizeof munich_text, "%" PRId64, munich);
    const char *tariff_values[] = {munich_text};
    s_test_exec (db,
                 "INSERT INTO tariffs (user_id, valid_from, price_per_kwh)"
                 " VALUES ($1::bigint, '2024-03-09T11:00:00Z', 0.40)",
                 1, tariff_values);
    const char *names[] = {"Amp", "Beamer", "Console", "Dryer", "Router"};
    const char *energies[] = {"120", "45.5", "800", "3", "2000"};
    char *munich_ports[5];
    for (int index = 0; index < 5; index++) {
        munich_ports[index] =
            s_test_port (db, munich, names[index], index == 4 ? "always_on" : "should_be_off");
        s_test_minutes (db, munich_ports[index], "2024-03-08T23:00:00Z", "1440", "0.5", "60");
        s_test_episode (db, munich_ports[index], "2024-03-09T08:00:00Z", "2024-03-09T14:00:00Z",
                        energies[index]);
    }
    //  Half of it yesterday (22:00 to 02:00 local): 60 of 120 Wh.
    s_test_episode (db, munich_ports[3], "2024-03-09T21:00:00Z", "2024-03-10T01:00:00Z", "120");

    //  Kolkata: yesterday local = [03-08 18:30Z, 03-09 18:30Z); an episode
    //  at 23:30 local yesterday counts, one just after midnight does not
    //  (but does in the last 30 days: 550 Wh over 24 h for the year).
    int64_t kolkata = s_test_user (db, "Asia/Kolkata", 8, "INR", "en", true);
    char *heater = s_test_port (db, kolkata, "Heater", "standby");
    s_test_minutes (db, heater, "2024-03-08T18:30:00Z", "1440", "1", "60");
    s_test_episode (db, heater, "2024-03-09T18:00:00Z", "2024-03-09T18:20:00Z", "250");
    s_test_episode (db, heater, "2024-03-09T18:45:00Z", "2024-03-09T19:00:00Z", "300");

    //  New York: reported yesterday, but not yet 08:00 there.
    int64_t new_york = s_test_user (db, "America/New_York", 0.20, "USD", "en-US", true);
    char *console = s_test_port (db, new_york, "Console", "standby");
    s_test_minutes (db, console, "2024-03-09T05:00:00Z", "1440", "0.1", "60");
    s_test_episode (db, console, "2024-03-09T15:00:00Z", "2024-03-09T16:00:00Z", "100");

    //  Opted out, in Berlin, with readings and an episode.
    int64_t opted_out = s_test_user (db, "Europe/Berlin", 0.30, "EUR", NULL, false);
    char *quiet = s_test_port (db, opted_out, "Amp", "standby");
    s_test_minutes (db, quiet, "2024-03-08T23:00:00Z", "60", "0.1", "60");
    s_test_episode (db, quiet, "2024-03-09T12:00:00Z", "2024-03-09T13:00:00Z", "500");

    //  Berlin, no port reported yesterday: an episode (from a backfill, say)
    //  and the day before's minutes are not enough; nor is one lone reading
    //  yesterday, which makes no reported interval.
    int64_t silent = s_test_user (db, "Europe/Berlin", 0.30, "EUR", NULL, true);
    char *kettle = s_test_port (db, silent, "Kettle", "standby");
    s_test_minutes (db, kettle, "2024-03-07T23:00:00Z", "1440", "0.1", "60");
    s_test_episode (db, kettle, "2024-03-09T12:00:00Z", "2024-03-09T13:00:00Z", "500");
    const char *lone_values[] = {kettle};
    s_test_exec (db,
                 "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
                 " VALUES ($1::uuid, '2024-03-09T12:00:00Z', 230, 0.1, 23, 1)",
                 1, lone_values);

    //  A time zone PostgreSQL does not know is taken as UTC (07:30: not yet)
    //  and does not break the others.
    int64_t unknown = s_test_user (db, "Mars/Olympus_Mons", 0.30, "EUR", NULL, true);
    char *rover = s_test_port (db, unknown, "Rover", "standby");
    s_test_minutes (db, rover, "2024-03-09T00:00:00Z", "120", "0.1", "60");
    s_test_episode (db, rover, "2024-03-09T00:10:00Z", "2024-03-09T00:20:00Z", "3");

    //  The first check: Berlin, Munich and Kolkata.
    int written = notifier_digest_check (digest, now);
    assert (written >= 3);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, munich) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, new_york) == 0);
    assert (s_test_digests (db, opted_out) == 0);
    assert (s_test_digests (db, silent) == 0);
    assert (s_test_digests (db, unknown) == 0);

    //  Berlin, by hand: 30 Wh wasted (0.009 EUR), 84 Wh used; per year the
    //  TV's 30 Wh over 40 reported hours, 6.57 kWh and 1.971 EUR.
    s_test_expect (db, berlin, today, "title", "Daily digest for Mar 9, 2024", verbose);
    s_test_expect (db, berlin, today, "message",
                   "Mar 9, 2024: phantom load wasted 30 Wh, costing \xe2\x82\xac"
                   "0.01, of 84 Wh used. Wasted most: TV 30 Wh (\xe2\x82\xac"
                   "0.01). Projected per year: 6.57 kWh (\xe2\x82\xac"
                   "1.97), 1 port still learning.",
                   verbose);
    s_test_expect (db, berlin, today,
                   "concat_ws (' ', data->>'date', data->>'timeZone', data->>'locale',"
                   " data->>'energyWh', data->>'energyKwh', data->>'cost', data->>'currency',"
                   " data->>'usedWh', data->>'usedKwh', data->>'reportedHours',"
                   " round ((data->>'phantomKwhYear')::numeric, 3),"
                   " round ((data->>'phantomCostYear')::numeric, 3), data->>'yearPorts',"
                   " data->>'learningPorts', (port_id IS NULL)::text)",
                   "2024-03-09 Europe/Berlin en 30.0 0.03 0.009 EUR 84.0 0.084 34.0 6.570 1.971 1"
                   " 1 true",
                   verbose);
    s_test_expect (db, berlin, today,
                   "(SELECT string_agg (p->>'name' || '=' || (p->>'energyWh') || '/' ||"
                   " (p->>'cost'), ',' ORDER BY n) FROM jsonb_array_elements (data->'topPorts')"
                   " WITH ORDINALITY AS t (p, n))",
                   "TV=30.0/0.009", verbose);
    char *tv_first = s_test_digest_field (db, berlin, today, "data->'topPorts'->0->>'portId'");
    assert (tv_first && streq (tv_first, tv));
    free (tv_first);
    //  Its webhook delivery is in the same outbox as every notification.
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM webhook_deliveries d JOIN notifications n"
                                  " ON n.id = d.notification_id WHERE d.webhook_id = $1::bigint"
                                  " AND n.kind = 'digest' AND d.status = 'pending'",
                                  webhook, NULL, NULL) == 1);

    //  Munich: every number is phantom_figures' for the day, as the
    //  overview's are for today.
    const char *figures_sql =
        "SELECT concat_ws (' ', round (sum (day_phantom_wh)::numeric, 3),"
        "                  round (sum (day_phantom_cost)::numeric, 4),"
        "                  round (sum (day_energy_wh)::numeric, 3),"
        "                  round (sum (year_phantom_kwh)::numeric, 4),"
        "                  round (sum (year_phantom_cost)::numeric, 4),"
        "                  count (*) FILTER (WHERE year_phantom_kwh IS NULL))"
        "  FROM phantom_figures ($1::bigint, '2024-03-08T23:00:00Z', '2024-03-09T23:00:00Z',"
        "                        '2024-03-10T07:30:00Z')";
    char *figures = notifier_test_db_value (db, figures_sql, munich_text, NULL, NULL);
    assert (figures);
    s_test_expect (db, munich, today,
                   "concat_ws (' ', round ((data->>'energyWh')::numeric, 3),"
                   " round ((data->>'cost')::numeric, 4), round ((data->>'usedWh')::numeric, 3),"
                   " round ((data->>'phantomKwhYear')::numeric, 4),"
                   " round ((data->>'phantomCostYear')::numeric, 4), data->>'learningPorts')",
                   figures, verbose);
    free (figures);
    //  And by hand: 120 + 45.5 + 800 + 3 + 2000 Wh, each episode half
    //  before noon (0.25) and half after (0.40), and 60 Wh of the night
    //  one at 0.40: 3028.5 Wh, 0.9887625 EUR.
    s_test_expect (db, munich, today,
                   "round ((data->>'energyWh')::numeric, 3) || ' '"
                   " || round ((data->>'cost')::numeric, 4)",
                   "3028.500 0.9888", verbose);
    s_test_expect (db, munich, today,
                   "(SELECT string_agg (p->>'name', ',' ORDER BY n) FROM"
                   " jsonb_array_elements (data->'topPorts') WITH ORDINALITY AS t (p, n))",
                   "Console,Amp,Dryer", verbose);
    //  Its text in German, the same numbers formatted.
    s_test_expect (db, munich, today, "title", "Daily digest for 09.03.2024", verbose);
    s_test_expect (db, munich, today, "message",
                   "09.03.2024: phantom load wasted 3,03 kWh, costing 0,99\xc2\xa0\xe2\x82\xac,"
                   " of 3,60 kWh used. Wasted most: Console 800 Wh (0,26\xc2\xa0\xe2\x82\xac),"
                   " Amp 120 Wh (0,04\xc2\xa0\xe2\x82\xac), Dryer 63 Wh (0,02\xc2\xa0\xe2\x82\xac)."
                   " Projected per year: 1.127 kWh (369,66\xc2\xa0\xe2\x82\xac).",
                   verbose);

    s_test_expect (db, kolkata, today, "message",
                   "Mar 9, 2024: phantom load wasted 250 Wh, costing \xe2\x82\xb9"
                   "2.00, of 1.44 kWh used. Wasted most: Heater 250 Wh (\xe2\x82\xb9"
                   "2.00). Projected per year: 201 kWh (\xe2\x82\xb9"
                   "1,606.00).",
                   verbose);

    //  Again at the same moment, and by a fresh instance (a restart): nothing new.
    assert (notifier_digest_check (digest, now) == 0);
    notifier_digest_destroy (&digest);
    digest = notifier_digest_new (notifier_test_db_conninfo (), 8, verbose);
    assert (notifier_digest_check (digest, now + 60000) == 0);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, munich) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, new_york) == 0);

    //  12:30 UTC: 08:30 in New York, whose yesterday is [03-09 05:00Z,
    //  03-10 05:00Z); the unknown zone is past 08:00 UTC. Still one each
    //  for the others, and never one for the opted-out or silent users.
    int64_t later = now + 5 * 3600 * 1000;
    assert (notifier_digest_check (digest, later) >= 2);
    assert (s_test_digests (db, new_york) == 1);
    s_test_expect (db, new_york, today, "message",
                   "Mar 9, 2024: phantom load wasted 100 Wh, costing $0.02, of 144 Wh used."
                   " Wasted most: Console 100 Wh ($0.02). Projected per year: 36.5 kWh"
                   " ($7.30).",
                   verbose);
    assert (s_test_digests (db, unknown) == 1);
    s_test_expect (db, unknown, today,
                   "data->>'timeZone' || ' ' || (data->>'energyWh') || ' ' || title",
                   "UTC 3.0"
                   " Daily digest for Mar 9, 2024",
                   verbose);
    s_test_expect (db, unknown, today, "message",
                   "Mar 9, 2024: phantom load wasted 3.0 Wh, costing < \xe2\x82\xac"
                   "0.01, of 12 Wh used. Wasted most: Rover 3.0 Wh (< \xe2\x82\xac"
                   "0.01). Projected per year: still learning (2 h of data).",
                   verbose);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, kolkata) == 1);
    assert (s_test_digests (db, opted_out) == 0);
    assert (s_test_digests (db, silent) == 0);

    //  The next day in Berlin at 09:00 local: nobody in Berlin reported on
    //  03-10, so no digest for it.
    int64_t next_day = now + 86400000LL + 1800000;
    assert (notifier_digest_check (digest, next_day) == 0);
    assert (s_test_digests (db, berlin) == 1);
    assert (s_test_digests (db, munich) == 1);

    //  A database that is not there: -1, nothing crashes.
    notifier_digest_t *lost = notifier_digest_new ("host=/nonexistent port=1 dbname=x", 8, verbose);
    assert (notifier_digest_check (lost, now) == -1);
    notifier_digest_destroy (&lost);

    notifier_digest_destroy (&digest);
    int64_t users[] = {berlin, munich, kolkata, new_york, opted_out, silent, unknown};
    for (size_t index = 0; index < sizeof users / sizeof users[0]; index++)
        notifier_test_db_drop_user (db, users[index]);
    char *ports[] = {tv, lamp, heater, console, quiet, kettle, rover};
    for (size_t index = 0; index < sizeof ports / sizeof ports[0]; index++)
        free (ports[index]);
    for (int index = 0; index < 5; index++)
        free (munich_ports[index]);
    free (webhook);
    PQfinish (db);
    printf ("OK\n");
}
