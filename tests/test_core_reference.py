"""Every public function of askd_ref against the float64 NumPy reference, over a dtype grid.

The reference (``askd_ref.porting.reference``) is written differently: probability space, mpmath
coefficients, analytic gradients, Python loops. Inputs are rounded to the dtype under test
first and the reference is evaluated on exactly those rounded values, so the comparison
measures the implementation's arithmetic, with the tolerances of ``askd_ref.porting.tolerances``.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

import askd_ref
import askd_ref.porting.reference as ref
from askd_ref.porting.tolerances import assert_close, tolerance

DTYPES = [torch.float64, torch.float32, torch.bfloat16]

OPTION_GRID = {
    "default": askd_ref.ASKDOptions(),
    "sum": askd_ref.ASKDOptions(normalize="sum"),
    "stop": askd_ref.ASKDOptions(mixture_grad="stop"),
    "hard": askd_ref.ASKDOptions(gate="hard"),
    "nogate": askd_ref.ASKDOptions(gate="none"),
    "adaptive": askd_ref.ASKDOptions(sgo_pullup="adaptive"),
    "logit": askd_ref.ASKDOptions(schedule="logit", alpha_lo=0.05, alpha_hi=0.7),
    "dense": askd_ref.ASKDOptions(lambda_dense=0.5, lambda_tgo=0.7, lambda_sgo=1.3),
    "uj": askd_ref.ASKDOptions(sgo_length_correction="uj"),
}


def _leaf(x: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float64).to(dtype).requires_grad_()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def _log_probs(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    z = rng.normal(size=shape) * scale
    return z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True)) - z.max(-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# E1–E4
# ---------------------------------------------------------------------------------------------

DIVERGENCES: list[tuple[str, dict[str, Any]]] = [
    ("forward_kl", {}),
    ("reverse_kl", {}),
    ("skew_forward_kl", {"alpha": "per_position", "mixture_grad": "full"}),
    ("skew_forward_kl", {"alpha": 0.1, "mixture_grad": "stop"}),
    ("skew_reverse_kl", {"alpha": "per_position", "mixture_grad": "full"}),
    ("skew_reverse_kl", {"alpha": 0.3, "mixture_grad": "stop"}),
    ("generalized_jsd", {"beta": "per_position"}),
    ("generalized_jsd", {"beta": 0.9}),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("name", "params"), DIVERGENCES, ids=lambda x: str(x))
def test_divergence_values_and_logp_gradients(
    rng: np.random.Generator, dtype: torch.dtype, name: str, params: dict[str, Any]
) -> None:
    shape = (3, 4, 11)
    t_np, s_np = _log_probs(rng, shape), _log_probs(rng, shape, scale=1.5)
    teacher = torch.tensor(t_np).to(dtype)
    student = _leaf(s_np, dtype)
    kwargs = dict(params)
    for key in ("alpha", "beta"):
        if kwargs.get(key) == "per_position":
            kwargs[key] = torch.tensor(rng.uniform(0.05, 0.95, size=shape[:-1])).to(dtype)
    value = getattr(askd_ref, name)(teacher_logp=teacher, student_logp=student, **kwargs)
    value.sum().backward()
    ref_kwargs = {k: (_np(v) if isinstance(v, torch.Tensor) else v) for k, v in kwargs.items()}
    t_in, s_in = _np(teacher), _np(student)
    expected = getattr(ref, name)(teacher_logp=t_in, student_logp=s_in, **ref_kwargs)
    expected_grad = getattr(ref, f"{name}_grad")(
        teacher_logp=t_in, student_logp=s_in, wrt="logp", **ref_kwargs
    )
    assert value.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_close(value, expected, tolerance(dtype, "value"), what=f"{name} value")
    assert student.grad is not None
    assert_close(student.grad, expected_grad, tolerance(dtype, "grad"), what=f"{name} grad wrt student_logp")


@pytest.mark.parametrize(("name", "params"), DIVERGENCES, ids=lambda x: str(x))
def test_divergence_logit_gradients_float64(
    rng: np.random.Generator, name: str, params: dict[str, Any]
) -> None:
    """Through log_softmax: ∂D/∂z against the reference's analytic chain rule."""
    shape = (2, 3, 9)
    teacher = torch.tensor(_log_probs(rng, shape))
    z = torch.tensor(rng.normal(size=shape) * 2, requires_grad=True)
    student = torch.log_softmax(z, -1)
    kwargs = {k: (0.37 if v == "per_position" else v) for k, v in params.items()}
    getattr(askd_ref, name)(teacher_logp=teacher, student_logp=student, **kwargs).sum().backward()
    expected = getattr(ref, f"{name}_grad")(teacher_logp=_np(teacher), student_logp=_np(student), **kwargs)
    assert z.grad is not None
    assert_close(z.grad, expected, tolerance(torch.float64, "grad"), what=f"{name} grad wrt logits")


