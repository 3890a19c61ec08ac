"""The table the common tester runs: one `Case` per (method, config), contributed by one file per method family.

Add a file `tests/cases/<family>.py` defining `CASES = [Case(...), ...]`; `all_cases()` picks it up.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Case:
    id: str  # test id, e.g. "lora-r4"
    method: str  # registry name: make_config(method, **config(kind))
    config: Callable[[str], dict]  # model kind ("t5", "llama", "gpt2") -> config kwargs
    kinds: tuple[str, ...] = ("t5", "llama", "gpt2")
    identity_at_init: bool = True  # invariant 1: logits equal the base model's before training
    mergeable: bool = True  # invariant 3: merge/unmerge exist
    merge_atol: float = 1e-5  # merged vs unmerged logits
    can_disable: bool = True  # `with model.disable_adapter()` gives the base model back
    adapter_only_save: bool = True  # invariant 4: the saved file holds no full-model weights
    peft_config: Callable[[str], object] | None = (
        None  # kind -> an HF peft config with the same meaning (counts)
    )
    lr: float = 1e-2  # for the 3 optimizer steps


def all_cases() -> list[Case]:
    cases = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cases.extend(getattr(module, "CASES", []))
    return cases
