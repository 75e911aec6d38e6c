/*  =========================================================================
    phantom-tap - print the detectors' event bus, one JSON object per line

    SUB: connects to every detector's event PUB (event_endpoint + i for i in
    0..partitions-1, from the shared config), or to each -e ENDPOINT given.

    phantom-tap [-c CONFIG] [-e ENDPOINT]... [-t PREFIX]... [-n COUNT] [-w SECONDS]
      -t PREFIX   topic prefix to subscribe to (repeatable; default: all)
      -n COUNT    exit 0 after COUNT events
      -w SECONDS  give up after SECONDS (exit 1 if -n COUNT was not reached)
    Each line is flushed as it is written, so the output pipes into jq.
    Debian ships no ZeroMQ command-line tool; this is ours.
    =========================================================================
*/
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto.h"
#include "proto_curve.h"
#include "proto_main.h"

#define S_LIST_MAX 64 //  most -e or -t options

//  ms since epoch as ISO-8601 UTC with milliseconds.
static json_t *
s_iso (int64_t ms)
{
    int64_t seconds = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int millis = (int)(ms - seconds * 1000);
    time_t when = (time_t)seconds;
    struct tm utc;
    char text[40];
    if (!gmtime_r (&when, &utc))
        return json_null ();
    size_t length = strftime (text, sizeof (text), "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf (text + length, sizeof (text) - length, ".%03dZ", millis);
    return json_string (text);
}

static json_t *
s_event_json (const char *topic, const proto_event_t *event)
{
    json_t *object = json_object ();
    json_object_set_new (object, "topic", json_string (topic));
    json_object_set_new (object, "kind", json_string (event->kind));
    json_object_set_new (object, "user", json_integer (event->user));
    json_object_set_new (object, "port", json_string (event->port));
    json_object_set_new (object, "ts", s_iso (event->ts));
    json_object_set_new (object, "watts", json_real (event->watts));
    json_object_set_new (object, "status", json_string (proto_status_name (event->status)));
    json_object_set_new (object, "previous", json_string (proto_status_name (event->previous)));
    if (event->has_episode) {
        json_t *episode = json_object ();
        json_object_set_new (episode, "start", s_iso (event->episode.start));
        json_object_set_new (episode, "end",
                             event->episode.end ? s_iso (event->episode.end) : json_null ());
        json_object_set_new (episode, "energy_wh", json_real (event->episode.energy_wh));
        json_object_set_new (episode, "mean_watts", json_real (event->episode.mean_watts));
        json_object_set_new (episode, "peak_watts", json_real (event->episode.peak_watts));
        json_object_set_new (episode, "samples", json_integer (event->episode.samples));
        json_object_set_new (object, "episode", episode);
    }
    return object;
}

//  What the command line asked for.
typedef struct {
    const char *endpoints[S_LIST_MAX]; //  -e, none: from the config
    size_t endpoint_count;             //  -e given
    const char *prefixes[S_LIST_MAX];  //  -t, none: everything
    size_t prefix_count;               //  -t given
    long count;                        //  -n, 0: no limit
    long wait_seconds;                 //  -w, 0: no limit
} s_options_t;

//  Takes one flag of ours; 0, or -1 for one that needs the usage line.
static int
s_option (int option, const char *argument, void *arg)
{
    s_options_t *options = (s_options_t *)arg;
    char *end = NULL;
    switch (option) {
    case 'e':
        if (options->endpoint_count == S_LIST_MAX)
            return -1;
        options->endpoints[options->endpoint_count++] = argument;
        return 0;
    case 't':
        if (options->prefix_count == S_LIST_MAX)
            return -1;
        options->prefixes[options->prefix_count++] = argument;
        return 0;
    case 'n':
        options->count = strtol (argument, &end, 10);
        return !*argument || *end || options->count < 1 ? -1 : 0;
    case 'w':
        options->wait_seconds = strtol (argument, &end, 10);
        return !*argument || *end || options->wait_seconds < 1 ? -1 : 0;
    default:
        return -1;
    }
}

//  Connects bus to every partition's event PUB the config names. 0 or -1.
static int
s_connect_partitions (zsock_t *bus, proto_config_t *config)
{
    int64_t partitions = proto_config_int (config, "partitions");
    const char *base = proto_config_str (config, "event_endpoint");
    int rc = proto_curve_client (bus, config) ? -1 : 0;
    for (int64_t i = 0; i < partitions && rc == 0; i++) {
        char *endpoint = proto_config_endpoint_offset (base, (int)i);
        if (!endpoint || zsock_connect (bus, "%s", endpoint)) {
            zsys_error ("phantom-tap %s + %lld - cannot connect", base, (long long)i);
            rc = -1;
        }
        free (endpoint);
    }
    return rc;
}

//  The SUB socket, subscribed and connected as asked; NULL on failure.
static zsock_t *
s_bus_new (const s_options_t *options, proto_config_t *config)
{
    zsock_t *bus = zsock_new (ZMQ_SUB);
    if (!bus)
        return NULL;
    zsock_set_rcvhwm (bus, 100000);
    zsock_set_linger (bus, 0);
    if (options->prefix_count == 0)
        zsock_set_subscribe (bus, "");
    for (size_t i = 0; i < options->prefix_count; i++)
        zsock_set_subscribe (bus, options->prefixes[i]);
    int rc = 0;
    for (size_t i = 0; i < options->endpoint_count && rc == 0; i++)
        if ((rc = zsock_connect (bus, "%s", options->endpoints[i])))
            zsys_error ("phantom-tap %s - cannot connect", options->endpoints[i]);
    if (options->endpoint_count == 0)
        rc = s_connect_partitions (bus, config);
    if (rc)
        zsock_destroy (&bus);
    return bus;
}

//  Prints one message as a JSON line; 1 if it was malformed (dropped), -1
//  if stdout is gone, else 0.
static int
s_print (zmsg_t *msg)
{
    char *topic = zmsg_popstr (msg);
    zframe_t *body = zmsg_first (msg);
    proto_event_t event;
    if (!topic || !body || zmsg_size (msg) != 1 ||
        proto_event_decode (zframe_data (body), zframe_size (body), &event)) {
        zsys_warning ("phantom-tap topic %s - malformed event dropped", topic ? topic : "?");
        zstr_free (&topic);
        return 1;
    }
    json_t *object = s_event_json (topic, &event);
    char *line = json_dumps (object, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref (object);
    zstr_free (&topic);
    int rc = 0;
    if (line) {
        int written = printf ("%s\n", line);
        free (line);
        if (written < 0 || fflush (stdout))
            rc = -1;
    }
    return rc;
}

int
main (int argc, char *argv[])
{
    s_options_t options;
    memset (&options, 0, sizeof options);
    proto_main_spec_t spec = {.name = "phantom-tap",
                              .usage = "[-e ENDPOINT]... [-t PREFIX]... [-n COUNT] [-w SECONDS]",
                              .options = "e:t:n:w:",
                              .option = s_option,
                              .arg = &options};
    int status;
    proto_main_t *app = proto_main_new (&spec, argc, argv, &status);
    if (!app)
        return status;
    zsock_t *bus = s_bus_new (&options, proto_main_config (app));
    proto_main_destroy (&app);
    if (!bus)
        return 1;
    zpoller_t *poller = zpoller_new (bus, NULL);
    int64_t deadline = options.wait_seconds ? zclock_mono () + options.wait_seconds * 1000 : 0;
    long seen = 0;
    status = 0;
    while (!proto_main_stopping () && (options.count == 0 || seen < options.count)) {
        if (deadline && zclock_mono () >= deadline) {
            status = options.count ? 1 : 0;
            break;
        }
        //  Bounded wait, so the stop flag and the deadline are checked.
        if (zpoller_wait (poller, 200) != bus)
            continue;
        zmsg_t *msg = zmsg_recv (bus);
        if (!msg)
            continue;
        int printed = s_print (msg);
        zmsg_destroy (&msg);
        if (printed == -1) {
            status = 1; //  reader went away
            break;
        }
        if (printed == 0)
            seen++;
    }
    zpoller_destroy (&poller);
    zsock_destroy (&bus);
    return status;
}
