"""One tester for every registered method: the same invariants over a table of (method, config) cases.

1. at init the adapted model's logits equal the base model's (where the method promises that);
2. after 3 optimizer steps only adapter parameters changed; every base weight is bit-identical;
3. merged == unmerged logits, unmerge restores the base weights, `disable_adapter` == base;
4. save -> load reproduces the logits exactly, and the file holds no full-model weights;
5. trainable count == sum of adapter numel == what HF peft reports for the same config;
6. generation works through the wrapper.
"""

import copy

import pytest
import torch
from cases import all_cases
from conftest import make_batch, make_model

from peftlab import PeftModel, get_peft_model, make_config

CASES = [(case, kind) for case in all_cases() for kind in case.kinds]
IDS = [f"{case.id}-{kind}" for case, kind in CASES]


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def train_steps(model, batch, lr, steps=3):
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        model(**batch).loss.backward()
        opt.step()
    model.eval()


@pytest.fixture(params=CASES, ids=IDS)
def setup(request):
    case, kind = request.param
    base = make_model(kind)
    batch = make_batch(kind)
    base_logits = logits(base, batch)
    originals = {id(p): p.detach().clone() for p in base.parameters()}
    model = get_peft_model(base, make_config(case.method, **case.config(kind)))
    return case, kind, model, batch, base_logits, originals


def test_identity_at_init(setup):
    case, kind, model, batch, base_logits, _ = setup
    if not case.identity_at_init:
        pytest.skip(f"{case.method} does not promise identity at init")
    torch.testing.assert_close(logits(model, batch), base_logits, rtol=0, atol=1e-6)


def test_training_touches_only_the_adapter(setup):
    case, kind, model, batch, _, originals = setup
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable, "nothing is trainable"
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    train_steps(model, batch, case.lr)
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(before[n], p)]
    assert changed, "training changed no trainable parameter"
    for p in model.parameters():
        if id(p) in originals and id(p) not in trainable:
            assert torch.equal(p, originals[id(p)]), "a frozen base weight changed"


def test_merge_unmerge_disable(setup):
    case, kind, model, batch, base_logits, originals = setup
    train_steps(model, batch, case.lr)
    adapted = logits(model, batch)
    assert not torch.allclose(adapted, base_logits, atol=1e-4), "the trained adapter changes nothing"
    if case.can_disable:
        with model.disable_adapter():
            torch.testing.assert_close(logits(model, batch), base_logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(logits(model, batch), adapted, rtol=0, atol=0)
    if not case.mergeable:
        return
    model.merge_adapter()
    torch.testing.assert_close(logits(model, batch), adapted, rtol=0, atol=case.merge_atol)
    if case.can_disable:
        with model.disable_adapter():  # works while merged too
            torch.testing.assert_close(logits(model, batch), base_logits, rtol=0, atol=1e-5)
    model.unmerge_adapter()
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    for p in model.parameters():
        if id(p) in originals and id(p) not in trainable:
            torch.testing.assert_close(p, originals[id(p)], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits(model, batch), adapted, rtol=0, atol=case.merge_atol)
    # merge_and_unload gives a plain model of the base's size with the adapted behaviour
    n_base = sum(p.numel() for p in make_model(kind).parameters())
    untied_copies = bool(
        getattr(model.active_peft_config, "modules_to_save", None)
    )  # a copied tied head unties
    plain = model.merge_and_unload()
    assert untied_copies or sum(p.numel() for p in plain.parameters()) == n_base
    torch.testing.assert_close(logits(plain, batch), adapted, rtol=0, atol=case.merge_atol)


def test_save_load_round_trip(setup, tmp_path):
    case, kind, model, batch, _, _ = setup
    train_steps(model, batch, case.lr)
    adapted = logits(model, batch)
    model.save_pretrained(tmp_path)
    loaded = PeftModel.from_pretrained(make_model(kind), tmp_path)
    assert torch.equal(logits(loaded, batch), adapted)
    assert not any(p.requires_grad for p in loaded.parameters()), "is_trainable=False must freeze everything"
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter_model.safetensors")
    trainable, total = model.get_nb_trainable_parameters()
    if case.adapter_only_save:
        assert sum(t.numel() for t in saved.values()) == trainable
        assert trainable < sum(p.numel() for p in make_model(kind).parameters())


def test_trainable_count(setup):
    case, kind, model, _, _, _ = setup
    trainable, total = model.get_nb_trainable_parameters()
    name = model.active_adapter
    owned = sum(
        p.numel()
        for n, p in model.named_parameters()
        if f".{name}." in f".{n}." or n in model._extra_trainable[name]
    )
    assert trainable == owned
    if case.peft_config is not None:
        import peft

        reference = peft.get_peft_model(make_model(kind), case.peft_config(kind))
        assert (trainable, total) == reference.get_nb_trainable_parameters()


def test_generate(setup):
    case, kind, model, batch, _, _ = setup
    ids = batch["input_ids"][:, :4]
    out = model.generate(
        input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=3, do_sample=False, pad_token_id=0
    )
    assert out.shape[0] == ids.shape[0]
    assert out.shape[1] >= (4 if kind == "t5" else 7) - 3  # T5 returns decoder tokens only
    assert out.dtype == torch.long


def test_copy_is_independent(setup):
    """A deepcopy of a PeftModel (the showdown copies models) trains without touching the original."""
    case, kind, model, batch, _, _ = setup
    twin = copy.deepcopy(model)
    before = logits(model, batch)
    train_steps(twin, batch, case.lr)
    assert torch.equal(logits(model, batch), before)
