/*  =========================================================================
    proto - the frames that PhantomWatch services exchange, and their codec

    Encoders use msgpack-c's packer. Decoders walk the bytes directly with a
    bounded cursor instead of msgpack_unpack: the schema is fixed, so every
    value has one expected type and nothing needs to be skipped, and the
    generic unpacker allocates container storage from the declared count
    before it has seen the elements (a 5-byte "array32 of 2^32" frame asks
    malloc for ~100 GB). The cursor allocates nothing, keeps no state
    outside the call (thread-safe), and never reads past size.

    Each map is described once, as a table of fields (key, type, bounds,
    place in the C struct) that one encoder and one decoder walk. Wire keys
    are 1-4 ASCII characters, read as one integer code so finding a field
    is an integer compare, not a strcmp.
    =========================================================================
*/
#include "proto.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Wire keys as integer codes (bytes big-endian into a uint32)
#define S_KEY1(a) ((uint32_t)(unsigned char)(a))
#define S_KEY2(a, b) ((S_KEY1 (a) << 8) | S_KEY1 (b))
#define S_KEY4(a, b, c, d) ((S_KEY2 (a, b) << 16) | S_KEY2 (c, d))

#define S_KIND_MAX 23 //  proto_event_t.kind holds 23 characters

//  --------------------------------------------------------------------------
//  Buffer

void
proto_buffer_init (proto_buffer_t *self)
{
    assert (self);
    memset (self, 0, sizeof (*self));
}

void
proto_buffer_reset (proto_buffer_t *self)
{
    assert (self);
    self->size = 0;
}

void
proto_buffer_release (proto_buffer_t *self)
{
    assert (self);
    free (self->data);
    proto_buffer_init (self);
}

static int
s_buffer_write (void *data, const char *bytes, size_t length)
{
    proto_buffer_t *self = (proto_buffer_t *)data;
    if (length == 0)
        return 0; //  data may still be NULL; no pointer arithmetic on it
    if (length > self->capacity - self->size) {
        size_t capacity = self->capacity ? self->capacity : 256;
        while (capacity - self->size < length) {
            if (capacity > SIZE_MAX / 2)
                return -1;
            capacity *= 2;
        }
        uint8_t *grown = (uint8_t *)realloc (self->data, capacity);
        if (!grown)
            return -1;
        self->data = grown;
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, bytes, length);
    self->size += length;
    return 0;
}

//  --------------------------------------------------------------------------
//  Status names

static const char *s_status_names[] = {"unknown", "active", "idle", "phantom", "off", "offline"};
#define S_STATUS_LAST PROTO_STATUS_OFFLINE

const char *
proto_status_name (int status)
{
    if (status < 0 || status > S_STATUS_LAST)
        return s_status_names[PROTO_STATUS_UNKNOWN];
    return s_status_names[status];
}

proto_status_t
proto_status_parse (const char *name)
{
    if (name)
        for (int status = 0; status <= S_STATUS_LAST; status++)
            if (strcmp (name, s_status_names[status]) == 0)
                return (proto_status_t)status;
    return PROTO_STATUS_UNKNOWN;
}

//  --------------------------------------------------------------------------
//  Frame schemas. Each map on the wire is a table of fields, walked by one
//  encoder and one decoder, so a field's key, type and bounds are stated
//  once. Required fields come first, optional ones last; encoders write
//  fields in table order.

typedef enum {
    S_VERSION, //  PROTO_VERSION, not stored
    S_INT,     //  signed integer in [min, max]
    S_UINT,    //  unsigned integer up to max
    S_DOUBLE,  //  finite; float32 and integers accepted
    S_FLOAT,   //  finite and within float range
    S_TEXT,    //  up to size - 1 bytes, no NUL
    S_TOKEN,   //  1 to size - 1 visible ASCII characters
    S_KIND,    //  S_TOKEN of lower-case words, dots, underscores
    S_UUID,    //  canonical lower-case UUID text
    S_TRUE,    //  msgpack true into a bool
    S_WINDOWS, //  array of up to size / 4 packed weekly windows, each
               //  proto_window_valid; trailing unused ones not written
    S_MAP      //  nested map, fields in schema
} s_type_t;

typedef struct s_schema_t s_schema_t;

typedef struct {
    uint32_t key;             //  wire key as an integer code (S_KEY*)
    s_type_t type;            //  how the value is written and checked
    uint16_t offset;          //  where the value lives in the C struct
    uint16_t size;            //  its bytes there: integer width, text capacity
    int64_t min;              //  S_INT: lowest value accepted
    uint64_t max;             //  S_INT, S_UINT: highest value accepted
    uint16_t present;         //  optional field: offset of the bool saying it is set
    const s_schema_t *schema; //  S_MAP: the nested map's fields
} s_field_t;

struct s_schema_t {
    const s_field_t *fields; //  required fields first
    uint32_t count;          //  fields in the table, at most 32
    uint32_t required;       //  how many of the first fields must be present
};

#define S_AT(type, member) .offset = offsetof (type, member), .size = sizeof (((type *)0)->member)
#define S_COUNT(array) (sizeof (array) / sizeof ((array)[0]))
//  A schema's members for a table whose last optional fields may be absent
#define S_TABLE(fields, optional) fields, S_COUNT (fields), S_COUNT (fields) - (optional)

static const s_field_t s_settings_fields[] = {
    {S_KEY2 ('o', 'w'), S_FLOAT, S_AT (proto_settings_t, off_watts)},
    {S_KEY2 ('s', 'w'), S_FLOAT, S_AT (proto_settings_t, standby_watts)},
    {S_KEY2 ('m', 'p'), S_INT, S_AT (proto_settings_t, min_phantom_seconds), .max = INT32_MAX},
    {S_KEY2 ('r', 'o'), S_UINT, S_AT (proto_settings_t, role), .max = PROTO_ROLE_ALWAYS_ON},
    {S_KEY2 ('o', 's'), S_WINDOWS, S_AT (proto_settings_t, windows)},
    {S_KEY2 ('t', 'z'), S_TEXT, S_AT (proto_settings_t, timezone)},
};
static const s_schema_t s_settings_schema = {S_TABLE (s_settings_fields, 0)};

static const s_field_t s_episode_fields[] = {
    {S_KEY1 ('s'), S_INT, S_AT (proto_episode_t, start), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('e'), S_INT, S_AT (proto_episode_t, end), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY2 ('e', 'n'), S_DOUBLE, S_AT (proto_episode_t, energy_wh)},
    {S_KEY2 ('m', 'w'), S_DOUBLE, S_AT (proto_episode_t, mean_watts)},
    {S_KEY2 ('p', 'k'), S_DOUBLE, S_AT (proto_episode_t, peak_watts)},
    {S_KEY1 ('n'), S_UINT, S_AT (proto_episode_t, samples), .max = UINT32_MAX},
};
static const s_schema_t s_episode_schema = {S_TABLE (s_episode_fields, 0)};

//  A reading frame starts with "v"; the reading inside a verdict has none,
//  so its schema is the same table from the second field on.
static const s_field_t s_reading_fields[] = {
    {.key = S_KEY1 ('v'), .type = S_VERSION},
    {S_KEY2 ('r', 'q'), S_UINT, S_AT (proto_reading_t, request), .max = UINT64_MAX},
    {S_KEY2 ('g', 'w'), S_TOKEN, S_AT (proto_reading_t, gateway)},
    {S_KEY1 ('u'), S_INT, S_AT (proto_reading_t, user), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('d'), S_INT, S_AT (proto_reading_t, device), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('p'), S_UUID, S_AT (proto_reading_t, port)},
    {S_KEY1 ('t'), S_INT, S_AT (proto_reading_t, ts), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('r'), S_INT, S_AT (proto_reading_t, received), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('V'), S_DOUBLE, S_AT (proto_reading_t, voltage)},
    {S_KEY1 ('I'), S_DOUBLE, S_AT (proto_reading_t, current)},
    {S_KEY1 ('W'), S_DOUBLE, S_AT (proto_reading_t, power)},
    {S_KEY1 ('k'), S_TEXT, S_AT (proto_reading_t, key)},
    {S_KEY1 ('s'), S_MAP, S_AT (proto_reading_t, settings), .schema = &s_settings_schema},
    //  Present only when true (frames without it stay byte-identical)
    {S_KEY2 ('l', 'v'), S_TRUE, S_AT (proto_reading_t, live),
     .present = offsetof (proto_reading_t, live)},
};
static const s_schema_t s_reading_schema = {S_TABLE (s_reading_fields, 1)};
static const s_schema_t s_reading_body_schema = {
    s_reading_fields + 1, S_COUNT (s_reading_fields) - 1, S_COUNT (s_reading_fields) - 2};

//  Optional keys are written only when set, so frames of senders that
//  predate them stay byte-identical.
static const s_field_t s_verdict_fields[] = {
    {.key = S_KEY1 ('v'), .type = S_VERSION},
    {S_KEY2 ('r', 'd'), S_MAP, S_AT (proto_verdict_t, reading), .schema = &s_reading_body_schema},
    {S_KEY2 ('s', 't'), S_UINT, S_AT (proto_verdict_t, status), .max = S_STATUS_LAST},
    {S_KEY2 ('p', 'v'), S_UINT, S_AT (proto_verdict_t, previous), .max = S_STATUS_LAST},
    {S_KEY2 ('e', 'p'), S_MAP, S_AT (proto_verdict_t, episode), .schema = &s_episode_schema,
     .present = offsetof (proto_verdict_t, has_episode)},
    //  Present only when true; false is never written, so not accepted either
    {S_KEY2 ('n', 'r'), S_TRUE, S_AT (proto_verdict_t, no_reading),
     .present = offsetof (proto_verdict_t, no_reading)},
};
static const s_schema_t s_verdict_schema = {S_TABLE (s_verdict_fields, 2)};

static const s_field_t s_event_fields[] = {
    {.key = S_KEY1 ('v'), .type = S_VERSION},
    {S_KEY1 ('k'), S_KIND, S_AT (proto_event_t, kind)},
    {S_KEY1 ('u'), S_INT, S_AT (proto_event_t, user), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('p'), S_UUID, S_AT (proto_event_t, port)},
    {S_KEY1 ('t'), S_INT, S_AT (proto_event_t, ts), .min = INT64_MIN, .max = INT64_MAX},
    {S_KEY1 ('W'), S_DOUBLE, S_AT (proto_event_t, watts)},
    {S_KEY2 ('s', 't'), S_UINT, S_AT (proto_event_t, status), .max = S_STATUS_LAST},
    {S_KEY2 ('p', 'v'), S_UINT, S_AT (proto_event_t, previous), .max = S_STATUS_LAST},
    {S_KEY2 ('e', 'p'), S_MAP, S_AT (proto_event_t, episode), .schema = &s_episode_schema,
     .present = offsetof (proto_event_t, has_episode)},
};
static const s_schema_t s_event_schema = {S_TABLE (s_event_fields, 1)};

//  --------------------------------------------------------------------------
//  Encoding. Each helper returns 0 or -1, and a frame's result is the OR of
//  its parts (a failed write leaves the buffer short, never overrun).

//  A key is always a fixstr: header and bytes go out in one write.
static int
s_pack_key (msgpack_packer *packer, uint32_t key)
{
    uint8_t bytes[5];
    for (int index = 0; index < 4; index++)
        bytes[1 + index] = (uint8_t)(key >> (24 - 8 * index));
    //  Keys hold no NUL, so only the code's leading bytes are 0
    size_t length = key > 0xffffff ? 4 : key > 0xffff ? 3 : key > 0xff ? 2 : 1;
    uint8_t *header = bytes + 4 - length;
    *header = (uint8_t)(0xa0 | length);
    return packer->callback (packer->data, (const char *)header, length + 1);
}

//  The low width bytes of bits as a signed number.
static inline int64_t
s_sign_extend (uint64_t bits, size_t width)
{
    int shift = 64 - 8 * (int)width;
    return (int64_t)(bits << shift) >> shift;
}

//  An integer field's bits, zero-extended; S_INT sign-extends them.
static uint64_t
s_load_bits (const void *value, size_t width)
{
    switch (width) {
    case 1:
        return *(const uint8_t *)value;
    case 2:
        return *(const uint16_t *)value;
    case 4:
        return *(const uint32_t *)value;
    default:
        return *(const uint64_t *)value;
    }
}

