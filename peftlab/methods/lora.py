r"""LoRA: Low-Rank Adaptation (Hu et al. 2021, arXiv:2106.09685).

Freeze the pretrained weight $W_0 \in \mathbb{R}^{d \times k}$ and learn a low-rank update:

$$ h = W_0 x + \Delta W x = W_0 x + \frac{\alpha}{r} B A x, \qquad
   B \in \mathbb{R}^{d \times r},\ A \in \mathbb{R}^{r \times k},\ r \ll \min(d, k) $$

$A$ starts Kaiming-uniform and $B$ starts at zero, so $\Delta W = 0$ and the adapted model equals the base model
at step 0. Trainable parameters per layer: $r(d + k)$ instead of $dk$. For inference, $W = W_0 + \frac{\alpha}{r}BA$
has the base's shape: merged, LoRA costs nothing extra. rsLoRA (Kalajdzievski 2023, arXiv:2312.03732) scales by
$\alpha / \sqrt{r}$ instead, which keeps the update's size stable as $r$ grows.

Names follow HF peft (`lora_A`, `lora_B`, `lora_embedding_A`, `scaling`) so saved files load in either library.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..config import PeftConfig, check_range
from ..inject import LINEAR_TYPES, AdapterLayer, Conv1D, find_targets, in_out_features, replace_module
from ..registry import register


@dataclass
class LoraConfig(PeftConfig):
    peft_type: ClassVar[str] = "LORA"
    r: int = 8  # rank of the update B A
    lora_alpha: float = 8  # scaling numerator: delta W = (lora_alpha / r) B A
    lora_dropout: float = 0.0  # dropout on the LoRA branch's input only
    target_modules: str | list[str] | None = None  # regex, list of names/suffixes, or "all-linear"
    modules_to_save: list[str] | None = None  # extra modules trained in full and saved (e.g. a new head)
    bias: str = "none"  # which biases train: "none", "all", or "lora_only" (biases of LoRA-wrapped layers)
    use_rslora: bool = False  # scale by lora_alpha / sqrt(r)
    use_dora: bool = False  # DoRA: see dora.py
    fan_in_fan_out: bool = False  # True for GPT-2's Conv1D (weight stored (in, out)); set automatically
    init_lora_weights: bool = True  # False: B random too, so the adapter changes the output at init (tests)

    def __post_init__(self):
        super().__post_init__()
        check_range("r", self.r, low=1)
        check_range("lora_alpha", self.lora_alpha, low=0, low_open=True)
        check_range("lora_dropout", self.lora_dropout, low=0, high=1, high_open=True)
        if self.bias not in ("none", "all", "lora_only"):
            raise ValueError(f"bias={self.bias!r} is not allowed: use 'none', 'all' or 'lora_only'.")
        if self.target_modules is None:
            raise ValueError(
                "target_modules is required: e.g. ['q_proj', 'v_proj'], a regex, or 'all-linear'."
            )


class LoraLayer(AdapterLayer):
    """Shared bookkeeping for LoRA on a Linear/Conv1D or an Embedding."""

    def _scaling(self, config: LoraConfig) -> float:
        return config.lora_alpha / (math.sqrt(config.r) if config.use_rslora else config.r)

    def merge(self, name: str) -> None:
        """W <- W + scale * B A (exact up to one fp rounding; unmerge subtracts the same tensor)."""
        with torch.no_grad():
            delta = self.delta_weight(name)
            self.base_layer.weight += delta.to(self.base_layer.weight.dtype)
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        with torch.no_grad():
            while self.merged_adapters:
                delta = self.delta_weight(self.merged_adapters.pop())
                self.base_layer.weight -= delta.to(self.base_layer.weight.dtype)


class LoraLinear(LoraLayer):
    """h = W0 x + b + scale * B(A(dropout(x))). Works for nn.Linear and GPT-2's Conv1D."""

    adapter_attrs = ("lora_A", "lora_B", "lora_dropout")

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.in_features, self.out_features = in_out_features(base_layer)
        self.fan_in_fan_out = bool(Conv1D) and isinstance(base_layer, Conv1D)
        self.lora_A, self.lora_B = nn.ModuleDict(), nn.ModuleDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}

    def add(self, name: str, config: LoraConfig) -> None:
        w = self.base_layer.weight
        self.lora_A[name] = nn.Linear(self.in_features, config.r, bias=False, device=w.device)  # (r, k)
        self.lora_B[name] = nn.Linear(config.r, self.out_features, bias=False, device=w.device)  # (d, r)
        self.lora_dropout[name] = (
            nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        )
        self.scaling[name] = self._scaling(config)
        nn.init.kaiming_uniform_(self.lora_A[name].weight, a=math.sqrt(5))
        if config.init_lora_weights:
            nn.init.zeros_(self.lora_B[name].weight)
        else:
            nn.init.normal_(self.lora_B[name].weight, std=0.02)
        self.active_adapter = name

    def delta_weight(self, name: str) -> torch.Tensor:
        delta = self.lora_B[name].weight @ self.lora_A[name].weight * self.scaling[name]  # (d, k)
        return delta.T if self.fan_in_fan_out else delta  # Conv1D stores (k, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (B, T, d)
        if not self.uses_adapter():
            return result
        name = self.active_adapter
        A, B = self.lora_A[name], self.lora_B[name]
        x = self.lora_dropout[name](x.to(A.weight.dtype))
        return result + (B(A(x)) * self.scaling[name]).to(result.dtype)  # (B, T, r) -> (B, T, d)


