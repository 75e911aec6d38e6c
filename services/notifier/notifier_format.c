/*  =========================================================================
    notifier_format - money, energy, power and times as the dashboard
    writes them

    Intl's defaults, where ICU's C API differs: rounding is half away from
    zero (Intl's halfExpand; ICU's own default is half-even), and a time
    separates its day period with a plain space (V8 replaces the U+202F
    that CLDR 42 put before "PM", and Chromium shows "2:05 PM"), and Swiss
    numbers are grouped with an apostrophe. Other CLDR data that changed
    after ICU 72 (a few locales' date patterns) is ICU 72's.
    =========================================================================
*/
#include "notifier_format.h"

#include <czmq.h>
#include <inttypes.h>
#include <math.h>
#include <unicode/ucal.h>
#include <unicode/ucurr.h>
#include <unicode/udat.h>
#include <unicode/uloc.h>
#include <unicode/unum.h>
#include <unicode/ustring.h>

#define S_UTEXT_MAX 128          //  UTF-16 units of one formatted figure
#define S_LOCALE_ID_MAX 96       //  ICU locale id ("de_CH", "sr_Latn_RS@...")
#define S_ZONE_MAX 64            //  time zone id
#define S_DEFAULT_LOCALE "en"    //  users.locale NULL: what the page assumes
#define S_MISSING "\xe2\x80\x93" //  "–", what the page shows for no value

struct _notifier_format_t {
    char locale[S_LOCALE_ID_MAX]; //  ICU locale id
    char zone[S_ZONE_MAX];        //  time zone the times are written in
    char currency[4];             //  ISO 4217 code, "" if the given one is not one
    char currency_text[16];       //  the given code, for the fallback
    UNumberFormat *money;         //  currency format, currency set
    UNumberFormat *decimal;       //  numbers; fraction digits set per call
    UDateFormat *date;            //  medium date
    UDateFormat *date_time;       //  medium date, short time
    UDateFormat *time;            //  short time
    UCalendar *calendar;          //  for "the same local day"
};

//  UTF-16 to UTF-8 into text; "–" if it does not fit or convert.
static const char *
s_utf8 (const UChar *source, int32_t length, UErrorCode status, char *text)
{
    if (U_SUCCESS (status) && length >= 0 && length < S_UTEXT_MAX) {
        int32_t written = 0;
        UErrorCode convert = U_ZERO_ERROR;
        u_strToUTF8 (text, NOTIFIER_FORMAT_MAX, &written, source, length, &convert);
        if (U_SUCCESS (convert) && convert != U_STRING_NOT_TERMINATED_WARNING &&
            written < NOTIFIER_FORMAT_MAX)
            return text;
    }
    snprintf (text, NOTIFIER_FORMAT_MAX, "%s", S_MISSING);
    return text;
}

//  NULL if ICU has no such format, or (unless any_locale) no data for the
//  locale's language (it then falls back to the process's locale, or root).
static UNumberFormat *
s_number_open (UNumberFormatStyle style, const char *locale, bool any_locale)
{
    UErrorCode status = U_ZERO_ERROR;
    UNumberFormat *format = unum_open (style, NULL, 0, locale, NULL, &status);
    if (U_SUCCESS (status) && !any_locale) {
        const char *valid = unum_getLocaleByType (format, ULOC_VALID_LOCALE, &status);
        char wanted[ULOC_LANG_CAPACITY] = "", found[ULOC_LANG_CAPACITY] = "";
        uloc_getLanguage (locale, wanted, sizeof wanted, &status);
        uloc_getLanguage (valid ? valid : "", found, sizeof found, &status);
        if (U_SUCCESS (status) && !streq (wanted, found))
            status = U_MISSING_RESOURCE_ERROR;
    }
    if (U_FAILURE (status)) {
        unum_close (format);
        return NULL;
    }
    unum_setAttribute (format, UNUM_ROUNDING_MODE, UNUM_ROUND_HALFUP);
    //  CLDR 42 groups Swiss numbers with U+2019; later CLDR, and so the
    //  browsers, with an apostrophe: "1'234.50".
    const UNumberFormatSymbol groupings[] = {UNUM_GROUPING_SEPARATOR_SYMBOL,
                                             UNUM_MONETARY_GROUPING_SEPARATOR_SYMBOL};
    for (size_t index = 0; index < sizeof groupings / sizeof groupings[0]; index++) {
        status = U_ZERO_ERROR;
        UChar symbol[8];
        int32_t length = unum_getSymbol (format, groupings[index], symbol, 8, &status);
        if (U_SUCCESS (status) && length == 1 && symbol[0] == 0x2019)
            unum_setSymbol (format, groupings[index], (const UChar[]){0x27}, 1, &status);
    }
    return format;
}

