/*  =========================================================================
    store_batch - the verdicts of one group commit and their acks
    =========================================================================
*/
#include "store_batch.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Growable text or byte buffer for parameters.
typedef struct {
    char *data;      //  bytes, NUL-terminated when text
    size_t size;     //  bytes used, without the NUL
    size_t capacity; //  bytes allocated
} s_text_t;

typedef struct {
    proto_verdict_t verdict; //  as received
    proto_ack_t ack;         //  answer; final once decided
    bool decided;            //  ack is final, skip in later plans
    bool fresh;              //  reading is inserted by this attempt
    size_t first;            //  row with the same (device, key) seen first, else own index
    bool grouped;            //  ack already handed out by store_batch_group
    bool marked;             //  mark is set (store_batch_mark)
    int64_t mark;            //  start of the minute the reading changes, ms
} s_row_t;

typedef struct {
    size_t last;    //  last row of the port in the range
    size_t changed; //  last row where the status changed, SIZE_MAX if none
    size_t reading; //  last row with a reading, SIZE_MAX if none
    bool urgent;    //  status change or no-reading verdict: write now
    bool deferred;  //  this attempt leaves its row waiting in memory
} s_port_t;

//  A port row as the store last knew it, kept across batches.
typedef struct {
    char port[PROTO_UUID_LEN + 1]; //  ports.id
    uint8_t status;                //  last status, UNKNOWN: keep the stored one
    bool has_reading;              //  ts and power are set
    int64_t ts;                    //  last reading, ms since epoch
    double power;                  //  its power
    bool dirty;                    //  holds what is not written yet
    bool queued;                   //  in the queue of waiting rows
    int64_t due;                   //  monotonic ms from which a waiting row goes out
    int64_t written;               //  monotonic ms of its last write, 0 never
} s_pending_t;

//  One port row for the ports statement.
typedef struct {
    s_pending_t *pending; //  its memory, updated after COMMIT
    size_t port;          //  index in ports, SIZE_MAX: from memory only
    uint8_t status;       //  status, UNKNOWN: keep
    bool has_reading;     //  ts and power are set
    int64_t ts;           //  last reading time
    double power;         //  its power
    int64_t changed;      //  time of the last status change, -1 none
} s_write_t;

//  A port's run of marked minutes (store_batch_marks_binary).
typedef struct {
    bool open;     //  first and last are set
    int64_t first; //  first minute, ms
    int64_t last;  //  last minute, ms
} s_range_t;

enum {
    S_KEYS = 0,
    S_READINGS = S_KEYS + STORE_KEYS_PARAMS,
    S_PORTS = S_READINGS + STORE_READINGS_PARAMS,
    S_EPISODES = S_PORTS + STORE_PORTS_PARAMS,
    S_MARKS = S_EPISODES + STORE_EPISODES_PARAMS,
    S_BUFFERS = S_MARKS + STORE_MARKS_PARAMS
};

struct _store_batch_t {
    s_row_t *rows;   //  capacity rows
    size_t capacity; //  most rows
    size_t size;     //  rows held
    size_t lo, hi;   //  planned range
    size_t *keyed;   //  rows with a first-seen key, in order
    size_t keyed_count;
    size_t *unkeyed; //  rows without a key, in order
    size_t unkeyed_count;
    s_port_t *ports; //  one per port of the planned range
    size_t port_count;
    size_t *episodes; //  last row of each episode of the planned range
    size_t episode_count;
    s_write_t *writes; //  port rows this attempt writes
    size_t write_count;
    size_t write_capacity;
    size_t deferred_count;       //  ports of the range left waiting
    int64_t now;                 //  monotonic ms of store_batch_port_writes
    zhashx_t *pending;           //  port text -> s_pending_t, across batches
    zlistx_t *queue;             //  s_pending_t waiting to be written, by due time
    zhashx_t *index;             //  scratch: episode key text -> slot + 1
    zhashx_t *key_index;         //  a row's reading (device, key) -> row + 1
    zhashx_t *port_index;        //  port text -> ports slot + 1 of the planned range
    s_text_t buffers[S_BUFFERS]; //  array literals
    s_text_t copy;               //  binary COPY stream
    s_text_t keys_copy;          //  binary COPY stream of the keys
    s_range_t *ranges;           //  scratch: per port slot, its open range of marks
};

//  --------------------------------------------------------------------------
//  Text buffer helpers

static void
s_text_reserve (s_text_t *self, size_t more)
{
    if (self->size + more + 1 > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 4096;
        while (capacity < self->size + more + 1)
            capacity *= 2;
        char *data = (char *)realloc (self->data, capacity);
        assert (data); //  as zmalloc: no way on without memory
        self->data = data;
        self->capacity = capacity;
    }
}

static void
s_text_append (s_text_t *self, const void *data, size_t size)
{
    s_text_reserve (self, size);
    memcpy (self->data + self->size, data, size);
    self->size += size;
    self->data[self->size] = 0;
}

static void
s_array_begin (s_text_t *self)
{
    self->size = 0;
    s_text_append (self, "{", 1);
}

//  Elements are comma-separated; the first follows the brace.
static void
s_array_separate (s_text_t *self)
{
    if (self->size > 1)
        s_text_append (self, ",", 1);
}

static void
s_array_end (s_text_t *self)
{
    s_text_append (self, "}", 1);
}

static void
s_array_int (s_text_t *self, int64_t value)
{
    char digits[24];
    char *end = digits + sizeof (digits);
    char *cursor = end;
    //  Unsigned so that INT64_MIN negates without overflow.
    uint64_t magnitude = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
    do {
        *--cursor = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *--cursor = '-';
    s_array_separate (self);
    s_text_append (self, cursor, (size_t)(end - cursor));
}

//  %.17g round-trips every double; PostgreSQL spells the specials itself.
static void
s_array_double (s_text_t *self, double value)
{
    s_array_separate (self);
    if (isnan (value))
        s_text_append (self, "NaN", 3);
    else if (isinf (value))
        s_text_append (self, value < 0 ? "-Infinity" : "Infinity", value < 0 ? 9 : 8);
    else {
        char text[32];
        int size = snprintf (text, sizeof (text), "%.17g", value);
        s_text_append (self, text, (size_t)size);
    }
}

static void
s_array_null (s_text_t *self)
{
    s_array_separate (self);
    s_text_append (self, "NULL", 4);
}

//  Quoted element: the value comes from outside (a device's readingId), so
//  quotes and backslashes are escaped and nothing in it can end the element.
static void
s_array_string (s_text_t *self, const char *value)
{
    s_array_separate (self);
    size_t size = strlen (value);
    s_text_reserve (self, 2 * size + 2);
    char *out = self->data + self->size;
    *out++ = '"';
    for (size_t index = 0; index < size; index++) {
        if (value[index] == '"' || value[index] == '\\')
            *out++ = '\\';
        *out++ = value[index];
    }
    *out++ = '"';
    self->size = (size_t)(out - self->data);
    self->data[self->size] = 0;
}

static void
s_copy_u16 (s_text_t *self, uint16_t value)
{
    uint8_t bytes[2] = {(uint8_t)(value >> 8), (uint8_t)value};
    s_text_append (self, bytes, 2);
}

static void
s_copy_u32 (s_text_t *self, uint32_t value)
{
    uint8_t bytes[4] = {(uint8_t)(value >> 24), (uint8_t)(value >> 16), (uint8_t)(value >> 8),
                        (uint8_t)value};
    s_text_append (self, bytes, 4);
}

static void
s_copy_u64 (s_text_t *self, uint64_t value)
{
    s_copy_u32 (self, (uint32_t)(value >> 32));
    s_copy_u32 (self, (uint32_t)value);
}

//  A field of a binary COPY tuple: 32-bit length, then the value.
static void
s_copy_int64 (s_text_t *self, int64_t value)
{
    s_copy_u32 (self, 8);
    s_copy_u64 (self, (uint64_t)value);
}

static void
s_copy_double (s_text_t *self, double value)
{
    uint64_t bits;
    memcpy (&bits, &value, sizeof (bits));
    s_copy_u32 (self, 8);
    s_copy_u64 (self, bits);
}

static int
s_hex (char digit)
{
    if (digit >= '0' && digit <= '9')
        return digit - '0';
    if (digit >= 'a' && digit <= 'f')
        return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F')
        return digit - 'A' + 10;
    return -1;
}

//  Parses canonical uuid text (8-4-4-4-12 hex digits) into 16 bytes;
//  bytes may be NULL to only check. 0 or -1.
static int
s_uuid_parse (const char *text, uint8_t *bytes)
{
    if (strlen (text) != PROTO_UUID_LEN)
        return -1;
    size_t out = 0;
    for (size_t index = 0; index < PROTO_UUID_LEN; index += 2) {
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (text[index] != '-')
                return -1;
            index++;
        }
        int high = s_hex (text[index]);
        int low = s_hex (text[index + 1]);
        if (high < 0 || low < 0)
            return -1;
        if (bytes)
            bytes[out] = (uint8_t)(high << 4 | low);
        out++;
    }
    return 0;
}

