"""Full fine-tuning and the selective methods: what trains (counted by hand), bad input, and parity with HF peft."""

import pytest
import torch
from conftest import make_batch, make_model
from torch import nn

from peftlab import BitFitConfig, FullConfig, LayerFreezeConfig, LNTuningConfig, PeftModel, get_peft_model
from peftlab.methods.selective import SelectiveLayer


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def n_params(module):
    return sum(p.numel() for p in module.parameters())


# -- full fine-tuning ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_full_trains_everything(kind):
    model = get_peft_model(make_model(kind), FullConfig())
    assert model.get_nb_trainable_parameters() == (n_params(make_model(kind)),) * 2
    with pytest.raises(RuntimeError, match="no separate adapter"):
        with model.disable_adapter():
            pass
    with pytest.raises(ValueError, match="at most one"):
        model.add_adapter("second", FullConfig())


def test_full_saves_the_whole_model(tmp_path):
    from safetensors.torch import load_file

    model = get_peft_model(make_model("gpt2"), FullConfig())
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert sum(t.numel() for t in saved.values()) == n_params(make_model("gpt2"))  # tied wte/lm_head: once


# -- BitFit -------------------------------------------------------------------------------------------------------
def test_bitfit_count_gpt2_by_hand():
    d, layers = 32, 2
    # per block: c_attn 3d, attn.c_proj d, mlp.c_fc 4d, mlp.c_proj d, ln_1 d, ln_2 d = 11d; plus ln_f d
    expected = layers * 11 * d + d
    model = get_peft_model(make_model("gpt2"), BitFitConfig())
    assert model.get_nb_trainable_parameters()[0] == expected == 736
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert all(n.endswith(".selected.default.bias") for n in names)


def test_bitfit_count_equals_peft_bias_all_minus_none():
    import peft

    def count(bias):
        cfg = peft.LoraConfig(r=2, target_modules=["c_attn"], bias=bias)
        return peft.get_peft_model(make_model("gpt2"), cfg).get_nb_trainable_parameters()[0]

    ours = get_peft_model(make_model("gpt2"), BitFitConfig()).get_nb_trainable_parameters()[0]
    assert ours == count("all") - count("none")


@pytest.mark.parametrize("kind", ["t5", "llama"])
def test_bitfit_without_biases_says_so(kind):
    model = make_model(kind)
    with pytest.raises(ValueError, match="has no bias parameters"):
        get_peft_model(model, BitFitConfig())
    assert not any(isinstance(m, SelectiveLayer) for m in model.modules())


def test_selective_layer_is_the_module_with_the_copy():
    torch.manual_seed(0)
    model = get_peft_model(nn.Sequential(nn.Linear(4, 3)), BitFitConfig())
    layer = model.base_model[0]
    with torch.no_grad():
        layer.selected["default"]["bias"].add_(1.0)
    x = torch.randn(2, 4)
    W, b = layer.base_layer.weight, layer.base_layer.bias
    torch.testing.assert_close(model(x), x @ W.T + b + 1.0)  # h = W0 x + b'
    with model.disable_adapter():
        torch.testing.assert_close(model(x), x @ W.T + b)


def test_two_bitfit_adapters_swap():
    model = get_peft_model(make_model("gpt2"), BitFitConfig())
    batch = make_batch("gpt2")
    base = logits(make_model("gpt2"), batch)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.1)
    a = logits(model, batch)
    model.add_adapter("topics", BitFitConfig(target_modules=r".*\.attn\.c_attn"))
    model.set_adapter("topics")
    torch.testing.assert_close(logits(model, batch), base, rtol=0, atol=1e-6)  # a fresh copy = the base
    assert model.get_nb_trainable_parameters()[0] == 2 * 96
    model.set_adapter("default")
    assert torch.equal(logits(model, batch), a)


# -- norm-only (LN tuning) ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind, n_norms", [("t5", 12), ("llama", 5), ("gpt2", 5)])
def test_norm_count_by_hand(kind, n_norms):
    # T5: 2 encoder blocks x 2 + final, 2 decoder blocks x 3 + final; LLaMA: 2 x 2 + final; GPT-2: 2 x 2 + ln_f
    per_norm = 2 * 32 if kind == "gpt2" else 32  # LayerNorm has weight and bias; RMSNorm only a weight
    model = get_peft_model(make_model(kind), LNTuningConfig())
    assert model.get_nb_trainable_parameters()[0] == n_norms * per_norm


