"""Grid measurements of the coefficient and divergence properties T3–T8 (float64).

Lipschitz constants are measured without autograd, as the largest difference quotient
|f(x_{i+1}) − f(x_i)|/(x_{i+1} − x_i) over dense sorted grids (by the mean-value theorem this
never exceeds sup |f'|; where the supremum is approached at a point of the grid, it gets within
the grid spacing of it). Every measured constant is compared with the constant *derived* in
``proofs/`` (lambdified), never with a number typed in here.
"""

import dataclasses
import functools
import math

import numpy as np
import torch
from torch import Tensor

import askd_ref
import proofs

__all__ = [
    "LIPSCHITZ_RTOL",
    "TIGHT_FRACTION",
    "LipschitzRow",
    "hard_gate_quotient",
    "max_quotient",
    "measure_t3",
    "measure_t4",
    "measure_t5",
    "measure_t6",
    "measure_t7",
    "measure_t8",
    "quality_grid",
    "random_pairs",
]

F64 = torch.float64
#: measured ≤ bound·(1 + LIPSCHITZ_RTOL)
LIPSCHITZ_RTOL = 1e-6
#: measured ≥ TIGHT_FRACTION·bound where the bound is tight
TIGHT_FRACTION = 0.99

ALPHAS = (0.01, 0.1, 0.5, 0.9, 0.99)
INTERVALS = ((0.05, 0.5), (0.1, 0.9), (0.3, 0.95))


@dataclasses.dataclass(frozen=True)
class LipschitzRow:
    """A measured Lipschitz constant next to its derived bound."""

    name: str
    case: str
    measured: float
    bound: float
    tight: bool

    @property
    def ratio(self) -> float:
        return self.measured / self.bound


def max_quotient(values: Tensor, grid: Tensor, dim: int = -1) -> float:
    """max |Δvalues/Δgrid| along ``dim`` (grid broadcast against values)."""
    dv = torch.diff(values, dim=dim)
    dg = torch.diff(grid, dim=dim)
    return float((dv.abs() / dg).max())


def _derived(derive: object, name: str) -> object:
    assert callable(derive)
    return derive().result(name).function()


def _num(fn: object, *args: float) -> float:
    assert callable(fn)
    return float(np.asarray(fn(*args)))


def _delta_grid(
    lo: float = -40.0, hi: float = 40.0, n: int = 40_001, extra: tuple[float, ...] = ()
) -> Tensor:
    g = torch.linspace(lo, hi, n, dtype=F64)
    if extra:
        g = torch.unique(torch.cat([g, torch.tensor(extra, dtype=F64)]))
    return g


def quality_grid(options: askd_ref.ASKDOptions, n: int = 2001) -> Tensor:
    """r grid on [0, 1] with extra points hugging 0, τ_lo, τ_hi and 1 (where sup |∂ĉ/∂r| is)."""
    pts = [0.0, 1e-7, 1.0 - 1e-7, 1.0]
    for tau in (options.tau_lo, options.tau_hi):
        pts += [tau, min(tau + 1e-7, 1.0), max(tau - 1e-7, 0.0)]
    grid: Tensor = torch.unique(
        torch.cat([torch.linspace(0.0, 1.0, n, dtype=F64), torch.tensor(pts, dtype=F64)])
    )
    return grid


def c_hat_quality_constant(options: askd_ref.ASKDOptions, n: int = 2001) -> float:
    """Measured sup over Δ ∈ [−40, 40] and r ∈ [0, 1] of |ĉ(Δ, r) − ĉ(Δ, r')|/|r − r'| (adjacent r)."""
    deltas = torch.cat([torch.linspace(-40.0, 40.0, 41, dtype=F64), torch.tensor([-60.0, 60.0], dtype=F64)])
    r = quality_grid(options, n)
    values = askd_ref.clipped_sgo_coefficient(deltas[:, None], r[None, :], options=options)
    return max_quotient(values, r[None, :], dim=1)


