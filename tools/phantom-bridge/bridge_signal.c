/*  =========================================================================
    bridge_signal - the stop flag SIGINT and SIGTERM set, and the waits it
    cuts short
    =========================================================================
*/
#include "bridge_signal.h"

#include <czmq.h>
#include <time.h>

volatile sig_atomic_t bridge_interrupted;

static void
s_signal (int signum)
{
    (void)signum;
    bridge_interrupted = 1;
}

void
bridge_signal_install (void)
{
    signal (SIGINT, s_signal);
    signal (SIGTERM, s_signal);
    signal (SIGPIPE, SIG_IGN);
}

void
bridge_signal_sleep_ms (int64_t ms)
{
    int64_t until = zclock_mono () + ms;
    while (!bridge_interrupted) {
        int64_t left = until - zclock_mono ();
        if (left <= 0)
            break;
        struct timespec step = {0, (long)(left < 100 ? left : 100) * 1000000L};
        nanosleep (&step, NULL);
    }
}
