"""Prompt tuning with 1 to 64 virtual tokens on `tiny` (article -> headline), for notebook 04's slider.

    OMP_NUM_THREADS=1 .venv/bin/python scripts/sweep_prompt_tokens.py   # ~3 CPU minutes, writes the CSV below

Every run is notebook 04's prompt-tuning run with another number of virtual tokens n: the prompt starts as the
embeddings of "Write the headline of this news article:" (repeated or cut to n tokens), AdamW lr 3e-2, 30 steps of
8 examples (max 128 tokens), seed 0, scored by the loss on the first 32 validation articles. The n=8 row is the
notebook's own run.

Output: docs/results/prompt_tuning_tokens_sweep_tiny.csv, one row per run:
num_virtual_tokens, trainable, total, trainable_pct, adapter_bytes, context_share_pct (n of the 512-token window),
val_loss, base_val_loss, train_loss_last10, steps, lr, batch_size, max_len, seed, seconds.
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

from _sweep import train_and_measure, val_batch, val_loss, write_csv

from peftlab import data, get_peft_model, make_config, models

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "prompt_tuning_tokens_sweep_tiny.csv"
TOKENS = (1, 2, 4, 8, 16, 32, 64)
INIT_TEXT = "Write the headline of this news article:"
STEPS, LR, BATCH, MAX_LEN, SEED, N_VAL = 30, 3e-2, 8, 128, 0, 32
COLUMNS = ["num_virtual_tokens", "trainable", "total", "trainable_pct", "adapter_bytes", "context_share_pct", "val_loss",
           "base_val_loss", "train_loss_last10", "steps", "lr", "batch_size", "max_len", "seed", "seconds"]  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--steps", type=int, default=STEPS, help="optimizer steps per run (the CSV uses 30)")
    args = ap.parse_args()

    base, tok = models.load("tiny")
    features = data.format_causal(data.load("bbc-headlines", "train"), tok, max_len=MAX_LEN)
    batch = val_batch(tok, N_VAL, MAX_LEN)
    base_loss = val_loss(base, batch)
    rows = []
    for n in TOKENS:
        t0 = time.time()
        config = make_config(
            "prompt_tuning",
            num_virtual_tokens=n,
            prompt_tuning_init="TEXT",
            prompt_tuning_init_text=INIT_TEXT,
            tokenizer_name_or_path=tok,
        )
        model = get_peft_model(copy.deepcopy(base), config)
        measured = train_and_measure(
            model, tok, features, batch, base_loss, t0,
            steps=args.steps, lr=LR, batch_size=BATCH, max_len=MAX_LEN, seed=SEED,
        )  # fmt: skip
        rows.append(
            {
                "num_virtual_tokens": n,
                "context_share_pct": round(100 * n / tok.model_max_length, 3),
                **measured,
            }
        )
        print({k: rows[-1][k] for k in ("num_virtual_tokens", "val_loss", "seconds")}, flush=True)
    write_csv(rows, args.out, COLUMNS)


if __name__ == "__main__":
    main()
