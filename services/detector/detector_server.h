/*  =========================================================================
    detector_server - one detector partition on the wire

    PULL reading frames from every gateway, run them through the
    detector_engine, PUSH a verdict per reading to the store (the verdicts
    of one wakeup in one message), PUB events.
    Single-threaded: the caller drives it with detector_server_poll, so
    main can check its stop flag and tests can run it in-process.
    =========================================================================
*/
#ifndef DETECTOR_SERVER_H_INCLUDED
#define DETECTOR_SERVER_H_INCLUDED

#include "detector_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

//  Frames drained per wakeup before the timer gets its turn: whole
//  messages of up to PROTO_BATCH_MAX frames while they fit.
#define DETECTOR_BATCH_MAX 1024

typedef struct {
    uint64_t frames;           //  frames received
    uint64_t malformed;        //  frames dropped as undecodable
    uint64_t verdicts;         //  verdicts handed to the store socket
    uint64_t verdicts_dropped; //  verdicts the store socket would not take in time
    uint64_t events;           //  events published
    uint64_t offline_frames;   //  offline frames (plugs' wills) received
} detector_server_stats_t;

typedef struct _detector_server_t detector_server_t;

//  reading_endpoints: comma-separated endpoints the PULL connects to (one
//  per gateway, partition offset already applied). verdict_endpoint: the
//  store's PULL. event_endpoint: where the PUB binds (may be
//  tcp://127.0.0.1:*). NULL on a bad endpoint, after logging it.
detector_server_t *detector_server_new (const char *reading_endpoints, const char *verdict_endpoint,
                                        const char *event_endpoint, int64_t offline_after_ms,
                                        bool verbose);
void detector_server_destroy (detector_server_t **self_p);

//  Waits up to timeout_ms for readings, handles up to DETECTOR_BATCH_MAX of
//  them, and runs the once-a-second offline timer. 0, or -1 interrupted.
int detector_server_poll (detector_server_t *self, int timeout_ms);

//  The event endpoint actually bound (resolves a "*" port).
const char *detector_server_event_endpoint (detector_server_t *self);

void detector_server_stats (detector_server_t *self, detector_server_stats_t *stats);
detector_engine_t *detector_server_engine (detector_server_t *self);

//  Applies the partition offset to each endpoint of a comma-separated list.
//  Fresh string for the caller to free; NULL if an endpoint has no port.
char *detector_server_partition_endpoints (const char *list, int partition);

void detector_server_test (bool verbose);

#ifdef __cplusplus
}
#endif

#endif
