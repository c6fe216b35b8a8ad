#!/usr/bin/env bash
# The hostile-input catalogue through the CLI (issue #7): model directories, adapter directories,
# tokenizer.json, JSONL data and GGUF files (via peftc inspect), each broken in one way from a valid golden copy. Every case must
# end with the documented exit status, stderr of exactly ONE line "peftc: error: ..." that names the file and
# the place (tensor, field, line), nothing on stdout, and nothing written at --out.
#   Env: PEFTC_BIN (the peftc binary), PEFTC_SOURCE_DIR (the checkout). Needs python3 (stdlib only).
#   PEFTC_TEST_VERBOSE=1 prints every case's message.
set -u
BIN="${PEFTC_BIN:?set PEFTC_BIN}"
SRC="${PEFTC_SOURCE_DIR:?set PEFTC_SOURCE_DIR}"
G="$SRC/tests/golden/data"
EDIT="python3 $SRC/tests/hostile/st_edit.py"
work="$(mktemp -d /tmp/peftc_cli_hostile.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 # tiny models: threads only cost time on a shared machine

passed=0
failed=0
OUT=""
NAME=""

fail() {
    echo "FAIL $NAME: $*" >&2
    failed=$((failed + 1))
}

# expect STATUS FILE PLACE command...: run the command; it must exit STATUS with one stderr line starting
# "peftc: error: " that contains FILE and PLACE, print nothing on stdout, and leave $OUT absent.
expect() {
    local want=$1 file=$2 place=$3
    shift 3
    "$@" >"$work/stdout" 2>"$work/stderr" </dev/null
    local rc=$? ok=1
    local msg
    msg="$(cat "$work/stderr")"
    [ -n "${PEFTC_TEST_VERBOSE:-}" ] && printf '%-28s rc=%d %s\n' "$NAME" "$rc" "$msg"
    if [ "$rc" -ne "$want" ]; then fail "exit $rc, want $want; stderr: $msg"; ok=0; fi
    if [ "$(wc -l <"$work/stderr")" -ne 1 ]; then fail "stderr is not one line: $msg"; ok=0; fi
    case "$msg" in "peftc: error: "*) ;; *) fail "stderr does not start 'peftc: error: ': $msg"; ok=0 ;; esac
    case "$msg" in *"$file"*) ;; *) fail "message does not name the file '$file': $msg"; ok=0 ;; esac
    case "$msg" in *"$place"*) ;; *) fail "message does not name the place '$place': $msg"; ok=0 ;; esac
    if [ -s "$work/stdout" ]; then fail "wrote to stdout: $(head -c 200 "$work/stdout")"; ok=0; fi
    if [ -n "$OUT" ] && [ -e "$OUT" ]; then fail "left $OUT behind: $(ls -A "$OUT" | tr '\n' ' ')"; ok=0; fi
    [ $ok -eq 1 ] && passed=$((passed + 1))
}

# Start a case: its name, and a fresh (absent) output path.
case_() {
    NAME=$1
    OUT="$work/out/$NAME"
}

# Fresh copies of the goldens to break.
model_copy() {
    rm -rf "$work/$1"
    cp -r "$G/llama_gqa/model" "$work/$1"
    echo "$work/$1"
}
adapter_copy() {
    rm -rf "$work/$1"
    cp -r "$G/lora_llama/adapter" "$work/$1"
    echo "$work/$1"
}
# json_set FILE KEY VALUE_JSON (VALUE_JSON "DELETE" removes the key)
json_set() {
    python3 - "$@" <<'EOF'
import json, sys
path, key, value = sys.argv[1:4]
with open(path) as f:
    obj = json.load(f)
if value == "DELETE":
    del obj[key]
else:
    obj[key] = json.loads(value)
with open(path, "w") as f:
    json.dump(obj, f, indent=2)
EOF
}

MODEL="$G/llama_gqa/model"
DATA="$G/llama_gqa/data.jsonl"
train() { "$BIN" train --data "$DATA" --method lora --r 4 --steps 1 --batch 2 --seq-len 16 --quiet --out "$OUT" "$@"; }
train_on() { local data=$1; shift; "$BIN" train --model "$MODEL" --data "$data" --method lora --r 4 --steps 1 --batch 2 --seq-len 16 --quiet --out "$OUT" "$@"; }
eval_with() { "$BIN" eval --model "$MODEL" --data "$DATA" --adapter "$@"; }
tokenize() { printf "ab a c" | "$BIN" tokenize --tokenizer "$1"; }

