"""Small helpers the notebooks share: show package source, class vs fast mode, tidy output."""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path

FAST = os.environ.get("PEFTLAB_FAST", "0") == "1"  # CI sets it: fewer steps, same code path
ROOT = Path(__file__).resolve().parents[2]  # the repository


def start(name: str, seed: int | None = 0) -> Path:
    """A notebook's first line, `OUT = start("nb05")`: quiet library logs, seed torch (unless seed=None), make
    build/<name>/ (every file the notebook writes goes there, never elsewhere) and say which mode runs."""
    quiet()
    if seed is not None:
        import torch

        torch.manual_seed(seed)
    out = ROOT / "build" / name
    out.mkdir(parents=True, exist_ok=True)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    return out


def pick(class_mode, fast):
    """`pick(200, 20)`: the class-mode value, or the fast one when PEFTLAB_FAST=1 (CI)."""
    return fast if FAST else class_mode


def show(obj) -> None:
    """Print the source code of a peftlab function/class/method, so the notebook reads the real implementation."""
    try:
        src = inspect.getsource(obj)
    except (TypeError, OSError) as e:
        raise TypeError(
            f"show() needs a function, class or method defined in Python source; got {obj!r}"
        ) from e
    where = (
        f"{inspect.getsourcefile(obj).split('peftlab')[-1].lstrip('/')}" if inspect.getsourcefile(obj) else ""
    )
    try:
        from IPython.display import Code, display

        display(Code(src, language="python"))
    except ImportError:  # plain Python
        print(src)
    if where:
        print(f"(from peftlab/{where})")


def quiet() -> None:
    """Silence library chatter that would distract in class (transformers info logs, deprecation warnings)."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*gemm_4bit.*")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
    except ImportError:
        pass


def live_frontend() -> bool:
    """True in a kernel that a Jupyter server started for an open notebook (JupyterLab, Notebook 7: the server sets
    JPY_SESSION_NAME); False in headless runs (nbclient / nbconvert: `make workbook`, the grader, `make site`)."""
    return bool(os.environ.get("JPY_SESSION_NAME"))


def slider_figure(draw, controls: dict) -> None:
    """Show widget `controls` ({name: widget}) with the figure `draw(**values)` makes, drawn exactly once.

    In a live notebook the figure sits in a widget Output under the controls and is redrawn in place whenever one
    moves. In a headless run the same `draw` runs once with the controls' start values and its figure is a plain
    output of the cell, so the executed notebook (and the site rendered from it) shows the plot without a kernel.
    `draw` makes a matplotlib figure and leaves it open; this function shows and closes it.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    out = widgets.Output()

    def values() -> dict:
        return {name: c.value for name, c in controls.items()}

    def show_once() -> None:
        before = set(plt.get_fignums())
        draw(**values())
        plt.show()  # the inline backend displays the new figure (inside `out` when called there) and closes it
        for num in set(plt.get_fignums()) - before:  # other backends: close it here
            plt.close(num)

    def redraw(_change=None) -> None:
        with out:
            out.clear_output(wait=True)
            show_once()

    for c in controls.values():
        c.observe(redraw, names="value")
    display(widgets.VBox([*controls.values(), out]))
    if live_frontend():
        redraw()
    else:
        show_once()
