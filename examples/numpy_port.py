"""A port of ASKD's update coefficients E5, E6/E7 and E9 in plain NumPy (docs/porting.md).

Check it against the golden vectors; the §10 names it leaves out are reported "not implemented":

    python -m askd_ref.conformance --impl examples/numpy_port.py
"""

import types

import numpy as np

DEFAULTS = types.SimpleNamespace(mixture_grad="full", gate="soft", tau_lo=0.5, tau_hi=1.0, tau=0.75,
                                 sgo_pullup="fixed", schedule="linear", alpha_lo=0.1, alpha_hi=0.9)


def tgo_coefficient(delta, alpha):  # E5: w = σ(Δ − logit α), in log space
    return np.exp(-np.logaddexp(0.0, np.log(alpha) - np.log1p(-np.asarray(alpha)) - delta))


def sgo_coefficient(delta, alpha, *, mixture_grad="full"):  # E6: c̃ = log u − α(u − 1); E7 ("stop"): log u
    log_u = -np.logaddexp(np.log(alpha), np.log1p(-np.asarray(alpha)) - delta)
    return log_u if mixture_grad == "stop" else log_u - alpha * np.expm1(log_u)


def alpha_s_and_gate(r, o):  # E10 α_S(r), linear in α or in logit α; E8 gate h(r)
    if o.schedule == "linear":
        a_s = o.alpha_lo + (o.alpha_hi - o.alpha_lo) * r
    else:
        lo, hi = np.log(o.alpha_lo / (1 - o.alpha_lo)), np.log(o.alpha_hi / (1 - o.alpha_hi))
        a_s = 1 / (1 + np.exp(-(lo + (hi - lo) * r)))
    gates = {"soft": np.clip((r - o.tau_lo) / (o.tau_hi - o.tau_lo), 0, 1), "hard": 1.0 * (r >= o.tau)}
    return a_s, gates.get(o.gate, 0 * r)  # gate "none": h ≡ 0


def clipped_sgo_coefficient(delta, quality, *, options=None):  # E9
    o = options or DEFAULTS
    a_s, h = alpha_s_and_gate(np.asarray(quality, dtype=float), o)
    c_s = sgo_coefficient(delta, a_s, mixture_grad=o.mixture_grad)
    push_down = (1 - h) * np.maximum(c_s, 0)  # quality modulates the push-down only
    if o.sgo_pullup == "adaptive":
        return np.minimum(c_s, 0) + push_down
    return np.minimum(sgo_coefficient(delta, o.alpha_lo, mixture_grad=o.mixture_grad), 0) + push_down


# Optional: analytic gradients, checked against the autograd gradients of the vectors.
def tgo_coefficient_grad(delta, alpha):  # (∂w/∂Δ, ∂w/∂α)
    w = tgo_coefficient(delta, alpha)
    return w * (1 - w), -w * (1 - w) / (alpha * (1 - alpha))


def sgo_coefficient_grad(delta, alpha, *, mixture_grad="full"):  # (∂c/∂Δ, ∂c/∂α)
    u = np.exp(-np.logaddexp(np.log(alpha), np.log1p(-alpha) - delta))  # u = 1/(α + (1−α)e^{−Δ})
    v = np.exp(-np.logaddexp(np.log(alpha) + delta, np.log1p(-alpha)))  # v = e^{−Δ}u
    if mixture_grad == "stop":
        return 1 - alpha * u, v - u
    return (1 - alpha * u) ** 2, (1 - alpha * u) * (v - u) - (u - 1)


def clipped_sgo_coefficient_grad(delta, quality, *, options=None):  # ∂ĉ/∂Δ; at Δ = 0 from the right
    o, d = options or DEFAULTS, np.asarray(delta, dtype=float)
    a_s, h = alpha_s_and_gate(np.asarray(quality, dtype=float), o)
    dc_s = sgo_coefficient_grad(d, a_s, mixture_grad=o.mixture_grad)[0]
    push_down = np.where(d >= 0, dc_s, 0.0)  # sign(c̃) = sign(Δ): Δ = 0 takes the push-down branch
    if o.sgo_pullup == "adaptive":
        return dc_s - h * push_down
    dc_lo = sgo_coefficient_grad(d, np.full_like(d, o.alpha_lo), mixture_grad=o.mixture_grad)[0]
    return np.where(d < 0, dc_lo, 0.0) + (1 - h) * push_down
