"""The training loop (PEFT and full fine-tuning, causal and seq2seq), its determinism, transformers.Trainer
compatibility, batched generation, and that a short LoRA fine-tune teaches `tiny` the headline task."""

import math

import pytest
import torch
import transformers

from peftlab import LoraConfig, data, get_peft_model, models
from peftlab.rouge import compute_rouge
from peftlab.train import History, evaluate_rouge, generate, train, trainer_inputs

LORA = dict(r=8, lora_alpha=16, target_modules="all-linear")


@pytest.fixture(scope="module")
def tok():
    return models.load("tiny", device="cpu")[1]


@pytest.fixture(scope="module")
def examples():
    return data.load("bbc-headlines", "train", limit=8)


def tiny_llama(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    return transformers.LlamaForCausalLM(cfg)


def tiny_t5(vocab: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = transformers.T5Config(
        vocab_size=vocab,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=1,
        num_heads=4,
        dropout_rate=0.0,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=2,
    )
    return transformers.T5ForConditionalGeneration(cfg)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


# ----------------------------------------------------------------------------- train
def test_lora_training_changes_only_the_adapter_and_fits(tok, examples):
    model = get_peft_model(models.load("tiny", device="cpu")[0], LoraConfig(**LORA))
    before = snapshot(model)
    hist = train(model, tok, examples[:4], steps=25, lr=1e-2, batch_size=4, max_len=96, progress=False)
    assert isinstance(hist, History) and len(hist) == 25 and hist.steps == list(range(1, 26))
    assert all(math.isfinite(x) for x in hist.losses)
    assert sum(hist.losses[-3:]) / 3 < 0.7 * hist.losses[0]  # memorizes 4 examples
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)
    assert not model.training  # left in eval mode


def test_full_fine_tuning_of_a_plain_model(tok, examples):
    model = tiny_llama(len(tok))
    before = snapshot(model)
    hist = train(model, tok, examples, steps=3, lr=1e-3, batch_size=4, max_len=64, progress=False)
    assert len(hist.losses) == 3
    unchanged = [k for k, v in model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged  # every weight trains


def test_seeded_runs_are_identical(tok, examples):
    runs = []
    for _ in range(2):
        model = tiny_llama(len(tok))
        runs.append(train(model, tok, examples, steps=4, batch_size=2, max_len=64, seed=3, progress=False).losses)
    assert runs[0] == runs[1]
    other = train(tiny_llama(len(tok)), tok, examples, steps=4, batch_size=2, max_len=64, seed=4, progress=False)
    assert other.losses != runs[0]  # the seed picks the batches


def test_gradient_accumulation_matches_the_big_batch(tok):
    # equal-length examples, so the mean over two micro-batches of 2 is the mean over one batch of 4
    ex = [{"id": str(i), "text": f"word{i} " * 5, "target": "yes", "template": "{text}:"} for i in range(4)]
    feats = data.format_causal(ex, tok, max_len=32)
    assert len({len(f["input_ids"]) for f in feats}) == 1
    a, b = tiny_llama(len(tok)), tiny_llama(len(tok))
    ha = train(a, tok, feats, steps=1, batch_size=4, grad_accum=1, lr=1e-2, progress=False)
    hb = train(b, tok, feats, steps=1, batch_size=2, grad_accum=2, lr=1e-2, progress=False)
    assert ha.losses[0] == pytest.approx(hb.losses[0], rel=1e-5)
    for (k, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-5), k


def test_epochs_set_the_number_of_steps(tok, examples):
    hist = train(tiny_llama(len(tok)), tok, examples, epochs=1.5, batch_size=4, max_len=48, progress=False)
    assert len(hist) == math.ceil(1.5 * len(examples) / 4)


def test_seq2seq_model_trains(tok):
    ex = data.load("drug-reviews", "train", limit=4)
    model = get_peft_model(tiny_t5(len(tok)), LoraConfig(r=2, target_modules=["q", "v"]))
    hist = train(model, tok, ex, steps=2, batch_size=2, max_len=64, lr=1e-2, progress=False)
    assert len(hist) == 2 and all(math.isfinite(x) for x in hist.losses)
    out = generate(model, tok, ex[:2], max_new_tokens=3, max_input_len=64, progress=False)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)


def test_bad_arguments(tok, examples):
    m = tiny_llama(len(tok))
    with pytest.raises(ValueError, match="exactly one of steps"):
        train(m, tok, examples, steps=2, epochs=1, progress=False)
    with pytest.raises(ValueError, match="exactly one of steps"):
        train(m, tok, examples, progress=False)
    with pytest.raises(ValueError, match="'text' and 'target'"):
        train(m, tok, [{"prompt": "x"}], steps=1, progress=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        for p in m.parameters():
            p.requires_grad_(False)
        train(m, tok, examples, steps=1, progress=False)


def test_history_plot(tok, examples):
    import matplotlib

    matplotlib.use("Agg")
    hist = train(tiny_llama(len(tok)), tok, examples, steps=3, batch_size=4, max_len=48, progress=False)
    ax = hist.plot(smooth=2)
    assert len(ax.lines[0].get_xdata()) == 3


# ----------------------------------------------------------------------------- transformers.Trainer
def test_same_wrapper_under_transformers_trainer(tok, examples, tmp_path):
    model = get_peft_model(models.load("tiny", device="cpu")[0], LoraConfig(**LORA))
    before = snapshot(model)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=2,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
    )  # default TrainingArguments otherwise (remove_unused_columns=True included)
    trainer = transformers.Trainer(model=model, args=args, **trainer_inputs(model, tok, examples, max_len=64))
    out = trainer.train()
    assert out.global_step == 3
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k for k in changed)


