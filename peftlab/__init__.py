"""peftlab: parameter-efficient fine-tuning from scratch, for teaching.

    from peftlab import LoraConfig, get_peft_model
    model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    model.print_trainable_parameters()

Every method file registers itself on import (`peftlab.METHODS` lists them; `make_config(name, ...)` builds one).
"""

# each method module registers itself on import
from . import (  # noqa: F401
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
from .adalora import AdaLoraConfig
from .adapters import BottleneckConfig
from .config import PeftConfig
from .device import get_device
from .full import FullConfig
from .ia3 import IA3Config
from .llama_adapter import AdaptionPromptConfig
from .lora import LoraConfig
from .multitask import MultitaskPromptTuningConfig
from .p_tuning import PromptEncoderConfig
from .peft_model import PeftModel, get_peft_model
from .prefix import PrefixTuningConfig
from .prompt_tuning import PromptTuningConfig, nearest_tokens
from .qlora import QLoraConfig
from .registry import METHODS, make_config
from .selective import BitFitConfig, LayerFreezeConfig, LNTuningConfig

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
