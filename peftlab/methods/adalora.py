r"""AdaLoRA: adaptive budget allocation for LoRA (Zhang et al. 2023, arXiv:2303.10512).

Each update is shaped like an SVD, $\Delta W = P \Lambda Q$, so a rank can be removed by zeroing one singular value:

$$ h = W_0 x + \frac{\alpha}{r_0} P\, \mathrm{diag}(\Lambda)\, Q x, \qquad P = B \in \mathbb{R}^{d \times r_0},\
   \Lambda = E \in \mathbb{R}^{r_0},\ Q = A \in \mathbb{R}^{r_0 \times k} $$

A penalty keeps P and Q near orthogonal: $R = \lVert P^\top P - I \rVert_F + \lVert Q Q^\top - I \rVert_F$ (averaged
over matrices), added to the loss as `orth_reg_weight * R`. Importance of each parameter is sensitivity
$I = |w \cdot \partial L / \partial w|$, smoothed $\bar I_t = \beta_1 \bar I_{t-1} + (1 - \beta_1) I_t$, with
uncertainty $\bar U_t = \beta_2 \bar U_{t-1} + (1 - \beta_2) |I_t - \bar I_t|$, and score $s = \bar I \cdot \bar U$. A
triplet $(P_{:,i}, \lambda_i, Q_{i,:})$ scores $s(\lambda_i) + \mathrm{mean}_j\, s(P_{ji}) + \mathrm{mean}_j\, s(Q_{ij})$.
The total rank budget falls from $b_0 = r_0 \cdot n$ to $b_T = r_T \cdot n$ on a cubic schedule,

$$ b(t) = b_T + (b_0 - b_T)\Big(1 - \frac{t - t_i}{T - t_f - t_i}\Big)^3 \quad (t_i < t \le T - t_f), $$

and the lowest-scoring triplets beyond the budget get $\lambda_i = 0$: rank moves to the layers that matter.
Names follow HF peft (`lora_A`, `lora_E`, `lora_B`, `ranknum`, `rank_pattern`); adapter files load both ways. Two
differences: `ranknum` is a plain float here (peft keeps a frozen 1-element Parameter per layer, so its "all params"
is larger by the number of layers), and we save pruned adapters at full size with zeros in `lora_E`, whereas peft
saves them truncated to the kept ranks (so a peft file saved after pruning does not load here, nor ours in peft).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from ..config import check_range
from ..inject import LINEAR_TYPES, AdapterLayer, Conv1D, find_targets, in_out_features, replace_module
from ..registry import register
from .lora import LoraConfig


@dataclass
class AdaLoraConfig(LoraConfig):
    peft_type: ClassVar[str] = "ADALORA"
    target_r: int = 8  # average rank per layer at the end
    init_r: int = 12  # rank of every layer at the start
    tinit: int = 0  # warm-up steps before any pruning
    tfinal: int = 0  # final steps with the rank pattern frozen
    deltaT: int = 1  # steps between two budget allocations
    beta1: float = 0.85  # EMA of the sensitivity
    beta2: float = 0.85  # EMA of the uncertainty
    orth_reg_weight: float = 0.5  # weight of the orthogonality penalty
    total_step: int | None = None  # training steps in all (required)
    rank_pattern: dict | None = None  # {lora_E parameter name: [kept?] * init_r}, filled in by the allocation

    def __post_init__(self):
        super().__post_init__()
        check_range("init_r", self.init_r, low=1)
        check_range(
            "target_r", self.target_r, low=0, high=self.init_r, allowed=f"between 0 and init_r={self.init_r}"
        )
        check_range("tinit", self.tinit, low=0)
        check_range("tfinal", self.tfinal, low=0)
        check_range("deltaT", self.deltaT, low=1)
        check_range("beta1", self.beta1, low=0, high=1, low_open=True, high_open=True)
        check_range("beta2", self.beta2, low=0, high=1, low_open=True, high_open=True)
        check_range("orth_reg_weight", self.orth_reg_weight, low=0)
        if self.total_step is None or self.total_step <= 0:
            raise ValueError(
                f"total_step={self.total_step!r} is not allowed: give the number of training steps (> 0)."
            )
        if self.tinit + self.tfinal >= self.total_step:
            raise ValueError(
                f"tinit={self.tinit} + tfinal={self.tfinal} must be < total_step={self.total_step}: "
                "otherwise no step is left for pruning the rank budget."
            )
        if self.use_dora or self.use_rslora or self.bias != "none":
            raise ValueError("AdaLoRA here supports use_dora=False, use_rslora=False and bias='none' only.")


class SVDLinear(AdapterLayer):
    """h = W0 x + b + (alpha / ranknum) * B diag(E) A x, on an nn.Linear or GPT-2 Conv1D."""

    adapter_attrs = ("lora_A", "lora_E", "lora_B", "lora_dropout")

    def __init__(self, base_layer: nn.Module):
        super().__init__(base_layer)
        self.in_features, self.out_features = in_out_features(base_layer)
        self.fan_in_fan_out = bool(Conv1D) and isinstance(base_layer, Conv1D)
        self.lora_A, self.lora_E, self.lora_B = nn.ParameterDict(), nn.ParameterDict(), nn.ParameterDict()
        self.lora_dropout = nn.ModuleDict()
        self.scaling: dict[str, float] = {}
        self.ranknum: dict[str, float] = {}  # init_r: fixed, so pruning changes no scale (peft keeps it too)

    def add(self, name: str, config: AdaLoraConfig) -> None:
        r, device = config.init_r, self.base_layer.weight.device
        self.lora_A[name] = nn.Parameter(torch.randn(r, self.in_features, device=device))  # (r, k)  Q
        self.lora_E[name] = nn.Parameter(torch.randn(r, 1, device=device))  # (r, 1)  Lambda
        self.lora_B[name] = nn.Parameter(torch.randn(self.out_features, r, device=device))  # (d, r)  P
        if config.init_lora_weights:  # as peft: E = 0 (identity at init), P and Q small Gaussians
            nn.init.zeros_(self.lora_E[name])
            nn.init.normal_(self.lora_A[name], std=0.02)
            nn.init.normal_(self.lora_B[name], std=0.02)
        self.lora_dropout[name] = (
            nn.Dropout(config.lora_dropout) if config.lora_dropout > 0 else nn.Identity()
        )
        self.scaling[name] = config.lora_alpha
        self.ranknum[name] = float(r)
        self.active_adapter = name

    def delta_weight(self, name: str) -> torch.Tensor:
        delta = self.lora_B[name] @ (self.lora_A[name] * self.lora_E[name])  # (d, k)
        delta = delta * self.scaling[name] / (self.ranknum[name] + 1e-5)
        return delta.T if self.fan_in_fan_out else delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)  # (B, T, d)
        if not self.uses_adapter():
            return result
        name = self.active_adapter
        A, E, B = self.lora_A[name], self.lora_E[name], self.lora_B[name]
        x = self.lora_dropout[name](x.to(A.dtype))
        update = x @ (A * E).T @ B.T  # (B, T, k) -> (B, T, r) -> (B, T, d)
        return result + (update * self.scaling[name] / (self.ranknum[name] + 1e-5)).to(result.dtype)

    def merge(self, name: str) -> None:
        with torch.no_grad():
            self.base_layer.weight += self.delta_weight(name).to(self.base_layer.weight.dtype)
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        with torch.no_grad():
            while self.merged_adapters:
                self.base_layer.weight -= self.delta_weight(self.merged_adapters.pop()).to(
                    self.base_layer.weight.dtype
                )


def _svd_layers(model: nn.Module, name: str) -> dict[str, SVDLinear]:
    return {n: m for n, m in model.named_modules() if isinstance(m, SVDLinear) and name in m.lora_A}


def orthogonality_penalty(model: nn.Module, name: str) -> torch.Tensor:
    """R = mean over P and Q matrices of ||P^T P - I||_F and ||Q Q^T - I||_F."""
    terms = []
    for layer in _svd_layers(model, name).values():
        A, B = layer.lora_A[name], layer.lora_B[name]
        terms.append(torch.linalg.norm(A @ A.T - torch.eye(A.shape[0], device=A.device)))  # (r, r)
        terms.append(torch.linalg.norm(B.T @ B - torch.eye(B.shape[1], device=B.device)))  # (r, r)
    return torch.stack(terms).mean()


class AdaLoraController(nn.Module):
    """The model-level part: adds the penalty to the loss and runs the rank allocator. Holds no parameters."""

    mergeable = True  # the layers merge like LoRA; this module only touches the loss

    def __init__(self, config: AdaLoraConfig, adapter_name: str, n_layers: int):
        super().__init__()
        self.config, self.adapter_name = config, adapter_name
        self.init_bgt, self.target_bgt = config.init_r * n_layers, config.target_r * n_layers
        self.exp_avg_ipt: dict[str, torch.Tensor] = {}  # I-bar, by parameter name
        self.exp_avg_unc: dict[str, torch.Tensor] = {}  # U-bar

    def forward(self, base_model, *args, **kwargs):
        out = base_model(*args, **kwargs)
        if getattr(out, "loss", None) is not None and self.config.orth_reg_weight > 0:
            out.loss = out.loss + self.config.orth_reg_weight * orthogonality_penalty(
                base_model, self.adapter_name
            )
        return out

    def generate(self, base_model, *args, **kwargs):
        return base_model.generate(*args, **kwargs)

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """(total rank budget at `step`, whether to prune at this step): the cubic schedule."""
        c = self.config
        if step <= c.tinit:
            return self.init_bgt, False
        if step > c.total_step - c.tfinal:
            return self.target_bgt, True
        frac = 1 - (step - c.tinit) / (c.total_step - c.tfinal - c.tinit)
        return int((self.init_bgt - self.target_bgt) * frac**3 + self.target_bgt), step % c.deltaT == 0

    def update_importance(self, model: nn.Module) -> None:
        b1, b2 = self.config.beta1, self.config.beta2
        for n, p in model.named_parameters():
            if n.endswith(f".{self.adapter_name}") and n.rsplit(".", 2)[-2] in ("lora_A", "lora_E", "lora_B"):
                if p.grad is None:
                    raise RuntimeError(
                        f"{n} has no gradient: call update_and_allocate(step) after loss.backward() (and "
                        "optimizer.step()) but before optimizer.zero_grad()."
                    )
                ipt = (p * p.grad).abs().detach()  # sensitivity
                avg = self.exp_avg_ipt.get(n, torch.zeros_like(p))
                self.exp_avg_ipt[n] = b1 * avg + (1 - b1) * ipt
                unc = self.exp_avg_unc.get(n, torch.zeros_like(p))
                self.exp_avg_unc[n] = b2 * unc + (1 - b2) * (ipt - self.exp_avg_ipt[n]).abs()

    def triplet_scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """{lora_E parameter name: score of each of its init_r triplets}."""
        s = {n: self.exp_avg_ipt[n] * self.exp_avg_unc[n] for n in self.exp_avg_ipt}
        scores, name = {}, self.adapter_name
        for prefix in _svd_layers(model, name):
            e, a, b = (f"{prefix}.{part}.{name}" for part in ("lora_E", "lora_A", "lora_B"))
            scores[e] = s[e].view(-1) + s[a].mean(dim=1) + s[b].mean(dim=0)  # (r,)
        return scores

    def mask_to_budget(self, model: nn.Module, budget: int) -> dict[str, list[bool]]:
        """Zero the singular values of the lowest-scoring triplets so that `budget` remain; return the pattern."""
        scores = self.triplet_scores(model)
        k = self.init_bgt - budget
        if k <= 0:
            return {n: [True] * len(v) for n, v in scores.items()}
        threshold = torch.kthvalue(torch.cat(list(scores.values())), k).values.item()
        pattern = {n: (v > threshold).tolist() for n, v in scores.items()}
        self.apply_pattern(model, pattern)
        return pattern

    def apply_pattern(self, model: nn.Module, pattern: dict[str, list[bool]]) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for n, keep in pattern.items():
                E = params[n]  # (r, 1)
                E.masked_fill_(~torch.tensor(keep, device=E.device).unsqueeze(1), 0.0)

    def update_and_allocate(self, model: nn.Module, step: int) -> None:
        c = self.config
        if step < c.total_step - c.tfinal:  # budgeting phase: learn importance, prune on schedule
            self.update_importance(model)
            budget, prune = self.budget_schedule(step)
            if prune:
                c.rank_pattern = self.mask_to_budget(model, budget)
        elif step == c.total_step - c.tfinal:  # last allocation: fix the pattern for good
            self.update_importance(model)
            c.rank_pattern = self.mask_to_budget(model, self.target_bgt)
            self.exp_avg_ipt, self.exp_avg_unc = {}, {}
        elif c.rank_pattern is not None:  # final fine-tuning: keep pruned values at zero
            self.apply_pattern(model, c.rank_pattern)


def apply_adalora(model: nn.Module, config: AdaLoraConfig, adapter_name: str) -> AdaLoraController:
    targets = find_targets(model, config.target_modules, layer_types=LINEAR_TYPES)
    for name in targets:
        module = model.get_submodule(name)
        if not isinstance(module, SVDLinear):
            module = SVDLinear(module)
            replace_module(model, name, module)
        module.add(adapter_name, config)
    return AdaLoraController(config, adapter_name, len(targets))


def on_step(peft_model, step: int) -> None:
    """`PeftModel.update_and_allocate(step)` lands here: importance update and rank allocation."""
    peft_model.prompt_modules[peft_model.active_adapter].update_and_allocate(peft_model.base_model, step)


def rank_pattern(peft_model) -> dict[str, int]:
    """{layer name: rank it has now} for the active adapter (init_r everywhere before any pruning)."""
    name = peft_model.active_adapter
    pattern = peft_model.peft_config[name].rank_pattern or {}
    ranks = {}
    for prefix, layer in _svd_layers(peft_model.base_model, name).items():
        keep = pattern.get(f"{prefix}.lora_E.{name}", pattern.get(f"{prefix}.lora_E"))
        ranks[prefix] = int(sum(keep)) if keep is not None else layer.lora_E[name].shape[0]
    return ranks


register("adalora", AdaLoraConfig, apply_adalora, on_step=on_step)
