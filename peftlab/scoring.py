"""Scoring a showdown row: per-article ROUGE, paired bootstrap intervals, the lead-N baseline, gain recovered.

Paired bootstrap (Efron & Tibshirani 1993; for NLP: Koehn 2004, "Statistical significance tests for machine
translation evaluation"). The test set is one sample of n articles; a corpus score is the mean of per-article
scores s_i. Draw R resamples of n article indices with replacement, the *same* indices for every row:

    mean_r = (1/n) sum_j s_{idx[r, j]}                      (one resampled corpus score, r = 1..R)
    95% interval = [2.5th, 97.5th percentile of mean_r]     (percentile method)
    difference A - B: the percentiles of mean_r(A) - mean_r(B), on the same idx[r]  (paired: article difficulty
                      cancels, so a difference can be sure even when the two single intervals overlap)

Gain recovered (how much of full fine-tuning's improvement a method keeps):

    gain = (method - base) / (full - base)      on ROUGE-1;   on val loss: (base - method) / (base - full)

1 means "as good as full FT", 0 "no better than the untrained model", negative "worse than the untrained model".
"""

from __future__ import annotations

import numpy as np

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def per_example_rouge(predictions: list[str], references: list[str]) -> dict[str, np.ndarray]:
    """{"rouge1": (n,), ...}: each article's F-measure; their means are the corpus scores `compute_rouge` gives."""
    from .rouge import compute_rouge

    scores = compute_rouge(predictions, references, use_aggregator=False)
    return {k: np.asarray(scores[k], dtype=np.float64) for k in ROUGE_KEYS}


def bootstrap_indices(n: int, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(R, n) article indices drawn with replacement; share one matrix between rows to pair them."""
    if n < 1 or n_resamples < 1:
        raise ValueError(f"need n >= 1 articles and n_resamples >= 1 (got {n}, {n_resamples})")
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def bootstrap_ci(scores, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi) of per-article `scores` (n,), with the percentile interval over resamples `idx` (R, n)."""
    s = np.asarray(scores, dtype=np.float64)
    if idx.shape[1] != len(s):
        raise ValueError(f"bootstrap indices are for {idx.shape[1]} articles, the scores for {len(s)}")
    means = s[idx].mean(axis=1)  # (R,)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(s.mean()), float(lo), float(hi)


def paired_diff_ci(a, b, idx: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), lo, hi): the same articles resampled for both, so per-article difficulty cancels."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired scores must cover the same articles: {a.shape} vs {b.shape}")
    return bootstrap_ci(a - b, idx, level)


def gain_recovered(method: float, base: float, full: float) -> float | None:
    """(method - base) / (full - base); None when full FT did not move away from the base."""
    if any(v is None for v in (method, base, full)) or abs(full - base) < 1e-12:
        return None
    return (method - base) / (full - base)


# ----------------------------------------------------------------------------- the lead-N baseline
def lead_n(text: str, n: int) -> str:
    """The first n words of an article: the classic extractive baseline for news summarization."""
    return " ".join(text.split()[:n])


def choose_lead_n(examples: list[dict], candidates=range(1, 31)) -> tuple[int, dict[int, float]]:
    """The N (from `candidates`) whose lead-N has the best mean ROUGE-1 on `examples` (use val, never test).

    Returns (best N, {N: ROUGE-1}); ties go to the smaller N."""
    from .rouge import compute_rouge

    refs = [str(e["target"]) for e in examples]
    curve = {n: compute_rouge([lead_n(e["text"], n) for e in examples], refs)["rouge1"] for n in candidates}
    if not curve:
        raise ValueError("choose_lead_n needs at least one candidate N")
    best = max(curve, key=lambda n: (curve[n], -n))
    return best, curve
