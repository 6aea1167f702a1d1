"""Small, dependency-light statistics for the toy experiments (paired comparisons).

Two kinds of pairing occur:

* **Per problem** (``askd demo``): two models answer the same n held-out problems. The exact
  McNemar test uses only the discordant pairs (b problems only A solves, c only B solves):
  under H0 each discordant pair is a fair coin, p = 2·P[Bin(b+c, ½) ≤ min(b, c)]. The 95 %
  interval of the accuracy difference uses the paired standard error
  se = sqrt((b + c) − (b − c)²/n)/n.
* **Per seed** (``askd bench quality``): each seed gives both methods the same SFT start, data
  and sampling seeds, so the per-seed differences d_1..d_k are paired. Reported: mean, sample
  std, the two-sided paired t-test p-value and the 95 % t interval (k − 1 degrees of freedom).
"""

import dataclasses
import math
from collections.abc import Sequence

from scipy import stats as _stats

__all__ = ["McNemar", "PairedT", "mcnemar", "paired_t"]


@dataclasses.dataclass(frozen=True)
class McNemar:
    """Per-problem paired comparison of A against B (A − B)."""

    n: int
    only_a: int
    only_b: int
    difference: float
    ci95: tuple[float, float]
    p_value: float


def mcnemar(correct_a: Sequence[float], correct_b: Sequence[float]) -> McNemar:
    """Exact McNemar test and paired 95 % CI of accuracy(A) − accuracy(B) on the same problems.

    >>> r = mcnemar([1, 1, 1, 0, 1, 1], [0, 0, 1, 0, 0, 1])
    >>> r.only_a, r.only_b, round(r.difference, 3), round(r.p_value, 3)
    (3, 0, 0.5, 0.25)
    """
    if len(correct_a) != len(correct_b) or not correct_a:
        raise ValueError(
            f"need two equally long, non-empty score lists, got {len(correct_a)} and {len(correct_b)}"
        )
    a = [s >= 0.5 for s in correct_a]
    b = [s >= 0.5 for s in correct_b]
    n = len(a)
    only_a = sum(x and not y for x, y in zip(a, b, strict=True))
    only_b = sum(y and not x for x, y in zip(a, b, strict=True))
    diff = (only_a - only_b) / n
    se = math.sqrt(max(0.0, (only_a + only_b) - (only_a - only_b) ** 2 / n)) / n
    k = only_a + only_b
    p = 1.0 if k == 0 else min(1.0, 2.0 * float(_stats.binom.cdf(min(only_a, only_b), k, 0.5)))
    return McNemar(n, only_a, only_b, diff, (diff - 1.96 * se, diff + 1.96 * se), p)


@dataclasses.dataclass(frozen=True)
class PairedT:
    """Per-seed paired comparison (A − B)."""

    k: int
    mean: float
    std: float
    ci95: tuple[float, float]
    p_value: float
    wins: int
    """Seeds on which A is strictly better."""


def paired_t(values_a: Sequence[float], values_b: Sequence[float]) -> PairedT:
    """Paired t-test of mean(A − B) over seeds, with its 95 % t interval.

    With k = 1, or all differences equal, the interval collapses and p is 1 (no evidence) when
    the mean difference is 0 and 0 otherwise.

    >>> r = paired_t([0.8, 0.7, 0.9], [0.6, 0.6, 0.7])
    >>> round(r.mean, 3), r.wins, r.p_value < 0.05
    (0.167, 3, True)
    """
    if len(values_a) != len(values_b) or not values_a:
        raise ValueError(f"need two equally long, non-empty lists, got {len(values_a)} and {len(values_b)}")
    d = [x - y for x, y in zip(values_a, values_b, strict=True)]
    k = len(d)
    mean = sum(d) / k
    wins = sum(x > 0 for x in d)
    if k == 1:
        return PairedT(1, mean, 0.0, (mean, mean), 1.0 if mean == 0 else 0.0, wins)
    std = math.sqrt(sum((x - mean) ** 2 for x in d) / (k - 1))
    if std == 0:
        return PairedT(k, mean, 0.0, (mean, mean), 1.0 if mean == 0 else 0.0, wins)
    se = std / math.sqrt(k)
    t = mean / se
    p = float(2 * _stats.t.sf(abs(t), k - 1))
    half = float(_stats.t.ppf(0.975, k - 1)) * se
    return PairedT(k, mean, std, (mean - half, mean + half), p, wins)
