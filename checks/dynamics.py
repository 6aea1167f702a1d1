"""T11 (clip semantics under real SGD steps) and T12 (GRPO-like contrast) measurements."""

import copy
import dataclasses
import functools
import math

import torch
from torch import Tensor, nn

import askd_ref
from checks.grid import c_hat_quality_constant, sharp_quality_constant

__all__ = [
    "FIRST_ORDER_RTOL",
    "LEARNING_RATE",
    "StepResult",
    "TinyAR",
    "measure_t11",
    "measure_t12",
    "sgd_step",
    "t11_cases",
]

F64 = torch.float64
#: One small SGD step (spec T11: "to first order").
LEARNING_RATE = 1e-3
#: |measured change − first-order prediction| ≤ FIRST_ORDER_RTOL·|prediction| (the O(η²) remainder).
FIRST_ORDER_RTOL = 0.05


class TinyAR(nn.Module):
    """A tiny neural autoregressive LM (float64): embedding of the previous token + position,
    tanh, linear head. Parameters are shared across positions, as in a real LM."""

    def __init__(self, vocab: int, length: int, dim: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.vocab = vocab
        self.length = length
        self.emb = nn.Parameter(torch.randn(vocab + 1, dim, generator=gen, dtype=F64) * 0.8)
        self.pos = nn.Parameter(torch.randn(length, dim, generator=gen, dtype=F64) * 0.5)
        self.head = nn.Parameter(torch.randn(dim, vocab, generator=gen, dtype=F64) * 0.8)
        self.bias = nn.Parameter(torch.zeros(vocab, dtype=F64))

    def logits(self, seqs: Tensor) -> Tensor:
        bos = torch.full((seqs.shape[0], 1), self.vocab, dtype=torch.long)
        prev = torch.cat([bos, seqs[:, :-1]], 1)
        return torch.tanh(self.emb[prev] + self.pos[None]) @ self.head + self.bias

    def token_logp(self, seqs: Tensor) -> Tensor:
        return torch.log_softmax(self.logits(seqs), -1).gather(-1, seqs[..., None]).squeeze(-1)

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator) -> Tensor:
        seqs = torch.zeros(n, self.length, dtype=torch.long)
        for t in range(self.length):
            probs = torch.softmax(self.logits(seqs)[:, t], -1)
            seqs[:, t] = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        return seqs


@dataclasses.dataclass(frozen=True)
class StepResult:
    """One SGD step on ℓ_S alone for one SGO."""

    case: str
    quality: float
    delta: float
    c_hat: float
    change: float  # log q(y) after − before
    predicted: float  # first order: −η⟨∇ℓ_S, ∇log q(y)⟩


def sgd_step(
    student: TinyAR, teacher: TinyAR, seq: Tensor, quality: float, options: askd_ref.ASKDOptions, case: str
) -> StepResult:
    """Take one ``torch.optim.SGD`` step of size :data:`LEARNING_RATE` on E12 for ``seq``."""
    model = copy.deepcopy(student)
    params = list(model.parameters())
    y = seq[None]
    mask = torch.ones_like(y, dtype=torch.bool)
    teacher_tok = teacher.token_logp(y).detach()
    before_tok = model.token_logp(y)
    log_q = before_tok.sum()
    out = askd_ref.sgo_loss(
        student_token_logp=before_tok,
        teacher_token_logp=teacher_tok,
        mask=mask,
        quality=quality,
        options=options,
    )
    loss_grads = torch.autograd.grad(out.loss, params, retain_graph=True, allow_unused=True)
    score_grads = torch.autograd.grad(log_q, params)
    predicted = -LEARNING_RATE * sum(
        float((g * s).sum()) for g, s in zip(loss_grads, score_grads, strict=True) if g is not None
    )
    opt = torch.optim.SGD(params, lr=LEARNING_RATE)
    opt.zero_grad()
    for p, g in zip(params, loss_grads, strict=True):
        p.grad = torch.zeros_like(p) if g is None else g.clone()
    opt.step()
    with torch.no_grad():
        after = float(model.token_logp(y).sum())
    delta = askd_ref.sequence_log_ratio(before_tok.detach(), teacher_tok, mask, normalize=options.normalize)
    c_hat = askd_ref.clipped_sgo_coefficient(delta, quality, options=options)
    return StepResult(
        case, quality, float(delta[0]), float(c_hat[0]), after - float(log_q.detach()), predicted
    )


