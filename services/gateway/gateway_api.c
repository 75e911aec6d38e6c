/*  =========================================================================
    gateway_api - the user API: /api/auth, /api/devices, /api/ports,
    /api/notifications

    Every route but register and login needs a session (Authorization:
    Bearer, or the pw_session cookie) and every query is filtered by the
    session's user, so another user's row is simply not found: 404, never 403.

    Passwords are hashed and verified on a bounded pool of two slots: argon2id
    takes 64 MiB per call, and a login storm must not exhaust memory. Session
    and device tokens are 256-bit random, shown once, and kept only as their
    SHA-256. After a change the sensor path depends on commits, the cache is
    refreshed at once so the very next reading sees it.
    =========================================================================
*/
#include "gateway.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <strings.h>
#include <time.h>

#define S_DB_WAIT_MS 2000               //  longest wait for a pooled connection
#define S_PASSWORD_SLOTS 2              //  concurrent argon2id calls (2 cores, 64 MiB each)
#define S_PASSWORD_WAIT_S 5             //  longest wait for a slot before 503
#define S_TOKEN_BYTES 32                //  256-bit session and device tokens
#define S_TOKEN_CHARS 43                //  their base64url text, no padding
#define S_HASH_TEXT 67                  //  "\x" + 64 hex digits + NUL: a bytea parameter
#define S_SESSION_COOKIE "pw_session"
#define S_SESSION_SECONDS (30 * 24 * 3600)
#define S_ID_DIGITS_MAX 18              //  bigint ids fit without overflow
#define S_SEGMENTS_MAX 6                //  longest route is 3 segments; more is a 404
#define S_PATH_MAX 256
#define S_NAME_MAX 100
#define S_EMAIL_MAX 254
#define S_PASSWORD_MIN 8
#define S_PASSWORD_MAX 128
#define S_WATTS_MAX 100000.0            //  far above any outlet; keeps settings sane
#define S_PHANTOM_SECONDS_MAX (7 * 24 * 3600)
#define S_NOTIFICATIONS_DEFAULT 50
#define S_NOTIFICATIONS_MAX 100

//  Epoch milliseconds of a timestamptz column, for gateway_http_iso8601.
#define S_MS(column) "(extract(epoch FROM " column ") * 1000)::bigint"

#define S_USER_COLUMNS "id, email, name"
#define S_DEVICE_COLUMNS                                                        \
    "id, name, token_hash IS NOT NULL, " S_MS ("token_created_at") ", "         \
    S_MS ("token_last_used_at") ", " S_MS ("created_at")
#define S_PORT_COLUMNS                                                          \
    "id::text, name, device_id, status, " S_MS ("status_since") ", "            \
    S_MS ("last_reading_at") ", last_power, off_watts, standby_watts, "         \
    "min_phantom_seconds, expected_off, to_char (expected_off_from, 'HH24:MI'), " \
    "to_char (expected_off_to, 'HH24:MI'), " S_MS ("created_at")

//  One request as the handlers see it.
typedef struct {
    gateway_t *gateway;                 //  the running gateway
    struct mg_connection *conn;         //  civetweb connection
    const char *method;                 //  request method
    const char *query;                  //  query string, NULL when none
    char path [S_PATH_MAX];             //  path below /api/, split in place
    char *segments [S_SEGMENTS_MAX];    //  path segments, pointing into path
    int segment_count;                  //  how many
    int64_t user;                       //  signed-in user (after s_require_user)
    char user_text [24];                //  the same, as an SQL parameter
    char session_hash [S_HASH_TEXT];    //  SHA-256 of the session token, bytea text
    bool cookie_session;                //  signed in by cookie, not header
    const char *conflict_code;          //  answer to a unique violation (409), NULL = 400
    const char *conflict_message;       //  its message
} s_request_t;

typedef int (s_handler_fn) (s_request_t *request);

typedef struct {
    const char *method;                 //  exact method
    const char *pattern;                //  segments; ":id" digits, ":uuid" a port id
    bool signed_in;                     //  needs a session
    s_handler_fn *handler;              //  answers and returns the status
} s_route_t;

//  Password pool and the dummy hash, set up once per process.
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static sem_t s_password_slots;
static char s_dummy_hash [crypto_pwhash_STRBYTES];
static bool s_ready;


//  ==========================================================================
//  Small helpers

static void
s_init_once (void)
{
    if (sodium_init () < 0 || sem_init (&s_password_slots, 0, S_PASSWORD_SLOTS) != 0) {
        zsys_error ("gateway api - cannot initialise libsodium or the password pool");
        return;
    }
    //  Unknown emails are verified against this, so they cost the same time
    //  as a wrong password and do not reveal which emails exist.
    char password [2 * 16 + 1];
    uint8_t random [16];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (password, sizeof password, random, sizeof random);
    if (crypto_pwhash_str (s_dummy_hash, password, strlen (password),
                           crypto_pwhash_OPSLIMIT_INTERACTIVE,
                           crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        zsys_error ("gateway api - cannot compute the dummy password hash");
        return;
    }
    s_ready = true;
}

//  Waits at most S_PASSWORD_WAIT_S for a slot of the password pool. 0 or -1.
static int
s_password_slot_take (void)
{
    if (!s_ready)
        return -1;
    struct timespec deadline;
    clock_gettime (CLOCK_REALTIME, &deadline);
    deadline.tv_sec += S_PASSWORD_WAIT_S;
    while (sem_timedwait (&s_password_slots, &deadline) == -1) {
        if (errno != EINTR)
            return -1;
    }
    return 0;
}

//  Hashes password into hash. 0, -1 failed, -2 the pool stayed busy.
static int
s_password_hash (const char *password, char hash [crypto_pwhash_STRBYTES])
{
    if (s_password_slot_take () == -1)
        return -2;
    int rc = crypto_pwhash_str (hash, password, strlen (password),
                                crypto_pwhash_OPSLIMIT_INTERACTIVE,
                                crypto_pwhash_MEMLIMIT_INTERACTIVE);
    sem_post (&s_password_slots);
    return rc == 0 ? 0 : -1;
}

//  Verifies password against stored (NULL: against the dummy hash, and
//  fails). 0 match, -1 no match, -2 the pool stayed busy.
static int
s_password_verify (const char *stored, const char *password)
{
    char hash [crypto_pwhash_STRBYTES];
    bool known = stored && strlen (stored) < sizeof hash;
    memcpy (hash, known ? stored : s_dummy_hash, known ? strlen (stored) + 1 : sizeof hash);
    if (s_password_slot_take () == -1)
        return -2;
    int rc = crypto_pwhash_str_verify (hash, password, strlen (password));
    sem_post (&s_password_slots);
    return rc == 0 && known ? 0 : -1;
}

//  SHA-256 of a token's text, as a bytea parameter ("\x" + hex).
static void
s_token_hash_text (const char *token, char out [S_HASH_TEXT])
{
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *) token, strlen (token));
    out [0] = '\\';
    out [1] = 'x';
    sodium_bin2hex (out + 2, S_HASH_TEXT - 2, digest, sizeof digest);
}

