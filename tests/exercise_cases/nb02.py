"""Answers for notebooks/02_selective.ipynb."""

from peftlab.classroom.exercises.nb02 import tiny_trainable_pct

_PCT = tiny_trainable_pct()  # what the package trains on tiny: {"top2": %, "norm": %}


def _blocks(model):
    return model.model.layers if hasattr(model, "model") else model.transformer.h


def _set_trainable(model, rule, k=2, chosen_only=False, top=None, norm_bias=True):
    blocks = _blocks(model)
    selected = top(blocks, k) if top is not None else blocks[len(blocks) - k :]
    in_top = {id(p) for blk in selected for p in blk.parameters()}
    for module in model.modules():
        is_norm = "Norm" in type(module).__name__
        for name, p in module.named_parameters(recurse=False):
            if rule == "bitfit":
                on = name == "bias"
            elif rule == "norm":
                on = is_norm and (norm_bias or name != "bias")
            else:
                on = id(p) in in_top
            if on or not chosen_only:
                p.requires_grad = on
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _top_k_and_final_norm(model, rule, k=2):
    n = _set_trainable(model, rule, k)
    if rule == "top_k":
        final = model.model.norm if hasattr(model, "model") else model.transformer.ln_f
        for p in final.parameters():
            p.requires_grad = True
    return sum(p.numel() for p in model.parameters() if p.requires_grad) if rule == "top_k" else n


CASES = {
    "nb02.q1": {
        "solution": {"predict_top2_pct": _PCT["top2"], "predict_norm_pct": _PCT["norm"]},
        "wrong": {
            "2 of 6 blocks = a third of the model": {
                "predict_top2_pct": 100 * 2 / 6,
                "predict_norm_pct": _PCT["norm"],
            },
            "the source material's 15-20 %": {"predict_top2_pct": 17.5, "predict_norm_pct": _PCT["norm"]},
            "a fraction, not a percentage": {
                "predict_top2_pct": _PCT["top2"] / 100,
                "predict_norm_pct": _PCT["norm"] / 100,
            },
            "one norm per block, no final norm": {
                "predict_top2_pct": _PCT["top2"],
                "predict_norm_pct": _PCT["norm"] * 6 / 13,
            },
        },
    },
    "nb02.q2": {
        "solution": {"bitfit_param_count": lambda d, n: n * 11 * d + d},
        "wrong": {
            "forgot ln_f": {"bitfit_param_count": lambda d, n: n * 11 * d},
            "c_attn counted as one d": {"bitfit_param_count": lambda d, n: n * 9 * d + d},
            "MLP counted as d wide": {"bitfit_param_count": lambda d, n: n * 8 * d + d},
        },
    },
    "nb02.q3": {
        "solution": {"set_trainable": _set_trainable},
        "wrong": {
            "never freezes the rest (only switches the chosen on)": {
                "set_trainable": lambda m, rule, k=2: _set_trainable(m, rule, k, chosen_only=True)
            },
            "bottom k blocks": {
                "set_trainable": lambda m, rule, k=2: _set_trainable(m, rule, k, top=lambda b, k: b[:k])
            },
            "off by one (top k + 1 blocks)": {
                "set_trainable": lambda m, rule, k=2: _set_trainable(
                    m, rule, k, top=lambda b, k: b[max(0, len(b) - k - 1) :]
                )
            },
            "norm weights only (LayerNorm biases left frozen)": {
                "set_trainable": lambda m, rule, k=2: _set_trainable(m, rule, k, norm_bias=False)
            },
            "top k blocks plus the final norm": {"set_trainable": _top_k_and_final_norm},
        },
    },
}
