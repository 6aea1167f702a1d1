"""The loss benchmark: askd-ref's chunked loss against the full-logit losses users run today.

Every implementation computes one forward + backward pass of a distillation loss from the same
final hidden states and output projections (student with gradient, teacher without), so every
row pays for the same matmuls and the ratios compare whole loss computations:

==================== ===========================================================================
``askd_chunked``     :func:`askd_ref.chunked_loss` with ``askd-dense`` (E15: SKL on TGOs, SRKL on
                     SGOs, quality-adaptive α, full vocabulary), chunk by chunk
``askd_full``        the same loss through :func:`askd_ref.compute_loss` on full log-probs
``distillm2_naive``  DistiLLM-2's full-logit skew loss as its trainer computes it
                     (``get_batch_logps`` style: log-softmax of both models over the full
                     vocabulary, stacked log-space mixtures for SKL and SRKL on every row, then
                     SKL on TGO rows + SRKL on SGO rows)
``trl_gkd``          TRL's ``GKDTrainer.generalized_jsd_loss`` (β = 0.5) from the installed ``trl``
``floor``            only the unavoidable projections: student logits forward and backward,
                     teacher logits forward
``askd_seq_chunked`` extra row: sequence-level ASKD (E11–E13) on chunked token log-probs
==================== ===========================================================================

When ``liger-kernel`` is importable, three more rows compare askd-ref with the chunked peer
(``liger_kernel.chunked_loss.LigerFusedLinearJSDLoss``, also what TRL's GKD runs with
``use_liger_kernel``), all computing the generalised JSD with β = 0.5, τ = 1:

====================== =========================================================================
``askd_chunked_gkd``   :func:`askd_ref.chunked_loss` with ``gkd``
``liger_jsd``          Liger's fused-linear JSD, eager (``compiled=False``)
``liger_jsd_compiled`` the same with ``torch.compile`` (Liger's default); the compiling passes
                       are excluded from the timed ones and reported as ``compile_s``
====================== =========================================================================

Liger's conventions, read from its source (``chunked_loss/jsd_loss.py``,
``fused_linear_distillation.py``): the loss is ``weight_soft_loss · JSD + weight_hard_loss · CE``
with defaults 0.5 / 0.5, so the rows set 0 / 1 (the CE term is then not computed); its β weights
the teacher, M = β·p_T + (1−β)·p_S, JSD = β·KL(p_T‖M) + (1−β)·KL(p_S‖M), the convention of
:func:`askd_ref.generalized_jsd` (Liger replaces the endpoints β ∈ {0, 1} by plain KLs); tokens
whose label is ``ignore_index`` (−100) are dropped and the sum is divided by the number of kept
tokens of the whole batch, which equals askd-ref's per-sample token mean averaged over samples
when every row has the same length (as here). Before timing, every worker of a Liger row checks
its loss against ``chunked_loss("gkd")`` on the warm-up inputs and fails if they differ.

Each (configuration, implementation) runs in a fresh worker process that imports the same
modules (so the interpreter, torch, TRL and the seeded inputs are a common baseline), runs a
small warm-up, then ``repeats`` forward + backward passes on the full-size inputs. Time is the
median of those passes. Peak memory is that process's peak RSS (``VmHWM``) after the first
pass on CPU, ``torch.cuda.max_memory_allocated`` on GPU. The implementations of one
configuration run one after another in the same ``askd bench loss`` run, on identical inputs.
With ``rounds`` (5 under ``--quick``) one more worker measures the bounded time ratios of
:data:`PAIRED_RATIOS` with their passes interleaved (:func:`interleaved_times`), and those time
checks use its median per-round ratio.

The askd-ref rows run with the chunked kernel :func:`resolve_kernel` picks: by default
(``"auto"``) the compiled C kernel where it builds on CPU, else the eager ``"fused"`` kernel,
which is ``chunked_loss``'s default and the reference.
"""

import argparse
import dataclasses
import functools
import gc
import importlib
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from torch import Tensor

__all__ = [
    "CHUNKED_IMPLS",
    "CONFIDENCE",
    "EVERY_CONFIG_TARGETS",
    "EXTRA_IMPLS",
    "FLOOR_BLOCK",
    "IMPLS",
    "LIGER_IMPLS",
    "PAIRED_RATIOS",
    "QUICK_ROUNDS",
    "TARGETS",
    "BenchConfig",
    "check_targets",
    "configs_of",
    "describe_device",
    "distillm2_naive_loss",
    "interleaved_times",
    "make_inputs",
    "median_upper_bound",
    "memory_scale",
    "ratios",
    "resolve_kernel",
    "row_name",
    "run_loss_bench",
    "sorted_records",
    "target_lines",
    "write_results",
]

#: The implementations every configuration reports (the issue's ``impl`` values).
IMPLS: tuple[str, ...] = ("askd_chunked", "askd_full", "distillm2_naive", "trl_gkd", "floor")
#: Additional rows: sequence-level ASKD on chunked token log-probs.
EXTRA_IMPLS: tuple[str, ...] = ("askd_seq_chunked",)
#: The chunked peer: rows run when ``liger-kernel`` is importable (see the module docstring).
LIGER_IMPLS: tuple[str, ...] = ("askd_chunked_gkd", "liger_jsd", "liger_jsd_compiled")
#: ``chunked_loss`` kernels the askd-ref rows can run: the eager default and the C row kernel
#: (float32 on CPU).
BenchKernel = Literal["fused", "compiled"]
#: What the driver accepts: a :data:`BenchKernel`, or ``"auto"`` (see :func:`resolve_kernel`).
KernelChoice = Literal["auto", "fused", "compiled"]
#: Rows whose first full-size pass compiles: it runs before the timed passes, as ``compile_s``.
COMPILED_IMPLS: frozenset[str] = frozenset({"liger_jsd_compiled"})

#: Acceptance bounds of the issue, checked at 4096 tokens, vocabulary 32768:
#: (quantity, numerator, denominator) → largest allowed ratio.
TARGETS: dict[tuple[str, str, str], float] = {
    ("peak_mb", "askd_chunked", "distillm2_naive"): 0.25,
    ("peak_mb", "askd_chunked", "trl_gkd"): 0.25,
    ("time_s", "askd_chunked", "trl_gkd"): 1.0,
    ("time_s", "askd_chunked", "askd_full"): 1.25,
    ("time_s", "askd_chunked", "floor"): 1.10,
    ("time_s", "askd_chunked_gkd", "liger_jsd_compiled"): 0.8,
    ("peak_mb", "askd_chunked_gkd", "liger_jsd_compiled"): 1.0,
}
#: The bounds that hold at every configuration of the full grid, not only at 4096 × 32768: close
#: to the projection floor, and faster and smaller than compiled Liger. (The memory bounds against
#: the full-logit rows are for 4096 tokens: at 1024 tokens one chunk is the whole batch.)
EVERY_CONFIG_TARGETS: tuple[tuple[str, str, str], ...] = (
    ("time_s", "askd_chunked", "floor"),
    ("time_s", "askd_chunked_gkd", "liger_jsd_compiled"),
    ("peak_mb", "askd_chunked_gkd", "liger_jsd_compiled"),
)

