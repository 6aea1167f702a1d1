"""Equivalences and invariances of the core (rlax/optax style): special cases equal the general
case, masked equals sliced, micro-batched equals batched, identical inputs give exactly 0."""

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import askd_ref
import askd_ref.porting.reference as ref
from askd_ref.porting.tolerances import assert_close, tolerance

F64 = torch.float64
TOL = tolerance(F64, "value")
GTOL = tolerance(F64, "grad")


def _logits(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> torch.Tensor:
    return torch.tensor(rng.normal(size=shape) * scale, dtype=F64)


# ---------------------------------------------------------------------------------------------
# Endpoints of α and β
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mixture_grad", ["full", "stop"])
def test_alpha_zero_is_plain_kl_exactly(rng: np.random.Generator, mixture_grad: str) -> None:
    t = torch.log_softmax(_logits(rng, (5, 13)), -1)
    s = torch.log_softmax(_logits(rng, (5, 13)), -1)
    fkl = askd_ref.forward_kl(teacher_logp=t, student_logp=s)
    rkl = askd_ref.reverse_kl(teacher_logp=t, student_logp=s)
    skl0 = askd_ref.skew_forward_kl(teacher_logp=t, student_logp=s, alpha=0.0, mixture_grad=mixture_grad)  # type: ignore[arg-type]
    srkl0 = askd_ref.skew_reverse_kl(teacher_logp=t, student_logp=s, alpha=0.0, mixture_grad=mixture_grad)  # type: ignore[arg-type]
    assert torch.equal(skl0, fkl)
    assert torch.equal(srkl0, rkl)


def test_alpha_zero_gradient_is_plain_kl_gradient(rng: np.random.Generator) -> None:
    t = torch.log_softmax(_logits(rng, (4, 9)), -1)
    z = _logits(rng, (4, 9)).requires_grad_()
    for skew, plain in (
        (askd_ref.skew_forward_kl, askd_ref.forward_kl),
        (askd_ref.skew_reverse_kl, askd_ref.reverse_kl),
    ):
        (g_skew,) = torch.autograd.grad(
            skew(teacher_logp=t, student_logp=torch.log_softmax(z, -1), alpha=0.0).sum(), z
        )
        (g_plain,) = torch.autograd.grad(
            plain(teacher_logp=t, student_logp=torch.log_softmax(z, -1)).sum(), z
        )
        assert_close(g_skew, g_plain, GTOL, what=f"{skew.__name__} at α=0")


@pytest.mark.parametrize("name", ["skew_forward_kl", "skew_reverse_kl"])
@pytest.mark.parametrize("mixture_grad", ["full", "stop"])
def test_alpha_one_is_zero_with_zero_gradient(rng: np.random.Generator, name: str, mixture_grad: str) -> None:
    t = torch.log_softmax(_logits(rng, (4, 9)), -1)
    z = _logits(rng, (4, 9)).requires_grad_()
    value = getattr(askd_ref, name)(
        teacher_logp=t, student_logp=torch.log_softmax(z, -1), alpha=1.0, mixture_grad=mixture_grad
    )
    assert torch.equal(value, torch.zeros_like(value))
    value.sum().backward()
    assert z.grad is not None
    if name == "skew_reverse_kl" and mixture_grad == "stop":
        # KL(q ‖ sg(q)) has semi-gradient q·1 in log-prob coordinates; through log_softmax it is
        # q − q·Σq = 0 analytically, so only float64 rounding of Σq = 1 remains.
        assert float(z.grad.abs().max()) <= 1e-15
    else:
        assert torch.equal(z.grad, torch.zeros_like(z.grad))


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_jsd_endpoints_are_zero(rng: np.random.Generator, beta: float) -> None:
    t = torch.log_softmax(_logits(rng, (4, 9)), -1)
    z = _logits(rng, (4, 9)).requires_grad_()
    value = askd_ref.generalized_jsd(teacher_logp=t, student_logp=torch.log_softmax(z, -1), beta=beta)
    assert torch.equal(value, torch.zeros_like(value))
    value.sum().backward()
    assert z.grad is not None
    assert float(z.grad.abs().max()) == 0.0


def test_jsd_is_weighted_sum_of_skews(rng: np.random.Generator) -> None:
    """JSD_β = β·SKL_β + (1−β)·SRKL_{1−β} (both mixtures equal M = βp + (1−β)q)."""
    t = torch.log_softmax(_logits(rng, (6, 11)), -1)
    s = torch.log_softmax(_logits(rng, (6, 11)), -1)
    beta = torch.tensor(rng.uniform(0.05, 0.95, size=6), dtype=F64)
    jsd = askd_ref.generalized_jsd(teacher_logp=t, student_logp=s, beta=beta)
    skl = askd_ref.skew_forward_kl(teacher_logp=t, student_logp=s, alpha=beta)
    srkl = askd_ref.skew_reverse_kl(teacher_logp=t, student_logp=s, alpha=1 - beta)
    assert_close(jsd, beta * skl + (1 - beta) * srkl, TOL, what="JSD decomposition")


def test_coefficient_endpoints() -> None:
    d = torch.tensor([-30.0, -1.0, 0.0, 2.0, 30.0], dtype=F64)
    assert torch.equal(askd_ref.tgo_coefficient(d, 0.0), torch.ones_like(d))
    assert torch.equal(askd_ref.tgo_coefficient(d, 1.0), torch.zeros_like(d))
    assert torch.equal(askd_ref.sgo_coefficient(d, 1.0), torch.zeros_like(d))
    assert_close(askd_ref.sgo_coefficient(d, 0.0), d, TOL, what="c̃ at α = 0 is Δ")
    assert_close(askd_ref.sgo_coefficient(d, 0.0, mixture_grad="stop"), d, TOL, what="c_det at α = 0")
    assert float(askd_ref.sgo_coefficient(0.0, 0.3)) == 0.0  # c̃(0) = 0 exactly (T3)


# ---------------------------------------------------------------------------------------------
# Identical inputs give exactly 0
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16], ids=str)
def test_identical_inputs_give_exactly_zero(rng: np.random.Generator, dtype: torch.dtype) -> None:
    lp = torch.log_softmax(_logits(rng, (3, 4, 17)), -1).to(dtype)
    lp[0, 0, :3] = float("-inf")  # padded vocabulary ids of both models
    lp[0, 0] = torch.log_softmax(lp[0, 0].double(), -1).to(dtype)
    for name, kwargs in [
        ("forward_kl", {}),
        ("reverse_kl", {}),
        ("skew_forward_kl", {"alpha": 0.1}),
        ("skew_reverse_kl", {"alpha": 0.1, "mixture_grad": "stop"}),
        ("generalized_jsd", {"beta": 0.5}),
    ]:
        value = getattr(askd_ref, name)(teacher_logp=lp, student_logp=lp, **kwargs)
        assert torch.equal(value, torch.zeros_like(value)), name
    mask = torch.ones(3, 4, dtype=torch.bool)
    batch = askd_ref.DistillBatch(
        mask=mask,
        is_tgo=torch.tensor([True, False, True]),
        quality=torch.tensor([0.2, 0.5, 0.9]),
        student_logp=lp,
        teacher_logp=lp,
    )
    for method in ("askd-dense", "kd", "rkl", "gkd", "distillm", "distillm2"):
        assert float(askd_ref.compute_loss(method, batch).loss) == 0.0, method


