"""Exact enumeration for the defaults: mean mode (T1m) and the dense variant E15 (T9d).

Models with **varying lengths**: a tabular autoregressive model over V tokens and at most T
positions whose token 0 is EOS. A response stops at its first EOS (inclusive) or after T tokens;
every response is enumerated once (its canonical row pads with EOS after the stop and masks the
padding), so Σ_y q(y) = 1 over responses of lengths 1..T.

The estimators are askd_ref's own :func:`~askd_ref.tgo_loss`, :func:`~askd_ref.sgo_loss` and
:func:`~askd_ref.dense_askd_loss` with their defaults (``normalize="mean"``, soft gate,
quality-adaptive α), the qualities r_y drawn per response so that the gate is partly and fully
closed. The objectives they are compared with are written here from closed forms, independently
of askd_ref (own schedule, gate, u, c̃, φ; SKL/SRKL summed in probability space):

* J_T^mean(q) = Σ_y p(y)·(−log(α_y + (1 − α_y)e^{Δ̄(y)})) (TGO, T1m);
* D_c(q) = Σ_y p(y)·∫_0^{Δ̄(y)} c_y(s)·e^{|y|s} ds, by 48-point Gauss–Legendre (differentiable in
  the upper limit), the objective whose exact gradient E12/E13 are in mean mode for any per-sample
  coefficient c_y(Δ̄) (T1m: E_q[c(Δ̄)∇S̄] = Σ_y c(Δ̄_y)/|y|·∇q(y) = ∇D_c);
* UJ^mean(q) = Σ_y q(y)·φ_y(Δ̄(y)), φ(d; α) = log u + 1/u − 1 (the option
  ``sgo_length_correction="uj"``);
* J_S^mean(q) = Σ_y q(y)·log u(Δ̄(y)) (spec §11's reference objective; E12 is biased for it).
"""

import dataclasses
import functools
import math

import numpy as np
import torch
from torch import Tensor

import askd_ref
from checks.tabular import F64, Tabular, expected_gradient, flat_grad, make_tabular, random_logits

__all__ = [
    "MEAN_INSTANCES",
    "OPTION_VARIANTS",
    "MeanInstance",
    "dense_errors",
    "mean_instance",
    "measure_t1m",
    "measure_t9d",
    "offpolicy_mean_errors",
    "sgo_mean_errors",
    "tgo_mean_errors",
    "uj_variance",
]

#: (vocab, max length, seed, logit scale): lengths 1..3 with EOS = token 0.
MEAN_INSTANCES: tuple[tuple[int, int, int, float], ...] = ((3, 3, 0, 1.0), (4, 3, 1, 1.5), (2, 3, 2, 2.0))
_GL_X, _GL_W = (torch.tensor(a, dtype=F64) for a in np.polynomial.legendre.leggauss(48))


@dataclasses.dataclass(frozen=True)
class MeanInstance:
    """Teacher p, student q_θ (θ a leaf), enumerated responses of varying length, qualities."""

    tab: Tabular
    theta: Tensor
    teacher: Tensor
    rows: Tensor
    mask: Tensor
    quality: Tensor

    @property
    def lengths(self) -> Tensor:
        return self.mask.sum(-1).to(F64)

    def token_logp(self, logits: Tensor) -> Tensor:
        return self.tab.token_logp(logits)[self.rows]

    def full_logp(self, logits: Tensor) -> Tensor:
        return self.tab.full_logp(logits)[self.rows]

    def seq_logp(self, logits: Tensor) -> Tensor:
        return (self.token_logp(logits) * self.mask).sum(-1)

    @property
    def q_tok(self) -> Tensor:
        return self.token_logp(self.theta)

    @property
    def p_tok(self) -> Tensor:
        return self.token_logp(self.teacher)

    @property
    def p_lp(self) -> Tensor:
        return self.seq_logp(self.teacher)

    @property
    def q_lp(self) -> Tensor:
        return self.seq_logp(self.theta)

    def delta_bar(self) -> Tensor:
        """Δ̄(y) = (log q(y) − log p(y))/|y|, differentiable in θ."""
        return (self.q_lp - self.p_lp) / self.lengths


