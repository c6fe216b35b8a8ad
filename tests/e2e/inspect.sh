#!/usr/bin/env bash
# peftc inspect on every kind it recognises. Expected values come from outside peftc: the golden config.json
# and adapter_config.json (read here with Python's json), the safetensors header parsed here with struct+json,
# parameter counts derived by hand from the shapes, and the GGUF layout llama.cpp expects for a LoRA adapter.
set -uo pipefail
src="${PEFTC_SOURCE_DIR:?}"
peftc="${PEFTC_BIN:?}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

# check NAME JSON_LINE PYTHON_EXPR [REF_JSON]: the expression, with j = the parsed object (and r = the
# parsed reference), must be true.
check() {
    local name=$1 line=$2 expr=$3 ref=${4:-null}
    if python3 -c "import json,sys; j=json.loads(sys.argv[1]); r=json.loads(sys.argv[2]); sys.exit(0 if ($expr) else 1)" \
        "$line" "$ref" 2>/dev/null; then
        ok
    else
        bad "$name: ($expr) does not hold for: ${line:0:400}"
    fi
}

# Run inspect --json on PATH; the last stdout line must be one JSON object. Prints that line.
inspect_json() {
    local out
    if ! out=$("$peftc" inspect "$1" --json 2>"$work/stderr"); then
        echo "FAIL: inspect $1 --json exited non-zero: $(cat "$work/stderr")" >&2
        return 1
    fi
    printf '%s\n' "$out" | tail -n 1
}

# ------------------------------------------------------------------------------------------ model dir
model="$src/tests/golden/data/llama_gqa/model"
j=$(inspect_json "$model") || { bad "model: inspect failed"; j='{}'; }
check model "$j" 'j["kind"] == "model" and j["model_type"] == "llama"'
check model "$j" 'j["layers"] == 2 and j["hidden"] == 48 and j["heads"] == 4 and j["kv_heads"] == 2'
# Every config field against config.json itself.
cfg_expr=$(python3 -c '
import json,sys
c = json.load(open(sys.argv[1]))
print("j[\"head_dim\"] == %d and j[\"intermediate\"] == %d and j[\"vocab\"] == %d and j[\"max_positions\"] == %d and j[\"tied\"] == %s" % (
    c["head_dim"], c["intermediate_size"], c["vocab_size"], c["max_position_embeddings"], c["tie_word_embeddings"]))
' "$model/config.json")
check model "$j" "$cfg_expr"
# By hand: embed + lm_head 2*128*48, per layer q,o 48*48, k,v 24*48, gate,up,down 96*48, two norms 48;
# final norm 48: 12288 + 2*20832 + 48 = 54000.
check model "$j" 'j["parameters"] == 54000 and j["dtype"] == "F32" and j["tokenizer"] is False'
human=$("$peftc" inspect "$model" 2>&1) || bad "model: human output exited non-zero"
case "$human" in *model_type*llama*) ok ;; *) bad "model: human output lacks 'model_type llama': $human" ;; esac

# ------------------------------------------------------------------------------------------- adapter
adapter="$src/tests/golden/data/lora_llama/adapter"
j=$(inspect_json "$adapter") || { bad "adapter: inspect failed"; j='{}'; }
r=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["r"])' "$adapter/adapter_config.json")
check adapter "$j" "j['kind'] == 'adapter' and j['peft_type'] == 'LORA' and j['r'] == $r and j['lora_alpha'] == 8"
check adapter "$j" 'j["target_modules"] == ["q_proj", "v_proj"]'
# 2 layers x (q: A 4x48 + B 48x4, v: A 4x48 + B 24x4) = 2 x (384 + 288) = 1344 parameters in 8 tensors.
check adapter "$j" 'j["n_tensors"] == 8 and j["parameters"] == 1344'