//  A fresh 256-bit token as base64url text, and its hash parameter.
static void
s_token_new (char token [S_TOKEN_CHARS + 1], char hash [S_HASH_TEXT])
{
    uint8_t random [S_TOKEN_BYTES];
    randombytes_buf (random, sizeof random);
    sodium_bin2base64 (token, S_TOKEN_CHARS + 1, random, sizeof random,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (random, sizeof random);
    s_token_hash_text (token, hash);
}

//  true when text has the shape of a token we issue; anything else is
//  rejected before it costs a query.
static bool
s_token_valid (const char *text)
{
    size_t length = strlen (text);
    if (length != S_TOKEN_CHARS)
        return false;
    for (size_t index = 0; index < length; index++)
        if (!isalnum ((unsigned char) text [index]) && text [index] != '-' && text [index] != '_')
            return false;
    return true;
}

static bool
s_is_id (const char *text)
{
    size_t length = strlen (text);
    if (length == 0 || length > S_ID_DIGITS_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (text [index] < '0' || text [index] > '9')
            return false;
    return true;
}

static bool
s_is_uuid (const char *text)
{
    if (strlen (text) != 36)
        return false;
    for (int index = 0; index < 36; index++) {
        bool dash = index == 8 || index == 13 || index == 18 || index == 23;
        if (dash ? text [index] != '-' : !isxdigit ((unsigned char) text [index]))
            return false;
    }
    return true;
}

//  Characters of a UTF-8 string (jansson only hands us valid UTF-8).
static size_t
s_utf8_length (const char *text)
{
    size_t count = 0;
    for (; *text; text++)
        if (((unsigned char) *text & 0xC0) != 0x80)
            count++;
    return count;
}

//  "HH:MM", 00:00 to 23:59.
static bool
s_is_clock_time (const char *text)
{
    return strlen (text) == 5 && isdigit ((unsigned char) text [0])
        && isdigit ((unsigned char) text [1]) && text [2] == ':'
        && isdigit ((unsigned char) text [3]) && isdigit ((unsigned char) text [4])
        && (text [0] - '0') * 10 + (text [1] - '0') < 24 && text [3] < '6';
}

//  Lower-cases a plausible email into out: an '@' with something on both
//  sides, no spaces or control characters, at most 254 bytes. 0 or -1.
static int
s_email_normalize (const char *email, char out [S_EMAIL_MAX + 1])
{
    size_t length = strlen (email);
    const char *at = strrchr (email, '@');
    if (length > S_EMAIL_MAX || !at || at == email || at [1] == 0)
        return -1;
    for (size_t index = 0; index < length; index++) {
        unsigned char c = (unsigned char) email [index];
        if (c <= ' ' || c == 0x7F)
            return -1;
        out [index] = (char) tolower (c);
    }
    out [length] = 0;
    return 0;
}


//  ==========================================================================
//  Answers and JSON from rows

static int
s_not_found (s_request_t *request)
{
    return gateway_http_send_error (request->conn, 404, "not_found", "Not found", 0);
}

static int
s_invalid (s_request_t *request, const char *message)
{
    return gateway_http_send_error (request->conn, 400, "validation_error", message, 0);
}

static int
s_internal (s_request_t *request)
{
    return gateway_http_send_error (request->conn, 500, "internal_error", "Internal error", 0);
}

//  The success envelope with extra header lines (Set-Cookie); steals data.
static int
s_send_with_headers (s_request_t *request, int status, const char *message, json_t *data,
                     const char *headers)
{
    json_t *envelope = json_pack ("{s:b, s:s, s:o}", "success", 1, "message", message, "data", data);
    char *text = envelope ? json_dumps (envelope, JSON_COMPACT) : NULL;
    json_decref (envelope);
    if (!text)
        return s_internal (request);
    gateway_http_send (request->conn, status, "application/json", headers, text, strlen (text));
    free (text);
    return status;
}

static json_t *
s_column_text (PGresult *result, int row, int column)
{
    return PQgetisnull (result, row, column) ? json_null ()
                                             : json_string (PQgetvalue (result, row, column));
}

static json_t *
s_column_integer (PGresult *result, int row, int column)
{
    return PQgetisnull (result, row, column)
        ? json_null () : json_integer (strtoll (PQgetvalue (result, row, column), NULL, 10));
}

static json_t *
s_column_real (PGresult *result, int row, int column)
{
    return PQgetisnull (result, row, column)
        ? json_null () : json_real (strtod (PQgetvalue (result, row, column), NULL));
}

static json_t *
s_column_bool (PGresult *result, int row, int column)
{
    return json_boolean (streq (PQgetvalue (result, row, column), "t"));
}

//  An S_MS column as ISO-8601 UTC with milliseconds, or null.
static json_t *
s_column_time (PGresult *result, int row, int column)
{
    if (PQgetisnull (result, row, column))
        return json_null ();
    char text [32];
    gateway_http_iso8601 (strtoll (PQgetvalue (result, row, column), NULL, 10), text);
    return json_string (text);
}

//  From S_USER_COLUMNS.
static json_t *
s_user_from_row (PGresult *result, int row)
{
    return json_pack ("{s:o, s:o, s:o}", "id", s_column_integer (result, row, 0),
                      "email", s_column_text (result, row, 1),
                      "name", s_column_text (result, row, 2));
}

//  From S_DEVICE_COLUMNS.
static json_t *
s_device_from_row (PGresult *result, int row)
{
    return json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o}",
                      "id", s_column_integer (result, row, 0),
                      "name", s_column_text (result, row, 1),
                      "hasToken", s_column_bool (result, row, 2),
                      "tokenCreatedAt", s_column_time (result, row, 3),
                      "tokenLastUsedAt", s_column_time (result, row, 4),
                      "createdAt", s_column_time (result, row, 5));
}

//  From S_PORT_COLUMNS.
static json_t *
s_port_from_row (PGresult *result, int row)
{
    json_t *settings = json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o}",
                                  "offWatts", s_column_real (result, row, 7),
                                  "standbyWatts", s_column_real (result, row, 8),
                                  "minPhantomSeconds", s_column_integer (result, row, 9),
                                  "expectedOff", s_column_text (result, row, 10),
                                  "expectedOffFrom", s_column_text (result, row, 11),
                                  "expectedOffTo", s_column_text (result, row, 12));
    return json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                      "id", s_column_text (result, row, 0),
                      "name", s_column_text (result, row, 1),
                      "deviceId", s_column_integer (result, row, 2),
                      "status", s_column_text (result, row, 3),
                      "statusSince", s_column_time (result, row, 4),
                      "lastReadingAt", s_column_time (result, row, 5),
                      "lastPower", s_column_real (result, row, 6),
                      "settings", settings,
                      "createdAt", s_column_time (result, row, 13));
}

//  {key: [from_row (each row)]}
static json_t *
s_list_from_rows (PGresult *result, const char *key, json_t *(*from_row) (PGresult *, int))
{
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (list, from_row (result, row));
    return json_pack ("{s:o}", key, list);
}


//  ==========================================================================
//  SQL: one statement per pooled connection, parameters only

