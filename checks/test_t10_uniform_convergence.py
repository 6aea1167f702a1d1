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


# --------------------------------------------------------------------------- askd_ref's estimators


def test_t10_askd_estimators_stay_under_a_tight_bernstein_envelope() -> None:
    """askd_ref's tgo_loss / sgo_loss gradients on sampled batches (defaults: mean mode, soft gate,
    quality-adaptive α) converge to the enumerated ∇J_T^mean / ∇D_ĉ: in each of R = 100
    repetitions per n ∈ {64, 256, 512}, every coordinate stays within its Bernstein envelope
    (exact σ_k and range from the closed forms, level δ/d), except in at most the binomial
    critical count of repetitions (false-failure rate ≤ 1e-4 per n for a correct estimator).
    The envelope is within 3× of the measured 95% quantile of the normalised deviation.

    Catches: a biased estimator (a wrong coefficient, pooling or normalisation on sampled batches,
    e.g. the loss divided by the batch's token count), and together with the variance test below
    an estimator that is noisier than its per-sample closed form."""
    from checks.convergence import measure_t10_estimators

    for name, r in measure_t10_estimators().items():
        for n in r.exceed:
            assert r.exceed[n] <= r.critical_count, (
                f"{name}, n={n}: {r.exceed[n]}/{len(r.max_z[n])} repetitions above the envelope "
                f"(allowed ≤ {r.critical_count}); 95% quantile of max_k |ĝ_k − g_k|/ε_k = {r.q95[n]:.3f}"
            )
            assert r.q95[n] >= 1 / 3, f"{name}, n={n}: envelope {1 / r.q95[n]:.2f}× the 95% quantile"
        assert r.bias_z <= 1.0, f"{name}: pooled mean off the exact gradient by {r.bias_z:.2f} envelopes"


def test_t10_askd_estimator_variance_matches_the_closed_form() -> None:
    """Σ_k Var(ĝ_k) measured over 100 repetitions is within [1/2, 3/2] of the exact Σ_k σ_k²/n
    (the sampling SE of this ratio is ≤ sqrt(2/99) ≈ 0.14). Catches: a doubled variance (e.g.
    coefficients that are right on average but noisier), a halved one (samples counted twice)."""
    from checks.convergence import measure_t10_estimators

    for name, r in measure_t10_estimators().items():
        for n, ratio in r.variance_ratio.items():
            assert 0.5 <= ratio <= 1.5, f"{name}, n={n}: measured/exact variance {ratio:.3f}"
