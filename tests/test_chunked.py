"""The chunked loss path equals the full-logit path, for every method, dtype and chunk size.

The oracle is ``compute_loss(method, DistillBatch(...))`` on full log-probs
``log_softmax(hidden @ weightᵀ + bias)`` computed in the compute dtype (float32 for bf16 inputs,
from the same rounded inputs). Values, the gradients with respect to the student's hidden
states, output weight and bias, and every diagnostic must agree within
:mod:`askd_ref.porting.tolerances`.
"""

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from askd_ref import METHODS, ASKDOptions, DistillBatch, LossOutput, compute_loss
from askd_ref._validation import compute_dtype
from askd_ref.chunked import chunked_loss, chunked_token_log_probs
from askd_ref.porting.tolerances import assert_close, tolerance

DTYPES = (torch.float64, torch.float32, torch.bfloat16)
#: ``askd`` and ``askd-dense`` are also run with non-default options: a dense term inside
#: ``askd``, stopped mixture gradient, sum pooling and a narrow logit schedule.
OPTION_SETS = {
    "default": None,
    "variant": ASKDOptions(lambda_dense=0.7, mixture_grad="stop", normalize="sum", schedule="logit"),
}


@dataclasses.dataclass
class Case:
    hs: Tensor
    ws: Tensor
    bs: Tensor | None
    ht: Tensor
    wt: Tensor
    bt: Tensor | None
    ids: Tensor
    mask: Tensor
    is_tgo: Tensor
    quality: Tensor
    group: Tensor
    behaviour_logp: Tensor | None = None

    def kwargs(self) -> dict[str, Any]:
        return {
            "student_hidden": self.hs,
            "student_weight": self.ws,
            "student_bias": self.bs,
            "teacher_hidden": self.ht,
            "teacher_weight": self.wt,
            "teacher_bias": self.bt,
            "target_ids": self.ids,
            "mask": self.mask,
            "is_tgo": self.is_tgo,
            "quality": self.quality,
            "group": self.group,
            "behaviour_logp": self.behaviour_logp,
        }

    def leaves(self) -> list[Tensor]:
        return [x for x in (self.hs, self.ws, self.bs) if x is not None]


def make_case(
    dtype: torch.dtype,
    *,
    seed: int = 0,
    batch: int = 6,
    seq: int = 9,
    hidden: int = 8,
    teacher_hidden: int = 5,
    vocab: int = 37,
    bias: bool = True,
    scale: float = 1.0,
) -> Case:
    """A mixed TGO/SGO batch with prompt-masked prefixes, padding, and one single-token row."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape: int, s: float = 1.0) -> Tensor:
        return (s * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    hs = randn(batch, seq, hidden).requires_grad_()
    ws = randn(vocab, hidden, s=scale / hidden**0.5).requires_grad_()
    bs = randn(vocab, s=0.3).requires_grad_() if bias else None
    ht = randn(batch, seq, teacher_hidden)
    wt = randn(vocab, teacher_hidden, s=scale / teacher_hidden**0.5)
    bt = randn(vocab, s=0.3) if bias else None
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    start = torch.randint(0, seq // 2, (batch,), generator=g)  # prompt length
    end = torch.randint(seq // 2 + 1, seq + 1, (batch,), generator=g)  # padding after
    pos = torch.arange(seq)
    mask = (pos >= start[:, None]) & (pos < end[:, None])
    mask[-1] = False
    mask[-1, seq - 1] = True  # a response of one token
    is_tgo = torch.tensor([True, False, False, True, False, False][:batch])
    quality = torch.tensor([0.95, 0.1, 0.75, 0.3, 1.0, 0.55][:batch], dtype=torch.float32)
    group = torch.tensor([0, 1, 1, 2, 1, 3][:batch])
    return Case(hs, ws, bs, ht, wt, bt, ids, mask, is_tgo, quality, group)


def full_path(method: str, case: Case, options: ASKDOptions | None = None, **counts: int) -> LossOutput:
    """The oracle: compute_loss on full-vocabulary log-probs of the same projections."""
    cdt = compute_dtype(case.hs.dtype, case.ws.dtype)
    zs = case.hs.to(cdt) @ case.ws.to(cdt).T
    zt = case.ht.to(cdt) @ case.wt.to(cdt).T
    if case.bs is not None:
        zs = zs + case.bs.to(cdt)
    if case.bt is not None:
        zt = zt + case.bt.to(cdt)
    ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
    batch = DistillBatch(
        mask=case.mask,
        is_tgo=case.is_tgo,
        quality=case.quality,
        student_token_logp=ls.gather(-1, case.ids[..., None]).squeeze(-1),
        teacher_token_logp=lt.gather(-1, case.ids[..., None]).squeeze(-1),
        student_logp=ls,
        teacher_logp=lt,
        behaviour_logp=case.behaviour_logp,
        group=case.group,
    )
    return compute_loss(method, batch, options=options, **counts)


def with_behaviour(case: Case) -> Case:
    """Off-policy SGOs: behaviour log-probs near the student's, so some ratios are clipped."""
    with torch.no_grad():
        cdt = compute_dtype(case.hs.dtype, case.ws.dtype)
        zs = case.hs.to(cdt) @ case.ws.to(cdt).T + (0 if case.bs is None else case.bs.to(cdt))
        tok = torch.log_softmax(zs, -1).gather(-1, case.ids[..., None]).squeeze(-1)
        seq_logp = torch.where(case.mask, tok, 0).sum(-1)
    shift = torch.tensor([0.0, 0.4, -0.05, 0.0, -0.3, 0.1], dtype=cdt)[: case.mask.shape[0]]
    return dataclasses.replace(case, behaviour_logp=seq_logp + shift)


