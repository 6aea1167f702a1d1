"""Model forwards → log-probabilities, with the shared-vocabulary rule of spec §8.

Teacher and student must share a tokenizer. Their output heads may be *padded* beyond it (e.g.
Qwen2.5: 151936 vs 152064 rows for a 151665-token tokenizer); every logit tensor is sliced to
the tokenizer's vocabulary ``V = len(tokenizer)`` before the softmax, so the padded rows carry
no probability. A head with fewer rows than the tokenizer, or two tokenizers that differ, is a
real mismatch and raises ``ValueError``.

All log-softmaxes run in float32 (float64 for float64 models), whatever the model dtype.
"""

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from askd_ref.engine.tokens import TokenBatch

__all__ = [
    "check_same_tokenizer",
    "hidden_states",
    "output_rows",
    "sequence_logprobs",
    "shared_vocab_size",
    "token_logprobs",
]


def output_rows(model: Any) -> int:
    """Number of rows of ``model``'s output projection (its padded vocabulary size)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and getattr(head, "weight", None) is not None:
        return int(head.weight.shape[0])
    return int(model.config.vocab_size)


def shared_vocab_size(tokenizer: Any, **models: Any) -> int:
    """``len(tokenizer)``, after checking every model's head covers it (named in the error).

    >>> from askd_ref.toy import build_tokenizer, tiny_llama
    >>> tok = build_tokenizer()
    >>> shared_vocab_size(tok, student=tiny_llama(tok, hidden_size=8, num_layers=1, num_heads=2))
    52
    """
    vocab = len(tokenizer)
    for name, model in models.items():
        rows = output_rows(model)
        if rows < vocab:
            raise ValueError(
                f"{name} has an output head of {rows} rows but the shared tokenizer has {vocab} tokens: "
                "the model does not use this tokenizer"
            )
    return vocab


def check_same_tokenizer(teacher_tokenizer: Any, student_tokenizer: Any) -> None:
    """Raise ``ValueError`` unless the two tokenizers map the same strings to the same ids.

    Padded heads are fine (they are sliced); different vocabularies are not: askd-ref does not do
    cross-tokenizer distillation.
    """
    tv, sv = teacher_tokenizer.get_vocab(), student_tokenizer.get_vocab()
    if tv == sv and teacher_tokenizer.eos_token_id == student_tokenizer.eos_token_id:
        return
    only_t = sorted(set(tv) - set(sv))[:5]
    only_s = sorted(set(sv) - set(tv))[:5]
    moved = sorted(k for k in set(tv) & set(sv) if tv[k] != sv[k])[:5]
    raise ValueError(
        "teacher and student tokenizers differ (spec §8 needs one shared tokenizer): "
        f"{len(tv)} vs {len(sv)} tokens; only in teacher {only_t}, only in student {only_s}, "
        f"different ids {moved}; eos {teacher_tokenizer.eos_token_id} vs {student_tokenizer.eos_token_id}"
    )


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def sequence_logprobs(
    model: Any, batch: TokenBatch, vocab_size: int, *, full: bool = False, temperature: float = 1.0
) -> tuple[Tensor, Tensor | None]:
    """Token log-probs of every next token, and optionally the full distributions.

    Runs ``model(input_ids, attention_mask)`` (pass the DDP-wrapped model when training, so its
    gradient hooks fire), slices the logits to ``vocab_size`` and applies the causal shift:
    entry ``[b, t]`` is log q(input_ids[b, t+1] | input_ids[b, :t+1]). Mask the result with
    ``batch.shifted_mask``. ``temperature`` τ divides the logits before the log-softmax (no τ²
    factor).

    Returns:
        ``(token_logp, full_logp)``: ``(batch, seq−1)`` and, when ``full``,
        ``(batch, seq−1, vocab_size)`` (else ``None``), in float32/float64.
    """
    out = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    logits = out.logits[:, :-1, :vocab_size]
    z = logits.to(_compute_dtype(logits.dtype))
    if temperature != 1.0:
        if not (math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a positive finite float, got {temperature!r}")
        z = z / temperature
    logp = F.log_softmax(z, dim=-1)
    targets = batch.input_ids[:, 1:]
    if bool((targets[batch.shifted_mask] >= vocab_size).any()):
        raise ValueError(f"a response token id is outside the shared vocabulary of {vocab_size} tokens")
    token = logp.gather(-1, targets.clamp(max=vocab_size - 1).unsqueeze(-1)).squeeze(-1)
    return token, (logp if full else None)


def token_logprobs(model: Any, batch: TokenBatch, vocab_size: int, *, temperature: float = 1.0) -> Tensor:
    """Only the ``(batch, seq−1)`` token log-probs of :func:`sequence_logprobs`."""
    return sequence_logprobs(model, batch, vocab_size, temperature=temperature)[0]


def hidden_states(model: Any, batch: TokenBatch) -> Tensor:
    """Final (post-norm) hidden states ``(batch, seq, hidden)`` through ``model``'s own forward.

    Calls the (possibly DDP-wrapped) model with ``output_hidden_states=True`` and
    ``logits_to_keep=1``, so no ``(batch, seq, vocab)`` logits are built; the output projection
    is then applied chunk by chunk by :mod:`askd_ref.chunked`.
    """
    out = model(
        input_ids=batch.input_ids,
        attention_mask=batch.attention_mask,
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    states = out.hidden_states
    if states is None:
        raise ValueError("the model did not return hidden states (output_hidden_states=True)")
    h: Tensor = states[-1]
    return h
