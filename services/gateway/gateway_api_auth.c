/*  =========================================================================
    gateway_api_auth - /api/auth: register, login, logout, the signed-in user and
    their sessions

    Failed logins are limited per address and per account, registrations
    per address (gateway_http_rate's buckets).
    =========================================================================
*/
#include "gateway_api.h"

#include <sodium.h>

#define S_PASSWORD_MIN 8
#define S_PASSWORD_MAX 128

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
    char address[64];
    snprintf (address, sizeof address, "%s", ip);
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password, *name;
    char normal[GATEWAY_API_EMAIL_MAX + 1];
    if ((status = gateway_api_field_string (request, body, "email", true, 3, GATEWAY_API_EMAIL_MAX,
                                            &email)) ||
        (status = gateway_api_field_string (request, body, "password", true, S_PASSWORD_MIN,
                                            S_PASSWORD_MAX, &password)) ||
        (status = gateway_api_field_string (request, body, "name", true, 1, GATEWAY_API_NAME_MAX,
                                            &name)))
        goto done;
    if (gateway_api_email_normalize (email, normal) == -1) {
        status = gateway_api_invalid (request, "email must be a valid email address");
        goto done;
    }
    const char *weak = gateway_api_password_weak (password, normal, name);
    if (weak == gateway_api_password_unchecked) {
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
    const char *lookup[] = {normal};
    PGresult *result = gateway_api_run (request, &status,
                                        "SELECT 1 FROM users WHERE lower (email) = $1", 1, lookup);
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
    char hash[crypto_pwhash_STRBYTES];
    int rc = gateway_api_password_hash (password, hash);
    if (rc != 0) {
        status = rc == -2 ? gateway_http_send_error (request->conn, 503, "busy",
                                                     "Too many sign-ins, retry shortly", 5)
                          : gateway_api_internal (request);
        goto done;
    }
    gateway_http_rate_limit_hit (GATEWAY_RATE_REGISTER, address);
    char token[GATEWAY_API_TOKEN_CHARS + 1], token_hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    char agent[GATEWAY_API_USER_AGENT_MAX + 1];
    const char *agent_value;
    gateway_api_session_origin (request, address, agent, &agent_value);
    const char *values[] = {normal, name, hash, token_hash, address, agent_value};
    //  One statement, so there is never a user without the session we answer.
    result = gateway_api_run (
        request, &status,
        "WITH created AS (INSERT INTO users (email, name, password_hash)"
        "                 VALUES ($1, $2, $3) RETURNING " GATEWAY_API_USER_COLUMNS "),"
        " session AS (INSERT INTO sessions (token_hash, user_id, expires_at, client_address, "
        "user_agent)"
        "             SELECT $4::bytea, id, now () + interval '30 days', $5, $6 FROM created)"
        " SELECT " GATEWAY_API_USER_COLUMNS " FROM created",
        6, values);
    if (!result)
        goto done;
    status = PQntuples (result) == 1
                 ? gateway_api_session_send (request, 201, "User registered", result, token)
                 : gateway_api_internal (request);
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
    char address[64];
    snprintf (address, sizeof address, "%s", gateway_http_client_ip (request->conn));
    int retry_after;
    if (gateway_http_rate_limited (GATEWAY_RATE_LOGIN, address, &retry_after))
        return gateway_http_send_rate_limited (request->conn, retry_after);
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *email, *password;
    char normal[GATEWAY_API_EMAIL_MAX + 1] = "";
    if ((status = gateway_api_field_string (request, body, "email", true, 1, 1000, &email)) ||
        (status = gateway_api_field_string (request, body, "password", true, 1, 1000, &password)))
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
    const char *lookup[] = {normal};
    PGresult *user = gateway_api_run (request, &status,
                                      "SELECT " GATEWAY_API_USER_COLUMNS
                                      ", password_hash FROM users WHERE lower (email) = $1",
                                      1, lookup);
    if (!user)
        goto done;
    bool known = plausible && PQntuples (user) == 1;
    int rc = gateway_api_password_verify (known ? PQgetvalue (user, 0, PQnfields (user) - 1) : NULL,
                                          password);
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
    char token[GATEWAY_API_TOKEN_CHARS + 1], token_hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, token_hash);
    char agent[GATEWAY_API_USER_AGENT_MAX + 1], idle[16];
    const char *agent_value;
    gateway_api_session_origin (request, address, agent, &agent_value);
    gateway_api_session_idle_text (request, idle);
    const char *values[] = {token_hash, PQgetvalue (user, 0, 0), address, agent_value, idle};
    //  Ended sessions of this user go with the new one: cheap, indexed.
    PGresult *result = gateway_api_run (
        request, &status,
        "WITH ended AS (DELETE FROM sessions WHERE user_id = $2::bigint"
        "               AND (expires_at < now () OR last_seen_at < now () - $5::int * interval '1 "
        "second'))"
        " INSERT INTO sessions (token_hash, user_id, expires_at, client_address, user_agent)"
        " VALUES ($1::bytea, $2::bigint, now () + interval '30 days', $3, $4)",
        5, values);
    if (result) {
        PQclear (result);
        status = gateway_api_session_send (request, 200, "Logged in", user, token);
    }
    PQclear (user);
