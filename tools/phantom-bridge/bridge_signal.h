/*  =========================================================================
    bridge_signal - the waits that a stop cuts short

    SIGINT and SIGTERM set proto_main's stop flag (main installs the
    handler with proto_main_signals); the serial reader and the uploader
    look at it between steps, and every sleep of theirs ends within 100 ms
    of it.
    =========================================================================
*/
#ifndef BRIDGE_SIGNAL_H_INCLUDED
#define BRIDGE_SIGNAL_H_INCLUDED

#include <stdint.h>

//  Sleeps ms in short steps so a signal stops it within 100 ms.
void bridge_signal_sleep_ms (int64_t ms);

#endif
