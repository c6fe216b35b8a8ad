#!/usr/bin/env bash
# Long local fuzzing, counted in CPU time: run one libFuzzer target (built by scripts/fuzz.sh) until it has
# used CPU_SECONDS of CPU (user + system), then stop it with SIGINT (libFuzzer exits cleanly and prints its
# final stats). Wall time is a poor measure on a shared machine: a fuzzer that waited for the cores has not
# fuzzed. The fuzzer runs in its own session at autogroup nice 19, so it only takes CPU nothing else wants,
# and it can be stopped and started again: the working corpus under $BUILD_DIR/corpus/<target>/ carries over,
# and the CPU seconds of the runs add up (docs/reliability.md keeps the totals).
#
#   scripts/fuzz.sh 1                                 # build every target (and run each for a second)
#   scripts/fuzz-long.sh fuzz_gguf 3600 [LOG_DIR]     # one hour of CPU for fuzz_gguf
#
# Prints one line when done: target, exit status, wall and CPU seconds, executions. Exit status: 0 after
# the clean stop, else the fuzzer's (a crash input is then in $BUILD_DIR/crashes/<target>/).
# -timeout=120: a unit is reported as a timeout after 120 s of wall time; at nice 19 under a busy machine
# an input that takes 0.5 s alone can wait far longer than libFuzzer's usual 10 s for the CPU.
set -uo pipefail

target="${1:?usage: fuzz-long.sh TARGET CPU_SECONDS [LOG_DIR]}"
limit="${2:?usage: fuzz-long.sh TARGET CPU_SECONDS [LOG_DIR]}"
src="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$src/build-fuzz}"
logs="${3:-$build/long}"
[ -x "$build/$target" ] || { echo "fuzz-long.sh: no $build/$target; run scripts/fuzz.sh first" >&2; exit 2; }
mkdir -p "$build/corpus/$target" "$build/crashes/$target" "$logs"
seeds="$src/tests/fuzz/corpus/$target"
[ -d "$seeds" ] || seeds=""

log="$logs/$target.$(date -u +%Y%m%dT%H%M%S).log"
start=$(date +%s)
# shellcheck disable=SC2086
setsid "$build/$target" -max_total_time=1000000 -rss_limit_mb=2048 -timeout=120 -print_final_stats=1 \
    -artifact_prefix="$build/crashes/$target/" "$build/corpus/$target" $seeds >"$log" 2>&1 &
pid=$!
echo 19 >"/proc/$pid/autogroup" 2>/dev/null || renice -n 19 -p "$pid" >/dev/null
trap 'kill -INT $pid 2>/dev/null' INT TERM

tck=$(getconf CLK_TCK)
cpu=0
while kill -0 "$pid" 2>/dev/null; do
    # fields 14 and 15 of /proc/PID/stat: user and system time in clock ticks
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) && cpu=$((ticks / tck))
    [ "$cpu" -ge "$limit" ] && kill -INT "$pid" 2>/dev/null
    sleep 5
done
wait "$pid"
status=$?
[ "$status" -eq 72 ] && status=0 # libFuzzer's exit code after SIGINT (-interrupted_exitcode): a clean stop
execs=$(grep -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
echo "$target: exit $status, wall $(($(date +%s) - start)) s, cpu ${cpu} s, ${execs:-?} executions, log $log"
exit $status
