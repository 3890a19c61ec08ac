"""peftlab: parameter-efficient fine-tuning from scratch, for teaching.

from peftlab import LoraConfig, get_peft_model
model = get_peft_model(base, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
model.print_trainable_parameters()
"""

from . import lora  # noqa: F401  (each method module registers itself on import)
from .config import PeftConfig
from .device import get_device
from .lora import LoraConfig
from .peft_model import PeftModel
from .registry import METHODS, get_peft_model, make_config

__all__ = ["LoraConfig", "METHODS", "PeftConfig", "PeftModel", "get_device", "get_peft_model", "make_config"]

from . import adapters, full, ia3, selective  # noqa: E402, F401
from .adapters import BottleneckConfig  # noqa: E402
from .full import FullConfig  # noqa: E402
from .ia3 import IA3Config  # noqa: E402
from .selective import BitFitConfig, LayerFreezeConfig, LNTuningConfig  # noqa: E402

__all__ += ["BitFitConfig", "BottleneckConfig", "FullConfig", "IA3Config"]
__all__ += ["LNTuningConfig", "LayerFreezeConfig"]

from . import llama_adapter, multitask, p_tuning, prefix, prompt_tuning  # noqa: E402, F401
from .llama_adapter import AdaptionPromptConfig  # noqa: E402
from .multitask import MultitaskPromptTuningConfig  # noqa: E402
from .p_tuning import PromptEncoderConfig  # noqa: E402
from .prefix import PrefixTuningConfig  # noqa: E402
from .prompt_tuning import PromptTuningConfig, nearest_tokens  # noqa: E402

__all__ += ["AdaptionPromptConfig", "MultitaskPromptTuningConfig", "PrefixTuningConfig", "PromptEncoderConfig"]
__all__ += ["PromptTuningConfig", "nearest_tokens"]

from . import adalora, dora, nf4, qlora  # noqa: E402, F401
from .adalora import AdaLoraConfig  # noqa: E402
from .qlora import QLoraConfig  # noqa: E402

__all__ += ["AdaLoraConfig", "QLoraConfig"]
