"""Golden vectors: float64 input/output cases for every spec §10 function (``askd vectors``).

The cases are built here (deterministic inputs, fixed seeds, no NumPy RNG stream involved:
random numbers come from :class:`random.Random`, whose ``random()`` sequence Python keeps
stable across versions) and evaluated with the torch implementation in float64 through
:mod:`askd_ref.porting.conformance_torch`: values by calling the functions, gradients by autograd.
The file format is ``vectors/SCHEMA.md``; :mod:`askd_ref.porting.conformance` reads it with NumPy only.

Every case carries ``tags`` (``ordinary``, ``endpoint``, ``options``, ``masked``, ``neg_inf``,
``large_delta``, ``off_policy``, ``accumulation``, ``broadcast``, ``kink``) and a ``note`` when it
exists to catch a specific porting mistake (``docs/porting.md`` lists them).

Example:
    >>> specs = build_cases()
    >>> len({s.name for s in specs}) == len(specs)  # case names are unique
    True
    >>> case = evaluate(next(s for s in specs if s.name == "tgo_coefficient/scalar/delta=0,alpha=0.1"))
    >>> case["expected"]["value"]
    {'type': 'array', 'dtype': 'float64', 'shape': [], 'data': [0.9]}
"""

import dataclasses
import importlib
import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from askd_ref.io import atomic_write_text
from askd_ref.options import ASKDOptions
from askd_ref.porting import conformance_torch as ct
from askd_ref.porting.conformance import (
    FORMAT,
    FUNCTIONS,
    SCHEMA_VERSION,
    SCHEMA_VERSIONS,
    BatchSpec,
    OptionsSpec,
    encode,
)
from askd_ref.porting.tolerances import Tolerance, tolerance

__all__ = [
    "CaseSpec",
    "build_cases",
    "diff_vectors",
    "dumps",
    "evaluate",
    "generate",
    "write_vectors",
]

_INF = math.inf


@dataclasses.dataclass(frozen=True)
class CaseSpec:
    """One golden case before evaluation: which function, its arguments, which gradients."""

    name: str
    function: str
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    wrt: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    note: str = ""
    #: schema v2: gradients recorded as one-sided derivatives, ``{input: "right"}`` (at a kink)
    one_sided: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: schema v2: the porting mistakes this case is verified to catch (``tests/test_conformance.py``)
    catches: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Deterministic inputs
# --------------------------------------------------------------------------------------------


def _uniform(rng: random.Random, shape: Sequence[int], lo: float, hi: float) -> np.ndarray:
    n = int(np.prod(shape)) if shape else 1
    return np.array([lo + (hi - lo) * rng.random() for _ in range(n)], dtype=np.float64).reshape(shape)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    m = np.max(z, axis=-1, keepdims=True)
    with np.errstate(divide="ignore"):
        lse = m + np.log(np.sum(np.exp(z - m), axis=-1, keepdims=True))
    out: np.ndarray = z - lse
    return out


def _logits(seed: int, shape: Sequence[int], scale: float = 3.0) -> np.ndarray:
    return _uniform(random.Random(seed), shape, -scale, scale)


def _options(**changes: Any) -> OptionsSpec:
    opts = ASKDOptions(**changes)
    return OptionsSpec({f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)})


def _fmt(x: float) -> str:
    return repr(float(x)) if x not in (0.0, 1.0) else str(int(x))


# --------------------------------------------------------------------------------------------
# E1–E4: divergences
# --------------------------------------------------------------------------------------------