def sharp_quality_constant(options: askd_ref.ASKDOptions) -> float:
    """The derived sharp constant for these options (lambdified from ``proofs``)."""
    name = f"constant_{options.schedule}_{options.mixture_grad}_{options.sgo_pullup}"
    fn = _derived(proofs.derive_t4_lipschitz_c_hat_quality, name)
    return _num(fn, options.alpha_lo, options.alpha_hi, options.tau_lo, options.tau_hi)


@functools.cache
def measure_t4() -> list[LipschitzRow]:
    """Every T4 Lipschitz constant, measured on grids, next to its derived bound."""
    rows: list[LipschitzRow] = []
    d = _delta_grid()
    w_delta = _num(_derived(proofs.derive_t4_lipschitz_w_delta, "constant"))
    c_delta = _num(_derived(proofs.derive_t4_lipschitz_c_delta, "constant"))
    for alpha in ALPHAS:
        rows.append(
            LipschitzRow(
                "w in Δ", f"α={alpha}", max_quotient(askd_ref.tgo_coefficient(d, alpha), d), w_delta, True
            )
        )
        rows.append(
            LipschitzRow(
                "c̃ in Δ", f"α={alpha}", max_quotient(askd_ref.sgo_coefficient(d, alpha), d), c_delta, True
            )
        )
        c_det = askd_ref.sgo_coefficient(d, alpha, mixture_grad="stop")
        rows.append(LipschitzRow("c_det in Δ", f"α={alpha}", max_quotient(c_det, d), c_delta, True))
    w_alpha = _derived(proofs.derive_t4_lipschitz_w_alpha, "constant_on_interval")
    c_alpha = _derived(proofs.derive_t4_lipschitz_c_alpha, "constant")
    for a, b in INTERVALS:
        alphas = torch.linspace(a, b, 4001, dtype=F64)
        ends = (math.log(a / (1 - a)), math.log(b / (1 - b)))
        dd = torch.unique(
            torch.cat([torch.linspace(-8.0, 8.0, 161, dtype=F64), torch.tensor(ends, dtype=F64)])
        )
        w = askd_ref.tgo_coefficient(dd[:, None], alphas[None, :])
        rows.append(
            LipschitzRow(
                "w in α", f"α∈[{a},{b}]", max_quotient(w, alphas[None, :]), _num(w_alpha, a, b), True
            )
        )
        far = torch.tensor([-60.0, -10.0, -1.0, 1.0, 10.0, 60.0], dtype=F64)
        ct = askd_ref.sgo_coefficient(far[:, None], alphas[None, :])
        bound = max(_num(c_alpha, a), _num(c_alpha, b))
        rows.append(LipschitzRow("c̃ in α", f"α∈[{a},{b}]", max_quotient(ct, alphas[None, :]), bound, True))
    c_hat_delta = _num(_derived(proofs.derive_t4_lipschitz_c_hat_delta, "constant"))
    defaults = askd_ref.ASKDOptions()
    for quality in (0.0, 0.25, 0.5, 0.75, 1.0):
        values = askd_ref.clipped_sgo_coefficient(d, quality, options=defaults)
        rows.append(LipschitzRow("ĉ in Δ", f"r={quality}", max_quotient(values, d), c_hat_delta, True))
    w_r = _derived(proofs.derive_t4_lipschitz_w_quality, "constant")
    r = quality_grid(defaults)
    ends = (math.log(0.1 / 0.9), math.log(0.9 / 0.1))
    dd = torch.unique(torch.cat([torch.linspace(-8.0, 8.0, 161, dtype=F64), torch.tensor(ends, dtype=F64)]))
    w = askd_ref.tgo_coefficient(dd[:, None], askd_ref.tgo_alpha(r, options=defaults)[None, :])
    rows.append(
        LipschitzRow("w in r", "defaults", max_quotient(w, r[None, :], dim=1), _num(w_r, 0.1, 0.9), True)
    )
    for schedule in ("linear", "logit"):
        for mixture_grad in ("full", "stop"):
            for pullup in ("fixed", "adaptive"):
                opts = defaults.replace(schedule=schedule, mixture_grad=mixture_grad, sgo_pullup=pullup)
                rows.append(
                    LipschitzRow(
                        "ĉ in r (soft gate), sharp",
                        f"{schedule}/{mixture_grad}/{pullup}",
                        c_hat_quality_constant(opts),
                        sharp_quality_constant(opts),
                        True,
                    )
                )
    spec = _num(_derived(proofs.derive_t4_lipschitz_c_hat_quality, "spec_bound"), 0.1, 0.9, 0.5, 1.0)
    rows.append(
        LipschitzRow(
            "ĉ in r (soft gate), spec bound", "defaults", c_hat_quality_constant(defaults), spec, False
        )
    )
    return rows


