"""A complete port of ASKD (as specified by askd-ref) to JAX in float64, gradients by ``jax.grad``.

Written from ``docs/porting.md``, ``docs/method.md`` and the spec alone; it imports nothing from
``askd_ref``, so it is a second, independent implementation of every name the conformance
runner checks. Check it with::

    python -m askd_ref.conformance --impl examples/jax_port.py --strict
    python -m askd_ref.conformance --impl examples/jax_port.py --strict --vectors vectors/askd-v1.json

Conventions (``docs/porting.md`` explains each): every log-space form avoids exp overflow
(|Δ| ≥ 710) and underflow (log-probs below −745); 0·log 0 = 0 on −inf entries, with the
"double where" so no NaN reaches a gradient; max(c, 0) and min(c, 0) of E9 are written with
``jnp.where`` on the sign of Δ, so the derivative at the kink Δ = 0 is the right derivative
(``jnp.maximum`` would split it in halves); losses pool each sample over its tokens, sum over
samples and divide by the (global) sample count; diagnostics are computed without gradient.
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402  (after enabling float64)
import numpy as np  # noqa: E402

sg = jax.lax.stop_gradient
NEG_INF = -jnp.inf


# ------------------------------------------------------------------------------------------
# §9 options and the batch
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ASKDOptions:
    """The §9 open choices with askd-ref's defaults."""

    normalize: str = "mean"
    mixture_grad: str = "full"
    gate: str = "soft"
    tau_lo: float = 0.5
    tau_hi: float = 1.0
    tau: float = 0.75
    sgo_pullup: str = "fixed"
    schedule: str = "linear"
    alpha_lo: float = 0.1
    alpha_hi: float = 0.9
    lambda_tgo: float = 1.0
    lambda_sgo: float = 1.0
    lambda_dense: float = 0.0
    is_clip_eps: float = 0.2
    sgo_length_correction: str = "none"
    """Only ``"none"`` is ported; ``"uj"`` (mean-mode UJ correction) raises NotImplementedError."""


@dataclasses.dataclass(frozen=True)
class DistillBatch:
    """Rows of teacher- (``is_tgo``) and student-generated samples, padded to one length."""

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
class LossResult:
    loss: float
    sample_count: int
    diagnostics: dict[str, float]


def _opts(options: Any) -> Any:
    return ASKDOptions() if options is None else options


def _f(x: Any) -> jnp.ndarray:
    return jnp.asarray(x, dtype=jnp.float64)


# ------------------------------------------------------------------------------------------
# E1–E4: divergences over the last axis
# ------------------------------------------------------------------------------------------


