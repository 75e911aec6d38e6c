/*  =========================================================================
    bridge_settings - the bridge's settings: the config file plus PHANTOM_*
    overrides, read once against bridge_config_keys (whose table holds
    each key's default and bounds), and the board channel -> port map

    The struct is public and read-only after bridge_settings_load: the
    reader, the line parser and the uploader each read the fields they use.
    =========================================================================
*/
#ifndef BRIDGE_SETTINGS_H_INCLUDED
#define BRIDGE_SETTINGS_H_INCLUDED

#include "bridge_config_keys.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <termios.h>

#define BRIDGE_CHANNELS_MAX 64
#define BRIDGE_CHANNEL_NAME_MAX 32
#define BRIDGE_UUID_LEN 36
#define BRIDGE_LINE_MAX_LIMIT 4096
#define BRIDGE_BATCH_LIMIT 1000

typedef struct {
    char name[BRIDGE_CHANNEL_NAME_MAX + 1]; //  board channel, as the line names it
    char port[BRIDGE_UUID_LEN + 1];         //  port id, lower case
} bridge_channel_t;

typedef struct {
    const char *device;                             //  serial device path
    int baud;                                       //  line speed
    const char *url;                                //  base URL of PhantomWatch
    const char *token;                              //  device token
    const char *spool;                              //  spool path
    int64_t spool_max;                              //  readings kept at most
    const char *sync;                               //  full, normal or off
    int batch;                                      //  readings per POST
    int64_t timeout_ms;                             //  one POST
    int64_t backoff_min_ms;                         //  first retry delay
    int64_t backoff_max_ms;                         //  longest retry delay
    size_t line_max;                                //  longer lines are rejected
    const char *voltage_name;                       //  emonhub: the voltage field
    double default_voltage;                         //  emonhub: when the line has none
    const char *metrics;                            //  host:port or "off"
    bridge_channel_t channels[BRIDGE_CHANNELS_MAX]; //  board channel -> port
    size_t channel_count;                           //  used entries of channels
} bridge_settings_t;

//  Reads the settings; -1 after logging the bad key.
int bridge_settings_load (bridge_settings_t *self, proto_config_t *config);

//  The port of the board channel name (length bytes, case-insensitive);
//  NULL if bridge_channels does not name it.
const char *bridge_settings_channel_port (const bridge_settings_t *self, const char *name,
                                          size_t length);

//  Lower-cases a UUID into port; -1 if text is not one.
int bridge_settings_uuid (const char *text, size_t length, char port[BRIDGE_UUID_LEN + 1]);

//  The termios speed of a baud rate; 0 if it has none (load refuses those).
speed_t bridge_settings_speed (int baud);

void bridge_settings_test (bool verbose);

#endif