def _divergence_inputs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named (teacher_logp, student_logp) pairs."""
    t = _log_softmax(_logits(101, (3, 5)))
    s = _log_softmax(_logits(102, (3, 5)))
    tb = _log_softmax(_logits(103, (2, 2, 4)))
    sb = _log_softmax(_logits(104, (2, 2, 4)))
    same = _log_softmax(_logits(105, (2, 5)))
    peak_t = _log_softmax(np.array([[30.0, 0.0, -5.0, 2.0, -30.0], [0.0, 0.0, 0.0, 0.0, 40.0]]))
    peak_s = _log_softmax(np.array([[0.0, 2.0, -5.0, 28.0, -30.0], [35.0, 0.0, 0.0, 0.0, 0.0]]))
    # padded vocabulary ids (both -inf) plus one per-row hole shared by both models
    zt = _logits(106, (3, 6))
    zs = _logits(107, (3, 6))
    for z in (zt, zs):
        z[:, 4:] = -_INF
        z[0, 1] = -_INF
        z[2, 0] = -_INF
    mt, ms = _log_softmax(zt), _log_softmax(zs)
    # zero mass in one model only
    zt0 = _logits(108, (2, 5))
    zt0[0, 2] = -_INF
    zt0[1, [0, 4]] = -_INF
    zs0 = _logits(109, (2, 5))
    zs0[0, 1] = -_INF
    zs0[1, 3] = -_INF
    return {
        "ordinary": (t, s),
        "batched": (tb, sb),
        "identical": (same, same.copy()),
        "peaked": (peak_t, peak_s),
        "masked_vocab": (mt, ms),
        "teacher_zero_mass": (_log_softmax(zt0), s[:2].copy()),
        "student_zero_mass": (t[:2].copy(), _log_softmax(zs0)),
    }


_DIV_NOTES = {
    "identical": "p = q: true divergences are exactly 0 (a cross-entropy form returns the entropy)",
    "masked_vocab": "-inf on padded vocabulary ids in both models: 0·log 0 = 0, no NaN values or gradients",
    "teacher_zero_mass": "teacher -inf where the student has mass",
    "student_zero_mass": "student -inf where the teacher has mass",
    "peaked": "logit gaps of 30-40: the mixture must be formed in log space",
}


def _div_tags(key: str) -> tuple[str, ...]:
    if key in ("masked_vocab", "teacher_zero_mass", "student_zero_mass"):
        return ("masked", "neg_inf")
    return ("ordinary",) if key in ("ordinary", "batched") else (key,)


def _divergence_cases() -> list[CaseSpec]:
    inputs = _divergence_inputs()
    out: list[CaseSpec] = []
    for fn in ("forward_kl", "reverse_kl"):
        for key, (t, s) in inputs.items():
            out.append(
                CaseSpec(
                    f"{fn}/{key}",
                    fn,
                    (),
                    {"teacher_logp": t, "student_logp": s},
                    ("student_logits",),
                    _div_tags(key),
                    _DIV_NOTES.get(key, ""),
                )
            )
    alphas_full = (0.0, 1e-6, 0.1, 0.5, 0.9, 0.999999, 1.0)
    for fn in ("skew_forward_kl", "skew_reverse_kl"):
        for key, (t, s) in inputs.items():
            if key == "ordinary":
                alphas: tuple[float, ...] = alphas_full
            elif key in ("masked_vocab", "teacher_zero_mass", "student_zero_mass"):
                alphas = (0.0, 0.1)
            else:
                alphas = (0.1,)
            for alpha in alphas:
                for mg in ("full", "stop"):
                    tags = _div_tags(key) + (("endpoint",) if alpha in (0.0, 1e-6, 0.999999, 1.0) else ())
                    note = _DIV_NOTES.get(key, "")
                    if key == "ordinary" and alpha == 0.1:
                        note = "α weights the distribution in the first KL argument: " + (
                            "KL(p ‖ αp + (1−α)q)" if fn == "skew_forward_kl" else "KL(q ‖ (1−α)p + αq)"
                        )
                    out.append(
                        CaseSpec(
                            f"{fn}/{key}/alpha={_fmt(alpha)}/{mg}",
                            fn,
                            (),
                            {"teacher_logp": t, "student_logp": s, "alpha": alpha, "mixture_grad": mg},
                            ("student_logits",),
                            tags,
                            note,
                        )
                    )
        t, s = inputs["ordinary"]
        for mg in ("full", "stop"):
            out.append(
                CaseSpec(
                    f"{fn}/ordinary/alpha=per_position/{mg}",
                    fn,
                    (),
                    {
                        "teacher_logp": t,
                        "student_logp": s,
                        "alpha": np.array([0.05, 0.3, 0.8]),
                        "mixture_grad": mg,
                    },
                    ("student_logits",),
                    ("ordinary", "broadcast"),
                )
            )
        tb, sb = inputs["batched"]
        out.append(
            CaseSpec(
                f"{fn}/batched/alpha=broadcast_column",
                fn,
                (),
                {"teacher_logp": tb, "student_logp": sb, "alpha": np.array([[0.2], [0.7]])},
                ("student_logits",),
                ("broadcast",),
            )
        )
    for key, (t, s) in inputs.items():
        betas: tuple[float, ...] = (0.0, 1e-6, 0.1, 0.5, 0.9, 0.999999, 1.0) if key == "ordinary" else (0.5,)
        if key == "masked_vocab":
            betas = (0.0, 0.5, 1.0)
        for beta in betas:
            tags = _div_tags(key) + (("endpoint",) if beta in (0.0, 1e-6, 0.999999, 1.0) else ())
            note = _DIV_NOTES.get(key, "")
            if beta in (0.0, 1.0):
                note = "JSD_β is continuous in β and exactly 0 at β ∈ {0, 1} (TRL special-cases them to KL)"
            if key == "ordinary" and beta == 0.1:
                note = "M = βp + (1−β)q: β weights the teacher (TRL PR #3043 had it swapped)"
            out.append(
                CaseSpec(
                    f"generalized_jsd/{key}/beta={_fmt(beta)}",
                    "generalized_jsd",
                    (),
                    {"teacher_logp": t, "student_logp": s, "beta": beta},
                    ("student_logits",),
                    tags,
                    note,
                )
            )
    t, s = inputs["ordinary"]
    out.append(
        CaseSpec(
            "generalized_jsd/ordinary/beta=per_position",
            "generalized_jsd",
            (),
            {"teacher_logp": t, "student_logp": s, "beta": np.array([0.1, 0.5, 0.9])},
            ("student_logits",),
            ("broadcast",),
        )
    )
    return out


# --------------------------------------------------------------------------------------------
# E5–E10: coefficients, gates, schedules
# --------------------------------------------------------------------------------------------

_DELTAS = (-700.0, -50.0, -5.0, -1.0, -0.1, 0.0, 0.1, 1.0, 5.0, 50.0, 700.0)
_ALPHAS = (0.1, 0.3, 0.5, 0.9)
#: α → 0 and α → 1. ∂w/∂α = −w(1 − w)/(α(1 − α)) is ill-conditioned there where w ≈ 1: 1 − w
#: carries an absolute rounding error of about 1e-16 that 1/α amplifies past 1e-10 relative
#: (torch's sigmoid backward is off by 6e-9 relative at α = 1e-6, Δ = 5), so these points
#: record the value and ∂/∂Δ only.
_ALPHAS_NEAR_ENDPOINTS = (1e-6, 0.999999)
_QUALITIES = (0.0, 0.25, 0.5, 0.6, 0.75, 0.9, 1.0)


def _grid(xs: Sequence[float], ys: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(len(ys), len(xs)) arrays: x varies along columns, y along rows."""
    x, y = np.meshgrid(np.array(xs, dtype=np.float64), np.array(ys, dtype=np.float64))
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def _coefficient_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    d, a = _grid(_DELTAS, _ALPHAS)
    d_near, a_near = _grid(_DELTAS, _ALPHAS_NEAR_ENDPOINTS)
    d01, a01 = _grid(_DELTAS, (0.0, 1.0))
    variants: list[tuple[str, str, dict[str, Any]]] = [("tgo_coefficient", "", {})]
    variants += [("sgo_coefficient", f"/{mg}", {"mixture_grad": mg}) for mg in ("full", "stop")]
    for fn, suffix, kw in variants:
        note = ""
        if fn == "sgo_coefficient":
            note = (
                "centred c̃ = log u − α(u − 1): 0 at Δ = 0 (the uncentred log u + 1 − αu is 1 − α there)"
                if kw["mixture_grad"] == "full"
                else "stop mode: c_det = log u (E7), no −α(u − 1) term"
            )
        else:
            note = "w = σ(Δ − logit α): w(0) = 1 − α, the weight of the student in SKL's mixture"
        out.append(
            CaseSpec(
                f"{fn}/grid{suffix}", fn, (d, a), kw, ("alpha", "delta"), ("ordinary", "large_delta"), note
            )
        )
        out.append(
            CaseSpec(
                f"{fn}/alpha_near_0_1{suffix}",
                fn,
                (d_near, a_near),
                kw,
                ("delta",),
                ("endpoint", "large_delta"),
                "α = 1e-6 and 1 − 1e-6 (α → 0 and α → 1)",
            )
        )
        out.append(
            CaseSpec(
                f"{fn}/alpha_exact_0_1{suffix}",
                fn,
                (d01, a01),
                kw,
                ("delta",),
                ("endpoint",),
                "α ∈ {0, 1} exactly: α = 0 is the unskewed limit, α = 1 gives 0",
            )
        )
        out.append(CaseSpec(f"{fn}/scalar/delta=0,alpha=0.1{suffix}", fn, (0.0, 0.1), kw, (), ("broadcast",)))
        out.append(
            CaseSpec(f"{fn}/scalar/delta=2.5,alpha=0.3{suffix}", fn, (2.5, 0.3), kw, (), ("broadcast",))
        )
        out.append(
            CaseSpec(
                f"{fn}/broadcast/alpha_float{suffix}",
                fn,
                (np.array(_DELTAS), 0.3),
                kw,
                (),
                ("broadcast", "large_delta"),
            )
        )
    # E9 over the option combinations (§9). Δ = 0 is a kink (left and right derivatives
    # differ), so gradient grids leave it out and a value-only case keeps it.
    d_nz, r = _grid([x for x in _DELTAS if x != 0.0], _QUALITIES)
    d_all, r_all = _grid(_DELTAS, _QUALITIES)
    combos = [
        (mg, gate, pullup, sched)
        for mg in ("full", "stop")
        for gate in ("soft", "hard", "none")
        for pullup in ("fixed", "adaptive")
        for sched in ("linear", "logit")
    ]
    for mg, gate, pullup, sched in combos:
        opts = _options(mixture_grad=mg, gate=gate, sgo_pullup=pullup, schedule=sched)
        label = f"{mg},{gate},{pullup},{sched}"
        note = ""
        if (mg, gate, pullup, sched) == ("full", "soft", "fixed", "linear"):
            note = "ASKD default: pull-up min(c̃(Δ; α_lo), 0) fixed, push-down (1 − h)·max(c̃(Δ; α_S(r)), 0)"
        out.append(
            CaseSpec(
                f"clipped_sgo_coefficient/grid/{label}",
                "clipped_sgo_coefficient",
                (d_nz, r),
                {"options": opts},
                ("delta",),
                ("options", "large_delta"),
                note,
            )
        )
        if mg == "full" and sched == "linear":
            out.append(
                CaseSpec(
                    f"clipped_sgo_coefficient/with_delta_0/{label}",
                    "clipped_sgo_coefficient",
                    (d_all, r_all),
                    {"options": opts},
                    (),
                    ("options", "kink"),
                )
            )
    extras = {
        "alpha_const_0.1": _options(alpha_lo=0.1, alpha_hi=0.1),
        "alpha_0.05_0.95": _options(alpha_lo=0.05, alpha_hi=0.95),
        "tau_0.2_0.8": _options(tau_lo=0.2, tau_hi=0.8),
        "hard_tau_0.3": _options(gate="hard", tau=0.3),
        "hard_tau_1": _options(gate="hard", tau=1.0),
    }
    for label, opts in extras.items():
        out.append(
            CaseSpec(
                f"clipped_sgo_coefficient/grid/{label}",
                "clipped_sgo_coefficient",
                (d_nz, r),
                {"options": opts},
                ("delta",),
                ("options",),
            )
        )
    out.append(
        CaseSpec(
            "clipped_sgo_coefficient/grid/options=None",
            "clipped_sgo_coefficient",
            (d_nz, r),
            {"options": None},
            ("delta",),
            ("ordinary",),
            "options=None means the §9 defaults",
        )
    )
    out.append(
        CaseSpec(
            "clipped_sgo_coefficient/scalar/delta=1,r=0.6",
            "clipped_sgo_coefficient",
            (1.0, 0.6),
            {},
            (),
            ("broadcast",),
        )
    )
    out.append(
        CaseSpec(
            "clipped_sgo_coefficient/broadcast/quality_float",
            "clipped_sgo_coefficient",
            (np.array(_DELTAS), 0.8),
            {},
            (),
            ("broadcast",),
        )
    )

    # E8 gates
    q = np.array((0.0, 0.1, 0.2, 0.5, 0.6, 0.75, 0.8, 0.99, 1.0))
    out.append(
        CaseSpec(
            "soft_gate/default_taus",
            "soft_gate",
            (q,),
            {},
            (),
            ("ordinary", "endpoint"),
            "h(τ_lo) = 0, h(τ_hi) = 1, linear in between",
        )
    )
    out.append(
        CaseSpec(
            "soft_gate/tau_0.2_0.8", "soft_gate", (q,), {"tau_lo": 0.2, "tau_hi": 0.8}, (), ("endpoint",)
        )
    )
    out.append(
        CaseSpec("soft_gate/tau_0_1", "soft_gate", (q,), {"tau_lo": 0.0, "tau_hi": 1.0}, (), ("endpoint",))
    )
    out.append(CaseSpec("soft_gate/scalar", "soft_gate", (0.7,), {}, (), ("broadcast",)))
    for tau in (0.75, 0.0, 1.0):
        out.append(
            CaseSpec(
                f"hard_gate/tau={_fmt(tau)}",
                "hard_gate",
                (q, tau),
                {},
                (),
                ("endpoint",),
                "h(r) = 1{r ≥ τ}: r = τ gives 1",
            )
        )
    gate_opts = {
        "soft": _options(gate="soft"),
        "hard": _options(gate="hard"),
        "none": _options(gate="none"),
        "soft_tau_0.2_0.8": _options(gate="soft", tau_lo=0.2, tau_hi=0.8),
        "hard_tau_0.5": _options(gate="hard", tau=0.5),
    }
    for label, opts in gate_opts.items():
        out.append(
            CaseSpec(f"quality_gate/{label}", "quality_gate", (q,), {"options": opts}, (), ("options",))
        )
    out.append(
        CaseSpec("quality_gate/options=None", "quality_gate", (q,), {"options": None}, (), ("ordinary",))
    )

    # E10 schedules
    sched_opts = {
        "linear": _options(schedule="linear"),
        "logit": _options(schedule="logit"),
        "linear_0.05_0.95": _options(alpha_lo=0.05, alpha_hi=0.95),
        "logit_0.05_0.95": _options(schedule="logit", alpha_lo=0.05, alpha_hi=0.95),
        "logit_const_0.1": _options(schedule="logit", alpha_lo=0.1, alpha_hi=0.1),
    }
    for fn in ("tgo_alpha", "sgo_alpha"):
        note = (
            "α_T decreases in r: α_T(0) = α_hi, α_T(1) = α_lo"
            if fn == "tgo_alpha"
            else "α_S increases in r: α_S(0) = α_lo, α_S(1) = α_hi"
        )
        for label, opts in sched_opts.items():
            out.append(
                CaseSpec(
                    f"{fn}/{label}",
                    fn,
                    (q,),
                    {"options": opts},
                    (),
                    ("options",),
                    note if label == "linear" else "",
                )
            )
        out.append(CaseSpec(f"{fn}/options=None", fn, (q,), {"options": None}, (), ("ordinary",)))
        out.append(CaseSpec(f"{fn}/scalar", fn, (0.3,), {}, (), ("broadcast",)))
    return out


