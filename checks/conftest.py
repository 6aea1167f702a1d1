"""Hypothesis profiles for ``pytest checks/`` and the mutant switch of ``checks.mutants``.

* Profiles: ``deterministic`` (default: derandomize=True, database=None, deadline=None,
  print_blob=True) and ``random`` (a fresh seed each run, for exploration); pick one with the
  environment variable ``ASKD_HYPOTHESIS_PROFILE``.
* Mutants: when ``ASKD_MUTANT`` names one of :data:`checks.mutants.MUTANTS`, that wrong
  implementation is patched into ``askd_ref`` before any check module is imported (this file is
  loaded first), and the ``mutant`` profile (the deterministic one without shrinking) is used.
  ``python -m checks.mutants`` uses it to show every mutant is caught.
"""

import os

import torch
from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "deterministic",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "random", deadline=None, print_blob=True, suppress_health_check=[HealthCheck.too_slow]
)
# Mutant runs only need to see a failure: same deterministic examples, no shrinking.
settings.register_profile(
    "mutant",
    parent=settings.get_profile("deterministic"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
_MUTANT = os.environ.get("ASKD_MUTANT", "")
settings.load_profile("mutant" if _MUTANT else os.environ.get("ASKD_HYPOTHESIS_PROFILE", "deterministic"))

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

if _MUTANT:
    from checks.mutants import apply_mutant

    apply_mutant(_MUTANT)
