"""Quality signals (spec §5): map a batch of samples to scores r ∈ [0, 1].

Every signal implements :class:`QualitySignal`. A score outside [0, 1] or NaN is an error
naming the sample (:func:`validate_scores`); signals never clip silently.
"""

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from askd_ref.data import Sample

__all__ = ["QualitySignal", "validate_scores"]


@runtime_checkable
class QualitySignal(Protocol):
    """Scores samples; ``score`` returns one float in [0, 1] per sample, in order."""

    name: str

    def score(self, samples: Sequence[Sample]) -> list[float]: ...


def validate_scores(signal_name: str, samples: Sequence[Sample], scores: Sequence[float]) -> list[float]:
    """Check ``scores`` (one per sample, finite, in [0, 1]); raise ``ValueError`` naming the sample.

    >>> validate_scores("demo", [Sample("p", "r", "student")], [0.5])
    [0.5]
    >>> validate_scores("demo", [Sample("p", "r", "student")], [1.5])
    Traceback (most recent call last):
    ...
    ValueError: quality signal 'demo' returned 1.5 for sample 0 (prompt 'p'); expected a value in [0, 1]
    """
    if len(scores) != len(samples):
        raise ValueError(
            f"quality signal {signal_name!r} returned {len(scores)} scores for {len(samples)} samples"
        )
    out: list[float] = []
    for i, (sample, value) in enumerate(zip(samples, scores, strict=True)):
        v = float(value)
        if math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(
                f"quality signal {signal_name!r} returned {v!r} for sample {i} "
                f"(prompt {sample.prompt[:40]!r}); expected a value in [0, 1]"
            )
        out.append(v)
    return out
