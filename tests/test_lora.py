"""LoRA specifics: the math, multiple adapters, and file interop with HF peft in both directions."""

import math

import pytest
import torch
from conftest import ATTN_TARGETS, make_batch, make_model
from torch import nn

from peftlab import LoraConfig, PeftModel, get_peft_model
from peftlab.methods.lora import LoraEmbedding, LoraLinear


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def randomize(model, seed=3):
    """Give every LoRA tensor random values so the adapter really changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)


def test_forward_is_the_equation():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Linear(64, 512))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["0"]))
    layer = model.base_model[0]
    randomize(model)
    x = torch.randn(3, 64)
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert A.shape == (8, 64) and B.shape == (512, 8)
    W0, b = layer.base_layer.weight, layer.base_layer.bias
    expected = x @ W0.T + b + (16 / 8) * x @ A.T @ B.T
    torch.testing.assert_close(model(x), expected)
    # the concepts' 512 x 64 example: 32,768 frozen weights, 4,608 trainable at r=8
    assert model.get_nb_trainable_parameters()[0] == 8 * 64 + 512 * 8 == 4608


def test_init_and_scaling():
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(20, 30)), LoraConfig(r=4, lora_alpha=8, target_modules=["0"])
    )
    layer = model.base_model[0]
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    bound = 1 / math.sqrt(20)  # kaiming_uniform(a=sqrt(5)) on fan_in 20
    assert layer.lora_A["default"].weight.abs().max() <= bound
    assert layer.scaling["default"] == 2.0
    rs = get_peft_model(
        nn.Sequential(nn.Linear(20, 30)), LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["0"])
    )
    assert rs.base_model[0].scaling["default"] == 8 / 2


def test_dropout_only_on_the_lora_branch():
    torch.manual_seed(0)
    model = get_peft_model(
        nn.Sequential(nn.Linear(16, 16)), LoraConfig(r=2, lora_dropout=0.5, target_modules=["0"])
    )
    model.train()
    x = torch.randn(4, 16)
    with model.disable_adapter():
        torch.testing.assert_close(model(x), model.base_model[0].base_layer(x))  # base path is never dropped
    layer = model.base_model[0]
    assert isinstance(layer.lora_dropout["default"], nn.Dropout)


def test_embedding_lora_matches_merged_table():
    torch.manual_seed(0)
    base = nn.Sequential(nn.Embedding(50, 8))
    model = get_peft_model(base, LoraConfig(r=3, target_modules=["0"]))
    assert isinstance(model.base_model[0], LoraEmbedding)
    randomize(model)
    ids = torch.randint(0, 50, (2, 5))
    out = model(ids)
    layer = model.base_model[0]
    table = (
        layer.base_layer.weight
        + (layer.lora_embedding_B["default"] @ layer.lora_embedding_A["default"]).T * layer.scaling["default"]
    )
    torch.testing.assert_close(out, table[ids])


def test_gpt2_conv1d_sets_fan_in_fan_out():
    model = get_peft_model(make_model("gpt2"), LoraConfig(r=2, target_modules=["c_attn"]))
    layer = model.base_model.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoraLinear) and layer.fan_in_fan_out
    assert model.peft_config["default"].fan_in_fan_out


@pytest.mark.parametrize("bias, expected_extra", [("none", 0), ("lora_only", 2 * 96), ("all", None)])
def test_bias_modes_count_like_peft(bias, expected_extra):
    import peft

    ours = get_peft_model(make_model("gpt2"), LoraConfig(r=2, target_modules=["c_attn"], bias=bias))
    theirs = peft.get_peft_model(
        make_model("gpt2"), peft.LoraConfig(r=2, target_modules=["c_attn"], bias=bias)
    )
    assert ours.get_nb_trainable_parameters() == theirs.get_nb_trainable_parameters()
    lora_only = 2 * (32 * 2 + 2 * 96)  # two layers of A (2 x 32) and B (96 x 2)
    if expected_extra is not None:  # c_attn's bias has 3 * 32 = 96 entries, one per layer
        assert ours.get_nb_trainable_parameters()[0] == lora_only + expected_extra


@pytest.mark.parametrize("kind", ["llama", "gpt2", "t5"])
def test_peft_saves_we_load(kind, tmp_path):
    import peft

    theirs = peft.get_peft_model(
        make_model(kind), peft.LoraConfig(r=4, lora_alpha=8, target_modules=ATTN_TARGETS[kind])
    )
    randomize(theirs)
    batch = make_batch(kind)
    expected = logits(theirs, batch)
    theirs.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(make_model(kind), tmp_path)
    torch.testing.assert_close(logits(ours, batch), expected, rtol=0, atol=1e-6)
    assert not torch.allclose(expected, logits(make_model(kind), batch), atol=1e-4)  # the adapter matters


@pytest.mark.parametrize("kind", ["llama", "gpt2", "t5"])
def test_we_save_peft_loads(kind, tmp_path):
    import peft

    ours = get_peft_model(
        make_model(kind),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=ATTN_TARGETS[kind],
            modules_to_save=["lm_head"] if kind == "llama" else None,
        ),
    )
    randomize(ours)
    batch = make_batch(kind)
    expected = logits(ours, batch)
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(make_model(kind), tmp_path)
    torch.testing.assert_close(logits(theirs, batch), expected, rtol=0, atol=1e-6)


def test_two_task_adapters_swap(tmp_path):
    base = make_model("llama")
    batch = make_batch("llama")
    base_logits = logits(base, batch)
    model = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]), adapter_name="headlines"
    )
    model.add_adapter("topics", LoraConfig(r=2, target_modules=["v_proj"]))
    assert model.active_adapter == "headlines"  # adding does not switch, as in peft
    randomize(model)
    out_h = logits(model, batch)
    model.set_adapter("topics")
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".topics." in n for n in trainable)
    out_t = logits(model, batch)
    assert not torch.allclose(out_h, out_t, atol=1e-4)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "headlines" / "adapter_model.safetensors").exists()
    assert (tmp_path / "topics" / "adapter_config.json").exists()
    reloaded = PeftModel.from_pretrained(
        make_model("llama"), tmp_path / "headlines", adapter_name="headlines"
    )
    reloaded.load_adapter(tmp_path / "topics", adapter_name="topics")
    torch.testing.assert_close(logits(reloaded, batch), out_h, rtol=0, atol=0)
    reloaded.set_adapter("topics")
    torch.testing.assert_close(logits(reloaded, batch), out_t, rtol=0, atol=0)
    reloaded.delete_adapter("topics")
    assert list(reloaded.peft_config) == ["headlines"]
    assert not any(".topics." in n for n, _ in reloaded.named_parameters())
    reloaded.delete_adapter("headlines")
    torch.testing.assert_close(logits(reloaded, batch), base_logits, rtol=0, atol=0)


def test_print_trainable_parameters_format(capsys):
    model = get_peft_model(make_model("llama"), LoraConfig(r=4, target_modules=["q_proj"]))
    model.print_trainable_parameters()
    trainable, total = model.get_nb_trainable_parameters()
    out = capsys.readouterr().out.strip()
    assert (
        out
        == f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}"
    )
    assert trainable == 2 * (4 * 32 + 32 * 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_runs_on_cuda_unchanged():
    model = get_peft_model(make_model("llama").cuda(), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    batch = {k: v.cuda() for k, v in make_batch("llama").items()}
    out = model(**batch)
    out.loss.backward()
    assert out.logits.is_cuda
    assert all(p.grad is not None and p.grad.is_cuda for p in model.parameters() if p.requires_grad)
