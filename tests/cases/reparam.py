"""Common-tester cases for DoRA, QLoRA and AdaLoRA (the method-specific checks live in tests/test_<method>.py)."""

from conftest import ATTN_TARGETS

from . import Case


def _peft_lora(**kw):
    def build(kind):
        import peft

        return peft.LoraConfig(target_modules=ATTN_TARGETS[kind], **kw)

    return build


ADALORA = dict(init_r=6, target_r=3, lora_alpha=32, total_step=20, tinit=2, tfinal=4)

CASES = [
    Case(
        "dora-r4",
        "dora",
        lambda k: dict(r=4, lora_alpha=8, target_modules=ATTN_TARGETS[k]),
        peft_config=_peft_lora(r=4, lora_alpha=8, use_dora=True),
    ),
    Case(
        "dora-dropout-all-linear",
        "dora",
        lambda k: dict(r=2, lora_alpha=4, lora_dropout=0.1, target_modules="all-linear"),
        peft_config=lambda k: __import__("peft").LoraConfig(
            r=2, lora_alpha=4, lora_dropout=0.1, target_modules="all-linear", use_dora=True
        ),
    ),
    # QLoRA: the base is quantized, so "base logits" (of the float model) are not what it equals at init (see
    # test_qlora.py for identity vs the quantized base, disabling, and the inexact merge). Counts match peft's plain
    # LoRA on the float model because the 4-bit weights still count as `quantized_numel` parameters.
    Case(
        "qlora-r4",
        "qlora",
        lambda k: dict(r=4, lora_alpha=16, target_modules=ATTN_TARGETS[k]),
        identity_at_init=False,
        mergeable=False,
        can_disable=False,
        peft_config=_peft_lora(r=4, lora_alpha=16),
    ),
    # AdaLoRA: peft counts its frozen `ranknum` scalars as parameters (one per layer) and we keep ranknum as a plain
    # float, so the total differs by the number of adapted layers; test_adalora.py checks that exact relation.
    Case("adalora", "adalora", lambda k: dict(target_modules=ATTN_TARGETS[k], **ADALORA), lr=5e-2),
]