static UDateFormat *
s_date_open (UDateFormatStyle time_style, UDateFormatStyle date_style, const char *locale,
             const char *zone)
{
    UChar zone_text[S_ZONE_MAX];
    u_uastrncpy (zone_text, zone, S_ZONE_MAX);
    UErrorCode status = U_ZERO_ERROR;
    UDateFormat *format =
        udat_open (time_style, date_style, locale, zone_text, -1, NULL, 0, &status);
    if (U_FAILURE (status)) {
        udat_close (format);
        return NULL;
    }
    return format;
}

//  A zone ICU knows, as given; else "UTC".
static void
s_zone (const char *time_zone, char zone[S_ZONE_MAX])
{
    snprintf (zone, S_ZONE_MAX, "UTC");
    if (!time_zone || !*time_zone || strlen (time_zone) >= S_ZONE_MAX)
        return;
    UChar given[S_ZONE_MAX], canonical[S_ZONE_MAX];
    u_uastrncpy (given, time_zone, S_ZONE_MAX);
    UBool system = false;
    UErrorCode status = U_ZERO_ERROR;
    ucal_getCanonicalTimeZoneID (given, -1, canonical, S_ZONE_MAX, &system, &status);
    if (U_SUCCESS (status))
        snprintf (zone, S_ZONE_MAX, "%s", time_zone);
}

//  The ICU locale id of a BCP 47 tag; "en" for none or one ICU cannot read.
static void
s_locale (const char *tag, char locale[S_LOCALE_ID_MAX])
{
    snprintf (locale, S_LOCALE_ID_MAX, S_DEFAULT_LOCALE);
    if (!tag || !*tag)
        return;
    UErrorCode status = U_ZERO_ERROR;
    int32_t parsed = 0;
    int32_t length = uloc_forLanguageTag (tag, locale, S_LOCALE_ID_MAX, &parsed, &status);
    if (U_FAILURE (status) || length <= 0 || length >= S_LOCALE_ID_MAX ||
        parsed != (int32_t)strlen (tag))
        snprintf (locale, S_LOCALE_ID_MAX, S_DEFAULT_LOCALE);
}

static bool
s_currency_code (const char *code)
{
    return code && strlen (code) == 3 && isupper ((unsigned char)code[0]) &&
           isupper ((unsigned char)code[1]) && isupper ((unsigned char)code[2]);
}

notifier_format_t *
notifier_format_new (const char *locale, const char *currency, const char *time_zone)
{
    notifier_format_t *self = (notifier_format_t *)zmalloc (sizeof (notifier_format_t));
    assert (self);
    s_locale (locale, self->locale);
    s_zone (time_zone, self->zone);
    snprintf (self->currency_text, sizeof self->currency_text, "%s", currency ? currency : "");
    if (s_currency_code (currency))
        snprintf (self->currency, sizeof self->currency, "%s", currency);
    //  A language ICU has no data for is written as the page writes it
    //  when Intl does not know the tag either: in the default locale.
    self->decimal = s_number_open (UNUM_DECIMAL, self->locale, false);
    if (!self->decimal) {
        snprintf (self->locale, S_LOCALE_ID_MAX, S_DEFAULT_LOCALE);
        self->decimal = s_number_open (UNUM_DECIMAL, self->locale, true);
    }
    self->money = s_number_open (UNUM_CURRENCY, self->locale, true);
    if (self->money && *self->currency) {
        UChar code[4];
        u_uastrncpy (code, self->currency, 4);
        UErrorCode status = U_ZERO_ERROR;
        //  Also sets the currency's digits (none for JPY, three for KWD).
        unum_setTextAttribute (self->money, UNUM_CURRENCY_CODE, code, 3, &status);
        if (U_FAILURE (status))
            self->currency[0] = 0;
    }
    self->date = s_date_open (UDAT_NONE, UDAT_MEDIUM, self->locale, self->zone);
    self->date_time = s_date_open (UDAT_SHORT, UDAT_MEDIUM, self->locale, self->zone);
    self->time = s_date_open (UDAT_SHORT, UDAT_NONE, self->locale, self->zone);
    UChar zone_text[S_ZONE_MAX];
    u_uastrncpy (zone_text, self->zone, S_ZONE_MAX);
    UErrorCode status = U_ZERO_ERROR;
    self->calendar = ucal_open (zone_text, -1, self->locale, UCAL_GREGORIAN, &status);
    if (U_FAILURE (status)) {
        ucal_close (self->calendar);
        self->calendar = NULL;
    }
    return self;
}

