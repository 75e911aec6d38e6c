/*  =========================================================================
    mqtt_load - many simulated smart plugs against the MQTT broker

    One thread, one epoll, non-blocking sockets. Each plug is one TCP
    connection that logs in with its own credentials (MQTT 3.1.1 CONNECT,
    user = the device's mqtt_name, password = its device token, clean
    session, keepalive 300 s), then PUBLISHes at QoS 1 what ESPHome sends
    (<name>/sensor/power/state, a bare number; services/mqtt/mqtt_parse.c
    cites the firmware) and counts the broker's PUBACKs. Only the packets
    it needs: CONNECT/CONNACK, PUBLISH/PUBACK, PINGREQ/PINGRESP.

    Paced (-r RATE): messages are due at RATE per second over all plugs,
    plug after plug, so with RATE = plugs / 10 each plug publishes every
    10 s (the real load). Flat out (-r 0): every plug keeps one message in
    flight (publishes its next when the last is acked) until -m messages
    are out. Connections are opened at most -C at a time (the broker's
    listen backlog). Every wait is bounded: epoll_wait 10 ms, the whole run
    by -d plus the connect phase (at most 120 s).

    mqtt_load -p PORT -f PLUGS [-h HOST] [-n PLUGS] [-r RATE] [-m MESSAGES]
              [-d SECONDS] [-k SECONDS] [-C CONNECTING]
    PLUGS: lines "<mqtt_name> <device token>". Prints one RESULT line.
    =========================================================================
*/
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define KEEPALIVE_S 300
#define PING_EVERY_MS 120000
#define OUT_MAX 512
#define IN_MAX 256
#define LATENCY_MAX (1 << 22)

typedef enum { S_IDLE, S_CONNECTING, S_CONNACK, S_READY, S_DEAD } s_state_t;

typedef struct {
    int fd;                  //  socket, -1 when none
    s_state_t state;         //  where the session is
    char *name;              //  mqtt_name (user, topic)
    char *token;             //  device token (password)
    uint8_t out[OUT_MAX];    //  bytes not yet written
    size_t out_size;         //  ... how many
    uint8_t in[IN_MAX];      //  bytes read, not yet a whole packet
    size_t in_size;          //  ... how many
    uint16_t packet_id;      //  last PUBLISH's id
    int inflight;            //  PUBLISHes not yet acked
    int64_t sent_at;         //  when the in-flight one went (µs), for latency
    int64_t last_out;        //  last packet written (ms), for PINGREQ
    unsigned long published; //  PUBLISHes written
    unsigned long acked;     //  PUBACKs read
} s_plug_t;

static volatile sig_atomic_t s_stop;
static void
s_on_signal (int signal)
{
    (void)signal;
    s_stop = 1;
}

