/*  =========================================================================
    store_port_memory - port rows waiting in memory, across batches

    Held apart from the batch because it outlives every batch: a batch is
    emptied after each group commit, this memory only when the store stops.
    =========================================================================
*/
#include "store_port_memory.h"

#include <assert.h>
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct _store_port_memory_t {
    zhashx_t *rows;  //  port text -> store_port_row_t
    zlistx_t *queue; //  store_port_row_t waiting to be written, by due time
};

static void
s_row_destroy (void **item)
{
    free (*item);
    *item = NULL;
}

store_port_memory_t *
store_port_memory_new (void)
{
    store_port_memory_t *self = (store_port_memory_t *)zmalloc (sizeof (store_port_memory_t));
    self->rows = zhashx_new ();
    self->queue = zlistx_new ();
    if (!self->rows || !self->queue) {
        store_port_memory_destroy (&self);
        return NULL;
    }
    zhashx_set_destructor (self->rows, s_row_destroy);
    return self;
}

void
store_port_memory_destroy (store_port_memory_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        store_port_memory_t *self = *self_p;
        zlistx_destroy (&self->queue);
        zhashx_destroy (&self->rows);
        free (self);
        *self_p = NULL;
    }
}

store_port_row_t *
store_port_memory_lookup (store_port_memory_t *self, const char *port)
{
    assert (self);
    return (store_port_row_t *)zhashx_lookup (self->rows, port);
}

store_port_row_t *
store_port_memory_require (store_port_memory_t *self, const char *port)
{
    assert (self);
    store_port_row_t *row = (store_port_row_t *)zhashx_lookup (self->rows, port);
    if (!row) {
        row = (store_port_row_t *)zmalloc (sizeof (store_port_row_t));
        snprintf (row->port, sizeof (row->port), "%s", port);
        zhashx_insert (self->rows, port, row);
    }
    return row;
}

void
store_port_memory_written (store_port_memory_t *self, store_port_row_t *row, int64_t now_ms)
{
    assert (self);
    assert (row);
    row->dirty = false;
    row->written = now_ms ? now_ms : 1; //  0 means never
}

void
store_port_memory_defer (store_port_memory_t *self, const char *port, uint8_t status,
                         bool has_reading, int64_t ts, double power, int64_t now_ms,
                         int64_t every_ms)
{
    assert (self);
    store_port_row_t *row = store_port_memory_require (self, port);
    if (!row->dirty)
        row->has_reading = false;
    row->status = status;
    if (has_reading) {
        row->has_reading = true;
        row->ts = ts;
        row->power = power;
    }
    row->dirty = true;
    if (!row->queued) {
        row->queued = true;
        row->due = now_ms + every_ms;
        zlistx_add_end (self->queue, row);
    }
}

void
store_port_memory_settle (store_port_memory_t *self)
{
    assert (self);
    store_port_row_t *head;
    while ((head = (store_port_row_t *)zlistx_first (self->queue)) && !head->dirty) {
        head->queued = false;
        zlistx_detach (self->queue, NULL);
    }
}

store_port_row_t *
store_port_memory_first (store_port_memory_t *self)
{
    assert (self);
    return (store_port_row_t *)zlistx_first (self->queue);
}

store_port_row_t *
store_port_memory_next (store_port_memory_t *self)
{
    assert (self);
    return (store_port_row_t *)zlistx_next (self->queue);
}

size_t
store_port_memory_waiting (store_port_memory_t *self)
{
    assert (self);
    size_t count = 0;
    for (store_port_row_t *row = (store_port_row_t *)zhashx_first (self->rows); row;
         row = (store_port_row_t *)zhashx_next (self->rows))
        count += row->dirty;
    return count;
}

//  --------------------------------------------------------------------------
//  Self test

void
store_port_memory_test (bool verbose)
{
    (void)verbose;
    printf (" * store_port_memory: ");
    const char *one = "6f1c2a4e-8b3d-4c5e-9f70-000000000001";
    const char *two = "6f1c2a4e-8b3d-4c5e-9f70-000000000002";
    store_port_memory_t *memory = store_port_memory_new ();
    assert (memory);
    assert (store_port_memory_lookup (memory, one) == NULL);
    assert (store_port_memory_first (memory) == NULL);

    //  A row written at time 0 still counts as written
    store_port_row_t *row = store_port_memory_require (memory, one);
    assert (row && streq (row->port, one) && !row->dirty && row->written == 0);
    store_port_memory_written (memory, row, 0);
    assert (row->written == 1);
    assert (store_port_memory_lookup (memory, one) == row);

    //  Deferred: the newest values wait, due a second on, queued once
    store_port_memory_defer (memory, one, PROTO_STATUS_IDLE, true, 1000, 5.0, 100, 1000);
    store_port_memory_defer (memory, two, PROTO_STATUS_PHANTOM, false, 0, 0, 200, 1000);
    store_port_memory_defer (memory, one, PROTO_STATUS_PHANTOM, false, 0, 0, 300, 1000);
    assert (store_port_memory_waiting (memory) == 2);
    assert (row->dirty && row->status == PROTO_STATUS_PHANTOM);
    assert (row->has_reading && row->ts == 1000 && row->power == 5.0); //  kept
    assert (row->due == 1100);
    assert (store_port_memory_first (memory) == row);
    store_port_row_t *second = store_port_memory_next (memory);
    assert (second && streq (second->port, two) && second->due == 1200 && !second->has_reading);
    assert (store_port_memory_next (memory) == NULL);

    //  Only written rows at the head leave the queue
    store_port_memory_written (memory, second, 1300);
    store_port_memory_settle (memory);
    assert (store_port_memory_first (memory) == row);
    store_port_memory_written (memory, row, 1400);
    store_port_memory_settle (memory);
    assert (store_port_memory_first (memory) == NULL);
    assert (store_port_memory_waiting (memory) == 0);
    assert (!row->queued && row->written == 1400);

    //  Written clean, a row deferred again starts without its old reading
    store_port_memory_defer (memory, one, PROTO_STATUS_IDLE, false, 0, 0, 1500, 1000);
    assert (!row->has_reading && row->due == 2500);

    store_port_memory_destroy (&memory);
    store_port_memory_destroy (&memory);
    printf ("OK\n");
}