class LoraEmbedding(LoraLayer):
    """e = E0[ids] + scale * A^T[ids] B^T: the low-rank update of the embedding table (num_embeddings x dim).

    As in HF peft, A (r x num_embeddings) starts at zero and B (dim x r) is random.
    """

    adapter_attrs = ("lora_embedding_A", "lora_embedding_B")

    def __init__(self, base_layer: nn.Embedding):
        super().__init__(base_layer)
        self.lora_embedding_A, self.lora_embedding_B = nn.ParameterDict(), nn.ParameterDict()
        self.scaling: dict[str, float] = {}

    def add(self, name: str, config: LoraConfig) -> None:
        n, dim = self.base_layer.weight.shape
        device = self.base_layer.weight.device
        self.lora_embedding_A[name] = nn.Parameter(torch.zeros(config.r, n, device=device))  # (r, V)
        self.lora_embedding_B[name] = nn.Parameter(torch.randn(dim, config.r, device=device))  # (C, r)
        if not config.init_lora_weights:
            nn.init.normal_(self.lora_embedding_A[name])
        self.scaling[name] = self._scaling(config)
        self.active_adapter = name

    def delta_weight(self, name: str) -> torch.Tensor:
        return (self.lora_embedding_B[name] @ self.lora_embedding_A[name]).T * self.scaling[name]  # (V, C)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(ids)  # (B, T, C)
        if not self.uses_adapter():
            return result
        name, base = self.active_adapter, self.base_layer
        after_A = F.embedding(ids, self.lora_embedding_A[name].T, base.padding_idx)  # (B, T, r)
        return result + (after_A @ self.lora_embedding_B[name].T) * self.scaling[name]  # (B, T, C)


# variants of the linear LoRA layer, filled in by their own modules (dora.py adds "dora": (DoraLinear, check)),
# so that this file needs none of them: `LoraConfig(use_dora=True)` picks the DoRA layer from here.
LINEAR_VARIANTS: dict[str, tuple[type, object]] = {}


def apply_lora(model: nn.Module, config: LoraConfig, adapter_name: str, layer_cls=None) -> list[str]:
    """Wrap every targeted Linear/Conv1D/Embedding of `model` in a LoRA layer holding adapter `adapter_name`."""
    targets = find_targets(model, config.target_modules, layer_types=(*LINEAR_TYPES, nn.Embedding))
    if config.use_dora:  # DoRA = LoRA with a magnitude vector (dora.py registers its layer here)
        if "dora" not in LINEAR_VARIANTS:
            raise RuntimeError("use_dora=True needs peftlab.methods.dora, which `import peftlab` loads")
        dora_layer, check_targets = LINEAR_VARIANTS["dora"]
        check_targets(model, targets)
        layer_cls = layer_cls or dora_layer
    for name in targets:
        module = model.get_submodule(name)
        if not isinstance(module, LoraLayer):
            if isinstance(module, nn.Embedding):
                module = LoraEmbedding(module)
            else:
                module = (layer_cls or LoraLinear)(module)
            replace_module(model, name, module)
        module.add(adapter_name, config)
        if isinstance(module, LoraLinear) and module.fan_in_fan_out:
            config.fan_in_fan_out = True  # as HF peft does for Conv1D, so the saved config loads there too
    if config.bias != "none":
        for name, p in model.named_parameters():
            if name.endswith("bias") and (
                config.bias == "all" or any(name.startswith(t + ".") for t in targets)
            ):
                p.requires_grad_(True)
    return targets


register("lora", LoraConfig, apply_lora)
