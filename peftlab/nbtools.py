"""Notebook tools: strip outputs, make student copies, grade a class, run the whole workbook.

    python -m peftlab.nbtools strip notebooks/*.ipynb
    python -m peftlab.nbtools student notebooks build/student
    python -m peftlab.nbtools grade SUBMISSIONS [--instructor notebooks] [--out build/grades]
    python -m peftlab.nbtools workbook notebooks build/workbook [--results docs/RESULTS.md]

Conventions (docs/AUTHORING.md): an exercise cell starts with `# EXERCISE <id>` and holds its solution between
`# BEGIN SOLUTION` / `# END SOLUTION`; a hidden-tests cell starts with `# HIDDEN TESTS <id>`.
Submissions are laid out one folder per student: SUBMISSIONS/<student>/<NN_topic>.ipynb.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import nbformat

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
def exercises_of(nb) -> list[tuple[str, str | None]]:
    """[(exercise id, hidden test code or None)] in notebook order."""
    hidden = {
        hidden_id(c): c.source.split("\n", 1)[1] if "\n" in c.source else "" for c in nb.cells if hidden_id(c)
    }
    return [(exercise_id(c), hidden.get(exercise_id(c))) for c in nb.cells if exercise_id(c)]


def _max_points(ex_ids: list[str]) -> dict[str, int]:
    from .grading import get_exercise

    return {i: get_exercise(i).points for i in ex_ids}


def grade_notebook(submission: Path, instructor: Path, timeout: int = 120, fast: bool = True) -> dict:
    """Execute one submission with grading cells inserted; return {"results": [...], "errors": [...], "seconds"}."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    ref = nbformat.read(str(instructor), as_version=4)
    exercises = exercises_of(ref)
    maxes = _max_points([i for i, _ in exercises])
    results = {
        i: {"id": i, "status": "missing", "points": 0, "max": maxes[i], "message": ""} for i, _ in exercises
    }
    errors: list[str] = []
    start = time.time()
    try:
        nb = nbformat.read(str(submission), as_version=4)
    except Exception as e:  # empty, not JSON, not a notebook
        for r in results.values():
            r["message"] = f"the submission is not a readable notebook ({type(e).__name__}: {str(e)[:120]})"
        return {
            "results": list(results.values()),
            "errors": [results[next(iter(results))]["message"]] if results else [],
            "seconds": 0.0,
        }
    cells = [c for c in nb.cells if hidden_id(c) is None]  # a student cannot smuggle in hidden tests
    graded, found = [], set()
    for cell in cells:
        graded.append(cell)
        ex = exercise_id(cell)
        if ex in results and ex not in found:
            found.add(ex)
            hidden = dict(exercises)[ex]
            graded.append(
                nbformat.v4.new_code_cell(f"from peftlab.grading import _grade\n_grade({ex!r}, {hidden!r})")
            )
    for ex, r in results.items():
        if ex not in found:
            r["message"] = (
                f"no cell starting with '# EXERCISE {ex}' (it was deleted or its first line edited)"
            )
    nb.cells = graded
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.jsonl"
        env_before = dict(os.environ)
        os.environ.update(PEFTLAB_GRADE_OUT=str(out), PEFTLAB_FAST="1" if fast else "0")
        client = NotebookClient(
            nb,
            timeout=timeout,
            allow_errors=True,
            interrupt_on_timeout=True,
            kernel_name="python3",
            resources={"metadata": {"path": str(instructor.parent)}},
        )
        try:
            client.execute()
        except DeadKernelError as e:
            errors.append(f"the kernel died: {e}")
        except Exception as e:  # pragma: no cover - nbclient internals
            errors.append(f"execution stopped: {type(e).__name__}: {e}")
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        if out.exists():
            for line in out.read_text().splitlines():
                r = json.loads(line)
                if r["id"] in results:
                    results[r["id"]] = r
    for i, cell in enumerate(nb.cells):
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                ex = exercise_id(cell)
                what = f"exercise {ex}" if ex else f"cell {i}"
                errors.append(f"{what}: {o.get('ename')}: {str(o.get('evalue'))[:200]}")
                if ex in results and results[ex]["status"] != "passed":
                    results[ex].update(
                        status="failed",
                        message=f"the exercise cell raised {o.get('ename')}: {str(o.get('evalue'))[:200]}",
                    )
    for r in results.values():
        if r["status"] == "missing" and not r["message"]:
            r["message"] = (
                f"the check did not finish within {timeout} s (an endless loop?) and was interrupted"
            )
    return {"results": list(results.values()), "errors": errors, "seconds": round(time.time() - start, 1)}


