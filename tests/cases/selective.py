"""Full fine-tuning and the selective methods (BitFit, norm-only, layer freezing) in the common tester."""

from . import Case

NORMS = {"t5": ["layer_norm", "final_layer_norm"], "llama": ["input_layernorm", "norm"], "gpt2": ["ln_f"]}

CASES = [
    Case(
        "full",
        "full",
        lambda k: {},
        can_disable=False,  # the base weights themselves train: there is no adapter to switch off
        adapter_only_save=False,  # the "adapter" file is the whole model
        lr=1e-3,
    ),
    Case("bitfit", "bitfit", lambda k: {}, kinds=("gpt2",), merge_atol=0),  # LLaMA and T5 have no biases
    Case("bitfit-attn-only", "bitfit", lambda k: dict(target_modules=r".*\.attn\.c_attn"), kinds=("gpt2",)),
    Case(
        "norm",
        "norm",
        lambda k: {},
        merge_atol=0,  # merging copies the trained values in: exact
        peft_config=lambda k: __import__("peft").LNTuningConfig(),
    ),
    Case(
        "norm-named",
        "norm",
        lambda k: dict(target_modules=NORMS[k]),
        peft_config=lambda k: __import__("peft").LNTuningConfig(target_modules=NORMS[k]),
    ),
    Case("layer-freeze-top1", "layer_freeze", lambda k: dict(num_trainable_layers=1), merge_atol=0),
    Case(
        "layer-freeze-regex",
        "layer_freeze",
        lambda k: dict(
            num_trainable_layers=None,
            trainable_params=r".*\.(q|q_proj|c_attn)\.weight|.*(relative_attention_bias|ln_f|norm).*",
        ),
    ),
]
