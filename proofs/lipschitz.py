"""T4: Lipschitz constants of the update coefficients, as suprema of symbolic derivatives.

Each constant is sup |∂f/∂x| over the domain: the derivative is computed symbolically, its
critical points are solved for (or its monotonicity shown, so the supremum is a limit), and
the limit or critical value is evaluated. "Tight" means the supremum is attained or
approached, so no smaller constant is valid; ``checks/`` asserts measured ≥ 0.99·constant.

The sharp constant of ĉ in quality r (soft gate) is derived for every combination of the
options that shape it (``schedule`` linear/logit, ``mixture_grad`` full/stop, ``sgo_pullup``
fixed/adaptive) in closed form in α_lo, α_hi, τ_lo, τ_hi.
"""

import functools
import itertools

import sympy as sp

from proofs._core import (
    ALPHA,
    ALPHA_HI,
    ALPHA_LO,
    DELTA,
    TAU,
    TAU_HI,
    TAU_LO,
    Derivation,
    DerivationError,
    Expr,
    R,
    Result,
    Step,
    U,
    c_det_of,
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

__all__ = [
    "derive_t4_hard_gate_jump",
    "derive_t4_lipschitz_c_alpha",
    "derive_t4_lipschitz_c_delta",
    "derive_t4_lipschitz_c_hat_delta",
    "derive_t4_lipschitz_c_hat_quality",
    "derive_t4_lipschitz_w_alpha",
    "derive_t4_lipschitz_w_delta",
    "derive_t4_lipschitz_w_quality",
    "sharp_quality_constant",
    "spec_quality_bound",
]

_DEFAULTS: dict[Expr, Expr] = {
    ALPHA_LO: sp.Rational(1, 10),
    ALPHA_HI: sp.Rational(9, 10),
    TAU_LO: sp.Rational(1, 2),
    TAU_HI: sp.Integer(1),
    TAU: sp.Rational(3, 4),
}


def _w() -> Expr:
    return sigmoid(DELTA - logit(ALPHA))


@functools.cache
def derive_t4_lipschitz_w_delta() -> Derivation:
    """T4: |∂w/∂Δ| ≤ 1/4, attained at Δ = logit α."""
    w = _w()
    dw = sp.simplify(sp.diff(w, DELTA))
    require_equal(dw, w * (1 - w), "∂w/∂Δ = w(1 − w)")
    d2w = sp.simplify(sp.diff(dw, DELTA))
    crit = sp.solve(sp.Eq(sp.numer(sp.together(d2w)), 0), DELTA)
    if len(crit) != 1:
        raise DerivationError(f"expected one critical point of ∂w/∂Δ, got {crit}")
    argmax = sp.simplify(crit[0])
    require_equal(argmax, logit(ALPHA), "critical point Δ = logit α")
    peak = sp.simplify(dw.subs(DELTA, argmax))
    require_equal(peak, sp.Rational(1, 4), "peak value")
    limits = (limit(dw, DELTA, -sp.oo), limit(dw, DELTA, sp.oo))
    if limits != (0, 0):
        raise DerivationError(f"∂w/∂Δ should vanish at ±∞, got {limits}")
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_w_delta",
        title="w is 1/4-Lipschitz in Δ (tight)",
        claim="|∂w/∂Δ| = w(1 − w) ≤ 1/4 for every α ∈ (0, 1), with equality at Δ = logit α.",
        steps=(
            Step("Differentiate w = σ(Δ − logit α):", dw),
            Step("which equals w(1 − w) ≥ 0. Second derivative:", d2w),
            Step("Its only zero (critical point of ∂w/∂Δ) is Δ* =", argmax),
            Step("∂w/∂Δ → 0 as Δ → ±∞, so the supremum is the critical value ∂w/∂Δ(Δ*) =", peak),
        ),
        results=(
            Result("dw_ddelta", dw, (DELTA, ALPHA), "∂w/∂Δ"),
            Result("argmax", argmax, (ALPHA,), "Δ at which |∂w/∂Δ| is largest"),
            Result("constant", peak, (), "Lipschitz constant of w in Δ"),
        ),
        implementation=("askd_ref.coefficients.tgo_coefficient",),
        values=(("constant", peak),),
    )


