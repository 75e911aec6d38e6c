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
#include "proto_address.h"
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
    int offline_seconds;            //  detector_offline_seconds: silence after which a
                                    //  port is offline (0: the default)
    int session_idle_seconds;       //  a session unused this long has ended
                                    //  (0: GATEWAY_SESSION_IDLE_SECONDS)
    proto_address_t *webhook_policy;  //  addresses a webhook may have (webhook_allow_*)
} gateway_t;

//  Default of config key detector_offline_seconds, as the detector's.
#define GATEWAY_OFFLINE_SECONDS_DEFAULT 300
//  Default of config key session_idle_seconds: two weeks.
#define GATEWAY_SESSION_IDLE_SECONDS (14 * 86400)

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
//  The same, with error.field naming the request field it is about (a form
//  shows the message next to that field).
int gateway_http_send_field_error (struct mg_connection *conn, int status, const char *code,
                                   const char *field, const char *message);

//  Sends status with a body of the given type and extra headers (each line
//  ending \r\n, or NULL). Returns status.
int gateway_http_send (struct mg_connection *conn, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t size);

//  Writes ISO-8601 UTC with milliseconds ("2024-01-01T12:00:00.000Z") of ms since epoch.
void gateway_http_iso8601 (int64_t ms, char out [32]);

//  Current time, ms since epoch.
int64_t gateway_http_now_ms (void);

//  gateway_http_read_json that also says which status it answered (0 if none).
json_t *gateway_http_read_json_status (struct mg_connection *conn, size_t max, int *status);
void gateway_http_test (bool verbose);
//  Reads the raw body of at most max bytes, NUL
//  terminated, into *buffer: stack_buffer if it fits (size < stack_size),
//  else malloc'd (the caller frees it unless it is stack_buffer). On error
//  it has answered (411 / 413 / 400 / 500) and returns -1 with that status.
int gateway_http_read_body (struct mg_connection *conn, size_t max, char *stack_buffer,
                            size_t stack_size, char **buffer, size_t *size, int *status);
//  Parses such a body as gateway_http_read_json does (duplicate keys
//  rejected, an object, nesting limited); on error answers 400 and returns
//  NULL with that status.
json_t *gateway_http_parse_json (struct mg_connection *conn, const char *buffer, size_t size,
                                 int *status);

//  Abuse limits: a token bucket per key, a table per kind, so that one
//  kind of failure never spends another's budget. Each counted attempt
//  takes one from its key's bucket of _BURST, which refills _PER_HOUR an
//  hour; while a bucket is empty the attempts it limits are answered 429
//  "rate_limited" with Retry-After. Keys that never count are never
//  limited. Process-wide; bounded memory (4096 entries a kind). An IPv6
//  client counts by its /64, an IPv4 one by its address.
typedef enum {
    GATEWAY_RATE_TOKEN,    //  device tokens that matched nothing, per address; a
                           //  valid token is never looked up here
    GATEWAY_RATE_LOGIN,    //  failed logins, per address
    GATEWAY_RATE_ACCOUNT,  //  failed logins, per account (normalised email), from
                           //  any address: credential stuffing from many
    GATEWAY_RATE_REGISTER, //  registrations (and taken-email answers), per address
    GATEWAY_RATE_KINDS
} gateway_rate_kind_t;
#define GATEWAY_RATE_TOKEN_BURST 20
#define GATEWAY_RATE_TOKEN_PER_HOUR 600
#define GATEWAY_RATE_LOGIN_BURST 20
#define GATEWAY_RATE_LOGIN_PER_HOUR 600
#define GATEWAY_RATE_ACCOUNT_BURST 10
#define GATEWAY_RATE_ACCOUNT_PER_HOUR 12
#define GATEWAY_RATE_REGISTER_BURST 20
#define GATEWAY_RATE_REGISTER_PER_HOUR 20
//  true if key (an address's text; for GATEWAY_RATE_ACCOUNT any text) is
//  limited now; *retry_after_s (may be NULL) then says when the next
//  attempt is allowed. Text that is not an address is never limited.
bool gateway_http_rate_limited (gateway_rate_kind_t kind, const char *key, int *retry_after_s);
//  Counts one attempt against key.
void gateway_http_rate_limit_hit (gateway_rate_kind_t kind, const char *key);
//  Sets kind's limits (values <= 0 keep the current) and forgets its counts.
void gateway_http_rate_limit_configure (gateway_rate_kind_t kind, int burst, int refill_per_hour);
//  Answers 429 rate_limited with Retry-After. Returns 429.
int gateway_http_send_rate_limited (struct mg_connection *conn, int retry_after_s);

//  Reverse proxies whose forwarding header is believed: list is
//  comma-separated addresses and CIDRs ("127.0.0.1, 10.0.0.0/8, ::1"),
//  empty for none; header "X-Forwarded-For" (default, with
//  X-Forwarded-Proto) or "Forwarded" (RFC 7239, for= and proto=). 0, or -1
//  on a malformed entry (logged). Process-wide.
int gateway_http_trusted_proxies_configure (const char *list, const char *header);
//  The client's address as text: civetweb's remote_addr, or when that is
//  a trusted proxy the rightmost hop of the forwarding header that is not
//  one. Valid until this thread's next call (a worker serves one request).
const char *gateway_http_client_ip (struct mg_connection *conn);
//  The same from a peer address and a forwarding header's joined lines
//  (NULL: none), into out. For tests.
void gateway_http_forwarded_client (const char *peer, const char *forwarded, char *out,
                                    size_t out_size);
//  true when the client reached us over https: civetweb's own TLS, or a
//  trusted proxy that says so (X-Forwarded-Proto: https, or proto=https in
//  its Forwarded element).
bool gateway_http_is_https (struct mg_connection *conn);

