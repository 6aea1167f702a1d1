"""bf16/fp16 end to end: logits → log_softmax → every loss → gradient, against float64 (issue 7, item 2).

The realistic half-precision path is the one a model hands over: logits in bf16 (or fp16), a
log-softmax *in that dtype*, the loss (askd_ref computes half inputs in float32, spec §2), and
the gradient back through the half-precision log-softmax to the logits. The reference is the
float64 path from the *same rounded logits*: float64 log-softmax and the NumPy reference
(``askd_ref.porting.reference``, analytic gradients), chained to the logits by hand:

* dense terms: the reference's ``grad["student_logits"]``;
* sequence terms: ∂L/∂ℓ_t from ``grad["student_token_logp"]`` times ∂ℓ_t/∂z = onehot(y_t) − q_t.

What differs is therefore exactly what half precision does to a training step: the rounded
log-probs (bf16 keeps 8 significant bits, so log p ≈ −12 at vocab 151936 is off by up to 0.03,
i.e. p by 3 %), the fp32 loss arithmetic, and the rounded gradient of the half log-softmax. The
tolerances are the ``*_e2e`` rows of :mod:`askd_ref.porting.tolerances`; gradients are compared relative
to their largest entry (``atol`` is a fraction of max |∂L/∂z|), since most of the 151936 entries
are ~1/V and an absolute bound would be meaningless across shapes.

``tests/fuzz_report.py`` prints the measured worst errors per dtype and method.
"""

import dataclasses
import functools
import math
from typing import Any

import numpy as np
import pytest
import torch

import askd_ref
import askd_ref.porting.reference as ref
from askd_ref.porting.tolerances import assert_close, tolerance

HALF_DTYPES = (torch.bfloat16, torch.float16)
#: (batch, seq, vocab): a small vocabulary, a medium one, and Qwen2's 151936 with few tokens.
SHAPES = ((4, 3, 11), (3, 4, 257), (2, 2, 151936))
#: Every method of compute_loss (ASKD with its defaults and with the dense term), plus the
#: sequence losses called directly (on- and off-policy SGOs).
CASES = (
    *((m, None) for m in askd_ref.METHODS),
    ("askd", "dense"),
    ("tgo_loss", None),
    ("sgo_loss", None),
    ("sgo_loss", "off-policy"),
)
OPTIONS = {"dense": askd_ref.ASKDOptions(lambda_dense=0.5)}



@dataclasses.dataclass(frozen=True)
class Errors:
    """Worst errors of one run (gradients relative to their largest reference entry)."""

    loss_rel: float  # |L − L_ref| / |L_ref|, L_ref from the same rounded logits
    grad_abs_scaled: float  # max |g − g_ref| / max |g_ref|, ∂L/∂logits
    grad_rel: float  # max |g − g_ref| / |g_ref| over entries with |g_ref| ≥ 1e-2 · max |g_ref|
    logp_loss_rel: float  # loss vs the reference at the same rounded log-probs
    logp_grad_abs_scaled: float  # ∂L/∂log-probs vs the reference at the same rounded log-probs


@dataclasses.dataclass
class Run:
    """A loss computed in half precision and its two float64 references.

    ``*_ref``: float64 from the same rounded logits (the end-to-end comparison).
    ``logp_*``: the gradient w.r.t. the (rounded) log-probs the loss received, and the
    reference evaluated on exactly those log-probs (askd_ref's own arithmetic, isolated).
    """

    loss: float
    loss_ref: float
    grad: np.ndarray
    grad_ref: np.ndarray
    logp_loss_ref: float
    logp_grad: np.ndarray
    logp_grad_ref: np.ndarray

    def errors(self) -> Errors:
        scale = float(np.abs(self.grad_ref).max())
        diff = np.abs(self.grad - self.grad_ref)
        big = np.abs(self.grad_ref) >= 1e-2 * scale
        logp_scale = float(np.abs(self.logp_grad_ref).max())
        return Errors(
            loss_rel=abs(self.loss - self.loss_ref) / abs(self.loss_ref),
            grad_abs_scaled=float(diff.max()) / scale,
            grad_rel=float((diff[big] / np.abs(self.grad_ref[big])).max()),
            logp_loss_rel=abs(self.loss - self.logp_loss_ref) / abs(self.logp_loss_ref),
            logp_grad_abs_scaled=float(np.abs(self.logp_grad - self.logp_grad_ref).max()) / logp_scale,
        )


def _inputs(shape: tuple[int, int, int], seed: int) -> dict[str, Any]:
    b, n, v = shape
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, n, generator=g) < 0.75
    mask[:, 0] = True
    return {
        "zs": torch.randn(b, n, v, generator=g, dtype=torch.float64) * 2.0,
        "zt": torch.randn(b, n, v, generator=g, dtype=torch.float64) * 3.0,
        "ids": torch.randint(v, (b, n), generator=g),
        "mask": mask,
        "is_tgo": torch.arange(b) % 2 == 0,
        "quality": torch.rand(b, generator=g, dtype=torch.float64).float(),
        "group": torch.arange(b) // 2,
        "noise": (torch.rand(b, generator=g, dtype=torch.float64) - 0.5) * 0.4,
    }


