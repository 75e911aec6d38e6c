/*  =========================================================================
    mqtt_metrics - the MQTT service's counters, served as Prometheus text

    Counters are atomics bumped by the MQTT thread; a thread of this class
    answers GET on 127.0.0.1:<mqtt_metrics_port> with their text (and the
    pipeline's, through a callback). Every wait is bounded: accept is
    polled every 200 ms, a request must be in within 1 s.
    =========================================================================
*/
#ifndef MQTT_METRICS_H_INCLUDED
#define MQTT_METRICS_H_INCLUDED

#include <czmq.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "mqtt_parse.h"

typedef struct {
    atomic_ulong messages;                    //  PUBLISHes received
    atomic_ulong ignored;                     //  known topics we do not need
    atomic_ulong rejected[MQTT_REJECT_COUNT]; //  by reason
    atomic_ulong readings_sent;               //  submitted to the pipeline
    atomic_ulong readings_stored;             //  acked OK by the store
    atomic_ulong readings_failed;             //  not acked OK (full, timeout, retry, rejected)
    atomic_ulong retries;                     //  submits repeated (no detector, no ack, RETRY)
    atomic_ulong fallback_ids;                //  messages without the broker's pw-id
    atomic_ulong ports_created;               //  auto-created on first sight
    atomic_ulong ports_told_offline;          //  ports a will told the detectors offline
    atomic_ulong offline_unsent;              //  ... that could not be told (timer's then)
    atomic_ulong ack_lag_us_sum;              //  receive -> store ack, summed
    atomic_ulong ack_lag_count;               //  ... over this many messages
    atomic_ulong ack_lag_us_max;              //  the longest seen
    atomic_long devices_online;               //  plugs whose last LWT/online said online
    atomic_int broker_connected;              //  1 while connected
} mqtt_counters_t;

typedef struct _mqtt_metrics_t mqtt_metrics_t;

//  Appends more text (the pipeline's) to a scrape.
typedef void (mqtt_metrics_append_fn) (void *arg, zchunk_t *text);

//  Listens on 127.0.0.1:port (0: no endpoint, counters only). NULL when
//  the port cannot be bound.
mqtt_metrics_t *mqtt_metrics_new (int port, mqtt_metrics_append_fn *append, void *arg);
void mqtt_metrics_destroy (mqtt_metrics_t **self_p);
//  The counters; live as long as self.
mqtt_counters_t *mqtt_metrics_counters (mqtt_metrics_t *self);
//  The bound port (for a test asking for 0... no: for port as given).
int mqtt_metrics_port (mqtt_metrics_t *self);
//  The Prometheus text of the counters; the caller destroys it.
zchunk_t *mqtt_metrics_text (mqtt_metrics_t *self);

void mqtt_metrics_test (bool verbose);

#endif