def hard_gate_quotient(eps: float = 1e-9) -> dict[str, float]:
    """|ĉ(Δ, τ) − ĉ(Δ, τ − ε)|/ε for the hard gate at Δ = 1 (the negative check of T4)."""
    opts = askd_ref.ASKDOptions(gate="hard")
    left = float(askd_ref.clipped_sgo_coefficient(1.0, opts.tau - eps, options=opts))
    at = float(askd_ref.clipped_sgo_coefficient(1.0, opts.tau, options=opts))
    jump = _num(
        _derived(proofs.derive_t4_hard_gate_jump, "jump"), 1.0, opts.alpha_lo, opts.alpha_hi, opts.tau
    )
    return {"quotient": abs(left - at) / eps, "jump": abs(left - at), "derived_jump": jump, "eps": eps}


# --------------------------------------------------------------------------- T3, T5, T6


@functools.cache
def measure_t3() -> dict[str, float]:
    """Worst violations of T3's ranges on a (Δ, α) grid (≤ 0 means the statement holds)."""
    d = torch.linspace(-30.0, 30.0, 2001, dtype=F64)
    alphas = torch.linspace(0.001, 0.999, 200, dtype=F64)
    w = askd_ref.tgo_coefficient(d[:, None], alphas[None, :])
    ct = askd_ref.sgo_coefficient(d[:, None], alphas[None, :])
    cd = askd_ref.sgo_coefficient(d[:, None], alphas[None, :], mixture_grad="stop")
    sup_ct = torch.as_tensor(_derived(proofs.derive_t3_coefficient_ranges, "sup_c_tilde")(alphas.numpy()))  # type: ignore[operator]
    sup_cd = -torch.log(alphas)
    w0 = askd_ref.tgo_coefficient(0.0, alphas)
    sign_ok = torch.sign(ct) == torch.sign(d[:, None])
    defaults = askd_ref.ASKDOptions()
    wide = torch.linspace(-700.0, 700.0, 14001, dtype=F64)
    c_hat_top = askd_ref.clipped_sgo_coefficient(wide, 1.0, options=defaults)
    adaptive = defaults.replace(sgo_pullup="adaptive")
    c_hat_low = askd_ref.clipped_sgo_coefficient(wide, 0.2, options=adaptive)
    c_tilde_low = askd_ref.sgo_coefficient(wide, askd_ref.sgo_alpha(0.2, options=adaptive))
    return {
        "w_min": float(w.min()),
        "w_max": float(w.max()),
        "w0_error": float((w0 - (1 - alphas)).abs().max()),
        "c_tilde_over_cap": float((ct - sup_ct[None, :]).max()),
        "c_tilde_cap_gap_at_30": float((sup_ct - ct[-1]).abs().max()),
        "c_det_over_cap": float((cd - sup_cd[None, :]).max()),
        "sign_agreement": float(sign_ok.double().mean()),
        "c_hat_max_at_h1": float(c_hat_top.max()),
        "c_hat_vs_c_tilde_at_h0": float((c_hat_low - c_tilde_low).abs().max()),
    }


