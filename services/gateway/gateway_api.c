/*  =========================================================================
    gateway_api - the user API: helpers, sessions and routing, /api/auth,
    /api/devices (the other resources: gateway_api_*.c, see gateway_api.h)

    Every route but register and login needs a session (Authorization:
    Bearer, or the pw_session cookie) and every query is filtered by the
    session's user, so another user's row is simply not found: 404, never 403.

    Passwords are hashed and verified on a bounded pool of two slots: argon2id
    takes 64 MiB per call, and a login storm must not exhaust memory. A new
    password must pass cracklib's check against the system dictionary.
    Failed logins are limited per address and per account, registrations
    per address (gateway_http's buckets). Session and device tokens are
    256-bit random, shown once, and kept only as their SHA-256; a session
    ends at its fixed age or when unused for session_idle_seconds. After a
    change the sensor path depends on commits, the cache is refreshed at
    once so the very next reading sees it.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_live.h"

#include <ctype.h>
#include <stddef.h>
#include <crack.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <semaphore.h>
#include <sodium.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define S_DB_WAIT_MS 2000               //  longest wait for a pooled connection
#define S_TIMEOUT_RETRY_S 5             //  Retry-After of a statement that timed out
#define S_PASSWORD_SLOTS 2              //  concurrent argon2id calls (2 cores, 64 MiB each)
#define S_PASSWORD_WAIT_S 5             //  longest wait for a slot before 503
#define S_TOKEN_BYTES 32                //  256-bit session and device tokens
#define S_SESSION_COOKIE "pw_session"
#define S_SESSION_SECONDS (30 * 24 * 3600)  //  fixed age; the SQL says '30 days' too
#define S_SESSION_TOUCH "1 minute"           //  last_seen_at moves at most this often
#define S_USER_AGENT_MAX 256                 //  bytes of User-Agent kept with a session
#define S_PASSWORD_MIN 8
#define S_PASSWORD_MAX 128

#define S_DEVICE_COLUMNS                                                        \
    "id, name, token_hash IS NOT NULL, " GATEWAY_API_MS ("token_created_at") ", "    \
    GATEWAY_API_MS ("token_last_used_at") ", " GATEWAY_API_MS ("created_at") ", "  \
    GATEWAY_API_MS ("token_expires_at")


//  Password pool and the dummy hash, set up once per process.
static pthread_once_t s_once = PTHREAD_ONCE_INIT;
static sem_t s_password_slots;
static char s_dummy_hash [crypto_pwhash_STRBYTES];
static bool s_ready;
//  cracklib keeps state of the dictionary it reads in statics: one check
//  at a time. A check takes about 10 ms; registrations are rare and limited.
static pthread_mutex_t s_crack_lock = PTHREAD_MUTEX_INITIALIZER;
static bool s_crack_ready;              //  the system dictionary is there


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
    //  Without its dictionary cracklib refuses every password ("error
    //  loading dictionary"); say so once at start, clearly.
    char dictionary [PATH_MAX];
    snprintf (dictionary, sizeof dictionary, "%s.pwd", GetDefaultCracklibDict ());
    s_crack_ready = access (dictionary, R_OK) == 0;
    if (!s_crack_ready)
        zsys_error ("gateway api - no password dictionary at %s (Debian cracklib-runtime), "
                    "registrations will fail", dictionary);
}

//  cracklib calls a password "too simplistic/systematic" when more than
//  3 + 0.09 x its length of its neighbouring characters are one step apart
//  (ab, 32), a bound long random passwords cross by chance: 11 % of 32
//  random hex digits, 51 % of 32 random digits, about 1 % of 32 random
//  letters and digits (cracklib-check, 2,000 each). From S_PASSWORD_LONG
//  characters on it is believed only when a third of the pairs are such
//  steps, which no random password of that length reaches in practice and
//  every run-made one does. (cracklib gives that verdict before its
//  dictionary look-up; a password this long made of steps and a word would
//  still be refused here.)
#define S_PASSWORD_LONG 20

static bool
s_systematic (const char *password)
{
    size_t pairs = 0, steps = 0;
    for (const char *c = password; c [0] && c [1]; c++, pairs++) {
        int step = tolower ((unsigned char) c [1]) - tolower ((unsigned char) c [0]);
        if (step == 1 || step == -1)
            steps++;
    }
    return 3 * steps >= pairs;
}

//  Stands for "no dictionary to check against" among s_password_weak's answers.
static const char s_crack_unavailable [] = "";

//  NULL when password may be chosen by the user of email and name, else
//  why not, as a sentence for the user (s_crack_unavailable: cannot tell).
//  Long enough is the caller's check.
static const char *
s_password_weak (const char *password, const char *email, const char *name)
{
    if (!s_crack_ready)
        return s_crack_unavailable;
    //  The local part of the email as the "user name", the name as the
    //  GECOS: cracklib refuses passwords made from either.
    char user [GATEWAY_API_EMAIL_MAX + 1];
    snprintf (user, sizeof user, "%.*s", (int) strcspn (email, "@"), email);
    pthread_mutex_lock (&s_crack_lock);
    const char *reason = FascistCheckUser (password, GetDefaultCracklibDict (), user, name);
    pthread_mutex_unlock (&s_crack_lock);
    if (!reason)
        return NULL;
    if (strstr (reason, "error loading"))
        return s_crack_unavailable;
    if (strstr (reason, "systematic") && strlen (password) >= S_PASSWORD_LONG
    &&  !s_systematic (password))
        return NULL;
    //  cracklib's reasons are static strings such as "it is based on a
    //  dictionary word"; one sentence per kind is clearer to a person.
    if (strstr (reason, "dictionary word"))
        return "This password is too common: it is a dictionary word or close to one. "
               "Choose a longer one, for example a few unrelated words.";
    if (strstr (reason, "simplistic") || strstr (reason, "systematic")
    ||  strstr (reason, "DIFFERENT") || strstr (reason, "whitespace"))
        return "This password is too easy to guess: it follows a simple pattern. "
               "Choose a longer one, for example a few unrelated words.";
    if (strstr (reason, "username") || strstr (reason, "password entry"))
        return "This password is too easy to guess: it is made from your name or email. "
               "Choose another.";
    if (strstr (reason, "short"))
        return "This password is too easy to guess: it is too short. Choose a longer one.";
    return "This password is too easy to guess. Choose a longer one, "
           "for example a few unrelated words.";
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
void
gateway_api_token_hash_text (const char *token, char out [GATEWAY_API_HASH_TEXT])
{
    uint8_t digest [crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *) token, strlen (token));
    out [0] = '\\';
    out [1] = 'x';
    sodium_bin2hex (out + 2, GATEWAY_API_HASH_TEXT - 2, digest, sizeof digest);
}

//  A fresh 256-bit token as base64url text, and its hash parameter.
void
gateway_api_token_new (char token [GATEWAY_API_TOKEN_CHARS + 1], char hash [GATEWAY_API_HASH_TEXT])
{
    uint8_t random [S_TOKEN_BYTES];
    randombytes_buf (random, sizeof random);
    sodium_bin2base64 (token, GATEWAY_API_TOKEN_CHARS + 1, random, sizeof random,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (random, sizeof random);
    gateway_api_token_hash_text (token, hash);
}

//  true when text has the shape of a token we issue; anything else is
//  rejected before it costs a query.
bool
gateway_api_token_valid (const char *text)
{
    size_t length = strlen (text);
    if (length != GATEWAY_API_TOKEN_CHARS)
        return false;
    for (size_t index = 0; index < length; index++)
        if (!isalnum ((unsigned char) text [index]) && text [index] != '-' && text [index] != '_')
            return false;
    return true;
}

bool
gateway_api_is_id (const char *text)
{
    size_t length = strlen (text);
    if (length == 0 || length > GATEWAY_API_ID_DIGITS_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (text [index] < '0' || text [index] > '9')
            return false;
    return true;
}

bool
gateway_api_is_uuid (const char *text)
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

//  Lower-cases a plausible email into out: an '@' with something on both
//  sides, no spaces or control characters, at most 254 bytes. 0 or -1.
int
gateway_api_email_normalize (const char *email, char out [GATEWAY_API_EMAIL_MAX + 1])
{
    size_t length = strlen (email);
    const char *at = strrchr (email, '@');
    if (length > GATEWAY_API_EMAIL_MAX || !at || at == email || at [1] == 0)
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

int
gateway_api_not_found (gateway_api_request_t *request)
{
    return gateway_http_send_error (request->conn, 404, "not_found", "Not found", 0);
}

int
gateway_api_invalid (gateway_api_request_t *request, const char *message)
{
    return gateway_http_send_error (request->conn, 400, "validation_error", message, 0);
}

int
gateway_api_invalid_field (gateway_api_request_t *request, const char *field, const char *message)
{
    return gateway_http_send_field_error (request->conn, 400, "validation_error", field, message);
}

int
gateway_api_internal (gateway_api_request_t *request)
{
    return gateway_http_send_error (request->conn, 500, "internal_error", "Internal error", 0);
}

//  The success envelope with extra header lines (Set-Cookie); steals data.
static int
s_send_with_headers (gateway_api_request_t *request, int status, const char *message, json_t *data,
                     const char *headers)
{
    json_t *envelope = json_pack ("{s:b, s:s, s:o}", "success", 1, "message", message, "data", data);
    char *text = envelope ? json_dumps (envelope, JSON_COMPACT) : NULL;
    json_decref (envelope);
    if (!text)
        return gateway_api_internal (request);
    gateway_http_send (request->conn, status, "application/json", headers, text, strlen (text));
    free (text);
    return status;
}

json_t *
gateway_api_column (PGresult *result, int row, int column, gateway_api_type_t type)
{
    const char *value = PQgetvalue (result, row, column);
    if (type == GATEWAY_API_BOOL)
        return json_boolean (streq (value, "t"));
    if (PQgetisnull (result, row, column))
        return json_null ();
    if (type == GATEWAY_API_JSON) {
        json_t *parsed = json_loads (value, JSON_DECODE_ANY, NULL);
        return parsed ? parsed : json_object ();
    }
    if (type == GATEWAY_API_INTEGER)
        return json_integer (strtoll (value, NULL, 10));
    if (type == GATEWAY_API_REAL)
        return json_real (strtod (value, NULL));
    if (type == GATEWAY_API_STATUS)
        return json_string (proto_status_name (atoi (value)));
    if (type == GATEWAY_API_TIME) {
        char text [32];
        gateway_http_iso8601 (strtoll (value, NULL, 10), text);
        return json_string (text);
    }
    return json_string (value);
}

json_t *
gateway_api_object_from_row (PGresult *result, int row, const gateway_api_member_t *members)
{
    json_t *object = json_object ();
    for (const gateway_api_member_t *member = members; member->name; member++) {
        json_t *value = gateway_api_column (result, row, member->column, member->type);
        const char *dot = strchr (member->name, '.');
        if (dot) {
            char outer [32];
            snprintf (outer, sizeof outer, "%.*s", (int) (dot - member->name), member->name);
            json_t *nested = json_object_get (object, outer);
            if (!nested)
                json_object_set_new (object, outer, nested = json_object ());
            json_object_set_new (nested, dot + 1, value);
        }
        else
            json_object_set_new (object, member->name, value);
    }
    return object;
}

//  Of GATEWAY_API_USER_COLUMNS.
static const gateway_api_member_t s_user_members [] = {
    {"id", 0, GATEWAY_API_INTEGER}, {"email", 1, GATEWAY_API_TEXT}, {"name", 2, GATEWAY_API_TEXT},
    {"settings.currency", 3, GATEWAY_API_TEXT}, {"settings.timeZone", 4, GATEWAY_API_TEXT},
    {"settings.digestEnabled", 5, GATEWAY_API_BOOL}, {"settings.locale", 6, GATEWAY_API_TEXT},
    {0}
};

static json_t *
s_user_from_row (PGresult *result, int row)
{
    return gateway_api_object_from_row (result, row, s_user_members);
}

json_t *
gateway_api_settings_from_row (PGresult *result, int row)
{
    json_t *user = s_user_from_row (result, row);
    json_t *settings = json_incref (json_object_get (user, "settings"));
    json_decref (user);
    return settings;
}

//  Of S_DEVICE_COLUMNS.
static const gateway_api_member_t s_device_members [] = {
    {"id", 0, GATEWAY_API_INTEGER}, {"name", 1, GATEWAY_API_TEXT},
    {"hasToken", 2, GATEWAY_API_BOOL}, {"tokenCreatedAt", 3, GATEWAY_API_TIME},
    {"tokenLastUsedAt", 4, GATEWAY_API_TIME}, {"createdAt", 5, GATEWAY_API_TIME},
    {"tokenExpiresAt", 6, GATEWAY_API_TIME}, {0}
};

int
gateway_api_send_object (gateway_api_request_t *request, int status, const char *message,
                         const char *key, json_t *object)
{
    return gateway_http_send_data (request->conn, status, message, json_pack ("{s:o}", key, object));
}

int
gateway_api_send_row (gateway_api_request_t *request, int status, const char *message,
                      PGresult *result, const char *key, const gateway_api_member_t *members)
{
    json_t *object = gateway_api_object_from_row (result, 0, members);
    PQclear (result);
    return gateway_api_send_object (request, status, message, key, object);
}

int
gateway_api_send_list (gateway_api_request_t *request, const char *sql, const char *key,
                       const gateway_api_member_t *members)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status, sql, 1, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (list, gateway_api_object_from_row (result, row, members));
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, key, list);
}

int
gateway_api_send_user (gateway_api_request_t *request, const char *key,
                       json_t *(*from_row) (PGresult *result, int row))
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "SELECT " GATEWAY_API_USER_COLUMNS " FROM users WHERE id = $1::bigint", 1, values);
    if (!result)
        return status;
    if (PQntuples (result) == 1) {
        json_t *object = from_row (result, 0);
        PQclear (result);
        return gateway_api_send_object (request, 200, NULL, key, object);
    }
    PQclear (result);
    return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
}


//  ==========================================================================
//  SQL: one statement per pooled connection, parameters only

//  true when the connection itself is gone, not the statement: libpq saw
//  it close, or PostgreSQL said so (class 08, or 57P01..57P03: terminated
//  by an administrator, crash or shutdown, cannot connect now).
static bool
s_connection_lost (PGconn *pg, PGresult *result)
{
    if (PQstatus (pg) == CONNECTION_BAD)
        return true;
    const char *code = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    //  No SQLSTATE at all: libpq itself failed (a socket the server closed
    //  is only noticed on the next read), which is the connection again.
    return !code || strncmp (code, "08", 2) == 0 || streq (code, "57P01")
           || streq (code, "57P02") || streq (code, "57P03");
}

//  The request's URI for logs (request->path is split into segments).
static const char *
s_uri (gateway_api_request_t *request)
{
    const struct mg_request_info *info = mg_get_request_info (request->conn);
    return info && info->local_uri ? info->local_uri : "";
}

//  Runs sql; a connection PostgreSQL dropped is reset and the statement run
//  once more on it. Every idle connection of the pool dies with a restart,
//  so another one from the pool would likely be as dead; the reset one is
//  new. The retry is safe: each call is one statement, and a statement
//  whose connection went away did not commit (outside the instant between
//  its commit and its answer). *lost is set when it still failed for that.
static PGresult *
s_execute (gateway_api_request_t *request, PGconn *pg, const char *sql, int count,
           const char *const *values, bool *lost)
{
    PGresult *result = PQexecParams (pg, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType state = PQresultStatus (result);
    *lost = false;
    if (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK || !s_connection_lost (pg, result))
        return result;
    zsys_warning ("gateway api - %s %s: connection lost, reconnecting: %s", request->method,
                  s_uri (request), result ? PQresultErrorMessage (result) : PQerrorMessage (pg));
    PQclear (result);
    result = NULL;
    PQreset (pg);
    if (PQstatus (pg) == CONNECTION_OK) {
        //  As the pool sets up its connections: timestamps in UTC.
        PQclear (PQexec (pg, "SET TIME ZONE 'UTC'"));
        result = PQexecParams (pg, sql, count, NULL, values, NULL, NULL, 0);
        state = PQresultStatus (result);
        if (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK || !s_connection_lost (pg, result))
            return result;
    }
    *lost = true;
    return result;
}

//  Runs sql and returns its result when it succeeded. Otherwise it has
//  answered, sets *status and returns NULL: 429 when the user's own
//  requests held their share of the pool all the wait, 503 no connection
//  in time or the database unreachable, 504 past the statement timeout,
//  409 request->conflict_code on a unique violation, 400 on another
//  integrity or data error, 500 for anything else.
PGresult *
gateway_api_run (gateway_api_request_t *request, int *status, const char *sql, int count, const char *const *values)
{
    bool over_share;
    PGconn *pg =
        gateway_db_acquire_for (request->gateway->db, request->user, S_DB_WAIT_MS, &over_share);
    if (!pg) {
        if (over_share)
            *status = gateway_http_send_error (request->conn, 429, "too_many_requests",
                                               "Too many of your requests at once, retry shortly",
                                               1);
        else
            *status = gateway_http_send_error (request->conn, 503, "unavailable",
                                               "Database busy, retry shortly", 1);
        return NULL;
    }
    bool lost;
    PGresult *result = s_execute (request, pg, sql, count, values, &lost);
    ExecStatusType state = PQresultStatus (result);
    if (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK) {
        gateway_db_release (request->gateway->db, pg);
        return result;
    }
    const char *code = result ? PQresultErrorField (result, PG_DIAG_SQLSTATE) : NULL;
    if (lost) {
        zsys_warning ("gateway api - %s %s: database unavailable: %s", request->method,
                      s_uri (request), result ? PQresultErrorMessage (result) : PQerrorMessage (pg));
        *status = gateway_http_send_error (request->conn, 503, "database_unavailable",
                                           "Database unavailable, retry shortly", 1);
    }
    else
    if (code && streq (code, "57014")) {
        //  The statement timeout (gateway_db): cancelled, so the connection
        //  is idle again and goes back to the pool as it is.
        zsys_warning ("gateway api - %s %s: statement timeout", request->method, s_uri (request));
        *status = gateway_http_send_error (request->conn, 504, "query_timeout",
                                           "The database took too long to answer, retry later"
                                           " (a shorter window or a larger step is quicker)",
                                           S_TIMEOUT_RETRY_S);
    }
    else
    if (code && streq (code, "23505") && request->conflict_code)
        *status = gateway_http_send_error (request->conn, 409, request->conflict_code,
                                           request->conflict_message, 0);
    else
    if (code && (strncmp (code, "23", 2) == 0 || strncmp (code, "22", 2) == 0))
        *status = gateway_api_invalid (request, "Invalid value");
    else {
        zsys_error ("gateway api - %s %s: %s", request->method, s_uri (request),
                    result ? PQresultErrorMessage (result) : PQerrorMessage (pg));
        *status = gateway_api_internal (request);
    }
    //  The pool closes a connection that is still broken.
    gateway_db_release (request->gateway->db, pg);
    PQclear (result);
    return NULL;
}

PGresult *
gateway_api_run_found (gateway_api_request_t *request, int *status, const char *sql, int count,
                       const char *const *values)
{
    PGresult *result = gateway_api_run (request, status, sql, count, values);
    if (result && PQntuples (result) == 0) {
        PQclear (result);
        *status = gateway_api_not_found (request);
        return NULL;
    }
    return result;
}


//  ==========================================================================
//  Query strings and pages

int
gateway_api_query_var (gateway_api_request_t *request, const char *name, char *value, size_t size)
{
    if (!request->query)
        return 0;
    int length = mg_get_var (request->query, strlen (request->query), name, value, size);
    return length == -1 ? 0 : length < 0 ? -1 : 1;
}

//  A query time: epoch milliseconds, or ISO-8601 read as strictly as the
//  sensor contract reads a reading's timestamp. 0 with *ms set, or -1.
static int
s_parse_time (const char *text, int64_t *ms)
{
    size_t length = strlen (text);
    if (length > 0 && length <= 15 && strspn (text, "0123456789") == length) {
        *ms = strtoll (text, NULL, 10);
        return 0;
    }
    return gateway_sensor_parse_time (text, ms);
}

int
gateway_api_window (gateway_api_request_t *request, int64_t default_ms, int64_t *from, int64_t *to,
                    int64_t *step)
{
    char text [48];
    *to = gateway_http_now_ms ();
    int rc = gateway_api_query_var (request, "to", text, sizeof text);
    if (rc == -1 || (rc == 1 && s_parse_time (text, to) == -1))
        return gateway_api_invalid_field (request, "to", "to must be ISO-8601 or epoch milliseconds");
    *from = *to - default_ms;
    rc = gateway_api_query_var (request, "from", text, sizeof text);
    if (rc == -1 || (rc == 1 && s_parse_time (text, from) == -1))
        return gateway_api_invalid_field (request, "from",
                                          "from must be ISO-8601 or epoch milliseconds");
    if (*from >= *to || *to - *from > GATEWAY_API_SPAN_MAX_MS)
        return gateway_api_invalid_field (request, "from",
                                          "from must be before to, at most 400 days apart");
    if (!step)
        return 0;
    *step = 0;
    rc = gateway_api_query_var (request, "step", text, sizeof text);
    if (rc == -1 || (rc == 1 && (strspn (text, "0123456789") != strlen (text) || !*text
                                 || strlen (text) > 9 || atol (text) > GATEWAY_API_STEP_MAX)))
        return gateway_api_invalid_field (request, "step",
                                          "step must be whole seconds, 0 to 2678400");
    if (rc == 1)
        *step = atol (text);
    return 0;
}

//  ?limit=1..max (default_limit when absent) and ?before=<id> (before ""
//  when absent). 0, or the status answered.
static int
s_page (gateway_api_request_t *request, int default_limit, int max, int *limit,
        char before [GATEWAY_API_ID_DIGITS_MAX + 2])
{
    char text [8];
    *limit = default_limit;
    before [0] = 0;
    int rc = gateway_api_query_var (request, "limit", text, sizeof text);
    if (rc == 1 && gateway_api_is_id (text) && atoi (text) >= 1 && atoi (text) <= max)
        *limit = atoi (text);
    else
    if (rc != 0) {
        char message [80];
        snprintf (message, sizeof message, "limit must be an integer from 1 to %d", max);
        return gateway_api_invalid (request, message);
    }
    rc = gateway_api_query_var (request, "before", before, GATEWAY_API_ID_DIGITS_MAX + 2);
    if (rc == -1 || (rc == 1 && !gateway_api_is_id (before))) {
        before [0] = 0;
        return gateway_api_invalid (request, "before must be an id");
    }
    return 0;
}

int
gateway_api_send_page (gateway_api_request_t *request, const char *parent, int default_limit,
                       const char *sql, const char *key, const gateway_api_member_t *members,
                       const gateway_api_member_t *extra)
{
    int limit;
    char before [GATEWAY_API_ID_DIGITS_MAX + 2], limit_text [8];
    int status = s_page (request, default_limit, GATEWAY_API_PAGE_MAX, &limit, before);
    if (status)
        return status;
    snprintf (limit_text, sizeof limit_text, "%d", limit);
    const char *values [] = {parent, request->user_text, *before ? before : NULL, limit_text};
    PGresult *result = gateway_api_run_found (request, &status, sql, 4, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    json_t *list = json_array ();
    for (int row = 0; row < rows; row++)
        if (!PQgetisnull (result, row, 1))
            json_array_append_new (list, gateway_api_object_from_row (result, row, members));
    json_t *data = extra ? gateway_api_object_from_row (result, 0, extra) : json_object ();
    json_object_set_new (data, key, list);
    json_object_set_new (data, "nextBefore", json_array_size (list) == (size_t) limit
        ? gateway_api_column (result, rows - 1, 1, GATEWAY_API_INTEGER) : json_null ());
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}


//  ==========================================================================
//  Request bodies: every field type-checked, errors name the field

int
gateway_api_read_body (gateway_api_request_t *request, json_t **body)
{
    *body = gateway_http_read_json (request->conn, GATEWAY_BODY_MAX);
    if (!*body)
        return 400;                     //  already answered
    if (!json_is_object (*body)) {
        json_decref (*body);
        *body = NULL;
        return gateway_api_invalid (request, "Body must be a JSON object");
    }
    return 0;
}

//  Reads a string field of min..max characters. 0 (value NULL when absent,
//  null or not required), or the status answered.
int
gateway_api_field_string (gateway_api_request_t *request, json_t *body, const char *name, bool required,
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
    return gateway_api_invalid_field (request, name, message);
}

//  Reads a number field (integer or real) in min..max. 0 (*present false
//  when absent), or the status answered (null is not a number).
int
gateway_api_field_number (gateway_api_request_t *request, json_t *body, const char *name,
                double min, double max, double *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if (!field)
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
    return gateway_api_invalid_field (request, name, message);
}

//  Reads an integer field in min..max. 0 (*present false when absent and
//  not required), or the status answered (null is not an integer).
int
gateway_api_field_integer (gateway_api_request_t *request, json_t *body, const char *name, bool required,
                 int64_t min, int64_t max, int64_t *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if (!field && !required)
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
    return gateway_api_invalid_field (request, name, message);
}

//  Reads a true/false field; no other value means a boolean. 0 (*present
//  false when absent or null and not required), or the status answered.
int
gateway_api_field_bool (gateway_api_request_t *request, json_t *body, const char *name,
                        bool required, bool *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if ((!field || json_is_null (field)) && !required)
        return 0;
    if (json_is_boolean (field)) {
        *value = json_is_true (field);
        *present = true;
        return 0;
    }
    char message [160];
    snprintf (message, sizeof message, "%s must be true or false", name);
    return gateway_api_invalid_field (request, name, message);
}


int
gateway_api_field_windows (gateway_api_request_t *request, json_t *body, const char *name,
                           size_t max, json_t **windows, bool *present)
{
    assert (max <= GATEWAY_API_WINDOWS_MAX);
    json_t *field = json_object_get (body, name);
    *windows = NULL;
    *present = field != NULL;
    if (!field || json_is_null (field))
        return 0;
    uint32_t packed [GATEWAY_API_WINDOWS_MAX];
    const char *message;
    if (gateway_cache_schedule_pack (field, max, packed, &message))
        return gateway_api_invalid_field (request, name, message);
    *windows = gateway_cache_schedule_json (packed, max);
    return 0;
}

//  ==========================================================================
//  Sessions

//  Finds the session token: Authorization: Bearer first, else the cookie.
//  0 with token filled, or -1 when there is none of the right shape.
static int
s_session_token (gateway_api_request_t *request, char token [GATEWAY_API_TOKEN_CHARS + 1])
{
    const char *header = mg_get_header (request->conn, "Authorization");
    if (header) {
        if (strncasecmp (header, "Bearer ", 7) != 0)
            return -1;
        const char *value = header + 7;
        while (*value == ' ')
            value++;
        if (!gateway_api_token_valid (value))
            return -1;
        strcpy (token, value);
        request->cookie_session = false;
        return 0;
    }
    const char *cookies = mg_get_header (request->conn, "Cookie");
    char value [128];
    if (!cookies || mg_get_cookie (cookies, S_SESSION_COOKIE, value, sizeof value) < 0
    || !gateway_api_token_valid (value))
        return -1;
    strcpy (token, value);
    request->cookie_session = true;
    return 0;
}

//  A browser sends cookies with cross-site requests too; a cross-site form
//  cannot set X-Requested-With, and a cross-site fetch carries its Origin.
static bool
s_same_origin (gateway_api_request_t *request)
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

//  The session's idle limit, in seconds, as an SQL parameter.
static void
s_idle_text (gateway_api_request_t *request, char text [16])
{
    int idle = request->gateway->session_idle_seconds;
    snprintf (text, 16, "%d", idle > 0 ? idle : GATEWAY_SESSION_IDLE_SECONDS);
}

//  Signs the request in from its session. 0, or the status answered (401,
//  403 for a cookie-authenticated change from another origin). A session
//  past its fixed age or idle too long is no session. Its last_seen_at
//  moves at most once a minute, in the same statement, so most signed-in
//  requests write nothing.
static int
s_require_user (gateway_api_request_t *request)
{
    char token [GATEWAY_API_TOKEN_CHARS + 1];
    if (s_session_token (request, token) == -1)
        return gateway_http_send_error (request->conn, 401, "unauthorized",
                                        "Sign-in required", 0);
    gateway_api_token_hash_text (token, request->session_hash);
    char idle [16];
    s_idle_text (request, idle);
    const char *values [] = {request->session_hash, idle};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "WITH found AS (SELECT user_id, id, last_seen_at FROM sessions"
        "               WHERE token_hash = $1::bytea AND expires_at > now ()"
        "                 AND last_seen_at > now () - $2::int * interval '1 second'),"
        " touched AS (UPDATE sessions SET last_seen_at = now () FROM found"
        "             WHERE sessions.token_hash = $1::bytea"
        "               AND found.last_seen_at < now () - interval '" S_SESSION_TOUCH "')"
        " SELECT user_id, id FROM found",
        2, values);
    if (!result)
        return status;
    bool found = PQntuples (result) == 1;
    if (found) {
        snprintf (request->user_text, sizeof request->user_text, "%s", PQgetvalue (result, 0, 0));
        request->user = strtoll (request->user_text, NULL, 10);
        snprintf (request->session_text, sizeof request->session_text, "%s",
                  PQgetvalue (result, 0, 1));
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

//  The session cookie's Set-Cookie line: value for max_age seconds (0
//  and "" clear it). Secure whenever the client came over https, directly
//  or through a trusted proxy that says so: a browser then never sends it
//  over plain http.
static void
s_session_cookie (gateway_api_request_t *request, const char *value, int max_age, char *line,
                  size_t size)
{
    snprintf (line, size,
              "Set-Cookie: " S_SESSION_COOKIE "=%s; HttpOnly;%s SameSite=Strict; Path=/; Max-Age=%d\r\n",
              value, gateway_http_client_https (request->conn) ? " Secure;" : "", max_age);
}

//  {user, token} and the session cookie.
static int
s_send_session (gateway_api_request_t *request, int status, const char *message, PGresult *user,
                const char *token)
{
    char cookie [200];
    s_session_cookie (request, token, S_SESSION_SECONDS, cookie, sizeof cookie);
    json_t *data = json_pack ("{s:o, s:s}", "user", s_user_from_row (user, 0), "token", token);
    return s_send_with_headers (request, status, message, data, cookie);
}

//  The client address and user agent a new session keeps, as SQL
//  parameters: the user agent cut to S_USER_AGENT_MAX bytes, every byte
//  outside printable ASCII as '?' (user agents are ASCII; anything else
//  could be invalid UTF-8, which PostgreSQL refuses). NULL when none.
static void
s_session_origin (gateway_api_request_t *request, char address [64],
                  char agent [S_USER_AGENT_MAX + 1], const char **agent_value)
{
    snprintf (address, 64, "%s", gateway_http_client_ip (request->conn));
    const char *header = mg_get_header (request->conn, "User-Agent");
    *agent_value = NULL;
    if (!header || !*header)
        return;
    size_t length = 0;
    for (; header [length] && length < S_USER_AGENT_MAX; length++) {
        unsigned char c = (unsigned char) header [length];
        agent [length] = c >= 0x20 && c < 0x7f ? (char) c : '?';
    }
    agent [length] = 0;
    *agent_value = agent;
}


//  ==========================================================================
//  /api/auth

static int
s_auth_register (gateway_api_request_t *request)
{
    //  Accounts cost a password hash (64 MiB, both slots) and a row each:
    //  an address gets a few, then waits. Counted when an account is made
    //  and when the email was taken (an answer that tells who has one).
    const char *ip = gateway_http_client_ip (request->conn);
    int retry_after;
    if (gateway_http_rate_limited (GATEWAY_RATE_REGISTER, ip, &retry_after))
        return gateway_http_send_rate_limited (request->conn, retry_after);
    char address [64];
    snprintf (address, sizeof address, "%s", ip);
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password, *name;
    char normal [GATEWAY_API_EMAIL_MAX + 1];
    if ((status = gateway_api_field_string (request, body, "email", true, 3, GATEWAY_API_EMAIL_MAX, &email))
    ||  (status = gateway_api_field_string (request, body, "password", true, S_PASSWORD_MIN,
                                  S_PASSWORD_MAX, &password))
    ||  (status = gateway_api_field_string (request, body, "name", true, 1, GATEWAY_API_NAME_MAX, &name)))
        goto done;
    if (gateway_api_email_normalize (email, normal) == -1) {
        status = gateway_api_invalid (request, "email must be a valid email address");
        goto done;
    }
    const char *weak = s_password_weak (password, normal, name);
    if (weak == s_crack_unavailable) {
        status = gateway_http_send_error (request->conn, 503, "unavailable",
                                          "Cannot check passwords now, retry later", 60);
        goto done;
    }
    if (weak) {
        status = gateway_api_invalid_field (request, "password", weak);
        goto done;
    }
    //  Fail fast on a taken email before spending a password slot; the
    //  unique index still decides a race.
    request->conflict_code = "email_taken";
    request->conflict_message = "Email already registered";
    const char *lookup [] = {normal};
    PGresult *result = gateway_api_run (request, &status, "SELECT 1 FROM users WHERE lower (email) = $1",
                              1, lookup);
    if (!result)
        goto done;
    bool taken = PQntuples (result) > 0;
    PQclear (result);
    if (taken) {
        gateway_http_rate_limit_hit (GATEWAY_RATE_REGISTER, address);
        status = gateway_http_send_error (request->conn, 409, "email_taken",
                                          "Email already registered", 0);
        goto done;
    }
    char hash [crypto_pwhash_STRBYTES];
    int rc = s_password_hash (password, hash);
    if (rc != 0) {
        status = rc == -2 ? gateway_http_send_error (request->conn, 503, "busy",
                                                     "Too many sign-ins, retry shortly", 5)
                          : gateway_api_internal (request);
        goto done;
    }
    gateway_http_rate_limit_hit (GATEWAY_RATE_REGISTER, address);
    char token [GATEWAY_API_TOKEN_CHARS + 1], token_hash [GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    char agent [S_USER_AGENT_MAX + 1];
    const char *agent_value;
    s_session_origin (request, address, agent, &agent_value);
    const char *values [] = {normal, name, hash, token_hash, address, agent_value};
    //  One statement, so there is never a user without the session we answer.
    result = gateway_api_run (request, &status,
        "WITH created AS (INSERT INTO users (email, name, password_hash)"
        "                 VALUES ($1, $2, $3) RETURNING " GATEWAY_API_USER_COLUMNS "),"
        " session AS (INSERT INTO sessions (token_hash, user_id, expires_at, client_address, user_agent)"
        "             SELECT $4::bytea, id, now () + interval '30 days', $5, $6 FROM created)"
        " SELECT " GATEWAY_API_USER_COLUMNS " FROM created", 6, values);
    if (!result)
        goto done;
    status = PQntuples (result) == 1
        ? s_send_session (request, 201, "User registered", result, token) : gateway_api_internal (request);
    PQclear (result);
done:
    json_decref (body);
    return status;
}

static int
s_auth_login (gateway_api_request_t *request)
{
    //  Password guessing: failures are counted per client address, and per
    //  account from any address (stuffing from many addresses); either
    //  bucket empty and the password is not even looked at.
    char address [64];
    snprintf (address, sizeof address, "%s", gateway_http_client_ip (request->conn));
    int retry_after;
    if (gateway_http_rate_limited (GATEWAY_RATE_LOGIN, address, &retry_after))
        return gateway_http_send_rate_limited (request->conn, retry_after);
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password;
    char normal [GATEWAY_API_EMAIL_MAX + 1] = "";
    if ((status = gateway_api_field_string (request, body, "email", true, 1, 1000, &email))
    ||  (status = gateway_api_field_string (request, body, "password", true, 1, 1000, &password)))
        goto done;
    //  An email we could never have stored is just unknown: same answer.
    bool plausible = gateway_api_email_normalize (email, normal) == 0;
    //  Unknown emails have buckets too, so a limit tells nothing about
    //  which accounts exist.
    const char *account = plausible ? normal : email;
    if (gateway_http_rate_limited (GATEWAY_RATE_ACCOUNT, account, &retry_after)) {
        status = gateway_http_send_rate_limited (request->conn, retry_after);
        goto done;
    }
    const char *lookup [] = {normal};
    PGresult *user = gateway_api_run (request, &status,
        "SELECT " GATEWAY_API_USER_COLUMNS ", password_hash FROM users WHERE lower (email) = $1",
        1, lookup);
    if (!user)
        goto done;
    bool known = plausible && PQntuples (user) == 1;
    int rc = s_password_verify (known ? PQgetvalue (user, 0, PQnfields (user) - 1) : NULL, password);
    if (rc != 0) {
        if (rc != -2) {
            gateway_http_rate_limit_hit (GATEWAY_RATE_LOGIN, address);
            gateway_http_rate_limit_hit (GATEWAY_RATE_ACCOUNT, account);
        }
        status = rc == -2 ? gateway_http_send_error (request->conn, 503, "busy",
                                                     "Too many sign-ins, retry shortly", 5)
                          : gateway_http_send_error (request->conn, 401, "invalid_credentials",
                                                     "Invalid email or password", 0);
        PQclear (user);
        goto done;
    }
    char token [GATEWAY_API_TOKEN_CHARS + 1], token_hash [GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    char agent [S_USER_AGENT_MAX + 1], idle [16];
    const char *agent_value;
    s_session_origin (request, address, agent, &agent_value);
    s_idle_text (request, idle);
    const char *values [] = {token_hash, PQgetvalue (user, 0, 0), address, agent_value, idle};
    //  Ended sessions of this user go with the new one: cheap, indexed.
    PGresult *result = gateway_api_run (request, &status,
        "WITH ended AS (DELETE FROM sessions WHERE user_id = $2::bigint"
        "               AND (expires_at < now () OR last_seen_at < now () - $5::int * interval '1 second'))"
        " INSERT INTO sessions (token_hash, user_id, expires_at, client_address, user_agent)"
        " VALUES ($1::bytea, $2::bigint, now () + interval '30 days', $3, $4)", 5, values);
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
s_auth_logout (gateway_api_request_t *request)
{
    const char *values [] = {request->session_hash};
    int status;
    PGresult *result = gateway_api_run (request, &status,
                              "DELETE FROM sessions WHERE token_hash = $1::bytea", 1, values);
    if (!result)
        return status;
    PQclear (result);
    char cookie [200];
    s_session_cookie (request, "", 0, cookie, sizeof cookie);
    return s_send_with_headers (request, 200, "Logged out", json_object (), cookie);
}

//  Of the sessions list below.
static const gateway_api_member_t s_session_members [] = {
    {"id", 0, GATEWAY_API_INTEGER}, {"createdAt", 1, GATEWAY_API_TIME},
    {"lastSeenAt", 2, GATEWAY_API_TIME}, {"expiresAt", 3, GATEWAY_API_TIME},
    {"clientAddress", 4, GATEWAY_API_TEXT}, {"userAgent", 5, GATEWAY_API_TEXT},
    {"current", 6, GATEWAY_API_BOOL}, {0}
};

//  The user's live sessions, the most recently used first. lastSeenAt is
//  at most a minute behind; expiresAt is the sooner of the fixed age and
//  the idle limit from lastSeenAt.
static int
s_sessions_list (gateway_api_request_t *request)
{
    char idle [16];
    s_idle_text (request, idle);
    const char *values [] = {request->user_text, request->session_hash, idle};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "SELECT id, " GATEWAY_API_MS ("created_at") ", " GATEWAY_API_MS ("last_seen_at") ", "
        GATEWAY_API_MS ("least (expires_at, last_seen_at + $3::int * interval '1 second')") ","
        " client_address, user_agent, token_hash = $2::bytea"
        " FROM sessions WHERE user_id = $1::bigint AND expires_at > now ()"
        "   AND last_seen_at > now () - $3::int * interval '1 second'"
        " ORDER BY last_seen_at DESC, id DESC", 3, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++)
        json_array_append_new (list, gateway_api_object_from_row (result, row, s_session_members));
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "sessions", list);
}

//  Ends one of the user's sessions; the current one too (then the cookie
//  goes as on logout). 404 for another user's or an unknown id.
static int
s_sessions_delete (gateway_api_request_t *request)
{
    const char *values [] = {request->segments [2], request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "DELETE FROM sessions WHERE id = $1::bigint AND user_id = $2::bigint RETURNING id", 2, values);
    if (!result)
        return status;
    bool found = PQntuples (result) == 1;
    PQclear (result);
    if (!found)
        return gateway_api_not_found (request);
    char cookie [200] = "";
    if (streq (request->segments [2], request->session_text))
        s_session_cookie (request, "", 0, cookie, sizeof cookie);
    return s_send_with_headers (request, 200, "Session ended", json_object (),
                                *cookie ? cookie : NULL);
}

//  "Sign out everywhere else": ends every session of the user but the one
//  making the request (logout ends that one). Answers how many ended.
static int
s_sessions_delete_others (gateway_api_request_t *request)
{
    const char *values [] = {request->user_text, request->session_hash};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "DELETE FROM sessions WHERE user_id = $1::bigint AND token_hash <> $2::bytea", 2, values);
    if (!result)
        return status;
    json_int_t ended = strtoll (PQcmdTuples (result), NULL, 10);
    PQclear (result);
    return s_send_with_headers (request, 200, "Other sessions ended",
                                json_pack ("{s:I}", "ended", ended), NULL);
}

static int
s_auth_me (gateway_api_request_t *request)
{
    return gateway_api_send_user (request, "user", s_user_from_row);
}


//  ==========================================================================
//  /api/devices

//  Answers {device} from a one-row result, and the token when there is one;
//  then refreshes the cache entry when asked (the statement has committed
//  by now).
static int
s_send_device (gateway_api_request_t *request, PGresult *result, int status, const char *message,
               const char *token, bool refresh)
{
    int64_t device = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    json_t *data = json_pack ("{s:o}", "device", gateway_api_object_from_row (result, 0, s_device_members));
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
    return gateway_api_send_list (request,
        "SELECT " S_DEVICE_COLUMNS " FROM devices WHERE user_id = $1::bigint ORDER BY id",
        "devices", s_device_members);
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
        const char *values [] = {request->user_text, name, request->segments [1]};
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
    return s_devices_save (request,
        "INSERT INTO devices (user_id, name) VALUES ($1::bigint, $2) RETURNING " S_DEVICE_COLUMNS,
        2, 201, "Device created");
}

static int
s_devices_update (gateway_api_request_t *request)
{
    return s_devices_save (request,
        "UPDATE devices SET name = $2 WHERE id = $3::bigint AND user_id = $1::bigint"
        " RETURNING " S_DEVICE_COLUMNS, 3, 200, "Device updated");
}

static int
s_devices_get (gateway_api_request_t *request)
{
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (request, &status,
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
    char days_text [24] = "";
    bool emoncms = false;
    int status;
    if (info && info->content_length > 0) {
        json_t *body;
        if ((status = gateway_api_read_body (request, &body)))
            return status;
        int64_t days;
        bool present;
        status = gateway_api_field_integer (request, body, "expiresInDays", false, 1, 3650,
                                            &days, &present);
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
    char token [GATEWAY_API_TOKEN_CHARS + 1], token_hash [GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    if (emoncms) {
        uint8_t random [16];
        randombytes_buf (random, sizeof random);
        sodium_bin2hex (token, sizeof token, random, sizeof random);
        sodium_memzero (random, sizeof random);
        gateway_api_token_hash_text (token, token_hash);
    }
    const char *values [] = {request->segments [1], request->user_text, token_hash,
                             *days_text ? days_text : NULL};
    //  SET expressions see the row as it was, so token_hash on the right is the old one.
    PGresult *result = gateway_api_run_found (request, &status,
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
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (request, &status,
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
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (request, &status,
        "WITH device AS (DELETE FROM devices WHERE id = $1::bigint AND user_id = $2::bigint"
        "                RETURNING id),"
        " owned AS (SELECT id FROM ports WHERE device_id IN (SELECT id FROM device)),"
        " readings AS (DELETE FROM readings WHERE port_id IN (SELECT id FROM owned)),"
        " keys AS (DELETE FROM reading_keys WHERE device_id IN (SELECT id FROM device))"
        " SELECT (SELECT id FROM device), id::text FROM owned"
        " UNION ALL SELECT id, NULL FROM device", 2, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    gateway_cache_refresh_device (request->gateway->cache, strtoll (request->segments [1], NULL, 10));
    for (int row = 0; row < rows; row++)
        if (!PQgetisnull (result, row, 1))
            gateway_cache_refresh_port (request->gateway->cache, PQgetvalue (result, row, 1));
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, "Device deleted", json_object ());
}


//  ==========================================================================
//  Routing

//  Live updates: the session check is ours, the stream gateway_live's.
static int
s_stream (gateway_api_request_t *request)
{
    if (!request->gateway->live)
        return gateway_http_send_error (request->conn, 503, "unavailable",
                                        "Live updates unavailable", 5);
    return gateway_live_serve (request->gateway->live, request->conn, request->user);
}

static const gateway_api_route_t s_routes [] = {
    {"POST",   "auth/register",     false, s_auth_register},
    {"POST",   "auth/login",        false, s_auth_login},
    {"POST",   "auth/logout",       true,  s_auth_logout},
    {"GET",    "auth/me",           true,  s_auth_me},
    {"GET",    "auth/sessions",     true,  s_sessions_list},
    {"DELETE", "auth/sessions",     true,  s_sessions_delete_others},
    {"DELETE", "auth/sessions/:id", true,  s_sessions_delete},
    {"GET",    "devices",           true,  s_devices_list},
    {"POST",   "devices",           true,  s_devices_create},
    {"GET",    "devices/:id",       true,  s_devices_get},
    {"PATCH",  "devices/:id",       true,  s_devices_update},
    {"DELETE", "devices/:id",       true,  s_devices_delete},
    {"POST",   "devices/:id/token", true,  s_devices_token_create},
    {"DELETE", "devices/:id/token", true,  s_devices_token_revoke},
    {"GET",    "stream",            true,  s_stream},
    {0}
};

const gateway_api_route_t *const gateway_api_route_tables [] = {
    s_routes, gateway_api_ports_routes, gateway_api_notify_routes, gateway_api_summary_routes,
    gateway_api_export_routes, NULL
};

//  Splits the URI below /api/ into segments; one trailing slash is allowed.
//  0, or -1 when it cannot be any route of ours.
int
gateway_api_parse_path (gateway_api_request_t *request, const char *uri)
{
    if (!uri || strncmp (uri, "/api/", 5) != 0 || strlen (uri + 5) >= sizeof request->path)
        return -1;
    strcpy (request->path, uri + 5);
    size_t length = strlen (request->path);
    if (length && request->path [length - 1] == '/')
        request->path [length - 1] = 0;
    char *cursor = request->path;
    while (true) {
        if (request->segment_count == GATEWAY_API_SEGMENTS_MAX)
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
bool
gateway_api_route_matches (const gateway_api_route_t *route, const gateway_api_request_t *request)
{
    const char *pattern = route->pattern;
    for (int index = 0; index < request->segment_count; index++) {
        if (!*pattern)
            return false;
        size_t length = strcspn (pattern, "/");
        const char *segment = request->segments [index];
        bool fits = strncmp (pattern, ":id", length) == 0 && length == 3 ? gateway_api_is_id (segment)
                  : strncmp (pattern, ":uuid", length) == 0 && length == 5 ? gateway_api_is_uuid (segment)
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
    gateway_api_request_t request;
    memset (&request, 0, sizeof request);
    request.gateway = (gateway_t *) cbdata;
    request.conn = conn;
    request.method = info && info->request_method ? info->request_method : "";
    request.query = info ? info->query_string : NULL;

    if (!info || gateway_api_parse_path (&request, info->local_uri) == -1)
        return gateway_api_not_found (&request);
    const gateway_api_route_t *route = NULL;
    bool path_known = false;
    for (size_t table = 0; gateway_api_route_tables [table] && !route; table++)
        for (const gateway_api_route_t *entry = gateway_api_route_tables [table];
             entry->method && !route; entry++)
            if (gateway_api_route_matches (entry, &request)) {
                path_known = true;
                if (streq (entry->method, request.method))
                    route = entry;
            }
    int status;
    if (!route)
        status = path_known
            ? gateway_http_send_error (conn, 405, "method_not_allowed", "Method not allowed", 0)
            : gateway_api_not_found (&request);
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
        "/api/auth", "/api/devices", "/api/ports", "/api/notifications", "/api/webhooks",
        "/api/summary", "/api/settings", "/api/stream", "/api/**"
    };
    for (size_t index = 0; index < sizeof prefixes / sizeof prefixes [0]; index++)
        mg_set_request_handler (self->http, prefixes [index], s_dispatch, self);
}


//  ==========================================================================
//  Self test of the pure helpers and the password pool; the routes are
//  tested over HTTP in gateway_api_test.c.

void
gateway_api_helpers_test (void)
{
    gateway_api_summary_test ();
    assert (gateway_api_is_id ("1") && gateway_api_is_id ("123456789012345678"));
    assert (!gateway_api_is_id ("1234567890123456789") && !gateway_api_is_id ("") && !gateway_api_is_id ("12a")
            && !gateway_api_is_id ("-1") && !gateway_api_is_id ("1 "));
    assert (gateway_api_is_uuid ("123e4567-e89b-12d3-a456-426614174000"));
    assert (!gateway_api_is_uuid ("123e4567e89b12d3a456426614174000")
            && !gateway_api_is_uuid ("123e4567-e89b-12d3-a456-42661417400g")
            && !gateway_api_is_uuid ("123e4567-e89b-12d3-a456-4266141740001"));
    char email [GATEWAY_API_EMAIL_MAX + 1];
    assert (gateway_api_email_normalize ("Ann.B@Example.COM", email) == 0 && streq (email, "ann.b@example.com"));
    assert (gateway_api_email_normalize ("ann.example.com", email) == -1);
    assert (gateway_api_email_normalize ("@example.com", email) == -1);
    assert (gateway_api_email_normalize ("ann@", email) == -1);
    assert (gateway_api_email_normalize ("a nn@example.com", email) == -1);
    assert (s_utf8_length ("Küche") == 5);

    char token [GATEWAY_API_TOKEN_CHARS + 1], other [GATEWAY_API_TOKEN_CHARS + 1], hash [GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, hash);
    gateway_api_token_new (other, hash);
    assert (strlen (token) == GATEWAY_API_TOKEN_CHARS && gateway_api_token_valid (token) && !streq (token, other));
    assert (strlen (hash) == GATEWAY_API_HASH_TEXT - 1 && hash [0] == '\\' && hash [1] == 'x');
    assert (!gateway_api_token_valid ("short") && !gateway_api_token_valid ("0123456789012345678901234567890123456789+/="));

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
        gateway_api_request_t request;
        memset (&request, 0, sizeof request);
        const char *matched = NULL;
        if (gateway_api_parse_path (&request, cases [index][0]) == 0)
            for (size_t table = 0; gateway_api_route_tables [table]; table++)
                for (const gateway_api_route_t *route = gateway_api_route_tables [table];
                     route->method; route++)
                    if (gateway_api_route_matches (route, &request))
                        matched = route->pattern;
        assert (cases [index][1] ? matched && streq (matched, cases [index][1]) : !matched);
    }

    //  With both password slots held, a hash waits its 5 s and gives up.
    pthread_once (&s_once, s_init_once);
    assert (s_ready);
    assert (s_password_slot_take () == 0 && s_password_slot_take () == 0);
    char password_hash [crypto_pwhash_STRBYTES];
    int64_t started = zclock_mono ();
    assert (s_password_hash ("correct horse", password_hash) == -2);
    assert (zclock_mono () - started >= S_PASSWORD_WAIT_S * 1000 - 50);
    sem_post (&s_password_slots);
    sem_post (&s_password_slots);
    assert (s_password_hash ("correct horse", password_hash) == 0);
    assert (s_password_verify (password_hash, "correct horse") == 0);
    assert (s_password_verify (password_hash, "wrong horse") == -1);
    assert (s_password_verify (NULL, "correct horse") == -1);
}

//  Here, not in gateway_api_test.c: the self test runner refers to it
//  weakly, which would not pull that file out of the static library.
void
gateway_api_test (bool verbose)
{
    printf (" * gateway_api: ");
    gateway_api_helpers_test ();
    gateway_api_routes_test (verbose);
}
