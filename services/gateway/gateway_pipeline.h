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

//  Tells the detectors that own them that ports are offline as of ts (a
//  plug's will): one proto offline frame per partition (at most
//  PROTO_OFFLINE_MAX ports each), on the sockets readings take, so it
//  follows the readings submitted before it. Nothing acknowledges it and
//  it never waits: a partition without a detector or with a full queue
//  does not get it (its offline timer still runs). Returns the ports sent.
size_t gateway_pipeline_offline (gateway_pipeline_t *self, const char (*ports)[PROTO_UUID_LEN + 1],
                                 size_t count, int64_t ts);

//  Readiness: detectors connected to partition i, and the ack link.
int gateway_pipeline_peers (gateway_pipeline_t *self, int partition);
int gateway_pipeline_partitions (gateway_pipeline_t *self);
bool gateway_pipeline_store_connected (gateway_pipeline_t *self);

//  Metrics: counts one sensor response by HTTP status, and appends the
//  Prometheus text of the pipeline's counters to text.
void gateway_pipeline_count_status (gateway_pipeline_t *self, int status);
//  The same for count responses of one status.
void gateway_pipeline_count_statuses (gateway_pipeline_t *self, int status, unsigned long count);
void gateway_pipeline_metrics (gateway_pipeline_t *self, zchunk_t *text);

void gateway_pipeline_test (bool verbose);

#endif
