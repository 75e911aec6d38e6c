/*  =========================================================================
    mqtt_offline - a plug's will takes its ports offline for detection

    A will (Tasmota tele/<t>/LWT Offline, Shelly online false, ESPHome
    status offline) is no reading: nothing is stored and no 0 W is made
    up. Instead the detectors that own the plug's ports (those its channels
    map to) get a proto offline frame "these ports are offline now, as of
    the will's receipt", on the readings' links, and move each port to
    offline exactly as their offline timer would (same verdict, same
    events, so the same notification). Online says nothing: the next
    reading brings a port back.
    =========================================================================
*/
#ifndef MQTT_OFFLINE_H_INCLUDED
#define MQTT_OFFLINE_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "gateway_pipeline.h"
#include "mqtt_channels.h"
#include "mqtt_metrics.h"

typedef struct _mqtt_offline_t mqtt_offline_t;

//  Borrows channels (called from the thread that uses it), pipeline and
//  counters; they outlive self.
mqtt_offline_t *mqtt_offline_new (mqtt_channels_t *channels, gateway_pipeline_t *pipeline,
                                  mqtt_counters_t *counters);
void mqtt_offline_destroy (mqtt_offline_t **self_p);

//  The will of plug name arrived at received (ms since epoch, the clock
//  readings' received time uses): tells the detectors its ports. Returns
//  the ports told, or -1 when its ports could not be read (PostgreSQL).
int mqtt_offline_plug (mqtt_offline_t *self, const char *name, int64_t received);

void mqtt_offline_test (bool verbose);

#endif
