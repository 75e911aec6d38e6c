/*  =========================================================================
    gateway_scanner - the sensor routes' fast JSON reader

    Reads the bodies devices send straight from the text into the records
    the jansson adapter of gateway_reading fills, so both go through the
    very same checks (gateway_reading_check). It takes only the plain
    shape: an object of deviceToken and the reading's members (the single
    route) or of deviceToken and readings, an array of at most
    GATEWAY_READING_BATCH_MAX such objects or scalars (the batch route),
    with scalar values, strings of printable ASCII without escapes, and
    numbers without exponent that read exactly. On anything else (escapes,
    other or repeated members, nesting, exponents, long numbers, any syntax
    error) it gives up and the body goes to jansson, so every answer but
    the fast one is jansson's.

    The contract, fuzzed by tests/fuzz/fuzz_scanner.c: whatever the
    scanner takes, jansson reads with the same values.
    =========================================================================
*/
#ifndef GATEWAY_SCANNER_H_INCLUDED
#define GATEWAY_SCANNER_H_INCLUDED

#include "gateway_reading.h"

//  A single-reading body: text (size bytes, writable) into its deviceToken
//  and reading; 0, or -1 when jansson must read it. Only on success is the
//  text changed: each string value's closing quote becomes its NUL, and
//  the values borrow from text.
int gateway_scanner_reading (char *text, size_t size, gateway_value_t *token,
                             gateway_reading_item_t *item);

//  A batch body the same way into batch (empty, as reset leaves it); on -1
//  batch may hold a part: reset it before jansson fills it.
int gateway_scanner_batch (char *text, size_t size, gateway_reading_batch_t *batch);

//  The scanner against jansson on text (size bytes): as the batch route
//  (batch true) or the single-reading route reads it, each through the
//  checks at now_ms. 1: the scanner took it and both say the same (the
//  body's and every reading's status, code and message, the token, every
//  value bit for bit, in order); 0: the scanner left it to jansson; -1:
//  they differ, described on stderr. For the self test and the fuzzer
//  (tests/fuzz/fuzz_scanner.c).
int gateway_scanner_compare (const char *text, size_t size, bool batch, int64_t now_ms);

void gateway_scanner_test (bool verbose);

#endif
