"""Checks for notebooks/06_qlora_dora_adalora.ipynb (see docs/AUTHORING.md)."""

from __future__ import annotations

import torch
from torch import nn

from peftlab import LoraConfig, nf4
from peftlab.grading import attempted, exercise, rng


def reference_codes(block: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(codes 0..15, absmax) of one block, unpacked from peftlab.nf4.quantize_nf4."""
    state = nf4.quantize_nf4(block, blocksize=block.numel(), double_quant=False)
    packed = state["packed"]
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).flatten().long()  # (n,)
    return codes, float(state["absmax"][0])


@exercise(
    "nb06.q1",
    points=3,
    hint="absmax = block.abs().max(); then for each w / absmax, the index of the nearest value in nf4.NF4 "
    "(argmin of the absolute difference).",
    needs=["nf4_quantize_block"],
)
def _(ns):
    f = ns["nf4_quantize_block"]
    g = rng(61)
    for n in (64, 64, 32, 128):
        block = torch.from_numpy(g.standard_normal(n) * g.uniform(0.001, 0.1)).float()  # (n,)
        got = attempted(f(block.clone()))
        assert isinstance(got, tuple) and len(got) == 2, "return a pair: (codes, absmax)"
        codes, absmax = got
        want_codes, want_absmax = reference_codes(block)
        assert abs(float(absmax) - want_absmax) <= 1e-6 * max(1.0, want_absmax), (
            f"absmax is {float(absmax):.6g}, expected the largest |w| of the block: {want_absmax:.6g}"
        )
        codes = torch.as_tensor(codes).long().flatten()
        assert codes.shape == want_codes.shape, f"expected {n} codes (one per weight), got {codes.numel()}"
        assert codes.min() >= 0 and codes.max() <= 15, "codes are indices into nf4.NF4: integers 0..15"
        wrong = (codes != want_codes).sum().item()
        assert wrong == 0, (
            f"{wrong} of {n} codes differ from peftlab.nf4.quantize_nf4 (e.g. weight {block[codes != want_codes][0]:.4g}: "
            f"yours {codes[codes != want_codes][0].item()}, expected {want_codes[codes != want_codes][0].item()})"
        )


def measured_bits(blocksize: int, double_quant: bool, dq_blocksize: int) -> float:
    """Bits per weight of a Linear4bit as the weight grows without bound: b(N) = a + c/N, so a = 2 b(2N) - b(N)."""

    def bits(rows: int) -> float:
        layer = nn.Linear(blocksize, rows, bias=False)  # rows blocks of `blocksize` weights
        q = nf4.Linear4bit(layer, blocksize=blocksize, double_quant=double_quant, dq_blocksize=dq_blocksize)
        return nf4.storage_bits_per_param(q)

    rows = 4 * dq_blocksize  # whole blocks of constants, so only the per-layer mean is a 1/N term
    return 2 * bits(2 * rows) - bits(rows)


@exercise(
    "nb06.q2",
    points=2,
    hint="4 bits per code, plus per weight: 32 / blocksize without double quantization; with it, "
    "8 / blocksize + 32 / (blocksize * dq_blocksize).",
    needs=["bits_per_param"],
)
def _(ns):
    f = ns["bits_per_param"]
    g = rng(62)
    cases = [(64, True, 256), (64, False, 256)]
    cases += [
        (int(g.choice([16, 32, 128, 256])), bool(g.integers(2)), int(g.choice([64, 128, 256])))
        for _ in range(4)
    ]
    cases += [(32, True, 64)]
    for blocksize, dq, dq_blocksize in cases:
        got = float(attempted(f(blocksize, dq, dq_blocksize)))
        want = measured_bits(blocksize, dq, dq_blocksize)
        assert abs(got - want) < 1e-6, (
            f"bits_per_param({blocksize}, {dq}, {dq_blocksize}) = {got:.6f}, but Linear4bit stores {want:.6f} "
            "bits per weight"
        )


@exercise(
    "nb06.q3",
    points=2,
    hint="One number per output row of W (shape (out, in)): the length (L2 norm) of that row.",
    needs=["dora_magnitude"],
)
def _(ns):
    from peftlab.dora import DoraLinear

    f = ns["dora_magnitude"]
    g = rng(63)
    torch.manual_seed(int(g.integers(1 << 30)))
    for _ in range(4):
        d, k = (int(x) for x in g.integers(2, 64, size=2))
        base = nn.Linear(k, d)
        layer = DoraLinear(base)
        layer.add("default", LoraConfig(r=2, target_modules=["x"], use_dora=True))
        want = layer.lora_magnitude_vector["default"].detach()  # (d,)
        got = attempted(f(base.weight.detach().clone()))
        got = torch.as_tensor(got)
        assert got.shape == want.shape, (
            f"for W of shape ({d}, {k}) expected shape ({d},), got {tuple(got.shape)}"
        )
        assert torch.allclose(got.float(), want, atol=1e-5), (
            f"differs from DoraLinear's lora_magnitude_vector (W {d}x{k}); max abs diff {(got - want).abs().max():.3g}"
        )
