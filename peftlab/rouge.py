"""ROUGE for the workbook, offline: `compute_rouge(predictions, references)`.

Loads the local `evaluate` metric module shipped in peftlab/metrics/rouge (the hub's `evaluate.load("rouge")`
downloads a script and fails offline). Scores are F-measures in [0, 1], stemmed, rougeLsum with a regex
sentence splitter.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

METRIC_PATH = Path(__file__).parent / "metrics" / "rouge" / "rouge.py"


@lru_cache(maxsize=1)
def rouge_metric():
    """The `evaluate` ROUGE metric, loaded by path (works offline)."""
    import evaluate

    return evaluate.load(str(METRIC_PATH))


def compute_rouge(
    predictions: list[str], references: list[str], use_aggregator: bool = True, **kwargs
) -> dict:
    """{"rouge1", "rouge2", "rougeL", "rougeLsum"} -> mean F-measure (or per-example lists)."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError("compute_rouge needs at least one prediction/reference pair")
    return rouge_metric().compute(
        predictions=list(predictions), references=list(references), use_aggregator=use_aggregator, **kwargs
    )
