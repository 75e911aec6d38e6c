/*  =========================================================================
    gateway_cache_schedule - weekly off schedules: the API's JSON <-> packed
    windows
    =========================================================================
*/
#ifndef GATEWAY_CACHE_SCHEDULE_H_INCLUDED
#define GATEWAY_CACHE_SCHEDULE_H_INCLUDED

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

//  Packs a schedule of weekly windows, null or an array of 1 to max
//  {"days": ["mon", ...], "from": "HH:MM", "to": "HH:MM"} (days unique,
//  at least one; from != to), into windows [max] (PROTO_WINDOW_PACK; null:
//  all 0). 0, or -1 with *message set to a sentence for the owner. The
//  API validates offSchedule with it; the cache packs what was stored.
int gateway_cache_schedule_pack (const json_t *schedule, size_t max, uint32_t *windows,
                                 const char **message);
//  The schedule of packed windows as the API writes it (days in week
//  order; a window to midnight ends at "00:00"); null when none is used.
json_t *gateway_cache_schedule_json (const uint32_t *windows, size_t max);
void gateway_cache_schedule_test (bool verbose);

#endif
