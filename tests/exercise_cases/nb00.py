"""Answers for notebooks/00_why_peft.ipynb."""

import math

import torch

from peftlab.classroom.exercises.nb00 import tiny_step_counts


def _train_gb(n, t, b=4, master=True, moments_on_all=False, master_on_all=False, moment_bytes=4):
    weights, grads = n * b, t * b
    keep = n if master_on_all else t
    master_bytes = keep * 4 if (master and b < 4) else 0
    moments = 2 * (n if moments_on_all else t) * moment_bytes
    return (weights + grads + master_bytes + moments) / 1e9


def _predictions(full, lora):
    return {"predict_full_mb": full, "predict_lora_mb": lora}


def _counts():
    return tiny_step_counts()  # (base params, LoRA trainable, LoRA model's params)


def _attention_no_scale(Q, K, V):
    return torch.softmax(Q @ K.transpose(-2, -1), dim=-1) @ V


def _attention_softmax_over_queries(Q, K, V):
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])
    return torch.softmax(scores, dim=-2) @ V


def _attention_scale_by_d(Q, K, V):
    return torch.softmax(Q @ K.transpose(-2, -1) / Q.shape[-1], dim=-1) @ V


def _pred(full_of, lora_of):
    n, t, n_all = _counts()
    return _predictions(full_of(n, t, n_all), lora_of(n, t, n_all))


CASES = {
    "nb00.q1": {
        "solution": {"train_memory_gb": lambda n, t, b=4: _train_gb(n, t, b)},
        "wrong": {
            "12 bytes per parameter in bf16 (no fp32 master copy)": {
                "train_memory_gb": lambda n, t, b=4: _train_gb(n, t, b, master=False)
            },
            "optimizer state for every parameter, trainable or not": {
                "train_memory_gb": lambda n, t, b=4: _train_gb(n, t, b, moments_on_all=True)
            },
            "master copy of the frozen weights too": {
                "train_memory_gb": lambda n, t, b=4: _train_gb(n, t, b, master_on_all=True)
            },
            "AdamW moments in the weights' precision": {
                "train_memory_gb": lambda n, t, b=4: _train_gb(n, t, b, moment_bytes=b)
            },
            "hard-coded 16 bytes per parameter": {"train_memory_gb": lambda n, t, b=4: 16 * n / 1e9},
        },
    },
    "nb00.q2": {
        "solution": _pred(lambda n, t, a: 16 * n / 1e6, lambda n, t, a: (4 * a + 12 * t) / 1e6),
        "wrong": {
            "weights only": _pred(lambda n, t, a: 4 * n / 1e6, lambda n, t, a: 4 * a / 1e6),
            "12 bytes per parameter": _pred(
                lambda n, t, a: 12 * n / 1e6, lambda n, t, a: (4 * a + 8 * t) / 1e6
            ),
            "LoRA keeps gradients and moments for every weight": _pred(
                lambda n, t, a: 16 * n / 1e6, lambda n, t, a: 16 * a / 1e6
            ),
            "LoRA counts only the adapter": _pred(lambda n, t, a: 16 * n / 1e6, lambda n, t, a: 16 * t / 1e6),
            "bits instead of bytes (x8)": _pred(
                lambda n, t, a: 128 * n / 1e6, lambda n, t, a: 8 * (4 * a + 12 * t) / 1e6
            ),
        },
    },
    "nb00.q3": {
        "solution": {"storage_bytes": lambda n, a, t, b=4: (t * n * b, n * b + t * a * b)},
        "wrong": {
            "forgot the shared base": {"storage_bytes": lambda n, a, t, b=4: (t * n * b, t * a * b)},
            "one base per task": {"storage_bytes": lambda n, a, t, b=4: (t * n * b, t * (n + a) * b)},
            "bytes_per_param ignored": {"storage_bytes": lambda n, a, t, b=4: (t * n * 4, n * 4 + t * a * 4)},
        },
    },
    "nb00.q4": {
        "solution": {
            "attention": lambda Q, K, V: (
                torch.softmax(Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1]), dim=-1) @ V
            )
        },
        "wrong": {
            "no 1/sqrt(d_k) scale": {"attention": _attention_no_scale},
            "softmax over the queries": {"attention": _attention_softmax_over_queries},
            "divided by d_k instead of sqrt(d_k)": {"attention": _attention_scale_by_d},
        },
    },
}
