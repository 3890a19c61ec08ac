# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Why parameter-efficient fine-tuning?
#
# **Goal.** See, with numbers you compute yourself, why fine-tuning *every* weight of a large model is
# expensive (memory while training, storage per task), what the three families of PEFT methods change,
# what they trade away, who uses them, and where in a transformer each of them plugs in.
#
# Concepts: supervised fine-tuning (1), the memory bill of full fine-tuning (2), overfitting and one copy per task
# (3), what PEFT buys (4), trade-offs (5), the three families (6), PEFT vs standard fine-tuning (24),
# data concerns (25), a transformer refresher (26), who uses PEFT and PEFT beyond language models (28), and three
# claims of the usual course material that measurement corrects (29).

# %%
from peftlab.classroom.notebook import FAST, pick, show, start
OUT = start("nb00", seed=None)  # quiet logs, build/nb00/ for every file it writes, says the mode

import copy
import math

import matplotlib.pyplot as plt
import pandas as pd
import torch
import transformers
from IPython.display import display
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

import peftlab
from peftlab import LoraConfig, data, get_peft_model, make_config, memory, models, showdown
from peftlab.classroom.grading import check

pd.set_option("display.max_colwidth", 80)
transformers.utils.logging.disable_progress_bar()  # no bar per model load

# %% [markdown]
# ## 1. Supervised fine-tuning
#
# A pretrained language model has learned, from a mountain of unlabelled text, to continue text.
# **Supervised fine-tuning (SFT)** keeps training it on *labelled* pairs (an input and the output we want)
# so that it learns a particular task. The loss is the same next-token loss as in pretraining, but it is
# counted only on the answer tokens: the model is graded on what it writes, not on the prompt it was given.
#
# One labelled pair from our `bbc-headlines` task (article → headline), and how it becomes training tokens:

# %%
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

# %% [markdown]
# ## 2. The memory bill of full fine-tuning, from first principles
#
# Every parameter stored in 32-bit floating point takes **4 bytes**. Just *loading* a 70-billion-parameter
# model for inference therefore needs:

# %%
GB = 1e9
N = 70e9  # parameters
print(f"70B parameters x 4 bytes = {N * 4 / GB:,.0f} GB just to load (fp32)")
print(f"                 2 bytes = {N * 2 / GB:,.0f} GB in bf16/fp16")
print(f"an 80 GB GPU holds {80 / (N * 4 / GB):.0%} of it in fp32")


# %% [markdown]
# Training needs much more than the weights. For one step with AdamW, memory holds ($N$ parameters, of which $T$
# train):
#
# | part | fp32 training | bf16 mixed precision | why |
# |---|---|---|---|
# | weights | $4N$ B | $2N$ B | the copy that the forward and backward passes use |
# | gradients | $4T$ B | $2T$ B | one per **trainable** parameter, in the weights' precision |
# | fp32 master weights | none | $4T$ B | the optimizer updates an fp32 copy of every trainable weight: bf16 keeps only 8 significant bits, so most small updates would round away |
# | AdamW moments | $8T$ B | $8T$ B | two running averages per trainable parameter, kept in fp32 |
# | activations | grows with batch × length × width × layers | 2 bytes each instead of 4 | what the forward pass saves for backward |
# | temporaries | a little more | | buffers of the backward pass, the allocator's slack |
#
# Full fine-tuning has $T = N$: **16 bytes per parameter in both columns**, before activations. Mixed precision
# does not shrink this part of the bill ($2 + 2 + 4 + 8 = 16$); it saves activation memory and time. (Leaving out
# the master copy gives the 12 bytes per parameter that some material quotes for bf16 training: that is not what
# standard mixed precision keeps.) PEFT makes $T$ tiny: then a bf16 base costs $2N$ plus $16T$.
#
# ### Exercise 1 · the memory of a training step
# Write `train_memory_gb(n_params, n_trainable, bytes_per_param=4)`: the GB (1 GB = 10⁹ bytes) that weights,
# gradients, the fp32 master copy (only when `bytes_per_param` is below 4) and AdamW's two fp32 moments take, for
# a model of `n_params` parameters of which `n_trainable` train, with weights stored in `bytes_per_param` bytes
# (4: fp32, 2: bf16 mixed precision). Leave activations out. The check tries random sizes, full fine-tuning
# ($T = N$) and PEFT-sized subsets, in both precisions.

