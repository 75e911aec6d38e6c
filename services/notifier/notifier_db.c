/*  =========================================================================
    notifier_db - how the notifier opens, keeps and uses PostgreSQL
    =========================================================================
*/
#include "notifier_db.h"
#include "notifier_test_db.h"

#include <czmq.h>

PGconn *
notifier_db_connect (const char *conninfo)
{
    assert (conninfo);
    //  Later entries override the expanded connection string: connecting
    //  and every statement are bounded, as every blocking wait must be.
    const char *keywords[] = {"dbname", "connect_timeout", "options", "application_name", NULL};
    const char *values[] = {conninfo, "5", "-c statement_timeout=10000", "phantom-notifier", NULL};
    PGconn *db = PQconnectdbParams (keywords, values, 1);
    if (PQstatus (db) != CONNECTION_OK) {
        zsys_error ("notifier database - cannot connect: %s",
                    db ? PQerrorMessage (db) : "out of memory");
        PQfinish (db);
        return NULL;
    }
    return db;
}

int
notifier_db_ensure (PGconn **db_p, const char *conninfo)
{
    assert (db_p);
    if (*db_p && PQstatus (*db_p) == CONNECTION_OK)
        return 0;
    PQfinish (*db_p);
    *db_p = notifier_db_connect (conninfo);
    return *db_p ? 1 : -1;
}

PGresult *
notifier_db_exec (PGconn *db, const char *entity, const char *what, const char *sql, int count,
                  const char *const *values)
{
    PGresult *result = PQexecParams (db, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        zsys_error ("%s - %s failed: %s", entity, what, PQerrorMessage (db));
        PQclear (result);
        return NULL;
    }
    return result;
}

//  --------------------------------------------------------------------------
//  Self test

void
notifier_db_test (bool verbose)
{
    printf (" * notifier_db: ");
    PGconn *db = NULL;
    assert (notifier_db_ensure (&db, "host=/nonexistent port=1 dbname=x") == -1);
    assert (db == NULL);
    assert (notifier_db_ensure (&db, notifier_test_db_conninfo ()) == 1);
    assert (notifier_db_ensure (&db, notifier_test_db_conninfo ()) == 0);
    //  Statements are bounded by the connection's own timeout
    PGresult *result =
        notifier_db_exec (db, "notifier_db test", "timeout", "SHOW statement_timeout", 0, NULL);
    assert (result && streq (PQgetvalue (result, 0, 0), "10s"));
    PQclear (result);
    const char *values[] = {"41"};
    result = notifier_db_exec (db, "notifier_db test", "sum", "SELECT $1::int + 1", 1, values);
    assert (result && streq (PQgetvalue (result, 0, 0), "42"));
    PQclear (result);
    //  A failing statement gives NULL (and a log line), not a crash
    assert (notifier_db_exec (db, "notifier_db test", "bad", "SELECT nonsense FROM nowhere", 0,
                              NULL) == NULL);
    //  A connection the server dropped is replaced
    PGconn *killer = notifier_db_connect (notifier_test_db_conninfo ());
    assert (killer);
    char pid[16];
    snprintf (pid, sizeof pid, "%d", PQbackendPID (db));
    const char *kill_values[] = {pid};
    PQclear (notifier_db_exec (killer, "notifier_db test", "terminate",
                               "SELECT pg_terminate_backend ($1::int)", 1, kill_values));
    PQfinish (killer);
    PQclear (notifier_db_exec (db, "notifier_db test", "probe", "SELECT 1", 0, NULL));
    assert (notifier_db_ensure (&db, notifier_test_db_conninfo ()) == 1);
    if (verbose)
        printf ("reconnected; ");
    PQfinish (db);
    printf ("OK\n");
}
