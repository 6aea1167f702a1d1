"""T12: group-normalised advantages jump at zero dispersion and a negative advantage times a KL
drives the KL up without bound; ASKD's coefficients stay bounded and q = p stays a zero."""

from checks.dynamics import measure_t12


def test_t12_group_advantage_jumps_at_zero_dispersion() -> None:
    m = measure_t12()
    # r = (1, …, 1, 1 − η), G = 8: A_G = −√7 for every η > 0 (ε_A → 0), A = 0 at η = 0.
    assert abs(m["advantage_no_eps_min"] + m["sqrt_g_minus_1"]) <= 1e-6 * m["sqrt_g_minus_1"]
    assert abs(m["advantage_no_eps_max"] + m["sqrt_g_minus_1"]) <= 1e-6 * m["sqrt_g_minus_1"]
    assert m["advantage_at_zero_dispersion"] == 0.0
    # With ε_A = 1e-4 the map is continuous but with slope ≈ (G − 1)/(G ε_A) at zero dispersion.
    assert m["advantage_slope_near_zero"] >= 0.99 * m["advantage_slope_predicted"]
    assert m["advantage_slope_near_zero"] > 1000 * m["askd_sharp_constant"]
    assert m["askd_measured_constant"] <= m["askd_sharp_constant"] * (1 + 1e-6)


def test_t12_negative_advantage_drives_kl_up_without_bound() -> None:
    m = measure_t12()
    assert m["kl_end"] > 50 * max(m["kl_start"], 1e-3), m
    assert m["kl_increase_last_100"] > 10.0, "still growing linearly after 200 steps: no bound in sight"
    assert m["skl_end"] <= m["skl_cap"], "the skewed divergence stays below log(1/α) even when maximised"


def test_t12_askd_coefficients_bounded_and_teacher_is_a_zero() -> None:
    m = measure_t12()
    assert m["c_hat_max"] <= m["c_hat_cap"] * (1 + 1e-12), "ĉ ≤ log(1/α_lo) − (1 − α_lo) over Δ ∈ [−700, 700]"
    assert m["c_hat_at_delta_zero"] == 0.0, "Δ = 0 (q(y) = p(y)) gives no SGO update at any quality"
    assert m["divergence_at_p_equals_q"] == 0.0


# --------------------------------------------------------------------------- on askd_ref's losses


def test_t12_losses_advantage_kd_jumps_in_quality_where_askd_sgo_loss_is_lipschitz() -> None:
    """The coefficient each library loss puts on an SGO's score, as its quality leaves a group of
    equal rewards: advantage_kd_loss moves it by ((G−1)/G)/(η√(G−1)/G + ε_A)·η (≈ 8700·η at
    ε_A = 1e-4), sgo_loss by at most the certified sharp constant 36/5 times η.

    Catches: advantage_kd with a sample instead of population std or without ε_A (slope off the
    closed form), sgo_loss whose gate or schedule makes ĉ steeper in r than 36/5, a top-quality
    SGO with Δ > 0 that still gets a push-down coefficient."""
    from checks.dynamics import measure_t12_losses

    m = measure_t12_losses()
    assert abs(m["adv_slope"] - m["adv_slope_predicted"]) <= 1e-3 * m["adv_slope_predicted"], m
    assert m["adv_coef_at_zero_dispersion"] == 0.0
    assert m["askd_slope"] <= m["askd_sharp_constant"], m
    assert m["adv_slope"] > 1000 * m["askd_sharp_constant"], m
    assert m["askd_coef_top_quality"] == 0.0, "h(r) = 1, Δ > 0: sgo_loss must not push down"


def test_t12_losses_negative_advantage_is_unbounded_askd_push_down_stops_at_the_teacher() -> None:
    """SGD on each library loss alone, a 6-outcome categorical student, one low-quality SGO:
    advantage_kd_loss drives log q(y)/p(y) of the below-mean SGO down linearly without bound;
    sgo_loss pushes it down only while Δ > 0 (ĉ changes sign with Δ) and q converges to p.

    Catches: a sign error in sgo_loss's coefficient or pull-up (the push-down would not stop), a
    push-down that ignores Δ (as an advantage does), advantage_kd weights that saturate."""
    from checks.dynamics import measure_t12_losses

    m = measure_t12_losses()
    assert m["adv_log_ratio_end"] < -20.0, m
    assert m["adv_log_ratio_drop_last_100"] > 10.0, "advantage_kd: still falling linearly, no bound"
    assert m["askd_log_ratio_min"] > -0.01, "sgo_loss pushed the SGO below the teacher's likelihood"
    assert m["askd_kl_end"] < 1e-4, "sgo_loss: q = p is where the dynamics end"