@functools.cache
def derive_t4_lipschitz_w_alpha() -> Derivation:
    """T4: |∂w/∂α| ≤ 1/(4α(1−α)), attained at Δ = logit α."""
    w = _w()
    dwa = sp.simplify(sp.diff(w, ALPHA))
    require_equal(dwa, -w * (1 - w) / (ALPHA * (1 - ALPHA)), "∂w/∂α = −w(1−w)/(α(1−α))")
    sup_delta = sp.simplify(-dwa.subs(DELTA, logit(ALPHA)))
    require_equal(sup_delta, 1 / (4 * ALPHA * (1 - ALPHA)), "sup over Δ")
    kappa = sp.Min(ALPHA_LO * (1 - ALPHA_LO), ALPHA_HI * (1 - ALPHA_HI))
    on_interval = 1 / (4 * kappa)
    concave = sp.diff(ALPHA * (1 - ALPHA), ALPHA, 2)
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_w_alpha",
        title="w is 1/(4α(1−α))-Lipschitz in α (tight)",
        claim=(
            "|∂w/∂α| = w(1 − w)/(α(1 − α)) ≤ 1/(4α(1 − α)), equality at Δ = logit α; on α ∈ [a, b] "
            "the constant is 1/(4κ), κ = min(a(1 − a), b(1 − b))."
        ),
        steps=(
            Step("Differentiate w = σ(Δ − logit α) in α (d logit α/dα = 1/(α(1−α))):", dwa),
            Step(
                "The Δ-dependence is the factor w(1 − w), maximal (1/4) at Δ = logit α (previous "
                "derivation), so sup_Δ |∂w/∂α| =",
                sup_delta,
            ),
            Step(
                "α(1 − α) is concave (second derivative below), so on [a, b] its minimum is at an end "
                "point and sup_{α∈[a,b]} 1/(4α(1−α)) =",
                concave,
            ),
            Step("", on_interval),
        ),
        results=(
            Result("dw_dalpha", dwa, (DELTA, ALPHA), "∂w/∂α"),
            Result("constant", sup_delta, (ALPHA,), "sup_Δ |∂w/∂α|"),
            Result(
                "constant_on_interval",
                on_interval,
                (ALPHA_LO, ALPHA_HI),
                "constant on α ∈ [α_lo, α_hi]",
            ),
        ),
        implementation=("askd_ref.coefficients.tgo_coefficient",),
        values=(("constant_at_alpha_0.1", sup_delta.subs(ALPHA, sp.Rational(1, 10))),),
    )


@functools.cache
def derive_t4_lipschitz_c_delta() -> Derivation:
    """T4: ∂c̃/∂Δ = (1 − αu)² ∈ (0, 1]; c_det has slope 1 − αu; both 1-Lipschitz (tight)."""
    u = u_of(DELTA, ALPHA)
    dct = sp.simplify(sp.diff(c_tilde_of(DELTA, ALPHA), DELTA))
    require_equal(dct, (1 - ALPHA * u) ** 2, "∂c̃/∂Δ = (1 − αu)²")
    dcd = sp.simplify(sp.diff(c_det_of(DELTA, ALPHA), DELTA))
    require_equal(dcd, 1 - ALPHA * u, "∂c_det/∂Δ = 1 − αu")
    dct_u = in_terms_of_u(dct)
    require_equal(dct_u, (1 - ALPHA * U) ** 2, "slope in u")
    sup = limit(dct, DELTA, -sp.oo)
    inf = limit(dct, DELTA, sp.oo)
    require_equal(sup, 1, "slope → 1 as Δ → −∞")
    require_zero(inf, "slope → 0 as Δ → +∞")
    d_slope_u = sp.diff(dct_u, U)
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_c_delta",
        title="c̃ and c_det are 1-Lipschitz and non-decreasing in Δ (tight)",
        claim=(
            "∂c̃/∂Δ = (1 − αu)² ∈ (0, 1) and ∂c_det/∂Δ = 1 − αu ∈ (0, 1); the supremum 1 is approached "
            "as Δ → −∞ (u → 0) for every α."
        ),
        steps=(
            Step("Differentiate c̃ = log u − α(u − 1) in Δ:", dct),
            Step("in u: (1 − αu)². Its derivative in u is", d_slope_u),
            Step(
                "which is ≤ 0 on u ∈ (0, 1/α], and u is increasing in Δ, so the slope decreases from "
                "its limit at Δ → −∞ (u → 0) to 0 at Δ → ∞ (u → 1/α). Limit at −∞:",
                sup,
            ),
            Step("Stop mode: ∂c_det/∂Δ = 1 − αu, with the same limits 1 and 0:", dcd),
        ),
        results=(
            Result("dc_tilde_ddelta", dct, (DELTA, ALPHA), "∂c̃/∂Δ"),
            Result("dc_det_ddelta", dcd, (DELTA, ALPHA), "∂c_det/∂Δ"),
            Result("constant", sup, (), "Lipschitz constant in Δ"),
        ),
        implementation=("askd_ref.coefficients.sgo_coefficient",),
        values=(("constant", sup),),
    )


