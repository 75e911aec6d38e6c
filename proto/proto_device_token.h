/*  =========================================================================
    proto_device_token - when a device token opens its device

    The one rule the gateway (gateway_cache) and the broker's auth plugin
    (mqtt_auth_table) both apply, so they cannot disagree on a token: the
    current token before its expiry, else the previous one within its grace
    after a rotation; a previous token without an expiry has no grace.
    Only SHA-256 hashes are kept, compared in constant time.
    =========================================================================
*/
#ifndef PROTO_DEVICE_TOKEN_H_INCLUDED
#define PROTO_DEVICE_TOKEN_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    bool has_current;         //  a current token is set
    uint8_t current[32];      //  its SHA-256
    int64_t current_expires;  //  ms since epoch; INT64_MAX = never
    bool has_previous;        //  a rotated-out token still in its grace
    uint8_t previous[32];     //  its SHA-256
    int64_t previous_expires; //  ms since epoch
} proto_device_token_t;

//  The four columns of devices that proto_device_token_from_row reads.
#define PROTO_DEVICE_TOKEN_COLUMNS                                                                 \
    "encode(token_hash, 'hex'), "                                                                  \
    "COALESCE((extract(epoch FROM token_expires_at) * 1000)::bigint, -1), "                        \
    "encode(previous_token_hash, 'hex'), "                                                         \
    "COALESCE((extract(epoch FROM previous_token_expires_at) * 1000)::bigint, -1)"

typedef enum {
    PROTO_DEVICE_TOKEN_NONE = 0, //  no token of the device, or one past its time
    PROTO_DEVICE_TOKEN_CURRENT,  //  the current token, before its expiry
    PROTO_DEVICE_TOKEN_PREVIOUS, //  the previous token, within its grace
} proto_device_token_match_t;

//  Reads the PROTO_DEVICE_TOKEN_COLUMNS of row, starting at column; a hash
//  that is not 64 hex digits is no token. true if a token may match.
bool proto_device_token_from_row (proto_device_token_t *self, const PGresult *result, int row,
                                  int column);

//  Which of the device's tokens hash (a SHA-256) is at now_ms; NONE is 0,
//  so the answer reads as a bool. The gateway stamps only the current
//  token's use, hence not a bool.
proto_device_token_match_t proto_device_token_matches (const proto_device_token_t *self,
                                                       const uint8_t hash[32], int64_t now_ms);

void proto_device_token_test (bool verbose);

#endif
