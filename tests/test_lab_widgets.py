"""The workbook's sliders work in a real JupyterLab, driven by a real browser (headless Chromium via playwright).

Every notebook whose code creates an ipywidgets slider (found by reading the cells, so a new slider is tested without
editing this file) is copied to a temporary folder, opened in JupyterLab, run with Run > Run All Cells, and then every
slider on the page is moved one step with the keyboard. Each move must redraw the slider's figure (the <img> in the
widget's output area changes), leave one figure per output (no figure drawn twice), and no "Error displaying widget"
may appear anywhere.

Needs the `browser` extra (`pip install -e ".[browser]"`, playwright) and Debian's `chromium` (`.ci/run` installs it);
skips with the reason when either is missing. Playwright's own browser download is never used.
Knobs: PEFTLAB_CHROMIUM (browser binary), PEFTLAB_LAB_TIMEOUT (seconds for Run All, default 900),
PEFTLAB_LAB_NOTEBOOKS (another folder of notebooks, to try the test itself), PEFTLAB_FAST (default 1 here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import nbformat
import pytest

from peftlab.classroom.site import slider_cells  # the cells that create a slider (same rule as the site's)

ROOT = Path(__file__).resolve().parents[1]
# PEFTLAB_LAB_NOTEBOOKS=<folder> points the test at other notebooks (to try the test itself on broken sliders)
NOTEBOOKS = sorted(
    Path(os.environ.get("PEFTLAB_LAB_NOTEBOOKS", ROOT / "notebooks")).glob("[0-9][0-9]_*.ipynb")
)
CHROMIUM = os.environ.get("PEFTLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
RUN_TIMEOUT = float(os.environ.get("PEFTLAB_LAB_TIMEOUT", "900"))  # seconds for Run All Cells of one notebook
REDRAW_TIMEOUT = 120.0  # seconds for one slider move to redraw
SHOTS = ROOT / "build" / "lab_widgets"  # a screenshot of each failing page lands here


def slider_notebooks() -> list[Path]:
    """The notebooks with at least one code cell that creates a slider."""
    found = []
    for path in NOTEBOOKS:
        nb = nbformat.read(str(path), as_version=4)
        if slider_cells(nb):
            found.append(path)
    return found


SLIDER_NOTEBOOKS = slider_notebooks()

pytestmark = pytest.mark.slow


def _missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return 'playwright is not installed: pip install -e ".[browser]" (make setup does it)'
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return (
            f"chromium not found at {CHROMIUM}: apt-get install chromium (.ci/run does it), "
            "or point PEFTLAB_CHROMIUM at a Chromium binary"
        )
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_settings(settings: Path) -> None:
    """Lab settings for a test run: every cell in the DOM, no kernel dialog, no autosave, no news/update requests."""
    for plugin, values in {
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
        "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
        "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    }.items():
        f = settings / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def lab():
    """A JupyterLab server on a free localhost port with a random token, serving copies of the slider notebooks."""
    reason = _missing()
    if reason:
        pytest.skip(reason)
    # our own temp folder, not pytest's tmp_path: another pytest run on the machine prunes those (and the kernel's
    # connection files with them) while this one is still going
    with tempfile.TemporaryDirectory(prefix="peftlab-lab-") as tmp:
        yield from _serve(Path(tmp))


def _serve(tmp: Path):
    root = tmp / "notebooks"  # copies: nothing the browser does can touch the committed notebooks
    root.mkdir()
    for path in SLIDER_NOTEBOOKS:
        shutil.copy(path, root / path.name)
    _write_settings(tmp / "settings")
    port, token = _free_port(), uuid.uuid4().hex
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "jupyter" / "config"),
        JUPYTER_DATA_DIR=str(tmp / "jupyter" / "data"),
        JUPYTER_RUNTIME_DIR=str(tmp / "jupyter" / "runtime"),
        IPYTHONDIR=str(tmp / "ipython"),
        MPLCONFIGDIR=str(ROOT / ".cache" / "matplotlib"),
        HF_HOME=str(ROOT / ".cache" / "huggingface"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PEFTLAB_FAST=os.environ.get("PEFTLAB_FAST", "1"),  # the kernel inherits the server's environment
    )
    cmd = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={tmp / 'settings'}",
        f"--LabApp.workspaces_dir={tmp / 'workspaces'}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "jupyter.log", "w")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"JupyterLab did not start:\n{(tmp / 'jupyter.log').read_text()[-3000:]}")
        time.sleep(0.5)
    try:
        yield {"base": base, "token": token, "log": tmp / "jupyter.log"}
    finally:
        try:  # the server shuts its kernels down and exits
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST")
            urllib.request.urlopen(req, timeout=10).close()
        except OSError:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# --- what the page shows, read in the browser -------------------------------------------------------------------
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"

PROMPTS_JS = """(panel) => {
  const nb = document.querySelector(panel + ' .jp-Notebook');
  if (!nb) return null;
  return [...nb.querySelectorAll('.jp-CodeCell')].map(c => {
    const p = c.querySelector('.jp-InputPrompt');
    const src = c.querySelector('.jp-InputArea-editor');
    return [p ? p.textContent.trim() : '', src ? src.textContent.trim().length > 0 : false];
  });
}"""

ERRORS_JS = """(panel) => [...document.querySelectorAll(panel + ' .jp-OutputArea-output')]
  .map(o => o.innerText).filter(t => t.includes('Traceback')).map(t => t.slice(-1500))"""

# every slider handle, with the images of the widget outputs in its cell
SLIDERS_JS = """(panel) => {
  const cells = [...document.querySelectorAll(panel + ' .jp-CodeCell')];
  const out = [];
  cells.forEach((cell, ci) => {
    const handles = [...cell.querySelectorAll('.widget-slider .noUi-handle, .jupyter-widget-slider .noUi-handle')];
    handles.forEach((h, hi) => {
      const label = h.closest('.widget-slider, .jupyter-widget-slider');
      const desc = label ? (label.querySelector('.widget-label') || {}).textContent || '' : '';
      out.push({cell: ci, handle: hi, desc: desc.trim(), now: h.getAttribute('aria-valuenow'),
                min: h.getAttribute('aria-valuemin'), max: h.getAttribute('aria-valuemax')});
    });
  });
  return out;
}"""

IMAGES_JS = """([panel, ci]) => {
  const cell = document.querySelectorAll(panel + ' .jp-CodeCell')[ci];
  return [...cell.querySelectorAll('.widget-output, .jupyter-widget-output')].map(
    o => [...o.querySelectorAll('img')].map(i => i.getAttribute('src') || ''));
}"""


def _wait_run_all(page, timeout: float) -> None:
    """Wait until every non-empty code cell has an execution count; fail with the traceback if a cell errored."""
    deadline, quiet_since = time.time() + timeout, None
    while time.time() < deadline:
        prompts = page.evaluate(PROMPTS_JS, PANEL) or []
        running = any("*" in p for p, _ in prompts)
        done = prompts and all(re.search(r"\[\d+\]", p) for p, has_src in prompts if has_src)
        if done and not running:
            return
        if not running:  # nothing queued and not all executed: run-all stopped at an error
            quiet_since = quiet_since or time.time()
            if time.time() - quiet_since > 10:
                errors = page.evaluate(ERRORS_JS, PANEL)
                pytest.fail(
                    "Run All Cells stopped before the end"
                    + (":\n" + "\n---\n".join(errors) if errors else f" (prompts: {[p for p, _ in prompts]})")
                )
        else:
            quiet_since = None
        time.sleep(1)
    pytest.fail(f"Run All Cells did not finish in {timeout:.0f} s")


def _no_widget_errors(page, where: str) -> None:
    text = page.inner_text(PANEL)
    assert "Error displaying widget" not in text, f"'Error displaying widget' on the page {where}"


def _open_and_run(page, lab, name: str) -> None:
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(f"{PANEL} .jp-Notebook .jp-Cell", timeout=120_000)
    deadline = time.time() + 180
    while True:  # the kernel starts and connects (Lab may first ask which one: accept the notebook's python3)
        dialog = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
        if dialog.count():
            dialog.first.click()
        kernel = page.locator(f"{PANEL} .jp-Toolbar-kernelName").first
        if (
            kernel.count()
            and "No Kernel" not in kernel.inner_text()
            and "| Idle" in page.locator("#jp-main-statusbar").inner_text()
        ):
            break
        if time.time() > deadline:
            pytest.fail(f"the kernel of {name} did not start in 180 s")
        time.sleep(0.5)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator('.lm-Menu-item[data-command="runmenu:run-all"]').click()
    _wait_run_all(page, RUN_TIMEOUT)


def _wait_sliders(page, timeout: float = 60.0, settle: float = 3.0) -> list:
    """The sliders on the page, once their number has stopped growing (widgets render after their cell finishes)."""
    deadline, last, since = time.time() + timeout, None, time.time()
    while time.time() < deadline:
        now = page.evaluate(SLIDERS_JS, PANEL)
        if now != last:
            last, since = now, time.time()
        elif now and time.time() - since >= settle:
            break
        time.sleep(0.5)
    return last or []


def _wait_images(page, cell: int, timeout: float, before: list | None = None, settle: float = 1.5) -> list:
    """The figures of a cell's widget outputs once they hold one (and differ from `before`, when given) and have
    not changed for `settle` seconds: a redraw clears the output, then draws."""
    deadline, last, since = time.time() + timeout, None, 0.0
    while time.time() < deadline:
        now = page.evaluate(IMAGES_JS, [PANEL, cell])
        if now != last:
            last, since = now, time.time()
        elif any(now) and now != before and time.time() - since >= settle:
            return now
        time.sleep(0.25)
    return last or []


@pytest.mark.skipif(not SLIDER_NOTEBOOKS, reason="no notebook creates a slider")
@pytest.mark.parametrize("path", SLIDER_NOTEBOOKS, ids=[p.stem for p in SLIDER_NOTEBOOKS])
def test_every_slider_redraws_its_figure(lab, browser, path):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    try:
        _open_and_run(page, lab, path.name)
        _no_widget_errors(page, "after Run All Cells")
        sliders = _wait_sliders(page)
        assert sliders, (
            f"{path.name} creates a slider in its code but none shows on the page; console: {console}"
        )
        for s in sliders:
            what = f"{path.name}: slider {s['desc'] or s['handle']!r} in code cell #{s['cell'] + 1}"
            before = _wait_images(page, s["cell"], REDRAW_TIMEOUT)
            assert any(before), f"{what}: its widget output holds no figure after Run All Cells"
            handle = (
                page.locator(f"{PANEL} .jp-CodeCell").nth(s["cell"]).locator(".noUi-handle").nth(s["handle"])
            )
            handle.scroll_into_view_if_needed()
            handle.focus()
            value, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
            at_max = value is not None and top is not None and float(value) >= float(top)
            start = time.time()
            handle.press("ArrowLeft" if at_max else "ArrowRight")  # one step, as a student's arrow key does
            after = _wait_images(page, s["cell"], REDRAW_TIMEOUT, before=before)
            moved = handle.get_attribute("aria-valuenow")
            verdict = "redrawn" if after != before else "NOT redrawn"
            print(f"{what}: {value} -> {moved}, {verdict} in {time.time() - start:.1f} s")
            assert moved != value, f"{what}: the arrow key did not move it (value {value})"
            if after == before:  # (pytest.fail: no dump of two base64 images)
                pytest.fail(f"{what}: moved {value} -> {moved} but its figure did not change")
            for when, figures in (("after Run All Cells", before), (f"after the move to {moved}", after)):
                if max(map(len, figures)) > 1:
                    pytest.fail(
                        f"{what}: one widget output holds {max(map(len, figures))} figures {when} "
                        "(a figure drawn twice? draw one figure per redraw)"
                    )
            _no_widget_errors(page, f"after moving {what}")
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{path.stem}.png"), full_page=True)
        print(f"screenshot of the failing page: {SHOTS / path.stem}.png; browser console errors: {console}")
        raise
    finally:
        page.close()
