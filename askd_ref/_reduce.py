"""Reduction helpers shared by the loss modules: counts, pooling and the final sum of terms.

Deliberately shared between :mod:`askd_ref.losses`, :mod:`askd_ref.baselines`,
:mod:`askd_ref.methods` and :mod:`askd_ref.chunked`; not part of the public API.
"""

import math
from typing import TYPE_CHECKING, Literal, TypeAlias

from torch import Tensor

if TYPE_CHECKING:
    from askd_ref.losses import DistillBatch

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "check_count",
    "check_reduction",
    "mean_value",
    "pool_sums",
    "split_counts",
    "token_counts",
]

Reduction: TypeAlias = Literal["sample", "token"]
#: The reductions of the token-level losses: ``"sample"`` (token mean per sample, then the mean
#: over samples; the default) and ``"token"`` (one token mean over all loss positions).
REDUCTIONS: tuple[str, ...] = ("sample", "token")


def check_count(name: str, value: int | None, local: int) -> int:
    """The normaliser of a sum over ``local`` samples: ``value`` if given (global count)."""
    if value is None:
        return local
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int (the global sample count) or None, got {value!r}")
    if value < local:
        raise ValueError(
            f"{name}={value} is smaller than the {local} samples in this call; pass the global "
            "count over all micro-batches and ranks"
        )
    return value


def check_reduction(reduction: object) -> Reduction:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else ``ValueError`` naming it."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be 'sample' or 'token', got {reduction!r}")
    return reduction  # type: ignore[return-value]


def mean_value(x: Tensor) -> float:
    """Mean as a Python float, in at least the tensor's own precision (bools count as 0/1)."""
    x = x.detach()
    if not x.is_floating_point():
        x = x.double()
    return float(x.mean()) if x.numel() else math.nan


def pool_sums(sums: Tensor, lengths: Tensor, normalize: str) -> Tensor:
    """Per-sample token sums → sums (``"sum"``) or token means (``"mean"``)."""
    return sums if normalize == "sum" else sums / lengths


def split_counts(
    batch: "DistillBatch", num_tgo: int | None, num_sgo: int | None
) -> tuple[Tensor, Tensor, int, int]:
    """TGO rows, SGO rows and their normalisers N_T, N_S (global if given)."""
    tgo_rows = batch.is_tgo
    sgo_rows = ~batch.is_tgo
    n_t_local, n_s_local = int(tgo_rows.sum()), int(sgo_rows.sum())
    n_t = check_count("num_tgo", num_tgo, n_t_local)
    n_s = check_count("num_sgo", num_sgo, n_s_local)
    return tgo_rows, sgo_rows, n_t, n_s


def token_counts(
    batch: "DistillBatch", reduction: str, num_tgo_tokens: int | None, num_sgo_tokens: int | None
) -> tuple[int, int]:
    """The normalisers of ``reduction="token"``: (TGO, SGO) loss positions, global if given.

    Under ``reduction="sample"`` the token counts have no meaning and passing one is an error.
    """
    check_reduction(reduction)
    if reduction == "sample":
        for name, value in (("num_tgo_tokens", num_tgo_tokens), ("num_sgo_tokens", num_sgo_tokens)):
            if value is not None:
                raise ValueError(
                    f"{name} is the normaliser of reduction='token'; got it with reduction='sample'"
                )
        return 0, 0
    lengths = batch.mask.sum(-1)
    local_t = int(lengths[batch.is_tgo].sum())
    local_s = int(lengths[~batch.is_tgo].sum())
    return (
        check_count("num_tgo_tokens", num_tgo_tokens, local_t),
        check_count("num_sgo_tokens", num_sgo_tokens, local_s),
    )