# --------------------------------------------------------------------------------- safetensors file
st="$adapter/adapter_model.safetensors"
j=$(inspect_json "$st") || { bad "safetensors: inspect failed"; j='{}'; }
# The reference: the header parsed here (u64 LE length, then JSON).
ref=$(python3 -c '
import json,struct,sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
meta = h.pop("__metadata__", {})
print(json.dumps({"meta": meta, "bytes": len(b),
                  "t": sorted([k, v["dtype"], v["shape"]] for k, v in h.items())}))
' "$st")
check safetensors "$j" 'j["kind"] == "safetensors" and j["file_bytes"] == r["bytes"]' "$ref"
check safetensors "$j" 'sorted([t["name"], t["dtype"], t["shape"]] for t in j["tensors"]) == r["t"]' "$ref"
check safetensors "$j" 'j["metadata"] == r["meta"] and j["n_tensors"] == len(r["t"])' "$ref"

# ------------------------------------------------------------------------------------ tokenizer/model
j=$(inspect_json "$src/models/sotu-base") || { bad "sotu-base: inspect failed"; j='{}'; }
check sotu-base "$j" 'j["kind"] == "model" and j["tokenizer"] is True and j["tokenizer_vocab_size"] == 4096 and j["vocab"] == 4096'
j=$(inspect_json "$src/models/sotu-base/tokenizer.json") || { bad "tokenizer: inspect failed"; j='{}'; }
check tokenizer "$j" 'j["kind"] == "tokenizer" and j["vocab_size"] == 4096'

# ----------------------------------------------------------------------------------------- GGUF file
if "$peftc" export --model "$model" --adapter "$adapter" --format gguf-lora --out "$work/a.gguf" 2>"$work/stderr"; then
    j=$(inspect_json "$work/a.gguf") || { bad "gguf: inspect failed"; j='{}'; }
    check gguf "$j" 'j["kind"] == "gguf" and j["version"] == 3 and j["n_tensors"] == 8 and len(j["tensors"]) == 8'
    check gguf "$j" 'j["kv"]["general.architecture"] == "llama" and j["kv"]["adapter.type"] == "lora" and j["kv"]["adapter.lora.alpha"] == 8'
    # lora_A of q_proj is [r=4, in=48] row-major, so ggml's ne (contiguous first) is [48, 4]; v's lora_B is [24, 4] -> [4, 24].
    check gguf "$j" '{t["name"]: t["ne"] for t in j["tensors"]}["blk.0.attn_q.weight.lora_a"] == [48, 4]'
    check gguf "$j" '{t["name"]: t["ne"] for t in j["tensors"]}["blk.1.attn_v.weight.lora_b"] == [4, 24]'
    check gguf "$j" 'all(t["type"] == "F32" for t in j["tensors"])'
else
    bad "export gguf-lora failed: $(cat "$work/stderr")"
fi

# ---------------------------------------------------------------------------------------- missing path
"$peftc" inspect "$work/nope" >"$work/stdout" 2>"$work/stderr"
rc=$?
msg=$(cat "$work/stderr")
if [ "$rc" -eq 1 ]; then ok; else bad "missing path: exit $rc, want 1"; fi
if [ "$(wc -l <"$work/stderr")" -eq 1 ]; then ok; else bad "missing path: stderr is not one line: $msg"; fi
case "$msg" in "peftc: error: $work/nope: "*) ok ;; *) bad "missing path: message does not start with 'peftc: error: <path>: ': $msg" ;; esac
if [ -s "$work/stdout" ]; then bad "missing path: wrote to stdout"; else ok; fi

# ------------------------------------------------------------------------------------ usage errors
"$peftc" inspect >/dev/null 2>&1; rc=$?
if [ "$rc" -eq 2 ]; then ok; else bad "no PATH: exit $rc, want 2"; fi
mkdir -p "$work/empty"
"$peftc" inspect "$work/empty" >/dev/null 2>&1; rc=$?
if [ "$rc" -eq 2 ]; then ok; else bad "unknown kind: exit $rc, want 2"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
