#!/bin/sh
#  Hot-path bench of phantom-gateway alone: a fake detector+store acks at
#  once, wrk POSTs one valid reading per request. See ../BENCH.md.
#
#  bench.sh BUILD_DIR CONNINFO [SECONDS] [CONNECTIONS...]
#  e.g. bench.sh build "host=/tmp/pg port=5511 dbname=gwbench" 10 1 64
#  Ports: HTTP 3104, readings tcp://127.0.0.1:6140+i, acks 6150.
set -eu
build=$1; conninfo=$2; seconds=${3:-10}; shift 3 || shift $#
connections=${*:-1 64}
here=$(cd "$(dirname "$0")" && pwd)
bin=$build/services/gateway
#  DEVICES x PORTS known to the gateway (default 1 x 1); readings go to the first.
export BENCH_PORT=$("$bin/gateway_bench" seed "$conninfo" ${DEVICES:-1} ${PORTS:-1})
export BENCH_TOKEN=bench-token-1
[ -n "${THREADS:-}" ] && export PHANTOM_HTTP_THREADS=$THREADS
export PHANTOM_DATABASE="$conninfo" PHANTOM_HTTP_PORT=3104 PHANTOM_PARTITIONS=2 PHANTOM_GATEWAY_ID=gwbench \
       PHANTOM_READING_ENDPOINTS=tcp://127.0.0.1:6140 PHANTOM_ACK_ENDPOINT=tcp://127.0.0.1:6150
"$bin/gateway_bench" fake tcp://127.0.0.1:6140 2 tcp://127.0.0.1:6150 300 &
fake=$!
${PERF:-} "$bin/phantom-gateway" -c /dev/null 2>/tmp/gwbench-gateway.log &
gateway=$!
trap 'kill $gateway $fake 2>/dev/null; wait $gateway $fake 2>/dev/null || true' EXIT
for try in $(seq 50); do
    curl -sf http://127.0.0.1:3104/healthz >/dev/null && break
    sleep 0.1
done
for c in $connections; do
    threads=$(( c < 2 ? 1 : 2 ))
    echo "== $c connection(s), $seconds s"
    wrk -t$threads -c$c -d${seconds}s -s "$here/reading.lua" http://127.0.0.1:3104/api/sensor/reading
done
curl -s http://127.0.0.1:3104/metrics | grep 'readings_total{code="20[01]"}\|readings_total{code="5'
grep -E 'VmRSS|VmHWM' /proc/$gateway/status || true
