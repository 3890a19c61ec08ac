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
