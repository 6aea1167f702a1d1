"""Sample records (spec §8): the unit of data every other part of askd-ref exchanges.

One record per line in JSONL files: ``prompt``, ``response``, ``source`` ∈ {teacher, student},
optional ``quality``, ``reference`` (answer), ``tests`` (code), ``behaviour_logprob`` (Σ over
response tokens of log μ(y_t|c_t), for off-policy SGOs, E13). Unknown fields are kept in
``extra`` and written back unchanged.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal, TypeAlias

__all__ = ["Sample", "Source"]

Source: TypeAlias = Literal["teacher", "student"]


@dataclasses.dataclass(frozen=True)
class Sample:
    """One prompt–response pair (spec §8).

    >>> Sample(prompt="1+1=", response="2", source="teacher").is_tgo
    True
    """

    prompt: str
    """The prompt x, as text."""
    response: str
    """The response y, as text (without the prompt)."""
    source: Source
    """``"teacher"`` for a teacher-generated output (TGO), ``"student"`` for an SGO."""
    quality: float | None = None
    """Quality r ∈ [0, 1] if already scored (spec §5)."""
    reference: str | None = None
    """Reference answer for exact-match scoring (math tasks)."""
    tests: str | None = None
    """Unit-test source for pass-fraction scoring (code tasks)."""
    behaviour_logprob: float | None = None
    """log μ(y|x) summed over response tokens, under the policy that generated the sample."""
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Fields the schema does not know; preserved on write."""

    @property
    def is_tgo(self) -> bool:
        return self.source == "teacher"
