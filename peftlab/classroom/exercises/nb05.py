"""Checks for notebooks/05_lora.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import copy
import numbers

import torch
from torch import nn

from peftlab import LoraConfig, get_peft_model
from peftlab.classroom.grading import attempted, exercise, rng
from peftlab.methods.lora import LoraLinear


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


# -- nb05.q2: the student's LoRALinear ------------------------------------------------------------------------------
def _tolerance(dtype) -> tuple[float, float]:
    """(rtol, atol relative to the output's size) for comparing with peftlab, which keeps A and B in float32."""
    return (3e-2, 3e-2) if dtype in (torch.bfloat16, torch.float16) else (1e-4, 1e-5)


def _close(got, want, dtype) -> bool:
    rtol, atol = _tolerance(dtype)
    return torch.allclose(got.double(), want.double(), rtol=rtol, atol=atol * (1 + want.abs().max().item()))


def _param(layer, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    p = getattr(layer, name, None)
    assert isinstance(p, torch.Tensor), f"your layer has no tensor `{name}` (self.{name} = nn.Parameter(...))"
    assert tuple(p.shape) == shape, f"`{name}` must have shape {shape}, got {tuple(p.shape)}"
    return p


def _check_layer(cls, g, dtype) -> None:
    d, k = (int(x) for x in g.integers(2, 40, size=2))
    r = int(g.integers(1, min(d, k) + 1))
    alpha = float(g.choice([1, 4, 8, 16, 32]))
    where = f"(in={k}, out={d}, r={r}, alpha={alpha:g}, {dtype})"
    base = nn.Linear(k, d, bias=bool(g.integers(2)), dtype=dtype)
    W0 = base.weight.detach().clone()
    reference = LoraLinear(copy.deepcopy(base))
    reference.add("default", LoraConfig(r=r, lora_alpha=alpha, target_modules=["x"], init_lora_weights=False))
    x = torch.randn(2, 3, k).to(dtype)
    with torch.no_grad():
        plain = base(x)

    layer = cls(base, r, alpha)
    with torch.no_grad():
        out = attempted(layer(x))
    assert torch.is_tensor(out) and tuple(out.shape) == tuple(plain.shape), (
        f"forward of a layer {where} on x of shape {tuple(x.shape)} must return shape {tuple(plain.shape)}"
    )
    assert out.dtype == dtype, f"forward {where} returned {out.dtype}: return the base layer's dtype"
    A = _param(layer, "lora_A", (r, k))
    B = _param(layer, "lora_B", (d, r))
    assert torch.count_nonzero(B) == 0, (
        f"lora_B must start at zero {where}, so the layer starts as the base layer"
    )
    assert _close(out, plain, dtype), (
        f"at init (B = 0) your layer {where} must return exactly the base layer's output"
    )
    assert torch.isfinite(A).all() and A.abs().max() > 0 and A.float().std() > 0, (
        f"lora_A must start random {where} (kaiming_uniform_), not zero or constant: with A = 0 nothing ever trains"
    )
    bound = 1 / k**0.5
    assert A.abs().max().item() <= bound * 1.001, (
        f"lora_A starts too large {where}: kaiming_uniform_(A, a=math.sqrt(5)) draws from +-1/sqrt(in) = +-{bound:.3f}, "
        f"yours reaches {A.abs().max().item():.3f}"
    )
    if r * k >= 64:
        assert A.float().std().item() > 0.4 * bound, (
            f"lora_A is too small {where}: kaiming_uniform_(A, a=math.sqrt(5)) has std 0.58/sqrt(in)"
        )
    scaling = getattr(layer, "scaling", None)
    assert isinstance(scaling, (int, float)) and abs(scaling - alpha / r) <= 1e-6 * (alpha / r), (
        f"self.scaling must be alpha / r = {alpha / r:g} {where}; got {scaling!r}"
    )
    trainable = {id(p) for p in layer.parameters() if p.requires_grad}
    assert id(A) in trainable and id(B) in trainable, (
        "lora_A and lora_B must be trainable parameters of the layer (nn.Parameter, requires_grad=True)"
    )
    assert not base.weight.requires_grad and (base.bias is None or not base.bias.requires_grad), (
        "freeze the base layer: its weight (and bias) must have requires_grad=False"
    )
    n_trainable = sum(p.numel() for p in layer.parameters() if p.requires_grad)
    assert n_trainable == r * (d + k), (
        f"your layer {where} trains {n_trainable} numbers; LoRA trains r(in + out) = {r * (d + k)}"
    )

    # the forward pass with nonzero A and B: peftlab's own, copied into the student's layer
    with torch.no_grad():
        nn.init.normal_(reference.lora_B["default"].weight, std=0.5)
        A.copy_(reference.lora_A["default"].weight)
        B.copy_(reference.lora_B["default"].weight)
        want = reference(x)
        got = attempted(layer(x))
    diff = (got.double() - want.double()).abs().max().item()
    assert _close(got, want, dtype), (
        f"with nonzero A and B your output {where} differs from peftlab.methods.lora.LoraLinear by up to {diff:.3g}: "
        "h = base(x) + (alpha / r) * x A^T B^T"
    )
    out = layer(x)
    assert out.requires_grad, (
        "no gradient flows through your forward: use self.lora_A / self.lora_B, not .data"
    )
    out.float().square().sum().backward()
    assert A.grad is not None and B.grad is not None and A.grad.abs().sum() > 0 and B.grad.abs().sum() > 0, (
        f"after backward {where}, lora_A and lora_B must both have nonzero gradients: the branch must use them"
    )
    A.grad = B.grad = None
    delta = reference.delta_weight("default").to(dtype)  # (d, k)

    merged = layer.merge()
    assert merged is None or merged is layer, "merge() changes the layer in place (it returns nothing)"
    assert _close(base.weight.detach(), W0 + delta, dtype), (
        f"after merge() the base weight {where} must be W0 + (alpha / r) * B @ A (shape out x in)"
    )
    with torch.no_grad():
        after = attempted(layer(x))
    assert _close(after, want, dtype), (
        f"after merge() the output {where} must not change (the update is now inside W: do not add B A x again)"
    )
    layer.unmerge()
    assert _close(base.weight.detach(), W0, dtype), (
        f"after unmerge() the base weight {where} must be W0 again"
    )
    with torch.no_grad():
        again = attempted(layer(x))
    assert _close(again, want, dtype), f"after unmerge() the output {where} must be the adapted output again"


def _inject(model: nn.Module, cls, r: int, alpha: float, targets=("q_proj", "v_proj")) -> None:
    for module in list(model.modules()):
        for t in targets:
            child = getattr(module, t, None)
            if isinstance(child, nn.Linear):
                setattr(module, t, cls(child, r, alpha))


def _check_training(cls, g) -> None:
    """The student's layer in q_proj/v_proj of a random LLaMA trains exactly like peftlab's LoRA (same init)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(int(g.integers(1 << 30)))
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    r, alpha = int(g.choice([2, 4, 8])), float(g.choice([4, 16]))
    base = LlamaForCausalLM(cfg)
    ref = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=r, lora_alpha=alpha, target_modules=["q_proj", "v_proj"])
    )
    mine = copy.deepcopy(base)
    for p in mine.parameters():
        p.requires_grad_(False)
    _inject(mine, cls, r, alpha)
    ref_layers = [m for m in ref.modules() if isinstance(m, LoraLinear)]
    my_layers = [m for m in mine.modules() if isinstance(m, cls)]
    assert len(my_layers) == len(ref_layers), "could not put your layer into q_proj and v_proj"
    with torch.no_grad():
        for mine_l, ref_l in zip(my_layers, ref_layers):
            mine_l.lora_A.copy_(ref_l.lora_A["default"].weight)
            mine_l.lora_B.zero_()
    n_mine = sum(p.numel() for p in mine.parameters() if p.requires_grad)
    n_ref = ref.get_nb_trainable_parameters()[0]
    assert n_mine == n_ref, (
        f"with your layer in q_proj/v_proj the model trains {n_mine:,} numbers; peftlab's LoRA {n_ref:,}"
    )
    gen = torch.Generator().manual_seed(int(g.integers(1 << 30)))
    batches = [torch.randint(0, cfg.vocab_size, (4, 12), generator=gen) for _ in range(4)]
    losses = {}
    for name, model in (("yours", mine), ("peftlab", ref)):
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-2)
        model.train()
        losses[name] = []
        for ids in batches:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses[name].append(loss.item())
    worst = max(abs(a - b) for a, b in zip(losses["yours"], losses["peftlab"]))
    assert worst <= 1e-5, (
        f"in q_proj/v_proj of a small LLaMA (r={r}, alpha={alpha:g}), trained 4 AdamW steps from the same init, your "
        f"losses {[round(v, 6) for v in losses['yours']]} differ from peftlab's {[round(v, 6) for v in losses['peftlab']]}"
    )


@exercise(
    "nb05.q2",
    points=5,
    hint=(
        "h = base(x) + scaling * (x @ A.T) @ B.T with A (r, in), B (out, r), scaling = alpha / r; merge adds "
        "scaling * B @ A to base.weight and remembers it, unmerge subtracts it."
    ),
    needs=["LoRALinear"],
)
def _(ns):
    cls = ns["LoRALinear"]
    assert isinstance(cls, type) and issubclass(cls, nn.Module), "LoRALinear must be a class (an nn.Module)"
    g = rng(6)
    torch.manual_seed(int(g.integers(1 << 30)))
    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float32):
        _check_layer(cls, g, dtype)
    _check_training(cls, g)


# -- nb05.q3: predict, then run --------------------------------------------------------------------------------------
PREDICT_TOLERANCE = 0.10  # a prediction within 10 % of the measured value passes


def reference_all_linear_pct(r: int = 4) -> float:
    """Trainable % (of all parameters, adapter included) of LoRA rank r on every linear layer of `tiny`."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from peftlab import models

    config = AutoConfig.from_pretrained(models.tiny_path())
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    trainable, total = get_peft_model(
        model, LoraConfig(r=r, target_modules="all-linear")
    ).get_nb_trainable_parameters()
    return 100 * trainable / total


@exercise(
    "nb05.q3",
    points=2,
    hint=(
        "Per block: r * (in + out) for each of the 7 linear layers (q, k, v, o, gate, up, down); times 6 blocks; "
        "divide by all parameters (the 6.5M base plus the adapter) and multiply by 100."
    ),
    needs=["predicted_pct"],
)
def _(ns):
    guess = attempted(ns["predicted_pct"])
    assert isinstance(guess, numbers.Real) and not isinstance(guess, bool), (
        "predicted_pct must be a number (a percentage)"
    )
    guess = float(guess)
    measured = reference_all_linear_pct(4)
    assert abs(guess - measured) <= PREDICT_TOLERANCE * measured, (
        f"your prediction {guess:g} % is more than {PREDICT_TOLERANCE:.0%} away from what LoRA r=4 on all linear "
        "layers really trains (the next cell measures it)"
    )


# -- nb05.q4: a rank for a budget ------------------------------------------------------------------------------------
BUDGET_D, BUDGET_K, BUDGET_SHARE = 4096, 4096, 0.01
TRUE_STATEMENTS = {"a", "d"}


def _letters(answer) -> set[str]:
    if isinstance(answer, str):
        items = [c for c in answer if c.isalpha()]
    elif isinstance(answer, (set, frozenset, list, tuple)):
        items = list(answer)
    else:
        raise AssertionError("true_statements must be a set of letters, e.g. {'a', 'c'}")
    assert all(isinstance(c, str) for c in items), "true_statements must hold letters ('a' to 'd')"
    letters = {c.strip().lower() for c in items}
    assert letters <= set("abcd"), f"the statements are a, b, c and d; got {sorted(letters)}"
    return letters


@exercise(
    "nb05.q4",
    points=3,
    hint=(
        "LoRA trains r * (d + k) parameters: find the largest r with r * (d + k) <= 1 % of d * k. For the statements: "
        "what is B at step 0, what does merging leave behind, and what rank can B A have?"
    ),
    needs=["chosen_r", "true_statements"],
)
def _(ns):
    budget = BUDGET_SHARE * BUDGET_D * BUDGET_K
    r = attempted(ns["chosen_r"])
    whole = isinstance(r, numbers.Integral) or (isinstance(r, float) and r.is_integer())
    assert whole and not isinstance(r, bool) and r >= 1, "chosen_r must be a whole number >= 1"
    r = int(r)
    count = reference_count(BUDGET_D, BUDGET_K, r)
    assert count <= budget, f"rank {r} trains {count:,} parameters, more than the budget {budget:,.0f}"
    assert reference_count(BUDGET_D, BUDGET_K, r + 1) > budget, (
        f"rank {r + 1} also fits the budget: pick the largest rank that fits"
    )
    letters = _letters(attempted(ns["true_statements"]))
    assert letters == TRUE_STATEMENTS, (
        "the rank is right, but at least one of the four statements is judged wrong"
    )
