/*  =========================================================================
    mqtt_auth_acl - which topics a plug and the MQTT service may use

    A plug (user = its device's mqtt_name N) publishes only under its own
    prefixes: tele/N/, stat/N/ (Tasmota), N/ (Shelly Gen2+, ESPHome) and
    shellies/N/ (Shelly Gen1), and subscribes only to its own command
    topics (cmnd/N/..., N/..., shellies/N/...) plus the few fixed broadcast
    topics its firmware subscribes to, which nobody may publish to. Never
    '#', '+' across devices, '$SYS' or '$share'. The service user may read
    and subscribe to any device tree and $share/<group>/..., never $SYS,
    and publishes only under phantom/.
    =========================================================================
*/
#ifndef MQTT_AUTH_ACL_H_INCLUDED
#define MQTT_AUTH_ACL_H_INCLUDED

#include <stdbool.h>

//  What a client asks to do; the values of mosquitto's MOSQ_ACL_*.
typedef enum {
    MQTT_AUTH_ACL_READ = 1,
    MQTT_AUTH_ACL_WRITE = 2,
    MQTT_AUTH_ACL_SUBSCRIBE = 4,
    MQTT_AUTH_ACL_UNSUBSCRIBE = 8
} mqtt_auth_acl_access_t;

//  true if a device name can be a broker user: the shape migration 017
//  allows and not a first topic level that other devices' trees use.
bool mqtt_auth_acl_name_valid (const char *name);

//  true if plug `name` may do access on topic (a filter for SUBSCRIBE).
bool mqtt_auth_acl_device (const char *name, const char *topic, int access);

//  true if the MQTT service may do access on topic.
bool mqtt_auth_acl_service (const char *topic, int access);

void mqtt_auth_acl_test (bool verbose);

#endif
