"""Checks for notebooks/04_soft_prompts.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.grading import attempted, exercise, rng


def _llama_config(g) -> LlamaConfig:
    heads = int(g.choice([2, 4, 8]))
    kv = int(g.choice([h for h in (1, 2, 4, 8) if heads % h == 0]))
    return LlamaConfig(
        vocab_size=32,
        hidden_size=heads * 2 * int(g.integers(2, 9)),
        intermediate_size=16,
        num_hidden_layers=int(g.integers(1, 7)),
        num_attention_heads=heads,
        num_key_value_heads=kv,
    )


@exercise(
    "nb04.q1",
    points=3,
    hint="torch.cat([prompt expanded to (B, n, d), inputs_embeds], dim=1); the mask gains n ones in front.",
    needs=["prepend_virtual_tokens"],
)
def _(ns):
    f = ns["prepend_virtual_tokens"]
    g = rng(4)
    torch.manual_seed(4)
    for _ in range(3):
        cfg = _llama_config(g)
        n, batch, length = (int(x) for x in g.integers(1, 9, size=3))
        model = get_peft_model(LlamaForCausalLM(cfg), make_config("prompt_tuning", num_virtual_tokens=n))
        module = model.prompt_modules["default"]
        prompt = module.embedding.weight[:n].detach()
        embeds = torch.randn(batch, length, cfg.hidden_size)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, : int(g.integers(0, length))] = 0  # some padding
        with torch.no_grad():
            want_e, want_m = module._prepend(model.base_model, None, embeds, mask, None)
            got = attempted(f(prompt.clone(), embeds.clone(), mask.clone()))
        assert isinstance(got, tuple) and len(got) == 2, "return a pair: (embeddings, attention mask)"
        got_e, got_m = got
        assert tuple(got_e.shape) == tuple(want_e.shape), (
            f"embeddings: expected shape {tuple(want_e.shape)} for n={n}, B={batch}, T={length}; got {tuple(got_e.shape)}"
        )
        assert torch.allclose(got_e, want_e), (
            "the embeddings differ from the package's: is the prompt in front?"
        )
        assert tuple(got_m.shape) == tuple(want_m.shape) and torch.equal(got_m.long(), want_m.long()), (
            f"the attention mask should be {want_m.tolist()} here; got {got_m.tolist()}"
        )


@exercise(
    "nb04.q2",
    points=2,
    hint="n tokens x L layers x (one key + one value) x num_key_value_heads * head_dim features.",
    needs=["prefix_param_count"],
)
def _(ns):
    f = ns["prefix_param_count"]
    g = rng(44)
    for _ in range(5):
        cfg = _llama_config(g)
        n = int(g.integers(1, 40))
        with torch.device("meta"):
            model = LlamaForCausalLM(cfg)
        want = get_peft_model(
            model, make_config("prefix_tuning", num_virtual_tokens=n)
        ).get_nb_trainable_parameters()[0]
        got = attempted(f(n, cfg))
        assert got == want, (
            f"prefix_param_count({n}, config) returned {got} for {cfg.num_hidden_layers} layers, hidden "
            f"{cfg.hidden_size}, {cfg.num_attention_heads} heads, {cfg.num_key_value_heads} kv heads; the prefix has {want:,}"
        )
