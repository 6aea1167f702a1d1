"""Argument validation at the public boundary.

Every public function of :mod:`askd_ref` checks its arguments here before computing anything,
in the style of ``torch.distributions.constraints``: each check names the argument, says what
was expected and what arrived. Invalid input raises :class:`TypeError` (wrong kind or dtype)
or :class:`ValueError` (wrong shape, range, NaN/inf, vocabulary mismatch, empty batch); a deep
``RuntimeError`` from inside torch never reaches the caller for input the library could have
recognised.

Checks that need to look at values (NaN, ranges, normalisation) synchronise with the device.
Hot loops that have already validated their data can switch them off with
:func:`validation_disabled` (shape and dtype checks stay on, they are free).
"""

import contextlib
import math
from collections.abc import Iterator, Sequence
from typing import Final

import torch
from torch import Tensor

__all__ = [
    "broadcast_to",
    "check_batch_mask",
    "check_bool_mask",
    "check_float_tensor",
    "check_has_data",
    "check_integer_tensor",
    "check_log_probs",
    "check_no_nan",
    "check_range",
    "check_rows_nonempty",
    "check_same_device",
    "check_same_vocab",
    "check_temperature",
    "check_unit_float",
    "compute_dtype",
    "is_validation_enabled",
    "set_validation",
    "to_param_tensor",
    "validation_disabled",
]

_VALIDATE_VALUES: bool = True

#: How far ``logsumexp`` of a log-probability row may be from 0, per dtype. bf16/fp16 inputs
#: are rounded log-probs whose normaliser drifts by about (unit roundoff)·(mean |log p|);
#: the bounds leave room for vocabularies of 262k entries while still catching raw logits.
_NORMALISATION_ATOL: Final[dict[torch.dtype, float]] = {
    torch.float64: 1e-6,
    torch.float32: 1e-3,
    torch.bfloat16: 0.15,
    torch.float16: 0.05,
}


def set_validation(enabled: bool) -> None:
    """Switch value checks (NaN/inf, ranges, normalisation) on or off globally.

    Shape, dtype and device checks always run. Value checks are on by default.

    >>> set_validation(False); is_validation_enabled()
    False
    >>> set_validation(True); is_validation_enabled()
    True
    """
    global _VALIDATE_VALUES
    _VALIDATE_VALUES = bool(enabled)


def is_validation_enabled() -> bool:
    """Whether value checks are currently on (see :func:`set_validation`)."""
    return _VALIDATE_VALUES


@contextlib.contextmanager
def validation_disabled() -> Iterator[None]:
    """Context manager that turns value checks off inside its block.

    >>> with validation_disabled():
    ...     is_validation_enabled()
    False
    """
    previous = _VALIDATE_VALUES
    set_validation(False)
    try:
        yield
    finally:
        set_validation(previous)


def _describe(x: object) -> str:
    if isinstance(x, Tensor):
        return f"a {x.dtype} tensor of shape {tuple(x.shape)}"
    return f"{type(x).__name__} {x!r}"


