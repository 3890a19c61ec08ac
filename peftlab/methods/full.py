r"""Full fine-tuning: the baseline every PEFT method is compared against (e.g. Howard & Ruder 2018, arXiv:1801.06146).

Every weight of the pretrained model trains:

$$ \theta \leftarrow \theta - \eta \, \nabla_\theta \mathcal{L}(\theta), \qquad \theta = \text{all parameters} $$

It is registered as a method (`"full"`) so that comparisons run through the same `PeftModel` code path as the
PEFT methods: the same counting, training loop, saving and loading. What differs is what it costs: gradients and
optimizer state for every parameter, and a saved "adapter" that is the whole model. There is no separate adapter
to switch off (`disable_adapter` raises) and nothing to merge (the trained weights already are the model).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..config import PeftConfig
from ..registry import register


@dataclass
class FullConfig(PeftConfig):
    """No fields: everything trains."""

    peft_type: ClassVar[str] = "FULL"  # not an HF peft method: peft has no "adapter" for full fine-tuning


def apply_full(model: nn.Module, config: FullConfig, adapter_name: str) -> None:
    """Make every parameter trainable. PeftModel records them as the adapter's "extras" (trained and saved)."""
    if any(p.requires_grad for p in model.parameters()):
        raise ValueError(
            "full fine-tuning trains the base weights themselves, so a model holds at most one such adapter "
            "(and no other trainable adapter next to it). Start from a fresh copy of the base model instead."
        )
    for p in model.parameters():
        p.requires_grad_(True)


register("full", FullConfig, apply_full)
