/*  =========================================================================
    mqtt_parse - what a smart plug's firmware publishes, as readings

    The formats, from the firmware sources (arendst/Tasmota, ESPHome) and
    Shelly's API documentation (Gen2+ firmware is closed):

    Tasmota (arendst/Tasmota development, by file and function):
      tasmota/tasmota_xdrv_driver/xdrv_03_energy.ino EnergyShow (json)
      appends to tele/<topic>/SENSOR
      ,"ENERGY":{"TotalStartTime":..,"Total":..,"Yesterday":..,"Today":..,
      ["Period":..,]"Power":..,"ApparentPower":..,"ReactivePower":..,
      "Factor":..,"Voltage":..,"Current":..}; every value goes through
      EnergyFormat (..., json), which writes one number, or a JSON array
      "[35,2]" on a device with several channels (Voltage with
      Energy.voltage_common: one number for all). The message starts with
      "Time" from ResponseAppendTime (tasmota/tasmota_support/support.ino:
      ResponseGetTime (Settings->flag2.time_format)), default format 0 =
      GetDateAndTime (DT_LOCAL), "YYYY-MM-DDTHH:MM:SS" in the device's
      local time without offset; other formats fall back to receive time.
      tele/<topic>/LWT carries MQTT_LWT_ONLINE "Online" / MQTT_LWT_OFFLINE
      "Offline" (tasmota/include/tasmota.h defaults, the will set in
      xdrv_02_9_mqtt.ino MqttReconnect).
    Shelly Gen2/Gen3 (closed firmware; shelly-api-docs.shelly.cloud gen2
      ComponentsAndServices/Switch and General/Notifications):
      <prefix>/status/switch:<n> holds the Switch.GetStatus object {"id":0,
      "source":"init","output":true,"apower":8.9,"voltage":237.5,
      "current":0.068,"aenergy":{"total":6.532,"by_minute":[..],
      "minute_ts":1654511972},...}; <prefix>/events/rpc carries {"src":..,
      "dst":..,"method":"NotifyStatus","params":{"ts":1631186545.04,
      "switch:0":{"id":0,"apower":..}}} (partial: only what changed);
      <prefix>/online "true" / "false" (the will).
    Shelly Gen1 (shelly-api-docs.shelly.cloud gen1, MQTT): shellies/<id>/
      relay/<n>/power a bare number of watts; shellies/<id>/online "true" /
      "false".
    ESPHome (esphome/esphome 33fdbbe30c):
      esphome/components/mqtt/mqtt_sensor.cpp:71-73 publish_state publishes
      value_accuracy_to_string (value, accuracy) on get_state_topic_ (), that
      is <prefix>/sensor/<object_id>/state (mqtt_component.cpp:36, suffix
      "state"); esphome/core/helpers.cpp:410-418 formats it with
      snprintf ("%.*f"), so a sensor without a value publishes "nan".
      esphome/components/mqtt/__init__.py:157-172: birth and will on
      <prefix>/status, "online" / "offline", retained.
    =========================================================================
*/
#include "mqtt_parse.h"

#include <czmq.h>
#include <jansson.h>
#include <math.h>
#include <time.h>

//  What a plug can plausibly report; anything else is a broken sensor.
#define POWER_MAX 100000.0
#define VOLTAGE_MAX 1000.0
#define CURRENT_MAX 1000.0

static const char *s_reasons[MQTT_REJECT_COUNT] = {"none",           "unknown_topic", "bad_name",
                                                   "oversized",      "malformed",     "bad_value",
                                                   "unknown_device", "pipeline"};

const char *
mqtt_parse_reason_name (mqtt_reject_t reason)
{
    return reason < MQTT_REJECT_COUNT ? s_reasons[reason] : "other";
}

static mqtt_parse_kind_t
s_reject (mqtt_parse_t *result, mqtt_reject_t reason)
{
    result->kind = MQTT_PARSE_REJECTED;
    result->reason = reason;
    result->count = 0;
    return result->kind;
}

