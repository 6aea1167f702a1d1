"""Quality signals (spec §5): map a batch of samples to scores r ∈ [0, 1].

Every signal implements :class:`QualitySignal`. A score outside [0, 1] or NaN is an error
naming the sample (:func:`validate_scores`); signals never clip silently.
"""

# Aliased: importing the submodule ``askd_ref.quality.math`` rebinds the package attribute ``math``.
import importlib
import math as _math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from askd_ref.engine.data import Sample

__all__ = ["SIGNAL_NAMES", "QualitySignal", "get_signal", "is_teacher_likelihood", "validate_scores"]


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
        if _math.isnan(v) or not 0.0 <= v <= 1.0:
            raise ValueError(
                f"quality signal {signal_name!r} returned {v!r} for sample {i} "
                f"(prompt {sample.prompt[:40]!r}); expected a value in [0, 1]"
            )
        out.append(v)
    return out


#: Built-in signals: registry name → (module, class). Modules are imported on first use, so that
#: e.g. the exact-match signal does not import torch.
_SIGNALS: dict[str, tuple[str, str]] = {
    "exact_match": ("askd_ref.quality.math", "ExactMatch"),
    "unit_tests": ("askd_ref.quality.code", "UnitTestPassRate"),
    "reward_model": ("askd_ref.quality.reward_model", "RewardModelSignal"),
    "teacher_likelihood": ("askd_ref.quality.likelihood", "TeacherLikelihood"),
    "digit_credit": ("askd_ref.toy.quality", "DigitCredit"),
}
_ALIASES: dict[str, str] = {"math": "exact_match", "code": "unit_tests", "likelihood": "teacher_likelihood"}

def is_teacher_likelihood(name: str | None) -> bool:
    """Whether ``name`` is the teacher-likelihood signal (or its alias), which the trainer
    computes from its own teacher pass instead of building a signal.

    >>> is_teacher_likelihood("likelihood"), is_teacher_likelihood("exact_match")
    (True, False)
    """
    return name is not None and _ALIASES.get(name, name) == "teacher_likelihood"


#: The names :func:`get_signal` accepts (aliases included).
SIGNAL_NAMES: tuple[str, ...] = tuple(sorted([*_SIGNALS, *_ALIASES]))


def get_signal(name: str, **kwargs: Any) -> QualitySignal:
    """Build the built-in quality signal called ``name`` with constructor arguments ``kwargs``.

    Names: ``exact_match`` (alias ``math``), ``unit_tests`` (``code``), ``reward_model``,
    ``teacher_likelihood`` (``likelihood``), ``digit_credit`` (graded partial credit on the
    embedded toy task). See each module for its arguments.

    >>> get_signal("exact_match").name
    'exact_match'
    >>> get_signal("bleu")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown quality signal 'bleu'; expected one of: code, digit_credit, ...
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in _SIGNALS:
        raise ValueError(f"unknown quality signal {name!r}; expected one of: {', '.join(SIGNAL_NAMES)}")
    module_name, class_name = _SIGNALS[key]
    cls = getattr(importlib.import_module(module_name), class_name)
    signal = cls(**kwargs)
    if not isinstance(signal, QualitySignal):  # pragma: no cover - guards the registry itself
        raise TypeError(f"{module_name}.{class_name} does not implement QualitySignal")
    return signal
