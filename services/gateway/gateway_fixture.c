/*  =========================================================================
    gateway_fixture - what the gateway's tests share: the test database and
    an HTTP client
    =========================================================================
*/
#include "gateway_fixture.h"
#include "gateway_api.h"
#include "proto_pg.h"

#include <czmq.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char *
gateway_fixture_database (const char *skipped)
{
    const char *conninfo = getenv ("PHANTOM_TEST_DATABASE");
    if (!conninfo || !*conninfo) {
        printf ("%s\n", skipped);
        exit (77);
    }
    return conninfo;
}

PGconn *
gateway_fixture_connect (const char *conninfo)
{
    PGconn *pg = proto_pg_connect (conninfo, "gateway_selftest", 0);
    assert (pg);
    return pg;
}

char *
gateway_fixture_sql (PGconn *pg, const char *sql, int count, const char *const *values)
{
    PGresult *result = PQexecParams (pg, sql, count, NULL, values, NULL, NULL, 0);
    ExecStatusType state = PQresultStatus (result);
    if (state != PGRES_TUPLES_OK && state != PGRES_COMMAND_OK)
        fprintf (stderr, "\nSQL failed: %s: %s", sql, PQresultErrorMessage (result));
    assert (state == PGRES_TUPLES_OK || state == PGRES_COMMAND_OK);
    char *value = state == PGRES_TUPLES_OK && PQntuples (result) > 0 && !PQgetisnull (result, 0, 0)
                      ? strdup (PQgetvalue (result, 0, 0))
                      : NULL;
    PQclear (result);
    return value;
}

int
gateway_fixture_api_start (gateway_t *gateway, const char *threads)
{
    mg_init_library (0);
    struct mg_callbacks callbacks;
    memset (&callbacks, 0, sizeof callbacks);
    //  An ephemeral port first; our fixed range if civetweb refuses it.
    for (int port = 0; !gateway->http && port <= GATEWAY_FIXTURE_PORT_LAST;
         port = port ? port + 1 : GATEWAY_FIXTURE_PORT_FIRST) {
        char listen[32];
        snprintf (listen, sizeof listen, "127.0.0.1:%d", port);
        const char *options[] = {"listening_ports",    listen,  "num_threads", threads,
                                 "request_timeout_ms", "10000", NULL};
        gateway->http = mg_start (&callbacks, NULL, options);
    }
    assert (gateway->http);
    struct mg_server_port ports[2];
    assert (mg_get_server_ports (gateway->http, 2, ports) >= 1);
    gateway_api_register (gateway);
    return ports[0].port;
}

int
gateway_fixture_socket (int port, int timeout_s)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (fd >= 0);
    struct timeval timeout = {timeout_s, 0};
    setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t)port);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = connect (fd, (struct sockaddr *)&address, sizeof address);
    assert (rc == 0);
    return fd;
}

//  true once reply (got bytes) holds the head and a Content-Length body:
//  a keep-alive answer is complete without the socket closing.
static bool
s_complete (const char *reply, size_t got)
{
    const char *end = strstr (reply, "\r\n\r\n");
    const char *length = strcasestr (reply, "\r\nContent-Length:");
    return end && length && length < end &&
           got >= (size_t)(end + 4 - reply) + (size_t)atol (length + 17);
}

int
gateway_fixture_exchange (int port, const char *request, char *reply, size_t reply_size)
{
    int fd = gateway_fixture_socket (port, 5);
    int rc = (int)send (fd, request, strlen (request), 0);
    assert (rc == (int)strlen (request));
    size_t got = 0;
    while (got < reply_size - 1) {
        ssize_t n = recv (fd, reply + got, reply_size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
        reply[got] = 0;
        if (s_complete (reply, got))
            break;
    }
    reply[got] = 0;
    close (fd);
    int status = 0;
    sscanf (reply, "HTTP/1.%*d %d", &status);
    return status;
}

void
gateway_fixture_client_reset (gateway_fixture_client_t *client)
{
    free (client->head);
    client->head = NULL;
    json_decref (client->body);
    client->body = NULL;
    client->status = 0;
}

int
gateway_fixture_call (gateway_fixture_client_t *client, const char *method, const char *path,
                      const char *headers, const char *body)
{
    gateway_fixture_client_reset (client);
    //  Above the password pool's 5 s wait, so a busy pool shows as 503, not as a hang.
    int fd = gateway_fixture_socket (client->port, 15);
    char *request =
        zsys_sprintf ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n%s\r\n%s",
                      method, path, client->port, body ? strlen (body) : 0, headers ? headers : "",
                      body ? body : "");
    size_t length = strlen (request);
    assert (send (fd, request, length, 0) == (ssize_t)length);
    zstr_free (&request);

    size_t size = 16384, got = 0;
    char *reply = (char *)malloc (size);
    assert (reply);
    while (true) {
        if (got + 1 == size) {
            size *= 2;
            reply = (char *)realloc (reply, size);
            assert (reply);
        }
        ssize_t count = recv (fd, reply + got, size - 1 - got, 0);
        if (count <= 0)
            break;
        got += (size_t)count;
        reply[got] = 0;
        if (s_complete (reply, got))
            break;
    }
    reply[got] = 0;
    close (fd);
    sscanf (reply, "HTTP/1.%*d %d", &client->status);
    char *end = strstr (reply, "\r\n\r\n");
    if (end) {
        client->head = strndup (reply, (size_t)(end - reply));
        client->body = json_loads (end + 4, 0, NULL);
    }
    if (client->verbose)
        printf ("\n%s %s %s -> %s", method, path, body ? body : "", reply);
    free (reply);
    return client->status;
}

json_t *
gateway_fixture_data (gateway_fixture_client_t *client, const char *key)
{
    return json_object_get (json_object_get (client->body, "data"), key);
}

const char *
gateway_fixture_error_code (gateway_fixture_client_t *client)
{
    return json_string_value (json_object_get (json_object_get (client->body, "error"), "code"));
}

const char *
gateway_fixture_error_field (gateway_fixture_client_t *client)
{
    const char *field =
        json_string_value (json_object_get (json_object_get (client->body, "error"), "field"));
    return field ? field : "";
}
