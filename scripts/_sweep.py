"""What the sweep scripts share (sweep_lora_rank.py, sweep_prompt_tokens.py): train one configured copy of the
base model the same way, measure it, and write the CSV atomically (a failed run leaves the old file intact)."""

from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import torch

from peftlab import data
from peftlab.train import train


def val_batch(tok, n_val: int, max_len: int) -> dict:
    """The first `n_val` validation articles as one padded batch (the notebooks' `val_batch`)."""
    examples = data.load("bbc-headlines", "val", limit=n_val)
    return data.collate(data.format_causal(examples, tok, max_len=max_len), tok.pad_token_id)


@torch.no_grad()
def val_loss(model, batch) -> float:
    model.eval()
    return model(**batch).loss.item()


def adapter_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        return (Path(d) / "adapter_model.safetensors").stat().st_size


def train_and_measure(
    model, tok, features, batch, base_loss: float, started: float, *, steps, lr, batch_size, max_len, seed
) -> dict:
    """Train `model` (a PeftModel) and return the columns every sweep records (`seconds` since `started`)."""
    trainable, total = model.get_nb_trainable_parameters()
    history = train(
        model,
        tok,
        features,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        max_len=max_len,
        seed=seed,
        progress=False,
    )
    last = history.losses[-10:]
    return {
        "trainable": trainable,
        "total": total,
        "trainable_pct": round(100 * trainable / total, 4),
        "adapter_bytes": adapter_bytes(model),
        "val_loss": round(val_loss(model, batch), 5),
        "base_val_loss": round(base_loss, 5),
        "train_loss_last10": round(sum(last) / len(last), 5),
        "steps": steps,
        "lr": lr,
        "batch_size": batch_size,
        "max_len": max_len,
        "seed": seed,
        "seconds": round(time.time() - started, 1),
    }


def write_csv(rows: list[dict], path: Path, columns: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    print(f"wrote {path} ({len(rows)} runs)")