# A small byte-level BPE tokenizer.json (ids < the golden model's vocabulary of 128).
TOK="$work/tokenizer.json"
cat >"$TOK" <<'EOF'
{"version": "1.0",
 "added_tokens": [{"id": 0, "content": "<s>", "special": true}, {"id": 1, "content": "</s>", "special": true}],
 "normalizer": null,
 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
 "post_processor": null,
 "decoder": {"type": "ByteLevel"},
 "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
           "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
           "vocab": {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "c": 4, "\u0120": 5, "ab": 6, "\u0120a": 7},
           "merges": ["a b", "\u0120 a"]}}
EOF
# The valid starting points must work, or every case below would pass for the wrong reason.
case_ valid_baseline
if ! train --model "$MODEL" >/dev/null 2>"$work/stderr" || [ ! -f "$OUT/adapter_model.safetensors" ]; then
    echo "FAIL: the valid golden model does not train: $(cat "$work/stderr")" >&2
    exit 1
fi
rm -rf "$OUT"
if [ "$(tokenize "$TOK")" != "[6,7,5,4]" ]; then
    echo "FAIL: the valid tokenizer.json does not encode as expected" >&2
    exit 1
fi
if ! eval_with "$G/lora_llama/adapter" >/dev/null 2>&1; then
    echo "FAIL: the valid golden adapter does not load" >&2
    exit 1
fi

# ---------------------------------------------------------------- model directories
case_ model_no_config
m=$(model_copy m1); rm "$m/config.json"
expect 1 "$m" "config.json" train --model "$m"

case_ model_config_bad_json
m=$(model_copy m2); printf '{"model_type": "llama", "hidden_size": 48,\n  "num_attention_heads": }\n' >"$m/config.json"
expect 1 "$m/config.json" "2:" train --model "$m"

case_ model_config_not_object
m=$(model_copy m3); echo '[1, 2, 3]' >"$m/config.json"
expect 1 "$m/config.json" "object" train --model "$m"

case_ model_type_unsupported
m=$(model_copy m4); json_set "$m/config.json" model_type '"mamba"'
expect 1 "$m/config.json" "mamba" train --model "$m"

case_ model_heads_not_dividing_hidden
m=$(model_copy m5); json_set "$m/config.json" num_attention_heads 5; json_set "$m/config.json" head_dim DELETE
expect 1 "$m/config.json" "num_attention_heads" train --model "$m"

case_ model_kv_heads_not_dividing
m=$(model_copy m6); json_set "$m/config.json" num_key_value_heads 3
expect 1 "$m/config.json" "num_key_value_heads" train --model "$m"

case_ model_hidden_size_missing
m=$(model_copy m7); json_set "$m/config.json" hidden_size DELETE
expect 1 "$m/config.json" "hidden_size" train --model "$m"

case_ model_hidden_size_negative
m=$(model_copy m8); json_set "$m/config.json" hidden_size -48
expect 1 "$m/config.json" "hidden_size" train --model "$m"

case_ model_vocab_mismatch
m=$(model_copy m9); json_set "$m/config.json" vocab_size 100
expect 1 "$m" "embed_tokens" train --model "$m"

# Sizes that would make peftc build tables or allocate far beyond what the files hold must fail at once.
case_ model_layers_huge
m=$(model_copy m18); json_set "$m/config.json" num_hidden_layers 1000000
expect 1 "$m" "model.layers.999999.input_layernorm.weight" timeout 20 "$BIN" train --data "$DATA" --method lora \
    --steps 1 --batch 2 --seq-len 16 --quiet --out "$OUT" --model "$m"

case_ model_layers_more_than_file
m=$(model_copy m19); json_set "$m/config.json" num_hidden_layers 3
expect 1 "$m" "model.layers.2.input_layernorm.weight" train --model "$m"

case_ model_vocab_huge
m=$(model_copy m20); json_set "$m/config.json" vocab_size 1000000000
expect 1 "$m" "config.json sizes" train --model "$m"

case_ model_head_width_overflow
m=$(model_copy m21); json_set "$m/config.json" num_attention_heads 1073741824; json_set "$m/config.json" num_key_value_heads 1073741824
expect 1 "$m/config.json" "out of range" train --model "$m"

