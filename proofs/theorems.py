"""Derivations of T2, T3, T5, T6, T7 and T8 (T1 is in :mod:`proofs.coefficients`, T4 in
:mod:`proofs.lipschitz`)."""

import functools

import sympy as sp

from proofs._core import (
    ALPHA,
    ALPHA_HI,
    ALPHA_LO,
    DELTA,
    LAMBDA,
    TAU_HI,
    TAU_LO,
    Derivation,
    DerivationError,
    P,
    Q,
    R,
    Result,
    Step,
    U,
    c_det_of,
    c_full_of,
    c_tilde_of,
    in_terms_of_u,
    limit,
    logit,
    require_equal,
    require_sign_on_unit_interval,
    require_zero,
    sigmoid,
    u_of,
)
from proofs.coefficients import soft_gate_expr

__all__ = [
    "derive_t2_sgo_unnormalised_skew_rkl",
    "derive_t2_tgo_per_sample_alpha",
    "derive_t3_coefficient_ranges",
    "derive_t5_monotone_in_quality",
    "derive_t6_limits",
    "derive_t7_divergence_bounds",
    "derive_t8_logit_gradient_bounds",
]

_MU = sp.Symbol("mu", nonnegative=True)


@functools.cache
def derive_t2_tgo_per_sample_alpha() -> Derivation:
    """T2 (TGO): per-sample α gives ∇J_T; the minimiser of J_T is tilted, q* ∝ p·max(0, 1/λ − α/(1−α))."""
    f = P * sp.log(P / (ALPHA * P + (1 - ALPHA) * Q))
    f_q = sp.diff(f, Q)
    w = sigmoid(DELTA - logit(ALPHA))
    require_equal((Q * f_q / P).subs(Q, P * sp.exp(DELTA)), -w, "q f'(q)/p = −w(Δ; α_y)")
    stationarity = sp.Eq(f_q + LAMBDA, 0)
    solutions = sp.solve(stationarity, Q)
    if len(solutions) != 1:
        raise DerivationError(f"expected one stationary point, got {solutions}")
    q_star = sp.simplify(solutions[0])
    require_equal(q_star, P * (1 / LAMBDA - ALPHA / (1 - ALPHA)), "interior KKT point")
    f_qq = sp.simplify(sp.diff(f, Q, 2))
    require_equal(f_qq, P * (1 - ALPHA) ** 2 / (ALPHA * P + (1 - ALPHA) * Q) ** 2, "f'' > 0")
    boundary = sp.simplify(f_q.subs(Q, 0) + LAMBDA)
    require_equal(boundary, LAMBDA - (1 - ALPHA) / ALPHA, "∂L/∂q at q = 0")
    constant_alpha = sp.solve(sp.Eq(1 / LAMBDA - ALPHA / (1 - ALPHA), 1), LAMBDA)[0]
    require_equal(constant_alpha, 1 - ALPHA, "λ for constant α (Σ q* = Σ p = 1 ⇒ factor 1)")
    return Derivation(
        label="T2",
        function="derive_t2_tgo_per_sample_alpha",
        title="TGO with per-sample α: exact gradient of J_T and its tilted minimiser",
        claim=(
            "With α_y = α_T(r(y)), −E_{y∼p}[w(Δ(y); α_y)∇log q(y)] = ∇J_T for J_T(q) = "
            "Σ_y p log(p/(α_y p + (1−α_y)q)); J_T is strictly convex in q and its minimiser over the "
            "simplex is q*(y) = p(y)·max(0, 1/λ − α_y/(1−α_y)), λ fixed by Σ q* = 1; with constant α, q* = p."
        ),
        steps=(
            Step("Objective, one term per y with its own α_y:", f),
            Step(
                "Each term depends on θ only through q(y); E5's computation goes through term by term "
                "(no baseline is used, so α may vary with y): q f'(q)/p = −w(Δ; α_y). Derivative:",
                f_q,
            ),
            Step("Second derivative (> 0, so J_T is strictly convex and KKT is sufficient):", f_qq),
            Step(
                "Lagrangian Σ_y f_y(q_y) + λ(Σ_y q_y − 1) − Σ_y μ_y q_y. Stationarity with μ_y = 0:",
                stationarity,
            ),
            Step("solved for q:", q_star),
            Step(
                "At q_y = 0 the multiplier μ_y = ∂L/∂q ≥ 0 is needed; ∂L/∂q at q = 0 is below, which is "
                "≥ 0 iff 1/λ ≤ α_y/(1−α_y). Both cases together: q*(y) = p(y)·max(0, 1/λ − α_y/(1−α_y)).",
                boundary,
            ),
            Step(
                "Constant α: q* = p·(1/λ − α/(1−α)) for all y, and Σ q* = 1 forces the factor 1, i.e. "
                "q* = p with λ =",
                constant_alpha,
            ),
            Step(
                "A smaller α_y (higher-quality TGO under α_T) gives a larger factor 1/λ − α_y/(1−α_y): the "
                "minimiser is tilted toward high-quality teacher outputs and drops outputs with "
                "α_y/(1−α_y) ≥ 1/λ."
            ),
        ),
        results=(
            Result("df_dq", f_q, (P, Q, ALPHA), "∂/∂q of the J_T term"),
            Result(
                "kkt_interior",
                q_star,
                (P, ALPHA, LAMBDA),
                "interior stationary point p(1/λ − α/(1−α))",
            ),
            Result("d2f_dq2", f_qq, (P, Q, ALPHA), "∂²/∂q² of the J_T term"),
        ),
        implementation=("askd_ref.losses.tgo_loss", "askd_ref.schedules.tgo_alpha"),
    )


