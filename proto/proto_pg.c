/*  =========================================================================
    proto_pg - the one way a PhantomWatch process opens and uses PostgreSQL
    =========================================================================
*/
#include "proto_pg.h"

#include <czmq.h>

//  The string's own "options" (e.g. -c search_path=...), or NULL.
static char *
s_given_options (const char *conninfo)
{
    char *given = NULL;
    PQconninfoOption *parsed = PQconninfoParse (conninfo, NULL);
    if (parsed) {
        for (PQconninfoOption *option = parsed; option->keyword; option++)
            if (streq (option->keyword, "options") && option->val && *option->val)
                given = strdup (option->val);
        PQconninfoFree (parsed);
    }
    return given;
}

PGconn *
proto_pg_connect (const char *conninfo, const char *application, int statement_timeout_ms)
{
    assert (conninfo);
    assert (application);
    char *options = NULL;
    if (statement_timeout_ms > 0) {
        char *given = s_given_options (conninfo);
        options = zsys_sprintf ("%s%s-c statement_timeout=%d", given ? given : "", given ? " " : "",
                                statement_timeout_ms);
        free (given);
    }
    char connect_timeout[16];
    snprintf (connect_timeout, sizeof connect_timeout, "%d", PROTO_PG_CONNECT_TIMEOUT_S);
    //  dbname expands conninfo in its place: the keywords after it win over
    //  what the string says, so every wait stays bounded.
    const char *keywords[] = {"dbname",
                              "connect_timeout",
                              "keepalives_idle",
                              "keepalives_interval",
                              "keepalives_count",
                              "tcp_user_timeout",
                              "application_name",
                              options ? "options" : NULL,
                              NULL};
    const char *values[] = {conninfo, connect_timeout, "10",    "3", "3",
                            "15000",  application,     options, NULL};
    PGconn *conn = PQconnectdbParams (keywords, values, 1);
    zstr_free (&options);
    if (!conn || PQstatus (conn) != CONNECTION_OK) {
        zsys_error ("%s - cannot connect: %s", application,
                    conn ? proto_pg_error (conn, NULL) : "out of memory");
        PQfinish (conn);
        return NULL;
    }
    PGresult *result = PQexec (conn, "SET TIME ZONE 'UTC'");
    bool zoned = PQresultStatus (result) == PGRES_COMMAND_OK;
    PQclear (result);
    if (!zoned) {
        zsys_error ("%s - cannot set the time zone: %s", application, proto_pg_error (conn, NULL));
        PQfinish (conn);
        return NULL;
    }
    return conn;
}

int
proto_pg_ensure (PGconn **conn_p, const char *conninfo, const char *application,
                 int statement_timeout_ms)
{
    assert (conn_p);
    if (*conn_p && PQstatus (*conn_p) == CONNECTION_OK)
        return 0;
    PQfinish (*conn_p);
    *conn_p = proto_pg_connect (conninfo, application, statement_timeout_ms);
    return *conn_p ? 1 : -1;
}

PGresult *
proto_pg_exec (PGconn *conn, const char *who, const char *what, const char *sql, int count,
               const char *const *values)
{
    assert (conn);
    PGresult *result = PQexecParams (conn, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType status = PQresultStatus (result);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) {
        zsys_error ("%s - %s failed: %s", who, what, proto_pg_error (conn, result));
        PQclear (result);
        return NULL;
    }
    return result;
}

