/*  =========================================================================
    notifier_service - the notifier: SUB to every detector's events, write
    notifications, and run the webhook delivery loop beside it

    Notifier: SUB connects to event_endpoint at port + i for each detector
    partition i (detectors bind, being the static part), topics "phantom."
    (episodes) and "status." (a sensor going offline and coming back);
    notifications go to PostgreSQL (notifier_writer), the daily digest is
    checked at most once a minute (notifier_digest), webhooks leave from a
    separate actor with its own connection (notifier_webhook).
    Config keys: database, event_endpoint (comma-separated list allowed),
    partitions, notifier_cooldown_seconds (600), notifier_rcvhwm (10000),
    notifier_webhook_batch (32 in flight), notifier_webhook_per_user (4 of
    them one user's), notifier_webhook_timeout_ms (5000),
    notifier_webhook_attempts (8), notifier_webhook_backoff_ms (1000),
    webhook_allow_private (0) and webhook_allow_cidrs (proto_address),
    webhook_ca_file (tests only; default the system store),
    notifier_digest_hour (8, local hour of each user).
    =========================================================================
*/
#ifndef NOTIFIER_SERVICE_H_INCLUDED
#define NOTIFIER_SERVICE_H_INCLUDED

#include "proto_config.h"
#include "notifier_writer.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct _notifier_service_t notifier_service_t;

//  NULL (after logging why) on a bad config value or endpoint.
notifier_service_t *notifier_service_new (proto_config_t *config, bool verbose);
void notifier_service_destroy (notifier_service_t **self_p);

//  Waits at most timeout_ms (clamped to 0..1000) for events and handles
//  those that arrived; runs the digest check when a minute has passed since
//  the last one (the first poll runs it at once). 0, or -1 if interrupted.
int notifier_service_poll (notifier_service_t *self, int timeout_ms);

//  Messages received, and those dropped as malformed.
uint64_t notifier_service_received (notifier_service_t *self);
uint64_t notifier_service_malformed (notifier_service_t *self);
//  Events per writer result.
uint64_t notifier_service_count (notifier_service_t *self, notifier_writer_result_t result);

//  Self test (needs PHANTOM_TEST_DATABASE)
void notifier_service_test (bool verbose);

#endif