@functools.cache
def derive_t2_sgo_unnormalised_skew_rkl() -> Derivation:
    """T2 (SGO): E_q[c̃_y ∇log q] = ∇UJ; UJ ≥ 0 with equality iff q = p."""
    m = (1 - ALPHA) * P + ALPHA * Q
    k = Q * sp.log(Q / m) - Q + m
    k_q = sp.diff(k, Q)
    k_q_delta = sp.simplify(k_q.subs(Q, P * sp.exp(DELTA)))
    require_equal(k_q_delta, c_tilde_of(DELTA, ALPHA), "∂k/∂q = c̃")
    k_qq = sp.simplify(sp.diff(k, Q, 2))
    u_pq = Q / m
    require_equal(k_qq, (1 - ALPHA * u_pq) ** 2 / Q, "∂²k/∂q² = (1 − αu)²/q")
    at_p = sp.simplify(k.subs(Q, P))
    require_zero(at_p, "k(p) = 0")
    require_zero(k_q.subs(Q, P), "k'(p) = 0")
    total_m = sp.simplify(((1 - ALPHA) * P + ALPHA * Q) - Q - ((1 - ALPHA) * (P - Q)))
    require_zero(total_m, "m̃ − q = (1−α)(p − q)")
    return Derivation(
        label="T2",
        function="derive_t2_sgo_unnormalised_skew_rkl",
        title="SGO with per-sample α: exact gradient of the unnormalised skew reverse KL UJ",
        claim=(
            "With α_y = α_S(r(y)) and no gate, E_{y∼q}[c̃(Δ(y); α_y)∇log q(y)] = ∇UJ, UJ(q) = "
            "Σ_y [q log(q/m̃) − q + m̃], m̃ = (1−α_y)p + α_y q; every term is ≥ 0 and = 0 iff q(y) = p(y), "
            "so UJ ≥ 0 with equality iff q = p; with constant α, UJ = SRKL_α."
        ),
        steps=(
            Step("One term of UJ:", k),
            Step("Its q-derivative (through the mixture too):", k_q),
            Step(
                "With q = p e^Δ this is exactly c̃(Δ; α_y) (sympy: difference 0); no baseline was "
                "subtracted, so the identity holds with α varying per y:",
                k_q_delta,
            ),
            Step(
                "Second derivative (1 − αu)²/q > 0 (u < 1/α for finite Δ): each term is strictly "
                "convex in q.",
                k_qq,
            ),
            Step(
                "At q = p the term and its derivative vanish (value below), so the term is ≥ 0 with "
                "its unique zero at q = p.",
                at_p,
            ),
            Step(
                "Constant α: Σ_y (m̃ − q) = (1−α)Σ_y(p − q) = 0, so the −q + m̃ part sums to 0 and UJ = SRKL_α."
            ),
            Step(
                "E9's default fixed pull-up uses α_lo instead of α_S(r) where Δ < 0 (q(y) < p(y)). Each term "
                "k_α has k_α(p) = k_α'(p) = 0 for every α (above), so the piecewise term (α_lo below p, "
                "α_S(r) above) is C¹ and convex, and with no gate E12 is the exact gradient of that "
                "piecewise UJ; UJ with α_S(r) on both sides needs sgo_pullup='adaptive'."
            ),
        ),
        results=(
            Result("dk_dq", k_q, (P, Q, ALPHA), "∂/∂q of the UJ term (= c̃)"),
            Result("d2k_dq2", k_qq, (P, Q, ALPHA), "∂²/∂q² of the UJ term"),
            Result("uj_term", k, (P, Q, ALPHA), "one term of UJ"),
        ),
        implementation=("askd_ref.losses.sgo_loss", "askd_ref.schedules.sgo_alpha"),
    )


