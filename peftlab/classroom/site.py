"""The static site: every notebook, executed, as an HTML page a reader without a kernel can read (all plots embedded).

    python -m peftlab.classroom.site [--fast] [--src notebooks] [--out build/site] [--reuse build/workbook] [--fresh]

One page per notebook (`build/site/NN_topic.html`) plus `build/site/index.html` linking them. Figures are embedded in
the pages as base64 PNGs (markdown images too), so the folder can be copied anywhere or opened from disk.

Notebooks are executed headless with nbclient, in class mode (`--fast`: PEFTLAB_FAST=1, a quick smoke build).
Executing twice is avoided: an executed copy is reused when its cells are exactly today's notebook, it was run in the
same mode, and it is newer than every file in peftlab/ and docs/results/. Candidates are this tool's own copies in
`<out>/_executed/` and the folders given with `--reuse` (`make workbook`'s build/workbook: its mode is read from the
"class mode" / "fast mode" line that each notebook's first cell prints; a copy whose mode cannot be told is rerun).

Widgets need a live kernel, so they are not put on the page: a progress bar becomes its final text line, any other
widget (a slider) a one-line note; the slider cell's static figure (docs/AUTHORING.md) is what the reader sees.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
META = "peftlab_site"  # notebook metadata this tool writes on its executed copies: {"fast": bool}
# a code cell that builds a slider: an ipywidgets slider class, or interact/interactive(...), which make sliders
# from their keyword arguments
# (tests/test_lab_widgets.py moves every slider of these notebooks in a real browser)
SLIDER = re.compile(
    r"\b(?:Int|Float|FloatLog|IntRange|FloatRange|Selection|SelectionRange)Slider\b"
    r"|\binteract(?:ive|_manual)?\s*\(|@interact(?:_manual)?\b"
)
WIDGET_NOTE = (
    '<p style="color:#555;font-style:italic;margin:0.3em 0">Interactive control: it needs a running kernel. '
    "Open this notebook in JupyterLab (<code>make lab</code>) to move it; this page shows its default view.</p>"
)


def slider_cells(nb) -> list[int]:
    """Indices of the code cells that create a slider."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and SLIDER.search(c.source)]


# -- which executed copy to use -------------------------------------------------------------------------------------
def _cells(nb) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nb.cells]


def mode_of(nb) -> bool | None:
    """True (fast) / False (class mode) / None (unknown) for an executed notebook."""
    if META in nb.metadata:
        return bool(nb.metadata[META].get("fast"))
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
        if "fast mode" in text:
            return True
        if "class mode" in text:
            return False
        return None  # only the first code cell says it
    return None


def _newest_input() -> float:
    """The newest modification time among the files an executed notebook's outputs depend on (besides itself)."""
    times = [
        p.stat().st_mtime
        for d in ("peftlab", "docs/results")
        for p in (ROOT / d).rglob("*")
        if p.is_file() and p.suffix != ".pyc"
    ]
    return max(times, default=0.0)


def _has_errors(nb) -> bool:
    return any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def find_executed(src_nb, name: str, fast: bool, dirs: list[Path], newer_than: float) -> Path | None:
    """The first executed copy of notebook `name` in `dirs` that is fresh and was run in the same mode."""
    for d in dirs:
        path = Path(d) / name
        if not path.is_file() or path.stat().st_mtime < newer_than:
            continue
        try:
            nb = nbformat.read(str(path), as_version=4)
        except Exception:  # a half-written or foreign file: not usable
            continue
        if _cells(nb) == _cells(src_nb) and mode_of(nb) is fast and not _has_errors(nb):
            return path
    return None


def execute(path: Path, fast: bool, timeout: int = 900):
    """Run notebook `path` headless (cwd: its folder) in class or fast mode; returns the executed notebook."""
    from nbclient import NotebookClient

    os.environ["PEFTLAB_FAST"] = "1" if fast else "0"  # the kernel inherits it
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nb.metadata[META] = {"fast": fast}
    return nb


# -- making the page static -----------------------------------------------------------------------------------------
def _text(value: str) -> str:
    return (
        html.unescape(re.sub(r"<[^>]+>", "", value or "")).replace("\xa0", " ").replace("\u2007", " ").strip()
    )


def _progress_line(model_id: str, state: dict) -> str | None:
    """A tqdm bar (HBox of HTML, FloatProgress, HTML) as the text line tqdm prints in a terminal."""
    box = state.get(model_id, {})
    if box.get("model_name") != "HBoxModel":
        return None
    kids = [state.get(ref.removeprefix("IPY_MODEL_"), {}) for ref in box.get("state", {}).get("children", [])]
    bars = [k for k in kids if k.get("model_name") in ("FloatProgressModel", "IntProgressModel")]
    if len(bars) != 1:
        return None
    bar = bars[0]["state"]
    frac = (bar.get("value") or 0) / (bar.get("max") or 1)
    texts = [_text(k.get("state", {}).get("value", "")) for k in kids if k.get("model_name") == "HTMLModel"]
    left, right = (texts + ["", ""])[:2]
    return f"{left}|{'█' * round(10 * frac)}{' ' * (10 - round(10 * frac))}| {right}".strip()