//  devices.mqtt_name's CHECK (migration 017): ^[a-z0-9][a-z0-9-]{2,31}$
static bool
s_name_valid (const char *name, size_t length)
{
    if (length < 3 || length > 32)
        return false;
    for (size_t index = 0; index < length; index++) {
        char c = name[index];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && index > 0);
        if (!ok)
            return false;
    }
    return true;
}

//  Splits topic at '/' into at most max levels (copied into buffer).
static int
s_split (const char *topic, char *buffer, size_t size, char **levels, int max)
{
    size_t length = strlen (topic);
    if (length == 0 || length >= size)
        return -1;
    memcpy (buffer, topic, length + 1);
    int count = 0;
    char *start = buffer;
    while (true) {
        if (count == max)
            return -1;
        levels[count++] = start;
        char *slash = strchr (start, '/');
        if (!slash)
            break;
        *slash = 0;
        start = slash + 1;
    }
    return count;
}

//  A bare number as Shelly Gen1 and ESPHome send it: the whole payload.
static int
s_bare_number (const void *payload, size_t size, double *value)
{
    char text[64];
    if (size == 0 || size >= sizeof text)
        return -1;
    memcpy (text, payload, size);
    text[size] = 0;
    char *end;
    errno = 0;
    *value = strtod (text, &end);
    while (*end == ' ' || *end == '\n' || *end == '\r')
        end++;
    if (end == text || *end || errno == ERANGE)
        return -1;
    return 0;
}

static bool
s_in_range (double value, double max)
{
    return isfinite (value) && value >= 0 && value <= max;
}

static bool
s_payload_is (const void *payload, size_t size, const char *word)
{
    return size == strlen (word) && memcmp (payload, word, size) == 0;
}

//  Online/offline words of each firmware's will and birth message.
static mqtt_parse_kind_t
s_presence (mqtt_parse_t *result, const void *payload, size_t size, const char *online,
            const char *offline)
{
    if (s_payload_is (payload, size, online))
        result->kind = MQTT_PARSE_ONLINE;
    else if (s_payload_is (payload, size, offline))
        result->kind = MQTT_PARSE_OFFLINE;
    else
        return s_reject (result, MQTT_REJECT_MALFORMED);
    return result->kind;
}

//  A JSON number (integer or real) in range, or absent (then *value = 0).
//  -1 when present but not a number in range.
static int
s_json_value (json_t *value, double max, double *out)
{
    *out = 0;
    if (!value)
        return 0;
    if (!json_is_number (value))
        return -1;
    *out = json_number_value (value);
    return s_in_range (*out, max) ? 0 : -1;
}

//  Tasmota: Voltage/Current may be a number for all channels or an array.
static int
s_tasmota_member (json_t *value, size_t index, double max, double *out)
{
    if (json_is_array (value))
        value = json_array_get (value, index);
    return s_json_value (value, max, out);
}

static mqtt_parse_kind_t
s_tasmota_sensor (mqtt_parse_t *result, json_t *root)
{
    json_t *energy = json_object_get (root, "ENERGY");
    if (!energy) //  a SENSOR message of a plug without a meter, or of other sensors
        return result->kind = MQTT_PARSE_IGNORED;
    if (!json_is_object (energy))
        return s_reject (result, MQTT_REJECT_MALFORMED);
    json_t *power = json_object_get (energy, "Power");
    json_t *voltage = json_object_get (energy, "Voltage");
    json_t *current = json_object_get (energy, "Current");
    size_t channels = 1;
    if (json_is_array (power)) {
        channels = json_array_size (power);
        if (channels == 0 || channels > MQTT_PARSE_CHANNELS_MAX)
            return s_reject (result, MQTT_REJECT_BAD_VALUE);
    } else if (!power)
        return s_reject (result, MQTT_REJECT_MALFORMED);
    for (size_t index = 0; index < channels; index++) {
        mqtt_parse_reading_t *reading = &result->readings[index];
        json_t *watts = json_is_array (power) ? json_array_get (power, index) : power;
        if (!watts || s_json_value (watts, POWER_MAX, &reading->power) != 0 ||
            s_tasmota_member (voltage, index, VOLTAGE_MAX, &reading->voltage) != 0 ||
            s_tasmota_member (current, index, CURRENT_MAX, &reading->current) != 0)
            return s_reject (result, MQTT_REJECT_BAD_VALUE);
        snprintf (reading->channel, sizeof reading->channel, "%zu", index + 1);
    }
    result->count = channels;
    json_t *time = json_object_get (root, "Time");
    //  "YYYY-MM-DDTHH:MM:SS"; anything else and the receive time is used.
    if (json_is_string (time) && json_string_length (time) == 19)
        snprintf (result->ts_local, sizeof result->ts_local, "%s", json_string_value (time));
    return result->kind = MQTT_PARSE_READINGS;
}

