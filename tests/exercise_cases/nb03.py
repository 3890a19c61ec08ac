"""Answers for notebooks/03_adapters_ia3.ipynb."""

import torch
from torch import nn


def _make_adapter(act=nn.ReLU, residual=True, zero_up=True, zero_down=False, up_bias=True):
    class Adapter(nn.Module):
        def __init__(self, d, m):
            super().__init__()
            self.down = nn.Linear(d, m)
            self.act = act()
            self.up = nn.Linear(m, d, bias=up_bias)
            if zero_up:
                nn.init.zeros_(self.up.weight)
                if up_bias:
                    nn.init.zeros_(self.up.bias)
            if zero_down:
                nn.init.zeros_(self.down.weight)
                nn.init.zeros_(self.down.bias)

        def forward(self, h):
            out = self.up(self.act(self.down(h)))
            return h + out if residual else out

    return Adapter


class _DetachedAdapter(nn.Module):
    """Right outputs, but the bottleneck is computed under no_grad: the adapter can never learn."""

    def __init__(self, d, m):
        super().__init__()
        self.down, self.act, self.up = nn.Linear(d, m), nn.ReLU(), nn.Linear(m, d)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h):
        with torch.no_grad():
            return h + self.up(self.act(self.down(h)))


def _ia3_forward(x, weight, bias, l, feedforward):
    if feedforward:
        return (x * l) @ weight.T + bias
    return (x @ weight.T + bias) * l


def _ia3_merge(weight, bias, l, feedforward):
    if feedforward:
        return weight * l[None, :], bias
    return weight * l[:, None], bias * l


def _ia3(forward=_ia3_forward, merge=_ia3_merge):
    return {"ia3_forward": forward, "ia3_merge": merge}


CASES = {
    "nb03.q1": {
        "solution": {"Adapter": _make_adapter()},
        "wrong": {
            "no residual (returns only the bottleneck)": {"Adapter": _make_adapter(residual=False)},
            "up-projection not zero-initialised (not the identity at start)": {
                "Adapter": _make_adapter(zero_up=False)
            },
            "both projections at zero (never learns)": {"Adapter": _make_adapter(zero_down=True)},
            "no non-linearity": {"Adapter": _make_adapter(act=nn.Identity)},
            "GELU instead of the package's ReLU": {"Adapter": _make_adapter(act=nn.GELU)},
            "up-projection without a bias": {"Adapter": _make_adapter(up_bias=False)},
            "bottleneck under no_grad": {"Adapter": _DetachedAdapter},
        },
    },
    "nb03.q2": {
        "solution": _ia3(),
        "wrong": {
            "feed-forward side scaled on the output (sides swapped)": _ia3(
                forward=lambda x, W, b, l, ff: _ia3_forward(x, W, b, l, not ff),
                merge=lambda W, b, l, ff: _ia3_merge(W, b, l, not ff),
            ),
            "merge scales the wrong axis (rows vs columns swapped)": _ia3(
                merge=lambda W, b, l, ff: (W * l[:, None], b) if ff else (W * l[None, :], b * l)
            ),
            "bias not scaled when merging the output side": _ia3(
                merge=lambda W, b, l, ff: (_ia3_merge(W, b, l, ff)[0], b)
            ),
            "output side scales before the bias is added": _ia3(
                forward=lambda x, W, b, l, ff: _ia3_forward(x, W, b, l, ff) if ff else (x @ W.T) * l + b
            ),
            "bias scaled on the input side too": _ia3(
                merge=lambda W, b, l, ff: (
                    (W * l[None, :], b * l[: b.numel()]) if ff else _ia3_merge(W, b, l, ff)
                )
            ),
        },
    },
    "nb03.q3": {
        "solution": {
            "ia3_param_count": lambda c: (
                c.num_hidden_layers
                * (2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) + c.intermediate_size)
            )
        },
        "wrong": {
            "K and V as wide as hidden_size (ignores grouped-query attention)": {
                "ia3_param_count": lambda c: c.num_hidden_layers * (2 * c.hidden_size + c.intermediate_size)
            },
            "forgot the FFN vector": {
                "ia3_param_count": lambda c: (
                    c.num_hidden_layers * 2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads)
                )
            },
            "FFN vector as wide as hidden_size": {
                "ia3_param_count": lambda c: (
                    c.num_hidden_layers
                    * (2 * c.num_key_value_heads * (c.hidden_size // c.num_attention_heads) + c.hidden_size)
                )
            },
        },
    },
}
