/*  =========================================================================
    gateway_api_summary - /api/summary, /api/settings, /api/tariffs and
    /api/currencies of the signed-in user

    Every figure comes from the SQL function phantom_figures (migration 013,
    docs/figures-and-api.md), which the notifier's daily digest calls too,
    so the two never disagree: waste is the measured energy of phantom
    episodes, projected over the hours a port reported, and priced at the
    tariff in force at each moment. This file only shapes the answer and
    adds the totals.
    =========================================================================
*/
#include "gateway_api.h"

#include <ctype.h>
#include <math.h>

#define S_TARIFF_MAX 100.0 //  per kWh, any currency: keeps a typo out
#define S_TARIFF_WINDOWS_MAX 8
#define S_LOCALE_MAX 35 //  BCP 47 tags people use are far shorter

//  Active ISO 4217 codes of money a household pays its electricity in (no
//  funds, metals or testing codes), sorted for bsearch.
static const char *s_currencies[] = {
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG"};
#define S_CURRENCIES (sizeof s_currencies / sizeof s_currencies[0])

static int
s_compare_code (const void *key, const void *item)
{
    return strcmp ((const char *)key, *(const char *const *)item);
}

static bool
s_currency_valid (const char *code)
{
    return code && bsearch (code, s_currencies, S_CURRENCIES, sizeof s_currencies[0],
                            s_compare_code) != NULL;
}

//  A BCP 47 tag's shape: a language of 2-3 letters, then subtags of 1-8
//  letters or digits, joined by '-' (as migration 013 checks it).
static bool
s_locale_valid (const char *tag)
{
    size_t length = strlen (tag), run = 0;
    if (length < 2 || length > S_LOCALE_MAX)
        return false;
    bool first = true;
    for (size_t at = 0; at <= length; at++) {
        char c = tag[at];
        if (c == '-' || c == 0) {
            if (run == 0 || (first && run > 3) || run > 8 || (first && run < 2))
                return false;
            first = false;
            run = 0;
        } else if (isalnum ((unsigned char)c) && !(first && isdigit ((unsigned char)c)))
            run++;
        else
            return false;
    }
    return true;
}

//  ==========================================================================
//  /api/summary

//  Columns 0-4 are the user's, 5 on the port's (NULL when there is none).
static const char *s_summary_sql =
    "WITH u AS (SELECT id, currency, time_zone, locale, now () AS at,"
    "                  date_trunc ('day', now () AT TIME ZONE time_zone) AT TIME ZONE time_zone AS "
    "today"
    "           FROM users WHERE id = $1::bigint)"
    " SELECT u.currency, u.time_zone, u.locale, " GATEWAY_API_MS ("u.at") ", " GATEWAY_API_MS (
        "u.today") ","
                   "   f.port_id::text, f.name, " GATEWAY_API_ROLE (
                       "f.role") ","
                                 "   CASE WHEN f.last_reading_at IS NULL THEN 'waiting' ELSE "
                                 "f.status END,"
                                 "   CASE WHEN f.last_reading_at IS NULL OR f.status = 'offline' "
                                 "THEN NULL ELSE f.last_power END,"
                                 "   " GATEWAY_API_MS (
                                     "f.last_reading_at") ","
                                                          "   f.day_energy_wh / 1000, "
                                                          "f.day_phantom_wh / 1000, "
                                                          "f.day_phantom_cost,"
                                                          "   f.last30_energy_wh / 1000, "
                                                          "f.last30_phantom_wh / 1000, "
                                                          "f.last30_phantom_cost,"
                                                          "   f.year_phantom_kwh, "
                                                          "f.year_phantom_cost, f.year_phantom_kwh "
                                                          "IS NULL,"
                                                          "   f.reported_hours, " GATEWAY_API_MS (
                                                              "f.observed_from") ", "
                                                                                 "f.lowest_steady_"
                                                                                 "watts,"
                                                                                 "   f.status = "
                                                                                 "'phantom'"
                                                                                 " FROM u LEFT "
                                                                                 "JOIN LATERAL "
                                                                                 "phantom_figures "
                                                                                 "(u.id, u.today, "
                                                                                 "u.at, u.at) f ON "
                                                                                 "true";

static const gateway_api_member_t s_summary_port_members[] = {
    {"id", 5, GATEWAY_API_TEXT},
    {"name", 6, GATEWAY_API_TEXT},
    {"role", 7, GATEWAY_API_TEXT},
    {"status", 8, GATEWAY_API_TEXT},
    {"watts", 9, GATEWAY_API_REAL},
    {"lastReadingAt", 10, GATEWAY_API_TIME},
    {"today.energyKwh", 11, GATEWAY_API_REAL},
    {"today.phantomKwh", 12, GATEWAY_API_REAL},
    {"today.phantomCost", 13, GATEWAY_API_REAL},
    {"last30.energyKwh", 14, GATEWAY_API_REAL},
    {"last30.phantomKwh", 15, GATEWAY_API_REAL},
    {"last30.phantomCost", 16, GATEWAY_API_REAL},
    {"year.phantomKwh", 17, GATEWAY_API_REAL},
    {"year.phantomCost", 18, GATEWAY_API_REAL},
    {"year.learning", 19, GATEWAY_API_BOOL},
    {"year.reportedHours", 20, GATEWAY_API_REAL},
    {"year.observedFrom", 21, GATEWAY_API_TIME},
    {"lowestSteadyWatts", 22, GATEWAY_API_REAL},
    {0}};

static const gateway_api_member_t s_summary_user_members[] = {
    {"currency", 0, GATEWAY_API_TEXT},  {"timeZone", 1, GATEWAY_API_TEXT},
    {"locale", 2, GATEWAY_API_TEXT},    {"now", 3, GATEWAY_API_TIME},
    {"todayFrom", 4, GATEWAY_API_TIME}, {0}};

static double
s_real (PGresult *result, int row, int column)
{
    return PQgetisnull (result, row, column) ? 0 : strtod (PQgetvalue (result, row, column), NULL);
}

static int
s_summary (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status, s_summary_sql, 1, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    if (rows == 0) {
        PQclear (result);
        return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    }
    //  Sums of the ports' today (0), last30 (1) energy, phantom energy, cost.
    double sums[2][3] = {{0}}, phantom_watts = 0, year_kwh = 0, year_cost = 0;
    json_int_t year_ports = 0, learning = 0;
    json_t *counts = json_pack ("{s:I, s:I, s:I, s:I, s:I, s:I}", "active", (json_int_t)0, "idle",
                                (json_int_t)0, "phantom", (json_int_t)0, "off", (json_int_t)0,
                                "offline", (json_int_t)0, "waiting", (json_int_t)0);
    json_t *ports = json_array ();
    for (int row = 0; row < rows; row++) {
        if (PQgetisnull (result, row, 5))
            continue; //  a user without ports
        json_t *count = json_object_get (counts, PQgetvalue (result, row, 8));
        if (count)
            json_integer_set (count, json_integer_value (count) + 1);
        if (streq (PQgetvalue (result, row, 23), "t"))
            phantom_watts += s_real (result, row, 9);
        for (int window = 0; window < 2; window++)
            for (int figure = 0; figure < 3; figure++)
                sums[window][figure] += s_real (result, row, 11 + window * 3 + figure);
        if (streq (PQgetvalue (result, row, 19), "t"))
            learning++;
        else {
            year_ports++;
            year_kwh += s_real (result, row, 17);
            year_cost += s_real (result, row, 18);
        }
        json_array_append_new (ports,
                               gateway_api_object_from_row (result, row, s_summary_port_members));
    }
    json_t *total =
        json_pack ("{s:f, s:{s:f, s:f, s:f}, s:{s:f, s:f, s:f}, s:{s:o, s:o, s:I, s:I}, s:o}",
                   "phantomWattsNow", phantom_watts, "today", "energyKwh", sums[0][0], "phantomKwh",
                   sums[0][1], "phantomCost", sums[0][2], "last30", "energyKwh", sums[1][0],
                   "phantomKwh", sums[1][1], "phantomCost", sums[1][2],
                   //  No projection until a port has 24 reported hours: null, not 0.
                   "year", "phantomKwh", year_ports ? json_real (year_kwh) : json_null (),
                   "phantomCost", year_ports ? json_real (year_cost) : json_null (), "ports",
                   year_ports, "learningPorts", learning, "ports", counts);
    json_t *data = gateway_api_object_from_row (result, 0, s_summary_user_members);
    json_object_set_new (data, "offlineAfterSeconds",
                         json_integer (request->gateway->offline_seconds > 0
                                           ? request->gateway->offline_seconds
                                           : GATEWAY_OFFLINE_SECONDS_DEFAULT));
    json_object_set_new (data, "total", total);
    json_object_set_new (data, "ports", ports);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

//  ==========================================================================
//  /api/settings and /api/tariffs

//  The tariff columns of a tariffs row t, and their JSON.
#define S_TARIFF_COLUMNS                                                                           \
    "CASE WHEN t.peak_price_per_kwh IS NULL THEN 'flat' ELSE 'timeOfUse' END,"                     \
    " t.price_per_kwh, t.peak_price_per_kwh, t.peak_windows::text,"                                \
    " CASE WHEN t.valid_from = '-infinity' THEN NULL"                                              \
    "      ELSE " GATEWAY_API_MS ("t.valid_from") " END"

static const gateway_api_member_t s_tariff_members[] = {{"kind", 0, GATEWAY_API_TEXT},
                                                        {"pricePerKwh", 1, GATEWAY_API_REAL},
                                                        {"peakPricePerKwh", 2, GATEWAY_API_REAL},
                                                        {"peakWindows", 3, GATEWAY_API_JSON},
                                                        {"validFrom", 4, GATEWAY_API_TIME},
                                                        {0}};

//  The user's settings and the tariff in force now: the user's columns,
//  then S_TARIFF_COLUMNS from column 7.
static int
s_settings_get (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "SELECT " GATEWAY_API_USER_COLUMNS ", " S_TARIFF_COLUMNS " FROM users u"
        " LEFT JOIN LATERAL (SELECT valid_from, price_per_kwh, peak_price_per_kwh, peak_windows"
        "                    FROM tariffs WHERE user_id = u.id AND valid_from <= now ()"
        "                    ORDER BY valid_from DESC LIMIT 1) t ON true"
        " WHERE u.id = $1::bigint",
        1, values);
    if (!result)
        return status;
    if (PQntuples (result) != 1) {
        PQclear (result);
        return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    }
    json_t *settings = gateway_api_settings_from_row (result, 0);
    json_t *tariff = json_object ();
    for (const gateway_api_member_t *member = s_tariff_members; member->name; member++)
        json_object_set_new (tariff, member->name,
                             gateway_api_column (result, 0, member->column + 7, member->type));
    //  The flat (or base) price under its old name, for scripts that read it.
    json_object_set (settings, "tariffPerKwh", json_object_get (tariff, "pricePerKwh"));
    json_object_set_new (settings, "tariff", tariff);
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "settings", settings);
}