//  One Shelly Gen2 Switch status object into reading; 1 if it carries
//  apower, 0 if it does not (a partial NotifyStatus), -1 if bad.
static int
s_shelly_switch (json_t *status, const char *component, mqtt_parse_reading_t *reading)
{
    if (!json_is_object (status))
        return -1;
    json_t *apower = json_object_get (status, "apower");
    if (!apower)
        return 0;
    if (s_json_value (apower, POWER_MAX, &reading->power) != 0 ||
        s_json_value (json_object_get (status, "voltage"), VOLTAGE_MAX, &reading->voltage) != 0 ||
        s_json_value (json_object_get (status, "current"), CURRENT_MAX, &reading->current) != 0)
        return -1;
    if (strlen (component) > MQTT_PARSE_CHANNEL_MAX)
        return -1;
    snprintf (reading->channel, sizeof reading->channel, "%s", component);
    return 1;
}

//  A unix time in seconds (real) to ms; 0 when absent or implausible.
static int64_t
s_unix_ms (json_t *value)
{
    if (!json_is_number (value))
        return 0;
    double seconds = json_number_value (value);
    if (!isfinite (seconds) || seconds < 1e9 || seconds > 1e10)
        return 0;
    return (int64_t)llround (seconds * 1000);
}

static bool
s_switch_component (const char *text)
{
    if (strncmp (text, "switch:", 7) != 0 || !text[7] || strlen (text) > 10)
        return false;
    for (const char *digit = text + 7; *digit; digit++)
        if (*digit < '0' || *digit > '9')
            return false;
    return true;
}

static mqtt_parse_kind_t
s_shelly_rpc (mqtt_parse_t *result, json_t *root)
{
    const char *method = json_string_value (json_object_get (root, "method"));
    if (!method)
        return s_reject (result, MQTT_REJECT_MALFORMED);
    if (strcmp (method, "NotifyStatus") != 0 && strcmp (method, "NotifyFullStatus") != 0)
        return result->kind = MQTT_PARSE_IGNORED; //  NotifyEvent and the like
    json_t *params = json_object_get (root, "params");
    if (!json_is_object (params))
        return s_reject (result, MQTT_REJECT_MALFORMED);
    const char *key;
    json_t *value;
    json_object_foreach (params, key, value)
    {
        if (!s_switch_component (key))
            continue;
        if (result->count == MQTT_PARSE_CHANNELS_MAX)
            return s_reject (result, MQTT_REJECT_BAD_VALUE);
        int found = s_shelly_switch (value, key, &result->readings[result->count]);
        if (found < 0)
            return s_reject (result, MQTT_REJECT_BAD_VALUE);
        result->count += (size_t)found;
    }
    if (result->count == 0)
        return result->kind = MQTT_PARSE_IGNORED;
    result->ts_utc_ms = s_unix_ms (json_object_get (params, "ts"));
    return result->kind = MQTT_PARSE_READINGS;
}

static mqtt_parse_kind_t
s_shelly_status (mqtt_parse_t *result, json_t *root, const char *component)
{
    int found = s_shelly_switch (root, component, &result->readings[0]);
    if (found < 0)
        return s_reject (result, MQTT_REJECT_BAD_VALUE);
    if (found == 0) //  a Switch without a meter (Plus 1): nothing to read
        return result->kind = MQTT_PARSE_IGNORED;
    result->count = 1;
    //  No time of its own: aenergy.minute_ts is the start of the minute the
    //  energy counter last rolled, the same for every status of that
    //  minute, and the detector takes a second reading at a port's last ts
    //  for a retry (detector_engine.c, s_answer_stale). Receive time, then.
    return result->kind = MQTT_PARSE_READINGS;
}

