#!/usr/bin/env bash
# --gradient-checkpointing through the CLI: `peftc train` on models/sotu-base (LoRA with dropout, 3 steps)
# succeeds with it and writes an adapter bit-identical to the run without it (same seed: recomputation draws
# the same dropout masks and runs the same arithmetic), with the same logged losses, and so does DoRA;
# `peftc bench --json`
# reports the setting and a smaller activation plan.
#   Env: PEFTC_SOURCE_DIR, PEFTC_BIN.
set -u
src="${PEFTC_SOURCE_DIR:?}"
peftc="${PEFTC_BIN:?}"
PY=/usr/bin/python3
work="$(mktemp -d /tmp/peftc_gc.XXXXXX)"
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1" >&2; fail=$((fail + 1)); fi; }

train() {
    "$peftc" train --model "$src/models/sotu-base" --data "$src/tests/data/prompt_completion.jsonl" --method lora \
        --r 4 --lora-dropout 0.1 --target-modules all-linear --steps 3 --batch 2 --seq-len 32 --seed 7 --quiet \
        --out "$1" "${@:2}" 2>"$1.err"
}
OMP_NUM_THREADS=1 train "$work/gc" --gradient-checkpointing
rc=$?
check "train --gradient-checkpointing exits 0 ($(cat "$work/gc.err"))" '[ $rc -eq 0 ]'
check "it writes an adapter" '[ -s "$work/gc/adapter_model.safetensors" ] && [ -s "$work/gc/adapter_config.json" ]'
OMP_NUM_THREADS=1 train "$work/plain"
rc=$?
check "train without the flag exits 0 ($(cat "$work/plain.err"))" '[ $rc -eq 0 ]'
check "the adapters are bit-identical" 'cmp -s "$work/gc/adapter_model.safetensors" "$work/plain/adapter_model.safetensors"'
losses() { sed 's/"tokens_per_s".*//' "$1"; }
check "the logged losses are identical" 'diff <(losses "$work/gc/metrics.jsonl") <(losses "$work/plain/metrics.jsonl") >/dev/null'
# DoRA: a checkpointed layer's recomputation reuses the step's weight norms (site params_unchanged); over
# 3 steps, norms kept from a step before would change the adapter.
OMP_NUM_THREADS=1 train "$work/dora_gc" --use-dora --gradient-checkpointing
rc=$?
check "DoRA train --gradient-checkpointing exits 0 ($(cat "$work/dora_gc.err"))" '[ $rc -eq 0 ]'
OMP_NUM_THREADS=1 train "$work/dora_plain" --use-dora
check "DoRA: the adapters are bit-identical" \
    'cmp -s "$work/dora_gc/adapter_model.safetensors" "$work/dora_plain/adapter_model.safetensors"'

cat >"$work/config.json" <<'JSON'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
 "num_key_value_heads": 2, "num_hidden_layers": 4, "vocab_size": 128, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true}
JSON
bench() { "$peftc" bench --config "$work/config.json" --method lora --r 4 --batch 2 --seq-len 32 --steps 1 --warmup 0 \
    --threads 1 --json "$@" 2>>"$work/bench.err"; }
bench --gradient-checkpointing >"$work/on.json"
rc=$?
check "bench --gradient-checkpointing exits 0 ($(cat "$work/bench.err"))" '[ $rc -eq 0 ]'
bench >"$work/off.json"
rc=$?
check "bench without the flag exits 0 ($(cat "$work/bench.err"))" '[ $rc -eq 0 ]'
"$PY" - "$work/on.json" "$work/off.json" <<'PYEOF'
import json, sys
on, off = (json.loads(open(p).read().strip().splitlines()[-1]) for p in sys.argv[1:3])
assert on["gradient_checkpointing"] is True and off["gradient_checkpointing"] is False, "the setting is reported"
assert 0 < on["activation_plan_mb"] < off["activation_plan_mb"], (on["activation_plan_mb"], off["activation_plan_mb"])
assert on["recompute_s"] > 0 and off["recompute_s"] == 0, (on["recompute_s"], off["recompute_s"])
PYEOF
rc=$?
check "bench --json: gradient_checkpointing, a smaller activation plan, recompute time" '[ $rc -eq 0 ]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
