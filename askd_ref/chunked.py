"""Memory-efficient losses from hidden states: the output projection and the loss, chunk by chunk.

At LLM vocabulary sizes the (tokens × vocab) logits, not the model, decide whether distillation
fits in memory. :func:`chunked_loss` takes the student's and teacher's *final hidden states* and
their output-projection weights (``lm_head``) and computes every method of
:func:`~askd_ref.compute_loss` without ever holding (tokens × vocab) logits for the whole batch:

* **Packing.** Only the positions a method trains on (``mask`` True, on the rows the method
  uses) are gathered into one packed list of tokens, grouped by the divergence they need.
  Masked positions cost nothing.
* **Chunks.** The packed tokens are projected ``chunk_size`` at a time; a chunk's logits live in
  at most four reusable ``(chunk_size, vocab)`` buffers and are discarded before the next chunk.
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

Two interchangeable per-chunk kernels compute the divergence values and their logit gradients:
``kernel="fused"`` (default) evaluates closed-form logit gradients with in-place operations in
preallocated buffers; ``kernel="core"`` calls the library's own divergence functions
(:func:`~askd_ref.skew_forward_kl`, …) on the chunk's log-probs and differentiates them with
autograd. Both are tested against the full-logit path; ``"core"`` is the slower reference.

Alignment: ``student_hidden[:, t]`` is the hidden state that *predicts* ``target_ids[:, t]``.
For a causal LM run on ``input_ids`` with response mask ``response_mask``, pass
``hidden[:, :-1]``, ``target_ids=input_ids[:, 1:]`` and ``mask=response_mask[:, 1:]`` — the same
shift as :func:`~askd_ref.token_log_probs`.
"""

import dataclasses
from typing import Any, Final, Literal, TypeAlias

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

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
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_forward_kl,
    skew_reverse_kl,
)
from askd_ref.losses import DistillBatch, LossOutput, sum_terms
from askd_ref.methods import DenseTerm, LossContext, MethodSpec, check_method_params, method_spec
from askd_ref.options import ASKDOptions, resolve_options
from askd_ref.schedules import quality_gate, sgo_alpha, tgo_alpha

__all__ = ["CHUNK_BYTES", "MAX_CHUNK_SIZE", "chunked_loss", "chunked_token_log_probs", "default_chunk_size"]

#: Byte budget of one (chunk × vocab) buffer when ``chunk_size`` is not given (the chunk loop
#: holds at most four such buffers).
CHUNK_BYTES: Final[int] = 256 * 2**20
#: Largest default chunk. On the benchmark CPU, chunks of 256–1024 tokens ran the projection
#: matmuls as fast as one unchunked matmul (``docs/benchmarks.md``); larger ones only grow the
#: buffers.
MAX_CHUNK_SIZE: Final[int] = 1024


def default_chunk_size(vocab: int, dtype: torch.dtype = torch.float32) -> int:
    """Packed tokens per chunk when ``chunk_size`` is ``None``.

    The largest power of two ≤ :data:`MAX_CHUNK_SIZE` whose ``(chunk, vocab)`` buffer in the
    compute ``dtype`` fits :data:`CHUNK_BYTES` (at least 16 tokens).

    >>> default_chunk_size(32768), default_chunk_size(151936), default_chunk_size(262144)
    (1024, 256, 256)
    """
    itemsize = torch.empty((), dtype=dtype).element_size()
    chunk = MAX_CHUNK_SIZE
    while chunk > 16 and chunk * vocab * itemsize > CHUNK_BYTES:
        chunk //= 2
    return chunk


Kernel: TypeAlias = Literal["fused", "core"]

# Divergence codes of the packed token groups: the :class:`~askd_ref.divergences.Divergence`
# members (an IntEnum), and _NONE for tokens whose log-probs only the sequence terms read.
_SKL, _SRKL_FULL, _SRKL_STOP, _FKL, _RKL, _GJSD = (
    Divergence.SKL,
    Divergence.SRKL_FULL,
    Divergence.SRKL_STOP,
    Divergence.FKL,
    Divergence.RKL,
    Divergence.GJSD,
)
_NONE: Final[int] = len(Divergence)


