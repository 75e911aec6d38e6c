/*  =========================================================================
    gateway_http_rate - abuse limits: a token bucket per key, a table per kind
    =========================================================================
*/
#ifndef GATEWAY_HTTP_RATE_H_INCLUDED
#define GATEWAY_HTTP_RATE_H_INCLUDED

#include <stdbool.h>

//  Abuse limits: a token bucket per key, a table per kind, so that one
//  kind of failure never spends another's budget. Each counted attempt
//  takes one from its key's bucket of _BURST, which refills _PER_HOUR an
//  hour; while a bucket is empty the attempts it limits are answered 429
//  "rate_limited" with Retry-After. Keys that never count are never
//  limited. Process-wide; bounded memory (4096 entries a kind). An IPv6
//  client counts by its /64, an IPv4 one by its address.
typedef enum {
    GATEWAY_RATE_TOKEN,    //  device tokens that matched nothing, per address; a
                           //  valid token is never looked up here
    GATEWAY_RATE_LOGIN,    //  failed logins, per address
    GATEWAY_RATE_ACCOUNT,  //  failed logins, per account (normalised email), from
                           //  any address: credential stuffing from many
    GATEWAY_RATE_REGISTER, //  registrations (and taken-email answers), per address
    GATEWAY_RATE_KINDS
} gateway_rate_kind_t;
#define GATEWAY_RATE_TOKEN_BURST 20
#define GATEWAY_RATE_TOKEN_PER_HOUR 600
#define GATEWAY_RATE_LOGIN_BURST 20
#define GATEWAY_RATE_LOGIN_PER_HOUR 600
#define GATEWAY_RATE_ACCOUNT_BURST 10
#define GATEWAY_RATE_ACCOUNT_PER_HOUR 12
#define GATEWAY_RATE_REGISTER_BURST 20
#define GATEWAY_RATE_REGISTER_PER_HOUR 20
//  true if key (an address's text; for GATEWAY_RATE_ACCOUNT any text) is
//  limited now; *retry_after_s (may be NULL) then says when the next
//  attempt is allowed. Text that is not an address is never limited.
bool gateway_http_rate_limited (gateway_rate_kind_t kind, const char *key, int *retry_after_s);
//  Counts one attempt against key.
void gateway_http_rate_limit_hit (gateway_rate_kind_t kind, const char *key);
//  Sets kind's limits (values <= 0 keep the current) and forgets its counts.
void gateway_http_rate_limit_configure (gateway_rate_kind_t kind, int burst, int refill_per_hour);

void gateway_http_rate_test (bool verbose);

#endif