done:
    json_decref (body);
    return status;
}

static int
s_auth_logout (gateway_api_request_t *request)
{
    const char *values[] = {request->session_hash};
    int status;
    PGresult *result = gateway_api_run (
        request, &status, "DELETE FROM sessions WHERE token_hash = $1::bytea", 1, values);
    if (!result)
        return status;
    PQclear (result);
    char cookie[200];
    gateway_api_session_cookie (request, "", 0, cookie, sizeof cookie);
    return gateway_api_send_with_headers (request, 200, "Logged out", json_object (), cookie);
}

//  Of the sessions list below.
static const gateway_api_member_t s_session_members[] = {
    {"id", 0, GATEWAY_API_INTEGER},         {"createdAt", 1, GATEWAY_API_TIME},
    {"lastSeenAt", 2, GATEWAY_API_TIME},    {"expiresAt", 3, GATEWAY_API_TIME},
    {"clientAddress", 4, GATEWAY_API_TEXT}, {"userAgent", 5, GATEWAY_API_TEXT},
    {"current", 6, GATEWAY_API_BOOL},       {0}};

//  The user's live sessions, the most recently used first. lastSeenAt is
//  at most a minute behind; expiresAt is the sooner of the fixed age and
//  the idle limit from lastSeenAt.
static int
s_sessions_list (gateway_api_request_t *request)
{
    char idle[16];
    gateway_api_session_idle_text (request, idle);
    const char *values[] = {request->user_text, request->session_hash, idle};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "SELECT id, " GATEWAY_API_MS ("created_at") ", " GATEWAY_API_MS (
            "last_seen_at") ", " GATEWAY_API_MS ("least (expires_at, last_seen_at + $3::int * "
                                                 "interval '1 second')") ","
                                                                         " client_address, "
                                                                         "user_agent, token_hash = "
                                                                         "$2::bytea"
                                                                         " FROM sessions WHERE "
                                                                         "user_id = $1::bigint AND "
                                                                         "expires_at > now ()"
                                                                         "   AND last_seen_at > "
                                                                         "now () - $3::int * "
                                                                         "interval '1 second'"
                                                                         " ORDER BY last_seen_at "
                                                                         "DESC, id DESC",
        3, values);
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
    const char *values[] = {request->segments[2], request->user_text};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "DELETE FROM sessions WHERE id = $1::bigint AND user_id = $2::bigint RETURNING id", 2,
        values);
    if (!result)
        return status;
    bool found = PQntuples (result) == 1;
    PQclear (result);
    if (!found)
        return gateway_api_not_found (request);
    char cookie[200] = "";
    if (streq (request->segments[2], request->session_text))
        gateway_api_session_cookie (request, "", 0, cookie, sizeof cookie);
    return gateway_api_send_with_headers (request, 200, "Session ended", json_object (),
                                          *cookie ? cookie : NULL);
}

//  "Sign out everywhere else": ends every session of the user but the one
//  making the request (logout ends that one). Answers how many ended.
static int
s_sessions_delete_others (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text, request->session_hash};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "DELETE FROM sessions WHERE user_id = $1::bigint AND token_hash <> $2::bytea", 2, values);
    if (!result)
        return status;
    json_int_t ended = strtoll (PQcmdTuples (result), NULL, 10);
    PQclear (result);
    return gateway_api_send_with_headers (request, 200, "Other sessions ended",
                                          json_pack ("{s:I}", "ended", ended), NULL);
}

static int
s_auth_me (gateway_api_request_t *request)
{
    return gateway_api_send_user (request, "user", gateway_api_user_from_row);
}

const gateway_api_route_t gateway_api_auth_routes[] = {
    {"POST", "auth/register", false, s_auth_register},
    {"POST", "auth/login", false, s_auth_login},
    {"POST", "auth/logout", true, s_auth_logout},
    {"GET", "auth/me", true, s_auth_me},
    {"GET", "auth/sessions", true, s_sessions_list},
    {"DELETE", "auth/sessions", true, s_sessions_delete_others},
    {"DELETE", "auth/sessions/:id", true, s_sessions_delete},
    {0}};