@functools.cache
def derive_t3_coefficient_ranges() -> Derivation:
    """T3: ranges of w, c̃, c_det; sign(c̃) = sign(Δ); ĉ at h = 1 and h = 0."""
    w = sigmoid(DELTA - logit(ALPHA))
    w_lo, w_hi = limit(w, DELTA, -sp.oo), limit(w, DELTA, sp.oo)
    if (w_lo, w_hi) != (0, 1):
        raise DerivationError(f"w limits {w_lo}, {w_hi}")
    w0 = sp.simplify(w.subs(DELTA, 0))
    require_equal(w0, 1 - ALPHA, "w(0) = 1 − α")
    c_tilde = c_tilde_of(DELTA, ALPHA)
    sup_ct = limit(c_tilde, DELTA, sp.oo)
    require_equal(sup_ct, -sp.log(ALPHA) - (1 - ALPHA), "sup c̃ = log(1/α) − (1 − α)")
    sup_cd = limit(c_det_of(DELTA, ALPHA), DELTA, sp.oo)
    require_equal(sup_cd, -sp.log(ALPHA), "sup c_det = log(1/α)")
    sup_c = limit(c_full_of(DELTA, ALPHA), DELTA, sp.oo)
    require_equal(sup_c, -sp.log(ALPHA), "sup c = log(1/α)")
    dct = sp.simplify(sp.diff(c_tilde, DELTA))
    require_equal(dct, (1 - ALPHA * u_of(DELTA, ALPHA)) ** 2, "c̃ non-decreasing")
    dcd = sp.simplify(sp.diff(c_det_of(DELTA, ALPHA), DELTA))
    require_equal(dcd, 1 - ALPHA * u_of(DELTA, ALPHA), "c_det non-decreasing")
    cap_slope = sp.simplify(sp.diff(sup_ct, ALPHA))
    require_sign_on_unit_interval(cap_slope, ALPHA, "negative", "cap decreasing in α")
    require_zero(sup_ct.subs(ALPHA, 1), "cap vanishes at α = 1")
    return Derivation(
        label="T3",
        function="derive_t3_coefficient_ranges",
        title="Ranges and signs of the coefficients",
        claim=(
            "0 < w < 1 and w(0) = 1 − α; c̃ is increasing with sup c̃ = log(1/α) − (1−α) (approached as "
            "Δ → ∞) and c̃(0) = 0, hence sign(c̃) = sign(Δ); sup c_det = sup c = log(1/α); where h(r) = 1, "
            "ĉ = min(c̃(Δ; α_lo), 0) ≤ 0; where h(r) = 0 (adaptive pull-up), ĉ = c̃(Δ; α_S(r))."
        ),
        steps=(
            Step("w = σ(·) ∈ (0, 1), with limits 0 (Δ → −∞) and 1 (Δ → ∞); at Δ = 0:", w0),
            Step("∂c̃/∂Δ = (1 − αu)² ≥ 0 (T4), so sup c̃ is the limit Δ → ∞:", sup_ct),
            Step(
                "It is 0 at α = 1 and its α-derivative is negative on (0, 1) (sympy, α = 1/(1 + T)), so "
                "it is positive for α < 1:",
                cap_slope,
            ),
            Step("∂c_det/∂Δ = 1 − αu ≥ 0; sup c_det = lim_{Δ→∞} log u =", sup_cd),
            Step("Uncentred c = log u + 1 − αu, also non-decreasing; its limit at ∞ is", sup_c),
            Step(
                "c̃(0) = 0 (E6) and c̃ strictly increasing ⇒ sign(c̃) = sign(Δ). E9 with h = 1: "
                "ĉ = min(c̃(Δ; α_lo), 0) + 0 ≤ 0. Adaptive mode with h = 0: ĉ = c̃ − 0·max(c̃, 0) = c̃."
            ),
        ),
        results=(
            Result("w_at_zero", w0, (ALPHA,), "w(0; α)"),
            Result("sup_c_tilde", sup_ct, (ALPHA,), "sup_Δ c̃"),
            Result("sup_c_det", sup_cd, (ALPHA,), "sup_Δ c_det"),
            Result("sup_c", sup_c, (ALPHA,), "sup_Δ c"),
        ),
        implementation=(
            "askd_ref.coefficients.tgo_coefficient",
            "askd_ref.coefficients.sgo_coefficient",
            "askd_ref.coefficients.clipped_sgo_coefficient",
        ),
    )


