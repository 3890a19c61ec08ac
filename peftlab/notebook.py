"""Small helpers the notebooks share: show package source, class vs fast mode, tidy output."""

from __future__ import annotations

import inspect
import os
import warnings

FAST = os.environ.get("PEFTLAB_FAST", "0") == "1"  # CI sets it: fewer steps, same code path


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