void
notifier_format_destroy (notifier_format_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_format_t *self = *self_p;
        unum_close (self->money);
        unum_close (self->decimal);
        udat_close (self->date);
        udat_close (self->date_time);
        udat_close (self->time);
        ucal_close (self->calendar);
        free (self);
        *self_p = NULL;
    }
}

const char *
notifier_format_time_zone (notifier_format_t *self)
{
    assert (self);
    return self->zone;
}

const char *
notifier_format_number (notifier_format_t *self, double value, int digits,
                        char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    if (!isfinite (value))
        return s_utf8 (NULL, -1, U_ILLEGAL_ARGUMENT_ERROR, text);
    if (digits < 0)
        digits = 0;
    if (!self->decimal) {
        snprintf (text, NOTIFIER_FORMAT_MAX, "%.*f", digits, value);
        return text;
    }
    unum_setAttribute (self->decimal, UNUM_MIN_FRACTION_DIGITS, digits);
    unum_setAttribute (self->decimal, UNUM_MAX_FRACTION_DIGITS, digits);
    UChar buffer[S_UTEXT_MAX];
    UErrorCode status = U_ZERO_ERROR;
    int32_t length = unum_formatDouble (self->decimal, value, buffer, S_UTEXT_MAX, NULL, &status);
    return s_utf8 (buffer, length, status, text);
}

static const char *
s_money (notifier_format_t *self, double amount, char text[NOTIFIER_FORMAT_MAX])
{
    UChar buffer[S_UTEXT_MAX];
    UErrorCode status = U_ZERO_ERROR;
    int32_t length = unum_formatDouble (self->money, amount, buffer, S_UTEXT_MAX, NULL, &status);
    return s_utf8 (buffer, length, status, text);
}

const char *
notifier_format_money (notifier_format_t *self, double amount, char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    if (!isfinite (amount))
        return s_utf8 (NULL, -1, U_ILLEGAL_ARGUMENT_ERROR, text);
    if (!self->money || !*self->currency) {
        //  As the page does when Intl refuses the currency.
        char number[NOTIFIER_FORMAT_MAX];
        snprintf (text, NOTIFIER_FORMAT_MAX, "%s%s%s",
                  notifier_format_number (self, amount, 2, number), *self->currency_text ? " " : "",
                  self->currency_text);
        return text;
    }
    int digits = unum_getAttribute (self->money, UNUM_MAX_FRACTION_DIGITS);
    double smallest = pow (10, -digits);
    if (amount > 0 && amount < smallest / 2) {
        char least[NOTIFIER_FORMAT_MAX];
        snprintf (text, NOTIFIER_FORMAT_MAX, "< %s", s_money (self, smallest, least));
        return text;
    }
    return s_money (self, amount, text);
}

const char *
notifier_format_energy (notifier_format_t *self, double wh, char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    if (!isfinite (wh))
        return s_utf8 (NULL, -1, U_ILLEGAL_ARGUMENT_ERROR, text);
    //  web/src/format.js fmtKwh: fewer decimals as the figure grows.
    char number[NOTIFIER_FORMAT_MAX];
    double kwh = wh / 1000;
    if (fabs (kwh) >= 1)
        snprintf (text, NOTIFIER_FORMAT_MAX, "%s kWh",
                  notifier_format_number (self, kwh,
                                          fabs (kwh) >= 100  ? 0
                                          : fabs (kwh) >= 10 ? 1
                                                             : 2,
                                          number));
    else
        snprintf (text, NOTIFIER_FORMAT_MAX, "%s Wh",
                  notifier_format_number (self, wh, fabs (wh) < 10 && wh != 0 ? 1 : 0, number));
    return text;
}

const char *
notifier_format_watts (notifier_format_t *self, double watts, char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    if (!isfinite (watts))
        return s_utf8 (NULL, -1, U_ILLEGAL_ARGUMENT_ERROR, text);
    char number[NOTIFIER_FORMAT_MAX];
    if (fabs (watts) >= 1000)
        snprintf (text, NOTIFIER_FORMAT_MAX, "%s kW",
                  notifier_format_number (self, watts / 1000, 2, number));
    else //  web/src/format.js fmtWatts: "4.0 W", two decimals below 1 W
        snprintf (
            text, NOTIFIER_FORMAT_MAX, "%s W",
            notifier_format_number (self, watts, fabs (watts) < 1 && watts != 0 ? 2 : 1, number));
    return text;
}

