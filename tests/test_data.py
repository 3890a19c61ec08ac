"""Offline datasets: they load, splits follow the documented hash rule, nothing crosses splits,
checksums match data/README.md, and formatting masks the prompt and keeps the answer."""

import hashlib
import re
import time
from pathlib import Path

import pytest
import torch

from peftlab import data, models

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = ["bbc-headlines", "bbc-topics", "drug-reviews"]


@pytest.fixture(scope="module")
def tok():
    return models.load("tiny")[1]


def documented_split(example_id: str) -> str:
    """The rule as data/README.md states it, written out independently of peftlab.data."""
    n = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) % 100
    return "train" if n < 80 else "val" if n < 90 else "test"


# ----------------------------------------------------------------------------- loading and splits
@pytest.mark.parametrize("name", OFFLINE)
def test_loads_every_split(name):
    sizes = {s: len(data.load(name, s)) for s in data.SPLITS}
    total = len(data.load(name, "all"))
    assert sum(sizes.values()) == total
    assert all(n > 0 for n in sizes.values())
    assert 0.75 < sizes["train"] / total < 0.85  # ~80 / 10 / 10
    assert 0.06 < sizes["test"] / total < 0.14
    assert data.split_sizes(name) == sizes
    for e in data.load(name, "test", limit=5):
        assert {"id", "text", "target", "template"} <= set(e)
        assert e["text"].strip() and str(e["target"]).strip()
        assert "{text}" in e["template"]


