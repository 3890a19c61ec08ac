"""(IA)^3 specifics: the equation on both sides, merge arithmetic, bad input, and parity with HF peft."""

import pytest
import torch
from conftest import FF_TARGETS, KV_TARGETS, make_batch, make_model
from torch import nn
from transformers.pytorch_utils import Conv1D

from peftlab import IA3Config, PeftModel, get_peft_model
from peftlab.methods.ia3 import IA3Linear


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


class Toy(nn.Module):
    def __init__(self, conv1d=False):
        super().__init__()
        self.k = Conv1D(6, 4) if conv1d else nn.Linear(4, 6)  # output side
        self.wo = Conv1D(5, 6) if conv1d else nn.Linear(6, 5)  # input side (feed-forward)
        if conv1d:
            nn.init.normal_(self.k.bias)
            nn.init.normal_(self.wo.bias)

    def forward(self, x):
        return self.wo(torch.relu(self.k(x)))


def toy_model(conv1d=False):
    torch.manual_seed(0)
    cfg = IA3Config(target_modules=["k", "wo"], feedforward_modules=["wo"], init_ia3_weights=False)
    return get_peft_model(Toy(conv1d), cfg)


def dense(layer):  # (out, in) weight and bias of a Linear or Conv1D, computed independently of peftlab
    w = layer.weight.T if isinstance(layer, Conv1D) else layer.weight
    return w.detach(), layer.bias.detach()


@pytest.mark.parametrize("conv1d", [False, True])
def test_forward_is_the_equation(conv1d):
    model = toy_model(conv1d)
    k, wo = model.base_model.k, model.base_model.wo
    assert isinstance(k, IA3Linear) and isinstance(wo, IA3Linear)
    l_k, l_ff = k.ia3_l["default"], wo.ia3_l["default"]
    assert l_k.shape == (6, 1) and l_ff.shape == (1, 6)  # peft's shapes: (out, 1) and (1, in)
    (Wk, bk), (Wo, bo) = dense(k.base_layer), dense(wo.base_layer)
    x = torch.randn(3, 4)
    h = torch.relu(l_k.flatten() * (x @ Wk.T + bk))  # keys/values: l * (W x + b)
    expected = (l_ff.flatten() * h) @ Wo.T + bo  # feed-forward: W (l * x) + b
    torch.testing.assert_close(model(x), expected)
    assert model.get_nb_trainable_parameters()[0] == 6 + 6


