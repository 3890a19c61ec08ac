"""In-notebook exercise checks, in the spirit of otter-grader's `grader.check("q1")`.

An exercise is a function registered with `@exercise(id, points, hint, needs)`; it receives the notebook's global
namespace and raises AssertionError (with a helpful message) when the student's answer is wrong. Checks compare the
student's code with peftlab's own implementation on random inputs, so copying a printed number does not pass.

    check("nb05.q1")   # in the notebook, right after the exercise cell

prints one of:  "nb05.q1: passed (2/2 points)", "nb05.q1: not yet right (0/2) ... Hint: ...",
"nb05.q1: not attempted yet (0/2). Hint: ...". Nothing here raises into the notebook: the rest of it keeps running.

Batch grading (`python -m peftlab.nbtools grade`) runs each submission with its own check calls inserted after every
exercise cell; those calls also write their result to the file named by $PEFTLAB_GRADE_OUT.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class NotAttempted(Exception):
    """Raised inside a check when the student has not written an answer yet."""


@dataclass
class Exercise:
    id: str
    points: int
    hint: str
    needs: list[str] = field(default_factory=list)  # names the exercise cell defines
    fn: Callable | None = None


EXERCISES: dict[str, Exercise] = {}
RESULTS: dict[str, dict] = {}  # id -> last result in this kernel


def exercise(id: str, points: int, hint: str, needs: list[str] | tuple[str, ...] = ()):
    """Register a check function `fn(ns)` for exercise `id` (e.g. "nb05.q1")."""

    def register(fn):
        EXERCISES[id] = Exercise(id, points, hint, list(needs), fn)
        return fn

    return register


def attempted(value):
    """Return `value`, or raise NotAttempted when it is the stub's None / Ellipsis."""
    if value is None or value is Ellipsis:
        raise NotAttempted
    return value


def rng(seed: int = 0) -> np.random.Generator:
    """A seeded generator for random check inputs."""
    return np.random.default_rng(seed)


def get_exercise(ex_id: str) -> Exercise:
    if ex_id not in EXERCISES:
        module = ex_id.split(".")[0]
        try:
            importlib.import_module(f"peftlab.exercises.{module}")
        except ModuleNotFoundError:
            pass
    if ex_id not in EXERCISES:
        raise KeyError(f"unknown exercise {ex_id!r}; known: {sorted(EXERCISES)}")
    return EXERCISES[ex_id]


def evaluate(ex: Exercise, ns: dict) -> dict:
    """Run one check against namespace `ns`: {"id", "status": passed|failed|not attempted, "points", "max", "message"}."""
    status, message = "passed", ""
    try:
        for name in ex.needs:
            if ns.get(name, Ellipsis) is Ellipsis:
                raise NotAttempted
        ex.fn(ns)
    except (NotAttempted, NotImplementedError):
        status = "not attempted"
    except AssertionError as e:
        status, message = "failed", str(e) or "an answer is not right yet"
    except Exception as e:  # the student's code raised: show where, briefly
        tb = traceback.extract_tb(e.__traceback__)[-1]
        status, message = "failed", f"your code raised {type(e).__name__}: {e} (line {tb.lineno})"
    points = ex.points if status == "passed" else 0
    return {"id": ex.id, "status": status, "points": points, "max": ex.points, "message": message}


def format_result(r: dict, hint: str) -> str:
    if r["status"] == "passed":
        return f"✅ {r['id']}: passed ({r['points']}/{r['max']} points)"
    if r["status"] == "not attempted":
        return f"⏳ {r['id']}: not attempted yet (0/{r['max']} points). Hint: {hint}"
    return f"❌ {r['id']}: not yet right (0/{r['max']} points): {r['message']}\n   Hint: {hint}"


def check(ex_id: str, ns: dict | None = None) -> None:
    """Check exercise `ex_id` against the calling notebook's variables and print the verdict."""
    ns = ns if ns is not None else inspect.currentframe().f_back.f_globals
    ex = get_exercise(ex_id)
    r = evaluate(ex, ns)
    RESULTS[ex_id] = r
    print(format_result(r, ex.hint))


def _grade(ex_id: str, hidden_code: str | None = None) -> None:
    """Inserted by the batch grader after each exercise cell: check, run hidden tests, record the result."""
    ns = inspect.currentframe().f_back.f_globals
    ex = get_exercise(ex_id)
    r = evaluate(ex, ns)
    if r["status"] == "passed" and hidden_code:
        try:
            exec(compile(hidden_code, f"<hidden tests {ex_id}>", "exec"), ns)
        except Exception as e:
            r.update(status="failed", points=0, message=f"hidden tests failed: {type(e).__name__}: {e}")
    out = os.environ.get("PEFTLAB_GRADE_OUT")
    if out:
        with open(out, "a") as f:
            f.write(json.dumps(r) + "\n")
