/*  =========================================================================
    gateway_http - request/response helpers every handler uses: bodies
    within limits, the JSON envelope, CORS, and civetweb started with the
    gateway's options
    =========================================================================
*/
#ifndef GATEWAY_HTTP_H_INCLUDED
#define GATEWAY_HTTP_H_INCLUDED

#include <civetweb.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define GATEWAY_BODY_MAX (64 * 1024)       //  largest JSON body of any user route
#define GATEWAY_SENSOR_BODY_MAX (4 * 1024) //  largest single-reading body

//  Reads the request body as JSON, at most max bytes. On error it has already
//  answered (400 malformed / 413 too large / 411 no length) and returns NULL.
//  Duplicate keys are rejected; nesting is limited. Caller owns the result.
json_t *gateway_http_read_json (struct mg_connection *conn, size_t max);

//  {"success": true, "message": message, "data": data} with status; steals data
//  (may be NULL). Returns status.
int gateway_http_send_data (struct mg_connection *conn, int status, const char *message,
                            json_t *data);

//  {"success": false, "message": message, "error": {"code": code}} with status.
//  retry_after_s > 0 adds a Retry-After header. Returns status.
int gateway_http_send_error (struct mg_connection *conn, int status, const char *code,
                             const char *message, int retry_after_s);
//  The same, with error.field naming the request field it is about (a form
//  shows the message next to that field).
int gateway_http_send_field_error (struct mg_connection *conn, int status, const char *code,
                                   const char *field, const char *message);

//  Sends status with a body of the given type and extra headers (each line
//  ending \r\n, or NULL). Returns status.
int gateway_http_send (struct mg_connection *conn, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t size);

//  gateway_http_read_json that also says which status it answered (0 if none).
json_t *gateway_http_read_json_status (struct mg_connection *conn, size_t max, int *status);
//  Reads the raw body of at most max bytes, NUL terminated, into *buffer: stack_buffer if it fits
//  (size < stack_size), else malloc'd (the caller frees it unless it is stack_buffer). On error it
//  has answered (411 / 413 / 400 / 500) and returns -1 with that status.
int gateway_http_read_body (struct mg_connection *conn, size_t max, char *stack_buffer,
                            size_t stack_size, char **buffer, size_t *size, int *status);
//  Parses such a body as gateway_http_read_json does (duplicate keys
//  rejected, an object, nesting limited); on error answers 400 and returns
//  NULL with that status.
json_t *gateway_http_parse_json (struct mg_connection *conn, const char *buffer, size_t size,
                                 int *status);

//  Answers 429 rate_limited with Retry-After. Returns 429.
int gateway_http_send_rate_limited (struct mg_connection *conn, int retry_after_s);

//  civetweb with the gateway's options (keep-alive, TCP_NODELAY, 16 KiB
//  headers, no file server, none of civetweb's CORS) on listening ("3000",
//  "127.0.0.1:3000"), with threads workers and a request_timeout_ms bound
//  on reading one request. An idle keep-alive connection is closed after
//  GATEWAY_HTTP_KEEP_ALIVE_MS: until then it holds a worker.
#define GATEWAY_HTTP_REQUEST_TIMEOUT_MS 5000
#define GATEWAY_HTTP_KEEP_ALIVE_MS 5000
struct mg_context *gateway_http_start (const char *listening, int threads, int request_timeout_ms,
                                       void *cbdata);

//  Cross-origin access (config cors_origins): origins is a comma- or
//  space-separated list of origins ("https://app.example.com",
//  "http://localhost:5173"); empty or NULL, the default: none. Only
//  those origins get Access-Control-Allow-Origin (their own, exactly) on
//  answers and preflights (204 with the API's methods and headers; any
//  other origin's preflight gets 403 origin_not_allowed); never
//  credentials. 0, or -1 (logged) for a list with anything that is not an
//  origin ("*", a path, a scheme other than http/https). Process-wide; call
//  before gateway_http_start.
int gateway_http_cors_configure (const char *origins);
//  Adds the CORS headers (Vary: Origin, and for an allowed origin its
//  Access-Control-Allow-Origin) to an answer begun with
//  mg_response_header_start; gateway_http_send adds them by itself.
void gateway_http_cors_headers_add (struct mg_connection *conn);

void gateway_http_test (bool verbose);

#endif
