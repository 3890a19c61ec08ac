r"""Bottleneck adapters: Houlsby et al. 2019 (arXiv:1902.00751) and Pfeiffer et al. 2020 (arXiv:2005.00247).

A small bottleneck network is inserted after a sublayer of every transformer block, with a skip connection:

$$ h \leftarrow h + W_{up}\, f(W_{down} h + b_{down}) + b_{up}, \qquad
   W_{down} \in \mathbb{R}^{m \times d},\ W_{up} \in \mathbb{R}^{d \times m},\ m = d / \text{reduction\_factor} $$

$f$ is a non-linearity (relu, gelu, silu or tanh). $W_{up}$ and $b_{up}$ start at zero, so every adapter starts as the
identity and the adapted model equals the base model at step 0. Parameters per adapter: $2md + m + d$.

- Houlsby: one adapter after the attention output and one after the feed-forward output of every block.
- Pfeiffer: one adapter after the feed-forward output only (half the adapters, about the same quality).

The adapter sits on the sublayer's output, before the block adds its residual (as in both papers). The non-linearity
means there is no weight delta to fold into the base model: adapters cannot be merged and cost a little latency.
Names (`reduction_factor`, `non_linearity`, `mh_adapter`, `output_adapter`) follow AdapterHub's `BnConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import nn

from ..config import PeftConfig, check_range
from ..inject import AdapterLayer, find_targets, replace_module
from ..registry import register

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh}
# the attention and feed-forward sublayers each architecture names (by model_type); others: pass the names
ATTN_MODULES = {"llama": ["self_attn"], "mistral": ["self_attn"], "qwen2": ["self_attn"], "gpt2": ["attn"]}
ATTN_MODULES["t5"] = ["SelfAttention"]  # encoder and decoder self-attention (not the cross-attention)
FFN_MODULES = {
    "llama": ["mlp"],
    "mistral": ["mlp"],
    "qwen2": ["mlp"],
    "gpt2": ["mlp"],
    "t5": ["DenseReluDense"],
}


@dataclass
class BottleneckConfig(PeftConfig):
    peft_type: ClassVar[str] = "BOTTLENECK"  # not in HF peft (AdapterHub has it)
    mh_adapter: bool = True  # an adapter after each attention sublayer (Houlsby: True, Pfeiffer: False)
    output_adapter: bool = True  # an adapter after each feed-forward sublayer
    reduction_factor: float = 16  # bottleneck m = hidden size // reduction_factor ...
    bottleneck_size: int | None = None  # ... unless m is given directly
    non_linearity: str = "relu"  # relu, gelu, silu or tanh
    attn_modules: str | list[str] | None = None  # the attention sublayers; None = known per architecture
    ffn_modules: str | list[str] | None = None  # the feed-forward sublayers; None = known per architecture
    init_weights: bool = (
        True  # False: up-projection random too, so the adapter changes the output at init (tests)
    )
    modules_to_save: list[str] | None = None

    def __post_init__(self):
        super().__post_init__()
        check_range("reduction_factor", self.reduction_factor, low=0, low_open=True)
        if self.bottleneck_size is not None:
            check_range("bottleneck_size", self.bottleneck_size, low=1)
        if self.non_linearity not in ACTIVATIONS:
            raise ValueError(
                f"non_linearity={self.non_linearity!r} is not allowed: use one of {list(ACTIVATIONS)}."
            )
        if not (self.mh_adapter or self.output_adapter):
            raise ValueError(
                "mh_adapter=False and output_adapter=False place no adapter: set at least one to True."
            )


class BottleneckLayer(AdapterLayer):
    """A sublayer (attention or feed-forward) followed by a bottleneck adapter on its output."""

    adapter_attrs = ("adapter_down", "adapter_up", "adapter_act")

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.adapter_down, self.adapter_up, self.adapter_act = (
            nn.ModuleDict(),
            nn.ModuleDict(),
            nn.ModuleDict(),
        )

    def add(self, name: str, d: int, m: int, config: BottleneckConfig, device=None) -> None:
        self.adapter_down[name] = nn.Linear(d, m, device=device)  # weight (m, d), bias (m,)
        self.adapter_up[name] = nn.Linear(m, d, device=device)  # weight (d, m), bias (d,)
        self.adapter_act[name] = ACTIVATIONS[config.non_linearity]()
        if config.init_weights:  # up = 0: the adapter adds exactly zero at init
            nn.init.zeros_(self.adapter_up[name].weight)
            nn.init.zeros_(self.adapter_up[name].bias)
        self.active_adapter = name

    def forward(self, *args, **kwargs):
        out = self.base_layer(*args, **kwargs)  # attention modules return a tuple: (output, weights, ...)
        if not self.uses_adapter():
            return out
        h = out[0] if isinstance(out, tuple) else out  # (B, T, d)
        name = self.active_adapter
        z = self.adapter_act[name](
            self.adapter_down[name](h.to(self.adapter_down[name].weight.dtype))
        )  # (B, T, m)
        h = h + self.adapter_up[name](z).to(h.dtype)  # (B, T, d)
        return (h, *out[1:]) if isinstance(out, tuple) else h

    def merge(self, name: str) -> None:
        raise NotImplementedError(
            "a bottleneck adapter is nonlinear (up(f(down(h)))): there is no weight delta to fold into the base "
            "model, so it cannot be merged. Keep the adapter layers at inference (they cost little)."
        )


def _sublayers(model: nn.Module, given, known: dict[str, list[str]], field: str) -> list[str]:
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if given is None and model_type not in known:
        raise ValueError(
            f"{field} is not known for model_type={model_type!r} (known: {sorted(known)}); pass {field}, e.g. "
            f"the names of the modules whose output the adapter should refine."
        )
    return find_targets(model, given if given is not None else known[model_type], layer_types=(nn.Module,))


def apply_bottleneck(model: nn.Module, config: BottleneckConfig, adapter_name: str) -> None:
    hidden = getattr(getattr(model, "config", None), "hidden_size", None)
    if hidden is None:
        raise ValueError(f"{type(model).__name__} has no config.hidden_size: cannot size the adapters.")
    m = config.bottleneck_size or int(hidden // config.reduction_factor)
    if m < 1:
        raise ValueError(
            f"reduction_factor={config.reduction_factor} leaves no bottleneck for hidden size {hidden}: "
            f"reduction_factor must be <= {hidden} (or set bottleneck_size)."
        )
    targets = []
    if config.mh_adapter:
        targets += _sublayers(model, config.attn_modules, ATTN_MODULES, "attn_modules")
    if config.output_adapter:
        targets += _sublayers(model, config.ffn_modules, FFN_MODULES, "ffn_modules")
    device = next(model.parameters()).device
    for name in targets:
        module = model.get_submodule(name)
        if not isinstance(module, BottleneckLayer):
            module = BottleneckLayer(module)
            replace_module(model, name, module)
        module.add(adapter_name, hidden, m, config, device)


register("houlsby", BottleneckConfig, apply_bottleneck)
register("pfeiffer", BottleneckConfig, apply_bottleneck, defaults={"mh_adapter": False})
