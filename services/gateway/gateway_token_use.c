/*  =========================================================================
    gateway_token_use - writes when device tokens were last used

    The cache stamps each match in memory; this writes the stamps to
    devices.token_last_used_at, FLUSH_CHUNK devices per statement. Only a
    device whose token is still the one that was used gets its stamp, and a
    stamp never moves token_last_used_at back (another gateway may have
    written a later one).
    =========================================================================
*/
#include "gateway_token_use.h"
#include "gateway_fixture.h"

#include <czmq.h>
#include <inttypes.h>
#include <sodium.h>

//  Devices per token_last_used_at UPDATE statement.
#define FLUSH_CHUNK 1000

size_t
gateway_token_use_write (PGconn *conn, const int64_t *ids, const int64_t *stamps,
                         const uint8_t (*hashes)[32], size_t count)
{
    size_t written = 0;
    for (size_t start = 0; start < count; start += FLUSH_CHUNK) {
        size_t end = start + FLUSH_CHUNK < count ? start + FLUSH_CHUNK : count;
        //  Three array literals: {1,2}, {ms,ms}, {hex,hex}.
        size_t size = (end - start) * 100 + 16;
        char *id_list = (char *)malloc (size), *stamp_list = (char *)malloc (size),
             *hash_list = (char *)malloc (size);
        assert (id_list && stamp_list && hash_list);
        size_t id_at = 0, stamp_at = 0, hash_at = 0;
        for (size_t index = start; index < end; index++) {
            char hex[65];
            sodium_bin2hex (hex, sizeof hex, hashes[index], 32);
            const char *separator = index == start ? "{" : ",";
            id_at += (size_t)snprintf (id_list + id_at, size - id_at, "%s%" PRId64, separator,
                                       ids[index]);
            stamp_at += (size_t)snprintf (stamp_list + stamp_at, size - stamp_at, "%s%" PRId64,
                                          separator, stamps[index]);
            hash_at +=
                (size_t)snprintf (hash_list + hash_at, size - hash_at, "%s%s", separator, hex);
        }
        snprintf (id_list + id_at, size - id_at, "}");
        snprintf (stamp_list + stamp_at, size - stamp_at, "}");
        snprintf (hash_list + hash_at, size - hash_at, "}");
        const char *parameters[] = {id_list, stamp_list, hash_list};
        PGresult *result = PQexecParams (
            conn,
            "UPDATE devices d SET token_last_used_at = "
            "GREATEST (d.token_last_used_at, to_timestamp (u.ms / 1000.0)) "
            "FROM unnest ($1::bigint[], $2::bigint[], $3::text[]) AS u (id, ms, hash) "
            "WHERE d.id = u.id AND d.token_hash = decode (u.hash, 'hex')",
            3, NULL, parameters, NULL, NULL, 0);
        bool ok = PQresultStatus (result) == PGRES_COMMAND_OK;
        if (!ok)
            zsys_warning ("gateway cache - token use not written: %s", PQerrorMessage (conn));
        PQclear (result);
        free (id_list);
        free (stamp_list);
        free (hash_list);
        if (!ok)
            break; //  the stamps stay unflushed and go with the next flush
        written = end;
    }
    return written;
}

//  --------------------------------------------------------------------------
//  Self test against PHANTOM_TEST_DATABASE: a stamp is written for the
//  current token only, and never moves back.
void
gateway_token_use_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_token_use: ");
    const char *conninfo = gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset)");
    PGconn *pg = gateway_fixture_connect (conninfo);
    char email[64];
    snprintf (email, sizeof email, "use-%d-%" PRId64 "@test", (int)getpid (), zclock_time ());
    const char *email_values[] = {email};
    char *user = gateway_fixture_sql (pg,
                                      "INSERT INTO users (email, name, password_hash)"
                                      " VALUES ($1, 'use test', 'x') RETURNING id",
                                      1, email_values);
    uint8_t hashes[2][32];
    memset (hashes[0], 0x11, 32);
    memset (hashes[1], 0x22, 32);
    char hex[65];
    sodium_bin2hex (hex, sizeof hex, hashes[0], 32);
    const char *device_values[] = {user, hex};
    char *device = gateway_fixture_sql (pg,
                                        "INSERT INTO devices (user_id, name, token_hash)"
                                        " VALUES ($1, 'b', decode ($2, 'hex')) RETURNING id",
                                        2, device_values);
    const char *select_values[] = {device};
    const char *select = "SELECT (extract (epoch FROM token_last_used_at) * 1000)::bigint"
                         " FROM devices WHERE id = $1::bigint";
    int64_t ids[1] = {atoll (device)};
    int64_t stamps[1] = {1700000000000};
    //  Another token's stamp: nothing written.
    assert (gateway_token_use_write (pg, ids, stamps, &hashes[1], 1) == 1);
    char *value = gateway_fixture_sql (pg, select, 1, select_values);
    assert (value == NULL);
    assert (gateway_token_use_write (pg, ids, stamps, &hashes[0], 1) == 1);
    value = gateway_fixture_sql (pg, select, 1, select_values);
    assert (value && streq (value, "1700000000000"));
    free (value);
    stamps[0] = 1600000000000;
    assert (gateway_token_use_write (pg, ids, stamps, &hashes[0], 1) == 1);
    value = gateway_fixture_sql (pg, select, 1, select_values);
    assert (value && streq (value, "1700000000000"));
    free (value);
    const char *user_values[] = {user};
    free (gateway_fixture_sql (pg, "DELETE FROM users WHERE id = $1::bigint", 1, user_values));
    free (device);
    free (user);
    PQfinish (pg);
    printf ("OK\n");
}
