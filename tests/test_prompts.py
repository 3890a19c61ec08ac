"""Soft prompts: config validation, formulas, generation, and parity with HF peft (counts, weights, logits, files)."""

import json

import peft
import pytest
import torch
import torch.nn.functional as F
from conftest import VOCAB, make_batch, make_model
from safetensors.torch import load_file, save_file

from peftlab import (
    AdaptionPromptConfig,
    MultitaskPromptTuningConfig,
    PeftModel,
    PrefixTuningConfig,
    PromptEncoderConfig,
    PromptTuningConfig,
    get_peft_model,
    nearest_tokens,
)

KINDS = ("llama", "gpt2", "t5")


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


# -- bad input: every field says what is allowed --------------------------------------------------------------------
@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (PromptTuningConfig, dict(num_virtual_tokens=0), "num_virtual_tokens=0 .* >= 1"),
        (PromptTuningConfig, dict(num_virtual_tokens=-3), "num_virtual_tokens"),
        (PromptTuningConfig, dict(token_dim=0), "token_dim"),
        (PromptTuningConfig, dict(num_layers=0), "num_layers"),
        (PromptTuningConfig, dict(num_attention_heads=0), "num_attention_heads"),
        (
            PromptTuningConfig,
            dict(num_transformer_submodules=3),
            "num_transformer_submodules=3 .* 1, 2 or None",
        ),
        (PromptTuningConfig, dict(prompt_tuning_init="ZEROS"), "prompt_tuning_init='ZEROS' .*RANDOM"),
        (
            PromptTuningConfig,
            dict(prompt_tuning_init="TEXT", tokenizer_name_or_path="x"),
            "prompt_tuning_init_text",
        ),
        (
            PromptTuningConfig,
            dict(prompt_tuning_init="TEXT", prompt_tuning_init_text="hi"),
            "tokenizer_name_or_path",
        ),
        (PromptTuningConfig, dict(tokenizer_kwargs={"a": 1}), "tokenizer_kwargs"),
        (PrefixTuningConfig, dict(num_virtual_tokens=0), "num_virtual_tokens"),
        (PrefixTuningConfig, dict(encoder_hidden_size=0), "encoder_hidden_size=0 .* >= 1"),
        (PrefixTuningConfig, dict(init_weights="ones"), "init_weights='ones' .* None or 'zero'"),
        (
            PromptEncoderConfig,
            dict(encoder_reparameterization_type="GRU"),
            "encoder_reparameterization_type.*MLP",
        ),
        (PromptEncoderConfig, dict(encoder_hidden_size=0), "encoder_hidden_size"),
        (PromptEncoderConfig, dict(encoder_num_layers=0), "encoder_num_layers=0 .* >= 1"),
        (PromptEncoderConfig, dict(encoder_dropout=1.0), "encoder_dropout=1.0 .* < 1"),
        (PromptEncoderConfig, dict(encoder_dropout=-0.1), "encoder_dropout"),
        (MultitaskPromptTuningConfig, dict(num_tasks=0), "num_tasks=0 .* >= 1"),
        (MultitaskPromptTuningConfig, dict(num_ranks=0), "num_ranks=0 .* >= 1"),
        (MultitaskPromptTuningConfig, dict(prompt_tuning_init_task=-1), "prompt_tuning_init_task"),
        (
            MultitaskPromptTuningConfig,
            dict(prompt_tuning_init="EXACT_SOURCE_TASK"),
            "prompt_tuning_init_state_dict",
        ),
        (MultitaskPromptTuningConfig, dict(num_transformer_submodules=2), "num_transformer_submodules=2"),
        (AdaptionPromptConfig, dict(adapter_layers=1), "adapter_len is required"),
        (AdaptionPromptConfig, dict(adapter_len=4), "adapter_layers is required"),
        (AdaptionPromptConfig, dict(adapter_len=0, adapter_layers=1), "adapter_len=0 .* >= 1"),
        (AdaptionPromptConfig, dict(adapter_len=2, adapter_layers=-1), "adapter_layers=-1"),
    ],
)
def test_bad_config_values(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_config_types():
    with pytest.raises(TypeError, match="num_virtual_tokens"):
        PromptTuningConfig(num_virtual_tokens="4")
    with pytest.raises(TypeError, match="prefix_projection"):
        PrefixTuningConfig(prefix_projection="yes")


def test_bad_input_found_when_applied():
    with pytest.raises(ValueError, match="adapter_layers=3 .* between 1 and 2"):
        get_peft_model(make_model("llama"), AdaptionPromptConfig(adapter_len=2, adapter_layers=3))
    for kind in ("t5", "gpt2"):
        with pytest.raises(ValueError, match="LLaMA-style decoders only.*llama"):
            get_peft_model(make_model(kind), AdaptionPromptConfig(adapter_len=2, adapter_layers=1))
    with pytest.raises(ValueError, match="token_dim=16 does not match .* 32"):
        get_peft_model(make_model("llama"), PromptTuningConfig(num_virtual_tokens=2, token_dim=16))
    bad_ids = PromptTuningConfig(
        num_virtual_tokens=2, prompt_tuning_init="TEXT", prompt_tuning_init_ids=[VOCAB]
    )
    with pytest.raises(ValueError, match="prompt_tuning_init_ids"):
        get_peft_model(make_model("llama"), bad_ids)


# -- prompt tuning ---------------------------------------------------------------------------------------------------
class WordTokenizer:
    """A stand-in tokenizer (offline): one id per word."""

    name_or_path = "word-tokenizer"
    vocab = {"summarize": 7, "the": 42, "article": 13}

    def __call__(self, text):
        return {"input_ids": [self.vocab[w] for w in text.lower().split()]}

    def decode(self, ids):
        inverse = {v: k for k, v in self.vocab.items()}
        return " ".join(inverse.get(i, f"<{i}>") for i in ids)


def test_text_init_repeats_the_text_and_reloads_without_tokenizer(tmp_path):
    base = make_model("llama")
    words = base.get_input_embeddings().weight.detach().clone()
    config = PromptTuningConfig(
        num_virtual_tokens=5,
        prompt_tuning_init="TEXT",
        prompt_tuning_init_text="Summarize the article",
        tokenizer_name_or_path=WordTokenizer(),
    )
    model = get_peft_model(base, config)
    prompt = model.prompt_modules["default"].embedding.weight
    torch.testing.assert_close(prompt, words[[7, 42, 13, 7, 42]], rtol=0, atol=0)
    # the nearest vocabulary token of each virtual token is the word it started from
    near = nearest_tokens(model, WordTokenizer(), k=2)
    assert [row[0][0] for row in near] == ["summarize", "the", "article", "summarize", "the"]
    assert all(abs(row[0][1] - 1.0) < 1e-4 and row[1][1] < row[0][1] for row in near)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["tokenizer_name_or_path"] == "word-tokenizer" and saved["prompt_tuning_init_ids"] == [
        7,
        42,
        13,
    ]
    again = PeftModel.from_pretrained(make_model("llama"), tmp_path, is_trainable=True)  # no tokenizer needed
    torch.testing.assert_close(again.prompt_modules["default"].embedding.weight, prompt, rtol=0, atol=0)


def test_sample_vocab_rows_are_vocabulary_embeddings():
    base = make_model("gpt2")
    words = base.get_input_embeddings().weight.detach().clone()
    model = get_peft_model(base, PromptTuningConfig(num_virtual_tokens=6, prompt_tuning_init="SAMPLE_VOCAB"))
    for row in model.prompt_modules["default"].embedding.weight:
        assert (words == row).all(dim=1).any()


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_tuning_equals_prepending_embeddings(kind):
    """Ours == the base model run on [P; E(x)] by hand, logits cut to the real tokens (decoder-only)."""
    model = get_peft_model(make_model(kind), PromptTuningConfig(num_virtual_tokens=3))
    batch = make_batch(kind)
    P = model.prompt_modules["default"].embedding.weight.detach()  # (3, d)
    base = model.base_model
    embeds = torch.cat([P.expand(2, -1, -1), base.get_input_embeddings()(batch["input_ids"])], dim=1)
    mask = torch.ones(2, 3 + batch["input_ids"].shape[1], dtype=torch.long)
    with torch.no_grad():
        if kind == "t5":
            expected = base(inputs_embeds=embeds, attention_mask=mask, labels=batch["labels"]).logits
        else:
            expected = base(inputs_embeds=embeds, attention_mask=mask).logits[:, 3:]
    torch.testing.assert_close(logits(model, batch), expected, rtol=0, atol=0)


# -- nearest tokens -------------------------------------------------------------------------------------------------
def test_nearest_tokens_needs_input_space_prompts():
    model = get_peft_model(make_model("llama"), PrefixTuningConfig(num_virtual_tokens=2))
    with pytest.raises(TypeError, match="input embedding space"):
        nearest_tokens(model)
    model = get_peft_model(make_model("llama"), PromptTuningConfig(num_virtual_tokens=2))
    with pytest.raises(ValueError, match="k=0"):
        nearest_tokens(model, k=0)
    ids = nearest_tokens(model, k=3)
    assert len(ids) == 2 and all(len(r) == 3 and all(isinstance(i, int) for i, _ in r) for r in ids)


# -- prefix tuning ---------------------------------------------------------------------------------------------------
def _prefix_from_cache(cache, num_layers):
    """peft's flat layout (n, L * 2 * H * d_h) from a real KV cache of n tokens."""
    layers = cache.self_attention_cache.layers if hasattr(cache, "self_attention_cache") else cache.layers
    kv = torch.stack(
        [t[0] for layer in layers[:num_layers] for t in (layer.keys, layer.values)]
    )  # (2L, H, n, d_h)
    return kv.permute(2, 0, 1, 3).reshape(kv.shape[2], -1)


@pytest.mark.parametrize("kind", KINDS)
def test_prefix_equals_real_tokens_seen_before(kind):
    """A prefix set to the K, V of n real tokens s behaves exactly like having s in front of the input."""
    n = 3
    model = get_peft_model(make_model(kind), PrefixTuningConfig(num_virtual_tokens=n))
    base = model.base_model
    batch = {k: v[:1] for k, v in make_batch(kind).items()}
    s = torch.tensor([[11, 22, 33]])
    with torch.no_grad():
        if kind == "t5":  # the prefix lives in the decoder: s = decoder tokens seen before
            enc = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            cache = base(**enc, decoder_input_ids=s, use_cache=True).past_key_values
            dec = base._shift_right(batch["labels"])
            expected = base(**enc, decoder_input_ids=torch.cat([s, dec], 1)).logits[:, n:]
            inputs = {**enc, "decoder_input_ids": dec}
        else:
            cache = base(input_ids=s, use_cache=True).past_key_values
            expected = base(input_ids=torch.cat([s, batch["input_ids"]], 1)).logits[:, n:]
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        model.prompt_modules["default"].embedding.weight.copy_(
            _prefix_from_cache(cache, base.config.num_hidden_layers)
        )
    torch.testing.assert_close(logits(model, inputs), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "config", [PrefixTuningConfig(num_virtual_tokens=3), PromptEncoderConfig(num_virtual_tokens=2)]
)
def test_generate_equals_greedy_forward(kind, config):
    """generate() through the soft prompt == a hand-written greedy loop over the adapted forward."""
    model = get_peft_model(make_model(kind), config)
    ids = make_batch(kind)["input_ids"][:, :4]
    out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        if kind == "t5":
            dec = torch.zeros(2, 1, dtype=torch.long)
            for _ in range(3):
                step = model(input_ids=ids, decoder_input_ids=dec).logits[:, -1].argmax(-1, keepdim=True)
                dec = torch.cat([dec, step], 1)
            expected = dec
        else:
            full = ids
            for _ in range(3):
                step = model(input_ids=full).logits[:, -1].argmax(-1, keepdim=True)
                full = torch.cat([full, step], 1)
            expected = full
    assert torch.equal(out, expected)


def test_prefix_projection_formula():
    model = get_peft_model(
        make_model("gpt2"),
        PrefixTuningConfig(num_virtual_tokens=2, prefix_projection=True, encoder_hidden_size=5),
    )
    enc = model.prompt_modules["default"]
    lin1, lin2 = enc.transform[0], enc.transform[2]
    flat = (
        torch.tanh(enc.embedding.weight @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    )  # (n, 2 L d)
    layer1_values = flat.view(2, 2 * 2, 4, 8)[:, 3]  # layer 1's V: (n, H, d_h)
    torch.testing.assert_close(enc.prefix()[3], layer1_values.transpose(0, 1))
    assert model.get_nb_trainable_parameters()[0] == 2 * 32 + (32 * 5 + 5) + (5 * 2 * 2 * 32 + 2 * 2 * 32)


def test_prefix_gqa_uses_key_value_heads():
    model = get_peft_model(make_model("llama"), PrefixTuningConfig(num_virtual_tokens=4))
    config = model.active_peft_config
    assert (config.num_attention_heads, config.token_dim) == (2, 16)  # 2 kv heads x head_dim 8
    assert model.get_nb_trainable_parameters()[0] == 4 * 2 * 2 * 16  # n * L * 2 * d_kv


# -- P-tuning --------------------------------------------------------------------------------------------------------
def test_p_tuning_mlp_formula():
    model = get_peft_model(
        make_model("llama"), PromptEncoderConfig(num_virtual_tokens=3, encoder_hidden_size=6)
    )
    enc = model.prompt_modules["default"]
    l1, l2, l3 = enc.mlp_head[0], enc.mlp_head[2], enc.mlp_head[4]
    h = F.relu(enc.embedding.weight @ l1.weight.T + l1.bias)
    h = F.relu(h @ l2.weight.T + l2.bias)
    torch.testing.assert_close(enc.virtual_token_embeddings(), (h @ l3.weight.T + l3.bias).detach())
    assert model.get_nb_trainable_parameters()[0] == 3 * 32 + (32 * 6 + 6) + (6 * 6 + 6) + (6 * 32 + 32)


def test_p_tuning_lstm_tokens_see_each_other():
    """With the bidirectional LSTM, changing the first row of E' changes the last virtual token too."""
    model = get_peft_model(
        make_model("llama"), PromptEncoderConfig(num_virtual_tokens=3, encoder_reparameterization_type="LSTM")
    )
    enc = model.prompt_modules["default"]
    before = enc.virtual_token_embeddings()
    with torch.no_grad():
        enc.embedding.weight[0] += 1.0
    assert not torch.allclose(enc.virtual_token_embeddings()[-1], before[-1])


def test_peft_p_tuning_file_gives_clear_error(tmp_path):
    reference = peft.get_peft_model(
        make_model("llama"), peft.PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=2)
    )
    reference.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="encoder's output"):
        PeftModel.from_pretrained(make_model("llama"), tmp_path)


