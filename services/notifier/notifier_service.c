/*  =========================================================================
    notifier_service - SUB to every detector's events, write notifications,
    run the webhook delivery loop beside it

    The SUB socket is one socket connected to every partition's PUB: ZeroMQ
    fair-queues between them, and one socket is one thing to poll. PUB/SUB
    may drop under load (RCVHWM); that is accepted for notifications, which
    are about episodes the store has recorded durably anyway.
    =========================================================================
*/
#include "notifier_service.h"
#include "proto_curve.h"
#include "proto_main.h"
#include "notifier_digest.h"
#include "notifier_http.h"
#include "notifier_test_db.h"
#include "notifier_test_receiver.h"
#include "notifier_webhook.h"

#include <czmq.h>
#include <inttypes.h>
#include <sodium.h>

#define DRAIN_MAX 1000        //  messages handled per poll, so one call stays bounded
#define WARN_FIRST 10         //  malformed messages logged one by one, then 1 in 1000
#define DIGEST_EVERY_MS 60000 //  digest checks at most once a minute

struct _notifier_service_t {
    zsock_t *events;           //  SUB to every detector partition
    notifier_writer_t *writer; //  events -> notifications
    notifier_digest_t *digest; //  the daily digest per user
    int64_t digest_due;        //  zclock_mono () of the next digest check
    zactor_t *webhooks;        //  delivery loop, own thread and connection
    proto_address_t *policy;   //  addresses webhooks may reach, read by the actor
    char *conninfo;            //  database, kept alive for the actor's start
    uint64_t received;         //  messages received
    uint64_t malformed;        //  of them, dropped as malformed
};

//  Connects the SUB socket to every partition of every listed endpoint.
static int
s_connect_events (notifier_service_t *self, const char *endpoints, int64_t partitions)
{
    char *list = strdup (endpoints);
    assert (list);
    int rc = 0;
    char *saved = NULL;
    for (char *endpoint = strtok_r (list, ", ", &saved); endpoint && rc == 0;
         endpoint = strtok_r (NULL, ", ", &saved)) {
        for (int partition = 0; partition < partitions && rc == 0; partition++) {
            char *address = proto_config_endpoint_offset (endpoint, partition);
            if (!address || zsock_connect (self->events, "%s", address)) {
                zsys_error ("notifier events - bad event_endpoint %s (partition %d)", endpoint,
                            partition);
                rc = -1;
            } else
                zsys_info ("notifier events - connected to %s", address);
            zstr_free (&address);
        }
    }
    free (list);
    return rc;
}

notifier_service_t *
notifier_service_new (proto_config_t *config, bool verbose)
{
    assert (config);
    int64_t partitions = proto_config_int (config, "partitions");
    int64_t cooldown = proto_config_int (config, "notifier_cooldown_seconds");
    int64_t rcvhwm = proto_config_int (config, "notifier_rcvhwm");
    int64_t digest_hour = proto_config_int (config, "notifier_digest_hour");
    proto_address_t *policy = proto_address_new_from_config (config);
    if (!policy)
        return NULL;
    const char *endpoints = proto_config_str (config, "event_endpoint");
    const char *conninfo = proto_config_str (config, "database");
    //  Tests point this at a CA of their own; in use, the system store.
    const char *ca_file = proto_config_str (config, "webhook_ca_file");

    notifier_service_t *self = (notifier_service_t *)zmalloc (sizeof (notifier_service_t));
    assert (self);
    self->policy = policy;
    self->conninfo = strdup (conninfo);
    self->events = zsock_new (ZMQ_SUB);
    assert (self->conninfo && self->events);
    //  A burst bigger than the high-water mark is dropped by ZeroMQ rather
    //  than growing our memory; linger 0 because SUB sends nothing.
    zsock_set_rcvhwm (self->events, (int)rcvhwm);
    zsock_set_linger (self->events, 0);
    //  phantom.* for episodes; status.* for outages (every status change
    //  of every port: rarer than readings by far, and the ones that do not
    //  take a port offline or bring it back cost a decode each).
    zsock_set_subscribe (self->events, "phantom.");
    zsock_set_subscribe (self->events, "status.");
    if (proto_curve_client (self->events, config) ||
        s_connect_events (self, endpoints, partitions)) {
        notifier_service_destroy (&self);
        return NULL;
    }
    self->writer = notifier_writer_new (conninfo, cooldown, verbose);
    self->digest = notifier_digest_new (conninfo, (int)digest_hour, verbose);
    notifier_webhook_settings_t settings = {
        .conninfo = self->conninfo,
        .batch = (int)proto_config_int (config, "notifier_webhook_batch"),
        .per_user = (int)proto_config_int (config, "notifier_webhook_per_user"),
        .timeout_ms = (int)proto_config_int (config, "notifier_webhook_timeout_ms"),
        .attempts = (int)proto_config_int (config, "notifier_webhook_attempts"),
        .backoff_ms = (int)proto_config_int (config, "notifier_webhook_backoff_ms"),
        .ca_file = ca_file,
        .policy = self->policy,
        .verbose = verbose};
    //  The actor copies settings before it signals, so the stack is fine.
    self->webhooks = zactor_new (notifier_webhook_actor, &settings);
    assert (self->writer && self->digest && self->webhooks);
    zsys_info ("notifier - started: %" PRId64 " partitions, cool-down %" PRId64
               " s, digest from %02" PRId64 ":00 local",
               partitions, cooldown, digest_hour);
    return self;
}