# ---------------------------------------------------------------------------------------------
# E5–E10
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("tgo_coefficient", {}),
        ("sgo_coefficient", {"mixture_grad": "full"}),
        ("sgo_coefficient", {"mixture_grad": "stop"}),
    ],
)
def test_coefficients_values_and_gradients(
    rng: np.random.Generator, dtype: torch.dtype, name: str, kwargs: dict[str, str]
) -> None:
    delta = _leaf(np.concatenate([rng.normal(size=40) * 8, [0.0, 0.5, -0.5, 30.0, -30.0]]), dtype)
    alpha = _leaf(rng.uniform(0.01, 0.99, size=45), dtype)
    out = getattr(askd_ref, name)(delta, alpha, **kwargs)
    out.sum().backward()
    d_np, a_np = _np(delta), _np(alpha)
    assert_close(out, getattr(ref, name)(d_np, a_np, **kwargs), tolerance(dtype, "value"), what=name)
    g_delta, g_alpha = getattr(ref, f"{name}_grad")(d_np, a_np, **kwargs)
    assert delta.grad is not None
    assert alpha.grad is not None
    assert_close(delta.grad, g_delta, tolerance(dtype, "grad"), what=f"{name} d/dΔ")
    assert_close(alpha.grad, g_alpha, tolerance(dtype, "grad"), what=f"{name} d/dα")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("option_name", list(OPTION_GRID))
def test_clipped_sgo_coefficient(rng: np.random.Generator, dtype: torch.dtype, option_name: str) -> None:
    options = OPTION_GRID[option_name]
    d = np.concatenate([rng.normal(size=60) * 4, [0.0, 1e-3, -1e-3]])
    r = np.concatenate([rng.uniform(size=60), [0.0, options.tau, 1.0]])
    delta, quality = _leaf(d, dtype), torch.tensor(r).to(dtype)
    out = askd_ref.clipped_sgo_coefficient(delta, quality, options=options)
    out.sum().backward()
    d_np, r_np = _np(delta), _np(quality)
    assert_close(
        out, ref.clipped_sgo_coefficient(d_np, r_np, options=options), tolerance(dtype, "value"), what="ĉ"
    )
    assert delta.grad is not None
    expected = ref.clipped_sgo_coefficient_grad(d_np, r_np, options=options)
    assert_close(delta.grad, expected, tolerance(dtype, "grad"), what="∂ĉ/∂Δ")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("option_name", ["default", "hard", "nogate", "logit"])
def test_gates_and_schedules(rng: np.random.Generator, dtype: torch.dtype, option_name: str) -> None:
    options = OPTION_GRID[option_name]
    r = torch.tensor(np.concatenate([rng.uniform(size=50), [0.0, 0.5, 0.75, 1.0]])).to(dtype)
    r_np = _np(r)
    tol = tolerance(dtype, "value")
    assert_close(
        askd_ref.tgo_alpha(r, options=options), ref.tgo_alpha(r_np, options=options), tol, what="α_T"
    )
    assert_close(
        askd_ref.sgo_alpha(r, options=options), ref.sgo_alpha(r_np, options=options), tol, what="α_S"
    )
    assert_close(
        askd_ref.quality_gate(r, options=options), ref.quality_gate(r_np, options=options), tol, what="h"
    )
    assert_close(askd_ref.soft_gate(r, 0.2, 0.6), ref.soft_gate(r_np, 0.2, 0.6), tol, what="soft gate")
    assert_close(askd_ref.hard_gate(r, 0.6), ref.hard_gate(r_np, 0.6), tol, what="hard gate")


