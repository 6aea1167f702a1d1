"""Sequence-level quantities from token log-probs: Δ(y), S_θ(y), and the next-token shift.

Conventions (spec §1), stated once:

* **Alignment.** ``student_token_logp[b, t]`` is log q(y_t | c_t) of the token *at* response
  position t, already gathered; likewise for the teacher. Producing them from a causal LM's
  logits needs the next-token shift, ``logits[:, t]`` scores ``input_ids[:, t + 1]``; use
  :func:`token_log_probs`, which does it and shifts the mask with it.
* **Masking.** ``mask`` is a bool tensor, True on response tokens (prompt, padding and
  post-EOS positions False). Masked-out positions are ignored entirely: their values may be
  anything (even NaN) and get zero gradient. Every row must keep at least one token.
* **Normalisation.** ``normalize="sum"`` gives Δ(y) = Σ_t δ_t and S_θ(y) = Σ_t log q(y_t|c_t),
  the exact sequence-level quantities; ``normalize="mean"`` divides both by |y| = Σ_t mask.
"""


import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from askd_ref._validation import (
    check_bool_mask,
    check_float_tensor,
    check_has_data,
    check_integer_tensor,
    check_no_nan,
    check_rows_nonempty,
    check_same_device,
    check_temperature,
    compute_dtype,
    is_validation_enabled,
)
from askd_ref.coefficients import clipped_sgo_coefficient, log_u
from askd_ref.options import ASKDOptions, Normalize, resolve_options
from askd_ref.schedules import quality_gate, sgo_alpha

__all__ = ["length_corrected_sgo_coefficient", "sequence_log_ratio", "token_log_probs"]

#: Largest positive value a rounded log-probability may take before it is treated as a logit.
_LOGP_SLACK = {torch.float64: 1e-6, torch.float32: 1e-4, torch.bfloat16: 2e-2, torch.float16: 2e-2}


