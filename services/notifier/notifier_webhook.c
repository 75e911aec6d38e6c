/*  =========================================================================
    notifier_webhook - works off the webhook_deliveries outbox

    Runs in its own thread with its own PGconn, so a slow receiver never
    holds up the event loop that writes notifications.
    =========================================================================
*/
#include "notifier_webhook.h"
#include "notifier_http.h"
#include "notifier_test_db.h"
#include "notifier_test_receiver.h"
#include "notifier_db.h"

#include <inttypes.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <sodium.h>

#define TICK_MS 1000 //  how often due retries are looked for without a WAKE

struct _notifier_webhook_t {
    char *conninfo;     //  libpq connection string
    PGconn *db;         //  NULL until connected, and after a failure
    int batch;          //  deliveries claimed at once
    int timeout_ms;     //  per delivery
    int attempts;       //  before failing for good
    int backoff_ms;     //  first retry delay
    bool terminated;    //  $TERM arrived during a batch
    bool verbose;       //  log each delivery
    uint64_t delivered; //  deliveries that got a 2xx
    uint64_t failed;    //  deliveries given up
    uint64_t retried;   //  attempts that failed and were rescheduled
};

notifier_webhook_t *
notifier_webhook_new (const notifier_webhook_settings_t *settings)
{
    assert (settings && settings->conninfo);
    notifier_webhook_t *self = (notifier_webhook_t *)zmalloc (sizeof (notifier_webhook_t));
    assert (self);
    self->conninfo = strdup (settings->conninfo);
    assert (self->conninfo);
    self->batch = settings->batch > 0 ? settings->batch : 1;
    self->timeout_ms = settings->timeout_ms > 0 ? settings->timeout_ms : 5000;
    self->attempts = settings->attempts > 0 ? settings->attempts : 1;
    self->backoff_ms = settings->backoff_ms > 0 ? settings->backoff_ms : 1000;
    self->verbose = settings->verbose;
    return self;
}