def check_float_tensor(name: str, x: object, *, min_ndim: int = 0, allow_empty: bool = False) -> Tensor:
    """Return ``x`` if it is a floating-point tensor of rank ≥ ``min_ndim``; raise otherwise."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(x)}")
    check_has_data(name, x)
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor (float64, float32, bfloat16 or float16), "
            f"got dtype {x.dtype}"
        )
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}")
    if not allow_empty and x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}); expected at least one element")
    return x


def check_has_data(name: str, x: Tensor) -> None:
    """Raise ``ValueError`` for a tensor on the ``meta`` device (shape only, no values to check)."""
    if x.device.type == "meta":
        raise ValueError(
            f"{name} is on the meta device, which holds no data; askd_ref needs real tensors, all "
            "tensor arguments on one device (e.g. cpu or cuda)"
        )


def check_no_nan(name: str, x: Tensor, *, allow_neg_inf: bool = False, allow_pos_inf: bool = False) -> None:
    """Raise ``ValueError`` if ``x`` holds NaN, or ±inf where not allowed."""
    if not _VALIDATE_VALUES:
        return
    if x.is_floating_point():
        # One pass: a finite sum rules out NaN and ±inf (either makes the sum NaN or infinite);
        # an infinite sum (overflow, or an allowed inf) falls through to the exact checks.
        total = x.sum(dtype=torch.float32 if x.element_size() < 4 else x.dtype)
        if bool(torch.isfinite(total)):
            return
    if bool(torch.isnan(x).any()):
        idx = tuple(int(i) for i in torch.nonzero(torch.isnan(x))[0].tolist())
        raise ValueError(f"{name} contains NaN (first at index {idx})")
    if not allow_pos_inf and bool(torch.isposinf(x).any()):
        idx = tuple(int(i) for i in torch.nonzero(torch.isposinf(x))[0].tolist())
        raise ValueError(f"{name} contains +inf (first at index {idx}); expected finite values")
    if not allow_neg_inf and bool(torch.isneginf(x).any()):
        idx = tuple(int(i) for i in torch.nonzero(torch.isneginf(x))[0].tolist())
        raise ValueError(f"{name} contains -inf (first at index {idx}); expected finite values")


def check_range(name: str, x: Tensor, lo: float, hi: float, *, closed: bool = True) -> None:
    """Raise ``ValueError`` unless every entry of ``x`` lies in [lo, hi] (or (lo, hi))."""
    check_no_nan(name, x)
    if not _VALIDATE_VALUES:
        return
    bad = (x < lo) | (x > hi) if closed else (x <= lo) | (x >= hi)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        value = float(x[idx]) if idx else float(x)
        interval = f"[{lo}, {hi}]" if closed else f"({lo}, {hi})"
        raise ValueError(f"{name} must lie in {interval}; got {value!r} at index {idx}")


def check_log_probs(name: str, x: Tensor) -> None:
    """Check that ``x`` holds log-probabilities over its last axis.

    Entries may be ``-inf`` (zero probability); NaN and ``+inf`` are rejected, and every row
    must be normalised: ``logsumexp(x, -1) ≈ 0`` within a dtype-dependent tolerance. Raw logits
    fail this check, which is the most common mistake when wiring a loss.
    """
    check_no_nan(name, x, allow_neg_inf=True)
    if not _VALIDATE_VALUES:
        return
    lse = torch.logsumexp(x.detach().to(torch.promote_types(x.dtype, torch.float32)), dim=-1)
    tol = _NORMALISATION_ATOL.get(x.dtype, 1e-3)
    err = lse.abs()
    bad = ~(err <= tol)  # also catches rows that are all -inf (lse = -inf -> err = inf)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        worst = float(lse[idx]) if idx else float(lse)
        raise ValueError(
            f"{name} must be log-probabilities over the last axis (logsumexp = 0 within {tol:g} "
            f"for {x.dtype}); row {idx} has logsumexp = {worst:.6g}. Pass log_softmax(logits, -1), "
            "not raw logits; a row that is entirely -inf is not a distribution"
        )


def check_bool_mask(name: str, mask: object, shape: Sequence[int]) -> Tensor:
    """Return ``mask`` if it is a bool tensor of exactly ``shape``; raise otherwise."""
    if not isinstance(mask, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of dtype torch.bool, got {_describe(mask)}")
    check_has_data(name, mask)
    if mask.dtype != torch.bool:
        raise TypeError(
            f"{name} must have dtype torch.bool, got {mask.dtype} (convert with {name}.bool() "
            "after checking it only holds 0/1)"
        )
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")
    return mask


def check_batch_mask(mask: object) -> Tensor:
    """Return ``mask`` if it is a bool tensor of shape ``(batch, seq)``; raise otherwise."""
    if not isinstance(mask, Tensor) or mask.ndim != 2:
        got = getattr(mask, "shape", type(mask).__name__)
        raise ValueError(f"mask must be a bool tensor of shape (batch, seq), got {got}")
    return check_bool_mask("mask", mask, mask.shape)


def check_rows_nonempty(mask: Tensor) -> None:
    """Raise ``ValueError`` naming the first row of a ``(batch, seq)`` mask with no True entry."""
    empty = ~mask.any(-1)
    if bool(empty.any()):
        row = int(torch.nonzero(empty)[0, 0])
        raise ValueError(f"mask row {row} selects no tokens; every sample needs at least one")


def check_integer_tensor(name: str, x: object, what: str) -> Tensor:
    """Return ``x`` if it is an integer tensor (not bool); ``TypeError`` naming ``what`` it holds."""
    if not isinstance(x, Tensor) or x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        got = f"dtype {x.dtype}" if isinstance(x, Tensor) else type(x).__name__
        raise TypeError(f"{name} must be an integer tensor of {what}, got {got}")
    return x


def check_same_vocab(first: str, size_first: int, second: str, size_second: int, unit: str) -> None:
    """Raise ``ValueError`` when two vocabulary sizes differ (e.g. student and teacher heads)."""
    if size_first != size_second:
        raise ValueError(
            f"vocabulary mismatch: {first} has {size_first} {unit}, {second} has {size_second}; "
            "slice padded heads to the shared tokenizer vocabulary first"
        )


def check_temperature(temperature: object) -> float:
    """τ as a float; ``TypeError``/``ValueError`` unless it is a positive finite number."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float):
        raise TypeError(f"temperature must be a positive float, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")
    return float(temperature)


