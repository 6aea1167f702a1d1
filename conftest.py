"""Settings shared by every pytest run of the repository (tests/, checks/, doctests).

* Hypothesis profiles: ``deterministic`` (the default: ``derandomize=True``, no example
  database, no deadline, ``print_blob=True``) so that a run is reproducible and a failure
  replays exactly, and ``random`` (a fresh seed each run) for exploration. Pick one with the
  environment variable ``ASKD_HYPOTHESIS_PROFILE``. ``checks/conftest.py`` adds a ``mutant``
  profile for ``python -m checks.mutants``.
* torch runs single-threaded (``ASKD_TEST_THREADS`` overrides): the tests use tiny models and
  small tensors, whose ops are dominated by dispatch overhead, and extra threads only contend for
  the CI machine's two cores.
"""

import os

import torch
from hypothesis import HealthCheck, settings

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
settings.load_profile(os.environ.get("ASKD_HYPOTHESIS_PROFILE", "deterministic"))

torch.set_num_threads(int(os.environ.get("ASKD_TEST_THREADS", "1")))
