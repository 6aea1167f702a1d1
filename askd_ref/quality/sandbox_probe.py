"""Alias of :mod:`askd_ref.cli.sandbox_probe` (the containment probe of the unit-test quality signal).

The code lives in ``askd_ref/cli/sandbox_probe.py``;
this module keeps ``python -m askd_ref.quality.sandbox_probe`` working.
"""

import sys

from askd_ref.cli.sandbox_probe import (
    CASES,
    Case,
    main,
    run_probe,
)

__all__ = [
    "CASES",
    "Case",
    "main",
    "run_probe",
]

if __name__ == "__main__":
    sys.exit(main())
