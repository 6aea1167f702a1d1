"""Symbolic (sympy) derivations of the ASKD specification's equations and theorems.

One function per result, named after its spec label (``derive_e5_tgo_coefficient``,
``derive_t4_lipschitz_c_hat_quality``, …). Each starts from the objective (a skew-KL integrand
over one outcome, or a categorical softmax family), differentiates symbolically, simplifies,
and returns a :class:`Derivation`: the claim, the steps, the derived expressions (as
:class:`Result` objects that lambdify to float64 NumPy functions) and the ``askd_ref``
functions that implement them. A derivation *raises* :class:`DerivationError` when an identity
it relies on does not simplify to zero, so obtaining the object means the symbolic proof went
through. Bounds and Lipschitz constants are suprema of symbolic derivatives: critical points
are solved for, monotonicity is shown, limits are taken, and tightness is stated.

``python -m proofs`` regenerates ``docs/derivations.md`` from :data:`DERIVATIONS`;
``tests/test_proofs*.py`` compare every derived expression with ``askd_ref`` and with
``torch.autograd`` at hypothesis-drawn points.
"""

from collections.abc import Callable

from proofs._core import Derivation, DerivationError, Result, Step
from proofs.coefficients import (
    derive_e5_tgo_coefficient,
    derive_e6_sgo_coefficient,
    derive_e7_sgo_coefficient_stop,
    derive_e9_clipped_sgo_coefficient,
    derive_t1_sequence_level_exactness,
)
from proofs.lipschitz import (
    derive_t4_hard_gate_jump,
    derive_t4_lipschitz_c_alpha,
    derive_t4_lipschitz_c_delta,
    derive_t4_lipschitz_c_hat_delta,
    derive_t4_lipschitz_c_hat_quality,
    derive_t4_lipschitz_w_alpha,
    derive_t4_lipschitz_w_delta,
    derive_t4_lipschitz_w_quality,
    sharp_quality_constant,
    spec_quality_bound,
)
from proofs.meanmode import derive_t1m_sgo_mean_mode, derive_t1m_tgo_mean_mode
from proofs.theorems import (
    derive_t2_sgo_unnormalised_skew_rkl,
    derive_t2_tgo_per_sample_alpha,
    derive_t3_coefficient_ranges,
    derive_t5_monotone_in_quality,
    derive_t6_limits,
    derive_t7_divergence_bounds,
    derive_t8_logit_gradient_bounds,
)

__all__ = [
    "DERIVATIONS",
    "Derivation",
    "DerivationError",
    "Result",
    "Step",
    "all_derivations",
    "derive_e5_tgo_coefficient",
    "derive_e6_sgo_coefficient",
    "derive_e7_sgo_coefficient_stop",
    "derive_e9_clipped_sgo_coefficient",
    "derive_t1_sequence_level_exactness",
    "derive_t1m_sgo_mean_mode",
    "derive_t1m_tgo_mean_mode",
    "derive_t2_sgo_unnormalised_skew_rkl",
    "derive_t2_tgo_per_sample_alpha",
    "derive_t3_coefficient_ranges",
    "derive_t4_hard_gate_jump",
    "derive_t4_lipschitz_c_alpha",
    "derive_t4_lipschitz_c_delta",
    "derive_t4_lipschitz_c_hat_delta",
    "derive_t4_lipschitz_c_hat_quality",
    "derive_t4_lipschitz_w_alpha",
    "derive_t4_lipschitz_w_delta",
    "derive_t4_lipschitz_w_quality",
    "derive_t5_monotone_in_quality",
    "derive_t6_limits",
    "derive_t7_divergence_bounds",
    "derive_t8_logit_gradient_bounds",
    "sharp_quality_constant",
    "spec_quality_bound",
]

#: Every derivation, in the order of ``docs/derivations.md`` (spec order: E5–E9, then T1–T8).
DERIVATIONS: tuple[Callable[[], Derivation], ...] = (
    derive_e5_tgo_coefficient,
    derive_e6_sgo_coefficient,
    derive_e7_sgo_coefficient_stop,
    derive_e9_clipped_sgo_coefficient,
    derive_t1_sequence_level_exactness,
    derive_t1m_tgo_mean_mode,
    derive_t1m_sgo_mean_mode,
    derive_t2_tgo_per_sample_alpha,
    derive_t2_sgo_unnormalised_skew_rkl,
    derive_t3_coefficient_ranges,
    derive_t4_lipschitz_w_delta,
    derive_t4_lipschitz_w_alpha,
    derive_t4_lipschitz_c_delta,
    derive_t4_lipschitz_c_alpha,
    derive_t4_lipschitz_c_hat_delta,
    derive_t4_lipschitz_w_quality,
    derive_t4_lipschitz_c_hat_quality,
    derive_t4_hard_gate_jump,
    derive_t5_monotone_in_quality,
    derive_t6_limits,
    derive_t7_divergence_bounds,
    derive_t8_logit_gradient_bounds,
)


def all_derivations() -> list[Derivation]:
    """Run every derivation (cached per process) and return the results in document order."""
    return [derive() for derive in DERIVATIONS]
