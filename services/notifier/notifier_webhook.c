/*  =========================================================================
    notifier_webhook - works off the webhook_deliveries outbox

    Runs in its own thread with its own PGconn, so a slow receiver never
    holds up the event loop that writes notifications. One poll waits on
    the POSTs in flight and the actor's pipe together, so a WAKE is seen at
    once even while receivers are slow.
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

#define TICK_MS 1000            //  how often due retries are looked for without a WAKE
#define CONNECT_TIMEOUT_MS 3000 //  resolve, connect and handshake, within timeout_ms
#define RESPONSE_MAX 65536      //  answer bytes read at most
#define SCAN_MAX 500            //  due rows looked at per claim

//  One delivery in flight: what its outcome is recorded against.
typedef struct {
    char delivery[24]; //  webhook_deliveries.id
    char webhook[24];  //  webhooks.id
    int64_t user;      //  owner, for the share
    int attempts;      //  before this one
} s_flight_t;

//  A user's deliveries in flight.
typedef struct {
    int64_t user; //  0: slot unused
    int flying;   //  deliveries in flight
} s_share_t;

struct _notifier_webhook_t {
    char *conninfo;        //  libpq connection string
    PGconn *db;            //  NULL until connected, and after a failure
    notifier_http_t *http; //  the POSTs in flight
    int batch;             //  deliveries in flight at most
    int per_user;          //  of them one user's at most
    int timeout_ms;        //  per delivery
    int attempts;          //  before failing for good
    int backoff_ms;        //  first retry delay
    s_share_t *shares;     //  users with deliveries in flight (batch entries)
    bool terminated;       //  $TERM arrived
    bool verbose;          //  log each delivery
    uint64_t delivered;    //  deliveries that got a 2xx
    uint64_t failed;       //  deliveries given up
    uint64_t retried;      //  attempts that failed and were rescheduled
};

notifier_webhook_t *
notifier_webhook_new (const notifier_webhook_settings_t *settings)
{
    assert (settings && settings->conninfo && settings->policy);
    notifier_webhook_t *self = (notifier_webhook_t *)zmalloc (sizeof (notifier_webhook_t));
    assert (self);
    self->conninfo = strdup (settings->conninfo);
    assert (self->conninfo);
    self->batch = settings->batch > 0 ? settings->batch : 1;
    self->per_user = settings->per_user > 0 && settings->per_user < self->batch ? settings->per_user
                                                                                : self->batch;
    self->timeout_ms = settings->timeout_ms > 0 ? settings->timeout_ms : 5000;
    self->attempts = settings->attempts > 0 ? settings->attempts : 1;
    self->backoff_ms = settings->backoff_ms > 0 ? settings->backoff_ms : 1000;
    self->verbose = settings->verbose;
    self->shares = (s_share_t *)zmalloc (sizeof (s_share_t) * (size_t)self->batch);
    notifier_http_settings_t http = {.timeout_ms = self->timeout_ms,
                                     .connect_timeout_ms = CONNECT_TIMEOUT_MS,
                                     .response_max = RESPONSE_MAX,
                                     .ca_file = settings->ca_file,
                                     .policy = settings->policy};
    self->http = notifier_http_new (&http);
    assert (self->shares && self->http);
    return self;
}

//  Hands a claimed delivery back for the next claim (it was not tried).
static void
s_release (notifier_webhook_t *self, s_flight_t *flight)
{
    const char *values[] = {flight->delivery};
    if (self->db)
        PQclear (proto_pg_exec (self->db, "notifier webhooks", "release",
                                "UPDATE webhook_deliveries SET next_attempt_at = now()"
                                " WHERE id = $1::bigint AND status = 'pending'",
                                1, values));
}

//  Counts one more (change 1) or one fewer (-1) in flight for user.
static void
s_share (notifier_webhook_t *self, int64_t user, int change)
{
    s_share_t *free_slot = NULL;
    for (int index = 0; index < self->batch; index++) {
        if (self->shares[index].user == user) {
            self->shares[index].flying += change;
            if (self->shares[index].flying <= 0)
                self->shares[index] = (s_share_t){0, 0};
            return;
        }
        if (!free_slot && self->shares[index].user == 0)
            free_slot = &self->shares[index];
    }
    //  At most batch users can be in flight, so a new one finds a slot.
    assert (change > 0 && free_slot);
    *free_slot = (s_share_t){user, change};
}

//  Aborts what is in flight and hands it back.
static void
s_abort_all (notifier_webhook_t *self)
{
    s_flight_t *flight;
    while ((flight = (s_flight_t *)notifier_http_abort (self->http))) {
        s_release (self, flight);
        s_share (self, flight->user, -1);
        free (flight);
    }
}

void
notifier_webhook_destroy (notifier_webhook_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_webhook_t *self = *self_p;
        s_abort_all (self);
        notifier_http_destroy (&self->http);
        PQfinish (self->db);
        free (self->shares);
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
    return proto_pg_exec (self->db, "notifier webhooks", what, sql, count, values);
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

//  Records one delivery's outcome: a status, or the category of the
//  failure (the log gets libcurl's own words too).
static void
s_record (notifier_webhook_t *self, const s_flight_t *flight, const notifier_http_result_t *result)
{
    const char *delivery = flight->delivery, *webhook = flight->webhook;
    int status = result->outcome == NOTIFIER_HTTP_ANSWERED ? result->status : 0;
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
    char reason[32];
    if (status)
        snprintf (reason, sizeof reason, "HTTP %d", status);
    else
        snprintf (reason, sizeof reason, "%s", notifier_http_outcome_name (result->outcome));
    //  A receiver that says the request itself is wrong will keep saying so.
    bool permanent = result->outcome == NOTIFIER_HTTP_BAD_URL ||
                     result->outcome == NOTIFIER_HTTP_NOT_ALLOWED ||
                     (status >= 400 && status <= 499 && status != 408 && status != 429);
    if (permanent || flight->attempts + 1 >= self->attempts) {
        const char *values[] = {delivery, reason};
        PQclear (s_exec (self, "failed update",
                         "UPDATE webhook_deliveries SET status = 'failed', attempts = attempts + 1,"
                         " last_error = $2 WHERE id = $1::bigint",
                         2, values));
        self->failed++;
        zsys_error ("notifier webhook %s - delivery %s failed for good after %d attempts: %s (%s)",
                    webhook, delivery, flight->attempts + 1, reason, result->detail);
        return;
    }
    int shift = flight->attempts < 20 ? flight->attempts : 20;
    char delay[24];
    snprintf (delay, sizeof delay, "%" PRId64, (int64_t)self->backoff_ms << shift);
    const char *values[] = {delivery, reason, delay};
    PQclear (s_exec (self, "retry update",
                     "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $2,"
                     " next_attempt_at = now() + $3::bigint * interval '1 millisecond'"
                     " WHERE id = $1::bigint",
                     3, values));
    self->retried++;
    zsys_warning ("notifier webhook %s - delivery %s attempt %d failed (%s: %s), retry in %s ms",
                  webhook, delivery, flight->attempts + 1, reason, result->detail, delay);
}

//  Reads the commands waiting on the pipe: $TERM (or a broken pipe) stops
//  us; a WAKE needs nothing, since every command is followed by a claim.
//  True if there was one.
static bool
s_read_commands (notifier_webhook_t *self, zsock_t *pipe)
{
    bool any = false;
    while (pipe && !self->terminated && (zsock_events (pipe) & ZMQ_POLLIN)) {
        char *command = zstr_recv (pipe);
        if (!command || streq (command, "$TERM"))
            self->terminated = true;
        zstr_free (&command);
        any = true;
    }
    return any;
}

//  Columns of the claim query's rows
enum {
    S_DELIVERY,
    S_WEBHOOK,
    S_USER,
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

//  Starts the claimed row's POST, signed; a row that cannot be sent is
//  recorded at once. 0 if it is in flight.
static int
s_start (notifier_webhook_t *self, const PGresult *claimed, int row)
{
    s_flight_t *flight = (s_flight_t *)zmalloc (sizeof (s_flight_t));
    assert (flight);
    snprintf (flight->delivery, sizeof flight->delivery, "%s",
              PQgetvalue (claimed, row, S_DELIVERY));
    snprintf (flight->webhook, sizeof flight->webhook, "%s", PQgetvalue (claimed, row, S_WEBHOOK));
    flight->user = strtoll (PQgetvalue (claimed, row, S_USER), NULL, 10);
    flight->attempts = atoi (PQgetvalue (claimed, row, S_ATTEMPTS));
    const char *kind = PQgetvalue (claimed, row, S_KIND);
    char *body =
        s_body (PQgetvalue (claimed, row, S_NOTIFICATION), kind, PQgetvalue (claimed, row, S_TITLE),
                PQgetvalue (claimed, row, S_MESSAGE), PQgetvalue (claimed, row, S_DATA),
                PQgetvalue (claimed, row, S_CREATED_AT));
    notifier_http_result_t failure = {.outcome = NOTIFIER_HTTP_BAD_URL};
    if (body) {
        char signature[NOTIFIER_HTTP_SIGNATURE_MAX + 1];
        notifier_http_sign (PQgetvalue (claimed, row, S_SECRET), body, strlen (body), signature);
        char *lines[] = {zsys_sprintf ("X-PhantomWatch-Signature: %s", signature),
                         zsys_sprintf ("X-PhantomWatch-Delivery: %s", flight->delivery),
                         zsys_sprintf ("X-PhantomWatch-Event: %s", kind), NULL};
        int rc = notifier_http_start (self->http, PQgetvalue (claimed, row, S_URL),
                                      (const char *const *)lines, body, strlen (body), flight);
        for (int index = 0; lines[index]; index++)
            zstr_free (&lines[index]);
        free (body);
        if (rc == 0) {
            s_share (self, flight->user, 1);
            return 0;
        }
        snprintf (failure.detail, sizeof failure.detail, "libcurl did not take the URL");
    } else
        snprintf (failure.detail, sizeof failure.detail, "notification cannot be rendered as JSON");
    s_record (self, flight, &failure);
    free (flight);
    return -1;
}

//  Claims what is due, up to the free slots and each user's share, and
//  starts it. Returns the rows claimed, or -1 if the database failed.
static int
s_claim (notifier_webhook_t *self)
{
    int free_slots = self->batch - (int)notifier_http_active (self->http);
    if (free_slots <= 0)
        return 0;
    if (proto_pg_ensure (&self->db, self->conninfo, NOTIFIER_DB_APPLICATION,
                         NOTIFIER_DB_STATEMENT_TIMEOUT_MS) == -1)
        return -1;
    //  Who has how many in flight, as two arrays.
    zchunk_t *users = zchunk_new ("{", 1), *flying = zchunk_new ("{", 1);
    for (int index = 0; index < self->batch; index++)
        if (self->shares[index].user) {
            char text[48];
            int length = snprintf (text, sizeof text, "%s%" PRId64,
                                   zchunk_size (users) > 1 ? "," : "", self->shares[index].user);
            zchunk_extend (users, text, (size_t)length);
            length = snprintf (text, sizeof text, "%s%d", zchunk_size (flying) > 1 ? "," : "",
                               self->shares[index].flying);
            zchunk_extend (flying, text, (size_t)length);
        }
    zchunk_extend (users, "}", 2); //  with the NUL
    zchunk_extend (flying, "}", 2);
    char slots[16], lease[24], share[16], scan[16];
    snprintf (slots, sizeof slots, "%d", free_slots);
    //  The lease outlasts the POST (libcurl ends it by timeout_ms), plus slack.
    snprintf (lease, sizeof lease, "%d", self->timeout_ms + 30000);
    snprintf (share, sizeof share, "%d", self->per_user);
    snprintf (scan, sizeof scan, "%d", SCAN_MAX);
    const char *values[] = {
        slots, lease, (const char *)zchunk_data (users), (const char *)zchunk_data (flying),
        share, scan};
    //  Users at their share are left out before the scan's limit, so a
    //  big backlog of theirs cannot hide anyone else's; the others get
    //  what is left of their share, oldest first.
    PGresult *claimed = s_exec (
        self, "claim",
        "WITH busy AS (SELECT * FROM unnest ($3::bigint[], $4::int[]) AS b (user_id, flying)),"
        " due AS ("
        "    SELECT d.id, w.user_id, d.next_attempt_at"
        "      FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id"
        "     WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND w.enabled"
        "       AND w.user_id NOT IN (SELECT user_id FROM busy WHERE flying >= $5::int)"
        "     ORDER BY d.next_attempt_at LIMIT $6::int),"
        " ranked AS ("
        "    SELECT due.id, due.next_attempt_at, COALESCE (b.flying, 0)"
        "           + row_number () OVER (PARTITION BY due.user_id"
        "                                 ORDER BY due.next_attempt_at, due.id) AS place"
        "      FROM due LEFT JOIN busy b USING (user_id)),"
        " picked AS (SELECT id FROM ranked WHERE place <= $5::int"
        "             ORDER BY next_attempt_at, id LIMIT $1::int),"
        " claimed AS ("
        "    UPDATE webhook_deliveries d"
        "       SET next_attempt_at = now() + $2::bigint * interval '1 millisecond'"
        "      FROM picked WHERE d.id = picked.id"
        "       AND d.status = 'pending' AND d.next_attempt_at <= now()"
        "    RETURNING d.id, d.webhook_id, d.notification_id, d.attempts)"
        " SELECT c.id, w.id, w.user_id, w.url, w.secret, n.id, n.kind, n.title, n.message,"
        "        n.data::text,"
        "        to_char(n.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
        "        c.attempts"
        "   FROM claimed c JOIN webhooks w ON w.id = c.webhook_id"
        "   JOIN notifications n ON n.id = c.notification_id"
        "  ORDER BY c.id",
        6, values);
    zchunk_destroy (&users);
    zchunk_destroy (&flying);
    if (!claimed)
        return -1;
    int rows = PQntuples (claimed);
    for (int row = 0; row < rows; row++)
        s_start (self, claimed, row);
    PQclear (claimed);
    return rows;
}

//  Records every delivery that has ended; returns how many did.
static int
s_collect (notifier_webhook_t *self)
{
    int done = 0;
    notifier_http_result_t result;
    while (notifier_http_next (self->http, &result)) {
        s_flight_t *flight = (s_flight_t *)result.tag;
        s_record (self, flight, &result);
        s_share (self, flight->user, -1);
        free (flight);
        done++;
    }
    return done;
}

int
notifier_webhook_deliver (notifier_webhook_t *self, zsock_t *pipe)
{
    assert (self);
    int claimed = s_claim (self);
    if (claimed == -1)
        return -1;
    //  libcurl ends every POST within timeout_ms; the loop's own bound is slack.
    int64_t deadline = zclock_mono () + self->timeout_ms + 5000;
    while (notifier_http_active (self->http) > 0 && zclock_mono () < deadline) {
        if (s_read_commands (self, pipe) && self->terminated)
            break;
        notifier_http_wait (self->http, pipe ? zsock_fd (pipe) : -1, 100);
        s_collect (self);
    }
    s_abort_all (self);
    return claimed;
}

void
notifier_webhook_actor (zsock_t *pipe, void *args)
{
    notifier_webhook_t *self = notifier_webhook_new ((notifier_webhook_settings_t *)args);
    zsock_signal (pipe, 0);
    int fd = zsock_fd (pipe);
    //  Look once at start: work may be left from a previous run.
    bool claim = true;
    int64_t tick = zclock_mono () + TICK_MS;
    while (!self->terminated) {
        //  Reading the pipe's events re-arms its fd, so nothing sent after
        //  this check goes unnoticed by the wait below.
        if (s_read_commands (self, pipe))
            claim = true;
        if (self->terminated)
            break;
        if (zclock_mono () >= tick) {
            claim = true;
            tick = zclock_mono () + TICK_MS;
        }
        //  What a claim leaves due waits for a free slot (or a user's
        //  share), and a delivery that ends asks for the next claim.
        if (claim) {
            s_claim (self);
            claim = false;
        }
        int64_t wait = tick - zclock_mono ();
        notifier_http_wait (self->http, fd, wait > 0 ? (int)wait : 0);
        //  A slot came free: someone waiting may take it.
        if (s_collect (self) > 0)
            claim = true;
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

//  Adds a webhook of user to url; returns its id (caller frees).
static char *
s_test_webhook (PGconn *db, const char *user, const char *url, const char *secret)
{
    char *webhook = notifier_test_db_value (
        db, "INSERT INTO webhooks (user_id, url, secret) VALUES ($1::bigint, $2, $3) RETURNING id",
        user, url, secret);
    assert (webhook);
    return webhook;
}

//  Waits (bounded by ms) until sql with p1 counts at least want; the count.
static int64_t
s_test_wait_count (PGconn *db, const char *sql, const char *p1, int64_t want, int ms)
{
    int64_t deadline = zclock_mono () + ms;
    int64_t count;
    while ((count = notifier_test_db_int (db, sql, p1, NULL, NULL)) < want &&
           zclock_mono () < deadline)
        zclock_sleep (20);
    return count;
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
    //  The receivers listen on loopback, which the default refuses: the
    //  test allows it as an operator would with webhook_allow_cidrs.
    proto_address_t *loopback = proto_address_new (false, "127.0.0.0/8");
    proto_address_t *strict = proto_address_new (false, NULL);
    assert (loopback && strict);

    //  A receiver that fails once with 500, then answers 200.
    int statuses[] = {500, 200};
    notifier_receiver_t *receiver = notifier_receiver_new (statuses, 2);
    assert (receiver);
    char *url =
        zsys_sprintf ("http://127.0.0.1:%d/hooks/phantom", notifier_receiver_port (receiver));
    char *webhook = s_test_webhook (db, user, url, secret);
    char *key = zsys_sprintf ("webhook-test-%s", user);
    char *notification = s_test_notification (db, user, key);

    notifier_webhook_settings_t settings = {.conninfo = notifier_test_db_conninfo (),
                                            .batch = 64,
                                            .per_user = 8,
                                            .timeout_ms = 2000,
                                            .attempts = 8,
                                            .backoff_ms = 300,
                                            .policy = loopback,
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
    //  without retries; a URL libcurl will not take fails for good without
    //  a connection; each shows its category.
    int gone[] = {404};
    receiver = notifier_receiver_new (gone, 1);
    char *url_gone = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    PQclear (PQexecParams (db, "UPDATE webhooks SET url = $2 WHERE id = $1::bigint", 2, NULL,
                           (const char *[]){webhook, url_gone}, NULL, NULL, 0));
    char *bad_url = s_test_webhook (db, user, "http://127.0.0.1:99999/h", "x");
    key = zsys_sprintf ("webhook-test-%s-2", user);
    notification = s_test_notification (db, user, key);
    zactor_t *actor = zactor_new (notifier_webhook_actor, &settings);
    assert (actor);
    zstr_send (actor, "WAKE");
    const char *final_sql = "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w"
                            " ON w.id = d.webhook_id WHERE w.user_id = $1::bigint"
                            " AND d.status = 'failed' AND d.attempts = 1";
    assert (s_test_wait_count (db, final_sql, user, 2, 5000) == 2);
    assert (notifier_receiver_count (receiver) == 1);
    const char *error_sql = "SELECT last_error FROM webhook_deliveries"
                            " WHERE webhook_id = $1::bigint ORDER BY id DESC LIMIT 1";
    state = notifier_test_db_value (db, error_sql, bad_url, NULL, NULL);
    assert (state && streq (state, "bad url"));
    free (state);
    state = notifier_test_db_value (db, error_sql, webhook, NULL, NULL);
    assert (state && streq (state, "HTTP 404"));
    free (state);
    zactor_destroy (&actor);
    notifier_receiver_destroy (&receiver);
    free (notification);
    zstr_free (&key);

    //  An address stored before the check existed (or allowed then): under
    //  the default policy nothing connects, and the user learns only that
    //  the address is not allowed, at once and for good.
    int listening[] = {200};
    receiver = notifier_receiver_new (listening, 1);
    char *inside = zsys_sprintf ("http://127.0.0.1:%d/", notifier_receiver_port (receiver));
    char *old_row = s_test_webhook (db, user, inside, "x");
    PQclear (PQexecParams (db, "UPDATE webhooks SET enabled = false WHERE id IN ($1, $2)", 2, NULL,
                           (const char *[]){webhook, bad_url}, NULL, NULL, 0));
    key = zsys_sprintf ("webhook-test-%s-3", user);
    notification = s_test_notification (db, user, key);
    notifier_webhook_settings_t strict_settings = settings;
    strict_settings.policy = strict;
    self = notifier_webhook_new (&strict_settings);
    notifier_webhook_deliver (self, NULL);
    state = notifier_test_db_value (db, delivery_sql, old_row, NULL, NULL);
    assert (state && streq (state, "failed 1 address not allowed"));
    free (state);
    zclock_sleep (100);
    assert (notifier_receiver_connections (receiver) == 0);
    notifier_webhook_destroy (&self);
    notifier_receiver_destroy (&receiver);
    free (notification);
    zstr_free (&key);

    //  One user's slow receivers delay nobody else: user A's ten webhooks
    //  answer a byte a second, and hold only A's share of the slots; user
    //  B's webhook is delivered within a second of B's event all the same.
    int trickle[] = {NOTIFIER_RECEIVER_TRICKLE};
    notifier_receiver_t *slow = notifier_receiver_new (trickle, 1);
    int quick_status[] = {204};
    notifier_receiver_t *quick = notifier_receiver_new (quick_status, 1);
    assert (slow && quick);
    char *slow_url = zsys_sprintf ("http://127.0.0.1:%d/slow", notifier_receiver_port (slow));
    char *quick_url = zsys_sprintf ("http://127.0.0.1:%d/quick", notifier_receiver_port (quick));
    int64_t other_id = notifier_test_db_user (db, 0.30, "EUR");
    char other[24];
    snprintf (other, sizeof other, "%" PRId64, other_id);
    PQclear (PQexecParams (db, "UPDATE webhooks SET enabled = false WHERE user_id = $1::bigint", 1,
                           NULL, (const char *[]){user}, NULL, NULL, 0));
    for (int index = 0; index < 10; index++)
        free (s_test_webhook (db, user, slow_url, "slow"));
    char *quick_hook = s_test_webhook (db, other, quick_url, "quick");
    notifier_webhook_settings_t shared = settings;
    shared.batch = 8;
    shared.per_user = 3;
    shared.timeout_ms = 5000;
    actor = zactor_new (notifier_webhook_actor, &shared);
    key = zsys_sprintf ("webhook-test-%s-slow", user);
    notification = s_test_notification (db, user, key);
    zstr_send (actor, "WAKE");
    deadline = zclock_mono () + 3000;
    while (notifier_receiver_connections (slow) < 3 && zclock_mono () < deadline)
        zclock_sleep (20);
    assert (notifier_receiver_connections (slow) == 3);
    zstr_free (&key);
    free (notification);
    key = zsys_sprintf ("webhook-test-%s-quick", other);
    int64_t event = zclock_mono ();
    notification = s_test_notification (db, other, key);
    zstr_send (actor, "WAKE");
    deadline = event + 3000;
    while (notifier_receiver_count (quick) < 1 && zclock_mono () < deadline)
        zclock_sleep (5);
    int64_t took = zclock_mono () - event;
    if (verbose)
        zsys_debug ("notifier_webhook - the other user's webhook: %d ms", (int)took);
    assert (notifier_receiver_count (quick) == 1);
    assert (took < 1000);
    //  And A still holds no more than A's share.
    assert (notifier_receiver_connections (slow) == 3);
    assert (s_test_wait_count (db,
                               "SELECT count(*) FROM webhook_deliveries"
                               " WHERE webhook_id = $1::bigint AND status = 'delivered'",
                               quick_hook, 1, 2000) == 1);
    //  $TERM hands A's unfinished deliveries back, due at once.
    zactor_destroy (&actor);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM webhook_deliveries d JOIN webhooks w"
                                  " ON w.id = d.webhook_id WHERE w.user_id = $1::bigint"
                                  " AND d.status = 'pending' AND d.attempts = 0"
                                  " AND d.next_attempt_at <= now ()",
                                  user, NULL, NULL) == 10);
    notifier_receiver_destroy (&slow);
    notifier_receiver_destroy (&quick);
    notifier_test_db_drop_user (db, other_id);
    free (quick_hook);
    zstr_free (&slow_url);
    zstr_free (&quick_url);

    //  A database that is not there: -1, no crash.
    notifier_webhook_settings_t nowhere = settings;
    nowhere.conninfo = "host=/nonexistent port=1 dbname=x";
    self = notifier_webhook_new (&nowhere);
    assert (notifier_webhook_deliver (self, NULL) == -1);
    notifier_webhook_destroy (&self);

    notifier_test_db_drop_user (db, user_id);
    free (notification);
    free (bad_url);
    free (old_row);
    free (webhook);
    zstr_free (&key);
    zstr_free (&url);
    zstr_free (&url_gone);
    zstr_free (&inside);
    proto_address_destroy (&loopback);
    proto_address_destroy (&strict);
    PQfinish (db);
    printf ("OK\n");
}
