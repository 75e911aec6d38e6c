/*  =========================================================================
    notifier_http - a minimal blocking HTTP/1.1 client for webhook POSTs,
    and the HMAC-SHA256 signature every webhook body carries

    http:// only: https is out of scope for this phase (no TLS library is
    linked). Every step (connect, send, receive) is bounded by one overall
    deadline, so a slow or silent receiver costs at most timeout_ms. Name
    resolution uses getaddrinfo, which has no timeout of its own.
    =========================================================================
*/
#ifndef NOTIFIER_HTTP_H_INCLUDED
#define NOTIFIER_HTTP_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

//  "sha256=" + 64 hex digits
#define NOTIFIER_HTTP_SIGNATURE_MAX 71

//  Result codes of notifier_http_post other than an HTTP status.
#define NOTIFIER_HTTP_TRANSIENT -1 //  connect, timeout, broken response: worth a retry
#define NOTIFIER_HTTP_PERMANENT -2 //  bad or unsupported URL: a retry cannot help

//  Writes "sha256=<hex HMAC-SHA256(secret, body)>" into signature.
void notifier_http_sign (const char *secret, const void *body, size_t size,
                         char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1]);

//  POSTs body as application/json to url, adding headers (complete
//  "Name: value\r\n" lines, or NULL). Returns the HTTP status (100..599),
//  NOTIFIER_HTTP_TRANSIENT or NOTIFIER_HTTP_PERMANENT; on failure a reason
//  goes into error.
int notifier_http_post (const char *url, const char *headers, const char *body, size_t size,
                        int timeout_ms, char *error, size_t error_size);

//  Self test
void notifier_http_test (bool verbose);

#endif
