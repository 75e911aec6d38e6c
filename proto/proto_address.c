/*  =========================================================================
    proto_address - which addresses a webhook may reach

    Addresses are judged as bytes (network order), never as text, so every
    spelling a resolver accepts (0x7f000001, 2130706433, 127.1, 0177.0.0.1,
    [::ffff:127.0.0.1]) is judged by what it connects to. Name resolution
    runs in a thread of its own so a caller waits at most its timeout:
    getaddrinfo has none, and a gateway worker must not hang on a slow DNS.
    =========================================================================
*/
#include "proto_address.h"
#include "proto.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <curl/curl.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>

#define S_CIDRS_MAX 64     //  entries of webhook_allow_cidrs
#define S_HOST_MAX 255     //  longest host name
#define S_ADDRESSES_MAX 64 //  addresses of one host that are checked; more is refused
#define S_LOOKUPS_MAX 16   //  name lookups in flight at once, process-wide

typedef struct {
    int family;        //  AF_INET or AF_INET6
    uint8_t bytes[16]; //  network order, 4 used for AF_INET
    int prefix;        //  bits that must match
} s_cidr_t;

struct _proto_address_t {
    bool allow_private;            //  loopback, private, CGNAT may be reached
    s_cidr_t allowed[S_CIDRS_MAX]; //  webhook_allow_cidrs: reachable whatever their kind
    size_t allowed_count;          //  entries used
};

//  Lookups started and not yet finished (some may have been given up on).
static atomic_int s_lookups;

//  Parses "address/prefix" (or a bare address: the whole of it); 0 or -1.
static int
s_cidr_parse (const char *text, s_cidr_t *cidr)
{
    char address[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr (text, '/');
    size_t length = slash ? (size_t)(slash - text) : strlen (text);
    if (length == 0 || length >= sizeof address)
        return -1;
    memcpy (address, text, length);
    address[length] = 0;
    memset (cidr, 0, sizeof *cidr);
    int max;
    if (inet_pton (AF_INET, address, cidr->bytes) == 1) {
        cidr->family = AF_INET;
        max = 32;
    } else if (inet_pton (AF_INET6, address, cidr->bytes) == 1) {
        cidr->family = AF_INET6;
        max = 128;
    } else
        return -1;
    cidr->prefix = max;
    if (slash) {
        char *end;
        errno = 0;
        long prefix = strtol (slash + 1, &end, 10);
        if (end == slash + 1 || *end || errno || prefix < 0 || prefix > max)
            return -1;
        cidr->prefix = (int)prefix;
    }
    return 0;
}

static bool
s_cidr_contains (const s_cidr_t *cidr, int family, const uint8_t *bytes)
{
    if (cidr->family != family)
        return false;
    int whole = cidr->prefix / 8, rest = cidr->prefix % 8;
    if (memcmp (cidr->bytes, bytes, (size_t)whole))
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (cidr->bytes[whole] & mask) == (bytes[whole] & mask);
}

proto_address_t *
proto_address_new (bool allow_private, const char *allow_cidrs)
{
    proto_address_t *self = (proto_address_t *)zmalloc (sizeof (proto_address_t));
    assert (self);
    self->allow_private = allow_private;
    char *list = strdup (allow_cidrs ? allow_cidrs : "");
    assert (list);
    char *saved = NULL;
    for (char *entry = strtok_r (list, ", ", &saved); entry;
         entry = strtok_r (NULL, ", ", &saved)) {
        if (self->allowed_count == S_CIDRS_MAX ||
            s_cidr_parse (entry, &self->allowed[self->allowed_count])) {
            zsys_error ("config webhook_allow_cidrs - '%s' is not a CIDR (or more than %d)", entry,
                        S_CIDRS_MAX);
            free (list);
            free (self);
            return NULL;
        }
        self->allowed_count++;
    }
    free (list);
    return self;
}

proto_address_t *
proto_address_new_from_config (proto_config_t *config)
{
    return proto_address_new (proto_config_int (config, "webhook_allow_private") == 1,
                              proto_config_str (config, "webhook_allow_cidrs"));
}

void
proto_address_destroy (proto_address_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        free (*self_p);
        *self_p = NULL;
    }
}