static json_t *
s_json (const void *payload, size_t size)
{
    json_error_t error;
    json_t *root = json_loadb ((const char *)payload, size, JSON_REJECT_DUPLICATES, &error);
    if (root && !json_is_object (root)) {
        json_decref (root);
        return NULL;
    }
    return root;
}

//  ESPHome power sensors: any sensor whose object id names power (not
//  power factor, apparent or reactive power). Others (voltage, current,
//  energy, temperature) are ignored: each is a topic of its own.
static bool
s_esphome_power (const char *object)
{
    return strstr (object, "power") && !strstr (object, "factor") && !strstr (object, "apparent") &&
           !strstr (object, "reactive");
}

mqtt_parse_kind_t
mqtt_parse_message (const char *topic, const void *payload, size_t size, mqtt_parse_t *result)
{
    assert (topic && result);
    memset (result, 0, sizeof *result);
    if (size > MQTT_PARSE_PAYLOAD_MAX)
        return s_reject (result, MQTT_REJECT_OVERSIZED);
    if (size && !payload)
        return s_reject (result, MQTT_REJECT_MALFORMED);
    char buffer[256];
    char *level[8];
    int levels = s_split (topic, buffer, sizeof buffer, level, 8);
    if (levels < 2)
        return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);

    //  Which level is the name, by firmware.
    const char *name;
    if ((streq (level[0], "tele") || streq (level[0], "stat")) && levels == 3) {
        result->firmware = MQTT_FIRMWARE_TASMOTA;
        name = level[1];
    } else if (streq (level[0], "shellies") && levels >= 3) {
        result->firmware = MQTT_FIRMWARE_SHELLY1;
        name = level[1];
    } else {
        result->firmware = (levels == 4 || (levels == 2 && streq (level[1], "status")))
                               ? MQTT_FIRMWARE_ESPHOME
                               : MQTT_FIRMWARE_SHELLY2;
        name = level[0];
    }
    if (!s_name_valid (name, strlen (name)))
        return s_reject (result, MQTT_REJECT_BAD_NAME);
    snprintf (result->name, sizeof result->name, "%s", name);

    if (result->firmware == MQTT_FIRMWARE_TASMOTA) {
        if (streq (level[0], "stat"))
            return result->kind = MQTT_PARSE_IGNORED; //  command results
        if (streq (level[2], "LWT"))
            return s_presence (result, payload, size, "Online", "Offline");
        if (streq (level[2], "SENSOR")) {
            json_t *root = s_json (payload, size);
            if (!root)
                return s_reject (result, MQTT_REJECT_MALFORMED);
            s_tasmota_sensor (result, root);
            json_decref (root);
            return result->kind;
        }
        if (streq (level[2], "STATE") || streq (level[2], "INFO1") || streq (level[2], "INFO2") ||
            streq (level[2], "INFO3") || streq (level[2], "RESULT"))
            return result->kind = MQTT_PARSE_IGNORED;
        return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
    }
    if (result->firmware == MQTT_FIRMWARE_SHELLY1) {
        if (levels == 3 && streq (level[2], "online"))
            return s_presence (result, payload, size, "true", "false");
        if (levels == 5 && streq (level[2], "relay") && streq (level[4], "power")) {
            char *end;
            long relay = strtol (level[3], &end, 10);
            if (end == level[3] || *end || relay < 0 || relay > 15)
                return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
            mqtt_parse_reading_t *reading = &result->readings[0];
            if (s_bare_number (payload, size, &reading->power) != 0)
                return s_reject (result, MQTT_REJECT_MALFORMED);
            if (!s_in_range (reading->power, POWER_MAX))
                return s_reject (result, MQTT_REJECT_BAD_VALUE);
            snprintf (reading->channel, sizeof reading->channel, "relay:%ld", relay);
            result->count = 1;
            return result->kind = MQTT_PARSE_READINGS;
        }
        return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
    }
    if (result->firmware == MQTT_FIRMWARE_ESPHOME) {
        if (levels == 2)
            return s_presence (result, payload, size, "online", "offline");
        if (!streq (level[1], "sensor") || !streq (level[3], "state"))
            return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
        const char *object = level[2];
        if (strlen (object) == 0 || strlen (object) > MQTT_PARSE_CHANNEL_MAX)
            return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
        if (!s_esphome_power (object))
            return result->kind = MQTT_PARSE_IGNORED;
        mqtt_parse_reading_t *reading = &result->readings[0];
        if (s_bare_number (payload, size, &reading->power) != 0)
            return s_reject (result, MQTT_REJECT_MALFORMED);
        if (!s_in_range (reading->power, POWER_MAX))
            return s_reject (result, MQTT_REJECT_BAD_VALUE); //  "nan" lands here
        snprintf (reading->channel, sizeof reading->channel, "%s", object);
        result->count = 1;
        return result->kind = MQTT_PARSE_READINGS;
    }
    //  Shelly Gen2+
    if (levels == 2 && streq (level[1], "online"))
        return s_presence (result, payload, size, "true", "false");
    bool status = levels == 3 && streq (level[1], "status");
    bool rpc = levels == 3 && streq (level[1], "events") && streq (level[2], "rpc");
    if (status && !s_switch_component (level[2]))
        return result->kind = MQTT_PARSE_IGNORED; //  sys, wifi, cloud, ...
    if (!status && !rpc)
        return s_reject (result, MQTT_REJECT_UNKNOWN_TOPIC);
    json_t *root = s_json (payload, size);
    if (!root)
        return s_reject (result, MQTT_REJECT_MALFORMED);
    if (status)
        s_shelly_status (result, root, level[2]);
    else
        s_shelly_rpc (result, root);
    json_decref (root);
    return result->kind;
}

