"""The torch implementation of askd-ref behind the conformance protocol (NumPy in, NumPy out).

``python -m askd_ref.conformance --impl askd_ref.conformance_torch`` checks :mod:`askd_ref`
itself against the golden vectors; :mod:`askd_ref.porting.vectors` computes the golden vectors through
this same adapter. The protocol is defined in :mod:`askd_ref.porting.conformance`; in short:

* every spec §10 name is a module-level function taking NumPy arrays, Python floats, strings,
  ``ASKDOptions`` and ``DistillBatch`` objects, and returning NumPy arrays (losses: an object
  with ``loss``, ``sample_count`` and ``diagnostics``);
* :func:`value_and_grad` returns a function's value and ∂(Σ output)/∂(input) for the requested
  inputs, by autograd in float64. ``"student_logits"`` is the gradient with respect to logits z
  with ``student_logp = log_softmax(z)``, evaluated at z = ``student_logp``.

Float arrays become float64 tensors, bool arrays bool tensors, integer arrays int64 tensors;
Python floats stay Python floats (so the all-scalar paths of :mod:`askd_ref` are exercised).

Example:
    >>> import numpy as np
    >>> tgo_coefficient(np.array([0.0, 1.0]), 0.1)
    array([0.9      , 0.9607297])
    >>> value, grads = value_and_grad("tgo_coefficient", (np.array([0.0]), np.array([0.1])), {}, ("delta",))
    >>> grads["delta"]  # w(1 − w) at w = 0.9
    array([0.09])
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

import askd_ref
from askd_ref.options import ASKDOptions

__all__ = [
    "FUNCTION_NAMES",
    "ASKDOptions",
    "DistillBatch",
    "LossResult",
    "advantage_kd_loss",
    "askd_loss",
    "clipped_sgo_coefficient",
    "dense_askd_loss",
    "distillm2_loss",
    "distillm_loss",
    "forward_kl",
    "generalized_jsd",
    "gkd_loss",
    "hard_gate",
    "kd_loss",
    "quality_gate",
    "reverse_kl",
    "rkl_loss",
    "seqkd_loss",
    "sequence_log_ratio",
    "sgo_alpha",
    "sgo_coefficient",
    "sgo_loss",
    "skew_forward_kl",
    "skew_reverse_kl",
    "soft_gate",
    "tgo_alpha",
    "tgo_coefficient",
    "tgo_loss",
    "value_and_grad",
]

#: The spec §10 functions this adapter exposes (every one of them).
FUNCTION_NAMES: tuple[str, ...] = (
    "forward_kl",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
    "generalized_jsd",
    "tgo_coefficient",
    "sgo_coefficient",
    "clipped_sgo_coefficient",
    "soft_gate",
    "hard_gate",
    "quality_gate",
    "tgo_alpha",
    "sgo_alpha",
    "sequence_log_ratio",
    "tgo_loss",
    "sgo_loss",
    "askd_loss",
    "dense_askd_loss",
    "seqkd_loss",
    "kd_loss",
    "rkl_loss",
    "gkd_loss",
    "distillm_loss",
    "distillm2_loss",
    "advantage_kd_loss",
)


@dataclasses.dataclass(frozen=True)
class DistillBatch:
    """A batch of NumPy arrays with the field names of :class:`askd_ref.DistillBatch`.

    Converted to a torch :class:`askd_ref.DistillBatch` (float64) when a loss is called.
    """

    mask: np.ndarray
    is_tgo: np.ndarray
    quality: np.ndarray | None = None
    student_token_logp: np.ndarray | None = None
    teacher_token_logp: np.ndarray | None = None
    student_logp: np.ndarray | None = None
    teacher_logp: np.ndarray | None = None
    behaviour_logp: np.ndarray | None = None
    group: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class LossResult:
    """A loss value as the conformance protocol expects it: plain floats, no tensors."""

    loss: float
    sample_count: int
    diagnostics: dict[str, float]


def _to_torch(value: object) -> object:
    """NumPy array → tensor (float64 / bool / int64); everything else unchanged."""
    if isinstance(value, np.ndarray):
        if value.dtype == np.bool_:
            return torch.from_numpy(value.copy())
        if np.issubdtype(value.dtype, np.integer):
            return torch.from_numpy(value.astype(np.int64))
        return torch.from_numpy(np.asarray(value, dtype=np.float64).copy())
    if isinstance(value, DistillBatch):
        fields = {f.name: _to_torch(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return askd_ref.DistillBatch(**fields)  # type: ignore[arg-type]
    return value


def _to_numpy(value: object) -> object:
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy()
    if isinstance(value, askd_ref.LossOutput):
        return LossResult(
            loss=float(value.loss.detach()),
            sample_count=int(value.sample_count),
            diagnostics={k: float(v) for k, v in value.diagnostics.items()},
        )
    return value


def _call(name: str, args: Sequence[object], kwargs: Mapping[str, object]) -> object:
    fn: Callable[..., object] = getattr(askd_ref, name)
    return fn(*(_to_torch(a) for a in args), **{k: _to_torch(v) for k, v in kwargs.items()})


def _wrap(name: str) -> Callable[..., Any]:
    target = getattr(askd_ref, name)

    def wrapper(*args: object, **kwargs: object) -> Any:
        return _to_numpy(_call(name, args, kwargs))

    wrapper.__name__ = name
    wrapper.__qualname__ = name
    wrapper.__doc__ = f"NumPy wrapper of :func:`askd_ref.{name}` (float64)."
    wrapper.__signature__ = inspect.signature(target)  # type: ignore[attr-defined]
    return wrapper


forward_kl = _wrap("forward_kl")
reverse_kl = _wrap("reverse_kl")
skew_forward_kl = _wrap("skew_forward_kl")
skew_reverse_kl = _wrap("skew_reverse_kl")
generalized_jsd = _wrap("generalized_jsd")
tgo_coefficient = _wrap("tgo_coefficient")
sgo_coefficient = _wrap("sgo_coefficient")
clipped_sgo_coefficient = _wrap("clipped_sgo_coefficient")
soft_gate = _wrap("soft_gate")
hard_gate = _wrap("hard_gate")
quality_gate = _wrap("quality_gate")
tgo_alpha = _wrap("tgo_alpha")
sgo_alpha = _wrap("sgo_alpha")
sequence_log_ratio = _wrap("sequence_log_ratio")
tgo_loss = _wrap("tgo_loss")
sgo_loss = _wrap("sgo_loss")
askd_loss = _wrap("askd_loss")
dense_askd_loss = _wrap("dense_askd_loss")
seqkd_loss = _wrap("seqkd_loss")
kd_loss = _wrap("kd_loss")
rkl_loss = _wrap("rkl_loss")
gkd_loss = _wrap("gkd_loss")
distillm_loss = _wrap("distillm_loss")
distillm2_loss = _wrap("distillm2_loss")
advantage_kd_loss = _wrap("advantage_kd_loss")


def _leaf(value: object, wrt: str) -> Tensor:
    if not isinstance(value, np.ndarray) or not np.issubdtype(value.dtype, np.floating):
        raise TypeError(
            f"a gradient with respect to {wrt!r} needs a float array argument, got {type(value).__name__}"
        )
    return torch.from_numpy(np.asarray(value, dtype=np.float64).copy()).requires_grad_(True)


def value_and_grad(
    name: str, args: Sequence[object], kwargs: Mapping[str, object], wrt: Sequence[str]
) -> tuple[object, dict[str, np.ndarray]]:
    """Value of ``name(*args, **kwargs)`` and ∂(Σ output)/∂x for each input named in ``wrt``.

    ``wrt`` holds parameter names of the §10 signature (``"delta"``, ``"alpha"``,
    ``"student_token_logp"``) or ``"student_logits"``: the logits z with
    ``student_logp = log_softmax(z)``, taken at z = ``student_logp`` (the Jacobian of
    log_softmax depends only on the softmax, so any z with the same log-probs gives the same
    gradient). Inputs may also be fields of a ``batch`` argument. For a loss the output is its
    scalar ``loss``; for an elementwise function the gradient of the sum is the elementwise
    derivative; for a per-position divergence it is the per-position gradient.

    Example:
        >>> import numpy as np
        >>> logp = np.log(np.array([[0.25, 0.75]]))
        >>> _, g = value_and_grad("forward_kl", (), {"teacher_logp": np.log(np.array([[0.5, 0.5]])),
        ...                                            "student_logp": logp}, ("student_logits",))
        >>> g["student_logits"]  # q − p
        array([[-0.25,  0.25]])
    """
    if name not in FUNCTION_NAMES:
        raise ValueError(f"unknown function {name!r}; expected one of {FUNCTION_NAMES}")
    target = getattr(askd_ref, name)
    bound = inspect.signature(target).bind(*args, **kwargs)
    batch = bound.arguments.get("batch")
    batch_fields: dict[str, object] = {}
    if isinstance(batch, DistillBatch):
        batch_fields = {f.name: _to_torch(getattr(batch, f.name)) for f in dataclasses.fields(batch)}
    converted: dict[str, object] = {k: _to_torch(v) for k, v in bound.arguments.items() if k != "batch"}
    leaves: dict[str, Tensor] = {}
    for key in wrt:
        input_name = "student_logp" if key == "student_logits" else key
        if bound.arguments.get(input_name) is not None:
            raw, holder = bound.arguments[input_name], converted
        elif isinstance(batch, DistillBatch) and getattr(batch, input_name, None) is not None:
            raw, holder = getattr(batch, input_name), batch_fields
        else:
            raise ValueError(f"{name} has no input {input_name!r} to differentiate with respect to")
        leaf = _leaf(raw, key)
        leaves[key] = leaf
        holder[input_name] = torch.log_softmax(leaf, dim=-1) if key == "student_logits" else leaf
    if isinstance(batch, DistillBatch):
        converted["batch"] = askd_ref.DistillBatch(**batch_fields)  # type: ignore[arg-type]
    for key in bound.arguments:
        bound.arguments[key] = converted[key]
    out = target(*bound.args, **bound.kwargs)
    scalar = out.loss if isinstance(out, askd_ref.LossOutput) else out
    if not isinstance(scalar, Tensor):
        raise TypeError(f"{name} returned {type(scalar).__name__}, expected a tensor")
    grads: dict[str, np.ndarray] = {}
    if leaves:
        computed = torch.autograd.grad(scalar.sum(), list(leaves.values()), allow_unused=True)
        for (key, leaf), g in zip(leaves.items(), computed, strict=True):
            grads[key] = (torch.zeros_like(leaf) if g is None else g).detach().numpy()
    return _to_numpy(out), grads
