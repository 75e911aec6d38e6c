/*  =========================================================================
    gateway_api_devices - /api/devices: a user's devices and their tokens

    After a change the sensor path depends on commits, the cache is
    refreshed at once so the very next reading sees it.
    =========================================================================
*/
#include "gateway_api.h"

#include <sodium.h>

#define S_DEVICE_COLUMNS                                                                           \
    "id, name, token_hash IS NOT NULL, " GATEWAY_API_MS ("token_created_at") ", " GATEWAY_API_MS ( \
        "token_last_used_at") ", " GATEWAY_API_MS ("created_at") ", " GATEWAY_API_MS ("token_"     \
                                                                                      "expires_"   \
                                                                                      "at") ", "   \
                                                                                            "mqtt" \
                                                                                            "_nam" \
                                                                                            "e"
#define S_MQTT_NAME_COLUMN 7

//  Of S_DEVICE_COLUMNS.
static const gateway_api_member_t s_device_members[] = {
    {"id", 0, GATEWAY_API_INTEGER},           {"name", 1, GATEWAY_API_TEXT},
    {"hasToken", 2, GATEWAY_API_BOOL},        {"tokenCreatedAt", 3, GATEWAY_API_TIME},
    {"tokenLastUsedAt", 4, GATEWAY_API_TIME}, {"createdAt", 5, GATEWAY_API_TIME},
    {"tokenExpiresAt", 6, GATEWAY_API_TIME},  {0}};

//  ==========================================================================
//  /api/devices

//  A device's JSON: its columns, and what to type into a plug's MQTT page
//  (README "Connect a Tasmota, Shelly or ESPHome plug"): the broker's
//  address (mqtt_host; the page shows its own host when that is a
//  loopback or wildcard address), user and topic = the device's MQTT name,
//  password = the device token. tlsPort is null when the broker has no TLS
//  listener.
static json_t *
s_device_object (gateway_api_request_t *request, PGresult *result, int row)
{
    json_t *object = gateway_api_object_from_row (result, row, s_device_members);
    proto_config_t *config = request->gateway->config;
    const char *host = config ? proto_config_str (config, "mqtt_host") : NULL;
    int64_t port = config ? proto_config_int (config, "mqtt_port") : 1883;
    int64_t tls_port = config ? proto_config_int (config, "mqtt_tls_port") : 0;
    const char *name = PQgetvalue (result, row, S_MQTT_NAME_COLUMN);
    json_t *mqtt = json_pack ("{s:s, s:I, s:o, s:s, s:s}", "host", host ? host : "127.0.0.1",
                              "port", (json_int_t)port, "tlsPort",
                              tls_port > 0 ? json_integer (tls_port) : json_null (), "user", name,
                              "topic", name);
    json_object_set_new (object, "mqtt", mqtt);
    return object;
}

//  Answers {device} from a one-row result, and the token when there is one;
//  then refreshes the cache entry when asked (the statement has committed
//  by now).
static int
s_send_device (gateway_api_request_t *request, PGresult *result, int status, const char *message,
               const char *token, bool refresh)
{
    int64_t device = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    json_t *data = json_pack ("{s:o}", "device", s_device_object (request, result, 0));
    if (token)
        json_object_set_new (data, "token", json_string (token));
    PQclear (result);
    if (refresh)
        gateway_cache_refresh_device (request->gateway->cache, device);
    return gateway_http_send_data (request->conn, status, message, data);
}

static int
s_devices_list (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
                                        "SELECT " S_DEVICE_COLUMNS
                                        " FROM devices WHERE user_id = $1::bigint ORDER BY id",
                                        1, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (list, s_device_object (request, result, row));
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "devices", list);
}

//  Create and rename: a body {name}; sql gets $1 the user, $2 the name and,
//  when count is 3, $3 the device.
static int
s_devices_save (gateway_api_request_t *request, const char *sql, int count, int success,
                const char *message)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *name;
    if ((status = gateway_api_field_string (request, body, "name", true, 1, GATEWAY_API_NAME_MAX,
                                            &name)) == 0) {
        const char *values[] = {request->user_text, name, request->segments[1]};
        PGresult *result = gateway_api_run_found (request, &status, sql, count, values);
        if (result)
            status = s_send_device (request, result, success, message, NULL, false);
    }
    json_decref (body);
    return status;
}

static int
s_devices_create (gateway_api_request_t *request)
{
    return s_devices_save (
        request,
        "INSERT INTO devices (user_id, name) VALUES ($1::bigint, $2) RETURNING " S_DEVICE_COLUMNS,
        2, 201, "Device created");
}

static int
s_devices_update (gateway_api_request_t *request)
{
    return s_devices_save (
        request,
        "UPDATE devices SET name = $2 WHERE id = $3::bigint AND user_id = $1::bigint"
        " RETURNING " S_DEVICE_COLUMNS,
        3, 200, "Device updated");
}

static int
s_devices_get (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "SELECT " S_DEVICE_COLUMNS " FROM devices WHERE id = $1::bigint AND user_id = $2::bigint",
        2, values);
    return result ? s_send_device (request, result, 200, NULL, NULL, false) : status;
}

