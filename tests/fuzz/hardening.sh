#!/usr/bin/env bash
# tests/fuzz/hardening.sh - the sanitizer and fuzz part of deploy/test:
#  1. build-asan (gcc, -DPHANTOM_SANITIZE=ON: ASan + UBSan): builds only the
#     unit tests' executables and runs the unit ctests (not integration,
#     fault, browser), aborting on the first sanitizer report;
#  2. one integration module (test_sensor: every service on the reading
#     path) against the ASan-built services; reports they write are failures;
#  3. fuzz smoke: deploy/fuzz 5 (each libFuzzer target 5 s on its seeds),
#     when clang is installed.
# Needs PHANTOM_TEST_DATABASE (deploy/test sets it). Exit 0 only if all ran clean.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
asan=${PHANTOM_ASAN_DIR:-$repo/build-asan}
jobs=${PHANTOM_TEST_JOBS:-2}
say() { printf '==> %s\n' "$*"; }
status=0
started=$SECONDS

# halt_on_error: gcc's UBSan would otherwise print and carry on, and the
# test would pass.
export ASAN_OPTIONS=abort_on_error=1:detect_leaks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$repo/tests/fuzz/lsan.supp

mkdir -p "$asan"
say "sanitizers: configuring $asan (ASan + UBSan)"
if ! cmake -S "$repo" -B "$asan" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPHANTOM_SANITIZE=ON \
        >"$asan/hardening-cmake.log" 2>&1; then
    cat "$asan/hardening-cmake.log" >&2
    say "sanitizers: FAILED to configure"
    exit 1
fi
labels='integration|fault|browser'
targets=$(python3 "$repo/tests/fuzz/unit_targets.py" "$asan" "$labels")
say "sanitizers: building $targets"
# shellcheck disable=SC2086
if ! cmake --build "$asan" -j"$jobs" --target $targets phantom-gateway phantom-detector \
        phantom-store phantom-notifier phantom_mqtt_auth >"$asan/hardening-build.log" 2>&1; then
    tail -n 40 "$asan/hardening-build.log" >&2
    say "sanitizers: FAILED to build (log $asan/hardening-build.log)"
    exit 1
fi

# gateway_cache and gateway_api_export assert RSS budgets that ASan's
# quarantine breaks (freed memory is held back, so a stream of 2 M rows
# grows by what it freed); they run on their own without quarantine
# (use-after-free is still caught, just not after the memory is reused).
budgets='^(gateway_cache|gateway_api_export)$'
say "sanitizers: unit tests in $asan"
ctest --test-dir "$asan" --output-on-failure -j"$jobs" --timeout 300 -LE "$labels" \
    -E "$budgets" || status=1
ASAN_OPTIONS=$ASAN_OPTIONS:quarantine_size_mb=0 \
    ctest --test-dir "$asan" --output-on-failure --timeout 300 -R "$budgets" || status=1

say "sanitizers: integration module test_sensor against the ASan services"
reports=$asan/sanitizer-reports
rm -rf "$reports" && mkdir -p "$reports"
(cd "$repo/tests/integration" && \
    PHANTOM_REPO=$repo PHANTOM_BUILD_DIR=$asan PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    ASAN_OPTIONS=$ASAN_OPTIONS:log_path=$reports/asan \
    UBSAN_OPTIONS=print_stacktrace=1:log_path=$reports/ubsan \
    timeout 300 python3 run.py test_sensor) || status=1
if grep -lsE 'ERROR: (Address|Leak)Sanitizer|runtime error' "$reports"/* >/dev/null; then
    say "sanitizers: services reported errors:"
    grep -hE -A30 'ERROR: (Address|Leak)Sanitizer|runtime error' "$reports"/* | head -n 120
    status=1
fi
say "sanitizers: $([ $status = 0 ] && echo ok || echo FAILED) ($((SECONDS - started)) s)"

if command -v clang >/dev/null; then
    say "fuzz smoke: each target ${PHANTOM_FUZZ_SMOKE_SECONDS:-5} s"
    "$repo/deploy/fuzz" "${PHANTOM_FUZZ_SMOKE_SECONDS:-5}" || status=1
else
    say "fuzz smoke: SKIPPED (no clang; deploy/packages.txt installs it)"
fi
say "hardening: $([ $status = 0 ] && echo ok || echo FAILED) ($((SECONDS - started)) s)"
exit "$status"