void
notifier_webhook_destroy (notifier_webhook_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_webhook_t *self = *self_p;
        PQfinish (self->db);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

uint64_t
notifier_webhook_delivered (notifier_webhook_t *self)
{
    return self->delivered;
}

uint64_t
notifier_webhook_failed (notifier_webhook_t *self)
{
    return self->failed;
}

uint64_t
notifier_webhook_retried (notifier_webhook_t *self)
{
    return self->retried;
}

static PGresult *
s_exec (notifier_webhook_t *self, const char *what, const char *sql, int count,
        const char *const *values)
{
    return notifier_db_exec (self->db, "notifier webhooks", what, sql, count, values);
}

//  The body a receiver gets; NULL if the notification cannot be rendered.
static char *
s_body (const char *id, const char *kind, const char *title, const char *message,
        const char *data_text, const char *created_at)
{
    json_t *data = json_loads (data_text, JSON_REJECT_DUPLICATES, NULL);
    if (!data)
        data = json_object ();
    json_t *body = json_pack ("{s:I, s:s, s:s, s:s, s:o, s:s}", "id",
                              (json_int_t)strtoll (id, NULL, 10), "kind", kind, "title", title,
                              "message", message, "data", data, "createdAt", created_at);
    char *text = body ? json_dumps (body, JSON_COMPACT | JSON_REAL_PRECISION (12)) : NULL;
    json_decref (body);
    return text;
}

//  Records one delivery's outcome.
static void
s_record (notifier_webhook_t *self, const char *delivery, const char *webhook, int attempts_before,
          int status, const char *error)
{
    char reason[300];
    if (status >= 200 && status <= 299) {
        const char *values[] = {delivery};
        PQclear (s_exec (self, "delivered update",
                         "UPDATE webhook_deliveries SET status = 'delivered',"
                         " attempts = attempts + 1, delivered_at = now(), last_error = NULL"
                         " WHERE id = $1::bigint",
                         1, values));
        self->delivered++;
        if (self->verbose)
            zsys_debug ("notifier webhook %s - delivery %s delivered (HTTP %d)", webhook, delivery,
                        status);
        return;
    }
    if (status > 0)
        snprintf (reason, sizeof reason, "HTTP %d", status);
    else
        snprintf (reason, sizeof reason, "%s", error);
    //  A receiver that says the request itself is wrong will keep saying so.
    bool permanent = status == NOTIFIER_HTTP_PERMANENT ||
                     (status >= 400 && status <= 499 && status != 408 && status != 429);
    if (permanent || attempts_before + 1 >= self->attempts) {
        const char *values[] = {delivery, reason};
        PQclear (s_exec (self, "failed update",
                         "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1,"
                         " last_error = $2 WHERE id = $1::bigint",
                         2, values));
        self->failed++;
        zsys_error ("notifier webhook %s - delivery %s failed for good after %d attempts: %s",
                    webhook, delivery, attempts_before + 1, reason);
        return;
    }
    int shift = attempts_before < 20 ? attempts_before : 20;
    char delay[24];
    snprintf (delay, sizeof delay, "%" PRId64, (int64_t)self->backoff_ms << shift);
    const char *values[] = {delivery, reason, delay};
    PQclear (s_exec (self, "retry update",
                     "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,"
                     " next_attempt_at = now() + $3::bigint * interval '1 millisecond'"
                     " WHERE id = $1::bigint",
                     3, values));
    self->retried++;
    zsys_warning ("notifier webhook %s - delivery %s attempt %d failed (%s), retry in %s ms",
                  webhook, delivery, attempts_before + 1, reason, delay);
}

//  Reads one command from the pipe: $TERM (or a broken pipe) stops us, a
//  WAKE needs nothing, since every command is followed by a delivery run.
static void
s_read_command (notifier_webhook_t *self, zsock_t *pipe)
{
    char *command = zstr_recv (pipe);
    if (!command || streq (command, "$TERM"))
        self->terminated = true;
    zstr_free (&command);
}

//  True if the pipe asked us to stop; a WAKE there is consumed and ignored
//  (we are delivering anyway).
static bool
s_stop_requested (notifier_webhook_t *self, zsock_t *pipe)
{
    while (pipe && (zsock_events (pipe) & ZMQ_POLLIN))
        s_read_command (self, pipe);
    return self->terminated;
}

//  Columns of the claim query's rows
enum {
    S_DELIVERY,
    S_WEBHOOK,
    S_URL,
    S_SECRET,
    S_NOTIFICATION,
    S_KIND,
    S_TITLE,
    S_MESSAGE,
    S_DATA,
    S_CREATED_AT,
    S_ATTEMPTS
};

//  Posts the claimed row's notification, signed, and records the outcome.
static void
s_deliver_one (notifier_webhook_t *self, const PGresult *claimed, int row)
{
    const char *delivery = PQgetvalue (claimed, row, S_DELIVERY);
    const char *kind = PQgetvalue (claimed, row, S_KIND);
    char *body =
        s_body (PQgetvalue (claimed, row, S_NOTIFICATION), kind, PQgetvalue (claimed, row, S_TITLE),
                PQgetvalue (claimed, row, S_MESSAGE), PQgetvalue (claimed, row, S_DATA),
                PQgetvalue (claimed, row, S_CREATED_AT));
    char error[256] = "";
    int status = NOTIFIER_HTTP_PERMANENT;
    if (body) {
        char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1];
        notifier_http_sign (PQgetvalue (claimed, row, S_SECRET), body, strlen (body), signature);
        char *headers = zsys_sprintf ("X-PhantomWatch-Signature: %s\r\n"
                                      "X-PhantomWatch-Delivery: %s\r\n"
                                      "X-PhantomWatch-Event: %s\r\n",
                                      signature, delivery, kind);
        status = notifier_http_post (PQgetvalue (claimed, row, S_URL), headers, body, strlen (body),
                                     self->timeout_ms, error, sizeof error);
        zstr_free (&headers);
        free (body);
    } else
        snprintf (error, sizeof error, "notification cannot be rendered as JSON");
    s_record (self, delivery, PQgetvalue (claimed, row, S_WEBHOOK),
              atoi (PQgetvalue (claimed, row, S_ATTEMPTS)), status, error);
}

