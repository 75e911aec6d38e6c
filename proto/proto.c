/*  =========================================================================
    proto - the frames that PhantomWatch services exchange, and their codec

    Encoders use msgpack-c's packer. Decoders walk the bytes directly with a
    bounded cursor instead of msgpack_unpack: the schema is fixed, so every
    value has one expected type and nothing needs to be skipped, and the
    generic unpacker allocates container storage from the declared count
    before it has seen the elements (a 5-byte "array32 of 2^32" frame asks
    malloc for ~100 GB). The cursor allocates nothing, keeps no state
    outside the call (thread-safe), and never reads past size.

    Wire keys are 1-4 ASCII characters; a key is read as one integer code
    so field dispatch is a switch, not a strcmp chain.
    =========================================================================
*/
#include "proto.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  Wire keys as integer codes (bytes big-endian into a uint32)
#define S_KEY1(a) ((uint32_t) (unsigned char) (a))
#define S_KEY2(a, b) ((S_KEY1 (a) << 8) | S_KEY1 (b))
#define S_KEY4(a, b, c, d) ((S_KEY2 (a, b) << 16) | S_KEY2 (c, d))

#define S_KIND_MAX 23               //  proto_event_t.kind holds 23 characters

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
    proto_buffer_t *self = (proto_buffer_t *) data;
    if (length == 0)
        return 0;               //  data may still be NULL; no pointer arithmetic on it
    if (length > self->capacity - self->size) {
        size_t capacity = self->capacity ? self->capacity : 256;
        while (capacity - self->size < length) {
            if (capacity > SIZE_MAX / 2)
                return -1;
            capacity *= 2;
        }
        uint8_t *grown = (uint8_t *) realloc (self->data, capacity);
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

static const char *s_status_names [] = {"unknown", "active", "idle", "phantom", "off", "offline"};
#define S_STATUS_LAST PROTO_STATUS_OFFLINE

const char *
proto_status_name (int status)
{
    if (status < 0 || status > S_STATUS_LAST)
        return s_status_names [PROTO_STATUS_UNKNOWN];
    return s_status_names [status];
}

proto_status_t
proto_status_parse (const char *name)
{
    if (name)
        for (int status = 0; status <= S_STATUS_LAST; status++)
            if (strcmp (name, s_status_names [status]) == 0)
                return (proto_status_t) status;
    return PROTO_STATUS_UNKNOWN;
}

//  --------------------------------------------------------------------------
//  Encoding helpers; each returns 0 or -1, and a frame's result is the OR
//  of its parts (a failed write leaves the buffer short, never overrun).

static int
s_pack_key (msgpack_packer *packer, const char *key)
{
    size_t length = strlen (key);
    return msgpack_pack_str (packer, length) | msgpack_pack_str_body (packer, key, length);
}

//  Bounded by the field's size so an unterminated field cannot overrun.
static int
s_pack_text (msgpack_packer *packer, const char *key, const char *text, size_t size)
{
    size_t length = strnlen (text, size);
    return s_pack_key (packer, key) | msgpack_pack_str (packer, length)
           | msgpack_pack_str_body (packer, text, length);
}

static int
s_pack_int (msgpack_packer *packer, const char *key, int64_t value)
{
    return s_pack_key (packer, key) | msgpack_pack_int64 (packer, value);
}

static int
s_pack_uint (msgpack_packer *packer, const char *key, uint64_t value)
{
    return s_pack_key (packer, key) | msgpack_pack_uint64 (packer, value);
}

static int
s_pack_double (msgpack_packer *packer, const char *key, double value)
{
    return s_pack_key (packer, key) | msgpack_pack_double (packer, value);
}

static int
s_pack_float (msgpack_packer *packer, const char *key, float value)
{
    return s_pack_key (packer, key) | msgpack_pack_float (packer, value);
}

static int
s_settings_pack (msgpack_packer *packer, const proto_settings_t *self)
{
    return msgpack_pack_map (packer, 7) | s_pack_float (packer, "ow", self->off_watts)
           | s_pack_float (packer, "sw", self->standby_watts)
           | s_pack_int (packer, "mp", self->min_phantom_seconds)
           | s_pack_uint (packer, "eo", self->expected_off)
           | s_pack_int (packer, "of", self->off_from_min)
           | s_pack_int (packer, "ot", self->off_to_min)
           | s_pack_text (packer, "tz", self->timezone, sizeof (self->timezone));
}

//  The reading's fields; with_version for a top-level frame.
static int
s_reading_pack (msgpack_packer *packer, const proto_reading_t *self, bool with_version)
{
    int rc = msgpack_pack_map (packer, with_version ? 13 : 12);
    if (with_version)
        rc |= s_pack_int (packer, "v", PROTO_VERSION);
    rc |= s_pack_uint (packer, "rq", self->request)
          | s_pack_text (packer, "gw", self->gateway, sizeof (self->gateway))
          | s_pack_int (packer, "u", self->user) | s_pack_int (packer, "d", self->device)
          | s_pack_text (packer, "p", self->port, sizeof (self->port))
          | s_pack_int (packer, "t", self->ts) | s_pack_int (packer, "r", self->received)
          | s_pack_double (packer, "V", self->voltage) | s_pack_double (packer, "I", self->current)
          | s_pack_double (packer, "W", self->power)
          | s_pack_text (packer, "k", self->key, sizeof (self->key)) | s_pack_key (packer, "s")
          | s_settings_pack (packer, &self->settings);
    return rc;
}

static int
s_episode_pack (msgpack_packer *packer, const proto_episode_t *self)
{
    return s_pack_key (packer, "ep") | msgpack_pack_map (packer, 6)
           | s_pack_int (packer, "s", self->start) | s_pack_int (packer, "e", self->end)
           | s_pack_double (packer, "en", self->energy_wh)
           | s_pack_double (packer, "mw", self->mean_watts)
           | s_pack_double (packer, "pk", self->peak_watts)
           | s_pack_uint (packer, "n", self->samples);
}

//  --------------------------------------------------------------------------
//  Encoders: reset the buffer, write one frame. 0 or -1 (no memory).

int
proto_reading_encode (const proto_reading_t *self, proto_buffer_t *buffer)
{
    assert (self);
    assert (buffer);
    proto_buffer_reset (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, s_buffer_write);
    return s_reading_pack (&packer, self, true) ? -1 : 0;
}

int
proto_verdict_encode (const proto_verdict_t *self, proto_buffer_t *buffer)
{
    assert (self);
    assert (buffer);
    proto_buffer_reset (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, s_buffer_write);
    int rc = msgpack_pack_map (&packer, 4 + self->has_episode + self->no_reading
                                            + self->has_baseline)
             | s_pack_int (&packer, "v", PROTO_VERSION) | s_pack_key (&packer, "rd")
             | s_reading_pack (&packer, &self->reading, false)
             | s_pack_uint (&packer, "st", self->status)
             | s_pack_uint (&packer, "pv", self->previous);
    if (self->has_episode)
        rc |= s_episode_pack (&packer, &self->episode);
    //  Optional keys are written only when set, so frames of senders that
    //  predate them stay byte-identical.
    if (self->no_reading)
        rc |= s_pack_key (&packer, "nr") | msgpack_pack_true (&packer);
    if (self->has_baseline)
        rc |= s_pack_float (&packer, "bl", self->baseline_watts);
    return rc ? -1 : 0;
}

int
proto_acks_encode (const proto_ack_t *acks, size_t count, proto_buffer_t *buffer)
{
    assert (acks || count == 0);
    assert (buffer);
    proto_buffer_reset (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, s_buffer_write);
    int rc = msgpack_pack_map (&packer, 2) | s_pack_int (&packer, "v", PROTO_VERSION)
             | s_pack_key (&packer, "acks") | msgpack_pack_array (&packer, count);
    for (size_t index = 0; index < count && rc == 0; index++) {
        const proto_ack_t *ack = &acks [index];
        rc |= msgpack_pack_array (&packer, 5) | msgpack_pack_uint64 (&packer, ack->request)
              | msgpack_pack_uint64 (&packer, ack->code) | msgpack_pack_int64 (&packer, ack->id)
              | msgpack_pack_int64 (&packer, ack->ts) | msgpack_pack_uint64 (&packer, ack->status);
    }
    return rc ? -1 : 0;
}

int
proto_event_encode (const proto_event_t *self, proto_buffer_t *buffer)
{
    assert (self);
    assert (buffer);
    proto_buffer_reset (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, s_buffer_write);
    int rc = msgpack_pack_map (&packer, self->has_episode ? 9 : 8)
             | s_pack_int (&packer, "v", PROTO_VERSION)
             | s_pack_text (&packer, "k", self->kind, sizeof (self->kind))
             | s_pack_int (&packer, "u", self->user)
             | s_pack_text (&packer, "p", self->port, sizeof (self->port))
             | s_pack_int (&packer, "t", self->ts) | s_pack_double (&packer, "W", self->watts)
             | s_pack_uint (&packer, "st", self->status)
             | s_pack_uint (&packer, "pv", self->previous);
    if (self->has_episode)
        rc |= s_episode_pack (&packer, &self->episode);
    return rc ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Decoding cursor. Every reader returns 0 or -2 and checks the remaining
//  length before touching a byte.

typedef struct {
    const uint8_t *at;              //  next byte to read
    const uint8_t *end;             //  one past the frame's last byte
} s_reader_t;

static inline bool
s_need (const s_reader_t *reader, size_t count)
{
    return (size_t) (reader->end - reader->at) >= count;
}

static inline uint64_t
s_big_endian (const uint8_t *bytes, int count)
{
    uint64_t value = 0;
    for (int index = 0; index < count; index++)
        value = (value << 8) | bytes [index];
    return value;
}

//  Reads a count that follows a marker as 0 (inline), 2 or 4 big-endian bytes.
static inline int
s_read_length (s_reader_t *reader, int width, uint32_t *length)
{
    if (!s_need (reader, (size_t) width))
        return -2;
    *length = (uint32_t) s_big_endian (reader->at, width);
    reader->at += width;
    return 0;
}

static int
s_read_map (s_reader_t *reader, uint32_t *count)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at++;
    if ((marker & 0xf0) == 0x80) {
        *count = marker & 0x0f;
        return 0;
    }
    if (marker == 0xde)
        return s_read_length (reader, 2, count);
    if (marker == 0xdf)
        return s_read_length (reader, 4, count);
    return -2;
}

static int
s_read_array (s_reader_t *reader, uint32_t *count)
{
    if (!s_need (reader, 1))
        return -2;
    uint8_t marker = *reader->at++;
    if ((marker & 0xf0) == 0x90) {
        *count = marker & 0x0f;
        return 0;
    }
    if (marker == 0xdc)
        return s_read_length (reader, 2, count);
    if (marker == 0xdd)
        return s_read_length (reader, 4, count);
    return -2;
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
    else
    if (marker == 0xd9) {
        if (s_read_length (reader, 1, &size))
            return -2;
    }
    else
    if (marker == 0xda) {
        if (s_read_length (reader, 2, &size))
            return -2;
    }
    else
    if (marker == 0xdb) {
        if (s_read_length (reader, 4, &size))
            return -2;
    }
    else
        return -2;
    if (size > max || !s_need (reader, size))
        return -2;
    *text = (const char *) reader->at;
    *length = size;
    reader->at += size;
    return 0;
}

//  A map key as an integer code: 1-4 bytes, none NUL, so distinct keys
//  give distinct codes.
static int
s_read_key (s_reader_t *reader, uint32_t *code)
{
    const char *text;
    size_t length;
    if (s_read_str (reader, 4, &text, &length) || length == 0)
        return -2;
    uint32_t value = 0;
    for (size_t index = 0; index < length; index++) {
        if (text [index] == 0)
            return -2;
        value = (value << 8) | (unsigned char) text [index];
    }
    *code = value;
    return 0;
}

//  Any msgpack integer, as a sign and either an unsigned or a signed value.
typedef struct {
    bool negative;                  //  value is in signed (< 0), else in whole
    uint64_t whole;                 //  value when >= 0
    int64_t signed_value;           //  value when < 0
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
        integer->signed_value = (int8_t) marker;
        return 0;
    }
    switch (marker) {
        case 0xcc: width = 1; is_signed = false; break;
        case 0xcd: width = 2; is_signed = false; break;
        case 0xce: width = 4; is_signed = false; break;
        case 0xcf: width = 8; is_signed = false; break;
        case 0xd0: width = 1; is_signed = true; break;
        case 0xd1: width = 2; is_signed = true; break;
        case 0xd2: width = 4; is_signed = true; break;
        case 0xd3: width = 8; is_signed = true; break;
        default: return -2;
    }
    if (!s_need (reader, 1 + (size_t) width))
        return -2;
    uint64_t bits = s_big_endian (reader->at + 1, width);
    reader->at += 1 + width;
    integer->negative = false;
    integer->whole = bits;
    if (is_signed) {
        //  Sign-extend from width bytes
        int shift = 64 - 8 * width;
        int64_t value = (int64_t) (bits << shift) >> shift;
        integer->negative = value < 0;
        integer->signed_value = value;
        integer->whole = (uint64_t) value;
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
        if (integer.whole > (uint64_t) INT64_MAX)
            return -2;
        number = (int64_t) integer.whole;
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
        uint32_t bits = (uint32_t) s_big_endian (reader->at + 1, 4);
        float single;
        memcpy (&single, &bits, sizeof (single));
        number = single;
        reader->at += 5;
    }
    else
    if (marker == 0xcb) {
        if (!s_need (reader, 9))
            return -2;
        uint64_t bits = s_big_endian (reader->at + 1, 8);
        memcpy (&number, &bits, sizeof (number));
        reader->at += 9;
    }
    else {
        s_integer_t integer;
        if (s_read_integer (reader, &integer))
            return -2;
        number = integer.negative ? (double) integer.signed_value : (double) integer.whole;
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
    *value = (float) number;
    return 0;
}

//  Text into a field of max characters plus NUL; rejects embedded NULs.
static int
s_read_text (s_reader_t *reader, char *field, size_t max)
{
    const char *text;
    size_t length;
    if (s_read_str (reader, max, &text, &length) || memchr (text, 0, length))
        return -2;
    memcpy (field, text, length);
    field [length] = 0;
    return 0;
}

//  Text of visible ASCII (0x21-0x7e) only, 1..max characters: identifiers
//  that end up in topics and logs.
static int
s_read_token (s_reader_t *reader, char *field, size_t max)
{
    const char *text;
    size_t length;
    if (s_read_str (reader, max, &text, &length) || length == 0)
        return -2;
    for (size_t index = 0; index < length; index++)
        if (text [index] < 0x21 || text [index] > 0x7e)
            return -2;
    memcpy (field, text, length);
    field [length] = 0;
    return 0;
}

//  Canonical lower-case UUID text, 8-4-4-4-12.
static int
s_read_uuid (s_reader_t *reader, char *field)
{
    const char *text;
    size_t length;
    if (s_read_str (reader, PROTO_UUID_LEN, &text, &length) || length != PROTO_UUID_LEN)
        return -2;
    for (size_t index = 0; index < PROTO_UUID_LEN; index++) {
        char c = text [index];
        if (index == 8 || index == 13 || index == 18 || index == 23) {
            if (c != '-')
                return -2;
        }
        else
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return -2;
    }
    memcpy (field, text, PROTO_UUID_LEN);
    field [PROTO_UUID_LEN] = 0;
    return 0;
}

//  msgpack true; false is never written, so it is not accepted either.
static int
s_read_true (s_reader_t *reader)
{
    if (!s_need (reader, 1) || *reader->at != 0xc3)
        return -2;
    reader->at++;
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
    *status = (uint8_t) value;
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

//  --------------------------------------------------------------------------
//  Decoders for the nested maps

static int
s_settings_read (s_reader_t *reader, proto_settings_t *self)
{
    uint32_t count;
    if (s_read_map (reader, &count) || count != 7)
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        int64_t number = 0;
        uint64_t whole = 0;
        int rc;
        if (s_read_key (reader, &key))
            return -2;
        switch (key) {
            case S_KEY2 ('o', 'w'):
                rc = s_mark (&seen, 1) | s_read_float (reader, &self->off_watts);
                break;
            case S_KEY2 ('s', 'w'):
                rc = s_mark (&seen, 2) | s_read_float (reader, &self->standby_watts);
                break;
            case S_KEY2 ('m', 'p'):
                rc = s_mark (&seen, 4) | s_read_int (reader, 0, INT32_MAX, &number);
                self->min_phantom_seconds = (int32_t) number;
                break;
            case S_KEY2 ('e', 'o'):
                rc = s_mark (&seen, 8)
                     | s_read_uint (reader, PROTO_EXPECTED_OFF_WINDOW, &whole);
                self->expected_off = (uint8_t) whole;
                break;
            //  Minutes after local midnight; 1440 lets a window end at midnight
            case S_KEY2 ('o', 'f'):
                rc = s_mark (&seen, 16) | s_read_int (reader, 0, 1440, &number);
                self->off_from_min = (int16_t) number;
                break;
            case S_KEY2 ('o', 't'):
                rc = s_mark (&seen, 32) | s_read_int (reader, 0, 1440, &number);
                self->off_to_min = (int16_t) number;
                break;
            case S_KEY2 ('t', 'z'):
                rc = s_mark (&seen, 64)
                     | s_read_text (reader, self->timezone, PROTO_TIMEZONE_MAX);
                break;
            default:
                return -2;
        }
        //  a field stored from a failed read is never used: the frame is rejected
        if (rc)
            return -2;
    }
    return seen == 127 ? 0 : -2;
}

static int
s_reading_read (s_reader_t *reader, proto_reading_t *self, bool with_version)
{
    uint32_t count;
    if (s_read_map (reader, &count) || count != (with_version ? 13u : 12u))
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        int rc;
        if (s_read_key (reader, &key))
            return -2;
        switch (key) {
            case S_KEY1 ('v'):
                if (!with_version)
                    return -2;
                rc = s_mark (&seen, 1 << 0) | s_read_version (reader);
                break;
            case S_KEY2 ('r', 'q'):
                rc = s_mark (&seen, 1 << 1) | s_read_uint (reader, UINT64_MAX, &self->request);
                break;
            case S_KEY2 ('g', 'w'):
                rc = s_mark (&seen, 1 << 2)
                     | s_read_token (reader, self->gateway, PROTO_GATEWAY_MAX);
                break;
            case S_KEY1 ('u'):
                rc = s_mark (&seen, 1 << 3)
                     | s_read_int (reader, INT64_MIN, INT64_MAX, &self->user);
                break;
            case S_KEY1 ('d'):
                rc = s_mark (&seen, 1 << 4)
                     | s_read_int (reader, INT64_MIN, INT64_MAX, &self->device);
                break;
            case S_KEY1 ('p'):
                rc = s_mark (&seen, 1 << 5) | s_read_uuid (reader, self->port);
                break;
            case S_KEY1 ('t'):
                rc = s_mark (&seen, 1 << 6) | s_read_int (reader, INT64_MIN, INT64_MAX, &self->ts);
                break;
            case S_KEY1 ('r'):
                rc = s_mark (&seen, 1 << 7)
                     | s_read_int (reader, INT64_MIN, INT64_MAX, &self->received);
                break;
            case S_KEY1 ('V'):
                rc = s_mark (&seen, 1 << 8) | s_read_double (reader, &self->voltage);
                break;
            case S_KEY1 ('I'):
                rc = s_mark (&seen, 1 << 9) | s_read_double (reader, &self->current);
                break;
            case S_KEY1 ('W'):
                rc = s_mark (&seen, 1 << 10) | s_read_double (reader, &self->power);
                break;
            case S_KEY1 ('k'):
                rc = s_mark (&seen, 1 << 11) | s_read_text (reader, self->key, PROTO_KEY_MAX);
                break;
            case S_KEY1 ('s'):
                rc = s_mark (&seen, 1 << 12) | s_settings_read (reader, &self->settings);
                break;
            default:
                return -2;
        }
        if (rc)
            return -2;
    }
    uint32_t required = with_version ? 0x1fff : 0x1ffe;
    return seen == required ? 0 : -2;
}

