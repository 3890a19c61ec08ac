"""Shared test setup: offline, caches inside the repo, tiny random models built from configs (never downloaded)."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for var, sub in [
    ("HF_HOME", ".cache/huggingface"),
    ("MPLCONFIGDIR", ".cache/matplotlib"),
    ("IPYTHONDIR", ".cache/ipython"),
    ("JUPYTER_CONFIG_DIR", ".cache/jupyter/config"),
    ("JUPYTER_DATA_DIR", ".cache/jupyter/data"),
    ("JUPYTER_RUNTIME_DIR", ".cache/jupyter/runtime"),
]:
    os.environ.setdefault(var, str(ROOT / sub))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("PEFTLAB_FAST", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

transformers.logging.set_verbosity_error()

KINDS = ("t5", "llama", "gpt2")
VOCAB = 100

# the attention projections each architecture calls its query/value (or fused qkv) layers
ATTN_TARGETS = {"t5": ["q", "v"], "llama": ["q_proj", "v_proj"], "gpt2": ["c_attn"]}
# key/value and feed-forward-input layers, as (IA)^3 uses them
KV_TARGETS = {"t5": ["k", "v"], "llama": ["k_proj", "v_proj"], "gpt2": ["c_attn"]}
FF_TARGETS = {"t5": ["wo"], "llama": ["down_proj"], "gpt2": ["mlp.c_proj"]}


def make_model(kind: str, seed: int = 0):
    """A tiny random model of `kind` (same seed -> bit-identical weights). Dropout is off so logits are exact."""
    torch.manual_seed(seed)
    if kind == "t5":
        cfg = transformers.T5Config(
            vocab_size=VOCAB,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_heads=4,
            dropout_rate=0.0,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
        return transformers.T5ForConditionalGeneration(cfg).eval()
    if kind == "llama":
        cfg = transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
        )
        return transformers.LlamaForCausalLM(cfg).eval()
    if kind == "gpt2":
        cfg = transformers.GPT2Config(
            vocab_size=VOCAB,
            n_embd=32,
            n_layer=2,
            n_head=4,
            n_positions=64,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
        return transformers.GPT2LMHeadModel(cfg).eval()
    raise ValueError(f"unknown kind {kind!r}; use one of {KINDS}")


def make_batch(kind: str, batch: int = 2, length: int = 7, seed: int = 1) -> dict:
    """input_ids, attention_mask and labels that every model kind accepts (T5 builds decoder inputs from labels)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (batch, length), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    out["labels"] = torch.randint(3, VOCAB, (batch, 5), generator=g) if kind == "t5" else ids.clone()
    return out


@pytest.fixture
def model_factory():
    return make_model


@pytest.fixture
def batch_factory():
    return make_batch
