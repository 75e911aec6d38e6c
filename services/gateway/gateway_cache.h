/*  =========================================================================
    gateway_cache - what the hot path needs in memory, no SQL per reading:
    device-token hashes and port ownership, kept fresh by LISTEN
    =========================================================================
*/
#ifndef GATEWAY_CACHE_H_INCLUDED
#define GATEWAY_CACHE_H_INCLUDED

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"

typedef struct _gateway_cache_t gateway_cache_t;

typedef struct {
    int64_t id;   //  device id
    int64_t user; //  owner
} gateway_device_t;

typedef struct {
    int64_t user;              //  owner
    int64_t device;            //  device it was created on
    proto_settings_t settings; //  detection settings with the owner's time zone
} gateway_port_t;

gateway_cache_t *gateway_cache_new (const char *conninfo);
void gateway_cache_destroy (gateway_cache_t **self_p);
//  Loads everything; 0 or -1.
int gateway_cache_load (gateway_cache_t *self);
//  Looks a device token up by its SHA-256 (current, or previous within its
//  grace window, not expired: proto_device_token). true if found.
bool gateway_cache_device (gateway_cache_t *self, const uint8_t token_hash[32],
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
//  Writes the in-memory stamps of token use to devices.token_last_used_at
//  now (the listener does it every 60 s by itself, and destroy once more).
void gateway_cache_flush_used (gateway_cache_t *self);
void gateway_cache_test (bool verbose);

#endif
