"""LoRA rank x alpha sweep on `tiny` (article -> headline), for notebook 05's slider.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sweep_lora_rank.py      # ~10 CPU minutes, writes the CSV below

Every run is notebook 05's training run with another rank / alpha: LoRA on q_proj + v_proj, AdamW lr 3e-3, 50 steps
of 8 examples (max 128 tokens), seed 0 (for A's random start and the data order), scored by the loss on the first 32 validation articles (the notebook's
`val_batch`). The r=8, alpha=16 row is the notebook's own run. Rows with `use_rslora` scale by alpha/sqrt(r) instead
of alpha/r (rsLoRA); at r=1 the two are the same run, so it is not repeated.

Output: docs/results/lora_rank_sweep_tiny.csv, one row per run:
rank, alpha, use_rslora, scaling, trainable, total, trainable_pct, adapter_bytes, val_loss, base_val_loss,
train_loss_last10, steps, lr, batch_size, max_len, seed, seconds.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from _sweep import train_and_measure, val_batch, val_loss, write_csv

from peftlab import LoraConfig, data, get_peft_model, models

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "lora_rank_sweep_tiny.csv"
RANKS = (1, 2, 4, 8, 16, 32, 64)
ALPHAS = (4, 16, 64)
RSLORA_ALPHA = 16
STEPS, LR, BATCH, MAX_LEN, SEED, N_VAL = 50, 3e-3, 8, 128, 0, 32
TARGETS = ["q_proj", "v_proj"]
COLUMNS = ["rank", "alpha", "use_rslora", "scaling", "trainable", "total", "trainable_pct", "adapter_bytes", "val_loss",
           "base_val_loss", "train_loss_last10", "steps", "lr", "batch_size", "max_len", "seed", "seconds"]  # fmt: skip


def runs():
    for alpha in ALPHAS:
        for r in RANKS:
            yield r, alpha, False
    for r in RANKS[1:]:
        yield r, RSLORA_ALPHA, True


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", type=int, default=STEPS, help="optimizer steps per run (the CSV uses 50)")
    args = ap.parse_args()

    base, tok = models.load("tiny")
    features = data.format_causal(
        data.load("bbc-headlines", "train"), tok, max_len=MAX_LEN
    )  # once for every run
    batch = val_batch(tok, N_VAL, MAX_LEN)
    base_loss = val_loss(base, batch)
    rows = []
    for r, alpha, rs in runs():
        t0 = time.time()
        config = LoraConfig(r=r, lora_alpha=alpha, use_rslora=rs, target_modules=TARGETS)
        torch.manual_seed(SEED)  # A's random start: the same as notebook 05's run for r=8
        model = get_peft_model(copy.deepcopy(base), config)
        measured = train_and_measure(
            model, tok, features, batch, base_loss, t0,
            steps=args.steps, lr=LR, batch_size=BATCH, max_len=MAX_LEN, seed=SEED,
        )  # fmt: skip
        rows.append({"rank": r, "alpha": alpha, "use_rslora": rs, "scaling": round(alpha / (r**0.5 if rs else r), 6),
                     **measured})  # fmt: skip
        print({k: rows[-1][k] for k in ("rank", "alpha", "use_rslora", "val_loss", "seconds")}, flush=True)
    write_csv(rows, args.out, COLUMNS)


if __name__ == "__main__":
    main()
