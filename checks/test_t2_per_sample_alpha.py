"""T2: with per-sample α (quality schedules), E11 is the exact gradient of J_T and E12 of UJ;
J_T's minimiser is tilted toward high-quality TGOs; UJ ≥ 0 with equality iff q = p."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from checks.exact import EXACT_ATOL, instance, t2_errors, t2_minimiser, uj_seq

models = st.tuples(st.integers(2, 4), st.integers(1, 3), st.integers(0, 2**20), st.floats(0.3, 3.0))


def _quality(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@settings(max_examples=30)
@given(models, st.integers(0, 2**20))
def test_t2_tgo_loss_with_quality_schedule_is_the_gradient_of_j_t(
    model: tuple[int, int, int, float], qseed: int
) -> None:
    inst = instance(*model)
    e = t2_errors(inst, _quality(inst.q_tok.shape[0], qseed))
    assert e["tgo_error"] <= EXACT_ATOL, f"E_p[∇ tgo_loss] − ∇J_T = {e['tgo_error']:.3g} (model {model})"


@settings(max_examples=30)
@given(models, st.integers(0, 2**20))
def test_t2_sgo_loss_with_quality_schedule_is_the_gradient_of_uj(
    model: tuple[int, int, int, float], qseed: int
) -> None:
    inst = instance(*model)
    e = t2_errors(inst, _quality(inst.q_tok.shape[0], qseed))
    assert e["sgo_error"] <= EXACT_ATOL, (
        f"adaptive pull-up: E_q[∇ sgo_loss] − ∇UJ = {e['sgo_error']:.3g} ({model})"
    )
    assert e["sgo_fixed_error"] <= EXACT_ATOL, (
        f"fixed pull-up: E_q[∇ sgo_loss] − ∇UJ(α_lo where q < p) = {e['sgo_fixed_error']:.3g} ({model})"
    )
    assert e["uj"] >= 0.0
    assert abs(e["uj_at_p"]) <= 1e-15


def test_t2_j_t_minimiser_is_tilted_toward_high_quality() -> None:
    for seed in range(3):
        m = t2_minimiser(seed)
        assert m["min_closed"] > 0, "the instance must have an interior minimiser"
        assert m["minimiser_error"] <= 1e-7, f"LBFGS minimiser vs KKT closed form: {m['minimiser_error']:.3g}"
        assert m["constant_alpha_error"] <= 1e-7, (
            f"constant α: minimiser − p = {m['constant_alpha_error']:.3g}"
        )
        assert m["corr_alpha_tilt"] < -0.9, f"q*/p should fall with α_y: corr = {m['corr_alpha_tilt']:.3f}"


@given(
    st.integers(2, 12),
    st.integers(0, 2**20),
    st.floats(0.0, 4.0),
)
def test_t2_uj_is_nonnegative_and_zero_only_at_the_teacher(size: int, seed: int, spread: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    p = torch.log_softmax(torch.randn(size, generator=gen, dtype=torch.float64) * 2, -1)
    q = torch.log_softmax(p + spread * torch.randn(size, generator=gen, dtype=torch.float64), -1)
    alpha = 0.01 + 0.98 * torch.rand(size, generator=gen, dtype=torch.float64)
    uj = float(uj_seq(p, q, alpha))
    assert uj >= -1e-15, f"UJ = {uj} < 0"
    assert abs(float(uj_seq(p, p, alpha))) <= 1e-15
    gap = float((p.exp() - q.exp()).abs().max())
    if gap > 1e-3:
        assert uj > 0.0, f"UJ = {uj} with max|p − q| = {gap}"
    assert math.isfinite(uj)
