r"""What every "virtual tokens" method shares (prompt tuning, P-tuning, multitask prompt tuning; prefix tuning uses
the config and the renaming hook).

The frozen model sees $n$ extra input vectors in front of the embedded input $E(x) \in \mathbb{R}^{T \times d}$:

$$ h_0 = [P;\ E(x)] \in \mathbb{R}^{(n + T) \times d} $$

The methods differ only in where $P \in \mathbb{R}^{n \times d}$ comes from (a table, an encoder, a shared matrix
times a task's low-rank factor). `SoftPrompt` does the rest: the attention mask gains $n$ ones; for causal LMs the
labels gain $n$ entries of -100 (no loss on virtual tokens) and the returned logits drop the $n$ virtual positions,
so they line up with `input_ids` again; on encoder-decoder models (T5) the prompt goes in front of the encoder input.
`nearest_tokens` reads a learned prompt back as its closest vocabulary words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PeftConfig, check_range


@dataclass
class PromptLearningConfig(PeftConfig):
    """Fields HF peft's soft-prompt configs share. The model sizes are filled in from the model when left None."""

    num_virtual_tokens: int = 20  # n: how many virtual tokens
    token_dim: int | None = None  # d: the model's embedding width
    num_transformer_submodules: int | None = (
        None  # 1 (ours, default): prompt the encoder only; 2: peft's seq2seq
    )
    num_attention_heads: int | None = None  # used by prefix tuning
    num_layers: int | None = None  # used by prefix tuning
    modules_to_save: list[str] | None = None  # extra modules trained in full and saved

    def __post_init__(self):
        super().__post_init__()
        check_range("num_virtual_tokens", self.num_virtual_tokens, low=1)
        for name in ("token_dim", "num_attention_heads", "num_layers"):
            if getattr(self, name) is not None:
                check_range(name, getattr(self, name), low=1)
        if self.num_transformer_submodules not in (None, 1, 2):
            raise ValueError(
                f"num_transformer_submodules={self.num_transformer_submodules!r} is not allowed: use 1, 2 or None."
            )


def fill_model_dims(config: PromptLearningConfig, model: nn.Module) -> None:
    """Fill token_dim / num_layers / num_attention_heads from the model config (as peft does) and check them."""
    cfg = model.config
    width = next(getattr(cfg, k) for k in ("hidden_size", "n_embd", "d_model") if hasattr(cfg, k))
    if config.token_dim is None:
        config.token_dim = width
    if config.num_layers is None:
        config.num_layers = cfg.num_hidden_layers
    if config.num_attention_heads is None:
        config.num_attention_heads = next(
            getattr(cfg, k) for k in ("num_attention_heads", "n_head", "num_heads") if hasattr(cfg, k)
        )
    if config.num_transformer_submodules is None:
        config.num_transformer_submodules = 1


