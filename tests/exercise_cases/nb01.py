"""Answers for notebooks/01_rank.ipynb."""

import torch

from peftlab.classroom.exercises.nb01 import relative_error, tiny_q_proj


def _rank_of(M, tol=1e-6):
    S = torch.linalg.svdvals(M)
    if S.numel() == 0 or S[0] == 0:
        return 0
    return int((S > tol * S[0]).sum())


def _low_rank(W, r):
    U, S, Vh = torch.linalg.svd(W, full_matrices=False)
    return U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]


def _budget(d, k, fraction):
    return int(fraction * d * k // (d + k))


def _error_at_budget():
    W = tiny_q_proj()
    return relative_error(W, _budget(*W.shape, 0.25))


def _energy_rank(delta, share, squared=True):
    S = torch.linalg.svdvals(delta.double())
    E = S.square() if squared else S
    if E.sum() == 0:
        return 0
    return int((E.cumsum(0) / E.sum() < share).sum()) + 1


def _update_rank(W0, W1, share=0.9):
    return _energy_rank(W1 - W0, share)


_ERR = _error_at_budget()

CASES = {
    "nb01.q1": {
        "solution": {"rank_of": _rank_of},
        "wrong": {
            "absolute tolerance (not relative to the largest)": {
                "rank_of": lambda M, tol=1e-6: int((torch.linalg.svdvals(M) > tol).sum())
            },
            "smaller dimension (assumes full rank)": {"rank_of": lambda M, tol=1e-6: min(M.shape)},
            "counts every singular value": {"rank_of": lambda M, tol=1e-6: torch.linalg.svdvals(M).numel()},
        },
    },
    "nb01.q2": {
        "solution": {"low_rank_approx": _low_rank},
        "wrong": {
            "forgot the singular values": {
                "low_rank_approx": lambda W, r: (lambda U, S, Vh: U[:, :r] @ Vh[:r])(
                    *torch.linalg.svd(W, full_matrices=False)
                )
            },
            "off by one (r + 1 directions)": {"low_rank_approx": lambda W, r: _low_rank(W, r + 1)},
            "the smallest r directions": {
                "low_rank_approx": lambda W, r: (lambda U, S, Vh: U[:, -r:] @ torch.diag(S[-r:]) @ Vh[-r:])(
                    *torch.linalg.svd(W, full_matrices=False)
                )
            },
        },
    },
    "nb01.q3": {
        "solution": {"rank_for_budget": _budget, "chosen_error": _ERR},
        "wrong": {
            "hard-coded 32 (the notebook's 256 x 256 at 25 %)": {
                "rank_for_budget": lambda d, k, f: 32,
                "chosen_error": _ERR,
            },
            "off by one (rounded up)": {
                "rank_for_budget": lambda d, k, f: _budget(d, k, f) + 1,
                "chosen_error": _ERR,
            },
            "forgot one factor (budget / d)": {
                "rank_for_budget": lambda d, k, f: int(f * d * k // d),
                "chosen_error": _ERR,
            },
            "error at the rank of a 50 % budget": {
                "rank_for_budget": _budget,
                "chosen_error": relative_error(tiny_q_proj(), 64),
            },
            "kept share instead of the error": {"rank_for_budget": _budget, "chosen_error": 1 - _ERR},
        },
    },
    "nb01.q4": {
        "solution": {"update_rank": _update_rank},
        "wrong": {
            "did not subtract the base (rank of W1)": {
                "update_rank": lambda W0, W1, share=0.9: _energy_rank(W1, share)
            },
            "off by one (no + 1)": {"update_rank": lambda W0, W1, share=0.9: _update_rank(W0, W1, share) - 1},
            "singular values not squared": {
                "update_rank": lambda W0, W1, share=0.9: _energy_rank(W1 - W0, share, squared=False)
            },
            "numerical rank instead of energy rank": {
                "update_rank": lambda W0, W1, share=0.9: int(torch.linalg.matrix_rank((W1 - W0).double()))
            },
        },
    },
}
