"""Valid extremes: extreme logits, −inf vocabulary entries, |Δ| at the limits of spec §3.

Values are compared with mpmath (50 digits) where the float64 probability-space reference cannot
represent the probabilities involved; gradients must be finite everywhere.
"""

import math

import mpmath
import numpy as np
import pytest
import torch

import askd_ref
from askd_ref.porting.tolerances import assert_close, tolerance

DIVS = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("skew_forward_kl", {"alpha": 0.1}),
    ("skew_reverse_kl", {"alpha": 0.1}),
    ("skew_reverse_kl", {"alpha": 0.1, "mixture_grad": "stop"}),
    ("generalized_jsd", {"beta": 0.5}),
]


def _mp_divergence(name: str, lt: list[float], ls: list[float], kwargs: dict[str, object]) -> float:
    """The divergence at 50 digits from log-probs (no underflow: exp of −2e4 is representable)."""
    with mpmath.workdps(50):
        p = [mpmath.exp(mpmath.mpf(x)) for x in lt]
        q = [mpmath.exp(mpmath.mpf(x)) for x in ls]

        def kl(a: list[mpmath.mpf], b: list[mpmath.mpf]) -> mpmath.mpf:
            return mpmath.fsum(x * mpmath.log(x / y) for x, y in zip(a, b, strict=True) if x != 0)

        a = mpmath.mpf(kwargs.get("alpha", kwargs.get("beta", 0.0)))  # type: ignore[arg-type]
        if name == "forward_kl":
            return float(kl(p, q))
        if name == "reverse_kl":
            return float(kl(q, p))
        if name == "skew_forward_kl":
            return float(kl(p, [a * x + (1 - a) * y for x, y in zip(p, q, strict=True)]))
        if name == "skew_reverse_kl":
            return float(kl(q, [(1 - a) * x + a * y for x, y in zip(p, q, strict=True)]))
        m = [a * x + (1 - a) * y for x, y in zip(p, q, strict=True)]
        return float(a * kl(p, m) + (1 - a) * kl(q, m))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize(("name", "kwargs"), DIVS, ids=lambda x: str(x))
def test_extreme_logits_are_finite_and_exact(
    name: str, kwargs: dict[str, object], dtype: torch.dtype
) -> None:
    zt = torch.tensor([[1e4, 0.0, -1e4, 5.0], [-1e4, 1e4, 0.0, 1e4]], dtype=dtype)
    zs = torch.tensor([[-1e4, 1e4, 0.0, 3.0], [1e4, -1e4, 2.0, 1e4]], dtype=dtype, requires_grad=True)
    t = torch.log_softmax(zt, -1)
    s = torch.log_softmax(zs, -1)
    value = getattr(askd_ref, name)(teacher_logp=t, student_logp=s, **kwargs)
    value.sum().backward()
    assert zs.grad is not None
    assert bool(torch.isfinite(value).all()), f"{name} value {value}"
    assert bool(torch.isfinite(zs.grad).all()), f"{name} grad {zs.grad}"
    for i in range(2):
        expected = _mp_divergence(name, t[i].double().tolist(), s[i].detach().double().tolist(), kwargs)
        tol = tolerance(dtype, "value")
        assert_close(value[i], expected, tol, what=f"{name} row {i}")