# ----------------------------------------------------------------------------------------------
# Per-chunk kernels. Inputs are views of the chunk's rows of one divergence (m rows, vocab V):
# ``s`` holds the student log-probs log q and ``t`` the teacher log-probs log p (both consumed:
# they are overwritten with q and p), ``x`` receives ∂L/∂logits when ``want_grad`` and ``y`` is
# scratch; ``a``, ``la``, ``l1a`` are (m, 1) columns α, log α, log(1 − α) (β for JSD) and ``w``
# the (m, 1) loss weight of each token. Each returns the per-token divergence values, (m,).
# ----------------------------------------------------------------------------------------------


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
    if code == _SKL:
        torch.sub(s, t, out=x).add_(l1a)  # log((1−α)q/p)
        p = t.exp_()
        torch.logaddexp(x, la, out=y)  # log(m/p)
        if want_grad:
            x.sub_(y).exp_().mul_(p).mul_(-w)  # −w·p ⊙ r
        value = -y.mul_(p).sum(-1)
        if want_grad:
            c = x.sum(-1, keepdim=True)  # −w·⟨p, r⟩
            x.addcmul_(s.exp_(), c, value=-1.0)  # w·(q·⟨p, r⟩ − p ⊙ r)
    elif code in (_SRKL_FULL, _SRKL_STOP):
        torch.sub(t, s, out=x).add_(l1a)  # log((1−α)p/q)
        torch.logaddexp(x, la, out=y)  # log(m/q)
        q = s.exp_()
        if want_grad and code == _SRKL_FULL:
            torch.neg(y, out=x).exp_().mul_(a).add_(y).mul_(q)  # q ⊙ (y + α q/m)
        y.mul_(q)
        value = -y.sum(-1)
        if want_grad:
            if code == _SRKL_FULL:
                c = x.sum(-1, keepdim=True)
                x.addcmul_(q, c, value=-1.0).mul_(-w)  # w·q ⊙ (c − x)
            else:
                torch.mul(q, -value.unsqueeze(-1), out=x).sub_(y).mul_(w)  # w·q ⊙ (⟨q, y⟩ − y)
    elif code == _FKL:
        torch.sub(t, s, out=x)  # log(p/q)
        p = t.exp_()
        value = x.mul_(p).sum(-1)
        if want_grad:
            torch.sub(s.exp_(), p, out=x).mul_(w)
    elif code == _RKL:
        torch.sub(s, t, out=x)  # log(q/p)
        q = s.exp_()
        value = x.mul_(q).sum(-1)
        if want_grad:
            x.addcmul_(q, value.unsqueeze(-1), value=-1.0).mul_(w)  # w·q ⊙ (log(q/p) − RKL)
    elif code == _GJSD:
        torch.sub(t, s, out=x)  # log(p/q)
        torch.add(x, la, out=y)
        torch.logaddexp(y, l1a, out=y)  # log(M/q)
        x.sub_(y)  # log(p/M)
        p, q = t.exp_(), s.exp_()
        vp = x.mul_(p).sum(-1, keepdim=True)
        yq = y.mul_(q).sum(-1, keepdim=True)
        value = (a * vp - (1 - a) * yq).view(-1)
        if want_grad:
            torch.mul(q, yq, out=x).sub_(y).mul_((1 - a) * w)  # (1−β)w·q ⊙ (⟨q, y⟩ − y)
    else:  # pragma: no cover - internal
        raise AssertionError(f"unknown divergence code {code}")
    return value


def _core_kernel(
    code: int, s: Tensor, t: Tensor, x: Tensor, param: Tensor, mixture_stop: bool, w: Tensor, want_grad: bool
) -> Tensor:
    """The same values and logit gradients from the library's divergence functions and autograd."""
    with torch.enable_grad(), validation_disabled():
        slp = s.detach().clone().requires_grad_(want_grad)
        a = param.view(-1)
        if code == _SKL:
            d = skew_forward_kl(teacher_logp=t, student_logp=slp, alpha=a)
        elif code in (_SRKL_FULL, _SRKL_STOP):
            d = skew_reverse_kl(
                teacher_logp=t, student_logp=slp, alpha=a, mixture_grad="stop" if mixture_stop else "full"
            )
        elif code == _FKL:
            d = forward_kl(teacher_logp=t, student_logp=slp)
        elif code == _RKL:
            d = reverse_kl(teacher_logp=t, student_logp=slp)
        elif code == _GJSD:
            d = generalized_jsd(teacher_logp=t, student_logp=slp, beta=a)
        else:  # pragma: no cover - internal
            raise AssertionError(f"unknown divergence code {code}")
        if want_grad:
            (g,) = torch.autograd.grad(d, slp, grad_outputs=w.view(-1).to(d.dtype))
            # chain rule through log_softmax: ∂/∂z = g − softmax(z)·Σ_v g_v
            x.copy_(g - slp.detach().exp() * g.sum(-1, keepdim=True))
    return d.detach()


