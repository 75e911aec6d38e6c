/*  =========================================================================
    store_batch - the verdicts of one group commit and their acks
    =========================================================================
*/
#include "store_batch.h"
#include "store_column.h"
#include "store_port_memory.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

//  One port row for the ports statement.
typedef struct {
    store_port_row_t *pending; //  its memory, updated after COMMIT
    size_t port;               //  index in ports, SIZE_MAX: from memory only
    uint8_t status;            //  status, UNKNOWN: keep
    bool has_reading;          //  ts and power are set
    int64_t ts;                //  last reading time
    double power;              //  its power
    int64_t changed;           //  time of the last status change, -1 none
} s_write_t;

//  A port's run of marked minutes (store_batch_marks_params).
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
    size_t deferred_count;              //  ports of the range left waiting
    int64_t now;                        //  monotonic ms of store_batch_port_writes
    store_port_memory_t *memory;        //  port rows waiting, across batches
    zhashx_t *index;                    //  scratch: episode key text -> slot + 1
    zhashx_t *key_index;                //  a row's reading (device, key) -> row + 1
    zhashx_t *port_index;               //  port text -> ports slot + 1 of the planned range
    store_column_t *columns[S_BUFFERS]; //  the statements' parameters
    s_range_t *ranges;                  //  scratch: per port slot, its open range of marks
};

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
    self->memory = store_port_memory_new ();
    bool columns = true;
    for (size_t index = 0; index < S_BUFFERS; index++)
        columns = (self->columns[index] = store_column_new ()) && columns;
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
        !self->ranges || !self->index || !self->key_index || !self->port_index || !self->memory ||
        !columns) {
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
            store_column_destroy (&self->columns[index]);
        zhashx_destroy (&self->index);
        zhashx_destroy (&self->key_index);
        zhashx_destroy (&self->port_index);
        store_port_memory_destroy (&self->memory);
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
    //  some, and the conversion to timestamptz must not overflow on any.
    const int64_t ts_max = INT64_C (253402300799999);
    bool times_ok = verdict->reading.ts >= 0 && verdict->reading.ts <= ts_max;
    if (verdict->has_episode)
        times_ok = times_ok && verdict->episode.start >= 0 && verdict->episode.start <= ts_max &&
                   verdict->episode.end >= 0 && verdict->episode.end <= ts_max;
    if (!store_column_is_uuid (verdict->reading.port) || !times_ok) {
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
s_write_add (store_batch_t *self, store_port_row_t *pending, size_t port)
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
        store_port_row_t *pending = store_port_memory_lookup (self->memory, text);
        port->deferred = !flush && !port->urgent && pending && pending->written &&
                         now_ms - pending->written < STORE_PORT_EVERY_MS;
        if (port->deferred)
            self->deferred_count++;
        else
            s_write_fill (self, s_write_add (self, pending, n), port);
    }
    //  Rows waiting from earlier batches, oldest first, while due. A port
    //  of this range is already handled above.
    for (store_port_row_t *pending = store_port_memory_first (self->memory); pending;
         pending = store_port_memory_next (self->memory)) {
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
    return store_port_memory_waiting (self->memory);
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
//  Parameter builders: binary arrays (store_column.h)

//  Starts count columns of self at first with their types.
static store_column_t **
s_columns (store_batch_t *self, size_t first, size_t count, const store_column_type_t *types)
{
    store_column_t **columns = self->columns + first;
    for (size_t column = 0; column < count; column++)
        store_column_begin (columns[column], types[column]);
    return columns;
}

//  Hands count columns out as parameters.
static void
s_params (store_column_t **columns, size_t count, const char **params, int *lengths)
{
    for (size_t column = 0; column < count; column++) {
        params[column] = store_column_data (columns[column]);
        lengths[column] = store_column_length (columns[column]);
    }
}

void
store_batch_keys_params (store_batch_t *self, const char *params[STORE_KEYS_PARAMS],
                         int lengths[STORE_KEYS_PARAMS])
{
    assert (self);
    static const store_column_type_t types[STORE_KEYS_PARAMS] = {
        STORE_COLUMN_INT8, STORE_COLUMN_TEXT, STORE_COLUMN_TIMESTAMPTZ, STORE_COLUMN_INT8};
    store_column_t **columns = s_columns (self, S_KEYS, STORE_KEYS_PARAMS, types);
    for (size_t n = 0; n < self->keyed_count; n++) {
        const s_row_t *row = &self->rows[self->keyed[n]];
        const proto_reading_t *reading = &row->verdict.reading;
        store_column_int (columns[0], reading->device);
        //  Invalid UTF-8 is a data error: the row is rejected alone.
        store_column_text (columns[1], reading->key, PROTO_KEY_MAX);
        store_column_time (columns[2], reading->ts);
        store_column_int (columns[3], row->ack.id);
    }
    s_params (columns, STORE_KEYS_PARAMS, params, lengths);
}

void
store_batch_readings_params (store_batch_t *self, const char *params[STORE_READINGS_PARAMS],
                             int lengths[STORE_READINGS_PARAMS])
{
    assert (self);
    static const store_column_type_t types[STORE_READINGS_PARAMS] = {
        STORE_COLUMN_INT8,   STORE_COLUMN_UUID,   STORE_COLUMN_TIMESTAMPTZ, STORE_COLUMN_FLOAT8,
        STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8, STORE_COLUMN_INT2};
    store_column_t **columns = s_columns (self, S_READINGS, STORE_READINGS_PARAMS, types);
    for (size_t index = self->lo; index < self->hi; index++) {
        const s_row_t *row = &self->rows[index];
        if (row->decided || !row->fresh)
            continue;
        const proto_reading_t *reading = &row->verdict.reading;
        store_column_int (columns[0], row->ack.id);
        store_column_uuid (columns[1], reading->port); //  checked in store_batch_add
        store_column_time (columns[2], reading->ts);
        store_column_double (columns[3], reading->voltage);
        store_column_double (columns[4], reading->current);
        store_column_double (columns[5], reading->power);
        store_column_int (columns[6], row->verdict.status);
    }
    s_params (columns, STORE_READINGS_PARAMS, params, lengths);
}

void
store_batch_ports_params (store_batch_t *self, const char *params[STORE_PORTS_PARAMS],
                          int lengths[STORE_PORTS_PARAMS])
{
    assert (self);
    static const store_column_type_t types[STORE_PORTS_PARAMS] = {
        STORE_COLUMN_UUID, STORE_COLUMN_TEXT, STORE_COLUMN_INT8, STORE_COLUMN_INT8,
        STORE_COLUMN_FLOAT8};
    store_column_t **columns = s_columns (self, S_PORTS, STORE_PORTS_PARAMS, types);
    for (size_t n = 0; n < self->write_count; n++) {
        const s_write_t *write = &self->writes[n];
        store_column_uuid (columns[0],
                           write->port == SIZE_MAX
                               ? write->pending->port
                               : self->rows[self->ports[write->port].last].verdict.reading.port);
        //  NULL keeps what is stored: an unknown status is no status, a
        //  no-reading verdict has no reading time or power.
        if (write->status == PROTO_STATUS_UNKNOWN)
            store_column_null (columns[1]);
        else {
            const char *name = proto_status_name (write->status);
            store_column_text (columns[1], name, strlen (name));
        }
        if (write->has_reading)
            store_column_int (columns[2], write->ts);
        else
            store_column_null (columns[2]);
        if (write->changed < 0)
            store_column_null (columns[3]);
        else
            store_column_int (columns[3], write->changed);
        if (write->has_reading)
            store_column_double (columns[4], write->power);
        else
            store_column_null (columns[4]);
    }
    s_params (columns, STORE_PORTS_PARAMS, params, lengths);
}

void
store_batch_episodes_params (store_batch_t *self, const char *params[STORE_EPISODES_PARAMS],
                             int lengths[STORE_EPISODES_PARAMS])
{
    assert (self);
    static const store_column_type_t types[STORE_EPISODES_PARAMS] = {
        STORE_COLUMN_UUID,   STORE_COLUMN_INT8,   STORE_COLUMN_INT8,   STORE_COLUMN_INT8,
        STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8, STORE_COLUMN_FLOAT8, STORE_COLUMN_INT8};
    store_column_t **columns = s_columns (self, S_EPISODES, STORE_EPISODES_PARAMS, types);
    for (size_t n = 0; n < self->episode_count; n++) {
        const proto_verdict_t *verdict = &self->rows[self->episodes[n]].verdict;
        const proto_episode_t *episode = &verdict->episode;
        store_column_uuid (columns[0], verdict->reading.port);
        store_column_int (columns[1], verdict->reading.user);
        store_column_int (columns[2], episode->start);
        if (episode->end)
            store_column_int (columns[3], episode->end);
        else
            store_column_null (columns[3]);
        store_column_double (columns[4], episode->mean_watts);
        store_column_double (columns[5], episode->peak_watts);
        store_column_double (columns[6], episode->energy_wh);
        store_column_int (columns[7], episode->samples);
    }
    s_params (columns, STORE_EPISODES_PARAMS, params, lengths);
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

//  Appends the range of port (text, as in the row) to the marks' columns.
static void
s_mark_range (store_column_t **columns, const char *port, const s_range_t *range)
{
    store_column_uuid (columns[0], port);
    store_column_time (columns[1], range->first);
    store_column_time (columns[2], range->last);
}

size_t
store_batch_marks_params (store_batch_t *self, const char *params[STORE_MARKS_PARAMS],
                          int lengths[STORE_MARKS_PARAMS])
{
    assert (self);
    static const store_column_type_t types[STORE_MARKS_PARAMS] = {
        STORE_COLUMN_UUID, STORE_COLUMN_TIMESTAMPTZ, STORE_COLUMN_TIMESTAMPTZ};
    store_column_t **columns = s_columns (self, S_MARKS, STORE_MARKS_PARAMS, types);
    //  Each port's open range grows while its marks come within the join
    //  distance of it (a backfill's come in time order: one range per
    //  port); a mark further away closes it and opens the next.
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
            s_mark_range (columns, row->verdict.reading.port, range);
            count++;
        }
        *range = (s_range_t){true, row->mark, row->mark};
    }
    for (size_t slot = 0; slot < self->port_count; slot++)
        if (self->ranges[slot].open) {
            const s_row_t *row = &self->rows[self->ports[slot].last];
            s_mark_range (columns, row->verdict.reading.port, &self->ranges[slot]);
            count++;
        }
    s_params (columns, STORE_MARKS_PARAMS, params, lengths);
    return count;
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
        store_port_row_t *pending = write->pending;
        if (!pending)
            pending = store_port_memory_require (
                self->memory, self->rows[self->ports[write->port].last].verdict.reading.port);
        store_port_memory_written (self->memory, pending, self->now);
    }
    for (size_t n = 0; n < self->port_count; n++) {
        s_port_t *port = &self->ports[n];
        if (!port->deferred)
            continue;
        s_write_t write;
        memset (&write, 0, sizeof (write));
        s_write_fill (self, &write, port);
        store_port_memory_defer (self->memory, self->rows[port->last].verdict.reading.port,
                                 write.status, write.has_reading, write.ts, write.power, self->now,
                                 STORE_PORT_EVERY_MS);
    }
    store_port_memory_settle (self->memory);
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

//  Parameters as text (store_column_render), count of them into texts;
//  the texts are the caller's to free (s_texts_free).
static void
s_texts (const char **params, const int *lengths, size_t count, char **texts)
{
    for (size_t index = 0; index < count; index++) {
        texts[index] = store_column_render (params[index], lengths[index]);
        assert (texts[index]);
    }
}

static void
s_texts_free (char **texts, size_t count)
{
    for (size_t index = 0; index < count; index++)
        zstr_free (&texts[index]);
}

//  The ports params of batch's planned range, as text.
static void
s_ports_text (store_batch_t *batch, char *ports[STORE_PORTS_PARAMS])
{
    const char *params[STORE_PORTS_PARAMS];
    int lengths[STORE_PORTS_PARAMS];
    store_batch_ports_params (batch, params, lengths);
    s_texts (params, lengths, STORE_PORTS_PARAMS, ports);
}

//  Plans and commits all of batch at now; returns the ports params as
//  text (the caller frees them, s_texts_free).
static void
s_commit_at (store_batch_t *batch, int64_t now, size_t writes, char *params[])
{
    assert (store_batch_plan (batch, 0, store_batch_size (batch)) == store_batch_size (batch));
    size_t count = store_batch_port_writes (batch, now, false);
    if (count != writes)
        fprintf (stderr, "store_batch_test: %zu port rows at %lld, expected %zu\n", count,
                 (long long)now, writes);
    assert (count == writes);
    s_texts_free (params, STORE_PORTS_PARAMS);
    s_ports_text (batch, params);
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
    char *ports[STORE_PORTS_PARAMS] = {NULL};

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
    s_texts_free (ports, STORE_PORTS_PARAMS);
    s_ports_text (batch, ports);
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
    s_texts_free (ports, STORE_PORTS_PARAMS);
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
    assert (store_batch_marks_params (batch, params, lengths) == 3);
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
    assert (store_batch_marks_params (batch, params, lengths) == 2); //  b 1, a 2
    store_batch_reset (batch);
    s_verdict (&verdict, "gw1", port_a, "", base, 1, 1);
    store_batch_add (batch, &verdict);
    assert (store_batch_plan (batch, 0, 1) == 1);
    assert (store_batch_marks_params (batch, params, lengths) == 0); //  a new row: unmarked
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
    int key_lengths[STORE_KEYS_PARAMS];
    char *texts[STORE_EPISODES_PARAMS]; //  the most params of a statement
    store_batch_keys_params (batch, keys, key_lengths);
    s_texts (keys, key_lengths, STORE_KEYS_PARAMS, texts);
    if (verbose)
        printf ("keys: %s %s %s %s\n", texts[0], texts[1], texts[2], texts[3]);
    assert (streq (texts[0], "{9,9}"));
    assert (streq (texts[1], "{\"k1\",\"a\\\"b\\\\c,}\"}"));
    assert (streq (texts[2], "{1000,1004}"));
    assert (streq (texts[3], "{100,103}"));
    s_texts_free (texts, STORE_KEYS_PARAMS);

    //  Row 0 new, row 4 a retry of a stored key; rows 1, 5 get fresh ids
    store_batch_assign (batch, 4, 50, 777, false);
    store_batch_assign (batch, 1, 101, 1001, true);
    store_batch_assign (batch, 5, 102, 1005, true);
    assert (store_batch_fresh_count (batch) == 3);

    const char *readings[STORE_READINGS_PARAMS];
    int lengths[STORE_READINGS_PARAMS];
    store_batch_readings_params (batch, readings, lengths);
    s_texts (readings, lengths, STORE_READINGS_PARAMS, texts);
    if (verbose)
        printf ("readings: %s %s %s\n", texts[0], texts[1], texts[3]);
    assert (streq (texts[0], "{100,101,102}"));
    assert (streq (texts[2], "{1000,1001,1005}"));
    assert (streq (texts[3], "{230.09999999999999,230.09999999999999,230.09999999999999}"));
    assert (streq (texts[6], "{2,1,3}"));
    s_texts_free (texts, STORE_READINGS_PARAMS);
    //  %.17g gives the same double back
    assert (strtod ("230.09999999999999", NULL) == 230.1);

    s_ports_text (batch, texts);
    if (verbose)
        printf ("ports: %s %s %s %s\n", texts[0], texts[1], texts[2], texts[3]);
    //  a: last row 5 (phantom), changed at 5; b: last row 4 (unknown), no
    //  change (uuids come back in lower case)
    char expected[256];
    snprintf (expected, sizeof (expected), "{\"%s\",\"%s\"}", port_a,
              "0b9f4c1e-3d2a-4c5b-8e7f-aabbccddeeff");
    assert (streq (texts[0], expected));
    assert (streq (texts[1], "{\"phantom\",NULL}"));
    assert (streq (texts[2], "{1005,1004}"));
    assert (streq (texts[3], "{1005,NULL}"));
    s_texts_free (texts, STORE_PORTS_PARAMS);

    const char *episodes[STORE_EPISODES_PARAMS];
    int episode_lengths[STORE_EPISODES_PARAMS];
    store_batch_episodes_params (batch, episodes, episode_lengths);
    s_texts (episodes, episode_lengths, STORE_EPISODES_PARAMS, texts);
    assert (streq (texts[2], "{900}"));
    assert (streq (texts[3], "{1005}"));
    assert (streq (texts[7], "{2}"));
    s_texts_free (texts, STORE_EPISODES_PARAMS);

    //  Binary parameters (store_column.h): each element's length and bytes
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
    store_batch_keys_params (batch, keys, key_lengths);
    assert (key_lengths[1] == 20 + (4 + 2) + (4 + 7));
    assert (memcmp (keys[1] + 20 + 4, "k1", 2) == 0);
    assert (memcmp (keys[1] + 20 + 4 + 2 + 4, "a\"b\\c,}", 7) == 0);
    assert (((const uint8_t *)keys[3])[31] == 100 && ((const uint8_t *)keys[3])[43] == 50);

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
