/*  =========================================================================
    proto_selftest - runs the proto library's class tests

    proto_selftest [-v] [class ...]      run the named tests, or all
    proto_selftest --corpus DIR          write fuzz seed frames into DIR
    =========================================================================
*/
#include "proto.h"
#include "proto_address.h"
#include "proto_pg.h"
#include "proto_config.h"
#include "proto_curve.h"
#include "proto_device_token.h"
#include "proto_main.h"
#include "proto_selftest.h"

#include <czmq.h>

//  Writes one frame per type (and variant) into dir as fuzz seeds.
static int
s_write_corpus (const char *dir)
{
    proto_reading_t reading;
    memset (&reading, 0, sizeof (reading));
    reading.request = 42;
    strcpy (reading.gateway, "gw1");
    reading.user = 7;
    reading.device = 9;
    strcpy (reading.port, "6f1c2a4e-8b3d-4c5e-9f70-123456789abc");
    reading.ts = 1764221000123;
    reading.received = 1764221000150;
    reading.voltage = 230.1;
    reading.current = 0.02;
    reading.power = 4.6;
    strcpy (reading.key, "r-0001");
    reading.settings.off_watts = 0.5f;
    reading.settings.standby_watts = 10.0f;
    reading.settings.min_phantom_seconds = 300;
    reading.settings.role = PROTO_ROLE_SHOULD_BE_OFF;
    reading.settings.windows[0] = PROTO_WINDOW_PACK (0x7f, 1320, 420);
    reading.settings.windows[1] = PROTO_WINDOW_PACK (0x1f, 540, 1020);
    strcpy (reading.settings.timezone, "Europe/Berlin");

    proto_verdict_t verdict;
    memset (&verdict, 0, sizeof (verdict));
    verdict.reading = reading;
    verdict.status = PROTO_STATUS_PHANTOM;
    verdict.previous = PROTO_STATUS_IDLE;
    proto_episode_t episode = {1764220000000, 0, 1.25, 4.5, 5.0, 12};

    proto_event_t event;
    memset (&event, 0, sizeof (event));
    strcpy (event.kind, "phantom.start");
    event.user = 7;
    strcpy (event.port, reading.port);
    event.ts = reading.ts;
    event.watts = 4.6;
    event.status = PROTO_STATUS_PHANTOM;
    event.previous = PROTO_STATUS_IDLE;

    proto_ack_t acks[3] = {{42, PROTO_ACK_OK, 1001, 1764221000123, PROTO_STATUS_PHANTOM},
                           {43, PROTO_ACK_RETRY, 0, 0, PROTO_STATUS_UNKNOWN},
                           {44, PROTO_ACK_REJECTED, -1, 1, PROTO_STATUS_OFFLINE}};

    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    int rc = 0;
    for (int which = 0; which < 7 && rc == 0; which++) {
        const char *name = NULL;
        switch (which) {
        case 0:
            name = "reading";
            rc = proto_reading_encode (&reading, &buffer);
            break;
        case 1:
            name = "verdict";
            rc = proto_verdict_encode (&verdict, &buffer);
            break;
        case 2:
            name = "verdict_episode";
            verdict.has_episode = true;
            verdict.episode = episode;
            rc = proto_verdict_encode (&verdict, &buffer);
            break;
        case 3:
            name = "acks";
            rc = proto_acks_encode (acks, 3, &buffer);
            break;
        case 4:
            name = "event_status";
            strcpy (event.kind, "status");
            rc = proto_event_encode (&event, &buffer);
            break;
        case 5:
            name = "event_phantom";
            strcpy (event.kind, "phantom.start");
            event.has_episode = true;
            event.episode = episode;
            rc = proto_event_encode (&event, &buffer);
            break;
        case 6:
            //  The offline timer's: no reading, closed episode
            name = "verdict_no_reading";
            strcpy (verdict.reading.gateway, PROTO_GATEWAY_NONE);
            verdict.reading.key[0] = 0;
            verdict.status = PROTO_STATUS_OFFLINE;
            verdict.previous = PROTO_STATUS_PHANTOM;
            verdict.no_reading = true;
            verdict.has_episode = true;
            verdict.episode = episode;
            verdict.episode.end = reading.ts;
            rc = proto_verdict_encode (&verdict, &buffer);
            break;
        }
        char *path = zsys_sprintf ("%s/%s.msgpack", dir, name);
        FILE *file = path && rc == 0 ? fopen (path, "wb") : NULL;
        if (!file || fwrite (buffer.data, 1, buffer.size, file) != buffer.size) {
            fprintf (stderr, "proto_selftest: cannot write %s\n", path ? path : name);
            rc = -1;
        }
        if (file && fclose (file))
            rc = -1;
        zstr_free (&path);
    }
    proto_buffer_release (&buffer);
    return rc;
}

static const proto_selftest_t s_tests[] = {
    {"proto", proto_test, false},
    {"proto_config", proto_config_test, false},
    {"proto_curve", proto_curve_test, false},
    {"proto_address", proto_address_test, false},
    {"proto_pg", proto_pg_test, false},
    {"proto_main", proto_main_test, false},
    {"proto_device_token", proto_device_token_test, false},
    {"proto_selftest", proto_selftest_test, false},
};

int
main (int argc, char *argv[])
{
    if (argc == 3 && streq (argv[1], "--corpus"))
        return s_write_corpus (argv[2]) ? 1 : 0;
    return proto_selftest_run ("proto_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                               argc - 1, argv + 1);
}
