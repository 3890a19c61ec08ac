"""Benchmark 1: peftlab LoRA vs HF peft LoRA, same model, config, batch; train-step time and memory ratios.

    python benchmarks/lora_vs_peft.py --model tiny --repeats 20
    python benchmarks/lora_vs_peft.py --model smollm2-135m --repeats 8 --batch-size 4

Both wrappers get a deep copy of the same base model, LoRA r=8, alpha=16, dropout 0 on q_proj and v_proj, the same
batch and AdamW. Steps are interleaved (ours, peft, ours, peft, ...) so machine load affects both alike. Ratio =
peftlab / peft (target <= 1.00). Memory = `peftlab.memory.measure_step` for both (same counting rules; CUDA: peak).
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import interleaved, lm_batch, ratio_summary, save, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=128)
    args = ap.parse_args()

    import peft

    from peftlab import LoraConfig, get_peft_model, models
    from peftlab.memory import measure_step

    base, tok = models.load(args.model)
    targets = ["q_proj", "v_proj"]
    ours = get_peft_model(
        copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
    )
    theirs = peft.get_peft_model(
        copy.deepcopy(base), peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets)
    )
    batch = lm_batch(tok, args.batch_size, args.max_len)
    n_ours = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    n_theirs = sum(p.numel() for p in theirs.parameters() if p.requires_grad)
    assert n_ours == n_theirs, (n_ours, n_theirs)

    def stepper(model):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()

        def step():
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    times = interleaved({"peftlab": stepper(ours), "peft": stepper(theirs)}, args.repeats, warmup=2)
    mem = {k: measure_step(m, batch) for k, m in (("peftlab", ours), ("peft", theirs))}
    peak = {k: (r.cuda_peak or r.total) for k, r in mem.items()}
    save(
        f"lora_vs_peft_{args.model}",
        {
            "model": args.model,
            "batch": [args.batch_size, args.max_len],
            "trainable_params": n_ours,
            "step_seconds": {k: summary(v) for k, v in times.items()},
            "step_time_ratio": ratio_summary(times["peftlab"], times["peft"]),
            "memory_bytes": {k: r.as_dict(1) for k, r in mem.items()},
            "memory_ratio": peak["peftlab"] / peak["peft"],
        },
    )


if __name__ == "__main__":
    main()
