/*  =========================================================================
    notifier_writer - turns detector events into notifications in PostgreSQL

    Events that notify are rare (a pair per episode or outage), so each is
    its own short transaction and clarity wins over round trips. Port names
    and their owners' locale, currency and time zone are cached for a
    minute: renames show up within that minute, and a burst of events costs
    one lookup. What decides whether to notify (the role, the cool-down, the
    told outage) and the price are read fresh inside the transaction.
    =========================================================================
*/
#include "notifier_writer.h"
#include "notifier_db.h"
#include "notifier_format.h"
#include "notifier_test_db.h"

#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>

#define CACHE_TTL_MS 60000            //  how long a port's name and owner are trusted
#define CACHE_MAX 10000               //  ports cached before the cache is flushed
#define TIME_MAX_MS 253402300799999LL //  9999-12-31T23:59:59.999Z: beyond is garbage

//  What a notification about a port needs to know of it and its owner.
typedef struct {
    int64_t user;    //  owner the lookup was made for
    char *name;      //  port name
    char *currency;  //  users.currency
    char *time_zone; //  users.time_zone
    char *locale;    //  users.locale, "" when not set
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
        free (port->locale);
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
    return proto_pg_exec (self->db, "notifier database", what, sql, count, values);
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
    int rc = proto_pg_ensure (&self->db, self->conninfo, NOTIFIER_DB_APPLICATION,
                              NOTIFIER_DB_STATEMENT_TIMEOUT_MS);
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

//  The port's name and its owner's locale, currency and time zone, from
//  the cache or the database. NULL if the port does not exist or is not
//  this user's.
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
                               "SELECT p.name, u.currency, u.time_zone, COALESCE (u.locale, '')"
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
        port->currency = strdup (PQgetvalue (result, 0, 1));
        port->time_zone = strdup (PQgetvalue (result, 0, 2));
        port->locale = strdup (PQgetvalue (result, 0, 3));
        port->fetched = zclock_mono ();
        assert (port->name && port->currency && port->time_zone && port->locale);
        zhashx_update (self->ports, port_id, port);
    }
    PQclear (result);
    return port;
}

static notifier_format_t *
s_port_format (const s_port_t *port)
{
    return notifier_format_new (port->locale, port->currency, port->time_zone);
}

//  What a notification says: its kind, key, title, message, and data as
//  JSON text.
typedef struct {
    const char *kind;
    char *dedupe_key;
    char *title;
    char *message;
    char *data;
} s_notification_t;

static void
s_notification_free (s_notification_t *self)
{
    zstr_free (&self->dedupe_key);
    zstr_free (&self->title);
    zstr_free (&self->message);
    free (self->data);
    self->data = NULL;
}

static bool
s_notification_ready (const s_notification_t *self)
{
    return self->dedupe_key && self->title && self->message && self->data;
}

//  data as compact JSON text, NULL if data is; takes data's reference.
static char *
s_json_text (json_t *data)
{
    char *text = data ? json_dumps (data, JSON_COMPACT | JSON_REAL_PRECISION (12)) : NULL;
    json_decref (data);
    return text;
}

