/*  =========================================================================
    notifier_writer - turns phantom events into notifications in PostgreSQL

    Events are rare (one pair per episode), so each is its own short
    transaction and clarity wins over round trips. Port names, tariffs and
    time zones are cached for a minute: renames and tariff changes show up
    within that minute, and a burst of events costs one lookup.
    =========================================================================
*/
#include "notifier_writer.h"
#include "notifier_db.h"
#include "notifier_test_db.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>

#define CACHE_TTL_MS 60000            //  how long a port's name and tariff are trusted
#define CACHE_MAX 10000               //  ports cached before the cache is flushed
#define TIME_MAX_MS 253402300799999LL //  9999-12-31T23:59:59.999Z: beyond is garbage

//  What a notification about a port needs to know of it and its owner.
typedef struct {
    int64_t user;    //  owner the lookup was made for
    char *name;      //  port name
    double tariff;   //  users.tariff_per_kwh
    char *currency;  //  users.currency
    char *time_zone; //  users.time_zone
    int64_t fetched; //  zclock_mono () of the lookup
} s_port_t;

struct _notifier_writer_t {
    char *conninfo;                               //  libpq connection string
    PGconn *db;                                   //  NULL until connected, and after a failure
    bool has_webhooks;                            //  migration 003 is present
    bool verbose;                                 //  log debug lines
    int64_t cooldown_ms;                          //  per-port cool-down
    zhashx_t *ports;                              //  port uuid -> s_port_t
    uint64_t counts[NOTIFIER_WRITER_DROPPED + 1]; //  events per result
};

static void
s_port_destroy (void **item_p)
{
    s_port_t *port = (s_port_t *)*item_p;
    if (port) {
        free (port->name);
        free (port->currency);
        free (port->time_zone);
        free (port);
        *item_p = NULL;
    }
}

notifier_writer_t *
notifier_writer_new (const char *conninfo, int64_t cooldown_seconds, bool verbose)
{
    assert (conninfo);
    notifier_writer_t *self = (notifier_writer_t *)zmalloc (sizeof (notifier_writer_t));
    assert (self);
    self->conninfo = strdup (conninfo);
    self->cooldown_ms = cooldown_seconds * 1000;
    self->verbose = verbose;
    self->ports = zhashx_new ();
    assert (self->conninfo && self->ports);
    zhashx_set_destructor (self->ports, s_port_destroy);
    return self;
}