static bool
s_is_present (const s_schema_t *schema, uint32_t index, const uint8_t *base)
{
    return index < schema->required || *(const bool *)(base + schema->fields[index].present);
}

static int s_map_pack (msgpack_packer *packer, const s_schema_t *schema, const uint8_t *base);

static int
s_value_pack (msgpack_packer *packer, const s_field_t *field, const uint8_t *base)
{
    const uint8_t *value = base + field->offset;
    switch (field->type) {
    case S_VERSION:
        return msgpack_pack_int64 (packer, PROTO_VERSION);
    case S_INT:
        return msgpack_pack_int64 (packer,
                                   s_sign_extend (s_load_bits (value, field->size), field->size));
    case S_UINT:
        return msgpack_pack_uint64 (packer, s_load_bits (value, field->size));
    case S_DOUBLE:
        return msgpack_pack_double (packer, *(const double *)value);
    case S_FLOAT:
        return msgpack_pack_float (packer, *(const float *)value);
    case S_TEXT:
    case S_TOKEN:
    case S_KIND:
    case S_UUID: {
        //  Bounded by the field's size so an unterminated field cannot overrun
        size_t length = strnlen ((const char *)value, field->size);
        return msgpack_pack_str (packer, length) | msgpack_pack_str_body (packer, value, length);
    }
    case S_TRUE:
        return msgpack_pack_true (packer);
    case S_WINDOWS: {
        const uint32_t *windows = (const uint32_t *)value;
        size_t count = field->size / sizeof (uint32_t);
        while (count > 0 && windows[count - 1] == 0)
            count--;
        int rc = msgpack_pack_array (packer, count);
        for (size_t index = 0; index < count; index++)
            rc |= msgpack_pack_uint32 (packer, windows[index]);
        return rc;
    }
    case S_MAP:
        return s_map_pack (packer, field->schema, value);
    }
    return -1;
}

static int
s_map_pack (msgpack_packer *packer, const s_schema_t *schema, const uint8_t *base)
{
    uint32_t count = schema->required;
    for (uint32_t index = schema->required; index < schema->count; index++)
        count += s_is_present (schema, index, base);
    int rc = msgpack_pack_map (packer, count);
    for (uint32_t index = 0; index < schema->count; index++)
        if (s_is_present (schema, index, base))
            rc |= s_pack_key (packer, schema->fields[index].key) |
                  s_value_pack (packer, &schema->fields[index], base);
    return rc;
}

//  Resets the buffer and starts a packer writing into it.
static void
s_packer_start (msgpack_packer *packer, proto_buffer_t *buffer)
{
    assert (buffer);
    proto_buffer_reset (buffer);
    msgpack_packer_init (packer, buffer, s_buffer_write);
}

static int
s_frame_encode (const s_schema_t *schema, const void *self, proto_buffer_t *buffer)
{
    assert (self);
    msgpack_packer packer;
    s_packer_start (&packer, buffer);
    return s_map_pack (&packer, schema, (const uint8_t *)self) ? -1 : 0;
}

//  Writes one more frame after what buffer holds (a batch message).
static int
s_frame_append (const s_schema_t *schema, const void *self, proto_buffer_t *buffer)
{
    assert (self);
    assert (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, s_buffer_write);
    return s_map_pack (&packer, schema, (const uint8_t *)self) ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Encoders: reset the buffer, write one frame. 0 or -1 (no memory).

int
proto_reading_encode (const proto_reading_t *self, proto_buffer_t *buffer)
{
    return s_frame_encode (&s_reading_schema, self, buffer);
}

int
proto_verdict_encode (const proto_verdict_t *self, proto_buffer_t *buffer)
{
    return s_frame_encode (&s_verdict_schema, self, buffer);
}

int
proto_event_encode (const proto_event_t *self, proto_buffer_t *buffer)
{
    return s_frame_encode (&s_event_schema, self, buffer);
}

int
proto_reading_append (const proto_reading_t *self, proto_buffer_t *buffer)
{
    return s_frame_append (&s_reading_schema, self, buffer);
}

int
proto_verdict_append (const proto_verdict_t *self, proto_buffer_t *buffer)
{
    return s_frame_append (&s_verdict_schema, self, buffer);
}

//  Acks are an array of arrays, not maps: thousands per frame, so no keys.
int
proto_acks_encode (const proto_ack_t *acks, size_t count, proto_buffer_t *buffer)
{
    assert (acks || count == 0);
    msgpack_packer packer;
    s_packer_start (&packer, buffer);
    int rc = msgpack_pack_map (&packer, 2) | s_pack_key (&packer, S_KEY1 ('v')) |
             msgpack_pack_int64 (&packer, PROTO_VERSION) |
             s_pack_key (&packer, S_KEY4 ('a', 'c', 'k', 's')) |
             msgpack_pack_array (&packer, count);
    for (size_t index = 0; index < count && rc == 0; index++) {
        const proto_ack_t *ack = &acks[index];
        rc |= msgpack_pack_array (&packer, 5) | msgpack_pack_uint64 (&packer, ack->request) |
              msgpack_pack_uint64 (&packer, ack->code) | msgpack_pack_int64 (&packer, ack->id) |
              msgpack_pack_int64 (&packer, ack->ts) | msgpack_pack_uint64 (&packer, ack->status);
    }
    return rc ? -1 : 0;
}

//  An array of uuids, not a table field: the frame's one list.
int
proto_offline_encode (const proto_offline_t *self, proto_buffer_t *buffer)
{
    assert (self);
    if (self->count == 0 || self->count > PROTO_OFFLINE_MAX)
        return -1;
    msgpack_packer packer;
    s_packer_start (&packer, buffer);
    int rc = msgpack_pack_map (&packer, 3) | s_pack_key (&packer, S_KEY1 ('v')) |
             msgpack_pack_int64 (&packer, PROTO_VERSION) | s_pack_key (&packer, S_KEY1 ('t')) |
             msgpack_pack_int64 (&packer, self->ts) | s_pack_key (&packer, S_KEY2 ('p', 's')) |
             msgpack_pack_array (&packer, self->count);
    for (uint32_t index = 0; index < self->count && rc == 0; index++) {
        size_t length = strnlen (self->ports[index], PROTO_UUID_LEN + 1);
        rc |= msgpack_pack_str (&packer, length) |
              msgpack_pack_str_body (&packer, self->ports[index], length);
    }
    return rc ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Decoding cursor. Every reader returns 0 or -2 and checks the remaining
//  length before touching a byte.

typedef struct {
    const uint8_t *at;  //  next byte to read
    const uint8_t *end; //  one past the frame's last byte
} s_reader_t;

static inline bool
s_need (const s_reader_t *reader, size_t count)
{
    return (size_t)(reader->end - reader->at) >= count;
}

static inline uint64_t
s_big_endian (const uint8_t *bytes, int count)
{
    uint64_t value = 0;
    for (int index = 0; index < count; index++)
        value = (value << 8) | bytes[index];
    return value;
}

//  Reads a count that follows a marker as 0 (inline), 2 or 4 big-endian bytes.
static inline int
s_read_length (s_reader_t *reader, int width, uint32_t *length)
{
    if (!s_need (reader, (size_t)width))
        return -2;
    *length = (uint32_t)s_big_endian (reader->at, width);
    reader->at += width;
    return 0;
}

//  A map or array header: the fix form holds the count in its low nibble,
//  the 16-bit form's marker is fix16 and the 32-bit form's the one after.
static int
s_read_count (s_reader_t *reader, uint8_t fix, uint8_t fix16, uint32_t *count)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at++;
    if ((marker & 0xf0) == fix) {
        *count = marker & 0x0f;
        return 0;
    }
    if (marker == fix16)
        return s_read_length (reader, 2, count);
    if (marker == fix16 + 1)
        return s_read_length (reader, 4, count);
    return -2;
}

static int
s_read_map (s_reader_t *reader, uint32_t *count)
{
    return s_read_count (reader, 0x80, 0xde, count);
}

static int
s_read_array (s_reader_t *reader, uint32_t *count)
{
    return s_read_count (reader, 0x90, 0xdc, count);
}

//  A string of at most max bytes; *text points into the frame.
static int
s_read_str (s_reader_t *reader, size_t max, const char **text, size_t *length)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at++;
    uint32_t size;
    if ((marker & 0xe0) == 0xa0)
        size = marker & 0x1f;
    else if (marker == 0xd9) {
        if (s_read_length (reader, 1, &size))
            return -2;
    } else if (marker == 0xda) {
        if (s_read_length (reader, 2, &size))
            return -2;
    } else if (marker == 0xdb) {
        if (s_read_length (reader, 4, &size))
            return -2;
    } else
        return -2;
    if (size > max || !s_need (reader, size))
        return -2;
    *text = (const char *)reader->at;
    *length = size;
    reader->at += size;
    return 0;
}

//  A map key as an integer code: 1-4 bytes, none NUL, so distinct keys
//  give distinct codes. Every field starts with one, so the fixstr form
//  our encoders write is read inline; other string forms are legal too.
static inline int
s_read_key (s_reader_t *reader, uint32_t *code)
{
    const char *text;
    size_t length;
    if (s_need (reader, 5) && *reader->at >= 0xa1 && *reader->at <= 0xa4) {
        length = *reader->at & 0x0f;
        text = (const char *)reader->at + 1;
        reader->at += 1 + length;
    } else if (s_read_str (reader, 4, &text, &length) || length == 0)
        return -2;
    uint32_t value = 0;
    for (size_t index = 0; index < length; index++) {
        if (text[index] == 0)
            return -2;
        value = (value << 8) | (unsigned char)text[index];
    }
    *code = value;
    return 0;
}

//  Any msgpack integer, as a sign and either an unsigned or a signed value.
typedef struct {
    bool negative;        //  value is in signed (< 0), else in whole
    uint64_t whole;       //  value when >= 0
    int64_t signed_value; //  value when < 0
} s_integer_t;

static int
s_read_integer (s_reader_t *reader, s_integer_t *integer)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at;
    int width;
    bool is_signed;
    if (marker <= 0x7f || marker >= 0xe0) {
        reader->at++;
        integer->negative = marker >= 0xe0;
        integer->whole = marker;
        integer->signed_value = (int8_t)marker;
        return 0;
    }
    switch (marker) {
    case 0xcc:
        width = 1;
        is_signed = false;
        break;
    case 0xcd:
        width = 2;
        is_signed = false;
        break;
    case 0xce:
        width = 4;
        is_signed = false;
        break;
    case 0xcf:
        width = 8;
        is_signed = false;
        break;
    case 0xd0:
        width = 1;
        is_signed = true;
        break;
    case 0xd1:
        width = 2;
        is_signed = true;
        break;
    case 0xd2:
        width = 4;
        is_signed = true;
        break;
    case 0xd3:
        width = 8;
        is_signed = true;
        break;
    default:
        return -2;
    }
    if (!s_need (reader, 1 + (size_t)width))
        return -2;
    uint64_t bits = s_big_endian (reader->at + 1, width);
    reader->at += 1 + width;
    integer->negative = false;
    integer->whole = bits;
    if (is_signed) {
        int64_t value = s_sign_extend (bits, (size_t)width);
        integer->negative = value < 0;
        integer->signed_value = value;
        integer->whole = (uint64_t)value;
    }
    return 0;
}

static int
s_read_uint (s_reader_t *reader, uint64_t max, uint64_t *value)
{
    s_integer_t integer;
    if (s_read_integer (reader, &integer) || integer.negative || integer.whole > max)
        return -2;
    *value = integer.whole;
    return 0;
}

static int
s_read_int (s_reader_t *reader, int64_t min, int64_t max, int64_t *value)
{
    s_integer_t integer;
    if (s_read_integer (reader, &integer))
        return -2;
    int64_t number;
    if (integer.negative)
        number = integer.signed_value;
    else {
        if (integer.whole > (uint64_t)INT64_MAX)
            return -2;
        number = (int64_t)integer.whole;
    }
    if (number < min || number > max)
        return -2;
    *value = number;
    return 0;
}

