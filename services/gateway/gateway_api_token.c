/*  =========================================================================
    gateway_api_token - session and device tokens: 256-bit random, shown once, kept only
    as their SHA-256
    =========================================================================
*/
#include "gateway_api.h"

#include <ctype.h>
#include <sodium.h>

#define S_TOKEN_BYTES 32 //  256-bit session and device tokens

//  SHA-256 of a token's text, as a bytea parameter ("\x" + hex).
void
gateway_api_token_hash_text (const char *token, char out[GATEWAY_API_HASH_TEXT])
{
    uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256 (digest, (const uint8_t *)token, strlen (token));
    out[0] = '\\';
    out[1] = 'x';
    sodium_bin2hex (out + 2, GATEWAY_API_HASH_TEXT - 2, digest, sizeof digest);
}

//  A fresh 256-bit token as base64url text, and its hash parameter.
void
gateway_api_token_new (char token[GATEWAY_API_TOKEN_CHARS + 1], char hash[GATEWAY_API_HASH_TEXT])
{
    uint8_t random[S_TOKEN_BYTES];
    randombytes_buf (random, sizeof random);
    sodium_bin2base64 (token, GATEWAY_API_TOKEN_CHARS + 1, random, sizeof random,
                       sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero (random, sizeof random);
    gateway_api_token_hash_text (token, hash);
}

//  true when text has the shape of a token we issue; anything else is
//  rejected before it costs a query.
bool
gateway_api_token_valid (const char *text)
{
    size_t length = strlen (text);
    if (length != GATEWAY_API_TOKEN_CHARS)
        return false;
    for (size_t index = 0; index < length; index++)
        if (!isalnum ((unsigned char)text[index]) && text[index] != '-' && text[index] != '_')
            return false;
    return true;
}

//  --------------------------------------------------------------------------
void
gateway_api_token_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_api_token: ");
    char token[GATEWAY_API_TOKEN_CHARS + 1], other[GATEWAY_API_TOKEN_CHARS + 1],
        hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, hash);
    gateway_api_token_new (other, hash);
    assert (strlen (token) == GATEWAY_API_TOKEN_CHARS && gateway_api_token_valid (token) &&
            !streq (token, other));
    assert (strlen (hash) == GATEWAY_API_HASH_TEXT - 1 && hash[0] == '\\' && hash[1] == 'x');
    assert (!gateway_api_token_valid ("short") &&
            !gateway_api_token_valid ("0123456789012345678901234567890123456789+/="));

    printf ("OK\n");
}
