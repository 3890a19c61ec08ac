# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Rank: how many directions does a matrix really use?
#
# **Goal.** Understand *rank* geometrically (vectors spanning a line, a plane, a space), compute it with the
# singular value decomposition (SVD), and see on a real weight matrix of our `tiny` model what a low-rank
# approximation keeps and what it loses. Then measure the rank of a *real* fine-tuning update, and how many of its
# directions the task needs: the bet LoRA (notebook 05) is built on.
#
# Concepts: rank and span (13), low-rank matrices and the SVD (14).

# %%
from peftlab.classroom.notebook import FAST, pick, show, start
OUT = start("nb01")  # quiet logs, torch seed 0, build/nb01/ for every file it writes, says the mode

import copy

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import display

from peftlab import data, models
from peftlab.classroom.grading import check
from peftlab.classroom.notebook import slider_figure
from peftlab.train import train

# %% [markdown]
# ## 1. Span: what a few vectors can reach
#
# Take some vectors and form every weighted sum of them ($a\,u + b\,v$ for all numbers $a, b$): that set is their
# **span**. In the plane, two vectors pointing in different directions reach every point (they span the whole
# 2-D plane); two vectors on the same line reach only that line.
#
# The **rank** of a set of vectors (or of the matrix that has them as columns) is the *minimum number of vectors
# needed to span the same space*: the number of truly independent directions.

# %%
pairs = {
    "independent: span the plane": torch.tensor([[2.0, 0.5], [0.5, 1.5]]),   # columns u, v
    "parallel: span only a line": torch.tensor([[2.0, 1.0], [1.0, 0.5]]),    # v = u / 2
}
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
coeffs = torch.linspace(-1.5, 1.5, 13)
for ax, (title, M) in zip(axes, pairs.items()):
    u, v = M[:, 0], M[:, 1]
    pts = torch.stack([a * u + b * v for a in coeffs for b in coeffs])  # many combinations a u + b v
    ax.scatter(pts[:, 0], pts[:, 1], s=6, color="tab:gray", alpha=0.5, label="a u + b v")
    for vec, name, color in ((u, "u", "tab:blue"), (v, "v", "tab:orange")):
        ax.annotate("", xy=vec.tolist(), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=color, lw=2.5))
        ax.text(*(vec * 1.1).tolist(), name, color=color, fontsize=13)
    rank = int(torch.linalg.matrix_rank(M))
    ax.set_title(f"{title}\nrank = {rank}")
    ax.set_xlim(-5, 5); ax.set_ylim(-5, 5); ax.set_aspect("equal"); ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
fig.tight_layout()
fig.savefig(OUT / "span_2d.png", dpi=100)
plt.show()

# %% [markdown]
# ### Two vectors in 3-D still span only a plane
#
# Move to three dimensions. Two independent vectors now reach a *plane* through the origin, not the whole space:
# however you combine them, you never leave that plane. A third vector that sticks out of the plane raises the rank
# to 3; a third vector *inside* the plane (a combination of the first two) adds nothing.

# %%
u, v = torch.tensor([1.0, 0.2, 0.3]), torch.tensor([0.1, 1.0, 0.4])
w_out = torch.tensor([0.2, -0.3, 1.0])     # sticks out of the plane
w_in = 0.5 * u - 0.8 * v                    # a combination of u and v: stays in the plane

fig = plt.figure(figsize=(6.5, 5.5))
ax = fig.add_subplot(projection="3d")
a, b = np.meshgrid(np.linspace(-1.3, 1.3, 12), np.linspace(-1.3, 1.3, 12))
plane = a[..., None] * u.numpy() + b[..., None] * v.numpy()   # (12, 12, 3): the span of u and v
ax.plot_surface(plane[..., 0], plane[..., 1], plane[..., 2], alpha=0.25, color="tab:gray")
for vec, name, color in ((u, "u", "tab:blue"), (v, "v", "tab:orange"), (w_in, "w_in", "tab:green"), (w_out, "w_out", "tab:red")):
    ax.quiver(0, 0, 0, *vec.tolist(), color=color, lw=2.5, arrow_length_ratio=0.12)
    ax.text(*(vec * 1.15).tolist(), name, color=color, fontsize=12)
ax.set_xlabel("x"); ax.set_ylabel("y"); ax.set_zlabel("z")
ax.set_title("span{u, v} is a plane (gray) inside 3-D space")
ax.view_init(elev=18, azim=-60)
fig.tight_layout()
fig.savefig(OUT / "span_3d.png", dpi=100)
plt.show()

