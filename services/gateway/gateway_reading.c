/*  =========================================================================
    gateway_reading - the sensor reading contract

    See gateway_reading.h. The table below is the contract: each member's
    JSON key, whether it is required, how a present value is checked and
    what is answered when it is not right. The checks run in its order,
    and the first failure is the answer.
    =========================================================================
*/
#include "gateway_reading.h"
#include "gateway_time.h"

#include <math.h>

typedef struct _s_member_t s_member_t;
//  Checks a present (not absent, not null) value into out: 0 or 400.
typedef int (s_check_fn) (const s_member_t *member, const gateway_value_t *value, int64_t now_ms,
                          gateway_reading_t *out, const char **code, const char **message);

struct _s_member_t {
    const char *name;         //  the JSON key
    size_t length;            //  its bytes
    bool required;            //  absent or null is "missing_field"
    s_check_fn *check;        //  checks a present value
    double max;               //  a number's range is 0..max
    size_t value;             //  a number: offset of its double in gateway_reading_t
    size_t integer;           //  a number: offset of its sent-as-integer flag
    const char *missing;      //  the message when required and absent
    const char *wrong_code;   //  the code of a value of the wrong type or form
    const char *wrong;        //  its message
    const char *range_code;   //  the code of a value out of range
    const char *out_of_range; //  its message
};

static s_check_fn s_check_port, s_check_number, s_check_time, s_check_key;