void
notifier_service_destroy (notifier_service_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        notifier_service_t *self = *self_p;
        //  The actor hands what is in flight back; the policy outlives it.
        zactor_destroy (&self->webhooks);
        proto_address_destroy (&self->policy);
        notifier_digest_destroy (&self->digest);
        notifier_writer_destroy (&self->writer);
        zsock_destroy (&self->events);
        free (self->conninfo);
        free (self);
        *self_p = NULL;
    }
}

uint64_t
notifier_service_received (notifier_service_t *self)
{
    return self->received;
}

uint64_t
notifier_service_malformed (notifier_service_t *self)
{
    return self->malformed;
}

uint64_t
notifier_service_count (notifier_service_t *self, notifier_writer_result_t result)
{
    return notifier_writer_count (self->writer, result);
}

static void
s_malformed (notifier_service_t *self, const char *why)
{
    self->malformed++;
    if (self->malformed <= WARN_FIRST || self->malformed % 1000 == 0)
        zsys_warning ("notifier events - malformed message dropped (%s), %" PRIu64 " so far", why,
                      self->malformed);
}

//  Receives one message without waiting; returns false if none was there.
static bool
s_receive_one (notifier_service_t *self)
{
    void *handle = zsock_resolve (self->events);
    zmq_msg_t topic, body;
    zmq_msg_init (&topic);
    if (zmq_msg_recv (&topic, handle, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close (&topic);
        return false;
    }
    self->received++;
    int frames = 1;
    bool more = zmq_msg_more (&topic);
    zmq_msg_init (&body);
    if (more) {
        //  The parts of a message arrive together, so these never wait.
        zmq_msg_recv (&body, handle, ZMQ_DONTWAIT);
        frames++;
        more = zmq_msg_more (&body);
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init (&extra);
            zmq_msg_recv (&extra, handle, ZMQ_DONTWAIT);
            more = zmq_msg_more (&extra);
            zmq_msg_close (&extra);
            frames++;
        }
    }
    proto_event_t event;
    char expected[PROTO_TOPIC_MAX + 1];
    if (frames != 2)
        s_malformed (self, "not two frames");
    else if (proto_event_decode (zmq_msg_data (&body), zmq_msg_size (&body), &event) != 0)
        s_malformed (self, "undecodable event");
    else {
        //  The topic is what subscribers filter on; one that disagrees with
        //  the body means a broken publisher.
        proto_event_topic (&event, expected);
        if (zmq_msg_size (&topic) != strlen (expected) ||
            memcmp (zmq_msg_data (&topic), expected, zmq_msg_size (&topic)) != 0)
            s_malformed (self, "topic does not match event");
        else if (notifier_writer_handle (self->writer, &event, zclock_time ()) ==
                 NOTIFIER_WRITER_NOTIFIED)
            //  Deliveries may have been enqueued. Never wait on the actor:
            //  if its pipe is full, a WAKE is already pending.
            zmq_send (zsock_resolve (zactor_sock (self->webhooks)), "WAKE", 4, ZMQ_DONTWAIT);
    }
    zmq_msg_close (&topic);
    zmq_msg_close (&body);
    return true;
}