//  Issues a new token. The current one, if any, becomes the previous one and
//  stays valid for a 5-minute grace, so a board can be re-flashed without
//  losing readings; the one before that is dropped.
//  An optional body {expiresInDays: 1..3650} makes the token expire; the
//  cache stops accepting it then. {"format": "emoncms"} issues it as an
//  Emoncms apikey (gateway_emoncms).
static int
s_devices_token_create (gateway_api_request_t *request)
{
    const struct mg_request_info *info = mg_get_request_info (request->conn);
    char days_text[24] = "";
    bool emoncms = false;
    int status;
    if (info && info->content_length > 0) {
        json_t *body;
        if ((status = gateway_api_read_body (request, &body)))
            return status;
        int64_t days;
        bool present;
        status = gateway_api_field_integer (request, body, "expiresInDays", false, 1, 3650, &days,
                                            &present);
        //  "emoncms": emonhub and IoTaWatt take only an apikey of 32 hex
        //  digits (IoTaWatt decodes it to 16 bytes), so such a token is 128
        //  random bits in that form; it is looked up like any other.
        json_t *format = json_object_get (body, "format");
        if (!status && format) {
            if (json_is_string (format) && streq (json_string_value (format), "emoncms"))
                emoncms = true;
            else if (!(json_is_string (format) && streq (json_string_value (format), "default")))
                status = gateway_api_invalid_field (request, "format",
                                                    "Use \"default\" or \"emoncms\".");
        }
        json_decref (body);
        if (status)
            return status;
        if (present)
            snprintf (days_text, sizeof days_text, "%" PRId64, days);
    }
    char token[GATEWAY_API_TOKEN_CHARS + 1], token_hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    if (emoncms) {
        uint8_t random[16];
        randombytes_buf (random, sizeof random);
        sodium_bin2hex (token, sizeof token, random, sizeof random);
        sodium_memzero (random, sizeof random);
        gateway_api_token_hash_text (token, token_hash);
    }
    const char *values[] = {request->segments[1], request->user_text, token_hash,
                            *days_text ? days_text : NULL};
    //  SET expressions see the row as it was, so token_hash on the right is the old one.
    PGresult *result = gateway_api_run_found (
        request, &status,
        "UPDATE devices SET previous_token_hash = token_hash,"
        " previous_token_expires_at = CASE WHEN token_hash IS NULL THEN NULL"
        "                             ELSE now () + interval '5 minutes' END,"
        " token_hash = $3::bytea, token_created_at = now (),"
        " token_expires_at = now () + $4::integer * interval '1 day',"
        " token_last_used_at = NULL"
        " WHERE id = $1::bigint AND user_id = $2::bigint RETURNING " S_DEVICE_COLUMNS,
        4, values);
    return result ? s_send_device (request, result, 201, "Device token created", token, true)
                  : status;
}

//  Revokes current and previous token at once: a leaked token stops now.
static int
s_devices_token_revoke (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "UPDATE devices SET token_hash = NULL, token_created_at = NULL, token_expires_at = NULL,"
        " previous_token_hash = NULL, previous_token_expires_at = NULL"
        " WHERE id = $1::bigint AND user_id = $2::bigint RETURNING " S_DEVICE_COLUMNS,
        2, values);
    return result ? s_send_device (request, result, 200, "Device token revoked", NULL, true)
                  : status;
}

//  The device goes with its ports (foreign key cascade, episodes with them)
//  and their readings, which have no foreign key, in one statement. All
//  parts see the rows as they were, so "ports" still lists what the cascade
//  removes.
static int
s_devices_delete (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "WITH device AS (DELETE FROM devices WHERE id = $1::bigint AND user_id = $2::bigint"
        "                RETURNING id),"
        " owned AS (SELECT id FROM ports WHERE device_id IN (SELECT id FROM device)),"
        " readings AS (DELETE FROM readings WHERE port_id IN (SELECT id FROM owned)),"
        " keys AS (DELETE FROM reading_keys WHERE device_id IN (SELECT id FROM device))"
        " SELECT (SELECT id FROM device), id::text FROM owned"
        " UNION ALL SELECT id, NULL FROM device",
        2, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    gateway_cache_refresh_device (request->gateway->cache,
                                  strtoll (request->segments[1], NULL, 10));
    for (int row = 0; row < rows; row++)
        if (!PQgetisnull (result, row, 1))
            gateway_cache_refresh_port (request->gateway->cache, PQgetvalue (result, row, 1));
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, "Device deleted", json_object ());
}

//  ==========================================================================
//  /api/devices/:id/mqtt-channels: which port each channel of a plug feeds
//  (mqtt_channels, migration 017), and moving a channel onto another port.

//  phantom-mqtt LISTENs here and drops the cached mapping the payload
//  "<mqtt name>\t<channel>" names (services/mqtt/mqtt_channels.h, which the
//  gateway does not include: the same literal).
#define S_MQTT_NOTIFY "phantom_mqtt_channels"
//  services/mqtt/mqtt_parse.h MQTT_PARSE_CHANNEL_MAX: a longer name is
//  never published, so never mapped.
#define S_CHANNEL_MAX 32

