"""A slow, obviously-correct float64 reference of E1–E15 and the §6 baselines, in NumPy.

This module is the independent reference the tests compare :mod:`askd_ref` against, and a
readable target for ports. It is written differently from the torch implementation on purpose:

* divergences are evaluated in **probability space**, one position at a time
  (Σ_v p_v log(p_v/m_v) with m = αp + (1−α)q), not with log-sum-exp mixtures;
* scalar coefficients are evaluated with **mpmath at 50 significant digits** straight from
  their defining formulas (w = (1−α)e^Δ/(α + (1−α)e^Δ), u = 1/(α + (1−α)e^{−Δ}), …) and
  rounded to float64 once, so cancellation near Δ = 0 cannot hide an error;
* gradients are **analytic** (chain rule written out by hand), not autograd: for a divergence
  D(q) with ∂D/∂q_v = h_v, the gradient w.r.t. the student logits z (q = softmax(z)) is
  ∂D/∂z_k = q_k (h_k − Σ_v q_v h_v); for sequence losses the gradient w.r.t. each token
  log-prob is the (detached) coefficient divided by the normaliser;
* losses loop over samples and tokens in plain Python.

It imports NumPy, mpmath and the torch-free :mod:`askd_ref.options` only. Every function takes
and returns NumPy float64 arrays (Python floats accepted). Inputs are assumed valid: the
reference does not validate (that is the implementation's job, tested separately). Endpoint
conventions match the implementation: 0·log 0 = 0, α ∈ {0, 1} allowed, the derivative of ĉ at
its kink Δ = 0 is the right derivative.

Probability-space evaluation is exact for ordinary inputs but cannot represent probabilities
below ~1e-308 (a log-prob of −2e4 underflows to p = 0); extreme-logit behaviour is therefore
tested against mpmath directly, not against this module.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import numpy as np
from numpy.typing import ArrayLike, NDArray

from askd_ref.options import ASKDOptions

__all__ = [
    "ASKDOptions",
    "DistillBatch",
    "ReferenceLossOutput",
    "advantage_kd_loss",
    "askd_loss",
    "clipped_sgo_coefficient",
    "clipped_sgo_coefficient_grad",
    "dense_askd_loss",
    "distillm2_loss",
    "distillm_loss",
    "forward_kl",
    "forward_kl_grad",
    "generalized_jsd",
    "generalized_jsd_grad",
    "gkd_loss",
    "group_advantages",
    "hard_gate",
    "kd_loss",
    "quality_gate",
    "reverse_kl",
    "reverse_kl_grad",
    "rkl_loss",
    "seqkd_loss",
    "sequence_log_ratio",
    "sequence_log_ratio_grad",
    "sgo_alpha",
    "sgo_coefficient",
    "sgo_coefficient_grad",
    "sgo_loss",
    "skew_forward_kl",
    "skew_forward_kl_grad",
    "skew_reverse_kl",
    "skew_reverse_kl_grad",
    "soft_gate",
    "tgo_alpha",
    "tgo_coefficient",
    "tgo_coefficient_grad",
    "tgo_loss",
]

F64 = NDArray[np.float64]
_DPS = 50


def _arr(x: ArrayLike) -> F64:
    return np.asarray(x, dtype=np.float64)


def _opts(options: ASKDOptions | None) -> ASKDOptions:
    return ASKDOptions() if options is None else options


# ---------------------------------------------------------------------------------------------
# E1–E4: divergences, one position at a time, in probability space
# ---------------------------------------------------------------------------------------------


def _plogp_ratio(a: F64, b: F64) -> float:
    """Σ_v a_v log(a_v / b_v) with 0·log(0/b) = 0 and a_v > 0 = b_v giving +inf."""
    total = 0.0
    terms = []
    for av, bv in zip(a.tolist(), b.tolist(), strict=True):
        if av == 0.0:
            continue
        if bv == 0.0:
            return math.inf
        terms.append(av * math.log(av / bv))
    total = math.fsum(terms)
    return total


def _per_position(
    fn: Callable[[F64, F64, float], float], teacher_logp: ArrayLike, student_logp: ArrayLike, param: ArrayLike
) -> F64:
    """Apply ``fn(p_row, q_row, param)`` at every position of ``(*batch, vocab)`` inputs."""
    p_all = np.exp(_arr(teacher_logp))
    q_all = np.exp(_arr(student_logp))
    batch_shape = p_all.shape[:-1]
    prm = np.broadcast_to(_arr(param), batch_shape)
    out = np.empty(batch_shape, dtype=np.float64)
    for idx in np.ndindex(*batch_shape):
        out[idx] = fn(p_all[idx], q_all[idx], float(prm[idx]))
    return out


def forward_kl(*, teacher_logp: ArrayLike, student_logp: ArrayLike) -> F64:
    """KL(p‖q) = Σ_v p_v log(p_v/q_v) per position (E1)."""
    return _per_position(lambda p, q, _: _plogp_ratio(p, q), teacher_logp, student_logp, 0.0)


def reverse_kl(*, teacher_logp: ArrayLike, student_logp: ArrayLike) -> F64:
    """KL(q‖p) = Σ_v q_v log(q_v/p_v) per position (E1)."""
    return _per_position(lambda p, q, _: _plogp_ratio(q, p), teacher_logp, student_logp, 0.0)


def skew_forward_kl(
    *, teacher_logp: ArrayLike, student_logp: ArrayLike, alpha: ArrayLike, mixture_grad: str = "full"
) -> F64:
    """SKL_α = KL(p ‖ αp + (1−α)q) per position (E2); the value ignores ``mixture_grad``."""
    return _per_position(
        lambda p, q, a: _plogp_ratio(p, a * p + (1 - a) * q), teacher_logp, student_logp, alpha
    )


def skew_reverse_kl(
    *, teacher_logp: ArrayLike, student_logp: ArrayLike, alpha: ArrayLike, mixture_grad: str = "full"
) -> F64:
    """SRKL_α = KL(q ‖ (1−α)p + αq) per position (E3); the value ignores ``mixture_grad``."""
    return _per_position(
        lambda p, q, a: _plogp_ratio(q, (1 - a) * p + a * q), teacher_logp, student_logp, alpha
    )


def generalized_jsd(*, teacher_logp: ArrayLike, student_logp: ArrayLike, beta: ArrayLike) -> F64:
    """JSD_β = β·KL(p‖M) + (1−β)·KL(q‖M), M = βp + (1−β)q, per position (E4)."""

    def jsd(p: F64, q: F64, b: float) -> float:
        m = b * p + (1 - b) * q
        left = 0.0 if b == 0.0 else b * _plogp_ratio(p, m)
        right = 0.0 if b == 1.0 else (1 - b) * _plogp_ratio(q, m)
        return left + right

    return _per_position(jsd, teacher_logp, student_logp, beta)


def _grad_from_qh(q: F64, qh: F64, wrt: str) -> F64:
    """Gradient of a divergence D(q) from qh_v = q_v·∂D/∂q_v.

    Treating the student log-probs ℓ = log q as free coordinates (as the implementation does:
    it reads q = exp(ℓ) and never renormalises), ∂D/∂ℓ_v = q_v ∂D/∂q_v = qh_v. Through the
    softmax, ℓ = log_softmax(z), the chain rule gives ∂D/∂z_k = qh_k − q_k Σ_v qh_v.
    """
    if wrt == "logp":
        return qh
    if wrt == "logits":
        return qh - q * math.fsum(qh.tolist())
    raise ValueError(f"wrt must be 'logits' or 'logp', got {wrt!r}")


def _per_position_grad(
    fn: Callable[[F64, F64, float], F64],
    teacher_logp: ArrayLike,
    student_logp: ArrayLike,
    param: ArrayLike,
    wrt: str,
) -> F64:
    p_all = np.exp(_arr(teacher_logp))
    q_all = np.exp(_arr(student_logp))
    prm = np.broadcast_to(_arr(param), p_all.shape[:-1])
    out = np.empty_like(p_all)
    for idx in np.ndindex(*p_all.shape[:-1]):
        q = q_all[idx]
        with np.errstate(divide="ignore", invalid="ignore"):
            qh = fn(p_all[idx], q, float(prm[idx]))
        out[idx] = _grad_from_qh(q, np.where(np.isnan(qh), 0.0, qh), wrt)
    return out


def _xlogx_ratio(x: F64, y: F64) -> F64:
    """x·log(x/y) elementwise with 0·log(0/y) = 0."""
    return np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0) / y), 0.0)


def forward_kl_grad(*, teacher_logp: ArrayLike, student_logp: ArrayLike, wrt: str = "logits") -> F64:
    """Gradient of KL(p‖q): q_v ∂D/∂q_v = −p_v (so ∂D/∂z = q − p for normalised p)."""
    return _per_position_grad(lambda p, q, _: -p, teacher_logp, student_logp, 0.0, wrt)


def reverse_kl_grad(*, teacher_logp: ArrayLike, student_logp: ArrayLike, wrt: str = "logits") -> F64:
    """Gradient of KL(q‖p): q_v ∂D/∂q_v = q_v (log(q_v/p_v) + 1)."""
    return _per_position_grad(lambda p, q, _: _xlogx_ratio(q, p) + q, teacher_logp, student_logp, 0.0, wrt)


def skew_forward_kl_grad(
    *,
    teacher_logp: ArrayLike,
    student_logp: ArrayLike,
    alpha: ArrayLike,
    mixture_grad: str = "full",
    wrt: str = "logits",
) -> F64:
    """Gradient of SKL_α: q_v ∂D/∂q_v = −(1−α) p_v q_v / m_v; zero for ``mixture_grad="stop"``."""

    def qh(p: F64, q: F64, a: float) -> F64:
        if mixture_grad == "stop":
            return np.zeros_like(q)
        return np.where(p > 0, -(1 - a) * p * q / (a * p + (1 - a) * q), 0.0)

    return _per_position_grad(qh, teacher_logp, student_logp, alpha, wrt)


def skew_reverse_kl_grad(
    *,
    teacher_logp: ArrayLike,
    student_logp: ArrayLike,
    alpha: ArrayLike,
    mixture_grad: str = "full",
    wrt: str = "logits",
) -> F64:
    """Gradient of SRKL_α: q_v (log(q_v/m_v) + 1 − α q_v/m_v) ("full"); q_v (log(q_v/m_v) + 1) ("stop")."""

    def qh(p: F64, q: F64, a: float) -> F64:
        m = (1 - a) * p + a * q
        out = _xlogx_ratio(q, m) + q
        if mixture_grad == "full":
            out = out - a * np.where(q > 0, q * q / np.where(m > 0, m, 1.0), 0.0)
        return out

    return _per_position_grad(qh, teacher_logp, student_logp, alpha, wrt)


def generalized_jsd_grad(
    *, teacher_logp: ArrayLike, student_logp: ArrayLike, beta: ArrayLike, wrt: str = "logits"
) -> F64:
    """Gradient of JSD_β: q_v ∂D/∂q_v = (1−β) q_v log(q_v/M_v) (the p-terms cancel)."""
    return _per_position_grad(
        lambda p, q, b: (1 - b) * _xlogx_ratio(q, b * p + (1 - b) * q),
        teacher_logp,
        student_logp,
        beta,
        wrt,
    )


# ---------------------------------------------------------------------------------------------
# E5–E10: scalar coefficients, gates and schedules, in mpmath
# ---------------------------------------------------------------------------------------------


def _elementwise(fn: Callable[..., float], *args: ArrayLike) -> F64:
    arrays = np.broadcast_arrays(*(_arr(a) for a in args))
    out = np.empty(arrays[0].shape, dtype=np.float64)
    with mpmath.workdps(_DPS):
        for idx in np.ndindex(*out.shape):
            out[idx] = fn(*(mpmath.mpf(float(a[idx])) for a in arrays))
    return out


def _w(d: Any, a: Any) -> Any:
    e = mpmath.exp(d)
    return (1 - a) * e / (a + (1 - a) * e)


def _u(d: Any, a: Any) -> Any:
    return 1 / (a + (1 - a) * mpmath.exp(-d))


def _c_tilde(d: Any, a: Any, mixture_grad: str) -> Any:
    u = _u(d, a)
    return mpmath.log(u) if mixture_grad == "stop" else mpmath.log(u) - a * (u - 1)


def _dc_dd(d: Any, a: Any, mixture_grad: str) -> Any:
    u = _u(d, a)
    return (1 - a * u) if mixture_grad == "stop" else (1 - a * u) ** 2


def _dc_da(d: Any, a: Any, mixture_grad: str) -> Any:
    u = _u(d, a)
    dlogu = -u * (1 - mpmath.exp(-d))  # ∂ log u / ∂α
    if mixture_grad == "stop":
        return dlogu
    return dlogu - (u - 1) - a * u * dlogu  # ∂/∂α [log u − α(u − 1)], ∂u/∂α = u ∂log u/∂α


def tgo_coefficient(delta: ArrayLike, alpha: ArrayLike) -> F64:
    """w = (1−α)e^Δ / (α + (1−α)e^Δ) (E5)."""
    return _elementwise(_w, delta, alpha)


def tgo_coefficient_grad(delta: ArrayLike, alpha: ArrayLike) -> tuple[F64, F64]:
    """(∂w/∂Δ, ∂w/∂α) = (w(1−w), −w(1−w)/(α(1−α)))."""

    def d_delta(d: Any, a: Any) -> Any:
        w = _w(d, a)
        return w * (1 - w)

    def d_alpha(d: Any, a: Any) -> Any:
        w = _w(d, a)
        return -w * (1 - w) / (a * (1 - a)) if 0 < a < 1 else mpmath.mpf(0)

    return _elementwise(d_delta, delta, alpha), _elementwise(d_alpha, delta, alpha)


def sgo_coefficient(delta: ArrayLike, alpha: ArrayLike, *, mixture_grad: str = "full") -> F64:
    """c̃ = log u − α(u − 1) ("full", E6) or c_det = log u ("stop", E7), u = 1/(α + (1−α)e^{−Δ})."""
    return _elementwise(lambda d, a: _c_tilde(d, a, mixture_grad), delta, alpha)


def sgo_coefficient_grad(
    delta: ArrayLike, alpha: ArrayLike, *, mixture_grad: str = "full"
) -> tuple[F64, F64]:
    """(∂c/∂Δ, ∂c/∂α): (1 − αu)² and −(u−1) − u(1−e^{−Δ})(1−αu) for c̃; 1 − αu and −u(1−e^{−Δ}) for c_det."""
    return (
        _elementwise(lambda d, a: _dc_dd(d, a, mixture_grad), delta, alpha),
        _elementwise(lambda d, a: _dc_da(d, a, mixture_grad), delta, alpha),
    )


def soft_gate(quality: ArrayLike, tau_lo: float = 0.5, tau_hi: float = 1.0) -> F64:
    """h(r) = clip((r − τ_lo)/(τ_hi − τ_lo), 0, 1) (E8)."""
    r = _arr(quality)
    return np.array(
        [min(1.0, max(0.0, (x - tau_lo) / (tau_hi - tau_lo))) for x in r.ravel().tolist()]
    ).reshape(r.shape)


def hard_gate(quality: ArrayLike, tau: float) -> F64:
    """h(r) = 1 if r ≥ τ else 0 (E8)."""
    r = _arr(quality)
    return np.array([1.0 if x >= tau else 0.0 for x in r.ravel().tolist()]).reshape(r.shape)


def quality_gate(quality: ArrayLike, *, options: ASKDOptions | None = None) -> F64:
    """The gate named by ``options.gate`` ("none" → 0)."""
    o = _opts(options)
    if o.gate == "soft":
        return soft_gate(quality, o.tau_lo, o.tau_hi)
    if o.gate == "hard":
        return hard_gate(quality, o.tau)
    return np.zeros_like(_arr(quality))


def _schedule(quality: ArrayLike, start: float, end: float, schedule: str) -> F64:
    def f(r: Any) -> Any:
        if schedule == "linear":
            return start + (end - start) * r
        lo, hi = mpmath.mpf(start), mpmath.mpf(end)
        logit = (1 - r) * mpmath.log(lo / (1 - lo)) + r * mpmath.log(hi / (1 - hi))
        return 1 / (1 + mpmath.exp(-logit))

    return _elementwise(f, quality)


def tgo_alpha(quality: ArrayLike, *, options: ASKDOptions | None = None) -> F64:
    """α_T(r): α_hi at r = 0 down to α_lo at r = 1 (E10)."""
    o = _opts(options)
    return _schedule(quality, o.alpha_hi, o.alpha_lo, o.schedule)


def sgo_alpha(quality: ArrayLike, *, options: ASKDOptions | None = None) -> F64:
    """α_S(r): α_lo at r = 0 up to α_hi at r = 1 (E10)."""
    o = _opts(options)
    return _schedule(quality, o.alpha_lo, o.alpha_hi, o.schedule)


def clipped_sgo_coefficient(
    delta: ArrayLike, quality: ArrayLike, *, options: ASKDOptions | None = None
) -> F64:
    """ĉ(Δ, r) of E9, written by cases on the sign of c̃ (which is the sign of Δ)."""
    o = _opts(options)
    d, r = np.broadcast_arrays(_arr(delta), _arr(quality))
    a_s = sgo_alpha(r, options=o)
    h = quality_gate(r, options=o)
    out = np.empty(d.shape)
    with mpmath.workdps(_DPS):
        for idx in np.ndindex(*d.shape):
            dd = mpmath.mpf(float(d[idx]))
            c_s = _c_tilde(dd, mpmath.mpf(float(a_s[idx])), o.mixture_grad)
            if o.sgo_pullup == "adaptive":
                value = c_s - mpmath.mpf(float(h[idx])) * max(c_s, 0)
            else:
                c_lo = _c_tilde(dd, mpmath.mpf(o.alpha_lo), o.mixture_grad)
                value = min(c_lo, 0) + (1 - mpmath.mpf(float(h[idx]))) * max(c_s, 0)
            out[idx] = float(value)
    return out


def clipped_sgo_coefficient_grad(
    delta: ArrayLike, quality: ArrayLike, *, options: ASKDOptions | None = None
) -> F64:
    """∂ĉ/∂Δ; at Δ = 0 the right derivative (the push-down branch), as in the implementation."""
    o = _opts(options)
    d, r = np.broadcast_arrays(_arr(delta), _arr(quality))
    a_s = sgo_alpha(r, options=o)
    h = quality_gate(r, options=o)
    out = np.empty(d.shape)
    with mpmath.workdps(_DPS):
        for idx in np.ndindex(*d.shape):
            dd = mpmath.mpf(float(d[idx]))
            if dd >= 0:  # push-down side (c̃ ≥ 0)
                out[idx] = float(
                    (1 - mpmath.mpf(float(h[idx]))) * _dc_dd(dd, mpmath.mpf(float(a_s[idx])), o.mixture_grad)
                )
            elif o.sgo_pullup == "adaptive":
                out[idx] = float(_dc_dd(dd, mpmath.mpf(float(a_s[idx])), o.mixture_grad))
            else:
                out[idx] = float(_dc_dd(dd, mpmath.mpf(o.alpha_lo), o.mixture_grad))
    return out


# ---------------------------------------------------------------------------------------------
# Sequences and losses (E11–E15, §6 baselines): loops over samples and tokens
# ---------------------------------------------------------------------------------------------


def sequence_log_ratio(
    student_token_logp: ArrayLike, teacher_token_logp: ArrayLike, mask: ArrayLike, *, normalize: str
) -> F64:
    """Δ(y) = Σ_t m_t (ℓq_t − ℓp_t), or divided by Σ_t m_t for ``normalize="mean"``."""
    s, t, m = _arr(student_token_logp), _arr(teacher_token_logp), np.asarray(mask, dtype=bool)
    out = np.empty(s.shape[0])
    for i in range(s.shape[0]):
        terms = [s[i, j] - t[i, j] for j in range(s.shape[1]) if m[i, j]]
        out[i] = math.fsum(terms) / (len(terms) if normalize == "mean" else 1)
    return out


def sequence_log_ratio_grad(
    student_token_logp: ArrayLike, teacher_token_logp: ArrayLike, mask: ArrayLike, *, normalize: str
) -> F64:
    """∂Δ_i/∂ℓq_{i,t} = m_{i,t} (÷ Σ_t m_{i,t} for ``normalize="mean"``), shape ``(batch, seq)``."""
    m = np.asarray(mask, dtype=np.float64)
    return m / m.sum(-1, keepdims=True) if normalize == "mean" else m


@dataclasses.dataclass(frozen=True)
class DistillBatch:
    """The fields of :class:`askd_ref.DistillBatch`, as NumPy arrays (no validation)."""

    mask: Any
    is_tgo: Any
    quality: Any = None
    student_token_logp: Any = None
    teacher_token_logp: Any = None
    student_logp: Any = None
    teacher_logp: Any = None
    behaviour_logp: Any = None
    group: Any = None


@dataclasses.dataclass(frozen=True)
class ReferenceLossOutput:
    """Loss value, sample count, diagnostics, and analytic gradients keyed by input name.

    ``grad["student_token_logp"]`` is ∂loss/∂(token log-probs); for full-vocabulary inputs
    ``grad["student_logits"]`` is ∂loss/∂z (student_logp = log_softmax(z)) and
    ``grad["student_logp"]`` is ∂loss/∂(student_logp) with the log-probs as free coordinates.
    """

    loss: float
    sample_count: int
    diagnostics: Mapping[str, float]
    grad: Mapping[str, F64]


def _normaliser(mask_row: Any, normalize: str) -> int:
    return int(np.sum(mask_row)) if normalize == "mean" else 1


def tgo_loss(
    *,
    student_token_logp: ArrayLike,
    teacher_token_logp: ArrayLike,
    mask: ArrayLike,
    quality: ArrayLike,
    options: ASKDOptions | None = None,
    num_samples: int | None = None,
) -> ReferenceLossOutput:
    """E11: L = Σ_i −w_i S_i / N; ∂L/∂ℓq_{i,t} = −w_i / (Z_i N) on the mask."""
    o = _opts(options)
    s, m = _arr(student_token_logp), np.asarray(mask, dtype=bool)
    b = s.shape[0]
    n = b if num_samples is None else num_samples
    r = np.broadcast_to(_arr(quality), (b,))
    delta = sequence_log_ratio(s, teacher_token_logp, m, normalize=o.normalize)
    alpha = tgo_alpha(r, options=o)
    w = tgo_coefficient(delta, alpha)
    grad = np.zeros_like(s)
    per_sample = []
    skl = []
    for i in range(b):
        z = _normaliser(m[i], o.normalize)
        score = math.fsum(s[i, j] for j in range(s.shape[1]) if m[i, j]) / z
        per_sample.append(-w[i] * score)
        grad[i, m[i]] = -w[i] / (z * n)
        with mpmath.workdps(_DPS):
            a = mpmath.mpf(float(alpha[i]))
            skl.append(float(-mpmath.log(a + (1 - a) * mpmath.exp(mpmath.mpf(float(delta[i]))))))
    return ReferenceLossOutput(
        loss=math.fsum(per_sample) / n,
        sample_count=b,
        diagnostics={
            "tgo/alpha": float(np.mean(alpha)),
            "tgo/w": float(np.mean(w)),
            "tgo/delta": float(np.mean(delta)),
            "tgo/skl_estimate": float(np.mean(skl)),
        },
        grad={"student_token_logp": grad},
    )


def _uj_phi(d: float, a_s: float, h: float, o: ASKDOptions) -> float:
    """φ_ĉ(Δ̄) of the mean-mode length correction: φ(Δ̄; α) = log u + 1/u − 1 by cases of sign Δ̄."""
    with mpmath.workdps(_DPS):
        dd = mpmath.mpf(d)
        a = mpmath.mpf(a_s) if (dd >= 0 or o.sgo_pullup == "adaptive") else mpmath.mpf(o.alpha_lo)
        inv_u = a + (1 - a) * mpmath.exp(-dd)
        phi = -mpmath.log(inv_u) + inv_u - 1
        return float(phi * (1 - mpmath.mpf(h)) if dd >= 0 else phi)


def sgo_loss(
    *,
    student_token_logp: ArrayLike,
    teacher_token_logp: ArrayLike,
    mask: ArrayLike,
    quality: ArrayLike,
    behaviour_logp: ArrayLike | None = None,
    options: ASKDOptions | None = None,
    num_samples: int | None = None,
) -> ReferenceLossOutput:
    """E12 (on-policy) and E13 (off-policy, PPO-clipped sequence ratio)."""
    o = _opts(options)
    s, m = _arr(student_token_logp), np.asarray(mask, dtype=bool)
    b = s.shape[0]
    n = b if num_samples is None else num_samples
    r = np.broadcast_to(_arr(quality), (b,))
    delta = sequence_log_ratio(s, teacher_token_logp, m, normalize=o.normalize)
    alpha = sgo_alpha(r, options=o)
    h = quality_gate(r, options=o)
    c_hat = clipped_sgo_coefficient(delta, r, options=o)
    c_tilde = sgo_coefficient(delta, alpha, mixture_grad=o.mixture_grad)
    if o.normalize == "mean" and o.sgo_length_correction == "uj":
        c_hat = c_hat + np.array(
            [
                (int(m[i].sum()) - 1) * _uj_phi(float(delta[i]), float(alpha[i]), float(h[i]), o)
                for i in range(b)
            ]
        )
    grad = np.zeros_like(s)
    per_sample = []
    ratios = []
    clipped_flags = []
    for i in range(b):
        z = _normaliser(m[i], o.normalize)
        total = math.fsum(s[i, j] for j in range(s.shape[1]) if m[i, j])
        if behaviour_logp is None:
            per_sample.append(c_hat[i] * total / z)
            grad[i, m[i]] = c_hat[i] / (z * n)
            continue
        mu = float(np.asarray(behaviour_logp, dtype=np.float64)[i])
        rho = math.exp(total - mu)
        lo, hi = 1 - o.is_clip_eps, 1 + o.is_clip_eps
        unclipped = rho * c_hat[i]
        clipped = min(max(rho, lo), hi) * c_hat[i]
        ratios.append(rho)
        clipped_flags.append(clipped > unclipped)
        if clipped > unclipped:  # the clipped branch is active: constant in θ, no gradient
            per_sample.append(clipped / z)
        else:  # ∂(ρ ĉ)/∂ℓq_t = ρ ĉ (within the clip range both branches agree)
            per_sample.append(unclipped / z)
            grad[i, m[i]] = rho * c_hat[i] / (z * n)
    diagnostics = {
        "sgo/alpha": float(np.mean(alpha)),
        "sgo/c_hat": float(np.mean(c_hat)),
        "sgo/c_tilde": float(np.mean(c_tilde)),
        "sgo/gate": float(np.mean(h)),
        "sgo/gate_reduced_frac": float(np.mean((h > 0) & (c_tilde > 0))),
        "sgo/delta": float(np.mean(delta)),
        "sgo/srkl_estimate": float(np.mean(np.log(1.0 / (alpha + (1 - alpha) * np.exp(-delta))))),
    }
    if behaviour_logp is not None:
        diagnostics["sgo/is_ratio"] = float(np.mean(ratios))
        diagnostics["sgo/is_clip_frac"] = float(np.mean(clipped_flags))
    return ReferenceLossOutput(
        loss=math.fsum(per_sample) / n,
        sample_count=b,
        diagnostics=diagnostics,
        grad={"student_token_logp": grad},
    )


def _rows(x: Any, rows: Any) -> Any:
    return None if x is None else np.asarray(x)[rows]


def _counts(batch: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, Any, int, int]:
    is_tgo = np.asarray(batch.is_tgo, dtype=bool)
    tgo, sgo = np.nonzero(is_tgo)[0], np.nonzero(~is_tgo)[0]
    n_t = len(tgo) if num_tgo is None else num_tgo
    n_s = len(sgo) if num_sgo is None else num_sgo
    return tgo, sgo, n_t, n_s


def askd_loss(
    batch: Any, *, options: ASKDOptions | None = None, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """E14: λ_T·ℓ_T over TGOs + λ_S·ℓ_S over SGOs (+ λ_D·E15)."""
    o = _opts(options)
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    s = _arr(batch.student_token_logp)
    grad_tok = np.zeros_like(s)
    loss = 0.0
    diagnostics: dict[str, float] = {}
    grads: dict[str, F64] = {}
    if len(tgo):
        out = tgo_loss(
            student_token_logp=s[tgo],
            teacher_token_logp=_rows(batch.teacher_token_logp, tgo),
            mask=_rows(batch.mask, tgo),
            quality=_rows(batch.quality, tgo),
            options=o,
            num_samples=n_t,
        )
        loss += o.lambda_tgo * out.loss
        grad_tok[tgo] = o.lambda_tgo * out.grad["student_token_logp"]
        diagnostics.update(out.diagnostics)
    if len(sgo):
        out = sgo_loss(
            student_token_logp=s[sgo],
            teacher_token_logp=_rows(batch.teacher_token_logp, sgo),
            mask=_rows(batch.mask, sgo),
            quality=_rows(batch.quality, sgo),
            behaviour_logp=_rows(batch.behaviour_logp, sgo),
            options=o,
            num_samples=n_s,
        )
        loss += o.lambda_sgo * out.loss
        grad_tok[sgo] = o.lambda_sgo * out.grad["student_token_logp"]
        diagnostics.update(out.diagnostics)
    grads["student_token_logp"] = grad_tok
    if o.lambda_dense > 0:
        dense = dense_askd_loss(batch, options=o, num_tgo=num_tgo, num_sgo=num_sgo)
        loss += o.lambda_dense * dense.loss
        for key in ("student_logits", "student_logp"):
            grads[key] = o.lambda_dense * dense.grad[key]
        diagnostics.update(dense.diagnostics)
    diagnostics["askd/num_tgo"] = float(len(tgo))
    diagnostics["askd/num_sgo"] = float(len(sgo))
    return ReferenceLossOutput(
        loss=loss, sample_count=len(tgo) + len(sgo), diagnostics=diagnostics, grad=grads
    )


def _zero_dense_grads(batch: Any) -> dict[str, F64]:
    shape = _arr(batch.student_logp).shape
    return {"student_logits": np.zeros(shape), "student_logp": np.zeros(shape)}


_DIVERGENCES: dict[str, tuple[Callable[..., F64], Callable[..., F64]]] = {
    "skl": (skew_forward_kl, skew_forward_kl_grad),
    "srkl": (skew_reverse_kl, skew_reverse_kl_grad),
    "fkl": (forward_kl, forward_kl_grad),
    "rkl": (reverse_kl, reverse_kl_grad),
    "gjsd": (generalized_jsd, generalized_jsd_grad),
}


def _dense_term(
    batch: Any,
    rows: Any,
    divergence: str,
    params: Any,
    weights: Any,
    normalize: str,
    mixture_grad: str,
    grad_out: dict[str, F64],
) -> tuple[float, float]:
    """Σ_i weights_i · pool_t D_t over ``rows``, adding its gradients into ``grad_out``.

    ``grad_out["student_logits"]`` accumulates ∂/∂z, ``grad_out["student_logp"]`` ∂/∂ℓ.

    Returns (the weighted sum, the plain per-token mean of D over the rows' tokens).
    """
    value_fn, grad_fn = _DIVERGENCES[divergence]
    mask = np.asarray(batch.mask, dtype=bool)
    total, token_values = [], []
    for k, i in enumerate(rows):
        positions = np.nonzero(mask[i])[0]
        kwargs: dict[str, Any] = {
            "teacher_logp": _arr(batch.teacher_logp)[i, positions],
            "student_logp": _arr(batch.student_logp)[i, positions],
        }
        if divergence in ("skl", "srkl"):
            kwargs.update(alpha=float(params[k]), mixture_grad=mixture_grad)
        elif divergence == "gjsd":
            kwargs.update(beta=float(params[k]))
        values = value_fn(**kwargs)
        z = len(positions) if normalize == "mean" else 1
        total.append(float(weights[k]) * math.fsum(values.tolist()) / z)
        token_values.extend(values.tolist())
        for key, wrt in (("student_logits", "logits"), ("student_logp", "logp")):
            grad_out[key][i, positions] += float(weights[k]) / z * grad_fn(**kwargs, wrt=wrt)
    return math.fsum(total), math.fsum(token_values) / len(token_values)


def dense_askd_loss(
    batch: Any, *, options: ASKDOptions | None = None, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """E15: SKL_{α_T(r)} on TGO tokens + (1 − h(r))·SRKL_{α_S(r)} on SGO tokens."""
    o = _opts(options)
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    grad = _zero_dense_grads(batch)
    loss = 0.0
    diagnostics: dict[str, float] = {}
    q = _arr(batch.quality)
    if len(tgo):
        a = tgo_alpha(q[tgo], options=o)
        w = np.full(len(tgo), o.lambda_tgo / n_t)
        value, mean = _dense_term(batch, tgo, "skl", a, w, o.normalize, "full", grad)
        loss += value
        diagnostics["dense/tgo_skl"] = mean
        diagnostics["dense/tgo_alpha"] = float(np.mean(a))
    if len(sgo):
        a = sgo_alpha(q[sgo], options=o)
        h = quality_gate(q[sgo], options=o)
        w = o.lambda_sgo * (1 - h) / n_s
        value, mean = _dense_term(batch, sgo, "srkl", a, w, o.normalize, o.mixture_grad, grad)
        loss += value
        diagnostics["dense/sgo_srkl"] = mean
        diagnostics["dense/sgo_alpha"] = float(np.mean(a))
        diagnostics["dense/sgo_gate"] = float(np.mean(h))
    return ReferenceLossOutput(
        loss=loss, sample_count=len(tgo) + len(sgo), diagnostics=diagnostics, grad=grad
    )


def _dense_baseline(
    batch: Any,
    parts: list[tuple[str, Any, str, float, float, str]],
) -> ReferenceLossOutput:
    """Sum of dense terms: (diagnostic key, rows, divergence, param, count, mixture_grad)."""
    grad = _zero_dense_grads(batch)
    loss = 0.0
    diagnostics: dict[str, float] = {}
    for key, rows, divergence, param, count, mixture_grad in parts:
        if len(rows) == 0:
            continue
        params = np.full(len(rows), param)
        weights = np.full(len(rows), 1.0 / count)
        value, mean = _dense_term(batch, rows, divergence, params, weights, "mean", mixture_grad, grad)
        loss += value
        diagnostics[key] = mean
    return ReferenceLossOutput(
        loss=loss, sample_count=len(np.asarray(batch.is_tgo)), diagnostics=diagnostics, grad=grad
    )


def seqkd_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> ReferenceLossOutput:
    """Token-mean NLL on TGOs."""
    tgo, _, n_t, _ = _counts(batch, num_tgo, num_sgo)
    s, m = _arr(batch.student_token_logp), np.asarray(batch.mask, dtype=bool)
    grad = np.zeros_like(s)
    nll = []
    for i in tgo:
        z = int(m[i].sum())
        nll.append(-math.fsum(s[i, m[i]].tolist()) / z)
        grad[i, m[i]] = -1.0 / (z * n_t)
    return ReferenceLossOutput(
        loss=math.fsum(nll) / n_t,
        sample_count=len(s),
        diagnostics={"seqkd/nll": float(np.mean(nll))},
        grad={"student_token_logp": grad},
    )


def kd_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> ReferenceLossOutput:
    """FKL on TGO tokens."""
    tgo, _, n_t, _ = _counts(batch, num_tgo, num_sgo)
    return _dense_baseline(batch, [("kd/fkl", tgo, "fkl", 0.0, n_t, "full")])


def rkl_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> ReferenceLossOutput:
    """RKL on SGO tokens."""
    _, sgo, _, n_s = _counts(batch, num_tgo, num_sgo)
    return _dense_baseline(batch, [("rkl/rkl", sgo, "rkl", 0.0, n_s, "full")])


def gkd_loss(
    batch: Any, *, beta: float = 0.5, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """JSD_β on all tokens."""
    _, _, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    rows = np.arange(len(np.asarray(batch.is_tgo)))
    return _dense_baseline(batch, [("gkd/jsd", rows, "gjsd", beta, n_t + n_s, "full")])


def distillm_loss(
    batch: Any, *, alpha: float = 0.1, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """SRKL_α (full gradient) on all tokens."""
    _, _, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    rows = np.arange(len(np.asarray(batch.is_tgo)))
    return _dense_baseline(batch, [("distillm/srkl", rows, "srkl", alpha, n_t + n_s, "full")])


def distillm2_loss(
    batch: Any, *, alpha: float = 0.1, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """SKL_α on TGO tokens + SRKL_α (stopped mixture) on SGO tokens."""
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    return _dense_baseline(
        batch,
        [
            ("distillm2/skl", tgo, "skl", alpha, n_t, "full"),
            ("distillm2/srkl", sgo, "srkl", alpha, n_s, "stop"),
        ],
    )


def group_advantages(quality: ArrayLike, group: ArrayLike, eps: float = 1e-4) -> F64:
    """A_i = (r_i − mean_g r)/(std_g r + ε), population std, one group at a time."""
    r, g = _arr(quality), np.asarray(group)
    out = np.empty_like(r)
    for gid in np.unique(g):
        idx = np.nonzero(g == gid)[0]
        vals = r[idx].tolist()
        mean = math.fsum(vals) / len(vals)
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / len(vals))
        for i in idx:
            out[i] = (r[i] - mean) / (std + eps)
    return out


def advantage_kd_loss(
    batch: Any, *, eps_a: float = 1e-4, num_tgo: int | None = None, num_sgo: int | None = None
) -> ReferenceLossOutput:
    """FKL on TGO tokens − Σ_SGO A_j S̄_j / N_S."""
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    out = _dense_baseline(batch, [("advantage_kd/fkl", tgo, "fkl", 0.0, n_t, "full")])
    diagnostics = dict(out.diagnostics)
    loss = out.loss
    grads = dict(out.grad)
    if len(sgo):
        s, m = _arr(batch.student_token_logp), np.asarray(batch.mask, dtype=bool)
        adv = group_advantages(_arr(batch.quality)[sgo], np.asarray(batch.group)[sgo], eps_a)
        grad_tok = np.zeros_like(s)
        terms = []
        for k, i in enumerate(sgo):
            z = int(m[i].sum())
            terms.append(-adv[k] * math.fsum(s[i, m[i]].tolist()) / z)
            grad_tok[i, m[i]] = -adv[k] / (z * n_s)
        loss += math.fsum(terms) / n_s
        grads["student_token_logp"] = grad_tok
        diagnostics["advantage_kd/adv_mean"] = float(np.mean(adv))
        diagnostics["advantage_kd/adv_abs_max"] = float(np.max(np.abs(adv)))
    return ReferenceLossOutput(loss=loss, sample_count=out.sample_count, diagnostics=diagnostics, grad=grads)
