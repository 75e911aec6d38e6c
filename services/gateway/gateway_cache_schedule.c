/*  =========================================================================
    gateway_cache_schedule - weekly off schedules, between the API's JSON
    and the packed windows the detector reads (PROTO_WINDOW_PACK)

    The API validates a schedule with it; the cache packs what was stored.
    =========================================================================
*/
#include "gateway.h"

static const char *s_day_names[] = {"mon", "tue", "wed", "thu", "fri", "sat", "sun"};

//  Minutes after midnight of "HH:MM" (00:00 to 23:59), or -1.
static int
s_clock_minutes (const char *text)
{
    if (!text || strlen (text) != 5 || text[2] != ':')
        return -1;
    for (int index = 0; index < 5; index++)
        if (index != 2 && (text[index] < '0' || text[index] > '9'))
            return -1;
    int hours = (text[0] - '0') * 10 + (text[1] - '0');
    int minutes = (text[3] - '0') * 10 + (text[4] - '0');
    return hours < 24 && minutes < 60 ? hours * 60 + minutes : -1;
}

int
gateway_cache_schedule_pack (const json_t *schedule, size_t max, uint32_t *windows,
                             const char **message)
{
    memset (windows, 0, max * sizeof (uint32_t));
    if (json_is_null (schedule))
        return 0;
    if (!json_is_array (schedule)) {
        *message = "Enter the schedule as a list of time windows, or none for always.";
        return -1;
    }
    if (json_array_size (schedule) == 0) {
        *message = "Add at least one time window, or choose always.";
        return -1;
    }
    if (json_array_size (schedule) > max) {
        *message =
            max == PROTO_WINDOWS_MAX ? "Use at most 4 time windows." : "Use fewer time windows.";
        return -1;
    }
    size_t index;
    json_t *window;
    json_array_foreach (schedule, index, window)
    {
        json_t *days = json_object_get (window, "days");
        if (!json_is_object (window) || json_object_size (window) != 3 || !days ||
            !json_object_get (window, "from") || !json_object_get (window, "to")) {
            *message = "Give each time window its days, a start and an end, and nothing else.";
            return -1;
        }
        if (!json_is_array (days) || json_array_size (days) == 0) {
            *message = "Choose at least one day for each window.";
            return -1;
        }
        uint32_t mask = 0;
        size_t at;
        json_t *day;
        json_array_foreach (days, at, day)
        {
            const char *name = json_string_value (day);
            uint32_t bit = 0;
            for (int weekday = 0; name && weekday < 7 && !bit; weekday++)
                if (streq (name, s_day_names[weekday]))
                    bit = 1u << weekday;
            if (!bit) {
                *message = "Name days as mon, tue, wed, thu, fri, sat or sun.";
                return -1;
            }
            if (mask & bit) {
                *message = "Choose each day only once in a window.";
                return -1;
            }
            mask |= bit;
        }
        int from = s_clock_minutes (json_string_value (json_object_get (window, "from")));
        int to = s_clock_minutes (json_string_value (json_object_get (window, "to")));
        if (from < 0 || to < 0) {
            *message = "Enter a time as HH:MM, like 22:00.";
            return -1;
        }
        if (from == to) {
            *message = "Give each window an end that differs from its start.";
            return -1;
        }
        windows[index] = PROTO_WINDOW_PACK (mask, from, to);
    }
    return 0;
}

json_t *
gateway_cache_schedule_json (const uint32_t *windows, size_t max)
{
    json_t *schedule = json_array ();
    for (size_t index = 0; index < max; index++) {
        if (!windows[index])
            continue;
        json_t *days = json_array ();
        for (int weekday = 0; weekday < 7; weekday++)
            if ((PROTO_WINDOW_DAYS (windows[index]) >> weekday) & 1)
                json_array_append_new (days, json_string (s_day_names[weekday]));
        char from[8], to[8];
        unsigned from_min = PROTO_WINDOW_FROM (windows[index]);
        unsigned to_min = PROTO_WINDOW_TO (windows[index]) % 1440;
        snprintf (from, sizeof from, "%02u:%02u", from_min / 60, from_min % 60);
        snprintf (to, sizeof to, "%02u:%02u", to_min / 60, to_min % 60);
        json_array_append_new (schedule,
                               json_pack ("{s:o, s:s, s:s}", "days", days, "from", from, "to", to));
    }
    if (json_array_size (schedule) == 0) {
        json_decref (schedule);
        return json_null ();
    }
    return schedule;
}

//  --------------------------------------------------------------------------
//  Self test

