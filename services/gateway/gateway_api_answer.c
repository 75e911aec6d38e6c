/*  =========================================================================
    gateway_api_answer - the user API's answers, and JSON objects from result rows

    Every answer's shape is a table of members, written down once.
    =========================================================================
*/
#include "gateway_api.h"

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
int
gateway_api_send_with_headers (gateway_api_request_t *request, int status, const char *message,
                               json_t *data, const char *headers)
{
    json_t *envelope =
        json_pack ("{s:b, s:s, s:o}", "success", 1, "message", message, "data", data);
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
        char text[32];
        gateway_time_format (strtoll (value, NULL, 10), text);
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
            char outer[32];
            snprintf (outer, sizeof outer, "%.*s", (int)(dot - member->name), member->name);
            json_t *nested = json_object_get (object, outer);
            if (!nested)
                json_object_set_new (object, outer, nested = json_object ());
            json_object_set_new (nested, dot + 1, value);
        } else
            json_object_set_new (object, member->name, value);
    }
    return object;
}

//  Of GATEWAY_API_USER_COLUMNS.
static const gateway_api_member_t s_user_members[] = {
    {"id", 0, GATEWAY_API_INTEGER},
    {"email", 1, GATEWAY_API_TEXT},
    {"name", 2, GATEWAY_API_TEXT},
    {"settings.currency", 3, GATEWAY_API_TEXT},
    {"settings.timeZone", 4, GATEWAY_API_TEXT},
    {"settings.digestEnabled", 5, GATEWAY_API_BOOL},
    {"settings.locale", 6, GATEWAY_API_TEXT},
    {0}};

json_t *
gateway_api_user_from_row (PGresult *result, int row)
{
    return gateway_api_object_from_row (result, row, s_user_members);
}

json_t *
gateway_api_settings_from_row (PGresult *result, int row)
{
    json_t *user = gateway_api_user_from_row (result, row);
    json_t *settings = json_incref (json_object_get (user, "settings"));
    json_decref (user);
    return settings;
}

int
gateway_api_send_object (gateway_api_request_t *request, int status, const char *message,
                         const char *key, json_t *object)
{
    return gateway_http_send_data (request->conn, status, message,
                                   json_pack ("{s:o}", key, object));
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
    const char *values[] = {request->user_text};
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
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (
        request, &status, "SELECT " GATEWAY_API_USER_COLUMNS " FROM users WHERE id = $1::bigint", 1,
        values);
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

//  --------------------------------------------------------------------------
//  Pages

//  ?limit=1..max (default_limit when absent) and ?before=<id> (before ""
//  when absent). 0, or the status answered.
static int
s_page (gateway_api_request_t *request, int default_limit, int max, int *limit,
        char before[GATEWAY_API_ID_DIGITS_MAX + 2])
{
    char text[8];
    *limit = default_limit;
    before[0] = 0;
    int rc = gateway_api_query_var (request, "limit", text, sizeof text);
    if (rc == 1 && gateway_api_is_id (text) && atoi (text) >= 1 && atoi (text) <= max)
        *limit = atoi (text);
    else if (rc != 0) {
        char message[80];
        snprintf (message, sizeof message, "limit must be an integer from 1 to %d", max);
        return gateway_api_invalid (request, message);
    }
    rc = gateway_api_query_var (request, "before", before, GATEWAY_API_ID_DIGITS_MAX + 2);
    if (rc == -1 || (rc == 1 && !gateway_api_is_id (before))) {
        before[0] = 0;
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
    char before[GATEWAY_API_ID_DIGITS_MAX + 2], limit_text[8];
    int status = s_page (request, default_limit, GATEWAY_API_PAGE_MAX, &limit, before);
    if (status)
        return status;
    snprintf (limit_text, sizeof limit_text, "%d", limit);
    const char *values[] = {parent, request->user_text, *before ? before : NULL, limit_text};
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
    json_object_set_new (data, "nextBefore",
                         json_array_size (list) == (size_t)limit
                             ? gateway_api_column (result, rows - 1, 1, GATEWAY_API_INTEGER)
                             : json_null ());
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}