# %%
# EXERCISE nb00.q1
def train_memory_gb(n_params, n_trainable, bytes_per_param=4):
    # BEGIN SOLUTION
    weights = n_params * bytes_per_param  # every weight, in its storage precision
    gradients = n_trainable * bytes_per_param  # one per trainable weight, same precision
    master = n_trainable * 4 if bytes_per_param < 4 else 0  # fp32 copy the optimizer updates
    moments = n_trainable * 2 * 4  # AdamW's two fp32 running averages
    return (weights + gradients + master + moments) / 1e9
    # END SOLUTION


# %%
check("nb00.q1")

# %% [markdown]
# The package's `memory.predict` does the fp32 part of this arithmetic (it is what our CPU runs hold); for
# mixed precision we add the master copy next to it. On a 70B model:

# %%
show(memory.predict)


# %%
def bill_gb(n_params, n_trainable, bytes_per_param):
    r = memory.predict(int(n_params), int(n_trainable), bytes_per_param=bytes_per_param)
    master = n_trainable * 4 if bytes_per_param < 4 else 0  # the fp32 master copy of mixed precision
    return {"weights": r.weights / GB, "gradients": r.gradients / GB, "fp32 master": master / GB,
            "AdamW moments": r.optimizer / GB, "total": (r.total + master) / GB}

rows = {
    "full fine-tuning, fp32": bill_gb(N, N, 4),
    "full fine-tuning, bf16 mixed precision": bill_gb(N, N, 2),
    "LoRA, 0.1% trainable, fp32 base": bill_gb(N, N * 0.001, 4),
    "LoRA, 0.1% trainable, bf16 base": bill_gb(N, N * 0.001, 2),
}
table = pd.DataFrame(rows).T
table["80 GB GPUs needed"] = (table["total"] / 80).apply(math.ceil)
print("70B model, GB, activations not included:")
display(table.round(1))
per_param = table["total"].iloc[:2] * GB / N
assert (per_param.round(9) == 16).all()
print(f"full fine-tuning: {per_param.iloc[0]:.0f} bytes/param in fp32, {per_param.iloc[1]:.0f} in bf16 mixed "
      f"precision = {table['total'].iloc[0] / (N * 4 / GB):.0f}x the fp32 weights, before activations")
print(f"bf16 without the master copy would be {(table['total'].iloc[1] - table['fp32 master'].iloc[1]) * GB / N:.0f}"
      " bytes/param: the figure that leaves the master weights out")

# %% [markdown]
# ## 3. Predict, then measure: one training step of the tiny model, full vs LoRA
#
# Now a real step on our `tiny` model, batch of 8 headline examples. `memory.measure_step` runs one AdamW step
# (fp32) and counts the bytes that the weights, the `.grad` tensors, the optimizer state and the tensors autograd
# saved for backward really hold. The two models:

# %%
BATCH = data.collate(data.format_causal(train_set[:8], tok, max_len=pick(128, 64)), tok.pad_token_id)
n_params = sum(p.numel() for p in model.parameters())
full_model = copy.deepcopy(model)  # every parameter trains
lora_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
n_trainable, n_all = lora_model.get_nb_trainable_parameters()
print(f"full fine-tuning: {n_params:,} parameters, all of them trainable")
print(f"LoRA r=8 on q_proj, v_proj: {n_all:,} parameters (base + adapter), {n_trainable:,} trainable")

# %% [markdown]
# ### Exercise 2 · predict before you measure
# Before running the measurement, predict in MB (1 MB = 10⁶ bytes) what **weights + gradients + AdamW state**
# will hold in one fp32 step: `predict_full_mb` for full fine-tuning and `predict_lora_mb` for the LoRA model.
# Use the counts just printed. **Graded: within 2 % of the measurement.** Activations are not part of the
# prediction: the measurement shows them separately, and how large they are is the surprise of this section.

# %%
# EXERCISE nb00.q2
# BEGIN SOLUTION
predict_full_mb = (4 + 4 + 8) * n_params / 1e6
predict_lora_mb = (4 * n_all + (4 + 8) * n_trainable) / 1e6
# END SOLUTION

