/*  =========================================================================
    notifier_selftest - runs one notifier class test, or all of them

    Usage: notifier_selftest [-v] [CLASS ...]
    Classes that need PostgreSQL read PHANTOM_TEST_DATABASE and exit 77
    (ctest SKIP_RETURN_CODE) when it is not set.
    =========================================================================
*/
#include "notifier_db.h"
#include "notifier_digest.h"
#include "notifier_format.h"
#include "notifier_http.h"
#include "notifier_service.h"
#include "notifier_webhook.h"
#include "notifier_writer.h"
#include "proto_selftest.h"

#include <czmq.h>
#include <sodium.h>

static const proto_selftest_t s_tests[] = {
    {"notifier_db", notifier_db_test, true},
    {"notifier_http", notifier_http_test, false},
    {"notifier_format", notifier_format_test, false},
    {"notifier_writer", notifier_writer_test, true},
    {"notifier_webhook", notifier_webhook_test, true},
    {"notifier_digest", notifier_digest_test, true},
    {"notifier_service", notifier_service_test, true},
};

int
main (int argc, char *argv[])
{
    bool verbose = false;
    for (int index = 1; index < argc; index++)
        verbose |= streq (argv[index], "-v");
    if (!verbose)
        //  Test logs would drown the result; -v brings them back.
        zsys_set_logstream (NULL);
    assert (sodium_init () >= 0);
    int rc = proto_selftest_run ("notifier_selftest", s_tests, sizeof s_tests / sizeof s_tests[0],
                                 argc - 1, argv + 1);
    zsys_shutdown ();
    return rc;
}