static int
s_episode_read (s_reader_t *reader, proto_episode_t *self)
{
    uint32_t count;
    if (s_read_map (reader, &count) || count != 6)
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        uint64_t whole = 0;
        int rc;
        if (s_read_key (reader, &key))
            return -2;
        switch (key) {
            case S_KEY1 ('s'):
                rc = s_mark (&seen, 1) | s_read_int (reader, INT64_MIN, INT64_MAX, &self->start);
                break;
            case S_KEY1 ('e'):
                rc = s_mark (&seen, 2) | s_read_int (reader, INT64_MIN, INT64_MAX, &self->end);
                break;
            case S_KEY2 ('e', 'n'):
                rc = s_mark (&seen, 4) | s_read_double (reader, &self->energy_wh);
                break;
            case S_KEY2 ('m', 'w'):
                rc = s_mark (&seen, 8) | s_read_double (reader, &self->mean_watts);
                break;
            case S_KEY2 ('p', 'k'):
                rc = s_mark (&seen, 16) | s_read_double (reader, &self->peak_watts);
                break;
            case S_KEY1 ('n'):
                rc = s_mark (&seen, 32) | s_read_uint (reader, UINT32_MAX, &whole);
                self->samples = (uint32_t) whole;
                break;
            default:
                return -2;
        }
        if (rc)
            return -2;
    }
    return seen == 63 ? 0 : -2;
}