def t11_cases(seed: int, options: askd_ref.ASKDOptions) -> list[StepResult]:
    """Four SGOs sampled from the student: (top / low quality) × (Δ > 0 / Δ < 0)."""
    student = TinyAR(6, 4, 8, seed)
    teacher = TinyAR(6, 4, 8, seed + 10_000)
    gen = torch.Generator().manual_seed(seed)
    seqs = student.sample(256, gen)
    with torch.no_grad():
        delta = (student.token_logp(seqs) - teacher.token_logp(seqs)).sum(-1)
    pos = seqs[int(torch.argmax(delta))]
    neg = seqs[int(torch.argmin(delta))]
    if not (float(delta.max()) > 0 > float(delta.min())):
        raise AssertionError(f"seed {seed}: need SGOs with Δ of both signs, got {delta.min()}..{delta.max()}")
    return [
        sgd_step(student, teacher, pos, 1.0, options, "top quality (h = 1), Δ > 0"),
        sgd_step(student, teacher, neg, 1.0, options, "top quality (h = 1), Δ < 0"),
        sgd_step(student, teacher, pos, 0.0, options, "low quality (h = 0), Δ > 0"),
        sgd_step(student, teacher, neg, 0.0, options, "low quality (h = 0), Δ < 0"),
    ]


def clip_idempotence_gap(options: askd_ref.ASKDOptions) -> float:
    """max |c(Δ) − c(min(Δ, 0))| over Δ ∈ [−50, 50] at quality 1 (h = 1), c the coefficient
    askd_ref.sgo_loss puts on the score S̄ (read by autograd from the loss, one token per sample).

    At h = 1 the clip is a projection onto the pull-up side: ĉ(Δ, 1) = min(c̃(Δ; α), 0) =
    ĉ(min(Δ, 0), 1) (sign c̃ = sign Δ), so clipping the sample's log-ratio first changes nothing
    (idempotence). The two sides are different inputs to the loss, not the same output twice."""
    d = torch.linspace(-50.0, 50.0, 2001, dtype=F64)

    def coefficients(delta: Tensor) -> Tensor:
        s = torch.full((delta.shape[0], 1), -60.0, dtype=F64, requires_grad=True)  # log p = s − Δ ≤ 0
        out = askd_ref.sgo_loss(
            student_token_logp=s,
            teacher_token_logp=(s - delta[:, None]).detach(),
            mask=torch.ones(delta.shape[0], 1, dtype=torch.bool),
            quality=1.0,
            options=options,
        )
        (g,) = torch.autograd.grad(out.loss, s)
        return g[:, 0] * delta.shape[0]

    return float((coefficients(d) - coefficients(torch.clamp(d, max=0.0))).abs().max())


@functools.cache
def measure_t11() -> dict[str, object]:
    """The four cases for seed 0 under both normalisations, and the idempotence gaps."""
    results: list[StepResult] = []
    for normalize in ("sum", "mean"):
        results += t11_cases(0, askd_ref.ASKDOptions(normalize=normalize))
    gaps = {
        pullup: clip_idempotence_gap(askd_ref.ASKDOptions(sgo_pullup=pullup))
        for pullup in ("fixed", "adaptive")
    }
    return {"steps": results, "idempotence_gap": max(gaps.values())}


def divergence_under_negative_advantage(
    steps: int = 300, lr: float = 0.5, skew: float | None = None
) -> list[float]:
    """Minimise A·D(p‖q_θ) with A = −1 by SGD on a 6-way categorical; D = KL or SKL_skew.

    Returns the divergence after every step.
    """
    gen = torch.Generator().manual_seed(12)
    p = torch.log_softmax(torch.randn(6, generator=gen, dtype=F64), -1)
    z = (p + 0.1 * torch.randn(6, generator=gen, dtype=F64)).clone().requires_grad_(True)
    opt = torch.optim.SGD([z], lr=lr)
    trace = []
    for _ in range(steps):
        logq = torch.log_softmax(z, -1)
        if skew is None:
            div = askd_ref.forward_kl(teacher_logp=p, student_logp=logq)
        else:
            div = askd_ref.skew_forward_kl(teacher_logp=p, student_logp=logq, alpha=skew)
        opt.zero_grad()
        (-1.0 * div).backward()  # type: ignore[no-untyped-call]
        opt.step()
        trace.append(float(div.detach()))
    return trace