//  float32, float64 or any integer; finite only.
static int
s_read_double (s_reader_t *reader, double *value)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at;
    double number;
    if (marker == 0xca) {
        if (!s_need (reader, 5))
            return -2;
        uint32_t bits = (uint32_t)s_big_endian (reader->at + 1, 4);
        float single;
        memcpy (&single, &bits, sizeof (single));
        number = single;
        reader->at += 5;
    } else if (marker == 0xcb) {
        if (!s_need (reader, 9))
            return -2;
        uint64_t bits = s_big_endian (reader->at + 1, 8);
        memcpy (&number, &bits, sizeof (number));
        reader->at += 9;
    } else {
        s_integer_t integer;
        if (s_read_integer (reader, &integer))
            return -2;
        number = integer.negative ? (double)integer.signed_value : (double)integer.whole;
    }
    if (!isfinite (number))
        return -2;
    *value = number;
    return 0;
}

static int
s_read_float (s_reader_t *reader, float *value)
{
    double number;
    if (s_read_double (reader, &number) || number > FLT_MAX || number < -FLT_MAX)
        return -2;
    *value = (float)number;
    return 0;
}

//  msgpack true; false is never written, so it is not accepted either.
static int
s_read_true (s_reader_t *reader, bool *value)
{
    if (!s_need (reader, 1) || *reader->at != 0xc3)
        return -2;
    reader->at++;
    *value = true;
    return 0;
}

static int
s_read_version (s_reader_t *reader)
{
    int64_t version;
    return s_read_int (reader, PROTO_VERSION, PROTO_VERSION, &version);
}

static int
s_read_status (s_reader_t *reader, uint8_t *status)
{
    uint64_t value;
    if (s_read_uint (reader, S_STATUS_LAST, &value))
        return -2;
    *status = (uint8_t)value;
    return 0;
}

//  Marks a field seen; a repeated key is malformed.
static inline int
s_mark (uint32_t *seen, uint32_t bit)
{
    if (*seen & bit)
        return -2;
    *seen |= bit;
    return 0;
}

//  The acks array: at most max elements of [request, code, id, ts, status].
static int
s_acks_read (s_reader_t *reader, proto_ack_t *acks, size_t max, size_t *count)
{
    uint32_t items;
    if (s_read_array (reader, &items) || items > max)
        return -2;
    for (uint32_t item = 0; item < items; item++) {
        proto_ack_t *ack = &acks[item];
        uint32_t fields;
        uint64_t code;
        if (s_read_array (reader, &fields) || fields != 5 ||
            s_read_uint (reader, UINT64_MAX, &ack->request) ||
            s_read_uint (reader, PROTO_ACK_REJECTED, &code) ||
            s_read_int (reader, INT64_MIN, INT64_MAX, &ack->id) ||
            s_read_int (reader, INT64_MIN, INT64_MAX, &ack->ts) ||
            s_read_status (reader, &ack->status))
            return -2;
        ack->code = (uint8_t)code;
    }
    *count = items;
    return 0;
}

//  --------------------------------------------------------------------------
//  Decoding by schema

static void
s_store_bits (void *value, size_t width, uint64_t bits)
{
    switch (width) {
    case 1:
        *(uint8_t *)value = (uint8_t)bits;
        break;
    case 2:
        *(uint16_t *)value = (uint16_t)bits;
        break;
    case 4:
        *(uint32_t *)value = (uint32_t)bits;
        break;
    default:
        *(uint64_t *)value = bits;
        break;
    }
}

static bool
s_is_uuid (const char *text, size_t length)
{
    if (length != PROTO_UUID_LEN)
        return false;
    for (size_t index = 0; index < PROTO_UUID_LEN; index++) {
        char c = text[index];
        bool dash = index == 8 || index == 13 || index == 18 || index == 23;
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return true;
}

//  Whether text has the characters a field of type takes: S_TEXT anything
//  but NUL; S_TOKEN visible ASCII, as identifiers that end up in topics
//  and logs; S_KIND the topic prefix's lower-case words and dots; S_UUID
//  canonical lower-case UUID text, 8-4-4-4-12.
static bool
s_text_valid (s_type_t type, const char *text, size_t length)
{
    if (type == S_TEXT)
        return !memchr (text, 0, length);
    if (type == S_UUID)
        return s_is_uuid (text, length);
    for (size_t index = 0; index < length; index++) {
        char c = text[index];
        if (type == S_TOKEN ? c < 0x21 || c > 0x7e
                            : !((c >= 'a' && c <= 'z') || c == '.' || c == '_'))
            return false;
    }
    return length > 0;
}

//  Text of type into a field of max characters plus NUL.
static int
s_read_text (s_reader_t *reader, s_type_t type, char *field, size_t max)
{
    const char *text;
    size_t length;
    if (s_read_str (reader, max, &text, &length) || !s_text_valid (type, text, length))
        return -2;
    memcpy (field, text, length);
    field[length] = 0;
    return 0;
}

//  Up to max packed windows into windows [max]; those not sent are unused.
static int
s_read_windows (s_reader_t *reader, uint32_t *windows, size_t max)
{
    uint32_t count;
    if (s_read_array (reader, &count) || count > max)
        return -2;
    for (uint32_t index = 0; index < count; index++) {
        uint64_t window;
        if (s_read_uint (reader, UINT32_MAX, &window) || !proto_window_valid ((uint32_t)window))
            return -2;
        windows[index] = (uint32_t)window;
    }
    for (size_t index = count; index < max; index++)
        windows[index] = 0;
    return 0;
}

static int s_map_read (s_reader_t *reader, const s_schema_t *schema, uint8_t *base);

//  A field stored from a failed read is never used: the frame is rejected.
static int
s_value_read (s_reader_t *reader, const s_field_t *field, uint8_t *base)
{
    uint8_t *value = base + field->offset;
    switch (field->type) {
    case S_VERSION:
        return s_read_version (reader);
    case S_INT: {
        int64_t number;
        if (s_read_int (reader, field->min, (int64_t)field->max, &number))
            return -2;
        s_store_bits (value, field->size, (uint64_t)number);
        return 0;
    }
    case S_UINT: {
        uint64_t number;
        if (s_read_uint (reader, field->max, &number))
            return -2;
        s_store_bits (value, field->size, number);
        return 0;
    }
    case S_DOUBLE:
        return s_read_double (reader, (double *)value);
    case S_FLOAT:
        return s_read_float (reader, (float *)value);
    case S_TEXT:
    case S_TOKEN:
    case S_KIND:
    case S_UUID:
        return s_read_text (reader, field->type, (char *)value, field->size - 1u);
    case S_TRUE:
        return s_read_true (reader, (bool *)value);
    case S_WINDOWS:
        return s_read_windows (reader, (uint32_t *)value, field->size / sizeof (uint32_t));
    case S_MAP:
        return s_map_read (reader, field->schema, value);
    }
    return -2;
}

//  Reads a map of schema into base: every key known and read once, every
//  required field present. An optional field sets its presence flag, or
//  is zeroed when absent.
static int
s_map_read (s_reader_t *reader, const s_schema_t *schema, uint8_t *base)
{
    uint32_t count;
    if (s_read_map (reader, &count) || count < schema->required || count > schema->count)
        return -2;
    uint32_t seen = 0;
    uint32_t field = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        if (s_read_key (reader, &key))
            return -2;
        //  Senders write fields in table order, so the key is almost always
        //  the field after the last one; otherwise go round the table once.
        for (uint32_t tries = 1; schema->fields[field].key != key; tries++) {
            if (tries == schema->count)
                return -2;
            field = field + 1 == schema->count ? 0 : field + 1;
        }
        if ((seen >> field) & 1 || s_value_read (reader, &schema->fields[field], base))
            return -2;
        seen |= 1u << field;
        field = field + 1 == schema->count ? 0 : field + 1;
    }
    uint32_t required = (1u << schema->required) - 1;
    if ((seen & required) != required)
        return -2;
    for (uint32_t index = schema->required; index < schema->count; index++) {
        const s_field_t *optional = &schema->fields[index];
        bool present = (seen >> index) & 1;
        if (!present)
            memset (base + optional->offset, 0, optional->size);
        *(bool *)(base + optional->present) = present;
    }
    return 0;
}

//  A whole frame: one map of schema and nothing after it.
static int
s_frame_decode (const s_schema_t *schema, const void *data, size_t size, void *self)
{
    assert (self);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *)data, (const uint8_t *)data + size};
    if (s_map_read (&reader, schema, (uint8_t *)self) || reader.at != reader.end)
        return -2;
    return 0;
}

//  The frame at the start of a batch message; *used = its length.
static int
s_frame_decode_next (const s_schema_t *schema, const void *data, size_t size, void *self,
                     size_t *used)
{
    assert (self);
    assert (used);
    if (!data || size == 0)
        return -2;
    s_reader_t reader = {(const uint8_t *)data, (const uint8_t *)data + size};
    if (s_map_read (&reader, schema, (uint8_t *)self))
        return -2;
    *used = (size_t)(reader.at - (const uint8_t *)data);
    return 0;
}

//  --------------------------------------------------------------------------
//  Decoders: 0, or -2 malformed (*self undefined)

int
proto_reading_decode_next (const void *data, size_t size, proto_reading_t *self, size_t *used)
{
    return s_frame_decode_next (&s_reading_schema, data, size, self, used);
}

int
proto_verdict_decode_next (const void *data, size_t size, proto_verdict_t *self, size_t *used)
{
    return s_frame_decode_next (&s_verdict_schema, data, size, self, used);
}

int
proto_reading_decode (const void *data, size_t size, proto_reading_t *self)
{
    return s_frame_decode (&s_reading_schema, data, size, self);
}

int
proto_verdict_decode (const void *data, size_t size, proto_verdict_t *self)
{
    return s_frame_decode (&s_verdict_schema, data, size, self);
}

int
proto_event_decode (const void *data, size_t size, proto_event_t *self)
{
    return s_frame_decode (&s_event_schema, data, size, self);
}

int
proto_offline_decode (const void *data, size_t size, proto_offline_t *self)
{
    assert (self);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *)data, (const uint8_t *)data + size};
    uint32_t pairs;
    //  A reading's map has 13 pairs: a reading message fails here, at once.
    if (s_read_map (&reader, &pairs) || pairs != 3)
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < pairs; index++) {
        uint32_t key;
        if (s_read_key (&reader, &key))
            return -2;
        if (key == S_KEY1 ('v')) {
            if (s_mark (&seen, 1) || s_read_version (&reader))
                return -2;
        } else if (key == S_KEY1 ('t')) {
            if (s_mark (&seen, 2) || s_read_int (&reader, INT64_MIN, INT64_MAX, &self->ts))
                return -2;
        } else if (key == S_KEY2 ('p', 's')) {
            uint32_t items;
            if (s_mark (&seen, 4) || s_read_array (&reader, &items) || items == 0 ||
                items > PROTO_OFFLINE_MAX)
                return -2;
            for (uint32_t item = 0; item < items; item++)
                if (s_read_text (&reader, S_UUID, self->ports[item], PROTO_UUID_LEN))
                    return -2;
            self->count = items;
        } else
            return -2;
    }
    if (seen != 7 || reader.at != reader.end)
        return -2;
    return 0;
}

int
proto_acks_decode (const void *data, size_t size, proto_ack_t *acks, size_t max, size_t *count)
{
    assert (acks || max == 0);
    assert (count);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *)data, (const uint8_t *)data + size};
    uint32_t pairs;
    if (s_read_map (&reader, &pairs) || pairs != 2)
        return -2;
    uint32_t seen = 0;
    size_t received = 0;
    for (uint32_t index = 0; index < pairs; index++) {
        uint32_t key;
        if (s_read_key (&reader, &key))
            return -2;
        if (key == S_KEY1 ('v')) {
            if (s_mark (&seen, 1) || s_read_version (&reader))
                return -2;
        } else if (key == S_KEY4 ('a', 'c', 'k', 's')) {
            if (s_mark (&seen, 2) || s_acks_read (&reader, acks, max, &received))
                return -2;
        } else
            return -2;
    }
    if (seen != 3 || reader.at != reader.end)
        return -2;
    *count = received;
    return 0;
}

//  --------------------------------------------------------------------------
//  Weekly windows

bool
proto_window_valid (uint32_t window)
{
    if (window == 0)
        return true;
    uint32_t from = PROTO_WINDOW_FROM (window);
    uint32_t to = PROTO_WINDOW_TO (window);
    return (window >> 29) == 0 && PROTO_WINDOW_DAYS (window) != 0 && from < PROTO_WINDOW_MINUTES &&
           to <= PROTO_WINDOW_MINUTES && from != to;
}

//  --------------------------------------------------------------------------
//  Topic and partition

