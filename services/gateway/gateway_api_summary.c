/*  =========================================================================
    gateway_api_summary - /api/summary and /api/settings of the signed-in user

    Phantom energy comes from episodes: the part of each episode's energy
    that falls inside the window (today in the user's time zone, or the last
    30 days), in proportion to time, since an episode's draw is its mean.
    The yearly projection is the port's always-on baseline running all year:
    W x 8760 h / 1000 = W x 8.76 kWh. Until the baseline is known it counts
    as 0 and the port says "baselineKnown": false.
    =========================================================================
*/
#include "gateway_api.h"

#include <ctype.h>
#include <math.h>

#define S_HOURS_PER_YEAR_KILO 8.76      //  8760 h / 1000: W to kWh per year
#define S_TARIFF_MAX 100.0

//  Wh of episode e inside [window, now()), with now() ending an open one.
#define S_ENERGY_SINCE(window)                                                  \
    "CASE WHEN e.id IS NULL THEN 0"                                             \
    " WHEN COALESCE (e.ended_at, now ()) <= e.started_at"                       \
    "  THEN CASE WHEN e.started_at >= " window " THEN e.energy_wh ELSE 0 END"   \
    " ELSE e.energy_wh * GREATEST (0, extract (epoch FROM"                      \
    "   LEAST (COALESCE (e.ended_at, now ()), now ()) - GREATEST (e.started_at, " window ")))" \
    "  / extract (epoch FROM COALESCE (e.ended_at, now ()) - e.started_at) END"


//  ==========================================================================
//  /api/summary

