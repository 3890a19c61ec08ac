"""Answers for notebooks/05_lora.ipynb."""

import math

import torch
from torch import nn


class LoRALinear(nn.Module):
    """The reference solution of nb05.q2 (the notebook's instructor copy holds the same code)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, dtype=base.weight.dtype))  # (r, in)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, dtype=base.weight.dtype))  # (out, r)
        self.scaling = alpha / r
        self.merged = False

    def forward(self, x):
        out = self.base(x)  # (..., out)
        if self.merged:
            return out
        return out + (x @ self.lora_A.T @ self.lora_B.T) * self.scaling  # (..., r) -> (..., out)

    def merge(self):
        if not self.merged:
            with torch.no_grad():
                self.base.weight += self.scaling * self.lora_B @ self.lora_A  # (out, in)
            self.merged = True

    def unmerge(self):
        if self.merged:
            with torch.no_grad():
                self.base.weight -= self.scaling * self.lora_B @ self.lora_A
            self.merged = False


class NoScale(LoRALinear):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.scaling = 1.0


class NoScaleInForward(LoRALinear):
    """Stores alpha / r but forgets to multiply by it in forward."""

    def forward(self, x):
        out = self.base(x)
        return out if self.merged else out + x @ self.lora_A.T @ self.lora_B.T


class RsScale(LoRALinear):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.scaling = alpha / math.sqrt(r)


class Transposed(LoRALinear):
    """A stored as (in, r) and B as (r, out), the layout of x @ A @ B."""

    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        self.lora_A = nn.Parameter(self.lora_A.detach().T.contiguous())
        self.lora_B = nn.Parameter(self.lora_B.detach().T.contiguous())

    def forward(self, x):
        out = self.base(x)
        return out if self.merged else out + (x @ self.lora_A @ self.lora_B) * self.scaling


class BothRandom(LoRALinear):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        nn.init.normal_(self.lora_B, std=0.02)


class AZero(LoRALinear):
    """B random and A zero, the other way round (fine for embeddings, not what the spec asks)."""

    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        with torch.no_grad():
            self.lora_A.zero_()


class ARandn(LoRALinear):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        with torch.no_grad():
            self.lora_A.normal_()


class BaseNotFrozen(LoRALinear):
    def __init__(self, base, r, alpha):
        super().__init__(base, r, alpha)
        for p in self.base.parameters():
            p.requires_grad_(True)


class MergeForgetsFlag(LoRALinear):
    """merge() adds B A into W, but forward still adds the low-rank branch: the update counts twice."""

    def merge(self):
        with torch.no_grad():
            self.base.weight += self.scaling * self.lora_B @ self.lora_A

    def unmerge(self):
        with torch.no_grad():
            self.base.weight -= self.scaling * self.lora_B @ self.lora_A


class MergeTransposed(LoRALinear):
    """merge() adds A^T B^T (in x out): only square layers have the right shape, and even then the wrong matrix."""

    def merge(self):
        with torch.no_grad():
            delta = self.scaling * self.lora_A.T @ self.lora_B.T
            if delta.shape == self.base.weight.shape:
                self.base.weight += delta
        self.merged = True


class UnmergeDoesNothing(LoRALinear):
    def unmerge(self):
        self.merged = False


class ScaleAfterMergeMissing(LoRALinear):
    """merge() adds B A without the scale."""

    def merge(self):
        with torch.no_grad():
            self.base.weight += self.lora_B @ self.lora_A
        self.merged = True

    def unmerge(self):
        with torch.no_grad():
            self.base.weight -= self.lora_B @ self.lora_A
        self.merged = False


class DetachedBranch(LoRALinear):
    """The branch uses .data: right numbers in every forward, but no gradient reaches A and B, so nothing trains."""

    def forward(self, x):
        out = self.base(x)
        if self.merged:
            return out
        return out + (x @ self.lora_A.data.T @ self.lora_B.data.T) * self.scaling


# r=4 on q, k, v, o, gate, up, down of the 6 blocks of tiny
ALL_LINEAR_PCT = 100 * 112_128 / (6_524_160 + 112_128)


CASES = {
    "nb05.q1": {
        "solution": {"lora_param_count": lambda d, k, r: r * (d + k)},
        "wrong": {
            "forgot B": {"lora_param_count": lambda d, k, r: r * k},
            "full matrix": {"lora_param_count": lambda d, k, r: d * k},
            "r * d * k": {"lora_param_count": lambda d, k, r: r * d * k},
            "hard-coded notebook value": {"lora_param_count": lambda d, k, r: 4608},
        },
    },
    "nb05.q2": {
        "solution": {"LoRALinear": LoRALinear},
        "wrong": {
            "missing scale factor alpha/r": {"LoRALinear": NoScale},
            "scale stored but not applied": {"LoRALinear": NoScaleInForward},
            "rsLoRA's alpha/sqrt(r) instead of alpha/r": {"LoRALinear": RsScale},
            "transposed A and B": {"LoRALinear": Transposed},
            "B random at init": {"LoRALinear": BothRandom},
            "A zero at init": {"LoRALinear": AZero},
            "A from randn (too large)": {"LoRALinear": ARandn},
            "base layer not frozen": {"LoRALinear": BaseNotFrozen},
            "merge counts the update twice": {"LoRALinear": MergeForgetsFlag},
            "merge adds the transposed product": {"LoRALinear": MergeTransposed},
            "unmerge does not restore W": {"LoRALinear": UnmergeDoesNothing},
            "merge without the scale": {"LoRALinear": ScaleAfterMergeMissing},
            "branch detached from A and B (nothing trains)": {"LoRALinear": DetachedBranch},
            "not a class": {"LoRALinear": lambda base, r, alpha: base},
        },
    },
    "nb05.q3": {
        "solution": {"predicted_pct": ALL_LINEAR_PCT},
        "wrong": {
            "the q_proj + v_proj share printed above": {"predicted_pct": 100 * 43_008 / (6_524_160 + 43_008)},
            "attention only (q, k, v, o)": {"predicted_pct": 100 * 43_008 / (6_524_160 + 43_008)},
            "a fraction, not a percentage": {"predicted_pct": ALL_LINEAR_PCT / 100},
            "the source's '15-20 % of the weights'": {"predicted_pct": 17.5},
            "rank 8 instead of 4": {"predicted_pct": 2 * ALL_LINEAR_PCT},
            "output head counted too": {"predicted_pct": 100 * (112_128 + 4 * (256 + 8192)) / 6_670_080},
        },
    },
    "nb05.q4": {
        "solution": {"chosen_r": 20, "true_statements": {"a", "d"}},
        "wrong": {
            "forgot one factor (r * d <= budget)": {"chosen_r": 40, "true_statements": {"a", "d"}},
            "off by one": {"chosen_r": 21, "true_statements": {"a", "d"}},
            "rank right, believes the update starts bigger": {
                "chosen_r": 20,
                "true_statements": {"a", "b", "d"},
            },
            "rank right, misses the rank statement": {"chosen_r": 20, "true_statements": {"a"}},
            "rank right, believes merging costs latency": {"chosen_r": 20, "true_statements": "acd"},
        },
    },
}
