/*  =========================================================================
    fuzz_query - libFuzzer target over the user API's path and query parsing

    Input: "<path below /api/>?<query string>". The path goes through
    gateway_api_parse_path and every route table's gateway_api_route_matches;
    the query through gateway_api_query_var for each variable the routes read
    (limit, before, from, to, step), and every segment and value through the
    shape checks (is_id, is_uuid, token, email), the ISO-8601 parser the
    sensor route uses, and, read as JSON, the weekly-window check of port
    schedules and tariffs (gateway_cache_schedule_pack).

    Not reached: the query window (gateway_api_window) and the page
    parameters (inside gateway_api_send_page) answer their errors on the
    connection or need a database round trip; they need a pure parser to be
    fuzzed here (see tests/fuzz/README.md).
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway.h"

#include <stdio.h>
#include <stdlib.h>

#define S_CHECK(condition)                                                                         \
    do {                                                                                           \
        if (!(condition)) {                                                                        \
            fprintf (stderr, "fuzz_query: check failed: %s\n", #condition);                        \
            abort ();                                                                              \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

//  The validators every segment or value may meet; none may read past it.
static void
s_validators (const char *text)
{
    bool id = gateway_api_is_id (text);
    if (id)
        S_CHECK (strlen (text) >= 1 && strlen (text) <= GATEWAY_API_ID_DIGITS_MAX);
    bool uuid = gateway_api_is_uuid (text);
    if (uuid)
        S_CHECK (strlen (text) == 36);
    json_t *windows = json_loads (text, JSON_DECODE_ANY, NULL);
    if (windows) {
        uint32_t packed[GATEWAY_API_WINDOWS_MAX];
        const char *message = NULL;
        if (gateway_cache_schedule_pack (windows, GATEWAY_API_WINDOWS_MAX, packed, &message) == 0) {
            //  What passed packs back to a schedule that passes again.
            json_t *again = gateway_cache_schedule_json (packed, GATEWAY_API_WINDOWS_MAX);
            uint32_t repacked[GATEWAY_API_WINDOWS_MAX];
            S_CHECK (gateway_cache_schedule_pack (again, GATEWAY_API_WINDOWS_MAX, repacked,
                                                  &message) == 0);
            json_decref (again);
        } else
            S_CHECK (message != NULL);
        json_decref (windows);
    }
    (void)gateway_api_token_valid (text);
    char email[GATEWAY_API_EMAIL_MAX + 1];
    if (gateway_api_email_normalize (text, email) == 0)
        S_CHECK (strlen (email) == strlen (text));
    int64_t ms;
    int rc = gateway_time_parse (text, &ms);
    S_CHECK (rc == 0 || rc == -1);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *input = (char *)malloc (size + 1);
    if (!input)
        return 0;
    memcpy (input, data, size);
    input[size] = 0;
    char *question = strchr (input, '?');
    if (question)
        *question = 0;

    gateway_api_request_t request;
    memset (&request, 0, sizeof request);
    request.method = "GET";
    request.query = question ? question + 1 : NULL;
    char uri[GATEWAY_API_PATH_MAX + 64];
    snprintf (uri, sizeof uri, "/api/%s", input);
    if (gateway_api_parse_path (&request, uri) == 0) {
        S_CHECK (request.segment_count >= 1 && request.segment_count <= GATEWAY_API_SEGMENTS_MAX);
        for (int index = 0; index < request.segment_count; index++) {
            S_CHECK (request.segments[index] >= request.path &&
                     request.segments[index] < request.path + sizeof request.path);
            s_validators (request.segments[index]);
        }
        for (int table = 0; gateway_api_route_tables[table]; table++)
            for (const gateway_api_route_t *route = gateway_api_route_tables[table]; route->method;
                 route++)
                (void)gateway_api_route_matches (route, &request);
    }

    static const char *names[] = {"limit", "before", "from", "to", "step"};
    for (size_t index = 0; index < sizeof names / sizeof names[0]; index++) {
        char value[48];
        int rc = gateway_api_query_var (&request, names[index], value, sizeof value);
        S_CHECK (rc == -1 || rc == 0 || rc == 1);
        if (rc == 1) {
            S_CHECK (strlen (value) < sizeof value);
            s_validators (value);
        }
    }
    free (input);
    return 0;
}