# %%
check("nb00.q2")

# %%
measured_full = memory.measure_step(full_model, BATCH)
measured_lora = memory.measure_step(lora_model, BATCH)
for name, guess, meas in (("full FT", predict_full_mb, measured_full), ("LoRA", predict_lora_mb, measured_lora)):
    held = (meas.weights + meas.gradients + meas.optimizer) / 1e6
    said = "no prediction yet" if guess is ... else f"{guess:.2f} MB ({(guess - held) / held:+.1%})"
    print(f"{name:8s} you predicted {said}; measured {held:.2f} MB in weights + gradients + optimizer, "
          f"and {meas.activations / 1e6:.1f} MB of activations on top")

reports = {
    "full FT, predicted": memory.predict(n_params, n_params),
    "full FT, measured": measured_full,
    "LoRA, predicted": memory.predict(n_all, n_trainable),
    "LoRA, measured": measured_lora,
}
mem = pd.DataFrame({k: r.as_dict(unit=memory.MB) for k, r in reports.items()}).T[
    ["weights", "gradients", "optimizer", "activations", "total"]]
print("\nMegabytes:")
display(mem.round(2))
for name, (pred, meas) in {"full FT": (reports["full FT, predicted"], measured_full),
                           "LoRA": (reports["LoRA, predicted"], measured_lora)}.items():
    off = sum(abs(getattr(pred, part) - getattr(meas, part)) for part in ("weights", "gradients", "optimizer"))
    print(f"{name}: weights + gradients + optimizer predicted to within {off} bytes; "
          f"activations are {meas.activations / meas.total:.0%} of the measured total")
small = (measured_lora.gradients + measured_lora.optimizer) / (measured_full.gradients + measured_full.optimizer)
kept = measured_lora.activations / measured_full.activations
print(f"LoRA's gradients + optimizer state: {small:.2%} of full fine-tuning's; its activations: {kept:.0%} of them")
assert small < 0.02 and kept > 0.5  # the reading below

# %%
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

# %% [markdown]
# What the numbers say:
#
# * **Weights, gradients and optimizer state match the prediction** to within a few bytes (the measured weights also
#   count small non-parameter buffers such as RoPE's frequency table): the formula is the whole story for them.
# * With LoRA, gradients and optimizer state almost vanish (they scale with the *trainable* count).
# * **Activations do not vanish.** Backpropagation still has to flow through the frozen layers to reach the
#   adapters, so most of what the forward pass saves stays (a little less: a frozen layer need not keep its input
#   to compute a weight gradient). For this tiny model and a batch of 8 articles they are a large share of the
#   total; for a 70B model the weights and optimizer dominate, and activations are tamed with smaller
#   batches and gradient checkpointing (recompute instead of store).
# * The formula predicts the weights + gradients + optimizer part; the real bill adds activations and temporaries,
#   which is why "many times the model size" is the honest summary for full fine-tuning.
#
# ## 4. Storage: one model per task, or one adapter per task?
#
# Full fine-tuning produces a complete new model for every task. PEFT produces a small file that sits next to one
# shared base model. Measure both on disk:

# %%
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

# %% [markdown]
# Scaled to a 70B model in bf16 (140 GB per copy), 10 tasks cost 1.4 TB with full fine-tuning. A rank-8 LoRA on
# the query and value projections of a LLaMA-2-70B-shaped model (80 blocks, width 8192, 1024-wide values because of
# grouped-query attention) is a few tens of megabytes:

# %%
layers, width, kv_width, rank = 80, 8192, 1024, 8
lora_70b = layers * (rank * (width + width) + rank * (width + kv_width))  # q_proj and v_proj per block
print(f"LoRA parameters: {lora_70b:,} = {lora_70b / N:.4%} of 70B; file in bf16: {lora_70b * 2 / 1e6:.0f} MB")
print(f"10 tasks: full FT {10 * N * 2 / 1e12:.1f} TB  vs  PEFT {(N * 2 + 10 * lora_70b * 2) / 1e9:.1f} GB")