# ---------------------------------------------------------------------------------------------
# Sequences and losses E11–E15, baselines
# ---------------------------------------------------------------------------------------------


def _token_batch(rng: np.random.Generator, b: int = 6, n: int = 5) -> dict[str, np.ndarray]:
    mask = rng.uniform(size=(b, n)) < 0.8
    mask[:, 0] = True  # every row keeps a token
    student = np.log(rng.uniform(0.05, 1.0, size=(b, n)))
    teacher = np.log(rng.uniform(0.05, 1.0, size=(b, n)))
    return {"student_token_logp": student, "teacher_token_logp": teacher, "mask": mask}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("normalize", ["sum", "mean"])
def test_sequence_log_ratio(rng: np.random.Generator, dtype: torch.dtype, normalize: str) -> None:
    data = _token_batch(rng)
    s = _leaf(data["student_token_logp"], dtype)
    t = torch.tensor(data["teacher_token_logp"]).to(dtype)
    m = torch.tensor(data["mask"])
    out = askd_ref.sequence_log_ratio(s, t, m, normalize=normalize)  # type: ignore[arg-type]
    out.sum().backward()
    expected = ref.sequence_log_ratio(_np(s), _np(t), data["mask"], normalize=normalize)
    assert_close(out, expected, tolerance(dtype, "value"), what="Δ")
    lengths = data["mask"].sum(-1, keepdims=True)
    expected_grad = data["mask"] / (lengths if normalize == "mean" else 1)
    assert s.grad is not None
    assert_close(s.grad, expected_grad, tolerance(dtype, "grad"), what="∂Δ/∂ℓq")


