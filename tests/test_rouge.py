"""The offline ROUGE metric equals Google's rouge_score called directly on the same pairs."""

import re

import pytest
from rouge_score import rouge_scorer

from peftlab.rouge import METRIC_PATH, compute_rouge, rouge_metric

PREDS = [
    "Shares in Time Warner rose sharply. Profits jumped by 76%!",
    "the cats were sitting on the mats",
    "Ministers reject calls for an inquiry",
    "completely unrelated words here",
    "Running runners ran. They run again? Yes.",
]
REFS = [
    "Time Warner shares rise as profits jump 76%",
    "the cat sat on the mat. It was red.",
    "Minister rejects inquiry call",
    "BBC wins award for coverage",
    "The runner runs. She ran again.",
]
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


def direct(preds, refs):
    """Mean F-measure per type, computed by rouge_score itself (sentences one per line for rougeLsum)."""
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    out = {t: [] for t in TYPES}
    for p, r in zip(preds, refs):
        # rougeLsum treats newlines as sentence boundaries: put each sentence on its own line by hand
        p_lines = "\n".join(re.split(r"(?<=[.!?])\s+", p))
        r_lines = "\n".join(re.split(r"(?<=[.!?])\s+", r))
        s = scorer.score(r_lines, p_lines)
        for t in TYPES:
            out[t].append(s[t].fmeasure)
    return out


def test_metric_module_ships_inside_the_package():
    assert METRIC_PATH.is_file()
    assert METRIC_PATH.parent.parent.parent.name == "peftlab"


def test_equals_rouge_score_per_example():
    got = compute_rouge(PREDS, REFS, use_aggregator=False)
    want = direct(PREDS, REFS)
    for t in TYPES:
        assert got[t] == pytest.approx(want[t], abs=1e-12), t


def test_aggregate_is_the_mean_of_rouge_score():
    got = compute_rouge(PREDS, REFS)
    want = direct(PREDS, REFS)
    for t in TYPES:
        assert got[t] == pytest.approx(sum(want[t]) / len(want[t]), abs=1e-12), t


def test_rougelsum_uses_sentence_splitting():
    # two sentences in swapped order: the LCS over the whole text (rougeL) loses one sentence,
    # the summary-level LCS over sentences (rougeLsum) recovers both
    pred, ref = "Alpha beta gamma. Delta epsilon zeta.", "Delta epsilon zeta. Alpha beta gamma."
    s = compute_rouge([pred], [ref])
    assert s["rougeLsum"] == pytest.approx(1.0)
    assert s["rougeL"] < 0.6


def test_stemmer_is_on():
    s = compute_rouge(["ministers rejecting calls"], ["minister rejects call"])
    assert s["rouge1"] == pytest.approx(1.0)


def test_bounds():
    s_same = compute_rouge(["a headline about markets"], ["a headline about markets"])
    s_diff = compute_rouge(["apples oranges"], ["trains planes"])
    assert all(v == pytest.approx(1.0) for v in s_same.values())
    assert all(v == 0.0 for v in s_diff.values())


def test_multiple_references_take_the_best():
    s = compute_rouge(["the cat sat"], [["a dog barked", "the cat sat"]])
    assert s["rouge1"] == pytest.approx(1.0)


def test_loaded_by_path_with_evaluate():
    metric = rouge_metric()
    assert "rouge" in metric.name.lower()
    got = metric.compute(predictions=PREDS[:2], references=REFS[:2])
    assert set(got) == set(TYPES)


def test_bad_input():
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        compute_rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        compute_rouge([], [])
