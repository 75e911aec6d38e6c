/*  =========================================================================
    notifier_db - how the notifier's connections are opened
    =========================================================================
*/
#include "notifier_db.h"
#include "notifier_test_db.h"

#include <czmq.h>

//  The notifier's way, as its classes call it.
static int
s_ensure (PGconn **db_p)
{
    return proto_pg_ensure (db_p, notifier_test_db_conninfo (), NOTIFIER_DB_APPLICATION,
                            NOTIFIER_DB_STATEMENT_TIMEOUT_MS);
}

//  --------------------------------------------------------------------------
//  Self test

void
notifier_db_test (bool verbose)
{
    printf (" * notifier_db: ");
    PGconn *db = NULL;
    assert (proto_pg_ensure (&db, "host=/nonexistent port=1 dbname=x", NOTIFIER_DB_APPLICATION,
                             NOTIFIER_DB_STATEMENT_TIMEOUT_MS) == -1);
    assert (db == NULL);
    assert (s_ensure (&db) == 1);
    assert (s_ensure (&db) == 0);
    //  Statements are bounded by the connection's own timeout
    PGresult *result =
        proto_pg_exec (db, "notifier_db test", "timeout", "SHOW statement_timeout", 0, NULL);
    assert (result && streq (PQgetvalue (result, 0, 0), "10s"));
    PQclear (result);
    const char *values[] = {"41"};
    result = proto_pg_exec (db, "notifier_db test", "sum", "SELECT $1::int + 1", 1, values);
    assert (result && streq (PQgetvalue (result, 0, 0), "42"));
    PQclear (result);
    //  A failing statement gives NULL (and a log line), not a crash
    assert (proto_pg_exec (db, "notifier_db test", "bad", "SELECT nonsense FROM nowhere", 0,
                           NULL) == NULL);
    //  A connection the server dropped is replaced
    PGconn *killer = proto_pg_connect (notifier_test_db_conninfo (), NOTIFIER_DB_APPLICATION,
                                       NOTIFIER_DB_STATEMENT_TIMEOUT_MS);
    assert (killer);
    char pid[16];
    snprintf (pid, sizeof pid, "%d", PQbackendPID (db));
    const char *kill_values[] = {pid};
    PQclear (proto_pg_exec (killer, "notifier_db test", "terminate",
                            "SELECT pg_terminate_backend ($1::int)", 1, kill_values));
    PQfinish (killer);
    PQclear (proto_pg_exec (db, "notifier_db test", "probe", "SELECT 1", 0, NULL));
    assert (s_ensure (&db) == 1);
    if (verbose)
        printf ("reconnected; ");
    PQfinish (db);
    printf ("OK\n");
}
