"""Answers for notebooks/06_qlora_dora_adalora.ipynb."""

import torch

from peftlab.methods import nf4


# -- nb06.q1 ----------------------------------------------------------------------------------------------------------
def _quantize(block):
    x = block.float()  # (n,)
    absmax = x.abs().max()
    scaled = x / absmax  # (n,) in [-1, 1]
    dist = (scaled.unsqueeze(1) - nf4.NF4.unsqueeze(0)).abs()  # (n, 16)
    codes = dist.argmin(dim=1)  # (n,)
    return codes, float(absmax)


def _dequantize(codes, absmax):
    return nf4.NF4[codes.long()] * absmax  # (n,)


def _no_absmax(block):  # the codes of the raw weights: absmax computed but never divided by
    x = block.float()
    codes = (x.unsqueeze(1) - nf4.NF4.unsqueeze(0)).abs().argmin(dim=1)
    return codes, float(x.abs().max())


def _max_not_absmax(block):  # block.max(): wrong whenever the largest |w| is negative
    x = block.float()
    absmax = x.max()
    codes = (x.unsqueeze(1) / absmax - nf4.NF4.unsqueeze(0)).abs().argmin(dim=1)
    return codes, float(absmax)


def _floor(block):  # rounds down to the level below instead of to the nearest one
    x = block.float()
    absmax = x.abs().max()
    codes = (torch.searchsorted(nf4.NF4, x / absmax, right=True) - 1).clamp(0, 15)
    return codes, float(absmax)


def _upper_level(block):  # searchsorted against the levels, not the midpoints: one level too high
    x = block.float()
    absmax = x.abs().max()
    codes = torch.searchsorted(nf4.NF4, x / absmax).clamp(0, 15)
    return codes, float(absmax)


# -- nb06.q2 ----------------------------------------------------------------------------------------------------------
def _bits(blocksize, double_quant, dq_blocksize=256):
    if not double_quant:
        return 4 + 32 / blocksize
    return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)


# -- nb06.q3 ----------------------------------------------------------------------------------------------------------
def _dora(x, W0, bias, A, B, m, scaling, norm_dim=1, detach=True, use_scaling=True, normalise=True):
    V = W0 + (scaling if use_scaling else 1.0) * B @ A  # (out, in)
    norm = torch.linalg.norm(V, dim=norm_dim)  # (out,)
    if detach:
        norm = norm.detach()
    W = m.unsqueeze(1) * (V / norm.unsqueeze(1) if normalise else V)  # (out, in)
    h = x @ W.T  # (..., out)
    return h if bias is None else h + bias


# -- nb06.q4 ----------------------------------------------------------------------------------------------------------
def _importance(
    weights, grads, beta1=0.85, beta2=0.85, ema=True, use_abs=True, old_ibar=False, uncertainty=True
):
    i_bar = torch.zeros_like(weights[0])
    u_bar = torch.zeros_like(weights[0])
    for w, g in zip(weights, grads):
        ipt = (w * g).abs() if use_abs else w * g
        prev = i_bar
        i_bar = beta1 * i_bar + (1 - beta1) * ipt if ema else ipt
        u_bar = beta2 * u_bar + (1 - beta2) * (ipt - (prev if old_ibar else i_bar)).abs()
    score = i_bar * u_bar if uncertainty else i_bar
    return i_bar, u_bar, score


CASES = {
    "nb06.q1": {
        "solution": {"nf4_quantize_block": _quantize, "nf4_dequantize_block": _dequantize},
        "wrong": {
            "absmax not applied": {"nf4_quantize_block": _no_absmax, "nf4_dequantize_block": _dequantize},
            "max instead of absmax": {
                "nf4_quantize_block": _max_not_absmax,
                "nf4_dequantize_block": _dequantize,
            },
            "rounds down": {"nf4_quantize_block": _floor, "nf4_dequantize_block": _dequantize},
            "one level too high": {"nf4_quantize_block": _upper_level, "nf4_dequantize_block": _dequantize},
            "read back without absmax": {
                "nf4_quantize_block": _quantize,
                "nf4_dequantize_block": lambda codes, absmax: nf4.NF4[codes.long()],
            },
            "read back the codes": {
                "nf4_quantize_block": _quantize,
                "nf4_dequantize_block": lambda codes, absmax: codes.float() * absmax,
            },
        },
    },
    "nb06.q2": {
        "solution": {"bits_per_param": _bits},
        "wrong": {
            "forgot the scale of the constants": {
                "bits_per_param": lambda b, dq, dqb=256: 4 + (8 if dq else 32) / b
            },
            "double quantization ignored": {"bits_per_param": lambda b, dq, dqb=256: 4 + 32 / b},
            "codes only": {"bits_per_param": lambda b, dq, dqb=256: 4},
            "hard-coded notebook values": {"bits_per_param": lambda b, dq, dqb=256: 4.127 if dq else 4.5},
        },
    },
    "nb06.q3": {
        "solution": {"dora_forward": _dora},
        "wrong": {
            "norm over the wrong axis (columns of W0)": {"dora_forward": lambda *a: _dora(*a, norm_dim=0)},
            "norm not detached (other gradients)": {"dora_forward": lambda *a: _dora(*a, detach=False)},
            "scaling missing": {"dora_forward": lambda *a: _dora(*a, use_scaling=False)},
            "direction not normalised": {"dora_forward": lambda *a: _dora(*a, normalise=False)},
            "plain LoRA (magnitude ignored)": {
                "dora_forward": lambda x, W0, bias, A, B, m, s: _dora(
                    x, W0, bias, A, B, torch.linalg.norm(W0 + s * B @ A, dim=1), s
                )
            },
        },
    },
    "nb06.q4": {
        "solution": {"adalora_importance": _importance},
        "wrong": {
            "no EMA (last step only)": {
                "adalora_importance": lambda w, g, b1, b2: _importance(w, g, b1, b2, ema=False)
            },
            "no uncertainty term": {
                "adalora_importance": lambda w, g, b1, b2: _importance(w, g, b1, b2, uncertainty=False)
            },
            "no abs (signed sensitivity)": {
                "adalora_importance": lambda w, g, b1, b2: _importance(w, g, b1, b2, use_abs=False)
            },
            "uncertainty from the previous I_bar": {
                "adalora_importance": lambda w, g, b1, b2: _importance(w, g, b1, b2, old_ibar=True)
            },
            "beta1 and beta2 swapped": {"adalora_importance": lambda w, g, b1, b2: _importance(w, g, b2, b1)},
        },
    },
}
