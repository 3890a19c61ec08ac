r"""LLaMA-Adapter (Zhang et al. 2023, "LLaMA-Adapter: Efficient Fine-tuning of Language Models with Zero-init
Attention", arXiv:2303.16199). HF peft calls it "adaption prompt".

In each of the top $L$ decoder layers, a learned *adaption prompt* $A \in \mathbb{R}^{m \times d}$ is projected with the
layer's own frozen $W_K, W_V$; the queries attend to it in a separate softmax whose result is scaled by a gate $g$
that starts at zero:

$$ o = \mathrm{Attn}(x) + W_O \left[\, g \cdot \mathrm{softmax}\!\left(\frac{Q (A W_K)^\top}{\sqrt{d_h}}\right)
   (A W_V) \right] $$

With $g = 0$ at init the adapted model computes exactly what the base model computes ("zero-init attention"), so
training starts from the pretrained behaviour and lets the new knowledge in gradually. $Q$ carries the rotary
position encoding, $A W_K$ does not (the prompt has no position). Trainable parameters: $L (m d + 1)$.

Only LLaMA-style decoders (separate q/k/v/o projections, rotary `position_embeddings`): model types llama, mistral.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import PeftConfig, check_range
from ..inject import AdapterLayer, find_targets, replace_module
from ..registry import register

SUPPORTED = ("llama", "mistral")


@dataclass
class AdaptionPromptConfig(PeftConfig):
    peft_type: ClassVar[str] = "ADAPTION_PROMPT"
    target_modules: str | None = None  # the attention modules (None: "self_attn")
    adapter_len: int | None = None  # m: adaption prompt tokens per layer (the paper uses 10)
    adapter_layers: int | None = None  # L: how many of the top layers get one (the paper: 30 of 32)

    def __post_init__(self):
        super().__post_init__()
        for name in ("adapter_len", "adapter_layers"):
            if getattr(self, name) is None:
                raise ValueError(
                    f"{name} is required: a positive int (e.g. adapter_len=10, adapter_layers=2)."
                )
            check_range(name, getattr(self, name), low=1)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class AdaptedAttention(AdapterLayer):
    """A frozen LLaMA attention module plus a gated adaption prompt per adapter."""

    adapter_attrs = ("adaption_prompt", "adaption_gate")

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.adaption_prompt, self.adaption_gate = nn.ParameterDict(), nn.ParameterDict()

    def add(self, name: str, config: AdaptionPromptConfig) -> None:
        w = self.base_layer.q_proj.weight
        hidden = self.base_layer.config.hidden_size
        self.adaption_prompt[name] = nn.Parameter(
            torch.randn(1, config.adapter_len, hidden, device=w.device)
        )  # A
        self.adaption_gate[name] = nn.Parameter(torch.zeros(1, device=w.device))  # g = 0: identity at init
        self.active_adapter = name

    def forward(self, *args, **kwargs):
        output, *rest = self.base_layer(*args, **kwargs)  # (B, T, d), attention weights
        if not self.uses_adapter():
            return (output, *rest)
        attn, name = self.base_layer, self.active_adapter
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]  # (B, T, d)
        cos, sin = kwargs["position_embeddings"]  # (B, T, d_h) each
        batch, length, _ = hidden.shape
        heads, kv_heads, d_h = attn.config.num_attention_heads, attn.config.num_key_value_heads, attn.head_dim

        q = attn.q_proj(hidden).view(batch, length, heads, d_h).transpose(1, 2)  # (B, H, T, d_h)
        q = q * cos.unsqueeze(1) + rotate_half(q) * sin.unsqueeze(1)  # rotary positions, as the base does
        prompt = self.adaption_prompt[name].to(hidden.dtype)  # (1, m, d)
        m = prompt.shape[1]
        k = attn.k_proj(prompt).view(1, m, kv_heads, d_h).transpose(1, 2)  # (1, H_kv, m, d_h)
        v = attn.v_proj(prompt).view(1, m, kv_heads, d_h).transpose(1, 2)  # (1, H_kv, m, d_h)
        k = k.repeat_interleave(heads // kv_heads, dim=1)  # (1, H, m, d_h): grouped-query heads share K, V
        v = v.repeat_interleave(heads // kv_heads, dim=1)

        scores = q @ k.transpose(2, 3) / math.sqrt(d_h)  # (B, H, T, m)
        probs = self.adaption_gate[name] * torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        extra = (probs @ v).transpose(1, 2).reshape(batch, length, heads * d_h)  # (B, T, H d_h)
        extra = nn.functional.linear(
            extra, attn.o_proj.weight
        )  # W_O only: the base output already has its bias
        return (output + extra.to(output.dtype), *rest)


def apply_llama_adapter(model: nn.Module, config: AdaptionPromptConfig, adapter_name: str) -> None:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in SUPPORTED:
        raise ValueError(
            f"LLaMA-Adapter (adaption prompt) supports LLaMA-style decoders only (model_type in {SUPPORTED}); "
            f"this model is {model_type!r}. Use prefix tuning or prompt tuning for other models."
        )
    if config.target_modules is None:
        config.target_modules = "self_attn"
    names = find_targets(model, [config.target_modules], layer_types=(nn.Module,))
    if config.adapter_layers > len(names):
        raise ValueError(
            f"adapter_layers={config.adapter_layers} is not allowed: this model has {len(names)} attention layers "
            f"('{config.target_modules}'), so adapter_layers must be between 1 and {len(names)}."
        )
    for name in names[-config.adapter_layers :]:  # the top L layers
        module = model.get_submodule(name)
        if not isinstance(module, AdaptedAttention):
            module = AdaptedAttention(module)
            replace_module(model, name, module)
        module.add(adapter_name, config)


register("llama_adapter", AdaptionPromptConfig, apply_llama_adapter)