# ----------------------------------------------------------------------------------------------
# The packed computation as one autograd Function.
# ----------------------------------------------------------------------------------------------


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
        cdt = pack.cdt
        dev = s_hidden.device
        n_tok = s_hidden.shape[0]
        vocab = s_weight.shape[0]
        ws = s_weight.to(cdt)
        bs = None if s_bias is None else s_bias.to(cdt)
        wt = None if t_weight is None else t_weight.to(cdt)
        bt = None if t_bias is None or wt is None else t_bias.to(cdt)
        has_teacher = t_hidden is not None and wt is not None
        dense = any(code != _NONE for _, _, code in pack.segments)
        want_grad = pack.want_grad and dense
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        chunk = min(pack.chunk_size, n_tok)

        def buf() -> Tensor:
            return torch.empty(chunk, vocab, dtype=cdt, device=dev)

        # At most four (chunk × vocab) buffers: student and teacher logits (turned into
        # log-probs, then probabilities), the logit gradient and one scratch buffer.
        sbuf = buf()
        tbuf = buf() if has_teacher else None
        xbuf = buf() if dense else None
        ybuf = buf() if dense and pack.kernel == "fused" else None

        s_tok = torch.empty(n_tok, dtype=cdt, device=dev)
        t_tok = torch.zeros(n_tok, dtype=cdt, device=dev)
        lse = torch.empty(n_tok, dtype=cdt, device=dev)
        values = torch.zeros(n_tok, dtype=cdt, device=dev)
        grad_h = grad_w = grad_b = None
        if want_grad and need_h:
            grad_h = torch.zeros(n_tok, s_hidden.shape[1], dtype=cdt, device=dev)
        if want_grad and need_w:
            grad_w = torch.zeros(vocab, s_weight.shape[1], dtype=cdt, device=dev)
        if want_grad and need_b:
            grad_b = torch.zeros(vocab, dtype=cdt, device=dev)

        for c0 in range(0, n_tok, chunk):
            c1 = min(n_tok, c0 + chunk)
            n = c1 - c0
            segs = [
                (max(a, c0) - c0, min(b, c1) - c0, code) for a, b, code in pack.segments if a < c1 and b > c0
            ]
            dense_chunk = any(code != _NONE for _, _, code in segs)
            y_ids = pack.targets[c0:c1, None]
            s = _project(s_hidden[c0:c1], ws, bs, sbuf[:n])
            lse[c0:c1] = s.gather(1, y_ids).view(-1)  # the target logit, for now
            torch.log_softmax(s, -1, out=s)
            s_tok[c0:c1] = s.gather(1, y_ids).view(-1)
            lse[c0:c1] -= s_tok[c0:c1]  # z_y − log q(y) = log Σ_v exp z_v
            t = None
            if has_teacher and (dense_chunk or pack.teacher_tokens):
                assert tbuf is not None
                assert t_hidden is not None
                assert wt is not None
                t = _project(t_hidden[c0:c1], wt, bt, tbuf[:n])
                torch.log_softmax(t, -1, out=t)
                t_tok[c0:c1] = t.gather(1, y_ids).view(-1)
            if not dense_chunk:
                continue
            assert t is not None
            assert xbuf is not None
            x = xbuf[:n]
            for lo, hi, code in segs:
                i0, i1 = c0 + lo, c0 + hi
                if code == _NONE:
                    x[lo:hi].zero_()  # no dense gradient on these rows
                elif pack.kernel == "fused":
                    assert ybuf is not None
                    values[i0:i1] = _fused_kernel(
                        code,
                        s[lo:hi],
                        t[lo:hi],
                        x[lo:hi],
                        ybuf[lo:hi],
                        pack.param[i0:i1],
                        pack.la[i0:i1],
                        pack.l1a[i0:i1],
                        pack.weight[i0:i1],
                        want_grad,
                    )
                else:
                    values[i0:i1] = _core_kernel(
                        code,
                        s[lo:hi],
                        t[lo:hi],
                        x[lo:hi],
                        pack.param[i0:i1],
                        code == _SRKL_STOP,
                        pack.weight[i0:i1],
                        want_grad,
                    )
            if want_grad:  # push ∂L/∂logits through the projection
                if grad_h is not None:
                    torch.mm(x, ws, out=grad_h[c0:c1])
                if grad_w is not None:
                    grad_w.addmm_(x.t(), s_hidden[c0:c1].to(cdt))
                if grad_b is not None:
                    grad_b.add_(x.sum(0))

        dense_loss = (values * pack.weight.view(-1)).sum()
        ctx.set_materialize_grads(False)
        ctx.mark_non_differentiable(t_tok, values)
        ctx.save_for_backward(s_hidden, s_weight, s_bias, lse)
        ctx.pack = pack
        ctx.dense_grads = (grad_h, grad_w, grad_b)
        return dense_loss, s_tok, t_tok, values

    @staticmethod
    def backward(
        ctx: Any, g_loss: Tensor | None, g_stok: Tensor | None, *_: Tensor | None
    ) -> tuple[Tensor | None, ...]:
        s_hidden, s_weight, s_bias, lse = ctx.saved_tensors
        pack: _Pack = ctx.pack
        cdt = pack.cdt
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        gh_d, gw_d, gb_d = ctx.dense_grads
        grad_h = gh_d * g_loss if gh_d is not None and g_loss is not None else None
        grad_w = gw_d * g_loss if gw_d is not None and g_loss is not None else None
        grad_b = gb_d * g_loss if gb_d is not None and g_loss is not None else None
        if g_stok is not None and bool((g_stok != 0).any()):
            # ∂ log q(y_t)/∂z = onehot(y_t) − softmax(z): recompute each chunk's logits once.
            ws = s_weight.to(cdt)
            bs = None if s_bias is None else s_bias.to(cdt)
            g = g_stok.to(cdt)
            n_tok, vocab = s_hidden.shape[0], ws.shape[0]
            chunk = min(pack.chunk_size, n_tok)
            zbuf = torch.empty(chunk, vocab, dtype=cdt, device=s_hidden.device)
            dev = s_hidden.device
            if need_h and grad_h is None:
                grad_h = torch.zeros(n_tok, s_hidden.shape[1], dtype=cdt, device=dev)
            if need_w and grad_w is None:
                grad_w = torch.zeros(vocab, s_weight.shape[1], dtype=cdt, device=dev)
            if need_b and grad_b is None:
                grad_b = torch.zeros(vocab, dtype=cdt, device=dev)
            for c0 in range(0, n_tok, chunk):
                c1 = min(n_tok, c0 + chunk)
                gc = g[c0:c1, None]
                if not bool((gc != 0).any()):
                    continue
                z = _project(s_hidden[c0:c1], ws, bs, zbuf[: c1 - c0])
                z.sub_(lse[c0:c1, None]).exp_().mul_(-gc)
                z.scatter_add_(1, pack.targets[c0:c1, None], gc)
                if grad_h is not None:
                    grad_h[c0:c1].addmm_(z, ws)
                if grad_w is not None:
                    grad_w.addmm_(z.t(), s_hidden[c0:c1].to(cdt))
                if grad_b is not None:
                    grad_b.add_(z.sum(0))
        out_h = None if grad_h is None or not need_h else grad_h.to(s_hidden.dtype)
        out_w = None if grad_w is None or not need_w else grad_w.to(s_weight.dtype)
        out_b = None if grad_b is None or not need_b or s_bias is None else grad_b.to(s_bias.dtype)
        return out_h, out_w, out_b, None, None, None, None


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
    if kernel not in ("fused", "core"):
        raise ValueError(f"kernel must be 'fused' or 'core', got {kernel!r}")


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

    Equal in value and gradient (within :mod:`askd_ref.tolerances`) to
    ``compute_loss(method, DistillBatch(...))`` with full log-probs
    ``log_softmax(hidden @ weightᵀ + bias)``, but never materialises (tokens × vocab) logits for
    the whole batch: the peak extra memory is four ``(chunk_size, vocab)`` buffers, the saved
    ``(tokens, hidden)`` and ``(vocab, hidden)`` gradients and the packed hidden states.

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
        kernel: ``"fused"`` (closed-form logit gradients, default) or ``"core"`` (the library's
            divergence functions and autograd per chunk; slower, the reference).
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
