/*  =========================================================================
    gateway_http_client - who the client is, through trusted reverse proxies
    =========================================================================
*/
#ifndef GATEWAY_HTTP_CLIENT_H_INCLUDED
#define GATEWAY_HTTP_CLIENT_H_INCLUDED

#include <civetweb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Reverse proxies whose forwarding header is believed: list is
//  comma-separated addresses and CIDRs ("127.0.0.1, 10.0.0.0/8, ::1"),
//  empty for none; header "X-Forwarded-For" (default, with
//  X-Forwarded-Proto) or "Forwarded" (RFC 7239, for= and proto=). 0, or -1
//  on a malformed entry (logged). Process-wide.
int gateway_http_client_proxies_configure (const char *list, const char *header);
//  The client's address as text: civetweb's remote_addr, or when that is
//  a trusted proxy the rightmost hop of the forwarding header that is not
//  one. Valid until this thread's next call (a worker serves one request).
const char *gateway_http_client_ip (struct mg_connection *conn);
//  The same from a peer address and a forwarding header's joined lines
//  (NULL: none), into out. For tests.
void gateway_http_client_forwarded (const char *peer, const char *forwarded, char *out,
                                    size_t out_size);
//  true when the client reached us over https: civetweb's own TLS, or a
//  trusted proxy that says so (X-Forwarded-Proto: https, or proto=https in
//  its Forwarded element).
bool gateway_http_client_https (struct mg_connection *conn);

//  Address text into 16 bytes (IPv4 as IPv4-mapped IPv6); false if it is
//  not an address.
bool gateway_http_client_address_parse (const char *text, uint8_t address[16]);
//  true for an IPv4-mapped address.
bool gateway_http_client_address_v4 (const uint8_t address[16]);

void gateway_http_client_test (bool verbose);

#endif
