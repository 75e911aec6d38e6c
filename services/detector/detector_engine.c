/*  =========================================================================
    detector_engine - the per-port phantom state machines of one partition

    Rules (DESIGN.md "Phantom detection"):
    - A power sample falls in one of three bands: off (p <= off_watts), low
      (off_watts < p <= standby_watts) and high (p > standby_watts).
    - Hysteresis: a port leaves its current band only when p crosses that
      band's border by a margin, max (10 % of the threshold, 0.2 W), so a
      reading that hovers at a border keeps the status it has.
    - Low draw is "idle" until it has lasted min_phantom_seconds (by reading
      timestamps), then "phantom". High draw is "active" at once.
    - Roles (settings.role): standby is the above. should_be_off: while its
      schedule is on (no window: always; else inside one of up to four
      weekly windows of the owner's local time, each starting on its days
      at from and ending at to, the next day when to <= from), any draw
      above off_watts is low draw; outside it, as standby. always_on: on by
      design, never idle or phantom (so never notified): above off_watts
      (with the hysteresis) it is active, at or below off.
    - Time is the reading's ts. A reading older than the port's last one is
      counted and ignored; one with the same ts is a retry and is answered
      with the current status. A gap longer than offline_after is never
      bridged by the energy integral: the port is first taken offline at its
      last reading, then the new reading is judged from scratch.
    - A phantom episode starts at the first reading of the low-draw run (the
      dwell is part of it), accumulates a trapezoidal energy integral and
      closes at the ts of the reading that leaves phantom. For that last
      interval the draw is held at the last low reading: when in that
      interval the appliance changed is unknown, and the leaving reading's
      draw (say 100 W) is not phantom draw.
    - The offline timer has no reading to hang its verdict on. It closes the
      episode at the port's last reading and hands the change to its caller,
      which sends the store a verdict without a reading (status offline, the
      closed episode) and publishes status + phantom.end.
    - A gap found by a reading closes the episode the same way; the closed
      episode then rides on that reading's verdict. If that reading itself
      opens a new episode (only with min_phantom_seconds 0), the closed one
      wins the verdict; the new one reaches the store with the reading
      after, since every verdict of an open episode carries the whole of it.
    - The "lowest steady draw" (DESIGN.md) is not the engine's: the API
      computes it exactly from the stored readings.
    =========================================================================
*/
#include "detector_engine.h"
#include "detector_fixture.h"

#include <assert.h>
#include <czmq.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define S_USED 0x01 //  slot holds a port
#define S_SEEN 0x02 //  port has a last reading (last_ts valid)

#define S_ZONES_MAX 256 //  distinct time zones cached
#define S_ZONE_BLOCK_MS                                                                            \
    900000 //  zone offsets are cached per UTC quarter hour:
           //  every real DST change falls on one's border

//  One port: 72 bytes. Kept small because the table holds one per port of
//  the partition: at a million ports the table has 2^21 slots (load <= 3/4),
//  so 72 bytes a slot is 151 bytes per port, under the 256 budget.
typedef struct {
    uint8_t uuid[16];  //  port id, binary
    int64_t user;      //  owner, for events
    int64_t last_ts;   //  ts of the last accepted reading, ms
    int64_t last_seen; //  gateway clock at that reading, for the offline timer
    int64_t low_since; //  ts of the first reading of the low-draw run
    double energy_wh;  //  integral over the low-draw run
    float last_power;  //  W of the last accepted reading
    float peak_watts;  //  highest draw in the low-draw run
    uint32_t samples;  //  readings in the low-draw run
    uint16_t zone;     //  zone cache index + 1 of the last schedule lookup, 0 none
    uint8_t status;    //  proto_status_t
    uint8_t flags;     //  S_USED, S_SEEN
} s_port_t;
_Static_assert(sizeof (s_port_t) == 72, "port state grew: check the bytes-per-port budget");

//  A time zone's UTC offset, valid for one quarter hour.
typedef struct {
    char name[PROTO_TIMEZONE_MAX + 1]; //  IANA name as the settings carry it
    int64_t block;                     //  ts / S_ZONE_BLOCK_MS the offset was computed for
    int32_t offset_s;                  //  local = utc + offset_s
} s_zone_t;

typedef enum { S_BAND_NONE, S_BAND_OFF, S_BAND_LOW, S_BAND_HIGH } s_band_t;

struct _detector_engine_t {
    s_port_t *slots;               //  open-addressing table, linear probing
    size_t capacity;               //  slots, a power of two
    size_t count;                  //  used slots
    int shift;                     //  64 - log2 (capacity), for the hash
    int64_t offline_after;         //  ms
    s_zone_t zones[S_ZONES_MAX];   //  zone offset cache
    size_t zone_count;             //  zones used
    size_t zone_next;              //  next zone to evict when full
    detector_engine_stats_t stats; //  counters
};

static uint8_t s_hex[256]; //  hex digit values, 0xFF for non-digits
static bool s_hex_ready;

static void
s_hex_init (void)
{
    memset (s_hex, 0xFF, sizeof (s_hex));
    for (int i = 0; i < 10; i++)
        s_hex['0' + i] = (uint8_t)i;
    for (int i = 0; i < 6; i++) {
        s_hex['a' + i] = (uint8_t)(10 + i);
        s_hex['A' + i] = (uint8_t)(10 + i);
    }
    s_hex_ready = true;
}

int
detector_engine_uuid_parse (const char *text, uint8_t uuid[16])
{
    if (!s_hex_ready)
        s_hex_init ();
    const uint8_t *p = (const uint8_t *)text;
    int byte = 0;
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (p[i] != '-')
                return -1;
            continue;
        }
        //  Each character is read only after the one before it proved to
        //  be no NUL, so a short string is never read past its end.
        uint8_t high = s_hex[p[i]];
        if (high == 0xFF)
            return -1;
        uint8_t low = s_hex[p[i + 1]];
        if (low == 0xFF)
            return -1;
        uuid[byte++] = (uint8_t)(high << 4 | low);
        i++;
    }
    return p[36] == '\0' ? 0 : -1;
}

static void
s_uuid_format (const uint8_t uuid[16], char text[PROTO_UUID_LEN + 1])
{
    static const char digits[] = "0123456789abcdef";
    char *out = text;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *out++ = '-';
        *out++ = digits[uuid[i] >> 4];
        *out++ = digits[uuid[i] & 15];
    }
    *out = '\0';
}

static inline uint64_t
s_hash (const uint8_t uuid[16])
{
    uint64_t a, b;
    memcpy (&a, uuid, 8);
    memcpy (&b, uuid + 8, 8);
    return (a ^ (b * 0xC2B2AE3D27D4EB4FULL)) * 0x9E3779B97F4A7C15ULL;
}

//  The table comes straight from mmap: zero pages (a zero slot is a free
//  slot) handed out lazily, and transparent huge pages asked for, because
//  every reading hits a random slot and with 4 KiB pages each one would
//  also cost a TLB miss.
static s_port_t *
s_slots_alloc (size_t capacity)
{
    size_t bytes = capacity * sizeof (s_port_t);
    void *slots = mmap (NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED)
        return NULL;
#ifdef MADV_HUGEPAGE
    if (bytes >= 2 * 1024 * 1024)
        madvise (slots, bytes, MADV_HUGEPAGE); //  advice only: fine if refused
#endif
    return (s_port_t *)slots;
}

static void
s_slots_free (s_port_t *slots, size_t capacity)
{
    if (slots)
        munmap (slots, capacity * sizeof (s_port_t));
}

static int
s_table_alloc (detector_engine_t *self, size_t capacity)
{
    self->slots = s_slots_alloc (capacity);
    if (!self->slots)
        return -1;
    self->capacity = capacity;
    self->shift = 64;
    while (capacity > 1) {
        capacity >>= 1;
        self->shift--;
    }
    return 0;
}

static int
s_table_grow (detector_engine_t *self)
{
    s_port_t *old = self->slots;
    size_t old_capacity = self->capacity;
    int old_shift = self->shift;
    if (s_table_alloc (self, old_capacity * 2)) {
        self->slots = old;
        self->capacity = old_capacity;
        self->shift = old_shift;
        return -1;
    }
    size_t mask = self->capacity - 1;
    for (size_t i = 0; i < old_capacity; i++) {
        if (!(old[i].flags & S_USED))
            continue;
        size_t at = (size_t)(s_hash (old[i].uuid) >> self->shift);
        while (self->slots[at].flags & S_USED)
            at = (at + 1) & mask;
        self->slots[at] = old[i];
    }
    s_slots_free (old, old_capacity);
    return 0;
}

static s_port_t *
s_port_find (detector_engine_t *self, const uint8_t uuid[16])
{
    size_t mask = self->capacity - 1;
    size_t at = (size_t)(s_hash (uuid) >> self->shift);
    while (self->slots[at].flags & S_USED) {
        if (memcmp (self->slots[at].uuid, uuid, 16) == 0)
            return &self->slots[at];
        at = (at + 1) & mask;
    }
    return NULL;
}

//  Finds or adds the port; NULL only when the table cannot grow.
static s_port_t *
s_port_require (detector_engine_t *self, const uint8_t uuid[16], uint64_t hash)
{
    size_t mask = self->capacity - 1;
    size_t at = (size_t)(hash >> self->shift);
    while (self->slots[at].flags & S_USED) {
        if (memcmp (self->slots[at].uuid, uuid, 16) == 0)
            return &self->slots[at];
        at = (at + 1) & mask;
    }
    //  Load factor at most 3/4 keeps probe runs short.
    if ((self->count + 1) * 4 > self->capacity * 3) {
        if (s_table_grow (self))
            return NULL;
        mask = self->capacity - 1;
        at = (size_t)(hash >> self->shift);
        while (self->slots[at].flags & S_USED)
            at = (at + 1) & mask;
    }
    s_port_t *port = &self->slots[at];
    memset (port, 0, sizeof (*port));
    memcpy (port->uuid, uuid, 16);
    port->flags = S_USED;
    port->status = PROTO_STATUS_UNKNOWN;
    self->count++;
    self->stats.ports = self->count;
    return port;
}

detector_engine_t *
detector_engine_new (size_t expected_ports, int64_t offline_after_ms)
{
    if (!s_hex_ready)
        s_hex_init ();
    detector_engine_t *self = (detector_engine_t *)calloc (1, sizeof (detector_engine_t));
    if (!self)
        return NULL;
    size_t capacity = 64;
    while (capacity * 3 < expected_ports * 4)
        capacity *= 2;
    if (s_table_alloc (self, capacity)) {
        free (self);
        return NULL;
    }
    self->offline_after =
        offline_after_ms > 0 ? offline_after_ms : DETECTOR_OFFLINE_SECONDS_DEFAULT * 1000;
    return self;
}

