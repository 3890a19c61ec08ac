"""ROUGE as a local `evaluate` metric module (no hub download): `evaluate.load(<path to this file>)`.

Same definition as the hub's "rouge" metric (Lin 2004, "ROUGE: A Package for Automatic Evaluation of
Summaries", ACL workshop W04-1013), computed by Google's `rouge_score` with the Porter stemmer on.
rougeLsum needs one sentence per line; nltk's punkt data is not available offline, so sentences are split
with a regular expression (after . ! or ? followed by whitespace) instead.
"""

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_CITATION = """@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    url = "https://aclanthology.org/W04-1013",
    pages = "74--81",
}"""

_DESCRIPTION = """ROUGE-1, ROUGE-2, ROUGE-L and ROUGE-Lsum F-measures between predictions and references,
stemmed, with a regex sentence splitter for ROUGE-Lsum (peftlab's offline copy of the hub metric)."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of strings, one per example.
    references: list of strings (or list of lists of strings: the best-scoring reference counts).
    rouge_types: subset of ["rouge1", "rouge2", "rougeL", "rougeLsum"] (default: all four).
    use_aggregator: True (default) returns the mean F-measure per type (exact mean, deterministic; the
        hub metric reports a bootstrap median, which is random in the last digits); False: per-example lists.
    use_stemmer: Porter stemmer on (default True).
Returns:
    dict rouge_type -> float in [0, 1] (or list of floats when use_aggregator=False).
Example:
    >>> rouge = evaluate.load("peftlab/metrics/rouge")
    >>> rouge.compute(predictions=["the cat sat"], references=["the cat sat down"])["rouge1"]
"""

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line, which is what rougeLsum expects."""
    return "\n".join(s for s in SENTENCE_END.split(text.strip()) if s)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Sequence(datasets.Value("string", id="sequence")),
                    }
                ),
                datasets.Features(
                    {
                        "predictions": datasets.Value("string", id="sequence"),
                        "references": datasets.Value("string", id="sequence"),
                    }
                ),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013"],
        )

    def _compute(self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=True):
        rouge_types = rouge_types or ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer)
        multi_ref = isinstance(references[0], list)
        if "rougeLsum" in rouge_types:
            predictions = [split_sentences(p) for p in predictions]
            references = [
                [split_sentences(r) for r in refs] if multi_ref else split_sentences(refs)
                for refs in references
            ]
        per_example = {t: [] for t in rouge_types}
        for pred, ref in zip(predictions, references):
            score = scorer.score_multi(ref, pred) if multi_ref else scorer.score(ref, pred)
            for t in rouge_types:
                per_example[t].append(score[t].fmeasure)
        if use_aggregator:  # the plain mean (the hub metric's bootstrap median is random and ~ equal)
            return {t: sum(v) / max(len(v), 1) for t, v in per_example.items()}
        return per_example
