"""Checks for notebooks/00_why_peft.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from peftlab.grading import attempted, exercise, rng
from peftlab.memory import GB, predict


@exercise(
    "nb00.q1",
    points=2,
    hint="Weights (N x bytes) + gradients (N x bytes) + AdamW's two fp32 moments (2 x N x 4 bytes); divide by 1e9.",
    needs=["full_ft_memory_gb"],
)
def _(ns):
    f = ns["full_ft_memory_gb"]
    g = rng(0)
    cases = [(int(n), int(b)) for n, b in zip(g.integers(10**6, 10**11, size=6), g.choice([2, 4], size=6))]
    for n, b in cases:
        want = predict(n, n, bytes_per_param=b).total / GB
        got = float(attempted(f(n, b)))
        assert math.isclose(got, want, rel_tol=1e-6), (
            f"full_ft_memory_gb({n:,}, bytes_per_param={b}) returned {got:.3f} GB; expected {want:.3f} GB"
        )


@exercise(
    "nb00.q2",
    points=2,
    hint="Full fine-tuning keeps n_tasks whole copies; PEFT keeps one base plus n_tasks adapters.",
    needs=["storage_bytes"],
)
def _(ns):
    f = ns["storage_bytes"]
    g = rng(1)
    for _ in range(6):
        n, a, t = int(g.integers(10**6, 10**10)), int(g.integers(10**3, 10**7)), int(g.integers(1, 50))
        b = int(g.choice([2, 4]))
        got = attempted(f(n, a, t, b))
        assert isinstance(got, tuple) and len(got) == 2, (
            "return a pair: (full_copies_bytes, base_plus_adapters_bytes)"
        )
        want = (t * n * b, n * b + t * a * b)
        assert tuple(int(x) for x in got) == want, (
            f"storage_bytes({n:,}, {a:,}, n_tasks={t}, bytes_per_param={b}) returned {got}; expected {want}"
        )


@exercise(
    "nb00.q3",
    points=3,
    hint="scores = Q @ K^T / sqrt(d_k); weights = softmax over the last axis (the keys); return weights @ V.",
    needs=["attention"],
)
def _(ns):
    f = ns["attention"]
    gen = torch.Generator().manual_seed(int(rng(2).integers(1 << 30)))
    for shape in [(5, 8), (2, 7, 16), (3, 4, 6, 32)]:
        *lead, t, d = shape
        q, k, v = (torch.randn(*shape, generator=gen) for _ in range(3))
        got = attempted(f(q, k, v))
        want = F.scaled_dot_product_attention(q, k, v)
        assert torch.is_tensor(got) and got.shape == want.shape, (
            f"for Q, K, V of shape {tuple(shape)} expected an output of shape {tuple(want.shape)}"
        )
        assert torch.allclose(got, want, atol=1e-5), (
            f"for inputs of shape {tuple(shape)} the output differs from torch's scaled_dot_product_attention "
            f"(max abs diff {(got - want).abs().max():.3g})"
        )
