/*  =========================================================================
    mqtt_auth_acl - which topics a plug and the MQTT service may use

    What each firmware subscribes to (so what a plug must be let read):
    - Tasmota: cmnd/<topic>/#, the group topic cmnd/tasmotas/# and the
      fallback cmnd/<client>_fb/# (Tasmota's xdrv_02_9_mqtt.ino,
      MqttConnected: GetTopic_P (stopic, CMND, mqtt_topic, "#"), then
      GetGroupTopic_P and GetFallbackTopic_P, each MqttSubscribe'd). The
      fallback topic is named after the client id, not the device, so it
      is refused: Tasmota ignores a refused SUBSCRIBE and is still
      reachable through cmnd/<topic>/#.
    - Shelly Gen1: shellies/<id>/... commands and the broadcast
      shellies/command (Shelly's Gen1 MQTT API documentation).
    - Shelly Gen2+: <prefix>/rpc and <prefix>/command/... (its MQTT docs).
    - ESPHome: <node>/.../command topics and homeassistant/status for
      discovery (esphome/components/mqtt/mqtt_client.cpp).
    The broadcast topics are readable by every plug because nobody may
    publish to them: a plug writes only its own trees, the service only
    phantom/.
    =========================================================================
*/
#include "mqtt_auth_acl.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

//  First topic levels a device name may not take: a plug named "tele"
//  would own tele/# and could write every Tasmota device's tree.
static const char *s_reserved[] = {"tele",          "stat",    "cmnd",         "shellies",
                                   "homeassistant", "phantom", "phantom-mqtt", NULL};

//  Broadcast topics a plug may subscribe to (exact filters).
static const char *s_broadcast[] = {"cmnd/tasmotas/#", "shellies/command", "homeassistant/status",
                                    NULL};

bool
mqtt_auth_acl_name_valid (const char *name)
{
    if (!name)
        return false;
    size_t length = strlen (name);
    //  migration 017: ^[a-z0-9][a-z0-9-]{2,31}$
    if (length < 3 || length > 32 || name[0] == '-')
        return false;
    for (size_t index = 0; index < length; index++) {
        char c = name[index];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
            return false;
    }
    for (size_t index = 0; s_reserved[index]; index++)
        if (strcmp (name, s_reserved[index]) == 0)
            return false;
    return true;
}

//  true if topic starts with "<before><name>/" (before may be "").
static bool
s_under (const char *topic, const char *before, const char *name)
{
    size_t before_length = strlen (before), name_length = strlen (name);
    return strncmp (topic, before, before_length) == 0 &&
           strncmp (topic + before_length, name, name_length) == 0 &&
           topic[before_length + name_length] == '/';
}

bool
mqtt_auth_acl_device (const char *name, const char *topic, int access)
{
    if (!mqtt_auth_acl_name_valid (name) || !topic)
        return false;
    if (access == MQTT_AUTH_ACL_UNSUBSCRIBE)
        return true;
    //  The name is a literal prefix, so a wildcard can only follow it and
    //  never reaches another device's tree.
    bool own = s_under (topic, "tele/", name) || s_under (topic, "stat/", name) ||
               s_under (topic, "", name) || s_under (topic, "shellies/", name);
    if (access == MQTT_AUTH_ACL_WRITE)
        return own;
    if (own || s_under (topic, "cmnd/", name))
        return true;
    for (size_t index = 0; s_broadcast[index]; index++)
        if (strcmp (topic, s_broadcast[index]) == 0)
            return true;
    //  A delivery of a broadcast topic (READ) is the topic itself, and
    //  cmnd/tasmotas/<anything> for the group filter.
    return access == MQTT_AUTH_ACL_READ && strncmp (topic, "cmnd/tasmotas/", 14) == 0;
}

bool
mqtt_auth_acl_service (const char *topic, int access)
{
    if (!topic)
        return false;
    if (access == MQTT_AUTH_ACL_UNSUBSCRIBE)
        return true;
    if (access == MQTT_AUTH_ACL_WRITE)
        return strncmp (topic, "phantom/", 8) == 0;
    //  $share/<group>/<filter>: judge the filter.
    if (access == MQTT_AUTH_ACL_SUBSCRIBE && strlen (topic) > 7 &&
        strncmp (topic, "$share/", 7) == 0) {
        const char *filter = strchr (topic + 7, '/');
        if (!filter || filter == topic + 7)
            return false;
        topic = filter + 1;
    }
    //  '#' does not match $SYS (MQTT 3.1.1 4.7.2); a filter naming it
    //  is refused: the service has no business with the broker's own.
    return topic[0] != '$';
}