for name, cols in {"[u, v]": [u, v], "[u, v, w_in]": [u, v, w_in], "[u, v, w_out]": [u, v, w_out]}.items():
    M = torch.stack(cols, dim=1)  # vectors as columns: (3, n)
    print(f"{name:14s} shape {tuple(M.shape)} -> rank {int(torch.linalg.matrix_rank(M))}")

# %% [markdown]
# ## 2. Rank through the SVD
#
# Every matrix $M$ ($m \times n$) factors as $M = U\,\Sigma\,V^\top$: $U$ and $V$ have orthonormal columns
# (directions), $\Sigma$ is diagonal with the **singular values** $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$ (how much the
# matrix stretches along each direction). The rank is the number of singular values that are not zero.
# In floating point "zero" means "tiny compared with $\sigma_1$".
#
# A 6 × 5 matrix built as a product through only 2 dimensions ($6 \times 2$ times $2 \times 5$) has 30 entries but rank 2:

# %%
M = torch.randn(6, 2) @ torch.randn(2, 5)  # (6, 5), built through 2 dimensions
U, S, Vh = torch.linalg.svd(M, full_matrices=False)
print("singular values:", [f"{s:.2e}" for s in S.tolist()])
print("rank (torch.linalg.matrix_rank):", int(torch.linalg.matrix_rank(M)))
print("U S V^T rebuilds M:", torch.allclose(U @ torch.diag(S) @ Vh, M, atol=1e-5))


# %% [markdown]
# ### Exercise 1 · rank from singular values
# Write `rank_of(M, tol=1e-6)`: the number of singular values of `M` larger than `tol` times the largest one
# (return 0 for an all-zero matrix). The check compares it with `torch.linalg.matrix_rank` on random low-rank matrices.

# %%
# EXERCISE nb01.q1
def rank_of(M, tol=1e-6):
    # BEGIN SOLUTION
    S = torch.linalg.svdvals(M)
    if S.numel() == 0 or S[0] == 0:
        return 0
    return int((S > tol * S[0]).sum())
    # END SOLUTION


# %%
check("nb01.q1")

# %% [markdown]
# ## 3. A real weight matrix: the tiny model's query projection
#
# Now a matrix that was learned, not built: `q_proj` of the first attention block of our `tiny` model
# (shape 256 × 256). Is it low rank? Its singular values say:

# %%
model, tok = models.load("tiny")
W = model.model.layers[0].self_attn.q_proj.weight.detach().double()  # (d, k) = (256, 256)
S = torch.linalg.svdvals(W)
energy = (S.square().cumsum(0) / S.square().sum())  # share of ||W||_F^2 kept by the top-r directions
d, k = W.shape
print(f"W: {d} x {k}, numerical rank {int(torch.linalg.matrix_rank(W))}")
for share in (0.5, 0.8, 0.9, 0.99):
    r = int((energy < share).sum()) + 1
    print(f"top {r:3d} singular directions hold {share:.0%} of the squared norm")

fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
axes[0].plot(range(1, len(S) + 1), S.numpy())
axes[0].set(xlabel="index i", ylabel="singular value σ_i", title="singular value spectrum of q_proj (layer 0)")
axes[0].set_yscale("log")
axes[1].plot(range(1, len(S) + 1), energy.numpy())
axes[1].set(xlabel="rank r", ylabel="share of ||W||² kept", title="cumulative energy", ylim=(0, 1.02))
axes[1].grid(alpha=0.3)
fig.tight_layout()
fig.savefig(OUT / "spectrum.png", dpi=100)
plt.show()


# %% [markdown]
# The weight uses all 256 directions (full rank), but not equally: the first few dozen carry much more than the
# last ones. Keeping only the top $r$ of them gives the **best rank-$r$ approximation** (the Eckart–Young theorem):
#
# $$ W_r = \sum_{i=1}^{r} \sigma_i\, u_i v_i^\top = U_{:, :r}\, \Sigma_{:r}\, V_{:, :r}^\top,
#    \qquad \frac{\lVert W - W_r \rVert_F}{\lVert W \rVert_F} = \sqrt{\frac{\sum_{i>r} \sigma_i^2}{\sum_i \sigma_i^2}}. $$
#
# Stored as two factors ($d \times r$ and $r \times k$), $W_r$ takes $r(d + k)$ numbers instead of $dk$.
#
# ### Exercise 2 · the best rank-r approximation
# Write `low_rank_approx(W, r)` returning $W_r$ (same shape as `W`), using `torch.linalg.svd`.

