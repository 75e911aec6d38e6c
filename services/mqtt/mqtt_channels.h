/*  =========================================================================
    mqtt_channels - which port a plug's channel feeds (mqtt_channels table)

    A plug is found by devices.mqtt_name (the topic's name part); each of its
    channels maps to one port through mqtt_channels (migration 017): a row
    the dashboard wrote (mapped by hand), or one created here on first
    sight, with a new port of the device's owner named after the device and
    channel, is_new = true. Lookups are cached for a minute, unknown devices
    too (so a plug publishing under a deleted name costs no query per
    message); a mapping changed in the dashboard reaches the cache at once
    through NOTIFY MQTT_CHANNELS_NOTIFY (the TTL is the bound only while
    that listener is down).
    =========================================================================
*/
#ifndef MQTT_CHANNELS_H_INCLUDED
#define MQTT_CHANNELS_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

//  The NOTIFY channel the gateway signals a changed mapping on; payload
//  "<mqtt name>\t<channel>".
#define MQTT_CHANNELS_NOTIFY "phantom_mqtt_channels"

typedef struct _mqtt_channels_t mqtt_channels_t;

typedef struct {
    int64_t device;                //  devices.id
    int64_t user;                  //  owner
    char port[PROTO_UUID_LEN + 1]; //  port uuid
} mqtt_channel_t;

typedef enum {
    MQTT_CHANNELS_FOUND = 0,   //  an existing mapping
    MQTT_CHANNELS_CREATED = 1, //  created now: a new port
    MQTT_CHANNELS_UNKNOWN = 2, //  no device of that name
    MQTT_CHANNELS_ERROR = -1   //  PostgreSQL unreachable or failed
} mqtt_channels_result_t;

//  conninfo: libpq string. Connects lazily, bounded (proto_pg).
mqtt_channels_t *mqtt_channels_new (const char *conninfo);
void mqtt_channels_destroy (mqtt_channels_t **self_p);

//  The port of (plug name, channel); creates it on first sight.
mqtt_channels_result_t mqtt_channels_lookup (mqtt_channels_t *self, const char *name,
                                             const char *channel, mqtt_channel_t *out);
//  Ports of a plug that it reported before (for offline): up to max uuids
//  into ports; their number, or -1.
int mqtt_channels_ports (mqtt_channels_t *self, const char *name, char (*ports)[PROTO_UUID_LEN + 1],
                         int max);
//  Forgets a cached mapping (its port was deleted).
void mqtt_channels_forget (mqtt_channels_t *self, const char *name, const char *channel);

void mqtt_channels_test (bool verbose);

#endif
