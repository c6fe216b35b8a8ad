#!/usr/bin/env bash
# A config.json that claims 2^27 positions must cost nothing until those positions are used: the rotary
# tables grow on demand. Under a 2 GB address-space limit the eval of the golden model still gives the
# golden loss (eager tables for 2^27 positions would need ~6 GB and fail).
set -euo pipefail
src="${PEFTC_SOURCE_DIR:?}"
peftc="${PEFTC_BIN:?}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
d="$src/tests/golden/data/llama_gqa"
cp "$d/model/model.safetensors" "$work/"
sed 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 134217728/' "$d/model/config.json" >"$work/config.json"
pass=0 fail=0
if out=$( (ulimit -v 2000000; "$peftc" eval --model "$work" --data "$d/data.jsonl" --batch 2 --json) | tail -n 1); then
    loss=$(echo "$out" | sed -n 's/.*"loss":\([0-9.e+-]*\).*/\1/p')
    # The golden loss of llama_gqa (tests/golden/data/llama_gqa/golden.safetensors) is 6.0847878.
    if awk -v l="$loss" 'BEGIN { d = l - 6.0847878; if (d < 0) d = -d; exit !(d < 1e-5) }'; then pass=$((pass + 1)); else
        echo "FAIL: loss $loss, want 6.0847878"; fail=$((fail + 1)); fi
else
    echo "FAIL: eval with 2^27 declared positions failed under a 2 GB limit"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
