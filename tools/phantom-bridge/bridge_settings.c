/*  =========================================================================
    bridge_settings - the bridge's settings, read once
    =========================================================================
*/
#include "bridge_settings.h"

#include <assert.h>
#include <czmq.h>
#include <strings.h>

//  Lower-cases a UUID into port; -1 if text is not one.
int
bridge_settings_uuid (const char *text, size_t length, char port[BRIDGE_UUID_LEN + 1])
{
    if (length != BRIDGE_UUID_LEN)
        return -1;
    for (size_t index = 0; index < BRIDGE_UUID_LEN; index++) {
        char c = (char)tolower ((unsigned char)text[index]);
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (c != '-')
                return -1;
        } else if (!isxdigit ((unsigned char)c))
            return -1;
        port[index] = c;
    }
    port[BRIDGE_UUID_LEN] = 0;
    return 0;
}

//  "name=uuid,name=uuid" into settings->channels; -1 after logging why.
static int
s_channels_parse (bridge_settings_t *self, const char *text)
{
    self->channel_count = 0;
    const char *cursor = text;
    while (*cursor) {
        while (*cursor == ' ' || *cursor == ',')
            cursor++;
        if (!*cursor)
            break;
        const char *end = cursor + strcspn (cursor, ",");
        const char *equals = memchr (cursor, '=', (size_t)(end - cursor));
        if (!equals || equals == cursor) {
            zsys_error ("bridge config - bridge_channels: '%.*s' is not name=port-uuid",
                        (int)(end - cursor), cursor);
            return -1;
        }
        const char *name_end = equals;
        while (name_end > cursor && name_end[-1] == ' ')
            name_end--;
        const char *value = equals + 1;
        while (*value == ' ')
            value++;
        const char *value_end = end;
        while (value_end > value && value_end[-1] == ' ')
            value_end--;
        if (self->channel_count == BRIDGE_CHANNELS_MAX) {
            zsys_error ("bridge config - bridge_channels: more than %d channels",
                        BRIDGE_CHANNELS_MAX);
            return -1;
        }
        bridge_channel_t *channel = &self->channels[self->channel_count];
        size_t name_length = (size_t)(name_end - cursor);
        if (name_length > BRIDGE_CHANNEL_NAME_MAX ||
            bridge_settings_uuid (value, (size_t)(value_end - value), channel->port) != 0) {
            zsys_error ("bridge config - bridge_channels: '%.*s' is not name=port-uuid",
                        (int)(end - cursor), cursor);
            return -1;
        }
        memcpy (channel->name, cursor, name_length);
        channel->name[name_length] = 0;
        self->channel_count++;
        cursor = end;
    }
    return 0;
}

const char *
bridge_settings_channel_port (const bridge_settings_t *self, const char *name, size_t length)
{
    for (size_t index = 0; index < self->channel_count; index++)
        if (strlen (self->channels[index].name) == length &&
            strncasecmp (self->channels[index].name, name, length) == 0)
            return self->channels[index].port;
    return NULL;
}

static bool
s_printable (const char *text)
{
    for (; *text; text++)
        if (*text < 0x21 || *text > 0x7e || *text == '"' || *text == '\\')
            return false;
    return true;
}

//  The termios speed of a baud rate; 0 if it has none.
static speed_t
s_speed (int baud)
{
    switch (baud) {
    case 1200:
        return B1200;
    case 2400:
        return B2400;
    case 4800:
        return B4800;
    case 9600:
        return B9600;
    case 19200:
        return B19200;
    case 38400:
        return B38400;
    case 57600:
        return B57600;
    case 115200:
        return B115200;
    case 230400:
        return B230400;
    default:
        return 0;
    }
}

//  Reads the settings; -1 after logging the bad key.
int
bridge_settings_load (bridge_settings_t *self, proto_config_t *config)
{
    memset (self, 0, sizeof *self);
    self->device = proto_config_str (config, "bridge_device");
    self->baud = (int)proto_config_int (config, "bridge_baud");
    self->url = proto_config_str (config, "bridge_url");
    self->token = proto_config_str (config, "bridge_device_token");
    self->spool = proto_config_str (config, "bridge_spool");
    self->spool_max = proto_config_int (config, "bridge_spool_max_readings");
    self->sync = proto_config_str (config, "bridge_spool_sync");
    self->batch = (int)proto_config_int (config, "bridge_batch");
    self->timeout_ms = proto_config_int (config, "bridge_http_timeout_ms");
    self->backoff_min_ms = proto_config_int (config, "bridge_backoff_min_ms");
    self->backoff_max_ms = proto_config_int (config, "bridge_backoff_max_ms");
    self->line_max = (size_t)proto_config_int (config, "bridge_line_max");
    self->voltage_name = proto_config_str (config, "bridge_voltage_name");
    self->default_voltage = (double)proto_config_int (config, "bridge_default_voltage");
    self->metrics = proto_config_str (config, "bridge_metrics_address");
    if (s_speed (self->baud) == 0) {
        zsys_error ("bridge config - bridge_baud %d is not one of 1200, 2400, 4800, 9600, "
                    "19200, 38400, 57600, 115200, 230400",
                    self->baud);
        return -1;
    }
    if (self->backoff_max_ms < self->backoff_min_ms)
        self->backoff_max_ms = self->backoff_min_ms;
    if (self->token &&
        (!*self->token || strlen (self->token) > 200 || !s_printable (self->token))) {
        zsys_error ("bridge config - bridge_device_token must be 1..200 printable characters");
        return -1;
    }
    return s_channels_parse (self, proto_config_str (config, "bridge_channels"));
}

speed_t
bridge_settings_speed (int baud)
{
    return s_speed (baud);
}

#define P1 "11111111-1111-4111-8111-111111111111"
#define P2 "22222222-2222-4222-8222-222222222222"
#define PD "dddddddd-dddd-4ddd-8ddd-dddddddddddd"

void
bridge_settings_test (bool verbose)
{
    if (verbose)
        printf (" * bridge_settings: ");
    bridge_settings_t settings;
    memset (&settings, 0, sizeof settings);
    assert (s_channels_parse (&settings, "default=" PD ", 1 = " P1 ",P2=" P2 ",ct1=" P1) == 0);
    assert (settings.channel_count == 4);
    assert (s_channels_parse (&settings, "x=not-a-uuid") == -1);
    assert (s_channels_parse (&settings, "=" P1) == -1);
    assert (s_channels_parse (&settings, "default=" PD ",1=" P1 ",P2=" P2 ",ct1=" P1) == 0);
    assert (strcmp (bridge_settings_channel_port (&settings, "p2", 2), P2) == 0);
    assert (bridge_settings_channel_port (&settings, "p3", 2) == NULL);
    char port[BRIDGE_UUID_LEN + 1];
    assert (bridge_settings_uuid ("DDDDDDDD-dddd-4ddd-8ddd-dddddddddddd", 36, port) == 0);
    assert (strcmp (port, PD) == 0);
    assert (bridge_settings_uuid ("dddddddd_dddd-4ddd-8ddd-dddddddddddd", 36, port) == -1);
    assert (bridge_settings_speed (9600) == B9600 && bridge_settings_speed (9601) == 0);
    if (verbose)
        printf ("OK\n");
}
