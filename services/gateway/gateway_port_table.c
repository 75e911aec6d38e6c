/*  =========================================================================
    gateway_port_table - port uuid -> the cache's port entry

    Index and entries apart: the index is small and probed, the entries
    dense, so a table of 100k ports stays a few MiB and iterates fast.
    =========================================================================
*/
#include "gateway_port_table.h"

#include <czmq.h>

//  Ports: index[] holds entry number + 1 (0 = empty), linear probing, at
//  most half full; entries[] is dense, a removal moves the last entry into
//  the hole so iteration and memory stay tight.
struct _gateway_port_table_t {
    gateway_port_entry_t *entries; //  count used of capacity
    size_t count;
    size_t capacity;
    uint32_t *index; //  slots, a power of two
    size_t slots;
};

//  Port ids are random (gen_random_uuid), but ids sent by devices are not:
//  mixing both halves keeps a chosen id from aiming at one probe chain.
static size_t
s_uuid_hash (const uint8_t uuid[16])
{
    uint64_t low, high;
    memcpy (&low, uuid, 8);
    memcpy (&high, uuid + 8, 8);
    uint64_t hash = low ^ (high * 0x9e3779b97f4a7c15ULL);
    hash ^= hash >> 31;
    hash *= 0xbf58476d1ce4e5b9ULL;
    hash ^= hash >> 29;
    return (size_t)hash;
}

gateway_port_table_t *
gateway_port_table_new (void)
{
    gateway_port_table_t *self = (gateway_port_table_t *)zmalloc (sizeof (gateway_port_table_t));
    assert (self);
    self->slots = 64;
    self->index = (uint32_t *)calloc (self->slots, sizeof (uint32_t));
    assert (self->index);
    return self;
}

void
gateway_port_table_destroy (gateway_port_table_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->entries);
        free ((*self_p)->index);
        free (*self_p);
        *self_p = NULL;
    }
}

//  Slot that holds uuid, or the empty slot where it would go.
static size_t
s_ports_slot (gateway_port_table_t *self, const uint8_t uuid[16])
{
    size_t mask = self->slots - 1;
    size_t slot = s_uuid_hash (uuid) & mask;
    while (self->index[slot] && memcmp (self->entries[self->index[slot] - 1].uuid, uuid, 16) != 0)
        slot = (slot + 1) & mask;
    return slot;
}

gateway_port_entry_t *
gateway_port_table_find (gateway_port_table_t *self, const uint8_t uuid[16])
{
    size_t slot = s_ports_slot (self, uuid);
    return self->index[slot] ? &self->entries[self->index[slot] - 1] : NULL;
}

static void
s_ports_rehash (gateway_port_table_t *self, size_t slots)
{
    uint32_t *index = (uint32_t *)calloc (slots, sizeof (uint32_t));
    assert (index);
    free (self->index);
    self->index = index;
    self->slots = slots;
    for (size_t entry = 0; entry < self->count; entry++)
        self->index[s_ports_slot (self, self->entries[entry].uuid)] = (uint32_t)entry + 1;
}

//  Inserts or replaces the port with port->uuid.
void
gateway_port_table_put (gateway_port_table_t *self, const gateway_port_entry_t *port)
{
    size_t slot = s_ports_slot (self, port->uuid);
    if (self->index[slot]) {
        self->entries[self->index[slot] - 1] = *port;
        return;
    }
    if (self->count == self->capacity) {
        size_t capacity = self->capacity ? self->capacity * 2 : 64;
        gateway_port_entry_t *entries = (gateway_port_entry_t *)realloc (
            self->entries, capacity * sizeof (gateway_port_entry_t));
        assert (entries);
        self->entries = entries;
        self->capacity = capacity;
    }
    self->entries[self->count++] = *port;
    if (self->count * 2 > self->slots)
        s_ports_rehash (self, self->slots * 2);
    else
        self->index[slot] = (uint32_t)self->count;
}

