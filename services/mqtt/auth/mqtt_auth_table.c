/*  =========================================================================
    mqtt_auth_table - each device's MQTT name and token hashes, in memory

    Two maps over one set of entries: name -> entry for CONNECT, and id ->
    entry for the refresh a NOTIFY "device:<id>" asks for (the name may be
    what changed).
    =========================================================================
*/
#include "mqtt_auth_table.h"

#include <czmq.h>
#include <sodium.h>

struct _mqtt_auth_table_t {
    zhashx_t *by_name; //  mqtt_name -> mqtt_auth_device_t (owns them)
    zhashx_t *by_id;   //  "<id>" -> the same entries (borrowed)
};

static void
s_device_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

mqtt_auth_table_t *
mqtt_auth_table_new (void)
{
    mqtt_auth_table_t *self = (mqtt_auth_table_t *)zmalloc (sizeof (mqtt_auth_table_t));
    assert (self);
    self->by_name = zhashx_new ();
    self->by_id = zhashx_new ();
    assert (self->by_name && self->by_id);
    zhashx_set_destructor (self->by_name, s_device_destroy);
    return self;
}

void
mqtt_auth_table_destroy (mqtt_auth_table_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mqtt_auth_table_t *self = *self_p;
        zhashx_destroy (&self->by_id);
        zhashx_destroy (&self->by_name);
        free (self);
        *self_p = NULL;
    }
}

void
mqtt_auth_table_remove (mqtt_auth_table_t *self, int64_t id)
{
    char key[24];
    snprintf (key, sizeof key, "%" PRId64, id);
    mqtt_auth_device_t *old = (mqtt_auth_device_t *)zhashx_lookup (self->by_id, key);
    if (old) {
        zhashx_delete (self->by_id, key);
        zhashx_delete (self->by_name, old->name); //  frees old
    }
}

void
mqtt_auth_table_put (mqtt_auth_table_t *self, const mqtt_auth_device_t *device)
{
    mqtt_auth_table_remove (self, device->id);
    //  Names are unique in the table (migration 017); a stale holder of
    //  this name (renamed, its NOTIFY not yet read) gives way.
    mqtt_auth_device_t *holder = (mqtt_auth_device_t *)zhashx_lookup (self->by_name, device->name);
    if (holder)
        mqtt_auth_table_remove (self, holder->id);
    mqtt_auth_device_t *copy = (mqtt_auth_device_t *)malloc (sizeof *copy);
    assert (copy);
    *copy = *device;
    copy->name[sizeof copy->name - 1] = 0;
    char key[24];
    snprintf (key, sizeof key, "%" PRId64, device->id);
    zhashx_insert (self->by_name, copy->name, copy);
    zhashx_insert (self->by_id, key, copy);
}

void
mqtt_auth_table_purge (mqtt_auth_table_t *self)
{
    zhashx_purge (self->by_id);
    zhashx_purge (self->by_name);
}

bool
mqtt_auth_table_check (mqtt_auth_table_t *self, const char *name, const uint8_t hash[32],
                       int64_t now_ms)
{
    mqtt_auth_device_t *device = (mqtt_auth_device_t *)zhashx_lookup (self->by_name, name);
    return device && proto_device_token_matches (&device->token, hash, now_ms);
}

size_t
mqtt_auth_table_size (mqtt_auth_table_t *self)
{
    return zhashx_size (self->by_name);
}

//  --------------------------------------------------------------------------
void
mqtt_auth_table_test (bool verbose)
{
    (void)verbose;
    printf (" * mqtt_auth_table: ");
    assert (sodium_init () >= 0);
    mqtt_auth_table_t *table = mqtt_auth_table_new ();
    uint8_t one[32], two[32], three[32];
    crypto_hash_sha256 (one, (const uint8_t *)"token-one", 9);
    crypto_hash_sha256 (two, (const uint8_t *)"token-two", 9);
    crypto_hash_sha256 (three, (const uint8_t *)"token-three", 11);

    //  Which token matches when is proto_device_token's (and its test's).
    mqtt_auth_device_t device = {.id = 7,
                                 .token = {.has_current = true, .current_expires = INT64_MAX}};
    strcpy (device.name, "pw-0000000007");
    memcpy (device.token.current, one, 32);
    mqtt_auth_table_put (table, &device);
    assert (mqtt_auth_table_check (table, "pw-0000000007", one, 1000));
    assert (!mqtt_auth_table_check (table, "pw-0000000007", two, 1000));
    assert (!mqtt_auth_table_check (table, "pw-0000000008", one, 1000));

    //  A put replaces the device's tokens.
    memcpy (device.token.current, two, 32);
    mqtt_auth_table_put (table, &device);
    assert (mqtt_auth_table_size (table) == 1);
    assert (!mqtt_auth_table_check (table, "pw-0000000007", one, 1000));
    assert (mqtt_auth_table_check (table, "pw-0000000007", two, 1000));

    //  A rename drops the old name; another device taking a name replaces
    //  the stale holder.
    strcpy (device.name, "pw-renamed01");
    mqtt_auth_table_put (table, &device);
    assert (!mqtt_auth_table_check (table, "pw-0000000007", two, 1000));
    assert (mqtt_auth_table_check (table, "pw-renamed01", two, 1000));
    mqtt_auth_device_t other = {.id = 8,
                                .token = {.has_current = true, .current_expires = INT64_MAX}};
    strcpy (other.name, "pw-renamed01");
    memcpy (other.token.current, three, 32);
    mqtt_auth_table_put (table, &other);
    assert (mqtt_auth_table_size (table) == 1);
    assert (mqtt_auth_table_check (table, "pw-renamed01", three, 1000));
    assert (!mqtt_auth_table_check (table, "pw-renamed01", two, 1000));

    //  Revocation.
    mqtt_auth_table_remove (table, 8);
    mqtt_auth_table_remove (table, 8);
    assert (mqtt_auth_table_size (table) == 0);
    assert (!mqtt_auth_table_check (table, "pw-renamed01", three, 1000));
    mqtt_auth_table_put (table, &other);
    mqtt_auth_table_purge (table);
    assert (mqtt_auth_table_size (table) == 0);
    mqtt_auth_table_destroy (&table);
    mqtt_auth_table_destroy (&table);
    printf ("OK\n");
}
