/*  =========================================================================
    store_column - one column of a statement, as a binary PostgreSQL array
    =========================================================================
*/
#include "store_column.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  PostgreSQL timestamps count microseconds from 2000-01-01 UTC.
#define S_POSTGRES_EPOCH_MS INT64_C (946684800000)
//  Header: dimensions, has-nulls flag, element type, then the one
//  dimension's size and lower bound; the elements follow, each its length
//  (-1: NULL) and bytes.
#define S_HEADER 20
#define S_FLAGS_AT 4
#define S_COUNT_AT 12

struct _store_column_t {
    char *data;               //  header and elements
    size_t size;              //  bytes used
    size_t capacity;          //  bytes allocated
    size_t count;             //  elements
    bool nulls;               //  an element is NULL
    store_column_type_t type; //  of every element
};

store_column_t *
store_column_new (void)
{
    store_column_t *self = (store_column_t *)zmalloc (sizeof (store_column_t));
    store_column_begin (self, STORE_COLUMN_INT8);
    return self;
}

void
store_column_destroy (store_column_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_column_t *self = *self_p;
        free (self->data);
        free (self);
        *self_p = NULL;
    }
}

static void
s_append (store_column_t *self, const void *bytes, size_t size)
{
    if (self->size + size > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 4096;
        while (capacity < self->size + size)
            capacity *= 2;
        char *data = (char *)realloc (self->data, capacity);
        assert (data); //  as zmalloc: no way on without memory
        self->data = data;
        self->capacity = capacity;
    }
    memcpy (self->data + self->size, bytes, size);
    self->size += size;
}

static void
s_put_u32 (uint8_t *bytes, uint32_t value)
{
    bytes[0] = (uint8_t)(value >> 24);
    bytes[1] = (uint8_t)(value >> 16);
    bytes[2] = (uint8_t)(value >> 8);
    bytes[3] = (uint8_t)value;
}

static uint32_t
s_get_u32 (const uint8_t *bytes)
{
    return (uint32_t)bytes[0] << 24 | (uint32_t)bytes[1] << 16 | (uint32_t)bytes[2] << 8 | bytes[3];
}

static void
s_u32 (store_column_t *self, uint32_t value)
{
    uint8_t bytes[4];
    s_put_u32 (bytes, value);
    s_append (self, bytes, 4);
}

//  An element of size bytes follows.
static void
s_element (store_column_t *self, uint32_t size)
{
    s_u32 (self, size);
    self->count++;
}

static void
s_u64 (store_column_t *self, uint64_t value)
{
    s_u32 (self, (uint32_t)(value >> 32));
    s_u32 (self, (uint32_t)value);
}

void
store_column_begin (store_column_t *self, store_column_type_t type)
{
    assert (self);
    self->size = 0;
    self->count = 0;
    self->nulls = false;
    self->type = type;
    s_u32 (self, 1); //  dimensions
    s_u32 (self, 0); //  has nulls (set in store_column_data)
    s_u32 (self, (uint32_t)type);
    s_u32 (self, 0); //  count (set in store_column_data)
    s_u32 (self, 1); //  lower bound
}

void
store_column_int (store_column_t *self, int64_t value)
{
    assert (self);
    assert (self->type == STORE_COLUMN_INT8 || self->type == STORE_COLUMN_INT2);
    if (self->type == STORE_COLUMN_INT2) {
        assert (value >= INT16_MIN && value <= INT16_MAX);
        s_element (self, 2);
        uint8_t bytes[2] = {(uint8_t)((uint16_t)value >> 8), (uint8_t)value};
        s_append (self, bytes, 2);
    } else {
        s_element (self, 8);
        s_u64 (self, (uint64_t)value);
    }
}

void
store_column_double (store_column_t *self, double value)
{
    assert (self);
    assert (self->type == STORE_COLUMN_FLOAT8);
    uint64_t bits;
    memcpy (&bits, &value, sizeof (bits));
    s_element (self, 8);
    s_u64 (self, bits);
}

void
store_column_time (store_column_t *self, int64_t ms)
{
    assert (self);
    assert (self->type == STORE_COLUMN_TIMESTAMPTZ);
    //  Callers keep times inside 1970..9999 (store_batch_add): no overflow.
    s_element (self, 8);
    s_u64 (self, (uint64_t)((ms - S_POSTGRES_EPOCH_MS) * 1000));
}

