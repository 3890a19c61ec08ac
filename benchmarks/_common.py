"""Shared helpers for the benchmarks: interleaved timing, median and spread, JSON results under docs/results/."""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "docs" / "results"


def interleaved(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Time each fn `repeats` times, round-robin (A B A B ...), so machine load hits all of them alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    return times


def summary(xs: list[float]) -> dict:
    """median, interquartile range and min/max of a list of timings (seconds)."""
    q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
    return {
        "median": statistics.median(xs),
        "q1": q[0],
        "q3": q[2],
        "min": min(xs),
        "max": max(xs),
        "n": len(xs),
    }


def ratio_summary(num: list[float], den: list[float]) -> dict:
    """Per-repeat ratios num[i] / den[i] (paired, interleaved runs): median and IQR."""
    return summary([a / b for a, b in zip(num, den)])


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "cpu": platform.processor() or platform.machine(),
    }


def save(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"bench_{name}.json"
    result = {**result, "machine": machine(), "command": "python " + " ".join(sys.argv)}
    path.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps(result, indent=1, default=float))
    return path


def lm_batch(tokenizer, batch_size: int, max_len: int) -> dict:
    """A training batch from bbc-headlines (the same for every contender)."""
    from peftlab import data

    feats = data.format_causal(
        data.load("bbc-headlines", "train", limit=batch_size), tokenizer, max_len=max_len
    )
    return data.Collator(tokenizer)(feats)
