"""Method parameters, temperature and reductions: both loss paths, a loop reference, and the peers.

* every method parameter (``beta`` of gkd, ``alpha`` of distillm/distillm2, DistiLLM-2's ``beta``
  weight and ``loss_type``, ``eps_a``) and ``temperature`` gives the same value and gradients on
  the chunked path as on the full-logit path (float64);
* ``reduction="sample"`` and ``"token"`` equal a float64 reference written with explicit Python
  loops over rows, tokens and vocabulary entries (no library divergence function);
* ``reduction="token"`` with global token counts: micro-batch losses add up to the whole batch;
* TRL's ``GKDTrainer.generalized_jsd_loss`` and Liger-Kernel's chunked ``LigerFusedLinearJSDLoss``
  (run on CPU, ``compiled=False``) equal ``gkd`` with ``reduction="token"`` on ragged batches, and
  the default reduction on equal-length ones — values and gradients. Skipped, with the reason
  shown by ``pytest -ra``, where the peer is not installed.
"""

import math
from typing import Any

import pytest
import torch
from torch import Tensor

from askd_ref import ASKDOptions, DistillBatch, compute_loss
from askd_ref.baselines import distillm2_gradual_beta
from askd_ref.chunked import chunked_loss, chunked_token_log_probs
from askd_ref.methods import check_method_params
from askd_ref.schedules import quality_gate, sgo_alpha, tgo_alpha
from askd_ref.sequence import token_log_probs
from tests.test_chunked import Case, make_case

F64 = torch.float64

#: (method, parameters) pairs beyond the defaults; every one runs on both paths.
PARAM_CASES: list[tuple[str, dict[str, Any]]] = [
    ("kd", {}),
    ("rkl", {}),
    ("seqkd", {}),
    ("gkd", {"beta": 0.9}),
    ("gkd", {"beta": 0.1}),
    ("gkd", {"beta": 1.0}),
    ("distillm", {"alpha": 0.3}),
    ("distillm", {"alpha": 0.0}),
    ("distillm2", {"alpha": 0.25}),
    ("distillm2", {"alpha": 0.05, "beta": 1.4}),
    ("distillm2", {"loss_type": "distillm_v1", "beta": 0.6}),
    ("distillm2", {"alpha": 0.0, "beta": 2.0}),
    ("advantage_kd", {"eps_a": 0.5}),
    ("askd-dense", {}),
    ("askd", {}),
]
DENSE_OPTIONS = ASKDOptions(lambda_dense=0.6)


def _full(case: Case, method: str, tau: float = 1.0, **kw: Any) -> Any:
    """compute_loss on log_softmax((h·Wᵀ + b)/τ) — the full-logit oracle."""
    zs = (case.hs @ case.ws.T + case.bs) / tau
    zt = (case.ht @ case.wt.T + case.bt) / tau
    ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
    batch = DistillBatch(
        mask=case.mask,
        is_tgo=case.is_tgo,
        quality=case.quality,
        student_token_logp=ls.gather(-1, case.ids[..., None]).squeeze(-1),
        teacher_token_logp=lt.gather(-1, case.ids[..., None]).squeeze(-1),
        student_logp=ls,
        teacher_logp=lt,
        group=case.group,
    )
    return compute_loss(method, batch, **kw)


def _grads(loss: Tensor, case: Case) -> list[Tensor]:
    return list(torch.autograd.grad(loss, case.leaves()))


