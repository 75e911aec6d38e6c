/*  =========================================================================
    mqtt_auth_table - each device's MQTT name and token hashes, in memory

    What the gateway's cache keeps per device, keyed by mqtt_name: its
    token hashes (proto_device_token). A password is accepted exactly when
    the gateway would accept it as that device's token, by the same rule.
    Not thread-safe: the plugin holds its lock around every call.
    =========================================================================
*/
#ifndef MQTT_AUTH_TABLE_H_INCLUDED
#define MQTT_AUTH_TABLE_H_INCLUDED

#include "proto_device_token.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    int64_t id;                 //  devices.id
    char name[33];              //  devices.mqtt_name
    proto_device_token_t token; //  its token hashes and their expiries
} mqtt_auth_device_t;

typedef struct _mqtt_auth_table_t mqtt_auth_table_t;

mqtt_auth_table_t *mqtt_auth_table_new (void);
void mqtt_auth_table_destroy (mqtt_auth_table_t **self_p);

//  Inserts or replaces the device with device->id (its name may change).
void mqtt_auth_table_put (mqtt_auth_table_t *self, const mqtt_auth_device_t *device);

//  Forgets device id (deleted, or no token left).
void mqtt_auth_table_remove (mqtt_auth_table_t *self, int64_t id);

//  Forgets every device (before a full reload).
void mqtt_auth_table_purge (mqtt_auth_table_t *self);

//  true if hash is the SHA-256 of a token device `name` may use at now_ms
//  (proto_device_token_matches).
bool mqtt_auth_table_check (mqtt_auth_table_t *self, const char *name, const uint8_t hash[32],
                            int64_t now_ms);

size_t mqtt_auth_table_size (mqtt_auth_table_t *self);

void mqtt_auth_table_test (bool verbose);

#endif
