"""T8: ‖∇_z SKL_α‖₁ ≤ 2 and ‖∇_z SRKL_α‖₁ ≤ 2(log(1/α) + 1 + 1/e) for q = softmax(z)."""

import torch
from hypothesis import given
from hypothesis import strategies as st

import askd_ref
import proofs
from checks.grid import measure_t8

F64 = torch.float64


@given(st.integers(2, 64), st.integers(0, 2**20), st.floats(0.1, 15.0), st.floats(1e-3, 1 - 1e-3))
def test_t8_logit_gradient_norms_are_bounded(vocab: int, seed: int, scale: float, alpha: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    p = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    z = (torch.randn(vocab, generator=gen, dtype=F64) * scale).requires_grad_(True)
    (g_skl,) = torch.autograd.grad(
        askd_ref.skew_forward_kl(teacher_logp=p, student_logp=torch.log_softmax(z, -1), alpha=alpha), z
    )
    (g_srkl,) = torch.autograd.grad(
        askd_ref.skew_reverse_kl(teacher_logp=p, student_logp=torch.log_softmax(z, -1), alpha=alpha), z
    )
    bound = float(proofs.derive_t8_logit_gradient_bounds().result("srkl_bound").function()(alpha))
    assert float(g_skl.abs().sum()) <= 2.0 * (1 + 1e-12), float(g_skl.abs().sum())
    assert float(g_srkl.abs().sum()) <= bound * (1 + 1e-12), (float(g_srkl.abs().sum()), bound)


def test_t8_bounds_on_random_pairs() -> None:
    m = measure_t8()
    assert m["skl_ratio"] <= 1.0, m
    assert m["srkl_ratio"] <= 1.0, m
