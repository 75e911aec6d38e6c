/*  =========================================================================
    notifier_http - webhook POSTs through libcurl, many at once

    One curl multi handle: its transfers share a connection cache (so a
    receiver's connection is kept for the next POST) and a DNS cache, and
    one poll moves all of them along. The address check is in the socket
    callback, the one place every connection passes through with the
    address it is for: no second resolution can slip in between check and
    connect.
    =========================================================================
*/
#include "notifier_http.h"
#include "notifier_test_receiver.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <czmq.h>
#include <errno.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#define S_USER_AGENT "PhantomWatch-Notifier/1"
#define S_CONNECTIONS_KEPT 64 //  idle connections the cache holds at most
#define S_CONNECTION_AGE_S 60 //  an idle connection older than this is not reused

struct _notifier_http_t {
    CURLM *multi;            //  every transfer in flight
    zlist_t *transfers;      //  of s_transfer_t, in flight
    int timeout_ms;          //  whole POST
    int connect_timeout_ms;  //  resolve, connect and handshake
    size_t response_max;     //  answer bytes read at most
    char *ca_file;           //  trusted CAs, NULL: system store
    proto_address_t *policy; //  addresses that may be reached (borrowed)
};

typedef struct {
    notifier_http_t *owner;      //  the client
    CURL *easy;                  //  this transfer
    struct curl_slist *headers;  //  its request headers
    void *tag;                   //  the caller's
    size_t received;             //  answer bytes so far
    bool too_large;              //  stopped at response_max
    int refused;                 //  addresses proto_address refused
    int opened;                  //  sockets opened
    char error[CURL_ERROR_SIZE]; //  libcurl's words
} s_transfer_t;

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