//  civetweb with the gateway's options (keep-alive, TCP_NODELAY, 16 KiB
//  headers, no file server, none of civetweb's CORS) on listening ("3000",
//  "127.0.0.1:3000"), with threads workers and a request_timeout_ms bound
//  on reading one request. An idle keep-alive connection is closed after
//  GATEWAY_HTTP_KEEP_ALIVE_MS: until then it holds a worker.
#define GATEWAY_HTTP_THREADS 128
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

//  ---------------------------------------------------------------------------
//  gateway_db: bounded pool; acquire waits at most timeout_ms, NULL if none.

//  Defaults of config keys api_statement_timeout_ms (the longest statement
//  of the user API) and api_connections_per_user (its pool's share of one
//  signed-in user).
#define GATEWAY_API_STATEMENT_TIMEOUT_MS 5000
#define GATEWAY_API_USER_CONNECTIONS 3

gateway_db_t *gateway_db_new (const char *conninfo, int size);
void gateway_db_destroy (gateway_db_t **self_p);
//  Before the first acquire: every statement on the pool's connections
//  ends after statement_timeout_ms (0: no limit; PostgreSQL cancels it,
//  SQLSTATE 57014), and one owner holds at most share connections at once
//  (1 to size; the default is size, no limit).
void gateway_db_set_limits (gateway_db_t *self, int statement_timeout_ms, int share);
PGconn *gateway_db_acquire (gateway_db_t *self, int timeout_ms);
//  acquire for owner (> 0; 0 is nobody's, as acquire): waits at most
//  timeout_ms for a free connection and for a place in owner's share. NULL
//  with *over_share (may be NULL) true when it was the share that stayed
//  full: owner's own requests hold it.
PGconn *gateway_db_acquire_for (gateway_db_t *self, int64_t owner, int timeout_ms,
                                bool *over_share);
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
//  Entries the cache holds, for /metrics; whether the first load succeeded.
size_t gateway_cache_devices (gateway_cache_t *self);
size_t gateway_cache_ports (gateway_cache_t *self);
bool gateway_cache_loaded (gateway_cache_t *self);
//  Puts entries in directly (tests without PostgreSQL). expires_ms 0 = never.
void gateway_cache_put_device (gateway_cache_t *self, const uint8_t token_hash[32],
                               int64_t device_id, int64_t user_id, int64_t expires_ms);
void gateway_cache_put_port (gateway_cache_t *self, const char *port, const gateway_port_t *entry);
//  Packs a schedule of weekly windows, null or an array of 1 to max
//  {"days": ["mon", ...], "from": "HH:MM", "to": "HH:MM"} (days unique,
//  at least one; from != to), into windows [max] (PROTO_WINDOW_PACK; null:
//  all 0). 0, or -1 with *message set to a sentence for the owner. The
//  API validates offSchedule with it; the cache packs what was stored.
int gateway_cache_schedule_pack (const json_t *schedule, size_t max, uint32_t *windows,
                                 const char **message);
//  The schedule of packed windows as the API writes it (days in week
//  order; a window to midnight ends at "00:00"); null when none is used.
json_t *gateway_cache_schedule_json (const uint32_t *windows, size_t max);
//  Writes the in-memory stamps of token use to devices.token_last_used_at
//  now (the listener does it every 60 s by itself, and destroy once more).
void gateway_cache_flush_used (gateway_cache_t *self);
void gateway_cache_test (bool verbose);
void gateway_db_test (bool verbose);

//  ---------------------------------------------------------------------------
//  route registration, one per class that serves HTTP

void gateway_sensor_register (gateway_t *self);
void gateway_api_register (gateway_t *self);
//  gateway_emoncms: the Emoncms input API (/input/post, /input/bulk,
//  /input/get) and GET /api/sensor/last.
void gateway_emoncms_register (gateway_t *self);
void gateway_emoncms_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway_api

//  Self test; runs against PHANTOM_TEST_DATABASE (a migrated database), skips without it.
void gateway_api_test (bool verbose);


//  ---------------------------------------------------------------------------
//  gateway_sensor: parsing a reading, free of HTTP so it can be tested alone

typedef struct {
    char port[PROTO_UUID_LEN + 1]; //  canonical lower-case uuid, "" if malformed
    double voltage;
    double current;
    double power;
    bool voltage_integer; //  sent as a JSON integer: echoed as one
    bool current_integer;
    bool power_integer;
    bool has_ts;                 //  the device sent a timestamp
    int64_t ts;                  //  ms since epoch
    char key[PROTO_KEY_MAX + 1]; //  readingId, "" if none
} gateway_sensor_input_t;

//  Parses one reading object (portId, voltage, current, power, timestamp?,
//  readingId?). Returns 0, or the HTTP status (400) with code and message
//  set to static strings.
int gateway_sensor_parse_reading (json_t *object, int64_t now_ms, gateway_sensor_input_t *out,
                                  const char **code, const char **message);
//  Parses a single-reading body: the above plus deviceToken (borrowed from body).
int gateway_sensor_parse (json_t *body, int64_t now_ms, const char **token,
                          gateway_sensor_input_t *out, const char **code, const char **message);
//  ISO-8601 text to ms since epoch; 0 or -1.
int gateway_sensor_parse_time (const char *text, int64_t *ms);
void gateway_sensor_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway: the service

//  Sets everything up from config and starts serving; NULL on failure.
//  Waits for the cache's first load, giving up when *stop becomes true.
gateway_t *gateway_new (proto_config_t *config, bool verbose, volatile int *stop);
void gateway_destroy (gateway_t **self_p);
void gateway_test (bool verbose);

#endif
