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
#define S_SECRET_BYTES 32 //  generated secrets: 256 bits, hex
#define S_SECRET_MIN 16
#define S_SECRET_MAX 256
#define S_WEBHOOKS_MAX 10 //  per user; each costs a delivery per notification
#define S_RESOLVE_MS 2000 //  a webhook host's name lookup, at most

#define S_NOTIFICATION_COLUMNS                                                                     \
    "id, kind, port_id::text, title, message, data::text, read_at IS NOT NULL, " GATEWAY_API_MS (  \
        "created_at")
#define S_WEBHOOK_COLUMNS "w.id, w.url, w.enabled, " GATEWAY_API_MS ("w.created_at")

//  ==========================================================================
//  /api/notifications

//  Of S_NOTIFICATION_COLUMNS from column 1 on; column 0 is the unread count.
static const gateway_api_member_t s_notification_members[] = {{"id", 1, GATEWAY_API_INTEGER},
                                                              {"kind", 2, GATEWAY_API_TEXT},
                                                              {"portId", 3, GATEWAY_API_TEXT},
                                                              {"title", 4, GATEWAY_API_TEXT},
                                                              {"message", 5, GATEWAY_API_TEXT},
                                                              {"data", 6, GATEWAY_API_JSON},
                                                              {"read", 7, GATEWAY_API_BOOL},
                                                              {"createdAt", 8, GATEWAY_API_TIME},
                                                              {0}};

static const gateway_api_member_t s_unread_members[] = {{"unread", 0, GATEWAY_API_INTEGER}, {0}};

//  Newest first; ?before=<id> pages back, ?limit=1..200; with the unread
//  count. The user is the parent, so an empty page still has a row for it.
static int
s_notifications_list (gateway_api_request_t *request)
{
    return gateway_api_send_page (
        request, request->user_text, S_NOTIFICATIONS_DEFAULT,
        "SELECT (SELECT count (*) FROM notifications WHERE user_id = u.id AND read_at IS NULL),"
        " n.* FROM users u"
        " LEFT JOIN LATERAL (SELECT " S_NOTIFICATION_COLUMNS " FROM notifications"
        "   WHERE user_id = u.id AND ($3::bigint IS NULL OR id < $3::bigint)"
        "   ORDER BY id DESC LIMIT $4::integer) n ON true"
        " WHERE u.id = $1::bigint AND u.id = $2::bigint ORDER BY n.id DESC",
        "notifications", s_notification_members, s_unread_members);
}

//  {read: true|false} → {notification, unread}
static int
s_notifications_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    bool read, present;
    status = gateway_api_field_bool (request, body, "read", true, &read, &present);
    json_decref (body);
    if (status)
        return status;
    const char *values[] = {request->user_text, request->segments[1], read ? "t" : "f"};
    //  A notification read twice keeps its first read time.
    PGresult *result = gateway_api_run_found (
        request, &status,
        "WITH changed AS (UPDATE notifications"
        "   SET read_at = CASE WHEN $3::boolean THEN COALESCE (read_at, now ()) END"
        "   WHERE id = $2::bigint AND user_id = $1::bigint RETURNING *)"
        " SELECT (SELECT count (*) FROM notifications WHERE user_id = $1::bigint"
        "         AND read_at IS NULL AND id <> $2::bigint) + CASE WHEN $3::boolean THEN 0 ELSE 1 "
        "END,"
        "  " S_NOTIFICATION_COLUMNS " FROM changed",
        3, values);
    if (!result)
        return status;
    //  The count cannot see this statement's own change, hence the sum above.
    json_t *data = gateway_api_object_from_row (result, 0, s_unread_members);
    json_object_set_new (data, "notification",
                         gateway_api_object_from_row (result, 0, s_notification_members));
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, NULL, data);
}

static int
s_notifications_read_all (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (request, &status,
                                        "UPDATE notifications SET read_at = now ()"
                                        " WHERE user_id = $1::bigint AND read_at IS NULL",
                                        1, values);
    if (!result)
        return status;
    json_t *data = json_pack ("{s:I, s:i}", "updated",
                              (json_int_t)strtoll (PQcmdTuples (result), NULL, 10), "unread", 0);
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
    size_t scheme = strncmp (url, "http://", 7) == 0    ? 7
                    : strncmp (url, "https://", 8) == 0 ? 8
                                                        : 0;
    if (!scheme || length > S_URL_MAX || length == scheme || url[scheme] == '/')
        return false;
    for (size_t index = 0; index < length; index++) {
        unsigned char c = (unsigned char)url[index];
        if (c <= ' ' || c == 0x7F)
            return false;
    }
    return true;
}

static const gateway_api_member_t s_webhook_members[] = {{"id", 0, GATEWAY_API_INTEGER},
                                                         {"url", 1, GATEWAY_API_TEXT},
                                                         {"enabled", 2, GATEWAY_API_BOOL},
                                                         {"createdAt", 3, GATEWAY_API_TIME},
                                                         {0}};

