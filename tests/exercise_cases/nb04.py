"""Answers for notebooks/04_soft_prompts.ipynb."""

import torch


def _prepend(prompt, inputs_embeds, attention_mask, labels):
    batch, n = inputs_embeds.shape[0], prompt.shape[0]
    virtual = prompt.to(inputs_embeds.dtype).unsqueeze(0).expand(batch, -1, -1)  # (B, n, d)
    embeds = torch.cat([virtual, inputs_embeds], dim=1)  # (B, n + T, d)
    mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)  # (B, n + T)
    labels = torch.cat([labels.new_full((batch, n), -100), labels], dim=1)  # (B, n + T)
    return embeds, mask, labels


def _variant(
    prompt_at_end=False, mask_fill=1, label_fill=-100, cast=True, labels_unchanged=False, mask_all_ones=False
):
    def f(prompt, inputs_embeds, attention_mask, labels):
        batch, n = inputs_embeds.shape[0], prompt.shape[0]
        p = prompt.to(inputs_embeds.dtype) if cast else prompt
        virtual = p.unsqueeze(0).expand(batch, -1, -1)
        parts = [inputs_embeds, virtual] if prompt_at_end else [virtual, inputs_embeds]
        embeds = torch.cat(parts, dim=1)
        mask = torch.cat([attention_mask.new_full((batch, n), mask_fill), attention_mask], dim=1)
        if mask_all_ones:
            mask = torch.ones_like(mask)
        if not labels_unchanged:
            labels = torch.cat([labels.new_full((batch, n), label_fill), labels], dim=1)
        return embeds, mask, labels

    return f


def _prefix_count(n, config, kv=True, two=2, layers=True):
    heads = config.num_key_value_heads if kv else config.num_attention_heads
    d_kv = heads * (config.hidden_size // config.num_attention_heads)
    return n * (config.num_hidden_layers if layers else 1) * two * d_kv


CASES = {
    "nb04.q1": {
        "solution": {"prepend_soft_prompt": _prepend},
        "wrong": {
            "prompt appended after the input": {"prepend_soft_prompt": _variant(prompt_at_end=True)},
            "virtual tokens masked out (zeros in the mask)": {"prepend_soft_prompt": _variant(mask_fill=0)},
            "labels not masked (0 instead of -100)": {"prepend_soft_prompt": _variant(label_fill=0)},
            "labels not extended": {"prepend_soft_prompt": _variant(labels_unchanged=True)},
            "prompt not cast to the embeddings' dtype": {"prepend_soft_prompt": _variant(cast=False)},
            "padding forgotten (a mask of all ones)": {"prepend_soft_prompt": _variant(mask_all_ones=True)},
            "only embeddings and mask (the old two-value answer)": {
                "prepend_soft_prompt": lambda p, e, m, l: _prepend(p, e, m, l)[:2]
            },
        },
    },
    "nb04.q2": {
        "solution": {"prefix_param_count": _prefix_count},
        "wrong": {
            "grouped-query attention ignored (hidden_size wide K/V)": {
                "prefix_param_count": lambda n, c: _prefix_count(n, c, kv=False)
            },
            "keys only (no factor 2)": {"prefix_param_count": lambda n, c: _prefix_count(n, c, two=1)},
            "one layer only": {"prefix_param_count": lambda n, c: _prefix_count(n, c, layers=False)},
            "prompt tuning's n * d": {"prefix_param_count": lambda n, c: n * c.hidden_size},
            "hard-coded tiny value (10 tokens)": {"prefix_param_count": lambda n, c: 15360},
        },
    },
}
