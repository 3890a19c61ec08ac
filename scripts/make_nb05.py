"""Build notebooks/05_lora.ipynb (run: .venv/bin/python scripts/make_nb05.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 05 · LoRA: a low-rank update next to a frozen weight

    **Goal.** By the end you can count LoRA's trainable parameters for any layer, write its forward pass,
    train a LoRA adapter on our `tiny` model (article → headline), merge it into the base weights at no
    inference cost, and swap two task adapters on one base model.

    Concepts: LoRA (15), the 512 × 64 example (16), attention-only LoRA and the open question of the rank (17),
    one adapter per task (18).
    """),
    code(r"""
    from peftlab.notebook import FAST, pick, show, quiet
    quiet()

    import copy
    import time
    from collections import OrderedDict

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import pandas as pd
    import torch
    from IPython.display import display
    from torch import nn

    from peftlab import LoraConfig, PeftModel, data, get_peft_model, models
    from peftlab.grading import check
    from peftlab.rouge import compute_rouge
    from peftlab.train import generate, train

    OUT = models.ROOT / "build" / "nb05"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    ## 1. The idea

    A pretrained linear layer holds a weight $W_0$ of shape $d \times k$ ($k$ inputs, $d$ outputs).
    Full fine-tuning learns a new $W = W_0 + \Delta W$ and so trains all $d \cdot k$ numbers.
    LoRA bets that the *change* $\Delta W$ needs far fewer degrees of freedom than that (notebook 01: a
    matrix of rank $r$ is a product of a $d \times r$ and an $r \times k$ matrix). So it keeps $W_0$ frozen
    and learns only the two thin factors:

    $$ h = W_0 x + \frac{\alpha}{r}\, B A x, \qquad A \in \mathbb{R}^{r \times k},\; B \in \mathbb{R}^{d \times r},\; r \ll \min(d, k). $$

    * $A$ starts random and $B$ starts at **zero**, so at step 0 the adapted model *is* the base model.
    * $\alpha / r$ is a fixed scale: changing $r$ does not change how big the update starts out.
    * Typical ranks are 4 to 64.

    ### The 512 × 64 example
    Take $d = 512$, $k = 64$ and rank $r = 8$ and count:
    """),
    code(r"""
    d, k, r = 512, 64, 8
    full = d * k          # every weight of W
    a_params = r * k      # A is r x k
    b_params = d * r      # B is d x r
    lora = a_params + b_params
    print(f"full weight W : {d} x {k} = {full:,} trainable")
    print(f"LoRA A        : {r} x {k} = {a_params:,}")
    print(f"LoRA B        : {d} x {r} = {b_params:,}")
    print(f"LoRA total    : {lora:,} trainable  ->  {1 - lora / full:.1%} fewer ({lora / full:.1%} of the full count)")
    """),
    md(r"""
    The package agrees. Wrap a single `nn.Linear(64, 512)` with `get_peft_model` and let it count
    (the base layer's 32,768 weights are frozen; only A and B train):
    """),
    code(r"""
    one_layer = nn.Sequential(OrderedDict(proj=nn.Linear(k, d, bias=False)))  # weight: (512, 64)
    one_layer = get_peft_model(one_layer, LoraConfig(r=r, target_modules=["proj"]))
    one_layer.print_trainable_parameters()
    for name, p in one_layer.named_parameters():
        print(f"{name:32s} {str(tuple(p.shape)):12s} trainable={p.requires_grad}")
    """),
    md(r"""
    ### Explore: how the count moves with d, k and r

    Move the sliders (in a live kernel). The saving is largest for big square layers: for $d = k$ LoRA
    trains $2dr$ numbers instead of $d^2$, a fraction $2r/d$. The plot under the sliders is a static render of
    the default values, so the notebook also reads well when executed headless.
    """),
    code(r"""
    def draw_counts(d, k, r, ax=None):
        full, lora = d * k, r * (d + k)
        ax = ax or plt.subplots(figsize=(7, 2.8))[1]
        ax.barh(["full fine-tuning", "LoRA"], [full, 0], color="tab:gray")
        ax.barh(["LoRA"], [r * k], color="tab:blue", label=f"A ({r}x{k})")
        ax.barh(["LoRA"], [d * r], left=[r * k], color="tab:orange", label=f"B ({d}x{r})")
        ax.set_xlabel("trainable parameters")
        ax.set_title(f"d={d}, k={k}, r={r}: LoRA trains {lora:,} of {full:,} weights\n"
                     f"({lora / full:.2%} of the full count, {1 - lora / full:.1%} fewer)")
        ax.legend(loc="upper right")
        return ax

    d_slider = widgets.IntSlider(value=512, min=16, max=8192, step=16, description="d (out)")
    k_slider = widgets.IntSlider(value=64, min=16, max=8192, step=16, description="k (in)")
    r_slider = widgets.IntSlider(value=8, min=1, max=256, description="rank r")

    def update(d, k, r):
        draw_counts(d, k, r)
        plt.show()

    display(widgets.VBox([d_slider, k_slider, r_slider,
                          widgets.interactive_output(update, {"d": d_slider, "k": k_slider, "r": r_slider})]))

    # static render (for headless runs), also saved as a PNG
    ax = draw_counts(512, 64, 8)
    ax.figure.tight_layout()
    ax.figure.savefig(OUT / "lora_counts.png", dpi=100)
    plt.show()
    """),
    md(r"""
    ### Exercise 1 · count LoRA's parameters
    Write `lora_param_count(d, k, r)`: the number of parameters LoRA of rank `r` trains on one `d × k` weight.
    """),
    code(r"""
    # EXERCISE nb05.q1
    def lora_param_count(d, k, r):
        # BEGIN SOLUTION
        return r * (d + k)
        # END SOLUTION
    """),
    code(r"""
    check("nb05.q1")
    """),
    md(r"""
    ## 2. Reading the implementation

    Here is the layer `get_peft_model` puts in place of each targeted `nn.Linear`. Its `forward` is the
    equation above: the frozen base layer's output plus the scaled low-rank branch `B(A(x))`.
    `delta_weight` builds $\frac{\alpha}{r} B A$ as a full $d \times k$ matrix, which is what merging adds to $W_0$.
    """),
    code(r"""
    from peftlab.lora import LoraLinear
    show(LoraLinear)
    """),
    md(r"""
    ### Exercise 2 · the LoRA forward pass
    Write `lora_forward(x, W, b, A, B, alpha, r)` with plain tensor operations:
    `x` is `(..., k)`, `W` is `(d, k)`, `b` is `(d,)`, `A` is `(r, k)`, `B` is `(d, r)`. Return `(..., d)`.
    The check compares your function with `peftlab.lora.LoraLinear` on random layers and inputs.
    """),
    code(r"""
    # EXERCISE nb05.q2
    def lora_forward(x, W, b, A, B, alpha, r):
        # BEGIN SOLUTION
        base = x @ W.T + b                       # (..., d)
        update = (x @ A.T) @ B.T * (alpha / r)   # (..., r) -> (..., d)
        return base + update
        # END SOLUTION
    """),
    code(r"""
    check("nb05.q2")
    """),
    code(r"""
    # HIDDEN TESTS nb05.q2
    _x, _W, _b = torch.randn(4, 6), torch.randn(3, 6), torch.randn(3)
    _A, _B = torch.randn(2, 6), torch.zeros(3, 2)
    assert torch.allclose(lora_forward(_x, _W, _b, _A, _B, 16, 2), _x @ _W.T + _b, atol=1e-6), "B = 0 must leave the output unchanged"
    _B = torch.randn(3, 2)
    _delta = lora_forward(_x, _W, _b, _A, _B, 4, 2) - (_x @ _W.T + _b)
    assert torch.allclose(_delta, 2 * (_x @ _A.T @ _B.T), atol=1e-5), "the low-rank branch is scaled by alpha / r"
    """),
    md(r"""
    ## 3. Training LoRA on the tiny model: article → headline

    Our `tiny` model is a ~6.5M-parameter LLaMA pretrained by this project. The task: read the start of a BBC
    article and write its headline (`bbc-headlines`). We put LoRA on the attention's **query and value
    projections only** (`q_proj`, `v_proj`), as the LoRA paper did, and train for well under a minute.
    """),
    code(r"""
    MAX_LEN = 128            # tokens per training example (article start + headline)
    STEPS = pick(50, 3)      # optimizer steps of 8 examples each
    N_TEST = pick(24, 6)     # test articles we generate headlines for

    model, tok = models.load("tiny")
    pristine = copy.deepcopy(model)  # an untouched copy of the base, for the runs below
    n_base = sum(p.numel() for p in model.parameters())
    train_set = data.load("bbc-headlines", "train")
    spread = lambda xs: xs[:: max(1, len(xs) // N_TEST)][:N_TEST]  # test articles from every topic, not just the first
    test_set = spread(data.load("bbc-headlines", "test"))
    print(f"tiny model: {n_base:,} parameters; {len(train_set)} training articles, {len(test_set)} test articles")

    def headlines(m, examples):
        return generate(m, tok, examples, max_new_tokens=20, max_input_len=MAX_LEN, first_line=True, progress=False)

    base_preds = headlines(model, test_set)
    refs = [e["target"] for e in test_set]
    base_rouge = compute_rouge(base_preds, refs)
    """),
    code(r"""
    lora_model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]),
                                adapter_name="headlines")
    lora_model.print_trainable_parameters()

    t0 = time.time()
    history = train(lora_model, tok, train_set, steps=STEPS, lr=3e-3, batch_size=8, max_len=MAX_LEN)
    train_seconds = time.time() - t0
    print(f"trained {STEPS} steps in {train_seconds:.1f} s")

    fig, ax = plt.subplots(figsize=(6, 3))
    history.plot(ax=ax, label="raw")
    history.plot(ax=ax, label="moving average (5 steps)", smooth=5)
    ax.set_title("LoRA (r=8, q_proj + v_proj) on bbc-headlines")
    fig.tight_layout()
    fig.savefig(OUT / "loss_curve.png", dpi=100)
    plt.show()
    """),
    md(r"""
    Before and after, on test articles the model never saw. ROUGE (notebook 07 explains it in depth) counts
    overlapping words with the real headline: 0 = nothing in common, 1 = identical. A 6.5M-parameter model
    trained for seconds will not write good headlines; what to look for is the *form*: after LoRA it
    answers with one short headline-like line instead of rambling on.
    """),
    code(r"""
    lora_preds = headlines(lora_model, test_set)
    lora_rouge = compute_rouge(lora_preds, refs)

    pd.set_option("display.max_colwidth", 60)
    display(pd.DataFrame({"article starts": [e["text"][:60] + "..." for e in test_set[:5]], "real headline": refs[:5],
                          "base model": base_preds[:5], "with LoRA": lora_preds[:5]}))
    scores = pd.DataFrame({"base model": base_rouge, "with LoRA": lora_rouge}).T.round(3)
    display(scores)
    """),
    md(r"""
    ## 4. Only attention, and which rank?

    We trained LoRA on two of the seven linear layers of each block (`q_proj`, `v_proj`): that already moved the
    loss a lot. The LoRA paper found that adapting attention weights alone works well, and that very small ranks
    (even 1 to 4) often suffice; later work (AdaLoRA, rsLoRA, notebook 06) shows the best rank depends on the
    layer and the task. **Choosing $r$ is still open research**: in practice, try a few.

    A quick sweep: the same short training with $r \in \{1, 4, 16\}$, scored by the loss on held-out
    validation articles (lower is better). The runs are short, so read the numbers as a trend, not a verdict.
    """),
    code(r"""
    SWEEP_STEPS = pick(12, 1)
    val_batch = data.collate(data.format_causal(data.load("bbc-headlines", "val", limit=pick(32, 8)), tok, max_len=MAX_LEN),
                             tok.pad_token_id)

    def val_loss(m):
        with torch.no_grad():
            return m(**val_batch).loss.item()

    sweep = []
    with lora_model.disable_adapter():
        sweep.append({"rank": 0, "trainable": 0, "val loss": val_loss(lora_model)})  # the base model
    for rank in (1, 4, 16):
        m = get_peft_model(copy.deepcopy(pristine), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"]))
        train(m, tok, train_set, steps=SWEEP_STEPS, lr=3e-3, batch_size=8, max_len=MAX_LEN, progress=False)
        sweep.append({"rank": rank, "trainable": m.get_nb_trainable_parameters()[0], "val loss": val_loss(m)})
    sweep = pd.DataFrame(sweep).set_index("rank")
    display(sweep.round(3))
    print(f"(rank 0 = the base model; each run: {SWEEP_STEPS} steps)")
    """),
    md(r"""
    ### Exercise 3 · a rank for a parameter budget
    A large model has square `4096 × 4096` attention projections. Your budget: LoRA may train at most **1 %** of
    one such layer's weights. Use the slider above (set d and k to 4096) or arithmetic to find the **largest**
    rank that fits. Set `chosen_r` and explain in a sentence what you would gain and risk with it.
    """),
    code(r"""
    BUDGET_D, BUDGET_K, BUDGET_SHARE = 4096, 4096, 0.01  # the layer and the budget of exercise 3
    """),
    code(r"""
    # EXERCISE nb05.q3
    # BEGIN SOLUTION
    chosen_r = int(BUDGET_SHARE * BUDGET_D * BUDGET_K // (BUDGET_D + BUDGET_K))
    explanation = "r(d+k) <= 1% of d*k gives r <= 20; a larger rank can fit more complex updates but costs more memory and may overfit."
    # END SOLUTION
    """),
    code(r"""
    check("nb05.q3")
    """),
    md(r"""
    ## 5. Merging: no extra cost at inference

    After training, $W_0 + \frac{\alpha}{r} B A$ is just another $d \times k$ matrix. `merge_and_unload()` adds
    it into the base weights and removes the LoRA layers: what is left is a plain model with exactly the base's
    parameter count, producing the same outputs as the adapted model, at the base model's speed.
    We measure it (on a copy, so the adapter stays available for the next section).
    """),
    code(r"""
    merged = copy.deepcopy(lora_model).merge_and_unload()
    n_merged = sum(p.numel() for p in merged.parameters())
    n_with_lora = lora_model.get_nb_trainable_parameters()[1]
    print(f"base model      : {n_base:,} parameters")
    print(f"with LoRA layers: {n_with_lora:,} parameters (+{n_with_lora - n_base:,} in A and B)")
    print(f"merged          : {n_merged:,} parameters  (same as the base: {n_merged == n_base})")

    batch = data.collate(data.format_causal(test_set[:8], tok, max_len=MAX_LEN), tok.pad_token_id)
    batch = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        same = torch.allclose(lora_model(**batch).logits, merged(**batch).logits, atol=1e-4)
    print(f"merged outputs equal the adapted model's: {same}")

    def forward_ms(m):
        t = time.perf_counter()
        with torch.no_grad():
            m(**batch)
        return 1000 * (time.perf_counter() - t)

    contenders = {"base model (untouched copy)": pristine, "LoRA, not merged": lora_model, "LoRA, merged": merged}
    best = {name: float("inf") for name in contenders}
    for _ in range(pick(15, 3)):  # interleaved rounds; the best time is the least disturbed by other programs
        for name, m in contenders.items():
            best[name] = min(best[name], forward_ms(m))
    timing = pd.DataFrame({"forward pass of 8 articles (ms, best of rounds)": best})
    display(timing.round(1))
    """),
    md(r"""
    The unmerged adapter adds two small matrix products per targeted layer (a few percent here; on a busy
    shared CPU the timings jitter, which is why we keep the best of several rounds); merged, the model *is* a base-sized model again.
    The catch: a merged model serves one task. To serve several tasks from one base, keep the adapters separate
    and switch between them.

    ## 6. One base, many tasks: swapping adapters

    We add a second adapter to the same base model, for a different task: the article's **topic** (`bbc-topics`:
    business, entertainment, politics, sport, tech). Only the active adapter trains; the headline adapter is
    untouched. Then each adapter is saved: well under a megabyte each, next to a 26 MB base model.
    """),
    code(r"""
    lora_model.add_adapter("topics", LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    lora_model.set_adapter("topics")
    topic_train = data.load("bbc-topics", "train")
    topic_test = spread(data.load("bbc-topics", "test"))
    train(lora_model, tok, topic_train, steps=pick(30, 2), lr=1e-2, batch_size=8, max_len=96)

    lora_model.save_pretrained(str(OUT / "adapters"))          # headlines/ and topics/ sub-folders
    base_file = models.tiny_path() / "model.safetensors"
    sizes = {name: (OUT / "adapters" / name / "adapter_model.safetensors").stat().st_size for name in ("headlines", "topics")}
    print(f"base model file: {base_file.stat().st_size / 1e6:.1f} MB")
    for name, size in sizes.items():
        print(f"adapter {name!r}: {size / 1e3:.0f} kB ({size / base_file.stat().st_size:.2%} of the base)")
    """),
    md(r"""
    Now serve both tasks from a **fresh** base model: load the two saved adapters from disk and switch with
    `set_adapter`. Same articles, same frozen base weights, two different behaviours: one writes a headline, the
    other answers with a topic word. (Half a minute of training teaches the tiny model the *format* of the topic
    task; getting the topic *right* takes longer training, which is an exercise for home.)
    """),
    code(r"""
    fresh_base = copy.deepcopy(pristine)  # in real life: models.load("tiny") in another process
    server = PeftModel.from_pretrained(fresh_base, str(OUT / "adapters" / "headlines"), adapter_name="headlines")
    server.load_adapter(str(OUT / "adapters" / "topics"), adapter_name="topics")

    by_topic = {}
    for e in topic_test:
        by_topic.setdefault(e["target"], e)  # the first test article of each topic
    articles = list(by_topic.values())[:pick(5, 2)]
    out = {"real topic": [e["target"] for e in articles]}
    for task in ("headlines", "topics"):
        server.set_adapter(task)
        out[f"{task} adapter says"] = generate(server, tok, articles, max_new_tokens=pick(16, 4), max_input_len=96,
                                               first_line=True, progress=False)
    display(pd.DataFrame(out, index=[e["text"][:50] + "..." for e in articles]))

    server.set_adapter("topics")
    guesses = generate(server, tok, topic_test, max_new_tokens=3, max_input_len=96, first_line=True, progress=False)
    accuracy = sum(g.split()[0].lower() == e["target"] if g.split() else False for g, e in zip(guesses, topic_test)) / len(topic_test)
    print(f"topic adapter: {sum(g.split()[0].lower() in data.BBC_TOPICS if g.split() else False for g in guesses)}"
          f" of {len(guesses)} answers are a topic word; accuracy {accuracy:.0%} (chance: 20%)")
    """),
    md(r"""
    ## Recap

    * LoRA freezes $W_0$ and learns $\Delta W = \frac{\alpha}{r} BA$ with $B$ ($d \times r$) and $A$ ($r \times k$):
      $r(d + k)$ trainable numbers instead of $dk$. For 512 × 64 at rank 8: 4,608 instead of 32,768, 86 % fewer.
    * $B$ starts at zero, so training starts exactly from the pretrained model.
    * LoRA on the attention projections alone (here `q_proj`, `v_proj`) is enough to teach the tiny model a new
      output format in under a minute of CPU time. Which rank is best is still an open question: sweep a few.
    * Merging folds $BA$ into $W_0$: same parameter count, same outputs, base-model latency.
    * Unmerged adapters are small files; one base model can serve many tasks by switching adapters.

    Next: notebook 06 (QLoRA, DoRA, AdaLoRA) builds on exactly this layer.
    """),
]

if __name__ == "__main__":
    write(cells, "05_lora.ipynb")