const char *
proto_pg_error (PGconn *conn, const PGresult *result)
{
    static __thread char line[512];
    const char *message = result ? PQresultErrorMessage (result) : NULL;
    if ((!message || !*message) && conn)
        message = PQerrorMessage (conn);
    if (!message || !*message)
        message = "unknown error";
    snprintf (line, sizeof line, "%s", message);
    for (char *c = line; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t')
            *c = ' ';
    size_t length = strlen (line);
    while (length > 0 && line[length - 1] == ' ')
        line[--length] = '\0';
    return line;
}

//  --------------------------------------------------------------------------
//  Self test: needs PHANTOM_TEST_DATABASE (deploy/test sets it); without it
//  only the parts that need no server run.

void
proto_pg_test (bool verbose)
{
    (void)verbose;
    printf (" * proto_pg: ");
    //  Nobody listens there: NULL, quickly, not a hang
    int64_t started = zclock_mono ();
    PGconn *conn = NULL;
    assert (proto_pg_ensure (&conn, "host=127.0.0.1 port=1 dbname=x", "proto_pg test", 0) == -1);
    assert (conn == NULL);
    assert (zclock_mono () - started < PROTO_PG_CONNECT_TIMEOUT_S * 1000 + 1000);
    //  Messages become one line
    PGconn *bad = PQconnectdb ("host=127.0.0.1 port=1 dbname=x connect_timeout=1");
    const char *line = proto_pg_error (bad, NULL);
    assert (*line && !strchr (line, '\n') && line[strlen (line) - 1] != ' ');
    PQfinish (bad);

    const char *database = getenv ("PHANTOM_TEST_DATABASE");
    if (!database || !*database) {
        printf ("OK (no PHANTOM_TEST_DATABASE: connected parts skipped)\n");
        return;
    }
    assert (proto_pg_ensure (&conn, database, "proto_pg test", 1500) == 1);
    assert (proto_pg_ensure (&conn, database, "proto_pg test", 1500) == 0);
    //  The session is bounded, named and in UTC
    PGresult *result = proto_pg_exec (conn, "proto_pg test", "settings",
                                      "SELECT current_setting('statement_timeout'),"
                                      " current_setting('application_name'),"
                                      " current_setting('TimeZone')",
                                      0, NULL);
    assert (result);
    assert (streq (PQgetvalue (result, 0, 0), "1500ms"));
    assert (streq (PQgetvalue (result, 0, 1), "proto_pg test"));
    assert (streq (PQgetvalue (result, 0, 2), "UTC"));
    PQclear (result);
    //  Parameters travel as parameters
    const char *values[] = {"41", "'; DROP TABLE x; --"};
    result =
        proto_pg_exec (conn, "proto_pg test", "sum", "SELECT $1::int + 1, length($2)", 2, values);
    assert (result && streq (PQgetvalue (result, 0, 0), "42"));
    assert (atoi (PQgetvalue (result, 0, 1)) == (int)strlen (values[1]));
    PQclear (result);
    //  A statement over the bound is cancelled by the server: NULL, logged
    started = zclock_mono ();
    assert (proto_pg_exec (conn, "proto_pg test", "sleep", "SELECT pg_sleep(5)", 0, NULL) == NULL);
    assert (zclock_mono () - started < 4000);
    //  A failing statement: NULL, one line
    assert (proto_pg_exec (conn, "proto_pg test", "bad", "SELECT nonsense FROM nowhere", 0, NULL) ==
            NULL);
    //  The string's own options are kept beside the bound
    char *with_options = zsys_sprintf ("%s%soptions='-c search_path=pg_catalog'", database,
                                       strchr (database, '=') ? " " : "?");
    PGconn *other = NULL;
    if (strchr (database, '=')) { //  key=value form; a URI is left out
        other = proto_pg_connect (with_options, "proto_pg test", 2000);
        assert (other);
        result = proto_pg_exec (other, "proto_pg test", "path", "SHOW search_path", 0, NULL);
        assert (result && streq (PQgetvalue (result, 0, 0), "pg_catalog"));
        PQclear (result);
        result =
            proto_pg_exec (other, "proto_pg test", "timeout", "SHOW statement_timeout", 0, NULL);
        assert (result && streq (PQgetvalue (result, 0, 0), "2s"));
        PQclear (result);
        PQfinish (other);
    }
    zstr_free (&with_options);
    PQfinish (conn);
    printf ("OK\n");
}
