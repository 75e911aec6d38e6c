/*  =========================================================================
    bridge_line - one line a board printed into readings
    =========================================================================
*/
#include "bridge_line.h"

#include <assert.h>
#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <strings.h>

//  The gateway's ranges: a reading outside them would be refused for
//  ever, so it is rejected here, where the line can still be logged.
static bool
s_in_range (double voltage, double current, double power)
{
    return isfinite (voltage) && isfinite (current) && isfinite (power) && voltage >= 0 &&
           voltage <= 1000 && current >= 0 && current <= 1000 && power >= 0 && power <= 1e6;
}

int
bridge_line_reject (const char **reason, const char *why)
{
    *reason = why;
    return -1;
}

static int
s_parse_json (const bridge_settings_t *settings, const char *line, size_t length,
              bridge_reading_t *out, const char **reason)
{
    json_error_t error;
    json_t *object = json_loadb (line, length, JSON_REJECT_DUPLICATES, &error);
    if (!object || !json_is_object (object)) {
        json_decref (object);
        return bridge_line_reject (reason, "not a JSON object");
    }
    int rc = 0;
    json_t *voltage = json_object_get (object, "voltage");
    json_t *current = json_object_get (object, "current");
    json_t *power = json_object_get (object, "power");
    if (!json_is_number (voltage) || !json_is_number (current) || !json_is_number (power))
        rc = bridge_line_reject (reason, "voltage, current and power must be numbers");
    else {
        out->voltage = json_number_value (voltage);
        out->current = json_number_value (current);
        out->power = json_number_value (power);
        if (!s_in_range (out->voltage, out->current, out->power))
            rc = bridge_line_reject (reason, "value out of range");
    }
    json_t *port_id = json_object_get (object, "portId");
    json_t *channel = json_object_get (object, "channel");
    if (!channel)
        channel = json_object_get (object, "ch");
    if (!channel)
        channel = json_object_get (object, "port");
    if (rc == 0) {
        char name[BRIDGE_CHANNEL_NAME_MAX + 1];
        const char *port = NULL;
        if (port_id) {
            if (!json_is_string (port_id) ||
                bridge_settings_uuid (json_string_value (port_id), json_string_length (port_id),
                                      out->port))
                rc = bridge_line_reject (reason, "portId is not a UUID");
        } else {
            if (!channel)
                snprintf (name, sizeof name, "default");
            else if (json_is_string (channel) &&
                     json_string_length (channel) <= BRIDGE_CHANNEL_NAME_MAX)
                snprintf (name, sizeof name, "%s", json_string_value (channel));
            else if (json_is_integer (channel))
                snprintf (name, sizeof name, "%" JSON_INTEGER_FORMAT, json_integer_value (channel));
            else
                name[0] = 0;
            if (name[0])
                port = bridge_settings_channel_port (settings, name, strlen (name));
            if (!port)
                rc = bridge_line_reject (reason, "channel not in bridge_channels");
            else
                memcpy (out->port, port, sizeof out->port);
        }
    }
    json_decref (object);
    return rc;
}

//  A whole-field number (strtod, no trailing junk); -1 if it is not one.
static int
s_number (const char *text, size_t length, double *value)
{
    char buffer[64];
    if (length == 0 || length >= sizeof buffer)
        return -1;
    memcpy (buffer, text, length);
    buffer[length] = 0;
    char *end;
    errno = 0;
    *value = strtod (buffer, &end);
    if (end != buffer + length || errno || !isfinite (*value))
        return -1;
    return 0;
}

typedef struct {
    const char *name; //  not terminated
    size_t name_size; //  bytes of name
    double value;     //  parsed
} s_field_t;

static const s_field_t *
s_field_find (const s_field_t *fields, size_t count, const char *name, size_t size)
{
    for (size_t index = 0; index < count; index++)
        if (fields[index].name_size == size && strncasecmp (fields[index].name, name, size) == 0)
            return &fields[index];
    return NULL;
}

//  The current field of a power channel: I<suffix> or Irms<suffix>, where
//  the suffix is what follows the channel's leading letters (P1 -> 1).
static const s_field_t *
s_current_field (const s_field_t *fields, size_t count, const char *channel, size_t size)
{
    size_t at = 0;
    while (at < size && isalpha ((unsigned char)channel[at]))
        at++;
    if (at == size)
        return NULL;
    char name[BRIDGE_CHANNEL_NAME_MAX + 8];
    int length = snprintf (name, sizeof name, "I%.*s", (int)(size - at), channel + at);
    const s_field_t *field = s_field_find (fields, count, name, (size_t)length);
    if (!field) {
        length = snprintf (name, sizeof name, "Irms%.*s", (int)(size - at), channel + at);
        field = s_field_find (fields, count, name, (size_t)length);
    }
    return field;
}

