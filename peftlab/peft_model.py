"""`PeftModel`: a frozen base model plus one or more named adapters.

It forwards and generates like the base model, and adds what a PEFT workflow needs: counting trainable
parameters, merging, disabling, several adapters swapped per task, and saving/loading just the adapter
(`adapter_config.json` + `adapter_model.safetensors`, in HF peft's key layout where peft has the method).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import os

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .config import PeftConfig
from .inject import AdapterLayer, freeze, replace_module, wrap_modules_to_save
from .registry import config_class_for, method_for

_FORWARD_KEYS = (
    "input_ids",
    "attention_mask",
    "labels",
    "inputs_embeds",
    "decoder_input_ids",
    "decoder_attention_mask",
    "position_ids",
    "token_type_ids",
)
CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def _owned_by(key: str, adapter_name: str) -> bool:
    """True when a parameter name has `adapter_name` as one of its dotted parts (`...lora_A.default.weight`)."""
    return f".{adapter_name}." in f".{key}."


def _strip_part(key: str, part: str) -> str:
    return f".{key}.".replace(f".{part}.", ".", 1)[1:-1]


def atomic_write(path: str, write) -> None:
    """Call write(tmp_path), then rename over `path`: a failure leaves any old file intact."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def read_adapter_dir(path: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(config dict, tensors) of a saved adapter directory, with clear errors and no unpickling."""
    cfg_path, weights_path = os.path.join(path, CONFIG_NAME), os.path.join(path, WEIGHTS_NAME)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path!r} is not a directory; pass the folder that save_pretrained wrote.")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(
            f"no {CONFIG_NAME} in {path!r} (found: {sorted(os.listdir(path))}). An adapter folder holds "
            f"{CONFIG_NAME} and {WEIGHTS_NAME}."
        )
    if not os.path.isfile(weights_path):
        pickled = [f for f in os.listdir(path) if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
        hint = f" Found {pickled}: peftlab never loads pickle files (they can run code)." if pickled else ""
        raise FileNotFoundError(f"no {WEIGHTS_NAME} in {path!r}.{hint}")
    try:
        with open(cfg_path) as f:
            cfg = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON: {e}") from e
    if not isinstance(cfg, dict) or "peft_type" not in cfg:
        raise ValueError(f"{cfg_path} has no 'peft_type' field; it does not describe an adapter.")
    try:
        tensors = load_file(weights_path)
    except Exception as e:  # truncated, not safetensors at all, ...
        raise ValueError(
            f"{weights_path} could not be read as safetensors ({type(e).__name__}: {e}). The file is truncated "
            f"or not a safetensors file; save it again with save_pretrained."
        ) from e
    return cfg, tensors


class PeftModel(nn.Module):
    def __init__(self, model: nn.Module, config: PeftConfig, adapter_name: str = "default"):
        super().__init__()
        if any(isinstance(m, AdapterLayer) for m in model.modules()):
            raise ValueError("this model already carries adapters; use peft_model.add_adapter(name, config).")
        self.base_model = model
        self.prompt_modules = nn.ModuleDict()  # model-level adapter modules (soft prompts), by adapter name
        self.peft_config: dict[str, PeftConfig] = {}
        self._extra_trainable: dict[str, set[str]] = {}  # shared params an adapter trains (e.g. biases)
        self.active_adapter: str | None = None
        self._prompt_disabled = False
        freeze(model)
        self.add_adapter(adapter_name, config)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in ("base_model", "prompt_modules"):
                raise
            return getattr(self.base_model, name)  # config, device, get_input_embeddings, ...

    # -- adapters --------------------------------------------------------------------------------------------
    def adapter_layers(self) -> list[tuple[str, AdapterLayer]]:
        return [(n, m) for n, m in self.base_model.named_modules() if isinstance(m, AdapterLayer)]

    def add_adapter(self, adapter_name: str, config: PeftConfig) -> None:
        """Inject a new adapter. The first one becomes active; later ones wait for `set_adapter` (as in peft)."""
        if not isinstance(adapter_name, str) or not adapter_name.isidentifier():
            raise ValueError(f"adapter_name={adapter_name!r}: use a plain identifier such as 'headlines'.")
        if adapter_name in self.peft_config:
            raise ValueError(
                f"an adapter named {adapter_name!r} exists already; adapters: {list(self.peft_config)}."
            )
        if self.peft_config:
            first = next(iter(self.peft_config.values()))
            if type(first) is not type(config):
                raise ValueError(
                    f"all adapters on one PeftModel must use the same method; this one has "
                    f"{type(first).__name__}, got {type(config).__name__}. Use a fresh base model instead."
                )
        config = copy.deepcopy(config)
        if config.task_type is None:
            enc_dec = getattr(getattr(self.base_model, "config", None), "is_encoder_decoder", False)
            config.task_type = "SEQ_2_SEQ_LM" if enc_dec else "CAUSAL_LM"
        if config.base_model_name_or_path is None:
            config.base_model_name_or_path = getattr(
                getattr(self.base_model, "config", None), "name_or_path", None
            )
        method = method_for(config)
        trainable_before = {n for n, p in self.named_parameters() if p.requires_grad}
        try:
            module = method.apply(self.base_model, config, adapter_name)
            if isinstance(module, nn.Module):
                self.prompt_modules[adapter_name] = module
            if getattr(config, "modules_to_save", None):
                wrap_modules_to_save(self.base_model, config.modules_to_save, adapter_name)
        except Exception:
            self._remove_adapter_modules(adapter_name)
            raise
        self.peft_config[adapter_name] = config
        self._extra_trainable[adapter_name] = {
            n
            for n, p in self.named_parameters()
            if p.requires_grad and n not in trainable_before and not _owned_by(n, adapter_name)
        }
        self.set_adapter(self.active_adapter or adapter_name)
        self.train(self.base_model.training)  # new layers (dropout!) follow the base model's train/eval mode

    def set_adapter(self, adapter_name: str) -> None:
        """Make `adapter_name` the one that runs (and the only one that trains)."""
        if adapter_name not in self.peft_config:
            raise ValueError(
                f"no adapter named {adapter_name!r}; adapters on this model: {list(self.peft_config)}."
            )
        for _, layer in self.adapter_layers():
            layer.active_adapter = adapter_name
        self.active_adapter = adapter_name
        train = not self.peft_config[adapter_name].inference_mode
        extras = self._extra_trainable[adapter_name]
        for n, p in self.named_parameters():
            p.requires_grad_(train and (_owned_by(n, adapter_name) or n in extras))

    def delete_adapter(self, adapter_name: str) -> None:
        if adapter_name not in self.peft_config:
            raise ValueError(
                f"no adapter named {adapter_name!r}; adapters on this model: {list(self.peft_config)}."
            )
        self._remove_adapter_modules(adapter_name)
        del self.peft_config[adapter_name], self._extra_trainable[adapter_name]
        if self.active_adapter == adapter_name:
            self.active_adapter = None
            if self.peft_config:
                self.set_adapter(next(iter(self.peft_config)))

    def _remove_adapter_modules(self, adapter_name: str) -> None:
        for _, layer in self.adapter_layers():
            layer.delete_adapter(adapter_name)
        if adapter_name in self.prompt_modules:
            del self.prompt_modules[adapter_name]
        for name, layer in self.adapter_layers():  # drop wrappers left with no adapter at all
            if not layer.adapter_names():
                replace_module(self.base_model, name, layer.base_layer)

    @property
    def active_peft_config(self) -> PeftConfig:
        return self.peft_config[self.active_adapter]

    # -- forward / generate ----------------------------------------------------------------------------------
    def _prompt_module(self):
        if self._prompt_disabled or self.active_adapter not in self.prompt_modules:
            return None
        return self.prompt_modules[self.active_adapter]

    def forward(self, *args, **kwargs):
        prompt = self._prompt_module()
        return (
            self.base_model(*args, **kwargs) if prompt is None else prompt(self.base_model, *args, **kwargs)
        )

    # transformers.Trainer keeps only the batch keys named in forward's signature: name the usual ones
    forward.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None) for n in _FORWARD_KEYS]
        + [inspect.Parameter("kwargs", inspect.Parameter.VAR_KEYWORD)]
    )

    def generate(self, *args, **kwargs):
        prompt = self._prompt_module()
        if prompt is None:
            return self.base_model.generate(*args, **kwargs)
        return prompt.generate(self.base_model, *args, **kwargs)

    # -- counting --------------------------------------------------------------------------------------------
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameter counts; quantized layers count their logical weights (`quantized_numel`)."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.parameters())
        total += sum(getattr(m, "quantized_numel", 0) for m in self.modules())
        return trainable, total

    def print_trainable_parameters(self) -> None:
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    # -- merging ---------------------------------------------------------------------------------------------
    def _check_mergeable(self):
        if any(not getattr(m, "mergeable", False) for m in self.prompt_modules.values()):
            raise ValueError("soft-prompt adapters add tokens, not weight deltas: there is nothing to merge.")

    def update_and_allocate(self, step: int) -> None:
        """Call once per optimizer step, after `optimizer.step()`, for methods that need it (AdaLoRA)."""
        hook = method_for(self.active_peft_config).on_step
        if hook is not None:
            hook(self, step)

    def merge_adapter(self) -> None:
        """Fold the active adapter into the base weights (forward then costs what the base costs)."""
        self._check_mergeable()
        for _, layer in self.adapter_layers():
            if not layer.merged and layer.active_adapter in layer.adapter_names():
                layer.merge(layer.active_adapter)

    def unmerge_adapter(self) -> None:
        for _, layer in self.adapter_layers():
            if layer.merged:
                layer.unmerge()

    def _unload(self, merge: bool) -> nn.Module:
        if merge:
            self._check_mergeable()
        for name, layer in self.adapter_layers()[::-1]:  # innermost first
            replace_module(self.base_model, name, layer.unload(merge))
        return self.base_model

    def merge_and_unload(self) -> nn.Module:
        """Merge the active adapter and return the plain base model (same size and speed as before)."""
        return self._unload(merge=True)

    def unload(self) -> nn.Module:
        """Remove every adapter and return the untouched base model."""
        return self._unload(merge=False)

    @contextlib.contextmanager
    def disable_adapter(self):
        """`with model.disable_adapter():` runs the base model alone (merged adapters are unmerged meanwhile)."""
        layers = [layer for _, layer in self.adapter_layers()]
        if not layers and not self.prompt_modules:
            raise RuntimeError(
                f"{type(self.active_peft_config).__name__} trains the base weights themselves: there is no separate "
                "adapter to switch off. Keep a copy of the base model to compare against instead."
            )
        merged = {layer: list(layer.merged_adapters) for layer in layers}
        for layer in layers:
            if layer.merged:
                layer.unmerge()
            layer.disabled = True
        self._prompt_disabled = True
        try:
            yield
        finally:
            self._prompt_disabled = False
            for layer in layers:
                layer.disabled = False
                for name in merged[layer]:
                    layer.merge(name)

    # -- saving / loading ------------------------------------------------------------------------------------
    def _to_peft_key(self, key: str, adapter_name: str) -> str:
        """Our parameter name -> HF peft's saved key (adapter name removed, `base_model.model.` prefix)."""
        key = _strip_part(
            key.replace("modules_to_save.", "") if "modules_to_save." in key else key, adapter_name
        )
        if key.startswith("base_model."):
            return "base_model.model." + key[len("base_model.") :]
        return key

    def _tensors(self) -> dict[str, torch.Tensor]:
        """Parameters and buffers by name, each shared tensor once (unlike state_dict, which repeats aliases)."""
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def _adapter_keys(self, adapter_name: str) -> dict[str, str]:
        """{peft key: our state-dict key} for everything adapter `adapter_name` saves."""
        extras = self._extra_trainable[adapter_name]
        ours = [k for k in self._tensors() if _owned_by(k, adapter_name) or k in extras]
        keys = {self._to_peft_key(k, adapter_name): k for k in ours}
        hook = method_for(self.peft_config[adapter_name]).to_peft_keys
        return hook(keys) if hook else keys

    def adapter_state_dict(self, adapter_name: str | None = None) -> dict[str, torch.Tensor]:
        adapter_name = adapter_name or self.active_adapter
        sd = self._tensors()
        return {pk: sd[k].detach().cpu().contiguous() for pk, k in self._adapter_keys(adapter_name).items()}

    def save_pretrained(self, save_directory: str, selected_adapters: list[str] | None = None) -> None:
        """Write each adapter (the "default" one at the top, others in sub-folders, as peft does). Atomic."""
        for name in selected_adapters or list(self.peft_config):
            if name not in self.peft_config:
                raise ValueError(
                    f"no adapter named {name!r}; adapters on this model: {list(self.peft_config)}."
                )
            folder = save_directory if name == "default" else os.path.join(save_directory, name)
            os.makedirs(folder, exist_ok=True)
            tensors = self.adapter_state_dict(name)
            meta = {"format": "pt", "peftlab_method": method_for(self.peft_config[name]).name}
            config = {**self.peft_config[name].to_dict(), "inference_mode": True}
            atomic_write(os.path.join(folder, WEIGHTS_NAME), lambda p, t=tensors, m=meta: save_file(t, p, m))
            atomic_write(os.path.join(folder, CONFIG_NAME), lambda p, c=config: _write_json(c, p))

    def load_adapter(self, path: str, adapter_name: str, is_trainable: bool = False) -> None:
        """Add an adapter saved in `path` under the name `adapter_name`. On any error the model is unchanged."""
        cfg, tensors = read_adapter_dir(path)
        config = config_class_for(cfg["peft_type"], cfg).from_dict(
            {**cfg, "inference_mode": not is_trainable}
        )
        self.add_adapter(adapter_name, config)
        try:
            self._load_tensors(adapter_name, tensors, path)
        except Exception:
            self.delete_adapter(adapter_name)
            raise

    def _load_tensors(self, adapter_name: str, tensors: dict[str, torch.Tensor], path: str) -> None:
        keys = self._adapter_keys(adapter_name)
        hook = method_for(self.peft_config[adapter_name]).from_peft_keys
        tensors = hook(tensors) if hook else tensors
        sd = self._tensors()
        base = {self._to_peft_key(k, adapter_name): k for k in sd}  # every key, for full weights in the file
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise KeyError(
                f"{path}: the file lacks {len(missing)} adapter tensor(s) this model needs, e.g. {missing[:3]}."
            )
        for pk, t in tensors.items():
            ours = keys.get(pk) or base.get(pk)
            if ours is None:
                raise KeyError(
                    f"{path}: key {pk!r} matches nothing in this model; was it saved for another model?"
                )
            if tuple(t.shape) != tuple(sd[ours].shape):
                raise ValueError(
                    f"{path}: {pk!r} has shape {tuple(t.shape)} in the file but {tuple(sd[ours].shape)} in this "
                    f"model; the adapter was saved for a base model with different sizes."
                )
            if pk not in keys and not torch.equal(t.to(sd[ours].dtype), sd[ours].cpu()):
                raise ValueError(
                    f"{path}: {pk!r} holds base weights that differ from this model's; refusing to load."
                )
        with torch.no_grad():
            for pk, ours in keys.items():
                sd[ours].copy_(tensors[pk].to(sd[ours].dtype))

    @classmethod
    def from_pretrained(
        cls, model: nn.Module, path: str, adapter_name: str = "default", is_trainable: bool = False
    ) -> PeftModel:
        """Wrap `model` with the adapter saved in `path`. On any error `model` is left as it was."""
        cfg, tensors = read_adapter_dir(path)
        config = config_class_for(cfg["peft_type"], cfg).from_dict(
            {**cfg, "inference_mode": not is_trainable}
        )
        flags = {n: p.requires_grad for n, p in model.named_parameters()}
        peft_model = None
        try:
            peft_model = cls(model, config, adapter_name)
            peft_model._load_tensors(adapter_name, tensors, path)
        except Exception:
            if peft_model is not None:
                peft_model.unload()
            for n, p in model.named_parameters():
                p.requires_grad_(flags[n])
            raise
        return peft_model


def _write_json(obj: dict, path: str) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)


def get_peft_model(model: nn.Module, config: PeftConfig, adapter_name: str = "default") -> PeftModel:
    """Freeze `model`, inject the method that `config` describes, and return the `PeftModel` wrapper."""
    return PeftModel(model, config, adapter_name)