# %% [markdown]
# ### Exercise 3 · storage for many tasks
# Write `storage_bytes(n_params, adapter_params, n_tasks, bytes_per_param=4)` returning a pair
# `(full_copies_bytes, base_plus_adapters_bytes)`: the bytes for one full model per task, and for one shared
# base plus one adapter per task.

# %%
# EXERCISE nb00.q3
def storage_bytes(n_params, adapter_params, n_tasks, bytes_per_param=4):
    # BEGIN SOLUTION
    full_copies = n_tasks * n_params * bytes_per_param
    shared = n_params * bytes_per_param + n_tasks * adapter_params * bytes_per_param
    return full_copies, shared
    # END SOLUTION


# %%
check("nb00.q3")

# %% [markdown]
# ## 5. The three families of PEFT
#
# | family | idea | examples (notebook) |
# |---|---|---|
# | **selective** | train a chosen subset of the existing weights: some layers, some components, or one parameter type | layer freezing, norm-only, BitFit (02) |
# | **additive** | freeze everything and *add* a few new trainable parts | adapters, (IA)³ (03); soft prompts: prompt tuning, prefix tuning, P-tuning, LLaMA-Adapter (04) |
# | **reparameterization** | express the weight *change* in a compact form | LoRA (05), QLoRA, DoRA (06) |
# | hybrid | a reparameterization that also prunes | AdaLoRA (06) |
#
# **AdaLoRA is not selective**, although it is sometimes listed so. It adds new matrices $P\,\mathrm{diag}(E)\,Q$
# next to frozen weights (a reparameterization of the update, like LoRA), and what it *selects* are its own new
# singular values, pruned during training so that the rank budget goes where it matters. No pretrained weight
# ever trains, which the cell below checks.
#
# All of them live in `peftlab`, behind the same `get_peft_model(model, config)`. The package counts what each
# trains on the tiny model (`showdown.method_table`, the same settings as the comparison of notebook 07):

# %%
table = pd.DataFrame(showdown.method_table("tiny")).set_index("method")
table["% of the base"] = 100 * table["trainable"] / n_params
display(table[["family", "trainable", "% of the base", "what trains", "note"]].round(3))

peft_rows = table.drop(index=["full", "layer_freeze"]).dropna(subset=["trainable"])
lo, hi = peft_rows["% of the base"].min(), peft_rows["% of the base"].max()
print(f"the {len(peft_rows)} PEFT methods train {lo:.2f}% ({peft_rows['% of the base'].idxmin()}) to "
      f"{hi:.2f}% ({peft_rows['% of the base'].idxmax()}) of the base; "
      f"unfreezing the top block trains {table.loc['layer_freeze', '% of the base']:.1f}%")
assert hi < 5 and table.loc["layer_freeze", "% of the base"] < 15  # nowhere near "15-20 %"

adalora = get_peft_model(copy.deepcopy(model), make_config("adalora", init_r=12, target_r=8, total_step=100,
                                                         target_modules=["q_proj", "v_proj"]))
trained = [n for n, p in adalora.named_parameters() if p.requires_grad]
assert trained and all(".lora_" in n for n in trained)  # only its own new P, E, Q tensors
print(f"AdaLoRA trains {len(trained)} tensors, all new ({sorted({n.split('.')[-2] for n in trained})}): "
      "not one pretrained weight")


