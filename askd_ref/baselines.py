"""Baseline distillation losses under the ASKD loss interface (spec §6).

Each takes a :class:`~askd_ref.DistillBatch` and the global sample counts and returns a
:class:`~askd_ref.LossOutput`; the reduction is the same as ASKD's (pool each sample over its
tokens with a token mean, average over samples). Which samples each term sees:

=============== ============================================================================
``seqkd``       NLL −S̄_θ(y) on TGOs (sequence-level KD, Kim & Rush 2016)
``kd``          FKL(p‖q) per token on TGOs (word-level KD)
``rkl``         RKL(q‖p) per token on SGOs (on-policy reverse KL; GKD with λ = 1, β = 1)
``gkd``         JSD_β, β = 0.5, per token on all samples (GKD, Agarwal et al. 2024)
``distillm``    SRKL_α, α = 0.1, full mixture gradient, per token on all samples (DistiLLM)
``distillm2``   SKL_α on TGOs + SRKL_α with stopped mixture on SGOs, α = 0.1 (DistiLLM-2)
``advantage_kd`` FKL on TGOs + −sg(A)·S̄_θ(y) on SGOs with group-normalised advantages
               A = (r − mean_group r)/(std_group r + ε_A) ("GRPO-like")
=============== ============================================================================

For methods on "all samples" the normaliser is N_T + N_S. DistiLLM-2's released trainer
weights its two terms (2 − β)·SKL + β·SRKL with β = 1 by default, i.e. a plain sum of the two
means, which is what ``distillm2`` computes; the paper's CALD loss (its Eq. 5) has an extra
factor 1/2, a constant rescaling. ``distillm2`` takes that β (its ``gradual_beta`` schedule is
:func:`distillm2_gradual_beta`) and DistiLLM-2's ``loss_type="distillm_v1"`` (SRKL with the
stopped mixture on both kinds of rows).

Every token-level loss also takes ``reduction="token"``: one token mean over all loss positions
of the term's rows (TRL, Liger-Kernel and DistiLLM's reduction) instead of the default per-sample
token mean (``reduction="sample"``); the normalisers are then the TGO / SGO token counts, global
when ``num_tgo_tokens`` / ``num_sgo_tokens`` are given. The parameters of each method
(:data:`METHOD_PARAMS`) pass through :func:`compute_loss` and :func:`~askd_ref.chunked_loss` under
the same keywords.
"""

import math
from typing import Final, Literal, TypeAlias

import torch
from torch import Tensor

from askd_ref._reduce import Reduction, mean_value, pool_sums, split_counts, token_counts
from askd_ref._validation import (
    check_float_tensor,
    check_has_data,
    check_integer_tensor,
    check_range,
    check_same_device,
    compute_dtype,
)
from askd_ref.divergences import Divergence
from askd_ref.losses import DistillBatch, LossOutput, packed_token_divergence, sum_terms
from askd_ref.sequence import check_token_batch, pool

__all__ = [
    "ADVANTAGE_KD_EPS_A",
    "DISTILLM2_ALPHA",
    "DISTILLM2_BETA",
    "DISTILLM2_LOSS_TYPE",
    "DISTILLM_ALPHA",
    "GKD_BETA",
    "advantage_kd_loss",
    "advantage_sgo_term",
    "check_distillm2_beta",
    "check_loss_type",
    "distillm2_gradual_beta",
    "distillm2_loss",
    "distillm_loss",
    "gkd_loss",
    "group_advantages",
    "kd_loss",
    "rkl_loss",
    "seqkd_loss",
]


Distillm2LossType: TypeAlias = Literal["distillm_v2", "distillm_v1"]

