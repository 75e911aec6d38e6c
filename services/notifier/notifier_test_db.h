/*  =========================================================================
    notifier_test_db - fixtures for the self tests that need PostgreSQL

    The database comes from PHANTOM_TEST_DATABASE (a libpq connection
    string) and must carry every migration. Every test makes its own
    user (unique e-mail) and deletes it at the end; ON DELETE CASCADE takes
    its ports, notifications, webhooks and deliveries along. Test code only.
    =========================================================================
*/
#ifndef NOTIFIER_TEST_DB_H_INCLUDED
#define NOTIFIER_TEST_DB_H_INCLUDED

#include "proto.h"
#include <libpq-fe.h>
#include <stdint.h>

//  The test database's connection string, or NULL when the test must skip.
const char *notifier_test_db_conninfo (void);
//  Connects to it; asserts success.
PGconn *notifier_test_db_connect (void);
//  Creates a user with this flat tariff for all time and currency, in UTC
//  without a locale; returns its id.
int64_t notifier_test_db_user (PGconn *db, double tariff, const char *currency);
//  Sets the user's time zone and locale (NULL: none).
void notifier_test_db_user_place (PGconn *db, int64_t user, const char *time_zone,
                                  const char *locale);
//  Creates a device and a port named name for user; returns the port's uuid (caller frees).
char *notifier_test_db_port (PGconn *db, int64_t user, const char *name);
//  Deletes the user and everything of theirs.
void notifier_test_db_drop_user (PGconn *db, int64_t user);
//  First column of the first row of sql with up to 3 text parameters (NULL
//  ends the list), as a fresh string, or NULL when there is no row or NULL.
char *notifier_test_db_value (PGconn *db, const char *sql, const char *p1, const char *p2,
                              const char *p3);
//  The same, as an integer (-1 for no row or NULL).
int64_t notifier_test_db_int (PGconn *db, const char *sql, const char *p1, const char *p2,
                              const char *p3);
//  A detector's event of kind about port's episode from start to end (0:
//  open) at watts; the mean is energy_wh over the episode, or watts while
//  it is open. A status event has no episode.
proto_event_t notifier_test_db_event (const char *kind, int64_t user, const char *port,
                                      int64_t start, int64_t end, double watts, double energy_wh);
//  A detector's status event of port at ts: status now, previous before.
proto_event_t notifier_test_db_status (int64_t user, const char *port, int64_t ts,
                                       proto_status_t status, proto_status_t previous);

#endif