def _coef(mixture_grad: str) -> Expr:
    return c_tilde_of(DELTA, ALPHA) if mixture_grad == "full" else c_det_of(DELTA, ALPHA)


@functools.cache
def _alpha_sensitivity(mixture_grad: str) -> tuple[Expr, Expr, Expr, Expr, Expr]:
    """∂coef/∂α in Δ and in u, its limits at Δ → −∞ / +∞, and the push-down cap lim_{Δ→∞} coef."""
    coef = _coef(mixture_grad)
    d_alpha = sp.simplify(sp.diff(coef, ALPHA))
    d_alpha_u = in_terms_of_u(d_alpha)
    at_minus = sp.simplify(limit(d_alpha, DELTA, -sp.oo))
    at_plus = sp.simplify(limit(d_alpha, DELTA, sp.oo))
    cap = sp.simplify(sp.expand_log(limit(coef, DELTA, sp.oo), force=True))
    # Monotone in u (hence in Δ): d/du of ∂coef/∂α ≤ 0 on u ∈ (0, 1/α]. Put u = 1/(α(1 + s)),
    # s ≥ 0, and α = 1/(1 + T), T > 0.
    s, t = sp.symbols("s T", positive=True)
    slope_u = sp.simplify(sp.diff(d_alpha_u, U).subs(U, 1 / (ALPHA * (1 + s))).subs(ALPHA, 1 / (1 + t)))
    if sp.simplify(-slope_u).is_nonnegative is not True:
        raise DerivationError(f"∂coef/∂α not shown monotone in u ({mixture_grad}): {slope_u}")
    require_zero(d_alpha_u.subs(U, 1), f"∂coef/∂α vanishes at u = 1 ({mixture_grad})")
    return d_alpha, d_alpha_u, at_minus, at_plus, cap


@functools.cache
def derive_t4_lipschitz_c_alpha() -> Derivation:
    """T4: ∂c̃/∂α ∈ [1 − 1/α, 1 + 1/(1−α)], so |∂c̃/∂α| ≤ max(1/α − 1, 1 + 1/(1−α)) (tight)."""
    d_alpha, d_alpha_u, at_minus, at_plus, _ = _alpha_sensitivity("full")
    require_equal(d_alpha_u, -(U - 1) * (2 - ALPHA * (U + 1)) / (1 - ALPHA), "∂c̃/∂α in u")
    require_equal(at_minus, 1 + 1 / (1 - ALPHA), "∂c̃/∂α at Δ → −∞")
    require_equal(at_plus, 1 - 1 / ALPHA, "∂c̃/∂α at Δ → +∞")
    bound = sp.Max(1 / ALPHA - 1, 1 + 1 / (1 - ALPHA))
    dd_alpha, dd_alpha_u, dd_minus, dd_plus, _ = _alpha_sensitivity("stop")
    require_equal(dd_alpha_u, -(U - 1) / (1 - ALPHA), "∂c_det/∂α in u")
    require_equal(dd_minus, 1 / (1 - ALPHA), "∂c_det/∂α at −∞")
    require_equal(dd_plus, -1 / ALPHA, "∂c_det/∂α at +∞")
    dc_full = sp.simplify(d_alpha - 1)
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_c_alpha",
        title="c̃ is max(1/α − 1, 1 + 1/(1−α))-Lipschitz in α (tight)",
        claim=(
            "∂c̃/∂α = −(u − 1)(2 − α(u + 1))/(1 − α), decreasing in Δ, with range (1 − 1/α, 1 + 1/(1−α)) "
            "approached at Δ → ±∞; so |∂c̃/∂α| ≤ max(1/α − 1, 1 + 1/(1−α)), tight. Sign: ∂c̃/∂α < 0 "
            "for Δ > 0 and > 0 for Δ < 0. Uncentred c: ∂c/∂α = ∂c̃/∂α − 1 ∈ (−1/α, 1/(1−α)); "
            "stop mode: ∂c_det/∂α = −(u − 1)/(1 − α) ∈ (−1/α, 1/(1−α))."
        ),
        steps=(
            Step("Differentiate c̃(Δ; α) in α (u depends on α):", d_alpha),
            Step("Eliminate Δ with e^{−Δ} = (1/u − α)/(1 − α) and factor:", d_alpha_u),
            Step(
                "Its u-derivative is (2 − 2αu)/(1 − α)·(−1) ≤ 0 on u ∈ (0, 1/α], so ∂c̃/∂α decreases in u "
                "and in Δ; the factor 2 − α(u + 1) ≥ 1 − α > 0 there, so sign(∂c̃/∂α) = −sign(u − 1) = "
                "−sign(Δ). Limit as Δ → −∞ (u → 0):",
                at_minus,
            ),
            Step("Limit as Δ → +∞ (u → 1/α):", at_plus),
            Step("Hence the tight bound", bound),
            Step("Uncentred c = c̃ + 1 − α: ∂c/∂α = ∂c̃/∂α − 1 =", dc_full),
            Step("Stop mode: ∂c_det/∂α in u =", dd_alpha_u),
        ),
        results=(
            Result("dc_tilde_dalpha", d_alpha, (DELTA, ALPHA), "∂c̃/∂α"),
            Result("dc_tilde_dalpha_u", d_alpha_u, (U, ALPHA), "∂c̃/∂α as a function of u"),
            Result("upper", at_minus, (ALPHA,), "sup_Δ ∂c̃/∂α (Δ → −∞)"),
            Result("lower", at_plus, (ALPHA,), "inf_Δ ∂c̃/∂α (Δ → +∞)"),
            Result("constant", bound, (ALPHA,), "Lipschitz constant of c̃ in α"),
            Result("dc_det_dalpha", dd_alpha, (DELTA, ALPHA), "∂c_det/∂α"),
        ),
        implementation=("askd_ref.coefficients.sgo_coefficient",),
        values=(("constant_at_alpha_0.1", bound.subs(ALPHA, sp.Rational(1, 10))),),
    )


