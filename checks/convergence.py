"""T10: uniform convergence of the empirical skew loss over an (α, θ) grid (statistical check).

Setting. M = 200 contexts z with teacher p_z (V = 20) and a one-parameter student family
q_{θ,z} = softmax(b_z + θ·d_z), θ ∈ [−1, 1], ‖d_z‖_∞ ≤ 1. The per-sample loss is the token-level
skew KL ℓ(θ, α; z) = SKL_α(p_z, q_{θ,z}) (askd_ref.skew_forward_kl) ∈ [0, log(1/α_min)] =: [0, B]
(T7). The population loss L(θ, α) is the mean over the M contexts (z uniform); the empirical
loss L̂_n averages n i.i.d. draws of z. A run draws R independent samples per n and records
D_n = sup |L̂_n − L| over the evaluation grid (α ∈ {0.1, 0.2, 0.4} × 401 values of θ).

Envelope. Take the net of N = 3 × 101 points (θ spacing 0.02, covering radius η = 0.01). By T8,
|∂ℓ/∂θ| ≤ ‖∇_z SKL‖₁·‖d‖_∞ ≤ 2 =: L_θ, so sup over the evaluation grid ≤ max over the net +
2L_θη, and Hoeffding with a union bound over the net gives, with probability ≥ 1 − δ,
D_n ≤ B·sqrt(log(2N/δ)/(2n)) + 2L_θη. δ = 0.05.

Statistics (fixed seed; the false-failure rates are over seeds):
* exceedances: for each n, the count of repetitions above the envelope must not exceed the
  one-sided binomial critical value k* with P(Bin(R, δ) > k*) ≤ 1e-4, so a correct envelope
  fails this test with probability ≤ 1e-4 per n (8e-4 over the 8 values of n);
* slope: least-squares slope of log E[D_n] against log n must lie in [−0.6, −0.4]; its
  bootstrap standard error (resampling repetitions) gives the stated false-failure rate
  2Φ(−0.1/SE) for a true slope of −1/2;
* α-uniformity: sup_θ |L(θ; α) − L(θ; α')| ≤ |α − α'|/min(α, α') over an α grid and 101 values
  of θ (exact population values, T7).
"""

import dataclasses
import functools
import math

import numpy as np
import torch
from scipy import stats

import askd_ref

__all__ = ["ConvergenceResult", "measure_t10"]

F64 = torch.float64
M_CONTEXTS = 200
VOCAB = 20
NET_ALPHAS = (0.1, 0.2, 0.4)
NET_THETAS = 101
EVAL_THETAS = 401
N_VALUES = (50, 100, 200, 400, 800, 1600, 3200, 6400)
REPS = 200
DELTA = 0.05
L_THETA = 2.0  # T8: ‖∇_z SKL‖₁ ≤ 2, times ‖d‖_∞ ≤ 1
FALSE_FAILURE = 1e-4
SEED = 10
ALPHA_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 0.95)


@dataclasses.dataclass(frozen=True)
class ConvergenceResult:
    """Everything T10 measures (arrays are indexed like :data:`N_VALUES`)."""

    n_values: tuple[int, ...]
    reps: int
    mean_sup: tuple[float, ...]
    q95_sup: tuple[float, ...]
    envelope: tuple[float, ...]
    exceed_counts: tuple[int, ...]
    critical_count: int
    slope: float
    slope_se: float
    slope_false_failure: float
    alpha_uniformity_ratio: float
    net_points: int
    eta: float
    bound_b: float


