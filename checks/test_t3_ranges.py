"""T3: ranges and signs of w, c̃, c_det and ĉ, property-based over Δ ∈ [−700, 700] and α."""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

import askd_ref
import proofs
from askd_ref.porting.tolerances import assert_close, override, tolerance
from checks.grid import measure_t3

TOL = tolerance("float64")
deltas = st.floats(-700.0, 700.0)
alphas = st.floats(1e-3, 1 - 1e-3)
F64 = torch.float64


@st.composite
def options_st(draw: st.DrawFn) -> askd_ref.ASKDOptions:
    a_lo = draw(st.floats(0.01, 0.5))
    a_hi = draw(st.floats(a_lo, 0.99))
    tau_lo = draw(st.floats(0.0, 0.9))
    tau_hi = draw(st.floats(tau_lo + 0.01, 1.0))
    pullup = draw(st.sampled_from(["fixed", "adaptive"]))
    mixture_grad = draw(st.sampled_from(["full", "stop"]))
    schedule = draw(st.sampled_from(["linear", "logit"]))
    return askd_ref.ASKDOptions().replace(
        alpha_lo=a_lo,
        alpha_hi=a_hi,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        sgo_pullup=pullup,
        mixture_grad=mixture_grad,
        schedule=schedule,
    )


@given(deltas, alphas)
def test_t3_w_in_unit_interval_and_one_minus_alpha_at_zero(delta: float, alpha: float) -> None:
    w = float(askd_ref.tgo_coefficient(delta, alpha))
    assert 0.0 <= w <= 1.0
    if abs(delta) <= 30:
        assert 0.0 < w < 1.0, f"w({delta}; {alpha}) = {w} not strictly inside (0, 1)"
    w0 = askd_ref.tgo_coefficient(0.0, alpha)
    expected = proofs.derive_t3_coefficient_ranges().result("w_at_zero").function()(alpha)
    assert_close(w0, expected, TOL, what=f"w(0; α={alpha}) vs 1 − α")


@given(st.one_of(st.just(0.0), st.floats(1e-12, 700.0), st.floats(-700.0, -1e-12)), alphas)
def test_t3_c_tilde_below_its_cap_with_the_sign_of_delta(delta: float, alpha: float) -> None:
    d = proofs.derive_t3_coefficient_ranges()
    c_tilde = float(askd_ref.sgo_coefficient(delta, alpha))
    c_det = float(askd_ref.sgo_coefficient(delta, alpha, mixture_grad="stop"))
    cap = float(d.result("sup_c_tilde").function()(alpha))
    cap_det = float(d.result("sup_c_det").function()(alpha))
    slack = 4e-16 * max(1.0, abs(cap))
    assert c_tilde <= cap + slack, f"c̃({delta}; {alpha}) = {c_tilde} > log(1/α) − (1 − α) = {cap}"
    assert c_det <= cap_det + slack, f"c_det = {c_det} > log(1/α) = {cap_det}"
    assert np.sign(c_tilde) == np.sign(delta), f"sign(c̃) = {np.sign(c_tilde)} ≠ sign(Δ = {delta})"
    if delta >= 40:  # the cap is approached (u → 1/α)
        assert_close(c_tilde, cap, override(TOL, atol=1e-12, reason="Δ ≥ 40: within e^{-40} of the cap"))


@given(deltas, st.floats(0.0, 1.0), options_st())
def test_t3_c_hat_nonpositive_where_gate_is_closed(
    delta: float, frac: float, options: askd_ref.ASKDOptions
) -> None:
    r = options.tau_hi + frac * (1.0 - options.tau_hi)  # h(r) = 1
    assert float(askd_ref.soft_gate(r, options.tau_lo, options.tau_hi)) == 1.0
    c_hat = float(askd_ref.clipped_sgo_coefficient(delta, r, options=options))
    assert c_hat <= 0.0, f"ĉ({delta}, r={r}) = {c_hat} > 0 although h(r) = 1 ({options})"


@given(deltas, st.floats(0.0, 1.0), options_st())
def test_t3_c_hat_equals_c_tilde_where_gate_is_open_in_adaptive_mode(
    delta: float, frac: float, options: askd_ref.ASKDOptions
) -> None:
    opts = options.replace(sgo_pullup="adaptive")
    r = frac * opts.tau_lo  # h(r) = 0
    c_hat = askd_ref.clipped_sgo_coefficient(delta, r, options=opts)
    c_tilde = askd_ref.sgo_coefficient(
        delta, askd_ref.sgo_alpha(r, options=opts), mixture_grad=opts.mixture_grad
    )
    assert_close(c_hat, c_tilde, TOL, what="ĉ vs c̃(Δ; α_S(r)) at h = 0")


def test_t3_ranges_on_a_dense_grid() -> None:
    m = measure_t3()
    assert m["w_min"] >= 0.0
    assert m["w_max"] <= 1.0
    assert m["w0_error"] <= 1e-15
    assert m["c_tilde_over_cap"] <= 1e-15 * math.log(1000), m
    assert m["c_det_over_cap"] <= 1e-15 * math.log(1000), m
    assert m["sign_agreement"] == 1.0
    assert m["c_hat_max_at_h1"] <= 0.0
    assert m["c_hat_vs_c_tilde_at_h0"] <= 1e-15
