"""Building blocks shared by the derivations: the result records, the symbols, and the checks.

A derivation is a short symbolic computation that *raises* when the identity it claims does not
simplify to zero (:class:`DerivationError`), so producing a :class:`Derivation` object is the
proof having gone through. sympy is untyped; every sympy object is typed :data:`Expr` (``Any``).
"""

import dataclasses
import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias

import sympy as sp

__all__ = [
    "ALPHA",
    "ALPHA_HI",
    "ALPHA_LO",
    "DELTA",
    "LAMBDA",
    "TAU",
    "TAU_HI",
    "TAU_LO",
    "Derivation",
    "DerivationError",
    "Expr",
    "P",
    "Q",
    "R",
    "Result",
    "Step",
    "U",
    "c_det_of",
    "c_full_of",
    "c_tilde_of",
    "delta_from_u",
    "in_terms_of_u",
    "limit",
    "logit",
    "require_equal",
    "require_sign_on_unit_interval",
    "require_zero",
    "sigmoid",
    "u_of",
]

#: A sympy expression (sympy ships no type information).
Expr: TypeAlias = Any

#: Sequence log-ratio Δ = log q(y) − log p(y).
DELTA: Expr = sp.Symbol("Delta", real=True)
#: Skew α ∈ (0, 1).
ALPHA: Expr = sp.Symbol("alpha", positive=True)
#: Quality r ∈ [0, 1].
R: Expr = sp.Symbol("r", nonnegative=True)
#: Teacher and student probabilities of one outcome (sequence or token).
P: Expr = sp.Symbol("p", positive=True)
Q: Expr = sp.Symbol("q", positive=True)
#: u = q/((1−α)p + αq) ∈ (0, 1/α].
U: Expr = sp.Symbol("u", positive=True)
#: Lagrange multiplier of the normalisation constraint.
LAMBDA: Expr = sp.Symbol("lambda", positive=True)
#: Schedule and gate parameters (spec §9).
ALPHA_LO: Expr = sp.Symbol("alpha_lo", positive=True)
ALPHA_HI: Expr = sp.Symbol("alpha_hi", positive=True)
TAU_LO: Expr = sp.Symbol("tau_lo", nonnegative=True)
TAU_HI: Expr = sp.Symbol("tau_hi", positive=True)
TAU: Expr = sp.Symbol("tau", positive=True)

_UNIT_T: Expr = sp.Symbol("T", positive=True)