def _loss_table(gen: torch.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ℓ on (context, α, θ) for the evaluation grid; and the θ grid and the α-uniformity grid."""
    teacher = torch.log_softmax(torch.randn(M_CONTEXTS, VOCAB, generator=gen, dtype=F64) * 2.0, -1)
    base = torch.randn(M_CONTEXTS, VOCAB, generator=gen, dtype=F64) * 2.0
    direction = torch.rand(M_CONTEXTS, VOCAB, generator=gen, dtype=F64) * 2 - 1  # ‖d‖_∞ ≤ 1
    thetas = torch.linspace(-1.0, 1.0, EVAL_THETAS, dtype=F64)
    student = torch.log_softmax(base[:, None, :] + thetas[None, :, None] * direction[:, None, :], -1)
    tables = []
    for alpha in NET_ALPHAS:
        tables.append(
            askd_ref.skew_forward_kl(
                teacher_logp=teacher[:, None, :].expand(-1, EVAL_THETAS, -1),
                student_logp=student,
                alpha=alpha,
            )
        )
    table = torch.stack(tables, 1)  # (M, α, θ)
    coarse = student[:, ::4]  # 101 values of θ
    population = []
    for alpha in ALPHA_GRID:
        population.append(
            askd_ref.skew_forward_kl(
                teacher_logp=teacher[:, None, :].expand(-1, coarse.shape[1], -1),
                student_logp=coarse,
                alpha=alpha,
            ).mean(0)
        )
    return table.numpy(), thetas.numpy(), torch.stack(population).numpy()


@functools.cache
def measure_t10() -> ConvergenceResult:
    gen = torch.Generator().manual_seed(SEED)
    table, _, population_alpha = _loss_table(gen)
    flat = table.reshape(M_CONTEXTS, -1)
    population = flat.mean(0)
    rng = np.random.default_rng(SEED)
    n_net = len(NET_ALPHAS) * NET_THETAS
    eta = (2.0 / (NET_THETAS - 1)) / 2
    bound_b = math.log(1 / min(NET_ALPHAS))
    sups = np.empty((len(N_VALUES), REPS))
    for i, n in enumerate(N_VALUES):
        counts = rng.multinomial(n, np.full(M_CONTEXTS, 1.0 / M_CONTEXTS), size=REPS)
        empirical = counts @ flat / n
        sups[i] = np.abs(empirical - population[None, :]).max(1)
    n_arr = np.array(N_VALUES, dtype=float)
    envelope = bound_b * np.sqrt(np.log(2 * n_net / DELTA) / (2 * n_arr)) + 2 * L_THETA * eta
    exceed = (sups > envelope[:, None]).sum(1)
    critical = int(stats.binom.isf(FALSE_FAILURE, REPS, DELTA))
    mean_sup = sups.mean(1)
    slope = float(np.polyfit(np.log(n_arr), np.log(mean_sup), 1)[0])
    boot = np.empty(400)
    for b in range(400):
        idx = rng.integers(0, REPS, size=(len(N_VALUES), REPS))
        boot[b] = np.polyfit(np.log(n_arr), np.log(np.take_along_axis(sups, idx, 1).mean(1)), 1)[0]
    se = float(boot.std(ddof=1))
    false_failure = float(2 * stats.norm.sf(0.1 / se))
    # α-uniformity (exact population values, T7): sup_θ |L(α) − L(α')| ≤ |α − α'|/min(α, α').
    alphas = np.array(ALPHA_GRID)
    worst = 0.0
    for i in range(len(alphas)):
        for j in range(i + 1, len(alphas)):
            gap = np.abs(population_alpha[i] - population_alpha[j]).max()
            worst = max(worst, gap / (abs(alphas[i] - alphas[j]) / min(alphas[i], alphas[j])))
    return ConvergenceResult(
        n_values=N_VALUES,
        reps=REPS,
        mean_sup=tuple(float(x) for x in mean_sup),
        q95_sup=tuple(float(x) for x in np.quantile(sups, 0.95, axis=1)),
        envelope=tuple(float(x) for x in envelope),
        exceed_counts=tuple(int(x) for x in exceed),
        critical_count=critical,
        slope=slope,
        slope_se=se,
        slope_false_failure=false_failure,
        alpha_uniformity_ratio=float(worst),
        net_points=n_net,
        eta=eta,
        bound_b=bound_b,
    )
