/*  =========================================================================
    notifier_test_receiver - a tiny HTTP server for the self tests

    A thread with a listening socket on 127.0.0.1 (ephemeral port) that
    answers request n with statuses [n] (the last one repeats), and keeps
    what it got so a test can check path, body and signature. Status 0 means
    "read the request, never answer" (to test timeouts). Test code only.
    =========================================================================
*/
#ifndef NOTIFIER_TEST_RECEIVER_H_INCLUDED
#define NOTIFIER_TEST_RECEIVER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>

typedef struct _notifier_receiver_t notifier_receiver_t;

notifier_receiver_t *notifier_receiver_new (const int *statuses, size_t count);
void notifier_receiver_destroy (notifier_receiver_t **self_p);
int notifier_receiver_port (notifier_receiver_t *self);
//  Requests received so far.
size_t notifier_receiver_count (notifier_receiver_t *self);
//  Fresh copies of request index's body, path and X-PhantomWatch-Signature
//  value (NULL if none); the caller frees them.
char *notifier_receiver_body (notifier_receiver_t *self, size_t index);
char *notifier_receiver_path (notifier_receiver_t *self, size_t index);
char *notifier_receiver_signature (notifier_receiver_t *self, size_t index);
//  True if request index carries "sha256=<hex HMAC-SHA256 of its body
//  under secret>", recomputed here independently of notifier_http_sign,
//  as a receiver would.
bool notifier_receiver_signed (notifier_receiver_t *self, size_t index, const char *secret);

#endif
