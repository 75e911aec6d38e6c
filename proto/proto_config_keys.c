/*  =========================================================================
    proto_config_keys - every key of deploy/phantomwatch.conf, defined once

    The one place a key's default and range live: services read values
    with proto_config_int / proto_config_str and never give their own.
    Keys only deploy/up reads (front, gateway_port, front_*) are here too,
    so the services accept the file deploy/up reads. `phantom-<service>
    --help-config` prints this table; docs/config.md is that output.
    The endpoints are deploy's layout over PHANTOM_ZMQ_PORT_BASE (5500):
    verdicts at base, acks at base + 1, readings at base + 100 + partition,
    events at base + 200 + partition.
    =========================================================================
*/
#include "proto_config.h"
#include "proto.h"

const proto_config_key_t proto_config_keys[] = {
    //  Shared
    PROTO_CONFIG_KEY_STRING (
        "database", "dbname=phantomwatch",
        "libpq connection string; deploy/up points it at the cluster under var/."),
    PROTO_CONFIG_KEY_INT (
        "partitions", "2", 1, 64,
        "Detector partitions: port p belongs to partition proto_partition (p) % partitions; "
        "deploy/up runs this many detectors."),
    PROTO_CONFIG_KEY_INT ("curve", "0", 0, 1,
                          "1: CURVE on the ZeroMQ links, every binder checks connectors against "
                          "curve_dir/allowed/."),
    PROTO_CONFIG_KEY_STRING ("curve_dir", NULL, "CURVE certificates (default $PHANTOM_VAR/curve)."),
    //  ZeroMQ endpoints
    PROTO_CONFIG_KEY_STRING (
        "reading_endpoints", "tcp://127.0.0.1:5600",
        "Gateways bind partition i at this port + i (ipc: path-i); detectors connect to "
        "every endpoint listed (comma-separated)."),
    PROTO_CONFIG_KEY_STRING ("verdict_endpoint", "tcp://127.0.0.1:5500",
                             "The store binds PULL here for verdicts from the detectors."),
    PROTO_CONFIG_KEY_STRING ("ack_endpoint", "tcp://127.0.0.1:5501",
                             "The store binds PUB here for acks to the gateways."),
    PROTO_CONFIG_KEY_STRING (
        "event_endpoint", "tcp://127.0.0.1:5700",
        "Detector i binds its event PUB at this port + i; notifier, gateway live streams and "
        "phantom-tap connect to all."),
    //  Gateway
    PROTO_CONFIG_KEY_STRING ("gateway_id", "gw1",
                             "This gateway's id (acks come back on topic ack.<gateway_id>)."),
    PROTO_CONFIG_KEY_INT (
        "http_port", "3000", 1, 65535,
        "Where clients connect: HAProxy's port when front = haproxy, else the gateway's."),
    PROTO_CONFIG_KEY_STRING (
        "http_address", "",
        "Interface the gateway listens on (empty: all); deploy/up sets 127.0.0.1 behind "
        "HAProxy."),
    PROTO_CONFIG_KEY_INT (
        "http_threads", "128", 1, 1000,
        "Civetweb workers; each connection holds one (an open live stream as long as it is "
        "open)."),
    PROTO_CONFIG_KEY_INT ("http_request_timeout_ms", "5000", 100, 600000,
                          "A request's head and body must be in within this (slowloris)."),
    PROTO_CONFIG_KEY_INT ("ack_timeout_ms", "5000", 1, 600000,
                          "How long the gateway waits for the store's durable ack before 504."),
    PROTO_CONFIG_KEY_INT (
        "api_statement_timeout_ms", "5000", 0, 600000,
        "Every user API statement ends after this (504 query_timeout; 0 = no limit)."),
    PROTO_CONFIG_KEY_INT ("api_connections_per_user", "3", 1, 8,
                          "Pooled PostgreSQL connections (of 8) one signed-in user holds at once."),
    PROTO_CONFIG_KEY_STRING (
        "cors_origins", "",
        "Origins (scheme://host[:port], comma-separated) whose pages may call the API with "
        "a Bearer token."),
    PROTO_CONFIG_KEY_INT ("session_idle_seconds", "1209600", 60, 34560000,
                          "Sessions end 30 days after sign-in, or sooner when unused this long."),
    PROTO_CONFIG_KEY_INT ("stream_max", "0", 0, 1024,
                          "Open live streams in all (0: http_threads / 2)."),
    PROTO_CONFIG_KEY_INT ("stream_max_per_user", "8", 1, 1024, "Open live streams of one account."),
    PROTO_CONFIG_KEY_INT ("stream_max_per_address", "16", 1, 1024,
                          "Open live streams of one client address."),
    PROTO_CONFIG_KEY_STRING (
        "trusted_proxies", "",
        "Addresses and CIDRs of the reverse proxies in front (comma-separated); only their "
        "requests are believed about the client."),
    PROTO_CONFIG_KEY_STRING (
        "trusted_proxy_header", "X-Forwarded-For",
        "The header trusted proxies write: X-Forwarded-For or Forwarded (RFC 7239)."),
    PROTO_CONFIG_KEY_INT ("sensor_token_limit_burst", "20", 1, 1000000,
                          "Device tokens that matched nothing, per client address: bucket size."),
    PROTO_CONFIG_KEY_INT ("sensor_token_limit_per_hour", "600", 1, 100000000,
                          "... and attempts given back an hour."),
    PROTO_CONFIG_KEY_INT ("login_limit_burst", "20", 1, 1000000,
                          "Failed logins per address: bucket size."),
    PROTO_CONFIG_KEY_INT ("login_limit_per_hour", "600", 1, 100000000,
                          "... and attempts given back an hour."),
    PROTO_CONFIG_KEY_INT ("login_account_limit_burst", "10", 1, 1000000,
                          "Failed logins per account (from any address): bucket size."),
    PROTO_CONFIG_KEY_INT ("login_account_limit_per_hour", "12", 1, 100000000,
                          "... and attempts given back an hour."),
    PROTO_CONFIG_KEY_INT ("register_limit_burst", "20", 1, 1000000,
                          "Registrations (and taken-email answers) per address: bucket size."),
    PROTO_CONFIG_KEY_INT ("register_limit_per_hour", "20", 1, 100000000,
                          "... and attempts given back an hour."),
    //  Only deploy/up reads these (HAProxy in front of the gateway)
    PROTO_CONFIG_KEY_CHOICE (
        "front", "haproxy", "haproxy|none",
        "deploy/up: HAProxy in front of the gateway, or none (the gateway takes "
        "http_port)."),
    PROTO_CONFIG_KEY_INT (
        "gateway_port", NULL, 1, 65535,
        "deploy/up: the gateway's own port behind HAProxy (default http_port + 1000)."),
    PROTO_CONFIG_KEY_INT ("front_max_connections", "4096", 1, 1000000,
                          "deploy/up: connections HAProxy holds."),
    PROTO_CONFIG_KEY_INT ("front_max_connections_per_address", "64", 1, 1000000,
                          "deploy/up: open connections of one client address."),
    PROTO_CONFIG_KEY_INT ("front_keep_alive_ms", "5000", 1, 3600000,
                          "deploy/up: an idle client connection is closed after this."),
    //  Store
    PROTO_CONFIG_KEY_INT ("batch_max", "1000", 1, PROTO_ACKS_MAX,
                          "Store group commit: at most this many verdicts..."),
    PROTO_CONFIG_KEY_INT ("batch_ms", "2", 0, 1000, "... or this long per transaction."),
    PROTO_CONFIG_KEY_INT ("store_writers", "2", 1, 8,
                          "Store writer connections (lanes; a port always on the same one)."),
    PROTO_CONFIG_KEY_CHOICE (
        "store_synchronous_commit", "on", "on|off",
        "Never off in production: only the fault suite's negative control sets it."),
    PROTO_CONFIG_KEY_INT (
        "retention_days", "90", 0, 36500,
        "Raw readings partitions older than this are dropped once rolled up (0: keep)."),
    PROTO_CONFIG_KEY_INT ("rollup_retention_days", "730", 0, 36500,
                          "Per-minute rollups kept (0: keep)."),
    PROTO_CONFIG_KEY_INT ("rollup_lookback_minutes", "10", 1, 1440,
                          "Minutes re-rolled for all ports after a store start."),
    //  Detector
    PROTO_CONFIG_KEY_INT (
        "detector_offline_seconds", "300", 1, 604800,
        "A port with no reading for this long is offline (the API tells clients too)."),
    PROTO_CONFIG_KEY_INT ("detector_restore", "1", 0, 1,
                          "1: load status and open episodes of the partition's ports at start."),
    //  Notifier
    PROTO_CONFIG_KEY_INT ("notifier_cooldown_seconds", "600", 0, 604800,
                          "Per-port cool-down between notified episodes (and outages)."),
    PROTO_CONFIG_KEY_INT ("notifier_rcvhwm", "10000", 1, 10000000,
                          "Events the notifier queues before ZeroMQ drops (PUB/SUB)."),
    PROTO_CONFIG_KEY_INT ("notifier_webhook_batch", "32", 1, 1000,
                          "Webhook deliveries in flight at once..."),
    PROTO_CONFIG_KEY_INT ("notifier_webhook_per_user", "4", 1, 1000,
                          "... and of them one user's at most."),
    PROTO_CONFIG_KEY_INT ("notifier_webhook_timeout_ms", "5000", 100, 60000,
                          "One webhook delivery's bound."),
    PROTO_CONFIG_KEY_INT ("notifier_webhook_attempts", "8", 1, 30,
                          "Deliveries tried before one is given up."),
    PROTO_CONFIG_KEY_INT ("notifier_webhook_backoff_ms", "1000", 1, 3600000,
                          "First retry delay of a failed webhook delivery."),
    PROTO_CONFIG_KEY_INT ("notifier_digest_hour", "8", 0, 23,
                          "Local hour (user's time zone) from which yesterday's digest goes out."),
    //  Webhooks (gateway at creation, notifier at every delivery)
    PROTO_CONFIG_KEY_INT (
        "webhook_allow_private", "0", 0, 1,
        "1 lets webhooks reach loopback, private and CGNAT addresses (keep 0 on a public "
        "server)."),
    PROTO_CONFIG_KEY_STRING (
        "webhook_allow_cidrs", NULL,
        "Networks webhooks may reach whatever their kind, comma-separated CIDRs."),
    PROTO_CONFIG_KEY_STRING (
        "webhook_ca_file", NULL,
        "Tests only: the CAs trusted for https webhooks (default: the system store)."),
    //  MQTT: the broker (deploy/up) and the MQTT service (services/mqtt)
    PROTO_CONFIG_KEY_STRING (
        "mqtt_host", "127.0.0.1",
        "The broker's address: its listener, and where phantom-mqtt connects."),
    PROTO_CONFIG_KEY_INT ("mqtt_port", "1883", 1, 65535, "The broker's plain MQTT listener."),
    PROTO_CONFIG_KEY_INT ("mqtt_tls_port", "0", 0, 65535,
                          "The broker's TLS listener (0 = off); phantom-mqtt uses it when set."),
    PROTO_CONFIG_KEY_STRING ("mqtt_tls_cert", NULL, "The broker's TLS certificate (PEM)."),
    PROTO_CONFIG_KEY_STRING ("mqtt_tls_key", NULL, "... and its private key (PEM)."),
    PROTO_CONFIG_KEY_STRING (
        "mqtt_tls_ca", NULL,
        "The CA file of the TLS listener (mosquitto cafile), and the one phantom-mqtt "
        "checks the broker's certificate against; plugs log in with user and token."),
    PROTO_CONFIG_KEY_INT (
        "mqtt_metrics_port", "9883", 0, 65535,
        "phantom-mqtt serves Prometheus text on 127.0.0.1 here (instance i: + i; 0 = off)."),
    PROTO_CONFIG_KEY_INT ("mqtt_instances", "1", 1, 16,
                          "phantom-mqtt instances sharing the load (MQTT 5 shared subscriptions)."),
    PROTO_CONFIG_KEY_INT (
        "mqtt_window", "4096", 1, 16384,
        "phantom-mqtt: most readings queued or in flight per instance (then it stops "
        "reading the broker, which queues)."),
    PROTO_CONFIG_KEY_INT (
        "mqtt_batch", "1024", 1, 8192,
        "phantom-mqtt: most readings in one submit to the detectors (one ack wait)."),
    PROTO_CONFIG_KEY_STRING (
        "mqtt_service_secret_file", NULL,
        "phantom-mqtt's broker password, one line (default $PHANTOM_VAR/mqtt/service.secret; "
        "deploy/up writes it, mode 600)."),
    PROTO_CONFIG_KEY_STRING (
        "mqtt_reading_endpoint", "tcp://127.0.0.1:5650",
        "phantom-mqtt instance i binds its partitions as gateways do, at this port + i * "
        "partitions (ipc: path.i); deploy/up adds these to reading_endpoints."),
    PROTO_CONFIG_KEY_CHOICE (
        "mqtt_spool", "on", "on|off",
        "on: the broker's plugin writes each plug message to a local SQLite spool "
        "(mqtt/data/spool.db) before the broker acknowledges it, and publishes again "
        "what PostgreSQL has not stored (services/mqtt/auth/README.md)."),
    PROTO_CONFIG_KEY_INT (
        "mqtt_spool_delay", "30", 1, 3600,
        "Seconds after which a spooled message is first checked against reading_keys "
        "(then 2x, 4x, ... that)."),
    PROTO_CONFIG_KEY_INT (
        "mqtt_spool_tries", "5", 1, 100,
        "Checks that find a spooled message unstored before it is dropped and logged."),
    {NULL, PROTO_CONFIG_STRING, NULL, 0, 0, NULL, NULL}};
