r"""NF4: 4-bit NormalFloat quantization with double quantization (Dettmers et al. 2023, QLoRA, arXiv:2305.14314).

Pretrained weights are close to normally distributed, so NF4 puts its 16 levels at quantiles of $N(0, 1)$: every
level is equally likely. With $\delta = \tfrac12\big((1 - \tfrac{1}{2 \cdot 15}) + (1 - \tfrac{1}{2 \cdot 16})\big)
= 0.9677083$ (the outermost quantile used) and $\Phi^{-1}$ the normal quantile function,

$$ q^+_i = \Phi^{-1}\Big(\delta - \tfrac{i}{8}(\delta - \tfrac12)\Big),\ i = 0..7, \qquad
   q^-_j = -\Phi^{-1}\Big(\delta - \tfrac{j}{7}(\delta - \tfrac12)\Big),\ j = 0..6, $$

plus an exact 0: 8 positive, 7 negative, 16 levels, divided by $\max q$ so they lie in $[-1, 1]$ (asymmetric so that 0 is
representable). A weight is cut into blocks of 64; each block stores its absmax $c$ and, per entry, the index of the
level nearest to $w / c$: $\hat w = c \cdot \mathrm{NF4}[\mathrm{code}]$. Two 4-bit codes share one byte.

Double quantization: the fp32 absmax constants (32/64 = 0.5 bit/param) are themselves quantized: subtract their
mean, then 8-bit blockwise quantization (blocksize 256) with the dynamic tree code of Dettmers (2015,
arXiv:1511.04561), as bitsandbytes does. Storage: $4 + 8/64 + 32/(64 \cdot 256) \approx 4.127$ bits/param.

Dequantizing is one gather and one multiply: a 256-entry table maps each packed byte to its two levels. In
training, `MatMul4bit` dequantizes in forward and *again* in backward, so autograd keeps the 4-bit state, never a
float copy of $W$: the frozen base costs 4.13 bits/param during backward too, which is what QLoRA is for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inject import LINEAR_TYPES, Conv1D, in_out_features, weight_as_out_in

OFFSET = 0.9677083  # the paper's delta, rounded as bitsandbytes writes it: 0.5 * ((1 - 1/30) + (1 - 1/32))


def nf4_codebook() -> torch.Tensor:
    """The 16 NF4 levels, sorted, in [-1, 1], derived from normal quantiles (no table, no scipy).

    The float steps are bitsandbytes' (float32 probabilities, float64 quantiles, float32 division by the
    largest), so the levels equal its table bit for bit and so do the codes and dequantized weights.
    """
    pos = torch.special.ndtri(torch.linspace(OFFSET, 0.5, 9)[:-1].double()).float()  # (8,) levels > 0
    neg = -torch.special.ndtri(torch.linspace(OFFSET, 0.5, 8)[:-1].double()).float()  # (7,) levels < 0
    levels = torch.cat([neg, torch.zeros(1), pos]).sort().values  # (16,)
    return levels / levels.max()


def dynamic_codebook() -> torch.Tensor:
    """The signed 8-bit dynamic tree code (bitsandbytes' default 8-bit map): sign, exponent run, linear fraction."""
    values = [0.0, 1.0]
    for i in range(7):  # exponent 10^-6 .. 10^0, with 2^i fraction levels each
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float32)
        means = (
            (bounds[:-1] + bounds[1:]) / 2 * 10.0 ** (i - 6)
        )  # (2^i,) float32, as bitsandbytes computes it
        values += means.tolist() + (-means).tolist()
    return torch.tensor(sorted(values), dtype=torch.float32)  # (256,)


NF4 = nf4_codebook()
DYNAMIC8 = dynamic_codebook()
# byte b -> its two levels (NF4[b >> 4], NF4[b & 15]): dequantization becomes one gather over the packed bytes
NF4_PAIRS = torch.stack([NF4.repeat_interleave(16), NF4.repeat(16)], dim=1)  # (256, 2) float32
# the same table as 256 64-bit words (the two float32 side by side): a 1-D gather moves both levels in one go,
# about 10x faster on the CPU than gathering 2-float rows
NF4_PAIR_WORDS = NF4_PAIRS.view(torch.int64).squeeze(1)  # (256,)


