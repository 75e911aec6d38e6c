/*  =========================================================================
    notifier_test_receiver - a tiny HTTP(S) server for the self tests
    =========================================================================
*/
#include "notifier_test_receiver.h"

#include <arpa/inet.h>
#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define REQUESTS_MAX 32
#define CONNECTIONS_MAX 64
#define REQUEST_BYTES_MAX 65536
#define FIRST_REQUEST_MS 5000 //  a new connection's request must be complete by then
#define IDLE_MS 2000          //  a kept-alive connection is closed after this long idle
#define ENDLESS_MS 10000      //  an endless body stops after this long anyway

typedef struct {
    char *path;      //  request target
    char *body;      //  body bytes, NUL-terminated
    char *signature; //  X-PhantomWatch-Signature value, or NULL
} s_request_t;

struct _notifier_receiver_t {
    int listener;                        //  listening socket
    int port;                            //  its port
    SSL_CTX *tls;                        //  NULL: plain HTTP
    int statuses[REQUESTS_MAX];          //  answer n gets statuses [min(n, count-1)]
    size_t status_count;                 //  entries in statuses
    pthread_t thread;                    //  accept loop
    pthread_t handlers[CONNECTIONS_MAX]; //  a thread per connection
    size_t connections;                  //  connections accepted (and handlers started)
    pthread_mutex_t mutex;               //  guards requests and count
    s_request_t requests[REQUESTS_MAX];  //  what arrived
    size_t count;                        //  requests received
    volatile bool stop;                  //  asks the threads to end
};

typedef struct {
    notifier_receiver_t *receiver; //  owner
    int fd;                        //  the connection
    SSL *ssl;                      //  its TLS, or NULL
} s_connection_t;

//  Waits up to timeout_ms for bytes and reads them: >0, 0 (closed or
//  failed) or -1 (nothing yet).
static ssize_t
s_read (s_connection_t *connection, char *buffer, size_t size, int timeout_ms)
{
    if (!connection->ssl || SSL_pending (connection->ssl) == 0) {
        struct pollfd item = {.fd = connection->fd, .events = POLLIN};
        if (poll (&item, 1, timeout_ms) <= 0)
            return -1;
    }
    if (connection->ssl) {
        int rc = SSL_read (connection->ssl, buffer, (int)size);
        if (rc <= 0) {
            int error = SSL_get_error (connection->ssl, rc);
            return error == SSL_ERROR_WANT_READ ? -1 : 0;
        }
        return rc;
    }
    ssize_t rc = recv (connection->fd, buffer, size, 0);
    return rc < 0 && errno == EAGAIN ? -1 : rc < 0 ? 0 : rc;
}

static int
s_write (s_connection_t *connection, const char *data, size_t size)
{
    if (connection->ssl)
        return SSL_write (connection->ssl, data, (int)size) == (int)size ? 0 : -1;
    return send (connection->fd, data, size, MSG_NOSIGNAL) == (ssize_t)size ? 0 : -1;
}

