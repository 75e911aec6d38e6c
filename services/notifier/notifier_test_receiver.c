/*  =========================================================================
    notifier_test_receiver - a tiny HTTP server for the self tests
    =========================================================================
*/
#include "notifier_test_receiver.h"

#include <arpa/inet.h>
#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUESTS_MAX 32
#define REQUEST_BYTES_MAX 65536

typedef struct {
    char *path;      //  request target
    char *body;      //  body bytes, NUL-terminated
    char *signature; //  X-PhantomWatch-Signature value, or NULL
} s_request_t;

struct _notifier_receiver_t {
    int listener;                       //  listening socket
    int port;                           //  its port
    int statuses[REQUESTS_MAX];         //  answer n gets statuses [min(n, count-1)]
    size_t status_count;                //  entries in statuses
    pthread_t thread;                   //  accept loop
    pthread_mutex_t mutex;              //  guards requests and count
    s_request_t requests[REQUESTS_MAX]; //  what arrived
    size_t count;                       //  requests received
    volatile bool stop;                 //  asks the thread to end
};

//  Reads one request (headers + Content-Length body) within 5 s; NULL on failure.
static char *
s_read_request (notifier_receiver_t *self, int fd, size_t *header_size, size_t *body_size)
{
    char *buffer = malloc (REQUEST_BYTES_MAX + 1);
    assert (buffer);
    size_t got = 0;
    int64_t deadline = zclock_mono () + 5000;
    long content_length = -1;
    char *end_of_headers = NULL;
    while (!self->stop && got < REQUEST_BYTES_MAX && zclock_mono () < deadline) {
        struct pollfd item = {.fd = fd, .events = POLLIN};
        if (poll (&item, 1, 100) <= 0)
            continue;
        ssize_t rc = recv (fd, buffer + got, REQUEST_BYTES_MAX - got, 0);
        if (rc <= 0)
            break;
        got += (size_t)rc;
        buffer[got] = 0;
        if (!end_of_headers && (end_of_headers = strstr (buffer, "\r\n\r\n"))) {
            char *length = strcasestr (buffer, "\r\nContent-Length:");
            content_length = length ? atol (length + 17) : 0;
        }
        if (end_of_headers &&
            got >= (size_t)(end_of_headers + 4 - buffer) + (size_t)content_length) {
            *header_size = (size_t)(end_of_headers + 4 - buffer);
            *body_size = (size_t)content_length;
            return buffer;
        }
    }
    free (buffer);
    return NULL;
}

static char *
s_header (const char *head, const char *name)
{
    char *pattern = zsys_sprintf ("\r\n%s:", name);
    char *at = strcasestr (head, pattern);
    size_t skip = strlen (pattern);
    zstr_free (&pattern);
    if (!at)
        return NULL;
    at += skip;
    while (*at == ' ')
        at++;
    return strndup (at, strcspn (at, "\r\n"));
}

static void *
s_receiver_thread (void *args)
{
    notifier_receiver_t *self = (notifier_receiver_t *)args;
    while (!self->stop) {
        struct pollfd item = {.fd = self->listener, .events = POLLIN};
        if (poll (&item, 1, 100) <= 0)
            continue;
        int fd = accept (self->listener, NULL, NULL);
        if (fd < 0)
            continue;
        size_t header_size = 0, body_size = 0;
        char *request = s_read_request (self, fd, &header_size, &body_size);
        if (request) {
            request[header_size - 2] = 0; //  cut after the last header line's CRLF
            pthread_mutex_lock (&self->mutex);
            size_t index = self->count;
            if (index < REQUESTS_MAX) {
                char *space = strchr (request, ' ');
                self->requests[index].path =
                    space ? strndup (space + 1, strcspn (space + 1, " ")) : strdup ("");
                self->requests[index].body = strndup (request + header_size, body_size);
                self->requests[index].signature = s_header (request, "X-PhantomWatch-Signature");
            }
            self->count++;
            pthread_mutex_unlock (&self->mutex);
            int status =
                self->statuses[index < self->status_count ? index : self->status_count - 1];
            if (status) {
                char *response = zsys_sprintf (
                    "HTTP/1.1 %d Test\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", status);
                if (send (fd, response, strlen (response), MSG_NOSIGNAL) < 0)
                    zsys_warning ("notifier_receiver - send: %s", strerror (errno));
                zstr_free (&response);
            } else
                //  Silent: hold the connection until the client gives up.
                while (!self->stop) {
                    struct pollfd peer = {.fd = fd, .events = POLLIN};
                    char byte;
                    if (poll (&peer, 1, 100) > 0 && recv (fd, &byte, 1, 0) <= 0)
                        break;
                }
            free (request);
        }
        close (fd);
    }
    return NULL;
}

