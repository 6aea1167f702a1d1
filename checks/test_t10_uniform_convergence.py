"""T10: uniform convergence of the empirical skew loss over an (α, θ) grid.

Statistical (fixed seed). Sample counts: R = 200 repetitions for each of 8 sample sizes
n = 50 … 6400. False-failure rates, for a correct theory: exceedance test ≤ 1e-4 per n
(8e-4 overall; one-sided binomial); slope test 2Φ(−0.1/SE) with the bootstrap SE reported in the
failure message (about 1e-20 at SE ≈ 0.01). See :mod:`checks.convergence` for the setting."""

from checks.convergence import DELTA, measure_t10


def test_t10_sup_deviation_stays_under_the_hoeffding_union_envelope() -> None:
    r = measure_t10()
    for n, count, env, q95 in zip(r.n_values, r.exceed_counts, r.envelope, r.q95_sup, strict=True):
        assert count <= r.critical_count, (
            f"n={n}: {count}/{r.reps} repetitions above the envelope {env:.4g} (allowed ≤ {r.critical_count} "
            f"at δ={DELTA}, N={r.net_points} net points, η={r.eta}); 95% quantile {q95:.4g}"
        )


def test_t10_log_log_slope_of_mean_sup_deviation_is_minus_one_half() -> None:
    r = measure_t10()
    assert -0.6 <= r.slope <= -0.4, (
        f"slope {r.slope:.4f} ± {r.slope_se:.4f} (bootstrap SE; false-failure rate "
        f"{r.slope_false_failure:.2g}) "
        f"from {r.reps} repetitions at n = {r.n_values}; mean sup-deviations {r.mean_sup}"
    )


def test_t10_loss_is_uniformly_lipschitz_in_alpha() -> None:
    r = measure_t10()
    assert r.alpha_uniformity_ratio <= 1.0, (
        f"sup_θ |L(θ; α) − L(θ; α')| / (|α − α'|/min(α, α')) = {r.alpha_uniformity_ratio:.4f} > 1"
    )