# -- multitask prompt tuning -----------------------------------------------------------------------------------------
def test_multitask_formula_and_task_ids():
    config = MultitaskPromptTuningConfig(num_virtual_tokens=3, num_tasks=3, num_ranks=2)
    model = get_peft_model(make_model("llama"), config)
    enc = model.prompt_modules["default"]
    u, v, shared = enc.prefix_task_cols, enc.prefix_task_rows, enc.embedding.weight
    expected = shared * torch.einsum("nr,rd->nd", u[2], v[2])  # P* o (u_2 v_2)
    torch.testing.assert_close(enc.virtual_token_embeddings(task_id=2), expected.detach())
    batch = make_batch("llama")
    mixed = logits(model, {**batch, "task_ids": torch.tensor([0, 2])})
    only0 = logits(model, {**batch, "task_ids": torch.tensor([0, 0])})
    only2 = logits(model, {**batch, "task_ids": torch.tensor([2, 2])})
    torch.testing.assert_close(mixed[0], only0[0])
    torch.testing.assert_close(mixed[1], only2[1])
    assert not torch.allclose(only0, only2)
    with pytest.raises(ValueError, match="task_ids"):
        model(**batch)
    with pytest.raises(ValueError, match=r"task_ids=\[0, 3\] must hold 2 values in \[0, 3\)"):
        model(**batch, task_ids=torch.tensor([0, 3]))
    out = model.generate(input_ids=batch["input_ids"][:, :3], task_ids=torch.tensor([1, 2]), max_new_tokens=2)
    assert out.shape == (2, 5)


