/*  =========================================================================
    proto_device_token - when a device token opens its device

    Expiries come from PostgreSQL as ms since epoch, -1 for none
    (PROTO_DEVICE_TOKEN_COLUMNS), so a row is read without date parsing.
    =========================================================================
*/
#include "proto_device_token.h"

#include <assert.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool
s_unhex (const char *text, uint8_t hash[32])
{
    size_t length = 0;
    return text && strlen (text) == 64 &&
           sodium_hex2bin (hash, 32, text, 64, NULL, &length, NULL) == 0 && length == 32;
}

bool
proto_device_token_from_row (proto_device_token_t *self, const PGresult *result, int row,
                             int column)
{
    assert (self);
    memset (self, 0, sizeof *self);
    if (!PQgetisnull (result, row, column) &&
        s_unhex (PQgetvalue (result, row, column), self->current)) {
        int64_t expires = atoll (PQgetvalue (result, row, column + 1));
        self->has_current = true;
        self->current_expires = expires < 0 ? INT64_MAX : expires;
    }
    //  A previous token without an expiry has no grace window left.
    if (!PQgetisnull (result, row, column + 2) &&
        s_unhex (PQgetvalue (result, row, column + 2), self->previous)) {
        int64_t expires = atoll (PQgetvalue (result, row, column + 3));
        self->has_previous = expires > 0;
        self->previous_expires = expires;
    }
    return self->has_current || self->has_previous;
}

proto_device_token_match_t
proto_device_token_matches (const proto_device_token_t *self, const uint8_t hash[32],
                            int64_t now_ms)
{
    assert (self);
    //  A current token that matched is not tried as the previous one too.
    if (self->has_current && sodium_memcmp (self->current, hash, 32) == 0)
        return now_ms < self->current_expires ? PROTO_DEVICE_TOKEN_CURRENT
                                              : PROTO_DEVICE_TOKEN_NONE;
    if (self->has_previous && sodium_memcmp (self->previous, hash, 32) == 0)
        return now_ms < self->previous_expires ? PROTO_DEVICE_TOKEN_PREVIOUS
                                               : PROTO_DEVICE_TOKEN_NONE;
    return PROTO_DEVICE_TOKEN_NONE;
}

//  --------------------------------------------------------------------------
//  Self test: rows as PostgreSQL gives them, built without a server

//  A result of rows x (1 + 4) text columns: an id, then the token columns.
static PGresult *
s_result (const char *values[][5], int rows)
{
    PGresult *result = PQmakeEmptyPGresult (NULL, PGRES_TUPLES_OK);
    assert (result);
    char names[5][8];
    PGresAttDesc columns[5];
    memset (columns, 0, sizeof columns);
    for (int column = 0; column < 5; column++) {
        snprintf (names[column], sizeof names[column], "c%d", column);
        columns[column].name = names[column];
        columns[column].typid = 25; //  text
        columns[column].typlen = -1;
        columns[column].atttypmod = -1;
    }
    int rc = PQsetResultAttrs (result, 5, columns);
    assert (rc);
    for (int row = 0; row < rows; row++)
        for (int column = 0; column < 5; column++) {
            const char *value = values[row][column];
            //  NULL is SQL NULL (length -1); libpq copies the value.
            rc = PQsetvalue (result, row, column, (char *)value, value ? (int)strlen (value) : -1);
            assert (rc);
        }
    return result;
}

void
proto_device_token_test (bool verbose)
{
    (void)verbose;
    printf (" * proto_device_token: ");
    assert (sodium_init () >= 0);
    uint8_t one[32], two[32], three[32];
    crypto_hash_sha256 (one, (const uint8_t *)"token-one", 9);
    crypto_hash_sha256 (two, (const uint8_t *)"token-two", 9);
    crypto_hash_sha256 (three, (const uint8_t *)"token-three", 11);
    char one_hex[65], two_hex[65];
    sodium_bin2hex (one_hex, sizeof one_hex, one, 32);
    sodium_bin2hex (two_hex, sizeof two_hex, two, 32);

    const char *values[][5] = {
        {"1", one_hex, "-1", NULL, "-1"},        //  current, never expires
        {"2", two_hex, "6000", one_hex, "5000"}, //  rotated: one in its grace
        {"3", NULL, "-1", one_hex, "-1"},        //  previous without an expiry
        {"4", "not hex", "-1", "abcd", "9000"},  //  hashes that are not SHA-256
    };
    PGresult *result = s_result (values, 4);
    proto_device_token_t token;

    //  The current token; a wrong hash matches nothing.
    assert (proto_device_token_from_row (&token, result, 0, 1));
    assert (token.has_current && token.current_expires == INT64_MAX && !token.has_previous);
    assert (proto_device_token_matches (&token, one, 1000) == PROTO_DEVICE_TOKEN_CURRENT);
    assert (proto_device_token_matches (&token, two, 1000) == PROTO_DEVICE_TOKEN_NONE);
    assert (proto_device_token_matches (&token, three, 1000) == PROTO_DEVICE_TOKEN_NONE);

    //  Rotation: the previous token holds until its grace ends, the
    //  current one until it expires.
    assert (proto_device_token_from_row (&token, result, 1, 1));
    assert (token.has_previous && token.previous_expires == 5000);
    assert (proto_device_token_matches (&token, one, 4999) == PROTO_DEVICE_TOKEN_PREVIOUS);
    assert (proto_device_token_matches (&token, one, 5000) == PROTO_DEVICE_TOKEN_NONE);
    assert (proto_device_token_matches (&token, two, 5999) == PROTO_DEVICE_TOKEN_CURRENT);
    assert (proto_device_token_matches (&token, two, 6000) == PROTO_DEVICE_TOKEN_NONE);
    assert (proto_device_token_matches (&token, three, 1000) == PROTO_DEVICE_TOKEN_NONE);

    //  A previous token without an expiry has no grace.
    assert (!proto_device_token_from_row (&token, result, 2, 1));
    assert (!token.has_current && !token.has_previous);
    assert (proto_device_token_matches (&token, one, 0) == PROTO_DEVICE_TOKEN_NONE);

    //  Malformed hashes are no tokens.
    assert (!proto_device_token_from_row (&token, result, 3, 1));
    assert (!token.has_current && !token.has_previous);
    PQclear (result);

    //  An all-zero token (as a zeroed entry holds) matches no hash of zeros.
    uint8_t zeros[32] = {0};
    memset (&token, 0, sizeof token);
    assert (proto_device_token_matches (&token, zeros, 0) == PROTO_DEVICE_TOKEN_NONE);
    printf ("OK\n");
}
