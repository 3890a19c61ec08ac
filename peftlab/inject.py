"""Injection: find the layers a method targets, swap them for adapter layers, freeze the rest.

Every method uses these helpers; no method walks the model on its own.

Target matching follows HF peft:
- a string is a regular expression that must match the whole dotted module name (`re.fullmatch`),
- a list matches a module whose name equals an entry or ends with `"." + entry`,
- `"all-linear"` matches every linear layer except the output head (`model.get_output_embeddings()`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

try:  # GPT-2 stores its projections as Conv1D: a linear layer with the weight transposed, (in, out)
    from transformers.pytorch_utils import Conv1D
except ImportError:  # pragma: no cover
    Conv1D = ()

LINEAR_TYPES = (nn.Linear, Conv1D)


def output_head(model: nn.Module) -> nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    return getter() if callable(getter) else None


def _matches(name: str, target: str | list[str]) -> bool:
    if isinstance(target, str):
        return re.fullmatch(target, name) is not None
    return any(name == t or name.endswith("." + t) for t in target)


def describe_modules(model: nn.Module, layer_types: tuple[type, ...] | None = None) -> str:
    """A short listing of the module names in `model` (leaf names with counts, plus a few full names)."""
    names = [n for n, m in model.named_modules() if n and (layer_types is None or isinstance(m, layer_types))]
    leaves = Counter(n.rsplit(".", 1)[-1] for n in names)
    leaf_text = ", ".join(f"{k} (x{v})" if v > 1 else k for k, v in leaves.items() if not k.isdigit())
    examples = ", ".join(names[:6])
    return f"module names by last part: {leaf_text}; e.g. full names: {examples}"


def find_targets(
    model: nn.Module, target_modules: str | list[str], layer_types: tuple[type, ...] = LINEAR_TYPES
) -> list[str]:
    """Dotted names of the modules of `layer_types` that `target_modules` selects. No match -> ValueError."""
    head = output_head(model)
    found, seen_weights = [], set()
    for name, wrapped in model.named_modules():
        if not name or ".base_layer" in name or ".modules_to_save." in name:
            continue
        # a layer that already carries an adapter is still a target (for a second adapter): judge its base layer
        module = wrapped.base_layer if isinstance(wrapped, AdapterLayer) else wrapped
        if isinstance(module, nn.Embedding):  # T5's encoder/decoder.embed_tokens share `shared`'s weight
            if id(module.weight) in seen_weights:
                continue
            seen_weights.add(id(module.weight))
        if target_modules == "all-linear":
            hit = isinstance(module, LINEAR_TYPES) and module is not head
        else:
            hit = _matches(name, target_modules)
        if hit:
            if not isinstance(module, layer_types):
                allowed = ", ".join(t.__name__ for t in layer_types)
                raise TypeError(
                    f"target {name!r} is a {type(module).__name__}; this method can wrap only: {allowed}."
                )
            found.append(name)
    if not found:
        raise ValueError(
            f"target_modules={target_modules!r} matched no module of type "
            f"{'/'.join(t.__name__ for t in layer_types)}. A string is a regex matched against the whole dotted "
            f"name; a list matches exact names or dotted suffixes. This model has "
            f"{describe_modules(model, layer_types)}."
        )
    return found


def _same_layer(a: nn.Module, b: nn.Module) -> bool:
    """Same module, or an embedding sharing its weight (T5 ties `shared` to encoder/decoder `embed_tokens`)."""
    return a is b or (isinstance(a, nn.Embedding) and type(a) is type(b) and a.weight is b.weight)


def replace_module(model: nn.Module, name: str, new: nn.Module) -> nn.Module:
    """Put `new` at dotted path `name` and at every other path holding the same layer; return what was there."""
    old = model.get_submodule(name)
    aliases = [n for n, m in model.named_modules(remove_duplicate=False) if n and _same_layer(m, old)] or [
        name
    ]
    for alias in aliases:
        parent_name, _, child = alias.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)
    return old


def freeze(model: nn.Module) -> None:
    for p in model.parameters():
        p.requires_grad_(False)


def in_out_features(layer: nn.Module) -> tuple[int, int]:
    """(in_features, out_features) of an nn.Linear or a GPT-2 Conv1D (whose weight is stored (in, out))."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if Conv1D and isinstance(layer, Conv1D):
        return layer.weight.shape[0], layer.weight.shape[1]
    raise TypeError(f"expected nn.Linear or Conv1D, got {type(layer).__name__}")


