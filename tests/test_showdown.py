"""The showdown harness: bootstrap on cases worked out by hand, lead-N, resuming, and the committed real-model table."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from peftlab import scoring, showdown, showdown_report

pytest.importorskip("rouge_score")
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def _tiny_available():
    try:
        from peftlab.models import tiny_path

        tiny_path()
        return True
    except FileNotFoundError:
        return False


needs_tiny = pytest.mark.skipif(not _tiny_available(), reason="the tiny model is not in data/models yet")


# ----------------------------------------------------------------------------- bootstrap, by hand
def test_bootstrap_of_two_articles():
    # scores (0, 1): a resample of 2 articles has mean 0, 0.5 or 1 with probability 1/4, 1/2, 1/4, so with 1,000
    # resamples the 2.5th and 97.5th percentiles are 0 and 1 (P(no all-zero resample) = 0.75^1000 ~ 0).
    idx = scoring.bootstrap_indices(2, 1000, seed=0)
    mean, lo, hi = scoring.bootstrap_ci([0.0, 1.0], idx)
    assert (mean, lo, hi) == (0.5, 0.0, 1.0)
    means = np.asarray([0.0, 1.0])[idx].mean(axis=1)
    assert abs((means == 0.5).mean() - 0.5) < 0.05  # the resampling really is uniform with replacement


def test_bootstrap_of_constant_scores_has_no_width():
    idx = scoring.bootstrap_indices(50, 200, seed=3)
    assert scoring.bootstrap_ci([0.3] * 50, idx) == pytest.approx((0.3, 0.3, 0.3))


def test_paired_difference_cancels_article_difficulty():
    # b = a + 0.03 on every article: the paired difference is exactly 0.03, although the two single intervals
    # (article difficulty varies a lot) overlap widely.
    g = np.random.default_rng(0)
    a = g.uniform(0, 0.8, size=100)
    b = a + 0.03
    idx = scoring.bootstrap_indices(100, 1000, seed=0)
    _, a_lo, a_hi = scoring.bootstrap_ci(a, idx)
    _, b_lo, b_hi = scoring.bootstrap_ci(b, idx)
    assert b_lo < a_hi  # unpaired: the intervals overlap
    d, lo, hi = scoring.paired_diff_ci(b, a, idx)
    assert d == pytest.approx(0.03) and lo == pytest.approx(0.03) and hi == pytest.approx(0.03)
    with pytest.raises(ValueError, match="same articles"):
        scoring.paired_diff_ci(a, b[:-1], idx)


def test_gain_recovered_allows_negative_and_refuses_no_gain():
    assert scoring.gain_recovered(0.408, 0.233, 0.422) == pytest.approx(0.175 / 0.189)
    assert scoring.gain_recovered(0.1, 0.2, 0.4) == pytest.approx(-0.5)
    assert scoring.gain_recovered(0.3, 0.2, 0.2) is None


# ----------------------------------------------------------------------------- lead-N
def test_lead_n_takes_the_first_words():
    assert scoring.lead_n("Shares rise  on takeover\ntalk today", 4) == "Shares rise on takeover"
    assert scoring.lead_n("two words", 10) == "two words"


def test_choose_lead_n_finds_the_headline_length():
    # every article starts with its 3-word headline, then unrelated words: N = 3 is the unique best ROUGE-1
    examples = [
        {"text": "bank cuts rates sharply today amid market fears", "target": "bank cuts rates"},
        {"text": "team wins cup after long final match", "target": "team wins cup"},
        {"text": "vote goes ahead despite strong protest", "target": "vote goes ahead"},
    ]
    n, curve = scoring.choose_lead_n(examples, range(1, 8))
    assert n == 3 and curve[3] == pytest.approx(1.0)
    assert curve[2] < 1.0 and curve[4] < 1.0


# ----------------------------------------------------------------------------- the harness on tiny
ARGS = ["--fast", "--methods", "base,lead_n,lora,full", "--extra-seeds", "1", "--quiet"]


@needs_tiny
def test_showdown_writes_table_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "results"
    rows = showdown.main([*ARGS, "--out", str(out)])
    assert [(r["method"], r["seed"]) for r in rows] == [
        ("base", 0), ("lead_n", 0), ("lora", 0), ("full", 0), ("lora", 1), ("full", 1)
    ]  # fmt: skip
    assert all(r["status"] == "ok" for r in rows), rows
    table = showdown_report.load_results(out / "showdown_tiny.csv")
    with open(out / "showdown_tiny.csv", newline="") as f:
        assert csv.DictReader(f).fieldnames == showdown_report.COLUMNS
    assert [r["method"] for r in table] == ["base", "lead_n", "full", "lora"]
    by = {r["method"]: r for r in table}
    assert 0 < by["lora"]["trainable_pct"] < 5 and by["full"]["trainable_pct"] == 100.0
    assert 0 < by["lora"]["adapter_bytes"] < by["full"]["adapter_bytes"]
    assert by["lora"]["train_memory_bytes"] < by["full"]["train_memory_bytes"]
    assert by["full"]["gain_recovered_rouge1"] in (1.0, None) and by["base"]["n_seeds"] == 1
    assert by["lora"]["n_seeds"] == 2 and by["full"]["n_seeds"] == 2
    for r in table:
        assert r["rouge1_lo"] <= r["rouge1"] <= r["rouge1_hi"]
    assert (out / "showdown_tiny.png").stat().st_size > 0
    preds = showdown_report.load_predictions(out / "predictions_tiny" / "lora.jsonl")
    assert len(preds) == 4 and set(preds[0]) == {"id", "prediction", "reference", "seed"}

    def no_training(*a, **k):
        raise AssertionError("a resumed run must not train again")

    monkeypatch.setattr(showdown, "train_one", no_training)
    monkeypatch.setattr(showdown, "score", no_training)
    again = showdown.main([*ARGS, "--out", str(out)])
    assert [(r["method"], r["rouge1"]) for r in again] == [(r["method"], r["rouge1"]) for r in rows]


@needs_tiny
def test_a_failed_method_keeps_its_row(tmp_path):
    rows = showdown.main(["--fast", "--methods", "base,bitfit", "--quiet", "--out", str(tmp_path)])
    assert rows[1]["status"].startswith("error: ValueError: BitFit trains bias terms")
    table = showdown_report.load_results(tmp_path / "showdown_tiny.csv")
    assert [r["method"] for r in table] == ["base", "bitfit"] and "bias" in table[1]["status"]
    assert "| bitfit |" in (tmp_path / "showdown_tiny.md").read_text()


def test_a_claimed_row_is_skipped_by_other_workers(tmp_path):
    import os
    import socket

    ledger = showdown.Ledger(tmp_path / "runs.jsonl")
    # a live process on this host (our parent) holds the claim: we must not take it
    ledger.add(
        {"key": "claim:k1", "kind": "claim", "host": socket.gethostname(), "pid": os.getppid(), "time": 0}
    )
    assert not showdown.Ledger(tmp_path / "runs.jsonl").claim("k1")
    # a dead worker's claim (pid that does not exist) is taken over
    ledger.add(
        {"key": "claim:k2", "kind": "claim", "host": socket.gethostname(), "pid": 2**22 + 12345, "time": 0}
    )
    assert showdown.Ledger(tmp_path / "runs.jsonl").claim("k2")


def test_unknown_method_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown methods"):
        showdown.main(["--fast", "--methods", "lora,nope", "--out", str(tmp_path)])


def test_every_row_of_the_real_model_presets_is_budgeted():
    p = showdown.preset("smollm2-135m")
    assert p["steps"] * p["batch_size"] >= 60 * 8 and p["max_len"] >= 128  # at least the measured LoRA budget
    for m in ("prompt_tuning", "prefix_tuning", "p_tuning", "llama_adapter"):
        assert len(showdown.lr_grid("smollm2-135m", m, p["grid_size"])) >= 3  # soft prompts: lr-sensitive


# ----------------------------------------------------------------------------- the committed real-model table
REAL = RESULTS / "showdown_smollm2-135m.csv"


def test_committed_predictions_reproduce_the_table():
    assert REAL.is_file(), (
        "docs/results/showdown_smollm2-135m.csv is committed (python -m peftlab.showdown --model smollm2-135m)"
    )
    table = showdown_report.load_results(REAL)
    scores = showdown_report.rescore(RESULTS, "smollm2-135m")
    ok = [r for r in table if r["status"] == "ok"]
    assert {"base", "lead_n"} <= {r["method"] for r in ok}
    for r in ok:
        assert r["method"] in scores, f"no predictions file for {r['method']}"
        for k in scoring.ROUGE_KEYS:
            assert abs(scores[r["method"]][k] - r[k]) < 1e-6, (r["method"], k)
        preds = showdown_report.load_predictions(
            RESULTS / "predictions_smollm2-135m" / f"{r['method']}.jsonl"
        )
        assert len(preds) == 209 and all(p["seed"] == r["seed"] for p in preds)  # the whole test split
    for r in table:
        if r["status"] != "ok":
            assert r["status"].startswith("error: "), r  # a failed row states its error
    required = {"method", "family", "rouge1", "rouge1_lo", "rouge1_hi", "rouge2", "rougeL", "rougeLsum",
                "trainable", "trainable_pct", "val_loss", "gain_recovered_rouge1"}  # fmt: skip
    assert required <= set(table[0])


def test_committed_ledger_lines_are_json():
    for f in RESULTS.glob("showdown_runs_*.jsonl"):
        for line in f.read_text().splitlines()[:-1]:  # the last line may be cut by an interrupted run
            json.loads(line)


@needs_tiny
def test_adalora_val_loss_is_task_loss_only():
    # AdaLoRA adds its orthogonality penalty to every loss; the learning-rate choice must compare task loss alone.
    # At init P diag(E) Q = 0 (E = 0), so the task loss equals the untrained model's, while the raw loss is larger.
    import argparse

    from peftlab import data, models
    from peftlab.train import evaluate_loss

    model, tok = showdown.build("adalora", lambda: models.load("tiny"), argparse.Namespace(steps=60))
    base, _ = models.load("tiny")
    val = data.load("bbc-headlines", "val", limit=4)
    task = showdown.task_loss(model, tok, val, argparse.Namespace(max_len=64))
    assert task == pytest.approx(evaluate_loss(base, tok, val, max_len=64), abs=1e-5)
    assert evaluate_loss(model, tok, val, max_len=64) > task + 0.1  # the penalty is back afterwards


@needs_tiny
def test_a_worker_on_a_subset_keeps_the_other_workers_rows(tmp_path):
    common = ["--fast", "--extra-seeds", "0", "--quiet", "--out", str(tmp_path)]
    showdown.main([*common, "--methods", "base,lead_n"])
    showdown.main([*common, "--methods", "lora"])  # a second worker, another subset, the same ledger
    table = showdown_report.load_results(tmp_path / "showdown_tiny.csv")
    assert [r["method"] for r in table] == ["base", "lead_n", "lora"]
    assert table[2]["rouge1_vs_base"] is not None  # paired with a row this worker did not run
