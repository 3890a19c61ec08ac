"""The showdown harness: a tiny run writes the table with every column, and a rerun resumes (trains nothing)."""

import csv

import pytest

from peftlab import showdown

pytest.importorskip("rouge_score")


def _tiny_available():
    try:
        from peftlab.models import tiny_path

        tiny_path()
        return True
    except FileNotFoundError:
        return False


pytestmark = pytest.mark.skipif(not _tiny_available(), reason="the tiny model is not in data/models yet")

ARGS = ["--fast", "--methods", "base,lora,full", "--extra-seeds", "0", "--quiet"]


def test_showdown_writes_table_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "results"
    rows = showdown.main([*ARGS, "--out", str(out)])
    assert [r["method"] for r in rows] == ["base", "lora", "full"]
    assert all(r["status"] == "ok" for r in rows), rows
    with open(out / "showdown.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == showdown.COLUMNS
        table = list(reader)
    assert [r["method"] for r in table] == ["base", "lora", "full"]
    lora, full = table[1], table[2]
    assert 0 < float(lora["trainable_pct"]) < 5 and float(full["trainable_pct"]) == 100.0
    assert 0 < int(lora["adapter_bytes"]) < int(full["adapter_bytes"])
    assert int(lora["train_memory_bytes"]) < int(full["train_memory_bytes"])
    for r in table:
        assert 0.0 <= float(r["rouge1"]) <= 1.0
    assert (out / "showdown.md").read_text().count("\n| ") >= 4
    assert (out / "showdown.png").stat().st_size > 0

    def no_training(*a, **k):
        raise AssertionError("a resumed run must not train again")

    monkeypatch.setattr(showdown, "train_one", no_training)
    monkeypatch.setattr(showdown, "score", no_training)
    again = showdown.main([*ARGS, "--out", str(out)])
    assert [(r["method"], r["rouge1"]) for r in again] == [(r["method"], r["rouge1"]) for r in rows]


def test_unknown_method_is_rejected(tmp_path):
    with pytest.raises(SystemExit, match="unknown methods"):
        showdown.main(["--fast", "--methods", "lora,nope", "--out", str(tmp_path)])
