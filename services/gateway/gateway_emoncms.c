/*  =========================================================================
    gateway_emoncms - the Emoncms input API, and GET /api/sensor/last

    So that emonhub, IoTaWatt's Emoncms uploader and ESP sketches post to
    PhantomWatch unchanged: GET/POST /input/post (node, json | fulljson |
    csv | data, time), POST /input/bulk (data=[[time,node,...]], sentat |
    offset | time) and GET /input/get?node= (IoTaWatt asks it where to
    resume), each also with .json. The device token is the apikey: a query
    or form parameter, or "Authorization: Bearer".

    A port receives node N's input I when its externalKey is "N:I". Each
    mapped input's value is the port's power (W); the voltage is the same
    post's "vrms" (or "voltage") input when it has one, else
    GATEWAY_EMONCMS_VOLTAGE; current = power / voltage. Inputs no port maps
    are ignored (emonhub posts every input of a node). Every reading goes
    through the pipeline as the sensor routes' do, so "ok" is answered only
    when the store committed all of them; its readingId is
    "emoncms:<port>:<time s>", so a post retried after a lost answer is
    stored once.

    Answers as Emoncms's input controller: "ok" ({"success": true} when the
    request had fulljson), or {"success": false, "message": "..."} with
    Emoncms's own message text for the same fault.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "gateway_live.h"
#include "gateway_json.h"
#include "gateway_reading.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <sodium.h>

#define S_VOLTAGE_DEFAULT 230.0 //  the simulator guide's mains voltage
#define S_BODY_MAX (512 * 1024) //  as the batch route
#define S_READINGS_MAX 1000     //  as the batch route
#define S_FIELD_MAX 64          //  node and input names, in bytes
#define S_INPUTS_MAX 128        //  inputs of one post
#define S_PORTS_MAX 1000        //  mapped ports read per request
#define S_DB_WAIT_MS 2000
#define S_SENTAT_SLACK_S 5 //  sentat corrections this small are noise

//  One input of one post.
typedef struct {
    char name[S_FIELD_MAX + 1];
    double value;
} s_input_t;

//  One node's post at one time.
typedef struct {
    int64_t time; //  s since epoch
    char node[S_FIELD_MAX + 1];
    size_t count;
    s_input_t inputs[S_INPUTS_MAX];
} s_post_t;

//  A port with an external key.
typedef struct {
    char port[PROTO_UUID_LEN + 1];
    char key[2 * S_FIELD_MAX + 2];
} s_mapped_t;

//  --------------------------------------------------------------------------
//  Answers

static int
s_answer (struct mg_connection *conn, int status, const char *text, const char *headers)
{
    return gateway_http_send (conn, status, "text/plain; charset=utf-8", headers, text,
                              strlen (text));
}

//  Emoncms's failure: {"success": false, "message": "..."}, with the
//  message's double quotes made single as Emoncms does, and what JSON
//  would escape made blank; at most 512 bytes.
static int
s_fail (struct mg_connection *conn, int status, const char *message, int retry_after_s)
{
    char storage[512];
    gateway_json_t text;
    gateway_json_init (&text, storage, sizeof storage);
    GATEWAY_JSON_LITERAL (&text, "{\"success\": false, \"message\": \"");
    for (const char *cursor = message; *cursor && text.size < sizeof storage - 4; cursor++) {
        char c = *cursor == '"' ? '\'' : *cursor;
        if (c == '\\' || (unsigned char)c < 0x20)
            c = ' ';
        gateway_json_raw (&text, &c, 1);
    }
    GATEWAY_JSON_LITERAL (&text, "\"}");
    char headers[64] = "";
    if (retry_after_s > 0)
        snprintf (headers, sizeof headers, "Retry-After: %d\r\n", retry_after_s);
    return gateway_http_send (conn, status, "application/json", headers[0] ? headers : NULL,
                              text.data, text.size);
}

//  --------------------------------------------------------------------------
//  Parameters: Emoncms reads each from the query string, else the form body.

typedef struct {
    const char *query; //  the query string, or NULL
    const char *form;  //  an urlencoded body, or NULL
    size_t form_size;
} s_params_t;

//  Decoded value of name into out; 0, -1 absent, -2 too long.
static int
s_param (const s_params_t *params, const char *name, char *out, size_t out_size)
{
    if (params->query) {
        int rc = mg_get_var (params->query, strlen (params->query), name, out, out_size);
        if (rc >= 0)
            return 0;
        if (rc == -2)
            return -2;
    }
    if (params->form) {
        int rc = mg_get_var (params->form, params->form_size, name, out, out_size);
        if (rc >= 0)
            return 0;
        if (rc == -2)
            return -2;
    }
    return -1;
}

static bool
s_has_param (const s_params_t *params, const char *name)
{
    char ignored[2];
    return s_param (params, name, ignored, sizeof ignored) != -1;
}

//  Emoncms's node and input names keep letters, digits, _ - . and space.
static void
s_clean_name (const char *text, char out[S_FIELD_MAX + 1])
{
    size_t length = 0;
    for (const char *cursor = text; *cursor && length < S_FIELD_MAX; cursor++) {
        unsigned char c = (unsigned char)*cursor;
        if (isalnum (c) || c == '_' || c == '-' || c == '.' || c == ' ' || c >= 0x80)
            out[length++] = (char)c;
    }
    out[length] = 0;
}

//  PHP's is_numeric and (float), for the values of the loose forms.
static bool
s_numeric (const char *text, double *value)
{
    while (isspace ((unsigned char)*text))
        text++;
    if (!*text)
        return false;
    char *end;
    double parsed = strtod (text, &end);
    if (end == text || *end || !isfinite (parsed))
        return false;
    *value = parsed;
    return true;
}

static int
s_add_input (s_post_t *post, const char *name, double value, const char **message)
{
    if (post->count == S_INPUTS_MAX) {
        *message = "Too many inputs in one post";
        return -1;
    }
    s_input_t *input = &post->inputs[post->count++];
    s_clean_name (name, input->name);
    input->value = value;
    return 0;
}

//  input/post's json (the loose {a:1,b:2} form), csv and data: Emoncms
//  drops every character but letters, digits, _ - . : , and space, then
//  splits on , and :. A value without a name is named by its position.
static int
s_parse_loose (char *text, s_post_t *post, const char **message)
{
    char *write = text;
    for (char *read = text; *read; read++) {
        unsigned char c = (unsigned char)*read;
        if (isalnum (c) || c == '_' || c == '-' || c == '.' || c == ':' || c == ',' || c == ' ' ||
            c >= 0x80)
            *write++ = (char)c;
    }
    *write = 0;
    int position = 0;
    char *pair = text;
    while (pair) {
        char *next = strchr (pair, ',');
        if (next)
            *next++ = 0;
        char *colon = strchr (pair, ':');
        double value;
        if (colon) {
            *colon = 0;
            if (!*pair) {
                *message = "Format error, json key missing or invalid character";
                return -1;
            }
            char *rest = strchr (colon + 1, ':');
            if (rest)
                *rest = 0; //  PHP's explode keeps only [1]
            if (!s_numeric (colon + 1, &value)) {
                *message = "Format error, json value is not numeric";
                return -1;
            }
            if (s_add_input (post, pair, value, message))
                return -1;
        } else {
            if (!s_numeric (pair, &value)) {
                *message = "Format error: csv value is not numeric";
                return -1;
            }
            char name[16];
            snprintf (name, sizeof name, "%d", ++position);
            if (s_add_input (post, name, value, message))
                return -1;
        }
        pair = next;
    }
    return 0;
}

//  A JSON scalar as PHP's (float) casts it; false for null (no input).
static bool
s_json_float (json_t *value, double *out)
{
    if (json_is_number (value))
        *out = json_number_value (value);
    else if (json_is_true (value))
        *out = 1;
    else if (json_is_false (value))
        *out = 0;
    else if (json_is_string (value)) {
        if (!s_numeric (json_string_value (value), out))
            *out = 0;
    } else
        return false;
    return isfinite (*out);
}

//  fulljson: an object of name: value.
static int
s_parse_full (const char *text, s_post_t *post, const char **message)
{
    json_t *inputs = json_loads (text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (!inputs) {
        *message = "Error decoding JSON string (invalid or too deeply nested)";
        return -1;
    }
    int rc = 0;
    if (!json_is_object (inputs)) {
        *message = "Input must be a JSON object";
        rc = -1;
    }
    const char *name;
    json_t *value;
    json_object_foreach (inputs, name, value)
    {
        if (rc)
            break;
        if (json_is_object (value) || json_is_array (value)) {
            *message = "Error decoding JSON string (invalid or too deeply nested)";
            rc = -1;
            break;
        }
        double number;
        if (s_json_float (value, &number))
            rc = s_add_input (post, name, number, message);
    }
    json_decref (inputs);
    return rc;
}

//  --------------------------------------------------------------------------
//  Posts to readings

//  The mapped ports of user (external key set), into mapped; count or -1.
static int
s_load_mapped (gateway_t *gateway, int64_t user, s_mapped_t *mapped, size_t max)
{
    PGconn *db = gateway_db_acquire (gateway->db, S_DB_WAIT_MS);
    if (!db)
        return -1;
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user);
    const char *values[] = {user_text};
    PGresult *result = PQexecParams (db,
                                     "SELECT id::text, external_key FROM ports"
                                     " WHERE user_id = $1::bigint AND external_key IS NOT NULL"
                                     " ORDER BY external_key LIMIT 1000",
                                     1, NULL, values, NULL, NULL, 0);
    int count = -1;
    if (PQresultStatus (result) == PGRES_TUPLES_OK) {
        count = 0;
        for (int row = 0; row < PQntuples (result) && (size_t)count < max; row++) {
            snprintf (mapped[count].port, sizeof mapped[count].port, "%s",
                      PQgetvalue (result, row, 0));
            snprintf (mapped[count].key, sizeof mapped[count].key, "%s",
                      PQgetvalue (result, row, 1));
            count++;
        }
    } else
        zsys_warning ("gateway emoncms - user %" PRId64 ": mapped ports not read: %s", user,
                      PQerrorMessage (db));
    PQclear (result);
    gateway_db_release (gateway->db, db);
    return count;
}

static const s_mapped_t *
s_find_mapped (const s_mapped_t *mapped, int count, const char *node, const char *name)
{
    size_t node_length = strlen (node);
    for (int index = 0; index < count; index++) {
        const char *key = mapped[index].key;
        if (strncmp (key, node, node_length) == 0 && key[node_length] == ':' &&
            streq (key + node_length + 1, name))
            return &mapped[index];
    }
    return NULL;
}

static bool
s_voltage_name (const char *name)
{
    return strcasecmp (name, "vrms") == 0 || strcasecmp (name, "voltage") == 0;
}

//  The readings of posts, checked whole before any is sent; count, or -1
//  with *message set (nothing is stored then).
static int
s_build (gateway_t *gateway, const gateway_device_t *device, const s_post_t *posts,
         size_t post_count, const s_mapped_t *mapped, int mapped_count, int64_t now,
         proto_reading_t *readings, size_t max, char *message, size_t message_size)
{
    size_t count = 0;
    for (size_t index = 0; index < post_count; index++) {
        const s_post_t *post = &posts[index];
        //  The reading contract's window, on whole seconds as Emoncms's times are.
        if (post->time < INT64_MIN / 1000 || post->time > INT64_MAX / 1000 ||
            !gateway_reading_time_valid (post->time * 1000, now / 1000 * 1000)) {
            snprintf (message, message_size,
                      "Time %" PRId64 " of node %s is not within the last 30 days and at most 5 "
                      "minutes ahead",
                      post->time, post->node);
            return -1;
        }
        double voltage = S_VOLTAGE_DEFAULT;
        for (size_t input = 0; input < post->count; input++)
            if (s_voltage_name (post->inputs[input].name) && post->inputs[input].value > 0 &&
                gateway_reading_in_range (GATEWAY_READING_VOLTAGE, post->inputs[input].value))
                voltage = post->inputs[input].value;
        for (size_t input = 0; input < post->count; input++) {
            const s_input_t *in = &post->inputs[input];
            const s_mapped_t *map = s_find_mapped (mapped, mapped_count, post->node, in->name);
            if (!map)
                continue;
            gateway_port_t port;
            //  Mapped in PostgreSQL but not (yet) in the cache, or moved to
            //  another owner meanwhile: as if unmapped.
            if (!gateway_cache_port (gateway->cache, map->port, &port) || port.user != device->user)
                continue;
            if (!gateway_reading_in_range (GATEWAY_READING_POWER, in->value)) {
                snprintf (message, message_size,
                          "Value %g of input %s:%s is not a power between 0 and 1000000 W",
                          in->value, post->node, in->name);
                return -1;
            }
            if (count == max) {
                snprintf (message, message_size, "More than %zu readings in one request", max);
                return -1;
            }
            gateway_reading_t reading = {.voltage = voltage,
                                         .power = in->value,
                                         .current = in->value / voltage,
                                         .has_ts = true,
                                         .ts = post->time * 1000};
            snprintf (reading.port, sizeof reading.port, "%s", map->port);
            snprintf (reading.key, sizeof reading.key, "emoncms:%s:%" PRId64, map->port,
                      post->time);
            gateway_reading_to_proto (&reading, device, &port, now, &readings[count++]);
        }
    }
    return (int)count;
}

//  The apikey: parameter, else the Bearer header. NULL if none.
static const char *
s_apikey (struct mg_connection *conn, const s_params_t *params, char *out, size_t out_size)
{
    if (s_param (params, "apikey", out, out_size) == 0 && out[0])
        return out;
    const char *header = mg_get_header (conn, "Authorization");
    if (header && strncasecmp (header, "Bearer ", 7) == 0) {
        header += 7;
        while (*header == ' ')
            header++;
        snprintf (out, out_size, "%s", header);
        if (out[0])
            return out;
    }
    return NULL;
}

//  The device behind the request's token: 0, or the status answered
//  (401, or 429 for an address that guessed too often).
static int
s_device (struct mg_connection *conn, gateway_t *gateway, const char *token,
          gateway_device_t *device)
{
    uint8_t hash[32];
    if (token) {
        crypto_hash_sha256 (hash, (const uint8_t *)token, strlen (token));
        if (gateway_cache_device (gateway->cache, hash, device))
            return 0;
    }
    const char *ip = gateway_http_client_ip (conn);
    int retry_after;
    if (gateway_http_rate_limited (GATEWAY_RATE_TOKEN, ip, &retry_after))
        return gateway_http_send_rate_limited (conn, retry_after);
    gateway_http_rate_limit_hit (GATEWAY_RATE_TOKEN, ip);
    return s_fail (conn, 401, "Invalid API key", 0);
}

//  The bulk data: [[time, node, value | {name: value} | null, ...], ...].
static int
s_parse_bulk (const s_params_t *params, char *data, int64_t now_s, s_post_t *posts, size_t max,
              size_t *count, const char **message)
{
    json_t *array = json_loads (data, JSON_DECODE_ANY, NULL);
    size_t length = json_is_array (array) ? json_array_size (array) : 0;
    int rc = 0;
    if (length == 0) {
        *message = "Format error, json string supplied is not valid";
        rc = -1;
    } else if (!json_is_array (json_array_get (array, length - 1)) ||
               json_array_size (json_array_get (array, length - 1)) == 0) {
        *message = "Format error, last item in bulk data does not contain any data";
        rc = -1;
    }
    int64_t reference = 0;
    if (rc == 0) {
        char text[32];
        double number = 0;
        if (s_param (params, "sentat", text, sizeof text) == 0) {
            reference = now_s - (s_numeric (text, &number) ? (int64_t)number : 0);
            //  sentat corrects a sender's wrong clock. A few seconds are the
            //  request's latency and the whole-second truncation at both
            //  ends: corrected, a post emonhub retries would land a second
            //  off and be stored twice instead of once (readingIds are per
            //  second).
            if (reference >= -S_SENTAT_SLACK_S && reference <= S_SENTAT_SLACK_S)
                reference = 0;
        } else if (s_param (params, "offset", text, sizeof text) == 0)
            reference = now_s - (s_numeric (text, &number) ? (int64_t)number : 0);
        else if (s_param (params, "time", text, sizeof text) == 0)
            reference = s_numeric (text, &number) ? (int64_t)number : 0;
        else {
            double last = 0;
            s_json_float (json_array_get (json_array_get (array, length - 1), 0), &last);
            reference = now_s - (int64_t)last;
        }
    }
    for (size_t index = 0; rc == 0 && index < length; index++) {
        json_t *item = json_array_get (array, index);
        if (!json_is_array (item) || json_array_size (item) <= 2)
            continue;
        if (*count == max) {
            *message = "Too many items in bulk data";
            rc = -1;
            break;
        }
        s_post_t *post = &posts[(*count)++];
        memset (post, 0, sizeof *post);
        double offset = 0;
        s_json_float (json_array_get (item, 0), &offset);
        post->time = reference + (int64_t)offset;
        json_t *node = json_array_get (item, 1);
        if (json_is_object (node)) {
            *message = "Format error, node must not be an object";
            rc = -1;
            break;
        }
        char node_text[S_FIELD_MAX + 1] = "";
        if (json_is_string (node))
            snprintf (node_text, sizeof node_text, "%s", json_string_value (node));
        else if (json_is_integer (node))
            snprintf (node_text, sizeof node_text, "%" JSON_INTEGER_FORMAT,
                      json_integer_value (node));
        else if (json_is_real (node))
            snprintf (node_text, sizeof node_text, "%g", json_real_value (node));
        s_clean_name (node_text, post->node);
        int position = 1;
        for (size_t at = 2; rc == 0 && at < json_array_size (item); at++) {
            json_t *value = json_array_get (item, at);
            double number;
            if (json_is_object (value)) {
                const char *name = json_object_iter_key (json_object_iter (value));
                if (name &&
                    s_json_float (json_object_iter_value (json_object_iter (value)), &number))
                    rc = s_add_input (post, name, number, message);
                continue;
            }
            //  null (IoTaWatt's "no value") names no input but takes its place.
            if (s_json_float (value, &number)) {
                char name[16];
                snprintf (name, sizeof name, "%d", position);
                rc = s_add_input (post, name, number, message);
            }
            position++;
        }
    }
    json_decref (array);
    return rc;
}

static int
s_handle_input (struct mg_connection *conn, gateway_t *gateway, bool bulk)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    bool post_method = streq (info->request_method, "POST");
    if (!post_method && !streq (info->request_method, "GET"))
        return gateway_http_send (conn, 405, "text/plain", "Allow: GET, POST\r\n",
                                  "Method not allowed", 18);
    char stack[GATEWAY_SENSOR_BODY_MAX + 1];
    char *body = NULL;
    size_t size = 0;
    int status = 0;
    const char *length = mg_get_header (conn, "Content-Length");
    if (post_method && (length || mg_get_header (conn, "Transfer-Encoding")) &&
        gateway_http_read_body (conn, S_BODY_MAX, stack, sizeof stack, &body, &size, &status) != 0)
        return status ? status : 500;
    s_params_t params = {info->query_string, body, size};
    char *data = NULL;
    s_post_t *posts = NULL;
    proto_reading_t *readings = NULL;
    proto_ack_t *acks = NULL;
    int *outcomes = NULL;
    s_mapped_t *mapped = NULL;

    char token_text[256];
    gateway_device_t device;
    status =
        s_device (conn, gateway, s_apikey (conn, &params, token_text, sizeof token_text), &device);
    if (status)
        goto done;

    int64_t now = gateway_time_now_ms ();
    const char *message = NULL;
    size_t post_count = 0;
    size_t data_max = size + (info->query_string ? strlen (info->query_string) : 0) + 1;
    data = (char *)malloc (data_max);
    posts = (s_post_t *)malloc ((bulk ? S_READINGS_MAX : 1) * sizeof (s_post_t));
    readings = (proto_reading_t *)malloc (S_READINGS_MAX * sizeof (proto_reading_t));
    acks = (proto_ack_t *)calloc (S_READINGS_MAX, sizeof (proto_ack_t));
    outcomes = (int *)calloc (S_READINGS_MAX, sizeof (int));
    mapped = (s_mapped_t *)malloc (S_PORTS_MAX * sizeof (s_mapped_t));
    if (!data || !posts || !readings || !acks || !outcomes || !mapped) {
        status = s_fail (conn, 500, "Out of memory", 0);
        goto done;
    }
    bool full = s_has_param (&params, "fulljson");
    if (bulk) {
        if (s_param (&params, "data", data, data_max) != 0)
            data[0] = 0;
        s_parse_bulk (&params, data, now / 1000, posts, S_READINGS_MAX, &post_count, &message);
    } else {
        s_post_t *post = &posts[0];
        memset (post, 0, sizeof *post);
        char field[S_FIELD_MAX * 4 + 1];
        if (s_param (&params, "node", field, sizeof field) == 0)
            s_clean_name (field, post->node);
        else
            snprintf (post->node, sizeof post->node, "0");
        double number;
        post->time = now / 1000;
        if (s_param (&params, "time", field, sizeof field) == 0)
            post->time = s_numeric (field, &number) ? (int64_t)number : 0;
        const char *names[] = {"json", "fulljson", "csv", "data"};
        data[0] = 0;
        for (size_t index = 0; index < 4; index++)
            if (s_param (&params, names[index], data, data_max) == 0)
                break;
        if (!data[0])
            message = "Request contains no data via csv, json or data tag";
        else if (full && !s_has_param (&params, "json"))
            s_parse_full (data, post, &message);
        else
            s_parse_loose (data, post, &message);
        post_count = 1;
    }
    if (message) {
        status = s_fail (conn, 200, message, 0);
        goto done;
    }
    int mapped_count = s_load_mapped (gateway, device.user, mapped, S_PORTS_MAX);
    if (mapped_count < 0) {
        status = s_fail (conn, 503, "Database unavailable, retry later", 5);
        goto done;
    }
    char error[256];
    int count = s_build (gateway, &device, posts, post_count, mapped, mapped_count, now, readings,
                         S_READINGS_MAX, error, sizeof error);
    if (count < 0) {
        status = s_fail (conn, 200, error, 0);
        goto done;
    }
    gateway_pipeline_submit (gateway->pipeline, readings, (size_t)count, acks, outcomes);
    for (int index = 0; index < count; index++) {
        if (outcomes[index] == GATEWAY_PIPELINE_FULL) {
            status = s_fail (conn, 503, "Reading pipeline unavailable, retry later", 1);
            goto done;
        }
        if (outcomes[index] == GATEWAY_PIPELINE_TIMEOUT) {
            status = s_fail (conn, 504, "Reading not confirmed in time, retry later", 1);
            goto done;
        }
        if (acks[index].code == PROTO_ACK_REJECTED) {
            status = s_fail (conn, 200, "Reading rejected", 0);
            goto done;
        }
        if (acks[index].code != PROTO_ACK_OK) {
            status = s_fail (conn, 503, "Reading not stored, retry later", 1);
            goto done;
        }
    }
    for (int index = 0; index < count; index++)
        gateway_live_reading (gateway->live, readings[index].user, readings[index].port,
                              acks[index].ts, readings[index].power, acks[index].status);
    if (full)
        status = gateway_http_send (conn, 200, "application/json", NULL, "{\"success\": true}", 17);
    else
        status = s_answer (conn, 200, "ok", NULL);
done:
    free (data);
    free (posts);
    free (readings);
    free (acks);
    free (outcomes);
    free (mapped);
    if (body && body != stack)
        free (body);
    return status;
}

static int
s_post_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    int status = s_handle_input (conn, gateway, false);
    gateway_pipeline_count_status (gateway->pipeline, status);
    return status;
}

static int
s_bulk_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    int status = s_handle_input (conn, gateway, true);
    gateway_pipeline_count_status (gateway->pipeline, status);
    return status;
}

//  --------------------------------------------------------------------------
//  What the server holds: the newest stored reading of ports.

//  Emoncms's input/get?node=N: {"<input>": {"time": s, "value": W}, ...}
//  for the ports mapped to node N (time 0 when none is stored yet), or
//  "Node does not exist". IoTaWatt resumes after the newest time.
static int
s_get_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    s_params_t params = {info->query_string, NULL, 0};
    char token_text[256];
    gateway_device_t device;
    int status =
        s_device (conn, gateway, s_apikey (conn, &params, token_text, sizeof token_text), &device);
    if (status)
        return status;
    char field[S_FIELD_MAX * 4 + 1], node[S_FIELD_MAX + 1];
    if (s_param (&params, "node", field, sizeof field) != 0)
        return s_fail (conn, 400, "node is required", 0);
    s_clean_name (field, node);
    PGconn *db = gateway_db_acquire (gateway->db, S_DB_WAIT_MS);
    if (!db)
        return s_fail (conn, 503, "Database unavailable, retry later", 5);
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, device.user);
    const char *values[] = {user_text, node};
    PGresult *result = PQexecParams (
        db,
        "SELECT substr (p.external_key, length ($2) + 2), coalesce (r.s, 0), coalesce (r.power, 0)"
        " FROM ports p LEFT JOIN LATERAL (SELECT extract (epoch FROM ts)::bigint AS s, power"
        "   FROM readings WHERE port_id = p.id ORDER BY ts DESC LIMIT 1) r ON true"
        " WHERE p.user_id = $1::bigint AND starts_with (p.external_key, $2 || ':')"
        " ORDER BY p.external_key LIMIT 1000",
        2, NULL, values, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        zsys_warning ("gateway emoncms - input/get: %s", PQerrorMessage (db));
        PQclear (result);
        gateway_db_release (gateway->db, db);
        return s_fail (conn, 503, "Database unavailable, retry later", 5);
    }
    gateway_db_release (gateway->db, db);
    if (PQntuples (result) == 0) {
        PQclear (result);
        return gateway_http_send (conn, 200, "application/json", NULL, "\"Node does not exist\"",
                                  21);
    }
    json_t *answer = json_object ();
    for (int row = 0; row < PQntuples (result); row++) {
        json_t *input =
            json_pack ("{s:I,s:f}", "time", (json_int_t)atoll (PQgetvalue (result, row, 1)),
                       "value", strtod (PQgetvalue (result, row, 2), NULL));
        json_object_set_new (answer, PQgetvalue (result, row, 0), input);
    }
    PQclear (result);
    char *text = json_dumps (answer, JSON_COMPACT);
    json_decref (answer);
    if (!text)
        return s_fail (conn, 500, "Out of memory", 0);
    status = gateway_http_send (conn, 200, "application/json", NULL, text, strlen (text));
    free (text);
    return status;
}

//  GET /api/sensor/last[?portId=]: per port of the token's owner, the
//  newest stored reading's time, id and readingId (when the token's device
//  sent one and reading_keys still holds it). A device that lost its own
//  state resumes after it.
static int
s_last_handler (struct mg_connection *conn, void *cbdata)
{
    gateway_t *gateway = (gateway_t *)cbdata;
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!streq (info->request_method, "GET"))
        return gateway_http_send (conn, 405, "application/json", "Allow: GET\r\n",
                                  "{\"success\":false,\"message\":\"Method not allowed\","
                                  "\"error\":{\"code\":\"method_not_allowed\"}}",
                                  83);
    const char *header = mg_get_header (conn, "Authorization");
    const char *token = NULL;
    if (header && strncasecmp (header, "Bearer ", 7) == 0 && header[7])
        token = header + 7;
    gateway_device_t device;
    uint8_t hash[32];
    if (token)
        crypto_hash_sha256 (hash, (const uint8_t *)token, strlen (token));
    if (!token || !gateway_cache_device (gateway->cache, hash, &device)) {
        const char *ip = gateway_http_client_ip (conn);
        int retry_after;
        if (gateway_http_rate_limited (GATEWAY_RATE_TOKEN, ip, &retry_after))
            return gateway_http_send_rate_limited (conn, retry_after);
        gateway_http_rate_limit_hit (GATEWAY_RATE_TOKEN, ip);
        return gateway_http_send_error (conn, 401, "invalid_token", "Invalid device token", 0);
    }
    char port_text[64] = "";
    if (info->query_string) {
        int rc = mg_get_var (info->query_string, strlen (info->query_string), "portId", port_text,
                             sizeof port_text);
        if (rc == -2)
            return gateway_http_send_error (conn, 404, "port_not_found", "Port not found", 0);
    }
    gateway_port_t port;
    if (port_text[0]) {
        for (char *cursor = port_text; *cursor; cursor++)
            *cursor = (char)tolower ((unsigned char)*cursor);
        if (!gateway_cache_port (gateway->cache, port_text, &port) || port.user != device.user)
            return gateway_http_send_error (conn, 404, "port_not_found", "Port not found", 0);
    }
    PGconn *db = gateway_db_acquire (gateway->db, S_DB_WAIT_MS);
    if (!db)
        return gateway_http_send_error (conn, 503, "unavailable", "Database unavailable", 5);
    char user_text[24], device_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, device.user);
    snprintf (device_text, sizeof device_text, "%" PRId64, device.id);
    const char *values[] = {user_text, port_text[0] ? port_text : NULL, device_text};
    //  reading_keys is keyed (device_id, reading_key): the lookup by
    //  reading_id reads the device's keys, which pruning bounds to the
    //  retry window; a call made once per restart, not per reading.
    PGresult *result =
        PQexecParams (db,
                      "SELECT p.id::text, r.ms, r.id, k.reading_key FROM ports p"
                      " LEFT JOIN LATERAL (SELECT id, ts, (extract (epoch FROM ts) * 1000)::bigint "
                      "AS ms FROM readings"
                      "   WHERE port_id = p.id ORDER BY ts DESC LIMIT 1) r ON true"
                      " LEFT JOIN LATERAL (SELECT reading_key FROM reading_keys"
                      "   WHERE device_id = $3::bigint AND reading_id = r.id LIMIT 1) k ON true"
                      " WHERE p.user_id = $1::bigint AND ($2::uuid IS NULL OR p.id = $2::uuid)"
                      " ORDER BY p.id LIMIT 10000",
                      3, NULL, values, NULL, NULL, 0);
    if (PQresultStatus (result) != PGRES_TUPLES_OK) {
        zsys_warning ("gateway sensor - last: %s", PQerrorMessage (db));
        PQclear (result);
        gateway_db_release (gateway->db, db);
        return gateway_http_send_error (conn, 503, "unavailable", "Database unavailable", 5);
    }
    gateway_db_release (gateway->db, db);
    json_t *ports = json_array ();
    for (int row = 0; row < PQntuples (result); row++) {
        json_t *item = json_object ();
        json_object_set_new (item, "portId", json_string (PQgetvalue (result, row, 0)));
        if (PQgetisnull (result, row, 1)) {
            json_object_set_new (item, "timestamp", json_null ());
            json_object_set_new (item, "id", json_null ());
        } else {
            char timestamp[32];
            gateway_time_format (atoll (PQgetvalue (result, row, 1)), timestamp);
            json_object_set_new (item, "timestamp", json_string (timestamp));
            json_object_set_new (item, "id",
                                 json_integer ((json_int_t)atoll (PQgetvalue (result, row, 2))));
        }
        json_object_set_new (item, "readingId",
                             PQgetisnull (result, row, 3)
                                 ? json_null ()
                                 : json_string (PQgetvalue (result, row, 3)));
        json_array_append_new (ports, item);
    }
    PQclear (result);
    return gateway_http_send_data (conn, 200, "Last stored readings",
                                   json_pack ("{s:o}", "ports", ports));
}

void
gateway_emoncms_register (gateway_t *self)
{
    assert (self && self->http);
    mg_set_request_handler (self->http, "/input/post$", s_post_handler, self);
    mg_set_request_handler (self->http, "/input/post.json$", s_post_handler, self);
    mg_set_request_handler (self->http, "/input/bulk$", s_bulk_handler, self);
    mg_set_request_handler (self->http, "/input/bulk.json$", s_bulk_handler, self);
    mg_set_request_handler (self->http, "/input/get$", s_get_handler, self);
    mg_set_request_handler (self->http, "/input/get.json$", s_get_handler, self);
    mg_set_request_handler (self->http, "/api/sensor/last$", s_last_handler, self);
}

//  --------------------------------------------------------------------------
//  Self test: the request forms as Emoncms's documentation and emonhub and
//  IoTaWatt write them. The routes end to end, against PostgreSQL and the
//  real services, are tests/integration/test_emoncms.py.

static void
s_check_loose (const char *text, const char *message, size_t count, const char *name, double value)
{
    s_post_t post;
    memset (&post, 0, sizeof post);
    char buffer[256];
    snprintf (buffer, sizeof buffer, "%s", text);
    const char *got = NULL;
    int rc = s_parse_loose (buffer, &post, &got);
    if (message) {
        assert (rc == -1 && got && streq (got, message));
        return;
    }
    assert (rc == 0 && post.count == count);
    assert (streq (post.inputs[count - 1].name, name));
    assert (post.inputs[count - 1].value == value);
}

void
gateway_emoncms_test (bool verbose)
{
    printf (" * gateway_emoncms: ");
    //  input/post's loose forms (input_methods.php's post()).
    s_check_loose ("{power:200,voltage:230}", NULL, 2, "voltage", 230);
    s_check_loose ("100,200,300", NULL, 3, "3", 300);
    s_check_loose ("{power1:100,power2:200,power3:300}", NULL, 3, "power3", 300);
    s_check_loose ("{power:abc}", "Format error, json value is not numeric", 0, NULL, 0);
    s_check_loose ("{:5}", "Format error, json key missing or invalid character", 0, NULL, 0);
    s_check_loose ("1,x", "Format error: csv value is not numeric", 0, NULL, 0);

    s_post_t post;
    memset (&post, 0, sizeof post);
    const char *message = NULL;
    assert (s_parse_full ("{\"power1\":100,\"vrms\":\"240.5\",\"off\":null}", &post, &message) ==
            0);
    assert (post.count == 2 && streq (post.inputs[1].name, "vrms") &&
            post.inputs[1].value == 240.5);
    memset (&post, 0, sizeof post);
    assert (s_parse_full ("[1,2]", &post, &message) == -1 &&
            streq (message, "Input must be a JSON object"));
    assert (s_parse_full ("{\"a\":{\"b\":1}}", &post, &message) == -1);
    assert (s_parse_full ("{nope", &post, &message) == -1);

    //  input/bulk's time modes.
    s_post_t *posts = (s_post_t *)malloc (8 * sizeof (s_post_t));
    assert (posts);
    char data[256];
    size_t count = 0;
    //  emonhub: absolute times with sentat = the sender's now.
    s_params_t params = {"sentat=1000", NULL, 0};
    snprintf (data, sizeof data, "[[990,10,150,250.5],[995,10,151,null,7]]");
    assert (s_parse_bulk (&params, data, 1002, posts, 8, &count, &message) == 0);
    assert (count == 2 && posts[0].time == 990 && posts[1].time == 995);
    count = 0;
    assert (s_parse_bulk (&params, data, 1100, posts, 8, &count, &message) == 0);
    assert (count == 2 && posts[0].time == 1090);
    assert (streq (posts[0].node, "10") && posts[1].count == 2);
    assert (streq (posts[1].inputs[1].name, "3") && posts[1].inputs[1].value == 7);
    //  IoTaWatt: time=<last sent>, offsets, a quoted node, nulls.
    params.query = "time=1700000000";
    count = 0;
    snprintf (data, sizeof data, "[[10,\"IotaWatt\",120.5,null,3.2],[20,\"IotaWatt\",{\"x\":1}]]");
    assert (s_parse_bulk (&params, data, 0, posts, 8, &count, &message) == 0);
    assert (count == 2 && posts[0].time == 1700000010 && streq (posts[0].node, "IotaWatt"));
    assert (posts[1].count == 1 && streq (posts[1].inputs[0].name, "x"));
    //  offset and legacy modes.
    params.query = "offset=-10";
    count = 0;
    snprintf (data, sizeof data, "[[-10,16,1137],[-6,19,1412,3077]]");
    assert (s_parse_bulk (&params, data, 100, posts, 8, &count, &message) == 0);
    assert (posts[0].time == 100 && posts[1].time == 104);
    params.query = NULL;
    count = 0;
    snprintf (data, sizeof data, "[[0,16,1137],[4,19,1412]]");
    assert (s_parse_bulk (&params, data, 100, posts, 8, &count, &message) == 0);
    assert (posts[0].time == 96 && posts[1].time == 100);
    count = 0;
    snprintf (data, sizeof data, "[]");
    assert (s_parse_bulk (&params, data, 100, posts, 8, &count, &message) == -1 &&
            streq (message, "Format error, json string supplied is not valid"));
    count = 0;
    snprintf (data, sizeof data, "[[1,{\"n\":1},5]]");
    assert (s_parse_bulk (&params, data, 100, posts, 8, &count, &message) == -1 &&
            streq (message, "Format error, node must not be an object"));
    count = 0;
    snprintf (data, sizeof data, "[[1,2,3],[1,2,3],[1,2,3]]");
    assert (s_parse_bulk (&params, data, 100, posts, 2, &count, &message) == -1);
    free (posts);

    //  Mapping: node:input exactly, and the name cleaning Emoncms does.
    s_mapped_t mapped[2] = {{"00000000-0000-4000-8000-000000000001", "emontx:power1"},
                            {"00000000-0000-4000-8000-000000000002", "emon:tx:power1"}};
    assert (s_find_mapped (mapped, 2, "emontx", "power1") == &mapped[0]);
    assert (!s_find_mapped (mapped, 2, "emon", "power1"));
    assert (!s_find_mapped (mapped, 2, "emontx", "power"));
    char clean[S_FIELD_MAX + 1];
    s_clean_name ("emon\"tx<1>", clean);
    assert (streq (clean, "emontx1"));
    if (verbose)
        printf ("(verbose) ");
    printf ("OK\n");
}