void
detector_engine_destroy (detector_engine_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        detector_engine_t *self = *self_p;
        s_slots_free (self->slots, self->capacity);
        free (self);
        *self_p = NULL;
    }
}

//  Only plain IANA names reach TZ: a name like "/etc/passwd" or "../x"
//  would make the C library read an arbitrary file.
static bool
s_zone_name_valid (const char *name)
{
    if (name[0] == '/' || strstr (name, ".."))
        return false;
    for (const char *c = name; *c; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '/' || *c == '_' || *c == '-' || *c == '+'))
            return false;
    }
    return true;
}

//  UTC offset of zone at ts. The detector is single-threaded, so switching
//  TZ for the call is safe; this runs once per zone per quarter hour.
static int32_t
s_zone_offset_compute (const char *name, int64_t ts)
{
    if (!s_zone_name_valid (name))
        return 0;
    const char *saved = getenv ("TZ");
    char *saved_copy = saved ? strdup (saved) : NULL;
    char value[PROTO_TIMEZONE_MAX + 2];
    snprintf (value, sizeof (value), ":%s", name);
    setenv ("TZ", value, 1);
    tzset ();
    time_t seconds = (time_t)(ts >= 0 ? ts / 1000 : (ts - 999) / 1000);
    struct tm local;
    int32_t offset = 0;
    if (localtime_r (&seconds, &local))
        offset = (int32_t)local.tm_gmtoff;
    if (saved_copy) {
        setenv ("TZ", saved_copy, 1);
        free (saved_copy);
    } else
        unsetenv ("TZ");
    tzset ();
    return offset;
}

static int32_t
s_zone_offset (detector_engine_t *self, s_port_t *port, const char *name, int64_t ts)
{
    if (name[0] == '\0' || strcmp (name, "UTC") == 0 || strcmp (name, "Etc/UTC") == 0)
        return 0;
    int64_t block = ts >= 0 ? ts / S_ZONE_BLOCK_MS : (ts - S_ZONE_BLOCK_MS + 1) / S_ZONE_BLOCK_MS;
    s_zone_t *zone = NULL;
    if (port->zone && strcmp (self->zones[port->zone - 1].name, name) == 0)
        zone = &self->zones[port->zone - 1];
    else {
        for (size_t i = 0; i < self->zone_count; i++)
            if (strcmp (self->zones[i].name, name) == 0) {
                zone = &self->zones[i];
                break;
            }
        if (!zone) {
            size_t index;
            if (self->zone_count < S_ZONES_MAX)
                index = self->zone_count++;
            else {
                index = self->zone_next;
                self->zone_next = (self->zone_next + 1) % S_ZONES_MAX;
            }
            zone = &self->zones[index];
            snprintf (zone->name, sizeof (zone->name), "%s", name);
            zone->offset_s = s_zone_offset_compute (name, ts);
            zone->block = block;
        }
        port->zone = (uint16_t)(zone - self->zones + 1);
    }
    if (zone->block != block) {
        zone->offset_s = s_zone_offset_compute (name, ts);
        zone->block = block;
    }
    return zone->offset_s;
}

//  Whether a should_be_off port's schedule is on at ts: always without a
//  window, else when ts falls in one of them in the owner's local time. A
//  window is on from its from on each of its days, to its to the same
//  day, or the next day when to <= from (to 0 ends at midnight).
static bool
s_schedule_on (detector_engine_t *self, s_port_t *port, const proto_settings_t *settings,
               int64_t ts)
{
    bool any = false;
    for (size_t i = 0; i < PROTO_WINDOWS_MAX; i++)
        any |= settings->windows[i] != 0;
    if (!any)
        return true;
    char name[PROTO_TIMEZONE_MAX + 1];
    memcpy (name, settings->timezone, PROTO_TIMEZONE_MAX);
    name[PROTO_TIMEZONE_MAX] = '\0';
    int64_t local_s =
        (ts >= 0 ? ts / 1000 : (ts - 999) / 1000) + s_zone_offset (self, port, name, ts);
    int64_t day = local_s >= 0 ? local_s / 86400 : (local_s - 86399) / 86400;
    int minute = (int)((local_s - day * 86400) / 60);
    //  Day 0 (1970-01-01) was a Thursday; bit 0 is Monday.
    int today = (int)(((day + 3) % 7 + 7) % 7);
    int yesterday = (today + 6) % 7;
    for (size_t i = 0; i < PROTO_WINDOWS_MAX; i++) {
        uint32_t window = settings->windows[i];
        if (window == 0 || !proto_window_valid (window))
            continue; //  settings built by hand (a replay, a test) skip the decoder
        int days = (int)PROTO_WINDOW_DAYS (window);
        int from = (int)PROTO_WINDOW_FROM (window);
        int to = (int)PROTO_WINDOW_TO (window);
        bool started_today = (days >> today) & 1;
        if (to > from) {
            if (started_today && minute >= from && minute < to)
                return true;
        } else if ((started_today && minute >= from) || (((days >> yesterday) & 1) && minute < to))
            return true; //  past midnight: tonight's part, or the end of last night's
    }
    return false;
}

static inline float
s_margin (float threshold)
{
    float margin = threshold * 0.1f;
    return margin > 0.2f ? margin : 0.2f;
}

static inline s_band_t
s_band_of_status (uint8_t status)
{
    switch (status) {
    case PROTO_STATUS_ACTIVE:
        return S_BAND_HIGH;
    case PROTO_STATUS_IDLE:
    case PROTO_STATUS_PHANTOM:
        return S_BAND_LOW;
    case PROTO_STATUS_OFF:
        return S_BAND_OFF;
    default:
        return S_BAND_NONE;
    }
}

//  Band of p, leaving the current band only past a margin.
static inline s_band_t
s_band (s_band_t current, double p, float off, float standby)
{
    s_band_t raw = p <= off ? S_BAND_OFF : p <= standby ? S_BAND_LOW : S_BAND_HIGH;
    if (raw == current || current == S_BAND_NONE)
        return raw;
    float off_low = off - s_margin (off);
    if (off_low < 0)
        off_low = 0; //  with off_watts 0, a true 0 W still reads as off
    switch (current) {
    case S_BAND_OFF:
        return p > off + s_margin (off) ? raw : S_BAND_OFF;
    case S_BAND_LOW:
        if (p > standby + s_margin (standby))
            return S_BAND_HIGH;
        if (p <= off_low)
            return S_BAND_OFF;
        return S_BAND_LOW;
    case S_BAND_HIGH:
        return p <= standby - s_margin (standby) ? raw : S_BAND_HIGH;
    default:
        return raw;
    }
}

//  The low-draw run as an episode, ending at end (0: still open).
static void
s_episode_fill (const s_port_t *port, int64_t end, proto_episode_t *episode)
{
    episode->start = port->low_since;
    episode->end = end;
    episode->energy_wh = port->energy_wh;
    episode->peak_watts = port->peak_watts;
    episode->samples = port->samples;
    int64_t last = end ? end : port->last_ts;
    double hours = (double)(last - port->low_since) / 3600000.0;
    episode->mean_watts = hours > 0 ? port->energy_wh / hours : port->peak_watts;
}

static void
s_event_fill (proto_event_t *event, const char *kind, const s_port_t *port, const char *port_text,
              int64_t ts, double watts, uint8_t status, uint8_t previous,
              const proto_episode_t *episode)
{
    //  strncpy, not snprintf: this runs on every status change.
    strncpy (event->kind, kind, sizeof (event->kind) - 1);
    event->kind[sizeof (event->kind) - 1] = '\0';
    event->user = port->user;
    if (port_text)
        memcpy (event->port, port_text, PROTO_UUID_LEN + 1);
    else
        s_uuid_format (port->uuid, event->port);
    event->ts = ts;
    event->watts = watts;
    event->status = status;
    event->previous = previous;
    event->has_episode = episode != NULL;
    if (episode)
        event->episode = *episode;
    else
        memset (&event->episode, 0, sizeof (event->episode));
}

//  Takes the port offline at its last reading: writes up to two events
//  into outcome and the episode this closes, if any.
static void
s_port_offline (s_port_t *port, const char *port_text, detector_outcome_t *outcome)
{
    uint8_t previous = port->status;
    port->status = PROTO_STATUS_OFFLINE;
    s_event_fill (&outcome->events[outcome->event_count++], "status", port, port_text,
                  port->last_ts, port->last_power, PROTO_STATUS_OFFLINE, previous, NULL);
    if (previous == PROTO_STATUS_PHANTOM) {
        s_episode_fill (port, port->last_ts, &outcome->episode);
        outcome->has_episode = true;
        s_event_fill (&outcome->events[outcome->event_count++], "phantom.end", port, port_text,
                      port->last_ts, port->last_power, PROTO_STATUS_OFFLINE, previous,
                      &outcome->episode);
    }
}

//  Brings a port's slot towards the cache ahead of its reading: at a
//  million ports nearly every reading misses the cache, and overlapping
//  those misses is what makes a batch fast.
static inline void
s_prefetch (detector_engine_t *self, uint64_t hash)
{
    const char *slot = (const char *)&self->slots[hash >> self->shift];
    __builtin_prefetch (slot, 1);
    __builtin_prefetch (slot + sizeof (s_port_t) - 1, 1);
}

//  A retry (same ts) or a straggler: answered with what the port knows,
//  changing nothing, so a retried reading gets the same verdict.
static void
s_answer_stale (detector_engine_t *self, const s_port_t *port, int64_t ts,
                detector_outcome_t *outcome)
{
    if (ts == port->last_ts)
        self->stats.duplicates++;
    else
        self->stats.out_of_order++;
    outcome->ignored = true;
    outcome->status = outcome->previous = port->status;
    if (port->status == PROTO_STATUS_PHANTOM) {
        s_episode_fill (port, 0, &outcome->episode);
        outcome->has_episode = true;
    }
}

