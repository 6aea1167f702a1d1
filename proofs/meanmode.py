"""Derivations of T1m: what E11 and E12/E13 are under ``normalize="mean"`` (Δ̄ = Δ/n, S̄ = S_θ/n).

Every sequence objective below is a sum over outcomes y of a per-outcome term F_y(q(y)), so
∇J = Σ_y F_y'(q(y))·∇q(y) = E_q[F_y'(q)·∇log q(y)] = E_q[n·F_y'(q)·∇S̄(y)]: the coefficient of
∇S̄ that is exact for J is n·F_y'(q) under y ∼ q (n·q·F_y'(q)/p under y ∼ p), with q = p·e^{nΔ̄}.
That one identity, applied per term and
checked by sympy, gives every T1m statement. n = |y| is a positive symbol (n = 1 is the sum mode).
"""

import functools

import sympy as sp

from proofs._core import (
    ALPHA,
    DELTA,
    Derivation,
    P,
    Q,
    Result,
    Step,
    c_tilde_of,
    logit,
    require_equal,
    require_zero,
    sigmoid,
    u_of,
)

__all__ = ["derive_t1m_sgo_mean_mode", "derive_t1m_tgo_mean_mode"]

#: Response length n = |y|.
N = sp.Symbol("n", positive=True)
_S = sp.Symbol("s", real=True)
_B = sp.Symbol("b", real=True)


def _delta_bar(q: sp.Expr) -> sp.Expr:
    return (sp.log(q) - sp.log(P)) / N


def _coefficient(term: sp.Expr, sampler: str = "q") -> sp.Expr:
    """The exact coefficient of ∇S̄ for the term F(q), in Δ̄ (q = p e^{nΔ̄}).

    ∇J = Σ_y F'(q)·q·n·∇S̄(y): under y ∼ q the coefficient is n·F'(q), under y ∼ p it is n·q·F'(q)/p.
    """
    factor = N if sampler == "q" else N * Q / P
    out = (factor * sp.diff(term, Q)).subs(Q, P * sp.exp(N * DELTA))
    return sp.simplify(sp.expand_log(sp.simplify(out), force=True))


@functools.cache
def derive_t1m_tgo_mean_mode() -> Derivation:
    """T1m (TGO): −sg(w(Δ̄; α))·S̄ is exact for J_T^mean = E_p[−log(α + (1−α)e^{Δ̄})]."""
    term = P * -sp.log(ALPHA + (1 - ALPHA) * sp.exp(_delta_bar(Q)))
    coef = _coefficient(term, sampler="p")
    w_bar = sigmoid(DELTA - logit(ALPHA))
    require_equal(coef, -w_bar, "(n q/p)·∂/∂q[−p log(α + (1−α)e^{Δ̄})] = −w(Δ̄; α)")
    geo = (Q / P) ** (1 / N)
    require_equal(sp.exp(_delta_bar(Q)), geo, "e^{Δ̄} = (q(y)/p(y))^{1/n}")
    return Derivation(
        label="T1m",
        function="derive_t1m_tgo_mean_mode",
        title="Mean mode, TGO: E11 is exact for the skew KL of geometric-mean likelihoods",
        claim=(
            "With Δ̄ = Δ/n and S̄ = S_θ/n, y ∼ p (fixed), E_p[−w(Δ̄(y); α_y)∇S̄(y)] = ∇J_T^mean with "
            "J_T^mean(q) = E_p[−log(α_y + (1−α_y)e^{Δ̄(y)})] = E_p[−log(α_y + (1−α_y)(q(y)/p(y))^{1/|y|})], "
            "the skew KL of the per-token geometric-mean likelihoods, for any per-sample α_y (gate, "
            "schedule); n = 1 is T1/T2."
        ),
        steps=(
            Step("One term of J_T^mean, with Δ̄ = (log q − log p)/n:", term),
            Step(
                "Exact coefficient of ∇S̄ under y ∼ p: (n q/p)·∂/∂q of the term, with q = p e^{nΔ̄} "
                "(sympy simplifies "
                "its difference with −w(Δ̄; α) to 0):",
                -w_bar,
            ),
            Step(
                "No baseline was used, so the identity holds per y with α_y varying; the expected "
                "gradient Σ_y p(y)·(−w_y)·∇S̄(y) is therefore ∇J_T^mean exactly (checks/test_t1m_*)."
            ),
        ),
        results=(
            Result(
                "w_bar",
                w_bar,
                (DELTA, ALPHA),
                "TGO coefficient in mean mode: w(Δ̄; α) = σ(Δ̄ − logit α)",
            ),
        ),
        implementation=("askd_ref.tgo_loss", "askd_ref.tgo_coefficient"),
    )


