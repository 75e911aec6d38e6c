/*  =========================================================================
    gateway_api - the user API's router: civetweb's entry below /api/, a
    route table per resource file, the session check before a signed-in
    route

    Every route but register and login needs a session (Authorization:
    Bearer, or the pw_session cookie) and every query is filtered by the
    session's user, so another user's row is simply not found: 404, never 403.
    =========================================================================
*/
#include "gateway_api.h"
#include "gateway_live.h"

//  ==========================================================================
//  Routing

//  Live updates: the session check is ours, the stream gateway_live's.
static int
s_stream (gateway_api_request_t *request)
{
    if (!request->gateway->live)
        return gateway_http_send_error (request->conn, 503, "unavailable",
                                        "Live updates unavailable", 5);
    return gateway_live_serve (request->gateway->live, request->conn, request->user);
}

static const gateway_api_route_t s_routes[] = {{"GET", "stream", true, s_stream}, {0}};

const gateway_api_route_t *const gateway_api_route_tables[] = {gateway_api_auth_routes,
                                                               gateway_api_devices_routes,
                                                               s_routes,
                                                               gateway_api_ports_routes,
                                                               gateway_api_notify_routes,
                                                               gateway_api_summary_routes,
                                                               gateway_api_export_routes,
                                                               NULL};

//  Splits the URI below /api/ into segments; one trailing slash is allowed.
//  0, or -1 when it cannot be any route of ours.
int
gateway_api_parse_path (gateway_api_request_t *request, const char *uri)
{
    if (!uri || strncmp (uri, "/api/", 5) != 0 || strlen (uri + 5) >= sizeof request->path)
        return -1;
    strcpy (request->path, uri + 5);
    size_t length = strlen (request->path);
    if (length && request->path[length - 1] == '/')
        request->path[length - 1] = 0;
    char *cursor = request->path;
    while (true) {
        if (request->segment_count == GATEWAY_API_SEGMENTS_MAX)
            return -1;
        request->segments[request->segment_count++] = cursor;
        char *slash = strchr (cursor, '/');
        if (!slash)
            break;
        *slash = 0;
        cursor = slash + 1;
    }
    return 0;
}

//  true when the request's segments fit the route's pattern.
bool
gateway_api_route_matches (const gateway_api_route_t *route, const gateway_api_request_t *request)
{
    const char *pattern = route->pattern;
    for (int index = 0; index < request->segment_count; index++) {
        if (!*pattern)
            return false;
        size_t length = strcspn (pattern, "/");
        const char *segment = request->segments[index];
        bool fits = strncmp (pattern, ":id", length) == 0 && length == 3
                        ? gateway_api_is_id (segment)
                    : strncmp (pattern, ":uuid", length) == 0 && length == 5
                        ? gateway_api_is_uuid (segment)
                        : strlen (segment) == length && strncmp (pattern, segment, length) == 0;
        if (!fits)
            return false;
        pattern += length;
        if (*pattern == '/')
            pattern++;
    }
    return *pattern == 0;
}

//  civetweb entry for everything below /api/ that no other class claimed.
static int
s_dispatch (struct mg_connection *conn, void *cbdata)
{
    const struct mg_request_info *info = mg_get_request_info (conn);
    gateway_api_request_t request;
    memset (&request, 0, sizeof request);
    request.gateway = (gateway_t *)cbdata;
    request.conn = conn;
    request.method = info && info->request_method ? info->request_method : "";
    request.query = info ? info->query_string : NULL;

    if (!info || gateway_api_parse_path (&request, info->local_uri) == -1)
        return gateway_api_not_found (&request);
    const gateway_api_route_t *route = NULL;
    bool path_known = false;
    for (size_t table = 0; gateway_api_route_tables[table] && !route; table++)
        for (const gateway_api_route_t *entry = gateway_api_route_tables[table];
             entry->method && !route; entry++)
            if (gateway_api_route_matches (entry, &request)) {
                path_known = true;
                if (streq (entry->method, request.method))
                    route = entry;
            }
    int status;
    if (!route)
        status = path_known ? gateway_http_send_error (conn, 405, "method_not_allowed",
                                                       "Method not allowed", 0)
                            : gateway_api_not_found (&request);
    else if (route->signed_in && (status = gateway_api_session_require (&request)) != 0)
        ; //  answered
    else
        status = route->handler (&request);
    if (request.gateway->verbose)
        zsys_debug ("gateway api - %s %s: %d", request.method, info->local_uri, status);
    return status;
}

//  --------------------------------------------------------------------------
//  Registers the user API. Our resources by prefix, and a pattern for the
//  rest of /api/ so an unknown route gets the JSON 404; civetweb tries
//  patterns after exact and prefix handlers, so other classes' routes
//  (e.g. /api/sensor/reading) win whatever the registration order.
void
gateway_api_register (gateway_t *self)
{
    assert (self);
    if (!gateway_api_password_ready ())
        zsys_error ("gateway api - password pool unavailable, sign-ins will fail");
    static const char *prefixes[] = {"/api/auth",          "/api/devices",  "/api/ports",
                                     "/api/notifications", "/api/webhooks", "/api/summary",
                                     "/api/settings",      "/api/stream",   "/api/**"};
    for (size_t index = 0; index < sizeof prefixes / sizeof prefixes[0]; index++)
        mg_set_request_handler (self->http, prefixes[index], s_dispatch, self);
}

//  ==========================================================================
//  Self test of the pure helpers and the password pool; the routes are
//  tested over HTTP in gateway_api_test.c.

void
gateway_api_helpers_test (void)
{
    gateway_api_summary_test ();
    //  Routes: shape decides 404 versus a route; garbage ids fit no route.
    const char *cases[][2] = {{"/api/devices", "devices"},
                              {"/api/devices/", "devices"},
                              {"/api/devices/42/token", "devices/:id/token"},
                              {"/api/ports/123e4567-e89b-12d3-a456-426614174000", "ports/:uuid"},
                              {"/api/devices/4x", NULL},
                              {"/api/ports/42", NULL},
                              {"/api/devices//token", NULL},
                              {"/api/devices/1234567890123456789", NULL},
                              {"/api/nothing", NULL},
                              {"/api/a/b/c/d/e/f/g", NULL}};
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        gateway_api_request_t request;
        memset (&request, 0, sizeof request);
        const char *matched = NULL;
        if (gateway_api_parse_path (&request, cases[index][0]) == 0)
            for (size_t table = 0; gateway_api_route_tables[table]; table++)
                for (const gateway_api_route_t *route = gateway_api_route_tables[table];
                     route->method; route++)
                    if (gateway_api_route_matches (route, &request))
                        matched = route->pattern;
        assert (cases[index][1] ? matched && streq (matched, cases[index][1]) : !matched);
    }
}

//  Here, not in gateway_api_test.c: the self test runner refers to it
//  weakly, which would not pull that file out of the static library.
void
gateway_api_test (bool verbose)
{
    printf (" * gateway_api: ");
    gateway_api_helpers_test ();
    gateway_api_routes_test (verbose);
}
