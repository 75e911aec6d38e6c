/*  =========================================================================
    gateway_live - live updates for the dashboard (Server-Sent Events)

    One thread SUBscribes to every detector's event PUB (status.*,
    phantom.*) and LISTENs on PostgreSQL channel phantom_notification; the
    sensor path hands it accepted readings. Each event goes to the streams
    of the port's owner only. A stream is a civetweb worker thread blocked in
    gateway_live_serve, with a bounded queue: a slow browser loses its oldest
    events and is told to resync, it never slows the sensor path.

    Events (each "event: <name>\ndata: <json>\n\n"):
      reading       {portId, ts, power, status}
      status        {portId, status, previous, ts}
      phantom       {portId, kind: start|end, ts, watts, episode: {start, end,
                     meanWatts, peakWatts, energyWh, samples}}
      notification  {id, unread}
      resync        {}  (events were dropped; reload what is shown)
    =========================================================================
*/
#ifndef GATEWAY_LIVE_H_INCLUDED
#define GATEWAY_LIVE_H_INCLUDED

#include "gateway.h"

typedef struct _gateway_live_t gateway_live_t;

//  Starts the live thread. Reads from config: event_endpoint, partitions,
//  database, http_threads; stream_max (streams in all, default
//  http_threads / 2, so streams never hold every worker),
//  stream_max_per_user (default 8) and stream_max_per_address (streams
//  from one client address, as gateway_http_client_ip gives it, default
//  16). NULL on a bad config.
gateway_live_t *gateway_live_new (proto_config_t *config);

//  Ends every stream (their handlers return within a moment) and refuses
//  new ones. Call before mg_stop, so mg_stop does not wait on open streams.
void gateway_live_stop (gateway_live_t *self);

//  Stops, waits (bounded) for the streams to leave, ends the thread.
void gateway_live_destroy (gateway_live_t **self_p);

//  Serves GET /api/stream for user on conn until the client goes, the
//  stream falls behind fatally, or the gateway stops. Returns the status:
//  200; 429 too_many_streams when the user or the client address has its
//  most open; 503 when the gateway has (both with Retry-After).
int gateway_live_serve (gateway_live_t *self, struct mg_connection *conn, int64_t user);

//  An accepted reading (after its 201). Cheap and never blocks on I/O:
//  returns at once when the user has no stream open; otherwise formats one
//  event and queues it on the user's streams (bounded, oldest dropped).
//  status is a proto_status_t. self may be NULL.
void gateway_live_reading (gateway_live_t *self, int64_t user, const char *port, int64_t ts,
                           double power, int status);

//  Streams open now (for /metrics).
size_t gateway_live_streams (gateway_live_t *self);

//  Self test; needs PHANTOM_TEST_DATABASE, skips without it.
void gateway_live_test (bool verbose);

#endif
