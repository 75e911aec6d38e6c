/*  =========================================================================
    gateway - the service: config, database pool, cache, pipeline, HTTP

    Start order: pool, cache (retried each second until PostgreSQL answers,
    because a gateway without its cache would answer 401 to every device),
    pipeline, then civetweb. Shutdown in reverse: HTTP first, so no handler
    still uses what is torn down after it.
    =========================================================================
*/
#include "gateway_pipeline.h"
#include "gateway_web.h"
#include "gateway_live.h"
#include "gateway_fixture.h"

#include <inttypes.h>

#define DB_POOL_SIZE 8

//  --------------------------------------------------------------------------
//  /healthz: liveness and pipeline readiness.
static int
s_healthz (struct mg_connection *conn, void *cbdata)
{
    gateway_t *self = (gateway_t *)cbdata;
    json_t *checks = json_object ();
    bool ok = true;

    bool database = false;
    PGconn *db = gateway_db_acquire (self->db, 500);
    if (db) {
        PGresult *result = PQexec (db, "SELECT 1");
        database = PQresultStatus (result) == PGRES_TUPLES_OK;
        PQclear (result);
        gateway_db_release (self->db, db);
    }
    json_object_set_new (checks, "database", json_string (database ? "ok" : "unavailable"));
    ok &= database;

    bool cache = gateway_cache_loaded (self->cache);
    json_object_set_new (checks, "cache", json_string (cache ? "ok" : "not loaded"));
    ok &= cache;

    json_t *partitions = json_array ();
    bool detectors = true;
    for (int index = 0; index < gateway_pipeline_partitions (self->pipeline); index++) {
        int peers = gateway_pipeline_peers (self->pipeline, index);
        json_array_append_new (partitions, json_integer (peers));
        detectors &= peers > 0;
    }
    json_object_set_new (checks, "detectors",
                         json_string (detectors ? "ok" : "partition without detector"));
    json_object_set_new (checks, "partitionPeers", partitions);
    ok &= detectors;

    bool store = gateway_pipeline_store_connected (self->pipeline);
    json_object_set_new (checks, "store", json_string (store ? "ok" : "not connected"));
    ok &= store;

    json_t *answer =
        json_pack ("{s:s, s:o}", "status", ok ? "ok" : "unavailable", "checks", checks);
    char *text = json_dumps (answer, JSON_COMPACT);
    json_decref (answer);
    int status = ok ? 200 : 503;
    gateway_http_send (conn, status, "application/json", NULL, text, text ? strlen (text) : 0);
    free (text);
    return status;
}

//  /metrics: Prometheus text format.
static int
s_metrics (struct mg_connection *conn, void *cbdata)
{
    gateway_t *self = (gateway_t *)cbdata;
    zchunk_t *text = zchunk_new (NULL, 4096);
    gateway_pipeline_metrics (self->pipeline, text);
    char line[256];
    int size =
        snprintf (line, sizeof line,
                  "# TYPE phantom_gateway_cache_devices gauge\nphantom_gateway_cache_devices %zu\n"
                  "# TYPE phantom_gateway_cache_ports gauge\nphantom_gateway_cache_ports %zu\n",
                  gateway_cache_devices (self->cache), gateway_cache_ports (self->cache));
    zchunk_extend (text, line, (size_t)size);
    gateway_http_send (conn, 200, "text/plain; version=0.0.4", NULL, zchunk_data (text),
                       zchunk_size (text));
    zchunk_destroy (&text);
    return 200;
}

//  --------------------------------------------------------------------------
//  First entry of a comma-separated list, into a fresh string.
static char *
s_first_entry (const char *list)
{
    size_t length = strcspn (list, ",");
    char *entry = strndup (list, length);
    assert (entry);
    //  Trim blanks around it.
    char *start = entry;
    while (*start == ' ')
        start++;
    memmove (entry, start, strlen (start) + 1);
    length = strlen (entry);
    while (length && entry[length - 1] == ' ')
        entry[--length] = 0;
    return entry;
}

