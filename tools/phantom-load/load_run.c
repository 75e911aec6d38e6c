/*  =========================================================================
    load_run - one load run: its options and the progress threads share
    =========================================================================
*/
#include "load_run.h"

#include <assert.h>
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static void
s_usage (void)
{
    fprintf (stderr,
             "usage: phantom-load -f CREDENTIALS [options]\n"
             "  -u URL        gateway base URL (http://127.0.0.1:3000)\n"
             "  -f FILE       lines \"<deviceToken> <portId>\", used round-robin\n"
             "  -c N          keep-alive connections (64)\n"
             "  -t N          threads, each with its own epoll and connections (1)\n"
             "  -d SECONDS    run time (10 unless -n); with -n, an upper bound\n"
             "  -n READINGS   send this many readings, then stop\n"
             "  -r RATE       target readings/s over all connections (0 = flat out)\n"
             "  -b BATCH      readings per request; >1 uses POST /api/sensor/readings (1)\n"
             "  -T MS         request timeout (10000)\n"
             "  --retry       retry 503/504/timeouts/connection errors with the same readingId\n"
             "  --ids FILE    write \"readingId id\" for every acknowledged reading\n"
             "  --verify CONNINFO  check PostgreSQL holds exactly the acknowledged readings\n"
             "  -v            a progress line every second on stderr\n"
             "  --selftest    run the unit tests and exit\n");
}

static int
s_parse_number (const char *text, double low, double high, double *value)
{
    char *end = NULL;
    errno = 0;
    double parsed = strtod (text, &end);
    if (errno || end == text || *end || !(parsed >= low && parsed <= high))
        return -1;
    *value = parsed;
    return 0;
}

