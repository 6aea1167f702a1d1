"""T4: Lipschitz constants measured as maximal difference quotients on dense grids, against the
constants derived in proofs/ (≤ bound·(1 + 1e-6) always; ≥ 0.99·bound where the bound is tight)."""

from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
from checks.grid import (
    LIPSCHITZ_RTOL,
    TIGHT_FRACTION,
    LipschitzRow,
    c_hat_quality_constant,
    hard_gate_quotient,
    measure_t4,
    sharp_quality_constant,
)


def _rows(name: str) -> list[LipschitzRow]:
    rows = [r for r in measure_t4() if r.name == name]
    assert rows, f"no measurements named {name!r}"
    return rows


def _check(rows: list[LipschitzRow]) -> None:
    for r in rows:
        assert r.measured <= r.bound * (1 + LIPSCHITZ_RTOL), (
            f"{r.name} ({r.case}): measured {r.measured!r} exceeds the derived bound {r.bound!r}"
        )
        if r.tight:
            assert r.measured >= TIGHT_FRACTION * r.bound, (
                f"{r.name} ({r.case}): measured {r.measured!r} < {TIGHT_FRACTION}·bound {r.bound!r}; "
                "the bound is claimed tight"
            )


def test_t4_w_lipschitz_in_delta() -> None:
    _check(_rows("w in Δ"))


def test_t4_w_lipschitz_in_alpha() -> None:
    _check(_rows("w in α"))


def test_t4_c_tilde_and_c_det_lipschitz_in_delta() -> None:
    _check(_rows("c̃ in Δ") + _rows("c_det in Δ"))


def test_t4_c_tilde_lipschitz_in_alpha() -> None:
    _check(_rows("c̃ in α"))


def test_t4_c_hat_lipschitz_in_delta() -> None:
    _check(_rows("ĉ in Δ"))


def test_t4_w_lipschitz_in_quality() -> None:
    _check(_rows("w in r"))


def test_t4_c_hat_sharp_lipschitz_constant_in_quality_for_every_option_combination() -> None:
    rows = _rows("ĉ in r (soft gate), sharp")
    assert len(rows) == 8
    _check(rows)
    default = next(r for r in rows if r.case == "linear/full/fixed")
    assert abs(default.bound - 7.2) <= 1e-12, "the derived sharp constant at the defaults is 36/5"


def test_t4_c_hat_spec_bound_in_quality_holds_but_is_not_sharp() -> None:
    (row,) = _rows("ĉ in r (soft gate), spec bound")
    _check([row])
    assert row.ratio < 0.7, (
        f"measured/spec bound = {row.ratio:.3f}: the spec's constant is ~1.6× the sharp one"
    )


@st.composite
def options_st(draw: st.DrawFn) -> askd_ref.ASKDOptions:
    a_lo = draw(st.floats(0.02, 0.5))
    a_hi = draw(st.floats(a_lo, 0.98))
    tau_lo = draw(st.floats(0.0, 0.8))
    tau_hi = draw(st.floats(tau_lo + 0.05, 1.0))
    return askd_ref.ASKDOptions().replace(
        alpha_lo=a_lo,
        alpha_hi=a_hi,
        tau_lo=tau_lo,
        tau_hi=tau_hi,
        schedule=draw(st.sampled_from(["linear", "logit"])),
        mixture_grad=draw(st.sampled_from(["full", "stop"])),
        sgo_pullup=draw(st.sampled_from(["fixed", "adaptive"])),
    )


@settings(max_examples=25)
@given(options_st())
def test_t4_c_hat_sharp_constant_in_quality_for_random_options(options: askd_ref.ASKDOptions) -> None:
    measured = c_hat_quality_constant(options, n=501)
    sharp = sharp_quality_constant(options)
    assert measured <= sharp * (1 + LIPSCHITZ_RTOL), (
        f"measured {measured} > derived sharp {sharp} for {options}"
    )
    assert measured >= TIGHT_FRACTION * sharp, f"measured {measured} < 0.99·sharp {sharp} for {options}"


def test_t4_hard_gate_is_not_continuous_in_quality() -> None:
    """Negative check: across τ the hard gate's difference quotient is unbounded."""
    h = hard_gate_quotient(eps=1e-9)
    assert abs(h["jump"] - h["derived_jump"]) <= 1e-8, h
    sharp = sharp_quality_constant(askd_ref.ASKDOptions())
    assert h["quotient"] > 1e6 * sharp, f"hard-gate quotient {h['quotient']:.3g} at ε = {h['eps']}"
    smaller = hard_gate_quotient(eps=1e-12)
    assert smaller["quotient"] > 100 * h["quotient"], "the quotient must grow like 1/ε (a jump)"
