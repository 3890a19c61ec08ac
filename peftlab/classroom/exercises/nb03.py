"""Checks for notebooks/03_adapters_ia3.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.classroom.grading import attempted, exercise, rng
from peftlab.methods.adapters import BottleneckConfig, BottleneckLayer
from peftlab.methods.ia3 import IA3Config, IA3Linear


def _adapter_reference(d: int, m: int, init_weights: bool = True, dtype=torch.float32) -> BottleneckLayer:
    """The package's bottleneck adapter on an identity sublayer: forward(h) = h + up(relu(down(h)))."""
    layer = BottleneckLayer(nn.Identity())
    layer.add("default", d, m, BottleneckConfig(init_weights=init_weights))
    return layer.to(dtype)


def _copy_into(mine: nn.Module, ref: BottleneckLayer) -> None:
    for name in ("down", "up"):
        part = getattr(mine, name, None)
        assert isinstance(part, nn.Linear), (
            f"your Adapter needs an nn.Linear named `{name}` (self.{name} = nn.Linear(...)): the check copies the "
            "package's weights into it"
        )
        src = getattr(ref, f"adapter_{name}")["default"]
        assert part.weight.shape == src.weight.shape and part.bias is not None, (
            f"self.{name} should be nn.Linear with weight {tuple(src.weight.shape)} and a bias; "
            f"yours has weight {tuple(part.weight.shape)}"
        )
        with torch.no_grad():
            part.weight.copy_(src.weight)
            part.bias.copy_(src.bias)


@exercise(
    "nb03.q1",
    points=4,
    hint="__init__: self.down = nn.Linear(d, m), self.act = nn.ReLU(), self.up = nn.Linear(m, d), then zero "
    "self.up's weight and bias (nn.init.zeros_). forward: return h + self.up(self.act(self.down(h))).",
    needs=["Adapter"],
)
def _(ns):
    Adapter = ns["Adapter"]
    g = rng(31)
    for i in range(4):
        d, m = int(g.integers(4, 64)), int(g.integers(1, 16))
        dtype = (torch.float32, torch.float64)[i % 2]
        torch.manual_seed(int(g.integers(1 << 30)))
        mine = Adapter(d, m)
        h = torch.randn(int(g.integers(1, 4)), int(g.integers(1, 9)), d, dtype=dtype)
        out = attempted(mine.to(dtype)(h))
        assert torch.is_tensor(out) and out.shape == h.shape, (
            f"Adapter({d}, {m}) maps a {tuple(h.shape)} input to {tuple(getattr(out, 'shape', ()))}: it must keep the shape"
        )
        for name in ("down", "up"):
            assert isinstance(getattr(mine, name, None), nn.Linear), (
                f"your Adapter needs an nn.Linear named `{name}` (self.{name} = nn.Linear(...))"
            )
        assert torch.equal(out, h), (
            f"a freshly built Adapter({d}, {m}) must be the identity (the up-projection starts at zero), but it "
            f"changes its input by up to {(out - h).abs().max():.3g}"
        )
        want_params = sum(p.numel() for p in _adapter_reference(d, m).parameters())
        got_params = sum(p.numel() for p in mine.parameters())
        assert got_params == want_params, (
            f"Adapter({d}, {m}) has {got_params:,} parameters; down (m x d + m) and up (d x m + d) are {want_params:,}"
        )
        down = getattr(mine, "down", None)
        assert isinstance(down, nn.Linear) and down.weight.abs().sum() > 0, (
            "the down-projection must start random (nn.Linear's default): with both projections at zero the "
            "adapter gets no gradient and never learns"
        )
        assert out.requires_grad, (
            "your Adapter's output carries no gradient (computed under torch.no_grad() or detached?): it could not learn"
        )
        out.square().sum().backward()  # loss that depends on the output: the up-projection must receive gradient
        up = getattr(mine, "up", None)
        assert isinstance(up, nn.Linear) and up.weight.grad is not None and up.weight.grad.abs().sum() > 0, (
            "no gradient reaches self.up.weight: is the up-projection applied to the activated bottleneck?"
        )
        ref = _adapter_reference(
            d, m, init_weights=False, dtype=dtype
        )  # random up: a real, non-identity adapter
        _copy_into(mine, ref)
        with torch.no_grad():
            got, want = mine(h), ref(h)
        assert torch.allclose(got, want, atol=1e-5 if dtype == torch.float32 else 1e-10), (
            f"with the package's (trained-looking) weights copied in, your Adapter({d}, {m}) differs from "
            f"h + up(relu(down(h))) by up to {(got - want).abs().max():.3g}"
        )