//  Reads one request (headers + Content-Length body) within timeout_ms;
//  NULL on failure, close or timeout.
static char *
s_read_request (s_connection_t *connection, int timeout_ms, size_t *header_size, size_t *body_size)
{
    notifier_receiver_t *self = connection->receiver;
    char *buffer = malloc (REQUEST_BYTES_MAX + 1);
    assert (buffer);
    size_t got = 0;
    int64_t deadline = zclock_mono () + timeout_ms;
    long content_length = -1;
    char *end_of_headers = NULL;
    while (!self->stop && got < REQUEST_BYTES_MAX && zclock_mono () < deadline) {
        ssize_t rc = s_read (connection, buffer + got, REQUEST_BYTES_MAX - got, 100);
        if (rc < 0)
            continue;
        if (rc == 0)
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

//  Holds the connection until the peer closes it or the receiver stops.
static void
s_hold (s_connection_t *connection)
{
    char byte;
    while (!connection->receiver->stop && s_read (connection, &byte, 1, 100) != 0)
        ;
}

//  Answers one request as status says; false when the connection is done.
static bool
s_answer (s_connection_t *connection, int status)
{
    notifier_receiver_t *self = connection->receiver;
    if (status == NOTIFIER_RECEIVER_SILENT) {
        s_hold (connection);
        return false;
    }
    if (status == NOTIFIER_RECEIVER_TRICKLE) {
        const char *answer = "HTTP/1.1 200 Slow\r\nContent-Length: 0\r\n\r\n";
        for (const char *byte = answer; *byte && !self->stop; byte++) {
            if (s_write (connection, byte, 1))
                return false;
            for (int tick = 0; tick < 10 && !self->stop; tick++)
                zclock_sleep (100);
        }
        return !self->stop;
    }
    if (status == NOTIFIER_RECEIVER_ENDLESS) {
        const char *head = "HTTP/1.1 200 Endless\r\nContent-Length: 1000000000\r\n\r\n";
        char chunk[16384];
        memset (chunk, 'x', sizeof chunk);
        int64_t until = zclock_mono () + ENDLESS_MS;
        if (s_write (connection, head, strlen (head)) == 0)
            while (!self->stop && zclock_mono () < until &&
                   s_write (connection, chunk, sizeof chunk) == 0)
                ;
        return false;
    }
    //  A redirect points back here: a client that followed it would come again.
    char *answer = zsys_sprintf ("HTTP/1.1 %d Test\r\nContent-Length: 2\r\n%s\r\nok", status,
                                 status >= 300 && status <= 399 ? "Location: /moved\r\n" : "");
    int rc = s_write (connection, answer, strlen (answer));
    zstr_free (&answer);
    return rc == 0;
}

static void *
s_connection_thread (void *args)
{
    s_connection_t *connection = (s_connection_t *)args;
    notifier_receiver_t *self = connection->receiver;
    bool open = true;
    if (self->tls) {
        //  The handshake is bounded by the socket's receive timeout.
        struct timeval timeout = {.tv_sec = 2};
        setsockopt (connection->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        connection->ssl = SSL_new (self->tls);
        SSL_set_fd (connection->ssl, connection->fd);
        open = SSL_accept (connection->ssl) == 1;
        ERR_clear_error ();
    }
    for (bool first = true; open && !self->stop; first = false) {
        size_t header_size = 0, body_size = 0;
        char *request = s_read_request (connection, first ? FIRST_REQUEST_MS : IDLE_MS,
                                        &header_size, &body_size);
        if (!request)
            break;
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
        free (request);
        open =
            s_answer (connection,
                      self->statuses[index < self->status_count ? index : self->status_count - 1]);
    }
    if (connection->ssl) {
        SSL_shutdown (connection->ssl);
        SSL_free (connection->ssl);
    }
    close (connection->fd);
    free (connection);
    return NULL;
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
        pthread_mutex_lock (&self->mutex);
        size_t slot = self->connections;
        bool room = slot < CONNECTIONS_MAX;
        if (room)
            self->connections++;
        pthread_mutex_unlock (&self->mutex);
        if (!room) {
            close (fd);
            continue;
        }
        s_connection_t *connection = (s_connection_t *)zmalloc (sizeof (s_connection_t));
        assert (connection);
        connection->receiver = self;
        connection->fd = fd;
        int rc = pthread_create (&self->handlers[slot], NULL, s_connection_thread, connection);
        assert (rc == 0);
    }
    return NULL;
}

notifier_receiver_t *
notifier_receiver_new_tls (const int *statuses, size_t count, const char *certificate,
                           const char *key)
{
    assert (statuses && count > 0 && count <= REQUESTS_MAX);
    notifier_receiver_t *self = (notifier_receiver_t *)zmalloc (sizeof (notifier_receiver_t));
    assert (self);
    memcpy (self->statuses, statuses, count * sizeof (int));
    self->status_count = count;
    pthread_mutex_init (&self->mutex, NULL);
    if (certificate) {
        self->tls = SSL_CTX_new (TLS_server_method ());
        if (!self->tls || SSL_CTX_use_certificate_chain_file (self->tls, certificate) != 1 ||
            SSL_CTX_use_PrivateKey_file (self->tls, key, SSL_FILETYPE_PEM) != 1) {
            zsys_error ("notifier_receiver - cannot load %s / %s", certificate, key);
            SSL_CTX_free (self->tls);
            pthread_mutex_destroy (&self->mutex);
            free (self);
            return NULL;
        }
    }
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
        SSL_CTX_free (self->tls);
        pthread_mutex_destroy (&self->mutex);
        free (self);
        return NULL;
    }
    self->port = ntohs (address.sin_port);
    pthread_create (&self->thread, NULL, s_receiver_thread, self);
    return self;
}

notifier_receiver_t *
notifier_receiver_new (const int *statuses, size_t count)
{
    return notifier_receiver_new_tls (statuses, count, NULL, NULL);
}

void
notifier_receiver_destroy (notifier_receiver_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_receiver_t *self = *self_p;
        self->stop = true;
        pthread_join (self->thread, NULL);
        for (size_t index = 0; index < self->connections; index++)
            pthread_join (self->handlers[index], NULL);
        close (self->listener);
        for (size_t index = 0; index < REQUESTS_MAX && index < self->count; index++) {
            free (self->requests[index].path);
            free (self->requests[index].body);
            free (self->requests[index].signature);
        }
        SSL_CTX_free (self->tls);
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

size_t
notifier_receiver_connections (notifier_receiver_t *self)
{
    pthread_mutex_lock (&self->mutex);
    size_t connections = self->connections;
    pthread_mutex_unlock (&self->mutex);
    return connections;
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

char *
notifier_receiver_certificates (void)
{
    char *directory = strdup ("/tmp/phantom-certs-XXXXXX");
    assert (directory);
    if (!mkdtemp (directory)) {
        free (directory);
        return NULL;
    }
    //  P-256 keys: quick to make. The CA is a CA; the server certificate
    //  names 127.0.0.1 and localhost, as does the rogue self-signed one.
    char *script = zsys_sprintf (
        "cd '%s' && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > server.ext &&"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        "  -subj '/CN=PhantomWatch test CA' -addext 'basicConstraints=critical,CA:TRUE'"
        "  -addext 'keyUsage=critical,keyCertSign' -keyout ca.key -out ca.pem &&"
        " openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
        "  -subj '/CN=127.0.0.1' -keyout server.key -out server.csr &&"
        " openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2"
        "  -extfile server.ext -out server.pem &&"
        " openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        "  -subj '/CN=127.0.0.1' -addext 'subjectAltName=IP:127.0.0.1,DNS:localhost'"
        "  -keyout rogue.key -out rogue.pem",
        directory);
    char *command = zsys_sprintf ("( %s ) > /dev/null 2>&1", script);
    int rc = system (command);
    zstr_free (&script);
    zstr_free (&command);
    if (rc != 0) {
        zsys_error ("notifier_receiver - openssl could not make the test certificates");
        notifier_receiver_certificates_remove (directory);
        free (directory);
        return NULL;
    }
    return directory;
}

void
notifier_receiver_certificates_remove (const char *directory)
{
    if (directory && strncmp (directory, "/tmp/phantom-certs-", 19) == 0) {
        char *command = zsys_sprintf ("rm -rf '%s'", directory);
        if (system (command) != 0)
            zsys_warning ("notifier_receiver - cannot remove %s", directory);
        zstr_free (&command);
    }
}
