"""A short, readable training loop and batched generation, for PeftModels and plain HF models alike.

    from peftlab import data, models, get_peft_model, LoraConfig
    from peftlab.train import train, generate, evaluate_rouge
    model, tok = models.load("tiny")
    model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    history = train(model, tok, data.load("bbc-headlines", "train"), steps=200, lr=2e-3)
    history.plot()                                   # loss curve
    print(evaluate_rouge(model, tok, data.load("bbc-headlines", "test", limit=100)))

The loop is the textbook one: batch -> forward -> loss / accum -> backward -> (every accum batches)
clip, AdamW step, zero grads. Everything is seeded: the same call gives the same losses.
The same features and collator also work under `transformers.Trainer` (see `trainer_inputs`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from . import data as data_mod
from .device import get_device


# ----------------------------------------------------------------------------- history
@dataclass
class History:
    """What `train` returns: one record per optimizer step, {"step", "loss", "lr", "seconds"}."""

    records: list[dict] = field(default_factory=list)

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records]

    @property
    def steps(self) -> list[int]:
        return [r["step"] for r in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def __iter__(self):
        return iter(self.records)

    def plot(self, ax=None, label: str | None = None, smooth: int = 1):
        """Loss per step (moving average over `smooth` steps) on a matplotlib axis."""
        import matplotlib.pyplot as plt

        ax = ax or plt.gca()
        ys = self.losses
        if smooth > 1:
            ys = [
                sum(ys[max(0, i - smooth + 1) : i + 1]) / len(ys[max(0, i - smooth + 1) : i + 1])
                for i in range(len(ys))
            ]
        ax.plot(self.steps, ys, label=label)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        if label:
            ax.legend()
        return ax


# ----------------------------------------------------------------------------- helpers
def is_seq2seq(model) -> bool:
    """True for encoder-decoder models (T5): their config says `is_encoder_decoder`."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def to_features(
    model, tokenizer, examples: list[dict], max_len: int = 256, max_target_len: int = 48
) -> list[dict]:
    """Examples (dicts with text/target/template) -> features; already-tokenized features pass through."""
    if not examples:
        raise ValueError("no training examples given")
    if "input_ids" in examples[0]:
        return list(examples)
    if "text" not in examples[0] or "target" not in examples[0]:
        raise ValueError(
            f"examples must be dicts with 'text' and 'target' (from peftlab.data.load) or tokenized features "
            f"with 'input_ids'; got keys {sorted(examples[0])}"
        )
    if is_seq2seq(model):
        return data_mod.format_seq2seq(
            examples, tokenizer, max_source_len=max_len, max_target_len=max_target_len
        )
    return data_mod.format_causal(examples, tokenizer, max_len=max_len, max_target_len=max_target_len)


def _batches(n: int, batch_size: int, seed: int):
    """Index lists forever: a seeded shuffle per epoch, cut into batches (the last short one kept)."""
    epoch = 0
    while True:
        g = torch.Generator().manual_seed(seed * 7919 + epoch)
        order = torch.randperm(n, generator=g).tolist()
        for i in range(0, n, batch_size):
            yield epoch, order[i : i + batch_size]
        epoch += 1


