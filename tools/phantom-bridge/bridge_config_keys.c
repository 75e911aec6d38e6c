/*  =========================================================================
    bridge_config_keys - every key of phantom-bridge's own config file
    =========================================================================
*/
#include "bridge_config_keys.h"

const proto_config_key_t bridge_config_keys[] = {
    {"bridge_device", PROTO_CONFIG_STRING, NULL, 0, 0, NULL,
     "The board's device node, e.g. /dev/ttyACM0 (required unless --drain)."},
    {"bridge_baud", PROTO_CONFIG_INT, "9600", 1200, 230400, NULL,
     "The line's speed: 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200 or 230400."},
    {"bridge_url", PROTO_CONFIG_STRING, "http://127.0.0.1:3000", 0, 0, NULL,
     "Where PhantomWatch answers (its HAProxy front)."},
    {"bridge_device_token", PROTO_CONFIG_STRING, NULL, 0, 0, NULL,
     "The device token (Settings -> devices); required."},
    {"bridge_channels", PROTO_CONFIG_STRING, "", 0, 0, NULL,
     "Board channel -> port id, comma-separated name=uuid (\"default\" for lines without one)."},
    {"bridge_spool", PROTO_CONFIG_STRING, "var/bridge-spool.db", 0, 0, NULL,
     "The SQLite spool: every accepted line is committed here until the gateway's 201."},
    {"bridge_spool_max_readings", PROTO_CONFIG_INT, "5000000", 1000, 1000000000, NULL,
     "Beyond this the oldest spooled readings are dropped (and counted)."},
    {"bridge_spool_sync", PROTO_CONFIG_CHOICE, "full", 0, 0, "full|normal|off",
     "full: an fsync per line; normal: may lose the last lines to a power cut; off: tests "
     "only."},
    {"bridge_batch", PROTO_CONFIG_INT, "1000", 1, BRIDGE_BATCH_LIMIT, NULL, "Readings per upload."},
    {"bridge_http_timeout_ms", PROTO_CONFIG_INT, "15000", 100, 600000, NULL,
     "One upload's timeout."},
    {"bridge_backoff_min_ms", PROTO_CONFIG_INT, "500", 10, 600000, NULL,
     "First retry back-off (doubling, jittered; Retry-After is a floor)..."},
    {"bridge_backoff_max_ms", PROTO_CONFIG_INT, "30000", 10, 3600000, NULL,
     "... and the longest (at least bridge_backoff_min_ms)."},
    {"bridge_line_max", PROTO_CONFIG_INT, "512", 16, BRIDGE_LINE_MAX_LIMIT, NULL,
     "Lines longer than this are rejected whole."},
    {"bridge_voltage_name", PROTO_CONFIG_STRING, "vrms", 0, 0, NULL,
     "emonhub lines: the voltage field."},
    {"bridge_default_voltage", PROTO_CONFIG_INT, "230", 1, 1000, NULL,
     "emonhub lines: the voltage when a line has none."},
    {"bridge_metrics_address", PROTO_CONFIG_STRING, "127.0.0.1:9109", 0, 0, NULL,
     "Prometheus text at http://<this>/metrics (off: none); keep it on the loopback."},
    {NULL, PROTO_CONFIG_STRING, NULL, 0, 0, NULL, NULL}};
