"""T13: the inequalities of T3, T4, T7 and T8 proved by interval arithmetic (``python -m proofs.certify``).

Every inequality is written as a *margin* m(x) = bound − f(x) ≥ 0 on a compact box of
compactified variables (Δ ∈ ℝ becomes t = αu = σ(Δ + logit α) ∈ [0, 1], s = σ(Δ) ∈ [0, 1] or
v ∈ [0, 1] on a half line; α runs over A = [2⁻¹⁰, 1 − 2⁻¹⁰], the ends being the limits of T6).
mpmath's ``iv`` context evaluates m on a box to an interval that is guaranteed to contain every
value (outward rounding), and a branch and bound splits a box until the lower end of that
interval is ≥ 0. The domain is partitioned into *pieces*, each certified by one method:

* **plain**: the interval lower bound of m is ≥ 0 on every box of a subdivision.
* **monotone**: ∂m/∂x_k has a certified sign on every box of the piece (pointing away from a face
  x_k = e), so m on the piece is ≥ m on the face; the face is certified in turn (plain, monotone
  in another variable, or exact). This is how a *tight* inequality is proved near the points
  where its two sides touch (margin 0), which no bisection can reach.
* **exact**: sympy simplifies m on a face (or at a point) to exactly 0.
* **factored**: sympy proves m = f₁·f₂·…, and each factor is certified ≥ 0 (or > 0) by plain
  bisection: the zero of m is factored out analytically.

The margins and their derivatives are written once, in functions generic over the arithmetic
(:class:`Ops`), so the same code builds the sympy expression that the identities are checked on
(∂m/∂x_k by differentiation, factorisations and exact faces by simplification) and the interval
function that is bisected. Each margin is also compared, at interior points and to 1e-20, with
the same quantity built from the definitions in :mod:`proofs._core` (``c_tilde_of``, ``u_of``, …).

T7 and T8 are statements over distributions of any size; they reduce, by the summation steps of
their derivations (docs/derivations.md), to per-outcome lemmas and to two-outcome problems, and
it is those that are certified here (the reductions are stated with each row).

Sharp constants are enclosed by an independent interval branch and bound for the supremum (boxes
whose upper bound falls below the best certified point value are discarded), and the closed form
is checked to lie inside the enclosure.

``--fast`` runs a subset in a few seconds (``checks/test_t13_certified.py``); the full run is a
slow test and writes the table of ``docs/derivations.md`` (``--markdown``, ``--write``).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import mpmath
import sympy as sp
from mpmath import iv

from proofs._core import DerivationError, c_det_of, c_tilde_of, delta_from_u, require_zero

__all__ = [
    "CONSTANTS",
    "INEQUALITIES",
    "TABLE_PATH",
    "Constant",
    "Inequality",
    "certify_constant",
    "certify_inequality",
    "main",
    "markdown",
]

#: Where ``--write`` puts the Markdown table; ``python -m proofs`` includes it in docs/derivations.md.
TABLE_PATH = Path(__file__).resolve().parent / "certified.md"

Box = tuple[tuple[float, float], ...]
Fn = Callable[..., Any]

#: α ∈ A = [2⁻¹⁰, 1 − 2⁻¹⁰]; the ends α → 0, 1 are the limits of T6.
A_LO, A_HI = 2.0**-10, 1 - 2.0**-10
UNIT = (0.0, 1.0)
ALPHA_TEXT = "α ∈ [2⁻¹⁰, 1 − 2⁻¹⁰]"


class CertificationError(Exception):
    """A box on which the margin could not be certified (the inequality is not proved)."""


# --------------------------------------------------------------------------- arithmetic


class Ops:
    """Arithmetic the margins are written in: sympy (exact, for identities) or mpmath ``iv``."""

    symbolic = False

    def rat(self, p: int, q: int = 1) -> Any:
        return iv.mpf(p) / q

    def log(self, x: Any) -> Any:
        return iv.log(x)

    def exp(self, x: Any) -> Any:
        return iv.exp(x)

    def sqrt(self, x: Any) -> Any:
        return iv.sqrt(x)

    def abs(self, x: Any) -> Any:
        return abs(x)

    def min0(self, x: Any) -> Any:
        """min(x, 0)."""
        return iv.mpf([min(mpmath.mpf(x.a), 0), min(mpmath.mpf(x.b), 0)])

    def xlogx(self, x: Any) -> Any:
        """x·log x on x ≥ 0 with 0·log 0 = 0: a rigorous enclosure from its monotonicity
        (decreasing on [0, 1/e], increasing beyond; 0.367 < 1/e < 0.368)."""
        a, b = mpmath.mpf(x.a), mpmath.mpf(x.b)
        if a < 0:
            raise CertificationError(f"xlogx of an interval reaching below 0: {x}")

        def at(p: Any) -> Any:
            return iv.mpf(0) if p == 0 else iv.mpf(p) * iv.log(iv.mpf(p))

        fa, fb = at(a), at(b)
        if b <= mpmath.mpf("0.367"):
            return iv.mpf([mpmath.mpf(fb.a), mpmath.mpf(fa.b)])
        if a >= mpmath.mpf("0.368"):
            return iv.mpf([mpmath.mpf(fa.a), mpmath.mpf(fb.b)])
        low = mpmath.mpf((-iv.exp(-1)).a)
        return iv.mpf([low, max(mpmath.mpf(fa.b), mpmath.mpf(fb.b))])


class SymOps(Ops):
    """The same operations in sympy."""

    symbolic = True

    def rat(self, p: int, q: int = 1) -> Any:
        return sp.Rational(p, q)

    def log(self, x: Any) -> Any:
        return sp.log(x)

    def exp(self, x: Any) -> Any:
        return sp.exp(x)

    def sqrt(self, x: Any) -> Any:
        return sp.sqrt(x)

    def abs(self, x: Any) -> Any:
        return sp.Abs(x)

    def min0(self, x: Any) -> Any:
        return sp.Min(x, 0)

    def xlogx(self, x: Any) -> Any:
        return x * sp.log(x)


IV = Ops()
SYM = SymOps()


# --------------------------------------------------------------------------- pieces


@dataclasses.dataclass(frozen=True)
class Plain:
    """m ≥ 0 (> 0 if strict) by bisection of ``box``."""

    box: Box
    strict: bool = False


@dataclasses.dataclass(frozen=True)
class Monotone:
    """∂m/∂x_var ≥ 0 (end = lo) or ≤ 0 (end = hi) on ``box``, and m ≥ 0 on the face x_var = end."""

    box: Box
    var: int
    end: str  # "lo" or "hi"
    derivative: Fn
    face: Piece


@dataclasses.dataclass(frozen=True)
class Exact:
    """m simplifies to exactly 0 (sympy) with the degenerate coordinates of ``box`` substituted."""

    box: Box


@dataclasses.dataclass(frozen=True)
class Factored:
    """m = Π factors (sympy), each factor ≥ 0 (> 0 where ``strict`` says so) by bisection of ``box``."""

    box: Box
    factors: tuple[Fn, ...]
    strict: tuple[bool, ...] = ()


Piece = Plain | Monotone | Exact | Factored


@dataclasses.dataclass(frozen=True)
class Inequality:
    """One inequality of T3/T4/T7/T8 as margin ≥ 0 on a box, with the pieces that certify it."""

    label: str
    statement: str
    variables: tuple[str, ...]
    domain: Box
    domain_text: str
    margin: Fn
    pieces: tuple[Piece, ...]
    reference: Fn | None = None  # the margin built from proofs._core, compared at points
    fast: bool = False


@dataclasses.dataclass(frozen=True)
class Constant:
    """A sharp constant: sup of ``fn`` over ``box`` enclosed, and its closed form inside."""

    label: str
    name: str
    variables: tuple[str, ...]
    box: Box
    fn: Fn
    closed_form: Any  # sympy number, or None where there is none
    closed_text: str
    rel_tol: float = 1e-9
    fast: bool = False


@dataclasses.dataclass
class Tally:
    boxes: int = 0
    min_margin: Any = dataclasses.field(default_factory=lambda: mpmath.inf)
    methods: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass(frozen=True)
class InequalityResult:
    inequality: Inequality
    boxes: int
    min_margin: Any
    methods: tuple[str, ...]
    seconds: float


@dataclasses.dataclass(frozen=True)
class ConstantResult:
    constant: Constant
    lower: Any
    upper: Any
    boxes: int
    contains_closed_form: bool
    seconds: float


# --------------------------------------------------------------------------- branch and bound

MAX_BOXES = 400_000
#: Relative width of the constants' enclosures in ``--fast`` runs.
FAST_REL_TOL = 1e-3
MIN_WIDTH = 2.0**-40


def _ivbox(box: Box) -> list[Any]:
    return [iv.mpf([lo, hi]) for lo, hi in box]


def _split(box: Box) -> tuple[Box, Box]:
    widths = [hi - lo for lo, hi in box]
    k = max(range(len(box)), key=lambda i: widths[i])
    lo, hi = box[k]
    mid = (lo + hi) / 2
    left = (*box[:k], (lo, mid), *box[k + 1 :])
    right = (*box[:k], (mid, hi), *box[k + 1 :])
    return left, right


def _bisect(fn: Fn, box: Box, strict: bool, tally: Tally, what: str) -> None:
    """Certify fn ≥ 0 (> 0) on ``box`` by bisection; raise :class:`CertificationError` otherwise."""
    stack = [box]
    while stack:
        b = stack.pop()
        tally.boxes += 1
        if tally.boxes > MAX_BOXES:
            raise CertificationError(f"{what}: more than {MAX_BOXES} boxes")
        value = fn(IV, *_ivbox(b))
        low = mpmath.mpf(value.a)
        if low > 0 or (low == 0 and not strict):
            tally.min_margin = min(tally.min_margin, low)
            continue
        if max(hi - lo for lo, hi in b) < MIN_WIDTH:
            raise CertificationError(f"{what}: not certified on the box {b} (enclosure {value})")
        stack.extend(_split(b))


def _symbols(variables: Sequence[str]) -> list[Any]:
    return [sp.Symbol(v, real=True) for v in variables]


def _product(factors: Sequence[Any]) -> Any:
    out: Any = 1
    for f in factors:
        out = out * f
    return out


def _certify_piece(ineq: Inequality, piece: Piece, tally: Tally) -> None:
    syms = _symbols(ineq.variables)
    if isinstance(piece, Plain):
        tally.methods.add("plain")
        _bisect(ineq.margin, piece.box, piece.strict, tally, f"{ineq.statement} (plain)")
    elif isinstance(piece, Factored):
        tally.methods.add("factored")
        require_zero(
            ineq.margin(SYM, *syms) - _product([f(SYM, *syms) for f in piece.factors]),
            f"{ineq.statement}: margin = product of its factors",
        )
        mins = []
        for i, factor in enumerate(piece.factors):
            sub = Tally()
            strict = piece.strict[i] if piece.strict else False
            _bisect(factor, piece.box, strict, sub, f"{ineq.statement} (factor {i + 1})")
            tally.boxes += sub.boxes
            mins.append(sub.min_margin)
        tally.min_margin = min(tally.min_margin, _product(mins))
    elif isinstance(piece, Monotone):
        tally.methods.add("monotone")
        sym = syms[piece.var]
        require_zero(
            sp.diff(ineq.margin(SYM, *syms), sym) - piece.derivative(SYM, *syms),
            f"{ineq.statement}: ∂m/∂{sym}",
        )
        sign = 1 if piece.end == "lo" else -1
        _bisect(
            lambda ops, *x: sign * piece.derivative(ops, *x),
            piece.box,
            False,
            tally,
            f"{ineq.statement} (∂m/∂{sym} sign)",
        )
        value = piece.box[piece.var][0 if piece.end == "lo" else 1]
        face = piece.face
        expected = (*piece.box[: piece.var], (value, value), *piece.box[piece.var + 1 :])
        if face.box != expected:
            raise CertificationError(f"{ineq.statement}: the face {face.box} is not {expected}")
        _certify_piece(ineq, face, tally)
    else:
        tally.methods.add("exact")
        subs = {s: sp.nsimplify(lo) for s, (lo, hi) in zip(syms, piece.box, strict=True) if lo == hi}
        require_zero(ineq.margin(SYM, *syms).subs(subs), f"{ineq.statement}: margin on the face {subs}")
        tally.min_margin = min(tally.min_margin, mpmath.mpf(0))


def _volume(box: Box) -> Fraction:
    out = Fraction(1)
    for lo, hi in box:
        out *= Fraction(hi) - Fraction(lo)
    return out


def _check_partition(ineq: Inequality) -> None:
    """The pieces lie in the domain, do not overlap, and their volumes add up to the domain's."""
    boxes = [p.box for p in ineq.pieces]
    for b in boxes:
        if len(b) != len(ineq.domain) or any(
            lo < dlo or hi > dhi for (lo, hi), (dlo, dhi) in zip(b, ineq.domain, strict=True)
        ):
            raise CertificationError(f"{ineq.statement}: piece {b} outside the domain")
    for b1, b2 in itertools.combinations(boxes, 2):
        overlap = tuple((max(l1, l2), min(h1, h2)) for (l1, h1), (l2, h2) in zip(b1, b2, strict=True))
        if all(lo < hi for lo, hi in overlap):
            raise CertificationError(f"{ineq.statement}: pieces {b1} and {b2} overlap")
    if sum(_volume(b) for b in boxes) != _volume(ineq.domain):
        raise CertificationError(f"{ineq.statement}: the pieces do not cover the domain")


