/*  =========================================================================
    gateway_sensor - POST /api/sensor/reading and /api/sensor/readings

    The contract of the sensor-simulator guide. Hot path: read the body
    (gateway_scanner, else jansson), check it (gateway_reading), one
    SHA-256, two cache lookups, one encode, one zmq_send, wait for the
    store's ack, answer 201 only when the reading is durable (gateway_json).
    No SQL.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "gateway_live.h"
#include "gateway_json.h"
#include "gateway_scanner.h"
#include "gateway_time.h"

#include <inttypes.h>
#include <sodium.h>

#define BATCH_BODY_MAX (512 * 1024)

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

//  The 201 answer, exactly as the snprintf of "%" PRId64 and the numbers
//  as the device sent them wrote it.
static void
s_reading_answer (const gateway_reading_t *input, const proto_ack_t *ack, gateway_json_t *answer)
{
    char timestamp[32];
    gateway_time_format (ack->ts, timestamp);
    GATEWAY_JSON_LITERAL (answer, "{\"success\":true,\"message\":\"Sensor reading created "
                                  "successfully\",\"data\":{\"reading\":{\"id\":");
    gateway_json_int (answer, ack->id);
    GATEWAY_JSON_LITERAL (answer, ",\"voltage\":");
    gateway_json_number (answer, input->voltage, input->voltage_integer);
    GATEWAY_JSON_LITERAL (answer, ",\"current\":");
    gateway_json_number (answer, input->current, input->current_integer);
    GATEWAY_JSON_LITERAL (answer, ",\"power\":");
    gateway_json_number (answer, input->power, input->power_integer);
    GATEWAY_JSON_LITERAL (answer, ",\"timestamp\":");
    gateway_json_string (answer, timestamp);
    if (ack->status == PROTO_STATUS_PHANTOM)
        GATEWAY_JSON_LITERAL (answer, "},\"phantomDetected\":true,\"portStatus\":");
    else
        GATEWAY_JSON_LITERAL (answer, "},\"phantomDetected\":false,\"portStatus\":");
    gateway_json_string (answer, proto_status_name (ack->status));
    GATEWAY_JSON_LITERAL (answer, "}}");
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
    int64_t now = gateway_time_now_ms ();
    const char *token = NULL, *code = NULL, *message = NULL;
    gateway_reading_t input;
    json_t *body = NULL;
    gateway_value_t token_value;
    gateway_reading_item_t item;
    if (gateway_scanner_reading (text, size, &token_value, &item) == 0) {
        //  The checks gateway_reading_parse_body makes, on the scanned records.
        status = gateway_reading_check_token (&token_value, &token, &code, &message);
        if (status == 0)
            status = gateway_reading_check (&item, now, &input, &code, &message);
    } else {
        body = gateway_http_parse_json (conn, text, size, &status);
        if (text != stack_buffer)
            free (text);
        if (!body)
            return status;
        status = gateway_reading_parse_body (body, now, &token, &input, &code, &message);
    }
    if (status == 0 && !input.key[0]) {
        //  The Idempotency-Key header stands in for a readingId.
        const char *header = mg_get_header (conn, "Idempotency-Key");
        if (header) {
            if (gateway_reading_key_valid (header))
                snprintf (input.key, sizeof input.key, "%s", header);
            else {
                status = 400;
                code = "invalid_field";
                message = "Idempotency-Key must be 1 to 64 printable ASCII characters";
            }
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
    gateway_reading_to_proto (&input, &device, &port, now, &reading);
    proto_ack_t ack;
    int outcome;
    gateway_pipeline_submit (gateway->pipeline, &reading, 1, &ack, &outcome);
    status = s_outcome_status (outcome, &ack, &code, &message);
    if (status != 201)
        return gateway_http_send_error (conn, status, code, message, status >= 500 ? 1 : 0);
    gateway_live_reading (gateway->live, reading.user, reading.port, ack.ts, reading.power,
                          ack.status);
    char storage[512];
    gateway_json_t answer;
    gateway_json_init (&answer, storage, sizeof storage);
    s_reading_answer (&input, &ack, &answer);
    if (answer.failed)
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
    else
        status = gateway_http_send (conn, 201, "application/json", NULL, answer.data, answer.size);
    gateway_json_release (&answer);
    return status;
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

//  One element of data.results.
typedef struct {
    int status;          //  201 or the error's status
    const char *code;    //  error only
    const char *message; //  error only
    size_t submitted;    //  201: index into readings and acks
} s_result_t;

static void
s_batch_result (gateway_json_t *text, size_t index, const s_result_t *result,
                const proto_ack_t *acks)
{
    GATEWAY_JSON_LITERAL (text, "{\"index\":");
    gateway_json_int (text, (int64_t)index);
    GATEWAY_JSON_LITERAL (text, ",\"status\":");
    gateway_json_int (text, result->status);
    if (result->status == 201) {
        const proto_ack_t *ack = &acks[result->submitted];
        char timestamp[32];
        gateway_time_format (ack->ts, timestamp);
        GATEWAY_JSON_LITERAL (text, ",\"id\":");
        gateway_json_int (text, ack->id);
        GATEWAY_JSON_LITERAL (text, ",\"timestamp\":");
        gateway_json_string (text, timestamp);
        GATEWAY_JSON_LITERAL (text, ",\"portStatus\":");
        gateway_json_string (text, proto_status_name (ack->status));
        if (ack->status == PROTO_STATUS_PHANTOM)
            GATEWAY_JSON_LITERAL (text, ",\"phantomDetected\":true}");
        else
            GATEWAY_JSON_LITERAL (text, ",\"phantomDetected\":false}");
    } else {
        GATEWAY_JSON_LITERAL (text, ",\"error\":{\"code\":");
        gateway_json_string (text, result->code);
        GATEWAY_JSON_LITERAL (text, ",\"message\":");
        gateway_json_string (text, result->message);
        GATEWAY_JSON_LITERAL (text, "}}");
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
s_batch_run (gateway_t *gateway, const gateway_reading_batch_t *batch,
             const gateway_device_t *device, int64_t now, s_result_t *results,
             proto_reading_t *readings, proto_ack_t *acks, int *outcomes, size_t *positions,
             s_order_t *order)
{
    size_t count = batch->count;
    size_t submitted = 0;
    for (size_t index = 0; index < count; index++) {
        gateway_reading_t input;
        gateway_port_t port;
        const char *code = NULL, *message = NULL;
        s_result_t *result = &results[index];
        int rc = gateway_reading_check (&batch->items[index], now, &input, &code, &message);
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
            gateway_reading_to_proto (&input, device, &port, now, &readings[submitted]);
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
    gateway_reading_batch_t batch;
    memset (&batch, 0, sizeof batch);
    s_result_t *results = NULL;
    proto_reading_t *readings = NULL;
    proto_ack_t *acks = NULL;
    int *outcomes = NULL;
    size_t *positions = NULL;
    s_order_t *order = NULL;
    gateway_json_t text;
    gateway_json_init (&text, NULL, 0);
    if (gateway_scanner_batch (body, size, &batch) != 0) {
        //  The scanner may have stopped half way: start over with jansson.
        gateway_reading_batch_reset (&batch);
        json_t *json = gateway_http_parse_json (conn, body, size, &status);
        if (!json)
            goto done;
        if (gateway_reading_batch_json (&batch, json) != 0) {
            status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
            goto done;
        }
    }
    const char *token = NULL, *code = NULL, *message = NULL;
    status = gateway_reading_batch_check (&batch, &token, &code, &message);
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
    int64_t now = gateway_time_now_ms ();
    size_t count = batch.count;
    results = (s_result_t *)calloc (count, sizeof (s_result_t));
    readings = (proto_reading_t *)malloc (count * sizeof (proto_reading_t));
    acks = (proto_ack_t *)calloc (count, sizeof (proto_ack_t));
    outcomes = (int *)calloc (count, sizeof (int));
    positions = (size_t *)malloc (count * sizeof (size_t));
    order = (s_order_t *)malloc (count * sizeof (s_order_t));
    //  About 150 bytes per 201 result.
    if (!results || !readings || !acks || !outcomes || !positions || !order ||
        !gateway_json_room (&text, 128 + count * 160)) {
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
        goto done;
    }
    size_t accepted = s_batch_run (gateway, &batch, &device, now, results, readings, acks, outcomes,
                                   positions, order);

    s_tally_t tally = {.used = 0};
    GATEWAY_JSON_LITERAL (&text, "{\"success\":true,\"data\":{\"results\":[");
    for (size_t index = 0; index < count; index++) {
        if (index)
            GATEWAY_JSON_LITERAL (&text, ",");
        s_batch_result (&text, index, &results[index], acks);
        s_tally (&tally, gateway->pipeline, results[index].status);
    }
    GATEWAY_JSON_LITERAL (&text, "],\"accepted\":");
    gateway_json_int (&text, (int64_t)accepted);
    GATEWAY_JSON_LITERAL (&text, ",\"rejected\":");
    gateway_json_int (&text, (int64_t)(count - accepted));
    GATEWAY_JSON_LITERAL (&text, "}}");
    s_tally_flush (&tally, gateway->pipeline);
    if (text.failed)
        status = gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
    else
        status = gateway_http_send (conn, 200, "application/json", NULL, text.data, text.size);
done:
    gateway_json_release (&text);
    free (results);
    free (readings);
    free (acks);
    free (outcomes);
    free (positions);
    free (order);
    gateway_reading_batch_release (&batch);
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
//  Self test: the batch answer and order; then the handlers end to end through
//  civetweb with a cache filled directly and an in-process detector+store.

#define UUID "3f2c8a1e-9b7d-4c5e-8f10-1234567890ab"

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
    gateway_json_t text;
    gateway_json_init (&text, NULL, 0);
    json_t *list = json_array ();
    for (size_t index = 0; index < 4; index++) {
        s_batch_result (&text, index, &results[index], acks);
        GATEWAY_JSON_LITERAL (&text, "\n");
        json_t *item;
        if (results[index].status == 201) {
            const proto_ack_t *ack = &acks[results[index].submitted];
            char timestamp[32];
            gateway_time_format (ack->ts, timestamp);
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
    GATEWAY_JSON_LITERAL (&text, "");
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
    gateway_json_release (&text);
    json_decref (list);
}

void
gateway_sensor_test (bool verbose)
{
    printf (" * gateway_sensor: ");
    int64_t now = 1704110400000LL; //  2024-01-01T12:00:00Z

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

    s_answer_test ();

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
    json_t *body = json_loads (reply, 0, NULL);
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
    int64_t wall = gateway_time_now_ms ();
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
        assert (gateway_time_parse (json_string_value (json_object_get (result, "timestamp")),
                                    &ts) == 0);
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
