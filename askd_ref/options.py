"""The open choices of ASKD (spec §9) as one frozen, validated dataclass.

The ASKD paper's equations are not public; every choice its abstract leaves open is a named
option here, with the default askd-ref chose (``docs/method.md`` §9 says why).
"""

import dataclasses
import math
from typing import Literal, TypeAlias, get_args, get_origin

__all__ = [
    "ASKDOptions",
    "GateKind",
    "LengthCorrection",
    "MixtureGrad",
    "Normalize",
    "PullUp",
    "Schedule",
]

Normalize: TypeAlias = Literal["mean", "sum"]
MixtureGrad: TypeAlias = Literal["full", "stop"]
GateKind: TypeAlias = Literal["soft", "hard", "none"]
PullUp: TypeAlias = Literal["fixed", "adaptive"]
Schedule: TypeAlias = Literal["linear", "logit"]
LengthCorrection: TypeAlias = Literal["none", "uj"]

@dataclasses.dataclass(frozen=True)
class ASKDOptions:
    """Options of ASKD as specified by askd-ref (spec §9); ``ASKDOptions()`` gives the defaults.

    >>> ASKDOptions().alpha_lo, ASKDOptions().alpha_hi, ASKDOptions().gate
    (0.1, 0.9, 'soft')
    >>> ASKDOptions(alpha_lo=0.95)
    Traceback (most recent call last):
    ...
    ValueError: alpha_lo must satisfy 0 < alpha_lo <= alpha_hi < 1; got alpha_lo=0.95, alpha_hi=0.9
    """

    normalize: Normalize = "mean"
    """How token log-ratios and scores are pooled per sequence: ``"sum"`` gives the exact
    sequence-level Δ(y) = Σ_t δ_t and S_θ(y) = Σ_t log q(y_t|c_t) (the exactness theorems T1/T2
    hold for it); ``"mean"`` divides both by the response length |y| (the trainer default: the
    full Δ over hundreds of tokens saturates σ and u)."""

    mixture_grad: MixtureGrad = "full"
    """Whether the student inside the reverse-skew mixture receives gradient. ``"full"`` uses
    the centred coefficient c̃ = log u − α(u − 1) (E6, the exact gradient of SRKL_α / UJ);
    ``"stop"`` uses c_det = log u (E7, the semi-gradient of KL(q‖sg(mixture)), DistiLLM-2's
    SRKL)."""

    gate: GateKind = "soft"
    """Quality gate h(r) of E8. ``"soft"``: clip((r − τ_lo)/(τ_hi − τ_lo), 0, 1), Lipschitz in r.
    ``"hard"``: 1{r ≥ τ}, not continuous in r. ``"none"``: h ≡ 0 (no clip; with
    ``sgo_pullup="adaptive"`` E12 is then the exact gradient of the unnormalised skew reverse KL
    UJ; with the default ``"fixed"`` pull-up, of UJ with α_y = α_lo where q(y) < p(y))."""

    tau_lo: float = 0.5
    """Quality at which the soft gate starts to close the push-down (h = 0 below it)."""

    tau_hi: float = 1.0
    """Quality at which the soft gate is fully closed (h = 1 at and above it)."""

    tau: float = 0.75
    """Threshold of the hard gate; the default is the midpoint of the default soft ramp, so
    both gates agree on binary quality signals."""

    sgo_pullup: PullUp = "fixed"
    """E9 variant. ``"fixed"``: the pull-up part min(c̃(Δ; α_lo), 0) does not depend on quality,
    only the push-down is modulated (spec default). ``"adaptive"``: ĉ = c̃(Δ; α_S(r)) −
    h(r)·max(c̃(Δ; α_S(r)), 0), so a larger α also weakens the pull-up."""

    schedule: Schedule = "linear"
    """Shape of the quality → skew maps of E10: ``"linear"`` in α, or ``"logit"`` (linear in
    logit α)."""

    alpha_lo: float = 0.1
    """Smallest skew α (strongest learning); α_T(1) = α_S(0) = alpha_lo."""

    alpha_hi: float = 0.9
    """Largest skew α (weakest learning); α_T(0) = α_S(1) = alpha_hi."""

    lambda_tgo: float = 1.0
    """Weight λ_T of the TGO term in E14."""

    lambda_sgo: float = 1.0
    """Weight λ_S of the SGO term in E14."""

    lambda_dense: float = 0.0
    """Weight λ_D of the optional dense (E15) term added to E14; needs full-vocabulary
    log-probs in the batch when positive."""

    is_clip_eps: float = 0.2
    """PPO clip range ε of the off-policy importance ratio in E13."""

    sgo_length_correction: LengthCorrection = "none"
    """Which objective E12/E13 follow under ``normalize="mean"`` (ignored under ``"sum"``).
    ``"none"``: ĉ(Δ̄, r) as in E9; the expected gradient is then exactly that of
    D_ĉ(q) = Σ_y p(y)∫_0^{Δ̄(y)} ĉ_y(s)e^{|y|s} ds, a length-weighted divergence (T1m).
    ``"uj"``: ĉ + (|y| − 1)·φ_ĉ(Δ̄), the exact gradient of the mean-mode unnormalised skew reverse
    KL UJ^mean = E_q[φ_ĉ(Δ̄)], φ(Δ̄; α) = log u + 1/u − 1 ≥ 0 (with the gate, φ_ĉ takes α_lo on
    the pull-up side and (1 − h)·φ(·; α_S) on the push-down side); the coefficient grows with
    |y|, so its variance does too. Requires ``mixture_grad="full"``."""

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        for name in ("tau_lo", "tau_hi", "tau", "alpha_lo", "alpha_hi", "lambda_tgo",
                     "lambda_sgo", "lambda_dense", "is_clip_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a float, got {type(value).__name__} {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if not 0.0 < self.alpha_lo <= self.alpha_hi < 1.0:
            raise ValueError(
                "alpha_lo must satisfy 0 < alpha_lo <= alpha_hi < 1; "
                f"got alpha_lo={self.alpha_lo}, alpha_hi={self.alpha_hi}"
            )
        if not 0.0 <= self.tau_lo < self.tau_hi <= 1.0:
            raise ValueError(
                f"tau_lo must satisfy 0 <= tau_lo < tau_hi <= 1; got tau_lo={self.tau_lo}, "
                f"tau_hi={self.tau_hi}"
            )
        if not 0.0 <= self.tau <= 1.0:
            raise ValueError(f"tau must lie in [0, 1], got {self.tau}")
        for name in ("lambda_tgo", "lambda_sgo", "lambda_dense"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.sgo_length_correction == "uj" and self.mixture_grad != "full":
            raise ValueError(
                "sgo_length_correction='uj' needs mixture_grad='full' (it corrects the centred c̃), "
                f"got mixture_grad={self.mixture_grad!r}"
            )
        if not 0.0 < self.is_clip_eps < 1.0:
            raise ValueError(f"is_clip_eps must lie in (0, 1), got {self.is_clip_eps}")

    def replace(self, **changes: object) -> "ASKDOptions":
        """A copy with ``changes`` applied (validated again).

        >>> ASKDOptions().replace(gate="hard").gate
        'hard'
        """
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


#: The allowed values of each choice option, read from its ``Literal`` type.
_CHOICES: dict[str, tuple[str, ...]] = {
    f.name: get_args(f.type) for f in dataclasses.fields(ASKDOptions) if get_origin(f.type) is Literal
}


def resolve_options(options: object) -> ASKDOptions:
    """``None`` → the defaults; an :class:`ASKDOptions` passes through; anything else raises."""
    if options is None:
        return ASKDOptions()
    if not isinstance(options, ASKDOptions):
        raise TypeError(f"options must be an ASKDOptions or None, got {type(options).__name__}")
    return options