#define S_NUMBER(field, max, range)                                                                \
    {                                                                                              \
#field, sizeof #field - 1, true, s_check_number, max, offsetof(gateway_reading_t, field),  \
            offsetof(gateway_reading_t, field##_integer), #field " is required", "invalid_type",   \
            #field " must be a number", "out_of_range", #field " must be between 0 and " range     \
    }

static const s_member_t s_members[GATEWAY_READING_MEMBERS] = {
    [GATEWAY_READING_PORT] = {"portId", 6, true, s_check_port, 0, 0, 0, "portId is required",
                              "invalid_type", "portId must be a string", NULL, NULL},
    [GATEWAY_READING_VOLTAGE] = S_NUMBER (voltage, 1000, "1000"),
    [GATEWAY_READING_CURRENT] = S_NUMBER (current, 1000, "1000"),
    [GATEWAY_READING_POWER] = S_NUMBER (power, 1e6, "1000000"),
    [GATEWAY_READING_TIMESTAMP] = {"timestamp", 9, false, s_check_time, 0, 0, 0, NULL,
                                   "invalid_timestamp",
                                   "timestamp must be ISO-8601 or epoch milliseconds",
                                   "invalid_timestamp",
                                   "timestamp must be within the last 30 days and at most 5 "
                                   "minutes ahead"},
    [GATEWAY_READING_KEY] = {"readingId", 9, false, s_check_key, 0, 0, 0, NULL, "invalid_field",
                             "readingId must be 1 to 64 printable ASCII characters", NULL, NULL},
};

static int
s_fail (const char **code, const char **message, const char *the_code, const char *the_message)
{
    *code = the_code;
    *message = the_message;
    return 400;
}

int
gateway_reading_member (const char *key, size_t length)
{
    for (int index = 0; index < GATEWAY_READING_MEMBERS; index++)
        if (s_members[index].length == length && memcmp (s_members[index].name, key, length) == 0)
            return index;
    return -1;
}

//  --------------------------------------------------------------------------
//  The jansson adapter

void
gateway_reading_value_json (json_t *value, gateway_value_t *out)
{
    memset (out, 0, sizeof *out);
    if (!value)
        out->kind = GATEWAY_VALUE_ABSENT;
    else if (json_is_null (value))
        out->kind = GATEWAY_VALUE_NULL;
    else if (json_is_string (value)) {
        out->kind = GATEWAY_VALUE_STRING;
        out->text = json_string_value (value);
        size_t length = json_string_length (value);
        //  Bodies are at most 512 KiB; saturate anyway so a length check
        //  can never be fooled by a wrap.
        out->length = length > UINT32_MAX ? UINT32_MAX : (uint32_t)length;
    } else if (json_is_integer (value)) {
        out->kind = GATEWAY_VALUE_INTEGER;
        out->integer = json_integer_value (value);
    } else if (json_is_real (value)) {
        out->kind = GATEWAY_VALUE_REAL;
        out->real = json_real_value (value);
    } else
        out->kind = GATEWAY_VALUE_OTHER;
}

void
gateway_reading_item_json (json_t *object, gateway_reading_item_t *item)
{
    memset (item, 0, sizeof *item);
    item->object = json_is_object (object);
    if (!item->object)
        return;
    for (int index = 0; index < GATEWAY_READING_MEMBERS; index++)
        gateway_reading_value_json (json_object_get (object, s_members[index].name),
                                    &item->member[index]);
}

//  --------------------------------------------------------------------------
//  The checks

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

//  Any string: one that is not a uuid is a 404 later, not a 400.
static int
s_check_port (const s_member_t *member, const gateway_value_t *value, int64_t now_ms,
              gateway_reading_t *out, const char **code, const char **message)
{
    (void)now_ms;
    if (value->kind != GATEWAY_VALUE_STRING)
        return s_fail (code, message, member->wrong_code, member->wrong);
    s_canonical_uuid (value->text, out->port);
    return 0;
}

static int
s_check_number (const s_member_t *member, const gateway_value_t *value, int64_t now_ms,
                gateway_reading_t *out, const char **code, const char **message)
{
    (void)now_ms;
    if (value->kind != GATEWAY_VALUE_INTEGER && value->kind != GATEWAY_VALUE_REAL)
        return s_fail (code, message, member->wrong_code, member->wrong);
    bool integer = value->kind == GATEWAY_VALUE_INTEGER;
    //  As json_number_value: an integer is read as a double.
    double number = integer ? (double)value->integer : value->real;
    *(bool *)((char *)out + member->integer) = integer;
    *(double *)((char *)out + member->value) = number;
    if (!isfinite (number) || number < 0 || number > member->max)
        return s_fail (code, message, member->range_code, member->out_of_range);
    return 0;
}

//  Epoch milliseconds (an integer) or ISO-8601 text, within the skew window.
static int
s_check_time (const s_member_t *member, const gateway_value_t *value, int64_t now_ms,
              gateway_reading_t *out, const char **code, const char **message)
{
    if (value->kind == GATEWAY_VALUE_INTEGER)
        out->ts = (int64_t)value->integer;
    else if (value->kind != GATEWAY_VALUE_STRING || gateway_time_parse (value->text, &out->ts) != 0)
        return s_fail (code, message, member->wrong_code, member->wrong);
    if (!gateway_reading_time_valid (out->ts, now_ms))
        return s_fail (code, message, member->range_code, member->out_of_range);
    out->has_ts = true;
    return 0;
}

static int
s_check_key (const s_member_t *member, const gateway_value_t *value, int64_t now_ms,
             gateway_reading_t *out, const char **code, const char **message)
{
    (void)now_ms;
    if (value->kind != GATEWAY_VALUE_STRING || !gateway_reading_key_valid (value->text))
        return s_fail (code, message, member->wrong_code, member->wrong);
    snprintf (out->key, sizeof out->key, "%s", value->text);
    return 0;
}

int
gateway_reading_check (const gateway_reading_item_t *item, int64_t now_ms, gateway_reading_t *out,
                       const char **code, const char **message)
{
    memset (out, 0, sizeof *out);
    if (!item->object)
        return s_fail (code, message, "invalid_type", "reading must be an object");
    for (int index = 0; index < GATEWAY_READING_MEMBERS; index++) {
        const s_member_t *member = &s_members[index];
        const gateway_value_t *value = &item->member[index];
        if (value->kind == GATEWAY_VALUE_ABSENT || value->kind == GATEWAY_VALUE_NULL) {
            if (member->required)
                return s_fail (code, message, "missing_field", member->missing);
            continue;
        }
        int status = member->check (member, value, now_ms, out, code, message);
        if (status)
            return status;
    }
    return 0;
}

int
gateway_reading_check_token (const gateway_value_t *value, const char **token, const char **code,
                             const char **message)
{
    if (value->kind == GATEWAY_VALUE_ABSENT || value->kind == GATEWAY_VALUE_NULL)
        return s_fail (code, message, "missing_field", "deviceToken is required");
    if (value->kind != GATEWAY_VALUE_STRING)
        return s_fail (code, message, "invalid_type", "deviceToken must be a string");
    if (value->length < 1 || value->length > GATEWAY_READING_TOKEN_MAX)
        return s_fail (code, message, "invalid_field", "deviceToken must be 1 to 200 characters");
    *token = value->text;
    return 0;
}

int
gateway_reading_parse (json_t *object, int64_t now_ms, gateway_reading_t *out, const char **code,
                       const char **message)
{
    gateway_reading_item_t item;
    gateway_reading_item_json (object, &item);
    return gateway_reading_check (&item, now_ms, out, code, message);
}

int
gateway_reading_parse_body (json_t *body, int64_t now_ms, const char **token,
                            gateway_reading_t *out, const char **code, const char **message)
{
    gateway_value_t value;
    gateway_reading_value_json (json_object_get (body, "deviceToken"), &value);
    int status = gateway_reading_check_token (&value, token, code, message);
    if (status == 0)
        status = gateway_reading_parse (body, now_ms, out, code, message);
    return status;
}

bool
gateway_reading_in_range (gateway_reading_member_t member, double value)
{
    assert (s_members[member].check == s_check_number);
    return isfinite (value) && value >= 0 && value <= s_members[member].max;
}

bool
gateway_reading_time_valid (int64_t ts_ms, int64_t now_ms)
{
    return ts_ms >= now_ms - GATEWAY_READING_SKEW_PAST_MS &&
           ts_ms <= now_ms + GATEWAY_READING_SKEW_FUTURE_MS;
}

bool
gateway_reading_key_valid (const char *key)
{
    size_t length = strlen (key);
    if (length < 1 || length > PROTO_KEY_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (key[index] < 0x20 || key[index] > 0x7e)
            return false;
    return true;
}

void
gateway_reading_to_proto (const gateway_reading_t *self, const gateway_device_t *device,
                          const gateway_port_t *port, int64_t now_ms, proto_reading_t *out)
{
    memset (out, 0, sizeof *out);
    out->user = port->user;
    out->device = device->id;
    memcpy (out->port, self->port, sizeof out->port);
    out->ts = self->has_ts ? self->ts : now_ms;
    out->received = now_ms;
    out->voltage = self->voltage;
    out->current = self->current;
    out->power = self->power;
    memcpy (out->key, self->key, sizeof out->key);
    out->settings = port->settings;
}

//  --------------------------------------------------------------------------
//  A batch

int
gateway_reading_batch_reserve (gateway_reading_batch_t *self, size_t count)
{
    if (count <= self->capacity)
        return 0;
    size_t capacity = self->capacity ? self->capacity : 64;
    while (capacity < count)
        capacity *= 2;
    gateway_reading_item_t *items =
        (gateway_reading_item_t *)realloc (self->items, capacity * sizeof (gateway_reading_item_t));
    if (!items)
        return -1;
    self->items = items;
    self->capacity = capacity;
    return 0;
}

int
gateway_reading_batch_json (gateway_reading_batch_t *self, json_t *body)
{
    self->json = body;
    gateway_reading_value_json (json_object_get (body, "deviceToken"), &self->token);
    json_t *readings = json_object_get (body, "readings");
    self->array = json_is_array (readings);
    self->count = self->array ? json_array_size (readings) : 0;
    if (self->count < 1 || self->count > GATEWAY_READING_BATCH_MAX)
        return 0;
    if (gateway_reading_batch_reserve (self, self->count))
        return -1;
    for (size_t index = 0; index < self->count; index++)
        gateway_reading_item_json (json_array_get (readings, index), &self->items[index]);
    return 0;
}

void
gateway_reading_batch_reset (gateway_reading_batch_t *self)
{
    json_decref (self->json);
    self->json = NULL;
    memset (&self->token, 0, sizeof self->token);
    self->array = false;
    self->count = 0;
}

void
gateway_reading_batch_release (gateway_reading_batch_t *self)
{
    gateway_reading_batch_reset (self);
    free (self->items);
    self->items = NULL;
    self->capacity = 0;
}

int
gateway_reading_batch_check (const gateway_reading_batch_t *self, const char **token,
                             const char **code, const char **message)
{
    int status = gateway_reading_check_token (&self->token, token, code, message);
    if (status == 0 && (!self->array || self->count < 1 || self->count > GATEWAY_READING_BATCH_MAX))
        status = s_fail (code, message, "invalid_field",
                         "readings must be an array of 1 to 1000 readings");
    return status;
}

//  ==========================================================================
//  Self test: the contract, table-driven, through jansson. The scanner's
//  agreement with it is gateway_scanner's test.

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
    gateway_reading_t input;
    int rc = gateway_reading_parse_body (body, now, &token, &input, &code, &message);
    if (rc != status || (expected_code && (!code || strcmp (code, expected_code) != 0))) {
        fprintf (stderr, "\nparse '%s': got %d %s (%s), expected %d %s\n", text, rc,
                 code ? code : "-", message ? message : "-", status,
                 expected_code ? expected_code : "-");
        assert (false);
    }
    json_decref (body);
}

void
gateway_reading_test (bool verbose)
{
    printf (" * gateway_reading: ");
    int64_t now = 1704110400000LL; //  2024-01-01T12:00:00Z

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
    gateway_reading_t input;
    assert (gateway_reading_parse_body (body, now, &token, &input, &code, &message) == 0);
    assert (streq (input.port, UUID));
    assert (streq (token, "t"));
    assert (streq (input.key, "k1"));
    assert (input.voltage_integer && !input.current_integer);
    assert (!input.has_ts);
    json_decref (body);
    body = json_loads (
        "{\"deviceToken\":\"t\",\"portId\":\"not-a-uuid\",\"voltage\":1,\"current\":1,\"power\":1}",
        0, NULL);
    assert (gateway_reading_parse_body (body, now, &token, &input, &code, &message) == 0);
    assert (input.port[0] == 0);
    json_decref (body);

    //  Every member is found by its key, and nothing else is.
    for (int index = 0; index < GATEWAY_READING_MEMBERS; index++)
        assert (gateway_reading_member (s_members[index].name, strlen (s_members[index].name)) ==
                index);
    assert (gateway_reading_member ("deviceToken", 11) == -1);
    assert (gateway_reading_member ("power", 4) == -1);
    //  The checks other input formats use (Emoncms) are the table's.
    assert (gateway_reading_in_range (GATEWAY_READING_POWER, 1e6));
    assert (!gateway_reading_in_range (GATEWAY_READING_POWER, 1000000.000001));
    assert (!gateway_reading_in_range (GATEWAY_READING_VOLTAGE, 1000.5));
    assert (!gateway_reading_in_range (GATEWAY_READING_CURRENT, -0.1));
    assert (!gateway_reading_in_range (GATEWAY_READING_POWER, NAN));
    assert (gateway_reading_time_valid (now - GATEWAY_READING_SKEW_PAST_MS, now));
    assert (!gateway_reading_time_valid (now - GATEWAY_READING_SKEW_PAST_MS - 1, now));
    assert (gateway_reading_time_valid (now + GATEWAY_READING_SKEW_FUTURE_MS, now));
    assert (!gateway_reading_time_valid (now + GATEWAY_READING_SKEW_FUTURE_MS + 1, now));
    assert (gateway_reading_key_valid ("r-1") && !gateway_reading_key_valid ("") &&
            !gateway_reading_key_valid ("a\nb"));
    if (verbose)
        printf ("(verbose) ");
    printf ("OK\n");
}
