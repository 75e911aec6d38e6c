/*  =========================================================================
    gateway_token_table - SHA-256 of a device token -> the cache's device
    entry (borrowed), a lookup that only reads, so readers share a lock
    =========================================================================
*/
#ifndef GATEWAY_TOKEN_TABLE_H_INCLUDED
#define GATEWAY_TOKEN_TABLE_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _gateway_token_table_t gateway_token_table_t;

gateway_token_table_t *gateway_token_table_new (void);
void gateway_token_table_destroy (gateway_token_table_t **self_p);
//  The value of hash, NULL if none.
void *gateway_token_table_lookup (const gateway_token_table_t *self, const uint8_t hash[32]);
//  Inserts or replaces; value is the caller's and not NULL.
void gateway_token_table_update (gateway_token_table_t *self, const uint8_t hash[32], void *value);
void gateway_token_table_delete (gateway_token_table_t *self, const uint8_t hash[32]);
//  Entries it holds.
size_t gateway_token_table_size (const gateway_token_table_t *self);
void gateway_token_table_test (bool verbose);

#endif
