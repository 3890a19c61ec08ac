"""NF4 from its definition, checked against the definition itself and against bitsandbytes (CPU)."""

import copy
from statistics import NormalDist

import pytest
import torch
from torch import nn

from peftlab.methods import nf4

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
    # exact float64 quantiles vs the float32 steps bitsandbytes takes (and we copy): about 2 float32 ulps at 1
    torch.testing.assert_close(code.double(), expected, rtol=0, atol=3e-7)


def test_codebook_matches_bitsandbytes_bit_for_bit():
    from bitsandbytes.backends.utils import CODE

    assert torch.equal(nf4.NF4, CODE["nf4"].cpu())  # its hard-coded table
    normal_map = bnbf.create_normal_map()  # 256 entries: 7 negative, padding zeros, 8 positive (scipy)
    assert torch.equal(nf4.NF4, torch.cat([normal_map[:8], normal_map[-8:]]))
    assert torch.equal(nf4.DYNAMIC8, bnbf.create_dynamic_map())  # the 8-bit code of the double quantization
    byte = torch.arange(256)
    assert torch.equal(nf4.NF4_PAIRS, torch.stack([nf4.NF4[byte >> 4], nf4.NF4[byte & 15]], dim=1))


@pytest.mark.parametrize("shape", [(2048, 512), (96, 64), (64, 96), (1, 128)])
def test_without_double_quant_everything_is_bit_exact_with_bitsandbytes(shape):
    w = gaussian(shape, seed=5)
    packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    ours = nf4.quantize_nf4(w, blocksize=64, double_quant=False)
    assert torch.equal(ours["packed"], packed.flatten()) and torch.equal(ours["absmax"], state.absmax)
    if (
        shape[-1] % 64
    ):  # bitsandbytes 0.50.2's native CPU dequantize_4bit assumes rows of whole blocks: with 96
        return  # columns it scales by the wrong absmax (round-trip error 4x ours); its codes above still agree
    assert torch.equal(nf4.dequantize_nf4(ours, shape), bnbf.dequantize_4bit(packed, state))


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
    close = (ours - theirs).abs() <= 1e-6 * theirs.abs() + 1e-9  # equal, but for the blocks of those codes
    assert close.float().mean() > 0.95


