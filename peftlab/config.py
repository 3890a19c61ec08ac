"""Configs: plain dataclasses that check themselves.

Every method has a config class that subclasses `PeftConfig`. Fields are validated in `__post_init__`, so a bad
value fails at the line that wrote it, with a message that says what is allowed. The JSON written next to a saved
adapter (`adapter_config.json`) is `asdict(config)`, using HF peft's field names where peft has the method.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Union

TASK_TYPES = ("CAUSAL_LM", "SEQ_2_SEQ_LM")


def _type_ok(value: Any, tp: Any) -> bool:
    """True when `value` fits the annotation `tp` (the small subset of typing that configs use)."""
    if tp is Any:
        return True
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(_type_ok(value, t) for t in typing.get_args(tp))
    if origin is Literal:
        return value in typing.get_args(tp)
    if origin in (list, tuple):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, inner) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    if tp is float:  # an int is a fine float, a bool is not
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def check_range(name: str, value, *, low=None, high=None, low_open=False, high_open=False, allowed: str = ""):
    """Raise ValueError naming the field and the allowed range when `value` falls outside [low, high]."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        if not allowed:
            lo = "" if low is None else f"{'>' if low_open else '>='} {low}"
            hi = "" if high is None else f"{'<' if high_open else '<='} {high}"
            allowed = " and ".join(s for s in (lo, hi) if s)
        raise ValueError(f"{name}={value!r} is not allowed: {name} must be {allowed}.")


@dataclass
class PeftConfig:
    """Fields every method shares. Subclasses set `peft_type` (the name HF peft writes in adapter_config.json)."""

    peft_type: ClassVar[str] = ""
    task_type: str | None = None  # "CAUSAL_LM" or "SEQ_2_SEQ_LM"; filled in from the model when None
    base_model_name_or_path: str | None = None  # written on save, for the reader's information
    inference_mode: bool = False  # True after loading with is_trainable=False

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not _type_ok(value, hints[f.name]):
                raise TypeError(
                    f"{type(self).__name__}.{f.name}={value!r} has type {type(value).__name__}; "
                    f"expected {_type_name(hints[f.name])}."
                )
        if self.task_type is not None and self.task_type not in TASK_TYPES:
            raise ValueError(f"task_type={self.task_type!r} is not allowed: use one of {TASK_TYPES} or None.")

    # -- (de)serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["peft_type"] = self.peft_type
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> PeftConfig:
        """Build from a dict such as adapter_config.json. Keys this class does not have (HF peft writes many
        bookkeeping fields, e.g. `peft_version`, `auto_mapping`) are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def field_list(default=None):
    """A dataclass field whose default is a (copied) list, or None."""
    return field(default_factory=lambda: list(default) if default is not None else None)
