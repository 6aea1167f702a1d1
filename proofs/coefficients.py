"""Derivations of the update coefficients E5, E6, E7, E9 and of their exactness T1.

Every coefficient is derived from its objective: the sequence-level skew divergence is a sum
over outcomes y (sequences) of an integrand that depends on the student only through q(y), so
∇_θ J = Σ_y ∂f/∂q(y)·∇q(y) = E_{y∼·}[coefficient·∇log q(y)] for *any* parametrisation of q.
The coefficient is read off from ∂f/∂q, then rewritten in Δ = log q − log p.
"""

import functools

import sympy as sp

from proofs._core import (
    ALPHA,
    ALPHA_HI,
    ALPHA_LO,
    DELTA,
    TAU_HI,
    TAU_LO,
    Derivation,
    Expr,
    P,
    Q,
    R,
    Result,
    Step,
    c_det_of,
    c_full_of,
    c_tilde_of,
    limit,
    logit,
    require_equal,
    require_zero,
    sigmoid,
    u_of,
)

__all__ = [
    "clipped_coefficient_expr",
    "derive_e5_tgo_coefficient",
    "derive_e6_sgo_coefficient",
    "derive_e7_sgo_coefficient_stop",
    "derive_e9_clipped_sgo_coefficient",
    "derive_t1_sequence_level_exactness",
    "soft_gate_expr",
]


@functools.cache
def derive_e5_tgo_coefficient() -> Derivation:
    """E5: w(Δ; α) = σ(Δ − logit α) from the sequence-level skew KL."""
    f = P * sp.log(P / (ALPHA * P + (1 - ALPHA) * Q))
    f_q = sp.simplify(Q * sp.diff(f, Q))
    w_pq = sp.simplify(-f_q / P)
    w_delta = sp.simplify(w_pq.subs(Q, P * sp.exp(DELTA)))
    w_closed = (1 - ALPHA) * sp.exp(DELTA) / (ALPHA + (1 - ALPHA) * sp.exp(DELTA))
    require_equal(w_delta, w_closed, "E5 coefficient after q = p·e^Δ")
    w_sigma = sigmoid(DELTA - logit(ALPHA))
    require_equal(w_delta, w_sigma, "E5 coefficient as σ(Δ − logit α)")
    require_equal(w_sigma.subs(DELTA, 0), 1 - ALPHA, "w(0) = 1 − α")
    return Derivation(
        label="E5",
        function="derive_e5_tgo_coefficient",
        title="TGO coefficient w(Δ; α) = σ(Δ − logit α)",
        claim=(
            "∇_θ SKL_α,seq = −E_{y∼p}[w(Δ(y); α)·∇_θ log q(y)] exactly, with "
            "w = (1−α)e^Δ/(α + (1−α)e^Δ) = σ(Δ − logit α)."
        ),
        steps=(
            Step(
                "Objective: SKL_α,seq(q) = Σ_y f(q(y)) with the integrand f(q) = p·log(p/(αp + (1−α)q)) "
                "(p, q the sequence probabilities of one y).",
                f,
            ),
            Step(
                "The student enters only through q(y), so ∇_θ SKL = Σ_y f'(q)∇q = Σ_y p·(q f'(q)/p)·∇log q "
                "= E_{y∼p}[(q f'(q)/p)·∇log q]. Differentiate: q·f'(q) =",
                f_q,
            ),
            Step("Hence the coefficient is −w with w = −q f'(q)/p =", w_pq),
            Step("Substitute q = p·e^Δ (Δ = log q − log p); p cancels:", w_delta),
            Step(
                "Divide numerator and denominator by (1−α)e^Δ: w = 1/(1 + e^{−(Δ − log(α/(1−α)))}); "
                "sympy confirms the difference to σ(Δ − logit α) simplifies to 0.",
                w_sigma,
            ),
            Step("At Δ = 0 (q = p): w(0) = 1 − α.", 1 - ALPHA),
        ),
        results=(
            Result("w", w_sigma, (DELTA, ALPHA), "TGO coefficient w(Δ; α)"),
            Result(
                "q_dfdq",
                f_q,
                (P, Q, ALPHA),
                "q·∂f/∂q of the SKL integrand (= −p·w), the per-outcome score coefficient",
            ),
        ),
        implementation=("askd_ref.coefficients.tgo_coefficient", "askd_ref.losses.tgo_loss"),
    )


