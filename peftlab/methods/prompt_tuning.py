r"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning", arXiv:2104.08691).

Freeze the whole model and learn $n$ "virtual token" embeddings $P \in \mathbb{R}^{n \times d}$ that are put in
front of the embedded input $E(x) \in \mathbb{R}^{T \times d}$:

$$ h_0 = [P;\ E(x)] \in \mathbb{R}^{(n + T) \times d}, \qquad \text{trainable parameters: } n \cdot d $$

$P$ starts random (RANDOM), as the embeddings of random vocabulary tokens (SAMPLE_VOCAB), or as the embeddings of a
text such as "Summarize this article:" (TEXT). The attention mask gains $n$ ones; for causal LMs the labels gain $n$
entries of -100 (no loss on virtual tokens), and the returned logits drop the $n$ virtual positions so they line up
with `input_ids` again. On encoder-decoder models (T5) the prompt goes in front of the encoder input.

What all soft-prompt methods share (the config base, the `SoftPrompt` module that prepends and generates,
`nearest_tokens`) is in soft_prompt.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..registry import register
from .soft_prompt import PromptLearningConfig, SoftPrompt, check_width, fill_model_dims, rename_keys

INITS = ("RANDOM", "SAMPLE_VOCAB", "TEXT")


@dataclass
class PromptTuningConfig(PromptLearningConfig):
    peft_type: ClassVar[str] = "PROMPT_TUNING"
    allowed_inits: ClassVar[tuple[str, ...]] = INITS
    prompt_tuning_init: str = "RANDOM"  # "RANDOM" | "SAMPLE_VOCAB" | "TEXT"
    prompt_tuning_init_text: str | None = None  # TEXT: the text whose embeddings start P (repeated/cut to n)
    tokenizer_name_or_path: Any = None  # TEXT: a tokenizer path/hub id, or a tokenizer object (offline use)
    tokenizer_kwargs: dict | None = None  # TEXT: passed to AutoTokenizer.from_pretrained
    prompt_tuning_init_ids: list[int] | None = (
        None  # TEXT without a tokenizer: the token ids (filled in on apply)
    )

    def __post_init__(self):
        self.prompt_tuning_init = str(getattr(self.prompt_tuning_init, "value", self.prompt_tuning_init))
        super().__post_init__()
        if self.prompt_tuning_init not in self.allowed_inits:
            raise ValueError(
                f"prompt_tuning_init={self.prompt_tuning_init!r} is not allowed: use one of {self.allowed_inits}."
            )
        text = self.prompt_tuning_init == "TEXT"
        if text and not self.prompt_tuning_init_ids:
            if not self.prompt_tuning_init_text:
                raise ValueError(
                    "prompt_tuning_init='TEXT' needs prompt_tuning_init_text (or prompt_tuning_init_ids)."
                )
            if not self.tokenizer_name_or_path:
                raise ValueError(
                    "prompt_tuning_init='TEXT' needs tokenizer_name_or_path: a tokenizer path, a tokenizer object, "
                    "or pass the token ids as prompt_tuning_init_ids."
                )
        if self.tokenizer_kwargs and not text:
            raise ValueError("tokenizer_kwargs is only used with prompt_tuning_init='TEXT'.")

    def to_dict(self) -> dict:
        tok, self.tokenizer_name_or_path = self.tokenizer_name_or_path, None  # a tokenizer object is not JSON
        try:
            d = super().to_dict()
        finally:
            self.tokenizer_name_or_path = tok
        d["tokenizer_name_or_path"] = tok if isinstance(tok, str) else getattr(tok, "name_or_path", None)
        if d["prompt_tuning_init_ids"] is None:
            del d["prompt_tuning_init_ids"]  # ours only: HF peft warns about keys it does not know
        return d


def init_token_ids(config: PromptTuningConfig) -> list[int]:
    """The token ids of `prompt_tuning_init_text` (remembered in the config, so reloading needs no tokenizer)."""
    if not config.prompt_tuning_init_ids:
        tok = config.tokenizer_name_or_path
        if isinstance(tok, str):
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tok, **(config.tokenizer_kwargs or {}))
        config.prompt_tuning_init_ids = list(tok(config.prompt_tuning_init_text)["input_ids"])
    return config.prompt_tuning_init_ids


class PromptEmbedding(SoftPrompt):
    """P: one embedding row per virtual token (n x d), initialised as the config says."""

    def __init__(self, config: PromptTuningConfig, word_embeddings: nn.Embedding):
        super().__init__(config)
        total = (
            config.num_virtual_tokens * config.num_transformer_submodules
        )  # peft's size; we use the first n
        self.embedding = nn.Embedding(total, config.token_dim, device=word_embeddings.weight.device)  # (n, d)
        if config.inference_mode:  # weights come from a file: skip the data-dependent init
            return
        vocab_size = word_embeddings.weight.shape[0]
        if config.prompt_tuning_init == "SAMPLE_VOCAB":
            ids = torch.randint(0, vocab_size, (total,))
        elif config.prompt_tuning_init == "TEXT":
            ids = torch.tensor(init_token_ids(config))
            if ids.numel() == 0 or int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
                raise ValueError(
                    f"prompt_tuning_init_ids must be non-empty ids in [0, {vocab_size}); got {ids.tolist()}."
                )
            ids = ids.repeat((total + len(ids) - 1) // len(ids))[:total]  # repeat the text, then cut to n
        else:
            return  # RANDOM: nn.Embedding's N(0, 1)
        with torch.no_grad():
            self.embedding.weight.copy_(word_embeddings.weight[ids.to(word_embeddings.weight.device)].float())

    def prompts(self, batch_size: int, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        prompt = self.embedding.weight[: self.num_virtual_tokens]  # (n, d)
        return prompt.unsqueeze(0).expand(batch_size, -1, -1)  # (B, n, d)


def apply_prompt_tuning(model: nn.Module, config: PromptTuningConfig, adapter_name: str) -> PromptEmbedding:
    fill_model_dims(config, model)
    return PromptEmbedding(config, check_width(config, model))


register(
    "prompt_tuning",
    PromptTuningConfig,
    apply_prompt_tuning,
    to_peft_keys=rename_keys({"prompt_modules.embedding.weight": "prompt_embeddings"}),
)