def _check_reference(ineq: Inequality) -> None:
    """The margin agrees with its definition-built reference at interior points (to 1e-20)."""
    if ineq.reference is None:
        return
    syms = _symbols(ineq.variables)
    mine = ineq.margin(SYM, *syms)
    ref = ineq.reference(*syms)
    for frac in (Fraction(1, 3), Fraction(2, 7), Fraction(5, 9), Fraction(7, 8), Fraction(1, 11)):
        point = {
            s: sp.Rational(Fraction(lo) + frac * (Fraction(hi) - Fraction(lo)))
            for s, (lo, hi) in zip(syms, ineq.domain, strict=True)
        }
        a, b = sp.N(mine.subs(point), 40), sp.N(ref.subs(point), 40)
        if abs(a - b) > 1e-20 * (1 + abs(b)):
            raise DerivationError(f"{ineq.statement}: margin {a} ≠ definition {b} at {point}")


def certify_inequality(ineq: Inequality) -> InequalityResult:
    """Certify one inequality; raises :class:`CertificationError` or ``DerivationError`` if it fails."""
    start = time.perf_counter()
    _check_partition(ineq)
    _check_reference(ineq)
    tally = Tally()
    for piece in ineq.pieces:
        _certify_piece(ineq, piece, tally)
    return InequalityResult(
        ineq, tally.boxes, tally.min_margin, tuple(sorted(tally.methods)), time.perf_counter() - start
    )


