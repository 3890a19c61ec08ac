"""Checks for notebooks/00_why_peft.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import copy
import functools
import math

import torch
import torch.nn.functional as F

from peftlab.classroom.grading import attempted, exercise, rng

PREDICTION_TOLERANCE = 0.02  # nb00.q2: a prediction within 2 % of the measurement scores


def reference_train_bytes(n_params: int, n_trainable: int, bytes_per_param: int = 4) -> int:
    """Weights + gradients + fp32 master copy (16-bit weights only) + AdamW's two fp32 moments, in bytes."""
    weights = n_params * bytes_per_param
    gradients = n_trainable * bytes_per_param
    master = n_trainable * 4 if bytes_per_param < 4 else 0
    moments = 2 * n_trainable * 4
    return weights + gradients + master + moments


@exercise(
    "nb00.q1",
    points=2,
    hint="Weights: every parameter. Gradients, AdamW's two fp32 moments and (for 16-bit weights) the fp32 master "
    "copy: only the trainable ones. Divide by 1e9.",
    needs=["train_memory_gb"],
)
def _(ns):
    f = ns["train_memory_gb"]
    g = rng(0)
    cases = []
    for i in range(8):
        n = int(g.integers(10**6, 10**11))
        t = n if i % 3 == 0 else int(n * g.uniform(1e-4, 0.3))  # full fine-tuning, or a PEFT-sized subset
        cases.append((n, t, (2, 4)[i % 2]))
    for n, t, b in cases:
        want = reference_train_bytes(n, t, b) / 1e9
        got = float(attempted(f(n, t, b)))
        assert math.isclose(got, want, rel_tol=1e-6), (
            f"train_memory_gb({n:,}, {t:,}, bytes_per_param={b}) returned {got:,.3f} GB; expected {want:,.3f} GB"
        )


@functools.lru_cache(maxsize=1)
def tiny_step_counts() -> tuple[int, int, int]:
    """(base parameters, LoRA r=8 q/v trainable, LoRA model's parameters) of the tiny model, counted by peftlab."""
    from peftlab import LoraConfig, get_peft_model, models

    model, _ = models.load("tiny")
    n = sum(p.numel() for p in model.parameters())
    lora = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    t, n_all = lora.get_nb_trainable_parameters()
    return n, t, n_all


@exercise(
    "nb00.q2",
    points=2,
    hint="fp32 step: 4 bytes per weight, plus 4 (gradient) + 8 (two AdamW moments) per *trainable* weight. "
    "The LoRA model's weights are the base's plus the adapter's. MB = 1e6 bytes; activations are left out.",
    needs=["predict_full_mb", "predict_lora_mb"],
)
def _(ns):
    n, t, n_all = tiny_step_counts()
    measured = {  # what measure_step counts in weights + gradients + optimizer (to a few bytes of buffers)
        "predict_full_mb": reference_train_bytes(n, n) / 1e6,
        "predict_lora_mb": (4 * n_all + 12 * t) / 1e6,
    }
    for name, want in measured.items():
        got = float(attempted(ns[name]))
        assert abs(got - want) <= PREDICTION_TOLERANCE * want, (
            f"{name} = {got:,.2f} MB is more than {PREDICTION_TOLERANCE:.0%} away from what one step holds "
            "(count weights, gradients and AdamW state per parameter)"
        )


@exercise(
    "nb00.q3",
    points=2,
    hint="Full fine-tuning keeps n_tasks whole copies; PEFT keeps one base plus n_tasks adapters.",
    needs=["storage_bytes"],
)
def _(ns):
    f = ns["storage_bytes"]
    g = rng(1)
    for _ in range(6):
        n, a, t = int(g.integers(10**6, 10**10)), int(g.integers(10**3, 10**7)), int(g.integers(2, 50))
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
    "nb00.q4",
    points=3,
    hint="scores = Q @ K^T / sqrt(d_k); weights = softmax over the last axis (the keys); return weights @ V.",
    needs=["attention"],
)
def _(ns):
    f = ns["attention"]
    gen = torch.Generator().manual_seed(int(rng(2).integers(1 << 30)))
    for shape in [(5, 8), (2, 7, 16), (3, 4, 6, 32), (2, 3, 9, 4)]:
        q, k, v = (torch.randn(*shape, generator=gen) for _ in range(3))
        k = k * 3  # scores spread enough that a missing or wrong scale shows
        got = attempted(f(q, k, v))
        want = F.scaled_dot_product_attention(q, k, v)
        assert torch.is_tensor(got) and got.shape == want.shape, (
            f"for Q, K, V of shape {tuple(shape)} expected an output of shape {tuple(want.shape)}"
        )
        assert torch.allclose(got, want, atol=1e-5), (
            f"for inputs of shape {tuple(shape)} the output differs from torch's scaled_dot_product_attention "
            f"(max abs diff {(got - want).abs().max():.3g})"
        )
