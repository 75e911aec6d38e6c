/*  =========================================================================
    load_http - HTTP/1.1 responses as the load generator reads them

    The status line, the headers it needs (Content-Length, Connection,
    Transfer-Encoding, Retry-After) and a Content-Length body, or, with
    Connection: close and no length, a body that runs to EOF. Also the
    outcome each reading ends in, derived from its answer's status.
    =========================================================================
*/
#ifndef LOAD_HTTP_H_INCLUDED
#define LOAD_HTTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define LOAD_HTTP_HEADER_MAX (64 * 1024) //  a response header larger than this is malformed
#define LOAD_HTTP_RESPONSE_MAX (16 * 1024 * 1024)

//  Final outcome of one reading; each reading ends in exactly one bucket.
enum {
    OUT_201,
    OUT_400,
    OUT_401,
    OUT_404,
    OUT_413,
    OUT_429,
    OUT_503,
    OUT_504,
    OUT_OTHER,
    OUT_CONNECT,
    OUT_TIMEOUT,
    OUT_COUNT,
    OUT_NONE = -1
};

typedef struct {
    int status;         //  HTTP status code
    size_t size;        //  bytes of the whole response
    size_t body_offset; //  where the body starts
    size_t body_size;   //  bytes of body
    bool close;         //  the server will close after it
    int retry_after_s;  //  Retry-After in seconds, 0 if absent
} load_http_response_t;

//  Parses one response from the start of data. Returns 1 when complete (fills
//  response), 0 when more bytes are needed, -2 when malformed or unsupported
//  (chunked). eof says the peer closed, which ends a body without a length.
int load_http_parse (const char *data, size_t size, bool eof, load_http_response_t *response);

//  The outcome a reading answered with this status ends in.
int load_http_outcome (int status);

//  True for outcomes after which the reading may still reach the database
//  (the request left us but no definite answer came back), which --retry
//  retries.
bool load_http_outcome_transient (int outcome);

//  The outcome's name in the "readings by outcome" line.
const char *load_http_outcome_name (int outcome);

void load_http_test (bool verbose);

#endif