# --------------------------------------------------------------------------------------------
# §1 and E11–E13: token batches
# --------------------------------------------------------------------------------------------

_MASK = np.array(
    [
        [True, True, True, True, True],
        [False, True, True, False, False],  # prompt position first, padding after
        [True, True, True, True, False],
        [False, False, False, False, True],  # a single response token
    ]
)


def _token_batch(
    seed: int, mask: np.ndarray = _MASK, garbage: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(student_token_logp, teacher_token_logp) in [−4, −0.01]; masked-out entries = ``garbage``."""
    rng = random.Random(seed)
    s = _uniform(rng, mask.shape, -4.0, -0.01)
    t = _uniform(rng, mask.shape, -4.0, -0.01)
    if garbage is not None:
        s = np.where(mask, s, garbage)
        t = np.where(mask, t, garbage)
    return s, t


def _extreme_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose summed Δ is ±700 (and ±140 per token)."""
    mask = np.ones((2, 5), dtype=bool)
    s = np.array([[-0.01] * 5, [-140.0] * 5])
    t = np.array([[-140.0] * 5, [-0.01] * 5])
    return s, t, mask


def _sequence_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    s, t = _token_batch(201, garbage=-3.0)
    for norm in ("sum", "mean"):
        note = (
            (
                "normalize='mean' divides Δ by the row's own token count |y| = Σ_t mask, not by the padded "
                "length or the batch token count"
            )
            if norm == "mean"
            else "Δ = Σ_t (ℓq_t − ℓp_t) on the mask"
        )
        out.append(
            CaseSpec(
                f"sequence_log_ratio/ordinary/{norm}",
                "sequence_log_ratio",
                (s, t, _MASK),
                {"normalize": norm},
                ("student_token_logp",),
                ("ordinary", "masked"),
                note,
            )
        )
    s2, t2 = _token_batch(202)
    s2 = np.where(_MASK, s2, -_INF)
    t2 = np.where(_MASK, t2, 5.0)
    for norm in ("sum", "mean"):
        out.append(
            CaseSpec(
                f"sequence_log_ratio/garbage_outside_mask/{norm}",
                "sequence_log_ratio",
                (s2, t2, _MASK),
                {"normalize": norm},
                ("student_token_logp",),
                ("masked", "neg_inf"),
                "values outside the mask (-inf, positive junk) are ignored and get zero gradient",
            )
        )
    se, te, me = _extreme_batch()
    out.append(
        CaseSpec(
            "sequence_log_ratio/large_delta/sum",
            "sequence_log_ratio",
            (se, te, me),
            {"normalize": "sum"},
            ("student_token_logp",),
            ("large_delta",),
        )
    )
    return out


def _quality(n: int, values: Sequence[float] = (0.0, 0.5, 0.8, 1.0)) -> np.ndarray:
    return np.array([values[i % len(values)] for i in range(n)], dtype=np.float64)


def _tgo_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    s, t = _token_batch(301, garbage=0.0)
    r = _quality(4)
    base = {"student_token_logp": s, "teacher_token_logp": t, "mask": _MASK, "quality": r}
    variants: dict[str, tuple[Any, tuple[str, ...], str]] = {
        "options=None": (
            None,
            ("ordinary",),
            "sign: the loss is −sg(w)·S, so its gradient on ℓq_t is −w/|y| < 0",
        ),
        "sum": (
            _options(normalize="sum"),
            ("options",),
            "normalize='sum': Δ and S are sums over tokens (exact sequence level)",
        ),
        "mean": (
            _options(normalize="mean"),
            ("options",),
            "normalize='mean': Δ̄ and S̄ are token means; each sample's gradient is spread over |y|",
        ),
        "logit": (_options(schedule="logit"), ("options",), ""),
        "sum,logit": (_options(normalize="sum", schedule="logit"), ("options",), ""),
        "alpha_0.05_0.95": (_options(alpha_lo=0.05, alpha_hi=0.95), ("options",), ""),
        "alpha_const_0.1": (_options(alpha_lo=0.1, alpha_hi=0.1), ("options",), ""),
    }
    for label, (opts, tags, note) in variants.items():
        out.append(
            CaseSpec(
                f"tgo_loss/{label}",
                "tgo_loss",
                (),
                {**base, "options": opts},
                ("student_token_logp",),
                tags,
                note,
            )
        )
    out.append(
        CaseSpec(
            "tgo_loss/quality_float",
            "tgo_loss",
            (),
            {**base, "quality": 0.3},
            ("student_token_logp",),
            ("broadcast",),
        )
    )
    out.append(
        CaseSpec(
            "tgo_loss/num_samples=10",
            "tgo_loss",
            (),
            {**base, "num_samples": 10},
            ("student_token_logp",),
            ("accumulation",),
            "gradient accumulation: divide the sum over samples by the global count num_samples",
        )
    )
    se, te, me = _extreme_batch()
    out.append(
        CaseSpec(
            "tgo_loss/large_delta/sum",
            "tgo_loss",
            (),
            {
                "student_token_logp": se,
                "teacher_token_logp": te,
                "mask": me,
                "quality": np.array([0.2, 0.9]),
                "options": _options(normalize="sum"),
            },
            ("student_token_logp",),
            ("large_delta",),
        )
    )
    return out


def _behaviour(s: np.ndarray, mask: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """log μ(y) such that ρ = exp(Σ_t ℓq_t − log μ(y)) equals ``ratios``."""
    out: np.ndarray = np.where(mask, s, 0.0).sum(-1) - np.log(np.array(ratios, dtype=np.float64))
    return out


def _sgo_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    s, t = _token_batch(401, garbage=0.0)
    # make sample 0 strongly over-confident (Δ̄ > 0) and sample 2 under-confident (Δ̄ < 0)
    s[0] = np.minimum(s[0] + 1.5, -0.01)
    t[2] = np.minimum(t[2] + 1.5, -0.01)
    r = _quality(4, (0.2, 0.9, 0.6, 1.0))
    base = {"student_token_logp": s, "teacher_token_logp": t, "mask": _MASK, "quality": r}
    for norm in ("mean", "sum"):
        for mg in ("full", "stop"):
            for gate in ("soft", "hard", "none"):
                for pullup in ("fixed", "adaptive"):
                    for sched in ("linear", "logit"):
                        opts = _options(
                            normalize=norm, mixture_grad=mg, gate=gate, sgo_pullup=pullup, schedule=sched
                        )
                        note = ""
                        if (norm, mg, gate, pullup, sched) == ("mean", "full", "soft", "fixed", "linear"):
                            note = (
                                "sign: the loss is +sg(ĉ)·S; a low-quality over-confident SGO (ĉ > 0) "
                                "gets a positive gradient on ℓq_t (pushed down)"
                            )
                        out.append(
                            CaseSpec(
                                f"sgo_loss/on_policy/{norm},{mg},{gate},{pullup},{sched}",
                                "sgo_loss",
                                (),
                                {**base, "options": opts},
                                ("student_token_logp",),
                                ("options",),
                                note,
                            )
                        )
    out.append(
        CaseSpec(
            "sgo_loss/on_policy/options=None",
            "sgo_loss",
            (),
            {**base, "options": None},
            ("student_token_logp",),
            ("ordinary",),
        )
    )
    out.append(
        CaseSpec(
            "sgo_loss/on_policy/quality_float",
            "sgo_loss",
            (),
            {**base, "quality": 0.1},
            ("student_token_logp",),
            ("broadcast",),
        )
    )
    out.append(
        CaseSpec(
            "sgo_loss/on_policy/num_samples=7",
            "sgo_loss",
            (),
            {**base, "num_samples": 7},
            ("student_token_logp",),
            ("accumulation",),
        )
    )
    # Off-policy (E13): ratios inside and outside [1 − ε, 1 + ε], ĉ of both signs.
    mu = _behaviour(s, _MASK, (1.5, 0.5, 1.3, 0.7))
    for norm in ("mean", "sum"):
        for mg in ("full", "stop"):
            for gate in ("soft", "none"):
                opts = _options(normalize=norm, mixture_grad=mg, gate=gate)
                note = ""
                if (norm, mg, gate) == ("mean", "full", "soft"):
                    note = (
                        "off-policy: ρ = exp(Σ_t ℓq_t − log μ(y)) over the whole sequence, PPO "
                        "max(ρĉ, clip(ρ, 1−ε, 1+ε)ĉ), divided by |y| under normalize='mean'"
                    )
                out.append(
                    CaseSpec(
                        f"sgo_loss/off_policy/{norm},{mg},{gate}",
                        "sgo_loss",
                        (),
                        {**base, "behaviour_logp": mu, "options": opts},
                        ("student_token_logp",),
                        ("off_policy", "options"),
                        note,
                    )
                )
    out.append(
        CaseSpec(
            "sgo_loss/off_policy/eps=0.05",
            "sgo_loss",
            (),
            {**base, "behaviour_logp": mu, "options": _options(is_clip_eps=0.05)},
            ("student_token_logp",),
            ("off_policy", "options"),
        )
    )
    mu_on = _behaviour(s, _MASK, (1.0, 1.0, 1.0, 1.0))
    out.append(
        CaseSpec(
            "sgo_loss/off_policy/behaviour_equals_student",
            "sgo_loss",
            (),
            {**base, "behaviour_logp": mu_on, "options": None},
            ("student_token_logp",),
            ("off_policy",),
            "μ = q_θ (ρ = 1): the gradient equals the on-policy one",
        )
    )
    out.append(
        CaseSpec(
            "sgo_loss/off_policy/num_samples=9",
            "sgo_loss",
            (),
            {**base, "behaviour_logp": mu, "num_samples": 9},
            ("student_token_logp",),
            ("off_policy", "accumulation"),
        )
    )
    se, te, me = _extreme_batch()
    out.append(
        CaseSpec(
            "sgo_loss/large_delta/sum",
            "sgo_loss",
            (),
            {
                "student_token_logp": se,
                "teacher_token_logp": te,
                "mask": me,
                "quality": np.array([0.2, 0.9]),
                "options": _options(normalize="sum"),
            },
            ("student_token_logp",),
            ("large_delta",),
        )
    )
    return out


# --------------------------------------------------------------------------------------------
# E14, E15 and the §6 baselines: DistillBatch cases
# --------------------------------------------------------------------------------------------


def _full_batch(
    seed: int,
    is_tgo: Sequence[bool],
    mask: np.ndarray,
    vocab: int = 5,
    *,
    quality: Sequence[float] | None = None,
    group: Sequence[int] | None = None,
    padded_vocab: int = 0,
    behaviour: Sequence[float] | None = None,
) -> BatchSpec:
    """A DistillBatch with full-vocabulary log-probs and the gathered token log-probs."""
    rng = random.Random(seed)
    b, n = mask.shape
    zt = _uniform(rng, (b, n, vocab), -3.0, 3.0)
    zs = _uniform(rng, (b, n, vocab), -3.0, 3.0)
    if padded_vocab:
        zt[..., vocab - padded_vocab :] = -_INF
        zs[..., vocab - padded_vocab :] = -_INF
    ids = np.array([[int(rng.random() * (vocab - padded_vocab)) for _ in range(n)] for _ in range(b)])
    tl, sl = _log_softmax(zt), _log_softmax(zs)
    s_tok = np.take_along_axis(sl, ids[..., None], -1)[..., 0]
    t_tok = np.take_along_axis(tl, ids[..., None], -1)[..., 0]
    fields: dict[str, np.ndarray] = {
        "mask": mask.copy(),
        "is_tgo": np.array(is_tgo, dtype=bool),
        "student_token_logp": s_tok,
        "teacher_token_logp": t_tok,
        "student_logp": sl,
        "teacher_logp": tl,
        "quality": _quality(b, quality if quality is not None else (0.0, 0.5, 0.8, 1.0, 0.3, 0.65)),
    }
    if group is not None:
        fields["group"] = np.array(group, dtype=np.int64)
    if behaviour is not None:
        fields["behaviour_logp"] = _behaviour(s_tok, mask, behaviour)
    return BatchSpec(fields)


def _token_only(batch: BatchSpec) -> BatchSpec:
    return BatchSpec({k: v for k, v in batch.fields.items() if k not in ("student_logp", "teacher_logp")})


_MASK6 = np.array(
    [
        [True, True, True, True],
        [False, True, True, False],
        [True, True, True, False],
        [True, True, True, True],
        [False, False, True, True],
        [True, False, False, False],
    ]
)
_TGO6 = (True, True, True, False, False, False)


def _askd_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    full = _full_batch(501, _TGO6, _MASK6)
    tok = _token_only(full)
    wrt = ("student_token_logp",)
    variants: dict[str, tuple[OptionsSpec | None, tuple[str, ...], str]] = {
        "options=None": (None, ("ordinary",), ""),
        "sum": (_options(normalize="sum"), ("options",), ""),
        "stop": (_options(mixture_grad="stop"), ("options",), ""),
        "hard_gate": (_options(gate="hard"), ("options",), ""),
        "no_gate": (_options(gate="none"), ("options",), ""),
        "adaptive_pullup": (_options(sgo_pullup="adaptive"), ("options",), ""),
        "logit": (_options(schedule="logit"), ("options",), ""),
        "sum,stop,hard,adaptive,logit": (
            _options(
                normalize="sum", mixture_grad="stop", gate="hard", sgo_pullup="adaptive", schedule="logit"
            ),
            ("options",),
            "",
        ),
        "lambdas_0.5_2": (
            _options(lambda_tgo=0.5, lambda_sgo=2.0),
            ("options",),
            "L = λ_T·mean_TGO ℓ_T + λ_S·mean_SGO ℓ_S: each group is averaged over its own count",
        ),
        "alpha_const_0.1": (_options(alpha_lo=0.1, alpha_hi=0.1), ("options",), ""),
    }
    for label, (opts, tags, note) in variants.items():
        out.append(CaseSpec(f"askd_loss/{label}", "askd_loss", (tok,), {"options": opts}, wrt, tags, note))
    out.append(
        CaseSpec(
            "askd_loss/accumulation/num_tgo=8,num_sgo=5",
            "askd_loss",
            (tok,),
            {"num_tgo": 8, "num_sgo": 5},
            wrt,
            ("accumulation",),
            "global counts: the TGO sum is divided by num_tgo, the SGO sum by num_sgo",
        )
    )
    # gradient accumulation: two micro-batches with global counts sum to the full-batch loss
    rows_a, rows_b = [0, 3, 4], [1, 2, 5]
    for label, rows in (("micro_a", rows_a), ("micro_b", rows_b)):
        part = BatchSpec({k: v[rows] for k, v in tok.fields.items()})
        out.append(
            CaseSpec(
                f"askd_loss/accumulation/{label}_of_6",
                "askd_loss",
                (part,),
                {"num_tgo": 3, "num_sgo": 3},
                wrt,
                ("accumulation",),
                "micro-batch losses with the global counts add up to askd_loss/options=None",
            )
        )
    off = _token_only(_full_batch(501, _TGO6, _MASK6, behaviour=(1.0, 1.0, 1.0, 1.4, 0.6, 0.95)))
    out.append(
        CaseSpec(
            "askd_loss/off_policy",
            "askd_loss",
            (off,),
            {},
            wrt,
            ("off_policy",),
            "behaviour_logp on SGO rows selects E13; TGO rows ignore it",
        )
    )
    only_t = BatchSpec({k: v[[0, 1, 2]] for k, v in tok.fields.items()})
    only_s = BatchSpec({k: v[[3, 4, 5]] for k, v in tok.fields.items()})
    out.append(CaseSpec("askd_loss/only_tgo", "askd_loss", (only_t,), {}, wrt, ("ordinary",)))
    out.append(CaseSpec("askd_loss/only_sgo", "askd_loss", (only_s,), {}, wrt, ("ordinary",)))
    out.append(
        CaseSpec(
            "askd_loss/lambda_dense=0.5",
            "askd_loss",
            (full,),
            {"options": _options(lambda_dense=0.5)},
            ("student_logits", "student_token_logp"),
            ("options",),
            "λ_D > 0 adds λ_D·dense_askd_loss (needs the full-vocabulary log-probs)",
        )
    )
    out.append(
        CaseSpec(
            "askd_loss/lambda_dense=0.5,accumulation",
            "askd_loss",
            (full,),
            {"options": _options(lambda_dense=0.5), "num_tgo": 4, "num_sgo": 6},
            ("student_logits", "student_token_logp"),
            ("options", "accumulation"),
        )
    )

    # E15 dense
    dwrt = ("student_logits",)
    dense_variants: dict[str, tuple[OptionsSpec | None, tuple[str, ...], str]] = {
        "options=None": (
            None,
            ("ordinary",),
            "per sample: mean over its tokens; then mean over samples of "
            "each group (not a mean over all tokens of the batch)",
        ),
        "stop": (
            _options(mixture_grad="stop"),
            ("options",),
            "mixture_grad applies to the SRKL (SGO) term only; SKL keeps the full gradient",
        ),
        "sum": (_options(normalize="sum"), ("options",), ""),
        "hard_gate": (_options(gate="hard"), ("options",), ""),
        "no_gate": (_options(gate="none"), ("options",), ""),
        "logit": (_options(schedule="logit"), ("options",), ""),
        "lambdas_0.5_2": (_options(lambda_tgo=0.5, lambda_sgo=2.0), ("options",), ""),
        "distillm2_equivalent": (
            _options(alpha_lo=0.1, alpha_hi=0.1, gate="none", mixture_grad="stop"),
            ("options",),
            "equals distillm2_loss on the same batch (spec §4)",
        ),
    }
    for label, (opts, tags, note) in dense_variants.items():
        out.append(
            CaseSpec(
                f"dense_askd_loss/{label}", "dense_askd_loss", (full,), {"options": opts}, dwrt, tags, note
            )
        )
    out.append(
        CaseSpec(
            "dense_askd_loss/accumulation/num_tgo=4,num_sgo=7",
            "dense_askd_loss",
            (full,),
            {"num_tgo": 4, "num_sgo": 7},
            dwrt,
            ("accumulation",),
        )
    )
    out.append(
        CaseSpec(
            "distillm2_loss/askd_batch",
            "distillm2_loss",
            (full,),
            {},
            dwrt,
            ("ordinary",),
            "same batch as dense_askd_loss/distillm2_equivalent: the two losses are equal",
        )
    )
    padded = _full_batch(502, _TGO6, _MASK6, vocab=6, padded_vocab=2)
    out.append(
        CaseSpec(
            "dense_askd_loss/padded_vocab",
            "dense_askd_loss",
            (padded,),
            {},
            dwrt,
            ("masked", "neg_inf"),
            "-inf on padded vocabulary ids of both models",
        )
    )
    return out


def _baseline_cases() -> list[CaseSpec]:
    out: list[CaseSpec] = []
    full = _full_batch(601, _TGO6, _MASK6, quality=(0.0, 0.5, 1.0, 1.0, 0.0, 0.7), group=(0, 9, 9, 0, 0, 1))
    padded = _full_batch(
        602,
        _TGO6,
        _MASK6,
        vocab=6,
        padded_vocab=2,
        quality=(0.0, 0.5, 1.0, 1.0, 0.0, 0.7),
        group=(0, 9, 9, 0, 0, 1),
    )
    notes = {
        "seqkd_loss": "token-mean NLL of TGOs, mean over TGOs",
        "kd_loss": "FKL KL(p‖q) on TGOs: teacher first",
        "rkl_loss": "RKL KL(q‖p) on SGOs: student first",
        "gkd_loss": "JSD_0.5 on all samples, divided by N_T + N_S",
        "distillm_loss": "SRKL_0.1, full mixture gradient, on all samples",
        "distillm2_loss": "SKL_0.1 on TGOs + SRKL_0.1 with the student in the mixture detached, on SGOs",
        "advantage_kd_loss": "FKL on TGOs − sg(A)·S̄ on SGOs, A normalised within each prompt group",
    }
    for fn in (
        "seqkd_loss",
        "kd_loss",
        "rkl_loss",
        "gkd_loss",
        "distillm_loss",
        "distillm2_loss",
        "advantage_kd_loss",
    ):
        wrt = FUNCTIONS[fn].grad_args
        batch = _token_only(full) if fn == "seqkd_loss" else full
        out.append(CaseSpec(f"{fn}/ordinary", fn, (batch,), {}, wrt, ("ordinary",), notes[fn]))
        out.append(
            CaseSpec(
                f"{fn}/accumulation/num_tgo=5,num_sgo=8",
                fn,
                (batch,),
                {"num_tgo": 5, "num_sgo": 8},
                wrt,
                ("accumulation",),
            )
        )
        if fn != "seqkd_loss":
            out.append(CaseSpec(f"{fn}/padded_vocab", fn, (padded,), {}, wrt, ("masked", "neg_inf")))
    return out


def _options_cases() -> list[CaseSpec]:
    return [
        CaseSpec(
            "ASKDOptions/defaults",
            "ASKDOptions",
            (),
            {},
            (),
            ("options",),
            "the §9 defaults: normalize='mean', mixture_grad='full', gate='soft', τ_lo=0.5, τ_hi=1, "
            "τ=0.75, sgo_pullup='fixed', schedule='linear', α_lo=0.1, α_hi=0.9, λ_T=λ_S=1, λ_D=0, ε=0.2",
        )
    ]


# --------------------------------------------------------------------------------------------
# Schema v2: the cases that catch what float64 forgives (underflow, overflow, the kink)
# --------------------------------------------------------------------------------------------

#: Mistakes (short names, ``docs/porting.md`` §2.10) and the v2 cases verified to catch them.
PROBABILITY_SPACE = "probability-space mixture m = αp + (1−α)q"
NAIVE_LOG_MIXTURE = "naive log(a + b·exp(d)) for a mixture or log u"
NAIVE_W = "naive exp-form w = (1−α)e^Δ/(α + (1−α)e^Δ)"
NAIVE_U = "naive exp-form u = 1/(α + (1−α)e^{−Δ})"
KL_RATIO_IN_PROBABILITIES = "KL as Σ p·log(p/q) on exponentiated log-probs"
KINK_TIE_SPLIT = "derivative at the kink Δ = 0 split between the branches (jnp.maximum/minimum)"
KINK_CLAMP_SUM = "derivative at the kink Δ = 0 through both branches (torch.clamp)"
KINK_LEFT = "left derivative at the kink Δ = 0"


def _underflow_inputs() -> tuple[np.ndarray, np.ndarray]:
    """(teacher_logp, student_logp), (2, 6): log-probs down to −2000.

    Columns where both models are below −745 (exp underflows to 0 in float64; a finite mask
    value such as −1e3 does this), a column where only the teacher is far below the student
    (−1000 against ≈ −2) and one where only the student is (−780 against ≈ −2).
    """
    zt = np.array([[2.0, 0.0, -800.0, -850.0, -1000.0, 1.0], [0.0, -1.0, -760.0, 3.0, -2000.0, 0.5]])
    zs = np.array([[0.0, 1.0, -820.0, -900.0, 1.0, -780.0], [0.5, -0.5, -900.0, 2.0, -1500.0, 0.0]])
    return _log_softmax(zt), _log_softmax(zs)


_HUGE_DELTAS = (-1e4, -1000.0, -745.0, -710.0, -1.0, 0.0, 1.0, 710.0, 745.0, 1000.0, 1e4)


def _huge_batch() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows whose summed Δ is ±999.95 (±199.99 per token): e^Δ overflows float64."""
    mask = np.ones((2, 5), dtype=bool)
    s = np.array([[-0.01] * 5, [-200.0] * 5])
    t = np.array([[-200.0] * 5, [-0.01] * 5])
    return s, t, mask


def _v2_cases() -> list[CaseSpec]:
    """The cases schema v2 adds to the v1 set (every one carries ``catches``)."""
    out: list[CaseSpec] = []
    t, s = _underflow_inputs()
    div_note = (
        "log-probs below −745: exp() underflows to 0, so m = αp + (1−α)q formed from probabilities "
        "is 0 where both models are tiny (0·log 0 with a finite log-prob gives NaN), and "
        "log(α + (1−α)e^{ℓq − ℓp}) overflows where ℓq − ℓp > 709; form log m with logaddexp"
    )
    wrt = ("student_logits",)
    tags = ("underflow",)
    for fn in ("forward_kl", "reverse_kl"):
        out.append(
            CaseSpec(
                f"{fn}/underflow",
                fn,
                (),
                {"teacher_logp": t, "student_logp": s},
                wrt,
                tags,
                "KL terms where one model's log-prob is −1000 and the other's ≈ −2: the value is large "
                "and finite (≈ q·1000); p·log(p/q) on probabilities gives inf or NaN",
                catches=(KL_RATIO_IN_PROBABILITIES,),
            )
        )
    for fn in ("skew_forward_kl", "skew_reverse_kl"):
        for alpha in (0.0, 0.1, 0.5):
            for mg in ("full", "stop"):
                out.append(
                    CaseSpec(
                        f"{fn}/underflow/alpha={_fmt(alpha)}/{mg}",
                        fn,
                        (),
                        {"teacher_logp": t, "student_logp": s, "alpha": alpha, "mixture_grad": mg},
                        wrt,
                        tags,
                        div_note,
                        catches=(PROBABILITY_SPACE, NAIVE_LOG_MIXTURE)
                        + ((KL_RATIO_IN_PROBABILITIES,) if alpha == 0.0 else ()),
                    )
                )
    for beta in (0.1, 0.5):
        out.append(
            CaseSpec(
                f"generalized_jsd/underflow/beta={_fmt(beta)}",
                "generalized_jsd",
                (),
                {"teacher_logp": t, "student_logp": s, "beta": beta},
                wrt,
                tags,
                div_note,
                catches=(PROBABILITY_SPACE,),
            )
        )
    d, a = _grid(_HUGE_DELTAS, (0.1, 0.5, 0.9))
    huge_note = (
        "|Δ| ≥ 710: e^{±Δ} overflows float64 (exp(709.8) is the largest finite), so the exp forms "
        "of w and u give inf/inf = NaN or log 0 = −inf; use w = σ(Δ − logit α) and "
        "log u = −logaddexp(log α, log1p(−α) − Δ)"
    )
    out.append(
        CaseSpec(
            "tgo_coefficient/huge_delta",
            "tgo_coefficient",
            (d, a),
            {},
            ("alpha", "delta"),
            ("large_delta",),
            huge_note,
            catches=(NAIVE_W,),
        )
    )
    for mg in ("full", "stop"):
        out.append(
            CaseSpec(
                f"sgo_coefficient/huge_delta/{mg}",
                "sgo_coefficient",
                (d, a),
                {"mixture_grad": mg},
                ("alpha", "delta"),
                ("large_delta",),
                huge_note,
                catches=(NAIVE_U, NAIVE_LOG_MIXTURE),
            )
        )
    d_nz, r = _grid([x for x in _HUGE_DELTAS if x != 0.0], (0.0, 0.6, 1.0))
    out.append(
        CaseSpec(
            "clipped_sgo_coefficient/huge_delta",
            "clipped_sgo_coefficient",
            (d_nz, r),
            {"options": None},
            ("delta",),
            ("large_delta",),
            huge_note,
            catches=(NAIVE_U, NAIVE_LOG_MIXTURE),
        )
    )
    se, te, me = _huge_batch()
    out.append(
        CaseSpec(
            "sequence_log_ratio/huge_delta/sum",
            "sequence_log_ratio",
            (se, te, me),
            {"normalize": "sum"},
            ("student_token_logp",),
            ("large_delta",),
            "Δ = ±999.95: the sum itself is ordinary, the coefficients built on it are not",
        )
    )
    seq = {"student_token_logp": se, "teacher_token_logp": te, "mask": me, "quality": np.array([0.2, 0.9])}
    loss_note = (
        "Δ = ±999.95 (normalize='sum'): the coefficient and the divergence-estimate diagnostics "
        "(−log(α + (1−α)e^Δ), log u) overflow in exp form"
    )
    out.append(
        CaseSpec(
            "tgo_loss/huge_delta/sum",
            "tgo_loss",
            (),
            {**seq, "options": _options(normalize="sum")},
            ("student_token_logp",),
            ("large_delta",),
            loss_note,
            catches=(NAIVE_W,),
        )
    )
    out.append(
        CaseSpec(
            "sgo_loss/huge_delta/sum",
            "sgo_loss",
            (),
            {**seq, "options": _options(normalize="sum")},
            ("student_token_logp",),
            ("large_delta",),
            loss_note,
            catches=(NAIVE_U,),
        )
    )
    # E9 at its kink Δ = 0, now with the derivative: the right derivative ∂ĉ/∂Δ(0⁺).
    d_k, r_k = _grid((-1.0, -1e-3, 0.0, 1e-3, 1.0), (0.0, 0.5, 0.6, 0.75, 0.9, 1.0))
    for mg in ("full", "stop"):
        for pullup in ("fixed", "adaptive"):
            for gate in ("soft", "hard"):
                label = f"{mg},{gate},{pullup}"
                note = ""
                if (mg, gate, pullup) == ("full", "soft", "fixed"):
                    note = (
                        "the derivative at Δ = 0 is the right derivative (1 − h(r))·∂c̃(0⁺; α_S(r))/∂Δ "
                        "= (1 − h)(1 − α_S)² (full) or (1 − h)(1 − α_S) (stop): take max(c, 0) as "
                        "where(c ≥ 0, c, 0) and min(c, 0) as where(c < 0, c, 0); jnp.maximum splits a "
                        "tie's gradient in halves, torch.clamp passes it to both sides"
                    )
                out.append(
                    CaseSpec(
                        f"clipped_sgo_coefficient/kink/{label}",
                        "clipped_sgo_coefficient",
                        (d_k, r_k),
                        {"options": _options(mixture_grad=mg, gate=gate, sgo_pullup=pullup)},
                        ("delta",),
                        ("kink", "options"),
                        note,
                        one_sided={"delta": "right"},
                        # with the adaptive pull-up there is one max, where clamp's rule is right
                        catches=(KINK_TIE_SPLIT, KINK_LEFT)
                        + ((KINK_CLAMP_SUM,) if pullup == "fixed" else ()),
                    )
                )
    return out


def build_cases(version: int = SCHEMA_VERSION) -> list[CaseSpec]:
    """Every golden case of schema ``version``, in a fixed order (spec order of the functions).

    Version 2 is the version-1 list, unchanged, followed by :func:`_v2_cases`.
    """
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown vectors version {version!r}; expected one of {SCHEMA_VERSIONS}")
    cases = (
        _options_cases()
        + _divergence_cases()
        + _coefficient_cases()
        + _sequence_cases()
        + _tgo_cases()
        + _sgo_cases()
        + _askd_cases()
        + _baseline_cases()
    )
    if version >= 2:
        cases += _v2_cases()
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise AssertionError(f"duplicate case names: {dupes}")
    return cases


# --------------------------------------------------------------------------------------------
# Evaluation and output
# --------------------------------------------------------------------------------------------


def _torch_args(value: Any) -> Any:
    """Decoded-spec arguments → what the torch adapter takes."""
    if isinstance(value, OptionsSpec):
        return ASKDOptions(**value.fields)
    if isinstance(value, BatchSpec):
        return ct.DistillBatch(**value.fields)
    if isinstance(value, np.ndarray):
        return value.copy()
    return value


def _check_finite_grad(name: str, key: str, g: np.ndarray) -> None:
    if not np.all(np.isfinite(g)):
        raise ValueError(f"case {name}: gradient {key} is not finite; record it without this gradient")


def evaluate(spec: CaseSpec) -> dict[str, Any]:
    """Evaluate one case with the torch implementation (float64); return its JSON object."""
    args = tuple(_torch_args(a) for a in spec.args)
    kwargs = {k: _torch_args(v) for k, v in spec.kwargs.items()}
    expected: dict[str, Any] = {}
    wrt, tags = spec.wrt, set(spec.tags)
    if spec.function == "ASKDOptions":
        expected["value"] = _options()
    else:
        fn: Callable[..., Any] = getattr(ct, spec.function)
        out = fn(*args, **kwargs)
        if isinstance(out, ct.LossResult):
            expected["value"] = out.loss
            expected["sample_count"] = out.sample_count
            expected["diagnostics"] = dict(out.diagnostics)
            if any(math.isnan(v) for v in out.diagnostics.values()):
                raise ValueError(f"case {spec.name}: NaN diagnostic {out.diagnostics}")
        else:
            value = np.asarray(out, dtype=np.float64)
            if np.isnan(value).any():
                raise ValueError(f"case {spec.name}: NaN value")
            expected["value"] = value
            if np.isinf(value).any():
                # the true value is +inf somewhere: a gradient there is not a conformance target
                wrt = ()
                tags.add("infinite_value")
        if wrt:
            again, grads = ct.value_and_grad(spec.function, args, kwargs, wrt)
            v_again = again.loss if isinstance(again, ct.LossResult) else np.asarray(again)
            if not np.array_equal(np.asarray(v_again), np.asarray(expected["value"])):
                # the gradient path re-normalises student_logp with log_softmax: agree to rounding
                tol = tolerance("float64", "value")
                if not np.allclose(v_again, expected["value"], rtol=tol.rtol, atol=tol.atol):
                    raise AssertionError(f"case {spec.name}: value and value_and_grad disagree")
            for key, g in grads.items():
                _check_finite_grad(spec.name, key, g)
            expected["grad"] = grads
    case: dict[str, Any] = {
        "name": spec.name,
        "function": spec.function,
        "spec_label": FUNCTIONS[spec.function].label,
        "args": list(spec.args),
        "kwargs": dict(spec.kwargs),
        "expected": expected,
        "tags": sorted(tags),
    }
    if spec.note:
        case["note"] = spec.note
    if spec.one_sided:
        case["one_sided"] = dict(spec.one_sided)
    if spec.catches:
        case["catches"] = sorted(spec.catches)
    return {k: encode(v) for k, v in case.items()}


#: Top-level fields of the file besides ``cases`` (``vectors/SCHEMA.md`` explains them).
def _header(version: int = SCHEMA_VERSION) -> dict[str, Any]:
    tol = tolerance("float64", "value")
    return {
        "format": FORMAT,
        "schema_version": version,
        "spec": "ASKD-SPEC v1 (askd-ref)",
        "dtype": "float64",
        "generator": "askd vectors (askd_ref.vectors, torch implementation, float64, autograd gradients)",
        "gradient_convention": (
            "grad[x] = d(sum of all output elements)/dx; 'student_logits' = gradient w.r.t. logits z "
            "with student_logp = log_softmax(z), evaluated at z = student_logp"
        ),
        "tolerance": {"rtol": tol.rtol, "atol": tol.atol, "source": "askd_ref.tolerances float64 row"},
    }


def generate(progress: bool = False, version: int = SCHEMA_VERSION) -> dict[str, Any]:
    """The complete golden-vector object of schema ``version`` (header fields plus ``cases``)."""
    specs = build_cases(version)
    iterable: Iterable[CaseSpec] = specs
    if progress:
        tqdm = importlib.import_module("tqdm").tqdm
        iterable = tqdm(specs, desc="golden cases", unit="case")
    cases = [evaluate(s) for s in iterable]
    return {**_header(version), "cases": cases}


def dumps(vectors: Mapping[str, Any]) -> str:
    """Deterministic JSON text: sorted keys, repr-exact floats, one case per line."""

    def one(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False, separators=(",", ":"))

    lines = ["{"]
    keys = sorted(vectors)
    for i, key in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        if key == "cases":
            lines.append('"cases":[')
            cases = list(vectors["cases"])
            lines.extend(one(c) + ("," if j < len(cases) - 1 else "") for j, c in enumerate(cases))
            lines.append("]" + comma)
        else:
            lines.append(f"{one(key)}:{one(vectors[key])}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def diff_vectors(actual: Mapping[str, Any], expected: Mapping[str, Any], tol: Tolerance) -> list[str]:
    """Differences between two golden-vector objects (raw JSON), numbers compared under ``tol``.

    Strings, booleans, integers, keys and list lengths must match exactly; floats (and the
    ``"inf"``/``"-inf"`` encodings) within ``|a − e| ≤ atol + rtol·|e|``. Returns one line per
    difference, prefixed by the case name and the path inside the case.

    >>> diff_vectors({"x": [1.0, "inf"]}, {"x": [1.0 + 1e-15, "inf"]}, tolerance("float64"))
    []
    >>> diff_vectors({"x": [1.0]}, {"x": [1.1]}, tolerance("float64"))
    ['x[0]: 1.0 != 1.1']
    """
    out: list[str] = []

    def number(x: Any) -> float | None:
        if isinstance(x, bool):
            return None
        if isinstance(x, float):
            return x
        if isinstance(x, str) and x in ("inf", "-inf", "nan"):
            return float(x)
        return None

    def walk(a: Any, e: Any, path: str) -> None:
        na, ne = number(a), number(e)
        if na is not None and ne is not None:
            if math.isinf(ne) or math.isinf(na) or math.isnan(ne) or math.isnan(na):
                if na != ne:
                    out.append(f"{path}: {a!r} != {e!r}")
            elif not abs(na - ne) <= tol.atol + tol.rtol * abs(ne):
                out.append(f"{path}: {a!r} != {e!r}")
            return
        if isinstance(a, dict) and isinstance(e, dict):
            if set(a) != set(e):
                out.append(f"{path}: keys {sorted(set(a) ^ set(e))} differ")
            for k in sorted(set(a) & set(e)):
                walk(a[k], e[k], f"{path}.{k}" if path else str(k))
            return
        if isinstance(a, list) and isinstance(e, list):
            if len(a) != len(e):
                out.append(f"{path}: length {len(a)} != {len(e)}")
                return
            for i, (x, y) in enumerate(zip(a, e, strict=True)):
                walk(x, y, f"{path}[{i}]")
            return
        if type(a) is not type(e) or a != e:
            out.append(f"{path}: {a!r} != {e!r}")

    header_a = {k: v for k, v in actual.items() if k != "cases"}
    header_e = {k: v for k, v in expected.items() if k != "cases"}
    walk(header_a, header_e, "")
    cases_a = {c["name"]: c for c in actual.get("cases", [])}
    cases_e = {c["name"]: c for c in expected.get("cases", [])}
    for name in sorted(set(cases_a) ^ set(cases_e)):
        out.append(f"case {name}: only in {'the regenerated' if name in cases_a else 'the expected'} vectors")
    if [n for n in cases_a if n in cases_e] != [n for n in cases_e if n in cases_a]:
        out.append("cases appear in a different order")
    for name in cases_e:
        if name in cases_a:
            walk(cases_a[name], cases_e[name], f"[{name}]")
    return out


def write_vectors(
    path: str | Path, *, progress: bool = False, version: int = SCHEMA_VERSION
) -> dict[str, Any]:
    """Generate the golden vectors of ``version`` and write them to ``path`` atomically."""
    vectors = generate(progress=progress, version=version)
    atomic_write_text(path, dumps(vectors))
    return vectors
