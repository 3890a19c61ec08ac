"""Checks for notebooks/01_rank.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import functools
import math

import torch

from peftlab.classroom.grading import attempted, exercise, rng


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


def reference_rank_for_budget(d: int, k: int, fraction: float) -> int:
    """The largest r whose two factors (d x r and r x k) fit in fraction * d * k numbers (0 if none does)."""
    r = math.floor(fraction * d * k / (d + k))
    while r > 0 and r * (d + k) > fraction * d * k:  # guard against rounding
        r -= 1
    while (r + 1) * (d + k) <= fraction * d * k:
        r += 1
    return r


def reference_update_rank(W0: torch.Tensor, W1: torch.Tensor, share: float = 0.9) -> int:
    """Smallest r whose top-r singular directions hold `share` of ||W1 - W0||_F^2 (0 for no change)."""
    S2 = torch.linalg.svdvals((W1 - W0).double()).square()
    if S2.sum() == 0:
        return 0
    energy = S2.cumsum(0) / S2.sum()
    return int((energy < share).sum()) + 1


@functools.lru_cache(maxsize=1)
def tiny_q_proj() -> torch.Tensor:
    """The weight the notebook studies: q_proj of the tiny model's first block (float64)."""
    from peftlab import models

    model, _ = models.load("tiny")
    return model.model.layers[0].self_attn.q_proj.weight.detach().double().clone()


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
    for i in range(8):
        d, k = (int(x) for x in g.integers(2, 40, size=2))
        r = int(g.integers(0, min(d, k) + 1))
        scale = (1e-9, 1.0, 1e12)[i % 3]  # "tiny compared with the largest one", not compared with 1
        M = (_low_rank(d, k, r, gen) if r else torch.zeros(d, k, dtype=torch.float64)) * scale
        got = int(attempted(f(M)))
        assert got == r, (
            f"rank_of(a {d}x{k} matrix built as a product through {r} dimensions, entries of size ~{scale:g}) "
            f"returned {got}, expected {r}"
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
    for i in range(6):
        d, k = (int(x) for x in g.integers(3, 60, size=2))
        r = int(g.integers(1, min(d, k)))
        dtype = (torch.float64, torch.float32)[i % 2]
        W = torch.randn(d, k, generator=gen, dtype=torch.float64).to(dtype)
        got = attempted(f(W, r))
        assert torch.is_tensor(got) and got.shape == W.shape, (
            f"low_rank_approx(W {d}x{k}, {r}) must return a {d}x{k} tensor"
        )
        want = reference_low_rank(W.double(), r)
        rank = int(torch.linalg.matrix_rank(got.double(), rtol=1e-5 if dtype == torch.float32 else 1e-10))
        assert rank <= r, f"the result for r={r} has rank {rank}"
        assert torch.allclose(got.double(), want, atol=1e-4 if dtype == torch.float32 else 1e-8), (
            f"for a random {d}x{k} matrix and r={r}, your approximation is not the best rank-{r} one "
            f"(its error {float((W.double() - got.double()).norm()):.4f} vs the best {float((W.double() - want).norm()):.4f})"
        )


@exercise(
    "nb01.q3",
    points=2,
    hint="Factors of rank r store d*r + r*k numbers: the largest r with r*(d+k) <= fraction*d*k. Then read the "
    "error of W's best approximation at the rank the notebook's budget allows.",
    needs=["rank_for_budget", "chosen_error"],
)
def _(ns):
    f = ns["rank_for_budget"]
    g = rng(13)
    cases = [(256, 256, 0.25), (4096, 4096, 0.01)]
    cases += [
        (int(d), int(k), float(p))
        for d, k, p in zip(g.integers(2, 5000, 8), g.integers(2, 5000, 8), g.uniform(0.005, 0.9, 8))
    ]
    for d, k, fraction in cases:
        want = reference_rank_for_budget(d, k, fraction)
        got = attempted(f(d, k, fraction))
        assert int(got) == want, (
            f"rank_for_budget({d}, {k}, {fraction:.4g}) returned {got}; rank {want} is the largest within "
            f"{fraction * d * k:,.0f} numbers (rank {int(got)} stores {int(got) * (d + k):,})"
        )
    W = tiny_q_proj()
    r = reference_rank_for_budget(*W.shape, 0.25)
    err = float(attempted(ns["chosen_error"]))
    assert math.isclose(err, relative_error(W, r), abs_tol=0.01), (
        f"chosen_error = {err:.3f} is not the relative error of W's best rank-{r} approximation (the largest rank "
        "within 25 % of W's numbers); read it from `errors` or the plot"
    )


def _update_case(g, gen) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A full-rank W0 and W1 = W0 + dW, where dW has a decaying spectrum (every direction non-zero) and no
    singular direction sits within 1e-3 of the share threshold."""
    while True:
        d, k = (int(x) for x in g.integers(8, 80, size=2))
        n = min(d, k)
        share = float(g.choice([0.5, 0.8, 0.9, 0.95]))
        S = torch.exp(-torch.arange(n, dtype=torch.float64) / float(g.uniform(0.5, n / 3)))
        energy = S.square().cumsum(0) / S.square().sum()
        if (energy - share).abs().min() > 1e-3:
            break
    U, _ = torch.linalg.qr(torch.randn(d, n, generator=gen, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(k, n, generator=gen, dtype=torch.float64))
    W0 = torch.randn(d, k, generator=gen, dtype=torch.float64)
    dW = U @ torch.diag(S) @ V.T
    dW *= float(g.uniform(0.05, 0.5)) * W0.norm() / dW.norm()  # a change much smaller than W0
    return W0, W0 + dW, share


@exercise(
    "nb01.q4",
    points=3,
    hint="delta = W1 - W0; S = torch.linalg.svdvals(delta); energy = cumsum(S**2) / sum(S**2); the rank is the "
    "number of directions whose cumulative energy is still below `share`, plus one.",
    needs=["update_rank"],
)
def _(ns):
    f = ns["update_rank"]
    g = rng(14)
    gen = torch.Generator().manual_seed(int(g.integers(1 << 30)))
    for i in range(8):
        W0, W1, share = _update_case(g, gen)
        dtype = (torch.float64, torch.float32)[i % 2]
        W0, W1 = W0.to(dtype), W1.to(dtype)
        want = reference_update_rank(W0, W1, share)
        got = attempted(f(W0, W1, share))
        assert int(got) == want, (
            f"update_rank for a {tuple(W0.shape)} {str(dtype).split('.')[-1]} update, share={share} returned {got}; "
            f"the top {want} singular directions of W1 - W0 are the fewest that hold {share:.0%} of its energy"
        )
    W0 = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    assert int(attempted(f(W0, W0.clone(), 0.9))) == 0, "no change (W1 == W0) has rank 0"
