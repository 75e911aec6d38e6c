/*  =========================================================================
    gateway_api_session - sessions: the session check and the session cookie
    =========================================================================
*/
#ifndef GATEWAY_API_SESSION_H_INCLUDED
#define GATEWAY_API_SESSION_H_INCLUDED

#include "gateway_api_request.h"

#define GATEWAY_API_USER_AGENT_MAX 256 //  bytes of User-Agent kept with a session

//  The session check of a signed-in route: 0 with request->user and the
//  session set, or the status answered (401, or the database's 5xx).
int gateway_api_session_require (gateway_api_request_t *request);

//  The session's idle limit, in seconds, as an SQL parameter.
void gateway_api_session_idle_text (gateway_api_request_t *request, char text[16]);

//  The Set-Cookie line of the session cookie with value and max_age.
void gateway_api_session_cookie (gateway_api_request_t *request, const char *value, int max_age,
                                 char *line, size_t size);

//  Answers {user, token} and the session cookie.
int gateway_api_session_send (gateway_api_request_t *request, int status, const char *message,
                              PGresult *user, const char *token);

//  The client address and user agent a new session keeps, as SQL
//  parameters (*agent_value NULL when there is no user agent).
void gateway_api_session_origin (gateway_api_request_t *request, char address[64],
                                 char agent[GATEWAY_API_USER_AGENT_MAX + 1],
                                 const char **agent_value);

#endif
