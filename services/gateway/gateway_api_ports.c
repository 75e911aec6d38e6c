/*  =========================================================================
    gateway_api_ports - /api/ports: the ports of the signed-in user, their
    readings (raw or downsampled) and their phantom episodes

    Readings are read by the (port_id, ts) index only, newest-first with a
    limit, so a wide window costs at most one page of rows; a downsampled
    series groups by date_bin in PostgreSQL and never sends more than
    S_SERIES_MAX buckets. Buckets over a long window are whole minutes,
    built from the store's per-minute rollups (readings_minute) where they
    are complete, and from raw readings for the rest: the few minutes
    after the rollups' watermark and the part of the window's first minute.
    =========================================================================
*/
#include "gateway_api.h"

#include <ctype.h>
#include <math.h>
#include <time.h>

#define S_WATTS_MAX 100000.0 //  far above any outlet; keeps settings sane
#define S_PHANTOM_SECONDS_MAX (7 * 24 * 3600)
#define S_SERIES_MAX 5000                   //  most rows or buckets in one series answer
#define S_SERIES_DEFAULT_MS (3600 * 1000LL) //  default window: the last hour
#define S_EPISODES_DEFAULT 50
//  Windows longer than this read rollups. Shorter ones read at most this
//  much raw (4,320 rows at a reading per 5 s), which is cheap, and then
//  also see readings that arrived too late for the store's last re-roll.
#define S_ROLLUP_WINDOW_MS (6 * 3600 * 1000LL)
//  Readings further apart than this are offline between them: no energy,
//  no reported time (the rollups' gap, migration 013), and a chart draws a
//  gap there.
#define S_GAP_SECONDS 300

//  A port that has never reported is "waiting", whatever its row says. A
//  port is new while the MQTT service created it for a plug's channel and
//  its owner has not changed it yet (migration 017's is_new).
#define S_PORT_COLUMNS                                                                                                                 \
    "id::text, name, device_id,"                                                                                                       \
    " CASE WHEN last_reading_at IS NULL THEN 'waiting' ELSE status END, " GATEWAY_API_MS (                                             \
        "status_since") ", " GATEWAY_API_MS ("last_reading_at") ", last_power,"                                                        \
                                                                " off_watts, standby_watts, "                                          \
                                                                "min_phantom_seconds,"                                                 \
                                                                " " GATEWAY_API_ROLE (                                                 \
                                                                    "role") ", " GATEWAY_API_MS ("created_at") ", off_schedule::text," \
                                                                                                               " external_key,"        \
                                                                                                               " EXISTS (SELECT 1 FROM mqtt_channels c WHERE c.port_id = ports.id AND c.is_new)"

//  Of S_PORT_COLUMNS; s_port_object adds offlineAfterSeconds.
static const gateway_api_member_t s_port_members[] = {
    {"id", 0, GATEWAY_API_TEXT},
    {"name", 1, GATEWAY_API_TEXT},
    {"deviceId", 2, GATEWAY_API_INTEGER},
    {"status", 3, GATEWAY_API_TEXT},
    {"statusSince", 4, GATEWAY_API_TIME},
    {"lastReadingAt", 5, GATEWAY_API_TIME},
    {"lastPower", 6, GATEWAY_API_REAL},
    {"createdAt", 11, GATEWAY_API_TIME},
    {"settings.role", 10, GATEWAY_API_TEXT},
    {"settings.offWatts", 7, GATEWAY_API_REAL},
    {"settings.standbyWatts", 8, GATEWAY_API_REAL},
    {"settings.minPhantomSeconds", 9, GATEWAY_API_INTEGER},
    {"settings.offSchedule", 12, GATEWAY_API_JSON},
    {"externalKey", 13, GATEWAY_API_TEXT},
    {"isNew", 14, GATEWAY_API_BOOL},
    {0}};

//  A port's JSON from a row of S_PORT_COLUMNS.
static json_t *
s_port_object (gateway_api_request_t *request, PGresult *result, int row)
{
    json_t *port = gateway_api_object_from_row (result, row, s_port_members);
    int offline = request->gateway->offline_seconds;
    json_object_set_new (port, "offlineAfterSeconds",
                         json_integer (offline > 0 ? offline : GATEWAY_OFFLINE_SECONDS_DEFAULT));
    return port;
}