@pytest.mark.parametrize("reduction", ["sample", "token"])
@pytest.mark.parametrize("tau", [1.0, 2.0, 0.7])
@pytest.mark.parametrize(("method", "params"), PARAM_CASES)
def test_chunked_equals_full_with_parameters(
    method: str, params: dict[str, Any], tau: float, reduction: str
) -> None:
    case = make_case(F64, seed=3)
    opts = DENSE_OPTIONS if method == "askd" else None
    kw: dict[str, Any] = {**params, "reduction": reduction, "options": opts}
    full = _full(case, method, tau, **kw)
    chunk = chunked_loss(method, **case.kwargs(), temperature=tau, chunk_size=4, **kw)
    torch.testing.assert_close(chunk.loss, full.loss, rtol=1e-12, atol=1e-13)
    for a, b in zip(_grads(chunk.loss, case), _grads(full.loss, case), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert chunk.diagnostics.keys() == full.diagnostics.keys()


def test_temperature_changes_the_loss_and_one_is_the_default() -> None:
    case = make_case(F64, seed=1)
    base = chunked_loss("gkd", **case.kwargs())
    same = chunked_loss("gkd", **case.kwargs(), temperature=1.0)
    hot = chunked_loss("gkd", **case.kwargs(), temperature=3.0)
    assert float(base.loss.detach()) == float(same.loss.detach())
    assert abs(float(hot.loss.detach()) - float(base.loss.detach())) > 1e-3


def test_token_log_prob_helpers_take_temperature() -> None:
    case = make_case(F64, seed=2)
    z = case.hs @ case.ws.T + case.bs
    ref = torch.log_softmax(z / 1.7, -1).gather(-1, case.ids[..., None]).squeeze(-1)
    got = chunked_token_log_probs(
        case.hs, case.ws, case.ids, case.mask, bias=case.bs, temperature=1.7, chunk_size=3
    )
    torch.testing.assert_close(got, torch.where(case.mask, ref, 0.0), rtol=1e-12, atol=1e-13)
    ids = torch.cat([case.ids[:, :1], case.ids], 1)
    resp = torch.cat([torch.zeros_like(case.mask[:, :1]), case.mask], 1)
    logits = torch.cat([z, z[:, -1:]], 1)
    lp, m = token_log_probs(logits, ids, resp, temperature=1.7)
    torch.testing.assert_close(lp[m], ref[case.mask], rtol=1e-12, atol=1e-13)


# ---- a loop reference for both reductions ---------------------------------------------------


def _kl(a: list[float], b: list[float]) -> float:
    return sum(x * math.log(x / y) for x, y in zip(a, b, strict=True) if x > 0)


def _token_value(
    method: str, p: list[float], q: list[float], is_tgo: bool, r: Tensor, params: dict[str, Any]
) -> float:
    """The per-token divergence of ``method`` at one position, from probabilities, by loops."""
    if method in ("kd",):
        return _kl(p, q)
    if method == "rkl":
        return _kl(q, p)
    if method == "gkd":
        b = params.get("beta", 0.5)
        m = [b * x + (1 - b) * y for x, y in zip(p, q, strict=True)]
        return b * _kl(p, m) + (1 - b) * _kl(q, m)
    if method == "distillm" or (
        method == "distillm2" and (not is_tgo or params.get("loss_type") == "distillm_v1")
    ):
        a = params.get("alpha", 0.1)
        return _kl(q, [(1 - a) * x + a * y for x, y in zip(p, q, strict=True)])
    if method == "distillm2":
        a = params.get("alpha", 0.1)
        return _kl(p, [a * x + (1 - a) * y for x, y in zip(p, q, strict=True)])
    if method == "askd-dense":
        if is_tgo:
            a = float(tgo_alpha(r))  # the schedules of the quality's own dtype, as the loss uses
            return _kl(p, [a * x + (1 - a) * y for x, y in zip(p, q, strict=True)])
        a = float(sgo_alpha(r))
        h = float(quality_gate(r))
        return (1 - h) * _kl(q, [(1 - a) * x + a * y for x, y in zip(p, q, strict=True)])
    raise AssertionError(method)


def _uses(method: str, is_tgo: bool) -> bool:
    return {"kd": is_tgo, "rkl": not is_tgo}.get(method, True)


def _group_weight(method: str, is_tgo: bool, params: dict[str, Any]) -> float:
    if method == "distillm2":
        b = params.get("beta", 1.0)
        return b if not is_tgo else 2 - b
    return 1.0


def _loop_reference(method: str, case: Case, reduction: str, params: dict[str, Any]) -> float:
    """The loss by loops: per-sample token means averaged per group, or token means per group."""
    with torch.no_grad():
        ps = torch.softmax(case.ht @ case.wt.T + case.bt, -1).tolist()
        qs = torch.softmax(case.hs @ case.ws.T + case.bs, -1).tolist()
    b, n = case.mask.shape
    joint = method in ("gkd", "distillm")  # one normaliser over TGOs and SGOs
    sums: dict[bool, list[float]] = {True: [], False: []}
    lens: dict[bool, list[int]] = {True: [], False: []}
    for i in range(b):
        tgo = bool(case.is_tgo[i])
        if not _uses(method, tgo):
            continue
        total, count = 0.0, 0
        for t in range(n):
            if case.mask[i, t]:
                total += _token_value(method, ps[i][t], qs[i][t], tgo, case.quality[i], params)
                count += 1
        sums[tgo].append(total)
        lens[tgo].append(count)
    groups = [[True, False]] if joint else [[True], [False]]
    loss = 0.0
    for grp in groups:
        if reduction == "sample":
            terms = [s / c for g in grp for s, c in zip(sums[g], lens[g], strict=True)]
            weights = [_group_weight(method, g, params) for g in grp for _ in sums[g]]
            if terms:
                loss += sum(w * x for w, x in zip(weights, terms, strict=True)) / len(terms)
        else:
            tokens = sum(c for g in grp for c in lens[g])
            if tokens:
                loss += sum(_group_weight(method, g, params) * s for g in grp for s in sums[g]) / tokens
    return loss


@pytest.mark.parametrize("reduction", ["sample", "token"])
@pytest.mark.parametrize(
    ("method", "params"),
    [(m, p) for m, p in PARAM_CASES if m not in ("seqkd", "advantage_kd", "askd")],
)
def test_reductions_equal_a_loop_reference(method: str, params: dict[str, Any], reduction: str) -> None:
    case = make_case(F64, seed=5, batch=6, seq=7, vocab=11)
    ref = _loop_reference(method, case, reduction, params)
    full = _full(case, method, reduction=reduction, **params)
    chunk = chunked_loss(method, **case.kwargs(), reduction=reduction, chunk_size=5, **params)
    assert math.isclose(float(full.loss.detach()), ref, rel_tol=1e-11, abs_tol=1e-13)
    assert math.isclose(float(chunk.loss.detach()), ref, rel_tol=1e-11, abs_tol=1e-13)


def test_reductions_differ_on_ragged_batches_and_agree_on_even_ones() -> None:
    case = make_case(F64, seed=5)
    sample = chunked_loss("kd", **case.kwargs(), reduction="sample")
    token = chunked_loss("kd", **case.kwargs(), reduction="token")
    assert abs(float(sample.loss.detach()) - float(token.loss.detach())) > 1e-4
    case.mask[:] = True
    sample = chunked_loss("gkd", **case.kwargs(), reduction="sample", beta=0.3)
    token = chunked_loss("gkd", **case.kwargs(), reduction="token", beta=0.3)
    assert math.isclose(float(sample.loss.detach()), float(token.loss.detach()), rel_tol=1e-13)


@pytest.mark.parametrize("path", ["full", "chunked"])
@pytest.mark.parametrize("method", ["gkd", "distillm2", "askd-dense", "kd", "seqkd"])
def test_token_reduction_global_counts_add_up(method: str, path: str) -> None:
    """Two micro-batches with the global token counts have the loss and gradient of the whole."""
    case = make_case(F64, seed=7)
    n_t = int(case.mask[case.is_tgo].sum())
    n_s = int(case.mask[~case.is_tgo].sum())

    def loss(rows: slice, **kw: Any) -> Tensor:
        part = Case(
            case.hs[rows],
            case.ws,
            case.bs,
            case.ht[rows],
            case.wt,
            case.bt,
            case.ids[rows],
            case.mask[rows],
            case.is_tgo[rows],
            case.quality[rows],
            case.group[rows],
        )
        if path == "chunked":
            return chunked_loss(method, **part.kwargs(), reduction="token", **kw).loss
        return _full(part, method, reduction="token", **kw).loss

    whole = loss(slice(0, 6))
    counts = {"num_tgo": 2, "num_sgo": 4, "num_tgo_tokens": n_t, "num_sgo_tokens": n_s}
    if method == "kd":
        counts = {k: v for k, v in counts.items() if "sgo" not in k}
    split = loss(slice(0, 3), **counts) + loss(slice(3, 6), **counts)
    torch.testing.assert_close(split, whole, rtol=1e-12, atol=1e-14)
    for a, b in zip(_grads(split, case), _grads(whole, case), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_parameter_errors_name_the_argument() -> None:
    case = make_case(F64)
    with pytest.raises(ValueError, match="method 'kd' takes no parameter 'beta'"):
        chunked_loss("kd", **case.kwargs(), beta=0.5)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\]"):
        chunked_loss("gkd", **case.kwargs(), beta=1.5)
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 2\]"):
        chunked_loss("distillm2", **case.kwargs(), beta=-0.5)
    with pytest.raises(ValueError, match="alpha must lie in"):
        check_method_params("distillm", alpha=1.1)
    with pytest.raises(TypeError, match="alpha must be a float"):
        check_method_params("distillm", alpha=True)
    with pytest.raises(ValueError, match="loss_type must be"):
        check_method_params("distillm2", loss_type="v3")
    with pytest.raises(ValueError, match="temperature must be a positive finite float"):
        chunked_loss("kd", **case.kwargs(), temperature=0.0)
    with pytest.raises(ValueError, match="reduction must be 'sample' or 'token'"):
        chunked_loss("kd", **case.kwargs(), reduction="batchmean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_tgo_tokens is the normaliser of reduction='token'"):
        chunked_loss("kd", **case.kwargs(), num_tgo_tokens=100)
    with pytest.raises(ValueError, match="num_sgo_tokens=1 is smaller"):
        chunked_loss("rkl", **case.kwargs(), reduction="token", num_sgo_tokens=1)