# ---------------------------------------------------------------------------------------------
# The distillm2 baseline is a special case of E15
# ---------------------------------------------------------------------------------------------


def _batch(
    rng: np.random.Generator, b: int = 6, n: int = 5, v: int = 9, **extra: Any
) -> askd_ref.DistillBatch:
    mask = torch.tensor(rng.uniform(size=(b, n)) < 0.8)
    mask[:, 0] = True
    s_full = torch.log_softmax(_logits(rng, (b, n, v)), -1)
    t_full = torch.log_softmax(_logits(rng, (b, n, v)), -1)
    ids = torch.tensor(rng.integers(0, v, size=(b, n)))
    fields: dict[str, Any] = {
        "mask": mask,
        "is_tgo": torch.tensor(rng.uniform(size=b) < 0.5),
        "quality": torch.tensor(rng.uniform(size=b), dtype=F64),
        "student_logp": s_full.requires_grad_(),
        "teacher_logp": t_full,
        "student_token_logp": s_full.detach().gather(-1, ids[..., None])[..., 0].requires_grad_(),
        "teacher_token_logp": t_full.gather(-1, ids[..., None])[..., 0],
        "group": torch.tensor(rng.integers(0, 2, size=b)),
    }
    fields["is_tgo"][0], fields["is_tgo"][1] = True, False
    fields.update(extra)
    return askd_ref.DistillBatch(**fields)


DISTILLM2_AS_ASKD = askd_ref.ASKDOptions(alpha_lo=0.1, alpha_hi=0.1, gate="none", mixture_grad="stop")


def test_dense_askd_with_constant_schedule_equals_distillm2(rng: np.random.Generator) -> None:
    batch = _batch(rng)
    a = askd_ref.dense_askd_loss(batch, options=DISTILLM2_AS_ASKD)
    (g_a,) = torch.autograd.grad(a.loss, batch.student_logp)
    b = askd_ref.distillm2_loss(batch)
    (g_b,) = torch.autograd.grad(b.loss, batch.student_logp)
    assert_close(a.loss, b.loss, TOL, what="loss")
    assert_close(g_a, g_b, GTOL, what="gradient")