@functools.cache
def derive_t5_monotone_in_quality() -> Derivation:
    """T5: w non-decreasing in r; push-down non-increasing in r."""
    w = sigmoid(DELTA - logit(ALPHA))
    alpha_t = ALPHA_HI - (ALPHA_HI - ALPHA_LO) * R
    dw_dr = sp.simplify(sp.diff(w.subs(ALPHA, alpha_t), R))
    dw_da = sp.simplify(sp.diff(w, ALPHA))
    require_equal(dw_da, -w * (1 - w) / (ALPHA * (1 - ALPHA)), "∂w/∂α < 0")
    dct_da_u = in_terms_of_u(sp.diff(c_tilde_of(DELTA, ALPHA), ALPHA))
    require_equal(dct_da_u, -(U - 1) * (2 - ALPHA * (U + 1)) / (1 - ALPHA), "∂c̃/∂α in u")
    alpha_s = ALPHA_LO + (ALPHA_HI - ALPHA_LO) * R
    h = (R - TAU_LO) / (TAU_HI - TAU_LO)
    push = (1 - h) * c_tilde_of(DELTA, alpha_s)
    dpush = sp.diff(push, R)
    cap = -sp.log(ALPHA) - (1 - ALPHA)
    dcap = sp.diff(cap, ALPHA)
    require_sign_on_unit_interval(dcap, ALPHA, "negative", "cap decreasing in α")
    gate = soft_gate_expr()
    return Derivation(
        label="T5",
        function="derive_t5_monotone_in_quality",
        title="Monotonicity in quality",
        claim=(
            "∂w(Δ, α_T(r))/∂r = (α_hi − α_lo)·w(1 − w)/(α(1 − α)) ≥ 0; for Δ > 0 the push-down "
            "max(ĉ, 0) = (1 − h(r))·c̃(Δ; α_S(r)) is non-increasing in r because h is non-decreasing, "
            "α_S is increasing and ∂c̃/∂α = −(u − 1)(2 − α(u + 1))/(1 − α) < 0 for u > 1; the cap "
            "log(1/α) − (1 − α) decreases in α."
        ),
        steps=(
            Step("∂w/∂α =", dw_da),
            Step("times dα_T/dr = −(α_hi − α_lo) ≤ 0 gives", dw_dr),
            Step("∂c̃/∂α in u (T4):", dct_da_u),
            Step(
                "For Δ > 0, u ∈ (1, 1/α], 2 − α(u + 1) ≥ 1 − α > 0, so ∂c̃/∂α < 0. On the gate's ramp, "
                "∂/∂r of (1 − h)c̃(Δ; α_S(r)) is",
                dpush,
            ),
            Step(
                "= −h'·c̃ + (1 − h)·(α_hi − α_lo)·∂c̃/∂α ≤ 0 (c̃ > 0, h' ≥ 0); off the ramp h' = 0 and the "
                "same sign argument applies. The gate itself:",
                gate,
            ),
            Step("d/dα of the push-down cap log(1/α) − (1 − α):", dcap),
        ),
        results=(
            Result("dw_dr", dw_dr, (DELTA, R, ALPHA_LO, ALPHA_HI), "∂w(Δ, α_T(r))/∂r"),
            Result(
                "dpush_dr",
                dpush,
                (DELTA, R, ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
                "∂/∂r of the push-down on the ramp",
            ),
            Result("dcap_dalpha", dcap, (ALPHA,), "d/dα of log(1/α) − (1 − α)"),
        ),
        implementation=(
            "askd_ref.schedules.tgo_alpha",
            "askd_ref.schedules.sgo_alpha",
            "askd_ref.coefficients.clipped_sgo_coefficient",
        ),
    )


@functools.cache
def derive_t6_limits() -> Derivation:
    """T6: limits α → 0 and α → 1."""
    w = sigmoid(DELTA - logit(ALPHA))
    c = c_full_of(DELTA, ALPHA)
    ct = c_tilde_of(DELTA, ALPHA)
    w0 = limit(w, ALPHA, 0)
    c0 = limit(c, ALPHA, 0)
    ct0 = limit(ct, ALPHA, 0)
    w1 = limit(w, ALPHA, 1)
    c1 = limit(c, ALPHA, 1)
    ct1 = limit(ct, ALPHA, 1)
    require_equal(w0, 1, "w → 1 as α → 0")
    require_equal(c0, DELTA + 1, "c → Δ + 1 as α → 0")
    require_equal(ct0, DELTA, "c̃ → Δ as α → 0")
    require_zero(w1, "w → 0 as α → 1")
    require_zero(c1, "c → 0 as α → 1")
    require_zero(ct1, "c̃ → 0 as α → 1")
    return Derivation(
        label="T6",
        function="derive_t6_limits",
        title="Limits α → 0 and α → 1",
        claim=(
            "As α → 0: w → 1 (plain NLL on TGOs) and c → Δ + 1 (the reverse-KL policy-gradient "
            "coefficient; c̃ → Δ). As α → 1: w → 0 and c, c̃ → 0 (no learning signal)."
        ),
        steps=(
            Step("lim_{α→0} w =", w0),
            Step("lim_{α→0} c = lim (log u + 1 − αu), u → e^Δ:", c0),
            Step("lim_{α→0} c̃ =", ct0),
            Step("lim_{α→1} w =", w1),
            Step("lim_{α→1} c (u → 1):", c1),
            Step("lim_{α→1} c̃ =", ct1),
        ),
        results=(
            Result("w_alpha_to_0", w0, (DELTA,), "lim_{α→0} w"),
            Result("c_alpha_to_0", c0, (DELTA,), "lim_{α→0} c"),
            Result("c_tilde_alpha_to_0", ct0, (DELTA,), "lim_{α→0} c̃"),
            Result("w_alpha_to_1", w1, (DELTA,), "lim_{α→1} w"),
            Result("c_tilde_alpha_to_1", ct1, (DELTA,), "lim_{α→1} c̃"),
        ),
        implementation=(
            "askd_ref.coefficients.tgo_coefficient",
            "askd_ref.coefficients.sgo_coefficient",
        ),
    )


@functools.cache
def derive_t7_divergence_bounds() -> Derivation:
    """T7: SKL/SRKL bounds, monotone and convex in α, |dSKL/dα| ≤ TV/α (tight)."""
    m = ALPHA * P + (1 - ALPHA) * Q
    f = P * sp.log(P / m)
    df = sp.simplify(sp.diff(f, ALPHA))
    require_equal(df, -P * (P - Q) / m, "dSKL-term/dα = −p(p − q)/m")
    d2f = sp.simplify(sp.diff(f, ALPHA, 2))
    require_equal(d2f, P * (P - Q) ** 2 / m**2, "d²SKL-term/dα² = p(p − q)²/m²")
    ratio_gap = sp.simplify(ALPHA * P / m - 1)
    require_equal(ratio_gap, -(1 - ALPHA) * Q / m, "αp/m − 1 = −(1−α)q/m ≤ 0")
    m_r = (1 - ALPHA) * P + ALPHA * Q
    g = Q * sp.log(Q / m_r)
    dg = sp.simplify(sp.diff(g, ALPHA))
    require_equal(dg, -Q * (Q - P) / m_r, "dSRKL-term/dα")
    d2g = sp.simplify(sp.diff(g, ALPHA, 2))
    require_equal(d2g, Q * (Q - P) ** 2 / m_r**2, "d²SRKL-term/dα²")
    # Disjoint supports: p = (1, 0), q = (0, 1); SKL = log(1/α), dSKL/dα = −1/α, TV = 1.
    skl_disjoint = sp.simplify(f.subs({P: 1, Q: 0}))
    require_equal(skl_disjoint, -sp.log(ALPHA), "SKL at disjoint supports")
    dskl_disjoint = sp.simplify(sp.diff(skl_disjoint, ALPHA))
    require_equal(dskl_disjoint, -1 / ALPHA, "dSKL/dα at disjoint supports")
    return Derivation(
        label="T7",
        function="derive_t7_divergence_bounds",
        title="Bounds on the skew divergences and their α-dependence",
        claim=(
            "0 ≤ SKL_α ≤ min(log(1/α), (1−α)KL(p‖q)) and likewise SRKL_α with KL(q‖p); both are convex "
            "and non-increasing in α; |dSKL_α/dα| ≤ TV(p, q)/α (TV = ½Σ|p − q|); SKL_α = 0 iff p = q. "
            "log(1/α) and TV/α are attained for disjoint supports."
        ),
        steps=(
            Step("Per-outcome term of SKL_α as a function of α, m = αp + (1−α)q:", f),
            Step("First derivative:", df),
            Step("Second derivative (≥ 0): SKL_α is convex in α.", d2f),
            Step(
                "SKL_1 = 0 and SKL_0 = KL(p‖q); convexity gives SKL_α ≤ (1−α)KL(p‖q) + α·0. A convex "
                "function on [0, 1] that is ≥ 0 and 0 at α = 1 is non-increasing."
            ),
            Step("m ≥ αp, i.e. αp/m − 1 =", ratio_gap),
            Step("≤ 0, so p/m ≤ 1/α and SKL_α = Σ p log(p/m) ≤ log(1/α)."),
            Step(
                "dSKL/dα = −Σ(p − q)·p/m = −Σ(p − q)(p/m − 1/(2α)) because Σ(p − q) = 0; with "
                "0 ≤ p/m ≤ 1/α, |p/m − 1/(2α)| ≤ 1/(2α), so |dSKL/dα| ≤ Σ|p − q|/(2α) = TV/α."
            ),
            Step("Disjoint supports p = (1, 0), q = (0, 1): SKL_α =", skl_disjoint),
            Step("and dSKL/dα = −1/α = −TV/α: both bounds are attained.", dskl_disjoint),
            Step(
                "Zero iff p = q: SKL = KL(p‖m) = 0 iff m = p iff (1−α)(q − p) = 0. SRKL: the same steps "
                "with p and q exchanged (term q log(q/((1−α)p + αq)), derivative below).",
                dg,
            ),
        ),
        results=(
            Result("dskl_dalpha_term", df, (P, Q, ALPHA), "d/dα of the SKL term"),
            Result("d2skl_dalpha2_term", d2f, (P, Q, ALPHA), "d²/dα² of the SKL term"),
            Result("dsrkl_dalpha_term", dg, (P, Q, ALPHA), "d/dα of the SRKL term"),
            Result("d2srkl_dalpha2_term", d2g, (P, Q, ALPHA), "d²/dα² of the SRKL term"),
            Result("skl_disjoint", skl_disjoint, (ALPHA,), "SKL_α for disjoint supports"),
        ),
        implementation=(
            "askd_ref.divergences.skew_forward_kl",
            "askd_ref.divergences.skew_reverse_kl",
        ),
    )


_K = 3


@functools.cache
def derive_t8_logit_gradient_bounds() -> Derivation:
    """T8: ∇_z SKL = Wq − p⊙w (‖·‖₁ ≤ 2); ∇_z SRKL = q⊙(c − c̄) (‖·‖₁ ≤ 2(log(1/α) + 1 + 1/e))."""
    z = sp.symbols(f"z1:{_K + 1}", real=True)
    p = sp.symbols(f"p1:{_K + 1}", positive=True)
    qs = sp.symbols(f"q1:{_K + 1}", positive=True)
    jac = sp.ImmutableMatrix(_K, _K, lambda i, j: qs[i] * (int(i == j) - qs[j]))
    m_f = [ALPHA * p[i] + (1 - ALPHA) * qs[i] for i in range(_K)]
    m_r = [(1 - ALPHA) * p[i] + ALPHA * qs[i] for i in range(_K)]
    skl = sum(p[i] * sp.log(p[i] / m_f[i]) for i in range(_K))
    srkl = sum(qs[i] * sp.log(qs[i] / m_r[i]) for i in range(_K))
    w = [(1 - ALPHA) * qs[i] / m_f[i] for i in range(_K)]
    big_w = sum(p[i] * w[i] for i in range(_K))
    c = [sp.log(qs[i] / m_r[i]) + 1 - ALPHA * qs[i] / m_r[i] for i in range(_K)]
    c_bar = sum(qs[i] * c[i] for i in range(_K))
    grad_skl = sp.ImmutableMatrix(
        [sum(sp.diff(skl, qs[i]) * jac[i, j] for i in range(_K)) for j in range(_K)]
    )
    grad_srkl = sp.ImmutableMatrix(
        [sum(sp.diff(srkl, qs[i]) * jac[i, j] for i in range(_K)) for j in range(_K)]
    )
    closed_skl = sp.ImmutableMatrix([big_w * qs[j] - p[j] * w[j] for j in range(_K)])
    closed_srkl = sp.ImmutableMatrix([qs[j] * (c[j] - c_bar) for j in range(_K)])
    require_zero(grad_skl - closed_skl, "∇_z SKL = W q − p⊙w")
    require_zero(grad_srkl - closed_srkl, "∇_z SRKL = q⊙(c − c̄)")
    x = sp.Symbol("x", positive=True)
    xlog = x * sp.log(1 / x)
    crit = sp.solve(sp.diff(xlog, x), x)
    if crit != [sp.exp(-1)]:
        raise DerivationError(f"critical point of x log(1/x): {crit}")
    peak = sp.simplify(xlog.subs(x, crit[0]))
    require_equal(peak, sp.exp(-1), "max of x log(1/x)")
    if limit(xlog, x, 0) != 0:
        raise DerivationError("x log(1/x) → 0 as x → 0")
    srkl_bound = 2 * (-sp.log(ALPHA) + 1 + sp.exp(-1))
    zsub = {qs[i]: sp.exp(z[i]) / sum(sp.exp(zk) for zk in z) for i in range(_K)}
    return Derivation(
        label="T8",
        function="derive_t8_logit_gradient_bounds",
        title="Logit-gradient bounds of the skew divergences",
        claim=(
            "For q = softmax(z): ∇_z SKL_α = W q − p⊙w with w_v = (1−α)q_v/m_v ∈ [0, 1), W = Σ p w, so "
            "‖∇_z SKL_α‖₁ ≤ 2W ≤ 2; ∇_z SRKL_α = q⊙(c − c̄) with c_v = log u_v + 1 − αu_v, so "
            "‖∇_z SRKL_α‖₁ ≤ 2(log(1/α) + 1 + 1/e)."
        ),
        steps=(
            Step(
                "Softmax Jacobian ∂q_i/∂z_j = q_i(δ_ij − q_j) (T1). Chain rule for SKL, simplified:",
                closed_skl,
            ),
            Step(
                "(sympy: ∂SKL/∂z − (W q − p⊙w) simplifies to 0). ‖W q − p⊙w‖₁ ≤ WΣq + Σ p w = 2W, and "
                "w_v < 1 ⇒ W < Σ p = 1."
            ),
            Step("Chain rule for SRKL:", closed_srkl),
            Step(
                "‖q⊙(c − c̄)‖₁ ≤ 2Σ q|c|. Since 0 ≤ αu ≤ 1, |c| ≤ |log u| + 1. Where u ≥ 1, "
                "q|log u| ≤ q log(1/α) (u ≤ 1/α). Where u < 1, q log(1/u) = m·u log(1/u) ≤ "
                "m·sup_x x log(1/x). "
                "Critical point of x log(1/x):",
                crit[0],
            ),
            Step("value (the supremum on (0, 1], the function → 0 at 0):", peak),
            Step("Summing (Σ q ≤ 1, Σ m ≤ 1): ‖∇_z SRKL_α‖₁ ≤", srkl_bound),
        ),
        results=(
            Result(
                "grad_z_skl",
                closed_skl.subs(zsub),
                (*z, *p, ALPHA),
                "W q − p⊙w at q = softmax(z)",
                closed_skl,
            ),
            Result(
                "grad_z_srkl",
                closed_srkl.subs(zsub),
                (*z, *p, ALPHA),
                "q⊙(c − c̄) at q = softmax(z)",
                closed_srkl,
            ),
            Result("srkl_bound", srkl_bound, (ALPHA,), "bound on ‖∇_z SRKL_α‖₁"),
            Result("xlog_sup", peak, (), "sup_{x∈(0,1]} x log(1/x)"),
        ),
        implementation=(
            "askd_ref.divergences.skew_forward_kl",
            "askd_ref.divergences.skew_reverse_kl",
        ),
        values=(
            ("skl_bound", sp.Integer(2)),
            ("srkl_bound_at_alpha_0.1", srkl_bound.subs(ALPHA, sp.Rational(1, 10))),
        ),
    )
