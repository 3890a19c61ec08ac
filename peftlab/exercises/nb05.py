"""Checks for notebooks/05_lora.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from torch import nn

from peftlab import LoraConfig, get_peft_model
from peftlab.grading import attempted, exercise, rng


class _One(nn.Module):
    """A model that is a single Linear layer named `proj`, for counting with the package."""

    def __init__(self, d: int, k: int, device="meta"):
        super().__init__()
        self.proj = nn.Linear(k, d, bias=False, device=device)  # weight (d, k)

    def forward(self, x):
        return self.proj(x)


def reference_count(d: int, k: int, r: int) -> int:
    """Trainable parameters of LoRA rank r on one d x k Linear, counted by peftlab itself (on the meta device)."""
    model = get_peft_model(_One(d, k), LoraConfig(r=r, target_modules=["proj"]))
    return model.get_nb_trainable_parameters()[0]


@exercise("nb05.q1", points=2, hint="A is r x k and B is d x r.", needs=["lora_param_count"])
def _(ns):
    f = ns["lora_param_count"]
    for d, k, r in rng(5).integers(1, 4096, size=(5, 3)):
        d, k, r = int(d), int(k), int(r)
        got = attempted(f(d, k, r))
        assert got == reference_count(d, k, r), (
            f"lora_param_count({d}, {k}, {r}) returned {got}, which is wrong"
        )


@exercise(
    "nb05.q2",
    points=3,
    hint="h = x W^T + b + (alpha / r) * (x A^T) B^T  -- A is (r, k), B is (d, r), x is (..., k).",
    needs=["lora_forward"],
)
def _(ns):
    from peftlab.lora import LoraLinear

    f = ns["lora_forward"]
    g = rng(6)
    torch.manual_seed(int(g.integers(1 << 30)))
    for _ in range(4):
        d, k, r = (int(x) for x in g.integers(2, 48, size=3))
        alpha = float(g.choice([1, 8, 16, 32]))
        base = nn.Linear(k, d)
        layer = LoraLinear(base)
        layer.add("default", LoraConfig(r=r, lora_alpha=alpha, target_modules=["x"], init_lora_weights=False))
        A, B = layer.lora_A["default"].weight.detach(), layer.lora_B["default"].weight.detach()
        x = torch.randn(3, 5, k)
        with torch.no_grad():
            want = layer(x)
            got = attempted(f(x, base.weight.detach(), base.bias.detach(), A, B, alpha, r))
        assert torch.is_tensor(got) and got.shape == want.shape, (
            f"for x {tuple(x.shape)}, W {d}x{k}, r={r} the output must have shape {tuple(want.shape)}"
        )
        assert torch.allclose(got, want, atol=1e-5), (
            f"your output differs from peftlab.lora.LoraLinear (d={d}, k={k}, r={r}, alpha={alpha}); "
            f"max abs diff {(got - want).abs().max():.3g}"
        )


@exercise(
    "nb05.q3",
    points=2,
    hint="LoRA trains r * (d + k) parameters; find the largest r that keeps this within the budget.",
    needs=["chosen_r", "explanation"],
)
def _(ns):
    d, k, share = ns.get("BUDGET_D", 4096), ns.get("BUDGET_K", 4096), ns.get("BUDGET_SHARE", 0.01)
    budget = share * d * k
    r = int(attempted(ns["chosen_r"]))
    count = reference_count(d, k, r)
    assert count <= budget, f"rank {r} trains {count:,} parameters, more than the budget {budget:,.0f}"
    assert reference_count(d, k, r + 1) > budget, (
        f"rank {r + 1} also fits the budget: pick the largest rank that fits"
    )
    text = attempted(ns["explanation"])
    assert isinstance(text, str) and len(text.strip()) >= 10, (
        "explain your choice in a sentence (explanation = '...')"
    )
