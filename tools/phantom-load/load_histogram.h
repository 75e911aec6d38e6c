/*  =========================================================================
    load_histogram - latency histogram in microseconds, HdrHistogram-like

    Exact below 2048 us, then 1024 sub-buckets per power of two (better than
    0.1 % precision), so percentiles over any number of samples cost a fixed
    250 KB per thread. The struct is public: each worker records into its
    own without a call through an opaque handle, and the run merges them.
    =========================================================================
*/
#ifndef LOAD_HISTOGRAM_H_INCLUDED
#define LOAD_HISTOGRAM_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LOAD_HISTOGRAM_LINEAR 2048
#define LOAD_HISTOGRAM_SUB 1024
#define LOAD_HISTOGRAM_GROUPS 29 //  covers values up to 2^40 us
#define LOAD_HISTOGRAM_SIZE (LOAD_HISTOGRAM_LINEAR + LOAD_HISTOGRAM_GROUPS * LOAD_HISTOGRAM_SUB)

typedef struct {
    uint64_t counts[LOAD_HISTOGRAM_SIZE];
    uint64_t total; //  samples recorded
    uint64_t max;   //  exact largest sample
} load_histogram_t;

//  An empty histogram, or NULL if out of memory.
load_histogram_t *load_histogram_new (void);

//  Destroys it; nullifies the caller's reference. Safe to call twice.
void load_histogram_destroy (load_histogram_t **self_p);

void load_histogram_record (load_histogram_t *self, uint64_t value);

//  Adds other's samples to self.
void load_histogram_merge (load_histogram_t *self, const load_histogram_t *other);

//  The smallest recorded value v such that `percentile` % of samples are <= v
//  (within bucket precision); 0 when empty.
uint64_t load_histogram_percentile (const load_histogram_t *self, double percentile);

void load_histogram_test (bool verbose);

#endif
