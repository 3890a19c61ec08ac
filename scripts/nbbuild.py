"""Tiny helpers for the notebook builder scripts (scripts/make_nbNN.py): cells from plain strings."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def md(src: str):
    return nbformat.v4.new_markdown_cell(textwrap.dedent(src).strip("\n"))


def code(src: str):
    return nbformat.v4.new_code_cell(textwrap.dedent(src).strip("\n"))


def write(cells: list, name: str) -> Path:
    """Write notebooks/<name> (no outputs), with the usual Python 3 kernel metadata."""
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    path = ROOT / "notebooks" / name
    path.parent.mkdir(exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, str(path))
    print(f"wrote {path.relative_to(ROOT)} ({len(cells)} cells)", file=sys.stderr)
    return path
