/*  =========================================================================
    gateway_api_sql - SQL of the user API on the pool, reconnected once when dropped
    =========================================================================
*/
#ifndef GATEWAY_API_SQL_H_INCLUDED
#define GATEWAY_API_SQL_H_INCLUDED

#include "gateway_api_request.h"

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
PGresult *gateway_api_run (gateway_api_request_t *request, int *status, const char *sql, int count,
                           const char *const *values);

//  gateway_api_run for a statement that finds rows of the user's: when it
//  finds none, answers 404 (another user's, or gone) and returns NULL.
PGresult *gateway_api_run_found (gateway_api_request_t *request, int *status, const char *sql,
                                 int count, const char *const *values);

#endif
