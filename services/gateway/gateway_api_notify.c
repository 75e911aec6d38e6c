/*  =========================================================================
    gateway_api_notify - /api/notifications and /api/webhooks of the
    signed-in user

    The notifier writes notifications and works the webhook outbox off; the
    API reads them, marks them read, and manages the user's webhooks. A
    webhook's secret (the HMAC key of its signature header) is shown once,
    when it is created.
    =========================================================================
*/
#include "gateway_api.h"

#include <sodium.h>

#define S_NOTIFICATIONS_DEFAULT 50
#define S_DELIVERIES_DEFAULT 50
#define S_URL_MAX 2048
#define S_SECRET_BYTES 32               //  generated secrets: 256 bits, hex
#define S_SECRET_MIN 16
#define S_SECRET_MAX 256
#define S_WEBHOOKS_MAX 10               //  per user; each costs a delivery per notification

#define S_NOTIFICATION_COLUMNS                                                  \
    "id, kind, port_id::text, title, message, data::text, read_at IS NOT NULL, " \
    GATEWAY_API_MS ("created_at")
#define S_UNREAD                                                                \
    "(SELECT count (*) FROM notifications WHERE user_id = $1::bigint AND read_at IS NULL)"
#define S_WEBHOOK_COLUMNS "id, url, enabled, " GATEWAY_API_MS ("created_at")


//  ==========================================================================
//  /api/notifications

//  From S_NOTIFICATION_COLUMNS.
static json_t *
s_notification_from_row (PGresult *result, int row)
{
    json_t *data = json_loads (PQgetvalue (result, row, 5), 0, NULL);
    return json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                      "id", gateway_api_column_integer (result, row, 0),
                      "kind", gateway_api_column_text (result, row, 1),
                      "portId", gateway_api_column_text (result, row, 2),
                      "title", gateway_api_column_text (result, row, 3),
                      "message", gateway_api_column_text (result, row, 4),
                      "data", data ? data : json_object (),
                      "read", gateway_api_column_bool (result, row, 6),
                      "createdAt", gateway_api_column_time (result, row, 7));
}

//  Newest first; ?before=<id> pages back, ?limit=1..200; with the unread count.
static int
s_notifications_list (gateway_api_request_t *request)
{
    int limit;
    char before [GATEWAY_API_ID_DIGITS_MAX + 2], limit_text [8];
    int status = gateway_api_page (request, S_NOTIFICATIONS_DEFAULT, GATEWAY_API_PAGE_MAX,
                                   &limit, before);
    if (status)
        return status;
    snprintf (limit_text, sizeof limit_text, "%d", limit);
    const char *values [] = {request->user_text, *before ? before : NULL, limit_text};
    PGresult *result = gateway_api_run (request, &status,
        "SELECT " S_NOTIFICATION_COLUMNS ", " S_UNREAD " FROM notifications"
        " WHERE user_id = $1::bigint AND ($2::bigint IS NULL OR id < $2::bigint)"
        " ORDER BY id DESC LIMIT $3::integer", 3, values);
    if (!result)
        return status;
    PGresult *unread = NULL;
    if (PQntuples (result) == 0) {
        //  No row to carry the count.
        unread = gateway_api_run (request, &status, "SELECT " S_UNREAD, 1, values);
        if (!unread) {
            PQclear (result);
            return status;
        }
    }
    json_t *data = gateway_api_list_from_rows (result, "notifications", s_notification_from_row);
    json_object_set_new (data, "unread", unread ? gateway_api_column_integer (unread, 0, 0)
                                                : gateway_api_column_integer (result, 0, 8));
    int rows = PQntuples (result);
    json_object_set_new (data, "nextBefore", rows == limit
                         ? gateway_api_column_integer (result, rows - 1, 0) : json_null ());
    PQclear (result);
    PQclear (unread);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

//  {read: true|false} → {notification, unread}
static int
s_notifications_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    json_t *read = json_object_get (body, "read");
    if (!json_is_boolean (read)) {
        json_decref (body);
        return gateway_api_invalid (request, "read must be true or false");
    }
    const char *values [] = {request->user_text, request->segments [1],
                             json_is_true (read) ? "t" : "f"};
    json_decref (body);
    //  A notification read twice keeps its first read time.
    PGresult *result = gateway_api_run (request, &status,
        "WITH changed AS (UPDATE notifications"
        "   SET read_at = CASE WHEN $3::boolean THEN COALESCE (read_at, now ()) END"
        "   WHERE id = $2::bigint AND user_id = $1::bigint RETURNING *)"
        " SELECT " S_NOTIFICATION_COLUMNS ","
        "  (SELECT count (*) FROM notifications WHERE user_id = $1::bigint AND read_at IS NULL"
        "   AND id <> $2::bigint) + CASE WHEN $3::boolean THEN 0 ELSE 1 END"
        " FROM changed", 3, values);
    if (!result)
        return status;
    //  The count cannot see this statement's own change, hence the sum above.
    status = PQntuples (result) == 1
        ? gateway_http_send_data (request->conn, 200, NULL,
                                  json_pack ("{s:o, s:o}",
                                             "notification", s_notification_from_row (result, 0),
                                             "unread", gateway_api_column_integer (result, 0, 8)))
        : gateway_api_not_found (request);
    PQclear (result);
    return status;
}

