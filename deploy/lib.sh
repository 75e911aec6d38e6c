# deploy/lib.sh - shared by deploy/up, down, ctl, test and migrate.
# Sourcing it defines functions and PW_REPO; it starts nothing.
# shellcheck shell=bash

PW_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PG_BIN=/usr/lib/postgresql/15/bin
PW_DB_ROLE=phantomwatch

say() { printf '==> %s\n' "$*"; }
warn() { printf 'deploy: %s\n' "$*" >&2; }
die() { printf 'deploy: error: %s\n' "$*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly, or through sudo for a non-root user.
as_root() {
    if is_root; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "needs root for: $* (run as root or install sudo)"
    fi
}

# Short stable name for a path, for /tmp paths that stand in for long ones.
path_hash() { printf '%s' "$1" | sha256sum | cut -c1-10; }

# Value of key in the shared config file, or default.
conf_get() {
    local value
    value=$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*\\(.*[^[:space:]]\\)[[:space:]]*\$/\\1/p" \
            "$PHANTOM_CONFIG" 2>/dev/null | tail -n 1)
    printf '%s' "${value:-$2}"
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# Effective settings: environment, else the shared config, else defaults.
# ZeroMQ endpoints always follow PHANTOM_ZMQ_PORT_BASE, so stacks with
# different bases never share a port.
pw_settings() {
    PHANTOM_REPO=$PW_REPO
    PHANTOM_VAR=$(realpath -m "${PHANTOM_VAR:-$PW_REPO/var}")
    PHANTOM_BUILD_DIR=$(realpath -m "${PHANTOM_BUILD_DIR:-$PW_REPO/build}")
    PHANTOM_CONFIG=$(realpath -m "${PHANTOM_CONFIG:-$PW_REPO/deploy/phantomwatch.conf}")
    PHANTOM_HTTP_PORT=${PHANTOM_HTTP_PORT:-$(conf_get http_port 3000)}
    PHANTOM_PG_PORT=${PHANTOM_PG_PORT:-5433}
    PHANTOM_ZMQ_PORT_BASE=${PHANTOM_ZMQ_PORT_BASE:-5500}
    PHANTOM_PARTITIONS=${PHANTOM_PARTITIONS:-$(conf_get partitions 2)}
    PHANTOM_SIMULATOR=${PHANTOM_SIMULATOR:-1}
    PHANTOM_SEED=${PHANTOM_SEED:-1}
    PHANTOM_SKIP_INSTALL=${PHANTOM_SKIP_INSTALL:-0}
    PHANTOM_SKIP_BUILD=${PHANTOM_SKIP_BUILD:-0}
    PHANTOM_CURVE=${PHANTOM_CURVE:-$(conf_get curve 0)}
    PHANTOM_CURVE_DIR=$(realpath -m "${PHANTOM_CURVE_DIR:-$PHANTOM_VAR/curve}")
    [ "$PHANTOM_CURVE" = 0 ] || [ "$PHANTOM_CURVE" = 1 ] || die "PHANTOM_CURVE must be 0 or 1"
    # HAProxy in front of the gateway (deploy/phantomwatch.conf, "front").
    PHANTOM_FRONT=${PHANTOM_FRONT:-$(conf_get front haproxy)}
    [ "$PHANTOM_FRONT" = haproxy ] || [ "$PHANTOM_FRONT" = none ] \
        || die "PHANTOM_FRONT must be haproxy or none, not '$PHANTOM_FRONT'"
    PHANTOM_HTTP_THREADS=${PHANTOM_HTTP_THREADS:-$(conf_get http_threads 128)}
    PHANTOM_HTTP_REQUEST_TIMEOUT_MS=${PHANTOM_HTTP_REQUEST_TIMEOUT_MS:-$(conf_get http_request_timeout_ms 5000)}
    PHANTOM_FRONT_MAX_CONNECTIONS=${PHANTOM_FRONT_MAX_CONNECTIONS:-$(conf_get front_max_connections 4096)}
    PHANTOM_FRONT_MAX_CONNECTIONS_PER_ADDRESS=${PHANTOM_FRONT_MAX_CONNECTIONS_PER_ADDRESS:-$(conf_get front_max_connections_per_address 64)}
    PHANTOM_FRONT_KEEP_ALIVE_MS=${PHANTOM_FRONT_KEEP_ALIVE_MS:-$(conf_get front_keep_alive_ms 5000)}
    # Reverse proxies in front of the stack; the front adds itself for the gateway.
    PHANTOM_TRUSTED_PROXIES=${PHANTOM_TRUSTED_PROXIES:-$(conf_get trusted_proxies "")}
    [[ $PHANTOM_TRUSTED_PROXIES =~ ^[0-9A-Fa-f.:/,\ ]*$ ]] \
        || die "trusted_proxies must list addresses and CIDRs, not '$PHANTOM_TRUSTED_PROXIES'"

    # The broker (deploy/mosquitto.conf.in).
    PHANTOM_MQTT_HOST=${PHANTOM_MQTT_HOST:-$(conf_get mqtt_host 127.0.0.1)}
    PHANTOM_MQTT_PORT=${PHANTOM_MQTT_PORT:-$(conf_get mqtt_port 1883)}
    PHANTOM_MQTT_TLS_PORT=${PHANTOM_MQTT_TLS_PORT:-$(conf_get mqtt_tls_port 0)}
    PHANTOM_MQTT_TLS_CERT=${PHANTOM_MQTT_TLS_CERT:-$(conf_get mqtt_tls_cert "")}
    PHANTOM_MQTT_TLS_KEY=${PHANTOM_MQTT_TLS_KEY:-$(conf_get mqtt_tls_key "")}
    PHANTOM_MQTT_TLS_CA=${PHANTOM_MQTT_TLS_CA:-$(conf_get mqtt_tls_ca "")}
    # The plugin's spool (services/mqtt/auth/README.md).
    PHANTOM_MQTT_SPOOL=${PHANTOM_MQTT_SPOOL:-$(conf_get mqtt_spool on)}
    PHANTOM_MQTT_SPOOL_DELAY=${PHANTOM_MQTT_SPOOL_DELAY:-$(conf_get mqtt_spool_delay 30)}
    PHANTOM_MQTT_SPOOL_TRIES=${PHANTOM_MQTT_SPOOL_TRIES:-$(conf_get mqtt_spool_tries 5)}
    [[ $PHANTOM_MQTT_SPOOL =~ ^(on|off)$ ]] || die "mqtt_spool must be on or off, not '$PHANTOM_MQTT_SPOOL'"
    # The MQTT service's broker secret (mode 600); the broker knows its hash.
    PHANTOM_MQTT_SECRET_FILE=$PHANTOM_VAR/mqtt/service.secret
    [[ $PHANTOM_MQTT_HOST =~ ^[A-Za-z0-9.:-]+$ ]] || die "mqtt_host must be an address, not '$PHANTOM_MQTT_HOST'"

    local name
    for name in PHANTOM_HTTP_PORT PHANTOM_PG_PORT PHANTOM_ZMQ_PORT_BASE PHANTOM_PARTITIONS \
                PHANTOM_HTTP_THREADS PHANTOM_HTTP_REQUEST_TIMEOUT_MS PHANTOM_FRONT_MAX_CONNECTIONS \
                PHANTOM_FRONT_MAX_CONNECTIONS_PER_ADDRESS PHANTOM_FRONT_KEEP_ALIVE_MS \
                PHANTOM_MQTT_PORT PHANTOM_MQTT_TLS_PORT PHANTOM_MQTT_SPOOL_DELAY PHANTOM_MQTT_SPOOL_TRIES; do
        is_uint "${!name}" || die "$name must be a number, not '${!name}'"
    done
    # The gateway's own port: behind the front a loopback port of its own
    # (default http_port + 1000), else http_port itself.
    if [ "$PHANTOM_FRONT" = haproxy ]; then
        local internal=$((PHANTOM_HTTP_PORT + 1000))
        [ "$internal" -le 65535 ] || internal=$((PHANTOM_HTTP_PORT - 1000))
        PHANTOM_GATEWAY_PORT=${PHANTOM_GATEWAY_PORT:-$(conf_get gateway_port "$internal")}
        is_uint "$PHANTOM_GATEWAY_PORT" && [ "$PHANTOM_GATEWAY_PORT" != "$PHANTOM_HTTP_PORT" ] \
            || die "PHANTOM_GATEWAY_PORT must be a port other than PHANTOM_HTTP_PORT, not '$PHANTOM_GATEWAY_PORT'"
    else
        PHANTOM_GATEWAY_PORT=$PHANTOM_HTTP_PORT
    fi
    [ "$PHANTOM_PARTITIONS" -ge 1 ] && [ "$PHANTOM_PARTITIONS" -le 64 ] \
        || die "PHANTOM_PARTITIONS must be 1..64"
    # These paths go unquoted into supervisord's config.
    for name in PHANTOM_REPO PHANTOM_VAR PHANTOM_BUILD_DIR PHANTOM_CONFIG PHANTOM_CURVE_DIR; do
        [[ ${!name} =~ ^[A-Za-z0-9/._+-]+$ ]] \
            || die "$name '${!name}' has characters the generated configs cannot quote; use a plain path"
    done

    # One host: unix sockets (ipc) by default, cheaper per message than
    # loopback TCP (BENCHMARKS.md); tcp for services spread over hosts.
    PHANTOM_ZMQ_TRANSPORT=${PHANTOM_ZMQ_TRANSPORT:-ipc}
    local base=$PHANTOM_ZMQ_PORT_BASE
    case $PHANTOM_ZMQ_TRANSPORT in
    ipc)
        # A unix socket path must fit in 108 bytes (with "-<partition>").
        PHANTOM_ZMQ_DIR=$PHANTOM_VAR/zmq
        [ ${#PHANTOM_ZMQ_DIR} -le 80 ] || PHANTOM_ZMQ_DIR=/tmp/phantomwatch-$(path_hash "$PHANTOM_VAR")-zmq
        PHANTOM_VERDICT_ENDPOINT=ipc://$PHANTOM_ZMQ_DIR/verdict
        PHANTOM_ACK_ENDPOINT=ipc://$PHANTOM_ZMQ_DIR/ack
        PHANTOM_READING_ENDPOINTS=ipc://$PHANTOM_ZMQ_DIR/reading
        PHANTOM_EVENT_ENDPOINT=ipc://$PHANTOM_ZMQ_DIR/event
        ;;
    tcp)
        PHANTOM_ZMQ_DIR=
        PHANTOM_VERDICT_ENDPOINT=tcp://127.0.0.1:$base
        PHANTOM_ACK_ENDPOINT=tcp://127.0.0.1:$((base + 1))
        PHANTOM_READING_ENDPOINTS=tcp://127.0.0.1:$((base + 100))
        PHANTOM_EVENT_ENDPOINT=tcp://127.0.0.1:$((base + 200))
        ;;
    *) die "PHANTOM_ZMQ_TRANSPORT must be ipc or tcp, not '$PHANTOM_ZMQ_TRANSPORT'" ;;
    esac

    # phantom-mqtt (services/mqtt): instance i binds its partitions like a
    # gateway, at PHANTOM_MQTT_READING_ENDPOINT's port + i * partitions
    # (ipc: path.i); the detectors connect to those besides the gateway's.
    PHANTOM_MQTT_INSTANCES=${PHANTOM_MQTT_INSTANCES:-$(conf_get mqtt_instances 1)}
    PHANTOM_MQTT_METRICS_PORT=${PHANTOM_MQTT_METRICS_PORT:-$(conf_get mqtt_metrics_port 9883)}
    local mqtt_i
    if [ -n "$PHANTOM_ZMQ_DIR" ]; then
        PHANTOM_MQTT_READING_ENDPOINT=ipc://$PHANTOM_ZMQ_DIR/mqtt
        for ((mqtt_i = 0; mqtt_i < PHANTOM_MQTT_INSTANCES; mqtt_i++)); do
            PHANTOM_READING_ENDPOINTS+=,$PHANTOM_MQTT_READING_ENDPOINT.$mqtt_i
        done
    else
        PHANTOM_MQTT_READING_ENDPOINT=tcp://127.0.0.1:$((base + 300))
        for ((mqtt_i = 0; mqtt_i < PHANTOM_MQTT_INSTANCES; mqtt_i++)); do
            PHANTOM_READING_ENDPOINTS+=,tcp://127.0.0.1:$((base + 300 + mqtt_i * PHANTOM_PARTITIONS))
        done
    fi
    export PHANTOM_MQTT_INSTANCES PHANTOM_MQTT_METRICS_PORT PHANTOM_MQTT_READING_ENDPOINT

    SV_CONF=$PHANTOM_VAR/supervisord.conf
    SV_SOCK=$PHANTOM_VAR/supervisor.sock
    # A unix socket path must fit in 108 bytes.
    [ ${#SV_SOCK} -le 100 ] || SV_SOCK=/tmp/phantomwatch-$(path_hash "$PHANTOM_VAR")-supervisor.sock
    export PHANTOM_REPO PHANTOM_VAR PHANTOM_BUILD_DIR PHANTOM_CONFIG PHANTOM_HTTP_PORT \
           PHANTOM_PG_PORT PHANTOM_ZMQ_PORT_BASE PHANTOM_PARTITIONS PHANTOM_SIMULATOR \
           PHANTOM_SEED PHANTOM_SKIP_INSTALL PHANTOM_SKIP_BUILD PHANTOM_VERDICT_ENDPOINT \
           PHANTOM_ACK_ENDPOINT PHANTOM_READING_ENDPOINTS PHANTOM_EVENT_ENDPOINT \
           PHANTOM_CURVE PHANTOM_CURVE_DIR PHANTOM_ZMQ_TRANSPORT PHANTOM_ZMQ_DIR PHANTOM_FRONT \
           PHANTOM_GATEWAY_PORT PHANTOM_MQTT_HOST PHANTOM_MQTT_PORT PHANTOM_MQTT_TLS_PORT \
           PHANTOM_MQTT_SECRET_FILE
}

# The service settings every program gets (keys of deploy/phantomwatch.conf).
PW_SERVICE_VARS=(PHANTOM_DATABASE PHANTOM_HTTP_PORT PHANTOM_PARTITIONS PHANTOM_VERDICT_ENDPOINT
                 PHANTOM_ACK_ENDPOINT PHANTOM_READING_ENDPOINTS PHANTOM_EVENT_ENDPOINT
                 PHANTOM_CURVE PHANTOM_CURVE_DIR PHANTOM_MQTT_HOST PHANTOM_MQTT_PORT
                 PHANTOM_MQTT_TLS_PORT)

shell_quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# $PHANTOM_VAR/phantomwatch.env: every effective PHANTOM_* as sourceable
# exports. It holds the database password, hence mode 600.
pw_write_env() {
    local file=$PHANTOM_VAR/phantomwatch.env name
    install -m 600 /dev/null "$file.tmp"
    {
        echo "# Written by deploy/up; source it to talk to this stack."
        for name in PHANTOM_REPO PHANTOM_VAR PHANTOM_BUILD_DIR PHANTOM_CONFIG PHANTOM_PG_DIR \
                    PHANTOM_PG_PORT PHANTOM_ZMQ_PORT_BASE PHANTOM_ZMQ_TRANSPORT PHANTOM_SIMULATOR \
                    PHANTOM_SEED PHANTOM_FRONT PHANTOM_GATEWAY_PORT PHANTOM_MQTT_SECRET_FILE \
                    "${PW_SERVICE_VARS[@]}"; do
            echo "export $name=$(shell_quote "${!name}")"
        done
        echo "export PHANTOM_GATEWAY_URL=$(shell_quote "http://127.0.0.1:$PHANTOM_HTTP_PORT")"
    } >>"$file.tmp"
    mv "$file.tmp" "$file"
}

# --- Debian packages ------------------------------------------------------

pw_install_packages() {
    local pkg missing=()
    local entry command
    for entry in $(sed 's/#.*//' "$PW_REPO/deploy/packages.txt"); do
        # "package:command" is satisfied by that command on PATH too (npm
        # ships inside some nodejs builds, and Debian's npm would conflict).
        pkg=${entry%%:*} command=${entry#*:}
        [ "$command" != "$entry" ] && command -v "$command" >/dev/null && continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" </dev/null
}

# --- build ------------------------------------------------------------------

pw_build() {
    say "building in $PHANTOM_BUILD_DIR"
    cmake -S "$PW_REPO" -B "$PHANTOM_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
    cmake --build "$PHANTOM_BUILD_DIR" -j"${PHANTOM_BUILD_JOBS:-2}"
}

# Path of a built executable, by name, anywhere under the build directory.
pw_binary() {
    find "$PHANTOM_BUILD_DIR" -type f -name "$1" -perm -u+x -not -path '*/CMakeFiles/*' 2>/dev/null | head -n 1
}

# --- private PostgreSQL clusters ---------------------------------------------
# Layout of a cluster directory D: D/data (the cluster, owned by the OS user
# that runs PostgreSQL, mode 700), D/log/postgresql.log, D/password (the
# phantomwatch role's password, mode 600), D/run (unix socket) unless that
# path is too long, then /tmp/phantomwatch-<hash>.
# PostgreSQL refuses to run as root: as root we run it as the `postgres`
# system user; as anyone else, as that user.

pg_os_user() { if is_root; then echo postgres; else id -un; fi; }

# The postgresql-15 package creates the postgres user; make sure it exists.
pg_user_ensure() {
    if is_root && ! id postgres >/dev/null 2>&1; then
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/sh postgres
    fi
}

# Runs a command as the cluster's OS user, from / (it may not be allowed into
# the caller's working directory).
pg_run() {
    if is_root; then (cd / && runuser -u postgres -- "$@")
    else (cd / && "$@")
    fi
}

# Cluster directory for name (pg, test-pg): under PHANTOM_VAR when the
# postgres user can reach it, else under /var/tmp (a clone below /root, mode
# 700, is common on CI machines).
pg_dir() {
    if pg_run test -x "$PHANTOM_VAR"; then
        echo "$PHANTOM_VAR/$1"
    else
        echo "/var/tmp/phantomwatch-$(path_hash "$PHANTOM_VAR")/$1"
    fi
}

pg_sockdir() {
    local dir=$1/run
    [ ${#dir} -le 90 ] || dir=/tmp/phantomwatch-$(path_hash "$1")
    echo "$dir"
}

pg_running() { [ -f "$1/data/PG_VERSION" ] && pg_run "$PG_BIN/pg_ctl" -D "$1/data" status >/dev/null 2>&1; }

# Creates (once) and configures the cluster in dir for port.
pg_ensure() {
    local dir=$1 port=$2 user sock
    user=$(pg_os_user)
    pg_user_ensure
    sock=$(pg_sockdir "$dir")
    mkdir -p "$dir" "$dir/log" "$sock"
    chmod 755 "$dir" "$sock"
    chown "$user" "$dir/log" "$sock"
    pg_run test -x "$dir" || die "the $user user cannot reach $dir: give its parent directories o+x, or set PHANTOM_VAR to a path under /var/tmp"

    if [ ! -f "$dir/data/PG_VERSION" ]; then
        say "initialising PostgreSQL cluster $dir/data"
        mkdir -p "$dir/data"
        chown "$user" "$dir/data"
        chmod 700 "$dir/data"
        pg_run "$PG_BIN/initdb" -D "$dir/data" -U "$user" -E UTF8 --locale=C.UTF-8 \
            --auth-local=peer --auth-host=scram-sha-256 >"$dir/log/initdb.log" \
            || die "initdb failed; see $dir/log/initdb.log"
        echo "include = 'phantomwatch.conf'" | pg_run tee -a "$dir/data/postgresql.conf" >/dev/null
    fi

    # A quarter of the memory, at most 2 GB: ingest touches every index's
    # hot pages, and with too few buffers the writers evict dirty pages
    # themselves (BENCHMARKS.md: 256 MB cost a fifth of the batch rate).
    local mem_mb buffers_mb
    mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo)
    buffers_mb=$((mem_mb / 4))
    [ "$buffers_mb" -le 2048 ] || buffers_mb=2048
    [ "$buffers_mb" -ge 128 ] || buffers_mb=128

    # Rewritten on every start so a changed port or socket path takes effect.
    pg_run tee "$dir/data/phantomwatch.conf" >/dev/null <<EOF
# Written by deploy/lib.sh on every start; edit there.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
# The durability promise: a 201 means the reading is on disk.
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = ${buffers_mb}MB
max_connections = 200
wal_compression = lz4          # "on" with the cheapest compressor
wal_buffers = 16MB
# Ingest writes steadily: spread checkpoints, keep enough WAL between them.
checkpoint_timeout = 15min
checkpoint_completion_target = 0.9
max_wal_size = 4GB
min_wal_size = 512MB
timezone = 'UTC'
log_timezone = 'UTC'
EOF
    # The superuser only by peer (same OS user); the application role by password.
    pg_run tee "$dir/data/pg_hba.conf" >/dev/null <<EOF
# Written by deploy/lib.sh.
local  all  $user                 peer
local  all  all                   scram-sha-256
host   all  all  127.0.0.1/32     scram-sha-256
EOF
    if [ ! -s "$dir/password" ]; then
        (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$dir/password")
    fi
}

pg_start() {
    local dir=$1 port=$2
    if pg_running "$dir"; then
        # Line 4 of postmaster.pid is the port it listens on.
        [ "$(sed -n 4p "$dir/data/postmaster.pid" 2>/dev/null)" = "$port" ] && return 0
        say "PostgreSQL port changed: restarting $dir"
        pg_stop "$dir"
    fi
    say "starting PostgreSQL on 127.0.0.1:$port ($dir)"
    pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log/postgresql.log" -w -t 60 -s start \
        || { tail -n 20 "$dir/log/postgresql.log" >&2; die "PostgreSQL did not start"; }
}

pg_stop() {
    local dir=$1
    pg_running "$dir" || return 0
    say "stopping PostgreSQL ($dir)"
    pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w -t 30 -s stop \
        || pg_run "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate -w -t 15 -s stop \
        || warn "PostgreSQL in $dir did not stop"
}

# Creates role phantomwatch (password from dir/password) and database db
# owned by it, dropping db first with "fresh"; prints the conninfo.
pg_database() {
    local dir=$1 port=$2 db=$3 fresh=${4:-} user password
    user=$(pg_os_user)
    password=$(cat "$dir/password")
    pg_run "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$(pg_sockdir "$dir")" -p "$port" \
        -U "$user" -d postgres -v pw="$password" -v db="$db" -v fresh="${fresh:-no}" >/dev/null <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'phantomwatch') AS missing \gset
\if :missing
CREATE ROLE phantomwatch LOGIN;
\endif
ALTER ROLE phantomwatch WITH LOGIN PASSWORD :'pw';
\if :fresh
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
\endif
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS missing \gset
\if :missing
CREATE DATABASE :"db" OWNER phantomwatch;
\endif
SQL
    printf "host='%s' port=%s dbname=%s user=%s password=%s" \
        "$(pg_sockdir "$dir")" "$port" "$db" "$PW_DB_ROLE" "$password"
}

# --- supervisord ------------------------------------------------------------

ctl() { supervisorctl -c "$SV_CONF" "$@"; }

sv_running() { [ -S "$SV_SOCK" ] && ctl pid >/dev/null 2>&1; }

# A supervisord environment= value holding the named variables; '%' is
# special to supervisord.
sv_environment() {
    local name out="" value
    for name in "$@"; do
        value=${!name}
        value=${value//%/%%}
        out+="${out:+,}${name}=\"${value//\"/\\\"}\""
    done
    printf '%s' "$out"
}
