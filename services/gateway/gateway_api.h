/*  =========================================================================
    gateway_api - internals shared by the user API's files

      gateway_api.c          routing: the route tables, the session check, dispatch
      gateway_api_answer.c   answers, rows as JSON
      gateway_api_sql.c      SQL on the pool (with reconnect)
      gateway_api_request.c  ids, emails, query strings, windows, pages, body fields
      gateway_api_session.c  session token, session check, session cookie
      gateway_api_token.c    session and device tokens
      gateway_api_password.c password hashing pool and strength check
      gateway_api_auth.c     /api/auth
      gateway_api_devices.c  /api/devices
      gateway_api_ports.c    /api/ports, readings, episodes
      gateway_api_notify.c   /api/notifications, /api/webhooks
      gateway_api_summary.c  /api/summary, /api/settings
      gateway_api_export.c   CSV exports of readings and episodes, streamed
      gateway_api_test.c     the self test over real HTTP
    Live updates (/api/stream) are gateway_live's; the route lives here so it
    shares the session check.
    =========================================================================
*/
#ifndef GATEWAY_API_H_INCLUDED
#define GATEWAY_API_H_INCLUDED

#include "gateway.h"

#include <sodium.h>

#define GATEWAY_API_TOKEN_CHARS 43      //  base64url text of a 256-bit token, no padding
#define GATEWAY_API_HASH_TEXT 67        //  "\x" + 64 hex digits + NUL: a bytea parameter
#define GATEWAY_API_ID_DIGITS_MAX 18    //  bigint ids fit without overflow
#define GATEWAY_API_SEGMENTS_MAX 6      //  longest route is 4 segments; more is a 404
#define GATEWAY_API_PATH_MAX 256
#define GATEWAY_API_NAME_MAX 100
#define GATEWAY_API_EMAIL_MAX 254
#define GATEWAY_API_PAGE_MAX 200        //  largest page of any paged list
#define GATEWAY_API_WINDOWS_MAX 8       //  most weekly windows of a schedule or tariff
#define GATEWAY_API_SPAN_MAX_MS (400LL * 24 * 3600 * 1000)  //  widest from..to of a query
#define GATEWAY_API_STEP_MAX (31 * 24 * 3600)  //  widest bucket of a series, seconds

//  The API's name of a port role (ports.role: standby, should_be_off, always_on).
#define GATEWAY_API_ROLE(column)                                                \
    "CASE " column " WHEN 'should_be_off' THEN 'shouldBeOff'"                   \
    " WHEN 'always_on' THEN 'alwaysOn' ELSE 'standby' END"

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
    char session_text [24];             //  the session's id, as an SQL parameter
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
extern const gateway_api_route_t gateway_api_auth_routes [];
extern const gateway_api_route_t gateway_api_devices_routes [];
extern const gateway_api_route_t gateway_api_ports_routes [];
extern const gateway_api_route_t gateway_api_notify_routes [];
extern const gateway_api_route_t gateway_api_summary_routes [];
extern const gateway_api_route_t gateway_api_export_routes [];
extern const gateway_api_route_t *const gateway_api_route_tables [];

//  Columns of the users table the API shows, settings from column 3 on
//  (the tariff is in its own table: /api/settings adds it).
#define GATEWAY_API_USER_COLUMNS                                                \
    "id, email, name, currency, time_zone, digest_enabled, locale"

//  How a result column becomes JSON; SQL NULL is null (false for BOOL).
typedef enum {
    GATEWAY_API_TEXT,                   //  string
    GATEWAY_API_INTEGER,                //  integer
    GATEWAY_API_REAL,                   //  number
    GATEWAY_API_BOOL,                   //  true when "t"
    GATEWAY_API_TIME,                   //  a GATEWAY_API_MS column, ISO-8601 UTC with ms
    GATEWAY_API_JSON,                   //  JSON text, parsed ({} when it does not parse)
    GATEWAY_API_STATUS                  //  a proto status number, as its name
} gateway_api_type_t;

//  One member of a JSON object built from a result row; "outer.inner"
//  names a member of a nested object. A table of them is ended by a NULL
//  name, so every answer's shape is written down once.
typedef struct {
    const char *name;                   //  member name; NULL ends the table
    int column;                         //  result column
    gateway_api_type_t type;            //  how the column becomes JSON
} gateway_api_member_t;

json_t *gateway_api_column (PGresult *result, int row, int column, gateway_api_type_t type);
json_t *gateway_api_object_from_row (PGresult *result, int row, const gateway_api_member_t *members);

//  Answers: 404 not_found, 400 validation_error with message, 500. Return the status.
int gateway_api_not_found (gateway_api_request_t *request);
int gateway_api_invalid (gateway_api_request_t *request, const char *message);
//  400 validation_error about one field of the body (error.field = field).
int gateway_api_invalid_field (gateway_api_request_t *request, const char *field,
                               const char *message);
int gateway_api_internal (gateway_api_request_t *request);
//  Answers status {key: object} with message (may be NULL); steals object.
int gateway_api_send_object (gateway_api_request_t *request, int status, const char *message,
                             const char *key, json_t *object);
//  Answers status {key: object_from_row (row 0)}; clears result.
int gateway_api_send_row (gateway_api_request_t *request, int status, const char *message,
                          PGresult *result, const char *key, const gateway_api_member_t *members);
//  Runs sql with $1 = the user; answers 200 {key: [object_from_row (each row)]}.
int gateway_api_send_list (gateway_api_request_t *request, const char *sql, const char *key,
                           const gateway_api_member_t *members);
