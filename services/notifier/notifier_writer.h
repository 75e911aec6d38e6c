/*  =========================================================================
    notifier_writer - turns phantom events into notifications in PostgreSQL

    One notification per episode, never per reading: phantom.start gives
    "episode:<port>:<start ms>:start", phantom.end gives "...:end" with the
    episode's duration, energy and cost. INSERT ... ON CONFLICT DO NOTHING on
    (user_id, dedupe_key) makes a re-delivered event harmless. A per-port
    cool-down drops an episode that starts within cooldown_seconds of the
    port's previous notified episode (its start, or its end once known);
    it is derived from the notifications table alone, so it survives
    restarts. Each new notification enqueues one webhook delivery per enabled
    webhook of its user, in the same transaction, and is announced with
    pg_notify ('phantom_notification', '<user>:<id>') for live push.
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
    NOTIFIER_WRITER_DUPLICATE = 1, //  this episode's notification already exists
    NOTIFIER_WRITER_COOLDOWN = 2,  //  inside the port's cool-down: not notified
    NOTIFIER_WRITER_IGNORED = 3,   //  not a kind that notifies (status.*)
    NOTIFIER_WRITER_DROPPED = 4,   //  unknown port, bad data, or the database failed
} notifier_writer_result_t;

//  Connects lazily (at the first event, and again after a failure), so a
//  database that is down at start-up does not stop the service.
//  verbose: debug lines (duplicates, cool-downs) are logged.
notifier_writer_t *notifier_writer_new (const char *conninfo, int64_t cooldown_seconds,
                                        bool verbose);
void notifier_writer_destroy (notifier_writer_t **self_p);

//  Handles one decoded event. Never crashes on its content.
notifier_writer_result_t notifier_writer_handle (notifier_writer_t *self,
                                                 const proto_event_t *event);

//  Notifications written so far with result (counts per result).
uint64_t notifier_writer_count (notifier_writer_t *self, notifier_writer_result_t result);

//  Self test (needs PHANTOM_TEST_DATABASE)
void notifier_writer_test (bool verbose);

#endif
