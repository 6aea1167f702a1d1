"""The embedded toy task: fixed-width addition with a short written working, answers verifiable.

A problem adds two ``width``-digit numbers written with leading zeros (``"07+85="``). The
solution is written the way one adds by hand: first the digits of the sum from the units up
(the *working*, where every digit depends only on one column and the carry coming into it),
then ``>`` and the sum itself, zero-padded to ``width + 1`` digits::

    prompt   "47+85="
    response "231>132"          (2, 3, 1 are the units, tens and hundreds of 132)

The final answer is the last number of the response, so the exact-match quality signal
(:class:`askd_ref.quality.math.ExactMatch`, reference ``"132"``) scores a response 1 if it ends
with the right sum and 0 otherwise; the graded signal :class:`askd_ref.toy.quality.DigitCredit`
gives partial credit per correct character of the working and the answer. Problems are drawn
deterministically from a seed; the evaluation set is disjoint from every training draw
(:meth:`ToyTask.split`).

The teacher is made imperfect by its *data*, not by stopping it early: it is trained to
convergence on solutions with a systematic flaw (:class:`CarryFlaw`: the carry out of the units
column is dropped when the units digits sum to 10 or 11, 17 % of the problems). Its accuracy is
then set by the flaw (≈ 0.83), not by when a loss plateau happens to end — which depends on the
CPU's floating-point reduction order.

Why this format: tiny causal LMs learn digit-aligned, least-significant-first arithmetic in a
few hundred steps, and copy the reversed working back in order; without the working, or with
unpadded operands, they do not learn it in minutes of CPU time (measured on 2-core CPUs).
"""

import dataclasses
import random
from collections.abc import Iterator, Sequence

from askd_ref.engine.data import Prompt, Sample, Source

__all__ = ["CarryFlaw", "Problem", "ToyTask"]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One addition problem ``a + b`` with operands of ``width`` digits.

    >>> p = Problem(47, 85, width=2)
    >>> p.prompt, p.solution, p.reference, p.carries
    ('47+85=', '231>132', '132', 2)
    """

    a: int
    """First operand, 0 ≤ a < 10**width."""
    b: int
    """Second operand, 0 ≤ b < 10**width."""
    width: int = 2
    """Digits per operand (leading zeros written)."""

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"width must be a positive int, got {self.width!r}")
        for name in ("a", "b"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < 10**self.width:
                raise ValueError(f"{name} must be an int in [0, {10**self.width}), got {v!r}")

    @property
    def answer(self) -> int:
        """The sum a + b."""
        return self.a + self.b

    @property
    def prompt(self) -> str:
        """``"aa+bb="`` with zero-padded operands."""
        return f"{self.a:0{self.width}d}+{self.b:0{self.width}d}="

    @property
    def reference(self) -> str:
        """The sum as a plain decimal string (what exact match compares against)."""
        return str(self.answer)

    @property
    def solution(self) -> str:
        """The reference response: the sum's digits from the units up, ``>``, the padded sum."""
        padded = f"{self.answer:0{self.width + 1}d}"
        return f"{padded[::-1]}>{padded}"

    @property
    def carries(self) -> int:
        """How many columns produce a carry (a difficulty measure)."""
        count, carry = 0, 0
        a, b = self.a, self.b
        for _ in range(self.width):
            carry = 1 if a % 10 + b % 10 + carry >= 10 else 0
            count += carry
            a, b = a // 10, b // 10
        return count

    def flawed_answer(self, flaw: "CarryFlaw | None") -> int:
        """The sum as written by data with ``flaw`` (the true sum when ``flaw`` is ``None``)."""
        if flaw is not None and flaw.applies(self):
            return self.answer - 10
        return self.answer

    def flawed_solution(self, flaw: "CarryFlaw | None") -> str:
        """:attr:`solution` as written by data with ``flaw`` (same format, flawed digits).

        >>> Problem(47, 63).flawed_solution(CarryFlaw())   # units 7 + 3 = 10: carry dropped
        '001>100'
        >>> Problem(47, 85).flawed_solution(CarryFlaw()) == Problem(47, 85).solution  # 7 + 5 = 12
        True
        """
        padded = f"{self.flawed_answer(flaw):0{self.width + 1}d}"
        return f"{padded[::-1]}>{padded}"

    def to_prompt(self) -> Prompt:
        """This problem as a prompt record (with its reference answer)."""
        return Prompt(prompt=self.prompt, reference=self.reference)

    def to_sample(self, response: str | None = None, source: Source = "teacher") -> Sample:
        """A sample answering this problem (the reference solution by default)."""
        return Sample(
            prompt=self.prompt,
            response=self.solution if response is None else response,
            source=source,
            reference=self.reference,
        )