static void
s_pending_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

//  key_index: a reading's idempotency key is (device, key); FNV-1a.
static size_t
s_reading_key_hash (const void *item)
{
    const proto_reading_t *reading = (const proto_reading_t *)item;
    uint64_t hash = 14695981039346656037ULL ^ (uint64_t)reading->device;
    for (const unsigned char *cursor = (const unsigned char *)reading->key; *cursor; cursor++)
        hash = (hash ^ *cursor) * 1099511628211ULL;
    return (size_t)hash;
}

static int
s_reading_key_compare (const void *item1, const void *item2)
{
    const proto_reading_t *one = (const proto_reading_t *)item1;
    const proto_reading_t *two = (const proto_reading_t *)item2;
    return one->device != two->device ? 1 : strcmp (one->key, two->key);
}

//  --------------------------------------------------------------------------
//  Create a batch of at most capacity rows

store_batch_t *
store_batch_new (size_t capacity)
{
    assert (capacity > 0);
    store_batch_t *self = (store_batch_t *)zmalloc (sizeof (store_batch_t));
    self->capacity = capacity;
    self->rows = (s_row_t *)calloc (capacity, sizeof (s_row_t));
    self->keyed = (size_t *)calloc (capacity, sizeof (size_t));
    self->unkeyed = (size_t *)calloc (capacity, sizeof (size_t));
    self->ports = (s_port_t *)calloc (capacity, sizeof (s_port_t));
    self->episodes = (size_t *)calloc (capacity, sizeof (size_t));
    self->ranges = (s_range_t *)calloc (capacity, sizeof (s_range_t));
    self->index = zhashx_new ();
    self->key_index = zhashx_new ();
    self->port_index = zhashx_new ();
    self->pending = zhashx_new ();
    self->queue = zlistx_new ();
    if (self->pending)
        zhashx_set_destructor (self->pending, s_pending_destroy);
    //  The per-row indexes point into the rows (alive while planned): no
    //  copy of a key, no allocation per row.
    if (self->key_index) {
        zhashx_set_key_hasher (self->key_index, s_reading_key_hash);
        zhashx_set_key_comparator (self->key_index, s_reading_key_compare);
        zhashx_set_key_duplicator (self->key_index, NULL);
        zhashx_set_key_destructor (self->key_index, NULL);
    }
    if (self->port_index) {
        zhashx_set_key_duplicator (self->port_index, NULL);
        zhashx_set_key_destructor (self->port_index, NULL);
    }
    if (!self->rows || !self->keyed || !self->unkeyed || !self->ports || !self->episodes ||
        !self->ranges || !self->index || !self->key_index || !self->port_index || !self->pending ||
        !self->queue) {
        store_batch_destroy (&self);
        return NULL;
    }
    return self;
}

//  --------------------------------------------------------------------------
//  Destroy the batch; nullifies the caller's reference

void
store_batch_destroy (store_batch_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_batch_t *self = *self_p;
        for (size_t index = 0; index < S_BUFFERS; index++)
            free (self->buffers[index].data);
        free (self->copy.data);
        free (self->keys_copy.data);
        zhashx_destroy (&self->index);
        zhashx_destroy (&self->key_index);
        zhashx_destroy (&self->port_index);
        zlistx_destroy (&self->queue);
        zhashx_destroy (&self->pending);
        free (self->writes);
        free (self->rows);
        free (self->keyed);
        free (self->unkeyed);
        free (self->ports);
        free (self->episodes);
        free (self->ranges);
        free (self);
        *self_p = NULL;
    }
}

void
store_batch_reset (store_batch_t *self)
{
    assert (self);
    self->size = 0;
    self->lo = self->hi = 0;
    self->keyed_count = self->unkeyed_count = 0;
    self->port_count = self->episode_count = 0;
    self->write_count = self->deferred_count = 0;
}

size_t
store_batch_size (store_batch_t *self)
{
    assert (self);
    return self->size;
}

size_t
store_batch_capacity (store_batch_t *self)
{
    assert (self);
    return self->capacity;
}

//  --------------------------------------------------------------------------
//  Append a verdict; a port that is not a uuid is rejected at once

int
store_batch_add (store_batch_t *self, const proto_verdict_t *verdict)
{
    assert (self);
    assert (verdict);
    if (self->size == self->capacity)
        return -1;
    s_row_t *row = &self->rows[self->size];
    memset (row, 0, sizeof (*row));
    row->verdict = *verdict;
    row->first = self->size;
    row->ack.request = verdict->reading.request;
    row->ack.code = PROTO_ACK_RETRY;
    row->ack.ts = verdict->reading.ts;
    row->ack.status = verdict->status;
    //  Times outside 1970..9999 are refused here: PostgreSQL would refuse
    //  some, and the COPY conversion must not overflow on any.
    const int64_t ts_max = INT64_C (253402300799999);
    bool times_ok = verdict->reading.ts >= 0 && verdict->reading.ts <= ts_max;
    if (verdict->has_episode)
        times_ok = times_ok && verdict->episode.start >= 0 && verdict->episode.start <= ts_max &&
                   verdict->episode.end >= 0 && verdict->episode.end <= ts_max;
    if (s_uuid_parse (verdict->reading.port, NULL) || !times_ok) {
        row->ack.code = PROTO_ACK_REJECTED;
        row->decided = true;
    }
    self->size++;
    return 0;
}

const proto_verdict_t *
store_batch_verdict (store_batch_t *self, size_t index)
{
    assert (self);
    assert (index < self->size);
    return &self->rows[index].verdict;
}

const proto_ack_t *
store_batch_ack (store_batch_t *self, size_t index)
{
    assert (self);
    assert (index < self->size);
    return &self->rows[index].ack;
}

bool
store_batch_decided (store_batch_t *self, size_t index)
{
    assert (self);
    assert (index < self->size);
    return self->rows[index].decided;
}

bool
store_batch_inserted (store_batch_t *self, size_t index)
{
    assert (self);
    assert (index < self->size);
    return self->rows[index].fresh;
}

//  --------------------------------------------------------------------------
//  Plan a write of the undecided rows in [lo, hi)