void
proto_event_topic (const proto_event_t *self, char topic[PROTO_TOPIC_MAX + 1])
{
    assert (self);
    assert (topic);
    snprintf (topic, PROTO_TOPIC_MAX + 1, "%.*s.%.*s", (int)strnlen (self->kind, S_KIND_MAX),
              self->kind, (int)strnlen (self->port, PROTO_UUID_LEN), self->port);
}

//  FNV-1a, 32 bit: tiny, stable across platforms, and good enough spread
//  for uuid text.
uint32_t
proto_partition (const char *port, uint32_t partitions)
{
    if (partitions == 0 || !port)
        return 0;
    uint32_t hash = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)port; *c; c++) {
        hash ^= *c;
        hash *= 16777619u;
    }
    return hash % partitions;
}

//  --------------------------------------------------------------------------
//  Self test

static bool
s_streq (const char *a, const char *b)
{
    return strcmp (a, b) == 0;
}

//  Deterministic generator so a failure reproduces.
static uint64_t
s_test_random (uint64_t *state)
{
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return *state;
}

static void
s_test_uuid (uint64_t *state, char uuid[PROTO_UUID_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (int index = 0; index < PROTO_UUID_LEN; index++)
        uuid[index] = (index == 8 || index == 13 || index == 18 || index == 23)
                          ? '-'
                          : hex[s_test_random (state) & 15];
    uuid[PROTO_UUID_LEN] = 0;
}

static void
s_test_fill (char *field, size_t length, char c)
{
    memset (field, c, length);
    field[length] = 0;
}

//  A reading with every field set, strings at their longest.
static void
s_test_reading (proto_reading_t *self)
{
    memset (self, 0, sizeof (*self));
    self->request = UINT64_MAX - 3;
    s_test_fill (self->gateway, PROTO_GATEWAY_MAX, 'g');
    self->user = 1234567890123;
    self->device = -42;
    strcpy (self->port, "6f1c2a4e-8b3d-4c5e-9f70-123456789abc");
    self->ts = 1764221000123;
    self->received = INT64_MIN + 1;
    self->voltage = 229.75;
    self->current = -0.0123;
    self->power = 3.1415926535897931;
    s_test_fill (self->key, PROTO_KEY_MAX, 'k');
    self->key[0] = '\xc3'; //  UTF-8 passes through untouched
    self->key[1] = '\xa9';
    self->settings.off_watts = 0.5f;
    self->settings.standby_watts = 12.25f;
    self->settings.min_phantom_seconds = INT32_MAX;
    self->settings.role = PROTO_ROLE_SHOULD_BE_OFF;
    //  Every field of a window at its widest, an unused one between
    self->settings.windows[0] = PROTO_WINDOW_PACK (0x7f, 1439, 1440);
    self->settings.windows[1] = PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60);
    self->settings.windows[3] = PROTO_WINDOW_PACK (0x40, 22 * 60, 0);
    s_test_fill (self->settings.timezone, PROTO_TIMEZONE_MAX, 'z');
    memcpy (self->settings.timezone, "Europe/Berlin", 13);
}

static void
s_test_episode (proto_episode_t *self)
{
    self->start = 1764221000000;
    self->end = 1764224600000;
    self->energy_wh = 4.75;
    self->mean_watts = 4.75;
    self->peak_watts = 6.5;
    self->samples = UINT32_MAX;
}

static void
s_test_reading_equal (const proto_reading_t *a, const proto_reading_t *b)
{
    assert (a->request == b->request);
    assert (s_streq (a->gateway, b->gateway));
    assert (a->user == b->user);
    assert (a->device == b->device);
    assert (s_streq (a->port, b->port));
    assert (a->ts == b->ts);
    assert (a->received == b->received);
    assert (a->voltage == b->voltage);
    assert (a->current == b->current);
    assert (a->power == b->power);
    assert (s_streq (a->key, b->key));
    assert (a->settings.off_watts == b->settings.off_watts);
    assert (a->settings.standby_watts == b->settings.standby_watts);
    assert (a->settings.min_phantom_seconds == b->settings.min_phantom_seconds);
    assert (a->settings.role == b->settings.role);
    for (size_t index = 0; index < PROTO_WINDOWS_MAX; index++)
        assert (a->settings.windows[index] == b->settings.windows[index]);
    assert (s_streq (a->settings.timezone, b->settings.timezone));
}

static void
s_test_episode_equal (const proto_episode_t *a, const proto_episode_t *b)
{
    assert (a->start == b->start);
    assert (a->end == b->end);
    assert (a->energy_wh == b->energy_wh);
    assert (a->mean_watts == b->mean_watts);
    assert (a->peak_watts == b->peak_watts);
    assert (a->samples == b->samples);
}

typedef enum { S_READING, S_VERDICT, S_ACKS, S_EVENT, S_OFFLINE } s_test_frame_t;

//  A decoded frame of any type; acks go to s_test_acks.
typedef union {
    proto_reading_t reading;
    proto_verdict_t verdict;
    proto_event_t event;
    proto_offline_t offline;
    size_t ack_count;
} s_test_decoded_t;

static proto_ack_t s_test_acks[PROTO_ACKS_MAX]; //  single-threaded test only

//  Decodes with the decoder of type into *decoded; 0 or -2.
static int
s_test_decode_into (s_test_frame_t type, const void *data, size_t size, s_test_decoded_t *decoded)
{
    switch (type) {
    case S_READING:
        return proto_reading_decode (data, size, &decoded->reading);
    case S_VERDICT:
        return proto_verdict_decode (data, size, &decoded->verdict);
    case S_ACKS:
        return proto_acks_decode (data, size, s_test_acks, PROTO_ACKS_MAX, &decoded->ack_count);
    case S_EVENT:
        return proto_event_decode (data, size, &decoded->event);
    case S_OFFLINE:
        return proto_offline_decode (data, size, &decoded->offline);
    }
    return -1;
}

static int
s_test_decode (s_test_frame_t type, const void *data, size_t size)
{
    s_test_decoded_t decoded;
    return s_test_decode_into (type, data, size, &decoded);
}

//  Encodes what s_test_decode_into gave; 0 or -1.
static int
s_test_encode (s_test_frame_t type, const s_test_decoded_t *decoded, proto_buffer_t *buffer)
{
    switch (type) {
    case S_READING:
        return proto_reading_encode (&decoded->reading, buffer);
    case S_VERDICT:
        return proto_verdict_encode (&decoded->verdict, buffer);
    case S_ACKS:
        return proto_acks_encode (s_test_acks, decoded->ack_count, buffer);
    case S_EVENT:
        return proto_event_encode (&decoded->event, buffer);
    case S_OFFLINE:
        return proto_offline_encode (&decoded->offline, buffer);
    }
    return -1;
}

//  Skips one value of our own (well-formed) frames; returns the next offset.
static size_t
s_test_skip (const uint8_t *data, size_t at)
{
    uint8_t marker = data[at];
    uint32_t count = 0;
    size_t next = at + 1;
    if (marker <= 0x7f || marker >= 0xe0 || marker == 0xc0 || marker == 0xc2 || marker == 0xc3)
        return next;
    if ((marker & 0xe0) == 0xa0)
        return next + (marker & 0x1f);
    if ((marker & 0xf0) == 0x80 || (marker & 0xf0) == 0x90) {
        count = (marker & 0x0f) * ((marker & 0xf0) == 0x80 ? 2 : 1);
        for (uint32_t index = 0; index < count; index++)
            next = s_test_skip (data, next);
        return next;
    }
    switch (marker) {
    case 0xcc:
    case 0xd0:
        return next + 1;
    case 0xcd:
    case 0xd1:
        return next + 2;
    case 0xca:
    case 0xce:
    case 0xd2:
        return next + 4;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        return next + 8;
    case 0xd9:
        return next + 1 + data[next];
    case 0xda:
        return next + 2 + s_big_endian (data + next, 2);
    case 0xdc:
    case 0xde:
        count = (uint32_t)s_big_endian (data + next, 2) * (marker == 0xde ? 2 : 1);
        next += 2;
        for (uint32_t index = 0; index < count; index++)
            next = s_test_skip (data, next);
        return next;
    }
    assert (false);
    return next;
}

//  Where a key and its value sit in a frame.
typedef struct {
    size_t key_at, key_end;     //  the key's bytes, header included
    size_t value_at, value_end; //  its value's bytes
} s_test_span_t;

//  Finds a dotted path ("rd.s.tz") in the map at offset at.
static int
s_test_find (const uint8_t *data, size_t at, const char *path, s_test_span_t *span)
{
    uint8_t marker = data[at];
    assert ((marker & 0xf0) == 0x80);
    uint32_t count = marker & 0x0f;
    size_t next = at + 1;
    const char *dot = strchr (path, '.');
    size_t segment = dot ? (size_t)(dot - path) : strlen (path);
    for (uint32_t index = 0; index < count; index++) {
        assert ((data[next] & 0xe0) == 0xa0);
        size_t key_length = data[next] & 0x1f;
        const char *key = (const char *)data + next + 1;
        span->key_at = next;
        span->key_end = next + 1 + key_length;
        span->value_at = span->key_end;
        span->value_end = s_test_skip (data, span->value_at);
        if (key_length == segment && memcmp (key, path, segment) == 0)
            return dot ? s_test_find (data, span->value_at, dot + 1, span) : 0;
        next = span->value_end;
    }
    return -1;
}

//  Decodes frame with bytes [at, end) replaced by length bytes of with;
//  returns the rc, and the frame in *decoded unless that is NULL.
static int
s_test_replace (s_test_frame_t type, const proto_buffer_t *frame, size_t at, size_t end,
                const void *with, size_t length, s_test_decoded_t *decoded)
{
    proto_buffer_t out;
    proto_buffer_init (&out);
    assert (s_buffer_write (&out, (const char *)frame->data, at) == 0);
    assert (s_buffer_write (&out, (const char *)with, length) == 0);
    assert (s_buffer_write (&out, (const char *)frame->data + end, frame->size - end) == 0);
    s_test_decoded_t scratch;
    int rc = s_test_decode_into (type, out.data, out.size, decoded ? decoded : &scratch);
    proto_buffer_release (&out);
    return rc;
}

//  Where path is in frame; a test naming a field that is not there is wrong.
static s_test_span_t
s_test_span (const proto_buffer_t *frame, const char *path)
{
    s_test_span_t span;
    if (s_test_find (frame->data, 0, path, &span)) {
        fprintf (stderr, "proto test: no field %s\n", path);
        assert (false);
    }
    return span;
}

//  Replaces the value at path with bytes, decodes, returns the rc.
static int
s_test_value (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const void *bytes,
              size_t length)
{
    s_test_span_t span = s_test_span (frame, path);
    return s_test_replace (type, frame, span.value_at, span.value_end, bytes, length, NULL);
}

//  Renames the key at path to name, decodes, returns the rc.
static int
s_test_rename (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const char *name)
{
    s_test_span_t span = s_test_span (frame, path);
    uint8_t key[32];
    size_t length = strlen (name);
    assert (length < 31);
    key[0] = (uint8_t)(0xa0 | length);
    memcpy (key + 1, name, length);
    return s_test_replace (type, frame, span.key_at, span.key_end, key, length + 1, NULL);
}

//  Replaces the value at path with a msgpack string of text.
static int
s_test_text (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const char *text,
             size_t length)
{
    uint8_t bytes[300];
    assert (length < 256);
    size_t header = 2;
    bytes[0] = 0xd9; //  str8 even when short: any width is legal
    bytes[1] = (uint8_t)length;
    memcpy (bytes + header, text, length);
    return s_test_value (type, frame, path, bytes, header + length);
}

//  What a field holds, for choosing values of the wrong type.
typedef enum {
    S_HOLDS_NUMBER,
    S_HOLDS_TEXT,
    S_HOLDS_MAP,
    S_HOLDS_TRUE,
    S_HOLDS_WINDOWS
} s_test_kind_t;

typedef struct {
    const char *path;
    s_test_kind_t kind;
} s_test_field_t;

//  Fields of one map; path prefix says where the map is in the frame.
typedef struct {
    const char *prefix;
    const s_test_field_t *fields;
    size_t count;
} s_test_group_t;

#define S_GROUP(prefix, fields)                                                                    \
    {                                                                                              \
        prefix, fields, S_COUNT (fields)                                                           \
    }
#define S_BYTES(literal) literal, sizeof (literal) - 1