case_ model_no_weights
m=$(model_copy m10); rm "$m/model.safetensors"
expect 1 "$m" "model.safetensors" train --model "$m"

case_ model_missing_tensor
m=$(model_copy m11); $EDIT "$m/model.safetensors" drop model.layers.1.mlp.down_proj.weight
expect 1 "$m" "model.layers.1.mlp.down_proj.weight" train --model "$m"

case_ model_misshaped_tensor
m=$(model_copy m12); $EDIT "$m/model.safetensors" shape model.layers.0.self_attn.q_proj.weight 24,96
expect 1 "$m/model.safetensors" "model.layers.0.self_attn.q_proj.weight" train --model "$m"

case_ model_wrong_dtype_i32
m=$(model_copy m13); $EDIT "$m/model.safetensors" dtype model.layers.0.mlp.up_proj.weight I32
expect 1 "$m/model.safetensors" "model.layers.0.mlp.up_proj.weight" train --model "$m"

case_ model_truncated_safetensors
m=$(model_copy m14); $EDIT "$m/model.safetensors" truncate 0.6
expect 1 "$m/model.safetensors" "model.safetensors" train --model "$m"

case_ model_truncated_header
m=$(model_copy m15); $EDIT "$m/model.safetensors" truncate 0.002
expect 1 "$m/model.safetensors" "header" train --model "$m"

case_ model_nan_weight
m=$(model_copy m16); $EDIT "$m/model.safetensors" poke model.layers.1.self_attn.o_proj.weight 7 nan
expect 1 "$m/model.safetensors" "model.layers.1.self_attn.o_proj.weight" train --model "$m"

case_ model_inf_weight
m=$(model_copy m17); $EDIT "$m/model.safetensors" poke model.norm.weight 0 inf
expect 1 "$m/model.safetensors" "model.norm.weight" train --model "$m"

case_ model_dir_missing
expect 1 "$work/no_such_model" "" train --model "$work/no_such_model"

# ---------------------------------------------------------------- adapter directories (eval --adapter, train --init-adapter)
case_ adapter_config_bad_json
a=$(adapter_copy a1); printf '{"peft_type": "LORA", "r": 4,,}\n' >"$a/adapter_config.json"
expect 1 "$a/adapter_config.json" "1:" eval_with "$a"

case_ adapter_unknown_peft_type
a=$(adapter_copy a2); json_set "$a/adapter_config.json" peft_type '"LOKR"'
expect 1 "$a/adapter_config.json" "LOKR" eval_with "$a"

case_ adapter_no_peft_type
a=$(adapter_copy a3); json_set "$a/adapter_config.json" peft_type DELETE
expect 1 "$a/adapter_config.json" "peft_type" eval_with "$a"

case_ adapter_rank_disagrees
a=$(adapter_copy a4); json_set "$a/adapter_config.json" r 8
expect 1 "$a/adapter_model.safetensors" "lora_A" eval_with "$a"

case_ adapter_for_another_model
a=$(adapter_copy a5); $EDIT "$a/adapter_model.safetensors" shape \
    base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight 48,2
expect 1 "$a/adapter_model.safetensors" "v_proj.lora_B" eval_with "$a"

case_ adapter_gpt2_on_llama
expect 1 "$G/lora_gpt2/adapter" "" eval_with "$G/lora_gpt2/adapter"

case_ adapter_missing_tensor
a=$(adapter_copy a6); $EDIT "$a/adapter_model.safetensors" drop base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight
expect 1 "$a/adapter_model.safetensors" "layers.1.self_attn.q_proj.lora_B" eval_with "$a"

case_ adapter_extra_tensor
a=$(adapter_copy a7); $EDIT "$a/adapter_model.safetensors" add base_model.model.model.layers.0.mlp.up_proj.lora_A.weight
expect 1 "$a/adapter_model.safetensors" "mlp.up_proj.lora_A" eval_with "$a"

case_ adapter_no_safetensors
a=$(adapter_copy a8); rm "$a/adapter_model.safetensors"
expect 1 "$a/adapter_model.safetensors" "" eval_with "$a"

case_ adapter_i32_tensor
a=$(adapter_copy a9); $EDIT "$a/adapter_model.safetensors" dtype base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight I32
expect 1 "$a/adapter_model.safetensors" "q_proj.lora_A" eval_with "$a"