static int
s_summary (gateway_api_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    //  One row per port (or one row with a NULL port when there is none).
    PGresult *result = gateway_api_run (request, &status,
        "SELECT p.id::text, p.name, p.status, p.last_power, p.always_on_watts,"
        "  COALESCE (sum (" S_ENERGY_SINCE ("d.today") "), 0) / 1000,"
        "  COALESCE (sum (" S_ENERGY_SINCE ("d.month") "), 0) / 1000,"
        "  u.tariff_per_kwh, u.currency"
        " FROM users u"
        " CROSS JOIN LATERAL (SELECT date_trunc ('day', now () AT TIME ZONE u.time_zone)"
        "                     AT TIME ZONE u.time_zone AS today,"
        "                     now () - interval '30 days' AS month) d"
        " LEFT JOIN ports p ON p.user_id = u.id"
        " LEFT JOIN episodes e ON e.port_id = p.id AND e.user_id = u.id"
        "   AND COALESCE (e.ended_at, 'infinity') > d.month AND e.started_at < now ()"
        " WHERE u.id = $1::bigint"
        " GROUP BY u.id, d.today, d.month, p.id ORDER BY p.created_at, p.id", 1, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    if (rows == 0) {
        PQclear (result);
        return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    }
    double tariff = strtod (PQgetvalue (result, 0, 7), NULL);
    double phantom_watts = 0, always_on = 0, today = 0, month = 0, year = 0;
    json_int_t counts [6] = {0};
    json_t *ports = json_array ();
    for (int row = 0; row < rows; row++) {
        if (PQgetisnull (result, row, 0))
            continue;
        const char *port_status = PQgetvalue (result, row, 2);
        double watts = strtod (PQgetvalue (result, row, 3), NULL);
        bool known = !PQgetisnull (result, row, 4);
        double baseline = known ? strtod (PQgetvalue (result, row, 4), NULL) : 0;
        double port_today = strtod (PQgetvalue (result, row, 5), NULL);
        double port_month = strtod (PQgetvalue (result, row, 6), NULL);
        double port_year = baseline * S_HOURS_PER_YEAR_KILO;
        int index = proto_status_parse (port_status);
        counts [index >= 0 && index < 6 ? index : 0]++;
        if (streq (port_status, "phantom"))
            phantom_watts += watts;
        always_on += baseline;
        today += port_today;
        month += port_month;
        year += port_year;
        json_array_append_new (ports, json_pack (
            "{s:o, s:o, s:o, s:o, s:o, s:b, s:f, s:f, s:f, s:f}",
            "id", gateway_api_column (result, row, 0, GATEWAY_API_TEXT),
            "name", gateway_api_column (result, row, 1, GATEWAY_API_TEXT),
            "status", gateway_api_column (result, row, 2, GATEWAY_API_TEXT),
            "watts", gateway_api_column (result, row, 3, GATEWAY_API_REAL),
            //  null until the detector has learnt it, so no one reads 0 W as a measurement
            "alwaysOnWatts", known ? json_real (baseline) : json_null (), "baselineKnown", known,
            "todayKwh", port_today, "last30Kwh", port_month,
            "yearKwhProjected", port_year, "yearCostProjected", port_year * tariff));
    }
    json_t *total = json_pack (
        "{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:{s:I, s:I, s:I, s:I, s:I}}",
        "phantomWattsNow", phantom_watts, "alwaysOnWatts", always_on,
        "todayKwh", today, "todayCost", today * tariff,
        "last30Kwh", month, "last30Cost", month * tariff,
        "yearKwhProjected", year, "yearCostProjected", year * tariff,
        "ports", "active", counts [PROTO_STATUS_ACTIVE], "idle", counts [PROTO_STATUS_IDLE],
        "phantom", counts [PROTO_STATUS_PHANTOM], "off", counts [PROTO_STATUS_OFF],
        "offline", counts [PROTO_STATUS_OFFLINE]);
    json_t *data = json_pack ("{s:o, s:f, s:o, s:o}",
                              "currency", gateway_api_column (result, 0, 8, GATEWAY_API_TEXT),
                              "tariffPerKwh", tariff, "total", total, "ports", ports);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}


//  ==========================================================================
//  /api/settings

static int
s_settings_get (gateway_api_request_t *request)
{
    return gateway_api_send_user (request, "settings", gateway_api_settings_from_row);
}

//  Three upper-case letters (ISO 4217 shape).
static bool
s_currency_valid (const char *text)
{
    return strlen (text) == 3 && isupper ((unsigned char) text [0])
        && isupper ((unsigned char) text [1]) && isupper ((unsigned char) text [2]);
}

//  {tariffPerKwh?, currency?, timeZone?, digestEnabled?}; the time zone
//  must be one PostgreSQL knows, because detection windows are computed in
//  it. digestEnabled is whether the notifier writes the daily digest.
static int
s_settings_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    double tariff;
    bool present, digest, digest_present;
    const char *currency, *time_zone;
    char tariff_text [32];
    if ((status = gateway_api_field_number (request, body, "tariffPerKwh", 0, S_TARIFF_MAX,
                                            &tariff, &present))
    ||  (status = gateway_api_field_string (request, body, "currency", false, 3, 3, &currency))
    ||  (status = gateway_api_field_string (request, body, "timeZone", false, 1,
                                            PROTO_TIMEZONE_MAX, &time_zone))
    ||  (status = gateway_api_field_bool (request, body, "digestEnabled", false, &digest,
                                          &digest_present)))
        goto done;
    if (currency && !s_currency_valid (currency)) {
        status = gateway_api_invalid (request, "currency must be three upper-case letters");
        goto done;
    }
    snprintf (tariff_text, sizeof tariff_text, "%.17g", tariff);
    const char *values [] = {request->user_text, present ? tariff_text : NULL, currency, time_zone,
                             digest_present ? (digest ? "t" : "f") : NULL};
    PGresult *result = gateway_api_run (request, &status,
        "UPDATE users SET tariff_per_kwh = COALESCE ($2::double precision, tariff_per_kwh),"
        " currency = COALESCE ($3, currency), time_zone = COALESCE ($4, time_zone),"
        " digest_enabled = COALESCE ($5::boolean, digest_enabled)"
        " WHERE id = $1::bigint"
        " AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = $4::text))"
        " RETURNING " GATEWAY_API_USER_COLUMNS, 5, values);
    if (!result)
        goto done;
    if (PQntuples (result) == 1) {
        json_t *settings = gateway_api_settings_from_row (result, 0);
        //  The time zone travels with every reading of the user's ports.
        gateway_cache_refresh_user (request->gateway->cache, request->user);
        status = gateway_api_send_object (request, 200, "Settings updated", "settings", settings);
    }
    else
        status = gateway_api_invalid (request, "timeZone must be an IANA time zone name");
    PQclear (result);
done:
    json_decref (body);
    return status;
}

const gateway_api_route_t gateway_api_summary_routes [] = {
    {"GET",   "summary",  true, s_summary},
    {"GET",   "settings", true, s_settings_get},
    {"PATCH", "settings", true, s_settings_update},
    {0}
};
