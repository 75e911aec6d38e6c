/*  =========================================================================
    mqtt_metrics - the MQTT service's counters, served as Prometheus text
    =========================================================================
*/
#include "mqtt_metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

struct _mqtt_metrics_t {
    mqtt_counters_t counters;       //  the numbers
    int listener;                   //  listening socket, -1 = none
    int port;                       //  its port
    pthread_t thread;               //  serves scrapes
    bool thread_started;            //  joined on destroy
    atomic_bool stop;               //  tells the thread to end
    mqtt_metrics_append_fn *append; //  more text, or NULL
    void *arg;                      //  for append
};

static void *s_serve (void *args);

mqtt_metrics_t *
mqtt_metrics_new (int port, mqtt_metrics_append_fn *append, void *arg)
{
    mqtt_metrics_t *self = (mqtt_metrics_t *)zmalloc (sizeof (mqtt_metrics_t));
    assert (self);
    self->listener = -1;
    self->append = append;
    self->arg = arg;
    if (port > 0) {
        self->listener = socket (AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        setsockopt (self->listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
        address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
        if (self->listener < 0 ||
            bind (self->listener, (struct sockaddr *)&address, sizeof address) != 0 ||
            listen (self->listener, 16) != 0) {
            zsys_error ("mqtt metrics - cannot listen on 127.0.0.1:%d: %s", port, strerror (errno));
            if (self->listener >= 0)
                close (self->listener);
            free (self);
            return NULL;
        }
        self->port = port;
        if (pthread_create (&self->thread, NULL, s_serve, self) == 0)
            self->thread_started = true;
        zsys_info ("mqtt metrics - on http://127.0.0.1:%d/metrics", port);
    }
    return self;
}

void
mqtt_metrics_destroy (mqtt_metrics_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        mqtt_metrics_t *self = *self_p;
        atomic_store (&self->stop, true);
        if (self->thread_started)
            pthread_join (self->thread, NULL);
        if (self->listener >= 0)
            close (self->listener);
        free (self);
        *self_p = NULL;
    }
}

mqtt_counters_t *
mqtt_metrics_counters (mqtt_metrics_t *self)
{
    return &self->counters;
}

int
mqtt_metrics_port (mqtt_metrics_t *self)
{
    return self->port;
}

static void
s_line (zchunk_t *text, const char *help, const char *type, const char *name, unsigned long value)
{
    char line[512];
    int size = snprintf (line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %lu\n", name, help,
                         name, type, name, value);
    zchunk_extend (text, line, (size_t)size);
}

zchunk_t *
mqtt_metrics_text (mqtt_metrics_t *self)
{
    mqtt_counters_t *c = &self->counters;
    zchunk_t *text = zchunk_new (NULL, 4096);
    s_line (text, "MQTT messages received", "counter", "phantom_mqtt_messages_total",
            atomic_load (&c->messages));
    s_line (text, "Messages on known topics that carry nothing to store", "counter",
            "phantom_mqtt_ignored_total", atomic_load (&c->ignored));
    const char *head = "# HELP phantom_mqtt_rejected_total Messages rejected, by reason\n"
                       "# TYPE phantom_mqtt_rejected_total counter\n";
    zchunk_extend (text, head, strlen (head));
    for (int reason = 1; reason < MQTT_REJECT_COUNT; reason++) {
        char line[128];
        int size = snprintf (line, sizeof line, "phantom_mqtt_rejected_total{reason=\"%s\"} %lu\n",
                             mqtt_parse_reason_name ((mqtt_reject_t)reason),
                             atomic_load (&c->rejected[reason]));
        zchunk_extend (text, line, (size_t)size);
    }
    s_line (text, "Readings sent to the detector partitions", "counter",
            "phantom_mqtt_readings_sent_total", atomic_load (&c->readings_sent));
    s_line (text, "Readings the store acked as stored", "counter",
            "phantom_mqtt_readings_stored_total", atomic_load (&c->readings_stored));
    s_line (text, "Readings not acked as stored (queue full, timeout, refused)", "counter",
            "phantom_mqtt_readings_failed_total", atomic_load (&c->readings_failed));
    s_line (text, "Submits repeated for readings not yet stored", "counter",
            "phantom_mqtt_retries_total", atomic_load (&c->retries));
    s_line (text, "Messages without the broker's pw-id (reading id from a hash)", "counter",
            "phantom_mqtt_fallback_ids_total", atomic_load (&c->fallback_ids));
    s_line (text, "Ports created on a channel's first sight", "counter",
            "phantom_mqtt_ports_created_total", atomic_load (&c->ports_created));
    s_line (text, "Ports a plug's will told the detectors offline", "counter",
            "phantom_mqtt_ports_told_offline_total", atomic_load (&c->ports_told_offline));
    s_line (text, "Ports of a will not told (no detector, queue full): their timer's", "counter",
            "phantom_mqtt_offline_unsent_total", atomic_load (&c->offline_unsent));
    char line[512];
    unsigned long count = atomic_load (&c->ack_lag_count);
    int size =
        snprintf (line, sizeof line,
                  "# HELP phantom_mqtt_ack_lag_seconds Receipt of a message to the store's ack of "
                  "its readings\n"
                  "# TYPE phantom_mqtt_ack_lag_seconds summary\n"
                  "phantom_mqtt_ack_lag_seconds_sum %.6f\nphantom_mqtt_ack_lag_seconds_count %lu\n",
                  atomic_load (&c->ack_lag_us_sum) / 1e6, count);
    zchunk_extend (text, line, (size_t)size);
    size = snprintf (line, sizeof line,
                     "# HELP phantom_mqtt_ack_lag_max_seconds The longest ack lag seen\n"
                     "# TYPE phantom_mqtt_ack_lag_max_seconds gauge\n"
                     "phantom_mqtt_ack_lag_max_seconds %.6f\n",
                     atomic_load (&c->ack_lag_us_max) / 1e6);
    zchunk_extend (text, line, (size_t)size);
    long online = atomic_load (&c->devices_online);
    s_line (text, "Plugs whose last LWT/online message said online", "gauge",
            "phantom_mqtt_connected_devices", online > 0 ? (unsigned long)online : 0);
    s_line (text, "1 while connected to the broker", "gauge", "phantom_mqtt_broker_connected",
            (unsigned long)atomic_load (&c->broker_connected));
    if (self->append)
        self->append (self->arg, text);
    return text;
}

//  One scrape: reads the request head (bounded 1 s), answers, closes.
static void
s_answer (mqtt_metrics_t *self, int client)
{
    char request[2048] = "";
    size_t got = 0;
    int64_t deadline = zclock_mono () + 1000;
    while (got < sizeof request - 1 && !strstr (request, "\r\n\r\n")) {
        int64_t left = deadline - zclock_mono ();
        struct pollfd item = {.fd = client, .events = POLLIN};
        if (left <= 0 || poll (&item, 1, (int)left) <= 0)
            return;
        ssize_t size = read (client, request + got, sizeof request - 1 - got);
        if (size <= 0)
            return;
        got += (size_t)size;
        request[got] = 0;
    }
    bool metrics =
        strncmp (request, "GET /metrics ", 13) == 0 || strncmp (request, "GET / ", 6) == 0;
    zchunk_t *body = metrics ? mqtt_metrics_text (self) : zchunk_new ("not found\n", 10);
    char head[160];
    int size = snprintf (head, sizeof head,
                         "HTTP/1.1 %s\r\nContent-Type: text/plain; version=0.0.4\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                         metrics ? "200 OK" : "404 Not Found", zchunk_size (body));
    if (write (client, head, (size_t)size) == size)
        if (write (client, zchunk_data (body), zchunk_size (body)) < 0)
            zsys_debug ("mqtt metrics - scrape closed early");
    zchunk_destroy (&body);
}

static void *
s_serve (void *args)
{
    mqtt_metrics_t *self = (mqtt_metrics_t *)args;
    while (!atomic_load (&self->stop)) {
        struct pollfd item = {.fd = self->listener, .events = POLLIN};
        if (poll (&item, 1, 200) <= 0)
            continue;
        int client = accept4 (self->listener, NULL, NULL, SOCK_CLOEXEC);
        if (client < 0)
            continue;
        struct timeval timeout = {.tv_sec = 1};
        setsockopt (client, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        s_answer (self, client);
        close (client);
    }
    return NULL;
}

//  --------------------------------------------------------------------------
static void
s_append (void *arg, zchunk_t *text)
{
    zchunk_extend (text, (const char *)arg, strlen ((const char *)arg));
}

void
mqtt_metrics_test (bool verbose)
{
    printf (" * mqtt_metrics: ");
    //  A free port: bind 0, read it, close, use it.
    int probe = socket (AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    assert (bind (probe, (struct sockaddr *)&address, sizeof address) == 0);
    assert (getsockname (probe, (struct sockaddr *)&address, &length) == 0);
    int port = ntohs (address.sin_port);
    close (probe);

    mqtt_metrics_t *metrics = mqtt_metrics_new (port, s_append, "extra_metric 7\n");
    assert (metrics);
    mqtt_counters_t *counters = mqtt_metrics_counters (metrics);
    atomic_fetch_add (&counters->messages, 3);
    atomic_fetch_add (&counters->rejected[MQTT_REJECT_MALFORMED], 2);
    atomic_fetch_add (&counters->devices_online, 1);

    int client = socket (AF_INET, SOCK_STREAM, 0);
    assert (connect (client, (struct sockaddr *)&address, sizeof address) == 0);
    const char *get = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    assert (write (client, get, strlen (get)) == (ssize_t)strlen (get));
    char answer[8192];
    size_t got = 0;
    int64_t deadline = zclock_mono () + 2000;
    while (got < sizeof answer - 1 && zclock_mono () < deadline) {
        struct pollfd item = {.fd = client, .events = POLLIN};
        if (poll (&item, 1, 200) <= 0)
            continue;
        ssize_t size = read (client, answer + got, sizeof answer - 1 - got);
        if (size <= 0)
            break;
        got += (size_t)size;
    }
    answer[got] = 0;
    close (client);
    if (verbose)
        printf ("\n%s", answer);
    assert (strstr (answer, "HTTP/1.1 200 OK"));
    assert (strstr (answer, "\nphantom_mqtt_messages_total 3\n"));
    assert (strstr (answer, "phantom_mqtt_rejected_total{reason=\"malformed\"} 2\n"));
    assert (strstr (answer, "phantom_mqtt_rejected_total{reason=\"oversized\"} 0\n"));
    assert (strstr (answer, "\nphantom_mqtt_connected_devices 1\n"));
    assert (strstr (answer, "\nextra_metric 7\n"));
    mqtt_metrics_destroy (&metrics);
    mqtt_metrics_destroy (&metrics);
    printf ("OK\n");
}