@functools.cache
def measure_t12() -> dict[str, float]:
    """Group advantages at (near-)zero dispersion vs ASKD's coefficient in quality."""
    g = 8
    group = torch.zeros(g, dtype=torch.long)

    def rewards(eta: float) -> Tensor:
        r = torch.ones(g, dtype=F64)
        r[-1] = 1 - eta
        return r

    # ε_A → 0 (1e-15, far below every dispersion used): A_G = −√(G−1)·σ/(σ + ε_A) for every η > 0.
    a_no_eps = [
        float(askd_ref.group_advantages(rewards(eta), group, eps=1e-15)[-1]) for eta in (1e-1, 1e-3, 1e-6)
    ]
    a_zero = float(askd_ref.group_advantages(rewards(0.0), group)[-1])
    eta = 1e-9
    slope = abs(float(askd_ref.group_advantages(rewards(eta), group)[-1]) - a_zero) / eta
    defaults = askd_ref.ASKDOptions()
    kl = divergence_under_negative_advantage()
    skl = divergence_under_negative_advantage(skew=0.1)
    d = torch.linspace(-700.0, 700.0, 14001, dtype=F64)
    r = torch.linspace(0.0, 1.0, 101, dtype=F64)
    c_hat = askd_ref.clipped_sgo_coefficient(d[:, None], r[None, :], options=defaults)
    at_zero = askd_ref.clipped_sgo_coefficient(torch.zeros_like(r), r, options=defaults)
    p = torch.log_softmax(torch.randn(10, generator=torch.Generator().manual_seed(3), dtype=F64), -1)
    zero_divs = max(
        float(fn(teacher_logp=p, student_logp=p, alpha=a).abs())
        for fn in (askd_ref.skew_forward_kl, askd_ref.skew_reverse_kl)
        for a in (0.1, 0.5, 0.9)
    )
    return {
        "advantage_no_eps_min": min(a_no_eps),
        "advantage_no_eps_max": max(a_no_eps),
        "sqrt_g_minus_1": math.sqrt(g - 1),
        "advantage_at_zero_dispersion": a_zero,
        "advantage_slope_near_zero": slope,
        "advantage_slope_predicted": (g - 1) / (g * 1e-4),
        "askd_sharp_constant": sharp_quality_constant(defaults),
        "askd_measured_constant": c_hat_quality_constant(defaults),
        "kl_start": kl[0],
        "kl_end": kl[-1],
        "kl_increase_last_100": kl[-1] - kl[-101],
        "skl_end": skl[-1],
        "skl_cap": math.log(10.0),
        "c_hat_max": float(c_hat.max()),
        "c_hat_cap": -math.log(0.1) - 0.9,
        "c_hat_at_delta_zero": float(at_zero.abs().max()),
        "divergence_at_p_equals_q": zero_divs,
    }


# --------------------------------------------------------------------------- T12 on the losses

T12_GROUP = 8
T12_STEPS = 150


def _sgo_coefficients(method: str, quality: Tensor, delta: Tensor) -> Tensor:
    """The coefficient c_j each loss puts on the score S̄(y_j) of SGO j: c_j = N_S·∂L/∂S̄_j.

    One group of SGOs with mean-mode scores S̄_j (one token each, so S̄ = ℓq) and Δ_j = ℓq − ℓp.
    ``method`` "askd": askd_ref.sgo_loss with the defaults; "advantage_kd": the SGO term of
    askd_ref.advantage_kd_loss (ε_A = 1e-4 default), whose coefficient is −A_j.
    """
    n = quality.shape[0]
    s = torch.full((n, 1), -1.0, dtype=F64, requires_grad=True)
    t = (s - delta[:, None]).detach()
    mask = torch.ones(n, 1, dtype=torch.bool)
    if method == "askd":
        loss = askd_ref.sgo_loss(student_token_logp=s, teacher_token_logp=t, mask=mask, quality=quality).loss
    else:
        full = torch.log_softmax(torch.zeros(n, 1, 3, dtype=F64), -1)
        batch = askd_ref.DistillBatch(
            mask=mask,
            is_tgo=torch.zeros(n, dtype=torch.bool),
            quality=quality,
            student_token_logp=s,
            student_logp=full,
            teacher_logp=full,
            group=torch.zeros(n, dtype=torch.long),
        )
        loss = askd_ref.advantage_kd_loss(batch).loss
    (g,) = torch.autograd.grad(loss, s)
    return g[:, 0] * n


