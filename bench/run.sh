#!/usr/bin/env bash
# Side-by-side training throughput: peftc bench and the plain-PyTorch LoRA step (bench/torch_lora_step.py) on
# the same shapes, in the same run, one after the other (never at the same time), with the same thread count.
# Prints a Markdown table with the ratios (peftc / PyTorch tokens/s, peftc / PyTorch peak RSS) and keeps every
# raw JSON line in $OUT/results.jsonl.
#
#   bench/run.sh                 the default grid (~15 min on a quiet 2-core machine)
#   bench/run.sh --full          every shape x model x method (the PyTorch side of Qwen2.5-0.5B is slow)
#   bench/run.sh --quick         SmolLM2-135M, LoRA all-linear, 4x256 only (the issue's acceptance row)
#   GRID_OVERRIDE="smollm2-135m 4x256 dora" bench/run.sh
#                                DoRA (all linear) against PEFT's DoRA formula in PyTorch; kinds: qv, all, dora
#   bench/run.sh --scaling       peftc alone, SmolLM2-135M all-linear, B x T from 1x256 to 4x1024 and 1x2048:
#                                how tokens/s and memory grow with sequence length and with B·T
#
# Environment: PEFTC_BIN (default build/peftc), PYTHON (default /usr/bin/python3), THREADS (2),
# PEFTC_STEPS / TORCH_STEPS (timed steps; warm-up is 1 step each), OUT (default /tmp/peftc-bench),
# TORCH_BLAS_DIR (a directory with an optimised libblas.so.3 for the PyTorch process, see below),
# OMP_WAIT_POLICY (passive unless set: both sides use libgomp, and on a machine shared with other jobs spinning
# threads waste the cores — measured here: a peftc step took 2.9x longer with active waiting under load 7),
# COMMIT (the label printed for the peftc build; default: the checkout's HEAD).
#
# The PyTorch baseline and BLAS: Debian's python3-torch does its fp32 matrix products through the system
# libblas.so.3 (torch.__config__ says BLAS_INFO=generic). With only libblas3 installed that is the reference
# netlib BLAS, ~10x slower than an optimised one, which would flatter peftc. The fair baseline is PyTorch on
# OpenBLAS (Debian package libopenblas0-pthread, which becomes the libblas.so.3 alternative when installed).
# If OpenBLAS is present but not the system alternative, its directory is put first on LD_LIBRARY_PATH of the
# PyTorch process only. The BLAS each run used is printed and kept in the JSON ("blas").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PEFTC_BIN="${PEFTC_BIN:-$ROOT/build/peftc}"
PYTHON="${PYTHON:-/usr/bin/python3}"
THREADS="${THREADS:-2}"
PEFTC_STEPS="${PEFTC_STEPS:-5}"
TORCH_STEPS="${TORCH_STEPS:-2}"
OUT="${OUT:-/tmp/peftc-bench}"
MODE="${1:-default}"

if [ -z "${TORCH_BLAS_DIR:-}" ] && [ -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]; then
    TORCH_BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-pthread
fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
TORCH_ENV=(env OPENBLAS_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS")
[ -n "${TORCH_BLAS_DIR:-}" ] && TORCH_ENV+=(LD_LIBRARY_PATH="$TORCH_BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
[ -x "$PEFTC_BIN" ] || { echo "run.sh: no peftc binary at $PEFTC_BIN (set PEFTC_BIN)" >&2; exit 2; }
mkdir -p "$OUT/configs"
: > "$OUT/results.jsonl"

# ---- the configs (the architectures' published shapes; random weights, so no download) ---------------
cat > "$OUT/configs/smollm2-135m.json" <<'EOF'
{"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 576, "intermediate_size": 1536,
 "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
 "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 100000, "tie_word_embeddings": true,
 "hidden_act": "silu"}
EOF
cat > "$OUT/configs/gpt2-124m.json" <<'EOF'
{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "n_embd": 768, "n_layer": 12, "n_head": 12,
 "n_inner": null, "vocab_size": 50257, "n_positions": 1024, "n_ctx": 1024, "layer_norm_epsilon": 1e-05,
 "activation_function": "gelu_new", "tie_word_embeddings": true}
EOF
cat > "$OUT/configs/qwen2.5-0.5b.json" <<'EOF'
{"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896, "intermediate_size": 4864,
 "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "vocab_size": 151936,
 "max_position_embeddings": 32768, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "tie_word_embeddings": true,
 "hidden_act": "silu", "use_sliding_window": false}
EOF

# ---- the grid: model shape method ------------------------------------------------------------------------
# GRID_OVERRIDE="model shape kind ..." in the environment replaces the mode's grid.
case "$MODE" in
--quick) GRID="smollm2-135m 4x256 all" ;;
--full)
    GRID=""
    for m in smollm2-135m gpt2-124m qwen2.5-0.5b; do
        for s in 4x256 1x1024; do for k in qv all; do GRID="$GRID $m $s $k"; done; done
    done ;;
default)
    # Everything but the PyTorch 1x1024 rows of Qwen2.5-0.5B, which alone would take ~10 minutes.
    GRID="smollm2-135m 4x256 all  smollm2-135m 4x256 qv  smollm2-135m 1x1024 all  smollm2-135m 1x1024 qv
          gpt2-124m 4x256 all  gpt2-124m 4x256 qv  gpt2-124m 1x1024 all  gpt2-124m 1x1024 qv
          qwen2.5-0.5b 4x256 all  qwen2.5-0.5b 4x256 qv" ;;
--scaling) GRID="" ;;
*) echo "usage: bench/run.sh [--quick|--full|--scaling]" >&2; exit 2 ;;
esac
GRID="${GRID_OVERRIDE:-$GRID}"

