/*  =========================================================================
    load_http - HTTP/1.1 responses as the load generator reads them
    =========================================================================
*/
#include "load_http.h"

#include <assert.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *s_outcome_names[OUT_COUNT] = {
    "201", "400", "401", "404", "413", "429", "503", "504", "other", "conn_errors", "timeouts"};

int
load_http_outcome (int status)
{
    switch (status) {
    case 201:
        return OUT_201;
    case 400:
        return OUT_400;
    case 401:
        return OUT_401;
    case 404:
        return OUT_404;
    case 413:
        return OUT_413;
    case 429:
        return OUT_429;
    case 503:
        return OUT_503;
    case 504:
        return OUT_504;
    default:
        return OUT_OTHER;
    }
}

bool
load_http_outcome_transient (int outcome)
{
    return outcome == OUT_503 || outcome == OUT_504 || outcome == OUT_CONNECT ||
           outcome == OUT_TIMEOUT;
}

const char *
load_http_outcome_name (int outcome)
{
    assert (outcome >= 0 && outcome < OUT_COUNT);
    return s_outcome_names[outcome];
}

static bool
s_header_is (const char *line, size_t length, const char *name)
{
    size_t name_length = strlen (name);
    return length > name_length && line[name_length] == ':' &&
           strncasecmp (line, name, name_length) == 0;
}

//  True if the comma-separated header value holds the token (case-insensitive).
static bool
s_value_has_token (const char *value, size_t length, const char *token)
{
    size_t token_length = strlen (token);
    size_t index = 0;
    while (index < length) {
        while (index < length &&
               (value[index] == ' ' || value[index] == '\t' || value[index] == ','))
            index++;
        size_t start = index;
        while (index < length && value[index] != ',')
            index++;
        size_t end = index;
        while (end > start && (value[end - 1] == ' ' || value[end - 1] == '\t'))
            end--;
        if (end - start == token_length && strncasecmp (value + start, token, token_length) == 0)
            return true;
    }
    return false;
}

int
load_http_parse (const char *data, size_t size, bool eof, load_http_response_t *response)
{
    memset (response, 0, sizeof *response);
    const char *end = (const char *)memmem (data, size, "\r\n\r\n", 4);
    if (!end)
        return size > LOAD_HTTP_HEADER_MAX ? -2 : 0;
    size_t header_size = (size_t)(end - data) + 4;
    if (header_size > LOAD_HTTP_HEADER_MAX)
        return -2;

    //  Status line: HTTP/1.x SSS reason
    if (header_size < 14 || memcmp (data, "HTTP/1.", 7) != 0 ||
        (data[7] != '0' && data[7] != '1') || data[8] != ' ' || !isdigit ((unsigned char)data[9]) ||
        !isdigit ((unsigned char)data[10]) || !isdigit ((unsigned char)data[11]) ||
        (data[12] != ' ' && data[12] != '\r'))
        return -2;
    response->status = (data[9] - '0') * 100 + (data[10] - '0') * 10 + (data[11] - '0');
    if (response->status < 100)
        return -2;
    bool http10 = data[7] == '0';
    bool keep_alive = false;
    response->close = http10;

    bool has_length = false;
    uint64_t length = 0;
    const char *line = (const char *)memchr (data, '\n', header_size);
    if (line[-1] != '\r')
        return -2;
    line++;
    while (line < end + 2) {
        const char *eol = (const char *)memchr (line, '\n', (size_t)(end + 4 - line));
        if (!eol || eol == line || eol[-1] != '\r')
            return -2;
        size_t line_length = (size_t)(eol - 1 - line);
        if (line_length == 0)
            break;
        const char *colon = (const char *)memchr (line, ':', line_length);
        if (!colon)
            return -2;
        const char *value = colon + 1;
        size_t value_length = line_length - (size_t)(value - line);
        while (value_length && (*value == ' ' || *value == '\t')) {
            value++;
            value_length--;
        }
        while (value_length && (value[value_length - 1] == ' ' || value[value_length - 1] == '\t'))
            value_length--;

        if (s_header_is (line, line_length, "Content-Length")) {
            if (value_length == 0 || value_length > 12)
                return -2;
            uint64_t parsed = 0;
            for (size_t index = 0; index < value_length; index++) {
                if (!isdigit ((unsigned char)value[index]))
                    return -2;
                parsed = parsed * 10 + (uint64_t)(value[index] - '0');
            }
            if (has_length && parsed != length)
                return -2; //  conflicting lengths: a smuggling sign
            has_length = true;
            length = parsed;
        } else if (s_header_is (line, line_length, "Connection")) {
            if (s_value_has_token (value, value_length, "close"))
                response->close = true;
            if (s_value_has_token (value, value_length, "keep-alive"))
                keep_alive = true;
        } else if (s_header_is (line, line_length, "Transfer-Encoding"))
            return -2; //  the gateway never chunks; we do not either
        else if (s_header_is (line, line_length, "Retry-After")) {
            int seconds = 0;
            for (size_t index = 0; index < value_length && index < 6; index++) {
                if (!isdigit ((unsigned char)value[index]))
                    break;
                seconds = seconds * 10 + (value[index] - '0');
            }
            response->retry_after_s = seconds;
        }
        line = eol + 1;
    }
    if (http10 && keep_alive)
        response->close = false;
    response->body_offset = header_size;

    if (!has_length &&
        (response->status / 100 == 1 || response->status == 204 || response->status == 304))
        has_length = true; //  no body by definition
    if (has_length) {
        if (length > LOAD_HTTP_RESPONSE_MAX)
            return -2;
        if (size - header_size < length)
            return 0;
        response->body_size = (size_t)length;
        response->size = header_size + (size_t)length;
        return 1;
    }
    if (!response->close)
        return -2; //  keep-alive without a length: cannot frame it
    if (!eof)
        return 0;
    response->body_size = size - header_size;
    response->size = size;
    return 1;
}

