"""Notebook tools: strip outputs, make student copies, grade a class, run the whole workbook.

    python -m peftlab.classroom.nbtools strip notebooks/*.ipynb
    python -m peftlab.classroom.nbtools student notebooks build/student
    python -m peftlab.classroom.nbtools grade SUBMISSIONS [--instructor notebooks] [--out build/grades]
    python -m peftlab.classroom.nbtools workbook notebooks build/workbook [--results docs/RESULTS.md]

Conventions (docs/AUTHORING.md): an exercise cell starts with `# EXERCISE <id>` and holds its solution between
`# BEGIN SOLUTION` / `# END SOLUTION`; a hidden-tests cell starts with `# HIDDEN TESTS <id>`.
Submissions are laid out one folder per student: SUBMISSIONS/<student>/<NN_topic>.ipynb.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import difflib
import hashlib
import hmac
import json
import os
import re
import secrets
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_async, run_sync

from .grading import CHECK_STATUSES

EXERCISE = re.compile(r"^#\s*EXERCISE\s+(\S+)")
HIDDEN = re.compile(r"^#\s*HIDDEN TESTS\s+(\S+)")
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
ASSIGN = re.compile(r"^(\s*)([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?::[^=]+)?=(?!=)")


def _first_line(cell) -> str:
    return cell.source.lstrip().split("\n", 1)[0] if cell.cell_type == "code" else ""


def exercise_id(cell) -> str | None:
    m = EXERCISE.match(_first_line(cell))
    return m.group(1) if m else None


def hidden_id(cell) -> str | None:
    m = HIDDEN.match(_first_line(cell))
    return m.group(1) if m else None


# -- strip ---------------------------------------------------------------------------------------------------------
def strip(nb):
    """Remove outputs, execution counts and widget state (notebooks are committed clean)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def write_atomic(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    nbformat.write(nb, str(tmp))
    os.replace(tmp, path)


# -- student copies ------------------------------------------------------------------------------------------------
def stub_solution(lines: list[str]) -> list[str]:
    """Solution lines -> the student's stub: assignments keep their names (bound to ...), everything else goes."""
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    out = []
    for ln in lines:
        m = ASSIGN.match(ln)
        if m and len(m.group(1)) == indent:
            names = [n.strip() for n in m.group(2).split(",")]
            value = ", ".join("..." for _ in names)
            out.append(f"{' ' * indent}{', '.join(names)} = {value}  # YOUR CODE HERE")
    return out or [f"{' ' * indent}...  # YOUR CODE HERE"]


def student_source(source: str) -> str:
    lines, out, block = source.split("\n"), [], None
    for ln in lines:
        if ln.strip() == BEGIN:
            block = []
        elif ln.strip() == END and block is not None:
            out.extend(stub_solution(block))
            block = None
        elif block is not None:
            block.append(ln)
        else:
            out.append(ln)
    if block is not None:
        raise ValueError(f"'{BEGIN}' without '{END}' in cell:\n{source}")
    return "\n".join(out)


def student_copy(nb):
    """The student version of an instructor notebook: solutions stubbed, hidden tests removed, outputs cleared."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))  # deep copy
    nb.cells = [c for c in nb.cells if hidden_id(c) is None]
    for cell in nb.cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            cell.source = student_source(cell.source)
    return strip(nb)


def make_students(src: Path, dest: Path) -> list[Path]:
    written = []
    for path in sorted(Path(src).glob("[0-9][0-9]_*.ipynb")):
        out = Path(dest) / path.name
        write_atomic(student_copy(nbformat.read(str(path), as_version=4)), out)
        written.append(out)
    return written


# -- grading -------------------------------------------------------------------------------------------------------
# How a submission is graded (docs/GRADING.md has the why and the limits):
#  1. The graded notebook is built from the INSTRUCTOR copy. The student's exercise cells replace the instructor's
#     (matched by cell id, else by their `# EXERCISE <id>` first line); every other instructor cell runs as the
#     instructor wrote it; cells the student added run where they put them; edits to instructor cells are not run.
#  2. The grader inserts its own cells: one first (it records every library function the checks use) and one after
#     each check cell. Those load peftlab/classroom/grading.py and the check module afresh from their files, put back any
#     library function a student cell replaced, run the check and hidden tests, and print one line signed with a
#     random key that exists only in that inserted cell's source.
#  3. The cells run one at a time in a fresh kernel. A result counts only if it is the signed line in the output of
#     the inserted cell (found by its random cell id); points are the instructor's, never the kernel's.
#  4. Every fault is named by its cause: a cell that raises, runs past the time limit, or kills the kernel. After a
#     dead kernel the notebook runs again in a new kernel without the cell that killed it (at most 3 runs).
STATUSES = ("passed", "failed", "not attempted", "missing", "timeout", "not graded")
CHECK_CALL = re.compile(r"""\bcheck\(\s*["']([^"']+)["']""")
_CHECK_LINE = re.compile(r"""check\(\s*["'][^"']+["']\s*\)\s*(#.*)?""")


def _only_checks(source: str) -> bool:
    """A check cell that only calls check(): the grader's own check takes its place (no need to run it twice)."""
    lines = [ln.strip() for ln in source.split("\n") if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(_CHECK_LINE.fullmatch(ln) for ln in lines)


GRADER_HEAD = "# --- inserted by the peftlab grader; not part of your notebook ---\n"
_TIMEOUT_ENAME = "PeftlabGraderTimeout"
REVIEW = [  # (pattern, what it means): cells of the student's that an instructor may want to look at
    (r"get_ipython|IPython\.core|\.events\.register|_transformers", "uses IPython's internals"),
    (r"\bsys\.modules\b|\bimportlib\b|__import__", "loads or swaps modules by hand (sys.modules/importlib)"),
    (r"\bbuiltins\b|__builtins__", "touches builtins"),
    (r"\bgc\.|\bimport gc\b|\bctypes\b", "reaches into the interpreter (gc/ctypes)"),
    (r"_getframe|currentframe|\bf_back\b|\bf_globals\b", "inspects interpreter frames"),
    (r"sys\.(stdout|stderr|displayhook)\s*=|redirect_stdout", "replaces sys.stdout/stderr"),
    (r"os\._exit|sys\.exit|\bsignal\.|os\.kill", "ends the process or handles signals"),
    (
        r"peftlab\.classroom\.(grading|nbtools)|from peftlab\.classroom import[^\n]*\b(grading|nbtools)\b"
        r"|from peftlab import[^\n]*\bclassroom\b|\bEXERCISES\b|PEFTLAB_|_grader"
        r"|\bevaluate\s*=",
        "refers to the grader's code",
    ),
    (r"^\s*def check\b|^\s*check\s*=", "redefines check()"),
    (r"(?<![\w.])(exec|eval|compile)\s*\(", "runs code from strings (exec/eval/compile)"),
    (
        r"\bsetattr\s*\(|^\s*(torch|np|numpy|math|F|nn|peftlab|transformers)\.[\w.]+\s*=[^=]",
        "replaces an attribute of a library",
    ),
    (r"PEFTLAB-GRADER", "prints text that imitates the grader's result line"),
    (r"peftlab\.exercises", "imports the checks' reference code"),
]


def exercises_of(nb) -> list[tuple[str, str | None]]:
    """[(exercise id, hidden test code or None)] in notebook order."""
    hidden = {
        hidden_id(c): c.source.split("\n", 1)[1] if "\n" in c.source else "" for c in nb.cells if hidden_id(c)
    }
    return [(exercise_id(c), hidden.get(exercise_id(c))) for c in nb.cells if exercise_id(c)]


def _max_points(ex_ids: list[str]) -> dict[str, int]:
    from .grading import get_exercise

    return {i: max(0, int(get_exercise(i).points)) for i in ex_ids}


def _check_path(ex_id: str) -> str:
    """The file that defines exercise `ex_id`'s check (the kernel loads it afresh from there)."""
    from .grading import get_exercise

    return str(Path(sys.modules[get_exercise(ex_id).fn.__module__].__file__).resolve())


def _snippet(source: str, n: int = 50) -> str:
    line = next((ln.strip() for ln in source.split("\n") if ln.strip()), "")
    return line if len(line) <= n else line[: n - 3] + "..."


def _new_id() -> str:
    return "grader-" + secrets.token_hex(8)


@dataclass
class PlanCell:
    source: str
    role: str  # baseline | grader | exercise | stub | instructor | added
    where: str  # how feedback names it: 'cell 7 ("# EXERCISE nb01.q1")'
    ex: str | None = None
    key: str = field(default_factory=lambda: secrets.token_hex(32))
    id: str = field(default_factory=_new_id)
    skip_source: str = ""  # what runs instead once this cell has killed the kernel


@dataclass
class Plan:
    cells: list[PlanCell]
    exercises: list[str]
    missing: dict[str, str]  # exercise id -> why its cell is missing
    notes: list[str]
    review: list[str]


def _grader_cell(call: str) -> str:
    """An inserted cell: load peftlab/classroom/grading.py afresh from its file (never the kernel's peftlab.classroom.grading) and call
    one of its `_grader_*` functions as `g.<call>`."""
    grading = str(Path(__file__).with_name("grading.py").resolve())
    return (
        f"{GRADER_HEAD}def _peftlab_grader():\n"
        "    import importlib.util as u, sys\n"
        f"    spec = u.spec_from_file_location('peftlab._grader_boot', {grading!r})\n"
        "    g = u.module_from_spec(spec)\n"
        "    sys.modules[spec.name] = g\n"
        "    try:\n"
        "        spec.loader.exec_module(g)\n"
        "    finally:\n"
        "        del sys.modules[spec.name]\n"
        f"    g.{call}\n"
        "_peftlab_grader()\n"
        "del _peftlab_grader\n"
    )


def _baseline_source(guard: str, check_paths: list[str]) -> tuple[str, str]:
    key = secrets.token_hex(32)
    return _grader_cell(f"_grader_baseline({key!r}, {guard!r}, {check_paths!r})"), key


def _grader_source(key: str, guard: str, ex: str, check_path: str, hidden: str | None) -> str:
    return _grader_cell(f"_grader_check(globals(), {key!r}, {guard!r}, {ex!r}, {check_path!r}, {hidden!r})")


def build_plan(ref, sub) -> Plan:
    """The cells to run: the instructor's notebook with the student's exercise cells and added cells in it."""
    exercises = exercises_of(ref)
    hidden = dict(exercises)
    ex_ids = [i for i, _ in exercises]
    notes: list[str] = []
    inst = [(i, c) for i, c in enumerate(ref.cells) if c.cell_type == "code"]
    stud = [(n, c) for n, c in enumerate(sub.cells, 1) if c.get("cell_type") == "code"]
    label = {j: f'cell {n} ("{_snippet(c.source)}")' for j, (n, c) in enumerate(stud)}
    inst_ex = {exercise_id(c): i for i, c in inst if exercise_id(c)}
    by_id = {c.get("id"): i for i, c in inst if c.get("id")}
    cells = dict(inst)
    match: dict[int, int] = {}  # student cell (index in stud) -> instructor cell index
    # 1. exercise cells: the one with the instructor's id among those with the right first line, else the first of
    #    those, else the cell with the instructor's id whose first line was edited
    for ex, i in inst_ex.items():
        heads = [j for j, (_, c) in enumerate(stud) if exercise_id(c) == ex and j not in match]
        same_id = [j for j in heads if stud[j][1].get("id") == cells[i].get("id")]
        if same_id or heads:
            match[(same_id or heads)[0]] = i
            continue
        by_cell_id = [
            j
            for j, (_, c) in enumerate(stud)
            if j not in match and c.get("id") and c.get("id") == cells[i].get("id") and exercise_id(c) is None
        ]
        if by_cell_id:
            match[by_cell_id[0]] = i
            notes.append(
                f"{label[by_cell_id[0]]}: its first line should read '# EXERCISE {ex}'; "
                "graded as that exercise (matched by its cell id)"
            )
    # 2. every other instructor cell: by cell id, else by identical source
    others = {i for i, c in inst if exercise_id(c) is None}
    taken = set(match.values())
    for j, (_, c) in enumerate(stud):
        i = by_id.get(c.get("id"))
        if j not in match and exercise_id(c) is None and i in others and i not in taken:
            match[j] = i
            taken.add(i)
    for j, (_, c) in enumerate(stud):
        if j in match or exercise_id(c) is not None:
            continue
        for i in sorted(others - taken):
            if cells[i].source.strip() == c.source.strip():
                match[j] = i
                taken.add(i)
                break
    # 3. what the student changed
    check_of: dict[int, list[str]] = {}
    for ex, i in inst_ex.items():
        after = [
            k
            for k, c in inst
            if k > i
            and exercise_id(c) is None
            and hidden_id(c) is None
            and ex in CHECK_CALL.findall(c.source)
        ]
        if after:
            check_of.setdefault(after[0], []).append(ex)
    added_after: dict[int | None, list[int]] = {}
    anchor, review = None, []
    for j, (_, c) in enumerate(stud):
        if j in match:
            i = match[j]
            anchor = i
            ok = {cells[i].source.strip(), student_source(cells[i].source).strip()}
            if i in others and c.source.strip() not in ok:
                what = (
                    f"the check cell of {', '.join(check_of[i])}"
                    if i in check_of
                    else "the hidden tests"
                    if hidden_id(cells[i])
                    else f'the instructor\'s cell "{_snippet(cells[i].source)}"'
                )
                ran = (
                    "the grader checks there" if i in check_of else "the grader runs the instructor's version"
                )
                notes.append(f"{label[j]} is {what}, edited: your edit was not run ({ran})")
            continue
        if hidden_id(c):
            notes.append(f"{label[j]} starts with '# HIDDEN TESTS': it was not run")
            continue
        if exercise_id(c) in inst_ex:
            notes.append(
                f"{label[j]} is a second cell for exercise {exercise_id(c)}: it ran as a cell you added"
            )
        added_after.setdefault(anchor, []).append(j)
    for i in sorted(others - taken):
        if hidden_id(cells[i]):
            continue
        if i in check_of:
            notes.append(
                f"the check cell of {', '.join(check_of[i])} is missing from your notebook: "
                "the grader ran its own check anyway"
            )
        else:
            notes.append(
                f'the instructor\'s cell "{_snippet(cells[i].source)}" is missing: the grader ran it'
            )
    added = [j for js in added_after.values() for j in js]
    if added:
        notes.append("cells you added (they ran where you put them): " + "; ".join(label[j] for j in added))
    for j in added + [j for j, i in match.items() if i in inst_ex.values()]:
        src = stud[j][1].source
        for pattern, what in REVIEW:
            if re.search(pattern, src, flags=re.M):
                review.append(f"{label[j]} {what}")
    # 4. the plan, in the instructor's order
    guard = "_peftlab_guard_" + secrets.token_hex(8)
    paths = {ex: _check_path(ex) for ex in ex_ids}
    src, key = _baseline_source(guard, sorted(set(paths.values())))
    plan = [PlanCell(src, "baseline", "the grader's first cell", key=key)]
    rev = {i: j for j, i in match.items()}

    def add_student(anchor_i):
        for j in added_after.get(anchor_i, []):
            plan.append(PlanCell(stud[j][1].source, "added", label[j]))

    def add_graders(exs):
        for ex in exs:
            pc = PlanCell("", "grader", f"the grader's check of {ex}", ex=ex)
            pc.source = _grader_source(pc.key, guard, ex, paths[ex], hidden.get(ex))
            plan.append(pc)

    missing: dict[str, str] = {}
    graded_at_exercise = [ex for ex in ex_ids if not any(ex in v for v in check_of.values())]
    add_student(None)
    for i, c in inst:
        ex = exercise_id(c)
        stub = student_source(c.source) if BEGIN in c.source else c.source
        if ex is not None:
            if i in rev:
                plan.append(
                    PlanCell(stud[rev[i]][1].source, "exercise", label[rev[i]], ex=ex, skip_source=stub)
                )
            else:
                missing[ex] = (
                    f"your notebook has no cell starting with '# EXERCISE {ex}' (deleted, or its first line edited); "
                    "the grader ran the unanswered exercise cell in its place"
                )
                plan.append(PlanCell(stub, "stub", f"the unanswered cell of {ex}", ex=ex, skip_source=stub))
            if ex in graded_at_exercise:
                add_student(i)
                add_graders([ex])
                continue
        elif not hidden_id(c) and not (i in check_of and _only_checks(c.source)):
            where = label[rev[i]] if i in rev else f'the instructor\'s cell "{_snippet(c.source)}"'
            plan.append(PlanCell(c.source, "instructor", where))
        add_graders(check_of.get(i, []))
        add_student(i)
    return Plan(plan, ex_ids, missing, notes, review)


async def _exit_code(client) -> int | None:
    for _ in range(50):
        try:
            code = await ensure_async(client.km.provisioner.poll())
        except Exception:
            return None
        if code is not None:
            return code
        await asyncio.sleep(0.1)
    return None


async def _responsive(client, seconds: float) -> bool:
    """After an interrupt: does the kernel answer a kernel_info request (it cannot while a cell still runs)?"""
    from queue import Empty

    msg_id = await ensure_async(client.kc.kernel_info())
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            msg = await ensure_async(client.kc.shell_channel.get_msg(timeout=left))
        except Empty:
            return False
        if msg.get("parent_header", {}).get("msg_id") == msg_id:
            return True
    return False


async def _run_cells(
    plan: Plan, skip: set[int], cwd: str, env: dict, timeout: int, deadline: float
) -> list[dict]:
    """Run the plan in a new kernel, one cell at a time; stop at a dead or stuck kernel. One outcome per cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for i, pc in enumerate(plan.cells):
        cell = nbformat.v4.new_code_cell(pc.skip_source if i in skip else pc.source)
        cell.id = pc.id
        nb.cells.append(cell)
    replies: dict[int, dict] = {}

    def on_executed(cell, cell_index, execute_reply):
        replies[cell_index] = execute_reply or {}

    client = NotebookClient(
        nb,
        timeout=timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        error_on_timeout={"ename": _TIMEOUT_ENAME, "evalue": f"{timeout} s", "traceback": []},
        kernel_name="python3",
        resources={"metadata": {"path": cwd}},
        shutdown_kernel="immediate",
        on_cell_executed=on_executed,
    )
    out = [{"state": "not run", "outputs": []} for _ in plan.cells]
    async with client.async_setup_kernel(env=env):
        for i, cell in enumerate(nb.cells):
            if i in skip and not cell.source.strip():
                out[i] = {"state": "skipped", "outputs": []}
                continue
            if time.monotonic() > deadline:
                out[i] = {"state": "budget", "outputs": []}
                break
            try:
                await asyncio.wait_for(client.async_execute_cell(cell, i), timeout + 60)
            except DeadKernelError:
                out[i] = {
                    "state": "died",
                    "exit_code": await _exit_code(client),
                    "outputs": cell.get("outputs", []),
                }
                break
            except asyncio.TimeoutError:
                out[i] = {"state": "stuck", "outputs": cell.get("outputs", [])}
                break
            reply = replies.get(i, {}).get("content", {})
            state = {"state": "ok", "outputs": cell.get("outputs", [])}
            if reply.get("ename") == _TIMEOUT_ENAME:
                state["state"] = "timeout" if await _responsive(client, min(30, max(5, timeout))) else "stuck"
            elif reply.get("status") == "error":
                state.update(
                    state="error", ename=reply.get("ename"), evalue=_short(reply.get("evalue", ""), 200)
                )
            if i in skip:
                state["skipped"] = True
            out[i] = state
            if state["state"] == "stuck":
                break
    return out


def _short(text, n: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


def _signed_lines(outputs: list, key: str) -> tuple[list[dict], int]:
    """The payloads of the lines signed with `key` in a cell's stdout, and how many tag lines were not."""
    from .grading import TAG

    good, bad = [], 0
    text = "".join(
        o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout"
    )
    for line in text.splitlines():
        if not line.startswith(TAG + " "):
            continue
        body, _, mac = line[len(TAG) + 1 :].rpartition(" ")
        want = hmac.new(key.encode(), body.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(want, mac):
            try:
                good.append(json.loads(body))
            except ValueError:
                bad += 1
        else:
            bad += 1
    return good, bad


def _died(o: dict, where: str, earlier: bool = False) -> str:
    if o["state"] == "stuck":
        return f"{where} got stuck earlier and the kernel was shut down" if earlier else f"{where} got stuck"
    code = o.get("exit_code")
    how = "exit code unknown" if code is None else f"exit code {code}"
    if code is not None and code < 0:
        try:
            how += f": killed by {signal.Signals(-code).name}" + (
                " (out of memory?)" if -code == signal.SIGKILL else ""
            )
        except ValueError:
            pass
    return (
        f"the kernel died earlier, in {where} ({how})" if earlier else f"the kernel died in {where} ({how})"
    )


def _cell_fault(o: dict, where: str, timeout: int) -> str | None:
    s = o["state"]
    if s == "error":
        return f"{where} raised {o.get('ename')}: {o.get('evalue')}"
    if s == "timeout":
        return f"{where} did not finish within {timeout} s (an endless loop?) and was interrupted"
    if s == "stuck":
        return f"{where} ran past {timeout} s and did not stop when interrupted; the kernel was shut down"
    if s == "died":
        return _died(o, where)
    return None


def grade_notebook(
    submission: Path,
    instructor: Path,
    timeout: int = 120,
    fast: bool = True,
    threads: int | None = None,
    budget: float | None = None,
    max_runs: int = 3,
    tail: bool = True,
) -> dict:
    """Grade one submission against its instructor notebook.

    Returns {"results": [{"id", "status", "points", "max", "message"}], "errors": [problems, by cause],
    "notes": [what the student changed], "review": [cells an instructor may want to read], "seconds", "runs"}.
    `timeout` is per cell; `budget` (default max(900, 8 x timeout) s) bounds the whole notebook, all runs included.
    With `tail=False` the cells after the last check are not run (they cannot change a grade; grade_class's default).
    """
    submission, instructor = Path(submission), Path(instructor)
    start = time.time()
    ref = nbformat.read(str(instructor), as_version=4)
    ex_ids = [i for i, _ in exercises_of(ref)]
    maxes = _max_points(ex_ids)

    def row(ex, status, message=""):
        status = status if status in STATUSES else "not graded"
        points = maxes[ex] if status == "passed" else 0
        return {
            "id": ex,
            "status": status,
            "points": min(max(points, 0), maxes[ex]),
            "max": maxes[ex],
            "message": message,
        }

    def whole(status, message, errors):
        return {
            "results": [row(ex, status, message) for ex in ex_ids],
            "errors": errors,
            "notes": [],
            "review": [],
            "seconds": round(time.time() - start, 1),
            "runs": 0,
        }

    try:
        sub = nbformat.reads(submission.read_text(errors="replace"), as_version=4)
        if not isinstance(sub.get("cells"), list):
            raise ValueError("it has no list of cells")
        for c in sub.cells:
            c.source = c.source if isinstance(c.get("source"), str) else "".join(c.get("source") or [])
    except Exception as e:  # empty, not JSON, not a notebook
        msg = f"the submission is not a readable notebook ({type(e).__name__}: {_short(e, 120)})"
        return whole("not graded", msg, [msg])
    plan = build_plan(ref, sub)
    last = max((k for k, pc in enumerate(plan.cells) if pc.role == "grader"), default=len(plan.cells) - 1)
    if not tail and last < len(plan.cells) - 1:
        dropped = [pc.where for pc in plan.cells[last + 1 :] if pc.role == "added"]
        plan.cells = plan.cells[: last + 1]
        if dropped:
            kept = [pc.where for pc in plan.cells if pc.role == "added"]
            plan.notes = [n for n in plan.notes if not n.startswith("cells you added")]
            if kept:
                plan.notes.append("cells you added (they ran where you put them): " + "; ".join(kept))
            plan.notes.append(
                "cells you added after the last check (not run: they cannot change a grade): "
                + "; ".join(dropped)
            )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEFTLAB_GRADE")}
    env["PEFTLAB_FAST"] = "1" if fast else "0"
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    limit = budget if budget is not None else max(900, 8 * timeout)
    deadline = time.monotonic() + limit
    runs: list[list[dict]] = []
    skip: set[int] = set()
    graders = [k for k, pc in enumerate(plan.cells) if pc.role == "grader"]
    errors: list[str] = []
    while len(runs) < max_runs:
        try:
            out = run_sync(_run_cells)(plan, skip, str(instructor.parent.resolve()), env, timeout, deadline)
        except Exception as e:  # the kernel would not start, or nbclient failed
            errors.append(f"the grader could not run the notebook: {type(e).__name__}: {_short(e, 200)}")
            break
        runs.append(out)
        stop = next((k for k, o in enumerate(out) if o["state"] in ("died", "stuck")), None)
        if stop is None or not any(g > stop for g in graders) or time.monotonic() > deadline:
            break
        skip.add(stop)
    # the outcome of each cell: from the first run that ran it (a later run only reaches what an earlier one did not)
    final: list[tuple[dict, int]] = []
    for k in range(len(plan.cells)):
        got = next(
            ((o[k], r) for r, o in enumerate(runs) if o[k]["state"] not in ("not run", "skipped")), None
        )
        final.append(got or ({"state": "not run", "outputs": []}, -1))
    baselines = {}
    for r, out in enumerate(runs):
        good, _ = _signed_lines(out[0]["outputs"], plan.cells[0].key)
        if good and good[0].get("kind") == "baseline":
            baselines[r] = good[0]["digest"]
    deaths = [(k, o) for k, (o, _) in enumerate(final) if o["state"] in ("died", "stuck")]
    for k, o in deaths:
        pc = plan.cells[k]
        errors.append(
            _cell_fault(o, pc.where, timeout)
            + ("; the notebook ran again in a new kernel without that cell" if k in skip else "")
        )
    results = {}
    for k, pc in enumerate(plan.cells):
        o, r = final[k]
        if pc.role in ("instructor", "added", "baseline") and o["state"] in ("error", "timeout"):
            errors.append(_cell_fault(o, pc.where, timeout))
        if pc.role == "baseline" and o["state"] == "ok" and r not in baselines:
            errors.append("the grader's first cell printed no signed record (it was tampered with)")
        if pc.role != "grader":
            continue
        ex = pc.ex
        status, message = "not graded", ""
        if o["state"] == "ok":
            good, bad = _signed_lines(o["outputs"], pc.key)
            good = [p for p in good if p.get("kind") == "result" and p.get("id") == ex]
            if len(good) != 1:
                message = "the grader's check printed no signed result (its output was tampered with)"
            elif r not in baselines or good[0].get("digest") != baselines[r]:
                message = "the grader's record of the libraries was altered between cells"
            elif good[0].get("hooks"):
                message = (
                    "code from your notebook was hooked into IPython and ran before this check ("
                    + "; ".join(good[0]["hooks"])
                    + "); the hook was removed, this exercise is not graded"
                )
            else:
                status = good[0].get("status")
                message = _short(good[0].get("message", ""))
                if status not in CHECK_STATUSES:
                    status, message = "not graded", f"the check reported an unknown status {status!r}"
            if good and good[0].get("restored"):
                names = good[0]["restored"]
                errors.append(
                    f"before the check of {ex} your notebook had replaced {', '.join(names[:8])}"
                    + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                    + "; the grader put the originals back before checking"
                )
            if bad:
                errors.append(
                    f"the grader's check of {ex} printed {bad} result line(s) it did not sign (forged?)"
                )
        elif o["state"] == "error":
            if o.get("ename") == "KeyboardInterrupt":
                status, message = "failed", "your code raised KeyboardInterrupt while being checked"
            else:
                message = (
                    f"the grader's check raised {o.get('ename')}: {o.get('evalue')} (was it tampered with?)"
                )
        elif o["state"] == "timeout":
            status = "timeout"
            message = f"checking your answer took longer than {timeout} s (an endless loop in your code?); it was stopped"
        elif o["state"] == "stuck":
            status = "timeout"
            message = f"checking your answer ran past {timeout} s and could not be interrupted; the kernel was shut down"
        elif o["state"] == "died":
            status = "failed"
            message = _died(o, "the grader's check of your answer") + ": your code ended the Python process"
        elif o["state"] == "budget":
            message = f"the notebook ran past the grader's total limit of {limit:.0f} s"
        else:  # not run: an earlier cell killed the kernel (or got stuck) in every run
            first = next(((d, do) for d, do in deaths if d < k), None)
            if first is None:
                message = "the grader did not reach this check"
            else:
                message = _died(first[1], plan.cells[first[0]].where, earlier=True)
                message += f", in each of its {len(runs)} runs" if len(runs) > 1 else ""
        # the exercise cell's own fault explains a failure better than the check does
        e = next(
            q
            for q in range(k, -1, -1)
            if plan.cells[q].role in ("exercise", "stub") and plan.cells[q].ex == ex
        )
        eo, _ = final[e]
        fault = _cell_fault(eo, plan.cells[e].where, timeout)
        if eo["state"] == "died":
            status, message = "failed", fault + "; the rest of the notebook was graded in a new kernel"
        elif fault and status != "passed" and status != "not graded":
            status = "timeout" if eo["state"] in ("timeout", "stuck") else "failed"
            message = fault
        if ex in plan.missing:
            status, message = "missing", plan.missing[ex]
        results[ex] = row(ex, status, message)
    for ex in ex_ids:  # an exercise whose check the grader never reached
        results.setdefault(ex, row(ex, "not graded", "the grader did not reach this exercise"))
    return {
        "results": [results[ex] for ex in ex_ids],
        "errors": list(dict.fromkeys(e for e in errors if e)),
        "notes": plan.notes,
        "review": plan.review,
        "seconds": round(time.time() - start, 1),
        "runs": len(runs),
    }


def _grade_job(args):
    student, sub, inst, kw = args
    try:
        return student, inst.name, grade_notebook(sub, inst, **kw)
    except Exception as e:  # a bug in the grader must not stop the batch
        msg = f"the grader failed on this notebook: {type(e).__name__}: {_short(e, 200)}"
        ref = nbformat.read(str(inst), as_version=4)
        ex_ids = [i for i, _ in exercises_of(ref)]
        maxes = _max_points(ex_ids)
        results = [
            {"id": i, "status": "not graded", "points": 0, "max": maxes[i], "message": msg} for i in ex_ids
        ]
        return (
            student,
            inst.name,
            {"results": results, "errors": [msg], "notes": [], "review": [], "seconds": 0},
        )


def _schedule(jobs: list, workers: int, one_per_notebook: bool = True) -> list:
    """Run `jobs` on `workers` processes; with `one_per_notebook`, never two of the same notebook at once."""
    pending, done, running = list(jobs), [], {}
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        while pending or running:
            busy = {j[2].name for j in running.values()} if one_per_notebook else set()
            while len(running) < max(1, workers):
                nxt = next((j for j in pending if j[2].name not in busy), None)
                if nxt is None:
                    break
                pending.remove(nxt)
                if one_per_notebook:
                    busy.add(nxt[2].name)
                running[pool.submit(_grade_job, nxt)] = nxt
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                running.pop(f)
                done.append(f.result())
    return done


def grade_class(
    submissions: Path,
    instructor: Path = Path("notebooks"),
    out: Path = Path("build/grades"),
    timeout: int = 120,
    workers: int = 2,
    fast: bool = True,
    notebooks: list[str] | None = None,
    one_per_notebook: bool = True,
    tail: bool = False,
) -> Path:
    """Grade SUBMISSIONS/<student>/<NN_topic>.ipynb into out/gradebook.csv and out/feedback/<student>.md.

    The notebooks graded are `notebooks` (names like "01_rank.ipynb"), by default every instructor notebook that at
    least one student submitted; a student without one of them gets its exercises as "missing".
    With `one_per_notebook`, two submissions of the same notebook never run at once (the notebooks write their
    artefacts to the same build/nbNN folder). With `tail`, the cells after each notebook's last check run too.
    """
    submissions, instructor, out = Path(submissions), Path(instructor), Path(out)
    if not submissions.is_dir():
        raise FileNotFoundError(
            f"{submissions} is not a folder; expected SUBMISSIONS/<student>/<NN_topic>.ipynb"
        )
    course = {p.name: p for p in sorted(instructor.glob("[0-9][0-9]_*.ipynb"))}
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    handed = {p.name for st in students for p in st.glob("*.ipynb")}
    wanted = sorted(set(notebooks) & set(course) if notebooks else handed & set(course))
    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    kw = {"timeout": timeout, "fast": fast, "threads": threads, "tail": tail}
    jobs, unknown, absent = [], [], []
    for st in students:
        subs = {p.name: p for p in sorted(st.glob("*.ipynb")) if p.is_file()}
        for name in wanted:
            if name in subs:
                jobs.append((st.name, subs[name], course[name], kw))
            else:
                absent.append((st.name, name))
        unknown += [(st.name, n) for n in subs if n not in course]
    jobs.sort(
        key=lambda j: (j[1].name, j[0])
    )  # notebook-major: the scheduler interleaves different notebooks
    graded = _schedule(jobs, workers, one_per_notebook)
    rows, fb = [], {st.name: {} for st in students}
    for student, name in absent:
        ex_ids = [i for i, _ in exercises_of(nbformat.read(str(course[name]), as_version=4))]
        maxes = _max_points(ex_ids)
        msg = f"notebook {name} was not submitted (no {name} in your folder)"
        res = [{"id": i, "status": "missing", "points": 0, "max": maxes[i], "message": msg} for i in ex_ids]
        graded.append(
            (student, name, {"results": res, "errors": [], "notes": [], "review": [], "seconds": 0})
        )
    for student, name, res in sorted(graded, key=lambda g: (g[0], g[1])):
        for r in res["results"]:
            rows.append(
                {
                    "student": student,
                    "notebook": name,
                    "exercise": r["id"],
                    "points": r["points"],
                    "max": r["max"],
                    "status": r["status"],
                    "message": r["message"],
                }
            )
        got = sum(r["points"] for r in res["results"])
        most = sum(r["max"] for r in res["results"])
        lines = [
            f"## {name}: {got}/{most} points" + (f" (graded in {res['seconds']} s)" if res["seconds"] else "")
        ]
        lines += [
            f"- {r['id']}: {r['points']}/{r['max']} {r['status']}"
            + (f": {r['message']}" if r["message"] else "")
            for r in res["results"]
        ]
        for title, items in (
            ("Problems", res["errors"]),
            ("What you changed", res.get("notes", [])),
            ("For the instructor to review", res.get("review", [])),
        ):
            if items:
                lines += ["", f"{title}:"] + [f"- {x}" for x in items]
        fb[student][name] = lines
    for student, name in unknown:
        close = difflib.get_close_matches(name, list(course), n=1)
        msg = f"{name} is not one of the course notebooks" + (f" (did you mean {close[0]}?)" if close else "")
        rows.append(
            {
                "student": student,
                "notebook": name,
                "exercise": "-",
                "points": 0,
                "max": 0,
                "status": "not graded",
                "message": msg,
            }
        )
        fb[student][name] = [f"## {name}", f"- not graded: {msg}"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    book = out / "gradebook.csv"
    with open(book.with_suffix(".tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, ["student", "notebook", "exercise", "points", "max", "status", "message"])
        w.writeheader()
        w.writerows(rows)
    os.replace(book.with_suffix(".tmp"), book)
    for student, sections in fb.items():
        total = sum(r["points"] for r in rows if r["student"] == student)
        most = sum(r["max"] for r in rows if r["student"] == student)
        body = "\n\n".join("\n".join(sections[n]) for n in sorted(sections))
        text = f"# Feedback for {student}: {total}/{most} points\n\n"
        if not tail:
            text += "(The grader stops each notebook after its last check: later cells cannot change a grade.)\n\n"
        text += body + "\n"
        (out / "feedback" / f"{student}.md").write_text(text)
    return book


# -- the whole workbook --------------------------------------------------------------------------------------------
def run_workbook(
    src: Path, dest: Path, results: Path | None = None, timeout: int = 900
) -> list[tuple[str, float]]:
    """Execute every notebook in order (class mode unless PEFTLAB_FAST=1), save executed copies, time each."""
    from nbclient import NotebookClient

    times = []
    for path in sorted(Path(src).glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        start = time.time()
        print(f"running {path.name} ...", flush=True)
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        ).execute()
        times.append((path.name, time.time() - start))
        print(f"  {times[-1][1]:.0f} s", flush=True)
        write_atomic(nb, Path(dest) / path.name)
    if results is not None:
        mode = "fast (PEFTLAB_FAST=1)" if os.environ.get("PEFTLAB_FAST") == "1" else "class mode"
        table = [
            f"Measured by `make workbook` ({mode}, {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}):",
            "",
            "| notebook | seconds |",
            "|---|---:|",
        ]
        table += [f"| {n} | {s:.0f} |" for n, s in times] + [
            f"| **total** | **{sum(s for _, s in times):.0f}** |"
        ]
        _replace_section(Path(results), "workbook", "\n".join(table))
    return times


def _replace_section(path: Path, name: str, body: str) -> None:
    """Write `body` between <!-- name:start --> and <!-- name:end --> in `path` (appended if absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n{body}\n{end}"
    text = (
        re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
        if start in text
        else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m peftlab.classroom.nbtools", description=__doc__.split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strip", help="remove outputs in place")
    s.add_argument("paths", nargs="+", type=Path)
    s = sub.add_parser("student", help="write student copies")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s = sub.add_parser("grade", help="grade a folder of submissions")
    s.add_argument("submissions", type=Path)
    s.add_argument("--instructor", type=Path, default=Path("notebooks"))
    s.add_argument("--out", type=Path, default=Path("build/grades"))
    s.add_argument("--timeout", type=int, default=120, help="seconds per cell (an endless loop is cut off)")
    s.add_argument("--workers", type=int, default=2, help="notebooks graded at once (one kernel each)")
    s.add_argument(
        "--class-mode", action="store_true", help="run the notebooks in class mode (default: fast)"
    )
    s.add_argument("--notebooks", nargs="*", default=None, help="names to grade (default: all submitted)")
    s.add_argument("--whole-notebook", action="store_true", help="also run the cells after the last check")
    s = sub.add_parser("workbook", help="execute every notebook, time each")
    s.add_argument("src", type=Path)
    s.add_argument("dest", type=Path)
    s.add_argument("--results", type=Path, default=None)
    a = p.parse_args(argv)
    if a.cmd == "strip":
        for path in a.paths:
            write_atomic(strip(nbformat.read(str(path), as_version=4)), path)
    elif a.cmd == "student":
        for path in make_students(a.src, a.dest):
            print(f"wrote {path}")
    elif a.cmd == "grade":
        start = time.time()
        book = grade_class(
            a.submissions,
            a.instructor,
            a.out,
            a.timeout,
            a.workers,
            fast=not a.class_mode,
            notebooks=a.notebooks,
            tail=a.whole_notebook,
        )
        with open(book) as f:
            rows = list(csv.DictReader(f))
        subs = len({(r["student"], r["notebook"]) for r in rows})
        print(
            f"graded {len({r['student'] for r in rows})} students, {subs} notebooks in {time.time() - start:.0f} s "
            f"-> {book} and {a.out / 'feedback'}/"
        )
    elif a.cmd == "workbook":
        run_workbook(a.src, a.dest, a.results)


if __name__ == "__main__":
    sys.exit(main())
