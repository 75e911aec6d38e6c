/*  =========================================================================
    gateway_scanner - the sensor routes' fast JSON reader

    See gateway_scanner.h. jansson's object per value, a malloc each and a
    strtod per number, was two thirds of the gateway's CPU at 500 readings
    per request (BENCH.md).
    =========================================================================
*/
#include "gateway_scanner.h"
#include "gateway_json.h"

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
s_scan_string (s_scan_t *scan, gateway_value_t *value)
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
    value->kind = GATEWAY_VALUE_STRING;
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
s_scan_number (s_scan_t *scan, gateway_value_t *value)
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
        double magnitude = (double)mantissa / gateway_json_pow10[fraction];
        value->kind = GATEWAY_VALUE_REAL;
        value->real = negative ? -magnitude : magnitude;
    } else {
        value->kind = GATEWAY_VALUE_INTEGER;
        value->integer = negative ? -(json_int_t)mantissa : (json_int_t)mantissa;
    }
    scan->cursor = cursor;
    return 0;
}

//  A string, number, true, false or null; 0, or -1 to give up.
static int
s_scan_scalar (s_scan_t *scan, gateway_value_t *value)
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
        value->kind = GATEWAY_VALUE_NULL;
        scan->cursor += 4;
    } else if (left >= 4 && memcmp (scan->cursor, "true", 4) == 0) {
        value->kind = GATEWAY_VALUE_OTHER;
        scan->cursor += 4;
    } else if (left >= 5 && memcmp (scan->cursor, "false", 5) == 0) {
        value->kind = GATEWAY_VALUE_OTHER;
        scan->cursor += 5;
    } else
        return -1;
    return 0;
}

