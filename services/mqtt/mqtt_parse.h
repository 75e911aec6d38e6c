/*  =========================================================================
    mqtt_parse - what a smart plug's firmware publishes, as readings

    Pure functions, no I/O: a topic and its payload in, the plug's MQTT name
    and what the message says out (readings per channel, the plug going
    online or offline, or why it was rejected). The topics and payloads are
    the ones the firmware really sends; mqtt_parse.c cites the sources.
    =========================================================================
*/
#ifndef MQTT_PARSE_H_INCLUDED
#define MQTT_PARSE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  A message is at most this long: the largest real one (Tasmota SENSOR of
//  an 8-channel device, Shelly NotifyStatus) is well under 2 KiB.
#define MQTT_PARSE_PAYLOAD_MAX 16384
//  Channels one message may carry (Tasmota arrays: up to 8 relays).
#define MQTT_PARSE_CHANNELS_MAX 8
#define MQTT_PARSE_NAME_MAX 32
#define MQTT_PARSE_CHANNEL_MAX 32

typedef enum {
    MQTT_PARSE_READINGS = 0, //  readings[0 .. count)
    MQTT_PARSE_ONLINE = 1,   //  LWT / online / status says online
    MQTT_PARSE_OFFLINE = 2,  //  ... says offline
    MQTT_PARSE_IGNORED = 3,  //  a topic we know and do not need (e.g. voltage sensor)
    MQTT_PARSE_REJECTED = 4  //  see reason
} mqtt_parse_kind_t;

//  Why a message was rejected; the metrics label.
typedef enum {
    MQTT_REJECT_NONE = 0,
    MQTT_REJECT_UNKNOWN_TOPIC,
    MQTT_REJECT_BAD_NAME,
    MQTT_REJECT_OVERSIZED,
    MQTT_REJECT_MALFORMED, //  not the JSON / number the firmware sends
    MQTT_REJECT_BAD_VALUE, //  NaN, negative, absurd, wrong type
    MQTT_REJECT_UNKNOWN_DEVICE,
    MQTT_REJECT_PIPELINE, //  readings not acked by the store
    MQTT_REJECT_COUNT
} mqtt_reject_t;

typedef enum {
    MQTT_FIRMWARE_TASMOTA = 0,
    MQTT_FIRMWARE_SHELLY2,
    MQTT_FIRMWARE_SHELLY1,
    MQTT_FIRMWARE_ESPHOME
} mqtt_firmware_t;

typedef struct {
    char channel[MQTT_PARSE_CHANNEL_MAX + 1]; //  "1", "switch:0", "relay/0", sensor name
    double power;                             //  W
    double voltage;                           //  V, 0 when not sent
    double current;                           //  A, 0 when not sent
} mqtt_parse_reading_t;

typedef struct {
    mqtt_parse_kind_t kind;
    mqtt_reject_t reason;               //  when REJECTED
    mqtt_firmware_t firmware;           //  when the topic was recognised
    char name[MQTT_PARSE_NAME_MAX + 1]; //  the plug's MQTT name (devices.mqtt_name)
    size_t count;                       //  readings
    mqtt_parse_reading_t readings[MQTT_PARSE_CHANNELS_MAX];
    int64_t ts_utc_ms; //  device time in UTC, 0 = none
    char ts_local[20]; //  Tasmota "YYYY-MM-DDTHH:MM:SS" local, "" = none
} mqtt_parse_t;

//  Parses one message. Always fills *result; returns its kind.
mqtt_parse_kind_t mqtt_parse_message (const char *topic, const void *payload, size_t size,
                                      mqtt_parse_t *result);

//  A local "YYYY-MM-DDTHH:MM:SS" in IANA zone (""/NULL: UTC) to ms since the
//  epoch; -1 when malformed. Not thread-safe (switches TZ); the service
//  calls it from its one MQTT thread.
int64_t mqtt_parse_local_time (const char *local, const char *zone);

//  The metrics label of a reason.
const char *mqtt_parse_reason_name (mqtt_reject_t reason);

void mqtt_parse_test (bool verbose);

#endif