@functools.cache
def derive_t4_lipschitz_c_hat_delta() -> Derivation:
    """T4: ĉ is 1-Lipschitz and non-decreasing in Δ (tight)."""
    a_s = sp.Symbol("alpha_S", positive=True)
    h = sp.Symbol("h", nonnegative=True)
    u_lo = u_of(DELTA, ALPHA_LO)
    u_s = u_of(DELTA, a_s)
    slope_pull = sp.simplify(sp.diff(c_tilde_of(DELTA, ALPHA_LO), DELTA))
    slope_push = sp.simplify(sp.diff((1 - h) * c_tilde_of(DELTA, a_s), DELTA))
    require_equal(slope_pull, (1 - ALPHA_LO * u_lo) ** 2, "pull-up slope")
    require_equal(slope_push, (1 - h) * (1 - a_s * u_s) ** 2, "push-down slope")
    sup = limit(slope_pull, DELTA, -sp.oo)
    require_equal(sup, 1, "pull-up slope → 1 as Δ → −∞")
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_c_hat_delta",
        title="ĉ is 1-Lipschitz and non-decreasing in Δ (tight)",
        claim=(
            "On Δ ≤ 0, ∂ĉ/∂Δ = (1 − α_lo u_lo)² (fixed pull-up; α_S(r) in adaptive mode); on Δ > 0, "
            "∂ĉ/∂Δ = (1 − h)(1 − α_S u_S)²; both lie in [0, 1], ĉ is continuous at Δ = 0 (E9), so ĉ is "
            "1-Lipschitz and non-decreasing in Δ; the constant 1 is approached as Δ → −∞."
        ),
        steps=(
            Step("Pull-up piece (Δ ≤ 0), slope:", slope_pull),
            Step("Push-down piece (Δ > 0), slope with gate value h ∈ [0, 1]:", slope_push),
            Step(
                "Both slopes lie in [0, 1] (T4 for c̃, and 0 ≤ 1 − h ≤ 1). A continuous function with "
                "piecewise slopes in [0, 1] is 1-Lipschitz and non-decreasing. The pull-up slope tends to",
                sup,
            ),
        ),
        results=(
            Result("slope_pullup", slope_pull, (DELTA, ALPHA_LO), "∂ĉ/∂Δ on Δ ≤ 0"),
            Result("slope_pushdown", slope_push, (DELTA, a_s, h), "∂ĉ/∂Δ on Δ > 0 (α_S, h given)"),
            Result("constant", sup, (), "Lipschitz constant of ĉ in Δ"),
        ),
        implementation=("askd_ref.coefficients.clipped_sgo_coefficient",),
        values=(("constant", sup),),
    )


