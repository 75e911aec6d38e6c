/*  =========================================================================
    gateway_live - live updates for the dashboard (Server-Sent Events)

    Gateway live thread: SUB to every detector's event PUB (event_endpoint
    + i, i < partitions; topics status., phantom. and reading.), LISTEN on PostgreSQL
    channel phantom_notification with its own connection. Events are fanned
    out under one lock to the streams of the event's user; each stream is a
    civetweb worker thread waiting on its own condition variable.

    Bounds: a stream queues at most S_QUEUE_MAX events (a slow browser
    loses the oldest and gets "resync"); at most stream_max streams in all
    (503 beyond), so streams cannot take every civetweb worker, and at most
    stream_max_per_user per user and stream_max_per_address per client
    address (429 beyond), so one client, signed in to as many accounts as
    it likes, cannot take the streams of everyone else; a stream quiet for
    15 s writes a "ping" event,
    which is how it notices a client that has gone, and how the client
    (EventSource hides comments) tells a quiet stream from a dead one.
    =========================================================================
*/
#include "gateway_live.h"
#include "gateway_listener.h"
#include "proto_curve.h"
#include "proto_pg.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define S_QUEUE_MAX 256      //  events waiting per stream
#define S_KEEPALIVE_MS 15000 //  "ping" event when nothing happened
#define S_POLL_MS 200        //  live thread's poll bound (stop latency)
#define S_RECONNECT_MS 2000  //  PostgreSQL reconnect back-off
#define S_SUB_HWM 10000      //  events buffered from the detectors
#define S_BATCH_MAX 1000     //  events handled per poll, then check stop
#define S_STOP_WAIT_MS 3000  //  longest wait for streams to leave
#define S_REFUSED_RETRY_S 10 //  Retry-After of a refused stream

//  One open stream.
typedef struct _s_stream_t {
    int64_t user;              //  whose events it gets
    uint8_t address[16];       //  client address (IPv4 mapped into IPv6)
    char *events[S_QUEUE_MAX]; //  ring of formatted events, owned
    size_t head;               //  oldest event
    size_t count;              //  events queued
    bool resync;               //  events were dropped: tell the client
    pthread_cond_t wake;       //  signalled on a new event or stop
    struct _s_stream_t *next;  //  next open stream
} s_stream_t;

struct _gateway_live_t {
    char *conninfo;                //  PostgreSQL for LISTEN
    char **endpoints;              //  detector event PUBs to connect
    int endpoint_count;            //  how many
    size_t stream_max;             //  streams in all
    size_t stream_max_per_user;    //  streams of one user
    size_t stream_max_per_address; //  streams of one client address
    pthread_mutex_t lock;          //  guards streams and their queues
    s_stream_t *streams;           //  open streams
    size_t stream_count;           //  how many
    atomic_size_t active;          //  the same, read without the lock on the hot path
    atomic_bool stopping;          //  streams end, new ones are refused
    atomic_bool listening;         //  LISTEN is in effect (tests wait for it)
    atomic_uint_fast64_t dropped;  //  events dropped on full queues
    pthread_t thread;              //  the live thread
    bool thread_started;           //  thread needs joining
};

//  ==========================================================================
//  Fan-out

//  Appends event (taken) to stream's ring, dropping the oldest when full.
//  Call with the lock held.
static void
s_stream_push (gateway_live_t *self, s_stream_t *stream, char *event)
{
    if (stream->count == S_QUEUE_MAX) {
        free (stream->events[stream->head]);
        stream->head = (stream->head + 1) % S_QUEUE_MAX;
        stream->count--;
        stream->resync = true;
        atomic_fetch_add (&self->dropped, 1);
    }
    stream->events[(stream->head + stream->count) % S_QUEUE_MAX] = event;
    stream->count++;
    pthread_cond_signal (&stream->wake);
}

//  Queues "event: name / data: data" on every stream of user (user 0: all
//  streams); takes data.
static void
s_publish (gateway_live_t *self, int64_t user, const char *name, json_t *data)
{
    if (!data)
        return;
    char *json = json_dumps (data, JSON_COMPACT);
    json_decref (data);
    char *event = json ? zsys_sprintf ("event: %s\ndata: %s\n\n", name, json) : NULL;
    free (json);
    if (!event)
        return;
    pthread_mutex_lock (&self->lock);
    for (s_stream_t *stream = self->streams; stream; stream = stream->next)
        if (user == 0 || stream->user == user) {
            char *copy = strdup (event);
            if (copy)
                s_stream_push (self, stream, copy);
        }
    pthread_mutex_unlock (&self->lock);
    zstr_free (&event);
}