//  A new tariff from body's "tariff" object (or the old shorthand
//  "tariffPerKwh": a flat price for all data) into the strings of the
//  statement's $6..$10. 0, or the status answered.
typedef struct {
    bool present;        //  the request changes the tariff
    char valid_from[24]; //  epoch ms, "" = for all data
    char price[32];
    char peak_price[32]; //  "" = flat
    char *windows;       //  peak windows JSON text, NULL = flat
} s_tariff_t;

static int
s_tariff_read (gateway_api_request_t *request, json_t *body, s_tariff_t *tariff)
{
    memset (tariff, 0, sizeof *tariff);
    double price, peak;
    bool present;
    int status =
        gateway_api_field_number (request, body, "tariffPerKwh", 0, S_TARIFF_MAX, &price, &present);
    if (status)
        return status;
    json_t *object = json_object_get (body, "tariff");
    if (present && object)
        return gateway_api_invalid_field (request, "tariff",
                                          "Send tariff or tariffPerKwh, not both.");
    if (present) {
        tariff->present = true;
        snprintf (tariff->price, sizeof tariff->price, "%.17g", price);
        return 0;
    }
    if (!object)
        return 0;
    if (!json_is_object (object))
        return gateway_api_invalid_field (request, "tariff", "tariff must be an object.");
    tariff->present = true;
    const char *kind, *from_text;
    json_t *windows;
    bool windows_present, peak_present;
    if ((status = gateway_api_field_string (request, object, "kind", true, 4, 9, &kind)))
        return status;
    bool time_of_use = streq (kind, "timeOfUse");
    if (!time_of_use && !streq (kind, "flat"))
        return gateway_api_invalid_field (request, "kind", "The tariff kind is flat or timeOfUse.");
    if ((status = gateway_api_field_number (request, object, "pricePerKwh", 0, S_TARIFF_MAX, &price,
                                            &present)))
        return status;
    if (!present)
        return gateway_api_invalid_field (request, "pricePerKwh", "Enter the price per kWh.");
    snprintf (tariff->price, sizeof tariff->price, "%.17g", price);
    if (time_of_use) {
        if ((status = gateway_api_field_number (request, object, "peakPricePerKwh", 0, S_TARIFF_MAX,
                                                &peak, &peak_present)) ||
            (status = gateway_api_field_windows (request, object, "peakWindows",
                                                 S_TARIFF_WINDOWS_MAX, &windows, &windows_present)))
            return status;
        if (!peak_present) {
            json_decref (windows);
            return gateway_api_invalid_field (request, "peakPricePerKwh",
                                              "Enter the peak price per kWh.");
        }
        if (!windows)
            return gateway_api_invalid_field (request, "peakWindows",
                                              "Add at least one peak window.");
        snprintf (tariff->peak_price, sizeof tariff->peak_price, "%.17g", peak);
        tariff->windows = json_dumps (windows, JSON_COMPACT);
        json_decref (windows);
    } else {
        //  A form may send the time-of-use fields empty with a flat tariff.
        json_t *peak_field = json_object_get (object, "peakPricePerKwh");
        json_t *windows_field = json_object_get (object, "peakWindows");
        if ((peak_field && !json_is_null (peak_field)) ||
            (windows_field && !json_is_null (windows_field)))
            return gateway_api_invalid_field (request, "kind",
                                              "A flat tariff has no peak price or windows.");
    }
    if ((status =
             gateway_api_field_string (request, object, "validFrom", false, 1, 40, &from_text)))
        return status;
    if (from_text) {
        int64_t ms;
        if (gateway_time_parse (from_text, &ms) != 0)
            return gateway_api_invalid_field (request, "validFrom",
                                              "validFrom must be a date and time (ISO-8601).");
        snprintf (tariff->valid_from, sizeof tariff->valid_from, "%" PRId64, ms);
    }
    return 0;
}