//  Runs sql and returns its result when it succeeded. Otherwise it has
//  answered, sets *status and returns NULL: 503 no connection in time, 409
//  request->conflict_code on a unique violation, 400 on another integrity
//  or data error, 500 for anything else.
static PGresult *
s_run (s_request_t *request, int *status, const char *sql, int count, const char *const *values)
{
    PGconn *pg = gateway_db_acquire (request->gateway->db, S_DB_WAIT_MS);
    if (!pg) {
        *status = gateway_http_send_error (request->conn, 503, "unavailable",
                                           "Database busy, retry shortly", 1);
        return NULL;
    }
    PGresult *result = PQexecParams (pg, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType state = PQresultStatus (result);
    if (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK) {
        gateway_db_release (request->gateway->db, pg);
        return result;
    }
    const char *code = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    if (code && streq (code, "23505") && request->conflict_code)
        *status = gateway_http_send_error (request->conn, 409, request->conflict_code,
                                           request->conflict_message, 0);
    else
    if (code && (strncmp (code, "23", 2) == 0 || strncmp (code, "22", 2) == 0))
        *status = s_invalid (request, "Invalid value");
    else {
        zsys_error ("gateway api - %s /api/%s: %s", request->method, request->path,
                    result ? PQresultErrorMessage (result) : PQerrorMessage (pg));
        *status = s_internal (request);
    }
    gateway_db_release (request->gateway->db, pg);
    PQclear (result);
    return NULL;
}


//  ==========================================================================
//  Request bodies: every field type-checked, errors name the field

static int
s_read_body (s_request_t *request, json_t **body)
{
    *body = gateway_http_read_json (request->conn, GATEWAY_BODY_MAX);
    if (!*body)
        return 400;                     //  already answered
    if (!json_is_object (*body)) {
        json_decref (*body);
        *body = NULL;
        return s_invalid (request, "Body must be a JSON object");
    }
    return 0;
}

//  Reads a string field of min..max characters. 0 (value NULL when absent,
//  null or not required), or the status answered.
static int
s_field_string (s_request_t *request, json_t *body, const char *name, bool required,
                size_t min, size_t max, const char **value)
{
    json_t *field = json_object_get (body, name);
    *value = NULL;
    if (!field || json_is_null (field)) {
        if (!required)
            return 0;
    }
    else
    if (json_is_string (field)) {
        const char *text = json_string_value (field);
        size_t length = s_utf8_length (text);
        //  An embedded \u0000 would silently cut the value short.
        if (strlen (text) == json_string_length (field) && length >= min && length <= max) {
            *value = text;
            return 0;
        }
    }
    char message [160];
    snprintf (message, sizeof message, "%s must be a string of %zu to %zu characters", name, min, max);
    return s_invalid (request, message);
}

//  Reads a number field (integer or real) in min..max. 0 (*present false
//  when absent or null), or the status answered.
static int
s_field_number (s_request_t *request, json_t *body, const char *name,
                double min, double max, double *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if (!field || json_is_null (field))
        return 0;
    if (json_is_number (field)) {
        double number = json_number_value (field);
        if (isfinite (number) && number >= min && number <= max) {
            *value = number;
            *present = true;
            return 0;
        }
    }
    char message [160];
    snprintf (message, sizeof message, "%s must be a number from %g to %g", name, min, max);
    return s_invalid (request, message);
}

//  Reads an integer field in min..max. 0 (*present false when absent or
//  null and not required), or the status answered.
static int
s_field_integer (s_request_t *request, json_t *body, const char *name, bool required,
                 int64_t min, int64_t max, int64_t *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if ((!field || json_is_null (field)) && !required)
        return 0;
    if (json_is_integer (field)) {
        json_int_t number = json_integer_value (field);
        if (number >= min && number <= max) {
            *value = number;
            *present = true;
            return 0;
        }
    }
    char message [160];
    snprintf (message, sizeof message, "%s must be an integer from %" PRId64 " to %" PRId64,
              name, min, max);
    return s_invalid (request, message);
}


//  ==========================================================================
//  Sessions

//  Finds the session token: Authorization: Bearer first, else the cookie.
//  0 with token filled, or -1 when there is none of the right shape.
static int
s_session_token (s_request_t *request, char token [S_TOKEN_CHARS + 1])
{
    const char *header = mg_get_header (request->conn, "Authorization");
    if (header) {
        if (strncasecmp (header, "Bearer ", 7) != 0)
            return -1;
        const char *value = header + 7;
        while (*value == ' ')
            value++;
        if (!s_token_valid (value))
            return -1;
        strcpy (token, value);
        request->cookie_session = false;
        return 0;
    }
    const char *cookies = mg_get_header (request->conn, "Cookie");
    char value [128];
    if (!cookies || mg_get_cookie (cookies, S_SESSION_COOKIE, value, sizeof value) < 0
    || !s_token_valid (value))
        return -1;
    strcpy (token, value);
    request->cookie_session = true;
    return 0;
}

//  A browser sends cookies with cross-site requests too; a cross-site form
//  cannot set X-Requested-With, and a cross-site fetch carries its Origin.
static bool
s_same_origin (s_request_t *request)
{
    const char *requested_with = mg_get_header (request->conn, "X-Requested-With");
    if (requested_with && *requested_with)
        return true;
    const char *origin = mg_get_header (request->conn, "Origin");
    const char *host = mg_get_header (request->conn, "Host");
    if (!origin || !host)
        return false;
    const char *rest = strncmp (origin, "http://", 7) == 0 ? origin + 7
                     : strncmp (origin, "https://", 8) == 0 ? origin + 8 : NULL;
    return rest && strcasecmp (rest, host) == 0;
}

//  Signs the request in from its session. 0, or the status answered (401,
//  403 for a cookie-authenticated change from another origin).
static int
s_require_user (s_request_t *request)
{
    char token [S_TOKEN_CHARS + 1];
    if (s_session_token (request, token) == -1)
        return gateway_http_send_error (request->conn, 401, "unauthorized",
                                        "Sign-in required", 0);
    s_token_hash_text (token, request->session_hash);
    const char *values [] = {request->session_hash};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT user_id FROM sessions WHERE token_hash = $1::bytea AND expires_at > now ()",
        1, values);
    if (!result)
        return status;
    bool found = PQntuples (result) == 1;
    if (found) {
        snprintf (request->user_text, sizeof request->user_text, "%s", PQgetvalue (result, 0, 0));
        request->user = strtoll (request->user_text, NULL, 10);
    }
    PQclear (result);
    if (!found)
        return gateway_http_send_error (request->conn, 401, "unauthorized",
                                        "Sign-in required", 0);
    bool changes = !streq (request->method, "GET") && !streq (request->method, "HEAD");
    if (request->cookie_session && changes && !s_same_origin (request))
        return gateway_http_send_error (request->conn, 403, "csrf_rejected",
                                        "Cookie sessions need X-Requested-With or a same Origin", 0);
    return 0;
}

//  {user, token} and the session cookie.
static int
s_send_session (s_request_t *request, int status, const char *message, PGresult *user,
                const char *token)
{
    char cookie [160];
    snprintf (cookie, sizeof cookie,
              "Set-Cookie: " S_SESSION_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%d\r\n",
              token, S_SESSION_SECONDS);
    json_t *data = json_pack ("{s:o, s:s}", "user", s_user_from_row (user, 0), "token", token);
    return s_send_with_headers (request, status, message, data, cookie);
}


//  ==========================================================================
//  /api/auth

static int
s_auth_register (s_request_t *request)
{
    json_t *body;
    int status = s_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password, *name;
    char normal [S_EMAIL_MAX + 1];
    if ((status = s_field_string (request, body, "email", true, 3, S_EMAIL_MAX, &email))
    ||  (status = s_field_string (request, body, "password", true, S_PASSWORD_MIN,
                                  S_PASSWORD_MAX, &password))
    ||  (status = s_field_string (request, body, "name", true, 1, S_NAME_MAX, &name)))
        goto done;
    if (s_email_normalize (email, normal) == -1) {
        status = s_invalid (request, "email must be a valid email address");
        goto done;
    }
    //  Fail fast on a taken email before spending a password slot; the
    //  unique index still decides a race.
    request->conflict_code = "email_taken";
    request->conflict_message = "Email already registered";
    const char *lookup [] = {normal};
    PGresult *result = s_run (request, &status, "SELECT 1 FROM users WHERE lower (email) = $1",
                              1, lookup);
    if (!result)
        goto done;
    bool taken = PQntuples (result) > 0;
    PQclear (result);
    if (taken) {
        status = gateway_http_send_error (request->conn, 409, "email_taken",
                                          "Email already registered", 0);
        goto done;
    }
    char hash [crypto_pwhash_STRBYTES];
    int rc = s_password_hash (password, hash);
    if (rc != 0) {
        status = rc == -2 ? gateway_http_send_error (request->conn, 503, "busy",
                                                     "Too many sign-ins, retry shortly", 5)
                          : s_internal (request);
        goto done;
    }
    char token [S_TOKEN_CHARS + 1], token_hash [S_HASH_TEXT];
    s_token_new (token, token_hash);
    const char *values [] = {normal, name, hash, token_hash};
    //  One statement, so there is never a user without the session we answer.
    result = s_run (request, &status,
        "WITH created AS (INSERT INTO users (email, name, password_hash)"
        "                 VALUES ($1, $2, $3) RETURNING " S_USER_COLUMNS "),"
        " session AS (INSERT INTO sessions (token_hash, user_id, expires_at)"
        "             SELECT $4::bytea, id, now () + interval '30 days' FROM created)"
        " SELECT " S_USER_COLUMNS " FROM created", 4, values);
    if (!result)
        goto done;
    status = PQntuples (result) == 1
        ? s_send_session (request, 201, "User registered", result, token) : s_internal (request);
    PQclear (result);
done:
    json_decref (body);
    return status;
}

static int
s_auth_login (s_request_t *request)
{
    json_t *body;
    int status = s_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password;
    char normal [S_EMAIL_MAX + 1] = "";
    if ((status = s_field_string (request, body, "email", true, 1, 1000, &email))
    ||  (status = s_field_string (request, body, "password", true, 1, 1000, &password)))
        goto done;
    //  An email we could never have stored is just unknown: same answer.
    bool plausible = s_email_normalize (email, normal) == 0;
    const char *lookup [] = {normal};
    PGresult *user = s_run (request, &status,
        "SELECT " S_USER_COLUMNS ", password_hash FROM users WHERE lower (email) = $1",
        1, lookup);
    if (!user)
        goto done;
    bool known = plausible && PQntuples (user) == 1;
    int rc = s_password_verify (known ? PQgetvalue (user, 0, 3) : NULL, password);
    if (rc != 0) {
        status = rc == -2 ? gateway_http_send_error (request->conn, 503, "busy",
                                                     "Too many sign-ins, retry shortly", 5)
                          : gateway_http_send_error (request->conn, 401, "invalid_credentials",
                                                     "Invalid email or password", 0);
        PQclear (user);
        goto done;
    }
    char token [S_TOKEN_CHARS + 1], token_hash [S_HASH_TEXT];
    s_token_new (token, token_hash);
    const char *values [] = {token_hash, PQgetvalue (user, 0, 0)};
    //  Expired sessions of this user go with the new one: cheap, indexed.
    PGresult *result = s_run (request, &status,
        "WITH expired AS (DELETE FROM sessions WHERE user_id = $2::bigint AND expires_at < now ())"
        " INSERT INTO sessions (token_hash, user_id, expires_at)"
        " VALUES ($1::bytea, $2::bigint, now () + interval '30 days')", 2, values);
    if (result) {
        PQclear (result);
        status = s_send_session (request, 200, "Logged in", user, token);
    }
    PQclear (user);
done:
    json_decref (body);
    return status;
}

