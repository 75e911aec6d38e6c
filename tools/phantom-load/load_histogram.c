/*  =========================================================================
    load_histogram - latency histogram in microseconds, HdrHistogram-like
    =========================================================================
*/
#include "load_histogram.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_CLAMP ((UINT64_C (1) << 40) - 1)

static size_t
s_index (uint64_t value)
{
    if (value > S_CLAMP)
        value = S_CLAMP;
    if (value < LOAD_HISTOGRAM_LINEAR)
        return (size_t)value;
    int shift = 63 - __builtin_clzll (value) - 10; //  value >> shift is 1024..2047
    return LOAD_HISTOGRAM_LINEAR + (size_t)(shift - 1) * LOAD_HISTOGRAM_SUB +
           (size_t)((value >> shift) - LOAD_HISTOGRAM_SUB);
}

//  Largest value that lands in the bucket, as HdrHistogram reports percentiles.
static uint64_t
s_highest (size_t index)
{
    if (index < LOAD_HISTOGRAM_LINEAR)
        return index;
    int shift = (int)((index - LOAD_HISTOGRAM_LINEAR) / LOAD_HISTOGRAM_SUB) + 1;
    uint64_t top = (index - LOAD_HISTOGRAM_LINEAR) % LOAD_HISTOGRAM_SUB + LOAD_HISTOGRAM_SUB;
    return (top << shift) + (UINT64_C (1) << shift) - 1;
}

load_histogram_t *
load_histogram_new (void)
{
    return (load_histogram_t *)calloc (1, sizeof (load_histogram_t));
}

void
load_histogram_destroy (load_histogram_t **self_p)
{
    assert (self_p);
    free (*self_p);
    *self_p = NULL;
}

void
load_histogram_record (load_histogram_t *self, uint64_t value)
{
    self->counts[s_index (value)]++;
    self->total++;
    if (value > self->max)
        self->max = value;
}

void
load_histogram_merge (load_histogram_t *self, const load_histogram_t *other)
{
    for (size_t index = 0; index < LOAD_HISTOGRAM_SIZE; index++)
        self->counts[index] += other->counts[index];
    self->total += other->total;
    if (other->max > self->max)
        self->max = other->max;
}

uint64_t
load_histogram_percentile (const load_histogram_t *self, double percentile)
{
    if (self->total == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil (percentile / 100.0 * (double)self->total);
    if (rank < 1)
        rank = 1;
    if (rank > self->total)
        rank = self->total;
    uint64_t seen = 0;
    for (size_t index = 0; index < LOAD_HISTOGRAM_SIZE; index++) {
        seen += self->counts[index];
        if (seen >= rank) {
            uint64_t value = s_highest (index);
            return value < self->max ? value : self->max;
        }
    }
    return self->max;
}

void
load_histogram_test (bool verbose)
{
    if (verbose)
        printf (" * load_histogram: ");
    //  Percentiles: exact below 2048 us, within 0.1 % above.
    load_histogram_t *histogram = load_histogram_new ();
    assert (histogram);
    assert (load_histogram_percentile (histogram, 50) == 0);
    for (uint64_t value = 1; value <= 1000; value++)
        load_histogram_record (histogram, value);
    assert (load_histogram_percentile (histogram, 50) == 500);
    assert (load_histogram_percentile (histogram, 90) == 900);
    assert (load_histogram_percentile (histogram, 99) == 990);
    assert (load_histogram_percentile (histogram, 100) == 1000);
    memset (histogram, 0, sizeof *histogram);
    for (uint64_t value = 1; value <= 100000; value++)
        load_histogram_record (histogram, value * 10); //  10 us .. 1 s
    uint64_t p50 = load_histogram_percentile (histogram, 50);
    uint64_t p99 = load_histogram_percentile (histogram, 99);
    assert (p50 >= 500000 && p50 <= 500000 + 500000 / 1000);
    assert (p99 >= 990000 && p99 <= 990000 + 990000 / 1000);
    assert (load_histogram_percentile (histogram, 100) == 1000000);
    assert (histogram->max == 1000000);
    //  One slow outlier among fast samples shows in the max, not in p99.
    memset (histogram, 0, sizeof *histogram);
    for (int index = 0; index < 999; index++)
        load_histogram_record (histogram, 1500);
    load_histogram_record (histogram, UINT64_C (30000000));
    assert (load_histogram_percentile (histogram, 99) == 1500);
    assert (load_histogram_percentile (histogram, 100) == 30000000);
    //  Bucket edges are consistent: every value maps to a bucket that holds it.
    for (uint64_t value = 1; value < (UINT64_C (1) << 40); value = value * 3 / 2 + 1) {
        size_t index = s_index (value);
        assert (s_highest (index) >= value);
        assert (index == 0 || s_highest (index - 1) < value);
    }
    //  Merging adds counts.
    load_histogram_t *other = load_histogram_new ();
    assert (other);
    load_histogram_record (other, 5);
    load_histogram_merge (histogram, other);
    assert (histogram->total == 1001);
    assert (load_histogram_percentile (histogram, 0) == 5);
    load_histogram_destroy (&other);
    load_histogram_destroy (&histogram);
    load_histogram_destroy (&histogram);
    assert (histogram == NULL);
    if (verbose)
        printf ("OK\n");
}
