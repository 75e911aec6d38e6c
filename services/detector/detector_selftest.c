/*  =========================================================================
    detector_selftest - runs the detector's class tests

    detector_selftest [-v] [CLASS]: every class, or just CLASS; ctest runs
    each class as its own test (detector_<class>).
    =========================================================================
*/
#include <czmq.h>
#include <stdio.h>
#include <string.h>

#include "detector_engine.h"
#include "detector_restore.h"
#include "detector_server.h"

typedef struct {
    const char *name;            //  class name
    void (*test) (bool verbose); //  its self test
} s_class_t;

static const s_class_t s_classes[] = {
    {"detector_engine", detector_engine_test},
    {"detector_server", detector_server_test},
    {"detector_restore", detector_restore_test},
};

int
main (int argc, char *argv[])
{
    bool verbose = false;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (streq (argv[i], "-v"))
            verbose = true;
        else
            only = argv[i];
    }
    size_t ran = 0;
    for (size_t i = 0; i < sizeof (s_classes) / sizeof (s_classes[0]); i++) {
        if (only && !streq (only, s_classes[i].name))
            continue;
        s_classes[i].test (verbose);
        ran++;
    }
    if (ran == 0) {
        fprintf (stderr, "detector_selftest: unknown class '%s'\n", only);
        return 1;
    }
    return 0;
}
