/*  =========================================================================
    bridge_config_keys - every key of phantom-bridge's own config file
    =========================================================================
*/
#include "bridge_config_keys.h"

const proto_config_key_t bridge_config_keys[] = {
    PROTO_CONFIG_KEY_STRING (
        "bridge_device", NULL,
        "Serial device path, e.g. /dev/ttyACM0, or a pty (required unless --drain or "
        "--fill)."),
    PROTO_CONFIG_KEY_INT ("bridge_baud", "9600", 1200, 230400,
                          "1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200 or 230400."),
    PROTO_CONFIG_KEY_STRING ("bridge_url", "http://127.0.0.1:3000",
                             "PhantomWatch base URL (the HAProxy front)."),
    PROTO_CONFIG_KEY_STRING ("bridge_device_token", NULL,
                             "The device token (Settings -> devices); required to upload."),
    PROTO_CONFIG_KEY_STRING (
        "bridge_channels", "",
        "Board channel -> port id: name=uuid,name=uuid. A JSON line without a channel key "
        "uses channel default."),
    PROTO_CONFIG_KEY_STRING ("bridge_spool", "var/bridge-spool.db",
                             "The spool (SQLite, WAL; -wal/-shm beside it)."),
    PROTO_CONFIG_KEY_INT ("bridge_spool_max_readings", "5000000", 1000, 1000000000,
                          "Bound; when full the oldest are dropped, counted and logged."),
    {"bridge_spool_sync", PROTO_CONFIG_CHOICE, "full", 0, 0, "full|normal|off",
     "full: fsync per spooled line; normal: WAL synced at checkpoints (may lose the last lines "
     "on a power cut, never on a crash); off: no fsync (negative control only)."},
    PROTO_CONFIG_KEY_INT ("bridge_batch", "1000", 1, BRIDGE_BATCH_LIMIT,
                          "Readings per POST (the gateway takes at most 1000)."),
    PROTO_CONFIG_KEY_INT ("bridge_http_timeout_ms", "15000", 100, 600000,
                          "One POST, connect included."),
    PROTO_CONFIG_KEY_INT ("bridge_backoff_min_ms", "500", 10, 600000,
                          "Retry back-off (doubling, full jitter) from this..."),
    PROTO_CONFIG_KEY_INT (
        "bridge_backoff_max_ms", "30000", 10, 3600000,
        "... to this (at least bridge_backoff_min_ms); a Retry-After is honoured as a floor."),
    PROTO_CONFIG_KEY_INT ("bridge_line_max", "512", 16, BRIDGE_LINE_MAX_LIMIT,
                          "Longer lines are rejected whole."),
    PROTO_CONFIG_KEY_STRING (
        "bridge_voltage_name", "vrms",
        "emonhub form: the field holding the voltage (case-insensitive; also v)."),
    PROTO_CONFIG_KEY_INT ("bridge_default_voltage", "230", 1, 1000,
                          "emonhub form when the line has no voltage."),
    PROTO_CONFIG_KEY_STRING (
        "bridge_metrics_address", "127.0.0.1:9109",
        "Prometheus text at /metrics; off disables it. Keep it on the loopback."),
    {NULL, PROTO_CONFIG_STRING, NULL, 0, 0, NULL, NULL}};