void
gateway_port_table_remove (gateway_port_table_t *self, const uint8_t uuid[16])
{
    size_t mask = self->slots - 1;
    size_t slot = s_ports_slot (self, uuid);
    if (!self->index[slot])
        return;
    size_t entry = self->index[slot] - 1;
    //  Backward-shift deletion keeps every probe chain unbroken.
    self->index[slot] = 0;
    size_t next = (slot + 1) & mask;
    while (self->index[next]) {
        size_t home = s_uuid_hash (self->entries[self->index[next] - 1].uuid) & mask;
        //  Move it back if its home is not in (slot, next].
        if (((next - home) & mask) >= ((next - slot) & mask)) {
            self->index[slot] = self->index[next];
            self->index[next] = 0;
            slot = next;
        }
        next = (next + 1) & mask;
    }
    //  The last entry fills the hole in the dense array.
    size_t last = self->count - 1;
    if (entry != last) {
        self->entries[entry] = self->entries[last];
        self->index[s_ports_slot (self, self->entries[entry].uuid)] = (uint32_t)entry + 1;
    }
    self->count--;
    //  Shrink when a quarter full, so a mass delete gives memory back.
    if (self->capacity > 64 && self->count * 4 < self->capacity) {
        self->capacity /= 2;
        self->entries = (gateway_port_entry_t *)realloc (
            self->entries, self->capacity * sizeof (gateway_port_entry_t));
        assert (self->entries);
        if (self->slots > 64)
            s_ports_rehash (self, self->slots / 2);
    }
}

bool
gateway_port_table_uuid_parse (const char *text, uint8_t uuid[16])
{
    if (!text || strlen (text) != PROTO_UUID_LEN)
        return false;
    int byte = 0;
    for (int index = 0; index < PROTO_UUID_LEN;) {
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (text[index++] != '-')
                return false;
            continue;
        }
        int value = 0;
        for (int half = 0; half < 2; half++) {
            char c = text[index++];
            value <<= 4;
            if (c >= '0' && c <= '9')
                value |= c - '0';
            else if (c >= 'a' && c <= 'f')
                value |= c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                value |= c - 'A' + 10;
            else
                return false;
        }
        uuid[byte++] = (uint8_t)value;
    }
    return true;
}

size_t
gateway_port_table_size (const gateway_port_table_t *self)
{
    return self->count;
}

//  --------------------------------------------------------------------------
//  Self test: grow, find, remove down to empty (the shrink included), and
//  uuid text.
void
gateway_port_table_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_port_table: ");
    enum { PORTS = 5000 };
    gateway_port_table_t *table = gateway_port_table_new ();
    gateway_port_entry_t port;
    memset (&port, 0, sizeof port);
    for (int index = 0; index < PORTS; index++) {
        memcpy (port.uuid, &index, sizeof index);
        port.user = index;
        gateway_port_table_put (table, &port);
    }
    port.user = -1; //  a put of a known uuid replaces it
    gateway_port_table_put (table, &port);
    assert (gateway_port_table_size (table) == PORTS);
    for (int index = 0; index < PORTS; index++) {
        uint8_t uuid[16] = {0};
        memcpy (uuid, &index, sizeof index);
        gateway_port_entry_t *found = gateway_port_table_find (table, uuid);
        assert (found && found->user == (index == PORTS - 1 ? -1 : index));
    }
    for (int index = 0; index < PORTS; index += 2) {
        uint8_t uuid[16] = {0};
        memcpy (uuid, &index, sizeof index);
        gateway_port_table_remove (table, uuid);
        gateway_port_table_remove (table, uuid);
    }
    assert (gateway_port_table_size (table) == PORTS / 2);
    for (int index = 0; index < PORTS; index++) {
        uint8_t uuid[16] = {0};
        memcpy (uuid, &index, sizeof index);
        assert ((gateway_port_table_find (table, uuid) != NULL) == (index % 2 == 1));
        gateway_port_table_remove (table, uuid);
    }
    assert (gateway_port_table_size (table) == 0);
    gateway_port_table_destroy (&table);
    assert (!table);

    uint8_t uuid[16];
    assert (gateway_port_table_uuid_parse ("123E4567-e89b-12d3-a456-426614174000", uuid));
    assert (uuid[0] == 0x12 && uuid[1] == 0x3e && uuid[15] == 0x00);
    assert (!gateway_port_table_uuid_parse ("123e4567e89b12d3a456426614174000", uuid));
    assert (!gateway_port_table_uuid_parse ("123e4567-e89b-12d3-a456-42661417400g", uuid));
    assert (!gateway_port_table_uuid_parse (NULL, uuid));
    printf ("OK\n");
}
