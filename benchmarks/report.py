"""Render docs/results/bench_*.json as the markdown tables of docs/RESULTS.md (prints to stdout).

python benchmarks/report.py > build/bench_tables.md
"""

from __future__ import annotations

import json

from _common import RESULTS


def load(name):
    p = RESULTS / f"bench_{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def iqr(s, f="{:.3f}"):
    return f"{f.format(s['median'])} (IQR {f.format(s['q1'])}-{f.format(s['q3'])}, n={s['n']})"


def main():
    out = ["#### 1. peftlab LoRA vs HF peft LoRA (train step: forward + backward + AdamW)", ""]
    out += ["| model | batch | peftlab s/step | peft s/step | time ratio (paired) | memory ratio | command |"]
    out += ["|---|---|---|---|---|---|---|"]
    for m in ("tiny", "smollm2-135m"):
        r = load(f"lora_vs_peft_{m}")
        if r is None:
            out.append(f"| {m} | not run | | | | | |")
            continue
        s = r["step_seconds"]
        out.append(
            f"| {m} | {r['batch'][0]}x{r['batch'][1]} | {iqr(s['peftlab'])} | {iqr(s['peft'])} | "
            f"{iqr(r['step_time_ratio'])} | {r['memory_ratio']:.4f} | `{r['command']}` |"
        )
    out += [
        "",
        "#### 2. Inference latency: merged LoRA vs base, unmerged LoRA overhead (forward, no grad)",
        "",
    ]
    out += [
        "| model | batch | base s | merged / base | unmerged / base | max logit diff merged vs unmerged | command |"
    ]
    out += ["|---|---|---|---|---|---|---|"]
    for m in ("tiny", "smollm2-135m"):
        r = load(f"inference_{m}")
        if r is None:
            out.append(f"| {m} | not run | | | | | |")
            continue
        out.append(
            f"| {m} | {r['batch'][0]}x{r['batch'][1]} | {r['seconds']['base']['median']:.4f} | "
            f"{iqr(r['merged_over_base'])} | {iqr(r['unmerged_over_base'])} | "
            f"{r['max_abs_logit_diff_merged_vs_unmerged']:.2e} | `{r['command']}` |"
        )
    out += ["", "#### 3. Training memory on smollm2-135m: measured vs predicted (MB)", ""]
    r = load("memory_smollm2-135m")
    if r is None:
        out.append("not run")
    else:
        out += [f"command: `{r['command']}`, batch {r['batch'][0]} x {r['batch'][1]} tokens", ""]
        out += ["| config | trainable | part | predicted | measured |", "|---|---|---|---|---|"]
        for k, c in r["configs"].items():
            for part in ("weights", "gradients", "optimizer", "activations", "total"):
                pred = c["predicted_MB"].get(part)
                pred_s = "-" if part == "activations" else f"{pred:.1f}"
                if part == "total":
                    pred_s += " (+ activations)"
                out.append(f"| {k} | {c['trainable']:,} | {part} | {pred_s} | {c['measured_MB'][part]:.1f} |")
            if "peak_rss_MB" in c:
                out.append(f"| {k} | | peak RSS of the process | | {c['peak_rss_MB']:.0f} |")
    out += ["", "#### 4. NF4: storage and dequantization throughput vs bitsandbytes (CPU)", ""]
    out += [
        "| model | bits/param (QLoRA frozen base) | bnb bits/param | peftlab Mparam/s | bnb Mparam/s | max abs diff vs bnb | command |"
    ]
    out += ["|---|---|---|---|---|---|---|"]
    for m in ("tiny", "smollm2-135m"):
        r = load(f"nf4_{m}")
        if r is None:
            out.append(f"| {m} | not run | | | | | |")
            continue
        mp = r["Mparams_per_s"]
        out.append(
            f"| {m} | {r['bits_per_param']:.4f} | {r.get('bnb_storage_bits_per_param', float('nan')):.4f} | "
            f"{mp['peftlab']:.0f} | {mp.get('bitsandbytes', float('nan')):.0f} | "
            f"{r.get('max_abs_diff_vs_bnb', float('nan')):.4f} | `{r['command']}` |"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
