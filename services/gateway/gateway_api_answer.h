/*  =========================================================================
    gateway_api_answer - the user API's answers, and JSON objects from result rows
    =========================================================================
*/
#ifndef GATEWAY_API_ANSWER_H_INCLUDED
#define GATEWAY_API_ANSWER_H_INCLUDED

#include "gateway_api_request.h"

//  Columns of the users table the API shows, settings from column 3 on
//  (the tariff is in its own table: /api/settings adds it).
#define GATEWAY_API_USER_COLUMNS "id, email, name, currency, time_zone, digest_enabled, locale"

//  How a result column becomes JSON; SQL NULL is null (false for BOOL).
typedef enum {
    GATEWAY_API_TEXT,    //  string
    GATEWAY_API_INTEGER, //  integer
    GATEWAY_API_REAL,    //  number
    GATEWAY_API_BOOL,    //  true when "t"
    GATEWAY_API_TIME,    //  a GATEWAY_API_MS column, ISO-8601 UTC with ms
    GATEWAY_API_JSON,    //  JSON text, parsed ({} when it does not parse)
    GATEWAY_API_STATUS   //  a proto status number, as its name
} gateway_api_type_t;

//  One member of a JSON object built from a result row; "outer.inner"
//  names a member of a nested object. A table of them is ended by a NULL
//  name, so every answer's shape is written down once.
typedef struct {
    const char *name;        //  member name; NULL ends the table
    int column;              //  result column
    gateway_api_type_t type; //  how the column becomes JSON
} gateway_api_member_t;
json_t *gateway_api_column (PGresult *result, int row, int column, gateway_api_type_t type);
json_t *gateway_api_object_from_row (PGresult *result, int row,
                                     const gateway_api_member_t *members);

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

//  The user's settings object of a GATEWAY_API_USER_COLUMNS row.
json_t *gateway_api_settings_from_row (PGresult *result, int row);

//  Answers 200 {key: from_row (the signed-in user's GATEWAY_API_USER_COLUMNS
//  row)}; 401 when the user, so the session, is gone.
int gateway_api_send_user (gateway_api_request_t *request, const char *key,
                           json_t *(*from_row) (PGresult *result, int row));

//  The success envelope with extra header lines
//  (Set-Cookie); steals data.
int gateway_api_send_with_headers (gateway_api_request_t *request, int status, const char *message,
                                   json_t *data, const char *headers);

//  The user object of a GATEWAY_API_USER_COLUMNS row.
json_t *gateway_api_user_from_row (PGresult *result, int row);

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

#endif