def _ia3_layer(g, feedforward: bool, dtype) -> IA3Linear:
    n_in, n_out = int(g.integers(2, 24)), int(g.integers(2, 24))
    if g.random() < 0.3:
        n_out = n_in  # square: a transposed scaling runs without an error and must still fail
    torch.manual_seed(int(g.integers(1 << 30)))
    layer = IA3Linear(nn.Linear(n_in, n_out), is_feedforward=feedforward)
    layer.add("default", IA3Config(init_ia3_weights=False))  # random l: not the identity
    return layer.to(dtype)


@exercise(
    "nb03.q2",
    points=4,
    hint="forward: output side l * (x @ W.T + b); feed-forward side (x * l) @ W.T + b. merge: output side "
    "scales the rows of W and the bias (l[:, None] * W, l * b); feed-forward side scales the columns (W * l[None, :]).",
    needs=["ia3_forward", "ia3_merge"],
)
def _(ns):
    fwd, merge = ns["ia3_forward"], ns["ia3_merge"]
    g = rng(32)
    for i in range(8):
        feedforward = bool(i % 2)
        dtype = (torch.float32, torch.float64)[(i // 2) % 2]
        layer = _ia3_layer(g, feedforward, dtype)
        W, b = layer.base_layer.weight.detach(), layer.base_layer.bias.detach()
        l = layer.ia3_l["default"].detach().flatten()
        x = torch.randn(int(g.integers(1, 4)), int(g.integers(1, 6)), W.shape[1], dtype=dtype)
        side = "feed-forward (input side)" if feedforward else "key/value (output side)"
        tol = 1e-5 if dtype == torch.float32 else 1e-10
        with torch.no_grad():
            want = layer(x)
        got = attempted(fwd(x, W.clone(), b.clone(), l.clone(), feedforward))
        assert torch.is_tensor(got) and got.shape == want.shape, (
            f"ia3_forward on a {side} layer ({W.shape[1]} -> {W.shape[0]}) must return shape {tuple(want.shape)}"
        )
        assert torch.allclose(got, want, atol=tol), (
            f"ia3_forward on a {side} layer ({W.shape[1]} -> {W.shape[0]}) differs from peftlab's IA3Linear by "
            f"up to {(got - want).abs().max():.3g}"
        )
        merged = copy.deepcopy(layer)
        merged.merge("default")
        W_want, b_want = merged.base_layer.weight.detach(), merged.base_layer.bias.detach()
        pair = attempted(merge(W.clone(), b.clone(), l.clone(), feedforward))
        assert isinstance(pair, (tuple, list)) and len(pair) == 2, (
            "ia3_merge returns a pair (merged_weight, merged_bias)"
        )
        W_got, b_got = pair
        assert (
            torch.is_tensor(W_got) and W_got.shape == W.shape and torch.allclose(W_got, W_want, atol=tol)
        ), (
            f"ia3_merge's weight for a {side} layer ({W.shape[1]} -> {W.shape[0]}) is not the merged one: "
            "which of W's axes does l scale?"
        )
        assert torch.is_tensor(b_got) and torch.allclose(b_got, b_want, atol=tol), (
            f"ia3_merge's bias for a {side} layer is not right: on the output side l scales the bias too, on the "
            "input side it does not"
        )
        x2 = x.reshape(-1, W.shape[1])
        assert torch.allclose(x2 @ W_got.T + b_got, want.reshape(-1, W.shape[0]), atol=tol * 10), (
            "the merged weights do not give the (IA)^3 layer's outputs"
        )


@exercise(
    "nb03.q3",
    points=3,
    hint="per block: K and V have num_key_value_heads * head_dim features each, the FFN has intermediate_size.",
    needs=["ia3_param_count"],
)
def _(ns):
    f = ns["ia3_param_count"]
    g = rng(33)
    for _ in range(6):
        heads = int(g.choice([2, 4, 8]))
        kv = int(g.choice([h for h in (1, 2, 4, 8) if heads % h == 0 and h < heads]))  # always grouped-query
        cfg = LlamaConfig(
            vocab_size=32,
            hidden_size=heads * int(g.integers(2, 9)) * 2,
            intermediate_size=int(g.integers(4, 200)),
            num_hidden_layers=int(g.integers(1, 7)),
            num_attention_heads=heads,
            num_key_value_heads=kv,
        )
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
        want = get_peft_model(model, make_config("ia3")).get_nb_trainable_parameters()[0]
        got = attempted(f(cfg))
        assert got == want, (
            f"ia3_param_count returned {got} for hidden_size={cfg.hidden_size}, heads={heads}, kv heads={kv}, "
            f"intermediate_size={cfg.intermediate_size}, {cfg.num_hidden_layers} layers; (IA)^3 trains {want:,}"
        )
