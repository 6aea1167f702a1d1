"""What backs each label of the specification: the coverage table of both generated reports.

Kinds: **derived** (a sympy derivation in ``proofs/`` that raises unless its identities
simplify), **proved in prose** (an argument written in a docstring or in ``docs/method.md``,
not machine-checked), **checked numerically** (``checks/`` or ``tests/`` assert it on askd_ref's
code: exact enumeration, grids, random draws), **illustrated** (a measurement that shows the
behaviour but could not fail because of askd_ref), **certified** (interval arithmetic with
branch and bound, ``python -m proofs.certify``, T13).
"""

from proofs.certify import CONSTANTS, INEQUALITIES

__all__ = ["COVERAGE", "coverage_table"]

#: label → (derived symbolically, other backing, where it is checked numerically).
COVERAGE: tuple[tuple[str, str, str, str], ...] = (
    ("E1–E4", "—", "—", "tests/ against the float64 reference (probability space, mpmath); T7 grids"),
    (
        "E5, E6, E7, E9",
        "yes (derive_e5/e6/e7/e9)",
        "—",
        "tests/test_proofs_numeric.py, tests/ reference, T3–T6",
    ),
    ("E8", "hard-gate jump only (derive_t4_hard_gate_jump)", "—", "tests/ reference; T3, T4, T5"),
    ("E10", "inside T4/T5 derivations", "—", "tests/ reference; T4, T5"),
    ("E11, E12 (sum)", "yes (T1, T2)", "—", "T1, T2 exact enumeration"),
    ("E11, E12 (mean)", "yes (T1m)", "—", "T1m exact enumeration, gate on, both schedules"),
    (
        "E13",
        "—",
        "prose: unbiased while unclipped (T1m, T9)",
        "T9 (sum), T1m (mean): exact and clipped ratio",
    ),
    ("E14", "—", "—", "tests/ reference and accumulation tests"),
    ("E15", "—", "—", "T9d exact enumeration; tests/ reference"),
    ("T1, T2", "yes (categorical family)", "—", "checked numerically (exact enumeration)"),
    ("T1m", "yes", "—", "checked numerically (exact enumeration, varying lengths)"),
    (
        "T3, T4",
        "yes",
        "certified (T13): every inequality on its whole compactified domain; sharp constants enclosed",
        "checked numerically (grids, hypothesis)",
    ),
    ("T5, T6", "yes", "—", "checked numerically (grids, hypothesis)"),
    (
        "T7",
        "identities only",
        "certified (T13): the per-outcome lemmas (Gibbs, p/m ≤ 1/α, convexity in α); prose: the "
        "summation steps",
        "checked numerically (random pairs, tight cases)",
    ),
    (
        "T8",
        "the spec's bounds",
        "certified (T13): the two-outcome bounds, K_F and K_R enclosed at five α, the spec's SRKL "
        "bound's steps; prose: two outcomes are the worst case for every α (checks/sharp.py: "
        "superadditivity for K_F, a convex-envelope argument for K_R)",
        "checked numerically: both sharp constants bound and are attained; search for K_R",
    ),
    ("T9", "—", "—", "checked numerically (exact enumeration)"),
    ("T9d", "—", "—", "checked numerically (exact enumeration)"),
    (
        "T10",
        "—",
        "—",
        "checked numerically: tgo_loss/sgo_loss estimators (defaults) against the enumerated objective, "
        "Bernstein envelope from the exact variance, variance ratio; illustrated: Hoeffding envelope "
        "and slope on a generic bounded loss",
    ),
    (
        "T11",
        "—",
        "—",
        "checked numerically (one SGD step on sgo_loss; sgo_loss at h = 1 gives Δ and min(Δ, 0) the "
        "same coefficient)",
    ),
    (
        "T12",
        "—",
        "—",
        "checked numerically on advantage_kd_loss and sgo_loss (quality sensitivity against closed "
        "form and certified constant; SGD on each loss); illustrated: group_advantages, KL under A < 0",
    ),
    (
        "T13",
        "—",
        f"python -m proofs.certify (mpmath iv): {len(INEQUALITIES)} inequalities, {len(CONSTANTS)} constants",
        "fast subset in checks/test_t13_certified.py; full run a slow test",
    ),
)


def coverage_table() -> list[str]:
    """The Markdown table (lines)."""
    lines = [
        "| Label | Derived symbolically | Other backing | Checked numerically / illustrated |",
        "|---|---|---|---|",
    ]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in COVERAGE]
    return [*lines, ""]