#: Timed passes per implementation under ``--quick``: three for the fast rows whose ratios
#: (a/e, askd_chunked_gkd/liger_jsd_compiled) are closest to their bounds, one for the
#: full-logit rows and eager Liger (each several times slower).
QUICK_REPEATS: dict[str, int] = {
    "askd_chunked": 3,
    "floor": 3,
    "askd_chunked_gkd": 3,
    "liger_jsd_compiled": 3,
}

#: The full grid: tokens {1024, 4096, 16384} × vocab {32768, 151936}.
FULL_SIZES: tuple[tuple[int, int], ...] = tuple(
    (tokens, vocab) for vocab in (32768, 151936) for tokens in (1024, 4096, 16384)
)
QUICK_SIZES: tuple[tuple[int, int], ...] = ((4096, 32768),)

#: The bounded time ratios that are also measured with their passes interleaved in one process:
#: (numerator, denominator).
PAIRED_RATIOS: tuple[tuple[str, str], ...] = (
    ("askd_chunked", "floor"),
    ("askd_chunked_gkd", "liger_jsd_compiled"),
)
#: Interleaved rounds per configuration under ``--quick`` (the full grid runs none unless asked):
#: five is the fewest for which :func:`median_upper_bound` gives a 95 % bound.
QUICK_ROUNDS: int = 5
#: Confidence of the upper bound of the median per-round ratio.
CONFIDENCE: float = 0.95


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark configuration (identical inputs for every implementation)."""

    tokens: int
    vocab: int
    hidden: int = 512
    seq_len: int = 512
    dtype: str = "float32"
    device: str = "cpu"
    chunk_size: int | None = None
    seed: int = 0
    #: ``chunked_loss``'s kernel in the askd-ref rows: ``"fused"`` (the default, eager torch) or
    #: ``"compiled"`` (the C row kernel, float32 on CPU).
    kernel: BenchKernel = "fused"

    def __post_init__(self) -> None:
        if self.kernel not in get_args(BenchKernel):
            raise ValueError(f"kernel must be 'fused' or 'compiled', got {self.kernel!r}")
        if self.tokens % self.seq_len:
            raise ValueError(f"tokens ({self.tokens}) must be a multiple of seq_len ({self.seq_len})")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype must be 'float32' or 'bfloat16', got {self.dtype!r}")


@dataclasses.dataclass
class Inputs:
    """Hidden states, projections and the batch description shared by every implementation."""

    hs: Tensor  # (tokens, hidden), student, requires grad
    ws: Tensor  # (vocab, hidden), student, requires grad
    ht: Tensor  # (tokens, hidden), teacher
    wt: Tensor  # (vocab, hidden), teacher
    ids: Tensor  # (rows, seq_len) sampled tokens
    mask: Tensor  # (rows, seq_len) all True: every implementation sees the same tokens
    is_tgo: Tensor  # (rows,) alternating TGO / SGO
    quality: Tensor  # (rows,) evenly spread in [0, 1]
    cfg: BenchConfig

    @property
    def rows(self) -> int:
        return int(self.mask.shape[0])


def make_inputs(cfg: BenchConfig) -> Inputs:
    """Seeded inputs: logits h·Wᵀ of unit scale, half TGO and half SGO rows."""
    dev = torch.device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    g = torch.Generator(device="cpu").manual_seed(cfg.seed)
    rows = cfg.tokens // cfg.seq_len

    def randn(*shape: int, scale: float = 1.0) -> Tensor:
        x = torch.randn(*shape, generator=g)
        if scale != 1.0:
            x.mul_(scale)
        return x.to(device=dev, dtype=dtype)

    hs = randn(cfg.tokens, cfg.hidden).requires_grad_()
    ws = randn(cfg.vocab, cfg.hidden, scale=cfg.hidden**-0.5).requires_grad_()
    ht = randn(cfg.tokens, cfg.hidden)
    wt = randn(cfg.vocab, cfg.hidden, scale=cfg.hidden**-0.5)
    ids = torch.randint(0, cfg.vocab, (rows, cfg.seq_len), generator=g).to(dev)
    mask = torch.ones(rows, cfg.seq_len, dtype=torch.bool, device=dev)
    is_tgo = (torch.arange(rows) % 2 == 0).to(dev)
    quality = torch.linspace(0.0, 1.0, rows).to(dev)
    return Inputs(hs, ws, ht, wt, ids, mask, is_tgo, quality, cfg)


# ----------------------------------------------------------------------------------------------
# The implementations: each runs one forward + backward and returns the (detached) loss.
# ----------------------------------------------------------------------------------------------


def _chunked(x: Inputs, method: str) -> Tensor:
    from askd_ref.chunked import chunked_loss

    shape = (x.rows, x.cfg.seq_len, x.cfg.hidden)
    out = chunked_loss(
        method,
        student_hidden=x.hs.view(shape),
        student_weight=x.ws,
        teacher_hidden=x.ht.view(shape),
        teacher_weight=x.wt,
        target_ids=x.ids,
        mask=x.mask,
        is_tgo=x.is_tgo,
        quality=x.quality,
        chunk_size=x.cfg.chunk_size,
        kernel=x.cfg.kernel,
    )
    torch.autograd.backward(out.loss)
    return out.loss.detach()


def _askd_full(x: Inputs) -> Tensor:
    from askd_ref import DistillBatch, compute_loss

    shape = (x.rows, x.cfg.seq_len, x.cfg.vocab)
    student_logits = x.hs @ x.ws.T
    with torch.no_grad():
        teacher_logits = x.ht @ x.wt.T
    batch = DistillBatch(
        mask=x.mask,
        is_tgo=x.is_tgo,
        quality=x.quality,
        student_logp=torch.log_softmax(student_logits.float(), -1).view(shape),
        teacher_logp=torch.log_softmax(teacher_logits.float(), -1).view(shape),
    )
    out = compute_loss("askd-dense", batch)
    torch.autograd.backward(out.loss)
    return out.loss.detach()


def distillm2_naive_loss(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, is_tgo: Tensor, alpha: float = 0.1
) -> Tensor:
    """DistiLLM-2's loss written the way its trainer computes it over full logits.

    Log-softmax of both models over the whole vocabulary (in the logits' dtype, no upcast);
    on *every* row, SKL_α with the log-space mixture ``logsumexp(stack([log α + log p,
    log(1−α) + log q]))`` and SRKL_α with ``logsumexp(stack([log(1−α) + log p, log α +
    sg(log q)]))``; per-sequence token means; SKL averaged over TGO ("chosen") rows plus SRKL
    over SGO ("rejected") rows, α = 0.1 (the released trainer's defaults: ``distillm_v2``,
    ``average_log_prob=True``, β = 1). Ko et al., DistiLLM-2, ICML 2025, ``src/distillm_trainer.py``.

    Args:
        student_logits: ``(rows, seq, vocab)`` with gradient.
        teacher_logits: ``(rows, seq, vocab)``.
        mask: bool ``(rows, seq)``.
        is_tgo: bool ``(rows,)``.
        alpha: the skew α of both terms.

    Returns:
        The scalar loss.

    Example:
        >>> import torch
        >>> z = torch.randn(2, 3, 5)
        >>> float(distillm2_naive_loss(z, z, torch.ones(2, 3, dtype=torch.bool), torch.tensor([True, False])))
        0.0
    """
    vocab_logps = student_logits.log_softmax(-1)
    teacher_logps = teacher_logits.log_softmax(-1)
    log_a, log_1a = math.log(alpha), math.log1p(-alpha)
    skl_mix = torch.logsumexp(torch.stack([teacher_logps + log_a, vocab_logps + log_1a]), dim=0)
    tea_pos_kl = (teacher_logps.exp() * (teacher_logps - skl_mix)).sum(-1)
    srkl_mix = torch.logsumexp(torch.stack([teacher_logps + log_1a, vocab_logps.detach() + log_a]), dim=0)
    ref_pos_kl = (vocab_logps.exp() * (vocab_logps - srkl_mix)).sum(-1)
    m = mask.to(tea_pos_kl.dtype)
    per_seq_skl = (tea_pos_kl * m).sum(-1) / m.sum(-1)
    per_seq_srkl = (ref_pos_kl * m).sum(-1) / m.sum(-1)
    return per_seq_skl[is_tgo].mean() + per_seq_srkl[~is_tgo].mean()


def _distillm2(x: Inputs) -> Tensor:
    shape = (x.rows, x.cfg.seq_len, x.cfg.vocab)
    student_logits = (x.hs @ x.ws.T).view(shape)
    with torch.no_grad():
        teacher_logits = (x.ht @ x.wt.T).view(shape)
    loss = distillm2_naive_loss(student_logits, teacher_logits, x.mask, x.is_tgo)
    torch.autograd.backward(loss)
    return loss.detach()


def _trl_generalized_jsd() -> Callable[..., Tensor]:
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gkd import GKDTrainer
    fn: Callable[..., Tensor] = GKDTrainer.generalized_jsd_loss
    return fn


def _trl_gkd(x: Inputs) -> Tensor:
    shape = (x.rows, x.cfg.seq_len, x.cfg.vocab)
    student_logits = (x.hs @ x.ws.T).view(shape)
    with torch.no_grad():
        teacher_logits = (x.ht @ x.wt.T).view(shape)
    labels = torch.where(x.mask, x.ids, -100)
    loss = _trl_generalized_jsd()(student_logits, teacher_logits, labels=labels, beta=0.5)
    torch.autograd.backward(loss)
    return loss.detach()


def liger_available() -> bool:
    """Whether ``liger_kernel.chunked_loss`` imports here (the Liger rows run only then)."""
    try:
        importlib.import_module("liger_kernel.chunked_loss")
    except Exception:  # any import failure (missing, triton, ABI) means "no Liger"
        return False
    return True


def liger_jsd_loss(x: Inputs, *, compiled: bool, beta: float = 0.5) -> Tensor:
    """Liger's ``LigerFusedLinearJSDLoss`` on the benchmark inputs: pure JSD_β, τ = 1 (no backward).

    ``weight_hard_loss=0, weight_soft_loss=1`` (Liger's defaults 0.5 / 0.5 would add half a
    cross-entropy and halve the JSD), labels −100 where ``mask`` is False, chunk size
    ``cfg.chunk_size`` or Liger's 1024.
    """
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss  # type: ignore[import-untyped, import-not-found, unused-ignore]

    loss_fn = LigerFusedLinearJSDLoss(
        weight_hard_loss=0.0,
        weight_soft_loss=1.0,
        beta=beta,
        ignore_index=-100,
        temperature=1.0,
        compiled=compiled,
        chunk_size=x.cfg.chunk_size or 1024,
    )
    labels = torch.where(x.mask, x.ids, -100).reshape(-1)
    loss: Tensor = loss_fn(x.hs, x.ws, x.ht, x.wt, labels)
    return loss


def _liger(x: Inputs, compiled: bool) -> Tensor:
    loss = liger_jsd_loss(x, compiled=compiled)
    torch.autograd.backward(loss)
    return loss.detach()


#: The floor projects at most this many tokens at a time. At ≤ 4096 tokens it is one block (the
#: whole batch); beyond, blocks keep its three ``(block × vocab)`` tensors within memory
#: (16384 × 151936 in one block would need about 30 GB) while each matmul stays large enough to
#: run at full speed.
FLOOR_BLOCK = 4096


def _floor(x: Inputs, block: int = FLOOR_BLOCK) -> Tensor:
    for start in range(0, x.cfg.tokens, block):
        rows = slice(start, start + block)
        student_logits = x.hs[rows] @ x.ws.T  # (block, vocab)
        with torch.no_grad():
            teacher_logits = x.ht[rows] @ x.wt.T
        torch.autograd.backward(student_logits, teacher_logits)  # the cheapest use of both projections
        del student_logits, teacher_logits
    return torch.zeros(())


STEPS: dict[str, Callable[[Inputs], Tensor]] = {
    "askd_chunked": lambda x: _chunked(x, "askd-dense"),
    "askd_full": _askd_full,
    "distillm2_naive": _distillm2,
    "trl_gkd": _trl_gkd,
    "floor": _floor,
    "askd_seq_chunked": lambda x: _chunked(x, "askd"),
    "askd_chunked_gkd": lambda x: _chunked(x, "gkd"),
    "liger_jsd": lambda x: _liger(x, False),
    "liger_jsd_compiled": lambda x: _liger(x, True),
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _clear(x: Inputs) -> None:
    x.hs.grad = None
    x.ws.grad = None
    gc.collect()


def _import_all() -> None:
    """Import what every implementation needs, so each worker has the same baseline memory."""
    importlib.import_module("askd_ref.chunked")
    importlib.import_module("askd_ref.losses")

    _trl_generalized_jsd()
    if liger_available():
        importlib.import_module("liger_kernel.chunked_loss")


def check_liger_value(x: Inputs, liger_loss: Tensor) -> float:
    """Raise unless ``liger_loss`` equals ``chunked_loss("gkd")`` on ``x``; returns |difference|.

    Tolerance (:mod:`askd_ref.porting.tolerances`): float32 inputs, the float32 value tolerance;
    bfloat16 inputs, the bf16 end-to-end one (``value_e2e``): Liger projects and takes the
    log-softmax in the inputs' dtype, askd-ref projects in float32, so in bf16 Liger's loss
    carries bf16 log-softmax rounding (measured on CPU at 64 tokens × vocab 97: 2.3 % relative)
    that askd-ref's does not.
    """
    from askd_ref.chunked import chunked_loss
    from askd_ref.porting.tolerances import assert_close, tolerance

    shape = (x.rows, x.cfg.seq_len, x.cfg.hidden)
    with torch.no_grad():
        ref = chunked_loss(
            "gkd",
            student_hidden=x.hs.view(shape),
            student_weight=x.ws,
            teacher_hidden=x.ht.view(shape),
            teacher_weight=x.wt,
            target_ids=x.ids,
            mask=x.mask,
            is_tgo=x.is_tgo,
            chunk_size=x.cfg.chunk_size,
        ).loss
    got = liger_loss.detach().to(ref.dtype)
    tol = tolerance(torch.float32) if x.cfg.dtype == "float32" else tolerance(torch.bfloat16, "value_e2e")
    assert_close(got, ref, tol, what="Liger JSD vs askd-ref gkd loss")
    return float((got - ref).abs())


# ----------------------------------------------------------------------------------------------
# Workers (run in fresh subprocesses by the driver).
# ----------------------------------------------------------------------------------------------


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak RSS), in MiB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover - non-Linux


def worker_run(cfg: BenchConfig, impl: str, repeats: int) -> dict[str, Any]:
    """In this (fresh) process: peak memory of the first pass and the times of ``repeats`` passes."""
    _import_all()
    small = dataclasses.replace(cfg, tokens=cfg.seq_len, vocab=min(cfg.vocab, 1024))
    warm = make_inputs(small)
    warm_loss = STEPS[impl](warm)  # first-call initialisation (kernels, thread pools), not measured
    extra: dict[str, Any] = {}
    if impl.startswith("liger"):  # the peer computes askd-ref's gkd loss, or nothing is timed
        extra["value_check_abs_diff"] = check_liger_value(make_inputs(small), warm_loss)
    del warm
    gc.collect()
    cuda = cfg.device.startswith("cuda")
    x = make_inputs(cfg)
    if impl in COMPILED_IMPLS:  # compile for the full-size shapes; not a timed pass
        _sync(cfg.device)
        t0 = time.perf_counter()
        STEPS[impl](x)
        _sync(cfg.device)
        extra["first_pass_s"] = time.perf_counter() - t0
        _clear(x)
        _reset_peak()
    if cuda:
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
    else:
        base = _status_mb("VmRSS")
    times: list[float] = []
    peak = math.nan
    for i in range(repeats):
        _clear(x)
        _sync(cfg.device)
        t0 = time.perf_counter()
        STEPS[impl](x)
        _sync(cfg.device)
        times.append(time.perf_counter() - t0)
        if i == 0:  # peak RSS of this process, or peak allocated GPU memory
            peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _status_mb("VmHWM")
    if "first_pass_s" in extra:
        extra["compile_s"] = extra["first_pass_s"] - statistics.median(times)
    return {"times_s": times, "peak_mb": peak, "base_mb": base, **extra}


def _reset_peak() -> None:
    """Forget the peak memory so far (compilation), so the timed passes report their own peak.

    CPU: writing ``5`` to ``/proc/self/clear_refs`` resets ``VmHWM`` (Linux ≥ 4.0); GPU:
    :func:`torch.cuda.reset_peak_memory_stats` (done by the caller).
    """
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:  # pragma: no cover - non-Linux: the peak then includes compilation
        pass


def row_name(impl: str, kernel: str, primary: str) -> str:
    """The name of an askd-ref row run with ``kernel``: plain for the ``primary`` kernel, else
    e.g. ``askd_chunked[compiled]``."""
    return impl if kernel == primary else f"{impl}[{kernel}]"


def interleaved_times(
    cfg: BenchConfig, rounds: int, kernels: Sequence[BenchKernel] | None = None, liger: bool = True
) -> dict[str, Any]:
    """The bounded time ratios of :data:`PAIRED_RATIOS` at ``cfg``, their passes interleaved in
    this process.

    Separate workers (:func:`worker_run`) keep peak memory apart but run the rows they compare a
    minute or more apart, while a shared machine's speed drifts by 10–25 % over minutes. Here the
    rows run on the same inputs, one pass each per round, the order reversed every other round;
    round 0 warms up (and compiles Liger at the full-size shapes) and is not kept. The two passes
    of a round run seconds apart, so the median of the per-round ratios (``paired``) is little
    moved by drift; :func:`median_upper_bound` gives its distribution-free upper confidence bound
    at :data:`CONFIDENCE` (``paired_upper``, ``None`` below 5 rounds), and a bound counts as
    ``shown`` when that is within it (treating rounds as independent draws). ``value`` is the
    ratio of the rows' median times and ``met`` compares it with the bound. Peak memory is not
    measured (one process holds every row's buffers).

    ``kernels`` (default ``(cfg.kernel,)``): the askd-ref rows run once per kernel, named by
    :func:`row_name` with the first as the plain name. ``liger``: also the Liger ratio (its loss
    is checked equal to askd-ref's ``gkd`` first); ignored when liger-kernel does not import.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    kernels = tuple(kernels) if kernels is not None else (cfg.kernel,)
    if not kernels or any(k not in get_args(BenchKernel) for k in kernels):
        raise ValueError(f"kernels must be some of {get_args(BenchKernel)}, got {kernels!r}")
    _import_all()
    x = make_inputs(cfg)
    # The same tensors, with the kernel of each askd-ref row in its configuration.
    xs = {k: dataclasses.replace(x, cfg=dataclasses.replace(cfg, kernel=k)) for k in kernels}
    steps: dict[str, Callable[[], Any]] = {}
    pairs: list[tuple[str, str, str]] = []  # (row, denominator, the row's implementation)
    with_liger = liger and liger_available()
    for num, den in PAIRED_RATIOS:
        if den.startswith("liger") and not with_liger:
            continue
        if den.startswith("liger"):
            small = make_inputs(dataclasses.replace(cfg, tokens=cfg.seq_len, vocab=min(cfg.vocab, 1024)))
            check_liger_value(small, STEPS[den](small))
        for k, xk in xs.items():
            name = row_name(num, k, kernels[0])
            steps[name] = functools.partial(STEPS[num], xk)
            pairs.append((name, den, num))
        steps[den] = functools.partial(STEPS[den], x)
    impls = list(steps)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    first: dict[str, float] = {}
    for round_ in range(rounds + 1):
        for impl in impls if round_ % 2 else reversed(impls):
            _clear(x)
            _sync(cfg.device)
            t0 = time.perf_counter()
            steps[impl]()
            _sync(cfg.device)
            seconds = time.perf_counter() - t0
            if round_:
                times[impl].append(seconds)
            else:
                first[impl] = seconds
    medians = {impl: statistics.median(ts) for impl, ts in times.items()}
    result: dict[str, dict[str, Any]] = {}
    for name, den, num in pairs:
        bound = TARGETS[("time_s", num, den)]
        value = medians[name] / medians[den]
        per_round = [a / b for a, b in zip(times[name], times[den], strict=True)]
        paired = statistics.median(per_round)
        upper = median_upper_bound(per_round, CONFIDENCE)
        result[f"{name}/{den}"] = {
            "value": value,
            "paired": paired,
            "paired_upper": upper,
            "confidence": CONFIDENCE,
            "bound": bound,
            "met": value <= bound,
            "shown": upper is not None and upper <= bound,
        }
    return {
        "tokens": cfg.tokens,
        "vocab": cfg.vocab,
        "kernels": list(kernels),
        "rounds": rounds,
        "times_s": times,
        "warmup_s": first,
        "ratios": result,
    }


def _worker_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m askd_ref.bench.loss")
    parser.add_argument("--config", required=True, help="BenchConfig as JSON")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--impl", choices=sorted(STEPS))
    what.add_argument("--interleaved", type=int, metavar="ROUNDS", help="interleaved_times rounds")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-liger", action="store_true", help="with --interleaved: no Liger ratio")
    args = parser.parse_args(argv)
    cfg = BenchConfig(**json.loads(args.config))
    if args.interleaved is not None:
        result = interleaved_times(cfg, args.interleaved, liger=not args.no_liger)
    else:
        result = worker_run(cfg, args.impl, args.repeats)
    print(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------------------------


def _spawn(cfg: BenchConfig, impl: str, repeats: int, timeout: float) -> dict[str, Any]:
    """:func:`worker_run` of ``impl`` with ``repeats`` passes, in a fresh worker."""
    return _spawn_worker(cfg, ["--impl", impl, "--repeats", str(repeats)], impl, timeout)


def _spawn_interleaved(cfg: BenchConfig, rounds: int, liger: bool, timeout: float) -> dict[str, Any]:
    """:func:`interleaved_times` with ``rounds`` rounds, in a fresh worker."""
    args = ["--interleaved", str(rounds), *([] if liger else ["--no-liger"])]
    return _spawn_worker(cfg, args, "interleaved", timeout)


def _spawn_worker(cfg: BenchConfig, args: list[str], impl: str, timeout: float) -> dict[str, Any]:
    config = json.dumps(dataclasses.asdict(cfg))
    cmd = [sys.executable, "-m", "askd_ref.bench.loss", "--config", config, *args]
    env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark worker {impl} at {cfg.tokens}x{cfg.vocab} failed with exit code "
            f"{proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _available_mb() -> float:
    """MemAvailable from /proc/meminfo (Linux), in MiB."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - non-Linux
        pass
    return math.inf  # pragma: no cover


def ratios(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """askd_chunked / X for time and peak memory, per configuration ``"<tokens>x<vocab>"``."""
    out: dict[str, dict[str, float]] = {}
    by_key: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((r["tokens"], r["vocab"]), {})[r["impl"]] = r
    for (tokens, vocab), rows in sorted(by_key.items()):
        a = rows.get("askd_chunked")
        if a is None:
            continue
        entry: dict[str, float] = {}
        for other in IMPLS[1:]:
            if other in rows:
                entry[f"time a/{other}"] = a["time_s"] / rows[other]["time_s"]
                entry[f"memory a/{other}"] = a["peak_mb"] / rows[other]["peak_mb"]
        out[f"{tokens}x{vocab}"] = entry
    return out


def median_upper_bound(values: Sequence[float], confidence: float = 0.95) -> float | None:
    """A distribution-free upper confidence bound for the median of i.i.d. ``values``.

    With the values sorted, x₍₁₎ ≤ … ≤ x₍ₙ₎, it is x₍ₖ₎ for the smallest k with
    P(Bin(n, ½) ≤ k − 1) ≥ ``confidence``: the median m exceeds x₍ₖ₎ only if at least k values
    fall below m, which for continuous values has probability P(Bin(n, ½) ≥ k) ≤ 1 − confidence
    whatever their distribution (the one-sided sign-test interval). ``None`` when n is too small
    for the confidence (n < 5 at 0.95: even x₍ₙ₎ is exceeded by the median with probability 2⁻ⁿ).

    The benchmark scripts apply it to per-round time ratios, whose two passes ran seconds apart:
    "a/e ≤ 1.10" is shown when this bound of the median per-round ratio is within 1.10.

    Example:
        >>> median_upper_bound([1.0, 2.0, 3.0, 4.0, 5.0])  # n = 5: the largest, at 1 − 2⁻⁵
        5.0
        >>> median_upper_bound([float(v) for v in range(1, 16)])  # the 12th: P(Bin(15, ½) ≤ 11) = 0.982
        12.0
        >>> median_upper_bound([1.0, 2.0, 3.0]) is None
        True
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a probability in (0, 1), got {confidence}")
    xs = sorted(values)
    n = len(xs)
    below = 0  # Σ_{i < k} C(n, i)
    for k in range(1, n + 1):
        below += math.comb(n, k - 1)
        if below / 2**n >= confidence:
            return xs[k - 1]
    return None


def check_targets(
    records: Sequence[dict[str, Any]],
    tokens: int = 4096,
    vocab: int = 32768,
    interleaved: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The acceptance ratios at (tokens, vocab): ratio, bound, met. Every bound of
    :data:`TARGETS` at 4096 × 32768, those of :data:`EVERY_CONFIG_TARGETS` elsewhere.

    ``value`` is the ratio of the records' (separate workers') numbers, unless ``interleaved``
    (an :func:`interleaved_times` result at this configuration) has the ratio: then it is the
    median per-round ratio, with ``upper`` (its upper confidence bound, or ``None``), ``shown``,
    ``rounds`` and ``workers_value`` (the separate workers' ratio) beside it. ``met``: value ≤ bound.
    """
    rows = {r["impl"]: r for r in records if r["tokens"] == tokens and r["vocab"] == vocab}
    keys = TARGETS if (tokens, vocab) == (4096, 32768) else EVERY_CONFIG_TARGETS
    paired = (interleaved or {}).get("ratios", {})
    result = []
    for quantity, num, den in keys:
        bound = TARGETS[(quantity, num, den)]
        if num in rows and den in rows:
            ratio = rows[num][quantity] / rows[den][quantity]
            check: dict[str, Any] = {"quantity": quantity, "ratio": f"{num}/{den}", "value": ratio}
            rounds = paired.get(f"{num}/{den}") if quantity == "time_s" else None
            if rounds is not None:
                check.update(
                    value=rounds["paired"],
                    method="interleaved",
                    rounds=(interleaved or {}).get("rounds"),
                    upper=rounds["paired_upper"],
                    confidence=rounds["confidence"],
                    shown=rounds["shown"],
                    workers_value=ratio,
                )
            check.update(bound=bound, met=check["value"] <= bound)
            result.append(check)
    return result


def sorted_records(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` in table order: configurations smallest first, then the implementations' order."""
    order = {impl: k for k, impl in enumerate((*IMPLS, *EXTRA_IMPLS, *LIGER_IMPLS))}
    return sorted(records, key=lambda r: (r["tokens"] * r["vocab"], r["tokens"], order[r["impl"]]))


def configs_of(records: Sequence[dict[str, Any]]) -> list[tuple[int, int]]:
    """The (tokens, vocab) configurations present in ``records``, smallest first."""
    return sorted({(r["tokens"], r["vocab"]) for r in records}, key=lambda c: (c[0] * c[1], c))


def _markdown(
    records: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, Any]],
    interleaved: dict[str, dict[str, Any]] | None = None,
) -> str:
    lines = [
        "| tokens | vocab | impl | time (s) | peak (MB) | time a/x | memory a/x |",
        "|---:|---:|---|---:|---:|---:|---:|",
    ]
    by_key: dict[tuple[int, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        by_key.setdefault((r["tokens"], r["vocab"]), {})[r["impl"]] = r
    notes: list[str] = []
    for (tokens, vocab), rows in sorted(by_key.items()):
        for impl in (*IMPLS, *EXTRA_IMPLS, *LIGER_IMPLS):
            if impl not in rows:
                continue
            ref = "askd_chunked_gkd" if impl.startswith("liger") else "askd_chunked"
            a = rows.get(ref)
            r = rows[impl]
            rt = f"{a['time_s'] / r['time_s']:.2f}" if a and impl != ref else ""
            rm = f"{a['peak_mb'] / r['peak_mb']:.2f}" if a and impl != ref else ""
            lines.append(
                f"| {tokens} | {vocab} | {impl} | {r['time_s']:.2f} | {r['peak_mb']:.0f} | {rt} | {rm} |"
            )
            if "compile_s" in r:
                notes.append(
                    f"{tokens}x{vocab} {impl}: first full-size pass {r['compile_s']:+.1f} s against the "
                    "median pass (compilation at the full-size shapes), not in time"
                )
    for s in skipped:
        lines.append(f"| {s['tokens']} | {s['vocab']} | {s['impl']} | — | — | not run: {s['reason']} | |")
    lines.append("")
    lines.append("a = askd_chunked; for the liger_* rows a = askd_chunked_gkd (the same loss as Liger's).")
    kernels = sorted({r.get("kernel", "fused") for r in records})
    lines.append(f"askd-ref's chunked rows ran `chunked_loss(kernel=...)` with kernel {', '.join(kernels)}.")
    lines.extend(f"- {n}" for n in notes)
    if interleaved:
        lines += [
            "",
            "Bounded time ratios with the passes interleaved in one process (median of the per-round",
            f"ratios, its {CONFIDENCE:.0%} upper confidence bound, the ratio of the median times):",
            "",
            "| tokens | vocab | ratio | rounds | median per-round | upper bound | ratio of medians | bound |",
            "|---:|---:|---|---:|---:|---:|---:|---:|",
        ]
        for result in sorted(interleaved.values(), key=lambda r: (r["tokens"] * r["vocab"], r["tokens"])):
            for name, q in result["ratios"].items():
                upper = "—" if q["paired_upper"] is None else f"{q['paired_upper']:.3f}"
                lines.append(
                    f"| {result['tokens']} | {result['vocab']} | {name} | {result['rounds']} | "
                    f"{q['paired']:.3f} | {upper} | {q['value']:.3f} | {q['bound']} |"
                )
    return "\n".join(lines) + "\n"


def _plot(records: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    """Bars per implementation: one column per configuration, time on top, peak memory below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(r["tokens"], r["vocab"]) for r in records})
    order = [i for i in (*IMPLS, *EXTRA_IMPLS, *LIGER_IMPLS) if any(r["impl"] == i for r in records)]
    colours = {impl: f"C{k}" for k, impl in enumerate(order)}
    width = max(3.6 * len(keys) + 1.0, 6.0)  # room for the title with one configuration
    fig, axes = plt.subplots(2, len(keys), figsize=(width, 6.6), squeeze=False)
    quantities = (("time_s", "forward + backward (s)", "{:.1f}"), ("peak_mb", "peak memory (MB)", "{:.0f}"))
    for col, key in enumerate(keys):
        rows = {r["impl"]: r for r in records if (r["tokens"], r["vocab"]) == key}
        names = [i for i in order if i in rows]
        for row, (quantity, label, fmt) in enumerate(quantities):
            ax = axes[row][col]
            values = [rows[i][quantity] for i in names]
            bars = ax.bar(range(len(names)), values, color=[colours[i] for i in names])
            for bar, value in zip(bars, values, strict=True):
                ax.annotate(
                    fmt.format(value),
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                )
            ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=7)
            ax.margins(y=0.15)
            ax.grid(axis="y", alpha=0.3)
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(f"{key[0]} tokens, vocab {key[1]}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    from askd_ref.io import atomic_open

    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def run_loss_bench(
    out_dir: Path,
    *,
    quick: bool = False,
    sizes: Sequence[tuple[int, int]] | None = None,
    hidden: int = 512,
    seq_len: int = 512,
    device: str = "cpu",
    dtype: str = "float32",
    repeats: int | None = None,
    chunk_size: int | None = None,
    kernel: KernelChoice = "auto",
    extras: bool = True,
    liger: bool | None = None,
    only: Sequence[str] | None = None,
    rounds: int | None = None,
    progress: bool = True,
    memory_fraction: float = 0.7,
    worker_timeout: float = 5400.0,
) -> list[dict[str, Any]]:
    """Run the benchmark and write ``loss-bench.json`` (+ details, table and plot) into ``out_dir``.

    ``sizes`` are (tokens, vocab) pairs (default: the quick or the full set). Configurations run
    smallest first; an implementation whose predicted peak memory (its
    measured peak at the largest size run so far, scaled by tokens × vocab) exceeds
    ``memory_fraction`` of the memory available now is not run, and the details file says so.
    ``liger``: run the Liger rows (:data:`LIGER_IMPLS`); ``None`` (default): when
    ``liger-kernel`` is importable; ``True`` without it is an error. ``only``: run just these
    implementations (names of :data:`STEPS`), in the usual order. ``kernel``: the chunked
    kernel of the askd-ref rows (see :func:`resolve_kernel`; the one run is in every record).
    ``rounds``: after a configuration's workers, measure the bounded time ratios of
    :data:`PAIRED_RATIOS` with :func:`interleaved_times` over this many rounds in one more worker
    (default :data:`QUICK_ROUNDS` under ``quick``, else 0: none); the time checks then use the
    median per-round ratio, and the details file keeps every pass.
    """
    from tqdm import tqdm

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    chosen, why = resolve_kernel(kernel, device)
    sizes = (QUICK_SIZES if quick else FULL_SIZES) if sizes is None else sizes
    rounds = (QUICK_ROUNDS if quick else 0) if rounds is None else rounds
    for name, value, least in (("repeats", repeats, 1), ("rounds", rounds, 0)):
        if value is not None and value < least:
            raise ValueError(f"{name} must be >= {least}, got {value}")
    have_liger = liger_available()
    impls = _select_impls(extras, liger, only, have_liger)
    reps = {impl: repeats or (QUICK_REPEATS.get(impl, 1) if quick else 3) for impl in impls}
    # The interleaved worker measures the ratios whose two rows this run has.
    paired = [(n, d) for n, d in PAIRED_RATIOS if n in impls and d in impls] if rounds else []
    device_name = describe_device(device)
    records: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    details: dict[str, Any] = {
        "configs": [],
        "repeats": reps,
        "kernel": {"asked": kernel, "ran": chosen, "why": why},
        "environment": _environment(device),
    }
    if paired:
        details["interleaved"] = {}
    seen: dict[str, tuple[int, float, float]] = {}  # impl → (memory_scale, peak_mb, base_mb)

    def budget() -> float:  # MiB a worker may use now
        return _available_mb() * memory_fraction if device == "cpu" else math.inf

    steps = len(sizes) * (len(impls) + bool(paired))
    with tqdm(total=steps, desc="askd bench loss", unit="run", disable=not progress) as bar:
        for tokens, vocab in sorted(sizes, key=lambda s: s[0] * s[1]):
            cfg = BenchConfig(tokens, vocab, hidden, seq_len, dtype, device, chunk_size, kernel=chosen)
            results: dict[str, dict[str, Any]] = {}
            for impl in impls:
                bar.set_postfix_str(f"{tokens}x{vocab} {impl}")
                reason = _over_budget(seen.get(impl), memory_scale(impl, tokens, vocab), budget())
                if reason is not None:
                    skipped.append({"tokens": tokens, "vocab": vocab, "impl": impl, "reason": reason})
                    bar.update(1)
                    continue
                result = _spawn(cfg, impl, reps[impl], worker_timeout)
                results[impl] = result
                seen[impl] = (memory_scale(impl, tokens, vocab), result["peak_mb"], result["base_mb"])
                records.append(_record(cfg, impl, result, device_name))
                bar.update(1)
            details["configs"].append({"config": dataclasses.asdict(cfg), "results": results})
            if paired:
                bar.set_postfix_str(f"{tokens}x{vocab} interleaved x{rounds}")
                _interleave(cfg, paired, results, rounds, budget(), worker_timeout, details, skipped)
                bar.update(1)
    details["liger"] = (
        "run"
        if any(r["impl"] in LIGER_IMPLS for r in records)
        else ("not run: liger_kernel.chunked_loss does not import" if not have_liger else "not run: disabled")
    )
    title = f"askd bench loss on {device_name}\n{dtype}, hidden {hidden}, askd-ref kernel {chosen}"
    return write_results(Path(out_dir), records, skipped, details, title)


def write_results(
    out_dir: Path,
    records: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, Any]],
    details: dict[str, Any],
    title: str,
) -> list[dict[str, Any]]:
    """Sort ``records``, add the skipped rows, ratios and target checks to ``details``, and write
    ``loss-bench.json``, ``loss-bench-details.json``, ``loss-bench.md`` and ``loss-bench.png``
    into ``out_dir``, each atomically. Returns the sorted records."""
    from askd_ref.io import atomic_write_json, atomic_write_text

    records = sorted_records(records)
    details["skipped"] = list(skipped)
    details["ratios"] = ratios(records)
    paired = details.get("interleaved", {})
    details["targets_4096x32768"] = check_targets(records, interleaved=paired.get("4096x32768"))
    details["targets"] = {
        f"{t}x{v}": check_targets(records, t, v, paired.get(f"{t}x{v}")) for t, v in configs_of(records)
    }
    atomic_write_json(out_dir / "loss-bench.json", records)
    atomic_write_json(out_dir / "loss-bench-details.json", details)
    atomic_write_text(out_dir / "loss-bench.md", _markdown(records, skipped, paired))
    _plot(records, out_dir / "loss-bench.png", title)
    return records


def target_lines(
    records: Sequence[dict[str, Any]], interleaved: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    """One printed line per acceptance check of every configuration in ``records``
    (``interleaved``: :func:`interleaved_times` results by ``"<tokens>x<vocab>"``)."""
    lines = []
    for tokens, vocab in configs_of(records):
        paired = (interleaved or {}).get(f"{tokens}x{vocab}")
        for check in check_targets(records, tokens, vocab, paired):
            verdict = "met" if check["met"] else "NOT met"
            line = (
                f"{tokens}x{vocab} {check['quantity']:8s} {check['ratio']:38s} {check['value']:.3f} "
                f"(bound {check['bound']}): {verdict}"
            )
            if check.get("method") == "interleaved":
                if check["upper"] is None:
                    upper = "too few rounds for an upper bound"
                else:
                    holds = "within" if check["shown"] else "NOT within"
                    upper = f"{check['confidence']:.0%} upper bound {check['upper']:.3f}, {holds} the bound"
                line += (
                    f"; median of {check['rounds']} interleaved per-round ratios, {upper}; "
                    f"separate workers {check['workers_value']:.3f}"
                )
            lines.append(line)
    return lines


def _interleave(
    cfg: BenchConfig,
    paired: Sequence[tuple[str, str]],
    results: dict[str, dict[str, Any]],
    rounds: int,
    budget: float,
    timeout: float,
    details: dict[str, Any],
    skipped: list[dict[str, Any]],
) -> None:
    """The interleaved worker of one configuration, its result into ``details["interleaved"]``;
    or, into ``skipped``, why it cannot run: a row it compares was not run, or the rows it holds
    at once (their peaks above the baseline, added) would not fit ``budget`` MiB."""
    involved = {i for pair in paired for i in pair}
    reason = None
    if not involved <= set(results):
        reason = "a row it compares was not run"
    else:
        need = max(results[i]["base_mb"] for i in involved)
        need += sum(results[i]["peak_mb"] - results[i]["base_mb"] for i in involved)
        if need > budget:
            reason = f"predicted peak {need / 1024:.2f} GiB > {budget / 1024:.2f} GiB"
    if reason is not None:
        skipped.append(
            {"tokens": cfg.tokens, "vocab": cfg.vocab, "impl": "interleaved ratios", "reason": reason}
        )
        return
    with_liger = any(d.startswith("liger") for _, d in paired)
    details["interleaved"][f"{cfg.tokens}x{cfg.vocab}"] = _spawn_interleaved(cfg, rounds, with_liger, timeout)


def resolve_kernel(kernel: str, device: str) -> tuple[BenchKernel, str]:
    """The chunked kernel the askd-ref rows run with, and why.

    ``"auto"`` (the driver's default) picks ``"compiled"`` on CPU where the C kernel builds
    (:func:`askd_ref.compiled.available`), else ``"fused"``: the benchmark measures the fastest
    kernel the machine runs, and says which. ``chunked_loss``'s own default is ``"fused"``, the
    eager reference the compiled kernel is tested against. ``"compiled"`` off CPU or without a
    working C compiler is an error.

    >>> resolve_kernel("fused", "cpu")
    ('fused', 'asked for')
    >>> resolve_kernel("auto", "cuda")
    ('fused', 'auto: the compiled kernel runs on CPU only')
    """
    from askd_ref import compiled

    if kernel not in get_args(KernelChoice):
        raise ValueError(f"kernel must be one of {get_args(KernelChoice)}, got {kernel!r}")
    if kernel == "fused":
        return "fused", "asked for"
    asked = kernel == "compiled"
    if not device.startswith("cpu"):
        if asked:
            raise ValueError(f"kernel 'compiled' runs on CPU only, got device {device!r}")
        return "fused", "auto: the compiled kernel runs on CPU only"
    try:
        compiled.load()
    except compiled.CompiledKernelUnavailable as exc:
        if asked:
            raise ValueError(str(exc)) from exc
        return "fused", f"auto: the compiled kernel is unavailable ({str(exc).splitlines()[0]})"
    return "compiled", "asked for" if asked else "auto: the compiled kernel builds and runs here"


def _select_impls(
    extras: bool, liger: bool | None, only: Sequence[str] | None, have_liger: bool
) -> list[str]:
    """The implementations to run, in order (``only`` restricts them; Liger rows when asked or importable)."""
    # The floor runs right after askd_chunked, so the ratio a/e sees the same machine state.
    impls = ["askd_chunked", "floor", *(i for i in IMPLS if i not in ("askd_chunked", "floor"))]
    impls += list(EXTRA_IMPLS) if extras else []
    if liger and not have_liger:
        raise ValueError(
            "liger=True but liger_kernel.chunked_loss does not import (pip install --no-deps liger-kernel)"
        )
    impls += list(LIGER_IMPLS) if (have_liger if liger is None else liger) else []
    if only is not None:
        unknown = sorted(set(only) - set(STEPS))
        if unknown:
            raise ValueError(f"unknown implementation(s) {unknown}; expected some of {sorted(STEPS)}")
        if any(i.startswith("liger") for i in only) and not have_liger:
            raise ValueError("Liger rows requested but liger_kernel.chunked_loss does not import")
        impls = [i for i in ("askd_chunked", "floor", *STEPS) if i in only]
        impls = list(dict.fromkeys(impls))
    return impls


#: Rows that hold a bounded number of token rows of logits at a time: askd-ref's chunked path
#: (a chunk of at most ``MAX_CHUNK_SIZE`` tokens) and Liger (its own chunks). Their peak above the baseline
#: grows with the vocabulary, not with the number of tokens.
CHUNKED_IMPLS: frozenset[str] = frozenset({"askd_chunked", "askd_seq_chunked", *LIGER_IMPLS})


def memory_scale(impl: str, tokens: int, vocab: int) -> int:
    """What an implementation's peak memory above the baseline grows with: the logit elements it
    holds at once (tokens × vocab for the full-logit rows, one floor block × vocab for the floor,
    the largest default chunk × vocab for the chunked rows)."""
    from askd_ref.chunked import MAX_CHUNK_SIZE

    if impl in CHUNKED_IMPLS:
        return min(tokens, MAX_CHUNK_SIZE) * vocab
    if impl == "floor":
        return min(tokens, FLOOR_BLOCK) * vocab
    return tokens * vocab


def _over_budget(seen: tuple[int, float, float] | None, size: int, budget: float) -> str | None:
    """Why a run is skipped: its peak memory predicted from the largest run so far (``seen`` =
    (memory scale, peak MiB, base MiB)), scaled to ``size`` (:func:`memory_scale`), exceeds ``budget``."""
    if seen is None:
        return None
    size0, peak0, base0 = seen
    predicted = base0 + (peak0 - base0) * size / size0
    if predicted > budget:
        return f"predicted peak {predicted / 1024:.1f} GiB > {budget / 1024:.1f} GiB"
    return None


def _record(cfg: BenchConfig, impl: str, result: dict[str, Any], device_name: str) -> dict[str, Any]:
    """One row of ``loss-bench.json``: the median time and the peak memory of one run."""
    return {
        "tokens": cfg.tokens,
        "hidden": cfg.hidden,
        "vocab": cfg.vocab,
        "impl": impl,
        "time_s": statistics.median(result["times_s"]),
        "peak_mb": result["peak_mb"],
        "device": device_name,
        "kernel": cfg.kernel,
        **({"compile_s": result["compile_s"]} if "compile_s" in result else {}),
    }


def describe_device(device: str) -> str:
    """The GPU name, or the CPU model name, of ``device`` (for benchmark reports)."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:  # pragma: no cover - non-Linux
        pass
    return f"cpu: {cpu} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _environment(device: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import trl

    try:
        liger_version = version("liger-kernel")
    except PackageNotFoundError:
        liger_version = "not installed"
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "trl": trl.__version__,
        "liger_kernel": liger_version,
        "load_average_1_5_15": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "device": describe_device(device),
        "platform": platform.platform(),
    }


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