static int
s_auth_logout (s_request_t *request)
{
    const char *values [] = {request->session_hash};
    int status;
    PGresult *result = s_run (request, &status,
                              "DELETE FROM sessions WHERE token_hash = $1::bytea", 1, values);
    if (!result)
        return status;
    PQclear (result);
    return s_send_with_headers (request, 200, "Logged out", json_object (),
        "Set-Cookie: " S_SESSION_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0\r\n");
}

static int
s_auth_me (s_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT " S_USER_COLUMNS " FROM users WHERE id = $1::bigint", 1, values);
    if (!result)
        return status;
    status = PQntuples (result) == 1
        ? gateway_http_send_data (request->conn, 200, NULL,
                                  json_pack ("{s:o}", "user", s_user_from_row (result, 0)))
        : gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    PQclear (result);
    return status;
}


//  ==========================================================================
//  /api/devices

//  Answers {device} from a one-row result or 404; then refreshes the cache
//  entry when asked (the statement has committed by now).
static int
s_send_device (s_request_t *request, PGresult *result, int status, const char *message,
               const char *token, bool refresh)
{
    if (PQntuples (result) != 1) {
        PQclear (result);
        return s_not_found (request);
    }
    int64_t device = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    json_t *data = json_pack ("{s:o}", "device", s_device_from_row (result, 0));
    if (token)
        json_object_set_new (data, "token", json_string (token));
    PQclear (result);
    if (refresh)
        gateway_cache_refresh_device (request->gateway->cache, device);
    return gateway_http_send_data (request->conn, status, message, data);
}

static int
s_devices_list (s_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT " S_DEVICE_COLUMNS " FROM devices WHERE user_id = $1::bigint ORDER BY id",
        1, values);
    if (!result)
        return status;
    json_t *data = s_list_from_rows (result, "devices", s_device_from_row);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

static int
s_devices_create (s_request_t *request)
{
    json_t *body;
    int status = s_read_body (request, &body);
    if (status)
        return status;
    const char *name;
    if ((status = s_field_string (request, body, "name", true, 1, S_NAME_MAX, &name)) == 0) {
        const char *values [] = {request->user_text, name};
        PGresult *result = s_run (request, &status,
            "INSERT INTO devices (user_id, name) VALUES ($1::bigint, $2)"
            " RETURNING " S_DEVICE_COLUMNS, 2, values);
        if (result)
            status = s_send_device (request, result, 201, "Device created", NULL, false);
    }
    json_decref (body);
    return status;
}

static int
s_devices_get (s_request_t *request)
{
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT " S_DEVICE_COLUMNS " FROM devices WHERE id = $1::bigint AND user_id = $2::bigint",
        2, values);
    return result ? s_send_device (request, result, 200, NULL, NULL, false) : status;
}

//  Issues a new token. The current one, if any, becomes the previous one and
//  stays valid for a 5-minute grace, so a board can be re-flashed without
//  losing readings; the one before that is dropped.
static int
s_devices_token_create (s_request_t *request)
{
    char token [S_TOKEN_CHARS + 1], token_hash [S_HASH_TEXT];
    s_token_new (token, token_hash);
    const char *values [] = {request->segments [1], request->user_text, token_hash};
    int status;
    //  SET expressions see the row as it was, so token_hash on the right is the old one.
    PGresult *result = s_run (request, &status,
        "UPDATE devices SET previous_token_hash = token_hash,"
        " previous_token_expires_at = CASE WHEN token_hash IS NULL THEN NULL"
        "                             ELSE now () + interval '5 minutes' END,"
        " token_hash = $3::bytea, token_created_at = now (), token_expires_at = NULL,"
        " token_last_used_at = NULL"
        " WHERE id = $1::bigint AND user_id = $2::bigint RETURNING " S_DEVICE_COLUMNS,
        3, values);
    return result ? s_send_device (request, result, 201, "Device token created", token, true)
                  : status;
}

//  Revokes current and previous token at once: a leaked token stops now.
static int
s_devices_token_revoke (s_request_t *request)
{
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "UPDATE devices SET token_hash = NULL, token_created_at = NULL, token_expires_at = NULL,"
        " previous_token_hash = NULL, previous_token_expires_at = NULL"
        " WHERE id = $1::bigint AND user_id = $2::bigint RETURNING " S_DEVICE_COLUMNS,
        2, values);
    return result ? s_send_device (request, result, 200, "Device token revoked", NULL, true)
                  : status;
}


//  ==========================================================================
//  /api/ports

//  Detection settings of a new port, defaults as in the schema.
typedef struct {
    double off_watts;
    double standby_watts;
    int64_t min_phantom_seconds;
    const char *expected_off;
    const char *expected_off_from;
    const char *expected_off_to;
} s_settings_t;

//  Reads the optional settings fields of body over the defaults. 0, or the
//  status answered.
static int
s_settings_read (s_request_t *request, json_t *body, s_settings_t *settings)
{
    *settings = (s_settings_t) {0.5, 15, 60, "never", NULL, NULL};
    bool present;
    int status;
    const char *expected_off;
    if ((status = s_field_number (request, body, "offWatts", 0, S_WATTS_MAX,
                                  &settings->off_watts, &present))
    ||  (status = s_field_number (request, body, "standbyWatts", 0, S_WATTS_MAX,
                                  &settings->standby_watts, &present))
    ||  (status = s_field_integer (request, body, "minPhantomSeconds", false, 0,
                                   S_PHANTOM_SECONDS_MAX, &settings->min_phantom_seconds, &present))
    ||  (status = s_field_string (request, body, "expectedOff", false, 1, 16, &expected_off))
    ||  (status = s_field_string (request, body, "expectedOffFrom", false, 5, 5,
                                  &settings->expected_off_from))
    ||  (status = s_field_string (request, body, "expectedOffTo", false, 5, 5,
                                  &settings->expected_off_to)))
        return status;
    if (settings->standby_watts <= settings->off_watts)
        return s_invalid (request, "standbyWatts must be above offWatts");
    if (expected_off) {
        if (!streq (expected_off, "never") && !streq (expected_off, "always")
        &&  !streq (expected_off, "window"))
            return s_invalid (request, "expectedOff must be never, always or window");
        settings->expected_off = expected_off;
    }
    if ((settings->expected_off_from && !s_is_clock_time (settings->expected_off_from))
    ||  (settings->expected_off_to && !s_is_clock_time (settings->expected_off_to)))
        return s_invalid (request, "expectedOffFrom and expectedOffTo must be HH:MM");
    if (streq (settings->expected_off, "window")
    && (!settings->expected_off_from || !settings->expected_off_to))
        return s_invalid (request, "expectedOff window needs expectedOffFrom and expectedOffTo");
    return 0;
}

static int
s_ports_list (s_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT " S_PORT_COLUMNS " FROM ports WHERE user_id = $1::bigint ORDER BY created_at, id",
        1, values);
    if (!result)
        return status;
    json_t *data = s_list_from_rows (result, "ports", s_port_from_row);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

static int
s_ports_create (s_request_t *request)
{
    json_t *body;
    int status = s_read_body (request, &body);
    if (status)
        return status;
    const char *name;
    int64_t device;
    bool present;
    s_settings_t settings;
    if ((status = s_field_string (request, body, "name", true, 1, S_NAME_MAX, &name))
    ||  (status = s_field_integer (request, body, "deviceId", true, 1, INT64_MAX, &device, &present))
    ||  (status = s_settings_read (request, body, &settings)))
        goto done;
    char device_text [24], off [32], standby [32], seconds [24];
    snprintf (device_text, sizeof device_text, "%" PRId64, device);
    snprintf (off, sizeof off, "%.9g", settings.off_watts);
    snprintf (standby, sizeof standby, "%.9g", settings.standby_watts);
    snprintf (seconds, sizeof seconds, "%" PRId64, settings.min_phantom_seconds);
    const char *values [] = {request->user_text, device_text, name, off, standby, seconds,
                             settings.expected_off, settings.expected_off_from,
                             settings.expected_off_to};
    //  Selecting the device by id and owner makes someone else's device a 404.
    PGresult *result = s_run (request, &status,
        "INSERT INTO ports (user_id, device_id, name, off_watts, standby_watts,"
        "                   min_phantom_seconds, expected_off, expected_off_from, expected_off_to)"
        " SELECT $1::bigint, id, $3, $4::real, $5::real, $6::integer, $7, $8::time, $9::time"
        " FROM devices WHERE id = $2::bigint AND user_id = $1::bigint"
        " RETURNING " S_PORT_COLUMNS, 9, values);
    if (!result)
        goto done;
    if (PQntuples (result) == 1) {
        char port [40];
        snprintf (port, sizeof port, "%s", PQgetvalue (result, 0, 0));
        json_t *data = json_pack ("{s:o}", "port", s_port_from_row (result, 0));
        gateway_cache_refresh_port (request->gateway->cache, port);
        status = gateway_http_send_data (request->conn, 201, "Port created", data);
    }
    else
        status = gateway_http_send_error (request->conn, 404, "not_found", "Device not found", 0);
    PQclear (result);
done:
    json_decref (body);
    return status;
}

