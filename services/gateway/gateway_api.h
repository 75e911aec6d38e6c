/*  =========================================================================
    gateway_api - internals shared by the user API's files

      gateway_api.c          helpers, sessions, routing, /api/auth, /api/devices
      gateway_api_ports.c    /api/ports, readings, episodes
      gateway_api_notify.c   /api/notifications, /api/webhooks
      gateway_api_summary.c  /api/summary, /api/settings
      gateway_api_test.c     the self test over real HTTP
    Live updates (/api/stream) are gateway_live's; the route lives here so it
    shares the session check.
    =========================================================================
*/
#ifndef GATEWAY_API_H_INCLUDED
#define GATEWAY_API_H_INCLUDED

#include "gateway.h"

#define GATEWAY_API_TOKEN_CHARS 43      //  base64url text of a 256-bit token, no padding
#define GATEWAY_API_HASH_TEXT 67        //  "\x" + 64 hex digits + NUL: a bytea parameter
#define GATEWAY_API_ID_DIGITS_MAX 18    //  bigint ids fit without overflow
#define GATEWAY_API_SEGMENTS_MAX 6      //  longest route is 4 segments; more is a 404
#define GATEWAY_API_PATH_MAX 256
#define GATEWAY_API_NAME_MAX 100
#define GATEWAY_API_EMAIL_MAX 254
#define GATEWAY_API_PAGE_MAX 200        //  largest page of any paged list

//  Epoch milliseconds of a timestamptz column, for gateway_http_iso8601.
#define GATEWAY_API_MS(column) "(extract(epoch FROM " column ") * 1000)::bigint"

//  One request as the handlers see it.
typedef struct {
    gateway_t *gateway;                 //  the running gateway
    struct mg_connection *conn;         //  civetweb connection
    const char *method;                 //  request method
    const char *query;                  //  query string, NULL when none
    char path [GATEWAY_API_PATH_MAX];   //  path below /api/, split in place
    char *segments [GATEWAY_API_SEGMENTS_MAX];  //  path segments, pointing into path
    int segment_count;                  //  how many
    int64_t user;                       //  signed-in user (after the session check)
    char user_text [24];                //  the same, as an SQL parameter
    char session_hash [GATEWAY_API_HASH_TEXT];  //  SHA-256 of the session token, bytea text
    bool cookie_session;                //  signed in by cookie, not header
    const char *conflict_code;          //  answer to a unique violation (409), NULL = 400
    const char *conflict_message;       //  its message
} gateway_api_request_t;

typedef int (gateway_api_handler_fn) (gateway_api_request_t *request);

typedef struct {
    const char *method;                 //  exact method; NULL ends a table
    const char *pattern;                //  segments; ":id" digits, ":uuid" a port id
    bool signed_in;                     //  needs a session
    gateway_api_handler_fn *handler;    //  answers and returns the status
} gateway_api_route_t;

//  Route tables of the resource files, each ended by a NULL method; the
//  dispatcher and the self test's authorization loop walk all of them.
extern const gateway_api_route_t gateway_api_ports_routes [];
extern const gateway_api_route_t gateway_api_notify_routes [];
extern const gateway_api_route_t gateway_api_summary_routes [];
extern const gateway_api_route_t *const gateway_api_route_tables [];

//  Answers: 404 not_found, 400 validation_error with message, 500. Return the status.
int gateway_api_not_found (gateway_api_request_t *request);
int gateway_api_invalid (gateway_api_request_t *request, const char *message);
int gateway_api_internal (gateway_api_request_t *request);

//  Runs sql on a pooled connection and returns its result when it succeeded.
//  Otherwise it has answered (503/409/400/500), sets *status, returns NULL.
//  A change of several tables is one statement with data-modifying WITH
//  clauses: atomic without a transaction held across round trips.
PGresult *gateway_api_run (gateway_api_request_t *request, int *status, const char *sql,
                           int count, const char *const *values);

//  Body and field readers: 0, or the status already answered.
int gateway_api_read_body (gateway_api_request_t *request, json_t **body);
int gateway_api_field_string (gateway_api_request_t *request, json_t *body, const char *name,
                              bool required, size_t min, size_t max, const char **value);
int gateway_api_field_number (gateway_api_request_t *request, json_t *body, const char *name,
                              double min, double max, double *value, bool *present);
int gateway_api_field_integer (gateway_api_request_t *request, json_t *body, const char *name,
                               bool required, int64_t min, int64_t max, int64_t *value,
                               bool *present);
//  ?limit=1..max (default_limit when absent) and ?before=<id> (before "" when
//  absent). 0, or the status answered.
int gateway_api_page (gateway_api_request_t *request, int default_limit, int max,
                      int *limit, char before [GATEWAY_API_ID_DIGITS_MAX + 2]);
//  Query variable name into value; 1 present, 0 absent, -1 too long/bad.
int gateway_api_query_var (gateway_api_request_t *request, const char *name, char *value,
                           size_t size);

//  Columns of a result row as JSON (null when NULL).
json_t *gateway_api_column_text (PGresult *result, int row, int column);
json_t *gateway_api_column_integer (PGresult *result, int row, int column);
json_t *gateway_api_column_real (PGresult *result, int row, int column);
json_t *gateway_api_column_bool (PGresult *result, int row, int column);
//  A GATEWAY_API_MS column as ISO-8601 UTC with milliseconds.
json_t *gateway_api_column_time (PGresult *result, int row, int column);
//  {key: [from_row (each row)]}
json_t *gateway_api_list_from_rows (PGresult *result, const char *key,
                                    json_t *(*from_row) (PGresult *, int));

bool gateway_api_is_id (const char *text);
bool gateway_api_is_uuid (const char *text);
bool gateway_api_is_clock_time (const char *text);
void gateway_api_token_new (char token [GATEWAY_API_TOKEN_CHARS + 1],
                            char hash [GATEWAY_API_HASH_TEXT]);
bool gateway_api_token_valid (const char *text);
void gateway_api_token_hash_text (const char *token, char out [GATEWAY_API_HASH_TEXT]);
int gateway_api_email_normalize (const char *email, char out [GATEWAY_API_EMAIL_MAX + 1]);

//  Parses a URI below /api/ into request's segments; 0 or -1.
int gateway_api_parse_path (gateway_api_request_t *request, const char *uri);
bool gateway_api_route_matches (const gateway_api_route_t *route,
                                const gateway_api_request_t *request);

//  The pure helpers and the password pool (gateway_api.c), run by gateway_api_test.
void gateway_api_helpers_test (void);
//  The routes over HTTP (gateway_api_test.c); exits 77 without PHANTOM_TEST_DATABASE.
void gateway_api_routes_test (bool verbose);

#endif
