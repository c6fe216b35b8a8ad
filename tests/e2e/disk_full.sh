#!/usr/bin/env bash
# Write failure through the CLI (issue #7): with the file-size limit (ulimit -f, SIGXFSZ ignored so a write
# returns EFBIG the way a full disk returns ENOSPC) below the size of what peftc writes, `train`, `merge` and
# `export` must exit 1 with one error line naming the file, and leave no partial output: an adapter, model or
# GGUF file is complete or absent, an earlier complete file is untouched, and no temp file remains.
#   Env: PEFTC_BIN, PEFTC_SOURCE_DIR.
set -u
BIN="${PEFTC_BIN:?set PEFTC_BIN}"
SRC="${PEFTC_SOURCE_DIR:?set PEFTC_SOURCE_DIR}"
G="$SRC/tests/golden/data"
work="$(mktemp -d /tmp/peftc_disk_full.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
passed=0
failed=0
check() {
    if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $2" >&2; fi
}
limited() { # limited KB command...: run with a KB-kilobyte file-size limit and SIGXFSZ ignored
    local kb=$1
    shift
    (ulimit -f "$kb"; trap '' XFSZ; "$@")
}
no_temp() { [ -z "$(find "$1" -name '*.tmp*' 2>/dev/null | head -n 1)" ]; }
one_line_naming() { [ "$(wc -l <"$1")" -eq 1 ] && grep -q "^peftc: error: .*$2" "$1"; }

train() { # train OUT [options]
    local out=$1
    shift
    "$BIN" train --model "$G/llama_gqa/model" --data "$G/llama_gqa/data.jsonl" --method lora --r 8 \
        --target-modules q_proj,k_proj,v_proj,o_proj --steps 2 --batch 2 --seq-len 16 --seed 1 --quiet --out "$out" "$@"
}

# 1. train: the adapter (~50 KB) cannot be written under a 16 KB limit.
limited 16 train "$work/t1" >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_line_naming "$work/err" "adapter_model.safetensors"
check $? "train under the limit: want exit 1 and one line naming the adapter file, got rc $rc: $(cat "$work/err")"
[ ! -e "$work/t1/adapter_model.safetensors" ] && [ ! -e "$work/t1/adapter_config.json" ] && no_temp "$work/t1"
check $? "train under the limit left a partial adapter or temp file: $(ls -A "$work/t1" 2>/dev/null | tr '\n' ' ')"

# 2. An earlier complete adapter in --out survives a failed re-save unchanged.
train "$work/t2" 2>"$work/err"
check $? "unlimited train failed: $(cat "$work/err")"
cp "$work/t2/adapter_model.safetensors" "$work/previous.safetensors"
limited 16 train "$work/t2" --seed 2 >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && cmp -s "$work/t2/adapter_model.safetensors" "$work/previous.safetensors" && no_temp "$work/t2"
check $? "failed re-save must leave the earlier adapter untouched (rc $rc: $(cat "$work/err"))"

# 3. merge: model.safetensors (~210 KB) under a 64 KB limit.
limited 64 "$BIN" merge --model "$G/llama_gqa/model" --adapter "$work/t2" --out "$work/merged" >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_line_naming "$work/err" "$work/merged" && [ ! -e "$work/merged/model.safetensors" ] && no_temp "$work/merged"
check $? "merge under the limit: want exit 1, one line, no model.safetensors; rc $rc: $(cat "$work/err")"

# 4. export: the GGUF file under a 16 KB limit.
limited 16 "$BIN" export --model "$G/llama_gqa/model" --adapter "$work/t2" --format gguf-lora --out "$work/lora.gguf" \
    >/dev/null 2>"$work/err"
rc=$?
[ $rc -eq 1 ] && one_line_naming "$work/err" "lora.gguf" && [ ! -e "$work/lora.gguf" ] && no_temp "$work"
check $? "export under the limit: want exit 1, one line, no GGUF file; rc $rc: $(cat "$work/err")"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