def test_multitask_transfer_from_source_tasks(tmp_path):
    source = get_peft_model(
        make_model("llama"), MultitaskPromptTuningConfig(num_virtual_tokens=3, num_tasks=3)
    )
    source.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert set(saved) == {"prompt_embeddings", "prefix_task_cols", "prefix_task_rows"}  # peft's keys
    path = str(tmp_path / "adapter_model.safetensors")
    for init, cols in [
        ("EXACT_SOURCE_TASK", saved["prefix_task_cols"][1]),
        ("AVERAGE_SOURCE_TASKS", saved["prefix_task_cols"].mean(0)),
    ]:
        config = MultitaskPromptTuningConfig(
            num_virtual_tokens=3,
            num_tasks=2,
            prompt_tuning_init=init,
            prompt_tuning_init_state_dict_path=path,
            prompt_tuning_init_task=1,
        )
        target = get_peft_model(make_model("llama"), config).prompt_modules["default"]
        torch.testing.assert_close(target.embedding.weight.detach(), saved["prompt_embeddings"])
        for task in range(2):
            torch.testing.assert_close(target.prefix_task_cols[task].detach(), cols)


# -- LLaMA-Adapter ---------------------------------------------------------------------------------------------------
def test_llama_adapter_only_top_layers_and_count():
    model = get_peft_model(make_model("llama"), AdaptionPromptConfig(adapter_len=5, adapter_layers=1))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == [
        "base_model.model.layers.1.self_attn.adaption_prompt.default",
        "base_model.model.layers.1.self_attn.adaption_gate.default",
    ]
    assert model.get_nb_trainable_parameters()[0] == 5 * 32 + 1


