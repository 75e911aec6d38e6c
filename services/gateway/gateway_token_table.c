/*  =========================================================================
    gateway_token_table - device-token hashes to devices, for the cache

    SHA-256 -> device, open addressing with linear probing at most half
    full, 40-byte slots (device NULL = empty). Not zhashx: its lookup writes
    the table (the cached index, the cursor, and a rehash when a chain runs
    long), which under the shared lock raced between concurrent readers. A
    lookup here only reads. The key is the SHA-256 of a random token, so
    its first bytes place it well; a client cannot add entries to aim at a
    chain.
    =========================================================================
*/
#include "gateway_token_table.h"

#include <czmq.h>

typedef struct {
    uint8_t hash[32];
    void *device;
} s_token_slot_t;

struct _gateway_token_table_t {
    s_token_slot_t *slots; //  capacity of them, a power of two
    size_t capacity;
    size_t count;
};

gateway_token_table_t *
gateway_token_table_new (void)
{
    gateway_token_table_t *self = (gateway_token_table_t *)zmalloc (sizeof (gateway_token_table_t));
    assert (self);
    self->capacity = 64;
    self->slots = (s_token_slot_t *)calloc (self->capacity, sizeof (s_token_slot_t));
    assert (self->slots);
    return self;
}

void
gateway_token_table_destroy (gateway_token_table_t **self_p)
{
    if (*self_p) {
        free ((*self_p)->slots);
        free (*self_p);
        *self_p = NULL;
    }
}

static size_t
s_token_home (const uint8_t hash[32], size_t mask)
{
    uint64_t value;
    memcpy (&value, hash, sizeof value);
    return (size_t)value & mask;
}

//  Slot that holds hash, or the empty slot where it would go.
static size_t
s_tokens_slot (const gateway_token_table_t *self, const uint8_t hash[32])
{
    size_t mask = self->capacity - 1;
    size_t slot = s_token_home (hash, mask);
    while (self->slots[slot].device && memcmp (self->slots[slot].hash, hash, 32) != 0)
        slot = (slot + 1) & mask;
    return slot;
}

void *
gateway_token_table_lookup (const gateway_token_table_t *self, const uint8_t hash[32])
{
    return self->slots[s_tokens_slot (self, hash)].device;
}

//  Inserts or replaces.
void
gateway_token_table_update (gateway_token_table_t *self, const uint8_t hash[32], void *device)
{
    assert (device);
    size_t slot = s_tokens_slot (self, hash);
    if (self->slots[slot].device) {
        self->slots[slot].device = device;
        return;
    }
    memcpy (self->slots[slot].hash, hash, 32);
    self->slots[slot].device = device;
    if (++self->count * 2 > self->capacity) {
        s_token_slot_t *old = self->slots;
        size_t old_capacity = self->capacity;
        self->capacity *= 2;
        self->slots = (s_token_slot_t *)calloc (self->capacity, sizeof (s_token_slot_t));
        assert (self->slots);
        for (size_t index = 0; index < old_capacity; index++)
            if (old[index].device)
                self->slots[s_tokens_slot (self, old[index].hash)] = old[index];
        free (old);
    }
}

void
gateway_token_table_delete (gateway_token_table_t *self, const uint8_t hash[32])
{
    size_t mask = self->capacity - 1;
    size_t slot = s_tokens_slot (self, hash);
    if (!self->slots[slot].device)
        return;
    //  Backward-shift deletion keeps every probe chain unbroken.
    self->slots[slot].device = NULL;
    size_t next = (slot + 1) & mask;
    while (self->slots[next].device) {
        size_t home = s_token_home (self->slots[next].hash, mask);
        //  Move it back if its home is not in (slot, next].
        if (((next - home) & mask) >= ((next - slot) & mask)) {
            self->slots[slot] = self->slots[next];
            self->slots[next].device = NULL;
            slot = next;
        }
        next = (next + 1) & mask;
    }
    self->count--;
}

size_t
gateway_token_table_size (const gateway_token_table_t *self)
{
    return self->count;
}

//  --------------------------------------------------------------------------
//  Self test: churn against a model, many keys on one home slot.
void
gateway_token_table_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_token_table: ");
    enum { KEYS = 3000 };
    static uint8_t keys[KEYS][32];
    static int devices[KEYS];
    static bool present[KEYS];
    memset (present, 0, sizeof present);
    uint64_t state = 0x9E3779B97F4A7C15ULL;
    for (size_t index = 0; index < KEYS; index++) {
        for (size_t byte = 0; byte < 32; byte++) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            keys[index][byte] = (uint8_t)state;
        }
        if (index % 3 == 0)
            memset (keys[index], 0x42, 8); //  the same home slot
    }
    gateway_token_table_t *tokens = gateway_token_table_new ();
    size_t count = 0;
    for (int round = 0; round < 200000; round++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t key = (size_t)(state >> 16) % KEYS;
        //  Grow for the first half, then churn around a smaller size.
        bool put = round < 100000 ? state % 4 != 0 : state % 2 == 0;
        if (put) {
            gateway_token_table_update (tokens, keys[key], &devices[key]);
            count += !present[key];
            present[key] = true;
        } else {
            gateway_token_table_delete (tokens, keys[key]);
            count -= present[key];
            present[key] = false;
        }
        if (round % 997 == 0 || round == 199999)
            for (size_t index = 0; index < KEYS; index++)
                assert (gateway_token_table_lookup (tokens, keys[index]) ==
                        (present[index] ? &devices[index] : NULL));
        assert (gateway_token_table_size (tokens) == count);
    }
    gateway_token_table_destroy (&tokens);
    assert (!tokens);
    printf ("OK\n");
}