#: β of ``gkd``'s JSD_β (spec §6).
GKD_BETA: Final[float] = 0.5
#: Skew α of ``distillm`` (DistiLLM's default).
DISTILLM_ALPHA: Final[float] = 0.1
#: Skew α of both terms of ``distillm2`` (the released trainer's default).
DISTILLM2_ALPHA: Final[float] = 0.1
#: DistiLLM-2's term weight β: (2 − β)·TGO term + β·SGO term; 1 is the plain sum.
DISTILLM2_BETA: Final[float] = 1.0
#: DistiLLM-2's ``loss_type``: SKL on TGOs (``"distillm_v2"``) or SRKL (``"distillm_v1"``).
DISTILLM2_LOSS_TYPE: Final[Distillm2LossType] = "distillm_v2"
#: ε_A of the group-normalised advantages of ``advantage_kd``.
ADVANTAGE_KD_EPS_A: Final[float] = 1e-4


def _dense_mean(
    batch: DistillBatch,
    rows: Tensor,
    divergence: Divergence,
    param: float,
    count: int,
    token_count: int | None = None,
) -> tuple[Tensor, float]:
    """Σ over the selected samples of their token-mean divergence, / count; and the token mean.

    With ``token_count`` (``reduction="token"``): Σ over all their tokens, / token_count.
    """
    sums, lengths = packed_token_divergence(batch, rows, divergence, param)
    value = float(sums.detach().sum() / lengths.sum())
    if token_count is not None:
        return sums.sum() / token_count, value
    per_sample = pool_sums(sums, lengths, "mean")
    return per_sample.sum() / count, value


def check_distillm2_beta(beta: object) -> float:
    """DistiLLM-2's term weight β ∈ [0, 2]; ``ValueError``/``TypeError`` naming it."""
    if isinstance(beta, bool) or not isinstance(beta, int | float):
        raise TypeError(f"beta must be a float, got {type(beta).__name__} {beta!r}")
    if not (math.isfinite(float(beta)) and 0.0 <= float(beta) <= 2.0):
        raise ValueError(f"beta must lie in [0, 2] (weights (2 − β) and β), got {beta!r}")
    return float(beta)


def check_loss_type(loss_type: object) -> Distillm2LossType:
    """DistiLLM-2's ``loss_type``; ``ValueError`` naming it."""
    if loss_type not in ("distillm_v2", "distillm_v1"):
        raise ValueError(f"loss_type must be 'distillm_v2' or 'distillm_v1', got {loss_type!r}")
    return loss_type


def distillm2_gradual_beta(step: int, max_steps: int) -> float:
    r"""DistiLLM-2's ``gradual_beta`` weight: β = 1 + 0.5·min(1, 2·step / max_steps).

    Used as ``distillm2_loss(..., beta=β)``, i.e. the loss (2 − β)·SKL + β·SRKL: the weight moves
    from the TGO term to the SGO term over the first half of training (β: 1 → 1.5; in the paper's
    normalisation β/2: 0.5 → 0.75), then stays.

    >>> [distillm2_gradual_beta(s, 100) for s in (0, 25, 50, 100)]
    [1.0, 1.25, 1.5, 1.5]
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive int, got {max_steps!r}")
    return 1.0 + 0.5 * min(1.0, 2.0 * step / max_steps)


def _tok(reduction: str, count: int) -> int | None:
    return count if reduction == "token" else None


def seqkd_loss(
    batch: DistillBatch,
    *,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""Sequence-level KD: token-mean NLL of teacher-generated outputs.

    Baseline of spec §6.

    .. math:: L = \frac{1}{N_T}\sum_{i\in\mathrm{TGO}} -\bar S_\theta(y_i)

    A loss value (cross-entropy of the TGOs); SGO rows are ignored. ASKD's E11 at α → 0.

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with ``student_token_logp`` and ``mask`` of shape
            ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> s = torch.tensor([[-1.0, -3.0]], requires_grad=True)
        >>> b = DistillBatch(mask=torch.ones(1, 2, dtype=torch.bool), is_tgo=torch.tensor([True]),
        ...                  student_token_logp=s)
        >>> float(seqkd_loss(b).loss.detach())
        2.0
    """
    batch.require("seqkd_loss", "student_token_logp")
    tgo_rows, _, n_t, _ = split_counts(batch, num_tgo, num_sgo)
    m_t, _ = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        part = batch.select(tgo_rows)
        s, _, m = check_token_batch(part.student_token_logp, None, part.mask)
        nll = -pool(s, m, "mean")
        if reduction == "token":
            terms.append(-pool(s, m, "sum").sum() / m_t)
        else:
            terms.append(nll.sum() / n_t)
        diagnostics["seqkd/nll"] = mean_value(nll)
    return sum_terms(terms, batch, diagnostics)