//  --------------------------------------------------------------------------
//  Decoders: 0, or -2 malformed (*self undefined)

int
proto_reading_decode (const void *data, size_t size, proto_reading_t *self)
{
    assert (self);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *) data, (const uint8_t *) data + size};
    if (s_reading_read (&reader, self, true) || reader.at != reader.end)
        return -2;
    return 0;
}

int
proto_verdict_decode (const void *data, size_t size, proto_verdict_t *self)
{
    assert (self);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *) data, (const uint8_t *) data + size};
    uint32_t count;
    if (s_read_map (&reader, &count) || count < 4 || count > 7)
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        int rc;
        if (s_read_key (&reader, &key))
            return -2;
        switch (key) {
            case S_KEY1 ('v'):
                rc = s_mark (&seen, 1) | s_read_version (&reader);
                break;
            //  Present only when true; any other value is not ours
            case S_KEY2 ('n', 'r'):
                rc = s_mark (&seen, 32) | s_read_true (&reader);
                break;
            case S_KEY2 ('b', 'l'):
                rc = s_mark (&seen, 64) | s_read_float (&reader, &self->baseline_watts);
                if (rc == 0 && self->baseline_watts < 0)
                    rc = -2;
                break;
            case S_KEY2 ('r', 'd'):
                rc = s_mark (&seen, 2) | s_reading_read (&reader, &self->reading, false);
                break;
            case S_KEY2 ('s', 't'):
                rc = s_mark (&seen, 4) | s_read_status (&reader, &self->status);
                break;
            case S_KEY2 ('p', 'v'):
                rc = s_mark (&seen, 8) | s_read_status (&reader, &self->previous);
                break;
            case S_KEY2 ('e', 'p'):
                rc = s_mark (&seen, 16) | s_episode_read (&reader, &self->episode);
                break;
            default:
                return -2;
        }
        if (rc)
            return -2;
    }
    if ((seen & 15) != 15 || reader.at != reader.end)
        return -2;
    self->has_episode = (seen & 16) != 0;
    if (!self->has_episode)
        memset (&self->episode, 0, sizeof (self->episode));
    self->no_reading = (seen & 32) != 0;
    self->has_baseline = (seen & 64) != 0;
    if (!self->has_baseline)
        self->baseline_watts = 0;
    return 0;
}

int
proto_acks_decode (const void *data, size_t size, proto_ack_t *acks, size_t max, size_t *count)
{
    assert (acks || max == 0);
    assert (count);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *) data, (const uint8_t *) data + size};
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
        }
        else
        if (key == S_KEY4 ('a', 'c', 'k', 's')) {
            uint32_t items;
            if (s_mark (&seen, 2) || s_read_array (&reader, &items) || items > max)
                return -2;
            for (uint32_t item = 0; item < items; item++) {
                proto_ack_t *ack = &acks [item];
                uint32_t fields;
                uint64_t code;
                if (s_read_array (&reader, &fields) || fields != 5
                    || s_read_uint (&reader, UINT64_MAX, &ack->request)
                    || s_read_uint (&reader, PROTO_ACK_REJECTED, &code)
                    || s_read_int (&reader, INT64_MIN, INT64_MAX, &ack->id)
                    || s_read_int (&reader, INT64_MIN, INT64_MAX, &ack->ts)
                    || s_read_status (&reader, &ack->status))
                    return -2;
                ack->code = (uint8_t) code;
            }
            received = items;
        }
        else
            return -2;
    }
    if (seen != 3 || reader.at != reader.end)
        return -2;
    *count = received;
    return 0;
}

int
proto_event_decode (const void *data, size_t size, proto_event_t *self)
{
    assert (self);
    if (!data)
        return -2;
    s_reader_t reader = {(const uint8_t *) data, (const uint8_t *) data + size};
    uint32_t count;
    if (s_read_map (&reader, &count) || count < 8 || count > 9)
        return -2;
    uint32_t seen = 0;
    for (uint32_t index = 0; index < count; index++) {
        uint32_t key;
        int rc;
        if (s_read_key (&reader, &key))
            return -2;
        switch (key) {
            case S_KEY1 ('v'):
                rc = s_mark (&seen, 1 << 0) | s_read_version (&reader);
                break;
            case S_KEY1 ('k'): {
                rc = s_mark (&seen, 1 << 1) | s_read_token (&reader, self->kind, S_KIND_MAX);
                //  The kind is the topic's prefix: lower-case words and dots
                for (const char *c = self->kind; rc == 0 && *c; c++)
                    if (!((*c >= 'a' && *c <= 'z') || *c == '.' || *c == '_'))
                        rc = -2;
                break;
            }
            case S_KEY1 ('u'):
                rc = s_mark (&seen, 1 << 2)
                     | s_read_int (&reader, INT64_MIN, INT64_MAX, &self->user);
                break;
            case S_KEY1 ('p'):
                rc = s_mark (&seen, 1 << 3) | s_read_uuid (&reader, self->port);
                break;
            case S_KEY1 ('t'):
                rc = s_mark (&seen, 1 << 4) | s_read_int (&reader, INT64_MIN, INT64_MAX, &self->ts);
                break;
            case S_KEY1 ('W'):
                rc = s_mark (&seen, 1 << 5) | s_read_double (&reader, &self->watts);
                break;
            case S_KEY2 ('s', 't'):
                rc = s_mark (&seen, 1 << 6) | s_read_status (&reader, &self->status);
                break;
            case S_KEY2 ('p', 'v'):
                rc = s_mark (&seen, 1 << 7) | s_read_status (&reader, &self->previous);
                break;
            case S_KEY2 ('e', 'p'):
                rc = s_mark (&seen, 1 << 8) | s_episode_read (&reader, &self->episode);
                break;
            default:
                return -2;
        }
        if (rc)
            return -2;
    }
    if ((seen & 0xff) != 0xff || reader.at != reader.end)
        return -2;
    self->has_episode = (seen & 0x100) != 0;
    if (!self->has_episode)
        memset (&self->episode, 0, sizeof (self->episode));
    return 0;
}

