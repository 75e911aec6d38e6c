/*  =========================================================================
    gateway - the HTTP surface of PhantomWatch (civetweb)

    Sensor ingest, the user API, the dashboard, live updates, /metrics and
    /healthz. Readings are authenticated against an in-memory cache, PUSHed
    to the detector partition that owns the port, and answered 201 only when
    the store's ack says they are committed.

    Internal header shared by the gateway's classes:
      gateway_http      request/response helpers (JSON envelope, body limits)
      gateway_db        a small bounded pool of PostgreSQL connections
      gateway_cache     device-token hashes and port ownership in memory
      gateway_pipeline  PUSH to partitions, SUB acks, waiting for one ack
      gateway_sensor    POST /api/sensor/reading and /readings
      gateway_api       /api/auth, /api/devices, /api/ports, /api/notifications ...
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
#include "proto_config.h"

typedef struct _gateway_db_t gateway_db_t;
typedef struct _gateway_cache_t gateway_cache_t;
typedef struct _gateway_pipeline_t gateway_pipeline_t;
typedef struct _gateway_live_t gateway_live_t;

//  The running gateway; civetweb handlers get it as their cbdata.
typedef struct {
    proto_config_t *config;         //  shared configuration (borrowed)
    gateway_db_t *db;               //  connection pool for the user API
    gateway_cache_t *cache;         //  tokens and ports, kept fresh by LISTEN
    gateway_pipeline_t *pipeline;   //  PUSH readings / SUB acks
    struct mg_context *http;        //  civetweb server
    bool verbose;                   //  debug logging
    gateway_live_t *live;           //  live updates (/api/stream), NULL = off
} gateway_t;

//  ---------------------------------------------------------------------------
//  gateway_http: helpers every handler uses

#define GATEWAY_BODY_MAX (64 * 1024)        //  largest JSON body of any user route
#define GATEWAY_SENSOR_BODY_MAX (4 * 1024)  //  largest single-reading body

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

//  Sends status with a body of the given type and extra headers (each line
//  ending \r\n, or NULL). Returns status.
int gateway_http_send (struct mg_connection *conn, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t size);

//  Writes ISO-8601 UTC with milliseconds ("2024-01-01T12:00:00.000Z") of ms since epoch.
void gateway_http_iso8601 (int64_t ms, char out [32]);

//  Current time, ms since epoch.
int64_t gateway_http_now_ms (void);

//  ---------------------------------------------------------------------------
//  gateway_db: bounded pool; acquire waits at most timeout_ms, NULL if none.

gateway_db_t *gateway_db_new (const char *conninfo, int size);
void gateway_db_destroy (gateway_db_t **self_p);
PGconn *gateway_db_acquire (gateway_db_t *self, int timeout_ms);
void gateway_db_release (gateway_db_t *self, PGconn *conn);

//  ---------------------------------------------------------------------------
//  gateway_cache: what the hot path needs, no SQL per reading.

typedef struct {
    int64_t id;                     //  device id
    int64_t user;                   //  owner
} gateway_device_t;

typedef struct {
    int64_t user;                   //  owner
    int64_t device;                 //  device it was created on
    proto_settings_t settings;      //  detection settings with the owner's time zone
} gateway_port_t;

gateway_cache_t *gateway_cache_new (const char *conninfo);
void gateway_cache_destroy (gateway_cache_t **self_p);
//  Loads everything; 0 or -1.
int gateway_cache_load (gateway_cache_t *self);
//  Looks a device token up by its SHA-256 (current, or previous within its
//  grace window, not expired). Constant-time compare. true if found.
bool gateway_cache_device (gateway_cache_t *self, const uint8_t token_hash [32],
                           gateway_device_t *device);
//  Looks a port up by uuid text. true if found.
bool gateway_cache_port (gateway_cache_t *self, const char *port, gateway_port_t *out);
//  Re-reads one entry from PostgreSQL now (the API calls these after it
//  commits a change, so the next reading sees it without waiting for NOTIFY).
void gateway_cache_refresh_device (gateway_cache_t *self, int64_t device_id);
void gateway_cache_refresh_port (gateway_cache_t *self, const char *port);
void gateway_cache_refresh_user (gateway_cache_t *self, int64_t user_id);

//  ---------------------------------------------------------------------------
//  route registration, one per class that serves HTTP

void gateway_sensor_register (gateway_t *self);
void gateway_api_register (gateway_t *self);

//  ---------------------------------------------------------------------------
//  gateway_api

//  Self test; runs against PHANTOM_TEST_DATABASE (a migrated database), skips without it.
void gateway_api_test (bool verbose);

#endif
