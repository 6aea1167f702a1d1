"""Bad input at the public boundary raises ValueError/TypeError naming the argument (issue 2.5)."""

from collections.abc import Callable
from typing import Any

import pytest
import torch

import askd_ref

NAN, INF = float("nan"), float("inf")


def lp(*shape: int) -> torch.Tensor:
    return torch.log_softmax(torch.randn(*shape, generator=torch.Generator().manual_seed(0)), -1)


def tok(b: int = 2, n: int = 3) -> torch.Tensor:
    return -torch.rand(b, n, generator=torch.Generator().manual_seed(1)) - 0.1


MASK = torch.ones(2, 3, dtype=torch.bool)


def with_nan(x: torch.Tensor, value: float = NAN) -> torch.Tensor:
    y = x.clone()
    y.view(-1)[0] = value
    return y


def div(name: str, **kwargs: Any) -> Callable[[], object]:
    base: dict[str, Any] = {"teacher_logp": lp(2, 5), "student_logp": lp(2, 5)}
    if name.startswith("skew"):
        base["alpha"] = 0.1
    if name == "generalized_jsd":
        base["beta"] = 0.5
    base.update(kwargs)
    return lambda: getattr(askd_ref, name)(**base)


def seq_loss(name: str, **kwargs: Any) -> Callable[[], object]:
    base: dict[str, Any] = {
        "student_token_logp": tok(),
        "teacher_token_logp": tok(),
        "mask": MASK,
        "quality": 0.5,
    }
    base.update(kwargs)
    return lambda: getattr(askd_ref, name)(**base)


CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # divergences: shapes, vocabulary, dtypes, values, parameters
    ("vocab mismatch", div("forward_kl", student_logp=lp(2, 6)), ValueError, "vocabulary mismatch"),
    ("shape mismatch", div("reverse_kl", student_logp=lp(3, 5)), ValueError, "same shape"),
    (
        "scalar input",
        div("forward_kl", teacher_logp=torch.tensor(0.0)),
        ValueError,
        "teacher_logp must have at least 1",
    ),
    (
        "empty batch",
        div("forward_kl", teacher_logp=lp(0, 5), student_logp=lp(0, 5)),
        ValueError,
        "teacher_logp is empty",
    ),
    (
        "int dtype",
        div("forward_kl", teacher_logp=torch.zeros(2, 5, dtype=torch.long)),
        TypeError,
        "teacher_logp must be a floating",
    ),
    (
        "not a tensor",
        div("forward_kl", student_logp=[[0.0]]),
        TypeError,
        "student_logp must be a torch.Tensor",
    ),
    ("nan", div("skew_forward_kl", student_logp=with_nan(lp(2, 5))), ValueError, "student_logp contains NaN"),
    (
        "+inf",
        div("skew_reverse_kl", teacher_logp=with_nan(lp(2, 5), INF)),
        ValueError,
        "teacher_logp contains +inf",
    ),
    (
        "raw logits",
        div("generalized_jsd", student_logp=torch.randn(2, 5) + 3),
        ValueError,
        "student_logp must be log-probabilities",
    ),
    (
        "all -inf row",
        div("forward_kl", teacher_logp=torch.full((2, 5), -INF)),
        ValueError,
        "teacher_logp must be log-probabilities",
    ),
    ("alpha > 1", div("skew_forward_kl", alpha=1.5), ValueError, "alpha must lie in [0.0, 1.0]"),
    (
        "alpha < 0 tensor",
        div("skew_reverse_kl", alpha=torch.tensor([0.1, -0.2])),
        ValueError,
        "alpha must lie in",
    ),
    ("alpha nan", div("skew_reverse_kl", alpha=NAN), ValueError, "alpha must lie in"),
    ("alpha bool", div("skew_reverse_kl", alpha=True), TypeError, "alpha must be a float"),
    (
        "alpha int tensor",
        div("skew_reverse_kl", alpha=torch.tensor([0, 1])),
        TypeError,
        "alpha must be a floating",
    ),
    (
        "alpha bad shape",
        div("skew_forward_kl", alpha=torch.full((3,), 0.1)),
        ValueError,
        "alpha of shape (3,) does not broadcast",
    ),
    ("beta > 1", div("generalized_jsd", beta=2.0), ValueError, "beta must lie in"),
    (
        "mixture_grad",
        div("skew_reverse_kl", mixture_grad="half"),
        ValueError,
        "mixture_grad must be 'full' or 'stop'",
    ),
    # coefficients, gates, schedules
    (
        "delta nan",
        lambda: askd_ref.tgo_coefficient(torch.tensor([NAN]), 0.1),
        ValueError,
        "delta contains NaN",
    ),
    (
        "delta inf",
        lambda: askd_ref.sgo_coefficient(torch.tensor([INF]), 0.1),
        ValueError,
        "delta contains +inf",
    ),
    (
        "delta int",
        lambda: askd_ref.sgo_coefficient(torch.tensor([1]), 0.1),
        TypeError,
        "delta must be a floating",
    ),
    ("delta empty", lambda: askd_ref.tgo_coefficient(torch.zeros(0), 0.1), ValueError, "delta is empty"),
    ("coef alpha range", lambda: askd_ref.tgo_coefficient(0.0, 1.2), ValueError, "alpha must lie in"),
    (
        "coef broadcast",
        lambda: askd_ref.tgo_coefficient(torch.zeros(3), torch.full((2,), 0.1)),
        ValueError,
        "do not broadcast",
    ),
    (
        "coef mixture_grad",
        lambda: askd_ref.sgo_coefficient(0.0, 0.1, mixture_grad="x"),
        ValueError,
        "mixture_grad",
    ),  # type: ignore[arg-type]
    ("quality > 1", lambda: askd_ref.clipped_sgo_coefficient(0.0, 1.5), ValueError, "quality must lie in"),
    ("quality nan", lambda: askd_ref.tgo_alpha(torch.tensor([0.5, NAN])), ValueError, "quality contains NaN"),
    ("quality < 0", lambda: askd_ref.sgo_alpha(-0.1), ValueError, "quality must lie in"),
    ("quality int", lambda: askd_ref.soft_gate(torch.tensor([1])), TypeError, "quality must be a floating"),
    ("taus", lambda: askd_ref.soft_gate(0.5, tau_lo=0.8, tau_hi=0.2), ValueError, "tau_lo < tau_hi"),
    ("tau", lambda: askd_ref.hard_gate(0.5, tau=2.0), ValueError, "tau must be a float in [0, 1]"),
    (
        "options type",
        lambda: askd_ref.tgo_alpha(0.5, options={"alpha_lo": 0.1}),
        TypeError,
        "options must be an ASKDOptions",
    ),  # type: ignore[arg-type]
    # options
    (
        "alpha_lo >= 1",
        lambda: askd_ref.ASKDOptions(alpha_lo=0.95, alpha_hi=1.0),
        ValueError,
        "alpha_lo must satisfy",
    ),
    (
        "alpha_lo > hi",
        lambda: askd_ref.ASKDOptions(alpha_lo=0.5, alpha_hi=0.4),
        ValueError,
        "alpha_lo must satisfy",
    ),
    ("gate name", lambda: askd_ref.ASKDOptions(gate="soft-ish"), ValueError, "gate must be one of"),  # type: ignore[arg-type]
    ("normalize name", lambda: askd_ref.ASKDOptions(normalize="avg"), ValueError, "normalize must be one of"),  # type: ignore[arg-type]
    ("lambda negative", lambda: askd_ref.ASKDOptions(lambda_sgo=-1.0), ValueError, "lambda_sgo must be >= 0"),
    (
        "eps range",
        lambda: askd_ref.ASKDOptions(is_clip_eps=1.5),
        ValueError,
        "is_clip_eps must lie in (0, 1)",
    ),
    ("option type", lambda: askd_ref.ASKDOptions(tau="0.5"), TypeError, "tau must be a float"),  # type: ignore[arg-type]
    ("option nan", lambda: askd_ref.ASKDOptions(tau_lo=NAN), ValueError, "tau_lo must be finite"),
    # sequence log-ratio and sequence losses
    (
        "normalize",
        lambda: askd_ref.sequence_log_ratio(tok(), tok(), MASK, normalize="avg"),
        ValueError,
        "normalize must be",
    ),  # type: ignore[arg-type]
    (
        "mask dtype",
        lambda: askd_ref.sequence_log_ratio(tok(), tok(), MASK.long(), normalize="sum"),
        TypeError,
        "mask must have dtype torch.bool",
    ),
    (
        "mask shape",
        lambda: askd_ref.sequence_log_ratio(tok(), tok(), MASK[:, :2], normalize="sum"),
        ValueError,
        "mask must have shape (2, 3)",
    ),
    (
        "all masked row",
        seq_loss("tgo_loss", mask=torch.tensor([[True, True, True], [False, False, False]])),
        ValueError,
        "mask row 1 selects no tokens",
    ),
    (
        "token rank",
        seq_loss("tgo_loss", student_token_logp=tok().unsqueeze(-1)),
        ValueError,
        "student_token_logp must have shape (batch, seq)",
    ),
    (
        "token shape",
        seq_loss("sgo_loss", teacher_token_logp=tok(2, 4)),
        ValueError,
        "teacher_token_logp must have the shape (2, 3)",
    ),
    (
        "token logits",
        seq_loss("tgo_loss", student_token_logp=tok() + 5),
        ValueError,
        "student_token_logp must be log-probabilities",
    ),
    (
        "teacher -inf",
        seq_loss("sgo_loss", teacher_token_logp=with_nan(tok(), -INF)),
        ValueError,
        "teacher_token_logp is -inf",
    ),
    (
        "token nan",
        seq_loss("sgo_loss", student_token_logp=with_nan(tok())),
        ValueError,
        "student_token_logp (at masked-in positions) contains NaN",
    ),
    (
        "loss quality range",
        seq_loss("tgo_loss", quality=torch.tensor([0.5, 1.5])),
        ValueError,
        "quality must lie in",
    ),
    (
        "loss quality shape",
        seq_loss("tgo_loss", quality=torch.tensor([0.5, 0.5, 0.5])),
        ValueError,
        "quality must have shape (2,)",
    ),
    (
        "num_samples small",
        seq_loss("tgo_loss", num_samples=1),
        ValueError,
        "num_samples=1 is smaller than the 2 samples",
    ),
    ("num_samples type", seq_loss("tgo_loss", num_samples=2.0), TypeError, "num_samples must be an int"),
    (
        "behaviour shape",
        seq_loss("sgo_loss", behaviour_logp=torch.zeros(3)),
        ValueError,
        "behaviour_logp must have shape (2,)",
    ),
    (
        "behaviour nan",
        seq_loss("sgo_loss", behaviour_logp=torch.tensor([0.0, NAN])),
        ValueError,
        "behaviour_logp contains NaN",
    ),
    (
        "ratio overflow",
        seq_loss("sgo_loss", behaviour_logp=torch.tensor([-500.0, -1.0])),
        ValueError,
        "importance ratio overflow for sample 0",
    ),
    (
        "int tokens",
        seq_loss("tgo_loss", student_token_logp=torch.zeros(2, 3, dtype=torch.int32)),
        TypeError,
        "student_token_logp must be a floating",
    ),
    # batches and batch losses
    (
        "batch mask rank",
        lambda: askd_ref.DistillBatch(
            mask=torch.ones(3, dtype=torch.bool), is_tgo=torch.ones(3, dtype=torch.bool)
        ),
        ValueError,
        "mask must be a bool tensor of shape (batch, seq)",
    ),
    (
        "batch empty",
        lambda: askd_ref.DistillBatch(
            mask=torch.ones(0, 3, dtype=torch.bool), is_tgo=torch.ones(0, dtype=torch.bool)
        ),
        ValueError,
        "the batch is empty",
    ),
    (
        "batch is_tgo",
        lambda: askd_ref.DistillBatch(mask=MASK, is_tgo=torch.ones(3, dtype=torch.bool)),
        ValueError,
        "is_tgo must have shape (2,)",
    ),
    (
        "batch vocab",
        lambda: askd_ref.DistillBatch(
            mask=MASK, is_tgo=MASK[:, 0], student_logp=lp(2, 3, 5), teacher_logp=lp(2, 3, 6)
        ),
        ValueError,
        "vocabulary mismatch",
    ),
    (
        "batch full shape",
        lambda: askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0], student_logp=lp(2, 4, 5)),
        ValueError,
        "student_logp must have shape (2, 3, vocab)",
    ),
    (
        "batch quality",
        lambda: askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0], quality=torch.zeros(2, 1)),
        ValueError,
        "quality must have shape (2,)",
    ),
    (
        "batch group",
        lambda: askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0], group=torch.zeros(2)),
        TypeError,
        "group must be an integer tensor",
    ),
    (
        "missing field",
        lambda: askd_ref.askd_loss(askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0])),
        ValueError,
        "askd_loss needs batch.student_token_logp",
    ),
    (
        "dense missing",
        lambda: askd_ref.kd_loss(askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0])),
        ValueError,
        "kd_loss needs batch.student_logp",
    ),
    (
        "no kind",
        lambda: askd_ref.kd_loss(
            askd_ref.DistillBatch(
                mask=MASK, is_tgo=~MASK[:, 0], student_logp=lp(2, 3, 5), teacher_logp=lp(2, 3, 5)
            )
        ),
        ValueError,
        "holds no samples of the kind",
    ),
    (
        "method name",
        lambda: askd_ref.compute_loss("askd2", askd_ref.DistillBatch(mask=MASK, is_tgo=MASK[:, 0])),
        ValueError,
        "method must be one of",
    ),
    (
        "dense raw logits",
        lambda: askd_ref.gkd_loss(
            askd_ref.DistillBatch(
                mask=MASK, is_tgo=MASK[:, 0], student_logp=torch.randn(2, 3, 5) + 4, teacher_logp=lp(2, 3, 5)
            )
        ),
        ValueError,
        "student_logp must be log-probabilities",
    ),
    # token_log_probs
    (
        "ids float",
        lambda: askd_ref.token_log_probs(
            torch.randn(1, 3, 4), torch.zeros(1, 3), torch.ones(1, 3, dtype=torch.bool)
        ),
        TypeError,
        "input_ids must be an integer tensor",
    ),
    (
        "ids range",
        lambda: askd_ref.token_log_probs(
            torch.randn(1, 3, 4), torch.full((1, 3), 4), torch.ones(1, 3, dtype=torch.bool)
        ),
        ValueError,
        "input_ids must lie in [0, 4)",
    ),
    (
        "ids shape",
        lambda: askd_ref.token_log_probs(
            torch.randn(1, 3, 4), torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 3, dtype=torch.bool)
        ),
        ValueError,
        "input_ids must have shape (1, 3)",
    ),
]