int
notifier_webhook_deliver (notifier_webhook_t *self, zsock_t *pipe)
{
    assert (self);
    if (notifier_db_ensure (&self->db, self->conninfo) == -1)
        return -1;
    char batch[16], lease[24];
    snprintf (batch, sizeof batch, "%d", self->batch);
    //  The lease covers a whole batch of slow receivers, plus slack.
    snprintf (lease, sizeof lease, "%" PRId64, (int64_t)self->batch * self->timeout_ms + 30000);
    const char *values[] = {batch, lease};
    PGresult *claimed = s_exec (
        self, "claim",
        "WITH due AS ("
        "    SELECT d.id FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        "     WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled"
        "     ORDER BY d.next_attempt_at LIMIT $1::int FOR UPDATE OF d SKIP LOCKED),"
        " claimed AS ("
        "    UPDATE webhook_deliveries d"
        "       SET next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
        "      FROM due WHERE d.id = due.id"
        "    RETURNING d.id, d.webhook_id, d.notification_id, d.attempts)"
        " SELECT c.id, w.id, w.url, w.secret, n.id, n.kind, n.title, n.message, n.data::text,"
        "        to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        "        c.attempts"
        "   FROM claimed c JOIN webhooks w ON w.id = c.webhook_id"
        "   JOIN notifications n ON n.id = c.notification_id"
        "  ORDER BY c.id",
        2, values);
    if (!claimed)
        return -1;
    int rows = PQntuples (claimed);
    int done = 0;
    for (; done < rows && !(done > 0 && s_stop_requested (self, pipe)); done++)
        s_deliver_one (self, claimed, done);
    //  Stopped early: hand the unsent rows back instead of waiting out the lease.
    for (int row = done; row < rows; row++) {
        const char *id[] = {PQgetvalue (claimed, row, S_DELIVERY)};
        PQclear (s_exec (self, "release",
                         "UPDATE webhook_deliveries SET next_attempt_at = now()"
                         " WHERE id = $1::bigint AND status = 'pending'",
                         1, id));
    }
    PQclear (claimed);
    return done;
}

void
notifier_webhook_actor (zsock_t *pipe, void *args)
{
    notifier_webhook_t *self = notifier_webhook_new ((notifier_webhook_settings_t *)args);
    zsock_signal (pipe, 0);
    int timeout = 0; //  look once at start: work may be left from a previous run
    while (!self->terminated) {
        zmq_pollitem_t item = {zsock_resolve (pipe), 0, ZMQ_POLLIN, 0};
        if (zmq_poll (&item, 1, timeout) == -1 && errno != EINTR)
            break;
        if (item.revents & ZMQ_POLLIN) {
            s_read_command (self, pipe);
            if (self->terminated)
                break;
        }
        int done = notifier_webhook_deliver (self, pipe);
        //  A full batch means more may be due: go on at once.
        timeout = done == self->batch ? 0 : TICK_MS;
    }
    zsys_info ("notifier webhooks - stopped: %" PRIu64 " delivered, %" PRIu64 " failed",
               self->delivered, self->failed);
    notifier_webhook_destroy (&self);
}

//  --------------------------------------------------------------------------
//  Self test