//  {currency?, timeZone?, locale?, digestEnabled?, tariff? | tariffPerKwh?}.
//  The time zone must be one PostgreSQL knows (detection windows, days and
//  tariffs are computed in it). A tariff without validFrom replaces the
//  tariff for all data; with it, it is in force from then on and replaces
//  the periods after. Everything in one statement: all or nothing.
static int
s_settings_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    s_tariff_t tariff;
    bool digest, digest_present;
    const char *currency, *time_zone, *locale;
    if ((status = s_tariff_read (request, body, &tariff)) ||
        (status = gateway_api_field_string (request, body, "currency", false, 3, 3, &currency)) ||
        (status = gateway_api_field_string (request, body, "timeZone", false, 1, PROTO_TIMEZONE_MAX,
                                            &time_zone)) ||
        (status =
             gateway_api_field_string (request, body, "locale", false, 2, S_LOCALE_MAX, &locale)) ||
        (status = gateway_api_field_bool (request, body, "digestEnabled", false, &digest,
                                          &digest_present)))
        goto done;
    if (currency && !s_currency_valid (currency)) {
        status = gateway_api_invalid_field (request, "currency",
                                            "Choose a currency by its ISO 4217 code, like EUR.");
        goto done;
    }
    if (locale && !s_locale_valid (locale)) {
        status = gateway_api_invalid_field (request, "locale",
                                            "locale must be a language tag like en-GB.");
        goto done;
    }
    const char *values[] = {request->user_text,
                            currency,
                            time_zone,
                            digest_present ? (digest ? "t" : "f") : NULL,
                            locale,
                            tariff.present ? "t" : "f",
                            *tariff.valid_from ? tariff.valid_from : NULL,
                            tariff.present ? tariff.price : NULL,
                            *tariff.peak_price ? tariff.peak_price : NULL,
                            tariff.windows};
    PGresult *result = gateway_api_run (
        request, &status,
        "WITH updated AS ("
        "   UPDATE users SET currency = COALESCE ($2, currency), time_zone = COALESCE ($3, "
        "time_zone),"
        "   digest_enabled = COALESCE ($4::boolean, digest_enabled), locale = COALESCE ($5, locale)"
        "   WHERE id = $1::bigint"
        "   AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM pg_timezone_names WHERE name = "
        "$3::text))"
        "   RETURNING id),"
        " period AS (SELECT COALESCE (to_timestamp ($7::bigint / 1000.0), '-infinity') AS "
        "valid_from),"
        " replaced AS (DELETE FROM tariffs t USING updated, period"
        "   WHERE $6::boolean AND t.user_id = updated.id AND t.valid_from > period.valid_from),"
        " added AS (INSERT INTO tariffs (user_id, valid_from, price_per_kwh, peak_price_per_kwh,"
        "                                peak_windows)"
        "   SELECT updated.id, period.valid_from, $8::double precision, $9::double precision, "
        "$10::jsonb"
        "   FROM updated, period WHERE $6::boolean"
        "   ON CONFLICT (user_id, valid_from) DO UPDATE SET price_per_kwh = excluded.price_per_kwh,"
        "   peak_price_per_kwh = excluded.peak_price_per_kwh, peak_windows = excluded.peak_windows)"
        " SELECT id FROM updated",
        10, values);
    if (!result)
        goto done;
    bool updated = PQntuples (result) == 1;
    PQclear (result);
    if (!updated) {
        status = gateway_api_invalid_field (
            request, "timeZone", "Choose a time zone by its IANA name, like Europe/Berlin.");
        goto done;
    }
    //  Days and schedules follow the user's time zone in every reading.
    if (time_zone)
        gateway_cache_refresh_user (request->gateway->cache, request->user);
    status = s_settings_get (request);
