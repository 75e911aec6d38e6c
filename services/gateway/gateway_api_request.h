/*  =========================================================================
    gateway_api_request - one request of the user API as its handlers see
    it, its route, and reading it: ids, emails, query strings, windows and
    body fields (an error names the field)
    =========================================================================
*/
#ifndef GATEWAY_API_REQUEST_H_INCLUDED
#define GATEWAY_API_REQUEST_H_INCLUDED

#include "gateway.h"
#include "gateway_api_token.h"

#define GATEWAY_API_ID_DIGITS_MAX 18 //  bigint ids fit without overflow
#define GATEWAY_API_SEGMENTS_MAX 6   //  longest route is 4 segments; more is a 404
#define GATEWAY_API_PATH_MAX 256
#define GATEWAY_API_NAME_MAX 100
#define GATEWAY_API_EMAIL_MAX 254
#define GATEWAY_API_PAGE_MAX 200  //  largest page of any paged list
#define GATEWAY_API_WINDOWS_MAX 8 //  most weekly windows of a schedule or tariff
#define GATEWAY_API_SPAN_MAX_MS (400LL * 24 * 3600 * 1000) //  widest from..to of a query
#define GATEWAY_API_STEP_MAX (31 * 24 * 3600)              //  widest bucket of a series, seconds

//  The API's name of a port role (ports.role: standby, should_be_off, always_on).
#define GATEWAY_API_ROLE(column)                                                                   \
    "CASE " column " WHEN 'should_be_off' THEN 'shouldBeOff'"                                      \
    " WHEN 'always_on' THEN 'alwaysOn' ELSE 'standby' END"

//  Epoch milliseconds of a timestamptz column, for gateway_time_format.
#define GATEWAY_API_MS(column) "(extract(epoch FROM " column ") * 1000)::bigint"

//  One request as the handlers see it.
typedef struct {
    gateway_t *gateway;                       //  the running gateway
    struct mg_connection *conn;               //  civetweb connection
    const char *method;                       //  request method
    const char *query;                        //  query string, NULL when none
    char path[GATEWAY_API_PATH_MAX];          //  path below /api/, split in place
    char *segments[GATEWAY_API_SEGMENTS_MAX]; //  path segments, pointing into path
    int segment_count;                        //  how many
    int64_t user;                             //  signed-in user (after the session check)
    char user_text[24];                       //  the same, as an SQL parameter
    char session_hash[GATEWAY_API_HASH_TEXT]; //  SHA-256 of the session token, bytea text
    char session_text[24];                    //  the session's id, as an SQL parameter
    bool cookie_session;                      //  signed in by cookie, not header
    const char *conflict_code;                //  answer to a unique violation (409), NULL = 400
    const char *conflict_message;             //  its message
} gateway_api_request_t;

typedef int (gateway_api_handler_fn) (gateway_api_request_t *request);

typedef struct {
    const char *method;              //  exact method; NULL ends a table
    const char *pattern;             //  segments; ":id" digits, ":uuid" a port id
    bool signed_in;                  //  needs a session
    gateway_api_handler_fn *handler; //  answers and returns the status
} gateway_api_route_t;

//  Body and field readers: 0, or the status already answered.
int gateway_api_read_body (gateway_api_request_t *request, json_t **body);
int gateway_api_field_string (gateway_api_request_t *request, json_t *body, const char *name,
                              bool required, size_t min, size_t max, const char **value);
int gateway_api_field_number (gateway_api_request_t *request, json_t *body, const char *name,
                              double min, double max, double *value, bool *present);
int gateway_api_field_integer (gateway_api_request_t *request, json_t *body, const char *name,
                               bool required, int64_t min, int64_t max, int64_t *value,
                               bool *present);
int gateway_api_field_bool (gateway_api_request_t *request, json_t *body, const char *name,
                            bool required, bool *value, bool *present);

//  Reads weekly windows (docs/figures-and-api.md): null, or an array of 1 to
//  max (at most GATEWAY_API_WINDOWS_MAX) objects {"days": ["mon", ...],
//  "from": "HH:MM", "to": "HH:MM"} with days unique and from != to, checked
//  by gateway_cache_schedule_pack. *windows gets a new, normalised copy
//  (days in week order) or NULL for null; *present false when absent.
int gateway_api_field_windows (gateway_api_request_t *request, json_t *body, const char *name,
                               size_t max, json_t **windows, bool *present);

//  Reads ?from=&to= as epoch ms or ISO-8601 (to: now; from: default_ms
//  before to; at most GATEWAY_API_SPAN_MAX_MS apart) and, when step is not
//  NULL, ?step= in whole seconds (0: raw; at most GATEWAY_API_STEP_MAX).
//  0, or the status answered (400 naming the field).
int gateway_api_window (gateway_api_request_t *request, int64_t default_ms, int64_t *from,
                        int64_t *to, int64_t *step);

//  Query variable name into value; 1 present, 0 absent, -1 too long/bad.
int gateway_api_query_var (gateway_api_request_t *request, const char *name, char *value,
                           size_t size);
bool gateway_api_is_id (const char *text);
bool gateway_api_is_uuid (const char *text);
int gateway_api_email_normalize (const char *email, char out[GATEWAY_API_EMAIL_MAX + 1]);
void gateway_api_request_test (bool verbose);

#endif
