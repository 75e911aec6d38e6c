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

static int
s_number (json_t *object, const s_field_t *field, double *value, bool *integer, const char **code,
          const char **message)
{
    json_t *member = json_object_get (object, field->name);
    if (!member || json_is_null (member))
        return s_fail (code, message, "missing_field", field->missing);
    if (!json_is_number (member))
        return s_fail (code, message, "invalid_type", field->not_number);
    *integer = json_is_integer (member);
    *value = json_number_value (member);
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
        char c = (char)tolower ((unsigned char)text[index]);
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

int
gateway_sensor_parse_reading (json_t *object, int64_t now_ms, gateway_sensor_input_t *out,
                              const char **code, const char **message)
{
    memset (out, 0, sizeof *out);
    if (!json_is_object (object))
        return s_fail (code, message, "invalid_type", "reading must be an object");
    json_t *port = json_object_get (object, "portId");
    if (!port || json_is_null (port))
        return s_fail (code, message, "missing_field", "portId is required");
    if (!json_is_string (port))
        return s_fail (code, message, "invalid_type", "portId must be a string");
    s_canonical_uuid (json_string_value (port), out->port);

    int rc = s_number (object, &s_voltage, &out->voltage, &out->voltage_integer, code, message);
    if (rc == 0)
        rc = s_number (object, &s_current, &out->current, &out->current_integer, code, message);
    if (rc == 0)
        rc = s_number (object, &s_power, &out->power, &out->power_integer, code, message);
    if (rc)
        return rc;

    json_t *timestamp = json_object_get (object, "timestamp");
    if (timestamp && !json_is_null (timestamp)) {
        if (json_is_integer (timestamp))
            out->ts = (int64_t)json_integer_value (timestamp);
        else if (json_is_string (timestamp)) {
            if (gateway_sensor_parse_time (json_string_value (timestamp), &out->ts) != 0)
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
    json_t *key = json_object_get (object, "readingId");
    if (key && !json_is_null (key)) {
        if (!json_is_string (key) || !s_valid_key (json_string_value (key)))
            return s_fail (code, message, "invalid_field",
                           "readingId must be 1 to 64 printable ASCII characters");
        snprintf (out->key, sizeof out->key, "%s", json_string_value (key));
    }
    return 0;
}

//  deviceToken: a string of 1..200 characters.
static int
s_token (json_t *body, const char **token, const char **code, const char **message)
{
    json_t *member = json_object_get (body, "deviceToken");
    if (!member || json_is_null (member))
        return s_fail (code, message, "missing_field", "deviceToken is required");
    if (!json_is_string (member))
        return s_fail (code, message, "invalid_type", "deviceToken must be a string");
    size_t length = json_string_length (member);
    if (length < 1 || length > TOKEN_MAX)
        return s_fail (code, message, "invalid_field", "deviceToken must be 1 to 200 characters");
    *token = json_string_value (member);
    return 0;
}

int
gateway_sensor_parse (json_t *body, int64_t now_ms, const char **token, gateway_sensor_input_t *out,
                      const char **code, const char **message)
{
    int rc = s_token (body, token, code, message);
    if (rc == 0)
        rc = gateway_sensor_parse_reading (body, now_ms, out, code, message);
    return rc;
}

//  --------------------------------------------------------------------------
//  Writes a number as the device sent it: integers as integers, reals in
//  the shortest of %.15g / %.17g that reads back the same double.
static void
s_format_number (double value, bool integer, char out[40])
{
    if (integer) {
        snprintf (out, 40, "%" PRId64, (int64_t)value);
        return;
    }
    snprintf (out, 40, "%.15g", value);
    if (strtod (out, NULL) != value)
        snprintf (out, 40, "%.17g", value);
    //  "230" is a valid JSON number; keep it as the device's real if it was one.
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

static int
s_handle_reading (struct mg_connection *conn, gateway_t *gateway)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info || strcmp (info->request_method, "POST") != 0)
        return s_method_not_allowed (conn);
    //  An address that guessed tokens too often waits, before any lookup.
    const char *ip = gateway_http_client_ip (conn);
    int retry_after;
    if (gateway_http_rate_limited (ip, &retry_after))
        return gateway_http_send_rate_limited (conn, retry_after);
    int status;
    json_t *body = gateway_http_read_json_status (conn, GATEWAY_SENSOR_BODY_MAX, &status);
    if (!body)
        return status;
    int64_t now = gateway_http_now_ms ();
    const char *token = NULL, *code = NULL, *message = NULL;
    gateway_sensor_input_t input;
    status = gateway_sensor_parse (body, now, &token, &input, &code, &message);
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
            gateway_http_rate_limit_hit (ip);
            status = 401;
            code = "invalid_token";
            message = "Invalid device token";
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

    char voltage[40], current[40], power[40], timestamp[32];
    s_format_number (input.voltage, input.voltage_integer, voltage);
    s_format_number (input.current, input.current_integer, current);
    s_format_number (input.power, input.power_integer, power);
    gateway_http_iso8601 (ack.ts, timestamp);
    char text[512];
    int size = snprintf (
        text, sizeof text,
        "{\"success\":true,\"message\":\"Sensor reading created successfully\","
        "\"data\":{\"reading\":{\"id\":%" PRId64 ",\"voltage\":%s,\"current\":%s,\"power\":%s,"
        "\"timestamp\":\"%s\"},\"phantomDetected\":%s,\"portStatus\":\"%s\"}}",
        ack.id, voltage, current, power, timestamp,
        ack.status == PROTO_STATUS_PHANTOM ? "true" : "false", proto_status_name (ack.status));
    assert (size > 0 && (size_t)size < sizeof text);
    return gateway_http_send (conn, 201, "application/json", NULL, text, (size_t)size);
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
static json_t *
s_item_error (size_t index, int status, const char *code, const char *message)
{
    return json_pack ("{s:I, s:i, s:{s:s, s:s}}", "index", (json_int_t)index, "status", status,
                      "error", "code", code, "message", message);
}

static int
s_handle_batch (struct mg_connection *conn, gateway_t *gateway)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info || strcmp (info->request_method, "POST") != 0)
        return s_method_not_allowed (conn);
    const char *ip = gateway_http_client_ip (conn);
    int retry_after;
    if (gateway_http_rate_limited (ip, &retry_after))
        return gateway_http_send_rate_limited (conn, retry_after);
    int status;
    json_t *body = gateway_http_read_json_status (conn, BATCH_BODY_MAX, &status);
    if (!body)
        return status;
    const char *token = NULL, *code = NULL, *message = NULL;
    status = s_token (body, &token, &code, &message);
    json_t *items = json_object_get (body, "readings");
    if (status == 0 && (!json_is_array (items) || json_array_size (items) < 1 ||
                        json_array_size (items) > BATCH_MAX))
        status = s_fail (&code, &message, "invalid_field",
                         "readings must be an array of 1 to 1000 readings");
    gateway_device_t device;
    if (status == 0) {
        uint8_t hash[32];
        s_hash_token (token, hash);
        if (!gateway_cache_device (gateway->cache, hash, &device)) {
            gateway_http_rate_limit_hit (ip);
            status = 401;
            code = "invalid_token";
            message = "Invalid device token";
        }
    }
    if (status) {
        json_decref (body);
        return gateway_http_send_error (conn, status, code, message, 0);
    }
    int64_t now = gateway_http_now_ms ();
    size_t count = json_array_size (items);
    json_t **results = (json_t **)calloc (count, sizeof (json_t *));
    proto_reading_t *readings = (proto_reading_t *)calloc (count, sizeof (proto_reading_t));
    size_t *positions = (size_t *)calloc (count, sizeof (size_t));
    proto_ack_t *acks = (proto_ack_t *)calloc (count, sizeof (proto_ack_t));
    int *outcomes = (int *)calloc (count, sizeof (int));
    json_t *data = json_object ();
    json_t *list = json_array ();
    if (!results || !readings || !positions || !acks || !outcomes || !data || !list) {
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
        goto done;
    }
    size_t submitted = 0;
    for (size_t index = 0; index < count; index++) {
        gateway_sensor_input_t input;
        gateway_port_t port;
        int rc = gateway_sensor_parse_reading (json_array_get (items, index), now, &input, &code,
                                               &message);
        if (rc)
            results[index] = s_item_error (index, rc, code, message);
        else if (!input.port[0] || !gateway_cache_port (gateway->cache, input.port, &port) ||
                 port.user != device.user)
            results[index] = s_item_error (index, 404, "port_not_found", "Port not found");
        else {
            s_reading (&readings[submitted], &input, &device, &port, now);
            positions[submitted++] = index;
        }
    }
    gateway_pipeline_submit (gateway->pipeline, readings, submitted, acks, outcomes);
    for (size_t index = 0; index < submitted; index++) {
        int item_status = s_outcome_status (outcomes[index], &acks[index], &code, &message);
        size_t position = positions[index];
        if (item_status == 201) {
            gateway_live_reading (gateway->live, readings[index].user, readings[index].port,
                                  acks[index].ts, readings[index].power, acks[index].status);
            char timestamp[32];
            gateway_http_iso8601 (acks[index].ts, timestamp);
            results[position] =
                json_pack ("{s:I, s:i, s:I, s:s, s:s, s:b}", "index", (json_int_t)position,
                           "status", 201, "id", (json_int_t)acks[index].id, "timestamp", timestamp,
                           "portStatus", proto_status_name (acks[index].status), "phantomDetected",
                           acks[index].status == PROTO_STATUS_PHANTOM);
        } else
            results[position] = s_item_error (position, item_status, code, message);
    }
    size_t accepted = 0;
    for (size_t index = 0; index < count; index++) {
        json_t *status_value = json_object_get (results[index], "status");
        if (json_integer_value (status_value) == 201)
            accepted++;
        gateway_pipeline_count_status (gateway->pipeline, (int)json_integer_value (status_value));
        json_array_append_new (list, results[index]);
        results[index] = NULL;
    }
    json_object_set_new (data, "results", list);
    list = NULL;
    json_object_set_new (data, "accepted", json_integer ((json_int_t)accepted));
    json_object_set_new (data, "rejected", json_integer ((json_int_t)(count - accepted)));
    status = gateway_http_send_data (conn, 200, NULL, data);
    data = NULL;
done:
    if (results)
        for (size_t index = 0; index < count; index++)
            json_decref (results[index]);
    free (results);
    free (readings);
    free (positions);
    free (acks);
    free (outcomes);
    json_decref (data);
    json_decref (list);
    json_decref (body);
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
    for (int count = 0; count < fake->acks; count++) {
        if (zpoller_wait (poller, 3000) != fake->pull)
            break;
        zframe_t *frame = zframe_recv (fake->pull);
        proto_reading_t reading;
        int rc = proto_reading_decode (zframe_data (frame), zframe_size (frame), &reading);
        zframe_destroy (&frame);
        assert (rc == 0);
        proto_ack_t ack = {.request = reading.request,
                           .code = PROTO_ACK_OK,
                           .id = 1000 + count,
                           .ts = reading.ts,
                           .status = fake->status};
        proto_acks_encode (&ack, 1, &buffer);
        zmsg_t *msg = zmsg_new ();
        zmsg_addstr (msg, "ack.gwsensor");
        zmsg_addmem (msg, buffer.data, buffer.size);
        zmsg_send (&msg, fake->pub);
    }
    proto_buffer_release (&buffer);
    zpoller_destroy (&poller);
    return NULL;
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
        .pull = zsock_new (ZMQ_PULL), .pub = pub, .acks = 4, .status = PROTO_STATUS_PHANTOM};
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
    //  Retry-After before any lookup, whatever token it sends next.
    gateway_http_rate_limit_configure (3, 60);
    const char *guess = "{\"deviceToken\":\"guess\",\"portId\":\"" UUID "\","
                        "\"voltage\":1,\"current\":1,\"power\":1}";
    for (int attempt = 0; attempt < 3; attempt++)
        assert (s_post ("/api/sensor/reading", guess, reply, sizeof reply) == 401);
    status = s_post ("/api/sensor/reading", guess, reply, sizeof reply);
    assert (status == 429 && s_retry_after && strstr (reply, "\"rate_limited\""));
    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"guess\",\"readings\":[{}]}", reply,
                     sizeof reply);
    assert (status == 429);
    assert (s_post ("/api/sensor/reading", good, reply, sizeof reply) == 429);
    gateway_http_rate_limit_configure (GATEWAY_RATE_BURST, GATEWAY_RATE_REFILL_PER_MINUTE);
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
    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"bad\",\"readings\":[{}]}", reply,
                     sizeof reply);
    assert (status == 401);
    status = s_post ("/api/sensor/readings", "{\"deviceToken\":\"secret-token\",\"readings\":[]}",
                     reply, sizeof reply);
    assert (status == 400);

    //  The fake acked 4 and stopped: now no ack comes, 504 after 500 ms.
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