//  The maps every frame shares. The reading's "v" is apart because a
//  reading inside a verdict has none.
static const s_test_field_t s_test_version_field[] = {{"v", S_HOLDS_NUMBER}};
static const s_test_field_t s_test_reading_fields[] = {
    {"rq", S_HOLDS_NUMBER}, {"gw", S_HOLDS_TEXT},  {"u", S_HOLDS_NUMBER}, {"d", S_HOLDS_NUMBER},
    {"p", S_HOLDS_TEXT},    {"t", S_HOLDS_NUMBER}, {"r", S_HOLDS_NUMBER}, {"V", S_HOLDS_NUMBER},
    {"I", S_HOLDS_NUMBER},  {"W", S_HOLDS_NUMBER}, {"k", S_HOLDS_TEXT},   {"s", S_HOLDS_MAP},
};
static const s_test_field_t s_test_settings_fields[] = {
    {"ow", S_HOLDS_NUMBER}, {"sw", S_HOLDS_NUMBER},  {"mp", S_HOLDS_NUMBER},
    {"ro", S_HOLDS_NUMBER}, {"os", S_HOLDS_WINDOWS}, {"tz", S_HOLDS_TEXT},
};
static const s_test_field_t s_test_episode_fields[] = {
    {"s", S_HOLDS_NUMBER},  {"e", S_HOLDS_NUMBER},  {"en", S_HOLDS_NUMBER},
    {"mw", S_HOLDS_NUMBER}, {"pk", S_HOLDS_NUMBER}, {"n", S_HOLDS_NUMBER},
};

//  The field at path rejects every value of a wrong type.
static void
s_test_wrong_types (s_test_frame_t type, const proto_buffer_t *frame, const char *path,
                    s_test_kind_t kind)
{
    struct {
        const char *bytes;
        size_t length;
        unsigned kinds; //  bit per s_test_kind_t it is wrong for
    } wrong[] = {
        {S_BYTES ("\xc0"), 31},              //  nil
        {S_BYTES ("\xc3"), 7 | 16},          //  true
        {S_BYTES ("\xc2"), 31},              //  false
        {S_BYTES ("\x90"), 15},              //  [] (no windows: right for windows)
        {S_BYTES ("\x91\x01"), 31},          //  [1] (minutes without days: no window)
        {S_BYTES ("\xc4\x01x"), 31},         //  bin
        {S_BYTES ("\xd4\x01\x00"), 31},      //  fixext
        {S_BYTES ("\x80"), 31},              //  {} (empty map lacks fields)
        {S_BYTES ("\xa1x"), 1 | 4 | 8 | 16}, //  "x"
        {S_BYTES ("\x07"), 2 | 4 | 8 | 16},  //  7
        {S_BYTES ("\x01"), 2 | 4 | 8 | 16},  //  1 (not true)
        {S_BYTES ("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"), 2 | 4 | 8 | 16}, //  1.5
    };
    for (size_t index = 0; index < S_COUNT (wrong); index++) {
        if (!(wrong[index].kinds & (1u << kind)))
            continue;
        if (s_test_value (type, frame, path, wrong[index].bytes, wrong[index].length) != -2) {
            fprintf (stderr, "proto test: %s accepted wrong value %zu\n", path, index);
            assert (false);
        }
    }
}

//  Every field of groups rejects values of a wrong type, and the frame is
//  malformed with the field's key renamed to any of renames (NULL-ended).
static void
s_test_fields (s_test_frame_t type, const proto_buffer_t *frame, const s_test_group_t *groups,
               size_t count, const char *const *renames)
{
    for (size_t group = 0; group < count; group++)
        for (size_t field = 0; field < groups[group].count; field++) {
            char path[32];
            snprintf (path, sizeof (path), "%s%s", groups[group].prefix,
                      groups[group].fields[field].path);
            s_test_wrong_types (type, frame, path, groups[group].fields[field].kind);
            for (const char *const *name = renames; *name; name++)
                assert (s_test_rename (type, frame, path, *name) == -2);
        }
}

//  An unknown key
static const char *const s_test_unknown[] = {"zz", NULL};

//  Every strict prefix of a valid frame is malformed; so is a trailing byte.
static void
s_test_truncations (s_test_frame_t type, const proto_buffer_t *frame)
{
    assert (s_test_decode (type, frame->data, frame->size) == 0);
    for (size_t size = 0; size < frame->size; size++) {
        //  A copy of exactly size bytes, so ASan/valgrind see any overread
        uint8_t *prefix = (uint8_t *)malloc (size ? size : 1);
        assert (prefix);
        memcpy (prefix, frame->data, size);
        assert (s_test_decode (type, prefix, size) == -2);
        free (prefix);
    }
    uint8_t *longer = (uint8_t *)malloc (frame->size + 1);
    assert (longer);
    memcpy (longer, frame->data, frame->size);
    longer[frame->size] = 0xc0;
    assert (s_test_decode (type, longer, frame->size + 1) == -2);
    longer[frame->size] = 0x00;
    assert (s_test_decode (type, longer, frame->size + 1) == -2);
    free (longer);
}

//  Random byte flips of a valid frame: malformed or valid, never a crash;
//  a mutant that decodes must survive a re-encode and decode.
static void
s_test_mutations (s_test_frame_t type, const proto_buffer_t *frame, uint64_t *state, int rounds)
{
    uint8_t *copy = (uint8_t *)malloc (frame->size);
    assert (copy);
    proto_buffer_t again;
    proto_buffer_init (&again);
    for (int round = 0; round < rounds; round++) {
        memcpy (copy, frame->data, frame->size);
        int flips = 1 + (int)(s_test_random (state) % 4);
        for (int flip = 0; flip < flips; flip++)
            copy[s_test_random (state) % frame->size] = (uint8_t)s_test_random (state);
        size_t size =
            frame->size - (s_test_random (state) % 3 == 0 ? s_test_random (state) % 4 : 0);
        if (size > frame->size)
            size = frame->size;
        s_test_decoded_t decoded;
        int rc = s_test_decode_into (type, copy, size, &decoded);
        assert (rc == 0 || rc == -2);
        if (rc == 0 && type != S_ACKS) {
            assert (s_test_encode (type, &decoded, &again) == 0);
            assert (s_test_decode_into (type, again.data, again.size, &decoded) == 0);
        }
    }
    proto_buffer_release (&again);
    free (copy);
}

static void
s_test_partition (void)
{
    //  Known values (FNV-1a 32 computed independently); other services and
    //  test tools must agree with these.
    assert (proto_partition ("00000000-0000-0000-0000-000000000000", 0xffffffffu) ==
            3192360657u % 0xffffffffu);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 0xffffffffu) == 709961738u);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 2) == 0);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 4) == 2);
    assert (proto_partition ("00000000-0000-0000-0000-000000000000", 4) == 1);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 0) == 0);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 1) == 0);

    //  Spread over 1000 random ports: each partition gets its fair share
    //  within 10 points (2: 40-60%, 4: 15-35%)
    uint64_t state = 0x9e3779b97f4a7c15ull;
    uint32_t partitions[] = {2, 4};
    for (size_t which = 0; which < 2; which++) {
        int hits[4] = {0};
        for (int index = 0; index < 1000; index++) {
            char uuid[PROTO_UUID_LEN + 1];
            s_test_uuid (&state, uuid);
            uint32_t partition = proto_partition (uuid, partitions[which]);
            assert (partition < partitions[which]);
            assert (partition == proto_partition (uuid, partitions[which]));
            hits[partition]++;
        }
        for (uint32_t partition = 0; partition < partitions[which]; partition++)
            assert (abs (hits[partition] - 1000 / (int)partitions[which]) <= 100);
    }
}

static void
s_test_status_names (void)
{
    assert (s_streq (proto_status_name (PROTO_STATUS_PHANTOM), "phantom"));
    assert (s_streq (proto_status_name (PROTO_STATUS_OFFLINE), "offline"));
    assert (s_streq (proto_status_name (-1), "unknown"));
    assert (s_streq (proto_status_name (6), "unknown"));
    for (int status = 0; status <= S_STATUS_LAST; status++)
        assert ((int)proto_status_parse (proto_status_name (status)) == status);
    assert (proto_status_parse ("nonsense") == PROTO_STATUS_UNKNOWN);
    assert (proto_status_parse (NULL) == PROTO_STATUS_UNKNOWN);
}

//  Reading round trip, field by field; leaves a frame with every field
//  set in buffer, strings short enough for str8 splices.
static void
s_test_reading_round_trip (proto_buffer_t *buffer, bool verbose)
{
    proto_reading_t reading, reading_out;
    s_test_reading (&reading);
    assert (proto_reading_encode (&reading, buffer) == 0);
    memset (&reading_out, 0x5a, sizeof (reading_out));
    assert (proto_reading_decode (buffer->data, buffer->size, &reading_out) == 0);
    s_test_reading_equal (&reading, &reading_out);
    if (verbose)
        printf ("reading frame %zu bytes; ", buffer->size);
    //  Encoding twice reuses the buffer and gives the same bytes
    size_t first_size = buffer->size;
    assert (proto_reading_encode (&reading_out, buffer) == 0);
    assert (buffer->size == first_size);

    //  Short strings and zero values round-trip too
    proto_reading_t small = reading;
    strcpy (small.gateway, "g");
    small.key[0] = 0;
    small.settings.timezone[0] = 0;
    small.request = 0;
    small.power = 0;
    small.settings.role = PROTO_ROLE_STANDBY;
    memset (small.settings.windows, 0, sizeof small.settings.windows);
    assert (proto_reading_encode (&small, buffer) == 0);
    assert (proto_reading_decode (buffer->data, buffer->size, &reading_out) == 0);
    s_test_reading_equal (&small, &reading_out);

    proto_reading_t malformed = reading;
    malformed.settings.timezone[10] = 0;
    malformed.key[10] = 0;
    assert (proto_reading_encode (&malformed, buffer) == 0);
}

