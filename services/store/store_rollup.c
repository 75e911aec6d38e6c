/*  =========================================================================
    store_rollup - a lane's minute rollups, kept up as it commits
    =========================================================================
*/
#include "store_rollup.h"

#include <assert.h>
#include <czmq.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define S_MINUTE_MS 60000
//  Minutes handed over but not taken yet; beyond, they are dropped and
//  the next take says so (the maintenance re-rolls its window).
#define S_OUT_MAX 500000

typedef struct {
    int64_t last_ts;           //  newest reading committed, ms; -1: none
    double last_power;         //  ... its power
    bool open;                 //  minute holds last_ts's minute (kept, from on)
    bool dirty;                //  minute changed since last handed over
    store_rollup_minute_t now; //  last_ts's minute
} s_port_t;

struct _store_rollup_t {
    pthread_mutex_t lock; //  the lane adds, the maintenance takes
    int64_t from;         //  first minute kept, ms
    int64_t gap;          //  longest interval with energy and reported time, ms
    size_t ports_max;
    zhashx_t *ports;            //  port -> s_port_t
    bool forgot;                //  ports were forgotten: new ones start partial
    store_rollup_minute_t *out; //  minutes handed over, not taken yet
    size_t out_size;
    size_t out_max;
    bool overflow;                //  some were dropped since the last take
    atomic_int_least64_t writing; //  see store_rollup_set_writing
};