//  Answers status {"port": the port of row 0}; clears result.
static int
s_port_send (gateway_api_request_t *request, int status, const char *message, PGresult *result)
{
    json_t *port = s_port_object (request, result, 0);
    PQclear (result);
    return gateway_api_send_object (request, status, message, "port", port);
}

//  Detection settings of a port, defaults as in the schema.
typedef struct {
    double off_watts;
    double standby_watts;
    int64_t min_phantom_seconds;
    const char *role; //  as stored: standby, should_be_off, always_on
    char *schedule;   //  off_schedule as JSON text, NULL: none; caller frees
} s_settings_t;

//  The roles as the API and the database name them.
static const char *s_roles[][2] = {
    {"standby", "standby"}, {"shouldBeOff", "should_be_off"}, {"alwaysOn", "always_on"}};

//  Reads the optional settings fields of body over the defaults. 0, or the
//  status answered. An offSchedule is stored as the API writes it back
//  (days in week order), and only with the role shouldBeOff: another role
//  with a schedule is refused rather than the schedule dropped unsaid.
static int
s_settings_read (gateway_api_request_t *request, json_t *body, s_settings_t *settings)
{
    *settings = (s_settings_t){0.5, 15, 60, "standby", NULL};
    bool present;
    int status;
    if ((status = gateway_api_field_number (request, body, "offWatts", 0, S_WATTS_MAX,
                                            &settings->off_watts, &present)) ||
        (status = gateway_api_field_number (request, body, "standbyWatts", 0, S_WATTS_MAX,
                                            &settings->standby_watts, &present)) ||
        (status = gateway_api_field_integer (request, body, "minPhantomSeconds", false, 0,
                                             S_PHANTOM_SECONDS_MAX, &settings->min_phantom_seconds,
                                             &present)))
        return status;
    if (settings->standby_watts <= settings->off_watts)
        return gateway_api_invalid_field (request, "standbyWatts",
                                          "Make the standby limit higher than the off limit.");
    //  The settings roles replaced: refused, so an old client learns why
    //  its setting did not stick.
    static const char *replaced[] = {"expectedOff", "expectedOffFrom", "expectedOffTo"};
    for (size_t index = 0; index < sizeof replaced / sizeof replaced[0]; index++)
        if (json_object_get (body, replaced[index]))
            return gateway_api_invalid_field (request, replaced[index],
                                              "This setting is now role and offSchedule.");
    json_t *role = json_object_get (body, "role");
    if (role) {
        settings->role = NULL;
        for (size_t index = 0; index < sizeof s_roles / sizeof s_roles[0]; index++)
            if (json_is_string (role) && streq (json_string_value (role), s_roles[index][0]))
                settings->role = s_roles[index][1];
        if (!settings->role)
            return gateway_api_invalid_field (
                request, "role", "Choose standby, shouldBeOff or alwaysOn as the port's role.");
    }
    json_t *schedule;
    if ((status = gateway_api_field_windows (request, body, "offSchedule", PROTO_WINDOWS_MAX,
                                             &schedule, &present)))
        return status;
    if (schedule && !streq (settings->role, "should_be_off")) {
        json_decref (schedule);
        return gateway_api_invalid_field (
            request, "offSchedule",
            "Only a port that should be off has a schedule: choose that role, or no schedule.");
    }
    if (schedule)
        settings->schedule = json_dumps (schedule, JSON_COMPACT);
    json_decref (schedule);
    return 0;
}