gateway_t *
gateway_new (proto_config_t *config, bool verbose, volatile int *stop)
{
    assert (config);
    int error = 0;
    int partitions = (int)proto_config_int (config, "partitions");
    int http_port = (int)proto_config_int (config, "http_port");
    //  Every slow or idle-reading client and every live stream holds a
    //  worker for up to request_timeout_ms; the default leaves room for
    //  many before ingest waits (BENCH.md, "Slow clients").
    int http_threads = (int)proto_config_int (config, "http_threads");
    int ack_timeout = (int)proto_config_int (config, "ack_timeout_ms");
    int request_timeout = (int)proto_config_int (config, "http_request_timeout_ms");
    //  Read as the detector reads it: the API tells clients after how long
    //  a silent port is offline.
    int offline_seconds = (int)proto_config_int (config, "detector_offline_seconds");
    //  The interface civetweb listens on ("" all); deploy/up sets 127.0.0.1
    //  when HAProxy in front takes http_port, so nothing reaches the
    //  gateway past the front's limits.
    const char *http_address = proto_config_str (config, "http_address");
    if (strlen (http_address) > 64 || strpbrk (http_address, ", ")) {
        zsys_error ("gateway - http_address '%s' is not one address", http_address);
        error = -1;
    }
    if (gateway_http_cors_configure (proto_config_str (config, "cors_origins")) != 0)
        error = -1;
    int session_idle = (int)proto_config_int (config, "session_idle_seconds");
    //  Abuse limits, one pair of keys a kind (gateway.h says what each counts).
    static const struct {
        gateway_rate_kind_t kind;
        const char *burst_key, *per_hour_key;
    } limits[] = {
        {GATEWAY_RATE_TOKEN, "sensor_token_limit_burst", "sensor_token_limit_per_hour"},
        {GATEWAY_RATE_LOGIN, "login_limit_burst", "login_limit_per_hour"},
        {GATEWAY_RATE_ACCOUNT, "login_account_limit_burst", "login_account_limit_per_hour"},
        {GATEWAY_RATE_REGISTER, "register_limit_burst", "register_limit_per_hour"}};
    int bursts[GATEWAY_RATE_KINDS], per_hours[GATEWAY_RATE_KINDS];
    for (size_t index = 0; index < sizeof limits / sizeof limits[0]; index++) {
        bursts[index] = (int)proto_config_int (config, limits[index].burst_key);
        per_hours[index] = (int)proto_config_int (config, limits[index].per_hour_key);
    }
    //  No request holds a pooled connection for long, and no user more
    //  than a few of them (gateway_db).
    int statement_timeout = (int)proto_config_int (config, "api_statement_timeout_ms");
    int user_connections = (int)proto_config_int (config, "api_connections_per_user");
    //  The notifier reads the same keys: both refuse the same addresses.
    proto_address_t *webhook_policy = error ? NULL : proto_address_new_from_config (config);
    if (error || !webhook_policy ||
        gateway_http_client_proxies_configure (proto_config_str (config, "trusted_proxies"),
                                               proto_config_str (config, "trusted_proxy_header")) !=
            0) {
        proto_address_destroy (&webhook_policy);
        return NULL;
    }
    for (size_t index = 0; index < sizeof limits / sizeof limits[0]; index++)
        gateway_http_rate_limit_configure (limits[index].kind, bursts[index], per_hours[index]);
    const char *database = proto_config_str (config, "database");

    gateway_t *self = (gateway_t *)zmalloc (sizeof (gateway_t));
    assert (self);
    self->config = config;
    self->verbose = verbose;
    self->offline_seconds = offline_seconds;
    self->session_idle_seconds = session_idle;
    self->webhook_policy = webhook_policy;
    self->db = gateway_db_new (database, DB_POOL_SIZE);
    gateway_db_set_limits (self->db, statement_timeout, user_connections);
    self->cache = gateway_cache_new (database);
    while (gateway_cache_load (self->cache) != 0) {
        zsys_warning ("gateway - cache not loaded, PostgreSQL unavailable; retrying");
        for (int wait = 0; wait < 10 && !(stop && *stop); wait++)
            zclock_sleep (100);
        if (stop && *stop) {
            gateway_destroy (&self);
            return NULL;
        }
    }
    char *reading_endpoint = s_first_entry (proto_config_str (config, "reading_endpoints"));
    gateway_pipeline_options_t options = {.gateway_id = proto_config_str (config, "gateway_id"),
                                          .reading_endpoint = reading_endpoint,
                                          .ack_endpoint = proto_config_str (config, "ack_endpoint"),
                                          .partitions = partitions,
                                          .ack_timeout_ms = ack_timeout};
    self->pipeline = gateway_pipeline_new (&options);
    free (reading_endpoint);
    if (!self->pipeline) {
        gateway_destroy (&self);
        return NULL;
    }

    char port[96];
    if (*http_address)
        snprintf (port, sizeof port, "%s:%d", http_address, http_port);
    else
        snprintf (port, sizeof port, "%d", http_port);
    self->live = gateway_live_new (config);
    if (!self->live) {
        gateway_destroy (&self);
        return NULL;
    }
    self->http = gateway_http_start (port, http_threads, request_timeout, self);
    if (!self->http) {
        zsys_error ("gateway - cannot listen on %s", port);
        gateway_destroy (&self);
        return NULL;
    }
    gateway_sensor_register (self);
    gateway_emoncms_register (self);
    gateway_api_register (self);
    //  Last: "/" takes every path no earlier route took.
    gateway_web_register (self);
    mg_set_request_handler (self->http, "/healthz", s_healthz, self);
    mg_set_request_handler (self->http, "/metrics", s_metrics, self);
    zsys_info ("gateway - listening on %s, %d threads, %d partitions", port, http_threads,
               partitions);
    return self;
}