@functools.cache
def derive_e6_sgo_coefficient() -> Derivation:
    """E6: c̃(Δ; α) = log u − α(u − 1) from the sequence-level skew reverse KL."""
    m = (1 - ALPHA) * P + ALPHA * Q
    g = Q * sp.log(Q / m)
    g_q = sp.diff(g, Q)
    g_q_delta = sp.simplify(g_q.subs(Q, P * sp.exp(DELTA)))
    u = u_of(DELTA, ALPHA)
    require_equal((Q / m).subs(Q, P * sp.exp(DELTA)), u, "E6: q/m after q = p·e^Δ")
    c = c_full_of(DELTA, ALPHA)
    require_equal(g_q_delta, c, "E6: ∂g/∂q = log u + 1 − αu")
    c_tilde = c_tilde_of(DELTA, ALPHA)
    require_equal(c - c_tilde, 1 - ALPHA, "E6: c − c̃ = 1 − α")
    require_zero(c_tilde.subs(DELTA, 0), "E6: c̃(0) = 0")
    u_lo = limit(u, DELTA, -sp.oo)
    u_hi = limit(u, DELTA, sp.oo)
    require_equal(u_lo, 0, "u → 0 as Δ → −∞")
    require_equal(u_hi, 1 / ALPHA, "u → 1/α as Δ → ∞")
    return Derivation(
        label="E6",
        function="derive_e6_sgo_coefficient",
        title="SGO coefficient, full gradient: c̃(Δ; α) = log u − α(u − 1)",
        claim=(
            "∇_θ SRKL_α,seq = E_{y∼q}[(log u + 1 − αu)·∇_θ log q(y)] = E_{y∼q}[c̃·∇_θ log q(y)] with "
            "u = 1/(α + (1−α)e^{−Δ}) ∈ (0, 1/α] and c̃ = log u − α(u − 1); c̃(0) = 0."
        ),
        steps=(
            Step("Objective: SRKL_α,seq(q) = Σ_y g(q(y)), g(q) = q·log(q/((1−α)p + αq)).", g),
            Step(
                "∇_θ SRKL = Σ_y g'(q)∇q = E_{y∼q}[g'(q)·∇log q], and differentiating through the mixture "
                "gives g'(q) =",
                g_q,
            ),
            Step("Substitute q = p·e^Δ; q/m becomes u(Δ; α) =", u),
            Step("so g'(q) = log u + 1 − αu =: c (sympy: difference simplifies to 0).", c),
            Step(
                "Baseline: E_{y∼q}[∇log q] = Σ_y ∇q(y) = ∇1 = 0, so the constant 1 − α can be removed "
                "for fixed α. c̃ = c − (1 − α) =",
                c_tilde,
            ),
            Step("c̃(0) = log 1 − α·0 = 0. Range of u: lim_{Δ→−∞} u = 0, lim_{Δ→∞} u =", u_hi),
        ),
        results=(
            Result("u", u, (DELTA, ALPHA), "u = q/((1−α)p + αq) as a function of Δ"),
            Result("c", c, (DELTA, ALPHA), "uncentred coefficient log u + 1 − αu"),
            Result("c_tilde", c_tilde, (DELTA, ALPHA), "centred coefficient c̃"),
            Result("dg_dq", g_q, (P, Q, ALPHA), "∂g/∂q of the SRKL integrand (= c)"),
        ),
        implementation=("askd_ref.coefficients.sgo_coefficient", "askd_ref.losses.sgo_loss"),
    )