static int
s_ports_get (s_request_t *request)
{
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT " S_PORT_COLUMNS " FROM ports WHERE id = $1::uuid AND user_id = $2::bigint",
        2, values);
    if (!result)
        return status;
    status = PQntuples (result) == 1
        ? gateway_http_send_data (request->conn, 200, NULL,
                                  json_pack ("{s:o}", "port", s_port_from_row (result, 0)))
        : s_not_found (request);
    PQclear (result);
    return status;
}


//  ==========================================================================
//  /api/notifications

static json_t *
s_notification_from_row (PGresult *result, int row)
{
    json_t *data = json_loads (PQgetvalue (result, row, 5), 0, NULL);
    return json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                      "id", s_column_integer (result, row, 0),
                      "kind", s_column_text (result, row, 1),
                      "portId", s_column_text (result, row, 2),
                      "title", s_column_text (result, row, 3),
                      "message", s_column_text (result, row, 4),
                      "data", data ? data : json_object (),
                      "read", s_column_bool (result, row, 6),
                      "createdAt", s_column_time (result, row, 7));
}

//  Newest first; ?before=<id> pages back, ?limit=1..100.
static int
s_notifications_list (s_request_t *request)
{
    char limit [8] = "50", before [S_ID_DIGITS_MAX + 2] = "";
    size_t query_length = request->query ? strlen (request->query) : 0;
    int length = request->query
        ? mg_get_var (request->query, query_length, "limit", limit, sizeof limit) : -1;
    if (length == -1)
        snprintf (limit, sizeof limit, "%d", S_NOTIFICATIONS_DEFAULT);
    else
    if (length < 0 || !s_is_id (limit) || atoi (limit) < 1 || atoi (limit) > S_NOTIFICATIONS_MAX)
        return s_invalid (request, "limit must be an integer from 1 to 100");
    length = request->query
        ? mg_get_var (request->query, query_length, "before", before, sizeof before) : -1;
    if (length != -1 && (length < 0 || !s_is_id (before)))
        return s_invalid (request, "before must be a notification id");

    const char *values [] = {request->user_text, length == -1 ? NULL : before, limit};
    int status;
    PGresult *result = s_run (request, &status,
        "SELECT id, kind, port_id::text, title, message, data::text, read_at IS NOT NULL, "
        S_MS ("created_at") " FROM notifications"
        " WHERE user_id = $1::bigint AND ($2::bigint IS NULL OR id < $2::bigint)"
        " ORDER BY id DESC LIMIT $3::integer", 3, values);
    if (!result)
        return status;
    PGresult *unread = s_run (request, &status,
        "SELECT count(*) FROM notifications WHERE user_id = $1::bigint AND read_at IS NULL",
        1, values);
    if (!unread) {
        PQclear (result);
        return status;
    }
    json_t *data = s_list_from_rows (result, "notifications", s_notification_from_row);
    json_object_set_new (data, "unread", s_column_integer (unread, 0, 0));
    PQclear (result);
    PQclear (unread);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}


//  ==========================================================================
//  Routing

static s_route_t s_routes [] = {
    {"POST",   "auth/register",     false, s_auth_register},
    {"POST",   "auth/login",        false, s_auth_login},
    {"POST",   "auth/logout",       true,  s_auth_logout},
    {"GET",    "auth/me",           true,  s_auth_me},
    {"GET",    "devices",           true,  s_devices_list},
    {"POST",   "devices",           true,  s_devices_create},
    {"GET",    "devices/:id",       true,  s_devices_get},
    {"POST",   "devices/:id/token", true,  s_devices_token_create},
    {"DELETE", "devices/:id/token", true,  s_devices_token_revoke},
    {"GET",    "ports",             true,  s_ports_list},
    {"POST",   "ports",             true,  s_ports_create},
    {"GET",    "ports/:uuid",       true,  s_ports_get},
    {"GET",    "notifications",     true,  s_notifications_list},
};

//  Splits the URI below /api/ into segments; one trailing slash is allowed.
//  0, or -1 when it cannot be any route of ours.
static int
s_parse_path (s_request_t *request, const char *uri)
{
    if (!uri || strncmp (uri, "/api/", 5) != 0 || strlen (uri + 5) >= sizeof request->path)
        return -1;
    strcpy (request->path, uri + 5);
    size_t length = strlen (request->path);
    if (length && request->path [length - 1] == '/')
        request->path [length - 1] = 0;
    char *cursor = request->path;
    while (true) {
        if (request->segment_count == S_SEGMENTS_MAX)
            return -1;
        request->segments [request->segment_count++] = cursor;
        char *slash = strchr (cursor, '/');
        if (!slash)
            break;
        *slash = 0;
        cursor = slash + 1;
    }
    return 0;
}

//  true when the request's segments fit the route's pattern.
static bool
s_route_matches (const s_route_t *route, const s_request_t *request)
{
    const char *pattern = route->pattern;
    for (int index = 0; index < request->segment_count; index++) {
        if (!*pattern)
            return false;
        size_t length = strcspn (pattern, "/");
        const char *segment = request->segments [index];
        bool fits = strncmp (pattern, ":id", length) == 0 && length == 3 ? s_is_id (segment)
                  : strncmp (pattern, ":uuid", length) == 0 && length == 5 ? s_is_uuid (segment)
                  : strlen (segment) == length && strncmp (pattern, segment, length) == 0;
        if (!fits)
            return false;
        pattern += length;
        if (*pattern == '/')
            pattern++;
    }
    return *pattern == 0;
}

//  civetweb entry for everything below /api/ that no other class claimed.
static int
s_dispatch (struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    s_request_t request;
    memset (&request, 0, sizeof request);
    request.gateway = (gateway_t *) cbdata;
    request.conn = conn;
    request.method = info && info->request_method ? info->request_method : "";
    request.query = info ? info->query_string : NULL;

    if (!info || s_parse_path (&request, info->local_uri) == -1)
        return s_not_found (&request);
    const s_route_t *route = NULL;
    bool path_known = false;
    for (size_t index = 0; index < sizeof s_routes / sizeof s_routes [0] && !route; index++)
        if (s_route_matches (&s_routes [index], &request)) {
            path_known = true;
            if (streq (s_routes [index].method, request.method))
                route = &s_routes [index];
        }
    int status;
    if (!route)
        status = path_known
            ? gateway_http_send_error (conn, 405, "method_not_allowed", "Method not allowed", 0)
            : s_not_found (&request);
    else
    if (route->signed_in && (status = s_require_user (&request)) != 0)
        ;                               //  answered
    else
        status = route->handler (&request);
    if (request.gateway->verbose)
        zsys_debug ("gateway api - %s %s: %d", request.method, info->local_uri, status);
    return status;
}

//  --------------------------------------------------------------------------
//  Registers the user API. Our resources by prefix, and a pattern for the
//  rest of /api/ so an unknown route gets the JSON 404; civetweb tries
//  patterns after exact and prefix handlers, so other classes' routes
//  (e.g. /api/sensor/reading) win whatever the registration order.
void
gateway_api_register (gateway_t *self)
{
    assert (self);
    pthread_once (&s_once, s_init_once);
    if (!s_ready)
        zsys_error ("gateway api - password pool unavailable, sign-ins will fail");
    static const char *prefixes [] = {
        "/api/auth", "/api/devices", "/api/ports", "/api/notifications", "/api/**"
    };
    for (size_t index = 0; index < sizeof prefixes / sizeof prefixes [0]; index++)
        mg_set_request_handler (self->http, prefixes [index], s_dispatch, self);
}


//  ==========================================================================
//  Self test: the pure helpers always; the routes over real HTTP against
//  PHANTOM_TEST_DATABASE (a migrated database) when it is set.

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#define TEST_PORT_FIRST 3111            //  gwapi's test ports, when :0 is refused
#define TEST_PORT_LAST 3119

typedef struct {
    int port;                           //  server port
    int status;                         //  last answer's status
    char *head;                         //  its status line and headers
    json_t *body;                       //  its JSON body, NULL if none
    bool verbose;                       //  print every exchange
} s_client_t;

