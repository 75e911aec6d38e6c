/*  =========================================================================
    gateway_api_request - reading a request of the user API: ids and emails, query
    strings, time windows, pages and body fields (errors name the field)
    =========================================================================
*/
#include "gateway_api.h"

#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <strings.h>

bool
gateway_api_is_id (const char *text)
{
    size_t length = strlen (text);
    if (length == 0 || length > GATEWAY_API_ID_DIGITS_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (text[index] < '0' || text[index] > '9')
            return false;
    return true;
}

bool
gateway_api_is_uuid (const char *text)
{
    if (strlen (text) != 36)
        return false;
    for (int index = 0; index < 36; index++) {
        bool dash = index == 8 || index == 13 || index == 18 || index == 23;
        if (dash ? text[index] != '-' : !isxdigit ((unsigned char)text[index]))
            return false;
    }
    return true;
}

//  Characters of a UTF-8 string (jansson only hands us valid UTF-8).
static size_t
s_utf8_length (const char *text)
{
    size_t count = 0;
    for (; *text; text++)
        if (((unsigned char)*text & 0xC0) != 0x80)
            count++;
    return count;
}

//  "HH:MM", 00:00 to 23:59.

//  Lower-cases a plausible email into out: an '@' with something on both
//  sides, no spaces or control characters, at most 254 bytes. 0 or -1.
int
gateway_api_email_normalize (const char *email, char out[GATEWAY_API_EMAIL_MAX + 1])
{
    size_t length = strlen (email);
    const char *at = strrchr (email, '@');
    if (length > GATEWAY_API_EMAIL_MAX || !at || at == email || at[1] == 0)
        return -1;
    for (size_t index = 0; index < length; index++) {
        unsigned char c = (unsigned char)email[index];
        if (c <= ' ' || c == 0x7F)
            return -1;
        out[index] = (char)tolower (c);
    }
    out[length] = 0;
    return 0;
}

//  ==========================================================================
//  Query strings and pages

int
gateway_api_query_var (gateway_api_request_t *request, const char *name, char *value, size_t size)
{
    if (!request->query)
        return 0;
    int length = mg_get_var (request->query, strlen (request->query), name, value, size);
    return length == -1 ? 0 : length < 0 ? -1 : 1;
}

//  A query time: epoch milliseconds, or ISO-8601 read as strictly as the
//  sensor contract reads a reading's timestamp. 0 with *ms set, or -1.
static int
s_parse_time (const char *text, int64_t *ms)
{
    size_t length = strlen (text);
    if (length > 0 && length <= 15 && strspn (text, "0123456789") == length) {
        *ms = strtoll (text, NULL, 10);
        return 0;
    }
    return gateway_time_parse (text, ms);
}

int
gateway_api_window (gateway_api_request_t *request, int64_t default_ms, int64_t *from, int64_t *to,
                    int64_t *step)
{
    char text[48];
    *to = gateway_time_now_ms ();
    int rc = gateway_api_query_var (request, "to", text, sizeof text);
    if (rc == -1 || (rc == 1 && s_parse_time (text, to) == -1))
        return gateway_api_invalid_field (request, "to",
                                          "to must be ISO-8601 or epoch milliseconds");
    *from = *to - default_ms;
    rc = gateway_api_query_var (request, "from", text, sizeof text);
    if (rc == -1 || (rc == 1 && s_parse_time (text, from) == -1))
        return gateway_api_invalid_field (request, "from",
                                          "from must be ISO-8601 or epoch milliseconds");
    if (*from >= *to || *to - *from > GATEWAY_API_SPAN_MAX_MS)
        return gateway_api_invalid_field (request, "from",
                                          "from must be before to, at most 400 days apart");
    if (!step)
        return 0;
    *step = 0;
    rc = gateway_api_query_var (request, "step", text, sizeof text);
    if (rc == -1 || (rc == 1 && (strspn (text, "0123456789") != strlen (text) || !*text ||
                                 strlen (text) > 9 || atol (text) > GATEWAY_API_STEP_MAX)))
        return gateway_api_invalid_field (request, "step",
                                          "step must be whole seconds, 0 to 2678400");
    if (rc == 1)
        *step = atol (text);
    return 0;
}

//  ==========================================================================
//  Request bodies: every field type-checked, errors name the field

int
gateway_api_read_body (gateway_api_request_t *request, json_t **body)
{
    *body = gateway_http_read_json (request->conn, GATEWAY_BODY_MAX);
    if (!*body)
        return 400; //  already answered
    if (!json_is_object (*body)) {
        json_decref (*body);
        *body = NULL;
        return gateway_api_invalid (request, "Body must be a JSON object");
    }
    return 0;
}

//  Reads a string field of min..max characters. 0 (value NULL when absent,
//  null or not required), or the status answered.
int
gateway_api_field_string (gateway_api_request_t *request, json_t *body, const char *name,
                          bool required, size_t min, size_t max, const char **value)
{
    json_t *field = json_object_get (body, name);
    *value = NULL;
    if (!field || json_is_null (field)) {
        if (!required)
            return 0;
    } else if (json_is_string (field)) {
        const char *text = json_string_value (field);
        size_t length = s_utf8_length (text);
        //  An embedded \u0000 would silently cut the value short.
        if (strlen (text) == json_string_length (field) && length >= min && length <= max) {
            *value = text;
            return 0;
        }
    }
    char message[160];
    snprintf (message, sizeof message, "%s must be a string of %zu to %zu characters", name, min,
              max);
    return gateway_api_invalid_field (request, name, message);
}

//  Reads a number field (integer or real) in min..max. 0 (*present false
//  when absent), or the status answered (null is not a number).
int
gateway_api_field_number (gateway_api_request_t *request, json_t *body, const char *name,
                          double min, double max, double *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if (!field)
        return 0;
    if (json_is_number (field)) {
        double number = json_number_value (field);
        if (isfinite (number) && number >= min && number <= max) {
            *value = number;
            *present = true;
            return 0;
        }
    }
    char message[160];
    snprintf (message, sizeof message, "%s must be a number from %g to %g", name, min, max);
    return gateway_api_invalid_field (request, name, message);
}

//  Reads an integer field in min..max. 0 (*present false when absent and
//  not required), or the status answered (null is not an integer).
int
gateway_api_field_integer (gateway_api_request_t *request, json_t *body, const char *name,
                           bool required, int64_t min, int64_t max, int64_t *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if (!field && !required)
        return 0;
    if (json_is_integer (field)) {
        json_int_t number = json_integer_value (field);
        if (number >= min && number <= max) {
            *value = number;
            *present = true;
            return 0;
        }
    }
    char message[160];
    snprintf (message, sizeof message, "%s must be an integer from %" PRId64 " to %" PRId64, name,
              min, max);
    return gateway_api_invalid_field (request, name, message);
}

//  Reads a true/false field; no other value means a boolean. 0 (*present
//  false when absent or null and not required), or the status answered.
int
gateway_api_field_bool (gateway_api_request_t *request, json_t *body, const char *name,
                        bool required, bool *value, bool *present)
{
    json_t *field = json_object_get (body, name);
    *present = false;
    if ((!field || json_is_null (field)) && !required)
        return 0;
    if (json_is_boolean (field)) {
        *value = json_is_true (field);
        *present = true;
        return 0;
    }
    char message[160];
    snprintf (message, sizeof message, "%s must be true or false", name);
    return gateway_api_invalid_field (request, name, message);
}

int
gateway_api_field_windows (gateway_api_request_t *request, json_t *body, const char *name,
                           size_t max, json_t **windows, bool *present)
{
    assert (max <= GATEWAY_API_WINDOWS_MAX);
    json_t *field = json_object_get (body, name);
    *windows = NULL;
    *present = field != NULL;
    if (!field || json_is_null (field))
        return 0;
    uint32_t packed[GATEWAY_API_WINDOWS_MAX];
    const char *message;
    if (gateway_cache_schedule_pack (field, max, packed, &message))
        return gateway_api_invalid_field (request, name, message);
    *windows = gateway_cache_schedule_json (packed, max);
    return 0;
}

//  --------------------------------------------------------------------------
void
gateway_api_request_test (bool verbose)
{
    (void)verbose;
    printf (" * gateway_api_request: ");
    assert (gateway_api_is_id ("1") && gateway_api_is_id ("123456789012345678"));
    assert (!gateway_api_is_id ("1234567890123456789") && !gateway_api_is_id ("") &&
            !gateway_api_is_id ("12a") && !gateway_api_is_id ("-1") && !gateway_api_is_id ("1 "));
    assert (gateway_api_is_uuid ("123e4567-e89b-12d3-a456-426614174000"));
    assert (!gateway_api_is_uuid ("123e4567e89b12d3a456426614174000") &&
            !gateway_api_is_uuid ("123e4567-e89b-12d3-a456-42661417400g") &&
            !gateway_api_is_uuid ("123e4567-e89b-12d3-a456-4266141740001"));
    char email[GATEWAY_API_EMAIL_MAX + 1];
    assert (gateway_api_email_normalize ("Ann.B@Example.COM", email) == 0 &&
            streq (email, "ann.b@example.com"));
    assert (gateway_api_email_normalize ("ann.example.com", email) == -1);
    assert (gateway_api_email_normalize ("@example.com", email) == -1);
    assert (gateway_api_email_normalize ("ann@", email) == -1);
    assert (gateway_api_email_normalize ("a nn@example.com", email) == -1);
    assert (s_utf8_length ("Küche") == 5);

    printf ("OK\n");
}