//  Of S_WEBHOOK_COLUMNS, then the newest delivery's columns from 4 on.
static const gateway_api_member_t s_webhook_listed_members[] = {
    {"id", 0, GATEWAY_API_INTEGER},
    {"url", 1, GATEWAY_API_TEXT},
    {"enabled", 2, GATEWAY_API_BOOL},
    {"createdAt", 3, GATEWAY_API_TIME},
    {"lastDelivery.status", 4, GATEWAY_API_TEXT},
    {"lastDelivery.attempts", 5, GATEWAY_API_INTEGER},
    {"lastDelivery.lastError", 6, GATEWAY_API_TEXT},
    {"lastDelivery.deliveredAt", 7, GATEWAY_API_TIME},
    {"lastDelivery.createdAt", 8, GATEWAY_API_TIME},
    {"lastDelivery.notificationId", 9, GATEWAY_API_INTEGER},
    {0}};

//  Each with the outcome of its newest delivery (null before the first).
static int
s_webhooks_list (gateway_api_request_t *request)
{
    const char *values[] = {request->user_text};
    int status;
    PGresult *result = gateway_api_run (
        request, &status,
        "SELECT " S_WEBHOOK_COLUMNS ", d.status, d.attempts, d.last_error,"
        " " GATEWAY_API_MS ("d.delivered_at") ", " GATEWAY_API_MS (
            "d.created_at") ", d.notification_id"
                            " FROM webhooks w LEFT JOIN LATERAL (SELECT * FROM webhook_deliveries"
                            "   WHERE webhook_id = w.id ORDER BY id DESC LIMIT 1) d ON true"
                            " WHERE w.user_id = $1::bigint ORDER BY w.id",
        1, values);
    if (!result)
        return status;
    json_t *list = json_array ();
    for (int row = 0; row < PQntuples (result); row++) {
        json_t *webhook = gateway_api_object_from_row (result, row, s_webhook_listed_members);
        if (PQgetisnull (result, row, 4))
            json_object_set_new (webhook, "lastDelivery", json_null ());
        json_array_append_new (list, webhook);
    }
    PQclear (result);
    return gateway_api_send_object (request, 200, NULL, "webhooks", list);
}

//  {enabled} → {webhook}
static int
s_webhooks_update (gateway_api_request_t *request)
{
    json_t *body;
    int status = gateway_api_read_body (request, &body);
    if (status)
        return status;
    bool enabled, present;
    if ((status = gateway_api_field_bool (request, body, "enabled", true, &enabled, &present)))
        goto done;
    const char *values[] = {request->segments[1], request->user_text, enabled ? "t" : "f"};
    PGresult *result = gateway_api_run_found (
        request, &status,
        "UPDATE webhooks w SET enabled = $3::boolean WHERE id = $1::bigint AND user_id = $2::bigint"
        " RETURNING " S_WEBHOOK_COLUMNS,
        3, values);
    if (result)
        status = gateway_api_send_row (request, 200, enabled ? "Webhook on" : "Webhook off", result,
                                       "webhook", s_webhook_members);
done:
    json_decref (body);
    return status;
}