static const char *
s_date (UDateFormat *format, int64_t ms, char text[NOTIFIER_FORMAT_MAX])
{
    if (!format) {
        time_t seconds = (time_t)(ms / 1000);
        struct tm utc;
        gmtime_r (&seconds, &utc);
        strftime (text, NOTIFIER_FORMAT_MAX, "%Y-%m-%d %H:%M UTC", &utc);
        return text;
    }
    UChar buffer[S_UTEXT_MAX];
    UErrorCode status = U_ZERO_ERROR;
    int32_t length = udat_format (format, (UDate)ms, buffer, S_UTEXT_MAX, NULL, &status);
    if (U_SUCCESS (status))
        for (int32_t index = 0; index < length && index < S_UTEXT_MAX; index++)
            if (buffer[index] == 0x202F)
                buffer[index] = 0x20;
    return s_utf8 (buffer, length, status, text);
}

const char *
notifier_format_date (notifier_format_t *self, int64_t ms, char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    return s_date (self->date, ms, text);
}

const char *
notifier_format_date_time (notifier_format_t *self, int64_t ms, char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    return s_date (self->date_time, ms, text);
}

//  Julian day of ms in the zone; -1 if the calendar cannot tell.
static int32_t
s_local_day (notifier_format_t *self, int64_t ms)
{
    if (!self->calendar)
        return -1;
    UErrorCode status = U_ZERO_ERROR;
    ucal_setMillis (self->calendar, (UDate)ms, &status);
    int32_t day = ucal_get (self->calendar, UCAL_JULIAN_DAY, &status);
    return U_SUCCESS (status) ? day : -1;
}

const char *
notifier_format_moment (notifier_format_t *self, int64_t ms, int64_t now_ms,
                        char text[NOTIFIER_FORMAT_MAX])
{
    assert (self);
    int32_t day = s_local_day (self, ms);
    if (day != -1 && day == s_local_day (self, now_ms) && ms <= now_ms)
        return s_date (self->time, ms, text);
    return s_date (self->date_time, ms, text);
}

const char *
notifier_format_duration (int64_t ms, char text[NOTIFIER_FORMAT_MAX])
{
    int64_t seconds = ms > 0 ? (ms + 500) / 1000 : 0;
    if (seconds < 60)
        snprintf (text, NOTIFIER_FORMAT_MAX, "%" PRId64 " s", seconds);
    else if (seconds < 3600)
        snprintf (text, NOTIFIER_FORMAT_MAX, "%" PRId64 " min", seconds / 60);
    else if (seconds < 48 * 3600)
        snprintf (text, NOTIFIER_FORMAT_MAX, "%" PRId64 " h %" PRId64 " min", seconds / 3600,
                  (seconds % 3600) / 60);
    else //  web/src/format.js fmtDuration
        snprintf (text, NOTIFIER_FORMAT_MAX, "%" PRId64 " d %" PRId64 " h", seconds / 86400,
                  (seconds % 86400) / 3600);
    return text;
}

//  --------------------------------------------------------------------------
//  Self test

static void
s_test_expect (const char *what, const char *got, const char *expected, bool verbose)
{
    if (verbose || !streq (got, expected))
        zsys_info ("notifier_format - %s: \"%s\" (expected \"%s\")", what, got, expected);
    assert (streq (got, expected));
}