static int64_t
s_now_us (void)
{
    struct timespec now;
    clock_gettime (CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
}

//  MQTT's variable byte integer (remaining length).
static size_t
s_put_length (uint8_t *at, size_t length)
{
    size_t used = 0;
    do {
        uint8_t byte = length % 128;
        length /= 128;
        at[used++] = byte | (length ? 0x80 : 0);
    } while (length);
    return used;
}

static size_t
s_put_string (uint8_t *at, const char *text, size_t size)
{
    at[0] = (uint8_t)(size >> 8);
    at[1] = (uint8_t)size;
    memcpy (at + 2, text, size);
    return size + 2;
}

//  Appends a packet (fixed header byte, body) to the plug's output; false
//  when it does not fit (never with our sizes).
static bool
s_queue (s_plug_t *plug, uint8_t first, const uint8_t *body, size_t size)
{
    uint8_t header[5];
    header[0] = first;
    size_t used = 1 + s_put_length (header + 1, size);
    if (plug->out_size + used + size > OUT_MAX)
        return false;
    memcpy (plug->out + plug->out_size, header, used);
    memcpy (plug->out + plug->out_size + used, body, size);
    plug->out_size += used + size;
    return true;
}

static void
s_connect_packet (s_plug_t *plug)
{
    uint8_t body[OUT_MAX];
    size_t at = s_put_string (body, "MQTT", 4);
    body[at++] = 4;    //  3.1.1
    body[at++] = 0xC2; //  user name, password, clean session
    body[at++] = KEEPALIVE_S >> 8;
    body[at++] = KEEPALIVE_S & 0xff;
    char client[64];
    snprintf (client, sizeof client, "load-%s", plug->name);
    at += s_put_string (body + at, client, strlen (client));
    at += s_put_string (body + at, plug->name, strlen (plug->name));
    at += s_put_string (body + at, plug->token, strlen (plug->token));
    s_queue (plug, 0x10, body, at);
}

static bool
s_publish_packet (s_plug_t *plug, unsigned long sequence)
{
    uint8_t body[OUT_MAX];
    char topic[128], payload[32];
    int topic_size = snprintf (topic, sizeof topic, "%s/sensor/power/state", plug->name);
    //  A standby-ish draw that changes: 0.5 .. 60 W.
    int payload_size =
        snprintf (payload, sizeof payload, "%.1f", 0.5 + (double)(sequence % 596) / 10);
    size_t at = s_put_string (body, topic, (size_t)topic_size);
    plug->packet_id = plug->packet_id == 65535 ? 1 : plug->packet_id + 1;
    body[at++] = plug->packet_id >> 8;
    body[at++] = plug->packet_id & 0xff;
    memcpy (body + at, payload, (size_t)payload_size);
    at += (size_t)payload_size;
    if (s_queue (plug, 0x32, body, at)) { //  PUBLISH, QoS 1
        plug->inflight++;
        plug->published++;
        plug->sent_at = s_now_us ();
        return true;
    }
    return false;
}

static void
s_close (s_plug_t *plug, int epoll, const char *why, unsigned long *errors)
{
    if (plug->fd >= 0) {
        epoll_ctl (epoll, EPOLL_CTL_DEL, plug->fd, NULL);
        close (plug->fd);
    }
    plug->fd = -1;
    plug->state = S_DEAD;
    if (*errors < 10)
        fprintf (stderr, "mqtt_load: %s: %s\n", plug->name, why);
    (*errors)++;
}

static void
s_want (s_plug_t *plug, int epoll, int index)
{
    struct epoll_event event = {.events = EPOLLIN | (plug->out_size ? EPOLLOUT : 0),
                                .data.u32 = (uint32_t)index};
    epoll_ctl (epoll, EPOLL_CTL_MOD, plug->fd, &event);
}

static int
s_flush (s_plug_t *plug)
{
    while (plug->out_size) {
        ssize_t wrote = send (plug->fd, plug->out, plug->out_size, MSG_NOSIGNAL);
        if (wrote < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
        memmove (plug->out, plug->out + wrote, plug->out_size - (size_t)wrote);
        plug->out_size -= (size_t)wrote;
    }
    return 0;
}

static int
s_compare (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int
main (int argc, char *argv[])
{
    const char *host = "127.0.0.1", *file = NULL;
    int port = 1883, connecting_max = 200;
    long plugs_max = 0, messages = 0;
    double rate = 0, duration = 30, keep = 0;
    for (int index = 1; index + 1 < argc; index += 2) {
        const char *flag = argv[index], *value = argv[index + 1];
        if (!strcmp (flag, "-h"))
            host = value;
        else if (!strcmp (flag, "-p"))
            port = atoi (value);
        else if (!strcmp (flag, "-f"))
            file = value;
        else if (!strcmp (flag, "-n"))
            plugs_max = atol (value);
        else if (!strcmp (flag, "-r"))
            rate = atof (value);
        else if (!strcmp (flag, "-m"))
            messages = atol (value);
        else if (!strcmp (flag, "-d"))
            duration = atof (value);
        else if (!strcmp (flag, "-k"))
            keep = atof (value);
        else if (!strcmp (flag, "-C"))
            connecting_max = atoi (value);
        else {
            fprintf (stderr, "mqtt_load: unknown option %s\n", flag);
            return 2;
        }
    }
    if (!file) {
        fprintf (stderr, "usage: mqtt_load -p PORT -f PLUGS [-h HOST] [-n PLUGS] [-r RATE] "
                         "[-m MESSAGES] [-d SECONDS] [-k SECONDS] [-C CONNECTING]\n");
        return 2;
    }
    signal (SIGINT, s_on_signal);
    signal (SIGTERM, s_on_signal);

    //  The plugs.
    FILE *input = fopen (file, "r");
    if (!input) {
        perror (file);
        return 1;
    }
    size_t count = 0, capacity = 1024;
    s_plug_t *plugs = calloc (capacity, sizeof (s_plug_t));
    char line[512];
    while (fgets (line, sizeof line, input) && (!plugs_max || (long)count < plugs_max)) {
        char name[128], token[256];
        if (sscanf (line, "%127s %255s", name, token) != 2)
            continue;
        if (count == capacity) {
            capacity *= 2;
            plugs = realloc (plugs, capacity * sizeof (s_plug_t));
        }
        memset (&plugs[count], 0, sizeof (s_plug_t));
        plugs[count].fd = -1;
        plugs[count].name = strdup (name);
        plugs[count].token = strdup (token);
        count++;
    }
    fclose (input);
    if (count == 0) {
        fprintf (stderr, "mqtt_load: no plugs in %s\n", file);
        return 1;
    }
    struct rlimit limit;
    getrlimit (RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < count + 64) {
        limit.rlim_cur = limit.rlim_max < count + 64 ? limit.rlim_max : count + 64;
        setrlimit (RLIMIT_NOFILE, &limit);
    }

    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons ((uint16_t)port)};
    if (inet_pton (AF_INET, host, &address.sin_addr) != 1) {
        fprintf (stderr, "mqtt_load: bad host %s\n", host);
        return 2;
    }
    int epoll = epoll_create1 (0);
    struct epoll_event events[256];
    unsigned long errors = 0;
    uint32_t *latencies = malloc (LATENCY_MAX * sizeof (uint32_t));
    size_t latency_count = 0;

    //  Phase 1: connect every plug, at most connecting_max at a time.
    int64_t started = s_now_us ();
    size_t next = 0, ready = 0, opening = 0;
    while (ready + errors < count && !s_stop && s_now_us () - started < 120 * 1000000LL) {
        while (next < count && opening < (size_t)connecting_max) {
            s_plug_t *plug = &plugs[next];
            plug->fd = socket (AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (plug->fd < 0) {
                s_close (plug, epoll, strerror (errno), &errors);
                next++;
                continue;
            }
            int one = 1;
            setsockopt (plug->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (connect (plug->fd, (struct sockaddr *)&address, sizeof address) < 0 &&
                errno != EINPROGRESS) {
                s_close (plug, epoll, strerror (errno), &errors);
                next++;
                continue;
            }
            plug->state = S_CONNECTING;
            struct epoll_event event = {.events = EPOLLOUT | EPOLLIN, .data.u32 = (uint32_t)next};
            epoll_ctl (epoll, EPOLL_CTL_ADD, plug->fd, &event);
            opening++;
            next++;
        }
        int got = epoll_wait (epoll, events, 256, 10);
        for (int at = 0; at < got; at++) {
            s_plug_t *plug = &plugs[events[at].data.u32];
            if (plug->state == S_CONNECTING && (events[at].events & EPOLLOUT)) {
                int error = 0;
                socklen_t size = sizeof error;
                getsockopt (plug->fd, SOL_SOCKET, SO_ERROR, &error, &size);
                if (error) {
                    s_close (plug, epoll, strerror (error), &errors);
                    opening--;
                    continue;
                }
                s_connect_packet (plug);
                plug->state = S_CONNACK;
            }
            if (plug->state == S_CONNACK && (events[at].events & EPOLLIN)) {
                ssize_t got_bytes =
                    recv (plug->fd, plug->in + plug->in_size, IN_MAX - plug->in_size, 0);
                if (got_bytes <= 0) {
                    if (got_bytes < 0 && errno == EAGAIN)
                        continue;
                    s_close (plug, epoll, "closed before CONNACK (refused?)", &errors);
                    opening--;
                    continue;
                }
                plug->in_size += (size_t)got_bytes;
                if (plug->in_size >= 4) {
                    if (plug->in[0] != 0x20 || plug->in[3] != 0) {
                        s_close (plug, epoll, "CONNACK refused", &errors);
                        opening--;
                        continue;
                    }
                    memmove (plug->in, plug->in + 4, plug->in_size - 4);
                    plug->in_size -= 4;
                    plug->state = S_READY;
                    plug->last_out = s_now_us () / 1000;
                    ready++;
                    opening--;
                }
            }
            if (plug->fd >= 0 && s_flush (plug) != 0) {
                s_close (plug, epoll, "write failed", &errors);
                opening--;
                continue;
            }
            if (plug->fd >= 0)
                s_want (plug, epoll, (int)events[at].data.u32);
        }
    }
    double connect_s = (double)(s_now_us () - started) / 1e6;
    fprintf (stderr, "mqtt_load: %zu of %zu plugs connected in %.1f s (%lu errors)\n", ready, count,
             connect_s, errors);

    //  Phase 2: publish. Paced: message k is due at k / rate, from plug
    //  k mod count. Flat out: each plug's next when its last is acked.
    unsigned long total_published = 0, total_acked = 0, due_index = 0;
    int64_t run_start = s_now_us ();
    int64_t run_end = run_start + (int64_t)(duration * 1e6);
    int64_t done_at = 0;
    bool flat = rate <= 0;
    if (flat)
        for (size_t index = 0; index < count; index++)
            if (plugs[index].state == S_READY && (!messages || (long)total_published < messages)) {
                if (s_publish_packet (&plugs[index], total_published))
                    total_published++;
                if (s_flush (&plugs[index]) != 0)
                    s_close (&plugs[index], epoll, "write failed", &errors);
                else
                    s_want (&plugs[index], epoll, (int)index);
            }
    while (!s_stop) {
        int64_t now = s_now_us ();
        bool sending = now < run_end && (!messages || (long)total_published < messages);
        if (!sending && total_acked >= total_published)
            break;
        if (!sending && now > run_end + 10 * 1000000LL)
            break; //  acks that never come: bounded
        if (sending && !flat) {
            unsigned long due = (unsigned long)((double)(now - run_start) / 1e6 * rate);
            for (; due_index < due && (!messages || (long)total_published < messages);
                 due_index++) {
                s_plug_t *plug = &plugs[due_index % count];
                if (plug->state != S_READY)
                    continue;
                if (s_publish_packet (plug, due_index))
                    total_published++;
                if (s_flush (plug) != 0)
                    s_close (plug, epoll, "write failed", &errors);
                else
                    s_want (plug, epoll, (int)(due_index % count));
            }
        }
        int got = epoll_wait (epoll, events, 256, 1);
        for (int at = 0; at < got; at++) {
            int index = (int)events[at].data.u32;
            s_plug_t *plug = &plugs[index];
            if (plug->state != S_READY)
                continue;
            if (events[at].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                ssize_t got_bytes =
                    recv (plug->fd, plug->in + plug->in_size, IN_MAX - plug->in_size, 0);
                if (got_bytes == 0 || (got_bytes < 0 && errno != EAGAIN)) {
                    s_close (plug, epoll, "connection lost", &errors);
                    continue;
                }
                if (got_bytes > 0)
                    plug->in_size += (size_t)got_bytes;
                //  Whole packets: PUBACK (0x40 2 id), PINGRESP (0xD0 0).
                while (plug->in_size >= 2) {
                    size_t size = 2 + plug->in[1];
                    if (plug->in[1] & 0x80 || plug->in_size < size)
                        break;
                    if (plug->in[0] == 0x40 && plug->inflight > 0) {
                        plug->inflight--;
                        plug->acked++;
                        total_acked++;
                        if (latency_count < LATENCY_MAX)
                            latencies[latency_count++] = (uint32_t)(s_now_us () - plug->sent_at);
                        if (flat && sending && (!messages || (long)total_published < messages) &&
                            s_publish_packet (plug, total_published))
                            total_published++;
                    }
                    memmove (plug->in, plug->in + size, plug->in_size - size);
                    plug->in_size -= size;
                }
            }
            if (s_flush (plug) != 0) {
                s_close (plug, epoll, "write failed", &errors);
                continue;
            }
            s_want (plug, epoll, index);
        }
        if (!done_at && !sending)
            done_at = now;
        //  Keepalive for long runs.
        static int64_t pinged;
        if (now / 1000 - pinged > 1000) {
            pinged = now / 1000;
            for (size_t index = 0; index < count; index++) {
                s_plug_t *plug = &plugs[index];
                if (plug->state == S_READY && pinged - plug->last_out > PING_EVERY_MS) {
                    s_queue (plug, 0xC0, NULL, 0);
                    plug->last_out = pinged;
                    if (s_flush (plug) != 0)
                        s_close (plug, epoll, "write failed", &errors);
                }
            }
        }
    }
    double run_s = (double)((done_at ? done_at : s_now_us ()) - run_start) / 1e6;
    qsort (latencies, latency_count, sizeof (uint32_t), s_compare);
    double p50 = latency_count ? latencies[latency_count / 2] / 1000.0 : 0;
    double p99 = latency_count ? latencies[latency_count * 99 / 100] / 1000.0 : 0;
    size_t alive = 0;
    for (size_t index = 0; index < count; index++)
        alive += plugs[index].state == S_READY;
    //  Hold the connections (the RSS of the broker and the service with
    //  every plug connected is read meanwhile).
    int64_t hold_until = s_now_us () + (int64_t)(keep * 1e6);
    while (!s_stop && s_now_us () < hold_until)
        epoll_wait (epoll, events, 256, 100);
    printf ("RESULT plugs=%zu connected=%zu connect_s=%.1f published=%lu acked=%lu send_s=%.2f "
            "rate=%.0f puback_p50_ms=%.2f puback_p99_ms=%.2f errors=%lu\n",
            count, alive, connect_s, total_published, total_acked, run_s,
            run_s > 0 ? total_published / run_s : 0, p50, p99, errors);
    for (size_t index = 0; index < count; index++) {
        if (plugs[index].fd >= 0)
            close (plugs[index].fd);
        free (plugs[index].name);
        free (plugs[index].token);
    }
    free (plugs);
    free (latencies);
    close (epoll);
    return 0;
}