static int
s_notifications_read_all (gateway_api_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "UPDATE notifications SET read_at = now ()"
        " WHERE user_id = $1::bigint AND read_at IS NULL", 1, values);
    if (!result)
        return status;
    json_t *data = json_pack ("{s:I, s:i}", "updated",
                              (json_int_t) strtoll (PQcmdTuples (result), NULL, 10), "unread", 0);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}


//  ==========================================================================
//  /api/webhooks

//  http:// or https://, a host, at most S_URL_MAX bytes, nothing a header
//  line or a log line could be split on.
static bool
s_url_valid (const char *url)
{
    size_t length = strlen (url);
    size_t scheme = strncmp (url, "http://", 7) == 0 ? 7
                  : strncmp (url, "https://", 8) == 0 ? 8 : 0;
    if (!scheme || length > S_URL_MAX || length == scheme || url [scheme] == '/')
        return false;
    for (size_t index = 0; index < length; index++) {
        unsigned char c = (unsigned char) url [index];
        if (c <= ' ' || c == 0x7F)
            return false;
    }
    return true;
}

//  From S_WEBHOOK_COLUMNS.
static json_t *
s_webhook_from_row (PGresult *result, int row)
{
    return json_pack ("{s:o, s:o, s:o, s:o}",
                      "id", gateway_api_column_integer (result, row, 0),
                      "url", gateway_api_column_text (result, row, 1),
                      "enabled", gateway_api_column_bool (result, row, 2),
                      "createdAt", gateway_api_column_time (result, row, 3));
}

static int
s_webhooks_list (gateway_api_request_t *request)
{
    const char *values [] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "SELECT " S_WEBHOOK_COLUMNS " FROM webhooks WHERE user_id = $1::bigint ORDER BY id",
        1, values);
    if (!result)
        return status;
    json_t *data = gateway_api_list_from_rows (result, "webhooks", s_webhook_from_row);
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

//  {url, secret?} → 201 {webhook, secret}; the secret is never shown again.
static int
s_webhooks_create (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    const char *url, *secret;
    char generated [2 * S_SECRET_BYTES + 1];
    if ((status = gateway_api_field_string (request, body, "url", true, 1, S_URL_MAX, &url))
    ||  (status = gateway_api_field_string (request, body, "secret", false, S_SECRET_MIN,
                                            S_SECRET_MAX, &secret)))
        goto done;
    if (!s_url_valid (url)) {
        status = gateway_api_invalid (request,
                                      "url must be an http:// or https:// URL of at most 2048 bytes");
        goto done;
    }
    if (!secret) {
        uint8_t random [S_SECRET_BYTES];
        randombytes_buf (random, sizeof random);
        sodium_bin2hex (generated, sizeof generated, random, sizeof random);
        sodium_memzero (random, sizeof random);
        secret = generated;
    }
    char limit [8];
    snprintf (limit, sizeof limit, "%d", S_WEBHOOKS_MAX);
    const char *values [] = {request->user_text, url, secret, limit};
    //  The count and the insert are one statement; two racing creates may
    //  pass the limit by one, which is harmless.
    PGresult *result = gateway_api_run (request, &status,
        "INSERT INTO webhooks (user_id, url, secret) SELECT $1::bigint, $2, $3"
        " WHERE (SELECT count (*) FROM webhooks WHERE user_id = $1::bigint) < $4::integer"
        " RETURNING " S_WEBHOOK_COLUMNS, 4, values);
    if (!result)
        goto done;
    status = PQntuples (result) == 1
        ? gateway_http_send_data (request->conn, 201, "Webhook created",
                                  json_pack ("{s:o, s:s}", "webhook", s_webhook_from_row (result, 0),
                                             "secret", secret))
        : gateway_http_send_error (request->conn, 409, "too_many_webhooks",
                                   "At most 10 webhooks per user", 0);
    PQclear (result);
done:
    json_decref (body);
    return status;
}