# -- parity with HF peft: same weights -> same logits, and the files load both ways --------------------------------
def _peft_and_ours(kind, peft_config, tmp_path, **peft_kwargs):
    torch.manual_seed(123)
    reference = peft.get_peft_model(make_model(kind), peft_config).eval()
    reference.save_pretrained(tmp_path / "peft")
    ours = PeftModel.from_pretrained(make_model(kind), tmp_path / "peft")
    return reference, ours


def _compare(kind, reference, ours, n, **extra):
    batch = {**make_batch(kind), **extra}
    with torch.no_grad():
        ref_out, our_out = reference(**batch), ours(**batch)
    ref_logits = ref_out.logits if kind == "t5" or n == 0 else ref_out.logits[:, n:]
    torch.testing.assert_close(our_out.logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(our_out.loss, ref_out.loss, rtol=1e-5, atol=1e-5)


def _task(kind):
    return "SEQ_2_SEQ_LM" if kind == "t5" else "CAUSAL_LM"


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_tuning_matches_peft(kind, tmp_path):
    subs = {"num_transformer_submodules": 1} if kind == "t5" else {}
    cfg = peft.PromptTuningConfig(task_type=_task(kind), num_virtual_tokens=4, **subs)
    reference, ours = _peft_and_ours(kind, cfg, tmp_path)
    _compare(kind, reference, ours, 4)
    # and the other way: our file loads in peft
    ours.save_pretrained(tmp_path / "ours")
    assert set(load_file(tmp_path / "ours" / "adapter_model.safetensors")) == {"prompt_embeddings"}
    back = peft.PeftModel.from_pretrained(make_model(kind), tmp_path / "ours").eval()
    _compare(kind, back, ours, 4)


def test_prompt_tuning_peft_seq2seq_default_loads(tmp_path):
    """peft's T5 default keeps 2 x n rows (the decoder half unused by prompt tuning); we load and match it."""
    reference, ours = _peft_and_ours(
        "t5", peft.PromptTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=3), tmp_path
    )
    assert ours.prompt_modules["default"].embedding.weight.shape == (6, 32)
    _compare("t5", reference, ours, 3)


