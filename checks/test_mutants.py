"""Every mutant of ``checks.mutants`` is caught: its checks fail in a subprocess with it applied.

The control (the same checks without a mutant) is the rest of this pytest session: those checks
run unmutated in ``pytest checks/``. ``python -m checks.mutants`` also runs an explicit control.
"""

from checks.mutants import MUTANTS, run_all


def test_every_mutant_is_caught_by_at_least_one_check() -> None:
    runs, _ = run_all(control=False)
    assert [r.mutant for r in runs] == list(MUTANTS)
    survivors = [
        f"{r.mutant} (pytest exit {r.returncode}, failed: {r.failed or 'none'})" for r in runs if not r.caught
    ]
    assert not survivors, f"mutants that survived the checks: {survivors}"