class SoftPrompt(nn.Module):
    """Base for methods whose output is n virtual token embeddings: prepend them, then call the frozen model.

    Subclasses implement `prompts(batch_size, task_ids) -> (B, n, d)`. PeftModel calls
    `module(base_model, **inputs)` and `module.generate(base_model, **inputs)`.
    """

    mergeable = False  # virtual tokens are extra inputs, not a weight delta

    def __init__(self, config: PromptLearningConfig):
        super().__init__()
        self.num_virtual_tokens = config.num_virtual_tokens

    def prompts(self, batch_size: int, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def virtual_token_embeddings(self, task_id: int = 0) -> torch.Tensor:
        """The n learned vectors in the model's input embedding space, (n, d)."""
        return self.prompts(1, torch.tensor([task_id], device=self._device()))[0]

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _prepend(self, base_model, input_ids, inputs_embeds, attention_mask, task_ids):
        if inputs_embeds is None:
            if input_ids is None:
                raise ValueError("pass input_ids or inputs_embeds.")
            inputs_embeds = base_model.get_input_embeddings()(input_ids)  # (B, T, d)
        batch, n = inputs_embeds.shape[0], self.num_virtual_tokens
        prompts = self.prompts(batch, task_ids).to(inputs_embeds.dtype)  # (B, n, d)
        inputs_embeds = torch.cat([prompts, inputs_embeds], dim=1)  # (B, n + T, d)
        if attention_mask is not None:
            attention_mask = torch.cat(
                [attention_mask.new_ones(batch, n), attention_mask], dim=1
            )  # (B, n + T)
        return inputs_embeds, attention_mask

    def forward(
        self, base_model, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, **kwargs
    ):
        task_ids = kwargs.pop("task_ids", None)
        embeds, mask = self._prepend(base_model, input_ids, inputs_embeds, attention_mask, task_ids)
        if (
            base_model.config.is_encoder_decoder
        ):  # prompt the encoder; the decoder and its labels are unchanged
            return base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        n = self.num_virtual_tokens
        if labels is not None:  # no loss on virtual tokens
            labels = torch.cat([labels.new_full((labels.shape[0], n), -100), labels], dim=1)  # (B, n + T)
        out = base_model(inputs_embeds=embeds, attention_mask=mask, labels=labels, **kwargs)
        out.logits = out.logits[:, n:]  # (B, T, V): aligned with input_ids again
        return out

    def generate(self, base_model, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        task_ids = kwargs.pop("task_ids", None)
        if attention_mask is None:
            ref = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(ref.shape[:2], dtype=torch.long, device=ref.device)
        embeds, mask = self._prepend(base_model, input_ids, inputs_embeds, attention_mask, task_ids)
        out = base_model.generate(inputs_embeds=embeds, attention_mask=mask, **kwargs)
        if base_model.config.is_encoder_decoder or input_ids is None:
            return out  # decoder tokens (T5) / new tokens only
        return torch.cat([input_ids, out], dim=1)  # like generate(input_ids=...): the prompt, then new tokens


def nearest_tokens(peft_model, tokenizer=None, k: int = 5, task_id: int = 0) -> list[list[tuple[Any, float]]]:
    """For each learned virtual token, the k vocabulary tokens with the highest cosine similarity.

    Returns one list per virtual token of (token text, or id when no tokenizer is given, similarity) pairs.
    """
    module = peft_model.prompt_modules[peft_model.active_adapter] if peft_model.prompt_modules else None
    if not isinstance(module, SoftPrompt):
        raise TypeError(
            f"nearest_tokens needs virtual tokens in the input embedding space (prompt tuning, P-tuning, "
            f"multitask prompt tuning); the active adapter is {type(peft_model.active_peft_config).__name__}."
        )
    vocab = peft_model.base_model.get_input_embeddings().weight  # (V, d)
    check_range("k", k, low=1, high=vocab.shape[0])
    with torch.no_grad():
        prompts = module.virtual_token_embeddings(task_id).float()  # (n, d)
        sims = F.normalize(prompts, dim=-1) @ F.normalize(vocab.float(), dim=-1).T  # (n, V)
        scores, ids = sims.topk(k, dim=-1)  # (n, k)
    name = (lambda i: tokenizer.decode([i])) if tokenizer is not None else (lambda i: i)
    return [
        [(name(i), round(s, 4)) for i, s in zip(row_ids, row_s)]
        for row_ids, row_s in zip(ids.tolist(), scores.tolist())
    ]


def check_width(config: PromptLearningConfig, model: nn.Module) -> nn.Embedding:
    words = model.get_input_embeddings()
    if config.token_dim != words.weight.shape[1]:
        raise ValueError(
            f"token_dim={config.token_dim} does not match the model's embedding width {words.weight.shape[1]}; "
            f"leave token_dim=None to take it from the model."
        )
    return words


def rename_keys(mapping: dict[str, str]):
    """A `to_peft_keys` hook: our generic key -> the key HF peft writes (e.g. `prompt_embeddings`)."""
    return lambda keys: {mapping.get(peft_key, peft_key): ours for peft_key, ours in keys.items()}