def mean_instance(vocab: int, length: int, seed: int, scale: float) -> MeanInstance:
    """Seeded teacher, student and qualities over the EOS-terminated responses."""
    tab = make_tabular(vocab, length)
    seqs = tab.sequences
    is_eos = seqs == 0
    first = torch.where(is_eos.any(-1), is_eos.double().argmax(-1), torch.full((seqs.shape[0],), length - 1))
    pos = torch.arange(length)[None, :]
    mask = pos <= first[:, None]
    canonical = ((pos <= first[:, None]) | is_eos).all(-1)  # EOS-padded after the stop
    rows = torch.nonzero(canonical).flatten()
    gen = torch.Generator().manual_seed(seed)
    teacher = random_logits(tab, gen, scale)
    theta = random_logits(tab, gen, scale).requires_grad_(True)
    n = rows.shape[0]
    # Qualities spread over [0, 1] with a quarter at exactly 1 (soft gate fully closed).
    quality = torch.rand(n, generator=gen, dtype=F64)
    quality[torch.randperm(n, generator=gen)[: n // 4]] = 1.0
    return MeanInstance(tab, theta, teacher, rows, mask[rows], quality)


# --------------------------------------------------------------------------- closed forms (independent)


def alpha_t(r: Tensor, o: askd_ref.ASKDOptions) -> Tensor:
    """α_T(r) of E10, written out: α_hi at r = 0 → α_lo at r = 1, linearly in α or in logit α."""
    return _interp(r, o.alpha_hi, o.alpha_lo, o.schedule)


def alpha_s(r: Tensor, o: askd_ref.ASKDOptions) -> Tensor:
    return _interp(r, o.alpha_lo, o.alpha_hi, o.schedule)


def _interp(r: Tensor, a0: float, a1: float, schedule: str) -> Tensor:
    if schedule == "linear":
        return a0 + (a1 - a0) * r
    lg0, lg1 = math.log(a0 / (1 - a0)), math.log(a1 / (1 - a1))
    return torch.sigmoid(lg0 + (lg1 - lg0) * r)


def gate(r: Tensor, o: askd_ref.ASKDOptions) -> Tensor:
    if o.gate == "none":
        return torch.zeros_like(r)
    if o.gate == "hard":
        return (r >= o.tau).to(F64)
    return ((r - o.tau_lo) / (o.tau_hi - o.tau_lo)).clamp(0, 1)


def log_u(d: Tensor, a: Tensor) -> Tensor:
    return -torch.log(a + (1 - a) * torch.exp(-d))


def c_tilde(d: Tensor, a: Tensor, mixture_grad: str = "full") -> Tensor:
    lu = log_u(d, a)
    return lu if mixture_grad == "stop" else lu - a * (torch.exp(lu) - 1)


def phi(d: Tensor, a: Tensor) -> Tensor:
    """φ(d; α) = log u + 1/u − 1 ≥ 0, with φ + φ' = c̃ (UJ's per-outcome integrand over p·e^d)."""
    return log_u(d, a) + (a + (1 - a) * torch.exp(-d)) - 1


def c_hat(d: Tensor, r: Tensor, o: askd_ref.ASKDOptions) -> Tensor:
    """ĉ of E9 by cases of sign Δ (sign c̃ = sign Δ), d and r of the same shape."""
    a_s, h = alpha_s(r, o), gate(r, o)
    a_pull = a_s if o.sgo_pullup == "adaptive" else torch.full_like(a_s, o.alpha_lo)
    return torch.where(d >= 0, (1 - h) * c_tilde(d, a_s, o.mixture_grad), c_tilde(d, a_pull, o.mixture_grad))


def phi_hat(d: Tensor, r: Tensor, o: askd_ref.ASKDOptions) -> Tensor:
    a_s, h = alpha_s(r, o), gate(r, o)
    a_pull = a_s if o.sgo_pullup == "adaptive" else torch.full_like(a_s, o.alpha_lo)
    return torch.where(d >= 0, (1 - h) * phi(d, a_s), phi(d, a_pull))


def j_t_mean(inst: MeanInstance, o: askd_ref.ASKDOptions) -> Tensor:
    a = alpha_t(inst.quality, o)
    return (inst.p_lp.exp() * -torch.log(a + (1 - a) * torch.exp(inst.delta_bar()))).sum()


def d_objective(inst: MeanInstance, o: askd_ref.ASKDOptions, baseline: float = 0.0) -> Tensor:
    """D_c = Σ_y p(y)∫_0^{Δ̄} (ĉ_y(s) + b)e^{|y|s} ds (Gauss–Legendre, differentiable in Δ̄)."""
    d = inst.delta_bar()
    s = d[:, None] * (_GL_X[None, :] + 1) / 2  # nodes on [0, Δ̄]
    r = inst.quality[:, None].expand_as(s)
    integrand = (c_hat(s, r, o) + baseline) * torch.exp(inst.lengths[:, None] * s)
    psi = d / 2 * (integrand * _GL_W[None, :]).sum(-1)
    return (inst.p_lp.exp() * psi).sum()


def uj_mean(inst: MeanInstance, o: askd_ref.ASKDOptions) -> Tensor:
    return (inst.q_lp.exp() * phi_hat(inst.delta_bar(), inst.quality, o)).sum()


def j_s_mean(inst: MeanInstance, o: askd_ref.ASKDOptions) -> Tensor:
    return (inst.q_lp.exp() * log_u(inst.delta_bar(), alpha_s(inst.quality, o))).sum()


# --------------------------------------------------------------------------- askd_ref estimators


def _max_abs(x: Tensor) -> float:
    return float(x.abs().max())


def tgo_estimate(inst: MeanInstance, o: askd_ref.ASKDOptions) -> Tensor:
    """E_{y∼p}[∇ tgo_loss(y)] with askd_ref's tgo_loss."""
    return expected_gradient(
        inst.theta,
        inst.q_tok,
        inst.p_lp.exp(),
        lambda x: (
            askd_ref.tgo_loss(
                student_token_logp=x,
                teacher_token_logp=inst.p_tok,
                mask=inst.mask,
                quality=inst.quality,
                options=o,
            ).loss
        ),
    )


def sgo_estimate(inst: MeanInstance, o: askd_ref.ASKDOptions, behaviour: Tensor | None = None) -> Tensor:
    """E[∇ sgo_loss(y)] with y ∼ q (``behaviour=None``) or y ∼ μ (behaviour logits given)."""
    if behaviour is None:
        weights, mu_lp = inst.q_lp.exp(), None
    else:
        mu_lp = inst.seq_logp(behaviour)
        weights = mu_lp.exp()
    return expected_gradient(
        inst.theta,
        inst.q_tok,
        weights,
        lambda x: (
            askd_ref.sgo_loss(
                student_token_logp=x,
                teacher_token_logp=inst.p_tok,
                mask=inst.mask,
                quality=inst.quality,
                behaviour_logp=mu_lp,
                options=o,
            ).loss
        ),
    )


def _weighted(inst: MeanInstance, weights: Tensor, coef: Tensor) -> Tensor:
    """Σ_y weights_y·coef_y·∇S̄(y) (coefficients and weights detached)."""
    return flat_grad((weights.detach() * coef.detach() * inst.q_lp / inst.lengths).sum(), inst.theta)


def tgo_mean_errors(inst: MeanInstance, o: askd_ref.ASKDOptions) -> dict[str, float]:
    """E11 in mean mode vs ∇J_T^mean with per-sample α_T(r_y)."""
    exact = flat_grad(j_t_mean(inst, o), inst.theta)
    return {"error": _max_abs(tgo_estimate(inst, o) - exact), "scale": _max_abs(exact)}


def sgo_mean_errors(inst: MeanInstance, o: askd_ref.ASKDOptions) -> dict[str, float]:
    """E12 (mean mode) against D_ĉ, J_S^mean and UJ^mean; the uj option against UJ^mean.

    Also the baseline law: adding a constant b to the coefficient adds b·∇(E_q[1/|y|]) to the
    expected gradient (not free); adding b·|y| adds nothing.
    """
    est = sgo_estimate(inst, o)
    g_d = flat_grad(d_objective(inst, o), inst.theta)
    g_js = flat_grad(j_s_mean(inst, o), inst.theta)
    q = inst.q_lp.exp()
    d = inst.delta_bar().detach()
    a = alpha_s(inst.quality, o)
    g_js_formula = _weighted(inst, q, inst.lengths * log_u(d, a) + 1 - a * torch.exp(log_u(d, a)))
    out = {
        "d_error": _max_abs(est - g_d),
        "js_bias": _max_abs(est - g_js),
        "js_formula_error": _max_abs(g_js_formula - g_js),
        "scale": _max_abs(g_d),
    }
    b = 0.7
    g_b = _weighted(inst, q, c_hat(d, inst.quality, o) + b)
    g_0 = _weighted(inst, q, c_hat(d, inst.quality, o))
    inv_len = flat_grad((q * 0 + inst.q_lp.exp() / inst.lengths).sum(), inst.theta)
    out["baseline_law_error"] = _max_abs(g_b - g_0 - b * inv_len)
    out["baseline_shift"] = _max_abs(g_b - g_0)
    out["baseline_d_error"] = _max_abs(g_b - flat_grad(d_objective(inst, o, baseline=b), inst.theta))
    out["length_baseline_shift"] = _max_abs(
        _weighted(inst, q, c_hat(d, inst.quality, o) + b * inst.lengths) - g_0
    )
    if o.mixture_grad == "full":
        g_uj = flat_grad(uj_mean(inst, o), inst.theta)
        out["uj_bias"] = _max_abs(est - g_uj)
        out["uj_option_error"] = _max_abs(sgo_estimate(inst, o.replace(sgo_length_correction="uj")) - g_uj)
    return out


def _behaviour(inst: MeanInstance, seed: int, noise: float) -> Tensor:
    gen = torch.Generator().manual_seed(1000 + seed)
    return inst.theta.detach() + noise * torch.randn(inst.theta.shape, generator=gen, dtype=F64)


def offpolicy_mean_errors(inst: MeanInstance, o: askd_ref.ASKDOptions, seed: int) -> dict[str, float]:
    """E13 in mean mode: exact ratio (all ρ inside the clip range) and the default clip.

    With y ∼ μ and ρ = q(y)/μ(y), the unclipped estimator's expectation is the on-policy one,
    ∇D_ĉ. With the clip, the gradient of sample y survives iff (ĉ > 0 and ρ ≥ 1 − ε) or
    (ĉ < 0 and ρ ≤ 1 + ε) (PPO's max of losses), so E[∇ℓ] = Σ_y μρĉ·1{survives}·∇S̄: written out
    here and compared; its bias against ∇D_ĉ is bounded by Σ_{y cut} q|ĉ|·‖∇S̄(y)‖∞.
    """
    g_d = flat_grad(d_objective(inst, o), inst.theta)
    near = _behaviour(inst, seed, 0.02)
    rho_near = (inst.q_lp - inst.seq_logp(near)).exp().detach()
    eps = o.is_clip_eps
    if not bool(((rho_near > 1 - eps) & (rho_near < 1 + eps)).all()):
        raise AssertionError(
            f"precondition: ratios inside the clip range, got {rho_near.min()}..{rho_near.max()}"
        )
    out = {"exact_ratio_error": _max_abs(sgo_estimate(inst, o, near) - g_d)}
    if o.mixture_grad == "full":
        g_uj = flat_grad(uj_mean(inst, o), inst.theta)
        out["exact_ratio_uj_error"] = _max_abs(
            sgo_estimate(inst, o.replace(sgo_length_correction="uj"), near) - g_uj
        )
    far = _behaviour(inst, seed, 1.5)
    mu = inst.seq_logp(far).exp().detach()
    rho = (inst.q_lp - inst.seq_logp(far)).exp().detach()
    c = c_hat(inst.delta_bar().detach(), inst.quality, o)
    survives = torch.where(c > 0, rho >= 1 - eps, rho <= 1 + eps)
    formula = _weighted(inst, mu * rho * survives, c)
    est = sgo_estimate(inst, o, far)
    bound = 0.0
    for i in torch.nonzero(~survives & (c != 0)).flatten().tolist():
        g_s = flat_grad(inst.q_lp[i] / inst.lengths[i], inst.theta)
        bound += float(inst.q_lp[i].exp().detach() * c[i].abs()) * _max_abs(g_s)
    out.update(
        {
            "clipped_formula_error": _max_abs(est - formula),
            "clipped_bias": _max_abs(est - g_d),
            "clipped_bound": bound,
            "clipped_fraction": float((~survives).double().mean()),
        }
    )
    return out


def uj_variance(inst: MeanInstance, o: askd_ref.ASKDOptions) -> dict[str, float]:
    """Per-sample gradient variance tr Cov_q[c_y∇S̄(y)] of the default ĉ and of the uj coefficient."""
    q = inst.q_lp.exp().detach()
    d = inst.delta_bar().detach()
    base = c_hat(d, inst.quality, o)
    uj = base + (inst.lengths - 1) * phi_hat(d, inst.quality, o)
    grads = torch.stack([flat_grad(inst.q_lp[i] / inst.lengths[i], inst.theta) for i in range(q.shape[0])])

    def variance(coef: Tensor) -> float:
        g = coef[:, None] * grads
        mean = (q[:, None] * g).sum(0)
        return float((q * (g**2).sum(-1)).sum() - (mean**2).sum())

    return {"default": variance(base), "uj": variance(uj)}


# --------------------------------------------------------------------------- E15 (T9d)


def _skl_tokens(p_full: Tensor, q_full: Tensor, a: Tensor, stop: bool = False) -> Tensor:
    """SKL_α(p_t‖q_t) per position, probability space: Σ_v p log(p/(αp + (1−α)q))."""
    p, q = p_full.exp(), q_full.exp()
    qm = q.detach() if stop else q
    m = a[..., None] * p + (1 - a[..., None]) * qm
    return (p * (torch.log(p) - torch.log(m))).sum(-1)


def _srkl_tokens(p_full: Tensor, q_full: Tensor, a: Tensor, stop: bool = False) -> Tensor:
    """SRKL_α(q_t‖p_t) = Σ_v q log(q/((1−α)p + αq)); ``stop`` holds the mixture's q fixed."""
    p, q = p_full.exp(), q_full.exp()
    qm = q.detach() if stop else q
    m = (1 - a[..., None]) * p + a[..., None] * qm
    return (q * (torch.log(q) - torch.log(m))).sum(-1)


def _dense_estimate(inst: MeanInstance, o: askd_ref.ASKDOptions, tgo: bool) -> tuple[Tensor, Tensor]:
    """(E[∇ dense_askd_loss], per-response loss values) with y ∼ p (TGO) or y ∼ q (SGO)."""
    n = inst.rows.shape[0]
    p_full = inst.full_logp(inst.teacher).detach()
    q_full = inst.full_logp(inst.theta)
    weights = (inst.p_lp if tgo else inst.q_lp).exp()

    def loss(x: Tensor) -> Tensor:
        batch = askd_ref.DistillBatch(
            mask=inst.mask,
            is_tgo=torch.full((x.shape[0],), tgo, dtype=torch.bool),
            quality=inst.quality,
            student_logp=x,
            teacher_logp=p_full,
        )
        return askd_ref.dense_askd_loss(batch, options=o).loss

    grad = expected_gradient(inst.theta, q_full, weights, loss)
    values = torch.stack(
        [
            askd_ref.dense_askd_loss(
                askd_ref.DistillBatch(
                    mask=inst.mask[i : i + 1],
                    is_tgo=torch.tensor([tgo]),
                    quality=inst.quality[i : i + 1],
                    student_logp=q_full[i : i + 1].detach(),
                    teacher_logp=p_full[i : i + 1],
                ),
                options=o,
            ).loss
            for i in range(n)
        ]
    )
    return grad, values


def dense_errors(inst: MeanInstance, o: askd_ref.ASKDOptions) -> dict[str, float]:
    """T9d: values, the TGO term's exact gradient, the SGO term's G_single and its bias, stop mode.

    Exact objectives (pool = mean over the response's tokens, or the sum under ``normalize="sum"``):
    J_D,T = Σ_y p(y)·pool_t SKL_{α_T(r_y)}(p_t‖q_t); J_D,S = Σ_y q(y)(1 − h(r_y))·pool_t SRKL_{α_S(r_y)}.
    G_single = Σ_y sg(q(y))·∇[(1 − h)·pool_t SRKL] (prefixes held);
    G_long = Σ_y q(y)(1 − h)·pool_t SRKL·∇log q(y).
    """
    p_full = inst.full_logp(inst.teacher).detach()
    q_full = inst.full_logp(inst.theta)
    norm = inst.lengths if o.normalize == "mean" else torch.ones_like(inst.lengths)
    a_t, a_s, h = alpha_t(inst.quality, o), alpha_s(inst.quality, o), gate(inst.quality, o)
    m = inst.mask.to(F64)
    per_t = (_skl_tokens(p_full, q_full, a_t[:, None].expand_as(m)) * m).sum(-1) / norm
    stop = o.mixture_grad == "stop"
    per_s = (1 - h) * (_srkl_tokens(p_full, q_full, a_s[:, None].expand_as(m), stop) * m).sum(-1) / norm
    per_s_full = (1 - h) * (_srkl_tokens(p_full, q_full, a_s[:, None].expand_as(m)) * m).sum(-1) / norm
    q = inst.q_lp.exp()
    g_t_exact = flat_grad((inst.p_lp.exp() * per_t).sum(), inst.theta)
    g_single = flat_grad((q.detach() * per_s).sum(), inst.theta)
    g_single_full = flat_grad((q.detach() * per_s_full).sum(), inst.theta)
    g_long = flat_grad((q.detach() * per_s_full.detach() * inst.q_lp).sum(), inst.theta)
    g_s_exact = flat_grad((q * per_s_full).sum(), inst.theta)
    est_t, val_t = _dense_estimate(inst, o, tgo=True)
    est_s, val_s = _dense_estimate(inst, o, tgo=False)
    return {
        "tgo_value_error": _max_abs(val_t - per_t.detach()),
        "sgo_value_error": _max_abs(val_s - per_s_full.detach()),
        "tgo_grad_error": _max_abs(est_t - g_t_exact),
        "sgo_single_error": _max_abs(est_s - g_single),
        "single_plus_long_error": _max_abs(g_single_full + g_long - g_s_exact),
        "sgo_bias": _max_abs(est_s - g_s_exact),
        "stop_vs_full": _max_abs(g_single - g_single_full),
        "scale": max(_max_abs(g_t_exact), _max_abs(g_s_exact)),
    }


@functools.cache
def measure_t1m() -> dict[str, float]:
    """Worst cases of T1m over :data:`MEAN_INSTANCES` and option variants (report numbers)."""
    worst: dict[str, float] = {}

    def upd(key: str, value: float, mode: str) -> None:
        prev = worst.get(key)
        worst[key] = value if prev is None else (max(prev, value) if mode == "max" else min(prev, value))

    for k, spec in enumerate(MEAN_INSTANCES):
        inst = mean_instance(*spec)
        for o in OPTION_VARIANTS:
            upd("tgo_error", tgo_mean_errors(inst, o)["error"], "max")
            e = sgo_mean_errors(inst, o)
            upd("d_error", e["d_error"], "max")
            upd("js_bias_min", e["js_bias"], "min")
            upd("baseline_shift_min", e["baseline_shift"], "min")
            upd("baseline_law_error", e["baseline_law_error"], "max")
            upd("length_baseline_shift", e["length_baseline_shift"], "max")
            if "uj_bias" in e:
                upd("uj_bias_min", e["uj_bias"], "min")
                upd("uj_option_error", e["uj_option_error"], "max")
            off = offpolicy_mean_errors(inst, o, k)
            upd("offpolicy_exact_error", off["exact_ratio_error"], "max")
            upd("offpolicy_clipped_formula_error", off["clipped_formula_error"], "max")
            upd("offpolicy_clipped_bias_max", off["clipped_bias"], "max")
            upd("offpolicy_bias_minus_bound_max", off["clipped_bias"] - off["clipped_bound"], "max")
        v = uj_variance(inst, askd_ref.ASKDOptions())
        upd("uj_variance_ratio_max", v["uj"] / v["default"], "max")
        upd("uj_variance_ratio_min", v["uj"] / v["default"], "min")
    return worst


#: Option variants of the mean-mode checks: defaults, logit schedule, hard gate, adaptive pull-up,
#: stop mode (the gate is on in all of them).
OPTION_VARIANTS: tuple[askd_ref.ASKDOptions, ...] = (
    askd_ref.ASKDOptions(),
    askd_ref.ASKDOptions(schedule="logit", alpha_lo=0.05, alpha_hi=0.7),
    askd_ref.ASKDOptions(gate="hard"),
    askd_ref.ASKDOptions(sgo_pullup="adaptive", tau_lo=0.3),
    askd_ref.ASKDOptions(mixture_grad="stop"),
)


@functools.cache
def measure_t9d() -> dict[str, float]:
    """Worst cases of T9d over :data:`MEAN_INSTANCES` × defaults / stop mode (report numbers)."""
    out: dict[str, float] = {"sgo_bias_min": math.inf, "stop_vs_full_min": math.inf}
    for spec in MEAN_INSTANCES:
        inst = mean_instance(*spec)
        for o in (askd_ref.ASKDOptions(), askd_ref.ASKDOptions(mixture_grad="stop")):
            e = dense_errors(inst, o)
            for key in ("tgo_value_error", "sgo_value_error", "tgo_grad_error", "sgo_single_error"):
                out[key] = max(out.get(key, 0.0), e[key])
            out["sgo_bias_min"] = min(out["sgo_bias_min"], e["sgo_bias"])
            if o.mixture_grad == "stop":
                out["stop_vs_full_min"] = min(out["stop_vs_full_min"], e["stop_vs_full"])
    return out
