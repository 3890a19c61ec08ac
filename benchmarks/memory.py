"""Benchmark 3: training memory of full FT vs LoRA vs QLoRA, measured next to notebook 00's prediction.

    python benchmarks/memory.py --model smollm2-135m --batch-size 4 --max-len 128

Measured: `peftlab.memory.measure_step` (one AdamW step; on CPU the bytes of weights, grads, optimizer state and
saved activations; on CUDA also the allocator's peak). Predicted: `peftlab.memory.predict` = weights + gradients +
2 AdamW moments from the parameter counts alone (QLoRA: NF4 linears at 4.127 bits/param). Optionally
`--rss`: peak resident memory of a fresh subprocess per configuration (what the OS sees, includes the runtime).
`--device cuda`: the same on a GPU, where `measured_MB` also holds `cuda_peak` (torch.cuda.max_memory_allocated).

Targets (issue 13): a QLoRA step holds <= 0.75x LoRA's bytes, and QLoRA's activations are <= LoRA's + 5%
(`qlora_vs_lora` in the JSON).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys

import torch
from _common import ROOT, lm_batch, save

CONFIGS = {
    "full": ("full", {}),
    "lora": ("lora", {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}),
    "qlora": ("qlora", {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"]}),
}


def measure(model_name: str, which: str, batch_size: int, max_len: int, device: str = "cpu") -> dict:
    from peftlab import get_peft_model, make_config, models
    from peftlab.memory import MB, measure_step, predict

    gc.collect()  # the previous configuration's model is gone before this one's peak is measured
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    base, tok = models.load(model_name, device=device)
    method, kw = CONFIGS[which]
    model = get_peft_model(base, make_config(method, **kw))
    trainable, total = model.get_nb_trainable_parameters()
    quantized = sum(getattr(m, "quantized_numel", 0) for m in model.modules())
    pred = predict(total - quantized, trainable)
    pred.weights += int(quantized * 4.127 / 8)
    batch = {k: v.to(device) for k, v in lm_batch(tok, batch_size, max_len).items()}
    rep = measure_step(model, batch)
    return {
        "trainable": trainable,
        "total": total,
        "predicted_MB": pred.as_dict(MB),
        "measured_MB": rep.as_dict(MB),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--rss", action="store_true", help="also peak RSS of one subprocess per configuration")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        out = measure(args.model, args.child, args.batch_size, args.max_len, args.device)
        out["peak_rss_MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print("RESULT " + json.dumps(out))
        return
    res = {}
    for which in CONFIGS:
        if args.rss:
            cmd = [sys.executable, __file__, "--model", args.model, "--batch-size", str(args.batch_size)]
            cmd += ["--max-len", str(args.max_len), "--device", args.device, "--child", which]
            p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
            res[which] = json.loads(next(ln for ln in p.stdout.splitlines() if ln.startswith("RESULT "))[7:])
        else:
            res[which] = measure(args.model, which, args.batch_size, args.max_len, args.device)
        print(which, json.dumps(res[which]), flush=True)
    q, lo = res["qlora"]["measured_MB"], res["lora"]["measured_MB"]
    ratios = {
        "total_ratio": q["total"] / lo["total"],  # target <= 0.75
        "activations_ratio": q["activations"] / lo["activations"],  # target <= 1.05
    }
    if "cuda_peak" in q:
        ratios["cuda_peak_ratio"] = q["cuda_peak"] / lo["cuda_peak"]
    ratios["met"] = ratios["total_ratio"] <= 0.75 and ratios["activations_ratio"] <= 1.05
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    save(
        f"memory_{args.model}{suffix}",
        {
            "model": args.model,
            "device": args.device,
            "batch": [args.batch_size, args.max_len],
            "configs": res,
            "qlora_vs_lora": ratios,
        },
    )


if __name__ == "__main__":
    main()