//  The port's status after a reading of p watts at ts; moves its low-draw
//  run along.
static uint8_t
s_judge (detector_engine_t *self, s_port_t *port, const proto_settings_t *settings, int64_t ts,
         double p)
{
    //  Settings come from the outside: keep the bands ordered and finite.
    float off = settings->off_watts;
    float standby = settings->standby_watts;
    if (!isfinite (off) || off < 0)
        off = 0.5f;
    if (!isfinite (standby) || standby < off)
        standby = off;
    int64_t dwell =
        settings->min_phantom_seconds > 0 ? (int64_t)settings->min_phantom_seconds * 1000 : 0;

    uint8_t previous = port->status;
    s_band_t band = s_band (s_band_of_status (previous), p, off, standby);
    //  On by design: any draw is use. A port that was in a low-draw run
    //  when its role changed leaves it here, closing its episode.
    if (settings->role == PROTO_ROLE_ALWAYS_ON)
        return band == S_BAND_OFF ? PROTO_STATUS_OFF : PROTO_STATUS_ACTIVE;
    if (band == S_BAND_HIGH && settings->role == PROTO_ROLE_SHOULD_BE_OFF &&
        s_schedule_on (self, port, settings, ts))
        band = S_BAND_LOW;
    if (band != S_BAND_LOW)
        return band == S_BAND_OFF ? PROTO_STATUS_OFF : PROTO_STATUS_ACTIVE;
    if (previous == PROTO_STATUS_IDLE || previous == PROTO_STATUS_PHANTOM) {
        double hours = (double)(ts - port->last_ts) / 3600000.0;
        port->energy_wh += ((double)port->last_power + p) * 0.5 * hours;
        port->samples++;
        if (p > port->peak_watts)
            port->peak_watts = (float)p;
    } else {
        port->low_since = ts;
        port->energy_wh = 0;
        port->samples = 1;
        port->peak_watts = (float)p;
    }
    return ts - port->low_since >= dwell ? PROTO_STATUS_PHANTOM : PROTO_STATUS_IDLE;
}

//  Makes the reading the port's last one, in status, and puts the change,
//  its events and the episode it opens, continues or closes into outcome.
static void
s_settle (s_port_t *port, const proto_reading_t *reading, double p, uint8_t status,
          detector_outcome_t *outcome)
{
    int64_t ts = reading->ts;
    uint8_t previous = port->status;
    proto_episode_t episode;
    bool closed = previous == PROTO_STATUS_PHANTOM && status != PROTO_STATUS_PHANTOM;
    if (closed) {
        //  Hold the last low draw to the leaving reading (see header).
        port->energy_wh += (double)port->last_power * (double)(ts - port->last_ts) / 3600000.0;
        port->last_ts = ts;
        s_episode_fill (port, ts, &episode);
    }
    port->status = status;
    port->last_ts = ts;
    port->last_power = (float)p;
    port->last_seen = reading->received > 0 ? reading->received : ts;
    port->flags |= S_SEEN;
    if (status == PROTO_STATUS_PHANTOM && !closed)
        s_episode_fill (port, 0, &episode);

    if (status != previous && outcome->event_count + 2 <= DETECTOR_EVENTS_MAX) {
        s_event_fill (&outcome->events[outcome->event_count++], "status", port, reading->port, ts,
                      p, status, previous, NULL);
        if (status == PROTO_STATUS_PHANTOM)
            s_event_fill (&outcome->events[outcome->event_count++], "phantom.start", port,
                          reading->port, ts, p, status, previous, &episode);
        else if (closed)
            s_event_fill (&outcome->events[outcome->event_count++], "phantom.end", port,
                          reading->port, ts, p, status, previous, &episode);
    }
    if (!outcome->has_episode && (closed || status == PROTO_STATUS_PHANTOM)) {
        outcome->episode = episode;
        outcome->has_episode = true;
    }
    outcome->status = status;
    outcome->previous = previous;
}

//  The state machine for one reading whose uuid is parsed (valid false:
//  it was not).
static int
s_process (detector_engine_t *self, const proto_reading_t *reading, const uint8_t uuid[16],
           uint64_t hash, bool valid, detector_outcome_t *outcome)
{
    self->stats.readings++;
    outcome->ignored = false;
    outcome->rejected = false;
    outcome->has_episode = false;
    outcome->event_count = 0;

    double p = reading->power;
    s_port_t *port = NULL;
    if (valid && isfinite (p))
        port = s_port_require (self, uuid, hash);
    if (!port) {
        self->stats.rejected++;
        outcome->ignored = true;
        outcome->rejected = true;
        outcome->status = outcome->previous = PROTO_STATUS_UNKNOWN;
        return -1;
    }
    port->user = reading->user;
    int64_t ts = reading->ts;
    if (port->flags & S_SEEN) {
        if (ts <= port->last_ts) {
            s_answer_stale (self, port, ts, outcome);
            return 0;
        }
        //  The episode this closes goes with this reading's verdict.
        if (ts - port->last_ts > self->offline_after) {
            self->stats.gaps++;
            if (port->status != PROTO_STATUS_OFFLINE)
                s_port_offline (port, reading->port, outcome);
        }
    }
    uint8_t status = s_judge (self, port, &reading->settings, ts, p);
    s_settle (port, reading, p, status, outcome);
    return 0;
}

int
detector_engine_process (detector_engine_t *self, const proto_reading_t *reading,
                         detector_outcome_t *outcome)
{
    assert (self);
    assert (reading);
    assert (outcome);
    uint8_t uuid[16];
    bool valid = detector_engine_uuid_parse (reading->port, uuid) == 0;
    return s_process (self, reading, uuid, valid ? s_hash (uuid) : 0, valid, outcome);
}

//  How many readings ahead of the current one a batch prefetches: enough
//  to cover a DRAM miss, few enough to stay within the CPU's fill buffers.
#define S_PREFETCH_AHEAD 12
#define S_BATCH_CHUNK 64

size_t
detector_engine_process_batch (detector_engine_t *self, const proto_reading_t *readings,
                               size_t count, detector_outcome_t *outcomes)
{
    assert (self);
    assert (readings || count == 0);
    assert (outcomes || count == 0);
    uint8_t uuid[S_BATCH_CHUNK][16];
    uint64_t hash[S_BATCH_CHUNK];
    bool valid[S_BATCH_CHUNK];
    size_t usable = 0;
    for (size_t base = 0; base < count; base += S_BATCH_CHUNK) {
        size_t chunk = count - base < S_BATCH_CHUNK ? count - base : S_BATCH_CHUNK;
        for (size_t i = 0; i < chunk; i++) {
            valid[i] = detector_engine_uuid_parse (readings[base + i].port, uuid[i]) == 0;
            hash[i] = valid[i] ? s_hash (uuid[i]) : 0;
            if (i < S_PREFETCH_AHEAD && valid[i])
                s_prefetch (self, hash[i]);
        }
        for (size_t i = 0; i < chunk; i++) {
            if (i + S_PREFETCH_AHEAD < chunk && valid[i + S_PREFETCH_AHEAD])
                s_prefetch (self, hash[i + S_PREFETCH_AHEAD]);
            if (s_process (self, &readings[base + i], uuid[i], hash[i], valid[i],
                           &outcomes[base + i]) == 0)
                usable++;
        }
    }
    return usable;
}

//  Whether the port has a reading and is not offline yet: what the timer
//  and a will may take offline.
static inline bool
s_port_online (const s_port_t *port)
{
    return (port->flags & (S_USED | S_SEEN)) == (S_USED | S_SEEN) &&
           port->status != PROTO_STATUS_OFFLINE;
}

//  Takes the port offline at its last reading and hands the change over:
//  the one way the timer and a will both do it.
static void
s_expire_port (s_port_t *port, detector_engine_offline_fn *offline_fn, void *arg)
{
    detector_outcome_t outcome;
    memset (&outcome, 0, sizeof (outcome));
    outcome.previous = port->status;
    outcome.status = PROTO_STATUS_OFFLINE;
    s_port_offline (port, NULL, &outcome);
    if (offline_fn)
        offline_fn (outcome.events[0].port, port->user, port->last_ts, &outcome, arg);
}

size_t
detector_engine_expire (detector_engine_t *self, int64_t now_ms,
                        detector_engine_offline_fn *offline_fn, void *arg)
{
    assert (self);
    //  A full sweep: at a million ports this reads the 250 MB table once a
    //  second, some ms; fine until a partition holds far more.
    size_t count = 0;
    for (size_t i = 0; i < self->capacity; i++) {
        s_port_t *port = &self->slots[i];
        if (!s_port_online (port) || now_ms - port->last_seen <= self->offline_after)
            continue;
        s_expire_port (port, offline_fn, arg);
        count++;
    }
    self->stats.offline += count;
    return count;
}

size_t
detector_engine_offline (detector_engine_t *self, const proto_offline_t *frame,
                         detector_engine_offline_fn *offline_fn, void *arg)
{
    assert (self);
    assert (frame);
    size_t count = 0;
    for (uint32_t index = 0; index < frame->count && index < PROTO_OFFLINE_MAX; index++) {
        uint8_t uuid[16];
        if (detector_engine_uuid_parse (frame->ports[index], uuid))
            continue;
        s_port_t *port = s_port_find (self, uuid);
        //  A reading received after the will is newer news: the plug is
        //  back (another instance may have handled it first).
        if (!port || !s_port_online (port) || port->last_seen > frame->ts)
            continue;
        s_expire_port (port, offline_fn, arg);
        count++;
    }
    self->stats.told_offline += count;
    return count;
}

int
detector_engine_restore (detector_engine_t *self, const char *port_text, int64_t user,
                         proto_status_t status, int64_t status_since, int64_t last_ts,
                         double last_power, const proto_episode_t *episode, int64_t now_ms)
{
    assert (self);
    uint8_t uuid[16];
    if (!port_text || detector_engine_uuid_parse (port_text, uuid))
        return -1;
    if (status < PROTO_STATUS_UNKNOWN || status > PROTO_STATUS_OFFLINE)
        status = PROTO_STATUS_UNKNOWN;
    s_port_t *port = s_port_require (self, uuid, s_hash (uuid));
    if (!port)
        return -1;
    //  Restoring twice (the restore's fallback does) starts from a clean
    //  slot: nothing of the first attempt leaks into the second.
    memset ((uint8_t *)port + 16, 0, sizeof (*port) - 16);
    port->user = user;
    port->status = (uint8_t)status;
    port->last_power = isfinite (last_power) ? (float)last_power : 0;
    port->flags = S_USED;
    if (last_ts > 0) {
        port->last_ts = last_ts;
        //  The offline timer runs on the gateway clock (reading.received),
        //  never on the device's: last_ts is device time and may lag the
        //  server by up to 30 days (the gateway's skew bound), which would
        //  take the port offline at the first sweep. The restart is no
        //  evidence of silence, so the port gets a full offline_after from
        //  now; a port that really is silent goes offline then, its change
        //  still dated at its last reading.
        port->last_seen = now_ms > 0 ? now_ms : last_ts;
        port->flags |= S_SEEN;
    } else if (status != PROTO_STATUS_UNKNOWN && status != PROTO_STATUS_OFFLINE)
        port->status = PROTO_STATUS_UNKNOWN; //  no reading to judge from: start afresh
    port->low_since = status_since ? status_since : last_ts;
    port->energy_wh = 0;
    port->peak_watts = port->last_power;
    port->samples = 1;
    if (port->status == PROTO_STATUS_PHANTOM && episode && episode->start > 0) {
        port->low_since = episode->start;
        port->energy_wh = isfinite (episode->energy_wh) ? episode->energy_wh : 0;
        port->peak_watts = isfinite (episode->peak_watts) ? (float)episode->peak_watts : 0;
        port->samples = episode->samples;
    }
    return 0;
}

