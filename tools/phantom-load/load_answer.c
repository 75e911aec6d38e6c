/*  =========================================================================
    load_answer - the gateway's answer bodies: a reading's id, a batch's
    per-reading statuses
    =========================================================================
*/
#include "load_answer.h"

#include <assert.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

//  Reads a JSON integer at *cursor (below end); advances past it. 0 or -1.
static int
s_scan_int (const char **cursor, const char *end, int64_t *value)
{
    const char *at = *cursor;
    bool negative = at < end && *at == '-';
    if (negative)
        at++;
    if (at >= end || *at < '0' || *at > '9')
        return -1;
    int64_t result = 0;
    int digits = 0;
    while (at < end && *at >= '0' && *at <= '9') {
        if (++digits > 18)
            return -1;
        result = result * 10 + (*at++ - '0');
    }
    if (at < end && (*at == '.' || *at == 'e' || *at == 'E'))
        return -1;
    *value = negative ? -result : result;
    *cursor = at;
    return 0;
}

//  Consumes literal at *cursor; 0, or -1 if it is not there.
static int
s_scan_literal (const char **cursor, const char *end, const char *literal)
{
    size_t length = strlen (literal);
    if ((size_t)(end - *cursor) < length || memcmp (*cursor, literal, length) != 0)
        return -1;
    *cursor += length;
    return 0;
}

//  Skips the rest of an object whose "{" is behind *cursor: strings (with
//  escapes) and nested objects and arrays. 0, or -1 if it does not end.
static int
s_scan_skip_object (const char **cursor, const char *end)
{
    int depth = 1;
    const char *at = *cursor;
    while (at < end) {
        char c = *at++;
        if (c == '"') {
            while (at < end && *at != '"')
                at += *at == '\\' ? 2 : 1;
            if (at >= end)
                return -1;
            at++;
        } else if (c == '{' || c == '[')
            depth++;
        else if ((c == '}' || c == ']') && --depth == 0) {
            *cursor = at;
            return 0;
        }
    }
    return -1;
}

int64_t
load_answer_single_id (const char *body, size_t size)
{
    const char *cursor = body;
    const char *end = body + size;
    int64_t value;
    if (s_scan_literal (&cursor, end, LOAD_ANSWER_SINGLE_PREFIX) == 0 &&
        s_scan_int (&cursor, end, &value) == 0 && cursor < end && *cursor == ',')
        return value;
    json_t *root = json_loadb (body, size, 0, NULL);
    json_t *id =
        json_object_get (json_object_get (json_object_get (root, "data"), "reading"), "id");
    value = json_is_integer (id) ? (int64_t)json_integer_value (id) : 0;
    json_decref (root);
    return value;
}

//  load_answer_batch on the gateway's exact form: {"success":true,"data":
//  {"results":[{"index":I,"status":S[,"id":N]...},...],...}. 0, or -1 if
//  the text is not in that form (statuses and ids then hold junk).
static int
s_batch_scan (const char *body, size_t size, size_t count, int *statuses, int64_t *ids)
{
    const char *cursor = body;
    const char *end = body + size;
    if (s_scan_literal (&cursor, end, "{\"success\":true,\"data\":{\"results\":["))
        return -1;
    if (cursor < end && *cursor == ']')
        return 0;
    while (true) {
        int64_t index, status, id = 0;
        if (s_scan_literal (&cursor, end, "{\"index\":") || s_scan_int (&cursor, end, &index) ||
            s_scan_literal (&cursor, end, ",\"status\":") || s_scan_int (&cursor, end, &status))
            return -1;
        if (s_scan_literal (&cursor, end, ",\"id\":") == 0 && s_scan_int (&cursor, end, &id))
            return -1;
        if (cursor < end && *cursor == '}')
            cursor++;
        else if (s_scan_skip_object (&cursor, end))
            return -1;
        if (index >= 0 && (uint64_t)index < count && status >= INT32_MIN && status <= INT32_MAX) {
            statuses[index] = (int)status;
            ids[index] = id;
        }
        if (cursor < end && *cursor == ']')
            return 0;
        if (s_scan_literal (&cursor, end, ","))
            return -1;
    }
}