notifier_http_t *
notifier_http_new (const notifier_http_settings_t *settings)
{
    assert (settings && settings->policy);
    //  Thread-safe since libcurl 7.84 (Debian 12 has 7.88), and counted.
    if (curl_global_init (CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return NULL;
    notifier_http_t *self = (notifier_http_t *)zmalloc (sizeof (notifier_http_t));
    assert (self);
    self->multi = curl_multi_init ();
    self->transfers = zlist_new ();
    assert (self->multi && self->transfers);
    self->timeout_ms = settings->timeout_ms > 0 ? settings->timeout_ms : 5000;
    self->connect_timeout_ms =
        settings->connect_timeout_ms > 0 && settings->connect_timeout_ms < self->timeout_ms
            ? settings->connect_timeout_ms
            : self->timeout_ms;
    self->response_max = settings->response_max > 0 ? settings->response_max : 65536;
    self->ca_file = settings->ca_file && *settings->ca_file ? strdup (settings->ca_file) : NULL;
    self->policy = settings->policy;
    curl_multi_setopt (self->multi, CURLMOPT_MAXCONNECTS, (long)S_CONNECTIONS_KEPT);
    return self;
}

static void
s_transfer_destroy (s_transfer_t **transfer_p)
{
    s_transfer_t *transfer = *transfer_p;
    if (transfer) {
        curl_multi_remove_handle (transfer->owner->multi, transfer->easy);
        curl_easy_cleanup (transfer->easy);
        curl_slist_free_all (transfer->headers);
        free (transfer);
        *transfer_p = NULL;
    }
}

void
notifier_http_destroy (notifier_http_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_http_t *self = *self_p;
        while (notifier_http_abort (self))
            ;
        zlist_destroy (&self->transfers);
        curl_multi_cleanup (self->multi);
        free (self->ca_file);
        free (self);
        curl_global_cleanup ();
        *self_p = NULL;
    }
}

//  Opens a socket only to an address the policy allows; the refused are
//  counted so the outcome can say "not allowed" rather than "refused".
static curl_socket_t
s_open_socket (void *client, curlsocktype purpose, struct curl_sockaddr *address)
{
    s_transfer_t *transfer = (s_transfer_t *)client;
    const char *refusal =
        purpose != CURLSOCKTYPE_IPCXN
            ? "not a connection"
            : proto_address_refusal (transfer->owner->policy, &address->addr, address->addrlen);
    if (refusal) {
        transfer->refused++;
        char text[INET6_ADDRSTRLEN] = "?";
        const void *bytes = address->family == AF_INET6
                                ? (const void *)&((struct sockaddr_in6 *)&address->addr)->sin6_addr
                                : (const void *)&((struct sockaddr_in *)&address->addr)->sin_addr;
        inet_ntop (address->family, bytes, text, sizeof text);
        zsys_warning ("notifier webhooks - not connecting to %s (%s address)", text, refusal);
        return CURL_SOCKET_BAD;
    }
    curl_socket_t fd =
        socket (address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
    if (fd != CURL_SOCKET_BAD)
        transfer->opened++;
    return fd;
}

//  Counts answer bytes; past response_max the transfer stops (libcurl
//  takes a short count as an error).
static size_t
s_count (s_transfer_t *transfer, size_t size)
{
    transfer->received += size;
    if (transfer->received > transfer->owner->response_max) {
        transfer->too_large = true;
        return 0;
    }
    return size;
}

static size_t
s_on_body (char *data, size_t size, size_t count, void *client)
{
    (void)data;
    return s_count ((s_transfer_t *)client, size * count);
}

static size_t
s_on_header (char *data, size_t size, size_t count, void *client)
{
    (void)data;
    return s_count ((s_transfer_t *)client, size * count);
}

int
notifier_http_start (notifier_http_t *self, const char *url, const char *const *headers,
                     const char *body, size_t size, void *tag)
{
    assert (self && url);
    assert (body || size == 0);
    s_transfer_t *transfer = (s_transfer_t *)zmalloc (sizeof (s_transfer_t));
    assert (transfer);
    transfer->owner = self;
    transfer->tag = tag;
    transfer->easy = curl_easy_init ();
    if (!transfer->easy) {
        free (transfer);
        return -1;
    }
    //  "Expect:" keeps libcurl from waiting for a 100 Continue first.
    const char *fixed[] = {"Content-Type: application/json", "Expect:"};
    for (size_t index = 0; index < 2; index++)
        transfer->headers = curl_slist_append (transfer->headers, fixed[index]);
    for (size_t index = 0; headers && headers[index]; index++)
        transfer->headers = curl_slist_append (transfer->headers, headers[index]);
    CURL *easy = transfer->easy;
    CURLcode rc = CURLE_OK;
#define S_SET(option, value)                                                                       \
    if (rc == CURLE_OK)                                                                            \
    rc = curl_easy_setopt (easy, option, value)
    S_SET (CURLOPT_URL, url);
    S_SET (CURLOPT_PROTOCOLS_STR, "http,https");
    S_SET (CURLOPT_FOLLOWLOCATION, 0L);
    //  An empty proxy beats http_proxy and the like in the environment:
    //  the address check must see the receiver, not a proxy.
    S_SET (CURLOPT_PROXY, "");
    S_SET (CURLOPT_NOSIGNAL, 1L);
    S_SET (CURLOPT_OPENSOCKETFUNCTION, s_open_socket);
    S_SET (CURLOPT_OPENSOCKETDATA, transfer);
    S_SET (CURLOPT_CONNECTTIMEOUT_MS, (long)self->connect_timeout_ms);
    S_SET (CURLOPT_TIMEOUT_MS, (long)self->timeout_ms);
    S_SET (CURLOPT_MAXAGE_CONN, (long)S_CONNECTION_AGE_S);
    S_SET (CURLOPT_SSL_VERIFYPEER, 1L);
    S_SET (CURLOPT_SSL_VERIFYHOST, 2L);
    if (self->ca_file)
        S_SET (CURLOPT_CAINFO, self->ca_file);
    S_SET (CURLOPT_USERAGENT, S_USER_AGENT);
    S_SET (CURLOPT_HTTPHEADER, transfer->headers);
    S_SET (CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)size);
    S_SET (CURLOPT_COPYPOSTFIELDS, size ? body : "");
    S_SET (CURLOPT_WRITEFUNCTION, s_on_body);
    S_SET (CURLOPT_WRITEDATA, transfer);
    S_SET (CURLOPT_HEADERFUNCTION, s_on_header);
    S_SET (CURLOPT_HEADERDATA, transfer);
    S_SET (CURLOPT_ERRORBUFFER, transfer->error);
    S_SET (CURLOPT_PRIVATE, transfer);
#undef S_SET
    if (rc != CURLE_OK || curl_multi_add_handle (self->multi, easy) != CURLM_OK) {
        zsys_error ("notifier webhooks - libcurl refused a transfer: %s", curl_easy_strerror (rc));
        curl_easy_cleanup (easy);
        curl_slist_free_all (transfer->headers);
        free (transfer);
        return -1;
    }
    zlist_append (self->transfers, transfer);
    return 0;
}

void
notifier_http_wait (notifier_http_t *self, int fd, int timeout_ms)
{
    assert (self);
    struct curl_waitfd extra = {.fd = fd, .events = CURL_WAIT_POLLIN};
    int ready = 0;
    curl_multi_poll (self->multi, fd >= 0 ? &extra : NULL, fd >= 0 ? 1 : 0,
                     timeout_ms > 0 ? timeout_ms : 0, &ready);
    int running = 0;
    curl_multi_perform (self->multi, &running);
}

//  The category of a finished transfer.
static notifier_http_outcome_t
s_outcome (s_transfer_t *transfer, CURLcode code, long status)
{
    switch (code) {
    case CURLE_OK:
        return status >= 100 ? NOTIFIER_HTTP_ANSWERED : NOTIFIER_HTTP_BAD_RESPONSE;
    case CURLE_WRITE_ERROR:
        //  A receiver that took the POST and then talks too much still took it.
        return transfer->too_large && status >= 200 && status <= 299 ? NOTIFIER_HTTP_ANSWERED
                                                                     : NOTIFIER_HTTP_BAD_RESPONSE;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return NOTIFIER_HTTP_BAD_URL;
    case CURLE_COULDNT_RESOLVE_HOST:
        return NOTIFIER_HTTP_NOT_FOUND;
    case CURLE_OPERATION_TIMEDOUT:
        return NOTIFIER_HTTP_TIMEOUT;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
        return NOTIFIER_HTTP_TLS;
    case CURLE_COULDNT_CONNECT:
        //  Nothing opened and something refused: only refused addresses.
        if (transfer->opened == 0 && transfer->refused > 0)
            return NOTIFIER_HTTP_NOT_ALLOWED;
        long os_error = 0;
        curl_easy_getinfo (transfer->easy, CURLINFO_OS_ERRNO, &os_error);
        return os_error == ECONNREFUSED ? NOTIFIER_HTTP_REFUSED : NOTIFIER_HTTP_NETWORK;
    case CURLE_GOT_NOTHING:
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_FILESIZE_EXCEEDED:
        return NOTIFIER_HTTP_BAD_RESPONSE;
    default:
        return NOTIFIER_HTTP_NETWORK;
    }
}

bool
notifier_http_next (notifier_http_t *self, notifier_http_result_t *result)
{
    assert (self && result);
    int left = 0;
    CURLMsg *message;
    while ((message = curl_multi_info_read (self->multi, &left)))
        if (message->msg == CURLMSG_DONE) {
            s_transfer_t *transfer = NULL;
            curl_easy_getinfo (message->easy_handle, CURLINFO_PRIVATE, (char **)&transfer);
            assert (transfer);
            CURLcode code = message->data.result; //  message dies with the handle
            long status = 0;
            curl_easy_getinfo (transfer->easy, CURLINFO_RESPONSE_CODE, &status);
            result->tag = transfer->tag;
            result->outcome = s_outcome (transfer, code, status);
            result->status = result->outcome == NOTIFIER_HTTP_ANSWERED ? (int)status : 0;
            snprintf (result->detail, sizeof result->detail, "%.200s%s",
                      transfer->error[0] ? transfer->error
                      : code == CURLE_OK ? ""
                                         : curl_easy_strerror (code),
                      transfer->too_large ? " (answer too large)" : "");
            zlist_remove (self->transfers, transfer);
            s_transfer_destroy (&transfer);
            return true;
        }
    return false;
}

size_t
notifier_http_active (notifier_http_t *self)
{
    assert (self);
    return zlist_size (self->transfers);
}

void *
notifier_http_abort (notifier_http_t *self)
{
    assert (self);
    s_transfer_t *transfer = (s_transfer_t *)zlist_pop (self->transfers);
    if (!transfer)
        return NULL;
    void *tag = transfer->tag;
    s_transfer_destroy (&transfer);
    return tag;
}

const char *
notifier_http_outcome_name (notifier_http_outcome_t outcome)
{
    switch (outcome) {
    case NOTIFIER_HTTP_ANSWERED:
        return "answered";
    case NOTIFIER_HTTP_BAD_URL:
        return "bad url";
    case NOTIFIER_HTTP_NOT_ALLOWED:
        return "address not allowed";
    case NOTIFIER_HTTP_NOT_FOUND:
        return "host not found";
    case NOTIFIER_HTTP_REFUSED:
        return "connection refused";
    case NOTIFIER_HTTP_TIMEOUT:
        return "timeout";
    case NOTIFIER_HTTP_TLS:
        return "TLS error";
    case NOTIFIER_HTTP_NETWORK:
        return "connection failed";
    case NOTIFIER_HTTP_BAD_RESPONSE:
        return "bad response";
    }
    return "unknown";
}

notifier_http_outcome_t
notifier_http_post (notifier_http_t *self, const char *url, const char *const *headers,
                    const char *body, size_t size, notifier_http_result_t *result)
{
    assert (self && result);
    memset (result, 0, sizeof *result);
    //  Our own tag: a cookie on the stack no other transfer can carry.
    int mine;
    if (notifier_http_start (self, url, headers, body, size, &mine)) {
        result->outcome = NOTIFIER_HTTP_BAD_URL;
        return result->outcome;
    }
    //  libcurl ends every transfer by timeout_ms; the slack covers a slow machine.
    int64_t deadline = zclock_mono () + self->timeout_ms + 5000;
    while (zclock_mono () < deadline) {
        notifier_http_wait (self, -1, 100);
        notifier_http_result_t next;
        while (notifier_http_next (self, &next))
            if (next.tag == &mine) {
                *result = next;
                return result->outcome;
            }
    }
    assert (false); //  libcurl did not keep its timeout
    return NOTIFIER_HTTP_TIMEOUT;
}

//  --------------------------------------------------------------------------
//  Self test

//  A loopback port with nothing listening (bound and closed at once).
static int
s_test_closed_port (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl (INADDR_LOOPBACK)};
    assert (bind (fd, (struct sockaddr *)&address, sizeof address) == 0);
    socklen_t length = sizeof address;
    getsockname (fd, (struct sockaddr *)&address, &length);
    close (fd);
    return ntohs (address.sin_port);
}

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

    //  Loopback is what the test receivers listen on: allowed explicitly,
    //  as webhook_allow_cidrs would.
    proto_address_t *loopback = proto_address_new (false, "127.0.0.0/8");
    proto_address_t *strict = proto_address_new (false, NULL);
    assert (loopback && strict);
    notifier_http_settings_t settings = {
        .timeout_ms = 2000, .connect_timeout_ms = 1000, .response_max = 65536, .policy = loopback};
    notifier_http_t *self = notifier_http_new (&settings);
    assert (self);
    notifier_http_result_t result;

    //  URLs that can never work: bad url, before any connection.
    const char *never[] = {"ftp://127.0.0.1/",        "http://h/a\r\nX-Evil: 1",
                           "http://127.0.0.1:99999/", "gopher://127.0.0.1/",
                           "file:///etc/passwd",      "http://"};
    for (size_t index = 0; index < sizeof never / sizeof never[0]; index++) {
        notifier_http_outcome_t outcome =
            notifier_http_post (self, never[index], NULL, "{}", 2, &result);
        if (verbose)
            zsys_debug ("notifier_http - %s: %s (%s)", never[index],
                        notifier_http_outcome_name (outcome), result.detail);
        assert (outcome == NOTIFIER_HTTP_BAD_URL);
    }

    //  A real POST to a local receiver: status, path, body and headers
    //  arrive; the second POST reuses the first one's connection.
    int statuses[] = {204, 500};
    notifier_receiver_t *receiver = notifier_receiver_new (statuses, 2);
    assert (receiver);
    char *url = zsys_sprintf ("http://127.0.0.1:%d/hook/x?y=1", notifier_receiver_port (receiver));
    const char *body = "{\"hello\":\"world\"}";
    notifier_http_sign ("s3cret", body, strlen (body), signature);
    char *signature_header = zsys_sprintf ("X-PhantomWatch-Signature: %s", signature);
    const char *headers[] = {signature_header, NULL};
    assert (notifier_http_post (self, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_ANSWERED);
    assert (result.status == 204);
    assert (notifier_http_post (self, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_ANSWERED);
    assert (result.status == 500);
    assert (notifier_receiver_count (receiver) == 2);
    assert (notifier_receiver_connections (receiver) == 1);
    char *got_body = notifier_receiver_body (receiver, 0);
    assert (got_body && streq (got_body, body));
    zstr_free (&got_body);
    char *got_path = notifier_receiver_path (receiver, 0);
    assert (got_path && streq (got_path, "/hook/x?y=1"));
    zstr_free (&got_path);
    char *got_signature = notifier_receiver_signature (receiver, 0);
    assert (got_signature && streq (got_signature, signature));
    zstr_free (&got_signature);
    notifier_receiver_destroy (&receiver);
    zstr_free (&url);

    //  The same receiver under the default policy: refused before any
    //  connection, in every spelling of loopback.
    receiver = notifier_receiver_new (statuses, 1);
    int port = notifier_receiver_port (receiver);
    notifier_http_settings_t strict_settings = settings;
    strict_settings.policy = strict;
    notifier_http_t *guarded = notifier_http_new (&strict_settings);
    const char *spellings[] = {"127.0.0.1",  "0x7f000001",         "2130706433", "127.1",
                               "0177.0.0.1", "[::ffff:127.0.0.1]", "localhost",  "0.0.0.0"};
    for (size_t index = 0; index < sizeof spellings / sizeof spellings[0]; index++) {
        url = zsys_sprintf ("http://%s:%d/", spellings[index], port);
        notifier_http_outcome_t outcome = notifier_http_post (guarded, url, NULL, "{}", 2, &result);
        if (verbose)
            zsys_debug ("notifier_http - %s: %s (%s)", url, notifier_http_outcome_name (outcome),
                        result.detail);
        assert (outcome == NOTIFIER_HTTP_NOT_ALLOWED);
        zstr_free (&url);
    }
    assert (notifier_receiver_connections (receiver) == 0);
    notifier_http_destroy (&guarded);
    notifier_receiver_destroy (&receiver);

    //  No redirects: a 302 is the outcome, and nobody follows it.
    int moved[] = {302, 200};
    receiver = notifier_receiver_new (moved, 2);
    url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    assert (notifier_http_post (self, url, NULL, "{}", 2, &result) == NOTIFIER_HTTP_ANSWERED);
    assert (result.status == 302);
    zclock_sleep (200);
    assert (notifier_receiver_count (receiver) == 1);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);

    //  Nobody listening: refused, quickly.
    url = zsys_sprintf ("http://127.0.0.1:%d/", s_test_closed_port ());
    assert (notifier_http_post (self, url, NULL, "{}", 2, &result) == NOTIFIER_HTTP_REFUSED);
    zstr_free (&url);

    //  A receiver that never answers costs the timeout, not more; one that
    //  talks without end is cut off at response_max, long before it.
    int silent[] = {NOTIFIER_RECEIVER_SILENT};
    receiver = notifier_receiver_new (silent, 1);
    url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    int64_t started = zclock_mono ();
    assert (notifier_http_post (self, url, NULL, "{}", 2, &result) == NOTIFIER_HTTP_TIMEOUT);
    int64_t took = zclock_mono () - started;
    if (verbose)
        zsys_debug ("notifier_http - silent receiver: %s after %d ms", result.detail, (int)took);
    assert (took >= 1900 && took < 3000);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);
    int endless[] = {NOTIFIER_RECEIVER_ENDLESS};
    receiver = notifier_receiver_new (endless, 1);
    url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    started = zclock_mono ();
    assert (notifier_http_post (self, url, NULL, "{}", 2, &result) == NOTIFIER_HTTP_ANSWERED);
    took = zclock_mono () - started;
    if (verbose)
        zsys_debug ("notifier_http - endless answer: %s after %d ms", result.detail, (int)took);
    assert (result.status == 200 && took < 1000);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);

    //  https against a CA the test made: delivered; a self-signed
    //  certificate is a TLS error, and so is the right one without the CA.
    char *certificates = notifier_receiver_certificates ();
    assert (certificates);
    char *ca = zsys_sprintf ("%s/ca.pem", certificates);
    char *server_pem = zsys_sprintf ("%s/server.pem", certificates);
    char *server_key = zsys_sprintf ("%s/server.key", certificates);
    char *rogue_pem = zsys_sprintf ("%s/rogue.pem", certificates);
    char *rogue_key = zsys_sprintf ("%s/rogue.key", certificates);
    notifier_http_settings_t tls_settings = settings;
    tls_settings.ca_file = ca;
    notifier_http_t *tls = notifier_http_new (&tls_settings);
    int ok[] = {200};
    receiver = notifier_receiver_new_tls (ok, 1, server_pem, server_key);
    assert (receiver);
    url = zsys_sprintf ("https://127.0.0.1:%d/secure", notifier_receiver_port (receiver));
    assert (notifier_http_post (tls, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_ANSWERED);
    assert (result.status == 200);
    assert (notifier_http_post (tls, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_ANSWERED);
    assert (notifier_receiver_count (receiver) == 2 &&
            notifier_receiver_connections (receiver) == 1);
    assert (notifier_receiver_signed (receiver, 1, "s3cret"));
    //  The system store does not know the test CA.
    assert (notifier_http_post (self, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_TLS);
    if (verbose)
        zsys_debug ("notifier_http - unknown CA: %s", result.detail);
    assert (notifier_receiver_count (receiver) == 2);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);
    receiver = notifier_receiver_new_tls (ok, 1, rogue_pem, rogue_key);
    assert (receiver);
    url = zsys_sprintf ("https://localhost:%d/secure", notifier_receiver_port (receiver));
    assert (notifier_http_post (tls, url, headers, body, strlen (body), &result) ==
            NOTIFIER_HTTP_TLS);
    if (verbose)
        zsys_debug ("notifier_http - self-signed: %s", result.detail);
    assert (notifier_receiver_count (receiver) == 0);
    zstr_free (&url);
    notifier_receiver_destroy (&receiver);
    notifier_http_destroy (&tls);
    notifier_receiver_certificates_remove (certificates);
    free (certificates);
    zstr_free (&ca);
    zstr_free (&server_pem);
    zstr_free (&server_key);
    zstr_free (&rogue_pem);
    zstr_free (&rogue_key);

    //  Side by side: a silent receiver does not hold up a quick one.
    receiver = notifier_receiver_new (silent, 1);
    notifier_receiver_t *quick = notifier_receiver_new (ok, 1);
    char *slow_url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    url = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (quick));
    int slow_tag, quick_tag;
    started = zclock_mono ();
    assert (notifier_http_start (self, slow_url, NULL, "{}", 2, &slow_tag) == 0);
    assert (notifier_http_start (self, url, NULL, "{}", 2, &quick_tag) == 0);
    assert (notifier_http_active (self) == 2);
    bool quick_done = false;
    while (!quick_done && zclock_mono () - started < 1000) {
        notifier_http_wait (self, -1, 50);
        while (notifier_http_next (self, &result)) {
            assert (result.tag == &quick_tag && result.status == 200);
            quick_done = true;
        }
    }
    assert (quick_done && zclock_mono () - started < 500);
    assert (notifier_http_active (self) == 1);
    assert (notifier_http_abort (self) == &slow_tag);
    assert (notifier_http_abort (self) == NULL);
    zstr_free (&slow_url);
    zstr_free (&url);
    notifier_receiver_destroy (&quick);
    notifier_receiver_destroy (&receiver);

    zstr_free (&signature_header);
    notifier_http_destroy (&self);
    notifier_http_destroy (&self);
    proto_address_destroy (&loopback);
    proto_address_destroy (&strict);
    printf ("OK\n");
}