@functools.cache
def derive_t4_lipschitz_w_quality() -> Derivation:
    """T4: r ↦ w(Δ, α_T(r)) is L_α/(4κ)-Lipschitz (linear schedule), tight."""
    alpha_t = ALPHA_HI - (ALPHA_HI - ALPHA_LO) * R
    w_r = _w().subs(ALPHA, alpha_t)
    dw_dr = sp.simplify(sp.diff(w_r, R))
    dw_da = sp.diff(_w(), ALPHA)
    require_equal(dw_dr, (-(ALPHA_HI - ALPHA_LO) * dw_da).subs(ALPHA, alpha_t), "chain rule in r")
    kappa = sp.Min(ALPHA_LO * (1 - ALPHA_LO), ALPHA_HI * (1 - ALPHA_HI))
    constant = (ALPHA_HI - ALPHA_LO) / (4 * kappa)
    default = constant.subs(_DEFAULTS)
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_w_quality",
        title="w(Δ, α_T(r)) is L_α/(4κ)-Lipschitz in quality (tight)",
        claim=(
            "With α_T(r) = α_hi − (α_hi − α_lo)r, ∂w/∂r = (α_hi − α_lo)·w(1 − w)/(α(1 − α)) ≥ 0 and "
            "sup_{Δ,r} ∂w/∂r = (α_hi − α_lo)/(4κ), κ = min(α_lo(1 − α_lo), α_hi(1 − α_hi)), attained "
            "at Δ = logit α at the end point of [α_lo, α_hi] with the smaller α(1 − α)."
        ),
        steps=(
            Step("Chain rule: ∂w/∂r = ∂w/∂α·dα_T/dr with dα_T/dr = −(α_hi − α_lo):", dw_dr),
            Step(
                "sup over Δ of |∂w/∂α| is 1/(4α(1 − α)) at Δ = logit α (derivation above); over "
                "α ∈ [α_lo, α_hi] it is largest where α(1 − α) is smallest, an end point:",
                constant,
            ),
            Step("At the defaults (α_lo = 0.1, α_hi = 0.9):", default),
        ),
        results=(
            Result("dw_dr", dw_dr, (DELTA, R, ALPHA_LO, ALPHA_HI), "∂w(Δ, α_T(r))/∂r"),
            Result("constant", constant, (ALPHA_LO, ALPHA_HI), "Lipschitz constant of w in r"),
        ),
        implementation=("askd_ref.schedules.tgo_alpha", "askd_ref.coefficients.tgo_coefficient"),
        values=(("constant_default", default),),
    )


# --------------------------------------------------------------------------- ĉ in quality

_COMBOS: tuple[tuple[str, str, str], ...] = tuple(
    itertools.product(("linear", "logit"), ("full", "stop"), ("fixed", "adaptive"))
)


def _schedule(schedule: str) -> tuple[Expr, Expr]:
    """α_S(r) and its slope dα_S/dr written as a function of α = α_S(r)."""
    if schedule == "linear":
        return ALPHA_LO + (ALPHA_HI - ALPHA_LO) * R, ALPHA_HI - ALPHA_LO
    k = logit(ALPHA_HI) - logit(ALPHA_LO)
    return sigmoid((1 - R) * logit(ALPHA_LO) + R * logit(ALPHA_HI)), ALPHA * (1 - ALPHA) * k


@functools.cache
def _quality_pieces(schedule: str, mixture_grad: str) -> dict[str, Expr]:
    """The pieces of the sharp constant: A(α), B(α), φ(α), the schedule and the ramp slope."""
    _, _, at_minus, at_plus, cap = _alpha_sensitivity(mixture_grad)
    alpha_s, slope = _schedule(schedule)
    alpha_s_of_r = sp.simplify(sp.diff(alpha_s, R) - slope.subs(ALPHA, alpha_s))
    require_zero(alpha_s_of_r, f"schedule slope written in α ({schedule})")
    push = sp.simplify(slope * (-at_plus))  # A(α) = dα/dr · |∂coef/∂α| at Δ → ∞
    pull = sp.simplify(slope * at_minus)  # B(α) = dα/dr · ∂coef/∂α at Δ → −∞
    # Signs on α ∈ (0, 1), with the positive constant factor of the logit slope divided out.
    scale = 1 if schedule == "linear" else logit(ALPHA_HI) - logit(ALPHA_LO)
    lin = ALPHA_HI - ALPHA_LO if schedule == "linear" else 1
    require_sign_on_unit_interval(sp.diff(push / scale / lin, ALPHA), ALPHA, "negative", "A'(α) < 0")
    require_sign_on_unit_interval(sp.diff(pull / scale / lin, ALPHA), ALPHA, "positive", "B'(α) > 0")
    require_sign_on_unit_interval(sp.diff(cap, ALPHA), ALPHA, "negative", "φ'(α) < 0")
    return {"A": push, "B": pull, "phi": cap, "alpha_s": alpha_s, "slope": slope}