def _logaddexp(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """log(e^a + e^b) with −inf allowed in either argument (both −inf gives −inf)."""
    m = sg(jnp.maximum(a, b))
    m = jnp.where(jnp.isfinite(m), m, 0.0)
    return m + jnp.log(jnp.exp(a - m) + jnp.exp(b - m))


def _kl_to(x: jnp.ndarray, log_m: jnp.ndarray) -> jnp.ndarray:
    """Σ_v e^{x_v}(x_v − log m_v) with 0·log 0 = 0 where x_v = −inf (inputs already made safe)."""
    dead = jnp.isneginf(x)
    xs = jnp.where(dead, 0.0, x)
    ls = jnp.where(dead, 0.0, log_m)
    return jnp.sum(jnp.where(dead, 0.0, jnp.exp(xs) * (xs - ls)), axis=-1)


def _skew_kl(x: Any, y: Any, weight_x: Any, y_in_mixture: Callable[[Any], Any]) -> jnp.ndarray:
    """KL(x ‖ a·x + (1−a)·y) per position, a = ``weight_x`` (broadcast over positions)."""
    x, y = _f(x), _f(y)
    a = _f(weight_x)[..., None]
    dead = jnp.isneginf(x)  # these entries contribute 0: give the mixture safe inputs there
    xm = jnp.where(dead, 0.0, x)
    ym = jnp.where(dead, 0.0, y_in_mixture(y))
    log_m = _logaddexp(jnp.log(a) + xm, jnp.log1p(-a) + ym)
    return _kl_to(x, log_m)


def _identity(v: Any) -> Any:
    return v


def forward_kl(*, teacher_logp: Any, student_logp: Any) -> jnp.ndarray:
    """E1: KL(p‖q)."""
    return _skew_kl(teacher_logp, student_logp, 0.0, _identity)


def reverse_kl(*, teacher_logp: Any, student_logp: Any) -> jnp.ndarray:
    """E1: KL(q‖p)."""
    return _skew_kl(student_logp, teacher_logp, 0.0, _identity)


def skew_forward_kl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
    """E2: KL(p ‖ αp + (1−α)q); ``"stop"`` detaches q inside the mixture (zero gradient)."""
    inner = sg if mixture_grad == "stop" else _identity
    return _skew_kl(teacher_logp, student_logp, alpha, inner)


def skew_reverse_kl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
    """E3: KL(q ‖ (1−α)p + αq); ``"stop"`` detaches only the q inside the mixture."""
    q, p = _f(student_logp), _f(teacher_logp)
    a = _f(alpha)[..., None]
    dead = jnp.isneginf(q)
    qm = jnp.where(dead, 0.0, q if mixture_grad == "full" else sg(q))
    pm = jnp.where(dead, 0.0, p)
    log_m = _logaddexp(jnp.log1p(-a) + pm, jnp.log(a) + qm)
    return _kl_to(q, log_m)


def generalized_jsd(*, teacher_logp: Any, student_logp: Any, beta: Any) -> jnp.ndarray:
    """E4: β·KL(p‖M) + (1−β)·KL(q‖M), M = βp + (1−β)q; exactly 0 at β ∈ {0, 1}."""
    p, q, b = _f(teacher_logp), _f(student_logp), _f(beta)
    b = jnp.broadcast_to(b, p.shape[:-1])
    on_p, on_q = (b > 0)[..., None], (b < 1)[..., None]
    # a zero-weight term is dropped; its inputs are swapped for the other model's (KL = 0)
    p1 = jnp.where(on_p, p, sg(q))
    q2 = jnp.where(on_q, q, p)
    t1 = _skew_kl(p1, q, b, _identity)
    t2 = _skew_kl(q2, p, 1 - b, _identity)
    return jnp.where(b > 0, b * t1, 0.0) + jnp.where(b < 1, (1 - b) * t2, 0.0)


# ------------------------------------------------------------------------------------------
# E5–E10: coefficients, gates, schedules
# ------------------------------------------------------------------------------------------


@jax.custom_jvp
def _sigmoid(x: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.sigmoid(x)


@_sigmoid.defjvp
def _sigmoid_jvp(primals: Sequence[Any], tangents: Sequence[Any]) -> tuple[Any, Any]:
    (x,), (t,) = primals, tangents
    # σ'(x) = σ(x)σ(−x): 1 − σ(x) would lose every digit where σ(x) ≈ 1
    return _sigmoid(x), jax.nn.sigmoid(x) * jax.nn.sigmoid(-x) * t


def tgo_coefficient(delta: Any, alpha: Any) -> jnp.ndarray:
    """E5: w = σ(Δ − logit α)."""
    a = _f(alpha)
    return _sigmoid(_f(delta) - (jnp.log(a) - jnp.log1p(-a)))


def _log_u(d: jnp.ndarray, a: jnp.ndarray) -> jnp.ndarray:
    """log u = −log(α + (1−α)e^{−Δ}) = −logaddexp(log α, log1p(−α) − Δ)."""
    return -_logaddexp(jnp.log(a) + jnp.zeros_like(d), jnp.log1p(-a) - d)


def _c_tilde(d: jnp.ndarray, a: jnp.ndarray, mixture_grad: str) -> jnp.ndarray:
    log_u = _log_u(d, a)
    if mixture_grad == "stop":
        return log_u  # E7
    pos = a > 0  # α = 0: α(u − 1) = 0 while u = e^Δ may overflow
    lu = jnp.where(pos, log_u, 0.0)
    return log_u - jnp.where(pos, a * jnp.expm1(lu), 0.0)  # E6: log u − α(u − 1)


def sgo_coefficient(delta: Any, alpha: Any, *, mixture_grad: str = "full") -> jnp.ndarray:
    """E6 c̃ = log u − α(u − 1) (``"full"``), E7 c_det = log u (``"stop"``)."""
    d, a = jnp.broadcast_arrays(_f(delta), _f(alpha))
    return _c_tilde(d, a, mixture_grad)


def soft_gate(quality: Any, tau_lo: float = 0.5, tau_hi: float = 1.0) -> jnp.ndarray:
    """E8: clip((r − τ_lo)/(τ_hi − τ_lo), 0, 1)."""
    return jnp.clip((_f(quality) - tau_lo) / (tau_hi - tau_lo), 0.0, 1.0)


def hard_gate(quality: Any, tau: float) -> jnp.ndarray:
    """E8: 1{r ≥ τ}."""
    return (_f(quality) >= tau).astype(jnp.float64)


def quality_gate(quality: Any, *, options: Any = None) -> jnp.ndarray:
    """E8 by ``options.gate``: soft, hard or none (h ≡ 0)."""
    o = _opts(options)
    if o.gate == "soft":
        return soft_gate(quality, o.tau_lo, o.tau_hi)
    if o.gate == "hard":
        return hard_gate(quality, o.tau)
    return jnp.zeros_like(_f(quality))


def _interpolate(r: jnp.ndarray, start: float, end: float, schedule: str) -> jnp.ndarray:
    if schedule == "linear":
        return start + (end - start) * r
    lo, hi = np.log(start / (1 - start)), np.log(end / (1 - end))
    return jax.nn.sigmoid(lo + (hi - lo) * r)


def tgo_alpha(quality: Any, *, options: Any = None) -> jnp.ndarray:
    """E10: α_T(r) from α_hi at r = 0 down to α_lo at r = 1."""
    o = _opts(options)
    return _interpolate(_f(quality), o.alpha_hi, o.alpha_lo, o.schedule)


def sgo_alpha(quality: Any, *, options: Any = None) -> jnp.ndarray:
    """E10: α_S(r) from α_lo at r = 0 up to α_hi at r = 1."""
    o = _opts(options)
    return _interpolate(_f(quality), o.alpha_lo, o.alpha_hi, o.schedule)


def clipped_sgo_coefficient(delta: Any, quality: Any, *, options: Any = None) -> jnp.ndarray:
    """E9: min(c̃(Δ; α_lo), 0) + (1 − h)·max(c̃(Δ; α_S), 0), or the adaptive pull-up variant."""
    o = _opts(options)
    d, r = jnp.broadcast_arrays(_f(delta), _f(quality))
    a_s, h = sgo_alpha(r, options=o), quality_gate(r, options=o)
    c_s = _c_tilde(d, a_s, o.mixture_grad)
    push_down = jnp.where(d >= 0, c_s, 0.0)  # sign(c̃) = sign(Δ); Δ = 0 → right derivative
    if o.sgo_pullup == "adaptive":
        return c_s - h * push_down
    c_lo = _c_tilde(d, jnp.full_like(d, o.alpha_lo), o.mixture_grad)
    return jnp.where(d < 0, c_lo, 0.0) + (1 - h) * push_down


# ------------------------------------------------------------------------------------------
# §1 and E11–E13: sequence losses
# ------------------------------------------------------------------------------------------


def _pool(x: jnp.ndarray, mask: Any, normalize: str) -> jnp.ndarray:
    m = jnp.asarray(mask, dtype=bool)
    total = jnp.sum(jnp.where(m, jnp.where(m, x, 0.0), 0.0), axis=-1)
    return total if normalize == "sum" else total / jnp.sum(m, axis=-1)


def sequence_log_ratio(student_token_logp: Any, teacher_token_logp: Any, mask: Any, *, normalize: str) -> Any:
    """§1: Δ = Σ_t (ℓq_t − ℓp_t) on the mask, or its mean over the row's tokens."""
    m = jnp.asarray(mask, dtype=bool)
    s = jnp.where(m, _f(student_token_logp), 0.0)
    t = jnp.where(m, _f(teacher_token_logp), 0.0)
    return _pool(s - t, m, normalize)


def _mean(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.mean(sg(jnp.asarray(x, dtype=jnp.float64)))


def _quality(quality: Any, rows: int) -> jnp.ndarray:
    return jnp.broadcast_to(_f(quality), (rows,))


def _tgo(s: Any, t: Any, mask: Any, quality: Any, o: Any, n: int | None) -> tuple[Any, dict[str, Any]]:
    s = _f(s)
    r = _quality(quality, s.shape[0])
    n = s.shape[0] if n is None else n
    delta = sg(sequence_log_ratio(s, t, mask, normalize=o.normalize))
    alpha = tgo_alpha(r, options=o)
    w = tgo_coefficient(delta, alpha)
    loss = -jnp.sum(w * _pool(jnp.where(jnp.asarray(mask, bool), s, 0.0), mask, o.normalize)) / n
    skl = -_logaddexp(jnp.log(alpha), jnp.log1p(-alpha) + delta)
    diags = {
        "tgo/alpha": _mean(alpha),
        "tgo/w": _mean(w),
        "tgo/delta": _mean(delta),
        "tgo/skl_estimate": _mean(skl),
    }
    return loss, diags


def _sgo(
    s: Any, t: Any, mask: Any, quality: Any, mu: Any, o: Any, n: int | None
) -> tuple[Any, dict[str, Any]]:
    s = _f(s)
    m = jnp.asarray(mask, dtype=bool)
    r = _quality(quality, s.shape[0])
    n = s.shape[0] if n is None else n
    delta = sg(sequence_log_ratio(s, t, m, normalize=o.normalize))
    c_hat = sg(clipped_sgo_coefficient(delta, r, options=o))
    alpha, h = sgo_alpha(r, options=o), quality_gate(r, options=o)
    c_tilde = _c_tilde(delta, alpha, o.mixture_grad)
    diags = {
        "sgo/alpha": _mean(alpha),
        "sgo/c_hat": _mean(c_hat),
        "sgo/c_tilde": _mean(c_tilde),
        "sgo/gate": _mean(h),
        "sgo/gate_reduced_frac": _mean((h > 0) & (c_tilde > 0)),
        "sgo/delta": _mean(delta),
        "sgo/srkl_estimate": _mean(_log_u(delta, alpha)),
    }
    s_m = jnp.where(m, s, 0.0)
    if mu is None:
        per_sample = c_hat * _pool(s_m, m, o.normalize)  # E12
    else:  # E13: sequence-level ratio, PPO max, ĉ detached
        rho = jnp.exp(jnp.sum(s_m, axis=-1) - _f(mu))
        unclipped = rho * c_hat
        clipped = jnp.clip(rho, 1 - o.is_clip_eps, 1 + o.is_clip_eps) * c_hat
        per_sample = jnp.where(clipped > unclipped, clipped, unclipped)
        if o.normalize == "mean":
            per_sample = per_sample / jnp.sum(m, axis=-1)
        diags["sgo/is_ratio"] = _mean(rho)
        diags["sgo/is_clip_frac"] = _mean(clipped > unclipped)
    return jnp.sum(per_sample) / n, diags


def _result(loss: Any, count: int, diags: Mapping[str, Any]) -> LossResult:
    return LossResult(float(loss), int(count), {k: float(v) for k, v in diags.items()})


def tgo_loss(
    *, student_token_logp: Any, teacher_token_logp: Any, mask: Any, quality: Any,
    options: Any = None, num_samples: int | None = None,
) -> LossResult:  # fmt: skip
    """E11: (1/N) Σ −sg(w(Δ; α_T(r)))·S_θ(y)."""
    loss, d = _tgo(student_token_logp, teacher_token_logp, mask, quality, _opts(options), num_samples)
    return _result(loss, np.shape(student_token_logp)[0], d)


def sgo_loss(
    *, student_token_logp: Any, teacher_token_logp: Any, mask: Any, quality: Any,
    behaviour_logp: Any = None, options: Any = None, num_samples: int | None = None,
) -> LossResult:  # fmt: skip
    """E12 (on-policy) / E13 (off-policy): (1/N) Σ sg(ĉ)·S_θ(y), or the PPO-clipped ratio form."""
    if _opts(options).sgo_length_correction != "none":
        raise NotImplementedError("sgo_length_correction='uj' is not ported")
    loss, d = _sgo(
        student_token_logp, teacher_token_logp, mask, quality, behaviour_logp, _opts(options), num_samples
    )
    return _result(loss, np.shape(student_token_logp)[0], d)


# ------------------------------------------------------------------------------------------
# E14, E15 and the §6 baselines on a batch
# ------------------------------------------------------------------------------------------


def _rows(batch: Any, rows: np.ndarray) -> DistillBatch:
    idx = np.nonzero(rows)[0]
    fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(DistillBatch)}
    return DistillBatch(**{k: (None if v is None else v[idx]) for k, v in fields.items()})


def _counts(batch: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    tgo = np.asarray(batch.is_tgo, dtype=bool)
    n_t = int(tgo.sum()) if num_tgo is None else num_tgo
    n_s = int((~tgo).sum()) if num_sgo is None else num_sgo
    return tgo, ~tgo, n_t, n_s


def _askd(batch: Any, o: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    loss, diags = jnp.zeros(()), {}
    if tgo.any():
        b = _rows(batch, tgo)
        part, d = _tgo(b.student_token_logp, b.teacher_token_logp, b.mask, b.quality, o, n_t)
        loss, diags = loss + o.lambda_tgo * part, {**diags, **d}
    if sgo.any():
        b = _rows(batch, sgo)
        part, d = _sgo(
            b.student_token_logp, b.teacher_token_logp, b.mask, b.quality, b.behaviour_logp, o, n_s
        )
        loss, diags = loss + o.lambda_sgo * part, {**diags, **d}
    if o.lambda_dense > 0:
        part, d = _dense(batch, o, num_tgo, num_sgo)
        loss, diags = loss + o.lambda_dense * part, {**diags, **d}
    diags["askd/num_tgo"] = jnp.asarray(float(tgo.sum()))  # local counts, always
    diags["askd/num_sgo"] = jnp.asarray(float(sgo.sum()))
    return loss, diags


def askd_loss(
    batch: Any, *, options: Any = None, num_tgo: int | None = None, num_sgo: int | None = None
) -> Any:
    """E14: λ_T·(Σ_TGO ℓ_T)/N_T + λ_S·(Σ_SGO ℓ_S)/N_S (+ λ_D·E15)."""
    loss, d = _askd(batch, _opts(options), num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def _token_divergence(batch: Any, rows: np.ndarray, kind: str, param: Any, mixture_grad: str = "full") -> Any:
    """(per-sample sums over masked tokens, token counts) of a full-vocabulary divergence."""
    b = _rows(batch, rows)
    m = jnp.asarray(b.mask, dtype=bool)[..., None]
    t = jnp.where(m, _f(b.teacher_logp), 0.0)  # masked-out positions never enter
    s = jnp.where(m, _f(b.student_logp), 0.0)
    a = jnp.broadcast_to(_f(param)[:, None] if np.ndim(param) else _f(param), m.shape[:2])
    if kind == "skl":
        per_token = skew_forward_kl(teacher_logp=t, student_logp=s, alpha=a)
    elif kind == "srkl":
        per_token = skew_reverse_kl(teacher_logp=t, student_logp=s, alpha=a, mixture_grad=mixture_grad)
    elif kind == "fkl":
        per_token = forward_kl(teacher_logp=t, student_logp=s)
    elif kind == "rkl":
        per_token = reverse_kl(teacher_logp=t, student_logp=s)
    else:
        per_token = generalized_jsd(teacher_logp=t, student_logp=s, beta=a)
    per_token = jnp.where(m[..., 0], per_token, 0.0)
    return jnp.sum(per_token, axis=-1), jnp.sum(m[..., 0], axis=-1).astype(jnp.float64)


def _dense(batch: Any, o: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    r = _f(batch.quality)
    loss, diags = jnp.zeros(()), {}
    if tgo.any():
        alpha = tgo_alpha(r[np.nonzero(tgo)[0]], options=o)
        sums, lengths = _token_divergence(batch, tgo, "skl", alpha)
        per_sample = sums if o.normalize == "sum" else sums / lengths
        loss = loss + o.lambda_tgo * jnp.sum(per_sample) / n_t
        diags["dense/tgo_skl"] = jnp.sum(sg(sums)) / jnp.sum(lengths)  # token-pooled
        diags["dense/tgo_alpha"] = _mean(alpha)
    if sgo.any():
        rs = r[np.nonzero(sgo)[0]]
        alpha, h = sgo_alpha(rs, options=o), quality_gate(rs, options=o)
        sums, lengths = _token_divergence(batch, sgo, "srkl", alpha, o.mixture_grad)
        per_sample = (1 - h) * (sums if o.normalize == "sum" else sums / lengths)
        loss = loss + o.lambda_sgo * jnp.sum(per_sample) / n_s
        diags["dense/sgo_srkl"] = jnp.sum(sg(sums)) / jnp.sum(lengths)
        diags["dense/sgo_alpha"] = _mean(alpha)
        diags["dense/sgo_gate"] = _mean(h)
    return loss, diags


def dense_askd_loss(
    batch: Any, *, options: Any = None, num_tgo: int | None = None, num_sgo: int | None = None
) -> LossResult:
    """E15: token-mean SKL_{α_T(r)} on TGOs + (1 − h(r))·token-mean SRKL_{α_S(r)} on SGOs."""
    loss, d = _dense(batch, _opts(options), num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def _dense_mean(batch: Any, rows: np.ndarray, kind: str, param: float, count: int, mg: str = "full") -> Any:
    sums, lengths = _token_divergence(batch, rows, kind, param, mg)
    return jnp.sum(sums / lengths) / count, jnp.sum(sg(sums)) / jnp.sum(lengths)


def _seqkd(batch: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    tgo, _, n_t, _ = _counts(batch, num_tgo, num_sgo)
    b = _rows(batch, tgo)
    nll = -_pool(jnp.where(jnp.asarray(b.mask, bool), _f(b.student_token_logp), 0.0), b.mask, "mean")
    return jnp.sum(nll) / n_t, {"seqkd/nll": _mean(nll)}


def _kd(batch: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    tgo, _, n_t, _ = _counts(batch, num_tgo, num_sgo)
    loss, value = _dense_mean(batch, tgo, "fkl", 0.0, n_t)
    return loss, {"kd/fkl": value}


def _rkl(batch: Any, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    _, sgo, _, n_s = _counts(batch, num_tgo, num_sgo)
    loss, value = _dense_mean(batch, sgo, "rkl", 0.0, n_s)
    return loss, {"rkl/rkl": value}


def _gkd(batch: Any, beta: float, num_tgo: int | None, num_sgo: int | None) -> tuple[Any, dict[str, Any]]:
    tgo, _, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    loss, value = _dense_mean(batch, np.ones_like(tgo), "gjsd", beta, n_t + n_s)
    return loss, {"gkd/jsd": value}


def _distillm(
    batch: Any, alpha: float, num_tgo: int | None, num_sgo: int | None
) -> tuple[Any, dict[str, Any]]:
    tgo, _, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    loss, value = _dense_mean(batch, np.ones_like(tgo), "srkl", alpha, n_t + n_s, "full")
    return loss, {"distillm/srkl": value}


def _distillm2(
    batch: Any, alpha: float, num_tgo: int | None, num_sgo: int | None
) -> tuple[Any, dict[str, Any]]:
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    loss, diags = jnp.zeros(()), {}
    if tgo.any():
        part, diags["distillm2/skl"] = _dense_mean(batch, tgo, "skl", alpha, n_t)
        loss = loss + part
    if sgo.any():
        part, diags["distillm2/srkl"] = _dense_mean(batch, sgo, "srkl", alpha, n_s, "stop")
        loss = loss + part
    return loss, diags


def group_advantages(quality: Any, group: Any, eps: float = 1e-4) -> jnp.ndarray:
    """A = (r − mean_g r)/(std_g r + ε_A), population std over each group's rows."""
    r, g = _f(quality), np.asarray(group)
    out = jnp.zeros_like(r)
    for gid in np.unique(g):
        idx = np.nonzero(g == gid)[0]
        rg = r[idx]
        out = out.at[idx].set((rg - jnp.mean(rg)) / (jnp.sqrt(jnp.mean((rg - jnp.mean(rg)) ** 2)) + eps))
    return out


def _advantage_kd(
    batch: Any, eps_a: float, num_tgo: int | None, num_sgo: int | None
) -> tuple[Any, dict[str, Any]]:
    tgo, sgo, n_t, n_s = _counts(batch, num_tgo, num_sgo)
    loss, diags = jnp.zeros(()), {}
    if tgo.any():
        part, diags["advantage_kd/fkl"] = _dense_mean(batch, tgo, "fkl", 0.0, n_t)
        loss = loss + part
    if sgo.any():
        b = _rows(batch, sgo)  # advantages over the SGOs of each prompt only
        adv = sg(group_advantages(b.quality, b.group, eps_a))
        score = _pool(jnp.where(jnp.asarray(b.mask, bool), _f(b.student_token_logp), 0.0), b.mask, "mean")
        loss = loss - jnp.sum(adv * score) / n_s
        diags["advantage_kd/adv_mean"] = _mean(adv)
        diags["advantage_kd/adv_abs_max"] = jnp.max(jnp.abs(adv))
    return loss, diags


def seqkd_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> LossResult:
    loss, d = _seqkd(batch, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def kd_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> LossResult:
    loss, d = _kd(batch, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def rkl_loss(batch: Any, *, num_tgo: int | None = None, num_sgo: int | None = None) -> LossResult:
    loss, d = _rkl(batch, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def gkd_loss(batch: Any, *, beta: float = 0.5, num_tgo: int | None = None, num_sgo: int | None = None) -> Any:
    loss, d = _gkd(batch, beta, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def distillm_loss(
    batch: Any, *, alpha: float = 0.1, num_tgo: int | None = None, num_sgo: int | None = None
) -> Any:
    loss, d = _distillm(batch, alpha, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def distillm2_loss(
    batch: Any, *, alpha: float = 0.1, num_tgo: int | None = None, num_sgo: int | None = None
) -> Any:
    loss, d = _distillm2(batch, alpha, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


def advantage_kd_loss(
    batch: Any, *, eps_a: float = 1e-4, num_tgo: int | None = None, num_sgo: int | None = None
) -> LossResult:
    loss, d = _advantage_kd(batch, eps_a, num_tgo, num_sgo)
    return _result(loss, len(batch.is_tgo), d)


# ------------------------------------------------------------------------------------------
# Gradients: the runner's value_and_grad hook, by jax.grad
# ------------------------------------------------------------------------------------------


def _tgo_core(*, student_token_logp, teacher_token_logp, mask, quality, options=None, num_samples=None):
    return _tgo(student_token_logp, teacher_token_logp, mask, quality, _opts(options), num_samples)[0]


def _sgo_core(
    *,
    student_token_logp,
    teacher_token_logp,
    mask,
    quality,
    behaviour_logp=None,
    options=None,
    num_samples=None,
):
    o = _opts(options)
    return _sgo(student_token_logp, teacher_token_logp, mask, quality, behaviour_logp, o, num_samples)[0]


def _batch_core(fn: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    def core(batch, *, options=None, num_tgo=None, num_sgo=None, **params):
        extra = {**fixed, **params}
        if options is not None or fn in (_askd, _dense):
            return fn(batch, _opts(options), num_tgo, num_sgo)[0]
        return fn(batch, *extra.values(), num_tgo, num_sgo)[0]

    return core


#: The differentiable core of each loss: the same arguments, the JAX scalar loss out.
_CORE: dict[str, Callable[..., Any]] = {
    "tgo_loss": _tgo_core,
    "sgo_loss": _sgo_core,
    "askd_loss": _batch_core(_askd),
    "dense_askd_loss": _batch_core(_dense),
    "seqkd_loss": _batch_core(_seqkd),
    "kd_loss": _batch_core(_kd),
    "rkl_loss": _batch_core(_rkl),
    "gkd_loss": _batch_core(_gkd, beta=0.5),
    "distillm_loss": _batch_core(_distillm, alpha=0.1),
    "distillm2_loss": _batch_core(_distillm2, alpha=0.1),
    "advantage_kd_loss": _batch_core(_advantage_kd, eps_a=1e-4),
}


def value_and_grad(name: str, args: Sequence[Any], kwargs: Mapping[str, Any], wrt: Sequence[str]) -> Any:
    """(value, {x: ∂(Σ output)/∂x}) for x in ``wrt``: a parameter, a batch field, or
    ``"student_logits"`` (z with student_logp = log_softmax(z), taken at z = student_logp)."""
    public = globals()[name]
    core = _CORE.get(name, public)
    bound = inspect.signature(public).bind(*args, **kwargs)
    batch = bound.arguments.get("batch")
    slots: list[tuple[str, str]] = []  # (where, field) per wrt name
    for key in wrt:
        field = "student_logp" if key == "student_logits" else key
        if bound.arguments.get(field) is not None:
            slots.append(("arg", field))
        elif batch is not None and getattr(batch, field, None) is not None:
            slots.append(("batch", field))
        else:
            raise ValueError(f"{name} has no input {field!r}")

    def total(*xs: Any) -> Any:
        arguments = dict(bound.arguments)
        changes: dict[str, Any] = {}
        for (where, field), key, x in zip(slots, wrt, xs, strict=True):
            value = jax.nn.log_softmax(x, axis=-1) if key == "student_logits" else x
            if where == "arg":
                arguments[field] = value
            else:
                changes[field] = value
        if changes:
            arguments["batch"] = dataclasses.replace(batch, **changes)
        return jnp.sum(core(**arguments))

    start = [
        _f(bound.arguments[field] if where == "arg" else getattr(batch, field)) for where, field in slots
    ]
    grads = jax.grad(total, argnums=tuple(range(len(start))))(*start)
    return public(*args, **kwargs), {key: np.asarray(g) for key, g in zip(wrt, grads, strict=True)}
