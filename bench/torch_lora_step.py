#!/usr/bin/env python3
"""The PyTorch side of the side-by-side benchmark: the same training step peftc bench times, in plain PyTorch.

A decoder of the shape a Hugging Face config.json describes (llama / qwen2 / gpt2), fp32 frozen weights with
random values, a hand-written LoRA (y = W x + b + (alpha/r) * B (A x), A kaiming-uniform, B zero) on the chosen
projections (with --use-dora: DoRA, as PEFT's DoraLinearLayer), the Hugging Face causal-LM loss (logits of
position t against token t+1, mean over targets), and AdamW on the adapter parameters only. It is what "HF PEFT
on PyTorch, on the CPU" computes, without the library overheads, written the way the eager Hugging Face modeling
code writes it (explicit softmax attention with a causal mask, repeat_kv for grouped-query heads). Random token
ids; warm-up steps, then timed steps.

Prints one JSON line: tokens_per_s, step_s_median, peak_rss_mb (ru_maxrss of this process), and the setup.
"""
import argparse
import json
import math
import resource
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class LoraLinear(nn.Module):
    """A frozen nn.Linear plus a trainable low-rank update, as PEFT's lora.Linear (no dropout)."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / r

    def forward(self, x):
        return self.base(x) + (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling


class DoraLinear(LoraLinear):
    """LoRA plus DoRA's magnitude, as PEFT's DoraLinearLayer (no dropout): with the row norms of W + s·B·A
    detached and g = m / norm, y = (W x + b) + (g - 1)·(W x) + g·s·B(A x); m starts at the row norms of W."""

    def __init__(self, base: nn.Linear, r: int, alpha: float):
        super().__init__(base, r, alpha)
        self.magnitude = nn.Parameter(torch.linalg.norm(base.weight.detach(), dim=1))

    def forward(self, x):
        result = self.base(x)
        base_result = result - self.base.bias if self.base.bias is not None else result
        weight = self.base.weight + self.scaling * (self.lora_B @ self.lora_A)
        gain = self.magnitude / torch.linalg.norm(weight, dim=1).detach()
        lora_result = (x @ self.lora_A.t() @ self.lora_B.t()) * self.scaling
        return result + (gain - 1) * base_result + gain * lora_result


def frozen_linear(n_in, n_out, bias):
    lin = nn.Linear(n_in, n_out, bias=bias)
    nn.init.normal_(lin.weight, std=0.02)
    if bias:
        nn.init.zeros_(lin.bias)
    lin.requires_grad_(False)
    return lin


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rope_tables(head_dim, max_pos, theta):
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(max_pos).float(), inv)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def causal_attention(q, k, v):
    """q [B,H,T,hd], k/v [B,H,T,hd]: eager softmax attention with a causal mask (HF's eager path)."""
    T = q.shape[2]
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    mask = torch.full((T, T), float("-inf")).triu(1)
    probs = torch.softmax(scores + mask, dim=-1)
    return probs @ v


class LlamaBlock(nn.Module):
    def __init__(self, c, qkv_bias):
        super().__init__()
        C, I = c["hidden_size"], c["intermediate_size"]
        self.H, self.KVH = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
        self.hd = C // self.H
        eps = c.get("rms_norm_eps", 1e-6)
        self.input_layernorm = RMSNorm(C, eps)
        self.post_attention_layernorm = RMSNorm(C, eps)
        self.q_proj = frozen_linear(C, self.H * self.hd, qkv_bias)
        self.k_proj = frozen_linear(C, self.KVH * self.hd, qkv_bias)
        self.v_proj = frozen_linear(C, self.KVH * self.hd, qkv_bias)
        self.o_proj = frozen_linear(self.H * self.hd, C, False)
        self.gate_proj = frozen_linear(C, I, False)
        self.up_proj = frozen_linear(C, I, False)
        self.down_proj = frozen_linear(I, C, False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        h = self.input_layernorm(x)
        q = self.q_proj(h).view(B, T, self.H, self.hd).transpose(1, 2)
        k = self.k_proj(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        v = self.v_proj(h).view(B, T, self.KVH, self.hd).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        rep = self.H // self.KVH
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        a = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, self.H * self.hd)
        x = x + self.o_proj(a)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Gpt2Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        C = c["n_embd"]
        I = c.get("n_inner") or 4 * C
        self.H, self.hd = c["n_head"], C // c["n_head"]
        eps = c.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(C, eps=eps).requires_grad_(False)
        self.ln_2 = nn.LayerNorm(C, eps=eps).requires_grad_(False)
        self.c_attn = frozen_linear(C, 3 * C, True)
        self.attn_c_proj = frozen_linear(C, C, True)
        self.c_fc = frozen_linear(C, I, True)
        self.mlp_c_proj = frozen_linear(I, C, True)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=-1)
        q, k, v = (t.view(B, T, self.H, self.hd).transpose(1, 2) for t in (q, k, v))
        a = causal_attention(q, k, v).transpose(1, 2).reshape(B, T, C)
        x = x + self.attn_c_proj(a)
        return x + self.mlp_c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.gpt2 = c["model_type"] == "gpt2"
        C = c["n_embd"] if self.gpt2 else c["hidden_size"]
        V = c["vocab_size"]
        n_layers = c["n_layer"] if self.gpt2 else c["num_hidden_layers"]
        self.embed = nn.Embedding(V, C).requires_grad_(False)
        nn.init.normal_(self.embed.weight, std=0.02)
        if self.gpt2:
            self.wpe = nn.Embedding(c["n_positions"], C).requires_grad_(False)
            nn.init.normal_(self.wpe.weight, std=0.02)
            self.blocks = nn.ModuleList(Gpt2Block(c) for _ in range(n_layers))
            self.norm = nn.LayerNorm(C, eps=c.get("layer_norm_epsilon", 1e-5)).requires_grad_(False)
        else:
            qkv_bias = c["model_type"] == "qwen2"
            self.blocks = nn.ModuleList(LlamaBlock(c, qkv_bias) for _ in range(n_layers))
            self.norm = RMSNorm(C, c.get("rms_norm_eps", 1e-6))
            hd = C // c["num_attention_heads"]
            cos, sin = rope_tables(hd, c.get("max_position_embeddings", 4096), c.get("rope_theta", 10000.0))
            self.register_buffer("cos", cos, persistent=False)
            self.register_buffer("sin", sin, persistent=False)
        tied = c.get("tie_word_embeddings", True)
        self.lm_head = None if tied else frozen_linear(C, V, False)

    def forward(self, ids):
        B, T = ids.shape
        x = self.embed(ids)
        cos = sin = None
        if self.gpt2:
            x = x + self.wpe(torch.arange(T))
        else:
            cos, sin = self.cos[:T], self.sin[:T]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        x = self.norm(x)
        w = self.embed.weight if self.lm_head is None else self.lm_head.weight
        return x @ w.t()


TARGETS = {
    "qv": {"llama": ["q_proj", "v_proj"], "qwen2": ["q_proj", "v_proj"], "gpt2": ["c_attn"]},
    "all": {"llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "gpt2": ["c_attn", "attn_c_proj", "c_fc", "mlp_c_proj"]},
}


def attach_lora(model, model_type, targets, r, alpha, dora=False):
    params = []
    for blk in model.blocks:
        for name in TARGETS[targets][model_type]:
            lora = (DoraLinear if dora else LoraLinear)(getattr(blk, name), r, alpha)
            setattr(blk, name, lora)
            params += [lora.lora_A, lora.lora_B] + ([lora.magnitude] if dora else [])
    return params


def cpu_seconds():
    """User + system CPU time of this process, all threads (as peftc bench's cpu_s_per_step)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def blas_in_use():
    """Which BLAS library this process mapped (Debian's python3-torch calls the system libblas.so.3, which is
    the slow reference netlib BLAS unless OpenBLAS/BLIS is installed as the alternative)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {line.split()[-1] for line in f if "blas" in line.lower() or "libmkl" in line.lower()}
    except OSError:
        return "unknown"
    for lib in sorted(libs):
        if "openblas" in lib or "blis" in lib or "mkl" in lib:
            return lib
    return next(iter(sorted(libs)), "none")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--targets", choices=["qv", "all"], default="all")
    ap.add_argument("--r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--use-dora", action="store_true", help="DoRA on the same projections")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    with open(a.config) as f:
        c = json.load(f)
    model = Decoder(c)
    params = attach_lora(model, c["model_type"], a.targets, a.r, a.lora_alpha, a.use_dora)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0)
    V = c["vocab_size"]
    times = []
    cpu0 = 0.0
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            cpu0 = cpu_seconds()
        ids = torch.randint(0, V, (a.batch, a.seq_len))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    cpu_per_step = (cpu_seconds() - cpu0) / a.steps
    med = statistics.median(times)
    print(json.dumps({
        "tokens_per_s": a.batch * a.seq_len / med,
        "step_s_median": med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "cpu_s_per_step": cpu_per_step,
        "trainable_params": sum(p.numel() for p in params),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "blas": blas_in_use(),
        "loss": float(loss),
    }))


if __name__ == "__main__":
    main()
