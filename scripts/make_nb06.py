"""Build notebooks/06_qlora_dora_adalora.ipynb (run: .venv/bin/python scripts/make_nb06.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 06 · Three refinements of LoRA: QLoRA, DoRA, AdaLoRA

    **Goal.** LoRA (notebook 05) made the *trainable* part small. Three later methods each fix one thing it left
    alone, and by the end you can say which, and show it with numbers:

    * **QLoRA** shrinks the *frozen* base: its weights are stored in 4 bits (NF4) and LoRA trains on top.
    * **DoRA** splits every weight into a *magnitude* and a *direction*; LoRA adapts the direction and the
      magnitude gets its own small trainable vector.
    * **AdaLoRA** stops giving every layer the same rank: updates are shaped like an SVD, unimportant singular
      values are pruned, and the rank budget moves to the layers that need it.

    Concepts: QLoRA and double quantization (19), DoRA (20), AdaLoRA (21).
    """),
    code(r"""
    from peftlab.notebook import FAST, pick, show, quiet
    quiet()

    import copy
    import math
    import random

    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import torch
    from IPython.display import display
    from tqdm.auto import tqdm

    from peftlab import AdaLoraConfig, LoraConfig, QLoraConfig, data, get_peft_model, make_config, models, nf4
    from peftlab.adalora import rank_pattern
    from peftlab.dora import DoraLinear
    from peftlab.grading import check
    from peftlab.train import train

    OUT = models.ROOT / "build" / "nb06"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    We use the `tiny` model and the article → headline task of notebook 05, and one held-out batch of validation
    articles to score every variant the same way (lower loss = better headlines, on average).
    """),
    code(r"""
    MAX_LEN = 96             # tokens per example
    STEPS = pick(20, 2)      # optimizer steps for each short training run below (8 examples each)
    ADA_STEPS = pick(40, 6)  # the AdaLoRA run (section 3) needs a longer schedule

    base, tok = models.load("tiny")
    train_set = data.load("bbc-headlines", "train")[: 8 * ADA_STEPS]   # as many articles as the runs use
    features = data.format_causal(train_set, tok, max_len=MAX_LEN)     # tokenized once, reused by every run
    val_batch = data.collate(data.format_causal(data.load("bbc-headlines", "val", limit=pick(32, 8)), tok,
                                                max_len=MAX_LEN), tok.pad_token_id)  # input_ids/labels (B, T)

    def val_loss(m):
        m.eval()
        with torch.no_grad():
            return m(**val_batch).loss.item()

    def short_run(m, steps=STEPS, lr=3e-3):
        return train(m, tok, features, steps=steps, lr=lr, batch_size=8, progress=False)

    print(f"tiny model: {sum(p.numel() for p in base.parameters()):,} parameters, "
          f"{base.config.num_hidden_layers} blocks; validation loss of the base model: {val_loss(base):.3f}")
    """),
    md(r"""
    ## 1. QLoRA: LoRA over a 4-bit base

    With LoRA, gradients and optimizer states almost vanish (notebook 00): what is left is the frozen base
    itself. In 16-bit a 65B-parameter model still needs 130 GB just to sit in memory. QLoRA (Dettmers et al.
    2023) stores the frozen base in **4 bits per weight**, dequantizes each layer on the fly during the forward
    pass, and trains ordinary LoRA matrices in full precision on top. Gradients flow *through* the 4-bit weights
    into the LoRA matrices; the 4-bit weights themselves never change.

    ### 1.1 Blockwise absmax quantization
    Cut the weight into blocks of 64 numbers. Each block keeps one float, its absolute maximum $c$; every weight
    is divided by $c$ (so it lies in $[-1, 1]$) and replaced by the index of the nearest of **16 levels**, a
    4-bit code. To read the weight back: $\hat w = c \cdot \text{level}[\text{code}]$.

    Which 16 levels? Evenly spaced ones (plain "int4") waste codes: trained weights are roughly normally
    distributed, so most of them crowd near 0 and the outer levels are rarely used. **NF4 (4-bit NormalFloat)**
    puts the levels at *quantiles* of the normal distribution $N(0, 1)$: evenly spaced *probabilities* become
    unevenly spaced *values*, dense near 0 and sparse in the tails, so every code is used about equally often.
    It also keeps an exact 0 (8 positive levels, 7 negative, and 0). Here is how the package builds them:
    """),
    code(r"""
    show(nf4.nf4_codebook)
    print("the 16 NF4 levels:", np.round(nf4.NF4.numpy(), 4))
    """),
    md(r"""
    The left plot reads the construction off the normal CDF: equally spaced probabilities on the vertical axis
    (the ones in the code above) map to the levels on the horizontal axis. The right plot puts the levels on real
    data: all the weights of one attention projection of our tiny model, each divided by its block's absmax.
    """),
    code(r"""
    q_max = torch.special.ndtri(torch.tensor(nf4.OFFSET, dtype=torch.float64)).item()  # outermost quantile
    levels_z = nf4.NF4.double() * q_max        # the 16 levels in units of N(0, 1)
    probs = torch.special.ndtr(levels_z)        # the probability each level is the quantile of

    W = base.model.layers[0].self_attn.q_proj.weight.detach()   # (256, 256) here
    blocks = W.flatten().view(-1, 64)                            # (n_blocks, 64)
    scaled = (blocks / blocks.abs().amax(dim=1, keepdim=True)).flatten()  # every weight in [-1, 1]
    uniform = torch.linspace(-1, 1, 16)                          # the "int4" alternative

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4))
    z = torch.linspace(-2.6, 2.6, 300, dtype=torch.float64)
    ax1.plot(z, torch.special.ndtr(z), color="black", lw=1, label="CDF of N(0, 1)")
    for x, p in zip(levels_z, probs):
        ax1.plot([x, x, -2.6], [0, p, p], color="tab:blue", lw=0.7, alpha=0.6)
    ax1.plot(levels_z, probs, "o", color="tab:blue", label="NF4 level = quantile")
    ax1.set_xlim(-2.6, 2.6), ax1.set_ylim(0, 1)
    ax1.set_xlabel("value (standard deviations)"), ax1.set_ylabel("probability below")
    ax1.set_title("equal steps in probability -> NF4 levels")
    ax1.legend(loc="upper left")

    ax2.hist(scaled.numpy(), bins=120, density=True, color="lightgray", label="tiny model weights / block absmax")
    for i, x in enumerate(nf4.NF4):
        ax2.axvline(x, color="tab:blue", lw=1, label="NF4 levels" if i == 0 else None)
    ax2.plot(uniform, np.full(16, -0.08), "|", ms=14, color="tab:red", label="evenly spaced (int4) levels")
    ax2.set_xlabel("w / absmax of its block"), ax2.set_ylabel("density")
    ax2.set_title("NF4 levels are dense where the weights are")
    ax2.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "nf4_codebook.png", dpi=100)
    plt.show()
    """),
    md(r"""
    How evenly are the 16 codes used on these real weights? A code used by every weight is one wasted level; with
    perfectly even use, 4 bits carry 4 bits of information (the *entropy* of the codes).
    """),
    code(r"""
    def nearest_level(x, levels):  # index of the nearest level, for this comparison only
        return (x.unsqueeze(1) - levels.unsqueeze(0)).abs().argmin(dim=1)

    usage = {}
    for name, levels in [("NF4", nf4.NF4), ("int4 (evenly spaced)", uniform)]:
        codes = nearest_level(scaled, levels)
        share = torch.bincount(codes, minlength=16).float() / codes.numel()
        entropy = -(share[share > 0] * share[share > 0].log2()).sum().item()
        w_hat = (levels[codes].view(-1, 64) * blocks.abs().amax(dim=1, keepdim=True)).view_as(W)
        usage[name] = {"entropy of the codes (bits, max 4)": entropy,
                       "least used level (% of weights)": 100 * share.min().item(),
                       "most used level (% of weights)": 100 * share.max().item(),
                       "mean |w - w_hat|": (w_hat - W).abs().mean().item()}
    display(pd.DataFrame(usage).T.round(4))
    """),
    md(r"""
    NF4 spreads the weights over its codes more evenly (higher entropy) and so reconstructs them with a smaller
    error than evenly spaced levels, at the same 4 bits.

    ### 1.2 One block, quantized
    Now the package's `quantize_nf4` on the same layer. It stores two codes per byte (`packed`) and one absmax per
    block; `dequantize_nf4` reads the weights back. The plot shows the first block of 64 weights: every original
    weight (dot) snaps to one of the 16 horizontal lines, the levels scaled by this block's absmax.
    """),
    code(r"""
    state = nf4.quantize_nf4(W, blocksize=64, double_quant=False)
    W_hat = nf4.dequantize_nf4(state, W.shape, blocksize=64)
    for k, v in state.items():
        print(f"{k:8s} {str(tuple(v.shape)):10s} {v.dtype}")
    print(f"weights: {W.numel():,} -> {state['packed'].numel():,} bytes of codes + {state['absmax'].numel()} absmax floats")

    block, block_hat, c = W.flatten()[:64], W_hat.flatten()[:64], state["absmax"][0]
    fig, ax = plt.subplots(figsize=(10, 3.5))
    for x in nf4.NF4 * c:
        ax.axhline(x, color="tab:blue", lw=0.5, alpha=0.5)
    ax.vlines(range(64), block, block_hat, color="tab:red", lw=1, label="quantization error")
    ax.plot(block, "o", ms=4, color="black", label="original weight")
    ax.plot(block_hat, "_", ms=8, mew=2, color="tab:blue", label="NF4 weight")
    ax.set_xlabel("position in the block"), ax.set_ylabel("weight")
    ax.set_title(f"first block of q_proj (layer 0): absmax c = {c:.4f}; blue lines: the 16 levels x c")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.17), fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(OUT / "nf4_block.png", dpi=100)
    plt.show()

    err = nf4.quantization_error(W, blocksize=64, double_quant=True)
    print(f"over the whole layer: mean |error| {err['mean_abs']:.2e}, max {err['max_abs']:.2e}, "
          f"relative ||W - W_hat|| / ||W|| = {err['relative']:.1%} (weights: mean |w| {W.abs().mean():.2e})")
    """),
    md(r"""
    ### Exercise 1 · quantize a block to NF4
    Write `nf4_quantize_block(block)`: `block` is a 1-D float tensor (one block). Return `(codes, absmax)`:
    `absmax` is the block's largest absolute value (a float), `codes` a tensor of integers in 0..15, one per
    weight, the index into `nf4.NF4` of the level nearest to `w / absmax`. The check compares you with
    `peftlab.nf4.quantize_nf4` on random blocks.
    """),
    code(r"""
    # EXERCISE nb06.q1
    def nf4_quantize_block(block):
        # BEGIN SOLUTION
        absmax = block.abs().max()
        codes = (block.unsqueeze(1) / absmax - nf4.NF4.unsqueeze(0)).abs().argmin(dim=1)  # (n, 16) -> (n,)
        return codes, float(absmax)
        # END SOLUTION
    """),
    code(r"""
    check("nb06.q1")
    """),
    md(r"""
    ### 1.3 Double quantization, and bits per parameter
    The codes cost 4 bits per weight, but every block of 64 also stores a 32-bit absmax: $32/64 = 0.5$ extra bits
    per weight, 4.5 in all. **Double quantization** quantizes those constants too: their mean is subtracted, then
    they are stored in 8 bits, in blocks of 256 constants that each keep one 32-bit scale:

    $$ 4 + \frac{32}{64} = 4.5 \quad\longrightarrow\quad 4 + \frac{8}{64} + \frac{32}{64 \cdot 256} \approx 4.127 \text{ bits per weight.} $$

    `Linear4bit` is the package's frozen 4-bit layer; we *measure* its storage by counting the bytes of its
    buffers (a few extra bits come from the one mean per layer and the last, partly filled, block of constants).
    """),
    code(r"""
    layer = base.model.layers[0].mlp.up_proj
    rows = {"float32": {"bits / weight": 32.0}, "bfloat16": {"bits / weight": 16.0}}
    for dq in (False, True):
        q = nf4.Linear4bit(layer, blocksize=64, double_quant=dq)
        e = nf4.quantization_error(layer.weight, blocksize=64, double_quant=dq)
        rows[f"NF4{' + double quantization' if dq else ''}"] = {
            "bits / weight": nf4.storage_bits_per_param(q), "relative error": e["relative"]}
    bits = pd.DataFrame(rows).T
    display(bits.round(4))
    assert bits.loc["NF4 + double quantization", "bits / weight"] <= 4.13
    print(f"{tuple(layer.weight.shape)} weights of mlp.up_proj: NF4 + DQ takes "
          f"{bits.loc['NF4 + double quantization', 'bits / weight'] / 32:.1%} of the float32 storage")
    """),
    md(r"""
    Double quantization saves 0.37 bits per weight (about 3 GB on a 65B model) and barely changes the error.

    ### Exercise 2 · bits per parameter
    Write `bits_per_param(blocksize, double_quant, dq_blocksize=256)`: the storage per weight of NF4 with one
    32-bit absmax per `blocksize` weights, or (with `double_quant`) 8-bit absmax codes plus one 32-bit scale per
    `dq_blocksize` constants. Count a weight so large that the one mean per layer does not matter.
    The check compares with `Linear4bit`'s measured storage for random block sizes.
    """),
    code(r"""
    # EXERCISE nb06.q2
    def bits_per_param(blocksize, double_quant, dq_blocksize=256):
        # BEGIN SOLUTION
        if not double_quant:
            return 4 + 32 / blocksize
        return 4 + 8 / blocksize + 32 / (blocksize * dq_blocksize)
        # END SOLUTION
    """),
    code(r"""
    check("nb06.q2")
    """),
    md(r"""
    ### 1.4 QLoRA on the tiny model
    `QLoraConfig` is a `LoraConfig` plus the quantization settings. By default it quantizes **every** linear layer
    of the model to NF4 (`quantize_modules="all-linear"`) and puts LoRA on the `target_modules`. The trainable
    count is exactly LoRA's: quantization only changes what the *frozen* part costs.
    """),
    code(r"""
    targets = ["q_proj", "v_proj"]
    lora_model = get_peft_model(copy.deepcopy(base), LoraConfig(r=8, lora_alpha=16, target_modules=targets))
    qlora_model = get_peft_model(copy.deepcopy(base), QLoraConfig(r=8, lora_alpha=16, target_modules=targets))
    print("LoRA :", end=" "); lora_model.print_trainable_parameters()
    print("QLoRA:", end=" "); qlora_model.print_trainable_parameters()
    print(qlora_model.base_model.model.layers[0].self_attn.q_proj)

    quantized = [m for m in qlora_model.modules() if isinstance(m, nf4.Linear4bit)]
    n_q = sum(m.quantized_numel for m in quantized)
    q_bytes = sum(t.numel() * t.element_size() for m in quantized for t in m.quant_state().values())
    print(f"\n{len(quantized)} linear layers, {n_q:,} weights: {4 * n_q / 1e6:.1f} MB in float32 -> "
          f"{q_bytes / 1e6:.2f} MB in NF4 (the embeddings and norms stay in float32)")
    """),
    md(r"""
    Quantization is not free: even before any training, the 4-bit base is a slightly *different* model. With the
    adapter switched off we see the quantized base alone. Then both adapters train for the same few steps.
    """),
    code(r"""
    with qlora_model.disable_adapter():
        nf4_base_loss = val_loss(qlora_model)
    h_lora = short_run(lora_model)
    h_qlora = short_run(qlora_model)

    fig, ax = plt.subplots(figsize=(6, 3))
    h_lora.plot(ax=ax, label="LoRA (float32 base)", smooth=3)
    h_qlora.plot(ax=ax, label="QLoRA (NF4 base)", smooth=3)
    ax.set_title(f"training loss, {STEPS} steps (moving average of 3)")
    fig.tight_layout()
    fig.savefig(OUT / "qlora_loss.png", dpi=100)
    plt.show()

    display(pd.DataFrame({
        "validation loss": {"base (float32)": val_loss(base), "base (NF4)": nf4_base_loss,
                            "LoRA": val_loss(lora_model), "QLoRA": val_loss(qlora_model)},
    }).round(3))
    """),
    md(r"""
    The two curves lie almost on top of each other: LoRA learns the same thing whether the frozen weights it sits
    on are stored in 32 or in about 4 bits.

    ### 1.5 What one QLoRA step holds, measured
    Storing the base in 4 bits only saves memory if training never keeps a float copy of it. In the forward pass
    every `Linear4bit` dequantizes its weight for one matmul. A plain `F.linear` would then *save* that float copy
    for the backward pass, and a training step would hold every frozen weight in float32 after all. The package's
    `MatMul4bit` is a custom autograd function that saves only the 4-bit state (the layer's own buffers) and
    dequantizes a second time in backward. Its backward returns the input's gradient only: the frozen weight needs
    none.
    """),
    code(r"""
    show(nf4.MatMul4bit)
    """),
    md(r"""
    `peftlab.memory.measure_step` (notebook 00) runs one AdamW step and counts the bytes each part holds: the
    weights (the NF4 buffers at their real size), the gradients, the optimizer state, and every tensor autograd
    saved for backward ("activations"). We measure copies of the two models on one training batch of 8, then
    read the same measurement on SmolLM2-135M (batch 4 × 128 tokens) from the committed benchmark
    (`benchmarks/memory.py`).
    """),
    code(r"""
    import json
    from peftlab.memory import MB, measure_step

    mem_batch = data.collate(features[:8], tok.pad_token_id)           # input_ids/labels (8, T)
    mem = pd.DataFrame({name: measure_step(copy.deepcopy(m), mem_batch).as_dict(MB)
                        for name, m in [("LoRA", lora_model), ("QLoRA", qlora_model)]}).T
    display(mem.round(2).rename(columns=lambda c: f"{c} (MB)"))
    step_ratio = mem.loc["QLoRA", "total"] / mem.loc["LoRA", "total"]
    act_ratio = mem.loc["QLoRA", "activations"] / mem.loc["LoRA", "activations"]
    assert step_ratio < 1 and act_ratio <= 1.05, "QLoRA must hold less than LoRA, and no more activations"
    print(f"tiny model: one QLoRA step holds {step_ratio:.0%} of LoRA's bytes "
          f"(weights {mem.loc['QLoRA', 'weights']:.1f} MB instead of {mem.loc['LoRA', 'weights']:.1f} MB; "
          f"activations x{act_ratio:.2f})")

    bench = models.ROOT / "docs" / "results" / "bench_memory_smollm2-135m.json"
    if bench.is_file():
        big = {k: c["measured_MB"] for k, c in json.loads(bench.read_text())["configs"].items()}
        big_ratio = big["qlora"]["total"] / big["lora"]["total"]
        assert big_ratio < 1 and big["qlora"]["activations"] <= 1.05 * big["lora"]["activations"]
        print(f"SmolLM2-135M (benchmark): LoRA {big['lora']['total']:,.0f} MB, QLoRA {big['qlora']['total']:,.0f} MB "
              f"= {big_ratio:.0%} (full fine-tuning {big['full']['total']:,.0f} MB); activations "
              f"{big['lora']['activations']:,.0f} vs {big['qlora']['activations']:,.0f} MB")
    """),
    md(r"""
    The activations do not grow (the cell asserts at most 5% more than LoRA's): the 4-bit layers add nothing to
    what backward keeps. All the saving is in the weights, and it grows with the model: in the SmolLM2 figures the tied embedding (about 113 MB) stays in
    float32, and it is a much smaller share of a 7B or 65B model. On a GPU this is the whole point: QLoRA
    fine-tuned a 65B model on one 48 GB GPU. The price is time: every 4-bit weight is dequantized twice per step
    (forward and backward). Here is what the two short runs above measured, one step after the other:
    """),
    code(r"""
    sec = {name: float(np.median([r["seconds"] for r in h])) for name, h in [("LoRA", h_lora), ("QLoRA", h_qlora)]}
    print(f"median seconds per step: LoRA {sec['LoRA']:.3f}, QLoRA {sec['QLoRA']:.3f} "
          f"(QLoRA / LoRA = {sec['QLoRA'] / sec['LoRA']:.2f}; runs were not interleaved, so this ratio is noisy)")
    bench = models.ROOT / "docs" / "results" / "bench_qlora_vs_lora_smollm2-135m.json"
    if bench.is_file():
        r = json.loads(bench.read_text())["step_time_ratio"]
        print(f"SmolLM2-135M, CPU benchmark, interleaved steps: QLoRA / LoRA = {r['median']:.2f} "
              f"(IQR {r['q1']:.2f}-{r['q3']:.2f}, n={r['n']})")
    """),
    md(r"""
    ### 1.6 Merging into a 4-bit base
    A trained LoRA adapter merges into its base: $W = W_0 + sBA$ (notebook 05). With QLoRA this is where people
    trip: $W_0 + sBA$ is not on the NF4 grid. `peftlab.qlora.merge_and_unload` makes you choose:

    * `requantize=True` (the default, and what `model.merge_and_unload()` does, as HF peft does with
      bitsandbytes): dequantize, add $sBA$, quantize again. The model stays 4-bit, but every merged weight is
      rounded to an NF4 level again: where $sBA$ is smaller than half a level gap, the weight snaps back to its
      old code and that part of the update is lost.
    * `requantize=False`: dequantize every 4-bit layer to float32 first, then merge exactly. The merged model
      equals the adapted one to float rounding, but its linears take 32 bits per weight again.
    """),
    code(r"""
    from peftlab import qlora

    show(qlora.merge_and_unload)

    merge_batch = {k: v[:8] for k, v in val_batch.items()}  # 8 validation articles: logits (8, T, vocab) are big

    def run(m):
        m.eval()
        with torch.no_grad():
            out = m(**merge_batch)
        return out.logits, out.loss.item()                             # (8, T, vocab), loss

    def linear_bits(m):  # storage per weight of the linear layers
        q = [l for l in m.modules() if isinstance(l, nf4.Linear4bit)]
        if not q:
            return 32.0
        return sum(nf4.storage_bits_per_param(l) * l.quantized_numel for l in q) / sum(l.quantized_numel for l in q)

    def merge_rows(model, label, choices=(True, False)):
        adapted, loss = run(model)
        with model.disable_adapter():
            effect = (adapted - run(model)[0]).norm()                  # how far the adapter moved the logits
        rows = {f"{label}, unmerged": {"bits / weight": linear_bits(model), "loss (8 val. articles)": loss}}
        merged = {}
        for requantize in choices:
            merged[requantize] = qlora.merge_and_unload(copy.deepcopy(model), requantize=requantize)
            out, loss = run(merged[requantize])
            rows[f"{label}, requantize={requantize}"] = {
                "bits / weight": linear_bits(merged[requantize]), "loss (8 val. articles)": loss,
                "max |logit - unmerged|": (out - adapted).abs().max().item(),
                "error / adapter's effect": ((out - adapted).norm() / effect).item()}
        return rows, merged

    small_update = copy.deepcopy(qlora_model)                          # the same adapter, its update sBA / 10
    for layer in small_update.modules():
        if isinstance(layer, qlora.QLoraLinear):
            layer.scaling["default"] /= 10
    rows, merged = merge_rows(qlora_model, "trained adapter")
    rows_small, _ = merge_rows(small_update, "update / 10", choices=(True,))
    report = pd.DataFrame({**rows, **rows_small}).T
    display(report.round(5).fillna("-"))

    err = report["error / adapter's effect"]
    assert report.loc["trained adapter, requantize=False", "max |logit - unmerged|"] < 1e-4, "float32 merge: exact"
    assert err["trained adapter, requantize=True"] > 100 * err["trained adapter, requantize=False"]
    assert err["update / 10, requantize=True"] > err["trained adapter, requantize=True"], "small updates lose more"

    q_proj = qlora_model.base_model.model.layers[0].self_attn.q_proj
    delta = q_proj.delta_weight("default").detach()                    # (out, in): s B A
    rounding = nf4.quantization_error(base.model.layers[0].self_attn.q_proj.weight)["mean_abs"]
    old, new = q_proj.base_layer.packed, merged[True].model.layers[0].self_attn.q_proj.packed
    changed = torch.cat([(new >> 4) != (old >> 4), (new & 15) != (old & 15)]).float().mean()
    print(f"requantized merge of the trained adapter: {err['trained adapter, requantize=True']:.1%} of its effect "
          f"is lost; of the update / 10: {err['update / 10, requantize=True']:.1%}")
    print(f"layers.0.q_proj: mean |sBA| = {delta.abs().mean():.1e}, mean NF4 rounding error of W0 = {rounding:.1e}; "
          f"the merge changed {changed:.1%} of its 4-bit codes")
    """),
    md(r"""
    Read the table row by row. Merging into a float32 copy reproduces the adapted model to float rounding, at 32
    bits per weight. Requantizing keeps the 4-bit size but rounds every merged weight to an NF4 level again: it
    changes some codes and loses the share of the adapter's effect printed above. The same adapter with its
    update divided by 10 loses a larger share (asserted in the cell): the rounding error stays about the same
    size while the update shrinks, and where $sBA$ is below half a level gap the weight snaps back to its old
    code. So keep a QLoRA adapter unmerged (it is small, and the 4-bit base can be shared), or merge it into a
    float copy of the base; requantize only after measuring what it costs.

    The paper adds a third trick we do not reproduce here: *paged optimizers*, which move optimizer states to CPU
    memory when the GPU runs short.

    ## 2. DoRA: magnitude and direction

    Every output row of a weight matrix is a vector, and a vector is a **length** (magnitude) times a
    **direction** (a unit vector). DoRA (Liu et al. 2024) writes the weight that way,

    $$ W = m \odot \frac{V}{\lVert V \rVert_c}, \qquad m = \lVert W_0 \rVert_c \text{ at the start}, $$

    where $\lVert\cdot\rVert_c$ takes the norm of each output row. Then it trains the two parts separately: the
    magnitude $m$ directly (one number per output feature, a tiny vector), and the direction $V = W_0 + BA$ with
    LoRA. The authors found that full fine-tuning often changes the length and the direction of a row
    *independently*, while plain LoRA tends to change both together; DoRA gives it the freedom to do what full
    fine-tuning does, for a few more parameters. First the split itself, on a real weight:
    """),
    code(r"""
    W = base.model.layers[0].self_attn.v_proj.weight.detach()    # (out, in)
    m = torch.linalg.norm(W, dim=1)                               # (out,) one length per output row
    direction = W / m.unsqueeze(1)                                # (out, in), every row has length 1
    print(f"W {tuple(W.shape)} = magnitude {tuple(m.shape)} x direction {tuple(direction.shape)}")
    print("row lengths of the direction:", torch.linalg.norm(direction, dim=1)[:4].numpy().round(4), "...")
    print("magnitude times direction gives W back:", torch.allclose(m.unsqueeze(1) * direction, W, atol=1e-6))
    """),
    md(r"""
    The package's DoRA layer is the LoRA layer plus that magnitude vector (`lora_magnitude_vector`, peft's
    name). Its forward pass computes $g = m / \lVert W_0 + sBA \rVert_c$ and scales the base output and the LoRA
    output by it; the norm is detached (treated as a constant in backward), as the paper recommends, to save
    memory:
    """),
    code(r"""
    show(DoraLinear.forward)
    """),
    md(r"""
    ### Exercise 3 · DoRA's magnitude vector
    Write `dora_magnitude(W)`: for a weight `W` of shape `(out, in)`, the magnitude vector DoRA starts from
    (shape `(out,)`). The check compares with the `lora_magnitude_vector` of `peftlab.dora.DoraLinear` on random
    layers.
    """),
    code(r"""
    # EXERCISE nb06.q3
    def dora_magnitude(W):
        # BEGIN SOLUTION
        return torch.linalg.norm(W, dim=1)  # (out,)
        # END SOLUTION
    """),
    code(r"""
    check("nb06.q3")
    """),
    md(r"""
    ### 2.1 A short DoRA run
    `make_config("dora", ...)` is a `LoraConfig` with `use_dora=True`. DoRA trains LoRA's parameters plus one
    magnitude per output feature of every targeted layer:
    """),
    code(r"""
    dora_model = get_peft_model(copy.deepcopy(base), make_config("dora", r=8, lora_alpha=16, target_modules=targets))
    n_lora, n_dora = lora_model.get_nb_trainable_parameters()[0], dora_model.get_nb_trainable_parameters()[0]
    n_out = sum(base.get_submodule(n).out_features for n, _ in base.named_modules() if n.endswith(tuple(targets)))
    print(f"LoRA trains {n_lora:,}; DoRA trains {n_dora:,} = LoRA + {n_dora - n_lora:,} magnitudes "
          f"(the output features of the targeted layers: {n_out:,})")
    h_dora = short_run(dora_model)
    print(f"validation loss: LoRA {val_loss(lora_model):.3f}, DoRA {val_loss(dora_model):.3f}")
    """),
    md(r"""
    What did training do to the two parts? For each targeted layer we compare the trained weight (merged into a
    copy) with the base weight, row by row: the relative change of the row's **length** $\Delta M$ and the change
    of its **direction** $\Delta D = 1 - \cos(\text{row}_0, \text{row})$. Left: the magnitude of every output
    feature of one layer after DoRA, relative to its start. Right: $\Delta M$ against $\Delta D$ per layer, for the
    LoRA model of section 1 and for DoRA.
    """),
    code(r"""
    def changes(peft_model):
        merged = copy.deepcopy(peft_model).merge_and_unload()
        out = []
        for name, mod in base.named_modules():
            if name.endswith(tuple(targets)):
                w0, w1 = mod.weight.detach(), merged.get_submodule(name).weight.detach()  # (out, in)
                n0, n1 = torch.linalg.norm(w0, dim=1), torch.linalg.norm(w1, dim=1)
                out.append({"layer": name, "dM": ((n1 - n0).abs() / n0).mean().item(),
                            "dD": (1 - torch.nn.functional.cosine_similarity(w0, w1, dim=1)).mean().item()})
        return pd.DataFrame(out)

    lora_ch, dora_ch = changes(lora_model), changes(dora_model)
    dl = dora_model.base_model.get_submodule("model.layers.0.self_attn.v_proj")
    m_ratio = (dl.lora_magnitude_vector["default"] / torch.linalg.norm(dl.base_layer.weight, dim=1)).detach()

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 3.8))
    ax1.bar(range(len(m_ratio)), (m_ratio - 1).numpy(), color="tab:green")
    ax1.axhline(0, color="black", lw=0.5)
    ax1.set_xlabel("output feature of layers.0.self_attn.v_proj"), ax1.set_ylabel("m / m_init - 1")
    ax1.set_title(f"DoRA magnitudes after {STEPS} steps")
    for df, label, color in [(lora_ch, "LoRA", "tab:blue"), (dora_ch, "DoRA", "tab:green")]:
        ax2.scatter(df["dD"], df["dM"], label=label, color=color)
    ax2.set_xlabel("direction change  mean(1 - cos)"), ax2.set_ylabel("magnitude change  mean |dm| / m")
    ax2.set_title("per targeted layer: how rows changed")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(OUT / "dora_magnitude.png", dpi=100)
    plt.show()
    print(f"DoRA magnitudes of that layer moved by up to {(m_ratio - 1).abs().max():.1%}")
    for df, label in [(lora_ch, "LoRA"), (dora_ch, "DoRA")]:
        print(f"{label}: correlation between direction change and magnitude change over the layers: "
              f"{np.corrcoef(df['dD'], df['dM'])[0, 1]:+.2f}")
    """),
    md(r"""
    On the left, the magnitudes moved by a few percent, feature by feature, some up and some down: they are
    trained parameters of their own, not a by-product of the LoRA update. On the right, compare the two
    correlations printed under the plot. With plain LoRA, the layers whose rows turned further also changed their
    length more: the points lie near a rising line, because one low-rank product has to do both. DoRA loosens
    that link: how much a layer's magnitudes moved depends much less on how far its directions turned. The DoRA
    paper reports the same picture at scale, and that full fine-tuning behaves like DoRA here, not like LoRA;
    with 6 layers and 20 steps this is a glimpse, not a proof. DoRA costs a little more compute per step (the
    row norms), and it merges like LoRA: no cost at inference.

    ## 3. AdaLoRA: a rank budget that moves

    LoRA gives every targeted layer the same rank $r$. But not every layer needs it: some matter a lot for the
    task, some hardly at all. AdaLoRA (Zhang et al. 2023) makes the rank something training can *spend*:

    1. **SVD-shaped updates.** Each update is $\Delta W = P \Lambda Q$ with a vector $\Lambda$ of "singular
       values" (`lora_E`) between $P$ (`lora_B`) and $Q$ (`lora_A`), and a penalty that keeps $P$ and $Q$ close
       to orthogonal. Zeroing one entry of $\Lambda$ removes one rank, and can be undone.
    2. **Importance.** Each triplet $(P_{:,i}, \lambda_i, Q_{i,:})$ gets a score from how much the loss would
       change without it ($|w \cdot \partial L / \partial w|$, smoothed over steps, times its uncertainty).
    3. **A shrinking budget.** The total rank over all layers starts at `init_r` per layer and falls on a cubic
       schedule to `target_r` per layer; at each allocation the lowest-scoring triplets are pruned.

    Where does the rank end up? We target **all seven** linear layers of every block, start from rank 8
    everywhere, and let AdaLoRA keep an average of 2.
    """),
    code(r"""
    ada_config = AdaLoraConfig(
        init_r=8, target_r=2, lora_alpha=16,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        tinit=pick(6, 1), tfinal=pick(8, 1), deltaT=pick(4, 1), total_step=ADA_STEPS,
    )
    ada_model = get_peft_model(copy.deepcopy(base), ada_config)
    ada_model.print_trainable_parameters()
    controller = ada_model.prompt_modules[ada_model.active_adapter]  # AdaLoRA's model-level part: budget + allocator
    show(type(controller).budget_schedule)
    """),
    md(r"""
    The training loop must call `model.update_and_allocate(step)` after every optimizer step, **while the
    gradients still exist** (importance is computed from them), so after `optimizer.step()` and before
    `optimizer.zero_grad()`. `peftlab.train.train` zeroes the gradients before its `on_step` callback runs, so we
    write the loop out; it is short. The loss the model returns already includes the orthogonality penalty.
    """),
    code(r"""
    collator = data.Collator(tok)
    optimizer = torch.optim.AdamW([p for p in ada_model.parameters() if p.requires_grad], lr=3e-3)
    random.seed(0)
    ada_log = []
    ada_model.train()
    for step in tqdm(range(1, ADA_STEPS + 1), desc="AdaLoRA"):
        batch = collator(random.sample(features, 8))      # input_ids/attention_mask/labels (8, T)
        loss = ada_model(**batch).loss                      # task loss + orth_reg_weight * penalty
        loss.backward()
        optimizer.step()
        ada_model.update_and_allocate(step)                 # importance from the gradients, prune to the budget
        optimizer.zero_grad()
        ada_log.append({"step": step, "loss": loss.item(), "budget": controller.budget_schedule(step)[0],
                        "total rank": sum(rank_pattern(ada_model).values())})
    ada_model.eval()
    ada_log = pd.DataFrame(ada_log).set_index("step")
    print(f"validation loss after {ADA_STEPS} steps: AdaLoRA {val_loss(ada_model):.3f}")
    """),
    code(r"""
    ranks = rank_pattern(ada_model)                  # {layer name: rank it kept}
    kinds = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    n_blocks = base.config.num_hidden_layers
    grid = np.array([[ranks[f"model.layers.{i}.{'self_attn' if k.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'}.{k}"]
                      for k in kinds] for i in range(n_blocks)])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.2]})
    ax1.plot(ada_log.index, ada_log["budget"], color="black", label="budget b(t) (cubic schedule)")
    ax1.plot(ada_log.index, ada_log["total rank"], "o", ms=3, color="tab:orange", label="total rank kept")
    ax1.axvspan(0, ada_config.tinit, color="gray", alpha=0.15, label="warm-up / final phase")
    ax1.axvspan(ADA_STEPS - ada_config.tfinal, ADA_STEPS, color="gray", alpha=0.15)
    ax1.set_xlabel("step"), ax1.set_ylabel("sum of ranks over all layers")
    ax1.set_title(f"rank budget: {controller.init_bgt} -> {controller.target_bgt}")
    ax1.legend(fontsize=8)
    im = ax2.imshow(grid, cmap="viridis", vmin=0, vmax=ada_config.init_r)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            ax2.text(j, i, grid[i, j], ha="center", va="center", color="white" if grid[i, j] < 5 else "black")
    ax2.set_xticks(range(len(kinds)), kinds, rotation=30), ax2.set_yticks(range(n_blocks))
    ax2.set_ylabel("block"), ax2.set_title(f"rank kept per layer (started at {ada_config.init_r} everywhere)")
    fig.colorbar(im, ax=ax2, shrink=0.8)
    fig.tight_layout()
    fig.savefig(OUT / "adalora_ranks.png", dpi=100)
    plt.show()

    by_kind = pd.DataFrame(grid, columns=kinds).mean().round(2)
    print("mean rank kept per layer type:", {k: float(v) for k, v in by_kind.items()})
    print(f"total {grid.sum()} of the budget {controller.target_bgt}; "
          f"{(grid == 0).sum()} of {grid.size} layers were switched off entirely")
    """),
    md(r"""
    The budget did not stay spread evenly: some layers kept most of their rank, others lost all of it. Which ones
    win depends on the task, the model and (in a run this short) on noise; read the heatmap as "AdaLoRA *can*
    move rank", not as a law about which layers matter. The pruned singular values are zeros, so a trained
    AdaLoRA adapter merges like LoRA. The cost: more bookkeeping during training (importance scores for every
    parameter of every adapter) and a schedule with several knobs (`init_r`, `target_r`, `tinit`, `tfinal`,
    `deltaT`).

    ## Recap
    * **QLoRA** = LoRA over a frozen base stored in **NF4**: blocks of 64 weights, one absmax each, and 16 levels
      placed at quantiles of $N(0, 1)$ so that the codes are used evenly. **Double quantization** stores the
      absmax constants in 8 bits: about **4.13 bits per weight** instead of 4.5 (or 16, or 32). The trainable
      count is LoRA's; the loss curve is almost LoRA's; the memory of the frozen base drops about 8× from
      float32, and `MatMul4bit` (dequantize again in backward) keeps training from holding a float copy of it.
      Merging must choose: requantize (stays 4-bit, loses part of a small update) or merge into float32 (exact).
    * **DoRA** writes each weight as magnitude × direction, trains the magnitude vector directly (one number per
      output feature) and the direction with LoRA. A few more parameters, a little more compute, merges like LoRA.
    * **AdaLoRA** shapes each update like an SVD, scores every singular value by its importance, and prunes on a
      shrinking budget, so rank moves to the layers that need it. Its loop must call
      `model.update_and_allocate(step)` between `optimizer.step()` and `optimizer.zero_grad()`.

    Next: notebook 07 puts every method side by side on one task (ROUGE, parameters, memory, time).
    """),
]

if __name__ == "__main__":
    write(cells, "06_qlora_dora_adalora.ipynb")
