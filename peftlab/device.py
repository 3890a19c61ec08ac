"""Where tensors live: CUDA when there is a GPU, else the CPU. Everything in peftlab runs on either unchanged."""

from __future__ import annotations

import torch


def get_device(device: str | torch.device | None = None) -> torch.device:
    """`device` if given, else "cuda" when available, else "cpu"."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