//  true when user has a stream open; cheap when nobody has.
static bool
s_watched (gateway_live_t *self, int64_t user)
{
    if (atomic_load (&self->active) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock (&self->lock);
    for (s_stream_t *stream = self->streams; stream && !found; stream = stream->next)
        found = stream->user == user;
    pthread_mutex_unlock (&self->lock);
    return found;
}

static json_t *
s_time (int64_t ms)
{
    char text[32];
    gateway_time_format (ms, text);
    return json_string (text);
}

void
gateway_live_reading (gateway_live_t *self, int64_t user, const char *port, int64_t ts,
                      double power, int status)
{
    if (!self || !port || !s_watched (self, user))
        return;
    s_publish (self, user, "reading",
               json_pack ("{s:s, s:o, s:f, s:s}", "portId", port, "ts", s_time (ts), "power", power,
                          "status", proto_status_name (status)));
}

//  A detector event: status.<port> or phantom.start/end.<port>.
static void
s_event (gateway_live_t *self, const proto_event_t *event)
{
    if (!s_watched (self, event->user))
        return;
    if (streq (event->kind, "status"))
        s_publish (self, event->user, "status",
                   json_pack ("{s:s, s:s, s:s, s:o}", "portId", event->port, "status",
                              proto_status_name (event->status), "previous",
                              proto_status_name (event->previous), "ts", s_time (event->ts)));
    else if (streq (event->kind, "reading"))
        //  A reading of a sender without a live channel (phantom-mqtt),
        //  as the sensor path publishes its own.
        gateway_live_reading (self, event->user, event->port, event->ts, event->watts,
                              event->status);
    else if (strncmp (event->kind, "phantom.", 8) == 0) {
        json_t *episode = json_null ();
        if (event->has_episode)
            episode = json_pack (
                "{s:o, s:o, s:f, s:f, s:f, s:i}", "start", s_time (event->episode.start), "end",
                event->episode.end ? s_time (event->episode.end) : json_null (), "meanWatts",
                event->episode.mean_watts, "peakWatts", event->episode.peak_watts, "energyWh",
                event->episode.energy_wh, "samples", (int)event->episode.samples);
        s_publish (self, event->user, "phantom",
                   json_pack ("{s:s, s:s, s:o, s:f, s:o}", "portId", event->port, "kind",
                              event->kind + 8, "ts", s_time (event->ts), "watts", event->watts,
                              "episode", episode));
    }
}

//  ==========================================================================
//  The live thread

//  A LISTENing connection, or NULL.
static PGconn *
s_listen_connect (gateway_live_t *self)
{
    //  The unread count below runs on this thread: bound it.
    return gateway_listener_connect (self->conninfo, "phantom-gateway-live", 2000,
                                     "phantom_notification", "gateway live");
}

//  Payload "<user_id>:<notification_id>" from the notifier.
static void
s_notification (void *arg, PGconn *pg, const char *payload)
{
    gateway_live_t *self = (gateway_live_t *)arg;
    long long user, id;
    char rest;
    if (sscanf (payload, "%lld:%lld%c", &user, &id, &rest) != 2 || user <= 0 || id <= 0) {
        zsys_warning ("gateway live - malformed notification payload");
        return;
    }
    if (!s_watched (self, user))
        return;
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%lld", user);
    const char *values[] = {user_text};
    PGresult *result = PQexecParams (
        pg, "SELECT count (*) FROM notifications WHERE user_id = $1::bigint AND read_at IS NULL", 1,
        NULL, values, NULL, NULL, 0);
    json_t *unread = PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1
                         ? json_integer (strtoll (PQgetvalue (result, 0, 0), NULL, 10))
                         : json_null ();
    PQclear (result);
    s_publish (self, user, "notification",
               json_pack ("{s:I, s:o}", "id", (json_int_t)id, "unread", unread));
}

static void *
s_thread (void *argument)
{
    gateway_live_t *self = (gateway_live_t *)argument;
    zsock_t *sub = zsock_new (ZMQ_SUB);
    assert (sub);
    zsock_set_rcvhwm (sub, S_SUB_HWM);
    zsock_set_linger (sub, 0);   //  nothing to deliver on close
    zsock_set_rcvtimeo (sub, 0); //  reads below only after a poll said so
    zsock_set_subscribe (sub, "status.");
    zsock_set_subscribe (sub, "phantom.");
    zsock_set_subscribe (sub, "reading.");
    if (proto_curve_client (sub, NULL) != 0)
        zsys_error ("gateway live - no CURVE client keys: live events will not arrive");
    for (int index = 0; index < self->endpoint_count; index++)
        if (zsock_connect (sub, "%s", self->endpoints[index]) != 0)
            zsys_warning ("gateway live - cannot connect to %s", self->endpoints[index]);

    PGconn *pg = NULL;
    int64_t reconnect_at = 0;
    bool connected_before = false;
    while (!atomic_load (&self->stopping)) {
        if (!pg && zclock_mono () >= reconnect_at) {
            pg = s_listen_connect (self);
            if (pg) {
                //  Notifications sent while we were away are lost: clients reload.
                if (connected_before)
                    s_publish (self, 0, "resync", json_object ());
                connected_before = true;
                atomic_store (&self->listening, true);
            } else
                reconnect_at = zclock_mono () + S_RECONNECT_MS;
        }
        zmq_pollitem_t items[2] = {{zsock_resolve (sub), 0, ZMQ_POLLIN, 0},
                                   {NULL, pg ? PQsocket (pg) : -1, ZMQ_POLLIN, 0}};
        int rc = zmq_poll (items, pg ? 2 : 1, S_POLL_MS);
        if (rc == -1 && zmq_errno () != EINTR)
            break;
        if (items[0].revents & ZMQ_POLLIN)
            for (int count = 0; count < S_BATCH_MAX; count++) {
                zmsg_t *message = zmsg_recv (sub);
                if (!message)
                    break;
                zframe_t *topic = zmsg_first (message);
                zframe_t *body = zmsg_next (message);
                proto_event_t event;
                if (topic && body && zmsg_size (message) == 2 &&
                    proto_event_decode (zframe_data (body), zframe_size (body), &event) == 0)
                    s_event (self, &event);
                else
                    zsys_warning ("gateway live - malformed event dropped");
                zmsg_destroy (&message);
            }
        if (pg && (items[1].revents & ZMQ_POLLIN) &&
            gateway_listener_read (&pg, s_notification, self, "gateway live") < 0) {
            atomic_store (&self->listening, false);
            reconnect_at = zclock_mono () + S_RECONNECT_MS;
        }
    }
    PQfinish (pg);
    zsock_destroy (&sub);
    return NULL;
}

//  ==========================================================================
//  Streams

//  The client address of text into 16 bytes, IPv4 mapped into IPv6 so
//  that both spellings of one IPv4 client are one client; all zero (one
//  shared client) for text that is no address, which civetweb never gives.
static void
s_address (const char *text, uint8_t address[16])
{
    if (!gateway_http_client_address_parse (text, address))
        memset (address, 0, 16);
}

//  Writes all of text; false when the client is gone.
static bool
s_write (struct mg_connection *conn, const char *text)
{
    size_t length = strlen (text);
    return mg_write (conn, text, length) == (int)length;
}

int
gateway_live_serve (gateway_live_t *self, struct mg_connection *conn, int64_t user)
{
    assert (self);
    s_stream_t *stream = (s_stream_t *)calloc (1, sizeof (s_stream_t));
    if (!stream)
        return gateway_http_send_error (conn, 500, "internal_error", "Out of memory", 0);
    stream->user = user;
    s_address (gateway_http_client_ip (conn), stream->address);
    pthread_condattr_t attributes;
    pthread_condattr_init (&attributes);
    pthread_condattr_setclock (&attributes, CLOCK_MONOTONIC);
    pthread_cond_init (&stream->wake, &attributes);
    pthread_condattr_destroy (&attributes);

    pthread_mutex_lock (&self->lock);
    size_t of_user = 0, of_address = 0;
    for (s_stream_t *other = self->streams; other; other = other->next) {
        of_user += other->user == user;
        of_address += memcmp (other->address, stream->address, 16) == 0;
    }
    //  The client's own limits first: they are its to fix (429), the
    //  total is the server's (503).
    const char *refused = NULL;
    int refused_status = 429;
    if (of_user >= self->stream_max_per_user)
        refused = "Too many live streams open for this account";
    else if (of_address >= self->stream_max_per_address)
        refused = "Too many live streams open from this address";
    else if (atomic_load (&self->stopping) || self->stream_count >= self->stream_max) {
        refused = "Too many live streams open, retry later";
        refused_status = 503;
    }
    if (!refused) {
        stream->next = self->streams;
        self->streams = stream;
        self->stream_count++;
        atomic_fetch_add (&self->active, 1);
    }
    pthread_mutex_unlock (&self->lock);
    if (refused) {
        pthread_cond_destroy (&stream->wake);
        free (stream);
        return gateway_http_send_error (conn, refused_status, "too_many_streams", refused,
                                        S_REFUSED_RETRY_S);
    }

    //  No Content-Length: the stream ends when the connection closes.
    mg_response_header_start (conn, 200);
    mg_response_header_add (conn, "Content-Type", "text/event-stream", -1);
    mg_response_header_add (conn, "Cache-Control", "no-store", -1);
    mg_response_header_add (conn, "X-Accel-Buffering", "no", -1);
    mg_response_header_add (conn, "Connection", "close", -1);
    gateway_http_cors_headers_add (conn);
    mg_response_header_send (conn);
    //  "ready" tells the client (and the tests) that events now reach it.
    bool alive = s_write (conn, "retry: 3000\n\nevent: ready\ndata: {}\n\n");

    char *batch[S_QUEUE_MAX + 1];
    while (alive) {
        struct timespec deadline;
        clock_gettime (CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += S_KEEPALIVE_MS / 1000;
        size_t count = 0;
        pthread_mutex_lock (&self->lock);
        while (!atomic_load (&self->stopping) && stream->count == 0 && !stream->resync)
            if (pthread_cond_timedwait (&stream->wake, &self->lock, &deadline) == ETIMEDOUT)
                break;
        bool stopping = atomic_load (&self->stopping);
        if (stream->resync) {
            batch[count++] = strdup ("event: resync\ndata: {}\n\n");
            stream->resync = false;
        }
        while (stream->count) {
            batch[count++] = stream->events[stream->head];
            stream->head = (stream->head + 1) % S_QUEUE_MAX;
            stream->count--;
        }
        pthread_mutex_unlock (&self->lock);
        if (stopping) {
            for (size_t index = 0; index < count; index++)
                free (batch[index]);
            break;
        }
        if (count == 0)
            alive = s_write (conn, "event: ping\ndata: {}\n\n");
        for (size_t index = 0; index < count; index++) {
            if (alive && batch[index])
                alive = s_write (conn, batch[index]);
            free (batch[index]);
        }
    }

    pthread_mutex_lock (&self->lock);
    for (s_stream_t **link = &self->streams; *link; link = &(*link)->next)
        if (*link == stream) {
            *link = stream->next;
            break;
        }
    self->stream_count--;
    atomic_fetch_sub (&self->active, 1);
    while (stream->count) {
        free (stream->events[stream->head]);
        stream->head = (stream->head + 1) % S_QUEUE_MAX;
        stream->count--;
    }
    pthread_mutex_unlock (&self->lock);
    pthread_cond_destroy (&stream->wake);
    free (stream);
    return 200;
}

size_t
gateway_live_streams (gateway_live_t *self)
{
    return self ? atomic_load (&self->active) : 0;
}

//  ==========================================================================
//  Life cycle

gateway_live_t *
gateway_live_new (proto_config_t *config)
{
    assert (config);
    int partitions = (int)proto_config_int (config, "partitions");
    int http_threads = (int)proto_config_int (config, "http_threads");
    int stream_max = (int)proto_config_int (config, "stream_max");
    if (stream_max == 0)
        stream_max = http_threads / 2 > 0 ? http_threads / 2 : 1;
    int per_user = (int)proto_config_int (config, "stream_max_per_user");
    int per_address = (int)proto_config_int (config, "stream_max_per_address");
    const char *endpoint = proto_config_str (config, "event_endpoint");

    gateway_live_t *self = (gateway_live_t *)zmalloc (sizeof (gateway_live_t));
    assert (self);
    pthread_mutex_init (&self->lock, NULL);
    self->conninfo = strdup (proto_config_str (config, "database"));
    self->stream_max = (size_t)stream_max;
    self->stream_max_per_user = (size_t)per_user;
    self->stream_max_per_address = (size_t)per_address;
    self->endpoints = (char **)calloc ((size_t)partitions, sizeof (char *));
    assert (self->conninfo && self->endpoints);
    for (int index = 0; index < partitions; index++) {
        self->endpoints[index] = proto_config_endpoint_offset (endpoint, index);
        if (!self->endpoints[index]) {
            zsys_error ("gateway live - event_endpoint '%s' has no numeric port", endpoint);
            gateway_live_destroy (&self);
            return NULL;
        }
        self->endpoint_count++;
    }
    atomic_init (&self->active, 0);
    atomic_init (&self->stopping, false);
    atomic_init (&self->listening, false);
    atomic_init (&self->dropped, 0);
    if (pthread_create (&self->thread, NULL, s_thread, self) != 0) {
        zsys_error ("gateway live - cannot start its thread");
        gateway_live_destroy (&self);
        return NULL;
    }
    self->thread_started = true;
    return self;
}

void
gateway_live_stop (gateway_live_t *self)
{
    if (!self)
        return;
    pthread_mutex_lock (&self->lock);
    atomic_store (&self->stopping, true);
    for (s_stream_t *stream = self->streams; stream; stream = stream->next)
        pthread_cond_signal (&stream->wake);
    pthread_mutex_unlock (&self->lock);
}

void
gateway_live_destroy (gateway_live_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_live_t *self = *self_p;
        gateway_live_stop (self);
        //  A stream may be inside mg_write (bounded by civetweb's
        //  request_timeout_ms); it leaves as soon as that returns.
        int64_t deadline = zclock_mono () + S_STOP_WAIT_MS;
        while (atomic_load (&self->active) > 0 && zclock_mono () < deadline)
            zclock_sleep (10);
        if (self->thread_started)
            pthread_join (self->thread, NULL);
        if (atomic_load (&self->active) > 0)
            //  Freeing now would pull the lock from under a stream: leak instead.
            zsys_error ("gateway live - %zu streams still open at shutdown",
                        (size_t)atomic_load (&self->active));
        else {
            pthread_mutex_destroy (&self->lock);
            for (int index = 0; index < self->endpoint_count; index++)
                free (self->endpoints[index]);
            free (self->endpoints);
            free (self->conninfo);
            free (self);
        }
        *self_p = NULL;
    }
}

//  ==========================================================================
//  Self test: real HTTP, a real PostgreSQL (LISTEN/NOTIFY), an in-process
//  PUB standing in for a detector.

#include "gateway_api.h"
#include "gateway_fixture.h"

#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;           //  the stream's socket
    char text[65536]; //  everything read so far
    size_t size;      //  bytes in text
} s_test_stream_t;