void
notifier_writer_destroy (notifier_writer_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_writer_t *self = *self_p;
        PQfinish (self->db);
        zhashx_destroy (&self->ports);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

uint64_t
notifier_writer_count (notifier_writer_t *self, notifier_writer_result_t result)
{
    assert (self);
    return result <= NOTIFIER_WRITER_DROPPED ? self->counts[result] : 0;
}

static PGresult *
s_exec (notifier_writer_t *self, const char *what, const char *sql, int count,
        const char *const *values)
{
    return notifier_db_exec (self->db, "notifier database", what, sql, count, values);
}

static int
s_command (notifier_writer_t *self, const char *sql)
{
    PGresult *result = s_exec (self, sql, sql, 0, NULL);
    PQclear (result);
    return result ? 0 : -1;
}

static int
s_ensure_connected (notifier_writer_t *self)
{
    int rc = notifier_db_ensure (&self->db, self->conninfo);
    if (rc != 1)
        return rc;
    PGresult *result =
        s_exec (self, "schema check", "SELECT to_regclass('webhooks') IS NOT NULL", 0, NULL);
    self->has_webhooks = result && streq (PQgetvalue (result, 0, 0), "t");
    if (result && !self->has_webhooks)
        zsys_warning ("notifier database - table webhooks missing (migration 003): no webhooks");
    PQclear (result);
    zsys_info ("notifier database - connected");
    return 0;
}

//  The port's name and its owner's tariff, from the cache or the database.
//  NULL if the port does not exist or is not this user's.
static s_port_t *
s_port_lookup (notifier_writer_t *self, const char *port_id, int64_t user)
{
    s_port_t *port = (s_port_t *)zhashx_lookup (self->ports, port_id);
    if (port && port->user == user && zclock_mono () - port->fetched < CACHE_TTL_MS)
        return port;
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    const char *values[] = {port_id, user_text};
    PGresult *result = s_exec (self, "port lookup",
                               "SELECT p.name, u.tariff_per_kwh, u.currency, u.time_zone"
                               " FROM ports p JOIN users u ON u.id = p.user_id"
                               " WHERE p.id = $1::uuid AND p.user_id = $2::bigint",
                               2, values);
    if (!result)
        return NULL;
    port = NULL;
    if (PQntuples (result) == 1) {
        if (zhashx_size (self->ports) >= CACHE_MAX)
            zhashx_purge (self->ports);
        port = (s_port_t *)zmalloc (sizeof (s_port_t));
        assert (port);
        port->user = user;
        port->name = strdup (PQgetvalue (result, 0, 0));
        port->tariff = strtod (PQgetvalue (result, 0, 1), NULL);
        if (!isfinite (port->tariff) || port->tariff < 0)
            port->tariff = 0;
        port->currency = strdup (PQgetvalue (result, 0, 2));
        port->time_zone = strdup (PQgetvalue (result, 0, 3));
        port->fetched = zclock_mono ();
        assert (port->name && port->currency && port->time_zone);
        zhashx_update (self->ports, port_id, port);
    }
    PQclear (result);
    return port;
}

//  "2024-01-01 13:00 Europe/Berlin": the owner's local time, as
//  PostgreSQL's zone database knows it; UTC if the owner's zone is unknown.
static void
s_format_time (notifier_writer_t *self, int64_t ms, const char *time_zone, char *text, size_t size)
{
    char ms_text[24];
    snprintf (ms_text, sizeof ms_text, "%" PRId64, ms);
    const char *values[] = {ms_text, time_zone};
    PGresult *result = NULL;
    if (*time_zone)
        result = s_exec (self, "time format",
                         "SELECT to_char(to_timestamp($1::bigint / 1000.0) AT TIME ZONE $2,"
                         " 'YYYY-MM-DD HH24:MI')",
                         2, values);
    if (result && PQntuples (result) == 1) {
        snprintf (text, size, "%s %s", PQgetvalue (result, 0, 0), time_zone);
        PQclear (result);
        return;
    }
    PQclear (result);
    time_t seconds = (time_t)(ms / 1000);
    struct tm utc;
    gmtime_r (&seconds, &utc);
    strftime (text, size, "%Y-%m-%d %H:%M UTC", &utc);
}

static void
s_format_duration (int64_t ms, char *text, size_t size)
{
    int64_t seconds = ms / 1000;
    if (seconds < 60)
        snprintf (text, size, "%" PRId64 " s", seconds);
    else if (seconds < 3600)
        snprintf (text, size, "%" PRId64 " min", seconds / 60);
    else
        snprintf (text, size, "%" PRId64 " h %" PRId64 " min", seconds / 3600,
                  (seconds % 3600) / 60);
}

static void
s_format_energy (double wh, char *text, size_t size)
{
    if (wh < 1000)
        snprintf (text, size, "%.1f Wh", wh);
    else
        snprintf (text, size, "%.2f kWh", wh / 1000);
}

//  Small amounts keep four decimals so a cheap episode does not read "0.00".
static void
s_format_cost (double cost, const char *currency, char *text, size_t size)
{
    if (cost > 0 && cost < 0.01)
        snprintf (text, size, "%.4f %s", cost, currency);
    else
        snprintf (text, size, "%.2f %s", cost, currency);
}

//  Within the transaction: NOTIFIER_WRITER_DUPLICATE if this notification
//  exists, NOTIFIER_WRITER_COOLDOWN if the episode falls in the port's
//  cool-down, NOTIFIER_WRITER_NOTIFIED if it may be written, or
//  NOTIFIER_WRITER_DROPPED if the database failed.
static notifier_writer_result_t
s_check (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
         const char *dedupe_key, const char *start_key)
{
    char start_text[24];
    snprintf (start_text, sizeof start_text, "%" PRId64, event->episode.start);
    //  The cool-down's reference is the latest moment the owner heard about
    //  another episode of this port: its start, or its end once that was
    //  notified. Only our own rows carry these kinds, with these keys.
    const char *values[] = {user_text, dedupe_key, start_key, event->port, start_text};
    PGresult *result =
        s_exec (self, "cool-down check",
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE user_id = $1::bigint AND "
                "dedupe_key = $2),"
                "       EXISTS (SELECT 1 FROM notifications WHERE user_id = $1::bigint AND "
                "dedupe_key = $3),"
                "       (SELECT max(GREATEST((data->>'episodeStart')::bigint,"
                "                            COALESCE((data->>'episodeEnd')::bigint, 0)))"
                "          FROM notifications"
                "         WHERE port_id = $4::uuid AND kind IN ('phantom.start', 'phantom.end')"
                "           AND (data->>'episodeStart')::bigint <> $5::bigint)",
                5, values);
    if (!result)
        return NOTIFIER_WRITER_DROPPED;
    bool exists = streq (PQgetvalue (result, 0, 0), "t");
    bool start_notified = streq (PQgetvalue (result, 0, 1), "t");
    bool has_reference = !PQgetisnull (result, 0, 2);
    int64_t reference = has_reference ? strtoll (PQgetvalue (result, 0, 2), NULL, 10) : 0;
    PQclear (result);
    if (exists)
        return NOTIFIER_WRITER_DUPLICATE;
    //  An episode whose start was notified gets its summary whatever the
    //  cool-down says; one whose start fell in the cool-down stays silent
    //  at its end too, since the same test gives the same answer.
    if (start_notified)
        return NOTIFIER_WRITER_NOTIFIED;
    if (has_reference && event->episode.start < reference + self->cooldown_ms)
        return NOTIFIER_WRITER_COOLDOWN;
    return NOTIFIER_WRITER_NOTIFIED;
}

//  What a notification says: title, message, and data as JSON text.
typedef struct {
    char *title;
    char *message;
    char *data;
} s_notification_t;

static void
s_notification_free (s_notification_t *self)
{
    zstr_free (&self->title);
    zstr_free (&self->message);
    free (self->data);
    self->data = NULL;
}

//  data as compact JSON text, NULL if data is; takes data's reference.
static char *
s_json_text (json_t *data)
{
    char *text = data ? json_dumps (data, JSON_COMPACT | JSON_REAL_PRECISION (12)) : NULL;
    json_decref (data);
    return text;
}

//  The notification of an episode's start.
static s_notification_t
s_compose_start (const proto_event_t *event, const s_port_t *port, const char *since)
{
    s_notification_t self;
    double watts = event->watts > 0 ? event->watts : event->episode.mean_watts;
    self.title = zsys_sprintf ("Phantom load on %s", port->name);
    self.message =
        zsys_sprintf ("%s has drawn %.1f W while idle since %s", port->name, watts, since);
    self.data = s_json_text (json_pack ("{s:s, s:I, s:f}", "portId", event->port, "episodeStart",
                                        (json_int_t)event->episode.start, "watts", watts));
    return self;
}

//  The summary of an episode that ended at end: duration, energy and cost.
static s_notification_t
s_compose_end (const proto_event_t *event, int64_t end, const s_port_t *port, const char *since)
{
    s_notification_t self;
    const proto_episode_t *episode = &event->episode;
    char duration[48], energy[48], cost_text[64];
    //  Money to four decimals: what the message shows for small sums,
    //  and no 0.44999999999999996 in the data.
    double cost = round (episode->energy_wh / 1000.0 * port->tariff * 10000.0) / 10000.0;
    s_format_duration (end - episode->start, duration, sizeof duration);
    s_format_energy (episode->energy_wh, energy, sizeof energy);
    s_format_cost (cost, port->currency, cost_text, sizeof cost_text);
    self.title = zsys_sprintf ("Phantom load ended on %s", port->name);
    self.message =
        zsys_sprintf ("%s drew %.1f W on average for %s while idle (since %s):"
                      " %s wasted, costing %s",
                      port->name, episode->mean_watts, duration, since, energy, cost_text);
    self.data = s_json_text (
        json_pack ("{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:s}", "portId", event->port,
                   "episodeStart", (json_int_t)episode->start, "episodeEnd", (json_int_t)end,
                   "durationSeconds", (json_int_t)((end - episode->start) / 1000), "energyWh",
                   episode->energy_wh, "meanWatts", episode->mean_watts, "peakWatts",
                   episode->peak_watts, "cost", cost, "currency", port->currency));
    return self;
}

//  Within the transaction: the notification, its webhook deliveries and
//  its announcement. NOTIFIER_WRITER_NOTIFIED with the new row's id in id,
//  or why nothing was written.
static notifier_writer_result_t
s_insert (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
          const s_notification_t *notification, const char *dedupe_key, char id[24])
{
    const char *values[] = {user_text,         event->port,         event->kind,
                            dedupe_key,        notification->title, notification->message,
                            notification->data};
    PGresult *result = s_exec (
        self, "notification insert",
        "INSERT INTO notifications (user_id, port_id, kind, dedupe_key, title, message, data)"
        " VALUES ($1::bigint, $2::uuid, $3, $4, $5, $6, $7::jsonb)"
        " ON CONFLICT (user_id, dedupe_key) DO NOTHING RETURNING id",
        7, values);
    if (!result || PQntuples (result) != 1) {
        //  No row: a concurrent writer won the race, which is a duplicate.
        notifier_writer_result_t verdict =
            result ? NOTIFIER_WRITER_DUPLICATE : NOTIFIER_WRITER_DROPPED;
        PQclear (result);
        return verdict;
    }
    snprintf (id, 24, "%s", PQgetvalue (result, 0, 0));
    PQclear (result);
    if (self->has_webhooks) {
        const char *delivery_values[] = {id, user_text};
        result = s_exec (self, "delivery enqueue",
                         "INSERT INTO webhook_deliveries (webhook_id, notification_id)"
                         " SELECT id, $1::bigint FROM webhooks"
                         " WHERE user_id = $2::bigint AND enabled",
                         2, delivery_values);
        if (!result)
            return NOTIFIER_WRITER_DROPPED;
        PQclear (result);
    }
    char payload[56];
    snprintf (payload, sizeof payload, "%s:%s", user_text, id);
    const char *notify_values[] = {payload};
    result =
        s_exec (self, "notify", "SELECT pg_notify('phantom_notification', $1)", 1, notify_values);
    bool announced = result != NULL;
    PQclear (result);
    return announced ? NOTIFIER_WRITER_NOTIFIED : NOTIFIER_WRITER_DROPPED;
}

//  Checks and writes the notification in one transaction.
static notifier_writer_result_t
s_write (notifier_writer_t *self, const proto_event_t *event, const s_notification_t *notification,
         const char *dedupe_key, const char *start_key)
{
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, event->user);
    if (s_command (self, "BEGIN"))
        return NOTIFIER_WRITER_DROPPED;
    char id[24];
    notifier_writer_result_t result = s_check (self, event, user_text, dedupe_key, start_key);
    if (result == NOTIFIER_WRITER_NOTIFIED)
        result = s_insert (self, event, user_text, notification, dedupe_key, id);
    if (result == NOTIFIER_WRITER_NOTIFIED && s_command (self, "COMMIT"))
        result = NOTIFIER_WRITER_DROPPED;
    if (result != NOTIFIER_WRITER_NOTIFIED) {
        s_command (self, "ROLLBACK");
        return result;
    }
    zsys_info ("notifier port %s - %s notified (notification %s)", event->port, event->kind, id);
    return NOTIFIER_WRITER_NOTIFIED;
}