#define S_CHANNEL_COLUMNS                                                                          \
    "c.channel, c.port_id::text, p.name, c.is_new, " GATEWAY_API_MS ("c.created_at")

static const gateway_api_member_t s_channel_members[] = {
    {"channel", 0, GATEWAY_API_TEXT},   {"portId", 1, GATEWAY_API_TEXT},
    {"portName", 2, GATEWAY_API_TEXT},  {"isNew", 3, GATEWAY_API_BOOL},
    {"createdAt", 4, GATEWAY_API_TIME}, {0}};

//  The characters the channel names phantom-mqtt makes use
//  (services/mqtt/mqtt_parse.c): Tasmota "1".."8", Shelly Gen2+ "switch:0",
//  Gen1 "relay:0", ESPHome sensor object ids (lower case, digits, _ and -).
static bool
s_channel_valid (const char *channel)
{
    size_t length = strlen (channel);
    return length >= 1 && length <= S_CHANNEL_MAX &&
           strspn (channel,
                   "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_:/.-") == length;
}

//  The device's channels in natural order ("2" before "10"); 404 when the
//  device is not the user's. The device row comes once even without
//  channels (LEFT JOIN), so an empty list and "not yours" differ.
static int
s_channels_list (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "SELECT " S_CHANNEL_COLUMNS " FROM devices d"
        " LEFT JOIN (mqtt_channels c JOIN ports p ON p.id = c.port_id) ON c.device_id = d.id"
        " WHERE d.id = $1::bigint AND d.user_id = $2::bigint"
        " ORDER BY length (c.channel), c.channel",
        2, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        if (!PQgetisnull (result, row, 0))
            json_array_append_new (list,
                                   gateway_api_object_from_row (result, row, s_channel_members));
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "channels", list);
}

//  Body {channel, portId}: the channel (published already, or not yet: a
//  plug's first message then goes to that port, none is created) feeds
//  portId, one of the user's ports, from its next message on. The channel
//  is in the body, not the path: a name the firmware chose (a Shelly JSON
//  key, an ESPHome object id) then needs no URL escaping. A port fed by another channel is 409
//  port_mapped (one channel per port: mqtt_channels_port_idx). The port the channel fed before
//  keeps its history. PostgreSQL delivers the NOTIFY at commit; phantom-mqtt drops its cached
//  answer when it reads it (docs/figures-and-api.md: the bound).
static int
s_channels_map (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *channel = NULL, *port = NULL;
    if ((status = gateway_api_field_string (request, body, "channel", true, 1, S_CHANNEL_MAX,
                                            &channel)) == 0 &&
        !s_channel_valid (channel))
        status = gateway_api_invalid_field (
            request, "channel",
            "Use the channel the plug publishes: 1 to 32 of letters, digits, _ : / . -");
    if (!status &&
        (status = gateway_api_field_string (request, body, "portId", true, 1, 64, &port)) == 0 &&
        !gateway_api_is_uuid (port))
        status = gateway_api_invalid_field (request, "portId", "Use the id of one of your ports.");
    if (!status) {
        const char *values[] = {request->segments[1], request->user_text, channel, port};
        request->conflict_code = "port_mapped";
        request->conflict_message = "Another channel feeds this port";
        //  No row: the device or the port is not the user's (404).
        PGresult *result = gateway_api_run_found (
            request, &status,
            "WITH d AS (SELECT id, mqtt_name FROM devices"
            "           WHERE id = $1::bigint AND user_id = $2::bigint),"
            " p AS (SELECT id, name FROM ports WHERE id = $4::uuid AND user_id = $2::bigint),"
            " c AS (INSERT INTO mqtt_channels AS m (device_id, channel, port_id, is_new)"
            "       SELECT d.id, $3, p.id, false FROM d, p"
            "       ON CONFLICT (device_id, channel) DO UPDATE"
            "       SET port_id = EXCLUDED.port_id, is_new = false"
            "       RETURNING m.channel, m.port_id, m.is_new, m.created_at)"
            " SELECT " S_CHANNEL_COLUMNS ", pg_notify ('" S_MQTT_NOTIFY "',"
            "        d.mqtt_name || E'\\t' || c.channel)"
            " FROM c, p, d",
            4, values);
        if (result)
            status = gateway_api_send_row (request, 200, "Channel mapped", result, "channel",
                                           s_channel_members);
    }
    json_decref (body);
    return status;
}

const gateway_api_route_t gateway_api_devices_routes[] = {
    {"GET", "devices", true, s_devices_list},
    {"POST", "devices", true, s_devices_create},
    {"GET", "devices/:id", true, s_devices_get},
    {"PATCH", "devices/:id", true, s_devices_update},
    {"DELETE", "devices/:id", true, s_devices_delete},
    {"POST", "devices/:id/token", true, s_devices_token_create},
    {"DELETE", "devices/:id/token", true, s_devices_token_revoke},
    {"GET", "devices/:id/mqtt-channels", true, s_channels_list},
    {"PUT", "devices/:id/mqtt-channels", true, s_channels_map},
    {0}};
