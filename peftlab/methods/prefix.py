r"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation", arXiv:2101.00190).

Instead of virtual *input* tokens, every attention layer $l$ gets $n$ learned key and value vectors in front of the
ones it computes from the sequence:

$$ \mathrm{head} = \mathrm{softmax}\!\left(\frac{Q\,[P^{l}_{K};\ K]^\top}{\sqrt{d_h}}\right)[P^{l}_{V};\ V], \qquad
   P^{l}_{K}, P^{l}_{V} \in \mathbb{R}^{n \times d_{kv}} $$

so the prefix steers every layer, not just the input. Trainable parameters: $n \cdot L \cdot 2 \cdot d_{kv}$.
With `prefix_projection=True` (the paper's reparameterization, more stable to train) the prefix is produced by an
MLP from a small table: $P = \mathrm{MLP}(P')$, $P' \in \mathbb{R}^{n \times d}$,
$\mathrm{MLP}: d \to h \to L \cdot 2 \cdot d_{kv}$ with tanh.

How it is injected (transformers 5.x): the prefix is exactly what a KV cache holds for $n$ tokens already seen, so we
build a `DynamicCache` holding it (an `EncoderDecoderCache` for T5, whose decoder self-attention gets the prefix, as
in HF peft) and pass it as `past_key_values`; the attention mask gains $n$ ones. Positions continue after the prefix.
For grouped-query attention (LLaMA) the prefix has `num_key_value_heads` heads, as peft does.

Saved files use peft's layout (`prompt_embeddings`, (n, L * 2 * d_kv), without projection). One difference on
encoder-decoder models: peft 0.21 gives decoder layer $l$ the prefix stored for layer $2l \bmod L$ (a side effect of how
it splits its legacy cache tuple), so part of its table is never used; here every layer reads its own rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from transformers import DynamicCache, EncoderDecoderCache

from ..config import check_range
from ..registry import register
from .soft_prompt import PromptLearningConfig, fill_model_dims, rename_keys


@dataclass
class PrefixTuningConfig(PromptLearningConfig):
    peft_type: ClassVar[str] = "PREFIX_TUNING"
    encoder_hidden_size: int | None = None  # h: hidden width of the projection MLP (None: token_dim)
    prefix_projection: bool = False  # True: P = MLP(P'), the paper's reparameterization
    init_weights: str | None = None  # None: random; "zero": all-zero prefix (or zero last MLP layer)

    def __post_init__(self):
        super().__post_init__()
        if self.encoder_hidden_size is not None:
            check_range("encoder_hidden_size", self.encoder_hidden_size, low=1)
        if self.init_weights not in (None, "zero"):
            raise ValueError(f"init_weights={self.init_weights!r} is not allowed: use None or 'zero'.")


class PrefixEncoder(nn.Module):
    """Holds the prefix (or P' and the MLP) and turns it into a KV cache for the frozen model."""

    mergeable = False

    def __init__(self, config: PrefixTuningConfig, device=None):
        super().__init__()
        self.n, self.num_layers = config.num_virtual_tokens, config.num_layers
        self.heads = config.num_attention_heads
        self.head_dim = config.token_dim // config.num_attention_heads
        out = config.num_layers * 2 * config.token_dim  # L * 2 * d_kv numbers per virtual token
        self.prefix_projection = config.prefix_projection
        if config.prefix_projection:
            self.embedding = nn.Embedding(self.n, config.token_dim, device=device)  # P': (n, d)
            self.transform = nn.Sequential(
                nn.Linear(config.token_dim, config.encoder_hidden_size, device=device),
                nn.Tanh(),
                nn.Linear(config.encoder_hidden_size, out, device=device),
            )
            last = self.transform[-1]
            if config.init_weights == "zero":
                nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
        else:
            self.embedding = nn.Embedding(self.n, out, device=device)  # P: (n, L * 2 * d_kv)
            if config.init_weights == "zero":
                nn.init.zeros_(self.embedding.weight)

    def prefix(self) -> torch.Tensor:
        """Keys and values of every layer, (2L, H, n, d_h): rows 2l and 2l+1 are layer l's K and V."""
        flat = self.embedding.weight  # (n, d) or (n, L * 2 * d_kv)
        if self.prefix_projection:
            flat = self.transform(flat)  # (n, L * 2 * d_kv)
        kv = flat.view(self.n, 2 * self.num_layers, self.heads, self.head_dim)  # (n, 2L, H, d_h)
        return kv.permute(1, 2, 0, 3)  # (2L, H, n, d_h)

    def cache(self, base_model, batch_size: int):
        dtype = base_model.get_input_embeddings().weight.dtype
        kv = self.prefix().to(dtype).unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, B, H, n, d_h)
        cache = DynamicCache([(kv[2 * i], kv[2 * i + 1]) for i in range(self.num_layers)])
        if base_model.config.is_encoder_decoder:
            return EncoderDecoderCache(cache, DynamicCache())  # decoder self-attention sees the prefix
        return cache

    def _extend(self, mask: torch.Tensor | None) -> torch.Tensor | None:
        return None if mask is None else torch.cat([mask.new_ones(mask.shape[0], self.n), mask], dim=1)

    def _check(self, kwargs):
        kwargs.pop("task_ids", None)
        if kwargs.get("past_key_values") is not None:
            raise ValueError("prefix tuning supplies past_key_values itself; do not pass your own cache.")

    def forward(self, base_model, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        self._check(kwargs)
        ref = input_ids if input_ids is not None else inputs_embeds
        batch = ref.shape[0]
        if (
            base_model.config.is_encoder_decoder
        ):  # the encoder is untouched; the decoder attends to the prefix
            kwargs["decoder_attention_mask"] = self._extend(kwargs.get("decoder_attention_mask"))
        else:
            if attention_mask is None:
                attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
            attention_mask = self._extend(attention_mask)  # (B, n + T)
        return base_model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            past_key_values=self.cache(base_model, batch),
            **kwargs,
        )

    def generate(self, base_model, input_ids=None, attention_mask=None, **kwargs):
        """generate() with the prefix as an already-filled cache: we put n placeholder ids in front (generate then
        treats them as cached, which they are) and strip them from the result."""
        self._check(kwargs)
        if input_ids is None:
            raise ValueError("prefix tuning generates from input_ids.")
        batch = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        placeholders = input_ids.new_zeros(batch, self.n)  # (B, n), never embedded: their K, V are the prefix
        cache = self.cache(base_model, batch)
        if base_model.config.is_encoder_decoder:
            start = base_model.config.decoder_start_token_id
            decoder_ids = kwargs.pop("decoder_input_ids", None)
            if decoder_ids is None:
                decoder_ids = input_ids.new_full((batch, 1), start)
            kwargs["decoder_input_ids"] = torch.cat([placeholders, decoder_ids], dim=1)
            out = base_model.generate(
                input_ids=input_ids, attention_mask=attention_mask, past_key_values=cache, **kwargs
            )
        else:
            ids = torch.cat([placeholders, input_ids], dim=1)  # (B, n + T)
            out = base_model.generate(
                input_ids=ids, attention_mask=self._extend(attention_mask), past_key_values=cache, **kwargs
            )
        return out[:, self.n :]


def apply_prefix_tuning(model: nn.Module, config: PrefixTuningConfig, adapter_name: str) -> PrefixEncoder:
    if config.num_transformer_submodules is None:  # peft's values; the prefix goes to decoder self-attention
        config.num_transformer_submodules = 2 if model.config.is_encoder_decoder else 1
    fill_model_dims(config, model)
    kv_heads = getattr(model.config, "num_key_value_heads", None)
    if (
        kv_heads and config.num_attention_heads != kv_heads
    ):  # grouped-query attention: the cache has kv_heads heads
        head_dim = getattr(model.config, "head_dim", None) or config.token_dim // config.num_attention_heads
        config.token_dim, config.num_attention_heads = head_dim * kv_heads, kv_heads
    if config.token_dim % config.num_attention_heads:
        raise ValueError(
            f"token_dim={config.token_dim} must be a multiple of num_attention_heads={config.num_attention_heads}."
        )
    if config.encoder_hidden_size is None:
        config.encoder_hidden_size = config.token_dim
    return PrefixEncoder(config, device=model.get_input_embeddings().weight.device)


def _to_peft_keys(keys: dict[str, str]) -> dict[str, str]:
    """Without projection the table *is* the prefix, which peft saves as `prompt_embeddings`. With projection peft
    saves only the MLP's output (the MLP is lost), so we keep our own keys: P' and the MLP weights."""
    if any(".transform." in k for k in keys):
        return keys
    return rename_keys({"prompt_modules.embedding.weight": "prompt_embeddings"})(keys)


register(
    "prefix_tuning",
    PrefixTuningConfig,
    apply_prefix_tuning,
    to_peft_keys=_to_peft_keys,
)
