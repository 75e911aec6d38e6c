/*  =========================================================================
    store_port_memory - port rows waiting in memory, across batches

    A port's row is written at most once a second unless its status
    changes (store_batch.h says when). What a later row would have said
    waits here: the newest status and last reading per port, and a queue
    of the ports waiting, in the order their second ends. The batch asks
    which are due and tells what it wrote and what it left waiting.
    =========================================================================
*/
#ifndef STORE_PORT_MEMORY_H_INCLUDED
#define STORE_PORT_MEMORY_H_INCLUDED

#include "proto.h"

//  A port row as the store last knew it.
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
} store_port_row_t;

typedef struct _store_port_memory_t store_port_memory_t;

//  NULL if out of memory.
store_port_memory_t *store_port_memory_new (void);
void store_port_memory_destroy (store_port_memory_t **self_p);

//  The row of port, or NULL when the store has not written it yet.
store_port_row_t *store_port_memory_lookup (store_port_memory_t *self, const char *port);
//  The row of port, made clean and empty if it had none.
store_port_row_t *store_port_memory_require (store_port_memory_t *self, const char *port);

//  After COMMIT: row was written at monotonic now_ms; nothing waits.
void store_port_memory_written (store_port_memory_t *self, store_port_row_t *row, int64_t now_ms);
//  After COMMIT: port's newest values (a reading only if has_reading; a
//  row already waiting keeps its older reading otherwise) wait, queued to
//  go out every_ms after now_ms unless already queued.
void store_port_memory_defer (store_port_memory_t *self, const char *port, uint8_t status,
                              bool has_reading, int64_t ts, double power, int64_t now_ms,
                              int64_t every_ms);
//  Drops the written rows at the queue's head; the rest keep their place.
void store_port_memory_settle (store_port_memory_t *self);

//  The queue of waiting rows, oldest due first (settled rows are gone
//  from its head only). NULL at the end.
store_port_row_t *store_port_memory_first (store_port_memory_t *self);
store_port_row_t *store_port_memory_next (store_port_memory_t *self);

//  Rows holding what is not written yet.
size_t store_port_memory_waiting (store_port_memory_t *self);

//  Self test
void store_port_memory_test (bool verbose);

#endif
