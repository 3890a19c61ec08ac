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
        if "qlora_vs_lora" in r:
            q = r["qlora_vs_lora"]
            out += [
                "",
                f"QLoRA / LoRA: whole step {q['total_ratio']:.3f} (target <= 0.75), activations "
                f"{q['activations_ratio']:.3f} (target <= 1.05): **{'met' if q['met'] else 'not met'}**",
            ]
    out += ["", "#### 4. NF4: storage and dequantization throughput vs bitsandbytes (CPU)", ""]
    out += [
        "| model | threads | bits/param (QLoRA frozen base) | bnb bits/param | dequantize Mparam/s, median (best): "
        "peftlab / bnb | time peftlab / bnb: paired median (best) | quantize Mparam/s: peftlab / bnb | max abs diff "
        "vs bnb (double quant) | bit-exact without double quant | command |"
    ]
    out += ["|---|---|---|---|---|---|---|---|---|---|"]
    nan = float("nan")
    for m in ("tiny", "smollm2-135m"):
        r = load(f"nf4_{m}")
        if r is None:
            out.append(f"| {m} | not run | | | | | | | | |")
            continue
        mp, best = r["Mparams_per_s"], r.get("Mparams_per_s_best", {})
        paired = r.get("peftlab_over_bnb_time_paired", {}).get("median", r.get("peftlab_over_bnb_time", nan))
        out.append(
            f"| {m} | {r.get('threads', r['machine']['threads'])} | {r['bits_per_param']:.4f} | "
            f"{r.get('bnb_storage_bits_per_param', nan):.4f} | {mp['peftlab']:.0f} ({best.get('peftlab', nan):.0f}) / "
            f"{mp.get('bitsandbytes', nan):.0f} ({best.get('bitsandbytes', nan):.0f}) | "
            f"{paired:.2f}x ({r.get('peftlab_over_bnb_time_best', nan):.2f}x) | "
            f"{mp.get('peftlab_quantize', nan):.0f} / {mp.get('bitsandbytes_quantize', nan):.0f} | "
            f"{r.get('max_abs_diff_vs_bnb', nan):.1e} | {r.get('bit_exact_vs_bnb_without_double_quant', '-')} | "
            f"`{r['command']}` |"
        )
    out += ["", "#### 5. QLoRA vs LoRA train step (forward + backward + AdamW), same model and batch", ""]
    out += ["| model | device | batch | LoRA s/step | QLoRA s/step | time ratio QLoRA / LoRA (paired) | "]
    out[-1] += "memory ratio (counted bytes) | command |"
    out += ["|---|---|---|---|---|---|---|---|"]
    for name in ("qlora_vs_lora_smollm2-135m", "qlora_vs_lora_smollm2-135m_cuda"):
        r = load(name)
        if r is None:
            out.append(f"| {name.removeprefix('qlora_vs_lora_')} | not run | | | | | | |")
            continue
        s = r["step_seconds"]
        out.append(
            f"| {r['model']} | {r['device']} ({r['threads']} thread) | {r['batch'][0]}x{r['batch'][1]} | "
            f"{iqr(s['lora'])} | {iqr(s['qlora'])} | {iqr(r['step_time_ratio'])}, ratio of medians "
            f"{r['ratio_of_medians']:.3f} | {r['memory_ratio']:.3f} | `{r['command']}` |"
        )
    print("\n".join(out))


if __name__ == "__main__":
    main()