int64_t
mqtt_parse_local_time (const char *local, const char *zone)
{
    if (!local)
        return -1;
    struct tm tm = {0};
    char *end = strptime (local, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end || *end)
        return -1;
    tm.tm_isdst = -1;
    char *saved = getenv ("TZ") ? strdup (getenv ("TZ")) : NULL;
    setenv ("TZ", zone && *zone ? zone : "UTC", 1);
    tzset ();
    time_t seconds = mktime (&tm);
    if (saved) {
        setenv ("TZ", saved, 1);
        free (saved);
    } else
        unsetenv ("TZ");
    tzset ();
    if (seconds == (time_t)-1)
        return -1;
    return (int64_t)seconds * 1000;
}

//  --------------------------------------------------------------------------
//  Self test: the firmware's own payloads, then broken ones.

static mqtt_parse_kind_t
s_parse (const char *topic, const char *payload, mqtt_parse_t *result)
{
    return mqtt_parse_message (topic, payload, strlen (payload), result);
}

void
mqtt_parse_test (bool verbose)
{
    printf (" * mqtt_parse: ");
    mqtt_parse_t result;

    //  Tasmota single channel (Sonoff S31 / Gosund SP111: one Power number).
    const char *tasmota =
        "{\"Time\":\"2026-12-07T03:25:00\",\"ENERGY\":{\"TotalStartTime\":\"2026-01-03T10:11:12\","
        "\"Total\":12.345,\"Yesterday\":0.210,\"Today\":0.104,\"Period\":0,\"Power\":12,"
        "\"ApparentPower\":22,\"ReactivePower\":18,\"Factor\":0.55,\"Voltage\":231,"
        "\"Current\":0.095}}";
    assert (s_parse ("tele/pw-0123456789/SENSOR", tasmota, &result) == MQTT_PARSE_READINGS);
    assert (result.firmware == MQTT_FIRMWARE_TASMOTA && streq (result.name, "pw-0123456789"));
    assert (result.count == 1 && streq (result.readings[0].channel, "1"));
    assert (result.readings[0].power == 12 && result.readings[0].voltage == 231);
    assert (result.readings[0].current == 0.095 && streq (result.ts_local, "2026-12-07T03:25:00"));
    //  Tasmota multi-channel (Sonoff Dual R3: arrays, Voltage shared).
    const char *dual = "{\"Time\":\"2026-12-07T03:25:10\",\"ENERGY\":{\"TotalStartTime\":"
                       "\"2026-01-03T10:11:12\",\"Total\":[1.2,0.4],\"Yesterday\":[0.1,0.0],"
                       "\"Today\":[0.05,0.0],\"Power\":[35,0],\"ApparentPower\":[40,0],"
                       "\"ReactivePower\":[19,0],\"Factor\":[0.88,0.00],\"Voltage\":230,"
                       "\"Current\":[0.174,0.000]}}";
    assert (s_parse ("tele/pw-dual000001/SENSOR", dual, &result) == MQTT_PARSE_READINGS);
    assert (result.count == 2 && streq (result.readings[1].channel, "2"));
    assert (result.readings[0].power == 35 && result.readings[1].power == 0);
    assert (result.readings[1].voltage == 230 && result.readings[0].current == 0.174);
    assert (s_parse ("tele/pw-0123456789/LWT", "Online", &result) == MQTT_PARSE_ONLINE);
    assert (s_parse ("tele/pw-0123456789/LWT", "Offline", &result) == MQTT_PARSE_OFFLINE);
    assert (s_parse ("tele/pw-0123456789/STATE", "{\"Time\":\"x\"}", &result) ==
            MQTT_PARSE_IGNORED);
    //  A SENSOR of a plug without a meter (a temperature sensor only).
    assert (s_parse ("tele/pw-0123456789/SENSOR",
                     "{\"Time\":\"2026-12-07T03:25:00\",\"DS18B20\":{\"Temperature\":21.4}}",
                     &result) == MQTT_PARSE_IGNORED);

    //  Shelly Plus Plug S status/switch:0 (Switch.GetStatus object).
    const char *status = "{\"id\":0,\"source\":\"init\",\"output\":true,\"apower\":8.9,"
                         "\"voltage\":237.5,\"freq\":50.0,\"current\":0.068,\"aenergy\":{\"total\":"
                         "6.532,\"by_minute\":[45.199,47.141,88.397],\"minute_ts\":1765078020},"
                         "\"temperature\":{\"tC\":23.5,\"tF\":74.4}}";
    assert (s_parse ("pw-shelly0002/status/switch:0", status, &result) == MQTT_PARSE_READINGS);
    assert (result.firmware == MQTT_FIRMWARE_SHELLY2 && streq (result.name, "pw-shelly0002"));
    assert (streq (result.readings[0].channel, "switch:0") && result.readings[0].power == 8.9);
    assert (result.readings[0].voltage == 237.5 && result.ts_utc_ms == 0);
    const char *notify =
        "{\"src\":\"shellyplusplugs-b0b21c10a9a8\",\"dst\":\"pw-shelly0002/events\","
        "\"method\":\"NotifyStatus\",\"params\":{\"ts\":1765078031.25,\"switch:0\":{\"id\":0,"
        "\"apower\":10.5,\"current\":0.07,\"voltage\":236.9,\"aenergy\":{\"by_minute\":[1,2,3],"
        "\"minute_ts\":1765078020,\"total\":6.6}}}}";
    assert (s_parse ("pw-shelly0002/events/rpc", notify, &result) == MQTT_PARSE_READINGS);
    assert (result.count == 1 && result.readings[0].power == 10.5);
    assert (result.ts_utc_ms == 1765078031250LL);
    //  A partial NotifyStatus without apower (only the temperature changed).
    assert (s_parse ("pw-shelly0002/events/rpc",
                     "{\"src\":\"x\",\"dst\":\"y\",\"method\":\"NotifyStatus\",\"params\":{\"ts\":"
                     "1765078031.25,\"switch:0\":{\"id\":0,\"temperature\":{\"tC\":40.1}}}}",
                     &result) == MQTT_PARSE_IGNORED);
    assert (s_parse ("pw-shelly0002/events/rpc",
                     "{\"src\":\"x\",\"dst\":\"y\",\"method\":\"NotifyEvent\",\"params\":{}}",
                     &result) == MQTT_PARSE_IGNORED);
    assert (s_parse ("pw-shelly0002/online", "false", &result) == MQTT_PARSE_OFFLINE);
    assert (s_parse ("pw-shelly0002/online", "true", &result) == MQTT_PARSE_ONLINE);
    assert (s_parse ("pw-shelly0002/status/sys", "{\"uptime\":3}", &result) == MQTT_PARSE_IGNORED);

    //  Shelly Plug S (Gen1).
    assert (s_parse ("shellies/pw-plug000001/relay/0/power", "41.93", &result) ==
            MQTT_PARSE_READINGS);
    assert (result.firmware == MQTT_FIRMWARE_SHELLY1 && result.readings[0].power == 41.93);
    assert (streq (result.readings[0].channel, "relay:0") && result.ts_utc_ms == 0);
    assert (s_parse ("shellies/pw-plug000001/online", "false", &result) == MQTT_PARSE_OFFLINE);

    //  ESPHome (Athom plug's default config: sensor "power").
    assert (s_parse ("pw-esphome001/sensor/power/state", "5.2", &result) == MQTT_PARSE_READINGS);
    assert (result.firmware == MQTT_FIRMWARE_ESPHOME && result.readings[0].power == 5.2);
    assert (streq (result.readings[0].channel, "power"));
    assert (s_parse ("pw-esphome001/sensor/voltage/state", "231.0", &result) == MQTT_PARSE_IGNORED);
    assert (s_parse ("pw-esphome001/status", "offline", &result) == MQTT_PARSE_OFFLINE);
    assert (s_parse ("pw-esphome001/status", "online", &result) == MQTT_PARSE_ONLINE);

    //  Broken: NaN (ESPHome's "nan"), wrong types, huge, truncated, topics.
    struct {
        const char *topic, *payload;
        mqtt_reject_t reason;
    } bad[] = {
        {"pw-esphome001/sensor/power/state", "nan", MQTT_REJECT_BAD_VALUE},
        {"pw-esphome001/sensor/power/state", "12W", MQTT_REJECT_MALFORMED},
        {"pw-esphome001/sensor/power/state", "", MQTT_REJECT_MALFORMED},
        {"pw-esphome001/sensor/power/state", "1e308", MQTT_REJECT_BAD_VALUE},
        {"pw-esphome001/sensor/power/state", "-3", MQTT_REJECT_BAD_VALUE},
        {"shellies/pw-plug000001/relay/0/power", "inf", MQTT_REJECT_BAD_VALUE},
        {"shellies/pw-plug000001/relay/x/power", "1", MQTT_REJECT_UNKNOWN_TOPIC},
        {"tele/pw-0123456789/SENSOR",
         "{\"Time\":\"2026-12-07T03:25:00\",\"ENERGY\":{\"Power\":", MQTT_REJECT_MALFORMED},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Power\":\"12\"}}", MQTT_REJECT_BAD_VALUE},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Power\":[]}}", MQTT_REJECT_BAD_VALUE},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Power\":1e9}}", MQTT_REJECT_BAD_VALUE},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Power\":[1,null]}}", MQTT_REJECT_BAD_VALUE},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Power\":5,\"Voltage\":true}}",
         MQTT_REJECT_BAD_VALUE},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":{\"Voltage\":230}}", MQTT_REJECT_MALFORMED},
        {"tele/pw-0123456789/SENSOR", "[1,2]", MQTT_REJECT_MALFORMED},
        {"tele/pw-0123456789/SENSOR", "{\"ENERGY\":5}", MQTT_REJECT_MALFORMED},
        {"tele/pw-0123456789/LWT", "offline", MQTT_REJECT_MALFORMED},
        {"tele/pw-0123456789/WHATEVER", "{}", MQTT_REJECT_UNKNOWN_TOPIC},
        {"tele/PW-UPPER/SENSOR", "{}", MQTT_REJECT_BAD_NAME},
        {"tele/-bad/SENSOR", "{}", MQTT_REJECT_BAD_NAME},
        {"pw-shelly0002/status/switch:0", "{\"id\":0,\"apower\":\"8.9\"}", MQTT_REJECT_BAD_VALUE},
        {"pw-shelly0002/status/switch:0", "{\"id\":0,\"apower\":", MQTT_REJECT_MALFORMED},
        {"pw-shelly0002/events/rpc", "{\"method\":\"NotifyStatus\",\"params\":[1]}",
         MQTT_REJECT_MALFORMED},
        {"pw-shelly0002/events/rpc", "{\"params\":{}}", MQTT_REJECT_MALFORMED},
        {"pw-shelly0002/online", "maybe", MQTT_REJECT_MALFORMED},
        {"pw-shelly0002/rpc", "{}", MQTT_REJECT_UNKNOWN_TOPIC},
        {"pw-shelly0002", "{}", MQTT_REJECT_UNKNOWN_TOPIC},
        {"a/b/c/d/e/f/g/h/i", "1", MQTT_REJECT_UNKNOWN_TOPIC},
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        mqtt_parse_kind_t kind = s_parse (bad[index].topic, bad[index].payload, &result);
        if (kind != MQTT_PARSE_REJECTED || result.reason != bad[index].reason) {
            printf ("case %zu (%s %s): kind %d reason %s\n", index, bad[index].topic,
                    bad[index].payload, kind, mqtt_parse_reason_name (result.reason));
            assert (false);
        }
    }
    //  Every truncation and a byte flipped at every place of the firmware's
    //  payloads: never a crash, and a prefix of JSON is never readings.
    const char *samples[][2] = {{"tele/pw-0123456789/SENSOR", tasmota},
                                {"tele/pw-dual000001/SENSOR", dual},
                                {"pw-shelly0002/status/switch:0", status},
                                {"pw-shelly0002/events/rpc", notify}};
    size_t mutations = 0;
    for (size_t sample = 0; sample < 4; sample++) {
        const char *text = samples[sample][1];
        size_t length = strlen (text);
        char *copy = strdup (text);
        assert (copy);
        for (size_t cut = 0; cut < length; cut++, mutations++) {
            mqtt_parse_kind_t kind = mqtt_parse_message (samples[sample][0], text, cut, &result);
            assert (kind == MQTT_PARSE_REJECTED && result.reason == MQTT_REJECT_MALFORMED);
        }
        for (size_t at = 0; at < length; at++, mutations++) {
            copy[at] ^= 0x5a;
            mqtt_parse_kind_t kind = mqtt_parse_message (samples[sample][0], copy, length, &result);
            assert (kind <= MQTT_PARSE_REJECTED && result.count <= MQTT_PARSE_CHANNELS_MAX);
            copy[at] = text[at];
        }
        free (copy);
    }

    //  Oversized: refused before it is parsed at all.
    char *huge = (char *)malloc (MQTT_PARSE_PAYLOAD_MAX + 1);
    assert (huge);
    memset (huge, ' ', MQTT_PARSE_PAYLOAD_MAX + 1);
    assert (mqtt_parse_message ("tele/pw-0123456789/SENSOR", huge, MQTT_PARSE_PAYLOAD_MAX + 1,
                                &result) == MQTT_PARSE_REJECTED);
    assert (result.reason == MQTT_REJECT_OVERSIZED);
    free (huge);

    //  Tasmota's local Time in the owner's zone: 03:25 in Berlin (CET) is
    //  02:25 UTC; DST and UTC likewise.
    assert (mqtt_parse_local_time ("2026-12-07T03:25:00", "Europe/Berlin") == 1796610300000LL);
    assert (mqtt_parse_local_time ("2026-12-07T02:25:00", "") == 1796610300000LL);
    assert (mqtt_parse_local_time ("2026-07-01T12:00:00", "Europe/Berlin") == 1782900000000LL);
    assert (mqtt_parse_local_time ("2026-12-07 03:25", "UTC") == -1);
    if (verbose)
        printf ("(%zu broken cases, %zu mutations) ", sizeof bad / sizeof bad[0], mutations);
    printf ("OK\n");
}
