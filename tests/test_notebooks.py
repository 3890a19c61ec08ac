"""Every notebook runs headless (fast mode): the instructor copy scores full marks with no cell erroring, and the
generated student copy, untouched, scores 0 and still runs to the end."""

from pathlib import Path

import nbformat
import pytest

from peftlab.classroom import nbtools

NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_topic.ipynb"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_instructor_copy_runs_and_scores_full_marks(path):
    nb = nbformat.read(str(path), as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
        "commit notebooks without outputs (`make sync` strips them)"
    )
    res = nbtools.grade_notebook(path, path, timeout=600)
    assert res["errors"] == [], res["errors"]
    for r in res["results"]:
        assert r["points"] == r["max"], r
    assert 2 <= len(res["results"]) <= 4, "each notebook has 2-4 exercises"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_untouched_student_copy_scores_zero_and_runs_to_the_end(path, tmp_path):
    student = tmp_path / path.name
    nbformat.write(nbtools.student_copy(nbformat.read(str(path), as_version=4)), str(student))
    res = nbtools.grade_notebook(student, path, timeout=600)
    assert res["errors"] == [], res["errors"]
    for r in res["results"]:
        assert (r["points"], r["status"]) == (0, "not attempted"), r