int
detector_engine_replay (detector_engine_t *self, const char *port_text, int64_t run_start,
                        const int64_t *ts, const double *power, size_t count, int64_t now_ms,
                        proto_episode_t *episode)
{
    assert (self);
    assert (ts || count == 0);
    assert (power || count == 0);
    uint8_t uuid[16];
    if (!port_text || count == 0 || detector_engine_uuid_parse (port_text, uuid))
        return -1;
    uint64_t hash = s_hash (uuid);
    s_port_t *port = s_port_find (self, uuid);
    if (!port || (port->status != PROTO_STATUS_IDLE && port->status != PROTO_STATUS_PHANTOM))
        return -1;
    //  Kept to undo an inconsistent replay, and so the replay does not
    //  count as traffic in the stats.
    s_port_t saved = *port;
    detector_engine_stats_t stats = self->stats;

    //  Judged from scratch, as the first reading of the run was: every
    //  band change into low draw is a plain threshold crossing, the
    //  hysteresis only keeps a port where it is.
    memset ((uint8_t *)port + 16, 0, sizeof (*port) - 16);
    port->flags = S_USED;
    port->status = PROTO_STATUS_UNKNOWN;
    port->user = saved.user;
    port->zone = saved.zone;

    //  Settings under which any draw above 0 W is low draw: the readings
    //  were judged low draw when they came (the status says so); what is
    //  rebuilt here is the run's integral, by the very code that built it
    //  the first time. The dwell only decides idle against phantom, and
    //  that is taken from the database.
    proto_reading_t reading;
    memset (&reading, 0, sizeof (reading));
    memcpy (reading.port, port_text, PROTO_UUID_LEN);
    reading.port[PROTO_UUID_LEN] = '\0';
    reading.user = saved.user;
    reading.received = now_ms;
    reading.settings.off_watts = 0;
    reading.settings.standby_watts = FLT_MAX;
    reading.settings.role = PROTO_ROLE_STANDBY;
    reading.settings.min_phantom_seconds = saved.status == PROTO_STATUS_PHANTOM ? 0 : INT32_MAX;
    detector_outcome_t outcome;
    bool consistent = true;
    for (size_t i = 0; i < count && consistent; i++) {
        reading.ts = ts[i];
        reading.power = power[i];
        if (s_process (self, &reading, uuid, hash, true, &outcome) ||
            (!outcome.ignored && outcome.status != PROTO_STATUS_IDLE &&
             outcome.status != PROTO_STATUS_PHANTOM))
            consistent = false;
    }
    //  One run, started where the database says, without a gap in it.
    if (!consistent || port->low_since != run_start || port->status != saved.status ||
        !(port->flags & S_SEEN)) {
        *port = saved;
        self->stats = stats;
        return -1;
    }
    port->last_seen = now_ms > 0 ? now_ms : port->last_ts; //  see detector_engine_restore
    self->stats = stats;
    if (episode)
        s_episode_fill (port, 0, episode);
    return 0;
}

proto_status_t
detector_engine_status (detector_engine_t *self, const char *port_text)
{
    uint8_t uuid[16];
    if (detector_engine_uuid_parse (port_text, uuid))
        return PROTO_STATUS_UNKNOWN;
    s_port_t *port = s_port_find (self, uuid);
    return port ? (proto_status_t)port->status : PROTO_STATUS_UNKNOWN;
}

void
detector_engine_stats (detector_engine_t *self, detector_engine_stats_t *stats)
{
    *stats = self->stats;
}

double
detector_engine_bytes_per_port (detector_engine_t *self)
{
    size_t bytes = sizeof (*self) + self->capacity * sizeof (s_port_t);
    return self->count ? (double)bytes / (double)self->count : (double)bytes;
}

//  --------------------------------------------------------------------------
//  Self test

#define S_PORT_A "0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90"
#define S_PORT_B "1c7a4d2f-8b63-4d2c-ae4f-3a2b7c8d9e01"

//  One step of a table-driven series: a reading and what must follow.
typedef struct {
    int64_t t;             //  seconds since the series base
    double watts;          //  power
    proto_status_t expect; //  status after it
} s_step_t;

static void
s_run_series (const char *name, const s_step_t *steps, size_t count,
              const proto_settings_t *settings, int64_t base, bool verbose)
{
    detector_engine_t *engine = detector_engine_new (16, 300000);
    assert (engine);
    for (size_t i = 0; i < count; i++) {
        proto_reading_t reading;
        detector_outcome_t outcome;
        detector_fixture_reading (&reading, S_PORT_A, 7, base + steps[i].t * 1000, steps[i].watts,
                                  settings);
        int rc = detector_engine_process (engine, &reading, &outcome);
        if (verbose || outcome.status != steps[i].expect)
            printf ("  %s step %zu: t=%lld %.2f W -> %s (expected %s)\n", name, i,
                    (long long)steps[i].t, steps[i].watts, proto_status_name (outcome.status),
                    proto_status_name (steps[i].expect));
        assert (rc == 0);
        assert (outcome.status == steps[i].expect);
    }
    detector_engine_destroy (&engine);
}

//  Collects what detector_engine_expire hands over.
typedef struct {
    char port[PROTO_UUID_LEN + 1]; //  last port taken offline
    int64_t user;                  //  its owner
    int64_t ts;                    //  time of the change
    detector_outcome_t outcome;    //  last outcome
    size_t count;                  //  calls
} s_sink_t;

static void
s_sink_offline (const char *port, int64_t user, int64_t ts, const detector_outcome_t *outcome,
                void *arg)
{
    s_sink_t *sink = (s_sink_t *)arg;
    snprintf (sink->port, sizeof (sink->port), "%s", port);
    sink->user = user;
    sink->ts = ts;
    sink->outcome = *outcome;
    sink->count++;
}

#define S_RUN(name, steps, settings, base)                                                         \
    s_run_series (name, steps, sizeof (steps) / sizeof (steps[0]), settings, base, verbose)

//  Status after a fresh port's first reading of watts at ts: with no
//  dwell low draw is phantom at once, so at 100 W under should_be_off it
//  says whether the schedule is on (phantom) or off (active) at ts.
static proto_status_t
s_probe (const proto_settings_t *settings, int64_t ts, double watts)
{
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome;
    detector_fixture_reading (&reading, S_PORT_A, 7, ts, watts, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    detector_engine_destroy (&engine);
    return (proto_status_t)outcome.status;
}

//  Always on: never idle or phantom at any draw, no episode, no phantom
//  event; a port phantom when its role changed closes its episode with
//  its next reading.
static void
s_always_on_test (const proto_settings_t *settings, int64_t base, bool verbose)
{
    proto_settings_t on = *settings;
    on.role = PROTO_ROLE_ALWAYS_ON;
    //  Two bands split at off_watts, with its hysteresis
    const s_step_t bands[] = {
        {0, 0.0, PROTO_STATUS_OFF},     {10, 0.6, PROTO_STATUS_OFF},
        {20, 11, PROTO_STATUS_ACTIVE},  {30, 3, PROTO_STATUS_ACTIVE},
        {40, 100, PROTO_STATUS_ACTIVE}, {50, 0.55, PROTO_STATUS_ACTIVE},
        {60, 0.45, PROTO_STATUS_OFF},   {70, 0.75, PROTO_STATUS_ACTIVE},
        {200, 14, PROTO_STATUS_ACTIVE},
    };
    S_RUN ("always_on", bands, &on, base);

    //  Two hours of every kind of draw, a reading every 10 s: only active
    //  and off, never a low-draw run
    static const double draws[] = {11, 0.3, 5, 14.9, 15.2, 16, 0.6, 1, 3, 50, 2000, 0};
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome;
    for (int i = 0; i < 720; i++) {
        double watts = draws[(i / 30) % (sizeof (draws) / sizeof (draws[0]))];
        detector_fixture_reading (&reading, S_PORT_A, 7, base + i * 10000LL, watts, &on);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
        assert (outcome.status == PROTO_STATUS_ACTIVE || outcome.status == PROTO_STATUS_OFF);
        assert ((outcome.status == PROTO_STATUS_OFF) ==
                (watts <= 0.5 || (watts <= 0.7 && outcome.previous == PROTO_STATUS_OFF)));
        assert (!outcome.has_episode);
        for (size_t e = 0; e < outcome.event_count; e++)
            assert (streq (outcome.events[e].kind, "status"));
    }
    detector_engine_destroy (&engine);

    //  Phantom as standby, then always on: the next reading (same 5 W)
    //  is active and closes the episode there; the one after carries none.
    engine = detector_engine_new (0, 300000);
    for (int t = 0; t <= 70; t += 10) {
        detector_fixture_reading (&reading, S_PORT_A, 7, base + t * 1000LL, 5, settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
    }
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 80000, 5, &on);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_ACTIVE);
    assert (outcome.previous == PROTO_STATUS_PHANTOM);
    assert (outcome.has_episode);
    assert (outcome.episode.start == base);
    assert (outcome.episode.end == base + 80000);
    assert (fabs (outcome.episode.energy_wh - 5.0 * 80 / 3600) < 1e-9);
    assert (outcome.event_count == 2);
    assert (streq (outcome.events[1].kind, "phantom.end"));
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 90000, 5, &on);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_ACTIVE);
    assert (!outcome.has_episode && outcome.event_count == 0);
    detector_engine_destroy (&engine);
}

//  Local times in Berlin from Friday 2024-03-29 00:00 CET; day 2 is the
//  Sunday whose 02:00 CET became 03:00 CEST (01:00Z). summer: after it.
#define S_FRIDAY 1711666800000LL //  2024-03-28T23:00:00Z
#define S_BERLIN(day, hour, minute, summer)                                                        \
    (S_FRIDAY + (day)*86400000LL + ((hour)*60 + (minute)) * 60000LL - ((summer) ? 3600000 : 0))

