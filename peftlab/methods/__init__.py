"""The PEFT methods, one file per family. Each file reads Config -> Layer -> apply -> register: a dataclass with
the method's hyperparameters, the layer (or soft-prompt module) with the paper's equation in its docstring, the
function that puts it into a model, and one `register(...)` call that makes it known to `get_peft_model`.

    full.py           full fine-tuning (the reference every method is compared with)
    selective.py      BitFit, LayerNorm tuning, layer freezing: train a chosen subset of the weights
    adapters.py       bottleneck adapters (Houlsby, Pfeiffer)
    ia3.py            (IA)^3: learned rescaling vectors
    soft_prompt.py    what the soft-prompt methods share: virtual tokens in front of the input
    prompt_tuning.py  prompt tuning: a learned table of virtual token embeddings
    prefix.py         prefix tuning: learned keys and values in every layer
    p_tuning.py       P-tuning: soft prompts from a small encoder
    multitask.py      multitask prompt tuning
    llama_adapter.py  LLaMA-Adapter: gated adaption prompts
    lora.py           LoRA (and rsLoRA): W + (alpha/r) B A
    dora.py           DoRA: magnitude x direction of W + BA
    nf4.py            4-bit NormalFloat quantization (the storage QLoRA uses)
    qlora.py          QLoRA: LoRA on an NF4-quantized frozen base
    adalora.py        AdaLoRA: LoRA as P diag(lambda) Q with a rank budget

Importing this package registers every method (`peftlab.METHODS` lists them).
"""

from . import (  # noqa: F401  (each module registers itself on import)
    adalora,
    adapters,
    dora,
    full,
    ia3,
    llama_adapter,
    lora,
    multitask,
    nf4,
    p_tuning,
    prefix,
    prompt_tuning,
    qlora,
    selective,
)
