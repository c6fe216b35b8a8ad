"""A second, independently written float64 implementation used only to check hf_reference.py.

It shares no code with hf_reference.py and is written differently on purpose:
  * works on a flat dict of tensors named as in model.safetensors, not on nn.Modules;
  * RoPE as explicit 2-D rotations of the pairs (i, i + hd/2) with angles from math.pow;
  * attention head by head, GQA by indexing kv head h // group (no repeat_kv);
  * softmax, RMSNorm, LayerNorm, cross-entropy written out by hand;
  * adapters applied as MERGED weights (W + s*B*A, DoRA m*(W+sBA)/||.||, IA3 row/column
    scaling), prefix keys/values gathered with the index formula from formats.md 2c.
If both implementations agree (loss, logits and every gradient), the transcription of the
HF/PEFT semantics is unlikely to be wrong in only one of them.
"""
import math

import torch


def _softmax_rows(x):
    m = x.max(dim=-1, keepdim=True).values
    e = torch.exp(x - m)
    return e / e.sum(dim=-1, keepdim=True)


def _rms_norm(x, w, eps):
    return x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + eps) * w


def _layer_norm(x, w, b, eps):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def _rope(x, positions, theta):
    # x [T, hd]; pair (i, i+half) rotated by angle pos * theta^(-2i/hd)
    T, hd = x.shape
    half = hd // 2
    ang = torch.tensor([[p * math.pow(theta, -2.0 * i / hd) for i in range(half)] for p in positions],
                       dtype=torch.float64)
    c, s = torch.cos(ang), torch.sin(ang)
    a, b = x[:, :half], x[:, half:]
    return torch.cat([a * c - b * s, b * c + a * s], dim=1)


def cross_entropy(logits, labels):
    # logits [B, T, V], labels [B, T]; position t predicts labels[t+1]
    total, count = 0.0, 0
    B, T, _ = logits.shape
    for b in range(B):
        for t in range(T - 1):
            y = int(labels[b, t + 1])
            if y == -100:
                continue
            row = logits[b, t]
            m = row.max()
            total = total + (m + torch.log(torch.exp(row - m).sum()) - row[y])
            count += 1
    return total / count


def llama_logits(cfg, W, input_ids=None, prompt=None, prefix=None):
    """W: name -> float64 tensor (effective weights).  prompt: [n, hidden] virtual rows.
    prefix: [n, layers*2*kv*hd] prefix-tuning table."""
    H = cfg["hidden_size"]
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = H // nh
    group = nh // nkv
    eps, theta = cfg["rms_norm_eps"], float(cfg["rope_theta"])
    emb = W["model.embed_tokens.weight"]
    head = emb if cfg.get("tie_word_embeddings") else W["lm_head.weight"]
    out = []
    for b in range(input_ids.shape[0]):
        x = emb[input_ids[b].long()]
        if prompt is not None:
            x = torch.cat([prompt, x], dim=0)
        n_past = 0 if prefix is None else prefix.shape[0]
        T = x.shape[0]
        positions = list(range(n_past, n_past + T))
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            hN = _rms_norm(x, W[p + "input_layernorm.weight"], eps)

            def lin(name, inp):
                y = inp @ W[p + name + ".weight"].T
                if (p + name + ".bias") in W:
                    y = y + W[p + name + ".bias"]
                return y
            q, k, v = lin("self_attn.q_proj", hN), lin("self_attn.k_proj", hN), lin("self_attn.v_proj", hN)
            heads_out = []
            for h in range(nh):
                g = h // group
                qh = _rope(q[:, h * hd:(h + 1) * hd], positions, theta)
                kh = _rope(k[:, g * hd:(g + 1) * hd], positions, theta)
                vh = v[:, g * hd:(g + 1) * hd]
                if prefix is not None:
                    kidx = [((l * 2 + 0) * nkv + g) * hd + d for d in range(hd)]
                    vidx = [((l * 2 + 1) * nkv + g) * hd + d for d in range(hd)]
                    kh = torch.cat([prefix[:, kidx], kh], dim=0)
                    vh = torch.cat([prefix[:, vidx], vh], dim=0)
                scores = (qh @ kh.T) / math.sqrt(hd)
                S = kh.shape[0]
                allowed = torch.tensor([[j <= n_past + i for j in range(S)] for i in range(T)])
                scores = torch.where(allowed, scores, torch.full_like(scores, -1e300))
                heads_out.append(_softmax_rows(scores) @ vh)
            x = x + lin("self_attn.o_proj", torch.cat(heads_out, dim=1))
            hN = _rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
            gate, up = lin("mlp.gate_proj", hN), lin("mlp.up_proj", hN)
            x = x + lin("mlp.down_proj", gate / (1 + torch.exp(-gate)) * up)
        x = _rms_norm(x, W["model.norm.weight"], eps)
        out.append(x @ head.T)
    return torch.stack(out)


