"""Memory-efficient losses from hidden states: the output projection and the loss, chunk by chunk.

At LLM vocabulary sizes the (tokens × vocab) logits, not the model, decide whether distillation
fits in memory. :func:`chunked_loss` takes the student's and teacher's *final hidden states* and
their output-projection weights (``lm_head``) and computes every method of
:func:`~askd_ref.compute_loss` without ever holding (tokens × vocab) logits for the whole batch:

* **Packing.** Only the positions a method trains on (``mask`` True, on the rows the method
  uses) are gathered into one packed list of tokens, grouped by the divergence they need.
  Masked positions cost nothing.
* **Chunks.** The packed tokens are projected ``chunk_size`` at a time; a chunk's logits live in
  at most two reusable ``(chunk_size, vocab)`` buffers (student and teacher) and are discarded
  before the next chunk. The element-wise work on them runs over blocks of a few rows that stay
  in cache, with two block-sized scratch buffers.
* **Gradient in forward** (Liger-Kernel style) for the dense, full-vocabulary terms (E15 and
  the token-level baselines): each chunk's gradient with respect to its logits is formed while
  the logits are at hand and pushed straight through the projection, into ∂L/∂hidden (the chunk's
  rows) and an accumulated ∂L/∂weight. These terms are linear in the per-token divergences with
  weights known before the loop (quality, lengths, counts), so nothing is recomputed.
* **Recomputation** for the sequence-level terms (E11–E13, ``seqkd``, the SGO term of
  ``advantage_kd``): their coefficient of each token log-prob depends on the whole sequence, so
  it is known only in backward. The forward pass keeps the log-sum-exp of each token (one float
  per token) and the backward pass recomputes the chunk's logits once.

Precision: half-precision (bf16/fp16) hidden states and weights are projected with float32
accumulation (the weight is upcast once per call; the hidden chunk is upcast inside the loop) and
every log-softmax, mixture and divergence runs in float32; logits are never rounded to half before
the log-softmax (the defect of Liger-Kernel issue #1432). float64 stays float64. Gradients return
in the dtype of each input.

Three interchangeable per-chunk kernels compute the divergence values and their logit gradients:
``kernel="fused"`` (default) evaluates closed-form logit gradients with in-place operations in
preallocated buffers; ``kernel="core"`` calls the library's own divergence functions
(:func:`~askd_ref.skew_forward_kl`, …) on the chunk's log-probs and differentiates them with
autograd; ``kernel="compiled"`` (float32 on CPU) runs the fused kernel's formulas as a C kernel
built at first use (:mod:`askd_ref.compiled`), a few passes per row instead of a dozen torch
passes. All three are tested against the full-logit path; ``"core"`` is the slower reference.

Alignment: ``student_hidden[:, t]`` is the hidden state that *predicts* ``target_ids[:, t]``.
For a causal LM run on ``input_ids`` with response mask ``response_mask``, pass
``hidden[:, :-1]``, ``target_ids=input_ids[:, 1:]`` and ``mask=response_mask[:, 1:]`` — the same
shift as :func:`~askd_ref.token_log_probs`.
"""

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Literal, TypeAlias, get_args

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from askd_ref import compiled
from askd_ref._reduce import Reduction, mean_value, pool_sums, split_counts, token_counts
from askd_ref._validation import (
    check_batch_mask,
    check_float_tensor,
    check_integer_tensor,
    check_no_nan,
    check_same_device,
    check_same_vocab,
    check_temperature,
    compute_dtype,
    is_validation_enabled,
    validation_disabled,
)
from askd_ref.divergences import (
    Divergence,
)
from askd_ref.losses import DistillBatch, LossOutput, sum_terms
from askd_ref.methods import DenseTerm, LossContext, MethodSpec, check_method_params, method_spec
from askd_ref.options import ASKDOptions, resolve_options
from askd_ref.schedules import quality_gate, sgo_alpha, tgo_alpha

__all__ = ["CHUNK_BYTES", "MAX_CHUNK_SIZE", "chunked_loss", "chunked_token_log_probs", "default_chunk_size"]

#: Byte budget of one (chunk × vocab) buffer when ``chunk_size`` is not given (the chunk loop
#: holds at most two such buffers). 640 MiB fits 1024 float32 tokens up to vocab 163840 (Qwen2.5's
#: 151936, Llama 3's 128256) and 512 at 262144. Every chunk streams the whole projection weight
#: through three matmuls and accumulates the weight gradient once, so small chunks at a large
#: vocabulary are bound by memory traffic: at vocab 151936 on the benchmark CPU a loss pass ran
#: 9–14 % faster with chunks of 1024 tokens than with 256 in two runs (``scripts/chunk_sizes.py``,
#: ``docs/benchmarks.md``).
CHUNK_BYTES: Final[int] = 640 * 2**20
#: Largest default chunk. On the benchmark CPU, chunks of 1024 tokens ran the projection matmuls
#: as fast as one unchunked matmul at vocab 32768 (``docs/benchmarks.md``); larger ones only grow
#: the buffers.
MAX_CHUNK_SIZE: Final[int] = 1024


