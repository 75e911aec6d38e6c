/*  =========================================================================
    gateway_pipeline - readings out to the detector partitions, acks back

    PUSH partition i binds at reading endpoint port + i; the SUB connects to
    the store's ack endpoint, topic ack.<gateway id>. Handlers submit readings
    and wait, bounded, for the store's durable ack of each.

    Also: the gateway's core additions to gateway.h (lifecycle, metrics,
    sensor parsing, self tests), kept here so gateway.h stays the contract
    that gateway_api.c is written against.
    =========================================================================
*/
#ifndef GATEWAY_PIPELINE_H_INCLUDED
#define GATEWAY_PIPELINE_H_INCLUDED

#include "gateway.h"

typedef struct {
    const char *gateway_id;       //  acks come back on ack.<gateway_id>
    const char *reading_endpoint; //  partition i binds at its port + i
    const char *ack_endpoint;     //  the store's ack PUB
    int partitions;               //  detector partitions
    int ack_timeout_ms;           //  longest wait for an ack
    int sndhwm;                   //  per partition; 0 = default 10000
} gateway_pipeline_options_t;

//  What happened to one submitted reading.
typedef enum {
    GATEWAY_PIPELINE_ACKED = 0,  //  the store answered; see the ack's code
    GATEWAY_PIPELINE_FULL = 1,   //  not sent: queue full or no detector (503)
    GATEWAY_PIPELINE_TIMEOUT = 2 //  sent, no ack in time (504)
} gateway_pipeline_outcome_t;

gateway_pipeline_t *gateway_pipeline_new (const gateway_pipeline_options_t *options);
void gateway_pipeline_destroy (gateway_pipeline_t **self_p);

//  Submits count readings (request and gateway fields are filled in here)
//  and waits for all their acks with one deadline of ack_timeout_ms.
//  outcomes[i] says what happened; acks[i] is set when ACKED.
//  Returns the number acked.
size_t gateway_pipeline_submit (gateway_pipeline_t *self, proto_reading_t *readings, size_t count,
                                proto_ack_t *acks, int *outcomes);

//  Readiness: detectors connected to partition i, and the ack link.
int gateway_pipeline_peers (gateway_pipeline_t *self, int partition);
int gateway_pipeline_partitions (gateway_pipeline_t *self);
bool gateway_pipeline_store_connected (gateway_pipeline_t *self);

//  Metrics: counts one sensor response by HTTP status, and appends the
//  Prometheus text of the pipeline's counters to text.
void gateway_pipeline_count_status (gateway_pipeline_t *self, int status);
void gateway_pipeline_metrics (gateway_pipeline_t *self, zchunk_t *text);

void gateway_pipeline_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway_http additions

//  gateway_http_read_json that also says which status it answered (0 if none).
json_t *gateway_http_read_json_status (struct mg_connection *conn, size_t max, int *status);
void gateway_http_test (bool verbose);

//  ---------------------------------------------------------------------------
//  gateway_cache additions

//  Entries the cache holds, for /metrics; whether the first load succeeded.
size_t gateway_cache_devices (gateway_cache_t *self);
size_t gateway_cache_ports (gateway_cache_t *self);
bool gateway_cache_loaded (gateway_cache_t *self);
//  Puts entries in directly (tests without PostgreSQL). expires_ms 0 = never.
void gateway_cache_put_device (gateway_cache_t *self, const uint8_t token_hash[32],
                               int64_t device_id, int64_t user_id, int64_t expires_ms);
void gateway_cache_put_port (gateway_cache_t *self, const char *port, const gateway_port_t *entry);
void gateway_cache_test (bool verbose);
void gateway_db_test (bool verbose);

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
