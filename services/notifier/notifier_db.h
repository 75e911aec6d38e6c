/*  =========================================================================
    notifier_db - how the notifier opens, keeps and uses PostgreSQL

    The event writer, the digest and the webhook loop each own a connection
    (the loop runs in its own thread); they share how it is opened, kept
    alive across a database restart and used, so all three bound every
    wait and log failures the same way.
    =========================================================================
*/
#ifndef NOTIFIER_DB_H_INCLUDED
#define NOTIFIER_DB_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>

//  Opens a connection with bounded connect and statement time; NULL (after
//  logging why) on failure.
PGconn *notifier_db_connect (const char *conninfo);

//  Keeps *db_p if it is connected, else replaces it with a new connection.
//  1 if it connected anew (a caller checks the schema then), 0 if it kept
//  the connection, -1 (and *db_p NULL) if it could not connect.
int notifier_db_ensure (PGconn **db_p, const char *conninfo);

//  Runs a parameterised statement; NULL unless it succeeded, after logging
//  "<entity> - <what> failed: <reason>".
PGresult *notifier_db_exec (PGconn *db, const char *entity, const char *what, const char *sql,
                            int count, const char *const *values);

//  Self test (needs PHANTOM_TEST_DATABASE)
void notifier_db_test (bool verbose);

#endif
