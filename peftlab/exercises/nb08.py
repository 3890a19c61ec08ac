"""Checks for notebooks/08_real_model.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

from peftlab import memory
from peftlab.grading import attempted, exercise, rng

WORDS = "the cat sat on mat dog red blue sun moon tax vote goal 2005 uk".split()


def _random_text(g, n: int) -> str:
    """n words from a small vocabulary (so they overlap), with some capitals and punctuation."""
    out = []
    for _ in range(n):
        w = str(g.choice(WORDS))
        w = w.capitalize() if g.random() < 0.2 else w
        out.append(w + ("," if g.random() < 0.1 else ""))
    return " ".join(out) + ("." if g.random() < 0.5 else "")


def reference_rouge1(prediction: str, reference: str) -> float:
    from peftlab.rouge import compute_rouge

    return compute_rouge([prediction], [reference], use_aggregator=False, use_stemmer=False)["rouge1"][0]


@exercise(
    "nb08.q1",
    points=3,
    hint="Lowercase, split into words with re.findall(r'[a-z0-9]+', ...), count with collections.Counter; the "
    "clipped overlap is sum((pred & ref).values()); F = 2 P R / (P + R).",
    needs=["rouge1"],
)
def _(ns):
    f = ns["rouge1"]
    g = rng(81)
    pairs = [("the cat sat on the mat", "the cat sat"), ("the the the", "the cat"), ("red sun", "blue moon")]
    pairs += [
        (_random_text(g, int(g.integers(1, 12))), _random_text(g, int(g.integers(1, 12)))) for _ in range(12)
    ]
    for pred, ref in pairs:
        got = float(attempted(f(pred, ref)))
        want = reference_rouge1(pred, ref)
        assert abs(got - want) < 1e-6, f"rouge1({pred!r}, {ref!r}) = {got:.4f}, expected {want:.4f}"


@exercise(
    "nb08.q2",
    points=2,
    hint="weights: n_params * bytes_per_param; gradients: n_trainable * bytes_per_param; "
    "AdamW: two float32 moments per trainable parameter, 2 * n_trainable * 4.",
    needs=["training_memory"],
)
def _(ns):
    f = ns["training_memory"]
    g = rng(82)
    cases = [(1_000, 1_000, 4), (7_000_000_000, 4_200_000, 4), (135_000_000, 135_000_000, 2)]
    for _ in range(5):
        n = int(g.integers(1_000, 10**11))
        cases.append((n, int(g.integers(0, n + 1)), int(g.choice([1, 2, 4]))))
    for n, t, b in cases:
        got = attempted(f(n, t, b))
        want = memory.predict(n, t, bytes_per_param=b).total
        assert abs(float(got) - want) <= 1e-9 * want + 1e-6, (
            f"training_memory({n:,}, {t:,}, {b}) = {float(got):,.0f} bytes, expected {want:,} "
            "(peftlab.memory.predict)"
        )
