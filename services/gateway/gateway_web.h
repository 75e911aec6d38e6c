/*  =========================================================================
    gateway_web - serves the dashboard from assets embedded at build time

    web/embed.py turns web/dist into gateway_web_assets.c (a fixed table);
    this class answers GET/HEAD for exactly the table's paths and 404 for
    anything else. It never touches the filesystem, so civetweb's file
    server (and its document_root) stays unused.
    =========================================================================
*/
#ifndef GATEWAY_WEB_H_INCLUDED
#define GATEWAY_WEB_H_INCLUDED

#include "gateway.h"

//  One embedded file.
typedef struct {
    const char *path;          //  URL path: "/" (index.html) or "/assets/..."
    const char *content_type;  //  Content-Type header value
    const char *cache_control; //  no-cache for index.html, a year for hashed names
    const unsigned char *data; //  the bytes
    size_t size;               //  their count
    const char *etag;          //  strong ETag, quotes included
} gateway_web_asset_t;

//  The generated table (gateway_web_assets.c).
extern const gateway_web_asset_t gateway_web_assets[];
extern const size_t gateway_web_asset_count;

//  The asset for a URL-decoded request path, or NULL: only exact table
//  paths match; "..", "//", "%", "\\" and control bytes never do.
const gateway_web_asset_t *gateway_web_lookup (const char *path);

//  true when an If-None-Match header value (NULL if absent) matches etag,
//  i.e. the answer is 304. Weak comparison, lists and "*" as in RFC 9110.
bool gateway_web_not_modified (const char *if_none_match, const char *etag);

//  Registers the "/" handler on self->http. Call it after every other
//  route: civetweb tries patterns in registration order and "/" matches
//  every path. It serves only the fixed table (404 otherwise, JSON like
//  the API).
void gateway_web_register (gateway_t *self);

//  Self test.
void gateway_web_test (bool verbose);

#endif
