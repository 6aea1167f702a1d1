"""T5: w is non-decreasing in quality; the push-down max(ĉ, 0) and its cap are non-increasing."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
from checks.grid import measure_t5

F64 = torch.float64
R = torch.linspace(0.0, 1.0, 201, dtype=F64)
D = torch.linspace(-30.0, 30.0, 121, dtype=F64)
ULP = torch.finfo(F64).eps


def _slack(values: torch.Tensor) -> float:
    """Rounding allowance: 8 ulp of the largest value (α_S(r) may wobble in its last bits)."""
    return 8 * ULP * max(1.0, float(values.abs().max()))


@st.composite
def options_st(draw: st.DrawFn) -> askd_ref.ASKDOptions:
    a_lo = draw(st.floats(0.01, 0.5))
    a_hi = draw(st.floats(a_lo, 0.99))
    tau_lo = draw(st.floats(0.0, 0.9))
    tau_hi = draw(st.floats(tau_lo + 0.01, 1.0))
    return askd_ref.ASKDOptions().replace(
        alpha_lo=a_lo,
        alpha_hi=a_hi,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        gate=draw(st.sampled_from(["soft", "hard", "none"])),
        schedule=draw(st.sampled_from(["linear", "logit"])),
        mixture_grad=draw(st.sampled_from(["full", "stop"])),
        sgo_pullup=draw(st.sampled_from(["fixed", "adaptive"])),
    )


@settings(max_examples=40)
@given(options_st())
def test_t5_w_non_decreasing_in_quality(options: askd_ref.ASKDOptions) -> None:
    w = askd_ref.tgo_coefficient(D[:, None], askd_ref.tgo_alpha(R, options=options)[None, :])
    worst = float((-torch.diff(w, dim=1)).max())
    assert worst <= _slack(w), f"w decreases by {worst:.3g} along r ({options})"
    if options.alpha_hi - options.alpha_lo > 0.05:
        assert float((w[:, -1] - w[:, 0]).max()) > 0, "w must actually increase when α_T varies"


@settings(max_examples=40)
@given(options_st())
def test_t5_push_down_non_increasing_in_quality(options: askd_ref.ASKDOptions) -> None:
    push = torch.clamp(askd_ref.clipped_sgo_coefficient(D[:, None], R[None, :], options=options), min=0.0)
    worst = float(torch.diff(push, dim=1).max())
    assert worst <= _slack(push), f"the push-down max(ĉ, 0) increases by {worst:.3g} along r ({options})"


@settings(max_examples=40)
@given(options_st())
def test_t5_push_down_cap_non_increasing_in_quality(options: askd_ref.ASKDOptions) -> None:
    a = askd_ref.sgo_alpha(R, options=options)
    cap = askd_ref.sgo_coefficient(700.0, a, mixture_grad=options.mixture_grad)  # the cap, Δ → ∞
    assert float(torch.diff(cap).max()) <= _slack(cap)


def test_t5_on_a_dense_grid_at_the_defaults() -> None:
    m = measure_t5()
    assert m["w_largest_decrease"] <= 0.0
    assert m["push_down_largest_increase"] <= 0.0
    assert m["cap_largest_increase"] <= 0.0
    assert abs(m["w_total_increase_at_0"] - 0.8) <= 1e-12  # w(0) = 1 − α_T(r) goes from 0.1 to 0.9