@functools.cache
def derive_e7_sgo_coefficient_stop() -> Derivation:
    """E7: c_det = log u, the semi-gradient of KL(q ‖ sg(mixture))."""
    m_bar = sp.Symbol("mbar", positive=True)
    g = Q * sp.log(Q / m_bar)
    g_q = sp.diff(g, Q)
    m = (1 - ALPHA) * P + ALPHA * Q
    semi = sp.simplify(g_q.subs(m_bar, m))
    semi_delta = sp.simplify(semi.subs(Q, P * sp.exp(DELTA)))
    c_det = c_det_of(DELTA, ALPHA)
    require_equal(semi_delta - 1, c_det, "E7: semi-gradient − 1 = log u")
    require_equal(
        c_full_of(DELTA, ALPHA) - (c_det + 1),
        -ALPHA * u_of(DELTA, ALPHA),
        "E7: c − c_det − 1 = −αu",
    )
    return Derivation(
        label="E7",
        function="derive_e7_sgo_coefficient_stop",
        title="SGO coefficient, stop mode: c_det = log u",
        claim=(
            "The semi-gradient of KL(q ‖ sg((1−α)p + αq)) is E_{y∼q}[(log u + 1)·∇log q] = "
            "E_{y∼q}[c_det·∇log q] with c_det = log u; it differs from the full coefficient by −αu "
            "(the mixture's own derivative)."
        ),
        steps=(
            Step("Objective with the mixture held fixed at m̄: integrand q·log(q/m̄).", g),
            Step("Differentiate in q only (m̄ constant), then put m̄ = (1−α)p + αq back:", semi),
            Step("With q = p·e^Δ this is log u + 1:", semi_delta),
            Step("Drop the baseline 1 (E_q[∇log q] = 0): c_det = log u.", c_det),
            Step(
                "Compared with E6, c − (c_det + 1) = −αu: the stop-gradient loses exactly the term "
                "that comes from the student inside the mixture.",
                -ALPHA * u_of(DELTA, ALPHA),
            ),
        ),
        results=(
            Result("c_det", c_det, (DELTA, ALPHA), "stop-mode coefficient log u"),
            Result("semi_gradient", semi, (P, Q, ALPHA), "∂/∂q of q log(q/m̄) at m̄ = m (= c_det + 1)"),
        ),
        implementation=("askd_ref.coefficients.sgo_coefficient (mixture_grad='stop')",),
    )


def soft_gate_expr(r: Expr = R, tau_lo: Expr = TAU_LO, tau_hi: Expr = TAU_HI) -> Expr:
    """h(r) = clip((r − τ_lo)/(τ_hi − τ_lo), 0, 1) as a sympy Piecewise (spec E8)."""
    return sp.Piecewise((0, r <= tau_lo), (1, r >= tau_hi), ((r - tau_lo) / (tau_hi - tau_lo), True))


def clipped_coefficient_expr(pullup: str = "fixed", mixture_grad: str = "full") -> Expr:
    """ĉ(Δ, r) of E9 in piecewise form (linear schedule, soft gate), from the sign of c̃."""
    coef = c_tilde_of if mixture_grad == "full" else c_det_of
    alpha_s = ALPHA_LO + (ALPHA_HI - ALPHA_LO) * R
    h = soft_gate_expr()
    pull = coef(DELTA, ALPHA_LO) if pullup == "fixed" else coef(DELTA, alpha_s)
    return sp.Piecewise((pull, DELTA <= 0), ((1 - h) * coef(DELTA, alpha_s), True))