//  Reads body's name trimmed of white space into name: 0, or the status
//  answered. Absent (allowed unless required) leaves name "". A name of
//  nothing but spaces is no name.
static int
s_name_read (gateway_api_request_t *request, json_t *body, bool required,
             char name[4 * GATEWAY_API_NAME_MAX + 1])
{
    name[0] = 0;
    json_t *field = json_object_get (body, "name");
    if (!field && !required)
        return 0;
    const char *text = json_string_value (field);
    if (!text || strlen (text) != json_string_length (field))
        return gateway_api_invalid_field (request, "name", "Enter a name.");
    const char *blank = " \t\n\r\v\f";
    text += strspn (text, blank);
    size_t length = strlen (text);
    while (length > 0 && strchr (blank, text[length - 1]))
        length--;
    size_t characters = 0;
    for (size_t index = 0; index < length; index++)
        characters += ((unsigned char)text[index] & 0xC0) != 0x80;
    if (characters == 0)
        return gateway_api_invalid_field (request, "name", "Enter a name.");
    if (characters > GATEWAY_API_NAME_MAX)
        return gateway_api_invalid_field (request, "name", "Keep the name to 100 characters.");
    memcpy (name, text, length);
    name[length] = 0;
    return 0;
}

static int
s_ports_list (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "SELECT " S_PORT_COLUMNS " FROM ports WHERE user_id = $1::bigint ORDER BY created_at, id",
        1, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (list, s_port_object (request, result, row));
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "ports", list);
}

static int
s_ports_create (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    char name[4 * GATEWAY_API_NAME_MAX + 1];
    int64_t device;
    bool present;
    s_settings_t settings = {0};
    if ((status = s_name_read (request, body, true, name)) ||
        (status = gateway_api_field_integer (request, body, "deviceId", true, 1, INT64_MAX, &device,
                                             &present)) ||
        (status = s_settings_read (request, body, &settings)))
        goto done;
    char device_text[24], off[32], standby[32], seconds[24];
    snprintf (device_text, sizeof device_text, "%" PRId64, device);
    snprintf (off, sizeof off, "%.9g", settings.off_watts);
    snprintf (standby, sizeof standby, "%.9g", settings.standby_watts);
    snprintf (seconds, sizeof seconds, "%" PRId64, settings.min_phantom_seconds);
    const char *values[] = {request->user_text, device_text,      name, off, standby, seconds,
                            settings.role,      settings.schedule};
    //  Selecting the device by id and owner makes someone else's device a 404.
    PGresult *result = gateway_api_run (
        request, &status,
        "INSERT INTO ports (user_id, device_id, name, off_watts, standby_watts,"
        "                   min_phantom_seconds, role, off_schedule)"
        " SELECT $1::bigint, id, $3, $4::real, $5::real, $6::integer, $7, $8::jsonb"
        " FROM devices WHERE id = $2::bigint AND user_id = $1::bigint"
        " RETURNING " S_PORT_COLUMNS,
        8, values);
    if (!result)
        goto done;
    if (PQntuples (result) == 1) {
        gateway_cache_refresh_port (request->gateway->cache, PQgetvalue (result, 0, 0));
        status = s_port_send (request, 201, "Port created", result);
    } else {
        PQclear (result);
        status = gateway_http_send_error (request->conn, 404, "not_found", "Device not found", 0);
    }
done:
    free (settings.schedule);
    json_decref (body);
    return status;
}

static int
s_ports_get (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "SELECT " S_PORT_COLUMNS " FROM ports WHERE id = $1::uuid AND user_id = $2::bigint", 2,
        values);
    return result ? s_port_send (request, 200, NULL, result) : status;
}

//  The fields the settings reader expects, from a port's JSON: a PATCH
//  is validated as a whole port, with what it does not name unchanged.
//  A role given without an offSchedule: shouldBeOff keeps the port's
//  schedule (a port of another role has none: should be off always);
//  standby and alwaysOn have no schedule, so theirs is cleared.
static void
s_settings_merge (json_t *body, json_t *port)
{
    json_t *nested = json_object_get (body, "settings");
    if (json_is_object (nested))
        json_object_update_missing (body, nested);
    json_t *role = json_object_get (body, "role");
    if (role && !json_object_get (body, "offSchedule") &&
        !(json_is_string (role) && streq (json_string_value (role), "shouldBeOff")))
        json_object_set_new (body, "offSchedule", json_null ());
    json_object_update_missing (body, json_object_get (port, "settings"));
}

