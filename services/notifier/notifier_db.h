/*  =========================================================================
    notifier_db - how the notifier's connections are opened

    The event writer, the digest and the webhook loop each own a connection
    (the loop runs in its own thread), opened and kept with proto_pg: all
    three bound every statement the same way and name themselves the same
    in pg_stat_activity.
    =========================================================================
*/
#ifndef NOTIFIER_DB_H_INCLUDED
#define NOTIFIER_DB_H_INCLUDED

#include "proto_pg.h"

#include <stdbool.h>

#define NOTIFIER_DB_APPLICATION "phantom-notifier"
//  No notifier statement may hold its connection longer.
#define NOTIFIER_DB_STATEMENT_TIMEOUT_MS 10000

//  Self test of the settings against a real PostgreSQL
//  (needs PHANTOM_TEST_DATABASE)
void notifier_db_test (bool verbose);

#endif
