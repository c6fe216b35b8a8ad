#!/usr/bin/env python3
"""Generate peftc's PyTorch golden files into tests/golden/data/ (see README.md beside this).

    python3 tests/golden/gen_goldens.py          # needs Debian's python3-torch (/usr/bin/python3)
    python3 tests/golden/gen_goldens.py --check  # also run the slower float64 gradchecks

Deterministic: every case draws from its own seeded torch.Generator, torch runs on one
thread, and every file is written by code in this directory, so re-running produces
byte-identical files (with the same torch build).
Every run also cross-checks the reference against an independent float64 implementation
(alt_reference.py) and aborts if they disagree.
"""
import copy
import json
import math
import os
import re
import shutil
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

try:
    import torch
except ImportError:  # a pyenv/venv python without torch: fall back to Debian's python3
    if os.path.exists("/usr/bin/python3") and sys.executable != "/usr/bin/python3":
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise

from torch import nn
from torch.nn.utils import stateless

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import alt_reference as alt  # noqa: E402
import hf_reference as ref  # noqa: E402
import safetensors_io as st  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "data")
PEFT_VERSION = "0.17.1"          # informational only; the field set follows formats.md 2b
TRANSFORMERS_VERSION = "4.56.2"  # informational only
ST_META = {"format": "pt"}

# Tolerances of the self-checks: error / max|reference| per tensor.
TOL_VALUE = 1e-5
TOL_GRAD = 1e-4

# ----------------------------------------------------------------------------------------
# Case tables
# ----------------------------------------------------------------------------------------
BASE_CASES = {
    "llama_gqa": dict(arch="llama", kv_heads=2, tied=False, rope_theta=10000.0, seed=1001),
    "llama_tied": dict(arch="llama", kv_heads=4, tied=True, rope_theta=500000.0, seed=1002),
    "qwen2": dict(arch="qwen2", kv_heads=2, tied=False, rope_theta=10000.0, seed=1003),
    "gpt2": dict(arch="gpt2", seed=1004),
}
LLAMA_ALL_LINEAR = ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]
ADAPTER_CASES = {
    "lora_llama": dict(base="llama_gqa", method="lora", r=4, alpha=8,
                       targets=["q_proj", "v_proj"], seed=2001, lr=0.5),
    # "all-linear" is expanded by PEFT to the module names before saving; rank/alpha patterns
    # are regexes matched as re.match(r"(.*\.)?(KEY)$", module_name).
    "lora_llama_all": dict(base="llama_gqa", method="lora", r=4, alpha=8, targets=LLAMA_ALL_LINEAR,
                           rank_pattern={"down_proj": 6},
                           alpha_pattern={"layers.1.self_attn.k_proj": 24}, seed=2002, lr=0.5),
    "lora_llama_rslora": dict(base="llama_tied", method="lora", r=4, alpha=8, use_rslora=True,
                              targets=["k_proj", "o_proj", "q_proj", "v_proj"], seed=2003, lr=0.5),
    "lora_llama_dora": dict(base="llama_gqa", method="lora", r=4, alpha=8, use_dora=True,
                            targets=["down_proj", "q_proj", "v_proj"], seed=2004, lr=2.0),
    "lora_qwen2": dict(base="qwen2", method="lora", r=4, alpha=8,
                       targets=["k_proj", "o_proj", "q_proj", "v_proj"], seed=2005, lr=0.5),
    # "c_proj" matches BOTH attn.c_proj and mlp.c_proj (suffix rule of target_modules lists).
    "lora_gpt2": dict(base="gpt2", method="lora", r=4, alpha=8, targets=["c_attn", "c_proj"],
                      fan_in_fan_out=True, seed=2006, lr=0.5),
    "lora_gpt2_dora": dict(base="gpt2", method="lora", r=4, alpha=8, targets=["c_attn", "c_proj"],
                           fan_in_fan_out=True, use_dora=True, seed=2007, lr=2.0),
    "prompt_tuning_llama": dict(base="llama_gqa", method="prompt_tuning", num_virtual_tokens=5,
                                seed=2008, lr=0.5),
    "prefix_tuning_llama": dict(base="llama_gqa", method="prefix_tuning", num_virtual_tokens=5,
                                seed=2009, lr=2.0),
    "ia3_llama": dict(base="llama_gqa", method="ia3", targets=["down_proj", "k_proj", "v_proj"],
                      feedforward=["down_proj"], seed=2010, lr=2.0),
}

