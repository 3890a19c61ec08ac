"""Bottleneck adapters (Houlsby, Pfeiffer) in the common tester. Nonlinear: they cannot be merged."""

from . import Case

CASES = [
    Case("houlsby", "houlsby", lambda k: dict(reduction_factor=16), mergeable=False),
    Case("pfeiffer", "pfeiffer", lambda k: dict(bottleneck_size=4, non_linearity="gelu"), mergeable=False),
    Case(
        "houlsby-tanh-random-init",
        "houlsby",
        lambda k: dict(
            bottleneck_size=3, non_linearity="tanh", init_weights=False, modules_to_save=["lm_head"]
        ),
        identity_at_init=False,
        mergeable=False,
    ),
]
