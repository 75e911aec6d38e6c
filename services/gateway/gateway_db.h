/*  =========================================================================
    gateway_db - a small bounded pool of PostgreSQL connections; acquire
    waits at most timeout_ms, NULL if none
    =========================================================================
*/
#ifndef GATEWAY_DB_H_INCLUDED
#define GATEWAY_DB_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct _gateway_db_t gateway_db_t;

//  Defaults of config keys api_statement_timeout_ms (the longest statement
//  of the user API) and api_connections_per_user (its pool's share of one
//  signed-in user).
#define GATEWAY_API_STATEMENT_TIMEOUT_MS 5000
#define GATEWAY_API_USER_CONNECTIONS 3

gateway_db_t *gateway_db_new (const char *conninfo, int size);
void gateway_db_destroy (gateway_db_t **self_p);
//  Before the first acquire: every statement on the pool's connections
//  ends after statement_timeout_ms (0: no limit; PostgreSQL cancels it,
//  SQLSTATE 57014), and one owner holds at most share connections at once
//  (1 to size; the default is size, no limit).
void gateway_db_set_limits (gateway_db_t *self, int statement_timeout_ms, int share);
PGconn *gateway_db_acquire (gateway_db_t *self, int timeout_ms);
//  acquire for owner (> 0; 0 is nobody's, as acquire): waits at most
//  timeout_ms for a free connection and for a place in owner's share. NULL
//  with *over_share (may be NULL) true when it was the share that stayed
//  full: owner's own requests hold it.
PGconn *gateway_db_acquire_for (gateway_db_t *self, int64_t owner, int timeout_ms,
                                bool *over_share);
void gateway_db_release (gateway_db_t *self, PGconn *conn);

void gateway_db_test (bool verbose);

#endif
