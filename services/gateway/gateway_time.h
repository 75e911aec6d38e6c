/*  =========================================================================
    gateway_time - ISO-8601 time as the gateway reads and writes it

    Readings carry their time as ISO-8601 text or epoch milliseconds; every
    answer writes ISO-8601 UTC with milliseconds. One parser, one writer,
    one clock, so a time read back from an answer is the time stored.
    =========================================================================
*/
#ifndef GATEWAY_TIME_H_INCLUDED
#define GATEWAY_TIME_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  ISO-8601 text ("2024-01-01T12:00:00.123+02:00"; no zone is UTC) to ms
//  since epoch; 0, or -1 for anything else.
int gateway_time_parse (const char *text, int64_t *ms);

//  Writes ms since epoch as ISO-8601 UTC with milliseconds
//  ("2024-01-01T12:00:00.000Z").
void gateway_time_format (int64_t ms, char out[32]);

//  The wall clock, ms since epoch.
int64_t gateway_time_now_ms (void);

void gateway_time_test (bool verbose);

#endif
