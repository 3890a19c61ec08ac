r"""Selective fine-tuning: train a chosen subset of the pretrained weights, freeze the rest.

- BitFit (Ben Zaken et al. 2021, arXiv:2106.10199): only the bias terms train, $h = W_0 x + b$ with $W_0$ frozen.
- Norm-only tuning (LN tuning, Zhao et al. 2023, arXiv:2312.11420; HF peft `LNTuningConfig`): only the
  LayerNorm/RMSNorm scales (and shifts) train, $\mathrm{LN}(x) = \gamma \odot \hat{x} + \beta$ with $\gamma, \beta$ trained.
- Layer freezing (e.g. Lee et al. 2019, arXiv:1911.03090): only the top $k$ transformer blocks train (or the
  parameters whose names match a pattern).

With $\Theta$ all weights and $S \subset \Theta$ the selected ones, training updates $\theta \in S$ only:
$$ \theta_S \leftarrow \theta_S - \eta \nabla_{\theta_S} \mathcal{L}, \qquad \theta_{\Theta \setminus S} \text{ fixed}. $$

How it is built: a `SelectiveLayer` wraps each module that owns a selected tensor and keeps, per adapter, a trainable
*copy* of that tensor; forward runs the module with the copy in place of the original
(`torch.func.functional_call`). The base weights therefore stay bit-identical, and everything else comes for free:
several task adapters on one model, `disable_adapter`, merge (copy the trained values in) / unmerge (put the
originals back, exact), and a saved file that holds just the trained tensors. Norm tuning names its copies
`ln_tuning_layers` as HF peft does, so its files load in either library.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.func import functional_call

from ..config import PeftConfig, check_range
from ..inject import AdapterLayer, _matches, find_targets, output_head, replace_module
from ..registry import register


@dataclass
class BitFitConfig(PeftConfig):
    peft_type: ClassVar[str] = "BITFIT"
    target_modules: str | list[str] | None = (
        None  # modules whose bias trains; None = every module with a bias
    )
    modules_to_save: list[str] | None = None  # extra modules trained in full and saved


@dataclass
class LNTuningConfig(PeftConfig):
    peft_type: ClassVar[str] = "LN_TUNING"  # HF peft's name: files load in peft too
    target_modules: str | list[str] | None = None  # norm layers to train; None = every LayerNorm/RMSNorm
    modules_to_save: list[str] | None = None


@dataclass
class LayerFreezeConfig(PeftConfig):
    peft_type: ClassVar[str] = "LAYER_FREEZE"
    num_trainable_layers: int | None = (
        2  # train the top k blocks of each block stack (T5: encoder and decoder)
    )
    trainable_params: str | list[str] | None = None  # or: parameter names (regex / names or dotted suffixes)
    modules_to_save: list[str] | None = None

    def __post_init__(self):
        super().__post_init__()
        if (self.num_trainable_layers is None) == (self.trainable_params is None):
            raise ValueError(
                "set exactly one of num_trainable_layers (top k blocks) and trainable_params (names/regex); got "
                f"num_trainable_layers={self.num_trainable_layers!r}, trainable_params={self.trainable_params!r}."
            )
        if self.num_trainable_layers is not None:
            check_range("num_trainable_layers", self.num_trainable_layers, low=1)


class SelectiveLayer(AdapterLayer):
    """A frozen module plus, per adapter, trainable copies of some of its own (direct) parameters."""

    adapter_attrs = ("selected",)

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        setattr(self, self.adapter_attrs[0], nn.ModuleDict())
        self._originals: dict[str, torch.Tensor] = {}  # base values saved while an adapter is merged

    def copies(self, name: str) -> nn.ParameterDict:
        return getattr(self, self.adapter_attrs[0])[name]

    def add(self, name: str, param_names: list[str]) -> None:
        own = dict(self.base_layer.named_parameters(recurse=False))
        copies = {
            p: nn.Parameter(own[p].detach().clone()) for p in param_names
        }  # same shape as each original
        getattr(self, self.adapter_attrs[0])[name] = nn.ParameterDict(copies)
        self.active_adapter = name

    def forward(self, *args, **kwargs):
        if not self.uses_adapter():
            return self.base_layer(*args, **kwargs)
        # run the base module with the adapter's copies standing in for its own tensors (e.g. {"bias": b'})
        return functional_call(self.base_layer, dict(self.copies(self.active_adapter)), args, kwargs)

    def merge(self, name: str) -> None:
        """Copy the trained values into the base module (the originals are kept aside: unmerge is exact)."""
        with torch.no_grad():
            for p, copy in self.copies(name).items():
                base = getattr(self.base_layer, p)
                self._originals[p] = base.detach().clone()
                base.copy_(copy)
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        with torch.no_grad():
            for p, original in self._originals.items():
                getattr(self.base_layer, p).copy_(original)
        self._originals, self.merged_adapters = {}, []


class LNTuningLayer(SelectiveLayer):
    adapter_attrs = (
        "ln_tuning_layers",
    )  # HF peft's attribute name: saved keys `...norm.ln_tuning_layers.weight`


def is_norm(module: nn.Module) -> bool:
    """LayerNorm, RMSNorm, and model-specific norms (LlamaRMSNorm, T5LayerNorm, ...), recognised by class name."""
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm)) or type(module).__name__.endswith("Norm")


def select(
    model: nn.Module, target_modules, pick: Callable[[str, str, nn.Module], bool]
) -> dict[str, list[str]]:
    """{module name: [names of its own parameters that `pick(module_name, param_name, module)` selects]}."""
    chosen, wrappers = {}, []
    head, embeddings = output_head(model), getattr(model, "get_input_embeddings", lambda: None)()
    tied = head.weight if head is not None and head.weight is getattr(embeddings, "weight", None) else None
    for name in find_targets(model, target_modules or ".*", layer_types=(nn.Module,)):
        if any(name.startswith(w + ".") for w in wrappers):
            continue  # an adapter's own tensors (e.g. `...selected.default`), not the model's weights
        module = model.get_submodule(name)
        if isinstance(module, AdapterLayer):  # wrapped for an earlier adapter: judge the original module
            wrappers.append(name)
            if not isinstance(module, SelectiveLayer):
                continue
            module = module.base_layer
        params = [p for p, _ in module.named_parameters(recurse=False) if pick(name, p, module)]
        if tied is not None and any(getattr(module, p) is tied for p in params):
            raise ValueError(
                f"{name} holds the embedding matrix that {type(model).__name__} ties to its output head; a trainable "
                "copy would untie the two. Leave it out of the selection, or use 'full' fine-tuning."
            )
        if params:
            chosen[name] = params
    return chosen


def wrap(model: nn.Module, chosen: dict[str, list[str]], adapter_name: str, layer_cls=SelectiveLayer) -> None:
    for name, params in reversed(chosen.items()):  # innermost first, so that the names stay valid
        module = model.get_submodule(name)
        if not isinstance(module, layer_cls):
            module = layer_cls(module)
            replace_module(model, name, module)
        module.add(adapter_name, params)


def apply_bitfit(model: nn.Module, config: BitFitConfig, adapter_name: str) -> None:
    chosen = select(model, config.target_modules, lambda m, p, mod: p == "bias")
    if not chosen:
        raise ValueError(
            f"BitFit trains bias terms, but {type(model).__name__} has no bias parameters in the selected modules "
            f"(target_modules={config.target_modules!r}). LLaMA and T5 use bias-free linear layers and norms; "
            "use 'norm', 'layer_freeze' or 'lora' for them, or a model with biases such as GPT-2."
        )
    wrap(model, chosen, adapter_name)


def apply_ln_tuning(model: nn.Module, config: LNTuningConfig, adapter_name: str) -> None:
    chosen = select(
        model, config.target_modules, lambda m, p, mod: config.target_modules is not None or is_norm(mod)
    )
    if not chosen:
        raise ValueError(
            f"target_modules={config.target_modules!r} selects no LayerNorm/RMSNorm-like layer with parameters of "
            f"its own in {type(model).__name__}; name norm layers such as 'input_layernorm' or 'ln_1'."
        )
    wrap(model, chosen, adapter_name, LNTuningLayer)


def block_stacks(model: nn.Module) -> list[str]:
    """Names of the outermost ModuleLists: the block stacks (`model.layers`, `transformer.h`, `encoder.block`)."""
    lists = [
        n
        for n in find_targets(model, ".*", layer_types=(nn.Module,))
        if type(model.get_submodule(n)) is nn.ModuleList
    ]
    return [n for n in lists if not any(n.startswith(o + ".") for o in lists)]


def apply_layer_freeze(model: nn.Module, config: LayerFreezeConfig, adapter_name: str) -> None:
    if config.trainable_params is not None:
        chosen = select(model, None, lambda m, p, mod: _matches(f"{m}.{p}", config.trainable_params))
        if not chosen:
            raise ValueError(f"trainable_params={config.trainable_params!r} matched no parameter name.")
    else:
        k, top = config.num_trainable_layers, []
        for stack in block_stacks(model):
            n = len(model.get_submodule(stack))
            if k > n:
                raise ValueError(f"num_trainable_layers={k} but {stack} has only {n} blocks: use 1..{n}.")
            top += [f"{stack}.{i}" for i in range(n - k, n)]
        if not top:
            raise ValueError(
                f"found no stack of transformer blocks (an nn.ModuleList) in {type(model).__name__}."
            )
        chosen = select(model, None, lambda m, p, mod: any(m == b or m.startswith(b + ".") for b in top))
    wrap(model, chosen, adapter_name)


register("bitfit", BitFitConfig, apply_bitfit)
register("norm", LNTuningConfig, apply_ln_tuning)
register("layer_freeze", LayerFreezeConfig, apply_layer_freeze)
