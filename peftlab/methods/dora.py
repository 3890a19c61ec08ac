r"""DoRA: Weight-Decomposed Low-Rank Adaptation (Liu et al. 2024, arXiv:2402.09353).

Split each pretrained weight into a magnitude and a direction, train the magnitude directly and the direction with
LoRA:

$$ W' = m \odot \frac{W_0 + \frac{\alpha}{r} B A}{\lVert W_0 + \frac{\alpha}{r} B A \rVert_c}, \qquad
   m_{\text{init}} = \lVert W_0 \rVert_c $$

$\lVert\cdot\rVert_c$ is the norm of each output row of the (out, in) weight (the paper's "column" norm of its
(in, out) layout; HF peft computes it per output feature), so $m$ has one entry per output feature and $W' = W_0$ at
init. As in the paper's section 4.3 the norm is treated as a constant in backward (`.detach()`): it follows
$\Delta W$ in value but passes no gradient, which saves memory and barely changes accuracy. In forward, with
$g = m / \lVert W_0 + sBA \rVert_c$ (per output feature):

$$ h = W_0 x + b + (g - 1) \odot W_0 x + g \odot s\, B A x \;(= g \odot (W_0 + sBA)\,x + b) $$

Use it as LoRA with `use_dora=True` (or `make_config("dora", ...)`); the magnitude is saved as peft's
`lora_magnitude_vector`, so peft's DoRA files load here and the reverse.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inject import weight_as_out_in
from ..registry import register
from .lora import LINEAR_VARIANTS, LoraConfig, LoraLinear, apply_lora


class DoraLinear(LoraLinear):
    """LoRA on a Linear/Conv1D plus a trainable magnitude per output feature."""

    adapter_attrs = ("lora_A", "lora_B", "lora_dropout", "lora_magnitude_vector")

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.lora_magnitude_vector = nn.ParameterDict()
        self._merge_norms: dict[str, torch.Tensor] = {}  # the norm used at merge time, for an exact unmerge

    def add(self, name: str, config: LoraConfig) -> None:
        if not config.use_dora:
            raise ValueError(
                "this layer carries DoRA adapters; a second adapter on it needs use_dora=True too."
            )
        super().add(name, config)  # lora_A, lora_B, dropout, scaling
        with torch.no_grad():
            magnitude = self.weight_norm(name)  # (d,) = ||W0 + s B A||_c, i.e. ||W0||_c when B = 0
        self.lora_magnitude_vector[name] = nn.Parameter(magnitude)

    def lora_weight(self, name: str) -> torch.Tensor:
        return self.lora_B[name].weight @ self.lora_A[name].weight * self.scaling[name]  # (d, k)

    def weight_norm(self, name: str) -> torch.Tensor:
        """||W0 + s B A|| per output feature, detached (DoRA sec. 4.3)."""
        w = weight_as_out_in(self.base_layer)  # (d, k)
        return torch.linalg.norm(w + self.lora_weight(name).detach().to(w.dtype), dim=1).detach()  # (d,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (B, T, d): W0 x + b
        if not self.uses_adapter():
            return result
        name = self.active_adapter
        A, B, dropout = self.lora_A[name], self.lora_B[name], self.lora_dropout[name]
        w = weight_as_out_in(self.base_layer)  # (d, k)
        g = self.lora_magnitude_vector[name] / self.weight_norm(name)  # (d,)
        x_d = dropout(x.to(A.weight.dtype))  # (B, T, k)
        if isinstance(dropout, nn.Identity) or not self.training:
            w0x = result if self.base_layer.bias is None else result - self.base_layer.bias  # (B, T, d)
        else:  # the input of the whole direction term is the dropped-out x, as in peft
            w0x = F.linear(x_d, w.to(x_d.dtype))
        lora = B(A(x_d)) * self.scaling[name]  # (B, T, r) -> (B, T, d)
        return result + ((g - 1) * w0x + g * lora).to(result.dtype)

    def merge(self, name: str) -> None:
        """W <- g * (W0 + sBA): the plain layer then computes exactly what DoRA computes."""
        with torch.no_grad():
            norm = self.weight_norm(name)  # (d,), from the unmerged weight
            g = (self.lora_magnitude_vector[name] / norm).unsqueeze(1)  # (d, 1)
            w = weight_as_out_in(self.base_layer)  # a view: writing it writes the layer's weight
            w.copy_(g * (w + self.lora_weight(name).to(w.dtype)))
        self._merge_norms[name] = norm
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        """W0 = W / g - sBA, with the g of the merge (the weight norm cannot be recomputed from W)."""
        with torch.no_grad():
            while self.merged_adapters:
                name = self.merged_adapters.pop()
                g = (self.lora_magnitude_vector[name] / self._merge_norms.pop(name)).unsqueeze(1)  # (d, 1)
                w = weight_as_out_in(self.base_layer)
                w.copy_(w / g - self.lora_weight(name).to(w.dtype))


def check_dora_targets(model: nn.Module, targets: list[str]) -> None:
    """DoRA here covers Linear/Conv1D layers; refuse embeddings instead of silently training plain LoRA on them."""
    layers = {t: model.get_submodule(t) for t in targets}
    embeddings = [t for t, m in layers.items() if isinstance(getattr(m, "base_layer", m), nn.Embedding)]
    plain = [t for t, m in layers.items() if isinstance(m, LoraLinear) and not isinstance(m, DoraLinear)]
    if plain:
        raise ValueError(
            f"{plain[:3]} already carry plain LoRA adapters; DoRA and LoRA cannot share a layer."
        )
    if embeddings:
        raise ValueError(
            f"use_dora=True supports Linear/Conv1D targets only; these are embeddings: {embeddings[:3]}. "
            "Drop them from target_modules or use plain LoRA."
        )


LINEAR_VARIANTS["dora"] = (DoraLinear, check_dora_targets)
register("dora", LoraConfig, apply_lora, defaults={"use_dora": True})