def run(fn: Any, case: Case) -> tuple[LossOutput, list[Tensor]]:
    for leaf in case.leaves():
        leaf.grad = None
    out = fn()
    out.loss.backward()
    grads = [leaf.grad.clone() if leaf.grad is not None else torch.zeros_like(leaf) for leaf in case.leaves()]
    return out, grads


def assert_same(
    a: tuple[LossOutput, list[Tensor]], b: tuple[LossOutput, list[Tensor]], dtype: torch.dtype
) -> None:
    (out_a, grads_a), (out_b, grads_b) = a, b
    vt, gt = tolerance(dtype, "value"), tolerance(dtype, "grad")
    assert_close(out_a.loss, out_b.loss, vt, what="loss")
    assert out_a.sample_count == out_b.sample_count
    assert set(out_a.diagnostics) == set(out_b.diagnostics), set(out_a.diagnostics) ^ set(out_b.diagnostics)
    for key in out_b.diagnostics:
        assert_close(out_a.diagnostics[key], out_b.diagnostics[key], vt, what=f"diagnostic {key}")
    for name, ga, gb in zip(
        ("student_hidden", "student_weight", "student_bias"), grads_a, grads_b, strict=False
    ):
        assert ga.dtype == gb.dtype, name
        assert_close(ga, gb, gt, what=f"gradient w.r.t. {name}")


def _methods_and_options() -> Iterator[Any]:
    for method in METHODS:
        yield pytest.param(method, None, id=f"{method}-default")
        if method in ("askd", "askd-dense"):
            yield pytest.param(method, OPTION_SETS["variant"], id=f"{method}-variant")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("method", "options"), list(_methods_and_options()))