//  Kinds of address; the private ones are what webhook_allow_private lets through.
typedef enum {
    S_PUBLIC,
    S_LOOPBACK,
    S_PRIVATE,
    S_SHARED,
    S_UNSPECIFIED,
    S_LINK_LOCAL,
    S_MULTICAST,
    S_RESERVED
} s_kind_t;

static const char *s_kind_names[] = {
    NULL,          "loopback",   "private",   "carrier-grade NAT",
    "unspecified", "link-local", "multicast", "reserved or broadcast"};

static s_kind_t
s_kind_v4 (const uint8_t *a)
{
    if (a[0] == 127)
        return S_LOOPBACK;
    if (a[0] == 0)
        return S_UNSPECIFIED; //  "this network": Linux connects 0.0.0.0 to itself
    if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) || (a[0] == 192 && a[1] == 168) ||
        (a[0] == 198 && (a[1] & 0xfe) == 18))
        return S_PRIVATE;
    if (a[0] == 100 && (a[1] & 0xc0) == 64)
        return S_SHARED;
    if (a[0] == 169 && a[1] == 254)
        return S_LINK_LOCAL; //  also where cloud metadata services answer
    if ((a[0] & 0xf0) == 224)
        return S_MULTICAST;
    if ((a[0] & 0xf0) == 240)
        return S_RESERVED; //  with 255.255.255.255
    return S_PUBLIC;
}

//  The IPv4 address an IPv6 one stands for, if any, into v4.
static bool
s_embedded_v4 (const uint8_t *a, uint8_t *v4)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const uint8_t zero[12] = {0};
    if (memcmp (a, mapped, 12) == 0 || memcmp (a, nat64, 12) == 0 ||
        //  compatible (deprecated), but not :: and ::1 themselves
        (memcmp (a, zero, 12) == 0 && (a[12] | a[13] | a[14] || a[15] > 1))) {
        memcpy (v4, a + 12, 4);
        return true;
    }
    if (a[0] == 0x20 && a[1] == 0x02) { //  6to4
        memcpy (v4, a + 2, 4);
        return true;
    }
    return false;
}

static s_kind_t
s_kind_v6 (const uint8_t *a)
{
    static const uint8_t zero[16] = {0};
    uint8_t v4[4];
    if (s_embedded_v4 (a, v4))
        return s_kind_v4 (v4);
    if (memcmp (a, zero, 15) == 0)
        return a[15] == 1 ? S_LOOPBACK : a[15] == 0 ? S_UNSPECIFIED : S_PUBLIC;
    if ((a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0))
        return S_PRIVATE; //  unique-local, site-local
    if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
        return S_LINK_LOCAL;
    if (a[0] == 0xff)
        return S_MULTICAST;
    return S_PUBLIC;
}

//  True if an entry of the allow-list holds the address (or the IPv4
//  address it carries).
static bool
s_listed (proto_address_t *self, int family, const uint8_t *bytes)
{
    uint8_t v4[4];
    bool embedded = family == AF_INET6 && s_embedded_v4 (bytes, v4);
    for (size_t index = 0; index < self->allowed_count; index++)
        if (s_cidr_contains (&self->allowed[index], family, bytes) ||
            (embedded && s_cidr_contains (&self->allowed[index], AF_INET, v4)))
            return true;
    return false;
}

const char *
proto_address_refusal (proto_address_t *self, const struct sockaddr *address, size_t length)
{
    assert (self);
    const uint8_t *bytes;
    int family = address ? address->sa_family : AF_UNSPEC;
    s_kind_t kind;
    if (family == AF_INET && length >= sizeof (struct sockaddr_in)) {
        bytes = (const uint8_t *)&((const struct sockaddr_in *)address)->sin_addr;
        kind = s_kind_v4 (bytes);
    } else if (family == AF_INET6 && length >= sizeof (struct sockaddr_in6)) {
        bytes = (const uint8_t *)&((const struct sockaddr_in6 *)address)->sin6_addr;
        kind = s_kind_v6 (bytes);
    } else
        return "not an internet address"; //  a unix socket, say: never
    if (kind == S_PUBLIC || s_listed (self, family, bytes))
        return NULL;
    if (self->allow_private && (kind == S_LOOPBACK || kind == S_PRIVATE || kind == S_SHARED))
        return NULL;
    return s_kind_names[kind];
}

