"""Shared handling of scalar-or-tensor arguments (Δ, α, quality) for coefficients and schedules.

Rules (spec §10): tensors and Python floats are accepted and broadcast against each other;
the math runs in the promotion of the tensor dtypes and float32 (half → float32, float64 stays
float64); when every argument is a Python number the result is float64 (a Python float is a
double, so nothing is lost).
"""

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from askd_ref._validation import (
    check_float_tensor,
    check_no_nan,
    check_same_device,
    compute_dtype,
    to_param_tensor,
)


@dataclass(frozen=True)
class Param:
    """One named argument with its allowed interval (``None`` bounds: any finite value)."""

    name: str
    value: object
    lo: float | None = None
    hi: float | None = None


def as_tensors(*params: Param) -> list[Tensor]:
    """Validate ``params`` and return them as tensors of one dtype/device, broadcast together."""
    tensors = {p.name: p.value for p in params if isinstance(p.value, Tensor)}
    for name, t in tensors.items():
        check_float_tensor(name, t)
    check_same_device(**{n: t for n, t in tensors.items() if isinstance(t, Tensor)})
    if tensors:
        first = next(iter(tensors.values()))
        assert isinstance(first, Tensor)
        device = first.device
        dtype = compute_dtype(*(t.dtype for t in tensors.values() if isinstance(t, Tensor)))
    else:
        device, dtype = torch.device("cpu"), torch.float64
    out: list[Tensor] = []
    for p in params:
        if p.lo is None or p.hi is None:
            out.append(_unbounded(p, dtype, device))
        else:
            out.append(to_param_tensor(p.name, p.value, dtype=dtype, device=device, lo=p.lo, hi=p.hi))
    try:
        shape = torch.broadcast_shapes(*(t.shape for t in out))  # type: ignore[no-untyped-call]
    except RuntimeError:
        listing = ", ".join(f"{p.name} {tuple(t.shape)}" for p, t in zip(params, out, strict=True))
        raise ValueError(f"arguments do not broadcast together: {listing}") from None
    return [t.expand(shape) for t in out]


def _unbounded(p: Param, dtype: torch.dtype, device: torch.device) -> Tensor:
    if isinstance(p.value, bool):
        raise TypeError(f"{p.name} must be a float or a floating-point tensor, got bool")
    if isinstance(p.value, (int, float)):
        if not math.isfinite(float(p.value)):
            raise ValueError(f"{p.name} must be finite, got {p.value!r}")
        return torch.tensor(float(p.value), dtype=dtype, device=device)
    t = check_float_tensor(p.name, p.value)
    check_no_nan(p.name, t)
    return t.to(dtype)
