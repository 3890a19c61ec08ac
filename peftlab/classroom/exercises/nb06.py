"""Checks for notebooks/06_qlora_dora_adalora.ipynb (see docs/AUTHORING.md).

nb06.q1 (NF4 round trip of one block), nb06.q3 (DoRA's forward) and nb06.q4 (AdaLoRA's importance score) are built
by the student and compared with peftlab's own code on random shapes, dtypes and seeds; nb06.q2 (bits per weight)
is compared with the storage `Linear4bit` really uses.
"""

from __future__ import annotations

import torch
from torch import nn

from peftlab import AdaLoraConfig, LoraConfig
from peftlab.classroom.grading import attempted, exercise, rng
from peftlab.methods import nf4


# -- nb06.q1: one NF4 block, quantized and read back ------------------------------------------------------------------
def reference_codes(block: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(codes 0..15, absmax) of one block, unpacked from peftlab.methods.nf4.quantize_nf4."""
    state = nf4.quantize_nf4(block, blocksize=block.numel(), double_quant=False)
    packed = state["packed"]
    codes = torch.stack([packed >> 4, packed & 0xF], dim=1).flatten().long()  # (n,)
    return codes, float(state["absmax"][0])


def reference_dequantized(codes: torch.Tensor, absmax: float) -> torch.Tensor:
    """peftlab.methods.nf4.dequantize_nf4 of one block given its codes and absmax."""
    codes = codes.to(torch.uint8)
    state = {
        "packed": (codes[0::2] << 4) | codes[1::2],
        "absmax": torch.tensor([absmax], dtype=torch.float32),
    }
    return nf4.dequantize_nf4(state, (codes.numel(),), blocksize=codes.numel())  # (n,)


def _random_block(g, n: int, dtype: torch.dtype) -> torch.Tensor:
    block = torch.from_numpy(g.standard_normal(n) * g.uniform(0.001, 0.1)).to(dtype)  # (n,)
    if g.integers(2):  # make sure the largest |w| is negative in some blocks (max() is not absmax)
        i = int(block.abs().argmax())
        block[i] = -block[i].abs()
    return block


@exercise(
    "nb06.q1",
    points=3,
    hint="In float32: absmax = block.abs().max(); scaled = block / absmax; the code of a weight is the argmin over "
    "the 16 levels of |scaled - nf4.NF4|. Back: nf4.NF4[codes] * absmax.",
    needs=["nf4_quantize_block", "nf4_dequantize_block"],
)
def _(ns):
    quantize, dequantize = ns["nf4_quantize_block"], ns["nf4_dequantize_block"]
    g = rng(61)
    dtypes = [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.float32, torch.float32]
    for n, dtype in zip((64, 32, 128, 16, 256, 64), dtypes):
        block = _random_block(g, n, dtype)
        got = attempted(quantize(block.clone()))
        assert isinstance(got, tuple) and len(got) == 2, "nf4_quantize_block returns a pair: (codes, absmax)"
        codes, absmax = got
        want_codes, want_absmax = reference_codes(block)
        assert abs(float(absmax) - want_absmax) <= 1e-6 * want_absmax, (
            f"absmax is {float(absmax):.6g}, expected the largest |w| of the block: {want_absmax:.6g}"
        )
        codes = torch.as_tensor(codes).flatten()
        assert codes.numel() == n, f"expected {n} codes (one per weight), got {codes.numel()}"
        assert not codes.is_floating_point(), (
            "codes are integers (indices into nf4.NF4), not levels or weights"
        )
        codes = codes.long()
        assert codes.min() >= 0 and codes.max() <= 15, "codes are indices into nf4.NF4: integers 0..15"
        bad = codes != want_codes
        assert not bad.any(), (
            f"{int(bad.sum())} of {n} codes differ from peftlab.methods.nf4.quantize_nf4 ({dtype} block; e.g. weight "
            f"{float(block[bad][0]):.4g}: yours {codes[bad][0].item()}, expected {want_codes[bad][0].item()})"
        )
        # read back, from the package's own codes (so a quantize mistake is not counted twice)
        w_hat = attempted(dequantize(want_codes.clone(), want_absmax))
        w_hat = torch.as_tensor(w_hat)
        want = reference_dequantized(want_codes, want_absmax)  # (n,)
        assert w_hat.shape == want.shape, (
            f"nf4_dequantize_block: expected shape {tuple(want.shape)}, got {tuple(w_hat.shape)}"
        )
        diff = (w_hat.float() - want).abs().max().item()
        assert diff <= 1e-6 * want_absmax, (
            f"nf4_dequantize_block differs from peftlab.methods.nf4.dequantize_nf4 by up to {diff:.3g} "
            f"(the block's absmax is {want_absmax:.3g})"
        )


# -- nb06.q2: bits per weight, predicted before Linear4bit is measured ------------------------------------------------
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
    hint="Per weight: 4 bits of code, plus the block's constant shared by `blocksize` weights (32 bits, or 8 with "
    "double quantization), plus (double quantization only) one 32-bit scale per dq_blocksize constants.",
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
    cases += [(32, True, 64), (16, True, 64)]
    for blocksize, dq, dq_blocksize in cases:
        got = float(attempted(f(blocksize, dq, dq_blocksize)))
        want = measured_bits(blocksize, dq, dq_blocksize)
        assert abs(got - want) < 1e-6, (
            f"bits_per_param({blocksize}, {dq}, {dq_blocksize}) = {got:.6f}, but Linear4bit stores {want:.6f} "
            "bits per weight"
        )


# -- nb06.q3: DoRA's forward ------------------------------------------------------------------------------------------
def _dora_case(g, dtype: torch.dtype, square: bool = False):
    """A DoraLinear with a trained-looking adapter (B != 0, m moved), its inputs, and its output and gradients."""
    from peftlab.methods.dora import DoraLinear

    d, k = (int(v) for v in g.integers(3, 48, size=2))
    k = d if square else k  # a square W0: a norm over the wrong axis has the right shape, only wrong values
    r = int(g.integers(1, 6))
    base = nn.Linear(k, d, bias=bool(g.integers(2)))
    layer = DoraLinear(base)
    layer.add(
        "default",
        LoraConfig(r=r, lora_alpha=float(g.choice([1, 4, 8, 16, 32])), target_modules=["x"], use_dora=True),
    )
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_(0, 0.5)  # (d, r): zero at init, moved by "training"
        layer.lora_magnitude_vector["default"].mul_(torch.empty(d).uniform_(0.5, 1.5))  # (d,)
    layer = layer.to(dtype).eval()
    x = torch.randn(2, int(g.integers(1, 5)), k, dtype=dtype)  # (B, T, k)
    proj = torch.randn(2, x.shape[1], d, dtype=dtype)  # a random direction to take gradients along
    (layer(x) * proj).sum().backward()
    A, B = layer.lora_A["default"].weight, layer.lora_B["default"].weight  # (r, k), (d, r)
    m = layer.lora_magnitude_vector["default"]  # (d,)
    want = {"h": layer(x).detach(), "A": A.grad, "B": B.grad, "m": m.grad}
    inputs = {
        "x": x,
        "W0": base.weight.detach().clone(),
        "bias": None if base.bias is None else base.bias.detach().clone(),
        "A": A.detach().clone().requires_grad_(),
        "B": B.detach().clone().requires_grad_(),
        "m": m.detach().clone().requires_grad_(),
        "scaling": layer.scaling["default"],
    }
    return inputs, want, proj


@exercise(
    "nb06.q3",
    points=3,
    hint="V = W0 + scaling * B @ A (out, in); its norm per output row: torch.linalg.norm(V, dim=1), detached; "
    "W' = m[:, None] * V / norm[:, None]; h = x @ W'.T (+ bias).",
    needs=["dora_forward"],
)
def _(ns):
    f = ns["dora_forward"]
    g = rng(63)
    torch.manual_seed(int(g.integers(1 << 30)))
    for i, dtype in enumerate((torch.float32, torch.float64, torch.float32, torch.float64, torch.float32)):
        inputs, want, proj = _dora_case(g, dtype, square=i == 0)
        A, B, m = inputs["A"], inputs["B"], inputs["m"]
        shape = f"W0 {tuple(inputs['W0'].shape)}, r={A.shape[0]}, scaling={inputs['scaling']:g}, {dtype}"
        h = attempted(f(inputs["x"], inputs["W0"], inputs["bias"], A, B, m, inputs["scaling"]))
        assert isinstance(h, torch.Tensor), "dora_forward returns a tensor h of shape (..., out)"
        assert h.shape == want["h"].shape, (
            f"h has shape {tuple(h.shape)}, expected {tuple(want['h'].shape)} ({shape})"
        )
        tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-8, atol=1e-10)
        assert torch.allclose(h.to(dtype), want["h"], **tol), (
            f"h differs from peftlab.methods.dora.DoraLinear by up to {(h.to(dtype) - want['h']).abs().max():.3g} ({shape})"
        )
        assert h.requires_grad, "no gradient reaches A, B and m: build h from them with torch operations"
        (h * proj).sum().backward()
        for name, p in (("A", A), ("B", B), ("m", m)):
            assert p.grad is not None, f"no gradient reaches {name}"
            assert torch.allclose(p.grad, want[name], **tol), (
                f"the gradient of {name} differs from DoraLinear's by up to {(p.grad - want[name]).abs().max():.3g} "
                f"({shape}); is the row norm detached (a constant in backward, DoRA sec. 4.3)?"
            )


# -- nb06.q4: AdaLoRA's importance score ------------------------------------------------------------------------------
def reference_importance(weights, grads, beta1: float, beta2: float):
    """(I-bar, U-bar, score) of one parameter after len(weights) steps, from peftlab.methods.adalora's own controller."""
    from peftlab.methods.adalora import AdaLoraController, SVDLinear

    r, k = weights[0].shape
    holder = nn.Module()
    holder.layer = SVDLinear(nn.Linear(k, 1))
    config = AdaLoraConfig(
        init_r=r, target_r=1, total_step=10, beta1=beta1, beta2=beta2, target_modules=["x"]
    )
    holder.layer.add("default", config)
    holder = holder.to(weights[0].dtype)
    controller = AdaLoraController(config, "default", n_layers=1)
    p = holder.layer.lora_A["default"]  # (r, k), the parameter we score
    others = [q for q in holder.parameters() if q is not p]
    for w, grad in zip(weights, grads):
        with torch.no_grad():
            p.copy_(w)
        p.grad = grad.clone()
        for q in others:
            q.grad = torch.zeros_like(q)
        controller.update_importance(holder)
    name = "layer.lora_A.default"
    i_bar, u_bar = controller.exp_avg_ipt[name], controller.exp_avg_unc[name]
    return i_bar, u_bar, i_bar * u_bar


@exercise(
    "nb06.q4",
    points=3,
    hint="Start I_bar = U_bar = 0. Each step: I = |w * grad|; I_bar = b1 I_bar + (1 - b1) I; "
    "U_bar = b2 U_bar + (1 - b2) |I - I_bar| (with the I_bar just updated); at the end score = I_bar * U_bar.",
    needs=["adalora_importance"],
)
def _(ns):
    f = ns["adalora_importance"]
    g = rng(64)
    for dtype in (torch.float32, torch.float64, torch.float32, torch.float64):
        r, k, steps = int(g.integers(1, 6)), int(g.integers(1, 9)), int(g.integers(2, 7))
        b1, b2 = (float(v) for v in g.uniform(0.5, 0.95, size=2))
        weights = [torch.from_numpy(g.standard_normal((r, k))).to(dtype) for _ in range(steps)]
        grads = [torch.from_numpy(g.standard_normal((r, k)) * 0.1).to(dtype) for _ in range(steps)]
        want = reference_importance(weights, grads, b1, b2)
        got = attempted(f([w.clone() for w in weights], [x.clone() for x in grads], b1, b2))
        assert isinstance(got, (tuple, list)) and len(got) == 3, "return three tensors: (I_bar, U_bar, score)"
        case = f"({r}, {k}) parameter, {steps} steps, beta1={b1:.3f}, beta2={b2:.3f}"
        for label, mine, ref in zip(
            ("I_bar (smoothed sensitivity)", "U_bar (uncertainty)", "score"), got, want
        ):
            mine = torch.as_tensor(attempted(mine))
            assert mine.shape == ref.shape, f"{label}: shape {tuple(mine.shape)}, expected {tuple(ref.shape)}"
            assert torch.allclose(mine.to(ref.dtype), ref, rtol=1e-5, atol=1e-8), (
                f"{label} differs from peftlab.methods.adalora's update_importance by up to "
                f"{(mine.to(ref.dtype) - ref).abs().max():.3g} ({case})"
            )