# %%
# EXERCISE nb01.q2
def low_rank_approx(W, r):
    # BEGIN SOLUTION
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
    # END SOLUTION


# %%
check("nb01.q2")

# %%
# HIDDEN TESTS nb01.q2
_M = torch.randn(7, 3, dtype=torch.float64) @ torch.randn(3, 9, dtype=torch.float64)
assert torch.allclose(low_rank_approx(_M, 3), _M, atol=1e-8), "a rank-3 matrix is its own rank-3 approximation"
assert torch.allclose(low_rank_approx(_M, 7), _M, atol=1e-8), "full rank must rebuild W"

# %% [markdown]
# How much of the pretrained $W$ does rank $r$ keep? The error formula above, for every $r$, and a corner of $W$,
# $W_{16}$ and their difference:

# %%
ranks = list(range(1, min(d, k) + 1))
errors = [float(S[r:].square().sum().sqrt() / S.square().sum().sqrt()) for r in ranks]  # errors[r - 1]
U_W, S_W, Vh_W = torch.linalg.svd(W, full_matrices=False)
W_16 = U_W[:, :16] @ torch.diag(S_W[:16]) @ Vh_W[:16]  # the best rank-16 approximation

fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
axes[0].plot(ranks, errors, color="tab:blue")
axes[0].set(xlabel="rank r", ylabel="||W - W_r|| / ||W||", ylim=(0, 1.02), title="pretrained q_proj: error of W_r")
axes[0].grid(alpha=0.3)
vmax = float(W[:32, :32].abs().max())
for ax, mat, name in zip(axes[1:], (W, W_16, W - W_16), ("W", "W_16", "W - W_16")):
    ax.imshow(mat[:32, :32].numpy(), cmap="RdBu", vmin=-vmax, vmax=vmax)
    ax.set_title(f"{name} (top-left 32x32)")
    ax.axis("off")
fig.tight_layout()
fig.savefig(OUT / "pretrained_low_rank.png", dpi=100)
plt.show()
print(pd.DataFrame({"rank": [1, 4, 16, 64, 128], "relative error": [errors[r - 1] for r in (1, 4, 16, 64, 128)],
                    "numbers stored": [r * (d + k) for r in (1, 4, 16, 64, 128)]}).round(3).to_string(index=False))


# %% [markdown]
# ### Exercise 3 · a rank for a parameter budget
# Two factors of rank $r$ for a $d \times k$ matrix store $r(d + k)$ numbers. Write
# `rank_for_budget(d, k, fraction)`: the largest rank whose factors fit in `fraction` of the matrix's $d \cdot k$
# numbers (0 if not even rank 1 fits). The check tries random shapes and budgets. Then set `chosen_error`: the
# relative error of the best approximation of the notebook's $W$ at the rank that a **25 %** budget allows (read it
# from `errors`, to two decimals).

