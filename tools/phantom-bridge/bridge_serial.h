/*  =========================================================================
    bridge_serial - the serial reader: the board's device, opened raw at the
    configured baud, its bytes assembled into lines, each line parsed and
    committed to the spool

    Runs in the main thread until interrupted. The device going away (USB
    unplugged, a node that vanished) is noticed within a second and the
    device reopened; a line cut by the outage is dropped, not misread.
    =========================================================================
*/
#ifndef BRIDGE_SERIAL_H_INCLUDED
#define BRIDGE_SERIAL_H_INCLUDED

#include "bridge_settings.h"
#include "bridge_spool.h"

#include <stdbool.h>

typedef struct {
    const bridge_settings_t *settings; //  channels, limits
    bridge_spool_t *spool;             //  the reader's connection
} bridge_serial_t;

//  Reads the device until interrupted, reopening it after it went away.
void bridge_serial_run (bridge_serial_t *self);

void bridge_serial_test (bool verbose);

#endif
