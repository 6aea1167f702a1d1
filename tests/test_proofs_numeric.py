"""Every expression derived in ``proofs/`` against ``askd_ref`` and ``torch.autograd`` (float64).

Each derived :class:`proofs.Result` is lambdified (``Result.function()``) and evaluated at
hypothesis-drawn points, then compared with (a) the ``askd_ref`` function that implements it
and (b) ``torch.autograd`` gradients of the objective the derivation starts from, written here
directly in torch. ``test_every_result_is_compared`` fails when a derivation gains a result that
no test below compares.

Tolerances come from :mod:`askd_ref.porting.tolerances` (float64 row). Lambdified sympy expressions are
evaluated in their raw symbolic form, which can subtract terms of size e^{2|Δ|}; the draws keep
|Δ| ≤ 6 and those comparisons use :data:`SYMPY_TOL`, an override that says so.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
import proofs
from askd_ref.porting.tolerances import assert_close, override, tolerance
from askd_ref.sequence import length_corrected_sgo_coefficient

F64 = torch.float64
TOL = tolerance("float64", "value")
GRAD_TOL = tolerance("float64", "grad")
SYMPY_TOL = override(
    TOL,
    rtol=1e-9,
    atol=1e-11,
    reason="raw lambdified sympy form cancels terms up to e^{2|Δ|} with |Δ| ≤ 6 (≈1.6e5 ulp growth)",
)

deltas = st.floats(-6.0, 6.0)
alphas = st.floats(1e-3, 1 - 1e-3)
probs = st.floats(1e-4, 1.0)
logits3 = st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3)
qualities = st.floats(0.0, 1.0)

COVERED: set[tuple[str, str]] = set()


def covers(derive: Callable[[], proofs.Derivation], *names: str) -> Callable[[Any], Any]:
    """Record that the decorated test compares these results of ``derive``."""
    for name in names:
        derive().result(name)  # KeyError for a typo
        COVERED.add((derive.__name__, name))

    def mark(fn: Any) -> Any:
        return fn

    return mark


def f(derive: Callable[[], proofs.Derivation], name: str) -> Callable[..., Any]:
    return derive().result(name).function()


def t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def tg(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=F64, requires_grad=True)


def grad(y: torch.Tensor, x: torch.Tensor, create_graph: bool = False) -> torch.Tensor:
    (g,) = torch.autograd.grad(y, x, create_graph=create_graph, retain_graph=True)
    return g


@st.composite
def options_st(draw: Any, pullup: str = "fixed", schedule: str = "linear", mixture_grad: str = "full") -> Any:
    a_lo = draw(st.floats(0.02, 0.5))
    a_hi = draw(st.floats(a_lo, 0.98))
    tau_lo = draw(st.floats(0.0, 0.8))
    tau_hi = draw(st.floats(tau_lo + 0.05, 1.0))
    return askd_ref.ASKDOptions().replace(
        alpha_lo=a_lo,
        alpha_hi=a_hi,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        sgo_pullup=pullup,
        schedule=schedule,
        mixture_grad=mixture_grad,
        normalize="sum",
    )


def opt_args(o: askd_ref.ASKDOptions) -> tuple[float, float, float, float]:
    return (o.alpha_lo, o.alpha_hi, o.tau_lo, o.tau_hi)


# --------------------------------------------------------------------------- E5, E6, E7, E9


@covers(proofs.derive_e5_tgo_coefficient, "w", "q_dfdq")
@given(deltas, alphas, probs)
def test_e5_w_matches_askd_ref_and_autograd(delta: float, alpha: float, p: float) -> None:
    w = f(proofs.derive_e5_tgo_coefficient, "w")(delta, alpha)
    assert_close(w, askd_ref.tgo_coefficient(delta, alpha), SYMPY_TOL, what="w vs tgo_coefficient")
    # Objective: the SKL integrand f(q) = p log(p/(αp + (1−α)q)), q = e^z; df/dz = q f'(q) = −p w.
    z = tg(math.log(p) + delta)
    obj = p * torch.log(p / (alpha * p + (1 - alpha) * torch.exp(z)))
    dz = grad(obj, z)
    q = p * math.exp(delta)
    assert_close(dz, f(proofs.derive_e5_tgo_coefficient, "q_dfdq")(p, q, alpha), SYMPY_TOL, what="q f'(q)")
    assert_close(-dz / p, w, SYMPY_TOL, what="−(q f'(q))/p vs w")


@covers(proofs.derive_e6_sgo_coefficient, "u", "c", "c_tilde", "dg_dq")
@given(deltas, alphas, probs)
def test_e6_c_tilde_matches_askd_ref_and_autograd(delta: float, alpha: float, p: float) -> None:
    d = proofs.derive_e6_sgo_coefficient
    u = f(d, "u")(delta, alpha)
    assert_close(
        u,
        torch.exp(askd_ref.sgo_coefficient(delta, alpha, mixture_grad="stop")),
        SYMPY_TOL,
        what="u vs exp(c_det)",
    )
    c_tilde = f(d, "c_tilde")(delta, alpha)
    assert_close(c_tilde, askd_ref.sgo_coefficient(delta, alpha), SYMPY_TOL, what="c̃ vs sgo_coefficient")
    c = f(d, "c")(delta, alpha)
    assert_close(c, askd_ref.sgo_coefficient(delta, alpha) + 1 - alpha, SYMPY_TOL, what="c = c̃ + 1 − α")
    q_value = p * math.exp(delta)
    q = tg(q_value)
    obj = q * torch.log(q / ((1 - alpha) * p + alpha * q))
    dq = grad(obj, q)
    assert_close(dq, f(d, "dg_dq")(p, q_value, alpha), SYMPY_TOL, what="∂g/∂q")
    assert_close(dq, c, SYMPY_TOL, what="autograd ∂g/∂q vs c")


@covers(proofs.derive_e7_sgo_coefficient_stop, "c_det", "semi_gradient")
@given(deltas, alphas, probs)
def test_e7_c_det_matches_askd_ref_and_autograd(delta: float, alpha: float, p: float) -> None:
    d = proofs.derive_e7_sgo_coefficient_stop
    c_det = f(d, "c_det")(delta, alpha)
    assert_close(c_det, askd_ref.sgo_coefficient(delta, alpha, mixture_grad="stop"), SYMPY_TOL, what="c_det")
    q_value = p * math.exp(delta)
    q = tg(q_value)
    obj = q * torch.log(q / ((1 - alpha) * p + alpha * q).detach())
    dq = grad(obj, q)
    assert_close(dq, f(d, "semi_gradient")(p, q_value, alpha), SYMPY_TOL, what="semi-gradient")
    assert_close(dq - 1, c_det, SYMPY_TOL, what="semi-gradient − 1 vs c_det")


def _sgo_grad(delta: float, quality: float, options: askd_ref.ASKDOptions) -> torch.Tensor:
    """∂ℓ_S/∂log q of E12 on a one-token SGO: the coefficient the loss actually applies."""
    s = torch.tensor([[-10.0]], dtype=F64, requires_grad=True)
    teacher = torch.tensor([[-10.0 - delta]], dtype=F64)
    out = askd_ref.sgo_loss(
        student_token_logp=s,
        teacher_token_logp=teacher,
        mask=torch.ones(1, 1, dtype=torch.bool),
        quality=torch.tensor([quality], dtype=F64),
        options=options,
    )
    return grad(out.loss, s)[0, 0]


@covers(proofs.derive_e9_clipped_sgo_coefficient, "c_hat", "c_hat_adaptive")
@given(deltas, qualities, options_st("fixed"), st.booleans())
def test_e9_c_hat_matches_askd_ref_and_sgo_loss_gradient(
    delta: float, r: float, options: askd_ref.ASKDOptions, adaptive: bool
) -> None:
    opts = options.replace(sgo_pullup="adaptive") if adaptive else options
    name = "c_hat_adaptive" if adaptive else "c_hat"
    c_hat = float(f(proofs.derive_e9_clipped_sgo_coefficient, name)(delta, r, *opt_args(opts)))
    implemented = askd_ref.clipped_sgo_coefficient(delta, r, options=opts)
    assert_close(c_hat, implemented, SYMPY_TOL, what=f"{name} vs clipped_sgo_coefficient")
    assert_close(_sgo_grad(delta, r, opts), c_hat, SYMPY_TOL, what=f"{name} vs autograd of sgo_loss")


# --------------------------------------------------------------------------- T1, T2


def _softmax_point(z: list[float], pz: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    zt = torch.tensor(z, dtype=F64, requires_grad=True)
    p = torch.softmax(torch.tensor(pz, dtype=F64), -1)
    return zt, p


@covers(proofs.derive_t1_sequence_level_exactness, "grad_z_skl", "grad_z_srkl")
@given(logits3, logits3, alphas)
def test_t1_rl_forms_match_autograd_and_sequence_losses(
    z: list[float], pz: list[float], alpha: float
) -> None:
    d = proofs.derive_t1_sequence_level_exactness
    zt, p = _softmax_point(z, pz)
    args = (*z, *p.tolist(), alpha)
    rl_skl = np.asarray(f(d, "grad_z_skl")(*args), dtype=float).reshape(-1)
    rl_srkl = np.asarray(f(d, "grad_z_srkl")(*args), dtype=float).reshape(-1)
    logq = torch.log_softmax(zt, -1)
    skl = askd_ref.skew_forward_kl(teacher_logp=p.log(), student_logp=logq, alpha=alpha)
    assert_close(rl_skl, grad(skl, zt), SYMPY_TOL, what="∇_z SKL (RL form vs autograd)")
    srkl = askd_ref.skew_reverse_kl(teacher_logp=p.log(), student_logp=logq, alpha=alpha)
    assert_close(rl_srkl, grad(srkl, zt), SYMPY_TOL, what="∇_z SRKL (RL form vs autograd)")
    # The E11/E12 losses on the three one-token "sequences", weighted by their probabilities.
    opts = askd_ref.ASKDOptions(alpha_lo=alpha, alpha_hi=alpha, gate="none", normalize="sum")
    mask = torch.ones(1, 1, dtype=torch.bool)
    tgo_total = torch.zeros((), dtype=F64)
    sgo_total = torch.zeros((), dtype=F64)
    for y in range(3):
        s = logq[y].reshape(1, 1)
        tl = p.log()[y].reshape(1, 1)
        tgo_total = (
            tgo_total
            + p[y]
            * askd_ref.tgo_loss(
                student_token_logp=s, teacher_token_logp=tl, mask=mask, quality=0.5, options=opts
            ).loss
        )
        sgo_total = (
            sgo_total
            + logq[y].exp().detach()
            * askd_ref.sgo_loss(
                student_token_logp=s, teacher_token_logp=tl, mask=mask, quality=0.5, options=opts
            ).loss
        )
    assert_close(grad(tgo_total, zt), rl_skl, SYMPY_TOL, what="E_p[∇ tgo_loss] vs RL form")
    assert_close(grad(sgo_total, zt), rl_srkl, SYMPY_TOL, what="E_q[∇ sgo_loss] vs RL form")


@covers(proofs.derive_t2_tgo_per_sample_alpha, "df_dq", "d2f_dq2", "kkt_interior")
@given(probs, probs, alphas, st.floats(0.05, 0.95))
def test_t2_tgo_term_derivatives_and_kkt_point(p: float, q_value: float, alpha: float, lam: float) -> None:
    d = proofs.derive_t2_tgo_per_sample_alpha
    q = tg(q_value)
    obj = p * torch.log(p / (alpha * p + (1 - alpha) * q))
    d1 = grad(obj, q, create_graph=True)
    d2 = grad(d1, q)
    assert_close(d1, f(d, "df_dq")(p, q_value, alpha), SYMPY_TOL, what="∂J_T-term/∂q")
    assert_close(d2, f(d, "d2f_dq2")(p, q_value, alpha), SYMPY_TOL, what="∂²J_T-term/∂q²")
    assert float(d2) > 0
    q_star = float(f(d, "kkt_interior")(p, alpha, lam))
    if q_star > 0:  # interior KKT point: stationarity ∂f/∂q + λ = 0
        qs = tg(q_star)
        stat = grad(p * torch.log(p / (alpha * p + (1 - alpha) * qs)), qs) + lam
        assert_close(stat, 0.0, override(TOL, atol=1e-9, reason="stationarity residual of magnitude 1/λ"))


@covers(proofs.derive_t2_sgo_unnormalised_skew_rkl, "dk_dq", "d2k_dq2", "uj_term")
@given(deltas, alphas, probs)
def test_t2_uj_term_derivative_is_c_tilde(delta: float, alpha: float, p: float) -> None:
    d = proofs.derive_t2_sgo_unnormalised_skew_rkl
    q_value = p * math.exp(delta)
    q = tg(q_value)
    m = (1 - alpha) * p + alpha * q
    obj = q * torch.log(q / m) - q + m
    d1 = grad(obj, q, create_graph=True)
    d2 = grad(d1, q)
    assert_close(obj, f(d, "uj_term")(p, q_value, alpha), SYMPY_TOL, what="UJ term")
    assert float(obj.detach()) >= -1e-15 * max(1.0, q_value)
    assert_close(d1, f(d, "dk_dq")(p, q_value, alpha), SYMPY_TOL, what="∂UJ-term/∂q")
    assert_close(d1, askd_ref.sgo_coefficient(delta, alpha), SYMPY_TOL, what="∂UJ-term/∂q vs c̃")
    assert_close(d2, f(d, "d2k_dq2")(p, q_value, alpha), SYMPY_TOL, what="∂²UJ-term/∂q²")


# --------------------------------------------------------------------------- T3, T6


@covers(proofs.derive_t3_coefficient_ranges, "w_at_zero", "sup_c_tilde", "sup_c_det", "sup_c")
@given(alphas)
def test_t3_range_values_match_askd_ref(alpha: float) -> None:
    d = proofs.derive_t3_coefficient_ranges
    assert_close(f(d, "w_at_zero")(alpha), askd_ref.tgo_coefficient(0.0, alpha), TOL, what="w(0)")
    big = 700.0  # u = 1/α up to e^{-700}
    assert_close(f(d, "sup_c_tilde")(alpha), askd_ref.sgo_coefficient(big, alpha), TOL, what="sup c̃")
    c_det_big = askd_ref.sgo_coefficient(big, alpha, mixture_grad="stop")
    assert_close(f(d, "sup_c_det")(alpha), c_det_big, TOL, what="sup c_det")
    assert_close(f(d, "sup_c")(alpha), askd_ref.sgo_coefficient(big, alpha) + 1 - alpha, TOL, what="sup c")


LIMIT_TOL = override(TOL, rtol=1e-6, atol=1e-6, reason="limits compared at α = 1e-9 and 1 − 1e-9, |Δ| ≤ 6")


@covers(
    proofs.derive_t6_limits,
    "w_alpha_to_0",
    "c_alpha_to_0",
    "c_tilde_alpha_to_0",
    "w_alpha_to_1",
    "c_tilde_alpha_to_1",
)
@given(deltas)
def test_t6_limits_match_askd_ref_near_the_ends(delta: float) -> None:
    d = proofs.derive_t6_limits
    lo, hi = 1e-9, 1 - 1e-9
    limit_tol = override(LIMIT_TOL, atol=1e-6 * math.exp(abs(delta)), reason="error term α·e^{|Δ|}")
    w0 = np.broadcast_to(f(d, "w_alpha_to_0")(delta), ())
    assert_close(w0, askd_ref.tgo_coefficient(delta, lo), limit_tol, what="w, α → 0")
    c0 = f(d, "c_alpha_to_0")(delta)
    assert_close(c0, askd_ref.sgo_coefficient(delta, lo) + 1 - lo, limit_tol, what="c, α → 0")
    assert_close(f(d, "c_tilde_alpha_to_0")(delta), askd_ref.sgo_coefficient(delta, lo), limit_tol, what="c̃")
    w1 = np.broadcast_to(f(d, "w_alpha_to_1")(delta), ())
    assert_close(w1, askd_ref.tgo_coefficient(delta, hi), limit_tol, what="w, α → 1")
    ct1 = np.broadcast_to(f(d, "c_tilde_alpha_to_1")(delta), ())
    assert_close(ct1, askd_ref.sgo_coefficient(delta, hi), limit_tol, what="c̃, α → 1")


# --------------------------------------------------------------------------- T4


@covers(proofs.derive_t4_lipschitz_w_delta, "dw_ddelta", "argmax", "constant")
@given(deltas, alphas)
def test_t4_w_delta_derivative_and_peak(delta: float, alpha: float) -> None:
    d = proofs.derive_t4_lipschitz_w_delta
    x = tg(delta)
    g = grad(askd_ref.tgo_coefficient(x, alpha), x)
    assert_close(g, f(d, "dw_ddelta")(delta, alpha), SYMPY_TOL, what="∂w/∂Δ")
    peak_at = tg(float(f(d, "argmax")(alpha)))
    peak = grad(askd_ref.tgo_coefficient(peak_at, alpha), peak_at)
    assert_close(peak, f(d, "constant")(), TOL, what="∂w/∂Δ at Δ* = logit α")
    assert float(g) <= float(peak) * (1 + 1e-12)


@covers(proofs.derive_t4_lipschitz_w_alpha, "dw_dalpha", "constant", "constant_on_interval")
@given(deltas, alphas, st.floats(0.02, 0.98), st.floats(0.02, 0.98))
def test_t4_w_alpha_derivative_and_constants(delta: float, alpha: float, a: float, b: float) -> None:
    d = proofs.derive_t4_lipschitz_w_alpha
    al = tg(alpha)
    g = grad(askd_ref.tgo_coefficient(delta, al), al)
    assert_close(g, f(d, "dw_dalpha")(delta, alpha), SYMPY_TOL, what="∂w/∂α")
    al2 = tg(alpha)
    at_peak = grad(askd_ref.tgo_coefficient(math.log(alpha / (1 - alpha)), al2), al2)
    assert_close(-at_peak, f(d, "constant")(alpha), TOL, what="sup_Δ |∂w/∂α| at Δ = logit α")
    lo, hi = min(a, b), max(a, b)
    grid = torch.linspace(lo, hi, 201, dtype=F64)
    best = (1 / (4 * grid * (1 - grid))).max()
    assert_close(best, f(d, "constant_on_interval")(lo, hi), TOL, what="constant on [a, b]")


@covers(proofs.derive_t4_lipschitz_c_delta, "dc_tilde_ddelta", "dc_det_ddelta", "constant")
@given(deltas, alphas)
def test_t4_c_delta_derivatives(delta: float, alpha: float) -> None:
    d = proofs.derive_t4_lipschitz_c_delta
    x = tg(delta)
    assert_close(
        grad(askd_ref.sgo_coefficient(x, alpha), x),
        f(d, "dc_tilde_ddelta")(delta, alpha),
        SYMPY_TOL,
        what="∂c̃/∂Δ",
    )
    x = tg(delta)
    g_det = grad(askd_ref.sgo_coefficient(x, alpha, mixture_grad="stop"), x)
    assert_close(g_det, f(d, "dc_det_ddelta")(delta, alpha), SYMPY_TOL, what="∂c_det/∂Δ")
    far = tg(-40.0)
    assert_close(
        grad(askd_ref.sgo_coefficient(far, alpha), far),
        f(d, "constant")(),
        override(
            TOL, atol=1e-12 + 2 * alpha / (1 - alpha) * math.exp(-40.0), reason="slope at Δ = −40, not −∞"
        ),
        what="slope → 1",
    )


@covers(
    proofs.derive_t4_lipschitz_c_alpha,
    "dc_tilde_dalpha",
    "dc_tilde_dalpha_u",
    "upper",
    "lower",
    "constant",
    "dc_det_dalpha",
)
@given(deltas, alphas)
def test_t4_c_alpha_derivatives_and_range(delta: float, alpha: float) -> None:
    d = proofs.derive_t4_lipschitz_c_alpha
    al = tg(alpha)
    g = grad(askd_ref.sgo_coefficient(delta, al), al)
    assert_close(g, f(d, "dc_tilde_dalpha")(delta, alpha), SYMPY_TOL, what="∂c̃/∂α")
    u = float(torch.exp(askd_ref.sgo_coefficient(delta, alpha, mixture_grad="stop")))
    assert_close(g, f(d, "dc_tilde_dalpha_u")(u, alpha), SYMPY_TOL, what="∂c̃/∂α via u")
    al = tg(alpha)
    g_det = grad(askd_ref.sgo_coefficient(delta, al, mixture_grad="stop"), al)
    assert_close(g_det, f(d, "dc_det_dalpha")(delta, alpha), SYMPY_TOL, what="∂c_det/∂α")
    upper, lower = f(d, "upper")(alpha), f(d, "lower")(alpha)
    assert lower - 1e-12 <= float(g) <= upper + 1e-12
    edge_tol = override(TOL, rtol=1e-9, atol=1e-9, reason="evaluated at Δ = ±60 instead of ±∞")
    for far, expected in ((-60.0, upper), (60.0, lower)):
        al = tg(alpha)
        assert_close(grad(askd_ref.sgo_coefficient(far, al), al), expected, edge_tol, what=f"∂c̃/∂α at {far}")
    assert_close(f(d, "constant")(alpha), max(abs(upper), abs(lower)), TOL, what="constant")


@covers(proofs.derive_t4_lipschitz_c_hat_delta, "slope_pullup", "slope_pushdown", "constant")
@given(st.floats(0.01, 6.0), qualities, options_st("fixed"))
def test_t4_c_hat_delta_slopes(mag: float, r: float, options: askd_ref.ASKDOptions) -> None:
    d = proofs.derive_t4_lipschitz_c_hat_delta
    x = tg(-mag)
    g = grad(askd_ref.clipped_sgo_coefficient(x, r, options=options), x)
    assert_close(g, f(d, "slope_pullup")(-mag, options.alpha_lo), SYMPY_TOL, what="slope on Δ < 0")
    x = tg(mag)
    g = grad(askd_ref.clipped_sgo_coefficient(x, r, options=options), x)
    a_s = float(askd_ref.sgo_alpha(r, options=options))
    h = float(askd_ref.soft_gate(r, options.tau_lo, options.tau_hi))
    assert_close(g, f(d, "slope_pushdown")(mag, a_s, h), SYMPY_TOL, what="slope on Δ > 0")
    assert 0.0 <= float(g) <= f(d, "constant")()


def _c_hat_r_grid(options: askd_ref.ASKDOptions) -> tuple[torch.Tensor, torch.Tensor]:
    """(Δ, r) grid for sup |∂ĉ/∂r|: Δ up to ±40 and r including 0, τ_lo⁺ and 1."""
    d = torch.cat([torch.linspace(-40.0, 40.0, 81, dtype=F64), torch.tensor([-40.0, 40.0], dtype=F64)])
    special = [0.0, 1.0, min(options.tau_lo + 1e-12, 1.0), options.tau_hi - 1e-12]
    r = torch.cat([torch.linspace(0.0, 1.0, 101, dtype=F64), torch.tensor(special, dtype=F64)])
    return d[:, None].expand(-1, r.shape[0]), r[None, :].expand(d.shape[0], -1)


def _max_abs_dc_hat_dr(options: askd_ref.ASKDOptions) -> float:
    d, r = _c_hat_r_grid(options)
    r = r.clone().requires_grad_(True)
    c = askd_ref.clipped_sgo_coefficient(d, r, options=options)
    (g,) = torch.autograd.grad(c.sum(), r)
    return float(g.abs().max())


@covers(
    proofs.derive_t4_lipschitz_c_hat_quality,
    "dc_hat_dr_below_ramp",
    "dc_hat_dr_on_ramp",
    "sup_on_ramp",
    "spec_bound",
)
@given(st.floats(0.01, 6.0), st.floats(0.0, 1.0), options_st("fixed"))
def test_t4_c_hat_quality_derivatives(delta: float, frac: float, options: askd_ref.ASKDOptions) -> None:
    d = proofs.derive_t4_lipschitz_c_hat_quality
    args = opt_args(options)
    # below the ramp
    if options.tau_lo > 0:
        r_val = frac * options.tau_lo * 0.999
        r = tg(r_val)
        g = grad(askd_ref.clipped_sgo_coefficient(delta, r, options=options), r)
        expected = f(d, "dc_hat_dr_below_ramp")(delta, r_val, options.alpha_lo, options.alpha_hi)
        assert_close(g, expected, SYMPY_TOL, what="∂ĉ/∂r below the ramp")
    # on the ramp
    r_val = options.tau_lo + (0.001 + 0.998 * frac) * (options.tau_hi - options.tau_lo)
    r = tg(r_val)
    g = grad(askd_ref.clipped_sgo_coefficient(delta, r, options=options), r)
    assert_close(g, f(d, "dc_hat_dr_on_ramp")(delta, r_val, *args), SYMPY_TOL, what="∂ĉ/∂r on the ramp")
    r = tg(r_val)
    g_far = grad(askd_ref.clipped_sgo_coefficient(40.0, r, options=options), r)
    far_tol = override(TOL, rtol=1e-12, atol=1e-12 + 1e-14 * float(abs(g_far)), reason="Δ = 40, not ∞")
    assert_close(-g_far, f(d, "sup_on_ramp")(r_val, *args), override(far_tol, rtol=1e-9, reason="Δ = 40"))
    a_lo, a_hi, t_lo, t_hi = args
    spec = (a_hi - a_lo) * max(1 / a_lo - 1, 1 + 1 / (1 - a_hi)) + (math.log(1 / a_lo) - (1 - a_lo)) / (
        t_hi - t_lo
    )
    assert_close(f(d, "spec_bound")(*args), spec, TOL, what="spec bound")


_SHARP = [
    (schedule, grad_mode, pullup)
    for schedule in ("linear", "logit")
    for grad_mode in ("full", "stop")
    for pullup in ("fixed", "adaptive")
]


@covers(
    proofs.derive_t4_lipschitz_c_hat_quality,
    *(f"constant_{s}_{g}_{p}" for s, g, p in _SHARP),
)
@pytest.mark.parametrize(("schedule", "mixture_grad", "pullup"), _SHARP)
@settings(max_examples=25)
@given(data=st.data())
def test_t4_c_hat_quality_sharp_constant_is_the_measured_sup(
    schedule: str, mixture_grad: str, pullup: str, data: st.DataObject
) -> None:
    options = data.draw(options_st(pullup, schedule, mixture_grad))
    sharp = float(
        f(proofs.derive_t4_lipschitz_c_hat_quality, f"constant_{schedule}_{mixture_grad}_{pullup}")(
            *opt_args(options)
        )
    )
    measured = _max_abs_dc_hat_dr(options)
    assert measured <= sharp * (1 + 1e-9), f"measured {measured} > sharp {sharp} for {options}"
    assert measured >= sharp * (1 - 1e-9), f"measured {measured} < sharp {sharp} for {options} (not tight)"


def test_t4_c_hat_quality_default_values() -> None:
    d = proofs.derive_t4_lipschitz_c_hat_quality()
    assert d.value("sharp_default") == pytest.approx(7.2, rel=1e-15)
    assert d.value("spec_bound_default") == pytest.approx(7 + math.log(100), rel=1e-15)
    assert _max_abs_dc_hat_dr(askd_ref.ASKDOptions()) == pytest.approx(7.2, rel=1e-9)


@covers(proofs.derive_t4_lipschitz_w_quality, "dw_dr", "constant")
@given(deltas, qualities, options_st("fixed"))
def test_t4_w_quality_derivative_and_constant(
    delta: float, r_val: float, options: askd_ref.ASKDOptions
) -> None:
    d = proofs.derive_t4_lipschitz_w_quality
    r = tg(r_val)
    g = grad(askd_ref.tgo_coefficient(delta, askd_ref.tgo_alpha(r, options=options)), r)
    assert_close(g, f(d, "dw_dr")(delta, r_val, options.alpha_lo, options.alpha_hi), SYMPY_TOL, what="∂w/∂r")
    constant = f(d, "constant")(options.alpha_lo, options.alpha_hi)
    assert float(g) <= constant * (1 + 1e-12)
    # attained: at the end point with the smaller α(1 − α), Δ = logit α
    ends = [(options.alpha_lo, 1.0), (options.alpha_hi, 0.0)]
    a_end, r_end = min(ends, key=lambda e: e[0] * (1 - e[0]))
    r = tg(r_end)
    peak = grad(
        askd_ref.tgo_coefficient(math.log(a_end / (1 - a_end)), askd_ref.tgo_alpha(r, options=options)), r
    )
    assert_close(peak, constant, TOL, what="attained")


@covers(proofs.derive_t4_hard_gate_jump, "jump", "sup_jump")
@given(st.floats(0.01, 6.0), st.floats(0.02, 0.5), st.floats(0.5, 0.98), st.floats(0.05, 0.95))
def test_t4_hard_gate_jump(delta: float, a_lo: float, a_hi: float, tau: float) -> None:
    d = proofs.derive_t4_hard_gate_jump
    opts = askd_ref.ASKDOptions(alpha_lo=a_lo, alpha_hi=a_hi, gate="hard", tau=tau)
    left = askd_ref.clipped_sgo_coefficient(delta, tau - 1e-12, options=opts)
    at = askd_ref.clipped_sgo_coefficient(delta, tau, options=opts)
    jump_tol = override(TOL, atol=1e-10, reason="left limit evaluated at τ − 1e-12")
    assert_close(left - at, f(d, "jump")(delta, a_lo, a_hi, tau), jump_tol, what="jump at τ")
    left_far = askd_ref.clipped_sgo_coefficient(700.0, tau - 1e-12, options=opts)
    at_far = askd_ref.clipped_sgo_coefficient(700.0, tau, options=opts)
    assert_close(left_far - at_far, f(d, "sup_jump")(a_lo, a_hi, tau), jump_tol, what="sup of the jump")


# --------------------------------------------------------------------------- T5, T7, T8


@covers(proofs.derive_t5_monotone_in_quality, "dw_dr", "dpush_dr", "dcap_dalpha")
@given(st.floats(0.01, 6.0), st.floats(0.001, 0.999), options_st("fixed"), alphas)
def test_t5_quality_derivatives(
    delta: float, frac: float, options: askd_ref.ASKDOptions, alpha: float
) -> None:
    d = proofs.derive_t5_monotone_in_quality
    args = opt_args(options)
    r_val = options.tau_lo + frac * (options.tau_hi - options.tau_lo)
    r = tg(r_val)
    g = grad(askd_ref.tgo_coefficient(delta, askd_ref.tgo_alpha(r, options=options)), r)
    assert_close(g, f(d, "dw_dr")(delta, r_val, options.alpha_lo, options.alpha_hi), SYMPY_TOL, what="∂w/∂r")
    assert float(g) >= 0
    r = tg(r_val)
    push = torch.clamp(askd_ref.clipped_sgo_coefficient(delta, r, options=options), min=0.0)
    g = grad(push, r)
    assert_close(g, f(d, "dpush_dr")(delta, r_val, *args), SYMPY_TOL, what="∂ push-down/∂r")
    assert float(g) <= 0
    al = tg(alpha)
    g = grad(askd_ref.sgo_coefficient(700.0, al), al)
    assert_close(g, f(d, "dcap_dalpha")(alpha), TOL, what="d cap/dα")


def _two_point(pv: float, qv: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor([pv, 1 - pv], dtype=F64).log(), torch.tensor([qv, 1 - qv], dtype=F64).log())


@covers(
    proofs.derive_t7_divergence_bounds,
    "dskl_dalpha_term",
    "d2skl_dalpha2_term",
    "dsrkl_dalpha_term",
    "d2srkl_dalpha2_term",
    "skl_disjoint",
)
@given(st.floats(0.01, 0.99), st.floats(0.01, 0.99), alphas)
def test_t7_alpha_derivatives_match_autograd(pv: float, qv: float, alpha: float) -> None:
    d = proofs.derive_t7_divergence_bounds
    lp, lq = _two_point(pv, qv)
    p, q = np.array([pv, 1 - pv]), np.array([qv, 1 - qv])
    for fn, first, second in (
        (askd_ref.skew_forward_kl, "dskl_dalpha_term", "d2skl_dalpha2_term"),
        (askd_ref.skew_reverse_kl, "dsrkl_dalpha_term", "d2srkl_dalpha2_term"),
    ):
        al = tg(alpha)
        value = fn(teacher_logp=lp, student_logp=lq, alpha=al)
        g1 = grad(value, al, create_graph=True)
        g2 = grad(g1, al)
        assert_close(g1, np.sum(f(d, first)(p, q, alpha)), SYMPY_TOL, what=first)
        assert_close(g2, np.sum(f(d, second)(p, q, alpha)), SYMPY_TOL, what=second)
        assert float(g1.detach()) <= 1e-15
        assert float(g2.detach()) >= -1e-15
    disjoint = askd_ref.skew_forward_kl(
        teacher_logp=torch.tensor([0.0, -math.inf], dtype=F64),
        student_logp=torch.tensor([-math.inf, 0.0], dtype=F64),
        alpha=alpha,
    )
    assert_close(disjoint, f(d, "skl_disjoint")(alpha), TOL, what="SKL at disjoint supports")


@covers(proofs.derive_t8_logit_gradient_bounds, "grad_z_skl", "grad_z_srkl", "srkl_bound", "xlog_sup")
@given(logits3, logits3, alphas)
def test_t8_logit_gradients_match_autograd(z: list[float], pz: list[float], alpha: float) -> None:
    d = proofs.derive_t8_logit_gradient_bounds
    zt, p = _softmax_point(z, pz)
    args = (*z, *p.tolist(), alpha)
    logq = torch.log_softmax(zt, -1)
    g_skl = grad(askd_ref.skew_forward_kl(teacher_logp=p.log(), student_logp=logq, alpha=alpha), zt)
    assert_close(
        g_skl, np.asarray(f(d, "grad_z_skl")(*args), dtype=float).reshape(-1), SYMPY_TOL, what="∇SKL"
    )
    zt2 = zt.detach().clone().requires_grad_(True)
    logq2 = torch.log_softmax(zt2, -1)
    g_srkl = grad(askd_ref.skew_reverse_kl(teacher_logp=p.log(), student_logp=logq2, alpha=alpha), zt2)
    closed = np.asarray(f(d, "grad_z_srkl")(*args), dtype=float).reshape(-1)
    assert_close(g_srkl, closed, SYMPY_TOL, what="∇SRKL")
    assert float(g_skl.abs().sum()) <= 2.0
    assert float(g_srkl.abs().sum()) <= f(d, "srkl_bound")(alpha)
    x = np.linspace(1e-6, 1.0, 200001)
    assert_close((x * np.log(1 / x)).max(), f(d, "xlog_sup")(), override(TOL, atol=1e-9, reason="grid max"))


# --------------------------------------------------------------------------- T1m (mean mode)


@covers(proofs.derive_t1m_tgo_mean_mode, "w_bar")
@given(deltas, alphas, st.integers(1, 400), probs)
def test_t1m_tgo_coefficient_matches_askd_ref_and_autograd(
    delta: float, alpha: float, n: int, p: float
) -> None:
    w = f(proofs.derive_t1m_tgo_mean_mode, "w_bar")(delta, alpha)
    assert_close(w, askd_ref.tgo_coefficient(delta, alpha), SYMPY_TOL, what="w(Δ̄) vs tgo_coefficient")
    # Objective term −p log(α + (1−α)(q/p)^{1/n}); with z = log q, (n/p)·∂/∂z = −w (y ∼ p).
    z = tg(math.log(p) + n * delta)
    obj = -p * torch.log(alpha + (1 - alpha) * torch.exp((z - math.log(p)) / n))
    assert_close(n * grad(obj, z) / p, -w, SYMPY_TOL, what="(n/p)∂J_T^mean/∂log q vs −w")


@covers(proofs.derive_t1m_sgo_mean_mode, "js_coefficient", "uj_integrand", "uj_coefficient")
@given(st.floats(-4.0, 4.0), st.floats(0.01, 0.99), st.integers(1, 50), probs)
def test_t1m_sgo_coefficients_match_askd_ref_and_autograd(
    delta: float, alpha: float, n: int, p: float
) -> None:
    d = proofs.derive_t1m_sgo_mean_mode
    z = tg(math.log(p) + n * delta)  # z = log q, Δ̄ = (z − log p)/n
    dbar = (z - math.log(p)) / n
    log_u = -torch.log(alpha + (1 - alpha) * torch.exp(-dbar))
    # y ∼ q: the ∇S̄-coefficient of a term F(q) is n·∂F/∂q = n·∂F/∂z / q.
    js = n * grad(torch.exp(z) * log_u, z) / math.exp(float(z))
    assert_close(js, f(d, "js_coefficient")(delta, alpha, n), SYMPY_TOL, what="J_S^mean coefficient")
    phi = log_u + (alpha + (1 - alpha) * torch.exp(-dbar)) - 1
    assert_close(phi, f(d, "uj_integrand")(delta, alpha), SYMPY_TOL, what="φ")
    uj = n * grad(torch.exp(z) * phi, z) / math.exp(float(z))
    closed = f(d, "uj_coefficient")(delta, alpha, n)
    assert_close(uj, closed, SYMPY_TOL, what="UJ^mean coefficient vs autograd")
    # askd_ref's option with gate none and adaptive pull-up at quality r with α_S(r) = α.
    o = askd_ref.ASKDOptions(gate="none", sgo_pullup="adaptive", alpha_lo=alpha, alpha_hi=alpha)
    lib = length_corrected_sgo_coefficient(
        t(delta).reshape(1), t(0.5).reshape(1), t(float(n)).reshape(1), options=o
    )
    assert_close(lib[0], closed, SYMPY_TOL, what="length_corrected_sgo_coefficient vs sympy")


def test_every_result_is_compared() -> None:
    """Every result of every derivation is compared by a test in this module."""
    all_results = {(fn.__name__, res.name) for fn in proofs.DERIVATIONS for res in fn().results}
    missing = sorted(all_results - COVERED)
    assert not missing, f"derived expressions not compared with askd_ref/autograd: {missing}"