def _compare_loss(
    out: askd_ref.LossOutput, expected: ref.ReferenceLossOutput, dtype: torch.dtype, what: str
) -> None:
    assert_close(out.loss, expected.loss, tolerance(dtype, "value"), what=f"{what} loss")
    assert out.sample_count == expected.sample_count
    assert set(out.diagnostics) == set(expected.diagnostics), what
    for key, value in out.diagnostics.items():
        assert_close(value, expected.diagnostics[key], tolerance(dtype, "value"), what=f"{what} {key}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("option_name", list(OPTION_GRID))
@pytest.mark.parametrize("kind", ["tgo", "sgo", "sgo_off_policy"])
def test_sequence_losses(rng: np.random.Generator, dtype: torch.dtype, option_name: str, kind: str) -> None:
    options = OPTION_GRID[option_name]
    data = _token_batch(rng)
    s = _leaf(data["student_token_logp"], dtype)
    t = torch.tensor(data["teacher_token_logp"]).to(dtype)
    m = torch.tensor(data["mask"])
    q = torch.tensor(rng.uniform(size=6)).to(dtype)
    kwargs: dict[str, Any] = {"options": options, "num_samples": 9}
    ref_kwargs: dict[str, Any] = dict(kwargs)
    if kind == "sgo_off_policy":
        seq = (data["student_token_logp"] * data["mask"]).sum(-1)
        mu = torch.tensor(seq + rng.uniform(-0.4, 0.4, size=6)).to(dtype)
        kwargs["behaviour_logp"], ref_kwargs["behaviour_logp"] = mu, _np(mu)
    fn = askd_ref.tgo_loss if kind == "tgo" else askd_ref.sgo_loss
    out = fn(student_token_logp=s, teacher_token_logp=t, mask=m, quality=q, **kwargs)
    out.loss.backward()
    ref_fn = ref.tgo_loss if kind == "tgo" else ref.sgo_loss
    expected = ref_fn(
        student_token_logp=_np(s), teacher_token_logp=_np(t), mask=data["mask"], quality=_np(q), **ref_kwargs
    )
    _compare_loss(out, expected, dtype, kind)
    assert s.grad is not None
    assert_close(s.grad, expected.grad["student_token_logp"], tolerance(dtype, "grad"), what=f"{kind} grad")


def _distill_batch(
    rng: np.random.Generator, dtype: torch.dtype, *, off_policy: bool = False
) -> tuple[askd_ref.DistillBatch, ref.DistillBatch]:
    b, n, v = 6, 4, 7
    mask = rng.uniform(size=(b, n)) < 0.75
    mask[:, 0] = True
    s_full, t_full = _log_probs(rng, (b, n, v), 1.5), _log_probs(rng, (b, n, v), 2.0)
    ids = rng.integers(0, v, size=(b, n))
    s_tok = np.take_along_axis(s_full, ids[..., None], -1)[..., 0]
    t_tok = np.take_along_axis(t_full, ids[..., None], -1)[..., 0]
    fields: dict[str, Any] = {
        "mask": torch.tensor(mask),
        "is_tgo": torch.tensor([True, False, True, False, False, True]),
        "quality": torch.tensor(rng.uniform(size=b)).to(dtype),
        "student_token_logp": _leaf(s_tok, dtype),
        "teacher_token_logp": torch.tensor(t_tok).to(dtype),
        "student_logp": _leaf(s_full, dtype),
        "teacher_logp": torch.tensor(t_full).to(dtype),
        "group": torch.tensor([0, 0, 1, 1, 0, 1]),
    }
    if off_policy:
        fields["behaviour_logp"] = torch.tensor((s_tok * mask).sum(-1) + rng.uniform(-0.3, 0.3, size=b)).to(
            dtype
        )
    batch = askd_ref.DistillBatch(**fields)
    np_fields = {k: (_np(v) if v.is_floating_point() else v.numpy()) for k, v in fields.items()}
    return batch, ref.DistillBatch(**np_fields)


METHOD_CASES = [(m, None) for m in askd_ref.METHODS if m not in ("askd", "askd-dense")] + [
    (m, o) for m in ("askd", "askd-dense") for o in OPTION_GRID
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("method", "option_name"), METHOD_CASES, ids=lambda x: str(x))
def test_batch_losses(
    rng: np.random.Generator, dtype: torch.dtype, method: str, option_name: str | None
) -> None:
    batch, np_batch = _distill_batch(rng, dtype, off_policy=(option_name == "default"))
    options = OPTION_GRID[option_name] if option_name else None
    out = askd_ref.compute_loss(method, batch, options=options, num_tgo=4, num_sgo=5)
    out.loss.backward()
    ref_fn: Callable[..., ref.ReferenceLossOutput] = getattr(ref, askd_ref.LOSS_FUNCTIONS[method].__name__)
    extra = {"options": options} if options is not None else {}
    expected = ref_fn(np_batch, num_tgo=4, num_sgo=5, **extra)
    _compare_loss(out, expected, dtype, method)
    for name in ("student_token_logp", "student_logp"):
        leaf = getattr(batch, name)
        want = expected.grad.get(name)
        if want is None:
            assert leaf.grad is None or not bool(leaf.grad.any()), f"{method}: unexpected gradient on {name}"
        else:
            assert leaf.grad is not None, f"{method}: no gradient on {name}"
            assert_close(leaf.grad, want, tolerance(dtype, "grad"), what=f"{method} grad wrt {name}")


def test_reference_batch_mirrors_distill_batch_fields() -> None:
    assert [f.name for f in dataclasses.fields(ref.DistillBatch)] == [
        f.name for f in dataclasses.fields(askd_ref.DistillBatch)
    ]


@pytest.mark.parametrize("case", ["one", "groups"])
def test_group_advantages(rng: np.random.Generator, case: str) -> None:
    r = rng.uniform(size=8)
    g = np.zeros(8, dtype=np.int64) if case == "one" else rng.integers(0, 3, size=8)
    out = askd_ref.group_advantages(torch.tensor(r), torch.tensor(g))
    assert_close(out, ref.group_advantages(r, g), tolerance(torch.float64, "value"), what="A")