peftc_targets() { # model kind → --target-modules value
    case "$1:$2" in
    gpt2*:qv) echo c_attn ;;
    *:qv) echo q_proj,v_proj ;;
    *) echo all-linear ;;
    esac
}
dora_flag() { [ "$1" = dora ] && echo --use-dora || true; } # kind dora: DoRA on all linear layers

json_field() { "$PYTHON" -c 'import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])' "$1"; }

echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), commit ${COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}," \
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, threads $THREADS," \
     "OMP_WAIT_POLICY=$OMP_WAIT_POLICY, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# torch $("$PYTHON" -c 'import torch; print(torch.__version__)') on BLAS" \
     "$("${TORCH_ENV[@]}" "$PYTHON" -c 'import sys; sys.path.insert(0, sys.argv[1]); import torch, torch_lora_step as t; print(t.blas_in_use())' "$HERE")," \
     "peftc $("$PEFTC_BIN" --version | cut -d' ' -f2)"
echo

# ---- --scaling: peftc alone (PyTorch's 4x1024 step would take minutes and ~25 GB) --------------------------
# Memory should be a constant (weights, LoRA state, workspaces) plus a per-token part (the activation plan),
# so the table also prints the plan per token; tokens/s should stay roughly flat while attention is a small
# share of the FLOPs.
if [ "$MODE" = --scaling ]; then
    cfg="$OUT/configs/smollm2-135m.json"
    echo "| model | B x T | tokens | peftc tok/s | peftc GFLOP/s | peak RSS MB | activation plan MB | plan KB per token |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for shape in 1x256 2x256 4x256 1x1024 2x1024 4x1024 1x2048; do
        B=${shape%x*} T=${shape#*x}
        p=$("$PEFTC_BIN" bench --config "$cfg" --method lora --r 8 --lora-alpha 16 --target-modules all-linear \
            --batch "$B" --seq-len "$T" --steps "$PEFTC_STEPS" --warmup 1 --threads "$THREADS" --json | tail -n 1)
        echo "{\"model\": \"smollm2-135m\", \"shape\": \"$shape\", \"lora\": \"all\", \"peftc\": $p}" >> "$OUT/results.jsonl"
        awk -v s="$shape" -v n=$((B * T)) -v pt="$(echo "$p" | json_field tokens_per_s)" \
            -v pg="$(echo "$p" | json_field gflops_per_s)" -v pr="$(echo "$p" | json_field peak_rss_mb)" \
            -v pm="$(echo "$p" | json_field activation_plan_mb)" \
            'BEGIN { printf "| smollm2-135m | %s | %d | %.1f | %.1f | %.0f | %.0f | %.1f |\n", s, n, pt, pg, pr, pm, pm * 1024 / n }'
    done
    echo
    echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw results: $OUT/results.jsonl"
    exit 0
fi

# "CPU ratio": tokens per CPU-second (all threads), peftc over PyTorch — the comparison that stays meaningful
# when other jobs take a different share of the cores during the two runs.
echo "| model | B x T | LoRA r=8 on | peftc tok/s | PyTorch tok/s | tok/s ratio | CPU ratio | peftc RSS MB | PyTorch RSS MB | RSS ratio | peftc GFLOP/s |"
echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
set -- $GRID
while [ $# -ge 3 ]; do
    model=$1 shape=$2 kind=$3
    shift 3
    B=${shape%x*} T=${shape#*x}
    cfg="$OUT/configs/$model.json"
    # shellcheck disable=SC2046 # dora_flag is one word or none
    p=$("$PEFTC_BIN" bench --config "$cfg" --method lora --r 8 --lora-alpha 16 --target-modules "$(peftc_targets "$model" "$kind")" \
        $(dora_flag "$kind") --batch "$B" --seq-len "$T" --steps "$PEFTC_STEPS" --warmup 1 --threads "$THREADS" --json | tail -n 1)
    # shellcheck disable=SC2046
    t=$("${TORCH_ENV[@]}" "$PYTHON" "$HERE/torch_lora_step.py" --config "$cfg" --targets "$([ "$kind" = dora ] && echo all || echo "$kind")" \
        $(dora_flag "$kind") --r 8 --lora-alpha 16 --batch "$B" --seq-len "$T" --steps "$TORCH_STEPS" --warmup 1 --threads "$THREADS" | tail -n 1)
    echo "{\"model\": \"$model\", \"shape\": \"$shape\", \"lora\": \"$kind\", \"peftc\": $p, \"torch\": $t}" >> "$OUT/results.jsonl"
    pt=$(echo "$p" | json_field tokens_per_s) tt=$(echo "$t" | json_field tokens_per_s)
    pr=$(echo "$p" | json_field peak_rss_mb) tr=$(echo "$t" | json_field peak_rss_mb)
    pg=$(echo "$p" | json_field gflops_per_s)
    pc=$(echo "$p" | json_field cpu_s_per_step) tc=$(echo "$t" | json_field cpu_s_per_step)
    awk -v m="$model" -v s="$shape" -v k="$(case $kind in all) echo all linear ;; dora) echo "all linear, DoRA" ;; *) echo q,v ;; esac)" \
        -v pt="$pt" -v tt="$tt" -v pr="$pr" -v tr="$tr" -v pg="$pg" -v pc="$pc" -v tc="$tc" \
        'BEGIN { printf "| %s | %s | %s | %.1f | %.1f | **%.2fx** | %.2fx | %.0f | %.0f | **%.3fx** | %.1f |\n", m, s, k, pt, tt, pt / tt, tc / pc, pr, tr, pr / tr, pg }'
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw results: $OUT/results.jsonl"
