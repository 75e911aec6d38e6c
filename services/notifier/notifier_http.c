/*  =========================================================================
    notifier_http - a minimal blocking HTTP/1.1 client for webhook POSTs

    One connection per request ("Connection: close"): webhooks are rare (one
    per notification), so keep-alive would only add state. The socket is
    blocking with SO_SNDTIMEO / SO_RCVTIMEO, re-armed before each step with
    the time left to one overall deadline, so a receiver that trickles bytes
    cannot stretch a delivery past timeout_ms.
    =========================================================================
*/
#include "notifier_http.h"
#include "notifier_test_receiver.h"

#include <czmq.h>
#include <errno.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HOST_MAX 255
#define PATH_MAX_LEN 2048
#define RESPONSE_HEAD_MAX 4096

void
notifier_http_sign (const char *secret, const void *body, size_t size,
                    char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1])
{
    assert (secret);
    assert (body || size == 0);
    //  The init/update/final form takes a key of any length (plain HMAC);
    //  crypto_auth_hmacsha256() itself insists on a 32-byte key.
    crypto_auth_hmacsha256_state state;
    unsigned char mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256_init (&state, (const unsigned char *)secret, strlen (secret));
    crypto_auth_hmacsha256_update (&state, (const unsigned char *)body, size);
    crypto_auth_hmacsha256_final (&state, mac);
    memcpy (signature, "sha256=", 7);
    sodium_bin2hex (signature + 7, NOTIFIER_HTTP_SIGNATURE_MAX + 1 - 7, mac, sizeof mac);
}

//  Splits "http://host[:port][/path]" (host may be "[v6]"). 0, or -1 with
//  a reason. Control characters and spaces are refused so the URL cannot
//  inject header lines.
static int
s_url_parse (const char *url, char *host, char *port, char *path, char *error, size_t error_size)
{
    for (const char *c = url; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f) {
            snprintf (error, error_size, "url has a space or control character");
            return -1;
        }
    if (strncasecmp (url, "https://", 8) == 0) {
        snprintf (error, error_size, "https is not supported yet");
        return -1;
    }
    if (strncasecmp (url, "http://", 7) != 0) {
        snprintf (error, error_size, "url is not http://");
        return -1;
    }
    const char *authority = url + 7;
    const char *slash = strchr (authority, '/');
    size_t authority_len = slash ? (size_t)(slash - authority) : strlen (authority);
    const char *host_start = authority;
    size_t host_len;
    const char *port_start = NULL;
    if (memchr (authority, '@', authority_len)) {
        snprintf (error, error_size, "url carries credentials");
        return -1;
    }
    if (*authority == '[') {
        const char *close = memchr (authority, ']', authority_len);
        if (!close) {
            snprintf (error, error_size, "url has a broken IPv6 host");
            return -1;
        }
        host_start = authority + 1;
        host_len = (size_t)(close - host_start);
        if (close + 1 < authority + authority_len) {
            if (close[1] != ':') {
                snprintf (error, error_size, "url has a broken IPv6 host");
                return -1;
            }
            port_start = close + 2;
        }
    } else {
        const char *colon = memchr (authority, ':', authority_len);
        host_len = colon ? (size_t)(colon - authority) : authority_len;
        if (colon)
            port_start = colon + 1;
    }
    if (host_len == 0 || host_len > HOST_MAX) {
        snprintf (error, error_size, "url has no usable host");
        return -1;
    }
    memcpy (host, host_start, host_len);
    host[host_len] = 0;
    if (port_start) {
        size_t port_len = (size_t)(authority + authority_len - port_start);
        char digits[8];
        if (port_len == 0 || port_len > 5) {
            snprintf (error, error_size, "url has a bad port");
            return -1;
        }
        memcpy (digits, port_start, port_len);
        digits[port_len] = 0;
        char *end;
        long value = strtol (digits, &end, 10);
        if (*end || value < 1 || value > 65535) {
            snprintf (error, error_size, "url has a bad port");
            return -1;
        }
        snprintf (port, 8, "%ld", value);
    } else
        strcpy (port, "80");
    const char *path_start = slash ? slash : "/";
    if (strlen (path_start) > PATH_MAX_LEN) {
        snprintf (error, error_size, "url path is too long");
        return -1;
    }
    strcpy (path, path_start);
    return 0;
}

//  Milliseconds left to deadline (ms on the monotonic clock), at least 0.
static int64_t
s_left (int64_t deadline)
{
    int64_t left = deadline - zclock_mono ();
    return left > 0 ? left : 0;
}

