"""Benchmark 4: QLoRA frozen-base storage (bits per parameter) and NF4 dequantization throughput vs bitsandbytes.

    python benchmarks/nf4.py --model tiny --size 2048 --repeats 10

Storage: every Linear4bit of a QLoRA model (`quantize_modules="all-linear"`): bits in its buffers / its weights
(target <= 4.13). Throughput: dequantize one (size x size) NF4 weight (blocksize 64, double quantization) with
peftlab (`peftlab.nf4.dequantize_nf4`) and with `bitsandbytes.functional.dequantize_4bit` on the CPU, interleaved.
"""

from __future__ import annotations

import argparse

import torch
from _common import interleaved, save, summary


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()

    from peftlab import get_peft_model, make_config, models
    from peftlab.nf4 import Linear4bit, dequantize_nf4, quantize_nf4, storage_bits_per_param

    base, _ = models.load(args.model)
    model = get_peft_model(base, make_config("qlora", r=8, target_modules=["q_proj", "v_proj"]))
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    bits = sum(storage_bits_per_param(m) * m.quantized_numel for m in layers) / sum(
        m.quantized_numel for m in layers
    )

    torch.manual_seed(0)
    w = torch.randn(args.size, args.size) * 0.02
    shape = w.shape
    state = quantize_nf4(w, 64, True)
    fns = {"peftlab": lambda: dequantize_nf4(state, shape, 64)}
    result = {
        "model": args.model,
        "linear4bit_layers": len(layers),
        "bits_per_param": bits,
        "size": args.size,
    }
    try:
        import bitsandbytes.functional as bnbf

        qw, qs = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
        fns["bitsandbytes"] = lambda: bnbf.dequantize_4bit(qw, qs, quant_type="nf4")
        ours, theirs = fns["peftlab"](), fns["bitsandbytes"]().float()
        result["max_abs_diff_vs_bnb"] = (ours - theirs).abs().max().item()
        result["bnb_storage_bits_per_param"] = (
            qw.numel() * qw.element_size() * 8
            + sum(t.numel() * t.element_size() * 8 for t in (qs.absmax, qs.state2.absmax, qs.offset))
        ) / w.numel()
    except Exception as e:  # noqa: BLE001 - report, do not fail: bnb is optional
        result["bitsandbytes_error"] = str(e)[:200]
    t = interleaved(fns, args.repeats, warmup=2)
    result["seconds"] = {k: summary(v) for k, v in t.items()}
    result["Mparams_per_s"] = {k: w.numel() / summary(v)["median"] / 1e6 for k, v in t.items()}
    if "bitsandbytes" in t:
        result["peftlab_over_bnb_time"] = (
            summary(t["peftlab"])["median"] / summary(t["bitsandbytes"])["median"]
        )
    save(f"nf4_{args.model}", result)


if __name__ == "__main__":
    main()