//  "node:input" as Emoncms names them: both parts 1 to 64 bytes of
//  letters, digits (any script), _ - . and space.
static bool
s_external_key_valid (const char *key)
{
    const char *colon = strchr (key, ':');
    if (!colon || strchr (colon + 1, ':'))
        return false;
    size_t node = (size_t)(colon - key), input = strlen (colon + 1);
    if (node < 1 || node > 64 || input < 1 || input > 64)
        return false;
    for (const char *cursor = key; *cursor; cursor++) {
        unsigned char c = (unsigned char)*cursor;
        if (!(isalnum (c) || c == '_' || c == '-' || c == '.' || c == ' ' || c == ':' || c >= 0x80))
            return false;
    }
    return true;
}

static int
s_ports_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *values[10] = {request->segments[1], request->user_text};
    PGresult *result = gateway_api_run_found (
        request, &status,
        "SELECT " S_PORT_COLUMNS " FROM ports WHERE id = $1::uuid AND user_id = $2::bigint", 2,
        values);
    if (!result)
        goto done;
    json_t *current = s_port_object (request, result, 0);
    PQclear (result);
    s_settings_merge (body, current);
    char name[4 * GATEWAY_API_NAME_MAX + 1];
    s_settings_t settings = {0};
    status = s_name_read (request, body, false, name);
    if (!status)
        status = s_settings_read (request, body, &settings);
    if (status) {
        free (settings.schedule);
        json_decref (current);
        goto done;
    }
    //  externalKey: absent keeps it, null clears it, else "node:input".
    const char *external = NULL;
    bool external_set = false;
    json_t *key = json_object_get (body, "externalKey");
    if (key && !json_is_null (key)) {
        external = json_string_value (key);
        if (!external || !s_external_key_valid (external)) {
            free (settings.schedule);
            json_decref (current);
            status = gateway_api_invalid_field (
                request, "externalKey",
                "Use node:input, e.g. emontx:power1 (letters, digits, _ - . and space, "
                "at most 64 each).");
            goto done;
        }
        external_set = true;
    } else if (key)
        external_set = true;
    char off[32], standby[32], seconds[24];
    snprintf (off, sizeof off, "%.9g", settings.off_watts);
    snprintf (standby, sizeof standby, "%.9g", settings.standby_watts);
    snprintf (seconds, sizeof seconds, "%" PRId64, settings.min_phantom_seconds);
    values[2] = *name ? name : json_string_value (json_object_get (current, "name"));
    values[3] = off;
    values[4] = standby;
    values[5] = seconds;
    values[6] = settings.role;
    values[7] = settings.schedule;
    values[8] = external_set ? "1" : "0";
    values[9] = external;
    //  Changed by its owner: no longer new (before the update, whose
    //  RETURNING then reads it so).
    result = gateway_api_run (request, &status,
                              "UPDATE mqtt_channels SET is_new = false WHERE port_id = $1::uuid"
                              " AND is_new AND device_id IN (SELECT id FROM devices"
                              " WHERE user_id = $2::bigint)",
                              2, values);
    if (!result) {
        free (settings.schedule);
        json_decref (current);
        goto done;
    }
    PQclear (result);
    request->conflict_code = "external_key_taken";
    request->conflict_message = "Another of your ports has this external key";
    //  No row: deleted meanwhile.
    result = gateway_api_run_found (
        request, &status,
        "UPDATE ports SET name = $3, off_watts = $4::real, standby_watts = $5::real,"
        " min_phantom_seconds = $6::integer, role = $7, off_schedule = $8::jsonb,"
        " external_key = CASE WHEN $9::boolean THEN $10 ELSE external_key END"
        " WHERE id = $1::uuid AND user_id = $2::bigint RETURNING " S_PORT_COLUMNS,
        10, values);
    free (settings.schedule);
    json_decref (current);
    if (result) {
        gateway_cache_refresh_port (request->gateway->cache, PQgetvalue (result, 0, 0));
        status = s_port_send (request, 200, "Port updated", result);
    }
done:
    json_decref (body);
    return status;
}