@functools.cache
def derive_t1m_sgo_mean_mode() -> Derivation:
    """T1m (SGO): E12 in mean mode is exact for D_c; baselines; UJ^mean and J_S^mean coefficients."""
    u = u_of(DELTA, ALPHA)
    c_tilde = c_tilde_of(DELTA, ALPHA)
    c_fn = sp.Function("c")
    # (a) Any coefficient c(Δ̄): the per-term potential p·∫_0^{Δ̄} c(s)e^{ns} ds.
    psi = P * sp.Integral(c_fn(_S) * sp.exp(N * _S), (_S, 0, _delta_bar(Q)))
    coef_psi = sp.simplify((N * sp.diff(psi, Q)).subs(Q, P * sp.exp(N * DELTA)))
    require_equal(coef_psi, c_fn(DELTA), "n·∂/∂q[p∫_0^{Δ̄} c(s)e^{ns}ds] = c(Δ̄)")
    # (b) A constant baseline b: its potential is b(q − p)/n.
    base = P * sp.integrate(_B * sp.exp(N * _S), (_S, 0, _delta_bar(Q)))
    require_equal(sp.simplify(base), _B * (Q - P) / N, "p∫_0^{Δ̄} b e^{ns} ds = b(q − p)/n")
    length_base = P * sp.integrate(_B * N * sp.exp(N * _S), (_S, 0, _delta_bar(Q)))
    require_equal(sp.simplify(length_base), _B * (Q - P), "p∫_0^{Δ̄} b n e^{ns} ds = b(q − p)")
    # (c) J_S^mean = E_q[log u(Δ̄)].
    js_term = Q * sp.log(u.subs(DELTA, _delta_bar(Q)))
    js_coef = _coefficient(js_term)
    js_expected = N * sp.log(u) + 1 - ALPHA * u
    require_equal(js_coef, js_expected, "n·∂/∂q[q log u(Δ̄)] = n log u + 1 − αu")
    # (d) UJ^mean = E_q[φ(Δ̄)], φ = log u + 1/u − 1.
    phi = sp.log(u) + 1 / u - 1
    require_equal(phi + sp.diff(phi, DELTA), c_tilde, "φ + φ' = c̃")
    require_zero(phi.subs(DELTA, 0), "φ(0) = 0")
    require_zero(sp.diff(phi, DELTA).subs(DELTA, 0), "φ'(0) = 0")
    uj_term = Q * phi.subs(DELTA, _delta_bar(Q))
    uj_coef = _coefficient(uj_term)
    uj_expected = c_tilde + (N - 1) * phi
    require_equal(uj_coef, uj_expected, "n·∂/∂q[q φ(Δ̄)] = c̃ + (n − 1)φ")
    # φ ≥ 0: with x = 1/u > 0, φ = x − 1 − log x ≥ 0 (equality iff x = 1 iff Δ̄ = 0).
    x = sp.Symbol("x", positive=True)
    g = x - 1 - sp.log(x)
    require_zero(sp.diff(g, x).subs(x, 1), "x − 1 − log x is stationary at x = 1")
    if not sp.simplify(sp.diff(g, x, 2) - 1 / x**2) == 0:
        raise AssertionError("second derivative of x − 1 − log x")
    # n = 1 gives back the sum-mode coefficients.
    require_equal(uj_expected.subs(N, 1), c_tilde, "n = 1: c̃ + 0·φ = c̃")
    return Derivation(
        label="T1m",
        function="derive_t1m_sgo_mean_mode",
        title="Mean mode, SGO: which objective E12/E13 follow; baselines; unbiased coefficients",
        claim=(
            "For any per-sample coefficient c_y(Δ̄) (ĉ with gate, α_S(r), either pull-up or mixture "
            "mode), y ∼ q: E_q[c_y(Δ̄)∇S̄] = ∇D_c, D_c(q) = Σ_y p(y)∫_0^{Δ̄(y)} c_y(s)e^{|y|s} ds. So E12 "
            "in mean mode (and E13 while ρ is unclipped) is an exact gradient, of D_ĉ; because ĉ has "
            "the sign of Δ̄, D_ĉ ≥ 0 and D_ĉ(p) = 0 (with gate none, D_c̃ = 0 iff q = p). A constant "
            "baseline b is not free: it adds b(E_q[1/|y|] − E_p[1/|y|]) to the objective; b·|y| is free. "
            "Against J_S^mean = E_q[log u(Δ̄)] E12 is biased: the exact coefficient is n log u + 1 − αu "
            "(it depends on n, so no coefficient of Δ̄ alone is unbiased when lengths vary); J_S^mean "
            "takes negative values, so it is not a divergence. The mean-mode analogue of UJ, "
            "UJ^mean = E_q[φ(Δ̄)], φ = log u + 1/u − 1 ≥ 0, has the exact coefficient c̃ + (n − 1)φ "
            "(option sgo_length_correction='uj'); n = 1 gives the sum mode back."
        ),
        steps=(
            Step("Per-term potential of an arbitrary coefficient c:", psi),
            Step(
                "Its exact ∇S̄-coefficient under y ∼ q, n·∂/∂q at q = p e^{nΔ̄} "
                "(Leibniz rule; sympy: equal to c(Δ̄)):",
                coef_psi,
            ),
            Step(
                "Sign: ∫_0^d c(s)e^{ns} ds ≥ 0 whenever c(s) has the sign of s (c̃, c_det and ĉ do, T3), "
                "so D_ĉ ≥ 0 with D_ĉ(p) = 0; with gate none the integrand vanishes only at s = 0."
            ),
            Step("A constant baseline b contributes the potential b(q − p)/n per y:", sp.simplify(base)),
            Step(
                "and b·n contributes b(q − p), whose sum over y is 0 (free); the sum of b(q − p)/n is "
                "b(E_q[1/n] − E_p[1/n]), non-zero when lengths vary (not free).",
                sp.simplify(length_base),
            ),
            Step(
                "Exact coefficient for J_S^mean = E_q[log u(Δ̄)] "
                "(docs/method.md §7; sympy: n·∂/∂q of q log u(Δ̄) equals it):",
                js_expected,
            ),
            Step("φ = log u + 1/u − 1, with φ + φ' = c̃ and φ(0) = φ'(0) = 0:", phi),
            Step(
                "φ = x − 1 − log x at x = 1/u > 0, which is ≥ 0 with its only zero at x = 1 (Δ̄ = 0).",
                g,
            ),
            Step(
                "Exact coefficient for UJ^mean = E_q[φ(Δ̄)] (sympy: n·∂/∂q of q φ(Δ̄) equals it):", uj_expected
            ),
            Step(
                "With the gate, φ_ĉ = φ(·; α_lo) for Δ̄ < 0 (α_S(r) with adaptive pull-up) and "
                "(1 − h)φ(·; α_S(r)) for Δ̄ ≥ 0; both sides are integrands of the same ODE φ + φ' = ĉ "
                "started at φ(0) = 0, so the coefficient ĉ + (n − 1)φ_ĉ is exact for E_q[φ_ĉ(Δ̄)]."
            ),
        ),
        results=(
            Result("js_coefficient", js_expected, (DELTA, ALPHA, N), "exact ∇S̄-coefficient for J_S^mean"),
            Result("uj_integrand", phi, (DELTA, ALPHA), "φ(Δ̄; α) = log u + 1/u − 1"),
            Result("uj_coefficient", uj_expected, (DELTA, ALPHA, N), "c̃ + (n − 1)φ, exact for UJ^mean"),
        ),
        implementation=("askd_ref.sgo_loss", "askd_ref.sequence.length_corrected_sgo_coefficient"),
    )