int
notifier_service_poll (notifier_service_t *self, int timeout_ms)
{
    assert (self);
    if (timeout_ms < 0)
        timeout_ms = 0;
    if (timeout_ms > 1000)
        timeout_ms = 1000;
    zmq_pollitem_t item = {zsock_resolve (self->events), 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll (&item, 1, timeout_ms);
    if (rc == -1)
        return errno == EINTR || proto_main_stopping () ? -1 : 0;
    if (item.revents & ZMQ_POLLIN)
        for (int count = 0; count < DRAIN_MAX && s_receive_one (self); count++)
            ;
    //  The digest check is one statement (bounded by statement_timeout);
    //  a failed one is retried a minute later like any other.
    if (zclock_mono () >= self->digest_due) {
        self->digest_due = zclock_mono () + DIGEST_EVERY_MS;
        if (notifier_digest_check (self->digest, zclock_time ()) > 0)
            zmq_send (zsock_resolve (zactor_sock (self->webhooks)), "WAKE", 4, ZMQ_DONTWAIT);
    }
    return proto_main_stopping () ? -1 : 0;
}

//  --------------------------------------------------------------------------
//  Self test

#define TEST_BASE_PORT 6510 //  partitions at 6510 and 6511 (our test range)

static void
s_test_publish (zsock_t *publisher, const proto_event_t *event)
{
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    assert (proto_event_encode (event, &buffer) == 0);
    char topic[PROTO_TOPIC_MAX + 1];
    proto_event_topic (event, topic);
    void *handle = zsock_resolve (publisher);
    assert (zmq_send (handle, topic, strlen (topic), ZMQ_SNDMORE) >= 0);
    assert (zmq_send (handle, buffer.data, buffer.size, 0) >= 0);
    proto_buffer_release (&buffer);
}

//  Polls the service until it has received target messages (bounded).
static void
s_test_wait_received (notifier_service_t *self, uint64_t target)
{
    int64_t deadline = zclock_mono () + 5000;
    while (notifier_service_received (self) < target && zclock_mono () < deadline)
        notifier_service_poll (self, 100);
    assert (notifier_service_received (self) >= target);
}

void
notifier_service_test (bool verbose)
{
    printf (" * notifier_service: ");
    if (verbose)
        printf ("\n");
    assert (sodium_init () >= 0);
    PGconn *db = notifier_test_db_connect ();
    int64_t user_id = notifier_test_db_user (db, 0.25, "CHF");
    char user[24];
    snprintf (user, sizeof user, "%" PRId64, user_id);
    char *port = notifier_test_db_port (db, user_id, "Coffee machine");
    //  An hour of rolled-up minutes yesterday (UTC: the user's zone), so
    //  the user is due a digest (hour 0 below: due at any time of day)
    //  that the first poll writes.
    assert (
        notifier_test_db_int (
            db,
            "WITH m AS (INSERT INTO readings_minute (port_id, minute, min_power, mean_power,"
            "                                        max_power, energy_wh, samples,"
            "                                        reported_seconds)"
            "           SELECT $1::uuid, m, 5, 5, 5, 5.0 / 60, 12, 60"
            "             FROM generate_series (date_trunc ('day', now () AT TIME ZONE 'UTC')"
            "                                   AT TIME ZONE 'UTC' - interval '12 hours',"
            "                                   date_trunc ('day', now () AT TIME ZONE 'UTC')"
            "                                   AT TIME ZONE 'UTC' - interval '11 hours 1 minute',"
            "                                   interval '1 minute') m RETURNING 1)"
            " SELECT count (*) FROM m",
            port, NULL, NULL) == 60);
    //  And the raw readings of that hour's first minute, read instead
    //  should the rollups' watermark be older than yesterday noon.
    assert (notifier_test_db_int (
                db,
                "WITH r AS (INSERT INTO readings (port_id, ts, voltage, current, power, status)"
                "           SELECT $1::uuid, date_trunc ('day', now () AT TIME ZONE 'UTC')"
                "                            AT TIME ZONE 'UTC' - interval '12 hours' + s,"
                "                  230, 0.02, 5, 1"
                "             FROM (VALUES (interval '0 s'), (interval '60 s')) v (s)"
                "           RETURNING 1)"
                " SELECT count (*) FROM r",
                port, NULL, NULL) == 2);

    //  A webhook whose receiver fails once, then takes it.
    int statuses[] = {500, 200};
    notifier_receiver_t *receiver = notifier_receiver_new (statuses, 2);
    assert (receiver);
    char *url = zsys_sprintf ("http://127.0.0.1:%d/in", notifier_receiver_port (receiver));
    const char *secret = "hook-secret";
    char *webhook = notifier_test_db_value (
        db, "INSERT INTO webhooks (user_id, url, secret) VALUES ($1::bigint, $2, $3) RETURNING id",
        user, url, secret);
    assert (webhook);

    //  Two detector partitions, bound like detectors do.
    zsock_t *publishers[2];
    for (int partition = 0; partition < 2; partition++) {
        publishers[partition] = zsock_new (ZMQ_PUB);
        assert (publishers[partition]);
        zsock_set_sndhwm (publishers[partition], 1000);
        zsock_set_linger (publishers[partition], 0);
        int bound =
            zsock_bind (publishers[partition], "tcp://127.0.0.1:%d", TEST_BASE_PORT + partition);
        assert (bound == TEST_BASE_PORT + partition);
    }
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", TEST_BASE_PORT);
    setenv ("PHANTOM_DATABASE", notifier_test_db_conninfo (), 1);
    setenv ("PHANTOM_EVENT_ENDPOINT", endpoint, 1);
    setenv ("PHANTOM_PARTITIONS", "2", 1);
    setenv ("PHANTOM_NOTIFIER_COOLDOWN_SECONDS", "600", 1);
    setenv ("PHANTOM_NOTIFIER_WEBHOOK_BACKOFF_MS", "300", 1);
    setenv ("PHANTOM_NOTIFIER_WEBHOOK_TIMEOUT_MS", "2000", 1);
    setenv ("PHANTOM_NOTIFIER_DIGEST_HOUR", "0", 1);
    //  The receiver is on loopback, which webhooks may reach only when allowed.
    setenv ("PHANTOM_WEBHOOK_ALLOW_CIDRS", "127.0.0.0/8", 1);
    proto_config_t *config = proto_config_new (NULL);
    assert (config);
    notifier_service_t *self = notifier_service_new (config, verbose);
    assert (self);
    unsetenv ("PHANTOM_WEBHOOK_ALLOW_CIDRS");

    //  Subscriptions take a moment to reach the publishers: send events of
    //  a port nobody has (dropped by the writer) on both partitions until
    //  each has come through once, then drain the stragglers.
    int64_t t0 = 1700000000000;
    proto_event_t probe = notifier_test_db_event (
        "phantom.start", user_id, "00000000-0000-0000-0000-000000000000", t0, 0, 40, 0);
    for (int partition = 0; partition < 2; partition++) {
        uint64_t before = notifier_service_received (self);
        int64_t deadline = zclock_mono () + 5000;
        while (notifier_service_received (self) == before && zclock_mono () < deadline) {
            s_test_publish (publishers[partition], &probe);
            notifier_service_poll (self, 50);
        }
        assert (notifier_service_received (self) > before);
    }
    for (int round = 0; round < 4; round++)
        notifier_service_poll (self, 50);
    zsock_t *publisher = publishers[proto_partition (port, 2)];
    assert (notifier_service_count (self, NOTIFIER_WRITER_NOTIFIED) == 0);
    //  The first poll wrote today's digest (UTC: the user's zone).
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint"
                                  " AND kind = 'digest'"
                                  " AND dedupe_key = 'digest:' || to_char (now () AT TIME ZONE"
                                  " 'UTC', 'YYYY-MM-DD')",
                                  user, NULL, NULL) == 1);
    const char *phantom_sql = "SELECT count(*) FROM notifications WHERE user_id = $1::bigint"
                              " AND kind LIKE 'phantom.%'";

    //  A status change that is not an outage notifies nobody; the same
    //  start twice behind it: exactly one notification.
    uint64_t received = notifier_service_received (self);
    proto_event_t status =
        notifier_test_db_status (user_id, port, t0, PROTO_STATUS_IDLE, PROTO_STATUS_ACTIVE);
    s_test_publish (publisher, &status);
    proto_event_t start = notifier_test_db_event ("phantom.start", user_id, port, t0, 0, 6.5, 0);
    s_test_publish (publisher, &start);
    s_test_publish (publisher, &start);
    s_test_wait_received (self, received + 3);
    notifier_service_poll (self, 100);
    assert (notifier_service_received (self) == received + 3);
    assert (notifier_service_count (self, NOTIFIER_WRITER_IGNORED) == 1);
    char *key = zsys_sprintf ("episode:%s:%" PRId64 ":start", port, t0);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint"
                                  " AND dedupe_key = $2",
                                  user, key, NULL) == 1);
    assert (notifier_test_db_int (db, phantom_sql, user, NULL, NULL) == 1);
    char *title = notifier_test_db_value (
        db, "SELECT title FROM notifications WHERE dedupe_key = $1", key, NULL, NULL);
    assert (streq (title, "Phantom load on Coffee machine"));
    free (title);
    zstr_free (&key);
    assert (notifier_service_count (self, NOTIFIER_WRITER_NOTIFIED) == 1);
    assert (notifier_service_count (self, NOTIFIER_WRITER_DUPLICATE) == 1);

    //  The end: 45 min, 4.8 Wh at 0.25 CHF/kWh = 0.0012 CHF, under a centime.
    int64_t t1 = t0 + 45 * 60 * 1000;
    received = notifier_service_received (self);
    proto_event_t end = notifier_test_db_event ("phantom.end", user_id, port, t0, t1, 6.4, 4.8);
    s_test_publish (publisher, &end);
    s_test_wait_received (self, received + 1);
    key = zsys_sprintf ("episode:%s:%" PRId64 ":end", port, t0);
    char *message = notifier_test_db_value (
        db, "SELECT message FROM notifications WHERE dedupe_key = $1", key, NULL, NULL);
    if (verbose)
        zsys_debug ("notifier_service - end: %s", message);
    assert (message);
    assert (streq (message, "Coffee machine drew 6.4 W on average for 45 min while idle (since"
                            " Nov 14, 2023, 10:13 PM): 4.8 Wh wasted, costing < CHF\xc2\xa0"
                            "0.01."));
    free (message);
    zstr_free (&key);

    //  A new episode 2 minutes later is inside the cool-down.
    received = notifier_service_received (self);
    proto_event_t flap =
        notifier_test_db_event ("phantom.start", user_id, port, t1 + 120000, 0, 6, 0);
    s_test_publish (publisher, &flap);
    s_test_wait_received (self, received + 1);
    assert (notifier_service_count (self, NOTIFIER_WRITER_COOLDOWN) == 1);
    assert (notifier_test_db_int (db, phantom_sql, user, NULL, NULL) == 2);

    //  The sensor stops after the episode, and comes back an hour later:
    //  told, and told again, once each through the status.* topic.
    received = notifier_service_received (self);
    proto_event_t offline = notifier_test_db_status (user_id, port, t1 + 180000,
                                                     PROTO_STATUS_OFFLINE, PROTO_STATUS_ACTIVE);
    proto_event_t online = notifier_test_db_status (user_id, port, t1 + 3780000,
                                                    PROTO_STATUS_ACTIVE, PROTO_STATUS_OFFLINE);
    s_test_publish (publisher, &offline);
    s_test_publish (publisher, &offline);
    s_test_publish (publisher, &online);
    s_test_wait_received (self, received + 3);
    assert (notifier_test_db_int (db,
                                  "SELECT count(*) FROM notifications WHERE user_id = $1::bigint"
                                  " AND kind LIKE 'sensor.%'",
                                  user, NULL, NULL) == 2);
    message = notifier_test_db_value (db,
                                      "SELECT string_agg (title, '|' ORDER BY id) FROM"
                                      " notifications WHERE user_id = $1::bigint"
                                      " AND kind LIKE 'sensor.%'",
                                      user, NULL, NULL);
    assert (message &&
            streq (message, "Coffee machine sensor offline|Coffee machine sensor back online"));
    free (message);
    assert (notifier_service_count (self, NOTIFIER_WRITER_NOTIFIED) == 4);

    //  Malformed messages: garbage body, one frame, three frames, a topic
    //  that lies about the body. Each is counted; none stops the service.
    received = notifier_service_received (self);
    void *handle = zsock_resolve (publisher);
    zmq_send (handle, "phantom.start.x", 15, ZMQ_SNDMORE);
    zmq_send (handle, "\x85\xa1v\x01\xff\xff", 6, 0);
    zmq_send (handle, "phantom.start.y", 15, 0);
    zmq_send (handle, "phantom.z", 9, ZMQ_SNDMORE);
    zmq_send (handle, "a", 1, ZMQ_SNDMORE);
    zmq_send (handle, "b", 1, 0);
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    assert (proto_event_encode (&start, &buffer) == 0);
    zmq_send (handle, "phantom.end.00000000-0000-0000-0000-000000000000", 48, ZMQ_SNDMORE);
    zmq_send (handle, buffer.data, buffer.size, 0);
    proto_buffer_release (&buffer);
    //  And a good one behind them, which must still be handled.
    proto_event_t later =
        notifier_test_db_event ("phantom.start", user_id, port, t1 + 3600000, 0, 5, 0);
    s_test_publish (publisher, &later);
    s_test_wait_received (self, received + 5);
    assert (notifier_service_malformed (self) == 4);
    assert (notifier_service_count (self, NOTIFIER_WRITER_NOTIFIED) == 5);
    assert (notifier_test_db_int (db, phantom_sql, user, NULL, NULL) == 3);

    //  Each of the six notifications (the digest, three phantom ones and
    //  two about the sensor) reached the webhook once, signed, one after a
    //  failed attempt (500, then retried).
    const char *delivered_sql = "SELECT count(*) FROM webhook_deliveries"
                                " WHERE webhook_id = $1::bigint AND status = 'delivered'";
    int64_t deadline = zclock_mono () + 8000;
    while (notifier_test_db_int (db, delivered_sql, webhook, NULL, NULL) < 6 &&
           zclock_mono () < deadline) {
        notifier_service_poll (self, 100);
    }
    assert (notifier_test_db_int (db, delivered_sql, webhook, NULL, NULL) == 6);
    assert (notifier_test_db_int (db,
                                  "SELECT sum(attempts) FROM webhook_deliveries"
                                  " WHERE webhook_id = $1::bigint",
                                  webhook, NULL, NULL) == 7);
    assert (notifier_receiver_count (receiver) == 7);
    int digests = 0;
    for (size_t index = 0; index < 7; index++) {
        assert (notifier_receiver_signed (receiver, index, secret));
        char *body = notifier_receiver_body (receiver, index);
        if (strstr (body, "\"kind\":\"digest\""))
            digests++;
        else
            assert (strstr (body, "\"kind\":\"phantom.") || strstr (body, "\"kind\":\"sensor."));
        free (body);
    }
    //  The digest: delivered once, or twice if it drew the 500.
    assert (digests >= 1 && digests <= 2);

    notifier_service_destroy (&self);
    proto_config_destroy (&config);
    for (int partition = 0; partition < 2; partition++)
        zsock_destroy (&publishers[partition]);
    notifier_receiver_destroy (&receiver);
    notifier_test_db_drop_user (db, user_id);
    free (webhook);
    zstr_free (&url);
    free (port);
    PQfinish (db);
    printf ("OK\n");
}
