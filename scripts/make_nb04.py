"""Build notebooks/04_soft_prompts.ipynb (run: .venv/bin/python scripts/make_nb04.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 04 · Soft prompts: train the input, not the model

    **Goal.** Understand five ways of steering a frozen model with learned vectors (prompt tuning, prefix tuning,
    P-tuning, multitask prompt tuning, LLaMA-Adapter), count what each trains, turn the general `tiny` model into a
    headline writer by training only prepended vectors, and read a learned prompt back as its nearest words.

    Concepts: soft prompts and their five variants (10), prompt engineering vs prompt tuning and what learned
    tokens look like (11), specialising a general model with prepended embeddings only (12).
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

    from peftlab import data, get_peft_model, make_config, models, nearest_tokens
    from peftlab.grading import check
    from peftlab.rouge import compute_rouge
    from peftlab.train import generate, train

    OUT = models.ROOT / "build" / "nb04"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    ## 1. Prompt engineering vs prompt tuning

    **Prompt engineering** steers a model with words: an instruction, maybe a few worked examples ("few-shot").
    It needs no training, but it is manual trial and error, and every word of it takes room in the model's
    **context window**. Our `tiny` model reads at most 512 tokens; a two-example few-shot prompt for headlines
    already eats most of that:
    """),
    code(r"""
    base, tok = models.load("tiny")
    cfg = base.config
    train_set = data.load("bbc-headlines", "train")
    shots = "".join(f"Article: {e['text'][:600]}\nHeadline: {e['target']}\n\n" for e in train_set[:2])
    hard_prompt = "Write the headline of each news article.\n\n" + shots
    n_hard = len(tok(hard_prompt)["input_ids"])
    print(f"hand-written few-shot prompt: {n_hard} tokens of a {tok.model_max_length}-token window "
          f"({n_hard / tok.model_max_length:.0%}), before the article we actually want a headline for")
    """),
    md(r"""
    **Prompt tuning** (Lester et al. 2021) replaces the words with $n$ learned vectors, "virtual tokens",
    $P \in \mathbb{R}^{n \times d}$. They are **concatenated with the input embeddings** $E(x)$ and the frozen
    model reads $[P;\ E(x)]$. Gradient descent, not a person, finds them; they take only $n$ positions; and
    they need not be words at all: any point of the $d$-dimensional embedding space is allowed.
    The package's code that does the concatenation:
    """),
    code(r"""
    from peftlab.prompt_tuning import SoftPrompt
    show(SoftPrompt._prepend)
    """),
    md(r"""
    ### Exercise nb04.q1: prepend virtual tokens

    Write `prepend_virtual_tokens(prompt, inputs_embeds, attention_mask)`: `prompt` is $(n, d)$, `inputs_embeds`
    is $(B, T, d)$ and `attention_mask` is $(B, T)$. Return the new embeddings $(B, n + T, d)$ with the prompt in
    front of every sequence, and the new mask $(B, n + T)$ (the virtual tokens are always attended to).
    The check compares with the package on random inputs.
    """),
    code(r"""
    # EXERCISE nb04.q1
    def prepend_virtual_tokens(prompt, inputs_embeds, attention_mask):
        # BEGIN SOLUTION
        batch, n = inputs_embeds.shape[0], prompt.shape[0]
        embeds = torch.cat([prompt.unsqueeze(0).expand(batch, -1, -1), inputs_embeds], dim=1)
        mask = torch.cat([attention_mask.new_ones(batch, n), attention_mask], dim=1)
        return embeds, mask
        # END SOLUTION
    """),
    code(r"""
    check("nb04.q1")
    """),
    md(r"""
    ## 2. Prompt tuning the tiny model

    We start the 8 virtual tokens from the embeddings of a text (`prompt_tuning_init="TEXT"`): a sensible point
    to start the search from. Everything else stays frozen: $n \cdot d$ trainable numbers.
    """),
    code(r"""
    MAX_LEN = 128
    STEPS = pick(30, 2)
    N_TEST = pick(12, 3)
    INIT_TEXT = "Write the headline of this news article:"
    val_batch = data.collate(data.format_causal(data.load("bbc-headlines", "val", limit=pick(32, 8)), tok,
                                                max_len=MAX_LEN), tok.pad_token_id)

    @torch.no_grad()
    def val_loss(m):
        m.eval()
        return m(**val_batch).loss.item()

    pt = get_peft_model(copy.deepcopy(base), make_config(
        "prompt_tuning", num_virtual_tokens=8, prompt_tuning_init="TEXT",
        prompt_tuning_init_text=INIT_TEXT, tokenizer_name_or_path=tok))
    pt.print_trainable_parameters()
    start_words = [tok.decode([i]) for i in pt.active_peft_config.prompt_tuning_init_ids][:8]
    loss_pt_before = val_loss(pt)
    t0 = time.time()
    hist_pt = train(pt, tok, train_set, steps=STEPS, lr=3e-2, batch_size=8, max_len=MAX_LEN, progress=False)
    print(f"{STEPS} steps in {time.time() - t0:.1f} s; val loss {loss_pt_before:.3f} -> {val_loss(pt):.3f}")
    """),
    md(r"""
    ### What did it learn? Nearest vocabulary tokens

    A learned virtual token is a vector, not a word. We can still ask which real tokens' embeddings point in the
    most similar direction (cosine similarity): `nearest_tokens`. In large models the neighbours of a trained
    prompt tend to form meaningful clusters (task words, label words). Here: each virtual token, the word it
    started from, and its five nearest tokens now:
    """),
    code(r"""
    near = nearest_tokens(pt, tok, k=5)
    table = pd.DataFrame({
        "started as": [repr(w) for w in start_words],
        "nearest tokens now (cosine similarity)": [", ".join(f"{t!r} {s:.2f}" for t, s in row) for row in near],
    })
    table.index.name = "virtual token"
    display(table)
    moved = (pt.prompt_modules["default"].embedding.weight[:8].detach()
             - base.get_input_embeddings().weight[torch.tensor(pt.active_peft_config.prompt_tuning_init_ids[:8])]).norm(dim=-1)
    print("how far each virtual token moved from its start (L2):", [round(x, 2) for x in moved.tolist()])
    """),
    md(r"""
    Compare "started as" with the neighbours now, and the distance each token moved. With a learning rate of
    3e-2, a class-mode run moves the tokens well away from their start words (typical neighbour similarities
    are only 0.3 to 0.6): a soft token sits *between* words, so its neighbours are hints, not a translation.
    Yet the neighbours of one token usually belong together: a handful of function words, of business-news
    words, of capitalised name pieces. The count below says how many tokens still have their start word as
    nearest neighbour.
    """),
    code(r"""
    kept = sum(row[0][0] == w for row, w in zip(near, start_words))
    print(f"{kept} of {len(near)} virtual tokens still have their start word as nearest neighbour")
    """),
    md(r"""
    ## 3. Prefix tuning: a prefix in every layer

    Prompt tuning only touches the input; deep in the network its influence can fade. **Prefix tuning**
    (Li & Liang 2021) gives *every* attention layer $n$ learned key and value vectors, prepended to the keys and
    values it computes from the sequence. For training stability the paper **reparameterizes** the prefix: a small
    table goes through an MLP that produces all layers' keys and values (`prefix_projection=True`); after
    training only the MLP's output is needed.
    """),
    code(r"""
    from peftlab.prefix import PrefixEncoder
    show(PrefixEncoder.prefix)
    """),
    md(r"""
    ### Exercise nb04.q2: the size of a prefix

    Without the MLP, the prefix *is* the trainable table: for each of $n$ virtual tokens and each of the $L$
    layers, one key and one value vector. With grouped-query attention (LLaMA) keys and values have
    `num_key_value_heads * head_dim` features (head_dim = hidden_size // num_attention_heads).
    Write `prefix_param_count(n, config)` for a `LlamaConfig` and `prefix_projection=False`.
    """),
    code(r"""
    # EXERCISE nb04.q2
    def prefix_param_count(n, config):
        # BEGIN SOLUTION
        d_kv = config.num_key_value_heads * (config.hidden_size // config.num_attention_heads)
        return n * config.num_hidden_layers * 2 * d_kv
        # END SOLUTION
    """),
    code(r"""
    check("nb04.q2")
    """),
    md(r"""
    ### Turning the general model into a specialised one

    `tiny` is a general language model: given an article and "Headline:", it just keeps writing. We now train only
    a prefix (10 virtual tokens, with the MLP reparameterization) on article → headline pairs and compare what the
    model writes for unseen test articles before and after. Not one weight of the model changes.
    """),
    code(r"""
    spread = lambda xs: xs[:: max(1, len(xs) // N_TEST)][:N_TEST]  # test articles from every topic
    test_set = spread(data.load("bbc-headlines", "test"))
    refs = [e["target"] for e in test_set]

    def headlines(m):
        return generate(m, tok, test_set, max_new_tokens=16, max_input_len=MAX_LEN, first_line=True, progress=False)

    prefix = get_peft_model(copy.deepcopy(base), make_config(
        "prefix_tuning", num_virtual_tokens=10, prefix_projection=True, encoder_hidden_size=128))
    prefix.print_trainable_parameters()
    t0 = time.time()
    hist_prefix = train(prefix, tok, train_set, steps=STEPS, lr=3e-3, batch_size=8, max_len=MAX_LEN, progress=False)
    print(f"{STEPS} steps in {time.time() - t0:.1f} s; val loss {val_loss(base):.3f} (base) -> {val_loss(prefix):.3f}")

    base_preds, prefix_preds, pt_preds = headlines(base), headlines(prefix), headlines(pt)
    pd.set_option("display.max_colwidth", 55)
    display(pd.DataFrame({"real headline": refs, "base model": base_preds, "prefix-tuned": prefix_preds})[:6])
    display(pd.DataFrame({"base model": compute_rouge(base_preds, refs), "prompt tuning": compute_rouge(pt_preds, refs),
                          "prefix tuning": compute_rouge(prefix_preds, refs)}).T.round(3))
    """),
    code(r"""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    hist_pt.plot(ax=ax, label="prompt tuning (8 tokens)", smooth=5)
    hist_prefix.plot(ax=ax, label="prefix tuning (10 tokens, MLP)", smooth=5)
    ax.set_title("training loss, only prepended vectors train (moving average of 5)")
    fig.tight_layout()
    fig.savefig(OUT / "soft_prompt_losses.png", dpi=100)
    plt.show()
    """),
    md(r"""
    The validation loss is the clearest evidence: only the prefix trained, yet the frozen model now predicts real
    headlines much better than before. The generated text shows the start of the change, not the end of it: a
    6.5M-parameter model trained for half a minute tends to repeat one news-flavoured line for every article.
    Train longer (raise `STEPS`) to go further. At scale this is the recipe that turns a general chatbot into a
    specialised one (say, a support assistant for one product): keep the big model untouched and shared, and
    ship a few thousand (here a few hundred thousand, with the MLP) numbers per specialisation.

    ## 4. P-tuning, multitask prompt tuning, LLaMA-Adapter

    * **P-tuning** (Liu et al. 2021): virtual tokens in the input, like prompt tuning, but produced by a
      **prompt encoder**, an MLP or a bidirectional **LSTM** followed by an MLP, from a table $E'$. The encoder
      couples the tokens, which makes training more stable; after training only its output matters.
    * **Multitask prompt tuning** (Wang et al. 2023): one prompt $P^*$ shared by all tasks, times a cheap
      rank-$r$ matrix per task: $P_k = P^* \circ (u_k v_k^\top)$. Each example says which task it is (`task_ids`).
    * **LLaMA-Adapter** (Zhang et al. 2023): *adaption prompts* in the top $L$ layers that the queries attend to in
      a separate softmax, scaled by a **gate initialised at zero**. At step 0 the adapted model is exactly the
      base model, and training lets the new information in gradually.
    """),
    code(r"""
    from peftlab.p_tuning import PromptEncoder
    show(PromptEncoder.prompts)
    """),
    code(r"""
    from peftlab.llama_adapter import AdaptedAttention
    show(AdaptedAttention.add)
    la = get_peft_model(copy.deepcopy(base), make_config("llama_adapter", adapter_len=10, adapter_layers=2))
    ids = val_batch["input_ids"][:4]
    with torch.no_grad():
        same = torch.equal(la(input_ids=ids).logits, base(input_ids=ids).logits)
    print("LLaMA-Adapter at init: gates =", [g.item() for _, g in la.named_parameters() if "adaption_gate" in _])
    print("output identical to the base model at init:", same)
    """),
    code(r"""
    mt = get_peft_model(copy.deepcopy(base), make_config("multitask_prompt_tuning", num_virtual_tokens=10,
                                                         num_tasks=3, num_ranks=1))
    with torch.no_grad():
        out = mt(input_ids=ids[:2], task_ids=torch.tensor([0, 2]))  # example 0 is task 0, example 1 is task 2
    print("multitask prompt tuning: logits", tuple(out.logits.shape), "(virtual positions dropped again)")
    """),
    md(r"""
    ## 5. What each soft-prompt method trains

    All five on the same `tiny` model ($d$ = 256, 6 layers, K/V width 128 because of grouped-query attention),
    with 10 virtual tokens (LLaMA-Adapter: 10 adaption tokens in the top 2 layers):
    """),
    code(r"""
    n_base = sum(p.numel() for p in base.parameters())
    SPECS = {
        "prompt tuning": ("prompt_tuning", {"num_virtual_tokens": 10}, "n·d"),
        "prefix tuning": ("prefix_tuning", {"num_virtual_tokens": 10}, "n·L·2·d_kv"),
        "prefix tuning + MLP": ("prefix_tuning", {"num_virtual_tokens": 10, "prefix_projection": True,
                                                   "encoder_hidden_size": 128}, "n·d + MLP d→h→L·2·d_kv"),
        "P-tuning (MLP)": ("p_tuning", {"num_virtual_tokens": 10, "encoder_hidden_size": 128}, "n·d + MLP"),
        "P-tuning (LSTM)": ("p_tuning", {"num_virtual_tokens": 10, "encoder_hidden_size": 128,
                                         "encoder_reparameterization_type": "LSTM"}, "n·d + BiLSTM + MLP"),
        "multitask (3 tasks, r=1)": ("multitask_prompt_tuning", {"num_virtual_tokens": 10, "num_tasks": 3},
                                     "n·d + K(n·r + r·d)"),
        "LLaMA-Adapter": ("llama_adapter", {"adapter_len": 10, "adapter_layers": 2}, "L(m·d + 1)"),
    }
    rows = []
    for label, (name, kw, formula) in SPECS.items():
        trainable = get_peft_model(copy.deepcopy(base), make_config(name, **kw)).get_nb_trainable_parameters()[0]
        rows.append({"method": label, "formula": formula, "trainable": trainable,
                     "% of base": round(100 * trainable / n_base, 3)})
    display(pd.DataFrame(rows).set_index("method"))
    """),
    md(r"""
    The encoders (MLP, LSTM) make training *easier*, and cost parameters while training; once trained, only
    their output, $n$ vectors, is needed at inference.

    ## Recap

    * Soft prompts freeze the whole model and learn vectors that are prepended: to the input embeddings (prompt
      tuning, P-tuning, multitask), to every layer's keys and values (prefix tuning), or attended to through a
      zero-initialised gate (LLaMA-Adapter, which starts exactly at the base model).
    * Prompt engineering costs people's time and context-window room; prompt tuning costs a short training run
      and $n$ positions. Learned tokens are not words, but their nearest vocabulary tokens give a hint of what
      they encode.
    * Training only prepended vectors can specialise a general model (here: towards headlines) while its
      weights stay untouched and shareable.

    Next: notebook 05, LoRA: low-rank updates of the weights themselves.
    """),
]

if __name__ == "__main__":
    write(cells, "04_soft_prompts.ipynb")
