/*  =========================================================================
    gateway_sensor - POST /api/sensor/reading and /api/sensor/readings

    The contract of the sensor-simulator guide. Hot path: parse, one
    SHA-256, two cache lookups, one encode, one zmq_send, wait for the
    store's ack, answer 201 only when the reading is durable. No SQL.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "gateway_live.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>

#define TOKEN_MAX 200
#define BATCH_MAX 1000
#define BATCH_BODY_MAX (512 * 1024)
#define SKEW_PAST_MS (30LL * 24 * 3600 * 1000)
#define SKEW_FUTURE_MS (5LL * 60 * 1000)

//  Powers of ten that are exact doubles.
static const double s_pow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

//  --------------------------------------------------------------------------
//  Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
static int64_t
s_days_from_civil (int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

//  Reads exactly count digits; -1 if any is not a digit.
static int
s_digits (const char **cursor, int count)
{
    int value = 0;
    for (int index = 0; index < count; index++) {
        char c = (*cursor)[index];
        if (c < '0' || c > '9')
            return -1;
        value = value * 10 + (c - '0');
    }
    *cursor += count;
    return value;
}

int
gateway_sensor_parse_time (const char *text, int64_t *ms)
{
    const char *cursor = text;
    int year = s_digits (&cursor, 4);
    if (year < 0 || *cursor++ != '-')
        return -1;
    int month = s_digits (&cursor, 2);
    if (month < 1 || month > 12 || *cursor++ != '-')
        return -1;
    int day = s_digits (&cursor, 2);
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day < 1 || day > month_days[month - 1] || (month == 2 && day == 29 && !leap))
        return -1;
    if (*cursor != 'T' && *cursor != 't' && *cursor != ' ')
        return -1;
    cursor++;
    int hour = s_digits (&cursor, 2);
    if (hour < 0 || hour > 23 || *cursor++ != ':')
        return -1;
    int minute = s_digits (&cursor, 2);
    if (minute < 0 || minute > 59 || *cursor++ != ':')
        return -1;
    int second = s_digits (&cursor, 2);
    //  A leap second 60 is read as the last moment of the minute.
    if (second < 0 || second > 60)
        return -1;
    if (second == 60)
        second = 59;
    int millis = 0;
    if (*cursor == '.' || *cursor == ',') {
        cursor++;
        int digits = 0;
        while (isdigit ((unsigned char)*cursor)) {
            if (digits < 3)
                millis = millis * 10 + (*cursor - '0');
            digits++;
            cursor++;
        }
        if (digits == 0 || digits > 9)
            return -1;
        for (; digits < 3; digits++)
            millis *= 10;
    }
    int offset_min = 0;
    //  No zone at all is read as UTC (what devices without a clock zone send).
    if (*cursor == 'Z' || *cursor == 'z')
        cursor++;
    else if (*cursor == '+' || *cursor == '-') {
        int sign = *cursor++ == '-' ? -1 : 1;
        int zone_hour = s_digits (&cursor, 2);
        if (zone_hour < 0 || zone_hour > 23)
            return -1;
        if (*cursor == ':')
            cursor++;
        int zone_minute = 0;
        if (*cursor) {
            zone_minute = s_digits (&cursor, 2);
            if (zone_minute < 0 || zone_minute > 59)
                return -1;
        }
        offset_min = sign * (zone_hour * 60 + zone_minute);
    }
    if (*cursor)
        return -1;
    int64_t seconds = s_days_from_civil (year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - (int64_t)offset_min * 60;
    *ms = seconds * 1000 + millis;
    return 0;
}

//  --------------------------------------------------------------------------
typedef struct {
    const char *name;
    double max;
    const char *missing;
    const char *not_number;
    const char *out_of_range;
} s_field_t;

static const s_field_t s_voltage = {"voltage", 1000, "voltage is required",
                                    "voltage must be a number",
                                    "voltage must be between 0 and 1000"};
static const s_field_t s_current = {"current", 1000, "current is required",
                                    "current must be a number",
                                    "current must be between 0 and 1000"};
static const s_field_t s_power = {"power", 1e6, "power is required", "power must be a number",
                                  "power must be between 0 and 1000000"};

static int
s_fail (const char **code, const char **message, const char *the_code, const char *the_message)
{
    *code = the_code;
    *message = the_message;
    return 400;
}

//  A JSON value as the checks below see it. The single-reading route and
//  the batch fallback fill it from jansson; the batch scanner fills it
//  from the body text, so both go through the very same checks.
typedef enum { S_ABSENT = 0, S_NULL, S_STRING, S_INTEGER, S_REAL, S_OTHER } s_kind_t;

typedef struct {
    const char *text; //  S_STRING: NUL-terminated
    union {
        json_int_t integer; //  S_INTEGER
        double real;        //  S_REAL
    };
    uint32_t length; //  S_STRING: bytes
    uint8_t kind;    //  s_kind_t
} s_value_t;

//  One reading object's members (all S_ABSENT when it is not an object).
typedef struct {
    bool object;
    s_value_t port, voltage, current, power, timestamp, key;
} s_item_t;

static void
s_value_json (json_t *value, s_value_t *out)
{
    memset (out, 0, sizeof *out);
    if (!value)
        out->kind = S_ABSENT;
    else if (json_is_null (value))
        out->kind = S_NULL;
    else if (json_is_string (value)) {
        out->kind = S_STRING;
        out->text = json_string_value (value);
        size_t length = json_string_length (value);
        //  Bodies are at most 512 KiB; saturate anyway so a length check
        //  can never be fooled by a wrap.
        out->length = length > UINT32_MAX ? UINT32_MAX : (uint32_t)length;
    } else if (json_is_integer (value)) {
        out->kind = S_INTEGER;
        out->integer = json_integer_value (value);
    } else if (json_is_real (value)) {
        out->kind = S_REAL;
        out->real = json_real_value (value);
    } else
        out->kind = S_OTHER;
}

static void
s_item_json (json_t *object, s_item_t *item)
{
    memset (item, 0, sizeof *item);
    item->object = json_is_object (object);
    if (!item->object)
        return;
    s_value_json (json_object_get (object, "portId"), &item->port);
    s_value_json (json_object_get (object, "voltage"), &item->voltage);
    s_value_json (json_object_get (object, "current"), &item->current);
    s_value_json (json_object_get (object, "power"), &item->power);
    s_value_json (json_object_get (object, "timestamp"), &item->timestamp);
    s_value_json (json_object_get (object, "readingId"), &item->key);
}

static int
s_number (const s_value_t *member, const s_field_t *field, double *value, bool *integer,
          const char **code, const char **message)
{
    if (member->kind == S_ABSENT || member->kind == S_NULL)
        return s_fail (code, message, "missing_field", field->missing);
    if (member->kind != S_INTEGER && member->kind != S_REAL)
        return s_fail (code, message, "invalid_type", field->not_number);
    *integer = member->kind == S_INTEGER;
    //  As json_number_value: an integer is read as a double.
    *value = *integer ? (double)member->integer : member->real;
    if (!isfinite (*value) || *value < 0 || *value > field->max)
        return s_fail (code, message, "out_of_range", field->out_of_range);
    return 0;
}

//  A readingId: 1..64 printable ASCII characters.
static bool
s_valid_key (const char *key)
{
    size_t length = strlen (key);
    if (length < 1 || length > PROTO_KEY_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (key[index] < 0x20 || key[index] > 0x7e)
            return false;
    return true;
}

//  Lower-cases a uuid into port; leaves "" if text is not one.
static void
s_canonical_uuid (const char *text, char port[PROTO_UUID_LEN + 1])
{
    port[0] = 0;
    if (strlen (text) != PROTO_UUID_LEN)
        return;
    char canonical[PROTO_UUID_LEN + 1];
    for (int index = 0; index < PROTO_UUID_LEN; index++) {
        char c = text[index];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (c != '-')
                return;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return;
        canonical[index] = c;
    }
    canonical[PROTO_UUID_LEN] = 0;
    //  All or nothing: a half-copied id must never be looked up.
    memcpy (port, canonical, sizeof canonical);
}

static int
s_item_parse (const s_item_t *item, int64_t now_ms, gateway_sensor_input_t *out, const char **code,
              const char **message)
{
    memset (out, 0, sizeof *out);
    if (!item->object)
        return s_fail (code, message, "invalid_type", "reading must be an object");
    const s_value_t *port = &item->port;
    if (port->kind == S_ABSENT || port->kind == S_NULL)
        return s_fail (code, message, "missing_field", "portId is required");
    if (port->kind != S_STRING)
        return s_fail (code, message, "invalid_type", "portId must be a string");
    s_canonical_uuid (port->text, out->port);

    int rc =
        s_number (&item->voltage, &s_voltage, &out->voltage, &out->voltage_integer, code, message);
    if (rc == 0)
        rc = s_number (&item->current, &s_current, &out->current, &out->current_integer, code,
                       message);
    if (rc == 0)
        rc = s_number (&item->power, &s_power, &out->power, &out->power_integer, code, message);
    if (rc)
        return rc;

    const s_value_t *timestamp = &item->timestamp;
    if (timestamp->kind != S_ABSENT && timestamp->kind != S_NULL) {
        if (timestamp->kind == S_INTEGER)
            out->ts = (int64_t)timestamp->integer;
        else if (timestamp->kind == S_STRING) {
            if (gateway_sensor_parse_time (timestamp->text, &out->ts) != 0)
                return s_fail (code, message, "invalid_timestamp",
                               "timestamp must be ISO-8601 or epoch milliseconds");
        } else
            return s_fail (code, message, "invalid_timestamp",
                           "timestamp must be ISO-8601 or epoch milliseconds");
        //  Clocks of cheap boards drift; beyond this it is a wrong clock,
        //  and storing it would put the reading in a partition nobody reads.
        if (out->ts < now_ms - SKEW_PAST_MS || out->ts > now_ms + SKEW_FUTURE_MS)
            return s_fail (code, message, "invalid_timestamp",
                           "timestamp must be within the last 30 days and at most 5 minutes ahead");
        out->has_ts = true;
    }
    const s_value_t *key = &item->key;
    if (key->kind != S_ABSENT && key->kind != S_NULL) {
        if (key->kind != S_STRING || !s_valid_key (key->text))
            return s_fail (code, message, "invalid_field",
                           "readingId must be 1 to 64 printable ASCII characters");
        snprintf (out->key, sizeof out->key, "%s", key->text);
    }
    return 0;
}

int
gateway_sensor_parse_reading (json_t *object, int64_t now_ms, gateway_sensor_input_t *out,
                              const char **code, const char **message)
{
    s_item_t item;
    s_item_json (object, &item);
    return s_item_parse (&item, now_ms, out, code, message);
}

//  deviceToken: a string of 1..200 characters.
static int
s_token (const s_value_t *member, const char **token, const char **code, const char **message)
{
    if (member->kind == S_ABSENT || member->kind == S_NULL)
        return s_fail (code, message, "missing_field", "deviceToken is required");
    if (member->kind != S_STRING)
        return s_fail (code, message, "invalid_type", "deviceToken must be a string");
    if (member->length < 1 || member->length > TOKEN_MAX)
        return s_fail (code, message, "invalid_field", "deviceToken must be 1 to 200 characters");
    *token = member->text;
    return 0;
}

int
gateway_sensor_parse (json_t *body, int64_t now_ms, const char **token, gateway_sensor_input_t *out,
                      const char **code, const char **message)
{
    s_value_t member;
    s_value_json (json_object_get (body, "deviceToken"), &member);
    int rc = s_token (&member, token, code, message);
    if (rc == 0)
        rc = gateway_sensor_parse_reading (body, now_ms, out, code, message);
    return rc;
}

//  --------------------------------------------------------------------------
//  Writes value's decimal digits (at least one) backwards ending at end;
//  returns where they start.
static char *
s_digits_back (uint64_t value, char *end)
{
    do {
        *--end = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return end;
}

//  As "%" PRId64.
static char *
s_put_int (char *cursor, int64_t value)
{
    char digits[24];
    char *end = digits + sizeof digits;
    char *start = s_digits_back (value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value, end);
    if (value < 0)
        *cursor++ = '-';
    memcpy (cursor, start, (size_t)(end - start));
    return cursor + (end - start);
}

//  What "%.15g" writes for value when value is the double nearest to a
//  decimal m / 10^k of at most 15 significant digits that %g writes in
//  fixed notation (1e-4 <= it < 1e15); false for any other value (zero
//  and -0.0 included), which the caller formats with snprintf.
//  Why it is exact: m < 10^15 < 2^53 and 10^k (k <= 22) are exact doubles
//  and one IEEE division is correctly rounded, so (double) m / 10^k ==
//  value proves value is the double nearest to that decimal. A decimal of
//  at most DBL_DIG (15) digits survives decimal -> double -> 15 digits, so
//  %.15g writes exactly its digits (and strtod reads them back to value:
//  no %.17g). Two such decimals cannot share a double, so the first k
//  that matches is the one. Computing m is approximate; the check is not.
static bool
s_format_short (double value, char out[40])
{
    if (!(value >= 1e-4 && value < 1e15))
        return false;
    for (int k = 0; k <= 18; k++) {
        double scaled = value * s_pow10[k];
        if (scaled >= 1e15)
            return false;
        uint64_t mantissa = (uint64_t)(scaled + 0.5);
        if (mantissa == 0 || (double)mantissa / s_pow10[k] != value)
            continue;
        char digits[24];
        char *end = digits + sizeof digits;
        char *start = s_digits_back (mantissa, end);
        int count = (int)(end - start);
        //  %g's exponent; below -4 it writes 1e-05 style.
        if (count - 1 - k < -4)
            return false;
        char *cursor = out;
        if (k == 0) {
            memcpy (cursor, start, (size_t)count);
            cursor += count;
        } else if (count > k) {
            memcpy (cursor, start, (size_t)(count - k));
            cursor += count - k;
            *cursor++ = '.';
            memcpy (cursor, start + count - k, (size_t)k);
            cursor += k;
        } else {
            //  The first k that matches has no trailing zero to strip.
            *cursor++ = '0';
            *cursor++ = '.';
            memset (cursor, '0', (size_t)(k - count));
            cursor += k - count;
            memcpy (cursor, start, (size_t)count);
            cursor += count;
        }
        *cursor = 0;
        return true;
    }
    return false;
}

//  The same for any value, through snprintf and strtod.
static void
s_format_real_slow (double value, char out[40])
{
    snprintf (out, 40, "%.15g", value);
    if (strtod (out, NULL) != value)
        snprintf (out, 40, "%.17g", value);
    //  "230" is a valid JSON number; keep it as the device's real if it was one.
}

//  Writes a number as the device sent it: integers as integers, reals in
//  the shortest of %.15g / %.17g that reads back the same double. The
//  readings devices send (a few decimals) take s_format_short: printf of
//  doubles was 7 % of a worker's time per reading.
static void
s_format_number (double value, bool integer, char out[40])
{
    if (integer) {
        *s_put_int (out, (int64_t)value) = 0;
        return;
    }
    if (!s_format_short (value, out))
        s_format_real_slow (value, out);
}

static void
s_hash_token (const char *token, uint8_t hash[32])
{
    crypto_hash_sha256 (hash, (const uint8_t *)token, strlen (token));
}

static int
s_method_not_allowed (struct mg_connection *conn)
{
    static const char body[] = "{\"success\":false,\"message\":\"Method not "
                               "allowed\",\"error\":{\"code\":\"method_not_allowed\"}}";
    return gateway_http_send (conn, 405, "application/json", "Allow: POST\r\n", body,
                              sizeof body - 1);
}

//  Fills a reading from what the cache and the parser said.
static void
s_reading (proto_reading_t *reading, const gateway_sensor_input_t *input,
           const gateway_device_t *device, const gateway_port_t *port, int64_t now)
{
    memset (reading, 0, sizeof *reading);
    reading->user = port->user;
    reading->device = device->id;
    memcpy (reading->port, input->port, sizeof reading->port);
    reading->ts = input->has_ts ? input->ts : now;
    reading->received = now;
    reading->voltage = input->voltage;
    reading->current = input->current;
    reading->power = input->power;
    memcpy (reading->key, input->key, sizeof reading->key);
    reading->settings = port->settings;
}

//  One pipeline outcome as an HTTP status, with code and message for errors.
static int
s_outcome_status (int outcome, const proto_ack_t *ack, const char **code, const char **message)
{
    if (outcome == GATEWAY_PIPELINE_FULL) {
        *code = "unavailable";
        *message = "Reading pipeline unavailable, retry later";
        return 503;
    }
    if (outcome == GATEWAY_PIPELINE_TIMEOUT) {
        *code = "ack_timeout";
        *message = "Reading not confirmed in time, retry later";
        return 504;
    }
    if (ack->code == PROTO_ACK_OK)
        return 201;
    if (ack->code == PROTO_ACK_REJECTED) {
        *code = "rejected";
        *message = "Reading rejected";
        return 400;
    }
    *code = "retry";
    *message = "Reading not stored, retry later";
    return 503;
}

//  --------------------------------------------------------------------------
//  The batch route's body. A scanner reads the shape devices send straight
//  from the text: an object of deviceToken and readings, each reading an
//  object of our six members with scalar values, strings of printable
//  ASCII without escapes, numbers without exponent that read exactly
//  (s_scan_number). On anything else (escapes, other or repeated
//  members, nesting, exponents, long numbers, any syntax error) it gives
//  up and the body goes to jansson exactly as before, so every answer but
//  the fast one is jansson's; the fast one goes through the same checks
//  (s_item_parse, s_token). jansson's object per value and the response
//  built of json_t were two thirds of the gateway's CPU at 500 readings
//  per request (BENCH.md).

typedef struct {
    s_value_t token; //  deviceToken
    bool array;      //  readings is an array
    size_t count;    //  its size; items are filled when it is 1..BATCH_MAX
    s_item_t *items; //  malloc'd, capacity of them
    size_t capacity;
    json_t *json; //  jansson's parse when the scanner gave up
} s_batch_t;

typedef struct {
    char *cursor;
    char *end;
} s_scan_t;

static void
s_scan_space (s_scan_t *scan)
{
    while (scan->cursor < scan->end && (*scan->cursor == ' ' || *scan->cursor == '\n' ||
                                        *scan->cursor == '\r' || *scan->cursor == '\t'))
        scan->cursor++;
}

//  Consumes c (after white space); 0, or -1 if it is not next.
static int
s_scan_char (s_scan_t *scan, char c)
{
    s_scan_space (scan);
    if (scan->cursor >= scan->end || *scan->cursor != c)
        return -1;
    scan->cursor++;
    s_scan_space (scan);
    return 0;
}

static bool
s_scan_at (s_scan_t *scan, char c)
{
    return scan->cursor < scan->end && *scan->cursor == c;
}

//  A string of printable ASCII without escapes; 0, or -1 to give up.
static int
s_scan_string (s_scan_t *scan, s_value_t *value)
{
    if (!s_scan_at (scan, '"'))
        return -1;
    char *start = ++scan->cursor;
    char *cursor = start;
    while (cursor < scan->end && *cursor != '"') {
        unsigned char c = (unsigned char)*cursor;
        if (c < 0x20 || c > 0x7e || c == '\\')
            return -1;
        cursor++;
    }
    if (cursor >= scan->end)
        return -1;
    value->kind = S_STRING;
    value->text = start;
    value->length = (uint32_t)(cursor - start);
    scan->cursor = cursor + 1;
    return 0;
}

//  A JSON number without exponent. An integer of up to 18 digits is exact.
//  A real whose digits make an integer up to 2^53 with at most 22 of them
//  after the point is mantissa / 10^fraction, both exact doubles, and one
//  IEEE division is correctly rounded: the very double strtod (jansson)
//  reads. 0, or -1 to give up.
static int
s_scan_number (s_scan_t *scan, s_value_t *value)
{
    char *cursor = scan->cursor;
    char *end = scan->end;
    bool negative = cursor < end && *cursor == '-';
    if (negative)
        cursor++;
    if (cursor >= end || *cursor < '0' || *cursor > '9')
        return -1;
    uint64_t mantissa = 0;
    if (*cursor == '0') {
        cursor++;
        if (cursor < end && *cursor >= '0' && *cursor <= '9')
            return -1; //  a leading zero is not JSON
    } else
        for (int digits = 0; cursor < end && *cursor >= '0' && *cursor <= '9'; digits++) {
            if (digits == 18)
                return -1;
            mantissa = mantissa * 10 + (uint64_t)(*cursor++ - '0');
        }
    int fraction = 0;
    bool real = cursor < end && *cursor == '.';
    if (real) {
        cursor++;
        while (cursor < end && *cursor >= '0' && *cursor <= '9') {
            //  Past 2^53 it is inexact anyway; this also keeps it in 64 bits.
            if (++fraction > 22 || mantissa > (UINT64_C (1) << 53))
                return -1;
            mantissa = mantissa * 10 + (uint64_t)(*cursor++ - '0');
        }
        if (fraction == 0 || mantissa > (UINT64_C (1) << 53))
            return -1;
    }
    if (cursor < end && (*cursor == 'e' || *cursor == 'E'))
        return -1;
    if (real) {
        double magnitude = (double)mantissa / s_pow10[fraction];
        value->kind = S_REAL;
        value->real = negative ? -magnitude : magnitude;
    } else {
        value->kind = S_INTEGER;
        value->integer = negative ? -(json_int_t)mantissa : (json_int_t)mantissa;
    }
    scan->cursor = cursor;
    return 0;
}

//  A string, number, true, false or null; 0, or -1 to give up.
static int
s_scan_scalar (s_scan_t *scan, s_value_t *value)
{
    if (scan->cursor >= scan->end)
        return -1;
    char c = *scan->cursor;
    if (c == '"')
        return s_scan_string (scan, value);
    if (c == '-' || (c >= '0' && c <= '9'))
        return s_scan_number (scan, value);
    size_t left = (size_t)(scan->end - scan->cursor);
    if (left >= 4 && memcmp (scan->cursor, "null", 4) == 0) {
        value->kind = S_NULL;
        scan->cursor += 4;
    } else if (left >= 4 && memcmp (scan->cursor, "true", 4) == 0) {
        value->kind = S_OTHER;
        scan->cursor += 4;
    } else if (left >= 5 && memcmp (scan->cursor, "false", 5) == 0) {
        value->kind = S_OTHER;
        scan->cursor += 5;
    } else
        return -1;
    return 0;
}

//  The member of item a key names; NULL if it is none of ours.
static s_value_t *
s_item_member (s_item_t *item, const char *key, size_t length)
{
    switch (length) {
    case 5:
        return memcmp (key, "power", 5) == 0 ? &item->power : NULL;
    case 6:
        return memcmp (key, "portId", 6) == 0 ? &item->port : NULL;
    case 7:
        return memcmp (key, "voltage", 7) == 0   ? &item->voltage
               : memcmp (key, "current", 7) == 0 ? &item->current
                                                 : NULL;
    case 9:
        return memcmp (key, "timestamp", 9) == 0   ? &item->timestamp
               : memcmp (key, "readingId", 9) == 0 ? &item->key
                                                   : NULL;
    default:
        return NULL;
    }
}

//  One element of readings: an object of our members, or a scalar (which
//  the checks answer "reading must be an object"). token: where a
//  "deviceToken" member goes (the single-reading body), NULL: not one of
//  ours. 0, or -1 to give up.
static int
s_scan_item (s_scan_t *scan, s_item_t *item, s_value_t *token)
{
    memset (item, 0, sizeof *item);
    if (!s_scan_at (scan, '{')) {
        s_value_t ignored;
        return s_scan_scalar (scan, &ignored);
    }
    item->object = true;
    if (s_scan_char (scan, '{'))
        return -1;
    if (s_scan_at (scan, '}')) {
        scan->cursor++;
        return 0;
    }
    while (true) {
        s_value_t key;
        if (s_scan_string (scan, &key))
            return -1;
        s_value_t *member = token && key.length == 11 && memcmp (key.text, "deviceToken", 11) == 0
                                ? token
                                : s_item_member (item, key.text, key.length);
        //  Other members and repeated keys are jansson's to answer.
        if (!member || member->kind != S_ABSENT)
            return -1;
        if (s_scan_char (scan, ':') || s_scan_scalar (scan, member))
            return -1;
        s_scan_space (scan);
        if (s_scan_at (scan, '}')) {
            scan->cursor++;
            return 0;
        }
        if (s_scan_char (scan, ','))
            return -1;
    }
}

static int
s_batch_reserve (s_batch_t *batch, size_t count)
{
    if (count <= batch->capacity)
        return 0;
    size_t capacity = batch->capacity ? batch->capacity : 64;
    while (capacity < count)
        capacity *= 2;
    s_item_t *items = (s_item_t *)realloc (batch->items, capacity * sizeof (s_item_t));
    if (!items)
        return -1;
    batch->items = items;
    batch->capacity = capacity;
    return 0;
}

//  The readings array; 0, or -1 to give up.
static int
s_scan_readings (s_scan_t *scan, s_batch_t *batch)
{
    batch->array = true;
    if (s_scan_char (scan, '['))
        return -1;
    if (s_scan_at (scan, ']')) {
        scan->cursor++;
        return 0;
    }
    while (true) {
        //  More than the route takes: jansson's parse answers it.
        if (batch->count == BATCH_MAX || s_batch_reserve (batch, batch->count + 1))
            return -1;
        if (s_scan_item (scan, &batch->items[batch->count++], NULL))
            return -1;
        s_scan_space (scan);
        if (s_scan_at (scan, ']')) {
            scan->cursor++;
            return 0;
        }
        if (s_scan_char (scan, ','))
            return -1;
    }
}

static void
s_terminate (s_value_t *value)
{
    if (value->kind == S_STRING)
        ((char *)value->text)[value->length] = 0;
}

//  Scans text (size bytes, writable) into batch; 0, or -1 when jansson
//  must parse it. Only on success is the text changed: each string value's
//  closing quote becomes its terminating NUL.
static int
s_batch_scan (char *text, size_t size, s_batch_t *batch)
{
    s_scan_t scan = {text, text + size};
    bool token_seen = false, readings_seen = false;
    if (s_scan_char (&scan, '{'))
        return -1;
    if (s_scan_at (&scan, '}'))
        scan.cursor++;
    else
        while (true) {
            s_value_t key;
            if (s_scan_string (&scan, &key) || s_scan_char (&scan, ':'))
                return -1;
            if (key.length == 11 && memcmp (key.text, "deviceToken", 11) == 0) {
                if (token_seen || s_scan_scalar (&scan, &batch->token))
                    return -1;
                token_seen = true;
            } else if (key.length == 8 && memcmp (key.text, "readings", 8) == 0) {
                if (readings_seen)
                    return -1;
                readings_seen = true;
                s_value_t scalar;
                if (s_scan_at (&scan, '[') ? s_scan_readings (&scan, batch)
                                           : s_scan_scalar (&scan, &scalar))
                    return -1;
            } else
                return -1;
            s_scan_space (&scan);
            if (s_scan_at (&scan, '}')) {
                scan.cursor++;
                break;
            }
            if (s_scan_char (&scan, ','))
                return -1;
        }
    s_scan_space (&scan);
    if (scan.cursor != scan.end)
        return -1;
    s_terminate (&batch->token);
    for (size_t index = 0; index < batch->count; index++) {
        s_item_t *item = &batch->items[index];
        s_terminate (&item->port);
        s_terminate (&item->timestamp);
        s_terminate (&item->key);
    }
    return 0;
}

//  Fills batch from jansson's parse of the body (an object), keeping it.
static int
s_batch_json (json_t *body, s_batch_t *batch)
{
    batch->json = body;
    s_value_json (json_object_get (body, "deviceToken"), &batch->token);
    json_t *readings = json_object_get (body, "readings");
    batch->array = json_is_array (readings);
    batch->count = batch->array ? json_array_size (readings) : 0;
    if (batch->count < 1 || batch->count > BATCH_MAX)
        return 0;
    if (s_batch_reserve (batch, batch->count))
        return -1;
    for (size_t index = 0; index < batch->count; index++)
        s_item_json (json_array_get (readings, index), &batch->items[index]);
    return 0;
}

static void
s_batch_reset (s_batch_t *batch)
{
    json_decref (batch->json);
    batch->json = NULL;
    memset (&batch->token, 0, sizeof batch->token);
    batch->array = false;
    batch->count = 0;
}

//  Body-level checks: token, then the readings array. 0 or 400.
static int
s_batch_check (const s_batch_t *batch, const char **token, const char **code, const char **message)
{
    int status = s_token (&batch->token, token, code, message);
    if (status == 0 && (!batch->array || batch->count < 1 || batch->count > BATCH_MAX))
        status = s_fail (code, message, "invalid_field",
                         "readings must be an array of 1 to 1000 readings");
    return status;
}

//  --------------------------------------------------------------------------
//  The single-reading body the same way: an object of deviceToken and our
//  six members with scalar values, read by the batch scanner's pieces into
//  the records the jansson path fills. Anything else (other or repeated
//  members, escapes, exponents, nesting, a syntax error) is jansson's, as
//  before; so is every error answer about the body's JSON. jansson's parse
//  was a malloc per value and a strtod per number on every reading.

//  Scans text (size bytes, writable); 0, or -1 when jansson must parse it.
//  Only on success is the text changed (string values NUL-terminated).
static int
s_reading_scan (char *text, size_t size, s_value_t *token, s_item_t *item)
{
    memset (token, 0, sizeof *token);
    s_scan_t scan = {text, text + size};
    s_scan_space (&scan);
    if (!s_scan_at (&scan, '{') || s_scan_item (&scan, item, token))
        return -1;
    s_scan_space (&scan);
    if (scan.cursor != scan.end)
        return -1;
    s_terminate (token);
    s_terminate (&item->port);
    s_terminate (&item->timestamp);
    s_terminate (&item->key);
    return 0;
}

//  Appends a literal / a string to an answer being built in a fixed buffer.
#define S_PUT_LITERAL(cursor, literal)                                                             \
    do {                                                                                           \
        memcpy ((cursor), (literal), sizeof (literal) - 1);                                        \
        (cursor) += sizeof (literal) - 1;                                                          \
    } while (0)

static char *
s_put (char *cursor, const char *text)
{
    size_t length = strlen (text);
    memcpy (cursor, text, length);
    return cursor + length;
}

//  The 201 answer, exactly as the snprintf of "%" PRId64 and the numbers
//  formatted above wrote it; answer has room for 512 bytes.
static size_t
s_reading_answer (const gateway_sensor_input_t *input, const proto_ack_t *ack, char *answer)
{
    char voltage[40], current[40], power[40], timestamp[32];
    s_format_number (input->voltage, input->voltage_integer, voltage);
    s_format_number (input->current, input->current_integer, current);
    s_format_number (input->power, input->power_integer, power);
    gateway_http_iso8601 (ack->ts, timestamp);
    char *cursor = answer;
    S_PUT_LITERAL (cursor, "{\"success\":true,\"message\":\"Sensor reading created successfully\","
                           "\"data\":{\"reading\":{\"id\":");
    cursor = s_put_int (cursor, ack->id);
    S_PUT_LITERAL (cursor, ",\"voltage\":");
    cursor = s_put (cursor, voltage);
    S_PUT_LITERAL (cursor, ",\"current\":");
    cursor = s_put (cursor, current);
    S_PUT_LITERAL (cursor, ",\"power\":");
    cursor = s_put (cursor, power);
    S_PUT_LITERAL (cursor, ",\"timestamp\":\"");
    cursor = s_put (cursor, timestamp);
    if (ack->status == PROTO_STATUS_PHANTOM)
        S_PUT_LITERAL (cursor, "\"},\"phantomDetected\":true,\"portStatus\":\"");
    else
        S_PUT_LITERAL (cursor, "\"},\"phantomDetected\":false,\"portStatus\":\"");
    cursor = s_put (cursor, proto_status_name (ack->status));
    S_PUT_LITERAL (cursor, "\"}}");
    return (size_t)(cursor - answer);
}

//  The start of both sensor handlers: POST only; then the body, in stack
//  when it fits. 0 with *body and *size set, else the status answered.
static int
s_sensor_request (struct mg_connection *conn, size_t max, char *stack, size_t stack_size,
                  char **body, size_t *size)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info || strcmp (info->request_method, "POST") != 0)
        return s_method_not_allowed (conn);
    int status = 0;
    if (gateway_http_read_body (conn, max, stack, stack_size, body, size, &status) != 0)
        return status ? status : 500;
    return 0;
}

//  A device token that matched nothing: 401, or 429 once the client's
//  address has guessed too often. Counted after the lookup, and only
//  when it failed: behind NAT or a proxy every sensor shares one address,
//  and one guesser must not lock out the sensors whose tokens are valid
//  (a valid token never comes here). Tokens are 256-bit random, so the
//  limit is about load and log noise, not about their being guessed.
static int
s_token_failed (struct mg_connection *conn, const char **code, const char **message)
{
    const char *ip = gateway_http_client_ip (conn);
    int retry_after;
    if (gateway_http_rate_limited (GATEWAY_RATE_TOKEN, ip, &retry_after))
        return gateway_http_send_rate_limited (conn, retry_after);
    gateway_http_rate_limit_hit (GATEWAY_RATE_TOKEN, ip);
    *code = "invalid_token";
    *message = "Invalid device token";
    return 401;
}

static int
s_handle_reading (struct mg_connection *conn, gateway_t *gateway)
{
    char stack_buffer[GATEWAY_SENSOR_BODY_MAX + 1];
    char *text;
    size_t size;
    int status = s_sensor_request (conn, GATEWAY_SENSOR_BODY_MAX, stack_buffer, sizeof stack_buffer,
                                   &text, &size);
    if (status)
        return status;
    int64_t now = gateway_http_now_ms ();
    const char *token = NULL, *code = NULL, *message = NULL;
    gateway_sensor_input_t input;
    json_t *body = NULL;
    s_value_t token_value;
    s_item_t item;
    if (s_reading_scan (text, size, &token_value, &item) == 0) {
        //  The checks gateway_sensor_parse makes, on the scanned records.
        status = s_token (&token_value, &token, &code, &message);
        if (status == 0)
            status = s_item_parse (&item, now, &input, &code, &message);
    } else {
        body = gateway_http_parse_json (conn, text, size, &status);
        if (text != stack_buffer)
            free (text);
        if (!body)
            return status;
        status = gateway_sensor_parse (body, now, &token, &input, &code, &message);
    }
    if (status == 0 && !input.key[0]) {
        //  The Idempotency-Key header stands in for a readingId.
        const char *header = mg_get_header (conn, "Idempotency-Key");
        if (header) {
            if (s_valid_key (header))
                snprintf (input.key, sizeof input.key, "%s", header);
            else
                status = s_fail (&code, &message, "invalid_field",
                                 "Idempotency-Key must be 1 to 64 printable ASCII characters");
        }
    }
    uint8_t hash[32];
    gateway_device_t device;
    gateway_port_t port;
    if (status == 0) {
        s_hash_token (token, hash);
        if (!gateway_cache_device (gateway->cache, hash, &device)) {
            status = s_token_failed (conn, &code, &message);
            if (status == 429) {
                json_decref (body);
                return status;
            }
        } else if (!input.port[0] || !gateway_cache_port (gateway->cache, input.port, &port) ||
                   port.user != device.user) {
            status = 404;
            code = "port_not_found";
            message = "Port not found";
        }
    }
    json_decref (body);
    if (status)
        return gateway_http_send_error (conn, status, code, message, 0);

    proto_reading_t reading;
    s_reading (&reading, &input, &device, &port, now);
    proto_ack_t ack;
    int outcome;
    gateway_pipeline_submit (gateway->pipeline, &reading, 1, &ack, &outcome);
    status = s_outcome_status (outcome, &ack, &code, &message);
    if (status != 201)
        return gateway_http_send_error (conn, status, code, message, status >= 500 ? 1 : 0);
    gateway_live_reading (gateway->live, reading.user, reading.port, ack.ts, reading.power,
                          ack.status);
    char answer[512];
    size_t answer_size = s_reading_answer (&input, &ack, answer);
    return gateway_http_send (conn, 201, "application/json", NULL, answer, answer_size);
}

static int
s_reading_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    int status = s_handle_reading (conn, gateway);
    gateway_pipeline_count_status (gateway->pipeline, status);
    return status;
}

//  --------------------------------------------------------------------------
//  The batch answer, written straight into one growing buffer in the exact
//  form jansson's json_dumps (JSON_COMPACT) wrote it.

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    bool failed; //  out of memory
} s_text_t;

static char *
s_text_room (s_text_t *text, size_t more)
{
    if (text->failed)
        return NULL;
    if (text->size + more > text->capacity) {
        size_t capacity = text->capacity ? text->capacity : 1024;
        while (capacity < text->size + more)
            capacity *= 2;
        char *data = (char *)realloc (text->data, capacity);
        if (!data) {
            text->failed = true;
            return NULL;
        }
        text->data = data;
        text->capacity = capacity;
    }
    return text->data + text->size;
}

static void
s_text_add (s_text_t *text, const char *data, size_t size)
{
    char *room = s_text_room (text, size);
    if (room) {
        memcpy (room, data, size);
        text->size += size;
    }
}

#define S_TEXT_LITERAL(text, literal) s_text_add ((text), (literal), sizeof (literal) - 1)

static void
s_text_int (s_text_t *text, int64_t value)
{
    char digits[24];
    size_t at = sizeof digits;
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    do {
        digits[--at] = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        digits[--at] = '-';
    s_text_add (text, digits + at, sizeof digits - at);
}

//  A JSON string as jansson writes one (UTF-8 passes through).
static void
s_text_string (s_text_t *text, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    char *room = s_text_room (text, 2 + 6 * strlen (value));
    if (!room)
        return;
    char *out = room;
    *out++ = '"';
    for (const char *cursor = value; *cursor; cursor++) {
        unsigned char c = (unsigned char)*cursor;
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            *out++ = '\\';
            switch (c) {
            case '\b':
                *out++ = 'b';
                break;
            case '\f':
                *out++ = 'f';
                break;
            case '\n':
                *out++ = 'n';
                break;
            case '\r':
                *out++ = 'r';
                break;
            case '\t':
                *out++ = 't';
                break;
            default:
                memcpy (out, "u00", 3);
                out[3] = hex[c >> 4];
                out[4] = hex[c & 15];
                out += 5;
            }
        } else
            *out++ = (char)c;
    }
    *out++ = '"';
    text->size += (size_t)(out - room);
}

//  One element of data.results.
typedef struct {
    int status;          //  201 or the error's status
    const char *code;    //  error only
    const char *message; //  error only
    size_t submitted;    //  201: index into readings and acks
} s_result_t;

static void
s_text_result (s_text_t *text, size_t index, const s_result_t *result, const proto_ack_t *acks)
{
    S_TEXT_LITERAL (text, "{\"index\":");
    s_text_int (text, (int64_t)index);
    S_TEXT_LITERAL (text, ",\"status\":");
    s_text_int (text, result->status);
    if (result->status == 201) {
        const proto_ack_t *ack = &acks[result->submitted];
        char timestamp[32];
        gateway_http_iso8601 (ack->ts, timestamp);
        S_TEXT_LITERAL (text, ",\"id\":");
        s_text_int (text, ack->id);
        S_TEXT_LITERAL (text, ",\"timestamp\":");
        s_text_string (text, timestamp);
        S_TEXT_LITERAL (text, ",\"portStatus\":");
        s_text_string (text, proto_status_name (ack->status));
        if (ack->status == PROTO_STATUS_PHANTOM)
            S_TEXT_LITERAL (text, ",\"phantomDetected\":true}");
        else
            S_TEXT_LITERAL (text, ",\"phantomDetected\":false}");
    } else {
        S_TEXT_LITERAL (text, ",\"error\":{\"code\":");
        s_text_string (text, result->code);
        S_TEXT_LITERAL (text, ",\"message\":");
        s_text_string (text, result->message);
        S_TEXT_LITERAL (text, "}}");
    }
}

//  Counts per status, added to the metrics once per request rather than
//  once per reading (an atomic on a shared line each).
typedef struct {
    int status[8];
    unsigned long count[8];
    size_t used;
} s_tally_t;

static void
s_tally (s_tally_t *tally, gateway_pipeline_t *pipeline, int status)
{
    for (size_t index = 0; index < tally->used; index++)
        if (tally->status[index] == status) {
            tally->count[index]++;
            return;
        }
    if (tally->used == 8) {
        gateway_pipeline_count_statuses (pipeline, status, 1);
        return;
    }
    tally->status[tally->used] = status;
    tally->count[tally->used++] = 1;
}

static void
s_tally_flush (s_tally_t *tally, gateway_pipeline_t *pipeline)
{
    for (size_t index = 0; index < tally->used; index++)
        gateway_pipeline_count_statuses (pipeline, tally->status[index], tally->count[index]);
    tally->used = 0;
}

//  A submitted reading's timestamp and where it was in the submission.
typedef struct {
    int64_t ts;
    size_t index;
} s_order_t;

static int
s_order_compare (const void *a, const void *b)
{
    const s_order_t *x = (const s_order_t *)a, *y = (const s_order_t *)b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

//  Puts the count submitted readings (and their body positions) in
//  timestamp order, equal timestamps in body order. The detector judges a
//  port's readings in the order they come and ignores one older than the
//  port's last (DESIGN.md): a device uploading its buffer in any order
//  within a batch must get the verdicts it would have got live. A batch
//  already in order, as live ones are, costs one pass.
static void
s_batch_sort (proto_reading_t *readings, size_t *positions, size_t count, s_order_t *order)
{
    size_t index = 1;
    while (index < count && readings[index].ts >= readings[index - 1].ts)
        index++;
    if (index >= count)
        return;
    for (index = 0; index < count; index++)
        order[index] = (s_order_t){readings[index].ts, index};
    qsort (order, count, sizeof (s_order_t), s_order_compare);
    //  Apply the permutation in place, cycle by cycle (destination index
    //  takes source order[index].index): no second array of readings.
    for (size_t start = 0; start < count; start++) {
        if (order[start].index == start)
            continue;
        proto_reading_t reading = readings[start];
        size_t position = positions[start];
        size_t at = start;
        while (order[at].index != start) {
            size_t from = order[at].index;
            readings[at] = readings[from];
            positions[at] = positions[from];
            order[at].index = at;
            at = from;
        }
        readings[at] = reading;
        positions[at] = position;
        order[at].index = at;
    }
}

//  Per-item results of a checked batch: parse, port lookup, submit (in
//  timestamp order), wait. Fills results[count] and acks/readings (by
//  submitted index); returns the number accepted.
static size_t
s_batch_run (gateway_t *gateway, const s_batch_t *batch, const gateway_device_t *device,
             int64_t now, s_result_t *results, proto_reading_t *readings, proto_ack_t *acks,
             int *outcomes, size_t *positions, s_order_t *order)
{
    size_t count = batch->count;
    size_t submitted = 0;
    for (size_t index = 0; index < count; index++) {
        gateway_sensor_input_t input;
        gateway_port_t port;
        const char *code = NULL, *message = NULL;
        s_result_t *result = &results[index];
        int rc = s_item_parse (&batch->items[index], now, &input, &code, &message);
        if (rc) {
            result->status = rc;
            result->code = code;
            result->message = message;
        } else if (!input.port[0] || !gateway_cache_port (gateway->cache, input.port, &port) ||
                   port.user != device->user) {
            result->status = 404;
            result->code = "port_not_found";
            result->message = "Port not found";
        } else {
            s_reading (&readings[submitted], &input, device, &port, now);
            positions[submitted++] = index;
        }
    }
    s_batch_sort (readings, positions, submitted, order);
    gateway_pipeline_submit (gateway->pipeline, readings, submitted, acks, outcomes);
    size_t accepted = 0;
    for (size_t index = 0; index < submitted; index++) {
        s_result_t *result = &results[positions[index]];
        result->status =
            s_outcome_status (outcomes[index], &acks[index], &result->code, &result->message);
        result->submitted = index;
        if (result->status == 201) {
            accepted++;
            gateway_live_reading (gateway->live, readings[index].user, readings[index].port,
                                  acks[index].ts, readings[index].power, acks[index].status);
        }
    }
    return accepted;
}

static int
s_handle_batch (struct mg_connection *conn, gateway_t *gateway)
{
    char stack_buffer[GATEWAY_SENSOR_BODY_MAX + 1];
    char *body;
    size_t size;
    int status =
        s_sensor_request (conn, BATCH_BODY_MAX, stack_buffer, sizeof stack_buffer, &body, &size);
    if (status)
        return status;
    s_batch_t batch;
    memset (&batch, 0, sizeof batch);
    s_result_t *results = NULL;
    proto_reading_t *readings = NULL;
    proto_ack_t *acks = NULL;
    int *outcomes = NULL;
    size_t *positions = NULL;
    s_order_t *order = NULL;
    s_text_t text = {NULL, 0, 0, false};
    if (s_batch_scan (body, size, &batch) != 0) {
        //  The scanner may have stopped half way: start over with jansson.
        s_batch_reset (&batch);
        json_t *json = gateway_http_parse_json (conn, body, size, &status);
        if (!json)
            goto done;
        if (s_batch_json (json, &batch) != 0) {
            status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
            goto done;
        }
    }
    const char *token = NULL, *code = NULL, *message = NULL;
    status = s_batch_check (&batch, &token, &code, &message);
    gateway_device_t device;
    if (status == 0) {
        uint8_t hash[32];
        s_hash_token (token, hash);
        if (!gateway_cache_device (gateway->cache, hash, &device) &&
            (status = s_token_failed (conn, &code, &message)) == 429)
            goto done;
    }
    if (status) {
        status = gateway_http_send_error (conn, status, code, message, 0);
        goto done;
    }
    int64_t now = gateway_http_now_ms ();
    size_t count = batch.count;
    results = (s_result_t *)calloc (count, sizeof (s_result_t));
    readings = (proto_reading_t *)malloc (count * sizeof (proto_reading_t));
    acks = (proto_ack_t *)calloc (count, sizeof (proto_ack_t));
    outcomes = (int *)calloc (count, sizeof (int));
    positions = (size_t *)malloc (count * sizeof (size_t));
    order = (s_order_t *)malloc (count * sizeof (s_order_t));
    //  About 150 bytes per 201 result.
    if (!results || !readings || !acks || !outcomes || !positions || !order ||
        !s_text_room (&text, 128 + count * 160)) {
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
        goto done;
    }
    size_t accepted = s_batch_run (gateway, &batch, &device, now, results, readings, acks, outcomes,
                                   positions, order);

    s_tally_t tally = {.used = 0};
    S_TEXT_LITERAL (&text, "{\"success\":true,\"data\":{\"results\":[");
    for (size_t index = 0; index < count; index++) {
        if (index)
            S_TEXT_LITERAL (&text, ",");
        s_text_result (&text, index, &results[index], acks);
        s_tally (&tally, gateway->pipeline, results[index].status);
    }
    S_TEXT_LITERAL (&text, "],\"accepted\":");
    s_text_int (&text, (int64_t)accepted);
    S_TEXT_LITERAL (&text, ",\"rejected\":");
    s_text_int (&text, (int64_t)(count - accepted));
    S_TEXT_LITERAL (&text, "}}");
    s_tally_flush (&tally, gateway->pipeline);
    if (text.failed)
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
    else
        status = gateway_http_send (conn, 200, "application/json", NULL, text.data, text.size);
done:
    free (text.data);
    free (results);
    free (readings);
    free (acks);
    free (outcomes);
    free (positions);
    free (order);
    json_decref (batch.json);
    free (batch.items);
    if (body != stack_buffer)
        free (body);
    return status;
}

static int
s_batch_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    int status = s_handle_batch (conn, gateway);
    if (status != 200)
        gateway_pipeline_count_status (gateway->pipeline, status);
    return status;
}

void
gateway_sensor_register (gateway_t *self)
{
    assert (self && self->http);
    mg_set_request_handler (self->http, "/api/sensor/reading", s_reading_handler, self);
    mg_set_request_handler (self->http, "/api/sensor/readings", s_batch_handler, self);
}

//  ==========================================================================
//  Self test: parsing, table-driven; then the handlers end to end through
//  civetweb with a cache filled directly and an in-process detector+store.

typedef struct {
    const char *body;
    int status;
    const char *code;
} s_case_t;

#define UUID "3f2c8a1e-9b7d-4c5e-8f10-1234567890ab"

static void
s_check_parse (const char *text, int64_t now, int status, const char *expected_code)
{
    json_error_t error;
    json_t *body = json_loads (text, JSON_REJECT_DUPLICATES, &error);
    assert (body);
    const char *token = NULL, *code = NULL, *message = NULL;
    gateway_sensor_input_t input;
    int rc = gateway_sensor_parse (body, now, &token, &input, &code, &message);
    if (rc != status || (expected_code && (!code || strcmp (code, expected_code) != 0))) {
        fprintf (stderr, "\nparse '%s': got %d %s (%s), expected %d %s\n", text, rc,
                 code ? code : "-", message ? message : "-", status,
                 expected_code ? expected_code : "-");
        assert (false);
    }
    json_decref (body);
}

#define TEST_HTTP_PORT 3102

static bool s_retry_after; //  last s_post answer had Retry-After

//  POSTs body to path on the test server; returns status, reply in reply.
static int
s_post (const char *path, const char *body, char *reply, size_t size)
{
    char url[128];
    snprintf (url, sizeof url, "127.0.0.1");
    char error[256];
    struct mg_connection *client = mg_connect_client (url, TEST_HTTP_PORT, 0, error, sizeof error);
    assert (client);
    mg_printf (client,
               "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
               path, strlen (body), body);
    int rc = mg_get_response (client, error, sizeof error, 5000);
    assert (rc >= 0);
    const struct mg_response_info *response = mg_get_response_info (client);
    int status = response->status_code;
    s_retry_after = false;
    for (int index = 0; index < response->num_headers; index++)
        if (strcasecmp (response->http_headers[index].name, "Retry-After") == 0)
            s_retry_after = true;
    int got = 0, n;
    while (got < (int)size - 1 && (n = mg_read (client, reply + got, size - 1 - (size_t)got)) > 0)
        got += n;
    reply[got] = 0;
    mg_close_connection (client);
    return status;
}

typedef struct {
    zsock_t *pull;
    zsock_t *pub;
    int acks;       //  how many readings to ack (then stop)
    uint8_t status; //  port status to report
} s_fake_t;

//  Fake detector+store: acks readings with id = 1000 + n.
static void *
s_fake_thread (void *args)
{
    s_fake_t *fake = (s_fake_t *)args;
    zpoller_t *poller = zpoller_new (fake->pull, NULL);
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int count = 0;
    while (count < fake->acks) {
        if (zpoller_wait (poller, 3000) != fake->pull)
            break;
        //  A message carries one or more reading frames (a batch).
        zframe_t *frame = zframe_recv (fake->pull);
        size_t offset = 0;
        while (offset < zframe_size (frame) && count < fake->acks) {
            proto_reading_t reading;
            size_t used;
            int rc = proto_reading_decode_next (zframe_data (frame) + offset,
                                                zframe_size (frame) - offset, &reading, &used);
            assert (rc == 0);
            offset += used;
            proto_ack_t ack = {.request = reading.request,
                               .code = PROTO_ACK_OK,
                               .id = 1000 + count++,
                               .ts = reading.ts,
                               .status = fake->status};
            proto_acks_encode (&ack, 1, &buffer);
            zmsg_t *msg = zmsg_new ();
            zmsg_addstr (msg, "ack.gwsensor");
            zmsg_addmem (msg, buffer.data, buffer.size);
            zmsg_send (&msg, fake->pub);
        }
        zframe_destroy (&frame);
    }
    proto_buffer_release (&buffer);
    zpoller_destroy (&poller);
    return NULL;
}

//  What one route evaluation of a batch body says, for comparing the
//  scanner with jansson.
typedef struct {
    int status; //  body-level
    const char *code;
    const char *message;
    char token[TOKEN_MAX + 1];
    size_t count;
    int item_status[BATCH_MAX];
    const char *item_code[BATCH_MAX];
    gateway_sensor_input_t input[BATCH_MAX];
} s_verdict_t;

static void
s_verdict (s_batch_t *batch, int64_t now, s_verdict_t *verdict)
{
    const char *token = NULL;
    verdict->code = NULL;
    verdict->message = NULL;
    verdict->status = s_batch_check (batch, &token, &verdict->code, &verdict->message);
    verdict->token[0] = 0;
    verdict->count = 0;
    if (verdict->status)
        return;
    snprintf (verdict->token, sizeof verdict->token, "%s", token);
    verdict->count = batch->count;
    for (size_t index = 0; index < batch->count; index++) {
        const char *message = NULL;
        verdict->item_code[index] = NULL;
        verdict->item_status[index] =
            s_item_parse (&batch->items[index], now, &verdict->input[index],
                          &verdict->item_code[index], &message);
    }
}

static bool
s_same_input (const gateway_sensor_input_t *one, const gateway_sensor_input_t *two)
{
    //  Doubles bit for bit: -0.0 and 0.0 must not pass for each other.
    return streq (one->port, two->port) && memcmp (&one->voltage, &two->voltage, 8) == 0 &&
           memcmp (&one->current, &two->current, 8) == 0 &&
           memcmp (&one->power, &two->power, 8) == 0 &&
           one->voltage_integer == two->voltage_integer &&
           one->current_integer == two->current_integer &&
           one->power_integer == two->power_integer && one->has_ts == two->has_ts &&
           one->ts == two->ts && streq (one->key, two->key);
}

//  Scans text with the scanner and with jansson; when the scanner takes
//  it, both must say exactly the same. Returns true if the scanner took it.
static bool
s_check_scanner (const char *text, size_t size, int64_t now, s_verdict_t *fast, s_verdict_t *slow)
{
    char *copy = (char *)malloc (size ? size : 1); //  unterminated: no read past it
    assert (copy);
    memcpy (copy, text, size);
    s_batch_t batch;
    memset (&batch, 0, sizeof batch);
    bool scanned = s_batch_scan (copy, size, &batch) == 0;
    if (scanned)
        s_verdict (&batch, now, fast);
    s_batch_reset (&batch);
    if (scanned) {
        json_error_t error;
        json_t *json = json_loadb (text, size, JSON_REJECT_DUPLICATES, &error);
        if (!json || !json_is_object (json)) {
            fprintf (stderr, "\nscanner took what jansson refuses: '%.*s'\n", (int)size, text);
            assert (false);
        }
        int rc = s_batch_json (json, &batch);
        assert (rc == 0);
        s_verdict (&batch, now, slow);
        s_batch_reset (&batch);
        bool same = fast->status == slow->status && fast->count == slow->count &&
                    (fast->code == slow->code ||
                     (fast->code && slow->code && streq (fast->code, slow->code))) &&
                    (fast->message == slow->message ||
                     (fast->message && slow->message && streq (fast->message, slow->message))) &&
                    streq (fast->token, slow->token);
        for (size_t index = 0; same && index < fast->count; index++) {
            same = fast->item_status[index] == slow->item_status[index] &&
                   (fast->item_status[index]
                        ? streq (fast->item_code[index], slow->item_code[index])
                        : s_same_input (&fast->input[index], &slow->input[index]));
            if (!same)
                fprintf (stderr, "\nitem %zu differs\n", index);
        }
        if (!same) {
            fprintf (stderr, "scanner and jansson differ on '%.*s'\n", (int)size, text);
            assert (false);
        }
    }
    free (batch.items);
    free (copy);
    return scanned;
}

//  Copies base into text (capacity bytes) with edits random edits: a byte
//  replaced, inserted or deleted, or a span repeated. Returns the size.
static size_t
s_mutate (const char *base, char *text, size_t capacity, int edits, uint64_t *state)
{
    static const char alphabet[] = "{}[]\":,.-+0123456789eEtrufalsn \n\\x\t\x01\xc3\xa9" UUID;
    size_t size = strlen (base);
    assert (size < capacity);
    memcpy (text, base, size);
    for (int edit = 0; edit < edits; edit++) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        size_t at = size ? (size_t)(*state >> 8) % size : 0;
        char c = alphabet[(*state >> 40) % (sizeof alphabet - 1)];
        switch (*state % 4) {
        case 0:
            if (size)
                text[at] = c;
            break;
        case 1:
            if (size + 1 < capacity) {
                memmove (text + at + 1, text + at, size - at);
                text[at] = c;
                size++;
            }
            break;
        case 2:
            if (size) {
                memmove (text + at, text + at + 1, size - at - 1);
                size--;
            }
            break;
        default: {
            size_t span = (size_t)(*state >> 20) % 40;
            if (at + span <= size && size + span < capacity) {
                memmove (text + at + span, text + at, size - at);
                size += span;
            }
        }
        }
    }
    return size;
}

//  The scanner against jansson: chosen bodies, then random edits of them.
static void
s_scanner_test (int64_t now, bool verbose)
{
    const char *bodies[] = {
        "{\"deviceToken\":\"t\",\"readings\":[{\"portId\":\"" UUID
        "\",\"voltage\":230.5,\"current\":0.45,\"power\":103.73}]}",
        " {\n\t\"readings\" : [ { \"power\" : 0 , \"current\" : 0.001 , \"voltage\" : -0 ,"
        " \"portId\" : \"3F2C8A1E-9B7D-4C5E-8F10-1234567890AB\" , \"timestamp\" : "
        "\"2024-01-01T11:59:00.5+00:30\" , \"readingId\" : \"r 1~\" } , 7 , null ] ,"
        " \"deviceToken\" : \"tok\" }\r\n",
        "{\"deviceToken\":\"t\",\"readings\":[{\"portId\":\"" UUID
        "\",\"voltage\":-0.0,\"current\":123456789012345,\"power\":0.123456789012345,"
        "\"timestamp\":1704110400000,\"readingId\":null},{\"portId\":null,\"voltage\":1,"
        "\"current\":1,\"power\":1},{\"portId\":\"x\",\"voltage\":true,\"current\":1,"
        "\"power\":1},{},{\"portId\":\"" UUID "\",\"voltage\":1000,\"current\":1000.0,"
        "\"power\":1000000.000001,\"timestamp\":\"2024-01-01T12:06:00Z\"},{\"portId\":\"" UUID
        "\",\"voltage\":999999999999999999,\"current\":0.1,\"power\":0.2,"
        "\"timestamp\":-1704110400000},{\"portId\":\"" UUID "\",\"voltage\":1,\"current\":1,"
        "\"power\":1,\"timestamp\":false,\"readingId\":\"\"},{\"portId\":5,\"voltage\":1}]}",
        "{\"deviceToken\":5,\"readings\":[]}",
        "{\"deviceToken\":null,\"readings\":[1]}",
        "{\"readings\":[]}",
        "{}",
        "{\"deviceToken\":\"\",\"readings\":[{}]}",
        "{\"deviceToken\":\"t\",\"readings\":[]}",
        "{\"deviceToken\":\"t\",\"readings\":7}",
        "{\"deviceToken\":\"t\",\"readings\":\"x\"}",
        "{\"deviceToken\":\"t\",\"readings\":[{\"portId\":\"" UUID
        "\",\"voltage\":1e2,\"current\":1,\"power\":1}]}",
        "{\"deviceToken\":\"t\",\"readings\":[{\"portId\":\"a\\\"b\",\"voltage\":1,"
        "\"current\":1,\"power\":1,\"extra\":[1,{\"a\":2}]}],\"more\":{}}",
        "{\"deviceToken\":\"t\",\"readings\":[{\"portId\":\"" UUID
        "\",\"voltage\":1,\"voltage\":2,\"current\":1,\"power\":1}]}",
    };
    size_t fast = 0, total = 0;
    s_verdict_t *one = (s_verdict_t *)malloc (sizeof (s_verdict_t));
    s_verdict_t *two = (s_verdict_t *)malloc (sizeof (s_verdict_t));
    assert (one && two);
    size_t body_count = sizeof bodies / sizeof bodies[0];
    for (size_t index = 0; index < body_count; index++) {
        bool scanned = s_check_scanner (bodies[index], strlen (bodies[index]), now, one, two);
        //  The first eleven are the scanner's; exponents, escapes, other
        //  members and repeated keys are jansson's.
        if (scanned != (index < 11))
            fprintf (stderr, "\nbody %zu scanned %d\n", index, scanned);
        assert (scanned == (index < 11));
        fast += scanned;
        total++;
    }
    //  A full batch of 1000 is the scanner's, 1001 jansson's.
    for (int items = 1000; items <= 1001; items++) {
        size_t size = 64 + (size_t)items * 100;
        char *text = (char *)malloc (size);
        assert (text);
        int at = snprintf (text, size, "{\"deviceToken\":\"t\",\"readings\":[");
        for (int index = 0; index < items; index++)
            at +=
                snprintf (text + at, size - (size_t)at,
                          "%s{\"portId\":\"" UUID "\",\"voltage\":%d.5,\"current\":1,\"power\":2}",
                          index ? "," : "", index);
        at += snprintf (text + at, size - (size_t)at, "]}");
        assert (s_check_scanner (text, (size_t)at, now, one, two) == (items == 1000));
        free (text);
    }
    //  Random edits: replace, insert or delete a byte, or repeat a span.
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    char text[4096];
    for (int round = 0; round < 200000; round++) {
        size_t size =
            s_mutate (bodies[round % body_count], text, sizeof text, 1 + round % 3, &state);
        fast += s_check_scanner (text, size, now, one, two);
        total++;
    }
    if (verbose)
        printf ("\nscanner took %zu of %zu bodies, each as jansson reads it\n", fast, total);
    if (fast <= total / 25)
        fprintf (stderr, "\nscanner took only %zu of %zu\n", fast, total);
    assert (fast > total / 25);
    free (one);
    free (two);
}

//  The batch answer as jansson wrote it before (json_pack + json_dumps).
static void
s_answer_test (void)
{
    proto_ack_t acks[2] = {{.request = 1,
                            .code = PROTO_ACK_OK,
                            .id = 2108151,
                            .ts = 1795761811705LL,
                            .status = PROTO_STATUS_ACTIVE},
                           {.request = 2,
                            .code = PROTO_ACK_OK,
                            .id = -3,
                            .ts = 1704110400000LL,
                            .status = PROTO_STATUS_PHANTOM}};
    s_result_t results[4] = {
        {.status = 201, .submitted = 0},
        {.status = 400, .code = "out_of_range", .message = "voltage must be between 0 and 1000"},
        {.status = 503, .code = "retry", .message = "quote \" slash \\ tab \t ctl \x01 /"},
        {.status = 201, .submitted = 1}};
    s_text_t text = {NULL, 0, 0, false};
    json_t *list = json_array ();
    for (size_t index = 0; index < 4; index++) {
        s_text_result (&text, index, &results[index], acks);
        S_TEXT_LITERAL (&text, "\n");
        json_t *item;
        if (results[index].status == 201) {
            const proto_ack_t *ack = &acks[results[index].submitted];
            char timestamp[32];
            gateway_http_iso8601 (ack->ts, timestamp);
            item = json_pack ("{s:I, s:i, s:I, s:s, s:s, s:b}", "index", (json_int_t)index,
                              "status", 201, "id", (json_int_t)ack->id, "timestamp", timestamp,
                              "portStatus", proto_status_name (ack->status), "phantomDetected",
                              ack->status == PROTO_STATUS_PHANTOM);
        } else
            item = json_pack ("{s:I, s:i, s:{s:s, s:s}}", "index", (json_int_t)index, "status",
                              results[index].status, "error", "code", results[index].code,
                              "message", results[index].message);
        char *dumped = json_dumps (item, JSON_COMPACT | JSON_REAL_PRECISION (17));
        json_decref (item);
        json_array_append_new (list, json_string (dumped));
        free (dumped);
    }
    S_TEXT_LITERAL (&text, "");
    char *expected = NULL;
    size_t expected_size = 0;
    for (size_t index = 0; index < 4; index++) {
        const char *line = json_string_value (json_array_get (list, index));
        expected = (char *)realloc (expected, expected_size + strlen (line) + 2);
        memcpy (expected + expected_size, line, strlen (line));
        expected_size += strlen (line);
        expected[expected_size++] = '\n';
    }
    if (text.size != expected_size || memcmp (text.data, expected, expected_size) != 0) {
        fprintf (stderr, "\nours:\n%.*s\njansson:\n%.*s\n", (int)text.size, text.data,
                 (int)expected_size, expected);
        assert (false);
    }
    free (expected);
    free (text.data);
    json_decref (list);
    s_text_t number = {NULL, 0, 0, false};
    s_text_int (&number, INT64_MIN);
    S_TEXT_LITERAL (&number, " ");
    s_text_int (&number, 0);
    S_TEXT_LITERAL (&number, " ");
    s_text_int (&number, INT64_MAX);
    assert (number.size == 42 &&
            memcmp (number.data, "-9223372036854775808 0 9223372036854775807", 42) == 0);
    free (number.data);
}

//  The single-reading scanner against jansson + gateway_sensor_parse.
//  Returns true if the scanner took text.
static bool
s_check_single (const char *text, size_t size, int64_t now)
{
    char *copy = (char *)malloc (size ? size : 1); //  unterminated: no read past it
    assert (copy);
    memcpy (copy, text, size);
    s_value_t token_value;
    s_item_t item;
    bool scanned = s_reading_scan (copy, size, &token_value, &item) == 0;
    if (scanned) {
        const char *token = NULL, *code = NULL, *message = NULL;
        gateway_sensor_input_t input;
        int status = s_token (&token_value, &token, &code, &message);
        if (status == 0)
            status = s_item_parse (&item, now, &input, &code, &message);
        json_error_t error;
        json_t *json = json_loadb (text, size, JSON_REJECT_DUPLICATES, &error);
        //  (A flat object: the nesting limit cannot refuse it.)
        if (!json || !json_is_object (json)) {
            fprintf (stderr, "\nsingle scanner took what jansson refuses: '%.*s'\n", (int)size,
                     text);
            assert (false);
        }
        const char *json_token = NULL, *json_code = NULL, *json_message = NULL;
        gateway_sensor_input_t json_input;
        int json_status =
            gateway_sensor_parse (json, now, &json_token, &json_input, &json_code, &json_message);
        bool same = status == json_status && (code == json_code || streq (code, json_code)) &&
                    (message == json_message || streq (message, json_message));
        if (same && status == 0)
            same = streq (token, json_token) && s_same_input (&input, &json_input);
        if (!same) {
            fprintf (stderr, "\nsingle scanner and jansson differ on '%.*s'\n", (int)size, text);
            assert (false);
        }
        json_decref (json);
    }
    free (copy);
    return scanned;
}

static void
s_single_scanner_test (int64_t now, bool verbose)
{
    const char *bodies[] = {
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID
        "\",\"voltage\":230.5,\"current\":0.45,\"power\":103.73}",
        " {\n\t\"power\" : 0 , \"current\" : 0.001 , \"voltage\" : -0 , \"deviceToken\" : \"tok\" ,"
        " \"portId\" : \"3F2C8A1E-9B7D-4C5E-8F10-1234567890AB\" , \"timestamp\" : "
        "\"2024-01-01T11:59:00.5+00:30\" , \"readingId\" : \"r 1~\" }\r\n",
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID
        "\",\"voltage\":-0.0,\"current\":123456789012345,\"power\":0.123456789012345,"
        "\"timestamp\":1704110400000,\"readingId\":null}",
        "{\"deviceToken\":null,\"portId\":null,\"voltage\":true,\"current\":false,\"power\":\"1\"}",
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID "\",\"voltage\":1000,\"current\":1000.0,"
        "\"power\":1000000.000001,\"timestamp\":\"2024-01-01T12:06:00Z\"}",
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID
        "\",\"voltage\":999999999999999999,\"current\":0.1,\"power\":0.2,"
        "\"timestamp\":-1704110400000}",
        "{}",
        "{\"deviceToken\":\"\",\"portId\":5,\"voltage\":1,\"current\":1,\"power\":1,"
        "\"timestamp\":false,\"readingId\":\"\"}",
        //  jansson's: exponent, escape, other member, repeated key, nesting.
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID "\",\"voltage\":1e2,\"current\":1,\"power\":1}",
        "{\"deviceToken\":\"t\\u0041\",\"portId\":\"" UUID
        "\",\"voltage\":1,\"current\":1,\"power\":1}",
        "{\"deviceToken\":\"t\",\"portId\":\"" UUID
        "\",\"voltage\":1,\"current\":1,\"power\":1,\"extra\":[1,{\"a\":2}]}",
        "{\"deviceToken\":\"t\",\"deviceToken\":\"u\",\"portId\":\"" UUID
        "\",\"voltage\":1,\"current\":1,\"power\":1}",
        "[{\"deviceToken\":\"t\"}]",
    };
    size_t body_count = sizeof bodies / sizeof bodies[0];
    size_t fast = 0, total = 0;
    for (size_t index = 0; index < body_count; index++) {
        bool scanned = s_check_single (bodies[index], strlen (bodies[index]), now);
        if (scanned != (index < 8))
            fprintf (stderr, "\nsingle body %zu scanned %d\n", index, scanned);
        assert (scanned == (index < 8));
    }
    uint64_t state = 0x2545F4914F6CDD1DULL;
    char text[4096];
    for (int round = 0; round < 200000; round++) {
        size_t size =
            s_mutate (bodies[round % body_count], text, sizeof text, 1 + round % 3, &state);
        fast += s_check_single (text, size, now);
        total++;
    }
    if (verbose)
        printf ("\nsingle scanner took %zu of %zu bodies, each as jansson reads it\n", fast, total);
    assert (fast > total / 25);
}

//  s_format_number against the snprintf + strtod it replaces, on every
//  kind of double; and that the readings devices send take the fast path.
static void
s_format_test (bool verbose)
{
    char fast[40], slow[40];
    size_t shortcut = 0, total = 0;
    uint64_t state = 0x853C49E6748FEA9BULL;
    for (int iteration = 0; iteration < 2000000; iteration++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double value;
        switch (iteration % 6) {
        case 0: { //  any bit pattern
            memcpy (&value, &state, sizeof value);
            break;
        }
        case 1: //  a uniform double in the accepted range
            value = (double)(state >> 11) / (double)(UINT64_C (1) << 53) * 1e6;
            break;
        case 2: { //  a decimal of 1..17 digits with 0..20 after the point
            int digits = 1 + (int)((state >> 3) % 17);
            uint64_t mantissa = (state >> 12) % (uint64_t)s_pow10[digits];
            value = (double)mantissa / s_pow10[(state >> 58) % 21];
            break;
        }
        case 3: //  rounded like the simulator: round(uniform, 2 or 3)
            value = round ((double)(state >> 11) / (double)(UINT64_C (1) << 53) * 1000 *
                           s_pow10[2 + state % 2]) /
                    s_pow10[2 + state % 2];
            break;
        case 4: //  arithmetic that leaves the short decimals: 0.1 + 0.2 and kin
            value = (double)((state >> 20) % 10000) / 100 + (double)((state >> 40) % 1000) / 1000;
            break;
        default: { //  one ulp around a short decimal
            double base = (double)((state >> 16) % 100000) / s_pow10[(state >> 50) % 8];
            value = nextafter (base, (state & 1) ? INFINITY : 0);
        }
        }
        s_format_number (value, false, fast);
        s_format_real_slow (value, slow);
        if (strcmp (fast, slow) != 0) {
            fprintf (stderr, "\nformat %a: '%s', snprintf '%s'\n", value, fast, slow);
            assert (false);
        }
        char probe[40];
        shortcut += s_format_short (value, probe);
        total++;
    }
    const double edges[] = {0.0,
                            -0.0,
                            1e-4,
                            nextafter (1e-4, 0),
                            nextafter (1e-4, 1),
                            9.9999e-5,
                            0.00012,
                            1e15,
                            nextafter (1e15, 0),
                            999999999999999.0,
                            99999999999999.9,
                            0.1 + 0.2,
                            1.0 / 3,
                            2.0 / 3,
                            1e6,
                            1000000.000001,
                            123456789012345.0,
                            0.123456789012345,
                            5e-324,
                            2.2250738585072014e-308,
                            1.7976931348623157e308,
                            INFINITY,
                            -INFINITY,
                            NAN,
                            -1.5,
                            -230.5,
                            230.5,
                            0.45,
                            103.73,
                            1e-5,
                            0.5,
                            4503599627370496.5,
                            9007199254740993.0};
    for (size_t index = 0; index < sizeof edges / sizeof edges[0]; index++) {
        s_format_number (edges[index], false, fast);
        s_format_real_slow (edges[index], slow);
        if (strcmp (fast, slow) != 0) {
            fprintf (stderr, "\nformat %a: '%s', snprintf '%s'\n", edges[index], fast, slow);
            assert (false);
        }
    }
    //  The guide's readings are the fast path's.
    assert (s_format_short (230.5, fast) && streq (fast, "230.5"));
    assert (s_format_short (0.45, fast) && streq (fast, "0.45"));
    assert (s_format_short (103.73, fast) && streq (fast, "103.73"));
    assert (s_format_short (0.001, fast) && streq (fast, "0.001"));
    assert (s_format_short (1000.0, fast) && streq (fast, "1000"));
    //  Integers as "%" PRId64.
    for (int iteration = 0; iteration < 100000; iteration++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int64_t number = (int64_t)(state >> (state % 64));
        if (iteration % 3 == 0)
            number = -number;
        double value = (double)number;
        if (value >= 9.2e18 || value <= -9.2e18)
            continue;
        s_format_number (value, true, fast);
        snprintf (slow, sizeof slow, "%" PRId64, (int64_t)value);
        assert (streq (fast, slow));
    }
    if (verbose)
        printf ("\nnumbers: %zu of %zu formatted without printf, all as printf\n", shortcut, total);
}

void
gateway_sensor_test (bool verbose)
{
    printf (" * gateway_sensor: ");
    int64_t now = 1704110400000LL; //  2024-01-01T12:00:00Z

    //  Time parsing.
    int64_t ms;
    assert (gateway_sensor_parse_time ("2024-01-01T12:00:00Z", &ms) == 0 && ms == now);
    assert (gateway_sensor_parse_time ("2024-01-01T12:00:00.123Z", &ms) == 0 && ms == now + 123);
    assert (gateway_sensor_parse_time ("2024-01-01T14:00:00+02:00", &ms) == 0 && ms == now);
    assert (gateway_sensor_parse_time ("2024-01-01T07:30:00-0430", &ms) == 0 && ms == now);
    assert (gateway_sensor_parse_time ("2024-01-01T12:00:00.123456", &ms) == 0 && ms == now + 123);
    assert (gateway_sensor_parse_time ("2024-02-29T00:00:00Z", &ms) == 0);
    assert (gateway_sensor_parse_time ("2023-02-29T00:00:00Z", &ms) == -1);
    assert (gateway_sensor_parse_time ("2024-13-01T00:00:00Z", &ms) == -1);
    assert (gateway_sensor_parse_time ("2024-01-01T24:00:00Z", &ms) == -1);
    assert (gateway_sensor_parse_time ("2024-01-01", &ms) == -1);
    assert (gateway_sensor_parse_time ("2024-01-01T12:00:00Zjunk", &ms) == -1);
    assert (gateway_sensor_parse_time ("yesterday", &ms) == -1);
    assert (gateway_sensor_parse_time ("", &ms) == -1);

    //  A batch's readings in timestamp order, equal ones in body order,
    //  each with its position; one already in order is left as it is.
    {
        enum { SORT_COUNT = 1000, SORT_ROUNDS = 200 };
        proto_reading_t *readings = (proto_reading_t *)calloc (SORT_COUNT, sizeof (*readings));
        size_t *positions = (size_t *)malloc (SORT_COUNT * sizeof (size_t));
        s_order_t *order = (s_order_t *)malloc (SORT_COUNT * sizeof (s_order_t));
        assert (readings && positions && order);
        int64_t shuffled_us = 0, ordered_us = 0;
        unsigned int seed = 12;
        for (int round = 0; round < SORT_ROUNDS; round++) {
            for (size_t index = 0; index < SORT_COUNT; index++) {
                //  Few distinct timestamps: many ties to keep in body order.
                readings[index].ts = now + (int64_t)(rand_r (&seed) % 300) * 1000;
                readings[index].power = (double)index;
                positions[index] = index + 7;
            }
            int64_t started = zclock_usecs ();
            s_batch_sort (readings, positions, SORT_COUNT, order);
            shuffled_us += zclock_usecs () - started;
            for (size_t index = 0; index < SORT_COUNT; index++) {
                assert (positions[index] == (size_t)readings[index].power + 7);
                if (index)
                    assert (readings[index].ts > readings[index - 1].ts ||
                            (readings[index].ts == readings[index - 1].ts &&
                             positions[index] > positions[index - 1]));
            }
            started = zclock_usecs ();
            s_batch_sort (readings, positions, SORT_COUNT, order);
            ordered_us += zclock_usecs () - started;
            assert (positions[0] == (size_t)readings[0].power + 7);
        }
        if (verbose)
            printf ("\n    batch order, %d readings: %.1f us shuffled, %.2f us in order\n",
                    SORT_COUNT, (double)shuffled_us / SORT_ROUNDS,
                    (double)ordered_us / SORT_ROUNDS);
        free (readings);
        free (positions);
        free (order);
    }

    //  Bodies, table-driven: status 0 means accepted.
    const s_case_t cases[] = {
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":230.5,\"current\":0.45,\"power\":103.73}",
         0, NULL},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":230,\"current\":0,\"power\":0}",
         0, NULL},
        {"{\"portId\":\"" UUID "\",\"voltage\":230.5,\"current\":0.45,\"power\":103.73}", 400,
         "missing_field"},
        {"{\"deviceToken\":\"\",\"portId\":\"" UUID "\",\"voltage\":1,\"current\":1,\"power\":1}",
         400, "invalid_field"},
        {"{\"deviceToken\":5,\"portId\":\"" UUID "\",\"voltage\":1,\"current\":1,\"power\":1}", 400,
         "invalid_type"},
        {"{\"deviceToken\":\"t\",\"voltage\":1,\"current\":1,\"power\":1}", 400, "missing_field"},
        {"{\"deviceToken\":\"t\",\"portId\":12,\"voltage\":1,\"current\":1,\"power\":1}", 400,
         "invalid_type"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID "\",\"current\":1,\"power\":1}", 400,
         "missing_field"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":null,\"current\":1,\"power\":1}",
         400, "missing_field"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":\"230\",\"current\":1,\"power\":1}",
         400, "invalid_type"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":true,\"current\":1,\"power\":1}",
         400, "invalid_type"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID "\",\"voltage\":-1,\"current\":1,\"power\":1}",
         400, "out_of_range"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1000.5,\"current\":1,\"power\":1}",
         400, "out_of_range"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":-0.1,\"power\":1}",
         400, "out_of_range"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID "\",\"voltage\":1,\"current\":1,\"power\":-5}",
         400, "out_of_range"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1e7}",
         400, "out_of_range"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":[1]}",
         400, "invalid_type"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":\"2024-01-01T11:59:00Z\"}",
         0, NULL},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":1704110400000}",
         0, NULL},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":\"2023-11-01T00:00:00Z\"}",
         400, "invalid_timestamp"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":\"2024-01-01T12:06:00Z\"}",
         400, "invalid_timestamp"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":1704110400}",
         400, "invalid_timestamp"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":1704110400000.5}",
         400, "invalid_timestamp"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"timestamp\":\"now\"}",
         400, "invalid_timestamp"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"readingId\":\"r-1\"}",
         0, NULL},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"readingId\":\"\"}",
         400, "invalid_field"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"readingId\":\"a\\nb\"}",
         400, "invalid_field"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"readingId\":7}",
         400, "invalid_field"},
        {"{\"deviceToken\":\"t\",\"portId\":\"" UUID
         "\",\"voltage\":1,\"current\":1,\"power\":1,\"readingId\":"
         "\"01234567890123456789012345678901234567890123456789012345678901234\"}",
         400, "invalid_field"},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++)
        s_check_parse (cases[index].body, now, cases[index].status, cases[index].code);

    //  A 201-character token is refused; the uuid is lower-cased; a
    //  non-uuid portId parses (it is a 404 later, not a 400).
    char text[512];
    char long_token[202];
    memset (long_token, 'a', 201);
    long_token[201] = 0;
    snprintf (text, sizeof text,
              "{\"deviceToken\":\"%s\",\"portId\":\"x\",\"voltage\":1,\"current\":1,\"power\":1}",
              long_token);
    s_check_parse (text, now, 400, "invalid_field");
    json_t *body =
        json_loads ("{\"deviceToken\":\"t\",\"portId\":\"3F2C8A1E-9B7D-4C5E-8F10-1234567890AB\","
                    "\"voltage\":230,\"current\":0.45,\"power\":103.73,\"readingId\":\"k1\"}",
                    0, NULL);
    const char *token, *code, *message;
    gateway_sensor_input_t input;
    assert (gateway_sensor_parse (body, now, &token, &input, &code, &message) == 0);
    assert (streq (input.port, UUID));
    assert (streq (token, "t"));
    assert (streq (input.key, "k1"));
    assert (input.voltage_integer && !input.current_integer);
    assert (!input.has_ts);
    json_decref (body);
    body = json_loads (
        "{\"deviceToken\":\"t\",\"portId\":\"not-a-uuid\",\"voltage\":1,\"current\":1,\"power\":1}",
        0, NULL);
    assert (gateway_sensor_parse (body, now, &token, &input, &code, &message) == 0);
    assert (input.port[0] == 0);
    json_decref (body);

    char number[40];
    s_format_number (103.73, false, number);
    assert (streq (number, "103.73"));
    s_format_number (0.45, false, number);
    assert (streq (number, "0.45"));
    s_format_number (0.1 + 0.2, false, number);
    assert (strtod (number, NULL) == 0.1 + 0.2);
    s_format_number (230, true, number);
    assert (streq (number, "230"));

    s_scanner_test (now, verbose);
    s_answer_test ();
    s_single_scanner_test (now, verbose);
    s_format_test (verbose);

    //  End to end through civetweb, with a fake detector+store.
    mg_init_library (0);
    zsock_t *pub = zsock_new (ZMQ_PUB);
    zsock_set_sndhwm (pub, 10000);
    zsock_set_linger (pub, 0);
    int rc = zsock_bind (pub, "tcp://127.0.0.1:6131");
    assert (rc == 6131);
    gateway_pipeline_options_t options = {.gateway_id = "gwsensor",
                                          .reading_endpoint = "tcp://127.0.0.1:6130",
                                          .ack_endpoint = "tcp://127.0.0.1:6131",
                                          .partitions = 1,
                                          .ack_timeout_ms = 500};
    gateway_t gateway;
    memset (&gateway, 0, sizeof gateway);
    gateway.pipeline = gateway_pipeline_new (&options);
    assert (gateway.pipeline);
    gateway.cache = gateway_cache_new (NULL);
    uint8_t hash[32];
    s_hash_token ("secret-token", hash);
    gateway_cache_put_device (gateway.cache, hash, 11, 22, 0);
    uint8_t other_hash[32];
    s_hash_token ("other-user-token", other_hash);
    gateway_cache_put_device (gateway.cache, other_hash, 12, 23, 0);
    gateway_port_t port = {.user = 22, .device = 11};
    port.settings.off_watts = 0.5f;
    port.settings.standby_watts = 15.0f;
    gateway_cache_put_port (gateway.cache, UUID, &port);

    char listening[32];
    snprintf (listening, sizeof listening, "127.0.0.1:%d", TEST_HTTP_PORT);
    const char *http_options[] = {"listening_ports",    listening, "num_threads", "4",
                                  "request_timeout_ms", "2000",    NULL};
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    gateway.http = mg_start (&callbacks, NULL, http_options);
    assert (gateway.http);
    gateway_sensor_register (&gateway);

    char reply[8192];
    const char *good = "{\"deviceToken\":\"secret-token\",\"portId\":\"" UUID "\","
                       "\"voltage\":230.5,\"current\":0.45,\"power\":103.73}";
    //  No detector yet: 503 at once, with Retry-After.
    int status = s_post ("/api/sensor/reading", good, reply, sizeof reply);
    assert (status == 503 && s_retry_after);
    assert (strstr (reply, "\"unavailable\""));

    s_fake_t fake = {
        .pull = zsock_new (ZMQ_PULL), .pub = pub, .acks = 11, .status = PROTO_STATUS_PHANTOM};
    zsock_set_rcvhwm (fake.pull, 10000);
    zsock_set_linger (fake.pull, 0);
    zsock_connect (fake.pull, "tcp://127.0.0.1:6130");
    for (int wait = 0; wait < 300 && (gateway_pipeline_peers (gateway.pipeline, 0) == 0 ||
                                      !gateway_pipeline_store_connected (gateway.pipeline));
         wait++)
        zclock_sleep (10);
    //  SUB connected is not yet subscribed (ZeroMQ's slow joiner): acks
    //  for nobody are published until one arrives, so no test ack is lost.
    zchunk_t *metrics = zchunk_new (NULL, 0);
    proto_buffer_t warm;
    proto_buffer_init (&warm);
    proto_ack_t nobody = {.request = 0};
    proto_acks_encode (&nobody, 1, &warm);
    for (int wait = 0; wait < 300; wait++) {
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "ack.gwsensor");
        zmsg_addmem (msg, warm.data, warm.size);
        zmsg_send (&msg, pub);
        zclock_sleep (10);
        zchunk_set (metrics, NULL, 0);
        gateway_pipeline_metrics (gateway.pipeline, metrics);
        zchunk_extend (metrics, "", 1);
        if (!strstr ((char *)zchunk_data (metrics), "phantom_gateway_late_acks_total 0\n"))
            break;
    }
    proto_buffer_release (&warm);
    zchunk_destroy (&metrics);
    pthread_t thread;
    pthread_create (&thread, NULL, s_fake_thread, &fake);

    status = s_post ("/api/sensor/reading", good, reply, sizeof reply);
    if (verbose)
        printf ("\n%d %s\n", status, reply);
    assert (status == 201 && !s_retry_after);
    assert (strstr (reply, "{\"success\":true,\"message\":\"Sensor reading created successfully\","
                           "\"data\":{\"reading\":{\"id\":1000,\"voltage\":230.5,\"current\":0.45,"
                           "\"power\":103.73,\"timestamp\":\""));
    assert (strstr (reply, "\"phantomDetected\":true,\"portStatus\":\"phantom\"}}"));
    //  A body the scanner leaves to jansson (another member, an escape):
    //  the same answer.
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"secret-\\u0074oken\",\"portId\":\"" UUID "\","
                     "\"voltage\":230.5,\"current\":45e-2,\"power\":103.73,\"note\":[1]}",
                     reply, sizeof reply);
    assert (status == 201);
    assert (strstr (reply, "{\"success\":true,\"message\":\"Sensor reading created successfully\","
                           "\"data\":{\"reading\":{\"id\":1001,\"voltage\":230.5,\"current\":0.45,"
                           "\"power\":103.73,\"timestamp\":\""));

    //  Wrong token, other user's token, unknown port, bad body, wrong method.
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"nope\",\"portId\":\"" UUID "\","
                     "\"voltage\":1,\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 401 && strstr (reply, "\"invalid_token\"") &&
            strstr (reply, "Invalid device token"));
    //  A revoked token is answered exactly like one that never existed: it
    //  is simply absent from the cache, the same SHA-256 and miss.
    char wrong_reply[sizeof reply];
    snprintf (wrong_reply, sizeof wrong_reply, "%s", reply);
    uint8_t revoked_hash[32], rotated_hash[32];
    s_hash_token ("revoked-token", revoked_hash);
    s_hash_token ("rotated-token", rotated_hash);
    gateway_cache_put_device (gateway.cache, revoked_hash, 14, 22, 0);
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"revoked-token\",\"portId\":\"" UUID "\","
                     "\"voltage\":1,\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 201);
    gateway_cache_put_device (gateway.cache, rotated_hash, 14, 22, 0); //  revokes the old one
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"revoked-token\",\"portId\":\"" UUID "\","
                     "\"voltage\":1,\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 401 && streq (reply, wrong_reply));

    //  Token guessing: after the burst of failures an address gets 429 with
    //  Retry-After for every token that matches nothing; a valid token from
    //  the same address (every sensor behind one NAT or proxy) still gets
    //  its 201, and failed logins are another budget.
    gateway_http_rate_limit_configure (GATEWAY_RATE_TOKEN, 3, 3600);
    const char *guess = "{\"deviceToken\":\"guess\",\"portId\":\"" UUID "\","
                        "\"voltage\":1,\"current\":1,\"power\":1}";
    for (int attempt = 0; attempt < 3; attempt++)
        assert (s_post ("/api/sensor/reading", guess, reply, sizeof reply) == 401);
    status = s_post ("/api/sensor/reading", guess, reply, sizeof reply);
    assert (status == 429 && s_retry_after && strstr (reply, "\"rate_limited\""));
    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"guess\",\"readings\":[{}]}", reply,
                     sizeof reply);
    assert (status == 429);
    assert (s_post ("/api/sensor/reading", good, reply, sizeof reply) == 201);
    status = s_post ("/api/sensor/readings",
                     "{\"deviceToken\":\"secret-token\",\"readings\":[{\"portId\":\"" UUID "\","
                     "\"voltage\":1,\"current\":1,\"power\":1}]}",
                     reply, sizeof reply);
    assert (status == 200 && strstr (reply, "\"accepted\":1"));
    assert (!gateway_http_rate_limited (GATEWAY_RATE_LOGIN, "127.0.0.1", NULL));
    gateway_http_rate_limit_configure (GATEWAY_RATE_TOKEN, GATEWAY_RATE_TOKEN_BURST,
                                       GATEWAY_RATE_TOKEN_PER_HOUR);
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"other-user-token\",\"portId\":\"" UUID "\","
                     "\"voltage\":1,\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 404 && strstr (reply, "Port not found"));
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"secret-token\",\"portId\":\"nope\","
                     "\"voltage\":1,\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 404);
    status = s_post ("/api/sensor/reading",
                     "{\"deviceToken\":\"secret-token\",\"portId\":\"" UUID "\","
                     "\"voltage\":\"1\",\"current\":1,\"power\":1}",
                     reply, sizeof reply);
    assert (status == 400 && strstr (reply, "voltage must be a number"));
    char big[GATEWAY_SENSOR_BODY_MAX + 64];
    memset (big, ' ', sizeof big - 1);
    big[0] = '{';
    big[sizeof big - 2] = '}';
    big[sizeof big - 1] = 0;
    status = s_post ("/api/sensor/reading", big, reply, sizeof reply);
    assert (status == 413);

    //  Batch: two good, one bad, one foreign port.
    const char *batch = "{\"deviceToken\":\"secret-token\",\"readings\":["
                        "{\"portId\":\"" UUID "\",\"voltage\":230,\"current\":0.1,\"power\":2},"
                        "{\"portId\":\"" UUID "\",\"voltage\":-1,\"current\":0.1,\"power\":2},"
                        "{\"portId\":\"00000000-0000-4000-8000-000000000000\",\"voltage\":1,"
                        "\"current\":1,\"power\":1},"
                        "{\"portId\":\"" UUID "\",\"voltage\":231,\"current\":0.1,\"power\":2}]}";
    status = s_post ("/api/sensor/readings", batch, reply, sizeof reply);
    if (verbose)
        printf ("%d %s\n", status, reply);
    assert (status == 200);
    body = json_loads (reply, 0, NULL);
    assert (body);
    json_t *data = json_object_get (body, "data");
    assert (json_integer_value (json_object_get (data, "accepted")) == 2);
    assert (json_integer_value (json_object_get (data, "rejected")) == 2);
    json_t *results = json_object_get (data, "results");
    assert (json_array_size (results) == 4);
    assert (json_integer_value (json_object_get (json_array_get (results, 0), "status")) == 201);
    assert (json_integer_value (json_object_get (json_array_get (results, 1), "status")) == 400);
    assert (json_integer_value (json_object_get (json_array_get (results, 2), "status")) == 404);
    assert (json_integer_value (json_object_get (json_array_get (results, 3), "status")) == 201);
    assert (json_integer_value (json_object_get (json_array_get (results, 3), "index")) == 3);
    json_decref (body);
    //  A device's buffer uploaded shuffled (and a bad item among it): the
    //  readings reach the detector oldest first, each answer stays at its
    //  own index. The fake numbers its acks in arrival order.
    int64_t wall = gateway_http_now_ms ();
    const int64_t back[] = {2000, 4000, 0, 1000, 3000};
    char shuffled[1024];
    snprintf (shuffled, sizeof shuffled,
              "{\"deviceToken\":\"secret-token\",\"readings\":["
              "{\"portId\":\"" UUID "\",\"voltage\":230,\"current\":0.1,\"power\":2,"
              "\"timestamp\":%" PRId64 "},"
              "{\"portId\":\"" UUID "\",\"voltage\":230,\"current\":0.1,\"power\":2,"
              "\"timestamp\":%" PRId64 "},"
              "{\"portId\":\"" UUID "\",\"voltage\":-1,\"current\":0.1,\"power\":2,"
              "\"timestamp\":%" PRId64 "},"
              "{\"portId\":\"" UUID "\",\"voltage\":230,\"current\":0.1,\"power\":2,"
              "\"timestamp\":%" PRId64 "},"
              "{\"portId\":\"" UUID "\",\"voltage\":230,\"current\":0.1,\"power\":2,"
              "\"timestamp\":%" PRId64 "}]}",
              wall - back[0], wall - back[1], wall - back[2], wall - back[3], wall - back[4]);
    status = s_post ("/api/sensor/readings", shuffled, reply, sizeof reply);
    assert (status == 200);
    body = json_loads (reply, 0, NULL);
    assert (body);
    results = json_object_get (json_object_get (body, "data"), "results");
    assert (json_array_size (results) == 5);
    //  Oldest first: 4000 ms back, then 3000, 2000, 1000; 0 was refused.
    const int expected_order[] = {2, 0, -1, 3, 1};
    json_int_t first_id = 0;
    for (size_t index = 0; index < 5; index++) {
        json_t *result = json_array_get (results, index);
        assert (json_integer_value (json_object_get (result, "index")) == (json_int_t)index);
        if (expected_order[index] < 0) {
            assert (json_integer_value (json_object_get (result, "status")) == 400);
            continue;
        }
        assert (json_integer_value (json_object_get (result, "status")) == 201);
        int64_t ts;
        assert (gateway_sensor_parse_time (
                    json_string_value (json_object_get (result, "timestamp")), &ts) == 0);
        assert (ts == wall - back[index]);
        if (expected_order[index] == 0)
            first_id = json_integer_value (json_object_get (result, "id"));
    }
    for (size_t index = 0; index < 5; index++)
        if (expected_order[index] >= 0)
            assert (json_integer_value (json_object_get (json_array_get (results, index), "id")) ==
                    first_id + expected_order[index]);
    json_decref (body);

    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"bad\",\"readings\":[{}]}", reply,
                     sizeof reply);
    assert (status == 401);
    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"secret-token\",\"readings\":[]}",
                     reply, sizeof reply);
    assert (status == 400);

    //  The fake acked 11 and stopped: now no ack comes, 504 after 500 ms.
    pthread_join (thread, NULL);
    status = s_post ("/api/sensor/reading", good, reply, sizeof reply);
    assert (status == 504 && s_retry_after && strstr (reply, "\"ack_timeout\""));

    mg_stop (gateway.http);
    zsock_destroy (&fake.pull);
    gateway_pipeline_destroy (&gateway.pipeline);
    gateway_cache_destroy (&gateway.cache);
    zsock_destroy (&pub);
    printf ("OK\n");
}
