#!/usr/bin/env bash
# A resumed run's metrics.jsonl reads as one run: the lines after its checkpoint (and a line a kill cut short)
# are dropped and trained again, so the steps and losses equal the uninterrupted run's. Also: without
# --seq-len, rows fit the model (the golden model has only 64 positions; the default is 256).
set -euo pipefail
src="${PEFTC_SOURCE_DIR:?}"
peftc="${PEFTC_BIN:?}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
d="$src/tests/golden/data/llama_gqa"
run() { "$peftc" train --model "$d/model" --data "$d/data.jsonl" --method lora --steps 6 --batch 2 --save-steps 3 \
    --seed 7 --quiet --out "$1" "${@:2}"; }
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi; }

run "$work/full"
# Simulate a run killed after step 5: checkpoint-3 exists, the final adapter does not, the log is ahead.
mkdir -p "$work/killed"
cp -r "$work/full/checkpoint-3" "$work/killed/"
head -n 5 "$work/full/metrics.jsonl" >"$work/killed/metrics.jsonl"
printf '{"kind": "train", "step": 6, "loss": 1' >>"$work/killed/metrics.jsonl"
run "$work/killed" --resume
steps_losses() { sed 's/"lr".*//' "$1"; }
check "metrics of the resumed run equal the uninterrupted run's" \
    'diff <(steps_losses "$work/full/metrics.jsonl") <(steps_losses "$work/killed/metrics.jsonl") >/dev/null'
check "resumed adapter is bit-identical" 'cmp -s "$work/full/adapter_model.safetensors" "$work/killed/adapter_model.safetensors"'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
