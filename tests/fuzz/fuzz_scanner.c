/*  =========================================================================
    fuzz_scanner - differential libFuzzer target: the scanner against jansson

    The sensor routes read a body with gateway_scanner (the production fast
    path) and leave to jansson only what the scanner gives up on. Each
    input is such a body, read as the single-reading route and as the
    batch route reads it: whenever the scanner takes it, jansson must read
    it too, and the checks must then say exactly the same of both (the
    body's and every reading's status, code and message, the token, every
    value bit for bit, the readings in order). The scanner reads an exact,
    unterminated copy, so any read past the body is an ASan report.
    =========================================================================
*/
#include "gateway_scanner.h"

#include <stdio.h>
#include <stdlib.h>

#define S_NOW_MS 1764221000000LL //  fixed: runs must be repeatable

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  abort() so libFuzzer records the input even in release builds.
    if (gateway_scanner_compare ((const char *)data, size, false, S_NOW_MS) < 0 ||
        gateway_scanner_compare ((const char *)data, size, true, S_NOW_MS) < 0) {
        fprintf (stderr, "fuzz_scanner: scanner and jansson disagree\n");
        abort ();
    }
    return 0;
}