@functools.cache
def measure_t5() -> dict[str, float]:
    """Largest monotonicity violations along r (≤ 0: the statement holds), default options."""
    opts = askd_ref.ASKDOptions()
    r = torch.linspace(0.0, 1.0, 2001, dtype=F64)
    d = torch.linspace(-30.0, 30.0, 601, dtype=F64)
    w = askd_ref.tgo_coefficient(d[:, None], askd_ref.tgo_alpha(r, options=opts)[None, :])
    push = torch.clamp(askd_ref.clipped_sgo_coefficient(d[:, None], r[None, :], options=opts), min=0.0)
    a = askd_ref.sgo_alpha(r, options=opts)
    cap = -torch.log(a) - (1 - a)
    return {
        "w_largest_decrease": float((-torch.diff(w, dim=1)).max()),
        "push_down_largest_increase": float(torch.diff(push, dim=1).max()),
        "cap_largest_increase": float(torch.diff(cap).max()),
        "w_total_increase_at_0": float(w[300, -1] - w[300, 0]),
    }


@functools.cache
def measure_t6() -> dict[str, float]:
    """Distances to the α → 0 and α → 1 limits at α = 1e-9 and 1 − 1e-9, Δ ∈ [−5, 5]."""
    d = torch.linspace(-5.0, 5.0, 1001, dtype=F64)
    lo, hi = 1e-9, 1 - 1e-9
    c_lo = askd_ref.sgo_coefficient(d, lo) + 1 - lo
    return {
        "w_to_1": float((askd_ref.tgo_coefficient(d, lo) - 1).abs().max()),
        "c_to_delta_plus_1": float((c_lo - (d + 1)).abs().max()),
        "w_to_0": float(askd_ref.tgo_coefficient(d, hi).abs().max()),
        "c_tilde_to_0": float(askd_ref.sgo_coefficient(d, hi).abs().max()),
    }


# --------------------------------------------------------------------------- T7, T8


def random_pair(gen: torch.Generator, vocab: int, scale: float) -> tuple[Tensor, Tensor]:
    """Log-probs of a random teacher/student pair (logits N(0, scale²))."""
    p = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    q = torch.log_softmax(torch.randn(vocab, generator=gen, dtype=F64) * scale, -1)
    return p, q


#: (vocab, logit scale) families of random pairs for T7/T8; 64 pairs each, seeded.
FAMILIES: tuple[tuple[int, float], ...] = tuple(
    (v, sc) for v in (2, 5, 20, 50) for sc in (0.5, 2.0, 5.0, 10.0)
)
PAIR_ALPHAS = (0.01, 0.1, 0.3, 0.7)