//  Sends one request (Connection: close) and reads the whole answer.
static int
s_call (s_client_t *client, const char *method, const char *path, const char *headers,
        const char *body)
{
    free (client->head);
    client->head = NULL;
    json_decref (client->body);
    client->body = NULL;
    client->status = 0;

    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    //  Above the password pool's 5 s wait, so a busy pool shows as 503, not as a hang.
    struct timeval timeout = {15, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t) client->port);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = connect (fd, (struct sockaddr *) &address, sizeof address);
    assert (rc == 0);
    char *request = zsys_sprintf (
        "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
        "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
        method, path, client->port, body ? strlen (body) : 0, headers ? headers : "",
        body ? body : "");
    size_t length = strlen (request);
    assert (send (fd, request, length, 0) == (ssize_t) length);
    zstr_free (&request);

    size_t size = 16384, got = 0;
    char *reply = (char *) malloc (size);
    assert (reply);
    while (true) {
        if (got + 1 == size) {
            size *= 2;
            reply = (char *) realloc (reply, size);
            assert (reply);
        }
        ssize_t count = recv (fd, reply + got, size - 1 - got, 0);
        if (count <= 0)
            break;
        got += (size_t) count;
        reply [got] = 0;
        char *end = strstr (reply, "\r\n\r\n");
        char *content_length = strcasestr (reply, "\r\nContent-Length:");
        if (end && content_length && content_length < end
        &&  got >= (size_t) (end + 4 - reply) + (size_t) atol (content_length + 17))
            break;
    }
    reply [got] = 0;
    close (fd);
    sscanf (reply, "HTTP/1.%*d %d", &client->status);
    char *end = strstr (reply, "\r\n\r\n");
    if (end) {
        client->head = strndup (reply, (size_t) (end - reply));
        client->body = json_loads (end + 4, 0, NULL);
    }
    if (client->verbose)
        printf ("\n%s %s %s -> %s", method, path, body ? body : "", reply);
    free (reply);
    return client->status;
}

//  data.<key> of the last answer.
static json_t *
s_data (s_client_t *client, const char *key)
{
    return json_object_get (json_object_get (client->body, "data"), key);
}

static const char *
s_error_code (s_client_t *client)
{
    return json_string_value (json_object_get (json_object_get (client->body, "error"), "code"));
}

//  An Authorization header line for token; the buffer is the caller's.
static const char *
s_bearer (const char *token, char buffer [128])
{
    snprintf (buffer, 128, "Authorization: Bearer %s\r\n", token);
    return buffer;
}

//  First cell of a one-parameter query, or NULL; caller frees.
static char *
s_sql_value (PGconn *pg, const char *sql, const char *parameter)
{
    const char *values [] = {parameter};
    PGresult *result = PQexecParams (pg, sql, parameter ? 1 : 0, NULL, values, NULL, NULL, 0);
    char *value = NULL;
    if (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1
    &&  !PQgetisnull (result, 0, 0))
        value = strdup (PQgetvalue (result, 0, 0));
    else
    if (PQresultStatus (result) != PGRES_TUPLES_OK)
        printf ("\nSQL failed: %s", PQresultErrorMessage (result));
    PQclear (result);
    return value;
}

static void
s_sha256_hex (const char *token, char out [65])
{
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *) token, strlen (token));
    sodium_bin2hex (out, 65, digest, sizeof digest);
}

static bool
s_cache_knows (gateway_cache_t *cache, const char *token)
{
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *) token, strlen (token));
    gateway_device_t device;
    return gateway_cache_device (cache, digest, &device);
}

static void
s_test_helpers (void)
{
    assert (s_is_id ("1") && s_is_id ("123456789012345678"));
    assert (!s_is_id ("1234567890123456789") && !s_is_id ("") && !s_is_id ("12a")
            && !s_is_id ("-1") && !s_is_id ("1 "));
    assert (s_is_uuid ("123e4567-e89b-12d3-a456-426614174000"));
    assert (!s_is_uuid ("123e4567e89b12d3a456426614174000")
            && !s_is_uuid ("123e4567-e89b-12d3-a456-42661417400g")
            && !s_is_uuid ("123e4567-e89b-12d3-a456-4266141740001"));
    char email [S_EMAIL_MAX + 1];
    assert (s_email_normalize ("Ann.B@Example.COM", email) == 0 && streq (email, "ann.b@example.com"));
    assert (s_email_normalize ("ann.example.com", email) == -1);
    assert (s_email_normalize ("@example.com", email) == -1);
    assert (s_email_normalize ("ann@", email) == -1);
    assert (s_email_normalize ("a nn@example.com", email) == -1);
    assert (s_is_clock_time ("00:00") && s_is_clock_time ("23:59"));
    assert (!s_is_clock_time ("24:00") && !s_is_clock_time ("12:60") && !s_is_clock_time ("1:00"));
    assert (s_utf8_length ("Küche") == 5);

    char token [S_TOKEN_CHARS + 1], other [S_TOKEN_CHARS + 1], hash [S_HASH_TEXT];
    s_token_new (token, hash);
    s_token_new (other, hash);
    assert (strlen (token) == S_TOKEN_CHARS && s_token_valid (token) && !streq (token, other));
    assert (strlen (hash) == S_HASH_TEXT - 1 && hash [0] == '\\' && hash [1] == 'x');
    assert (!s_token_valid ("short") && !s_token_valid ("0123456789012345678901234567890123456789+/="));

    //  Routes: shape decides 404 versus a route; garbage ids fit no route.
    const char *cases [][2] = {
        {"/api/devices", "devices"}, {"/api/devices/", "devices"},
        {"/api/devices/42/token", "devices/:id/token"},
        {"/api/ports/123e4567-e89b-12d3-a456-426614174000", "ports/:uuid"},
        {"/api/devices/4x", NULL}, {"/api/ports/42", NULL}, {"/api/devices//token", NULL},
        {"/api/devices/1234567890123456789", NULL}, {"/api/nothing", NULL},
        {"/api/a/b/c/d/e/f/g", NULL}
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases [0]; index++) {
        s_request_t request;
        memset (&request, 0, sizeof request);
        const char *matched = NULL;
        if (s_parse_path (&request, cases [index][0]) == 0)
            for (size_t route = 0; route < sizeof s_routes / sizeof s_routes [0]; route++)
                if (s_route_matches (&s_routes [route], &request))
                    matched = s_routes [route].pattern;
        assert (cases [index][1] ? matched && streq (matched, cases [index][1]) : !matched);
    }
}

//  Registers (201) and returns the session token, owned by the caller.
static char *
s_test_register (s_client_t *client, const char *email, const char *name)
{
    char *body = zsys_sprintf ("{\"email\":\"%s\",\"password\":\"correct horse\",\"name\":\"%s\"}",
                               email, name);
    int status = s_call (client, "POST", "/api/auth/register", NULL, body);
    zstr_free (&body);
    assert (status == 201);
    assert (json_is_true (json_object_get (client->body, "success")));
    assert (streq (json_string_value (json_object_get (client->body, "message")), "User registered"));
    json_t *user = s_data (client, "user");
    assert (json_integer_value (json_object_get (user, "id")) > 0);
    assert (streq (json_string_value (json_object_get (user, "name")), name));
    const char *token = json_string_value (s_data (client, "token"));
    assert (token && s_token_valid (token));
    return strdup (token);
}

