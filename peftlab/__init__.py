"""peftlab: parameter-efficient fine-tuning from scratch, for teaching.

    from peftlab import LoraConfig, get_peft_model
    model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    model.print_trainable_parameters()

Layout: `peftlab/methods/` (one file per method family), the core at the top (config, inject, registry,
peft_model), the ML utilities (models, data, train, rouge, memory, scoring, showdown) and `peftlab/classroom/`
(grading, exercises, notebook tools). Every method file registers itself on import (`peftlab.METHODS` lists them; `make_config(name, ...)` builds one).
"""

from . import methods  # noqa: F401  (registers every method)
from .config import PeftConfig
from .device import get_device
from .methods.adalora import AdaLoraConfig
from .methods.adapters import BottleneckConfig
from .methods.full import FullConfig
from .methods.ia3 import IA3Config
from .methods.llama_adapter import AdaptionPromptConfig
from .methods.lora import LoraConfig
from .methods.multitask import MultitaskPromptTuningConfig
from .methods.p_tuning import PromptEncoderConfig
from .methods.prefix import PrefixTuningConfig
from .methods.prompt_tuning import PromptTuningConfig
from .methods.qlora import QLoraConfig
from .methods.selective import BitFitConfig, LayerFreezeConfig, LNTuningConfig
from .methods.soft_prompt import nearest_tokens
from .peft_model import PeftModel, get_peft_model
from .registry import METHODS, make_config

__all__ = [
    "METHODS",
    "AdaLoraConfig",
    "AdaptionPromptConfig",
    "BitFitConfig",
    "BottleneckConfig",
    "FullConfig",
    "IA3Config",
    "LNTuningConfig",
    "LayerFreezeConfig",
    "LoraConfig",
    "MultitaskPromptTuningConfig",
    "PeftConfig",
    "PeftModel",
    "PrefixTuningConfig",
    "PromptEncoderConfig",
    "PromptTuningConfig",
    "QLoraConfig",
    "get_device",
    "get_peft_model",
    "make_config",
    "nearest_tokens",
]
