"""The ROUGE showdown: every method vs full fine-tuning vs the untrained base, on one task, one budget.

    python -m peftlab.showdown                       # class scale on `tiny` + bbc-headlines, writes docs/results/
    python -m peftlab.showdown --fast --out build/showdown-fast   # a smoke run (seconds)
    python -m peftlab.showdown --model smollm2-135m --methods lora,full

Protocol (the same for every method; see docs/RESULTS.md):
- same base model, task, seed, and token budget (steps x batch_size examples, each cut to max_len tokens);
- the learning rate of each method is picked from a small per-family grid (`LR_GRID`) by the loss on the *val*
  split (never on test); the run with the best val loss is then scored once on the *test* split;
- reported per method: ROUGE-1/2/L/Lsum (test), trainable parameters (and % of all), adapter file size, training
  memory of one step (`peftlab.memory.measure_step`; on CUDA the allocator's peak), median seconds per step, and
  forgetting = change of the language-modelling loss on held-out text from the pretraining distribution (BBC
  article bodies of the *val* split: the `tiny` pretraining corpus saw train-split bodies only);
- extra seeds for LoRA and full fine-tuning (at their chosen learning rate) measure run-to-run spread.

Resumable: every finished training run and every finished row is appended to `<out>/showdown_runs.jsonl` under a
key made of all settings that change the result; rerunning the same command skips them.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# method name -> (family, what trains, config kwargs for a LLaMA-style model). The order is the table's order.
# "base" is the untrained model; BitFit needs biases, which LLaMA lacks: its row records the error, layer
# freezing stands in for the selective family.
LLAMA_QV = ["q_proj", "v_proj"]
METHOD_SPECS: dict[str, tuple[str, str, dict]] = {
    "base": ("none", "nothing (the pretrained model as is)", {}),
    "full": ("baseline", "every weight", {}),
    "bitfit": ("selective", "bias terms only", {}),
    "layer_freeze": (
        "selective",
        "the top transformer block only (others frozen)",
        {"num_trainable_layers": 1},
    ),
    "houlsby": ("additive: adapter", "bottleneck adapters after attention and FFN (m = d/16)", {}),
    "pfeiffer": ("additive: adapter", "bottleneck adapter after the FFN only (m = d/16)", {}),
    "ia3": ("additive: scaling", "vectors rescaling keys, values, FFN activations", {}),
    "prompt_tuning": (
        "additive: soft prompt",
        "20 virtual input-token embeddings",
        {"num_virtual_tokens": 20},
    ),
    "prefix_tuning": (
        "additive: soft prompt",
        "20 key/value prefixes in every layer",
        {"num_virtual_tokens": 20},
    ),
    "p_tuning": (
        "additive: soft prompt",
        "MLP prompt encoder -> 20 virtual tokens",
        {"num_virtual_tokens": 20},
    ),
    "llama_adapter": (
        "additive: soft prompt",
        "10 adaption prompts in the top 2 layers, zero-init gate",
        {"adapter_len": 10, "adapter_layers": 2},
    ),
    "lora": (
        "reparameterization",
        "B A (r=8) on q_proj, v_proj",
        {"r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV},
    ),
    "dora": (
        "reparameterization",
        "LoRA r=8 on q, v + magnitude vector",
        {"r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV},
    ),
    "qlora": (
        "reparameterization",
        "LoRA r=8 on q, v over an NF4 4-bit frozen base",
        {"r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV},
    ),
    "adalora": (
        "hybrid",
        "P diag(E) Q on q, v; rank 12 -> 8 on average",
        {"init_r": 12, "target_r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV},
    ),
}
# learning-rate grid per method (small, documented; chosen by val loss). Full FT / layer freezing move every
# weight of a block: smaller steps. Soft prompts and (IA)^3 vectors need large ones.
LR_GRID: dict[str, list[float]] = {
    "full": [1e-4, 3e-4, 1e-3],
    "bitfit": [1e-3, 3e-3, 1e-2],
    "layer_freeze": [1e-4, 3e-4, 1e-3],
    "houlsby": [1e-3, 3e-3, 1e-2],
    "pfeiffer": [1e-3, 3e-3, 1e-2],
    "ia3": [3e-3, 1e-2, 3e-2],
    "prompt_tuning": [3e-3, 1e-2, 3e-2],
    "prefix_tuning": [3e-3, 1e-2, 3e-2],
    "p_tuning": [1e-3, 3e-3, 1e-2],
    "llama_adapter": [3e-3, 1e-2, 3e-2],
    "lora": [1e-3, 3e-3, 1e-2],
    "dora": [1e-3, 3e-3, 1e-2],
    "qlora": [1e-3, 3e-3, 1e-2],
    "adalora": [1e-3, 3e-3, 1e-2],
}
COLUMNS = [
    "method", "family", "seed", "status", "lr", "rouge1", "rouge2", "rougeL", "rougeLsum",
    "trainable_params", "total_params", "trainable_pct", "adapter_bytes", "train_memory_bytes",
    "sec_per_step", "train_seconds", "val_loss", "heldout_loss", "forgetting", "what_trains",
]  # fmt: skip


# ----------------------------------------------------------------------------- settings
def settings_from(args) -> dict:
    """Everything that changes a result (it goes into each run's key)."""
    return {
        "model": args.model,
        "task": args.task,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "max_len": args.max_len,
        "max_target_len": args.max_target_len,
        "n_train": args.n_train,
        "n_val": args.n_val,
        "n_test": args.n_test,
        "n_heldout": args.n_heldout,
        "max_new_tokens": args.max_new_tokens,
        "grid_size": args.grid_size,
    }


def run_key(settings: dict, **extra) -> str:
    blob = json.dumps({**settings, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Ledger:
    """Append-only JSONL of finished work: {"key", "kind", ...}. Reading it back is what makes a run resumable."""

    def __init__(self, path: Path):
        self.path = path
        self.reload()

    def reload(self) -> None:
        """Read the file again (another worker may have finished jobs since: workers can share one ledger)."""
        self.records: dict[str, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by an interruption
                        continue
                    self.records[rec["key"]] = rec

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, rec: dict) -> None:
        self.records[rec["key"]] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(rec, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())


# ----------------------------------------------------------------------------- measurements
@torch.no_grad()
def lm_loss(model, tokenizer, texts: list[str], max_len: int, batch_size: int = 8) -> float:
    """Mean next-token loss of `model` on plain `texts` (each cut to max_len tokens)."""
    total, n = 0.0, 0
    dev = next(model.parameters()).device
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=max_len
        ).to(dev)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
        k = int((labels[:, 1:] != -100).sum())
        total, n = total + loss.item() * k, n + k
    return total / max(n, 1)


@torch.no_grad()
def task_loss(model, tokenizer, examples: list[dict], max_len: int, max_target_len: int) -> float:
    """Mean loss on the target tokens of formatted task examples (what the val selection uses)."""
    from .data import Collator
    from .train import to_features

    feats = to_features(model, tokenizer, examples, max_len, max_target_len)
    collate, dev = Collator(tokenizer), next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, len(feats), 8):
        batch = {k: v.to(dev) for k, v in collate(feats[i : i + 8]).items()}
        k = int((batch["labels"][:, 1:] != -100).sum())
        total, n = total + model(**batch).loss.item() * k, n + k
    return total / max(n, 1)


def dir_bytes(path: str) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def adapter_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        return dir_bytes(d)


def train_memory(model, tokenizer, examples, args) -> int:
    """Bytes one training step holds (weights + grads + AdamW state + saved activations; CUDA: allocator peak)."""
    from .data import Collator
    from .memory import measure_step
    from .train import to_features

    feats = to_features(model, tokenizer, examples[: args.batch_size], args.max_len, args.max_target_len)
    dev = next(model.parameters()).device
    batch = {k: v.to(dev) for k, v in Collator(tokenizer)(feats).items()}
    rep = measure_step(model, batch)  # changes the weights: call it last
    return int(rep.cuda_peak if rep.cuda_peak else rep.total)


# ----------------------------------------------------------------------------- one method
def build(method: str, base_loader, args):
    """(peft_model, tokenizer) for `method` on a fresh copy of the base model."""
    from . import get_peft_model, make_config

    model, tok = base_loader()
    kw = dict(METHOD_SPECS[method][2])
    if method == "adalora":
        kw.update(total_step=args.steps, tinit=max(1, args.steps // 10), tfinal=max(1, args.steps // 5))
        if kw["tinit"] + kw["tfinal"] >= args.steps:
            kw.update(tinit=0, tfinal=0)
    return get_peft_model(model, make_config(method, **kw)), tok


def train_one(method: str, lr: float, seed: int, base_loader, data_, args):
    """Train `method` at `lr`/`seed`; returns (model, tokenizer, record with val loss and timings)."""
    from .train import train

    model, tok = build(method, base_loader, args)
    handle = None
    if method == "adalora":
        # AdaLoRA's budget step reads this step's gradients, so it must run after optimizer.step() and before
        # zero_grad; `train(on_step=...)` runs after zero_grad, hence a (temporary, global) optimizer post-hook.
        count = {"step": 0}

        def after_step(opt, *_):
            count["step"] += 1
            model.update_and_allocate(count["step"])

        from torch.optim.optimizer import register_optimizer_step_post_hook

        handle = register_optimizer_step_post_hook(after_step)
    t0 = time.time()
    try:
        hist = train(
            model,
            tok,
            data_["train"],
            steps=args.steps,
            lr=lr,
            batch_size=args.batch_size,
            max_len=args.max_len,
            max_target_len=args.max_target_len,
            seed=seed,
            progress=not args.quiet,
        )
    finally:
        if handle is not None:
            handle.remove()
    seconds = time.time() - t0
    secs = [b["seconds"] - a["seconds"] for a, b in zip(hist.records, hist.records[1:])] or [seconds]
    val = task_loss(model, tok, data_["val"], args.max_len, args.max_target_len)
    rec = {
        "lr": lr, "seed": seed, "val_loss": val, "train_seconds": seconds,
        "sec_per_step": statistics.median(secs), "final_train_loss": hist.losses[-1],
    }  # fmt: skip
    return model, tok, rec


def score(model, tok, data_, args, base_heldout: float | None) -> dict:
    from .train import evaluate_rouge

    rouge = evaluate_rouge(
        model, tok, data_["test"], max_new_tokens=args.max_new_tokens, max_input_len=args.max_len,
        batch_size=32, progress=not args.quiet,
    )  # fmt: skip
    held = lm_loss(model, tok, data_["heldout"], args.max_len)
    out = {k: float(rouge[k]) for k in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    out["heldout_loss"] = held
    out["forgetting"] = held - base_heldout if base_heldout is not None else 0.0
    return out


def run_method(method, seed, lrs, base_loader, data_, args, ledger, settings, base_heldout, log) -> dict:
    """The sweep (or the given lr) for `method`, then the test row of the best run."""
    family, what, _ = METHOD_SPECS[method]
    row = {"method": method, "family": family, "seed": seed, "what_trains": what}
    best, kept = None, None  # the best run's record, and its trained model when it is in memory
    for lr in lrs:
        key = run_key(settings, kind="train", method=method, lr=lr, seed=seed)
        rec, model = ledger.get(key), None
        if rec is not None:
            log(f"  skip {method} lr={lr:g} seed={seed}: done before (val loss {rec['val_loss']:.4f})")
        else:
            log(f"  {method} lr={lr:g} seed={seed}: training {args.steps} steps")
            model, tok, rec = train_one(method, lr, seed, base_loader, data_, args)
            rec = {"key": key, "kind": "train", "method": method, **rec}
            ledger.add(rec)
            log(
                f"  {method} lr={lr:g} seed={seed}: val loss {rec['val_loss']:.4f}, {rec['sec_per_step']:.3f} s/step"
            )
        val = rec["val_loss"] if math.isfinite(rec["val_loss"]) else math.inf
        if best is None or val < best["val_loss"]:
            best, kept = {**rec, "val_loss": val}, ((model, tok) if model is not None else None)
        del model
    if (
        kept is None
    ):  # the best run came from the ledger (an interrupted run): retrain it, seeded, same result
        log(f"  {method}: retraining the best run (lr={best['lr']:g}) for the test scores")
        model, tok, _ = train_one(method, best["lr"], seed, base_loader, data_, args)
    else:
        model, tok = kept
    row.update({k: best[k] for k in ("lr", "val_loss", "sec_per_step", "train_seconds")})
    row.update(score(model, tok, data_, args, base_heldout))
    trainable, total = model.get_nb_trainable_parameters()
    row.update(trainable_params=trainable, total_params=total, trainable_pct=100 * trainable / total)
    row["adapter_bytes"] = adapter_bytes(model)
    row["train_memory_bytes"] = train_memory(model, tok, data_["train"], args)
    row["status"] = "ok"
    return row


def run_base(base_loader, data_, args, base_heldout) -> dict:
    model, tok = base_loader()
    row = {"method": "base", "family": "none", "seed": 0, "what_trains": METHOD_SPECS["base"][1], "lr": ""}
    row["val_loss"] = task_loss(model, tok, data_["val"], args.max_len, args.max_target_len)
    row.update(score(model, tok, data_, args, base_heldout))
    total = sum(p.numel() for p in model.parameters())
    row.update(trainable_params=0, total_params=total, trainable_pct=0.0, adapter_bytes=0, status="ok")
    row.update(train_memory_bytes="", sec_per_step="", train_seconds=0.0)
    return row


# ----------------------------------------------------------------------------- for notebooks
def method_table(model_name: str = "tiny", steps: int = 100) -> list[dict]:
    """The comparison table, counted live: method, family, what trains, trainable parameters and % of all."""
    from . import METHODS, models

    args = argparse.Namespace(steps=steps)
    loader = lambda: models.load(model_name)  # noqa: E731
    rows = []
    for method, (family, what, _) in METHOD_SPECS.items():
        row = {"method": method, "family": family, "what trains": what}
        if method == "base":
            continue
        if method not in METHODS:
            rows.append({**row, "trainable": None, "trainable %": None, "note": "not implemented"})
            continue
        try:
            model, _ = build(method, loader, args)
        except Exception as e:  # noqa: BLE001 - e.g. BitFit on a bias-free model: show why
            rows.append({**row, "trainable": None, "trainable %": None, "note": str(e).splitlines()[0][:90]})
            continue
        trainable, total = model.get_nb_trainable_parameters()
        rows.append(
            {**row, "trainable": trainable, "trainable %": round(100 * trainable / total, 4), "note": ""}
        )
    return rows


def load_results(path) -> list[dict]:
    """Rows of a showdown.csv with numbers as floats (empty cells as None)."""
    rows = []
    for r in read_rows(Path(path)):
        rows.append(
            {k: (v if k in ("method", "family", "status", "what_trains") else _f(v)) for k, v in r.items()}
        )
    return rows


# ----------------------------------------------------------------------------- output
def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def summarize(rows: list[dict]) -> list[dict]:
    """One entry per method: means over seeds, with the seed spread (max - min) where there are several."""
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        ok = [r for r in rs if r["status"] == "ok"]
        s = {"method": method, "family": rs[0]["family"], "status": rs[0]["status"], "n_seeds": len(ok)}
        s["what_trains"] = rs[0].get("what_trains", "")
        for c in COLUMNS:
            if c in ("method", "family", "seed", "status", "what_trains"):
                continue
            vals = [v for v in (_f(r.get(c)) for r in ok) if v is not None]
            s[c] = statistics.mean(vals) if vals else None
            if c.startswith("rouge") and len(vals) > 1:
                s[c + "_spread"] = max(vals) - min(vals)
        out.append(s)
    return out


def _size(b) -> str:
    if b is None:
        return ""
    b = float(b)
    return f"{b / 1e6:.2f} MB" if b >= 1e5 else f"{b / 1e3:.1f} kB"


def markdown_table(rows: list[dict]) -> str:
    head = (
        "| method | family | lr | ROUGE-1 | ROUGE-2 | ROUGE-L | ROUGE-Lsum | trainable | trainable % | adapter file "
        "| train memory | s/step | val loss | forgetting |\n|" + "---|" * 14
    )
    lines = [head]
    for s in summarize(rows):
        if s["status"] != "ok":
            lines.append(f"| {s['method']} | {s['family']} | " + f"{s['status'][:90]} |" + " |" * 11)
            continue

        def r(c, s=s):
            v = f"{s[c]:.3f}"
            return v + (f" ± {s[c + '_spread'] / 2:.3f}" if s.get(c + "_spread") is not None else "")

        mem = _size(s["train_memory_bytes"]) if s["train_memory_bytes"] is not None else "-"
        sps = f"{s['sec_per_step']:.3f}" if s["sec_per_step"] is not None else "-"
        lr = f"{s['lr']:g}" if s["lr"] is not None else "-"
        lines.append(
            f"| {s['method']} | {s['family']} | {lr} | {r('rouge1')} | {r('rouge2')} | {r('rougeL')} | "
            f"{r('rougeLsum')} | {int(s['trainable_params']):,} | {s['trainable_pct']:.3f} | "
            f"{_size(s['adapter_bytes']) if s['adapter_bytes'] else '-'} | {mem} | {sps} | {s['val_loss']:.3f} | {s['forgetting']:+.3f} |"
        )
    return "\n".join(lines)


FAMILY_COLORS = {
    "baseline": "black",
    "selective": "tab:brown",
    "additive: adapter": "tab:orange",
    "additive: scaling": "tab:red",
    "additive: soft prompt": "tab:green",
    "reparameterization": "tab:blue",
    "hybrid": "tab:purple",
}


def family_color(family: str) -> str:
    return FAMILY_COLORS.get(family, "tab:gray")


def plot(rows: list[dict], path: Path, title: str = "") -> None:
    """ROUGE-1 and ROUGE-L vs trainable % (log x); the untrained base as a dashed line."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    summ = [s for s in summarize(rows) if s["status"] == "ok"]
    base = next((s for s in summ if s["method"] == "base"), None)
    pts = [s for s in summ if s["method"] != "base"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=False)
    for ax, metric, label in zip(axes, ("rouge1", "rougeL"), ("ROUGE-1", "ROUGE-L")):
        for s in pts:
            c = family_color(s["family"])
            err = s.get(metric + "_spread")
            ax.errorbar(
                s["trainable_pct"], s[metric], yerr=(err / 2 if err else None), fmt="o", color=c, capsize=3
            )
            ax.annotate(
                s["method"],
                (s["trainable_pct"], s[metric]),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=8,
            )
        if base:
            ax.axhline(base[metric], ls="--", color="gray")
            ax.annotate(
                "base (no training)",
                xy=(0.02, base[metric]),
                xycoords=("axes fraction", "data"),
                va="bottom",
                color="gray",
                fontsize=8,
            )
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters (% of the model, log scale)")
        ax.set_ylabel(f"{label} F on the test split")
        ax.grid(alpha=0.3, which="both")
        ax.set_title(label)
    shown = dict.fromkeys(s["family"] for s in pts)
    handles = [Line2D([], [], marker="o", ls="", color=family_color(f), label=f) for f in shown]
    axes[0].legend(handles=handles, fontsize=8, loc="best", title="family", title_fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(rows: list[dict], out: Path, settings: dict, meta: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "showdown.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c, "") for c in COLUMNS})
    table = markdown_table(rows)
    (out / "showdown.md").write_text(
        f"<!-- written by `python -m peftlab.showdown` -->\n{table}\n\nsettings: `{json.dumps(settings)}`\n\n"
        f"run: `{json.dumps(meta)}`\n"
    )
    plot(
        rows,
        out / "showdown.png",
        f"{settings['model']} on {settings['task']}: ROUGE vs trainable parameters",
    )


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny (default), smollm2-135m, or a hub id")
    ap.add_argument("--task", default="bbc-headlines")
    ap.add_argument(
        "--methods", default=",".join(METHOD_SPECS), help="comma-separated; 'base' is the untrained row"
    )
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--max-target-len", type=int, default=24)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--n-train", type=int, default=None, help="limit the train split (default: all)")
    ap.add_argument("--n-val", type=int, default=64)
    ap.add_argument("--n-test", type=int, default=None, help="limit the test split (default: all)")
    ap.add_argument("--n-heldout", type=int, default=32)
    ap.add_argument("--grid-size", type=int, default=2, help="learning rates tried per method (1..3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread-methods", default="lora,full", help="methods rerun with extra seeds")
    ap.add_argument("--extra-seeds", type=int, default=1, help="extra seeds for --spread-methods")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument("--fast", action="store_true", help="smoke run: lora + full, 2 steps, a few examples")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    if args.fast:
        args.methods = "base,lora,full" if args.methods == ",".join(METHOD_SPECS) else args.methods
        args.steps, args.batch_size, args.max_len, args.max_target_len = 2, 2, 48, 8
        args.max_new_tokens, args.n_train, args.n_val, args.n_test, args.n_heldout = 4, 8, 4, 4, 2
        args.grid_size = min(args.grid_size, 1)
        args.extra_seeds = min(args.extra_seeds, 1)
    return args


def load_data(args) -> dict:
    from . import data

    heldout_src = data.load("bbc-headlines", "val")[
        ::-1
    ]  # article bodies, from the end (val selection uses the start)
    return {
        "train": data.load(args.task, "train", limit=args.n_train),
        "val": data.load(args.task, "val", limit=args.n_val),
        "test": data.load(args.task, "test", limit=args.n_test),
        "heldout": [e["text"] for e in heldout_src[: args.n_heldout]],
    }


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from . import METHODS, models

    out = Path(args.out)
    settings = settings_from(args)
    ledger = Ledger(out / "showdown_runs.jsonl")
    t_start = time.time()

    def log(msg):
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    def base_loader():
        torch.manual_seed(args.seed)
        return models.load(args.model)

    data_ = load_data(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHOD_SPECS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {list(METHOD_SPECS)}")
    spread = {m.strip() for m in args.spread_methods.split(",") if m.strip()}
    jobs = [(m, args.seed) for m in methods]
    jobs += [(m, args.seed + k) for m in methods if m in spread for k in range(1, args.extra_seeds + 1)]

    rows, chosen_lr = [], {}
    hkey = run_key(settings, kind="base_heldout", seed=args.seed)
    if ledger.get(hkey) is None:
        m0, tok0 = base_loader()
        ledger.add(
            {"key": hkey, "kind": "base_heldout", "loss": lm_loss(m0, tok0, data_["heldout"], args.max_len)}
        )
        del m0
    base_heldout = ledger.get(hkey)["loss"]
    for method, seed in jobs:
        key = run_key(settings, kind="row", method=method, seed=seed)
        ledger.reload()
        rec = ledger.get(key)
        if rec is not None and (rec["row"]["status"] == "ok" or method not in METHODS):
            log(f"skip {method} seed={seed}: row done before")
            row = rec["row"]
        elif method != "base" and method not in METHODS:
            row = {
                "method": method,
                "family": METHOD_SPECS[method][0],
                "seed": seed,
                "status": "not implemented",
            }
        else:
            log(f"== {method} seed={seed}")
            try:
                if method == "base":
                    row = run_base(base_loader, data_, args, base_heldout)
                else:
                    grid = {1: LR_GRID[method][1:2], 2: LR_GRID[method][1:]}.get(
                        args.grid_size, LR_GRID[method]
                    )
                    lrs = [chosen_lr[method]] if method in chosen_lr else grid
                    row = run_method(
                        method, seed, lrs, base_loader, data_, args, ledger, settings, base_heldout, log
                    )
            except Exception as e:  # a method that cannot run here (e.g. BitFit on bias-free LLaMA): say so
                msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
                row = {
                    "method": method,
                    "family": METHOD_SPECS[method][0],
                    "seed": seed,
                    "status": f"error: {msg}",
                }
                log(f"  {method} failed: {msg}")
            ledger.add({"key": key, "kind": "row", "method": method, "row": row})
        if row.get("status") == "ok" and method != "base" and seed == args.seed:
            chosen_lr[method] = _f(row["lr"])
        rows.append(row)
        write_outputs(rows, out, settings, {"partial": True})
    meta = {
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    write_outputs(rows, out, settings, meta)
    log(f"done in {time.time() - t_start:.0f} s -> {out}/showdown.csv, showdown.md, showdown.png")
    return rows


if __name__ == "__main__":
    main()