//  Within the transaction: the notification, its webhook deliveries and
//  its announcement. NOTIFIER_WRITER_NOTIFIED with the new row's id in id,
//  or why nothing was written.
static notifier_writer_result_t
s_insert (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
          const s_notification_t *notification, char id[24])
{
    const char *values[] = {
        user_text,           event->port,           notification->kind, notification->dedupe_key,
        notification->title, notification->message, notification->data};
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

//  Ends the transaction a handler began: writes the notification if the
//  verdict so far is NOTIFIER_WRITER_NOTIFIED and commits, else rolls back.
static notifier_writer_result_t
s_finish (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
          const s_notification_t *notification, notifier_writer_result_t result)
{
    char id[24];
    if (result == NOTIFIER_WRITER_NOTIFIED && !s_notification_ready (notification)) {
        zsys_warning ("notifier port %s - cannot build %s notification", event->port,
                      notification->kind);
        result = NOTIFIER_WRITER_DROPPED;
    }
    if (result == NOTIFIER_WRITER_NOTIFIED)
        result = s_insert (self, event, user_text, notification, id);
    if (result == NOTIFIER_WRITER_NOTIFIED && s_command (self, "COMMIT"))
        result = NOTIFIER_WRITER_DROPPED;
    if (result != NOTIFIER_WRITER_NOTIFIED) {
        s_command (self, "ROLLBACK");
        return result;
    }
    zsys_info ("notifier port %s - %s notified (notification %s)", event->port, notification->kind,
               id);
    return NOTIFIER_WRITER_NOTIFIED;
}

//  ---------------------------------------------------------------------------
//  Phantom episodes

//  What the transaction found out about an episode's event.
typedef struct {
    bool exists;         //  this notification exists
    bool start_notified; //  the episode's start was notified
    bool has_reference;  //  the port had another notified episode
    int64_t reference;   //  its latest notified moment (start, or end once known)
    bool always_on;      //  the port's role is always_on now
    double cost;         //  the episode's energy priced over its time
} s_episode_check_t;

static int
s_episode_check (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
                 const char *dedupe_key, const char *start_key, int64_t end,
                 s_episode_check_t *check)
{
    char start_text[24], end_text[24], energy_text[32];
    snprintf (start_text, sizeof start_text, "%" PRId64, event->episode.start);
    snprintf (end_text, sizeof end_text, "%" PRId64, end);
    snprintf (energy_text, sizeof energy_text, "%.17g", event->episode.energy_wh);
    //  The cool-down's reference is the latest moment the owner heard about
    //  another episode of this port: its start, or its end once that was
    //  notified. Only our own rows carry these kinds, with these keys.
    const char *values[] = {user_text,  dedupe_key, start_key,  event->port,
                            start_text, end_text,   energy_text};
    PGresult *result =
        s_exec (self, "episode check",
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE user_id = $1::bigint AND"
                "               dedupe_key = $2),"
                "       EXISTS (SELECT 1 FROM notifications WHERE user_id = $1::bigint AND"
                "               dedupe_key = $3),"
                "       (SELECT max (GREATEST ((data->>'episodeStart')::bigint,"
                "                              COALESCE ((data->>'episodeEnd')::bigint, 0)))"
                "          FROM notifications"
                "         WHERE port_id = $4::uuid AND kind IN ('phantom.start', 'phantom.end')"
                "           AND (data->>'episodeStart')::bigint <> $5::bigint),"
                "       (SELECT role = 'always_on' FROM ports WHERE id = $4::uuid),"
                "       phantom_tariff_cost ($1::bigint, to_timestamp ($5::bigint / 1000.0),"
                "                            to_timestamp ($6::bigint / 1000.0), $7::float8)",
                7, values);
    if (!result)
        return -1;
    check->exists = streq (PQgetvalue (result, 0, 0), "t");
    check->start_notified = streq (PQgetvalue (result, 0, 1), "t");
    check->has_reference = !PQgetisnull (result, 0, 2);
    check->reference = check->has_reference ? strtoll (PQgetvalue (result, 0, 2), NULL, 10) : 0;
    check->always_on = streq (PQgetvalue (result, 0, 3), "t");
    check->cost = strtod (PQgetvalue (result, 0, 4), NULL);
    if (!isfinite (check->cost) || check->cost < 0)
        check->cost = 0;
    PQclear (result);
    return 0;
}

static notifier_writer_result_t
s_episode_verdict (notifier_writer_t *self, const proto_event_t *event,
                   const s_episode_check_t *check)
{
    //  The role is checked first: a port made always-on mid-episode gets
    //  no word of its end either.
    if (check->always_on)
        return NOTIFIER_WRITER_ALWAYS_ON;
    if (check->exists)
        return NOTIFIER_WRITER_DUPLICATE;
    //  An episode whose start was notified gets its summary whatever the
    //  cool-down says; one whose start fell in the cool-down stays silent
    //  at its end too, since the same test gives the same answer.
    if (check->start_notified)
        return NOTIFIER_WRITER_NOTIFIED;
    if (check->has_reference && event->episode.start < check->reference + self->cooldown_ms)
        return NOTIFIER_WRITER_COOLDOWN;
    return NOTIFIER_WRITER_NOTIFIED;
}

//  The notification of an episode's start.
static void
s_compose_start (s_notification_t *self, const proto_event_t *event, const s_port_t *port,
                 notifier_format_t *format, int64_t now_ms)
{
    double watts = event->watts > 0 ? event->watts : event->episode.mean_watts;
    char watts_text[NOTIFIER_FORMAT_MAX], since[NOTIFIER_FORMAT_MAX];
    notifier_format_watts (format, watts, watts_text);
    notifier_format_moment (format, event->episode.start, now_ms, since);
    self->title = zsys_sprintf ("Phantom load on %s", port->name);
    self->message =
        zsys_sprintf ("%s has drawn %s while idle since %s.", port->name, watts_text, since);
    self->data = s_json_text (json_pack ("{s:s, s:I, s:f}", "portId", event->port, "episodeStart",
                                         (json_int_t)event->episode.start, "watts", watts));
}

//  The summary of an episode that ended at end: duration, energy and cost.
static void
s_compose_end (s_notification_t *self, const proto_event_t *event, int64_t end,
               const s_port_t *port, notifier_format_t *format, int64_t now_ms, double cost)
{
    const proto_episode_t *episode = &event->episode;
    char duration[NOTIFIER_FORMAT_MAX], since[NOTIFIER_FORMAT_MAX], energy[NOTIFIER_FORMAT_MAX],
        watts[NOTIFIER_FORMAT_MAX], cost_text[NOTIFIER_FORMAT_MAX];
    notifier_format_duration (end - episode->start, duration);
    notifier_format_moment (format, episode->start, now_ms, since);
    notifier_format_energy (format, episode->energy_wh, energy);
    notifier_format_watts (format, episode->mean_watts, watts);
    notifier_format_money (format, cost, cost_text);
    self->title = zsys_sprintf ("Phantom load ended on %s", port->name);
    self->message = zsys_sprintf ("%s drew %s on average for %s while idle (since %s):"
                                  " %s wasted, costing %s.",
                                  port->name, watts, duration, since, energy, cost_text);
    //  Money to four decimals: enough for a small episode, and no
    //  0.44999999999999996 in the data.
    self->data = s_json_text (json_pack (
        "{s:s, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:s}", "portId", event->port, "episodeStart",
        (json_int_t)episode->start, "episodeEnd", (json_int_t)end, "durationSeconds",
        (json_int_t)((end - episode->start) / 1000), "energyWh", episode->energy_wh, "meanWatts",
        episode->mean_watts, "peakWatts", episode->peak_watts, "cost",
        round (cost * 10000.0) / 10000.0, "currency", port->currency));
}

static notifier_writer_result_t
s_handle_episode (notifier_writer_t *self, const proto_event_t *event, const s_port_t *port,
                  const char *user_text, int64_t now_ms)
{
    bool start = streq (event->kind, "phantom.start");
    const proto_episode_t *episode = &event->episode;
    int64_t end = episode->end ? episode->end : event->ts;
    s_notification_t notification = {.kind = start ? "phantom.start" : "phantom.end"};
    notification.dedupe_key = zsys_sprintf ("episode:%s:%" PRId64 ":%s", event->port,
                                            episode->start, start ? "start" : "end");
    char *start_key = zsys_sprintf ("episode:%s:%" PRId64 ":start", event->port, episode->start);
    notifier_writer_result_t result = NOTIFIER_WRITER_DROPPED;
    s_episode_check_t check;
    if (notification.dedupe_key && start_key && s_command (self, "BEGIN") == 0) {
        if (s_episode_check (self, event, user_text, notification.dedupe_key, start_key,
                             start ? episode->start : end, &check) == 0)
            result = s_episode_verdict (self, event, &check);
        if (result == NOTIFIER_WRITER_NOTIFIED) {
            notifier_format_t *format = s_port_format (port);
            if (start)
                s_compose_start (&notification, event, port, format, now_ms);
            else
                s_compose_end (&notification, event, end, port, format, now_ms, check.cost);
            notifier_format_destroy (&format);
        }
        result = s_finish (self, event, user_text, &notification, result);
    }
    if (result == NOTIFIER_WRITER_ALWAYS_ON)
        zsys_info ("notifier port %s - %s of an always-on port, not notified", event->port,
                   event->kind);
    s_notification_free (&notification);
    zstr_free (&start_key);
    return result;
}

//  ---------------------------------------------------------------------------
//  Sensor outages

//  An outage's offline notice, unless it is told already or falls in the
//  cool-down of the port's last told outage (its start: the last reading
//  before the silence).
static notifier_writer_result_t
s_offline_verdict (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
                   const char *dedupe_key)
{
    char since_text[24];
    snprintf (since_text, sizeof since_text, "%" PRId64, event->ts);
    const char *values[] = {user_text, dedupe_key, event->port, since_text};
    PGresult *result =
        s_exec (self, "offline check",
                "SELECT EXISTS (SELECT 1 FROM notifications WHERE user_id = $1::bigint AND"
                "               dedupe_key = $2),"
                "       (SELECT max ((data->>'offlineSince')::bigint) FROM notifications"
                "         WHERE port_id = $3::uuid AND kind = 'sensor.offline'"
                "           AND (data->>'offlineSince')::bigint < $4::bigint)",
                4, values);
    if (!result)
        return NOTIFIER_WRITER_DROPPED;
    bool exists = streq (PQgetvalue (result, 0, 0), "t");
    bool has_reference = !PQgetisnull (result, 0, 1);
    int64_t reference = has_reference ? strtoll (PQgetvalue (result, 0, 1), NULL, 10) : 0;
    PQclear (result);
    if (exists)
        return NOTIFIER_WRITER_DUPLICATE;
    if (has_reference && event->ts < reference + self->cooldown_ms)
        return NOTIFIER_WRITER_COOLDOWN;
    return NOTIFIER_WRITER_NOTIFIED;
}

//  A return is told for the port's latest told outage that began before
//  it, once. An outage that was not told (in the cool-down) leaves that
//  one's return in place, so its own return is not told either. If the
//  return of a told outage was lost on the way (PUB/SUB may drop), the
//  next return answers that outage, late but true.
static notifier_writer_result_t
s_online_verdict (notifier_writer_t *self, const proto_event_t *event, const char *user_text,
                  int64_t *since)
{
    char at_text[24];
    snprintf (at_text, sizeof at_text, "%" PRId64, event->ts);
    const char *values[] = {user_text, event->port, at_text};
    PGresult *result =
        s_exec (self, "online check",
                "SELECT o.since, (SELECT (n.data->>'onlineAt')::bigint FROM notifications n"
                "                  WHERE n.user_id = $1::bigint"
                "                    AND n.dedupe_key = 'sensor:' || $2::text || ':' || o.since"
                "                                       || ':online')"
                "  FROM (SELECT (data->>'offlineSince')::bigint AS since FROM notifications"
                "         WHERE port_id = $2::uuid AND kind = 'sensor.offline'"
                "           AND (data->>'offlineSince')::bigint < $3::bigint"
                "         ORDER BY 1 DESC LIMIT 1) o",
                3, values);
    if (!result)
        return NOTIFIER_WRITER_DROPPED;
    notifier_writer_result_t verdict = NOTIFIER_WRITER_UNTOLD;
    if (PQntuples (result) == 1) {
        *since = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
        if (PQgetisnull (result, 0, 1))
            verdict = NOTIFIER_WRITER_NOTIFIED;
        else if (strtoll (PQgetvalue (result, 0, 1), NULL, 10) == event->ts)
            verdict = NOTIFIER_WRITER_DUPLICATE;
    }
    PQclear (result);
    return verdict;
}

static void
s_compose_offline (s_notification_t *self, const proto_event_t *event, const s_port_t *port,
                   notifier_format_t *format, int64_t now_ms)
{
    char since[NOTIFIER_FORMAT_MAX];
    notifier_format_moment (format, event->ts, now_ms, since);
    self->title = zsys_sprintf ("%s sensor offline", port->name);
    self->message = zsys_sprintf ("No reading from %s since %s.", port->name, since);
    self->data = s_json_text (
        json_pack ("{s:s, s:I}", "portId", event->port, "offlineSince", (json_int_t)event->ts));
}

static void
s_compose_online (s_notification_t *self, const proto_event_t *event, const s_port_t *port,
                  notifier_format_t *format, int64_t now_ms, int64_t since)
{
    char at[NOTIFIER_FORMAT_MAX], duration[NOTIFIER_FORMAT_MAX];
    notifier_format_moment (format, event->ts, now_ms, at);
    notifier_format_duration (event->ts - since, duration);
    self->title = zsys_sprintf ("%s sensor back online", port->name);
    self->message =
        zsys_sprintf ("%s reported again at %s, after %s offline.", port->name, at, duration);
    self->data =
        s_json_text (json_pack ("{s:s, s:I, s:I, s:I}", "portId", event->port, "offlineSince",
                                (json_int_t)since, "onlineAt", (json_int_t)event->ts,
                                "offlineSeconds", (json_int_t)((event->ts - since) / 1000)));
}

static notifier_writer_result_t
s_handle_sensor (notifier_writer_t *self, const proto_event_t *event, const s_port_t *port,
                 const char *user_text, int64_t now_ms, bool offline)
{
    s_notification_t notification = {.kind = offline ? "sensor.offline" : "sensor.online"};
    notifier_writer_result_t result = NOTIFIER_WRITER_DROPPED;
    if (s_command (self, "BEGIN") == 0) {
        int64_t since = event->ts;
        if (offline) {
            notification.dedupe_key =
                zsys_sprintf ("sensor:%s:%" PRId64 ":offline", event->port, since);
            if (notification.dedupe_key)
                result = s_offline_verdict (self, event, user_text, notification.dedupe_key);
        } else {
            result = s_online_verdict (self, event, user_text, &since);
            notification.dedupe_key =
                zsys_sprintf ("sensor:%s:%" PRId64 ":online", event->port, since);
        }
        if (result == NOTIFIER_WRITER_NOTIFIED) {
            notifier_format_t *format = s_port_format (port);
            if (offline)
                s_compose_offline (&notification, event, port, format, now_ms);
            else
                s_compose_online (&notification, event, port, format, now_ms, since);
            notifier_format_destroy (&format);
        }
        result = s_finish (self, event, user_text, &notification, result);
    }
    s_notification_free (&notification);
    return result;
}

//  ---------------------------------------------------------------------------

static bool
s_episode_usable (const proto_event_t *event, bool start)
{
    const proto_episode_t *episode = &event->episode;
    int64_t end = episode->end ? episode->end : event->ts;
    return event->has_episode && episode->start > 0 && episode->start <= TIME_MAX_MS &&
           (start || (end >= episode->start && end <= TIME_MAX_MS)) && isfinite (event->watts) &&
           isfinite (episode->energy_wh) && isfinite (episode->mean_watts) &&
           isfinite (episode->peak_watts);
}

static notifier_writer_result_t
s_handle (notifier_writer_t *self, const proto_event_t *event, int64_t now_ms)
{
    bool start = streq (event->kind, "phantom.start");
    bool episode = start || streq (event->kind, "phantom.end");
    bool status = streq (event->kind, "status");
    //  The detector's offline timer gives status offline; the first reading
    //  after it gives a status event whose previous is offline.
    bool offline = status && event->status == PROTO_STATUS_OFFLINE;
    bool online = status && !offline && event->previous == PROTO_STATUS_OFFLINE;
    if (!episode && !offline && !online)
        return NOTIFIER_WRITER_IGNORED;
    if (event->user <= 0 || (episode && !s_episode_usable (event, start)) ||
        (!episode && (event->ts <= 0 || event->ts > TIME_MAX_MS))) {
        zsys_warning ("notifier port %s - %s event without a usable %s, dropped", event->port,
                      event->kind, episode ? "episode" : "time");
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
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, event->user);
    notifier_writer_result_t result =
        episode ? s_handle_episode (self, event, port, user_text, now_ms)
                : s_handle_sensor (self, event, port, user_text, now_ms, offline);
    if (self->verbose && result != NOTIFIER_WRITER_NOTIFIED && result != NOTIFIER_WRITER_DROPPED)
        zsys_debug ("notifier port %s - %s%s not notified (%s)", event->port, event->kind,
                    episode ? "" : (offline ? " offline" : " online"),
                    result == NOTIFIER_WRITER_DUPLICATE  ? "already notified"
                    : result == NOTIFIER_WRITER_COOLDOWN ? "inside the cool-down"
                    : result == NOTIFIER_WRITER_UNTOLD   ? "its outage was not told"
                                                         : "always-on port");
    return result;
}

notifier_writer_result_t
notifier_writer_handle (notifier_writer_t *self, const proto_event_t *event, int64_t now_ms)
{
    assert (self);
    assert (event);
    notifier_writer_result_t result = s_handle (self, event, now_ms);
    //  A lost connection is retried once, so a database restart between
    //  two episodes costs no notification.
    if (result == NOTIFIER_WRITER_DROPPED && self->db && PQstatus (self->db) != CONNECTION_OK) {
        zsys_warning ("notifier database - connection lost, reconnecting");
        result = s_handle (self, event, now_ms);
    }
    self->counts[result]++;
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

//  The notification with dedupe_key: "kind|title|message", or NULL.
static char *
s_test_notification (PGconn *db, const char *dedupe_key)
{
    return notifier_test_db_value (
        db,
        "SELECT kind || '|' || title || '|' || message FROM notifications WHERE dedupe_key = $1",
        dedupe_key, NULL, NULL);
}

static void
s_test_expect (PGconn *db, const char *dedupe_key, const char *expected, bool verbose)
{
    char *got = s_test_notification (db, dedupe_key);
    if (verbose || !got || !streq (got, expected))
        zsys_info ("notifier_writer - %s: %s (expected %s)", dedupe_key, got ? got : "(none)",
                   expected);
    assert (got && streq (got, expected));
    free (got);
}

static int64_t
s_test_count (PGconn *db, const char *user_text, const char *kind)
{
    return notifier_test_db_int (db,
                                 "SELECT count(*) FROM notifications WHERE user_id = $1::bigint"
                                 " AND kind LIKE $2",
                                 user_text, kind, NULL);
}

//  Episodes: texts, price at the tariff in force, cool-down, always-on.
static void
s_test_episodes (PGconn *db, bool verbose)
{
    int64_t user = notifier_test_db_user (db, 0.30, "EUR");
    char *port = notifier_test_db_port (db, user, "Desk lamp");
    char *other_port = notifier_test_db_port (db, user, "TV");
    char *router = notifier_test_db_port (db, user, "Router");
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
    int64_t t0 = 1700000000000; //  2023-11-14 22:13:20 UTC
    //  From an hour into the first episode on, the price is 0.50.
    char *change = zsys_sprintf ("%" PRId64, t0 + 3600000);
    free (notifier_test_db_value (db,
                                  "INSERT INTO tariffs (user_id, valid_from, price_per_kwh)"
                                  " VALUES ($1::bigint, to_timestamp ($2::bigint / 1000.0), 0.50)"
                                  " RETURNING id",
                                  user_text, change, NULL));
    zstr_free (&change);

    notifier_writer_t *writer = notifier_writer_new (notifier_test_db_conninfo (), 600, verbose);
    assert (writer);

    //  Start, twice: one notification; the same day, so the time alone.
    proto_event_t start = notifier_test_db_event ("phantom.start", user, port, t0, 0, 7.25, 0);
    assert (notifier_writer_handle (writer, &start, t0 + 60000) == NOTIFIER_WRITER_NOTIFIED);
    assert (notifier_writer_handle (writer, &start, t0 + 60000) == NOTIFIER_WRITER_DUPLICATE);
    char *key = zsys_sprintf ("episode:%s:%" PRId64 ":start", port, t0);
    assert (notifier_test_db_int (db, "SELECT count(*) FROM notifications WHERE dedupe_key = $1",
                                  key, NULL, NULL) == 1);
    s_test_expect (db, key,
                   "phantom.start|Phantom load on Desk lamp|Desk lamp has drawn 7.3 W while idle"
                   " since 10:13 PM.",
                   verbose);
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

    //  End, two hours later (the next day: the start with its date), 1500
    //  Wh: half at 0.30, half at 0.50 EUR/kWh, 0.60 EUR.
    int64_t t1 = t0 + 2 * 3600 * 1000;
    proto_event_t end = notifier_test_db_event ("phantom.end", user, port, t0, t1, 2, 1500);
    assert (notifier_writer_handle (writer, &end, t1 + 1000) == NOTIFIER_WRITER_NOTIFIED);
    assert (notifier_writer_handle (writer, &end, t1 + 1000) == NOTIFIER_WRITER_DUPLICATE);
    key = zsys_sprintf ("episode:%s:%" PRId64 ":end", port, t0);
    s_test_expect (db, key,
                   "phantom.end|Phantom load ended on Desk lamp|Desk lamp drew 750.0 W on average"
                   " for 2 h 0 min while idle (since Nov 14, 2023, 10:13 PM): 1.50 kWh wasted,"
                   " costing \xe2\x82\xac"
                   "0.60.",
                   verbose);
    char *cost = notifier_test_db_value (
        db,
        "SELECT data->>'cost' || ' ' || (data->>'currency') || ' ' || (data->>'durationSeconds')"
        " || ' ' || (data->>'energyWh') FROM notifications WHERE dedupe_key = $1",
        key, NULL, NULL);
    assert (streq (cost, "0.6 EUR 7200 1500.0") || streq (cost, "0.6 EUR 7200 1500"));
    free (cost);
    zstr_free (&key);

    //  A second episode 5 minutes after the first ended: inside the
    //  10-minute cool-down, neither its start nor its end is notified.
    int64_t t2 = t1 + 5 * 60 * 1000;
    proto_event_t flap = notifier_test_db_event ("phantom.start", user, port, t2, 0, 3, 0);
    assert (notifier_writer_handle (writer, &flap, t2) == NOTIFIER_WRITER_COOLDOWN);
    proto_event_t flap_end =
        notifier_test_db_event ("phantom.end", user, port, t2, t2 + 60000, 3, 0.05);
    assert (notifier_writer_handle (writer, &flap_end, t2) == NOTIFIER_WRITER_COOLDOWN);
    //  Another port is not affected by this port's cool-down.
    proto_event_t other = notifier_test_db_event ("phantom.start", user, other_port, t2, 0, 3, 0);
    assert (notifier_writer_handle (writer, &other, t2) == NOTIFIER_WRITER_NOTIFIED);
    //  A third episode 11 minutes after the first one's end is notified,
    //  even by a fresh writer (the cool-down lives in the table).
    notifier_writer_destroy (&writer);
    writer = notifier_writer_new (notifier_test_db_conninfo (), 600, verbose);
    int64_t t3 = t1 + 11 * 60 * 1000;
    proto_event_t again = notifier_test_db_event ("phantom.start", user, port, t3, 0, 4, 0);
    assert (notifier_writer_handle (writer, &again, t3) == NOTIFIER_WRITER_NOTIFIED);
    //  A small episode: 4 Wh at 0.50 is 0.002 EUR, less than a cent.
    proto_event_t small = notifier_test_db_event ("phantom.end", user, port, t3, t3 + 90000, 4, 4);
    assert (notifier_writer_handle (writer, &small, t3 + 90000) == NOTIFIER_WRITER_NOTIFIED);
    key = zsys_sprintf ("episode:%s:%" PRId64 ":end", port, t3);
    char *message = notifier_test_db_value (
        db, "SELECT message FROM notifications WHERE dedupe_key = $1", key, NULL, NULL);
    assert (message && strstr (message, "for 1 min while idle (since 12:24 AM)") &&
            strstr (message, "4.0 Wh wasted, costing < \xe2\x82\xac"
                             "0.01."));
    free (message);
    assert (notifier_test_db_int (db,
                                  "SELECT round ((data->>'cost')::numeric * 10000)"
                                  " FROM notifications WHERE dedupe_key = $1",
                                  key, NULL, NULL) == 20);
    zstr_free (&key);
    assert (s_test_count (db, user_text, "phantom.%") == 5);

    //  An always-on port is never told about: its start is skipped; a
    //  port made always-on mid-episode gets no word of the end.
    free (notifier_test_db_value (
        db, "UPDATE ports SET role = 'always_on' WHERE id = $1::uuid RETURNING id", router, NULL,
        NULL));
    proto_event_t router_start =
        notifier_test_db_event ("phantom.start", user, router, t0, 0, 9, 0);
    assert (notifier_writer_handle (writer, &router_start, t0) == NOTIFIER_WRITER_ALWAYS_ON);
    free (notifier_test_db_value (
        db, "UPDATE ports SET role = 'standby' WHERE id = $1::uuid RETURNING id", router, NULL,
        NULL));
    proto_event_t router_again =
        notifier_test_db_event ("phantom.start", user, router, t1, 0, 9, 0);
    assert (notifier_writer_handle (writer, &router_again, t1) == NOTIFIER_WRITER_NOTIFIED);
    free (notifier_test_db_value (
        db, "UPDATE ports SET role = 'always_on' WHERE id = $1::uuid RETURNING id", router, NULL,
        NULL));
    proto_event_t router_end =
        notifier_test_db_event ("phantom.end", user, router, t1, t1 + 600000, 9, 90);
    assert (notifier_writer_handle (writer, &router_end, t1) == NOTIFIER_WRITER_ALWAYS_ON);
    assert (notifier_writer_count (writer, NOTIFIER_WRITER_ALWAYS_ON) == 2);
    assert (notifier_test_db_int (db, "SELECT count(*) FROM notifications WHERE port_id = $1::uuid",
                                  router, NULL, NULL) == 1);

    //  A port that is not the user's, other status changes, and garbage
    //  times are dropped or ignored without a row.
    proto_event_t stranger =
        notifier_test_db_event ("phantom.start", user + 1000000, port, t3 + 1, 0, 4, 0);
    assert (notifier_writer_handle (writer, &stranger, t3) == NOTIFIER_WRITER_DROPPED);
    proto_event_t unknown = notifier_test_db_event (
        "phantom.start", user, "00000000-0000-0000-0000-000000000000", t3, 0, 4, 0);
    assert (notifier_writer_handle (writer, &unknown, t3) == NOTIFIER_WRITER_DROPPED);
    proto_event_t status =
        notifier_test_db_status (user, port, t3, PROTO_STATUS_IDLE, PROTO_STATUS_ACTIVE);
    assert (notifier_writer_handle (writer, &status, t3) == NOTIFIER_WRITER_IGNORED);
    proto_event_t garbage = notifier_test_db_event ("phantom.start", user, port, -5, 0, 4, 0);
    assert (notifier_writer_handle (writer, &garbage, t3) == NOTIFIER_WRITER_DROPPED);
    proto_event_t backwards =
        notifier_test_db_event ("phantom.end", user, port, t3 + 5000, t3, 4, 1);
    assert (notifier_writer_handle (writer, &backwards, t3) == NOTIFIER_WRITER_DROPPED);
    proto_event_t nan_event =
        notifier_test_db_event ("phantom.start", user, port, t3 + 9, 0, NAN, 0);
    assert (notifier_writer_handle (writer, &nan_event, t3) == NOTIFIER_WRITER_DROPPED);
    proto_event_t timeless = notifier_test_db_status (user, port, TIME_MAX_MS + 1,
                                                      PROTO_STATUS_OFFLINE, PROTO_STATUS_IDLE);
    assert (notifier_writer_handle (writer, &timeless, t3) == NOTIFIER_WRITER_DROPPED);
    assert (notifier_writer_count (writer, NOTIFIER_WRITER_DROPPED) == 6);
    assert (notifier_writer_count (writer, NOTIFIER_WRITER_NOTIFIED) == 3);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint",
                                  user_text, NULL, NULL) == 6);

    //  A database that is not there: events are dropped, nothing crashes.
    notifier_writer_t *lost =
        notifier_writer_new ("host=/nonexistent port=1 dbname=x", 600, verbose);
    assert (notifier_writer_handle (lost, &again, t3) == NOTIFIER_WRITER_DROPPED);
    notifier_writer_destroy (&lost);

    notifier_writer_destroy (&writer);
    notifier_test_db_drop_user (db, user);
    free (webhook);
    free (disabled);
    free (port);
    free (other_port);
    free (router);
}