//  Opens GET /api/stream with a bearer token from source (a loopback
//  address, NULL: the kernel's choice); returns the status line's code.
static int
s_test_stream_open_from (s_test_stream_t *stream, int port, const char *token, const char *source)
{
    memset (stream, 0, sizeof *stream);
    stream->fd = socket (AF_INET, SOCK_STREAM, 0);
    assert (stream->fd >= 0);
    if (source) {
        struct sockaddr_in local = {0};
        local.sin_family = AF_INET;
        assert (inet_pton (AF_INET, source, &local.sin_addr) == 1);
        assert (bind (stream->fd, (struct sockaddr *)&local, sizeof local) == 0);
    }
    struct sockaddr_in address = {0};
    address.sin_family = AF_INET;
    address.sin_port = htons ((uint16_t)port);
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    int rc = connect (stream->fd, (struct sockaddr *)&address, sizeof address);
    assert (rc == 0);
    char *request = zsys_sprintf ("GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                  "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n",
                                  token);
    assert (send (stream->fd, request, strlen (request), 0) == (ssize_t)strlen (request));
    zstr_free (&request);
    int status = 0;
    //  The status line arrives at once, whatever the answer.
    for (int64_t deadline = zclock_mono () + 5000; zclock_mono () < deadline && !status;) {
        struct pollfd item = {stream->fd, POLLIN, 0};
        if (poll (&item, 1, 100) == 1) {
            ssize_t count = recv (stream->fd, stream->text + stream->size,
                                  sizeof stream->text - 1 - stream->size, 0);
            if (count <= 0)
                break;
            stream->size += (size_t)count;
            stream->text[stream->size] = 0;
            sscanf (stream->text, "HTTP/1.%*d %d", &status);
        }
    }
    return status;
}

