/*  =========================================================================
    gateway_port_table - port uuid -> the cache's port entry, 64 bytes each
    =========================================================================
*/
#ifndef GATEWAY_PORT_TABLE_H_INCLUDED
#define GATEWAY_PORT_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

//  One port, 64 bytes.
typedef struct {
    uint8_t uuid[16]; //  port id
    int64_t user;     //  owner
    int64_t device;   //  device it was created on
    float off_watts;  //  settings, as in proto_settings_t
    float standby_watts;
    int32_t min_phantom_seconds;
    uint32_t windows[PROTO_WINDOWS_MAX];
    uint16_t zone; //  index into the zone names
    uint8_t role;
} gateway_port_entry_t;

typedef struct _gateway_port_table_t gateway_port_table_t;

gateway_port_table_t *gateway_port_table_new (void);
void gateway_port_table_destroy (gateway_port_table_t **self_p);
//  The entry of uuid, NULL if none; valid until the next put or remove.
gateway_port_entry_t *gateway_port_table_find (gateway_port_table_t *self, const uint8_t uuid[16]);
//  Inserts or replaces the port with port->uuid.
void gateway_port_table_put (gateway_port_table_t *self, const gateway_port_entry_t *port);
void gateway_port_table_remove (gateway_port_table_t *self, const uint8_t uuid[16]);
//  Entries it holds.
size_t gateway_port_table_size (const gateway_port_table_t *self);
//  Canonical uuid text (any case) to 16 bytes; false if it is not one.
bool gateway_port_table_uuid_parse (const char *text, uint8_t uuid[16]);
void gateway_port_table_test (bool verbose);

#endif