def test_dense_askd_equals_distillm2_per_sequence(rng: np.random.Generator) -> None:
    """The same equality holds sample by sample (one-sample batches), not only on average."""
    batch = _batch(rng)
    for i in range(batch.batch_size):
        one = batch.select(torch.tensor([i]))
        a = askd_ref.dense_askd_loss(one, options=DISTILLM2_AS_ASKD).loss
        b = askd_ref.distillm2_loss(one).loss
        assert_close(a, b, TOL, what=f"sample {i}")


def test_askd_with_gate_none_and_stop_is_the_sequence_level_distillm2_estimator(
    rng: np.random.Generator,
) -> None:
    """E11/E12 with the same settings: coefficients are the sequence-level ones of SKL_α/SRKL_α.

    With α_lo = α_hi = 0.1, gate "none" and "stop", the TGO coefficient is σ(Δ − logit 0.1) and
    the SGO coefficient is log u at α = 0.1 for every sample, whatever its quality.
    """
    batch = _batch(rng)
    out = askd_ref.askd_loss(batch, options=DISTILLM2_AS_ASKD.replace(normalize="sum"))
    (grad,) = torch.autograd.grad(out.loss, batch.student_token_logp)
    delta = askd_ref.sequence_log_ratio(
        batch.student_token_logp.detach(), batch.teacher_token_logp, batch.mask, normalize="sum"
    )
    n_t, n_s = int(batch.is_tgo.sum()), int((~batch.is_tgo).sum())
    coef = torch.where(
        batch.is_tgo,
        -askd_ref.tgo_coefficient(delta, 0.1) / n_t,
        askd_ref.sgo_coefficient(delta, 0.1, mixture_grad="stop") / n_s,
    )
    assert_close(grad, coef[:, None] * batch.mask, GTOL, what="per-token gradient")


# ---------------------------------------------------------------------------------------------
# Masked equals sliced; constants in logits change nothing; micro-batches equal one batch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", askd_ref.METHODS)
def test_masked_positions_equal_sliced_batch(rng: np.random.Generator, method: str) -> None:
    """Appending masked-out positions full of garbage (NaN included) changes neither loss nor grads."""
    batch = _batch(rng)
    b, n, _v = batch.student_logp.shape
    pad = 3

    def padded(x: torch.Tensor, fill: float) -> torch.Tensor:
        extra = torch.full((b, pad, *x.shape[2:]), fill, dtype=x.dtype)
        return torch.cat([x.detach(), extra], 1).requires_grad_(x.requires_grad)

    wide = askd_ref.DistillBatch(
        mask=torch.cat([batch.mask, torch.zeros(b, pad, dtype=torch.bool)], 1),
        is_tgo=batch.is_tgo,
        quality=batch.quality,
        student_logp=padded(batch.student_logp, float("nan")),
        teacher_logp=padded(batch.teacher_logp, float("nan")),
        student_token_logp=padded(batch.student_token_logp, float("nan")),
        teacher_token_logp=padded(batch.teacher_token_logp, 5.0),
        group=batch.group,
    )
    narrow_out = askd_ref.compute_loss(method, batch)
    wide_out = askd_ref.compute_loss(method, wide)
    assert_close(wide_out.loss, narrow_out.loss, TOL, what=method)
    narrow_out.loss.backward()
    wide_out.loss.backward()
    for name in ("student_logp", "student_token_logp"):
        g_narrow, g_wide = getattr(batch, name).grad, getattr(wide, name).grad
        if g_narrow is None:
            continue
        assert g_wide is not None
        assert_close(g_wide[:, :n], g_narrow, GTOL, what=f"{method} {name}")
        assert float(g_wide[:, n:].abs().max()) == 0.0


@given(shift=st.floats(-50.0, 50.0), scale=st.floats(0.1, 5.0))
def test_adding_a_constant_to_logits_changes_nothing(shift: float, scale: float) -> None:
    rng = np.random.default_rng(0)
    zt, zs = _logits(rng, (4, 12), scale), _logits(rng, (4, 12), scale)
    for name, kwargs in [
        ("forward_kl", {}),
        ("reverse_kl", {}),
        ("skew_forward_kl", {"alpha": 0.2}),
        ("skew_reverse_kl", {"alpha": 0.2}),
        ("generalized_jsd", {"beta": 0.3}),
    ]:
        fn = getattr(askd_ref, name)
        base = fn(teacher_logp=torch.log_softmax(zt, -1), student_logp=torch.log_softmax(zs, -1), **kwargs)
        moved = fn(
            teacher_logp=torch.log_softmax(zt + shift, -1),
            student_logp=torch.log_softmax(zs - 2 * shift, -1),
            **kwargs,
        )
        assert_close(moved, base, tolerance(F64, "value"), what=name)


