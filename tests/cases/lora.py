from conftest import ATTN_TARGETS

from . import Case


def _peft_lora(**kw):
    def build(kind):
        import peft

        return peft.LoraConfig(target_modules=ATTN_TARGETS[kind], **kw)

    return build


EMBED_REGEX = r".*(shared|model\.embed_tokens|wte|q|q_proj)"

CASES = [
    Case(
        "lora-r4",
        "lora",
        lambda k: dict(r=4, lora_alpha=8, target_modules=ATTN_TARGETS[k]),
        peft_config=_peft_lora(r=4, lora_alpha=8),
    ),
    Case(
        "lora-rslora-dropout",
        "lora",
        lambda k: dict(r=8, lora_alpha=16, lora_dropout=0.1, use_rslora=True, target_modules=ATTN_TARGETS[k]),
        peft_config=_peft_lora(r=8, lora_alpha=16, lora_dropout=0.1, use_rslora=True),
    ),
    Case(
        "lora-all-linear-bias-all",
        "lora",
        lambda k: dict(r=2, target_modules="all-linear", bias="all"),
        can_disable=False,  # trained biases are shared with the base: disabling cannot bring them back
        peft_config=lambda k: __import__("peft").LoraConfig(r=2, target_modules="all-linear", bias="all"),
    ),
    # embeddings (T5's encoder/decoder embed_tokens share one weight: wrapped once), regex targets, a trained head
    Case(
        "lora-embedding-regex-head",
        "lora",
        lambda k: dict(r=4, target_modules=EMBED_REGEX, modules_to_save=["lm_head"]),
        peft_config=lambda k: __import__("peft").LoraConfig(
            r=4, target_modules=EMBED_REGEX, modules_to_save=["lm_head"]
        ),
    ),
]