def _randomize(model, part, seed=4):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if part in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_norm_interop_with_peft_ln_tuning(kind, tmp_path):
    import peft
    from safetensors.torch import load_file

    batch = make_batch(kind)
    theirs = peft.get_peft_model(make_model(kind), peft.LNTuningConfig())
    _randomize(theirs, "ln_tuning_layers")
    expected = logits(theirs, batch)
    assert not torch.allclose(expected, logits(make_model(kind), batch), atol=1e-4)
    theirs.save_pretrained(tmp_path / "theirs")
    ours = PeftModel.from_pretrained(make_model(kind), tmp_path / "theirs")
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-6)
    assert ours.get_nb_trainable_parameters()[1] == theirs.get_nb_trainable_parameters()[1]
    # and back: our file loads in peft, with the same keys peft writes
    ours.save_pretrained(tmp_path / "ours")
    again = peft.PeftModel.from_pretrained(make_model(kind), tmp_path / "ours")
    torch.testing.assert_close(logits(again, batch), expected, rtol=0, atol=1e-6)
    mine, ref = (
        load_file(tmp_path / "ours/adapter_model.safetensors"),
        load_file(tmp_path / "theirs/adapter_model.safetensors"),
    )
    assert mine.keys() == ref.keys()


def test_norm_merge_is_exact_and_unmerge_restores():
    model = get_peft_model(make_model("llama"), LNTuningConfig())
    _randomize(model, "ln_tuning_layers")
    layer = model.base_model.model.norm
    original = layer.base_layer.weight.detach().clone()
    model.merge_adapter()
    assert torch.equal(layer.base_layer.weight, layer.ln_tuning_layers["default"]["weight"])
    model.unmerge_adapter()
    assert torch.equal(layer.base_layer.weight, original)


# -- layer freezing -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_layer_freeze_count_is_the_top_blocks(kind, k):
    base = make_model(kind)
    stacks = {
        "t5": lambda: [base.encoder.block, base.decoder.block],
        "llama": lambda: [base.model.layers],
        "gpt2": lambda: [base.transformer.h],
    }[kind]()
    expected = sum(n_params(block) for stack in stacks for block in list(stack)[-k:])
    model = get_peft_model(base, LayerFreezeConfig(num_trainable_layers=k))
    assert model.get_nb_trainable_parameters()[0] == expected


def test_layer_freeze_by_name():
    model = get_peft_model(
        make_model("llama"), LayerFreezeConfig(num_trainable_layers=None, trainable_params=["o_proj.weight"])
    )
    assert model.get_nb_trainable_parameters()[0] == 2 * 32 * 32


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(num_trainable_layers=0), ValueError, ["num_trainable_layers=0", ">= 1"]),
        (dict(num_trainable_layers=None), ValueError, ["exactly one", "trainable_params"]),
        (dict(trainable_params=".*bias"), ValueError, ["exactly one", "num_trainable_layers"]),
        (dict(num_trainable_layers=1.5), TypeError, ["num_trainable_layers=1.5", "int"]),
        (dict(num_trainable_layers=None, trainable_params=5), TypeError, ["trainable_params=5"]),
    ],
)
def test_layer_freeze_bad_config(kwargs, error, words):
    with pytest.raises(error) as e:
        LayerFreezeConfig(**kwargs)
    for w in words:
        assert w in str(e.value)


def test_layer_freeze_bad_against_the_model():
    with pytest.raises(ValueError, match=r"num_trainable_layers=3 but model.layers has only 2 blocks"):
        get_peft_model(make_model("llama"), LayerFreezeConfig(num_trainable_layers=3))
    with pytest.raises(ValueError, match="matched no parameter"):
        get_peft_model(
            make_model("llama"),
            LayerFreezeConfig(num_trainable_layers=None, trainable_params=["nope.weight"]),
        )
    with pytest.raises(ValueError, match="ties to its output head"):  # GPT-2's wte is also lm_head
        get_peft_model(
            make_model("gpt2"), LayerFreezeConfig(num_trainable_layers=None, trainable_params=r".*wte.*")
        )


@pytest.mark.parametrize("cls, field", [(BitFitConfig, "target_modules"), (LNTuningConfig, "target_modules")])
def test_bad_types(cls, field):
    with pytest.raises(TypeError, match=field):
        cls(**{field: 3})
    with pytest.raises(TypeError, match="modules_to_save"):
        cls(modules_to_save="lm_head")


def test_norm_targets_without_own_parameters():
    with pytest.raises(ValueError, match=r"target_modules=\['mlp'\] selects no LayerNorm"):
        get_peft_model(make_model("llama"), LNTuningConfig(target_modules=["mlp"]))
    with pytest.raises(ValueError, match="matched no module"):
        get_peft_model(make_model("llama"), LNTuningConfig(target_modules=["ln_9"]))
