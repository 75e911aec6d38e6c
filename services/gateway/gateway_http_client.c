/*  =========================================================================
    gateway_http_client - who the client is: its address and whether it
    came over https, through the reverse proxies we trust

    Process-wide: configured once at start-up, read by every worker.
    =========================================================================
*/
#include "gateway_http_client.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <pthread.h>
#include <strings.h>

//  Address text to 16 bytes (IPv4 as IPv4-mapped IPv6); false if it is
//  not an address.
bool
gateway_http_client_address_parse (const char *text, uint8_t address[16])
{
    memset (address, 0, 16);
    struct in_addr v4;
    if (text && inet_pton (AF_INET, text, &v4) == 1) {
        address[10] = address[11] = 0xff;
        memcpy (address + 12, &v4, 4);
        return true;
    }
    return text && inet_pton (AF_INET6, text, address) == 1;
}

bool
gateway_http_client_address_v4 (const uint8_t address[16])
{
    static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp (address, prefix, 12) == 0;
}

//  Client address behind reverse proxies. Only a peer in trusted_proxies
//  is believed about who it forwards for; the client is the rightmost hop
//  of the forwarding header that is not itself a trusted proxy (hops left
//  of it were written by whoever sent the request, and may be anything).
//  One header only, the one the proxy is set to write: a proxy that sets
//  X-Forwarded-For passes a client's own Forwarded header through
//  untouched, and the other way round.

#define TRUSTED_MAX 32    //  entries of trusted_proxies
#define FORWARD_HOPS 64   //  hops looked at, from the right
#define FORWARD_TEXT 2048 //  bytes of the forwarding header looked at, from the right

typedef struct {
    uint8_t address[16]; //  IPv6, or IPv4-mapped
    int bits;            //  prefix length over the 128
} s_network_t;

static struct {
    pthread_rwlock_t lock;
    s_network_t networks[TRUSTED_MAX];
    int count;
    bool rfc7239; //  Forwarded, else X-Forwarded-For / X-Forwarded-Proto
} s_proxies = {.lock = PTHREAD_RWLOCK_INITIALIZER};

//  "192.0.2.1", "10.0.0.0/8", "::1", "fd00::/8" into network; -1 if malformed.
static int
s_network_parse (const char *text, s_network_t *network)
{
    char address[INET6_ADDRSTRLEN + 8];
    size_t length = strcspn (text, "/");
    if (length == 0 || length >= sizeof address)
        return -1;
    memcpy (address, text, length);
    address[length] = 0;
    if (!gateway_http_client_address_parse (address, network->address))
        return -1;
    bool v4 = strchr (address, ':') == NULL;
    int max = v4 ? 32 : 128;
    int bits = max;
    if (text[length] == '/') {
        const char *digits = text + length + 1;
        char *end;
        errno = 0;
        long value = strtol (digits, &end, 10);
        if (!isdigit ((unsigned char)*digits) || *end || errno || value < 0 || value > max)
            return -1;
        bits = (int)value;
    }
    network->bits = v4 ? bits + 96 : bits;
    //  Host bits set ("10.1.2.3/8") are cleared, as every router does.
    for (int bit = network->bits; bit < 128; bit++)
        network->address[bit / 8] &= (uint8_t) ~(0x80u >> (bit % 8));
    return 0;
}