static void
s_test_auth (s_client_t *client, const char *suffix, char **token_a, char **token_b)
{
    char auth [128], email [128], body [512];
    //  Mixed case in, lower case stored and unique regardless of case.
    snprintf (email, sizeof email, "Ann.%s@Example.com", suffix);
    *token_a = s_test_register (client, email, "Ann");
    char lower [S_EMAIL_MAX + 1];
    s_email_normalize (email, lower);
    assert (streq (json_string_value (json_object_get (s_data (client, "user"), "email")), lower));
    snprintf (body, sizeof body, "{\"email\":\"ANN.%s@example.COM\",\"password\":\"something else\","
              "\"name\":\"Other\"}", suffix);
    assert (s_call (client, "POST", "/api/auth/register", NULL, body) == 409);
    assert (streq (s_error_code (client), "email_taken"));

    //  Validation: each message names the field.
    assert (s_call (client, "POST", "/api/auth/register", NULL,
                    "{\"email\":\"nobody\",\"password\":\"long enough\",\"name\":\"N\"}") == 400);
    assert (streq (s_error_code (client), "validation_error"));
    assert (s_call (client, "POST", "/api/auth/register", NULL,
                    "{\"email\":\"x@y.z\",\"password\":\"short\",\"name\":\"N\"}") == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "password"));
    assert (s_call (client, "POST", "/api/auth/register", NULL,
                    "{\"email\":\"x@y.z\",\"password\":\"long enough\",\"name\":42}") == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "name"));
    assert (s_call (client, "POST", "/api/auth/register", NULL,
                    "{\"email\":\"x@y.z\",\"password\":\"long\\u0000enough\",\"name\":\"N\"}") == 400);
    assert (s_call (client, "POST", "/api/auth/register", NULL, "[1]") == 400);

    //  Wrong password and unknown email: same 401, same message.
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"wrong horse\"}", email);
    assert (s_call (client, "POST", "/api/auth/login", NULL, body) == 401);
    assert (streq (s_error_code (client), "invalid_credentials"));
    char *message = strdup (json_string_value (json_object_get (client->body, "message")));
    snprintf (body, sizeof body, "{\"email\":\"nobody.%s@example.com\",\"password\":\"correct horse\"}",
              suffix);
    assert (s_call (client, "POST", "/api/auth/login", NULL, body) == 401);
    assert (streq (s_error_code (client), "invalid_credentials"));
    assert (streq (json_string_value (json_object_get (client->body, "message")), message));
    free (message);
    assert (s_call (client, "POST", "/api/auth/login", NULL, "{\"email\":1,\"password\":\"x\"}") == 400);

    //  Login: a new session, as bearer token and as cookie.
    snprintf (body, sizeof body, "{\"email\":\"%s\",\"password\":\"correct horse\"}", lower);
    assert (s_call (client, "POST", "/api/auth/login", NULL, body) == 200);
    const char *login_token = json_string_value (s_data (client, "token"));
    assert (login_token && s_token_valid (login_token) && !streq (login_token, *token_a));
    char *login = strdup (login_token);
    char cookie_line [128];
    snprintf (cookie_line, sizeof cookie_line, "Set-Cookie: pw_session=%s; HttpOnly; SameSite=Strict;"
              " Path=/; Max-Age=2592000", login);
    assert (strcasestr (client->head, cookie_line));

    assert (s_call (client, "GET", "/api/auth/me", NULL, NULL) == 401);
    assert (streq (s_error_code (client), "unauthorized"));
    assert (s_call (client, "GET", "/api/auth/me", "Authorization: Bearer nonsense\r\n", NULL) == 401);
    char unknown [S_TOKEN_CHARS + 1], unknown_hash [S_HASH_TEXT];
    s_token_new (unknown, unknown_hash);
    assert (s_call (client, "GET", "/api/auth/me", s_bearer (unknown, auth), NULL) == 401);
    assert (s_call (client, "GET", "/api/auth/me", s_bearer (login, auth), NULL) == 200);
    assert (streq (json_string_value (json_object_get (s_data (client, "user"), "email")), lower));

    //  Cookie sessions: reads pass, changes need X-Requested-With or our Origin.
    char cookie [128];
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\n", login);
    assert (s_call (client, "GET", "/api/auth/me", cookie, NULL) == 200);
    assert (s_call (client, "POST", "/api/devices", cookie, "{\"name\":\"csrf\"}") == 403);
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\nOrigin: http://evil.example\r\n", login);
    assert (s_call (client, "POST", "/api/auth/logout", cookie, NULL) == 403);
    snprintf (cookie, sizeof cookie, "Cookie: pw_session=%s\r\nX-Requested-With: fetch\r\n", login);
    assert (s_call (client, "POST", "/api/auth/logout", cookie, NULL) == 200);
    assert (strcasestr (client->head, "Set-Cookie: pw_session=;"));
    assert (s_call (client, "GET", "/api/auth/me", s_bearer (login, auth), NULL) == 401);
    free (login);

    snprintf (email, sizeof email, "bob.%s@example.com", suffix);
    *token_b = s_test_register (client, email, "Bob");
}

//  Device token issue, rotation and revocation, checked in the database and
//  in the cache the sensor path reads.
static void
s_test_device_tokens (s_client_t *client, gateway_t *gateway, PGconn *pg, const char *auth,
                      const char *device)
{
    char path [96], hex [65];
    snprintf (path, sizeof path, "/api/devices/%s/token", device);
    assert (s_call (client, "POST", path, auth, NULL) == 201);
    char *first = strdup (json_string_value (s_data (client, "token")));
    assert (strlen (first) >= 43 && strlen (first) <= 64);
    assert (json_is_true (json_object_get (s_data (client, "device"), "hasToken")));
    assert (json_is_string (json_object_get (s_data (client, "device"), "tokenCreatedAt")));
    char *stored = s_sql_value (pg, "SELECT encode (token_hash, 'hex') FROM devices WHERE id = $1::bigint",
                                device);
    s_sha256_hex (first, hex);
    assert (stored && streq (stored, hex));
    free (stored);
    assert (s_cache_knows (gateway->cache, first));

    //  Rotation: the first token moves to previous with a 5-minute grace.
    assert (s_call (client, "POST", path, auth, NULL) == 201);
    char *second = strdup (json_string_value (s_data (client, "token")));
    assert (!streq (first, second));
    stored = s_sql_value (pg, "SELECT encode (previous_token_hash, 'hex') FROM devices"
                              " WHERE id = $1::bigint AND previous_token_expires_at"
                              " BETWEEN now () + interval '4 minutes' AND now () + interval '6 minutes'",
                          device);
    assert (stored && streq (stored, hex));
    free (stored);
    stored = s_sql_value (pg, "SELECT encode (token_hash, 'hex') FROM devices WHERE id = $1::bigint",
                          device);
    s_sha256_hex (second, hex);
    assert (stored && streq (stored, hex));
    free (stored);
    assert (s_cache_knows (gateway->cache, first));
    assert (s_cache_knows (gateway->cache, second));

    //  Revocation: both stop at once.
    assert (s_call (client, "DELETE", path, auth, NULL) == 200);
    assert (json_is_false (json_object_get (s_data (client, "device"), "hasToken")));
    stored = s_sql_value (pg, "SELECT 1 FROM devices WHERE id = $1::bigint AND token_hash IS NULL"
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
s_test_resources (s_client_t *client, gateway_t *gateway, PGconn *pg, const char *token_a,
                  const char *token_b)
{
    char auth_a [128], auth_b [128], path [128], body [512];
    s_bearer (token_a, auth_a);
    s_bearer (token_b, auth_b);

    assert (s_call (client, "GET", "/api/devices", NULL, NULL) == 401);
    assert (s_call (client, "GET", "/api/devices", auth_a, NULL) == 200);
    assert (json_array_size (s_data (client, "devices")) == 0);
    assert (s_call (client, "POST", "/api/devices", auth_a, "{\"name\":\"\"}") == 400);
    assert (s_call (client, "POST", "/api/devices", auth_a, "{\"name\":[\"x\"]}") == 400);
    assert (s_call (client, "POST", "/api/devices", auth_a, "{\"name\":\"Kitchen board\"}") == 201);
    json_t *device = s_data (client, "device");
    int64_t device_id = json_integer_value (json_object_get (device, "id"));
    assert (device_id > 0);
    assert (json_is_false (json_object_get (device, "hasToken")));
    assert (json_is_null (json_object_get (device, "tokenCreatedAt")));
    const char *created = json_string_value (json_object_get (device, "createdAt"));
    assert (created && strlen (created) == 24 && created [23] == 'Z');
    char device_text [24];
    snprintf (device_text, sizeof device_text, "%" PRId64, device_id);

    assert (s_call (client, "GET", "/api/devices", auth_a, NULL) == 200);
    assert (json_array_size (s_data (client, "devices")) == 1);
    snprintf (path, sizeof path, "/api/devices/%s", device_text);
    assert (s_call (client, "GET", path, auth_a, NULL) == 200);
    assert (streq (json_string_value (json_object_get (s_data (client, "device"), "name")),
                   "Kitchen board"));
    //  Another user's device does not exist for them; nor does garbage.
    assert (s_call (client, "GET", path, auth_b, NULL) == 404);
    assert (streq (s_error_code (client), "not_found"));
    assert (s_call (client, "GET", "/api/devices", auth_b, NULL) == 200);
    assert (json_array_size (s_data (client, "devices")) == 0);
    snprintf (path, sizeof path, "/api/devices/%s/token", device_text);
    assert (s_call (client, "POST", path, auth_b, NULL) == 404);
    assert (s_call (client, "DELETE", path, auth_b, NULL) == 404);
    assert (s_call (client, "GET", "/api/devices/12x", auth_a, NULL) == 404);
    assert (s_call (client, "GET", "/api/devices/1234567890123456789", auth_a, NULL) == 404);
    assert (s_call (client, "GET", "/api/devices/999999999999", auth_a, NULL) == 404);

    s_test_device_tokens (client, gateway, pg, auth_a, device_text);

    //  Ports.
    assert (s_call (client, "GET", "/api/ports", auth_a, NULL) == 200);
    assert (json_array_size (s_data (client, "ports")) == 0);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_b, body) == 404);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":\"%s\"}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "deviceId"));
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"offWatts\":\"1\"}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 400);
    assert (strstr (json_string_value (json_object_get (client->body, "message")), "offWatts"));
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"offWatts\":20}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 400);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"expectedOff\":\"window\"}",
              device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 400);
    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s,\"expectedOff\":\"window\","
              "\"expectedOffFrom\":\"23:00\",\"expectedOffTo\":\"25:00\"}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 400);

    snprintf (body, sizeof body, "{\"name\":\"TV\",\"deviceId\":%s}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 201);
    json_t *port = s_data (client, "port");
    char *port_id = strdup (json_string_value (json_object_get (port, "id")));
    assert (s_is_uuid (port_id));
    assert (json_integer_value (json_object_get (port, "deviceId")) == device_id);
    assert (streq (json_string_value (json_object_get (port, "status")), "offline"));
    json_t *settings = json_object_get (port, "settings");
    assert (json_number_value (json_object_get (settings, "offWatts")) == 0.5);
    assert (json_number_value (json_object_get (settings, "standbyWatts")) == 15);
    assert (json_integer_value (json_object_get (settings, "minPhantomSeconds")) == 60);
    assert (streq (json_string_value (json_object_get (settings, "expectedOff")), "never"));
    gateway_port_t cached;
    assert (gateway_cache_port (gateway->cache, port_id, &cached));
    assert (cached.device == device_id);

    snprintf (body, sizeof body, "{\"name\":\"Lamp\",\"deviceId\":%s,\"offWatts\":1,"
              "\"standbyWatts\":7.5,\"minPhantomSeconds\":120,\"expectedOff\":\"window\","
              "\"expectedOffFrom\":\"23:00\",\"expectedOffTo\":\"06:30\"}", device_text);
    assert (s_call (client, "POST", "/api/ports", auth_a, body) == 201);
    settings = json_object_get (s_data (client, "port"), "settings");
    assert (json_number_value (json_object_get (settings, "standbyWatts")) == 7.5);
    assert (streq (json_string_value (json_object_get (settings, "expectedOffFrom")), "23:00"));
    assert (streq (json_string_value (json_object_get (settings, "expectedOffTo")), "06:30"));

    assert (s_call (client, "GET", "/api/ports", auth_a, NULL) == 200);
    assert (json_array_size (s_data (client, "ports")) == 2);
    assert (s_call (client, "GET", "/api/ports", auth_b, NULL) == 200);
    assert (json_array_size (s_data (client, "ports")) == 0);
    snprintf (path, sizeof path, "/api/ports/%s", port_id);
    assert (s_call (client, "GET", path, auth_a, NULL) == 200);
    assert (streq (json_string_value (json_object_get (s_data (client, "port"), "name")), "TV"));
    assert (s_call (client, "GET", path, auth_b, NULL) == 404);
    assert (s_call (client, "GET", "/api/ports/42", auth_a, NULL) == 404);
    assert (s_call (client, "GET", "/api/ports/00000000-0000-0000-0000-000000000000", auth_a, NULL)
            == 404);

    //  Notifications: newest first, paged by id, unread counted.
    char *user_a = s_sql_value (pg, "SELECT user_id::text FROM devices WHERE id = $1::bigint",
                                device_text);
    assert (user_a);
    const char *values [] = {user_a, port_id};
    PGresult *result = PQexecParams (pg,
        "INSERT INTO notifications (user_id, port_id, kind, dedupe_key, title, message, data, read_at)"
        " SELECT $1::bigint, $2::uuid, 'phantom.start', 'test-' || n, 'Phantom ' || n, 'Draw', "
        " '{\"watts\": 3.5}', CASE WHEN n = 1 THEN now () END FROM generate_series (1, 3) n",
        2, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_COMMAND_OK);
    PQclear (result);
    free (user_a);
    assert (s_call (client, "GET", "/api/notifications?limit=2", auth_a, NULL) == 200);
    json_t *list = s_data (client, "notifications");
    assert (json_array_size (list) == 2);
    assert (json_integer_value (s_data (client, "unread")) == 2);
    json_t *newest = json_array_get (list, 0);
    assert (streq (json_string_value (json_object_get (newest, "title")), "Phantom 3"));
    assert (streq (json_string_value (json_object_get (newest, "portId")), port_id));
    assert (json_is_false (json_object_get (newest, "read")));
    assert (json_number_value (json_object_get (json_object_get (newest, "data"), "watts")) == 3.5);
    int64_t oldest_shown = json_integer_value (json_object_get (json_array_get (list, 1), "id"));
    snprintf (path, sizeof path, "/api/notifications?before=%" PRId64, oldest_shown);
    assert (s_call (client, "GET", path, auth_a, NULL) == 200);
    list = s_data (client, "notifications");
    assert (json_array_size (list) == 1);
    assert (json_is_true (json_object_get (json_array_get (list, 0), "read")));
    assert (s_call (client, "GET", "/api/notifications", auth_b, NULL) == 200);
    assert (json_array_size (s_data (client, "notifications")) == 0);
    assert (json_integer_value (s_data (client, "unread")) == 0);
    assert (s_call (client, "GET", "/api/notifications?limit=abc", auth_a, NULL) == 400);
    assert (s_call (client, "GET", "/api/notifications?limit=101", auth_a, NULL) == 400);
    assert (s_call (client, "GET", "/api/notifications?before=x1", auth_a, NULL) == 400);
    free (port_id);

    //  Unknown routes and methods.
    assert (s_call (client, "GET", "/api/nothing/here", auth_a, NULL) == 404);
    assert (streq (s_error_code (client), "not_found"));
    assert (s_call (client, "PUT", "/api/devices", auth_a, "{}") == 405);
    assert (s_call (client, "GET", "/api/auth/login", NULL, NULL) == 405);

    //  An expired session is no session.
    char hash [S_HASH_TEXT];
    s_token_hash_text (token_b, hash);
    const char *expire [] = {hash};
    result = PQexecParams (pg, "UPDATE sessions SET expires_at = now () - interval '1 second'"
                               " WHERE token_hash = $1::bytea", 1, NULL, expire, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_COMMAND_OK && streq (PQcmdTuples (result), "1"));
    PQclear (result);
    assert (s_call (client, "GET", "/api/auth/me", auth_b, NULL) == 401);
}

