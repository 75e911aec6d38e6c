/*  =========================================================================
    proto_pg - the one way a PhantomWatch process opens and uses PostgreSQL

    Every wait is bounded: connecting (connect_timeout), a dead peer (TCP
    keepalives and tcp_user_timeout) and, when asked, every statement
    (statement_timeout). The session runs in UTC and names itself
    (application_name, seen in pg_stat_activity). libpq's messages span
    lines; proto_pg_error gives them as the one line a log event is.
    =========================================================================
*/
#ifndef PROTO_PG_H_INCLUDED
#define PROTO_PG_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>

//  Seconds libpq may take to connect (connect_timeout).
#define PROTO_PG_CONNECT_TIMEOUT_S 5

//  Opens a connection to conninfo (a connection string or URI) as
//  application; statement_timeout_ms > 0 bounds every statement (added to
//  the string's own options, which are kept). NULL on failure, logged as
//  "<application> - cannot connect: <reason>".
PGconn *proto_pg_connect (const char *conninfo, const char *application, int statement_timeout_ms);

//  Keeps *conn_p connected: 0 if it already was, 1 if it was (re)opened,
//  -1 if PostgreSQL cannot be reached now (*conn_p is then NULL).
int proto_pg_ensure (PGconn **conn_p, const char *conninfo, const char *application,
                     int statement_timeout_ms);

//  Runs sql with count text parameters; the result when it succeeded
//  (tuples or command OK; the caller PQclears it), else NULL after logging
//  "<who> - <what> failed: <reason>".
PGresult *proto_pg_exec (PGconn *conn, const char *who, const char *what, const char *sql,
                         int count, const char *const *values);

//  The connection's (or, with result, the result's) error message as one
//  line: newlines become spaces, trailing blanks go. Valid until this
//  thread's next call.
const char *proto_pg_error (PGconn *conn, const PGresult *result);

void proto_pg_test (bool verbose);

#endif