static bool
s_network_contains (const s_network_t *network, const uint8_t address[16])
{
    int whole = network->bits / 8, rest = network->bits % 8;
    if (memcmp (network->address, address, (size_t)whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (network->address[whole] & mask) == (address[whole] & mask);
}

//  Under the read lock.
static bool
s_trusted (const uint8_t address[16])
{
    for (int index = 0; index < s_proxies.count; index++)
        if (s_network_contains (&s_proxies.networks[index], address))
            return true;
    return false;
}

int
gateway_http_client_proxies_configure (const char *list, const char *header)
{
    s_network_t networks[TRUSTED_MAX];
    int count = 0;
    bool rfc7239 = false;
    if (header && *header) {
        if (strcasecmp (header, "Forwarded") == 0)
            rfc7239 = true;
        else if (strcasecmp (header, "X-Forwarded-For") != 0) {
            zsys_error ("gateway http - trusted_proxy_header must be X-Forwarded-For or Forwarded, "
                        "not '%s'",
                        header);
            return -1;
        }
    }
    const char *cursor = list ? list : "";
    while (*cursor) {
        size_t length = strcspn (cursor, ", \t");
        if (length) {
            char entry[INET6_ADDRSTRLEN + 8];
            if (length >= sizeof entry || count == TRUSTED_MAX) {
                zsys_error ("gateway http - trusted_proxies: too long, at most %d entries",
                            TRUSTED_MAX);
                return -1;
            }
            memcpy (entry, cursor, length);
            entry[length] = 0;
            if (s_network_parse (entry, &networks[count]) != 0) {
                zsys_error ("gateway http - trusted_proxies: '%s' is not an address or CIDR",
                            entry);
                return -1;
            }
            count++;
            cursor += length;
        } else
            cursor++;
    }
    pthread_rwlock_wrlock (&s_proxies.lock);
    memcpy (s_proxies.networks, networks, sizeof networks);
    s_proxies.count = count;
    s_proxies.rfc7239 = rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    return 0;
}

//  Trims blanks and one pair of quotes.
static void
s_trim (const char **start, const char **end)
{
    while (*start < *end && (**start == ' ' || **start == '\t'))
        (*start)++;
    while (*end > *start && ((*end)[-1] == ' ' || (*end)[-1] == '\t'))
        (*end)--;
    if (*end - *start >= 2 && **start == '"' && (*end)[-1] == '"') {
        (*start)++;
        (*end)--;
    }
}

//  In a Forwarded element (pairs split by ';'), the value of name, trimmed
//  and unquoted, into start/end; false if absent.
static bool
s_forwarded_pair (const char *element, const char *element_end, const char *name,
                  const char **start, const char **end)
{
    size_t name_length = strlen (name);
    const char *cursor = element;
    while (cursor < element_end) {
        const char *pair_end = memchr (cursor, ';', (size_t)(element_end - cursor));
        if (!pair_end)
            pair_end = element_end;
        const char *pair = cursor, *stop = pair_end;
        s_trim (&pair, &stop);
        if ((size_t)(stop - pair) > name_length && strncasecmp (pair, name, name_length) == 0 &&
            pair[name_length] == '=') {
            *start = pair + name_length + 1;
            *end = stop;
            s_trim (start, end);
            return true;
        }
        cursor = pair_end + 1;
    }
    return false;
}

//  A hop's node ("192.0.2.1", "192.0.2.1:80", "2001:db8::1", "[2001:db8::1]:80")
//  to an address; false for anything else ("unknown", "_hidden", garbage).
static bool
s_hop_address (const char *start, const char *end, uint8_t address[16])
{
    char text[INET6_ADDRSTRLEN + 8];
    if (end - start >= 2 && *start == '[') {
        const char *close = memchr (start, ']', (size_t)(end - start));
        if (!close)
            return false;
        start++;
        end = close;
    } else {
        //  One colon: IPv4 with a port; more: IPv6 without brackets.
        const char *colon = memchr (start, ':', (size_t)(end - start));
        if (colon && !memchr (colon + 1, ':', (size_t)(end - colon - 1)))
            end = colon;
    }
    if (end <= start || (size_t)(end - start) >= sizeof text)
        return false;
    memcpy (text, start, (size_t)(end - start));
    text[end - start] = 0;
    return gateway_http_client_address_parse (text, address);
}

//  Every line of the header name, joined by commas in order, into buffer
//  (its rightmost size - 1 bytes when longer); false when there is none.
static bool
s_header_joined (const struct mg_request_info *info, const char *name, char *buffer, size_t size)
{
    size_t used = 0;
    bool found = false;
    buffer[0] = 0;
    for (int index = 0; index < info->num_headers; index++) {
        const struct mg_header *header = &info->http_headers[index];
        if (!header->name || !header->value || strcasecmp (header->name, name) != 0)
            continue;
        size_t length = strlen (header->value);
        size_t need = length + (found ? 1 : 0);
        //  Keep the right end: the hops our proxies wrote are there.
        if (need >= size) {
            const char *tail = header->value + length - (size - 1);
            memcpy (buffer, tail, size - 1);
            used = size - 1;
        } else {
            if (used + need >= size) {
                size_t drop = used + need - (size - 1);
                memmove (buffer, buffer + drop, used - drop);
                used -= drop;
            }
            if (found)
                buffer[used++] = ',';
            memcpy (buffer + used, header->value, length);
            used += length;
        }
        buffer[used] = 0;
        found = true;
    }
    return found;
}

//  The client of a request from peer with the forwarding header value
//  forwarded (joined lines; NULL if none), as address text into out.
//  Exposed to the self test through gateway_http_client_forwarded.
static void
s_forwarded_client (const char *peer, const char *forwarded, bool rfc7239, char *out,
                    size_t out_size)
{
    uint8_t address[16];
    snprintf (out, out_size, "%s", peer ? peer : "");
    if (!gateway_http_client_address_parse (peer, address))
        return;
    pthread_rwlock_rdlock (&s_proxies.lock);
    if (!forwarded || !s_trusted (address)) {
        pthread_rwlock_unlock (&s_proxies.lock);
        return;
    }
    //  Right to left: each hop a trusted proxy vouches for, until one that
    //  is not trusted (the client) or one that is not an address (then
    //  the proxy that wrote it is the client as far as we can know).
    uint8_t client[16];
    memcpy (client, address, 16);
    const char *end = forwarded + strlen (forwarded);
    for (int hop = 0; hop < FORWARD_HOPS && end > forwarded; hop++) {
        const char *start = end;
        while (start > forwarded && start[-1] != ',')
            start--;
        const char *node = start, *node_end = end;
        bool have = rfc7239 ? s_forwarded_pair (start, end, "for", &node, &node_end)
                            : (s_trim (&node, &node_end), true);
        if (!have || !s_hop_address (node, node_end, address))
            break;
        memcpy (client, address, 16);
        if (!s_trusted (address))
            break;
        end = start > forwarded ? start - 1 : forwarded;
    }
    pthread_rwlock_unlock (&s_proxies.lock);
    char text[INET6_ADDRSTRLEN];
    if (gateway_http_client_address_v4 (client))
        inet_ntop (AF_INET, client + 12, text, sizeof text);
    else
        inet_ntop (AF_INET6, client, text, sizeof text);
    snprintf (out, out_size, "%s", text);
}

void
gateway_http_client_forwarded (const char *peer, const char *forwarded, char *out, size_t out_size)
{
    pthread_rwlock_rdlock (&s_proxies.lock);
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    s_forwarded_client (peer, forwarded, rfc7239, out, out_size);
}

//  One per worker thread: civetweb serves a request on one thread from
//  start to end, and callers use the address within the request.
static _Thread_local char s_client_text[INET6_ADDRSTRLEN];

const char *
gateway_http_client_ip (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info)
        return "";
    pthread_rwlock_rdlock (&s_proxies.lock);
    int count = s_proxies.count;
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    if (count == 0)
        return info->remote_addr;
    char forwarded[FORWARD_TEXT];
    bool found = s_header_joined (info, rfc7239 ? "Forwarded" : "X-Forwarded-For", forwarded,
                                  sizeof forwarded);
    s_forwarded_client (info->remote_addr, found ? forwarded : NULL, rfc7239, s_client_text,
                        sizeof s_client_text);
    return s_client_text;
}

bool
gateway_http_client_https (struct mg_connection *conn)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    if (!info)
        return false;
    if (info->is_ssl)
        return true;
    uint8_t peer[16];
    if (!gateway_http_client_address_parse (info->remote_addr, peer))
        return false;
    pthread_rwlock_rdlock (&s_proxies.lock);
    bool trusted = s_trusted (peer);
    bool rfc7239 = s_proxies.rfc7239;
    pthread_rwlock_unlock (&s_proxies.lock);
    if (!trusted)
        return false;
    //  The nearest proxy's word: the rightmost value (element) of the header.
    char value[FORWARD_TEXT];
    if (!s_header_joined (info, rfc7239 ? "Forwarded" : "X-Forwarded-Proto", value, sizeof value))
        return false;
    const char *end = value + strlen (value), *start = end;
    while (start > value && start[-1] != ',')
        start--;
    const char *proto = start, *proto_end = end;
    if (rfc7239 ? !s_forwarded_pair (start, end, "proto", &proto, &proto_end)
                : (s_trim (&proto, &proto_end), false))
        return false;
    return proto_end - proto == 5 && strncasecmp (proto, "https", 5) == 0;
}

