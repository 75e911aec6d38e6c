/*  =========================================================================
    bridge_signal - the waits that a stop cuts short
    =========================================================================
*/
#include "bridge_signal.h"
#include "proto_main.h"

#include <czmq.h>
#include <time.h>

void
bridge_signal_sleep_ms (int64_t ms)
{
    int64_t until = zclock_mono () + ms;
    while (!proto_main_stopping ()) {
        int64_t left = until - zclock_mono ();
        if (left <= 0)
            break;
        struct timespec step = {0, (long)(left < 100 ? left : 100) * 1000000L};
        nanosleep (&step, NULL);
    }
}
