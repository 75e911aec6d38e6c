/*  =========================================================================
    gateway_api_token - session and device tokens, kept only as their SHA-256
    =========================================================================
*/
#ifndef GATEWAY_API_TOKEN_H_INCLUDED
#define GATEWAY_API_TOKEN_H_INCLUDED

#include <stdbool.h>

#define GATEWAY_API_TOKEN_CHARS 43 //  base64url text of a 256-bit token, no padding
#define GATEWAY_API_HASH_TEXT 67   //  "\x" + 64 hex digits + NUL: a bytea parameter
void gateway_api_token_new (char token[GATEWAY_API_TOKEN_CHARS + 1],
                            char hash[GATEWAY_API_HASH_TEXT]);
bool gateway_api_token_valid (const char *text);
void gateway_api_token_hash_text (const char *token, char out[GATEWAY_API_HASH_TEXT]);
void gateway_api_token_test (bool verbose);

#endif
