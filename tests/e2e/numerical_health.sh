#!/usr/bin/env bash
# Numerical health of training (issue #7): a non-finite loss or gradient stops `peftc train` with one error
# line naming the step and writes no adapter; --skip-nonfinite skips exactly those steps, and never saves
# non-finite weights.
#
# The non-finite step is made transient and data-driven: the golden GPT-2 gets a position embedding of 3e38
# at position 10 (finite, so the loader accepts it); LayerNorm overflows there, so records of 11+ tokens have a
# NaN loss and shorter ones are fine. The independent check of "skipped": with SGD, a constant rate and
# --no-shuffle, records [short1, LONG, short3] with the LONG step skipped must give the same adapter bytes as
# records [short1, short3] trained without it.
#   Env: PEFTC_BIN, PEFTC_SOURCE_DIR. Needs python3 (stdlib only).
set -u
BIN="${PEFTC_BIN:?set PEFTC_BIN}"
SRC="${PEFTC_SOURCE_DIR:?set PEFTC_SOURCE_DIR}"
G="$SRC/tests/golden/data"
work="$(mktemp -d /tmp/peftc_numerical.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
passed=0
failed=0
check() { # check CONDITION_STATUS MESSAGE
    if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $2" >&2; fi
}
one_error_line() { # FILE PATTERN: exactly one line, "peftc: error: " + PATTERN
    [ "$(wc -l <"$1")" -eq 1 ] && grep -q "^peftc: error: .*$2" "$1"
}

# The model with the overflowing position.
cp -r "$G/gpt2/model" "$work/gpt2_big"
python3 - "$SRC/tests/hostile" "$work/gpt2_big/model.safetensors" <<'EOF'
import struct, sys
sys.path.insert(0, sys.argv[1])
import st_edit
path = sys.argv[2]
header, data = st_edit.read(path)
tensors = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items() if k != "__metadata__"}
name = "transformer.wpe.weight"
cols = header[name]["shape"][1]
row = bytearray(tensors[name])
for j in range(cols):
    struct.pack_into("<f", row, 4 * (10 * cols + j), 3.0e38)
tensors[name] = bytes(row)
st_edit.write(path, header, tensors)
EOF
S1='{"input_ids": [1, 2, 3, 4, 5, 6]}'
LONG='{"input_ids": [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]}'
S3='{"input_ids": [20, 21, 22, 23, 24]}'
printf '%s\n%s\n%s\n' "$S1" "$LONG" "$S3" >"$work/with_long.jsonl"
printf '%s\n%s\n' "$S1" "$S3" >"$work/without_long.jsonl"
sgd() { # sgd DATA OUT STEPS [options]
    local data=$1 out=$2 steps=$3
    shift 3
    "$BIN" train --model "$work/gpt2_big" --data "$data" --method lora --r 4 --optim sgd --lr 0.5 --steps "$steps" \
        --batch 1 --seq-len 16 --no-shuffle --seed 3 --out "$out" "$@"
}

# 1. The setup is what it claims: the short records are finite, the long one is not.
"$BIN" eval --model "$work/gpt2_big" --data "$work/without_long.jsonl" --seq-len 16 >/dev/null 2>&1
check $? "eval of the short records should succeed"
printf '%s\n' "$LONG" >"$work/long.jsonl"
"$BIN" eval --model "$work/gpt2_big" --data "$work/long.jsonl" --seq-len 16 >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && grep -q "not finite" "$work/err"
check $? "eval of the long record should fail as non-finite (rc $rc: $(cat "$work/err"))"

# 2. Without --skip-nonfinite: stop at step 2, name it, write no adapter.
sgd "$work/with_long.jsonl" "$work/stop" 3 --quiet >"$work/out" 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_error_line "$work/err" "step 2: .*not finite"
check $? "non-finite step 2 should stop with one line naming step 2 (rc $rc: $(cat "$work/err"))"
[ ! -e "$work/stop/adapter_model.safetensors" ] && [ ! -e "$work/stop/adapter_config.json" ] && [ ! -s "$work/out" ]
check $? "a stopped run must not write an adapter"

# 3. With --skip-nonfinite: step 2 is skipped, reported, logged; the result equals training without it.
sgd "$work/with_long.jsonl" "$work/skip" 3 --skip-nonfinite >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 0 ] && grep -q "step 2: non-finite gradient, step skipped" "$work/err"
check $? "--skip-nonfinite should finish and report step 2 skipped (rc $rc: $(cat "$work/err"))"
sgd "$work/without_long.jsonl" "$work/ref" 2 --quiet >/dev/null 2>"$work/err"
check $? "reference run without the long record failed: $(cat "$work/err")"
cmp -s "$work/skip/adapter_model.safetensors" "$work/ref/adapter_model.safetensors"
check $? "the skipped step changed something: adapter differs from training without that record"
python3 - "$work/skip/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]  # every line must be valid JSON, NaN included
kinds = [(r["kind"], r["step"]) for r in rows]
assert ("skip", 2) in kinds and ("train", 1) in kinds and ("train", 3) in kinds, kinds
assert [r for r in rows if r["kind"] == "skip"][0]["loss"] is None
EOF
check $? "metrics.jsonl should be valid JSON with a 'skip' row for step 2 (loss null)"

# 4. Gradient accumulation: a non-finite micro-batch skips the whole step (2 micro-batches: LONG + S3).
sgd "$work/with_long.jsonl" "$work/accum" 2 --grad-accum 2 --quiet >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_error_line "$work/err" "step 1: .*not finite"
check $? "accumulated step with a non-finite micro-batch should stop at step 1 (rc $rc: $(cat "$work/err"))"

# 5. NaN in lora_B of --init-adapter: the first step's gradient is NaN; stop and say so.
cp -r "$G/lora_llama/adapter" "$work/nan_adapter"
python3 "$SRC/tests/hostile/st_edit.py" "$work/nan_adapter/adapter_model.safetensors" poke \
    base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight 5 nan
llama() {
    "$BIN" train --model "$G/llama_gqa/model" --data "$G/llama_gqa/data.jsonl" --init-adapter "$work/nan_adapter" \
        --steps 2 --batch 2 --seq-len 16 --quiet "$@"
}
llama --out "$work/nan_stop" >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_error_line "$work/err" "step 1: .*not finite"
check $? "NaN lora_B should stop at step 1 (rc $rc: $(cat "$work/err"))"
[ ! -e "$work/nan_stop/adapter_model.safetensors" ]
check $? "NaN lora_B: no adapter may be written"

# 6. ... and --skip-nonfinite must not turn that into a saved NaN adapter (or NaN checkpoint).
llama --out "$work/nan_skip" --skip-nonfinite --save-steps 1 >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_error_line "$work/err" "not finite"
check $? "NaN lora_B with --skip-nonfinite should fail, not save NaN (rc $rc: $(cat "$work/err"))"
[ ! -e "$work/nan_skip/adapter_model.safetensors" ] && ! ls -d "$work/nan_skip"/checkpoint-* >/dev/null 2>&1
check $? "NaN lora_B with --skip-nonfinite: no adapter and no checkpoint may be written"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