void
load_http_test (bool verbose)
{
    if (verbose)
        printf (" * load_http: ");
    load_http_response_t response;

    //  A gateway 201, whole, followed by the next response's first bytes.
    const char *created =
        "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 29\r\n"
        "Cache-Control: no-store\r\n\r\n"
        "{\"data\":{\"reading\":{\"id\":7}}}HTTP/1.1 200";
    size_t created_size = strlen (created);
    assert (load_http_parse (created, created_size, false, &response) == 1);
    assert (response.status == 201);
    assert (response.body_size == 29);
    assert (response.size == created_size - strlen ("HTTP/1.1 200"));
    assert (!response.close);

    //  Every prefix of it is incomplete, never malformed.
    for (size_t size = 0; size < response.size; size++)
        assert (load_http_parse (created, size, false, &response) == 0);

    //  503 with Retry-After and Connection: close, mixed case and spacing.
    const char *unavailable =
        "HTTP/1.1 503 Service Unavailable\r\ncontent-length:  2 \r\nRETRY-AFTER: 3\r\n"
        "Connection: Keep-Alive, Close\r\n\r\n{}";
    assert (load_http_parse (unavailable, strlen (unavailable), false, &response) == 1);
    assert (response.status == 503);
    assert (response.close);
    assert (response.retry_after_s == 3);
    assert (response.body_size == 2);

    //  No length: a body to EOF only when the server closes.
    const char *to_eof = "HTTP/1.0 413 Payload Too Large\r\n\r\nfar too big";
    assert (load_http_parse (to_eof, strlen (to_eof), false, &response) == 0);
    assert (load_http_parse (to_eof, strlen (to_eof), true, &response) == 1);
    assert (response.status == 413 && response.body_size == 11 && response.close);
    const char *unframed = "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nxyz";
    assert (load_http_parse (unframed, strlen (unframed), false, &response) == -2);

    //  Malformed or unsupported.
    const char *bad[] = {
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
    };
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++)
        assert (load_http_parse (bad[index], strlen (bad[index]), false, &response) == -2);
    char *huge = (char *)malloc (LOAD_HTTP_HEADER_MAX + 2);
    assert (huge);
    memset (huge, 'a', LOAD_HTTP_HEADER_MAX + 1);
    huge[LOAD_HTTP_HEADER_MAX + 1] = 0;
    int huge_rc = load_http_parse (huge, LOAD_HTTP_HEADER_MAX + 1, false, &response);
    free (huge);
    assert (huge_rc == -2);

    //  Header values.
    assert (s_value_has_token ("keep-alive , close", 18, "close"));
    assert (!s_value_has_token ("closed", 6, "close"));

    //  Outcomes.
    assert (load_http_outcome (201) == OUT_201 && load_http_outcome (302) == OUT_OTHER);
    assert (load_http_outcome_transient (OUT_504) && !load_http_outcome_transient (OUT_429));
    assert (strcmp (load_http_outcome_name (OUT_CONNECT), "conn_errors") == 0);
    if (verbose)
        printf ("OK\n");
}
