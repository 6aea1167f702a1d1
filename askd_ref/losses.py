"""ASKD losses (spec §6, E11–E15) and the shared loss interface.

Every loss is a pure function of log-probs that returns a :class:`LossOutput`: a scalar loss
tensor to call ``backward()`` on, the number of samples it averaged over, and diagnostics (no
gradient) as Python floats. The sequence-level losses E11–E13 are *gradient-equivalent
surrogates* sg(c)·S_θ(y): their value is not a divergence, their gradient is the coefficient
times the score. Diagnostics carry the divergence estimates.

Reduction. By default (``reduction="sample"``) each sample's loss is pooled over its tokens
(``normalize``), then summed over samples and divided by the sample count. Pass the *global*
counts (``num_samples``, or ``num_tgo`` / ``num_sgo``) when a batch is split across
gradient-accumulation steps or ranks; the sum of the micro-batch losses then has exactly the
gradient of one batch holding all samples (E14). Token-level terms (the dense divergences of
``askd-dense``, of ``askd`` with ``lambda_dense > 0`` and of the baselines) also take
``reduction="token"``: one token mean over all loss positions of the term's rows — the
per-token divergences are summed and divided by the number of those positions (global counts
``num_tgo_tokens`` / ``num_sgo_tokens`` under accumulation and data parallelism), which is
what TRL, Liger-Kernel and DistiLLM compute. The sequence-level terms E11–E13 stay per sample.
"""

import dataclasses
from collections.abc import Mapping

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from askd_ref._reduce import (
    REDUCTIONS,
    Reduction,
    check_count,
    mean_value,
    pool_sums,
    split_counts,
    token_counts,
)
from askd_ref._validation import (
    check_batch_mask,
    check_bool_mask,
    check_float_tensor,
    check_integer_tensor,
    check_no_nan,
    check_rows_nonempty,
    check_same_device,
    check_same_vocab,
    to_param_tensor,
)
from askd_ref.coefficients import clipped_sgo_coefficient, log_u, sgo_coefficient_kernel, tgo_coefficient
from askd_ref.divergences import Divergence
from askd_ref.options import ASKDOptions, resolve_options
from askd_ref.schedules import quality_gate, sgo_alpha, tgo_alpha
from askd_ref.sequence import check_token_batch, length_corrected_sgo_coefficient, pool

__all__ = [
    "REDUCTIONS",
    "DistillBatch",
    "LossOutput",
    "Reduction",
    "askd_loss",
    "check_count",
    "clipped_ratio_surrogate",
    "dense_askd_loss",
    "packed_token_divergence",
    "pool_sums",
    "sgo_loss",
    "sum_terms",
    "tgo_loss",
]


