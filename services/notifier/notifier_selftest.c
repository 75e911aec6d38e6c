/*  =========================================================================
    notifier_selftest - runs one notifier class test, or all of them

    Usage: notifier_selftest [-v] [CLASS]
    Classes that need PostgreSQL read PHANTOM_TEST_DATABASE and exit 77
    (ctest SKIP_RETURN_CODE) when it is not set.
    =========================================================================
*/
#include "notifier_db.h"
#include "notifier_digest.h"
#include "notifier_format.h"
#include "notifier_http.h"
#include "notifier_service.h"
#include "notifier_test_db.h"
#include "notifier_webhook.h"
#include "notifier_writer.h"

#include <czmq.h>
#include <sodium.h>

#define SKIP 77

typedef struct {
    const char *name;            //  class name, as ctest knows it
    void (*test) (bool verbose); //  its test
    bool needs_database;         //  skipped without PHANTOM_TEST_DATABASE
} s_test_t;

static const s_test_t s_tests[] = {
    {"notifier_db", notifier_db_test, true},
    {"notifier_http", notifier_http_test, false},
    {"notifier_format", notifier_format_test, false},
    {"notifier_writer", notifier_writer_test, true},
    {"notifier_webhook", notifier_webhook_test, true},
    {"notifier_digest", notifier_digest_test, true},
    {"notifier_service", notifier_service_test, true},
};
#define TESTS (sizeof s_tests / sizeof s_tests[0])

int
main (int argc, char *argv[])
{
    bool verbose = false;
    const char *only = NULL;
    for (int index = 1; index < argc; index++)
        if (streq (argv[index], "-v"))
            verbose = true;
        else
            only = argv[index];
    if (!verbose)
        //  Test logs would drown the result; -v brings them back.
        zsys_set_logstream (NULL);
    assert (sodium_init () >= 0);
    bool found = false, skipped = false;
    for (size_t index = 0; index < TESTS; index++) {
        if (only && !streq (only, s_tests[index].name))
            continue;
        found = true;
        if (s_tests[index].needs_database && !notifier_test_db_conninfo ()) {
            printf (" * %s: SKIPPED (PHANTOM_TEST_DATABASE not set)\n", s_tests[index].name);
            skipped = true;
            continue;
        }
        s_tests[index].test (verbose);
    }
    if (!found) {
        fprintf (stderr, "notifier_selftest: unknown class %s\n", only);
        return 1;
    }
    zsys_shutdown ();
    return skipped && only ? SKIP : 0;
}
