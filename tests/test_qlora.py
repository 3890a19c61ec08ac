"""QLoRA: LoRA over an NF4 base. Identity vs the *quantized* base, disabling keeps the base quantized, the inexact
merge (documented tolerance) with an exact unmerge, config round trip and bad input."""

import json

import pytest
import torch
from conftest import ATTN_TARGETS, make_batch, make_model

from peftlab import LoraConfig, PeftModel, QLoraConfig, get_peft_model, make_config
from peftlab.inject import LINEAR_TYPES, find_targets
from peftlab.memory import measure_step
from peftlab.methods import qlora as qlora_mod
from peftlab.methods.nf4 import NF4, Linear4bit, quantize_linears, storage_bits_per_param
from peftlab.methods.qlora import QLoraLinear

KINDS = ["t5", "llama", "gpt2"]


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def quantized_base(kind):
    model = make_model(kind)
    quantize_linears(model, find_targets(model, "all-linear"))
    return model


def qlora(kind, **kw):
    return get_peft_model(
        make_model(kind), make_config("qlora", **{"r": 4, "target_modules": ATTN_TARGETS[kind], **kw})
    )


def train(model, batch, steps=3, lr=5e-2):
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    model.eval()


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init_is_relative_to_the_quantized_base(kind):
    batch = make_batch(kind)
    model = qlora(kind)
    q_logits = logits(quantized_base(kind), batch)
    assert torch.equal(logits(model, batch), q_logits)
    assert not torch.allclose(q_logits, logits(make_model(kind), batch), atol=1e-4)  # quantization shows


@pytest.mark.parametrize("kind", KINDS)
def test_every_linear_but_the_head_is_4bit_and_frozen(kind):
    from peftlab.inject import LINEAR_TYPES

    model = qlora(kind)
    head = model.get_output_embeddings()
    linears = {
        n: m
        for n, m in model.base_model.named_modules()
        if isinstance(m, LINEAR_TYPES) and ".lora_A." not in n and ".lora_B." not in n and m is not head
    }
    assert linears and all(isinstance(m, Linear4bit) for m in linears.values())
    assert not isinstance(head, Linear4bit)
    wrapped = [m for m in model.modules() if isinstance(m, QLoraLinear)]
    assert wrapped and all(isinstance(m.base_layer, Linear4bit) for m in wrapped)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)


def test_quantize_only_the_targets():
    model = qlora("llama", quantize_modules=None)
    q_names = [n for n, m in model.named_modules() if isinstance(m, Linear4bit)]
    assert q_names and all(n.endswith(("q_proj.base_layer", "v_proj.base_layer")) for n in q_names)


def test_training_leaves_the_4bit_buffers_alone_and_disabling_gives_the_quantized_base():
    kind, batch = "llama", make_batch("llama")
    model = qlora(kind)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    train(model, batch)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    adapted = logits(model, batch)
    q_logits = logits(quantized_base(kind), batch)
    assert not torch.allclose(adapted, q_logits, atol=1e-4)
    with model.disable_adapter():
        assert torch.equal(logits(model, batch), q_logits)
        assert all(
            isinstance(m.base_layer, Linear4bit) for m in model.modules() if isinstance(m, QLoraLinear)
        )
    assert torch.equal(logits(model, batch), adapted)


def test_merge_requantizes_within_the_nf4_bound_and_unmerge_is_exact():
    kind, batch = "llama", make_batch("llama")
    model = qlora(kind)
    train(model, batch)
    adapted = logits(model, batch)
    layer = model.base_model.get_submodule("model.layers.0.self_attn.q_proj")
    before = {k: v.clone() for k, v in layer.base_layer.quant_state().items()}
    target = layer.base_layer.weight + layer.delta_weight("default")  # what an exact merge would hold
    model.merge_adapter()
    merged_w = layer.base_layer.weight
    # each merged weight is within half the widest NF4 gap times its block absmax (+ the 8-bit absmax error)
    absmax = target.flatten().view(-1, 64).abs().amax(1, keepdim=True)
    half_gap = (NF4[1:] - NF4[:-1]).max() / 2
    err = (merged_w - target).flatten().view(-1, 64).abs()
    assert torch.all(err <= absmax * half_gap * 1.02 + 1e-6)
    assert not torch.equal(merged_w, target)  # inexact by construction
    # documented tolerance for the logits: the same order as the quantization error itself, not 1e-5
    merged = logits(model, batch)
    assert (merged - adapted).abs().max() < 0.1 * adapted.abs().max()
    model.unmerge_adapter()
    assert all(torch.equal(v, before[k]) for k, v in layer.base_layer.quant_state().items())
    assert torch.equal(logits(model, batch), adapted)
    plain = model.merge_and_unload()
    assert not any(isinstance(m, QLoraLinear) for m in plain.modules())
    assert torch.equal(logits(plain, batch), merged)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_merge_and_unload_requantized_error_is_bounded_and_fp32_is_exact(kind):
    """The merge choice, measured. Requantizing rounds W0 + sBA to the NF4 grid again; its logit error is bounded by
    the error of quantizing the base itself (measured: llama 0.016 vs 0.043, gpt2 0.019 vs 0.023). Merging into a
    dequantized fp32 base is exact to float rounding (measured ~1e-7)."""
    import copy

    batch = make_batch(kind)
    quant_err = (logits(quantized_base(kind), batch) - logits(make_model(kind), batch)).abs().max()
    model = qlora(kind)
    q_base = logits(model, batch)
    train(model, batch)
    adapted = logits(model, batch)
    effect = (adapted - q_base).norm()  # what the adapter changed
    requant = qlora_mod.merge_and_unload(copy.deepcopy(model), requantize=True)
    assert any(isinstance(m, Linear4bit) for m in requant.modules())  # still a 4-bit model
    requant_err = (logits(requant, batch) - adapted).abs()
    assert 0 < requant_err.max() <= quant_err
    assert (
        logits(requant, batch) - adapted
    ).norm() < 0.1 * effect  # keeps > 90% of the adapter's effect here
    assert torch.equal(
        logits(requant, batch), logits(copy.deepcopy(model).merge_and_unload(), batch)
    )  # default
    plain = qlora_mod.merge_and_unload(model, requantize=False)
    linears = [m for m in plain.modules() if isinstance(m, LINEAR_TYPES)]
    assert linears and not any(isinstance(m, Linear4bit) for m in plain.modules())
    assert all(m.weight.dtype == torch.float32 and not m.weight.requires_grad for m in linears)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in make_model(kind).parameters())
    torch.testing.assert_close(logits(plain, batch), adapted, rtol=0, atol=1e-5)