@dataclasses.dataclass(frozen=True)
class LossOutput:
    """Result of every loss in :mod:`askd_ref`.

    Attributes:
        loss: scalar tensor with gradient; float32 for half inputs, else the input dtype.
        sample_count: number of samples this call averaged over locally (TGOs + SGOs).
        diagnostics: named floats computed without gradient (means over this call's samples);
            keys are ``"<group>/<quantity>"``, e.g. ``"tgo/w"``, ``"sgo/gate_reduced_frac"``.
    """

    loss: Tensor
    sample_count: int
    diagnostics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class DistillBatch:
    """A batch of teacher- and student-generated samples, padded to one length.

    Only the fields a method needs must be set: sequence-level methods (``askd``, ``seqkd``)
    need the token log-probs, dense methods (``askd-dense``, ``kd``, ``gkd``, ``distillm``,
    ``distillm2``, …) the full-vocabulary log-probs. Shapes are checked on construction; values
    are checked by the loss that uses them.

    Attributes:
        mask: bool ``(batch, seq)``, True on response tokens (already shifted, see
            :func:`~askd_ref.token_log_probs`); every row keeps at least one token.
        is_tgo: bool ``(batch,)``, True for teacher-generated outputs, False for student ones.
        quality: ``(batch,)`` quality r ∈ [0, 1] per sample (ASKD and ``advantage_kd``).
        student_token_logp: ``(batch, seq)`` log q(y_t|c_t) of the sampled tokens, with grad.
        teacher_token_logp: ``(batch, seq)`` log p(y_t|c_t) of the sampled tokens.
        student_logp: ``(batch, seq, vocab)`` full student log-probs, with grad.
        teacher_logp: ``(batch, seq, vocab)`` full teacher log-probs.
        behaviour_logp: ``(batch,)`` Σ_t log μ(y_t|c_t) of the policy that generated each SGO
            (off-policy E13); ``None`` for on-policy SGOs. Ignored on TGO rows.
        group: integer ``(batch,)`` prompt ids grouping samples of one prompt
            (``advantage_kd``).
    """

    mask: Bool[Tensor, "batch seq"]
    is_tgo: Bool[Tensor, " batch"]
    quality: Float[Tensor, " batch"] | None = None
    student_token_logp: Float[Tensor, "batch seq"] | None = None
    teacher_token_logp: Float[Tensor, "batch seq"] | None = None
    student_logp: Float[Tensor, "batch seq vocab"] | None = None
    teacher_logp: Float[Tensor, "batch seq vocab"] | None = None
    behaviour_logp: Float[Tensor, " batch"] | None = None
    group: Int[Tensor, " batch"] | None = None

    def __post_init__(self) -> None:
        check_batch_mask(self.mask)
        b, n = self.mask.shape
        if b == 0 or n == 0:
            raise ValueError(f"the batch is empty (mask shape {(b, n)})")
        check_rows_nonempty(self.mask)
        check_bool_mask("is_tgo", self.is_tgo, (b,))
        for name in ("student_token_logp", "teacher_token_logp"):
            self._check_shape(name, (b, n))
        for name in ("quality", "behaviour_logp"):
            self._check_shape(name, (b,))
        for name in ("student_logp", "teacher_logp"):
            x = getattr(self, name)
            if x is not None:
                check_float_tensor(name, x, min_ndim=3)
                if x.ndim != 3 or tuple(x.shape[:2]) != (b, n):
                    raise ValueError(f"{name} must have shape ({b}, {n}, vocab), got {tuple(x.shape)}")
        if self.student_logp is not None and self.teacher_logp is not None:
            vs, vt = self.student_logp.shape[-1], self.teacher_logp.shape[-1]
            check_same_vocab("student_logp", vs, "teacher_logp", vt, "entries")
        if self.group is not None:
            g = check_integer_tensor("group", self.group, "prompt ids")
            if tuple(g.shape) != (b,):
                raise ValueError(f"group must have shape ({b},), got {tuple(g.shape)}")
        check_same_device(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        x = getattr(self, name)
        if x is None:
            return
        check_float_tensor(name, x)
        if tuple(x.shape) != shape:
            raise ValueError(f"{name} must have shape {shape}, got {tuple(x.shape)}")

    @property
    def batch_size(self) -> int:
        return int(self.mask.shape[0])

    def select(self, rows: Tensor) -> "DistillBatch":
        """The sub-batch of the given rows (a bool mask or integer indices over the batch)."""
        idx = torch.nonzero(rows).squeeze(-1) if rows.dtype == torch.bool else rows
        changes = {
            f.name: getattr(self, f.name).index_select(0, idx)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }
        return dataclasses.replace(self, **changes)

    def require(self, method: str, *names: str) -> None:
        """Raise ``ValueError`` naming the first of ``names`` that is not set."""
        for name in names:
            if getattr(self, name) is None:
                raise ValueError(f"{method} needs batch.{name}, which is None")


def _quality_tensor(quality: object, like: Tensor) -> Tensor:
    q = to_param_tensor("quality", quality, dtype=like.dtype, device=like.device, lo=0.0, hi=1.0)
    if q.ndim == 0:
        return q.expand(like.shape[0])
    if tuple(q.shape) != (like.shape[0],):
        raise ValueError(
            f"quality must have shape ({like.shape[0]},) or be a float, got {tuple(q.shape)}"
        )
    return q


def tgo_loss(
    *,
    student_token_logp: Float[Tensor, "batch seq"],
    teacher_token_logp: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    quality: Float[Tensor, " batch"] | float,
    options: ASKDOptions | None = None,
    num_samples: int | None = None,
) -> LossOutput:
    r"""TGO loss ℓ_T(y) = −sg(w(Δ(y); α_T(r)))·S_θ(y) on teacher-generated outputs (spec E11).

    .. math::
        \mathcal L_T = \frac{1}{N}\sum_{i} -\,\mathrm{sg}\bigl(w(\Delta_i;\alpha_T(r_i))\bigr)\,S_\theta(y_i)

    A gradient-equivalent surrogate, not a divergence: for y ∼ p its expected gradient is
    exactly ∇J_T, the sequence-level skew KL with per-sample α (T1, T2); with constant α it is
    ∇SKL_α,seq. Δ and S use ``options.normalize`` (sum or token mean).

    Args:
        student_token_logp: log q(y_t|c_t), ``(batch, seq)``, with gradient.
        teacher_token_logp: log p(y_t|c_t), ``(batch, seq)``.
        mask: bool ``(batch, seq)``, True on response tokens.
        quality: r ∈ [0, 1], ``(batch,)`` or a float.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.
        num_samples: global TGO count to divide by (gradient accumulation / data parallel);
            default the local batch size.

    Returns:
        :class:`LossOutput` with diagnostics ``tgo/alpha``, ``tgo/w``, ``tgo/delta`` and
        ``tgo/skl_estimate`` = mean of −log(α + (1−α)e^Δ), the single-sample estimate of the
        sequence-level skew KL.

    Example:
        >>> import torch
        >>> s = torch.tensor([[-1.0, -2.0]], requires_grad=True); t = torch.tensor([[-1.0, -2.0]])
        >>> out = tgo_loss(student_token_logp=s, teacher_token_logp=t,
        ...                mask=torch.ones(1, 2, dtype=torch.bool), quality=1.0)
        >>> out.loss.backward(); s.grad  # Δ = 0, α_T(1) = 0.1 → w = 0.9, spread over 2 tokens
        tensor([[-0.4500, -0.4500]])
    """
    opts = resolve_options(options)
    s, t, m = check_token_batch(student_token_logp, teacher_token_logp, mask)
    assert t is not None
    n = check_count("num_samples", num_samples, s.shape[0])
    r = _quality_tensor(quality, s)
    delta = pool(s - t, m, opts.normalize).detach()
    alpha = tgo_alpha(r, options=opts)
    w = tgo_coefficient(delta, alpha)
    score = pool(s, m, opts.normalize)
    loss = -(w * score).sum() / n
    with torch.no_grad():
        skl = -torch.logaddexp(torch.log(alpha), torch.log1p(-alpha) + delta)
    return LossOutput(
        loss=loss,
        sample_count=int(s.shape[0]),
        diagnostics={
            "tgo/alpha": mean_value(alpha),
            "tgo/w": mean_value(w),
            "tgo/delta": mean_value(delta),
            "tgo/skl_estimate": mean_value(skl),
        },
    )


def sgo_loss(
    *,
    student_token_logp: Float[Tensor, "batch seq"],
    teacher_token_logp: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    quality: Float[Tensor, " batch"] | float,
    behaviour_logp: Float[Tensor, " batch"] | None = None,
    options: ASKDOptions | None = None,
    num_samples: int | None = None,
) -> LossOutput:
    r"""SGO loss on student-generated outputs, on-policy (E12) or off-policy (E13).

    On-policy (``behaviour_logp=None``, y ∼ q_θ):

    .. math:: \ell_S(y) = \mathrm{sg}\bigl(\hat c(\Delta(y), r)\bigr)\,S_\theta(y)

    Off-policy (y ∼ μ, ``behaviour_logp`` = log μ(y) summed over the response), with the
    sequence-level ratio ρ = exp(Σ_t ℓq_t − log μ(y)) (differentiable) and PPO clipping:

    .. math::
        \ell_S(y) = \max\bigl(\rho\,\hat c,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)\,\hat c\bigr) / Z

    where Z = |y| under ``normalize="mean"`` (else 1), so that at μ = q_θ the gradient equals
    E12's. ĉ (detached) is :func:`~askd_ref.clipped_sgo_coefficient`. Both are
    gradient-equivalent surrogates: on-policy with gate ``"none"`` and ``sgo_pullup="adaptive"``
    the expected gradient is exactly ∇UJ (T2; the default ``"fixed"`` pull-up gives ∇UJ with
    α_y = α_lo where q(y) < p(y)); off-policy it is unbiased while ρ is unclipped (T9).

    Args:
        student_token_logp: log q(y_t|c_t), ``(batch, seq)``, with gradient.
        teacher_token_logp: log p(y_t|c_t), ``(batch, seq)``.
        mask: bool ``(batch, seq)``, True on response tokens.
        quality: r ∈ [0, 1], ``(batch,)`` or a float.
        behaviour_logp: ``(batch,)`` sequence log-prob under the behaviour policy, or ``None``.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.
        num_samples: global SGO count to divide by; default the local batch size.

    Returns:
        :class:`LossOutput` with diagnostics ``sgo/alpha``, ``sgo/c_hat``, ``sgo/c_tilde`` (before
        the gate), ``sgo/gate``, ``sgo/gate_reduced_frac`` (share of samples with a positive
        push-down that the gate reduced), ``sgo/delta``, ``sgo/srkl_estimate`` = mean log u; and
        off-policy ``sgo/is_ratio`` and ``sgo/is_clip_frac`` (share of samples whose clipped
        branch is active, i.e. whose gradient the clip removed).

    Example:
        >>> import torch
        >>> s = torch.tensor([[-0.5, -0.5]], requires_grad=True); t = torch.tensor([[-1.5, -1.5]])
        >>> m = torch.ones(1, 2, dtype=torch.bool)
        >>> out = sgo_loss(student_token_logp=s, teacher_token_logp=t, mask=m, quality=0.0)
        >>> out.loss.backward(); s.grad  # Δ̄ = 1 > 0 and low quality: pushed down
        tensor([[0.3547, 0.3547]])
        >>> s.grad = None
        >>> sgo_loss(student_token_logp=s, teacher_token_logp=t, mask=m, quality=1.0).loss.backward()
        >>> s.grad  # top quality: the push-down is clipped away
        tensor([[0., 0.]])
    """
    opts = resolve_options(options)
    s, t, m = check_token_batch(student_token_logp, teacher_token_logp, mask)
    assert t is not None
    n = check_count("num_samples", num_samples, s.shape[0])
    r = _quality_tensor(quality, s)
    delta = pool(s - t, m, opts.normalize).detach()
    c_hat, diagnostics = _sgo_coefficient_and_diagnostics(delta, r, m.sum(-1), opts)
    if behaviour_logp is None:
        per_sample = c_hat * pool(s, m, opts.normalize)
    else:
        mu = _check_behaviour_logp(behaviour_logp, s)
        log_rho = s.sum(-1) - mu.to(s.dtype)
        rho = _importance_ratio(log_rho)
        per_sample = clipped_ratio_surrogate(rho, c_hat, opts.is_clip_eps)
        if opts.normalize == "mean":
            per_sample = per_sample / m.sum(-1).to(s.dtype)
        with torch.no_grad():
            diagnostics["sgo/is_ratio"] = mean_value(rho)
            diagnostics["sgo/is_clip_frac"] = mean_value(_clip_active(rho, c_hat, opts.is_clip_eps))
    loss = per_sample.sum() / n
    return LossOutput(loss=loss, sample_count=int(s.shape[0]), diagnostics=diagnostics)


def _sgo_coefficient_and_diagnostics(
    delta: Tensor, r: Tensor, lengths: Tensor, opts: ASKDOptions
) -> tuple[Tensor, dict[str, float]]:
    """ĉ of each SGO (E9, or its ``"uj"`` length correction) and the SGO diagnostics."""
    c_hat = clipped_sgo_coefficient(delta, r, options=opts)
    if opts.normalize == "mean" and opts.sgo_length_correction == "uj":
        c_hat = length_corrected_sgo_coefficient(delta, r, lengths, options=opts)
    alpha = sgo_alpha(r, options=opts)
    with torch.no_grad():
        h = quality_gate(r, options=opts)
        c_tilde = sgo_coefficient_kernel(delta, alpha, opts.mixture_grad)
        reduced = (h > 0) & (c_tilde > 0)
        diagnostics = {
            "sgo/alpha": mean_value(alpha),
            "sgo/c_hat": mean_value(c_hat),
            "sgo/c_tilde": mean_value(c_tilde),
            "sgo/gate": mean_value(h),
            "sgo/gate_reduced_frac": mean_value(reduced),
            "sgo/delta": mean_value(delta),
            "sgo/srkl_estimate": mean_value(log_u(delta, alpha)),
        }
    return c_hat, diagnostics


def _check_behaviour_logp(behaviour_logp: object, s: Tensor) -> Tensor:
    """``behaviour_logp`` of shape ``(batch,)`` on the device of the token log-probs, no NaN."""
    mu = check_float_tensor("behaviour_logp", behaviour_logp)
    if tuple(mu.shape) != (s.shape[0],):
        raise ValueError(f"behaviour_logp must have shape ({s.shape[0]},), got {tuple(mu.shape)}")
    check_same_device(student_token_logp=s, behaviour_logp=mu)
    check_no_nan("behaviour_logp", mu)
    return mu


def _importance_ratio(log_rho: Tensor) -> Tensor:
    """ρ = exp(log ρ) per sample, ``ValueError`` naming the first sample where it overflows."""
    rho = torch.exp(log_rho)
    if not bool(torch.isfinite(rho).all()):
        i = int(torch.nonzero(~torch.isfinite(rho))[0, 0])
        raise ValueError(
            f"importance ratio overflow for sample {i}: log ρ = {float(log_rho[i]):.4g}; "
            "behaviour_logp is stale or does not belong to this response"
        )
    return rho


def clipped_ratio_surrogate(rho: Tensor, coefficient: Tensor, epsilon: float) -> Tensor:
    r"""PPO's pessimistic clipped surrogate of a loss coefficient, per sample (E13).

    .. math:: \max\bigl(\rho\,c,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon)\,c\bigr)

    The loss-side form of ``rlax.clipped_surrogate_pg_loss`` (which maximises
    min(ρA, clip(ρ)A) with A = −c): where the clipped branch is the larger one, the gradient
    through ρ is zero. ``rho``, ``coefficient``: ``(batch,)``; ``coefficient`` carries no
    gradient. Returns ``(batch,)``.

    >>> import torch
    >>> clipped_ratio_surrogate(torch.tensor([0.5, 1.0, 2.0]), torch.tensor([1.0, 1.0, -1.0]), 0.2)
    tensor([ 0.8000,  1.0000, -1.2000])
    """
    unclipped = rho * coefficient
    clipped = torch.clamp(rho, 1 - epsilon, 1 + epsilon) * coefficient
    return torch.maximum(unclipped, clipped)


def _clip_active(rho: Tensor, coefficient: Tensor, epsilon: float) -> Tensor:
    """Whether the clipped branch of :func:`clipped_ratio_surrogate` is active (its gradient removed)."""
    return torch.clamp(rho, 1 - epsilon, 1 + epsilon) * coefficient > rho * coefficient


def _sequence_fields(part: DistillBatch) -> dict[str, Tensor]:
    """The keyword arguments of :func:`tgo_loss` / :func:`sgo_loss` taken from a batch."""
    fields = {
        "student_token_logp": part.student_token_logp,
        "teacher_token_logp": part.teacher_token_logp,
        "mask": part.mask,
        "quality": part.quality,
    }
    return {k: v for k, v in fields.items() if v is not None}


def askd_loss(
    batch: DistillBatch,
    *,
    options: ASKDOptions | None = None,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""ASKD total loss L = λ_T·mean_TGO ℓ_T + λ_S·mean_SGO ℓ_S (+ λ_D·dense) (spec E14).

    .. math::
        L = \frac{\lambda_T}{N_T}\sum_{i\in\mathrm{TGO}} \ell_T(y_i)
          + \frac{\lambda_S}{N_S}\sum_{j\in\mathrm{SGO}} \ell_S(y_j)
          + \lambda_D\,L_{\mathrm{dense}}

    ℓ_T is :func:`tgo_loss` (E11), ℓ_S is :func:`sgo_loss` (E12, or E13 when
    ``batch.behaviour_logp`` is set), L_dense is :func:`dense_askd_loss` (E15, only when
    ``options.lambda_dense > 0``). A gradient-equivalent surrogate. Pass the global
    ``num_tgo`` / ``num_sgo`` under gradient accumulation or data parallelism.

    Args:
        batch: a :class:`DistillBatch` with ``student_token_logp``, ``teacher_token_logp`` and
            ``quality`` (and full-vocabulary log-probs when ``lambda_dense > 0``).
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.
        num_tgo: global TGO count; default the TGOs in ``batch``.
        num_sgo: global SGO count; default the SGOs in ``batch``.
        reduction: reduction of the dense term (see :func:`dense_askd_loss`); the sequence
            terms are per sample either way.
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`LossOutput`; diagnostics of both groups plus ``askd/num_tgo``, ``askd/num_sgo``.

    Example:
        >>> import torch
        >>> s = torch.tensor([[-1.0, -2.0], [-0.5, -0.5]], requires_grad=True)
        >>> t = torch.tensor([[-1.0, -2.0], [-1.5, -1.5]])
        >>> batch = DistillBatch(mask=torch.ones(2, 2, dtype=torch.bool),
        ...                      is_tgo=torch.tensor([True, False]), quality=torch.tensor([1.0, 0.0]),
        ...                      student_token_logp=s, teacher_token_logp=t)
        >>> askd_loss(batch).loss.backward(); s.grad
        tensor([[-0.4500, -0.4500],
                [ 0.3547,  0.3547]])
    """
    opts = resolve_options(options)
    batch.require("askd_loss", "student_token_logp", "teacher_token_logp", "quality")
    tgo_rows, sgo_rows, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        part = batch.select(tgo_rows)
        out = tgo_loss(**_sequence_fields(part), options=opts, num_samples=n_t)
        terms.append(opts.lambda_tgo * out.loss)
        diagnostics.update(out.diagnostics)
    if bool(sgo_rows.any()):
        part = batch.select(sgo_rows)
        out = sgo_loss(
            **_sequence_fields(part), behaviour_logp=part.behaviour_logp, options=opts, num_samples=n_s
        )
        terms.append(opts.lambda_sgo * out.loss)
        diagnostics.update(out.diagnostics)
    if opts.lambda_dense > 0:
        dense = dense_askd_loss(
            batch,
            options=opts,
            num_tgo=num_tgo,
            num_sgo=num_sgo,
            reduction=reduction,
            num_tgo_tokens=num_tgo_tokens,
            num_sgo_tokens=num_sgo_tokens,
        )
        terms.append(opts.lambda_dense * dense.loss)
        diagnostics.update(dense.diagnostics)
    diagnostics["askd/num_tgo"] = float(tgo_rows.sum())
    diagnostics["askd/num_sgo"] = float(sgo_rows.sum())
    loss = torch.stack(terms).sum()
    return LossOutput(loss=loss, sample_count=batch.batch_size, diagnostics=diagnostics)


def packed_token_divergence(
    batch: DistillBatch,
    rows: Tensor,
    divergence: Divergence,
    alpha: Tensor | float,
) -> tuple[Tensor, Tensor]:
    """Per-sample token sums of a full-vocabulary divergence over the selected rows.

    Only masked-in positions of the selected rows are evaluated ("valid tokens packed first"):
    padding never enters the computation. Returns ``(sums, lengths)``, both ``(n_rows,)``.
    ``alpha`` (the ``param`` of :meth:`~askd_ref.divergences.Divergence.evaluate`) is a per-row
    tensor (or a float) and is expanded to the packed tokens.
    """
    assert batch.student_logp is not None
    assert batch.teacher_logp is not None
    idx = torch.nonzero(rows).squeeze(-1)
    mask = batch.mask.index_select(0, idx)
    pos = torch.nonzero(mask)  # (tokens, 2): local row, position
    s = batch.student_logp.index_select(0, idx)[pos[:, 0], pos[:, 1]]  # (tokens, vocab)
    t = batch.teacher_logp.index_select(0, idx)[pos[:, 0], pos[:, 1]]
    a: Tensor | float = alpha[pos[:, 0]] if isinstance(alpha, Tensor) and alpha.ndim else alpha
    per_token = divergence.evaluate(teacher_logp=t, student_logp=s, param=a)
    sums = torch.zeros(idx.shape[0], dtype=per_token.dtype, device=per_token.device)
    sums = sums.index_add(0, pos[:, 0], per_token)
    return sums, mask.sum(-1).to(per_token.dtype)


def dense_askd_loss(
    batch: DistillBatch,
    *,
    options: ASKDOptions | None = None,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""Dense ASKD ("askd-dense", quality-adaptive DistiLLM-2) over the full vocabulary (E15).

    .. math::
        L = \frac{\lambda_T}{N_T}\sum_{i\in\mathrm{TGO}} \operatorname*{mean}_t
              \mathrm{SKL}_{\alpha_T(r_i)}\bigl(p_t, q_t\bigr)
          + \frac{\lambda_S}{N_S}\sum_{j\in\mathrm{SGO}} (1 - h(r_j))\operatorname*{mean}_t
              \mathrm{SRKL}_{\alpha_S(r_j)}\bigl(p_t, q_t\bigr)

    Returns a loss built from true divergence values (not a surrogate), though its gradient is
    the token-level (prefix-detached) one: on SGOs it is G_single, not the sequence-level
    gradient (T9). ``options.mixture_grad`` applies to the SRKL term; SKL keeps the full
    gradient, as in DistiLLM and DistiLLM-2. Token pooling follows ``options.normalize``
    (``"mean"``, the default, is the mean over the sequence's tokens). With α_lo = α_hi = 0.1,
    gate ``"none"`` and ``mixture_grad="stop"`` it equals :func:`~askd_ref.distillm2_loss`.

    With ``reduction="token"`` each group is one token mean instead (``normalize`` no longer
    matters), M_T / M_S the TGO / SGO loss positions:

    .. math::
        L = \frac{\lambda_T}{M_T}\sum_{i\in\mathrm{TGO}}\sum_t \mathrm{SKL}_{\alpha_T(r_i)}(p_t, q_t)
          + \frac{\lambda_S}{M_S}\sum_{j\in\mathrm{SGO}} (1 - h(r_j))\sum_t
              \mathrm{SRKL}_{\alpha_S(r_j)}(p_t, q_t)

    Args:
        batch: a :class:`DistillBatch` with ``student_logp``, ``teacher_logp``, ``quality``.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.
        num_tgo: global TGO count; default the TGOs in ``batch``.
        num_sgo: global SGO count; default the SGOs in ``batch``.
        reduction: ``"sample"`` (default) or ``"token"`` (see above).
        num_tgo_tokens: global TGO token count M_T (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count M_S (``reduction="token"``); default local.

    Returns:
        :class:`LossOutput` with diagnostics ``dense/tgo_skl``, ``dense/sgo_srkl`` (per-token
        means), ``dense/tgo_alpha``, ``dense/sgo_alpha``, ``dense/sgo_gate``.

    Example:
        >>> import torch
        >>> logp = torch.log_softmax(torch.tensor([[[0.0, 1.0, 2.0]]]), -1)
        >>> batch = DistillBatch(mask=torch.ones(1, 1, dtype=torch.bool), is_tgo=torch.tensor([True]),
        ...                      quality=torch.tensor([0.5]), student_logp=logp, teacher_logp=logp)
        >>> float(dense_askd_loss(batch).loss)  # p = q: every divergence term is exactly 0
        0.0
    """
    opts = resolve_options(options)
    batch.require("dense_askd_loss", "student_logp", "teacher_logp", "quality")
    assert batch.quality is not None
    tgo_rows, sgo_rows, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        r = batch.quality[tgo_rows]
        alpha = tgo_alpha(r, options=opts)
        sums, lengths = packed_token_divergence(batch, tgo_rows, Divergence.SKL, alpha)
        if reduction == "token":
            terms.append(opts.lambda_tgo * sums.sum() / m_t)
        else:
            per_sample = pool_sums(sums, lengths, opts.normalize)
            terms.append(opts.lambda_tgo * per_sample.sum() / n_t)
        diagnostics["dense/tgo_skl"] = float(sums.detach().sum() / lengths.sum())
        diagnostics["dense/tgo_alpha"] = mean_value(alpha)
    if bool(sgo_rows.any()):
        r = batch.quality[sgo_rows]
        alpha = sgo_alpha(r, options=opts)
        h = quality_gate(r, options=opts)
        sums, lengths = packed_token_divergence(batch, sgo_rows, Divergence.srkl(opts.mixture_grad), alpha)
        if reduction == "token":
            terms.append(opts.lambda_sgo * ((1 - h) * sums).sum() / m_s)
        else:
            per_sample = (1 - h) * pool_sums(sums, lengths, opts.normalize)
            terms.append(opts.lambda_sgo * per_sample.sum() / n_s)
        diagnostics["dense/sgo_srkl"] = float(sums.detach().sum() / lengths.sum())
        diagnostics["dense/sgo_alpha"] = mean_value(alpha)
        diagnostics["dense/sgo_gate"] = mean_value(h)
    loss = torch.stack(terms).sum()
    return LossOutput(loss=loss, sample_count=batch.batch_size, diagnostics=diagnostics)


def sum_terms(terms: list[Tensor], batch: DistillBatch, diagnostics: dict[str, float]) -> LossOutput:
    """The loss Σ terms of a method over ``batch``; ``ValueError`` when it has no term."""
    if not terms:
        raise ValueError("the batch holds no samples of the kind this method trains on")
    return LossOutput(loss=torch.stack(terms).sum(), sample_count=batch.batch_size, diagnostics=diagnostics)
