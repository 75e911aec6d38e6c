/*  =========================================================================
    gateway_http_rate - abuse limits: a token bucket per key, a table per kind

    One kind of failure never spends another's budget. Process-wide, with
    bounded memory whatever the number of keys.
    =========================================================================
*/
//  gateway.h for gateway_time_now_ms and the client address helpers
#include "gateway.h"

#include <czmq.h>
#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>

//  Abuse limits: a token bucket per key in a table per kind, so one kind
//  of failure never spends another's budget (gateway.h says which counts
//  what). A fixed table of RATE_SETS sets of RATE_WAYS entries bounds
//  memory whatever the number of keys; a key is placed by a keyed hash
//  (SipHash, key drawn at start), so no one can aim two keys at one set.
//  A new key takes the fullest entry of its set, so a key that is being
//  limited is the last to be forgotten. Readings with a valid token never
//  touch a table.

#define RATE_SETS 1024
#define RATE_WAYS 4
#define RATE_LOCKS 64

typedef struct {
    uint8_t key[16];    //  address (IPv6, IPv4-mapped) or account hash
    float tokens;       //  attempts still allowed now
    int64_t updated_ms; //  when tokens was last brought up to date; 0 = free
} s_rate_entry_t;

typedef struct {
    pthread_mutex_t locks[RATE_LOCKS];
    s_rate_entry_t entries[RATE_SETS][RATE_WAYS];
    _Atomic int burst;           //  attempts allowed at once
    _Atomic int refill_per_hour; //  attempts given back per hour
} s_rate_table_t;

static const int s_rate_defaults[GATEWAY_RATE_KINDS][2] = {
    [GATEWAY_RATE_TOKEN] = {GATEWAY_RATE_TOKEN_BURST, GATEWAY_RATE_TOKEN_PER_HOUR},
    [GATEWAY_RATE_LOGIN] = {GATEWAY_RATE_LOGIN_BURST, GATEWAY_RATE_LOGIN_PER_HOUR},
    [GATEWAY_RATE_ACCOUNT] = {GATEWAY_RATE_ACCOUNT_BURST, GATEWAY_RATE_ACCOUNT_PER_HOUR},
    [GATEWAY_RATE_REGISTER] = {GATEWAY_RATE_REGISTER_BURST, GATEWAY_RATE_REGISTER_PER_HOUR}};

static struct {
    pthread_once_t once;
    uint8_t key[crypto_shorthash_KEYBYTES];           //  places keys in sets
    uint8_t account_key[crypto_generichash_KEYBYTES]; //  hashes account names
    s_rate_table_t tables[GATEWAY_RATE_KINDS];
} s_rate = {.once = PTHREAD_ONCE_INIT};

static void
s_rate_init (void)
{
    if (sodium_init () < 0)
        zsys_warning ("gateway http - libsodium did not initialise");
    randombytes_buf (s_rate.key, sizeof s_rate.key);
    randombytes_buf (s_rate.account_key, sizeof s_rate.account_key);
    for (int kind = 0; kind < GATEWAY_RATE_KINDS; kind++) {
        s_rate_table_t *table = &s_rate.tables[kind];
        for (int index = 0; index < RATE_LOCKS; index++)
            pthread_mutex_init (&table->locks[index], NULL);
        atomic_store (&table->burst, s_rate_defaults[kind][0]);
        atomic_store (&table->refill_per_hour, s_rate_defaults[kind][1]);
    }
}

//  The bucket key of key text for kind; false if it has none. An IPv6
//  client counts by its /64: one host gets a whole /64 from its router,
//  and would otherwise have 2^64 fresh buckets.
static bool
s_rate_key (gateway_rate_kind_t kind, const char *text, uint8_t key[16])
{
    if (kind == GATEWAY_RATE_ACCOUNT) {
        if (!text || !*text)
            return false;
        crypto_generichash (key, 16, (const uint8_t *)text, strlen (text), s_rate.account_key,
                            sizeof s_rate.account_key);
        return true;
    }
    if (!gateway_http_client_address_parse (text, key))
        return false;
    if (!gateway_http_client_address_v4 (key))
        memset (key + 8, 0, 8);
    return true;
}