//  A test notification (already read: it is not news) delivered to this
//  webhook only, through the same outbox as every other → 202
//  {notificationId}. The delivery's outcome shows as the webhook's
//  lastDelivery.
static int
s_webhooks_test (gateway_api_request_t *request)
{
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "WITH hook AS (SELECT id, user_id, url FROM webhooks WHERE id = $1::bigint AND user_id = "
        "$2::bigint),"
        " sent AS (INSERT INTO notifications (user_id, kind, dedupe_key, title, message, data, "
        "read_at)"
        "   SELECT user_id, 'webhook.test', 'webhook.test:' || id || ':' || clock_timestamp (),"
        "          'Test from PhantomWatch', 'This is a test of your webhook ' || url || '.',"
        "          jsonb_build_object ('webhookId', id), now () FROM hook RETURNING id, user_id),"
        " queued AS (INSERT INTO webhook_deliveries (webhook_id, notification_id)"
        "   SELECT hook.id, sent.id FROM hook, sent RETURNING notification_id)"
        " SELECT notification_id FROM queued",
        2, values);
    if (!result)
        return status;
    json_t *data = json_pack ("{s:I}", "notificationId",
                              (json_int_t)strtoll (PQgetvalue (result, 0, 0), NULL, 10));
    PQclear (result);
    return gateway_http_send_data (request->conn, 202, "Test notification queued", data);
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
    char generated[2 * S_SECRET_BYTES + 1];
    if ((status = gateway_api_field_string (request, body, "url", true, 1, S_URL_MAX, &url)) ||
        (status = gateway_api_field_string (request, body, "secret", false, S_SECRET_MIN,
                                            S_SECRET_MAX, &secret)))
        goto done;
    if (!s_url_valid (url)) {
        status = gateway_api_invalid_field (
            request, "url", "url must be an http:// or https:// URL of at most 2048 bytes");
        goto done;
    }
    //  No webhook may reach inside: every address of its host is checked
    //  now, and the notifier checks again at each delivery.
    char refusal[256];
    assert (request->gateway->webhook_policy);
    int checked = proto_address_check_url (request->gateway->webhook_policy, url, S_RESOLVE_MS,
                                           refusal, sizeof refusal);
    if (checked == PROTO_ADDRESS_REFUSED) {
        status = gateway_api_invalid_field (request, "url", refusal);
        goto done;
    }
    if (checked == PROTO_ADDRESS_AGAIN) {
        status = gateway_http_send_error (request->conn, 503, "unavailable", refusal, 5);
        goto done;
    }
    if (!secret) {
        uint8_t random[S_SECRET_BYTES];
        randombytes_buf (random, sizeof random);
        sodium_bin2hex (generated, sizeof generated, random, sizeof random);
        sodium_memzero (random, sizeof random);
        secret = generated;
    }
    char limit[8];
    snprintf (limit, sizeof limit, "%d", S_WEBHOOKS_MAX);
    const char *values[] = {request->user_text, url, secret, limit};
    //  The count and the insert are one statement; two racing creates may
    //  pass the limit by one, which is harmless.
    PGresult *result = gateway_api_run (
        request, &status,
        "INSERT INTO webhooks AS w (user_id, url, secret) SELECT $1::bigint, $2, $3"
        " WHERE (SELECT count (*) FROM webhooks WHERE user_id = $1::bigint) < $4::integer"
        " RETURNING " S_WEBHOOK_COLUMNS,
        4, values);
    if (!result)
        goto done;
    status = PQntuples (result) == 1
                 ? gateway_http_send_data (
                       request->conn, 201, "Webhook created",
                       json_pack ("{s:o, s:s}", "webhook",
                                  gateway_api_object_from_row (result, 0, s_webhook_members),
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
    const char *values[] = {request->segments[1], request->user_text};
    int status;
    PGresult *result = gateway_api_run_found (
        request, &status,
        "DELETE FROM webhooks WHERE id = $1::bigint AND user_id = $2::bigint RETURNING id", 2,
        values);
    if (!result)
        return status;
    PQclear (result);
    return gateway_http_send_data (request->conn, 200, "Webhook deleted", json_object ());
}

static const gateway_api_member_t s_delivery_members[] = {
    {"id", 1, GATEWAY_API_INTEGER},
    {"notificationId", 2, GATEWAY_API_INTEGER},
    {"status", 3, GATEWAY_API_TEXT},
    {"attempts", 4, GATEWAY_API_INTEGER},
    {"nextAttemptAt", 5, GATEWAY_API_TIME},
    {"lastError", 6, GATEWAY_API_TEXT},
    {"deliveredAt", 7, GATEWAY_API_TIME},
    {"createdAt", 8, GATEWAY_API_TIME},
    {0}};

//  Newest first, paged; the webhook is read through its owner first so
//  another user's webhook is a 404, not an empty list.
static int
s_webhooks_deliveries (gateway_api_request_t *request)
{
    return gateway_api_send_page (
        request, request->segments[1], S_DELIVERIES_DEFAULT,
        "SELECT w.id, d.id, d.notification_id, d.status, d.attempts,"
        " " GATEWAY_API_MS (
            "d.next_attempt_at") ", d.last_error,"
                                 " " GATEWAY_API_MS ("d.delivered_at") ", " GATEWAY_API_MS (
                                     "d.created_at") " FROM webhooks w LEFT JOIN LATERAL (SELECT * "
                                                     "FROM webhook_deliveries"
                                                     "   WHERE webhook_id = w.id AND ($3::bigint "
                                                     "IS NULL OR id < $3::bigint)"
                                                     "   ORDER BY id DESC LIMIT $4::integer) d ON "
                                                     "true"
                                                     " WHERE w.id = $1::bigint AND w.user_id = "
                                                     "$2::bigint ORDER BY d.id DESC",
        "deliveries", s_delivery_members, NULL);
}

const gateway_api_route_t gateway_api_notify_routes[] = {
    {"GET", "notifications", true, s_notifications_list},
    {"PATCH", "notifications/:id", true, s_notifications_update},
    {"POST", "notifications/read-all", true, s_notifications_read_all},
    {"GET", "webhooks", true, s_webhooks_list},
    {"POST", "webhooks", true, s_webhooks_create},
    {"PATCH", "webhooks/:id", true, s_webhooks_update},
    {"DELETE", "webhooks/:id", true, s_webhooks_delete},
    {"POST", "webhooks/:id/test", true, s_webhooks_test},
    {"GET", "webhooks/:id/deliveries", true, s_webhooks_deliveries},
    {0}};
