"""Answers for notebooks/07_showdown.ipynb."""

from collections import Counter

from peftlab.classroom.exercises.nb07 import reference_best_per_param


def _rouge1_f(pred, ref):
    p, r = Counter(pred.split()), Counter(ref.split())
    overlap = sum((p & r).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(p.values()), overlap / sum(r.values())
    return 2 * precision * recall / (precision + recall)


def _rouge1_unclipped(pred, ref):  # counts a repeated word every time it appears in the prediction
    p, r = pred.split(), ref.split()
    overlap = sum(1 for w in p if w in r)
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(p), min(overlap, len(r)) / len(r)
    return 2 * precision * recall / (precision + recall)


def _trained(rows):
    return [r for r in rows if r["trainable"]]


CASES = {
    "nb07.q1": {
        "solution": {"rouge1_f": _rouge1_f},
        "wrong": {
            "recall only": {
                "rouge1_f": lambda p, r: (
                    sum((Counter(p.split()) & Counter(r.split())).values()) / len(r.split())
                )
            },
            "no clipping": {"rouge1_f": _rouge1_unclipped},
            "set overlap (duplicates ignored)": {
                "rouge1_f": lambda p, r: _rouge1_f(
                    " ".join(dict.fromkeys(p.split())), " ".join(dict.fromkeys(r.split()))
                )
            },
        },
    },
    "nb07.q2": {
        "solution": {"best_per_param": reference_best_per_param},
        "wrong": {
            "fewest parameters": {
                "best_per_param": lambda rows: min(_trained(rows), key=lambda r: r["trainable"])["method"]
            },
            "forgot to subtract the base": {
                "best_per_param": lambda rows: max(
                    _trained(rows), key=lambda r: r["rougeL"] / r["trainable"]
                )["method"]
            },
            "highest ROUGE-L": {
                "best_per_param": lambda rows: max(_trained(rows), key=lambda r: r["rougeL"])["method"]
            },
        },
    },
    "nb07.q3": {
        "solution": {"gain_recovered": lambda m, base, full: (m - base) / (full - base)},
        "wrong": {
            "ratio to full, base ignored": {"gain_recovered": lambda m, base, full: m / full},
            "denominator flipped": {"gain_recovered": lambda m, base, full: (m - base) / (base - full)},
            "clamped at zero (real tables have negative gains)": {
                "gain_recovered": lambda m, base, full: max(0.0, (m - base) / (full - base))
            },
        },
    },
}
