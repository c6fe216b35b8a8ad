#!/usr/bin/env bash
# peftc bench (CLI.md contract): --json prints one object with tokens_per_s, step_s_median, peak_rss_mb and
# gflops_per_s (positive numbers), plus the per-phase breakdown; the FLOP count is the documented formula
# (checked here by hand for a tiny llama: frozen 4·Σ in·out + LoRA 6·params + attention 12·T_eff·H·hd·L per
# token); bad usage exits 2 with a message.
#   Env: PEFTC_BIN.
set -u
BIN="${PEFTC_BIN:?set PEFTC_BIN}"
PY=/usr/bin/python3
work="$(mktemp -d /tmp/peftc_bench_cli.XXXXXX)"
trap 'rm -rf "$work"' EXIT
passed=0
failed=0
check() {
    if [ "$1" -eq 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $2" >&2; fi
}

cat >"$work/config.json" <<'EOF'
{"model_type": "llama", "hidden_size": 64, "intermediate_size": 96, "num_attention_heads": 4,
 "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 128, "max_position_embeddings": 64,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "tie_word_embeddings": true}
EOF

"$BIN" bench --config "$work/config.json" --method lora --r 4 --target-modules q_proj,v_proj --batch 2 --seq-len 16 \
    --steps 2 --warmup 1 --threads 1 --json >"$work/out.json" 2>"$work/err.txt"
check $? "bench --json exits 0 ($(cat "$work/err.txt"))"
"$PY" - "$work/out.json" <<'EOF'
import json, sys
lines = open(sys.argv[1]).read().strip().splitlines()
assert len(lines) == 1, f"one JSON line, got {len(lines)}"
j = json.loads(lines[0])
for k in ("tokens_per_s", "step_s_median", "peak_rss_mb", "gflops_per_s"):
    assert isinstance(j[k], (int, float)) and j[k] > 0, f"{k} = {j.get(k)}"
assert abs(j["tokens_per_s"] - 2 * 16 / j["step_s_median"]) < 1e-6 * j["tokens_per_s"], "tokens/s = B·T / median step"
# The FLOP count by hand: C=64, hd=16, H=4, KVH=2 (kv width 32), I=96, V=128, L=2, LoRA r=4 on q and v.
C, I, V, L, H, hd, kv, r, T, N = 64, 96, 128, 2, 4, 16, 32, 4, 16, 32
frozen = 4 * (L * (C * C + 2 * C * kv + C * C + 3 * C * I) + V * C)
lora = 6 * L * (r * (C + C) + r * (C + kv))
attention = 12 * ((T + 1) / 2) * H * hd * L
want = (frozen + lora + attention) * N
assert abs(j["flops_per_step"] - want) < 1e-9 * want, f"flops_per_step {j['flops_per_step']} != {want}"
assert abs(j["gflops_per_s"] - want / j["step_s_median"] * 1e-9) < 1e-6 * j["gflops_per_s"]
assert j["trainable_params"] == L * (r * (C + C) + r * (C + kv))
assert j["base_dtype"] == "bf16", "bench --config defaults to a bf16 base"
assert set(j["phases_s"]) == {"embedding", "attention", "mlp", "head_xent", "optimizer"}
# Per-phase CPU time: present, not negative, and the phases' CPU time cannot exceed the process's per step
# (one thread here, so no phase can keep more than ~1 core busy).
cpu = sum(j["phases_s"][p][k] for p in ("embedding", "attention", "mlp", "head_xent") for k in ("forward_cpu", "backward_cpu"))
assert all(j["phases_s"][p][k] >= 0 for p in ("embedding", "attention", "mlp", "head_xent") for k in ("forward_cpu", "backward_cpu"))
assert 0 < cpu <= j["cpu_s_per_step"] * 1.05 + 1e-3, f"phase CPU {cpu} vs step CPU {j['cpu_s_per_step']}"
EOF
check $? "JSON keys, FLOP formula and bf16 default"

"$BIN" bench --config "$work/config.json" --base-dtype fp32 --batch 1 --seq-len 8 --steps 1 --threads 1 --json \
    2>/dev/null | "$PY" -c 'import json,sys; assert json.loads(sys.stdin.read())["base_dtype"] == "fp32"'
check $? "--base-dtype fp32"

"$BIN" bench --config "$work/config.json" --batch 1 --seq-len 8 --steps 1 --threads 1 >"$work/text.txt" 2>&1
check $? "text output exits 0"
grep -q "^tokens/s" "$work/text.txt" && grep -q "^head_xent" "$work/text.txt"
check $? "text output has tokens/s and the phase table"

"$BIN" bench --batch 1 --seq-len 8 >/dev/null 2>"$work/e1.txt"
[ $? -eq 2 ] && grep -q "exactly one of --model" "$work/e1.txt"
check $? "no model: usage error"
"$BIN" bench --config "$work/config.json" --seq-len 1 >/dev/null 2>&1
[ $? -eq 2 ]
check $? "--seq-len 1: usage error"
"$BIN" bench --config "$work/config.json" --method nosuch >/dev/null 2>&1
[ $? -eq 2 ]
check $? "unknown method: usage error"
"$BIN" bench --config "$work/config.json" --seq-len 100 --steps 1 >/dev/null 2>"$work/e2.txt"
[ $? -ne 0 ] && grep -q "max_position_embeddings" "$work/e2.txt"
check $? "sequence longer than the model allows: error"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