static int
s_test_stream_open (s_test_stream_t *stream, int port, const char *token)
{
    return s_test_stream_open_from (stream, port, token, NULL);
}

//  Reads until text holds needle (true) or timeout_ms passed or the
//  server closed (false).
static bool
s_test_stream_wait (s_test_stream_t *stream, const char *needle, int timeout_ms)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (!strstr (stream->text, needle)) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            return false;
        struct pollfd item = {stream->fd, POLLIN, 0};
        if (poll (&item, 1, (int)left) != 1)
            continue;
        if (stream->size + 1 >= sizeof stream->text)
            return false;
        ssize_t count = recv (stream->fd, stream->text + stream->size,
                              sizeof stream->text - 1 - stream->size, 0);
        if (count <= 0)
            return false;
        stream->size += (size_t)count;
        stream->text[stream->size] = 0;
    }
    return true;
}

//  A user with a session; returns the user id, token into token.
static int64_t
s_test_user (PGconn *pg, const char *email, char token[GATEWAY_API_TOKEN_CHARS + 1])
{
    char hash[GATEWAY_API_HASH_TEXT];
    gateway_api_token_new (token, hash);
    const char *values[] = {email, hash};
    PGresult *result = PQexecParams (
        pg,
        "WITH u AS (INSERT INTO users (email, name, password_hash) VALUES ($1, 'Live', 'x')"
        "           RETURNING id),"
        " s AS (INSERT INTO sessions (token_hash, user_id, expires_at)"
        "       SELECT $2::bytea, id, now () + interval '1 hour' FROM u)"
        " SELECT id FROM u",
        2, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK && PQntuples (result) == 1);
    int64_t id = strtoll (PQgetvalue (result, 0, 0), NULL, 10);
    PQclear (result);
    return id;
}

