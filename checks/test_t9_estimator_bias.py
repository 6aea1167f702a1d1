"""T9: bias of sample-based KL gradient estimators, by exact enumeration (y ∼ q unless stated).

Unbiased estimators must match their target to ≤ 1e-8 (max abs over all logits); biased ones
must miss ∇RKL / ∇SKL_α,seq / ∇SRKL_α,seq by ≥ 1e-3 (negative checks) on the fixed instances
``NEGATIVE_INSTANCES`` (vocab, length, seed, scale)."""

import pytest

from checks.exact import (
    BIAS_MARGIN,
    EXACT_ATOL,
    NEGATIVE_INSTANCES,
    chain_rule_values,
    instance,
    offpolicy_clip_bias,
    t9_rows,
)


@pytest.mark.parametrize("model", NEGATIVE_INSTANCES)
def test_t9_unbiased_estimators_match_the_exact_gradient(model: tuple[int, int, int, float]) -> None:
    rows = [r for r in t9_rows(instance(*model), model[2]) if r.unbiased]
    assert len(rows) >= 9
    bad = [f"{r.estimator} vs {r.target}: {r.distance:.3g}" for r in rows if r.distance > EXACT_ATOL]
    assert not bad, f"not unbiased to {EXACT_ATOL} on {model} ({model[0] ** model[1]} sequences): {bad}"


@pytest.mark.parametrize("model", NEGATIVE_INSTANCES)
def test_t9_biased_estimators_miss_the_gradient_by_a_margin(model: tuple[int, int, int, float]) -> None:
    rows = [r for r in t9_rows(instance(*model), model[2]) if not r.unbiased]
    names = {r.estimator for r in rows}
    assert names >= {
        "k1 as loss",
        "k3 as loss",
        "token-level RKL (G_single)",
        "constant-α token SKL (distillm2, TGO)",
        "off-policy, no ratio",
    }
    bad = [f"{r.estimator} vs {r.target}: {r.distance:.3g}" for r in rows if r.distance < BIAS_MARGIN]
    assert not bad, f"expected a bias ≥ {BIAS_MARGIN} on {model}: {bad}"


@pytest.mark.parametrize("model", NEGATIVE_INSTANCES)
def test_t9_offpolicy_sgo_loss_with_sequence_ratio_is_unbiased(model: tuple[int, int, int, float]) -> None:
    rows = {r.estimator: r for r in t9_rows(instance(*model), model[2])}
    exact = rows["off-policy, exact ratio (E13)"]
    assert exact.distance <= EXACT_ATOL, (
        f"E_μ[∇ sgo_loss(behaviour_logp=log μ)] − ∇SRKL = {exact.distance:.3g} on {model}"
    )


def test_t9_clipped_ratio_bias_is_bounded() -> None:
    for model in NEGATIVE_INSTANCES:
        c = offpolicy_clip_bias(instance(*model), model[2])
        assert c["clipped_fraction"] > 0, "the instance must clip some ratios at ε = 0.2"
        assert 0 < c["bias"] <= c["bound"] * (1 + 1e-9), f"clipped-ratio bias {c} on {model}"


def test_t9_sequence_skew_chain_rule_and_constant_alpha_token_sum() -> None:
    for model in NEGATIVE_INSTANCES:
        for alpha in (0.05, 0.1, 0.5):
            v = chain_rule_values(instance(*model), alpha)
            assert abs(v["chain_rule"] - v["sequence"]) <= 1e-10, f"λ_t chain rule {v} on {model}, α={alpha}"
            assert abs(v["constant_alpha_tokens"] - v["sequence"]) >= BIAS_MARGIN, (
                f"constant-α token SKL should differ from SKL_α,seq: {v} on {model}, α={alpha}"
            )
