/*  =========================================================================
    proto_address - which addresses a webhook may reach

    One check for the gateway (when a webhook is created: every address its
    host resolves to) and the notifier (at every delivery: the address each
    connection is about to be opened to). Refused unless the config allows
    them: loopback, unspecified, private (RFC 1918, 198.18/15, IPv6
    unique-local fc00::/7 and site-local fec0::/10), carrier-grade NAT
    100.64/10, link-local (169.254/16, fe80::/10), multicast, 240/4 and
    broadcast; an IPv6 address that carries an IPv4 one (mapped ::ffff:0:0/96,
    compatible ::/96, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged by it.
    Config: webhook_allow_private = 1 lets loopback, private and
    carrier-grade NAT addresses through (Home Assistant on the LAN);
    webhook_allow_cidrs = "192.168.1.10/32, fd00::/8" lets exactly those
    through, whatever their kind. Default: neither.
    =========================================================================
*/
#ifndef PROTO_ADDRESS_H_INCLUDED
#define PROTO_ADDRESS_H_INCLUDED

#include "proto_config.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

//  Results of proto_address_check_url other than 0.
#define PROTO_ADDRESS_REFUSED -1 //  the URL may not be used: a message says why
#define PROTO_ADDRESS_AGAIN -2   //  its host could not be resolved in time; try later

typedef struct _proto_address_t proto_address_t;

//  allow_cidrs: comma-separated CIDRs (or NULL). NULL, after logging why,
//  when an entry is not a CIDR.
proto_address_t *proto_address_new (bool allow_private, const char *allow_cidrs);
//  The same from webhook_allow_private (0 or 1) and webhook_allow_cidrs.
proto_address_t *proto_address_new_from_config (proto_config_t *config);
void proto_address_destroy (proto_address_t **self_p);

//  NULL when address may be connected to; else the kind of address that
//  is refused ("loopback", "private", ...). Thread-safe.
const char *proto_address_refusal (proto_address_t *self, const struct sockaddr *address,
                                   size_t length);

//  Checks a webhook URL as libcurl (which delivers it) parses it: http:// or
//  https://, a host, no user or password; every address the host resolves
//  to (within timeout_ms) must pass proto_address_refusal. 0,
//  PROTO_ADDRESS_REFUSED or PROTO_ADDRESS_AGAIN, with a message for the
//  user in error. Thread-safe.
int proto_address_check_url (proto_address_t *self, const char *url, int timeout_ms, char *error,
                             size_t error_size);

void proto_address_test (bool verbose);

#endif
