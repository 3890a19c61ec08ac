"""Checks for notebooks/01_rank.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import math

import torch

from peftlab.grading import attempted, exercise, rng


def _low_rank(d: int, k: int, r: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randn(d, r, generator=gen, dtype=torch.float64) @ torch.randn(
        r, k, generator=gen, dtype=torch.float64
    )


def reference_low_rank(W: torch.Tensor, r: int) -> torch.Tensor:
    """Best rank-r approximation (Eckart-Young): keep the r largest singular values."""
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


def relative_error(W: torch.Tensor, r: int) -> float:
    """||W - W_r||_F / ||W||_F for the best rank-r approximation."""
    S = torch.linalg.svdvals(W.double())
    return float(S[r:].square().sum().sqrt() / S.square().sum().sqrt())


@exercise(
    "nb01.q1",
    points=2,
    hint="torch.linalg.svdvals gives the singular values; count those above tol * (the largest one).",
    needs=["rank_of"],
)
def _(ns):
    f = ns["rank_of"]
    g = rng(10)
    gen = torch.Generator().manual_seed(int(g.integers(1 << 30)))
    for _ in range(6):
        d, k = (int(x) for x in g.integers(2, 40, size=2))
        r = int(g.integers(0, min(d, k) + 1))
        M = _low_rank(d, k, r, gen) if r else torch.zeros(d, k, dtype=torch.float64)
        got = int(attempted(f(M)))
        assert got == r, (
            f"rank_of(a {d}x{k} matrix built as a product through {r} dimensions) returned {got}, expected {r}"
        )
        assert got == int(torch.linalg.matrix_rank(M)), "your rank disagrees with torch.linalg.matrix_rank"


@exercise(
    "nb01.q2",
    points=3,
    hint="U, S, Vh = torch.linalg.svd(W, full_matrices=False); keep the first r columns of U, r values of S, r rows of Vh.",
    needs=["low_rank_approx"],
)
def _(ns):
    f = ns["low_rank_approx"]
    g = rng(11)
    gen = torch.Generator().manual_seed(int(g.integers(1 << 30)))
    for _ in range(5):
        d, k = (int(x) for x in g.integers(3, 60, size=2))
        r = int(g.integers(1, min(d, k) + 1))
        W = torch.randn(d, k, generator=gen, dtype=torch.float64)
        got = attempted(f(W, r))
        assert torch.is_tensor(got) and got.shape == W.shape, (
            f"low_rank_approx(W {d}x{k}, {r}) must return a {d}x{k} tensor"
        )
        want = reference_low_rank(W, r)
        assert int(torch.linalg.matrix_rank(got)) <= r, (
            f"the result for r={r} has rank {int(torch.linalg.matrix_rank(got))}"
        )
        assert torch.allclose(got.double(), want, atol=1e-6), (
            f"for a random {d}x{k} matrix and r={r}, your approximation is not the best rank-{r} one "
            f"(its error {float((W - got).norm()):.4f} vs the best {float((W - want).norm()):.4f})"
        )


@exercise(
    "nb01.q3",
    points=2,
    hint="Factors of rank r store d*r + r*k numbers; find the largest r within the budget, then read its error.",
    needs=["chosen_rank", "chosen_error", "explanation"],
)
def _(ns):
    W = ns.get("W")
    assert torch.is_tensor(W) and W.ndim == 2, (
        "keep the notebook's matrix `W` (the tiny model's weight) defined"
    )
    d, k = W.shape
    budget = ns.get("BUDGET_FRACTION", 0.25) * d * k
    want = max(r for r in range(1, min(d, k) + 1) if r * (d + k) <= budget)
    r = int(attempted(ns["chosen_rank"]))
    assert r == want, (
        f"rank {r} stores {r * (d + k):,} numbers; the largest rank within {budget:,.0f} is not {r}"
    )
    err = float(attempted(ns["chosen_error"]))
    assert math.isclose(err, relative_error(W, r), abs_tol=0.01), (
        f"the relative error of the best rank-{r} approximation is not {err:.3f} (read it from the slider)"
    )
    text = attempted(ns["explanation"])
    assert isinstance(text, str) and len(text.strip()) >= 10, (
        "explain your choice in a sentence (explanation = '...')"
    )
