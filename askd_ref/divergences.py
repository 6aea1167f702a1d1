"""Token-level divergences over the full vocabulary (spec §2, E1–E4).

Conventions, fixed once for the whole package:

* Arguments are keyword-only, ``teacher_logp`` (the teacher p) and ``student_logp`` (the
  student q), both log-probabilities over the last axis, shape ``(*batch, vocab)``. There is
  no positional teacher/student order to get wrong (``F.kl_div`` takes its arguments the other
  way round).
* α is always the weight of the distribution that sits in the *first* argument of the KL:
  SKL_α = KL(p ‖ αp + (1−α)q), SRKL_α = KL(q ‖ (1−α)p + αq). α = 0 is plain KL, α = 1 is 0.
* Values are true divergences (0 at p = q), never the cross-entropy form −Σ p log m that
  DistiLLM's ``skewed_forward_kl`` returns (which is the divergence plus the teacher entropy).
* Mixtures are formed in log space, ``logaddexp(log α + log p, log1p(−α) + log q)``, so
  α ∈ {0, 1} and extreme logits need no special branch; 0·log 0 = 0; ``-inf`` entries
  (masked or padded vocabulary ids) are allowed where the distribution that weights them gives
  them zero mass, and get zero gradient. Half-precision inputs are computed in float32 and the
  result is float32; float64 stays float64.
* Returned values are per position, shape ``(*batch)``, with no reduction.
"""

import enum
from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from askd_ref._validation import (
    broadcast_to,
    check_float_tensor,
    check_log_probs,
    check_same_device,
    check_same_vocab,
    compute_dtype,
    to_param_tensor,
)
from askd_ref.options import MixtureGrad

__all__ = [
    "Divergence",
    "forward_kl",
    "generalized_jsd",
    "reverse_kl",
    "skew_forward_kl",
    "skew_reverse_kl",
]

_NEG_INF = float("-inf")


def _prepare(teacher_logp: object, student_logp: object) -> tuple[Tensor, Tensor]:
    """Validate a (teacher, student) log-prob pair and cast both to the compute dtype."""
    t = check_float_tensor("teacher_logp", teacher_logp, min_ndim=1)
    s = check_float_tensor("student_logp", student_logp, min_ndim=1)
    check_same_device(teacher_logp=t, student_logp=s)
    check_same_vocab("teacher_logp", t.shape[-1], "student_logp", s.shape[-1], "entries on its last axis")
    if t.shape != s.shape:
        raise ValueError(
            f"teacher_logp and student_logp must have the same shape, got {tuple(t.shape)} "
            f"and {tuple(s.shape)}"
        )
    check_log_probs("teacher_logp", t)
    check_log_probs("student_logp", s)
    dtype = compute_dtype(t.dtype, s.dtype)
    t, s = t.to(dtype), s.to(dtype)
    return t, s


def _weight(name: str, value: object, like: Tensor) -> Tensor:
    """α or β as a tensor broadcast to ``like.shape[:-1]`` plus a trailing vocab axis."""
    w = to_param_tensor(name, value, dtype=like.dtype, device=like.device, lo=0.0, hi=1.0)
    w = broadcast_to(name, w, like.shape[:-1], "the batch shape (*batch) of the log-probs")
    return w.unsqueeze(-1)


def _log_mixture(log_a: Tensor, log_b: Tensor, weight_a: Tensor) -> Tensor:
    """log(w·a + (1−w)·b) from log a, log b (w ∈ [0, 1]), in two algebraically equal forms.

    * |log a − log b| < 1: log b + log1p(w·expm1(log a − log b)). Exact where a = b (the
      mixture of a distribution with itself is itself, so identical inputs give divergences of
      exactly 0) and well conditioned for every w, since 1 + w·expm1(d) ≥ e^{−1}.
    * elsewhere: logaddexp(log w + log a, log1p(−w) + log b), which never overflows and handles
      w ∈ {0, 1} exactly (always used there). Where both weighted terms are −inf (zero mass in
      both, or a zero weight on the only non-zero one) the result is −inf with zero gradient
      instead of the NaN gradient of ``logaddexp(−inf, −inf)``.

    Each branch only sees inputs in its own range, so neither leaks inf/NaN into gradients.
    """
    zero = torch.zeros((), dtype=log_a.dtype, device=log_a.device)
    d = log_a - log_b
    # False for NaN (both −inf) and ±inf (one −inf); the endpoints w ∈ {0, 1} take the far form,
    # which returns log b or log a exactly, with exactly zero gradient to the other.
    near = (d.abs() < 1) & (weight_a > 0) & (weight_a < 1)
    d_near = torch.where(near, d, zero)
    log_b_near = torch.where(near, log_b, zero)
    close = log_b_near + torch.log1p(weight_a * torch.expm1(d_near))
    x = torch.log(weight_a) + log_a
    y = torch.log1p(-weight_a) + log_b
    empty = torch.isneginf(x) & torch.isneginf(y)
    far = torch.logaddexp(torch.where(empty | near, zero, x), torch.where(empty | near, zero, y))
    far = torch.where(empty, torch.full((), _NEG_INF, dtype=x.dtype, device=x.device), far)
    return torch.where(near, close, far)


