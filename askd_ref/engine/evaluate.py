"""Accuracy (or pass rate) of a model on held-out prompts under a quality signal (``askd eval``)."""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from askd_ref.data import Prompt, Sample
from askd_ref.generation import generate
from askd_ref.quality import QualitySignal, validate_scores

__all__ = ["EvalResult", "evaluate_model"]


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
    gens = generate(
        model,
        tokenizer,
        [p.prompt for p in prompts],
        n=1,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        seed=seed,
        batch_size=batch_size,
        progress=progress,
        desc=desc,
    )
    samples = [
        Sample(prompt=p.prompt, response=g.text, source="student", reference=p.reference, tests=p.tests)
        for p, g in zip(prompts, gens, strict=True)
    ]
    scores = validate_scores(signal.name, samples, signal.score(samples))
    n = len(scores)
    mean = sum(scores) / n
    var = sum((s - mean) ** 2 for s in scores) / max(1, n - 1)
    return EvalResult(
        accuracy=mean,
        n=n,
        stderr=math.sqrt(var / n),
        scores=tuple(scores),
        responses=tuple(g.text for g in gens),
    )
