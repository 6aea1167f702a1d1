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


# --------------------------------------------------------------------------- sharp constants


def _norms(p: list[float] | torch.Tensor, z: torch.Tensor, alpha: float) -> tuple[float, float]:
    logp = torch.as_tensor(p, dtype=F64).log() if not isinstance(p, torch.Tensor) else p
    z = z.detach().clone().requires_grad_(True)
    (g1,) = torch.autograd.grad(
        askd_ref.skew_forward_kl(teacher_logp=logp, student_logp=torch.log_softmax(z, -1), alpha=alpha), z
    )
    (g2,) = torch.autograd.grad(
        askd_ref.skew_reverse_kl(teacher_logp=logp, student_logp=torch.log_softmax(z, -1), alpha=alpha), z
    )
    return float(g1.abs().sum()), float(g2.abs().sum())


@given(st.integers(2, 64), st.integers(0, 2**20), st.floats(0.1, 15.0), st.floats(1e-3, 1 - 1e-3))
def test_t8_sharp_constants_bound_askd_ref_gradients(
    vocab: int, seed: int, scale: float, alpha: float
) -> None:
    """‖∇_z SKL_α‖₁ ≤ 2(1−√α)/(1+√α) and ‖∇_z SRKL_α‖₁ ≤ K_R(α) (checks/sharp.py).

    Catches: a logit gradient too large by any factor > 1 + 1e-9 at the worst case (e.g. the SKL
    mixture's gradient counted twice, a missing (1 − α), a wrong mixture_grad default)."""
    from checks.sharp import skl_sharp, srkl_sharp

    gen = torch.Generator().manual_seed(seed)
    p = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    z = torch.randn(vocab, generator=gen, dtype=F64) * scale
    n1, n2 = _norms(p, z, alpha)
    assert n1 <= skl_sharp(alpha) * (1 + 1e-9), (n1, skl_sharp(alpha), alpha)
    assert n2 <= srkl_sharp(alpha) * (1 + 1e-9), (n2, srkl_sharp(alpha), alpha)


def test_t8_sharp_constants_are_attained() -> None:
    """At the two-outcome maximisers askd_ref's gradients reach ≥ 0.999 of both sharp constants.

    Catches: a gradient that is too small (e.g. the SRKL mixture's gradient stopped by default)."""
    from checks.sharp import skl_maximiser, skl_sharp, srkl_maximiser, srkl_sharp

    for alpha in (0.01, 0.05, 0.1, 0.3, 0.5, 0.9):
        p, q = skl_maximiser(alpha)
        n1, _ = _norms(p, torch.tensor(q, dtype=F64).log(), alpha)
        assert n1 >= 0.999 * skl_sharp(alpha), (alpha, n1, skl_sharp(alpha))
        s = srkl_maximiser(alpha)
        _, n2 = _norms([1e-300, 1.0 - 1e-300], torch.tensor([s, 1 - s], dtype=F64).log(), alpha)
        assert n2 >= 0.999 * srkl_sharp(alpha), (alpha, n2, srkl_sharp(alpha))


def test_t8_sharp_srkl_constant_is_not_beaten_by_search() -> None:
    """Gradient ascent over (p, q) with 3 and 5 outcomes never exceeds K_R(α) nor K_F(α): an
    independent numerical check of the reduction to two outcomes proved in checks/sharp.py."""
    from checks.sharp import skl_sharp, srkl_sharp

    torch.manual_seed(0)
    for alpha in (0.1, 0.5, 0.9):
        for vocab in (3, 5):
            zp = (torch.randn(vocab, dtype=F64) * 3).requires_grad_(True)
            zq = (torch.randn(vocab, dtype=F64) * 3).requires_grad_(True)
            opt = torch.optim.Adam([zp, zq], lr=0.1)
            best = 0.0
            for step in range(80):
                opt.zero_grad()
                p, q = torch.softmax(zp, -1), torch.softmax(zq, -1)
                m = (1 - alpha) * p + alpha * q
                u = q / m
                c = torch.log(u) + 1 - alpha * u
                norm = (q * (c - (q * c).sum())).abs().sum()
                (-norm).backward()  # type: ignore[no-untyped-call]
                opt.step()
                best = max(best, float(norm))
                if step % 10 == 9:  # askd_ref's gradients along the ascent path
                    n1, n2 = _norms(torch.log_softmax(zp.detach(), -1), zq.detach(), alpha)
                    assert n1 <= skl_sharp(alpha) * (1 + 1e-9)
                    assert n2 <= srkl_sharp(alpha) * (1 + 1e-9)
            assert best <= srkl_sharp(alpha) * (1 + 1e-9), (alpha, vocab, best, srkl_sharp(alpha))