//  --------------------------------------------------------------------------
//  Topic and partition

void
proto_event_topic (const proto_event_t *self, char topic [PROTO_TOPIC_MAX + 1])
{
    assert (self);
    assert (topic);
    snprintf (topic, PROTO_TOPIC_MAX + 1, "%.*s.%.*s", (int) strnlen (self->kind, S_KIND_MAX),
              self->kind, (int) strnlen (self->port, PROTO_UUID_LEN), self->port);
}

//  FNV-1a, 32 bit: tiny, stable across platforms, and good enough spread
//  for uuid text.
uint32_t
proto_partition (const char *port, uint32_t partitions)
{
    if (partitions == 0 || !port)
        return 0;
    uint32_t hash = 2166136261u;
    for (const unsigned char *c = (const unsigned char *) port; *c; c++) {
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
s_test_uuid (uint64_t *state, char uuid [PROTO_UUID_LEN + 1])
{
    static const char hex [] = "0123456789abcdef";
    for (int index = 0; index < PROTO_UUID_LEN; index++)
        uuid [index] = (index == 8 || index == 13 || index == 18 || index == 23)
                           ? '-'
                           : hex [s_test_random (state) & 15];
    uuid [PROTO_UUID_LEN] = 0;
}

static void
s_test_fill (char *field, size_t length, char c)
{
    memset (field, c, length);
    field [length] = 0;
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
    self->key [0] = '\xc3';         //  UTF-8 passes through untouched
    self->key [1] = '\xa9';
    self->settings.off_watts = 0.5f;
    self->settings.standby_watts = 12.25f;
    self->settings.min_phantom_seconds = INT32_MAX;
    self->settings.expected_off = PROTO_EXPECTED_OFF_WINDOW;
    self->settings.off_from_min = 1380;
    self->settings.off_to_min = 1440;
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
    assert (a->settings.expected_off == b->settings.expected_off);
    assert (a->settings.off_from_min == b->settings.off_from_min);
    assert (a->settings.off_to_min == b->settings.off_to_min);
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

typedef enum { S_READING, S_VERDICT, S_ACKS, S_EVENT } s_test_frame_t;

//  Decodes with the decoder of type; 0 or -2.
static int
s_test_decode (s_test_frame_t type, const void *data, size_t size)
{
    proto_reading_t reading;
    proto_verdict_t verdict;
    proto_event_t event;
    static proto_ack_t acks [PROTO_ACKS_MAX];   //  single-threaded test only
    size_t count;
    switch (type) {
        case S_READING: return proto_reading_decode (data, size, &reading);
        case S_VERDICT: return proto_verdict_decode (data, size, &verdict);
        case S_ACKS: return proto_acks_decode (data, size, acks, PROTO_ACKS_MAX, &count);
        case S_EVENT: return proto_event_decode (data, size, &event);
    }
    return -1;
}

//  Skips one value of our own (well-formed) frames; returns the next offset.
static size_t
s_test_skip (const uint8_t *data, size_t at)
{
    uint8_t marker = data [at];
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
        case 0xcc: case 0xd0: return next + 1;
        case 0xcd: case 0xd1: return next + 2;
        case 0xca: case 0xce: case 0xd2: return next + 4;
        case 0xcb: case 0xcf: case 0xd3: return next + 8;
        case 0xd9: return next + 1 + data [next];
        case 0xda: return next + 2 + s_big_endian (data + next, 2);
        case 0xdc: case 0xde:
            count = (uint32_t) s_big_endian (data + next, 2) * (marker == 0xde ? 2 : 1);
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
    size_t key_at, key_end;         //  the key's bytes, header included
    size_t value_at, value_end;     //  its value's bytes
} s_test_span_t;

//  Finds a dotted path ("rd.s.tz") in the map at offset at.
static int
s_test_find (const uint8_t *data, size_t at, const char *path, s_test_span_t *span)
{
    uint8_t marker = data [at];
    assert ((marker & 0xf0) == 0x80);
    uint32_t count = marker & 0x0f;
    size_t next = at + 1;
    const char *dot = strchr (path, '.');
    size_t segment = dot ? (size_t) (dot - path) : strlen (path);
    for (uint32_t index = 0; index < count; index++) {
        assert ((data [next] & 0xe0) == 0xa0);
        size_t key_length = data [next] & 0x1f;
        const char *key = (const char *) data + next + 1;
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

//  frame with bytes [at, end) replaced by length bytes of with, into out.
static void
s_test_splice (const proto_buffer_t *frame, size_t at, size_t end, const void *with, size_t length,
               proto_buffer_t *out)
{
    proto_buffer_reset (out);
    assert (s_buffer_write (out, (const char *) frame->data, at) == 0);
    assert (s_buffer_write (out, (const char *) with, length) == 0);
    assert (s_buffer_write (out, (const char *) frame->data + end, frame->size - end) == 0);
}

//  Replaces the value at path with bytes, decodes, returns the rc.
static int
s_test_value (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const void *bytes,
              size_t length)
{
    s_test_span_t span;
    if (s_test_find (frame->data, 0, path, &span)) {
        fprintf (stderr, "proto test: no field %s\n", path);
        assert (false);
    }
    proto_buffer_t out;
    proto_buffer_init (&out);
    s_test_splice (frame, span.value_at, span.value_end, bytes, length, &out);
    int rc = s_test_decode (type, out.data, out.size);
    proto_buffer_release (&out);
    return rc;
}

//  Renames the key at path to name, decodes, returns the rc.
static int
s_test_rename (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const char *name)
{
    s_test_span_t span;
    assert (s_test_find (frame->data, 0, path, &span) == 0);
    uint8_t key [32];
    size_t length = strlen (name);
    assert (length < 31);
    key [0] = (uint8_t) (0xa0 | length);
    memcpy (key + 1, name, length);
    proto_buffer_t out;
    proto_buffer_init (&out);
    s_test_splice (frame, span.key_at, span.key_end, key, length + 1, &out);
    int rc = s_test_decode (type, out.data, out.size);
    proto_buffer_release (&out);
    return rc;
}

//  Replaces the value at path with a msgpack string of text.
static int
s_test_text (s_test_frame_t type, const proto_buffer_t *frame, const char *path, const char *text,
             size_t length)
{
    uint8_t bytes [300];
    assert (length < 256);
    size_t header = 2;
    bytes [0] = 0xd9;               //  str8 even when short: any width is legal
    bytes [1] = (uint8_t) length;
    memcpy (bytes + header, text, length);
    return s_test_value (type, frame, path, bytes, header + length);
}

//  What a field holds, for choosing values of the wrong type.
typedef enum { S_NUMBER, S_TEXT, S_MAP, S_TRUE } s_test_kind_t;

typedef struct {
    const char *path;
    s_test_kind_t kind;
} s_test_field_t;

#define S_BYTES(literal) literal, sizeof (literal) - 1

//  Every field rejects every value of a wrong type.
static void
s_test_wrong_types (s_test_frame_t type, const proto_buffer_t *frame, const s_test_field_t *fields,
                    size_t count)
{
    struct {
        const char *bytes;
        size_t length;
        unsigned kinds;             //  bit per s_test_kind_t it is wrong for
    } wrong [] = {
        {S_BYTES ("\xc0"), 15},                     //  nil
        {S_BYTES ("\xc3"), 7},                      //  true
        {S_BYTES ("\xc2"), 15},                     //  false
        {S_BYTES ("\x90"), 15},                     //  []
        {S_BYTES ("\x91\x01"), 15},                 //  [1]
        {S_BYTES ("\xc4\x01x"), 15},                //  bin
        {S_BYTES ("\xd4\x01\x00"), 15},             //  fixext
        {S_BYTES ("\x80"), 15},                     //  {} (empty map lacks fields)
        {S_BYTES ("\xa1x"), 1 | 4 | 8},             //  "x"
        {S_BYTES ("\x07"), 2 | 4 | 8},              //  7
        {S_BYTES ("\x01"), 2 | 4 | 8},              //  1 (not true)
        {S_BYTES ("\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00"), 2 | 4 | 8}, //  1.5
    };
    for (size_t field = 0; field < count; field++)
        for (size_t index = 0; index < sizeof (wrong) / sizeof (wrong [0]); index++) {
            if (!(wrong [index].kinds & (1u << fields [field].kind)))
                continue;
            int rc = s_test_value (type, frame, fields [field].path, wrong [index].bytes,
                                   wrong [index].length);
            if (rc != -2) {
                fprintf (stderr, "proto test: %s accepted wrong value %zu\n",
                         fields [field].path, index);
                assert (false);
            }
        }
}

//  Every strict prefix of a valid frame is malformed; so is a trailing byte.
static void
s_test_truncations (s_test_frame_t type, const proto_buffer_t *frame)
{
    assert (s_test_decode (type, frame->data, frame->size) == 0);
    for (size_t size = 0; size < frame->size; size++) {
        //  A copy of exactly size bytes, so ASan/valgrind see any overread
        uint8_t *prefix = (uint8_t *) malloc (size ? size : 1);
        assert (prefix);
        memcpy (prefix, frame->data, size);
        assert (s_test_decode (type, prefix, size) == -2);
        free (prefix);
    }
    uint8_t *longer = (uint8_t *) malloc (frame->size + 1);
    assert (longer);
    memcpy (longer, frame->data, frame->size);
    longer [frame->size] = 0xc0;
    assert (s_test_decode (type, longer, frame->size + 1) == -2);
    longer [frame->size] = 0x00;
    assert (s_test_decode (type, longer, frame->size + 1) == -2);
    free (longer);
}

//  Random byte flips of a valid frame: malformed or valid, never a crash;
//  a mutant that decodes must survive a re-encode and decode.
static void
s_test_mutations (s_test_frame_t type, const proto_buffer_t *frame, uint64_t *state, int rounds)
{
    uint8_t *copy = (uint8_t *) malloc (frame->size);
    assert (copy);
    proto_buffer_t again;
    proto_buffer_init (&again);
    for (int round = 0; round < rounds; round++) {
        memcpy (copy, frame->data, frame->size);
        int flips = 1 + (int) (s_test_random (state) % 4);
        for (int flip = 0; flip < flips; flip++)
            copy [s_test_random (state) % frame->size] = (uint8_t) s_test_random (state);
        size_t size = frame->size - (s_test_random (state) % 3 == 0 ? s_test_random (state) % 4 : 0);
        if (size > frame->size)
            size = frame->size;
        int rc;
        if (type == S_READING) {
            proto_reading_t reading;
            rc = proto_reading_decode (copy, size, &reading);
            if (rc == 0) {
                assert (proto_reading_encode (&reading, &again) == 0);
                assert (proto_reading_decode (again.data, again.size, &reading) == 0);
            }
        }
        else
        if (type == S_VERDICT) {
            proto_verdict_t verdict;
            rc = proto_verdict_decode (copy, size, &verdict);
            if (rc == 0) {
                assert (proto_verdict_encode (&verdict, &again) == 0);
                assert (proto_verdict_decode (again.data, again.size, &verdict) == 0);
            }
        }
        else
        if (type == S_EVENT) {
            proto_event_t event;
            rc = proto_event_decode (copy, size, &event);
            if (rc == 0) {
                assert (proto_event_encode (&event, &again) == 0);
                assert (proto_event_decode (again.data, again.size, &event) == 0);
            }
        }
        else
            rc = s_test_decode (type, copy, size);
        assert (rc == 0 || rc == -2);
    }
    proto_buffer_release (&again);
    free (copy);
}

static void
s_test_partition (void)
{
    //  Known values (FNV-1a 32 computed independently); other services and
    //  test tools must agree with these.
    assert (proto_partition ("00000000-0000-0000-0000-000000000000", 0xffffffffu)
            == 3192360657u % 0xffffffffu);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 0xffffffffu) == 709961738u);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 2) == 0);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 4) == 2);
    assert (proto_partition ("00000000-0000-0000-0000-000000000000", 4) == 1);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 0) == 0);
    assert (proto_partition ("6f1c2a4e-8b3d-4c5e-9f70-123456789abc", 1) == 0);

    //  Spread over 1000 random ports: each partition gets its fair share
    //  within 10 points (2: 40-60%, 4: 15-35%)
    uint64_t state = 0x9e3779b97f4a7c15ull;
    uint32_t partitions [] = {2, 4};
    for (size_t which = 0; which < 2; which++) {
        int hits [4] = {0};
        for (int index = 0; index < 1000; index++) {
            char uuid [PROTO_UUID_LEN + 1];
            s_test_uuid (&state, uuid);
            uint32_t partition = proto_partition (uuid, partitions [which]);
            assert (partition < partitions [which]);
            assert (partition == proto_partition (uuid, partitions [which]));
            hits [partition]++;
        }
        for (uint32_t partition = 0; partition < partitions [which]; partition++)
            assert (abs (hits [partition] - 1000 / (int) partitions [which]) <= 100);
    }
}

