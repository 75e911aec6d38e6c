/*  =========================================================================
    notifier_webhook - works off the webhook_deliveries outbox

    Claims due pending deliveries and POSTs each notification as JSON
    {id, kind, title, message, data, createdAt} with
    X-PhantomWatch-Signature: sha256=<hex HMAC-SHA256(secret, body)>, and
    records the outcome. Deliveries run side by side (notifier_http): at
    most batch in flight, of them at most per_user for one user, so one
    user's slow receivers hold only that user's share and everyone else's
    webhooks leave at once. A failure is retried after backoff_ms, doubling
    each time (1 s, 2 s, 4 s ...) until attempts are used up; a URL that can
    never work (malformed, or an address proto_address refuses) or a 4xx
    other than 408/429 fails at once. What the user sees of a failure is
    its category ("timeout", "connection refused", "TLS error", "HTTP 500",
    "address not allowed" ...), never the transport's words.
    Claiming pushes next_attempt_at forward as a lease, so a notifier that
    dies mid-delivery leaves the row to be retried: delivery is at least
    once, and receivers dedupe on the body's id (or X-PhantomWatch-Delivery).
    =========================================================================
*/
#ifndef NOTIFIER_WEBHOOK_H_INCLUDED
#define NOTIFIER_WEBHOOK_H_INCLUDED

#include "proto_address.h"

#include <czmq.h>
#include <stdbool.h>

typedef struct {
    const char *conninfo;    //  libpq connection string
    int batch;               //  deliveries in flight at once, all users
    int per_user;            //  of them, one user's at most
    int timeout_ms;          //  per delivery, connect to last byte
    int attempts;            //  before a delivery is marked failed
    int backoff_ms;          //  first retry delay; doubles per attempt
    const char *ca_file;     //  CAs trusted for https (PEM); NULL: the system store
    proto_address_t *policy; //  addresses receivers may have (borrowed; outlives us)
    bool verbose;            //  log each delivery
} notifier_webhook_settings_t;

typedef struct _notifier_webhook_t notifier_webhook_t;

//  Copies settings; connects lazily, so a database that is down does not
//  stop the service.
notifier_webhook_t *notifier_webhook_new (const notifier_webhook_settings_t *settings);
void notifier_webhook_destroy (notifier_webhook_t **self_p);

//  Delivers what is due now, at most one batch (within the per-user
//  share), and waits until all of it has an outcome. pipe (may be NULL)
//  is watched meanwhile: a message there stops the batch early and hands
//  what is unfinished back. Returns deliveries started, or -1 if the
//  database failed.
int notifier_webhook_deliver (notifier_webhook_t *self, zsock_t *pipe);

//  Totals since start: delivered, failed for good, and failed attempts.
uint64_t notifier_webhook_delivered (notifier_webhook_t *self);
uint64_t notifier_webhook_failed (notifier_webhook_t *self);
uint64_t notifier_webhook_retried (notifier_webhook_t *self);

//  The delivery loop as a CZMQ actor (args: notifier_webhook_settings_t *,
//  copied before the actor signals ready). Commands: "WAKE" (deliveries
//  were enqueued), "$TERM" (what is in flight is aborted and handed back).
//  It claims more whenever a delivery ends, and without WAKE looks for due
//  retries every second.
void notifier_webhook_actor (zsock_t *pipe, void *args);

//  Self test (needs PHANTOM_TEST_DATABASE)
void notifier_webhook_test (bool verbose);

#endif