def _iv_eval(expr: Any, env: dict[Any, Any]) -> Any:
    """Evaluate a sympy expression (+, ×, integer and ½ powers, log, exp, rationals) in ``iv``."""
    if expr.is_Symbol:
        return env[expr]
    if expr.is_Integer:
        return iv.mpf(int(expr))
    if expr.is_Rational:
        return iv.mpf(int(expr.p)) / int(expr.q)
    if expr is sp.E:
        return iv.exp(1)
    args = [_iv_eval(a, env) for a in expr.args]
    if isinstance(expr, sp.Add):
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if isinstance(expr, sp.Mul):
        out = args[0]
        for a in args[1:]:
            out = out * a
        return out
    if isinstance(expr, sp.Pow):
        e = expr.args[1]
        if e.is_Integer:
            n = int(e)
            return args[0] ** n if n >= 0 else 1 / args[0] ** (-n)
        if e == sp.Rational(1, 2):
            return iv.sqrt(args[0])
    if isinstance(expr, sp.log):
        return iv.log(args[0])
    if isinstance(expr, sp.exp):
        return iv.exp(args[0])
    raise NotImplementedError(f"no interval evaluation for {type(expr).__name__}")


def _gradient(fn: Fn, syms: Sequence[Any]) -> list[Any] | None:
    """sympy's gradient of ``fn``, or None where fn is not written symbolically (|·|, branches)."""
    try:
        expr = fn(SYM, *syms)
        grads = [sp.diff(expr, s) for s in syms]
        probe = {s: iv.mpf([0.25, 0.5]) for s in syms}
        for g in grads:
            _iv_eval(g, probe)
    except (AttributeError, TypeError, NotImplementedError):
        return None
    return grads


def certify_constant(const: Constant, rel_tol: float | None = None) -> ConstantResult:
    """Enclose sup ``fn`` over ``box`` by interval branch and bound, to ``rel_tol`` (default the
    constant's own), and check that the closed form is inside."""
    tol = const.rel_tol if rel_tol is None else rel_tol
    start = time.perf_counter()

    def point_lower(b: Box) -> Any:
        mid = tuple((lo + hi) / 2 for lo, hi in b)
        best = mpmath.mpf(const.fn(IV, *[iv.mpf(m) for m in mid]).a)
        for corner in itertools.product(*b):
            best = max(best, mpmath.mpf(const.fn(IV, *[iv.mpf(c) for c in corner]).a))
        return best

    syms = _symbols(const.variables)
    grads = _gradient(const.fn, syms)

    def upper(b: Box) -> Any:
        """Natural interval extension, sharpened by the monotonicity test (one variable) or the
        mean-value form f(m) + Σ ∂ᵢf(B)(Bᵢ − mᵢ) where the gradient is available."""
        box_iv = _ivbox(b)
        up = mpmath.mpf(const.fn(IV, *box_iv).b)
        if grads is None:
            return up
        env = dict(zip(syms, box_iv, strict=True))
        g = [_iv_eval(d, env) for d in grads]
        if len(b) == 1 and (mpmath.mpf(g[0].a) >= 0 or mpmath.mpf(g[0].b) <= 0):
            end = b[0][1] if mpmath.mpf(g[0].a) >= 0 else b[0][0]
            return min(up, mpmath.mpf(const.fn(IV, iv.mpf(end)).b))
        mid = [(lo + hi) / 2 for lo, hi in b]
        mv = const.fn(IV, *[iv.mpf(m) for m in mid])
        for gi, bi, mi in zip(g, box_iv, mid, strict=True):
            mv = mv + gi * (bi - mi)
        mv_up = mpmath.mpf(mv.b)
        return up if mpmath.isnan(mv_up) else min(up, mv_up)

    lower = point_lower(const.box)
    counter = itertools.count()
    heap: list[tuple[Any, int, Box]] = [(-upper(const.box), next(counter), const.box)]
    boxes = 1
    while True:
        neg_up, _, b = heap[0]
        top = -neg_up
        if top - lower <= tol * abs(lower):
            break
        heapq.heappop(heap)
        for child in _split(b):
            boxes += 1
            if boxes > MAX_BOXES:
                raise CertificationError(f"{const.name}: enclosure not reached in {MAX_BOXES} boxes")
            lower = max(lower, point_lower(child))
            up = upper(child)
            if up >= lower:
                heapq.heappush(heap, (-up, next(counter), child))
    top = -heap[0][0]
    inside = True
    if const.closed_form is not None:
        value = mpmath.mpf(str(sp.N(const.closed_form, 40)))
        inside = bool(lower <= value <= top)
    return ConstantResult(const, lower, top, boxes, inside, time.perf_counter() - start)


