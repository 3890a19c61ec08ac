"""Rendering a showdown: CSV, markdown table, plot and prediction files, with paired bootstrap intervals.

    write_outputs(rows, test_examples, out, model, settings, meta)
      -> out/showdown_<model>.csv          one row per method (the main seed), intervals, gain recovered
         out/showdown_<model>_seeds.csv    every seed of every row (the seed spread)
         out/showdown_<model>.md / .png    the table and the figure
         out/predictions_<model>/<method>.jsonl   {"id", "prediction", "reference", "seed"} per test article

Every number here is recomputed from the stored predictions, so the committed files can be checked without training:
`rescore(out, model)` must give back the CSV's ROUGE (tests/test_showdown.py does it).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
from pathlib import Path

import numpy as np

from .scoring import (
    ROUGE_KEYS,
    bootstrap_ci,
    bootstrap_indices,
    gain_recovered,
    paired_diff_ci,
    per_example_rouge,
)

N_RESAMPLES, BOOT_SEED = 1000, 0
COLUMNS = [
    "method", "family", "seed", "n_seeds", "status", "lr",
    "rouge1", "rouge1_lo", "rouge1_hi", "rouge2", "rouge2_lo", "rouge2_hi",
    "rougeL", "rougeL_lo", "rougeL_hi", "rougeLsum", "rougeLsum_lo", "rougeLsum_hi",
    "rouge1_vs_full", "rouge1_vs_full_lo", "rouge1_vs_full_hi",
    "rouge1_vs_base", "rouge1_vs_base_lo", "rouge1_vs_base_hi",
    "rouge1_seed_mean", "rouge1_seed_sd", "rouge1_seed_min", "rouge1_seed_max",
    "trainable", "total_params", "trainable_pct", "adapter_bytes", "train_memory_bytes", "sec_per_step",
    "train_seconds", "threads", "val_loss", "heldout_loss", "forgetting",
    "gain_recovered_rouge1", "gain_recovered_val_loss", "lr_grid", "what_trains",
]  # fmt: skip
SEED_COLUMNS = ["method", "seed", "lr", "rouge1", "rouge2", "rougeL", "rougeLsum", "val_loss", "sec_per_step"]
TEXT_COLUMNS = {"method", "family", "status", "what_trains", "lr_grid"}


def _f(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def main_rows(rows: list[dict]) -> list[dict]:
    """One row per method, the lowest seed (the one the table reports), in the order methods first appear."""
    best: dict[str, dict] = {}
    for r in rows:
        if r["method"] not in best or r["seed"] < best[r["method"]]["seed"]:
            best[r["method"]] = r
    return list(best.values())


def table(rows: list[dict], test: list[dict]) -> list[dict]:
    """The CSV rows: ROUGE with intervals, differences to full FT and base, seed spread, gain recovered."""
    refs = [str(e["target"]) for e in test]
    idx = bootstrap_indices(len(refs), N_RESAMPLES, BOOT_SEED)  # one matrix for every row: paired
    per = {
        r["method"]: per_example_rouge(r["predictions"], refs) for r in main_rows(rows) if r["status"] == "ok"
    }
    out = []
    for r in main_rows(rows):
        t = {c: r.get(c, "") for c in COLUMNS}
        seeds = [s for s in rows if s["method"] == r["method"] and s["status"] == "ok"]
        t["n_seeds"] = len(seeds)
        t["lr_grid"] = json.dumps(r["lr_grid"]) if r.get("lr_grid") else ""  # {lr: val loss of its proxy run}
        if r["status"] == "ok":
            p = per[r["method"]]
            for k in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
                t[k], t[k + "_lo"], t[k + "_hi"] = bootstrap_ci(p[k], idx)
            for other in ("full", "base"):
                if other in per and other != r["method"]:
                    d = paired_diff_ci(p["rouge1"], per[other]["rouge1"], idx)
                    t[f"rouge1_vs_{other}"], t[f"rouge1_vs_{other}_lo"], t[f"rouge1_vs_{other}_hi"] = d
            r1 = [float(s["rouge1"]) for s in seeds]
            t["rouge1_seed_mean"], t["rouge1_seed_min"], t["rouge1_seed_max"] = (
                statistics.mean(r1),
                min(r1),
                max(r1),
            )
            t["rouge1_seed_sd"] = statistics.stdev(r1) if len(r1) > 1 else ""
        out.append(t)
    by = {t["method"]: t for t in out if t["status"] == "ok"}
    if "base" in by and "full" in by:
        for t in out:
            if t["status"] == "ok":
                g = gain_recovered(t["rouge1"], by["base"]["rouge1"], by["full"]["rouge1"])
                t["gain_recovered_rouge1"] = "" if g is None else g
                v, vb, vf = _f(t["val_loss"]), _f(by["base"]["val_loss"]), _f(by["full"]["val_loss"])
                gv = gain_recovered(-v, -vb, -vf) if v is not None else None  # lower loss is better
                t["gain_recovered_val_loss"] = "" if gv is None else gv
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + f".tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: ("" if r.get(c) is None else r.get(c, "")) for c in columns})
    return buf.getvalue()


def _size(b) -> str:
    b = _f(b)
    if not b:
        return "-"
    return f"{b / 1e6:,.1f} MB" if b >= 1e5 else f"{b / 1e3:.1f} kB"


def markdown_table(t: list[dict]) -> str:
    """The table readers see: ROUGE-1 [95% CI], difference to full FT [CI], gain recovered, the costs."""
    head = (
        "| method | family | lr | ROUGE-1 [95% CI] | ROUGE-2 | ROUGE-L | vs full FT (R-1) [95% CI] | gain recovered "
        "(R-1 / val loss) | seeds (R-1 sd) | trainable | % | adapter file | train memory | s/step | val loss | "
        "forgetting |\n|" + "---|" * 16
    )
    lines = [head]
    for r in t:
        if r["status"] != "ok":
            lines.append(f"| {r['method']} | {r['family']} | | {r['status'][:120]} |" + " |" * 12)
            continue

        def num(c, fmt="{:.3f}", r=r):
            v = _f(r.get(c))
            return fmt.format(v) if v is not None else "-"

        ci = f"{num('rouge1')} [{num('rouge1_lo')}, {num('rouge1_hi')}]"
        vs = (
            f"{num('rouge1_vs_full', '{:+.3f}')} [{num('rouge1_vs_full_lo', '{:+.3f}')}, "
            f"{num('rouge1_vs_full_hi', '{:+.3f}')}]"
            if _f(r.get("rouge1_vs_full")) is not None
            else "-"
        )
        gain = f"{num('gain_recovered_rouge1', '{:.2f}')} / {num('gain_recovered_val_loss', '{:.2f}')}"
        seeds = f"{r['n_seeds']}" + (f" ({num('rouge1_seed_sd')})" if _f(r.get("rouge1_seed_sd")) else "")
        trainable = f"{int(_f(r['trainable']) or 0):,}"
        lines.append(
            f"| {r['method']} | {r['family']} | {num('lr', '{:g}')} | {ci} | {num('rouge2')} | {num('rougeL')} | "
            f"{vs} | {gain} | {seeds} | {trainable} | {num('trainable_pct', '{:.3g}')} | {_size(r['adapter_bytes'])} | "
            f"{_size(r['train_memory_bytes'])} | {num('sec_per_step', '{:.2f}')} | {num('val_loss')} | "
            f"{num('forgetting', '{:+.3f}')} |"
        )
    return "\n".join(lines)


FAMILY_COLORS = {
    "reference": "gray",
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


def plot(t: list[dict], path: Path, title: str = "") -> None:
    """Left: ROUGE-1 of every row with its 95% interval. Right: ROUGE-1 vs trainable % (log x)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    ok = [r for r in t if r["status"] == "ok"]
    by = {r["method"]: r for r in ok}
    fig, (a1, a2) = plt.subplots(
        1, 2, figsize=(14, 0.9 + 0.38 * max(len(ok), 4)), gridspec_kw={"width_ratios": [1.1, 1]}
    )
    ys = np.arange(len(ok))[::-1]
    for y, r in zip(ys, ok):
        c = family_color(r["family"])
        a1.errorbar(r["rouge1"], y, xerr=[[r["rouge1"] - r["rouge1_lo"]], [r["rouge1_hi"] - r["rouge1"]]],
                    fmt="o", color=c, capsize=3)  # fmt: skip
    a1.set_yticks(ys, [r["method"] for r in ok])
    for name, style in (("base", ":"), ("full", "--")):
        if name in by:
            a1.axvline(by[name]["rouge1"], ls=style, color="gray", lw=1)
            a2.axhline(by[name]["rouge1"], ls=style, color="gray", lw=1)
            a2.annotate(name, xy=(0.01, by[name]["rouge1"]), xycoords=("axes fraction", "data"), va="bottom",
                        fontsize=8, color="gray")  # fmt: skip
    a1.set_xlabel("ROUGE-1 F on the test split, with 95% bootstrap interval")
    a1.grid(alpha=0.3, axis="x")
    for r in ok:
        if _f(r.get("trainable_pct")):
            err = [[r["rouge1"] - r["rouge1_lo"]], [r["rouge1_hi"] - r["rouge1"]]]
            a2.errorbar(
                r["trainable_pct"], r["rouge1"], yerr=err, fmt="o", color=family_color(r["family"]), capsize=3
            )
            a2.annotate(r["method"], (r["trainable_pct"], r["rouge1"]), textcoords="offset points", xytext=(5, 3),
                        fontsize=8)  # fmt: skip
    a2.set_xscale("log")
    a2.set_xlabel("trainable parameters (% of the model, log scale)")
    a2.set_ylabel("ROUGE-1")
    a2.grid(alpha=0.3, which="both")
    from matplotlib.lines import Line2D

    shown = dict.fromkeys(r["family"] for r in ok)
    handles = [Line2D([], [], marker="o", ls="", color=family_color(f), label=f) for f in shown]
    fig.legend(
        handles=handles, loc="lower center", ncol=len(shown), fontsize=8, frameon=False
    )  # under the plots
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    tmp = path.with_suffix(f".tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def write_outputs(
    rows: list[dict], test: list[dict], out: Path, model: str, settings: dict, meta: dict
) -> list[dict]:
    """Write every file of a showdown (each atomically: a failed write leaves the old file)."""
    out.mkdir(parents=True, exist_ok=True)
    stem = f"showdown_{model.replace('/', '_')}"
    t = table(rows, test)
    _write_atomic(out / f"{stem}.csv", _csv_text(t, COLUMNS))
    first = {m: i for i, m in reversed(list(enumerate(r["method"] for r in rows)))}
    seeds = sorted(rows, key=lambda r: (first[r["method"]], r["seed"]))
    _write_atomic(out / f"{stem}_seeds.csv", _csv_text(seeds, SEED_COLUMNS))
    note = (
        f"ROUGE on all {len(test)} test articles; [95% CI]: paired bootstrap, {N_RESAMPLES} resamples of the test "
        f"articles (seed {BOOT_SEED}); 'vs full FT' is the paired difference to full fine-tuning; gain recovered = "
        "(method - base) / (full - base); the row reports the lowest seed, 'seeds' counts runs (sd of their ROUGE-1)."
    )
    _write_atomic(
        out / f"{stem}.md",
        f"<!-- written by `python -m peftlab.showdown --model {model}` -->\n{markdown_table(t)}\n\n{note}\n\n"
        f"settings: `{json.dumps(settings)}`\n\nrun: `{json.dumps(meta)}`\n",
    )
    pred_dir = out / f"predictions_{model.replace('/', '_')}"
    pred_dir.mkdir(exist_ok=True)
    for r in main_rows(rows):
        if r["status"] == "ok":
            lines = [
                json.dumps({"id": e["id"], "prediction": p, "reference": str(e["target"]), "seed": r["seed"]})
                for e, p in zip(test, r["predictions"])
            ]
            _write_atomic(pred_dir / f"{r['method']}.jsonl", "\n".join(lines) + "\n")
    plot(
        t,
        out / f"{stem}.png",
        f"{model} on {settings.get('task', 'bbc-headlines')}: every method vs full FT vs base",
    )
    return t


