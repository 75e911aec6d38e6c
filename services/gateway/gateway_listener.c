/*  =========================================================================
    gateway_listener - a PostgreSQL connection that LISTENs, and its reads
    =========================================================================
*/
#include "gateway_listener.h"
#include "gateway_fixture.h"
#include "proto_pg.h"

#include <assert.h>
#include <czmq.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

PGconn *
gateway_listener_connect (const char *conninfo, const char *application, int statement_timeout_ms,
                          const char *channel, const char *who)
{
    assert (conninfo && application && channel && who);
    PGconn *conn = proto_pg_connect (conninfo, application, statement_timeout_ms);
    if (!conn)
        return NULL; //  (proto_pg_connect logged why)
    //  The channel is ours, never input: an identifier, quoted anyway.
    char *escaped = PQescapeIdentifier (conn, channel, strlen (channel));
    char *sql = escaped ? zsys_sprintf ("LISTEN %s", escaped) : NULL;
    PGresult *result = sql ? PQexec (conn, sql) : NULL;
    bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
    if (!ok)
        zsys_warning ("%s - LISTEN failed: %s", who, proto_pg_error (conn, result));
    PQclear (result);
    zstr_free (&sql);
    PQfreemem (escaped);
    if (!ok) {
        PQfinish (conn);
        return NULL;
    }
    return conn;
}

//  Logs and closes a lost connection; -1.
static int
s_lost (PGconn **conn_p, const char *who)
{
    zsys_warning ("%s - listener lost PostgreSQL: %s", who, proto_pg_error (*conn_p, NULL));
    PQfinish (*conn_p);
    *conn_p = NULL;
    return -1;
}

int
gateway_listener_read (PGconn **conn_p, gateway_listener_fn *fn, void *arg, const char *who)
{
    assert (conn_p && *conn_p && fn && who);
    if (!PQconsumeInput (*conn_p))
        return s_lost (conn_p, who);
    int count = 0;
    PGnotify *notify;
    while ((notify = PQnotifies (*conn_p))) {
        fn (arg, *conn_p, notify->extra);
        PQfreemem (notify);
        count++;
    }
    if (PQstatus (*conn_p) != CONNECTION_OK)
        return s_lost (conn_p, who);
    return count;
}

//  --------------------------------------------------------------------------
//  Self test

typedef struct {
    char payloads[4][32]; //  as handed over, in order
    int count;            //  how many
} s_seen_t;

static void
s_collect (void *arg, PGconn *conn, const char *payload)
{
    s_seen_t *seen = (s_seen_t *)arg;
    assert (conn);
    assert (seen->count < 4);
    snprintf (seen->payloads[seen->count++], sizeof seen->payloads[0], "%s", payload);
}

//  Waits up to 5 s for the listener's socket to become readable.
static void
s_wait_readable (PGconn *conn)
{
    struct pollfd item = {PQsocket (conn), POLLIN, 0};
    assert (poll (&item, 1, 5000) == 1);
}

void
gateway_listener_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_listener: ");
    //  Nobody listens there: NULL, quickly
    assert (gateway_listener_connect ("host=127.0.0.1 port=1 dbname=x", "gateway_listener test", 0,
                                      "phantom_test", "gateway listener test") == NULL);
    const char *conninfo = gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE not set)");
    char channel[64];
    snprintf (channel, sizeof channel, "phantom_listener_test_%d", (int)getpid ());
    PGconn *listener = gateway_listener_connect (conninfo, "gateway_listener test", 2000, channel,
                                                 "gateway listener test");
    assert (listener);
    PGconn *sender = gateway_fixture_connect (conninfo);

    //  Nothing sent: nothing read, still connected
    s_seen_t seen = {{{0}}, 0};
    assert (gateway_listener_read (&listener, s_collect, &seen, "test") == 0 && listener);

    //  Two notifications, in order
    const char *first[] = {channel, "device:1"};
    const char *second[] = {channel, "port:two"};
    free (gateway_fixture_sql (sender, "SELECT pg_notify ($1, $2)", 2, first));
    free (gateway_fixture_sql (sender, "SELECT pg_notify ($1, $2)", 2, second));
    int got = 0;
    for (int round = 0; round < 10 && got < 2; round++) {
        s_wait_readable (listener);
        int rc = gateway_listener_read (&listener, s_collect, &seen, "test");
        assert (rc >= 0);
        got += rc;
    }
    assert (got == 2 && seen.count == 2);
    assert (streq (seen.payloads[0], "device:1") && streq (seen.payloads[1], "port:two"));

    //  Its backend ended: lost, closed, NULL
    char pid[16];
    snprintf (pid, sizeof pid, "%d", PQbackendPID (listener));
    const char *kill[] = {pid};
    free (gateway_fixture_sql (sender, "SELECT pg_terminate_backend ($1::int)::text", 1, kill));
    int rc = 0;
    for (int round = 0; round < 10 && rc >= 0; round++) {
        s_wait_readable (listener);
        rc = gateway_listener_read (&listener, s_collect, &seen, "test");
    }
    assert (rc == -1 && listener == NULL);
    assert (seen.count == 2);
    PQfinish (sender);
    printf ("OK\n");
}