int
load_answer_batch (const char *body, size_t size, size_t count, int *statuses, int64_t *ids)
{
    for (size_t index = 0; index < count; index++) {
        statuses[index] = 0;
        ids[index] = 0;
    }
    if (s_batch_scan (body, size, count, statuses, ids) == 0)
        return 0;
    for (size_t index = 0; index < count; index++) {
        statuses[index] = 0;
        ids[index] = 0;
    }
    json_t *root = json_loadb (body, size, 0, NULL);
    json_t *results = json_object_get (json_object_get (root, "data"), "results");
    if (!json_is_array (results)) {
        json_decref (root);
        return -2;
    }
    size_t position;
    json_t *result;
    json_array_foreach (results, position, result)
    {
        json_t *index = json_object_get (result, "index");
        json_t *status = json_object_get (result, "status");
        if (!json_is_integer (index) || !json_is_integer (status))
            continue;
        json_int_t at = json_integer_value (index);
        if (at < 0 || (size_t)at >= count)
            continue;
        statuses[at] = (int)json_integer_value (status);
        json_t *id = json_object_get (result, "id");
        ids[at] = json_is_integer (id) ? (int64_t)json_integer_value (id) : 0;
    }
    json_decref (root);
    return 0;
}

void
load_answer_test (bool verbose)
{
    if (verbose)
        printf (" * load_answer: ");
    const char *created = "{\"data\":{\"reading\":{\"id\":7}}}";
    assert (load_answer_single_id (created, strlen (created)) == 7);

    //  A batch answer as the gateway writes it, results out of order.
    const char *batch =
        "{\"success\":true,\"data\":{\"results\":["
        "{\"index\":2,\"status\":404,\"error\":{\"code\":\"port_not_found\",\"message\":\"Port not "
        "found\"}},"
        "{\"index\":0,\"status\":201,\"id\":41,\"timestamp\":\"2024-01-01T12:00:00.000Z\","
        "\"portStatus\":\"active\",\"phantomDetected\":false},"
        "{\"index\":1,\"status\":201,\"id\":42},{\"index\":9,\"status\":201,\"id\":1}],"
        "\"accepted\":2,\"rejected\":1}}";
    int statuses[4];
    int64_t ids[4];
    assert (load_answer_batch (batch, strlen (batch), 4, statuses, ids) == 0);
    assert (statuses[0] == 201 && ids[0] == 41);
    assert (statuses[1] == 201 && ids[1] == 42);
    assert (statuses[2] == 404 && ids[2] == 0);
    assert (statuses[3] == 0); //  not answered; index 9 is out of range
    assert (s_batch_scan (batch, strlen (batch), 4, statuses, ids) == 0);
    assert (load_answer_batch ("{\"success\":false}", 17, 4, statuses, ids) == -2);
    //  The same answer spaced out is not the gateway's form: jansson reads it.
    const char *spaced =
        "{ \"success\": true, \"data\": { \"results\": [ {\"index\": 1, \"status\": 201,"
        " \"id\": 42}, {\"status\": 400, \"index\": 0} ] } }";
    assert (s_batch_scan (spaced, strlen (spaced), 4, statuses, ids) == -1);
    assert (load_answer_batch (spaced, strlen (spaced), 4, statuses, ids) == 0);
    assert (statuses[0] == 400 && ids[0] == 0 && statuses[1] == 201 && ids[1] == 42);
    assert (statuses[2] == 0 && statuses[3] == 0);
    //  Truncated or broken gateway-shaped answers never pass the scan.
    size_t batch_size = strlen (batch);
    for (size_t size = 0; size < batch_size - strlen ("\"accepted\":2,\"rejected\":1}}") - 2;
         size++)
        assert (s_batch_scan (batch, size, 4, statuses, ids) == -1);
    const char *single = "{\"success\":true,\"message\":\"Sensor reading created successfully\","
                         "\"data\":{\"reading\":{\"id\":1234,\"voltage\":230}}}";
    assert (load_answer_single_id (single, strlen (single)) == 1234);
    assert (load_answer_single_id ("not json", 8) == 0);
    if (verbose)
        printf ("OK\n");
}