@pytest.mark.parametrize("name", OFFLINE)
def test_split_sizes_match_readme(name):
    readme = (ROOT / "data" / "README.md").read_text()
    row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}`"))
    want = [int(x.replace(",", "")) for x in re.search(r"([\d,]+) / ([\d,]+) / ([\d,]+)", row).groups()]
    assert [len(data.load(name, s)) for s in data.SPLITS] == want


@pytest.mark.parametrize("name", OFFLINE)
def test_splits_follow_the_hash_of_the_id(name):
    for split in data.SPLITS:
        for e in data.load(name, split):
            assert documented_split(e["id"]) == split


@pytest.mark.parametrize("name", OFFLINE)
def test_nothing_crosses_splits(name):
    seen = {}
    for split in data.SPLITS:
        for e in data.load(name, split):
            for key in (e["id"], "text:" + e["text"].lower()):
                assert seen.setdefault(key, split) == split, f"{key[:60]!r} in {seen[key]} and {split}"
    if name == "bbc-headlines":  # no headline is the target in two splits either
        by_split = {s: {e["target"].lower() for e in data.load(name, s)} for s in data.SPLITS}
        assert not by_split["train"] & by_split["test"]
        assert not by_split["train"] & by_split["val"]


def test_loading_is_deterministic():
    a = data.load("bbc-headlines", "train", limit=20)
    b = data.load("bbc-headlines", "train", limit=20)
    assert [e["id"] for e in a] == [e["id"] for e in b]
    assert len(a) == 20


# ----------------------------------------------------------------------------- content
def test_bbc_headline_is_line_one_of_the_file():
    files = data.source_files("bbc-headlines")
    assert len(files) == 2225
    for e in data.load("bbc-headlines", "test", limit=10):
        path = data.bbc_dir() / (e["id"] + ".txt")
        first_line = path.read_bytes().decode("utf-8", errors="replace").splitlines()[0].strip()
        assert e["target"] == first_line
        assert e["target"] not in e["text"][:10]  # the body does not start with the headline


def test_bbc_topics_are_the_folders():
    for split in data.SPLITS:
        topics = {e["target"] for e in data.load("bbc-topics", split)}
        assert topics == {"business", "entertainment", "politics", "sport", "tech"}
    e = data.load("bbc-topics", "train", limit=1)[0]
    folder = e["id"].split("/")[0]
    assert e["target"] == ("sport" if folder == "sports" else folder)


def test_latin1_file_is_decoded():
    e = next(e for e in data.load("bbc-headlines", "all") if e["id"] == "sports/199")
    assert "£15.8m" in e["text"]


def test_drug_reviews_labels():
    for split in data.SPLITS:
        labels = {e["target"] for e in data.load("drug-reviews", split)}
        assert labels == {"negative", "neutral", "positive"}
    texts = [e["text"] for e in data.load("drug-reviews", "all")]
    assert not any("&#039;" in t or "&quot;" in t for t in texts)  # HTML entities unescaped


@pytest.mark.parametrize("name", ["bbc-headlines", "drug-reviews"])
def test_sha256_matches_readme(name):
    readme = (ROOT / "data" / "README.md").read_text()
    row = next(
        line for line in readme.splitlines() if f"`{name}`" in line and re.search(r"`[0-9a-f]{64}`", line)
    )
    want = re.search(r"`([0-9a-f]{64})`", row).group(1)
    if name == "drug-reviews":  # one file: hash it here directly
        got = hashlib.sha256(data.drug_zip().read_bytes()).hexdigest()
    else:
        got = data.source_sha256(name)
    assert got == want


# ----------------------------------------------------------------------------- errors
def test_unknown_dataset_lists_the_valid_ones():
    with pytest.raises(ValueError, match="bbc-headlines.*bbc-topics.*drug-reviews.*dialogsum"):
        data.load("bbc-news", "train")


def test_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"train, val \(or 'validation'.*\), test"):
        data.load("bbc-headlines", "dev")


def test_dialogsum_offline_fails_fast_and_clearly():
    t0 = time.time()
    with pytest.raises(OSError, match="offline|not reachable|HF_HUB_OFFLINE") as err:
        data.load("dialogsum", "train")
    assert "bbc-headlines" in str(err.value)  # names what works offline
    assert time.time() - t0 < 15


# ----------------------------------------------------------------------------- formatting
def test_format_causal_masks_the_prompt_and_keeps_the_answer(tok):
    examples = data.load("bbc-headlines", "train", limit=6)
    feats = data.format_causal(examples, tok, max_len=96)
    for e, f in zip(examples, feats):
        ids, labels = f["input_ids"], f["labels"]
        assert len(ids) == len(labels) == len(f["attention_mask"]) <= 96
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        n_prompt = sum(1 for x in labels if x == -100)
        assert labels[:n_prompt] == [-100] * n_prompt  # masked part is a prefix
        assert labels[n_prompt:] == ids[n_prompt:]
        answer = tok.decode(ids[n_prompt:], skip_special_tokens=True).strip()
        assert answer == e["target"]  # the whole headline survives truncation
        prompt = tok.decode(ids[:n_prompt], skip_special_tokens=True)
        assert prompt.startswith("Article: ") and prompt.endswith("\nHeadline:")


def test_format_causal_short_example_is_not_cut(tok):
    e = {"id": "x", "text": "Short text.", "target": "A title", "template": "Article: {text}\nHeadline:"}
    f = data.format_causal([e], tok, max_len=64)[0]
    assert tok.decode(f["input_ids"], skip_special_tokens=True) == "Article: Short text.\nHeadline: A title"


def test_build_prompt_truncates_only_the_text(tok):
    e = data.load("bbc-headlines", "train", limit=1)[0]
    p = data.build_prompt(e, tok, max_tokens=40)
    assert p.startswith("Article: ") and p.endswith("\nHeadline:")
    assert len(tok(p, add_special_tokens=False)["input_ids"]) <= 41  # decode/encode may differ by one
    assert data.build_prompt(e) == "Article: " + e["text"] + "\nHeadline:"
    with pytest.raises(ValueError, match="no room"):
        data.build_prompt(e, tok, max_tokens=2)


def test_format_seq2seq(tok):
    examples = data.load("drug-reviews", "train", limit=3)
    feats = data.format_seq2seq(examples, tok, max_source_len=50, max_target_len=8)
    for e, f in zip(examples, feats):
        assert len(f["input_ids"]) <= 50
        assert tok.decode(f["labels"], skip_special_tokens=True).strip() == e["target"]
        assert tok.decode(f["input_ids"], skip_special_tokens=True).endswith("\nSentiment:")


def test_collate_pads_right():
    feats = [
        {"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": [-100, 6, 7]},
        {"input_ids": [8], "attention_mask": [1], "labels": [8]},
    ]
    b = data.collate(feats, pad_token_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["input_ids"].dtype == torch.long
    with pytest.raises(ValueError, match="empty"):
        data.collate([])


def test_validation_is_an_alias_of_val():
    assert data.load("bbc-headlines", "validation", limit=5) == data.load("bbc-headlines", "val", limit=5)
