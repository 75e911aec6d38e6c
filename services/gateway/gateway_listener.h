/*  =========================================================================
    gateway_listener - a PostgreSQL connection that LISTENs, and its reads

    The cache (phantom_cache: a device, port or user changed) and live
    updates (phantom_notification: a notification for a user) each keep
    one such connection on a thread of their own and wait on its socket
    with their other work; this class opens it and reads what arrived.
    =========================================================================
*/
#ifndef GATEWAY_LISTENER_H_INCLUDED
#define GATEWAY_LISTENER_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>

//  Takes one notification's payload; conn is the listening connection,
//  free for queries of the handler's own.
typedef void (gateway_listener_fn) (void *arg, PGconn *conn, const char *payload);

//  Connects to conninfo as application (statement_timeout_ms: 0 for
//  none, proto_pg_connect) and LISTENs on channel; NULL when PostgreSQL
//  does not answer (logged, who naming the caller: "gateway cache").
PGconn *gateway_listener_connect (const char *conninfo, const char *application,
                                  int statement_timeout_ms, const char *channel, const char *who);

//  Reads what arrived on *conn_p (without blocking) and hands each
//  notification's payload to fn, in order, those parsed during the
//  handler's own queries too. Returns how many; -1 when the connection
//  is lost (logged, finished, *conn_p NULL: connect again).
int gateway_listener_read (PGconn **conn_p, gateway_listener_fn *fn, void *arg, const char *who);

//  Self test
void gateway_listener_test (bool verbose);

#endif
