"""Exact-enumeration measurements for T1, T2 and T9 (tabular autoregressive models, float64).

Every "exact gradient" below is ``torch.autograd`` of an exact objective summed over all
sequences; every "estimator gradient" is the estimator applied to every sequence, weighted by
its exact sampling probability (:func:`checks.tabular.expected_gradient`). The ASKD estimators
are askd_ref's own :func:`~askd_ref.tgo_loss` / :func:`~askd_ref.sgo_loss` with
``normalize="sum"``; the baselines are askd_ref's :func:`~askd_ref.rkl_loss` and
:func:`~askd_ref.distillm2_loss`; the k1/k2/k3 estimators are written out here.

Thresholds: an unbiased estimator must match its target to :data:`EXACT_ATOL` (1e-8, max abs
over all logits); a biased one must miss the target by at least :data:`BIAS_MARGIN` (1e-3,
10^5 × the exactness bar) on the fixed instances of :data:`NEGATIVE_INSTANCES`.
"""

import dataclasses
import functools
import math

import torch
from torch import Tensor

import askd_ref
from checks.tabular import F64, Tabular, expected_gradient, flat_grad, make_tabular, random_logits

__all__ = [
    "BIAS_MARGIN",
    "EXACT_ATOL",
    "NEGATIVE_INSTANCES",
    "BiasRow",
    "Instance",
    "chain_rule_values",
    "instance",
    "measure_t1",
    "measure_t2",
    "measure_t9",
    "offpolicy_clip_bias",
    "t1_errors",
    "t2_errors",
    "t2_minimiser",
    "t9_rows",
]

EXACT_ATOL = 1e-8
BIAS_MARGIN = 1e-3
#: (vocab, length, seed, logit scale) of the fixed instances used for negative checks and report.
NEGATIVE_INSTANCES: tuple[tuple[int, int, int, float], ...] = ((3, 3, 0, 1.0), (4, 2, 1, 1.5), (2, 3, 2, 2.0))


@dataclasses.dataclass(frozen=True)
class Instance:
    """A teacher p, a student q_θ (θ a leaf with grad) and their enumerated log-probs."""

    tab: Tabular
    theta: Tensor
    p_tok: Tensor
    q_tok: Tensor
    p_full: Tensor
    q_full: Tensor
    p_lp: Tensor
    q_lp: Tensor

    @property
    def mask(self) -> Tensor:
        return torch.ones_like(self.q_tok, dtype=torch.bool)

    @property
    def p(self) -> Tensor:
        return self.p_lp.exp()

    @property
    def q(self) -> Tensor:
        return self.q_lp.exp()


def instance(vocab: int, length: int, seed: int, scale: float) -> Instance:
    """Random teacher and student tables (seeded), enumerated."""
    tab = make_tabular(vocab, length)
    gen = torch.Generator().manual_seed(seed)
    teacher = random_logits(tab, gen, scale)
    theta = random_logits(tab, gen, scale).requires_grad_(True)
    p_tok = tab.token_logp(teacher)
    q_tok = tab.token_logp(theta)
    return Instance(
        tab=tab,
        theta=theta,
        p_tok=p_tok,
        q_tok=q_tok,
        p_full=tab.full_logp(teacher),
        q_full=tab.full_logp(theta),
        p_lp=p_tok.sum(-1),
        q_lp=q_tok.sum(-1),
    )


# --------------------------------------------------------------------------- exact objectives


def skl_seq(p_lp: Tensor, q_lp: Tensor, alpha: Tensor | float) -> Tensor:
    """Σ_y p log(p/(α_y p + (1−α_y) q)): SKL_α,seq for constant α, J_T for per-sample α."""
    a = torch.as_tensor(alpha, dtype=F64)
    log_m = torch.logaddexp(torch.log(a) + p_lp, torch.log1p(-a) + q_lp)
    return (p_lp.exp() * (p_lp - log_m)).sum()


def srkl_seq(p_lp: Tensor, q_lp: Tensor, alpha: float) -> Tensor:
    """SRKL_α,seq = Σ_y q log(q/((1−α)p + αq))."""
    log_m = torch.logaddexp(math.log1p(-alpha) + p_lp, math.log(alpha) + q_lp)
    return (q_lp.exp() * (q_lp - log_m)).sum()