void
gateway_api_test (bool verbose)
{
    printf (" * gateway_api: ");
    pthread_once (&s_once, s_init_once);
    assert (s_ready);
    s_test_helpers ();

    //  With both password slots held, a hash waits its 5 s and gives up.
    assert (s_password_slot_take () == 0 && s_password_slot_take () == 0);
    char hash [crypto_pwhash_STRBYTES];
    int64_t started = zclock_mono ();
    assert (s_password_hash ("correct horse", hash) == -2);
    assert (zclock_mono () - started >= S_PASSWORD_WAIT_S * 1000 - 50);
    sem_post (&s_password_slots);
    sem_post (&s_password_slots);
    assert (s_password_hash ("correct horse", hash) == 0);
    assert (s_password_verify (hash, "correct horse") == 0);
    assert (s_password_verify (hash, "wrong horse") == -1);
    assert (s_password_verify (NULL, "correct horse") == -1);

    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    if (!conninfo || !*conninfo) {
        //  The helpers passed; the routes did not run, which ctest should show as a skip.
        printf ("skipped (PHANTOM_TEST_DATABASE unset; helpers OK)\n");
        exit (77);
    }
    PGconn *pg = PQconnectdb (conninfo);
    assert (PQstatus (pg) == CONNECTION_OK);

    gateway_t gateway;
    memset (&gateway, 0, sizeof gateway);
    gateway.verbose = verbose;
    gateway.db = gateway_db_new (conninfo, 4);
    gateway.cache = gateway_cache_new (conninfo);
    assert (gateway.db && gateway.cache);
    assert (gateway_cache_load (gateway.cache) == 0);

    mg_init_library (0);
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    //  An ephemeral port first; our fixed range if civetweb refuses it.
    for (int port = 0; !gateway.http && port <= TEST_PORT_LAST;
         port = port ? port + 1 : TEST_PORT_FIRST) {
        char listen [32];
        snprintf (listen, sizeof listen, "127.0.0.1:%d", port);
        const char *options [] = {"listening_ports", listen, "num_threads", "4",
                                  "request_timeout_ms", "10000", NULL};
        gateway.http = mg_start (&callbacks, NULL, options);
    }
    assert (gateway.http);
    struct mg_server_port ports [2];
    assert (mg_get_server_ports (gateway.http, 2, ports) >= 1);
    gateway_api_register (&gateway);

    s_client_t client = {ports [0].port, 0, NULL, NULL, verbose};
    char suffix [17];
    uint8_t random [8];
    randombytes_buf (random, sizeof random);
    sodium_bin2hex (suffix, sizeof suffix, random, sizeof random);

    char *token_a, *token_b;
    s_test_auth (&client, suffix, &token_a, &token_b);
    s_test_resources (&client, &gateway, pg, token_a, token_b);
    free (token_a);
    free (token_b);
    free (client.head);
    json_decref (client.body);

    mg_stop (gateway.http);
    gateway_cache_destroy (&gateway.cache);
    gateway_db_destroy (&gateway.db);
    PQfinish (pg);
    printf ("OK\n");
}
