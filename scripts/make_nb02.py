"""Build notebooks/02_selective.ipynb (run: .venv/bin/python scripts/make_nb02.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 02 · Full fine-tuning vs selective fine-tuning

    **Goal.** Train the same model on the same task three ways (every weight, only the top blocks, only the norm
    scales), count what each one trains, and measure what each one *forgets* of its pretraining. Along the way:
    BitFit (train only the biases), and why it does not apply to a LLaMA.

    Concepts: catastrophic forgetting and one-copy-per-task (3), selective fine-tuning and its mixed results (7).
    """),
    code(r"""
    from peftlab.notebook import FAST, pick, show, quiet
    quiet()

    import copy
    import time

    import matplotlib.pyplot as plt
    import pandas as pd
    import torch
    from IPython.display import display
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from peftlab import data, get_peft_model, make_config, models
    from peftlab.grading import check
    from peftlab.train import train

    OUT = models.ROOT / "build" / "nb02"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    ## 1. Full fine-tuning: every weight moves

    Full fine-tuning continues training *all* of a pretrained model's weights on the new task. It works, but:

    * it needs gradients and optimizer state for every weight (notebook 00);
    * the model can **overfit** a small task dataset, and it can **forget** what pretraining taught it
      (*catastrophic forgetting*): the weights that held general language knowledge are overwritten;
    * every task produces a full-size copy of the model to store and serve.

    **Selective** fine-tuning is the oldest answer: keep most weights frozen and train a chosen subset:
    some layers (e.g. the top $k$ blocks), some components (e.g. the norm layers), or one parameter type
    (e.g. every bias: BitFit). peftlab registers each as a method, so they all go through `get_peft_model`.
    Here is how layer freezing picks its subset:
    """),
    code(r"""
    from peftlab.selective import apply_layer_freeze
    show(apply_layer_freeze)
    """),
    md(r"""
    ## 2. What each method trains

    Our `tiny` model is a ~6.5M-parameter LLaMA. We wrap a fresh copy with each method and let the package count.
    (Selective methods keep a trainable *copy* of each selected tensor next to the frozen original, so the
    "all" column grows a little: the original stays untouched for `disable_adapter` and unmerging.)
    """),
    code(r"""
    base, tok = models.load("tiny")
    n_base = sum(p.numel() for p in base.parameters())
    n_layers = base.config.num_hidden_layers
    print(f"tiny: {n_base:,} parameters, {n_layers} transformer blocks")

    METHODS = {  # label -> (method name, config fields)
        "full": ("full", {}),
        "top-2 blocks": ("layer_freeze", {"num_trainable_layers": 2}),
        "top-1 block": ("layer_freeze", {"num_trainable_layers": 1}),
        "norm only": ("norm", {}),
    }
    rows = []
    for label, (name, kw) in METHODS.items():
        m = get_peft_model(copy.deepcopy(base), make_config(name, **kw))
        trainable, total = m.get_nb_trainable_parameters()
        rows.append({"method": label, "trainable": trainable, "% of base model": round(100 * trainable / n_base, 3)})
    counts = pd.DataFrame(rows).set_index("method")
    display(counts)
    """),
    md(r"""
    Which tensors does "top-2 blocks" train? Only those inside the last two blocks (`model.layers.4` and
    `model.layers.5` of 6); the embeddings, the lower blocks and the final norm stay frozen:
    """),
    code(r"""
    top2 = get_peft_model(copy.deepcopy(base), make_config("layer_freeze", num_trainable_layers=2))
    trained_blocks = sorted({n.split(".layers.")[1].split(".")[0] for n, p in top2.named_parameters()
                             if p.requires_grad and ".layers." in n})
    print("blocks with trainable tensors:", trained_blocks)
    print("a few trainable tensors:", [n for n, p in top2.named_parameters() if p.requires_grad][:3])
    """),
    md(r"""
    ### BitFit needs biases

    BitFit (Ben Zaken et al. 2021) trains only the bias vectors $b$ in $h = Wx + b$: about 0.1% of a BERT, and on
    BERT it came close to full fine-tuning. But LLaMA (and T5) use **bias-free** linear layers and norms, so there
    is nothing to train. The package says so instead of silently training nothing:
    """),
    code(r"""
    try:
        get_peft_model(copy.deepcopy(base), make_config("bitfit"))
    except ValueError as e:
        print("ValueError:", e)
    """),
    md(r"""
    GPT-2 does have biases: in every linear layer and in its LayerNorms. A small randomly initialised GPT-2
    (same code path as the real one, just tiny) shows BitFit's count next to the other methods:
    """),
    code(r"""
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=4, n_embd=128, n_head=4, vocab_size=1000, n_positions=128))
    n_gpt2 = sum(p.numel() for p in gpt2.parameters())
    rows = []
    for label, (name, kw) in {"full": ("full", {}), "BitFit": ("bitfit", {}), "norm only": ("norm", {}),
                              "top-1 block": ("layer_freeze", {"num_trainable_layers": 1})}.items():
        trainable = get_peft_model(copy.deepcopy(gpt2), make_config(name, **kw)).get_nb_trainable_parameters()[0]
        rows.append({"method": label, "trainable": trainable, "% of model": round(100 * trainable / n_gpt2, 3)})
    print(f"random GPT-2: {n_gpt2:,} parameters, n_embd = 128, 4 blocks")
    display(pd.DataFrame(rows).set_index("method"))
    """),
    md(r"""
    ### Exercise nb02.q1: count BitFit's parameters

    Every GPT-2 block has these bias vectors (width $d$ = `n_embd`, the MLP is $4d$ wide):
    `ln_1` ($d$), `attn.c_attn` (q, k and v fused: $3d$), `attn.c_proj` ($d$), `ln_2` ($d$), `mlp.c_fc` ($4d$),
    `mlp.c_proj` ($d$); after the last block comes `ln_f` ($d$). Write `bitfit_param_count(n_embd, n_layer)`:
    the number of parameters BitFit trains on such a GPT-2. (The check compares with the package on random sizes.)
    """),
    code(r"""
    # EXERCISE nb02.q1
    def bitfit_param_count(n_embd, n_layer):
        # BEGIN SOLUTION
        per_block = n_embd + 3 * n_embd + n_embd + n_embd + 4 * n_embd + n_embd  # 11 d
        return n_layer * per_block + n_embd  # + ln_f
        # END SOLUTION
    """),
    code(r"""
    check("nb02.q1")
    """),
    md(r"""
    ### Exercise nb02.q2: what does top-$k$ freezing train?

    Write `top_k_param_count(model, k)`: the number of parameters that train when only the top $k$ transformer
    blocks of a LLaMA `model` train (its blocks are `model.model.layers`, a list; the top ones come last).
    The check builds random LLaMAs and compares with `make_config("layer_freeze", num_trainable_layers=k)`.
    """),
    code(r"""
    # EXERCISE nb02.q2
    def top_k_param_count(model, k):
        # BEGIN SOLUTION
        blocks = model.model.layers[-k:]
        return sum(p.numel() for block in blocks for p in block.parameters())
        # END SOLUTION
    """),
    code(r"""
    check("nb02.q2")
    """),
    md(r"""
    ## 3. Train each one on a task, and measure forgetting

    Task: `bbc-headlines` (read the start of a BBC article, write its headline). For each method we start from a
    fresh copy of the pretrained model, train the same number of steps on the same batches, then measure two
    losses (lower is better):

    * **task loss**: on held-out *validation* articles: how well did it learn the new task?
    * **pretraining-text loss**: plain language modelling on BBC article bodies from the validation split.
      `tiny` was pretrained on this kind of text (news bodies from the *train* split, plus Bible, WordNet and
      dialogues), but never on these articles. If this loss goes **up** after fine-tuning, the model has
      forgotten some of what pretraining taught it.

    Learning rates: full and top-$k$ use 1e-3; norm-only has so few parameters that it needs bigger steps (1e-2).
    """),
    code(r"""
    MAX_LEN = 128
    STEPS = pick(30, 2)   # optimizer steps of 8 examples each
    train_set = data.load("bbc-headlines", "train")
    val = data.load("bbc-headlines", "val", limit=pick(32, 8))
    val_batch = data.collate(data.format_causal(val, tok, max_len=MAX_LEN), tok.pad_token_id)

    bodies = tok([e["text"] for e in val], return_tensors="pt", padding=True, truncation=True, max_length=MAX_LEN)
    body_labels = bodies["input_ids"].masked_fill(bodies["attention_mask"] == 0, -100)  # no loss on padding

    @torch.no_grad()
    def losses(m):
        m.eval()
        task = m(**val_batch).loss.item()
        text = m(input_ids=bodies["input_ids"], attention_mask=bodies["attention_mask"], labels=body_labels).loss.item()
        return task, text

    before = losses(base)
    print(f"pretrained model: task loss {before[0]:.3f}, pretraining-text loss {before[1]:.3f}")
    """),
    code(r"""
    RUNS = {"full": ("full", {}, 1e-3), "top-2 blocks": ("layer_freeze", {"num_trainable_layers": 2}, 1e-3),
            "norm only": ("norm", {}, 1e-2)}
    histories, results = {}, []
    for label, (name, kw, lr) in RUNS.items():
        m = get_peft_model(copy.deepcopy(base), make_config(name, **kw))
        t0 = time.time()
        histories[label] = train(m, tok, train_set, steps=STEPS, lr=lr, batch_size=8, max_len=MAX_LEN, progress=False)
        seconds = time.time() - t0
        task, text = losses(m)
        results.append({"method": label, "trainable": m.get_nb_trainable_parameters()[0], "seconds": round(seconds, 1),
                        "task loss": round(task, 3), "pretraining-text loss": round(text, 3),
                        "forgetting (text loss change)": round(text - before[1], 3)})
    results.insert(0, {"method": "pretrained (no training)", "trainable": 0, "seconds": 0.0, "task loss": round(before[0], 3),
                       "pretraining-text loss": round(before[1], 3), "forgetting (text loss change)": 0.0})
    table = pd.DataFrame(results).set_index("method")
    display(table)
    """),
    code(r"""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for label, h in histories.items():
        h.plot(ax=ax1, label=label, smooth=5)
    ax1.set_title("training loss (moving average, 5 steps)")
    trained = table.drop(index="pretrained (no training)")
    ax2.bar(trained.index, trained["forgetting (text loss change)"], color=["tab:blue", "tab:orange", "tab:green"])
    ax2.axhline(0, color="black", linewidth=0.8)
    ax2.set_ylabel("change in pretraining-text loss")
    ax2.set_title("forgetting: > 0 means worse at plain text")
    fig.tight_layout()
    fig.savefig(OUT / "selective_runs.png", dpi=100)
    plt.show()
    """),
    code(r"""
    best_task = trained["task loss"].idxmin()
    most_forgot = trained["forgetting (text loss change)"].idxmax()
    print(f"lowest task loss       : {best_task} ({trained.loc[best_task, 'task loss']:.3f})")
    print(f"most forgetting        : {most_forgot} (+{trained.loc[most_forgot, 'forgetting (text loss change)']:.3f})")
    for label in trained.index:
        print(f"{label:14s} forgot {trained.loc[label, 'forgetting (text loss change)']:+.3f} while its task loss "
              f"fell by {before[0] - trained.loc[label, 'task loss']:.3f}")
    """),
    md(r"""
    **Reading the results.** Full fine-tuning lets every weight move, including the ones plain text relies on, so
    it is the method that forgets most: its pretraining-text loss rises far more than the others'. Training only
    the top blocks changes less: the lower blocks, which build the general representations, stay exactly as
    pretrained. Norm-only tuning changes almost nothing; it is cheap and barely forgets, but it has little room to
    learn. Note that "trains more" did not mean "learns the task best" here: with the same learning rate and
    steps, full fine-tuning's updates to every layer also disturb what the task needs, and a well-chosen subset
    can do as well or better.

    This is the "mixed results" of selective fine-tuning on transformers: which subset to train is a guess
    that depends on the model and the task. A few parameters can learn too little, many layers cost almost as
    much as full fine-tuning, and BitFit, strong on BERT, has nothing to train on bias-free LLaMAs. The additive
    and reparameterization methods of the next notebooks add *new* small parameters instead of choosing old ones.
    (The runs are short and the model tiny: read the table as a trend.)

    ### One copy per task
    Full fine-tuning's result is a whole new model; a selective method's result is just the tensors it trained:
    """),
    code(r"""
    for label in ("full", "top-2 blocks", "norm only"):
        n = table.loc[label, "trainable"]
        print(f"{label:14s} saves {n:>10,} numbers = {n * 4 / 1e6:6.2f} MB in float32 per task")
    """),
    md(r"""
    ## Recap

    * Full fine-tuning trains every weight: best placed to learn the task, but it forgets most of its
      pretraining, needs the most memory, and gives one full-size model per task.
    * Selective fine-tuning trains a chosen subset: the top $k$ blocks (layer freezing), the norm scales, or
      the biases (BitFit, only for models that have biases, such as GPT-2 or BERT).
    * The frozen part cannot forget, so forgetting shrinks with the trainable subset; so does what the model can
      learn. On transformers the results are mixed and depend on the subset chosen.

    Next: notebook 03 adds small *new* modules (adapters, (IA)³) instead of choosing old weights.
    """),
]

if __name__ == "__main__":
    write(cells, "02_selective.ipynb")