def uj_seq(p_lp: Tensor, q_lp: Tensor, alpha: Tensor) -> Tensor:
    """UJ = Σ_y [q log(q/m̃) − q + m̃], m̃ = (1−α_y)p + α_y q."""
    log_m = torch.logaddexp(torch.log1p(-alpha) + p_lp, torch.log(alpha) + q_lp)
    q = q_lp.exp()
    return (q * (q_lp - log_m) - q + log_m.exp()).sum()


def rkl_seq(p_lp: Tensor, q_lp: Tensor) -> Tensor:
    return (q_lp.exp() * (q_lp - p_lp)).sum()


def fkl_seq(p_lp: Tensor, q_lp: Tensor) -> Tensor:
    return (p_lp.exp() * (p_lp - q_lp)).sum()


def _max_abs(x: Tensor) -> float:
    return float(x.abs().max())


def _options(alpha: float, **changes: object) -> askd_ref.ASKDOptions:
    return askd_ref.ASKDOptions().replace(
        alpha_lo=alpha, alpha_hi=alpha, gate="none", normalize="sum", **changes
    )


def _tgo_grad(inst: Instance, weights: Tensor, quality: Tensor, opts: askd_ref.ASKDOptions) -> Tensor:
    return expected_gradient(
        inst.theta,
        inst.q_tok,
        weights,
        lambda x: (
            askd_ref.tgo_loss(
                student_token_logp=x,
                teacher_token_logp=inst.p_tok,
                mask=inst.mask,
                quality=quality,
                options=opts,
            ).loss
        ),
    )


def _sgo_grad(
    inst: Instance,
    weights: Tensor,
    quality: Tensor,
    opts: askd_ref.ASKDOptions,
    behaviour_logp: Tensor | None = None,
) -> Tensor:
    return expected_gradient(
        inst.theta,
        inst.q_tok,
        weights,
        lambda x: (
            askd_ref.sgo_loss(
                student_token_logp=x,
                teacher_token_logp=inst.p_tok,
                mask=inst.mask,
                quality=quality,
                behaviour_logp=behaviour_logp,
                options=opts,
            ).loss
        ),
    )


# --------------------------------------------------------------------------- T1, T2


def t1_errors(inst: Instance, alpha: float) -> dict[str, float]:
    """Max-abs gradient errors of E11/E12 (fixed α) against ∇SKL_α,seq / ∇SRKL_α,seq.

    Also the distance of the stop-mode (E7) estimator to ∇SRKL_α,seq, which is *not* zero: E7
    is a semi-gradient.
    """
    quality = torch.full((inst.q_tok.shape[0],), 0.5, dtype=F64)
    opts = _options(alpha)
    exact_skl = flat_grad(skl_seq(inst.p_lp, inst.q_lp, alpha), inst.theta)
    exact_srkl = flat_grad(srkl_seq(inst.p_lp, inst.q_lp, alpha), inst.theta)
    tgo = _tgo_grad(inst, inst.p, quality, opts)
    sgo = _sgo_grad(inst, inst.q, quality, opts)
    stop = _sgo_grad(inst, inst.q, quality, opts.replace(mixture_grad="stop"))
    return {
        "tgo_error": _max_abs(tgo - exact_skl),
        "sgo_error": _max_abs(sgo - exact_srkl),
        "stop_distance": _max_abs(stop - exact_srkl),
        "gradient_scale": max(_max_abs(exact_skl), _max_abs(exact_srkl)),
    }