static notifier_writer_result_t
s_handle (notifier_writer_t *self, const proto_event_t *event)
{
    bool start = streq (event->kind, "phantom.start");
    if (!start && !streq (event->kind, "phantom.end"))
        return NOTIFIER_WRITER_IGNORED;
    const proto_episode_t *episode = &event->episode;
    int64_t end = episode->end ? episode->end : event->ts;
    if (!event->has_episode || episode->start <= 0 || episode->start > TIME_MAX_MS ||
        (!start && (end < episode->start || end > TIME_MAX_MS)) || !isfinite (event->watts) ||
        !isfinite (episode->energy_wh) || !isfinite (episode->mean_watts) ||
        !isfinite (episode->peak_watts) || event->user <= 0) {
        zsys_warning ("notifier port %s - %s event without a usable episode, dropped", event->port,
                      event->kind);
        return NOTIFIER_WRITER_DROPPED;
    }
    if (s_ensure_connected (self))
        return NOTIFIER_WRITER_DROPPED;
    const s_port_t *port = s_port_lookup (self, event->port, event->user);
    if (!port) {
        zsys_warning ("notifier port %s - unknown port of user %" PRId64 ", %s dropped",
                      event->port, event->user, event->kind);
        return NOTIFIER_WRITER_DROPPED;
    }
    char since[96];
    s_format_time (self, episode->start, port->time_zone, since, sizeof since);
    s_notification_t notification =
        start ? s_compose_start (event, port, since) : s_compose_end (event, end, port, since);
    char *start_key = zsys_sprintf ("episode:%s:%" PRId64 ":start", event->port, episode->start);
    char *end_key = zsys_sprintf ("episode:%s:%" PRId64 ":end", event->port, episode->start);
    notifier_writer_result_t result = NOTIFIER_WRITER_DROPPED;
    if (notification.title && notification.message && notification.data)
        result = s_write (self, event, &notification, start ? start_key : end_key, start_key);
    else
        zsys_warning ("notifier port %s - cannot build %s notification", event->port, event->kind);
    if (result == NOTIFIER_WRITER_DUPLICATE && self->verbose)
        zsys_debug ("notifier port %s - %s already notified", event->port, event->kind);
    else if (result == NOTIFIER_WRITER_COOLDOWN && self->verbose)
        zsys_debug ("notifier port %s - %s inside cool-down, not notified", event->port,
                    event->kind);
    s_notification_free (&notification);
    zstr_free (&start_key);
    zstr_free (&end_key);
    return result;
}