notifier_receiver_t *
notifier_receiver_new (const int *statuses, size_t count)
{
    assert (statuses && count > 0 && count <= REQUESTS_MAX);
    notifier_receiver_t *self = (notifier_receiver_t *)zmalloc (sizeof (notifier_receiver_t));
    assert (self);
    memcpy (self->statuses, statuses, count * sizeof (int));
    self->status_count = count;
    pthread_mutex_init (&self->mutex, NULL);
    self->listener = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    socklen_t length = sizeof address;
    if (self->listener < 0 || bind (self->listener, (struct sockaddr *)&address, sizeof address) ||
        listen (self->listener, 16) ||
        getsockname (self->listener, (struct sockaddr *)&address, &length)) {
        zsys_error ("notifier_receiver - cannot listen: %s", strerror (errno));
        if (self->listener >= 0)
            close (self->listener);
        pthread_mutex_destroy (&self->mutex);
        free (self);
        return NULL;
    }
    self->port = ntohs (address.sin_port);
    pthread_create (&self->thread, NULL, s_receiver_thread, self);
    return self;
}

void
notifier_receiver_destroy (notifier_receiver_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_receiver_t *self = *self_p;
        self->stop = true;
        pthread_join (self->thread, NULL);
        close (self->listener);
        for (size_t index = 0; index < REQUESTS_MAX && index < self->count; index++) {
            free (self->requests[index].path);
            free (self->requests[index].body);
            free (self->requests[index].signature);
        }
        pthread_mutex_destroy (&self->mutex);
        free (self);
        *self_p = NULL;
    }
}

int
notifier_receiver_port (notifier_receiver_t *self)
{
    return self->port;
}

size_t
notifier_receiver_count (notifier_receiver_t *self)
{
    pthread_mutex_lock (&self->mutex);
    size_t count = self->count;
    pthread_mutex_unlock (&self->mutex);
    return count;
}

static char *
s_copy (notifier_receiver_t *self, size_t index, size_t offset)
{
    char *copy = NULL;
    pthread_mutex_lock (&self->mutex);
    if (index < self->count && index < REQUESTS_MAX) {
        char *field = *(char **)((char *)&self->requests[index] + offset);
        copy = field ? strdup (field) : NULL;
    }
    pthread_mutex_unlock (&self->mutex);
    return copy;
}

char *
notifier_receiver_body (notifier_receiver_t *self, size_t index)
{
    return s_copy (self, index, offsetof (s_request_t, body));
}

char *
notifier_receiver_path (notifier_receiver_t *self, size_t index)
{
    return s_copy (self, index, offsetof (s_request_t, path));
}

char *
notifier_receiver_signature (notifier_receiver_t *self, size_t index)
{
    return s_copy (self, index, offsetof (s_request_t, signature));
}

bool
notifier_receiver_signed (notifier_receiver_t *self, size_t index, const char *secret)
{
    char *body = notifier_receiver_body (self, index);
    char *signature = notifier_receiver_signature (self, index);
    bool valid = false;
    if (body && signature) {
        unsigned char mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256_state state;
        crypto_auth_hmacsha256_init (&state, (const unsigned char *)secret, strlen (secret));
        crypto_auth_hmacsha256_update (&state, (const unsigned char *)body, strlen (body));
        crypto_auth_hmacsha256_final (&state, mac);
        char hex[2 * sizeof mac + 1];
        sodium_bin2hex (hex, sizeof hex, mac, sizeof mac);
        valid = strncmp (signature, "sha256=", 7) == 0 && streq (signature + 7, hex);
    }
    free (body);
    free (signature);
    return valid;
}
