r"""(IA)^3: Infused Adapter by Inhibiting and Amplifying Inner Activations (Liu et al. 2022, arXiv:2205.05638).

Three learned vectors rescale the keys, the values and the inner feed-forward activations of every block:

$$ \mathrm{softmax}\!\Big(\frac{Q (l_k \odot K)^\top}{\sqrt{d_k}}\Big) (l_v \odot V), \qquad
   W_{out}\,\big(l_{ff} \odot \gamma(W_{in} x)\big) $$

A targeted linear layer $y = W x + b$ becomes $y = l \odot (W x + b)$ (output side: keys, values) or, for a layer
named in `feedforward_modules`, $y = W (l \odot x) + b$ (input side: the FFN's second projection sees the scaled
activations). Every $l$ starts at ones, so the adapted model equals the base model at step 0. Trainable
parameters: one number per output feature of each k/v layer and one per input feature of each FFN layer, about
0.01% of the model. Merging is exact: scale the rows (output side) or columns (input side) of $W$, and the bias on
the output side; unmerge divides them back (exact up to fp32 rounding).

Names follow HF peft (`ia3_l`, `target_modules`, `feedforward_modules`, `init_ia3_weights`, `fan_in_fan_out`), and the
vectors have peft's shapes, (out, 1) and (1, in), so saved files load in either library. As in peft, GPT-2's fused
`c_attn` gets one vector over all of its q, k and v outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import PeftConfig
from ..inject import (
    LINEAR_TYPES,
    AdapterLayer,
    Conv1D,
    _matches,
    find_targets,
    in_out_features,
    replace_module,
)
from ..registry import register

# HF peft's defaults for the architectures the workbook uses (its TRANSFORMERS_MODELS_TO_IA3_* mappings)
TARGET_MODULES = {
    "t5": ["k", "v", "wo"],
    "llama": ["k_proj", "v_proj", "down_proj"],
    "mistral": ["k_proj", "v_proj", "down_proj"],
    "gpt2": ["c_attn", "mlp.c_proj"],
}
FEEDFORWARD_MODULES = {"t5": ["wo"], "llama": ["down_proj"], "mistral": ["down_proj"], "gpt2": ["mlp.c_proj"]}


@dataclass
class IA3Config(PeftConfig):
    peft_type: ClassVar[str] = "IA3"
    target_modules: str | list[str] | None = (
        None  # layers to rescale; None = peft's default for the architecture
    )
    feedforward_modules: str | list[str] | None = (
        None  # the subset scaled on the input side (FFN out-projections)
    )
    fan_in_fan_out: bool = False  # True for GPT-2's Conv1D (weight stored (in, out)); set automatically
    init_ia3_weights: bool = True  # False: random vectors, so the adapter changes the output at init (tests)
    modules_to_save: list[str] | None = None  # extra modules trained in full and saved

    def __post_init__(self):
        super().__post_init__()
        if (self.target_modules is None) != (self.feedforward_modules is None):
            raise ValueError(
                "set both target_modules and feedforward_modules, or neither (then the defaults for the "
                f"architecture apply); got target_modules={self.target_modules!r}, "
                f"feedforward_modules={self.feedforward_modules!r}."
            )
        if isinstance(self.target_modules, list) and isinstance(self.feedforward_modules, list):
            extra = sorted(set(self.feedforward_modules) - set(self.target_modules))
            if extra:
                raise ValueError(
                    f"feedforward_modules must be a subset of target_modules: {extra} are not in "
                    f"target_modules={self.target_modules!r}."
                )


class IA3Linear(AdapterLayer):
    """y = l * (W x + b) (output side), or y = W (l * x) + b (input side, feed-forward). nn.Linear or Conv1D."""

    adapter_attrs = ("ia3_l",)

    def __init__(self, base_layer: nn.Module, is_feedforward: bool):
        super().__init__(base_layer)
        self.in_features, self.out_features = in_out_features(base_layer)
        self.is_feedforward = is_feedforward
        self.fan_in_fan_out = bool(Conv1D) and isinstance(base_layer, Conv1D)
        self.ia3_l = nn.ParameterDict()

    def add(self, name: str, config: IA3Config) -> None:
        shape = (1, self.in_features) if self.is_feedforward else (self.out_features, 1)  # as peft stores it
        w = self.base_layer.weight
        l = (
            torch.ones(shape, device=w.device)
            if config.init_ia3_weights
            else torch.randn(shape, device=w.device)
        )
        self.ia3_l[name] = nn.Parameter(l)
        self.active_adapter = name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.uses_adapter():
            return self.base_layer(x)
        l = self.ia3_l[self.active_adapter].flatten()  # (in,) or (out,)
        if self.is_feedforward:
            return self.base_layer((x * l).to(x.dtype))  # (B, T, in) scaled, then W
        y = self.base_layer(x)  # (B, T, out)
        return (y * l).to(y.dtype)

    def _scale(self, name: str, invert: bool) -> None:
        l = self.ia3_l[name].detach()
        factor = 1 / l if invert else l  # (out, 1) or (1, in), laid out like nn.Linear's (out, in) weight
        weight = self.base_layer.weight
        with torch.no_grad():
            weight.mul_(
                (factor.T if self.fan_in_fan_out else factor).to(weight.dtype)
            )  # Conv1D stores (in, out)
            bias = self.base_layer.bias
            if not self.is_feedforward and bias is not None:  # output side: b is scaled too
                bias.mul_(factor.flatten().to(bias.dtype))

    def merge(self, name: str) -> None:
        """W <- diag(l) W (output side) or W diag(l) (input side); the bias too on the output side."""
        if (self.ia3_l[name] == 0).any():
            raise ValueError(
                "an (IA)^3 vector holds zeros: merging could not be undone (unmerge divides by l)."
            )
        self._scale(name, invert=False)
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        while self.merged_adapters:
            self._scale(self.merged_adapters.pop(), invert=True)


def apply_ia3(model: nn.Module, config: IA3Config, adapter_name: str) -> None:
    if config.target_modules is None:
        model_type = getattr(getattr(model, "config", None), "model_type", None)
        if model_type not in TARGET_MODULES:
            raise ValueError(
                f"no default (IA)^3 targets for model_type={model_type!r} (known: {sorted(TARGET_MODULES)}); pass "
                "target_modules (keys, values, FFN out-projection) and feedforward_modules (the FFN ones)."
            )
        config.target_modules = list(TARGET_MODULES[model_type])
        config.feedforward_modules = list(FEEDFORWARD_MODULES[model_type])
    for name in find_targets(model, config.target_modules, layer_types=LINEAR_TYPES):
        module = model.get_submodule(name)
        if not isinstance(module, IA3Linear):
            module = IA3Linear(module, is_feedforward=_matches(name, config.feedforward_modules))
            replace_module(model, name, module)
        module.add(adapter_name, config)
        if module.fan_in_fan_out:
            config.fan_in_fan_out = True  # as HF peft does for Conv1D, so the saved config loads there too


register("ia3", IA3Config, apply_ia3)
