/*  =========================================================================
    notifier_format - money, energy, power and times as the dashboard
    writes them, for every text the notifier writes

    The dashboard formats with the browser's Intl in the account's locale
    (users.locale; NULL means "en"), currency and time zone; Intl is ICU,
    so this class asks ICU's C API the same questions: "€683.82" (en),
    "683,82 €" (de-DE, U+00A0 before the sign). The units and digits follow
    web/src/dom.js: energy fmtKwh (kWh with two decimals from 1 kWh, else
    Wh with one decimal below 10 Wh and none above), power fmtWatts (kW
    with two decimals from 1000 W, else two decimals below 10 W and one
    above), durations fmtDuration ("2 h 7 min"), times as fmtTime (medium
    date, short time) or, for a moment earlier the same local day, the
    short time alone. A sum above zero that rounds to nothing in the
    currency reads "< €0.01", not "€0.00".

    Bad input (an unknown locale, time zone or currency) never fails: the
    locale falls back to ICU's nearest (at worst root), the zone to UTC, a
    currency that is not three letters to the number and the code.
    =========================================================================
*/
#ifndef NOTIFIER_FORMAT_H_INCLUDED
#define NOTIFIER_FORMAT_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  Room for any one formatted figure or time, UTF-8 with its terminator.
#define NOTIFIER_FORMAT_MAX 128

typedef struct _notifier_format_t notifier_format_t;

//  locale: BCP 47 tag (NULL or "": "en"); currency: ISO 4217 code;
//  time_zone: IANA name (NULL, "" or unknown: UTC).
notifier_format_t *notifier_format_new (const char *locale, const char *currency,
                                        const char *time_zone);
void notifier_format_destroy (notifier_format_t **self_p);

//  The time zone the times are written in (the given one, or "UTC").
const char *notifier_format_time_zone (notifier_format_t *self);

//  Each writes into text and returns it, so a call can stand in an
//  argument list. A value that is not finite gives "–", as on the page.
const char *notifier_format_money (notifier_format_t *self, double amount,
                                   char text[NOTIFIER_FORMAT_MAX]);
const char *notifier_format_number (notifier_format_t *self, double value, int digits,
                                    char text[NOTIFIER_FORMAT_MAX]);
const char *notifier_format_energy (notifier_format_t *self, double wh,
                                    char text[NOTIFIER_FORMAT_MAX]);
const char *notifier_format_watts (notifier_format_t *self, double watts,
                                   char text[NOTIFIER_FORMAT_MAX]);
//  Unix ms in the time zone: the date ("Mar 9, 2024"), the date and time
//  ("Mar 9, 2024, 2:05 PM"), or the time alone if ms falls on the same
//  local day as now_ms and the date and time otherwise.
const char *notifier_format_date (notifier_format_t *self, int64_t ms,
                                  char text[NOTIFIER_FORMAT_MAX]);
const char *notifier_format_date_time (notifier_format_t *self, int64_t ms,
                                       char text[NOTIFIER_FORMAT_MAX]);
const char *notifier_format_moment (notifier_format_t *self, int64_t ms, int64_t now_ms,
                                    char text[NOTIFIER_FORMAT_MAX]);

//  "45 s", "12 min", "2 h 7 min" (the same in every locale, as on the page).
const char *notifier_format_duration (int64_t ms, char text[NOTIFIER_FORMAT_MAX]);

//  Self test
void notifier_format_test (bool verbose);

#endif
