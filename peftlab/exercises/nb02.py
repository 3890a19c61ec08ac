"""Checks for notebooks/02_selective.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.grading import attempted, exercise, rng


def _gpt2(n_embd: int, n_layer: int) -> GPT2LMHeadModel:
    with torch.device("meta"):  # shapes only: counting needs no memory
        return GPT2LMHeadModel(
            GPT2Config(n_embd=n_embd, n_layer=n_layer, n_head=2, vocab_size=64, n_positions=16)
        )


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


@exercise(
    "nb02.q1",
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


@exercise(
    "nb02.q2",
    points=2,
    hint="model.model.layers[-k:] are the top k blocks; add up p.numel() over their parameters.",
    needs=["top_k_param_count"],
)
def _(ns):
    f = ns["top_k_param_count"]
    g = rng(12)
    torch.manual_seed(0)
    for _ in range(4):
        model = _llama(g)
        k = int(g.integers(1, model.config.num_hidden_layers + 1))
        got = attempted(f(model, k))
        ref = get_peft_model(model, make_config("layer_freeze", num_trainable_layers=k))
        want = ref.get_nb_trainable_parameters()[0]
        assert got == want, (
            f"top_k_param_count(model, {k}) returned {got} for a {model.config.num_hidden_layers}-block LLaMA; "
            f"top-{k} freezing trains {want:,}"
        )
