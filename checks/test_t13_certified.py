"""T13: the inequalities of T3, T4, T7, T8 certified by interval arithmetic (``proofs/certify.py``).

The fast subset runs here; the full run (every inequality, constants to 1e-6) is a slow test that
also requires ``proofs/certified.md`` (the table in docs/derivations.md) to be what it prints.
"""

import pytest

from proofs import certify
from proofs._core import DerivationError
from proofs.certify import (
    CONSTANTS,
    INEQUALITIES,
    UNIT,
    CertificationError,
    Inequality,
    Monotone,
    Plain,
    certify_constant,
    certify_inequality,
)


def _quiet(_: str) -> None:
    pass


def test_t13_fast_subset_is_certified() -> None:
    """Catches: a T3/T4/T7/T8 bound that does not hold (any box with a negative margin), a sharp
    constant whose closed form lies outside its certified enclosure, a derivative or factorisation
    used by a monotone/factored piece that is not the margin's (sympy identity)."""
    ineqs, consts, ok = certify.run(fast=True, out=_quiet)
    assert ok
    assert len(ineqs) == sum(i.fast for i in INEQUALITIES)
    assert {i.inequality.label for i in ineqs} == {"T3", "T4", "T7", "T8"}
    assert all(c.contains_closed_form for c in consts)


def test_t13_a_bound_too_small_by_one_part_in_ten_thousand_is_not_certified() -> None:
    """The certifier can fail: w(1 − w) ≤ 0.24998 is false near w = 1/2."""
    false = Inequality(
        "T4",
        "w(1 − w) ≤ 0.24998 (false)",
        ("omega",),
        (UNIT,),
        "ω ∈ [0, 1]",
        lambda ops, w: ops.rat(24998, 100000) - w * (1 - w),
        (Plain((UNIT,)),),
    )
    with pytest.raises(CertificationError):
        certify_inequality(false)


def test_t13_a_monotone_piece_with_a_wrong_derivative_is_rejected() -> None:
    """The derivative a monotone piece relies on is checked against sympy's ∂m/∂x."""
    wrong = Inequality(
        "T4",
        "w(1 − w) ≤ 1/4 with a wrong derivative",
        ("omega",),
        ((0.5, 1.0),),
        "ω ∈ [1/2, 1]",
        lambda ops, w: ops.rat(1, 4) - w * (1 - w),
        (Monotone(((0.5, 1.0),), 0, "lo", lambda ops, w: 2 * w, Plain(((0.5, 0.5),))),),
    )
    with pytest.raises(DerivationError):
        certify_inequality(wrong)


def test_t13_k_r_enclosure_contains_the_float64_sharp_constant() -> None:
    """checks/sharp.py's K_R(0.1) (golden section, float64) lies in the certified enclosure of the
    two-outcome supremum; catches a wrong two-outcome objective on either side."""
    from checks.sharp import srkl_sharp

    (const,) = [c for c in CONSTANTS if c.name == "K_R at α = 1/10 (two outcomes)"]
    res = certify_constant(const, rel_tol=1e-4)
    assert float(res.lower) <= srkl_sharp(0.1) <= float(res.upper), (res.lower, srkl_sharp(0.1), res.upper)


@pytest.mark.slow
def test_t13_full_run_is_certified_and_matches_the_committed_table() -> None:
    ineqs, consts, ok = certify.run(fast=False, out=_quiet)
    assert ok
    assert len(ineqs) == len(INEQUALITIES)
    assert len(consts) == len(CONSTANTS)
    from checks.sharp import srkl_sharp

    for c in consts:  # the float64 K_R of checks/sharp.py (golden section, ≈ 1e-12) is enclosed
        if c.constant.name.startswith("K_R at α = "):
            p, q = c.constant.name.split("= ")[1].split(" ")[0].split("/")
            k_r = srkl_sharp(int(p) / int(q))
            assert float(c.lower) * (1 - 1e-12) <= k_r <= float(c.upper) * (1 + 1e-12), (c, k_r)
    text = certify.markdown(ineqs, consts, "python -m proofs.certify")
    assert certify.TABLE_PATH.read_text(encoding="utf-8") == text, (
        "proofs/certified.md is stale: run `python -m proofs.certify --write` then `python -m proofs`"
    )