void
gateway_destroy (gateway_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_t *self = *self_p;
        //  Open live streams end first, or mg_stop would wait on them.
        if (self->live)
            gateway_live_stop (self->live);
        if (self->http)
            mg_stop (self->http);
        gateway_live_destroy (&self->live);
        gateway_pipeline_destroy (&self->pipeline);
        gateway_cache_destroy (&self->cache);
        gateway_db_destroy (&self->db);
        proto_address_destroy (&self->webhook_policy);
        free (self);
        *self_p = NULL;
    }
}

//  ==========================================================================
#define TEST_HTTP_PORT 3103

//  GET path with Connection: close; the answer, head and body, into reply.
static int
s_get (const char *path, char *reply, size_t size)
{
    char request[256];
    snprintf (request, sizeof request, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
              path);
    return gateway_fixture_exchange (TEST_HTTP_PORT, request, reply, size);
}

void
gateway_test (bool verbose)
{
    printf (" * gateway: ");
    const char *conninfo = gateway_fixture_database ("skipped (PHANTOM_TEST_DATABASE unset)");
    setenv ("PHANTOM_DATABASE", conninfo, 1);
    setenv ("PHANTOM_HTTP_PORT", "3103", 1);
    setenv ("PHANTOM_HTTP_THREADS", "4", 1);
    setenv ("PHANTOM_PARTITIONS", "2", 1);
    setenv ("PHANTOM_GATEWAY_ID", "gwmain", 1);
    setenv ("PHANTOM_READING_ENDPOINTS", "tcp://127.0.0.1:6160, tcp://127.0.0.1:6170", 1);
    setenv ("PHANTOM_ACK_ENDPOINT", "tcp://127.0.0.1:6165", 1);
    proto_config_t *config = proto_config_new (NULL);
    assert (config);
    volatile int stop = 0;
    //  A malformed trusted_proxies or limit stops start-up (it is logged).
    const char *bad[][2] = {{"PHANTOM_TRUSTED_PROXIES", "127.0.0.1, proxy.example"},
                            {"PHANTOM_LOGIN_LIMIT_BURST", "0"},
                            {"PHANTOM_TRUSTED_PROXY_HEADER", "X-Real-IP"}};
    for (size_t index = 0; index < sizeof bad / sizeof bad[0]; index++) {
        setenv (bad[index][0], bad[index][1], 1);
        //  A limit out of range is refused by the config itself.
        proto_config_t *bad_config = proto_config_new (NULL);
        assert (!bad_config || !gateway_new (bad_config, verbose, &stop));
        proto_config_destroy (&bad_config);
        unsetenv (bad[index][0]);
    }
    gateway_t *gateway = gateway_new (config, verbose, &stop);
    assert (gateway);

    char reply[16384];
    int status = s_get ("/healthz", reply, sizeof reply);
    if (verbose)
        printf ("\n%d %s\n", status, reply);
    assert (status == 503);
    assert (strstr (reply, "\"detectors\":\"partition without detector\""));
    assert (strstr (reply, "\"database\":\"ok\""));
    assert (strstr (reply, "\"cache\":\"ok\""));

    //  A store and one detector per partition: ready.
    zsock_t *pub = zsock_new (ZMQ_PUB);
    zsock_set_linger (pub, 0);
    zsock_set_sndhwm (pub, 1000);
    assert (zsock_bind (pub, "tcp://127.0.0.1:6165") == 6165);
    zsock_t *pull[2];
    for (int index = 0; index < 2; index++) {
        pull[index] = zsock_new (ZMQ_PULL);
        zsock_set_linger (pull[index], 0);
        zsock_set_rcvhwm (pull[index], 1000);
        assert (zsock_connect (pull[index], "tcp://127.0.0.1:%d", 6160 + index) == 0);
    }
    for (int wait = 0; wait < 300; wait++) {
        status = s_get ("/healthz", reply, sizeof reply);
        if (status == 200)
            break;
        zclock_sleep (10);
    }
    if (verbose)
        printf ("%d %s\n", status, reply);
    assert (status == 200);
    assert (strstr (reply, "\"status\":\"ok\""));

    status = s_get ("/metrics", reply, sizeof reply);
    assert (status == 200);
    assert (strstr (reply, "phantom_gateway_cache_devices "));
    assert (strstr (reply, "phantom_gateway_readings_total{code=\"201\"} 0"));
    assert (strstr (reply, "phantom_gateway_ack_seconds_bucket{le=\"+Inf\"}"));

    //  The sensor route is mounted: an empty POST is 411/400, GET is 405.
    status = s_get ("/api/sensor/reading", reply, sizeof reply);
    assert (status == 405);

    for (int index = 0; index < 2; index++)
        zsock_destroy (&pull[index]);
    zsock_destroy (&pub);
    gateway_destroy (&gateway);
    gateway_destroy (&gateway);
    proto_config_destroy (&config);
    printf ("OK\n");
}