def kd_loss(
    batch: DistillBatch,
    *,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""Word-level KD: forward KL(p‖q) per token on TGOs, token mean per sample.

    Baseline of spec §6.

    .. math:: L = \frac{1}{N_T}\sum_{i\in\mathrm{TGO}} \operatorname*{mean}_t \mathrm{KL}(p_t\|q_t)

    Returns true divergence values (0 at p = q). Its gradient is exact for the sequence-level
    forward KL because teacher prefixes do not depend on θ (T9).

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(1, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(1, 2, dtype=torch.bool), is_tgo=torch.tensor([True]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(kd_loss(b).loss)
        0.0
    """
    batch.require("kd_loss", "student_logp", "teacher_logp")
    tgo_rows, _, n_t, _ = split_counts(batch, num_tgo, num_sgo)
    m_t, _ = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        term, value = _dense_mean(batch, tgo_rows, Divergence.FKL, 0.0, n_t, token_count=_tok(reduction, m_t))
        terms.append(term)
        diagnostics["kd/fkl"] = value
    return sum_terms(terms, batch, diagnostics)


def rkl_loss(
    batch: DistillBatch,
    *,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""On-policy reverse KL: KL(q‖p) per token on SGOs, token mean per sample.

    Baseline of spec §6.

    .. math:: L = \frac{1}{N_S}\sum_{j\in\mathrm{SGO}} \operatorname*{mean}_t \mathrm{KL}(q_t\|p_t)

    Returns true divergence values; the gradient on sampled prefixes is G_single, not the
    sequence-level ∇RKL (T9).

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(1, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(1, 2, dtype=torch.bool), is_tgo=torch.tensor([False]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(rkl_loss(b).loss)
        0.0
    """
    batch.require("rkl_loss", "student_logp", "teacher_logp")
    _, sgo_rows, _, n_s = split_counts(batch, num_tgo, num_sgo)
    _, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(sgo_rows.any()):
        term, value = _dense_mean(batch, sgo_rows, Divergence.RKL, 0.0, n_s, token_count=_tok(reduction, m_s))
        terms.append(term)
        diagnostics["rkl/rkl"] = value
    return sum_terms(terms, batch, diagnostics)


def gkd_loss(
    batch: DistillBatch,
    *,
    beta: float = GKD_BETA,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""GKD: generalised JSD_β per token on all samples (TGOs and SGOs), token mean per sample.

    Baseline of spec §6.

    .. math:: L = \frac{1}{N_T + N_S}\sum_{i} \operatorname*{mean}_t \mathrm{JSD}_\beta(p_t, q_t)

    Returns true divergence values. β = 0.5 by default (spec §6). JSD_β is the continuous one
    of :func:`~askd_ref.generalized_jsd` (M = βp + (1−β)q, the mixture of TRL and Liger-Kernel):
    it is 0 at β ∈ {0, 1}, where TRL and Liger switch to plain KL(p‖q) / KL(q‖p) instead.

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(2, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(2, 2, dtype=torch.bool), is_tgo=torch.tensor([True, False]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(gkd_loss(b).loss)
        0.0
    """
    batch.require("gkd_loss", "student_logp", "teacher_logp")
    _, _, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    all_rows = torch.ones_like(batch.is_tgo)
    tokens = _tok(reduction, m_t + m_s)
    term, value = _dense_mean(batch, all_rows, Divergence.GJSD, beta, n_t + n_s, token_count=tokens)
    return sum_terms([term], batch, {"gkd/jsd": value})


def distillm_loss(
    batch: DistillBatch,
    *,
    alpha: float = DISTILLM_ALPHA,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""DistiLLM: skew reverse KL SRKL_α (full mixture gradient) per token on all samples.

    Baseline of spec §6.

    .. math:: L = \frac{1}{N_T + N_S}\sum_{i} \operatorname*{mean}_t \mathrm{SRKL}_\alpha(p_t, q_t)

    Returns true divergence values; α = 0.1 and no detach, as DistiLLM's ``skewed_reverse_kl``.

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(2, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(2, 2, dtype=torch.bool), is_tgo=torch.tensor([True, False]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(distillm_loss(b).loss)
        0.0
    """
    batch.require("distillm_loss", "student_logp", "teacher_logp")
    _, _, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    all_rows = torch.ones_like(batch.is_tgo)
    term, value = _dense_mean(
        batch, all_rows, Divergence.SRKL_FULL, alpha, n_t + n_s, token_count=_tok(reduction, m_t + m_s)
    )
    return sum_terms([term], batch, {"distillm/srkl": value})


def distillm2_loss(
    batch: DistillBatch,
    *,
    alpha: float = DISTILLM2_ALPHA,
    beta: float = DISTILLM2_BETA,
    loss_type: Distillm2LossType = DISTILLM2_LOSS_TYPE,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""DistiLLM-2 (released code defaults): SKL_α on TGOs + SRKL_α with stopped mixture on SGOs.

    Baseline of spec §6.

    .. math::
        L = \frac{1}{N_T}\sum_{i\in\mathrm{TGO}} \operatorname*{mean}_t \mathrm{SKL}_\alpha(p_t, q_t)
          + \frac{1}{N_S}\sum_{j\in\mathrm{SGO}}
            \operatorname*{mean}_t \mathrm{SRKL}_\alpha(p_t, \mathrm{sg}\,q_t)

    Returns true divergence values (the SRKL *value* does not depend on the stop-gradient).
    α = 0.1 for both terms, as in the released trainer (adaptive α and the β ramp are off by
    default there). Equals :func:`~askd_ref.dense_askd_loss` with α_lo = α_hi = α, gate
    ``"none"`` and ``mixture_grad="stop"``.

    DistiLLM-2's other switches: ``beta`` weights the terms (2 − β)·TGO term + β·SGO term (its
    ``kd_loss``; β = 1, the default, is the plain sum; ``gradual_beta`` is β =
    :func:`distillm2_gradual_beta` (step, max_steps)), and ``loss_type="distillm_v1"`` replaces
    the TGO term by SRKL_α with the stopped mixture, the same divergence as the SGO term (its
    "DistiLLM" baseline).

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

        alpha: the skew α ∈ [0, 1) of both terms.
        beta: weight β ∈ [0, 2] of the SGO term; the TGO term gets 2 − β.
        loss_type: ``"distillm_v2"`` (SKL on TGOs) or ``"distillm_v1"`` (SRKL, stopped mixture,
            on TGOs).

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(2, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(2, 2, dtype=torch.bool), is_tgo=torch.tensor([True, False]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(distillm2_loss(b).loss)
        0.0

    References:
        Ko et al., DistiLLM-2, ICML 2025 (arXiv:2503.07067); ``src/distillm_trainer.py``.
    """
    batch.require("distillm2_loss", "student_logp", "teacher_logp")
    beta = check_distillm2_beta(beta)
    loss_type = check_loss_type(loss_type)
    tgo_rows, sgo_rows, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, m_s = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        if loss_type == "distillm_v1":
            term, value = _dense_mean(batch, tgo_rows, Divergence.SRKL_STOP, alpha, n_t, _tok(reduction, m_t))
            diagnostics["distillm2/tgo_srkl"] = value
        else:
            term, value = _dense_mean(batch, tgo_rows, Divergence.SKL, alpha, n_t, _tok(reduction, m_t))
            diagnostics["distillm2/skl"] = value
        terms.append(term if beta == 1.0 else (2.0 - beta) * term)
    if bool(sgo_rows.any()):
        term, value = _dense_mean(batch, sgo_rows, Divergence.SRKL_STOP, alpha, n_s, _tok(reduction, m_s))
        terms.append(term if beta == 1.0 else beta * term)
        diagnostics["distillm2/srkl"] = value
    return sum_terms(terms, batch, diagnostics)


def group_advantages(quality: Tensor, group: Tensor, eps: float = 1e-4) -> Tensor:
    r"""Group-normalised advantages A = (r − mean_g r)/(std_g r + ε_A) (GRPO, population std).

    .. math:: A_i = \frac{r_i - \bar r_{g(i)}}{\sigma_{g(i)} + \epsilon_A}

    Not Lipschitz in r where a group's rewards are all equal (T12): with r = (1, …, 1, 1−η)
    and G samples, A_G = −√(G−1) for every η > 0 while A = 0 at η = 0.

    ``quality``: r ∈ [0, 1], shape ``(batch,)``; ``group``: integer prompt ids of the same shape;
    ``eps``: ε_A > 0. Half-precision quality is computed in float32.

    Example:
        >>> import torch
        >>> group_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0, 0, 1, 1]))
        tensor([ 0.9998, -0.9998,  0.0000,  0.0000])
    """
    quality = _check_advantage_inputs(quality, group, eps)
    ids, inverse = torch.unique(group, return_inverse=True)
    k = ids.shape[0]
    count = torch.zeros(k, dtype=quality.dtype, device=quality.device).index_add(
        0, inverse, torch.ones_like(quality)
    )
    mean = torch.zeros_like(count).index_add(0, inverse, quality) / count
    centred = quality - mean[inverse]
    var = torch.zeros_like(count).index_add(0, inverse, centred**2) / count
    # The clamp only matters when ε_A underflows in the dtype: a constant group gives 0, not 0/0.
    return centred / (var.sqrt()[inverse] + eps).clamp_min(torch.finfo(quality.dtype).tiny)


def _check_advantage_inputs(quality: object, group: object, eps: object) -> Tensor:
    """Validate :func:`group_advantages`' arguments; return quality in the compute dtype."""
    r = check_float_tensor("quality", quality, min_ndim=1)
    if r.ndim != 1:
        raise ValueError(f"quality must have shape (batch,), got {tuple(r.shape)}")
    group = check_integer_tensor("group", group, "prompt ids")
    check_has_data("group", group)
    if tuple(group.shape) != tuple(r.shape):
        raise ValueError(f"group must have the shape {tuple(r.shape)} of quality, got {tuple(group.shape)}")
    check_same_device(quality=r, group=group)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        raise TypeError(f"eps must be a float, got {type(eps).__name__} {eps!r}")
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps must be a positive finite float, got {eps!r}")
    check_range("quality", r, 0.0, 1.0)
    return r.to(compute_dtype(r.dtype))


def advantage_kd_loss(
    batch: DistillBatch,
    *,
    eps_a: float = ADVANTAGE_KD_EPS_A,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
) -> LossOutput:
    r"""GRPO-like KD: FKL on TGOs plus advantage-weighted log-likelihood on SGOs.

    Baseline of spec §6.

    .. math::
        L = \frac{1}{N_T}\sum_{i\in\mathrm{TGO}} \operatorname*{mean}_t \mathrm{KL}(p_t\|q_t)
          - \frac{1}{N_S}\sum_{j\in\mathrm{SGO}} \mathrm{sg}(A_j)\,\bar S_\theta(y_j)

    with A from :func:`group_advantages` over the SGOs of each prompt (``batch.group``). The SGO
    term is a gradient-equivalent surrogate ("advantages as multiplicative factors", the
    comparison arm of the ASKD abstract). Groups must be complete within one call.

    Args:
        batch: a :class:`~askd_ref.DistillBatch` with full-vocabulary ``student_logp`` and
            ``teacher_logp`` of shape ``(batch, seq, vocab)`` and ``mask`` ``(batch, seq)``,
            and for SGO rows ``student_token_logp`` ``(batch, seq)``, ``quality`` and ``group``.
        num_tgo: global TGO count (gradient accumulation / data parallel); default local.
        num_sgo: global SGO count; default local.
        reduction: ``"sample"`` (default: token mean per sample, then the mean over samples) or
            ``"token"`` (one token mean over all loss positions of the term's rows).
        num_tgo_tokens: global TGO token count (``reduction="token"``); default local.
        num_sgo_tokens: global SGO token count (``reduction="token"``); default local.

    Returns:
        :class:`~askd_ref.LossOutput` with a scalar loss.

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.zeros(2, 1, 3), -1)
        >>> s = torch.tensor([[-1.0], [-2.0]], requires_grad=True)
        >>> b = DistillBatch(mask=torch.ones(2, 1, dtype=torch.bool), is_tgo=torch.tensor([False, False]),
        ...                  quality=torch.tensor([1.0, 0.0]), student_token_logp=s,
        ...                  student_logp=lp, teacher_logp=lp, group=torch.tensor([0, 0]))
        >>> advantage_kd_loss(b).loss.backward(); s.grad
        tensor([[-0.5000],
                [ 0.5000]])
    """
    batch.require("advantage_kd_loss", "student_logp", "teacher_logp")
    tgo_rows, _, n_t, n_s = split_counts(batch, num_tgo, num_sgo)
    m_t, _ = token_counts(batch, reduction, num_tgo_tokens, num_sgo_tokens)
    terms: list[Tensor] = []
    diagnostics: dict[str, float] = {}
    if bool(tgo_rows.any()):
        term, value = _dense_mean(batch, tgo_rows, Divergence.FKL, 0.0, n_t, token_count=_tok(reduction, m_t))
        terms.append(term)
        diagnostics["advantage_kd/fkl"] = value
    sgo_term = advantage_sgo_term(batch, n_s, eps_a)
    if sgo_term is not None:
        terms.append(sgo_term[0])
        diagnostics.update(sgo_term[1])
    return sum_terms(terms, batch, diagnostics)


def advantage_sgo_term(
    batch: DistillBatch, num_sgo: int, eps_a: float, *, check_quality: bool = False
) -> tuple[Tensor, dict[str, float]] | None:
    """The SGO term −(1/N_S)·Σ sg(A_j)·S̄_θ(y_j) of :func:`advantage_kd_loss` and its diagnostics.

    Reads ``student_token_logp``, ``quality`` and ``group`` of the SGO rows; ``None`` when the
    batch holds no SGO. ``check_quality`` checks r ∈ [0, 1] before any cast (the chunked path,
    whose token log-probs may be in a lower precision than the quality).
    """
    sgo_rows = ~batch.is_tgo
    if not bool(sgo_rows.any()):
        return None
    batch.require("advantage_kd_loss", "student_token_logp", "quality", "group")
    part = batch.select(sgo_rows)
    assert part.quality is not None
    assert part.group is not None
    s, _, m = check_token_batch(part.student_token_logp, None, part.mask)
    if check_quality:
        check_range("quality", part.quality, 0.0, 1.0)
    adv = group_advantages(part.quality.to(s.dtype), part.group, eps_a).detach()
    term = -(adv * pool(s, m, "mean")).sum() / num_sgo
    return term, {
        "advantage_kd/adv_mean": mean_value(adv),
        "advantage_kd/adv_abs_max": float(adv.abs().max()),
    }
