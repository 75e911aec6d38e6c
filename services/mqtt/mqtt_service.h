/*  =========================================================================
    mqtt_service - smart plugs over MQTT into the readings pipeline

    Broker client: connects as phantom-mqtt (MQTT v5, clean start off,
    session expiry 7 days, client id phantom-mqtt-<instance>), subscribes
    QoS 1 to the firmware's reading topics as shared subscriptions
    $share/phantom/... (presence topics unshared, so every instance sees them),
    queues each message's readings in a bounded window (mqtt_window) that a
    submit thread PUSHes in batches (mqtt_batch, in order) to the detector
    partition of each port (gateway_pipeline, bound at mqtt_reading_endpoint
    + instance * partitions) and settles on the store's acks; metrics on
    127.0.0.1:mqtt_metrics_port + instance.
    =========================================================================
*/
#ifndef MQTT_SERVICE_H_INCLUDED
#define MQTT_SERVICE_H_INCLUDED

#include <signal.h>
#include <stdbool.h>

#include "proto_config.h"

typedef struct _mqtt_service_t mqtt_service_t;

#define MQTT_SERVICE_ID_MAX 48 //  longest pw-id kept with a message

//  NULL when PostgreSQL, the pipeline or the metrics port cannot be had
//  (the broker may be down: the service connects when it comes).
mqtt_service_t *mqtt_service_new (proto_config_t *config, int instance, bool verbose);
void mqtt_service_destroy (mqtt_service_t **self_p);

//  Runs the MQTT loop until *stop; reconnects with backoff (1 s .. 30 s).
void mqtt_service_run (mqtt_service_t *self, volatile sig_atomic_t *stop);

//  One message as the broker hands it (pw_id may be NULL); the core of the
//  MQTT callback, public for the selftest. Prepares its readings and
//  queues them in the window (waiting while it is full); the submit thread
//  stores them.
void mqtt_service_message (mqtt_service_t *self, const char *topic, const void *payload,
                           size_t size, const char *pw_id);

//  The same with the broker's receive time (user property pw-t, ms; 0 =
//  none), the reading time of firmware that sends none.
void mqtt_service_message_at (mqtt_service_t *self, const char *topic, const void *payload,
                              size_t size, const char *pw_id, int64_t broker_ms);

//  Messages in the window, not yet settled (stored or given up).
size_t mqtt_service_queued (mqtt_service_t *self);

void mqtt_service_test (bool verbose);

#endif
