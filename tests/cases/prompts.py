"""Soft prompts: prompt tuning, prefix tuning, P-tuning, multitask prompt tuning, LLaMA-Adapter.

None of the virtual-token methods is mergeable, and none is the identity at init (the prompt is new input);
LLaMA-Adapter is, thanks to its zero-init gate. peft gives seq2seq prompt tuning 2 x n rows by default (the second
half is unused), so for T5 the reference config asks for one transformer submodule, as ours does.
"""

from . import Case


def _peft(cls_name, **kw):
    def build(kind):
        import peft

        task = "SEQ_2_SEQ_LM" if kind == "t5" else "CAUSAL_LM"
        extra = {"num_transformer_submodules": 1} if kind == "t5" and "PREFIX" not in cls_name.upper() else {}
        return getattr(peft, cls_name)(task_type=task, **extra, **kw)

    return build


SOFT = dict(identity_at_init=False, mergeable=False)

CASES = [
    Case(
        "prompt-tuning-random",
        "prompt_tuning",
        lambda k: dict(num_virtual_tokens=4),
        peft_config=_peft("PromptTuningConfig", num_virtual_tokens=4),
        lr=0.1,
        **SOFT,
    ),
    Case(
        "prompt-tuning-vocab",
        "prompt_tuning",
        lambda k: dict(num_virtual_tokens=3, prompt_tuning_init="SAMPLE_VOCAB"),
        peft_config=_peft("PromptTuningConfig", num_virtual_tokens=3, prompt_tuning_init="SAMPLE_VOCAB"),
        lr=0.1,
        **SOFT,
    ),
    Case(
        "prefix-tuning",
        "prefix_tuning",
        lambda k: dict(num_virtual_tokens=4),
        peft_config=_peft("PrefixTuningConfig", num_virtual_tokens=4),
        lr=0.1,
        **SOFT,
    ),
    Case(
        "prefix-tuning-projection",
        "prefix_tuning",
        lambda k: dict(num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16),
        peft_config=_peft(
            "PrefixTuningConfig", num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=16
        ),
        lr=0.05,
        **SOFT,
    ),
    Case(
        "p-tuning-mlp",
        "p_tuning",
        lambda k: dict(num_virtual_tokens=4, encoder_hidden_size=16),
        peft_config=_peft("PromptEncoderConfig", num_virtual_tokens=4, encoder_hidden_size=16),
        lr=0.05,
        **SOFT,
    ),
    Case(
        "p-tuning-lstm",
        "p_tuning",
        lambda k: dict(num_virtual_tokens=3, encoder_reparameterization_type="LSTM", encoder_hidden_size=8),
        peft_config=_peft(
            "PromptEncoderConfig",
            num_virtual_tokens=3,
            encoder_reparameterization_type="LSTM",
            encoder_hidden_size=8,
        ),
        lr=0.05,
        **SOFT,
    ),
    Case(
        "multitask-prompt-tuning",
        "multitask_prompt_tuning",
        lambda k: dict(num_virtual_tokens=4, num_tasks=1, num_ranks=2),
        peft_config=_peft("MultitaskPromptTuningConfig", num_virtual_tokens=4, num_tasks=1, num_ranks=2),
        lr=0.5,
        **SOFT,
    ),
    Case(
        "llama-adapter",
        "llama_adapter",
        lambda k: dict(adapter_len=4, adapter_layers=1),
        kinds=("llama",),
        mergeable=False,
        peft_config=lambda k: __import__("peft").AdaptionPromptConfig(
            adapter_len=4, adapter_layers=1, task_type="CAUSAL_LM"
        ),
        lr=0.1,
    ),
]