//  Should be off on a weekly schedule: weekdays 09:00-17:00 and every
//  night 22:00-07:00 in Berlin, across the spring DST change; a window
//  counts from the day it starts on. Standby ignores a schedule.
static void
s_schedule_test (const proto_settings_t *settings)
{
    proto_settings_t office = *settings;
    office.role = PROTO_ROLE_SHOULD_BE_OFF;
    office.min_phantom_seconds = 0;
    office.windows[0] = PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60); //  mon-fri
    office.windows[2] = PROTO_WINDOW_PACK (0x7f, 22 * 60, 7 * 60); //  every day, past midnight
    snprintf (office.timezone, sizeof (office.timezone), "Europe/Berlin");
    const proto_status_t in = PROTO_STATUS_PHANTOM, out = PROTO_STATUS_ACTIVE;
    const struct {
        int64_t ts;
        proto_status_t expect;
    } probes[] = {
        {S_BERLIN (0, 8, 59, false), out},  //  Friday, before the office window
        {S_BERLIN (0, 9, 0, false), in},    //  its start
        {S_BERLIN (0, 16, 59, false), in},  //
        {S_BERLIN (0, 17, 0, false), out},  //  its end
        {S_BERLIN (0, 21, 59, false), out}, //
        {S_BERLIN (0, 22, 0, false), in},   //  the night starts on Friday
        {S_BERLIN (0, 23, 0, false), in},   //
        {S_BERLIN (1, 6, 59, false), in},   //  Saturday morning: Friday's night
        {S_BERLIN (1, 7, 0, false), out},   //  ends
        {S_BERLIN (1, 9, 30, false), out},  //  no office window on Saturday
        {S_BERLIN (1, 22, 0, false), in},   //  Saturday's night
        {S_BERLIN (2, 1, 59, false), in},   //  Sunday, the last minute of CET
        {S_BERLIN (2, 3, 0, true), in},     //  the first of CEST
        {S_BERLIN (2, 6, 59, true), in},    //
        {S_BERLIN (2, 7, 0, true), out},    //  07:00 CEST, 06:00 CET
        {S_BERLIN (2, 7, 30, true), out},   //  still 06:30 had the offset not moved
        {S_BERLIN (2, 9, 30, true), out},   //  no office window on Sunday
        {S_BERLIN (3, 6, 30, true), in},    //  Monday: Sunday's night
        {S_BERLIN (3, 8, 30, true), out},   //
        {S_BERLIN (3, 9, 30, true), in},    //  Monday's office window
    };
    for (size_t i = 0; i < sizeof (probes) / sizeof (probes[0]); i++) {
        proto_status_t status = s_probe (&office, probes[i].ts, 100);
        if (status != probes[i].expect)
            printf ("  schedule probe %zu: %lld -> %s (expected %s)\n", i, (long long)probes[i].ts,
                    proto_status_name (status), proto_status_name (probes[i].expect));
        assert (status == probes[i].expect);
    }
    //  One port through Saturday night, a reading every 4 minutes: one
    //  engine's zone cache follows the offset across the change. On from
    //  Saturday 22:00 CET (21:00Z) to Sunday 07:00 CEST (05:00Z).
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome;
    int64_t on = S_BERLIN (1, 22, 0, false), off = S_BERLIN (2, 7, 0, true);
    assert (off - on == 8 * 3600000LL); //  a night one hour short
    size_t phantom = 0;
    for (int64_t ts = on - 2 * 3600000LL; ts < off + 2 * 3600000LL; ts += 240000) {
        detector_fixture_reading (&reading, S_PORT_A, 7, ts, 100, &office);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
        assert (outcome.status == (ts >= on && ts < off ? in : out));
        phantom += outcome.status == in;
    }
    assert (phantom == 8 * 15);
    detector_engine_destroy (&engine);

    //  A window to midnight ("to" 0 or 1440), on Saturdays only, in UTC
    int64_t saturday = 1711756800000LL; //  2024-03-30T00:00:00Z
    proto_settings_t evening = office;
    evening.timezone[0] = '\0';
    memset (evening.windows, 0, sizeof (evening.windows));
    for (int to = 0; to <= 1440; to += 1440) {
        evening.windows[3] = PROTO_WINDOW_PACK (0x20, 20 * 60, to);
        assert (s_probe (&evening, saturday + 19 * 3600000LL + 59 * 60000, 100) == out);
        assert (s_probe (&evening, saturday + 20 * 3600000LL, 100) == in);
        assert (s_probe (&evening, saturday + 23 * 3600000LL + 59 * 60000, 100) == in);
        assert (s_probe (&evening, saturday + 24 * 3600000LL, 100) == out);
        assert (s_probe (&evening, saturday + 44 * 3600000LL, 100) == out); //  Sunday 20:00
        assert (s_probe (&evening, saturday - 4 * 3600000LL, 100) == out);  //  Friday 20:00
    }
    //  A night on Fridays only: Saturday morning is in it, Friday's and
    //  Sunday's are not
    memset (evening.windows, 0, sizeof (evening.windows));
    evening.windows[1] = PROTO_WINDOW_PACK (0x10, 22 * 60, 7 * 60);
    assert (s_probe (&evening, saturday - 2 * 3600000LL, 100) == in); //  Friday 22:00
    assert (s_probe (&evening, saturday + 6 * 3600000LL + 59 * 60000, 100) ==
            in); //  Saturday 06:59
    assert (s_probe (&evening, saturday + 7 * 3600000LL, 100) == out);
    assert (s_probe (&evening, saturday - 17 * 3600000LL - 60000, 100) == out); //  Friday 06:59
    assert (s_probe (&evening, saturday + 30 * 3600000LL + 59 * 60000, 100) == out); //  Sunday
    assert (s_probe (&evening, saturday + 22 * 3600000LL, 100) == out); //  Saturday 22:00
    //  Standby: a schedule changes nothing
    proto_settings_t standby = office;
    standby.role = PROTO_ROLE_STANDBY;
    assert (s_probe (&standby, S_BERLIN (0, 23, 0, false), 100) == PROTO_STATUS_ACTIVE);
    assert (s_probe (&standby, S_BERLIN (0, 23, 0, false), 5) == PROTO_STATUS_PHANTOM);
    assert (s_probe (&standby, S_BERLIN (0, 23, 0, false), 0.2) == PROTO_STATUS_OFF);
}

//  A detector killed after the run's first kill_after low readings and
//  restored from what the store kept (port row, open episode, readings)
//  ends the episode exactly as one that never stopped.
static void
s_replay_test (const proto_settings_t *settings, int64_t base, int kill_after)
{
    detector_engine_t *steady = detector_engine_new (0, 300000);
    detector_engine_t *killed = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome, expected;
    int kill_at = DETECTOR_FIXTURE_LOW_FIRST + kill_after; //  first reading the new detector sees
    int64_t ts[DETECTOR_FIXTURE_COUNT];
    double watts[DETECTOR_FIXTURE_COUNT];
    proto_episode_t stored = {0}; //  the episode row
    bool open = false;
    for (int i = 0; i < kill_at; i++) {
        ts[i] = base + i * 5000LL;
        watts[i] = detector_fixture_watts (i);
        detector_fixture_reading (&reading, S_PORT_A, 7, ts[i], watts[i], settings);
        assert (detector_engine_process (killed, &reading, &outcome) == 0);
        if (outcome.has_episode) {
            stored = outcome.episode;
            open = true;
        }
    }
    proto_status_t status = detector_engine_status (killed, S_PORT_A);
    assert (status == (kill_after * 5 >= 60 ? PROTO_STATUS_PHANTOM : PROTO_STATUS_IDLE));
    assert (open == (status == PROTO_STATUS_PHANTOM));
    detector_engine_destroy (&killed);

    int64_t run_start = ts[DETECTOR_FIXTURE_LOW_FIRST];
    int64_t status_since = status == PROTO_STATUS_IDLE ? run_start : run_start + 60000;
    detector_engine_t *restored = detector_engine_new (0, 300000);
    assert (detector_engine_restore (restored, S_PORT_A, 7, status, status_since, ts[kill_at - 1],
                                     watts[kill_at - 1], open ? &stored : NULL,
                                     ts[kill_at - 1]) == 0);
    //  Inconsistent readings leave the restored port as it was: a run that
    //  starts elsewhere, a reading at 0 W, a gap.
    assert (detector_engine_replay (restored, S_PORT_A, run_start - 5000,
                                    ts + DETECTOR_FIXTURE_LOW_FIRST,
                                    watts + DETECTOR_FIXTURE_LOW_FIRST, (size_t)kill_after,
                                    ts[kill_at - 1], NULL) == -1);
    double zero = 0;
    assert (detector_engine_replay (restored, S_PORT_A, run_start, ts + DETECTOR_FIXTURE_LOW_FIRST,
                                    &zero, 1, ts[kill_at - 1], NULL) == -1);
    int64_t gap[2] = {run_start, run_start + 400000};
    assert (detector_engine_replay (restored, S_PORT_A, run_start, gap,
                                    watts + DETECTOR_FIXTURE_LOW_FIRST, 2, ts[kill_at - 1],
                                    NULL) == -1);
    assert (detector_engine_replay (restored, S_PORT_B, run_start, ts + DETECTOR_FIXTURE_LOW_FIRST,
                                    watts + DETECTOR_FIXTURE_LOW_FIRST, 1, ts[kill_at - 1],
                                    NULL) == -1);
    assert (detector_engine_status (restored, S_PORT_A) == status);
    //  The real thing.
    proto_episode_t run;
    assert (detector_engine_replay (restored, S_PORT_A, run_start, ts + DETECTOR_FIXTURE_LOW_FIRST,
                                    watts + DETECTOR_FIXTURE_LOW_FIRST, (size_t)kill_after,
                                    ts[kill_at - 1], &run) == 0);
    assert (detector_engine_status (restored, S_PORT_A) == status);
    assert (run.start == run_start);
    assert (run.samples == (uint32_t)kill_after);
    if (open) {
        assert (run.samples == stored.samples);
        assert (run.energy_wh == stored.energy_wh);
    }
    detector_engine_stats_t stats;
    detector_engine_stats (restored, &stats);
    assert (stats.readings == 0); //  a replay is not traffic

    for (int i = 0; i < DETECTOR_FIXTURE_COUNT; i++) {
        detector_fixture_reading (&reading, S_PORT_A, 7, base + i * 5000LL,
                                  detector_fixture_watts (i), settings);
        assert (detector_engine_process (steady, &reading, &expected) == 0);
        if (i < kill_at)
            continue;
        assert (detector_engine_process (restored, &reading, &outcome) == 0);
        assert (outcome.status == expected.status);
        assert (outcome.previous == expected.previous);
        assert (outcome.event_count == expected.event_count);
        assert (outcome.has_episode == expected.has_episode);
    }
    detector_fixture_assert_same_end (&expected, &outcome, base);
    detector_engine_destroy (&restored);
    detector_engine_destroy (&steady);
}

