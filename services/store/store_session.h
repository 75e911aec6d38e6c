/*  =========================================================================
    store_session - one PostgreSQL session of the store, kept open

    The writers' sessions and the maintenance's are this class: opened
    through proto_pg_connect (every wait bounded, UTC, named for
    pg_stat_activity), set up after every connect (its settings, then its
    prepared statements), reopened with backoff after a loss (from 100 ms,
    doubling to the session's maximum), errors as one line (proto_pg_error).
    The owner's thread uses the connection; only store_session_cancel may
    be called from another thread.
    =========================================================================
*/
#ifndef STORE_SESSION_H_INCLUDED
#define STORE_SESSION_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _store_session_t store_session_t;

//  The store's application names (pg_stat_activity): the writers' (the
//  maintenance looks for busy ones when it starts) and the maintenance's.
#define STORE_SESSION_WRITERS "phantom-store"
#define STORE_SESSION_MAINTENANCE "phantom-store-maintenance"

//  A statement prepared on every connection of the session.
typedef struct {
    const char *name;
    const char *sql;
} store_session_statement_t;

//  What a session is: settings and statements are borrowed (static
//  tables) and run in order after each connect.
typedef struct {
    const char *application;     //  application_name
    const char *name;            //  in logs ("store writer")
    int statement_timeout_ms;    //  bound of every statement
    int64_t backoff_max_ms;      //  longest wait between connects
    const char *const *settings; //  SET commands
    size_t setting_count;
    const store_session_statement_t *statements; //  prepared statements
    size_t statement_count;
} store_session_config_t;

//  A session for conninfo as config says (copied; its tables borrowed);
//  connects on the first store_session_ensure. NULL if out of memory.
store_session_t *store_session_new (const char *conninfo, const store_session_config_t *config,
                                    bool verbose);
void store_session_destroy (store_session_t **self_p);

//  Connects if disconnected and the backoff allows: 0 if it was
//  connected, 1 if it connected now (and is set up), -1 if not connected.
int store_session_ensure (store_session_t *self);

//  The connection, NULL while disconnected.
PGconn *store_session_conn (store_session_t *self);
bool store_session_connected (store_session_t *self);
//  Server process id of the connection, 0 if none (logs, tests).
int store_session_backend (store_session_t *self);
//  Wait before the next connect attempt after a loss, ms (logs).
int64_t store_session_backoff (store_session_t *self);
//  Monotonic ms of the next connect attempt while disconnected.
int64_t store_session_connect_at (store_session_t *self);

//  Closes the connection (lost, or in a state not known); the next
//  connect waits for the backoff, which doubles.
void store_session_drop (store_session_t *self);

//  Runs the session's settings and prepared statements on conn (its own
//  connection after a connect; tests use it to plan the statements on a
//  connection of their own). 0, or -1 (logged).
int store_session_setup (store_session_t *self, PGconn *conn);

//  Runs sql with count parameters (text, or binary when lengths); the
//  result when it succeeded (caller PQclears), else NULL after logging
//  "<name> - <what> failed: <reason>" (not after store_session_cancel)
//  and dropping the connection if it was lost.
PGresult *store_session_exec (store_session_t *self, const char *what, const char *sql, int count,
                              const char *const *params, const int *lengths);

//  From any thread: cancels the statement in flight, if any; failures
//  after it are not logged (the owner is stopping).
void store_session_cancel (store_session_t *self);

//  Self test (needs PHANTOM_TEST_DATABASE)
void store_session_test (bool verbose);

#endif
