/*  =========================================================================
    load_answer - the gateway's answer bodies: a reading's id, a batch's
    per-reading statuses

    They are read by a direct scan when they have the gateway's exact shape,
    and by jansson otherwise: at 500 readings per request jansson's object
    per value was a third of the load generator's CPU, and this tool's cost
    counts against the machine it measures.
    =========================================================================
*/
#ifndef LOAD_ANSWER_H_INCLUDED
#define LOAD_ANSWER_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  How the gateway's 201 to a single reading starts, up to the id's digits.
#define LOAD_ANSWER_SINGLE_PREFIX                                                                  \
    "{\"success\":true,\"message\":\"Sensor reading created successfully\","                       \
    "\"data\":{\"reading\":{\"id\":"

//  Reads data.reading.id of a single reading's 201 answer; 0 if it has none.
int64_t load_answer_single_id (const char *body, size_t size);

//  Fills statuses [count] and ids [count] from a batch answer's
//  data.results[] (matched by "index"); entries the answer does not mention
//  stay 0. Returns 0, or -2 if the body is not a batch answer.
int load_answer_batch (const char *body, size_t size, size_t count, int *statuses, int64_t *ids);

void load_answer_test (bool verbose);

#endif
