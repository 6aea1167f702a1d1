"""T11: one small SGD step on ℓ_S alone (askd_ref.sgo_loss, a tiny neural AR model) never lowers
log q(y) of a top-quality SGO (h(r) = 1) and lowers it for a low-quality SGO with Δ > 0; the
measured change agrees with the first-order prediction −η⟨∇ℓ_S, ∇log q(y)⟩; at h = 1 the clip is
idempotent: sgo_loss gives Δ and min(Δ, 0) the same coefficient."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
from checks.dynamics import FIRST_ORDER_RTOL, StepResult, clip_idempotence_gap, t11_cases


def _first_order(step: StepResult) -> None:
    assert abs(step.change - step.predicted) <= FIRST_ORDER_RTOL * abs(step.predicted) + 1e-15, (
        f"{step.case}: change {step.change:.4g} vs first-order prediction {step.predicted:.4g}"
    )


@settings(max_examples=8)
@given(st.integers(0, 2**16), st.sampled_from(["sum", "mean"]))
def test_t11_top_quality_sgo_is_never_pushed_down(seed: int, normalize: str) -> None:
    steps = t11_cases(seed, askd_ref.ASKDOptions().replace(normalize=normalize))
    for step in steps[:2]:  # h(r) = 1
        assert step.c_hat <= 0.0, step
        assert step.change >= 0.0, (
            f"{step.case}: log q(y) fell by {-step.change:.3g} (seed {seed}, {normalize})"
        )
        _first_order(step)
    assert steps[0].change == 0.0, "Δ > 0 at h = 1: ĉ = 0, the step must leave log q(y) unchanged"
    assert steps[1].change > 0.0, "Δ < 0 at h = 1: the SGO is still pulled up"


@settings(max_examples=8)
@given(st.integers(0, 2**16), st.sampled_from(["sum", "mean"]))
def test_t11_low_quality_unsupported_sgo_is_pushed_down(seed: int, normalize: str) -> None:
    steps = t11_cases(seed, askd_ref.ASKDOptions().replace(normalize=normalize))
    low_pos = steps[2]
    assert low_pos.delta > 0
    assert low_pos.c_hat > 0
    assert low_pos.change < 0.0, f"{low_pos.case}: log q(y) rose by {low_pos.change:.3g} (seed {seed})"
    _first_order(low_pos)


@pytest.mark.parametrize("normalize", ["sum", "mean"])
@pytest.mark.parametrize("pullup", ["fixed", "adaptive"])
def test_t11_clip_is_idempotent(pullup: str, normalize: str) -> None:
    """At h = 1, sgo_loss's coefficient for Δ equals its coefficient for min(Δ, 0): clipping the
    log-ratio first changes nothing. Catches: a push-down that leaks through at h(r) = 1 (gate
    applied to the pull-up, h(1) < 1, max(ĉ, 0) not removed), a pull-up that depends on the
    positive part of Δ."""
    options = askd_ref.ASKDOptions().replace(sgo_pullup=pullup, normalize=normalize)
    assert clip_idempotence_gap(options) == 0.0