# --------------------------------------------------------------------------- the inequalities

R = Fraction


def _alpha_box(*others: tuple[float, float]) -> Box:
    return (*others, (A_LO, A_HI))


def _t_core(t: Any, a: Any) -> Any:
    """Δ as a function of t = αu (for the references)."""
    return delta_from_u(t / a, a)


def _w_s(ops: Ops, s: Any, a: Any) -> Any:
    return (1 - a) * s / ((1 - a) * s + a * (1 - s))


def _c_tilde_t(ops: Ops, t: Any, a: Any) -> Any:
    """c̃ = log u − α(u − 1) with u = t/α."""
    return ops.log(t / a) - t + a


def _dc_dalpha_t(ops: Ops, t: Any, a: Any) -> Any:
    """∂c̃/∂α = −(u − 1)(2 − α(u + 1))/(1 − α) with u = t/α."""
    return -(t - a) * (2 - t - a) / (a * (1 - a))


def _inequalities() -> tuple[Inequality, ...]:
    out: list[Inequality] = []
    half, three8, five8 = 0.5, 0.375, 0.625

    # T3 ---------------------------------------------------------------------------------
    out.append(
        Inequality(
            "T3",
            "w > 0 (w = s·k(s, α), k > 0 certified; w → 0 only as Δ → −∞)",
            ("s", "alpha"),
            _alpha_box(UNIT),
            f"s = σ(Δ) ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, s, a: _w_s(ops, s, a),
            (
                Factored(
                    _alpha_box(UNIT),
                    (lambda ops, s, a: s, lambda ops, s, a: (1 - a) / ((1 - a) * s + a * (1 - s))),
                    strict=(False, True),
                ),
            ),
            reference=lambda s, a: 1 / (1 + a / (1 - a) * (1 - s) / s),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T3",
            "w < 1 (1 − w = (1 − s)·k′(s, α), k′ > 0 certified)",
            ("s", "alpha"),
            _alpha_box(UNIT),
            f"s = σ(Δ) ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, s, a: 1 - _w_s(ops, s, a),
            (
                Factored(
                    _alpha_box(UNIT),
                    (lambda ops, s, a: 1 - s, lambda ops, s, a: a / ((1 - a) * s + a * (1 - s))),
                    strict=(False, True),
                ),
            ),
            reference=lambda s, a: 1 - 1 / (1 + a / (1 - a) * (1 - s) / s),
            fast=True,
        )
    )
    cap = Inequality(
        "T3",
        "c̃ ≤ log(1/α) − (1 − α)",
        ("t", "alpha"),
        _alpha_box(UNIT),
        f"t = αu = σ(Δ + logit α) ∈ [0, 1], {ALPHA_TEXT}",
        lambda ops, t, a: -ops.log(a) - (1 - a) - _c_tilde_t(ops, t, a),
        (
            Plain(_alpha_box((0.0, half))),
            Monotone(
                _alpha_box((half, 1.0)),
                0,
                "hi",
                lambda ops, t, a: -(1 - t) / t,
                Exact(_alpha_box((1.0, 1.0))),
            ),
        ),
        reference=lambda t, a: -sp.log(a) - (1 - a) - c_tilde_of(_t_core(t, a), a),
    )
    out.append(cap)
    out.append(
        Inequality(
            "T3",
            "c_det ≤ log(1/α)",
            ("t", "alpha"),
            _alpha_box(UNIT),
            f"t = αu ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, t, a: -ops.log(a) - ops.log(t / a),
            (
                Plain(_alpha_box((0.0, half))),
                Monotone(
                    _alpha_box((half, 1.0)), 0, "hi", lambda ops, t, a: -1 / t, Exact(_alpha_box((1.0, 1.0)))
                ),
            ),
            reference=lambda t, a: -sp.log(a) - c_det_of(_t_core(t, a), a),
            fast=True,
        )
    )
    # sign(c̃) = sign(Δ): Δ ≥ 0 ⇔ u = 1 + v(1/α − 1), v ∈ [0, 1]; Δ ≤ 0 ⇔ u = v ∈ [0, 1].
    out.append(
        Inequality(
            "T3",
            "c̃ ≥ 0 for Δ ≥ 0",
            ("v", "alpha"),
            _alpha_box(UNIT),
            f"u = 1 + v(1/α − 1), v ∈ [0, 1] (Δ ∈ [0, ∞]), {ALPHA_TEXT}",
            lambda ops, v, a: ops.log(1 + v * (1 - a) / a) - v * (1 - a),
            (
                Monotone(
                    _alpha_box(UNIT),
                    0,
                    "lo",
                    lambda ops, v, a: (1 - a) ** 2 * (1 - v) / (1 - (1 - v) * (1 - a)),
                    Exact(_alpha_box((0.0, 0.0))),
                ),
            ),
            reference=lambda v, a: c_tilde_of(delta_from_u(1 + v * (1 / a - 1), a), a),
        )
    )
    out.append(
        Inequality(
            "T3",
            "c̃ ≤ 0 for Δ ≤ 0",
            ("v", "alpha"),
            _alpha_box(UNIT),
            f"u = v ∈ [0, 1] (Δ ∈ [−∞, 0]), {ALPHA_TEXT}",
            lambda ops, v, a: -(ops.log(v) - a * (v - 1)),
            (
                Monotone(
                    _alpha_box(UNIT),
                    0,
                    "hi",
                    lambda ops, v, a: -(1 - a * v) / v,
                    Exact(_alpha_box((1.0, 1.0))),
                ),
            ),
            reference=lambda v, a: -c_tilde_of(delta_from_u(v, a), a),
        )
    )
    out.append(
        Inequality(
            "T3",
            "ĉ ≤ 0 where h(r) = 1 (ĉ = min(c̃(Δ; α_lo), 0))",
            ("t", "alpha_lo"),
            _alpha_box(UNIT),
            f"t = α_lo·u ∈ [0, 1], {ALPHA_TEXT.replace('α', 'α_lo')}",
            lambda ops, t, a: -ops.min0(_c_tilde_t(ops, t, a)),
            (Plain(_alpha_box(UNIT)),),
            reference=lambda t, a: -sp.Min(c_tilde_of(_t_core(t, a), a), 0),
        )
    )

    # T4 ---------------------------------------------------------------------------------
    def around_half(extra: tuple[tuple[float, float], ...], deriv: Fn) -> tuple[Piece, ...]:
        """Pieces of ω ∈ [0, 1] (first variable) touching at ω = 1/2: plain, monotone, monotone, plain."""
        at_half = ((half, half), *extra)
        return (
            Plain(((0.0, three8), *extra)),
            Monotone(((three8, half), *extra), 0, "hi", deriv, Plain(at_half)),
            Monotone(((half, five8), *extra), 0, "lo", deriv, Plain(at_half)),
            Plain(((five8, 1.0), *extra)),
        )

    out.append(
        Inequality(
            "T4",
            "|∂w/∂Δ| = w(1 − w) ≤ 1/4",
            ("omega",),
            (UNIT,),
            "ω = w ∈ [0, 1] (Δ ↦ w is onto (0, 1) for every α)",
            lambda ops, w: ops.rat(1, 4) - w * (1 - w),
            around_half((), lambda ops, w: -(1 - 2 * w)),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T4",
            "|∂w/∂α| = w(1 − w)/(α(1 − α)) ≤ 1/(4α(1 − α))",
            ("omega", "alpha"),
            _alpha_box(UNIT),
            f"ω = w ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, w, a: (ops.rat(1, 4) - w * (1 - w)) / (a * (1 - a)),
            around_half(((A_LO, A_HI),), lambda ops, w, a: -(1 - 2 * w) / (a * (1 - a))),
        )
    )
    out.append(
        Inequality(
            "T4",
            "∂c̃/∂Δ = (1 − αu)² ≤ 1 (c̃ is 1-Lipschitz in Δ; ≥ 0 as a square)",
            ("t", "alpha"),
            _alpha_box(UNIT),
            f"t = αu ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, t, a: 1 - (1 - t) ** 2,
            (Plain(_alpha_box(UNIT)),),
            reference=lambda t, a: (
                1 - sp.diff(c_tilde_of(sp.Symbol("D"), a), sp.Symbol("D")).subs(sp.Symbol("D"), _t_core(t, a))
            ),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T4",
            "∂c_det/∂Δ = 1 − αu ≥ 0 (c_det non-decreasing; ≤ 1 as αu ≥ 0)",
            ("t", "alpha"),
            _alpha_box(UNIT),
            f"t = αu ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, t, a: 1 - t,
            (Plain(_alpha_box(UNIT)),),
            reference=lambda t, a: sp.diff(c_det_of(sp.Symbol("D"), a), sp.Symbol("D")).subs(
                sp.Symbol("D"), _t_core(t, a)
            ),
        )
    )
    d_sym = sp.Symbol("D")
    out.append(
        Inequality(
            "T4",
            "∂c̃/∂α ≤ 1 + 1/(1 − α)",
            ("t", "alpha"),
            _alpha_box(UNIT),
            f"t = αu ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, t, a: 1 + 1 / (1 - a) - _dc_dalpha_t(ops, t, a),
            (
                Monotone(
                    _alpha_box((0.0, 0.125)),
                    0,
                    "lo",
                    lambda ops, t, a: (2 - 2 * t) / (a * (1 - a)),
                    Exact(_alpha_box((0.0, 0.0))),
                ),
                Plain(_alpha_box((0.125, 1.0))),
            ),
            reference=lambda t, a: (
                1
                + 1 / (1 - a)
                - sp.diff(c_tilde_of(d_sym, sp.Symbol("x")), sp.Symbol("x"))
                .subs(sp.Symbol("x"), a)
                .subs(d_sym, _t_core(t, a))
            ),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T4",
            "∂c̃/∂α ≥ −(1/α − 1)",
            ("t", "alpha"),
            _alpha_box(UNIT),
            f"t = αu ∈ [0, 1], {ALPHA_TEXT}",
            # ∂c̃/∂α + (1 − α)/α over the common denominator α(1 − α) (no cancellation of 1/α terms)
            lambda ops, t, a: (-(t - a) * (2 - t - a) + (1 - a) ** 2) / (a * (1 - a)),
            (
                Plain(_alpha_box((0.0, 0.875))),
                Monotone(
                    _alpha_box((0.875, 1.0)),
                    0,
                    "hi",
                    lambda ops, t, a: -(2 - 2 * t) / (a * (1 - a)),
                    Exact(_alpha_box((1.0, 1.0))),
                ),
            ),
            reference=lambda t, a: (
                sp.diff(c_tilde_of(d_sym, sp.Symbol("x")), sp.Symbol("x"))
                .subs(sp.Symbol("x"), a)
                .subs(d_sym, _t_core(t, a))
                + 1 / a
                - 1
            ),
        )
    )
    out.append(
        Inequality(
            "T4",
            "ĉ is 1-Lipschitz and non-decreasing in Δ: (1 − h)(1 − αu)² ≤ 1",
            ("t", "h"),
            (UNIT, UNIT),
            "t = αu ∈ [0, 1] (α = α_lo or α_S(r)), gate value h ∈ [0, 1]",
            lambda ops, t, h: 1 - (1 - h) * (1 - t) ** 2,
            (Plain((UNIT, UNIT)),),
        )
    )

    # ĉ in r at the defaults (linear schedule, full mixture gradient, fixed pull-up): for Δ > 0,
    # u = 1 + v(1/α − 1), α = α_S(r) = 1/10 + 4r/5, h = 2r − 1 on the ramp r ∈ [1/2, 1].
    def alpha_s(ops: Ops, r: Any) -> Any:
        return ops.rat(1, 10) + ops.rat(4, 5) * r

    def push_sensitivity(ops: Ops, v: Any, r: Any) -> Any:
        """L_α·|∂c̃/∂α| at α = α_S(r), Δ ≥ 0 (u = 1 + v(1/α − 1)): (4/5)·v(2 − v)(1 − α)/α."""
        a = alpha_s(ops, r)
        return ops.rat(4, 5) * v * (2 - v) * (1 - a) / a

    def c_tilde_v(ops: Ops, v: Any, r: Any) -> Any:
        a = alpha_s(ops, r)
        return ops.log(1 + v * (1 - a) / a) - v * (1 - a)

    def ref_push(v: Any, r: Any) -> Any:
        a = sp.Rational(1, 10) + sp.Rational(4, 5) * r
        x = sp.Symbol("x")
        d = sp.diff(c_tilde_of(d_sym, x), x).subs(x, a).subs(d_sym, delta_from_u(1 + v * (1 / a - 1), a))
        return sp.Rational(4, 5) * -d

    out.append(
        Inequality(
            "T4",
            "|∂ĉ/∂r| ≤ 36/5 below the ramp (defaults, Δ > 0, r < τ_lo)",
            ("v", "r"),
            (UNIT, (0.0, half)),
            "u = 1 + v(1/α_S − 1), v ∈ [0, 1]; r ∈ [0, 1/2]",
            lambda ops, v, r: ops.rat(36, 5) - push_sensitivity(ops, v, r),
            (
                Monotone(
                    ((half, 1.0), (0.0, 0.0625)),
                    0,
                    "hi",
                    lambda ops, v, r: -ops.rat(4, 5) * (2 - 2 * v) * (1 - alpha_s(ops, r)) / alpha_s(ops, r),
                    Monotone(
                        ((1.0, 1.0), (0.0, 0.0625)),
                        1,
                        "lo",
                        lambda ops, v, r: ops.rat(16, 25) * v * (2 - v) / alpha_s(ops, r) ** 2,
                        Exact(((1.0, 1.0), (0.0, 0.0))),
                    ),
                ),
                Plain(((0.0, half), (0.0, 0.0625))),
                Plain((UNIT, (0.0625, half))),
            ),
            reference=lambda v, r: sp.Rational(36, 5) - ref_push(v, r),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T4",
            "|∂ĉ/∂r| = L_h·c̃ + (1 − h)·L_α|∂c̃/∂α| ≤ 36/5 on the ramp (defaults, Δ > 0)",
            ("v", "r"),
            (UNIT, (half, 1.0)),
            "u = 1 + v(1/α_S − 1), v ∈ [0, 1]; r ∈ [1/2, 1]",
            lambda ops, v, r: (
                ops.rat(36, 5) - (2 * c_tilde_v(ops, v, r) + (1 - (2 * r - 1)) * push_sensitivity(ops, v, r))
            ),
            (Plain((UNIT, (half, 1.0))),),
            reference=lambda v, r: (
                sp.Rational(36, 5)
                - (
                    2 * c_tilde_of(delta_from_u(1 + v * (1 / _as(r) - 1), _as(r)), _as(r))
                    + (2 - 2 * r) * ref_push(v, r)
                )
            ),
        )
    )

    # T7 (per-outcome lemmas) ------------------------------------------------------------
    out.append(
        Inequality(
            "T7",
            "x − 1 − log x ≥ 0 (Gibbs; gives SKL_α, SRKL_α ≥ 0)",
            ("tau",),
            (UNIT,),
            "x = τ/(1 − τ) ∈ [0, ∞], τ ∈ [0, 1]",
            lambda ops, tau: tau / (1 - tau) - 1 - ops.log(tau / (1 - tau)),
            (
                Plain(((0.0, three8),)),
                Monotone(
                    ((three8, half),),
                    0,
                    "hi",
                    lambda ops, tau: (2 * tau - 1) / (tau * (1 - tau) ** 2),
                    Plain(((half, half),)),
                ),
                Monotone(
                    ((half, 1.0),),
                    0,
                    "lo",
                    lambda ops, tau: (2 * tau - 1) / (tau * (1 - tau) ** 2),
                    Plain(((half, half),)),
                ),
            ),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T7",
            "p/m ≤ 1/α, m = αp + (1 − α)q (gives SKL_α ≤ log(1/α) and |dSKL_α/dα| ≤ TV/α)",
            ("rho", "alpha"),
            _alpha_box(UNIT),
            f"ρ = q/(p + q) ∈ [0, 1] (the ratio is 0-homogeneous), {ALPHA_TEXT}",
            lambda ops, rho, a: 1 / a - (1 - rho) / (a * (1 - rho) + (1 - a) * rho),
            (
                Monotone(
                    _alpha_box(UNIT),
                    0,
                    "lo",
                    lambda ops, rho, a: (1 - a) / (a * (1 - rho) + (1 - a) * rho) ** 2,
                    Exact(_alpha_box((0.0, 0.0))),
                ),
            ),
        )
    )
    out.append(
        Inequality(
            "T7",
            "∂²/∂α² of the per-outcome SKL term ≥ 0 (convex, hence SKL_α ≤ (1 − α)KL and non-increasing)",
            ("rho", "alpha"),
            _alpha_box(UNIT),
            f"p = 1 − ρ, q = ρ (1-homogeneous term), ρ ∈ [0, 1], {ALPHA_TEXT}",
            lambda ops, rho, a: (1 - rho) * (1 - 2 * rho) ** 2 / (a * (1 - rho) + (1 - a) * rho) ** 2,
            (Plain(_alpha_box(UNIT)),),
            reference=lambda rho, a: sp.diff(
                (1 - rho) * sp.log((1 - rho) / (sp.Symbol("x") * (1 - rho) + (1 - sp.Symbol("x")) * rho)),
                sp.Symbol("x"),
                2,
            ).subs(sp.Symbol("x"), a),
        )
    )

    # T8 ---------------------------------------------------------------------------------
    b_lo, b_hi = 2.0**-5, 1 - 2.0**-11
    out.append(
        Inequality(
            "T8",
            "two outcomes: 2(1−α)x(1−x)/(α + (1−α)x) ≤ K_F = 2(1−√α)/(1+√α)",
            ("x", "beta"),
            (UNIT, (b_lo, b_hi)),
            "x = 1 − q₁ ∈ [0, 1], β = √α ∈ [2⁻⁵, 1 − 2⁻¹¹]",
            lambda ops, x, b: 2 * (1 - b) / (1 + b) - 2 * (1 - b**2) * x * (1 - x) / (b**2 + (1 - b**2) * x),
            (
                Factored(
                    (UNIT, (b_lo, b_hi)),
                    (
                        lambda ops, x, b: (b - (1 + b) * x) ** 2,
                        lambda ops, x, b: 2 * (1 - b) / ((1 + b) * (b**2 + (1 - b**2) * x)),
                    ),
                    strict=(False, True),
                ),
            ),
            fast=True,
        )
    )
    out.append(
        Inequality(
            "T8",
            "two outcomes: K_R's objective ≤ 2(log(1/α) + 1 + 1/e) (the spec's bound)",
            ("s", "alpha"),
            _alpha_box(UNIT),
            f"s = q₁ ∈ [0, 1] at u₁ = 1/α, {ALPHA_TEXT}",
            lambda ops, s, a: 2 * (-ops.log(a) + 1 + ops.exp(-1)) - _srkl_two_point(ops, s, a),
            (Plain(_alpha_box(UNIT)),),
        )
    )
    out.append(
        Inequality(
            "T8",
            "1/e − x·log(1/x) ≥ 0 (the SRKL bound's per-outcome step, y = e·x)",
            ("y",),
            ((0.0, 3.0),),
            "y = e·x ∈ [0, 3] ⊇ [0, e]; margin·e = 1 − y + y·log y",
            lambda ops, y: 1 - y + ops.xlogx(y),
            (
                Monotone(((0.0, 1.0),), 0, "hi", lambda ops, y: ops.log(y), Plain(((1.0, 1.0),))),
                Monotone(((1.0, 3.0),), 0, "lo", lambda ops, y: ops.log(y), Plain(((1.0, 1.0),))),
            ),
        )
    )
    return tuple(out)


