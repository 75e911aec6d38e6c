/*  =========================================================================
    store_column - one column of a statement, as a binary PostgreSQL array

    The one encoding of the store's statement parameters: every column the
    store sends (keys, readings, ports, episodes, marks, rollups) is a
    one-dimensional array in array_recv's binary form, passed as a binary
    parameter (format 1): no text for the server to parse, no conversion
    per row. Times travel as timestamptz (microseconds since 2000) or, where
    a statement wants them so, as bigint milliseconds. The header's element
    count and NULL flag are filled in as elements are added.
    =========================================================================
*/
#ifndef STORE_COLUMN_H_INCLUDED
#define STORE_COLUMN_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct _store_column_t store_column_t;

//  Element types (PostgreSQL type oids, which array_recv checks against
//  the parameter's declared type).
typedef enum {
    STORE_COLUMN_INT2 = 21,
    STORE_COLUMN_INT8 = 20,
    STORE_COLUMN_TEXT = 25,
    STORE_COLUMN_FLOAT8 = 701,
    STORE_COLUMN_TIMESTAMPTZ = 1184,
    STORE_COLUMN_UUID = 2950
} store_column_type_t;

//  An empty column; NULL if out of memory.
store_column_t *store_column_new (void);
void store_column_destroy (store_column_t **self_p);

//  Empties the column for elements of type; keeps memory.
void store_column_begin (store_column_t *self, store_column_type_t type);

//  Appends one element; each must suit the column's type: int (INT2,
//  INT8), double (FLOAT8), time (TIMESTAMPTZ, ms since the epoch), text
//  (TEXT: its bytes, at most size; the server checks the encoding), uuid
//  (UUID: canonical text, checked by the caller with store_column_is_uuid).
void store_column_int (store_column_t *self, int64_t value);
void store_column_double (store_column_t *self, double value);
void store_column_time (store_column_t *self, int64_t ms);
void store_column_text (store_column_t *self, const char *value, size_t size);
void store_column_uuid (store_column_t *self, const char *text);
void store_column_null (store_column_t *self);

//  The parameter: bytes (owned by the column, valid until it changes) and
//  their length; the elements so far.
const char *store_column_data (store_column_t *self);
int store_column_length (store_column_t *self);
size_t store_column_count (store_column_t *self);

//  Whether text is a uuid in canonical form (8-4-4-4-12 hex digits).
bool store_column_is_uuid (const char *text);

//  A binary array as text, for tests and debug logs: "{1,NULL,\"a\"}";
//  text and uuids quoted, times as ms since the epoch, doubles %.17g.
//  The caller frees it; NULL if the bytes are not such an array.
char *store_column_render (const char *data, int length);

//  Self test
void store_column_test (bool verbose);

#endif