# ----------------------------------------------------------------------------- train
def train(
    model,
    tokenizer,
    examples: list[dict],
    *,
    steps: int | None = None,
    epochs: float | None = None,
    lr: float = 1e-3,
    batch_size: int = 8,
    grad_accum: int = 1,
    max_len: int = 256,
    max_target_len: int = 48,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    max_grad_norm: float | None = 1.0,
    seed: int = 0,
    device=None,
    bf16: bool = False,
    progress: bool = True,
    on_step=None,
    max_seconds: float | None = None,
) -> History:
    """Fine-tune `model` (a PeftModel: only its adapter trains; a plain model: every parameter) with AdamW.

    examples:    from `peftlab.data.load(...)` (formatted here) or pre-tokenized features.
    steps/epochs: how long (give one); an optimizer step consumes batch_size * grad_accum examples.
    bf16:        bfloat16 autocast, used on CUDA only (ignored on CPU).
    on_step:     optional callback(step, model), e.g. AdaLoRA's `model.update_and_allocate`.
    max_seconds: stop early once this much wall-clock time has passed (a "2-minute fine-tune").
    Returns a `History` (`.losses`, `.plot()`); the model is left in eval mode on `device`.
    """
    if (steps is None) == (epochs is None):
        raise ValueError("give exactly one of steps=... or epochs=...")
    if batch_size < 1 or grad_accum < 1:
        raise ValueError(f"batch_size and grad_accum must be >= 1 (got {batch_size}, {grad_accum})")
    features = to_features(model, tokenizer, examples, max_len, max_target_len)
    if steps is None:
        steps = max(1, math.ceil(epochs * len(features) / (batch_size * grad_accum)))
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")

    torch.manual_seed(seed)
    dev = get_device(device)
    model.to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (did every adapter get frozen?)")
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    collator = data_mod.Collator(tokenizer)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if (bf16 and dev.type == "cuda") else nullcontext()
    )

    history, batches, t0 = History(), _batches(len(features), batch_size, seed), time.time()
    model.train()
    bar = tqdm(range(1, steps + 1), desc="train", disable=not progress)
    for step in bar:
        for group in opt.param_groups:  # linear warmup, then constant
            group["lr"] = lr * min(1.0, step / warmup_steps) if warmup_steps else lr
        total = 0.0
        for _ in range(grad_accum):
            _, idx = next(batches)
            batch = {k: v.to(dev) for k, v in collator([features[i] for i in idx]).items()}  # each (B, T)
            with autocast:
                loss = model(**batch).loss / grad_accum
            loss.backward()
            total += loss.item()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        opt.step()
        if on_step is not None:  # before zero_grad: AdaLoRA's update_and_allocate reads the gradients
            on_step(step, model)
        opt.zero_grad(set_to_none=True)
        history.records.append(
            {"step": step, "loss": total, "lr": opt.param_groups[0]["lr"], "seconds": time.time() - t0}
        )
        bar.set_postfix(loss=f"{total:.3f}")
        if max_seconds is not None and time.time() - t0 > max_seconds:
            break
    bar.close()
    model.eval()
    return history


def trainer_inputs(
    model, tokenizer, examples: list[dict], max_len: int = 256, max_target_len: int = 48
) -> dict:
    """`train_dataset` and `data_collator` for transformers.Trainer, from the same formatting `train` uses.

    Example: `Trainer(model=peft_model, args=TrainingArguments("out", max_steps=100),
    **trainer_inputs(peft_model, tok, examples)).train()` (accelerate, multi-GPU, DeepSpeed: Trainer's job).
    """
    return {
        "train_dataset": to_features(model, tokenizer, examples, max_len, max_target_len),
        "data_collator": data_mod.Collator(tokenizer),
    }


# ----------------------------------------------------------------------------- generate
@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list,
    *,
    max_new_tokens: int = 32,
    batch_size: int = 16,
    num_beams: int = 1,
    max_input_len: int = 256,
    first_line: bool = False,
    device=None,
    progress: bool = True,
    **generate_kwargs,
) -> list[str]:
    """Batched greedy (num_beams=1) or beam-search generation; returns the new text of each prompt.

    prompts: strings, or example dicts from `peftlab.data.load` (their prompt is built with the text cut
             to fit `max_input_len` tokens, exactly as in training).
    first_line: keep only the first line of each output (useful for a base model that rambles on).
    """
    if isinstance(prompts, (str, dict)):
        raise TypeError("generate takes a list of prompts (strings or example dicts), not a single one")
    seq2seq = is_seq2seq(model)
    dev = get_device(device) if device is not None else next(model.parameters()).device
    model.to(dev).eval()
    budget = max_input_len if seq2seq else max_input_len - 1  # room for BOS
    texts = [p if isinstance(p, str) else data_mod.build_prompt(p, tokenizer, budget) for p in prompts]
    old_sides = tokenizer.padding_side, tokenizer.truncation_side
    # decoder-only: pad and cut on the left, so new tokens follow the prompt and its instruction survives
    tokenizer.padding_side = tokenizer.truncation_side = "right" if seq2seq else "left"
    outputs = []
    try:
        for i in tqdm(range(0, len(texts), batch_size), desc="generate", disable=not progress):
            enc = tokenizer(
                texts[i : i + batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=max_input_len,
            ).to(dev)  # input_ids (B, T)
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                num_beams=num_beams,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
                **generate_kwargs,
            )  # (B, T + new) for decoder-only, (B, new) for seq2seq
            new = out if seq2seq else out[:, enc["input_ids"].shape[1] :]
            outputs += tokenizer.batch_decode(new, skip_special_tokens=True)
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = old_sides
    outputs = [o.strip() for o in outputs]
    if first_line:
        outputs = [o.split("\n", 1)[0].strip() for o in outputs]
    return outputs


