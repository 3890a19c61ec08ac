"""Training memory: predicted from first principles, and measured on a real step.

A training step holds, at its peak:

    weights          every parameter                          N x bytes
    gradients        one per *trainable* parameter            T x bytes
    optimizer state  AdamW keeps two moments (m, v)           2 x T x 4 bytes (fp32)
    activations      what forward saves for backward          grows with batch x length x width x layers

Full fine-tuning has T = N; LoRA has T << N, so gradients and optimizer state all but vanish.
`measure_step` counts the real tensors of one AdamW step (on the CPU, where `torch.cuda.max_memory_allocated`
does not exist, we count bytes ourselves: parameters and buffers, `.grad`s, the optimizer's state and every
tensor autograd saves for backward that is not a weight); on CUDA it also reports the allocator's peak. Transient
tensors (a weight dequantized for one matmul, then freed) are not held across the step and are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

GB = 1e9
MB = 1e6


@dataclass
class MemoryReport:
    weights: int  # bytes
    gradients: int
    optimizer: int
    activations: int
    cuda_peak: int | None = None  # allocator's peak on CUDA, else None

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer + self.activations

    def as_dict(self, unit: float = MB) -> dict:
        d = {k: v / unit for k, v in asdict(self).items() if v is not None}
        d["total"] = self.total / unit
        return d


def predict(n_params: int, n_trainable: int, bytes_per_param: int = 4, activations: int = 0) -> MemoryReport:
    """The arithmetic of notebook 00: weights + gradients + AdamW moments (+ activations, if you know them)."""
    return MemoryReport(
        weights=n_params * bytes_per_param,
        gradients=n_trainable * bytes_per_param,
        optimizer=2 * n_trainable * 4,
        activations=activations,
    )


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def measure_step(model: nn.Module, batch: dict, lr: float = 1e-4) -> MemoryReport:
    """Run one AdamW step on `batch` and count the bytes each part really holds. The model's weights change."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    saved: dict[int, int] = {}  # storage pointer -> bytes, so a tensor saved twice counts once

    def pack(t: torch.Tensor):
        if not isinstance(t, nn.Parameter):  # weights saved for backward are already counted as weights
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(**batch).loss
    loss.backward()
    opt.step()
    # frozen weights that forward saves (a Parameter, or the NF4 buffers of a 4-bit layer) are counted as weights
    seen_weights = {t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers())}
    activations = sum(b for ptr, b in saved.items() if ptr not in seen_weights)
    report = MemoryReport(
        weights=sum(_nbytes(p) for p in model.parameters()) + sum(_nbytes(b) for b in model.buffers()),
        gradients=sum(_nbytes(p.grad) for p in params if p.grad is not None),
        optimizer=sum(_nbytes(v) for s in opt.state.values() for v in s.values() if torch.is_tensor(v)),
        activations=activations,
        cuda_peak=torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None,
    )
    opt.zero_grad(set_to_none=True)
    model.eval()
    return report
