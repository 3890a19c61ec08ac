"""Answers for notebooks/08_real_model.ipynb."""

import math

import numpy as np


def _paired(a, b, n_resamples=1000, seed=0):
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_resamples, len(a)))
    d = (a[idx] - b[idx]).mean(axis=1)
    return a.mean() - b.mean(), np.percentile(d, 2.5), np.percentile(d, 97.5)


def _unpaired(a, b, n_resamples=1000, seed=0):  # resamples the two systems independently
    g = np.random.default_rng(seed)
    ia = g.integers(0, len(a), size=(n_resamples, len(a)))
    ib = g.integers(0, len(b), size=(n_resamples, len(b)))
    d = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    return a.mean() - b.mean(), np.percentile(d, 2.5), np.percentile(d, 97.5)


def _no_replacement(a, b, n_resamples=1000, seed=0):  # permutations: every resample has the same mean
    g = np.random.default_rng(seed)
    d = [(a[p] - b[p]).mean() for p in (g.permutation(len(a)) for _ in range(n_resamples))]
    return a.mean() - b.mean(), np.percentile(d, 2.5) - 1e-12, np.percentile(d, 97.5) + 1e-12


def _spread_of_single_scores(a, b, n_resamples=1000, seed=0):  # +- 1.96 sd of one article, not of the mean
    d = a - b
    return d.mean(), d.mean() - 1.96 * d.std(), d.mean() + 1.96 * d.std()


def _exposure(lp, i):
    rank = 1 + int((np.asarray(lp) > lp[i]).sum())
    return math.log2(len(lp)) - math.log2(rank)


CASES = {
    "nb08.q1": {
        "solution": {"paired_bootstrap": _paired},
        "wrong": {
            "unpaired resamples": {"paired_bootstrap": _unpaired},
            "without replacement": {"paired_bootstrap": _no_replacement},
            "spread of single articles": {"paired_bootstrap": _spread_of_single_scores},
        },
    },
    "nb08.q2": {
        "solution": {"exposure": _exposure},
        "wrong": {
            "rank counted from 0": {
                "exposure": lambda lp, i: (
                    math.log2(len(lp)) - math.log2(max(1, int((np.asarray(lp) > lp[i]).sum())))
                )
            },
            "natural log": {
                "exposure": lambda lp, i: (
                    math.log(len(lp)) - math.log(1 + int((np.asarray(lp) > lp[i]).sum()))
                )
            },
            "rank from the least likely": {
                "exposure": lambda lp, i: (
                    math.log2(len(lp)) - math.log2(1 + int((np.asarray(lp) < lp[i]).sum()))
                )
            },
        },
    },
}