//  Under its set's lock: the entry of key, brought up to date, or NULL if
//  the key has none (and create is false).
static s_rate_entry_t *
s_rate_entry (s_rate_table_t *table, s_rate_entry_t *set, const uint8_t key[16], int64_t now,
              bool create)
{
    float burst = (float)atomic_load (&table->burst);
    float per_ms = (float)atomic_load (&table->refill_per_hour) / 3600000.0f;
    s_rate_entry_t *entry = NULL, *fullest = &set[0];
    for (int way = 0; way < RATE_WAYS; way++) {
        s_rate_entry_t *candidate = &set[way];
        //  Refilled first, so "fullest" compares current values.
        if (candidate->updated_ms) {
            float tokens = candidate->tokens + (float)(now - candidate->updated_ms) * per_ms;
            candidate->tokens = tokens < burst ? tokens : burst;
            candidate->updated_ms = now;
        }
        if (memcmp (candidate->key, key, 16) == 0 && candidate->updated_ms)
            entry = candidate;
        else if (!candidate->updated_ms ||
                 (fullest->updated_ms && candidate->tokens > fullest->tokens))
            fullest = candidate;
    }
    if (!entry && create) {
        entry = fullest;
        memcpy (entry->key, key, 16);
        entry->tokens = burst;
        entry->updated_ms = now;
    }
    return entry;
}

static size_t
s_rate_set (const uint8_t key[16])
{
    uint8_t hash[crypto_shorthash_BYTES];
    crypto_shorthash (hash, key, 16, s_rate.key);
    uint64_t value;
    memcpy (&value, hash, sizeof value);
    return (size_t)(value % RATE_SETS);
}

bool
gateway_http_rate_limited (gateway_rate_kind_t kind, const char *key_text, int *retry_after_s)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    uint8_t key[16];
    if (!s_rate_key (kind, key_text, key))
        return false;
    s_rate_table_t *table = &s_rate.tables[kind];
    size_t set = s_rate_set (key);
    pthread_mutex_t *lock = &table->locks[set % RATE_LOCKS];
    pthread_mutex_lock (lock);
    s_rate_entry_t *entry =
        s_rate_entry (table, table->entries[set], key, gateway_time_now_ms (), false);
    bool limited = entry && entry->tokens < 1.0f;
    float missing = entry ? 1.0f - entry->tokens : 0;
    pthread_mutex_unlock (lock);
    if (limited && retry_after_s) {
        int per_hour = atomic_load (&table->refill_per_hour);
        int seconds = (int)ceilf (missing * 3600.0f / (float)(per_hour > 0 ? per_hour : 1));
        *retry_after_s = seconds < 1 ? 1 : seconds;
    }
    return limited;
}

void
gateway_http_rate_limit_hit (gateway_rate_kind_t kind, const char *key_text)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    uint8_t key[16];
    if (!s_rate_key (kind, key_text, key))
        return;
    s_rate_table_t *table = &s_rate.tables[kind];
    size_t set = s_rate_set (key);
    pthread_mutex_t *lock = &table->locks[set % RATE_LOCKS];
    pthread_mutex_lock (lock);
    s_rate_entry_t *entry =
        s_rate_entry (table, table->entries[set], key, gateway_time_now_ms (), true);
    //  Floored at -burst: a client hammering on while limited waits at
    //  most as long as a full refill, not forever.
    if (entry->tokens > -(float)atomic_load (&table->burst))
        entry->tokens -= 1.0f;
    pthread_mutex_unlock (lock);
}

void
gateway_http_rate_limit_configure (gateway_rate_kind_t kind, int burst, int refill_per_hour)
{
    assert (kind >= 0 && kind < GATEWAY_RATE_KINDS);
    pthread_once (&s_rate.once, s_rate_init);
    s_rate_table_t *table = &s_rate.tables[kind];
    if (burst > 0)
        atomic_store (&table->burst, burst);
    if (refill_per_hour > 0)
        atomic_store (&table->refill_per_hour, refill_per_hour);
    //  Forget everything: a new limit starts from full buckets.
    for (int index = 0; index < RATE_LOCKS; index++)
        pthread_mutex_lock (&table->locks[index]);
    memset (table->entries, 0, sizeof table->entries);
    for (int index = RATE_LOCKS - 1; index >= 0; index--)
        pthread_mutex_unlock (&table->locks[index]);
}

