"""Quality gates and quality → skew schedules (spec E8, E10).

Quality r ∈ [0, 1] is a per-sample score (spec §5). Two maps turn it into a skew α:

* TGOs (teacher outputs, y ∼ p): α_T(r) decreases in r, so a high-quality TGO gets a small
  skew and is learned fully — "learn TGOs proportionally to their quality".
* SGOs (student outputs, y ∼ q): α_S(r) increases in r, so a high-quality SGO gets a large
  skew and a small push-down — "distrust only low-quality SGOs".

The gate h(r) ∈ [0, 1] then removes the push-down of high-quality SGOs altogether (E9).
"""

import torch
from jaxtyping import Float
from torch import Tensor

from askd_ref._params import Param, as_tensors
from askd_ref.options import ASKDOptions, resolve_options

__all__ = ["hard_gate", "quality_gate", "sgo_alpha", "soft_gate", "tgo_alpha"]


def soft_gate(
    quality: Float[Tensor, "*batch"] | float, tau_lo: float = 0.5, tau_hi: float = 1.0
) -> Float[Tensor, "*batch"]:
    r"""Soft quality gate h(r) = clip((r − τ_lo)/(τ_hi − τ_lo), 0, 1) (spec E8, default gate).

    .. math:: h(r) = \min\!\Bigl(1, \max\!\Bigl(0, \frac{r - \tau_{lo}}{\tau_{hi} - \tau_{lo}}\Bigr)\Bigr)

    A value, not a loss: 0 below τ_lo (push-down kept), 1 at and above τ_hi (push-down removed),
    linear in between, hence 1/(τ_hi − τ_lo)-Lipschitz in r (T4).

    Args:
        quality: r ∈ [0, 1], a float or a tensor of any shape.
        tau_lo: start of the ramp, 0 ≤ τ_lo < τ_hi.
        tau_hi: end of the ramp, τ_hi ≤ 1.

    Returns:
        h(r), same shape as ``quality``.

    Example:
        >>> import torch
        >>> soft_gate(torch.tensor([0.2, 0.5, 0.75, 1.0]))
        tensor([0.0000, 0.0000, 0.5000, 1.0000])
    """
    _check_taus(tau_lo, tau_hi)
    (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
    return torch.clamp((r - tau_lo) / (tau_hi - tau_lo), 0.0, 1.0)


def hard_gate(quality: Float[Tensor, "*batch"] | float, tau: float) -> Float[Tensor, "*batch"]:
    r"""Hard quality gate h(r) = 1{r ≥ τ} (spec E8, option ``gate="hard"``).

    A value, not a loss. Not continuous in r at τ, so the Lipschitz-in-quality statement of T4
    does not hold for it
    (``checks/`` verifies the violation).

    Args:
        quality: r ∈ [0, 1], a float or a tensor of any shape.
        tau: threshold τ ∈ [0, 1].

    Returns:
        h(r) ∈ {0, 1} as a floating tensor, same shape as ``quality``.

    Example:
        >>> import torch
        >>> hard_gate(torch.tensor([0.2, 0.75, 1.0]), tau=0.75)
        tensor([0., 1., 1.])
    """
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not 0.0 <= tau <= 1.0:
        raise ValueError(f"tau must be a float in [0, 1], got {tau!r}")
    (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
    return (r >= tau).to(r.dtype)


def quality_gate(
    quality: Float[Tensor, "*batch"] | float, *, options: ASKDOptions | None = None
) -> Float[Tensor, "*batch"]:
    """The gate h(r) selected by ``options.gate``: soft, hard, or ``"none"`` (h ≡ 0).

    Example:
        >>> import torch
        >>> quality_gate(torch.tensor([0.75]), options=ASKDOptions(gate="none"))
        tensor([0.])
    """
    opts = resolve_options(options)
    if opts.gate == "soft":
        return soft_gate(quality, opts.tau_lo, opts.tau_hi)
    if opts.gate == "hard":
        return hard_gate(quality, opts.tau)
    (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
    return torch.zeros_like(r)


def tgo_alpha(
    quality: Float[Tensor, "*batch"] | float, *, options: ASKDOptions | None = None
) -> Float[Tensor, "*batch"]:
    r"""Skew of a teacher-generated output as a function of its quality, α_T(r) (spec E10).

    .. math::
        \alpha_T(r) = \alpha_{hi} - (\alpha_{hi} - \alpha_{lo})\,r \quad(\text{linear}),\qquad
        \operatorname{logit}\alpha_T(r) = (1-r)\operatorname{logit}\alpha_{hi}
            + r\operatorname{logit}\alpha_{lo} \quad(\text{logit})

    A value, not a loss. Decreasing in r; values in [α_lo, α_hi]; (α_hi − α_lo)-Lipschitz
    (linear) or |logit α_hi − logit α_lo|/4-Lipschitz (logit).

    Args:
        quality: r ∈ [0, 1], a float or a tensor of any shape.
        options: :class:`~askd_ref.ASKDOptions` (``alpha_lo``, ``alpha_hi``, ``schedule``);
            ``None`` means the defaults.

    Returns:
        α_T(r), same shape as ``quality``.

    Example:
        >>> import torch
        >>> tgo_alpha(torch.tensor([0.0, 0.5, 1.0]))
        tensor([0.9000, 0.5000, 0.1000])
    """
    opts = resolve_options(options)
    (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
    return _interpolate(r, opts.alpha_hi, opts.alpha_lo, opts)


def sgo_alpha(
    quality: Float[Tensor, "*batch"] | float, *, options: ASKDOptions | None = None
) -> Float[Tensor, "*batch"]:
    r"""Skew of a student-generated output as a function of its quality, α_S(r) (spec E10).

    .. math::
        \alpha_S(r) = \alpha_{lo} + (\alpha_{hi} - \alpha_{lo})\,r \quad(\text{linear}),\qquad
        \operatorname{logit}\alpha_S(r) = (1-r)\operatorname{logit}\alpha_{lo}
            + r\operatorname{logit}\alpha_{hi} \quad(\text{logit})

    A value, not a loss. Increasing in r, so the push-down cap log(1/α) − (1−α) of a
    high-quality SGO is small.

    Args:
        quality: r ∈ [0, 1], a float or a tensor of any shape.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.

    Returns:
        α_S(r), same shape as ``quality``.

    Example:
        >>> import torch
        >>> sgo_alpha(torch.tensor([0.0, 0.5, 1.0]))
        tensor([0.1000, 0.5000, 0.9000])
    """
    opts = resolve_options(options)
    (r,) = as_tensors(Param("quality", quality, 0.0, 1.0))
    return _interpolate(r, opts.alpha_lo, opts.alpha_hi, opts)


def _interpolate(r: Tensor, at_zero: float, at_one: float, opts: ASKDOptions) -> Tensor:
    if opts.schedule == "linear":
        return at_zero + (at_one - at_zero) * r
    logit0 = torch.logit(torch.tensor(at_zero, dtype=r.dtype, device=r.device))
    logit1 = torch.logit(torch.tensor(at_one, dtype=r.dtype, device=r.device))
    return torch.sigmoid((1 - r) * logit0 + r * logit1)


def _check_taus(tau_lo: object, tau_hi: object) -> None:
    for name, value in (("tau_lo", tau_lo), ("tau_hi", tau_hi)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
    assert isinstance(tau_lo, (int, float))
    assert isinstance(tau_hi, (int, float))
    if not 0.0 <= tau_lo < tau_hi <= 1.0:
        raise ValueError(f"need 0 <= tau_lo < tau_hi <= 1; got tau_lo={tau_lo}, tau_hi={tau_hi}")
