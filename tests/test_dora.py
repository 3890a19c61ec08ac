"""DoRA: magnitude init, the decomposed forward, the detached norm, and interop with HF peft (use_dora=True)."""

import peft
import pytest
import torch
import torch.nn.functional as F
from conftest import ATTN_TARGETS, make_batch, make_model
from safetensors.torch import load_file

from peftlab import LoraConfig, PeftModel, get_peft_model, make_config
from peftlab.methods.dora import DoraLinear


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_preset_sets_use_dora():
    config = make_config("dora", r=4, target_modules=["q_proj"])
    assert isinstance(config, LoraConfig) and config.use_dora


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_magnitude_starts_at_the_row_norm_of_w(kind):
    base = make_model(kind)
    name = "model.layers.0.self_attn.q_proj" if kind == "llama" else "transformer.h.0.attn.c_attn"
    w = base.get_submodule(name).weight.detach().clone()
    expected = w.norm(dim=1) if kind == "llama" else w.norm(dim=0)  # Conv1D stores (in, out)
    model = get_peft_model(base, make_config("dora", r=4, target_modules=ATTN_TARGETS[kind]))
    layer = model.base_model.get_submodule(name)
    assert isinstance(layer, DoraLinear)
    torch.testing.assert_close(layer.lora_magnitude_vector["default"].detach(), expected, rtol=0, atol=1e-7)


def _trained_layer(seed=0):
    torch.manual_seed(seed)
    base = torch.nn.Linear(16, 12)
    layer = DoraLinear(base)
    layer.add("default", LoraConfig(r=3, lora_alpha=6, target_modules=["x"], use_dora=True))
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
        layer.lora_magnitude_vector["default"].mul_(1 + 0.2 * torch.randn(12))
    return base, layer


def test_forward_is_magnitude_times_unit_direction():
    base, layer = _trained_layer()
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    m = layer.lora_magnitude_vector["default"]
    v = base.weight + 2.0 * B @ A  # (12, 16), scale = 6 / 3
    w_new = m.unsqueeze(1) * v / v.norm(dim=1, keepdim=True)
    x = torch.randn(4, 16)
    torch.testing.assert_close(layer(x), F.linear(x, w_new, base.bias), rtol=1e-5, atol=1e-6)


def test_norm_is_detached_in_backward():
    """Gradients equal those of the formula with ||W + sBA|| treated as a constant, and differ from the full ones."""
    base, layer = _trained_layer(1)
    x = torch.randn(5, 16)
    layer(x).pow(2).sum().backward()
    ours = layer.lora_A["default"].weight.grad.clone()

    def manual(detach):
        A = layer.lora_A["default"].weight.detach().clone().requires_grad_(True)
        B, m = layer.lora_B["default"].weight.detach(), layer.lora_magnitude_vector["default"].detach()
        v = base.weight.detach() + 2.0 * B @ A
        norm = v.norm(dim=1, keepdim=True)
        out = F.linear(x, m.unsqueeze(1) * v / (norm.detach() if detach else norm), base.bias.detach())
        out.pow(2).sum().backward()
        return A.grad

    torch.testing.assert_close(ours, manual(detach=True), rtol=1e-4, atol=1e-6)
    assert not torch.allclose(ours, manual(detach=False), rtol=1e-3, atol=1e-6)


def _peft_dora(kind, **kw):
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=ATTN_TARGETS[kind], use_dora=True, init_lora_weights=False, **kw
    )
    model = peft.get_peft_model(make_model(kind), config)
    with torch.no_grad():  # move the magnitudes away from their init, so that they matter
        for n, p in model.named_parameters():
            if "lora_magnitude_vector" in n:
                p.mul_(1 + 0.1 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_peft_saved_dora_loads_here_with_equal_logits(kind, tmp_path):
    torch.manual_seed(0)
    reference = _peft_dora(kind)
    reference.save_pretrained(tmp_path)
    assert any(k.endswith("lora_magnitude_vector") for k in load_file(tmp_path / "adapter_model.safetensors"))
    batch = make_batch(kind)
    ours = PeftModel.from_pretrained(make_model(kind), tmp_path)
    assert isinstance(ours.base_model.get_submodule(ours.adapter_layers()[0][0]), DoraLinear)
    assert ours.get_nb_trainable_parameters()[1] == reference.get_nb_trainable_parameters()[1]
    torch.testing.assert_close(logits(ours, batch), logits(reference, batch), rtol=0, atol=1e-5)
    assert not torch.allclose(logits(ours, batch), logits(make_model(kind), batch), atol=1e-3)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_our_dora_loads_in_peft(kind, tmp_path):
    torch.manual_seed(0)
    config = make_config(
        "dora", r=4, lora_alpha=8, target_modules=ATTN_TARGETS[kind], init_lora_weights=False
    )
    ours = get_peft_model(make_model(kind), config)
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if "lora_magnitude_vector" in n:
                p.mul_(1 + 0.1 * torch.randn_like(p))
    ours.save_pretrained(tmp_path)
    theirs = peft.PeftModel.from_pretrained(make_model(kind), tmp_path).eval()
    batch = make_batch(kind)
    torch.testing.assert_close(logits(theirs, batch), logits(ours, batch), rtol=0, atol=1e-5)


def test_training_with_dropout_matches_peft():
    """In train mode with dropout, the direction term sees the dropped-out input, as in peft."""
    torch.manual_seed(0)
    reference = _peft_dora("llama", lora_dropout=0.5)
    ours = get_peft_model(
        make_model("llama"),
        make_config("dora", r=4, lora_alpha=8, lora_dropout=0.5, target_modules=ATTN_TARGETS["llama"]),
    )
    theirs = {
        n.replace("base_model.model.", "", 1): p for n, p in reference.named_parameters() if "lora_" in n
    }
    with torch.no_grad():
        for n, p in ours.named_parameters():
            if "lora_" in n:
                key = n.replace("base_model.", "", 1).replace(
                    "lora_magnitude_vector.default", "lora_magnitude_vector.default.weight"
                )
                p.copy_(theirs[key])
    batch = make_batch("llama")
    reference.train(), ours.train()
    torch.manual_seed(5)
    a = reference(**batch).logits
    torch.manual_seed(5)
    b = ours(**batch).logits
    torch.testing.assert_close(b, a, rtol=0, atol=1e-5)


def test_dora_refuses_embedding_targets():
    with pytest.raises(ValueError, match="use_dora=True supports Linear/Conv1D"):
        get_peft_model(
            make_model("llama"), make_config("dora", r=2, target_modules=["embed_tokens", "q_proj"])
        )


def test_lora_and_dora_cannot_share_a_layer():
    model = get_peft_model(make_model("llama"), make_config("lora", r=2, target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="plain LoRA"):
        model.add_adapter("second", make_config("dora", r=2, target_modules=["q_proj"]))
    assert list(model.peft_config) == ["default"]
