/*  =========================================================================
    gateway_token_use - writes when device tokens were last used
    =========================================================================
*/
#ifndef GATEWAY_TOKEN_USE_H_INCLUDED
#define GATEWAY_TOKEN_USE_H_INCLUDED

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Writes count stamps (ms since epoch) of device ids whose token has the
//  SHA-256 hashes, in statements of a chunk each. Returns how many from
//  the start were written: the rest (after a failed statement, logged)
//  go with the next write.
size_t gateway_token_use_write (PGconn *conn, const int64_t *ids, const int64_t *stamps,
                                const uint8_t (*hashes)[32], size_t count);
void gateway_token_use_test (bool verbose);

#endif