class DerivationError(AssertionError):
    """A claimed identity did not simplify to zero (or a claimed sign could not be shown)."""


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a derivation: what is done, and optionally the expression it produces."""

    text: str
    expr: Expr = None


@dataclasses.dataclass(frozen=True)
class Result:
    """A derived expression, the ordered symbols it is a function of, and what it means.

    ``args`` fixes the argument order of :meth:`function` (a float64 NumPy lambdification).
    """

    name: str
    expr: Expr
    args: tuple[Expr, ...]
    meaning: str
    display: Expr = None
    """An equal, shorter form for the document (e.g. in q instead of softmax(z)); ``None``: ``expr``."""

    def function(self) -> Callable[..., Any]:
        """``sympy.lambdify`` of the expression over ``args`` (NumPy, float64)."""
        return _lambdify(self.args, self.expr)


@functools.cache
def _lambdify(args: tuple[Expr, ...], expr: Expr) -> Callable[..., Any]:
    fn: Callable[..., Any] = sp.lambdify(args, expr, modules="numpy")
    return fn


@dataclasses.dataclass(frozen=True)
class Derivation:
    """What a ``derive_*`` function returns.

    Attributes:
        label: the spec label (``"E5"``, ``"T4"``, …).
        function: the name of the ``derive_*`` function that produced it.
        title: one line.
        claim: the statement proved, in words and formulas.
        steps: the derivation, in order.
        results: the derived expressions (lambdified and compared with ``askd_ref`` in tests).
        implementation: dotted names of the ``askd_ref`` functions that implement the result.
        values: named numbers (e.g. a constant at the default options), exact sympy numbers.
    """

    label: str
    function: str
    title: str
    claim: str
    steps: tuple[Step, ...]
    results: tuple[Result, ...]
    implementation: tuple[str, ...]
    values: tuple[tuple[str, Expr], ...] = ()

    def result(self, name: str) -> Result:
        """The result called ``name``; ``KeyError`` naming the available ones otherwise."""
        for res in self.results:
            if res.name == name:
                return res
        raise KeyError(f"{self.function} has no result {name!r}; it has {[r.name for r in self.results]}")

    def value(self, name: str) -> float:
        """The named number as a float."""
        for key, val in self.values:
            if key == name:
                return float(val)
        raise KeyError(f"{self.function} has no value {name!r}; it has {[k for k, _ in self.values]}")


# --------------------------------------------------------------------------- coefficient formulas


def sigmoid(x: Expr) -> Expr:
    """σ(x) = 1/(1 + e^{−x})."""
    return 1 / (1 + sp.exp(-x))


def logit(a: Expr) -> Expr:
    """logit(a) = log(a/(1 − a))."""
    return sp.log(a / (1 - a))


def u_of(delta: Expr, alpha: Expr) -> Expr:
    """u(Δ; α) = 1/(α + (1 − α)e^{−Δ}) (spec E6)."""
    return 1 / (alpha + (1 - alpha) * sp.exp(-delta))


def c_full_of(delta: Expr, alpha: Expr) -> Expr:
    """Uncentred SGO coefficient c = log u + 1 − αu."""
    u = u_of(delta, alpha)
    return sp.log(u) + 1 - alpha * u


def c_tilde_of(delta: Expr, alpha: Expr) -> Expr:
    """Centred SGO coefficient c̃ = log u − α(u − 1) (spec E6)."""
    u = u_of(delta, alpha)
    return sp.log(u) - alpha * (u - 1)


def c_det_of(delta: Expr, alpha: Expr) -> Expr:
    """Stop-mode SGO coefficient c_det = log u (spec E7)."""
    return sp.log(u_of(delta, alpha))


def delta_from_u(u: Expr, alpha: Expr) -> Expr:
    """Δ as a function of u: from 1/u = α + (1 − α)e^{−Δ}, Δ = −log((1/u − α)/(1 − α))."""
    return -sp.log((1 / u - alpha) / (1 - alpha))


def in_terms_of_u(expr: Expr, alpha: Expr = ALPHA, delta: Expr = DELTA, u: Expr = U) -> Expr:
    """Rewrite a function of (Δ, α) as a function of (u, α) and simplify; Δ must disappear."""
    out = sp.simplify(sp.expand_log(expr.subs(delta, delta_from_u(u, alpha)), force=True))
    out = sp.factor(sp.simplify(out))
    if delta in out.free_symbols:
        raise DerivationError(f"could not eliminate {delta} from {expr}")
    return out


def limit(expr: Expr, var: Expr, point: Expr) -> Expr:
    """``sympy.limit`` followed by simplification (limits often come back unsimplified)."""
    out = sp.limit(expr, var, point)
    return sp.factor(sp.simplify(sp.factor(sp.simplify(out))))


# --------------------------------------------------------------------------- checks


def _simplify_plain(e: Expr) -> Expr:
    return sp.simplify(e)


def _simplify_logs(e: Expr) -> Expr:
    return sp.simplify(sp.expand_log(e, force=True))


def _simplify_exp(e: Expr) -> Expr:
    return sp.simplify(sp.expand_log(sp.simplify(e.rewrite(sp.exp)), force=True))


def _simplify_rational(e: Expr) -> Expr:
    return sp.cancel(sp.together(sp.expand(e)))


_SIMPLIFIERS: tuple[Callable[[Expr], Expr], ...] = (
    _simplify_plain,
    _simplify_logs,
    _simplify_exp,
    _simplify_rational,
)


def _is_zero(expr: Expr) -> bool:
    if expr == 0:
        return True
    return any(simplify(expr) == 0 for simplify in _SIMPLIFIERS)


def require_zero(expr: Expr, what: str) -> None:
    """Raise :class:`DerivationError` unless ``expr`` simplifies to 0 (elementwise for matrices)."""
    items: Iterable[Expr] = list(expr) if isinstance(expr, sp.MatrixBase) else [expr]
    for item in items:
        if not _is_zero(item):
            raise DerivationError(f"{what}: expected 0, sympy left {sp.simplify(item)}")


def require_equal(lhs: Expr, rhs: Expr, what: str) -> None:
    """Raise :class:`DerivationError` unless ``lhs − rhs`` simplifies to 0."""
    require_zero(lhs - rhs, what)


def require_sign_on_unit_interval(expr: Expr, alpha: Expr, sign: str, what: str) -> Expr:
    """Show that ``expr`` (a function of ``alpha`` only) has ``sign`` for every α ∈ (0, 1).

    Substitutes α = 1/(1 + T) with T > 0, so that both α and 1 − α are manifestly positive,
    and asks sympy for the sign. Returns the substituted, simplified expression.
    """
    if sign not in ("positive", "negative", "nonnegative", "nonpositive"):
        raise ValueError(f"sign must be positive/negative/nonnegative/nonpositive, got {sign!r}")
    sub = sp.simplify(sp.factor(sp.simplify(expr.subs(alpha, 1 / (1 + _UNIT_T)))))
    verdict = getattr(sub, f"is_{sign}")
    if verdict is not True:
        raise DerivationError(f"{what}: could not show {expr} is {sign} on (0, 1) (as {sub})")
    return sub
