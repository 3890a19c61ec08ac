"""Exercises: student copies, in-notebook checks, and a batch grader that students cannot cheat.

The tamper suite grades one small class (a synthetic three-exercise notebook, `tests/fixtures/demo_exercises.py`)
in which every submission tries one trick or fault. Each cheat must score 0 on what it cheats, every legitimate
answer in the same notebook must still score, and the gradebook and feedback must name the cause.
"""

import csv
import shutil
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from peftlab.classroom import grading, nbtools
from peftlab.classroom.grading import EXERCISES, evaluate

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
import demo_exercises  # noqa: E402,F401  (registers demo.q1-q3 in this process too)

CELLS = [
    "import demo_exercises\nfrom peftlab.classroom.grading import check",
    "# EXERCISE demo.q1\ndef double(x):\n    # BEGIN SOLUTION\n    y = 2 * x\n    return y\n    # END SOLUTION",
    'check("demo.q1")',
    "# HIDDEN TESTS demo.q1\nassert double(-7) == -14",
    "# EXERCISE demo.q2\n# BEGIN SOLUTION\nanswer = 6 * 7\n# END SOLUTION",
    'check("demo.q2")',
    "offset = 0  # an instructor cell between two exercises",
    "# EXERCISE demo.q3\nimport math\n\n\ndef choose(n, k):\n    # BEGIN SOLUTION\n    return math.comb(n, k)\n    # END SOLUTION",
    'check("demo.q3")',
    'print("reached the end")',
]
SOLVED = {
    "demo.q1": "# EXERCISE demo.q1\ndef double(x):\n    return x * 2",
    "demo.q2": "# EXERCISE demo.q2\nanswer = 42",
    "demo.q3": "# EXERCISE demo.q3\nimport math\n\n\ndef choose(n, k):\n    return math.comb(n, k)",
}
FULL = {"demo.q1": 3, "demo.q2": 2, "demo.q3": 4}
TIMEOUT = 8  # seconds per cell in the suite


