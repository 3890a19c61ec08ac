r"""P-tuning (Liu et al. 2021, "GPT Understands, Too", arXiv:2103.10385).

Like prompt tuning, $n$ virtual tokens go in front of the input embeddings, but they are not trained directly: a
small *prompt encoder* produces them from a table $E' \in \mathbb{R}^{n \times d}$, which couples the tokens and makes
training more stable:

$$ P = \mathrm{MLP}(E') \quad\text{or}\quad P = \mathrm{MLP}\big(\mathrm{BiLSTM}(E')\big), \qquad
   h_0 = [P;\ E(x)] $$

MLP: $d \to h \to h \to d$ with ReLU. LSTM: a bidirectional LSTM ($h$ per direction, `encoder_num_layers` layers,
`encoder_dropout` between them) followed by $2h \to 2h \to d$. After training only $P$ matters: the encoder could be
thrown away. Layout and sizes follow HF peft's `PromptEncoder`, so trainable counts match; peft however *saves* only
$P$ (its encoder output), while we save the encoder's weights (so training can resume). Hence P-tuning files do not
interoperate with peft.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import check_range
from ..registry import register
from .soft_prompt import PromptLearningConfig, SoftPrompt, check_width, fill_model_dims


@dataclass
class PromptEncoderConfig(PromptLearningConfig):
    peft_type: ClassVar[str] = "P_TUNING"
    encoder_reparameterization_type: str = "MLP"  # "MLP" or "LSTM"
    encoder_hidden_size: int | None = None  # h (None: token_dim)
    encoder_num_layers: int = 2  # LSTM layers (the MLP always has 2 hidden layers, as in peft)
    encoder_dropout: float = 0.0  # dropout between LSTM layers

    def __post_init__(self):
        kind = self.encoder_reparameterization_type
        self.encoder_reparameterization_type = str(getattr(kind, "value", kind))
        super().__post_init__()
        if self.encoder_reparameterization_type not in ("MLP", "LSTM"):
            raise ValueError(
                f"encoder_reparameterization_type={self.encoder_reparameterization_type!r} is not allowed: "
                f"use 'MLP' or 'LSTM'."
            )
        if self.encoder_hidden_size is not None:
            check_range("encoder_hidden_size", self.encoder_hidden_size, low=1)
        check_range("encoder_num_layers", self.encoder_num_layers, low=1)
        check_range("encoder_dropout", self.encoder_dropout, low=0, high=1, high_open=True)


class PromptEncoder(SoftPrompt):
    """E' (n x d) -> [BiLSTM ->] MLP -> P (n x d)."""

    def __init__(self, config: PromptEncoderConfig, device=None):
        super().__init__(config)
        d, h = config.token_dim, config.encoder_hidden_size
        total = config.num_virtual_tokens * config.num_transformer_submodules
        self.encoder_type = config.encoder_reparameterization_type
        self.embedding = nn.Embedding(total, d, device=device)  # E': (n, d)
        if self.encoder_type == "LSTM":
            self.lstm_head = nn.LSTM(
                input_size=d,
                hidden_size=h,
                num_layers=config.encoder_num_layers,
                dropout=config.encoder_dropout if config.encoder_num_layers > 1 else 0.0,
                bidirectional=True,
                batch_first=True,
                device=device,
            )
            self.mlp_head = nn.Sequential(
                nn.Linear(2 * h, 2 * h, device=device), nn.ReLU(), nn.Linear(2 * h, d, device=device)
            )
        else:
            if config.encoder_num_layers != 2:
                warnings.warn(
                    "encoder_num_layers is ignored for the MLP encoder: it always has 2 hidden layers.",
                    stacklevel=2,
                )
            self.mlp_head = nn.Sequential(
                nn.Linear(d, h, device=device),
                nn.ReLU(),
                nn.Linear(h, h, device=device),
                nn.ReLU(),
                nn.Linear(h, d, device=device),
            )

    def prompts(self, batch_size: int, task_ids: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embedding.weight.unsqueeze(0)  # (1, n, d)
        if self.encoder_type == "LSTM":
            x = self.lstm_head(x)[0]  # (1, n, 2h): each token sees the whole prompt, both directions
        prompt = self.mlp_head(x)[:, : self.num_virtual_tokens]  # (1, n, d)
        return prompt.expand(batch_size, -1, -1)  # (B, n, d)


def apply_p_tuning(model: nn.Module, config: PromptEncoderConfig, adapter_name: str) -> PromptEncoder:
    fill_model_dims(config, model)
    if config.encoder_hidden_size is None:
        config.encoder_hidden_size = config.token_dim
    words = check_width(config, model)
    return PromptEncoder(config, device=words.weight.device)


def _from_peft_keys(tensors: dict) -> dict:
    if set(tensors) == {"prompt_embeddings"}:
        raise ValueError(
            "this looks like a P-tuning adapter saved by HF peft, which stores only the encoder's output P; "
            "peftlab's P-tuning needs the encoder weights and cannot rebuild them from P."
        )
    return tensors


register("p_tuning", PromptEncoderConfig, apply_p_tuning, from_peft_keys=_from_peft_keys)