//  A schedule's text packs as expected (0 windows if message is NULL),
//  or is refused with message.
static void
s_schedule_check (const char *text, const uint32_t *expected, const char *message)
{
    json_error_t error;
    json_t *schedule = json_loads (text, JSON_DECODE_ANY, &error);
    assert (schedule);
    uint32_t windows[PROTO_WINDOWS_MAX];
    const char *said = NULL;
    int rc = gateway_cache_schedule_pack (schedule, PROTO_WINDOWS_MAX, windows, &said);
    if (message) {
        if (rc != -1 || !said || !streq (said, message))
            fprintf (stderr, "schedule %s: %s, expected \"%s\"\n", text, said ? said : "accepted",
                     message);
        assert (rc == -1 && streq (said, message));
    } else {
        assert (rc == 0);
        for (size_t index = 0; index < PROTO_WINDOWS_MAX; index++)
            assert (windows[index] == (expected ? expected[index] : 0));
        //  Written back in the API's form, it packs the same again
        json_t *again = gateway_cache_schedule_json (windows, PROTO_WINDOWS_MAX);
        uint32_t repacked[PROTO_WINDOWS_MAX];
        assert (gateway_cache_schedule_pack (again, PROTO_WINDOWS_MAX, repacked, &said) == 0);
        assert (memcmp (repacked, windows, sizeof windows) == 0);
        json_decref (again);
    }
    json_decref (schedule);
}

void
gateway_cache_schedule_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_cache_schedule: ");
    const uint32_t office[] = {PROTO_WINDOW_PACK (0x1f, 9 * 60, 17 * 60),
                               PROTO_WINDOW_PACK (0x7f, 22 * 60, 7 * 60), 0, 0};
    s_schedule_check (
        "[{\"days\": [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"], \"from\": "
        "\"09:00\", \"to\": \"17:00\"}, {\"days\": [\"sun\", \"sat\", \"fri\", "
        "\"thu\", \"wed\", \"tue\", \"mon\"], \"from\": \"22:00\", \"to\": \"07:00\"}]",
        office, NULL);
    const uint32_t midnight[] = {PROTO_WINDOW_PACK (0x40, 23 * 60 + 59, 0), 0, 0, 0};
    s_schedule_check ("[{\"days\": [\"sun\"], \"from\": \"23:59\", \"to\": \"00:00\"}]", midnight,
                      NULL);
    s_schedule_check ("null", NULL, NULL);
    const char *day = "{\"days\": [\"mon\"], \"from\": \"01:00\", \"to\": \"02:00\"}";
    char five[512];
    snprintf (five, sizeof five, "[%s, %s, %s, %s, %s]", day, day, day, day, day);
    s_schedule_check (five, NULL, "Use at most 4 time windows.");
    s_schedule_check ("[]", NULL, "Add at least one time window, or choose always.");
    s_schedule_check ("{}", NULL,
                      "Enter the schedule as a list of time windows, or none for always.");
    s_schedule_check ("\"mon\"", NULL,
                      "Enter the schedule as a list of time windows, or none for always.");
    const char *refused = "Give each time window its days, a start and an end, and nothing else.";
    s_schedule_check ("[1]", NULL, refused);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"01:00\"}]", NULL, refused);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"01:00\", \"to\": \"02:00\", \"x\": 1}]",
                      NULL, refused);
    s_schedule_check ("[{\"days\": [], \"from\": \"01:00\", \"to\": \"02:00\"}]", NULL,
                      "Choose at least one day for each window.");
    s_schedule_check ("[{\"days\": \"mon\", \"from\": \"01:00\", \"to\": \"02:00\"}]", NULL,
                      "Choose at least one day for each window.");
    s_schedule_check ("[{\"days\": [\"Mon\"], \"from\": \"01:00\", \"to\": \"02:00\"}]", NULL,
                      "Name days as mon, tue, wed, thu, fri, sat or sun.");
    s_schedule_check ("[{\"days\": [1], \"from\": \"01:00\", \"to\": \"02:00\"}]", NULL,
                      "Name days as mon, tue, wed, thu, fri, sat or sun.");
    s_schedule_check ("[{\"days\": [\"mon\", \"tue\", \"mon\"], \"from\": \"01:00\", \"to\": "
                      "\"02:00\"}]",
                      NULL, "Choose each day only once in a window.");
    const char *clock = "Enter a time as HH:MM, like 22:00.";
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"24:00\", \"to\": \"02:00\"}]", NULL,
                      clock);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"01:00\", \"to\": \"2:00\"}]", NULL,
                      clock);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"01:60\", \"to\": \"02:00\"}]", NULL,
                      clock);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": 60, \"to\": \"02:00\"}]", NULL, clock);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"01:00\", \"to\": null}]", NULL, clock);
    s_schedule_check ("[{\"days\": [\"mon\"], \"from\": \"02:00\", \"to\": \"02:00\"}]", NULL,
                      "Give each window an end that differs from its start.");
    //  Every packed value is one the proto decoder accepts
    uint32_t windows[PROTO_WINDOWS_MAX];
    const char *said;
    json_t *schedule =
        json_loads ("[{\"days\": [\"mon\"], \"from\": \"23:59\", \"to\": \"23:58\"}]", 0, NULL);
    assert (gateway_cache_schedule_pack (schedule, PROTO_WINDOWS_MAX, windows, &said) == 0);
    assert (proto_window_valid (windows[0]) && windows[0] != 0);
    json_decref (schedule);
    printf ("OK\n");
}
