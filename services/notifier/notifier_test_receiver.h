/*  =========================================================================
    notifier_test_receiver - a tiny HTTP(S) server for the self tests

    Listens on 127.0.0.1 (ephemeral port), a thread per connection, several
    requests per connection (keep-alive). Request n is answered with
    statuses [n] (the last one repeats), and kept so a test can check path,
    body and signature. Beside an HTTP status, an entry may be one of the
    modes below. With a certificate and key it speaks TLS. Test code only.
    =========================================================================
*/
#ifndef NOTIFIER_TEST_RECEIVER_H_INCLUDED
#define NOTIFIER_TEST_RECEIVER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

#define NOTIFIER_RECEIVER_SILENT 0   //  read the request, never answer
#define NOTIFIER_RECEIVER_TRICKLE -1 //  answer 200, one byte a second
#define NOTIFIER_RECEIVER_ENDLESS -2 //  answer 200 with a body that never ends

typedef struct _notifier_receiver_t notifier_receiver_t;

notifier_receiver_t *notifier_receiver_new (const int *statuses, size_t count);
//  The same over TLS with a PEM certificate (chain) and key.
notifier_receiver_t *notifier_receiver_new_tls (const int *statuses, size_t count,
                                                const char *certificate, const char *key);
void notifier_receiver_destroy (notifier_receiver_t **self_p);
int notifier_receiver_port (notifier_receiver_t *self);
//  Requests received so far, and connections accepted.
size_t notifier_receiver_count (notifier_receiver_t *self);
size_t notifier_receiver_connections (notifier_receiver_t *self);
//  Fresh copies of request index's body, path and X-PhantomWatch-Signature
//  value (NULL if none); the caller frees them.
char *notifier_receiver_body (notifier_receiver_t *self, size_t index);
char *notifier_receiver_path (notifier_receiver_t *self, size_t index);
char *notifier_receiver_signature (notifier_receiver_t *self, size_t index);
//  True if request index carries "sha256=<hex HMAC-SHA256 of its body
//  under secret>", recomputed here independently of notifier_http_sign,
//  as a receiver would.
bool notifier_receiver_signed (notifier_receiver_t *self, size_t index, const char *secret);

//  Makes a test CA and, in a fresh temporary directory (returned; the
//  caller frees it after notifier_receiver_certificates_remove):
//  ca.pem, server.pem/server.key (signed by the CA, for IP 127.0.0.1 and
//  localhost) and rogue.pem/rogue.key (self-signed, same names). NULL if
//  the openssl command failed.
char *notifier_receiver_certificates (void);
void notifier_receiver_certificates_remove (const char *directory);

#endif
