/*  =========================================================================
    detector_fixture - what the detector's self tests share
    =========================================================================
*/
#include "detector_fixture.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void
detector_fixture_settings (proto_settings_t *settings)
{
    memset (settings, 0, sizeof (*settings));
    settings->off_watts = 0.5f;
    settings->standby_watts = 15;
    settings->min_phantom_seconds = 60;
}

void
detector_fixture_reading (proto_reading_t *reading, const char *port, int64_t user, int64_t ts,
                          double watts, const proto_settings_t *settings)
{
    memset (reading, 0, sizeof (*reading));
    snprintf (reading->port, sizeof (reading->port), "%s", port);
    reading->user = user;
    reading->ts = ts;
    reading->received = ts;
    reading->voltage = 230;
    reading->current = watts / 230;
    reading->power = watts;
    reading->settings = *settings;
}

double
detector_fixture_watts (int i)
{
    if (i < DETECTOR_FIXTURE_LOW_FIRST || i == DETECTOR_FIXTURE_COUNT - 1)
        return 100;
    return 4 + (i % 3) + 0.25 * (i % 2);
}

void
detector_fixture_assert_same_end (const detector_outcome_t *steady,
                                  const detector_outcome_t *restored, int64_t base)
{
    //  The last reading (100 W) closed the episode.
    assert (steady->has_episode &&
            steady->episode.end == base + (DETECTOR_FIXTURE_COUNT - 1) * 5000LL);
    assert (steady->episode.samples == DETECTOR_FIXTURE_COUNT - 1 - DETECTOR_FIXTURE_LOW_FIRST);
    assert (restored->episode.start == steady->episode.start);
    assert (restored->episode.end == steady->episode.end);
    assert (restored->episode.samples == steady->episode.samples);
    assert (fabs (restored->episode.energy_wh - steady->episode.energy_wh) <=
            1e-9 * steady->episode.energy_wh);
    assert (restored->episode.peak_watts == steady->episode.peak_watts);
}
