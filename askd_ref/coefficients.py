"""Update coefficients of the RL-style form (spec §3, E5–E7, E9).

A surrogate loss sg(c)·S_θ(y) has gradient c·∇S_θ(y): c > 0 pushes log q(y) down
("distrust"), c < 0 pulls it up. The coefficients below are functions of the (detached)
sequence log-ratio Δ = log q(y) − log p(y) and the skew α, evaluated stably in log space:

* w = expit(Δ − logit α) for teacher samples (E5);
* log u = −logaddexp(log α, log1p(−α) − Δ), u = q/((1−α)p + αq) ∈ (0, 1/α], for student
  samples (E6, E7).

Valid for |Δ| up to at least 700 in float64 and 80 in float32 without inf/NaN.
"""

import torch
from jaxtyping import Float
from torch import Tensor

from askd_ref._params import Param, as_tensors
from askd_ref.options import ASKDOptions, MixtureGrad, resolve_options
from askd_ref.schedules import quality_gate, sgo_alpha

__all__ = ["clipped_sgo_coefficient", "sgo_coefficient", "tgo_coefficient"]


def tgo_coefficient(
    delta: Float[Tensor, "*batch"] | float, alpha: Float[Tensor, "*batch"] | float
) -> Float[Tensor, "*batch"]:
    r"""TGO update coefficient w(Δ; α) = σ(Δ − logit α) (spec E5).

    .. math::
        w(\Delta;\alpha) = \sigma(\Delta - \operatorname{logit}\alpha)
          = \frac{(1-\alpha)e^{\Delta}}{\alpha + (1-\alpha)e^{\Delta}}

    Derivation (T1): ∇SKL_α,seq = −E_{y∼p}[w·∇log q(y)] exactly, so −sg(w)·S_θ(y) on teacher
    samples is an unbiased gradient-equivalent surrogate of the sequence-level skew KL. A
    coefficient, not a loss. 0 < w < 1, w(0) = 1 − α, |∂w/∂Δ| ≤ 1/4 (T3, T4). α = 0 gives
    w = 1 (plain NLL on TGOs), α = 1 gives w = 0.

    Args:
        delta: Δ = log q(y) − log p(y) (or its per-token mean), finite; float or tensor.
        alpha: α ∈ [0, 1]; float or tensor broadcastable with ``delta``.

    Returns:
        w, the broadcast shape of the arguments.

    Example:
        >>> tgo_coefficient(0.0, 0.1)
        tensor(0.9000, dtype=torch.float64)
        >>> tgo_coefficient(torch.tensor([-80.0, 80.0]), 0.1)
        tensor([1.6244e-34, 1.0000e+00])
    """
    d, a = as_tensors(Param("delta", delta), Param("alpha", alpha, 0.0, 1.0))
    # w = σ(Δ − logit α) written as exp(−log(1 + e^x)), x = logit α − Δ: autograd then forms
    # ∂w/∂x = −w·σ(x) from σ(x) itself, where sigmoid's backward would compute 1 − w by
    # subtraction and lose precision as w → 1.
    x = torch.log(a) - torch.log1p(-a) - d
    return torch.exp(-torch.logaddexp(torch.zeros((), dtype=x.dtype, device=x.device), x))


def log_u(d: Tensor, a: Tensor) -> Tensor:
    """log u = −log(α + (1−α)e^{−Δ}), u = q/((1−α)p + αq).

    Two algebraically equal forms: −log1p((1−α)·expm1(−Δ)) for |Δ| < 1, exact at Δ = 0 (so
    c̃(0) = 0 holds exactly, not to rounding) and accurate for tiny Δ; and
    −logaddexp(log α, log1p(−α) − Δ) elsewhere, which never overflows. Each branch only ever
    sees Δ values in its own range, so neither can leak inf/NaN into the other's gradient.
    """
    near = d.abs() < 1
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    d_near = torch.where(near, d, zero)
    d_far = torch.where(near, torch.ones((), dtype=d.dtype, device=d.device), d)
    log_u_near = -torch.log1p((1 - a) * torch.expm1(-d_near))
    log_u_far = -torch.logaddexp(torch.log(a), torch.log1p(-a) - d_far)
    return torch.where(near, log_u_near, log_u_far)


def sgo_coefficient_kernel(d: Tensor, a: Tensor, mixture_grad: MixtureGrad) -> Tensor:
    """c̃(Δ; α) on tensors, without argument checks (shared with :mod:`askd_ref.losses`)."""
    lu = log_u(d, a)
    if mixture_grad == "stop":
        return lu
    # α(u − 1) = α·expm1(log u) is bounded (αu ≤ 1) for α > 0; at α = 0 it is exactly 0 while
    # u = e^Δ may overflow (0·inf = NaN), so that case is masked, in the input too (gradients).
    positive = a > 0
    zero = torch.zeros((), dtype=lu.dtype, device=lu.device)
    log_u_pos = torch.where(positive, lu, zero)
    return lu - torch.where(positive, a * torch.expm1(log_u_pos), zero)


