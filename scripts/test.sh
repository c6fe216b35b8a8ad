#!/usr/bin/env bash
# test.sh — the whole test suite from a fresh clone: installs dependencies, fetches the npm corpora and
# tokenizers, builds the shipped flags (Release) and an ASan+UBSan build, runs ctest on both (the sanitizer
# run skips the tests labelled slow), and runs every libFuzzer target for a minute (clang, ASan+UBSan).
#   PEFTC_SKIP_ASAN=1 scripts/test.sh   no sanitizer build
#   PEFTC_FUZZ_SECONDS=0 scripts/test.sh  no fuzzing (default 60 s per target)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
jobs="$(nproc 2>/dev/null || echo 2)"
# ctest runs $jobs tests at once and each test's OpenMP team wants every core. With libgomp's default waits
# (spin, then sleep) a waiting thread spins on a core another test needs: on a busy 2-core machine
# test_kernels_dropout took 21 s that way and 0.27 s with passive waits.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

scripts/install-deps.sh
scripts/fetch-data.sh --corpora --tokenizers

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")

if [ "${PEFTC_SKIP_ASAN:-0}" != "1" ]; then
    # Sanitizers catch what the Release run cannot: out-of-bounds reads on hostile files, leaks, UB.
    cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPEFTC_SANITIZE=ON >/dev/null
    cmake --build build-asan -j"$jobs"
    (cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ctest --output-on-failure -j"$jobs" -LE "slow|noasan")
fi

fuzz_seconds="${PEFTC_FUZZ_SECONDS:-60}"
if [ "$fuzz_seconds" != "0" ]; then
    scripts/fuzz.sh "$fuzz_seconds"
fi