@pytest.mark.parametrize("kernel", ["fused", "compiled", "core"])
def test_equals_full_logit_path(
    method: str, options: ASKDOptions | None, dtype: torch.dtype, kernel: str
) -> None:
    case = make_case(dtype)
    if method == "askd":
        case = with_behaviour(case)  # E13 on the SGO rows
    if kernel == "compiled" and dtype == torch.float64:  # float32 work only: a clear refusal
        with pytest.raises(ValueError, match="kernel='compiled' runs float32 on CPU"):
            chunked_loss(method, **case.kwargs(), options=options, kernel="compiled")  # type: ignore[arg-type]
        return
    full = run(lambda: full_path(method, case, options), case)
    chunked = run(
        lambda: chunked_loss(method, **case.kwargs(), options=options, chunk_size=5, kernel=kernel),  # type: ignore[arg-type]
        case,
    )
    assert_same(chunked, full, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("method", ["askd", "askd-dense", "distillm2", "gkd", "advantage_kd"])
def test_chunk_size_invariance(method: str, dtype: torch.dtype) -> None:
    case = make_case(dtype, seed=3)
    n_tokens = int(case.mask.sum())
    reference = run(lambda: chunked_loss(method, **case.kwargs(), chunk_size=n_tokens), case)
    for chunk_size in (1, 2, 3, 7, 16, n_tokens - 1, n_tokens + 1, 10_000):
        other = run(lambda cs=chunk_size: chunked_loss(method, **case.kwargs(), chunk_size=cs), case)
        assert_same(other, reference, dtype)


EXTREME = {"seed": 5, "scale": 60.0, "bias": False}
EXTREME_OPTIONS = ASKDOptions(alpha_lo=1e-3, alpha_hi=0.999)
DENSE = ["askd-dense", "kd", "rkl", "gkd", "distillm", "distillm2"]


@pytest.mark.parametrize("kernel", ["fused", "core"])
@pytest.mark.parametrize("method", DENSE)
def test_extreme_inputs_float64(method: str, kernel: str) -> None:
    """Peaked distributions (log-probs down to about −10³) and skews near 0 and 1, in float64."""
    case = make_case(torch.float64, **EXTREME)  # type: ignore[arg-type]
    opts = EXTREME_OPTIONS
    full = run(lambda: full_path(method, case, opts), case)
    chunked = run(lambda: chunked_loss(method, **case.kwargs(), options=opts, kernel=kernel), case)  # type: ignore[arg-type]
    assert_same(chunked, full, torch.float64)


def _error_ratio(actual: Tensor, expected: Tensor, dtype: torch.dtype, quantity: str) -> float:
    """max |actual − expected| / (atol + rtol·|expected|): ≤ 1 means within the table."""
    tol = tolerance(dtype, quantity)
    err = (actual.detach().double() - expected.detach().double()).abs()
    return float((err / (tol.atol + tol.rtol * expected.detach().double().abs())).max())


@pytest.mark.parametrize("kernel", ["fused", "compiled", "core"])
@pytest.mark.parametrize("method", DENSE)
def test_extreme_inputs_float32_as_accurate_as_full_path(method: str, kernel: str) -> None:
    """At extreme inputs float32 itself loses the table's accuracy (plain RKL gradients of peaked
    distributions cancel catastrophically), for the full-logit path too. The independent oracle
    is float64 on the same float32 inputs; the chunked path's error must be within the table or
    at most twice the full-logit float32 path's own error.
    """
    c32 = make_case(torch.float32, **EXTREME)  # type: ignore[arg-type]
    c64 = dataclasses.replace(
        c32,
        hs=c32.hs.detach().double().requires_grad_(),
        ws=c32.ws.detach().double().requires_grad_(),
        ht=c32.ht.double(),
        wt=c32.wt.double(),
    )
    opts = EXTREME_OPTIONS
    oracle = run(lambda: full_path(method, c64, opts), c64)
    full32 = run(lambda: full_path(method, c32, opts), c32)
    chunked = run(lambda: chunked_loss(method, **c32.kwargs(), options=opts, kernel=kernel), c32)  # type: ignore[arg-type]
    assert torch.isfinite(chunked[0].loss)
    pairs = [(chunked[0].loss, full32[0].loss, oracle[0].loss, "value")]
    pairs += [(a, b, c, "grad") for a, b, c in zip(chunked[1], full32[1], oracle[1], strict=True)]
    for mine, theirs, exact, quantity in pairs:
        r_mine = _error_ratio(mine, exact, torch.float32, quantity)
        r_full = _error_ratio(theirs, exact, torch.float32, quantity)
        assert r_mine <= max(1.0, 2.0 * r_full), (quantity, r_mine, r_full)


def test_masked_positions_cost_nothing_and_get_no_gradient() -> None:
    case = make_case(torch.float64, seed=7)
    with torch.no_grad():
        case.hs[~case.mask] = float("nan")  # never read
    case.ids[~case.mask] = -1  # out of range, never read
    out, (grad_h, *_) = run(lambda: chunked_loss("askd-dense", **case.kwargs(), chunk_size=4), case)
    assert torch.isfinite(out.loss)
    assert bool((grad_h[~case.mask] == 0).all())
    assert bool(grad_h[case.mask].abs().sum() > 0)


class _LargestTensor(TorchDispatchMode):
    """Records the largest number of elements of any tensor an aten op returns."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("method", ["askd", "askd-dense", "gkd"])
def test_never_materialises_tokens_by_vocab(method: str) -> None:
    case = make_case(
        torch.float32, seed=2, batch=6, seq=40, hidden=4, teacher_hidden=3, vocab=300, bias=False
    )
    n_tokens = int(case.mask.sum())
    chunk = 8
    with _LargestTensor() as probe:
        out = chunked_loss(method, **case.kwargs(), chunk_size=chunk)
        out.loss.backward()
    # The largest legitimate tensors: one (chunk × vocab) buffer; the full logits would be
    # (tokens × vocab), more than 10 times larger here.
    assert n_tokens * 300 > 10 * chunk * 300
    assert probe.largest <= chunk * 300, (probe.largest, n_tokens * 300)


class _Copies(TorchDispatchMode):
    """Records the shapes of the tensors that ``aten.copy_`` and ``aten.clone`` write."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in (torch.ops.aten.copy_.default, torch.ops.aten.clone.default):
            self.shapes.append(tuple(args[0].shape))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["askd-dense", "gkd"])
