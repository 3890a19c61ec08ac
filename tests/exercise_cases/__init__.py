"""Answers for every graded exercise: the reference solution and plausible wrong ones, one file per notebook.

`tests/exercise_cases/nbNN.py` defines

    CASES = {
        "nb05.q1": {
            "solution": {"lora_param_count": lambda d, k, r: r * (d + k)},     # the names the exercise cell defines
            "wrong": {                                                       # >= 2 plausible mistakes, each must fail
                "forgot B": {"lora_param_count": lambda d, k, r: r * k},
                "hard-coded notebook value": {"lora_param_count": lambda d, k, r: 4608},
            },
        },
    }

Each dict is the notebook namespace the check sees (`peftlab.classroom.grading.evaluate(exercise, ns)`). tests/test_exercises.py
runs them all and fails for any registered exercise that has no case.
"""

from __future__ import annotations

import importlib
import pkgutil


def all_cases() -> dict[str, dict]:
    cases: dict[str, dict] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        cases.update(getattr(module, "CASES", {}))
    return cases
