/*  =========================================================================
    gateway_time - ISO-8601 time as the gateway reads and writes it

    Civil dates by arithmetic (Howard Hinnant's days_from_civil and
    civil_from_days): gmtime_r takes glibc's global tz lock, once per
    reading of a batch answer.
    =========================================================================
*/
#include "gateway_time.h"

#include <assert.h>
#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

//  --------------------------------------------------------------------------
//  Days since 1970-01-01 of a civil date.
static int64_t
s_days_from_civil (int64_t year, int month, int day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t year_of_era = year - era * 400;
    int64_t day_of_year = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

//  Reads exactly count digits; -1 if any is not a digit.
static int
s_digits (const char **cursor, int count)
{
    int value = 0;
    for (int index = 0; index < count; index++) {
        char c = (*cursor)[index];
        if (c < '0' || c > '9')
            return -1;
        value = value * 10 + (c - '0');
    }
    *cursor += count;
    return value;
}

int
gateway_time_parse (const char *text, int64_t *ms)
{
    const char *cursor = text;
    int year = s_digits (&cursor, 4);
    if (year < 0 || *cursor++ != '-')
        return -1;
    int month = s_digits (&cursor, 2);
    if (month < 1 || month > 12 || *cursor++ != '-')
        return -1;
    int day = s_digits (&cursor, 2);
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day < 1 || day > month_days[month - 1] || (month == 2 && day == 29 && !leap))
        return -1;
    if (*cursor != 'T' && *cursor != 't' && *cursor != ' ')
        return -1;
    cursor++;
    int hour = s_digits (&cursor, 2);
    if (hour < 0 || hour > 23 || *cursor++ != ':')
        return -1;
    int minute = s_digits (&cursor, 2);
    if (minute < 0 || minute > 59 || *cursor++ != ':')
        return -1;
    int second = s_digits (&cursor, 2);
    //  A leap second 60 is read as the last moment of the minute.
    if (second < 0 || second > 60)
        return -1;
    if (second == 60)
        second = 59;
    int millis = 0;
    if (*cursor == '.' || *cursor == ',') {
        cursor++;
        int digits = 0;
        while (isdigit ((unsigned char)*cursor)) {
            if (digits < 3)
                millis = millis * 10 + (*cursor - '0');
            digits++;
            cursor++;
        }
        if (digits == 0 || digits > 9)
            return -1;
        for (; digits < 3; digits++)
            millis *= 10;
    }
    int offset_min = 0;
    //  No zone at all is read as UTC (what devices without a clock zone send).
    if (*cursor == 'Z' || *cursor == 'z')
        cursor++;
    else if (*cursor == '+' || *cursor == '-') {
        int sign = *cursor++ == '-' ? -1 : 1;
        int zone_hour = s_digits (&cursor, 2);
        if (zone_hour < 0 || zone_hour > 23)
            return -1;
        if (*cursor == ':')
            cursor++;
        int zone_minute = 0;
        if (*cursor) {
            zone_minute = s_digits (&cursor, 2);
            if (zone_minute < 0 || zone_minute > 59)
                return -1;
        }
        offset_min = sign * (zone_hour * 60 + zone_minute);
    }
    if (*cursor)
        return -1;
    int64_t seconds = s_days_from_civil (year, month, day) * 86400 + hour * 3600 + minute * 60 +
                      second - (int64_t)offset_min * 60;
    *ms = seconds * 1000 + millis;
    return 0;
}

//  --------------------------------------------------------------------------
static void
s_two (char *out, int value)
{
    out[0] = (char)('0' + value / 10);
    out[1] = (char)('0' + value % 10);
}