def _gather(logp: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return logp.gather(-1, ids[..., None]).squeeze(-1)


def _reference(
    method: str,
    variant: str | None,
    x: dict[str, Any],
    ls: torch.Tensor,
    lt: torch.Tensor,
    behaviour: torch.Tensor,
) -> tuple[float, np.ndarray, np.ndarray]:
    """(loss, ∂L/∂logits, ∂L/∂log-probs) of the float64 reference at log-probs ``ls``, ``lt``.

    ∂L/∂logits chains ∂L/∂ℓ through ℓ = log_softmax(z) with q = exp(ls); ∂L/∂log-probs adds the
    dense gradient and the token gradients scattered to their ids (both paths read ``ls``).
    """
    ids, mask = x["ids"].numpy(), x["mask"].numpy()
    ls_np, lt_np = ls.numpy(), lt.numpy()
    s_tok = np.take_along_axis(ls_np, ids[..., None], -1)[..., 0]
    t_tok = np.take_along_axis(lt_np, ids[..., None], -1)[..., 0]
    quality = x["quality"].double().numpy()
    if method in ("tgo_loss", "sgo_loss"):
        kwargs: dict[str, Any] = {"mask": mask, "quality": quality}
        if variant == "off-policy":
            kwargs["behaviour_logp"] = behaviour.double().numpy()
        out = getattr(ref, method)(student_token_logp=s_tok, teacher_token_logp=t_tok, **kwargs)
    else:
        batch = ref.DistillBatch(
            mask=mask,
            is_tgo=x["is_tgo"].numpy(),
            quality=quality,
            group=x["group"].numpy(),
            student_token_logp=s_tok,
            teacher_token_logp=t_tok,
            student_logp=ls_np,
            teacher_logp=lt_np,
        )
        fn = getattr(ref, askd_ref.LOSS_FUNCTIONS[method].__name__)
        options = OPTIONS.get(variant or "")
        out = fn(batch, options=options) if method in ("askd", "askd-dense") else fn(batch)
    q = np.exp(ls_np)
    grad_z = np.zeros(ls_np.shape)
    grad_lp = np.zeros(ls_np.shape)
    if "student_logits" in out.grad:
        grad_z += out.grad["student_logits"]
        grad_lp += out.grad["student_logp"]
    if "student_token_logp" in out.grad:
        g_tok = out.grad["student_token_logp"]
        onehot = np.zeros_like(q)
        np.put_along_axis(onehot, ids[..., None], 1.0, -1)
        grad_z += g_tok[..., None] * (onehot - q)
        grad_lp += g_tok[..., None] * onehot
    return float(out.loss), grad_z, grad_lp


def _behaviour(x: dict[str, Any], dtype: torch.dtype) -> torch.Tensor:
    """Behaviour log-probs (float32) near the student's own log q(y), so that ρ ≈ 1 (E13)."""
    ls64 = torch.log_softmax(x["zs"].to(dtype).double(), -1)
    return ((_gather(ls64, x["ids"]) * x["mask"]).sum(-1) + x["noise"]).float()


@functools.cache
def _end_to_end_reference(
    method: str, variant: str | None, dtype: torch.dtype, shape: tuple[int, int, int], seed: int
) -> tuple[float, np.ndarray]:
    """Loss and ∂L/∂logits in float64 from the logits rounded to ``dtype`` (shared by both paths)."""
    x = _inputs(shape, seed)
    ls64 = torch.log_softmax(x["zs"].to(dtype).double(), -1)
    lt64 = torch.log_softmax(x["zt"].to(dtype).double(), -1)
    loss, grad_z, _ = _reference(method, variant, x, ls64, lt64, _behaviour(x, dtype))
    return loss, grad_z


def run(
    method: str,
    variant: str | None,
    dtype: torch.dtype,
    shape: tuple[int, int, int],
    seed: int = 0,
    *,
    upcast: bool = False,
) -> Run:
    """One loss from ``dtype`` logits end to end, and its float64 references (see :class:`Run`).

    ``upcast=False``: log_softmax in ``dtype``, as a model hands log-probs over. ``upcast=True``:
    the logits are cast to float32 first (what ``token_log_probs`` and ``chunked_loss`` do).
    """
    x = _inputs(shape, seed)
    zs = x["zs"].to(dtype).requires_grad_()
    zt = x["zt"].to(dtype)
    work = torch.float32 if upcast else dtype
    ls, lt = torch.log_softmax(zs.to(work), -1), torch.log_softmax(zt.to(work), -1)
    ls.retain_grad()
    ids, mask = x["ids"], x["mask"]
    s_tok, t_tok = _gather(ls, ids), _gather(lt, ids)
    behaviour = _behaviour(x, dtype)
    if method in ("tgo_loss", "sgo_loss"):
        kwargs: dict[str, Any] = {"mask": mask, "quality": x["quality"]}
        if variant == "off-policy":
            kwargs["behaviour_logp"] = behaviour
        out = getattr(askd_ref, method)(student_token_logp=s_tok, teacher_token_logp=t_tok, **kwargs)
    else:
        batch = askd_ref.DistillBatch(
            mask=mask,
            is_tgo=x["is_tgo"],
            quality=x["quality"],
            group=x["group"],
            student_token_logp=s_tok,
            teacher_token_logp=t_tok,
            student_logp=ls,
            teacher_logp=lt,
        )
        out = askd_ref.compute_loss(method, batch, options=OPTIONS.get(variant or ""))
    out.loss.backward()
    assert zs.grad is not None
    assert ls.grad is not None
    assert zs.grad.dtype == dtype
    loss_ref, grad_ref = _end_to_end_reference(method, variant, dtype, shape, seed)
    logp_loss_ref, _, logp_grad_ref = _reference(
        method, variant, x, ls.detach().double(), lt.double(), behaviour
    )
    return Run(
        loss=float(out.loss.detach()),
        loss_ref=loss_ref,
        grad=zs.grad.double().numpy(),
        grad_ref=grad_ref,
        logp_loss_ref=logp_loss_ref,
        logp_grad=ls.grad.double().numpy(),
        logp_grad_ref=logp_grad_ref,
    )


def _label(case: tuple[str, str | None]) -> str:
    return case[0] if case[1] is None else f"{case[0]}[{case[1]}]"


def _scaled(x: np.ndarray, scale: float) -> np.ndarray:
    return x / scale


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_label)
def test_half_log_softmax_end_to_end(
    case: tuple[str, str | None], dtype: torch.dtype, shape: tuple[int, int, int]
) -> None:
    """Half logits → half log_softmax → loss → ∂L/∂logits, against float64 from the same logits.

    Also isolates askd_ref's own arithmetic: on the rounded log-probs it received, the loss and
    ∂L/∂log-probs must match the reference within the ordinary dtype rows of the table.
    """
    r = run(*case, dtype, shape)
    what = f"{_label(case)} {dtype} {shape}"
    assert math.isfinite(r.loss), what
    assert np.isfinite(r.grad).all(), what
    assert_close(r.loss, r.loss_ref, tolerance(dtype, "value_e2e"), what=f"{what} loss (end to end)")
    scale = float(np.abs(r.grad_ref).max())
    assert_close(
        _scaled(r.grad, scale),
        _scaled(r.grad_ref, scale),
        tolerance(dtype, "grad_e2e"),
        what=f"{what} ∂L/∂z ÷ max",
    )
    assert_close(
        r.loss, r.logp_loss_ref, tolerance(dtype, "value"), what=f"{what} loss on the rounded log-probs"
    )
    assert_close(r.logp_grad, r.logp_grad_ref, tolerance(dtype, "grad"), what=f"{what} ∂L/∂log-probs")


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=_label)
def test_float32_log_softmax_end_to_end(
    case: tuple[str, str | None], dtype: torch.dtype, shape: tuple[int, int, int]
) -> None:
    """Half logits upcast to float32 before log_softmax: only the final cast of ∂L/∂z rounds."""
    r = run(*case, dtype, shape, upcast=True)
    what = f"{_label(case)} {dtype} {shape} (float32 log_softmax)"
    assert_close(r.loss, r.loss_ref, tolerance(torch.float32, "value"), what=f"{what} loss")
    scale = float(np.abs(r.grad_ref).max())
    assert_close(
        _scaled(r.grad, scale),
        _scaled(r.grad_ref, scale),
        tolerance(dtype, "grad_e2e_fp32"),
        what=f"{what} ∂L/∂z",
    )


@pytest.mark.parametrize("dtype", HALF_DTYPES, ids=str)
def test_the_tolerances_reject_a_ten_percent_gradient_error(dtype: torch.dtype) -> None:
    """A loss scaled by 0.9 (a dropped term's size) fails both tight comparisons."""
    r = run("askd-dense", None, dtype, SHAPES[1], upcast=True)
    scale = float(np.abs(r.grad_ref).max())
    with pytest.raises(AssertionError):
        assert_close(0.9 * r.grad / scale, r.grad_ref / scale, tolerance(dtype, "grad_e2e_fp32"))
    half = run("askd-dense", None, dtype, SHAPES[1])
    with pytest.raises(AssertionError):
        assert_close(0.9 * half.logp_grad, half.logp_grad_ref, tolerance(dtype, "grad"))