//  trusted_proxies and the client address.
static void
s_forwarded_check (void)
{
    char client[64];
    //  Bad lists are refused whole, the current one stays.
    assert (gateway_http_client_proxies_configure ("127.0.0.1", NULL) == 0);
    assert (gateway_http_client_proxies_configure ("127.0.0.1, nope", NULL) == -1);
    assert (gateway_http_client_proxies_configure ("10.0.0.0/33", NULL) == -1);
    assert (gateway_http_client_proxies_configure ("::1/129", NULL) == -1);
    assert (gateway_http_client_proxies_configure ("10.0.0.0/", NULL) == -1);
    assert (gateway_http_client_proxies_configure ("/8", NULL) == -1);
    assert (gateway_http_client_proxies_configure ("", "X-Real-IP") == -1);
    gateway_http_client_forwarded ("127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));

    //  No proxies (the default): the header is never believed.
    assert (gateway_http_client_proxies_configure ("", NULL) == 0);
    gateway_http_client_forwarded ("127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "127.0.0.1"));

    assert (gateway_http_client_proxies_configure ("127.0.0.1, 10.0.0.0/8,fd00::/8", NULL) == 0);
    //  From a peer that is no proxy of ours: the peer, whatever it says.
    gateway_http_client_forwarded ("198.51.100.4", "203.0.113.9", client, sizeof client);
    assert (streq (client, "198.51.100.4"));
    //  No header from a proxy: the proxy.
    gateway_http_client_forwarded ("127.0.0.1", NULL, client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    //  The rightmost hop that is not ours: what a client wrote to the left
    //  of it ("1.2.3.4" forged) does not count.
    gateway_http_client_forwarded ("127.0.0.1", "1.2.3.4, 203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_client_forwarded ("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3", client,
                                   sizeof client);
    assert (streq (client, "203.0.113.9"));
    //  All hops ours: the leftmost.
    gateway_http_client_forwarded ("127.0.0.1", "10.9.9.9,10.1.2.3", client, sizeof client);
    assert (streq (client, "10.9.9.9"));
    //  Ports, brackets, IPv6, mapped forms, blanks.
    gateway_http_client_forwarded ("127.0.0.1", " 203.0.113.9:4711 ", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_client_forwarded ("127.0.0.1", "[2001:db8::1]:80", client, sizeof client);
    assert (streq (client, "2001:db8::1"));
    gateway_http_client_forwarded ("fd00::5", "2001:DB8::1", client, sizeof client);
    assert (streq (client, "2001:db8::1"));
    gateway_http_client_forwarded ("::ffff:127.0.0.1", "203.0.113.9", client, sizeof client);
    assert (streq (client, "203.0.113.9"));
    //  A hop that is not an address: the proxy that wrote it is as far as
    //  we can see, never the garbage.
    gateway_http_client_forwarded ("127.0.0.1", "203.0.113.9, unknown", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_client_forwarded ("127.0.0.1", "203.0.113.9, 300.1.1.1, 10.0.0.2", client,
                                   sizeof client);
    assert (streq (client, "10.0.0.2"));
    gateway_http_client_forwarded ("127.0.0.1", "", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_client_forwarded ("127.0.0.1", ",,,", client, sizeof client);
    assert (streq (client, "127.0.0.1"));

    //  RFC 7239 when asked: for= of each element, quoted, with port.
    assert (gateway_http_client_proxies_configure ("127.0.0.1", "Forwarded") == 0);
    gateway_http_client_forwarded ("127.0.0.1",
                                   "for=1.2.3.4, for=\"[2001:db8::cafe]:4711\";proto=https;by=x",
                                   client, sizeof client);
    assert (streq (client, "2001:db8::cafe"));
    gateway_http_client_forwarded ("127.0.0.1", "For=203.0.113.9;proto=http", client,
                                   sizeof client);
    assert (streq (client, "203.0.113.9"));
    gateway_http_client_forwarded ("127.0.0.1", "for=_hidden", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    gateway_http_client_forwarded ("127.0.0.1", "proto=https", client, sizeof client);
    assert (streq (client, "127.0.0.1"));
    assert (gateway_http_client_proxies_configure ("", NULL) == 0);
}

void
gateway_http_client_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_http_client: ");
    s_forwarded_check ();
    printf ("OK\n");
}