@functools.cache
def derive_e9_clipped_sgo_coefficient() -> Derivation:
    """E9: piecewise form of ĉ(Δ, r), using sign(c̃) = sign(Δ)."""
    c_tilde = c_tilde_of(DELTA, ALPHA)
    dc = sp.simplify(sp.diff(c_tilde, DELTA))
    u = u_of(DELTA, ALPHA)
    require_equal(dc, (1 - ALPHA * u) ** 2, "∂c̃/∂Δ = (1 − αu)²")
    slope0 = sp.simplify(dc.subs(DELTA, 0))
    require_equal(slope0, (1 - ALPHA) ** 2, "∂c̃/∂Δ at 0")
    alpha_s = ALPHA_LO + (ALPHA_HI - ALPHA_LO) * R
    h = soft_gate_expr()
    fixed = clipped_coefficient_expr("fixed")
    adaptive = clipped_coefficient_expr("adaptive")
    pull = c_tilde_of(DELTA, ALPHA_LO)
    push = (1 - h) * c_tilde_of(DELTA, alpha_s)
    require_zero(pull.subs(DELTA, 0), "pull-up piece vanishes at Δ = 0")
    require_zero(push.subs(DELTA, 0), "push-down piece vanishes at Δ = 0")
    return Derivation(
        label="E9",
        function="derive_e9_clipped_sgo_coefficient",
        title="Clipped SGO coefficient ĉ(Δ, r) in piecewise form",
        claim=(
            "With sign(c̃) = sign(Δ) for every α, ĉ = min(c̃(Δ; α_lo), 0) + (1 − h(r))·max(c̃(Δ; α_S(r)), 0) "
            "equals c̃(Δ; α_lo) for Δ ≤ 0 and (1 − h(r))·c̃(Δ; α_S(r)) for Δ > 0 (adaptive pull-up: "
            "c̃(Δ; α_S(r)) for Δ ≤ 0); both pieces vanish at Δ = 0, so ĉ is continuous in Δ."
        ),
        steps=(
            Step("Slope of c̃ in Δ (derived in T4): ∂c̃/∂Δ = (1 − αu)² ≥ 0, and at Δ = 0 it is", slope0),
            Step(
                "c̃(0) = 0 (E6) and c̃ is strictly increasing (the slope is 0 only in the limit u → 1/α), "
                "so sign(c̃(Δ; α)) = sign(Δ) for every α ∈ (0, 1): min(c̃, 0) = c̃·1{Δ ≤ 0} and "
                "max(c̃, 0) = c̃·1{Δ > 0}."
            ),
            Step("Soft gate (E8) with the linear schedule α_S(r) = α_lo + (α_hi − α_lo)r:", h),
            Step("Default (fixed) pull-up, piecewise in Δ:", fixed),
            Step("Adaptive pull-up, piecewise in Δ:", adaptive),
            Step("Both pieces are 0 at Δ = 0, so ĉ is continuous there; at h(r) = 1 the Δ > 0 piece is 0."),
        ),
        results=(
            Result(
                "c_hat",
                fixed,
                (DELTA, R, ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
                "ĉ(Δ, r), fixed pull-up, soft gate, linear schedule",
            ),
            Result(
                "c_hat_adaptive",
                adaptive,
                (DELTA, R, ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
                "ĉ(Δ, r), adaptive pull-up",
            ),
        ),
        implementation=(
            "askd_ref.coefficients.clipped_sgo_coefficient",
            "askd_ref.losses.sgo_loss",
        ),
    )


_K = 3


def _softmax_family() -> tuple[tuple[Expr, ...], tuple[Expr, ...], tuple[Expr, ...], Expr]:
    """Logits z, teacher probabilities p, student probabilities q = softmax(z), and ∂q/∂z."""
    z = sp.symbols(f"z1:{_K + 1}", real=True)
    p = sp.symbols(f"p1:{_K + 1}", positive=True)
    total = sum(sp.exp(zi) for zi in z)
    q = tuple(sp.exp(zi) / total for zi in z)
    jac = sp.ImmutableMatrix(_K, _K, lambda i, j: sp.diff(q[i], z[j]))
    return z, p, q, jac


@functools.cache
def derive_t1_sequence_level_exactness() -> Derivation:
    """T1 on a categorical (softmax) family: E5 and E6 give the exact gradients."""
    z, p, qz, jac = _softmax_family()
    qs = sp.symbols(f"q1:{_K + 1}", positive=True)
    jac_formula = sp.ImmutableMatrix(_K, _K, lambda i, j: qz[i] * (int(i == j) - qz[j]))
    require_zero(jac - jac_formula, "softmax Jacobian ∂q_i/∂z_j = q_i(δ_ij − q_j)")
    jac_q = sp.ImmutableMatrix(_K, _K, lambda i, j: qs[i] * (int(i == j) - qs[j]))

    def skl_term(pi: Expr, qi: Expr) -> Expr:
        return pi * sp.log(pi / (ALPHA * pi + (1 - ALPHA) * qi))

    def srkl_term(pi: Expr, qi: Expr) -> Expr:
        return qi * sp.log(qi / ((1 - ALPHA) * pi + ALPHA * qi))

    def w_term(pi: Expr, qi: Expr) -> Expr:
        return (1 - ALPHA) * qi / (ALPHA * pi + (1 - ALPHA) * qi)

    def u_term(pi: Expr, qi: Expr) -> Expr:
        return qi / ((1 - ALPHA) * pi + ALPHA * qi)

    def c_term(pi: Expr, qi: Expr, centred: bool) -> Expr:
        u = u_term(pi, qi)
        return sp.log(u) - ALPHA * (u - 1) if centred else sp.log(u) + 1 - ALPHA * u

    last = {qs[_K - 1]: 1 - sum(qs[: _K - 1])}
    for j in range(_K):
        grad_skl = sum(sp.diff(skl_term(p[i], qs[i]), qs[i]) * jac_q[i, j] for i in range(_K))
        rl_skl = -sum(p[i] * w_term(p[i], qs[i]) * jac_q[i, j] / qs[i] for i in range(_K))
        require_zero(grad_skl - rl_skl, f"T1: ∂SKL/∂z_{j + 1} = −Σ p w ∂log q/∂z_{j + 1}")
        grad_srkl = sum(sp.diff(srkl_term(p[i], qs[i]), qs[i]) * jac_q[i, j] for i in range(_K))
        rl_c = sum(qs[i] * c_term(p[i], qs[i], False) * jac_q[i, j] / qs[i] for i in range(_K))
        rl_ct = sum(qs[i] * c_term(p[i], qs[i], True) * jac_q[i, j] / qs[i] for i in range(_K))
        require_zero(grad_srkl - rl_c, f"T1: ∂SRKL/∂z_{j + 1} = Σ q c ∂log q/∂z_{j + 1}")
        require_zero((rl_c - rl_ct).subs(last), f"T1: baseline 1 − α drops out of component {j + 1}")
    sub = dict(zip(qs, qz, strict=True))
    grad_skl_q = sp.ImmutableMatrix(
        [-sum(p[i] * w_term(p[i], qs[i]) * jac_q[i, j] / qs[i] for i in range(_K)) for j in range(_K)]
    )
    grad_srkl_q = sp.ImmutableMatrix(
        [sum(qs[i] * c_term(p[i], qs[i], True) * jac_q[i, j] / qs[i] for i in range(_K)) for j in range(_K)]
    )
    grad_skl_rl = grad_skl_q.subs(sub)
    grad_srkl_rl = grad_srkl_q.subs(sub)
    baseline = sp.simplify(sum(jac_q[i, 0] for i in range(_K)).subs(last))
    return Derivation(
        label="T1",
        function="derive_t1_sequence_level_exactness",
        title="Exactness of E5 and E6 on a categorical family (fixed α)",
        claim=(
            "For q = softmax(z) over K outcomes (K = 3 symbolically; the outcomes stand for whole "
            "sequences), ∇_z SKL_α = −Σ_y p(y) w(Δ(y); α) ∇_z log q(y) and ∇_z SRKL_α = "
            "Σ_y q(y) c(Δ(y); α) ∇_z log q(y) = Σ_y q(y) c̃(Δ(y); α) ∇_z log q(y), identically."
        ),
        steps=(
            Step(
                "Softmax Jacobian, differentiated and simplified: ∂q_i/∂z_j = q_i(δ_ij − q_j).",
                jac_formula,
            ),
            Step(
                "Both objectives are sums of per-outcome integrands of q_i, so ∂J/∂z_j = Σ_i f'(q_i)·"
                "q_i(δ_ij − q_j). For each j, sympy simplifies ∂SKL/∂z_j + Σ_i p_i w_i ∂log q_i/∂z_j "
                "and ∂SRKL/∂z_j − Σ_i q_i c_i ∂log q_i/∂z_j to 0."
            ),
            Step(
                "Baseline: Σ_i q_i·∂log q_i/∂z_j = Σ_i ∂q_i/∂z_j = q_j(1 − Σ_i q_i) = 0 under Σ q = 1 "
                "(sympy, j = 1):",
                baseline,
            ),
            Step(
                "Hence replacing c by c̃ = c − (1 − α) leaves the gradient unchanged. RL form of ∇_z SKL "
                "(written in q = softmax(z)):",
                grad_skl_q,
            ),
            Step("RL form of ∇_z SRKL with c̃:", grad_srkl_q),
            Step(
                "A tabular autoregressive model is another parametrisation of the same q(y); the chain "
                "rule through q(y) is the same, so the identities hold for it (checked by exact "
                "enumeration in checks/)."
            ),
        ),
        results=(
            Result(
                "grad_z_skl",
                grad_skl_rl,
                (*z, *p, ALPHA),
                "−Σ p w ∇_z log q for q = softmax(z)",
                grad_skl_q,
            ),
            Result(
                "grad_z_srkl",
                grad_srkl_rl,
                (*z, *p, ALPHA),
                "Σ q c̃ ∇_z log q for q = softmax(z)",
                grad_srkl_q,
            ),
        ),
        implementation=(
            "askd_ref.losses.tgo_loss",
            "askd_ref.losses.sgo_loss",
            "askd_ref.divergences.skew_forward_kl",
            "askd_ref.divergences.skew_reverse_kl",
        ),
    )