def _as(r: Any) -> Any:
    return sp.Rational(1, 10) + sp.Rational(4, 5) * r


def _srkl_two_point(ops: Ops, s: Any, a: Any) -> Any:
    """2s(1−s)[log(1/α) − 1 − log u₂ + αu₂], u₂ = (1−s)/(1−αs), written so that s → 1 is finite:
    2s[(1−s)(log(1/α) − 1) − (1−s)log(1−s) + (1−s)log(1−αs) + α(1−s)²/(1−αs)]."""
    one_s = 1 - s
    return (
        2
        * s
        * (
            one_s * (-ops.log(a) - 1)
            - ops.xlogx(one_s)
            + one_s * ops.log(1 - a * s)
            + a * one_s**2 / (1 - a * s)
        )
    )


def _constants() -> tuple[Constant, ...]:
    out: list[Constant] = []

    out.append(
        Constant(
            "T4",
            "sup |∂w/∂Δ|",
            ("omega",),
            (UNIT,),
            lambda ops, w: w * (1 - w),
            sp.Rational(1, 4),
            "1/4",
            fast=True,
        )
    )
    out.append(
        Constant(
            "T4",
            "sup |∂w/∂α| at α = 1/10",
            ("omega",),
            (UNIT,),
            lambda ops, w: w * (1 - w) / (ops.rat(1, 10) * ops.rat(9, 10)),
            sp.Rational(25, 9),
            "1/(4α(1−α)) = 25/9",
        )
    )
    out.append(
        Constant(
            "T4", "sup |∂c̃/∂Δ|", ("t",), (UNIT,), lambda ops, t: (1 - t) ** 2, sp.Integer(1), "1 (Δ → −∞)"
        )
    )
    for p, q, closed in ((1, 10, sp.Integer(9)), (1, 2, sp.Integer(3)), (9, 10, sp.Integer(11))):
        out.append(
            Constant(
                "T4",
                f"sup |∂c̃/∂α| at α = {p}/{q}",
                ("t",),
                (UNIT,),
                lambda ops, t, p=p, q=q: ops.abs(_dc_dalpha_t(ops, t, ops.rat(p, q))),
                closed,
                "max(1/α − 1, 1 + 1/(1−α))",
                rel_tol=1e-6,
                fast=(p, q) == (1, 10),
            )
        )
    out.append(
        Constant(
            "T4",
            "sup |∂ĉ/∂r|, soft gate, defaults (linear/full/fixed)",
            ("v", "r"),
            (UNIT, UNIT),
            _c_hat_r,
            sp.Rational(36, 5),
            "max(L_α(1/α_lo − 1), L_h·φ(α_S(τ_lo)) + L_α(1/α_S(τ_lo) − 1)) = 36/5",
            rel_tol=1e-6,
        )
    )
    out.append(
        Constant(
            "T3",
            "sup c̃ at α = 1/10",
            ("t",),
            (UNIT,),
            lambda ops, t: _c_tilde_t(ops, t, ops.rat(1, 10)),
            sp.log(10) - sp.Rational(9, 10),
            "log(1/α) − (1 − α) (Δ → ∞)",
            fast=True,
        )
    )
    out.append(
        Constant(
            "T3",
            "sup c_det at α = 1/10",
            ("t",),
            (UNIT,),
            lambda ops, t: ops.log(t / ops.rat(1, 10)),
            sp.log(10),
            "log(1/α) (Δ → ∞)",
        )
    )
    out.append(
        Constant(
            "T4",
            "sup ∂w(Δ, α_T(r))/∂r, defaults (linear schedule)",
            ("omega", "r"),
            (UNIT, UNIT),
            lambda ops, w, r: (
                ops.rat(4, 5)
                * w
                * (1 - w)
                / ((ops.rat(9, 10) - ops.rat(4, 5) * r) * (ops.rat(1, 10) + ops.rat(4, 5) * r))
            ),
            sp.Rational(20, 9),
            "L_α/(4κ), κ = min(α_lo(1−α_lo), α_hi(1−α_hi)): 20/9",
        )
    )
    for p, q in ((1, 100), (1, 10), (1, 2), (9, 10)):
        a = sp.Rational(p, q)
        out.append(
            Constant(
                "T8",
                f"K_F at α = {p}/{q} (two outcomes)",
                ("x",),
                (UNIT,),
                lambda ops, x, p=p, q=q: (
                    2 * (1 - ops.rat(p, q)) * x * (1 - x) / (ops.rat(p, q) + (1 - ops.rat(p, q)) * x)
                ),
                2 * (1 - sp.sqrt(a)) / (1 + sp.sqrt(a)),
                "2(1 − √α)/(1 + √α)",
                fast=(p, q) == (1, 10),
            )
        )
    for p, q in ((1, 100), (1, 10), (31, 100), (1, 2), (9, 10)):
        out.append(
            Constant(
                "T8",
                f"K_R at α = {p}/{q} (two outcomes)",
                ("s",),
                (UNIT,),
                lambda ops, s, p=p, q=q: _srkl_two_point(ops, s, ops.rat(p, q)),
                None,
                "none (checks/sharp.py: golden section)",
                fast=(p, q) == (1, 10),
            )
        )
    return tuple(out)