# %% [markdown]
# **The "15–20 % of the weights" that some course material says PEFT trains is far off.** The cell above measures
# well under 5 % for every PEFT method here (its exact range is printed). Only unfreezing whole blocks of the original model (a selective method) trains a double-digit
# share.
#
# ### Trade-offs
#
# | | selective | additive: adapters | additive: soft prompts | reparameterization (LoRA) |
# |---|---|---|---|---|
# | parameter efficiency | moderate (a layer is still big) | high | highest (a few thousand numbers) | high |
# | memory while training | grads only for the chosen part; activations stay | small grads/optimizer; activations stay | smallest optimizer state; longer sequences | small grads/optimizer; activations stay |
# | training speed | fast per step | fast; slightly more compute | fast per step, often needs more steps | fast |
# | model quality | mixed results on transformers | close to full fine-tuning | good on large models, weaker on small ones | close to full fine-tuning |
# | inference cost | none | extra layers: a little latency | virtual tokens use context and compute | **none once merged** |
#
# No method wins every column: that is why the workbook compares them on the same task (notebook 07).
#
# ### PEFT vs standard (full) fine-tuning
#
# | | standard fine-tuning | PEFT |
# |---|---|---|
# | data needs | larger labelled sets, or it overfits | works with small labelled sets (few parameters to fit) |
# | training time | long: every weight updated | shorter steps; fewer parameters to move |
# | compute / memory | weights + gradients + optimizer for all (16 B/param + activations) | mostly just the weights + activations |
# | overfitting / forgetting | higher risk: every weight can drift, old skills get overwritten (catastrophic forgetting) | the base stays frozen and the adapter can be switched off; how much a method forgets still has to be measured (notebooks 02 and 07) |
# | performance | the ceiling, when data and compute are plentiful | usually slightly below full fine-tuning, far above the base model |
# | storage | one full copy per task | one base + a small adapter per task |
# | use cases | a single high-stakes task with lots of data and hardware; changing the model's core knowledge | many tasks or customers on one base, limited GPUs, quick iteration, on-device |
#
# ## 6. Who uses PEFT, and not only for language
#
# * **Open-source tooling.** Hugging Face's `peft` library (whose API `peftlab` copies) adds LoRA, (IA)³, prompt
#   tuning and the rest to `transformers` and `diffusers` models; fine-tuning frameworks built around it (TRL,
#   Axolotl, LLaMA-Factory, Unsloth) make LoRA and QLoRA the usual way to tune a model of billions of parameters
#   on one GPU.
# * **Cloud tuning services.** Managed tuning lets a customer upload labelled pairs and get a tuned model served
#   next to a shared base. Google's Vertex AI documentation names its parameter-efficient option *adapter tuning*.
#   Serving systems such as vLLM (and research systems like S-LoRA and Punica) keep one base model in GPU memory
#   and apply a different LoRA adapter to each request.
# * **On device.** Apple describes the on-device model of Apple Intelligence as one base specialised per feature by
#   LoRA adapters that are swapped in as needed, and lets app developers train their own.
# * **Beyond language models.** Image generation made LoRA famous outside NLP: Stable Diffusion LoRAs (a style, a
#   character, a product) are shared as files of megabytes instead of multi-gigabyte checkpoints, trained with the
#   `diffusers` scripts. They adapt the **attention projections** of the denoising U-Net (`to_q`, `to_k`, `to_v`,
#   `to_out`), including the cross-attention in which image positions attend to the text prompt. The same ideas
#   work for vision transformers (adapters; visual prompt tuning), speech recognisers and protein language models.
#
# Nothing in LoRA is specific to text: it wraps linear layers, wherever they are. A cross-attention block shaped
# like the ones in a diffusion U-Net (image features attend to text features; the names are diffusers'), with
# `peftlab`'s LoRA on its four projections:

# %%
class CrossAttention(nn.Module):
    # image positions (B, HW, d) attend to text tokens (B, T, d_text), as in a diffusion U-Net
    def __init__(self, d=320, d_text=768):
        super().__init__()
        self.to_q = nn.Linear(d, d, bias=False)
        self.to_k = nn.Linear(d_text, d, bias=False)
        self.to_v = nn.Linear(d_text, d, bias=False)
        self.to_out = nn.Linear(d, d)

    def forward(self, image, text):
        q, k, v = self.to_q(image), self.to_k(text), self.to_v(text)
        return image + self.to_out(torch.softmax(q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5, -1) @ v)

