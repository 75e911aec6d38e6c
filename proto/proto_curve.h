/*  =========================================================================
    proto_curve - CURVE encryption and authentication of the pipeline links

    Off unless the config says curve = 1. Then every pipeline socket gets a
    CURVE identity from curve_dir (default $PHANTOM_VAR/curve, else
    var/curve):

      curve_dir/server.cert, server.cert_secret   the binders' keypair
      curve_dir/client.cert, client.cert_secret   the connectors' keypair
      curve_dir/allowed/NAME.cert                 public certs a binder accepts

    (zcert_save format; deploy/curve-keys or phantom-certs writes them.)
    Binders (gateway PUSH partitions, store PULL and PUB, detector PUB) call
    proto_curve_server before bind; connectors call proto_curve_client before
    connect. A binder's context gets one ZAP handler, started on first use,
    that accepts a CURVE client only if its public key is in allowed/ (read
    again on every handshake, so a cert added or removed counts at the next
    connection). A peer without an allowed key, or without CURVE, never
    completes the handshake: it sends and receives nothing.
    =========================================================================
*/
#ifndef PROTO_CURVE_H_INCLUDED
#define PROTO_CURVE_H_INCLUDED

#include <stdbool.h>

#include "proto_config.h"

#define PROTO_CURVE_DOMAIN "phantomwatch" //  ZAP domain of every CURVE binder

//  Process-wide settings, for classes that are handed endpoints rather than
//  the config: main calls this once after loading the config; a NULL config
//  in the calls below then means these settings (never configured: off).
//  0 (the config checked curve when it loaded).
int proto_curve_configure (proto_config_t *config);

//  true when the config enables CURVE (curve = 1).
bool proto_curve_enabled (proto_config_t *config);

//  Makes socket (a zsock_t * or a libzmq socket) a CURVE server with the
//  server keypair, and makes sure context (NULL: CZMQ's zsys context) has the
//  ZAP handler. Call before bind. 0, also when CURVE is off; -1 (logged)
//  when the certs cannot be read or the handler cannot start: the caller
//  must then not bind (an unauthenticated binder would accept anyone).
int proto_curve_server (void *socket, void *context, proto_config_t *config);

//  Gives socket the client keypair and the server's public key. Call before
//  connect. 0, also when CURVE is off; -1 (logged) when certs are missing.
int proto_curve_client (void *socket, proto_config_t *config);

//  The configured cert directory, borrowed from config or process-wide.
const char *proto_curve_dir (proto_config_t *config);

//  Creates dir (mode 700) with allowed/, and whichever of the server and
//  client keypairs is missing; puts the client's public cert into allowed/.
//  Existing certs are kept. 0 or -1.
int proto_curve_keys (const char *dir);

void proto_curve_test (bool verbose);

#endif