//  Inserts a notification for user and a delivery per enabled webhook, as
//  notifier_writer does; returns the notification id (caller frees).
static char *
s_test_notification (PGconn *db, const char *user, const char *key)
{
    char *id = notifier_test_db_value (
        db,
        "INSERT INTO notifications (user_id, kind, dedupe_key, title, message, data)"
        " VALUES ($1::bigint, 'phantom.start', $2, 'Phantom load on \"Desk\" lamp',"
        " 'Desk lamp has drawn 7.0 W \u2014 while idle', '{\"watts\": 7.0, \"portId\": \"p\"}')"
        " RETURNING id",
        user, key, NULL);
    assert (id);
    PQclear (
        PQexecParams (db,
                      "INSERT INTO webhook_deliveries (webhook_id, notification_id)"
                      " SELECT id, $1::bigint FROM webhooks WHERE user_id = $2::bigint AND enabled",
                      2, NULL, (const char *[]){id, user}, NULL, NULL, 0));
    return id;
}

//  Checks what the receiver got as request index: a valid signature under
//  secret and the notification's fields.
static void
s_test_check_request (notifier_receiver_t *receiver, size_t index, const char *secret,
                      const char *notification)
{
    assert (notifier_receiver_signed (receiver, index, secret));
    char *body = notifier_receiver_body (receiver, index);
    json_error_t error;
    json_t *json = json_loads (body, JSON_REJECT_DUPLICATES, &error);
    assert (json);
    assert (json_integer_value (json_object_get (json, "id")) == strtoll (notification, NULL, 10));
    assert (streq (json_string_value (json_object_get (json, "kind")), "phantom.start"));
    assert (streq (json_string_value (json_object_get (json, "title")),
                   "Phantom load on \"Desk\" lamp"));
    assert (streq (json_string_value (json_object_get (json, "message")),
                   "Desk lamp has drawn 7.0 W \u2014 while idle"));
    assert (json_real_value (json_object_get (json_object_get (json, "data"), "watts")) == 7.0);
    const char *created = json_string_value (json_object_get (json, "createdAt"));
    assert (created && strlen (created) == 24 && created[10] == 'T' && created[23] == 'Z');
    json_decref (json);
    free (body);
}

