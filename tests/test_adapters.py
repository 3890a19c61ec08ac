"""Bottleneck adapters: the count formula by hand per model, the equation, placement, bad input, no merging."""

import pytest
import torch
import torch.nn.functional as F
from conftest import make_batch, make_model

from peftlab import BottleneckConfig, get_peft_model, make_config
from peftlab.methods.adapters import BottleneckLayer

D = 32  # hidden size of every tiny test model


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def per_adapter(d, m):
    return (d * m + m) + (m * d + d)  # down: weight + bias; up: weight + bias = 2md + m + d


# where the adapters go: (attention sublayers, feed-forward sublayers) in the tiny models
# T5: 2 encoder + 2 decoder blocks, each with one self-attention and one feed-forward sublayer
SUBLAYERS = {"t5": (4, 4), "llama": (2, 2), "gpt2": (2, 2)}


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
@pytest.mark.parametrize("method, rf, m", [("houlsby", 16, 2), ("pfeiffer", 16, 2), ("houlsby", 4, 8)])
def test_count_is_the_formula(kind, method, rf, m):
    n_attn, n_ffn = SUBLAYERS[kind]
    n_adapters = n_ffn + (n_attn if method == "houlsby" else 0)
    model = get_peft_model(make_model(kind), make_config(method, reduction_factor=rf))
    assert model.get_nb_trainable_parameters()[0] == n_adapters * per_adapter(D, m)
    layers = [m for m in model.modules() if isinstance(m, BottleneckLayer)]
    assert len(layers) == n_adapters


def test_hand_numbers():
    # d = 32, m = 2: 2*2*32 + 2 + 32 = 162 per adapter; LLaMA with 2 blocks: Houlsby 4 adapters, Pfeiffer 2
    assert per_adapter(32, 2) == 162
    h = get_peft_model(make_model("llama"), make_config("houlsby"))
    p = get_peft_model(make_model("llama"), make_config("pfeiffer"))
    assert h.get_nb_trainable_parameters()[0] == 648 and p.get_nb_trainable_parameters()[0] == 324
    b = get_peft_model(make_model("gpt2"), make_config("pfeiffer", bottleneck_size=5))
    assert b.get_nb_trainable_parameters()[0] == 2 * (2 * 5 * 32 + 5 + 32)


def test_placement_per_architecture():
    def wrapped(kind, method):
        model = get_peft_model(make_model(kind), make_config(method))
        return sorted(
            {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, BottleneckLayer)}
        )

    assert wrapped("llama", "houlsby") == ["mlp", "self_attn"]
    assert wrapped("gpt2", "houlsby") == ["attn", "mlp"]
    assert wrapped("t5", "houlsby") == ["DenseReluDense", "SelfAttention"]  # not the cross-attention
    assert wrapped("llama", "pfeiffer") == ["mlp"]


@pytest.mark.parametrize(
    "act, f", [("relu", F.relu), ("gelu", F.gelu), ("silu", F.silu), ("tanh", torch.tanh)]
)
def test_forward_is_the_equation(act, f):
    torch.manual_seed(0)
    model = get_peft_model(
        make_model("llama"), make_config("pfeiffer", non_linearity=act, init_weights=False)
    )
    layer = model.base_model.model.layers[0].mlp
    x = torch.randn(2, 5, D)
    h = layer.base_layer(x)
    down, up = layer.adapter_down["default"], layer.adapter_up["default"]
    expected = h + (f(h @ down.weight.T + down.bias) @ up.weight.T + up.bias)  # h + W_up f(W_down h + b) + b
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_attention_tuple_passes_through(kind):
    model = get_peft_model(make_model(kind), make_config("houlsby", init_weights=False))
    batch = make_batch(kind)
    adapted = logits(model, batch)
    assert not torch.allclose(adapted, logits(make_model(kind), batch), atol=1e-4)
    attn = next(
        m
        for m in model.modules()
        if isinstance(m, BottleneckLayer) and "Attention" in type(m.base_layer).__name__
    )
    calls = []
    handle = attn.register_forward_hook(lambda mod, inp, out: calls.append(out))
    logits(model, batch)
    handle.remove()
    assert calls and isinstance(calls[0], tuple)  # (output, weights, ...) kept a tuple for the block


def test_up_projection_starts_at_zero():
    model = get_peft_model(make_model("gpt2"), make_config("houlsby"))
    ups = [p for n, p in model.named_parameters() if "adapter_up" in n]
    downs = [p for n, p in model.named_parameters() if "adapter_down" in n and n.endswith("weight")]
    assert ups and all(torch.count_nonzero(p) == 0 for p in ups)
    assert all(torch.count_nonzero(p) > 0 for p in downs)


def test_merge_is_refused_and_the_model_is_kept():
    model = get_peft_model(make_model("llama"), make_config("houlsby", init_weights=False))
    batch = make_batch("llama")
    before = logits(model, batch)
    for call in (model.merge_adapter, model.merge_and_unload):
        with pytest.raises(NotImplementedError, match="nonlinear"):
            call()
    assert torch.equal(logits(model, batch), before)
    assert any(isinstance(m, BottleneckLayer) for m in model.modules())


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(reduction_factor=0), ValueError, ["reduction_factor=0", "> 0"]),
        (dict(reduction_factor=-2.0), ValueError, ["reduction_factor", "> 0"]),
        (dict(bottleneck_size=0), ValueError, ["bottleneck_size=0", ">= 1"]),
        (dict(non_linearity="swish"), ValueError, ["non_linearity='swish'", "relu", "gelu", "silu", "tanh"]),
        (dict(mh_adapter=False, output_adapter=False), ValueError, ["mh_adapter", "output_adapter"]),
        (dict(bottleneck_size=2.5), TypeError, ["bottleneck_size=2.5", "int"]),
        (dict(mh_adapter="yes"), TypeError, ["mh_adapter", "bool"]),
        (dict(reduction_factor="16"), TypeError, ["reduction_factor", "float"]),
    ],
)
def test_bad_config(kwargs, error, words):
    with pytest.raises(error) as e:
        BottleneckConfig(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_bad_against_the_model():
    with pytest.raises(ValueError, match="reduction_factor must be <= 32"):
        get_peft_model(make_model("llama"), BottleneckConfig(reduction_factor=64))
    with pytest.raises(ValueError, match="matched no module"):
        get_peft_model(make_model("llama"), BottleneckConfig(ffn_modules=["ffn"], mh_adapter=False))
    model = make_model("llama")
    model.config.model_type = "mystery"
    with pytest.raises(ValueError, match="attn_modules is not known for model_type='mystery'"):
        get_peft_model(model, BottleneckConfig())
    # naming the sublayers works for any architecture
    get_peft_model(model, BottleneckConfig(attn_modules=["self_attn"], ffn_modules=["mlp"]))
