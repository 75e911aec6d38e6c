/*  =========================================================================
    bridge_line - one line a board printed into readings

    The guide's JSON line ({"voltage":..,"current":..,"power":..[,"channel"
    or "portId"]}) gives one reading; emonhub's name:value,... form one per
    field that bridge_channels names (its power; Vrms the voltage, I<n> or
    Irms<n> the current). Values outside the gateway's ranges are refused
    here, where the line can still be logged.
    =========================================================================
*/
#ifndef BRIDGE_LINE_H_INCLUDED
#define BRIDGE_LINE_H_INCLUDED

#include "bridge_settings.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char port[BRIDGE_UUID_LEN + 1]; //  port id
    double voltage;                 //  V
    double current;                 //  A
    double power;                   //  W
} bridge_reading_t;

//  One line (CR stripped by the caller) into at most max readings; 0, or
//  -1 with the reason. count is 0 for a blank line.
int bridge_line_parse (const bridge_settings_t *settings, const char *line, size_t length,
                       bridge_reading_t *out, size_t max, size_t *count, const char **reason);

//  Refuses a line: sets *reason to why and returns -1.
int bridge_line_reject (const char **reason, const char *why);

void bridge_line_test (bool verbose);

#endif