def notebook(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    inst = tmp_path_factory.mktemp("instructor")
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
    assert [nbtools.exercise_id(c) for c in student.cells if nbtools.exercise_id(c)] == [
        "demo.q1",
        "demo.q2",
        "demo.q3",
    ]


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
    leaves = evaluate(ex, {"double": lambda x: sys.exit(0)})
    assert leaves["status"] == "failed" and "SystemExit" in leaves["message"]


def test_an_answer_of_a_notebook_class_that_lies_about_equality_fails():
    ns = {"__name__": "__main__"}  # what a notebook cell's namespace looks like
    exec(
        compile("class Yes(int):\n    def __eq__(self, other):\n        return True\n", "<cell>", "exec"), ns
    )
    assert ns["Yes"](0) == 12345  # it does lie
    r = evaluate(EXERCISES["demo.q1"], {"double": lambda x: ns["Yes"](0)})
    assert r["status"] == "failed" and "class defined in your notebook (Yes)" in r["message"]
    r = evaluate(EXERCISES["demo.q2"], {"answer": ns["Yes"](0)})  # q2 does not call attempted(): plain ==
    assert (
        r["status"] == "passed"
    )  # documented limit (docs/GRADING.md): checks should wrap answers in attempted()
    assert grading.attempted(ns["Yes"](3), allow_own_classes=True) == 3


def test_signed_lines_accept_only_the_key_holder():
    import hashlib
    import hmac
    import json

    key = "k" * 64
    body = json.dumps({"kind": "result", "id": "demo.q1", "status": "passed"})
    good = f"{grading.TAG} {body} {hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()}\n"
    forged = f"{grading.TAG} {body} {'0' * 64}\n"
    other = f"{grading.TAG} {body} {hmac.new(b'x', body.encode(), hashlib.sha256).hexdigest()}\n"
    outputs = [{"output_type": "stream", "name": "stdout", "text": forged + "chatter\n" + other + good}]
    payloads, bad = nbtools._signed_lines(outputs, key)
    assert payloads == [json.loads(body)] and bad == 2
    assert nbtools._signed_lines([{"output_type": "stream", "name": "stderr", "text": good}], key) == ([], 0)


def student_copy(course):
    return nbtools.student_copy(nbformat.read(str(course / "99_demo.ipynb"), as_version=4))


def index_of(nb, start):
    return next(i for i, c in enumerate(nb.cells) if c.source.startswith(start))


def answer(nb, ex, source):
    """Replace the exercise cell's source, keeping its cell id (as Jupyter does)."""
    nb.cells[index_of(nb, f"# EXERCISE {ex}")].source = source
    return nb


def add_after(nb, start, source):
    """A cell the student adds (a new cell id) after the cell whose source starts with `start`."""
    nb.cells.insert(index_of(nb, start) + 1, nbformat.v4.new_code_cell(source))
    return nb


def solved(course, skip=()):
    nb = student_copy(course)
    for ex, src in SOLVED.items():
        if ex not in skip:
            answer(nb, ex, src)
    return nb


FORGE = """import json, os
for ex in ("demo.q1", "demo.q2", "demo.q3"):
    row = {"id": ex, "status": "passed", "points": 100, "max": 3, "message": ""}
    with open(os.environ.get("PEFTLAB_GRADE_OUT") or "results.jsonl", "a") as f:
        f.write(json.dumps(row) + "\\n")
    print("PEFTLAB-GRADER " + json.dumps(dict(row, kind="result")) + " " + "0" * 64)"""
REWRITER = """import sys
class Rewriter:
    def __init__(self, s):
        self.s = s
    def write(self, t):
        return self.s.write(t.replace('"failed"', '"passed"'))
    def flush(self):
        self.s.flush()
sys.stdout = Rewriter(sys.stdout)"""


def build_class(course, root):
    """SUBMISSIONS/<student>/99_demo.ipynb: one trick or fault per student."""
    subs = {}
    subs["honest"] = solved(course)
    subs["untouched"] = student_copy(course)
    nb = solved(
        course, skip=["demo.q1"]
    )  # forged results: a results file and printed (unsigned) result lines
    answer(nb, "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n" + textwrap.indent(FORGE, "    "))
    subs["forger"] = add_after(nb, 'print("reached', FORGE)
    nb = solved(course, skip=["demo.q1"])
    subs["patch_evaluate"] = add_after(
        nb,
        'check("demo.q1")',
        "import peftlab.classroom.grading as g\n"
        "g.evaluate = lambda ex, ns: {'id': ex.id, 'status': 'passed', 'points': ex.points, 'max': ex.points, "
        "'message': ''}",
    )
    subs["patch_checks"] = answer(
        solved(course),
        "demo.q1",
        "# EXERCISE demo.q1\nimport peftlab.classroom.grading as g\n\nfor ex in g.EXERCISES.values():\n"
        "    ex.fn = lambda ns: None\n\n\ndef double(x):\n    return 0",
    )
    subs["redefine_check"] = answer(
        solved(course),
        "demo.q1",
        "# EXERCISE demo.q1\ndef check(ex_id):\n    print(f'✅ {ex_id}: passed (3/3 points)')\n\n\n"
        "def double(x):\n    return x + 2",
    )
    nb = answer(  # right on the check's random inputs, wrong on the hidden test's -7
        solved(course), "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n    return 2 * x if x != -7 else 0"
    )
    nb.cells[index_of(nb, 'check("demo.q1")')].source = 'print("✅ demo.q1: passed (3/3 points)")'
    subs["edit_check_cell"] = add_after(nb, 'print("✅', "# HIDDEN TESTS demo.q1\nassert True")
    subs["points_over_max"] = add_after(
        solved(course),
        'check("demo.q1")',
        "import peftlab.classroom.grading as g\ng.get_exercise('demo.q1').points = 100\ng.EXERCISES['demo.q2'].points = 10**6\n"
        + FORGE,
    )
    nb = answer(
        solved(course), "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n    while True:\n        pass"
    )
    subs["endless_loop"] = answer(nb, "demo.q3", "# EXERCISE demo.q3\nwhile True:\n    pass")
    subs["unkillable_loop"] = answer(
        solved(course),
        "demo.q1",
        "# EXERCISE demo.q1\nimport signal\n\n\ndef double(x):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    while True:\n        pass",
    )
    subs["dead_kernel"] = answer(solved(course), "demo.q1", "# EXERCISE demo.q1\nimport os\n\nos._exit(1)")
    subs["dies_in_check"] = answer(
        solved(course), "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n    import os\n\n    os._exit(3)"
    )
    subs["raiser"] = answer(solved(course), "demo.q1", "# EXERCISE demo.q1\nraise RuntimeError('boom')")
    subs["patch_library"] = answer(
        solved(course),
        "demo.q3",
        "# EXERCISE demo.q3\nimport math\n\nmath.isclose = lambda *a, **k: True\n\n\ndef choose(n, k):\n    return -1",
    )
    subs["patch_during_check"] = answer(
        solved(course),
        "demo.q3",
        "# EXERCISE demo.q3\nimport math\n\n\ndef choose(n, k):\n    math.isclose = lambda *a, **k: True\n    return -1",
    )
    subs["thread_patcher"] = answer(
        solved(course),
        "demo.q3",
        "# EXERCISE demo.q3\nimport math, threading, time\n\n\ndef keep_patching():\n    while True:\n"
        "        math.isclose = lambda *a, **k: True\n        time.sleep(0.001)\n\n\n"
        "threading.Thread(target=keep_patching, daemon=True).start()\n\n\ndef choose(n, k):\n    return -1",
    )
    subs["lying_object"] = answer(
        solved(course),
        "demo.q1",
        "# EXERCISE demo.q1\nclass Yes(int):\n    def __eq__(self, other):\n        return True\n\n"
        "    __hash__ = int.__hash__\n\n\ndef double(x):\n    return Yes(0)",
    )
    nb = answer(solved(course), "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n    return 0")
    subs["stdout_rewriter"] = add_after(nb, "# EXERCISE demo.q1", REWRITER)
    subs["ipython_hook"] = answer(
        solved(course),
        "demo.q1",
        "# EXERCISE demo.q1\ndef spy(info):\n    pass\n\n\nget_ipython().events.register('pre_run_cell', spy)\n\n\n"
        "def double(x):\n    return 2 * x",
    )
    nb = solved(course)
    del nb.cells[index_of(nb, "# EXERCISE demo.q2")]
    subs["deleted_exercise"] = nb
    nb = solved(course)
    nb.cells[index_of(nb, "# EXERCISE demo.q2")].source = "# my answer\nanswer = 42"  # same cell id
    nb.cells[index_of(nb, "offset = 0")].source = "raise RuntimeError('an edited instructor cell ran')"
    nb = add_after(nb, "import demo_exercises", "def twice(x):\n    return x + x")
    subs["edits_and_helpers"] = answer(
        nb, "demo.q1", "# EXERCISE demo.q1\ndef double(x):\n    return twice(x)"
    )
    for name, nb in subs.items():
        (root / name).mkdir(parents=True)
        nbformat.write(nb, str(root / name / "99_demo.ipynb"))
    for name, raw in {"not_json": "{ this is not json", "empty": ""}.items():
        (root / name).mkdir()
        (root / name / "99_demo.ipynb").write_text(raw)
    (
        root / "renamed"
    ).mkdir()  # handed in under another name: the course notebook is missing, this one unknown
    nbformat.write(solved(course), str(root / "renamed" / "99_dem0.ipynb"))
    return root


@pytest.fixture(scope="module")
def graded(course, tmp_path_factory):
    root = build_class(course, tmp_path_factory.mktemp("subs"))
    out = tmp_path_factory.mktemp("grades")
    book = nbtools.grade_class(root, course, out, timeout=TIMEOUT, workers=2, one_per_notebook=False)
    rows = list(csv.DictReader(open(book)))
    got = {(r["student"], r["exercise"]): (int(r["points"]), r["status"], r["message"]) for r in rows}
    feedback = {p.stem: p.read_text() for p in (out / "feedback").glob("*.md")}
    return got, feedback, rows


def ok(*exs):
    return {ex: (FULL[ex], "passed", "") for ex in exs}


# student -> {exercise: (points, status, text in the message)}, [texts the feedback must contain]
CASES = {
    "honest": (
        ok("demo.q1", "demo.q2", "demo.q3"),
        ["9/9 points", "stops each notebook after its last check"],
    ),
    "untouched": ({ex: (0, "not attempted", "") for ex in FULL}, ["0/9 points"]),
    "forger": (
        {"demo.q1": (0, "not attempted", ""), **ok("demo.q2", "demo.q3")},
        ["did not sign (forged?)", "imitates the grader's result line", "after the last check (not run"],
    ),
    "patch_evaluate": (
        {"demo.q1": (0, "not attempted", ""), **ok("demo.q2", "demo.q3")},
        ["refers to the grader"],
    ),
    "patch_checks": ({"demo.q1": (0, "failed", "double("), **ok("demo.q2", "demo.q3")}, []),
    "redefine_check": (
        {"demo.q1": (0, "failed", "double("), **ok("demo.q2", "demo.q3")},
        ["redefines check()"],
    ),
    "edit_check_cell": (
        {
            "demo.q1": (0, "failed", "hidden tests failed (hidden test line 1): AssertionError"),
            **ok("demo.q2", "demo.q3"),
        },
        ["is the check cell of demo.q1, edited: your edit was not run", "'# HIDDEN TESTS': it was not run"],
    ),
    "points_over_max": (ok("demo.q1", "demo.q2", "demo.q3"), ["9/9 points"]),
    "endless_loop": (
        {
            "demo.q1": (0, "timeout", f"took longer than {TIMEOUT} s"),
            "demo.q2": (2, "passed", ""),
            "demo.q3": (0, "timeout", f"did not finish within {TIMEOUT} s"),
        },
        ["2/9 points"],
    ),
    "unkillable_loop": (
        {"demo.q1": (0, "timeout", "could not be interrupted"), **ok("demo.q2", "demo.q3")},
        [
            "the grader's check of demo.q1 ran past 8 s and did not stop when interrupted",
            "ran again in a new kernel",
        ],
    ),
    "dead_kernel": (
        {
            "demo.q1": (0, "failed", 'the kernel died in cell 2 ("# EXERCISE demo.q1") (exit code 1)'),
            **ok("demo.q2", "demo.q3"),
        },
        ["exit code 1", "ran again in a new kernel without that cell"],
    ),
    "dies_in_check": (
        {"demo.q1": (0, "failed", "exit code 3"), **ok("demo.q2", "demo.q3")},
        ["the kernel died in the grader's check of demo.q1 (exit code 3)"],
    ),
    "raiser": ({"demo.q1": (0, "failed", "raised RuntimeError: boom"), **ok("demo.q2", "demo.q3")}, []),
    "patch_library": (
        {"demo.q3": (0, "failed", "choose("), **ok("demo.q1", "demo.q2")},
        ["replaced math.isclose", "put the originals back"],
    ),
    "patch_during_check": (
        {
            "demo.q3": (0, "failed", "replaced math.isclose while it was being checked"),
            **ok("demo.q1", "demo.q2"),
        },
        [],
    ),
    "thread_patcher": (
        {
            "demo.q3": (0, "not graded", "a thread your notebook started is running"),
            **ok("demo.q1", "demo.q2"),
        },
        [],
    ),
    "lying_object": (
        {"demo.q1": (0, "failed", "class defined in your notebook"), **ok("demo.q2", "demo.q3")},
        [],
    ),
    "stdout_rewriter": (
        {"demo.q1": (0, "failed", "double("), **ok("demo.q2", "demo.q3")},
        ["sys.stdout", "put the originals back"],
    ),
    "ipython_hook": (
        {"demo.q1": (0, "not graded", "hooked into IPython"), **ok("demo.q2", "demo.q3")},
        ["uses IPython's internals"],
    ),
    "deleted_exercise": (
        {"demo.q2": (0, "missing", "no cell starting with '# EXERCISE demo.q2'"), **ok("demo.q1", "demo.q3")},
        [],
    ),
    "edits_and_helpers": (
        ok("demo.q1", "demo.q2", "demo.q3"),
        ["matched by its cell id", "edited: your edit was not run", "cells you added", '"def twice(x):"'],
    ),
    "not_json": ({ex: (0, "not graded", "not a readable notebook") for ex in FULL}, []),
    "empty": ({ex: (0, "not graded", "not a readable notebook") for ex in FULL}, []),
    "renamed": (
        {ex: (0, "missing", "was not submitted") for ex in FULL},
        ["99_dem0.ipynb is not one of the course notebooks (did you mean 99_demo.ipynb?)"],
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("student", list(CASES))
def test_tamper_suite(graded, student):
    got, feedback, _ = graded
    want, texts = CASES[student]
    for ex, (points, status, text) in want.items():
        p, s, message = got[(student, ex)]
        assert (p, s) == (points, status), (student, ex, got[(student, ex)])
        assert text in message, (student, ex, message)
    for text in texts:
        assert text in feedback[student], (student, text, feedback[student])


@pytest.mark.slow
def test_gradebook_is_clamped_to_a_closed_set(graded):
    _, feedback, rows = graded
    assert {r["student"] for r in rows} == set(CASES)
    for r in rows:
        assert r["status"] in nbtools.STATUSES, r
        assert 0 <= int(r["points"]) <= int(r["max"]), r
        if r["exercise"] in FULL:
            assert int(r["max"]) == FULL[r["exercise"]], r  # the instructor's points, whatever a cell set
    assert ("renamed", "-") in {(r["student"], r["exercise"]) for r in rows}
    for student in ("honest", "points_over_max", "untouched"):
        assert "Problems:" not in feedback[student], feedback[student]
    assert "an edited instructor cell ran" not in feedback["edits_and_helpers"]


def test_plan_runs_the_instructors_cells_and_the_students_additions(course):
    ref = nbformat.read(str(course / "99_demo.ipynb"), as_version=4)
    sub = solved(course)
    sub.cells[
        index_of(sub, "# EXERCISE demo.q3")
    ].id = "pasted-elsewhere"  # a new id: matched by its first line
    sub.cells[index_of(sub, 'check("demo.q2")')].source = "pass"
    add_after(sub, 'check("demo.q1")', "helper = 1")
    plan = nbtools.build_plan(ref, sub)
    roles = [(pc.role, pc.ex) for pc in plan.cells]
    assert roles[0] == ("baseline", None) and roles.count(("grader", "demo.q1")) == 1
    sources = [pc.source for pc in plan.cells]
    assert "pass" not in sources  # the student's edit of a check cell does not run
    assert SOLVED["demo.q3"] in sources and SOLVED["demo.q1"] in sources
    q1 = roles.index(("grader", "demo.q1"))
    assert (
        sources[q1 - 1] == SOLVED["demo.q1"] and sources[q1 + 1] == "helper = 1"
    )  # in the check cell's place
    assert 'check("demo.q1")' not in sources  # a check cell that only calls check() is not run twice
    assert not any("HIDDEN TESTS" in s for s in sources[1:] if not s.startswith(nbtools.GRADER_HEAD))
    assert any("check cell of demo.q2, edited" in n for n in plan.notes)
    assert any("cells you added" in n and "helper = 1" in n for n in plan.notes)
    keys = [pc.key for pc in plan.cells if pc.role in ("baseline", "grader")]
    assert len(set(keys)) == len(keys) == 4
    assert all(pc.key in pc.source for pc in plan.cells if pc.role == "grader")
    assert not any(k in pc.source for k in keys for pc in plan.cells if pc.role not in ("baseline", "grader"))


# -- the same tricks on a real notebook, for `make grade` (not run by pytest: about 20 s per submission) ----------
def build_rank_class(root, instructor=Path(__file__).parents[1] / "notebooks" / "01_rank.ipynb"):
    """SUBMISSIONS/<student>/01_rank.ipynb, one trick or fault each, aimed at nb01.q1 (rank_of) or nb01.q2
    (low_rank_approx); every other exercise holds the instructor's answer, which must still score.

        python tests/test_grading.py build/tamper && make grade SUBMISSIONS=build/tamper
    """
    root, name = Path(root), instructor.name
    ref = nbformat.read(str(instructor), as_version=4)

    def solved_rank():
        nb = nbtools.student_copy(ref)
        for c in nb.cells:
            ex = nbtools.exercise_id(c)
            if ex:
                c.source = next(r.source for r in ref.cells if nbtools.exercise_id(r) == ex)
        return nb

    def q(nb, ex, source):
        return answer(nb, ex, f"# EXERCISE {ex}\n{source}")

    wrong_rank = "def rank_of(M, tol=1e-6):\n    return 0"
    sleep_loop = "import time\n\nwhile True:\n    time.sleep(1)"  # an endless loop that spares the CPU
    subs = {
        "honest": solved_rank(),
        "untouched": nbtools.student_copy(ref),
        "forger": add_after(q(solved_rank(), "nb01.q1", wrong_rank), "# EXERCISE nb01.q4", FORGE),
        "patch_evaluate": add_after(
            q(solved_rank(), "nb01.q1", wrong_rank),
            "# EXERCISE nb01.q1",
            "import peftlab.classroom.grading as g\n"
            "g.evaluate = lambda ex, ns: {'id': ex.id, 'status': 'passed', 'points': ex.points, 'max': ex.points, "
            "'message': ''}",
        ),
        "patch_checks": q(
            solved_rank(),
            "nb01.q1",
            "import peftlab.classroom.grading as g\n\nfor ex in g.EXERCISES.values():\n    ex.fn = lambda ns: None\n"
            "rank_of = lambda M, tol=1e-6: 0",
        ),
        "redefine_check": q(
            solved_rank(),
            "nb01.q1",
            "def check(ex_id):\n    print(f'✅ {ex_id}: passed (2/2 points)')\n\n\n" + wrong_rank,
        ),
        "points_over_max": add_after(
            solved_rank(),
            "# EXERCISE nb01.q1",
            "import peftlab.classroom.grading as g\ng.get_exercise('nb01.q1').points = 100\n" + FORGE,
        ),
        "endless_loop": q(solved_rank(), "nb01.q1", sleep_loop),
        "unkillable_loop": q(
            solved_rank(),
            "nb01.q1",
            "import signal, time\n\n\ndef rank_of(M, tol=1e-6):\n    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "    while True:\n        time.sleep(1)",
        ),
        "dead_kernel": q(solved_rank(), "nb01.q1", "import os\n\nos._exit(1)"),
        "patch_library": q(
            solved_rank(),
            "nb01.q2",
            "torch.allclose = lambda *a, **k: True\n\n\ndef low_rank_approx(W, r):\n    return W",
        ),
        "patch_during_check": q(
            solved_rank(),
            "nb01.q2",
            "def low_rank_approx(W, r):\n    torch.allclose = lambda *a, **k: True\n    return W",
        ),
        "lying_object": q(
            solved_rank(),
            "nb01.q1",
            "class Yes(int):\n    def __eq__(self, other):\n        return True\n\n    __hash__ = int.__hash__\n\n\n"
            "def rank_of(M, tol=1e-6):\n    return Yes(0)",
        ),
        "stdout_rewriter": add_after(q(solved_rank(), "nb01.q1", wrong_rank), "# EXERCISE nb01.q1", REWRITER),
        "ipython_hook": q(
            solved_rank(),
            "nb01.q1",
            "get_ipython().events.register('pre_run_cell', lambda info: None)\n\n\n"
            "def rank_of(M, tol=1e-6):\n    S = torch.linalg.svdvals(M)\n    return int((S > tol * S[0]).sum()) if "
            "S.numel() and S[0] > 0 else 0",
        ),
        "raiser": q(solved_rank(), "nb01.q2", "raise RuntimeError('boom')"),
    }
    nb = q(solved_rank(), "nb01.q1", wrong_rank)
    nb.cells[index_of(nb, 'check("nb01.q1")')].source = 'print("✅ nb01.q1: passed (2/2 points)")'
    subs["edit_check_cell"] = add_after(nb, 'print("✅', "# HIDDEN TESTS nb01.q1\nassert True")
    nb = solved_rank()
    del nb.cells[index_of(nb, "# EXERCISE nb01.q2")]
    subs["deleted_exercise"] = nb
    for student, nb in subs.items():
        (root / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(root / student / name))
    for student, raw in {"not_json": "{ this is not json", "empty": ""}.items():
        (root / student).mkdir(parents=True, exist_ok=True)
        (root / student / name).write_text(raw)
    (root / "renamed").mkdir(parents=True, exist_ok=True)
    nbformat.write(solved_rank(), str(root / "renamed" / name.replace("_", "-", 1)))
    return root


if __name__ == "__main__":
    print(f"wrote {build_rank_class(sys.argv[1] if len(sys.argv) > 1 else 'build/tamper')}")
