"""Sharp constants of T8 (logit-gradient ℓ₁ norms of SKL_α and SRKL_α, q = softmax(z)).

With g = ∇_z D and q = softmax(z), g_k = q_k(h_k − Σ_v q_v h_v), h = ∂D/∂q, so
‖g‖₁ = Σ_k q_k|h_k − h̄| (a mean absolute deviation under q) = 2·max_A Σ_{k∈A} g_k.

* SKL_α: h_k = −(1−α)p_k/m_k, m = αp + (1−α)q. q_k p_k/m_k = H(p_k, q_k) is a weighted harmonic
  mean, concave and 1-homogeneous, hence superadditive; collapsing A and its complement to one
  outcome each therefore only increases the norm, and the two-outcome problem (p = (0, 1) in
  the limit, q = (Q, 1 − Q)) gives 2(1−α)Q(1−Q)/(α + (1−α)(1−Q)), maximal at
  1 − Q = √α/(1 + √α): ‖∇_z SKL_α‖₁ < K_F(α) = 2(1 − √α)/(1 + √α), approached, not attained.
* SRKL_α: h_k = c(u_k) = log u_k + 1 − αu_k, u = q/((1−α)p + αq) ∈ (0, 1/α], Σ_k q_k/u_k = 1.
  The two-outcome family u_1 = 1/α (p_1 → 0) with mass s, u_2 = (1−s)/(1−αs) gives
  K_R(α) = sup_s 2s(1−s)[log(1/α) − 1 − log((1−s)/(1−αs)) + α(1−s)/(1−αs)]. That it bounds every
  vocabulary is proved for α ≤ 0.31 (c is convex in v = 1/u beyond v = kα, k ≈ 3.15, and the
  complement's mean v is ≥ 1) and checked numerically for larger α (no larger value found by
  gradient ascent over vocabularies 2–6, ``checks/test_t8_logit_gradients.py``).

K_R has no closed form here; it is evaluated by a 20001-point grid in s refined by golden-section
search (float64, relative accuracy ≈ 1e-12).
"""

import math

import numpy as np

__all__ = ["skl_maximiser", "skl_sharp", "srkl_maximiser", "srkl_sharp", "srkl_two_point"]


def skl_sharp(alpha: float) -> float:
    """K_F(α) = 2(1 − √α)/(1 + √α), the supremum of ‖∇_z SKL_α‖₁."""
    r = math.sqrt(alpha)
    return 2 * (1 - r) / (1 + r)


def skl_maximiser(alpha: float, eps: float = 1e-13) -> tuple[list[float], list[float]]:
    """(p, q) approaching K_F: p = (ε, 1 − ε), q = (1 − s, s), s = √α/(1 + √α)."""
    s = math.sqrt(alpha) / (1 + math.sqrt(alpha))
    return [eps, 1 - eps], [1 - s, s]


def srkl_two_point(s: np.ndarray, alpha: float) -> np.ndarray:
    """2s(1−s)[log(1/α) − 1 − log((1−s)/(1−αs)) + α(1−s)/(1−αs)]."""
    u2 = (1 - s) / (1 - alpha * s)
    return np.asarray(2 * s * (1 - s) * (math.log(1 / alpha) - 1 - np.log(u2) + alpha * u2))


def srkl_maximiser(alpha: float) -> float:
    """argmax_s of :func:`srkl_two_point` (grid, then golden section)."""
    s = np.linspace(1e-9, 1 - 1e-9, 20001)
    k = int(np.argmax(srkl_two_point(s, alpha)))
    lo, hi = float(s[max(k - 1, 0)]), float(s[min(k + 1, s.size - 1)])
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if srkl_two_point(np.array([a]), alpha)[0] < srkl_two_point(np.array([b]), alpha)[0]:
            lo = a
        else:
            hi = b
    return (lo + hi) / 2


def srkl_sharp(alpha: float) -> float:
    """K_R(α), the supremum of ‖∇_z SRKL_α‖₁ over the two-outcome family (see module docstring)."""
    return float(srkl_two_point(np.array([srkl_maximiser(alpha)]), alpha)[0])