//  Its pending deliveries go with it (foreign key cascade).
static int
s_webhooks_delete (gateway_api_request_t *request)
{
    const char *values [] = {request->segments [1], request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
        "DELETE FROM webhooks WHERE id = $1::bigint AND user_id = $2::bigint RETURNING id",
        2, values);
    if (!result)
        return status;
    status = PQntuples (result) == 1
        ? gateway_http_send_data (request->conn, 200, "Webhook deleted", json_object ())
        : gateway_api_not_found (request);
    PQclear (result);
    return status;
}

static json_t *
s_delivery_from_row (PGresult *result, int row)
{
    return json_pack ("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
                      "id", gateway_api_column_integer (result, row, 1),
                      "notificationId", gateway_api_column_integer (result, row, 2),
                      "status", gateway_api_column_text (result, row, 3),
                      "attempts", gateway_api_column_integer (result, row, 4),
                      "nextAttemptAt", gateway_api_column_time (result, row, 5),
                      "lastError", gateway_api_column_text (result, row, 6),
                      "deliveredAt", gateway_api_column_time (result, row, 7),
                      "createdAt", gateway_api_column_time (result, row, 8));
}

//  Newest first, paged; the webhook is read through its owner first so
//  another user's webhook is a 404, not an empty list.
static int
s_webhooks_deliveries (gateway_api_request_t *request)
{
    int limit;
    char before [GATEWAY_API_ID_DIGITS_MAX + 2], limit_text [8];
    int status = gateway_api_page (request, S_DELIVERIES_DEFAULT, GATEWAY_API_PAGE_MAX,
                                   &limit, before);
    if (status)
        return status;
    snprintf (limit_text, sizeof limit_text, "%d", limit);
    const char *values [] = {request->segments [1], request->user_text,
                             *before ? before : NULL, limit_text};
    PGresult *result = gateway_api_run (request, &status,
        "SELECT w.id, d.id, d.notification_id, d.status, d.attempts,"
        " " GATEWAY_API_MS ("d.next_attempt_at") ", d.last_error,"
        " " GATEWAY_API_MS ("d.delivered_at") ", " GATEWAY_API_MS ("d.created_at")
        " FROM webhooks w LEFT JOIN LATERAL (SELECT * FROM webhook_deliveries"
        "   WHERE webhook_id = w.id AND ($3::bigint IS NULL OR id < $3::bigint)"
        "   ORDER BY id DESC LIMIT $4::integer) d ON true"
        " WHERE w.id = $1::bigint AND w.user_id = $2::bigint ORDER BY d.id DESC", 4, values);
    if (!result)
        return status;
    int rows = PQntuples (result);
    if (rows == 0) {
        PQclear (result);
        return gateway_api_not_found (request);
    }
    json_t *list = json_array ();
    for (int row = 0; row < rows; row++)
        if (!PQgetisnull (result, row, 1))
            json_array_append_new (list, s_delivery_from_row (result, row));
    json_t *next = json_array_size (list) == (size_t) limit
        ? gateway_api_column_integer (result, rows - 1, 1) : json_null ();
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL,
                                   json_pack ("{s:o, s:o}", "deliveries", list, "nextBefore", next));
}

const gateway_api_route_t gateway_api_notify_routes [] = {
    {"GET",    "notifications",              true, s_notifications_list},
    {"PATCH",  "notifications/:id",          true, s_notifications_update},
    {"POST",   "notifications/read-all",     true, s_notifications_read_all},
    {"GET",    "webhooks",                   true, s_webhooks_list},
    {"POST",   "webhooks",                   true, s_webhooks_create},
    {"DELETE", "webhooks/:id",               true, s_webhooks_delete},
    {"GET",    "webhooks/:id/deliveries",    true, s_webhooks_deliveries},
    {NULL}
};
