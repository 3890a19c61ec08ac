"""AdaLoRA: SVD-shaped update, orthogonality penalty, cubic budget, importance-based pruning; parity with HF peft."""

import peft
import pytest
import torch
from conftest import ATTN_TARGETS, make_batch, make_model
from peft.tuners.adalora.layer import RankAllocator

from peftlab import AdaLoraConfig, get_peft_model, make_config
from peftlab.methods.adalora import SVDLinear, orthogonality_penalty, rank_pattern

SMALL = dict(init_r=6, target_r=3, lora_alpha=32, total_step=12, tinit=2, tfinal=3)


def ours_and_peft(kind, **kw):
    """Our AdaLoRA and peft's on the same tiny model, with peft's (randomised) adapter weights copied into ours."""
    settings = {**SMALL, **kw}
    # peft adds the penalty only through a task-specific wrapper: without task_type it calls the bare model
    task_type = "SEQ_2_SEQ_LM" if kind == "t5" else "CAUSAL_LM"
    theirs = peft.get_peft_model(
        make_model(kind),
        peft.AdaLoraConfig(target_modules=ATTN_TARGETS[kind], task_type=task_type, **settings),
    )
    ours = get_peft_model(
        make_model(kind), make_config("adalora", target_modules=ATTN_TARGETS[kind], **settings)
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in theirs.named_parameters():
            if ".lora_E." in n:
                p.normal_()  # E starts at 0 in both; make the update visible
        their = {n.replace("base_model.model.", "base_model.", 1): p for n, p in theirs.named_parameters()}
        copied = 0
        for n, p in ours.named_parameters():
            if ".lora_" in n:
                p.copy_(their[n])
                copied += 1
    assert copied == sum(".lora_" in n for n, _ in ours.named_parameters()) > 0
    return ours, theirs


@pytest.mark.parametrize("kind", ["t5", "llama", "gpt2"])
def test_counts_and_logits_match_peft(kind):
    ours, theirs = ours_and_peft(kind)
    n_layers = sum(isinstance(m, SVDLinear) for m in ours.modules())
    t_ours, all_ours = ours.get_nb_trainable_parameters()
    t_theirs, all_theirs = theirs.get_nb_trainable_parameters()
    assert t_ours == t_theirs
    # peft registers a frozen 1-element `ranknum` Parameter per layer; ours is a plain float (it never changes)
    assert all_ours == all_theirs - n_layers
    batch = make_batch(kind)
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(**batch), theirs(**batch)
    torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-5)
    torch.testing.assert_close(
        a.loss, b.loss, rtol=1e-6, atol=1e-6
    )  # loss includes the orthogonality penalty


def test_layer_formula():
    torch.manual_seed(0)
    base = torch.nn.Linear(10, 7)
    layer = SVDLinear(base)
    layer.add(
        "default", AdaLoraConfig(target_modules=["x"], init_r=4, target_r=2, lora_alpha=3, total_step=10)
    )
    with torch.no_grad():
        layer.lora_E["default"].normal_()
    P, E, Q = layer.lora_B["default"], layer.lora_E["default"], layer.lora_A["default"]
    assert (P.shape, E.shape, Q.shape) == ((7, 4), (4, 1), (4, 10))
    x = torch.randn(5, 10)
    expected = base(x) + x @ (P @ torch.diag(E.view(-1)) @ Q).T * 3 / (4 + 1e-5)
    torch.testing.assert_close(layer(x), expected, rtol=1e-5, atol=1e-6)


def test_penalty_is_added_to_the_loss():
    ours, _ = ours_and_peft("llama", orth_reg_weight=0.7)
    batch = make_batch("llama")
    with torch.no_grad():
        plain = ours.base_model(**batch).loss
        with_penalty = ours(**batch).loss
        terms = []
        for m in ours.modules():
            if isinstance(m, SVDLinear):
                A, B = m.lora_A["default"], m.lora_B["default"]
                terms += [(A @ A.T - torch.eye(6)).norm(), (B.T @ B - torch.eye(6)).norm()]
        penalty = torch.stack(terms).mean()
    torch.testing.assert_close(orthogonality_penalty(ours.base_model, "default"), penalty)
    torch.testing.assert_close(with_penalty, plain + 0.7 * penalty)
    assert penalty > 0
    with torch.no_grad():  # no labels: no loss to add to
        out = ours(input_ids=batch["input_ids"])
    assert out.loss is None