def _c_hat_r(ops: Ops, v: Any, r: Any) -> Any:
    """sup over the pieces of |∂ĉ/∂r| for Δ > 0 at the defaults, as one function of (v, r) ∈ [0, 1]²."""
    a = ops.rat(1, 10) + ops.rat(4, 5) * r
    push = ops.rat(4, 5) * v * (2 - v) * (1 - a) / a
    if mpmath.mpf(r.b) <= 0.5:
        return push
    ramp = 2 * (ops.log(1 + v * (1 - a) / a) - v * (1 - a)) + (2 - 2 * r) * push
    if mpmath.mpf(r.a) >= 0.5:
        return ramp
    return iv.mpf([min(mpmath.mpf(push.a), mpmath.mpf(ramp.a)), max(mpmath.mpf(push.b), mpmath.mpf(ramp.b))])


INEQUALITIES: tuple[Inequality, ...] = _inequalities()
CONSTANTS: tuple[Constant, ...] = _constants()


# --------------------------------------------------------------------------- output


def _fmt(x: Any) -> str:
    if x == mpmath.inf:
        return "∞"
    return str(mpmath.nstr(x, 6))


def _fmt_interval(lo: Any, hi: Any) -> str:
    return f"[{mpmath.nstr(lo, 12)}, {mpmath.nstr(hi, 12)}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(ineqs: Sequence[InequalityResult], consts: Sequence[ConstantResult], command: str) -> str:
    """The two tables (inequalities, constants) as Markdown."""
    lines = [
        f"Generated by `{command}` (mpmath `iv`, 53-bit outward-rounded intervals); every row below "
        "was certified.",
        "",
        "| Label | Inequality (margin ≥ 0) | Domain (compactified) | Boxes | Smallest certified margin "
        "| Method |",
        "|---|---|---|---|---|---|",
    ]
    for r in ineqs:
        i = r.inequality
        lines.append(
            f"| {i.label} | {_cell(i.statement)} | {_cell(i.domain_text)} | {r.boxes} "
            f"| {_fmt(r.min_margin)} | {', '.join(r.methods)} |"
        )
    lines += [
        "",
        "| Label | Sharp constant | Closed form | Certified enclosure of the supremum | Boxes "
        "| Closed form inside |",
        "|---|---|---|---|---|---|",
    ]
    for c in consts:
        k = c.constant
        inside = "yes" if k.closed_form is not None and c.contains_closed_form else "—"
        lines.append(
            f"| {k.label} | {_cell(k.name)} | {_cell(k.closed_text)} "
            f"| {_fmt_interval(c.lower, c.upper)} | {c.boxes} | {inside} |"
        )
    return "\n".join(lines) + "\n"


