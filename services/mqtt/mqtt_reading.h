/*  =========================================================================
    mqtt_reading - a reading's id and time from an MQTT message

    readingId = mqtt-<pw-id>-<channel>: the broker plugin stamps each
    accepted PUBLISH with the user property pw-id (<broker start ms>-
    <counter>) before it stores or forwards it, so a redelivery carries the
    same id and the store keeps the reading once. Without it (a broker
    without the plugin) the id is a hash of topic, payload and the receive
    second: a redelivery within the same second is still stored once.
    =========================================================================
*/
#ifndef MQTT_READING_H_INCLUDED
#define MQTT_READING_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mqtt_parse.h"

//  The longest pw-id taken as one ("<13 digits>-<20 digits>").
#define MQTT_READING_PWID_MAX 40

//  Writes the readingId of channel into key (size >= PROTO_KEY_MAX + 1).
//  pw_id NULL or not of the form digits-digits: the hash fallback.
//  Returns true when pw_id was used.
bool mqtt_reading_key (const char *pw_id, const char *topic, const void *payload, size_t size,
                       int64_t received_ms, const char *channel, char *key, size_t key_size);

//  The reading time: the device's (Tasmota local Time in zone, Shelly
//  NotifyStatus's unix ts) when it has one within a day of received_ms (a plug whose
//  clock is not yet set reports 1970), else received_ms.
int64_t mqtt_reading_time (const mqtt_parse_t *parsed, const char *zone, int64_t received_ms);

void mqtt_reading_test (bool verbose);

#endif