@pytest.mark.parametrize("kind", ("llama", "gpt2"))
def test_prefix_tuning_matches_peft(kind, tmp_path):
    cfg = peft.PrefixTuningConfig(task_type=_task(kind), num_virtual_tokens=4)
    reference, ours = _peft_and_ours(kind, cfg, tmp_path)
    _compare(kind, reference, ours, 0)
    ours.save_pretrained(tmp_path / "ours")
    back = peft.PeftModel.from_pretrained(make_model(kind), tmp_path / "ours").eval()
    _compare(kind, back, ours, 0)


def test_prefix_tuning_t5_differs_from_peft_only_in_layer_order(tmp_path):
    """peft 0.21 on T5 doubles the K,V list and cuts it in fours, so decoder layer l reads the prefix of layer
    (2 l mod L) (with L = 2 both layers read layer 0's; layer 1's slice is never used). We give every layer its own.
    Same weights re-indexed the way peft reads them -> the same logits."""
    cfg = peft.PrefixTuningConfig(task_type="SEQ_2_SEQ_LM", num_virtual_tokens=4)
    reference, ours = _peft_and_ours("t5", cfg, tmp_path)
    batch = make_batch("t5")
    assert not torch.allclose(logits(ours, batch), logits(reference, batch), atol=1e-4)
    layers = ours.base_model.config.num_layers
    weight = ours.prompt_modules["default"].embedding.weight
    pairs = weight.detach().view(4, layers, 2, -1)  # (n, L, K/V, H d_h)
    with torch.no_grad():
        weight.copy_(pairs[:, [(2 * layer) % layers for layer in range(layers)]].reshape(4, -1))
    _compare("t5", reference, ours, 0)


