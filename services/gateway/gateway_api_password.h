/*  =========================================================================
    gateway_api_password - passwords: hashed and verified on a bounded pool, new ones checked
    =========================================================================
*/
#ifndef GATEWAY_API_PASSWORD_H_INCLUDED
#define GATEWAY_API_PASSWORD_H_INCLUDED

#include <sodium.h>
#include <stdbool.h>

//  true once the pool is set up (the first call sets it up).
bool gateway_api_password_ready (void);

//  NULL when password may be chosen by the user of email and name, else
//  why not, as a sentence for the user (gateway_api_password_unchecked:
//  cannot tell). Long enough is the caller's check.
const char *gateway_api_password_weak (const char *password, const char *email, const char *name);
extern const char gateway_api_password_unchecked[];

//  Hashes password into hash (crypto_pwhash_STRBYTES). 0, -1 failed, -2 the pool stayed busy.
int gateway_api_password_hash (const char *password, char hash[crypto_pwhash_STRBYTES]);

//  Verifies password against stored (NULL: against the dummy hash, and
//  fails). 0 match, -1 no match, -2 the pool stayed busy.
int gateway_api_password_verify (const char *stored, const char *password);
void gateway_api_password_test (bool verbose);

#endif
