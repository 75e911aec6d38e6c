/*  =========================================================================
    detector_bench - readings per second per core of the engine alone

    detector_bench [PORTS] [READINGS]: fills an engine with PORTS ports
    (default 1,000,000), then feeds READINGS readings (default 20,000,000)
    to ports in random order, as a partition of a large fleet sees them,
    and prints readings/s and bytes per port (budget: under 256 at a
    million ports). No sockets, no codec.
    =========================================================================
*/
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "detector_engine.h"
#include "detector_fixture.h"

#define S_BATCH 256 //  readings per batch, as the server drains them

static double
s_now (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

int
main (int argc, char *argv[])
{
    size_t ports = argc > 1 ? strtoul (argv[1], NULL, 10) : 1000000;
    size_t total = argc > 2 ? strtoul (argv[2], NULL, 10) : 20000000;
    if (ports == 0 || total == 0) {
        fprintf (stderr, "usage: detector_bench [PORTS] [READINGS]\n");
        return 2;
    }
    //  Port names are prepared up front so the timing is the engine's alone.
    detector_engine_t *engine = detector_engine_new (ports, 300000);
    if (!engine)
        return 1;
    char (*names)[PROTO_UUID_LEN + 1] = malloc (ports * (PROTO_UUID_LEN + 1));
    if (!names)
        return 1;
    uint64_t seed = 0x243F6A8885A308D3ULL;
    for (size_t i = 0; i < ports; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t a = seed;
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        uint64_t b = seed;
        snprintf (names[i], PROTO_UUID_LEN + 1, "%08x-%04x-4%03x-8%03x-%012llx",
                  (unsigned)(a >> 32), (unsigned)(a >> 16) & 0xFFFF, (unsigned)a & 0xFFF,
                  (unsigned)(b >> 52) & 0xFFF, (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
    }
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    proto_reading_t reading;
    detector_fixture_reading (&reading, "", 1, 0, 0, &settings);
    detector_outcome_t outcome;
    static proto_reading_t readings[S_BATCH];
    static detector_outcome_t outcomes[S_BATCH];
    for (size_t i = 0; i < S_BATCH; i++)
        readings[i] = reading;

    //  Warm-up: every port seen once, so the timed run measures steady state.
    int64_t ts0 = 1704067200000LL;
    for (size_t i = 0; i < ports; i++) {
        memcpy (reading.port, names[i], PROTO_UUID_LEN + 1);
        reading.ts = reading.received = ts0;
        reading.power = 5;
        detector_engine_process (engine, &reading, &outcome);
    }

    //  Each round visits every port once, 10 s later than the round
    //  before. Names are read in sequence (a decoded frame is hot in cache)
    //  but their uuids are random, so table slots are hit at random, as a
    //  real fleet would. The power pattern walks ports through idle,
    //  phantom, active and off, so transitions and events are exercised.
    //  Two runs: "steady" (every port draws 5 W: phantom, no transitions,
    //  the common case) and "churn" (a pattern that changes status on
    //  about half of all readings, far more than a real fleet).
    static const double steady[] = {5};
    static const double churn[] = {5, 5, 5, 5, 5, 5, 5, 5, 120, 4.5, 4.5, 0.1, 6, 6, 6, 6};
    int64_t round = 1;
    for (int run = 0; run < 2; run++) {
        const double *pattern = run ? churn : steady;
        size_t length = run ? sizeof (churn) / sizeof (churn[0]) : 1;
        size_t done = 0;
        uint64_t events = 0;
        double start = s_now ();
        for (; done < total; round++) {
            double watts = pattern[round % length];
            int64_t ts = ts0 + round * 10000;
            for (size_t k = 0; k < ports && done < total;) {
                //  As the server does: up to 256 readings per batch.
                size_t batch = 0;
                for (; batch < S_BATCH && k < ports && done < total; batch++, k++, done++) {
                    memcpy (readings[batch].port, names[k], PROTO_UUID_LEN + 1);
                    readings[batch].ts = readings[batch].received = ts;
                    readings[batch].power = watts;
                }
                detector_engine_process_batch (engine, readings, batch, outcomes);
                for (size_t i = 0; i < batch; i++)
                    events += outcomes[i].event_count;
            }
        }
        double elapsed = s_now () - start;
        printf ("detector_bench %s: %zu ports, %zu readings in %.3f s\n", run ? "churn" : "steady",
                ports, done, elapsed);
        printf ("  %.2f M readings/s on one core (%.1f ns/reading), %llu events\n",
                (double)done / elapsed / 1e6, elapsed * 1e9 / (double)done,
                (unsigned long long)events);
    }
    detector_engine_stats_t stats;
    detector_engine_stats (engine, &stats);
    //  The budget includes the table's empty slots.
    double bytes = detector_engine_bytes_per_port (engine);
    printf ("  %.1f bytes/port (engine table at load <= 3/4),"
            " %llu ports known: %s the 256-byte budget\n",
            bytes, (unsigned long long)stats.ports, bytes < 256 ? "within" : "OVER");
    free (names);
    detector_engine_destroy (&engine);
    return 0;
}