def test_budget_schedule_matches_peft():
    ours, theirs = ours_and_peft("llama", total_step=40, tinit=5, tfinal=7, deltaT=3)
    allocator = RankAllocator(theirs.base_model.model, theirs.peft_config["default"], "default")
    controller = ours.prompt_modules["default"]
    assert (
        (controller.init_bgt, controller.target_bgt) == (allocator.init_bgt, allocator.target_bgt) == (24, 12)
    )
    schedule = [controller.budget_schedule(t) for t in range(41)]
    assert schedule == [allocator.budget_schedule(t) for t in range(41)]
    budgets = [b for b, _ in schedule]
    assert budgets[5] == 24 and budgets[33] == 12 and budgets == sorted(budgets, reverse=True)
    # the cubic: b(t) = b_T + (b_0 - b_T) (1 - (t - t_i) / (T - t_f - t_i))^3, floored
    assert budgets[10] == int(12 + 12 * (1 - 5 / 28) ** 3)


def test_allocation_matches_peft_and_reaches_the_target_budget():
    ours, theirs = ours_and_peft("llama")
    ours.train(), theirs.train()
    batch = make_batch("llama")
    opt_a = torch.optim.Adam([p for p in ours.parameters() if p.requires_grad], lr=2e-2)
    opt_b = torch.optim.Adam([p for p in theirs.parameters() if p.requires_grad], lr=2e-2)
    for step in range(SMALL["total_step"]):
        for model, opt, update in (
            (ours, opt_a, ours.update_and_allocate),
            (theirs, opt_b, theirs.base_model.update_and_allocate),
        ):
            model(**batch).loss.backward()
            opt.step()
            update(step)
            opt.zero_grad()
    pattern_ours = ours.peft_config["default"].rank_pattern
    pattern_theirs = theirs.peft_config["default"].rank_pattern
    assert pattern_ours == pattern_theirs
    ranks = rank_pattern(ours)
    assert len(ranks) == 4 and sum(ranks.values()) == SMALL["target_r"] * 4
    assert ranks == {k.rsplit(".lora_E", 1)[0]: sum(v) for k, v in pattern_theirs.items()}
    for name, layer in ours.base_model.named_modules():
        if isinstance(layer, SVDLinear):
            E = layer.lora_E["default"].detach().view(-1)
            keep = torch.tensor(pattern_ours[f"{name}.lora_E.default"])
            assert torch.all(E[~keep] == 0) and torch.all(E[keep] != 0)
    their_E = {
        n.replace("base_model.model.", "base_model.", 1): p
        for n, p in theirs.named_parameters()
        if "lora_E" in n
    }
    for n, p in ours.named_parameters():
        if "lora_E" in n:
            torch.testing.assert_close(p, their_E[n], rtol=1e-3, atol=1e-4)  # loose, as peft's own tests


def test_rank_pattern_before_training_is_init_r():
    model = get_peft_model(make_model("gpt2"), make_config("adalora", target_modules=["c_attn"], **SMALL))
    assert rank_pattern(model) == {"transformer.h.0.attn.c_attn": 6, "transformer.h.1.attn.c_attn": 6}


def test_update_without_gradients_is_a_clear_error():
    model = get_peft_model(make_model("llama"), make_config("adalora", target_modules=["q_proj"], **SMALL))
    with pytest.raises(RuntimeError, match="before optimizer.zero_grad"):
        model.update_and_allocate(3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_r=13, init_r=12), "target_r"),
        (dict(init_r=0), "init_r"),
        (dict(tinit=5, tfinal=5, total_step=10), "tinit=5 \\+ tfinal=5 must be < total_step=10"),
        (dict(total_step=None), "total_step"),
        (dict(total_step=0), "total_step"),
        (dict(beta1=1.0), "beta1"),
        (dict(beta2=0), "beta2"),
        (dict(orth_reg_weight=-0.1), "orth_reg_weight"),
        (dict(deltaT=0), "deltaT"),
        (dict(tinit=-1), "tinit"),
        (dict(use_dora=True), "use_dora"),
        (dict(init_r=2.5), "init_r"),
    ],
)
def test_bad_config(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        AdaLoraConfig(**{"target_modules": ["q_proj"], "total_step": 100, **kwargs})


def test_adapter_files_load_both_ways_before_pruning(tmp_path):
    """Same key layout as peft (lora_A/lora_E/lora_B, no ranknum). After pruning peft saves truncated tensors plus a
    rank_pattern, which this loader does not resize (see the report / module docs)."""
    from peftlab import PeftModel

    ours, theirs = ours_and_peft("llama")
    ours.eval(), theirs.eval()
    batch = {
        k: v for k, v in make_batch("llama").items() if k != "labels"
    }  # peft's inference AdaLoRA + labels fails
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    in_peft = peft.PeftModel.from_pretrained(make_model("llama"), tmp_path / "ours").eval()
    in_ours = PeftModel.from_pretrained(make_model("llama"), tmp_path / "theirs")
    with torch.no_grad():
        torch.testing.assert_close(in_peft(**batch).logits, ours(**batch).logits, rtol=0, atol=1e-6)
        torch.testing.assert_close(in_ours(**batch).logits, theirs(**batch).logits, rtol=0, atol=1e-6)
        assert not torch.allclose(ours(**batch).logits, make_model("llama")(**batch).logits, atol=1e-4)
