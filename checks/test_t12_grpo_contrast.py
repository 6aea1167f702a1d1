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
