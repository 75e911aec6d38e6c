/*  =========================================================================
    load_conn - one keep-alive connection and the request in flight on it

    Builds each request (a single reading or a batch, every reading with
    readingId "<run>-<seq>"), sends it, reads the answer, settles each
    reading's outcome, and retries what may succeed on retry (--retry) with
    backoff and jitter, honouring Retry-After. Driven by its worker's epoll
    loop; never blocks.
    =========================================================================
*/
#ifndef LOAD_CONN_H_INCLUDED
#define LOAD_CONN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _load_worker_t load_worker_t;

typedef enum {
    CONN_IDLE, //  no request; waits for next_us
    CONN_CONNECTING,
    CONN_SENDING,
    CONN_READING,
    CONN_BACKOFF //  --retry: waits for next_us to resend
} load_conn_state_t;

//  Public: the worker allocates its connections as one array and scans
//  their state and times on every turn of its loop.
typedef struct {
    load_worker_t *worker;
    int fd;          //  -1 when not connected
    uint32_t events; //  epoll mask registered for fd
    load_conn_state_t state;
    uint64_t served;     //  responses received on this fd
    int64_t next_us;     //  when to start the next request / retry
    int64_t interval_us; //  pacing per request with -r, else 0

    //  The request in progress
    int64_t first_seq; //  readingIds first_seq .. first_seq+count-1
    size_t count;
    int attempt;         //  0 = first try
    bool raced;          //  already resent once after a keep-alive close
    bool maybe_stored;   //  some attempt reached the server unanswered
    int8_t *outcomes;    //  per reading: last outcome, OUT_NONE if none
    int64_t *ids;        //  per reading: acknowledged id
    int *statuses;       //  scratch for batch answers
    int64_t sent_us;     //  start of this attempt
    int64_t deadline_us; //  this attempt times out here
    int retry_after_s;

    char *out; //  the whole request, resent unchanged on retry
    size_t out_size;
    size_t out_capacity;
    size_t out_sent;
    char *in; //  response bytes received so far
    size_t in_size;
    size_t in_capacity;
} load_conn_t;

//  Starts the next request if one is due; returns false if the run issues no more.
bool load_conn_start (load_conn_t *self, int64_t now);

//  Sends (or resends) the request on the open connection or a new one.
void load_conn_attempt (load_conn_t *self, int64_t now);

//  The attempt failed without an answer (outcome OUT_CONNECT, OUT_TIMEOUT or
//  OUT_OTHER): marks the readings not yet acknowledged, then retries or
//  finishes.
void load_conn_fail (load_conn_t *self, int outcome, int64_t now);

//  The request is over: counts each reading's final outcome and frees the
//  connection for the next one.
void load_conn_finish (load_conn_t *self, int64_t now);

//  Handles one epoll event on the connection.
void load_conn_event (load_conn_t *self, uint32_t events, int64_t now);

//  When the connection next needs the worker: its deadline, its next request
//  or retry, or never (idle once the run stops issuing).
int64_t load_conn_due (load_conn_t *self);

//  Closes the socket, if open.
void load_conn_close (load_conn_t *self);

//  Frees the connection's buffers and closes it; the connection lives in
//  its worker's array, so self is not freed.
void load_conn_destroy (load_conn_t *self);

//  --retry backs off up to this (Retry-After is honoured up to it too).
#define LOAD_CONN_BACKOFF_CAP_US 2000000

void load_conn_test (bool verbose);

#endif