def _kl_rows(log_a: Tensor, log_m: Tensor) -> Tensor:
    """Σ_v a_v (log a_v − log m_v) over the last axis, with 0·log 0 = 0 (and zero gradient).

    The support is where a_v = exp(log a_v) is representable (> 0), not merely log a_v > −inf:
    a finite log-prob whose exp underflows (e.g. −1e4, or a ``finfo.min`` mask) carries no mass
    either, and must not meet log m_v = −inf (0·inf would be NaN).
    """
    support = log_a.exp() > 0
    zero = torch.zeros((), dtype=log_a.dtype, device=log_a.device)
    a_safe = torch.where(support, log_a, zero)
    m_safe = torch.where(support, log_m, zero)
    terms = torch.where(support, a_safe.exp() * (a_safe - m_safe), zero)
    return terms.sum(-1)


def forward_kl(
    *, teacher_logp: Float[Tensor, "*batch vocab"], student_logp: Float[Tensor, "*batch vocab"]
) -> Float[Tensor, "*batch"]:
    r"""Forward KL divergence KL(p‖q) per position (spec E1).

    .. math:: \mathrm{KL}(p\|q) = \sum_v p_v (\log p_v - \log q_v)

    Returns the divergence itself (≥ 0, exactly 0 at p = q). Mass-covering: it is the loss of
    word-level KD on teacher-generated outputs. ``+inf`` where q puts zero mass on a teacher
    token (the true value).

    Args:
        teacher_logp: log p, shape ``(*batch, vocab)``.
        student_logp: log q, same shape.

    Returns:
        Shape ``(*batch)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log(); q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(forward_kl(teacher_logp=p, student_logp=q)), 6)
        0.143841
    """
    t, s = _prepare(teacher_logp, student_logp)
    return _kl_rows(t, s)


def reverse_kl(
    *, teacher_logp: Float[Tensor, "*batch vocab"], student_logp: Float[Tensor, "*batch vocab"]
) -> Float[Tensor, "*batch"]:
    r"""Reverse KL divergence KL(q‖p) per position (spec E1).

    .. math:: \mathrm{KL}(q\|p) = \sum_v q_v (\log q_v - \log p_v)

    Returns the divergence itself (mode-seeking). ``+inf`` where the student puts mass on a
    token the teacher gives zero probability (the true value; use a skew α > 0 to bound it).

    Args:
        teacher_logp: log p, shape ``(*batch, vocab)``.
        student_logp: log q, same shape.

    Returns:
        Shape ``(*batch)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log(); q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(reverse_kl(teacher_logp=p, student_logp=q)), 6)
        0.130812
    """
    t, s = _prepare(teacher_logp, student_logp)
    return _kl_rows(s, t)