def test_weight_gradient_is_not_copied(method: str) -> None:
    """The dense weight gradient formed in forward becomes the weight's ``.grad`` as it is:
    autograd releases its saved reference before AccumulateGrad runs, which then takes the tensor
    instead of copying it (a vocab × hidden copy per call, which the plain-autograd floor does not
    pay)."""
    case = make_case(torch.float32, seed=3, hidden=6, vocab=300, bias=False)
    out = chunked_loss(method, **case.kwargs(), chunk_size=8)
    with _Copies() as probe:
        out.loss.backward()
    assert case.ws.grad is not None
    assert tuple(case.ws.shape) not in probe.shapes, probe.shapes


@pytest.mark.parametrize("method", ["askd-dense", "gkd", "askd"])
def test_retained_graph_gives_the_gradient_every_time(method: str) -> None:
    """With ``retain_graph=True`` every backward adds the same gradient, even after the first
    ``.grad`` was changed in place (the saved dense gradients are not handed out to be mutated)."""
    case = make_case(torch.float64, seed=4)
    out = chunked_loss(method, **case.kwargs(), chunk_size=5)
    out.loss.backward(retain_graph=True)
    first = [leaf.grad.clone() for leaf in case.leaves() if leaf.grad is not None]
    for leaf in case.leaves():
        if leaf.grad is not None:
            leaf.grad.mul_(3.0)  # as gradient clipping would
    out.loss.backward(retain_graph=True)
    out.loss.backward()
    got = [leaf.grad for leaf in case.leaves() if leaf.grad is not None]
    assert len(got) == len(first) == 3
    for g, g1 in zip(got, first, strict=True):
        torch.testing.assert_close(g, 5.0 * g1, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_token_log_probs_match_full_log_softmax(dtype: torch.dtype) -> None:
    case = make_case(dtype, seed=11)
    cdt = compute_dtype(dtype)
    weights = torch.randn(case.mask.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def full() -> Tensor:
        assert case.bs is not None
        z = case.hs.to(cdt) @ case.ws.to(cdt).T + case.bs.to(cdt)
        tok = torch.log_softmax(z, -1).gather(-1, case.ids[..., None]).squeeze(-1)
        return torch.where(case.mask, tok, 0)

    def chunked() -> Tensor:
        return chunked_token_log_probs(case.hs, case.ws, case.ids, case.mask, bias=case.bs, chunk_size=3)

    results = []
    for fn in (chunked, full):
        for leaf in case.leaves():
            leaf.grad = None
        values = fn()
        (values * weights.to(values.dtype)).sum().backward()
        results.append(
            (values.detach(), [leaf.grad.clone() for leaf in case.leaves() if leaf.grad is not None])
        )
    (v_c, g_c), (v_f, g_f) = results
    assert v_c.dtype == cdt
    assert_close(v_c, v_f, tolerance(dtype, "value"), what="token log-probs")
    assert len(g_c) == len(g_f) == 3
    for a, b in zip(g_c, g_f, strict=True):
        assert_close(a, b, tolerance(dtype, "grad"), what="gradient")


def test_gradient_accumulation_with_global_counts() -> None:
    """Two micro-batches with the global sample counts give the gradient of the whole batch."""
    case = make_case(torch.float64, seed=13)
    whole = run(lambda: chunked_loss("askd-dense", **case.kwargs()), case)[1]
    n_t, n_s = int(case.is_tgo.sum()), int((~case.is_tgo).sum())
    for leaf in case.leaves():
        leaf.grad = None
    for rows in (slice(0, 3), slice(3, 6)):
        kw = case.kwargs()
        for key in ("student_hidden", "teacher_hidden", "target_ids", "mask", "is_tgo", "quality", "group"):
            kw[key] = kw[key][rows]
        chunked_loss("askd-dense", **kw, num_tgo=n_t, num_sgo=n_s).loss.backward()
    for leaf, expected in zip(case.leaves(), whole, strict=True):
        assert leaf.grad is not None
        assert_close(leaf.grad, expected, tolerance(torch.float64, "grad"), what="accumulated gradient")


def test_frozen_weight_teacher_and_no_grad() -> None:
    case = make_case(torch.float64, seed=17, bias=False)
    case.ws.requires_grad_(False)
    case.ht.requires_grad_(True)
    out = chunked_loss("askd", **case.kwargs())
    out.loss.backward()
    assert case.ws.grad is None
    assert case.ht.grad is None  # the teacher never receives gradient
    assert case.hs.grad is not None
    expected = full_path("askd", case)
    assert_close(out.loss, expected.loss, tolerance(torch.float64), what="loss")
    with torch.no_grad():
        again = chunked_loss("askd-dense", **case.kwargs())
    assert not again.loss.requires_grad
    assert_close(
        again.loss, full_path("askd-dense", case).loss, tolerance(torch.float64), what="no-grad loss"
    )


def test_seqkd_needs_no_teacher() -> None:
    case = make_case(torch.float32, seed=19)
    kw = case.kwargs()
    kw["teacher_hidden"] = kw["teacher_weight"] = kw["teacher_bias"] = None
    assert_close(
        chunked_loss("seqkd", **kw).loss,
        full_path("seqkd", case).loss,
        tolerance(torch.float32),
        what="seqkd",
    )


def _bad(**changes: Any) -> dict[str, Any]:
    kw = make_case(torch.float32, seed=23).kwargs()
    kw.update(changes)
    return kw


@pytest.mark.parametrize(
    ("method", "kwargs", "error", "match"),
    [
        ("nope", {}, ValueError, "method must be one of"),
        ("kd", {"chunk_size": 0}, ValueError, "chunk_size must be a positive int or None"),
        ("kd", {"chunk_size": True}, ValueError, "chunk_size must be a positive int or None"),
        ("kd", {"kernel": "triton"}, ValueError, "kernel must be"),
        (
            "kd",
            {"teacher_weight": torch.randn(36, 5), "teacher_bias": None},
            ValueError,
            "vocabulary mismatch",
        ),
        (
            "kd",
            {"student_weight": torch.randn(37, 3)},
            ValueError,
            r"student_weight must have shape \(vocab, 8\)",
        ),
        ("kd", {"student_hidden": torch.randn(6, 9)}, ValueError, "student_hidden must have at least 3"),
        ("kd", {"teacher_hidden": None}, ValueError, "needs teacher_hidden"),
        ("kd", {"target_ids": torch.full((6, 9), 37)}, ValueError, r"target_ids must lie in \[0, 37\)"),
        ("kd", {"target_ids": torch.zeros(6, 9)}, TypeError, "target_ids must be an integer tensor"),
        ("kd", {"mask": torch.zeros(6, 9, dtype=torch.bool)}, ValueError, "mask row 0 selects no tokens"),
        ("kd", {"mask": torch.ones(6, 9)}, TypeError, "mask must have dtype torch.bool"),
        ("kd", {"student_bias": torch.randn(5)}, ValueError, r"student_bias must have shape \(37,\)"),
        (
            "kd",
            {"student_weight": torch.full((37, 8), float("nan"))},
            ValueError,
            "student_weight contains NaN",
        ),
        ("askd", {"quality": None}, ValueError, "askd needs quality"),
        ("kd", {"is_tgo": torch.zeros(6, dtype=torch.bool)}, ValueError, "no samples of the kind"),
    ],
)
def test_bad_input_raises(method: str, kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        chunked_loss(method, **_bad(**kwargs))


@pytest.mark.parametrize("threads", [1, 2, 3, 16])
@pytest.mark.parametrize("vocab", [97, 32768, 151936, 262144])
def test_row_blocks_keep_every_thread_busy(vocab: int, threads: int) -> None:
    """A block has whole rows for every intra-op thread (the row reductions split it by rows),
    at least two each, and otherwise the byte budget of one buffer."""
    import askd_ref.chunked as chunked_module

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(threads)
        rows = chunked_module._block_rows(vocab, torch.float32)
    finally:
        torch.set_num_threads(before)
    by_bytes = chunked_module._BLOCK_BYTES // (4 * vocab)
    assert rows % threads == 0
    assert rows >= 2 * threads
    assert rows > by_bytes - threads
    assert rows <= max(by_bytes, 2 * threads)


@pytest.mark.parametrize("method", ["askd", "askd-dense", "gkd", "distillm", "kd", "rkl"])
def test_row_blocks_do_not_change_results(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The element-wise passes run over row blocks of each chunk; one-row blocks (a 1-byte
    budget) give the values and gradients of whole-chunk blocks, forward and recomputed backward."""
    import askd_ref.chunked as chunked_module

    case = with_behaviour(make_case(torch.float64, seed=11))
    whole = run(lambda: chunked_loss(method, **case.kwargs(), chunk_size=6), case)
    monkeypatch.setattr(chunked_module, "_BLOCK_BYTES", 1)
    monkeypatch.setattr(chunked_module, "_ROWS_PER_THREAD", 0)
    assert chunked_module._block_rows(37, torch.float64) == 1
    rows = run(lambda: chunked_loss(method, **case.kwargs(), chunk_size=6), case)
    assert_same(rows, whole, torch.float64)