@pytest.mark.parametrize(("name", "kwargs"), DIVS, ids=lambda x: str(x))
def test_neg_inf_vocabulary_entries(name: str, kwargs: dict[str, object]) -> None:
    """Padded ids with −inf in both models contribute nothing and get zero gradient."""
    z = torch.tensor([[0.3, -1.2, 2.0, 0.0, 0.0]], dtype=torch.float64)
    zs = torch.tensor([[1.0, 0.5, -0.5, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    pad = torch.tensor([[False, False, False, True, True]])
    t = torch.log_softmax(z.masked_fill(pad, float("-inf")), -1)
    s = torch.log_softmax(zs.masked_fill(pad, float("-inf")), -1)
    fn = getattr(askd_ref, name)
    value = fn(teacher_logp=t, student_logp=s, **kwargs)
    value.sum().backward()
    assert zs.grad is not None
    assert bool(torch.isfinite(zs.grad).all())
    assert float(zs.grad[0, 3:].abs().max()) == 0.0
    sliced = fn(teacher_logp=t[:, :3], student_logp=s[:, :3].detach(), **kwargs)
    assert_close(value, sliced, tolerance(torch.float64, "value"), what=name)


def test_teacher_zero_mass_where_student_has_mass() -> None:
    """q > 0 = p: reverse KL is +inf (the true value); a skew α > 0 keeps it finite ≤ log(1/α)."""
    t = torch.log(torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    s = torch.log(torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)).requires_grad_()
    assert math.isinf(float(askd_ref.reverse_kl(teacher_logp=t, student_logp=s.detach())))
    srkl = askd_ref.skew_reverse_kl(teacher_logp=t, student_logp=s, alpha=0.1)
    assert 0 < float(srkl.detach()) <= math.log(10)
    srkl.backward()
    assert s.grad is not None
    assert bool(torch.isfinite(s.grad).all())
    fkl = askd_ref.forward_kl(teacher_logp=t, student_logp=s.detach())
    assert math.isfinite(float(fkl))


@pytest.mark.parametrize(("dtype", "limit"), [(torch.float64, 700.0), (torch.float32, 80.0)], ids=str)
@pytest.mark.parametrize("alpha", [1e-6, 0.1, 0.5, 1 - 1e-6])
def test_coefficients_at_the_delta_limits(dtype: torch.dtype, limit: float, alpha: float) -> None:
    delta = torch.tensor([-limit, -limit / 2, limit / 2, limit], dtype=dtype, requires_grad=True)
    options = askd_ref.ASKDOptions(alpha_lo=min(alpha, 0.5), alpha_hi=max(alpha, 0.5))
    outs = {
        "w": askd_ref.tgo_coefficient(delta, alpha),
        "c_full": askd_ref.sgo_coefficient(delta, alpha),
        "c_stop": askd_ref.sgo_coefficient(delta, alpha, mixture_grad="stop"),
        "c_hat": askd_ref.clipped_sgo_coefficient(delta, 0.6, options=options),
    }
    for key, out in outs.items():
        (grad,) = torch.autograd.grad(out.sum(), delta)
        assert bool(torch.isfinite(out).all()), f"{key} {out}"
        assert bool(torch.isfinite(grad).all()), f"{key} grad {grad}"
    with mpmath.workdps(60):
        a = mpmath.mpf(float(torch.tensor(alpha, dtype=dtype)))  # α as the dtype represents it
        for i, d in enumerate(delta.detach().double().tolist()):
            u = 1 / (a + (1 - a) * mpmath.exp(-mpmath.mpf(d)))
            w = (1 - a) / (a * mpmath.exp(-mpmath.mpf(d)) + (1 - a))
            tol = tolerance(dtype, "value")
            assert_close(outs["w"][i], float(w), tol, what=f"w at Δ={d}")
            assert_close(outs["c_stop"][i], float(mpmath.log(u)), tol, what=f"c_det at Δ={d}")
            assert_close(outs["c_full"][i], float(mpmath.log(u) - a * (u - 1)), tol, what=f"c̃ at Δ={d}")


@pytest.mark.parametrize(("dtype", "limit"), [(torch.float64, 700.0), (torch.float32, 80.0)], ids=str)
def test_losses_at_the_delta_limits(dtype: torch.dtype, limit: float) -> None:
    """Sequence losses with |Δ| at the limit (normalize="sum") stay finite, gradients too."""
    s = torch.tensor([[-limit / 2, -limit / 2], [-1e-3, -1e-3]], dtype=dtype, requires_grad=True)
    t = torch.tensor([[-1e-3, -1e-3], [-limit / 2, -limit / 2]], dtype=dtype)
    mask = torch.ones(2, 2, dtype=torch.bool)
    opts = askd_ref.ASKDOptions(normalize="sum")
    for fn in (askd_ref.tgo_loss, askd_ref.sgo_loss):
        out = fn(
            student_token_logp=s,
            teacher_token_logp=t,
            mask=mask,
            quality=torch.tensor([0.1, 0.9]).to(dtype),
            options=opts,
        )
        (grad,) = torch.autograd.grad(out.loss, s)
        assert math.isfinite(float(out.loss.detach()))
        assert bool(torch.isfinite(grad).all())
        assert all(math.isfinite(v) for v in out.diagnostics.values()), out.diagnostics


def test_extreme_alphas_in_divergences() -> None:
    rng = np.random.default_rng(3)
    t = torch.log_softmax(torch.tensor(rng.normal(size=(3, 8)) * 4), -1)
    z = torch.tensor(rng.normal(size=(3, 8)) * 4, requires_grad=True)
    for alpha in (1e-6, 1 - 1e-6):
        for fn in (askd_ref.skew_forward_kl, askd_ref.skew_reverse_kl):
            v = fn(teacher_logp=t, student_logp=torch.log_softmax(z, -1), alpha=alpha)
            (g,) = torch.autograd.grad(v.sum(), z)
            assert bool(torch.isfinite(v).all())
            assert bool(torch.isfinite(g).all())
            assert float(v.detach().max()) <= math.log(1 / alpha) + 1e-12  # T7 bound
