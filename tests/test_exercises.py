"""Every graded exercise: its reference solution passes, and at least two plausible wrong answers fail.

The answers live in tests/exercise_cases/nbNN.py (see its __init__ for the format)."""

import importlib
import pkgutil

import pytest
from exercise_cases import all_cases

import peftlab.classroom.exercises
from peftlab.classroom.grading import EXERCISES, evaluate, get_exercise

for _info in pkgutil.iter_modules(peftlab.classroom.exercises.__path__):  # register every notebook's checks
    importlib.import_module(f"peftlab.classroom.exercises.{_info.name}")
CASES = all_cases()
IDS = sorted(EXERCISES)


def test_every_exercise_has_a_case():
    missing = [i for i in IDS if i not in CASES]
    assert not missing, f"exercises without a solution/wrong-answer case in tests/exercise_cases: {missing}"
    unknown = [i for i in CASES if i not in EXERCISES]
    assert not unknown, f"cases for exercises that do not exist: {unknown}"


@pytest.mark.parametrize("ex_id", [i for i in IDS if i in CASES])
def test_solution_passes(ex_id):
    r = evaluate(get_exercise(ex_id), dict(CASES[ex_id]["solution"]))
    assert r["status"] == "passed", r


@pytest.mark.parametrize("ex_id", [i for i in IDS if i in CASES])
def test_plausible_wrong_answers_fail(ex_id):
    wrong = CASES[ex_id]["wrong"]
    assert len(wrong) >= 2, f"{ex_id}: at least two plausible wrong answers"
    for name, ns in wrong.items():
        r = evaluate(get_exercise(ex_id), dict(ns))
        assert r["status"] == "failed" and r["points"] == 0, (ex_id, name, r)