def _grade_job(args):
    student, sub, inst, timeout = args
    return student, inst.name, grade_notebook(sub, inst, timeout)


def grade_class(
    submissions: Path,
    instructor: Path = Path("notebooks"),
    out: Path = Path("build/grades"),
    timeout: int = 120,
    workers: int = 2,
) -> Path:
    """Grade SUBMISSIONS/<student>/<NN_topic>.ipynb into out/gradebook.csv and out/feedback/<student>.md."""
    submissions, instructor, out = Path(submissions), Path(instructor), Path(out)
    if not submissions.is_dir():
        raise FileNotFoundError(
            f"{submissions} is not a folder; expected SUBMISSIONS/<student>/<NN_topic>.ipynb"
        )
    notebooks = {p.name: p for p in sorted(instructor.glob("[0-9][0-9]_*.ipynb"))}
    students = sorted(p for p in submissions.iterdir() if p.is_dir())
    jobs, missing = [], []
    for st in students:
        for sub in sorted(st.glob("*.ipynb")):
            if sub.name in notebooks:
                jobs.append((st.name, sub, notebooks[sub.name], timeout))
            else:
                missing.append((st.name, sub.name))
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        graded = list(pool.map(_grade_job, jobs))
    rows, feedback = [], {st.name: [] for st in students}
    for student, nb_name, res in graded:
        feedback[student].append(f"## {nb_name} ({res['seconds']} s)")
        for r in res["results"]:
            rows.append(
                {
                    "student": student,
                    "notebook": nb_name,
                    "exercise": r["id"],
                    "points": r["points"],
                    "max": r["max"],
                    "status": r["status"],
                    "message": r["message"],
                }
            )
            feedback[student].append(
                f"- {r['id']}: {r['points']}/{r['max']} {r['status']}"
                + (f": {r['message']}" if r["message"] else "")
            )
        feedback[student] += [f"- problem: {e}" for e in res["errors"]]
    for student, name in missing:
        feedback[student].append(f"## {name}\n- not graded: no instructor notebook of that name")
    out.mkdir(parents=True, exist_ok=True)
    (out / "feedback").mkdir(exist_ok=True)
    book = out / "gradebook.csv"
    with open(book.with_suffix(".tmp"), "w", newline="") as f:
        w = csv.DictWriter(f, ["student", "notebook", "exercise", "points", "max", "status", "message"])
        w.writeheader()
        w.writerows(rows)
    os.replace(book.with_suffix(".tmp"), book)
    for student, lines in feedback.items():
        total = sum(r["points"] for r in rows if r["student"] == student)
        most = sum(r["max"] for r in rows if r["student"] == student)
        text = f"# Feedback for {student}: {total}/{most} points\n\n" + "\n".join(lines) + "\n"
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
    p = argparse.ArgumentParser(prog="python -m peftlab.nbtools", description=__doc__.split("\n")[0])
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
    s.add_argument("--workers", type=int, default=2)
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
        book = grade_class(a.submissions, a.instructor, a.out, a.timeout, a.workers)
        with open(book) as f:
            rows = list(csv.DictReader(f))
        print(f"graded {len({r['student'] for r in rows})} students -> {book} and {a.out / 'feedback'}/")
    elif a.cmd == "workbook":
        run_workbook(a.src, a.dest, a.results)


if __name__ == "__main__":
    sys.exit(main())