//  The offline timer runs on the gateway clock: a port whose device clock
//  is a day behind is not taken offline, neither while running nor right
//  after a restore, until offline_after of server time without a reading.
static void
s_skew_test (const proto_settings_t *settings, int64_t base)
{
    int64_t now = base + 30 * 86400000LL; //  server clock
    int64_t device = now - 86400000LL;    //  device clock, a day behind
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome;
    detector_fixture_reading (&reading, S_PORT_A, 7, device, 5, settings);
    reading.received = now;
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (detector_engine_expire (engine, now + 300000, NULL, NULL) == 0);
    assert (detector_engine_expire (engine, now + 300001, NULL, NULL) == 1);
    detector_engine_destroy (&engine);

    //  Restored: the restart gives it a full offline_after.
    engine = detector_engine_new (0, 300000);
    assert (detector_engine_restore (engine, S_PORT_A, 7, PROTO_STATUS_IDLE, device - 10000, device,
                                     5, NULL, now) == 0);
    assert (detector_engine_expire (engine, now + 1000, NULL, NULL) == 0);
    int64_t run[2] = {device - 10000, device};
    double watts[2] = {5, 5};
    assert (detector_engine_replay (engine, S_PORT_A, device - 10000, run, watts, 2, now, NULL) ==
            0);
    assert (detector_engine_expire (engine, now + 1000, NULL, NULL) == 0);
    assert (detector_engine_expire (engine, now + 300000, NULL, NULL) == 0);
    assert (detector_engine_status (engine, S_PORT_A) == PROTO_STATUS_IDLE);
    //  Its next reading (device time, 5 s on) continues the run.
    detector_fixture_reading (&reading, S_PORT_A, 7, device + 5000, 5, settings);
    reading.received = now + 5000;
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_IDLE);
    assert (outcome.previous == PROTO_STATUS_IDLE);
    //  Silent for offline_after of server time: offline, dated at its
    //  last reading (device time).
    s_sink_t sink = {0};
    assert (detector_engine_expire (engine, now + 5000 + 300000, s_sink_offline, &sink) == 0);
    assert (detector_engine_expire (engine, now + 5000 + 300001, s_sink_offline, &sink) == 1);
    assert (sink.ts == device + 5000);
    detector_engine_destroy (&engine);
}

//  uuid text <-> binary
static void
s_uuid_test (void)
{
    uint8_t uuid[16];
    char text[PROTO_UUID_LEN + 1];
    assert (detector_engine_uuid_parse (S_PORT_A, uuid) == 0);
    s_uuid_format (uuid, text);
    assert (streq (text, S_PORT_A));
    assert (detector_engine_uuid_parse ("0B6F3C1E-7A52-4C1B-9D3E-2F1A6B7C8D90", uuid) == 0);
    assert (detector_engine_uuid_parse ("0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d9", uuid) == -1);
    assert (detector_engine_uuid_parse ("0b6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d900", uuid) == -1);
    assert (detector_engine_uuid_parse ("0b6f3c1e+7a52-4c1b-9d3e-2f1a6b7c8d90", uuid) == -1);
    assert (detector_engine_uuid_parse ("0g6f3c1e-7a52-4c1b-9d3e-2f1a6b7c8d90", uuid) == -1);
    assert (detector_engine_uuid_parse ("", uuid) == -1);
}

//  Status series: thresholds, hysteresis, dwell, expected-off windows.
static void
s_series_test (const proto_settings_t *settings, int64_t base, bool verbose)
{
    //  Thresholds: off at or below 0.5 W, low up to 15 W, active above.
    const s_step_t thresholds[] = {
        {0, 0.0, PROTO_STATUS_OFF},
        {10, 0.5, PROTO_STATUS_OFF},
        {20, 100, PROTO_STATUS_ACTIVE},
        {30, 15.0, PROTO_STATUS_ACTIVE}, //  border: needs <= 13.5 to leave
        {40, 0.0, PROTO_STATUS_OFF},
        {50, 3.0, PROTO_STATUS_IDLE},
        {60, 100, PROTO_STATUS_ACTIVE}, //  active is immediate
    };
    S_RUN ("thresholds", thresholds, settings, base);

    //  Hysteresis: readings hovering at a border keep the status.
    const s_step_t hysteresis[] = {
        {0, 20, PROTO_STATUS_ACTIVE},    {10, 14.9, PROTO_STATUS_ACTIVE},
        {20, 15.2, PROTO_STATUS_ACTIVE}, {30, 13.6, PROTO_STATUS_ACTIVE},
        {40, 13.4, PROTO_STATUS_IDLE},   {50, 15.4, PROTO_STATUS_IDLE},
        {60, 16.4, PROTO_STATUS_IDLE},   {70, 14.0, PROTO_STATUS_IDLE},
        {80, 16.6, PROTO_STATUS_ACTIVE}, {90, 0.4, PROTO_STATUS_OFF},
        {100, 0.6, PROTO_STATUS_OFF},    {110, 0.45, PROTO_STATUS_OFF},
        {120, 0.69, PROTO_STATUS_OFF},   {130, 0.75, PROTO_STATUS_IDLE},
        {140, 0.4, PROTO_STATUS_IDLE},   {150, 0.31, PROTO_STATUS_IDLE},
        {160, 0.29, PROTO_STATUS_OFF},
    };
    S_RUN ("hysteresis", hysteresis, settings, base);

    //  Dwell: idle until low draw has lasted 60 s, then phantom; an active
    //  interrupt restarts the dwell.
    const s_step_t dwell[] = {
        {0, 100, PROTO_STATUS_ACTIVE},  {10, 5, PROTO_STATUS_IDLE},
        {40, 5, PROTO_STATUS_IDLE},     {69, 5, PROTO_STATUS_IDLE},
        {70, 5, PROTO_STATUS_PHANTOM},  {100, 5, PROTO_STATUS_PHANTOM},
        {110, 80, PROTO_STATUS_ACTIVE}, {120, 5, PROTO_STATUS_IDLE},
        {170, 5, PROTO_STATUS_IDLE},    {180, 5, PROTO_STATUS_PHANTOM},
        {190, 0, PROTO_STATUS_OFF},
    };
    S_RUN ("dwell", dwell, settings, base);

    //  Should be off, always (no window): any draw above off_watts, 100 W
    //  too, is phantom after the dwell.
    proto_settings_t always = *settings;
    always.role = PROTO_ROLE_SHOULD_BE_OFF;
    const s_step_t off_always[] = {
        {0, 100, PROTO_STATUS_IDLE}, {30, 100, PROTO_STATUS_IDLE}, {60, 100, PROTO_STATUS_PHANTOM},
        {70, 0.1, PROTO_STATUS_OFF}, {80, 20, PROTO_STATUS_IDLE},
    };
    S_RUN ("off_always", off_always, &always, base);

    //  Should be off every night 22:00-06:00 local time. At 21:00Z Berlin
    //  (UTC+1 in January) is at 22:00, inside; UTC is at 21:00, outside.
    proto_settings_t window = always;
    window.windows[0] = PROTO_WINDOW_PACK (0x7f, 22 * 60, 6 * 60);
    snprintf (window.timezone, sizeof (window.timezone), "Europe/Berlin");
    int64_t evening = base + 21 * 3600000LL;
    const s_step_t window_berlin[] = {
        {0, 100, PROTO_STATUS_IDLE},
        {60, 100, PROTO_STATUS_PHANTOM},
        {8 * 3600 + 60, 100, PROTO_STATUS_ACTIVE}, //  too late: gap, then 06:01 local
    };
    S_RUN ("window_berlin", window_berlin, &window, evening);
    proto_settings_t window_utc = window;
    window_utc.timezone[0] = '\0';
    const s_step_t window_utc_steps[] = {
        {0, 100, PROTO_STATUS_ACTIVE},                                     //  21:00Z, outside
        {60, 100, PROTO_STATUS_ACTIVE},    {3600, 100, PROTO_STATUS_IDLE}, //  22:00Z: window opens
        {3660, 100, PROTO_STATUS_PHANTOM}, {3720, 5, PROTO_STATUS_PHANTOM},
    };
    S_RUN ("window_utc", window_utc_steps, &window_utc, evening);
    //  Readings every 4 minutes through the Berlin morning 05:50-06:10
    //  local: phantom until 06:00 local (05:00Z), then active.
    int64_t morning = base + 4 * 3600000LL + 50 * 60000LL; //  04:50Z = 05:50 Berlin
    const s_step_t window_end[] = {
        {0, 100, PROTO_STATUS_IDLE},
        {240, 100, PROTO_STATUS_PHANTOM},
        {480, 100, PROTO_STATUS_PHANTOM}, //  05:58
        {720, 100, PROTO_STATUS_ACTIVE},  //  06:02
    };
    S_RUN ("window_end", window_end, &window, morning);
    //  Summer time: 21:30Z on 1 July is 23:30 in Berlin (UTC+2): inside.
    int64_t july = 1719869400000LL; //  2024-07-01T21:30:00Z
    const s_step_t window_summer[] = {
        {0, 100, PROTO_STATUS_IDLE},
        {60, 100, PROTO_STATUS_PHANTOM},
    };
    S_RUN ("window_summer", window_summer, &window, july);
    //  A hostile zone name is not handed to the C library: treated as UTC.
    proto_settings_t hostile = window;
    snprintf (hostile.timezone, sizeof (hostile.timezone), "../../../etc/passwd");
    S_RUN ("window_hostile", window_utc_steps, &hostile, evening);

    //  min_phantom_seconds 0: the first low reading is phantom.
    proto_settings_t instant = *settings;
    instant.min_phantom_seconds = 0;
    const s_step_t instant_steps[] = {
        {0, 5, PROTO_STATUS_PHANTOM},
        {10, 100, PROTO_STATUS_ACTIVE},
    };
    S_RUN ("instant", instant_steps, &instant, base);
}

