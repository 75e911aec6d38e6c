/*  =========================================================================
    gateway_api - the user API: its router, and the umbrella header of its
    classes (each has its own header; a file includes this one):

      gateway_api.c          routing: the route tables, the session check, dispatch
      gateway_api_answer.c   answers, rows as JSON
      gateway_api_sql.c      SQL on the pool (with reconnect)
      gateway_api_request.c  ids, emails, query strings, windows, pages, body fields
      gateway_api_session.c  session token, session check, session cookie
      gateway_api_token.c    session and device tokens
      gateway_api_password.c password hashing pool and strength check
      gateway_api_auth.c     /api/auth
      gateway_api_devices.c  /api/devices
      gateway_api_ports.c    /api/ports, readings, episodes
      gateway_api_notify.c   /api/notifications, /api/webhooks
      gateway_api_summary.c  /api/summary, /api/settings
      gateway_api_export.c   CSV exports of readings and episodes, streamed
      gateway_api_test.c     the self test over real HTTP
    Live updates (/api/stream) are gateway_live's; the route lives here so it
    shares the session check.
    =========================================================================
*/
#ifndef GATEWAY_API_H_INCLUDED
#define GATEWAY_API_H_INCLUDED

#include "gateway.h"
#include "gateway_api_answer.h"
#include "gateway_api_password.h"
#include "gateway_api_request.h"
#include "gateway_api_session.h"
#include "gateway_api_sql.h"
#include "gateway_api_token.h"

//  Route tables of the resource files, each ended by a NULL method; the
//  dispatcher and the self test's authorization loop walk all of them.
extern const gateway_api_route_t gateway_api_auth_routes[];
extern const gateway_api_route_t gateway_api_devices_routes[];
extern const gateway_api_route_t gateway_api_ports_routes[];
extern const gateway_api_route_t gateway_api_notify_routes[];
extern const gateway_api_route_t gateway_api_summary_routes[];
extern const gateway_api_route_t gateway_api_export_routes[];
extern const gateway_api_route_t *const gateway_api_route_tables[];

//  Parses a URI below /api/ into request's segments; 0 or -1.
int gateway_api_parse_path (gateway_api_request_t *request, const char *uri);
bool gateway_api_route_matches (const gateway_api_route_t *route,
                                const gateway_api_request_t *request);

//  gateway_api_ports: the step (seconds) a series of readings over span_ms
//  is answered in, for the step asked (0: raw readings, answered as
//  asked). A step that would give more than 5000 buckets is raised; over
//  more than 6 hours the buckets come from the minute rollups (*rollups),
//  so the step is also rounded up to whole minutes. *raised: it differs
//  from the asked.
int64_t gateway_api_series_step (int64_t span_ms, int64_t step, bool *raised, bool *rollups);

//  Self test; runs against PHANTOM_TEST_DATABASE (a migrated database), skips without it.
void gateway_api_test (bool verbose);
//  The router's own checks (gateway_api.c), run by gateway_api_test.
void gateway_api_helpers_test (void);
//  The currency and locale checks (gateway_api_summary.c), run by the same.
void gateway_api_summary_test (void);
//  The routes over HTTP (gateway_api_test.c); exits 77 without PHANTOM_TEST_DATABASE.
void gateway_api_routes_test (bool verbose);
//  The exports over HTTP (gateway_api_export.c), streaming and its bounds
//  included; exits 77 without PHANTOM_TEST_DATABASE.
void gateway_api_export_test (bool verbose);

#endif
