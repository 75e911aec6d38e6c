/*  =========================================================================
    gateway_json - JSON answers written straight into one buffer

    See gateway_json.h. Numbers: printf of doubles was 7 % of a worker's
    time per reading, so the readings devices send (a few decimals) are
    written by s_format_short; every other double goes through snprintf.
    =========================================================================
*/
#include "gateway_json.h"

#include <assert.h>
#include <czmq.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>

const double gateway_json_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
#define s_pow10 gateway_json_pow10

void
gateway_json_init (gateway_json_t *self, char *storage, size_t capacity)
{
    self->data = storage;
    self->size = 0;
    self->capacity = storage ? capacity : 0;
    self->heap = false;
    self->failed = false;
}

void
gateway_json_release (gateway_json_t *self)
{
    if (self->heap)
        free (self->data);
    gateway_json_init (self, NULL, 0);
}

char *
gateway_json_room (gateway_json_t *self, size_t more)
{
    if (self->failed)
        return NULL;
    if (self->size + more > self->capacity) {
        size_t capacity = self->capacity ? self->capacity : 1024;
        while (capacity < self->size + more)
            capacity *= 2;
        char *data = (char *)(self->heap ? realloc (self->data, capacity) : malloc (capacity));
        if (!data) {
            self->failed = true;
            return NULL;
        }
        if (!self->heap && self->size)
            memcpy (data, self->data, self->size);
        self->data = data;
        self->capacity = capacity;
        self->heap = true;
    }
    return self->data + self->size;
}

void
gateway_json_raw (gateway_json_t *self, const char *data, size_t size)
{
    char *room = gateway_json_room (self, size);
    if (room) {
        memcpy (room, data, size);
        self->size += size;
    }
}

