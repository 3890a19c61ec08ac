"""Benchmark 2: inference latency of merged LoRA vs the base model, and the overhead of unmerged LoRA.

    python benchmarks/inference.py --model tiny --repeats 30

A forward pass (no grad) on one batch. Contenders, interleaved: the base model; LoRA r=8 on q_proj, v_proj
unmerged (x W^T + s x A^T B^T); the same adapter merged (`merge_and_unload`: W + s B A, a plain model again).
B is set to random values so the merged weights really differ. Targets: merged/base = 1.00 +- 0.03,
unmerged/base <= 1.10.
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import interleaved, lm_batch, ratio_summary, save, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--targets", default="q_proj,v_proj")
    args = ap.parse_args()

    from peftlab import LoraConfig, get_peft_model, models

    base, tok = models.load(args.model)
    cfg = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=args.targets.split(","))
    lora = get_peft_model(copy.deepcopy(base), cfg)
    torch.manual_seed(0)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    merged = get_peft_model(copy.deepcopy(base), cfg)
    merged.load_state_dict(lora.state_dict())
    merged = merged.merge_and_unload()
    batch = {k: v for k, v in lm_batch(tok, args.batch_size, args.max_len).items() if k != "labels"}
    for m in (base, lora, merged):
        m.eval()
    with torch.no_grad():
        diff = (lora(**batch).logits - merged(**batch).logits).abs().max().item()

    def fwd(m):
        return lambda: m(**batch)

    with torch.no_grad():
        t = interleaved(
            {"base": fwd(base), "lora_unmerged": fwd(lora), "lora_merged": fwd(merged)}, args.repeats, 3
        )
    save(
        f"inference_{args.model}",
        {
            "model": args.model,
            "batch": [args.batch_size, args.max_len],
            "targets": args.targets,
            "max_abs_logit_diff_merged_vs_unmerged": diff,
            "seconds": {k: summary(v) for k, v in t.items()},
            "merged_over_base": ratio_summary(t["lora_merged"], t["base"]),
            "unmerged_over_base": ratio_summary(t["lora_unmerged"], t["base"]),
        },
    )


if __name__ == "__main__":
    main()
