/*  =========================================================================
    notifier_writer - turns detector events into notifications in PostgreSQL

    One notification per episode, never per reading: phantom.start gives
    "episode:<port>:<start ms>:start", phantom.end gives "...:end" with the
    episode's duration, energy and cost (phantom_tariff_cost over the
    episode's time: the tariff in force then, flat or time-of-use). A port
    whose role is always_on is never told about (DESIGN.md): its episode
    events are skipped, counted and logged.

    One notification per sensor outage: the status event that takes a port
    offline gives sensor.offline "sensor:<port>:<last reading ms>:offline"
    ("No reading from TV since 2:05 PM."), and the first status event after
    it (previous offline) gives sensor.online "...:online" with how long the
    port was silent, but only for an outage whose offline notice exists.

    INSERT ... ON CONFLICT DO NOTHING on (user_id, dedupe_key) makes a
    re-delivered event harmless. A per-port cool-down drops an episode that
    starts within cooldown_seconds of the port's previous notified episode
    (its start, or its end once known), and an outage that starts within
    cooldown_seconds of the port's last told outage (and so its return).
    Both are derived from the notifications table alone, so they survive
    restarts. Each new notification enqueues one webhook delivery per
    enabled webhook of its user, in the same transaction, and is announced
    with pg_notify ('phantom_notification', '<user>:<id>') for live push.
    Texts are in the owner's locale, currency and time zone (notifier_format).
    =========================================================================
*/
#ifndef NOTIFIER_WRITER_H_INCLUDED
#define NOTIFIER_WRITER_H_INCLUDED

#include "proto.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct _notifier_writer_t notifier_writer_t;

//  What notifier_writer_handle did with an event.
typedef enum {
    NOTIFIER_WRITER_NOTIFIED = 0,  //  a notification was written
    NOTIFIER_WRITER_DUPLICATE = 1, //  this episode's or outage's notification already exists
    NOTIFIER_WRITER_COOLDOWN = 2,  //  inside the port's cool-down: not notified
    NOTIFIER_WRITER_IGNORED = 3,   //  not a kind that notifies (other status changes)
    NOTIFIER_WRITER_UNTOLD = 4,    //  back online after an outage that was not told
    NOTIFIER_WRITER_ALWAYS_ON = 5, //  an episode of an always-on port: never notified
    NOTIFIER_WRITER_DROPPED = 6,   //  unknown port, bad data, or the database failed
} notifier_writer_result_t;

//  Connects lazily (at the first event, and again after a failure), so a
//  database that is down at start-up does not stop the service.
//  verbose: debug lines (duplicates, cool-downs) are logged.
notifier_writer_t *notifier_writer_new (const char *conninfo, int64_t cooldown_seconds,
                                        bool verbose);
void notifier_writer_destroy (notifier_writer_t **self_p);

//  Handles one decoded event at now_ms (Unix ms: the caller's clock, so
//  tests can fix it; a time earlier that day is written without its date).
//  Never crashes on its content.
notifier_writer_result_t notifier_writer_handle (notifier_writer_t *self,
                                                 const proto_event_t *event, int64_t now_ms);

//  Notifications written so far with result (counts per result).
uint64_t notifier_writer_count (notifier_writer_t *self, notifier_writer_result_t result);

//  Self test (needs PHANTOM_TEST_DATABASE)
void notifier_writer_test (bool verbose);

#endif
