r"""QLoRA: LoRA over a 4-bit NF4-quantized frozen base (Dettmers et al. 2023, arXiv:2305.14314).

The frozen weights are stored in NF4 with double-quantized absmax constants (see nf4.py, about 4.13 bits per
weight instead of 16 or 32) and dequantized on the fly; the LoRA matrices stay in full precision and are the only
thing that trains (gradients flow *through* the dequantized weight into the input, never into it):

$$ h = \mathrm{dequant}(\mathrm{NF4}(W_0))\, x + \frac{\alpha}{r} B A x $$

At init ($B = 0$) the adapted model equals the *quantized* base model, not the original one: quantization itself
moves the logits a little. `with model.disable_adapter():` switches LoRA off; the base stays quantized.

Merging is where users trip. $W_0 + sBA$ is not on the NF4 grid, so a merged model must choose (`merge_and_unload`
below states it): **requantize** (the default, as peft does with bitsandbytes: the model stays 4-bit, but every
merged weight is rounded to an NF4 level again, an error up to half a level gap times the block absmax, the size of
the quantization error itself and often larger than $sBA$, which partly snaps back to the old codes), or
**dequantize to fp32 and merge exactly** (`requantize=False`: equal to the adapted model to float rounding, at 32
bits/param). tests/test_qlora.py and notebook 06 measure both. `unmerge` restores the saved codes bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch

from ..config import check_range
from ..inject import find_targets, replace_module, weight_as_out_in
from ..registry import register
from .lora import LoraConfig, LoraLinear, apply_lora
from .nf4 import Linear4bit, quantize_linears


@dataclass
class QLoraConfig(LoraConfig):
    peft_type: ClassVar[str] = (
        "LORA"  # a QLoRA adapter is a LoRA adapter; the base model is what is quantized
    )
    bnb_4bit_quant_type: Literal["nf4"] = "nf4"  # the 4-bit data type (bitsandbytes' name); only NF4 here
    bnb_4bit_use_double_quant: bool = True  # quantize the absmax constants too (8-bit, blocksize 256)
    blocksize: int = 64  # weights per absmax constant
    quantize_modules: str | list[str] | None = (
        "all-linear"  # which linears to quantize; None: the LoRA targets
    )

    def __post_init__(self):
        super().__post_init__()
        if self.bnb_4bit_quant_type != "nf4":
            raise ValueError(f"bnb_4bit_quant_type={self.bnb_4bit_quant_type!r} is not allowed: only 'nf4'.")
        check_range("blocksize", self.blocksize, low=2, allowed="an even number >= 2 (64 in the paper)")
        if self.blocksize % 2:
            raise ValueError(
                f"blocksize={self.blocksize} is not allowed: blocksize must be even (two codes per byte)."
            )
        if self.use_dora:
            raise ValueError("use_dora=True is not supported with QLoRA here: use LoRA (use_dora=False).")


class QLoraLinear(LoraLinear):
    """LoRA on a Linear4bit. Merge = requantize W0 + sBA (inexact); unmerge restores the saved codes exactly.

    Its base layer's forward is `MatMul4bit`: backward keeps the 4-bit state, not a float copy of W0.
    """

    quantized_numel = 0  # the wrapped Linear4bit counts the weight; don't read it through and count it twice

    def __init__(self, base_layer: Linear4bit):
        super().__init__(base_layer)
        self._saved_states: list[dict[str, torch.Tensor]] = []

    def merge(self, name: str) -> None:
        base = self.base_layer
        if not isinstance(base, Linear4bit):  # dequantized by merge_and_unload(requantize=False): exact merge
            with torch.no_grad():
                weight_as_out_in(base).add_(self.delta_weight(name))  # (d, k); a Conv1D base stores (k, d)
            self.merged_adapters.append(name)
            return
        self._saved_states.append({k: v.clone() for k, v in base.quant_state().items()})
        with torch.no_grad():
            base.set_weight(base.weight.float() + self.delta_weight(name).float())  # (d, k), requantized
        self.merged_adapters.append(name)

    def unmerge(self) -> None:
        if not isinstance(self.base_layer, Linear4bit):
            with torch.no_grad():
                while self.merged_adapters:
                    weight_as_out_in(self.base_layer).sub_(self.delta_weight(self.merged_adapters.pop()))
            return
        while self.merged_adapters:
            self.merged_adapters.pop()
            for k, v in self._saved_states.pop().items():
                setattr(self.base_layer, k, v)


def merge_and_unload(model, requantize: bool = True):
    """Merge the active adapter and return the plain base model; `requantize` is the choice of the module docstring.

    True (= `model.merge_and_unload()`): stays 4-bit, inexact. False: every 4-bit layer (adapted or not) is first
    dequantized to a float nn.Linear (or Conv1D), then LoRA merges exactly: a float32 model again.
    """
    if not requantize:
        for name, module in list(model.named_modules()):
            if isinstance(module, Linear4bit) and model.get_submodule(name) is module:  # tied: replaced once
                replace_module(model, name, module.dequantize())
    return model.merge_and_unload()


def apply_qlora(model, config: QLoraConfig, adapter_name: str) -> list[str]:
    """Quantize the chosen linears to NF4 (once), then add LoRA on the targets."""
    to_quantize = config.quantize_modules or config.target_modules
    kwargs = dict(blocksize=config.blocksize, double_quant=config.bnb_4bit_use_double_quant)
    quantize_linears(model, find_targets(model, to_quantize), **kwargs)
    quantize_linears(model, find_targets(model, config.target_modules), **kwargs)  # targets are always 4-bit
    return apply_lora(model, config, adapter_name, layer_cls=QLoraLinear)


register("qlora", QLoraConfig, apply_qlora)