size_t
store_batch_plan (store_batch_t *self, size_t lo, size_t hi)
{
    assert (self);
    assert (lo <= hi && hi <= self->size);
    self->lo = lo;
    self->hi = hi;
    self->keyed_count = self->unkeyed_count = 0;
    self->port_count = self->episode_count = 0;
    self->write_count = self->deferred_count = 0;
    size_t open = 0;
    char key[PROTO_UUID_LEN + 24];

    //  Repeated keys: the first occurrence is written, the others answer
    //  with its id. The device is part of the key: keys are per device.
    zhashx_purge (self->key_index);
    for (size_t index = lo; index < hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided)
            continue;
        open++;
        row->fresh = false;
        row->first = index;
        row->ack.id = 0;
        row->ack.ts = row->verdict.reading.ts;
        if (row->verdict.no_reading)
            continue; //  no readings row, no id
        if (*row->verdict.reading.key == 0) {
            self->unkeyed[self->unkeyed_count++] = index;
            continue;
        }
        void *slot = zhashx_lookup (self->key_index, &row->verdict.reading);
        if (slot)
            row->first = (size_t)(uintptr_t)slot - 1;
        else {
            zhashx_insert (self->key_index, &row->verdict.reading, (void *)(uintptr_t)(index + 1));
            self->keyed[self->keyed_count++] = index;
        }
    }
    //  Ports: the last verdict decides the status; the last change of
    //  status, if the range has one, says since when.
    zhashx_purge (self->port_index);
    for (size_t index = lo; index < hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided)
            continue;
        s_port_t *port;
        void *slot = zhashx_lookup (self->port_index, row->verdict.reading.port);
        if (slot)
            port = &self->ports[(size_t)(uintptr_t)slot - 1];
        else {
            port = &self->ports[self->port_count++];
            port->changed = port->reading = SIZE_MAX;
            port->urgent = port->deferred = false;
            zhashx_insert (self->port_index, row->verdict.reading.port,
                           (void *)(uintptr_t)self->port_count);
        }
        port->last = index;
        if (row->verdict.status != row->verdict.previous &&
            row->verdict.status != PROTO_STATUS_UNKNOWN) {
            port->changed = index;
            port->urgent = true;
        }
        if (row->verdict.no_reading)
            port->urgent = true;
        else
            port->reading = index;
    }
    //  Episodes: each update carries the episode's totals so far, so only
    //  the last one per (port, start) needs writing.
    zhashx_purge (self->index);
    for (size_t index = lo; index < hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided || !row->verdict.has_episode)
            continue;
        snprintf (key, sizeof (key), "%s/%" PRId64, row->verdict.reading.port,
                  row->verdict.episode.start);
        void *slot = zhashx_lookup (self->index, key);
        if (slot)
            self->episodes[(size_t)(uintptr_t)slot - 1] = index;
        else {
            self->episodes[self->episode_count++] = index;
            zhashx_insert (self->index, key, (void *)(uintptr_t)self->episode_count);
        }
    }
    return open;
}

size_t
store_batch_keyed_count (store_batch_t *self)
{
    assert (self);
    return self->keyed_count;
}

size_t
store_batch_keyed_row (store_batch_t *self, size_t n)
{
    assert (self);
    assert (n < self->keyed_count);
    return self->keyed[n];
}

size_t
store_batch_unkeyed_count (store_batch_t *self)
{
    assert (self);
    return self->unkeyed_count;
}

size_t
store_batch_unkeyed_row (store_batch_t *self, size_t n)
{
    assert (self);
    assert (n < self->unkeyed_count);
    return self->unkeyed[n];
}

//  --------------------------------------------------------------------------
//  Choose the port rows of this transaction

static s_write_t *
s_write_add (store_batch_t *self, s_pending_t *pending, size_t port)
{
    if (self->write_count == self->write_capacity) {
        size_t capacity = self->write_capacity ? self->write_capacity * 2 : 1024;
        s_write_t *writes = (s_write_t *)realloc (self->writes, capacity * sizeof (s_write_t));
        assert (writes); //  as zmalloc: no way on without memory
        self->writes = writes;
        self->write_capacity = capacity;
    }
    s_write_t *write = &self->writes[self->write_count++];
    memset (write, 0, sizeof (*write));
    write->pending = pending;
    write->port = port;
    write->changed = -1;
    if (pending && pending->dirty) {
        //  What waits in memory, unless the batch has newer
        write->status = pending->status;
        write->has_reading = pending->has_reading;
        write->ts = pending->ts;
        write->power = pending->power;
    }
    return write;
}

//  Memory of a port row; NULL if out of memory.
static s_pending_t *
s_pending_require (store_batch_t *self, const char *port)
{
    s_pending_t *pending = (s_pending_t *)zhashx_lookup (self->pending, port);
    if (!pending) {
        pending = (s_pending_t *)zmalloc (sizeof (s_pending_t));
        snprintf (pending->port, sizeof (pending->port), "%s", port);
        zhashx_insert (self->pending, port, pending);
    }
    return pending;
}

//  Fills write from the batch rows of port (the newest values win).
static void
s_write_fill (store_batch_t *self, s_write_t *write, const s_port_t *port)
{
    const proto_verdict_t *last = &self->rows[port->last].verdict;
    write->status = last->status;
    if (port->changed != SIZE_MAX)
        write->changed = self->rows[port->changed].verdict.reading.ts;
    if (port->reading != SIZE_MAX) {
        const proto_reading_t *reading = &self->rows[port->reading].verdict.reading;
        write->has_reading = true;
        write->ts = reading->ts;
        write->power = reading->power;
    }
}

size_t
store_batch_port_writes (store_batch_t *self, int64_t now_ms, bool flush)
{
    assert (self);
    self->now = now_ms;
    self->write_count = self->deferred_count = 0;
    for (size_t n = 0; n < self->port_count; n++) {
        s_port_t *port = &self->ports[n];
        const char *text = self->rows[port->last].verdict.reading.port;
        s_pending_t *pending = (s_pending_t *)zhashx_lookup (self->pending, text);
        port->deferred = !flush && !port->urgent && pending && pending->written &&
                         now_ms - pending->written < STORE_PORT_EVERY_MS;
        if (port->deferred)
            self->deferred_count++;
        else
            s_write_fill (self, s_write_add (self, pending, n), port);
    }
    //  Rows waiting from earlier batches, oldest first, while due. A port
    //  of this range is already handled above.
    for (s_pending_t *pending = (s_pending_t *)zlistx_first (self->queue); pending;
         pending = (s_pending_t *)zlistx_next (self->queue)) {
        if (!flush && pending->due > now_ms)
            break;
        if (pending->dirty && !zhashx_lookup (self->port_index, pending->port))
            s_write_add (self, pending, SIZE_MAX);
    }
    return self->write_count;
}

size_t
store_batch_port_count (store_batch_t *self)
{
    assert (self);
    return self->write_count;
}

size_t
store_batch_port_deferred (store_batch_t *self)
{
    assert (self);
    return self->deferred_count;
}

size_t
store_batch_port_waiting (store_batch_t *self)
{
    assert (self);
    size_t count = 0;
    for (s_pending_t *pending = (s_pending_t *)zhashx_first (self->pending); pending;
         pending = (s_pending_t *)zhashx_next (self->pending))
        count += pending->dirty;
    return count;
}

size_t
store_batch_episode_count (store_batch_t *self)
{
    assert (self);
    return self->episode_count;
}

void
store_batch_assign (store_batch_t *self, size_t index, int64_t id, int64_t ts, bool fresh)
{
    assert (self);
    assert (index >= self->lo && index < self->hi);
    s_row_t *row = &self->rows[index];
    row->ack.id = id;
    row->ack.ts = ts;
    row->fresh = fresh;
}

size_t
store_batch_fresh_count (store_batch_t *self)
{
    assert (self);
    size_t count = 0;
    for (size_t index = self->lo; index < self->hi; index++)
        if (!self->rows[index].decided && self->rows[index].fresh)
            count++;
    return count;
}

//  --------------------------------------------------------------------------
//  Parameter builders

