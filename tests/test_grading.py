"""Exercises: student copies, in-notebook checks, and batch grading that survives broken submissions."""

import csv
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from peftlab import nbtools
from peftlab.grading import EXERCISES, evaluate

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import demo_exercises  # noqa: E402,F401  (registers demo.q1, demo.q2 in this process too)

CELLS = [
    "import demo_exercises\nfrom peftlab.grading import check",
    "# EXERCISE demo.q1\ndef double(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    return y\n    # END SOLUTION",
    'check("demo.q1")',
    "# HIDDEN TESTS demo.q1\nassert double(-7) == -14",
    "# EXERCISE demo.q2\n# BEGIN SOLUTION\nanswer = 6 * 7\n# END SOLUTION",
    'check("demo.q2")',
    'print("reached the end")',
]


def notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture
def course(tmp_path):
    inst = tmp_path / "instructor"
    inst.mkdir()
    shutil.copy(FIXTURES / "demo_exercises.py", inst)
    nbformat.write(notebook(CELLS), str(inst / "99_demo.ipynb"))
    return inst


def test_stub_keeps_names_and_drops_the_rest():
    src = "# EXERCISE x\ndef f(a):\n    # BEGIN SOLUTION\n    b = a + 1\n    if b:\n        c = 2\n    return b\n    # END SOLUTION\n"
    out = nbtools.student_source(src)
    assert "b = ...  # YOUR CODE HERE" in out and "return b" not in out and "c = " not in out
    assert (
        nbtools.student_source("# BEGIN SOLUTION\nx, y = 1, 2\n# END SOLUTION")
        == "x, y = ..., ...  # YOUR CODE HERE"
    )
    assert nbtools.student_source("# BEGIN SOLUTION\nprint(1)\n# END SOLUTION") == "...  # YOUR CODE HERE"
    with pytest.raises(ValueError, match="without"):
        nbtools.student_source("# BEGIN SOLUTION\nx = 1\n")


def test_student_copy_removes_solutions_and_hidden_tests(course):
    student = nbtools.student_copy(nbformat.read(str(course / "99_demo.ipynb"), as_version=4))
    text = "\n".join(c.source for c in student.cells)
    assert "HIDDEN TESTS" not in text and "6 * 7" not in text and "2 * x" not in text
    assert "answer = ...  # YOUR CODE HERE" in text
    assert [nbtools.exercise_id(c) for c in student.cells if nbtools.exercise_id(c)] == ["demo.q1", "demo.q2"]


def test_check_statuses():
    ex = EXERCISES["demo.q1"]
    assert evaluate(ex, {"double": lambda x: 2 * x})["status"] == "passed"
    assert evaluate(ex, {"double": lambda x: None})["status"] == "not attempted"
    assert evaluate(ex, {"double": ...})["status"] == "not attempted"
    assert evaluate(ex, {})["status"] == "not attempted"
    wrong = evaluate(ex, {"double": lambda x: 42})
    assert wrong["status"] == "failed" and wrong["points"] == 0 and "is wrong" in wrong["message"]
    crash = evaluate(ex, {"double": lambda x: 1 / 0})
    assert crash["status"] == "failed" and "ZeroDivisionError" in crash["message"]


def submit(root, student, cells=None, raw=None):
    d = root / student
    d.mkdir(parents=True)
    if raw is not None:
        (d / "99_demo.ipynb").write_text(raw)
    else:
        nbformat.write(notebook(cells), str(d / "99_demo.ipynb"))


@pytest.mark.slow
def test_grade_a_class_with_broken_submissions(course, tmp_path):
    subs = tmp_path / "subs"
    student = nbtools.student_copy(nbformat.read(str(course / "99_demo.ipynb"), as_version=4))
    submit(subs, "ada", CELLS)  # the instructor's solutions
    submit(subs, "untouched", [c.source for c in student.cells])
    raises = list(CELLS)
    raises[1] = "# EXERCISE demo.q1\nraise RuntimeError('boom')"
    submit(subs, "raiser", raises)
    loops = list(CELLS)
    loops[1] = "# EXERCISE demo.q1\ndef double(x):\n    while True:\n        pass"
    submit(subs, "looper", loops)
    edited = [c for c in CELLS if not c.startswith("# EXERCISE demo.q2")]
    edited[2] = 'print("demo.q1: passed (3/3 points)")'  # a "check" cell turned into a fake verdict
    submit(subs, "editor", edited)
    submit(subs, "notjson", raw="{ this is not json")
    submit(subs, "empty", raw="")
    book = nbtools.grade_class(subs, course, tmp_path / "out", timeout=10, workers=2)
    rows = list(csv.DictReader(open(book)))
    got = {(r["student"], r["exercise"]): (int(r["points"]), r["status"], r["message"]) for r in rows}
    assert got[("ada", "demo.q1")][0] == 3 and got[("ada", "demo.q2")][0] == 2
    assert got[("untouched", "demo.q1")][:2] == (0, "not attempted")
    assert got[("untouched", "demo.q2")][:2] == (0, "not attempted")
    assert got[("raiser", "demo.q1")][0] == 0 and "RuntimeError" in got[("raiser", "demo.q1")][2]
    assert got[("raiser", "demo.q2")][0] == 2  # the rest of the notebook still counts
    assert got[("looper", "demo.q1")][0] == 0 and got[("looper", "demo.q2")][0] == 2
    assert got[("editor", "demo.q1")][0] == 3  # the grader runs its own checks, not the student's cells
    assert got[("editor", "demo.q2")][0] == 0 and "deleted" in got[("editor", "demo.q2")][2]
    for who in ("notjson", "empty"):
        assert got[(who, "demo.q1")][0] == 0 and "not a readable notebook" in got[(who, "demo.q1")][2]
    feedback = (tmp_path / "out" / "feedback" / "ada.md").read_text()
    assert "5/5 points" in feedback
    assert "2/5 points" in (tmp_path / "out" / "feedback" / "looper.md").read_text()


@pytest.mark.slow
def test_hidden_tests_can_fail(course, tmp_path):
    subs = tmp_path / "subs"
    sneaky = list(CELLS)  # right on the visible random inputs (all >= -100), wrong on -7 only
    sneaky[1] = "# EXERCISE demo.q1\ndef double(x):\n    return 2 * x if x != -7 else 0"
    submit(subs, "sneaky", sneaky)
    rows = list(csv.DictReader(open(nbtools.grade_class(subs, course, tmp_path / "out", timeout=20))))
    q1 = next(r for r in rows if r["exercise"] == "demo.q1")
    assert q1["points"] == "0" and "hidden tests failed" in q1["message"]