//  Sensor outages: told once, offline then back online, in the owner's
//  locale and zone, with the cool-down against a flapping sensor.
static void
s_test_sensors (PGconn *db, bool verbose)
{
    int64_t user = notifier_test_db_user (db, 0.30, "EUR");
    notifier_test_db_user_place (db, user, "Europe/Berlin", "de-DE");
    char *tv = notifier_test_db_port (db, user, "TV");
    char *lamp = notifier_test_db_port (db, user, "Lamp");
    char *router = notifier_test_db_port (db, user, "Router");
    free (notifier_test_db_value (
        db, "UPDATE ports SET role = 'always_on' WHERE id = $1::uuid RETURNING id", router, NULL,
        NULL));
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    char *webhook = notifier_test_db_value (db,
                                            "INSERT INTO webhooks (user_id, url, secret) VALUES "
                                            "($1::bigint, 'http://127.0.0.1:1/', 's')"
                                            " RETURNING id",
                                            user_text, NULL, NULL);
    assert (webhook);
    //  A three-hour cool-down, so a flap fits in it.
    notifier_writer_t *writer =
        notifier_writer_new (notifier_test_db_conninfo (), 3 * 3600, verbose);
    assert (writer);
    PQclear (PQexec (db, "LISTEN phantom_notification"));

    //  The TV's last reading at 14:05 Berlin (13:05 UTC); the detector's
    //  timer takes it offline five minutes later.
    int64_t since = 1709989500000;
    int64_t minute = 60000;
    proto_event_t offline =
        notifier_test_db_status (user, tv, since, PROTO_STATUS_OFFLINE, PROTO_STATUS_PHANTOM);
    assert (notifier_writer_handle (writer, &offline, since + 5 * minute) ==
            NOTIFIER_WRITER_NOTIFIED);
    char *offline_key = zsys_sprintf ("sensor:%s:%" PRId64 ":offline", tv, since);
    s_test_expect (db, offline_key,
                   "sensor.offline|TV sensor offline|No reading from TV since 14:05.", verbose);
    //  Announced for the live stream, "<user>:<id>".
    char *id = notifier_test_db_value (db, "SELECT id FROM notifications WHERE dedupe_key = $1",
                                       offline_key, NULL, NULL);
    char *payload = zsys_sprintf ("%s:%s", user_text, id);
    PQconsumeInput (db);
    PGnotify *notify = PQnotifies (db);
    assert (notify && streq (notify->relname, "phantom_notification") &&
            streq (notify->extra, payload));
    PQfreemem (notify);
    zstr_free (&payload);
    free (id);
    //  Re-delivered, even by a fresh writer: still one.
    assert (notifier_writer_handle (writer, &offline, since + 6 * minute) ==
            NOTIFIER_WRITER_DUPLICATE);
    notifier_writer_destroy (&writer);
    writer = notifier_writer_new (notifier_test_db_conninfo (), 3 * 3600, verbose);
    assert (notifier_writer_handle (writer, &offline, since + 7 * minute) ==
            NOTIFIER_WRITER_DUPLICATE);
    assert (s_test_count (db, user_text, "sensor.%") == 1);

    //  Back at 16:12: told once, with how long it was silent.
    int64_t back = since + (2 * 60 + 7) * minute;
    proto_event_t online =
        notifier_test_db_status (user, tv, back, PROTO_STATUS_ACTIVE, PROTO_STATUS_OFFLINE);
    assert (notifier_writer_handle (writer, &online, back + 1000) == NOTIFIER_WRITER_NOTIFIED);
    assert (notifier_writer_handle (writer, &online, back + 2000) == NOTIFIER_WRITER_DUPLICATE);
    char *online_key = zsys_sprintf ("sensor:%s:%" PRId64 ":online", tv, since);
    s_test_expect (db, online_key,
                   "sensor.online|TV sensor back online|TV reported again at 16:12, after 2 h 7 min"
                   " offline.",
                   verbose);
    assert (notifier_test_db_int (db,
                                  "SELECT (data->>'offlineSeconds')::bigint FROM notifications"
                                  " WHERE dedupe_key = $1 AND (data->>'offlineSince')::bigint"
                                  " + 7620000 = (data->>'onlineAt')::bigint",
                                  online_key, NULL, NULL) == 7620);
    assert (s_test_count (db, user_text, "sensor.%") == 2);
    //  Both went to the webhook.
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM webhook_deliveries d JOIN notifications n"
                                  " ON n.id = d.notification_id WHERE d.webhook_id = $1::bigint"
                                  " AND n.kind LIKE 'sensor.%'",
                                  webhook, NULL, NULL) == 2);

    //  Silent again from 16:20, inside the cool-down of the 14:05 outage:
    //  neither that outage nor its return is told.
    int64_t flap = since + (2 * 60 + 15) * minute;
    proto_event_t flap_offline =
        notifier_test_db_status (user, tv, flap, PROTO_STATUS_OFFLINE, PROTO_STATUS_ACTIVE);
    assert (notifier_writer_handle (writer, &flap_offline, flap + 5 * minute) ==
            NOTIFIER_WRITER_COOLDOWN);
    proto_event_t flap_online = notifier_test_db_status (user, tv, flap + 10 * minute,
                                                         PROTO_STATUS_IDLE, PROTO_STATUS_OFFLINE);
    assert (notifier_writer_handle (writer, &flap_online, flap + 10 * minute) ==
            NOTIFIER_WRITER_UNTOLD);
    assert (s_test_count (db, user_text, "sensor.%") == 2);

    //  Back online with no told outage at all (the lamp): nothing.
    proto_event_t lamp_online =
        notifier_test_db_status (user, lamp, back, PROTO_STATUS_OFF, PROTO_STATUS_OFFLINE);
    assert (notifier_writer_handle (writer, &lamp_online, back) == NOTIFIER_WRITER_UNTOLD);

    //  After the cool-down (three hours after 14:05), the TV's next outage
    //  is told, and its return; the next day the time has its date.
    int64_t later = since + (3 * 60 + 25) * minute;
    proto_event_t later_offline =
        notifier_test_db_status (user, tv, later, PROTO_STATUS_OFFLINE, PROTO_STATUS_IDLE);
    assert (notifier_writer_handle (writer, &later_offline, later + 5 * minute) ==
            NOTIFIER_WRITER_NOTIFIED);
    int64_t next_day = since + 20 * 60 * minute;
    proto_event_t later_online =
        notifier_test_db_status (user, tv, next_day, PROTO_STATUS_IDLE, PROTO_STATUS_OFFLINE);
    assert (notifier_writer_handle (writer, &later_online, next_day + minute) ==
            NOTIFIER_WRITER_NOTIFIED);
    char *later_key = zsys_sprintf ("sensor:%s:%" PRId64 ":online", tv, later);
    s_test_expect (
        db, later_key,
        "sensor.online|TV sensor back online|TV reported again at 10:05, after 16 h 35 min"
        " offline.",
        verbose);
    zstr_free (&later_key);

    //  An always-on port's sensor is watched like any other.
    proto_event_t router_offline =
        notifier_test_db_status (user, router, since, PROTO_STATUS_OFFLINE, PROTO_STATUS_ACTIVE);
    assert (notifier_writer_handle (writer, &router_offline, since + 2 * 86400000LL) ==
            NOTIFIER_WRITER_NOTIFIED);
    char *router_key = zsys_sprintf ("sensor:%s:%" PRId64 ":offline", router, since);
    s_test_expect (db, router_key,
                   "sensor.offline|Router sensor offline|No reading from Router since 09.03.2024,"
                   " 14:05.",
                   verbose);
    zstr_free (&router_key);
    assert (s_test_count (db, user_text, "sensor.offline") == 3);
    assert (s_test_count (db, user_text, "sensor.online") == 2);

    PQclear (PQexec (db, "UNLISTEN *"));
    notifier_writer_destroy (&writer);
    notifier_test_db_drop_user (db, user);
    zstr_free (&offline_key);
    zstr_free (&online_key);
    free (webhook);
    free (tv);
    free (lamp);
    free (router);
}

void
notifier_writer_test (bool verbose)
{
    printf (" * notifier_writer: ");
    if (verbose)
        printf ("\n");
    PGconn *db = notifier_test_db_connect ();
    s_test_episodes (db, verbose);
    s_test_sensors (db, verbose);
    PQfinish (db);
    printf ("OK\n");
}