def random_pairs(seed: int, vocab: int, scale: float, n: int = 64) -> tuple[Tensor, Tensor]:
    """``(n·4, vocab)`` teacher and student log-probs (each pair repeated for the 4 α of PAIR_ALPHAS)."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.log_softmax(torch.randn(n, vocab, generator=gen, dtype=F64) * scale, -1)
    q = torch.log_softmax(torch.randn(n, vocab, generator=gen, dtype=F64) * scale, -1)
    return p.repeat_interleave(4, 0), q.repeat_interleave(4, 0)


def _pair_alphas(rows: int) -> Tensor:
    return torch.tensor(PAIR_ALPHAS, dtype=F64).repeat(rows // 4)


@functools.cache
def measure_t7() -> dict[str, float]:
    """Worst ratios of T7's bounds over random pairs (≤ 1 holds) and the tight cases (→ 1)."""
    worst = {"pairs": 0.0, "skl_over_log": 0.0, "skl_over_kl": 0.0, "srkl_over_log": 0.0, "srkl_over_kl": 0.0}
    worst["dskl_over_tv"] = 0.0
    for k, (vocab, scale) in enumerate(FAMILIES):
        p, q = random_pairs(700 + k, vocab, scale)
        a = _pair_alphas(p.shape[0]).requires_grad_(True)
        skl = askd_ref.skew_forward_kl(teacher_logp=p, student_logp=q, alpha=a)
        srkl = askd_ref.skew_reverse_kl(teacher_logp=p, student_logp=q, alpha=a)
        (dskl,) = torch.autograd.grad(skl.sum(), a)
        a = a.detach()
        skl, srkl = skl.detach(), srkl.detach()
        fkl = askd_ref.forward_kl(teacher_logp=p, student_logp=q)
        rkl = askd_ref.reverse_kl(teacher_logp=p, student_logp=q)
        tv = 0.5 * (p.exp() - q.exp()).abs().sum(-1)
        log_inv = -torch.log(a)
        worst["pairs"] += p.shape[0] / 4
        worst["skl_over_log"] = max(worst["skl_over_log"], float((skl / log_inv).max()))
        worst["skl_over_kl"] = max(worst["skl_over_kl"], float((skl / ((1 - a) * fkl)).max()))
        worst["srkl_over_log"] = max(worst["srkl_over_log"], float((srkl / log_inv).max()))
        worst["srkl_over_kl"] = max(worst["srkl_over_kl"], float((srkl / ((1 - a) * rkl)).max()))
        worst["dskl_over_tv"] = max(worst["dskl_over_tv"], float((dskl.abs() / (tv / a)).max()))
        worst["skl_min"] = min(worst.get("skl_min", math.inf), float(skl.min()))
    # Tight cases: near-disjoint supports.
    eps = 1e-12
    p1 = torch.tensor([1 - eps, eps], dtype=F64).log()
    q1 = torch.tensor([eps, 1 - eps], dtype=F64).log()
    a1 = torch.tensor(0.1, dtype=F64, requires_grad=True)
    skl1 = askd_ref.skew_forward_kl(teacher_logp=p1, student_logp=q1, alpha=a1)
    (dskl1,) = torch.autograd.grad(skl1, a1)
    tv1 = 0.5 * float((p1.exp() - q1.exp()).abs().sum())
    worst["skl_over_log_disjoint"] = float(skl1.detach()) / math.log(10.0)
    worst["dskl_over_tv_disjoint"] = abs(float(dskl1)) / (tv1 / 0.1)
    # Non-increasing and convex in α on a grid, for 64 pairs at once.
    p, q = random_pairs(77, 10, 2.0, n=16)
    grid = torch.linspace(0.0, 1.0, 1001, dtype=F64)
    values = askd_ref.skew_forward_kl(
        teacher_logp=p[:, None, :].expand(-1, 1001, -1),
        student_logp=q[:, None, :].expand(-1, 1001, -1),
        alpha=grid.expand(p.shape[0], -1),
    )
    worst["skl_largest_increase_in_alpha"] = float(torch.diff(values, dim=1).max())
    worst["skl_most_negative_second_difference"] = float(torch.diff(values, n=2, dim=1).min())
    worst["skl_at_p_equals_q"] = float(
        askd_ref.skew_forward_kl(teacher_logp=p, student_logp=p, alpha=0.3).abs().max()
    )
    return worst


@functools.cache
def measure_t8() -> dict[str, float]:
    """Largest ‖∇_z SKL_α‖₁/2 and ‖∇_z SRKL_α‖₁/(2(log(1/α) + 1 + 1/e)) over random pairs."""
    bound_srkl = _derived(proofs.derive_t8_logit_gradient_bounds, "srkl_bound")
    worst = {"pairs": 0.0, "skl_ratio": 0.0, "srkl_ratio": 0.0}
    for k, (vocab, scale) in enumerate(FAMILIES):
        p, q = random_pairs(800 + k, vocab, scale)
        z = (q * 1.0).clone().requires_grad_(True)  # logits = log q (any shift works)
        a = _pair_alphas(p.shape[0])
        (g1,) = torch.autograd.grad(
            askd_ref.skew_forward_kl(teacher_logp=p, student_logp=torch.log_softmax(z, -1), alpha=a).sum(), z
        )
        (g2,) = torch.autograd.grad(
            askd_ref.skew_reverse_kl(teacher_logp=p, student_logp=torch.log_softmax(z, -1), alpha=a).sum(), z
        )
        b2 = torch.as_tensor(np.asarray(bound_srkl(a.numpy())))  # type: ignore[operator]
        worst["pairs"] += p.shape[0] / 4
        worst["skl_ratio"] = max(worst["skl_ratio"], float((g1.abs().sum(-1) / 2).max()))
        worst["srkl_ratio"] = max(worst["srkl_ratio"], float((g2.abs().sum(-1) / b2).max()))
    return worst