void
notifier_webhook_test (bool verbose)
{
    printf (" * notifier_webhook: ");
    if (verbose)
        printf ("\n");
    assert (sodium_init () >= 0);
    PGconn *db = notifier_test_db_connect ();
    int64_t user_id = notifier_test_db_user (db, 0.30, "EUR");
    char user[24];
    snprintf (user, sizeof user, "%" PRId64, user_id);
    const char *secret = "correct horse battery staple";

    //  A receiver that fails once with 500, then answers 200.
    int statuses[] = {500, 200};
    notifier_receiver_t *receiver = notifier_receiver_new (statuses, 2);
    assert (receiver);
    char *url =
        zsys_sprintf ("http://127.0.0.1:%d/hooks/phantom", notifier_receiver_port (receiver));
    char *webhook = notifier_test_db_value (
        db, "INSERT INTO webhooks (user_id, url, secret) VALUES ($1::bigint, $2, $3) RETURNING id",
        user, url, secret);
    assert (webhook);
    char *key = zsys_sprintf ("webhook-test-%s", user);
    char *notification = s_test_notification (db, user, key);

    notifier_webhook_settings_t settings = {.conninfo = notifier_test_db_conninfo (),
                                            .batch = 64,
                                            .timeout_ms = 2000,
                                            .attempts = 8,
                                            .backoff_ms = 300,
                                            .verbose = verbose};
    notifier_webhook_t *self = notifier_webhook_new (&settings);
    assert (self);
    //  Other tests' leftovers may be due too: count only ours through the receiver.
    assert (notifier_webhook_deliver (self, NULL) >= 1);
    assert (notifier_receiver_count (receiver) == 1);
    const char *delivery_sql =
        "SELECT status || ' ' || attempts || ' ' || COALESCE (last_error, '-')"
        " FROM webhook_deliveries WHERE webhook_id = $1::bigint";
    char *state = notifier_test_db_value (db, delivery_sql, webhook, NULL, NULL);
    assert (streq (state, "pending 1 HTTP 500"));
    free (state);
    //  Not due again before the backoff has passed...
    notifier_webhook_deliver (self, NULL);
    assert (notifier_receiver_count (receiver) == 1);
    //  ...and retried once it has.
    int64_t deadline = zclock_mono () + 5000;
    while (notifier_receiver_count (receiver) < 2 && zclock_mono () < deadline) {
        zclock_sleep (50);
        notifier_webhook_deliver (self, NULL);
    }
    assert (notifier_receiver_count (receiver) == 2);
    state = notifier_test_db_value (db, delivery_sql, webhook, NULL, NULL);
    assert (streq (state, "delivered 2 -"));
    free (state);
    //  Delivered once: nothing more goes out.
    zclock_sleep (400);
    notifier_webhook_deliver (self, NULL);
    assert (notifier_receiver_count (receiver) == 2);
    s_test_check_request (receiver, 0, secret, notification);
    s_test_check_request (receiver, 1, secret, notification);
    char *path = notifier_receiver_path (receiver, 1);
    assert (streq (path, "/hooks/phantom"));
    free (path);
    assert (notifier_webhook_delivered (self) >= 1 && notifier_webhook_retried (self) >= 1);
    notifier_webhook_destroy (&self);
    notifier_receiver_destroy (&receiver);
    free (notification);
    zstr_free (&key);

    //  Through the actor: a WAKE delivers at once; a 404 fails for good
    //  without retries; an https URL fails for good without a connection.
    int gone[] = {404};
    receiver = notifier_receiver_new (gone, 1);
    char *url_gone = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    PQclear (PQexecParams (db, "UPDATE webhooks SET url = $2 WHERE id = $1::bigint", 2, NULL,
                           (const char *[]){webhook, url_gone}, NULL, NULL, 0));
    char *https = notifier_test_db_value (db,
                                          "INSERT INTO webhooks (user_id, url, secret) VALUES "
                                          "($1::bigint, 'https://example.com/h', 'x')"
                                          " RETURNING id",
                                          user, NULL, NULL);
    key = zsys_sprintf ("webhook-test-%s-2", user);
    notification = s_test_notification (db, user, key);
    zactor_t *actor = zactor_new (notifier_webhook_actor, &settings);
    assert (actor);
    zstr_send (actor, "WAKE");
    deadline = zclock_mono () + 5000;
    const char *final_sql = "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w"
                            " ON w.id = d.webhook_id WHERE w.user_id = $1::bigint"
                            " AND d.status = 'failed' AND d.attempts = 1";
    while (notifier_test_db_int (db, final_sql, user, NULL, NULL) < 2 && zclock_mono () < deadline)
        zclock_sleep (50);
    assert (notifier_test_db_int (db, final_sql, user, NULL, NULL) == 2);
    assert (notifier_receiver_count (receiver) == 1);
    state = notifier_test_db_value (db,
                                    "SELECT last_error FROM webhook_deliveries"
                                    " WHERE webhook_id = $1::bigint AND status = 'failed'",
                                    https, NULL, NULL);
    assert (state && strstr (state, "https"));
    free (state);
    zactor_destroy (&actor);

    //  A database that is not there: -1, no crash.
    notifier_webhook_settings_t nowhere = settings;
    nowhere.conninfo = "host=/nonexistent port=1 dbname=x";
    self = notifier_webhook_new (&nowhere);
    assert (notifier_webhook_deliver (self, NULL) == -1);
    notifier_webhook_destroy (&self);

    notifier_receiver_destroy (&receiver);
    notifier_test_db_drop_user (db, user_id);
    free (notification);
    free (https);
    free (webhook);
    zstr_free (&key);
    zstr_free (&url);
    zstr_free (&url_gone);
    PQfinish (db);
    printf ("OK\n");
}