# %%
# EXERCISE nb01.q3
def rank_for_budget(d, k, fraction):
    # BEGIN SOLUTION
    return int(fraction * d * k // (d + k))
    # END SOLUTION


# BEGIN SOLUTION
chosen_error = errors[rank_for_budget(d, k, 0.25) - 1]
# END SOLUTION

# %%
check("nb01.q3")

# %%
r_budget = int(0.25 * d * k // (d + k))
print(f"25% of a {d}x{k} matrix: rank {r_budget} ({r_budget * (d + k):,} of {d * k:,} numbers) keeps the pretrained "
      f"W to a relative error of {errors[r_budget - 1]:.3f}")
assert errors[r_budget - 1] > 0.3  # the reading below: a low-rank W loses a lot of the pretrained weight

# %% [markdown]
# A quarter of the numbers leaves a large error: a pretrained weight is **not** low rank, and LoRA does not try
# to approximate it. LoRA approximates the **change** that fine-tuning makes, $\Delta W$, and keeps $W_0$ whole.
# Whether that change is low rank is a separate question, answered below by measurement.
#
# ## 4. Intrinsic dimension is not the rank of ΔW
#
# Two ideas are often run together.
#
# * **Intrinsic dimension** (Aghajanyan et al. 2020). Train only $D$ numbers $z$ and map them into the *whole*
#   parameter vector through a fixed random matrix: $\theta = \theta_0 + P z$. The intrinsic dimension of a task is
#   the smallest $D$ that reaches 90 % of full fine-tuning's score; for large pretrained models it is small. This
#   counts free parameters of the whole model in a random subspace. It says nothing about the rank of any weight
#   matrix: even a single trained number, spread by $P$, changes a matrix at **full** rank (the cell below).
# * **Intrinsic rank** (Hu et al. 2021, LoRA). Inspired by the first result, LoRA *hypothesises* that the update
#   of each weight matrix, $\Delta W = W_1 - W_0$, has a low rank, and trains it as $BA$ of rank $r$. That is a
#   statement about a matrix, and we can test it: fine-tune `tiny` fully and look at $\Delta W$.

# %%
g = torch.Generator().manual_seed(0)
P_column = torch.randn(d * k, generator=g, dtype=torch.float64)  # the part of P that lands in q_proj
z = 0.01                                                       # one trained number (D = 1)
delta_one_number = (z * P_column).reshape(d, k)
print(f"a D = 1 random-subspace update of q_proj: rank {int(torch.linalg.matrix_rank(delta_one_number))} of {min(d, k)}")

# %% [markdown]
# ## 5. The rank of a real fine-tuning update
#
# Full fine-tuning of `tiny` on `bbc-headlines`: every weight matrix of every block trains (the embeddings and the
# norms stay frozen, so the 42 matrices' $\Delta W$ are the *whole* change), at the learning rate the showdown of
# notebook 07 chose for full fine-tuning.

# %%
LR = float(pd.read_csv(models.ROOT / "docs" / "results" / "showdown_tiny.csv").query("method == 'full'")["lr"].iloc[0])
STEPS = pick(30, 3)  # optimizer steps of 8 examples
tuned = copy.deepcopy(model)
for name, p in tuned.named_parameters():
    p.requires_grad = name.endswith("proj.weight")  # q, k, v, o, gate, up, down of every block
history = train(tuned, tok, data.load("bbc-headlines", "train"), steps=STEPS, lr=LR, batch_size=8, max_len=128)

W0 = {n: p.detach().double() for n, p in model.named_parameters()}
deltas = {n: p.detach().double() - W0[n] for n, p in tuned.named_parameters() if p.requires_grad}
print(f"{len(deltas)} matrices trained for {STEPS} steps at lr {LR:g}; training loss "
      f"{history.losses[0]:.3f} -> {history.losses[-1]:.3f}")
q = "model.layers.0.self_attn.q_proj.weight"
print(f"q_proj of block 0: ||ΔW|| / ||W0|| = {deltas[q].norm() / W0[q].norm():.3f}, "
      f"numerical rank of ΔW {int(torch.linalg.matrix_rank(deltas[q]))} of {min(deltas[q].shape)}")


# %% [markdown]
# Numerically, $\Delta W$ has full rank: every direction moved a little. The useful question is LoRA's: how
# many directions hold **most** of the change? The **energy rank** at share $s$ is the smallest $r$ whose top $r$
# singular directions hold a share $s$ of $\lVert \Delta W \rVert_F^2$:
#
# $$ r_s(\Delta W) = \min\Big\{ r : \textstyle\sum_{i \le r} \sigma_i^2 \ \ge\ s \sum_i \sigma_i^2 \Big\},
#    \qquad \sigma_i = \text{singular values of } W_1 - W_0. $$
#
# ### Exercise 4 · the rank of a fine-tuning update
# Write `update_rank(W0, W1, share=0.9)`: the energy rank of the update from `W0` (pretrained) to `W1`
# (fine-tuned), 0 when nothing changed. It must work for any shape and for float32 or float64 inputs; the check
# builds random pretrained matrices and updates with known spectra.

# %%
# EXERCISE nb01.q4
def update_rank(W0, W1, share=0.9):
    # BEGIN SOLUTION
    delta = (W1 - W0).double()  # what fine-tuning changed
    S2 = torch.linalg.svdvals(delta).square()  # energy per singular direction, largest first
    if S2.sum() == 0:
        return 0
    energy = S2.cumsum(0) / S2.sum()  # share of ||ΔW||² held by the top r directions
    return int((energy < share).sum()) + 1  # the first r that reaches `share`
    # END SOLUTION


# %%
check("nb01.q4")


# %%
def energy_rank(M, share=0.9):  # the package side of exercise 4, so what follows works whatever your answer
    S2 = torch.linalg.svdvals(M).square()
    return int((S2.cumsum(0) / S2.sum() < share).sum()) + 1

rows = []
for n, D in deltas.items():
    rows.append({"matrix": n.split(".")[-2], "block": int(n.split(".")[2]), "shape": tuple(D.shape),
                 "ΔW: rank for 50%": energy_rank(D, 0.5), "ΔW: rank for 90%": energy_rank(D),
                 "W0: rank for 90%": energy_rank(W0[n]), "||ΔW|| / ||W0||": float(D.norm() / W0[n].norm())})
ranks_table = pd.DataFrame(rows)
display(ranks_table.groupby("matrix", sort=False)[["ΔW: rank for 50%", "ΔW: rank for 90%", "W0: rank for 90%",
                                                   "||ΔW|| / ||W0||"]].median().round(3))
med_dw, med_w0 = ranks_table["ΔW: rank for 90%"].median(), ranks_table["W0: rank for 90%"].median()
print(f"median over the {len(ranks_table)} matrices: ΔW needs {med_dw:.0f} directions for 90% of its energy, "
      f"the pretrained W needs {med_w0:.0f}; half of ΔW's energy sits in {ranks_table['ΔW: rank for 50%'].median():.0f}")
assert med_dw < med_w0  # the update is more concentrated than the weight it changes

# %% [markdown]
# The update is much more concentrated than the pretrained weight (the medians are printed above), but it is not
# rank 4: by energy it spreads over tens of directions. Energy is not what matters, though. What matters is how
# well the model does with the update **cut to rank $r$**: replace every $\Delta W$ by its best rank-$r$
# approximation $\Delta W_r$, apply $W_0 + \Delta W_r$, and measure the task loss on held-out articles.
#
# ### Explore: rank slider on the real update
#
# The slider truncates all 42 updates to rank $r$ at once. Left: the energy curves of $\Delta W$ and of the
# pretrained $W_0$ for `q_proj` of block 0 (how many directions hold how much). Middle: the relative error
# $\lVert \Delta W - \Delta W_r \rVert / \lVert \Delta W \rVert$ over all matrices. Right: the validation loss of the
# model with the truncated update applied (computed live for the slider's $r$), between the pretrained model
# ($r = 0$) and the full update.

# %%
val_batch = data.collate(data.format_causal(data.load("bbc-headlines", "val", limit=pick(32, 8)), tok, max_len=128),
                         tok.pad_token_id)
svd = {n: torch.linalg.svd(D, full_matrices=False) for n, D in deltas.items()}  # U, S, Vh per matrix
FULL = max(S_.numel() for _, S_, _ in svd.values())  # rank FULL = the whole update
residual = torch.stack([torch.cat([S_.square().flip(0).cumsum(0).flip(0), torch.zeros(FULL + 1 - S_.numel())])
                        for _, S_, _ in svd.values()]).sum(0)  # residual[r] = sum over matrices of sum_{i>r} σ_i²
rel_error = (residual / residual[0]).sqrt()  # rel_error[r] = ||ΔW - ΔW_r|| / ||ΔW|| (all matrices)

work = copy.deepcopy(model)  # receives W0 + ΔW_r
work_params = dict(work.named_parameters())

@torch.no_grad()
def val_loss_at(r):
    for n, (U_, S_, Vh_) in svd.items():
        work_params[n].copy_(W0[n] + (U_[:, :r] * S_[:r]) @ Vh_[:r])
    work.eval()
    return work(**val_batch).loss.item()

curve = {r: val_loss_at(r) for r in pick([0, 1, 2, 4, 8, 16, 32, 64, 128, FULL], [0, 1, 8, FULL])}
with torch.no_grad():
    assert abs(curve[FULL] - tuned(**val_batch).loss.item()) < 1e-4  # rank FULL is the fine-tuned model
base_loss, full_loss = curve[0], curve[FULL]
recovered = {r: (base_loss - v) / (base_loss - full_loss) for r, v in curve.items()}
print(pd.DataFrame({"val loss": curve, "share of the full update's gain": recovered,
                    "relative error of ΔW_r": {r: float(rel_error[r]) for r in curve}}).rename_axis("rank r").round(3))
assert recovered[1] > 0.5 and recovered[8] > 0.9  # the reading below

# %%
e_dw = (svd[q][1].square().cumsum(0) / svd[q][1].square().sum()).numpy()
e_w0 = (torch.linalg.svdvals(W0[q]).square().cumsum(0) / W0[q].square().sum()).numpy()

def draw(r):
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    ax = axes[0]
    ax.plot(range(1, len(e_dw) + 1), e_dw, label="ΔW (fine-tuning update)", color="tab:red")
    ax.plot(range(1, len(e_w0) + 1), e_w0, label="W0 (pretrained)", color="tab:gray")
    ax.axvline(max(r, 1), color="black", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="rank r", ylabel="share of ||·||² in the top r", ylim=(0, 1.02),
           title="q_proj, block 0: energy by rank")
    ax.legend(loc="lower right")
    ax = axes[1]
    ax.plot(range(FULL + 1), rel_error.numpy(), color="tab:blue")
    ax.scatter([r], [float(rel_error[r])], color="tab:red", zorder=3)
    ax.set(xscale="symlog", xlabel="rank r", ylabel="||ΔW - ΔW_r|| / ||ΔW||", ylim=(0, 1.02), xlim=(0, FULL),
           title=f"r = {r}: relative error {float(rel_error[r]):.2f} (all 42 matrices)")
    ax = axes[2]
    loss_r = curve[r] if r in curve else val_loss_at(r)
    ax.plot(list(curve), list(curve.values()), "o-", color="tab:blue", ms=3)
    ax.scatter([r], [loss_r], color="tab:red", zorder=3, s=40)
    ax.axhline(base_loss, color="tab:gray", ls=":", label=f"pretrained {base_loss:.3f}")
    ax.axhline(full_loss, color="tab:green", ls=":", label=f"full update {full_loss:.3f}")
    ax.set(xscale="symlog", xlabel="rank r of every ΔW_r", ylabel="validation loss", xlim=(0, FULL),
           title=f"W0 + ΔW_{r}: val loss {loss_r:.3f}")
    ax.legend()
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    return fig

slider = widgets.IntSlider(value=8, min=0, max=FULL, description="rank r", continuous_update=False)
slider_figure(draw, {"r": slider})

# %% [markdown]
# **Reading it.** By energy the update is spread out, so its relative error falls slowly with $r$. By the measure
# that matters, the task, it is not: the update cut to a **single** direction per matrix already gives most of
# the gain, and at rank 8 the truncated update recovers nearly all of it (over 90 %, asserted; the table above
# prints the shares).
# The rest of $\Delta W$ is mostly noise that the optimizer added along the way. This is the measured version of
# LoRA's bet: a fine-tuning update can be stored and trained in a handful of directions per matrix.
#
# ## 6. A low-rank update is not a small update
#
# And a low-rank update can still change every weight. Below, a rank-4 $\Delta W = BA$ changes **every one** of the
# 65,536 entries of the 256 × 256 matrix, by an amount as large as the weights themselves, yet is fully described
# by $4 \cdot (256 + 256) = 2{,}048$ numbers:

# %%
r = 4
B, A = torch.randn(d, r, dtype=torch.float64), torch.randn(r, k, dtype=torch.float64)
delta = B @ A
delta *= W.norm() / delta.norm()  # make the update as large as W itself
print(f"entries of W changed      : {(delta != 0).sum().item():,} of {d * k:,}")
print(f"size of the change        : ||ΔW|| / ||W|| = {delta.norm() / W.norm():.2f}")
print(f"rank of the change        : {int(torch.linalg.matrix_rank(delta))}")
print(f"numbers needed to store it: {r * (d + k):,} (B and A) instead of {d * k:,} ({r * (d + k) / (d * k):.1%})")
U_d, S_d, Vh_d = torch.linalg.svd(delta, full_matrices=False)
print(f"rank-{r} SVD of ΔW recovers it exactly: {torch.allclose(U_d[:, :r] @ torch.diag(S_d[:r]) @ Vh_d[:r], delta, atol=1e-8)}")

# %% [markdown]
# ## Recap
#
# * The **rank** is the minimum number of vectors that span the same space: two independent vectors span a plane,
#   in 2-D (the whole plane) and in 3-D (a plane inside the space), never more.
# * The **SVD** $M = U\Sigma V^\top$ lists a matrix's directions by importance; the rank counts the non-zero singular values.
# * Keeping the top $r$ singular directions gives the best rank-$r$ approximation, stored in $r(d+k)$ numbers.
# * Pretrained weights are near full rank: a quarter of the numbers leaves a large error.
# * *Intrinsic dimension* (how few numbers, in a random subspace of the whole model, reach most of full
#   fine-tuning) is not the rank of $\Delta W$; LoRA's hypothesis is about the latter, and we measured it: a real
#   full fine-tuning update is more concentrated than the weights, and cut to rank 8 per matrix it gives the whole
#   update's validation loss.
#
# Next: notebook 02 trains a chosen subset of the weights (selective fine-tuning).
