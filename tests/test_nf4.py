"""NF4 from its definition, checked against the definition itself and against bitsandbytes (CPU)."""

from statistics import NormalDist

import pytest
import torch
from torch import nn

from peftlab import nf4

bnbf = pytest.importorskip("bitsandbytes.functional")


def gaussian(shape, seed=0, std=0.02):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * std


def test_codebook_is_normal_quantiles_with_exact_zero():
    """16 levels: 8 positive, 7 negative, one exact 0, in [-1, 1]; each is a quantile of N(0, 1) (stdlib inv_cdf)."""
    code = nf4.NF4
    assert code.shape == (16,) and torch.all(code[1:] > code[:-1])
    assert (code > 0).sum() == 8 and (code < 0).sum() == 7 and (code == 0).sum() == 1
    assert code[0] == -1 and code[-1] == 1
    delta = 0.5 * ((1 - 1 / 30) + (1 - 1 / 32))
    inv = NormalDist().inv_cdf
    pos = [inv(delta - i / 8 * (delta - 0.5)) for i in range(8)]
    neg = [-inv(delta - j / 7 * (delta - 0.5)) for j in range(7)]
    expected = torch.tensor(sorted([*neg, 0.0, *pos]), dtype=torch.float64) / max(pos)
    torch.testing.assert_close(code.double(), expected, rtol=0, atol=1e-7)


def test_codebook_matches_bitsandbytes():
    from bitsandbytes.backends.utils import CODE

    torch.testing.assert_close(nf4.NF4, CODE["nf4"].cpu(), rtol=0, atol=3e-7)
    normal_map = bnbf.create_normal_map()  # 256 entries: 7 negative, padding zeros, 8 positive (scipy)
    torch.testing.assert_close(nf4.NF4, torch.cat([normal_map[:8], normal_map[-8:]]), rtol=0, atol=3e-7)
    assert torch.equal(nf4.DYNAMIC8, bnbf.create_dynamic_map())  # the 8-bit code of the double quantization


@pytest.mark.parametrize("shape", [(256, 128), (96, 64), (64, 96)])
def test_codes_and_statistics_match_bitsandbytes(shape):
    w = gaussian(shape)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    ours = nf4.quantize_nf4(w, blocksize=64, double_quant=True)
    assert torch.equal(ours["packed"], packed.flatten())  # every 4-bit code, same nibble order
    assert torch.equal(ours["absmax_offset"], state.offset)  # mean of the absmax constants
    assert torch.equal(ours["absmax_scale"], state.state2.absmax)  # second-level absmax (fp32, blocks of 256)
    # 8-bit codes of the absmax constants. Ours is the exact nearest level (checked by brute force); bitsandbytes'
    # native CPU kernel rounds a few values near a level midpoint differently (observed: <= 2 of 1,024 per tensor,
    # always a neighbouring code), so we require >= 99% equal and any difference <= 2 code steps.
    am = w.flatten().view(-1, 64).abs().amax(1)
    x = am - am.mean()
    scaled = torch.cat([b / b.abs().max() for b in x.split(256)])
    brute = (scaled.unsqueeze(1) - nf4.DYNAMIC8).abs().argmin(1)
    nearest = (nf4.DYNAMIC8[brute] - scaled).abs()
    assert torch.equal((nf4.DYNAMIC8[ours["absmax_codes"].long()] - scaled).abs(), nearest)
    diff = (ours["absmax_codes"].int() - state.absmax.int()).abs()
    assert (diff == 0).float().mean() >= 0.99 and diff.max() <= 2


def test_dequantize_matches_bitsandbytes():
    w = gaussian((256, 128), seed=3)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=True)
    theirs = bnbf.dequantize_4bit(packed, state)
    # with bitsandbytes' own absmax constants, our block dequantization gives its values
    absmax = bnbf.dequantize_blockwise(state.absmax, state.state2) + state.offset
    ours_same_absmax = nf4.dequantize_nf4({"packed": packed.flatten(), "absmax": absmax}, w.shape)
    torch.testing.assert_close(ours_same_absmax, theirs, rtol=1e-6, atol=1e-9)
    # end to end, only the rare differing 8-bit absmax codes (see above) move a whole block slightly
    ours = nf4.dequantize_nf4(nf4.quantize_nf4(w), w.shape)
    assert (ours - theirs).abs().max() < 1e-3
    close = (
        ours - theirs
    ).abs() <= 1e-6 * theirs.abs() + 1e-9  # level values differ in the last fp32 bits only
    assert close.float().mean() > 0.95


def test_round_trip_error_is_bounded_by_half_a_level_gap():
    w = gaussian((128, 64), seed=4)
    state = nf4.quantize_nf4(w, double_quant=False)
    err = (nf4.dequantize_nf4(state, w.shape) - w).abs().view(-1, 64)  # (blocks, 64)
    half_gap = (nf4.NF4[1:] - nf4.NF4[:-1]).max() / 2
    assert torch.all(err <= state["absmax"].unsqueeze(1) * half_gap + 1e-7)
    # every block's largest entry is represented exactly (it maps to +-1)
    assert torch.all(err.gather(1, w.view(-1, 64).abs().argmax(1, keepdim=True)) < 1e-7)
    e = nf4.quantization_error(w)
    assert 0 < e["relative"] < 0.12 and e["max_abs"] >= e["mean_abs"] > 0


def test_storage_bits_per_param():
    layer = nf4.Linear4bit(nn.Linear(1024, 1024, bias=False))
    n = 1024 * 1024
    expected = 4 + 8 / 64 + 32 * (n // 64 // 256) / n + 32 / n  # codes, 8-bit absmax, fp32 absmax2, offset
    assert nf4.storage_bits_per_param(layer) == pytest.approx(expected, abs=1e-9)
    assert nf4.storage_bits_per_param(layer) <= 4.13
    plain = nf4.Linear4bit(nn.Linear(1024, 1024, bias=False), double_quant=False)
    assert nf4.storage_bits_per_param(plain) == pytest.approx(4.5)


def test_linear4bit_dequantizes_on_the_fly():
    torch.manual_seed(0)
    lin = nn.Linear(128, 64)
    q = nf4.Linear4bit(lin)
    assert isinstance(q, nn.Linear) and (q.in_features, q.out_features) == (128, 64)
    assert q.quantized_numel == 128 * 64
    assert [n for n, _ in q.named_parameters()] == ["bias"] and q.bias is lin.bias
    assert q.packed.dtype == torch.uint8 and q.packed.numel() == 128 * 64 // 2
    x = torch.randn(3, 5, 128)
    w_hat = nf4.dequantize_nf4(nf4.quantize_nf4(lin.weight), (64, 128))
    torch.testing.assert_close(q(x), x @ w_hat.T + lin.bias, rtol=1e-5, atol=1e-6)
    rel = (q(x) - lin(x)).norm() / lin(x).norm()
    assert 0 < rel < 0.15


def test_linear4bit_from_gpt2_conv1d():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    conv = Conv1D(96, 32)  # weight stored (in, out) = (32, 96)
    q = nf4.Linear4bit(conv)
    assert (q.in_features, q.out_features) == (32, 96)
    x = torch.randn(2, 4, 32)
    w_hat = nf4.dequantize_nf4(nf4.quantize_nf4(conv.weight.T), (96, 32))
    torch.testing.assert_close(q(x), x @ w_hat.T + conv.bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blocksize", [48, 7, 0])
def test_bad_blocksize(blocksize):
    with pytest.raises(ValueError, match="blocksize"):
        nf4.quantize_nf4(torch.zeros(32, 32), blocksize=blocksize)