//  Any time, through gmtime_r.
static void
s_format_gmtime (int64_t ms, char out[32])
{
    int64_t seconds = ms / 1000;
    int millis = (int)(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        seconds -= 1;
    }
    time_t when = (time_t)seconds;
    struct tm tm;
    if (!gmtime_r (&when, &tm)) {
        snprintf (out, 32, "1970-01-01T00:00:00.000Z");
        return;
    }
    //  Formatted wide, then copied: the compiler cannot know tm's ranges.
    char text[96];
    snprintf (text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (tm.tm_year + 1900) % 10000,
              tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    snprintf (out, 32, "%.31s", text);
}

void
gateway_time_format (int64_t ms, char out[32])
{
    //  1970 to 9999, every time a reading can have, by arithmetic.
    if (ms < 0 || ms >= 253402300800000LL) {
        s_format_gmtime (ms, out);
        return;
    }
    int64_t seconds = ms / 1000;
    int64_t days = seconds / 86400;
    int of_day = (int)(seconds % 86400);
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t day_of_era = z - era * 146097;
    int64_t year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36524 - day_of_era / 146096) / 365;
    int64_t day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    int64_t shifted_month = (5 * day_of_year + 2) / 153;
    int day = (int)(day_of_year - (153 * shifted_month + 2) / 5 + 1);
    int month = (int)(shifted_month < 10 ? shifted_month + 3 : shifted_month - 9);
    int year = (int)(year_of_era + era * 400 + (month <= 2));
    int millis = (int)(ms % 1000);
    s_two (out, year / 100);
    s_two (out + 2, year % 100);
    out[4] = '-';
    s_two (out + 5, month);
    out[7] = '-';
    s_two (out + 8, day);
    out[10] = 'T';
    s_two (out + 11, of_day / 3600);
    out[13] = ':';
    s_two (out + 14, of_day / 60 % 60);
    out[16] = ':';
    s_two (out + 17, of_day % 60);
    out[19] = '.';
    out[20] = (char)('0' + millis / 100);
    s_two (out + 21, millis % 100);
    out[23] = 'Z';
    out[24] = 0;
}

int64_t
gateway_time_now_ms (void)
{
    struct timespec now;
    clock_gettime (CLOCK_REALTIME, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

//  ==========================================================================
void
gateway_time_test (bool verbose)
{
    printf (" * gateway_time: ");
    int64_t now = 1704110400000LL; //  2024-01-01T12:00:00Z

    //  Time parsing.
    int64_t ms;
    assert (gateway_time_parse ("2024-01-01T12:00:00Z", &ms) == 0 && ms == now);
    assert (gateway_time_parse ("2024-01-01T12:00:00.123Z", &ms) == 0 && ms == now + 123);
    assert (gateway_time_parse ("2024-01-01T14:00:00+02:00", &ms) == 0 && ms == now);
    assert (gateway_time_parse ("2024-01-01T07:30:00-0430", &ms) == 0 && ms == now);
    assert (gateway_time_parse ("2024-01-01T12:00:00.123456", &ms) == 0 && ms == now + 123);
    assert (gateway_time_parse ("2024-02-29T00:00:00Z", &ms) == 0);
    assert (gateway_time_parse ("2023-02-29T00:00:00Z", &ms) == -1);
    assert (gateway_time_parse ("2024-13-01T00:00:00Z", &ms) == -1);
    assert (gateway_time_parse ("2024-01-01T24:00:00Z", &ms) == -1);
    assert (gateway_time_parse ("2024-01-01", &ms) == -1);
    assert (gateway_time_parse ("2024-01-01T12:00:00Zjunk", &ms) == -1);
    assert (gateway_time_parse ("yesterday", &ms) == -1);
    assert (gateway_time_parse ("", &ms) == -1);

    //  Formatting (the assertions of gateway_http_iso8601's test).
    char text[32];
    gateway_time_format (0, text);
    assert (strcmp (text, "1970-01-01T00:00:00.000Z") == 0);
    gateway_time_format (1704110400123LL, text);
    assert (strcmp (text, "2024-01-01T12:00:00.123Z") == 0);
    gateway_time_format (951782400999LL, text); //  leap day 2000
    assert (strcmp (text, "2000-02-29T00:00:00.999Z") == 0);
    gateway_time_format (-1, text);
    assert (strcmp (text, "1969-12-31T23:59:59.999Z") == 0);
    gateway_time_format (253402300799999LL, text);
    assert (strcmp (text, "9999-12-31T23:59:59.999Z") == 0);
    //  The arithmetic path writes what gmtime_r writes, and the parser
    //  reads back what it writes.
    char expected[32];
    uint64_t state = 88172645463325252ULL;
    for (int round = 0; round < 200000; round++) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        int64_t when = (int64_t)(state % 253402300800000ULL);
        if (round % 2)
            when = 1600000000000LL + (int64_t)(state % 400000000000ULL);
        gateway_time_format (when, text);
        s_format_gmtime (when, expected);
        if (strcmp (text, expected) != 0) {
            fprintf (stderr, "\nformat %" PRId64 ": %s, gmtime %s\n", when, text, expected);
            assert (false);
        }
        assert (gateway_time_parse (text, &ms) == 0 && ms == when);
    }
    assert (gateway_time_now_ms () > 1700000000000LL);
    if (verbose)
        printf ("(verbose) ");
    printf ("OK\n");
}
