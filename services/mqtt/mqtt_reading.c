/*  =========================================================================
    mqtt_reading - a reading's id and time from an MQTT message
    =========================================================================
*/
#include "mqtt_reading.h"
#include "proto.h"

#include <czmq.h>
#include <inttypes.h>

#define DAY_MS (24LL * 3600 * 1000)

static bool
s_pw_id_valid (const char *pw_id)
{
    size_t length = pw_id ? strlen (pw_id) : 0;
    if (length < 3 || length > MQTT_READING_PWID_MAX)
        return false;
    int dashes = 0;
    for (size_t index = 0; index < length; index++) {
        if (pw_id[index] == '-')
            dashes++;
        else if (pw_id[index] < '0' || pw_id[index] > '9')
            return false;
    }
    return dashes == 1 && pw_id[0] != '-' && pw_id[length - 1] != '-';
}

//  FNV-1a, 64 bits: not a secret, only a stable name for the same bytes.
static uint64_t
s_fnv (uint64_t hash, const void *data, size_t size)
{
    const uint8_t *byte = (const uint8_t *)data;
    for (size_t index = 0; index < size; index++) {
        hash ^= byte[index];
        hash *= 1099511628211ULL;
    }
    return hash;
}

bool
mqtt_reading_key (const char *pw_id, const char *topic, const void *payload, size_t size,
                  int64_t received_ms, const char *channel, char *key, size_t key_size)
{
    assert (topic && channel && key && key_size > PROTO_KEY_MAX);
    bool stamped = s_pw_id_valid (pw_id);
    char id[MQTT_READING_PWID_MAX + 8];
    if (stamped)
        snprintf (id, sizeof id, "%s", pw_id);
    else {
        uint64_t hash = s_fnv (14695981039346656037ULL, topic, strlen (topic) + 1);
        hash = s_fnv (hash, payload, size);
        int64_t second = received_ms / 1000;
        hash = s_fnv (hash, &second, sizeof second);
        snprintf (id, sizeof id, "h%016" PRIx64, hash);
    }
    //  Channels are at most MQTT_PARSE_CHANNEL_MAX: "mqtt-" + 40 + "-" + 32
    //  can pass 64, so a long channel is named by its hash instead.
    int length = snprintf (key, key_size, "mqtt-%s-%s", id, channel);
    if (length > PROTO_KEY_MAX)
        snprintf (key, key_size, "mqtt-%s-c%016" PRIx64, id,
                  s_fnv (14695981039346656037ULL, channel, strlen (channel)));
    return stamped;
}

int64_t
mqtt_reading_time (const mqtt_parse_t *parsed, const char *zone, int64_t received_ms)
{
    int64_t device = 0;
    if (parsed->ts_utc_ms > 0)
        device = parsed->ts_utc_ms;
    else if (parsed->ts_local[0])
        device = mqtt_parse_local_time (parsed->ts_local, zone);
    if (device <= 0 || device < received_ms - DAY_MS || device > received_ms + 5 * 60 * 1000)
        return received_ms;
    return device;
}

void
mqtt_reading_test (bool verbose)
{
    printf (" * mqtt_reading: ");
    char key[PROTO_KEY_MAX + 1], other[PROTO_KEY_MAX + 1];
    const char *payload = "41.93";
    //  Stamped by the broker: the same id for a redelivery, whatever the second.
    assert (mqtt_reading_key ("1796610300123-42", "shellies/pw-a/relay/0/power", payload, 5, 1000,
                              "relay:0", key, sizeof key));
    assert (streq (key, "mqtt-1796610300123-42-relay:0"));
    assert (mqtt_reading_key ("1796610300123-42", "shellies/pw-a/relay/0/power", payload, 5, 99000,
                              "relay:0", other, sizeof other));
    assert (streq (key, other));
    //  Two channels of one message: two ids.
    mqtt_reading_key ("1796610300123-42", "t", payload, 5, 0, "2", other, sizeof other);
    assert (streq (other, "mqtt-1796610300123-42-2"));
    //  No (or a forged) pw-id: the hash of topic, payload and second.
    const char *bad[] = {NULL, "", "abc", "12-34-56", "-1", "1-", "1796610300123-42'; DROP"};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        assert (!mqtt_reading_key (bad[index], "t/x", payload, 5, 5500, "1", key, sizeof key));
        assert (strncmp (key, "mqtt-h", 6) == 0 && strlen (key) == 6 + 16 + 2);
    }
    mqtt_reading_key (NULL, "t/x", payload, 5, 5999, "1", other, sizeof other);
    assert (streq (key, other)); //  same second
    mqtt_reading_key (NULL, "t/x", payload, 5, 6000, "1", other, sizeof other);
    assert (!streq (key, other)); //  next second
    mqtt_reading_key (NULL, "t/x", "41.94", 5, 5500, "1", other, sizeof other);
    assert (!streq (key, other)); //  other payload
    //  A long channel still fits PROTO_KEY_MAX.
    const char *longest = "abcdefghijklmnopqrstuvwxyz_power";
    mqtt_reading_key ("1234567890123456789012345678901234-1234", "t", payload, 5, 0, longest, key,
                      sizeof key);
    assert (strlen (key) <= PROTO_KEY_MAX && strncmp (key, "mqtt-1234", 9) == 0);

    //  Times: Shelly's unix ts, Tasmota's local Time in the owner's zone,
    //  a 1970 clock and no time at all.
    int64_t received = 1796610310000LL; //  2026-12-07 02:25:10 UTC
    mqtt_parse_t parsed;
    memset (&parsed, 0, sizeof parsed);
    assert (mqtt_reading_time (&parsed, "UTC", received) == received);
    parsed.ts_utc_ms = 1796610301250LL;
    assert (mqtt_reading_time (&parsed, "UTC", received) == 1796610301250LL);
    parsed.ts_utc_ms = 0;
    snprintf (parsed.ts_local, sizeof parsed.ts_local, "2026-12-07T03:25:00");
    assert (mqtt_reading_time (&parsed, "Europe/Berlin", received) == 1796610300000LL);
    //  The same local time read as UTC is an hour ahead: beyond 5 min, refused.
    assert (mqtt_reading_time (&parsed, "", received) == received);
    snprintf (parsed.ts_local, sizeof parsed.ts_local, "1970-01-01T00:00:12");
    assert (mqtt_reading_time (&parsed, "UTC", received) == received);
    if (verbose)
        printf ("(%s) ", key);
    printf ("OK\n");
}