@pytest.mark.parametrize("method", askd_ref.METHODS)
@pytest.mark.parametrize("off_policy", [False, True])
def test_micro_batches_with_global_counts_equal_one_batch(
    rng: np.random.Generator, method: str, off_policy: bool
) -> None:
    """Gradient accumulation: Σ_k loss(micro_k; global counts) has the full batch's value and grad."""
    extra: dict[str, Any] = {}
    if off_policy:
        extra["behaviour_logp"] = torch.tensor(rng.normal(size=8) - 4.0, dtype=F64)
    batch = _batch(rng, b=8, **extra)
    if method == "advantage_kd":  # groups must be whole within a call: one group per micro-batch
        batch = askd_ref.DistillBatch(**{**batch.__dict__, "group": torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])})
    options = askd_ref.ASKDOptions(lambda_dense=0.3)
    full = askd_ref.compute_loss(method, batch, options=options)
    leaves = [batch.student_logp, batch.student_token_logp]
    g_full = torch.autograd.grad(full.loss, leaves, allow_unused=True)
    n_t, n_s = int(batch.is_tgo.sum()), int((~batch.is_tgo).sum())
    total = torch.zeros((), dtype=F64)
    for rows in (torch.arange(0, 4), torch.arange(4, 8)):
        part = batch.select(rows)
        kinds = (bool(part.is_tgo.any()), bool((~part.is_tgo).any()))
        needs = {"kd": kinds[0], "seqkd": kinds[0], "rkl": kinds[1]}
        if not needs.get(method, True):
            continue
        total = total + askd_ref.compute_loss(method, part, options=options, num_tgo=n_t, num_sgo=n_s).loss
    g_micro = torch.autograd.grad(total, leaves, allow_unused=True)
    assert_close(total, full.loss, TOL, what=f"{method} value")
    for gf, gm, name in zip(g_full, g_micro, ("student_logp", "student_token_logp"), strict=True):
        if gf is None:
            assert gm is None or float(gm.abs().max()) == 0.0
            continue
        assert gm is not None
        assert_close(gm, gf, GTOL, what=f"{method} grad {name}")


def test_num_samples_scales_the_loss(rng: np.random.Generator) -> None:
    batch = _batch(rng)
    local = askd_ref.askd_loss(batch)
    n_t, n_s = int(batch.is_tgo.sum()), int((~batch.is_tgo).sum())
    doubled = askd_ref.askd_loss(batch, num_tgo=2 * n_t, num_sgo=2 * n_s)
    assert_close(doubled.loss, local.loss / 2, TOL, what="global counts")


# ---------------------------------------------------------------------------------------------
# Dtype rules
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (F64, F64),
        (torch.float32, torch.float32),
        (torch.bfloat16, torch.float32),
        (torch.float16, torch.float32),
    ],
    ids=str,
)
def test_result_dtypes(rng: np.random.Generator, dtype: torch.dtype, expected: torch.dtype) -> None:
    lp = torch.log_softmax(_logits(rng, (2, 5)), -1).to(dtype)
    d = torch.tensor([0.5, -0.5]).to(dtype)
    assert askd_ref.skew_forward_kl(teacher_logp=lp, student_logp=lp, alpha=0.1).dtype == expected
    assert askd_ref.tgo_coefficient(d, 0.2).dtype == expected
    assert askd_ref.clipped_sgo_coefficient(d, 0.3).dtype == expected
    assert askd_ref.tgo_alpha(d.abs()).dtype == expected


def test_python_floats_compute_in_float64() -> None:
    assert askd_ref.tgo_coefficient(0.3, 0.2).dtype == F64
    assert askd_ref.sgo_alpha(0.5).dtype == F64
    out = askd_ref.sgo_coefficient(torch.tensor([1.0], dtype=torch.float32), 0.2)
    assert out.dtype == torch.float32  # a Python α adopts the tensor's dtype


def test_reference_module_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = "import sys, askd_ref.porting.reference; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_reference_and_torch_agree_on_a_hand_computed_case() -> None:
    """KL(p‖q) for p = (1/2, 1/2), q = (1/4, 3/4): ½ log 2 + ½ log(2/3) = 0.1438410362258904."""
    p, q = np.log([0.5, 0.5]), np.log([0.25, 0.75])
    exact = 0.5 * np.log(2.0) + 0.5 * np.log(2.0 / 3.0)
    assert abs(float(ref.forward_kl(teacher_logp=p, student_logp=q)) - exact) < 1e-15
    got = askd_ref.forward_kl(teacher_logp=torch.tensor(p), student_logp=torch.tensor(q))
    assert abs(float(got) - exact) < 1e-15
