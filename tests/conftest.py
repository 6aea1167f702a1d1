"""Shared fixtures and the seed policy of askd-ref's tests.

Seed policy (after torch.distributions' Note [Randomized statistical tests]): ordinary tests
that merely *use* random inputs draw them from a generator seeded per test
(``rng`` fixture: NumPy ``default_rng(seed)`` with a fixed seed), so every run sees the same
inputs; a failure reproduces exactly. Statistical tests (in ``checks/``) state their
false-failure rate and their seed in the test; a seed may be changed only once per test, with a
note saying why.
"""

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A NumPy generator with a fixed seed (see the module docstring)."""
    return np.random.default_rng(20261127)