def _nearest(x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """Index of the nearest entry of the sorted `code` (ties go to the lower one), as uint8."""
    mids = (code[:-1] + code[1:]) / 2
    return torch.bucketize(x, mids.to(x.device), out_int32=True).to(torch.uint8)


def _blockwise_absmax(x: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / absmax per block, absmax) for a flat x; the last block may be shorter."""
    pad = (-x.numel()) % blocksize
    blocks = (F.pad(x, (0, pad)) if pad else x).view(-1, blocksize)  # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    scaled = (blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1)).clamp(-1, 1)
    return scaled.flatten()[: x.numel()], absmax


def quantize_nf4(
    w: torch.Tensor, blocksize: int = 64, double_quant: bool = True, dq_blocksize: int = 256
) -> dict[str, torch.Tensor]:
    """Quantize `w` (any shape, flattened row-major) to packed NF4 codes plus (double-quantized) absmax.

    No loop over blocks: one absmax per row of a (n_blocks, blocksize) view, one `bucketize` of every scaled
    weight against the 15 midpoints between levels, one shift-and-or that packs two codes per byte.
    """
    if blocksize < 2 or blocksize % 2 or w.numel() % blocksize:
        raise ValueError(
            f"blocksize={blocksize} must be an even number that divides the weight's {w.numel()} entries "
            f"(shape {tuple(w.shape)}); e.g. 64."
        )
    scaled, absmax = _blockwise_absmax(w.detach().float().flatten(), blocksize)  # (N,), (N / blocksize,)
    codes = _nearest(scaled, NF4)  # (N,) values 0..15
    state = {"packed": (codes[0::2] << 4) | codes[1::2]}  # (N / 2,) uint8: first code in the high nibble
    if not double_quant:
        return {**state, "absmax": absmax}
    offset = absmax.mean()
    scaled2, absmax2 = _blockwise_absmax(absmax - offset, dq_blocksize)
    return {
        **state,
        "absmax_codes": _nearest(scaled2, DYNAMIC8),
        "absmax_scale": absmax2,
        "absmax_offset": offset,
    }


def dequantize_nf4(state: dict[str, torch.Tensor], shape, blocksize: int = 64, dq_blocksize: int = 256):
    """Inverse of `quantize_nf4`: a float32 tensor of `shape`, in three vectorized steps (no loop over blocks):

    1. the absmax of every block: stored as is, or (double quantization) c = DYNAMIC8[code2] * absmax2 + mean;
    2. one gather: each packed byte indexes `NF4_PAIRS`, the 256-entry table of its two levels (as 64-bit words);
    3. one blockwise scale: the levels of each block of `blocksize` times that block's absmax.
    """
    packed = state["packed"]  # (N / 2,) uint8, two codes per byte
    if "absmax" in state:
        absmax = state["absmax"]  # (n_blocks,)
    else:  # c = DYNAMIC8[code2] * absmax2 + mean
        c2 = DYNAMIC8.to(packed.device)[state["absmax_codes"].long()]  # (n_blocks,)
        scale = state["absmax_scale"].repeat_interleave(dq_blocksize)[: c2.numel()]  # (n_blocks,)
        absmax = c2 * scale + state["absmax_offset"]  # (n_blocks,)
    words = NF4_PAIR_WORDS.to(packed.device).index_select(0, packed.int())  # (N / 2,) int64: 2 levels each
    levels = words.view(torch.float32)  # (N,): NF4[high nibble], NF4[low nibble], NF4[high nibble], ...
    w = levels.view(-1, blocksize).mul_(absmax.unsqueeze(1))  # (n_blocks, blocksize)
    return w.view(shape)


class MatMul4bit(torch.autograd.Function):
    """y = x W^T + b with W = dequantize(NF4 state), recomputed in backward instead of saved (as bitsandbytes'
    `MatMul4Bit`).

    `F.linear(x, W)` would save the fp32 W (out x in x 4 bytes) for backward. This saves only the NF4 state, the
    layer's own buffers (no new memory), and dequantizes again in backward. The frozen W gets no gradient:
    backward returns dL/dx = dL/dy W (and dL/db, which needs nothing saved).
    """

    @staticmethod
    def forward(ctx, x, bias, shape, blocksize, dq_blocksize, names, *state):
        ctx.save_for_backward(*state)  # packed codes + absmax (or its double-quantized parts): never W itself
        ctx.meta = (shape, blocksize, dq_blocksize, names)
        w = dequantize_nf4(dict(zip(names, state)), shape, blocksize, dq_blocksize).to(x.dtype)  # (out, in)
        return F.linear(x, w, bias)  # (B, T, out)

    @staticmethod
    def backward(ctx, grad_out):  # grad_out (B, T, out)
        shape, blocksize, dq_blocksize, names = ctx.meta
        grad_x = grad_bias = None
        if ctx.needs_input_grad[0]:
            state = dict(zip(names, ctx.saved_tensors))
            w = dequantize_nf4(state, shape, blocksize, dq_blocksize)  # (out, in), dequantized a second time
            grad_x = grad_out @ w.to(grad_out.dtype)  # (B, T, in)
        if ctx.needs_input_grad[1]:
            grad_bias = grad_out.flatten(0, -2).sum(0)  # (out,)
        return grad_x, grad_bias, None, None, None, None, *(None for _ in names)


class Linear4bit(nn.Linear):
    """A frozen linear layer whose weight lives as NF4 buffers and is dequantized on the fly (`MatMul4bit`).

    It is an `nn.Linear` for target matching (`"all-linear"`, `in_features`), but `weight` is a read-only property
    (the dequantized (out, in) tensor). `quantized_numel` lets parameter counts include the frozen weight.
    """

    def __init__(
        self, layer: nn.Module, blocksize: int = 64, double_quant: bool = True, dq_blocksize: int = 256
    ):
        nn.Module.__init__(self)  # not nn.Linear.__init__: no float weight is ever allocated
        self.in_features, self.out_features = in_out_features(layer)
        self.blocksize, self.dq_blocksize, self.double_quant = blocksize, dq_blocksize, double_quant
        # GPT-2's Conv1D stores its weight (in, out): remembered so that `dequantize` gives a Conv1D back
        self.from_conv1d = bool(Conv1D) and isinstance(layer, Conv1D)
        w = weight_as_out_in(layer)  # (out, in), also for GPT-2's Conv1D
        self.compute_dtype = w.dtype
        self.quantized_numel = w.numel()
        self.bias = layer.bias  # the same (frozen) Parameter object, or None
        self.set_weight(w)

    def set_weight(self, w: torch.Tensor) -> None:
        """(Re)quantize `w` (out, in) into this layer's buffers."""
        state = quantize_nf4(w, self.blocksize, self.double_quant, self.dq_blocksize)
        for name, tensor in state.items():
            self.register_buffer(name, tensor.to(w.device))

    def quant_state(self) -> dict[str, torch.Tensor]:
        names = (
            ("packed", "absmax_codes", "absmax_scale", "absmax_offset")
            if self.double_quant
            else ("packed", "absmax")
        )
        return {n: getattr(self, n) for n in names}

    @property
    def weight(self) -> torch.Tensor:
        shape = (self.out_features, self.in_features)
        return dequantize_nf4(self.quant_state(), shape, self.blocksize, self.dq_blocksize).to(
            self.compute_dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        state = self.quant_state()
        shape = (self.out_features, self.in_features)
        return MatMul4bit.apply(
            x, bias, shape, self.blocksize, self.dq_blocksize, tuple(state), *state.values()
        )

    def dequantize(self) -> nn.Module:
        """A plain frozen float layer (nn.Linear, or the Conv1D it came from) holding the dequantized weight."""
        with torch.no_grad():
            w = self.weight  # (out, in)
            if self.from_conv1d:
                layer = Conv1D(self.out_features, self.in_features)
                layer.weight = nn.Parameter(w.T.contiguous(), requires_grad=False)  # Conv1D stores (in, out)
            else:
                layer = nn.Linear(
                    self.in_features, self.out_features, bias=False, device=w.device, dtype=w.dtype
                )
                layer.weight = nn.Parameter(w, requires_grad=False)
        layer.bias = self.bias  # the same Parameter object, or None
        return layer


def quantize_linears(model: nn.Module, names: list[str], **kwargs) -> None:
    """Replace each named Linear/Conv1D of `model` by a Linear4bit (layers already quantized are kept)."""
    from ..inject import replace_module

    new = {}
    for name in names:  # quantize everything first: a bad blocksize leaves the model untouched
        layer = model.get_submodule(name)
        if isinstance(layer, LINEAR_TYPES) and not isinstance(layer, Linear4bit):
            try:
                new[name] = Linear4bit(layer, **kwargs)
            except ValueError as e:
                raise ValueError(f"cannot quantize {name!r}: {e}") from e
    for name, layer in new.items():
        replace_module(model, name, layer)


def storage_bits_per_param(layer: Linear4bit) -> float:
    """Measured storage of the frozen weight: bits in its quantization buffers / number of weights."""
    bits = sum(t.numel() * t.element_size() * 8 for t in layer.quant_state().values())
    return bits / layer.quantized_numel


def quantization_error(w: torch.Tensor, blocksize: int = 64, double_quant: bool = True) -> dict[str, float]:
    """How far NF4 round-tripping moves `w`: mean and max absolute error, and ||w - w_hat|| / ||w||."""
    w = w.detach().float()
    state = quantize_nf4(w, blocksize, double_quant)
    err = (dequantize_nf4(state, w.shape, blocksize) - w).abs()
    return {
        "mean_abs": err.mean().item(),
        "max_abs": err.max().item(),
        "relative": (err.norm() / w.norm()).item(),
    }