//  Events, episode, energy, duplicates and out-of-order on port A.
static void
s_episode_test (detector_engine_t *engine, const proto_settings_t *settings, int64_t base)
{
    proto_reading_t reading;
    detector_outcome_t outcome;

    //  Constant 5 W for 3600 s sampled every 10 s: exactly 5 Wh.
    for (int i = 0; i <= 360; i++) {
        detector_fixture_reading (&reading, S_PORT_A, 7, base + i * 10000LL, 5.0, settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
        if (i == 0) {
            assert (outcome.status == PROTO_STATUS_IDLE);
            assert (outcome.previous == PROTO_STATUS_UNKNOWN);
            assert (outcome.event_count == 1);
            assert (streq (outcome.events[0].kind, "status"));
            assert (!outcome.has_episode);
        } else if (i < 6) {
            assert (outcome.status == PROTO_STATUS_IDLE);
            assert (outcome.event_count == 0);
        } else if (i == 6) {
            assert (outcome.status == PROTO_STATUS_PHANTOM);
            assert (outcome.previous == PROTO_STATUS_IDLE);
            assert (outcome.event_count == 2);
            assert (streq (outcome.events[0].kind, "status"));
            assert (streq (outcome.events[1].kind, "phantom.start"));
            assert (outcome.events[1].has_episode);
            assert (outcome.events[1].episode.start == base);
            assert (outcome.events[1].episode.end == 0);
            assert (outcome.events[1].user == 7);
            assert (streq (outcome.events[1].port, S_PORT_A));
            char topic[PROTO_TOPIC_MAX + 1];
            proto_event_topic (&outcome.events[1], topic);
            assert (streq (topic, "phantom.start." S_PORT_A));
            assert (outcome.has_episode);
        } else {
            assert (outcome.status == PROTO_STATUS_PHANTOM);
            assert (outcome.event_count == 0);
            assert (outcome.has_episode);
        }
    }
    assert (outcome.episode.start == base);
    assert (outcome.episode.end == 0);
    assert (outcome.episode.samples == 361);
    assert (fabs (outcome.episode.energy_wh - 5.0) < 1e-9);
    assert (fabs (outcome.episode.mean_watts - 5.0) < 1e-9);
    assert (fabs (outcome.episode.peak_watts - 5.0) < 1e-9);

    //  Duplicate: same status, same episode, nothing integrated.
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.ignored);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.has_episode);
    assert (fabs (outcome.episode.energy_wh - 5.0) < 1e-9);
    //  Out of order: ignored, counted.
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 5000, 100, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.ignored);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.event_count == 0);

    //  Leaving phantom 10 s later: the last low draw is held to the leaving
    //  reading, so the episode ends with 5 W x 3610 s.
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 3610000, 120, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_ACTIVE);
    assert (outcome.previous == PROTO_STATUS_PHANTOM);
    assert (outcome.has_episode);
    assert (outcome.episode.end == base + 3610000);
    assert (fabs (outcome.episode.energy_wh - 5.0 * 3610 / 3600) < 1e-9);
    assert (fabs (outcome.episode.mean_watts - 5.0) < 1e-9);
    assert (outcome.event_count == 2);
    assert (streq (outcome.events[1].kind, "phantom.end"));
    assert (outcome.events[1].episode.end == base + 3610000);
    assert (outcome.events[1].previous == PROTO_STATUS_PHANTOM);
    //  The next reading carries no episode.
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 3620000, 120, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (!outcome.has_episode);
    assert (outcome.event_count == 0);
}