@pytest.mark.parametrize(("case", "call", "exc", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_named(
    case: str, call: Callable[[], object], exc: type[Exception], fragment: str
) -> None:
    with pytest.raises(exc) as info:
        call()
    assert fragment in str(info.value), f"{case}: message {str(info.value)!r} lacks {fragment!r}"


def test_device_mismatch_is_named() -> None:
    meta = torch.empty(2, 5, device="meta")
    with pytest.raises(ValueError, match="one device"):
        askd_ref.forward_kl(teacher_logp=lp(2, 5), student_logp=meta)


def test_value_checks_can_be_switched_off() -> None:
    """With validation disabled the normalisation check is skipped (shape checks stay)."""
    logits = torch.randn(2, 5) + 3
    with askd_ref.validation_disabled():
        askd_ref.forward_kl(teacher_logp=lp(2, 5), student_logp=logits)
        with pytest.raises(ValueError, match="vocabulary mismatch"):
            askd_ref.forward_kl(teacher_logp=lp(2, 5), student_logp=lp(2, 6))
    assert askd_ref.is_validation_enabled()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_check_no_nan_fast_path_and_overflow_fallback(dtype: torch.dtype) -> None:
    """The one-pass sum test passes clean tensors, and a sum that overflows (finite entries near
    the dtype's maximum) falls back to the exact checks instead of a false alarm."""
    from askd_ref._validation import check_no_nan

    big = torch.finfo(dtype).max
    check_no_nan("x", torch.full((4, 3), big / 2, dtype=dtype))  # sum overflows, entries finite
    check_no_nan("x", torch.zeros(0, dtype=dtype))
    for bad, match in ((NAN, "NaN"), (INF, r"\+inf"), (-INF, "-inf")):
        x = torch.full((4, 3), big / 2, dtype=dtype)
        x[2, 1] = bad
        with pytest.raises(ValueError, match=match):
            check_no_nan("x", x)
        with pytest.raises(ValueError, match=match):
            check_no_nan("x", torch.where(torch.arange(12).view(4, 3) == 7, bad, 1.0).to(dtype))
    check_no_nan("x", torch.tensor([-INF, 0.0], dtype=dtype), allow_neg_inf=True)