//  The port goes with its episodes and notifications (foreign key cascade)
//  and its readings (no foreign key), in one statement.
static int
s_ports_delete (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "WITH port AS (DELETE FROM ports WHERE id = $1::uuid AND user_id = $2::bigint"
        "              RETURNING id),"
        " readings AS (DELETE FROM readings WHERE port_id IN (SELECT id FROM port))"
        " SELECT id::text FROM port",
        2, values);
    if (!result)
        return status;
    gateway_cache_refresh_port (request->gateway->cache, PQgetvalue (result, 0, 0));
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, "Port deleted", json_object ());
}

//  ==========================================================================
//  Readings

//  From the raw query below.
static const gateway_api_member_t s_reading_members[] = {
    {"ts", 1, GATEWAY_API_TIME},       {"power", 2, GATEWAY_API_REAL},
    {"voltage", 3, GATEWAY_API_REAL},  {"current", 4, GATEWAY_API_REAL},
    {"status", 5, GATEWAY_API_STATUS}, {0}};

//  From the bucket queries below.
static const gateway_api_member_t s_bucket_members[] = {
    {"ts", 1, GATEWAY_API_TIME},  {"min", 2, GATEWAY_API_REAL},      {"mean", 3, GATEWAY_API_REAL},
    {"max", 4, GATEWAY_API_REAL}, {"count", 5, GATEWAY_API_INTEGER}, {0}};

int64_t
gateway_api_series_step (int64_t span_ms, int64_t step, bool *raised, bool *rollups)
{
    int64_t asked = step;
    if (step > 0 && (span_ms + step * 1000 - 1) / (step * 1000) > S_SERIES_MAX) {
        step = (span_ms + S_SERIES_MAX * 1000LL - 1) / (S_SERIES_MAX * 1000LL);
        //  Buckets align to the epoch, so the window may touch one more.
        while (span_ms / (step * 1000) + 1 > S_SERIES_MAX)
            step++;
    }
    //  A long window is read from the minute rollups whatever the step:
    //  binning its raw readings costs their number, which the user
    //  chooses (400 days of readings a second is 35 M rows). Rollups can
    //  only make buckets of whole minutes, so the step is rounded up to
    //  one: no more buckets than asked for.
    *rollups = step > 0 && span_ms > S_ROLLUP_WINDOW_MS;
    if (*rollups)
        step = (step + 59) / 60 * 60;
    *raised = step != asked;
    return step;
}