def t2_errors(inst: Instance, quality: Tensor) -> dict[str, float]:
    """Per-sample α (default schedules, no gate): E11 vs ∇J_T and E12 vs ∇UJ; UJ at q and at p.

    E12 with ``sgo_pullup="adaptive"`` uses c̃(Δ; α_S(r)) on both signs of Δ and is the exact
    gradient of UJ with α_y = α_S(r_y). With the default ``sgo_pullup="fixed"`` the pull-up side
    (Δ < 0) uses α_lo instead; every UJ term k_α has k_α(p) = k_α'(p) = 0 for all α, so the
    piecewise potential Σ_y k_{α_y(q)}(q(y)), α_y(q) = α_S(r_y) if q(y) > p(y) else α_lo, is C¹ and
    E12 (fixed) is its exact gradient ("uj_split").
    """
    opts = askd_ref.ASKDOptions(gate="none", normalize="sum")
    span = opts.alpha_hi - opts.alpha_lo
    alpha_t = opts.alpha_hi - span * quality  # E10 written out independently of askd_ref
    alpha_s = opts.alpha_lo + span * quality
    alpha_split = torch.where(
        inst.q_lp.detach() > inst.p_lp, alpha_s, torch.full_like(alpha_s, opts.alpha_lo)
    )
    exact_jt = flat_grad(skl_seq(inst.p_lp, inst.q_lp, alpha_t), inst.theta)
    exact_uj = flat_grad(uj_seq(inst.p_lp, inst.q_lp, alpha_s), inst.theta)
    exact_split = flat_grad(uj_seq(inst.p_lp, inst.q_lp, alpha_split), inst.theta)
    tgo = _tgo_grad(inst, inst.p, quality, opts)
    sgo = _sgo_grad(inst, inst.q, quality, opts.replace(sgo_pullup="adaptive"))
    sgo_fixed = _sgo_grad(inst, inst.q, quality, opts)
    return {
        "tgo_error": _max_abs(tgo - exact_jt),
        "sgo_error": _max_abs(sgo - exact_uj),
        "sgo_fixed_error": _max_abs(sgo_fixed - exact_split),
        "sgo_fixed_vs_uj": _max_abs(sgo_fixed - exact_uj),
        "uj": float(uj_seq(inst.p_lp, inst.q_lp.detach(), alpha_s)),
        "uj_at_p": float(uj_seq(inst.p_lp, inst.p_lp, alpha_s)),
        "gradient_scale": max(_max_abs(exact_jt), _max_abs(exact_uj)),
    }


