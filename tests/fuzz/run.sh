#!/usr/bin/env bash
# tests/fuzz/run.sh BINARY SEEDS WORKDIR SECONDS - runs one libFuzzer target
# for SECONDS on SEEDS plus its own corpus WORKDIR/corpus (new inputs go
# there, never into SEEDS); crash/leak/timeout inputs land in
# WORKDIR/artifacts; tests/fuzz/BINARY-NAME.dict, when there is one, is its
# dictionary. Prints one summary line; exit status is libFuzzer's.
set -uo pipefail
binary=$1 seeds=$2 work=$3 seconds=$4
name=$(basename "$binary")
mkdir -p "$work/corpus" "$work/artifacts"
log=$work/last.log
dict=()
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -f "$here/$name.dict" ]; then dict=(-dict="$here/$name.dict"); fi
# -timeout: one input taking 10 s is a hang; -rss_limit_mb bounds memory.
"$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "${dict[@]}" \
    "$work/corpus" "$seeds" >"$log" 2>&1
status=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
corpus=$(find "$work/corpus" -type f | wc -l)
if [ "$status" -eq 0 ]; then
    echo "$name: ok, ${runs:-?} runs in ${seconds}s (${rate:-?} exec/s), ${cov:-cov: ?}, corpus $corpus"
else
    echo "$name: FAILED (status $status) after ${runs:-?} runs; log $log, artifacts $work/artifacts"
    grep -E 'ERROR|SUMMARY|check failed|#[0-9]+ 0x|Test unit written' "$log" | head -n 40
fi
exit "$status"
