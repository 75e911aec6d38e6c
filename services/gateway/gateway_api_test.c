/*  =========================================================================
    gateway_api_test - the user API's self test: the pure helpers always;
    every route over real HTTP against PHANTOM_TEST_DATABASE (a migrated
    database) when it is set, including an authorization loop over every
    route table: no session is 401, another user's id is 404.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_fixture.h"
#include "gateway_listener.h"

#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sodium.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

//  An Authorization header line for token; the buffer is the caller's.
static const char *
s_bearer (const char *token, char buffer[128])
{
    snprintf (buffer, 128, "Authorization: Bearer %s\r\n", token);
    return buffer;
}

//  First cell of a one-parameter query (NULL: none); caller frees.
static char *
s_sql_value (PGconn *pg, const char *sql, const char *parameter)
{
    const char *values[] = {parameter};
    return gateway_fixture_sql (pg, sql, parameter ? 1 : 0, values);
}

static void
s_sha256_hex (const char *token, char out[65])
{
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *)token, strlen (token));
    sodium_bin2hex (out, 65, digest, sizeof digest);
}

static bool
s_cache_knows (gateway_cache_t *cache, const char *token)
{
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *)token, strlen (token));
    gateway_device_t device;
    return gateway_cache_device (cache, digest, &device);
}

static char *
s_test_register (gateway_fixture_client_t *client, const char *email, const char *name)
{
    char *body = zsys_sprintf ("{\"email\":\"%s\",\"password\":\"correct horse\",\"name\":\"%s\"}",
                               email, name);
    int status = gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body);
    zstr_free (&body);
    assert (status == 201);
    assert (json_is_true (json_object_get (client->body, "success")));
    assert (
        streq (json_string_value (json_object_get (client->body, "message")), "User registered"));
    json_t *user = gateway_fixture_data (client, "user");
    assert (json_integer_value (json_object_get (user, "id")) > 0);
    assert (streq (json_string_value (json_object_get (user, "name")), name));
    const char *token = json_string_value (gateway_fixture_data (client, "token"));
    assert (token && gateway_api_token_valid (token));
    return strdup (token);
}

static void
s_test_auth (gateway_fixture_client_t *client, const char *suffix, char **token_a, char **token_b)
{
    char auth[128], email[128], body[512];
    //  Mixed case in, lower case stored and unique regardless of case.
    snprintf (email, sizeof email, "Ann.%s@Example.com", suffix);
    *token_a = s_test_register (client, email, "Ann");
    char lower[GATEWAY_API_EMAIL_MAX + 1];
    gateway_api_email_normalize (email, lower);
    assert (
        streq (json_string_value (json_object_get (gateway_fixture_data (client, "user"), "email")),
               lower));
    snprintf (body, sizeof body,
              "{\"email\":\"ANN.%s@example.COM\",\"password\":\"something else\","
              "\"name\":\"Other\"}",
              suffix);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 409);
    assert (streq (gateway_fixture_error_code (client), "email_taken"));

    //  Validation: each message names the field.
    assert (gateway_fixture_call (
                client, "POST", "/api/auth/register", NULL,
                "{\"email\":\"nobody\",\"password\":\"long enough\",\"name\":\"N\"}") == 400);
    assert (streq (gateway_fixture_error_code (client), "validation_error"));
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL,
                                  "{\"email\":\"x@y.z\",\"password\":\"short\",\"name\":\"N\"}") ==
            400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "password"));
    assert (gateway_fixture_call (
                client, "POST", "/api/auth/register", NULL,
                "{\"email\":\"x@y.z\",\"password\":\"long enough\",\"name\":42}") == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "name"));
    assert (gateway_fixture_call (
                client, "POST", "/api/auth/register", NULL,
                "{\"email\":\"x@y.z\",\"password\":\"long\\u0000enough\",\"name\":\"N\"}") == 400);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, "[1]") == 400);

    //  Wrong password and unknown email: same 401, same message.
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"wrong horse\"}", email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, body) == 401);
    assert (streq (gateway_fixture_error_code (client), "invalid_credentials"));
    char *message = strdup (json_string_value (json_object_get (client->body, "message")));
    snprintf (body, sizeof body,
              "{\"email\":\"nobody.%s@example.com\",\"password\":\"correct horse\"}", suffix);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, body) == 401);
    assert (streq (gateway_fixture_error_code (client), "invalid_credentials"));
    assert (streq (json_string_value (json_object_get (client->body, "message")), message));
    free (message);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL,
                                  "{\"email\":1,\"password\":\"x\"}") == 400);

    //  Login: a new session, as bearer token and as cookie.
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"correct horse\"}", lower);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, body) == 200);
    const char *login_token = json_string_value (gateway_fixture_data (client, "token"));
    assert (login_token && gateway_api_token_valid (login_token) && !streq (login_token, *token_a));
    char *login = strdup (login_token);
    char cookie_line[128];
    snprintf (cookie_line, sizeof cookie_line,
              "Set-Cookie: pw_session=%s; HttpOnly; SameSite=Strict;"
              " Path=/; Max-Age=2592000",
              login);
    assert (strcasestr (client->head, cookie_line));

    assert (gateway_fixture_call (client, "GET", "/api/auth/me", NULL, NULL) == 401);
    assert (streq (gateway_fixture_error_code (client), "unauthorized"));
    assert (gateway_fixture_call (client, "GET", "/api/auth/me",
                                  "Authorization: Bearer nonsense\r\n", NULL) == 401);
    char unknown[GATEWAY_API_TOKEN_CHARS + 1], unknown_hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (unknown, unknown_hash);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (unknown, auth), NULL) ==
            401);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (login, auth), NULL) ==
            200);
    assert (
        streq (json_string_value (json_object_get (gateway_fixture_data (client, "user"), "email")),
               lower));

    //  Cookie sessions: reads pass, changes need X-Requested-With or our Origin.
    char cookie[128];
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\n", login);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", cookie, NULL) == 200);
    assert (gateway_fixture_call (client, "POST", "/api/devices", cookie, "{\"name\":\"csrf\"}") ==
            403);
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\nOrigin: http://evil.example\r\n",
              login);
    assert (gateway_fixture_call (client, "POST", "/api/auth/logout", cookie, NULL) == 403);
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\nX-Requested-With: fetch\r\n", login);
    assert (gateway_fixture_call (client, "POST", "/api/auth/logout", cookie, NULL) == 200);
    assert (strcasestr (client->head, "Set-Cookie: pw_session=;"));
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (login, auth), NULL) ==
            401);
    free (login);

    snprintf (email, sizeof email, "bob.%s@example.com", suffix);
    *token_b = s_test_register (client, email, "Bob");
}

//  Device token issue, rotation and revocation, checked in the database and
//  in the cache the sensor path reads.
static void
s_test_device_tokens (gateway_fixture_client_t *client, gateway_t *gateway, PGconn *pg,
                      const char *auth, const char *device)
{
    char path[96], hex[65];
    snprintf (path, sizeof path, "/api/devices/%s/token", device);
    assert (gateway_fixture_call (client, "POST", path, auth, NULL) == 201);
    char *first = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (strlen (first) >= 43 && strlen (first) <= 64);
    assert (json_is_true (json_object_get (gateway_fixture_data (client, "device"), "hasToken")));
    assert (json_is_string (
        json_object_get (gateway_fixture_data (client, "device"), "tokenCreatedAt")));
    char *stored = s_sql_value (
        pg, "SELECT encode (token_hash, 'hex') FROM devices WHERE id = $1::bigint", device);
    s_sha256_hex (first, hex);
    assert (stored && streq (stored, hex));
    free (stored);
    assert (s_cache_knows (gateway->cache, first));

    //  Rotation: the first token moves to previous with a 5-minute grace.
    assert (gateway_fixture_call (client, "POST", path, auth, NULL) == 201);
    char *second = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (!streq (first, second));
    stored =
        s_sql_value (pg,
                     "SELECT encode (previous_token_hash, 'hex') FROM devices"
                     " WHERE id = $1::bigint AND previous_token_expires_at"
                     " BETWEEN now () + interval '4 minutes' AND now () + interval '6 minutes'",
                     device);
    assert (stored && streq (stored, hex));
    free (stored);
    stored = s_sql_value (
        pg, "SELECT encode (token_hash, 'hex') FROM devices WHERE id = $1::bigint", device);
    s_sha256_hex (second, hex);
    assert (stored && streq (stored, hex));
    free (stored);
    assert (s_cache_knows (gateway->cache, first));
    assert (s_cache_knows (gateway->cache, second));

    //  Revocation: both stop at once.
    assert (gateway_fixture_call (client, "DELETE", path, auth, NULL) == 200);
    assert (json_is_false (json_object_get (gateway_fixture_data (client, "device"), "hasToken")));
    stored = s_sql_value (pg,
                          "SELECT 1 FROM devices WHERE id = $1::bigint AND token_hash IS NULL"
                          " AND previous_token_hash IS NULL AND previous_token_expires_at IS NULL",
                          device);
    assert (stored);
    free (stored);
    assert (!s_cache_knows (gateway->cache, first));
    assert (!s_cache_knows (gateway->cache, second));
    free (first);
    free (second);
}

static void
s_test_resources (gateway_fixture_client_t *client, gateway_t *gateway, PGconn *pg,
                  const char *token_a, const char *token_b)
{
    char auth_a[128], auth_b[128], path[128], body[512];
    s_bearer (token_a, auth_a);
    s_bearer (token_b, auth_b);

    assert (gateway_fixture_call (client, "GET", "/api/devices", NULL, NULL) == 401);
    assert (gateway_fixture_call (client, "GET", "/api/devices", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "devices")) == 0);
    assert (gateway_fixture_call (client, "POST", "/api/devices", auth_a, "{\"name\":\"\"}") ==
            400);
    assert (gateway_fixture_call (client, "POST", "/api/devices", auth_a, "{\"name\":[\"x\"]}") ==
            400);
    assert (gateway_fixture_call (client, "POST", "/api/devices", auth_a,
                                  "{\"name\":\"Kitchen board\"}") == 201);
    json_t *device = gateway_fixture_data (client, "device");
    int64_t device_id = json_integer_value (json_object_get (device, "id"));
    assert (device_id > 0);
    assert (json_is_false (json_object_get (device, "hasToken")));
    assert (json_is_null (json_object_get (device, "tokenCreatedAt")));
    const char *created = json_string_value (json_object_get (device, "createdAt"));
    assert (created && strlen (created) == 24 && created[23] == 'Z');
    char device_text[24];
    snprintf (device_text, sizeof device_text, "%" PRId64, device_id);

    //  The MQTT settings a plug needs: user and topic are the device's
    //  MQTT name (migration 017), the broker's address from the config.
    json_t *mqtt = json_object_get (device, "mqtt");
    char *mqtt_user = strdup (json_string_value (json_object_get (mqtt, "user")));
    assert (mqtt_user && strncmp (mqtt_user, "pw-", 3) == 0 && strlen (mqtt_user) == 13);
    assert (streq (json_string_value (json_object_get (mqtt, "topic")), mqtt_user));
    assert (json_integer_value (json_object_get (mqtt, "port")) > 0);
    assert (json_string_value (json_object_get (mqtt, "host")));
    assert (json_object_get (mqtt, "tlsPort"));

    assert (gateway_fixture_call (client, "GET", "/api/devices", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "devices")) == 1);
    assert (streq (
        json_string_value (json_object_get (
            json_object_get (json_array_get (gateway_fixture_data (client, "devices"), 0), "mqtt"),
            "user")),
        mqtt_user));
    free (mqtt_user);
    snprintf (path, sizeof path, "/api/devices/%s", device_text);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (streq (
        json_string_value (json_object_get (gateway_fixture_data (client, "device"), "name")),
        "Kitchen board"));
    //  Another user's device does not exist for them; nor does garbage.
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);
    assert (streq (gateway_fixture_error_code (client), "not_found"));
    assert (gateway_fixture_call (client, "GET", "/api/devices", auth_b, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "devices")) == 0);
    snprintf (path, sizeof path, "/api/devices/%s/token", device_text);
    assert (gateway_fixture_call (client, "POST", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/devices/12x", auth_a, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/devices/1234567890123456789", auth_a,
                                  NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/devices/999999999999", auth_a, NULL) == 404);

    s_test_device_tokens (client, gateway, pg, auth_a, device_text);

    //  Ports.
    assert (gateway_fixture_call (client, "GET", "/api/ports", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "ports")) == 0);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_b, body) == 404);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":\"%s\"}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "deviceId"));
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"offWatts\":\"1\"}",
              device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "offWatts"));
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"offWatts\":20}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    //  The settings that roles replaced are refused, each by its name
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"expectedOff\":\"window\"}",
              device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "expectedOff"));
    //  A name of white space is no name; nor is a missing one
    snprintf (body, sizeof body, "{\"name\":\" \\t \\n \",\"deviceId\":%s}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "name"));
    assert (streq (json_string_value (json_object_get (client->body, "message")), "Enter a name."));
    snprintf (body, sizeof body, "{\"deviceId\":%s}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "name"));
    //  A role by its API name only; a schedule only for should be off
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"role\":\"should_be_off\"}",
              device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "role"));
    snprintf (body, sizeof body,
              "{\"name\":\"TV\",\"deviceId\":%s,\"offSchedule\":[{\"days\":"
              "[\"mon\"],\"from\":\"22:00\",\"to\":\"07:00\"}]}",
              device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "offSchedule"));

    snprintf (body, sizeof body, "{\"name\":\"  TV \",\"deviceId\":%s}", device_text);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 201);
    json_t *port = gateway_fixture_data (client, "port");
    char *port_id = strdup (json_string_value (json_object_get (port, "id")));
    assert (gateway_api_is_uuid (port_id));
    assert (streq (json_string_value (json_object_get (port, "name")), "TV"));
    assert (json_integer_value (json_object_get (port, "deviceId")) == device_id);
    //  Never reported: waiting; offline after the gateway's setting
    assert (streq (json_string_value (json_object_get (port, "status")), "waiting"));
    assert (json_integer_value (json_object_get (port, "offlineAfterSeconds")) == 240);
    assert (!json_object_get (port, "alwaysOnWatts"));
    json_t *settings = json_object_get (port, "settings");
    assert (json_number_value (json_object_get (settings, "offWatts")) == 0.5);
    assert (json_number_value (json_object_get (settings, "standbyWatts")) == 15);
    assert (json_integer_value (json_object_get (settings, "minPhantomSeconds")) == 60);
    assert (streq (json_string_value (json_object_get (settings, "role")), "standby"));
    assert (json_is_null (json_object_get (settings, "offSchedule")));
    assert (!json_object_get (settings, "expectedOff"));
    gateway_port_t cached;
    assert (gateway_cache_port (gateway->cache, port_id, &cached));
    assert (cached.device == device_id);
    assert (cached.settings.role == PROTO_ROLE_STANDBY && cached.settings.windows[0] == 0);

    //  Should be off on a schedule: stored, answered and cached as sent
    const char *schedule = "[{\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"],"
                           "\"from\":\"09:00\",\"to\":\"17:00\"},"
                           "{\"days\":[\"sat\"],\"from\":\"23:00\",\"to\":\"06:30\"}]";
    snprintf (body, sizeof body,
              "{\"name\":\"Lamp\",\"deviceId\":%s,\"offWatts\":1,"
              "\"standbyWatts\":7.5,\"minPhantomSeconds\":120,\"role\":\"shouldBeOff\","
              "\"offSchedule\":%s}",
              device_text, schedule);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 201);
    port = gateway_fixture_data (client, "port");
    settings = json_object_get (port, "settings");
    assert (json_number_value (json_object_get (settings, "standbyWatts")) == 7.5);
    assert (streq (json_string_value (json_object_get (settings, "role")), "shouldBeOff"));
    json_t *sent = json_loads (schedule, 0, NULL);
    assert (sent && json_equal (json_object_get (settings, "offSchedule"), sent));
    json_decref (sent);
    assert (gateway_cache_port (gateway->cache, json_string_value (json_object_get (port, "id")),
                                &cached));
    assert (cached.settings.role == PROTO_ROLE_SHOULD_BE_OFF);
    assert (cached.settings.windows[0] == PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60));
    assert (cached.settings.windows[1] == PROTO_WINDOW_PACK (0x20, 23 * 60, 6 * 60 + 30));
    assert (cached.settings.windows[2] == 0);

    assert (gateway_fixture_call (client, "GET", "/api/ports", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "ports")) == 2);
    assert (gateway_fixture_call (client, "GET", "/api/ports", auth_b, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "ports")) == 0);
    snprintf (path, sizeof path, "/api/ports/%s", port_id);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (streq (
        json_string_value (json_object_get (gateway_fixture_data (client, "port"), "name")), "TV"));
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/ports/42", auth_a, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/ports/00000000-0000-0000-0000-000000000000",
                                  auth_a, NULL) == 404);

    //  Notifications: newest first, paged by id, unread counted.
    char *user_a =
        s_sql_value (pg, "SELECT user_id::text FROM devices WHERE id = $1::bigint", device_text);
    assert (user_a);
    const char *values[] = {user_a, port_id};
    PGresult *result = PQexecParams (
        pg,
        "INSERT INTO notifications (user_id, port_id, kind, dedupe_key, title, message, data, "
        "read_at)"
        " SELECT $1::bigint, $2::uuid, 'phantom.start', 'test-' || n, 'Phantom ' || n, 'Draw', "
        " '{\"watts\": 3.5}', CASE WHEN n = 1 THEN now () END FROM generate_series (1, 3) n",
        2, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_COMMAND_OK);
    PQclear (result);
    free (user_a);
    assert (gateway_fixture_call (client, "GET", "/api/notifications?limit=2", auth_a, NULL) ==
            200);
    json_t *list = gateway_fixture_data (client, "notifications");
    assert (json_array_size (list) == 2);
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 2);
    json_t *newest = json_array_get (list, 0);
    assert (streq (json_string_value (json_object_get (newest, "title")), "Phantom 3"));
    assert (streq (json_string_value (json_object_get (newest, "portId")), port_id));
    assert (json_is_false (json_object_get (newest, "read")));
    assert (json_number_value (json_object_get (json_object_get (newest, "data"), "watts")) == 3.5);
    int64_t oldest_shown = json_integer_value (json_object_get (json_array_get (list, 1), "id"));
    snprintf (path, sizeof path, "/api/notifications?before=%" PRId64, oldest_shown);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    list = gateway_fixture_data (client, "notifications");
    assert (json_array_size (list) == 1);
    assert (json_is_true (json_object_get (json_array_get (list, 0), "read")));
    assert (gateway_fixture_call (client, "GET", "/api/notifications", auth_b, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "notifications")) == 0);
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 0);
    assert (gateway_fixture_call (client, "GET", "/api/notifications?limit=abc", auth_a, NULL) ==
            400);
    assert (gateway_fixture_call (client, "GET", "/api/notifications?limit=201", auth_a, NULL) ==
            400);
    assert (gateway_fixture_call (client, "GET", "/api/notifications?before=x1", auth_a, NULL) ==
            400);
    free (port_id);

    //  Unknown routes and methods.
    assert (gateway_fixture_call (client, "GET", "/api/nothing/here", auth_a, NULL) == 404);
    assert (streq (gateway_fixture_error_code (client), "not_found"));
    assert (gateway_fixture_call (client, "PUT", "/api/devices", auth_a, "{}") == 405);
    assert (gateway_fixture_call (client, "GET", "/api/auth/login", NULL, NULL) == 405);

    //  An expired session is no session.
    char hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_hash_text (token_b, hash);
    const char *expire[] = {hash};
    result = PQexecParams (pg,
                           "UPDATE sessions SET expires_at = now () - interval '1 second'"
                           " WHERE token_hash = $1::bytea",
                           1, NULL, expire, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_COMMAND_OK && streq (PQcmdTuples (result), "1"));
    PQclear (result);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", auth_b, NULL) == 401);
}

//  The user id of a session token, as text; caller frees.
static char *
s_user_of (PGconn *pg, const char *token)
{
    char hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_hash_text (token, hash);
    const char *values[] = {hash};
    char *user = gateway_fixture_sql (
        pg, "SELECT user_id::text FROM sessions WHERE token_hash = $1::bytea", 1, values);
    assert (user);
    return user;
}

//  POSTs a device (201) and returns its id as text; caller frees.
static char *
s_make_device (gateway_fixture_client_t *client, const char *auth, const char *name)
{
    char body[128];
    snprintf (body, sizeof body, "{\"name\":\"%s\"}", name);
    assert (gateway_fixture_call (client, "POST", "/api/devices", auth, body) == 201);
    return zsys_sprintf ("%" PRId64, (int64_t)json_integer_value (json_object_get (
                                         gateway_fixture_data (client, "device"), "id")));
}

//  POSTs a port on device (201) and returns its uuid; caller frees.
static char *
s_make_port (gateway_fixture_client_t *client, const char *auth, const char *device,
             const char *name)
{
    char body[160];
    snprintf (body, sizeof body, "{\"name\":\"%s\",\"deviceId\":%s}", name, device);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth, body) == 201);
    return strdup (
        json_string_value (json_object_get (gateway_fixture_data (client, "port"), "id")));
}

static double
s_number (json_t *object, const char *key)
{
    json_t *value = json_object_get (object, key);
    assert (json_is_number (value));
    return json_number_value (value);
}

static bool
s_near (double value, double expected)
{
    return fabs (value - expected) < 1e-6;
}

//  A device's MQTT channels: listed in natural order with their ports,
//  mapped by hand onto one of the owner's ports (404 for another user's
//  device or port, field errors, 409 for a port another channel feeds),
//  and the NOTIFY phantom-mqtt drops its cached answer on.
static void
s_test_mqtt_channels (gateway_fixture_client_t *client, const char *database, PGconn *pg,
                      const char *auth_a, const char *auth_b)
{
    char path[160], body[256];
    char *device = s_make_device (client, auth_a, "Plug");
    char *auto_port = s_make_port (client, auth_a, device, "Plug 2");
    char *fridge = s_make_port (client, auth_a, device, "Fridge");
    char *other_device = s_make_device (client, auth_b, "Bob's plug");
    char *bob_port = s_make_port (client, auth_b, other_device, "Bob's TV");
    //  As phantom-mqtt creates a channel on first sight.
    const char *seen[] = {device, auto_port};
    free (gateway_fixture_sql (pg,
                               "INSERT INTO mqtt_channels (device_id, channel, port_id, is_new)"
                               " VALUES ($1::bigint, '2', $2::uuid, true)",
                               2, seen));
    snprintf (path, sizeof path, "/api/devices/%s/mqtt-channels", device);
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    json_t *list = gateway_fixture_data (client, "channels");
    assert (json_array_size (list) == 1);
    json_t *first = json_array_get (list, 0);
    assert (streq (json_string_value (json_object_get (first, "channel")), "2"));
    assert (streq (json_string_value (json_object_get (first, "portId")), auto_port));
    assert (streq (json_string_value (json_object_get (first, "portName")), "Plug 2"));
    assert (json_is_true (json_object_get (first, "isNew")));
    assert (json_is_string (json_object_get (first, "createdAt")));

    //  Field errors, and nothing changed by them.
    snprintf (body, sizeof body, "{\"channel\":\"2\",\"portId\":\"fridge\"}");
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "portId"));
    snprintf (body, sizeof body, "{\"channel\":\"2\"}");
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "portId"));
    snprintf (body, sizeof body, "{\"channel\":\"two words\",\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "channel"));
    snprintf (body, sizeof body, "{\"channel\":\"\",\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "channel"));
    snprintf (body, sizeof body, "{\"channel\":\"%033d\",\"portId\":\"%s\"}", 1, fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "channel"));
    snprintf (body, sizeof body, "{\"channel\":2,\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "channel"));
    //  Another user's port, another user's device, nobody's port: 404.
    snprintf (body, sizeof body, "{\"channel\":\"2\",\"portId\":\"%s\"}", bob_port);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 404);
    snprintf (body, sizeof body, "{\"channel\":\"2\",\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_b, body) == 404);
    snprintf (body, sizeof body,
              "{\"channel\":\"2\",\"portId\":\"00000000-0000-4000-8000-000000000000\"}");
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 404);
    char *check = gateway_fixture_sql (
        pg,
        "SELECT port_id::text FROM mqtt_channels WHERE device_id = $1::bigint AND channel = '2'", 1,
        (const char *const[]){device});
    assert (check && streq (check, auto_port));
    free (check);

    //  Moved: the answer, the row, and a NOTIFY naming the cache key.
    PGconn *listen =
        gateway_listener_connect (database, "gateway_api_test", 0, "phantom_mqtt_channels", "test");
    assert (listen);
    snprintf (body, sizeof body, "{\"channel\":\"2\",\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 200);
    json_t *mapped = gateway_fixture_data (client, "channel");
    assert (streq (json_string_value (json_object_get (mapped, "channel")), "2"));
    assert (streq (json_string_value (json_object_get (mapped, "portId")), fridge));
    assert (streq (json_string_value (json_object_get (mapped, "portName")), "Fridge"));
    assert (json_is_false (json_object_get (mapped, "isNew")));
    char *name = gateway_fixture_sql (pg, "SELECT mqtt_name FROM devices WHERE id = $1::bigint", 1,
                                      (const char *const[]){device});
    char expected[80];
    snprintf (expected, sizeof expected, "%s\t2", name);
    PGnotify *notify = NULL;
    for (int attempt = 0; attempt < 200 && !notify; attempt++) {
        assert (PQconsumeInput (listen));
        if (!(notify = PQnotifies (listen)))
            zclock_sleep (10);
    }
    assert (notify && streq (notify->extra, expected));
    PQfreemem (notify);
    PQfinish (listen);
    //  Mapped before the plug published it: the first message finds it.
    snprintf (body, sizeof body, "{\"channel\":\"switch:0\",\"portId\":\"%s\"}", auto_port);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 200);
    //  One channel per port.
    snprintf (body, sizeof body, "{\"channel\":\"relay:1\",\"portId\":\"%s\"}", fridge);
    assert (gateway_fixture_call (client, "PUT", path, auth_a, body) == 409);
    assert (streq (gateway_fixture_error_code (client), "port_mapped"));
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    list = gateway_fixture_data (client, "channels");
    assert (json_array_size (list) == 2);
    assert (streq (json_string_value (json_object_get (json_array_get (list, 0), "channel")), "2"));
    assert (streq (json_string_value (json_object_get (json_array_get (list, 1), "portId")),
                   auto_port));
    //  Bob's device lists none.
    snprintf (path, sizeof path, "/api/devices/%s/mqtt-channels", other_device);
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "channels")) == 0);
    free (name);
    free (bob_port);
    free (other_device);
    free (fridge);
    free (auto_port);
    free (device);
}

//  PATCH and DELETE of devices and ports, token expiry, and what goes with
//  a deleted device or port (ports, episodes, readings, cache entries).
static void
s_test_changes (gateway_fixture_client_t *client, gateway_t *gateway, PGconn *pg,
                const char *auth_a, const char *auth_b)
{
    char path[160], body[256];
    char *device = s_make_device (client, auth_a, "Office");
    snprintf (path, sizeof path, "/api/devices/%s", device);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"name\":\"\"}") == 400);
    assert (gateway_fixture_call (client, "PATCH", path, auth_b, "{\"name\":\"Stolen\"}") == 404);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"name\":\"Study\"}") == 200);
    assert (streq (
        json_string_value (json_object_get (gateway_fixture_data (client, "device"), "name")),
        "Study"));

    //  Token expiry: stored, shown, and honoured by the cache.
    snprintf (path, sizeof path, "/api/devices/%s/token", device);
    assert (gateway_fixture_call (client, "POST", path, auth_a, "{\"expiresInDays\":0}") == 400);
    assert (gateway_fixture_call (client, "POST", path, auth_a, "{\"expiresInDays\":\"30\"}") ==
            400);
    assert (gateway_fixture_call (client, "POST", path, auth_a, "{\"expiresInDays\":30}") == 201);
    char *token = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (json_is_string (
        json_object_get (gateway_fixture_data (client, "device"), "tokenExpiresAt")));
    assert (json_object_get (gateway_fixture_data (client, "device"), "tokenLastUsedAt"));
    const char *values[] = {device};
    char *check =
        gateway_fixture_sql (pg,
                             "SELECT 1 FROM devices WHERE id = $1::bigint AND token_expires_at"
                             " BETWEEN now () + interval '29 days' AND now () + interval '31 days'",
                             1, values);
    assert (check);
    free (check);
    assert (s_cache_knows (gateway->cache, token));
    free (gateway_fixture_sql (pg,
                               "UPDATE devices SET token_expires_at = now () - interval '1 second'"
                               " WHERE id = $1::bigint",
                               1, values));
    gateway_cache_refresh_device (gateway->cache, atoll (device));
    assert (!s_cache_knows (gateway->cache, token));
    free (token);

    //  Port PATCH: validated as a whole port; the cache sees the change.
    char *port = s_make_port (client, auth_a, device, "Printer");
    snprintf (path, sizeof path, "/api/ports/%s", port);
    assert (gateway_fixture_call (client, "PATCH", path, auth_b, "{\"name\":\"Stolen\"}") == 404);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"standbyWatts\":0.2}") == 400);
    assert (streq (gateway_fixture_error_field (client), "standbyWatts"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"offWatts\":\"x\"}") == 400);
    //  A cleared number field is refused, naming the field, not stored as 0.
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"minPhantomSeconds\":null}") ==
            400);
    assert (streq (
        json_string_value (json_object_get (json_object_get (client->body, "error"), "field")),
        "minPhantomSeconds"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"offWatts\":null}") == 400);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"expectedOff\":\"window\"}") ==
            400);
    assert (streq (gateway_fixture_error_field (client), "expectedOff"));
    //  A blank name is refused, not ignored; a padded one trimmed
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"name\":\"   \"}") == 400);
    assert (streq (gateway_fixture_error_field (client), "name"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"name\":null}") == 400);
    assert (streq (gateway_fixture_error_field (client), "name"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"name\":\"\\tPrinter  \"}") ==
            200);
    assert (
        streq (json_string_value (json_object_get (gateway_fixture_data (client, "port"), "name")),
               "Printer"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a,
                                  "{\"name\":\"Laser printer\",\"standbyWatts\":9,"
                                  "\"settings\":{\"minPhantomSeconds\":90}}") == 200);
    json_t *port_json = gateway_fixture_data (client, "port");
    json_t *settings = json_object_get (port_json, "settings");
    assert (streq (json_string_value (json_object_get (port_json, "name")), "Laser printer"));
    assert (s_number (settings, "standbyWatts") == 9);
    assert (s_number (settings, "offWatts") == 0.5);
    assert (json_integer_value (json_object_get (settings, "minPhantomSeconds")) == 90);
    assert (!json_object_get (port_json, "alwaysOnWatts"));
    gateway_port_t cached;
    assert (gateway_cache_port (gateway->cache, port, &cached));
    assert (cached.settings.standby_watts == 9 && cached.settings.min_phantom_seconds == 90);
    //  Unnamed fields keep their values.
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"offWatts\":1}") == 200);
    settings = json_object_get (gateway_fixture_data (client, "port"), "settings");
    assert (s_number (settings, "standbyWatts") == 9 && s_number (settings, "offWatts") == 1);

    //  Roles and schedules. Each bad window is refused naming offSchedule,
    //  with a sentence, and changes nothing.
    const char *bad[][2] = {
        {"[{\"days\":[\"mon\"],\"from\":\"22:00\",\"to\":\"7:00\"}]",
         "Enter a time as HH:MM, like 22:00."},
        {"[{\"days\":[],\"from\":\"22:00\",\"to\":\"07:00\"}]",
         "Choose at least one day for each window."},
        {"[{\"days\":[\"mon\",\"mon\"],\"from\":\"22:00\",\"to\":\"07:00\"}]", NULL},
        {"[{\"days\":[\"mon\"],\"from\":\"22:00\",\"to\":\"22:00\"}]", NULL},
        {"[{\"days\":[\"moonday\"],\"from\":\"22:00\",\"to\":\"07:00\"}]", NULL},
        {"[]", NULL},
        {"\"nights\"", NULL},
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        snprintf (body, sizeof body, "{\"role\":\"shouldBeOff\",\"offSchedule\":%s}",
                  bad[index][0]);
        assert (gateway_fixture_call (client, "PATCH", path, auth_a, body) == 400);
        assert (streq (gateway_fixture_error_field (client), "offSchedule"));
        const char *message = json_string_value (json_object_get (client->body, "message"));
        assert (message && strlen (message) > 10 && message[strlen (message) - 1] == '.');
        assert (!bad[index][1] || streq (message, bad[index][1]));
    }
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"role\":\"sometimes\"}") ==
            400);
    assert (streq (gateway_fixture_error_field (client), "role"));
    assert (gateway_cache_port (gateway->cache, port, &cached));
    assert (cached.settings.role == PROTO_ROLE_STANDBY);
    //  shouldBeOff alone: always (the port had no schedule)
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"role\":\"shouldBeOff\"}") ==
            200);
    settings = json_object_get (gateway_fixture_data (client, "port"), "settings");
    assert (streq (json_string_value (json_object_get (settings, "role")), "shouldBeOff"));
    assert (json_is_null (json_object_get (settings, "offSchedule")));
    //  A schedule under "settings", days in any order: stored in week order
    snprintf (body, sizeof body,
              "{\"settings\":{\"offSchedule\":[{\"days\":[\"sun\",\"sat\"],"
              "\"from\":\"22:00\",\"to\":\"00:00\"}]}}");
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, body) == 200);
    settings = json_object_get (gateway_fixture_data (client, "port"), "settings");
    json_t *expected =
        json_loads ("[{\"days\":[\"sat\",\"sun\"],\"from\":\"22:00\",\"to\":\"00:00\"}]", 0, NULL);
    assert (json_equal (json_object_get (settings, "offSchedule"), expected));
    assert (gateway_cache_port (gateway->cache, port, &cached));
    assert (cached.settings.role == PROTO_ROLE_SHOULD_BE_OFF);
    assert (cached.settings.windows[0] == PROTO_WINDOW_PACK (0x60, 22 * 60, 0));
    //  Another field alone keeps role and schedule; so does shouldBeOff
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"minPhantomSeconds\":30}") ==
            200);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"role\":\"shouldBeOff\"}") ==
            200);
    settings = json_object_get (gateway_fixture_data (client, "port"), "settings");
    assert (json_equal (json_object_get (settings, "offSchedule"), expected));
    assert (json_integer_value (json_object_get (settings, "minPhantomSeconds")) == 30);
    json_decref (expected);
    //  alwaysOn clears the schedule it cannot use; a schedule sent with it is refused
    assert (gateway_fixture_call (client, "PATCH", path, auth_a,
                                  "{\"role\":\"alwaysOn\",\"offSchedule\":[{\"days\":[\"sun\"],"
                                  "\"from\":\"22:00\",\"to\":\"00:00\"}]}") == 400);
    assert (streq (gateway_fixture_error_field (client), "offSchedule"));
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"role\":\"alwaysOn\"}") == 200);
    settings = json_object_get (gateway_fixture_data (client, "port"), "settings");
    assert (streq (json_string_value (json_object_get (settings, "role")), "alwaysOn"));
    assert (json_is_null (json_object_get (settings, "offSchedule")));
    assert (gateway_cache_port (gateway->cache, port, &cached));
    assert (cached.settings.role == PROTO_ROLE_ALWAYS_ON && cached.settings.windows[0] == 0);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"role\":\"standby\"}") == 200);

    //  Port DELETE takes its readings and episodes along.
    char *other = s_make_port (client, auth_a, device, "Scanner");
    const char *ports[] = {port, other};
    for (int index = 0; index < 2; index++) {
        const char *port_values[] = {ports[index]};
        free (gateway_fixture_sql (
            pg,
            "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
            " SELECT $1::uuid, now () - n * interval '1 second', 230, 0.01, 2, 3"
            " FROM generate_series (1, 10) n",
            1, port_values));
        free (gateway_fixture_sql (
            pg,
            "INSERT INTO episodes (port_id, user_id, started_at, ended_at, energy_wh)"
            " SELECT id, user_id, now () - interval '1 hour', now (), 3 FROM ports"
            " WHERE id = $1::uuid",
            1, port_values));
    }
    snprintf (path, sizeof path, "/api/ports/%s", other);
    assert (gateway_fixture_call (client, "DELETE", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 200);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 404);
    const char *other_values[] = {other};
    assert (
        streq (check = gateway_fixture_sql (
                   pg, "SELECT count (*) FROM readings WHERE port_id = $1::uuid", 1, other_values),
               "0"));
    free (check);
    assert (
        streq (check = gateway_fixture_sql (
                   pg, "SELECT count (*) FROM episodes WHERE port_id = $1::uuid", 1, other_values),
               "0"));
    free (check);
    assert (!gateway_cache_port (gateway->cache, other, &cached));

    //  Device DELETE takes its ports, their readings and episodes along.
    snprintf (path, sizeof path, "/api/devices/%s", device);
    assert (gateway_fixture_call (client, "DELETE", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 200);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 404);
    const char *port_values[] = {port};
    assert (streq (check = gateway_fixture_sql (
                       pg,
                       "SELECT (SELECT count (*) FROM readings WHERE port_id = $1::uuid)"
                       " + (SELECT count (*) FROM episodes WHERE port_id = $1::uuid)"
                       " + (SELECT count (*) FROM ports WHERE id = $1::uuid)",
                       1, port_values),
                   "0"));
    free (check);
    assert (!gateway_cache_port (gateway->cache, port, &cached));
    snprintf (body, sizeof body, "{\"name\":\"x\",\"deviceId\":%s}", device);
    assert (gateway_fixture_call (client, "POST", "/api/ports", auth_a, body) == 404);
    free (port);
    free (other);
    free (device);
}

//  The step rule: over more than 6 hours every step is whole minutes
//  (rollups serve it), at most 5000 buckets, never below the asked step.
static void
s_test_series_step (void)
{
    const int64_t hour = 3600 * 1000LL, day = 24 * hour;
    bool raised, rollups;
    struct {
        int64_t span_ms, asked, step;
        bool raised, rollups;
    } cases[] = {
        {hour, 0, 0, false, false}, //  raw stays raw, whatever the window
        {400 * day, 0, 0, false, false},
        {hour, 45, 45, false, false}, //  short windows bin raw readings
        {6 * hour, 45, 45, false, false},
        {2 * hour, 1, 2, true, false},      //  more than 5000 buckets: raised
        {6 * hour + 1, 45, 60, true, true}, //  long: whole minutes, from rollups
        {7 * day, 3600, 3600, false, true},
        {7 * day, 61, 180, true, true},      //  raised for 5000, then to minutes
        {400 * day, 7001, 7020, true, true}, //  4937 buckets of raw readings before
        {400 * day, 86399, 86400, true, true},
        {400 * day, 60, 6960, true, true},
        {400 * day, GATEWAY_API_STEP_MAX, GATEWAY_API_STEP_MAX, false, true},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        int64_t step =
            gateway_api_series_step (cases[index].span_ms, cases[index].asked, &raised, &rollups);
        assert (step == cases[index].step);
        assert (raised == cases[index].raised && rollups == cases[index].rollups);
    }
    //  And for every window and step in a sweep.
    for (int64_t span = 60 * 1000; span <= GATEWAY_API_SPAN_MAX_MS; span = span * 3 + 7) {
        for (int64_t asked = 1; asked <= GATEWAY_API_STEP_MAX; asked = asked * 2 + 1) {
            int64_t step = gateway_api_series_step (span, asked, &raised, &rollups);
            assert (step >= asked && step <= GATEWAY_API_STEP_MAX);
            assert (span / (step * 1000) + 1 <= 5000 || step == asked);
            assert (rollups == (span > 6 * hour));
            assert (!rollups || step % 60 == 0);
            assert (raised == (step != asked));
        }
    }
}

//  Raw and downsampled series over 7200 readings, one a second, power =
//  second of the minute, starting on a minute boundary two hours ago.
static void
s_test_readings (gateway_fixture_client_t *client, PGconn *pg, const char *auth_a,
                 const char *auth_b, const char *port)
{
    int64_t start = (gateway_time_now_ms () / 60000 - 121) * 60000;
    char start_text[24], path[256];
    snprintf (start_text, sizeof start_text, "%" PRId64, start);
    const char *values[] = {port, start_text};
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " SELECT $1::uuid, to_timestamp ($2::bigint / 1000.0) + n * interval '1 second',"
        "        230, 0.1, n % 60, 1 FROM generate_series (0, 7199) n",
        2, values));
    int64_t end = start + 7200 * 1000;

    //  Raw, wider than 5000: the newest 5000, oldest first, truncated.
    snprintf (path, sizeof path, "/api/ports/%s/readings?from=%" PRId64 "&to=%" PRId64, port, start,
              end);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    json_t *list = gateway_fixture_data (client, "readings");
    assert (json_array_size (list) == 5000);
    assert (json_is_true (gateway_fixture_data (client, "truncated")));
    assert (json_integer_value (gateway_fixture_data (client, "step")) == 0);
    char iso[32];
    gateway_time_format (start + 2200 * 1000, iso);
    json_t *first = json_array_get (list, 0);
    assert (streq (json_string_value (json_object_get (first, "ts")), iso));
    assert (s_number (first, "power") == 40); //  2200 % 60
    assert (streq (json_string_value (json_object_get (first, "status")), "active"));
    gateway_time_format (start + 7199 * 1000, iso);
    assert (streq (json_string_value (json_object_get (json_array_get (list, 4999), "ts")), iso));

    //  Raw, narrower, with ISO-8601 bounds: all of it, not truncated.
    char from_iso[32], to_iso[32];
    gateway_time_format (start, from_iso);
    gateway_time_format (start + 600 * 1000, to_iso);
    snprintf (path, sizeof path, "/api/ports/%s/readings?from=%s&to=%s", port, from_iso, to_iso);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "readings")) == 600);
    assert (json_is_false (gateway_fixture_data (client, "truncated")));

    //  Downsampled by the minute: 120 buckets of 60, min 0, mean 29.5, max 59.
    snprintf (path, sizeof path, "/api/ports/%s/readings?from=%" PRId64 "&to=%" PRId64 "&step=60",
              port, start, end);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    list = gateway_fixture_data (client, "buckets");
    assert (json_array_size (list) == 120);
    assert (json_is_false (gateway_fixture_data (client, "stepRaised")));
    size_t index;
    json_t *bucket;
    json_array_foreach (list, index, bucket)
    {
        assert (json_integer_value (json_object_get (bucket, "count")) == 60);
        assert (s_number (bucket, "min") == 0 && s_number (bucket, "max") == 59);
        assert (s_near (s_number (bucket, "mean"), 29.5));
    }
    gateway_time_format (start + 60 * 1000, iso);
    assert (streq (json_string_value (json_object_get (json_array_get (list, 1), "ts")), iso));

    //  A step that would give more than 5000 buckets is raised, and says so.
    snprintf (path, sizeof path, "/api/ports/%s/readings?from=%" PRId64 "&to=%" PRId64 "&step=1",
              port, start, end);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_integer_value (gateway_fixture_data (client, "step")) == 2);
    assert (json_is_true (gateway_fixture_data (client, "stepRaised")));
    assert (json_array_size (gateway_fixture_data (client, "buckets")) == 3600);

    //  The default window is the last hour: empty here, but the port's.
    snprintf (path, sizeof path, "/api/ports/%s/readings", port);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "readings")) <= 3600);
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);

    const char *bad[] = {"from=yesterday", "from=2024-13-01T00:00:00Z", "step=-1",
                         "step=1.5",       "from=2000&to=1000",         "from=0&to=99999999999999"};
    for (size_t bad_index = 0; bad_index < sizeof bad / sizeof bad[0]; bad_index++) {
        snprintf (path, sizeof path, "/api/ports/%s/readings?%s", port, bad[bad_index]);
        assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 400);
    }
}

//  Hourly buckets of a 2-day series (one reading per 30 s) whose last
//  half hour lies after the rollup watermark: the same as computed from
//  raw readings, also after raw readings that rollups cover are deleted
//  (so those came from rollups, and the tail from raw readings).
static void
s_test_rollups (gateway_fixture_client_t *client, PGconn *pg, const char *auth, const char *device)
{
    char *port = s_make_port (client, auth, device, "Rollups");
    int64_t start = (gateway_time_now_ms () / 60000 - 47 * 60 - 23) * 60000;
    int64_t from = start + 15 * 1000, to = start + 48 * 3600 * 1000LL - 15 * 1000;
    char start_text[24], from_text[24], to_text[24], path[256];
    snprintf (start_text, sizeof start_text, "%" PRId64, start);
    snprintf (from_text, sizeof from_text, "%" PRId64, from);
    snprintf (to_text, sizeof to_text, "%" PRId64, to);
    const char *values[] = {port, start_text};
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        " SELECT $1::uuid, to_timestamp ($2::bigint / 1000.0) + n * interval '30 seconds',"
        "        230, 0.1, (n * 7919 % 1000) / 10.0, 1 FROM generate_series (0, 5759) n",
        2, values));
    //  What the store's maintenance does: roll up from the watermark to now.
    free (gateway_fixture_sql (pg,
                               "SELECT phantom_rollup (least ((SELECT watermark FROM rollup_state),"
                               " to_timestamp ($1::bigint / 1000.0)), now ())",
                               1, values + 1));
    const char *window[] = {port, from_text, to_text};
    PGresult *raw = PQexecParams (
        pg,
        "SELECT (extract (epoch FROM bucket) * 1000)::bigint, min (power), avg (power), max "
        "(power),"
        " count (*) FROM (SELECT date_bin ('3600 seconds', ts, timestamptz 'epoch') AS bucket, "
        "power"
        " FROM readings WHERE port_id = $1::uuid AND ts >= to_timestamp ($2::bigint / 1000.0)"
        " AND ts < to_timestamp ($3::bigint / 1000.0)) binned GROUP BY bucket ORDER BY bucket",
        3, NULL, window, NULL, NULL, 0);
    int buckets = PQntuples (raw);
    assert (PQresultStatus (raw) == PGRES_TUPLES_OK && buckets >= 48);
    //  The same window asked in steps of 3601 s, which rollups cannot
    //  make: answered in 3660 s (whole minutes), from rollups too.
    PGresult *odd = PQexecParams (
        pg,
        "SELECT (extract (epoch FROM bucket) * 1000)::bigint, min (power), avg (power),"
        " max (power), count (*)"
        " FROM (SELECT date_bin ('3660 seconds', ts, timestamptz 'epoch') AS bucket, power"
        " FROM readings WHERE port_id = $1::uuid AND ts >= to_timestamp ($2::bigint / 1000.0)"
        " AND ts < to_timestamp ($3::bigint / 1000.0)) binned GROUP BY bucket ORDER BY bucket",
        3, NULL, window, NULL, NULL, 0);
    assert (PQresultStatus (odd) == PGRES_TUPLES_OK && PQntuples (odd) >= 47);
    free (gateway_fixture_sql (pg,
                               "DELETE FROM readings WHERE port_id = $1::uuid"
                               " AND ts >= to_timestamp ($2::bigint / 1000.0) + interval '2 hours'"
                               " AND ts < to_timestamp ($2::bigint / 1000.0) + interval '3 hours'",
                               2, values));

    for (int asked = 0; asked < 2; asked++) {
        PGresult *expected = asked ? odd : raw;
        snprintf (path, sizeof path,
                  "/api/ports/%s/readings?from=%" PRId64 "&to=%" PRId64 "&step=%d", port, from, to,
                  asked ? 3601 : 3600);
        assert (gateway_fixture_call (client, "GET", path, auth, NULL) == 200);
        assert (json_integer_value (gateway_fixture_data (client, "step")) ==
                (asked ? 3660 : 3600));
        assert (json_is_true (gateway_fixture_data (client, "stepRaised")) == (asked == 1));
        json_t *list = gateway_fixture_data (client, "buckets");
        assert (json_array_size (list) == (size_t)PQntuples (expected));
        for (int row = 0; row < PQntuples (expected); row++) {
            json_t *bucket = json_array_get (list, (size_t)row);
            char iso[32];
            gateway_time_format (strtoll (PQgetvalue (expected, row, 0), NULL, 10), iso);
            assert (streq (json_string_value (json_object_get (bucket, "ts")), iso));
            assert (s_number (bucket, "min") == strtod (PQgetvalue (expected, row, 1), NULL));
            double mean = strtod (PQgetvalue (expected, row, 2), NULL);
            assert (s_near (s_number (bucket, "mean"), mean));
            assert (s_number (bucket, "max") == strtod (PQgetvalue (expected, row, 3), NULL));
            assert (json_integer_value (json_object_get (bucket, "count")) ==
                    strtoll (PQgetvalue (expected, row, 4), NULL, 10));
        }
    }
    PQclear (raw);
    PQclear (odd);
    snprintf (path, sizeof path, "/api/ports/%s", port);
    assert (gateway_fixture_call (client, "DELETE", path, auth, NULL) == 200);
    free (port);
}

//  Episodes with cost at the user's tariff, newest first, paged.
static void
s_test_episodes (gateway_fixture_client_t *client, PGconn *pg, const char *auth_a,
                 const char *auth_b, const char *port)
{
    const char *values[] = {port};
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO episodes (port_id, user_id, started_at, ended_at, mean_watts,"
        "                      peak_watts, energy_wh, samples)"
        " SELECT id, user_id, now () - interval '3 hours', now () - interval '2 hours',"
        "        100, 120, 100, 60 FROM ports WHERE id = $1::uuid",
        1, values));
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO episodes (port_id, user_id, started_at, ended_at, mean_watts,"
        "                      peak_watts, energy_wh, samples)"
        " SELECT id, user_id, now () - interval '30 minutes', NULL,"
        "        100, 110, 50, 30 FROM ports WHERE id = $1::uuid",
        1, values));
    assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth_a,
                                  "{\"tariffPerKwh\":0.25}") == 200);
    char path[160];
    snprintf (path, sizeof path, "/api/ports/%s/episodes", port);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    json_t *list = gateway_fixture_data (client, "episodes");
    assert (json_array_size (list) == 2);
    assert (json_is_null (gateway_fixture_data (client, "nextBefore")));
    json_t *open = json_array_get (list, 0), *closed = json_array_get (list, 1);
    assert (json_is_true (json_object_get (open, "open")) &&
            json_is_null (json_object_get (open, "end")));
    assert (json_is_false (json_object_get (closed, "open")));
    assert (s_near (s_number (closed, "cost"), 0.025) && s_near (s_number (open, "cost"), 0.0125));
    assert (s_number (closed, "energyWh") == 100 && s_number (closed, "peakWatts") == 120);
    assert (streq (json_string_value (json_object_get (closed, "currency")), "EUR"));
    int64_t open_id = json_integer_value (json_object_get (open, "id"));
    int64_t closed_id = json_integer_value (json_object_get (closed, "id"));
    assert (open_id > closed_id);
    snprintf (path, sizeof path, "/api/ports/%s/episodes?limit=1", port);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "episodes")) == 1);
    int64_t next = json_integer_value (gateway_fixture_data (client, "nextBefore"));
    assert (next == open_id);
    snprintf (path, sizeof path, "/api/ports/%s/episodes?limit=1&before=%" PRId64, port, next);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_integer_value (json_object_get (
                json_array_get (gateway_fixture_data (client, "episodes"), 0), "id")) == closed_id);
    snprintf (path, sizeof path, "/api/ports/%s/episodes?limit=201", port);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 400);
    snprintf (path, sizeof path, "/api/ports/%s/episodes", port);
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);
}

//  Read, unread, read-all and the unread count.
static void
s_test_notifications (gateway_fixture_client_t *client, PGconn *pg, const char *auth_a,
                      const char *auth_b, const char *user_a)
{
    const char *values[] = {user_a};
    free (gateway_fixture_sql (
        pg, "UPDATE notifications SET read_at = now () WHERE user_id = $1::bigint", 1, values));
    char *id =
        gateway_fixture_sql (pg,
                             "INSERT INTO notifications (user_id, kind, dedupe_key, title, message)"
                             " SELECT $1::bigint, 'digest', 'read-test-' || n, 'T' || n, 'M'"
                             " FROM generate_series (1, 3) n RETURNING id::text",
                             1, values);
    char path[96];
    snprintf (path, sizeof path, "/api/notifications/%s", id);
    assert (gateway_fixture_call (client, "PATCH", path, auth_b, "{\"read\":true}") == 404);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"read\":1}") == 400);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"read\":true}") == 200);
    assert (json_is_true (json_object_get (gateway_fixture_data (client, "notification"), "read")));
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 2);
    assert (gateway_fixture_call (client, "GET", "/api/notifications", auth_a, NULL) == 200);
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 2);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"read\":false}") == 200);
    assert (
        json_is_false (json_object_get (gateway_fixture_data (client, "notification"), "read")));
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 3);
    assert (gateway_fixture_call (client, "POST", "/api/notifications/read-all", auth_b, NULL) ==
            200);
    assert (json_integer_value (gateway_fixture_data (client, "updated")) == 0);
    assert (gateway_fixture_call (client, "POST", "/api/notifications/read-all", auth_a, NULL) ==
            200);
    assert (json_integer_value (gateway_fixture_data (client, "updated")) == 3);
    assert (gateway_fixture_call (client, "GET", "/api/notifications?limit=2", auth_a, NULL) ==
            200);
    assert (json_integer_value (gateway_fixture_data (client, "unread")) == 0);
    assert (json_is_integer (gateway_fixture_data (client, "nextBefore")));
    free (id);
}

static void
s_test_settings (gateway_fixture_client_t *client, gateway_t *gateway, const char *auth_a,
                 const char *port)
{
    assert (gateway_fixture_call (client, "GET", "/api/settings", auth_a, NULL) == 200);
    json_t *settings = gateway_fixture_data (client, "settings");
    assert (streq (json_string_value (json_object_get (settings, "currency")), "EUR"));
    assert (json_is_true (json_object_get (settings, "digestEnabled"))); //  the default
    const char *bad[] = {"{\"timeZone\":\"Mars/Olympus\"}",
                         "{\"timeZone\":\"\"}",
                         "{\"currency\":\"eur\"}",
                         "{\"currency\":\"EURO\"}",
                         "{\"tariffPerKwh\":101}",
                         "{\"tariffPerKwh\":-1}",
                         "{\"tariffPerKwh\":\"0.3\"}",
                         "{\"digestEnabled\":\"false\"}",
                         "{\"digestEnabled\":0}"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth_a, bad[index]) == 400);
        assert (streq (gateway_fixture_error_code (client), "validation_error"));
    }
    assert (gateway_fixture_call (
                client, "PATCH", "/api/settings", auth_a,
                "{\"timeZone\":\"Europe/Berlin\",\"currency\":\"CHF\",\"digestEnabled\":false}") ==
            200);
    settings = gateway_fixture_data (client, "settings");
    assert (json_is_false (json_object_get (settings, "digestEnabled")));
    assert (streq (json_string_value (json_object_get (settings, "timeZone")), "Europe/Berlin"));
    assert (streq (json_string_value (json_object_get (settings, "currency")), "CHF"));
    assert (s_number (settings, "tariffPerKwh") == 0.25); //  unchanged
    gateway_port_t cached;
    assert (gateway_cache_port (gateway->cache, port, &cached));
    assert (streq (cached.settings.timezone, "Europe/Berlin"));
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", auth_a, NULL) == 200);
    settings = json_object_get (gateway_fixture_data (client, "user"), "settings");
    assert (streq (json_string_value (json_object_get (settings, "currency")), "CHF"));
    assert (json_is_false (json_object_get (settings, "digestEnabled")));
    //  What is not named stays, digestEnabled included.
    assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth_a,
                                  "{\"tariffPerKwh\":0.25}") == 200);
    assert (json_is_false (
        json_object_get (gateway_fixture_data (client, "settings"), "digestEnabled")));
    assert (gateway_fixture_call (client, "GET", "/api/settings", auth_a, NULL) == 200);
    assert (json_is_false (
        json_object_get (gateway_fixture_data (client, "settings"), "digestEnabled")));
    assert (gateway_fixture_call (
                client, "PATCH", "/api/settings", auth_a,
                "{\"timeZone\":\"UTC\",\"currency\":\"EUR\",\"digestEnabled\":true}") == 200);
    assert (json_is_true (
        json_object_get (gateway_fixture_data (client, "settings"), "digestEnabled")));
}

//  Exact figures (docs/figures-and-api.md) of a fresh user whose time zone
//  puts local noon in the current hour, so that, with H the start of this
//  hour, today is [H - 12 h, now) and the local days before it start at
//  H - 36 h and H - 60 h. Every time below is relative to H, fetched once.
//    TV      standby, phantom now at 4 W: a reading a minute at 4 W over
//            [H - 40 h, H - 14 h] (26 reported hours, 104 Wh); episodes
//            [H - 38 h, H - 34 h) 16 Wh, [H - 2 h, H - 1 h) 5 Wh (today),
//            [H - 31 d, H - 29 d) 48 Wh (straddles the 30 days) and one
//            40 days old.
//    Router  alwaysOn, active: 11 W a minute over [H - 10 h, H] (today;
//            10 h: learning).
//    Lamp    offline, last at 7 W: no "now" value.
//    Kettle  never reported: waiting.
typedef struct {
    char *tv, *router, *lamp, *kettle, *device, *token;
    char auth[128];
    int64_t hour; //  H, ms
} s_figures_t;

static void
s_figures_seed (gateway_fixture_client_t *client, PGconn *pg, const char *suffix, s_figures_t *f)
{
    char email[128], zone[32], body[128], hour_text[24];
    snprintf (email, sizeof email, "carol.%s@example.com", suffix);
    f->token = s_test_register (client, email, "Carol");
    s_bearer (f->token, f->auth);
    char *hour = gateway_fixture_sql (
        pg, "SELECT (extract (epoch FROM date_trunc ('hour', now ())) * 1000)::bigint", 0, NULL);
    f->hour = strtoll (hour, NULL, 10);
    free (hour);
    snprintf (hour_text, sizeof hour_text, "%" PRId64, f->hour);
    int utc_hour = (int)((f->hour / 3600000) % 24);
    int offset = 12 - utc_hour; //  local = UTC + offset; Etc/GMT signs are inverted
    snprintf (zone, sizeof zone, offset == 0 ? "Etc/GMT" : "Etc/GMT%+d", -offset);
    snprintf (body, sizeof body, "{\"tariffPerKwh\":0.25,\"timeZone\":\"%s\"}", zone);
    assert (gateway_fixture_call (client, "PATCH", "/api/settings", f->auth, body) == 200);

    f->device = s_make_device (client, f->auth, "Board");
    f->tv = s_make_port (client, f->auth, f->device, "TV");
    f->router = s_make_port (client, f->auth, f->device, "Router");
    f->lamp = s_make_port (client, f->auth, f->device, "Lamp");
    f->kettle = s_make_port (client, f->auth, f->device, "Kettle");
    const char *values[] = {f->tv, f->router, f->lamp, hour_text};
    free (gateway_fixture_sql (
        pg,
        "WITH h AS (SELECT to_timestamp ($4::bigint / 1000.0) AS h),"
        " r AS (INSERT INTO readings (port_id, ts, voltage, current, power, status)"
        "   SELECT $1::uuid, h - interval '40 hours' + n * interval '1 minute', 230, 0.02, 4, 3"
        "   FROM h, generate_series (0, 26 * 60) n"
        "   UNION ALL"
        "   SELECT $2::uuid, h - interval '10 hours' + n * interval '1 minute', 230, 0.05, 11, 1"
        "   FROM h, generate_series (0, 10 * 60) n),"
        " p AS (UPDATE ports SET"
        "   status = CASE id WHEN $1::uuid THEN 'phantom' WHEN $2::uuid THEN 'active' ELSE "
        "'offline' END,"
        "   role = CASE id WHEN $2::uuid THEN 'always_on' ELSE 'standby' END,"
        "   last_power = CASE id WHEN $1::uuid THEN 4 WHEN $2::uuid THEN 11 ELSE 7 END,"
        "   last_reading_at = CASE id WHEN $1::uuid THEN h - interval '14 hours' WHEN $2::uuid "
        "THEN h"
        "                     ELSE h - interval '20 hours' END"
        "   FROM h WHERE id IN ($1::uuid, $2::uuid, $3::uuid) RETURNING id, user_id)"
        " INSERT INTO episodes (port_id, user_id, started_at, ended_at, energy_wh)"
        " SELECT p.id, p.user_id, h - e.started, h - e.ended, e.energy FROM p, h,"
        "  (VALUES (interval '38 hours', interval '34 hours', 16.0),"
        "          (interval '2 hours', interval '1 hour', 5.0),"
        "          (interval '31 days', interval '29 days', 48.0),"
        "          (interval '40 days', interval '39 days', 1000.0)) AS e (started, ended, energy)"
        " WHERE p.id = $1::uuid",
        4, values));
    //  What the store's rollups would hold for minutes before the watermark.
    free (gateway_fixture_sql (
        pg,
        "SELECT phantom_rollup_ports (array_agg (port_id), array_agg (minute),"
        "                             (SELECT watermark FROM rollup_state))"
        " FROM (SELECT DISTINCT port_id, date_bin ('1 minute', ts, timestamptz 'epoch') AS minute"
        "       FROM readings WHERE port_id IN ($1::uuid, $2::uuid)) m",
        2, values));
}

static void
s_figures_free (s_figures_t *f)
{
    free (f->tv);
    free (f->router);
    free (f->lamp);
    free (f->kettle);
    free (f->device);
    free (f->token);
}

static json_t *
s_member (json_t *object, const char *outer, const char *inner)
{
    return json_object_get (json_object_get (object, outer), inner);
}

static double
s_figure (json_t *object, const char *outer, const char *inner)
{
    return json_number_value (s_member (object, outer, inner));
}

static void
s_test_summary (gateway_fixture_client_t *client, PGconn *pg, const char *suffix)
{
    char email[128], auth[128];
    snprintf (email, sizeof email, "dora.%s@example.com", suffix);
    char *token = s_test_register (client, email, "Dora");
    s_bearer (token, auth);
    assert (gateway_fixture_call (client, "GET", "/api/summary", auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "ports")) == 0);
    assert (s_figure (gateway_fixture_data (client, "total"), "today", "phantomKwh") == 0);
    assert (json_is_null (s_member (gateway_fixture_data (client, "total"), "year", "phantomKwh")));
    free (token);

    s_figures_t f;
    s_figures_seed (client, pg, suffix, &f);
    assert (gateway_fixture_call (client, "GET", "/api/summary", f.auth, NULL) == 200);
    assert (streq (json_string_value (gateway_fixture_data (client, "currency")), "EUR"));
    int64_t now = 0;
    assert (gateway_time_parse (json_string_value (gateway_fixture_data (client, "now")), &now) ==
            0);
    int64_t today = 0;
    assert (gateway_time_parse (json_string_value (gateway_fixture_data (client, "todayFrom")),
                                &today) == 0);
    assert (today == f.hour - 12 * 3600000LL);
    //  The straddling episode's part inside [now - 30 d, now).
    double straddle =
        48.0 * (double)(f.hour - 29 * 86400000LL - (now - 30 * 86400000LL)) / (2 * 86400000.0);
    double tv_last30 = 16 + 5 + straddle;
    double tv_year = tv_last30 / 1000 / 26 * 8760;

    json_t *ports = gateway_fixture_data (client, "ports");
    assert (json_array_size (ports) == 4);
    json_t *tv = json_array_get (ports, 0), *router = json_array_get (ports, 1),
           *lamp = json_array_get (ports, 2), *kettle = json_array_get (ports, 3);
    assert (streq (json_string_value (json_object_get (tv, "id")), f.tv));
    assert (streq (json_string_value (json_object_get (tv, "role")), "standby"));
    assert (s_number (tv, "watts") == 4 && s_number (tv, "lowestSteadyWatts") == 4);
    assert (fabs (s_figure (tv, "last30", "energyKwh") - 0.104) < 1e-9);
    assert (fabs (s_figure (tv, "last30", "phantomKwh") - tv_last30 / 1000) < 1e-9);
    assert (fabs (s_figure (tv, "last30", "phantomCost") - tv_last30 / 1000 * 0.25) < 1e-9);
    assert (s_figure (tv, "today", "energyKwh") == 0);
    assert (fabs (s_figure (tv, "today", "phantomKwh") - 0.005) < 1e-12);
    assert (fabs (s_figure (tv, "today", "phantomCost") - 0.00125) < 1e-12);
    assert (json_is_false (s_member (tv, "year", "learning")));
    assert (fabs (s_figure (tv, "year", "reportedHours") - 26) < 1e-9);
    //  "now" comes back in whole ms: the straddle's part is known to ~1e-10
    //  kWh, which the projection multiplies by 8760 / 26.
    assert (fabs (s_figure (tv, "year", "phantomKwh") - tv_year) < 1e-7);
    assert (fabs (s_figure (tv, "year", "phantomCost") - tv_year * 0.25) < 1e-7);

    assert (streq (json_string_value (json_object_get (router, "role")), "alwaysOn"));
    assert (fabs (s_figure (router, "today", "energyKwh") - 0.11) < 1e-9);
    assert (s_figure (router, "today", "phantomKwh") == 0);
    assert (json_is_true (s_member (router, "year", "learning")));
    assert (json_is_null (s_member (router, "year", "phantomKwh")));
    assert (fabs (s_figure (router, "year", "reportedHours") - 10) < 1e-9);
    assert (s_number (router, "lowestSteadyWatts") == 11);

    assert (streq (json_string_value (json_object_get (lamp, "status")), "offline"));
    assert (json_is_null (json_object_get (lamp, "watts")));
    assert (streq (json_string_value (json_object_get (kettle, "status")), "waiting"));
    assert (json_is_null (json_object_get (kettle, "watts")));
    assert (json_is_null (json_object_get (kettle, "lowestSteadyWatts")));
    assert (s_figure (kettle, "year", "reportedHours") == 0);

    json_t *total = gateway_fixture_data (client, "total");
    assert (s_number (total, "phantomWattsNow") == 4);
    assert (fabs (s_figure (total, "today", "energyKwh") - 0.11) < 1e-9);
    assert (fabs (s_figure (total, "today", "phantomKwh") - 0.005) < 1e-12);
    assert (fabs (s_figure (total, "last30", "energyKwh") - 0.214) < 1e-9);
    assert (fabs (s_figure (total, "year", "phantomKwh") - tv_year) < 1e-7);
    assert (json_integer_value (s_member (total, "year", "ports")) == 1);
    assert (json_integer_value (s_member (total, "year", "learningPorts")) == 3);
    json_t *counts = json_object_get (total, "ports");
    assert (json_integer_value (json_object_get (counts, "phantom")) == 1);
    assert (json_integer_value (json_object_get (counts, "active")) == 1);
    assert (json_integer_value (json_object_get (counts, "offline")) == 1);
    assert (json_integer_value (json_object_get (counts, "waiting")) == 1);

    //  Energy per local day: [H - 60 h, H - 36 h), [H - 36 h, H - 12 h), today.
    char path[200];
    snprintf (path, sizeof path, "/api/ports/%s/energy?period=day&from=%" PRId64, f.tv,
              f.hour - (int64_t)60 * 3600000);
    assert (gateway_fixture_call (client, "GET", path, f.auth, NULL) == 200);
    json_t *buckets = gateway_fixture_data (client, "buckets");
    assert (json_array_size (buckets) == 3);
    const double used[3] = {0.016, 0.088, 0}, phantom[3] = {0.008, 0.008, 0.005};
    for (size_t day = 0; day < 3; day++) {
        json_t *bucket = json_array_get (buckets, day);
        int64_t start = 0;
        assert (gateway_time_parse (json_string_value (json_object_get (bucket, "start")),
                                    &start) == 0);
        assert (start == f.hour - (60 - 24 * (int64_t)day) * 3600000LL);
        assert (fabs (s_number (bucket, "energyKwh") - used[day]) < 1e-9);
        assert (fabs (s_number (bucket, "phantomKwh") - phantom[day]) < 1e-9);
        assert (fabs (s_number (bucket, "phantomCost") - phantom[day] * 0.25) < 1e-9);
    }
    assert (fabs (s_number (json_array_get (buckets, 1), "reportedHours") - 22) < 1e-9);
    snprintf (path, sizeof path, "/api/energy?period=day&from=%" PRId64,
              f.hour - (int64_t)12 * 3600000);
    assert (gateway_fixture_call (client, "GET", path, f.auth, NULL) == 200);
    buckets = gateway_fixture_data (client, "buckets");
    assert (json_array_size (buckets) == 1);
    assert (fabs (s_number (json_array_get (buckets, 0), "energyKwh") - 0.11) < 1e-9);
    assert (fabs (s_number (json_array_get (buckets, 0), "reportedHours") - 10) < 1e-9);
    snprintf (path, sizeof path, "/api/ports/%s/energy?period=year", f.tv);
    assert (gateway_fixture_call (client, "GET", path, f.auth, NULL) == 400);
    assert (streq (gateway_fixture_error_field (client), "period"));
    snprintf (path, sizeof path, "/api/ports/%s/energy?period=week", f.tv);
    assert (gateway_fixture_call (client, "GET", path, f.auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "buckets")) >= 26);
    s_figures_free (&f);
}

//  Time-of-use and a tariff in force from a date: an episode is priced at
//  what was in force over its time. Monday 2026-11-30 05:00-07:00 UTC is
//  06:00-08:00 in Berlin; peak there 07:00-22:00 on weekdays.
static void
s_test_tariffs (gateway_fixture_client_t *client, PGconn *pg, const char *auth, const char *port)
{
    const char *values[] = {port};
    free (gateway_fixture_sql (
        pg,
        "INSERT INTO episodes (port_id, user_id, started_at, ended_at, energy_wh)"
        " SELECT id, user_id, '2026-11-30 05:00Z', '2026-11-30 07:00Z', 1000"
        " FROM ports WHERE id = $1::uuid",
        1, values));
    const char *peak = "\"peakWindows\":[{\"days\":[\"fri\",\"mon\",\"tue\",\"wed\",\"thu\"],"
                       "\"from\":\"07:00\",\"to\":\"22:00\"}]";
    char body[400], path[160];
    snprintf (body, sizeof body,
              "{\"timeZone\":\"Europe/Berlin\",\"tariff\":{\"kind\":\"timeOfUse\","
              "\"pricePerKwh\":0.2,\"peakPricePerKwh\":0.4,%s}}",
              peak);
    assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth, body) == 200);
    json_t *tariff = json_object_get (gateway_fixture_data (client, "settings"), "tariff");
    assert (streq (json_string_value (json_object_get (tariff, "kind")), "timeOfUse"));
    assert (s_number (tariff, "peakPricePerKwh") == 0.4);
    assert (json_is_null (json_object_get (tariff, "validFrom")));
    json_t *days =
        json_object_get (json_array_get (json_object_get (tariff, "peakWindows"), 0), "days");
    assert (streq (json_string_value (json_array_get (days, 0)), "mon")); //  in week order
    assert (streq (json_string_value (json_array_get (days, 4)), "fri"));
    snprintf (path, sizeof path, "/api/ports/%s/episodes?limit=200", port);
    assert (gateway_fixture_call (client, "GET", path, auth, NULL) == 200);
    json_t *list = gateway_fixture_data (client, "episodes"), *episode = NULL;
    for (size_t index = 0; index < json_array_size (list); index++)
        if (s_number (json_array_get (list, index), "energyWh") == 1000)
            episode = json_array_get (list, index);
    assert (episode && s_near (s_number (episode, "cost"), 0.3));

    //  0.10 flat for all data, then time-of-use from 06:00 UTC: the first
    //  hour at 0.10, the second at the peak price.
    assert (gateway_fixture_call (
                client, "PATCH", "/api/settings", auth,
                "{\"tariff\":{\"kind\":\"flat\",\"pricePerKwh\":0.1,\"peakPricePerKwh\":null}}") ==
            200);
    snprintf (body, sizeof body,
              "{\"tariff\":{\"kind\":\"timeOfUse\",\"pricePerKwh\":0.2,"
              "\"peakPricePerKwh\":0.4,%s,\"validFrom\":\"2026-11-30T06:00:00Z\"}}",
              peak);
    assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth, body) == 200);
    assert (gateway_fixture_call (client, "GET", "/api/tariffs", auth, NULL) == 200);
    list = gateway_fixture_data (client, "tariffs");
    assert (json_array_size (list) == 2);
    assert (json_is_null (json_object_get (json_array_get (list, 0), "validFrom")));
    assert (streq (json_string_value (json_object_get (json_array_get (list, 1), "validFrom")),
                   "2026-11-30T06:00:00.000Z"));
    assert (gateway_fixture_call (client, "GET", path, auth, NULL) == 200);
    list = gateway_fixture_data (client, "episodes");
    for (size_t index = 0; index < json_array_size (list); index++)
        if (s_number (json_array_get (list, index), "energyWh") == 1000)
            assert (s_near (s_number (json_array_get (list, index), "cost"), 0.25));

    const char *bad[][2] = {
        {"{\"tariff\":{\"kind\":\"timeOfUse\",\"pricePerKwh\":0.2,\"peakPricePerKwh\":0.4}}",
         "peakWindows"},
        {"{\"tariff\":{\"kind\":\"timeOfUse\",\"pricePerKwh\":0.2,\"peakWindows\":[{\"days\":["
         "\"mon\"],"
         "\"from\":\"07:00\",\"to\":\"22:00\"}]}}",
         "peakPricePerKwh"},
        {"{\"tariff\":{\"kind\":\"flat\"}}", "pricePerKwh"},
        {"{\"tariff\":{\"kind\":\"flat\",\"pricePerKwh\":null}}", "pricePerKwh"},
        {"{\"tariff\":{\"kind\":\"banded\",\"pricePerKwh\":0.2}}", "kind"},
        {"{\"tariff\":{\"kind\":\"timeOfUse\",\"pricePerKwh\":0.2,\"peakPricePerKwh\":0.4,"
         "\"peakWindows\":[{\"days\":[\"mon\",\"mon\"],\"from\":\"07:00\",\"to\":\"22:00\"}]}}",
         "peakWindows"},
        {"{\"tariff\":{\"kind\":\"timeOfUse\",\"pricePerKwh\":0.2,\"peakPricePerKwh\":0.4,"
         "\"peakWindows\":[{\"days\":[\"mon\"],\"from\":\"07:00\",\"to\":\"07:00\"}]}}",
         "peakWindows"},
        {"{\"tariff\":{\"kind\":\"flat\",\"pricePerKwh\":0.2,\"validFrom\":\"yesterday\"}}",
         "validFrom"},
        {"{\"tariff\":{\"kind\":\"flat\",\"pricePerKwh\":0.2},\"tariffPerKwh\":0.2}", "tariff"},
        {"{\"currency\":\"XYZ\"}", "currency"},
        {"{\"locale\":\"en_GB\"}", "locale"},
        {"{\"timeZone\":\"Mars/Olympus\",\"tariff\":{\"kind\":\"flat\",\"pricePerKwh\":9}}",
         "timeZone"}};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        assert (gateway_fixture_call (client, "PATCH", "/api/settings", auth, bad[index][0]) ==
                400);
        assert (streq (gateway_fixture_error_field (client), bad[index][1]));
    }
    //  Nothing of a refused change was kept: the two periods are as they were.
    assert (gateway_fixture_call (client, "GET", "/api/tariffs", auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "tariffs")) == 2);
    assert (s_number (json_array_get (gateway_fixture_data (client, "tariffs"), 0),
                      "pricePerKwh") == 0.1);
    assert (gateway_fixture_call (client, "GET", "/api/currencies", auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "currencies")) > 150);
    assert (gateway_fixture_call (
                client, "PATCH", "/api/settings", auth,
                "{\"timeZone\":\"UTC\",\"locale\":\"en-GB\",\"tariffPerKwh\":0.25}") == 200);
    assert (streq (
        json_string_value (json_object_get (gateway_fixture_data (client, "settings"), "locale")),
        "en-GB"));
    assert (gateway_fixture_call (client, "GET", "/api/tariffs", auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "tariffs")) == 1);
    free (gateway_fixture_sql (
        pg, "DELETE FROM episodes WHERE port_id = $1::uuid AND energy_wh = 1000", 1, values));
}

static void
s_test_webhooks (gateway_fixture_client_t *client, PGconn *pg, const char *auth_a,
                 const char *auth_b, const char *user_a)
{
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "webhooks")) == 0);
    const char *bad[] = {"{\"url\":\"ftp://example.com/x\"}",
                         "{\"url\":\"http://\"}",
                         "{\"url\":\"http://exa mple.com\"}",
                         "{\"url\":42}",
                         "{}",
                         "{\"url\":\"https://example.com\",\"secret\":\"short\"}"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        assert (gateway_fixture_call (client, "POST", "/api/webhooks", auth_a, bad[index]) == 400);
    char *long_url = (char *)malloc (2100 + 64);
    strcpy (long_url, "{\"url\":\"http://example.com/");
    memset (long_url + strlen (long_url), 'a', 2040);
    strcpy (long_url + 27 + 2040, "\"}");
    assert (gateway_fixture_call (client, "POST", "/api/webhooks", auth_a, long_url) == 400);
    free (long_url);

    //  No webhook may reach inside (proto_address; webhook_allow_private
    //  is off): every spelling of an inside address is a 400 on the url
    //  field, before anything is stored. Only literals and localhost (from
    //  /etc/hosts): a test asks no DNS server anything.
    const char *inside[] = {"http://127.0.0.1:5432/",
                            "http://[::1]/hook",
                            "http://0x7f000001/",
                            "http://2130706433/",
                            "http://127.1/",
                            "http://0177.0.0.1/",
                            "http://localhost:8123/api/webhook/x",
                            "http://169.254.169.254/latest/meta-data/",
                            "http://10.0.0.1/",
                            "http://172.16.5.4/",
                            "http://192.168.1.20:8123/",
                            "http://100.64.0.1/",
                            "http://[fe80::1]/",
                            "http://[fc00::1]/",
                            "http://[fd12::1]/",
                            "http://[::ffff:127.0.0.1]/",
                            "http://[::ffff:10.0.0.1]/",
                            "http://0.0.0.0/",
                            "http://[::]/",
                            "http://224.0.0.1/",
                            "http://255.255.255.255/",
                            "https://user:pw@203.0.113.10/"};
    for (size_t index = 0; index < sizeof inside / sizeof inside[0]; index++) {
        char request[256];
        snprintf (request, sizeof request, "{\"url\":\"%s\"}", inside[index]);
        int status = gateway_fixture_call (client, "POST", "/api/webhooks", auth_a, request);
        if (client->verbose || status != 400)
            printf ("\n-- %s: %d %s", inside[index], status,
                    json_string_value (json_object_get (client->body, "message")));
        assert (status == 400);
        assert (streq (gateway_fixture_error_code (client), "validation_error"));
        assert (streq (gateway_fixture_error_field (client), "url"));
    }
    assert (gateway_fixture_call (client, "POST", "/api/webhooks", auth_a,
                                  "{\"url\":\"http://127.0.0.1:9/x\"}") == 400);
    const char *message = json_string_value (json_object_get (client->body, "message"));
    assert (message && strstr (message, "loopback"));
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "webhooks")) == 0);

    //  Public addresses (documentation ranges: nothing delivers in this test).
    assert (gateway_fixture_call (client, "POST", "/api/webhooks", auth_a,
                                  "{\"url\":\"https://203.0.113.10/pw\"}") == 201);
    const char *secret = json_string_value (gateway_fixture_data (client, "secret"));
    assert (secret && strlen (secret) == 64 && strspn (secret, "0123456789abcdef") == 64);
    int64_t id =
        json_integer_value (json_object_get (gateway_fixture_data (client, "webhook"), "id"));
    assert (gateway_fixture_call (
                client, "POST", "/api/webhooks", auth_a,
                "{\"url\":\"http://198.51.100.7:9/x\",\"secret\":\"0123456789abcdef\"}") == 201);
    assert (
        streq (json_string_value (gateway_fixture_data (client, "secret")), "0123456789abcdef"));
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    json_t *list = gateway_fixture_data (client, "webhooks");
    assert (json_array_size (list) == 2);
    assert (!json_object_get (json_array_get (list, 0), "secret"));
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_b, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "webhooks")) == 0);

    char id_text[24], path[96];
    snprintf (id_text, sizeof id_text, "%" PRId64, id);
    const char *values[] = {user_a, id_text};
    free (gateway_fixture_sql (
        pg,
        "WITH n AS (INSERT INTO notifications (user_id, kind, dedupe_key, title, message)"
        "           VALUES ($1::bigint, 'digest', 'hook-test', 'T', 'M') RETURNING id)"
        " INSERT INTO webhook_deliveries (webhook_id, notification_id, status, attempts, "
        "last_error)"
        " SELECT $2::bigint, id, 'failed', 8, 'connection refused' FROM n",
        2, values));
    snprintf (path, sizeof path, "/api/webhooks/%s/deliveries", id_text);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    list = gateway_fixture_data (client, "deliveries");
    assert (json_array_size (list) == 1);
    json_t *delivery = json_array_get (list, 0);
    assert (streq (json_string_value (json_object_get (delivery, "status")), "failed"));
    assert (json_integer_value (json_object_get (delivery, "attempts")) == 8);
    assert (
        streq (json_string_value (json_object_get (delivery, "lastError")), "connection refused"));
    assert (gateway_fixture_call (client, "GET", path, auth_b, NULL) == 404);

    //  Off and on; a test send goes to this webhook only, as its newest delivery.
    snprintf (path, sizeof path, "/api/webhooks/%s", id_text);
    assert (gateway_fixture_call (client, "PATCH", path, auth_b, "{\"enabled\":false}") == 404);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"enabled\":\"no\"}") == 400);
    assert (gateway_fixture_call (client, "PATCH", path, auth_a, "{\"enabled\":false}") == 200);
    assert (json_is_false (json_object_get (gateway_fixture_data (client, "webhook"), "enabled")));
    snprintf (path, sizeof path, "/api/webhooks/%s/test", id_text);
    assert (gateway_fixture_call (client, "POST", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "POST", path, auth_a, NULL) == 202);
    char notification[24];
    snprintf (notification, sizeof notification, "%" PRId64,
              (int64_t)json_integer_value (gateway_fixture_data (client, "notificationId")));
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    list = gateway_fixture_data (client, "webhooks");
    assert (json_array_size (list) == 2);
    json_t *tested = json_array_get (list, 0), *other = json_array_get (list, 1);
    assert (json_integer_value (json_object_get (tested, "id")) == id);
    assert (json_is_false (json_object_get (tested, "enabled")));
    json_t *last = json_object_get (tested, "lastDelivery");
    assert (streq (json_string_value (json_object_get (last, "status")), "pending"));
    assert (json_integer_value (json_object_get (last, "notificationId")) == atoll (notification));
    assert (json_is_null (json_object_get (other, "lastDelivery")));
    const char *test_values[] = {notification};
    char *check = gateway_fixture_sql (
        pg,
        "SELECT n.kind || (n.read_at IS NOT NULL) || count (d.id)"
        " FROM notifications n JOIN webhook_deliveries d ON d.notification_id = n.id"
        " WHERE n.id = $1::bigint GROUP BY n.id",
        1, test_values);
    assert (streq (check, "webhook.testtrue1"));
    free (check);

    snprintf (path, sizeof path, "/api/webhooks/%s", id_text);
    assert (gateway_fixture_call (client, "DELETE", path, auth_b, NULL) == 404);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 200);
    assert (gateway_fixture_call (client, "DELETE", path, auth_a, NULL) == 404);
    snprintf (path, sizeof path, "/api/webhooks/%s/deliveries", id_text);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "webhooks")) == 1);
}

//  Every route of every table: no session is 401; a route with an id is
//  404 with another user's session, and changes nothing of the owner's.
static void
s_test_authorization (gateway_fixture_client_t *client, PGconn *pg, const char *auth_a,
                      const char *auth_b, const char *user_a)
{
    char *device = s_make_device (client, auth_a, "Owned");
    char *port = s_make_port (client, auth_a, device, "Owned port");
    assert (gateway_fixture_call (client, "POST", "/api/webhooks", auth_a,
                                  "{\"url\":\"http://203.0.113.11/o\"}") == 201);
    char *webhook = zsys_sprintf ("%" PRId64, (int64_t)json_integer_value (json_object_get (
                                                  gateway_fixture_data (client, "webhook"), "id")));
    const char *values[] = {user_a};
    char *notification =
        gateway_fixture_sql (pg,
                             "INSERT INTO notifications (user_id, kind, dedupe_key, title, message)"
                             " VALUES ($1::bigint, 'digest', 'owned', 'T', 'M') RETURNING id::text",
                             1, values);
    char *session = gateway_fixture_sql (
        pg, "SELECT max (id)::text FROM sessions WHERE user_id = $1::bigint", 1, values);
    assert (session);
    //  PUT devices/:id/mqtt-channels: a valid body, so only ownership can refuse it.
    char put_body[128];
    snprintf (put_body, sizeof put_body, "{\"channel\":\"1\",\"portId\":\"%s\"}", port);
    int routes = 0;
    for (size_t table = 0; gateway_api_route_tables[table]; table++)
        for (const gateway_api_route_t *route = gateway_api_route_tables[table]; route->method;
             route++) {
            if (!route->signed_in)
                continue;
            //  The pattern with the owner's ids in it.
            char path[256] = "/api";
            char pattern[128];
            snprintf (pattern, sizeof pattern, "%s", route->pattern);
            const char *resource = strtok (pattern, "/");
            bool has_id = false;
            for (const char *segment = resource; segment; segment = strtok (NULL, "/")) {
                const char *value = segment;
                if (streq (segment, ":uuid"))
                    value = port;
                else if (streq (segment, ":id"))
                    value = streq (resource, "devices")    ? device
                            : streq (resource, "webhooks") ? webhook
                            : streq (resource, "auth")     ? session
                                                           : notification;
                has_id |= value != segment;
                strcat (path, "/");
                strcat (path, value);
            }
            const char *body = streq (route->method, "PATCH")
                                   ? (streq (resource, "notifications") ? "{\"read\":true}"
                                      : streq (resource, "settings")    ? "{\"currency\":\"USD\"}"
                                      : streq (resource, "webhooks")    ? "{\"enabled\":false}"
                                                                        : "{\"name\":\"Taken\"}")
                               : streq (route->method, "PUT") ? put_body
                                                              : NULL;
            if (client->verbose)
                printf ("\n-- %s %s", route->method, path);
            assert (gateway_fixture_call (client, route->method, path, NULL, body) == 401);
            if (has_id) {
                assert (gateway_fixture_call (client, route->method, path, auth_b, body) == 404);
                assert (streq (gateway_fixture_error_code (client), "not_found"));
            }
            routes++;
        }
    assert (routes >= 25);
    //  Nothing of the owner's changed.
    char path[160];
    snprintf (path, sizeof path, "/api/devices/%s", device);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (streq (
        json_string_value (json_object_get (gateway_fixture_data (client, "device"), "name")),
        "Owned"));
    snprintf (path, sizeof path, "/api/ports/%s", port);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (
        streq (json_string_value (json_object_get (gateway_fixture_data (client, "port"), "name")),
               "Owned port"));
    snprintf (path, sizeof path, "/api/webhooks/%s/deliveries", webhook);
    assert (gateway_fixture_call (client, "GET", path, auth_a, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "deliveries")) == 0); //  no test send
    assert (gateway_fixture_call (client, "GET", "/api/webhooks", auth_a, NULL) == 200);
    json_t *hooks = gateway_fixture_data (client, "webhooks");
    for (size_t index = 0; index < json_array_size (hooks); index++)
        assert (json_is_true (json_object_get (json_array_get (hooks, index), "enabled")) ||
                json_integer_value (json_object_get (json_array_get (hooks, index), "id")) !=
                    atoll (webhook));
    const char *read_values[] = {notification};
    char *read = gateway_fixture_sql (
        pg, "SELECT read_at IS NULL FROM notifications WHERE id = $1::bigint", 1, read_values);
    assert (read && streq (read, "t"));
    free (read);
    free (notification);
    free (session);
    zstr_free (&webhook);
    free (port);
    free (device);
}

//  conninfo (key=value or URI) with application_name set, so the test can
//  tell the pool's backends from everyone else's; caller frees.
static char *
s_conninfo_named (const char *conninfo, const char *name)
{
    PQconninfoOption *options = PQconninfoParse (conninfo, NULL);
    assert (options);
    char *named = zsys_sprintf ("application_name='%s'", name);
    for (PQconninfoOption *option = options; option->keyword; option++) {
        if (!option->val || streq (option->keyword, "application_name"))
            continue;
        //  Quoted, with \ and ' escaped, as libpq's key=value syntax wants.
        char value[1024];
        size_t length = 0;
        for (const char *cursor = option->val; *cursor && length + 2 < sizeof value; cursor++) {
            if (*cursor == '\\' || *cursor == '\'')
                value[length++] = '\\';
            value[length++] = *cursor;
        }
        value[length] = 0;
        char *longer = zsys_sprintf ("%s %s='%s'", named, option->keyword, value);
        zstr_free (&named);
        named = longer;
    }
    PQconninfoFree (options);
    return named;
}

//  Ends every backend of the test's pool and waits (5 s at most) until
//  they are gone: what a PostgreSQL restart does to pooled connections.
static void
s_terminate_pool (PGconn *pg, const char *name)
{
    char *ended =
        gateway_fixture_sql (pg,
                             "SELECT count (pg_terminate_backend (pid, 5000)) FROM pg_stat_activity"
                             " WHERE application_name = $1",
                             1, &name);
    assert (ended && atoi (ended) >= 1);
    free (ended);
}

//  Runs a statement that ends its own backend, for the case where the
//  connection is lost again right after its reset.
static int
s_self_terminate (struct mg_connection *conn, void *cbdata)
{
    gateway_api_request_t request;
    memset (&request, 0, sizeof request);
    request.gateway = (gateway_t *)cbdata;
    request.conn = conn;
    request.method = "GET";
    strcpy (request.path, "test/self-terminate");
    int status;
    PGresult *result = gateway_api_run (&request, &status,
                                        "SELECT pg_terminate_backend (pg_backend_pid ())", 0, NULL);
    if (result) {
        PQclear (result);
        return gateway_http_send_data (conn, 200, "Not terminated", NULL);
    }
    return status;
}

//  Registers email with password from the client address forwarded_for
//  (through the trusted proxy 127.0.0.1); returns the status.
static int
s_register_from (gateway_fixture_client_t *client, const char *forwarded_for, const char *email,
                 const char *password)
{
    char headers[128], body[512];
    snprintf (headers, sizeof headers, "X-Forwarded-For: %s\r\n", forwarded_for);
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"Limit\"}", email,
              password);
    return gateway_fixture_call (client, "POST", "/api/auth/register", headers, body);
}

static int
s_login_from (gateway_fixture_client_t *client, const char *forwarded_for, const char *email,
              const char *password)
{
    char headers[128], body[512];
    snprintf (headers, sizeof headers, "X-Forwarded-For: %s\r\n", forwarded_for);
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\"}", email, password);
    return gateway_fixture_call (client, "POST", "/api/auth/login", headers, body);
}

//  true when the last answer was 429 rate_limited with a Retry-After.
static bool
s_limited (gateway_fixture_client_t *client)
{
    return client->status == 429 && streq (gateway_fixture_error_code (client), "rate_limited") &&
           strcasestr (client->head, "\r\nRetry-After: ");
}

//  New passwords: at least 8 characters and not in cracklib's dictionary,
//  refused with a 400 naming the field; nothing is created.
static void
s_test_passwords (gateway_fixture_client_t *client, PGconn *pg, const char *suffix)
{
    const char *weak[] = {"password1", "12345678",    "qwertyuiop",
                          "iloveyou",  "Password123", "abcdefgh"};
    char email[128], body[512];
    snprintf (email, sizeof email, "weak.%s@example.com", suffix);
    for (size_t index = 0; index < sizeof weak / sizeof weak[0]; index++) {
        snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"W\"}", email,
                  weak[index]);
        assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 400);
        assert (streq (gateway_fixture_error_code (client), "validation_error"));
        assert (streq (gateway_fixture_error_field (client), "password"));
        assert (strstr (json_string_value (json_object_get (client->body, "message")), "too "));
    }
    //  Seven characters: the length rule, also on the password field.
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"xK9#qL2\",\"name\":\"W\"}",
              email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 400);
    assert (streq (gateway_fixture_error_field (client), "password"));
    char *count = s_sql_value (pg, "SELECT count(*) FROM users WHERE email = $1", email);
    assert (count && streq (count, "0"));
    free (count);
    //  Long runs are systematic at any length; a long random password is
    //  not, though cracklib alone says so of this one (4 % of such).
    const char *runs[] = {"abcdefghijklmnopqrstu", "12345678901234567890", "zyxwvutsrq9876543210"};
    for (size_t index = 0; index < sizeof runs / sizeof runs[0]; index++) {
        snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"%s\",\"name\":\"W\"}", email,
                  runs[index]);
        assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 400);
        assert (streq (gateway_fixture_error_field (client), "password"));
    }
    snprintf (body, sizeof body,
              "{\"email\":\"r.%s\",\"password\":\"pw-7289b4feaf024521bb4d540130ef8d39\","
              "\"name\":\"W\"}",
              email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 201);
    //  A long passphrase passes.
    snprintf (body, sizeof body,
              "{\"email\":\"%s\",\"password\":\"lamp orbit velvet cactus\",\"name\":\"W\"}", email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", NULL, body) == 201);
}

//  Limits that hit only the abuser, each client told apart through the
//  trusted proxy's X-Forwarded-For: registrations per address; failed
//  logins per address and per account, the right password refused once
//  either is exhausted; unknown emails limited alike.
static void
s_test_abuse_limits (gateway_fixture_client_t *client, const char *suffix)
{
    char email[128], other[128], unknown[128];
    assert (gateway_http_client_proxies_configure ("127.0.0.1", NULL) == 0);

    gateway_http_rate_limit_configure (GATEWAY_RATE_REGISTER, 2, 1);
    //  A refused password costs nothing, so it does not count.
    snprintf (email, sizeof email, "reg0.%s@example.com", suffix);
    assert (s_register_from (client, "198.51.100.1", email, "password1") == 400);
    for (int index = 1; index <= 2; index++) {
        snprintf (email, sizeof email, "reg%d.%s@example.com", index, suffix);
        assert (s_register_from (client, "198.51.100.1", email, "lamp orbit velvet") == 201);
    }
    snprintf (email, sizeof email, "reg3.%s@example.com", suffix);
    assert (s_register_from (client, "198.51.100.1", email, "lamp orbit velvet") == 429);
    assert (s_limited (client));
    //  A forged hop left of the proxy's does not make a new client.
    assert (s_register_from (client, "203.0.113.77, 198.51.100.1", email, "lamp orbit velvet") ==
            429);
    //  Another address registers.
    assert (s_register_from (client, "198.51.100.2", email, "lamp orbit velvet") == 201);

    gateway_http_rate_limit_configure (GATEWAY_RATE_LOGIN, 3, 1);
    gateway_http_rate_limit_configure (GATEWAY_RATE_ACCOUNT, 5, 1);
    snprintf (email, sizeof email, "reg1.%s@example.com", suffix);
    snprintf (other, sizeof other, "reg2.%s@example.com", suffix);
    //  Per address: three failures, then even the right password waits.
    for (int attempt = 0; attempt < 3; attempt++)
        assert (s_login_from (client, "198.51.100.3", email, "wrong horse") == 401);
    assert (s_login_from (client, "198.51.100.3", email, "lamp orbit velvet") == 429);
    assert (s_limited (client));
    assert (s_login_from (client, "198.51.100.3", other, "lamp orbit velvet") == 429);
    //  Another address signs in: the account has 3 failures of its 5.
    assert (s_login_from (client, "198.51.100.4", email, "lamp orbit velvet") == 200);
    //  Success does not refill: two more failures, from two more addresses,
    //  and the account is limited from everywhere.
    assert (s_login_from (client, "198.51.100.5", email, "wrong horse") == 401);
    assert (s_login_from (client, "198.51.100.6", email, "wrong horse") == 401);
    assert (s_login_from (client, "198.51.100.7", email, "lamp orbit velvet") == 429);
    assert (s_limited (client));
    //  ... but not another account from that address, nor in other case.
    assert (s_login_from (client, "198.51.100.7", other, "lamp orbit velvet") == 200);
    char upper[128];
    snprintf (upper, sizeof upper, "REG1.%s@EXAMPLE.com", suffix);
    assert (s_login_from (client, "198.51.100.8", upper, "lamp orbit velvet") == 429);
    //  An email no one has is limited the same way: a 429 tells nothing.
    snprintf (unknown, sizeof unknown, "nobody.limit.%s@example.com", suffix);
    for (int attempt = 0; attempt < 5; attempt++) {
        char from[32];
        snprintf (from, sizeof from, "198.51.101.%d", attempt + 1);
        assert (s_login_from (client, from, unknown, "lamp orbit velvet") == 401);
    }
    assert (s_login_from (client, "198.51.101.9", unknown, "lamp orbit velvet") == 429);

    //  Without a trusted proxy the header is the client's own word: every
    //  request is 127.0.0.1, whatever it says.
    assert (gateway_http_client_proxies_configure ("", NULL) == 0);
    gateway_http_rate_limit_configure (GATEWAY_RATE_LOGIN, 1, 1);
    assert (s_login_from (client, "198.51.102.1", other, "wrong horse") == 401);
    assert (s_login_from (client, "198.51.102.2", other, "lamp orbit velvet") == 429);

    for (int kind = 0; kind < GATEWAY_RATE_KINDS; kind++)
        gateway_http_rate_limit_configure ((gateway_rate_kind_t)kind, 100000, 100000000);
}

//  The sessions of one user: listed with their origin, ended one by one or
//  all but the current; idle ones end; last_seen_at moves at most once a
//  minute; the cookie is Secure behind a trusted https proxy.
static void
s_test_sessions (gateway_fixture_client_t *client, gateway_t *gateway, PGconn *pg,
                 const char *suffix, const char *other_auth)
{
    char email[128], body[512], headers[256], auth[128], path[64], hex[65];
    snprintf (email, sizeof email, "sessions.%s@example.com", suffix);
    snprintf (body, sizeof body,
              "{\"email\":\"%s\",\"password\":\"lamp orbit velvet\",\"name\":\"S\"}", email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/register", "User-Agent: agent-one\r\n",
                                  body) == 201);
    char *first = strdup (json_string_value (gateway_fixture_data (client, "token")));
    //  Plain http: no Secure, even when the client claims https itself.
    assert (!strcasestr (client->head, "Secure"));
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"lamp orbit velvet\"}", email);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", "X-Forwarded-Proto: https\r\n",
                                  body) == 200);
    assert (!strcasestr (client->head, "Secure"));
    char *second = strdup (json_string_value (gateway_fixture_data (client, "token")));
    //  Behind the trusted proxy, which says https: Secure, and its client's address.
    assert (gateway_http_client_proxies_configure ("127.0.0.1", NULL) == 0);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login",
                                  "X-Forwarded-For: 198.51.100.9\r\nX-Forwarded-Proto: https\r\n"
                                  "User-Agent: agent-three\xc3\xa9\r\n",
                                  body) == 200);
    assert (strcasestr (client->head, "HttpOnly; Secure; SameSite=Strict"));
    char *third = strdup (json_string_value (gateway_fixture_data (client, "token")));
    snprintf (headers, sizeof headers, "X-Forwarded-Proto: https\r\n%s", s_bearer (third, auth));
    assert (gateway_fixture_call (client, "POST", "/api/auth/logout", headers, NULL) == 200);
    assert (strcasestr (client->head, "Set-Cookie: pw_session=; HttpOnly; Secure;"));
    assert (gateway_fixture_call (client, "POST", "/api/auth/login",
                                  "X-Forwarded-For: 198.51.100.9\r\nUser-Agent: agent-three\r\n",
                                  body) == 200);
    assert (!strcasestr (client->head, "Secure"));
    free (third);
    third = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (gateway_http_client_proxies_configure ("", NULL) == 0);

    //  Listed, most recently used first, the current one flagged.
    assert (gateway_fixture_call (client, "GET", "/api/auth/sessions", s_bearer (third, auth),
                                  NULL) == 200);
    json_t *list = gateway_fixture_data (client, "sessions");
    assert (json_array_size (list) == 3);
    json_t *newest = json_array_get (list, 0), *oldest = json_array_get (list, 2);
    assert (json_is_true (json_object_get (newest, "current")));
    assert (json_is_false (json_object_get (oldest, "current")));
    assert (json_is_false (json_object_get (json_array_get (list, 1), "current")));
    assert (streq (json_string_value (json_object_get (newest, "clientAddress")), "198.51.100.9"));
    assert (streq (json_string_value (json_object_get (newest, "userAgent")), "agent-three"));
    assert (streq (json_string_value (json_object_get (oldest, "clientAddress")), "127.0.0.1"));
    assert (streq (json_string_value (json_object_get (oldest, "userAgent")), "agent-one"));
    assert (json_is_null (json_object_get (json_array_get (list, 1), "userAgent")));
    const char *created = json_string_value (json_object_get (newest, "createdAt"));
    const char *seen = json_string_value (json_object_get (newest, "lastSeenAt"));
    const char *expires = json_string_value (json_object_get (newest, "expiresAt"));
    assert (created && seen && expires && strlen (created) == 24 && strcmp (expires, seen) > 0);
    json_int_t first_id = json_integer_value (json_object_get (oldest, "id"));
    json_int_t third_id = json_integer_value (json_object_get (newest, "id"));
    assert (first_id > 0 && third_id > first_id);
    //  Another user sees none of them, and cannot end them.
    assert (gateway_fixture_call (client, "GET", "/api/auth/sessions", other_auth, NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "sessions")) >= 1);
    for (size_t index = 0; index < json_array_size (gateway_fixture_data (client, "sessions"));
         index++)
        assert (json_integer_value (json_object_get (
                    json_array_get (gateway_fixture_data (client, "sessions"), index), "id")) !=
                first_id);
    snprintf (path, sizeof path, "/api/auth/sessions/%" JSON_INTEGER_FORMAT, first_id);
    assert (gateway_fixture_call (client, "DELETE", path, other_auth, NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (first, auth), NULL) ==
            200);

    //  last_seen_at: moved when older than a minute, else left alone.
    s_sha256_hex (first, hex);
    char *value = s_sql_value (pg,
                               "UPDATE sessions SET last_seen_at = now () - interval '2 minutes'"
                               " WHERE token_hash = decode ($1, 'hex') RETURNING 1",
                               hex);
    free (value);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (first, auth), NULL) ==
            200);
    value = s_sql_value (pg,
                         "SELECT (now () - last_seen_at < interval '10 seconds')::text"
                         " FROM sessions WHERE token_hash = decode ($1, 'hex')",
                         hex);
    assert (value && streq (value, "true"));
    free (value);
    value = s_sql_value (pg,
                         "UPDATE sessions SET last_seen_at = now () - interval '30 seconds'"
                         " WHERE token_hash = decode ($1, 'hex') RETURNING 1",
                         hex);
    free (value);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (first, auth), NULL) ==
            200);
    value = s_sql_value (pg,
                         "SELECT (now () - last_seen_at > interval '25 seconds')::text"
                         " FROM sessions WHERE token_hash = decode ($1, 'hex')",
                         hex);
    assert (value && streq (value, "true"));
    free (value);

    //  Idle: past session_idle_seconds a session is gone, however young.
    value = s_sql_value (pg,
                         "UPDATE sessions SET last_seen_at = now () - interval '15 days'"
                         " WHERE token_hash = decode ($1, 'hex') RETURNING 1",
                         hex);
    free (value);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (first, auth), NULL) ==
            401);
    assert (gateway_fixture_call (client, "GET", "/api/auth/sessions", s_bearer (third, auth),
                                  NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "sessions")) == 2);
    gateway->session_idle_seconds = 120;
    s_sha256_hex (second, hex);
    value = s_sql_value (pg,
                         "UPDATE sessions SET last_seen_at = now () - interval '3 minutes'"
                         " WHERE token_hash = decode ($1, 'hex') RETURNING 1",
                         hex);
    free (value);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (second, auth), NULL) ==
            401);
    gateway->session_idle_seconds = 0;
    value = s_sql_value (pg,
                         "UPDATE sessions SET last_seen_at = now ()"
                         " WHERE token_hash = decode ($1, 'hex') RETURNING 1",
                         hex);
    free (value);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (second, auth), NULL) ==
            200);

    //  One by one: the second, from the third.
    assert (gateway_fixture_call (client, "GET", "/api/auth/sessions", s_bearer (third, auth),
                                  NULL) == 200);
    list = gateway_fixture_data (client, "sessions");
    assert (json_array_size (list) == 2);
    //  The second was used last, so it leads the list now.
    assert (json_is_false (json_object_get (json_array_get (list, 0), "current")));
    json_int_t second_id = json_integer_value (json_object_get (json_array_get (list, 0), "id"));
    assert (second_id != third_id && second_id != first_id);
    snprintf (path, sizeof path, "/api/auth/sessions/%" JSON_INTEGER_FORMAT, second_id);
    assert (gateway_fixture_call (client, "DELETE", path, s_bearer (third, auth), NULL) == 200);
    assert (!strcasestr (client->head, "Set-Cookie"));
    assert (gateway_fixture_call (client, "DELETE", path, s_bearer (third, auth), NULL) == 404);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (second, auth), NULL) ==
            401);

    //  Everywhere else: two more sessions end, the current stays.
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, body) == 200);
    char *fourth = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, body) == 200);
    char *fifth = strdup (json_string_value (gateway_fixture_data (client, "token")));
    assert (gateway_fixture_call (client, "DELETE", "/api/auth/sessions", s_bearer (third, auth),
                                  NULL) == 200);
    assert (json_integer_value (gateway_fixture_data (client, "ended")) == 2);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (fourth, auth), NULL) ==
            401);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (fifth, auth), NULL) ==
            401);
    assert (gateway_fixture_call (client, "GET", "/api/auth/sessions", s_bearer (third, auth),
                                  NULL) == 200);
    assert (json_array_size (gateway_fixture_data (client, "sessions")) == 1);
    //  Cookie sessions need our origin for it, as for every change.
    char cookie[160];
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\n", third);
    assert (gateway_fixture_call (client, "DELETE", "/api/auth/sessions", cookie, NULL) == 403);
    //  The current one by its id: gone, and its cookie cleared.
    snprintf (path, sizeof path, "/api/auth/sessions/%" JSON_INTEGER_FORMAT, third_id);
    snprintf (headers, sizeof headers, "Cookie: pw_session=%s\r\nX-Requested-With: fetch\r\n",
              third);
    assert (gateway_fixture_call (client, "DELETE", path, headers, NULL) == 200);
    assert (strcasestr (client->head, "Set-Cookie: pw_session=;"));
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", s_bearer (third, auth), NULL) ==
            401);
    assert (gateway_fixture_call (client, "DELETE", "/api/auth/sessions/x", other_auth, NULL) ==
            404);
    free (first);
    free (second);
    free (third);
    free (fourth);
    free (fifth);
}

//  Pooled connections that PostgreSQL dropped are reconnected: the next
//  request succeeds, sign-in included. A connection lost again after its
//  reset is 503 database_unavailable with Retry-After, never a 500.
static void
s_test_reconnect (gateway_fixture_client_t *client, gateway_t *gateway, PGconn *pg,
                  const char *name, const char *auth, const char *login)
{
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", auth, NULL) == 200);
    s_terminate_pool (pg, name);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", auth, NULL) == 200);
    s_terminate_pool (pg, name);
    assert (gateway_fixture_call (client, "POST", "/api/auth/login", NULL, login) == 200);
    assert (gateway_fixture_call (client, "GET", "/api/devices", auth, NULL) == 200);

    mg_set_request_handler (gateway->http, "/test/self-terminate", s_self_terminate, gateway);
    assert (gateway_fixture_call (client, "GET", "/test/self-terminate", NULL, NULL) == 503);
    assert (streq (gateway_fixture_error_code (client), "database_unavailable"));
    assert (strcasestr (client->head, "\r\nRetry-After: 1"));
    mg_set_request_handler (gateway->http, "/test/self-terminate", NULL, NULL);
    assert (gateway_fixture_call (client, "GET", "/api/auth/me", auth, NULL) == 200);
}

//  GET /test/sleep?user=<id>&seconds=<s>: pg_sleep through gateway_api_run
//  on behalf of that user (as if signed in); answers the backend's pid.
static int
s_sleep (struct mg_connection *conn, void *cbdata)
{
    gateway_api_request_t request;
    memset (&request, 0, sizeof request);
    request.gateway = (gateway_t *)cbdata;
    request.conn = conn;
    request.method = "GET";
    request.query = mg_get_request_info (conn)->query_string;
    strcpy (request.path, "test/sleep");
    char seconds[16] = "0";
    assert (gateway_api_query_var (&request, "user", request.user_text, sizeof request.user_text) ==
            1);
    gateway_api_query_var (&request, "seconds", seconds, sizeof seconds);
    request.user = strtoll (request.user_text, NULL, 10);
    const char *values[] = {seconds};
    int status;
    PGresult *result = gateway_api_run (
        &request, &status, "SELECT pg_backend_pid () FROM pg_sleep ($1::float8)", 1, values);
    if (!result)
        return status;
    json_t *data = json_pack ("{s:I}", "pid", (json_int_t)atoll (PQgetvalue (result, 0, 0)));
    PQclear (result);
    return gateway_http_send_data (conn, 200, NULL, data);
}

typedef struct {
    int port;           //  the server's
    const char *path;   //  what to GET
    int status;         //  its answer
    int64_t elapsed;    //  ms to it
    bool retry_after_1; //  it said Retry-After: 1
} s_sleeper_t;

static void *
s_sleeper_run (void *args)
{
    s_sleeper_t *sleeper = (s_sleeper_t *)args;
    gateway_fixture_client_t client = {sleeper->port, 0, NULL, NULL, false};
    int64_t started = zclock_mono ();
    sleeper->status = gateway_fixture_call (&client, "GET", sleeper->path, NULL, NULL);
    sleeper->elapsed = zclock_mono () - started;
    sleeper->retry_after_1 = client.head && strcasestr (client.head, "\r\nRetry-After: 1");
    free (client.head);
    json_decref (client.body);
    return NULL;
}

//  The pool's limits as the API applies them (the test pool: 4
//  connections, a share of 2, a 3 s statement timeout). User 1001 sends
//  three slow statements at once: two run, the third waits its 2 s and
//  gets 429 with Retry-After, while user 1002 is answered at once. A
//  statement past the timeout is 504 query_timeout, and its connection
//  serves the next request.
static void
s_test_limits (gateway_fixture_client_t *client, gateway_t *gateway, const char *auth)
{
    mg_set_request_handler (gateway->http, "/test/sleep", s_sleep, gateway);
    s_sleeper_t sleepers[3];
    pthread_t threads[3];
    for (int index = 0; index < 3; index++) {
        sleepers[index] =
            (s_sleeper_t){client->port, "/test/sleep?user=1001&seconds=2.5", 0, 0, false};
        assert (pthread_create (&threads[index], NULL, s_sleeper_run, &sleepers[index]) == 0);
    }
    zclock_sleep (300);
    int64_t started = zclock_mono ();
    assert (gateway_fixture_call (client, "GET", "/test/sleep?user=1002&seconds=0", NULL, NULL) ==
            200);
    assert (zclock_mono () - started < 500);
    int ok = 0, limited = 0;
    for (int index = 0; index < 3; index++) {
        pthread_join (threads[index], NULL);
        if (sleepers[index].status == 200)
            ok++;
        else {
            assert (sleepers[index].status == 429 && sleepers[index].retry_after_1);
            assert (sleepers[index].elapsed >= 1900 && sleepers[index].elapsed < 2500);
            limited++;
        }
    }
    assert (ok == 2 && limited == 1);

    started = zclock_mono ();
    assert (gateway_fixture_call (client, "GET", "/test/sleep?user=1002&seconds=10", NULL, NULL) ==
            504);
    assert (streq (gateway_fixture_error_code (client), "query_timeout"));
    assert (strcasestr (client->head, "\r\nRetry-After: 5"));
    int64_t elapsed = zclock_mono () - started;
    assert (elapsed >= 2900 && elapsed < 4500);
    //  The pool gives the connection it got back last first: the same
    //  backend, so it came back and was kept.
    assert (gateway_fixture_call (client, "GET", "/test/sleep?user=1002&seconds=0", NULL, NULL) ==
            200);
    json_int_t pid = json_integer_value (gateway_fixture_data (client, "pid"));
    assert (gateway_fixture_call (client, "GET", "/test/sleep?user=1002&seconds=0", NULL, NULL) ==
            200);
    assert (json_integer_value (gateway_fixture_data (client, "pid")) == pid);
    assert (gateway_fixture_call (client, "GET", "/api/devices", auth, NULL) == 200);
    mg_set_request_handler (gateway->http, "/test/sleep", NULL, NULL);
}

void
gateway_api_routes_test (bool verbose)
{
    s_test_series_step ();
    //  The helpers passed; the routes did not run, which ctest should show as a skip.
    const char *conninfo =
        gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset; helpers OK)");
    PGconn *pg = gateway_fixture_connect (conninfo);

    gateway_t gateway;
    memset (&gateway, 0, sizeof gateway);
    gateway.verbose = verbose;
    gateway.offline_seconds = 240;
    gateway.webhook_policy = proto_address_new (false, NULL);
    char pool_name[40];
    snprintf (pool_name, sizeof pool_name, "gateway_api_test_%d", (int)getpid ());
    char *pool_conninfo = s_conninfo_named (conninfo, pool_name);
    gateway.db = gateway_db_new (pool_conninfo, 4);
    gateway_db_set_limits (gateway.db, 3000, 2);
    gateway.cache = gateway_cache_new (conninfo);
    assert (gateway.db && gateway.cache);
    assert (gateway_cache_load (gateway.cache) == 0);

    //  Every request of this test comes from 127.0.0.1: room for the
    //  users it registers and the logins it fails (s_test_abuse_limits tests
    //  the limits themselves).
    for (int kind = 0; kind < GATEWAY_RATE_KINDS; kind++)
        gateway_http_rate_limit_configure ((gateway_rate_kind_t)kind, 100000, 100000000);
    int http_port = gateway_fixture_api_start (&gateway, "4");
    gateway_fixture_client_t client = {http_port, 0, NULL, NULL, verbose};
    char suffix[17];
    uint8_t random[8];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (suffix, sizeof suffix, random, sizeof random);

    char *token_a, *token_b;
    s_test_auth (&client, suffix, &token_a, &token_b);
    s_test_resources (&client, &gateway, pg, token_a, token_b);

    //  token_b's session was expired above: Bob signs in again.
    char auth_a[128], auth_b[128], email[128], body[256];
    snprintf (email, sizeof email, "bob.%s@example.com", suffix);
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"correct horse\"}", email);
    assert (gateway_fixture_call (&client, "POST", "/api/auth/login", NULL, body) == 200);
    free (token_b);
    token_b = strdup (json_string_value (gateway_fixture_data (&client, "token")));
    s_bearer (token_a, auth_a);
    s_bearer (token_b, auth_b);
    assert (gateway_fixture_call (&client, "GET", "/api/auth/me", auth_a, NULL) == 200);
    json_t *settings = json_object_get (gateway_fixture_data (&client, "user"), "settings");
    assert (streq (json_string_value (json_object_get (settings, "timeZone")), "UTC"));
    assert (json_is_null (json_object_get (settings, "locale")));
    assert (gateway_fixture_call (&client, "GET", "/api/settings", auth_a, NULL) == 200);
    settings = gateway_fixture_data (&client, "settings");
    assert (s_number (settings, "tariffPerKwh") == 0.3);
    assert (
        streq (json_string_value (json_object_get (json_object_get (settings, "tariff"), "kind")),
               "flat"));
    char *user_a = s_user_of (pg, token_a);

    s_test_changes (&client, &gateway, pg, auth_a, auth_b);
    s_test_mqtt_channels (&client, conninfo, pg, auth_a, auth_b);
    char *device = s_make_device (&client, auth_a, "Series board");
    char *port = s_make_port (&client, auth_a, device, "Fridge");
    s_test_readings (&client, pg, auth_a, auth_b, port);
    s_test_rollups (&client, pg, auth_a, device);
    s_test_episodes (&client, pg, auth_a, auth_b, port);
    s_test_notifications (&client, pg, auth_a, auth_b, user_a);
    s_test_settings (&client, &gateway, auth_a, port);
    s_test_tariffs (&client, pg, auth_a, port);
    s_test_summary (&client, pg, suffix);
    s_test_webhooks (&client, pg, auth_a, auth_b, user_a);
    s_test_authorization (&client, pg, auth_a, auth_b, user_a);
    s_test_passwords (&client, pg, suffix);
    s_test_abuse_limits (&client, suffix);
    s_test_sessions (&client, &gateway, pg, suffix, auth_b);
    s_test_reconnect (&client, &gateway, pg, pool_name, auth_a, body);
    s_test_limits (&client, &gateway, auth_a);
    //  Without a live class the stream is unavailable, not a crash.
    assert (gateway_fixture_call (&client, "GET", "/api/stream", auth_a, NULL) == 503);

    free (port);
    free (device);
    free (user_a);
    free (token_a);
    free (token_b);
    free (client.head);
    json_decref (client.body);

    mg_stop (gateway.http);
    gateway_cache_destroy (&gateway.cache);
    gateway_db_destroy (&gateway.db);
    proto_address_destroy (&gateway.webhook_policy);
    zstr_free (&pool_conninfo);
    PQfinish (pg);
    printf ("OK\n");
}