# ----------------------------------------------------------------------------- generate
def test_batched_generation_equals_one_by_one(tok):
    model = models.load("tiny", device="cpu")[0]
    prompts = ["The government said", "Shares in the company rose after", "In the beginning"]
    batched = generate(model, tok, prompts, max_new_tokens=8, batch_size=3, progress=False)
    single = [generate(model, tok, [p], max_new_tokens=8, progress=False)[0] for p in prompts]
    assert batched == single
    assert all(len(o) > 0 for o in batched)
    beams = generate(model, tok, prompts[:1], max_new_tokens=8, num_beams=3, progress=False)
    assert len(beams) == 1 and isinstance(beams[0], str)
    with pytest.raises(TypeError, match="list of prompts"):
        generate(model, tok, "one prompt", progress=False)


def test_generate_from_examples_keeps_the_instruction(tok):
    model = tiny_llama(len(tok))
    e = data.load("bbc-headlines", "test", limit=1)
    out = generate(model, tok, e, max_new_tokens=4, max_input_len=32, first_line=True, progress=False)
    assert len(out) == 1 and "\n" not in out[0]


# ----------------------------------------------------------------------------- the headline task
@pytest.mark.slow
def test_short_lora_finetune_teaches_tiny_headlines(tok):
    """~150 LoRA steps on CPU must lift ROUGE-1 on held-out test articles well above the base model."""
    torch.manual_seed(0)
    model = models.load("tiny", device="cpu")[0]
    train_ex = data.load("bbc-headlines", "train")
    test_ex = data.load("bbc-headlines", "test", limit=40)
    gen = dict(max_new_tokens=16, max_input_len=192, batch_size=20, progress=False)
    base = evaluate_rouge(model, tok, test_ex, **gen)["rouge1"]
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    train(peft, tok, train_ex, steps=150, lr=3e-3, batch_size=8, max_len=192, progress=False)
    preds = generate(peft, tok, test_ex, first_line=True, **gen)
    tuned = compute_rouge(preds, [e["target"] for e in test_ex])["rouge1"]
    print(f"ROUGE-1 base {base:.4f} -> LoRA {tuned:.4f}; e.g. {preds[:3]}")
    assert tuned > base + 0.03
    assert tuned > 0.08
    assert sum(len(p.split()) <= 16 for p in preds) >= 0.9 * len(preds)  # headline-length answers
