"""Tabular autoregressive models with exact enumeration of every sequence (float64).

A model over vocabulary V and fixed length T has one softmax per prefix (1 + V + … + V^{T−1}
prefixes); q_θ(y) = Π_t softmax(θ[prefix(y_<t)])[y_t]. With V ≤ 4 and T ≤ 3 there are at most
64 sequences, so every expectation over p, q or μ is an exact weighted sum and every gradient
is an exact ``torch.autograd`` gradient of an exact objective.

Expected gradients of a *sample estimator* (a loss applied per sample) are computed as
Σ_y π(y)·∇_θ ℓ(y): :func:`expected_gradient` runs the estimator once on all enumerated
sequences, reads ∂ℓ_i/∂(token log-probs of row i) with autograd and pulls it back to θ with the
exact sampling weights π(y) (a vector–Jacobian product), so the estimator under test is the
library's own loss function, unchanged.
"""

import dataclasses
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "F64",
    "Tabular",
    "expected_gradient",
    "flat_grad",
    "make_tabular",
    "random_logits",
    "sequence_logp",
]

F64 = torch.float64


@dataclasses.dataclass(frozen=True)
class Tabular:
    """The enumeration of a tabular AR model's sequence space.

    Attributes:
        vocab: V.
        length: T.
        sequences: ``(V**T, T)`` every sequence, in lexicographic order.
        contexts: ``(V**T, T)`` index of the prefix y_<t that position t conditions on.
        num_contexts: number of prefixes (rows of a logits table).
    """

    vocab: int
    length: int
    sequences: Tensor
    contexts: Tensor
    num_contexts: int

    def full_logp(self, logits: Tensor) -> Tensor:
        """``(N, T, V)`` log p(·|c_t) for every sequence and position."""
        return torch.log_softmax(logits, -1)[self.contexts]

    def token_logp(self, logits: Tensor) -> Tensor:
        """``(N, T)`` log p(y_t|c_t) of the sequences' own tokens."""
        return self.full_logp(logits).gather(-1, self.sequences[..., None]).squeeze(-1)


def make_tabular(vocab: int, length: int) -> Tabular:
    """Enumerate all ``vocab**length`` sequences and their prefix indices."""
    if not (2 <= vocab <= 4 and 1 <= length <= 3):
        raise ValueError(f"tabular checks use vocab in [2, 4] and length in [1, 3]; got {vocab}, {length}")
    grids = (
        torch.cartesian_prod(*[torch.arange(vocab)] * length) if length > 1 else torch.arange(vocab)[:, None]
    )
    seqs = grids.reshape(-1, length).long()
    offsets = [(vocab**t - 1) // (vocab - 1) for t in range(length)]
    contexts = torch.zeros_like(seqs)
    for t in range(length):
        code = torch.zeros(seqs.shape[0], dtype=torch.long)
        for s in range(t):
            code = code * vocab + seqs[:, s]
        contexts[:, t] = offsets[t] + code
    num_contexts = (vocab**length - 1) // (vocab - 1)
    return Tabular(vocab, length, seqs, contexts, num_contexts)


def random_logits(tab: Tabular, generator: torch.Generator, scale: float) -> Tensor:
    """A ``(num_contexts, V)`` logits table with N(0, scale²) entries."""
    return torch.randn(tab.num_contexts, tab.vocab, generator=generator, dtype=F64) * scale


def sequence_logp(tab: Tabular, logits: Tensor) -> Tensor:
    """``(N,)`` log-probability of every sequence."""
    return tab.token_logp(logits).sum(-1)


def flat_grad(value: Tensor, theta: Tensor) -> Tensor:
    """∇_θ value, flattened (retains the graph)."""
    (g,) = torch.autograd.grad(value, theta, retain_graph=True)
    return g.reshape(-1)


def expected_gradient(
    theta: Tensor,
    token_logp: Tensor,
    weights: Tensor,
    loss: Callable[[Tensor], Tensor],
) -> Tensor:
    """Σ_i weights_i·∇_θ ℓ_i for a per-sample estimator run on all enumerated rows at once.

    ``loss(x)`` must return the estimator's loss on the rows ``x`` (token log-probs ``(N, T)``,
    or full-vocabulary log-probs ``(N, T, V)`` for dense losses) as the *mean* over the N rows
    (the reduction of every askd_ref loss with its default sample count). ``token_logp`` is the
    θ-dependent tensor the rows are taken from.
    """
    x = token_logp.detach().requires_grad_(True)
    (gx,) = torch.autograd.grad(loss(x), x)
    per_row = gx * x.shape[0]  # ∇_{x_i} ℓ_i
    w = weights.detach().reshape(-1, *([1] * (x.ndim - 1)))
    (g,) = torch.autograd.grad(token_logp, theta, grad_outputs=per_row * w, retain_graph=True)
    return g.reshape(-1)