# ----------------------------------------------------------------------------- reading it back
def load_results(path) -> list[dict]:
    """Rows of a showdown CSV with numbers as floats (empty cells as None)."""
    with open(path, newline="") as f:
        return [{k: (v if k in TEXT_COLUMNS else _f(v)) for k, v in r.items()} for r in csv.DictReader(f)]


def load_predictions(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rescore(out, model: str) -> dict[str, dict[str, float]]:
    """{method: {"rouge1", ...}} recomputed from the committed prediction files alone."""
    pred_dir = Path(out) / f"predictions_{model.replace('/', '_')}"
    scores = {}
    for f in sorted(pred_dir.glob("*.jsonl")):
        recs = load_predictions(f)
        per = per_example_rouge([r["prediction"] for r in recs], [r["reference"] for r in recs])
        scores[f.stem] = {k: float(per[k].mean()) for k in ROUGE_KEYS}
    return scores


# ----------------------------------------------------------------------------- docs/RESULTS.md
def update_results_md(results_md, out="docs/results", model: str = "smollm2-135m") -> None:
    """Copy the committed table into docs/RESULTS.md between `<!-- table-<model>:start/end -->` markers."""
    path, stem = Path(results_md), f"showdown_{model.replace('/', '_')}"
    md = (Path(out) / f"{stem}.md").read_text().split("\n", 1)[1]  # drop the "written by" comment line
    start, end = f"<!-- table-{model}:start -->", f"<!-- table-{model}:end -->"
    text = path.read_text()
    if start not in text or end not in text:
        raise ValueError(f"{path} has no {start} ... {end} markers to fill")
    before, rest = text.split(start, 1)
    _write_atomic(path, before + start + "\n" + md.strip() + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(
        description="refresh the showdown table in docs/RESULTS.md from docs/results/"
    )
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--results", default="docs/RESULTS.md")
    ap.add_argument("--out", default="docs/results")
    a = ap.parse_args()
    update_results_md(a.results, a.out, a.model)
