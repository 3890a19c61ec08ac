"""Checks for notebooks/02_selective.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import copy
import functools
import re

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.classroom.grading import attempted, exercise, rng

PREDICTION_TOLERANCE = 0.10  # nb02.q1: within 10 % of the measured share (relative)
RULES = {"bitfit": ("bitfit", {}), "norm": ("norm", {}), "top_k": ("layer_freeze", {})}


def _gpt2(n_embd: int, n_layer: int, device: str | None = "meta") -> GPT2LMHeadModel:
    cfg = GPT2Config(
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=2,
        vocab_size=64,
        n_positions=16,
        bos_token_id=0,
        eos_token_id=0,
    )
    if device is None:
        return GPT2LMHeadModel(cfg)
    with torch.device(device):  # shapes only: counting needs no memory
        return GPT2LMHeadModel(cfg)


def _llama(g) -> LlamaForCausalLM:
    heads = int(g.choice([2, 4]))
    cfg = LlamaConfig(
        vocab_size=int(g.integers(16, 64)),
        hidden_size=heads * 8,
        intermediate_size=int(g.integers(8, 64)),
        num_hidden_layers=int(g.integers(2, 6)),
        num_attention_heads=heads,
        num_key_value_heads=int(g.choice([1, 2])),
    )
    return LlamaForCausalLM(cfg)


@functools.lru_cache(maxsize=1)
def tiny_trainable_pct() -> dict[str, float]:
    """% of the tiny model's parameters that top-2 layer freezing and norm-only tuning train (package counts)."""
    from peftlab import models

    model, _ = models.load("tiny")
    n = sum(p.numel() for p in model.parameters())
    out = {}
    for name, method, kw in (("top2", "layer_freeze", {"num_trainable_layers": 2}), ("norm", "norm", {})):
        trainable = get_peft_model(
            copy.deepcopy(model), make_config(method, **kw)
        ).get_nb_trainable_parameters()[0]
        out[name] = 100 * trainable / n
    return out


@exercise(
    "nb02.q1",
    points=2,
    hint="top-2: two blocks' parameters over the whole model (embeddings included). Norm only: two norm vectors per "
    "block plus the final norm. Both as % of all parameters; within 10 % of the measurement scores.",
    needs=["predict_top2_pct", "predict_norm_pct"],
)
def _(ns):
    measured = tiny_trainable_pct()
    for name, key in (("predict_top2_pct", "top2"), ("predict_norm_pct", "norm")):
        got, want = float(attempted(ns[name])), measured[key]
        assert abs(got - want) <= PREDICTION_TOLERANCE * want, (
            f"{name} = {got:.4g}% is more than {PREDICTION_TOLERANCE:.0%} away from the share the package trains "
            "(a percentage: 12.5 means 12.5 %)"
        )


@exercise(
    "nb02.q2",
    points=2,
    hint="Add up the six bias vectors of one block (11 d in all), times n_layer, plus ln_f's bias.",
    needs=["bitfit_param_count"],
)
def _(ns):
    f = ns["bitfit_param_count"]
    for n_embd, n_layer in rng(2).integers(1, 40, size=(5, 2)):
        n_embd, n_layer = 2 * int(n_embd), int(n_layer)
        want = get_peft_model(_gpt2(n_embd, n_layer), make_config("bitfit")).get_nb_trainable_parameters()[0]
        got = attempted(f(n_embd, n_layer))
        assert got == want, f"bitfit_param_count({n_embd}, {n_layer}) returned {got}; BitFit trains {want:,}"


def reference_trainable_names(model, rule: str, k: int = 2) -> set[str]:
    """Names (in `model`) of the parameters that peftlab's selective method for `rule` trains."""
    method, kw = RULES[rule]
    if rule == "top_k":
        kw = {"num_trainable_layers": k}
    pm = get_peft_model(copy.deepcopy(model), make_config(method, **kw))
    names = set()
    for n, p in pm.named_parameters():
        if (
            p.requires_grad
        ):  # a wrapper's trainable copy `<module>.<copies>.default.<param>` stands for `<module>.<param>`
            n = n.removeprefix("base_model.")
            names.add(re.sub(r"\.(selected|ln_tuning_layers)\.default\.", ".", n))
    return names


@exercise(
    "nb02.q3",
    points=4,
    hint="Visit every module (model.modules()) and its own parameters (named_parameters(recurse=False)); set "
    "requires_grad to True for the chosen ones and to False for all others. Blocks: model.model.layers (LLaMA) or "
    "model.transformer.h (GPT-2); the top k are the last k. Norm layers have 'Norm' in their class name.",
    needs=["set_trainable"],
)
def _(ns):
    f = ns["set_trainable"]
    g = rng(22)
    torch.manual_seed(0)
    cases = []
    for _ in range(2):
        gpt2 = _gpt2(int(g.choice([8, 16, 24])), int(g.integers(2, 5)), device=None)
        cases += [
            (gpt2, "bitfit", 2),
            (gpt2, "norm", 2),
            (gpt2, "top_k", int(g.integers(1, gpt2.config.n_layer))),
        ]
        llama = _llama(g)
        cases += [
            (llama, "norm", 2),
            (llama, "top_k", int(g.integers(1, llama.config.num_hidden_layers + 1))),
        ]
    for model, rule, k in cases:
        want = reference_trainable_names(model, rule, k)
        mine = copy.deepcopy(model)
        for p in mine.parameters():
            p.requires_grad_(True)  # as a freshly loaded model has it
        count = attempted(f(mine, rule, k))
        got = {n for n, p in mine.named_parameters() if p.requires_grad}
        what = (
            f"set_trainable(<random {type(model).__name__}, {len(want)} tensors to train>, {rule!r}, k={k})"
        )
        assert not (got - want), f"{what} leaves trainable what {rule} keeps frozen: {sorted(got - want)[:3]}"
        assert not (want - got), f"{what} freezes what {rule} trains: {sorted(want - got)[:3]}"
        n = sum(p.numel() for name, p in mine.named_parameters() if name in want)
        assert int(count) == n, f"{what} returned {count}; the parameters it made trainable number {n:,}"
