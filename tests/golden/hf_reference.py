"""Plain-torch re-implementations of the Hugging Face models and PEFT methods peftc must match.

Written from the public sources (transformers: models/llama/modeling_llama.py,
models/qwen2/modeling_qwen2.py, models/gpt2/modeling_gpt2.py, loss/loss_utils.py;
peft: tuners/lora/layer.py, tuners/lora/dora.py, tuners/ia3/layer.py, peft_model.py,
utils/other.py).  Module names are the HF module paths, so `named_parameters()` yields
exactly the keys HF's `save_pretrained` writes.

Deliberate scope: eval-mode semantics (dropout off), eager attention, no attention_mask
argument (pure causal mask; see README: right padding never changes the real positions).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


def _compute_dtype(dtype):
    # HF upcasts norms/softmax to fp32 for half types.  For our float64 cross-check run we
    # keep float64 instead of downcasting, which is what "at least fp32" means there.
    return torch.promote_types(dtype, torch.float32)


# ----------------------------------------------------------------------------------------
# Loss: transformers loss_utils.ForCausalLMLoss (labels shifted inside, -100 ignored, mean)
# ----------------------------------------------------------------------------------------
def causal_lm_loss(logits, labels):
    logits = logits.float() if logits.dtype != torch.float64 else logits
    # pad labels on the right with -100 then drop the first: position t predicts labels[t+1]
    shift_labels = F.pad(labels, (0, 1), value=-100)[..., 1:].contiguous()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), shift_labels.reshape(-1),
                           ignore_index=-100, reduction="mean")


# ----------------------------------------------------------------------------------------
# Llama / Qwen2 (Qwen2 = Llama with q/k/v biases)
# ----------------------------------------------------------------------------------------
class LlamaRMSNorm(nn.Module):
    def __init__(self, hidden_size, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(_compute_dtype(input_dtype))
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


def rope_inv_freq(head_dim, theta, dtype=torch.float32):
    # transformers _compute_default_rope_parameters: int64 arange -> float -> base ** (i/dim)
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).to(dtype) / head_dim
    return 1.0 / (theta ** exponent)


def rope_cos_sin(inv_freq, position_ids, dtype):
    # LlamaRotaryEmbedding.forward: freqs = inv_freq (outer) positions, emb = cat(freqs, freqs)
    inv_freq_expanded = inv_freq[None, :, None].expand(position_ids.shape[0], -1, 1)
    position_ids_expanded = position_ids[:, None, :].to(inv_freq.dtype)
    freqs = (inv_freq_expanded @ position_ids_expanded).transpose(1, 2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_pos_emb(q, k, cos, sin):
    cos = cos.unsqueeze(1)
    sin = sin.unsqueeze(1)
    return (q * cos) + (rotate_half(q) * sin), (k * cos) + (rotate_half(k) * sin)


def repeat_kv(hidden_states, n_rep):
    # [B, kv_heads, S, hd] -> [B, kv_heads*n_rep, S, hd]; query head h uses kv head h // n_rep
    batch, num_kv, slen, head_dim = hidden_states.shape
    if n_rep == 1:
        return hidden_states
    hidden_states = hidden_states[:, :, None, :, :].expand(batch, num_kv, n_rep, slen, head_dim)
    return hidden_states.reshape(batch, num_kv * n_rep, slen, head_dim)


def causal_additive_mask(q_len, past_len, dtype):
    # query i sits at absolute position past_len+i and may see keys 0..past_len+i
    k_len = past_len + q_len
    q_pos = torch.arange(past_len, k_len)[:, None]
    k_pos = torch.arange(k_len)[None, :]
    mask = torch.zeros(q_len, k_len, dtype=dtype)
    return mask.masked_fill(k_pos > q_pos, torch.finfo(dtype).min)


class LlamaAttention(nn.Module):
    def __init__(self, cfg, qkv_bias):
        super().__init__()
        self.num_heads = cfg["num_attention_heads"]
        self.num_kv = cfg["num_key_value_heads"]
        self.head_dim = cfg.get("head_dim") or cfg["hidden_size"] // self.num_heads
        self.scaling = self.head_dim ** -0.5
        hidden = cfg["hidden_size"]
        self.q_proj = nn.Linear(hidden, self.num_heads * self.head_dim, bias=qkv_bias)
        self.k_proj = nn.Linear(hidden, self.num_kv * self.head_dim, bias=qkv_bias)
        self.v_proj = nn.Linear(hidden, self.num_kv * self.head_dim, bias=qkv_bias)
        self.o_proj = nn.Linear(self.num_heads * self.head_dim, hidden, bias=False)
        self.last_probs = None

    def forward(self, h, cos, sin, past_kv=None):
        # h [B,T,hidden]; past_kv = (k, v) each [B, kv_heads, P, hd], already "cached":
        # prefix-tuning keys enter here and are NOT rotated (DynamicCache.update concatenates
        # the freshly rotated keys after them).
        B, T, _ = h.shape
        q = self.q_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
        k = self.k_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
        v = self.v_proj(h).view(B, T, -1, self.head_dim).transpose(1, 2)
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        past_len = 0
        if past_kv is not None:
            past_len = past_kv[0].shape[2]
            k = torch.cat([past_kv[0].to(k.dtype), k], dim=2)
            v = torch.cat([past_kv[1].to(v.dtype), v], dim=2)
        groups = self.num_heads // self.num_kv
        k = repeat_kv(k, groups)
        v = repeat_kv(v, groups)
        # eager_attention_forward
        w = torch.matmul(q, k.transpose(2, 3)) * self.scaling
        w = w + causal_additive_mask(T, past_len, w.dtype)
        w = F.softmax(w, dim=-1, dtype=_compute_dtype(q.dtype)).to(q.dtype)
        self.last_probs = w.detach()
        o = torch.matmul(w, v).transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(o)


class LlamaMLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
        self.gate_proj = nn.Linear(hidden, inter, bias=False)
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class LlamaDecoderLayer(nn.Module):
    def __init__(self, cfg, qkv_bias):
        super().__init__()
        self.self_attn = LlamaAttention(cfg, qkv_bias)
        self.mlp = LlamaMLP(cfg)
        self.input_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])
        self.post_attention_layernorm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, h, cos, sin, past_kv=None):
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, past_kv)
        return h + self.mlp(self.post_attention_layernorm(h))


class LlamaModel(nn.Module):
    def __init__(self, cfg, qkv_bias):
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["hidden_size"])
        self.layers = nn.ModuleList(LlamaDecoderLayer(cfg, qkv_bias)
                                    for _ in range(cfg["num_hidden_layers"]))
        self.norm = LlamaRMSNorm(cfg["hidden_size"], cfg["rms_norm_eps"])

    def forward(self, input_ids=None, inputs_embeds=None, past_key_values=None):
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids)
        B, T, _ = inputs_embeds.shape
        # LlamaModel.forward: cache_position = arange(past_seen, past_seen+T); position_ids = it
        past_len = 0 if past_key_values is None else past_key_values[0][0].shape[2]
        position_ids = torch.arange(past_len, past_len + T)[None, :].expand(B, T)
        head_dim = self.layers[0].self_attn.head_dim
        inv_freq_dtype = torch.float64 if inputs_embeds.dtype == torch.float64 else torch.float32
        inv_freq = rope_inv_freq(head_dim, float(self.cfg["rope_theta"]), inv_freq_dtype)
        cos, sin = rope_cos_sin(inv_freq, position_ids, inputs_embeds.dtype)
        h = inputs_embeds
        for i, layer in enumerate(self.layers):
            h = layer(h, cos, sin, None if past_key_values is None else past_key_values[i])
        return self.norm(h)


class LlamaForCausalLM(nn.Module):
    """Also Qwen2ForCausalLM with qkv_bias=True (the only difference at these settings)."""

    def __init__(self, cfg, qkv_bias=False):
        super().__init__()
        self.cfg = cfg
        self.model = LlamaModel(cfg, qkv_bias)
        self.tied = bool(cfg.get("tie_word_embeddings", False))
        if not self.tied:
            self.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def forward(self, input_ids=None, inputs_embeds=None, past_key_values=None):
        h = self.model(input_ids, inputs_embeds, past_key_values)
        if self.tied:
            return F.linear(h, self.model.embed_tokens.weight)
        return self.lm_head(h)

    def word_embeddings(self):
        return self.model.embed_tokens

    def attention_modules(self):
        return [layer.self_attn for layer in self.model.layers]


# ----------------------------------------------------------------------------------------
# GPT-2
# ----------------------------------------------------------------------------------------
class Conv1D(nn.Module):
    """transformers pytorch_utils.Conv1D: weight stored [in, out] (transposed vs nn.Linear)."""

    def __init__(self, nf, nx):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight)
        return x.view(size_out)


def gelu_new(x):
    # activations.NewGELUActivation (tanh approximation)
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class GPT2Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.embed_dim = cfg["n_embd"]
        self.num_heads = cfg["n_head"]
        self.head_dim = self.embed_dim // self.num_heads
        self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.last_probs = None

    def forward(self, h):
        B, T, _ = h.shape
        q, k, v = self.c_attn(h).split(self.embed_dim, dim=2)
        q, k, v = (t.view(B, T, self.num_heads, self.head_dim).transpose(1, 2) for t in (q, k, v))
        w = torch.matmul(q, k.transpose(-1, -2))
        w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)  # scale_attn_weights
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
        w = F.softmax(w, dim=-1).type(v.dtype)
        self.last_probs = w.detach()
        o = torch.matmul(w, v).transpose(1, 2).reshape(B, T, self.embed_dim)
        return self.c_proj(o)


class GPT2MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        inner = cfg.get("n_inner") or 4 * cfg["n_embd"]
        self.c_fc = Conv1D(inner, cfg["n_embd"])
        self.c_proj = Conv1D(cfg["n_embd"], inner)

    def forward(self, x):
        return self.c_proj(gelu_new(self.c_fc(x)))


class GPT2Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        eps = cfg["layer_norm_epsilon"]
        self.ln_1 = nn.LayerNorm(cfg["n_embd"], eps=eps)
        self.attn = GPT2Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg["n_embd"], eps=eps)
        self.mlp = GPT2MLP(cfg)

    def forward(self, h):
        h = h + self.attn(self.ln_1(h))
        return h + self.mlp(self.ln_2(h))


class GPT2Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.wte = nn.Embedding(cfg["vocab_size"], cfg["n_embd"])
        self.wpe = nn.Embedding(cfg["n_positions"], cfg["n_embd"])
        self.h = nn.ModuleList(GPT2Block(cfg) for _ in range(cfg["n_layer"]))
        self.ln_f = nn.LayerNorm(cfg["n_embd"], eps=cfg["layer_norm_epsilon"])

    def forward(self, input_ids):
        T = input_ids.shape[1]
        h = self.wte(input_ids) + self.wpe(torch.arange(T))[None]
        for block in self.h:
            h = block(h)
        return self.ln_f(h)


class GPT2LMHeadModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.transformer = GPT2Model(cfg)  # lm_head is tied to transformer.wte

    def forward(self, input_ids=None, inputs_embeds=None, past_key_values=None):
        assert inputs_embeds is None and past_key_values is None, "not needed for the goldens"
        return F.linear(self.transformer(input_ids), self.transformer.wte.weight)

    def attention_modules(self):
        return [block.attn for block in self.transformer.h]


def build_model(cfg):
    mt = cfg["model_type"]
    if mt == "llama":
        return LlamaForCausalLM(cfg, qkv_bias=bool(cfg.get("attention_bias", False)))
    if mt == "qwen2":
        return LlamaForCausalLM(cfg, qkv_bias=True)
    if mt == "gpt2":
        return GPT2LMHeadModel(cfg)
    raise ValueError(mt)


def mean_max_attention_prob(model):
    vals = [m.last_probs.max(dim=-1).values.mean().item() for m in model.attention_modules()]
    return sum(vals) / len(vals)


# ----------------------------------------------------------------------------------------
# PEFT tuner layers (eval semantics: dropout = identity)
# ----------------------------------------------------------------------------------------
class LoraLinear(nn.Module):
    """peft tuners/lora/layer.py Linear (+ dora.py DoraLinearLayer when use_dora)."""

    def __init__(self, base_layer, r, alpha, use_rslora, use_dora, fan_in_fan_out):
        super().__init__()
        self.base_layer = base_layer
        if fan_in_fan_out:   # Conv1D: weight [in, out]
            in_f, out_f = base_layer.weight.shape
        else:
            out_f, in_f = base_layer.weight.shape
        self.fan_in_fan_out = fan_in_fan_out
        self.lora_A = nn.Linear(in_f, r, bias=False)
        self.lora_B = nn.Linear(r, out_f, bias=False)
        self.scaling = alpha / math.sqrt(r) if use_rslora else alpha / r
        self.use_dora = use_dora
        if use_dora:
            self.lora_magnitude_vector = nn.Parameter(torch.ones(out_f))

    def base_weight_out_in(self):
        w = self.base_layer.weight
        return w.T if self.fan_in_fan_out else w

    def dora_weight_norm(self):
        # DoraLinearLayer.get_weight_norm with lora_weight.detach(), then .detach() again:
        # ||W + s*B*A|| per output row is a constant for backprop (DoRA paper sec. 4.3).
        x_eye = torch.eye(self.lora_A.weight.shape[1], dtype=self.lora_A.weight.dtype)
        lora_weight = self.lora_B(self.lora_A(x_eye)).T
        w = self.base_weight_out_in() + self.scaling * lora_weight.detach()
        return torch.linalg.norm(w, dim=1).to(w.dtype).detach()

    def forward(self, x):
        result = self.base_layer(x)
        if not self.use_dora:
            return result + self.lora_B(self.lora_A(x)) * self.scaling
        mag_norm_scale = (self.lora_magnitude_vector / self.dora_weight_norm()).view(1, -1)
        lora_result = self.lora_B(self.lora_A(x))
        base_no_bias = F.linear(x, self.base_weight_out_in())
        return result + (mag_norm_scale - 1) * base_no_bias + mag_norm_scale * lora_result * self.scaling


class IA3Linear(nn.Module):
    """peft tuners/ia3/layer.py Linear: feed-forward targets scale the input, others the output."""

    def __init__(self, base_layer, is_feedforward):
        super().__init__()
        self.base_layer = base_layer
        out_f, in_f = base_layer.weight.shape
        self.is_feedforward = is_feedforward
        shape = (1, in_f) if is_feedforward else (out_f, 1)
        self.ia3_l = nn.Parameter(torch.ones(shape))

    def forward(self, x):
        scale = self.ia3_l.flatten()
        if self.is_feedforward:
            return self.base_layer(x * scale)
        return self.base_layer(x) * scale


def get_submodule_parent(model, path):
    parts = path.split(".")
    parent = model.get_submodule(".".join(parts[:-1]))
    return parent, parts[-1]


def inject(model, path, make_layer):
    parent, name = get_submodule_parent(model, path)
    layer = make_layer(getattr(parent, name))
    setattr(parent, name, layer)
    return layer


# ----------------------------------------------------------------------------------------
# Prompt learning (peft_model.py PeftModelForCausalLM.forward + get_prompt)
# ----------------------------------------------------------------------------------------
def prompt_tuning_forward(model, prompt_embeddings, input_ids, labels):
    """Virtual rows before the token embeddings, labels prefixed with -100, no position_ids
    (so the model numbers virtual+real from 0).  Returns (logits [B, n+T, V], labels')."""
    B = input_ids.shape[0]
    n = prompt_embeddings.shape[0]
    inputs_embeds = model.word_embeddings()(input_ids)
    prompts = prompt_embeddings[None].repeat(B, 1, 1).to(inputs_embeds.dtype)
    inputs_embeds = torch.cat((prompts, inputs_embeds), dim=1)
    prefix_labels = torch.full((B, n), -100, dtype=labels.dtype)
    labels = torch.cat((prefix_labels, labels), dim=1)
    return model(inputs_embeds=inputs_embeds), labels


def prefix_past_key_values(prompt_embeddings, batch_size, num_layers, kv_heads, head_dim):
    """get_prompt for PREFIX_TUNING without projection: [n, layers*2*kv_heads*hd] viewed as
    (B, n, layers*2, heads, hd), permuted [2,0,3,1,4] -> [layers*2, B, heads, n, hd], split in
    pairs: layer l key = chunk 2l, value = chunk 2l+1."""
    n = prompt_embeddings.shape[0]
    pkv = prompt_embeddings[None].repeat(batch_size, 1, 1)
    pkv = pkv.view(batch_size, n, num_layers * 2, kv_heads, head_dim)
    pkv = pkv.permute([2, 0, 3, 1, 4]).split(2)
    return [(chunk[0], chunk[1]) for chunk in pkv]