def test_gradual_beta_matches_distillm2_schedule() -> None:
    # DistiLLM-2's kd_loss: beta = 1 + 0.5·min(1, 2·step/max_steps), written out independently.
    for step, total in [(0, 10), (1, 10), (3, 10), (5, 10), (9, 10), (7, 7)]:
        expected = 1.0 + 0.5 * (1.0 if 2 * step >= total else 2 * step / total)
        assert distillm2_gradual_beta(step, total) == pytest.approx(expected, rel=1e-15)


# ---- the peers -------------------------------------------------------------------------------


def _ragged(seed: int, even: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    b, n, h, v = 4, 7, 6, 13
    hs = torch.randn(b, n, h, generator=g, dtype=F64, requires_grad=True)
    ws = (torch.randn(v, h, generator=g, dtype=F64) / 2).requires_grad_()
    ht = torch.randn(b, n, h, generator=g, dtype=F64)
    wt = torch.randn(v, h, generator=g, dtype=F64) / 2
    ids = torch.randint(0, v, (b, n), generator=g)
    lengths = torch.tensor([7, 7, 7, 7]) if even else torch.tensor([7, 2, 5, 1])
    mask = torch.arange(n)[None] < lengths[:, None]
    return hs, ws, ht, wt, ids, mask


def _trl_gkd() -> Any:
    pytest.importorskip("trl", reason="TRL is not installed (pip install -e '.[dev]')")
    try:
        from trl.experimental.gkd import GKDTrainer
    except ImportError:
        from trl import GKDTrainer  # older TRL
    return GKDTrainer


@pytest.mark.parametrize(("beta", "tau"), [(0.9, 2.0), (0.5, 1.0), (0.2, 0.5)])
def test_gkd_token_reduction_equals_trl(beta: float, tau: float) -> None:
    trainer = _trl_gkd()
    hs, ws, ht, wt, ids, mask = _ragged(11)
    labels = torch.where(mask, ids, -100)
    trl = trainer.generalized_jsd_loss(hs @ ws.T, ht @ wt.T, labels=labels, beta=beta, temperature=tau)
    ours = chunked_loss(
        "gkd",
        student_hidden=hs,
        student_weight=ws,
        teacher_hidden=ht,
        teacher_weight=wt,
        target_ids=ids,
        mask=mask,
        is_tgo=torch.tensor([True, False, True, False]),
        beta=beta,
        temperature=tau,
        reduction="token",
        chunk_size=3,
    )
    torch.testing.assert_close(ours.loss, trl, rtol=1e-12, atol=1e-14)
    for a, b in zip(
        torch.autograd.grad(ours.loss, [hs, ws]), torch.autograd.grad(trl, [hs, ws]), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
    # and TRL's num_items_in_batch (its global-count path) equals our global token counts
    half = [slice(0, 2), slice(2, 4)]
    total = int(mask.sum())
    trl_split = sum(
        trainer.generalized_jsd_loss(
            hs[r] @ ws.T, ht[r] @ wt.T, labels=labels[r], beta=beta, temperature=tau, num_items_in_batch=total
        )
        for r in half
    )
    n_t = int(mask[[0, 2]].sum())
    ours_split = sum(
        chunked_loss(
            "gkd",
            student_hidden=hs[r],
            student_weight=ws,
            teacher_hidden=ht[r],
            teacher_weight=wt,
            target_ids=ids[r],
            mask=mask[r],
            is_tgo=torch.tensor([True, False]),
            beta=beta,
            temperature=tau,
            reduction="token",
            num_tgo=2,
            num_sgo=2,
            num_tgo_tokens=n_t,
            num_sgo_tokens=total - n_t,
        ).loss
        for r in half
    )
    torch.testing.assert_close(ours_split, trl_split, rtol=1e-12, atol=1e-14)


def _liger_jsd(beta: float, tau: float) -> Any:
    pytest.importorskip(
        "liger_kernel",
        reason="liger-kernel is not installed (pip install --no-deps liger-kernel, see pyproject)",
    )
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

    return LigerFusedLinearJSDLoss(
        weight_hard_loss=0.0, weight_soft_loss=1.0, beta=beta, temperature=tau, compiled=False, chunk_size=5
    )


@pytest.fixture
def float64_default() -> Any:
    """Liger accumulates its loss in a tensor of the default dtype: make that float64."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    yield
    torch.set_default_dtype(old)


@pytest.mark.usefixtures("float64_default")
@pytest.mark.parametrize("even", [True, False])
@pytest.mark.parametrize(("beta", "tau"), [(0.9, 2.0), (0.5, 1.0), (0.3, 0.8)])
def test_gkd_equals_liger_chunked_jsd(beta: float, tau: float, even: bool) -> None:
    """Liger's one token mean equals ``gkd`` with reduction="token" (ragged) and the default (even)."""
    liger = _liger_jsd(beta, tau)
    hs, ws, ht, wt, ids, mask = _ragged(13, even=even)
    labels = torch.where(mask, ids, -100)
    ref = liger(hs.reshape(-1, hs.shape[-1]), ws, ht.reshape(-1, ht.shape[-1]), wt, labels.reshape(-1))
    kw: dict[str, Any] = {} if even else {"reduction": "token"}
    ours = chunked_loss(
        "gkd",
        student_hidden=hs,
        student_weight=ws,
        teacher_hidden=ht,
        teacher_weight=wt,
        target_ids=ids,
        mask=mask,
        is_tgo=torch.tensor([True, False, False, True]),
        beta=beta,
        temperature=tau,
        **kw,
    )
    torch.testing.assert_close(ours.loss, ref, rtol=1e-12, atol=1e-14)
    for a, b in zip(
        torch.autograd.grad(ours.loss, [hs, ws]), torch.autograd.grad(ref, [hs, ws]), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)
