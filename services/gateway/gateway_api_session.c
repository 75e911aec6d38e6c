/*  =========================================================================
    gateway_api_session - sessions: the token of a request (Authorization: Bearer, or
    the pw_session cookie), the session check, and the session cookie

    A session ends at its fixed age or when unused for session_idle_seconds.
    =========================================================================
*/
#include "gateway_api.h"

#include <strings.h>

#define S_SESSION_COOKIE "pw_session"
#define S_SESSION_SECONDS (30 * 24 * 3600) //  fixed age; the SQL says '30 days' too
#define S_SESSION_TOUCH "1 minute"         //  last_seen_at moves at most this often

//  ==========================================================================
//  Sessions

//  Finds the session token: Authorization: Bearer first, else the cookie.
//  0 with token filled, or -1 when there is none of the right shape.
static int
s_session_token (gateway_api_request_t *request, char token[GATEWAY_API_TOKEN_CHARS + 1])
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
    char value[128];
    if (!cookies || mg_get_cookie (cookies, S_SESSION_COOKIE, value, sizeof value) < 0 ||
        !gateway_api_token_valid (value))
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
    const char *rest = strncmp (origin, "http://", 7) == 0    ? origin + 7
                       : strncmp (origin, "https://", 8) == 0 ? origin + 8
                                                              : NULL;
    return rest && strcasecmp (rest, host) == 0;
}

//  The session's idle limit, in seconds, as an SQL parameter.
void
gateway_api_session_idle_text (gateway_api_request_t *request, char text[16])
{
    int idle = request->gateway->session_idle_seconds;
    snprintf (text, 16, "%d", idle > 0 ? idle : GATEWAY_SESSION_IDLE_SECONDS);
}

//  Signs the request in from its session. 0, or the status answered (401,
//  403 for a cookie-authenticated change from another origin). A session
//  past its fixed age or idle too long is no session. Its last_seen_at
//  moves at most once a minute, in the same statement, so most signed-in
//  requests write nothing.
int
gateway_api_session_require (gateway_api_request_t *request)
{
    char token[GATEWAY_API_TOKEN_CHARS + 1];
    if (s_session_token (request, token) == -1)
        return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    gateway_api_token_hash_text (token, request->session_hash);
    char idle[16];
    gateway_api_session_idle_text (request, idle);
    const char *values[] = {request->session_hash, idle};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
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
        return gateway_http_send_error (request->conn, 401, "unauthorized", "Sign-in required", 0);
    bool changes = !streq (request->method, "GET") && !streq (request->method, "HEAD");
    if (request->cookie_session && changes && !s_same_origin (request))
        return gateway_http_send_error (request->conn, 403, "csrf_rejected",
                                        "Cookie sessions need X-Requested-With or a same Origin",
                                        0);
    return 0;
}

//  The session cookie's Set-Cookie line: value for max_age seconds (0
//  and "" clear it). Secure whenever the client came over https, directly
//  or through a trusted proxy that says so: a browser then never sends it
//  over plain http.
void
gateway_api_session_cookie (gateway_api_request_t *request, const char *value, int max_age,
                            char *line, size_t size)
{
    snprintf (line, size,
              "Set-Cookie: " S_SESSION_COOKIE
              "=%s; HttpOnly;%s SameSite=Strict; Path=/; Max-Age=%d\r\n",
              value, gateway_http_client_https (request->conn) ? " Secure;" : "", max_age);
}

//  {user, token} and the session cookie.
int
gateway_api_session_send (gateway_api_request_t *request, int status, const char *message,
                          PGresult *user, const char *token)
{
    char cookie[200];
    gateway_api_session_cookie (request, token, S_SESSION_SECONDS, cookie, sizeof cookie);
    json_t *data =
        json_pack ("{s:o, s:s}", "user", gateway_api_user_from_row (user, 0), "token", token);
    return gateway_api_send_with_headers (request, status, message, data, cookie);
}

//  The client address and user agent a new session keeps, as SQL
//  parameters: the user agent cut to GATEWAY_API_USER_AGENT_MAX bytes, every byte
//  outside printable ASCII as '?' (user agents are ASCII; anything else
//  could be invalid UTF-8, which PostgreSQL refuses). NULL when none.
void
gateway_api_session_origin (gateway_api_request_t *request, char address[64],
                            char agent[GATEWAY_API_USER_AGENT_MAX + 1], const char **agent_value)
{
    snprintf (address, 64, "%s", gateway_http_client_ip (request->conn));
    const char *header = mg_get_header (request->conn, "User-Agent");
    *agent_value = NULL;
    if (!header || !*header)
        return;
    size_t length = 0;
    for (; header[length] && length < GATEWAY_API_USER_AGENT_MAX; length++) {
        unsigned char c = (unsigned char)header[length];
        agent[length] = c >= 0x20 && c < 0x7f ? (char)c : '?';
    }
    agent[length] = 0;
    *agent_value = agent;
}