def _trajectory(method: str) -> tuple[list[float], list[float]]:
    """SGD on one method's SGO loss for a categorical student q = softmax(z) (V = 6), teacher p.

    The group is the 6 outcomes, y_5 of low quality (r = 0, below the group mean, so A_5 < 0) and
    the others r = 1; every step evaluates the loss on the 6 SGOs (token log-probs of q and p) and
    takes an SGD step on z. Returns log q(y_5) − log p(y_5) and KL(p‖q) after every step.
    """
    gen = torch.Generator().manual_seed(12)
    p = torch.log_softmax(torch.randn(6, generator=gen, dtype=F64), -1)
    z = (p + 0.1 * torch.randn(6, generator=gen, dtype=F64)).clone().requires_grad_(True)
    quality = torch.ones(6, dtype=F64)
    quality[5] = 0.0
    opt = torch.optim.SGD([z], lr=0.5)
    mask = torch.ones(6, 1, dtype=torch.bool)
    log_ratio, kls = [], []
    for _ in range(T12_STEPS):
        logq = torch.log_softmax(z, -1)
        s = logq[:, None]
        if method == "askd":
            loss = askd_ref.sgo_loss(
                student_token_logp=s, teacher_token_logp=p[:, None], mask=mask, quality=quality
            ).loss
        else:
            batch = askd_ref.DistillBatch(
                mask=mask,
                is_tgo=torch.zeros(6, dtype=torch.bool),
                quality=quality,
                student_token_logp=s,
                student_logp=logq[None, None, :].expand(6, 1, 6),
                teacher_logp=p[None, None, :].expand(6, 1, 6),
                group=torch.zeros(6, dtype=torch.long),
            )
            loss = askd_ref.advantage_kd_loss(batch).loss
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        with torch.no_grad():
            logq = torch.log_softmax(z, -1)
            log_ratio.append(float(logq[5] - p[5]))
            kls.append(float(askd_ref.forward_kl(teacher_logp=p, student_logp=logq)))
    return log_ratio, kls


@functools.cache
def measure_t12_losses() -> dict[str, float]:
    """T12 on askd_ref's own losses: sgo_loss (defaults) against advantage_kd_loss.

    * quality sensitivity at zero dispersion: group r = (1, …, 1, 1 − η), Δ = 2 for every SGO;
      the coefficient each loss puts on the last SGO's score, differenced between η = 1e-6 and
      η = 0 and divided by η;
    * dynamics: :func:`_trajectory` for both losses.
    """
    g = T12_GROUP
    delta = torch.full((g,), 2.0, dtype=F64)
    eta = 1e-6

    def last(method: str, e: float) -> float:
        r = torch.ones(g, dtype=F64)
        r[-1] = 1 - e
        return float(_sgo_coefficients(method, r, delta)[-1])

    ratio_adv, kl_adv = _trajectory("advantage_kd")
    ratio_askd, kl_askd = _trajectory("askd")
    a_lo = askd_ref.ASKDOptions().alpha_lo
    return {
        "adv_slope": abs(last("advantage_kd", eta) - last("advantage_kd", 0.0)) / eta,
        # |A(η)|/η = ((G − 1)/G)/(η√(G − 1)/G + ε_A) for r = (1, …, 1, 1 − η), population std
        "adv_slope_predicted": ((g - 1) / g) / (eta * math.sqrt(g - 1) / g + 1e-4),
        "adv_coef_at_zero_dispersion": last("advantage_kd", 0.0),
        "askd_slope": abs(last("askd", eta) - last("askd", 0.0)) / eta,
        "askd_sharp_constant": sharp_quality_constant(askd_ref.ASKDOptions()),
        "askd_coef_top_quality": last("askd", 0.0),
        "adv_log_ratio_end": ratio_adv[-1],
        "adv_log_ratio_drop_last_100": ratio_adv[-101] - ratio_adv[-1],
        "adv_kl_end": kl_adv[-1],
        "askd_log_ratio_min": min(ratio_askd),
        "askd_log_ratio_end": ratio_askd[-1],
        "askd_kl_end": kl_askd[-1],
        "askd_kl_max": max(kl_askd),
        "c_det_floor": math.log(a_lo),
    }
