"""Checks for notebooks/04_soft_prompts.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from peftlab import get_peft_model, make_config
from peftlab.classroom.grading import attempted, exercise, rng


def _llama_config(g, vocab_size: int = 32) -> LlamaConfig:
    heads = int(g.choice([2, 4, 8]))
    kv = int(g.choice([h for h in (1, 2, 4, 8) if heads % h == 0]))
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=heads * 2 * int(g.integers(2, 9)),
        intermediate_size=16,
        num_hidden_layers=int(g.integers(1, 7)),
        num_attention_heads=heads,
        num_key_value_heads=kv,
    )


class _Seen(Exception):
    """Raised by the hook below once it has seen what the frozen model would get."""


def reference_prepend(model, inputs_embeds, attention_mask, labels):
    """What peftlab's prompt tuning hands the frozen model: (embeddings, mask, labels), read with a forward hook."""
    seen = {}

    def hook(module, args, kwargs):
        seen.update(embeds=kwargs["inputs_embeds"], mask=kwargs["attention_mask"], labels=kwargs["labels"])
        raise _Seen

    handle = model.base_model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        model(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels)
    except _Seen:
        pass
    finally:
        handle.remove()
    return seen["embeds"], seen["mask"], seen["labels"]


@exercise(
    "nb04.q1",
    points=4,
    hint=(
        "Expand the prompt to (B, n, d) in the embeddings' dtype and put it in front (torch.cat(..., dim=1)); "
        "the mask gains n ones in front, the labels n entries of -100 in front."
    ),
    needs=["prepend_soft_prompt"],
)
def _(ns):
    f = ns["prepend_soft_prompt"]
    g = rng(4)
    torch.manual_seed(int(g.integers(1 << 30)))
    dtypes = [torch.float32, torch.float64, torch.bfloat16, torch.float32]
    for dtype in dtypes:
        cfg = _llama_config(g)
        n, batch, length = int(g.integers(1, 9)), int(g.integers(2, 6)), int(g.integers(2, 10))
        with torch.device("meta"):  # the frozen model never runs: the hook stops it at its input
            base = LlamaForCausalLM(cfg)
        model = get_peft_model(base, make_config("prompt_tuning", num_virtual_tokens=n))
        prompt = torch.randn(n, cfg.hidden_size)  # the learned prompt is a float32 parameter
        model.prompt_modules["default"].embedding = torch.nn.Embedding.from_pretrained(prompt, freeze=False)
        embeds = torch.randn(batch, length, cfg.hidden_size).to(dtype)
        mask = torch.ones(batch, length, dtype=torch.long)
        mask[0, : int(g.integers(1, length))] = 0  # left padding in the first example
        labels = torch.randint(0, cfg.vocab_size, (batch, length))
        labels[:, : int(g.integers(1, length))] = -100  # no loss on the article part
        labels[mask == 0] = -100
        want_e, want_m, want_l = reference_prepend(model, embeds.clone(), mask.clone(), labels.clone())
        with torch.no_grad():
            got = attempted(f(prompt.clone(), embeds.clone(), mask.clone(), labels.clone()))
        where = f"(n={n} virtual tokens, B={batch}, T={length}, d={cfg.hidden_size}, embeddings {dtype})"
        assert isinstance(got, tuple) and len(got) == 3, (
            "return a tuple of three: (embeddings, attention mask, labels)"
        )
        got_e, got_m, got_l = (attempted(x) for x in got)
        assert all(torch.is_tensor(x) for x in got), "all three must be tensors"
        assert tuple(got_e.shape) == tuple(want_e.shape), (
            f"embeddings: expected shape {tuple(want_e.shape)} {where}; got {tuple(got_e.shape)}"
        )
        assert got_e.dtype == want_e.dtype, (
            f"embeddings {where} came back as {got_e.dtype}: cast the prompt to the embeddings' dtype, "
            "or a bfloat16 model gets float32 inputs"
        )
        assert torch.equal(got_e[:, n:], want_e[:, n:]), (
            f"embeddings {where}: positions n..n+T must be the input embeddings, unchanged (is the prompt in front?)"
        )
        assert torch.equal(got_e, want_e), (
            f"embeddings {where}: the first n positions of every example must be the prompt, in order"
        )
        assert tuple(got_m.shape) == tuple(want_m.shape) and torch.equal(got_m.long(), want_m.long()), (
            f"attention mask {where}: expected {want_m.tolist()}; got {got_m.tolist()}"
        )
        assert tuple(got_l.shape) == tuple(want_l.shape), (
            f"labels: expected shape {tuple(want_l.shape)} {where}; got {tuple(got_l.shape)}"
        )
        assert torch.equal(got_l.long(), want_l.long()), (
            f"labels {where}: expected {want_l.tolist()}; got {got_l.tolist()} "
            "(the virtual tokens have no target: -100 is the label the loss ignores)"
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
    configs = [_llama_config(g) for _ in range(5)]
    # always one grouped-query config (fewer K/V heads than query heads) and one with a single layer
    configs.append(
        LlamaConfig(
            vocab_size=32,
            hidden_size=48,
            intermediate_size=16,
            num_hidden_layers=3,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    for cfg in configs:
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
