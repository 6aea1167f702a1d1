"""T7: 0 ≤ SKL_α ≤ min(log(1/α), (1−α)KL), likewise SRKL; non-increasing and convex in α;
|dSKL_α/dα| ≤ TV/α; zero iff p = q; the log(1/α) and TV/α bounds are attained."""

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
from checks.grid import measure_t7

F64 = torch.float64
REL = 1e-9  # rounding slack of ratios of float64 divergences


@st.composite
def pair(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    vocab = draw(st.integers(2, 50))
    seed = draw(st.integers(0, 2**20))
    scale = draw(st.floats(0.1, 12.0))
    gen = torch.Generator().manual_seed(seed)
    p = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    q = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    return p, q


@given(pair(), st.floats(1e-3, 1 - 1e-3))
def test_t7_skew_divergences_between_zero_and_both_bounds(
    pq: tuple[torch.Tensor, torch.Tensor], alpha: float
) -> None:
    p, q = pq
    skl = float(askd_ref.skew_forward_kl(teacher_logp=p, student_logp=q, alpha=alpha))
    srkl = float(askd_ref.skew_reverse_kl(teacher_logp=p, student_logp=q, alpha=alpha))
    fkl = float(askd_ref.forward_kl(teacher_logp=p, student_logp=q))
    rkl = float(askd_ref.reverse_kl(teacher_logp=p, student_logp=q))
    log_inv = math.log(1 / alpha)
    assert skl >= 0.0
    assert srkl >= 0.0
    assert skl <= min(log_inv, (1 - alpha) * fkl) * (1 + REL) + 1e-300, (skl, log_inv, fkl)
    assert srkl <= min(log_inv, (1 - alpha) * rkl) * (1 + REL) + 1e-300, (srkl, log_inv, rkl)


@settings(max_examples=30)
@given(pair())
def test_t7_skew_kl_non_increasing_and_convex_in_alpha(pq: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, q = pq
    grid = torch.linspace(0.0, 1.0, 201, dtype=F64)
    for fn in (askd_ref.skew_forward_kl, askd_ref.skew_reverse_kl):
        v = fn(teacher_logp=p.expand(201, -1), student_logp=q.expand(201, -1), alpha=grid)
        scale = float(v.abs().max()) + 1e-300
        assert float(torch.diff(v).max()) <= 1e-12 * scale, f"{fn.__name__} increases in α"
        assert float(torch.diff(v, n=2).min()) >= -1e-12 * scale, f"{fn.__name__} not convex in α"
        assert float(v[-1]) == 0.0


@given(pair(), st.floats(1e-3, 1 - 1e-3))
def test_t7_alpha_derivative_bounded_by_tv_over_alpha(
    pq: tuple[torch.Tensor, torch.Tensor], alpha: float
) -> None:
    p, q = pq
    tv = 0.5 * float((p.exp() - q.exp()).abs().sum())
    for fn in (askd_ref.skew_forward_kl, askd_ref.skew_reverse_kl):
        a = torch.tensor(alpha, dtype=F64, requires_grad=True)
        (d,) = torch.autograd.grad(fn(teacher_logp=p, student_logp=q, alpha=a), a)
        assert abs(float(d)) <= tv / alpha * (1 + REL) + 1e-15, f"{fn.__name__}: |d/dα| = {float(d)} > TV/α"


@given(pair(), st.floats(1e-3, 1 - 1e-3))
def test_t7_skew_divergences_zero_iff_equal(pq: tuple[torch.Tensor, torch.Tensor], alpha: float) -> None:
    p, q = pq
    for fn in (askd_ref.skew_forward_kl, askd_ref.skew_reverse_kl):
        assert float(fn(teacher_logp=p, student_logp=p, alpha=alpha)) == 0.0
        if float((p.exp() - q.exp()).abs().max()) > 1e-4:
            assert float(fn(teacher_logp=p, student_logp=q, alpha=alpha)) > 0.0


def test_t7_bounds_hold_on_random_pairs_and_are_attained() -> None:
    m = measure_t7()
    for key in ("skl_over_log", "skl_over_kl", "srkl_over_log", "srkl_over_kl", "dskl_over_tv"):
        assert m[key] <= 1 + REL, f"{key} = {m[key]!r} over {int(m['pairs'])} random pairs × 4 values of α"
    assert m["skl_over_log_disjoint"] >= 0.99, "log(1/α) is attained as the supports separate"
    assert m["dskl_over_tv_disjoint"] >= 0.99, "TV/α is attained as the supports separate"
    assert m["skl_largest_increase_in_alpha"] <= 0.0
    assert m["skl_most_negative_second_difference"] >= -1e-15
    assert m["skl_at_p_equals_q"] == 0.0