def t2_minimiser(seed: int, size: int = 12) -> dict[str, float]:
    """Minimise J_T over a categorical (LBFGS on logits) and compare with the KKT closed form.

    α_y ∈ [0.05, 0.5] so that the minimiser is interior (1/λ = 1 + Σ p a_y > 1 ≥ a_y with
    a = α/(1−α)). Returns the max abs error, corr(α_y, q*/p) and the constant-α error.
    """
    gen = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(size, generator=gen, dtype=F64), -1)
    alpha = 0.05 + 0.45 * torch.rand(size, generator=gen, dtype=F64)

    def solve(alpha_y: Tensor) -> Tensor:
        z = p.log().clone().requires_grad_(True)
        opt = torch.optim.LBFGS(
            [z],
            lr=1.0,
            max_iter=2000,
            tolerance_grad=1e-15,
            tolerance_change=1e-18,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            loss = skl_seq(p.log(), torch.log_softmax(z, -1), alpha_y)
            loss.backward()  # type: ignore[no-untyped-call]
            return loss

        opt.step(closure)  # type: ignore[no-untyped-call]
        return torch.softmax(z.detach(), -1)

    a = alpha / (1 - alpha)
    closed = p * ((1 + (p * a).sum()) - a)
    numeric = solve(alpha)
    ratio = closed / p
    corr = float(torch.corrcoef(torch.stack([alpha, ratio]))[0, 1])
    const = solve(torch.full_like(alpha, 0.3))
    return {
        "minimiser_error": _max_abs(numeric - closed),
        "corr_alpha_tilt": corr,
        "constant_alpha_error": _max_abs(const - p),
        "min_closed": float(closed.min()),
    }


@functools.cache
def measure_t1() -> dict[str, float]:
    """T1 over the fixed instances × α ∈ {0.05, 0.1, 0.3, 0.7, 0.95} (report numbers)."""
    worst = {"tgo_error": 0.0, "sgo_error": 0.0, "stop_distance_min": math.inf, "cases": 0.0}
    for vocab, length, seed, scale in NEGATIVE_INSTANCES:
        inst = instance(vocab, length, seed, scale)
        for alpha in (0.05, 0.1, 0.3, 0.7, 0.95):
            e = t1_errors(inst, alpha)
            worst["tgo_error"] = max(worst["tgo_error"], e["tgo_error"])
            worst["sgo_error"] = max(worst["sgo_error"], e["sgo_error"])
            worst["stop_distance_min"] = min(worst["stop_distance_min"], e["stop_distance"])
            worst["cases"] += 1
    return worst


@functools.cache
def measure_t2() -> dict[str, float]:
    """T2 over the fixed instances with seeded per-sequence qualities, plus the minimiser."""
    out = {
        "tgo_error": 0.0,
        "sgo_error": 0.0,
        "sgo_fixed_error": 0.0,
        "sgo_fixed_vs_uj_min": math.inf,
        "uj_min": math.inf,
        "uj_at_p_max": 0.0,
    }
    for vocab, length, seed, scale in NEGATIVE_INSTANCES:
        inst = instance(vocab, length, seed, scale)
        gen = torch.Generator().manual_seed(100 + seed)
        quality = torch.rand(inst.q_tok.shape[0], generator=gen, dtype=F64)
        e = t2_errors(inst, quality)
        out["tgo_error"] = max(out["tgo_error"], e["tgo_error"])
        out["sgo_error"] = max(out["sgo_error"], e["sgo_error"])
        out["sgo_fixed_error"] = max(out["sgo_fixed_error"], e["sgo_fixed_error"])
        out["sgo_fixed_vs_uj_min"] = min(out["sgo_fixed_vs_uj_min"], e["sgo_fixed_vs_uj"])
        out["uj_min"] = min(out["uj_min"], e["uj"])
        out["uj_at_p_max"] = max(out["uj_at_p_max"], abs(e["uj_at_p"]))
    m = t2_minimiser(0)
    out.update(m)
    return out


# --------------------------------------------------------------------------- T9


@dataclasses.dataclass(frozen=True)
class BiasRow:
    """One estimator: its expected gradient's max-abs distance to a target, and the verdict."""

    estimator: str
    target: str
    distance: float
    unbiased: bool  # the theory's claim: True → distance ≤ EXACT_ATOL, False → ≥ BIAS_MARGIN


def _weighted_sum_grad(inst: Instance, weights: Tensor, per_sample: Tensor) -> Tensor:
    return flat_grad((weights.detach() * per_sample).sum(), inst.theta)


def _behaviour(inst: Instance, seed: int, noise: float) -> tuple[Tensor, Tensor]:
    """Behaviour policy μ: the student's logits plus seeded noise; (token log-probs, seq log-probs)."""
    gen = torch.Generator().manual_seed(1000 + seed)
    mu_logits = inst.theta.detach() + noise * torch.randn(inst.theta.shape, generator=gen, dtype=F64)
    mu_tok = inst.tab.token_logp(mu_logits)
    return mu_tok, mu_tok.sum(-1)


def t9_rows(inst: Instance, seed: int, alpha: float = 0.1) -> list[BiasRow]:
    """Every estimator of T9 on one instance (on-policy y ∼ q unless stated)."""
    theta = inst.theta
    q_w = inst.q.detach()
    p_w = inst.p.detach()
    delta = inst.q_lp - inst.p_lp  # differentiable in θ
    score = inst.q_lp
    g_rkl = flat_grad(rkl_seq(inst.p_lp, inst.q_lp), theta)
    g_fkl = flat_grad(fkl_seq(inst.p_lp, inst.q_lp), theta)
    rows: list[BiasRow] = []

    def add(name: str, target_name: str, estimate: Tensor, target: Tensor, unbiased: bool) -> None:
        rows.append(BiasRow(name, target_name, _max_abs(estimate - target), unbiased))

    zero = torch.zeros_like(g_rkl)
    k1_loss = _weighted_sum_grad(inst, q_w, delta)
    add("k1 as loss", "0", k1_loss, zero, True)
    add("k1 as loss", "∇RKL", k1_loss, g_rkl, False)
    add("k2 as loss", "∇RKL", _weighted_sum_grad(inst, q_w, 0.5 * delta**2), g_rkl, True)
    k3 = torch.exp(-delta) - 1 + delta
    k3_loss = _weighted_sum_grad(inst, q_w, k3)
    add("k3 as loss", "∇FKL", k3_loss, g_fkl, True)
    add("k3 as loss", "∇RKL", k3_loss, g_rkl, False)
    add("k1 in reward", "∇RKL", _weighted_sum_grad(inst, q_w, delta.detach() * score), g_rkl, True)
    add(
        "k3 in reward", "∇RKL − ∇FKL", _weighted_sum_grad(inst, q_w, k3.detach() * score), g_rkl - g_fkl, True
    )

    # Token-level full-vocabulary RKL on sampled prefixes (askd_ref.rkl_loss, token mean → × T).
    t_len = inst.q_tok.shape[1]
    rkl_batch_kwargs = {"teacher_logp": inst.p_full}
    g_single = expected_gradient(
        theta,
        inst.q_full,
        q_w * t_len,
        lambda x: (
            askd_ref.rkl_loss(
                askd_ref.DistillBatch(
                    mask=inst.mask,
                    is_tgo=torch.zeros(x.shape[0], dtype=torch.bool),
                    student_logp=x,
                    **rkl_batch_kwargs,
                )
            ).loss
        ),
    )
    kl_t = askd_ref.reverse_kl(teacher_logp=inst.p_full, student_logp=inst.q_full).detach()  # (N, T)
    future = kl_t.flip(-1).cumsum(-1).flip(-1) - kl_t  # Σ_{s>t} KL_s
    g_long = _weighted_sum_grad(inst, q_w, (future * inst.q_tok).sum(-1))
    add("token-level RKL (G_single)", "∇RKL", g_single, g_rkl, False)
    add("G_single + G_long", "∇RKL", g_single + g_long, g_rkl, True)

    # Constant-α token-level SKL on teacher prefixes (askd_ref.distillm2_loss on TGOs, α = 0.1).
    g_seq_skl = flat_grad(skl_seq(inst.p_lp, inst.q_lp, alpha), theta)
    g_token_skl = expected_gradient(
        theta,
        inst.q_full,
        p_w * t_len,
        lambda x: (
            askd_ref.distillm2_loss(
                askd_ref.DistillBatch(
                    mask=inst.mask,
                    is_tgo=torch.ones(x.shape[0], dtype=torch.bool),
                    student_logp=x,
                    teacher_logp=inst.p_full,
                ),
                alpha=alpha,
            ).loss
        ),
    )
    add("constant-α token SKL (distillm2, TGO)", "∇SKL_α,seq", g_token_skl, g_seq_skl, False)
    quality = torch.full((inst.q_tok.shape[0],), 0.5, dtype=F64)
    opts = _options(alpha)
    add("ASKD E11 (tgo_loss)", "∇SKL_α,seq", _tgo_grad(inst, inst.p, quality, opts), g_seq_skl, True)
    g_seq_srkl = flat_grad(srkl_seq(inst.p_lp, inst.q_lp, alpha), theta)
    add("ASKD E12 (sgo_loss)", "∇SRKL_α,seq", _sgo_grad(inst, inst.q, quality, opts), g_seq_srkl, True)

    # Off-policy: y ∼ μ. Exact ratio with the clip range wide enough that no ratio is clipped,
    # no ratio at all (behaviour_logp=None on μ-samples), and the default clip ε = 0.2.
    _mu_tok, mu_lp = _behaviour(inst, seed, noise=0.1)
    mu_w = mu_lp.exp()
    rho = (inst.q_lp - mu_lp).exp().detach()
    wide = opts.replace(is_clip_eps=0.99)
    if not bool(((rho > 1 - wide.is_clip_eps) & (rho < 1 + wide.is_clip_eps)).all()):
        raise AssertionError(f"precondition: every ratio inside the clip range, got {rho.min()}..{rho.max()}")
    add(
        "off-policy, exact ratio (E13)",
        "∇SRKL_α,seq",
        _sgo_grad(inst, mu_w, quality, wide, mu_lp),
        g_seq_srkl,
        True,
    )
    add("off-policy, no ratio", "∇SRKL_α,seq", _sgo_grad(inst, mu_w, quality, wide, None), g_seq_srkl, False)
    return rows


def offpolicy_clip_bias(
    inst: Instance, seed: int, alpha: float = 0.1, noise: float = 0.5
) -> dict[str, float]:
    """Bias of E13 with the default clip ε = 0.2, against its bound.

    The clip only removes the gradient of samples whose clipped branch is active, so the bias is
    Σ_{y active} μ(y)ρ(y)ĉ(y)∇S(y) and ‖bias‖∞ ≤ Σ_{y active} q(y)|ĉ(y)|·‖∇S(y)‖∞.
    """
    opts = _options(alpha)
    quality = torch.full((inst.q_tok.shape[0],), 0.5, dtype=F64)
    _mu_tok, mu_lp = _behaviour(inst, seed, noise=noise)
    mu_w = mu_lp.exp()
    g_seq_srkl = flat_grad(srkl_seq(inst.p_lp, inst.q_lp, alpha), inst.theta)
    clipped = _sgo_grad(inst, mu_w, quality, opts, mu_lp)
    rho = (inst.q_lp - mu_lp).exp().detach()
    c_hat = askd_ref.clipped_sgo_coefficient((inst.q_lp - inst.p_lp).detach(), quality, options=opts)
    eps = opts.is_clip_eps
    active = torch.where(c_hat > 0, rho < 1 - eps, rho > 1 + eps)
    bound = 0.0
    for i in torch.nonzero(active).flatten().tolist():
        g_s = flat_grad(inst.q_lp[i], inst.theta)
        bound += float(inst.q[i].detach() * c_hat[i].abs()) * _max_abs(g_s)
    return {
        "bias": _max_abs(clipped - g_seq_srkl),
        "bound": bound,
        "clipped_fraction": float(active.double().mean()),
        "clipped_mass": float((mu_w * active).sum()),
    }


def chain_rule_values(inst: Instance, alpha: float) -> dict[str, float]:
    """SKL_α,seq, its exact token chain rule with λ_t, and the constant-α token sum (values).

    λ_t = αp(y_<t)/(αp(y_<t) + (1−α)q(y_<t)); E_p[Σ_t SKL_{λ_t}(p_t, q_t)] = SKL_α,seq exactly,
    while E_p[Σ_t SKL_α(p_t, q_t)] (constant α, DistiLLM's token-level skew) is a different
    objective. Token-level values come from askd_ref.skew_forward_kl (per-position α allowed).
    """
    with torch.no_grad():
        seq = float(skl_seq(inst.p_lp, inst.q_lp, alpha))
        prefix_p = torch.cumsum(inst.p_tok, -1) - inst.p_tok  # log p(y_<t)
        prefix_q = torch.cumsum(inst.q_tok, -1) - inst.q_tok
        lam = torch.sigmoid(math.log(alpha / (1 - alpha)) + prefix_p - prefix_q)
        chain = askd_ref.skew_forward_kl(teacher_logp=inst.p_full, student_logp=inst.q_full, alpha=lam)
        const = askd_ref.skew_forward_kl(teacher_logp=inst.p_full, student_logp=inst.q_full, alpha=alpha)
        weights = inst.p[:, None]
    # Each prefix is counted once per sequence through it, with weight p(y) summing to p(prefix).
    return {
        "sequence": seq,
        "chain_rule": float((weights * chain).sum()),
        "constant_alpha_tokens": float((weights * const).sum()),
    }


@functools.cache
def measure_t9() -> tuple[list[BiasRow], dict[str, float]]:
    """Worst case over :data:`NEGATIVE_INSTANCES` per (estimator, target), and the clip bias."""
    worst: dict[tuple[str, str], BiasRow] = {}
    for vocab, length, seed, scale in NEGATIVE_INSTANCES:
        inst = instance(vocab, length, seed, scale)
        for row in t9_rows(inst, seed):
            key = (row.estimator, row.target)
            prev = worst.get(key)
            if prev is None:
                worst[key] = row
            elif row.unbiased and row.distance > prev.distance:
                worst[key] = row  # unbiased: report the largest error
            elif not row.unbiased and row.distance < prev.distance:
                worst[key] = row  # biased: report the smallest miss
    vocab, length, seed, scale = NEGATIVE_INSTANCES[0]
    first = instance(vocab, length, seed, scale)
    clip = offpolicy_clip_bias(first, seed)
    clip.update({f"chain_{k}": v for k, v in chain_rule_values(first, 0.1).items()})
    return list(worst.values()), clip
