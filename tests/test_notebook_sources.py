"""One source per notebook: every notebooks/NN_topic.ipynb is paired (jupytext, percent format) with
notebooks/NN_topic.py, and the two hold the same cells. Fix a failure with `make sync` (docs/AUTHORING.md)."""

from pathlib import Path

import jupytext
import nbformat
import pytest
import tomllib

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PAIRS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def differences(ipynb: Path, script: Path) -> list[str]:
    """Where the notebook's cells and the script's cells differ (empty when the pair is in sync)."""
    a = [(c.cell_type, c.source) for c in nbformat.read(ipynb, as_version=4).cells]
    b = [(c.cell_type, c.source) for c in jupytext.read(script).cells]
    out = [
        f"cell {i}: {x[0]} {x[1][:60]!r} vs {y[0]} {y[1][:60]!r}"
        for i, (x, y) in enumerate(zip(a, b))
        if x != y
    ]
    if len(a) != len(b):
        out.append(f"{ipynb.name} has {len(a)} cells, {script.name} has {len(b)}")
    return out


def test_every_notebook_has_exactly_one_paired_script():
    assert len(PAIRS) >= 9
    scripts = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert scripts == PAIRS, (
        "each notebook needs NN_topic.py next to it, and no script may be left without one"
    )
    others = [p.name for p in NOTEBOOKS.iterdir() if p.suffix in {".md", ".Rmd", ".qmd", ".myst"}]
    assert others == [], f"a second text source for a notebook: {others}"
    config = tomllib.loads((NOTEBOOKS / "jupytext.toml").read_text())
    assert config["formats"] == "ipynb,py:percent"


@pytest.mark.parametrize("stem", PAIRS)
def test_pair_is_in_sync(stem):
    ipynb, script = NOTEBOOKS / f"{stem}.ipynb", NOTEBOOKS / f"{stem}.py"
    diff = differences(ipynb, script)
    assert diff == [], f"{stem}: .ipynb and .py differ; run `make sync`:\n" + "\n".join(diff)
    # the script is exactly what jupytext writes, so a sync never rewrites a reviewed file
    assert jupytext.writes(jupytext.read(ipynb), fmt="py:percent") == script.read_text(), (
        f"run `make sync` ({stem})"
    )


def test_an_edit_on_one_side_is_caught(tmp_path):
    stem = PAIRS[0]
    ipynb, script = tmp_path / f"{stem}.ipynb", tmp_path / f"{stem}.py"
    ipynb.write_bytes((NOTEBOOKS / f"{stem}.ipynb").read_bytes())
    text = (NOTEBOOKS / f"{stem}.py").read_text()
    script.write_text(text.replace("# %%\n", "# %%\nx = 1  # an instructor's edit\n", 1))
    assert any("an instructor's edit" in d for d in differences(ipynb, script))
    script.write_text(text + "\n# %%\nextra = 2\n")
    assert any("cells" in d for d in differences(ipynb, script))


def test_saving_in_jupyterlab_rewrites_the_script(tmp_path):
    """JupyterLab saves through jupytext's contents manager (its server extension comes with the package)."""
    from jupytext import TextFileContentsManager

    stem = PAIRS[0]
    for suffix in (".ipynb", ".py"):
        (tmp_path / f"{stem}{suffix}").write_bytes((NOTEBOOKS / f"{stem}{suffix}").read_bytes())
    (tmp_path / "jupytext.toml").write_bytes((NOTEBOOKS / "jupytext.toml").read_bytes())
    cm = TextFileContentsManager(root_dir=str(tmp_path))
    nb = cm.get(f"{stem}.ipynb")["content"]
    nb.cells[0].source += "\n\nA sentence typed in JupyterLab."
    cm.save({"type": "notebook", "content": nb}, f"{stem}.ipynb")
    assert "# A sentence typed in JupyterLab." in (tmp_path / f"{stem}.py").read_text()
    assert differences(tmp_path / f"{stem}.ipynb", tmp_path / f"{stem}.py") == []