def skew_forward_kl(
    *,
    teacher_logp: Float[Tensor, "*batch vocab"],
    student_logp: Float[Tensor, "*batch vocab"],
    alpha: Float[Tensor, "*#batch"] | float,
    mixture_grad: MixtureGrad = "full",
) -> Float[Tensor, "*batch"]:
    r"""Skew forward KL SKL_α = KL(p ‖ αp + (1−α)q) per position (spec E2).

    .. math::
        \mathrm{SKL}_\alpha(p, q) = \sum_v p_v\,\bigl(\log p_v - \log(\alpha p_v + (1-\alpha) q_v)\bigr)

    Returns the divergence itself: 0 ≤ SKL_α ≤ min(log(1/α), (1−α)·KL(p‖q)) (T7). α = 0 gives
    :func:`forward_kl` exactly, α = 1 gives 0 with zero gradient.

    ``mixture_grad="stop"`` detaches the student inside the mixture. Because SKL depends on the
    student *only* through the mixture, its gradient is then exactly zero (the result stays
    attached to the graph, so ``backward()`` works); the option exists for
    symmetry with :func:`skew_reverse_kl` (DistiLLM and DistiLLM-2 keep the full gradient here).

    Args:
        teacher_logp: log p, shape ``(*batch, vocab)``.
        student_logp: log q, same shape.
        alpha: skew α ∈ [0, 1], a float or a tensor broadcastable to ``(*batch)``.
        mixture_grad: ``"full"`` (default) or ``"stop"``.

    Returns:
        Shape ``(*batch)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log(); q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(skew_forward_kl(teacher_logp=p, student_logp=q, alpha=0.1)), 6)
        0.113137
        >>> float(skew_forward_kl(teacher_logp=p, student_logp=q, alpha=1.0))
        0.0

    References:
        Ko et al., DistiLLM, ICML 2024 (arXiv:2402.03898), skew KL.
    """
    t, s = _prepare(teacher_logp, student_logp)
    a = _weight("alpha", alpha, t)
    s_mix = _check_mixture_grad(mixture_grad, s)
    value = _kl_rows(t, _log_mixture(t, s_mix, a))
    if mixture_grad == "stop" and s.requires_grad:
        # Keep the result attached to the student with an explicit zero gradient, so that
        # backward() works (and gives zeros) instead of failing on a detached graph.
        # (Multiply before summing: a sum of huge finite log-probs can overflow to −inf.)
        zero = torch.zeros((), dtype=s.dtype, device=s.device)
        value = value + (0.0 * torch.where(torch.isneginf(s), zero, s)).sum(-1)
    return value


def skew_reverse_kl(
    *,
    teacher_logp: Float[Tensor, "*batch vocab"],
    student_logp: Float[Tensor, "*batch vocab"],
    alpha: Float[Tensor, "*#batch"] | float,
    mixture_grad: MixtureGrad = "full",
) -> Float[Tensor, "*batch"]:
    r"""Skew reverse KL SRKL_α = KL(q ‖ (1−α)p + αq) per position (spec E3).

    .. math::
        \mathrm{SRKL}_\alpha(p, q) = \sum_v q_v\,\bigl(\log q_v - \log((1-\alpha) p_v + \alpha q_v)\bigr)

    Returns the divergence itself: 0 ≤ SRKL_α ≤ min(log(1/α), (1−α)·KL(q‖p)) (T7). α = 0 gives
    :func:`reverse_kl` exactly, α = 1 gives 0 with zero gradient. The value does not depend on
    ``mixture_grad``; the gradient does: ``"full"`` is the gradient of SRKL_α (DistiLLM),
    ``"stop"`` detaches the student inside the mixture, the semi-gradient of
    KL(q ‖ sg((1−α)p + αq)) (DistiLLM-2's SRKL).

    Args:
        teacher_logp: log p, shape ``(*batch, vocab)``.
        student_logp: log q, same shape.
        alpha: skew α ∈ [0, 1], a float or a tensor broadcastable to ``(*batch)``.
        mixture_grad: ``"full"`` (default) or ``"stop"``.

    Returns:
        Shape ``(*batch)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log(); q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(skew_reverse_kl(teacher_logp=p, student_logp=q, alpha=0.1)), 6)
        0.107043

    References:
        Ko et al., DistiLLM (arXiv:2402.03898) and DistiLLM-2 (arXiv:2503.07067).
    """
    t, s = _prepare(teacher_logp, student_logp)
    a = _weight("alpha", alpha, s)
    s_mix = _check_mixture_grad(mixture_grad, s)
    return _kl_rows(s, _log_mixture(s_mix, t, a))