//  The member of item a key names; NULL if it is none of ours.
//  One element of readings: an object of our members, or a scalar (which
//  the checks answer "reading must be an object"). token: where a
//  "deviceToken" member goes (the single-reading body), NULL: not one of
//  ours. 0, or -1 to give up.
static int
s_scan_item (s_scan_t *scan, gateway_reading_item_t *item, gateway_value_t *token)
{
    memset (item, 0, sizeof *item);
    if (!s_scan_at (scan, '{')) {
        gateway_value_t ignored;
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
        gateway_value_t key;
        if (s_scan_string (scan, &key))
            return -1;
        gateway_value_t *member = NULL;
        if (token && key.length == 11 && memcmp (key.text, "deviceToken", 11) == 0)
            member = token;
        else {
            int index = gateway_reading_member (key.text, key.length);
            if (index >= 0)
                member = &item->member[index];
        }
        //  Other members and repeated keys are jansson's to answer.
        if (!member || member->kind != GATEWAY_VALUE_ABSENT)
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

//  The readings array; 0, or -1 to give up.
static int
s_scan_readings (s_scan_t *scan, gateway_reading_batch_t *batch)
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
        if (batch->count == GATEWAY_READING_BATCH_MAX ||
            gateway_reading_batch_reserve (batch, batch->count + 1))
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

//  String values are NUL-terminated only once the whole body scanned.
static void
s_terminate (gateway_value_t *value)
{
    if (value->kind == GATEWAY_VALUE_STRING)
        ((char *)value->text)[value->length] = 0;
}

static void
s_terminate_item (gateway_reading_item_t *item)
{
    for (int index = 0; index < GATEWAY_READING_MEMBERS; index++)
        s_terminate (&item->member[index]);
}

int
gateway_scanner_batch (char *text, size_t size, gateway_reading_batch_t *batch)
{
    s_scan_t scan = {text, text + size};
    bool token_seen = false, readings_seen = false;
    if (s_scan_char (&scan, '{'))
        return -1;
    if (s_scan_at (&scan, '}'))
        scan.cursor++;
    else
        while (true) {
            gateway_value_t key;
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
                gateway_value_t scalar;
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
    for (size_t index = 0; index < batch->count; index++)
        s_terminate_item (&batch->items[index]);
    return 0;
}

int
gateway_scanner_reading (char *text, size_t size, gateway_value_t *token,
                         gateway_reading_item_t *item)
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
    s_terminate_item (item);
    return 0;
}

//  ==========================================================================
//  The scanner against jansson

//  What the checks say of one body.
typedef struct {
    int status; //  body-level (the token; the readings array)
    const char *code;
    const char *message;
    char token[GATEWAY_READING_TOKEN_MAX + 1];
    size_t count;               //  readings checked (1 for the single route)
    int *item_status;           //  per reading, count of them
    const char **item_code;     //  per reading
    const char **item_message;  //  per reading
    gateway_reading_t *reading; //  per reading
} s_verdict_t;

static int
s_verdict_new (s_verdict_t *verdict, size_t count)
{
    memset (verdict, 0, sizeof *verdict);
    size_t room = count ? count : 1;
    verdict->item_status = (int *)calloc (room, sizeof (int));
    verdict->item_code = (const char **)calloc (room, sizeof (const char *));
    verdict->item_message = (const char **)calloc (room, sizeof (const char *));
    verdict->reading = (gateway_reading_t *)calloc (room, sizeof (gateway_reading_t));
    return verdict->item_status && verdict->item_code && verdict->item_message && verdict->reading
               ? 0
               : -1;
}

static void
s_verdict_release (s_verdict_t *verdict)
{
    free (verdict->item_status);
    free (verdict->item_code);
    free (verdict->item_message);
    free (verdict->reading);
}

//  The batch route's checks on a batch as read.
static int
s_verdict_batch (const gateway_reading_batch_t *batch, int64_t now, s_verdict_t *verdict)
{
    if (s_verdict_new (verdict, batch->count))
        return -1;
    const char *token = NULL;
    verdict->status =
        gateway_reading_batch_check (batch, &token, &verdict->code, &verdict->message);
    if (verdict->status)
        return 0;
    snprintf (verdict->token, sizeof verdict->token, "%s", token);
    verdict->count = batch->count;
    for (size_t index = 0; index < batch->count; index++)
        verdict->item_status[index] =
            gateway_reading_check (&batch->items[index], now, &verdict->reading[index],
                                   &verdict->item_code[index], &verdict->item_message[index]);
    return 0;
}

//  The single route's checks on a body as read: the token, then the reading.
static int
s_verdict_single (const gateway_value_t *token_value, const gateway_reading_item_t *item,
                  int64_t now, s_verdict_t *verdict)
{
    if (s_verdict_new (verdict, 1))
        return -1;
    const char *token = NULL;
    verdict->status =
        gateway_reading_check_token (token_value, &token, &verdict->code, &verdict->message);
    if (verdict->status)
        return 0;
    snprintf (verdict->token, sizeof verdict->token, "%s", token);
    verdict->count = 1;
    verdict->item_status[0] = gateway_reading_check (
        item, now, &verdict->reading[0], &verdict->item_code[0], &verdict->item_message[0]);
    return 0;
}

static bool
s_same_text (const char *one, const char *two)
{
    return one == two || (one && two && streq (one, two));
}

static bool
s_same_reading (const gateway_reading_t *one, const gateway_reading_t *two)
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

//  true if both verdicts say the same; else the first difference on stderr.
static bool
s_same_verdict (const s_verdict_t *fast, const s_verdict_t *slow)
{
    if (fast->status != slow->status || !s_same_text (fast->code, slow->code) ||
        !s_same_text (fast->message, slow->message) || !streq (fast->token, slow->token) ||
        fast->count != slow->count) {
        fprintf (stderr, "\nbody: scanner %d %s, jansson %d %s (%zu / %zu readings)\n",
                 fast->status, fast->code ? fast->code : "-", slow->status,
                 slow->code ? slow->code : "-", fast->count, slow->count);
        return false;
    }
    for (size_t index = 0; index < fast->count; index++) {
        bool same = fast->item_status[index] == slow->item_status[index] &&
                    s_same_text (fast->item_code[index], slow->item_code[index]) &&
                    s_same_text (fast->item_message[index], slow->item_message[index]) &&
                    (fast->item_status[index] ||
                     s_same_reading (&fast->reading[index], &slow->reading[index]));
        if (!same) {
            fprintf (
                stderr, "\nreading %zu: scanner %d %s, jansson %d %s\n", index,
                fast->item_status[index], fast->item_code[index] ? fast->item_code[index] : "-",
                slow->item_status[index], slow->item_code[index] ? slow->item_code[index] : "-");
            return false;
        }
    }
    return true;
}

int
gateway_scanner_compare (const char *text, size_t size, bool batch, int64_t now_ms)
{
    //  An exact copy, unterminated: a read past its end is a sanitizer report.
    char *copy = (char *)malloc (size ? size : 1);
    if (!copy)
        return 0;
    memcpy (copy, text, size);
    s_verdict_t fast, slow;
    memset (&fast, 0, sizeof fast);
    memset (&slow, 0, sizeof slow);
    gateway_reading_batch_t read;
    memset (&read, 0, sizeof read);
    gateway_value_t token;
    gateway_reading_item_t item;
    int rc = 0;
    bool scanned = batch ? gateway_scanner_batch (copy, size, &read) == 0
                         : gateway_scanner_reading (copy, size, &token, &item) == 0;
    if (scanned) {
        rc = 1;
        if (batch ? s_verdict_batch (&read, now_ms, &fast)
                  : s_verdict_single (&token, &item, now_ms, &fast))
            rc = 0; //  out of memory: nothing compared
        //  As the routes read what the scanner leaves (gateway_http_parse_json).
        json_error_t error;
        json_t *json = json_loadb (text, size, JSON_REJECT_DUPLICATES, &error);
        if (rc == 1 && (!json || !json_is_object (json))) {
            fprintf (stderr, "\nscanner took what jansson refuses (%s)\n",
                     json ? "not an object" : error.text);
            rc = -1;
        }
        if (rc == 1) {
            gateway_reading_batch_t slow_read;
            memset (&slow_read, 0, sizeof slow_read);
            gateway_value_t slow_token;
            gateway_reading_item_t slow_item;
            int failed;
            if (batch) {
                failed = gateway_reading_batch_json (&slow_read, json) ||
                         s_verdict_batch (&slow_read, now_ms, &slow);
                json = NULL; //  slow_read holds it
            } else {
                gateway_reading_value_json (json_object_get (json, "deviceToken"), &slow_token);
                gateway_reading_item_json (json, &slow_item);
                failed = s_verdict_single (&slow_token, &slow_item, now_ms, &slow);
            }
            if (failed)
                rc = 0;
            else if (!s_same_verdict (&fast, &slow))
                rc = -1;
            gateway_reading_batch_release (&slow_read);
        }
        json_decref (json);
        if (rc < 0)
            fprintf (stderr, "scanner and jansson differ on %s body '%.*s'\n",
                     batch ? "a batch" : "a single-reading", (int)size, text);
    }
    s_verdict_release (&fast);
    s_verdict_release (&slow);
    gateway_reading_batch_release (&read);
    free (copy);
    return rc;
}

//  ==========================================================================
//  Self test: chosen bodies, then random edits of them, each as the
//  scanner and as jansson read it.

#define UUID "3f2c8a1e-9b7d-4c5e-8f10-1234567890ab"

//  The scanner took text, and jansson reads it the same way.
static bool
s_check_scanner (const char *text, size_t size, int64_t now, bool batch)
{
    int rc = gateway_scanner_compare (text, size, batch, now);
    assert (rc >= 0);
    return rc == 1;
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
    size_t body_count = sizeof bodies / sizeof bodies[0];
    for (size_t index = 0; index < body_count; index++) {
        bool scanned = s_check_scanner (bodies[index], strlen (bodies[index]), now, true);
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
        assert (s_check_scanner (text, (size_t)at, now, true) == (items == 1000));
        free (text);
    }
    //  Random edits: replace, insert or delete a byte, or repeat a span.
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    char text[4096];
    for (int round = 0; round < 200000; round++) {
        size_t size =
            s_mutate (bodies[round % body_count], text, sizeof text, 1 + round % 3, &state);
        fast += s_check_scanner (text, size, now, true);
        total++;
    }
    if (verbose)
        printf ("\nscanner took %zu of %zu bodies, each as jansson reads it\n", fast, total);
    if (fast <= total / 25)
        fprintf (stderr, "\nscanner took only %zu of %zu\n", fast, total);
    assert (fast > total / 25);
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
        bool scanned = s_check_scanner (bodies[index], strlen (bodies[index]), now, false);
        if (scanned != (index < 8))
            fprintf (stderr, "\nsingle body %zu scanned %d\n", index, scanned);
        assert (scanned == (index < 8));
    }
    uint64_t state = 0x2545F4914F6CDD1DULL;
    char text[4096];
    for (int round = 0; round < 200000; round++) {
        size_t size =
            s_mutate (bodies[round % body_count], text, sizeof text, 1 + round % 3, &state);
        fast += s_check_scanner (text, size, now, false);
        total++;
    }
    if (verbose)
        printf ("\nsingle scanner took %zu of %zu bodies, each as jansson reads it\n", fast, total);
    assert (fast > total / 25);
}

//  s_format_number against the snprintf + strtod it replaces, on every

void
gateway_scanner_test (bool verbose)
{
    printf (" * gateway_scanner: ");
    int64_t now = 1704110400000LL; //  2024-01-01T12:00:00Z
    s_scanner_test (now, verbose);
    s_single_scanner_test (now, verbose);
    printf ("OK\n");
}