def default_chunk_size(vocab: int, dtype: torch.dtype = torch.float32) -> int:
    """Packed tokens per chunk when ``chunk_size`` is ``None``.

    The largest power of two ≤ :data:`MAX_CHUNK_SIZE` whose ``(chunk, vocab)`` buffer in the
    compute ``dtype`` fits :data:`CHUNK_BYTES` (at least 16 tokens).

    >>> default_chunk_size(32768), default_chunk_size(151936), default_chunk_size(262144)
    (1024, 1024, 512)
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    chunk = MAX_CHUNK_SIZE
    while chunk > 16 and chunk * vocab * itemsize > CHUNK_BYTES:
        chunk //= 2
    return chunk


Kernel: TypeAlias = Literal["fused", "compiled", "core"]

# Divergence codes of the packed token groups: the :class:`~askd_ref.divergences.Divergence`
# members (an IntEnum), and _NONE for tokens whose log-probs only the sequence terms read.
_NONE: Final[int] = len(Divergence)


# ----------------------------------------------------------------------------------------------
# Per-chunk kernels. Inputs are views of a block of rows of one divergence (m rows, vocab V):
# ``s`` holds the student log-probs log q and ``t`` the teacher log-probs log p (both consumed:
# they are overwritten with q and p, and ``s`` finally with ∂L/∂logits when ``want_grad``), ``x``
# and ``y`` are scratch; ``a``, ``la``, ``l1a`` are (m, 1) columns α, log α, log(1 − α) (β for JSD) and ``w``
# the (m, 1) loss weight of each token. Each returns the per-token divergence values, (m,).
# ----------------------------------------------------------------------------------------------


#: log₂ e: exp(x) = 2^(x·log₂ e).
_LOG2E: Final[float] = 1.4426950408889634


def _exp_(x: Tensor) -> Tensor:
    """exp(x) in place, as 2^(x·log₂ e).

    On CPU ``torch.exp`` goes through MKL's vector math library, which ran 2.5–3.5× slower than
    the SIMD ``torch.exp2`` on the benchmark CPU (AMD EPYC, AVX-512; ``scripts/elementwise_ops.py``
    at 8 × 32768 and 4 × 151936); the two passes of this form cost less than the one of ``exp``.
    The rounding of x·log₂ e adds a relative error of about |x|·2⁻²⁴ in float32 (1e-6 at x = −20,
    where the term weighs e⁻²⁰).
    """
    return x.mul_(_LOG2E).exp2_()


def _fused_kernel(
    code: int,
    s: Tensor,
    t: Tensor,
    x: Tensor,
    y: Tensor,
    a: Tensor,
    la: Tensor,
    l1a: Tensor,
    w: Tensor,
    want_grad: bool,
) -> Tensor:
    r"""Closed-form values and logit gradients of the token-level divergences, in place.

    With q = softmax(z) the student, p the teacher and g_v = ∂D/∂q_v, the logit gradient is
    ∂D/∂z = q ⊙ (g − ⟨q, g⟩). Mixtures are formed in log space:

    * SKL_α = Σ p log(p/m), m = αp + (1−α)q: with y = log(m/p) = logaddexp(log α, x),
      x = log(1−α) + log q − log p, SKL = −⟨p, y⟩ and ∂/∂z = q·⟨p, r⟩ − p ⊙ r with
      r = (1−α)q/m = exp(x − y).
    * SRKL_α = Σ q log(q/m), m = (1−α)p + αq: with y = log(m/q) = logaddexp(log α, log(1−α) + log p
      − log q), SRKL = −⟨q, y⟩ and ∂/∂z = q ⊙ (c − x), c = ⟨q, x⟩, x = y + α·e^{−y} ("full":
      g = 1 − y − αq/m) or x = y ("stop": the mixture is a constant).
    * FKL = ⟨p, log p − log q⟩, ∂/∂z = q − p.
    * RKL = ⟨q, log q − log p⟩, ∂/∂z = q ⊙ (log q − log p − RKL).
    * JSD_β = β⟨p, log(p/M)⟩ + (1−β)⟨q, log(q/M)⟩, M = βp + (1−β)q: ∂D/∂q_v = (1−β)·log(q_v/M_v),
      so with y = log(M/q), ∂/∂z = (1−β)·q ⊙ (⟨q, y⟩ − y).

    Every formula is checked against the library's divergence functions differentiated by
    autograd (``kernel="core"``) in ``tests/test_chunked.py``.
    """
    return _FUSED[Divergence(code)](s, t, x, y, a, la, l1a, w, want_grad)


def _fused_skl(
    s: Tensor, t: Tensor, x: Tensor, y: Tensor, la: Tensor, l1a: Tensor, w: Tensor, want_grad: bool
) -> Tensor:
    """SKL_α: value −⟨p, y⟩ and gradient w·(q·⟨p, r⟩ − p ⊙ r) (see :func:`_fused_kernel`)."""
    torch.sub(s, t, out=x).add_(l1a)  # log((1−α)q/p)
    p = _exp_(t)
    torch.logaddexp(x, la, out=y)  # log(m/p)
    if want_grad:
        _exp_(x.sub_(y)).mul_(p).mul_(-w)  # −w·p ⊙ r
    value = -y.mul_(p).sum(-1)
    if want_grad:
        c = x.sum(-1, keepdim=True)  # −w·⟨p, r⟩
        torch.addcmul(x, _exp_(s), c, value=-1.0, out=s)  # w·(q·⟨p, r⟩ − p ⊙ r)
    return value


def _fused_srkl(
    s: Tensor,
    t: Tensor,
    x: Tensor,
    y: Tensor,
    a: Tensor,
    la: Tensor,
    l1a: Tensor,
    w: Tensor,
    want_grad: bool,
    *,
    full: bool,
) -> Tensor:
    """SRKL_α: value −⟨q, y⟩; gradient w·q ⊙ (c − x) (``full``) or w·q ⊙ (⟨q, y⟩ − y) (stop)."""
    torch.sub(t, s, out=x).add_(l1a)  # log((1−α)p/q)
    torch.logaddexp(x, la, out=y)  # log(m/q)
    q = _exp_(s)
    if want_grad and full:
        torch.mul(y, -_LOG2E, out=x).exp2_().mul_(a).add_(y).mul_(q)  # q ⊙ (y + α q/m)
    y.mul_(q)
    value = -y.sum(-1)
    if want_grad:
        if full:
            c = x.sum(-1, keepdim=True)
            torch.addcmul(x, q, c, value=-1.0, out=s).mul_(-w)  # w·q ⊙ (c − x)
        else:
            q.mul_(-value.unsqueeze(-1)).sub_(y).mul_(w)  # w·q ⊙ (⟨q, y⟩ − y)
    return value


def _fused_fkl(s: Tensor, t: Tensor, x: Tensor, w: Tensor, want_grad: bool) -> Tensor:
    """FKL: value ⟨p, log(p/q)⟩, gradient w·(q − p)."""
    torch.sub(t, s, out=x)  # log(p/q)
    p = _exp_(t)
    value = x.mul_(p).sum(-1)
    if want_grad:
        _exp_(s).sub_(p).mul_(w)
    return value


def _fused_rkl(s: Tensor, t: Tensor, x: Tensor, w: Tensor, want_grad: bool) -> Tensor:
    """RKL: value ⟨q, log(q/p)⟩, gradient w·q ⊙ (log(q/p) − RKL)."""
    torch.sub(s, t, out=x)  # log(q/p)
    q = _exp_(s)
    value = x.mul_(q).sum(-1)
    if want_grad:
        torch.addcmul(x, q, value.unsqueeze(-1), value=-1.0, out=s).mul_(w)  # w·q ⊙ (log(q/p) − RKL)
    return value


def _fused_gjsd(
    s: Tensor, t: Tensor, x: Tensor, y: Tensor, a: Tensor, la: Tensor, l1a: Tensor, w: Tensor, want_grad: bool
) -> Tensor:
    """JSD_β: value β⟨p, log(p/M)⟩ − (1−β)⟨q, y⟩, gradient (1−β)w·q ⊙ (⟨q, y⟩ − y), y = log(M/q)."""
    torch.sub(t, s, out=x)  # log(p/q)
    torch.add(x, la, out=y)
    torch.logaddexp(y, l1a, out=y)  # log(M/q)
    x.sub_(y)  # log(p/M)
    p, q = _exp_(t), _exp_(s)
    vp = x.mul_(p).sum(-1, keepdim=True)
    yq = y.mul_(q).sum(-1, keepdim=True)
    value = (a * vp - (1 - a) * yq).view(-1)
    if want_grad:
        q.mul_(yq).sub_(y).mul_((1 - a) * w)  # (1−β)w·q ⊙ (⟨q, y⟩ − y)
    return value


#: The fused kernel of each divergence, called as ``(s, t, x, y, a, la, l1a, w, want_grad)``.
_FUSED: Final[dict[Divergence, Callable[..., Tensor]]] = {
    Divergence.SKL: lambda s, t, x, y, a, la, l1a, w, g: _fused_skl(s, t, x, y, la, l1a, w, g),
    Divergence.SRKL_FULL: lambda s, t, x, y, a, la, l1a, w, g: _fused_srkl(
        s, t, x, y, a, la, l1a, w, g, full=True
    ),
    Divergence.SRKL_STOP: lambda s, t, x, y, a, la, l1a, w, g: _fused_srkl(
        s, t, x, y, a, la, l1a, w, g, full=False
    ),
    Divergence.FKL: lambda s, t, x, y, a, la, l1a, w, g: _fused_fkl(s, t, x, w, g),
    Divergence.RKL: lambda s, t, x, y, a, la, l1a, w, g: _fused_rkl(s, t, x, w, g),
    Divergence.GJSD: lambda s, t, x, y, a, la, l1a, w, g: _fused_gjsd(s, t, x, y, a, la, l1a, w, g),
}


def _core_kernel(code: int, s: Tensor, t: Tensor, param: Tensor, w: Tensor, want_grad: bool) -> Tensor:
    """The same values and logit gradients (into ``s``) from the library's divergence functions
    and autograd."""
    with torch.enable_grad(), validation_disabled():
        slp = s.detach().clone().requires_grad_(want_grad)
        a = param.view(-1)
        d = Divergence(code).evaluate(teacher_logp=t, student_logp=slp, param=a)
        if want_grad:
            (g,) = torch.autograd.grad(d, slp, grad_outputs=w.view(-1).to(d.dtype))
            # chain rule through log_softmax: ∂/∂z = g − softmax(z)·Σ_v g_v
            s.copy_(g - slp.detach().exp() * g.sum(-1, keepdim=True))
    return d.detach()


# ----------------------------------------------------------------------------------------------
# The packed computation as one autograd Function.
#
# Each chunk of packed tokens is projected by one matmul per model into a (chunk × vocab)
# buffer; the element-wise work (log-softmax, the divergence kernel, the logit gradient) then
# runs over blocks of a few rows (``_BLOCK_BYTES`` per buffer), so that its dozen passes read and
# write data held in cache instead of streaming the whole chunk through memory each time; the
# chunk's logit gradient is pushed through the projection by two more matmuls.
# ----------------------------------------------------------------------------------------------

#: Bytes of one buffer's row block in the element-wise passes (at least one row).
_BLOCK_BYTES: int = 2**20
#: Rows per intra-op thread that a block has at least. The row reductions (``log_softmax``, row
#: sums) split a block among threads by rows, so a block of fewer rows than threads leaves
#: threads idle: at vocab 151936 the element-wise work of a 1024-token chunk took 0.62–0.91 s on
#: two threads in one-row blocks (what ``_BLOCK_BYTES`` alone gives in float32) and 0.46–0.50 s in
#: four-row blocks (medians of three runs of ``scripts/elementwise_ops.py --blocks 1 4``).
_ROWS_PER_THREAD: int = 2


@dataclasses.dataclass(frozen=True)
class _Pack:
    """What the chunk loop needs to know about the packed tokens (all tensors length N)."""

    targets: Tensor  # (N,) int64 target ids
    segments: tuple[tuple[int, int, int], ...]  # (start, end, code), contiguous, in packed order
    param: Tensor  # (N, 1) α (or β) per token, compute dtype
    la: Tensor  # (N, 1) log α (or log β)
    l1a: Tensor  # (N, 1) log(1 − α)
    weight: Tensor  # (N, 1) loss weight of each token's divergence
    teacher_tokens: bool  # teacher token log-probs wanted on every packed token
    chunk_size: int
    kernel: Kernel
    want_grad: bool
    cdt: torch.dtype


def _project(h: Tensor, weight: Tensor, bias: Tensor | None, out: Tensor) -> Tensor:
    """out = h·Wᵀ (+ b) in the dtype of ``weight`` (already the compute dtype)."""
    torch.mm(h.to(weight.dtype), weight.t(), out=out)
    if bias is not None:
        out.add_(bias)
    return out


def _block_rows(vocab: int, dtype: torch.dtype) -> int:
    """Rows per element-wise block: ``_BLOCK_BYTES`` of one (rows × vocab) buffer, but at least
    ``_ROWS_PER_THREAD`` rows per intra-op thread (and 1), whole rows per thread when there are at
    least as many rows as threads."""
    threads = torch.get_num_threads()
    by_bytes = _BLOCK_BYTES // (vocab * torch.empty((), dtype=dtype).element_size())
    rows = max(1, by_bytes, _ROWS_PER_THREAD * threads)
    return rows - rows % threads if rows >= threads else rows


def _blocks(segments: Sequence[tuple[int, int, int]], block: int) -> Iterator[tuple[int, int, int]]:
    """(start, end, code) pieces of ``segments`` at most ``block`` rows long."""
    for lo, hi, code in segments:
        for b0 in range(lo, hi, block):
            yield b0, min(hi, b0 + block), code


def _chunk_segments(segments: Sequence[tuple[int, int, int]], c0: int, c1: int) -> list[tuple[int, int, int]]:
    """The parts of the packed ``segments`` inside rows [c0, c1), relative to c0."""
    return [(max(a, c0) - c0, min(b, c1) - c0, code) for a, b, code in segments if a < c1 and b > c0]


@dataclasses.dataclass(frozen=True)
class _Head:
    """One output projection z = h·Wᵀ + b, its weight and bias in the compute dtype."""

    hidden: Tensor  # (N, hidden) packed hidden states, the input's dtype
    weight: Tensor  # (vocab, hidden), compute dtype
    bias: Tensor | None  # (vocab,), compute dtype

    @staticmethod
    def of(hidden: Tensor, weight: Tensor, bias: Tensor | None, cdt: torch.dtype) -> "_Head":
        return _Head(hidden, weight.to(cdt), None if bias is None else bias.to(cdt))

    def project_chunk(self, c0: int, c1: int, out: Tensor) -> Tensor:
        """The logits of packed rows [c0, c1) into ``out[: c1 − c0]``."""
        return _project(self.hidden[c0:c1], self.weight, self.bias, out[: c1 - c0])


class _HeadGrads:
    """∂L/∂(hidden, weight, bias) of the student head, accumulated chunk by chunk.

    A chunk's logit gradient G = ∂L/∂z (n × vocab) of z = H·Wᵀ + b adds G·W to the chunk's
    hidden rows, Gᵀ·H to the weight and the column sums of G to the bias. The weight gradient is
    created by the first chunk (no zero fill of a vocab × hidden buffer).
    """

    def __init__(self, h: Tensor | None, w: Tensor | None, b: Tensor | None, need_w: bool) -> None:
        self.h, self.w, self.b, self.need_w = h, w, b, need_w

    @staticmethod
    def empty(needs: Sequence[bool], head: _Head, cdt: torch.dtype) -> "_HeadGrads":
        """Accumulators for the gradients in ``needs`` = (hidden, weight, bias)."""
        need_h, need_w, need_b = needs
        n_tok, hidden = head.hidden.shape
        vocab, dev = head.weight.shape[0], head.hidden.device
        h = torch.zeros(n_tok, hidden, dtype=cdt, device=dev) if need_h else None
        b = torch.zeros(vocab, dtype=cdt, device=dev) if need_b else None
        return _HeadGrads(h, None, b, need_w)

    def accumulate_head_grads(self, g: Tensor, head: _Head, c0: int) -> None:
        """Push the logit gradient ``g`` of packed rows [c0, c0 + len(g)) through the projection."""
        if self.h is not None:
            self.h[c0 : c0 + g.shape[0]].addmm_(g, head.weight)
        if self.need_w:
            hc = head.hidden[c0 : c0 + g.shape[0]].to(g.dtype)
            if self.w is None:
                self.w = torch.mm(g.t(), hc)
            else:
                self.w.addmm_(g.t(), hc)
        if self.b is not None:
            self.b.add_(g.sum(0))

    def scaled(self, g_loss: Tensor | None, needs: Sequence[bool], *, copy: bool) -> "_HeadGrads":
        """These gradients times the incoming ``g_loss`` (fresh tensors when ``copy``)."""
        if g_loss is None:
            return _HeadGrads(None, None, None, needs[1])
        one = not copy and g_loss.numel() == 1 and float(g_loss) == 1.0

        def scale(x: Tensor | None) -> Tensor | None:
            return None if x is None else x if one else x * g_loss

        return _HeadGrads(scale(self.h), scale(self.w), scale(self.b), needs[1])


@dataclasses.dataclass
class _Forward:
    """One forward pass over the chunks: heads, reusable buffers and the per-token outputs."""

    pack: _Pack
    student: _Head
    teacher: _Head | None
    bufs: dict[str, Tensor]  # "s", "t": (chunk, V) logits, then ∂L/∂z in "s"; "x", "y": (block, V)
    block: int
    s_tok: Tensor  # (N,) student token log-probs
    t_tok: Tensor  # (N,) teacher token log-probs (0 where not computed)
    lse: Tensor  # (N,) student log-sum-exp, kept for the backward pass
    values: Tensor  # (N,) per-token divergence values (0 on sequence-only tokens)
    grads: _HeadGrads | None  # dense gradients, when wanted

    @staticmethod
    def start(pack: _Pack, student: _Head, teacher: _Head | None, needs: Sequence[bool]) -> "_Forward":
        """Allocate the buffers and outputs of a forward pass (at most two chunk buffers)."""
        n_tok, vocab = student.hidden.shape[0], student.weight.shape[0]
        cdt, dev = pack.cdt, student.hidden.device
        chunk, block = min(pack.chunk_size, n_tok), _block_rows(vocab, cdt)
        dense = any(code != _NONE for _, _, code in pack.segments)
        scratch = min(block, chunk) if dense and pack.kernel == "fused" else 0
        rows = {"s": chunk, "t": chunk if teacher is not None else 0, "x": scratch, "y": scratch}
        bufs = {k: torch.empty(r, vocab, dtype=cdt, device=dev) for k, r in rows.items() if r}
        want_grad = pack.want_grad and dense and any(needs)
        return _Forward(
            pack=pack,
            student=student,
            teacher=teacher,
            bufs=bufs,
            block=block,
            s_tok=torch.empty(n_tok, dtype=cdt, device=dev),
            t_tok=torch.zeros(n_tok, dtype=cdt, device=dev),
            lse=torch.empty(n_tok, dtype=cdt, device=dev),
            values=torch.zeros(n_tok, dtype=cdt, device=dev),
            grads=_HeadGrads.empty(needs, student, cdt) if want_grad else None,
        )

    def chunk(self, c0: int, c1: int) -> None:
        """Rows [c0, c1): project, then per block log-softmax, token log-probs and the kernel,
        which leaves ∂L/∂z in the student's buffer for the gradient push."""
        pack = self.pack
        segs = _chunk_segments(pack.segments, c0, c1)
        dense = any(code != _NONE for _, _, code in segs)
        ids = pack.targets[c0:c1, None]
        s = self.student.project_chunk(c0, c1, self.bufs["s"])
        z_y = s.gather(1, ids).view(-1)  # the target logits, before the log-softmax
        t = None
        if self.teacher is not None and (dense or pack.teacher_tokens):
            t = self.teacher.project_chunk(c0, c1, self.bufs["t"])
        if pack.kernel == "compiled" and t is not None:  # whole segments, one call each
            for lo, hi, code in segs:
                if code != _NONE:
                    self.compiled_rows(code, s, t, ids, c0, lo, hi)
            segs = [seg for seg in segs if seg[2] == _NONE]
        for b0, b1, code in _blocks(segs, self.block):
            sb = torch.log_softmax(s[b0:b1], -1, out=s[b0:b1])
            self.s_tok[c0 + b0 : c0 + b1] = sb.gather(1, ids[b0:b1]).view(-1)
            tb = None
            if t is not None:
                tb = torch.log_softmax(t[b0:b1], -1, out=t[b0:b1])
                self.t_tok[c0 + b0 : c0 + b1] = tb.gather(1, ids[b0:b1]).view(-1)
            if not dense:
                continue
            if code == _NONE:
                sb.zero_()  # no dense gradient on these rows
            else:
                assert tb is not None
                self.values[c0 + b0 : c0 + b1] = self.kernel(code, sb, tb, c0 + b0)
        self.lse[c0:c1] = z_y - self.s_tok[c0:c1]  # z_y − log q(y) = log Σ_v exp z_v
        if self.grads is not None and dense:
            self.grads.accumulate_head_grads(s, self.student, c0)

    def compiled_rows(self, code: int, s: Tensor, t: Tensor, ids: Tensor, c0: int, b0: int, b1: int) -> None:
        """Chunk rows [b0, b1) of one divergence through the compiled kernel: the log-softmaxes,
        token log-probs, values and (into ``s``) the logit gradient in one call."""
        pack, i0, i1 = self.pack, c0 + b0, c0 + b1
        compiled.rows(
            code,
            s[b0:b1],
            t[b0:b1],
            ids[b0:b1].view(-1),
            pack.param[i0:i1].view(-1),
            pack.la[i0:i1].view(-1),
            pack.l1a[i0:i1].view(-1),
            pack.weight[i0:i1].view(-1),
            self.grads is not None,
            self.s_tok[i0:i1],
            self.t_tok[i0:i1],
            self.values[i0:i1],
        )

    def kernel(self, code: int, s: Tensor, t: Tensor, i0: int) -> Tensor:
        """The divergence values of packed rows [i0, i0 + len(s)); their logit gradient into ``s``."""
        pack, i1 = self.pack, i0 + s.shape[0]
        want_grad = self.grads is not None
        if pack.kernel == "core":
            w = pack.weight[i0:i1]
            return _core_kernel(code, s, t, pack.param[i0:i1], w, want_grad)
        x, y = self.bufs["x"][: s.shape[0]], self.bufs["y"][: s.shape[0]]
        a, la, l1a, w = (v[i0:i1] for v in (pack.param, pack.la, pack.l1a, pack.weight))
        return _fused_kernel(code, s, t, x, y, a, la, l1a, w, want_grad)