def check_unit_float(name: str, value: object) -> float:
    """A float parameter in [0, 1]; ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    v = float(value)
    if not (math.isfinite(v) and 0.0 <= v <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return v


def check_same_device(**tensors: Tensor | None) -> None:
    """Raise ``ValueError`` if the given tensors do not all live on one device."""
    devices = {name: t.device for name, t in tensors.items() if t is not None}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{n} on {d}" for n, d in devices.items())
        raise ValueError(f"all tensor arguments must be on one device; got {listing}")


def to_param_tensor(
    name: str,
    value: object,
    *,
    dtype: torch.dtype,
    device: torch.device,
    lo: float,
    hi: float,
    closed: bool = True,
) -> Tensor:
    """Turn a Python number or tensor parameter into a tensor of ``dtype`` on ``device``.

    Used for α, β, quality and τ: rejects bools, integer tensors, NaN/inf and values outside
    [lo, hi]; does not broadcast (the caller does, naming the shapes).
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a float or a floating-point tensor, got bool {value!r}")
    if isinstance(value, (int, float)):
        v = float(value)
        ok = (lo <= v <= hi) if closed else (lo < v < hi)
        if not math.isfinite(v) or not ok:
            interval = f"[{lo}, {hi}]" if closed else f"({lo}, {hi})"
            raise ValueError(f"{name} must lie in {interval}; got {v!r}")
        return torch.tensor(v, dtype=dtype, device=device)
    t = check_float_tensor(name, value)
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the other tensor arguments are on {device}")
    check_range(name, t, lo, hi, closed=closed)
    return t.to(dtype)


def compute_dtype(*dtypes: torch.dtype) -> torch.dtype:
    """The dtype the math runs in: the promotion of the inputs and float32 (half → fp32)."""
    out = torch.float32
    for d in dtypes:
        out = torch.promote_types(out, d)
    return out


def broadcast_to(name: str, t: Tensor, shape: Sequence[int], against: str) -> Tensor:
    """Broadcast ``t`` to ``shape`` (the shape of ``against``) or raise naming both shapes."""
    target = tuple(shape)
    try:
        out_shape = torch.broadcast_shapes(tuple(t.shape), target)  # type: ignore[no-untyped-call]
    except RuntimeError:
        out_shape = None
    if out_shape != target:
        raise ValueError(
            f"{name} of shape {tuple(t.shape)} does not broadcast to the shape {target} of {against}"
        )
    return t.expand(target)
