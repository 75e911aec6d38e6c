/*  =========================================================================
    fuzz_sensor - libFuzzer target over the sensor JSON parsing

    Each input is a request body as POST /api/sensor/reading and
    /api/sensor/readings get it: json_loadb with duplicate keys rejected
    (as gateway_http_read_json), then gateway_reading_parse_body on the body and
    gateway_reading_parse on each item of "readings" (the batch
    route's loop). The raw input, as text, also goes to
    gateway_time_parse. A parse must answer 0 or 400 with a code and
    a message, and what it accepts must be within the contract.
    =========================================================================
*/
#include "gateway_reading.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

//  abort() so libFuzzer records the input even in release builds
#define S_CHECK(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf (stderr, "fuzz_sensor: check failed: %s\n", #condition);                       \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

#define S_NOW_MS 1764221000000LL //  fixed: runs must be repeatable
#define S_BATCH_MAX 1000         //  the batch route's limit

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  What an accepted reading must look like (the guide's contract).
static void
s_check_accepted (const gateway_reading_t *input)
{
    //  port is either "" (not a uuid) or a whole canonical lower-case uuid.
    size_t length = strlen (input->port);
    S_CHECK (length == 0 || length == PROTO_UUID_LEN);
    for (size_t index = 0; index < length; index++) {
        char c = input->port[index];
        if (index == 8 || index == 13 || index == 18 || index == 23)
            S_CHECK (c == '-');
        else
            S_CHECK ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    S_CHECK (isfinite (input->voltage) && input->voltage >= 0 && input->voltage <= 1000);
    S_CHECK (isfinite (input->current) && input->current >= 0 && input->current <= 1000);
    S_CHECK (isfinite (input->power) && input->power >= 0 && input->power <= 1e6);
    if (input->has_ts)
        S_CHECK (input->ts >= S_NOW_MS - 30LL * 24 * 3600 * 1000 &&
                 input->ts <= S_NOW_MS + 5LL * 60 * 1000);
    length = strlen (input->key);
    S_CHECK (length <= PROTO_KEY_MAX);
    for (size_t index = 0; index < length; index++)
        S_CHECK (input->key[index] >= 0x20 && input->key[index] <= 0x7e);
}

static void
s_check_result (int rc, const gateway_reading_t *input, const char *code, const char *message)
{
    S_CHECK (rc == 0 || rc == 400);
    if (rc == 0)
        s_check_accepted (input);
    else
        S_CHECK (code && *code && message && *message);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  The same text as a C string, for the timestamp parser.
    char *text = (char *)malloc (size + 1);
    if (!text)
        return 0;
    memcpy (text, data, size);
    text[size] = 0;
    int64_t ms = 0;
    int rc = gateway_time_parse (text, &ms);
    S_CHECK (rc == 0 || rc == -1);
    free (text);

    json_error_t error;
    json_t *body = json_loadb ((const char *)data, size, JSON_REJECT_DUPLICATES, &error);
    if (!body)
        return 0;
    const char *token = NULL, *code = NULL, *message = NULL;
    gateway_reading_t input;
    rc = gateway_reading_parse_body (body, S_NOW_MS, &token, &input, &code, &message);
    s_check_result (rc, &input, code, message);
    if (rc == 0)
        S_CHECK (token && strlen (token) >= 1 && strlen (token) <= 200);

    json_t *items = json_is_object (body) ? json_object_get (body, "readings") : NULL;
    if (json_is_array (items) && json_array_size (items) <= S_BATCH_MAX)
        for (size_t index = 0; index < json_array_size (items); index++) {
            code = message = NULL;
            rc = gateway_reading_parse (json_array_get (items, index), S_NOW_MS, &input, &code,
                                        &message);
            s_check_result (rc, &input, code, message);
        }
    json_decref (body);
    return 0;
}
