"""Benchmark 5: QLoRA vs LoRA train step (forward + backward + AdamW): time ratio and memory ratio, one process.

    python benchmarks/qlora_vs_lora.py --model smollm2-135m --repeats 5 --batch-size 4 --threads 1
    python benchmarks/qlora_vs_lora.py --model smollm2-135m --repeats 10 --batch-size 4 --device cuda

Both get a deep copy of the same base model, r=8, alpha=16 on q_proj and v_proj, the same batch and AdamW; QLoRA
also stores every other linear in NF4 (`quantize_modules="all-linear"`). Steps are interleaved (lora, qlora, lora,
...) so machine load hits both alike; ratio = QLoRA / LoRA per repeat. QLoRA dequantizes each 4-bit weight twice a
step (forward and backward, `peftlab.methods.nf4.MatMul4bit`): that is its price in time. Memory ratio = the bytes
`measure_step` counts (both models share this process, so CUDA allocator peaks come from benchmarks/memory.py).
"""

from __future__ import annotations

import argparse
import copy

import torch
from _common import interleaved, lm_batch, ratio_summary, save, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from peftlab import get_peft_model, make_config, models
    from peftlab.memory import measure_step

    base, tok = models.load(args.model, device=args.device)
    kw = dict(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"])
    contenders = {m: get_peft_model(copy.deepcopy(base), make_config(m, **kw)) for m in ("lora", "qlora")}
    batch = {k: v.to(args.device) for k, v in lm_batch(tok, args.batch_size, args.max_len).items()}

    def stepper(model):
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        model.train()

        def step():
            model(**batch).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    times = interleaved({k: stepper(m) for k, m in contenders.items()}, args.repeats, warmup=1)
    mem = {k: measure_step(m, batch) for k, m in contenders.items()}
    med = {k: summary(v)["median"] for k, v in times.items()}
    suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
    save(
        f"qlora_vs_lora_{args.model}{suffix}",
        {
            "model": args.model,
            "device": args.device,
            "batch": [args.batch_size, args.max_len],
            "threads": args.threads,
            "step_seconds": {k: summary(v) for k, v in times.items()},
            "step_time_ratio": ratio_summary(times["qlora"], times["lora"]),  # paired, per repeat
            "ratio_of_medians": med["qlora"] / med["lora"],
            "memory_bytes": {k: r.as_dict(1) for k, r in mem.items()},
            "memory_ratio": mem["qlora"].total / mem["lora"].total,
        },
    )


if __name__ == "__main__":
    main()