def test_multitask_matches_peft(tmp_path):
    cfg = peft.MultitaskPromptTuningConfig(
        task_type="CAUSAL_LM", num_virtual_tokens=3, num_tasks=2, num_ranks=2
    )
    reference, ours = _peft_and_ours("llama", cfg, tmp_path)
    _compare("llama", reference, ours, 3, task_ids=torch.tensor([1, 0]))


def test_llama_adapter_matches_peft(tmp_path):
    torch.manual_seed(0)
    reference = peft.get_peft_model(
        make_model("llama"), peft.AdaptionPromptConfig(task_type="CAUSAL_LM", adapter_len=3, adapter_layers=2)
    ).eval()
    with torch.no_grad():  # open the gates so the adapter matters
        for name, p in reference.named_parameters():
            if name.endswith("adaption_gate"):
                p.fill_(0.7)
    reference.save_pretrained(tmp_path)
    ours = PeftModel.from_pretrained(make_model("llama"), tmp_path)
    base = logits(make_model("llama"), make_batch("llama"))
    assert not torch.allclose(logits(ours, make_batch("llama")), base, atol=1e-4)
    _compare("llama", reference, ours, 0)


def test_saved_prefix_file_is_peft_layout(tmp_path):
    model = get_peft_model(make_model("gpt2"), PrefixTuningConfig(num_virtual_tokens=2))
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert list(saved) == ["prompt_embeddings"] and saved["prompt_embeddings"].shape == (2, 2 * 2 * 32)
    # a peft file whose tensor has the wrong size is refused with the shapes named
    save_file({"prompt_embeddings": torch.zeros(2, 5)}, tmp_path / "adapter_model.safetensors")
    with pytest.raises(ValueError, match="shape"):
        PeftModel.from_pretrained(make_model("gpt2"), tmp_path)


def test_llama_adapter_two_adapters_swap():
    model = get_peft_model(make_model("llama"), AdaptionPromptConfig(adapter_len=2, adapter_layers=1))
    model.add_adapter("other", AdaptionPromptConfig(adapter_len=3, adapter_layers=2))
    batch = make_batch("llama")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "adaption_gate" in name:
                p.fill_(0.5 if name.endswith(".other") else 0.2)
    first = logits(model, batch)
    model.set_adapter("other")
    assert model.get_nb_trainable_parameters()[0] == 2 * (3 * 32 + 1)
    second = logits(model, batch)
    assert not torch.allclose(first, second, atol=1e-4)
    model.delete_adapter("other")
    torch.testing.assert_close(logits(model, batch), first, rtol=0, atol=0)
