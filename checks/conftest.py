"""The mutant switch of ``checks.mutants`` (the hypothesis profiles are in the root conftest.py).

* Mutants: when ``ASKD_MUTANT`` names one of :data:`checks.mutants.MUTANTS`, that wrong
  implementation is patched into ``askd_ref`` before any check module is imported (this file is
  loaded first), and the ``mutant`` profile (the deterministic one without shrinking) is used.
  ``python -m checks.mutants`` uses it to show every mutant is caught.
"""

import os

from hypothesis import Phase, settings

# Mutant runs only need to see a failure: same deterministic examples, no shrinking.
settings.register_profile(
    "mutant",
    parent=settings.get_profile("deterministic"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)
_MUTANT = os.environ.get("ASKD_MUTANT", "")
if _MUTANT:
    settings.load_profile("mutant")
    from checks.mutants import apply_mutant

    apply_mutant(_MUTANT)
