/*  =========================================================================
    gateway - the HTTP surface of PhantomWatch (civetweb)

    Sensor ingest, the user API, the dashboard, live updates, /metrics and
    /healthz. Readings are authenticated against an in-memory cache, PUSHed
    to the detector partition that owns the port, and answered 201 only when
    the store's ack says they are committed.

    gateway_t, the running service, and the umbrella header of the classes
    every handler uses (each has its own header):
      gateway_http         request/response helpers (JSON envelope, body limits, CORS)
      gateway_http_client  the client's address and scheme through trusted proxies
      gateway_http_rate    abuse limits, a token bucket per key
      gateway_db           a small bounded pool of PostgreSQL connections
      gateway_cache        device-token hashes and port ownership in memory
      gateway_cache_schedule  weekly off schedules, JSON <-> packed windows
    and, included where they are used: gateway_pipeline (PUSH to partitions,
    SUB acks), gateway_api (the user API), gateway_live (/api/stream),
    gateway_web (the dashboard); gateway_sensor serves the sensor routes with gateway_reading (the
    contract), gateway_scanner (the fast reader), gateway_time (ISO-8601)
    and gateway_json (the answer writer).
    =========================================================================
*/
#ifndef GATEWAY_H_INCLUDED
#define GATEWAY_H_INCLUDED

#include <civetweb.h>
#include <czmq.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "proto_address.h"
#include "proto_config.h"
#include "gateway_time.h"

//  The classes every handler uses, one header each: a file that includes
//  gateway.h sees them all (CZMQ's czmq.h is the model).
#include "gateway_cache.h"
#include "gateway_cache_schedule.h"
#include "gateway_db.h"
#include "gateway_http.h"
#include "gateway_http_client.h"
#include "gateway_http_rate.h"

typedef struct _gateway_pipeline_t gateway_pipeline_t;
typedef struct _gateway_live_t gateway_live_t;

//  The running gateway; civetweb handlers get it as their cbdata.
typedef struct {
    proto_config_t *config;          //  shared configuration (borrowed)
    gateway_db_t *db;                //  connection pool for the user API
    gateway_cache_t *cache;          //  tokens and ports, kept fresh by LISTEN
    gateway_pipeline_t *pipeline;    //  PUSH readings / SUB acks
    struct mg_context *http;         //  civetweb server
    bool verbose;                    //  debug logging
    gateway_live_t *live;            //  live updates (/api/stream), NULL = off
    int offline_seconds;             //  detector_offline_seconds: silence after which a
                                     //  port is offline (0: the default)
    int session_idle_seconds;        //  a session unused this long has ended
                                     //  (0: GATEWAY_SESSION_IDLE_SECONDS)
    proto_address_t *webhook_policy; //  addresses a webhook may have (webhook_allow_*)
} gateway_t;

//  Default of config key detector_offline_seconds, as the detector's.
#define GATEWAY_OFFLINE_SECONDS_DEFAULT 300
//  Default of config key session_idle_seconds: two weeks.
#define GATEWAY_SESSION_IDLE_SECONDS (14 * 86400)

//  ---------------------------------------------------------------------------
//  route registration, one per class that serves HTTP

void gateway_sensor_register (gateway_t *self);
void gateway_api_register (gateway_t *self);
//  gateway_emoncms: the Emoncms input API (/input/post, /input/bulk,
//  /input/get) and GET /api/sensor/last.
void gateway_emoncms_register (gateway_t *self);
void gateway_emoncms_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway_sensor: the two sensor routes; what they read is gateway_reading
//  (the contract), gateway_scanner (the fast reader), gateway_time (ISO-8601)
//  and what they write gateway_json, each with its own header.

void gateway_sensor_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway: the service

//  Sets everything up from config and starts serving; NULL on failure.
//  Waits for the cache's first load, giving up when *stop becomes true.
gateway_t *gateway_new (proto_config_t *config, bool verbose, volatile int *stop);
void gateway_destroy (gateway_t **self_p);
void gateway_test (bool verbose);

#endif