//  Raw: the newest S_SERIES_MAX readings of the window, oldest first, and
//  "truncated" when there were more. Downsampled: date_bin buckets of step
//  seconds from the epoch, the step as gateway_api_series_step makes it
//  ("step" says which was used, "stepRaised" whether it differs from the
//  one asked for). All read the port through its owner first (LEFT JOIN),
//  so a port that is not the user's is a 404 and an empty window is an
//  empty list.
static int
s_ports_readings (gateway_api_request_t *request)
{
    int64_t from = 0, to = 0, step = 0;
    int status = gateway_api_window (request, S_SERIES_DEFAULT_MS, &from, &to, &step);
    if (status)
        return status;
    bool raised, rollups;
    step = gateway_api_series_step (to - from, step, &raised, &rollups);
    char from_text[24], to_text[24], step_text[24], limit_text[24];
    snprintf (from_text, sizeof from_text, "%" PRId64, from);
    snprintf (to_text, sizeof to_text, "%" PRId64, to);
    snprintf (step_text, sizeof step_text, "%" PRId64, step);
    snprintf (limit_text, sizeof limit_text, "%d", S_SERIES_MAX + 1);
    const char *values[] = {request->segments[1], request->user_text, from_text, to_text,
                            step > 0 ? step_text : limit_text};
    PGresult *result;
    if (step == 0)
        result = gateway_api_run (
            request, &status,
            "SELECT p.id, r.ms, r.power, r.voltage, r.current, r.status FROM ports p"
            " LEFT JOIN LATERAL (SELECT * FROM ("
            "   SELECT " GATEWAY_API_MS (
                "ts") " AS ms, ts, power, voltage, current, status"
                      "   FROM readings WHERE port_id = p.id"
                      "   AND ts >= to_timestamp ($3::bigint / 1000.0) AND ts < to_timestamp "
                      "($4::bigint / 1000.0)"
                      "   ORDER BY ts DESC LIMIT $5::integer) newest ORDER BY ts) r ON true"
                      " WHERE p.id = $1::uuid AND p.user_id = $2::bigint",
            5, values);
    else if (rollups)
        //  The window splits at whole minutes: [lo, c) raw (the part of
        //  lo's minute in the window), [c, d) from rollups (whole minutes
        //  before the watermark: all rolled up), [d, hi) raw (after the
        //  watermark, and the part of hi's minute). A step of whole minutes
        //  never cuts a minute, so a bucket merges its parts exactly: min
        //  of mins, max of maxes, mean weighted by samples, which is the
        //  mean of the raw readings.
        result = gateway_api_run (
            request, &status,
            "WITH t AS (SELECT to_timestamp ($3::bigint / 1000.0) AS lo,"
            "                  to_timestamp ($4::bigint / 1000.0) AS hi),"
            " u AS (SELECT lo, hi, least (date_bin ('1 minute', lo - interval '1 microsecond',"
            "                                       timestamptz 'epoch') + interval '1 minute', "
            "hi) AS c"
            "       FROM t),"
            " w AS (SELECT lo, hi, c, greatest (c, least (date_bin ('1 minute', hi, timestamptz "
            "'epoch'),"
            "                                             coalesce ((SELECT watermark FROM "
            "rollup_state), c))) AS d"
            "       FROM u)"
            " SELECT p.id, b.ms, b.low, b.mean, b.high, b.count FROM ports p"
            " LEFT JOIN (SELECT " GATEWAY_API_MS (
                "bucket") " AS ms, min (low) AS low,"
                          "   (sum (total) / sum (count))::float8 AS mean, max (high) AS high, sum "
                          "(count) AS count"
                          "   FROM ("
                          "     SELECT date_bin ($5::integer * interval '1 second', minute, "
                          "timestamptz 'epoch') AS bucket,"
                          "            min (min_power) AS low, max (max_power) AS high,"
                          "            sum (mean_power * samples) AS total, sum (samples) AS count"
                          "     FROM readings_minute, w WHERE port_id = $1::uuid AND minute >= w.c "
                          "AND minute < w.d"
                          "     GROUP BY 1"
                          "     UNION ALL"
                          "     SELECT date_bin ($5::integer * interval '1 second', ts, "
                          "timestamptz 'epoch'),"
                          "            min (power), max (power), sum (power), count (*)"
                          "     FROM readings, w WHERE port_id = $1::uuid AND ts >= w.lo AND ts < "
                          "w.c GROUP BY 1"
                          "     UNION ALL"
                          "     SELECT date_bin ($5::integer * interval '1 second', ts, "
                          "timestamptz 'epoch'),"
                          "            min (power), max (power), sum (power), count (*)"
                          "     FROM readings, w WHERE port_id = $1::uuid AND ts >= w.d AND ts < "
                          "w.hi GROUP BY 1"
                          "   ) parts GROUP BY bucket ORDER BY bucket) b ON true"
                          " WHERE p.id = $1::uuid AND p.user_id = $2::bigint",
            5, values);
    else
        result = gateway_api_run (
            request, &status,
            "SELECT p.id, b.ms, b.low, b.mean, b.high, b.count FROM ports p"
            " LEFT JOIN LATERAL (SELECT " GATEWAY_API_MS (
                "bucket") " AS ms, min (power) AS low,"
                          "   avg (power) AS mean, max (power) AS high, count (*) AS count FROM ("
                          "     SELECT date_bin ($5::integer * interval '1 second', ts, "
                          "timestamptz 'epoch') AS bucket,"
                          "            power FROM readings WHERE port_id = p.id"
                          "     AND ts >= to_timestamp ($3::bigint / 1000.0) AND ts < to_timestamp "
                          "($4::bigint / 1000.0)"
                          "   ) binned GROUP BY bucket ORDER BY bucket) b ON true"
                          " WHERE p.id = $1::uuid AND p.user_id = $2::bigint",
            5, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    if (rows == 0) {
        PQclear (result);
        return gateway_api_not_found (request);
    }
    json_t *list = json_array ();
    bool truncated = false;
    for (int row = 0; row < rows; row++) {
        if (PQgetisnull (result, row, 1))
            continue; //  the port's row when the window is empty
        //  Raw asks for one row more than it answers: the oldest is the
        //  proof that there were more.
        if (step == 0 && row == 0 && rows > S_SERIES_MAX) {
            truncated = true;
            continue;
        }
        json_array_append_new (
            list, gateway_api_object_from_row (result, row,
                                               step == 0 ? s_reading_members : s_bucket_members));
    }
    PQclear (result);
    char from_iso[32], to_iso[32];
    gateway_time_format (from, from_iso);
    gateway_time_format (to, to_iso);
    json_t *data = json_pack ("{s:s, s:s, s:s, s:I, s:b, s:i}", "portId", request->segments[1],
                              "from", from_iso, "to", to_iso, "step", (json_int_t)step,
                              step == 0 ? "truncated" : "stepRaised",
                              step == 0 ? truncated : raised, "gapSeconds", S_GAP_SECONDS);
    json_object_set_new (data, step == 0 ? "readings" : "buckets", list);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

//  ==========================================================================
//  Energy per day, week or month

//  ?from=&to=&period=day|week|month: buckets cut at local midnight in the
//  user's time zone (weeks from Monday), each clipped to the window, with
//  the energy used, the phantom part and its cost, and the hours reported.
//  Default window: the last 30 days, 26 weeks or 12 months. port NULL sums
//  all the user's ports; a port that is not the user's gives no row.
static int
s_energy (gateway_api_request_t *request, const char *port)
{
    char period[8] = "day";
    int rc = gateway_api_query_var (request, "period", period, sizeof period);
    if (rc == -1 || (!streq (period, "day") && !streq (period, "week") && !streq (period, "month")))
        return gateway_api_invalid_field (request, "period", "period must be day, week or month");
    int64_t from, to;
    int64_t default_ms = (streq (period, "day")    ? 30LL
                          : streq (period, "week") ? 26 * 7LL
                                                   : 365LL) *
                         86400000;
    int status = gateway_api_window (request, default_ms, &from, &to, NULL);
    if (status)
        return status;
    char from_text[24], to_text[24];
    snprintf (from_text, sizeof from_text, "%" PRId64, from);
    snprintf (to_text, sizeof to_text, "%" PRId64, to);
    const char *values[] = {port, request->user_text, from_text, to_text, period};
    PGresult *result = gateway_api_run (
        request, &status,
        "WITH w AS (SELECT to_timestamp ($3::bigint / 1000.0) AS lo, to_timestamp ($4::bigint / "
        "1000.0) AS hi,"
        "                  time_zone AS tz FROM users WHERE id = $2::bigint),"
        " b AS (SELECT s AT TIME ZONE w.tz AS starts, (s + ('1 ' || $5)::interval) AT TIME ZONE "
        "w.tz AS ends"
        "       FROM w, generate_series (date_trunc ($5, w.lo AT TIME ZONE w.tz),"
        "                                w.hi AT TIME ZONE w.tz, ('1 ' || $5)::interval) s)"
        " SELECT " GATEWAY_API_MS ("b.starts") ", " GATEWAY_API_MS (
            "b.ends") ","
                      "   sum (u.energy_wh) / 1000, sum (x.energy_wh) / 1000, sum (x.cost), sum "
                      "(u.reported_seconds) / 3600"
                      " FROM w, b, ports p"
                      " CROSS JOIN LATERAL phantom_port_usage (p.id, greatest (b.starts, w.lo), "
                      "least (b.ends, w.hi)) u"
                      " CROSS JOIN LATERAL phantom_port_waste (p.id, greatest (b.starts, w.lo), "
                      "least (b.ends, w.hi)) x"
                      " WHERE p.user_id = $2::bigint AND ($1::uuid IS NULL OR p.id = $1::uuid) AND "
                      "b.starts < w.hi"
                      " GROUP BY b.starts, b.ends ORDER BY b.starts",
        5, values);
    if (!result)
        return status;
    if (port && PQntuples (result) == 0) {
        PQclear (result);
        return gateway_api_not_found (request);
    }
    static const gateway_api_member_t members[] = {{"start", 0, GATEWAY_API_TIME},
                                                   {"end", 1, GATEWAY_API_TIME},
                                                   {"energyKwh", 2, GATEWAY_API_REAL},
                                                   {"phantomKwh", 3, GATEWAY_API_REAL},
                                                   {"phantomCost", 4, GATEWAY_API_REAL},
                                                   {"reportedHours", 5, GATEWAY_API_REAL},
                                                   {0}};
    json_t *buckets = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (buckets, gateway_api_object_from_row (result, row, members));
    PQclear (result);
    char from_iso[32], to_iso[32];
    gateway_time_format (from, from_iso);
    gateway_time_format (to, to_iso);
    json_t *data = json_pack ("{s:s, s:s, s:s, s:o}", "period", period, "from", from_iso, "to",
                              to_iso, "buckets", buckets);
    if (port)
        json_object_set_new (data, "portId", json_string (port));
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

static int
s_ports_energy (gateway_api_request_t *request)
{
    return s_energy (request, request->segments[1]);
}

static int
s_all_energy (gateway_api_request_t *request)
{
    return s_energy (request, NULL);
}

//  ==========================================================================
//  Episodes

static const gateway_api_member_t s_episode_members[] = {
    {"id", 1, GATEWAY_API_INTEGER},     {"start", 2, GATEWAY_API_TIME},
    {"end", 3, GATEWAY_API_TIME},       {"meanWatts", 4, GATEWAY_API_REAL},
    {"peakWatts", 5, GATEWAY_API_REAL}, {"energyWh", 6, GATEWAY_API_REAL},
    {"cost", 7, GATEWAY_API_REAL},      {"currency", 8, GATEWAY_API_TEXT},
    {"open", 9, GATEWAY_API_BOOL},      {0}};

//  Newest first, ?limit=1..200&before=<id>; each priced at the tariff in
//  force over its time (an open one up to the port's last reading).
static int
s_ports_episodes (gateway_api_request_t *request)
{
    return gateway_api_send_page (
        request, request->segments[1], S_EPISODES_DEFAULT,
        "SELECT p.id, e.id, " GATEWAY_API_MS ("e.started_at") ", " GATEWAY_API_MS (
            "e.ended_at") ","
                          " e.mean_watts, e.peak_watts, e.energy_wh,"
                          " phantom_tariff_cost (p.user_id, e.started_at, greatest (e.started_at,"
                          "   COALESCE (e.ended_at, p.last_reading_at, e.started_at)), "
                          "e.energy_wh),"
                          " u.currency, e.ended_at IS NULL"
                          " FROM ports p JOIN users u ON u.id = p.user_id"
                          " LEFT JOIN LATERAL (SELECT * FROM episodes WHERE port_id = p.id"
                          "   AND ($3::bigint IS NULL OR id < $3::bigint) ORDER BY id DESC LIMIT "
                          "$4::integer) e ON true"
                          " WHERE p.id = $1::uuid AND p.user_id = $2::bigint ORDER BY e.id DESC",
        "episodes", s_episode_members, NULL);
}

const gateway_api_route_t gateway_api_ports_routes[] = {
    {"GET", "ports", true, s_ports_list},
    {"POST", "ports", true, s_ports_create},
    {"GET", "ports/:uuid", true, s_ports_get},
    {"PATCH", "ports/:uuid", true, s_ports_update},
    {"DELETE", "ports/:uuid", true, s_ports_delete},
    {"GET", "ports/:uuid/readings", true, s_ports_readings},
    {"GET", "ports/:uuid/episodes", true, s_ports_episodes},
    {"GET", "ports/:uuid/energy", true, s_ports_energy},
    {"GET", "energy", true, s_all_energy},
    {0}};
