"""Checks for notebooks/08_real_model.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import math

import numpy as np

from peftlab import scoring
from peftlab.classroom.grading import attempted, exercise, rng


def correlated_scores(g, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-article scores of two systems that share article difficulty (as real ones do), b a little better."""
    difficulty = g.uniform(0, 0.6, size=n)
    a = np.clip(difficulty + g.normal(0, 0.05, size=n), 0, 1)
    b = np.clip(difficulty + 0.03 + g.normal(0, 0.05, size=n), 0, 1)
    return a, b


@exercise(
    "nb08.q1",
    points=3,
    hint="Draw idx = rng.integers(0, n, size=(n_resamples, n)) ONCE and use it for both systems: the "
    "difference per resample is (a[idx] - b[idx]).mean(axis=1); the interval is its 2.5th and 97.5th percentile.",
    needs=["paired_bootstrap"],
)
def _(ns):
    f = ns["paired_bootstrap"]
    g = rng(8)
    for n in (40, 150, 300):
        a, b = correlated_scores(g, n)
        got = attempted(f(a.copy(), b.copy(), n_resamples=2000, seed=int(g.integers(1 << 30))))
        diff, lo, hi = (float(x) for x in got)
        want, w_lo, w_hi = scoring.paired_diff_ci(a, b, scoring.bootstrap_indices(n, 4000, seed=1))
        width = w_hi - w_lo
        assert abs(diff - want) < 1e-9, (
            f"the difference itself is mean(a) - mean(b) = {want:.4f}, got {diff:.4f}"
        )
        assert lo < diff < hi, f"the interval [{lo:.4f}, {hi:.4f}] does not contain the difference {diff:.4f}"
        assert abs(lo - w_lo) < 0.2 * width and abs(hi - w_hi) < 0.2 * width, (
            f"with {n} articles the 95% paired interval is about [{w_lo:.4f}, {w_hi:.4f}]; yours is "
            f"[{lo:.4f}, {hi:.4f}] (same articles for both systems? with replacement? the mean, not single scores?)"
        )


def reference_exposure(logprobs, true_index: int) -> float:
    """Exposure (Carlini et al. 2019): log2(#candidates) - log2(rank of the true secret), rank 1 = likeliest."""
    lp = np.asarray(logprobs, dtype=np.float64)
    rank = 1 + int((lp > lp[true_index]).sum())
    return math.log2(len(lp)) - math.log2(rank)


@exercise(
    "nb08.q2",
    points=2,
    hint="rank = 1 + (number of candidates strictly more likely than the true one); exposure = "
    "log2(number of candidates) - log2(rank): 0 bits when the secret is the least likely, log2(N) when it is the likeliest.",
    needs=["exposure"],
)
def _(ns):
    f = ns["exposure"]
    g = rng(9)
    for _ in range(30):
        n = int(g.integers(10, 1000))
        lp = g.normal(-8, 2, size=n)
        i = int(g.integers(0, n))
        if g.random() < 0.2:
            i = int(lp.argmax())  # the likeliest: full exposure
        got = float(attempted(f(lp.copy(), i)))
        want = reference_exposure(lp, i)
        assert abs(got - want) < 1e-9, f"exposure of candidate {i} of {n} is {want:.4f} bits, got {got:.4f}"