def gpt2_logits(cfg, W, input_ids):
    E, nh = cfg["n_embd"], cfg["n_head"]
    hd = E // nh
    eps = cfg["layer_norm_epsilon"]
    out = []
    for b in range(input_ids.shape[0]):
        T = input_ids.shape[1]
        x = W["transformer.wte.weight"][input_ids[b].long()] + W["transformer.wpe.weight"][:T]
        for l in range(cfg["n_layer"]):
            p = f"transformer.h.{l}."

            def conv(name, inp):
                return inp @ W[p + name + ".weight"] + W[p + name + ".bias"]
            hN = _layer_norm(x, W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
            qkv = conv("attn.c_attn", hN)
            heads_out = []
            for h in range(nh):
                q = qkv[:, h * hd:(h + 1) * hd]
                k = qkv[:, E + h * hd:E + (h + 1) * hd]
                v = qkv[:, 2 * E + h * hd:2 * E + (h + 1) * hd]
                scores = (q @ k.T) / math.sqrt(hd)
                scores = torch.where(torch.ones(T, T, dtype=torch.bool).tril(), scores,
                                     torch.full_like(scores, -1e300))
                heads_out.append(_softmax_rows(scores) @ v)
            x = x + conv("attn.c_proj", torch.cat(heads_out, dim=1))
            hN = _layer_norm(x, W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
            a = conv("mlp.c_fc", hN)
            a = 0.5 * a * (1 + torch.tanh(math.sqrt(2 / math.pi) * (a + 0.044715 * a ** 3)))
            x = x + conv("mlp.c_proj", a)
        x = _layer_norm(x, W["transformer.ln_f.weight"], W["transformer.ln_f.bias"], eps)
        out.append(x @ W["transformer.wte.weight"].T)
    return torch.stack(out)


def model_logits(cfg, W, input_ids, prompt=None, prefix=None):
    if cfg["model_type"] == "gpt2":
        return gpt2_logits(cfg, W, input_ids)
    return llama_logits(cfg, W, input_ids, prompt, prefix)


# ---- merged adapter weights ------------------------------------------------------------
def merge_lora(W, module, A, B, scaling, conv1d, magnitude=None):
    """Returns a new dict with module's weight replaced by the merged weight."""
    W = dict(W)
    key = module + ".weight"
    base = W[key].T if conv1d else W[key]           # [out, in]
    delta = scaling * (B @ A)
    merged = base + delta
    if magnitude is not None:
        norm = torch.sqrt((merged.detach() ** 2).sum(dim=1))   # constant for backprop
        merged = magnitude[:, None] * merged / norm[:, None]
    W[key] = merged.T if conv1d else merged
    return W


def merge_ia3(W, module, l, feedforward):
    W = dict(W)
    key = module + ".weight"                        # Linear [out, in]
    if feedforward:
        W[key] = W[key] * l.reshape(1, -1)          # scales input columns
    else:
        W[key] = W[key] * l.reshape(-1, 1)          # scales output rows
        if module + ".bias" in W:
            W[module + ".bias"] = W[module + ".bias"] * l.reshape(-1)
    return W