//  Keys and map headers of a reading frame
static void
s_test_reading_keys (const proto_buffer_t *buffer)
{
    s_test_truncations (S_READING, buffer);
    static const s_test_group_t groups[] = {
        S_GROUP ("", s_test_version_field),
        S_GROUP ("", s_test_reading_fields),
        S_GROUP ("s.", s_test_settings_fields),
    };
    //  Each key renamed to an unknown one, or to a duplicate of another
    static const char *const renames[] = {"zz", "", "vvvvv", NULL};
    s_test_fields (S_READING, buffer, groups, S_COUNT (groups), renames);
    assert (s_test_rename (S_READING, buffer, "rq", "gw") == -2);
    assert (s_test_rename (S_READING, buffer, "s.ow", "sw") == -2);
    //  A key with a NUL in it is not the key without
    s_test_span_t span = s_test_span (buffer, "u");
    size_t at = span.key_at, end = span.key_end;
    assert (s_test_replace (S_READING, buffer, at, end, "\xa2u\0", 3, NULL) == -2);
    assert (s_test_replace (S_READING, buffer, at, end, "\xa2\0u", 3, NULL) == -2);
    assert (s_test_replace (S_READING, buffer, at, end, "\xd9\x01u", 3, NULL) == 0);
    //  Map header: too many, too few, map16 form accepted, not a map
    assert (buffer->data[0] == 0x8d);
    uint8_t more = 0x8e, fewer = 0x8c, wide[] = {0xde, 0x00, 0x0d}, wider[] = {0xdf, 0, 0, 0, 0x0d},
            huge[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
    assert (s_test_replace (S_READING, buffer, 0, 1, &more, 1, NULL) == -2);
    assert (s_test_replace (S_READING, buffer, 0, 1, &fewer, 1, NULL) == -2);
    assert (s_test_replace (S_READING, buffer, 0, 1, wide, 3, NULL) == 0);
    assert (s_test_replace (S_READING, buffer, 0, 1, wider, 5, NULL) == 0);
    assert (s_test_replace (S_READING, buffer, 0, 1, huge, 5, NULL) == -2);
    //  A reading frame is not a verdict, event or ack frame, and back
    assert (s_test_decode (S_VERDICT, buffer->data, buffer->size) == -2);
    assert (s_test_decode (S_EVENT, buffer->data, buffer->size) == -2);
    assert (s_test_decode (S_ACKS, buffer->data, buffer->size) == -2);
}

//  Versions and numbers of a reading frame
static void
s_test_reading_numbers (const proto_buffer_t *buffer)
{
    //  Versions
    assert (s_test_value (S_READING, buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_READING, buffer, "v", S_BYTES ("\x00")) == -2);
    assert (s_test_value (S_READING, buffer, "v", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, buffer, "v", S_BYTES ("\xd3\0\0\0\0\0\0\0\x01")) == 0);
    //  Integer widths and ranges
    assert (s_test_value (S_READING, buffer, "rq", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, buffer, "rq", S_BYTES ("\xd0\x05")) == 0);
    assert (s_test_value (S_READING, buffer, "u", S_BYTES ("\xcf\x80\0\0\0\0\0\0\0")) == -2);
    assert (s_test_value (S_READING, buffer, "u", S_BYTES ("\xd3\x80\0\0\0\0\0\0\0")) == 0);
    assert (s_test_value (S_READING, buffer, "u",
                          S_BYTES ("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff")) == 0);
    assert (s_test_value (S_READING, buffer, "s.mp", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, buffer, "s.mp", S_BYTES ("\xce\x80\0\0\0")) == -2);
    assert (s_test_value (S_READING, buffer, "s.mp", S_BYTES ("\xce\x7f\xff\xff\xff")) == 0);
    assert (s_test_value (S_READING, buffer, "s.ro", S_BYTES ("\x03")) == -2);
    assert (s_test_value (S_READING, buffer, "s.ro", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, buffer, "s.ro", S_BYTES ("\x00")) == 0);
    assert (s_test_value (S_READING, buffer, "s.ro", S_BYTES ("\x02")) == 0);
    //  Doubles: NaN and infinities refused anywhere, integers accepted
    const char *doubles[] = {"V", "I", "W"};
    for (size_t index = 0; index < 3; index++) {
        assert (s_test_value (S_READING, buffer, doubles[index],
                              S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2); //  NaN
        assert (s_test_value (S_READING, buffer, doubles[index],
                              S_BYTES ("\xcb\x7f\xf0\0\0\0\0\0\0")) == -2); //  +Inf
        assert (s_test_value (S_READING, buffer, doubles[index],
                              S_BYTES ("\xcb\xff\xf0\0\0\0\0\0\0")) == -2); //  -Inf
        assert (s_test_value (S_READING, buffer, doubles[index],
                              S_BYTES ("\xca\x7f\xc0\0\0")) == -2); //  NaN32
        assert (s_test_value (S_READING, buffer, doubles[index], S_BYTES ("\xca\x3f\xc0\0\0")) ==
                0); //  1.5f
        assert (s_test_value (S_READING, buffer, doubles[index], S_BYTES ("\xfb")) == 0);
    }
    //  An integer power decodes as that many watts
    s_test_span_t span = s_test_span (buffer, "W");
    s_test_decoded_t decoded;
    assert (s_test_replace (S_READING, buffer, span.value_at, span.value_end, "\xcd\x01\x2c", 3,
                            &decoded) == 0);
    assert (decoded.reading.power == 300.0);
    assert (s_test_value (S_READING, buffer, "s.ow", S_BYTES ("\xca\x7f\xc0\0\0")) == -2);
    assert (s_test_value (S_READING, buffer, "s.ow", S_BYTES ("\xcb\x48\x0c\0\0\0\0\0\0")) ==
            -2); //  1e39 > FLT_MAX
    assert (s_test_value (S_READING, buffer, "s.sw",
                          S_BYTES ("\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18")) == 0);
}

//  Replaces the settings' windows with count uint32 values (in the
//  32-bit form, as any width is legal), decodes, returns the rc and the
//  decoded windows.
static int
s_test_windows (const proto_buffer_t *buffer, const uint32_t *values, size_t count,
                uint32_t windows[PROTO_WINDOWS_MAX])
{
    uint8_t bytes[1 + 5 * 8];
    assert (count <= 8);
    size_t length = 0;
    bytes[length++] = (uint8_t)(0x90 | count);
    for (size_t index = 0; index < count; index++) {
        bytes[length++] = 0xce;
        for (int shift = 24; shift >= 0; shift -= 8)
            bytes[length++] = (uint8_t)(values[index] >> shift);
    }
    s_test_span_t span = s_test_span (buffer, "s.os");
    s_test_decoded_t decoded;
    int rc =
        s_test_replace (S_READING, buffer, span.value_at, span.value_end, bytes, length, &decoded);
    if (rc == 0 && windows)
        memcpy (windows, decoded.reading.settings.windows, sizeof decoded.reading.settings.windows);
    return rc;
}

//  The weekly windows of a reading's settings: each value checked, at
//  most PROTO_WINDOWS_MAX, the ones not sent unused
static void
s_test_reading_windows (const proto_buffer_t *buffer)
{
    uint32_t windows[PROTO_WINDOWS_MAX];
    const uint32_t office = PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60);
    const uint32_t night = PROTO_WINDOW_PACK (0x7f, 22 * 60, 7 * 60);
    const uint32_t one[] = {office};
    memset (windows, 0x5a, sizeof windows);
    assert (s_test_windows (buffer, one, 1, windows) == 0);
    assert (windows[0] == office && windows[1] == 0 && windows[2] == 0 && windows[3] == 0);
    const uint32_t four[] = {night, 0, office, PROTO_WINDOW_PACK (0x40, 0, 1440)};
    assert (s_test_windows (buffer, four, 4, windows) == 0);
    assert (memcmp (windows, four, sizeof four) == 0);
    assert (s_test_windows (buffer, four, 0, windows) == 0);
    assert (windows[0] == 0 && windows[3] == 0);
    const uint32_t five[] = {night, office, night, office, night};
    assert (s_test_windows (buffer, five, 5, NULL) == -2);
    //  One bad value spoils the frame
    const uint32_t bad[] = {
        PROTO_WINDOW_PACK (1, 1440, 0),            //  starts at the end of its day
        PROTO_WINDOW_PACK (1, 0, 1441),            //  ends after midnight
        PROTO_WINDOW_PACK (1, 2047, 60),           //  from out of range
        PROTO_WINDOW_PACK (0, 60, 120),            //  minutes without days
        PROTO_WINDOW_PACK (0x80, 60, 120),         //  an eighth day
        PROTO_WINDOW_PACK (1, 60, 120) | 1u << 31, //  bits above the days
        PROTO_WINDOW_PACK (1, 600, 600),           //  from = to: no length
    };
    for (size_t index = 0; index < S_COUNT (bad); index++) {
        assert (!proto_window_valid (bad[index]));
        const uint32_t pair[] = {office, bad[index]};
        assert (s_test_windows (buffer, pair, 2, NULL) == -2);
    }
    assert (proto_window_valid (0) && proto_window_valid (office) && proto_window_valid (night));
    //  Other encodings: array16 accepted; a negative, a float, nil refused
    assert (s_test_value (S_READING, buffer, "s.os",
                          S_BYTES ("\xdc\x00\x01\xce\x00\x40\x00\x01")) == 0);
    assert (s_test_value (S_READING, buffer, "s.os", S_BYTES ("\x91\xff")) == -2);
    assert (s_test_value (S_READING, buffer, "s.os",
                          S_BYTES ("\x91\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00")) == -2);
    assert (s_test_value (S_READING, buffer, "s.os", S_BYTES ("\x91\xc0")) == -2);
    assert (s_test_value (S_READING, buffer, "s.os", S_BYTES ("\xdd\xff\xff\xff\xff")) == -2);
}

//  Strings of a reading frame: bounds, NULs, character sets
static void
s_test_reading_texts (const proto_buffer_t *buffer)
{
    char text[300];
    memset (text, 'a', sizeof (text));
    assert (s_test_text (S_READING, buffer, "gw", text, PROTO_GATEWAY_MAX) == 0);
    assert (s_test_text (S_READING, buffer, "gw", text, PROTO_GATEWAY_MAX + 1) == -2);
    assert (s_test_text (S_READING, buffer, "gw", text, 0) == -2);
    assert (s_test_text (S_READING, buffer, "gw", "g w", 3) == -2);
    assert (s_test_text (S_READING, buffer, "gw", "g\nw", 3) == -2);
    assert (s_test_text (S_READING, buffer, "k", text, PROTO_KEY_MAX) == 0);
    assert (s_test_text (S_READING, buffer, "k", text, PROTO_KEY_MAX + 1) == -2);
    assert (s_test_text (S_READING, buffer, "k", text, 200) == -2);
    assert (s_test_text (S_READING, buffer, "k", "", 0) == 0);
    assert (s_test_text (S_READING, buffer, "k", "a\0b", 3) == -2);
    assert (s_test_text (S_READING, buffer, "s.tz", text, PROTO_TIMEZONE_MAX) == 0);
    assert (s_test_text (S_READING, buffer, "s.tz", text, PROTO_TIMEZONE_MAX + 1) == -2);
    assert (s_test_text (S_READING, buffer, "s.tz", "Europe\0Paris", 12) == -2);
    assert (s_test_value (S_READING, buffer, "k",
                          S_BYTES ("\xda\x00\x03"
                                   "abc")) == 0);
    assert (s_test_value (S_READING, buffer, "k",
                          S_BYTES ("\xdb\x00\x00\x00\x03"
                                   "abc")) == 0);
    assert (s_test_value (S_READING, buffer, "k",
                          S_BYTES ("\xdb\xff\xff\xff\xff"
                                   "abc")) == -2);
    assert (s_test_value (S_READING, buffer, "k",
                          S_BYTES ("\xc5\x00\x03"
                                   "abc")) == -2);
    const char *bad_ports[] = {
        "6F1C2A4E-8B3D-4C5E-9F70-123456789ABC",  //  upper case
        "6f1c2a4e-8b3d-4c5e-9f70-123456789ab",   //  35
        "6f1c2a4e-8b3d-4c5e-9f70-123456789abcd", //  37
        "6f1c2a4e8b3d-4c5e-9f70-123456789abc-",  //  dash moved
        "6f1c2a4e-8b3d-4c5e-9f70-12345678gabc",  //  not hex
        ("6f1c2a4e-8b3d-4c5e-9f70-1234567\0"
         "9abc"), //  NUL
        "{f1c2a4e-8b3d-4c5e-9f70-123456789ab}",
        "",
    };
    for (size_t index = 0; index < S_COUNT (bad_ports); index++) {
        size_t length = index == 5 ? 36 : strlen (bad_ports[index]);
        assert (s_test_text (S_READING, buffer, "p", bad_ports[index], length) == -2);
    }
    assert (s_test_text (S_READING, buffer, "p", "00000000-0000-0000-0000-000000000000", 36) == 0);
}

static void
s_test_reading_frames (proto_buffer_t *buffer, uint64_t *state, bool verbose)
{
    s_test_reading_round_trip (buffer, verbose);
    s_test_reading_keys (buffer);
    s_test_reading_numbers (buffer);
    s_test_reading_windows (buffer);
    s_test_reading_texts (buffer);
    s_test_mutations (S_READING, buffer, state, 20000);
}

//  Encodes verdict into buffer and decodes it again: every field comes
//  back, an absent episode as zeros, whatever the output held.
static void
s_test_verdict_trip (const proto_verdict_t *verdict, proto_buffer_t *buffer)
{
    proto_verdict_t out;
    assert (proto_verdict_encode (verdict, buffer) == 0);
    memset (&out, 0x5a, sizeof (out));
    assert (proto_verdict_decode (buffer->data, buffer->size, &out) == 0);
    s_test_reading_equal (&verdict->reading, &out.reading);
    assert (out.status == verdict->status);
    assert (out.previous == verdict->previous);
    assert (out.has_episode == verdict->has_episode);
    assert (out.no_reading == verdict->no_reading);
    if (verdict->has_episode)
        s_test_episode_equal (&verdict->episode, &out.episode);
    else
        assert (out.episode.samples == 0 && out.episode.start == 0);
}

//  Verdict round trip, with and without an episode
static void
s_test_verdict_frames (proto_buffer_t *buffer, uint64_t *state)
{
    proto_verdict_t verdict;
    memset (&verdict, 0, sizeof (verdict));
    s_test_reading (&verdict.reading);
    verdict.status = PROTO_STATUS_OFFLINE;
    verdict.previous = PROTO_STATUS_PHANTOM;
    verdict.has_episode = true;
    s_test_episode (&verdict.episode);
    //  Without the optional keys: flags clear, and the frame is what
    //  senders that predate them wrote (map of 5, no "nr")
    s_test_verdict_trip (&verdict, buffer);
    assert (buffer->data[0] == 0x85);
    s_test_span_t span;
    assert (s_test_find (buffer->data, 0, "nr", &span) == -1);
    s_test_truncations (S_VERDICT, buffer);
    static const s_test_field_t top[] = {
        {"rd", S_HOLDS_MAP}, {"st", S_HOLDS_NUMBER}, {"pv", S_HOLDS_NUMBER}, {"ep", S_HOLDS_MAP}};
    static const s_test_group_t groups[] = {
        S_GROUP ("", s_test_version_field),     S_GROUP ("", top),
        S_GROUP ("rd.", s_test_reading_fields), S_GROUP ("rd.s.", s_test_settings_fields),
        S_GROUP ("ep.", s_test_episode_fields),
    };
    s_test_fields (S_VERDICT, buffer, groups, S_COUNT (groups), s_test_unknown);
    assert (s_test_rename (S_VERDICT, buffer, "rd.rq", "v") == -2); //  no "v" inside
    assert (s_test_value (S_VERDICT, buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "st", S_BYTES ("\x06")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "pv", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "st", S_BYTES ("\x05")) == 0);
    assert (s_test_value (S_VERDICT, buffer, "ep.n", S_BYTES ("\xcf\0\0\0\x01\0\0\0\0")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "ep.n", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "ep.en", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_value (S_VERDICT, buffer, "rd.W", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_text (S_VERDICT, buffer, "rd.p", "not-a-uuid", 10) == -2);
    s_test_mutations (S_VERDICT, buffer, state, 20000);
    verdict.has_episode = false;
    verdict.status = PROTO_STATUS_ACTIVE;
    verdict.previous = PROTO_STATUS_UNKNOWN;
    s_test_verdict_trip (&verdict, buffer);
    s_test_truncations (S_VERDICT, buffer);
    assert (s_test_rename (S_VERDICT, buffer, "st", "ep") == -2);
}

//  Verdicts with the optional keys
static void
s_test_verdict_optional (proto_buffer_t *buffer, uint64_t *state)
{
    proto_verdict_t verdict;
    memset (&verdict, 0, sizeof (verdict));
    s_test_reading (&verdict.reading);
    s_test_episode (&verdict.episode);

    //  No-reading verdict with a closed episode: all 6 keys
    verdict.no_reading = true;
    verdict.has_episode = true;
    verdict.status = PROTO_STATUS_OFFLINE;
    verdict.previous = PROTO_STATUS_PHANTOM;
    strcpy (verdict.reading.gateway, PROTO_GATEWAY_NONE);
    s_test_verdict_trip (&verdict, buffer);
    assert (buffer->data[0] == 0x86);
    s_test_truncations (S_VERDICT, buffer);
    static const s_test_field_t optional[] = {{"nr", S_HOLDS_TRUE}};
    static const s_test_group_t groups[] = {S_GROUP ("", optional)};
    s_test_fields (S_VERDICT, buffer, groups, 1, s_test_unknown);
    assert (s_test_rename (S_VERDICT, buffer, "nr", "st") == -2); //  repeated key
    assert (s_test_rename (S_VERDICT, buffer, "nr", "bl") == -2); //  a key no longer sent
    //  Seven keys are one too many, even if the seventh were known
    uint8_t seven = 0x87;
    assert (s_test_replace (S_VERDICT, buffer, 0, 1, &seven, 1, NULL) == -2);
    s_test_mutations (S_VERDICT, buffer, state, 20000);
    //  Required keys stay required with the optional ones around: the
    //  frame without "pv" (and a map of 5) is malformed
    s_test_span_t span = s_test_span (buffer, "pv");
    proto_buffer_t cut;
    proto_buffer_init (&cut);
    assert (s_buffer_write (&cut, (const char *)buffer->data, span.key_at) == 0);
    assert (s_buffer_write (&cut, (const char *)buffer->data + span.value_end,
                            buffer->size - span.value_end) == 0);
    cut.data[0] = 0x85;
    assert (s_test_decode (S_VERDICT, cut.data, cut.size) == -2);
    proto_buffer_release (&cut);
    //  The optional key alone
    verdict.has_episode = false;
    s_test_verdict_trip (&verdict, buffer);
    assert (buffer->data[0] == 0x85);
    s_test_truncations (S_VERDICT, buffer);
}

//  Event round trip, with and without an episode
static void
s_test_event_frames (proto_buffer_t *buffer, uint64_t *state)
{
    proto_event_t event, event_out;
    memset (&event, 0, sizeof (event));
    strcpy (event.kind, "phantom.start");
    event.user = 77;
    strcpy (event.port, "6f1c2a4e-8b3d-4c5e-9f70-123456789abc");
    event.ts = 1764221000123;
    event.watts = 2.5;
    event.status = PROTO_STATUS_PHANTOM;
    event.previous = PROTO_STATUS_IDLE;
    event.has_episode = true;
    s_test_episode (&event.episode);
    event.episode.end = 0;
    assert (proto_event_encode (&event, buffer) == 0);
    memset (&event_out, 0x5a, sizeof (event_out));
    assert (proto_event_decode (buffer->data, buffer->size, &event_out) == 0);
    assert (s_streq (event_out.kind, "phantom.start"));
    assert (event_out.user == 77);
    assert (s_streq (event_out.port, event.port));
    assert (event_out.ts == event.ts);
    assert (event_out.watts == 2.5);
    assert (event_out.status == PROTO_STATUS_PHANTOM);
    assert (event_out.previous == PROTO_STATUS_IDLE);
    assert (event_out.has_episode);
    s_test_episode_equal (&event.episode, &event_out.episode);
    char topic[PROTO_TOPIC_MAX + 1];
    proto_event_topic (&event_out, topic);
    assert (s_streq (topic, "phantom.start.6f1c2a4e-8b3d-4c5e-9f70-123456789abc"));
    s_test_truncations (S_EVENT, buffer);
    static const s_test_field_t top[] = {
        {"v", S_HOLDS_NUMBER},  {"k", S_HOLDS_TEXT},    {"u", S_HOLDS_NUMBER},
        {"p", S_HOLDS_TEXT},    {"t", S_HOLDS_NUMBER},  {"W", S_HOLDS_NUMBER},
        {"st", S_HOLDS_NUMBER}, {"pv", S_HOLDS_NUMBER}, {"ep", S_HOLDS_MAP},
    };
    static const s_test_group_t groups[] = {S_GROUP ("", top),
                                            S_GROUP ("ep.", s_test_episode_fields)};
    s_test_fields (S_EVENT, buffer, groups, S_COUNT (groups), s_test_unknown);
    assert (s_test_value (S_EVENT, buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_EVENT, buffer, "st", S_BYTES ("\x06")) == -2);
    assert (s_test_value (S_EVENT, buffer, "pv", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_EVENT, buffer, "W", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_text (S_EVENT, buffer, "k", "status", 6) == 0);
    assert (s_test_text (S_EVENT, buffer, "k", "Status", 6) == -2);
    assert (s_test_text (S_EVENT, buffer, "k", "phantom start", 13) == -2);
    assert (s_test_text (S_EVENT, buffer, "k", "", 0) == -2);
    assert (s_test_text (S_EVENT, buffer, "k", "phantom.start.phantom.ee", 24) == -2);
    assert (s_test_text (S_EVENT, buffer, "k", "phantom.start.phantom.e", 23) == 0);
    assert (s_test_text (S_EVENT, buffer, "p", "6f1c2a4e-8b3d-4c5e-9f70-123456789abC", 36) == -2);
    s_test_mutations (S_EVENT, buffer, state, 20000);
    strcpy (event.kind, "status");
    event.has_episode = false;
    assert (proto_event_encode (&event, buffer) == 0);
    assert (proto_event_decode (buffer->data, buffer->size, &event_out) == 0);
    assert (!event_out.has_episode);
    assert (s_streq (event_out.kind, "status"));
    proto_event_topic (&event_out, topic);
    assert (s_streq (topic, "status.6f1c2a4e-8b3d-4c5e-9f70-123456789abc"));
    s_test_truncations (S_EVENT, buffer);
}

//  The optional live flag: absent unless set, carried through a verdict.
static void
s_test_reading_live (proto_buffer_t *buffer)
{
    proto_reading_t reading, out;
    s_test_reading (&reading);
    assert (!reading.live);
    assert (proto_reading_encode (&reading, buffer) == 0);
    size_t plain = buffer->size;
    assert (buffer->data[0] == 0x8d);
    reading.live = true;
    assert (proto_reading_encode (&reading, buffer) == 0);
    assert (buffer->data[0] == 0x8e && buffer->size == plain + 4);
    memset (&out, 0, sizeof (out));
    assert (proto_reading_decode (buffer->data, buffer->size, &out) == 0 && out.live);
    assert (s_test_value (S_READING, buffer, "lv", S_BYTES ("\xc2")) == -2); //  false is never sent
    assert (s_test_value (S_READING, buffer, "lv", S_BYTES ("\x01")) == -2);
    s_test_truncations (S_READING, buffer);
    proto_verdict_t verdict, verdict_out;
    memset (&verdict, 0, sizeof (verdict));
    verdict.reading = reading;
    assert (proto_verdict_encode (&verdict, buffer) == 0);
    assert (proto_verdict_decode (buffer->data, buffer->size, &verdict_out) == 0);
    assert (verdict_out.reading.live);
    reading.live = false;
    assert (proto_reading_encode (&reading, buffer) == 0);
    assert (proto_reading_decode (buffer->data, buffer->size, &out) == 0 && !out.live);
}

//  Offline: round trip, bounds, every prefix and flipped bytes; neither
//  a reading frame nor an offline frame passes for the other.
static void
s_test_offline_frames (proto_buffer_t *buffer, uint64_t *state)
{
    static proto_offline_t offline, offline_out;
    memset (&offline, 0, sizeof (offline));
    offline.ts = 1764221000123;
    offline.count = PROTO_OFFLINE_MAX;
    for (uint32_t index = 0; index < PROTO_OFFLINE_MAX; index++)
        s_test_uuid (state, offline.ports[index]);
    assert (proto_offline_encode (&offline, buffer) == 0);
    memset (&offline_out, 0x5a, sizeof (offline_out));
    assert (proto_offline_decode (buffer->data, buffer->size, &offline_out) == 0);
    assert (offline_out.ts == offline.ts && offline_out.count == PROTO_OFFLINE_MAX);
    for (uint32_t index = 0; index < PROTO_OFFLINE_MAX; index++)
        assert (s_streq (offline_out.ports[index], offline.ports[index]));
    //  One port more than the bound is refused both ways.
    assert (s_test_value (S_OFFLINE, buffer, "ps", S_BYTES ("\x90")) == -2);
    offline.count = PROTO_OFFLINE_MAX + 1;
    assert (proto_offline_encode (&offline, buffer) == -1);
    offline.count = 0;
    assert (proto_offline_encode (&offline, buffer) == -1);

    offline.count = 2;
    offline.ts = -1;
    assert (proto_offline_encode (&offline, buffer) == 0);
    assert (proto_offline_decode (buffer->data, buffer->size, &offline_out) == 0);
    assert (offline_out.ts == -1 && offline_out.count == 2);
    assert (s_streq (offline_out.ports[1], offline.ports[1]));
    s_test_truncations (S_OFFLINE, buffer);
    static const s_test_field_t top[] = {
        {"v", S_HOLDS_NUMBER},
        {"t", S_HOLDS_NUMBER},
        {"ps", S_HOLDS_WINDOWS}, //  an array: the same wrong values
    };
    static const s_test_group_t groups[] = {S_GROUP ("", top)};
    s_test_fields (S_OFFLINE, buffer, groups, S_COUNT (groups), s_test_unknown);
    assert (s_test_value (S_OFFLINE, buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_rename (S_OFFLINE, buffer, "ps", "p") == -2);
    assert (s_test_rename (S_OFFLINE, buffer, "t", "ts") == -2);
    //  Ports are canonical uuids, as everywhere
    char upper[] = "\x91\xd9\x24"
                   "6F1C2A4E-8B3D-4C5E-9F70-123456789ABC";
    assert (s_test_value (S_OFFLINE, buffer, "ps", upper, sizeof (upper) - 1) == -2);
    char lower[] = "\x91\xd9\x24"
                   "6f1c2a4e-8b3d-4c5e-9f70-123456789abc";
    assert (s_test_value (S_OFFLINE, buffer, "ps", lower, sizeof (lower) - 1) == 0);
    assert (s_test_value (S_OFFLINE, buffer, "ps", S_BYTES ("\x91\xa0")) == -2);
    assert (s_test_value (S_OFFLINE, buffer, "ps", S_BYTES ("\x91\x01")) == -2);
    s_test_mutations (S_OFFLINE, buffer, state, 20000);
    //  Not a reading, and a reading is not one: the detector tells them apart
    assert (s_test_decode (S_READING, buffer->data, buffer->size) == -2);
    proto_reading_t reading;
    s_test_reading (&reading);
    assert (proto_reading_encode (&reading, buffer) == 0);
    assert (s_test_decode (S_OFFLINE, buffer->data, buffer->size) == -2);
}

//  Acks: round trip, bounds, element checks
static void
s_test_acks_frames (proto_buffer_t *buffer, uint64_t *state)
{
    static proto_ack_t acks[PROTO_ACKS_MAX], acks_out[PROTO_ACKS_MAX];
    for (size_t index = 0; index < PROTO_ACKS_MAX; index++) {
        acks[index].request = index * 0x100000001ull + (index == 1 ? UINT64_MAX - 2 : 0);
        acks[index].code = (uint8_t)(index % 3);
        acks[index].id = (int64_t)index * 1000003 - 5;
        acks[index].ts = 1764221000000 + (int64_t)index;
        acks[index].status = (uint8_t)(index % 6);
    }
    size_t count = 99;
    assert (proto_acks_encode (acks, PROTO_ACKS_MAX, buffer) == 0);
    assert (proto_acks_decode (buffer->data, buffer->size, acks_out, PROTO_ACKS_MAX, &count) == 0);
    assert (count == PROTO_ACKS_MAX);
    for (size_t index = 0; index < count; index++) {
        assert (acks_out[index].request == acks[index].request);
        assert (acks_out[index].code == acks[index].code);
        assert (acks_out[index].id == acks[index].id);
        assert (acks_out[index].ts == acks[index].ts);
        assert (acks_out[index].status == acks[index].status);
    }
    assert (proto_acks_decode (buffer->data, buffer->size, acks_out, PROTO_ACKS_MAX - 1, &count) ==
            -2);
    assert (proto_acks_encode (acks, 3, buffer) == 0);
    count = 99;
    assert (proto_acks_decode (buffer->data, buffer->size, acks_out, 3, &count) == 0);
    assert (count == 3);
    assert (acks_out[1].request == acks[1].request && acks_out[2].code == 2);
    assert (proto_acks_decode (buffer->data, buffer->size, acks_out, 2, &count) == -2);
    s_test_truncations (S_ACKS, buffer);
    assert (s_test_value (S_ACKS, buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_ACKS, buffer, "acks", S_BYTES ("\xc0")) == -2);
    assert (s_test_value (S_ACKS, buffer, "acks", S_BYTES ("\x80")) == -2);
    assert (s_test_value (S_ACKS, buffer, "acks", S_BYTES ("\x90")) == 0);
    assert (s_test_value (S_ACKS, buffer, "acks", S_BYTES ("\xdd\xff\xff\xff\xff")) == -2);
    assert (s_test_rename (S_ACKS, buffer, "acks", "ack") == -2);
    assert (s_test_rename (S_ACKS, buffer, "acks", "v") == -2);
    assert (s_test_rename (S_ACKS, buffer, "v", "acks") == -2);
    struct {
        const char *bytes;
        size_t length;
        int rc;
    } elements[] = {
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\x04"), 0}, //  good
        {S_BYTES ("\x91\x95\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x02\xff\xff\x05"), 0},
        {S_BYTES ("\x91\x94\x01\x00\x02\x03"), -2},                         //  4 fields
        {S_BYTES ("\x91\x96\x01\x00\x02\x03\x04\x05"), -2},                 //  6 fields
        {S_BYTES ("\x91\x95\xff\x00\x02\x03\x04"), -2},                     //  request < 0
        {S_BYTES ("\x91\x95\x01\x03\x02\x03\x04"), -2},                     //  code 3
        {S_BYTES ("\x91\x95\x01\x00\xa1x\x03\x04"), -2},                    //  id a string
        {S_BYTES ("\x91\x95\x01\x00\x02\xc0\x04"), -2},                     //  ts nil
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\x06"), -2},                     //  status 6
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\xcb\x3f\xf0\0\0\0\0\0\0"), -2}, //  status 1.0
        {S_BYTES ("\x91\x85\x01\x00\x02\x03\x04"), -2},                     //  map, not array
        {S_BYTES ("\x92\x95\x01\x00\x02\x03\x04"), -2},                     //  one missing
    };
    for (size_t index = 0; index < S_COUNT (elements); index++)
        assert (s_test_value (S_ACKS, buffer, "acks", elements[index].bytes,
                              elements[index].length) == elements[index].rc);
    //  Keys in any order
    const uint8_t reordered[] = {0x82, 0xa4, 'a', 'c', 'k', 's',  0x91, 0x95,
                                 7,    1,    9,   10,  3,   0xa1, 'v',  0x01};
    count = 0;
    assert (proto_acks_decode (reordered, sizeof (reordered), acks_out, 4, &count) == 0);
    assert (count == 1 && acks_out[0].request == 7 && acks_out[0].code == 1 &&
            acks_out[0].id == 9 && acks_out[0].ts == 10 && acks_out[0].status == 3);
    //  Zero acks with max 0
    assert (proto_acks_encode (acks, 0, buffer) == 0);
    assert (proto_acks_decode (buffer->data, buffer->size, acks_out, 0, &count) == 0);
    assert (count == 0);
    assert (proto_acks_encode (acks, 5, buffer) == 0);
    s_test_mutations (S_ACKS, buffer, state, 20000);
}

//  Empty input, NULL data, and random bytes: malformed, never a crash
static void
s_test_noise (uint64_t *state)
{
    for (int type = S_READING; type <= S_EVENT; type++) {
        assert (s_test_decode ((s_test_frame_t)type, "", 0) == -2);
        assert (s_test_decode ((s_test_frame_t)type, NULL, 0) == -2);
        assert (s_test_decode ((s_test_frame_t)type, "\xc0", 1) == -2);
        assert (s_test_decode ((s_test_frame_t)type, "\x80", 1) == -2);
    }
    uint8_t noise[512];
    for (int round = 0; round < 10000; round++) {
        size_t size = s_test_random (state) % sizeof (noise);
        for (size_t index = 0; index < size; index++)
            noise[index] = (uint8_t)s_test_random (state);
        //  Half the rounds start like a map so the decoders get further in
        if (round % 2 && size > 0)
            noise[0] = (uint8_t)(0x80 | (s_test_random (state) % 14));
        for (int type = S_READING; type <= S_EVENT; type++) {
            int rc = s_test_decode ((s_test_frame_t)type, noise, size);
            assert (rc == 0 || rc == -2);
        }
    }
}

//  Batch messages: frames appended back to back decode one by one with
//  decode_next; a single frame is a batch of one; a broken or truncated
//  frame stops the batch there, never reading past the message.
static void
s_test_batches (proto_buffer_t *buffer, uint64_t *state)
{
    proto_reading_t readings[PROTO_BATCH_MAX];
    proto_buffer_reset (buffer);
    for (size_t index = 0; index < PROTO_BATCH_MAX; index++) {
        s_test_reading (&readings[index]);
        readings[index].request = index + 1;
        readings[index].power = (double)index / 7;
        s_test_uuid (state, readings[index].port);
        if (index % 3)
            readings[index].key[index % PROTO_KEY_MAX] = 0;
        assert (proto_reading_append (&readings[index], buffer) == 0);
    }
    size_t offset = 0, used = 0, count = 0;
    proto_reading_t decoded;
    while (offset < buffer->size) {
        assert (proto_reading_decode_next (buffer->data + offset, buffer->size - offset, &decoded,
                                           &used) == 0);
        assert (used > 0 && used <= buffer->size - offset);
        s_test_reading_equal (&decoded, &readings[count]);
        offset += used;
        count++;
    }
    assert (count == PROTO_BATCH_MAX && offset == buffer->size);
    //  One frame through the single-frame decoder and decode_next alike
    assert (proto_reading_encode (&readings[1], buffer) == 0);
    assert (proto_reading_decode_next (buffer->data, buffer->size, &decoded, &used) == 0);
    assert (used == buffer->size);
    s_test_reading_equal (&decoded, &readings[1]);
    //  Every truncation of the second frame of a batch of two fails there
    assert (proto_reading_append (&readings[2], buffer) == 0);
    size_t first = used;
    for (size_t size = first + 1; size < buffer->size; size++)
        assert (proto_reading_decode_next (buffer->data + first, size - first, &decoded, &used) ==
                -2);
    assert (proto_reading_decode_next (buffer->data, 0, &decoded, &used) == -2);
    assert (proto_reading_decode_next (NULL, 10, &decoded, &used) == -2);
    //  Garbage after a frame: the frame decodes, the garbage does not
    static const uint8_t garbage[] = {0xc1, 0x00};
    proto_buffer_t mixed;
    proto_buffer_init (&mixed);
    assert (proto_reading_encode (&readings[3], &mixed) == 0);
    size_t frame = mixed.size;
    assert (s_buffer_write (&mixed, (const char *)garbage, sizeof garbage) == 0);
    assert (proto_reading_decode_next (mixed.data, mixed.size, &decoded, &used) == 0);
    assert (used == frame);
    assert (proto_reading_decode_next (mixed.data + used, mixed.size - used, &decoded, &used) ==
            -2);
    //  The single-frame decoder refuses a batch of two
    assert (proto_reading_decode (buffer->data, buffer->size, &decoded) == -2);
    proto_buffer_release (&mixed);

    //  Verdicts likewise, with and without their optional parts
    proto_verdict_t verdicts[3], verdict;
    memset (verdicts, 0, sizeof verdicts);
    proto_buffer_reset (buffer);
    for (size_t index = 0; index < 3; index++) {
        s_test_reading (&verdicts[index].reading);
        verdicts[index].reading.request = 100 + index;
        verdicts[index].status = PROTO_STATUS_PHANTOM;
        verdicts[index].has_episode = index == 1;
        if (index == 1)
            s_test_episode (&verdicts[index].episode);
        verdicts[index].no_reading = index == 2;
        assert (proto_verdict_append (&verdicts[index], buffer) == 0);
    }
    offset = 0;
    for (size_t index = 0; index < 3; index++) {
        assert (proto_verdict_decode_next (buffer->data + offset, buffer->size - offset, &verdict,
                                           &used) == 0);
        s_test_reading_equal (&verdict.reading, &verdicts[index].reading);
        assert (verdict.has_episode == (index == 1));
        if (index == 1)
            s_test_episode_equal (&verdict.episode, &verdicts[1].episode);
        assert (verdict.no_reading == (index == 2));
        offset += used;
    }
    assert (offset == buffer->size);
    //  A reading frame is no verdict
    assert (proto_reading_encode (&readings[0], buffer) == 0);
    assert (proto_verdict_decode_next (buffer->data, buffer->size, &verdict, &used) == -2);
}

void
proto_test (bool verbose)
{
    printf (" * proto: ");
    uint64_t state = 0x2545f4914f6cdd1dull;
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);

    s_test_status_names ();
    s_test_partition ();
    s_test_reading_frames (&buffer, &state, verbose);
    s_test_verdict_frames (&buffer, &state);
    s_test_verdict_optional (&buffer, &state);
    s_test_event_frames (&buffer, &state);
    s_test_acks_frames (&buffer, &state);
    s_test_offline_frames (&buffer, &state);
    s_test_reading_live (&buffer);
    s_test_batches (&buffer, &state);
    s_test_noise (&state);

    proto_buffer_release (&buffer);
    assert (buffer.data == NULL && buffer.size == 0 && buffer.capacity == 0);
    proto_buffer_release (&buffer);
    printf ("OK\n");
}

struct timespec
proto_deadline_ms (int ms)
{
    struct timespec when;
    clock_gettime (CLOCK_MONOTONIC, &when);
    when.tv_sec += ms / 1000;
    when.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (when.tv_nsec >= 1000000000L) {
        when.tv_sec++;
        when.tv_nsec -= 1000000000L;
    }
    return when;
}