def sgo_coefficient(
    delta: Float[Tensor, "*batch"] | float,
    alpha: Float[Tensor, "*batch"] | float,
    *,
    mixture_grad: MixtureGrad = "full",
) -> Float[Tensor, "*batch"]:
    r"""SGO update coefficient: centred c̃ (E6, default) or c_det (E7, ``mixture_grad="stop"``).

    .. math::
        u = \frac{1}{\alpha + (1-\alpha)e^{-\Delta}},\qquad
        \tilde c(\Delta;\alpha) = \log u - \alpha(u - 1),\qquad c_{det} = \log u

    Derivation (T1, T2): ∇SRKL_α,seq = E_{y∼q}[(log u + 1 − αu)·∇log q(y)]; the constant 1 − α
    is removed (a baseline for fixed α) so that c̃(0) = 0 and sign(c̃) = sign(Δ); with a
    per-sample α the centred form is the exact gradient of the unnormalised skew reverse KL
    UJ. c_det is the semi-gradient of KL(q ‖ sg((1−α)p + αq)). A coefficient, not a loss.
    Bounds (T3): c̃ ≤ log(1/α) − (1−α), c_det ≤ log(1/α); ∂c̃/∂Δ = (1 − αu)² ∈ [0, 1] (T4).
    α = 0 gives c̃ = c_det = Δ (the reverse-KL policy-gradient coefficient less its baseline
    1), α = 1 gives 0.

    Args:
        delta: Δ = log q(y) − log p(y) (or its per-token mean), finite; float or tensor.
        alpha: α ∈ [0, 1]; float or tensor broadcastable with ``delta``.
        mixture_grad: ``"full"`` → c̃ (E6), ``"stop"`` → c_det (E7).

    Returns:
        The coefficient, the broadcast shape of the arguments.

    Example:
        >>> sgo_coefficient(0.0, 0.1)
        tensor(0., dtype=torch.float64)
        >>> round(float(sgo_coefficient(700.0, 0.1)), 6)  # log(1/α) − (1 − α)
        1.402585
        >>> round(float(sgo_coefficient(700.0, 0.1, mixture_grad="stop")), 6)  # log(1/α)
        2.302585
    """
    if mixture_grad not in ("full", "stop"):
        raise ValueError(f"mixture_grad must be 'full' or 'stop', got {mixture_grad!r}")
    d, a = as_tensors(Param("delta", delta), Param("alpha", alpha, 0.0, 1.0))
    return sgo_coefficient_kernel(d, a, mixture_grad)


def clipped_sgo_coefficient(
    delta: Float[Tensor, "*batch"] | float,
    quality: Float[Tensor, "*batch"] | float,
    *,
    options: ASKDOptions | None = None,
) -> Float[Tensor, "*batch"]:
    r"""Quality-clipped SGO coefficient ĉ(Δ, r) (spec E9): distrust only low-quality SGOs.

    .. math::
        \hat c(\Delta, r) = \min(\tilde c(\Delta;\alpha_{lo}), 0)
            + (1 - h(r))\,\max(\tilde c(\Delta;\alpha_S(r)), 0)
        \quad(\texttt{sgo\_pullup="fixed"}, \text{default})

    .. math::
        \hat c(\Delta, r) = \tilde c(\Delta;\alpha_S(r)) - h(r)\max(\tilde c(\Delta;\alpha_S(r)), 0)
        \quad(\texttt{sgo\_pullup="adaptive"})

    with α_S(r) from :func:`~askd_ref.sgo_alpha`, h(r) from ``options.gate`` and c̃ replaced by
    c_det when ``options.mixture_grad == "stop"``. At the kink Δ = 0 the derivative ∂ĉ/∂Δ is the
    right derivative (Δ → 0⁺); ĉ(0) = 0 exactly. Quality modulates the push-down only: where
    h(r) = 1, ĉ ≤ 0, so a high-quality SGO is never pushed down, and it is still pulled up
    where the teacher prefers it (Δ < 0) (T3, T11). ĉ is 1-Lipschitz and non-decreasing in Δ
    (T4); its push-down max(ĉ, 0) is non-increasing in r (T5). A coefficient, not a loss.

    Args:
        delta: Δ (or Δ̄), finite; float or tensor.
        quality: r ∈ [0, 1]; float or tensor broadcastable with ``delta``.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.

    Returns:
        ĉ, the broadcast shape of the arguments.

    Example:
        >>> import torch
        >>> delta = torch.tensor([-1.0, 1.0], dtype=torch.float64)
        >>> clipped_sgo_coefficient(delta, 1.0)  # top quality: pull-up kept, push-down removed
        tensor([-0.8740,  0.0000], dtype=torch.float64)
        >>> clipped_sgo_coefficient(delta, 0.0)  # low quality: plain c̃ at α_lo
        tensor([-0.8740,  0.7095], dtype=torch.float64)
    """
    opts = resolve_options(options)
    d, r = as_tensors(Param("delta", delta), Param("quality", quality, 0.0, 1.0))
    alpha_s = sgo_alpha(r, options=opts)
    h = quality_gate(r, options=opts)
    zero = torch.zeros((), dtype=d.dtype, device=d.device)
    c_s = sgo_coefficient_kernel(d, alpha_s, opts.mixture_grad)
    # max(c, 0) and min(c, 0) via `where` so that the derivative at the kink c = 0 (i.e. Δ = 0,
    # since sign(c̃) = sign(Δ)) is one-sided and documented: the push-down branch is taken at 0,
    # giving the right derivative ∂ĉ/∂Δ(0⁺). (`clamp` would pass gradient through both
    # branches at 0 and return the sum of the two one-sided derivatives.)
    push_down = torch.where(c_s >= 0, c_s, zero)
    if opts.sgo_pullup == "adaptive":
        return c_s - h * push_down
    alpha_lo = torch.full_like(d, opts.alpha_lo)
    c_lo = sgo_coefficient_kernel(d, alpha_lo, opts.mixture_grad)
    pull_up = torch.where(c_lo < 0, c_lo, zero)
    return pull_up + (1 - h) * push_down
