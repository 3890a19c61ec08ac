"""The method registry and `get_peft_model`.

Each method file ends with one `register(...)` call that says: this name, this config class, this function that
injects the method into a model. `get_peft_model` looks the config up here and wraps the model in a `PeftModel`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .config import PeftConfig


@dataclass
class Method:
    name: str  # what users type: "lora", "ia3", ...
    config_cls: type[PeftConfig]
    # apply(base_model, config, adapter_name) injects the adapter in place. It may return an nn.Module that
    # PeftModel keeps under `prompt_modules[adapter_name]` and calls instead of the base model, as
    # `module(base_model, **inputs)` and `module.generate(base_model, **inputs)` (soft prompts do this).
    apply: Callable
    defaults: dict = field(default_factory=dict)  # preset fields, e.g. {"use_dora": True} for "dora"
    # Optional hooks to rename state-dict keys between our layout and HF peft's (after the generic renaming).
    to_peft_keys: Callable[[dict], dict] | None = None
    from_peft_keys: Callable[[dict], dict] | None = None
    # Optional per-step hook, called by `PeftModel.update_and_allocate(step)` (AdaLoRA's rank budget uses it).
    on_step: Callable | None = None


METHODS: dict[str, Method] = {}


def register(name: str, config_cls: type[PeftConfig], apply: Callable, **kwargs) -> Method:
    METHODS[name] = Method(name, config_cls, apply, **kwargs)
    return METHODS[name]


def method_for(config: PeftConfig) -> Method:
    """The method that handles `config` (the first one registered for its class)."""
    for m in METHODS.values():
        if type(config) is m.config_cls:
            return m
    raise TypeError(
        f"{type(config).__name__} is not a registered method config; known: "
        f"{sorted({m.config_cls.__name__ for m in METHODS.values()})}."
    )


def config_class_for(peft_type: str, fields: dict | None = None) -> type[PeftConfig]:
    """The config class for `peft_type`. When several share it (QLoRA's config extends LoRA's, both "LORA"), the one
    whose fields cover most keys of the saved `fields` wins; ties go to the first registered."""
    import dataclasses

    found = list(dict.fromkeys(m.config_cls for m in METHODS.values() if m.config_cls.peft_type == peft_type))
    if found:
        cover = lambda cls: len({f.name for f in dataclasses.fields(cls)} & set(fields or ()))  # noqa: E731
        return max(found, key=cover)  # max keeps the first of equal ones
    known = sorted({m.config_cls.peft_type for m in METHODS.values()})
    raise ValueError(f"peft_type={peft_type!r} is not one peftlab implements; known: {known}.")


def make_config(name: str, **kwargs) -> PeftConfig:
    """`make_config("lora", r=8, target_modules=["q_proj"])`: a config by method name, with its presets."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; registered methods: {sorted(METHODS)}.")
    m = METHODS[name]
    return m.config_cls(**{**m.defaults, **kwargs})