def sharp_quality_constant(
    schedule: str = "linear", mixture_grad: str = "full", pullup: str = "fixed"
) -> Expr:
    """The sharp Lipschitz constant of r ↦ ĉ(Δ, r) (soft gate), uniform in Δ, in closed form.

    A function of α_lo, α_hi, τ_lo, τ_hi (the sympy symbols of :mod:`proofs._core`).
    """
    if (schedule, mixture_grad, pullup) not in _COMBOS:
        raise ValueError(f"unknown option combination {(schedule, mixture_grad, pullup)}")
    pieces = _quality_pieces(schedule, mixture_grad)
    big_a, big_b, phi, alpha_s = pieces["A"], pieces["B"], pieces["phi"], pieces["alpha_s"]
    l_h = 1 / (TAU_HI - TAU_LO)
    a_ramp = alpha_s.subs(R, TAU_LO)
    fixed = sp.Max(big_a.subs(ALPHA, ALPHA_LO), l_h * phi.subs(ALPHA, a_ramp) + big_a.subs(ALPHA, a_ramp))
    if pullup == "fixed":
        return fixed
    return sp.Max(fixed, big_b.subs(ALPHA, ALPHA_HI))


def spec_quality_bound() -> Expr:
    """The spec's (non-sharp) bound L_α·max(1/α_lo − 1, 1 + 1/(1−α_hi)) + L_h·(log(1/α_lo) − (1−α_lo))."""
    l_a = ALPHA_HI - ALPHA_LO
    l_h = 1 / (TAU_HI - TAU_LO)
    return l_a * sp.Max(1 / ALPHA_LO - 1, 1 + 1 / (1 - ALPHA_HI)) + l_h * (-sp.log(ALPHA_LO) - (1 - ALPHA_LO))


def _name(schedule: str, mixture_grad: str, pullup: str) -> str:
    return f"constant_{schedule}_{mixture_grad}_{pullup}"