def make_static(nb):
    """Replace widget outputs with what a reader without a kernel can use, and drop the saved widget state."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        outputs = []
        for o in cell.get("outputs", []):
            view = o.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                outputs.append(o)
                continue
            line = _progress_line(view.get("model_id", ""), state)
            if line is not None:
                outputs.append(nbformat.v4.new_output("stream", name="stderr", text=line + "\n"))
            elif not any(WIDGET_NOTE in x.get("data", {}).get("text/html", "") for x in outputs):
                outputs.append(nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE}))
        cell.outputs = outputs
    nb.metadata.pop("widgets", None)
    return nb


# -- pages ----------------------------------------------------------------------------------------------------------
def title_of(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return fallback


def export(nb, src_dir: Path, title: str, banner: str) -> str:
    from nbconvert import HTMLExporter

    nb = make_static(nbformat.from_dict(nb))
    nb.cells.insert(0, nbformat.v4.new_markdown_cell(banner))
    nb.metadata["title"] = title
    exporter = HTMLExporter(template_name="lab", embed_images=True)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"path": str(src_dir), "name": title}})
    return body


def _index(entries: list[tuple[str, str, str]], mode: str) -> str:
    rows = "\n".join(
        f'<li><a href="{html.escape(page)}">{html.escape(name)}</a> — {html.escape(title)}</li>'
        for name, title, page in entries
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>peftlab workbook</title>
<style>body{{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;line-height:1.5}}
li{{margin:0.3em 0}}</style></head>
<body><h1>peftlab — a workbook on parameter-efficient fine-tuning</h1>
<p>Every notebook executed ({html.escape(mode)}, {time.strftime("%Y-%m-%d")}), with all its figures.
Sliders need a running kernel: <code>make lab</code> opens the notebooks in JupyterLab.
These are the instructor copies: solutions and hidden tests are shown.</p>
<ol>
{rows}
</ol></body></html>
"""


def build_site(
    src: Path, out: Path, fast: bool = False, reuse: list[Path] | None = None, fresh: bool = False
) -> list[Path]:
    """Write one page per notebook of `src` and an index into `out`; returns the pages. Raises if a notebook fails."""
    from .nbtools import write_atomic

    src, out = Path(src), Path(out)
    cache = out / "_executed"
    mode = "fast mode, PEFTLAB_FAST=1" if fast else "class mode"
    newest = _newest_input()
    entries, pages, failed = [], [], []
    for path in sorted(src.glob("[0-9][0-9]_*.ipynb")):
        src_nb = nbformat.read(str(path), as_version=4)
        found = None if fresh else find_executed(src_nb, path.name, fast, [cache, *(reuse or [])], newest)
        start = time.time()
        if found is not None:
            nb = nbformat.read(str(found), as_version=4)
            print(f"{path.name}: reusing {found}", flush=True)
        else:
            print(f"{path.name}: executing ({mode}) ...", flush=True)
            try:
                nb = execute(path, fast)
            except Exception as e:  # CellExecutionError, timeout, dead kernel: say which notebook, go on
                failed.append(
                    f"{path.name}: {str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)}"
                )
                print(f"  FAILED: {failed[-1]}", flush=True)
                continue
            write_atomic(nb, cache / path.name)
        title = title_of(nb, path.stem)
        banner = (
            f"[← all notebooks](index.html) · `{path.name}`, executed in {mode} on {time.strftime('%Y-%m-%d')}. "
            "Sliders need a running kernel (`make lab`); each shows its default view here."
        )
        page = out / f"{path.stem}.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(export(nb, path.parent, title, banner), encoding="utf-8")
        entries.append((path.stem, title, page.name))
        pages.append(page)
        print(f"  -> {page} ({time.time() - start:.0f} s)", flush=True)
    (out / "index.html").write_text(_index(entries, mode), encoding="utf-8")
    if failed:
        raise RuntimeError("notebooks that did not run:\n  " + "\n  ".join(failed))
    return pages


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m peftlab.classroom.site", description=__doc__.split("\n")[0])
    p.add_argument("--src", type=Path, default=ROOT / "notebooks", help="folder of NN_topic.ipynb notebooks")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "site")
    p.add_argument(
        "--fast", action="store_true", help="PEFTLAB_FAST=1: a quick smoke build (default: class mode)"
    )
    p.add_argument(
        "--reuse",
        type=Path,
        action="append",
        default=[],
        help="a folder of executed copies to reuse when fresh (e.g. build/workbook); repeatable",
    )
    p.add_argument("--fresh", action="store_true", help="execute every notebook, reuse nothing")
    a = p.parse_args(argv)
    start = time.time()
    try:
        pages = build_site(a.src, a.out, fast=a.fast, reuse=a.reuse, fresh=a.fresh)
    except RuntimeError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"wrote {len(pages)} pages and {a.out / 'index.html'} in {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
