/*  =========================================================================
    gateway_fixture - what the gateway's tests share: the test database and
    an HTTP client

    The database is PHANTOM_TEST_DATABASE (a migrated database); a test
    without it skips (exit 77, ctest's SKIP). The client speaks raw HTTP/1.1
    to 127.0.0.1, so a test sees exactly what a device or a browser would.
    Tests only: asserts on every failure.
    =========================================================================
*/
#ifndef GATEWAY_FIXTURE_H_INCLUDED
#define GATEWAY_FIXTURE_H_INCLUDED

#include "gateway.h"

#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>

#define GATEWAY_FIXTURE_PORT_FIRST 3111 //  test ports, when :0 is refused
#define GATEWAY_FIXTURE_PORT_LAST 3119

//  PHANTOM_TEST_DATABASE; when it is unset prints skipped (a whole line,
//  "skipped (...)") and exits 77.
const char *gateway_fixture_database (const char *skipped);
//  A connection to conninfo for a test's own queries, bounded and in UTC.
PGconn *gateway_fixture_connect (const char *conninfo);
//  Runs sql with count text parameters and asserts it succeeded; the first
//  cell (NULL when there is no row or it is NULL). Caller frees.
char *gateway_fixture_sql (PGconn *pg, const char *sql, int count, const char *const *values);

//  Starts gateway->http on an ephemeral port (the fixed test ports
//  GATEWAY_FIXTURE_PORT_FIRST..LAST when that is refused) with threads
//  threads, registers the user API, returns the port.
int gateway_fixture_api_start (gateway_t *gateway, const char *threads);

//  A socket connected to 127.0.0.1:port, sends and receives bounded by
//  timeout_s each; for a test that reads an answer as it comes.
int gateway_fixture_socket (int port, int timeout_s);

//  One raw request to 127.0.0.1:port, the reply (complete by
//  Content-Length, or up to close or 5 s) into reply; returns its status.
int gateway_fixture_exchange (int port, const char *request, char *reply, size_t reply_size);

//  A JSON client of the user API: each call is one request with
//  Connection: close, its answer kept until the next.
typedef struct {
    int port;     //  server port
    int status;   //  last answer's status
    char *head;   //  its status line and headers
    json_t *body; //  its JSON body, NULL if none
    bool verbose; //  print every exchange
} gateway_fixture_client_t;

//  Sends method path with extra header lines (each ending \r\n, or NULL)
//  and a JSON body (or NULL); reads the whole answer. Returns its status.
int gateway_fixture_call (gateway_fixture_client_t *client, const char *method, const char *path,
                          const char *headers, const char *body);
//  data.<key> of the last answer.
json_t *gateway_fixture_data (gateway_fixture_client_t *client, const char *key);
//  error.code of the last answer, NULL when none.
const char *gateway_fixture_error_code (gateway_fixture_client_t *client);
//  The field a validation error names, "" when it names none.
const char *gateway_fixture_error_field (gateway_fixture_client_t *client);
//  Frees the last answer.
void gateway_fixture_client_reset (gateway_fixture_client_t *client);

#endif