load_run_start_t
load_run_configure (load_run_t *self, int argc, char *argv[], int *selftest_at)
{
    const char *credentials = NULL;
    double value;
    self->url = "http://127.0.0.1:3000";
    self->connections = 64;
    self->threads = 1;
    self->batch = 1;
    self->timeout_us = 10000000;
    bool have_duration = false;
    bool selftest = false;

    static const struct option options[] = {
        {"retry", no_argument, NULL, 'R'},        {"ids", required_argument, NULL, 'I'},
        {"verify", required_argument, NULL, 'V'}, {"selftest", no_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    int option;
    while ((option = getopt_long (argc, argv, "u:c:t:d:n:r:b:f:T:vh", options, NULL)) != -1) {
        bool bad = false;
        switch (option) {
        case 'u':
            self->url = optarg;
            break;
        case 'f':
            credentials = optarg;
            break;
        case 'c':
            bad = s_parse_number (optarg, 1, 100000, &value);
            self->connections = (int)value;
            break;
        case 't':
            bad = s_parse_number (optarg, 1, 256, &value);
            self->threads = (int)value;
            break;
        case 'd':
            bad = s_parse_number (optarg, 0.001, 1e7, &self->duration_s);
            have_duration = true;
            break;
        case 'n':
            bad = s_parse_number (optarg, 1, 1e15, &value);
            self->total = (int64_t)value;
            break;
        case 'r':
            bad = s_parse_number (optarg, 0, 1e9, &self->rate);
            break;
        case 'b':
            bad = s_parse_number (optarg, 1, LOAD_RUN_BATCH_MAX, &value);
            self->batch = (int)value;
            break;
        case 'T':
            bad = s_parse_number (optarg, 1, 3600000, &value);
            self->timeout_us = (int64_t)(value * 1000);
            break;
        case 'v':
            self->verbose = true;
            break;
        case 'R':
            self->retry = true;
            break;
        case 'I':
            self->ids_path = optarg;
            break;
        case 'V':
            self->verify = optarg;
            break;
        case 'S':
            //  Run the tests, as before, whatever else the line says.
            selftest = true;
            break;
        case 'h':
            s_usage ();
            return LOAD_RUN_HELP;
        default:
            s_usage ();
            return LOAD_RUN_BAD;
        }
        if (selftest) {
            *selftest_at = optind;
            return LOAD_RUN_SELFTEST;
        }
        if (bad) {
            fprintf (stderr, "phantom-load: bad value for -%c: %s\n", option, optarg);
            return LOAD_RUN_BAD;
        }
    }
    if (optind < argc || !credentials) {
        s_usage ();
        return LOAD_RUN_BAD;
    }
    if (!have_duration)
        self->duration_s = self->total > 0 ? 3600 : 10;
    if (self->threads > self->connections)
        self->threads = self->connections;
    if (load_run_parse_url (self, self->url) || load_run_prepare_head (self) ||
        load_run_load_credentials (self, credentials)) {
        load_run_release (self);
        return LOAD_RUN_BAD;
    }
    uint64_t run_id = 0;
    if (getrandom (&run_id, sizeof run_id, 0) != sizeof run_id)
        run_id = (uint64_t)zclock_time () ^ ((uint64_t)getpid () << 40);
    snprintf (self->run, sizeof self->run, "%016" PRIx64, run_id);
    return LOAD_RUN_GO;
}

int
load_run_parse_url (load_run_t *self, const char *url)
{
    if (strncmp (url, "http://", 7) != 0) {
        fprintf (stderr, "phantom-load: only http:// URLs are supported: %s\n", url);
        return -1;
    }
    const char *authority = url + 7;
    const char *slash = strchr (authority, '/');
    size_t authority_length = slash ? (size_t)(slash - authority) : strlen (authority);
    const char *colon = memchr (authority, ':', authority_length);
    size_t host_length = colon ? (size_t)(colon - authority) : authority_length;
    if (host_length == 0 || host_length >= sizeof self->host) {
        fprintf (stderr, "phantom-load: bad host in %s\n", url);
        return -1;
    }
    memcpy (self->host, authority, host_length);
    self->host[host_length] = 0;
    size_t port_length = colon ? authority_length - host_length - 1 : 2;
    if (port_length == 0 || port_length >= sizeof self->port) {
        fprintf (stderr, "phantom-load: bad port in %s\n", url);
        return -1;
    }
    snprintf (self->port, sizeof self->port, "%.*s", (int)port_length, colon ? colon + 1 : "80");
    snprintf (self->prefix, sizeof self->prefix, "%s", slash ? slash : "");
    size_t prefix_length = strlen (self->prefix);
    while (prefix_length > 0 && self->prefix[prefix_length - 1] == '/')
        self->prefix[--prefix_length] = 0;

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *result = NULL;
    int rc = getaddrinfo (self->host, self->port, &hints, &result);
    if (rc != 0 || !result) {
        fprintf (stderr, "phantom-load: cannot resolve %s:%s: %s\n", self->host, self->port,
                 gai_strerror (rc));
        return -1;
    }
    memcpy (&self->address, result->ai_addr, result->ai_addrlen);
    self->address_length = result->ai_addrlen;
    freeaddrinfo (result);
    return 0;
}

//  A token or portId goes into JSON unescaped, so it must need no escaping.
static bool
s_plain_field (const char *text)
{
    size_t length = strlen (text);
    if (length == 0 || length > LOAD_RUN_FIELD_MAX)
        return false;
    for (size_t index = 0; index < length; index++)
        if (text[index] <= 0x20 || text[index] > 0x7e || text[index] == '"' || text[index] == '\\')
            return false;
    return true;
}

int
load_run_load_credentials (load_run_t *self, const char *path)
{
    FILE *file = fopen (path, "r");
    if (!file) {
        fprintf (stderr, "phantom-load: cannot open %s: %s\n", path, strerror (errno));
        return -1;
    }
    char line[1024];
    int number = 0;
    int rc = 0;
    while (fgets (line, sizeof line, file)) {
        number++;
        char token[1024], port[1024], rest[2];
        int fields = sscanf (line, "%1023s %1023s %1s", token, port, rest);
        if (fields <= 0 || token[0] == '#')
            continue;
        if (fields != 2 || !s_plain_field (token) || !s_plain_field (port)) {
            fprintf (stderr, "phantom-load: %s:%d: expected \"<deviceToken> <portId>\"\n", path,
                     number);
            rc = -1;
            break;
        }
        size_t device = 0;
        while (device < self->device_count && strcmp (self->devices[device].token, token) != 0)
            device++;
        if (device == self->device_count) {
            load_device_t *devices =
                realloc (self->devices, (self->device_count + 1) * sizeof (load_device_t));
            if (!devices) {
                rc = -1;
                break;
            }
            self->devices = devices;
            memset (&devices[device], 0, sizeof (load_device_t));
            devices[device].token = strdup (token);
            self->device_count++;
        }
        load_device_t *entry = &self->devices[device];
        char **ports = realloc (entry->ports, (entry->port_count + 1) * sizeof (char *));
        load_pair_t *pairs = realloc (self->pairs, (self->pair_count + 1) * sizeof (load_pair_t));
        if (ports)
            entry->ports = ports;
        if (pairs)
            self->pairs = pairs;
        if (!ports || !pairs || !entry->token) {
            rc = -1;
            break;
        }
        entry->ports[entry->port_count] = strdup (port);
        if (!entry->ports[entry->port_count]) {
            rc = -1;
            break;
        }
        self->pairs[self->pair_count++] = (load_pair_t){device, entry->port_count++};
    }
    fclose (file);
    if (rc == 0 && self->pair_count == 0) {
        fprintf (stderr, "phantom-load: %s holds no credentials\n", path);
        rc = -1;
    }
    return rc;
}

void
load_run_release (load_run_t *self)
{
    for (size_t device = 0; device < self->device_count; device++) {
        for (size_t port = 0; port < self->devices[device].port_count; port++)
            free (self->devices[device].ports[port]);
        free (self->devices[device].ports);
        free (self->devices[device].token);
    }
    free (self->devices);
    free (self->pairs);
    self->devices = NULL;
    self->pairs = NULL;
    self->device_count = self->pair_count = 0;
}

int
load_run_prepare_head (load_run_t *self)
{
    const char *path = self->batch > 1 ? "/api/sensor/readings" : "/api/sensor/reading";
    int length = snprintf (self->head, sizeof self->head,
                           "POST %s%s HTTP/1.1\r\nHost: %s:%s\r\nContent-Type: "
                           "application/json\r\n"
                           "Content-Length: ",
                           self->prefix, path, self->host, self->port);
    if (length < 0 || (size_t)length >= sizeof self->head)
        return -1;
    self->head_length = (size_t)length;
    return 0;
}

void
load_run_test (bool verbose)
{
    if (verbose)
        printf (" * load_run: ");
    //  Tokens.
    assert (s_plain_field ("3f2a-b"));
    assert (!s_plain_field ("a\"b"));
    assert (!s_plain_field (""));

    //  A URL with a path prefix and no port.
    load_run_t *run = (load_run_t *)calloc (1, sizeof (load_run_t));
    assert (run);
    assert (load_run_parse_url (run, "http://127.0.0.1/base/") == 0);
    assert (strcmp (run->port, "80") == 0 && strcmp (run->prefix, "/base") == 0);
    assert (load_run_parse_url (run, "https://127.0.0.1") == -1);

    //  Credentials grouped by token; a malformed line stops the load.
    char path[] = "/tmp/load_run_test.XXXXXX";
    int fd = mkstemp (path);
    assert (fd >= 0);
    const char *lines = "# token port\ntoken-1 port-a\ntoken-2 port-b\ntoken-1 port-c\n";
    assert (write (fd, lines, strlen (lines)) == (ssize_t)strlen (lines));
    close (fd);
    assert (load_run_load_credentials (run, path) == 0);
    assert (run->device_count == 2 && run->pair_count == 3);
    assert (run->devices[0].port_count == 2);
    assert (strcmp (run->devices[0].ports[1], "port-c") == 0);
    assert (run->pairs[2].device == 0 && run->pairs[2].port == 1);
    load_run_release (run);
    FILE *file = fopen (path, "w");
    assert (file);
    fprintf (file, "token-1 port-a extra\n");
    fclose (file);
    assert (load_run_load_credentials (run, path) == -1);
    load_run_release (run);
    unlink (path);
    free (run);
    if (verbose)
        printf ("OK\n");
}