notifier_writer_result_t
notifier_writer_handle (notifier_writer_t *self, const proto_event_t *event)
{
    assert (self);
    assert (event);
    notifier_writer_result_t result = s_handle (self, event);
    //  A lost connection is retried once, so a database restart between
    //  two episodes costs no notification.
    if (result == NOTIFIER_WRITER_DROPPED && self->db && PQstatus (self->db) != CONNECTION_OK) {
        zsys_warning ("notifier database - connection lost, reconnecting");
        result = s_handle (self, event);
    }
    self->counts[result]++;
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

void
notifier_writer_test (bool verbose)
{
    printf (" * notifier_writer: ");
    if (verbose)
        printf ("\n");
    PGconn *db = notifier_test_db_connect ();
    int64_t user = notifier_test_db_user (db, 0.30, "EUR");
    char *port = notifier_test_db_port (db, user, "Desk lamp");
    char *other_port = notifier_test_db_port (db, user, "TV");
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    //  A webhook, so the outbox is filled in the same transaction.
    char *webhook = notifier_test_db_value (db,
                                            "INSERT INTO webhooks (user_id, url, secret) VALUES "
                                            "($1::bigint, 'http://127.0.0.1:1/', 's')"
                                            " RETURNING id",
                                            user_text, NULL, NULL);
    assert (webhook);
    //  A disabled one, which must get nothing.
    char *disabled = notifier_test_db_value (
        db,
        "INSERT INTO webhooks (user_id, url, secret, enabled)"
        " VALUES ($1::bigint, 'http://127.0.0.1:1/', 's', false) RETURNING id",
        user_text, NULL, NULL);
    assert (disabled);

    notifier_writer_t *writer = notifier_writer_new (notifier_test_db_conninfo (), 600, verbose);
    assert (writer);
    int64_t t0 = 1700000000000; //  2023-11-14 22:13:20 UTC

    //  Start, twice: one notification.
    proto_event_t start = notifier_test_db_event ("phantom.start", user, port, t0, 0, 7.25, 0);
    assert (notifier_writer_handle (writer, &start) == NOTIFIER_WRITER_NOTIFIED);
    assert (notifier_writer_handle (writer, &start) == NOTIFIER_WRITER_DUPLICATE);
    char *key = zsys_sprintf ("episode:%s:%" PRId64 ":start", port, t0);
    assert (notifier_test_db_int (db, "SELECT count(*) FROM notifications WHERE dedupe_key = $1",
                                  key, NULL, NULL) == 1);
    char *message = notifier_test_db_value (
        db,
        "SELECT title || '|' || message || '|' || kind FROM notifications WHERE dedupe_key = $1",
        key, NULL, NULL);
    if (verbose)
        zsys_debug ("notifier_writer - start: %s", message);
    assert (streq (message, "Phantom load on Desk lamp|Desk lamp has drawn 7.2 W while idle since"
                            " 2023-11-14 22:13 UTC|phantom.start") ||
            streq (message, "Phantom load on Desk lamp|Desk lamp has drawn 7.3 W while idle"
                            " since 2023-11-14 22:13 UTC|phantom.start"));
    free (message);
    assert (notifier_test_db_int (db,
                                  "SELECT (data->>'episodeStart')::bigint FROM notifications"
                                  " WHERE dedupe_key = $1",
                                  key, NULL, NULL) == t0);
    char *data_port = notifier_test_db_value (
        db, "SELECT data->>'portId' FROM notifications WHERE dedupe_key = $1", key, NULL, NULL);
    assert (streq (data_port, port));
    free (data_port);
    //  Exactly one delivery, to the enabled webhook.
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM webhook_deliveries d JOIN notifications n"
                                  " ON n.id = d.notification_id WHERE n.dedupe_key = $1",
                                  key, NULL, NULL) == 1);
    assert (
        notifier_test_db_int (db,
                              "SELECT d.webhook_id FROM webhook_deliveries d JOIN notifications n"
                              " ON n.id = d.notification_id WHERE n.dedupe_key = $1",
                              key, NULL, NULL) == strtoll (webhook, NULL, 10));
    zstr_free (&key);

    //  End, two hours later, 1500 Wh at 0.30 EUR/kWh: 0.45 EUR.
    int64_t t1 = t0 + 2 * 3600 * 1000;
    proto_event_t end = notifier_test_db_event ("phantom.end", user, port, t0, t1, 2, 1500);
    assert (notifier_writer_handle (writer, &end) == NOTIFIER_WRITER_NOTIFIED);
    assert (notifier_writer_handle (writer, &end) == NOTIFIER_WRITER_DUPLICATE);
    key = zsys_sprintf ("episode:%s:%" PRId64 ":end", port, t0);
    message = notifier_test_db_value (db, "SELECT message FROM notifications WHERE dedupe_key = $1",
                                      key, NULL, NULL);
    if (verbose)
        zsys_debug ("notifier_writer - end: %s", message);
    assert (message);
    assert (streq (message, "Desk lamp drew 750.0 W on average for 2 h 0 min while idle (since"
                            " 2023-11-14 22:13 UTC): 1.50 kWh wasted, costing 0.45 EUR"));
    free (message);
    char *cost = notifier_test_db_value (
        db,
        "SELECT data->>'cost' || ' ' || (data->>'durationSeconds') || ' ' || (data->>'energyWh')"
        " FROM notifications WHERE dedupe_key = $1",
        key, NULL, NULL);
    assert (streq (cost, "0.45 7200 1500.0") || streq (cost, "0.45 7200 1500"));
    free (cost);
    zstr_free (&key);

    //  A second episode 5 minutes after the first ended: inside the
    //  10-minute cool-down, neither its start nor its end is notified.
    int64_t t2 = t1 + 5 * 60 * 1000;
    proto_event_t flap = notifier_test_db_event ("phantom.start", user, port, t2, 0, 3, 0);
    assert (notifier_writer_handle (writer, &flap) == NOTIFIER_WRITER_COOLDOWN);
    proto_event_t flap_end =
        notifier_test_db_event ("phantom.end", user, port, t2, t2 + 60000, 3, 0.05);
    assert (notifier_writer_handle (writer, &flap_end) == NOTIFIER_WRITER_COOLDOWN);
    //  Another port is not affected by this port's cool-down.
    proto_event_t other = notifier_test_db_event ("phantom.start", user, other_port, t2, 0, 3, 0);
    assert (notifier_writer_handle (writer, &other) == NOTIFIER_WRITER_NOTIFIED);
    //  A third episode 11 minutes after the first one's end is notified,
    //  even by a fresh writer (the cool-down lives in the table).
    notifier_writer_destroy (&writer);
    writer = notifier_writer_new (notifier_test_db_conninfo (), 600, verbose);
    int64_t t3 = t1 + 11 * 60 * 1000;
    proto_event_t again = notifier_test_db_event ("phantom.start", user, port, t3, 0, 4, 0);
    assert (notifier_writer_handle (writer, &again) == NOTIFIER_WRITER_NOTIFIED);
    //  A small episode keeps four decimals of cost: 10 Wh * 0.30 = 0.0030.
    proto_event_t small = notifier_test_db_event ("phantom.end", user, port, t3, t3 + 90000, 4, 10);
    assert (notifier_writer_handle (writer, &small) == NOTIFIER_WRITER_NOTIFIED);
    key = zsys_sprintf ("episode:%s:%" PRId64 ":end", port, t3);
    message = notifier_test_db_value (db, "SELECT message FROM notifications WHERE dedupe_key = $1",
                                      key, NULL, NULL);
    assert (message && strstr (message, "for 1 min while idle") &&
            strstr (message, "10.0 Wh wasted, costing 0.0030 EUR"));
    free (message);
    zstr_free (&key);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint",
                                  user_text, NULL, NULL) == 5);

    //  A port that is not the user's, a status event, and garbage times
    //  are dropped or ignored without a row.
    proto_event_t stranger =
        notifier_test_db_event ("phantom.start", user + 1000000, port, t3 + 1, 0, 4, 0);
    assert (notifier_writer_handle (writer, &stranger) == NOTIFIER_WRITER_DROPPED);
    proto_event_t unknown = notifier_test_db_event (
        "phantom.start", user, "00000000-0000-0000-0000-000000000000", t3, 0, 4, 0);
    assert (notifier_writer_handle (writer, &unknown) == NOTIFIER_WRITER_DROPPED);
    proto_event_t status = notifier_test_db_event ("status", user, port, t3, 0, 4, 0);
    assert (notifier_writer_handle (writer, &status) == NOTIFIER_WRITER_IGNORED);
    proto_event_t garbage = notifier_test_db_event ("phantom.start", user, port, -5, 0, 4, 0);
    assert (notifier_writer_handle (writer, &garbage) == NOTIFIER_WRITER_DROPPED);
    proto_event_t backwards =
        notifier_test_db_event ("phantom.end", user, port, t3 + 5000, t3, 4, 1);
    assert (notifier_writer_handle (writer, &backwards) == NOTIFIER_WRITER_DROPPED);
    proto_event_t nan_event =
        notifier_test_db_event ("phantom.start", user, port, t3 + 9, 0, NAN, 0);
    assert (notifier_writer_handle (writer, &nan_event) == NOTIFIER_WRITER_DROPPED);
    assert (notifier_writer_count (writer, NOTIFIER_WRITER_DROPPED) == 5);
    assert (notifier_writer_count (writer, NOTIFIER_WRITER_NOTIFIED) == 2);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint",
                                  user_text, NULL, NULL) == 5);

    //  A database that is not there: events are dropped, nothing crashes.
    notifier_writer_t *lost =
        notifier_writer_new ("host=/nonexistent port=1 dbname=x", 600, verbose);
    assert (notifier_writer_handle (lost, &again) == NOTIFIER_WRITER_DROPPED);
    notifier_writer_destroy (&lost);

    notifier_writer_destroy (&writer);
    notifier_test_db_drop_user (db, user);
    free (webhook);
    free (disabled);
    free (port);
    free (other_port);
    PQfinish (db);
    printf ("OK\n");
}