torch.manual_seed(0)
xattn = CrossAttention()
image, text = torch.randn(1, 64, 320), torch.randn(1, 77, 768)  # an 8x8 latent, a 77-token prompt
before = xattn(image, text)
unet_lora = get_peft_model(xattn, LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out"]))
unet_lora.print_trainable_parameters()
print("same output at initialisation (B = 0):", torch.allclose(unet_lora(image, text), before))

# %% [markdown]
# ## 7. Data concerns
#
# * **Memorisation.** Fine-tuned models can reproduce training examples word for word, and examples that appear
#   several times are memorised far more readily. If the training data is private (medical notes, customer
#   e-mails), the model can leak it. De-duplicating helps; our BBC loader does it:

# %%
raw_files = len(list(data.bbc_dir().glob("*/*.txt")))
distinct = len(data.bbc_records())
print(f"BBC corpus: {raw_files} article files, {distinct} distinct articles -> {raw_files - distinct} duplicates dropped "
      f"({(raw_files - distinct) / raw_files:.1%}) before splitting, so no article is in both train and test")

# %% [markdown]
# * **In-context learning as the alternative.** When data must not end up inside weights, put a few examples in
#   the prompt instead: nothing is trained, nothing is memorised, and the examples can be deleted afterwards. The
#   price: a longer prompt on every call, the context-window limit, and usually lower quality than fine-tuning.
# * **Label quality decides success.** Fine-tuning copies what the labels show, mistakes included. A few hundred
#   clean, consistent examples often beat thousands of noisy ones; check a sample of your labels by hand first.
#
# ## 8. Transformer refresher: where each method plugs in
#
# A decoder block (LLaMA, our `tiny` model) turns a sequence of token vectors $x \in \mathbb{R}^{T \times d}$
# into a new one, twice adding a sublayer's output to its input (*residual* connections), each sublayer reading a
# *normalised* input (RMSNorm):
#
# $$ x \leftarrow x + \mathrm{Attention}(\mathrm{Norm}(x)), \qquad x \leftarrow x + \mathrm{FFN}(\mathrm{Norm}(x)). $$
#
# * **Self-attention.** Three linear maps give queries $Q = xW_Q$, keys $K = xW_K$, values $V = xW_V$. Each position
#   scores every (earlier) position with a scaled dot product and mixes their values:
#   $\mathrm{softmax}\!\big(QK^\top / \sqrt{d_k}\big)\,V$. The $\sqrt{d_k}$ keeps the scores from growing with the
#   width, so the softmax does not saturate.
# * **Multi-head.** The width is split into $h$ heads that attend independently (each can look for something
#   different); their outputs are concatenated and mixed by $W_O$ (`o_proj`).
# * **FFN.** A per-position MLP (LLaMA: SwiGLU, `gate_proj`, `up_proj`, `down_proj`) that holds much of the model's knowledge.
# * **Positions.** Attention alone ignores order; LLaMA rotates $Q$ and $K$ by position-dependent angles (RoPE).
#
# One block of the tiny model, with its parameter counts:

# %%
block = model.model.layers[0]
print(block)
print()
for name, module in block.named_children():
    for sub, m in [(name, module)] + [(f"{name}.{n}", c) for n, c in module.named_children()]:
        n = sum(p.numel() for p in m.parameters())
        if n:
            print(f"{sub:28s} {n:>9,d} parameters")

# %% [markdown]
# **"Most of a transformer's parameters are in attention"**, another claim of the usual material, is wrong for
# these models. Count a block of `tiny` and of SmolLM2-135M (the real model of notebooks 07 and 08; its published
# configuration, built on the `meta` device, so no memory and no download):

# %%
smollm2 = LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True)
with torch.device("meta"):
    real = LlamaForCausalLM(smollm2)
assert sum(p.numel() for p in real.parameters()) == 134_515_008  # SmolLM2-135M's parameter count

rows = []
for label, m in (("tiny", model), ("SmolLM2-135M", real)):
    b = m.model.layers[0]
    attn, mlp = (sum(p.numel() for p in part.parameters()) for part in (b.self_attn, b.mlp))
    total = sum(p.numel() for p in b.parameters())
    embed = m.model.embed_tokens.weight.numel()
    rows.append({"model": label, "attention": attn, "MLP": mlp, "norms": total - attn - mlp,
                 "MLP share of a block": mlp / total, "MLP width / model width": m.config.intermediate_size / m.config.hidden_size,
                 "embeddings share of the model": embed / sum(p.numel() for p in m.parameters())})
shares = pd.DataFrame(rows).set_index("model")
display(shares.round(3))
assert (shares["MLP share of a block"] > 0.7).all()