void
store_column_text (store_column_t *self, const char *value, size_t size)
{
    assert (self);
    assert (self->type == STORE_COLUMN_TEXT);
    size_t length = strnlen (value, size);
    s_element (self, (uint32_t)length);
    s_append (self, value, length);
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

//  Parses canonical uuid text into 16 bytes (bytes may be NULL). 0 or -1.
static int
s_uuid_parse (const char *text, uint8_t *bytes)
{
    if (strlen (text) != 36)
        return -1;
    size_t out = 0;
    for (size_t index = 0; index < 36; index += 2) {
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

bool
store_column_is_uuid (const char *text)
{
    assert (text);
    return s_uuid_parse (text, NULL) == 0;
}

void
store_column_uuid (store_column_t *self, const char *text)
{
    assert (self);
    assert (self->type == STORE_COLUMN_UUID);
    uint8_t uuid[16];
    int rc = s_uuid_parse (text, uuid);
    assert (rc == 0); //  the caller checked it (store_column_is_uuid)
    s_element (self, 16);
    s_append (self, uuid, 16);
}

void
store_column_null (store_column_t *self)
{
    assert (self);
    s_u32 (self, UINT32_MAX); //  length -1
    self->count++;
    self->nulls = true;
}

const char *
store_column_data (store_column_t *self)
{
    assert (self);
    s_put_u32 ((uint8_t *)self->data + S_FLAGS_AT, self->nulls ? 1 : 0);
    s_put_u32 ((uint8_t *)self->data + S_COUNT_AT, (uint32_t)self->count);
    return self->data;
}

int
store_column_length (store_column_t *self)
{
    assert (self);
    return (int)self->size;
}

size_t
store_column_count (store_column_t *self)
{
    assert (self);
    return self->count;
}

//  --------------------------------------------------------------------------
//  Render a binary array as text (tests, debug logs)

static uint64_t
s_get_u64 (const uint8_t *bytes)
{
    return (uint64_t)s_get_u32 (bytes) << 32 | s_get_u32 (bytes + 4);
}

//  Appends element (size bytes of type) to stream; false if malformed.
static bool
s_render_element (FILE *stream, uint32_t type, const uint8_t *bytes, uint32_t size)
{
    switch (type) {
    case STORE_COLUMN_INT2:
        if (size != 2)
            return false;
        fprintf (stream, "%d", (int16_t)((uint16_t)bytes[0] << 8 | bytes[1]));
        return true;
    case STORE_COLUMN_INT8:
        if (size != 8)
            return false;
        fprintf (stream, "%" PRId64, (int64_t)s_get_u64 (bytes));
        return true;
    case STORE_COLUMN_TIMESTAMPTZ:
        if (size != 8)
            return false;
        fprintf (stream, "%" PRId64, (int64_t)s_get_u64 (bytes) / 1000 + S_POSTGRES_EPOCH_MS);
        return true;
    case STORE_COLUMN_FLOAT8: {
        if (size != 8)
            return false;
        uint64_t bits = s_get_u64 (bytes);
        double value;
        memcpy (&value, &bits, sizeof (value));
        fprintf (stream, "%.17g", value);
        return true;
    }
    case STORE_COLUMN_UUID:
        if (size != 16)
            return false;
        fputc ('"', stream);
        for (int index = 0; index < 16; index++)
            fprintf (stream, "%s%02x",
                     index == 4 || index == 6 || index == 8 || index == 10 ? "-" : "",
                     bytes[index]);
        fputc ('"', stream);
        return true;
    case STORE_COLUMN_TEXT:
        fputc ('"', stream);
        for (uint32_t index = 0; index < size; index++) {
            if (bytes[index] == '"' || bytes[index] == '\\')
                fputc ('\\', stream);
            fputc (bytes[index], stream);
        }
        fputc ('"', stream);
        return true;
    default:
        return false;
    }
}

char *
store_column_render (const char *data, int length)
{
    assert (data);
    const uint8_t *bytes = (const uint8_t *)data;
    if (length < S_HEADER || s_get_u32 (bytes) != 1)
        return NULL;
    uint32_t type = s_get_u32 (bytes + 8);
    uint32_t count = s_get_u32 (bytes + S_COUNT_AT);
    char *text = NULL;
    size_t size;
    FILE *stream = open_memstream (&text, &size);
    if (!stream)
        return NULL;
    bool ok = true;
    size_t at = S_HEADER;
    fputc ('{', stream);
    for (uint32_t index = 0; ok && index < count; index++) {
        if (at + 4 > (size_t)length) {
            ok = false;
            break;
        }
        uint32_t element = s_get_u32 (bytes + at);
        at += 4;
        if (index)
            fputc (',', stream);
        if (element == UINT32_MAX)
            fputs ("NULL", stream);
        else if (at + element > (size_t)length)
            ok = false;
        else {
            ok = s_render_element (stream, type, bytes + at, element);
            at += element;
        }
    }
    fputc ('}', stream);
    ok = fclose (stream) == 0 && ok && at == (size_t)length;
    if (!ok)
        zstr_free (&text);
    return text;
}

//  --------------------------------------------------------------------------
//  Self test

//  Renders column and compares with expected.
static void
s_expect (store_column_t *column, const char *expected)
{
    char *text = store_column_render (store_column_data (column), store_column_length (column));
    if (!text || !streq (text, expected))
        fprintf (stderr, "store_column_test: %s, expected %s\n", text ? text : "(malformed)",
                 expected);
    assert (text && streq (text, expected));
    free (text);
}

void
store_column_test (bool verbose)
{
    (void)verbose;
    printf (" * store_column: ");
    store_column_t *column = store_column_new ();
    assert (column);

    //  Header: one dimension, no NULLs, the type, the count, lower bound 1
    store_column_begin (column, STORE_COLUMN_INT8);
    store_column_int (column, 100);
    store_column_int (column, INT64_MIN);
    const uint8_t *bytes = (const uint8_t *)store_column_data (column);
    assert (store_column_length (column) == 20 + 2 * (4 + 8));
    assert (bytes[3] == 1 && bytes[7] == 0 && bytes[11] == 20 && bytes[15] == 2);
    assert (bytes[19] == 1 && bytes[23] == 8 && bytes[31] == 100);
    assert (store_column_count (column) == 2);
    s_expect (column, "{100,-9223372036854775808}");

    //  NULLs set the flag; begin empties and keeps nothing of before
    store_column_begin (column, STORE_COLUMN_FLOAT8);
    store_column_double (column, 230.1);
    store_column_null (column);
    store_column_double (column, 42.5);
    bytes = (const uint8_t *)store_column_data (column);
    assert (bytes[7] == 1 && bytes[15] == 3);
    s_expect (column, "{230.09999999999999,NULL,42.5}");
    store_column_begin (column, STORE_COLUMN_FLOAT8);
    s_expect (column, "{}");
    assert (((const uint8_t *)store_column_data (column))[7] == 0);

    //  1000 ms after 1970 is 946684799000 ms before 2000, in microseconds
    store_column_begin (column, STORE_COLUMN_TIMESTAMPTZ);
    store_column_time (column, 1000);
    bytes = (const uint8_t *)store_column_data (column) + 24;
    uint64_t micros = s_get_u64 (bytes);
    assert ((int64_t)micros == INT64_C (-946684799000000));
    s_expect (column, "{1000}");

    //  Text: its bytes, whatever they are; quoted when rendered
    store_column_begin (column, STORE_COLUMN_TEXT);
    store_column_text (column, "k1", 64);
    store_column_text (column, "a\"b\\c,}", 64);
    store_column_text (column, "longer", 4);
    assert (store_column_length (column) == 20 + (4 + 2) + (4 + 7) + (4 + 4));
    assert (memcmp (store_column_data (column) + 20 + 4, "k1", 2) == 0);
    s_expect (column, "{\"k1\",\"a\\\"b\\\\c,}\",\"long\"}");

    //  Uuids: 16 bytes, any case in, lower case out
    assert (store_column_is_uuid ("0b9f4c1e-3d2a-4c5b-8e7f-112233445566"));
    assert (store_column_is_uuid ("0B9F4C1E-3D2A-4C5B-8E7F-AABBCCDDEEFF"));
    assert (!store_column_is_uuid ("0b9f4c1e-3d2a-4c5b-8e7f-11223344556g"));
    assert (!store_column_is_uuid ("0b9f4c1e3d2a-4c5b-8e7f-1122334455667"));
    assert (!store_column_is_uuid ("0b9f4c1e-3d2a-4c5b-8e7f-1122334455"));
    store_column_begin (column, STORE_COLUMN_UUID);
    store_column_uuid (column, "0B9F4C1E-3D2A-4C5B-8E7F-AABBCCDDEEFF");
    assert (store_column_length (column) == 20 + 4 + 16);
    s_expect (column, "{\"0b9f4c1e-3d2a-4c5b-8e7f-aabbccddeeff\"}");

    //  Small integers: two bytes
    store_column_begin (column, STORE_COLUMN_INT2);
    store_column_int (column, 3);
    store_column_int (column, -2);
    assert (store_column_length (column) == 20 + 2 * (4 + 2));
    s_expect (column, "{3,-2}");

    //  Not an array: no rendering
    assert (store_column_render ("short", 5) == NULL);
    const char *data = store_column_data (column);
    assert (store_column_render (data, store_column_length (column) - 1) == NULL);

    store_column_destroy (&column);
    store_column_destroy (&column);
    printf ("OK\n");
}
