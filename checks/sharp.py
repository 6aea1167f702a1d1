"""Sharp constants of T8 (logit-gradient ℓ₁ norms of SKL_α and SRKL_α, q = softmax(z)).

With g = ∇_z D and q = softmax(z), g_k = q_k(h_k − Σ_v q_v h_v), h = ∂D/∂q, so
‖g‖₁ = Σ_k q_k|h_k − h̄| (a mean absolute deviation under q) = 2·max_A Σ_{k∈A} g_k.

* SKL_α: h_k = −(1−α)p_k/m_k, m = αp + (1−α)q. q_k p_k/m_k = H(p_k, q_k) is a weighted harmonic
  mean, concave and 1-homogeneous, hence superadditive; collapsing A and its complement to one
  outcome each therefore only increases the norm, and the two-outcome problem (p = (0, 1) in
  the limit, q = (Q, 1 − Q)) gives 2(1−α)Q(1−Q)/(α + (1−α)(1−Q)), maximal at
  1 − Q = √α/(1 + √α): ‖∇_z SKL_α‖₁ < K_F(α) = 2(1 − √α)/(1 + √α), approached, not attained.
* SRKL_α: h_k = c(u_k) = log u_k + 1 − αu_k, u = q/((1−α)p + αq) ∈ (0, 1/α]. In v = 1/u = m/q
  ∈ [α, ∞), c = g(v) := −log v + 1 − α/v and Σ_{q_k>0} q_k v_k = Σ_{q_k>0} m_k ≤ 1, so ‖∇_z SRKL_α‖₁
  is the mean absolute deviation of g(V) for a random V ≥ α with E V ≤ 1 (V = v_k w.p. q_k). The
  two-outcome family u_1 = 1/α (p_1 → 0) with mass s, u_2 = (1−s)/(1−αs) gives
  K_R(α) = sup_s 2s(1−s)[log(1/α) − 1 − log((1−s)/(1−αs)) + α(1−s)/(1−αs)], and K_R bounds every
  vocabulary, for every α ∈ (0, 1):
  1. E|X − EX| = 2·max_A μ(A)μ(Aᶜ)(E[X|A] − E[X|Aᶜ]) over splits A of the outcomes.
  2. g' = (α − v)/v² ≤ 0, so E[g|A] ≤ g(α) = log(1/α) (T13 certifies the equivalent
     t − 1 − log t ≥ 0, t = α/v).
  3. g'' = (v − 2α)/v³: g is concave on [α, 2α] and convex beyond, so its convex envelope ğ on
     [α, ∞) is the tangent line from (α, g(α)) up to the tangent point v_t = x_t·α (x_t ≈ 3.1626 solves
     log y + 1 − y + (1 − y)² = 0, y = 1/x, independently of α) and g beyond; ğ is non-increasing,
     and Jensen gives E[g|Aᶜ] ≥ ğ(b), b = E[V|Aᶜ].
  4. With s = μ(A), s·E[V|A] + (1−s)b ≤ 1 and E[V|A] ≥ α give b ≤ W(s) = (1 − sα)/(1 − s), so
     ‖∇‖₁ ≤ sup_s 2s(1−s)(g(α) − ğ(W(s))).
  5. Where W(s) ≥ v_t, ğ = g and the bracket is the two-outcome value (≤ K_R). Where W(s) < v_t
     (only possible when v_t > 1, i.e. α > 1/x_t ≈ 0.316), ğ is the line of slope g'(v_t) and the
     value is 2s(1−s)|g'(v_t)|(W(s) − α) = 2s(1 − α)|g'(v_t)|, increasing in s, so it is below its
     value at the s where W(s) = v_t, again a two-outcome value. Hence ‖∇_z SRKL_α‖₁ ≤ K_R(α), and
     the two-outcome family attains it in the limit: K_R is the sharp constant.
  (An earlier version of this argument used Jensen with g itself, which needs v_t ≤ 1 and so only
  covered α ≤ 0.316; the envelope in step 3 removes the restriction.) The checks also search
  vocabularies 2–6 by gradient ascent (``checks/test_t8_logit_gradients.py``) as an independent
  numerical check of the claim.

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
