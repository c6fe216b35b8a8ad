#!/usr/bin/env bash
# Build the libFuzzer targets (clang, ASan + UBSan) and run each for TARGET_SECONDS seconds.
#   scripts/fuzz.sh [TARGET_SECONDS]        default 60
# Env: BUILD_DIR (default build-fuzz), FUZZ_TARGETS (default: every tests/fuzz/fuzz_*.c),
#      FUZZ_JOBS (parallel build jobs, default 2).
# The committed seeds in tests/fuzz/corpus/<target>/ are read, never written: each run grows a working
# corpus under $BUILD_DIR/corpus/<target>/. Crash inputs land in $BUILD_DIR/crashes/<target>/.
# Exit status is non-zero if any target crashed, leaked or broke an invariant.
set -euo pipefail

seconds="${1:-60}"
src="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$src/build-fuzz}"
jobs="${FUZZ_JOBS:-2}"

if ! command -v clang >/dev/null; then
    echo "fuzz.sh: clang is required (libFuzzer)" >&2
    exit 2
fi

# -fsanitize=fuzzer-no-link gives the library the coverage instrumentation libFuzzer steers by; without
# it only the harness would be instrumented and the parsers would be fuzzed blind.
CC=clang cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFTC_FUZZ=ON -DPEFTC_SANITIZE=ON \
    -DCMAKE_C_FLAGS="-fsanitize=fuzzer-no-link" >/dev/null

targets="${FUZZ_TARGETS:-$(cd "$src/tests/fuzz" && ls fuzz_*.c | sed 's/\.c$//' | tr '\n' ' ')}"
# shellcheck disable=SC2086
cmake --build "$build" -j "$jobs" --target $targets >"$build/build.log" 2>&1 || { tail -n 40 "$build/build.log" >&2; exit 2; }

status=0
passed=0 failed=0
for t in $targets; do
    corpus="$build/corpus/$t"
    crashes="$build/crashes/$t"
    mkdir -p "$corpus" "$crashes"
    seeds="$src/tests/fuzz/corpus/$t"
    [ -d "$seeds" ] || seeds=""
    echo "== $t: ${seconds}s"
    if ! "$build/$t" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$crashes/" "$corpus" $seeds 2>"$build/$t.log"; then
        echo "!! $t failed; see $build/$t.log and $crashes/" >&2
        tail -n 40 "$build/$t.log" >&2
        status=1
        failed=$((failed + 1))
    else
        grep -E "stat::number_of_executed_units|stat::peak_rss_mb|cov:" "$build/$t.log" | tail -n 3
        passed=$((passed + 1))
    fi
done
echo "fuzz: $passed passed, $failed failed"
exit $status