def _token_grads(
    grads: _HeadGrads, head: _Head, pack: _Pack, lse: Tensor, g_tok: Tensor, needs: Sequence[bool]
) -> None:
    """Add Σ_t g_t ∂ log q(y_t)/∂(hidden, weight, bias), recomputing each chunk's logits once.

    ∂ log q(y_t)/∂z_t = onehot(y_t) − softmax(z_t), softmax(z_t) = exp(z_t − lse_t). Chunks whose
    tokens all have g_t = 0 are skipped.
    """
    cdt, dev = pack.cdt, head.hidden.device
    n_tok, vocab = head.hidden.shape[0], head.weight.shape[0]
    chunk, block = min(pack.chunk_size, n_tok), _block_rows(vocab, cdt)
    g = g_tok.to(cdt)
    n_chunks = -(-n_tok // chunk)
    pad = torch.zeros(n_chunks * chunk - n_tok, dtype=torch.bool, device=dev)
    active: list[bool] = torch.cat([g != 0, pad]).view(n_chunks, chunk).any(1).tolist()
    if not any(active):
        return
    if needs[0] and grads.h is None:
        grads.h = torch.zeros(n_tok, head.hidden.shape[1], dtype=cdt, device=dev)
    if needs[2] and grads.b is None:
        grads.b = torch.zeros(vocab, dtype=cdt, device=dev)
    zbuf = torch.empty(chunk, vocab, dtype=cdt, device=dev)
    for k, c0 in enumerate(range(0, n_tok, chunk)):
        if not active[k]:
            continue
        c1 = min(n_tok, c0 + chunk)
        z, gc = head.project_chunk(c0, c1, zbuf), g[c0:c1, None]
        for b0 in range(0, c1 - c0, block):
            b1 = min(c1 - c0, b0 + block)
            _exp_(z[b0:b1].sub_(lse[c0 + b0 : c0 + b1, None])).mul_(-gc[b0:b1])
        z.scatter_add_(1, pack.targets[c0:c1, None], gc)
        grads.accumulate_head_grads(z, head, c0)


class _ChunkedHeads(torch.autograd.Function):
    """Packed hidden states → (dense loss, student token log-probs, teacher token log-probs, values)."""

    @staticmethod
    def forward(
        ctx: Any,
        s_hidden: Tensor,
        s_weight: Tensor,
        s_bias: Tensor | None,
        t_hidden: Tensor | None,
        t_weight: Tensor | None,
        t_bias: Tensor | None,
        pack: _Pack,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        student = _Head.of(s_hidden, s_weight, s_bias, pack.cdt)
        teacher = None
        if t_hidden is not None and t_weight is not None:
            teacher = _Head.of(t_hidden, t_weight, t_bias, pack.cdt)
        run = _Forward.start(pack, student, teacher, ctx.needs_input_grad[:3])
        n_tok = s_hidden.shape[0]
        chunk = min(pack.chunk_size, n_tok)
        for c0 in range(0, n_tok, chunk):
            run.chunk(c0, min(n_tok, c0 + chunk))
        dense_loss = (run.values * pack.weight.view(-1)).sum()
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(run.t_tok, run.values)
        # The dense gradients are saved tensors, not ctx attributes: unless the graph is retained,
        # autograd releases them as soon as backward returns, so the gradient it hands on is the
        # only reference and AccumulateGrad takes it as the leaf's .grad instead of copying it (a
        # vocab × hidden copy per call otherwise, which the plain-autograd floor does not pay).
        dense = run.grads or _HeadGrads(None, None, None, False)
        ctx.save_for_backward(s_hidden, s_weight, s_bias, run.lse, dense.h, dense.w, dense.b)
        ctx.pack = pack
        ctx.has_dense = run.grads is not None
        return dense_loss, run.s_tok, run.t_tok, run.values

    @staticmethod
    def backward(
        ctx: Any, g_loss: Tensor | None, g_stok: Tensor | None, *_: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        s_hidden, s_weight, s_bias, lse, dense_h, dense_w, dense_b = ctx.saved_tensors
        pack: _Pack = ctx.pack
        needs = ctx.needs_input_grad[:3]
        dense = _HeadGrads(dense_h, dense_w, dense_b, needs[1]) if ctx.has_dense else None
        if dense is None:
            grads = _HeadGrads(None, None, None, needs[1])
        else:  # fresh tensors when the token gradients are added to them
            grads = dense.scaled(g_loss, needs, copy=g_stok is not None)
        if g_stok is not None:
            head = _Head.of(s_hidden, s_weight, s_bias, pack.cdt)
            _token_grads(grads, head, pack, lse, g_stok, needs)

        def out(x: Tensor | None, need: bool, like: Tensor | None) -> Tensor | None:
            return None if x is None or not need or like is None else x.to(like.dtype)

        return (
            out(grads.h, needs[0], s_hidden),
            out(grads.w, needs[1], s_weight),
            out(grads.b, needs[2], s_bias),
            None,
            None,
            None,
            None,
        )


# ----------------------------------------------------------------------------------------------
# Validation and planning.
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _DenseTerm:
    """One full-vocabulary term: a divergence on some rows, with per-row parameter and weight."""

    rows: Tensor  # bool (batch,)
    divergence: Divergence
    param: Tensor  # (batch,) α or β (only the selected rows matter)
    weight: Tensor  # (batch,) coefficient of the row's token *sum* of the divergence in the loss
    value_key: str  # diagnostic: token mean of the divergence over the term's tokens


@dataclasses.dataclass(frozen=True)
class _Plan:
    terms: list[_DenseTerm]
    seq_rows: Tensor  # bool (batch,): rows whose student token log-probs the sequence part reads
    teacher_tokens: bool
    diagnostics: dict[str, float]


@dataclasses.dataclass(frozen=True)
class _Heads:
    """The validated projection inputs: (hidden, weight, bias) of student and teacher, target ids."""

    hs: Tensor
    ws: Tensor
    bs: Tensor | None
    ht: Tensor | None
    wt: Tensor | None
    bt: Tensor | None
    ids: Tensor

    @property
    def cdt(self) -> torch.dtype:
        tensors = (self.hs, self.ws, self.bs, self.ht, self.wt, self.bt)
        return compute_dtype(*(x.dtype for x in tensors if x is not None))


def _check_head(
    role: str, hidden: object, weight: object, bias: object, batch_shape: tuple[int, ...] | None
) -> tuple[Tensor, Tensor, Tensor | None]:
    h = check_float_tensor(f"{role}_hidden", hidden, min_ndim=3)
    if h.ndim != 3:
        raise ValueError(f"{role}_hidden must have shape (batch, seq, hidden), got {tuple(h.shape)}")
    if batch_shape is not None and tuple(h.shape[:2]) != batch_shape:
        raise ValueError(
            f"{role}_hidden must have shape {batch_shape} + (hidden,) like the mask, got {tuple(h.shape)}"
        )
    w = check_float_tensor(f"{role}_weight", weight, min_ndim=2)
    if w.ndim != 2 or w.shape[1] != h.shape[2]:
        raise ValueError(
            f"{role}_weight must have shape (vocab, {h.shape[2]}) (the output projection of "
            f"{role}_hidden), got {tuple(w.shape)}"
        )
    b: Tensor | None = None
    if bias is not None:
        b = check_float_tensor(f"{role}_bias", bias, min_ndim=1)
        if tuple(b.shape) != (w.shape[0],):
            raise ValueError(f"{role}_bias must have shape ({w.shape[0]},), got {tuple(b.shape)}")
    check_same_device(**{f"{role}_hidden": h, f"{role}_weight": w, f"{role}_bias": b})
    return h, w, b


def _check_heads(
    spec: MethodSpec,
    mask: Tensor,
    student: tuple[object, object, object],
    teacher: tuple[object, object, object],
    target_ids: object,
) -> _Heads:
    """Student (and, if the method reads it, teacher) hidden states, weights, biases; target ids."""
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    hs, ws, bs = _check_head("student", *student, shape)
    ht: Tensor | None = None
    wt: Tensor | None = None
    bt: Tensor | None = None
    if spec.needs_teacher:
        if teacher[0] is None or teacher[1] is None:
            raise ValueError(f"{spec.name} needs teacher_hidden and teacher_weight, got None")
        ht, wt, bt = _check_head("teacher", *teacher, shape)
        check_same_vocab("student_weight", ws.shape[0], "teacher_weight", wt.shape[0], "rows")
        check_same_device(student_hidden=hs, teacher_hidden=ht, mask=mask)
    check_same_device(student_hidden=hs, mask=mask)
    return _Heads(hs, ws, bs, ht, wt, bt, _check_targets(target_ids, mask, ws.shape[0]))


def _check_targets(target_ids: object, mask: Tensor, vocab: int) -> Tensor:
    target_ids = check_integer_tensor("target_ids", target_ids, "token ids")
    if tuple(target_ids.shape) != tuple(mask.shape):
        raise ValueError(f"target_ids must have shape {tuple(mask.shape)}, got {tuple(target_ids.shape)}")
    check_same_device(target_ids=target_ids, mask=mask)
    ids = target_ids[mask]
    if ids.numel() and bool(((ids < 0) | (ids >= vocab)).any()):
        bad = int(ids[(ids < 0) | (ids >= vocab)][0])
        raise ValueError(f"target_ids must lie in [0, {vocab}) at masked-in positions; got {bad}")
    return target_ids


def _check_chunk(chunk_size: object, kernel: object) -> None:
    bad_size = isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    if chunk_size is not None and bad_size:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if kernel not in get_args(Kernel):
        raise ValueError(f"kernel must be 'fused', 'compiled' or 'core', got {kernel!r}")


def _check_compiled(kernel: Kernel, heads: "_Heads") -> None:
    """``kernel="compiled"`` runs float32 CPU work only, and needs its C build."""
    if kernel != "compiled":
        return
    if heads.cdt != torch.float32 or heads.hs.device.type != "cpu":
        raise ValueError(
            "kernel='compiled' runs float32 on CPU (float32, bf16 or fp16 inputs on CPU); got compute "
            f"dtype {heads.cdt} on {heads.hs.device}: use kernel='fused'"
        )
    compiled.load()  # raises CompiledKernelUnavailable, with the compiler's message


def _scatter(rows: Tensor, values: Tensor, size: int) -> Tensor:
    """A (size,) tensor with ``values`` at the True entries of ``rows`` (zero elsewhere)."""
    out = torch.zeros(size, dtype=values.dtype, device=values.device)
    return out.masked_scatter(rows, values)


@dataclasses.dataclass(frozen=True)
class _Norms:
    """The row sets and normalisers the dense terms of one call divide by."""

    rows: dict[str, Tensor]  # "tgo", "sgo", "all" → bool (batch,)
    lengths: Tensor  # (batch,) token counts, compute dtype
    ones: Tensor  # (batch,) ones, compute dtype
    token: bool  # reduction == "token"
    samples: dict[str, int]  # N_T, N_S, N_T + N_S by row set
    tokens: dict[str, int]  # M_T, M_S, M_T + M_S by row set (reduction="token")


def _norms(batch: DistillBatch, ctx: LossContext, token_counts: tuple[int, int], cdt: torch.dtype) -> _Norms:
    tgo, sgo = batch.is_tgo, ~batch.is_tgo
    n_t, n_s = ctx.n_tgo, ctx.n_sgo
    m_t, m_s = token_counts
    return _Norms(
        rows={"tgo": tgo, "sgo": sgo, "all": tgo | sgo},
        lengths=batch.mask.sum(-1).to(cdt),
        ones=torch.ones(batch.batch_size, dtype=cdt, device=batch.mask.device),
        token=ctx.reduction == "token",
        samples={"tgo": n_t, "sgo": n_s, "all": n_t + n_s},
        tokens={"tgo": m_t, "sgo": m_s, "all": m_t + m_s},
    )


def _fixed_term(term: DenseTerm, norms: _Norms, cdt: torch.dtype) -> _DenseTerm:
    """A baseline's term: a constant parameter, rows pooled by a token mean or one token mean."""
    rows = norms.rows[term.rows]
    per_tok = norms.ones if norms.token else pool_sums(norms.ones, norms.lengths, "mean")
    count = (norms.tokens if norms.token else norms.samples)[term.rows]
    weight = term.weight * (per_tok / count)
    param = torch.full(rows.shape, term.param, dtype=cdt, device=rows.device)
    return _DenseTerm(rows, term.divergence, param, weight.to(cdt), term.key)


def _adaptive_term(
    term: DenseTerm, batch: DistillBatch, opts: ASKDOptions, norms: _Norms, cdt: torch.dtype
) -> tuple[_DenseTerm, dict[str, float]]:
    """E15's term on TGO or SGO rows: α from quality, the SGO term gated by 1 − h(r)."""
    assert batch.quality is not None
    rows = norms.rows[term.rows]
    r = batch.quality[rows]
    b = batch.batch_size
    per_row = norms.ones if norms.token else pool_sums(norms.ones, norms.lengths, opts.normalize)
    count = (norms.tokens if norms.token else norms.samples)[term.rows]
    if term.rows == "tgo":
        alpha = tgo_alpha(r, options=opts)
        w = term.weight * opts.lambda_tgo * per_row / count
        diag = {"dense/tgo_alpha": mean_value(alpha)}
    else:
        alpha = sgo_alpha(r, options=opts)
        h = quality_gate(r, options=opts)
        gate = _scatter(rows, (1 - h).to(cdt), b)
        w = term.weight * opts.lambda_sgo * gate * per_row / count
        diag = {"dense/sgo_alpha": mean_value(alpha), "dense/sgo_gate": mean_value(h)}
    return _DenseTerm(rows, term.divergence, _scatter(rows, alpha.to(cdt), b), w.to(cdt), term.key), diag


def _plan(
    spec: MethodSpec, batch: DistillBatch, ctx: LossContext, token_counts: tuple[int, int], cdt: torch.dtype
) -> _Plan:
    """The dense terms, the rows the sequence part reads, and the dense diagnostics of a method.

    ``token_counts`` = (M_T, M_S), the normalisers of ``reduction="token"``.
    """
    if spec.takes_options and batch.quality is None:
        raise ValueError(f"{spec.name} needs quality (r ∈ [0, 1] per sample), which is None")
    norms = _norms(batch, ctx, token_counts, cdt)
    terms: list[_DenseTerm] = []
    diag: dict[str, float] = {}
    for term in spec.dense_terms(ctx.params, ctx.options):
        if not bool(norms.rows[term.rows].any()):
            continue
        if term.adaptive:
            dense, term_diag = _adaptive_term(term, batch, ctx.options, norms, cdt)
            diag.update(term_diag)
        else:
            dense = _fixed_term(term, norms, cdt)
        terms.append(dense)
    seq = spec.sequence
    if seq is None:
        return _Plan(terms, torch.zeros_like(batch.is_tgo), False, diag)
    return _Plan(terms, norms.rows[seq.rows], seq.teacher_tokens, diag)


def _pack_tokens(
    mask: Tensor, plan: _Plan, cdt: torch.dtype
) -> tuple[Tensor, Tensor, tuple[tuple[int, int, int], ...], Tensor, Tensor, list[tuple[int, int]]]:
    """Packed positions (rows, cols) grouped by term, segments, per-token param and weight."""
    b = mask.shape[0]
    dev = mask.device
    k = len(plan.terms)
    row_term = torch.full((b,), k, dtype=torch.long, device=dev)  # k: sequence-only
    param = torch.zeros(b, dtype=cdt, device=dev)
    weight = torch.zeros(b, dtype=cdt, device=dev)
    for i, term in enumerate(plan.terms):
        row_term = torch.where(term.rows, i, row_term)
        param = torch.where(term.rows, term.param, param)
        weight = torch.where(term.rows, term.weight, weight)
    used = (row_term < k) | plan.seq_rows
    pos = torch.nonzero(mask & used[:, None])
    key = row_term[pos[:, 0]]
    order = torch.sort(key, stable=True).indices
    pos, key = pos[order], key[order]
    counts = torch.bincount(key, minlength=k + 1).tolist()
    segments: list[tuple[int, int, int]] = []
    spans: list[tuple[int, int]] = []
    start = 0
    for i, count in enumerate(counts):
        code = int(plan.terms[i].divergence) if i < k else _NONE
        if count:
            segments.append((start, start + count, code))
        spans.append((start, start + count))
        start += count
    rows = pos[:, 0]
    return pos[:, 0], pos[:, 1], tuple(segments), param[rows], weight[rows], spans[:k]


@dataclasses.dataclass(frozen=True)
class _Packed:
    """The outputs of the chunk loop over the packed tokens of one call."""

    rows: Tensor  # (N,) batch row of each packed token
    cols: Tensor  # (N,) position of each packed token
    spans: list[tuple[int, int]]  # packed range of each dense term
    dense_loss: Tensor  # Σ of the dense terms (scalar)
    student_tokens: Tensor  # (N,) log q(y_t)
    teacher_tokens: Tensor  # (N,) log p(y_t) (zeros unless the plan wants them)
    values: Tensor  # (N,) per-token divergence values of the dense terms


def _check_finite_inputs(role: str, hidden: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """No NaN in the packed hidden states, the weight, the bias (``role`` prefixes the names)."""
    if is_validation_enabled():
        prefix = f"{role}_" if role else ""
        check_no_nan(f"{prefix}hidden (at masked-in positions)", hidden)
        check_no_nan(f"{prefix}weight", weight)
        if bias is not None:
            check_no_nan(f"{prefix}bias", bias)


def _run_heads(
    heads: _Heads, mask: Tensor, plan: _Plan, tau: float, chunk_size: int | None, kernel: Kernel
) -> _Packed | None:
    """Pack the tokens the plan reads and run the chunk loop over them (``None``: no token)."""
    cdt = heads.cdt
    rows, cols, segments, param, weight, spans = _pack_tokens(mask, plan, cdt)
    if rows.numel() == 0:
        return None
    packed_hs = _scaled(heads.hs[rows, cols], tau, cdt)
    packed_ht = None
    if heads.ht is not None and (plan.terms or plan.teacher_tokens):
        packed_ht = _scaled(heads.ht[rows, cols], tau, cdt)
    bs, bt = _scaled_bias(heads.bs, tau, cdt), _scaled_bias(heads.bt, tau, cdt)
    _check_finite_inputs("student", packed_hs, heads.ws, bs)
    if packed_ht is not None:
        assert heads.wt is not None
        _check_finite_inputs("teacher", packed_ht, heads.wt, bt)
    with torch.no_grad():
        la = torch.log(param).view(-1, 1)
        l1a = torch.log1p(-param).view(-1, 1)
    inputs = (packed_hs, heads.ws, bs)
    want_grad = torch.is_grad_enabled() and any(x.requires_grad for x in inputs if x is not None)
    pack = _Pack(
        targets=heads.ids[rows, cols].long(),
        segments=segments,
        param=param.view(-1, 1),
        la=la,
        l1a=l1a,
        weight=weight.view(-1, 1),
        teacher_tokens=plan.teacher_tokens,
        chunk_size=default_chunk_size(heads.ws.shape[0], cdt) if chunk_size is None else chunk_size,
        kernel=kernel,
        want_grad=want_grad,
        cdt=cdt,
    )
    dense_loss, s_tok, t_tok, values = _ChunkedHeads.apply(  # type: ignore[no-untyped-call]
        packed_hs, heads.ws, bs, packed_ht, None if packed_ht is None else heads.wt, bt, pack
    )
    return _Packed(rows, cols, spans, dense_loss, s_tok, t_tok, values)


def _finish(spec: MethodSpec, plan: _Plan, batch: DistillBatch, ctx: LossContext, out: _Packed) -> LossOutput:
    """The dense loss and its diagnostics, plus the method's sequence-level part on token log-probs."""
    diagnostics = dict(plan.diagnostics)
    for term, (a, b) in zip(plan.terms, out.spans, strict=True):
        diagnostics[term.value_key] = float(out.values[a:b].sum() / (b - a))
    terms: list[Tensor] = [out.dense_loss] if plan.terms else []
    seq = spec.sequence
    if seq is not None:
        zeros = torch.zeros(batch.mask.shape, dtype=out.student_tokens.dtype, device=batch.mask.device)
        index = (out.rows, out.cols)
        student_tok = zeros.index_put(index, out.student_tokens)
        teacher_tok = zeros.index_put(index, out.teacher_tokens) if plan.teacher_tokens else None
        tok_batch = dataclasses.replace(batch, student_token_logp=student_tok, teacher_token_logp=teacher_tok)
        part = seq.loss(tok_batch, ctx)
        if part is not None and seq.first:
            terms.insert(0, part[0])
            diagnostics = {**part[1], **diagnostics}
        elif part is not None:
            terms.append(part[0])
            diagnostics.update(part[1])
    return sum_terms(terms, batch, diagnostics)


# ----------------------------------------------------------------------------------------------
# Public entry points.
# ----------------------------------------------------------------------------------------------


def chunked_loss(
    method: str,
    *,
    student_hidden: Float[Tensor, "batch seq hidden"],
    student_weight: Float[Tensor, "vocab hidden"],
    teacher_hidden: Float[Tensor, "batch seq teacher_hidden"] | None = None,
    teacher_weight: Float[Tensor, "vocab teacher_hidden"] | None = None,
    target_ids: Int[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    is_tgo: Bool[Tensor, " batch"],
    quality: Float[Tensor, " batch"] | None = None,
    behaviour_logp: Float[Tensor, " batch"] | None = None,
    group: Int[Tensor, " batch"] | None = None,
    options: ASKDOptions | None = None,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    chunk_size: int | None = None,
    student_bias: Float[Tensor, " vocab"] | None = None,
    teacher_bias: Float[Tensor, " vocab"] | None = None,
    kernel: Kernel = "fused",
    temperature: float = 1.0,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    loss_type: str | None = None,
    eps_a: float | None = None,
) -> LossOutput:
    r"""Any method of :func:`~askd_ref.compute_loss`, from hidden states, chunk by chunk.

    Equal in value and gradient (within :mod:`askd_ref.porting.tolerances`) to
    ``compute_loss(method, DistillBatch(...))`` with full log-probs
    ``log_softmax(hidden @ weightᵀ + bias)``, but never materialises (tokens × vocab) logits for
    the whole batch: the peak extra memory is two ``(chunk_size, vocab)`` buffers, two
    cache-sized row blocks, the saved ``(tokens, hidden)`` and ``(vocab, hidden)`` gradients and
    the packed hidden states.

    * Sequence-level terms (``askd`` E11–E13, ``seqkd``, the SGO term of ``advantage_kd``) are
      computed by the library's own loss functions on the chunked token log-probs
      ``log q(y_t|c_t)``, ``log p(y_t|c_t)`` (see :func:`chunked_token_log_probs`).
    * Dense terms (``askd-dense`` E15, ``askd`` with ``lambda_dense > 0``, ``kd``, ``rkl``,
      ``gkd``, ``distillm``, ``distillm2``, the FKL term of ``advantage_kd``) are summed per
      sample chunk by chunk, with the same pooling and normalisers as the full-logit losses.

    Gradients flow to ``student_hidden``, ``student_weight`` and ``student_bias`` (whichever
    require grad); the teacher never receives gradient.

    Args:
        method: one of :data:`~askd_ref.METHODS`.
        student_hidden: final hidden states, ``(batch, seq, hidden)``; position t predicts
            ``target_ids[:, t]`` (already shifted; see the module docstring).
        student_weight: output projection ``(vocab, hidden)`` (``lm_head.weight``).
        teacher_hidden: ``(batch, seq, teacher_hidden)``; the teacher's hidden size may differ.
            Not needed by ``seqkd``.
        teacher_weight: ``(vocab, teacher_hidden)``, the same vocabulary as the student (slice
            padded heads to the shared tokenizer vocabulary first).
        target_ids: integer ``(batch, seq)``, the sampled token at each position.
        mask: bool ``(batch, seq)``, True on response positions; every row needs one.
        is_tgo: bool ``(batch,)``, True for teacher-generated outputs.
        quality: ``(batch,)`` r ∈ [0, 1] (``askd``, ``askd-dense``, ``advantage_kd``).
        behaviour_logp: ``(batch,)`` behaviour-policy sequence log-probs for off-policy SGOs (E13).
        group: integer ``(batch,)`` prompt ids (``advantage_kd``).
        options: :class:`~askd_ref.ASKDOptions` for ``askd``/``askd-dense``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        chunk_size: packed tokens per projection chunk (any positive int; values and gradients
            do not depend on it beyond rounding); ``None``: :func:`default_chunk_size`.
        student_bias: optional ``(vocab,)`` output bias of the student.
        teacher_bias: optional ``(vocab,)`` output bias of the teacher.
        kernel: ``"fused"`` (closed-form logit gradients, default), ``"compiled"`` (the same
            formulas as a C kernel built at first use, float32 on CPU; see
            :mod:`askd_ref.compiled`) or ``"core"`` (the library's divergence functions and
            autograd per chunk; slower, the reference).
        temperature: τ > 0; student and teacher logits are divided by τ before the log-softmax
            (no τ² factor, as TRL and Liger-Kernel): the loss equals the full-logit loss on
            ``log_softmax((hidden @ weightᵀ + bias) / τ)``. Applies to every term, the token
            log-probs of the sequence-level terms included.
        reduction: ``"sample"`` (default) or ``"token"`` for the token-level terms (see
            :mod:`askd_ref.baselines`).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.
        alpha, beta, loss_type, eps_a: the method's parameters (:data:`~askd_ref.METHOD_PARAMS`:
            ``beta`` of ``gkd``; ``alpha`` of ``distillm``; ``alpha``, ``beta``, ``loss_type`` of
            ``distillm2``; ``eps_a`` of ``advantage_kd``); ``None``: the loss function's default.

    Returns:
        :class:`~askd_ref.LossOutput` with the loss and the diagnostics of the full-logit method.

    Example:
        >>> import torch
        >>> from askd_ref import DistillBatch, compute_loss
        >>> g = torch.Generator().manual_seed(0)
        >>> hs = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
        >>> ht = torch.randn(2, 3, 5, generator=g, dtype=torch.float64)
        >>> ws = torch.randn(7, 4, generator=g, dtype=torch.float64)
        >>> wt = torch.randn(7, 5, generator=g, dtype=torch.float64)
        >>> ids = torch.randint(0, 7, (2, 3), generator=g)
        >>> mask = torch.tensor([[True, True, False], [True, True, True]])
        >>> kw = dict(is_tgo=torch.tensor([True, False]), quality=torch.tensor([0.9, 0.2]))
        >>> out = chunked_loss("askd-dense", student_hidden=hs, student_weight=ws, teacher_hidden=ht,
        ...                    teacher_weight=wt, target_ids=ids, mask=mask, chunk_size=2, **kw)
        >>> full = compute_loss("askd-dense", DistillBatch(
        ...     mask=mask, student_logp=torch.log_softmax(hs @ ws.T, -1),
        ...     teacher_logp=torch.log_softmax(ht @ wt.T, -1), **kw))
        >>> bool(torch.isclose(out.loss, full.loss, rtol=1e-12, atol=0.0))
        True
    """
    spec = method_spec(method)
    _check_chunk(chunk_size, kernel)
    opts = resolve_options(options)
    given = check_method_params(method, alpha=alpha, beta=beta, loss_type=loss_type, eps_a=eps_a)
    tau = check_temperature(temperature)
    mask = check_batch_mask(mask)
    batch = DistillBatch(
        mask=mask, is_tgo=is_tgo, quality=quality, behaviour_logp=behaviour_logp, group=group
    )
    student = (student_hidden, student_weight, student_bias)
    heads = _check_heads(spec, mask, student, (teacher_hidden, teacher_weight, teacher_bias), target_ids)
    _, _, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    ctx = LossContext(
        options=opts,
        params={**spec.defaults(), **given},
        num_tgo=num_tgo,
        num_sgo=num_sgo,
        n_tgo=n_t,
        n_sgo=n_s,
        reduction=reduction,
        num_tgo_tokens=num_tgo_tokens,
        num_sgo_tokens=num_sgo_tokens,
    )
    _check_compiled(kernel, heads)
    plan = _plan(spec, batch, ctx, (m_t, m_s), heads.cdt)
    out = _run_heads(heads, mask, plan, tau, chunk_size, kernel)
    if out is None:
        return sum_terms([], batch, {})  # raises: nothing this method trains on
    return _finish(spec, plan, batch, ctx, out)


def _scaled(hidden: Tensor, tau: float, cdt: torch.dtype) -> Tensor:
    """hidden / τ in the compute dtype (so z/τ = (h/τ)·Wᵀ + b/τ); untouched at τ = 1."""
    return hidden if tau == 1.0 else hidden.to(cdt) / tau


def _scaled_bias(bias: Tensor | None, tau: float, cdt: torch.dtype) -> Tensor | None:
    return None if bias is None else _scaled(bias, tau, cdt)


def chunked_token_log_probs(
    hidden: Float[Tensor, "batch seq hidden"],
    weight: Float[Tensor, "vocab hidden"],
    target_ids: Int[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    *,
    bias: Float[Tensor, " vocab"] | None = None,
    chunk_size: int | None = None,
    temperature: float = 1.0,
) -> Float[Tensor, "batch seq"]:
    r"""Token log-probs log softmax((hidden·Wᵀ + b)/τ)[target] without (tokens × vocab) logits.

    .. math:: \ell_t = z_{t, y_t} - \log\sum_v e^{z_{t,v}},\qquad z_t = (W h_t + b)/\tau

    Differentiable in ``hidden``, ``weight`` and ``bias``: the backward pass recomputes each
    chunk's logits once (the forward keeps one log-sum-exp per token). The values feed the
    sequence-level losses through ``DistillBatch(student_token_logp=..., teacher_token_logp=...)``.

    Args:
        hidden: ``(batch, seq, hidden)``; position t predicts ``target_ids[:, t]`` (shifted).
        weight: output projection ``(vocab, hidden)``.
        target_ids: integer ``(batch, seq)``.
        mask: bool ``(batch, seq)``; only True positions are computed.
        bias: optional ``(vocab,)``.
        chunk_size: tokens per projection chunk; ``None``: :func:`default_chunk_size`.
        temperature: τ > 0 dividing the logits (default 1).

    Returns:
        ``(batch, seq)`` log-probs, 0 at masked-out positions; float32 for half inputs.

    Example:
        >>> import torch
        >>> h = torch.zeros(1, 2, 3); w = torch.randn(4, 3)  # zero hidden state: uniform over 4
        >>> chunked_token_log_probs(h, w, torch.tensor([[1, 2]]), torch.tensor([[True, False]]))
        tensor([[-1.3863,  0.0000]])
    """
    _check_chunk(chunk_size, "fused")
    tau = check_temperature(temperature)
    mask = check_batch_mask(mask)
    shape = (int(mask.shape[0]), int(mask.shape[1]))
    h, w, b = _check_head("student", hidden, weight, bias, shape)
    check_same_device(hidden=h, mask=mask)
    ids = _check_targets(target_ids, mask, w.shape[0])
    cdt = compute_dtype(*(x.dtype for x in (h, w, b) if x is not None))
    rows, cols = torch.nonzero(mask, as_tuple=True)
    packed = _scaled(h[rows, cols], tau, cdt)
    b = _scaled_bias(b, tau, cdt)
    _check_finite_inputs("", packed, w, b)
    if rows.numel() == 0:
        return torch.zeros(shape, dtype=cdt, device=mask.device)
    n = rows.shape[0]
    pack = _Pack(
        targets=ids[rows, cols].long(),
        segments=((0, n, _NONE),),
        param=torch.zeros(n, 1, dtype=cdt, device=mask.device),
        la=torch.zeros(n, 1, dtype=cdt, device=mask.device),
        l1a=torch.zeros(n, 1, dtype=cdt, device=mask.device),
        weight=torch.zeros(n, 1, dtype=cdt, device=mask.device),
        teacher_tokens=False,
        chunk_size=default_chunk_size(w.shape[0], cdt) if chunk_size is None else chunk_size,
        kernel="fused",
        want_grad=False,
        cdt=cdt,
    )
    _, s_tok, _, _ = _ChunkedHeads.apply(packed, w, b, None, None, None, pack)  # type: ignore[no-untyped-call]
    out: Tensor = torch.zeros(shape, dtype=cdt, device=mask.device).index_put((rows, cols), s_tok)
    return out