def run(
    fast: bool, out: Callable[[str], None] = print
) -> tuple[list[InequalityResult], list[ConstantResult], bool]:
    """Certify every (or the fast) inequality and constant; report each as it finishes."""
    ineqs: list[InequalityResult] = []
    consts: list[ConstantResult] = []
    ok = True
    for ineq in INEQUALITIES:
        if fast and not ineq.fast:
            continue
        try:
            r = certify_inequality(ineq)
        except (CertificationError, DerivationError) as exc:
            out(f"FAILED {ineq.label} {ineq.statement}: {exc}")
            ok = False
            continue
        ineqs.append(r)
        out(
            f"{ineq.label:4} {ineq.statement}\n     domain: {ineq.domain_text}\n     boxes {r.boxes}, "
            f"smallest certified margin {_fmt(r.min_margin)}, method {', '.join(r.methods)} "
            f"({r.seconds:.2f} s)"
        )
    for const in CONSTANTS:
        if fast and not const.fast:
            continue
        try:
            c = certify_constant(const, FAST_REL_TOL if fast else None)
        except CertificationError as exc:
            out(f"FAILED {const.label} {const.name}: {exc}")
            ok = False
            continue
        consts.append(c)
        if not c.contains_closed_form:
            ok = False
        verdict = (
            "closed form inside"
            if const.closed_form is not None and c.contains_closed_form
            else ("CLOSED FORM OUTSIDE" if const.closed_form is not None else "no closed form")
        )
        out(
            f"{const.label:4} {const.name}: {_fmt_interval(c.lower, c.upper)} ({c.boxes} boxes), "
            f"{const.closed_text}: {verdict} ({c.seconds:.2f} s)"
        )
    return ineqs, consts, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m proofs.certify", description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="the subset that runs in a few seconds")
    parser.add_argument("--markdown", action="store_true", help="print the Markdown tables at the end")
    parser.add_argument("--write", action="store_true", help=f"write the tables to {TABLE_PATH.name}")
    args = parser.parse_args(argv)
    ineqs, consts, ok = run(args.fast)
    command = "python -m proofs.certify" + (" --fast" if args.fast else "")
    text = markdown(ineqs, consts, command)
    if args.markdown:
        print()
        print(text, end="")
    if not ok:
        print("NOT CERTIFIED: see the FAILED lines above", file=sys.stderr)
        return 1
    if args.write:
        if args.fast:
            print("--write needs the full run (no --fast)", file=sys.stderr)
            return 2
        TABLE_PATH.write_text(text, encoding="utf-8")
        print(f"wrote {TABLE_PATH}")
    print(f"certified: {len(ineqs)} inequalities, {len(consts)} constants")
    return 0


if __name__ == "__main__":
    sys.exit(main())
