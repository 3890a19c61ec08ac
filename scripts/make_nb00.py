"""Build notebooks/00_why_peft.ipynb (run: .venv/bin/python scripts/make_nb00.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 00 · Why parameter-efficient fine-tuning?

    **Goal.** See, with numbers you compute yourself, why fine-tuning *every* weight of a large model is
    expensive (memory while training, storage per task), what the three families of PEFT methods change,
    what they trade away, and where in a transformer each of them plugs in.

    Concepts: supervised fine-tuning (1), the memory bill of full fine-tuning (2), overfitting and one copy per task
    (3), what PEFT buys (4), trade-offs (5), the three families (6), PEFT vs standard fine-tuning (24),
    data concerns (25), a transformer refresher (26).
    """),
    code(r"""
    from peftlab.notebook import FAST, pick, show, quiet
    quiet()

    import copy
    import math
    import os

    import matplotlib.pyplot as plt
    import pandas as pd
    import torch
    from IPython.display import display

    import peftlab
    from peftlab import LoraConfig, data, get_peft_model, memory, models
    from peftlab.grading import check

    OUT = models.ROOT / "build" / "nb00"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    pd.set_option("display.max_colwidth", 80)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    ## 1. Supervised fine-tuning

    A pretrained language model has learned, from a mountain of unlabelled text, to continue text.
    **Supervised fine-tuning (SFT)** keeps training it on *labelled* pairs (an input and the output we want)
    so that it learns a particular task. The loss is the same next-token loss as in pretraining, but it is
    counted only on the answer tokens: the model is graded on what it writes, not on the prompt it was given.

    One labelled pair from our `bbc-headlines` task (article → headline), and how it becomes training tokens:
    """),
    code(r"""
    model, tok = models.load("tiny")
    train_set = data.load("bbc-headlines", "train")
    ex = train_set[0]
    print("INPUT :", ex["text"][:200], "...")
    print("TARGET:", ex["target"])

    feat = data.format_causal([ex], tok, max_len=128)[0]
    n_prompt = sum(l == data.IGNORE_INDEX for l in feat["labels"])
    print(f"\n{len(feat['input_ids'])} tokens: {n_prompt} prompt tokens (label -100: no loss) "
          f"+ {len(feat['input_ids']) - n_prompt} answer tokens (the loss is computed here)")
    print("answer tokens:", tok.convert_ids_to_tokens(feat["input_ids"][n_prompt:]))
    """),
    md(r"""
    ## 2. The memory bill of full fine-tuning, from first principles

    Every parameter stored in 32-bit floating point takes **4 bytes**. Just *loading* a 70-billion-parameter
    model for inference therefore needs:
    """),
    code(r"""
    GB = 1e9
    N = 70e9  # parameters
    print(f"70B parameters x 4 bytes = {N * 4 / GB:,.0f} GB just to load (fp32)")
    print(f"                 2 bytes = {N * 2 / GB:,.0f} GB in bf16/fp16")
    print(f"an 80 GB GPU holds {80 / (N * 4 / GB):.0%} of it in fp32")
    """),
    md(r"""
    Training needs much more than the weights. For one step of full fine-tuning with AdamW, memory holds

    | part | size | why |
    |---|---|---|
    | weights | $N \times 4$ B | the model |
    | gradients | $T \times 4$ B | one per **trainable** parameter $T$ |
    | optimizer state | $T \times 8$ B | AdamW keeps two running averages per trainable parameter (fp32) |
    | activations | grows with batch × length × width × layers | what the forward pass saves for backward |
    | temporaries | a little more | buffers of the backward pass, the allocator's slack |

    Full fine-tuning has $T = N$: 16 bytes per parameter *before* activations. PEFT makes $T$ tiny. The
    package's `memory.predict` does exactly this arithmetic:
    """),
    code(r"""
    show(memory.predict)
    """),
    code(r"""
    rows = {
        "full fine-tuning (fp32)": memory.predict(int(N), int(N)),
        "LoRA, 0.1% trainable (fp32 base)": memory.predict(int(N), int(N * 0.001)),
        "LoRA, 0.1% trainable (bf16 base)": memory.predict(int(N), int(N * 0.001), bytes_per_param=2),
    }
    table = pd.DataFrame({name: r.as_dict(unit=GB) for name, r in rows.items()}).T.drop(columns="activations")
    table["80 GB GPUs needed"] = (table["total"] / 80).apply(math.ceil)
    print("70B model, GB, activations not included:")
    display(table.round(1))
    print(f"full fine-tuning needs {table['total'].iloc[0] / (N * 4 / GB):.0f}x the memory of the fp32 weights, before activations")
    """),
    md(r"""
    ### Exercise 1 · the memory of full fine-tuning
    Write `full_ft_memory_gb(n_params, bytes_per_param=4)`: the GB (1 GB = 10⁹ bytes) that weights, gradients
    and AdamW's two fp32 moments take for full fine-tuning of a model with `n_params` parameters stored with
    `bytes_per_param` bytes each (gradients have the weights' precision). Leave activations out.
    """),
    code(r"""
    # EXERCISE nb00.q1
    def full_ft_memory_gb(n_params, bytes_per_param=4):
        # BEGIN SOLUTION
        weights = n_params * bytes_per_param
        gradients = n_params * bytes_per_param
        adam = 2 * n_params * 4
        return (weights + gradients + adam) / 1e9
        # END SOLUTION
    """),
    code(r"""
    check("nb00.q1")
    """),
    md(r"""
    ## 3. Measured: one training step of the tiny model, full vs LoRA

    Now a real step on our `tiny` model (~6.5M parameters), batch of 8 headline examples.
    `memory.measure_step` runs one AdamW step and counts the bytes that the weights, the `.grad` tensors,
    the optimizer state and the tensors autograd saved for backward really hold. Next to it: the prediction
    from the formula above (which knows nothing about activations).
    """),
    code(r"""
    BATCH = data.collate(data.format_causal(train_set[:8], tok, max_len=pick(128, 64)), tok.pad_token_id)
    n_params = sum(p.numel() for p in model.parameters())

    full_model = copy.deepcopy(model)  # every parameter trains
    measured_full = memory.measure_step(full_model, BATCH)

    lora_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    n_trainable, n_all = lora_model.get_nb_trainable_parameters()
    measured_lora = memory.measure_step(lora_model, BATCH)

    reports = {
        "full FT, predicted": memory.predict(n_params, n_params),
        "full FT, measured": measured_full,
        "LoRA, predicted": memory.predict(n_all, n_trainable),
        "LoRA, measured": measured_lora,
    }
    mem = pd.DataFrame({k: r.as_dict(unit=memory.MB) for k, r in reports.items()}).T[
        ["weights", "gradients", "optimizer", "activations", "total"]]
    print(f"tiny model: {n_params:,} parameters; LoRA trains {n_trainable:,} ({n_trainable / n_all:.2%}). Megabytes:")
    display(mem.round(2))
    for name, (pred, meas) in {"full FT": (reports["full FT, predicted"], measured_full),
                               "LoRA": (reports["LoRA, predicted"], measured_lora)}.items():
        off = sum(abs(getattr(pred, part) - getattr(meas, part)) for part in ("weights", "gradients", "optimizer"))
        print(f"{name}: weights + gradients + optimizer predicted to within {off} bytes; "
              f"activations are {meas.activations / meas.total:.0%} of the measured total")
    """),
    code(r"""
    fig, ax = plt.subplots(figsize=(7, 3.8))
    bottom = pd.Series(0.0, index=mem.index)
    colors = {"weights": "tab:gray", "gradients": "tab:red", "optimizer": "tab:orange", "activations": "tab:blue"}
    for part, color in colors.items():
        ax.bar(mem.index, mem[part], bottom=bottom, color=color, label=part)
        bottom += mem[part]
    for i, total in enumerate(mem["total"]):
        ax.text(i, total, f"{total:.0f} MB", ha="center", va="bottom")
    ax.set_ylabel("MB in one training step")
    ax.set_title("One AdamW step on the tiny model, batch of 8 (the formula leaves out activations)")
    ax.legend()
    ax.set_ylim(0, mem["total"].max() * 1.15)
    fig.tight_layout()
    fig.savefig(OUT / "memory_bars.png", dpi=100)
    plt.show()
    """),
    md(r"""
    What the numbers say:

    * **Weights, gradients and optimizer state match the prediction** to within a few bytes (the measured weights also
      count small non-parameter buffers such as RoPE's frequency table): the formula is the whole story for them.
    * With LoRA, gradients and optimizer state almost vanish (they scale with the *trainable* count).
    * **Activations do not vanish.** Backpropagation still has to flow through the frozen layers to reach the
      adapters, so most of what the forward pass saves stays (a little less: a frozen layer need not keep its input
      to compute a weight gradient). For this tiny model and a batch of 8 articles they are a large share of the
      total; for a 70B model the weights and optimizer dominate, and activations are tamed with smaller
      batches and gradient checkpointing (recompute instead of store).
    * The formula predicts the weights + gradients + optimizer part; the real bill adds activations and temporaries,
      which is why "many times the model size" is the honest summary for full fine-tuning.

    ## 4. Storage: one model per task, or one adapter per task?

    Full fine-tuning produces a complete new model for every task. PEFT produces a small file that sits next to one
    shared base model. Measure both on disk:
    """),
    code(r"""
    full_dir, adapter_dir = OUT / "full_model", OUT / "lora_adapter"
    full_model.save_pretrained(full_dir, safe_serialization=True)
    lora_model.save_pretrained(str(adapter_dir))
    full_bytes = (full_dir / "model.safetensors").stat().st_size
    adapter_bytes = (adapter_dir / "adapter_model.safetensors").stat().st_size
    print(f"full fine-tuned model: {full_bytes / 1e6:6.2f} MB")
    print(f"LoRA adapter         : {adapter_bytes / 1e6:6.3f} MB  ({full_bytes / adapter_bytes:.0f}x smaller)")

    tasks = [1, 5, 10, 50]
    storage = pd.DataFrame({
        "full FT: one copy per task (MB)": [t * full_bytes / 1e6 for t in tasks],
        "PEFT: base + one adapter per task (MB)": [(full_bytes + t * adapter_bytes) / 1e6 for t in tasks],
    }, index=pd.Index(tasks, name="tasks"))
    display(storage.round(1))
    """),
    md(r"""
    Scaled to a 70B model in bf16 (140 GB per copy), 10 tasks cost 1.4 TB with full fine-tuning. A rank-8 LoRA on
    the query and value projections of a LLaMA-2-70B-shaped model (80 blocks, width 8192, 1024-wide values because of
    grouped-query attention) is a few tens of megabytes:
    """),
    code(r"""
    layers, width, kv_width, rank = 80, 8192, 1024, 8
    lora_70b = layers * (rank * (width + width) + rank * (width + kv_width))  # q_proj and v_proj per block
    print(f"LoRA parameters: {lora_70b:,} = {lora_70b / N:.4%} of 70B; file in bf16: {lora_70b * 2 / 1e6:.0f} MB")
    print(f"10 tasks: full FT {10 * N * 2 / 1e12:.1f} TB  vs  PEFT {(N * 2 + 10 * lora_70b * 2) / 1e9:.1f} GB")
    """),
    md(r"""
    ### Exercise 2 · storage for many tasks
    Write `storage_bytes(n_params, adapter_params, n_tasks, bytes_per_param=4)` returning a pair
    `(full_copies_bytes, base_plus_adapters_bytes)`: the bytes for one full model per task, and for one shared
    base plus one adapter per task.
    """),
    code(r"""
    # EXERCISE nb00.q2
    def storage_bytes(n_params, adapter_params, n_tasks, bytes_per_param=4):
        # BEGIN SOLUTION
        full_copies = n_tasks * n_params * bytes_per_param
        shared = n_params * bytes_per_param + n_tasks * adapter_params * bytes_per_param
        return full_copies, shared
        # END SOLUTION
    """),
    code(r"""
    check("nb00.q2")
    """),
    md(r"""
    ## 5. The three families of PEFT

    | family | idea | examples (notebook) |
    |---|---|---|
    | **selective** | train a chosen subset of the existing weights: some layers, some components, or one parameter type | layer freezing, norm-only, BitFit (02) |
    | **additive** | freeze everything and *add* a few new trainable parts | adapters, (IA)³ (03); soft prompts: prompt tuning, prefix tuning, P-tuning (04) |
    | **reparameterization** | express the weight *change* in a compact form | LoRA (05), QLoRA, DoRA, AdaLoRA (06) |

    All of them live in `peftlab`, behind the same `get_peft_model(model, config)`. Count what each trains on the
    tiny model (BitFit is left out: LLaMA's layers have no biases to train):
    """),
    code(r"""
    families = {
        "selective: norm layers only": ("selective", peftlab.LNTuningConfig()),
        "selective: top block only": ("selective", peftlab.LayerFreezeConfig(num_trainable_layers=1)),
        "additive: bottleneck adapters": ("additive", peftlab.BottleneckConfig()),
        "additive: (IA)^3 vectors": ("additive", peftlab.IA3Config()),
        "additive: prompt tuning (20 tokens)": ("additive (soft prompt)", peftlab.PromptTuningConfig(num_virtual_tokens=20)),
        "reparameterization: LoRA r=8 on q,v": ("reparameterization", LoraConfig(r=8, target_modules=["q_proj", "v_proj"])),
    }
    rows = []
    for name, (family, config) in families.items():
        trainable, _ = get_peft_model(copy.deepcopy(model), config).get_nb_trainable_parameters()
        rows.append({"method": name, "family": family, "trainable": trainable, "% of the base": 100 * trainable / n_params})
    rows.append({"method": "full fine-tuning", "family": "baseline", "trainable": n_params, "% of the base": 100.0})
    display(pd.DataFrame(rows).set_index("method").round(3))
    """),
    md(r"""
    ### Trade-offs

    | | selective | additive: adapters | additive: soft prompts | reparameterization (LoRA) |
    |---|---|---|---|---|
    | parameter efficiency | moderate (a layer is still big) | high | highest (a few thousand numbers) | high |
    | memory while training | grads only for the chosen part; activations stay | small grads/optimizer; activations stay | smallest optimizer state; longer sequences | small grads/optimizer; activations stay |
    | training speed | fast per step | fast; slightly more compute | fast per step, often needs more steps | fast |
    | model quality | mixed results on transformers | close to full fine-tuning | good on large models, weaker on small ones | close to full fine-tuning |
    | inference cost | none | extra layers: a little latency | virtual tokens use context and compute | **none once merged** |

    No method wins every column: that is why the workbook compares them on the same task (notebook 07).

    ### PEFT vs standard (full) fine-tuning

    | | standard fine-tuning | PEFT |
    |---|---|---|
    | data needs | larger labelled sets, or it overfits | works with small labelled sets (few parameters to fit) |
    | training time | long: every weight updated | shorter steps; fewer parameters to move |
    | compute / memory | weights + gradients + optimizer for all (16 B/param + activations) | mostly just the weights + activations |
    | overfitting / forgetting | higher risk: every weight can drift, old skills get overwritten (catastrophic forgetting) | lower risk: the base stays frozen, the adapter can be switched off |
    | performance | the ceiling, when data and compute are plentiful | usually slightly below full fine-tuning, far above the base model |
    | storage | one full copy per task | one base + a small adapter per task |
    | use cases | a single high-stakes task with lots of data and hardware; changing the model's core knowledge | many tasks or customers on one base, limited GPUs, quick iteration, on-device |

    ## 6. Data concerns

    * **Memorisation.** Fine-tuned models can reproduce training examples word for word, and examples that appear
      several times are memorised far more readily. If the training data is private (medical notes, customer
      e-mails), the model can leak it. De-duplicating helps; our BBC loader does it:
    """),
    code(r"""
    raw_files = len(list(data.bbc_dir().glob("*/*.txt")))
    distinct = len(data.bbc_records())
    print(f"BBC corpus: {raw_files} article files, {distinct} distinct articles -> {raw_files - distinct} duplicates dropped "
          f"({(raw_files - distinct) / raw_files:.1%}) before splitting, so no article is in both train and test")
    """),
    md(r"""
    * **In-context learning as the alternative.** When data must not end up inside weights, put a few examples in
      the prompt instead: nothing is trained, nothing is memorised, and the examples can be deleted afterwards. The
      price: a longer prompt on every call, the context-window limit, and usually lower quality than fine-tuning.
    * **Label quality decides success.** Fine-tuning copies what the labels show, mistakes included. A few hundred
      clean, consistent examples often beat thousands of noisy ones; check a sample of your labels by hand first.

    ## 7. Transformer refresher: where each method plugs in

    A decoder block (LLaMA, our `tiny` model) turns a sequence of token vectors $x \in \mathbb{R}^{T \times d}$
    into a new one, twice adding a sublayer's output to its input (*residual* connections), each sublayer reading a
    *normalised* input (RMSNorm):

    $$ x \leftarrow x + \mathrm{Attention}(\mathrm{Norm}(x)), \qquad x \leftarrow x + \mathrm{FFN}(\mathrm{Norm}(x)). $$

    * **Self-attention.** Three linear maps give queries $Q = xW_Q$, keys $K = xW_K$, values $V = xW_V$. Each position
      scores every (earlier) position with a scaled dot product and mixes their values:
      $\mathrm{softmax}\!\big(QK^\top / \sqrt{d_k}\big)\,V$. The $\sqrt{d_k}$ keeps the scores from growing with the
      width, so the softmax does not saturate.
    * **Multi-head.** The width is split into $h$ heads that attend independently (each can look for something
      different); their outputs are concatenated and mixed by $W_O$ (`o_proj`).
    * **FFN.** A per-position MLP (LLaMA: SwiGLU, `gate_proj`, `up_proj`, `down_proj`) that holds much of the model's knowledge.
    * **Positions.** Attention alone ignores order; LLaMA rotates $Q$ and $K$ by position-dependent angles (RoPE).

    One block of the tiny model, with its parameter counts:
    """),
    code(r"""
    block = model.model.layers[0]
    print(block)
    print()
    for name, module in block.named_children():
        for sub, m in [(name, module)] + [(f"{name}.{n}", c) for n, c in module.named_children()]:
            n = sum(p.numel() for p in m.parameters())
            if n:
                print(f"{sub:28s} {n:>9,d} parameters")
    """),
    md(r"""
    | where | what the method does there | method (notebook) |
    |---|---|---|
    | `embed_tokens` input | prepend learned virtual token vectors | prompt tuning, P-tuning (04) |
    | keys/values of every attention layer | prepend learned key/value prefixes | prefix tuning, LLaMA-Adapter (04) |
    | `q_proj`, `k_proj`, `v_proj`, `o_proj` | add a low-rank $BA$ to the weight | LoRA (05), DoRA, AdaLoRA, QLoRA (06) |
    | `k_proj`, `v_proj` outputs, FFN activation | rescale by learned vectors | (IA)³ (03) |
    | after attention / after the FFN | insert a small bottleneck MLP inside the residual stream | Houlsby, Pfeiffer adapters (03) |
    | norms, biases, whole top blocks | unfreeze a chosen subset | selective methods (02) |

    See it on the real thing: the same block after `get_peft_model` with LoRA on `q_proj` and `v_proj`:
    """),
    code(r"""
    print(lora_model.base_model.model.layers[0].self_attn)
    for name, p in lora_model.base_model.model.layers[0].self_attn.named_parameters():
        print(f"{name:36s} {str(tuple(p.shape)):12s} trainable={p.requires_grad}")
    """),
    md(r"""
    ### Exercise 3 · scaled dot-product attention
    Write `attention(Q, K, V)` for tensors of shape `(..., T, d_k)` (no mask): scores $QK^\top/\sqrt{d_k}$,
    softmax over the keys, then the weighted sum of the values. The check compares it with PyTorch's
    `torch.nn.functional.scaled_dot_product_attention` on random inputs of several shapes.
    """),
    code(r"""
    # EXERCISE nb00.q3
    def attention(Q, K, V):
        # BEGIN SOLUTION
        scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., T, T)
        weights = torch.softmax(scores, dim=-1)                    # each row sums to 1
        return weights @ V                                          # (..., T, d_k)
        # END SOLUTION
    """),
    code(r"""
    check("nb00.q3")
    """),
    code(r"""
    # HIDDEN TESTS nb00.q3
    _Q = torch.zeros(4, 3)
    _V = torch.arange(12.0).reshape(4, 3)
    assert torch.allclose(attention(_Q, torch.randn(4, 3), _V), _V.mean(0).expand(4, 3), atol=1e-6), "equal scores must average the values"
    _K = torch.eye(4, 3) * 100
    assert torch.allclose(attention(torch.eye(4, 3) * 100, _K, _V)[:3], _V[:3], atol=1e-3), "a dominant score must pick that value"
    """),
    md(r"""
    ## Recap

    * Supervised fine-tuning continues training a pretrained model on labelled input → output pairs, with the loss on the answer.
    * Full fine-tuning pays for weights + gradients + AdamW moments (16 bytes per fp32 parameter) + activations:
      a 70B model needs 280 GB just to load in fp32 and over a terabyte to train.
    * PEFT trains a small subset or a small add-on: gradients and optimizer state shrink with it; activations do not
      (we measured it). The result is a small file per task next to one shared base model.
    * Three families: selective, additive (adapters, soft prompts), reparameterization (LoRA and kin), with different
      trade-offs in parameters, memory, speed, quality and inference cost.
    * Mind the data: models memorise (especially duplicates), in-context learning avoids putting private data in
      weights, and label quality sets the ceiling.

    Next: notebook 01 (rank), the idea behind LoRA.
    """),
]

if __name__ == "__main__":
    write(cells, "00_why_peft.ipynb")