void
store_batch_keys_params (store_batch_t *self, const char *params[STORE_KEYS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_KEYS;
    for (size_t column = 0; column < STORE_KEYS_PARAMS; column++)
        s_array_begin (&buffers[column]);
    for (size_t n = 0; n < self->keyed_count; n++) {
        const proto_reading_t *reading = &self->rows[self->keyed[n]].verdict.reading;
        s_array_int (&buffers[0], reading->device);
        s_array_string (&buffers[1], reading->key);
        s_array_int (&buffers[2], reading->ts);
        s_array_int (&buffers[3], self->rows[self->keyed[n]].ack.id);
    }
    for (size_t column = 0; column < STORE_KEYS_PARAMS; column++) {
        s_array_end (&buffers[column]);
        params[column] = buffers[column].data;
    }
}

void
store_batch_readings_params (store_batch_t *self, const char *params[STORE_READINGS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_READINGS;
    for (size_t column = 0; column < STORE_READINGS_PARAMS; column++)
        s_array_begin (&buffers[column]);
    for (size_t index = self->lo; index < self->hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided || !row->fresh)
            continue;
        const proto_reading_t *reading = &row->verdict.reading;
        s_array_int (&buffers[0], row->ack.id);
        s_array_string (&buffers[1], reading->port);
        s_array_int (&buffers[2], reading->ts);
        s_array_double (&buffers[3], reading->voltage);
        s_array_double (&buffers[4], reading->current);
        s_array_double (&buffers[5], reading->power);
        s_array_int (&buffers[6], row->verdict.status);
    }
    for (size_t column = 0; column < STORE_READINGS_PARAMS; column++) {
        s_array_end (&buffers[column]);
        params[column] = buffers[column].data;
    }
}

void
store_batch_ports_params (store_batch_t *self, const char *params[STORE_PORTS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_PORTS;
    for (size_t column = 0; column < STORE_PORTS_PARAMS; column++)
        s_array_begin (&buffers[column]);
    for (size_t n = 0; n < self->write_count; n++) {
        const s_write_t *write = &self->writes[n];
        s_array_string (&buffers[0],
                        write->port == SIZE_MAX
                            ? write->pending->port
                            : self->rows[self->ports[write->port].last].verdict.reading.port);
        //  NULL keeps what is stored: an unknown status is no status, a
        //  no-reading verdict has no reading time or power.
        if (write->status == PROTO_STATUS_UNKNOWN)
            s_array_null (&buffers[1]);
        else
            s_array_string (&buffers[1], proto_status_name (write->status));
        if (write->has_reading)
            s_array_int (&buffers[2], write->ts);
        else
            s_array_null (&buffers[2]);
        if (write->changed < 0)
            s_array_null (&buffers[3]);
        else
            s_array_int (&buffers[3], write->changed);
        if (write->has_reading)
            s_array_double (&buffers[4], write->power);
        else
            s_array_null (&buffers[4]);
    }
    for (size_t column = 0; column < STORE_PORTS_PARAMS; column++) {
        s_array_end (&buffers[column]);
        params[column] = buffers[column].data;
    }
}

void
store_batch_episodes_params (store_batch_t *self, const char *params[STORE_EPISODES_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_EPISODES;
    for (size_t column = 0; column < STORE_EPISODES_PARAMS; column++)
        s_array_begin (&buffers[column]);
    for (size_t n = 0; n < self->episode_count; n++) {
        const proto_verdict_t *verdict = &self->rows[self->episodes[n]].verdict;
        const proto_episode_t *episode = &verdict->episode;
        s_array_string (&buffers[0], verdict->reading.port);
        s_array_int (&buffers[1], verdict->reading.user);
        s_array_int (&buffers[2], episode->start);
        if (episode->end)
            s_array_int (&buffers[3], episode->end);
        else
            s_array_null (&buffers[3]);
        s_array_double (&buffers[4], episode->mean_watts);
        s_array_double (&buffers[5], episode->peak_watts);
        s_array_double (&buffers[6], episode->energy_wh);
        s_array_int (&buffers[7], episode->samples);
    }
    for (size_t column = 0; column < STORE_EPISODES_PARAMS; column++) {
        s_array_end (&buffers[column]);
        params[column] = buffers[column].data;
    }
}

//  --------------------------------------------------------------------------
//  Binary parameters: one-dimensional arrays without NULLs

//  Type oids (pg_type.h), which array_recv checks against the parameter's.
#define S_OID_INT2 21
#define S_OID_INT8 20
#define S_OID_TEXT 25
#define S_OID_FLOAT8 701
#define S_OID_TIMESTAMPTZ 1184
#define S_OID_UUID 2950

//  PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
#define S_POSTGRES_EPOCH_MS INT64_C (946684800000)

//  Header: dimensions, has-nulls flag, element type, then per dimension its
//  size and lower bound; the elements follow, each length and bytes.
static void
s_binary_begin (s_text_t *self, uint32_t oid, size_t count)
{
    self->size = 0;
    s_copy_u32 (self, 1);
    s_copy_u32 (self, 0);
    s_copy_u32 (self, oid);
    s_copy_u32 (self, (uint32_t)count);
    s_copy_u32 (self, 1);
}

static int
s_binary_length (const s_text_t *self)
{
    return (int)self->size;
}

void
store_batch_keys_binary (store_batch_t *self, const char *params[STORE_KEYS_PARAMS],
                         int lengths[STORE_KEYS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_KEYS;
    s_binary_begin (&buffers[0], S_OID_INT8, self->keyed_count);
    s_binary_begin (&buffers[1], S_OID_TEXT, self->keyed_count);
    s_binary_begin (&buffers[2], S_OID_TIMESTAMPTZ, self->keyed_count);
    s_binary_begin (&buffers[3], S_OID_INT8, self->keyed_count);
    for (size_t n = 0; n < self->keyed_count; n++) {
        const s_row_t *row = &self->rows[self->keyed[n]];
        const proto_reading_t *reading = &row->verdict.reading;
        //  text in binary is its bytes; the server checks the encoding
        //  (invalid UTF-8: a data error, the row is rejected alone).
        size_t length = strnlen (reading->key, PROTO_KEY_MAX);
        s_copy_int64 (&buffers[0], reading->device);
        s_copy_u32 (&buffers[1], (uint32_t)length);
        s_text_append (&buffers[1], reading->key, length);
        s_copy_int64 (&buffers[2], (reading->ts - S_POSTGRES_EPOCH_MS) * 1000);
        s_copy_int64 (&buffers[3], row->ack.id);
    }
    for (size_t column = 0; column < STORE_KEYS_PARAMS; column++) {
        params[column] = buffers[column].data;
        lengths[column] = s_binary_length (&buffers[column]);
    }
}

void
store_batch_readings_binary (store_batch_t *self, const char *params[STORE_READINGS_PARAMS],
                             int lengths[STORE_READINGS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_READINGS;
    size_t count = store_batch_fresh_count (self);
    s_binary_begin (&buffers[0], S_OID_INT8, count);
    s_binary_begin (&buffers[1], S_OID_UUID, count);
    s_binary_begin (&buffers[2], S_OID_TIMESTAMPTZ, count);
    s_binary_begin (&buffers[3], S_OID_FLOAT8, count);
    s_binary_begin (&buffers[4], S_OID_FLOAT8, count);
    s_binary_begin (&buffers[5], S_OID_FLOAT8, count);
    s_binary_begin (&buffers[6], S_OID_INT2, count);
    for (size_t index = self->lo; index < self->hi; index++) {
        const s_row_t *row = &self->rows[index];
        if (row->decided || !row->fresh)
            continue;
        const proto_reading_t *reading = &row->verdict.reading;
        uint8_t uuid[16];
        int rc = s_uuid_parse (reading->port, uuid);
        assert (rc == 0); //  checked in store_batch_add
        s_copy_int64 (&buffers[0], row->ack.id);
        s_copy_u32 (&buffers[1], 16);
        s_text_append (&buffers[1], uuid, 16);
        s_copy_int64 (&buffers[2], (reading->ts - S_POSTGRES_EPOCH_MS) * 1000);
        s_copy_double (&buffers[3], reading->voltage);
        s_copy_double (&buffers[4], reading->current);
        s_copy_double (&buffers[5], reading->power);
        s_copy_u32 (&buffers[6], 2);
        s_copy_u16 (&buffers[6], row->verdict.status);
    }
    for (size_t column = 0; column < STORE_READINGS_PARAMS; column++) {
        params[column] = buffers[column].data;
        lengths[column] = s_binary_length (&buffers[column]);
    }
}

//  --------------------------------------------------------------------------
//  Marks of late readings, as ranges of minutes per port

void
store_batch_mark (store_batch_t *self, size_t index, int64_t minute_ms)
{
    assert (self);
    assert (index < self->size);
    self->rows[index].marked = true;
    self->rows[index].mark = minute_ms - ((minute_ms % 60000) + 60000) % 60000;
}

//  Appends the range of port (text, as in the row) to the marks' buffers.
static void
s_mark_range (s_text_t *buffers, const char *port, const s_range_t *range)
{
    uint8_t uuid[16];
    int rc = s_uuid_parse (port, uuid);
    assert (rc == 0); //  checked in store_batch_add
    s_copy_u32 (&buffers[0], 16);
    s_text_append (&buffers[0], uuid, 16);
    s_copy_int64 (&buffers[1], (range->first - S_POSTGRES_EPOCH_MS) * 1000);
    s_copy_int64 (&buffers[2], (range->last - S_POSTGRES_EPOCH_MS) * 1000);
}

size_t
store_batch_marks_binary (store_batch_t *self, const char *params[STORE_MARKS_PARAMS],
                          int lengths[STORE_MARKS_PARAMS])
{
    assert (self);
    s_text_t *buffers = self->buffers + S_MARKS;
    //  Each port's open range grows while its marks come within the join
    //  distance of it (a backfill's come in time order: one range per
    //  port); a mark further away closes it and opens the next. The count
    //  goes into the array headers at the end.
    for (size_t column = 0; column < STORE_MARKS_PARAMS; column++)
        s_binary_begin (&buffers[column], column ? S_OID_TIMESTAMPTZ : S_OID_UUID, 0);
    for (size_t slot = 0; slot < self->port_count; slot++)
        self->ranges[slot].open = false;
    size_t count = 0;
    for (size_t index = self->lo; index < self->hi; index++) {
        const s_row_t *row = &self->rows[index];
        if (row->decided || !row->marked)
            continue;
        void *slot = zhashx_lookup (self->port_index, row->verdict.reading.port);
        assert (slot); //  every undecided row of the range has its port's
        s_range_t *range = &self->ranges[(size_t)(uintptr_t)slot - 1];
        if (range->open && row->mark >= range->first - STORE_MARKS_JOIN_MS &&
            row->mark <= range->last + STORE_MARKS_JOIN_MS) {
            range->first = row->mark < range->first ? row->mark : range->first;
            range->last = row->mark > range->last ? row->mark : range->last;
            continue;
        }
        if (range->open) {
            s_mark_range (buffers, row->verdict.reading.port, range);
            count++;
        }
        *range = (s_range_t){true, row->mark, row->mark};
    }
    for (size_t slot = 0; slot < self->port_count; slot++)
        if (self->ranges[slot].open) {
            const s_row_t *row = &self->rows[self->ports[slot].last];
            s_mark_range (buffers, row->verdict.reading.port, &self->ranges[slot]);
            count++;
        }
    for (size_t column = 0; column < STORE_MARKS_PARAMS; column++) {
        //  The element count sits after dimensions, flags and type.
        uint8_t *header = (uint8_t *)buffers[column].data + 12;
        header[0] = (uint8_t)(count >> 24);
        header[1] = (uint8_t)(count >> 16);
        header[2] = (uint8_t)(count >> 8);
        header[3] = (uint8_t)count;
        params[column] = buffers[column].data;
        lengths[column] = s_binary_length (&buffers[column]);
    }
    return count;
}

//  --------------------------------------------------------------------------
//  Binary COPY stream of the fresh readings (PostgreSQL "PGCOPY" format)

//  Starts copy over with the binary COPY header.
static void
s_copy_start (s_text_t *copy)
{
    copy->size = 0;
    s_text_append (copy, "PGCOPY\n\377\r\n\0", 11);
    s_copy_u32 (copy, 0); //  flags
    s_copy_u32 (copy, 0); //  header extension length
}

const uint8_t *
store_batch_copy_data (store_batch_t *self, size_t *size)
{
    assert (self);
    assert (size);
    s_text_t *copy = &self->copy;
    s_copy_start (copy);
    for (size_t index = self->lo; index < self->hi; index++) {
        const s_row_t *row = &self->rows[index];
        if (row->decided || !row->fresh)
            continue;
        const proto_reading_t *reading = &row->verdict.reading;
        uint8_t uuid[16];
        int rc = s_uuid_parse (reading->port, uuid);
        assert (rc == 0); //  checked in store_batch_add
        s_copy_u16 (copy, STORE_READINGS_PARAMS);
        s_copy_int64 (copy, row->ack.id);
        s_copy_u32 (copy, 16);
        s_text_append (copy, uuid, 16);
        s_copy_int64 (copy, (reading->ts - S_POSTGRES_EPOCH_MS) * 1000);
        s_copy_double (copy, reading->voltage);
        s_copy_double (copy, reading->current);
        s_copy_double (copy, reading->power);
        s_copy_u32 (copy, 2);
        s_copy_u16 (copy, row->verdict.status);
    }
    s_copy_u16 (copy, 0xFFFF); //  trailer
    *size = copy->size;
    return (const uint8_t *)copy->data;
}

const uint8_t *
store_batch_keys_copy_data (store_batch_t *self, size_t *size)
{
    assert (self);
    assert (size);
    s_text_t *copy = &self->keys_copy;
    s_copy_start (copy);
    for (size_t n = 0; n < self->keyed_count; n++) {
        const s_row_t *row = &self->rows[self->keyed[n]];
        const proto_reading_t *reading = &row->verdict.reading;
        //  text in binary is its bytes; the server checks the encoding
        //  (invalid UTF-8: a data error, the row is rejected alone).
        size_t length = strnlen (reading->key, PROTO_KEY_MAX);
        s_copy_u16 (copy, STORE_KEYS_PARAMS);
        s_copy_int64 (copy, reading->device);
        s_copy_u32 (copy, (uint32_t)length);
        s_text_append (copy, reading->key, length);
        s_copy_int64 (copy, row->ack.id);
        s_copy_int64 (copy, (reading->ts - S_POSTGRES_EPOCH_MS) * 1000);
    }
    s_copy_u16 (copy, 0xFFFF); //  trailer
    *size = copy->size;
    return (const uint8_t *)copy->data;
}

//  --------------------------------------------------------------------------
//  After COMMIT: ack every undecided row of the planned range OK

void
store_batch_commit (store_batch_t *self)
{
    assert (self);
    for (size_t index = self->lo; index < self->hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided)
            continue;
        if (row->first != index) {
            row->ack.id = self->rows[row->first].ack.id;
            row->ack.ts = self->rows[row->first].ack.ts;
        }
        row->ack.code = PROTO_ACK_OK;
        row->decided = true;
    }
    //  Port rows written: clean. Deferred ones: their newest values wait,
    //  queued for a second after now.
    for (size_t n = 0; n < self->write_count; n++) {
        s_write_t *write = &self->writes[n];
        s_pending_t *pending = write->pending;
        if (!pending)
            pending = s_pending_require (
                self, self->rows[self->ports[write->port].last].verdict.reading.port);
        pending->dirty = false;
        pending->written = self->now ? self->now : 1;
    }
    for (size_t n = 0; n < self->port_count; n++) {
        s_port_t *port = &self->ports[n];
        if (!port->deferred)
            continue;
        s_pending_t *pending =
            s_pending_require (self, self->rows[port->last].verdict.reading.port);
        s_write_t write;
        memset (&write, 0, sizeof (write));
        s_write_fill (self, &write, port);
        if (!pending->dirty)
            pending->has_reading = false;
        pending->status = write.status;
        if (write.has_reading) {
            pending->has_reading = true;
            pending->ts = write.ts;
            pending->power = write.power;
        }
        pending->dirty = true;
        if (!pending->queued) {
            pending->queued = true;
            pending->due = self->now + STORE_PORT_EVERY_MS;
            zlistx_add_end (self->queue, pending);
        }
    }
    //  Written rows leave the queue's head; the rest keep their place.
    s_pending_t *head;
    while ((head = (s_pending_t *)zlistx_first (self->queue)) && !head->dirty) {
        head->queued = false;
        zlistx_detach (self->queue, NULL);
    }
    self->write_count = self->deferred_count = 0;
}

void
store_batch_decide (store_batch_t *self, size_t lo, size_t hi, proto_ack_code_t code)
{
    assert (self);
    assert (lo <= hi && hi <= self->size);
    assert (code != PROTO_ACK_OK); //  OK only through store_batch_commit
    for (size_t index = lo; index < hi; index++) {
        s_row_t *row = &self->rows[index];
        if (row->decided)
            continue;
        row->ack.code = code;
        row->ack.id = 0;
        row->ack.ts = row->verdict.reading.ts;
        row->decided = true;
    }
}

//  --------------------------------------------------------------------------
//  Iterate acks grouped per gateway

size_t
store_batch_group (store_batch_t *self, size_t *cursor, const char **gateway, proto_ack_t *acks,
                   size_t max)
{
    assert (self);
    assert (cursor);
    assert (gateway);
    assert (max > 0);
    if (*cursor == 0)
        for (size_t index = 0; index < self->size; index++)
            self->rows[index].grouped = self->rows[index].verdict.no_reading; //  no ack
    while (*cursor < self->size && self->rows[*cursor].grouped)
        (*cursor)++;
    if (*cursor >= self->size)
        return 0;
    //  Few gateways per batch, so scanning once per gateway is cheap.
    const char *name = self->rows[*cursor].verdict.reading.gateway;
    size_t count = 0;
    for (size_t index = *cursor; index < self->size && count < max; index++) {
        s_row_t *row = &self->rows[index];
        if (!row->grouped && streq (row->verdict.reading.gateway, name)) {
            acks[count++] = row->ack;
            row->grouped = true;
        }
    }
    //  The row at the cursor was taken, so the cursor moves and the next
    //  call does not start over.
    while (*cursor < self->size && self->rows[*cursor].grouped)
        (*cursor)++;
    *gateway = name;
    return count;
}

//  --------------------------------------------------------------------------
//  Self test

static void
s_verdict (proto_verdict_t *verdict, const char *gateway, const char *port, const char *key,
           int64_t ts, uint8_t status, uint8_t previous)
{
    memset (verdict, 0, sizeof (*verdict));
    snprintf (verdict->reading.gateway, sizeof (verdict->reading.gateway), "%s", gateway);
    snprintf (verdict->reading.port, sizeof (verdict->reading.port), "%s", port);
    snprintf (verdict->reading.key, sizeof (verdict->reading.key), "%s", key);
    verdict->reading.request = (uint64_t)ts;
    verdict->reading.user = 7;
    verdict->reading.device = 9;
    verdict->reading.ts = ts;
    verdict->reading.voltage = 230.1;
    verdict->reading.current = 0.1;
    verdict->reading.power = 23.01;
    verdict->status = status;
    verdict->previous = previous;
}

//  Plans and commits all of batch at now; returns the ports params.
static void
s_commit_at (store_batch_t *batch, int64_t now, size_t writes, const char *params[])
{
    assert (store_batch_plan (batch, 0, store_batch_size (batch)) == store_batch_size (batch));
    size_t count = store_batch_port_writes (batch, now, false);
    if (count != writes)
        fprintf (stderr, "store_batch_test: %zu port rows at %lld, expected %zu\n", count,
                 (long long)now, writes);
    assert (count == writes);
    store_batch_ports_params (batch, params);
    store_batch_commit (batch);
    store_batch_reset (batch);
}

//  Port rows: at once on a status change or without a reading, otherwise
//  at most once a second, the newest values waiting in memory.
static void
s_port_rows_test (bool verbose)
{
    const char *port_a = "0b9f4c1e-3d2a-4c5b-8e7f-112233445566";
    const char *port_b = "1c0a5d2f-4e3b-4d6c-9f80-223344556677";
    store_batch_t *batch = store_batch_new (8);
    proto_verdict_t verdict;
    const char *ports[STORE_PORTS_PARAMS];

    //  First sight of a port: written
    s_verdict (&verdict, "gw1", port_a, "", 1000, PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    s_commit_at (batch, 10000, 1, ports);
    //  Again 500 ms later, no change: waits
    s_verdict (&verdict, "gw1", port_a, "", 2000, PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    verdict.reading.power = 42.5;
    store_batch_add (batch, &verdict);
    assert (store_batch_plan (batch, 0, 1) == 1);
    assert (store_batch_port_writes (batch, 10500, false) == 0);
    assert (store_batch_port_deferred (batch) == 1);
    store_batch_commit (batch);
    store_batch_reset (batch);
    assert (store_batch_port_waiting (batch) == 1);
    //  A batch of another port before the second is up: A still waits
    s_verdict (&verdict, "gw1", port_b, "", 2100, PROTO_STATUS_OFF, PROTO_STATUS_OFF);
    store_batch_add (batch, &verdict);
    s_commit_at (batch, 11000, 1, ports);
    assert (store_batch_port_waiting (batch) == 1);
    //  B again within its second (waits); A's second is up: A goes out
    //  with B's batch, with the values that waited
    s_verdict (&verdict, "gw1", port_b, "", 2200, PROTO_STATUS_OFF, PROTO_STATUS_OFF);
    store_batch_add (batch, &verdict);
    s_commit_at (batch, 11500, 1, ports);
    if (verbose)
        printf ("waited: %s %s %s %s %s\n", ports[0], ports[1], ports[2], ports[3], ports[4]);
    char expected[128];
    snprintf (expected, sizeof (expected), "{\"%s\"}", port_a);
    assert (streq (ports[0], expected));
    assert (streq (ports[1], "{\"active\"}"));
    assert (streq (ports[2], "{2000}"));
    assert (streq (ports[3], "{NULL}"));
    assert (streq (ports[4], "{42.5}"));
    assert (store_batch_port_waiting (batch) == 1); //  B now
    //  A status change is written at once, however recent the last write
    s_verdict (&verdict, "gw1", port_a, "", 2300, PROTO_STATUS_IDLE, PROTO_STATUS_ACTIVE);
    store_batch_add (batch, &verdict);
    s_commit_at (batch, 11600, 1, ports);
    assert (streq (ports[1], "{\"idle\"}"));
    assert (streq (ports[3], "{2300}"));
    //  So is a verdict without a reading, which has no reading time or
    //  power of its own: those come from what waits (B's 2200), and it has
    //  no ack and no readings row
    s_verdict (&verdict, PROTO_GATEWAY_NONE, port_b, "", 2200, PROTO_STATUS_OFFLINE,
               PROTO_STATUS_OFF);
    verdict.no_reading = true;
    store_batch_add (batch, &verdict);
    s_verdict (&verdict, "gw1", port_a, "k9", 2400, PROTO_STATUS_IDLE, PROTO_STATUS_IDLE);
    store_batch_add (batch, &verdict);
    assert (store_batch_plan (batch, 0, 2) == 2);
    assert (store_batch_keyed_count (batch) == 1 && store_batch_unkeyed_count (batch) == 0);
    assert (store_batch_port_writes (batch, 11700, false) == 1); //  A waits
    store_batch_ports_params (batch, ports);
    snprintf (expected, sizeof (expected), "{\"%s\"}", port_b);
    assert (streq (ports[0], expected));
    assert (streq (ports[1], "{\"offline\"}"));
    assert (streq (ports[2], "{2200}"));
    assert (streq (ports[3], "{2200}"));
    store_batch_assign (batch, 1, 77, 2400, true);
    assert (store_batch_fresh_count (batch) == 1);
    store_batch_commit (batch);
    proto_ack_t acks[8];
    const char *gateway;
    size_t cursor = 0;
    assert (store_batch_group (batch, &cursor, &gateway, acks, 8) == 1);
    assert (streq (gateway, "gw1") && acks[0].id == 77);
    assert (store_batch_group (batch, &cursor, &gateway, acks, 8) == 0);
    store_batch_reset (batch);
    //  A failed attempt (no commit) leaves waiting rows waiting
    assert (store_batch_port_waiting (batch) == 1);
    store_batch_plan (batch, 0, 0);
    assert (store_batch_port_writes (batch, 12000, false) == 0); //  A due at 12700
    assert (store_batch_port_writes (batch, 12700, false) == 1);
    store_batch_reset (batch);
    assert (store_batch_port_waiting (batch) == 1);
    //  flush takes everything waiting
    store_batch_plan (batch, 0, 0);
    assert (store_batch_port_writes (batch, 12100, true) == 1);
    store_batch_commit (batch);
    assert (store_batch_port_waiting (batch) == 0);
    store_batch_plan (batch, 0, 0);
    assert (store_batch_port_writes (batch, 99999, true) == 0);
    store_batch_destroy (&batch);
}

//  A binary array's element count and its elements' values (8 bytes
//  each: timestamptz, or the first 8 bytes of a uuid), as read back.
static size_t
s_array_values (const char *data, int length, int64_t *values, size_t max)
{
    const uint8_t *bytes = (const uint8_t *)data;
    assert (length >= 20);
    size_t count = ((size_t)bytes[12] << 24) | ((size_t)bytes[13] << 16) |
                   ((size_t)bytes[14] << 8) | bytes[15];
    size_t at = 20;
    for (size_t index = 0; index < count && index < max; index++) {
        size_t size = ((size_t)bytes[at] << 24) | ((size_t)bytes[at + 1] << 16) |
                      ((size_t)bytes[at + 2] << 8) | bytes[at + 3];
        uint64_t value = 0;
        for (size_t byte = 0; byte < 8; byte++)
            value = (value << 8) | bytes[at + 4 + byte];
        values[index] = (int64_t)value;
        at += 4 + size;
    }
    assert (at == (size_t)length);
    return count;
}

//  Marks: ranges per port and run of minutes (within STORE_MARKS_JOIN_MS),
//  only of the planned range's undecided rows.
static void
s_marks_test (bool verbose)
{
    (void)verbose;
    const char *port_a = "0b9f4c1e-3d2a-4c5b-8e7f-112233445566";
    const char *port_b = "1c0a5d2f-4e3b-4d6c-9f80-223344556677";
    const int64_t minute = 60000;
    const int64_t base = INT64_C (1767225600000); //  2026-01-01, a whole minute
    store_batch_t *batch = store_batch_new (8);
    proto_verdict_t verdict;
    //  a: minutes 0, 1, 3 (+ 25 s), then 20 (far); b: minute 1; an
    //  unmarked row; a row of a outside the planned range.
    const int64_t times[7] = {0, 60000, 205000, 20 * 60000, 61000, 70000, 2 * 60000};
    const char *ports[7] = {port_a, port_a, port_a, port_a, port_b, port_b, port_a};
    for (size_t index = 0; index < 7; index++) {
        s_verdict (&verdict, "gw1", ports[index], "", base + times[index], 1, 1);
        assert (store_batch_add (batch, &verdict) == 0);
        if (index != 5)
            store_batch_mark (batch, index, base + times[index]);
    }
    const char *params[STORE_MARKS_PARAMS];
    int lengths[STORE_MARKS_PARAMS];
    assert (store_batch_plan (batch, 0, 6) == 6);
    assert (store_batch_marks_binary (batch, params, lengths) == 3);
    int64_t uuids[3], firsts[3], lasts[3];
    assert (s_array_values (params[0], lengths[0], uuids, 3) == 3);
    assert (s_array_values (params[1], lengths[1], firsts, 3) == 3);
    assert (s_array_values (params[2], lengths[2], lasts, 3) == 3);
    int64_t a = (int64_t)UINT64_C (0x0b9f4c1e3d2a4c5b), b = (int64_t)UINT64_C (0x1c0a5d2f4e3b4d6c);
    int found = 0;
    for (size_t index = 0; index < 3; index++) {
        //  microseconds since 2000 back to minutes since base
        int64_t first = (firsts[index] / 1000 + INT64_C (946684800000) - base) / minute;
        int64_t last = (lasts[index] / 1000 + INT64_C (946684800000) - base) / minute;
        if (uuids[index] == a && first == 0 && last == 3)
            found |= 1;
        else if (uuids[index] == a && first == 20 && last == 20)
            found |= 2;
        else if (uuids[index] == b && first == 1 && last == 1)
            found |= 4;
    }
    assert (found == 7);
    //  Decided rows (a split's refused half) take their marks along.
    store_batch_decide (batch, 0, 4, PROTO_ACK_REJECTED);
    assert (store_batch_plan (batch, 0, 7) == 3);
    assert (store_batch_marks_binary (batch, params, lengths) == 2); //  b 1, a 2
    store_batch_reset (batch);
    s_verdict (&verdict, "gw1", port_a, "", base, 1, 1);
    store_batch_add (batch, &verdict);
    assert (store_batch_plan (batch, 0, 1) == 1);
    assert (store_batch_marks_binary (batch, params, lengths) == 0); //  a new row: unmarked
    store_batch_destroy (&batch);
}

void
store_batch_test (bool verbose)
{
    printf (" * store_batch: ");
    if (verbose)
        printf ("\n");

    const char *port_a = "0b9f4c1e-3d2a-4c5b-8e7f-112233445566";
    const char *port_b = "0B9F4C1E-3D2A-4C5B-8E7F-AABBCCDDEEFF";
    store_batch_t *batch = store_batch_new (8);
    assert (batch);
    assert (store_batch_capacity (batch) == 8);

    //  Rows: 0 a keyed k1; 1 b unkeyed; 2 a keyed k1 again (repeat);
    //  3 bad port; 4 b keyed with quotes; 5 a unkeyed, other gateway
    proto_verdict_t verdict;
    s_verdict (&verdict, "gw1", port_a, "k1", 1000, PROTO_STATUS_IDLE, PROTO_STATUS_ACTIVE);
    assert (store_batch_add (batch, &verdict) == 0);
    s_verdict (&verdict, "gw1", port_b, "", 1001, PROTO_STATUS_ACTIVE, PROTO_STATUS_ACTIVE);
    assert (store_batch_add (batch, &verdict) == 0);
    s_verdict (&verdict, "gw2", port_a, "k1", 1002, PROTO_STATUS_IDLE, PROTO_STATUS_IDLE);
    verdict.has_episode = true;
    verdict.episode.start = 900;
    verdict.episode.samples = 1;
    assert (store_batch_add (batch, &verdict) == 0);
    s_verdict (&verdict, "gw1", "0b9f4c1e-3d2a-4c5b-8e7f-11223344556g", "", 1003, 1, 1);
    assert (store_batch_add (batch, &verdict) == 0);
    s_verdict (&verdict, "gw1", port_b, "a\"b\\c,}", 1004, PROTO_STATUS_UNKNOWN, 0);
    assert (store_batch_add (batch, &verdict) == 0);
    s_verdict (&verdict, "gw2", port_a, "", 1005, PROTO_STATUS_PHANTOM, PROTO_STATUS_IDLE);
    verdict.has_episode = true;
    verdict.episode.start = 900;
    verdict.episode.end = 1005;
    verdict.episode.samples = 2;
    verdict.episode.mean_watts = 0.1;
    assert (store_batch_add (batch, &verdict) == 0);
    assert (store_batch_size (batch) == 6);
    assert (store_batch_decided (batch, 3));
    assert (store_batch_ack (batch, 3)->code == PROTO_ACK_REJECTED);
    assert (!store_batch_decided (batch, 0));

    assert (store_batch_plan (batch, 0, 6) == 5);
    assert (store_batch_keyed_count (batch) == 2);
    assert (store_batch_keyed_row (batch, 0) == 0);
    assert (store_batch_keyed_row (batch, 1) == 4);
    assert (store_batch_unkeyed_count (batch) == 2);
    assert (store_batch_unkeyed_row (batch, 0) == 1);
    assert (store_batch_unkeyed_row (batch, 1) == 5);
    assert (store_batch_port_writes (batch, 50000, false) == 2); //  never written: now
    assert (store_batch_port_count (batch) == 2);
    assert (store_batch_port_deferred (batch) == 0);
    assert (store_batch_episode_count (batch) == 1);

    //  Ids are assigned first (the writer takes them from its block)
    store_batch_assign (batch, 0, 100, 1000, true);
    store_batch_assign (batch, 4, 103, 1004, true);
    const char *keys[STORE_KEYS_PARAMS];
    store_batch_keys_params (batch, keys);
    if (verbose)
        printf ("keys: %s %s %s %s\n", keys[0], keys[1], keys[2], keys[3]);
    assert (streq (keys[0], "{9,9}"));
    assert (streq (keys[1], "{\"k1\",\"a\\\"b\\\\c,}\"}"));
    assert (streq (keys[2], "{1000,1004}"));
    assert (streq (keys[3], "{100,103}"));

    //  Row 0 new, row 4 a retry of a stored key; rows 1, 5 get fresh ids
    store_batch_assign (batch, 4, 50, 777, false);
    store_batch_assign (batch, 1, 101, 1001, true);
    store_batch_assign (batch, 5, 102, 1005, true);
    assert (store_batch_fresh_count (batch) == 3);

    const char *readings[STORE_READINGS_PARAMS];
    store_batch_readings_params (batch, readings);
    if (verbose)
        printf ("readings: %s %s %s\n", readings[0], readings[1], readings[3]);
    assert (streq (readings[0], "{100,101,102}"));
    assert (streq (readings[2], "{1000,1001,1005}"));
    assert (streq (readings[3], "{230.09999999999999,230.09999999999999,230.09999999999999}"));
    assert (streq (readings[6], "{2,1,3}"));
    //  %.17g gives the same double back
    assert (strtod ("230.09999999999999", NULL) == 230.1);

    const char *ports[STORE_PORTS_PARAMS];
    store_batch_ports_params (batch, ports);
    if (verbose)
        printf ("ports: %s %s %s %s\n", ports[0], ports[1], ports[2], ports[3]);
    //  a: last row 5 (phantom), changed at 5; b: last row 4 (unknown), no change
    char expected[256];
    snprintf (expected, sizeof (expected), "{\"%s\",\"%s\"}", port_a, port_b);
    assert (streq (ports[0], expected));
    assert (streq (ports[1], "{\"phantom\",NULL}"));
    assert (streq (ports[2], "{1005,1004}"));
    assert (streq (ports[3], "{1005,NULL}"));

    const char *episodes[STORE_EPISODES_PARAMS];
    store_batch_episodes_params (batch, episodes);
    assert (streq (episodes[2], "{900}"));
    assert (streq (episodes[3], "{1005}"));
    assert (streq (episodes[7], "{2}"));

    size_t size;
    const uint8_t *copy = store_batch_copy_data (batch, &size);
    //  header 19 + 3 tuples of 88 + trailer 2
    assert (size == 19 + 3 * 88 + 2);
    assert (memcmp (copy, "PGCOPY\n\377\r\n\0", 11) == 0);
    assert (copy[19] == 0 && copy[20] == 7);
    assert (copy[size - 2] == 0xFF && copy[size - 1] == 0xFF);

    //  Binary parameters: array header (1 dimension, no NULLs, element
    //  type, count, lower bound 1), then each element's length and bytes
    int lengths[STORE_READINGS_PARAMS];
    store_batch_readings_binary (batch, readings, lengths);
    const uint8_t *bytes = (const uint8_t *)readings[0];
    assert (lengths[0] == 20 + 3 * (4 + 8));
    assert (bytes[3] == 1 && bytes[7] == 0 && bytes[11] == 20 && bytes[15] == 3);
    assert (bytes[19] == 1 && bytes[23] == 8 && bytes[31] == 100);
    assert (lengths[1] == 20 + 3 * (4 + 16));
    assert (lengths[2] == 20 + 3 * (4 + 8));
    //  1000 ms after 1970 is 946684799000 ms before 2000, in microseconds
    bytes = (const uint8_t *)readings[2] + 24;
    uint64_t micros = 0;
    for (int index = 0; index < 8; index++)
        micros = micros << 8 | bytes[index];
    assert ((int64_t)micros == INT64_C (-946684799000000));
    assert (lengths[6] == 20 + 3 * (4 + 2));
    assert (((const uint8_t *)readings[6])[lengths[6] - 1] == 3);
    int key_lengths[STORE_KEYS_PARAMS];
    store_batch_keys_binary (batch, keys, key_lengths);
    assert (key_lengths[1] == 20 + (4 + 2) + (4 + 7));
    assert (memcmp (keys[1] + 20 + 4, "k1", 2) == 0);
    assert (memcmp (keys[1] + 20 + 4 + 2 + 4, "a\"b\\c,}", 7) == 0);
    assert (((const uint8_t *)keys[3])[31] == 100 && ((const uint8_t *)keys[3])[43] == 50);
    copy = store_batch_keys_copy_data (batch, &size);
    //  header 19 + tuples of 2 + 12 + (4 + key) + 12 + 12 + trailer 2
    assert (size == 19 + (42 + 2) + (42 + 7) + 2);

    store_batch_commit (batch);
    for (size_t index = 0; index < 6; index++)
        assert (store_batch_decided (batch, index));
    assert (store_batch_ack (batch, 0)->code == PROTO_ACK_OK);
    assert (store_batch_ack (batch, 0)->id == 100);
    //  The repeat answers with the first occurrence's id and time
    assert (store_batch_ack (batch, 2)->code == PROTO_ACK_OK);
    assert (store_batch_ack (batch, 2)->id == 100);
    assert (store_batch_ack (batch, 2)->ts == 1000);
    assert (store_batch_ack (batch, 4)->id == 50);
    assert (store_batch_ack (batch, 4)->ts == 777);
    assert (store_batch_ack (batch, 3)->code == PROTO_ACK_REJECTED);

    //  Groups: gw1 rows 0, 1, 3, 4 then gw2 rows 2, 5, in arrival order
    proto_ack_t acks[8];
    const char *gateway;
    size_t cursor = 0;
    assert (store_batch_group (batch, &cursor, &gateway, acks, 8) == 4);
    assert (streq (gateway, "gw1"));
    assert (acks[0].request == 1000 && acks[1].request == 1001);
    assert (acks[2].request == 1003 && acks[3].request == 1004);
    assert (store_batch_group (batch, &cursor, &gateway, acks, 8) == 2);
    assert (streq (gateway, "gw2"));
    assert (acks[0].request == 1002 && acks[1].request == 1005);
    assert (store_batch_group (batch, &cursor, &gateway, acks, 8) == 0);
    //  A group larger than max comes in pieces
    cursor = 0;
    assert (store_batch_group (batch, &cursor, &gateway, acks, 3) == 3);
    assert (store_batch_group (batch, &cursor, &gateway, acks, 3) == 2);
    assert (streq (gateway, "gw2"));
    assert (store_batch_group (batch, &cursor, &gateway, acks, 3) == 1);
    assert (streq (gateway, "gw1") && acks[0].request == 1004);
    assert (store_batch_group (batch, &cursor, &gateway, acks, 3) == 0);

    //  A split range plans only its rows; decide leaves decided rows alone
    store_batch_reset (batch);
    assert (store_batch_size (batch) == 0);
    for (int index = 0; index < 8; index++) {
        s_verdict (&verdict, "gw1", port_a, index % 2 ? "same" : "", 2000 + index, 1, 1);
        assert (store_batch_add (batch, &verdict) == 0);
    }
    assert (store_batch_add (batch, &verdict) == -1);
    //  Absurd times are rejected before they reach the database
    store_batch_reset (batch);
    s_verdict (&verdict, "gw1", port_a, "", -1, 1, 1);
    store_batch_add (batch, &verdict);
    s_verdict (&verdict, "gw1", port_a, "", INT64_MAX, 1, 1);
    store_batch_add (batch, &verdict);
    s_verdict (&verdict, "gw1", port_a, "", 1000, 1, 1);
    verdict.has_episode = true;
    verdict.episode.start = INT64_MIN;
    store_batch_add (batch, &verdict);
    s_verdict (&verdict, "gw1", port_a, "", 1000, 1, 1);
    store_batch_add (batch, &verdict);
    for (size_t index = 0; index < 3; index++)
        assert (store_batch_ack (batch, index)->code == PROTO_ACK_REJECTED);
    assert (!store_batch_decided (batch, 3));
    store_batch_reset (batch);
    for (int index = 0; index < 8; index++) {
        s_verdict (&verdict, "gw1", port_a, index % 2 ? "same" : "", 2000 + index, 1, 1);
        assert (store_batch_add (batch, &verdict) == 0);
    }
    assert (store_batch_plan (batch, 4, 8) == 4);
    assert (store_batch_keyed_count (batch) == 1);
    assert (store_batch_keyed_row (batch, 0) == 5);
    store_batch_decide (batch, 4, 6, PROTO_ACK_REJECTED);
    store_batch_decide (batch, 0, 8, PROTO_ACK_RETRY);
    assert (store_batch_ack (batch, 4)->code == PROTO_ACK_REJECTED);
    assert (store_batch_ack (batch, 6)->code == PROTO_ACK_RETRY);
    assert (store_batch_plan (batch, 0, 8) == 0);

    store_batch_destroy (&batch);
    s_port_rows_test (verbose);
    s_marks_test (verbose);
    store_batch_destroy (&batch);
    printf ("OK\n");
}