HIDDEN, HEADS, LAYERS, INTER, VOCAB, MAXPOS = 48, 4, 2, 96, 128, 64
BATCH, SEQ = 2, 12


# ----------------------------------------------------------------------------------------
# Configs (real HF config.json fields; HF writes json.dumps(indent=2, sort_keys=True)+"\n")
# ----------------------------------------------------------------------------------------
def llama_like_config(arch, kv_heads, tied, rope_theta, dtype="float32"):
    cfg = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTER,
        "max_position_embeddings": MAXPOS,
        "model_type": arch,
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": 1e-6,
        "rope_scaling": None,
        "rope_theta": rope_theta,
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }
    if arch == "llama":
        cfg.update({"attention_bias": False, "head_dim": HIDDEN // HEADS, "mlp_bias": False,
                    "pretraining_tp": 1})
    else:
        cfg.update({"max_window_layers": LAYERS, "sliding_window": 32768,
                    "use_sliding_window": False})
    return cfg


def gpt2_config():
    return {
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        # dropouts 0 so that HF train mode computes the same thing as eval mode
        "attn_pdrop": 0.0,
        "bos_token_id": 0,
        "embd_pdrop": 0.0,
        "eos_token_id": 0,
        "initializer_range": 0.02,
        "layer_norm_epsilon": 1e-5,
        "model_type": "gpt2",
        "n_ctx": MAXPOS,
        "n_embd": HIDDEN,
        "n_head": HEADS,
        "n_inner": None,
        "n_layer": LAYERS,
        "n_positions": MAXPOS,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.0,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.0,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "transformers_version": TRANSFORMERS_VERSION,
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def base_config(spec):
    if spec["arch"] == "gpt2":
        return gpt2_config()
    return llama_like_config(spec["arch"], spec["kv_heads"], spec["tied"], spec["rope_theta"])


# ----------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------
def write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_json(path, obj, trailing_newline=True):
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + ("\n" if trailing_newline else ""))


def randn(gen, shape, std, mean=0.0):
    return torch.randn(shape, generator=gen, dtype=torch.float32) * std + mean


def scaled_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


class CheckLog:
    def __init__(self):
        self.failures = []

    def expect(self, what, err, tol):
        ok = err <= tol
        if not ok:
            self.failures.append(f"{what}: {err:.3e} > {tol:.0e}")
        return ok


CHECKS = CheckLog()