static void
s_test_publish (zsock_t *pub, const proto_event_t *event)
{
    proto_buffer_t buffer;
    proto_buffer_init (&buffer);
    assert (proto_event_encode (event, &buffer) == 0);
    char topic[PROTO_TOPIC_MAX + 1];
    proto_event_topic (event, topic);
    zmsg_t *message = zmsg_new ();
    zmsg_addstr (message, topic);
    zmsg_addmem (message, buffer.data, buffer.size);
    zmsg_send (&message, pub);
    proto_buffer_release (&buffer);
}

void
gateway_live_test (bool verbose)
{
    printf (" * gateway_live: ");

    //  The ring drops the oldest and asks for a resync.
    gateway_live_t ring;
    memset (&ring, 0, sizeof ring);
    s_stream_t stream;
    memset (&stream, 0, sizeof stream);
    pthread_cond_init (&stream.wake, NULL);
    for (int index = 0; index < S_QUEUE_MAX + 10; index++)
        s_stream_push (&ring, &stream, zsys_sprintf ("%d", index));
    assert (stream.count == S_QUEUE_MAX && stream.resync && atomic_load (&ring.dropped) == 10);
    assert (streq (stream.events[stream.head], "10"));
    for (; stream.count; stream.count--, stream.head = (stream.head + 1) % S_QUEUE_MAX)
        free (stream.events[stream.head]);
    pthread_cond_destroy (&stream.wake);

    const char *conninfo =
        gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset; ring OK)");
    PGconn *pg = gateway_fixture_connect (conninfo);

    //  A detector's event PUB, partition 0 of two.
    zsock_t *pub = zsock_new (ZMQ_PUB);
    assert (pub);
    zsock_set_sndhwm (pub, 1000);
    zsock_set_linger (pub, 0);
    int pub_port = zsock_bind (pub, "tcp://127.0.0.1:*");
    assert (pub_port > 0);
    char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", pub_port);
    setenv ("PHANTOM_DATABASE", conninfo, 1);
    setenv ("PHANTOM_EVENT_ENDPOINT", endpoint, 1);
    setenv ("PHANTOM_PARTITIONS", "2", 1);
    setenv ("PHANTOM_STREAM_MAX_PER_USER", "2", 1);
    setenv ("PHANTOM_STREAM_MAX_PER_ADDRESS", "3", 1);
    setenv ("PHANTOM_STREAM_MAX", "4", 1);
    proto_config_t *config = proto_config_new (NULL);
    assert (config);

    gateway_t gateway;
    memset (&gateway, 0, sizeof gateway);
    gateway.verbose = verbose;
    gateway.config = config;
    gateway.db = gateway_db_new (conninfo, 4);
    gateway.cache = gateway_cache_new (conninfo);
    assert (gateway.db && gateway.cache && gateway_cache_load (gateway.cache) == 0);
    gateway.live = gateway_live_new (config);
    assert (gateway.live);
    assert (gateway.live->endpoint_count == 2 && gateway.live->stream_max_per_user == 2 &&
            gateway.live->stream_max_per_address == 3 && gateway.live->stream_max == 4);
    int http_port = gateway_fixture_api_start (&gateway, "8");

    char suffix[17], email[96];
    snprintf (suffix, sizeof suffix, "%08x%08x", (unsigned)randombytes_random (),
              (unsigned)randombytes_random ());
    char token_a[GATEWAY_API_TOKEN_CHARS + 1], token_b[GATEWAY_API_TOKEN_CHARS + 1];
    char token_c[GATEWAY_API_TOKEN_CHARS + 1];
    snprintf (email, sizeof email, "live.a.%s@example.com", suffix);
    int64_t user_a = s_test_user (pg, email, token_a);
    snprintf (email, sizeof email, "live.b.%s@example.com", suffix);
    int64_t user_b = s_test_user (pg, email, token_b);
    snprintf (email, sizeof email, "live.c.%s@example.com", suffix);
    s_test_user (pg, email, token_c);

    s_test_stream_t *stream_a = (s_test_stream_t *)malloc (sizeof (s_test_stream_t));
    s_test_stream_t *stream_b = (s_test_stream_t *)malloc (sizeof (s_test_stream_t));
    s_test_stream_t *extra = (s_test_stream_t *)malloc (sizeof (s_test_stream_t));
    assert (stream_a && stream_b && extra);
    assert (s_test_stream_open (stream_a, http_port, "nonsense") == 401);
    close (stream_a->fd);
    assert (s_test_stream_open (stream_a, http_port, token_a) == 200);
    assert (s_test_stream_wait (stream_a, "event: ready\n", 5000));
    assert (strcasestr (stream_a->text, "Content-Type: text/event-stream"));
    assert (s_test_stream_open (stream_b, http_port, token_b) == 200);
    assert (s_test_stream_wait (stream_b, "event: ready\n", 5000));
    assert (gateway_live_streams (gateway.live) == 2);

    //  Per-user bound: A's second stream is fine, the third is a 429.
    assert (s_test_stream_open (extra, http_port, token_a) == 200);
    assert (s_test_stream_wait (extra, "event: ready\n", 5000));
    s_test_stream_t *refused = (s_test_stream_t *)malloc (sizeof (s_test_stream_t));
    s_test_stream_t *elsewhere = (s_test_stream_t *)malloc (sizeof (s_test_stream_t));
    assert (refused && elsewhere);
    assert (s_test_stream_open (refused, http_port, token_a) == 429);
    assert (s_test_stream_wait (refused, "\"too_many_streams\"", 1000));
    assert (s_test_stream_wait (refused, "for this account", 1000));
    assert (strcasestr (refused->text, "Retry-After: 10"));
    close (refused->fd);
    //  Per-address bound: B has one stream of its two, but 127.0.0.1 has
    //  three (A's two and B's): 429. From another address B gets its second.
    assert (s_test_stream_open (refused, http_port, token_b) == 429);
    assert (s_test_stream_wait (refused, "from this address", 1000));
    close (refused->fd);
    assert (s_test_stream_open_from (elsewhere, http_port, token_b, "127.0.0.2") == 200);
    assert (s_test_stream_wait (elsewhere, "event: ready\n", 5000));
    //  The total bound (4): the server is full, a 503, whoever asks.
    assert (s_test_stream_open_from (refused, http_port, token_c, "127.0.0.3") == 503);
    assert (s_test_stream_wait (refused, "retry later", 1000));
    close (refused->fd);
    free (refused);
    close (elsewhere->fd);
    free (elsewhere);
    close (extra->fd);
    free (extra);

    //  notification: from pg_notify, with the unread count.
    for (int wait = 0; wait < 500 && !atomic_load (&gateway.live->listening); wait++)
        zclock_sleep (10);
    assert (atomic_load (&gateway.live->listening));
    char user_text[24];
    snprintf (user_text, sizeof user_text, "%" PRId64, user_a);
    const char *values[] = {user_text};
    PGresult *result = PQexecParams (
        pg,
        "WITH n AS (INSERT INTO notifications (user_id, kind, dedupe_key, title, message)"
        "           VALUES ($1::bigint, 'digest', 'live', 'T', 'M') RETURNING id)"
        " SELECT id, pg_notify ('phantom_notification', $1 || ':' || id) FROM n",
        1, NULL, values, NULL, NULL, 0);
    assert (PQresultStatus (result) == PGRES_TUPLES_OK);
    char *expected = zsys_sprintf ("event: notification\ndata: {\"id\":%s,\"unread\":1}\n\n",
                                   PQgetvalue (result, 0, 0));
    PQclear (result);
    assert (s_test_stream_wait (stream_a, expected, 5000));
    zstr_free (&expected);

    //  status and phantom: from the detector's PUB (resent until the
    //  subscription has reached it: PUB drops before that).
    proto_event_t event;
    memset (&event, 0, sizeof event);
    strcpy (event.kind, "status");
    event.user = user_a;
    strcpy (event.port, "123e4567-e89b-12d3-a456-426614174000");
    event.ts = 1700000000000;
    event.status = PROTO_STATUS_PHANTOM;
    event.previous = PROTO_STATUS_IDLE;
    bool seen = false;
    for (int attempt = 0; attempt < 50 && !seen; attempt++) {
        s_test_publish (pub, &event);
        seen = s_test_stream_wait (stream_a, "event: status\n", 100);
    }
    assert (seen);
    assert (strstr (stream_a->text, "data: {\"portId\":\"123e4567-e89b-12d3-a456-426614174000\","
                                    "\"status\":\"phantom\",\"previous\":\"idle\","
                                    "\"ts\":\"2023-11-14T22:13:20.000Z\"}"));
    strcpy (event.kind, "phantom.start");
    event.has_episode = true;
    event.episode.start = 1700000000000;
    event.episode.energy_wh = 0.5;
    event.episode.mean_watts = 4;
    event.episode.peak_watts = 5;
    event.episode.samples = 3;
    s_test_publish (pub, &event);
    assert (s_test_stream_wait (stream_a, "event: phantom\n", 5000));
    assert (s_test_stream_wait (stream_a, "\"kind\":\"start\"", 1000));
    assert (s_test_stream_wait (stream_a, "\"energyWh\":0.5", 1000));

    //  reading: from the sensor path.
    gateway_live_reading (gateway.live, user_a, event.port, 1700000001000, 3.5,
                          PROTO_STATUS_PHANTOM);
    assert (s_test_stream_wait (stream_a,
                                "event: reading\ndata: {\"portId\":\"123e4567-e89b-12d3-"
                                "a456-426614174000\",\"ts\":\"2023-11-14T22:13:21.000Z\","
                                "\"power\":3.5,\"status\":\"phantom\"}\n\n",
                                5000));

    //  B saw none of A's events, and sees its own.
    assert (!s_test_stream_wait (stream_b, "event: reading", 300));
    assert (!strstr (stream_b->text, "event: status") &&
            !strstr (stream_b->text, "event: phantom") &&
            !strstr (stream_b->text, "event: notification"));
    gateway_live_reading (gateway.live, user_b, event.port, 1700000002000, 1, PROTO_STATUS_OFF);
    assert (s_test_stream_wait (stream_b, "\"status\":\"off\"", 5000));
    //  Nobody watching: nothing is formatted, nothing breaks.
    gateway_live_reading (gateway.live, user_b + 1000000, event.port, 0, 1, 1);
    gateway_live_reading (NULL, user_b, event.port, 0, 1, 1);
    if (verbose)
        printf ("\n%s\n%s\n", stream_a->text, stream_b->text);

    //  Stop ends the open streams: the server closes them.
    gateway_live_stop (gateway.live);
    assert (!s_test_stream_wait (stream_a, "never sent", 3000));
    assert (!s_test_stream_wait (stream_b, "never sent", 3000));
    for (int wait = 0; wait < 300 && gateway_live_streams (gateway.live); wait++)
        zclock_sleep (10);
    assert (gateway_live_streams (gateway.live) == 0);
    close (stream_a->fd);
    close (stream_b->fd);
    free (stream_a);
    free (stream_b);

    mg_stop (gateway.http);
    gateway_live_destroy (&gateway.live);
    gateway_live_destroy (&gateway.live);
    gateway_cache_destroy (&gateway.cache);
    gateway_db_destroy (&gateway.db);
    zsock_destroy (&pub);
    proto_config_destroy (&config);
    PQfinish (pg);
    printf ("OK\n");
}