//  --------------------------------------------------------------------------
void
mqtt_auth_acl_test (bool verbose)
{
    (void)verbose;
    printf (" * mqtt_auth_acl: ");
    const int R = MQTT_AUTH_ACL_READ, W = MQTT_AUTH_ACL_WRITE, S = MQTT_AUTH_ACL_SUBSCRIBE;
    assert (mqtt_auth_acl_name_valid ("pw-0123456789"));
    assert (!mqtt_auth_acl_name_valid ("tele") && !mqtt_auth_acl_name_valid ("shellies"));
    assert (!mqtt_auth_acl_name_valid ("ab") && !mqtt_auth_acl_name_valid ("Pw-1"));
    assert (!mqtt_auth_acl_name_valid ("-abc") && !mqtt_auth_acl_name_valid ("a/b#"));
    assert (!mqtt_auth_acl_name_valid (NULL));
    const char *n = "pw-aaaa";
    //  Publishing: own prefixes of each firmware.
    assert (mqtt_auth_acl_device (n, "tele/pw-aaaa/SENSOR", W));
    assert (mqtt_auth_acl_device (n, "stat/pw-aaaa/RESULT", W));
    assert (mqtt_auth_acl_device (n, "pw-aaaa/status/switch:0", W));
    assert (mqtt_auth_acl_device (n, "pw-aaaa/sensor/power/state", W));
    assert (mqtt_auth_acl_device (n, "shellies/pw-aaaa/relay/0/power", W));
    //  ... and nobody else's, nor commands, nor a longer name's tree.
    assert (!mqtt_auth_acl_device (n, "tele/pw-bbbb/SENSOR", W));
    assert (!mqtt_auth_acl_device (n, "tele/pw-aaaab/SENSOR", W));
    assert (!mqtt_auth_acl_device (n, "pw-aaaab/status", W));
    assert (!mqtt_auth_acl_device (n, "cmnd/pw-aaaa/POWER", W));
    assert (!mqtt_auth_acl_device (n, "cmnd/tasmotas/POWER", W));
    assert (!mqtt_auth_acl_device (n, "shellies/command", W));
    assert (!mqtt_auth_acl_device (n, "phantom/x", W));
    assert (!mqtt_auth_acl_device (n, "tele/pw-aaaa", W));
    //  Subscribing: own command topics and broadcasts only.
    assert (mqtt_auth_acl_device (n, "cmnd/pw-aaaa/#", S));
    assert (mqtt_auth_acl_device (n, "cmnd/tasmotas/#", S));
    assert (mqtt_auth_acl_device (n, "pw-aaaa/rpc", S));
    assert (mqtt_auth_acl_device (n, "shellies/pw-aaaa/relay/0/command", S));
    assert (mqtt_auth_acl_device (n, "shellies/command", S));
    assert (mqtt_auth_acl_device (n, "homeassistant/status", S));
    assert (!mqtt_auth_acl_device (n, "#", S));
    assert (!mqtt_auth_acl_device (n, "+/#", S));
    assert (!mqtt_auth_acl_device (n, "tele/+/SENSOR", S));
    assert (!mqtt_auth_acl_device (n, "cmnd/+/#", S));
    assert (!mqtt_auth_acl_device (n, "$SYS/#", S));
    assert (!mqtt_auth_acl_device (n, "$share/g/pw-aaaa/#", S));
    assert (!mqtt_auth_acl_device (n, "cmnd/DVES_123456_fb/#", S));
    assert (!mqtt_auth_acl_device (n, "cmnd/tasmotas/+/x", S));
    //  Reading deliveries.
    assert (mqtt_auth_acl_device (n, "cmnd/tasmotas/POWER", R));
    assert (!mqtt_auth_acl_device (n, "tele/pw-bbbb/SENSOR", R));
    assert (mqtt_auth_acl_device (n, "x", MQTT_AUTH_ACL_UNSUBSCRIBE));
    assert (!mqtt_auth_acl_device ("tele", "tele/pw-bbbb/SENSOR", W));
    //  The service.
    assert (mqtt_auth_acl_service ("tele/+/SENSOR", S));
    assert (mqtt_auth_acl_service ("$share/phantom/tele/+/SENSOR", S));
    assert (mqtt_auth_acl_service ("#", S));
    assert (!mqtt_auth_acl_service ("$SYS/#", S));
    assert (!mqtt_auth_acl_service ("$share/phantom/$SYS/#", S));
    assert (!mqtt_auth_acl_service ("$share//#", S));
    assert (mqtt_auth_acl_service ("tele/pw-aaaa/SENSOR", R));
    assert (!mqtt_auth_acl_service ("tele/pw-aaaa/SENSOR", W));
    assert (!mqtt_auth_acl_service ("pw-aaaa/status", W));
    assert (mqtt_auth_acl_service ("phantom/status", W));
    printf ("OK\n");
}
