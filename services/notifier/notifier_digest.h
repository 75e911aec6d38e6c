/*  =========================================================================
    notifier_digest - the daily digest per user

    Once per local day, from digest hour (local, users.time_zone) on, every
    user with at least one port and users.digest_enabled gets one
    notification of kind "digest", dedupe key "digest:<YYYY-MM-DD local
    today>", about yesterday (the local day): the phantom energy and its
    cost, the energy used, the ports that wasted most, and the yearly
    projection (the ports still learning said as such). Every number comes
    from phantom_figures (user, yesterday's start, yesterday's end, now),
    the function the overview (/api/summary) reads, so the digest says what
    the overview says; an always-on port is never named as waste. A day on
    which no port reported gets no digest.

    "From the hour on" rather than "in the hour": a notifier that was down
    at the digest hour, or a day whose digest hour DST skips, still sends
    that day's digest later the same day. One statement per user writes the
    digest, its webhook deliveries and its pg_notify announcement together;
    the unique (user_id, dedupe_key) makes checks restart-safe and
    repeatable. The text is in the user's locale and currency
    (notifier_format). Needs migrations 003, 006 (users.digest_enabled) and
    013 (phantom_figures); without them it logs once per connection and
    sends nothing.
    =========================================================================
*/
#ifndef NOTIFIER_DIGEST_H_INCLUDED
#define NOTIFIER_DIGEST_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

typedef struct _notifier_digest_t notifier_digest_t;

//  hour: local hour (0..23) from which a day's digest is due. Connects
//  lazily, at the first check and again after a failure.
notifier_digest_t *notifier_digest_new (const char *conninfo, int hour, bool verbose);
void notifier_digest_destroy (notifier_digest_t **self_p);

//  Writes the digests due at now_ms (Unix ms; the caller's clock, so tests
//  can fix it). Returns how many were written, or -1 if the database failed.
int notifier_digest_check (notifier_digest_t *self, int64_t now_ms);

//  Self test (needs PHANTOM_TEST_DATABASE with all migrations)
void notifier_digest_test (bool verbose);

#endif