//  Writes value's decimal digits (at least one) backwards ending at end;
//  returns where they start.
static char *
s_digits_back (uint64_t value, char *end)
{
    do {
        *--end = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return end;
}

//  As "%" PRId64; returns the end.
static char *
s_put_int (char *cursor, int64_t value)
{
    char digits[24];
    char *end = digits + sizeof digits;
    char *start = s_digits_back (value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value, end);
    if (value < 0)
        *cursor++ = '-';
    memcpy (cursor, start, (size_t)(end - start));
    return cursor + (end - start);
}

void
gateway_json_int (gateway_json_t *self, int64_t value)
{
    char *room = gateway_json_room (self, 24);
    if (room)
        self->size += (size_t)(s_put_int (room, value) - room);
}

void
gateway_json_string (gateway_json_t *self, const char *value)
{
    static const char hex[] = "0123456789ABCDEF";
    char *room = gateway_json_room (self, 2 + 6 * strlen (value));
    if (!room)
        return;
    char *out = room;
    *out++ = '"';
    for (const char *cursor = value; *cursor; cursor++) {
        unsigned char c = (unsigned char)*cursor;
        if (c == '"' || c == '\\') {
            *out++ = '\\';
            *out++ = (char)c;
        } else if (c < 0x20) {
            *out++ = '\\';
            switch (c) {
            case '\b':
                *out++ = 'b';
                break;
            case '\f':
                *out++ = 'f';
                break;
            case '\n':
                *out++ = 'n';
                break;
            case '\r':
                *out++ = 'r';
                break;
            case '\t':
                *out++ = 't';
                break;
            default:
                memcpy (out, "u00", 3);
                out[3] = hex[c >> 4];
                out[4] = hex[c & 15];
                out += 5;
            }
        } else
            *out++ = (char)c;
    }
    *out++ = '"';
    self->size += (size_t)(out - room);
}

//  What "%.15g" writes for value when value is the double nearest to a
//  decimal m / 10^k of at most 15 significant digits that %g writes in
//  fixed notation (1e-4 <= it < 1e15); false for any other value (zero
//  and -0.0 included), which the caller formats with snprintf.
//  Why it is exact: m < 10^15 < 2^53 and 10^k (k <= 22) are exact doubles
//  and one IEEE division is correctly rounded, so (double) m / 10^k ==
//  value proves value is the double nearest to that decimal. A decimal of
//  at most DBL_DIG (15) digits survives decimal -> double -> 15 digits, so
//  %.15g writes exactly its digits (and strtod reads them back to value:
//  no %.17g). Two such decimals cannot share a double, so the first k
//  that matches is the one. Computing m is approximate; the check is not.
static bool
s_format_short (double value, char out[40])
{
    if (!(value >= 1e-4 && value < 1e15))
        return false;
    for (int k = 0; k <= 18; k++) {
        double scaled = value * s_pow10[k];
        if (scaled >= 1e15)
            return false;
        uint64_t mantissa = (uint64_t)(scaled + 0.5);
        if (mantissa == 0 || (double)mantissa / s_pow10[k] != value)
            continue;
        char digits[24];
        char *end = digits + sizeof digits;
        char *start = s_digits_back (mantissa, end);
        int count = (int)(end - start);
        //  %g's exponent; below -4 it writes 1e-05 style.
        if (count - 1 - k < -4)
            return false;
        char *cursor = out;
        if (k == 0) {
            memcpy (cursor, start, (size_t)count);
            cursor += count;
        } else if (count > k) {
            memcpy (cursor, start, (size_t)(count - k));
            cursor += count - k;
            *cursor++ = '.';
            memcpy (cursor, start + count - k, (size_t)k);
            cursor += k;
        } else {
            //  The first k that matches has no trailing zero to strip.
            *cursor++ = '0';
            *cursor++ = '.';
            memset (cursor, '0', (size_t)(k - count));
            cursor += k - count;
            memcpy (cursor, start, (size_t)count);
            cursor += count;
        }
        *cursor = 0;
        return true;
    }
    return false;
}

//  The same for any value, through snprintf and strtod.
static void
s_format_real_slow (double value, char out[40])
{
    snprintf (out, 40, "%.15g", value);
    if (strtod (out, NULL) != value)
        snprintf (out, 40, "%.17g", value);
    //  "230" is a valid JSON number; keep it as the device's real if it was one.
}

//  Writes a number as the device sent it: integers as integers, reals in
//  the shortest of %.15g / %.17g that reads back the same double. The
//  readings devices send (a few decimals) take s_format_short: printf of
//  doubles was 7 % of a worker's time per reading.
static void
s_format_number (double value, bool integer, char out[40])
{
    if (integer) {
        *s_put_int (out, (int64_t)value) = 0;
        return;
    }
    if (!s_format_short (value, out))
        s_format_real_slow (value, out);
}

void
gateway_json_number (gateway_json_t *self, double value, bool integer)
{
    char *room = gateway_json_room (self, 40);
    if (!room)
        return;
    s_format_number (value, integer, room);
    self->size += strlen (room);
}

//  ==========================================================================
//  s_format_number against the snprintf + strtod it replaces, on every
//  kind of double; and that the readings devices send take the fast path.
static void
s_format_test (bool verbose)
{
    char fast[40], slow[40];
    size_t shortcut = 0, total = 0;
    uint64_t state = 0x853C49E6748FEA9BULL;
    for (int iteration = 0; iteration < 2000000; iteration++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        double value;
        switch (iteration % 6) {
        case 0: { //  any bit pattern
            memcpy (&value, &state, sizeof value);
            break;
        }
        case 1: //  a uniform double in the accepted range
            value = (double)(state >> 11) / (double)(UINT64_C (1) << 53) * 1e6;
            break;
        case 2: { //  a decimal of 1..17 digits with 0..20 after the point
            int digits = 1 + (int)((state >> 3) % 17);
            uint64_t mantissa = (state >> 12) % (uint64_t)s_pow10[digits];
            value = (double)mantissa / s_pow10[(state >> 58) % 21];
            break;
        }
        case 3: //  rounded like the simulator: round(uniform, 2 or 3)
            value = round ((double)(state >> 11) / (double)(UINT64_C (1) << 53) * 1000 *
                           s_pow10[2 + state % 2]) /
                    s_pow10[2 + state % 2];
            break;
        case 4: //  arithmetic that leaves the short decimals: 0.1 + 0.2 and kin
            value = (double)((state >> 20) % 10000) / 100 + (double)((state >> 40) % 1000) / 1000;
            break;
        default: { //  one ulp around a short decimal
            double base = (double)((state >> 16) % 100000) / s_pow10[(state >> 50) % 8];
            value = nextafter (base, (state & 1) ? INFINITY : 0);
        }
        }
        s_format_number (value, false, fast);
        s_format_real_slow (value, slow);
        if (strcmp (fast, slow) != 0) {
            fprintf (stderr, "\nformat %a: '%s', snprintf '%s'\n", value, fast, slow);
            assert (false);
        }
        char probe[40];
        shortcut += s_format_short (value, probe);
        total++;
    }
    const double edges[] = {0.0,
                            -0.0,
                            1e-4,
                            nextafter (1e-4, 0),
                            nextafter (1e-4, 1),
                            9.9999e-5,
                            0.00012,
                            1e15,
                            nextafter (1e15, 0),
                            999999999999999.0,
                            99999999999999.9,
                            0.1 + 0.2,
                            1.0 / 3,
                            2.0 / 3,
                            1e6,
                            1000000.000001,
                            123456789012345.0,
                            0.123456789012345,
                            5e-324,
                            2.2250738585072014e-308,
                            1.7976931348623157e308,
                            INFINITY,
                            -INFINITY,
                            NAN,
                            -1.5,
                            -230.5,
                            230.5,
                            0.45,
                            103.73,
                            1e-5,
                            0.5,
                            4503599627370496.5,
                            9007199254740993.0};
    for (size_t index = 0; index < sizeof edges / sizeof edges[0]; index++) {
        s_format_number (edges[index], false, fast);
        s_format_real_slow (edges[index], slow);
        if (strcmp (fast, slow) != 0) {
            fprintf (stderr, "\nformat %a: '%s', snprintf '%s'\n", edges[index], fast, slow);
            assert (false);
        }
    }
    //  The guide's readings are the fast path's.
    assert (s_format_short (230.5, fast) && streq (fast, "230.5"));
    assert (s_format_short (0.45, fast) && streq (fast, "0.45"));
    assert (s_format_short (103.73, fast) && streq (fast, "103.73"));
    assert (s_format_short (0.001, fast) && streq (fast, "0.001"));
    assert (s_format_short (1000.0, fast) && streq (fast, "1000"));
    //  Integers as "%" PRId64.
    for (int iteration = 0; iteration < 100000; iteration++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int64_t number = (int64_t)(state >> (state % 64));
        if (iteration % 3 == 0)
            number = -number;
        double value = (double)number;
        if (value >= 9.2e18 || value <= -9.2e18)
            continue;
        s_format_number (value, true, fast);
        snprintf (slow, sizeof slow, "%" PRId64, (int64_t)value);
        assert (streq (fast, slow));
    }
    if (verbose)
        printf ("\nnumbers: %zu of %zu formatted without printf, all as printf\n", shortcut, total);
}

void
gateway_json_test (bool verbose)
{
    printf (" * gateway_json: ");
    char number[40];
    s_format_number (103.73, false, number);
    assert (streq (number, "103.73"));
    s_format_number (0.45, false, number);
    assert (streq (number, "0.45"));
    s_format_number (0.1 + 0.2, false, number);
    assert (strtod (number, NULL) == 0.1 + 0.2);
    s_format_number (230, true, number);
    assert (streq (number, "230"));
    s_format_test (verbose);

    gateway_json_t text;
    gateway_json_init (&text, NULL, 0);
    gateway_json_int (&text, INT64_MIN);
    GATEWAY_JSON_LITERAL (&text, " ");
    gateway_json_int (&text, 0);
    GATEWAY_JSON_LITERAL (&text, " ");
    gateway_json_int (&text, INT64_MAX);
    assert (text.size == 42 &&
            memcmp (text.data, "-9223372036854775808 0 9223372036854775807", 42) == 0);
    gateway_json_release (&text);

    //  Strings and numbers as jansson's json_dumps writes them, begun in
    //  a small stack buffer that the text outgrows.
    char storage[16];
    gateway_json_init (&text, storage, sizeof storage);
    GATEWAY_JSON_LITERAL (&text, "[");
    gateway_json_string (&text, "quote \" slash \\ tab \t ctl \x01 / \xc3\xa9");
    GATEWAY_JSON_LITERAL (&text, ",");
    gateway_json_number (&text, 230.5, false);
    GATEWAY_JSON_LITERAL (&text, ",");
    gateway_json_number (&text, 0.1 + 0.2, false);
    GATEWAY_JSON_LITERAL (&text, ",");
    gateway_json_number (&text, 1000, true);
    GATEWAY_JSON_LITERAL (&text, "]");
    assert (text.heap && !text.failed);
    json_t *array = json_pack ("[s,f,f,i]", "quote \" slash \\ tab \t ctl \x01 / \xc3\xa9", 230.5,
                               0.1 + 0.2, 1000);
    char *expected = json_dumps (array, JSON_COMPACT | JSON_REAL_PRECISION (17));
    if (text.size != strlen (expected) || memcmp (text.data, expected, text.size) != 0) {
        fprintf (stderr, "\nours: %.*s\njansson: %s\n", (int)text.size, text.data, expected);
        assert (false);
    }
    free (expected);
    json_decref (array);
    gateway_json_release (&text);
    assert (text.size == 0 && !text.heap);
    printf ("OK\n");
}