//  The abuse limits, alone.
static void
s_rate_limit_check (void)
{
    int retry_after = 0;
    const gateway_rate_kind_t T = GATEWAY_RATE_TOKEN;
    gateway_http_rate_limit_configure (T, 3, 3600);
    assert (!gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    for (int attempt = 0; attempt < 3; attempt++) {
        assert (!gateway_http_rate_limited (T, "10.0.0.1", NULL));
        gateway_http_rate_limit_hit (T, "10.0.0.1");
    }
    assert (gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    //  One attempt back a second at 3600 an hour.
    assert (retry_after == 1);
    //  Others are not affected, in either family, nor other kinds.
    assert (!gateway_http_rate_limited (T, "10.0.0.2", NULL));
    assert (!gateway_http_rate_limited (T, "::1", NULL));
    assert (!gateway_http_rate_limited (GATEWAY_RATE_LOGIN, "10.0.0.1", NULL));
    assert (!gateway_http_rate_limited (GATEWAY_RATE_REGISTER, "10.0.0.1", NULL));
    for (int attempt = 0; attempt < 3; attempt++)
        gateway_http_rate_limit_hit (T, "2001:db8::7");
    assert (gateway_http_rate_limited (T, "2001:db8::7", NULL));
    //  An IPv6 client is its /64: the next address of it is no fresh start,
    //  the next /64 is another client.
    assert (gateway_http_rate_limited (T, "2001:db8::8:9", NULL));
    assert (!gateway_http_rate_limited (T, "2001:db8:0:1::7", NULL));
    //  IPv4 and its IPv6-mapped form are one client.
    assert (gateway_http_rate_limited (T, "::ffff:10.0.0.1", NULL));
    //  Not an address: never limited, never counted.
    gateway_http_rate_limit_hit (T, "");
    gateway_http_rate_limit_hit (T, NULL);
    assert (!gateway_http_rate_limited (T, "not-an-ip", NULL));
    //  Hammering on while limited lengthens the wait, but only up to one
    //  full refill.
    for (int attempt = 0; attempt < 100; attempt++)
        gateway_http_rate_limit_hit (T, "10.0.0.1");
    assert (gateway_http_rate_limited (T, "10.0.0.1", &retry_after));
    assert (retry_after >= 3 && retry_after <= 4);

    //  Accounts: any text, hashed; case is the caller's business.
    const gateway_rate_kind_t A = GATEWAY_RATE_ACCOUNT;
    gateway_http_rate_limit_configure (A, 2, 60);
    gateway_http_rate_limit_hit (A, "ann@example.com");
    assert (!gateway_http_rate_limited (A, "ann@example.com", NULL));
    gateway_http_rate_limit_hit (A, "ann@example.com");
    assert (gateway_http_rate_limited (A, "ann@example.com", &retry_after));
    assert (retry_after == 60);
    assert (!gateway_http_rate_limited (A, "bob@example.com", NULL));
    assert (!gateway_http_rate_limited (A, "", NULL));
    gateway_http_rate_limit_configure (A, GATEWAY_RATE_ACCOUNT_BURST,
                                       GATEWAY_RATE_ACCOUNT_PER_HOUR);

    //  Refill: 1000 a second, so two failures are forgiven in a few ms.
    gateway_http_rate_limit_configure (T, 2, 3600000);
    assert (!gateway_http_rate_limited (T, "10.0.0.1", NULL)); //  configure forgot it
    gateway_http_rate_limit_hit (T, "10.0.0.3");
    gateway_http_rate_limit_hit (T, "10.0.0.3");
    assert (gateway_http_rate_limited (T, "10.0.0.3", NULL));
    zclock_sleep (10);
    assert (!gateway_http_rate_limited (T, "10.0.0.3", NULL));

    //  Bounded: 100,000 addresses fit the fixed table; a limited address
    //  stays limited through a flood of one-off failures from others in
    //  most cases (it is the last of its set to go), and memory is fixed.
    gateway_http_rate_limit_configure (T, 2, 1);
    gateway_http_rate_limit_hit (T, "192.0.2.1");
    gateway_http_rate_limit_hit (T, "192.0.2.1");
    char address[32];
    for (int index = 0; index < 100000; index++) {
        snprintf (address, sizeof address, "10.%d.%d.%d", index >> 16, (index >> 8) & 255,
                  index & 255);
        gateway_http_rate_limit_hit (T, address);
    }
    assert (gateway_http_rate_limited (T, "192.0.2.1", NULL));
    gateway_http_rate_limit_configure (T, GATEWAY_RATE_TOKEN_BURST, GATEWAY_RATE_TOKEN_PER_HOUR);
}

//  --------------------------------------------------------------------------
void
gateway_http_rate_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_http_rate: ");
    s_rate_limit_check ();
    printf ("OK\n");
}
