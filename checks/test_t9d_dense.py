"""T9d: E15 (``dense_askd_loss``) by exact enumeration over EOS-terminated responses, with the
gate and quality-adaptive α on, both pooling modes and both mixture modes.

Objectives (written independently in :mod:`checks.meanmode`, probability space):
J_D,T = Σ_y p(y)·pool_t SKL_{α_T(r_y)}(p_t‖q_t) and J_D,S = Σ_y q(y)(1 − h(r_y))·pool_t SRKL_{α_S(r_y)}.
"""

import pytest

import askd_ref
from checks.exact import BIAS_MARGIN, EXACT_ATOL
from checks.meanmode import MEAN_INSTANCES, dense_errors, mean_instance

VARIANTS = {
    "defaults": askd_ref.ASKDOptions(),
    "stop": askd_ref.ASKDOptions(mixture_grad="stop"),
    "sum-logit": askd_ref.ASKDOptions(normalize="sum", schedule="logit", alpha_lo=0.05, alpha_hi=0.7),
    "hard-stop": askd_ref.ASKDOptions(gate="hard", mixture_grad="stop"),
}
CASES = [(k, name) for k in range(len(MEAN_INSTANCES)) for name in VARIANTS]


@pytest.mark.parametrize(("k", "name"), CASES)
def test_t9d_dense_values_are_the_token_divergences(k: int, name: str) -> None:
    """Per response, the loss value is pool_t SKL_{α_T(r)} (TGO) and (1 − h)·pool_t SRKL_{α_S(r)} (SGO).

    Catches: the gate dropped, α_T/α_S swapped or constant, token mean pooled by sum.
    """
    e = dense_errors(mean_instance(*MEAN_INSTANCES[k]), VARIANTS[name])
    assert e["tgo_value_error"] <= EXACT_ATOL, f"TGO value error {e['tgo_value_error']:.3g} ({name})"
    assert e["sgo_value_error"] <= EXACT_ATOL, f"SGO value error {e['sgo_value_error']:.3g} ({name})"


@pytest.mark.parametrize(("k", "name"), CASES)
def test_t9d_dense_tgo_term_is_the_exact_gradient(k: int, name: str) -> None:
    """E_p[∇ dense TGO term] = ∇J_D,T exactly (p fixed, the SKL mixture keeps its full gradient).

    Catches: mixture_grad applied to the SKL term, wrong α_T or pooling.
    """
    e = dense_errors(mean_instance(*MEAN_INSTANCES[k]), VARIANTS[name])
    assert e["tgo_grad_error"] <= EXACT_ATOL, f"TGO gradient error {e['tgo_grad_error']:.3g} ({name})"


@pytest.mark.parametrize(("k", "name"), CASES)
def test_t9d_dense_sgo_term_is_g_single_and_biased(k: int, name: str) -> None:
    """E_q[∇ dense SGO term] = G_single exactly (semi-gradient with the mixture held under
    ``mixture_grad="stop"``); G_single + G_long = ∇J_D,S; the bias against ∇J_D,S is ≥ the margin.

    Catches: the gate dropped, ``mixture_grad`` ignored by the SRKL term, α_S wrong.
    """
    o = VARIANTS[name]
    e = dense_errors(mean_instance(*MEAN_INSTANCES[k]), o)
    assert e["sgo_single_error"] <= EXACT_ATOL, (
        f"E_q[∇ℓ_D,S] − G_single = {e['sgo_single_error']:.3g} ({name})"
    )
    assert e["single_plus_long_error"] <= EXACT_ATOL, "G_single + G_long ≠ ∇J_D,S"
    assert e["sgo_bias"] >= BIAS_MARGIN, f"dense SGO unexpectedly unbiased ({e['sgo_bias']:.3g}; {name})"
    if o.mixture_grad == "stop":
        assert e["stop_vs_full"] >= BIAS_MARGIN, f"stop mode equals the full gradient ({name})"
