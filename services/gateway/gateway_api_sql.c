/*  =========================================================================
    gateway_api_sql - SQL of the user API: one statement per pooled connection,
    parameters only, reconnected once when PostgreSQL dropped it
    =========================================================================
*/
#include "gateway_api.h"

#include <errno.h>

#define S_DB_WAIT_MS 2000   //  longest wait for a pooled connection
#define S_TIMEOUT_RETRY_S 5 //  Retry-After of a statement that timed out

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
    return !code || strncmp (code, "08", 2) == 0 || streq (code, "57P01") ||
           streq (code, "57P02") || streq (code, "57P03");
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
        if (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK ||
            !s_connection_lost (pg, result))
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
gateway_api_run (gateway_api_request_t *request, int *status, const char *sql, int count,
                 const char *const *values)
{
    bool over_share;
    PGconn *pg =
        gateway_db_acquire_for (request->gateway->db, request->user, S_DB_WAIT_MS, &over_share);
    if (!pg) {
        if (over_share)
            *status =
                gateway_http_send_error (request->conn, 429, "too_many_requests",
                                         "Too many of your requests at once, retry shortly", 1);
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
                      s_uri (request),
                      result ? PQresultErrorMessage (result) : PQerrorMessage (pg));
        *status = gateway_http_send_error (request->conn, 503, "database_unavailable",
                                           "Database unavailable, retry shortly", 1);
    } else if (code && streq (code, "57014")) {
        //  The statement timeout (gateway_db): cancelled, so the connection
        //  is idle again and goes back to the pool as it is.
        zsys_warning ("gateway api - %s %s: statement timeout", request->method, s_uri (request));
        *status = gateway_http_send_error (request->conn, 504, "query_timeout",
                                           "The database took too long to answer, retry later"
                                           " (a shorter window or a larger step is quicker)",
                                           S_TIMEOUT_RETRY_S);
    } else if (code && streq (code, "23505") && request->conflict_code)
        *status = gateway_http_send_error (request->conn, 409, request->conflict_code,
                                           request->conflict_message, 0);
    else if (code && (strncmp (code, "23", 2) == 0 || strncmp (code, "22", 2) == 0))
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