//  Energy of a ramp on port B, and a gap the integral does not bridge.
static void
s_gap_test (detector_engine_t *engine, const proto_settings_t *settings, int64_t base)
{
    proto_reading_t reading;
    detector_outcome_t outcome;

    //  A ramp 2 -> 12 W over 600 s in 60 s steps: (2 + 12) / 2 x 600 s.
    for (int i = 0; i <= 10; i++) {
        detector_fixture_reading (&reading, S_PORT_B, 7, base + i * 60000LL, 2.0 + i, settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
    }
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (fabs (outcome.episode.energy_wh - 7.0 * 600 / 3600) < 1e-9);
    assert (fabs (outcome.episode.peak_watts - 12.0) < 1e-9);
    assert (fabs (outcome.episode.mean_watts - 7.0) < 1e-9);

    //  Gap: a reading 10 min after the last is not joined by the integral;
    //  the port goes offline at its last reading first, which closes the
    //  episode, and the new low run starts from scratch.
    detector_fixture_reading (&reading, S_PORT_B, 7, base + 600000 + 600000, 4.0, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_IDLE);
    assert (outcome.previous == PROTO_STATUS_OFFLINE);
    assert (outcome.has_episode);
    assert (outcome.episode.end == base + 600000);
    assert (fabs (outcome.episode.energy_wh - 7.0 * 600 / 3600) < 1e-9);
    assert (outcome.event_count == 3);
    assert (streq (outcome.events[0].kind, "status"));
    assert (outcome.events[0].status == PROTO_STATUS_OFFLINE);
    assert (streq (outcome.events[1].kind, "phantom.end"));
    assert (streq (outcome.events[2].kind, "status"));
    assert (outcome.events[2].previous == PROTO_STATUS_OFFLINE);
    for (int i = 1; i <= 6; i++) {
        detector_fixture_reading (&reading, S_PORT_B, 7, base + 1200000 + i * 10000LL, 4.0,
                                  settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
    }
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.episode.start == base + 1200000);
    assert (fabs (outcome.episode.energy_wh - 4.0 * 60 / 3600) < 1e-9);
}

//  Offline timer: port B (phantom) falls silent; port A (active) too.
static void
s_offline_test (detector_engine_t *engine, const proto_settings_t *settings, int64_t base)
{
    proto_reading_t reading;
    detector_outcome_t outcome;
    int64_t last_b = base + 1260000;
    s_sink_t sink = {0};
    assert (detector_engine_expire (engine, last_b + 300000, s_sink_offline, &sink) == 0);
    size_t offline = detector_engine_expire (engine, last_b + 300001, s_sink_offline, &sink);
    //  Only B went silent long enough (A read later): one call, for a
    //  verdict without a reading at B's last reading, with the episode
    //  closed there, and the events status offline, phantom.end.
    assert (offline == 1);
    assert (sink.count == 1);
    assert (streq (sink.port, S_PORT_B));
    assert (sink.user == 7);
    assert (sink.ts == last_b);
    assert (sink.outcome.status == PROTO_STATUS_OFFLINE);
    assert (sink.outcome.previous == PROTO_STATUS_PHANTOM);
    assert (sink.outcome.has_episode);
    assert (sink.outcome.episode.start == base + 1200000);
    assert (sink.outcome.episode.end == last_b);
    assert (fabs (sink.outcome.episode.energy_wh - 4.0 * 60 / 3600) < 1e-9);
    assert (sink.outcome.event_count == 2);
    assert (streq (sink.outcome.events[0].kind, "status"));
    assert (sink.outcome.events[0].status == PROTO_STATUS_OFFLINE);
    assert (sink.outcome.events[0].previous == PROTO_STATUS_PHANTOM);
    assert (streq (sink.outcome.events[1].kind, "phantom.end"));
    assert (streq (sink.outcome.events[1].port, S_PORT_B));
    assert (sink.outcome.events[1].episode.end == last_b);
    assert (detector_engine_status (engine, S_PORT_A) == PROTO_STATUS_ACTIVE);
    assert (detector_engine_status (engine, S_PORT_B) == PROTO_STATUS_OFFLINE);
    assert (detector_engine_expire (engine, last_b + 900000, s_sink_offline, &sink) == 0);
    assert (sink.count == 1);
    //  The closed episode went with the timer's verdict: the next reading
    //  of B carries none, and starts a new low run.
    detector_fixture_reading (&reading, S_PORT_B, 7, last_b + 400000, 4.0, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_IDLE);
    assert (outcome.previous == PROTO_STATUS_OFFLINE);
    assert (!outcome.has_episode);
    //  An idle port going offline closes nothing: no episode.
    {
        s_sink_t quiet = {0};
        assert (detector_engine_expire (engine, last_b + 400000 + 300001, s_sink_offline, &quiet) ==
                1);
        assert (quiet.outcome.previous == PROTO_STATUS_IDLE);
        assert (!quiet.outcome.has_episode);
        assert (quiet.outcome.event_count == 1);
    }
    detector_fixture_reading (&reading, S_PORT_B, 7, last_b + 410000, 4.0, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (!outcome.has_episode);
}

//  Restore: a port that was phantom before a restart continues its
//  episode (same start, energy carried on) instead of opening a new one.
static void
s_restore_test (const proto_settings_t *settings, int64_t base)
{
    proto_reading_t reading;
    detector_outcome_t outcome;
    detector_engine_t *restored = detector_engine_new (0, 300000);
    proto_episode_t open = {.start = base, .energy_wh = 1.0, .peak_watts = 6, .samples = 100};
    assert (detector_engine_restore (restored, S_PORT_A, 7, PROTO_STATUS_PHANTOM, base + 60000,
                                     base + 720000, 5.0, &open, base + 720000) == 0);
    assert (detector_engine_restore (restored, S_PORT_B, 7, PROTO_STATUS_IDLE, base + 700000,
                                     base + 720000, 5.0, NULL, base + 720000) == 0);
    assert (detector_engine_restore (restored, "bad", 7, PROTO_STATUS_IDLE, 0, 0, 0, NULL, base) ==
            -1);
    assert (detector_engine_status (restored, S_PORT_A) == PROTO_STATUS_PHANTOM);
    //  The retried last reading is a duplicate: same answer.
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 720000, 5.0, settings);
    assert (detector_engine_process (restored, &reading, &outcome) == 0);
    assert (outcome.ignored);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.episode.start == base);
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 756000, 5.0, settings);
    assert (detector_engine_process (restored, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.previous == PROTO_STATUS_PHANTOM);
    assert (outcome.event_count == 0);
    assert (outcome.episode.start == base);
    assert (outcome.episode.samples == 101);
    assert (fabs (outcome.episode.energy_wh - (1.0 + 5.0 * 36 / 3600)) < 1e-9);
    //  The idle port's dwell resumes from when it became idle.
    detector_fixture_reading (&reading, S_PORT_B, 7, base + 740000, 5.0, settings);
    assert (detector_engine_process (restored, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_IDLE);
    detector_fixture_reading (&reading, S_PORT_B, 7, base + 760000, 5.0, settings);
    assert (detector_engine_process (restored, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_PHANTOM);
    assert (outcome.episode.start == base + 700000);
    detector_engine_destroy (&restored);
}

//  One engine through episodes, gaps and the offline timer, then
//  unusable input; its counters add up.
static void
s_lifecycle_test (const proto_settings_t *settings, int64_t base)
{
    detector_engine_t *engine = detector_engine_new (0, 300000);
    assert (engine);
    s_episode_test (engine, settings, base);
    s_gap_test (engine, settings, base);
    s_offline_test (engine, settings, base);

    //  Unusable input is rejected, not crashed on.
    proto_reading_t reading;
    detector_outcome_t outcome;
    detector_fixture_reading (&reading, "not-a-uuid", 7, base, 4.0, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == -1);
    assert (outcome.ignored);
    assert (outcome.rejected);
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 3630000, NAN, settings);
    assert (detector_engine_process (engine, &reading, &outcome) == -1);
    proto_settings_t weird = *settings;
    weird.off_watts = NAN;
    weird.standby_watts = -4;
    weird.min_phantom_seconds = -10;
    detector_fixture_reading (&reading, S_PORT_A, 7, base + 3630000, 4.0, &weird);
    assert (detector_engine_process (engine, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_ACTIVE);

    detector_engine_stats_t stats;
    detector_engine_stats (engine, &stats);
    assert (stats.duplicates == 1);
    assert (stats.out_of_order == 1);
    assert (stats.rejected == 2);
    assert (stats.gaps == 2);
    assert (stats.offline == 2);
    assert (stats.ports == 2);
    detector_engine_destroy (&engine);
    detector_engine_destroy (&engine);
}

//  A plug's will (an offline frame) takes its ports offline exactly as the
//  timer would, at once: one engine is told, a twin with the same
//  readings runs out its timer, and both hand over the same changes.
static void
s_will_test (const proto_settings_t *settings, int64_t base)
{
    detector_engine_t *told = detector_engine_new (0, 300000);
    detector_engine_t *timed = detector_engine_new (0, 300000);
    assert (told && timed);
    proto_reading_t reading;
    detector_outcome_t outcome;
    //  B on standby long enough to be phantom, A in use.
    int64_t last = base + 120000;
    for (int64_t ts = base; ts <= last; ts += 10000)
        for (int twin = 0; twin < 2; twin++) {
            detector_engine_t *engine = twin ? timed : told;
            detector_fixture_reading (&reading, S_PORT_B, 7, ts, 4.0 + (double)(ts % 3), settings);
            assert (detector_engine_process (engine, &reading, &outcome) == 0);
            detector_fixture_reading (&reading, S_PORT_A, 7, ts, 120, settings);
            assert (detector_engine_process (engine, &reading, &outcome) == 0);
        }
    assert (detector_engine_status (told, S_PORT_B) == PROTO_STATUS_PHANTOM);

    proto_offline_t frame;
    memset (&frame, 0, sizeof (frame));
    frame.count = 4;
    strcpy (frame.ports[0], S_PORT_B);
    strcpy (frame.ports[1], "2d8b5e30-9c74-4e3d-bf50-4b3c8d9e0f12"); //  never read: skipped
    strcpy (frame.ports[2], "not-a-uuid");                           //  skipped
    strcpy (frame.ports[3], S_PORT_A);
    //  A will older than the last reading received: the plug is back.
    frame.ts = last - 1;
    s_sink_t sink = {0};
    assert (detector_engine_offline (told, &frame, s_sink_offline, &sink) == 0);
    assert (sink.count == 0);
    assert (detector_engine_status (told, S_PORT_B) == PROTO_STATUS_PHANTOM);

    //  Received right after the last reading: both ports, long before the timer.
    frame.ts = last + 500;
    s_sink_t wills[2];
    memset (wills, 0, sizeof (wills));
    for (uint32_t index = 0; index < 4; index++) {
        proto_offline_t one = frame;
        one.count = 1;
        strcpy (one.ports[0], frame.ports[index]);
        size_t taken =
            detector_engine_offline (told, &one, s_sink_offline, &wills[index == 3 ? 1 : 0]);
        assert (taken == (index == 0 || index == 3 ? 1u : 0u));
    }
    assert (detector_engine_expire (timed, last + 300000, NULL, NULL) == 0);
    s_sink_t timer = {0};
    for (int port = 0; port < 2; port++) {
        //  The timer's changes, one port at a time, by the order it sweeps
        detector_engine_t *twin = detector_engine_new (0, 300000);
        for (int64_t ts = base; ts <= last; ts += 10000) {
            detector_fixture_reading (&reading, port ? S_PORT_A : S_PORT_B, 7, ts,
                                      port ? 120 : 4.0 + (double)(ts % 3), settings);
            assert (detector_engine_process (twin, &reading, &outcome) == 0);
        }
        memset (&timer, 0, sizeof (timer));
        assert (detector_engine_expire (twin, last + 300001, s_sink_offline, &timer) == 1);
        const s_sink_t *will = &wills[port];
        assert (will->count == 1 && streq (will->port, timer.port));
        assert (will->user == timer.user && will->ts == timer.ts && will->ts == last);
        assert (will->outcome.status == PROTO_STATUS_OFFLINE);
        assert (will->outcome.previous == (port ? PROTO_STATUS_ACTIVE : PROTO_STATUS_PHANTOM));
        assert (will->outcome.previous == timer.outcome.previous);
        assert (will->outcome.has_episode == timer.outcome.has_episode);
        assert (will->outcome.has_episode == (port == 0));
        if (will->outcome.has_episode)
            assert (memcmp (&will->outcome.episode, &timer.outcome.episode,
                            sizeof (proto_episode_t)) == 0);
        assert (will->outcome.event_count == timer.outcome.event_count);
        assert (will->outcome.event_count == (port ? 1u : 2u));
        for (size_t event = 0; event < will->outcome.event_count; event++) {
            const proto_event_t *a = &will->outcome.events[event];
            const proto_event_t *b = &timer.outcome.events[event];
            assert (streq (a->kind, b->kind) && streq (a->port, b->port));
            assert (a->user == b->user && a->ts == b->ts && a->watts == b->watts);
            assert (a->status == b->status && a->previous == b->previous);
            assert (a->has_episode == b->has_episode);
        }
        assert (streq (will->outcome.events[0].kind, "status"));
        detector_engine_destroy (&twin);
    }
    //  Told twice (every MQTT instance sees every will): nothing more, and
    //  the timer has nothing left to do either.
    assert (detector_engine_offline (told, &frame, s_sink_offline, &sink) == 0);
    assert (detector_engine_expire (told, last + 900000, s_sink_offline, &sink) == 0);
    assert (sink.count == 0);
    //  Online says nothing; the next reading brings the port back.
    detector_fixture_reading (&reading, S_PORT_A, 7, last + 20000, 120, settings);
    assert (detector_engine_process (told, &reading, &outcome) == 0);
    assert (outcome.status == PROTO_STATUS_ACTIVE && outcome.previous == PROTO_STATUS_OFFLINE);
    assert (outcome.event_count == 1);

    detector_engine_stats_t stats;
    detector_engine_stats (told, &stats);
    assert (stats.told_offline == 2 && stats.offline == 0);
    detector_engine_destroy (&told);
    detector_engine_destroy (&timed);
}

//  Growth keeps every port.
static void
s_growth_test (const proto_settings_t *settings, int64_t base)
{
    detector_engine_t *engine = detector_engine_new (0, 300000);
    proto_reading_t reading;
    detector_outcome_t outcome;
    detector_engine_stats_t stats;
    char port[PROTO_UUID_LEN + 1];
    for (int i = 0; i < 5000; i++) {
        snprintf (port, sizeof (port), "%08x-0000-4000-8000-%012x", i * 2654435761u, i);
        detector_fixture_reading (&reading, port, 7, base, i % 2 ? 100 : 0, settings);
        assert (detector_engine_process (engine, &reading, &outcome) == 0);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf (port, sizeof (port), "%08x-0000-4000-8000-%012x", i * 2654435761u, i);
        assert (detector_engine_status (engine, port) ==
                (i % 2 ? PROTO_STATUS_ACTIVE : PROTO_STATUS_OFF));
    }
    assert (detector_engine_status (engine, S_PORT_A) == PROTO_STATUS_UNKNOWN);
    detector_engine_stats (engine, &stats);
    assert (stats.ports == 5000);
    detector_engine_destroy (&engine);
}

//  The batch path decides exactly as the one-by-one path, growth
//  mid-batch and unusable readings included.
static void
s_batch_test (const proto_settings_t *settings, int64_t base)
{
    detector_engine_t *engine = detector_engine_new (0, 300000);
    detector_outcome_t outcome;
    char port[PROTO_UUID_LEN + 1];
    detector_engine_t *batched = detector_engine_new (0, 300000);
    proto_reading_t *readings = (proto_reading_t *)calloc (100, sizeof (proto_reading_t));
    detector_outcome_t *outcomes = (detector_outcome_t *)calloc (100, sizeof (detector_outcome_t));
    assert (readings && outcomes);
    for (int round = 1; round <= 3; round++) {
        for (int base_i = 0; base_i < 5000; base_i += 100) {
            for (int i = 0; i < 100; i++) {
                int n = base_i + i;
                snprintf (port, sizeof (port), "%08x-0000-4000-8000-%012x", n * 2654435761u, n);
                double watts = (n + round) % 3 == 0 ? 100 : (n + round) % 3 == 1 ? 5 : 0;
                detector_fixture_reading (&readings[i], n == 77 ? "bad" : port, 7,
                                          base + round * 30000LL, watts, settings);
            }
            assert (detector_engine_process_batch (batched, readings, 100, outcomes) ==
                    (base_i == 0 ? 99 : 100));
            for (int i = 0; i < 100; i++) {
                assert (detector_engine_process (engine, &readings[i], &outcome) ==
                        (base_i + i == 77 ? -1 : 0));
                assert (outcome.status == outcomes[i].status);
                assert (outcome.previous == outcomes[i].previous);
                assert (outcome.event_count == outcomes[i].event_count);
                assert (outcome.has_episode == outcomes[i].has_episode);
            }
        }
    }
    free (readings);
    free (outcomes);
    detector_engine_destroy (&batched);
    detector_engine_destroy (&engine);
}

void
detector_engine_test (bool verbose)
{
    printf (" * detector_engine: ");
    if (verbose)
        printf ("\n");
    proto_settings_t settings;
    detector_fixture_settings (&settings);
    int64_t base = 1704067200000LL; //  2024-01-01T00:00:00Z

    s_uuid_test ();
    s_series_test (&settings, base, verbose);
    s_always_on_test (&settings, base, verbose);
    s_schedule_test (&settings);
    s_lifecycle_test (&settings, base);
    s_restore_test (&settings, base);
    s_replay_test (&settings, base, 4);  //  killed while idle (the fault test's case)
    s_replay_test (&settings, base, 16); //  killed while phantom
    s_skew_test (&settings, base);
    s_will_test (&settings, base);
    s_growth_test (&settings, base);
    s_batch_test (&settings, base);
    printf ("OK\n");
}