def init_base_params(model, gen):
    """Random but realistic: weights N(0, 0.2), embeddings N(0, 0.3), biases N(0, 0.1),
    norm gains 1 + N(0, 0.1).  Iterates named_parameters() in module order (deterministic)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            is_norm = ("norm" in name) or (".ln_" in name)
            if is_norm and name.endswith(".weight"):
                p.copy_(randn(gen, p.shape, 0.1, 1.0))
            elif name.endswith(".bias"):
                p.copy_(randn(gen, p.shape, 0.1))
            elif "embed_tokens" in name or "wte" in name:
                p.copy_(randn(gen, p.shape, 0.3))
            elif "wpe" in name:
                p.copy_(randn(gen, p.shape, 0.1))
            else:
                p.copy_(randn(gen, p.shape, 0.2))


def make_batch(gen):
    """Row 0: 12 real tokens, label at position 6 masked.  Row 1: 9 real tokens + 3 pads
    (id 0, label -100).  Real ids are drawn from 1..VOCAB-1 so 0 only ever means padding."""
    input_ids = torch.randint(1, VOCAB, (BATCH, SEQ), generator=gen, dtype=torch.int64)
    labels = input_ids.clone()
    labels[0, 6] = -100
    input_ids[1, 9:] = 0
    labels[1, 9:] = -100
    return input_ids, labels


def data_jsonl(input_ids, labels):
    lines = []
    for b in range(input_ids.shape[0]):
        n = int((input_ids[b] != 0).sum())
        rec = {"input_ids": input_ids[b, :n].tolist(), "labels": labels[b, :n].tolist()}
        lines.append(json.dumps(rec))
    return "\n".join(lines) + "\n"


def load_state(path):
    tensors, _ = st.read(path)
    return tensors


# ----------------------------------------------------------------------------------------
# A. base models
# ----------------------------------------------------------------------------------------
def base_loss_fn(model, input_ids, labels):
    logits = model(input_ids)
    return logits, ref.causal_lm_loss(logits, labels)


def gen_base_case(name, spec):
    case_dir = os.path.join(OUT, name)
    gen = torch.Generator().manual_seed(spec["seed"])
    cfg = base_config(spec)
    model = ref.build_model(cfg)
    init_base_params(model, gen)
    input_ids, labels = make_batch(gen)

    logits, loss = base_loss_fn(model, input_ids, labels)
    loss.backward()
    attn_peak = ref.mean_max_attention_prob(model)
    params = dict(model.named_parameters())

    write_json(os.path.join(case_dir, "model", "config.json"), cfg)
    st.write(os.path.join(case_dir, "model", "model.safetensors"),
             {k: v.detach() for k, v in params.items()}, ST_META)
    golden = {"input_ids": input_ids.to(torch.int32), "labels": labels.to(torch.int32),
              "loss": loss.detach().reshape(1), "logits": logits.detach()}
    for k, p in params.items():
        golden["grad." + k] = p.grad.detach()
    st.write(os.path.join(case_dir, "golden.safetensors"), golden, ST_META)
    write_text(os.path.join(case_dir, "data.jsonl"), data_jsonl(input_ids, labels))

    print(f"[{name}] loss {loss.item():.6f}  mean max attention prob {attn_peak:.3f}  "
          f"params {sum(p.numel() for p in params.values())}")
    CHECKS.expect(f"{name}: attention too uniform", 0.3 - attn_peak, 0.0)
    check_base_against_alt(name, cfg, params, input_ids, labels, logits, loss)
    check_float64_conditioning(name, model, input_ids, labels, loss, params)
    if spec.get("bf16"):
        gen_bf16_variant(name, cfg, params, input_ids, labels)
    return cfg


def check_base_against_alt(name, cfg, params, input_ids, labels, logits, loss):
    W = {k: v.detach().double().requires_grad_(True) for k, v in params.items()}
    alt_logits = alt.model_logits(cfg, W, input_ids)
    alt_loss = alt.cross_entropy(alt_logits, labels)
    alt_loss.backward()
    e_loss = scaled_err(loss, alt_loss)
    e_logits = scaled_err(logits, alt_logits)
    e_grad = max(scaled_err(params[k].grad, W[k].grad) for k in params)
    CHECKS.expect(f"{name}: loss vs alt", e_loss, TOL_VALUE)
    CHECKS.expect(f"{name}: logits vs alt", e_logits, TOL_VALUE)
    CHECKS.expect(f"{name}: grads vs alt", e_grad, TOL_GRAD)
    print(f"    vs independent float64 implementation: loss {e_loss:.1e} logits {e_logits:.1e} "
          f"worst grad {e_grad:.1e}")


def check_float64_conditioning(name, model, input_ids, labels, loss, params):
    """Same code in float64: shows how far fp32 rounding moves the goldens (noise floor)."""
    m64 = copy.deepcopy(model).double()
    m64.zero_grad()
    _, loss64 = base_loss_fn(m64, input_ids, labels)
    loss64.backward()
    p64 = dict(m64.named_parameters())
    worst = max(scaled_err(params[k].grad, p64[k].grad) for k in params)
    print(f"    fp32 vs fp64 same code: loss {scaled_err(loss, loss64):.1e} worst grad {worst:.1e}")


def gen_bf16_variant(name, cfg, params, input_ids, labels):
    """BF16 weights on disk; torch upcasts them to fp32 and computes in fp32 (peftc's mode)."""
    case_dir = os.path.join(OUT, name)
    cfg16 = dict(cfg, torch_dtype="bfloat16")
    sd16 = {k: v.detach().to(torch.bfloat16) for k, v in params.items()}
    write_json(os.path.join(case_dir, "model_bf16", "config.json"), cfg16)
    st.write(os.path.join(case_dir, "model_bf16", "model.safetensors"), sd16, ST_META)
    model = ref.build_model(cfg16)
    model.load_state_dict({k: v.float() for k, v in sd16.items()})
    with torch.no_grad():
        logits, loss = base_loss_fn(model, input_ids, labels)
    st.write(os.path.join(case_dir, "golden_bf16.safetensors"),
             {"input_ids": input_ids.to(torch.int32), "labels": labels.to(torch.int32),
              "loss": loss.reshape(1), "logits": logits}, ST_META)
    print(f"    bf16 variant: loss {loss.item():.6f}")


# ----------------------------------------------------------------------------------------
# B/C. adapters
# ----------------------------------------------------------------------------------------
def get_pattern_key(pattern_keys, module_name):
    # peft utils/other.py get_pattern_key
    for key in pattern_keys:
        if re.match(rf"(.*\.)?({key})$", module_name):
            return key
    return module_name


def target_module_names(model, targets):
    """check_target_module_exists for a list: exact name or name ends with '.' + entry.
    Only Linear/Conv1D leaves qualify; lm_head is never a target here."""
    names = []
    for mname, mod in model.named_modules():
        if not isinstance(mod, (nn.Linear, ref.Conv1D)) or mname == "lm_head":
            continue
        if any(mname == t or mname.endswith("." + t) for t in targets):
            names.append(mname)
    return names


class PeftCausalLM(nn.Module):
    """The frozen base plus one PEFT method; forward(ids, labels) -> (logits, labels used)."""

    def __init__(self, base, spec):
        super().__init__()
        self.base = base
        self.spec = spec
        self.method = spec["method"]
        for p in base.parameters():
            p.requires_grad_(False)
        self.key_of = {}   # our parameter name -> PEFT adapter key
        cfg = base.cfg
        if self.method == "lora":
            for mname in target_module_names(base, spec["targets"]):
                r = spec.get("rank_pattern", {}).get(
                    get_pattern_key(spec.get("rank_pattern", {}).keys(), mname), spec["r"])
                alpha = spec.get("alpha_pattern", {}).get(
                    get_pattern_key(spec.get("alpha_pattern", {}).keys(), mname), spec["alpha"])
                ref.inject(base, mname, lambda lin, r=r, alpha=alpha: ref.LoraLinear(
                    lin, r, alpha, spec.get("use_rslora", False), spec.get("use_dora", False),
                    spec.get("fan_in_fan_out", False)))
        elif self.method == "ia3":
            for mname in target_module_names(base, spec["targets"]):
                ff = any(mname == t or mname.endswith("." + t) for t in spec["feedforward"])
                ref.inject(base, mname, lambda lin, ff=ff: ref.IA3Linear(lin, ff))
        elif self.method == "prompt_tuning":
            self.prompt_embeddings = nn.Parameter(
                torch.zeros(spec["num_virtual_tokens"], cfg["hidden_size"]))
        elif self.method == "prefix_tuning":
            self.kv_heads = cfg["num_key_value_heads"]
            self.head_dim = cfg["hidden_size"] // cfg["num_attention_heads"]
            token_dim = self.head_dim * self.kv_heads          # PEFT's GQA rewrite
            self.prompt_embeddings = nn.Parameter(torch.zeros(
                spec["num_virtual_tokens"], cfg["num_hidden_layers"] * 2 * token_dim))
        for pname, p in self.named_parameters():
            if p.requires_grad:
                if pname == "prompt_embeddings":
                    self.key_of[pname] = "prompt_embeddings"
                else:
                    self.key_of[pname] = "base_model.model." + pname[len("base."):]

    def forward(self, input_ids, labels):
        if self.method == "prompt_tuning":
            return ref.prompt_tuning_forward(self.base, self.prompt_embeddings, input_ids, labels)
        if self.method == "prefix_tuning":
            # PeftModelForCausalLM.forward (prefix branch): position_ids dropped, the prompt
            # becomes past_key_values (DynamicCache of n already-computed, unrotated keys and
            # values per layer); transformers then sets cache_position = arange(n, n+T) and
            # position_ids = cache_position, so real tokens are rotated at positions n..n+T-1,
            # and the causal mask lets query i see all n prefix slots plus real keys <= i.
            # (An attention_mask, if given, would be extended with n ones: same result.)
            pkv = ref.prefix_past_key_values(self.prompt_embeddings, input_ids.shape[0],
                                             self.base.cfg["num_hidden_layers"], self.kv_heads,
                                             self.head_dim)
            return self.base(input_ids, past_key_values=pkv), labels
        return self.base(input_ids), labels

    def trainable(self):
        return {n: p for n, p in self.named_parameters() if p.requires_grad}


def init_adapter_params(peft, gen):
    """Non-zero random adapters so they change the loss.  DoRA magnitudes start near the
    row norms of W + s*B*A (PEFT's init) times a random factor around 1."""
    with torch.no_grad():
        for pname, p in peft.trainable().items():
            if pname.endswith("lora_A.weight") or pname.endswith("lora_B.weight"):
                p.copy_(randn(gen, p.shape, 0.2))
            elif pname.endswith("ia3_l"):
                p.copy_(randn(gen, p.shape, 0.2, 1.0))
            elif pname == "prompt_embeddings":
                std = 0.5 if peft.method == "prompt_tuning" else 1.0
                p.copy_(randn(gen, p.shape, std))
        for mod in peft.modules():
            if isinstance(mod, ref.LoraLinear) and mod.use_dora:
                mod.lora_magnitude_vector.copy_(mod.dora_weight_norm()
                                                * randn(gen, mod.lora_magnitude_vector.shape, 0.1, 1.0))


def adapter_config(spec, base_cfg, base_name):
    common = {
        "auto_mapping": None,
        "base_model_name_or_path": f"tests/golden/data/{base_name}/model",
        "inference_mode": True,
        "peft_version": PEFT_VERSION,
        "revision": None,
        "task_type": "CAUSAL_LM",
    }
    m = spec["method"]
    if m == "lora":
        c = {
            "alora_invocation_tokens": None, "alpha_pattern": spec.get("alpha_pattern", {}),
            "arrow_config": None, "bias": "none", "corda_config": None,
            "ensure_weight_tying": False, "eva_config": None, "exclude_modules": None,
            "fan_in_fan_out": spec.get("fan_in_fan_out", False), "init_lora_weights": True,
            "kasa_config": None, "layer_replication": None, "layers_pattern": None,
            "layers_to_transform": None, "loftq_config": {}, "lora_alpha": spec["alpha"],
            "lora_bias": False, "lora_dropout": 0.0, "lora_ga_config": None,
            "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
            "monteclora_config": None, "peft_type": "LORA", "qalora_group_size": 16,
            "r": spec["r"], "rank_pattern": spec.get("rank_pattern", {}),
            "target_modules": sorted(spec["targets"]), "target_parameters": None,
            "trainable_token_indices": None, "use_bdlora": None,
            "use_dora": spec.get("use_dora", False), "use_qalora": False,
            "use_rslora": spec.get("use_rslora", False), "velora_config": None,
        }
    elif m == "ia3":
        c = {"exclude_modules": None, "fan_in_fan_out": False,
             "feedforward_modules": sorted(spec["feedforward"]), "init_ia3_weights": True,
             "modules_to_save": None, "peft_type": "IA3", "target_modules": sorted(spec["targets"])}
    else:
        heads, token_dim = base_cfg["num_attention_heads"], base_cfg["hidden_size"]
        c = {"modules_to_save": None, "num_layers": base_cfg["num_hidden_layers"],
             "num_transformer_submodules": 1, "num_virtual_tokens": spec["num_virtual_tokens"]}
        if m == "prompt_tuning":
            c.update({"num_attention_heads": heads, "token_dim": token_dim,
                      "peft_type": "PROMPT_TUNING", "prompt_tuning_init": "RANDOM",
                      "prompt_tuning_init_text": None, "tokenizer_kwargs": None,
                      "tokenizer_name_or_path": None})
        else:
            # _prepare_prompt_learning_config, GQA branch (#1901): token_dim becomes
            # head_dim*kv_heads and num_attention_heads kv_heads BEFORE encoder_hidden_size
            # defaults to token_dim.
            kv = base_cfg["num_key_value_heads"]
            c.update({"num_attention_heads": kv, "token_dim": token_dim // heads * kv,
                      "encoder_hidden_size": token_dim // heads * kv, "init_weights": None,
                      "peft_type": "PREFIX_TUNING", "prefix_projection": False})
    c.update(common)
    return c


def gen_adapter_case(name, spec):
    case_dir = os.path.join(OUT, name)
    base_dir = os.path.join(OUT, spec["base"])
    with open(os.path.join(base_dir, "model", "config.json")) as f:
        cfg = json.load(f)
    base_golden = load_state(os.path.join(base_dir, "golden.safetensors"))
    input_ids = base_golden["input_ids"].long()
    labels = base_golden["labels"].long()
    base_sd = load_state(os.path.join(base_dir, "model", "model.safetensors"))

    base = ref.build_model(cfg)
    base.load_state_dict(base_sd)
    peft = PeftCausalLM(base, spec)
    init_adapter_params(peft, torch.Generator().manual_seed(spec["seed"]))

    logits, used_labels = peft(input_ids, labels)
    loss = ref.causal_lm_loss(logits, used_labels)
    loss.backward()
    lr = spec["lr"]
    trainable = peft.trainable()

    adapter = {peft.key_of[n]: p.detach() for n, p in trainable.items()}
    write_json(os.path.join(case_dir, "adapter", "adapter_config.json"),
               adapter_config(spec, cfg, spec["base"]), trailing_newline=False)
    st.write(os.path.join(case_dir, "adapter", "adapter_model.safetensors"), adapter, ST_META)
    golden = {"input_ids": input_ids.to(torch.int32), "labels": labels.to(torch.int32),
              "loss": loss.detach().reshape(1), "logits": logits.detach(),
              "lr": torch.tensor([lr], dtype=torch.float32)}
    rel_step = []
    for n, p in trainable.items():
        key = peft.key_of[n]
        golden["grad." + key] = p.grad.detach()
        golden["sgd." + key] = (p.detach() - lr * p.grad.detach())
        rel_step.append((lr * p.grad).norm().item() / p.norm().item())
    st.write(os.path.join(case_dir, "golden.safetensors"), golden, ST_META)
    write_text(os.path.join(case_dir, "data.jsonl"), data_jsonl(input_ids, labels))
    case_info = {"base": spec["base"], "method": spec["method"], "lr": lr,
                 "base_loss": float(base_golden["loss"][0]), "loss": loss.item()}
    write_json(os.path.join(case_dir, "case.json"), case_info)

    print(f"[{name}] base {spec['base']}  loss {loss.item():.6f} (base {case_info['base_loss']:.6f})"
          f"  tensors {len(adapter)}  sgd step |lr*g|/|p| min {min(rel_step):.1e} max {max(rel_step):.1e}")
    CHECKS.expect(f"{name}: adapter does not change the loss",
                  1e-3 - abs(loss.item() - case_info["base_loss"]), 0.0)
    CHECKS.expect(f"{name}: sgd step too small", 1e-3 - min(rel_step), 0.0)
    check_adapter_against_alt(name, cfg, spec, peft, base_sd, input_ids, labels, logits, loss)


def alt_adapter_loss(cfg, spec, peft, base_sd, T, input_ids, labels):
    """Independent float64 evaluation with merged weights.  T: adapter key -> float64 leaf."""
    W = {k: v.double() for k, v in base_sd.items()}
    conv1d = spec.get("fan_in_fan_out", False)
    prompt = prefix = None
    if spec["method"] == "lora":
        for mod_name, mod in peft.base.named_modules():
            if isinstance(mod, ref.LoraLinear):
                k = "base_model.model." + mod_name
                mag = T.get(k + ".lora_magnitude_vector")
                W = alt.merge_lora(W, mod_name, T[k + ".lora_A.weight"], T[k + ".lora_B.weight"],
                                   mod.scaling, conv1d, mag)
    elif spec["method"] == "ia3":
        for mod_name, mod in peft.base.named_modules():
            if isinstance(mod, ref.IA3Linear):
                W = alt.merge_ia3(W, mod_name, T["base_model.model." + mod_name + ".ia3_l"],
                                  mod.is_feedforward)
    elif spec["method"] == "prompt_tuning":
        prompt = T["prompt_embeddings"]
        n = prompt.shape[0]
        labels = torch.cat([torch.full((labels.shape[0], n), -100, dtype=labels.dtype), labels], 1)
    else:
        prefix = T["prompt_embeddings"]
    logits = alt.model_logits(cfg, W, input_ids, prompt, prefix)
    return logits, alt.cross_entropy(logits, labels)


def check_adapter_against_alt(name, cfg, spec, peft, base_sd, input_ids, labels, logits, loss):
    trainable = peft.trainable()
    T = {peft.key_of[n]: p.detach().double().requires_grad_(True) for n, p in trainable.items()}
    alt_logits, alt_loss = alt_adapter_loss(cfg, spec, peft, base_sd, T, input_ids, labels)
    alt_loss.backward()
    e_loss = scaled_err(loss, alt_loss)
    e_logits = scaled_err(logits, alt_logits)
    e_grad = max(scaled_err(p.grad, T[peft.key_of[n]].grad) for n, p in trainable.items())
    CHECKS.expect(f"{name}: loss vs alt", e_loss, TOL_VALUE)
    CHECKS.expect(f"{name}: logits vs alt", e_logits, TOL_VALUE)
    CHECKS.expect(f"{name}: grads vs alt", e_grad, TOL_GRAD)
    print(f"    vs independent float64 merged-weight implementation: loss {e_loss:.1e} "
          f"logits {e_logits:.1e} worst grad {e_grad:.1e}")


# ----------------------------------------------------------------------------------------
# Optional: finite-difference gradchecks in float64 (torch.autograd.gradcheck)
# ----------------------------------------------------------------------------------------
def run_gradchecks():
    print("gradcheck (float64 central differences vs autograd):")
    for name in ["llama_gqa", "qwen2", "gpt2"]:
        cfg = json.load(open(os.path.join(OUT, name, "model", "config.json")))
        sd = load_state(os.path.join(OUT, name, "model", "model.safetensors"))
        g = load_state(os.path.join(OUT, name, "golden.safetensors"))
        model = ref.build_model(cfg).double()
        model.load_state_dict({k: v.double() for k, v in sd.items()})
        ids, labels = g["input_ids"].long(), g["labels"].long()
        pname = ("transformer.h.1.ln_2.weight" if cfg["model_type"] == "gpt2"
                 else "model.layers.1.post_attention_layernorm.weight")

        def f(t, pname=pname, model=model, ids=ids, labels=labels):
            return ref.causal_lm_loss(stateless.functional_call(model, {pname: t}, (ids,)), labels)
        ok = torch.autograd.gradcheck(f, (sd[pname].double().requires_grad_(True),),
                                      eps=1e-6, atol=1e-7, rtol=1e-4)
        print(f"  {name} {pname}: {ok}")
    for name, spec in ADAPTER_CASES.items():
        cfg = json.load(open(os.path.join(OUT, spec["base"], "model", "config.json")))
        base_sd = load_state(os.path.join(OUT, spec["base"], "model", "model.safetensors"))
        g = load_state(os.path.join(OUT, name, "golden.safetensors"))
        ad = load_state(os.path.join(OUT, name, "adapter", "adapter_model.safetensors"))
        base = ref.build_model(cfg)
        base.load_state_dict(base_sd)
        peft = PeftCausalLM(base, spec).double()
        inv = {v: k for k, v in peft.key_of.items()}
        with torch.no_grad():
            for n, p in peft.trainable().items():
                p.copy_(ad[peft.key_of[n]].double())
        # pick the smallest tensor; for DoRA only the magnitude has an exact gradient (the
        # norm is detached on purpose, so finite differences of A/B would disagree)
        keys = sorted(ad, key=lambda k: (ad[k].numel(), k))
        if spec.get("use_dora"):
            keys = [k for k in keys if k.endswith("lora_magnitude_vector")]
        key = keys[0]
        ids, labels = g["input_ids"].long(), g["labels"].long()

        def f(t, pn=inv[key], peft=peft, ids=ids, labels=labels):
            logits, lab = stateless.functional_call(peft, {pn: t}, (ids, labels))
            return ref.causal_lm_loss(logits, lab)
        ok = torch.autograd.gradcheck(f, (ad[key].double().requires_grad_(True),),
                                      eps=1e-6, atol=1e-7, rtol=1e-4)
        print(f"  {name} {key}: {ok}")


def main():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    BASE_CASES["llama_gqa"]["bf16"] = True
    for name, spec in BASE_CASES.items():
        gen_base_case(name, spec)
    for name, spec in ADAPTER_CASES.items():
        gen_adapter_case(name, spec)
    if "--check" in sys.argv:
        run_gradchecks()
    total = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")
    if CHECKS.failures:
        print("SELF-CHECK FAILURES:\n  " + "\n  ".join(CHECKS.failures))
        sys.exit(1)
    print("all self-checks passed")


if __name__ == "__main__":
    main()
