/*  =========================================================================
    gateway_json - JSON answers written straight into one buffer

    The sensor routes' answers (the hot path) and the Emoncms answers,
    written byte for byte as jansson's json_dumps (JSON_COMPACT) wrote
    them, without a json_t per value: jansson's objects were two thirds
    of the gateway's CPU at 500 readings per request (BENCH.md).

    The buffer starts in storage the caller gives (a stack array) and
    moves to the heap only when an answer outgrows it. Out of memory is
    sticky: every later call does nothing and failed says so.
    =========================================================================
*/
#ifndef GATEWAY_JSON_H_INCLUDED
#define GATEWAY_JSON_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *data;      //  the text so far (not NUL-terminated)
    size_t size;     //  its bytes
    size_t capacity; //  bytes data has room for
    bool heap;       //  data is malloc'd (else the caller's storage)
    bool failed;     //  out of memory: the text is incomplete
} gateway_json_t;

//  Exact powers of ten as doubles, 1e0 to 1e22: a decimal of up to 2^53
//  over one of them is one correctly rounded division (the scanner reads
//  numbers with it, the writer writes them).
extern const double gateway_json_pow10[23];

//  Starts an empty text in storage (capacity bytes; NULL, 0: the heap).
void gateway_json_init (gateway_json_t *self, char *storage, size_t capacity);
//  Frees what the text took from the heap.
void gateway_json_release (gateway_json_t *self);
//  Where more bytes may be written (size not advanced); NULL when out of memory.
char *gateway_json_room (gateway_json_t *self, size_t more);
//  Appends size bytes of text as they are.
void gateway_json_raw (gateway_json_t *self, const char *data, size_t size);
//  Appends a C string literal as it is.
#define GATEWAY_JSON_LITERAL(self, literal)                                                        \
    gateway_json_raw ((self), (literal), sizeof (literal) - 1)
//  Appends an integer as "%" PRId64.
void gateway_json_int (gateway_json_t *self, int64_t value);
//  Appends a JSON string as jansson writes one (UTF-8 passes through).
void gateway_json_string (gateway_json_t *self, const char *value);
//  Appends a number as the device sent it: integers as integers, reals as
//  the shortest of %.15g / %.17g that reads back the same double.
void gateway_json_number (gateway_json_t *self, double value, bool integer);

void gateway_json_test (bool verbose);

#endif