def weight_as_out_in(layer: nn.Module) -> torch.Tensor:
    """The weight laid out (out, in) like nn.Linear, whatever the layer type (a view, not a copy)."""
    return layer.weight.T if (Conv1D and isinstance(layer, Conv1D)) else layer.weight


class AdapterLayer(nn.Module):
    """A frozen `base_layer` plus named adapters; at most one adapter is active.

    Subclasses keep their per-adapter tensors in ModuleDict/ParameterDict attributes listed in `adapter_attrs`,
    keyed by adapter name (so parameter names read `...q_proj.lora_A.default.weight`, as in HF peft), and implement
    `forward`, and `delta`-style `merge`/`unmerge` where the method allows it.
    """

    adapter_attrs: tuple[str, ...] = ()

    def __init__(self, base_layer: nn.Module):
        super().__init__()
        self.base_layer = base_layer
        self.active_adapter: str | None = None
        self.disabled = False
        self.merged_adapters: list[str] = []

    def __getattr__(self, name: str):  # weight, bias, in_features... read through to the wrapped layer
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "base_layer":
                raise
            return getattr(self.base_layer, name)

    @property
    def merged(self) -> bool:
        return bool(self.merged_adapters)

    def adapter_names(self) -> list[str]:
        return list(getattr(self, self.adapter_attrs[0]).keys()) if self.adapter_attrs else []

    def uses_adapter(self) -> bool:
        """True when forward should add the active adapter (not disabled, not merged, present here)."""
        return not self.disabled and not self.merged and self.active_adapter in self.adapter_names()

    def delete_adapter(self, name: str) -> None:
        if name in self.merged_adapters:
            self.unmerge()
        for attr in self.adapter_attrs:
            container = getattr(self, attr)
            if name in container:
                del container[name]
        if self.active_adapter == name:
            self.active_adapter = None

    def merge(self, name: str) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be merged into the base weights.")

    def unmerge(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot be unmerged.")

    def unload(self, merge: bool) -> nn.Module:
        """The plain module to put back in the model: the base layer, with the active adapter folded in if asked."""
        if merge and self.uses_adapter():
            self.merge(self.active_adapter)
        return self.base_layer


class ModulesToSaveWrapper(AdapterLayer):
    """`modules_to_save`: a trainable copy of a whole module per adapter (e.g. a new classification head)."""

    adapter_attrs = ("modules_to_save",)

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.modules_to_save = nn.ModuleDict()

    def add(self, name: str) -> None:
        import copy

        copy_ = copy.deepcopy(self.base_layer)
        copy_.requires_grad_(True)
        self.modules_to_save[name] = copy_
        self.active_adapter = name

    def forward(self, *args, **kwargs):
        if self.disabled or self.active_adapter not in self.modules_to_save:
            return self.base_layer(*args, **kwargs)
        return self.modules_to_save[self.active_adapter](*args, **kwargs)

    def merge(self, name: str) -> None:  # the copy already replaces the original in forward: nothing to fold
        pass

    def unmerge(self) -> None:
        pass

    def unload(self, merge: bool) -> nn.Module:
        if merge and self.active_adapter in self.modules_to_save:
            return self.modules_to_save[self.active_adapter]
        return self.base_layer


def wrap_modules_to_save(model: nn.Module, targets: Iterable[str], adapter_name: str) -> list[str]:
    names = find_targets(model, list(targets), layer_types=(nn.Module,))
    names = [n for n in names if not any(n.startswith(m + ".") for m in names)]  # outermost only
    for name in names:
        module = model.get_submodule(name)
        if not isinstance(module, ModulesToSaveWrapper):
            module = ModulesToSaveWrapper(module)
            replace_module(model, name, module)
        module.add(adapter_name)
    return names