//  Arms both socket timeouts with what is left of the deadline; -1 if none is.
static int
s_arm (int fd, int64_t deadline)
{
    int64_t left = s_left (deadline);
    if (left == 0)
        return -1;
    struct timeval tv = {.tv_sec = (time_t)(left / 1000),
                         .tv_usec = (suseconds_t)(left % 1000) * 1000};
    if (setsockopt (fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) ||
        setsockopt (fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv))
        return -1;
    return 0;
}

static int
s_send_all (int fd, const char *data, size_t size, int64_t deadline)
{
    while (size > 0) {
        if (s_arm (fd, deadline))
            return -1;
        ssize_t rc = send (fd, data, size, MSG_NOSIGNAL);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        data += rc;
        size -= (size_t)rc;
    }
    return 0;
}

//  Connects to the first address of host:port that answers before the deadline.
static int
s_connect (const char *host, const char *port, int64_t deadline, char *error, size_t error_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *addresses = NULL;
    int rc = getaddrinfo (host, port, &hints, &addresses);
    if (rc) {
        snprintf (error, error_size, "cannot resolve %s: %s", host, gai_strerror (rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *address = addresses; address; address = address->ai_next) {
        fd = socket (address->ai_family, address->ai_socktype | SOCK_CLOEXEC, address->ai_protocol);
        if (fd < 0)
            continue;
        //  Linux bounds a blocking connect() by SO_SNDTIMEO.
        if (s_arm (fd, deadline) == 0 && connect (fd, address->ai_addr, address->ai_addrlen) == 0)
            break;
        snprintf (error, error_size, "cannot connect to %s:%s: %s", host, port,
                  errno == EINPROGRESS || errno == EAGAIN ? "timed out" : strerror (errno));
        close (fd);
        fd = -1;
    }
    freeaddrinfo (addresses);
    return fd;
}

int
notifier_http_post (const char *url, const char *headers, const char *body, size_t size,
                    int timeout_ms, char *error, size_t error_size)
{
    assert (url);
    assert (body || size == 0);
    assert (error && error_size > 0);
    error[0] = 0;
    char host[HOST_MAX + 1], port[8], path[PATH_MAX_LEN + 1];
    if (s_url_parse (url, host, port, path, error, error_size))
        return NOTIFIER_HTTP_PERMANENT;

    int64_t deadline = zclock_mono () + (timeout_ms > 0 ? timeout_ms : 1);
    int fd = s_connect (host, port, deadline, error, error_size);
    if (fd < 0)
        return NOTIFIER_HTTP_TRANSIENT;

    //  Host header: IPv6 literals go back into brackets.
    bool v6 = strchr (host, ':') != NULL;
    char *head =
        zsys_sprintf ("POST %s HTTP/1.1\r\n"
                      "Host: %s%s%s%s%s\r\n"
                      "User-Agent: PhantomWatch-Notifier/1\r\n"
                      "Content-Type: application/json\r\n"
                      "Content-Length: %zu\r\n"
                      "Connection: close\r\n"
                      "%s\r\n",
                      path, v6 ? "[" : "", host, v6 ? "]" : "", strcmp (port, "80") ? ":" : "",
                      strcmp (port, "80") ? port : "", size, headers ? headers : "");
    int status = NOTIFIER_HTTP_TRANSIENT;
    if (!head) {
        snprintf (error, error_size, "out of memory");
        close (fd);
        return status;
    }
    if (s_send_all (fd, head, strlen (head), deadline) || s_send_all (fd, body, size, deadline)) {
        snprintf (error, error_size, "send failed: %s",
                  errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : strerror (errno));
        goto done;
    }
    //  Only the status line matters; read until it is complete.
    char response[RESPONSE_HEAD_MAX + 1];
    size_t got = 0;
    while (got < RESPONSE_HEAD_MAX) {
        if (s_arm (fd, deadline)) {
            errno = EAGAIN;
            break;
        }
        ssize_t rc = recv (fd, response + got, RESPONSE_HEAD_MAX - got, 0);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            break;
        got += (size_t)rc;
        response[got] = 0;
        if (strstr (response, "\r\n"))
            break;
    }
    response[got] = 0;
    int code;
    char after;
    if (got == 0 || !strstr (response, "\r\n")) {
        snprintf (error, error_size, "no response: %s",
                  got                                       ? "status line incomplete"
                  : errno == EAGAIN || errno == EWOULDBLOCK ? "timed out"
                                                            : "connection closed");
    } else if (sscanf (response, "HTTP/1.%*1[01] %3d%c", &code, &after) == 2 && after == ' ' &&
               code >= 100 && code <= 599)
        status = code;
    else if (sscanf (response, "HTTP/1.%*1[01] %3d%c", &code, &after) == 2 && after == '\r' &&
             code >= 100 && code <= 599)
        status = code; //  a status line with no reason phrase is legal
    else
        snprintf (error, error_size, "malformed status line");
done:
    zstr_free (&head);
    close (fd);
    return status;
}

//  --------------------------------------------------------------------------
//  Self test

void
notifier_http_test (bool verbose)
{
    printf (" * notifier_http: ");
    if (verbose)
        printf ("\n");
    assert (sodium_init () >= 0);

    //  RFC 4231 test case 2: a short key, to prove the any-length key path
    //  is real HMAC-SHA256 and not a keyed hash of our own invention.
    char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1];
    const char *data = "what do ya want for nothing?";
    notifier_http_sign ("Jefe", data, strlen (data), signature);
    assert (streq (signature,
                   "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));

    //  URLs that can never work are permanent failures, not retries.
    char error[256];
    assert (notifier_http_post ("https://example.com/", NULL, "{}", 2, 1000, error, sizeof error) ==
            NOTIFIER_HTTP_PERMANENT);
    assert (strstr (error, "https"));
    assert (notifier_http_post ("ftp://x/", NULL, "{}", 2, 1000, error, sizeof error) ==
            NOTIFIER_HTTP_PERMANENT);
    assert (notifier_http_post ("http://h/a\r\nX-Evil: 1", NULL, "{}", 2, 1000, error,
                                sizeof error) == NOTIFIER_HTTP_PERMANENT);
    assert (notifier_http_post ("http://127.0.0.1:99999/", NULL, "{}", 2, 1000, error,
                                sizeof error) == NOTIFIER_HTTP_PERMANENT);
    assert (notifier_http_post ("http:///x", NULL, "{}", 2, 1000, error, sizeof error) ==
            NOTIFIER_HTTP_PERMANENT);

    //  A real POST to a local receiver: status, path, body and headers arrive.
    int statuses[] = {204, 500};
    notifier_receiver_t *receiver = notifier_receiver_new (statuses, 2);
    assert (receiver);
    char *url = zsys_sprintf ("http://127.0.0.1:%d/hook/x?y=1", notifier_receiver_port (receiver));
    const char *body = "{\"hello\":\"world\"}";
    notifier_http_sign ("s3cret", body, strlen (body), signature);
    char *headers = zsys_sprintf ("X-PhantomWatch-Signature: %s\r\n", signature);
    int status = notifier_http_post (url, headers, body, strlen (body), 5000, error, sizeof error);
    assert (status == 204);
    status = notifier_http_post (url, headers, body, strlen (body), 5000, error, sizeof error);
    assert (status == 500);
    assert (notifier_receiver_count (receiver) == 2);
    char *got_body = notifier_receiver_body (receiver, 0);
    assert (got_body && streq (got_body, body));
    zstr_free (&got_body);
    char *got_path = notifier_receiver_path (receiver, 0);
    assert (got_path && streq (got_path, "/hook/x?y=1"));
    zstr_free (&got_path);
    char *got_signature = notifier_receiver_signature (receiver, 0);
    assert (got_signature && streq (got_signature, signature));
    zstr_free (&got_signature);
    zstr_free (&headers);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);

    //  Nobody listening: a transient failure, quickly.
    int closed_port = 0;
    {
        //  Bind and close to find a port that is (almost surely) free.
        int fd = socket (AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in address = {.sin_family = AF_INET,
                                      .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
        assert (bind (fd, (struct sockaddr *)&address, sizeof address) == 0);
        socklen_t length = sizeof address;
        getsockname (fd, (struct sockaddr *)&address, &length);
        closed_port = ntohs (address.sin_port);
        close (fd);
    }
    url = zsys_sprintf ("http://127.0.0.1:%d/", closed_port);
    assert (notifier_http_post (url, NULL, "{}", 2, 1000, error, sizeof error) ==
            NOTIFIER_HTTP_TRANSIENT);
    zstr_free (&url);

    //  A receiver that never answers costs the timeout, not more.
    int silent[] = {0};
    receiver = notifier_receiver_new (silent, 1);
    assert (receiver);
    url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    int64_t started = zclock_mono ();
    assert (notifier_http_post (url, NULL, "{}", 2, 300, error, sizeof error) ==
            NOTIFIER_HTTP_TRANSIENT);
    int64_t took = zclock_mono () - started;
    assert (took >= 250 && took < 2000);
    if (verbose)
        zsys_debug ("notifier_http - silent receiver: %s after %d ms", error, (int)took);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);

    printf ("OK\n");
}
