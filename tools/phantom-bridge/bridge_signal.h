/*  =========================================================================
    bridge_signal - the stop flag SIGINT and SIGTERM set, and the waits it
    cuts short

    The handler only sets the flag; the serial reader and the uploader look
    at it between steps, and every sleep of theirs ends within 100 ms of it.
    =========================================================================
*/
#ifndef BRIDGE_SIGNAL_H_INCLUDED
#define BRIDGE_SIGNAL_H_INCLUDED

#include <signal.h>
#include <stdint.h>

//  Set once SIGINT or SIGTERM came.
extern volatile sig_atomic_t bridge_interrupted;

//  Sets the flag on SIGINT and SIGTERM; ignores SIGPIPE.
void bridge_signal_install (void);

//  Sleeps ms in short steps so a signal stops it within 100 ms.
void bridge_signal_sleep_ms (int64_t ms);

#endif