//  --------------------------------------------------------------------------
//  Name resolution with a bound

typedef struct {
    pthread_mutex_t mutex;     //  guards the rest
    pthread_cond_t done_cond;  //  signalled when the lookup ends
    bool done;                 //  it has
    int references;            //  the thread's and the waiter's; the last frees
    int rc;                    //  getaddrinfo's result
    struct addrinfo *result;   //  its addresses
    char host[S_HOST_MAX + 1]; //  the name looked up
} s_lookup_t;

static void
s_lookup_release (s_lookup_t *lookup)
{
    pthread_mutex_lock (&lookup->mutex);
    bool last = --lookup->references == 0;
    pthread_mutex_unlock (&lookup->mutex);
    if (last) {
        if (lookup->result)
            freeaddrinfo (lookup->result);
        pthread_cond_destroy (&lookup->done_cond);
        pthread_mutex_destroy (&lookup->mutex);
        free (lookup);
    }
}

static void *
s_lookup_run (void *args)
{
    s_lookup_t *lookup = (s_lookup_t *)args;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *result = NULL;
    int rc = getaddrinfo (lookup->host, NULL, &hints, &result);
    pthread_mutex_lock (&lookup->mutex);
    lookup->rc = rc;
    lookup->result = result;
    lookup->done = true;
    pthread_cond_signal (&lookup->done_cond);
    pthread_mutex_unlock (&lookup->mutex);
    atomic_fetch_sub (&s_lookups, 1);
    s_lookup_release (lookup);
    return NULL;
}

