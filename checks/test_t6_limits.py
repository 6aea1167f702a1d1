"""T6: α → 0 gives w → 1 and c → Δ + 1; α → 1 gives w → 0 and c̃ → 0 (checked at 1e-9)."""

import math

from hypothesis import given
from hypothesis import strategies as st

import askd_ref
import proofs
from checks.grid import measure_t6

LO, HI = 1e-9, 1 - 1e-9


def _limit(name: str, delta: float) -> float:
    return float(proofs.derive_t6_limits().result(name).function()(delta))


@given(st.floats(-20.0, 20.0))
def test_t6_limits_as_alpha_goes_to_zero(delta: float) -> None:
    tol = 2e-9 * math.exp(abs(delta)) + 1e-12  # first-order term α·e^{|Δ|}
    w = float(askd_ref.tgo_coefficient(delta, LO))
    c = float(askd_ref.sgo_coefficient(delta, LO)) + 1 - LO
    assert abs(w - _limit("w_alpha_to_0", delta)) <= tol, f"w({delta}; 1e-9) = {w}"
    assert abs(c - _limit("c_alpha_to_0", delta)) <= tol, f"c({delta}; 1e-9) = {c}, expected Δ + 1"


@given(st.floats(-20.0, 20.0))
def test_t6_limits_as_alpha_goes_to_one(delta: float) -> None:
    tol = 2e-9 * math.exp(abs(delta)) + 1e-12
    w = float(askd_ref.tgo_coefficient(delta, HI))
    c_tilde = float(askd_ref.sgo_coefficient(delta, HI))
    assert abs(w - _limit("w_alpha_to_1", delta)) <= tol, f"w({delta}; 1 − 1e-9) = {w}"
    assert abs(c_tilde - _limit("c_tilde_alpha_to_1", delta)) <= tol, f"c̃({delta}; 1 − 1e-9) = {c_tilde}"


def test_t6_limits_on_a_grid() -> None:
    m = measure_t6()
    assert max(m.values()) <= 1e-6, m
