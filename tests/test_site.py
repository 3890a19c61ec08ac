"""`make site` (peftlab.classroom.site): every notebook's page exists and holds its figures, the index links every page, a slider
cell leaves a static figure for readers without a kernel; widgets are made static; executed copies are reused only
when they match the notebook and the mode."""

from __future__ import annotations

import base64
import os
import re
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from peftlab.classroom import site

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IMG = re.compile(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", flags=re.I)


def _figures(nb) -> int:
    """Image outputs (PNG/JPEG: the exporter writes an <img> for each) in an executed notebook."""
    return sum(
        1
        for c in nb.cells
        for o in c.get("outputs", [])
        if {"image/png", "image/jpeg"} & set(o.get("data", {}))
    )


@pytest.fixture(scope="module")
def built():
    """The site in fast mode, executed from scratch into a temporary folder (own temp dir: not pruned by another
    pytest run while this one is going)."""
    with tempfile.TemporaryDirectory(prefix="peftlab-site-") as tmp:
        out = Path(tmp) / "site"
        start = time.time()
        rc = site.main(["--fast", "--fresh", "--out", str(out)])
        print(f"site built in {time.time() - start:.0f} s")
        assert rc == 0, "python -m peftlab.classroom.site --fast failed (see the output above)"
        yield out


@pytest.mark.slow
def test_every_notebook_has_a_page_with_its_figures(built):
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        page = built / f"{path.stem}.html"
        assert page.is_file(), f"no page for {path.name}"
        text = page.read_text(encoding="utf-8")
        executed = nbformat.read(str(built / "_executed" / path.name), as_version=4)
        srcs = IMG.findall(text)
        embedded = [s for s in srcs if s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))]
        assert len(embedded) >= _figures(executed), (
            f"{page.name} holds {len(embedded)} embedded images; the executed notebook has {_figures(executed)}"
        )
        for src in embedded:
            raw = base64.b64decode(src.split(",", 1)[1])
            assert raw[:8] == b"\x89PNG\r\n\x1a\n" or raw[:2] == b"\xff\xd8", (
                f"{page.name}: an image is not PNG/JPEG"
            )
        for src in srcs:  # any image that is a file must be there
            if not src.startswith(("data:", "http://", "https://")):
                assert (page.parent / src).is_file(), f"{page.name} points at a missing image {src}"
        assert "widget-view+json" not in text and "Error displaying widget" not in text, page.name
        assert "Traceback (most recent call last)" not in text, f"{page.name} shows a traceback"


@pytest.mark.slow
def test_index_links_every_page(built):
    index = (built / "index.html").read_text(encoding="utf-8")
    links = set(re.findall(r"href=\"([^\"]+\.html)\"", index))
    assert links == {f"{p.stem}.html" for p in NOTEBOOKS}
    for link in links:
        assert (built / link).is_file()


@pytest.mark.slow
def test_slider_cells_leave_a_static_figure(built):
    """Headless there is no live slider: the slider cell must also draw its figure once itself (docs/AUTHORING.md)."""
    for path in NOTEBOOKS:
        executed = nbformat.read(str(built / "_executed" / path.name), as_version=4)
        for i in site.slider_cells(executed):
            outs = executed.cells[i].get("outputs", [])
            assert any("image/png" in o.get("data", {}) for o in outs), (
                f"{path.name} code cell {i} makes a slider but leaves no static figure in a headless run: "
                "draw the default view once (e.g. update(default); plt.show()) in the same cell"
            )


# -- fast checks of the pieces (no notebook executed) ---------------------------------------------------------------
def _notebook(first_print: str = "class mode"):
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 · A title\n\ntext"),
        nbformat.v4.new_code_cell('print("...")'),
    ]
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=first_print + "\n")]
    return nb


def test_mode_is_read_from_own_metadata_or_the_first_cell():
    assert site.mode_of(_notebook("class mode")) is False
    assert site.mode_of(_notebook("fast mode (CI smoke run)")) is True
    assert site.mode_of(_notebook("hello")) is None
    nb = _notebook("hello")
    nb.metadata[site.META] = {"fast": True}
    assert site.mode_of(nb) is True


def test_executed_copies_are_reused_only_when_fresh_and_same_mode(tmp_path):
    src = _notebook()
    d = tmp_path / "workbook"
    d.mkdir()
    nbformat.write(_notebook("class mode"), str(d / "99_x.ipynb"))
    now = time.time()
    os.utime(d / "99_x.ipynb", (now, now))
    assert site.find_executed(src, "99_x.ipynb", False, [d], newer_than=now - 10) == d / "99_x.ipynb"
    assert site.find_executed(src, "99_x.ipynb", True, [d], newer_than=now - 10) is None  # other mode
    assert (
        site.find_executed(src, "99_x.ipynb", False, [d], newer_than=now + 10) is None
    )  # package changed since
    changed = _notebook()
    changed.cells[0].source += " (edited)"
    assert site.find_executed(changed, "99_x.ipynb", False, [d], newer_than=now - 10) is None  # cells differ
    assert site.find_executed(src, "99_y.ipynb", False, [d], newer_than=now - 10) is None  # not there


def test_widgets_become_static():
    nb = _notebook()
    ids = {k: f"m{k}" for k in ("box", "left", "bar", "right", "vbox", "slider")}
    state = {
        ids["box"]: {
            "model_name": "HBoxModel",
            "state": {"children": [f"IPY_MODEL_{ids[k]}" for k in ("left", "bar", "right")]},
        },
        ids["left"]: {"model_name": "HTMLModel", "state": {"value": "train:\u2007100%"}},
        ids["bar"]: {"model_name": "FloatProgressModel", "state": {"value": 3.0, "max": 3.0}},
        ids["right"]: {"model_name": "HTMLModel", "state": {"value": "\u20073/3\u2007[00:02&lt;00:00]"}},
        ids["vbox"]: {"model_name": "VBoxModel", "state": {"children": [f"IPY_MODEL_{ids['slider']}"]}},
        ids["slider"]: {"model_name": "IntSliderModel", "state": {"value": 16}},
    }
    nb.metadata["widgets"] = {site.WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}

    def view(model):
        return nbformat.v4.new_output(
            "display_data", data={site.WIDGET_VIEW: {"model_id": ids[model]}, "text/plain": "..."}
        )

    png = nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"})
    nb.cells[1].outputs = [view("box"), view("vbox"), png]
    out = site.make_static(nb)
    kinds = [(o.output_type, sorted(o.get("data", {}))) for o in out.cells[1].outputs]
    assert kinds == [
        ("stream", []),
        ("display_data", ["text/html"]),
        ("display_data", ["image/png", "text/plain"]),
    ]
    assert out.cells[1].outputs[0].text == "train: 100%|██████████| 3/3 [00:02<00:00]\n"
    assert "widgets" not in out.metadata
    html = site.export(_notebook(), ROOT / "notebooks", "99 · A title", "[back](index.html)")
    assert 'href="index.html"' in html and "A title" in html


@pytest.mark.parametrize(
    "source, slider",
    [
        ("w = widgets.IntSlider(value=3)", True),
        ("s = FloatLogSlider(base=10)", True),
        ("interact(draw, r=(1, 64))", True),
        ("@interact\ndef draw(r=4): ...", True),
        ("ui = interactive(draw, r=(1, 8))", True),
        ("display(widgets.interactive_output(draw, {'r': s}))", False),
        ("print('an interactive plot')", False),
    ],
)
def test_slider_cells_are_found_by_their_code(source, slider):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("IntSlider in prose"), nbformat.v4.new_code_cell(source)]
    assert site.slider_cells(nb) == ([1] if slider else [])