static void
s_port_destroy (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static int64_t
s_minute (int64_t ms)
{
    return ms - ((ms % S_MINUTE_MS) + S_MINUTE_MS) % S_MINUTE_MS;
}

store_rollup_t *
store_rollup_new (int64_t from_ms, int64_t gap_ms, size_t ports_max)
{
    assert (gap_ms >= 0);
    assert (ports_max > 0);
    store_rollup_t *self = (store_rollup_t *)zmalloc (sizeof (store_rollup_t));
    self->ports = zhashx_new ();
    if (!self->ports) {
        free (self);
        return NULL;
    }
    zhashx_set_destructor (self->ports, s_port_destroy);
    pthread_mutex_init (&self->lock, NULL);
    self->from = s_minute (from_ms) == from_ms ? from_ms : s_minute (from_ms) + S_MINUTE_MS;
    self->gap = gap_ms;
    self->ports_max = ports_max;
    atomic_init (&self->writing, INT64_MAX);
    return self;
}

void
store_rollup_destroy (store_rollup_t **self_p)
{
    assert (self_p);
    store_rollup_t *self = *self_p;
    if (!self)
        return;
    zhashx_destroy (&self->ports);
    pthread_mutex_destroy (&self->lock);
    free (self->out);
    free (self);
    *self_p = NULL;
}

int64_t
store_rollup_from (store_rollup_t *self)
{
    assert (self);
    return self->from;
}

//  Hands a minute over (under lock), bounded.
static void
s_hand_over (store_rollup_t *self, const store_rollup_minute_t *minute)
{
    if (self->out_size == self->out_max) {
        size_t max = self->out_max ? self->out_max * 2 : 1024;
        store_rollup_minute_t *out =
            max > S_OUT_MAX ? NULL
                            : (store_rollup_minute_t *)realloc (self->out, max * sizeof (*out));
        if (!out) {
            self->overflow = true;
            return;
        }
        self->out = out;
        self->out_max = max;
    }
    self->out[self->out_size++] = *minute;
}

//  A partial mark for (port, minute): re-rolled from the table.
static void
s_hand_over_partial (store_rollup_t *self, const char *port, int64_t minute)
{
    store_rollup_minute_t mark = {.minute = minute, .partial = true};
    snprintf (mark.port, sizeof (mark.port), "%s", port);
    s_hand_over (self, &mark);
}

//  Past ports_max: every open minute goes over as partial (the readings
//  after it would start a minute without what came before), and all
//  ports are forgotten.
static void
s_forget (store_rollup_t *self)
{
    for (s_port_t *port = (s_port_t *)zhashx_first (self->ports); port;
         port = (s_port_t *)zhashx_next (self->ports))
        if (port->open)
            s_hand_over_partial (self, port->now.port, port->now.minute);
    zhashx_purge (self->ports);
    self->forgot = true;
}

int64_t
store_rollup_add (store_rollup_t *self, const char *port_id, int64_t ts, double power)
{
    assert (self);
    assert (port_id);
    pthread_mutex_lock (&self->lock);
    s_port_t *port = (s_port_t *)zhashx_lookup (self->ports, port_id);
    if (!port) {
        if (zhashx_size (self->ports) >= self->ports_max)
            s_forget (self);
        port = (s_port_t *)zmalloc (sizeof (s_port_t));
        port->last_ts = -1;
        zhashx_insert (self->ports, port_id, port);
    }
    int64_t last = port->last_ts;
    int64_t minute = s_minute (ts);
    if (last >= 0 && ts < last) {
        //  Out of order: its minute and its predecessor's interval are
        //  the table's to redo (a re-roll of a minute does both).
        if (port->open && port->now.minute == minute)
            port->now.partial = port->dirty = true;
        else if (minute >= self->from)
            s_hand_over_partial (self, port_id, minute);
        pthread_mutex_unlock (&self->lock);
        return last;
    }
    if (port->open) {
        //  The interval from the last reading starts in the open minute.
        if (ts - last <= self->gap) {
            double seconds = (double)(ts - last) / 1000.0;
            port->now.energy_ws += (port->last_power + power) / 2 * seconds;
            port->now.reported_seconds += seconds;
            port->dirty = true;
        }
        if (minute != port->now.minute) {
            if (port->dirty)
                s_hand_over (self, &port->now);
            port->open = false;
        }
    }
    if (!port->open && minute >= self->from) {
        memset (&port->now, 0, sizeof (port->now));
        snprintf (port->now.port, sizeof (port->now.port), "%s", port_id);
        port->now.minute = minute;
        port->now.min_power = port->now.max_power = power;
        //  A port first seen after the lane forgot: its minute may hold
        //  readings from before.
        port->now.partial = last < 0 && self->forgot;
        port->open = true;
    }
    if (port->open) {
        if (power < port->now.min_power)
            port->now.min_power = power;
        if (power > port->now.max_power)
            port->now.max_power = power;
        port->now.sum_power += power;
        port->now.samples++;
        port->dirty = true;
    }
    port->last_ts = ts;
    port->last_power = power;
    pthread_mutex_unlock (&self->lock);
    return last;
}

void
store_rollup_lasts (store_rollup_t *self, const char *const *ports, size_t count, int64_t *lasts)
{
    assert (self);
    assert (ports || count == 0);
    pthread_mutex_lock (&self->lock);
    for (size_t index = 0; index < count; index++) {
        s_port_t *port = (s_port_t *)zhashx_lookup (self->ports, ports[index]);
        lasts[index] = port ? port->last_ts : -1;
    }
    pthread_mutex_unlock (&self->lock);
}

void
store_rollup_set_writing (store_rollup_t *self, int64_t rolled)
{
    assert (self);
    atomic_store (&self->writing, rolled);
}

int64_t
store_rollup_writing (store_rollup_t *self)
{
    assert (self);
    return atomic_load (&self->writing);
}

size_t
store_rollup_take (store_rollup_t *self, int64_t below_ms, store_rollup_minute_t **minutes_p,
                   bool *overflow_p)
{
    assert (self);
    assert (minutes_p);
    assert (overflow_p);
    pthread_mutex_lock (&self->lock);
    size_t open = 0; //  what the second pass takes from the ports
    for (s_port_t *port = (s_port_t *)zhashx_first (self->ports); port;
         port = (s_port_t *)zhashx_next (self->ports))
        open += port->open && port->dirty && port->now.minute < below_ms;
    store_rollup_minute_t *taken =
        (store_rollup_minute_t *)malloc ((self->out_size + open + 1) * sizeof (*taken));
    size_t count = 0;
    if (taken) {
        size_t kept = 0;
        for (size_t index = 0; index < self->out_size; index++)
            if (self->out[index].minute < below_ms)
                taken[count++] = self->out[index];
            else
                self->out[kept++] = self->out[index];
        self->out_size = kept;
        for (s_port_t *port = (s_port_t *)zhashx_first (self->ports); port;
             port = (s_port_t *)zhashx_next (self->ports))
            if (port->open && port->dirty && port->now.minute < below_ms) {
                taken[count++] = port->now;
                port->dirty = false;
            }
    } else
        self->overflow = true; //  the next take's caller re-rolls the window
    *overflow_p = self->overflow;
    self->overflow = false;
    pthread_mutex_unlock (&self->lock);
    *minutes_p = taken;
    return count;
}

//  --------------------------------------------------------------------------
//  Self test: against a reference that computes each minute from all the
//  readings, as phantom_rollup does (store_maintenance_test checks the
//  whole path against the SQL itself).

typedef struct {
    int64_t ts;
    double power;
} s_sample_t;

static void
s_reference (const s_sample_t *samples, size_t count, int64_t minute, int64_t gap,
             store_rollup_minute_t *expect)
{
    memset (expect, 0, sizeof (*expect));
    for (size_t index = 0; index < count; index++) {
        if (s_minute (samples[index].ts) != minute)
            continue;
        double power = samples[index].power;
        if (!expect->samples || power < expect->min_power)
            expect->min_power = power;
        if (!expect->samples || power > expect->max_power)
            expect->max_power = power;
        expect->sum_power += power;
        expect->samples++;
        if (index + 1 < count && samples[index + 1].ts - samples[index].ts <= gap) {
            double seconds = (double)(samples[index + 1].ts - samples[index].ts) / 1000.0;
            expect->energy_ws += (power + samples[index + 1].power) / 2 * seconds;
            expect->reported_seconds += seconds;
        }
    }
}

void
store_rollup_test (bool verbose)
{
    printf (" * store_rollup: ");
    const char *port = "11111111-2222-3333-4444-555555555555";
    const int64_t base = 1700000000000LL - 1700000000000LL % S_MINUTE_MS; //  a whole minute
    const int64_t gap = 300 * 1000;

    //  In order, irregular steps (some longer than the gap), over 30
    //  minutes; taken every few minutes, and what was taken last for a
    //  minute must equal the reference.
    s_sample_t samples[4000];
    size_t count = 0;
    int64_t ts = base + 1234;
    unsigned seed = 7;
    while (ts < base + 30 * S_MINUTE_MS && count < 4000) {
        samples[count].ts = ts;
        samples[count].power = (double)(rand_r (&seed) % 100000) / 997.0;
        count++;
        int step = rand_r (&seed) % 100;
        ts += step == 0 ? 0 : step < 99 ? rand_r (&seed) % 3000 : 299000 + rand_r (&seed) % 5000;
    }
    store_rollup_t *rollup = store_rollup_new (base + 1, gap, 100);
    assert (store_rollup_from (rollup) == base + S_MINUTE_MS); //  rounded up
    store_rollup_minute_t latest[40];
    memset (latest, 0, sizeof (latest));
    size_t next = 0;
    for (int64_t below = base + 3 * S_MINUTE_MS; below <= base + 40 * S_MINUTE_MS;
         below += 3 * S_MINUTE_MS) {
        for (; next < count && samples[next].ts < below + 5000; next++) {
            int64_t last = store_rollup_add (rollup, port, samples[next].ts, samples[next].power);
            assert (last == (next ? samples[next - 1].ts : -1));
        }
        store_rollup_minute_t *taken;
        bool overflow;
        size_t size = store_rollup_take (rollup, below, &taken, &overflow);
        assert (!overflow);
        for (size_t index = 0; index < size; index++) {
            assert (streq (taken[index].port, port));
            assert (!taken[index].partial);
            assert (taken[index].minute < below);
            assert (taken[index].minute >= base + S_MINUTE_MS);
            latest[(taken[index].minute - base) / S_MINUTE_MS] = taken[index];
        }
        free (taken);
    }
    size_t minutes = 0;
    for (int64_t minute = base; minute < base + 40 * S_MINUTE_MS; minute += S_MINUTE_MS) {
        store_rollup_minute_t expect;
        s_reference (samples, count, minute, gap, &expect);
        const store_rollup_minute_t *got = &latest[(minute - base) / S_MINUTE_MS];
        if (minute < base + S_MINUTE_MS || !expect.samples) {
            assert (got->samples == 0); //  before from, or no readings
            continue;
        }
        assert (got->minute == minute);
        assert (got->samples == expect.samples);
        assert (got->min_power == expect.min_power && got->max_power == expect.max_power);
        assert (got->sum_power == expect.sum_power);
        assert (got->energy_ws == expect.energy_ws);
        assert (got->reported_seconds == expect.reported_seconds);
        minutes++;
    }
    assert (minutes > 10);
    //  Nothing changed since: nothing to take.
    store_rollup_minute_t *taken;
    bool overflow;
    assert (store_rollup_take (rollup, INT64_MAX, &taken, &overflow) == 0 && !overflow);
    free (taken);

    //  Offline is neither energy nor time: every 10 s for 3 minutes, 400 s
    //  of silence (longer than the gap), then every 10 s for 2 minutes.
    //  The minutes report 180 s + 120 s, each interval in the minute of its
    //  start; the reading before the silence is a sample of its minute but
    //  starts no interval.
    store_rollup_t *gappy = store_rollup_new (base, gap, 100);
    const int64_t start = base + 100 * S_MINUTE_MS;
    for (int64_t at = 0; at <= 180; at += 10)
        store_rollup_add (gappy, port, start + at * 1000, 2);
    for (int64_t at = 580; at <= 700; at += 10)
        store_rollup_add (gappy, port, start + at * 1000, 3);
    const double reported[12] = {60, 60, 60, 0, 0, 0, 0, 0, 0, 20, 60, 40};
    size_t size = store_rollup_take (gappy, start + 12 * S_MINUTE_MS, &taken, &overflow);
    assert (size == 7 && !overflow); //  minutes 0-3 and 9-11
    double total = 0;
    for (size_t index = 0; index < size; index++) {
        int64_t minute = (taken[index].minute - start) / S_MINUTE_MS;
        assert (minute >= 0 && minute < 12 && !taken[index].partial);
        assert (taken[index].reported_seconds == reported[minute]);
        //  Constant draw: the energy is that draw over the same time.
        assert (taken[index].energy_ws == (minute < 4 ? 2 : 3) * reported[minute]);
        assert (taken[index].samples == (minute == 3 ? 1 : minute == 9 ? 2 : minute == 11 ? 5 : 6));
        total += taken[index].reported_seconds;
    }
    assert (total == 300);
    free (taken);
    store_rollup_destroy (&gappy);

    //  Out of order: the open minute goes over partial; an older one as a
    //  partial mark of its own; the newest time stays.
    int64_t t0 = base + 50 * S_MINUTE_MS;
    store_rollup_add (rollup, port, t0 + 10000, 5);
    assert (store_rollup_add (rollup, port, t0 + 5000, 6) == t0 + 10000);
    assert (store_rollup_add (rollup, port, t0 - 50000, 7) == t0 + 10000);
    assert (store_rollup_add (rollup, port, t0 + 20000, 8) == t0 + 10000);
    size = store_rollup_take (rollup, t0 + S_MINUTE_MS, &taken, &overflow);
    assert (size == 2);
    for (size_t index = 0; index < size; index++) {
        assert (taken[index].partial);
        assert (taken[index].minute == t0 || taken[index].minute == t0 - S_MINUTE_MS);
    }
    free (taken);

    //  Past ports_max ports: the open minutes go over partial, and a
    //  forgotten port's next minute starts partial.
    store_rollup_t *small = store_rollup_new (base, gap, 2);
    store_rollup_add (small, "a", base + 1000, 1);
    store_rollup_add (small, "b", base + 1000, 1);
    store_rollup_add (small, "c", base + 2000, 1); //  forgets a and b
    assert (store_rollup_add (small, "a", base + 3000, 1) == -1);
    size = store_rollup_take (small, base + S_MINUTE_MS, &taken, &overflow);
    size_t partial = 0;
    for (size_t index = 0; index < size; index++)
        partial += taken[index].partial;
    //  a and b handed over on forgetting; c and then a are new after it,
    //  so they may have had readings before: partial too.
    assert (size == 4 && partial == 4);
    free (taken);
    store_rollup_destroy (&small);

    //  What a lane asks before a write: each port's newest reading (an
    //  older one, out of order, does not change it), -1 for one unknown;
    //  and the bound of its write in flight, none to begin with.
    const char *asked[3] = {port, "c", "unknown"};
    int64_t lasts[3];
    store_rollup_lasts (rollup, asked, 3, lasts);
    assert (lasts[0] == t0 + 20000 && lasts[1] == -1 && lasts[2] == -1);
    store_rollup_add (rollup, "c", base + 5000, 1);
    store_rollup_add (rollup, "c", base + 4000, 1);
    store_rollup_lasts (rollup, asked, 3, lasts);
    assert (lasts[1] == base + 5000);
    assert (store_rollup_writing (rollup) == INT64_MAX);
    store_rollup_set_writing (rollup, 1234);
    assert (store_rollup_writing (rollup) == 1234);
    store_rollup_destroy (&rollup);
    if (verbose)
        printf ("(%zu minutes checked) ", minutes);
    printf ("OK\n");
}