//  A page of a parent's children, newest first, ?limit=1..GATEWAY_API_PAGE_MAX
//  (default_limit) and ?before=<id>: sql gets $1 parent, $2 the user, $3
//  before (NULL: from the newest), $4 the limit, and returns the parent's
//  row LEFT JOIN LATERAL the page, the child's id in column 1 (NULL: the
//  page is empty). No row means the parent is not the user's: 404.
//  Answers 200 {key: [...], nextBefore: id or null} and the members of
//  extra (may be NULL) from the first row.
int gateway_api_send_page (gateway_api_request_t *request, const char *parent, int default_limit,
                           const char *sql, const char *key, const gateway_api_member_t *members,
                           const gateway_api_member_t *extra);
//  The user's settings object of a GATEWAY_API_USER_COLUMNS row.
json_t *gateway_api_settings_from_row (PGresult *result, int row);
//  Answers 200 {key: from_row (the signed-in user's GATEWAY_API_USER_COLUMNS
//  row)}; 401 when the user, so the session, is gone.
int gateway_api_send_user (gateway_api_request_t *request, const char *key,
                           json_t *(*from_row) (PGresult *result, int row));

//  Runs sql on a pooled connection and returns its result when it succeeded.
//  Otherwise it has answered (429/503/504/409/400/500), sets *status, returns
//  NULL. The connection is taken in request->user's share of the pool: when
//  the user's own requests hold it for the whole wait, 429
//  too_many_requests with Retry-After: 1. A statement past the pool's
//  statement timeout is 504 query_timeout with Retry-After: 5.
//  A connection PostgreSQL dropped (a restart, a terminated backend) is
//  reconnected and the statement run once more; when that fails too the
//  answer is 503 database_unavailable with Retry-After: 1, never a 500.
//  A change of several tables is one statement with data-modifying WITH
//  clauses: atomic without a transaction held across round trips, and so
//  safe to run again.
PGresult *gateway_api_run (gateway_api_request_t *request, int *status, const char *sql,
                           int count, const char *const *values);
//  gateway_api_run for a statement that finds rows of the user's: when it
//  finds none, answers 404 (another user's, or gone) and returns NULL.
PGresult *gateway_api_run_found (gateway_api_request_t *request, int *status, const char *sql,
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
//  The step (seconds) a series of readings over span_ms is answered in,
//  for the step asked (0: raw readings, answered as asked). A step that
//  would give more than 5000 buckets is raised; over more than 6 hours
//  the buckets come from the minute rollups (*rollups), so the step is
//  also rounded up to whole minutes. *raised: it differs from the asked.
int64_t gateway_api_series_step (int64_t span_ms, int64_t step, bool *raised, bool *rollups);
//  Query variable name into value; 1 present, 0 absent, -1 too long/bad.
int gateway_api_query_var (gateway_api_request_t *request, const char *name, char *value,
                           size_t size);

bool gateway_api_is_id (const char *text);
bool gateway_api_is_uuid (const char *text);
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
//  The currency and locale checks (gateway_api_summary.c), run by the same.
void gateway_api_summary_test (void);

//  gateway_api_answer: the success envelope with extra header lines
//  (Set-Cookie); steals data.
int gateway_api_send_with_headers (gateway_api_request_t *request, int status, const char *message,
                                   json_t *data, const char *headers);
//  The user object of a GATEWAY_API_USER_COLUMNS row.
json_t *gateway_api_user_from_row (PGresult *result, int row);

//  gateway_api_session
#define GATEWAY_API_USER_AGENT_MAX 256  //  bytes of User-Agent kept with a session
//  The session check of a signed-in route: 0 with request->user and the
//  session set, or the status answered (401, or the database's 5xx).
int gateway_api_session_require (gateway_api_request_t *request);
//  The session's idle limit, in seconds, as an SQL parameter.
void gateway_api_session_idle_text (gateway_api_request_t *request, char text [16]);
//  The Set-Cookie line of the session cookie with value and max_age.
void gateway_api_session_cookie (gateway_api_request_t *request, const char *value, int max_age,
                                 char *line, size_t size);
//  Answers {user, token} and the session cookie.
int gateway_api_session_send (gateway_api_request_t *request, int status, const char *message,
                              PGresult *user, const char *token);
//  The client address and user agent a new session keeps, as SQL
//  parameters (*agent_value NULL when there is no user agent).
void gateway_api_session_origin (gateway_api_request_t *request, char address [64],
                                 char agent [GATEWAY_API_USER_AGENT_MAX + 1],
                                 const char **agent_value);

//  gateway_api_password: true once the pool is set up (the first call sets it up).
bool gateway_api_password_ready (void);
//  NULL when password may be chosen by the user of email and name, else
//  why not, as a sentence for the user (gateway_api_password_unchecked:
//  cannot tell). Long enough is the caller's check.
const char *gateway_api_password_weak (const char *password, const char *email, const char *name);
extern const char gateway_api_password_unchecked [];
//  Hashes password into hash (crypto_pwhash_STRBYTES). 0, -1 failed, -2 the pool stayed busy.
int gateway_api_password_hash (const char *password, char hash [crypto_pwhash_STRBYTES]);
//  Verifies password against stored (NULL: against the dummy hash, and
//  fails). 0 match, -1 no match, -2 the pool stayed busy.
int gateway_api_password_verify (const char *stored, const char *password);

void gateway_api_password_test (bool verbose);
void gateway_api_token_test (bool verbose);
void gateway_api_request_test (bool verbose);
//  Self test; runs against PHANTOM_TEST_DATABASE (a migrated database), skips without it.
void gateway_api_test (bool verbose);
//  The routes over HTTP (gateway_api_test.c); exits 77 without PHANTOM_TEST_DATABASE.
void gateway_api_routes_test (bool verbose);
//  The exports over HTTP (gateway_api_export.c), streaming and its bounds
//  included; exits 77 without PHANTOM_TEST_DATABASE.
void gateway_api_export_test (bool verbose);

#endif