@functools.cache
def derive_t4_lipschitz_c_hat_quality() -> Derivation:
    """T4 (E9, soft gate): the sharp Lipschitz constant of ĉ in quality r, derived exactly."""
    pieces = _quality_pieces("linear", "full")
    big_a, phi = pieces["A"], pieces["phi"]
    alpha_s = pieces["alpha_s"]
    h_ramp = (R - TAU_LO) / (TAU_HI - TAU_LO)
    l_h = 1 / (TAU_HI - TAU_LO)
    coef = c_tilde_of(DELTA, ALPHA)
    d_alpha = _alpha_sensitivity("full")[0]
    below = sp.simplify(sp.diff(coef.subs(ALPHA, alpha_s), R))
    require_equal(below, ((ALPHA_HI - ALPHA_LO) * d_alpha).subs(ALPHA, alpha_s), "∂ĉ/∂r below the ramp")
    on_ramp = sp.diff((1 - h_ramp) * coef.subs(ALPHA, alpha_s), R)
    require_equal(
        on_ramp,
        (-l_h * coef + (1 - h_ramp) * (ALPHA_HI - ALPHA_LO) * d_alpha).subs(ALPHA, alpha_s),
        "∂ĉ/∂r on the ramp",
    )
    g_of_r = l_h * phi.subs(ALPHA, alpha_s) + (1 - h_ramp) * big_a.subs(ALPHA, alpha_s)
    dg_dr = sp.simplify(sp.diff(g_of_r, R))
    sharp = sharp_quality_constant()
    spec = spec_quality_bound()
    sharp_default = sp.nsimplify(sharp.subs(_DEFAULTS))
    spec_default = sp.simplify(spec.subs(_DEFAULTS))
    results = [
        Result(
            "dc_hat_dr_below_ramp",
            below,
            (DELTA, R, ALPHA_LO, ALPHA_HI),
            "∂ĉ/∂r for Δ > 0, r < τ_lo",
        ),
        Result(
            "dc_hat_dr_on_ramp",
            on_ramp,
            (DELTA, R, ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
            "∂ĉ/∂r for Δ > 0, τ_lo < r < τ_hi",
        ),
        Result(
            "sup_on_ramp",
            g_of_r,
            (R, ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
            "G(r) = sup_Δ |∂ĉ/∂r| on the ramp (Δ → ∞)",
        ),
        Result("spec_bound", spec, (ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI), "the spec's upper bound"),
    ]
    values: list[tuple[str, Expr]] = [
        ("sharp_default", sharp_default),
        ("spec_bound_default", spec_default),
    ]
    for schedule, mixture_grad, pullup in _COMBOS:
        expr = sharp_quality_constant(schedule, mixture_grad, pullup)
        name = _name(schedule, mixture_grad, pullup)
        results.append(
            Result(
                name,
                expr,
                (ALPHA_LO, ALPHA_HI, TAU_LO, TAU_HI),
                f"sharp constant, schedule={schedule}, mixture_grad={mixture_grad}, sgo_pullup={pullup}",
            )
        )
        values.append((f"{name}_default", sp.nsimplify(sp.simplify(expr.subs(_DEFAULTS)))))
    # The spec bound dominates the sharp constant (linear schedule, full mixture gradient).
    for pullup in ("fixed", "adaptive"):
        gap = (spec - sharp_quality_constant("linear", "full", pullup)).subs(_DEFAULTS)
        if not sp.N(gap) >= 0:
            raise DerivationError(f"spec bound below the sharp constant ({pullup}): {gap}")
    return Derivation(
        label="T4",
        function="derive_t4_lipschitz_c_hat_quality",
        title="Sharp Lipschitz constant of ĉ in quality r (E9, soft gate)",
        claim=(
            "For the soft gate, fixed pull-up, full mixture gradient and linear schedule, "
            "sup_{Δ, r} |∂ĉ/∂r| = max(L_α(1/α_lo − 1), L_h·φ(α_S(τ_lo)) + L_α(1/α_S(τ_lo) − 1)) with "
            "L_α = α_hi − α_lo, L_h = 1/(τ_hi − τ_lo), φ(α) = log(1/α) − (1 − α); it is approached "
            "(not attained) as Δ → ∞ at r = 0 or r ↓ τ_lo. At the defaults it is "
            f"{sharp_default} = {float(sharp_default):.6g}, against the spec's bound "
            f"{float(spec_default):.6g}. The adaptive pull-up adds the candidate L_α(1 + 1/(1 − α_hi)) "
            "(Δ → −∞ at r = 1). Closed forms for all eight (schedule, mixture_grad, sgo_pullup) "
            "combinations are the results below."
        ),
        steps=(
            Step(
                "For Δ ≤ 0 and fixed pull-up, ĉ = c̃(Δ; α_lo) does not depend on r (E9). For Δ > 0, "
                "ĉ = (1 − h(r))·c̃(Δ; α_S(r)); ĉ is continuous in r and piecewise smooth, so its "
                "Lipschitz constant is the supremum of |∂ĉ/∂r| over the pieces. Below the ramp "
                "(r < τ_lo, h = 0):",
                below,
            ),
            Step("On the ramp (τ_lo < r < τ_hi, h = (r − τ_lo)/(τ_hi − τ_lo)):", on_ramp),
            Step(
                "Above the ramp h = 1 and ĉ = 0 for Δ > 0. For Δ > 0, c̃ > 0 and ∂c̃/∂α < 0 (T4, ∂c̃/∂α), "
                "so both ramp terms have the same sign and |∂ĉ/∂r| = L_h c̃ + (1 − h)L_α|∂c̃/∂α|. Both "
                "c̃ and |∂c̃/∂α| increase with Δ (∂c̃/∂α is decreasing in u), so sup over Δ is the limit "
                "Δ → ∞: c̃ → φ(α) = ",
                phi,
            ),
            Step("and L_α|∂c̃/∂α| → A(α) = ", big_a),
            Step(
                "A and φ are decreasing in α (sympy: derivatives negative on (0, 1) after α = 1/(1 + T)), "
                "α_S increases in r, so below the ramp sup_r A(α_S(r)) = A(α_lo) (at r = 0), and on the "
                "ramp G(r) = L_h φ(α_S(r)) + (1 − h(r))A(α_S(r)) is decreasing: there is no interior "
                "critical point. dG/dr =",
                dg_dr,
            ),
            Step(
                "so sup_ramp G = G(τ_lo⁺). The sharp constant is the larger of the two candidates:",
                sharp,
            ),
            Step("At the defaults (α_lo = 0.1, α_hi = 0.9, τ_lo = 0.5, τ_hi = 1):", sharp_default),
            Step(
                "The spec's bound L_α·max(1/α_lo − 1, 1 + 1/(1−α_hi)) + L_h(log(1/α_lo) − (1 − α_lo)) "
                "evaluates to",
                spec_default,
            ),
            Step(
                "It is valid but not sharp: the max(·, 1 + 1/(1−α_hi)) term is the Δ → −∞ sensitivity of "
                "c̃ to α, which the fixed pull-up removes (ĉ does not depend on r for Δ ≤ 0), and the gate "
                "and schedule terms peak at different r (r = τ_lo⁺ vs r = 0). In adaptive pull-up mode "
                "the Δ ≤ 0 piece c̃(Δ; α_S(r)) adds the candidate B(α_hi), B(α) = L_α·(1 + 1/(1−α)) "
                "increasing in α."
            ),
            Step(
                "Other options: the logit schedule has dα_S/dr = α(1 − α)(logit α_hi − logit α_lo), and "
                "stop mode replaces c̃ by c_det (φ = log(1/α), ∂c_det/∂α → −1/α and 1/(1 − α)); the same "
                "monotonicity argument gives the closed forms listed as results."
            ),
        ),
        results=tuple(results),
        implementation=(
            "askd_ref.coefficients.clipped_sgo_coefficient",
            "askd_ref.schedules.soft_gate",
            "askd_ref.schedules.sgo_alpha",
        ),
        values=tuple(values),
    )


@functools.cache
def derive_t4_hard_gate_jump() -> Derivation:
    """T4 (negative): with the hard gate, ĉ jumps at r = τ by c̃(Δ; α_S(τ)) for Δ > 0."""
    alpha_s = ALPHA_LO + (ALPHA_HI - ALPHA_LO) * TAU
    jump = c_tilde_of(DELTA, alpha_s)
    sup_jump = sp.simplify(sp.expand_log(limit(jump, DELTA, sp.oo), force=True))
    require_equal(sup_jump, -sp.log(alpha_s) - (1 - alpha_s), "sup of the jump")
    default = sp.simplify(sup_jump.subs(_DEFAULTS))
    at_one = sp.simplify(jump.subs(DELTA, 1).subs(_DEFAULTS))
    return Derivation(
        label="T4",
        function="derive_t4_hard_gate_jump",
        title="The hard gate makes ĉ discontinuous in r (negative result)",
        claim=(
            "With h(r) = 1{r ≥ τ}, for every Δ > 0: lim_{r↑τ} ĉ(Δ, r) − ĉ(Δ, τ) = c̃(Δ; α_S(τ)) > 0, so "
            "ĉ is not continuous (let alone Lipschitz) in r; the jump tends to log(1/α_S(τ)) − "
            "(1 − α_S(τ)) as Δ → ∞."
        ),
        steps=(
            Step(
                "For Δ > 0, ĉ(Δ, r) = (1 − h(r))·c̃(Δ; α_S(r)) (E9). Left of τ, h = 0; at τ, h = 1. α_S is "
                "continuous, so the jump is"
            ),
            Step("", jump),
            Step("which is > 0 for Δ > 0 (sign(c̃) = sign(Δ)); as Δ → ∞ it tends to", sup_jump),
            Step("At the defaults (τ = 0.75, α_S(τ) = 0.7) and Δ = 1 the jump is", at_one),
        ),
        results=(
            Result("jump", jump, (DELTA, ALPHA_LO, ALPHA_HI, TAU), "ĉ(Δ, τ⁻) − ĉ(Δ, τ) for Δ > 0"),
            Result("sup_jump", sup_jump, (ALPHA_LO, ALPHA_HI, TAU), "sup over Δ of the jump"),
        ),
        implementation=(
            "askd_ref.schedules.hard_gate",
            "askd_ref.coefficients.clipped_sgo_coefficient",
        ),
        values=(("sup_jump_default", default),),
    )
