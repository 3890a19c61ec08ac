"""Checks for notebooks/07_showdown.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

from peftlab.classroom.grading import attempted, exercise, rng
from peftlab.rouge import compute_rouge

# words the Porter stemmer leaves alone, so "by hand" (no stemming) and the package (stemming on) agree
WORDS = ["cat", "dog", "sun", "red", "big", "map", "pen", "cup", "bank", "rate", "cut", "vote", "team", "win"]


def random_sentence(g, lo: int = 1, hi: int = 9) -> str:
    return " ".join(g.choice(WORDS, size=int(g.integers(lo, hi))))


@exercise(
    "nb07.q1",
    points=2,
    hint="Count each word at most min(times in prediction, times in reference); P = overlap / len(pred), "
    "R = overlap / len(ref), F = 2PR / (P + R), and 0 when nothing overlaps.",
    needs=["rouge1_f"],
)
def _(ns):
    f = ns["rouge1_f"]
    g = rng(7)
    for _ in range(25):
        pred, ref = random_sentence(g), random_sentence(g)
        got = attempted(f(pred, ref))
        want = compute_rouge([pred], [ref])["rouge1"]
        assert abs(float(got) - want) < 1e-6, f"rouge1_f({pred!r}, {ref!r}) = {got}, expected {want:.4f}"


def reference_best_per_param(rows: list[dict]) -> str:
    base = next(r["rougeL"] for r in rows if r["method"] == "base")
    trained = [r for r in rows if r["trainable"]]
    return max(trained, key=lambda r: (r["rougeL"] - base) / r["trainable"])["method"]


def random_table(g) -> list[dict]:
    """A table like the real ones: reference rows with 0 trainable, gains that may be negative, and a base well
    above 0, so that forgetting to subtract it, or picking the fewest parameters, gives another answer."""
    base = float(g.uniform(0.1, 0.25))
    rows = [
        {"method": "base", "rougeL": base, "trainable": 0},
        {"method": "lead_n", "rougeL": 0.3, "trainable": 0},
    ]
    for i in range(int(g.integers(3, 8))):
        rows.append(
            {
                "method": f"m{i}",
                "rougeL": float(g.uniform(base - 0.08, base + 0.2)),
                "trainable": int(10 ** g.uniform(2, 7)),
            }
        )
    return rows


def _distinguishing_tables(g, n: int) -> list[list[dict]]:
    """Random tables on which the common wrong answers (no base subtraction, fewest parameters) differ."""

    def no_base(rows):
        return max((r for r in rows if r["trainable"]), key=lambda r: r["rougeL"] / r["trainable"])["method"]

    def fewest(rows):
        return min((r for r in rows if r["trainable"]), key=lambda r: r["trainable"])["method"]

    out = []
    while len(out) < n:
        rows = random_table(g)
        want = reference_best_per_param(rows)
        if no_base(rows) != want and fewest(rows) != want:
            out.append(rows)
    return out


@exercise(
    "nb07.q2",
    points=2,
    hint="Skip the rows with 0 trainable parameters; score = (ROUGE-L - base ROUGE-L) / trainable; "
    "return the method name with the largest score (gains can be negative).",
    needs=["best_per_param"],
)
def _(ns):
    f = ns["best_per_param"]
    g = rng(11)
    for rows in [random_table(g) for _ in range(10)] + _distinguishing_tables(g, 10):
        got = attempted(f([dict(r) for r in rows]))
        assert got == reference_best_per_param(rows), f"best_per_param picked {got!r} on {rows}"


@exercise(
    "nb07.q3",
    points=1,
    hint="(method - base) / (full - base): 1.0 means the method recovers all of full fine-tuning's gain.",
    needs=["gain_recovered"],
)
def _(ns):
    f = ns["gain_recovered"]
    g = rng(3)
    for _ in range(20):
        base, full = float(g.uniform(0, 0.1)), float(g.uniform(0.2, 0.5))
        m = float(g.uniform(0.0, 0.5))
        got = attempted(f(m, base, full))
        want = (m - base) / (full - base)
        assert abs(float(got) - want) < 1e-9, (
            f"gain_recovered({m:.3f}, {base:.3f}, {full:.3f}) = {got}, want {want:.4f}"
        )