@torch.no_grad()
def evaluate_loss(
    model, tokenizer, examples: list[dict], *, max_len: int = 256, batch_size: int = 16
) -> float:
    """Mean cross-entropy (nats per target token) on held-out examples: only the answer tokens count."""
    features = to_features(model, tokenizer, examples, max_len)
    collator, dev = data_mod.Collator(tokenizer), next(model.parameters()).device
    model.eval()
    total, count = 0.0, 0
    for i in range(0, len(features), batch_size):
        batch = {k: v.to(dev) for k, v in collator(features[i : i + batch_size]).items()}  # each (B, T)
        labels = batch["labels"] if is_seq2seq(model) else batch["labels"][:, 1:]  # causal LMs shift by one
        n = int((labels != data_mod.IGNORE_INDEX).sum())
        total += model(**batch).loss.item() * n  # HF averages over the (shifted) target tokens
        count += n
    return total / max(count, 1)


def evaluate_rouge(
    model, tokenizer, examples: list[dict], *, first_line: bool = True, **generate_kwargs
) -> dict:
    """Generate for each example and score against its target: {"rouge1", "rouge2", "rougeL", "rougeLsum"}.

    Greedy decoding of a weak model often stops at once (EOS is the single likeliest token): pass
    `min_new_tokens=4` to force an answer."""
    from .rouge import compute_rouge

    preds = generate(model, tokenizer, examples, first_line=first_line, **generate_kwargs)
    return compute_rouge(preds, [str(e["target"]) for e in examples])


# ----------------------------------------------------------------------------- command line
def main(argv=None) -> None:
    """`python -m peftlab.train`: ROUGE of a model on a task before and after a time-boxed LoRA fine-tune."""
    import argparse

    from . import LoraConfig, get_peft_model, models

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--model", default="tiny")
    ap.add_argument("--task", default="bbc-headlines")
    ap.add_argument("--minutes", type=float, default=2.0, help="wall-clock budget of the fine-tune")
    ap.add_argument("--steps", type=int, default=200, help="optimizer steps (stops early at --minutes)")
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--test-limit", type=int, default=100, help="test examples scored (sorted by id)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tok = models.load(args.model)
    test = data_mod.load(args.task, "test", limit=args.test_limit)
    gen = dict(max_new_tokens=20, min_new_tokens=4, max_input_len=args.max_len, batch_size=25)
    loss_before = evaluate_loss(model, tok, test, max_len=args.max_len)
    before = evaluate_rouge(model, tok, test, **gen)
    torch.manual_seed(args.seed)
    peft = get_peft_model(
        model, LoraConfig(r=args.rank, lora_alpha=2 * args.rank, target_modules="all-linear")
    )
    peft.print_trainable_parameters()
    cpu0 = time.process_time()
    hist = train(
        peft,
        tok,
        data_mod.load(args.task, "train"),
        steps=args.steps,
        lr=args.lr,
        batch_size=args.batch_size,
        max_len=args.max_len,
        seed=args.seed,
        max_seconds=args.minutes * 60,
    )
    cpu = time.process_time() - cpu0
    preds = generate(peft, tok, test, first_line=True, **gen)
    from .rouge import compute_rouge

    after = compute_rouge(preds, [str(e["target"]) for e in test])
    loss_after = evaluate_loss(peft, tok, test, max_len=args.max_len)
    print(
        f"fine-tune: {len(hist)} steps in {hist[-1]['seconds']:.0f} s wall, {cpu:.0f} s CPU "
        f"({torch.get_num_threads()} threads), loss {hist.losses[0]:.3f} -> "
        f"{sum(hist.losses[-10:]) / len(hist.losses[-10:]):.3f} (mean of last 10)"
    )
    print(f"held-out loss per answer token: before {loss_before:.3f}, after {loss_after:.3f}")
    for e, p in list(zip(test, preds))[:5]:
        print(f"  {e['target']!r:60} <- {p!r}")
    print(
        f"ROUGE-1 on {len(test)} {args.task} test examples: before {before['rouge1']:.4f}, after {after['rouge1']:.4f}"
    )
    print(
        f"ROUGE-2 {before['rouge2']:.4f} -> {after['rouge2']:.4f}, ROUGE-L {before['rougeL']:.4f} -> {after['rougeL']:.4f}"
    )


if __name__ == "__main__":
    main()