case_ adapter_rank_zero
a=$(adapter_copy a10); json_set "$a/adapter_config.json" r 0
expect 1 "$a/adapter_config.json" "r" eval_with "$a"

case_ adapter_targets_nothing
a=$(adapter_copy a11); json_set "$a/adapter_config.json" target_modules '["no_such_proj"]'
expect 1 "$a/adapter_config.json" "target_modules" eval_with "$a"

case_ adapter_tensor_name_with_newline
a=$(adapter_copy a13); $EDIT "$a/adapter_model.safetensors" add "$(printf 'base_model.evil\nname')"
expect 1 "$a/adapter_model.safetensors" "base_model.evil?name" eval_with "$a"

# Declared sizes are checked against the file before anything is allocated (these took minutes and 8-19 GB).
case_ adapter_rank_huge
a=$(adapter_copy a14); json_set "$a/adapter_config.json" r 3000000
expect 1 "$a/adapter_model.safetensors" "needs [3000000,48]" timeout 30 "$BIN" eval --model "$MODEL" --data "$DATA" --adapter "$a"

case_ adapter_virtual_tokens_huge
a="$work/a15"; rm -rf "$a"; cp -r "$G/prompt_tuning_llama/adapter" "$a"; json_set "$a/adapter_config.json" num_virtual_tokens 50000000
expect 1 "$a/adapter_model.safetensors" "needs [50000000,48]" timeout 30 "$BIN" eval --model "$MODEL" --data "$DATA" --adapter "$a"

case_ adapter_init_truncated
a=$(adapter_copy a12); $EDIT "$a/adapter_model.safetensors" truncate 0.5
expect 1 "$a/adapter_model.safetensors" "" train --model "$MODEL" --init-adapter "$a"

case_ adapter_dir_missing
expect 1 "$work/no_such_adapter" "adapter_config.json" train --model "$MODEL" --init-adapter "$work/no_such_adapter"

# ---------------------------------------------------------------- tokenizer.json (tokenize, and train on text)
case_ tokenizer_bad_json
t="$work/tok_bad.json"; head -c 300 "$TOK" >"$t"
expect 1 "$t" "invalid JSON" tokenize "$t"

case_ tokenizer_unknown_model_type
t="$work/tok_wordpiece.json"; sed 's/"type": "BPE"/"type": "WordPiece"/' "$TOK" >"$t"
expect 1 "$t" "WordPiece" tokenize "$t"

case_ tokenizer_merge_unknown_token
t="$work/tok_merge.json"; sed 's/"merges": \["a b"/"merges": ["a q"/' "$TOK" >"$t"
expect 1 "$t" "merges 0" tokenize "$t"

case_ tokenizer_merge_result_missing
t="$work/tok_merge2.json"; sed 's/"ab": 6, //' "$TOK" >"$t"
expect 1 "$t" "'ab'" tokenize "$t"

case_ tokenizer_vocab_bad_id
t="$work/tok_badid.json"; sed 's/"c": 4/"c": "four"/' "$TOK" >"$t"
expect 1 "$t" "'c'" tokenize "$t"

case_ tokenizer_regex_not_utf8 # fuzz_tokenizer findings 19, 20: bytes that are not UTF-8 reached PCRE2
t="$work/tok_regex.json"
sed 's/^ "pre_tokenizer": .*$/ "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "a\xffb"}, "behavior": "Isolated", "invert": false},/' "$TOK" >"$t"
expect 1 "$t" "not valid UTF-8" tokenize "$t"

case_ tokenizer_no_model
t="$work/tok_nomodel.json"; echo '{"version": "1.0", "added_tokens": []}' >"$t"
expect 1 "$t" "model" tokenize "$t"

case_ tokenizer_bad_in_train
t="$work/tok_bad2.json"; head -c 300 "$TOK" >"$t"
expect 1 "$t" "invalid JSON" train_on "$SRC/tests/data/prompt_completion.jsonl" --tokenizer "$t"

# ---------------------------------------------------------------- JSONL data
printf '{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5, 6]}\n' >"$work/good.jsonl"

case_ data_bad_json_line3
d="$work/bad_json.jsonl"; { cat "$work/good.jsonl"; echo '{"input_ids": [1, 2,'; } >"$d"
expect 1 "$d" "line 3" train_on "$d"

case_ data_missing_field_line3
d="$work/missing.jsonl"; { cat "$work/good.jsonl"; echo '{"inputs": [1, 2]}'; } >"$d"
expect 1 "$d" "line 3" train_on "$d"

