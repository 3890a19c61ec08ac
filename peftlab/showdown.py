"""The ROUGE showdown: every method vs full fine-tuning vs the untrained base, on one task, one budget.

    python -m peftlab.showdown --model smollm2-135m          # the real-model table (hours of CPU; resumable)
    python -m peftlab.showdown                               # class scale on `tiny`
    python -m peftlab.showdown --fast --out build/showdown-fast   # a smoke run (seconds)
    python -m peftlab.showdown --model smollm2-135m --methods lora,full --threads 2

Protocol (the same for every method; docs/RESULTS.md has the reading):
- same base model, task, data order, steps x batch_size examples, each cut to max_len tokens (`PRESETS`);
- learning rate per method from a documented grid (`LR_GRID`), chosen by the target-token loss on the *val* split
  after a short proxy run (`--proxy-steps`; the learning rate is constant and the data order fixed, so a proxy run
  is exactly the first steps of the full run); the chosen rate is then trained for the full budget and scored once
  on the *test* split;
- reference rows that train nothing: `base` (the untrained model, training prompt), `base_chat` (the instruct model
  asked in its chat template: prompt engineering), `lead_n` (the article's first N words, N chosen on val);
- reported per row: ROUGE-1/2/L/Lsum on every test article with 95% paired bootstrap intervals (1,000 resamples,
  fixed seed), the difference to full FT and to the base with intervals, gain recovered, trainable parameters,
  adapter file size, memory of one training step, seconds per step, val loss, forgetting (change of the LM loss on
  held-out BBC article bodies), and every test prediction (`predictions_<model>/<method>.jsonl`);
- extra seeds (`--spread-methods`, `--extra-seeds`) at the chosen learning rate measure run-to-run spread.

Resumable: every finished proxy run and every finished row goes into `<out>/showdown_runs_<model>.jsonl` under a
key made of all settings that change the result; rerunning the same command skips them. Several worker processes
may share one ledger: a row being run is claimed, and other live workers skip it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# method name -> (family, what trains, config kwargs for a LLaMA-style model). The order is the table's order.
# BitFit needs biases, which LLaMA lacks: its row records the error; layer freezing stands in for the selective family.
LLAMA_QV = ["q_proj", "v_proj"]
REFERENCE_ROWS: dict[str, tuple[str, str]] = {
    "base": ("reference", "nothing: the untrained model with the training prompt"),
    "base_chat": ("reference", "nothing: an instruction in the model's chat template (prompt engineering)"),
    "lead_n": ("reference", "nothing: the article's first N words (N chosen on val)"),
}
METHOD_SPECS: dict[str, tuple[str, str, dict]] = {
    "full": ("baseline", "every weight", {}),
    "bitfit": ("selective", "bias terms only", {}),
    "layer_freeze": ("selective", "the top transformer block only", {"num_trainable_layers": 1}),
    "houlsby": ("additive: adapter", "bottleneck adapters after attention and FFN (m = d/16)", {}),
    "pfeiffer": ("additive: adapter", "bottleneck adapter after the FFN only (m = d/16)", {}),
    "ia3": ("additive: scaling", "vectors rescaling keys, values, FFN activations", {}),
    "prompt_tuning": ("additive: soft prompt", "20 virtual input-token embeddings", {"num_virtual_tokens": 20}),
    "prefix_tuning": ("additive: soft prompt", "20 key/value prefixes in every layer", {"num_virtual_tokens": 20}),
    "p_tuning": ("additive: soft prompt", "MLP prompt encoder -> 20 virtual tokens", {"num_virtual_tokens": 20}),
    "llama_adapter": (
        "additive: soft prompt",
        "10 adaption prompts in the top 2 layers, zero-init gate",
        {"adapter_len": 10, "adapter_layers": 2},
    ),
    "lora": ("reparameterization", "B A (r=8) on q_proj, v_proj", {"r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV}),
    "dora": ("reparameterization", "LoRA r=8 on q, v + magnitude vector", {"r": 8, "lora_alpha": 16, "target_modules": LLAMA_QV}),
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
}  # fmt: skip
ALL_ROWS = [*REFERENCE_ROWS, *METHOD_SPECS]

# learning-rate grids (chosen by val loss). Full FT and layer freezing move whole weight matrices: small steps.
# Soft prompts and (IA)^3 vectors need large ones, and soft prompts are known to be lr-sensitive: 3 values each.
LR_GRID: dict[str, dict[str, list[float]]] = {
    "tiny": {  # the class-scale table (6.5M parameters, trained from scratch by us: it tolerates large steps)
        "full": [1e-4, 3e-4, 1e-3], "bitfit": [1e-3, 3e-3, 1e-2], "layer_freeze": [1e-4, 3e-4, 1e-3],
        "houlsby": [1e-3, 3e-3, 1e-2], "pfeiffer": [1e-3, 3e-3, 1e-2], "ia3": [3e-3, 1e-2, 3e-2],
        "prompt_tuning": [3e-3, 1e-2, 3e-2], "prefix_tuning": [3e-3, 1e-2, 3e-2], "p_tuning": [1e-3, 3e-3, 1e-2],
        "llama_adapter": [3e-3, 1e-2, 3e-2], "lora": [1e-3, 3e-3, 1e-2], "dora": [1e-3, 3e-3, 1e-2],
        "qlora": [1e-3, 3e-3, 1e-2], "adalora": [1e-3, 3e-3, 1e-2],
    },
    "default": {  # a pretrained, instruction-tuned model (SmolLM2-135M): an order of magnitude more careful
        "full": [2e-5, 5e-5, 1e-4], "bitfit": [3e-4, 1e-3, 3e-3], "layer_freeze": [5e-5, 1e-4, 3e-4],
        "houlsby": [3e-4, 1e-3, 3e-3], "pfeiffer": [3e-4, 1e-3, 3e-3], "ia3": [3e-3, 1e-2, 3e-2],
        "prompt_tuning": [3e-3, 1e-2, 3e-2], "prefix_tuning": [1e-3, 3e-3, 1e-2], "p_tuning": [1e-3, 3e-3, 1e-2],
        "llama_adapter": [3e-3, 1e-2, 3e-2], "lora": [3e-4, 1e-3, 3e-3], "dora": [3e-4, 1e-3, 3e-3],
        "qlora": [3e-4, 1e-3, 3e-3], "adalora": [3e-4, 1e-3, 3e-3],
    },
}  # fmt: skip

# the budget of each model tier (every method gets exactly this; flags override). smollm2-135m on 2 CPU cores:
# 13 trainable rows x (3 proxy runs x 15 steps + 60 steps) + 4 extra-seed runs x 60 steps ~ 1,600 steps at
# 5.8-8.3 s, plus ~100 s of greedy decoding per scored row: about 3.7 hours of machine time in all.
PRESETS: dict[str, dict] = {
    "tiny": dict(steps=40, proxy_steps=40, batch_size=8, max_len=96, max_target_len=24, max_new_tokens=16,
                 n_val=64, n_heldout=32, grid_size=2, extra_seeds=1),
    "default": dict(steps=60, proxy_steps=15, batch_size=8, max_len=128, max_target_len=24, max_new_tokens=20,
                    n_val=64, n_heldout=32, grid_size=3, extra_seeds=2),
}  # fmt: skip
SPREAD_METHODS = "lora,full"  # base_chat and lead_n decode greedily and train nothing: a seed changes nothing


def preset(model: str) -> dict:
    return PRESETS.get(model, PRESETS["default"])


def lr_grid(model: str, method: str, grid_size: int) -> list[float]:
    grid = LR_GRID.get(model, LR_GRID["default"])[method]
    return {1: grid[1:2], 2: grid[1:]}.get(grid_size, grid)


# ----------------------------------------------------------------------------- settings and the ledger
SETTING_KEYS = ("model", "task", "steps", "proxy_steps", "batch_size", "max_len", "max_target_len", "n_train",
                "n_val", "n_test", "n_heldout", "max_new_tokens", "grid_size")  # fmt: skip


def settings_from(args) -> dict:
    """Everything that changes a result (it goes into each run's key)."""
    return {k: getattr(args, k) for k in SETTING_KEYS}


def run_key(settings: dict, **extra) -> str:
    blob = json.dumps({**settings, **extra}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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

    def claim(self, key: str) -> bool:
        """Mark `key` as being worked on by this process; False if another live worker on this host has it."""
        self.reload()
        c = self.get("claim:" + key)
        mine = {"host": socket.gethostname(), "pid": os.getpid()}
        if c and c["host"] == mine["host"] and c["pid"] != mine["pid"] and _alive(c["pid"]):
            return False
        self.add({"key": "claim:" + key, "kind": "claim", **mine, "time": time.time()})
        return True


# ----------------------------------------------------------------------------- measurements
@torch.no_grad()
def lm_loss(model, tokenizer, texts: list[str], max_len: int, batch_size: int = 8) -> float:
    """Mean next-token loss of `model` on plain `texts` (each cut to max_len tokens)."""
    total, n = 0.0, 0
    dev = next(model.parameters()).device
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True, max_length=max_len
        ).to(dev)  # (B, T)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels).loss
        k = int((labels[:, 1:] != -100).sum())
        total, n = total + loss.item() * k, n + k
    return total / max(n, 1)


def task_loss(model, tokenizer, examples: list[dict], args) -> float:
    """Mean loss on the target tokens of formatted task examples (what the learning-rate choice uses)."""
    from .train import evaluate_loss

    configs = list(getattr(model, "peft_config", {}).values())
    saved = [(c, c.orth_reg_weight) for c in configs if hasattr(c, "orth_reg_weight")]
    for c, _ in saved:  # AdaLoRA adds its orthogonality penalty to every loss (as peft does): not task loss
        c.orth_reg_weight = 0.0
    try:
        return evaluate_loss(model, tokenizer, examples, max_len=args.max_len, batch_size=8)
    finally:
        for c, w in saved:
            c.orth_reg_weight = w


def adapter_bytes(model) -> int:
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        return sum(p.stat().st_size for p in Path(d).rglob("*") if p.is_file())


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


def predict(model, tok, prompts, args, input_len: int | None = None) -> list[str]:
    """Greedy headlines for the test split: at most max_new_tokens, first line kept."""
    from .train import generate

    return generate(
        model, tok, prompts, max_new_tokens=args.max_new_tokens, max_input_len=input_len or args.max_len,
        batch_size=32, first_line=True, progress=not args.quiet,
    )  # fmt: skip


def score(model, tok, data_, args, base_heldout: float | None, prompts=None, input_len=None) -> dict:
    """Predictions on every test article, their ROUGE, and forgetting."""
    from .scoring import per_example_rouge

    preds = predict(model, tok, prompts if prompts is not None else data_["test"], args, input_len)
    per = per_example_rouge(preds, [str(e["target"]) for e in data_["test"]])
    held = lm_loss(model, tok, data_["heldout"], args.max_len)
    out = {k: float(v.mean()) for k, v in per.items()}
    out.update(heldout_loss=held, forgetting=held - base_heldout if base_heldout is not None else 0.0)
    out["predictions"] = preds
    return out


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


def train_one(method: str, lr: float, seed: int, steps: int, base_loader, data_, args):
    """Train `method` at `lr`/`seed` for `steps`; returns (model, tokenizer, record with val loss and timings)."""
    from .train import train

    model, tok = build(method, base_loader, args)
    on_step = (lambda step, m: m.update_and_allocate(step)) if method == "adalora" else None
    t0 = time.time()
    hist = train(
        model, tok, data_["train"], steps=steps, lr=lr, batch_size=args.batch_size, max_len=args.max_len,
        max_target_len=args.max_target_len, seed=seed, progress=not args.quiet, on_step=on_step,
    )  # fmt: skip
    seconds = time.time() - t0
    secs = [b["seconds"] - a["seconds"] for a, b in zip(hist.records, hist.records[1:])] or [seconds]
    rec = {
        "lr": lr, "seed": seed, "steps": steps, "val_loss": task_loss(model, tok, data_["val"], args),
        "train_seconds": seconds, "sec_per_step": statistics.median(secs), "final_train_loss": hist.losses[-1],
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    return model, tok, rec


def choose_lr(method, seed, base_loader, data_, args, ledger, settings, log) -> tuple[float, list[dict]]:
    """Proxy runs over the grid (each recorded in the ledger), best val loss wins."""
    grid = lr_grid(args.model, method, args.grid_size)
    if len(grid) == 1:  # nothing to choose: no proxy run
        return grid[0], []
    runs = []
    for lr in grid:
        key = run_key(settings, kind="proxy", method=method, lr=lr, seed=seed)
        rec = ledger.get(key)
        if rec is None:
            log(f"  {method} lr={lr:g}: proxy run of {args.proxy_steps} steps")
            model, _, rec = train_one(method, lr, seed, args.proxy_steps, base_loader, data_, args)
            del model
            rec = {"key": key, "kind": "proxy", "method": method, **rec}
            ledger.add(rec)
        log(f"  {method} lr={lr:g}: val loss {rec['val_loss']:.4f} after {rec['steps']} steps")
        runs.append(rec)
    finite = [r for r in runs if math.isfinite(r["val_loss"])]
    if not finite:
        raise RuntimeError(f"every learning rate diverged (val loss not finite) for {method}")
    return min(finite, key=lambda r: r["val_loss"])["lr"], runs


def run_method(method, seed, lr, base_loader, data_, args, base_heldout, log) -> dict:
    """Train `method` for the full budget at `lr`, then score it on the test split and measure its costs."""
    family, what, _ = METHOD_SPECS[method]
    log(f"  {method} lr={lr:g} seed={seed}: training {args.steps} steps")
    model, tok, rec = train_one(method, lr, seed, args.steps, base_loader, data_, args)
    row = {"method": method, "family": family, "seed": seed, "what_trains": what}
    row.update({k: rec[k] for k in ("lr", "val_loss", "sec_per_step", "train_seconds", "threads")})
    row.update(score(model, tok, data_, args, base_heldout))
    trainable, total = model.get_nb_trainable_parameters()
    row.update(trainable=trainable, total_params=total, trainable_pct=100 * trainable / total)
    row["adapter_bytes"] = adapter_bytes(model)
    row["train_memory_bytes"] = train_memory(model, tok, data_["train"], args)
    row["status"] = "ok"
    return row


def run_reference(name, base_loader, data_, args, base_heldout) -> dict:
    """A row that trains nothing: the base model (training prompt or chat prompt), or lead-N."""
    from .data import HEADLINE_INSTRUCTION, build_chat_prompt
    from .scoring import choose_lead_n, lead_n, per_example_rouge

    row = {"method": name, "family": "reference", "seed": args.seed, "what_trains": REFERENCE_ROWS[name][1]}
    row.update(lr="", trainable=0, trainable_pct=0.0, adapter_bytes=0, train_memory_bytes="", sec_per_step="")
    row.update(train_seconds=0.0, status="ok", threads=torch.get_num_threads())
    if name == "lead_n":
        n, curve = choose_lead_n(data_["val_all"])
        preds = [lead_n(e["text"], n) for e in data_["test"]]
        per = per_example_rouge(preds, [str(e["target"]) for e in data_["test"]])
        row.update({k: float(v.mean()) for k, v in per.items()}, predictions=preds, lead_n=n)
        row["what_trains"] = f"nothing: the article's first {n} words (N chosen on all val articles)"
        row.update(val_loss="", heldout_loss="", forgetting="", total_params=0, lead_curve=curve)
        return row
    model, tok = base_loader()
    prompts, input_len = None, None
    if name == "base_chat":  # the same article tokens as the training prompt, inside the chat template
        plain = len(
            tok(data_["test"][0]["template"].replace("{text}", ""), add_special_tokens=False)["input_ids"]
        )
        prompts = [build_chat_prompt(e, tok, args.max_len - 1 - plain) for e in data_["test"]]
        longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts)
        input_len = max(args.max_len, longest)
        row["what_trains"] += f" (instruction: {HEADLINE_INSTRUCTION.strip()!r})"
    row["val_loss"] = task_loss(model, tok, data_["val"], args)  # of the training prompt, for both base rows
    row.update(score(model, tok, data_, args, base_heldout, prompts, input_len))
    row["total_params"] = sum(p.numel() for p in model.parameters())
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


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny", help="tiny (default), smollm2-135m, or a hub id")
    ap.add_argument("--task", default="bbc-headlines")
    ap.add_argument("--methods", default=",".join(ALL_ROWS), help="comma-separated rows (default: all)")
    for flag, kind in [("--steps", int), ("--proxy-steps", int), ("--batch-size", int), ("--max-len", int),
                       ("--max-target-len", int), ("--max-new-tokens", int), ("--n-val", int),
                       ("--n-heldout", int), ("--grid-size", int), ("--extra-seeds", int)]:  # fmt: skip
        ap.add_argument(flag, type=kind, default=None, help="default: the model's preset (PRESETS)")
    ap.add_argument("--n-train", type=int, default=None, help="limit the train split (default: all)")
    ap.add_argument("--n-test", type=int, default=None, help="limit the test split (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spread-methods", default=SPREAD_METHODS, help="rows rerun with extra seeds")
    ap.add_argument("--out", default="docs/results")
    ap.add_argument(
        "--fast", action="store_true", help="smoke run: base, lora, full; 2 steps, a few examples"
    )
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    for k, v in preset(args.model).items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.fast:
        args.methods = "base,lora,full" if args.methods == ",".join(ALL_ROWS) else args.methods
        args.steps, args.proxy_steps, args.batch_size, args.max_len, args.max_target_len = 2, 1, 2, 48, 8
        args.max_new_tokens, args.n_train, args.n_val, args.n_test, args.n_heldout = 4, 8, 4, 4, 2
        args.grid_size, args.extra_seeds = min(args.grid_size, 1), min(args.extra_seeds, 1)
    if not 1 <= args.grid_size <= 3:
        raise SystemExit(f"--grid-size must be 1, 2 or 3 (got {args.grid_size})")
    if args.proxy_steps < 1 or args.steps < 1:
        raise SystemExit(f"--steps and --proxy-steps must be >= 1 (got {args.steps}, {args.proxy_steps})")
    return args


def load_data(args) -> dict:
    from . import data

    heldout_src = data.load("bbc-headlines", "val")[::-1]  # article bodies, from the end (val uses the start)
    return {
        "train": data.load(args.task, "train", limit=args.n_train),
        "val": data.load(args.task, "val", limit=args.n_val),
        "val_all": data.load(args.task, "val"),
        "test": data.load(args.task, "test", limit=args.n_test),
        "heldout": [e["text"] for e in heldout_src[: args.n_heldout]],
    }


def every_row(ledger: Ledger, settings: dict, args) -> list[dict]:
    """Every finished row of these settings in the ledger, whichever worker ran it: the table is always whole."""
    ledger.reload()
    seeds = range(args.seed, args.seed + args.extra_seeds + 1)
    recs = (ledger.get(run_key(settings, kind="row", method=m, seed=s)) for m in ALL_ROWS for s in seeds)
    return [r["row"] for r in recs if r is not None]


def in_table_order(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: (ALL_ROWS.index(r["method"]), r["seed"]))


def jobs_of(methods: list[str], args) -> list[tuple[str, int]]:
    """(row, seed) in run order: references, then LoRA and full FT with their extra seeds, the rest, QLoRA last."""
    spread = {m.strip() for m in args.spread_methods.split(",") if m.strip()}
    first = [m for m in ("base", "base_chat", "lead_n", "lora", "full") if m in methods]
    extra = [(m, args.seed + k) for k in range(1, args.extra_seeds + 1) for m in first if m in spread]
    rest = [m for m in methods if m not in first]
    rest = [m for m in rest if m != "qlora"] + [m for m in rest if m == "qlora"]
    return [(m, args.seed) for m in first] + extra + [(m, args.seed) for m in rest]


def main(argv=None) -> list[dict]:
    from . import METHODS, models
    from .showdown_report import write_outputs

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out, settings = Path(args.out), settings_from(args)
    ledger = Ledger(out / f"showdown_runs_{args.model.replace('/', '_')}.jsonl")
    t_start = time.time()

    def log(msg):
        print(msg, file=sys.stderr if args.quiet else sys.stdout, flush=True)

    def base_loader():
        torch.manual_seed(args.seed)
        return models.load(args.model)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL_ROWS]
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; known: {', '.join(ALL_ROWS)}")
    data_ = load_data(args)

    hkey = run_key(settings, kind="base_heldout", seed=args.seed)
    if ledger.get(hkey) is None:
        m0, tok0 = base_loader()
        ledger.add(
            {"key": hkey, "kind": "base_heldout", "loss": lm_loss(m0, tok0, data_["heldout"], args.max_len)}
        )
        del m0
    base_heldout = ledger.get(hkey)["loss"]

    rows = []
    for method, seed in jobs_of(methods, args):
        key = run_key(settings, kind="row", method=method, seed=seed)
        ledger.reload()
        rec = ledger.get(key)
        if rec is not None:
            log(f"skip {method} seed={seed}: row done before ({rec['row']['status']})")
            rows.append(rec["row"])
            continue
        if not ledger.claim(key):
            log(f"skip {method} seed={seed}: another worker is running it")
            continue
        log(f"== {method} seed={seed}")
        try:
            if method in REFERENCE_ROWS:
                row = run_reference(method, base_loader, data_, argparse.Namespace(**{**vars(args), "seed": seed}),
                                    base_heldout)  # fmt: skip
            elif method not in METHODS:
                raise NotImplementedError(f"{method} is not registered in peftlab")
            else:
                lr, proxies = choose_lr(method, args.seed, base_loader, data_, args, ledger, settings, log)
                row = run_method(method, seed, lr, base_loader, data_, args, base_heldout, log)
                row["lr_grid"] = {f"{p['lr']:g}": p["val_loss"] for p in proxies}
        except Exception as e:  # a method that cannot run here (e.g. BitFit on bias-free LLaMA): say so
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            row = {"method": method, "family": (REFERENCE_ROWS.get(method) or METHOD_SPECS[method])[0],
                   "seed": seed, "status": f"error: {type(e).__name__}: {msg}"}  # fmt: skip
            log(f"  {method} failed: {msg}")
        ledger.add({"key": key, "kind": "row", "method": method, "row": row})
        rows.append(row)
        table = in_table_order(every_row(ledger, settings, args))  # also the rows of other workers
        write_outputs(table, data_["test"], out, args.model, settings, {"partial": True})
    meta = {
        "wall_seconds_this_invocation": round(time.time() - t_start, 1),
        "torch_threads": torch.get_num_threads(),
    }
    write_outputs(
        in_table_order(every_row(ledger, settings, args)), data_["test"], out, args.model, settings, meta
    )
    log(f"done in {time.time() - t_start:.0f} s -> {out}/showdown_{args.model}.csv, .md, .png")
    return rows


if __name__ == "__main__":
    main()