done:
    free (tariff.windows);
    json_decref (body);
    return status;
}

//  The user's tariff periods, oldest first.
static int
s_tariffs_list (gateway_api_request_t *request)
{
    return gateway_api_send_list (
        request,
        "SELECT " S_TARIFF_COLUMNS
        " FROM tariffs t WHERE t.user_id = $1::bigint ORDER BY t.valid_from",
        "tariffs", s_tariff_members);
}

//  The codes a tariff's currency may take.
static int
s_currencies_list (gateway_api_request_t *request)
{
    json_t *list = json_array ();
    for (size_t index = 0; index < S_CURRENCIES; index++)
        json_array_append_new (list, json_string (s_currencies[index]));
    return gateway_api_send_object (request, 200, NULL, "currencies", list);
}

const gateway_api_route_t gateway_api_summary_routes[] = {
    {"GET", "summary", true, s_summary},
    {"GET", "settings", true, s_settings_get},
    {"PATCH", "settings", true, s_settings_update},
    {"GET", "tariffs", true, s_tariffs_list},
    {"GET", "currencies", true, s_currencies_list},
    {0}};

//  The pure checks, for gateway_api_test.
void
gateway_api_summary_test (void)
{
    for (size_t index = 1; index < S_CURRENCIES; index++)
        assert (strcmp (s_currencies[index - 1], s_currencies[index]) < 0);
    assert (s_currency_valid ("EUR") && s_currency_valid ("USD") && s_currency_valid ("ZWG"));
    assert (!s_currency_valid ("XYZ") && !s_currency_valid ("eur") && !s_currency_valid ("XAU") &&
            !s_currency_valid ("HRK"));
    assert (s_locale_valid ("en") && s_locale_valid ("en-GB") && s_locale_valid ("de-CH-1996") &&
            s_locale_valid ("zh-Hant-TW"));
    assert (!s_locale_valid ("e") && !s_locale_valid ("english-GB") && !s_locale_valid ("en_GB") &&
            !s_locale_valid ("en-") && !s_locale_valid ("-en") && !s_locale_valid ("12-GB") &&
            !s_locale_valid ("en--GB") && !s_locale_valid ("en-abcdefghi"));
}