def check_token_batch(
    student_token_logp: object,
    teacher_token_logp: object | None,
    mask: object,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """Validate a (student, teacher, mask) token batch; return compute-dtype copies.

    Masked-out positions are replaced by 0 so nothing outside the mask can leak NaN into values
    or gradients.
    """
    s = check_float_tensor("student_token_logp", student_token_logp, min_ndim=2)
    if s.ndim != 2:
        raise ValueError(f"student_token_logp must have shape (batch, seq), got {tuple(s.shape)}")
    m = check_bool_mask("mask", mask, s.shape)
    t: Tensor | None = None
    if teacher_token_logp is not None:
        t = check_float_tensor("teacher_token_logp", teacher_token_logp, min_ndim=2)
        if t.shape != s.shape:
            raise ValueError(
                f"teacher_token_logp must have the shape {tuple(s.shape)} of student_token_logp, "
                f"got {tuple(t.shape)}"
            )
    check_same_device(student_token_logp=s, teacher_token_logp=t, mask=m)
    check_rows_nonempty(m)
    dtype = compute_dtype(s.dtype, *(() if t is None else (t.dtype,)))
    zero = torch.zeros((), dtype=dtype, device=s.device)
    s_c = torch.where(m, s.to(dtype), zero)
    slack = _LOGP_SLACK.get(s.dtype, 1e-3)
    if is_validation_enabled():
        check_no_nan("student_token_logp (at masked-in positions)", s_c)
        if bool((s_c > slack).any()):
            idx = tuple(int(i) for i in torch.nonzero(s_c > slack)[0].tolist())
            raise ValueError(
                f"student_token_logp must be log-probabilities (<= 0); got {float(s_c[idx])} at {idx}"
            )
    t_c: Tensor | None = None
    if t is not None:
        t_c = torch.where(m, t.to(dtype), zero)
        if is_validation_enabled():
            if bool(torch.isneginf(t_c).any()):
                idx = tuple(int(i) for i in torch.nonzero(torch.isneginf(t_c))[0].tolist())
                raise ValueError(
                    f"teacher_token_logp is -inf at response position {idx}: the teacher gives a "
                    "sampled token zero probability, so Δ is infinite; mask the position or fix "
                    "the vocabulary alignment"
                )
            check_no_nan("teacher_token_logp (at masked-in positions)", t_c)
            t_slack = _LOGP_SLACK.get(t.dtype, 1e-3)
            if bool((t_c > t_slack).any()):
                idx = tuple(int(i) for i in torch.nonzero(t_c > t_slack)[0].tolist())
                raise ValueError(
                    f"teacher_token_logp must be log-probabilities (<= 0); got {float(t_c[idx])} "
                    f"at {idx}"
                )
    return s_c, t_c, m


def pool(values: Tensor, mask: Tensor, normalize: Normalize) -> Tensor:
    """Σ_t (or mean_t) of ``values`` over the masked-in positions of each row."""
    total = values.sum(-1)  # masked-out positions are already 0
    if normalize == "sum":
        return total
    return total / mask.sum(-1).to(values.dtype)


def check_normalize(normalize: object) -> Normalize:
    if normalize == "sum":
        return "sum"
    if normalize == "mean":
        return "mean"
    raise ValueError(f"normalize must be 'mean' or 'sum', got {normalize!r}")


def sequence_log_ratio(
    student_token_logp: Float[Tensor, "batch seq"],
    teacher_token_logp: Float[Tensor, "batch seq"],
    mask: Bool[Tensor, "batch seq"],
    *,
    normalize: Normalize,
) -> Float[Tensor, " batch"]:
    r"""Sequence log-ratio Δ(y) = Σ_t (log q(y_t|c_t) − log p(y_t|c_t)), or its mean Δ̄ (spec §1).

    .. math::
        \Delta(y) = \sum_{t:\,m_t} \bigl(\ell^q_t - \ell^p_t\bigr),\qquad
        \bar\Delta(y) = \Delta(y) / \textstyle\sum_t m_t

    A value (differentiable in the student log-probs; the losses detach it). Alignment and
    masking conventions are in the module docstring: inputs are already shifted and gathered,
    masked-out positions are ignored, every row keeps at least one token.

    Args:
        student_token_logp: log q(y_t|c_t), shape ``(batch, seq)``.
        teacher_token_logp: log p(y_t|c_t), shape ``(batch, seq)``; finite on the mask.
        mask: bool, shape ``(batch, seq)``, True on response tokens.
        normalize: ``"sum"`` → Δ, ``"mean"`` → Δ̄.

    Returns:
        Shape ``(batch,)``; float32 for half inputs, else the input dtype.

    Example:
        >>> import torch
        >>> s = torch.tensor([[-1.0, -2.0, -9.0]]); t = torch.tensor([[-1.5, -1.0, 0.0]])
        >>> m = torch.tensor([[True, True, False]])
        >>> sequence_log_ratio(s, t, m, normalize="sum"), sequence_log_ratio(s, t, m, normalize="mean")
        (tensor([-0.5000]), tensor([-0.2500]))
    """
    norm = check_normalize(normalize)
    s, t, m = check_token_batch(student_token_logp, teacher_token_logp, mask)
    assert t is not None
    return pool(s - t, m, norm)


def token_log_probs(
    logits: Float[Tensor, "batch seq vocab"],
    input_ids: Int[Tensor, "batch seq"],
    response_mask: Bool[Tensor, "batch seq"],
    *,
    temperature: float = 1.0,
) -> tuple[Float[Tensor, "batch seq-1"], Bool[Tensor, "batch seq-1"]]:
    """Log-probs of the tokens that follow each position, with the causal-LM shift (spec §1).

    ``logits[:, t]`` scores ``input_ids[:, t + 1]``, so the result has length ``seq − 1``:
    ``out[:, t] = log_softmax(logits[:, t])[input_ids[:, t + 1]]`` and the returned mask is
    ``response_mask[:, 1:]`` (True where the *predicted* token is a response token). Logits may
    hold −inf (masked ids) but not NaN, +inf or a whole row of −inf. Computed
    in float32 (float64 for float64 logits). This materialises a full log-softmax; the chunked
    path (:mod:`askd_ref.chunked`) avoids that for large vocabularies.

    Args:
        logits: shape ``(batch, seq, vocab)``.
        input_ids: integer token ids, shape ``(batch, seq)``.
        response_mask: bool, shape ``(batch, seq)``, True on response tokens of ``input_ids``.
        temperature: τ > 0; the log-softmax is taken of ``logits / τ`` (TRL's and Liger-Kernel's
            convention, no τ² factor). Default 1.

    Returns:
        ``(token_logp, mask)``, both of shape ``(batch, seq − 1)``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 3, 4)  # uniform over 4 tokens
        >>> ids = torch.tensor([[0, 1, 2]]); resp = torch.tensor([[False, True, True]])
        >>> lp, m = token_log_probs(logits, ids, resp)
        >>> lp, m
        (tensor([[-1.3863, -1.3863]]), tensor([[True, True]]))
    """
    x = check_float_tensor("logits", logits, min_ndim=3)
    if x.ndim != 3:
        raise ValueError(f"logits must have shape (batch, seq, vocab), got {tuple(x.shape)}")
    input_ids = check_integer_tensor("input_ids", input_ids, "token ids")
    if tuple(input_ids.shape) != tuple(x.shape[:2]):
        raise ValueError(
            f"input_ids must have shape {tuple(x.shape[:2])} (batch, seq of logits), "
            f"got {tuple(input_ids.shape)}"
        )
    check_bool_mask("response_mask", response_mask, x.shape[:2])
    check_has_data("input_ids", input_ids)
    check_same_device(logits=x, input_ids=input_ids, response_mask=response_mask)
    # NaN or +inf logits give NaN log-probs; a row that is entirely −inf is no distribution.
    check_no_nan("logits", x, allow_neg_inf=True)
    if is_validation_enabled() and bool(torch.isneginf(x).all(-1).any()):
        idx = tuple(int(i) for i in torch.nonzero(torch.isneginf(x).all(-1))[0].tolist())
        raise ValueError(f"logits are -inf for the whole vocabulary at position {idx}")
    if x.shape[1] < 2:
        raise ValueError("logits need at least 2 positions to score a next token")
    vocab = x.shape[-1]
    if bool(((input_ids < 0) | (input_ids >= vocab)).any()):
        raise ValueError(f"input_ids must lie in [0, {vocab}) (the vocabulary of logits)")
    temperature = check_temperature(temperature)
    z = x[:, :-1].to(compute_dtype(x.dtype))
    logp = F.log_softmax(z if temperature == 1 else z / temperature, dim=-1)
    out = logp.gather(-1, input_ids[:, 1:, None].long()).squeeze(-1)
    return out, response_mask[:, 1:]


def _uj_integrand(d: Tensor, a: Tensor) -> Tensor:
    """φ(Δ; α) = log u + 1/u − 1 = log u + (1 − α)·expm1(−Δ) ≥ 0, with φ + φ' = c̃ (T1m)."""
    return log_u(d, a) + (1 - a) * torch.expm1(-d)


def length_corrected_sgo_coefficient(
    delta_bar: Float[Tensor, " batch"],
    quality: Float[Tensor, " batch"],
    lengths: Float[Tensor, " batch"],
    *,
    options: ASKDOptions | None = None,
) -> Float[Tensor, " batch"]:
    r"""Mean-mode SGO coefficient that is unbiased for UJ^mean (option ``sgo_length_correction="uj"``, T1m).

    .. math::
        \hat c_{uj}(\bar\Delta, r, n) = \hat c(\bar\Delta, r) + (n - 1)\,\varphi_{\hat c}(\bar\Delta),\qquad
        \varphi(\bar\Delta;\alpha) = \log u + 1/u - 1

    with φ_ĉ = φ(·; α_lo) for Δ̄ < 0 (α_S(r) under ``sgo_pullup="adaptive"``) and
    (1 − h(r))·φ(·; α_S(r)) for Δ̄ ≥ 0. With y ∼ q_θ, E[ĉ_uj·∇S̄] = ∇E_q[φ_ĉ(Δ̄)] exactly
    (the default ĉ is instead the exact gradient of a length-weighted divergence, see
    ``docs/method.md``). At n = 1 it equals ĉ. A coefficient, not a loss; needs
    ``mixture_grad="full"``.

    Args:
        delta_bar: Δ̄ = Δ/|y|, shape ``(batch,)``.
        quality: r ∈ [0, 1], shape ``(batch,)``.
        lengths: |y| ≥ 1 (token counts), shape ``(batch,)``.
        options: :class:`~askd_ref.ASKDOptions`; ``None`` means the defaults.

    Returns:
        Shape ``(batch,)``.

    Example:
        >>> import torch
        >>> d = torch.tensor([0.0, 0.5], dtype=torch.float64); r = torch.zeros(2, dtype=torch.float64)
        >>> n = torch.tensor([1.0, 1.0], dtype=torch.float64)
        >>> from askd_ref import clipped_sgo_coefficient
        >>> bool(torch.equal(length_corrected_sgo_coefficient(d, r, n), clipped_sgo_coefficient(d, r)))
        True
    """
    opts = resolve_options(options)
    if opts.mixture_grad != "full":
        raise ValueError(f"the length correction needs mixture_grad='full', got {opts.mixture_grad!r}")
    c_hat = clipped_sgo_coefficient(delta_bar, quality, options=opts)
    alpha_s = sgo_alpha(quality, options=opts)
    h = quality_gate(quality, options=opts)
    alpha_pull = alpha_s if opts.sgo_pullup == "adaptive" else torch.full_like(alpha_s, opts.alpha_lo)
    phi = torch.where(
        delta_bar >= 0,
        (1 - h) * _uj_integrand(delta_bar, alpha_s),
        _uj_integrand(delta_bar, alpha_pull),
    )
    return c_hat + (lengths.to(c_hat.dtype) - 1) * phi
