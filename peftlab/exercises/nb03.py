"""Checks for notebooks/03_adapters_ia3.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.adapters import BottleneckConfig, BottleneckLayer
from peftlab.grading import attempted, exercise, rng


def _adapter_reference(d: int, m: int) -> int:
    """Parameters of one bottleneck adapter, counted on the package's own layer (meta device: no memory)."""
    layer = BottleneckLayer(nn.Identity())
    layer.add("default", d, m, BottleneckConfig(), device="meta")
    return sum(p.numel() for p in layer.parameters())


@exercise(
    "nb03.q1",
    points=2,
    hint="W_down is m x d plus m biases; W_up is d x m plus d biases.",
    needs=["adapter_param_count"],
)
def _(ns):
    f = ns["adapter_param_count"]
    for d, m in rng(3).integers(1, 2048, size=(6, 2)):
        d, m = int(d), int(m)
        got, want = attempted(f(d, m)), _adapter_reference(d, m)
        assert got == want, (
            f"adapter_param_count({d}, {m}) returned {got}; one adapter has {want:,} parameters"
        )


@exercise(
    "nb03.q2",
    points=3,
    hint="per block: K and V have num_key_value_heads * head_dim features each, the FFN has intermediate_size.",
    needs=["ia3_param_count"],
)
def _(ns):
    f = ns["ia3_param_count"]
    g = rng(33)
    for _ in range(5):
        heads = int(g.choice([2, 4, 8]))
        kv = int(g.choice([h for h in (1, 2, 4, 8) if heads % h == 0]))
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
