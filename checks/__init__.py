"""Property-based and statistical checks of ASKD's theorems T1–T12 on askd_ref.

``pytest checks/`` runs them; every test names the theorem it checks (``test_t4_...``).
Measurements shared by the tests and the report live in :mod:`checks.exact` (T1, T2, T9 by
exact enumeration on tabular autoregressive models), :mod:`checks.grid` (T3–T8 on grids),
:mod:`checks.convergence` (T10) and :mod:`checks.dynamics` (T11, T12); every bound they compare
against is lambdified from the derivation in ``proofs/``. ``python -m checks.mutants`` shows
that each of six plausible wrong implementations fails at least one check, and
``python -m checks.report`` writes ``docs/checks-report.md`` with figures in ``docs/figures/``.

Hypothesis runs under the deterministic profile registered in ``checks/conftest.py``
(``ASKD_HYPOTHESIS_PROFILE=random`` picks a randomised one).
"""