# %% [markdown]
# The MLP holds about three quarters of every block (the exact shares are in the table): it has three matrices
# whose inner width is between two and three times the model width, while grouped-query attention makes $K$ and $V$
# narrower than $Q$. This is one reason why LoRA on attention only (notebook 05) trains so little, and why
# (IA)³ and the adapters also reach into the FFN.
#
# | where | what the method does there | method (notebook) |
# |---|---|---|
# | `embed_tokens` input | prepend learned virtual token vectors | prompt tuning, P-tuning (04) |
# | keys/values of every attention layer | prepend learned key/value prefixes | prefix tuning, LLaMA-Adapter (04) |
# | `q_proj`, `k_proj`, `v_proj`, `o_proj` | add a low-rank $BA$ to the weight | LoRA (05), DoRA, AdaLoRA, QLoRA (06) |
# | `k_proj`, `v_proj` outputs, FFN activation | rescale by learned vectors | (IA)³ (03) |
# | after attention / after the FFN | insert a small bottleneck MLP inside the residual stream | Houlsby, Pfeiffer adapters (03) |
# | norms, biases, whole top blocks | unfreeze a chosen subset | selective methods (02) |
#
# See it on the real thing: the same block after `get_peft_model` with LoRA on `q_proj` and `v_proj`:

# %%
print(lora_model.base_model.model.layers[0].self_attn)
for name, p in lora_model.base_model.model.layers[0].self_attn.named_parameters():
    print(f"{name:36s} {str(tuple(p.shape)):12s} trainable={p.requires_grad}")


# %% [markdown]
# ### Exercise 4 · scaled dot-product attention
# Write `attention(Q, K, V)` for tensors of shape `(..., T, d_k)` (no mask): scores $QK^\top/\sqrt{d_k}$,
# softmax over the keys, then the weighted sum of the values. The check compares it with PyTorch's
# `torch.nn.functional.scaled_dot_product_attention` on random inputs of several shapes.

# %%
# EXERCISE nb00.q4
def attention(Q, K, V):
    # BEGIN SOLUTION
    scores = Q @ K.transpose(-2, -1) / math.sqrt(Q.shape[-1])  # (..., T, T)
    weights = torch.softmax(scores, dim=-1)                    # each row sums to 1
    return weights @ V                                          # (..., T, d_k)
    # END SOLUTION


# %%
check("nb00.q4")

# %%
# HIDDEN TESTS nb00.q4
_Q = torch.zeros(4, 3)
_V = torch.arange(12.0).reshape(4, 3)
assert torch.allclose(attention(_Q, torch.randn(4, 3), _V), _V.mean(0).expand(4, 3), atol=1e-6), "equal scores must average the values"
_K = torch.eye(4, 3) * 100
assert torch.allclose(attention(torch.eye(4, 3) * 100, _K, _V)[:3], _V[:3], atol=1e-3), "a dominant score must pick that value"

# %% [markdown]
# ## Recap
#
# * Supervised fine-tuning continues training a pretrained model on labelled input → output pairs, with the loss on the answer.
# * Full fine-tuning pays for weights + gradients + AdamW moments: 16 bytes per parameter, in fp32 (4 + 4 + 8) and in
#   bf16 mixed precision alike (2 + 2 + 4 for the fp32 master copy + 8), plus activations. A 70B model needs
#   280 GB just to load in fp32 and over a terabyte to train.
# * PEFT trains a small subset or a small add-on: gradients and optimizer state shrink with it; activations do not
#   (you predicted the first part and measured the second). The result is a small file per task next to one
#   shared base model.
# * Three families: selective, additive (adapters, soft prompts), reparameterization (LoRA and kin; AdaLoRA is a
#   reparameterization that prunes, not a selective method), with different trade-offs in parameters, memory,
#   speed, quality and inference cost. They train well under 5 % of the weights, not "15–20 %".
# * PEFT is everywhere large models are tuned: libraries, cloud tuning services, adapter-per-request serving,
#   on-device models, and image generation (LoRA on a diffusion model's attention projections).
# * In LLaMA-style blocks the MLP, not attention, holds most of the parameters.
# * Mind the data: models memorise (especially duplicates), in-context learning avoids putting private data in
#   weights, and label quality sets the ceiling.
#
# Next: notebook 01 (rank), the idea behind LoRA.
