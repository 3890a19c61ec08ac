"""(IA)^3 in the common tester, with HF peft's count for the same config."""

from conftest import FF_TARGETS, KV_TARGETS

from . import Case


def _peft_ia3(kind, **kw):
    import peft

    return peft.IA3Config(
        target_modules=KV_TARGETS[kind] + FF_TARGETS[kind], feedforward_modules=FF_TARGETS[kind], **kw
    )


CASES = [
    Case(
        "ia3",
        "ia3",
        lambda k: dict(target_modules=KV_TARGETS[k] + FF_TARGETS[k], feedforward_modules=FF_TARGETS[k]),
        peft_config=_peft_ia3,
        lr=5e-2,
    ),
    Case("ia3-defaults", "ia3", lambda k: {}, peft_config=lambda k: __import__("peft").IA3Config()),
    Case(
        "ia3-regex-head",
        "ia3",
        lambda k: dict(
            target_modules=r".*\.(v|v_proj|c_attn|wo|down_proj|c_proj)",
            feedforward_modules=r".*\.(wo|down_proj|mlp\.c_proj)",
            modules_to_save=["lm_head"],
        ),
        peft_config=lambda k: __import__("peft").IA3Config(
            target_modules=r".*\.(v|v_proj|c_attn|wo|down_proj|c_proj)",
            feedforward_modules=r".*\.(wo|down_proj|mlp\.c_proj)",
            modules_to_save=["lm_head"],
        ),
    ),
]