case_ data_id_out_of_range
d="$work/range.jsonl"; { cat "$work/good.jsonl"; echo '{"input_ids": [1, 128, 3]}'; } >"$d"
expect 1 "$d" "line 3" train_on "$d"

case_ data_negative_id
d="$work/negative.jsonl"; { echo '{"input_ids": [1, -5, 3]}'; cat "$work/good.jsonl"; } >"$d"
expect 1 "$d" "line 1" train_on "$d"

case_ data_invalid_utf8
d="$work/utf8.jsonl"; { echo '{"prompt": "a", "completion": "b"}'; echo '{"prompt": "a", "completion": "b"}';
    printf '{"prompt": "a\xff", "completion": "b"}\n'; } >"$d"
expect 1 "$d" "line 3" train_on "$d" --tokenizer "$TOK"

case_ data_empty_file
d="$work/empty.jsonl"; : >"$d"
expect 1 "$d" "" train_on "$d"

case_ data_labels_length
d="$work/labels.jsonl"; { cat "$work/good.jsonl"; echo '{"input_ids": [1, 2, 3], "labels": [1, 2]}'; } >"$d"
expect 1 "$d" "line 3" train_on "$d"

case_ data_fractional_id
d="$work/fraction.jsonl"; { echo '{"input_ids": [1, 2.5, 3]}'; cat "$work/good.jsonl"; } >"$d"
expect 1 "$d" "line 1" train_on "$d"

# A text record without --tokenizer is the command line's fault (the file is fine): usage, exit 2.
case_ data_text_without_tokenizer
d="$work/text.jsonl"; { cat "$work/good.jsonl"; echo '{"text": "hello"}'; } >"$d"
expect 2 "$d" "line 3" train_on "$d"

case_ data_eval_file_bad
d="$work/eval_bad.jsonl"; { cat "$work/good.jsonl"; echo '{"input_ids": [1, 2,'; } >"$d"
expect 1 "$d" "line 3" train_on "$work/good.jsonl" --eval "$d"

case_ data_missing_file
expect 1 "$work/absent.jsonl" "" train_on "$work/absent.jsonl"

# ---------------------------------------------------------------- GGUF (peftc inspect)
# The GGUF reader's byte-level catalogue is tests/unit/test_io_hostile.c; through the CLI 'inspect' reads GGUF
# (header: magic, version, tensor count, kv count, then the first key's length at byte 24).
if "$BIN" inspect --help >/dev/null 2>&1; then
    gguf="$SRC/tests/hostile/files/io_python.gguf"
    case_ gguf_bad_magic
    f="$work/magic.gguf"; { printf 'GGUX'; tail -c +5 "$gguf"; } >"$f"
    expect 1 "$f" "magic" "$BIN" inspect "$f"
    case_ gguf_truncated
    f="$work/trunc.gguf"; head -c 40 "$gguf" >"$f"
    expect 1 "$f" "kv count" "$BIN" inspect "$f"
    # gguf_patch FILE OFFSET FORMAT VALUE: overwrite one little-endian field of a copy of the valid file.
    gguf_patch() {
        python3 - "$gguf" "$@" <<'PYEOF'
import struct, sys
src, dst, offset, fmt, value = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
data = bytearray(open(src, "rb").read())
struct.pack_into(fmt, data, offset, value)
open(dst, "wb").write(bytes(data))
PYEOF
    }
    case_ gguf_bad_version
    f="$work/version.gguf"; gguf_patch "$f" 4 '<I' 99
    expect 1 "$f" "version" "$BIN" inspect "$f"
    case_ gguf_huge_tensor_count
    f="$work/tensors.gguf"; gguf_patch "$f" 8 '<Q' 1152921504606846976
    expect 1 "$f" "header" "$BIN" inspect "$f"
    case_ gguf_huge_kv_count
    f="$work/kvs.gguf"; gguf_patch "$f" 16 '<Q' 4294967296
    expect 1 "$f" "kv count" "$BIN" inspect "$f"
    case_ gguf_key_length_past_end
    f="$work/keylen.gguf"; gguf_patch "$f" 24 '<Q' 100000
    expect 1 "$f" "kv 0" "$BIN" inspect "$f"
else
    fail "peftc inspect does not run: the GGUF cases cannot"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