def test_qlora_step_holds_no_float_copy_of_the_base():
    """measure_step: QLoRA's saved activations equal LoRA's (its 4-bit layers save only their own buffers), and
    its weights are smaller, so the whole step is smaller."""
    batch = make_batch("llama")
    targets = ATTN_TARGETS["llama"]
    lora = measure_step(
        get_peft_model(make_model("llama"), make_config("lora", r=4, target_modules=targets)), batch
    )
    q = measure_step(qlora("llama"), batch)
    assert q.activations == lora.activations
    assert q.gradients == lora.gradients and q.optimizer == lora.optimizer
    assert q.weights < lora.weights and q.total < lora.total


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_qlora_step_on_cuda_holds_less_than_lora():
    batch = {k: v.cuda() for k, v in make_batch("llama").items()}
    targets = ATTN_TARGETS["llama"]
    lora = get_peft_model(make_model("llama").cuda(), make_config("lora", r=4, target_modules=targets))
    q = get_peft_model(make_model("llama").cuda(), make_config("qlora", r=4, target_modules=targets))
    lora_mem, q_mem = measure_step(lora, batch), measure_step(q, batch)
    assert q_mem.cuda_peak is not None and q_mem.activations == lora_mem.activations
    assert q_mem.total < lora_mem.total


def test_storage_of_the_quantized_base():
    model = qlora("llama")
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert layers
    for (
        m
    ) in layers:  # tiny layers pay relatively more for the fp32 constants; 1024x1024 reaches 4.127 (test_nf4)
        n = m.quantized_numel
        second_level = -(-(n // 64) // 256)  # fp32 absmax per 256 blocks, rounded up
        assert storage_bits_per_param(m) == pytest.approx(4 + 8 / 64 + 32 * (second_level + 1) / n)


def test_saved_config_round_trips_to_a_qlora_config(tmp_path):
    batch = make_batch("gpt2")
    model = qlora("gpt2", blocksize=32)
    train(model, batch)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and saved["bnb_4bit_quant_type"] == "nf4" and saved["blocksize"] == 32
    loaded = PeftModel.from_pretrained(make_model("gpt2"), tmp_path)
    assert type(loaded.active_peft_config) is QLoraConfig and loaded.active_peft_config.blocksize == 32
    assert torch.equal(logits(loaded, batch), logits(model, batch))
    # a plain LoRA file still loads as plain LoRA
    lora = get_peft_model(make_model("gpt2"), make_config("lora", r=2, target_modules=["c_attn"]))
    lora.save_pretrained(tmp_path / "lora")
    assert (
        type(PeftModel.from_pretrained(make_model("gpt2"), tmp_path / "lora").active_peft_config)
        is LoraConfig
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(bnb_4bit_quant_type="fp4"), "bnb_4bit_quant_type"),
        (dict(blocksize=7), "blocksize"),
        (dict(blocksize=0), "blocksize"),
        (dict(use_dora=True), "use_dora"),
        (dict(r=0), "r=0"),
        (dict(bnb_4bit_use_double_quant="yes"), "bnb_4bit_use_double_quant"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        QLoraConfig(**{"target_modules": ["q_proj"], **kwargs})


def test_blocksize_that_does_not_divide_a_weight_leaves_the_model_untouched():
    base = make_model("llama")
    before = {n: type(m) for n, m in base.named_modules()}
    with pytest.raises(ValueError, match="blocksize=48 must be an even number that divides"):
        get_peft_model(base, make_config("qlora", r=2, target_modules=["q_proj"], blocksize=48))
    assert {n: type(m) for n, m in base.named_modules()} == before