void
notifier_format_test (bool verbose)
{
    printf (" * notifier_format: ");
    if (verbose)
        printf ("\n");
    char text[NOTIFIER_FORMAT_MAX];
    //  Every expectation below is what Chromium 156's and node 20's Intl
    //  give for the same locale, currency and zone (checked by hand).
    notifier_format_t *en = notifier_format_new (NULL, "EUR", "Europe/Berlin");
    notifier_format_t *de = notifier_format_new ("de-DE", "EUR", "Europe/Berlin");
    notifier_format_t *ch = notifier_format_new ("de-CH", "CHF", "Europe/Zurich");
    notifier_format_t *gb = notifier_format_new ("en-GB", "GBP", "Europe/London");
    notifier_format_t *fr = notifier_format_new ("fr-FR", "EUR", "Europe/Paris");
    notifier_format_t *jp = notifier_format_new ("ja-JP", "JPY", "Asia/Tokyo");
    notifier_format_t *in = notifier_format_new ("en-IN", "INR", "Asia/Kolkata");
    notifier_format_t *us = notifier_format_new ("en-US", "USD", "America/New_York");
    assert (en && de && ch && gb && fr && jp && in && us);

    //  Money
    s_test_expect ("en EUR", notifier_format_money (en, 683.82, text),
                   "\xe2\x82\xac"
                   "683.82",
                   verbose);
    s_test_expect ("de-DE EUR", notifier_format_money (de, 683.82, text),
                   "683,82\xc2\xa0\xe2\x82\xac", verbose);
    s_test_expect ("de-CH CHF", notifier_format_money (ch, 12, text),
                   "CHF\xc2\xa0"
                   "12.00",
                   verbose);
    s_test_expect ("en-GB GBP", notifier_format_money (gb, 0.5, text),
                   "\xc2\xa3"
                   "0.50",
                   verbose);
    s_test_expect ("fr-FR EUR", notifier_format_money (fr, 1234.5, text),
                   "1\xe2\x80\xaf"
                   "234,50\xc2\xa0\xe2\x82\xac",
                   verbose);
    s_test_expect ("ja-JP JPY", notifier_format_money (jp, 1234, text),
                   "\xef\xbf\xa5"
                   "1,234",
                   verbose);
    s_test_expect ("en-IN INR", notifier_format_money (in, 1234567.5, text),
                   "\xe2\x82\xb9"
                   "12,34,567.50",
                   verbose);
    s_test_expect ("en-US USD", notifier_format_money (us, 1234567.891, text), "$1,234,567.89",
                   verbose);
    s_test_expect ("de-DE zero", notifier_format_money (de, 0, text), "0,00\xc2\xa0\xe2\x82\xac",
                   verbose);
    //  Half a cent and up rounds to a cent (half away from zero, as Intl);
    //  below that, "< €0.01" rather than a cost of nothing.
    s_test_expect ("en 0.005", notifier_format_money (en, 0.005, text),
                   "\xe2\x82\xac"
                   "0.01",
                   verbose);
    s_test_expect ("en 0.125", notifier_format_money (en, 0.125, text),
                   "\xe2\x82\xac"
                   "0.13",
                   verbose);
    s_test_expect ("en 0.003", notifier_format_money (en, 0.003, text),
                   "< \xe2\x82\xac"
                   "0.01",
                   verbose);
    s_test_expect ("ja-JP 0.3", notifier_format_money (jp, 0.3, text),
                   "< \xef\xbf\xa5"
                   "1",
                   verbose);
    s_test_expect ("NaN", notifier_format_money (en, NAN, text), S_MISSING, verbose);

    //  A currency ICU has no symbol for keeps its code; a code that is no
    //  code at all is written after the number.
    notifier_format_t *odd = notifier_format_new ("en", "XYZ", "Europe/Berlin");
    s_test_expect ("en XYZ", notifier_format_money (odd, 1.5, text),
                   "XYZ\xc2\xa0"
                   "1.50",
                   verbose);
    notifier_format_destroy (&odd);
    odd = notifier_format_new ("de-DE", "euro", NULL);
    s_test_expect ("de-DE euro", notifier_format_money (odd, 1.5, text), "1,50 euro", verbose);
    assert (streq (notifier_format_time_zone (odd), "UTC"));
    notifier_format_destroy (&odd);

    //  Numbers, energy and power: the page's digits, the locale's separators
    s_test_expect ("de-CH number", notifier_format_number (ch, 1234.5, 2, text), "1'234.50",
                   verbose);
    s_test_expect ("de-CH CHF 1234.5", notifier_format_money (ch, 1234.5, text),
                   "CHF\xc2\xa0"
                   "1'234.50",
                   verbose);
    s_test_expect ("en 6.24 Wh", notifier_format_energy (en, 6.24, text), "6.2 Wh", verbose);
    s_test_expect ("de-DE 6.24 Wh", notifier_format_energy (de, 6.24, text), "6,2 Wh", verbose);
    s_test_expect ("en 30 Wh", notifier_format_energy (en, 30, text), "30 Wh", verbose);
    s_test_expect ("en 999.4 Wh", notifier_format_energy (en, 999.4, text), "999 Wh", verbose);
    s_test_expect ("en 1250 Wh", notifier_format_energy (en, 1250, text), "1.25 kWh", verbose);
    s_test_expect ("en 23400 Wh", notifier_format_energy (en, 23400, text), "23.4 kWh", verbose);
    s_test_expect ("de-DE 23400 Wh", notifier_format_energy (de, 23400, text), "23,4 kWh", verbose);
    s_test_expect ("en 1234567 Wh", notifier_format_energy (en, 1234567, text), "1,235 kWh",
                   verbose);
    s_test_expect ("en 0 Wh", notifier_format_energy (en, 0, text), "0 Wh", verbose);
    s_test_expect ("en 7.25 W", notifier_format_watts (en, 7.25, text), "7.3 W", verbose);
    s_test_expect ("en 0.45 W", notifier_format_watts (en, 0.45, text), "0.45 W", verbose);
    s_test_expect ("de-DE 40 W", notifier_format_watts (de, 40, text), "40,0 W", verbose);
    s_test_expect ("en 1250 W", notifier_format_watts (en, 1250, text), "1.25 kW", verbose);

    //  Times: 2024-03-09 13:05 UTC
    int64_t t = 1709989500000;
    s_test_expect ("en date time", notifier_format_date_time (en, t, text), "Mar 9, 2024, 2:05 PM",
                   verbose);
    s_test_expect ("en-GB date time", notifier_format_date_time (gb, t, text), "9 Mar 2024, 13:05",
                   verbose);
    s_test_expect ("de-DE date time", notifier_format_date_time (de, t, text), "09.03.2024, 14:05",
                   verbose);
    s_test_expect ("fr-FR date time", notifier_format_date_time (fr, t, text), "9 mars 2024, 14:05",
                   verbose);
    s_test_expect ("ja-JP date time", notifier_format_date_time (jp, t, text), "2024/03/09 22:05",
                   verbose);
    s_test_expect ("en-US date", notifier_format_date (us, t, text), "Mar 9, 2024", verbose);
    s_test_expect ("de-CH date", notifier_format_date (ch, t, text), "09.03.2024", verbose);
    //  The same local day: the time alone. Berlin's day ends at 23:00 UTC,
    //  New York's at 05:00 UTC the next morning.
    s_test_expect ("en moment", notifier_format_moment (en, t, t + 3600000, text), "2:05 PM",
                   verbose);
    s_test_expect ("de-DE moment", notifier_format_moment (de, t, t + 9 * 3600000, text), "14:05",
                   verbose);
    s_test_expect ("de-DE moment, next day", notifier_format_moment (de, t, t + 10 * 3600000, text),
                   "09.03.2024, 14:05", verbose);
    s_test_expect ("en-US moment", notifier_format_moment (us, t, t + 14 * 3600000, text),
                   "8:05 AM", verbose);

    //  What ICU cannot read falls back: an unknown zone is UTC, a locale
    //  tag that is not one is "en".
    odd = notifier_format_new ("xx-YY", "EUR", "Europe/Berlin");
    s_test_expect ("unknown language", notifier_format_money (odd, 683.82, text),
                   "\xe2\x82\xac"
                   "683.82",
                   verbose);
    notifier_format_destroy (&odd);
    odd = notifier_format_new ("not a tag", "EUR", "Mars/Olympus_Mons");
    assert (streq (notifier_format_time_zone (odd), "UTC"));
    s_test_expect ("fallback", notifier_format_date_time (odd, t, text), "Mar 9, 2024, 1:05 PM",
                   verbose);
    s_test_expect ("fallback money", notifier_format_money (odd, 683.82, text),
                   "\xe2\x82\xac"
                   "683.82",
                   verbose);
    notifier_format_destroy (&odd);

    s_test_expect ("45 s", notifier_format_duration (45000, text), "45 s", verbose);
    s_test_expect ("12 min", notifier_format_duration (12 * 60000 + 59000, text), "12 min",
                   verbose);
    s_test_expect ("2 h 7 min", notifier_format_duration ((2 * 60 + 7) * 60000, text), "2 h 7 min",
                   verbose);
    s_test_expect ("negative", notifier_format_duration (-5, text), "0 s", verbose);

    notifier_format_destroy (&en);
    notifier_format_destroy (&en);
    notifier_format_destroy (&de);
    notifier_format_destroy (&ch);
    notifier_format_destroy (&gb);
    notifier_format_destroy (&fr);
    notifier_format_destroy (&jp);
    notifier_format_destroy (&in);
    notifier_format_destroy (&us);
    printf ("OK\n");
}
