/*  =========================================================================
    detector_fixture - what the detector's self tests share

    Default settings, readings, and the series of the fault test (a
    detector killed in the middle of a low-draw run), so the engine's and
    the restore's tests replay the same run. Test code only.
    =========================================================================
*/
#ifndef DETECTOR_FIXTURE_H_INCLUDED
#define DETECTOR_FIXTURE_H_INCLUDED

#include "detector_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The series: 3 x 100 W, a low-draw run of 24 readings at 4-6 W, 100 W.
#define DETECTOR_FIXTURE_LOW_FIRST 3 //  first reading of the low-draw run
#define DETECTOR_FIXTURE_COUNT 28    //  readings in the series

//  Off at or below 0.5 W, low draw up to 15 W, phantom after 60 s of it.
void detector_fixture_settings (proto_settings_t *settings);

//  A reading of port (owned by user) at ts of watts under settings.
void detector_fixture_reading (proto_reading_t *reading, const char *port, int64_t user, int64_t ts,
                               double watts, const proto_settings_t *settings);

//  Watts of the series' reading i.
double detector_fixture_watts (int i);

//  Asserts that restored, a detector killed and restored mid-series,
//  closed the series' episode (from base) as steady, one that never
//  stopped, did: same start, end, samples and peak, energy within 1e-9.
void detector_fixture_assert_same_end (const detector_outcome_t *steady,
                                       const detector_outcome_t *restored, int64_t base);

#ifdef __cplusplus
}
#endif

#endif
