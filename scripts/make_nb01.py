"""Build notebooks/01_rank.ipynb (run: .venv/bin/python scripts/make_nb01.py)."""

from nbbuild import code, md, write

cells = [
    md(r"""
    # 01 · Rank: how many directions does a matrix really use?

    **Goal.** Understand *rank* geometrically (vectors spanning a line, a plane, a space), compute it with the
    singular value decomposition (SVD), and see on a real weight matrix of our `tiny` model how a low-rank
    approximation keeps most of a matrix with a fraction of the numbers. This is the idea LoRA (notebook 05) is
    built on.

    Concepts: rank and span (13), low-rank matrices and the SVD (14).
    """),
    code(r"""
    from peftlab.notebook import FAST, pick, show, quiet
    quiet()

    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import torch
    from IPython.display import display

    from peftlab import models
    from peftlab.grading import check

    OUT = models.ROOT / "build" / "nb01"  # every file this notebook writes goes here
    OUT.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    print("fast mode (CI smoke run)" if FAST else "class mode")
    """),
    md(r"""
    ## 1. Span: what a few vectors can reach

    Take some vectors and form every weighted sum of them ($a\,u + b\,v$ for all numbers $a, b$): that set is their
    **span**. In the plane, two vectors pointing in different directions reach every point (they span the whole
    2-D plane); two vectors on the same line reach only that line.

    The **rank** of a set of vectors (or of the matrix that has them as columns) is the *minimum number of vectors
    needed to span the same space*: the number of truly independent directions.
    """),
    code(r"""
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
    """),
    md(r"""
    ### Two vectors in 3-D still span only a plane

    Move to three dimensions. Two independent vectors now reach a *plane* through the origin, not the whole space:
    however you combine them, you never leave that plane. A third vector that sticks out of the plane raises the rank
    to 3; a third vector *inside* the plane (a combination of the first two) adds nothing.
    """),
    code(r"""
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
    """),
    md(r"""
    ## 2. Rank through the SVD

    Every matrix $M$ ($m \times n$) factors as $M = U\,\Sigma\,V^\top$: $U$ and $V$ have orthonormal columns
    (directions), $\Sigma$ is diagonal with the **singular values** $\sigma_1 \ge \sigma_2 \ge \dots \ge 0$ (how much the
    matrix stretches along each direction). The rank is the number of singular values that are not zero.
    In floating point "zero" means "tiny compared with $\sigma_1$".

    A 6 × 5 matrix built as a product through only 2 dimensions ($6 \times 2$ times $2 \times 5$) has 30 entries but rank 2:
    """),
    code(r"""
    M = torch.randn(6, 2) @ torch.randn(2, 5)  # (6, 5), built through 2 dimensions
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)
    print("singular values:", [f"{s:.2e}" for s in S.tolist()])
    print("rank (torch.linalg.matrix_rank):", int(torch.linalg.matrix_rank(M)))
    print("U S V^T rebuilds M:", torch.allclose(U @ torch.diag(S) @ Vh, M, atol=1e-5))
    """),
    md(r"""
    ### Exercise 1 · rank from singular values
    Write `rank_of(M, tol=1e-6)`: the number of singular values of `M` larger than `tol` times the largest one
    (return 0 for an all-zero matrix). The check compares it with `torch.linalg.matrix_rank` on random low-rank matrices.
    """),
    code(r"""
    # EXERCISE nb01.q1
    def rank_of(M, tol=1e-6):
        # BEGIN SOLUTION
        S = torch.linalg.svdvals(M)
        if S.numel() == 0 or S[0] == 0:
            return 0
        return int((S > tol * S[0]).sum())
        # END SOLUTION
    """),
    code(r"""
    check("nb01.q1")
    """),
    md(r"""
    ## 3. A real weight matrix: the tiny model's query projection

    Now a matrix that was learned, not built: `q_proj` of the first attention block of our `tiny` model
    (shape 256 × 256). Is it low rank? Its singular values say:
    """),
    code(r"""
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
    """),
    md(r"""
    The weight uses all 256 directions (full rank), but not equally: the first few dozen carry much more than the
    last ones. Keeping only the top $r$ of them gives the **best rank-$r$ approximation** (the Eckart–Young theorem):

    $$ W_r = \sum_{i=1}^{r} \sigma_i\, u_i v_i^\top = U_{:, :r}\, \Sigma_{:r}\, V_{:, :r}^\top,
       \qquad \frac{\lVert W - W_r \rVert_F}{\lVert W \rVert_F} = \sqrt{\frac{\sum_{i>r} \sigma_i^2}{\sum_i \sigma_i^2}}. $$

    Stored as two factors ($d \times r$ and $r \times k$), $W_r$ takes $r(d + k)$ numbers instead of $dk$.

    ### Exercise 2 · the best rank-r approximation
    Write `low_rank_approx(W, r)` returning $W_r$ (same shape as `W`), using `torch.linalg.svd`.
    The slider below uses the package-side reference so it works whatever your answer.
    """),
    code(r"""
    # EXERCISE nb01.q2
    def low_rank_approx(W, r):
        # BEGIN SOLUTION
        U, S, Vh = torch.linalg.svd(W, full_matrices=False)
        return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]
        # END SOLUTION
    """),
    code(r"""
    check("nb01.q2")
    """),
    code(r"""
    # HIDDEN TESTS nb01.q2
    _M = torch.randn(7, 3, dtype=torch.float64) @ torch.randn(3, 9, dtype=torch.float64)
    assert torch.allclose(low_rank_approx(_M, 3), _M, atol=1e-8), "a rank-3 matrix is its own rank-3 approximation"
    assert torch.allclose(low_rank_approx(_M, 7), _M, atol=1e-8), "full rank must rebuild W"
    """),
    md(r"""
    ### Explore: rank slider

    Move the slider (in a live kernel) to choose $r$. Left: the reconstruction error against $r$, with the parameter
    count of the two factors; right: a corner of $W$, of $W_r$ and of the difference. The plot right under the
    slider is a static render of the default ($r = 16$), so the notebook reads well when executed headless.
    """),
    code(r"""
    from peftlab.exercises.nb01 import reference_low_rank, relative_error  # the check's own reference

    ranks = list(range(1, min(d, k) + 1))
    errors = [relative_error(W, r) for r in ranks]

    def draw_rank(r):
        W_r = reference_low_rank(W, r)
        err, params = errors[r - 1], r * (d + k)
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1.6, 1, 1, 1]})
        axes[0].plot(ranks, errors, color="tab:blue")
        axes[0].scatter([r], [err], color="tab:red", zorder=3)
        axes[0].set(xlabel="rank r", ylabel="||W - W_r|| / ||W||", ylim=(0, 1.02),
                    title=f"r={r}: error {err:.3f}\n{params:,} numbers = {params / (d * k):.1%} of W")
        axes[0].grid(alpha=0.3)
        vmax = float(W[:32, :32].abs().max())
        for ax, mat, name in zip(axes[1:], (W, W_r, W - W_r), ("W", f"W_{r}", f"W - W_{r}")):
            ax.imshow(mat[:32, :32].numpy(), cmap="RdBu", vmin=-vmax, vmax=vmax)
            ax.set_title(f"{name} (top-left 32x32)")
            ax.axis("off")
        fig.tight_layout()
        return fig

    slider = widgets.IntSlider(value=16, min=1, max=min(d, k), description="rank r", continuous_update=False)
    display(widgets.VBox([slider, widgets.interactive_output(lambda r: (draw_rank(r), plt.show()), {"r": slider})]))

    fig = draw_rank(16)  # static render for headless runs
    fig.savefig(OUT / "rank_slider_r16.png", dpi=100)
    plt.show()
    print(pd.DataFrame({"rank": [1, 4, 16, 64, 128], "relative error": [errors[r - 1] for r in (1, 4, 16, 64, 128)],
                        "numbers stored": [r * (d + k) for r in (1, 4, 16, 64, 128)]}).round(3).to_string(index=False))
    """),
    md(r"""
    ### Exercise 3 · a rank for a parameter budget
    You may store at most **25 %** of $W$'s $d \cdot k$ numbers as the two factors. Which is the largest rank that fits,
    and what relative error does its best approximation have? Use the slider (or arithmetic and `errors`), set
    `chosen_rank`, `chosen_error` (to two decimals is fine) and a sentence of `explanation`.
    """),
    code(r"""
    BUDGET_FRACTION = 0.25  # share of W's numbers the factors may take
    """),
    code(r"""
    # EXERCISE nb01.q3
    # BEGIN SOLUTION
    chosen_rank = int(BUDGET_FRACTION * d * k // (d + k))
    chosen_error = errors[chosen_rank - 1]
    explanation = "r(d+k) <= d*k/4 gives r <= 32 for a 256x256 matrix; the top 32 directions keep most but not all of W."
    # END SOLUTION
    """),
    code(r"""
    check("nb01.q3")
    """),
    md(r"""
    ## 4. Why low rank is enough for *updates*

    A pretrained weight like `q_proj` is close to full rank, and cutting it to rank 32 loses a noticeable part of it.
    LoRA does **not** approximate the weight. It approximates the **change** made by fine-tuning, $\Delta W$, and keeps
    $W_0$ whole. Research on fine-tuning (Aghajanyan et al. 2020, "intrinsic dimensionality"; Hu et al. 2021, LoRA)
    found that these task-specific changes have a low *intrinsic rank*: a few directions explain most of them.

    And a low-rank update is not a small update. Below, a rank-4 $\Delta W = BA$ changes **every one** of the 65,536
    entries of the 256 × 256 matrix, by an amount as large as the weights themselves, yet is fully described by
    $4 \cdot (256 + 256) = 2{,}048$ numbers:
    """),
    code(r"""
    r = 4
    B, A = torch.randn(d, r, dtype=torch.float64), torch.randn(r, k, dtype=torch.float64)
    delta = B @ A
    delta *= W.norm() / delta.norm()  # make the update as large as W itself
    W_new = W + delta
    print(f"entries of W changed      : {(delta != 0).sum().item():,} of {d * k:,}")
    print(f"size of the change        : ||ΔW|| / ||W|| = {delta.norm() / W.norm():.2f}")
    print(f"rank of the change        : {int(torch.linalg.matrix_rank(delta))}")
    print(f"numbers needed to store it: {r * (d + k):,} (B and A) instead of {d * k:,} ({r * (d + k) / (d * k):.1%})")
    print(f"rank-{r} SVD of ΔW recovers it exactly: {torch.allclose(reference_low_rank(delta, r), delta, atol=1e-8)}")
    """),
    md(r"""
    So the SVD finds the important directions of any matrix; when a change lives in few directions, two thin
    factors capture it exactly, and training those factors (instead of the $d \times k$ matrix) is what LoRA does.

    ## Recap

    * The **rank** is the minimum number of vectors that span the same space: two independent vectors span a plane,
      in 2-D (the whole plane) and in 3-D (a plane inside the space), never more.
    * The **SVD** $M = U\Sigma V^\top$ lists a matrix's directions by importance; the rank counts the non-zero singular values.
    * Keeping the top $r$ singular directions gives the best rank-$r$ approximation, stored in $r(d+k)$ numbers.
    * Pretrained weights are near full rank, but fine-tuning *updates* have low intrinsic rank: a big change to every
      entry can come from a handful of directions. That is the bet LoRA makes (notebook 05).
    """),
]

if __name__ == "__main__":
    write(cells, "01_rank.ipynb")
