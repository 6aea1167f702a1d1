"""A graded quality signal for the toy task: partial credit per correct character of the solution.

Exact match (:class:`askd_ref.quality.math.ExactMatch`) gives r ∈ {0, 1}; with it the soft gate,
the hard gate and the continuous quality→skew schedule of ASKD cannot differ much, because r never
sits between the thresholds. :class:`DigitCredit` scores the whole written solution instead —
the working (the sum's digits from the units up), ``>``, and the sum — so a response with one
wrong column gets most of the credit and r takes ``2·(width + 1) + 2`` distinct values.
"""

import re
from collections.abc import Sequence

from askd_ref.engine.data import Sample
from askd_ref.quality import validate_scores

__all__ = ["DigitCredit", "digit_credit"]

_PROMPT = re.compile(r"^(\d+)\+(\d+)=$")


def digit_credit(prompt: str, response: str) -> float:
    """Fraction of the expected solution's characters that ``response`` has at the same position.

    r = #{i < L : response[i] = s*[i]} / max(L, len(response)), where s* is the correct solution of
    ``prompt`` (``"47+85="`` → ``"231>132"``, L = 2·(width + 1) + 1). Extra characters count as
    wrong (the denominator grows), so r = 1 exactly when the response is the correct solution.

    >>> digit_credit("47+85=", "231>132"), digit_credit("47+63=", "001>100")  # a dropped carry
    (1.0, 0.7142857142857143)
    >>> digit_credit("47+85=", ""), digit_credit("47+85=", "231>1322")
    (0.0, 0.875)
    """
    m = _PROMPT.match(prompt.strip())
    if m is None or len(m.group(1)) != len(m.group(2)):
        raise ValueError(
            f"digit_credit: prompt {prompt[:40]!r} is not a toy problem 'a+b=' with equal-width operands"
        )
    width = len(m.group(1))
    padded = f"{int(m.group(1)) + int(m.group(2)):0{width + 1}d}"
    expected = f"{padded[::-1]}>{padded}"
    got = response.strip()
    hits = sum(1 for x, y in zip(got, expected, strict=False) if x == y)
    return hits / max(len(expected), len(got))


class DigitCredit:
    """Quality r = :func:`digit_credit` of each sample (graded, in [0, 1]); registered as
    ``"digit_credit"`` (:func:`askd_ref.quality.get_signal`).

    >>> DigitCredit().score([Sample("47+63=", "001>100", "teacher"), Sample("47+63=", "011>110", "student")])
    [0.7142857142857143, 1.0]
    """

    name: str = "digit_credit"

    def score(self, samples: Sequence[Sample]) -> list[float]:
        out = [digit_credit(s.prompt, s.response) for s in samples]
        return validate_scores(self.name, samples, out)