//  Resolves host within timeout_ms: 0 with *result (the caller frees it
//  with freeaddrinfo), PROTO_ADDRESS_REFUSED when the name does not
//  resolve, PROTO_ADDRESS_AGAIN when it did not in time.
static int
s_resolve (const char *host, int timeout_ms, struct addrinfo **result, char *error,
           size_t error_size)
{
    //  Literals (in every spelling inet_aton takes) need no thread nor DNS.
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    if (getaddrinfo (host, NULL, &hints, result) == 0)
        return 0;
    if (atomic_fetch_add (&s_lookups, 1) >= S_LOOKUPS_MAX) {
        atomic_fetch_sub (&s_lookups, 1);
        snprintf (error, error_size, "too many host name lookups at once; try again");
        return PROTO_ADDRESS_AGAIN;
    }
    s_lookup_t *lookup = (s_lookup_t *)zmalloc (sizeof (s_lookup_t));
    assert (lookup);
    pthread_mutex_init (&lookup->mutex, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init (&attributes);
    pthread_condattr_setclock (&attributes, CLOCK_MONOTONIC);
    pthread_cond_init (&lookup->done_cond, &attributes);
    pthread_condattr_destroy (&attributes);
    snprintf (lookup->host, sizeof lookup->host, "%s", host);
    lookup->references = 2;
    pthread_t thread;
    pthread_attr_t thread_attributes;
    pthread_attr_init (&thread_attributes);
    pthread_attr_setdetachstate (&thread_attributes, PTHREAD_CREATE_DETACHED);
    int started = pthread_create (&thread, &thread_attributes, s_lookup_run, lookup);
    pthread_attr_destroy (&thread_attributes);
    if (started) {
        atomic_fetch_sub (&s_lookups, 1);
        lookup->references = 1;
        s_lookup_release (lookup);
        snprintf (error, error_size, "cannot look the host name up now; try again");
        return PROTO_ADDRESS_AGAIN;
    }
    struct timespec deadline = proto_deadline_ms (timeout_ms);
    int rc = PROTO_ADDRESS_AGAIN;
    pthread_mutex_lock (&lookup->mutex);
    while (!lookup->done &&
           pthread_cond_timedwait (&lookup->done_cond, &lookup->mutex, &deadline) != ETIMEDOUT)
        ;
    if (!lookup->done)
        snprintf (error, error_size, "url host %s did not resolve in time; try again", host);
    else if (lookup->rc == EAI_AGAIN) {
        snprintf (error, error_size, "url host %s cannot be resolved now; try again", host);
    } else if (lookup->rc) {
        snprintf (error, error_size, "url host %s does not resolve", host);
        rc = PROTO_ADDRESS_REFUSED;
    } else {
        *result = lookup->result;
        lookup->result = NULL;
        rc = 0;
    }
    pthread_mutex_unlock (&lookup->mutex);
    s_lookup_release (lookup);
    return rc;
}

int
proto_address_check_url (proto_address_t *self, const char *url, int timeout_ms, char *error,
                         size_t error_size)
{
    assert (self && url && error && error_size > 0);
    error[0] = 0;
    CURLU *parsed = curl_url ();
    assert (parsed);
    char *scheme = NULL, *host = NULL, *user = NULL, *password = NULL, *zone = NULL;
    int rc = PROTO_ADDRESS_REFUSED;
    if (curl_url_set (parsed, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get (parsed, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get (parsed, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
        snprintf (error, error_size, "url is not a valid URL with a host");
    else if (strcasecmp (scheme, "http") && strcasecmp (scheme, "https"))
        snprintf (error, error_size, "url must be http:// or https://");
    else if (curl_url_get (parsed, CURLUPART_USER, &user, 0) == CURLUE_OK ||
             curl_url_get (parsed, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK)
        snprintf (error, error_size, "url must not carry a user or password");
    else if (curl_url_get (parsed, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK)
        snprintf (error, error_size, "url must not name a network interface");
    else {
        //  libcurl gives IPv6 literals in brackets
        size_t length = strlen (host);
        const char *name = host;
        if (host[0] == '[' && length > 2 && host[length - 1] == ']') {
            host[length - 1] = 0;
            name = host + 1;
        }
        struct addrinfo *addresses = NULL;
        rc = strlen (name) > S_HOST_MAX
                 ? PROTO_ADDRESS_REFUSED
                 : s_resolve (name, timeout_ms, &addresses, error, error_size);
        if (strlen (name) > S_HOST_MAX)
            snprintf (error, error_size, "url host is too long");
        size_t count = 0;
        for (struct addrinfo *address = addresses; rc == 0 && address; address = address->ai_next) {
            const char *refusal =
                ++count > S_ADDRESSES_MAX
                    ? "too many"
                    : proto_address_refusal (self, address->ai_addr, address->ai_addrlen);
            if (refusal) {
                //  Only the kind: the address of an inside name is not the
                //  user's to learn.
                snprintf (error, error_size,
                          "url host %s is a%s %s address; webhooks go only to public "
                          "addresses unless the server allows more (webhook_allow_private, "
                          "webhook_allow_cidrs)",
                          name, strchr ("aeiou", refusal[0]) ? "n" : "", refusal);
                rc = PROTO_ADDRESS_REFUSED;
            }
        }
        if (addresses)
            freeaddrinfo (addresses);
    }
    curl_free (scheme);
    curl_free (host);
    curl_free (user);
    curl_free (password);
    curl_free (zone);
    curl_url_cleanup (parsed);
    return rc;
}

//  --------------------------------------------------------------------------
//  Self test

//  The refusal of text as the resolver reads a literal ("" when allowed).
static const char *
s_test_judge (proto_address_t *self, const char *text)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    struct addrinfo *result = NULL;
    int rc = getaddrinfo (text, NULL, &hints, &result);
    assert (rc == 0);
    const char *refusal = proto_address_refusal (self, result->ai_addr, result->ai_addrlen);
    freeaddrinfo (result);
    return refusal ? refusal : "";
}

void
proto_address_test (bool verbose)
{
    printf (" * proto_address: ");
    if (verbose)
        printf ("\n");
    proto_address_t *self = proto_address_new (false, NULL);
    assert (self);
    struct {
        const char *text; //  a literal, as a resolver would read it
        const char *kind; //  its refusal, "" when allowed
    } cases[] = {
        {"127.0.0.1", "loopback"},
        {"127.255.1.2", "loopback"},
        {"0x7f000001", "loopback"},
        {"2130706433", "loopback"},
        {"127.1", "loopback"},
        {"0177.0.0.1", "loopback"},
        {"::1", "loopback"},
        {"::ffff:127.0.0.1", "loopback"},
        {"::127.0.0.1", "loopback"},
        {"64:ff9b::7f00:1", "loopback"},
        {"2002:7f00:1::", "loopback"},
        {"0.0.0.0", "unspecified"},
        {"0", "unspecified"},
        {"::", "unspecified"},
        {"::ffff:0.0.0.0", "unspecified"},
        {"10.1.2.3", "private"},
        {"012.1.2.3", "private"}, //  octal 10
        {"172.16.0.1", "private"},
        {"172.31.255.255", "private"},
        {"192.168.1.10", "private"},
        {"198.18.0.1", "private"},
        {"::ffff:10.0.0.1", "private"},
        {"::ffff:a00:1", "private"},
        {"fc00::1", "private"},
        {"fd12:3456::1", "private"},
        {"fec0::1", "private"},
        {"100.64.0.1", "carrier-grade NAT"},
        {"100.127.255.254", "carrier-grade NAT"},
        {"169.254.169.254", "link-local"},
        {"0xa9fea9fe", "link-local"},
        {"fe80::1", "link-local"},
        {"febf::1", "link-local"},
        {"::ffff:169.254.169.254", "link-local"},
        {"224.0.0.1", "multicast"},
        {"239.255.255.250", "multicast"},
        {"ff02::1", "multicast"},
        {"255.255.255.255", "reserved or broadcast"},
        {"240.0.0.1", "reserved or broadcast"},
        //  Public, and the neighbours of the refused ranges
        {"8.8.8.8", ""},
        {"1.1.1.1", ""},
        {"172.15.255.255", ""},
        {"172.32.0.0", ""},
        {"100.63.255.255", ""},
        {"100.128.0.0", ""},
        {"192.169.0.1", ""},
        {"11.0.0.1", ""},
        {"126.255.255.255", ""},
        {"223.255.255.255", ""},
        {"203.0.113.10", ""},
        {"2001:db8::1", ""},
        {"2606:4700::1111", ""},
        {"::ffff:8.8.8.8", ""},
        {"::2", "unspecified"}, //  compatible ::0.0.0.2: "this network"
        {"fbff::1", ""},
        {"fe7f::1", ""},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        const char *got = s_test_judge (self, cases[index].text);
        if (verbose || !streq (got, cases[index].kind))
            printf ("   %s -> '%s' (want '%s')\n", cases[index].text, got, cases[index].kind);
        assert (streq (got, cases[index].kind));
    }
    struct sockaddr_un_like {
        sa_family_t family;
        char path[20];
    } unix_address = {AF_UNIX, "/tmp/x"};
    assert (proto_address_refusal (self, (struct sockaddr *)&unix_address, sizeof unix_address));

    //  URLs: the same judgement through libcurl's parser and the resolver.
    char error[256];
    const char *refused[] = {
        "http://127.0.0.1:5432/",
        "http://[::1]/x",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://127.1/",
        "http://0177.0.0.1/",
        "http://localhost:8123/api/webhook/x",
        "https://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://[fc00::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "ftp://203.0.113.10/",
        "file:///etc/passwd",
        "gopher://203.0.113.10/",
        "http://user:pass@203.0.113.10/",
        "http://203.0.113.10@127.0.0.1/",
        "http://",
        "not a url",
        "http://exa mple.com/",
    };
    for (size_t index = 0; index < sizeof refused / sizeof refused[0]; index++) {
        int rc = proto_address_check_url (self, refused[index], 1000, error, sizeof error);
        if (verbose || rc != PROTO_ADDRESS_REFUSED)
            printf ("   %s -> %d %s\n", refused[index], rc, error);
        assert (rc == PROTO_ADDRESS_REFUSED);
        assert (*error);
    }
    assert (proto_address_check_url (self, "http://127.0.0.1/", 1000, error, sizeof error) ==
            PROTO_ADDRESS_REFUSED);
    assert (strstr (error, "loopback") && strstr (error, "webhook_allow_private"));
    //  Literals only: a test may send no query to any DNS server.
    const char *allowed[] = {"https://203.0.113.10/hook", "http://[2001:db8::1]:8080/a?b=c",
                             "http://203.0.113.10:1/"};
    for (size_t index = 0; index < sizeof allowed / sizeof allowed[0]; index++)
        assert (proto_address_check_url (self, allowed[index], 1000, error, sizeof error) == 0);
    proto_address_destroy (&self);

    //  webhook_allow_private lets loopback, private and CGNAT through; the
    //  rest stays refused.
    self = proto_address_new (true, NULL);
    assert (streq (s_test_judge (self, "127.0.0.1"), ""));
    assert (streq (s_test_judge (self, "::ffff:192.168.0.2"), ""));
    assert (streq (s_test_judge (self, "fd00::5"), ""));
    assert (streq (s_test_judge (self, "100.64.1.1"), ""));
    assert (streq (s_test_judge (self, "169.254.169.254"), "link-local"));
    assert (streq (s_test_judge (self, "0.0.0.0"), "unspecified"));
    assert (streq (s_test_judge (self, "ff02::1"), "multicast"));
    assert (proto_address_check_url (self, "http://localhost:8123/x", 1000, error, sizeof error) ==
            0);
    proto_address_destroy (&self);

    //  An allow-list lets exactly its entries through.
    self = proto_address_new (false, "127.0.0.3/32, 192.168.1.0/24,fd00:1::/32 169.254.169.254");
    assert (self);
    assert (streq (s_test_judge (self, "127.0.0.3"), ""));
    assert (streq (s_test_judge (self, "::ffff:127.0.0.3"), ""));
    assert (streq (s_test_judge (self, "127.0.0.1"), "loopback"));
    assert (streq (s_test_judge (self, "192.168.1.200"), ""));
    assert (streq (s_test_judge (self, "192.168.2.1"), "private"));
    assert (streq (s_test_judge (self, "fd00:1:ffff::1"), ""));
    assert (streq (s_test_judge (self, "fd00:2::1"), "private"));
    assert (streq (s_test_judge (self, "169.254.169.254"), ""));
    assert (streq (s_test_judge (self, "8.8.8.8"), ""));
    proto_address_destroy (&self);
    self = proto_address_new (false, "10.0.0.0/7");
    assert (streq (s_test_judge (self, "11.255.0.1"), ""));
    assert (streq (s_test_judge (self, "12.0.0.1"), ""));
    assert (streq (s_test_judge (self, "10.9.9.9"), ""));
    proto_address_destroy (&self);
    const char *bad[] = {"10.0.0.0/33", "nonsense", "10.0.0.0/", "/8", "::1/129", "10.0.0.0/-1"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        assert (proto_address_new (false, bad[index]) == NULL);

    //  From the config: the keys, and a bad value stops the caller.
    setenv ("PHANTOM_WEBHOOK_ALLOW_PRIVATE", "1", 1);
    setenv ("PHANTOM_WEBHOOK_ALLOW_CIDRS", "169.254.0.0/16", 1);
    proto_config_t *config = proto_config_new (NULL);
    self = proto_address_new_from_config (config);
    assert (self);
    assert (streq (s_test_judge (self, "10.0.0.1"), ""));
    assert (streq (s_test_judge (self, "169.254.1.1"), ""));
    proto_address_destroy (&self);
    proto_config_destroy (&config);
    //  A value that is not 0 or 1 stops the config itself.
    setenv ("PHANTOM_WEBHOOK_ALLOW_PRIVATE", "yes", 1);
    assert (proto_config_new (NULL) == NULL);
    setenv ("PHANTOM_WEBHOOK_ALLOW_PRIVATE", "0", 1);
    setenv ("PHANTOM_WEBHOOK_ALLOW_CIDRS", "nonsense", 1);
    config = proto_config_new (NULL);
    assert (proto_address_new_from_config (config) == NULL);
    proto_config_destroy (&config);
    unsetenv ("PHANTOM_WEBHOOK_ALLOW_PRIVATE");
    unsetenv ("PHANTOM_WEBHOOK_ALLOW_CIDRS");
    config = proto_config_new (NULL);
    self = proto_address_new_from_config (config);
    assert (streq (s_test_judge (self, "10.0.0.1"), "private"));
    proto_address_destroy (&self);
    proto_config_destroy (&config);
    proto_address_destroy (&self); //  twice is safe
    printf ("OK\n");
}