@pytest.mark.parametrize("conv1d", [False, True])
def test_merge_scales_rows_or_columns_and_unmerge_divides(conv1d):
    model = toy_model(conv1d)
    k, wo = model.base_model.k, model.base_model.wo
    (Wk, bk), (Wo, bo) = (
        tuple(t.clone() for t in dense(k.base_layer)),
        tuple(t.clone() for t in dense(wo.base_layer)),
    )
    x = torch.randn(3, 4)
    before = model(x).detach()
    model.merge_adapter()
    l_k, l_ff = k.ia3_l["default"].detach(), wo.ia3_l["default"].detach()
    torch.testing.assert_close(dense(k.base_layer)[0], Wk * l_k)  # rows scaled
    torch.testing.assert_close(dense(k.base_layer)[1], bk * l_k.flatten())  # output-side bias scaled too
    torch.testing.assert_close(dense(wo.base_layer)[0], Wo * l_ff)  # columns scaled
    assert torch.equal(dense(wo.base_layer)[1], bo)  # input-side bias untouched
    torch.testing.assert_close(model(x), before)
    model.unmerge_adapter()
    torch.testing.assert_close(dense(k.base_layer)[0], Wk, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(dense(wo.base_layer)[0], Wo, rtol=1e-6, atol=1e-7)


def test_init_is_ones():
    model = get_peft_model(make_model("llama"), IA3Config())
    vectors = [p for n, p in model.named_parameters() if "ia3_l" in n]
    assert vectors and all(torch.equal(v, torch.ones_like(v)) for v in vectors)


def test_zero_vector_refuses_to_merge():
    model = toy_model()
    with torch.no_grad():
        model.base_model.k.ia3_l["default"][0] = 0
    with pytest.raises(ValueError, match="zeros"):
        model.merge_adapter()


def test_defaults_per_architecture():
    model = get_peft_model(make_model("llama"), IA3Config())
    config = model.peft_config["default"]
    assert config.target_modules == ["k_proj", "v_proj", "down_proj"] and config.feedforward_modules == [
        "down_proj"
    ]
    assert model.base_model.model.layers[0].mlp.down_proj.is_feedforward
    assert not model.base_model.model.layers[0].self_attn.k_proj.is_feedforward
    gpt2 = get_peft_model(make_model("gpt2"), IA3Config())
    assert gpt2.peft_config["default"].fan_in_fan_out  # Conv1D, set automatically as peft does


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (
            dict(target_modules=["k"], feedforward_modules=["wo"]),
            ValueError,
            ["feedforward_modules", "subset", "'wo'"],
        ),
        (dict(target_modules=["k", "wo"]), ValueError, ["feedforward_modules", "both"]),
        (dict(feedforward_modules=["wo"]), ValueError, ["target_modules", "both"]),
        (dict(init_ia3_weights="yes"), TypeError, ["init_ia3_weights", "bool"]),
        (dict(fan_in_fan_out=1), TypeError, ["fan_in_fan_out", "bool"]),
        (dict(target_modules=3, feedforward_modules=[]), TypeError, ["target_modules=3"]),
        (dict(modules_to_save="lm_head"), TypeError, ["modules_to_save"]),
    ],
)
def test_bad_config(kwargs, error, words):
    with pytest.raises(error) as e:
        IA3Config(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_bad_targets():
    with pytest.raises(ValueError, match="matched no module"):
        get_peft_model(make_model("llama"), IA3Config(target_modules=["key"], feedforward_modules=[]))
    with pytest.raises(TypeError, match="can wrap only"):
        get_peft_model(make_model("llama"), IA3Config(target_modules=["norm"], feedforward_modules=[]))
    with pytest.raises(ValueError, match="model_type"):
        get_peft_model(nn.Sequential(nn.Linear(3, 3)), IA3Config())


# -- parity with HF peft -----------------------------------------------------------------------------------------
def _configs(kind):
    import peft

    kw = dict(target_modules=KV_TARGETS[kind] + FF_TARGETS[kind], feedforward_modules=FF_TARGETS[kind])
    return peft.IA3Config(init_ia3_weights=False, **kw), IA3Config(init_ia3_weights=False, **kw)


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_peft_file_loads_here_with_equal_logits(kind, tmp_path):
    import peft

    peft_cfg, _ = _configs(kind)
    torch.manual_seed(5)
    theirs = peft.get_peft_model(make_model(kind), peft_cfg)  # random vectors: the adapter changes the output
    batch = make_batch(kind)
    expected = logits(theirs, batch)
    assert not torch.allclose(expected, logits(make_model(kind), batch), atol=1e-4)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(make_model(kind), tmp_path)
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-6)
    assert ours.get_nb_trainable_parameters()[1] == theirs.get_nb_trainable_parameters()[1]


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_our_file_loads_in_peft_with_equal_logits(kind, tmp_path):
    import peft
    from safetensors.torch import load_file

    peft_cfg, our_cfg = _configs(kind)
    torch.manual_seed(6)
    ours = get_peft_model(make_model(kind), our_cfg)
    batch = make_batch(kind)
    expected = logits(ours, batch)
    ours.save_pretrained(tmp_path / "ours")
    theirs = peft.PeftModel.from_pretrained(make_model(kind), tmp_path / "ours")
    torch.testing.assert_close(logits(theirs, batch), expected, rtol=0, atol=1e-6)
    # the same key layout and shapes as peft writes for the same config
    peft.get_peft_model(make_model(kind), peft_cfg).save_pretrained(tmp_path / "theirs")
    mine, ref = (
        load_file(tmp_path / "ours/adapter_model.safetensors"),
        load_file(tmp_path / "theirs/adapter_model.safetensors"),
    )
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in ref.items()}
