/*  =========================================================================
    notifier_http - webhook POSTs through libcurl, many at once, and the
    HMAC-SHA256 signature every webhook body carries

    http:// and https:// (certificates checked against the system store, or
    ca_file), no redirects, no proxy, bounded connect time, total time and
    response size. Every connection is opened only to an address that
    proto_address allows, checked on the address itself as the socket is
    opened, so a name that resolves elsewhere a second time (DNS rebinding)
    changes nothing. Transfers run side by side on one curl multi handle,
    which keeps connections to a receiver open for the next POST.
    =========================================================================
*/
#ifndef NOTIFIER_HTTP_H_INCLUDED
#define NOTIFIER_HTTP_H_INCLUDED

#include "proto_address.h"

#include <stdbool.h>
#include <stddef.h>

//  "sha256=" + 64 hex digits
#define NOTIFIER_HTTP_SIGNATURE_MAX 71

//  How a POST ended. Users see these names (and "HTTP <status>"), never
//  the transport's own words.
typedef enum {
    NOTIFIER_HTTP_ANSWERED,    //  an HTTP status came back
    NOTIFIER_HTTP_BAD_URL,     //  not a URL we deliver to: a retry cannot help
    NOTIFIER_HTTP_NOT_ALLOWED, //  every address refused by proto_address: nothing was sent
    NOTIFIER_HTTP_NOT_FOUND,   //  the host name does not resolve
    NOTIFIER_HTTP_REFUSED,     //  connection refused
    NOTIFIER_HTTP_TIMEOUT,     //  connect or answer took too long
    NOTIFIER_HTTP_TLS,         //  handshake or certificate failed
    NOTIFIER_HTTP_NETWORK,     //  any other connection failure
    NOTIFIER_HTTP_BAD_RESPONSE //  no, broken or oversized answer
} notifier_http_outcome_t;

typedef struct {
    int timeout_ms;          //  whole POST, connect to last byte
    int connect_timeout_ms;  //  resolving and connecting (and TLS)
    size_t response_max;     //  bytes of an answer (headers and body) read at most
    const char *ca_file;     //  trusted CAs (PEM); NULL: the system store
    proto_address_t *policy; //  addresses that may be reached (borrowed)
} notifier_http_settings_t;

typedef struct {
    void *tag;                       //  as given to notifier_http_start
    notifier_http_outcome_t outcome; //  how it ended
    int status;                      //  HTTP status when ANSWERED, else 0
    char detail[256];                //  libcurl's words, for the log only
} notifier_http_result_t;

typedef struct _notifier_http_t notifier_http_t;

//  Copies settings (policy stays borrowed and must outlive the client).
notifier_http_t *notifier_http_new (const notifier_http_settings_t *settings);
//  Aborts what is still in flight.
void notifier_http_destroy (notifier_http_t **self_p);

//  Writes "sha256=<hex HMAC-SHA256(secret, body)>" into signature.
void notifier_http_sign (const char *secret, const void *body, size_t size,
                         char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1]);

//  Starts POSTing body (copied) as application/json to url with headers
//  (a NULL-ended list of "Name: value", or NULL). tag comes back with the
//  result. 0, or -1 if libcurl would not take it (then nothing started).
int notifier_http_start (notifier_http_t *self, const char *url, const char *const *headers,
                         const char *body, size_t size, void *tag);
//  Moves the transfers along, waiting at most timeout_ms for something to
//  happen on them or for fd (-1: none) to become readable.
void notifier_http_wait (notifier_http_t *self, int fd, int timeout_ms);
//  Takes the next finished POST's result; false when none has finished.
bool notifier_http_next (notifier_http_t *self, notifier_http_result_t *result);
//  POSTs in flight.
size_t notifier_http_active (notifier_http_t *self);
//  Aborts one POST in flight and returns its tag; NULL when none is.
void *notifier_http_abort (notifier_http_t *self);

//  The user's words for an outcome: "timeout", "TLS error", ...
const char *notifier_http_outcome_name (notifier_http_outcome_t outcome);

//  One POST, waited for (tests and tools): the result's outcome.
notifier_http_outcome_t notifier_http_post (notifier_http_t *self, const char *url,
                                            const char *const *headers, const char *body,
                                            size_t size, notifier_http_result_t *result);

//  Self test
void notifier_http_test (bool verbose);

#endif
