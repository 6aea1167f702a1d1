"""Accuracy (or pass rate) of a model on held-out prompts under a quality signal (``askd eval``)."""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

from askd_ref.engine.data import Prompt, Sample
from askd_ref.engine.generation import generate
from askd_ref.quality import QualitySignal, validate_scores

__all__ = ["EvalResult", "evaluate_model", "evaluate_model_sharded"]


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Scores of one model on one prompt set.

    Attributes:
        accuracy: mean quality over the prompts (the accuracy for exact match, the mean pass
            fraction for unit tests).
        n: number of prompts.
        stderr: standard error of the mean, sqrt(var/n) (binomial sqrt(p(1−p)/n) for 0/1 scores).
        scores: per-prompt scores, in prompt order.
        responses: the generated responses, in prompt order.
    """

    accuracy: float
    n: int
    stderr: float
    scores: tuple[float, ...]
    responses: tuple[str, ...]

    @classmethod
    def from_scores(cls, scores: Sequence[float], responses: Sequence[str]) -> "EvalResult":
        """Mean, standard error sqrt(var/n) (var with n − 1; 0 when n = 1) of per-prompt scores."""
        n = len(scores)
        if n == 0 or len(responses) != n:
            raise ValueError(f"need as many responses as scores (at least one), got {n} and {len(responses)}")
        mean = sum(scores) / n
        var = sum((s - mean) ** 2 for s in scores) / max(1, n - 1)
        return cls(
            accuracy=mean, n=n, stderr=math.sqrt(var / n), scores=tuple(scores), responses=tuple(responses)
        )

    def to_dict(self, *, with_items: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"accuracy": self.accuracy, "n": self.n, "stderr": self.stderr}
        if with_items:
            out["scores"] = list(self.scores)
            out["responses"] = list(self.responses)
        return out


def evaluate_model(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    signal: QualitySignal,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "eval",
) -> EvalResult:
    """Generate one response per prompt (greedy by default) and score it with ``signal``.

    Example:
        >>> from askd_ref.toy import build_tokenizer, tiny_llama, Problem
        >>> from askd_ref.quality.math import ExactMatch
        >>> tok = build_tokenizer(); m = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2)
        >>> r = evaluate_model(m, tok, [Problem(1, 2).to_prompt()], ExactMatch(), max_new_tokens=8)
        >>> r.n, r.accuracy
        (1, 0.0)
    """
    if not prompts:
        raise ValueError("evaluate_model needs at least one prompt")
    scores, responses = _score(
        model,
        tokenizer,
        prompts,
        list(range(len(prompts))),
        signal,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    return EvalResult.from_scores(scores, responses)


def evaluate_model_sharded(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    signal: QualitySignal,
    *,
    rank: int,
    world_size: int,
    gather: Callable[[list[Any]], list[Any]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 256,
    progress: bool = False,
    desc: str = "eval",
) -> EvalResult:
    """:func:`evaluate_model` split over ``world_size`` processes, each calling it with its ``rank``.

    Process ``rank`` generates and scores the prompts ``i ≡ rank (mod world_size)``, seeding each
    sample by the prompt's global index ``i`` (as :func:`evaluate_model` does), and ``gather``
    (e.g. :func:`accelerate.utils.gather_object`: a list per process → the concatenation, on every
    process) collects the shards. Every process returns the same result, equal to the one-process
    :func:`evaluate_model` on the same model. ``world_size = 1`` with the identity ``gather`` is
    :func:`evaluate_model`.

    Example:
        >>> from askd_ref.toy import build_tokenizer, tiny_llama, Problem
        >>> from askd_ref.quality.math import ExactMatch
        >>> tok = build_tokenizer(); m = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2)
        >>> ps = [Problem(a, 2).to_prompt() for a in range(3)]
        >>> one = evaluate_model_sharded(m, tok, ps, ExactMatch(), rank=0, world_size=1,
        ...                              gather=lambda x: x, max_new_tokens=4)
        >>> one == evaluate_model(m, tok, ps, ExactMatch(), max_new_tokens=4)
        True
    """
    if not prompts:
        raise ValueError("evaluate_model_sharded needs at least one prompt")
    if not (isinstance(world_size, int) and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
    ids = list(range(rank, len(prompts), world_size))
    local: list[tuple[int, float, str]] = []
    if ids:
        scores, responses = _score(
            model,
            tokenizer,
            [prompts[i] for i in ids],
            ids,
            signal,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            desc=desc,
        )
        local = list(zip(ids, scores, responses, strict=True))
    merged = sorted(gather(local)) if world_size > 1 else local
    if [i for i, _, _ in merged] != list(range(len(prompts))):
        got = [i for i, _, _ in merged]
        raise RuntimeError(
            f"sharded evaluation gathered prompts {got}, expected each of 0..{len(prompts) - 1} once"
        )
    return EvalResult.from_scores([s for _, s, _ in merged], [r for _, _, r in merged])


def _score(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    prompt_ids: Sequence[int],
    signal: QualitySignal,
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    seed: int,
    batch_size: int,
    progress: bool,
    desc: str,
) -> tuple[list[float], list[str]]:
    """Greedy/sampled responses to ``prompts`` (seeded by ``prompt_ids``) and their scores."""
    gens = generate(
        model,
        tokenizer,
        [p.prompt for p in prompts],
        n=1,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        prompt_ids=list(prompt_ids),
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    samples = [
        Sample(prompt=p.prompt, response=g.text, source="student", reference=p.reference, tests=p.tests)
        for p, g in zip(prompts, gens, strict=True)
    ]
    scores = validate_scores(signal.name, samples, signal.score(samples))
    return [float(x) for x in scores], [g.text for g in gens]