void
proto_test (bool verbose)
{
    printf (" * proto: ");
    uint64_t state = 0x2545f4914f6cdd1dull;
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);

    //  Status names
    assert (s_streq (proto_status_name (PROTO_STATUS_PHANTOM), "phantom"));
    assert (s_streq (proto_status_name (PROTO_STATUS_OFFLINE), "offline"));
    assert (s_streq (proto_status_name (-1), "unknown"));
    assert (s_streq (proto_status_name (6), "unknown"));
    for (int status = 0; status <= S_STATUS_LAST; status++)
        assert ((int) proto_status_parse (proto_status_name (status)) == status);
    assert (proto_status_parse ("nonsense") == PROTO_STATUS_UNKNOWN);
    assert (proto_status_parse (NULL) == PROTO_STATUS_UNKNOWN);

    s_test_partition ();

    //  Reading round trip, field by field
    proto_reading_t reading, reading_out;
    s_test_reading (&reading);
    assert (proto_reading_encode (&reading, &buffer) == 0);
    memset (&reading_out, 0x5a, sizeof (reading_out));
    assert (proto_reading_decode (buffer.data, buffer.size, &reading_out) == 0);
    s_test_reading_equal (&reading, &reading_out);
    if (verbose)
        printf ("reading frame %zu bytes; ", buffer.size);
    //  Encoding twice reuses the buffer and gives the same bytes
    size_t first_size = buffer.size;
    assert (proto_reading_encode (&reading_out, &buffer) == 0);
    assert (buffer.size == first_size);

    //  Short strings and zero values round-trip too
    proto_reading_t small = reading;
    strcpy (small.gateway, "g");
    small.key [0] = 0;
    small.settings.timezone [0] = 0;
    small.request = 0;
    small.power = 0;
    assert (proto_reading_encode (&small, &buffer) == 0);
    assert (proto_reading_decode (buffer.data, buffer.size, &reading_out) == 0);
    s_test_reading_equal (&small, &reading_out);

    //  Reading malformations
    proto_reading_t malformed = reading;
    malformed.settings.timezone [10] = 0;   //  keep strings short for str8 splices
    malformed.key [10] = 0;
    assert (proto_reading_encode (&malformed, &buffer) == 0);
    s_test_truncations (S_READING, &buffer);
    static const s_test_field_t reading_fields [] = {
        {"v", S_NUMBER},    {"rq", S_NUMBER},   {"gw", S_TEXT},     {"u", S_NUMBER},
        {"d", S_NUMBER},    {"p", S_TEXT},      {"t", S_NUMBER},    {"r", S_NUMBER},
        {"V", S_NUMBER},    {"I", S_NUMBER},    {"W", S_NUMBER},    {"k", S_TEXT},
        {"s", S_MAP},       {"s.ow", S_NUMBER}, {"s.sw", S_NUMBER}, {"s.mp", S_NUMBER},
        {"s.eo", S_NUMBER}, {"s.of", S_NUMBER}, {"s.ot", S_NUMBER}, {"s.tz", S_TEXT},
    };
    size_t reading_field_count = sizeof (reading_fields) / sizeof (reading_fields [0]);
    s_test_wrong_types (S_READING, &buffer, reading_fields, reading_field_count);
    //  Each key renamed to an unknown one, or to a duplicate of another
    for (size_t field = 0; field < reading_field_count; field++) {
        assert (s_test_rename (S_READING, &buffer, reading_fields [field].path, "zz") == -2);
        assert (s_test_rename (S_READING, &buffer, reading_fields [field].path, "") == -2);
        assert (s_test_rename (S_READING, &buffer, reading_fields [field].path, "vvvvv") == -2);
    }
    assert (s_test_rename (S_READING, &buffer, "rq", "gw") == -2);
    assert (s_test_rename (S_READING, &buffer, "s.ow", "sw") == -2);
    {
        //  A key with a NUL in it is not the key without
        s_test_span_t span;
        assert (s_test_find (buffer.data, 0, "u", &span) == 0);
        proto_buffer_t out;
        proto_buffer_init (&out);
        s_test_splice (&buffer, span.key_at, span.key_end, "\xa2u\0", 3, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == -2);
        s_test_splice (&buffer, span.key_at, span.key_end, "\xa2\0u", 3, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == -2);
        s_test_splice (&buffer, span.key_at, span.key_end, "\xd9\x01u", 3, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == 0);
        proto_buffer_release (&out);
    }
    //  Versions
    assert (s_test_value (S_READING, &buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_READING, &buffer, "v", S_BYTES ("\x00")) == -2);
    assert (s_test_value (S_READING, &buffer, "v", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, &buffer, "v", S_BYTES ("\xd3\0\0\0\0\0\0\0\x01")) == 0);
    //  Integer widths and ranges
    assert (s_test_value (S_READING, &buffer, "rq", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, &buffer, "rq", S_BYTES ("\xd0\x05")) == 0);
    assert (s_test_value (S_READING, &buffer, "u", S_BYTES ("\xcf\x80\0\0\0\0\0\0\0")) == -2);
    assert (s_test_value (S_READING, &buffer, "u", S_BYTES ("\xd3\x80\0\0\0\0\0\0\0")) == 0);
    assert (s_test_value (S_READING, &buffer, "u", S_BYTES ("\xcf\x7f\xff\xff\xff\xff\xff\xff\xff"))
            == 0);
    assert (s_test_value (S_READING, &buffer, "s.mp", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.mp", S_BYTES ("\xce\x80\0\0\0")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.mp", S_BYTES ("\xce\x7f\xff\xff\xff")) == 0);
    assert (s_test_value (S_READING, &buffer, "s.eo", S_BYTES ("\x03")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.eo", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.eo", S_BYTES ("\x00")) == 0);
    assert (s_test_value (S_READING, &buffer, "s.of", S_BYTES ("\xcd\x05\xa1")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.of", S_BYTES ("\xcd\x05\xa0")) == 0);
    assert (s_test_value (S_READING, &buffer, "s.ot", S_BYTES ("\xff")) == -2);
    //  Doubles: NaN and infinities refused anywhere, integers accepted
    const char *doubles [] = {"V", "I", "W"};
    for (size_t index = 0; index < 3; index++) {
        assert (s_test_value (S_READING, &buffer, doubles [index],
                              S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);    //  NaN
        assert (s_test_value (S_READING, &buffer, doubles [index],
                              S_BYTES ("\xcb\x7f\xf0\0\0\0\0\0\0")) == -2);    //  +Inf
        assert (s_test_value (S_READING, &buffer, doubles [index],
                              S_BYTES ("\xcb\xff\xf0\0\0\0\0\0\0")) == -2);    //  -Inf
        assert (s_test_value (S_READING, &buffer, doubles [index],
                              S_BYTES ("\xca\x7f\xc0\0\0")) == -2);            //  NaN32
        assert (s_test_value (S_READING, &buffer, doubles [index], S_BYTES ("\xca\x3f\xc0\0\0"))
                == 0);                                                         //  1.5f
        assert (s_test_value (S_READING, &buffer, doubles [index], S_BYTES ("\xfb")) == 0);
    }
    {
        //  An integer power decodes as that many watts
        s_test_span_t span;
        assert (s_test_find (buffer.data, 0, "W", &span) == 0);
        proto_buffer_t out;
        proto_buffer_init (&out);
        s_test_splice (&buffer, span.value_at, span.value_end, "\xcd\x01\x2c", 3, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == 0);
        assert (reading_out.power == 300.0);
        proto_buffer_release (&out);
    }
    assert (s_test_value (S_READING, &buffer, "s.ow", S_BYTES ("\xca\x7f\xc0\0\0")) == -2);
    assert (s_test_value (S_READING, &buffer, "s.ow", S_BYTES ("\xcb\x48\x0c\0\0\0\0\0\0"))
            == -2);                                                            //  1e39 > FLT_MAX
    assert (s_test_value (S_READING, &buffer, "s.sw", S_BYTES ("\xcb\x40\x09\x21\xfb\x54\x44\x2d\x18"))
            == 0);
    //  Strings: bounds, NULs, character sets
    char text [300];
    memset (text, 'a', sizeof (text));
    assert (s_test_text (S_READING, &buffer, "gw", text, PROTO_GATEWAY_MAX) == 0);
    assert (s_test_text (S_READING, &buffer, "gw", text, PROTO_GATEWAY_MAX + 1) == -2);
    assert (s_test_text (S_READING, &buffer, "gw", text, 0) == -2);
    assert (s_test_text (S_READING, &buffer, "gw", "g w", 3) == -2);
    assert (s_test_text (S_READING, &buffer, "gw", "g\nw", 3) == -2);
    assert (s_test_text (S_READING, &buffer, "k", text, PROTO_KEY_MAX) == 0);
    assert (s_test_text (S_READING, &buffer, "k", text, PROTO_KEY_MAX + 1) == -2);
    assert (s_test_text (S_READING, &buffer, "k", text, 200) == -2);
    assert (s_test_text (S_READING, &buffer, "k", "", 0) == 0);
    assert (s_test_text (S_READING, &buffer, "k", "a\0b", 3) == -2);
    assert (s_test_text (S_READING, &buffer, "s.tz", text, PROTO_TIMEZONE_MAX) == 0);
    assert (s_test_text (S_READING, &buffer, "s.tz", text, PROTO_TIMEZONE_MAX + 1) == -2);
    assert (s_test_text (S_READING, &buffer, "s.tz", "Europe\0Paris", 12) == -2);
    assert (s_test_value (S_READING, &buffer, "k", S_BYTES ("\xda\x00\x03" "abc")) == 0);
    assert (s_test_value (S_READING, &buffer, "k", S_BYTES ("\xdb\x00\x00\x00\x03" "abc")) == 0);
    assert (s_test_value (S_READING, &buffer, "k", S_BYTES ("\xdb\xff\xff\xff\xff" "abc")) == -2);
    assert (s_test_value (S_READING, &buffer, "k", S_BYTES ("\xc5\x00\x03" "abc")) == -2);
    const char *bad_ports [] = {
        "6F1C2A4E-8B3D-4C5E-9F70-123456789ABC",     //  upper case
        "6f1c2a4e-8b3d-4c5e-9f70-123456789ab",      //  35
        "6f1c2a4e-8b3d-4c5e-9f70-123456789abcd",    //  37
        "6f1c2a4e8b3d-4c5e-9f70-123456789abc-",     //  dash moved
        "6f1c2a4e-8b3d-4c5e-9f70-12345678gabc",     //  not hex
        ("6f1c2a4e-8b3d-4c5e-9f70-1234567\0" "9abc"), //  NUL
        "{f1c2a4e-8b3d-4c5e-9f70-123456789ab}",
        "",
    };
    for (size_t index = 0; index < sizeof (bad_ports) / sizeof (bad_ports [0]); index++) {
        size_t length = index == 5 ? 36 : strlen (bad_ports [index]);
        assert (s_test_text (S_READING, &buffer, "p", bad_ports [index], length) == -2);
    }
    assert (s_test_text (S_READING, &buffer, "p", "00000000-0000-0000-0000-000000000000", 36) == 0);
    //  Map header: too many, too few, map16 form accepted, not a map
    {
        proto_buffer_t out;
        proto_buffer_init (&out);
        uint8_t header = buffer.data [0];
        assert (header == 0x8d);
        uint8_t more = 0x8e, fewer = 0x8c, wide [] = {0xde, 0x00, 0x0d}, wider [] = {0xdf, 0, 0, 0, 0x0d};
        s_test_splice (&buffer, 0, 1, &more, 1, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == -2);
        s_test_splice (&buffer, 0, 1, &fewer, 1, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == -2);
        s_test_splice (&buffer, 0, 1, wide, 3, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == 0);
        s_test_splice (&buffer, 0, 1, wider, 5, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == 0);
        uint8_t huge [] = {0xdf, 0xff, 0xff, 0xff, 0xff};
        s_test_splice (&buffer, 0, 1, huge, 5, &out);
        assert (proto_reading_decode (out.data, out.size, &reading_out) == -2);
        //  A reading frame is not a verdict, event or ack frame, and back
        assert (s_test_decode (S_VERDICT, buffer.data, buffer.size) == -2);
        assert (s_test_decode (S_EVENT, buffer.data, buffer.size) == -2);
        assert (s_test_decode (S_ACKS, buffer.data, buffer.size) == -2);
        proto_buffer_release (&out);
    }
    s_test_mutations (S_READING, &buffer, &state, 20000);

    //  Verdict round trip, with and without an episode
    proto_verdict_t verdict, verdict_out;
    memset (&verdict, 0, sizeof (verdict));
    s_test_reading (&verdict.reading);
    verdict.status = PROTO_STATUS_OFFLINE;
    verdict.previous = PROTO_STATUS_PHANTOM;
    verdict.has_episode = true;
    s_test_episode (&verdict.episode);
    assert (proto_verdict_encode (&verdict, &buffer) == 0);
    memset (&verdict_out, 0x5a, sizeof (verdict_out));
    assert (proto_verdict_decode (buffer.data, buffer.size, &verdict_out) == 0);
    s_test_reading_equal (&verdict.reading, &verdict_out.reading);
    assert (verdict_out.status == PROTO_STATUS_OFFLINE);
    assert (verdict_out.previous == PROTO_STATUS_PHANTOM);
    assert (verdict_out.has_episode);
    s_test_episode_equal (&verdict.episode, &verdict_out.episode);
    //  Without the optional keys: flags clear, and the frame is what
    //  senders that predate them wrote (map of 5, no "nr"/"bl")
    assert (!verdict_out.no_reading && !verdict_out.has_baseline);
    assert (verdict_out.baseline_watts == 0);
    assert (buffer.data [0] == 0x85);
    {
        s_test_span_t span;
        assert (s_test_find (buffer.data, 0, "nr", &span) == -1);
        assert (s_test_find (buffer.data, 0, "bl", &span) == -1);
    }
    s_test_truncations (S_VERDICT, &buffer);
    static const s_test_field_t verdict_fields [] = {
        {"v", S_NUMBER},       {"rd", S_MAP},         {"st", S_NUMBER},      {"pv", S_NUMBER},
        {"ep", S_MAP},         {"rd.rq", S_NUMBER},   {"rd.gw", S_TEXT},     {"rd.u", S_NUMBER},
        {"rd.d", S_NUMBER},    {"rd.p", S_TEXT},      {"rd.t", S_NUMBER},    {"rd.r", S_NUMBER},
        {"rd.V", S_NUMBER},    {"rd.I", S_NUMBER},    {"rd.W", S_NUMBER},    {"rd.k", S_TEXT},
        {"rd.s", S_MAP},       {"rd.s.ow", S_NUMBER}, {"rd.s.sw", S_NUMBER}, {"rd.s.mp", S_NUMBER},
        {"rd.s.eo", S_NUMBER}, {"rd.s.of", S_NUMBER}, {"rd.s.ot", S_NUMBER}, {"rd.s.tz", S_TEXT},
        {"ep.s", S_NUMBER},    {"ep.e", S_NUMBER},    {"ep.en", S_NUMBER},   {"ep.mw", S_NUMBER},
        {"ep.pk", S_NUMBER},   {"ep.n", S_NUMBER},
    };
    size_t verdict_field_count = sizeof (verdict_fields) / sizeof (verdict_fields [0]);
    s_test_wrong_types (S_VERDICT, &buffer, verdict_fields, verdict_field_count);
    for (size_t field = 0; field < verdict_field_count; field++)
        assert (s_test_rename (S_VERDICT, &buffer, verdict_fields [field].path, "zz") == -2);
    assert (s_test_rename (S_VERDICT, &buffer, "rd.rq", "v") == -2);    //  no "v" inside
    assert (s_test_value (S_VERDICT, &buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "st", S_BYTES ("\x06")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "pv", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "st", S_BYTES ("\x05")) == 0);
    assert (s_test_value (S_VERDICT, &buffer, "ep.n", S_BYTES ("\xcf\0\0\0\x01\0\0\0\0")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "ep.n", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "ep.en", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_value (S_VERDICT, &buffer, "rd.W", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_text (S_VERDICT, &buffer, "rd.p", "not-a-uuid", 10) == -2);
    s_test_mutations (S_VERDICT, &buffer, &state, 20000);
    verdict.has_episode = false;
    verdict.status = PROTO_STATUS_ACTIVE;
    verdict.previous = PROTO_STATUS_UNKNOWN;
    assert (proto_verdict_encode (&verdict, &buffer) == 0);
    assert (proto_verdict_decode (buffer.data, buffer.size, &verdict_out) == 0);
    s_test_reading_equal (&verdict.reading, &verdict_out.reading);
    assert (verdict_out.status == PROTO_STATUS_ACTIVE);
    assert (verdict_out.previous == PROTO_STATUS_UNKNOWN);
    assert (!verdict_out.has_episode);
    assert (verdict_out.episode.samples == 0 && verdict_out.episode.start == 0);
    s_test_truncations (S_VERDICT, &buffer);
    assert (s_test_rename (S_VERDICT, &buffer, "st", "ep") == -2);

    //  No-reading verdict with baseline and closed episode: all 7 keys
    verdict.no_reading = true;
    verdict.has_baseline = true;
    verdict.baseline_watts = 4.75f;
    verdict.has_episode = true;
    verdict.status = PROTO_STATUS_OFFLINE;
    verdict.previous = PROTO_STATUS_PHANTOM;
    strcpy (verdict.reading.gateway, PROTO_GATEWAY_NONE);
    assert (proto_verdict_encode (&verdict, &buffer) == 0);
    assert (buffer.data [0] == 0x87);
    memset (&verdict_out, 0x5a, sizeof (verdict_out));
    assert (proto_verdict_decode (buffer.data, buffer.size, &verdict_out) == 0);
    s_test_reading_equal (&verdict.reading, &verdict_out.reading);
    assert (verdict_out.no_reading == true);
    assert (verdict_out.has_baseline == true);
    assert (verdict_out.baseline_watts == 4.75f);
    assert (verdict_out.has_episode);
    s_test_episode_equal (&verdict.episode, &verdict_out.episode);
    s_test_truncations (S_VERDICT, &buffer);
    static const s_test_field_t optional_fields [] = {{"nr", S_TRUE}, {"bl", S_NUMBER}};
    s_test_wrong_types (S_VERDICT, &buffer, optional_fields, 2);
    for (size_t field = 0; field < 2; field++)
        assert (s_test_rename (S_VERDICT, &buffer, optional_fields [field].path, "zz") == -2);
    assert (s_test_rename (S_VERDICT, &buffer, "nr", "bl") == -2);     //  repeated key
    assert (s_test_rename (S_VERDICT, &buffer, "bl", "nr") == -2);
    assert (s_test_rename (S_VERDICT, &buffer, "bl", "st") == -2);
    assert (s_test_value (S_VERDICT, &buffer, "bl", S_BYTES ("\xca\x7f\xc0\0\0")) == -2); //  NaN
    assert (s_test_value (S_VERDICT, &buffer, "bl", S_BYTES ("\xca\xbf\x80\0\0")) == -2); //  -1
    assert (s_test_value (S_VERDICT, &buffer, "bl", S_BYTES ("\xcb\x48\x0c\0\0\0\0\0\0"))
            == -2);                                                             //  1e39
    assert (s_test_value (S_VERDICT, &buffer, "bl", S_BYTES ("\x00")) == 0);   //  0 W
    assert (s_test_value (S_VERDICT, &buffer, "bl", S_BYTES ("\xcd\x01\x2c")) == 0);
    {
        //  Eight keys are one too many, even if the eighth were known
        proto_buffer_t out;
        proto_buffer_init (&out);
        uint8_t eight = 0x88;
        s_test_splice (&buffer, 0, 1, &eight, 1, &out);
        assert (proto_verdict_decode (out.data, out.size, &verdict_out) == -2);
        proto_buffer_release (&out);
    }
    s_test_mutations (S_VERDICT, &buffer, &state, 20000);
    //  Each optional key alone
    verdict.has_episode = false;
    verdict.has_baseline = false;
    assert (proto_verdict_encode (&verdict, &buffer) == 0);
    assert (buffer.data [0] == 0x85);
    assert (proto_verdict_decode (buffer.data, buffer.size, &verdict_out) == 0);
    assert (verdict_out.no_reading && !verdict_out.has_baseline && !verdict_out.has_episode);
    assert (verdict_out.baseline_watts == 0);
    s_test_truncations (S_VERDICT, &buffer);
    verdict.no_reading = false;
    verdict.has_baseline = true;
    verdict.baseline_watts = 0.25f;
    assert (proto_verdict_encode (&verdict, &buffer) == 0);
    assert (proto_verdict_decode (buffer.data, buffer.size, &verdict_out) == 0);
    assert (!verdict_out.no_reading && verdict_out.has_baseline);
    assert (verdict_out.baseline_watts == 0.25f);
    s_test_truncations (S_VERDICT, &buffer);
    //  Four required keys still required with optional ones around
    assert (s_test_rename (S_VERDICT, &buffer, "pv", "nr") == -2);

    //  Event round trip, with and without an episode
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
    assert (proto_event_encode (&event, &buffer) == 0);
    memset (&event_out, 0x5a, sizeof (event_out));
    assert (proto_event_decode (buffer.data, buffer.size, &event_out) == 0);
    assert (s_streq (event_out.kind, "phantom.start"));
    assert (event_out.user == 77);
    assert (s_streq (event_out.port, event.port));
    assert (event_out.ts == event.ts);
    assert (event_out.watts == 2.5);
    assert (event_out.status == PROTO_STATUS_PHANTOM);
    assert (event_out.previous == PROTO_STATUS_IDLE);
    assert (event_out.has_episode);
    s_test_episode_equal (&event.episode, &event_out.episode);
    char topic [PROTO_TOPIC_MAX + 1];
    proto_event_topic (&event_out, topic);
    assert (s_streq (topic, "phantom.start.6f1c2a4e-8b3d-4c5e-9f70-123456789abc"));
    s_test_truncations (S_EVENT, &buffer);
    static const s_test_field_t event_fields [] = {
        {"v", S_NUMBER},     {"k", S_TEXT},       {"u", S_NUMBER},     {"p", S_TEXT},
        {"t", S_NUMBER},     {"W", S_NUMBER},     {"st", S_NUMBER},    {"pv", S_NUMBER},
        {"ep", S_MAP},       {"ep.s", S_NUMBER},  {"ep.e", S_NUMBER},  {"ep.en", S_NUMBER},
        {"ep.mw", S_NUMBER}, {"ep.pk", S_NUMBER}, {"ep.n", S_NUMBER},
    };
    size_t event_field_count = sizeof (event_fields) / sizeof (event_fields [0]);
    s_test_wrong_types (S_EVENT, &buffer, event_fields, event_field_count);
    for (size_t field = 0; field < event_field_count; field++)
        assert (s_test_rename (S_EVENT, &buffer, event_fields [field].path, "zz") == -2);
    assert (s_test_value (S_EVENT, &buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_EVENT, &buffer, "st", S_BYTES ("\x06")) == -2);
    assert (s_test_value (S_EVENT, &buffer, "pv", S_BYTES ("\xff")) == -2);
    assert (s_test_value (S_EVENT, &buffer, "W", S_BYTES ("\xcb\x7f\xf8\0\0\0\0\0\0")) == -2);
    assert (s_test_text (S_EVENT, &buffer, "k", "status", 6) == 0);
    assert (s_test_text (S_EVENT, &buffer, "k", "Status", 6) == -2);
    assert (s_test_text (S_EVENT, &buffer, "k", "phantom start", 13) == -2);
    assert (s_test_text (S_EVENT, &buffer, "k", "", 0) == -2);
    assert (s_test_text (S_EVENT, &buffer, "k", "phantom.start.phantom.ee", 24) == -2);
    assert (s_test_text (S_EVENT, &buffer, "k", "phantom.start.phantom.e", 23) == 0);
    assert (s_test_text (S_EVENT, &buffer, "p", "6f1c2a4e-8b3d-4c5e-9f70-123456789abC", 36) == -2);
    s_test_mutations (S_EVENT, &buffer, &state, 20000);
    strcpy (event.kind, "status");
    event.has_episode = false;
    assert (proto_event_encode (&event, &buffer) == 0);
    assert (proto_event_decode (buffer.data, buffer.size, &event_out) == 0);
    assert (!event_out.has_episode);
    assert (s_streq (event_out.kind, "status"));
    proto_event_topic (&event_out, topic);
    assert (s_streq (topic, "status.6f1c2a4e-8b3d-4c5e-9f70-123456789abc"));
    s_test_truncations (S_EVENT, &buffer);

    //  Acks: round trip, bounds, element checks
    static proto_ack_t acks [PROTO_ACKS_MAX], acks_out [PROTO_ACKS_MAX];
    for (size_t index = 0; index < PROTO_ACKS_MAX; index++) {
        acks [index].request = index * 0x100000001ull + (index == 1 ? UINT64_MAX - 2 : 0);
        acks [index].code = (uint8_t) (index % 3);
        acks [index].id = (int64_t) index * 1000003 - 5;
        acks [index].ts = 1764221000000 + (int64_t) index;
        acks [index].status = (uint8_t) (index % 6);
    }
    size_t count = 99;
    assert (proto_acks_encode (acks, PROTO_ACKS_MAX, &buffer) == 0);
    assert (proto_acks_decode (buffer.data, buffer.size, acks_out, PROTO_ACKS_MAX, &count) == 0);
    assert (count == PROTO_ACKS_MAX);
    for (size_t index = 0; index < count; index++) {
        assert (acks_out [index].request == acks [index].request);
        assert (acks_out [index].code == acks [index].code);
        assert (acks_out [index].id == acks [index].id);
        assert (acks_out [index].ts == acks [index].ts);
        assert (acks_out [index].status == acks [index].status);
    }
    assert (proto_acks_decode (buffer.data, buffer.size, acks_out, PROTO_ACKS_MAX - 1, &count)
            == -2);
    assert (proto_acks_encode (acks, 3, &buffer) == 0);
    count = 99;
    assert (proto_acks_decode (buffer.data, buffer.size, acks_out, 3, &count) == 0);
    assert (count == 3);
    assert (acks_out [1].request == acks [1].request && acks_out [2].code == 2);
    assert (proto_acks_decode (buffer.data, buffer.size, acks_out, 2, &count) == -2);
    s_test_truncations (S_ACKS, &buffer);
    assert (s_test_value (S_ACKS, &buffer, "v", S_BYTES ("\x02")) == -2);
    assert (s_test_value (S_ACKS, &buffer, "acks", S_BYTES ("\xc0")) == -2);
    assert (s_test_value (S_ACKS, &buffer, "acks", S_BYTES ("\x80")) == -2);
    assert (s_test_value (S_ACKS, &buffer, "acks", S_BYTES ("\x90")) == 0);
    assert (s_test_value (S_ACKS, &buffer, "acks", S_BYTES ("\xdd\xff\xff\xff\xff")) == -2);
    assert (s_test_rename (S_ACKS, &buffer, "acks", "ack") == -2);
    assert (s_test_rename (S_ACKS, &buffer, "acks", "v") == -2);
    assert (s_test_rename (S_ACKS, &buffer, "v", "acks") == -2);
    struct {
        const char *bytes;
        size_t length;
        int rc;
    } elements [] = {
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\x04"), 0},                  //  good
        {S_BYTES ("\x91\x95\xcf\xff\xff\xff\xff\xff\xff\xff\xff\x02\xff\xff\x05"), 0},
        {S_BYTES ("\x91\x94\x01\x00\x02\x03"), -2},                      //  4 fields
        {S_BYTES ("\x91\x96\x01\x00\x02\x03\x04\x05"), -2},              //  6 fields
        {S_BYTES ("\x91\x95\xff\x00\x02\x03\x04"), -2},                  //  request < 0
        {S_BYTES ("\x91\x95\x01\x03\x02\x03\x04"), -2},                  //  code 3
        {S_BYTES ("\x91\x95\x01\x00\xa1x\x03\x04"), -2},                 //  id a string
        {S_BYTES ("\x91\x95\x01\x00\x02\xc0\x04"), -2},                  //  ts nil
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\x06"), -2},                  //  status 6
        {S_BYTES ("\x91\x95\x01\x00\x02\x03\xcb\x3f\xf0\0\0\0\0\0\0"), -2}, //  status 1.0
        {S_BYTES ("\x91\x85\x01\x00\x02\x03\x04"), -2},                  //  map, not array
        {S_BYTES ("\x92\x95\x01\x00\x02\x03\x04"), -2},                  //  one missing
    };
    for (size_t index = 0; index < sizeof (elements) / sizeof (elements [0]); index++)
        assert (s_test_value (S_ACKS, &buffer, "acks", elements [index].bytes, elements [index].length)
                == elements [index].rc);
    {
        //  Keys in any order
        const uint8_t reordered [] = {0x82, 0xa4, 'a', 'c', 'k', 's', 0x91, 0x95, 7, 1, 9, 10, 3,
                                      0xa1, 'v', 0x01};
        count = 0;
        assert (proto_acks_decode (reordered, sizeof (reordered), acks_out, 4, &count) == 0);
        assert (count == 1 && acks_out [0].request == 7 && acks_out [0].code == 1
                && acks_out [0].id == 9 && acks_out [0].ts == 10 && acks_out [0].status == 3);
        //  Zero acks with max 0
        assert (proto_acks_encode (acks, 0, &buffer) == 0);
        assert (proto_acks_decode (buffer.data, buffer.size, acks_out, 0, &count) == 0);
        assert (count == 0);
    }
    assert (proto_acks_encode (acks, 5, &buffer) == 0);
    s_test_mutations (S_ACKS, &buffer, &state, 20000);

    //  Empty input, NULL data, and random bytes: malformed, never a crash
    for (int type = S_READING; type <= S_EVENT; type++) {
        assert (s_test_decode ((s_test_frame_t) type, "", 0) == -2);
        assert (s_test_decode ((s_test_frame_t) type, NULL, 0) == -2);
        assert (s_test_decode ((s_test_frame_t) type, "\xc0", 1) == -2);
        assert (s_test_decode ((s_test_frame_t) type, "\x80", 1) == -2);
    }
    uint8_t noise [512];
    for (int round = 0; round < 10000; round++) {
        size_t size = s_test_random (&state) % sizeof (noise);
        for (size_t index = 0; index < size; index++)
            noise [index] = (uint8_t) s_test_random (&state);
        //  Half the rounds start like a map so the decoders get further in
        if (round % 2 && size > 0)
            noise [0] = (uint8_t) (0x80 | (s_test_random (&state) % 14));
        for (int type = S_READING; type <= S_EVENT; type++) {
            int rc = s_test_decode ((s_test_frame_t) type, noise, size);
            assert (rc == 0 || rc == -2);
        }
    }

    proto_buffer_release (&buffer);
    assert (buffer.data == NULL && buffer.size == 0 && buffer.capacity == 0);
    proto_buffer_release (&buffer);
    printf ("OK\n");
}