def generalized_jsd(
    *,
    teacher_logp: Float[Tensor, "*batch vocab"],
    student_logp: Float[Tensor, "*batch vocab"],
    beta: Float[Tensor, "*#batch"] | float,
) -> Float[Tensor, "*batch"]:
    r"""Generalised Jensen–Shannon divergence JSD_β per position (spec E4).

    .. math::
        \mathrm{JSD}_\beta(p, q) = \beta\,\mathrm{KL}(p\|M) + (1-\beta)\,\mathrm{KL}(q\|M),
        \qquad M = \beta p + (1-\beta) q

    Returns the divergence itself. It is continuous in β and equals 0 at β ∈ {0, 1} (M then
    coincides with one of the two distributions and that term has weight 0). TRL's
    ``generalized_jsd_loss`` special-cases the endpoints to plain KL instead (β = 0 → KL(p‖q),
    β = 1 → KL(q‖p)), which makes it discontinuous there; use :func:`forward_kl` /
    :func:`reverse_kl` for those. JSD_β = β·SKL_β + (1−β)·SRKL_{1−β}.

    Args:
        teacher_logp: log p, shape ``(*batch, vocab)``.
        student_logp: log q, same shape.
        beta: β ∈ [0, 1], a float or a tensor broadcastable to ``(*batch)``.

    Returns:
        Shape ``(*batch)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> p = torch.tensor([0.5, 0.5]).log(); q = torch.tensor([0.25, 0.75]).log()
        >>> round(float(generalized_jsd(teacher_logp=p, student_logp=q, beta=0.5)), 6)
        0.033822

    References:
        Agarwal et al., On-Policy Distillation of Language Models (GKD), ICLR 2024,
        arXiv:2306.13649, Eq. (1).
    """
    t, s = _prepare(teacher_logp, student_logp)
    b = _weight("beta", beta, t)
    log_m = _log_mixture(t, s, b)
    # At β = 0 the teacher term has weight 0 but KL(p‖q) may be infinite; at β = 1 likewise
    # for the student term. Evaluate each zero-weight term on a harmless stand-in (the other
    # distribution, so the term is KL(M‖M) = 0) to keep 0·inf from producing NaN.
    t_term = torch.where(b > 0, t, log_m)
    s_term = torch.where(b < 1, s, log_m)
    b_rows = b.squeeze(-1)
    return b_rows * _kl_rows(t_term, log_m) + (1 - b_rows) * _kl_rows(s_term, log_m)


def _check_mixture_grad(mixture_grad: object, s: Tensor) -> Tensor:
    if mixture_grad == "full":
        return s
    if mixture_grad == "stop":
        return s.detach()
    raise ValueError(f"mixture_grad must be 'full' or 'stop', got {mixture_grad!r}")


class Divergence(enum.IntEnum):
    """The token-level divergences the losses are built from, each mapped to its function.

    One member per (divergence, mixture gradient) pair, so that a member alone says how a term
    is computed and differentiated: ``SRKL_FULL`` and ``SRKL_STOP`` are SRKL_α with the full and
    the stopped mixture gradient. :meth:`evaluate` calls the function of this module; the chunked
    path (:mod:`askd_ref.chunked`) evaluates the same members with its closed-form kernels.
    ``param`` is α for the skew divergences, β for JSD_β, unused for plain KL.

    >>> import torch
    >>> lp = torch.log_softmax(torch.tensor([[0.0, 1.0, 2.0]]), -1)
    >>> [float(d.evaluate(teacher_logp=lp, student_logp=lp, param=0.1)[0]) for d in Divergence]
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    >>> Divergence.srkl("stop").name
    'SRKL_STOP'
    """

    SKL = 0
    SRKL_FULL = 1
    SRKL_STOP = 2
    FKL = 3
    RKL = 4
    GJSD = 5

    @classmethod
    def srkl(cls, mixture_grad: MixtureGrad) -> "Divergence":
        """SRKL_α with the given mixture gradient (``"full"`` or ``"stop"``)."""
        return cls.SRKL_STOP if mixture_grad == "stop" else cls.SRKL_FULL

    def evaluate(self, *, teacher_logp: Tensor, student_logp: Tensor, param: Tensor | float) -> Tensor:
        """The per-position divergence of this member (see the module conventions)."""
        return _EVALUATORS[self](teacher_logp, student_logp, param)


_Evaluator = Callable[[Tensor, Tensor, "Tensor | float"], Tensor]

_EVALUATORS: dict[Divergence, _Evaluator] = {
    Divergence.SKL: lambda t, s, a: skew_forward_kl(
        teacher_logp=t, student_logp=s, alpha=a, mixture_grad="full"
    ),
    Divergence.SRKL_FULL: lambda t, s, a: skew_reverse_kl(
        teacher_logp=t, student_logp=s, alpha=a, mixture_grad="full"
    ),
    Divergence.SRKL_STOP: lambda t, s, a: skew_reverse_kl(
        teacher_logp=t, student_logp=s, alpha=a, mixture_grad="stop"
    ),
    Divergence.FKL: lambda t, s, a: forward_kl(teacher_logp=t, student_logp=s),
    Divergence.RKL: lambda t, s, a: reverse_kl(teacher_logp=t, student_logp=s),
    Divergence.GJSD: lambda t, s, a: generalized_jsd(teacher_logp=t, student_logp=s, beta=a),
}
