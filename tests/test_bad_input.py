"""Bad input gets a clear error that says what was wrong and what is allowed, and loses nothing."""

import json

import pytest
import torch
from conftest import make_batch, make_model
from safetensors.torch import save_file

from peftlab import LoraConfig, PeftModel, get_peft_model
from peftlab.inject import AdapterLayer


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(r=0), ["r=0", ">= 1"]),
        (dict(r=-3), ["r=-3", ">= 1"]),
        (dict(lora_alpha=0), ["lora_alpha=0", "> 0"]),
        (dict(lora_alpha=-1.5), ["lora_alpha", "> 0"]),
        (dict(lora_dropout=1.0), ["lora_dropout=1.0", "< 1"]),
        (dict(lora_dropout=-0.1), ["lora_dropout", ">= 0"]),
        (dict(bias="some"), ["bias='some'", "'none'", "'lora_only'"]),
        (dict(task_type="CLASSIFY"), ["task_type", "CAUSAL_LM"]),
    ],
)
def test_config_values(kwargs, words):
    with pytest.raises(ValueError) as e:
        LoraConfig(**{"target_modules": ["q_proj"], **kwargs})
    for w in words:
        assert w in str(e.value)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(r="8"), ["r='8'", "str", "int"]),
        (dict(r=8.0), ["r=8.0", "float", "int"]),
        (dict(r=True), ["r=True", "bool"]),
        (dict(use_rslora="yes"), ["use_rslora", "bool"]),
        (dict(target_modules=3), ["target_modules=3"]),
    ],
)
def test_config_types(kwargs, words):
    with pytest.raises(TypeError) as e:
        LoraConfig(**{"target_modules": ["q_proj"], **kwargs})
    for w in words:
        assert w in str(e.value)


def test_missing_target_modules():
    with pytest.raises(ValueError, match="target_modules is required"):
        LoraConfig()


def test_target_that_matches_nothing_lists_what_exists():
    model = make_model("llama")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as e:
        get_peft_model(model, LoraConfig(target_modules=["query"]))
    msg = str(e.value)
    assert "matched no module" in msg and "q_proj" in msg and "v_proj" in msg and "gate_proj" in msg
    assert not any(isinstance(m, AdapterLayer) for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_target_of_unsupported_type():
    with pytest.raises(TypeError, match="can wrap only"):
        get_peft_model(make_model("llama"), LoraConfig(target_modules=["input_layernorm"]))


def saved_adapter(tmp_path, kind="llama", r=4):
    model = get_peft_model(make_model(kind), LoraConfig(r=r, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(tmp_path)
    return model


def assert_untouched(model, snapshot):
    assert not any(isinstance(m, AdapterLayer) for m in model.modules()), "adapter layers were left behind"
    assert model.state_dict().keys() == snapshot.keys()
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in snapshot.items())
    assert all(p.requires_grad for p in model.parameters()), "requires_grad flags were changed"


def test_shape_mismatch_names_key_and_both_shapes(tmp_path):
    import transformers

    saved_adapter(tmp_path)
    cfg = transformers.LlamaConfig(
        vocab_size=100,
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    )
    other = transformers.LlamaForCausalLM(cfg)
    snapshot = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(ValueError) as e:
        PeftModel.from_pretrained(other, tmp_path)
    msg = str(e.value)
    assert "q_proj.lora_A.weight" in msg and "(4, 32)" in msg and "(4, 48)" in msg
    assert_untouched(other, snapshot)


def test_truncated_file(tmp_path):
    saved_adapter(tmp_path)
    path = tmp_path / "adapter_model.safetensors"
    path.write_bytes(path.read_bytes()[:100])
    model = make_model("llama")
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="could not be read as safetensors"):
        PeftModel.from_pretrained(model, tmp_path)
    assert_untouched(model, snapshot)


def test_not_safetensors_at_all(tmp_path):
    saved_adapter(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_text("this is not a tensor file")
    with pytest.raises(ValueError, match="truncated or not a safetensors"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)


def test_pickle_is_never_loaded(tmp_path):
    saved_adapter(tmp_path)
    (tmp_path / "adapter_model.safetensors").unlink()
    torch.save({"x": torch.zeros(1)}, tmp_path / "adapter_model.bin")
    with pytest.raises(FileNotFoundError, match="never loads pickle"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)


def test_missing_config(tmp_path):
    saved_adapter(tmp_path)
    (tmp_path / "adapter_config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no adapter_config.json"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)


def test_config_with_a_bad_value(tmp_path):
    saved_adapter(tmp_path)
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    (tmp_path / "adapter_config.json").write_text(json.dumps({**cfg, "r": -1}))
    model = make_model("llama")
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match="r=-1"):
        PeftModel.from_pretrained(model, tmp_path)
    assert_untouched(model, snapshot)


def test_missing_and_unexpected_keys(tmp_path):
    saved_adapter(tmp_path)
    from safetensors.torch import load_file

    tensors = load_file(tmp_path / "adapter_model.safetensors")
    dropped = dict(list(tensors.items())[1:])
    save_file(dropped, tmp_path / "adapter_model.safetensors")
    with pytest.raises(KeyError, match="lacks 1 adapter tensor"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)
    save_file(
        {**tensors, "base_model.model.nowhere.lora_A.weight": torch.zeros(2, 2)},
        tmp_path / "adapter_model.safetensors",
    )
    with pytest.raises(KeyError, match="matches nothing"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)


def test_load_adapter_failure_leaves_existing_adapters(tmp_path):
    saved_adapter(tmp_path / "good")
    saved_adapter(tmp_path / "bad", r=2)
    (tmp_path / "bad" / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
    model = PeftModel.from_pretrained(make_model("llama"), tmp_path / "good")
    batch = make_batch("llama")
    before = model(**batch).logits
    with pytest.raises(ValueError):
        model.load_adapter(tmp_path / "bad", adapter_name="other")
    assert list(model.peft_config) == ["default"]
    assert torch.equal(model(**batch).logits, before)


def test_unknown_adapter_name():
    model = get_peft_model(make_model("llama"), LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="no adapter named 'nope'; adapters on this model: \\['default'\\]"):
        model.set_adapter("nope")
    with pytest.raises(ValueError, match="no adapter named"):
        model.delete_adapter("nope")
    with pytest.raises(ValueError, match="exists already"):
        model.add_adapter("default", LoraConfig(target_modules=["q_proj"]))
    assert model.active_adapter == "default"


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    model = saved_adapter(tmp_path)
    old = (tmp_path / "adapter_model.safetensors").read_bytes()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.fill_(1.0)

    def boom(tensors, path, metadata=None):
        with open(path, "wb") as f:
            f.write(b"half a fi")
        raise OSError("disk full")

    monkeypatch.setattr("peftlab.peft_model.save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == old
    assert [p.name for p in tmp_path.iterdir() if ".tmp" in p.name] == []


def test_wrapping_twice_is_refused():
    model = make_model("llama")
    get_peft_model(model, LoraConfig(target_modules=["q_proj"]))
    with pytest.raises(ValueError, match="already carries adapters"):
        get_peft_model(model, LoraConfig(target_modules=["v_proj"]))