def count_torch_calls(fn, *args):
    """How many torch functions / tensor methods `fn(*args)` calls (a Python loop over blocks would scale with them)."""
    from torch.overrides import TorchFunctionMode

    class Count(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn(*args)
    return Count.n


@pytest.mark.parametrize("double_quant", [False, True])
def test_quantize_and_dequantize_have_no_loop_over_blocks(double_quant):
    calls = {}
    for rows in (96, 1000):  # 192 vs 2,000 blocks of 64 (1 vs 8 blocks of 256 absmax constants)
        w = gaussian((rows, 128))
        state = nf4.quantize_nf4(w, double_quant=double_quant)
        calls[rows] = (
            count_torch_calls(nf4.quantize_nf4, w, 64, double_quant),
            count_torch_calls(nf4.dequantize_nf4, state, w.shape),
        )
    assert calls[96] == calls[1000] and calls[96][1] <= 20


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


def saved_for_backward(fn):
    """(result, the tensors autograd saved while running fn())."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = fn()
    return out, saved


def test_matmul4bit_gradients_equal_the_float_path():
    torch.manual_seed(0)
    lin = nn.Linear(256, 96)
    q = nf4.Linear4bit(lin)
    q.bias.requires_grad_(True)  # a trainable bias (config.bias="all") gets its gradient too
    x = torch.randn(3, 7, 256, requires_grad=True)
    g = torch.randn(3, 7, 96)
    (dx, db) = torch.autograd.grad(q(x), (x, q.bias), g)
    w_hat = q.weight.detach()  # (96, 256): the float path, with the same dequantized weight
    (dx_ref, db_ref) = torch.autograd.grad(torch.nn.functional.linear(x, w_hat, q.bias), (x, q.bias), g)
    torch.testing.assert_close(dx, dx_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(db, db_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(q(x), torch.nn.functional.linear(x, w_hat, q.bias), rtol=1e-5, atol=1e-6)
    assert not any(isinstance(t, nn.Parameter) and t.requires_grad for t in q.buffers())  # no weight gradient
    # and the backward is the derivative of the forward (finite differences, float64 input)
    small = nf4.Linear4bit(nn.Linear(64, 8, bias=False))
    assert torch.autograd.gradcheck(small, (torch.randn(2, 64, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("double_quant", [False, True])
def test_a_linear4bit_step_saves_the_4bit_state_and_never_a_float_weight(double_quant):
    torch.manual_seed(0)
    q = nf4.Linear4bit(nn.Linear(512, 256), double_quant=double_quant)
    x = torch.randn(2, 8, 512, requires_grad=True)
    out, saved = saved_for_backward(lambda: q(x))
    state = q.quant_state()
    nbytes = sum(t.untyped_storage().nbytes() for t in saved)
    assert {t.data_ptr() for t in saved} == {t.data_ptr() for t in state.values()}  # its own buffers, no copy
    assert nbytes == sum(t.numel() * t.element_size() for t in state.values())
    assert nbytes < 256 * 512 * 4 / 7  # the fp32 weight would be 524,288 bytes; 4.13-4.5 bits/param is < 1/7
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    # the failure this guards against: the float path saves an (out, in) fp32 weight for backward
    _, naive = saved_for_backward(lambda: torch.nn.functional.linear(x, q.weight, q.bias))
    assert any(t.numel() == 256 * 512 and t.dtype == torch.float32 for t in naive)


def test_dequantize_gives_a_plain_float_layer():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    for layer in (nn.Linear(64, 32), Conv1D(32, 64)):
        q = nf4.Linear4bit(layer)
        plain = q.dequantize()
        assert type(plain) is type(layer) and plain.weight.shape == layer.weight.shape
        assert not plain.weight.requires_grad and plain.bias is layer.bias
        x = torch.randn(3, 64)
        torch.testing.assert_close(plain(x), q(x), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_linear4bit_on_cuda_matches_cpu_and_bitsandbytes():
    torch.manual_seed(0)
    lin = nn.Linear(256, 128)
    # no double quantization: its mean of the absmax constants may round differently in a CUDA reduction
    q_cpu = nf4.Linear4bit(
        copy.deepcopy(lin), double_quant=False
    )  # a copy: .cuda() moves lin's bias in place
    q = nf4.Linear4bit(lin.cuda(), double_quant=False)
    assert all(t.is_cuda for t in q.quant_state().values())
    assert torch.equal(q.weight.cpu(), q_cpu.weight)
    x = torch.randn(4, 256, device="cuda", requires_grad=True)
    q(x).sum().backward()
    x_cpu = x.detach().cpu().requires_grad_(True)
    q_cpu(x_cpu).sum().backward()
    torch.testing.assert_close(x.grad.cpu(), x_cpu.grad, rtol=1e-5, atol=1e-5)
    packed, state = bnbf.quantize_4bit(
        lin.weight.detach(), blocksize=64, quant_type="nf4", compress_statistics=False
    )
    ours = nf4.quantize_nf4(lin.weight, double_quant=False)
    # bitsandbytes' CUDA kernel has its own rounding of w / absmax: allow a rare code at a level boundary
    assert (ours["packed"] == packed.flatten()).float().mean() > 0.999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_cuda_a_linear4bit_forward_keeps_no_float_weight_for_backward():
    q = nf4.Linear4bit(nn.Linear(4096, 4096, bias=False).cuda())
    x = torch.randn(8, 4096, device="cuda", requires_grad=True)
    fp32_weight = 4096 * 4096 * 4  # 67 MB
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    y = q(x)  # noqa: F841 - keeps the graph (and whatever it saved) alive
    held = torch.cuda.memory_allocated() - before  # the output (8 x 4096 floats) and nothing else
    assert held < fp32_weight / 8
    naive = torch.nn.functional.linear(x, q.weight)  # noqa: F841 - the float path keeps W alive for backward
    assert torch.cuda.memory_allocated() - before - held >= fp32_weight