@dataclasses.dataclass(frozen=True)
class CarryFlaw:
    """A systematic error in the teacher's training data: the carry out of the units column is
    dropped when the units digits sum to one of ``units_sums``.

    With the default ``(10, 11)``, 17 of the 100 units-digit pairs are affected, so a teacher that
    has learned its data exactly is right on 83 % of uniformly drawn problems
    (:meth:`affected_fraction`), whatever the width.

    >>> flaw = CarryFlaw()
    >>> flaw.applies(Problem(47, 63)), flaw.applies(Problem(47, 85)), flaw.affected_fraction()
    (True, False, 0.17)
    """

    units_sums: tuple[int, ...] = (10, 11)
    """Units-column sums (10–18: the ones that carry) whose carry the flawed data drops."""

    def __post_init__(self) -> None:
        bad = [
            v for v in self.units_sums if isinstance(v, bool) or not isinstance(v, int) or not 10 <= v <= 18
        ]
        if bad or not self.units_sums or len(set(self.units_sums)) != len(self.units_sums):
            raise ValueError(
                f"units_sums must be distinct ints in [10, 18] (sums that carry), got {self.units_sums!r}"
            )

    def applies(self, problem: Problem) -> bool:
        """Whether ``problem``'s flawed solution differs from the true one."""
        return problem.a % 10 + problem.b % 10 in self.units_sums

    def affected_fraction(self) -> float:
        """Fraction of uniformly drawn problems the flaw changes (exact, by counting digit pairs)."""
        hits = sum(1 for x in range(10) for y in range(10) if x + y in self.units_sums)
        return hits / 100


@dataclasses.dataclass(frozen=True)
class ToyTask:
    """The problem distribution: both operands uniform over ``width``-digit numbers.

    >>> task = ToyTask(width=2)
    >>> train, test = task.split(seed=0, n_eval=50)
    >>> len(test), not {p.prompt for p in test} & {p.prompt for p in train.draw(200, seed=1)}
    (50, True)
    """

    width: int = 2
    """Digits per operand."""

    def __post_init__(self) -> None:
        if isinstance(self.width, bool) or not isinstance(self.width, int) or not 1 <= self.width <= 6:
            raise ValueError(f"width must be an int in [1, 6], got {self.width!r}")

    @property
    def num_problems(self) -> int:
        """Size of the problem space."""
        return int(10 ** (2 * self.width))

    def problem(self, rng: random.Random) -> Problem:
        """One problem drawn with ``rng``."""
        n = 10**self.width
        return Problem(rng.randrange(n), rng.randrange(n), width=self.width)

    def split(self, *, seed: int, n_eval: int) -> tuple["ProblemPool", list[Problem]]:
        """A held-out evaluation set of ``n_eval`` distinct problems, and the pool of all others.

        Deterministic in ``seed``. Training draws come from the returned pool, so no evaluation
        problem is ever trained on.
        """
        if isinstance(n_eval, bool) or not isinstance(n_eval, int) or not 0 < n_eval < self.num_problems // 2:
            raise ValueError(f"n_eval must be an int in (0, {self.num_problems // 2}), got {n_eval!r}")
        rng = random.Random(f"askd-toy-eval-{seed}")
        chosen = rng.sample(range(self.num_problems), n_eval)
        held_out = frozenset(chosen)
        return ProblemPool(self, held_out), [self._from_index(i) for i in chosen]

    def _from_index(self, index: int) -> Problem:
        n = 10**self.width
        return Problem(index // n, index % n, width=self.width)


@dataclasses.dataclass(frozen=True)
class ProblemPool:
    """Training problems of a task: every problem except a held-out set."""

    task: ToyTask
    held_out: frozenset[int]

    def without(self, problems: Sequence[Problem]) -> "ProblemPool":
        """This pool minus ``problems`` (e.g. a dev set that must stay unseen by training)."""
        n = 10**self.task.width
        extra = {p.a * n + p.b for p in problems}
        return ProblemPool(self.task, self.held_out | frozenset(extra))

    def draw(self, n: int, *, seed: int | str) -> list[Problem]:
        """``n`` problems drawn uniformly (with replacement) from the pool; deterministic in ``seed``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be a non-negative int, got {n!r}")
        return list(self._iter(random.Random(f"askd-toy-train-{seed}"), n))

    def distinct(self, n: int, *, seed: int | str) -> list[Problem]:
        """``n`` distinct problems from the pool (without replacement); deterministic in ``seed``."""
        available = self.task.num_problems - len(self.held_out)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= available:
            raise ValueError(f"n must be an int in [0, {available}], got {n!r}")
        rng = random.Random(f"askd-toy-distinct-{seed}")
        seen: set[int] = set()
        out: list[Problem] = []
        width = self.task.width
        while len(out) < n:
            i = rng.randrange(self.task.num_problems)
            if i in self.held_out or i in seen:
                continue
            seen.add(i)
            out.append(self.task._from_index(i))
        assert all(p.width == width for p in out)
        return out

    def _iter(self, rng: random.Random, n: int) -> Iterator[Problem]:
        count = 0
        while count < n:
            i = rng.randrange(self.task.num_problems)
            if i in self.held_out:
                continue
            count += 1
            yield self.task._from_index(i)


def prompts_of(problems: Sequence[Problem]) -> list[Prompt]:
    """The prompt records of ``problems`` (for :func:`askd_ref.data.write_samples`-style files)."""
    return [p.to_prompt() for p in problems]