static int
s_parse_emonhub (const bridge_settings_t *settings, const char *line, size_t length,
                 bridge_reading_t *out, size_t max, size_t *count, const char **reason)
{
    s_field_t fields[64];
    size_t used = 0;
    const char *cursor = line, *end = line + length;
    while (cursor < end) {
        const char *item_end = memchr (cursor, ',', (size_t)(end - cursor));
        if (!item_end)
            item_end = end;
        const char *colon = memchr (cursor, ':', (size_t)(item_end - cursor));
        if (!colon)
            return bridge_line_reject (reason, "field without name:value");
        const char *name = cursor, *name_end = colon;
        while (name < name_end && *name == ' ')
            name++;
        while (name_end > name && name_end[-1] == ' ')
            name_end--;
        const char *value = colon + 1, *value_end = item_end;
        while (value < value_end && *value == ' ')
            value++;
        while (value_end > value && value_end[-1] == ' ')
            value_end--;
        if (name == name_end)
            return bridge_line_reject (reason, "field without a name");
        for (const char *c = name; c < name_end; c++)
            if (!isalnum ((unsigned char)*c) && *c != '_')
                return bridge_line_reject (reason, "field name not alphanumeric");
        if (used == sizeof fields / sizeof fields[0])
            return bridge_line_reject (reason, "too many fields");
        s_field_t *field = &fields[used++];
        field->name = name;
        field->name_size = (size_t)(name_end - name);
        if (s_number (value, (size_t)(value_end - value), &field->value))
            return bridge_line_reject (reason, "non-numeric value");
        cursor = item_end + 1;
    }
    double voltage = settings->default_voltage;
    const s_field_t *field =
        s_field_find (fields, used, settings->voltage_name, strlen (settings->voltage_name));
    if (!field)
        field = s_field_find (fields, used, "v", 1);
    if (field)
        voltage = field->value;
    *count = 0;
    for (size_t index = 0; index < used; index++) {
        const char *port =
            bridge_settings_channel_port (settings, fields[index].name, fields[index].name_size);
        if (!port)
            continue;
        if (*count == max)
            return bridge_line_reject (reason, "too many channels");
        bridge_reading_t *reading = &out[(*count)++];
        memcpy (reading->port, port, sizeof reading->port);
        reading->voltage = voltage;
        reading->power = fields[index].value;
        const s_field_t *current =
            s_current_field (fields, used, fields[index].name, fields[index].name_size);
        reading->current = current ? current->value : voltage > 0 ? reading->power / voltage : 0;
        if (!s_in_range (reading->voltage, reading->current, reading->power))
            return bridge_line_reject (reason, "value out of range");
    }
    if (*count == 0)
        return bridge_line_reject (reason, "no field is a channel in bridge_channels");
    return 0;
}

int
bridge_line_parse (const bridge_settings_t *settings, const char *line, size_t length,
                   bridge_reading_t *out, size_t max, size_t *count, const char **reason)
{
    *count = 0;
    while (length && (*line == ' ' || *line == '\t')) {
        line++;
        length--;
    }
    while (length && (line[length - 1] == ' ' || line[length - 1] == '\t'))
        length--;
    if (length == 0)
        return 0;
    if (memchr (line, 0, length))
        return bridge_line_reject (reason, "NUL byte");
    if (*line == '{') {
        int rc = s_parse_json (settings, line, length, out, reason);
        if (rc == 0)
            *count = 1;
        return rc;
    }
    return s_parse_emonhub (settings, line, length, out, max, count, reason);
}

#define P1 "11111111-1111-4111-8111-111111111111"
#define P2 "22222222-2222-4222-8222-222222222222"
#define PD "dddddddd-dddd-4ddd-8ddd-dddddddddddd"

void
bridge_line_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_line: ");
    bridge_settings_t settings;
    memset (&settings, 0, sizeof settings);
    settings.voltage_name = "vrms";
    settings.default_voltage = 230;
    const char *channels[][2] = {{"default", PD}, {"1", P1}, {"P2", P2}, {"ct1", P1}};
    for (size_t index = 0; index < 4; index++) {
        snprintf (settings.channels[index].name, sizeof settings.channels[index].name, "%s",
                  channels[index][0]);
        snprintf (settings.channels[index].port, sizeof settings.channels[index].port, "%s",
                  channels[index][1]);
    }
    settings.channel_count = 4;

    //  Parsing.
    bridge_reading_t readings[BRIDGE_CHANNELS_MAX];
    size_t count;
    const char *reason;
#define PARSE(text)                                                                                \
    bridge_line_parse (&settings, text, strlen (text), readings, BRIDGE_CHANNELS_MAX, &count,      \
                       &reason)
    assert (PARSE ("{\"voltage\":230.5,\"current\":0.45,\"power\":103.73}") == 0 && count == 1);
    assert (strcmp (readings[0].port, PD) == 0 && readings[0].power == 103.73);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"channel\":1}") == 0 &&
            strcmp (readings[0].port, P1) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"ch\":\"p2\"}") == 0 &&
            strcmp (readings[0].port, P2) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"portId\":\"" P2 "\"}") == 0 &&
            strcmp (readings[0].port, P2) == 0);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5,\"channel\":9}") == -1);
    assert (PARSE ("{\"voltage\":\"230\",\"current\":1,\"power\":5}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":-5}") == -1);
    assert (PARSE ("{\"voltage\":230,\"current\":1,\"power\":5") == -1);
    assert (PARSE ("   ") == 0 && count == 0);
    assert (PARSE ("garbage") == -1);
    assert (PARSE ("\x01\xff\xfe") == -1);
    assert (PARSE ("MSG:3,Vrms:240,P1:120,P2:24,I2:0.2,E1:99") == 0 && count == 1);
    assert (strcmp (readings[0].port, P2) == 0 && readings[0].voltage == 240);
    assert (readings[0].power == 24 && readings[0].current == 0.2);
    assert (PARSE ("ct1:115, vrms:230") == 0 && count == 1);
    assert (strcmp (readings[0].port, P1) == 0 && readings[0].current == 0.5);
    assert (PARSE ("P2:46") == 0 && count == 1 && readings[0].voltage == 230);
    assert (PARSE ("P2:abc") == -1 && strcmp (reason, "non-numeric value") == 0);
    assert (PARSE ("P2:1e999") == -1);
    assert (PARSE ("MSG:3,E1:5") == -1);
    assert (PARSE ("P2:5,,P1:3") == -1);
    settings.channels[1].name[0] = '1';
    assert (PARSE ("1:10") == 0 && count == 1 && strcmp (readings[0].port, P1) == 0);
#undef PARSE
    if (verbose)
        printf ("OK\n");
}
