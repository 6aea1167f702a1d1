"""Hypothesis fuzzing of every public function of askd_ref that takes tensors (issue 7, item 1).

Each test draws a *valid* call of one public function (spec §10 and the other tensor-taking names
of ``askd_ref.__all__``) and then checks one of three properties:

1. **Invalid input is named** (``test_invalid_input_is_named``). Exactly one argument is
   corrupted by one fault: NaN/±inf at a position the function uses, a row of −inf log-probs,
   raw logits instead of log-probs, a positive token log-prob, wrong rank or shape, vocabulary
   mismatch, an empty batch, an all-masked row, an integer/bool/complex dtype, a Python list,
   the ``meta`` device (a device mix), α/β/quality/τ out of range or NaN, unknown option
   strings, bad sample counts, a missing batch field. The call must raise ``ValueError`` or
   ``TypeError`` whose message names the corrupted argument (for a disagreement of shapes: the
   argument or one it must agree with). Anything else fails the test: another exception
   (``RuntimeError``, ``IndexError``, ``AssertionError`` from inside torch), or a result.
   A fault placed where the function is documented to ignore values (masked-out tokens, rows a
   method does not train on, batch fields it does not read) must instead leave the result
   bitwise unchanged.
2. **Layout does not matter** (``test_layout_does_not_change_results``). Non-contiguous
   (strided) and broadcast (expanded, stride-0) tensors give the same values and gradients as
   their contiguous copies (or the same error).
3. **Valid extremes stay finite** (``test_valid_extremes_*``): logits ±1e4, masking with
   ``finfo.min`` (the ±3e38 clamps of Hugging Face models) or −inf, α/β ∈ {0, 1e-6, 1−1e-6, 1},
   |Δ| up to the limits of spec §3 and beyond, quality at the gate corners. Values and
   gradients are finite where the quantity is finite (a plain KL whose support condition
   fails is +inf, never NaN), and range statements of T3/T7 hold.

Examples: the "deterministic" hypothesis profile of ``tests/conftest.py`` (derandomised, no
database), ``CI_EXAMPLES`` per function; the ``slow``-marked copies run ``SLOW_FACTOR`` times as
many. Counts: with ``ASKD_FUZZ_REPORT=<path>`` set, the inputs generated per function, the
faults injected and their outcomes are written (atomically) to that JSON file when the module
finishes; ``tests/fuzz_report.py`` runs this and prints the tables of ``docs/reliability.md``.
"""

import dataclasses
import math
import os
import platform
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import hypothesis
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import askd_ref
from askd_ref import compiled
from askd_ref.io import atomic_write_json
from askd_ref.porting.tolerances import assert_close, tolerance

NAN, INF = math.nan, math.inf
FLOAT_DTYPES = (torch.float64, torch.float32, torch.bfloat16, torch.float16)

#: Examples per function and property in the CI run (``make test``); the slow run multiplies them.
CI_EXAMPLES = {"invalid": 8, "layout": 12, "extreme": 30}
SLOW_FACTOR = 10

# Argument kinds.
LOGP = "full-vocabulary log-probs"
TOKEN = "token log-probs"
LOGITS = "logits"
REAL = "real"  # Δ, behaviour log-probs: any finite value
UNIT = "unit"  # α, β, quality: [0, 1]
MASK = "mask"
FLAGS = "flags"
IDS = "ids"
PY = "python value"  # strings, options, counts, τ, ε: only the listed bad values are tried
FLOAT_KINDS = (LOGP, TOKEN, LOGITS, REAL, UNIT)

PY_BAD: dict[str, tuple[tuple[str, object], ...]] = {
    UNIT: (
        ("py nan", NAN),
        ("py +inf", INF),
        ("py -inf", -INF),
        ("py below 0", -0.25),
        ("py above 1", 1.5),
        ("py bool", True),
        ("py str", "0.5"),
        ("py None", None),
    ),
    REAL: (("py nan", NAN), ("py +inf", INF), ("py -inf", -INF), ("py bool", True), ("py str", "1.0")),
}
BAD_CHOICE = (("unknown string", "bogus"), ("empty string", ""), ("None", None), ("int", 1))
BAD_OPTIONS = (("dict", {"alpha_lo": 0.1}), ("str", "default"), ("int", 1))

COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)
#: Distinct "argument: fault" pairs injected per function.
PAIRS_INJECTED: defaultdict[str, set[str]] = defaultdict(set)



@pytest.fixture(scope="module", autouse=True)
def _write_counts() -> Iterator[None]:
    """Write the outcome counts when the module is done (only with ``ASKD_FUZZ_REPORT`` set)."""
    yield
    path = os.environ.get("ASKD_FUZZ_REPORT")
    if path:
        atomic_write_json(
            path,
            {
                "ci_examples": CI_EXAMPLES,
                "slow_factor": SLOW_FACTOR,
                "hypothesis": hypothesis.__version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "profile": os.environ.get("ASKD_HYPOTHESIS_PROFILE", "deterministic"),
                "counts": {target: dict(sorted(c.items())) for target, c in sorted(COUNTS.items())},
                "fault_pairs": {target: sorted(pairs) for target, pairs in sorted(PAIRS_INJECTED.items())},
            },
        )


# ---------------------------------------------------------------------------------------------
# Generated valid calls
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Arg:
    """How one argument of a valid call may be corrupted and what the function must say.

    ``used``: bool tensor of the argument's shape, True where values matter (``None``: all).
    ``shape_ok``: which other shapes are still valid (``None``: only the drawn one).
    ``bad``: explicit invalid values (``PY`` arguments; ``(label, value)`` pairs).
    ``if_none``: for batch fields, what ``None`` must do: ``"raise"``, ``"same"`` or ``""``.
    """

    kind: str
    label: str
    peers: tuple[str, ...] = ()
    used: torch.Tensor | None = None
    shape_ok: Callable[[tuple[int, ...]], bool] | None = None
    bad: tuple[tuple[str, object], ...] = ()
    if_none: str = ""
    rows_need_token: bool = False
    vocab: int = 0


@dataclasses.dataclass
class Case:
    """A valid call: ``run(args)`` calls the function; ``specs`` says how to corrupt ``args``."""

    target: str
    run: Callable[[dict[str, Any]], Any]
    args: dict[str, Any]
    specs: dict[str, Arg]
    dtype: torch.dtype
    grad_args: tuple[str, ...] = ()


class Gen:
    """Hypothesis chooses the structure; a seeded torch generator fills tensors (deterministic)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data
        self.g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31 - 1), label="seed"))

    def draw(self, strategy: st.SearchStrategy[Any]) -> Any:
        return self.data.draw(strategy)

    def choice(self, options: Any) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def int(self, lo: int, hi: int) -> int:
        return int(self.draw(st.integers(lo, hi)))

    def flag(self) -> bool:
        return bool(self.draw(st.booleans()))

    def dtype(self) -> torch.dtype:
        return self.choice(FLOAT_DTYPES)  # type: ignore[no-any-return]

    def shape(self, min_rank: int, max_rank: int, max_side: int = 3) -> tuple[int, ...]:
        rank = self.int(min_rank, max_rank)
        return tuple(self.int(1, max_side) for _ in range(rank))

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.g, dtype=torch.float64)

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, dtype=torch.float64)

    def logp(self, shape: tuple[int, ...], dtype: torch.dtype, scale: float = 2.0) -> torch.Tensor:
        return torch.log_softmax(self.randn(shape) * scale, -1).to(dtype)

    def token_logp(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        return self.rand(shape).clamp_min(0.05).log().to(dtype)

    def mask(self, b: int, n: int) -> torch.Tensor:
        m = self.rand((b, n)) < 0.7
        m[torch.arange(b), torch.randint(n, (b,), generator=self.g)] = True  # every row keeps a token
        return m

    def unit_float(self) -> float:
        return float(
            self.draw(st.one_of(st.sampled_from([0.0, 1e-6, 0.1, 0.5, 1 - 1e-6, 1.0]), st.floats(0, 1)))
        )

    def position(self, where: torch.Tensor) -> tuple[int, ...]:
        positions = torch.nonzero(where)
        return tuple(int(i) for i in positions[self.int(0, positions.shape[0] - 1)].tolist())

    def sub_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """A shape that broadcasts to ``shape``: a suffix, some sides replaced by 1."""
        k = self.int(0, len(shape))
        suffix = shape[len(shape) - k :]
        return tuple(1 if self.flag() else side for side in suffix)


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return tuple(torch.broadcast_shapes(shape, target)) == tuple(target)
    except RuntimeError:
        return False


def _broadcasts_with(shape: tuple[int, ...], other: tuple[int, ...] | None) -> bool:
    if other is None:
        return True
    try:
        torch.broadcast_shapes(shape, other)
        return True
    except RuntimeError:
        return False


def _shape_of(value: object) -> tuple[int, ...] | None:
    return tuple(value.shape) if isinstance(value, torch.Tensor) else None


def _unit_param(
    gen: Gen, name: str, dtype: torch.dtype, ok: Callable[[tuple[int, ...]], bool], shape: tuple[int, ...]
) -> tuple[object, Arg]:
    """α, β or quality: a Python float or a tensor of a shape ``ok`` accepts (values in [0, 1])."""
    value: object = gen.unit_float() if gen.flag() else gen.rand(shape).to(dtype)
    return value, Arg(UNIT, name, shape_ok=ok)


# Divergences E1–E4 ----------------------------------------------------------------------------

DIVERGENCE_PARAMS = {
    "forward_kl": None,
    "reverse_kl": None,
    "skew_forward_kl": "alpha",
    "skew_reverse_kl": "alpha",
    "generalized_jsd": "beta",
}


def build_divergence(target: str, gen: Gen) -> Case:
    fn = getattr(askd_ref, target)
    dtype = gen.dtype()
    batch = gen.shape(1, 2)
    shape = (*batch, gen.int(2, 6))
    args: dict[str, Any] = {
        "teacher_logp": gen.logp(shape, dtype),
        "student_logp": gen.logp(shape, dtype, 1.5),
    }
    specs = {
        "teacher_logp": Arg(LOGP, "teacher_logp", peers=("student_logp",)),
        "student_logp": Arg(LOGP, "student_logp", peers=("teacher_logp",)),
    }
    param = DIVERGENCE_PARAMS[target]
    if param is not None:
        args[param], specs[param] = _unit_param(
            gen, param, dtype, lambda s: _broadcasts_to(s, batch), gen.sub_shape(batch)
        )
    if target.startswith("skew"):
        args["mixture_grad"] = gen.choice(["full", "stop"])
        specs["mixture_grad"] = Arg(PY, "mixture_grad", bad=BAD_CHOICE)
    return Case(target, lambda a: fn(**a), args, specs, dtype, grad_args=("student_logp",))


# Coefficients E5–E7, E9; gates and schedules E8, E10 ------------------------------------------

OPTION_PRESETS = {
    "None": None,
    "default": askd_ref.ASKDOptions(),
    "sum/stop/hard": askd_ref.ASKDOptions(normalize="sum", mixture_grad="stop", gate="hard"),
    "adaptive/logit": askd_ref.ASKDOptions(sgo_pullup="adaptive", schedule="logit", alpha_lo=0.05),
    "extreme alphas": askd_ref.ASKDOptions(alpha_lo=1e-6, alpha_hi=1 - 1e-6, gate="none"),
    "steep gate": askd_ref.ASKDOptions(tau_lo=0.0, tau_hi=1e-6, alpha_lo=0.3, alpha_hi=0.3),
    "dense": askd_ref.ASKDOptions(lambda_dense=0.5, lambda_tgo=0.7, lambda_sgo=1.3),
}


def build_coefficient(target: str, gen: Gen) -> Case:
    fn = getattr(askd_ref, target)
    dtype = gen.dtype()
    base = gen.shape(0, 2)
    second = "quality" if target == "clipped_sgo_coefficient" else "alpha"
    delta: object = float(gen.randn(()) * 4) if gen.flag() else (gen.randn(base) * 4).to(dtype)
    other: object = gen.unit_float() if gen.flag() else gen.rand(gen.sub_shape(base)).to(dtype)
    args: dict[str, Any] = {"delta": delta, second: other}
    specs = {
        "delta": Arg(REAL, "delta", shape_ok=lambda s: _broadcasts_with(s, _shape_of(other))),
        second: Arg(UNIT, second, shape_ok=lambda s: _broadcasts_with(s, _shape_of(delta))),
    }
    kwargs: list[str] = []
    if target == "sgo_coefficient":
        args["mixture_grad"] = gen.choice(["full", "stop"])
        specs["mixture_grad"] = Arg(PY, "mixture_grad", bad=BAD_CHOICE)
        kwargs.append("mixture_grad")
    if target == "clipped_sgo_coefficient":
        args["options"] = OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))]
        specs["options"] = Arg(PY, "options", bad=BAD_OPTIONS)
        kwargs.append("options")

    def run(a: dict[str, Any]) -> Any:
        return fn(a["delta"], a[second], **{k: a[k] for k in kwargs})

    grads = tuple(k for k in ("delta", second) if isinstance(args[k], torch.Tensor))
    return Case(target, run, args, specs, dtype, grad_args=grads)


BAD_TAU = (
    ("py nan", NAN),
    ("py +inf", INF),
    ("py below 0", -0.1),
    ("py above 1", 1.5),
    ("py bool", True),
    ("py str", "0.5"),
    ("py None", None),
)


def build_gate(target: str, gen: Gen) -> Case:
    fn = getattr(askd_ref, target)
    dtype = gen.dtype()
    quality, q_spec = _unit_param(gen, "quality", dtype, lambda s: True, gen.shape(0, 2))
    args: dict[str, Any] = {"quality": quality}
    specs = {"quality": q_spec}
    if target == "soft_gate":
        lo = gen.choice([0.0, 0.25, 0.5, 0.9])
        hi = gen.choice([h for h in (lo + 1e-6, 0.75, 1.0) if h > lo])
        args.update(tau_lo=lo, tau_hi=hi)
        specs["tau_lo"] = Arg(PY, "tau_lo", bad=(*BAD_TAU, ("not below tau_hi", hi)))
        specs["tau_hi"] = Arg(PY, "tau_hi", bad=(*BAD_TAU, ("not above tau_lo", lo)))
    elif target == "hard_gate":
        args["tau"] = gen.choice([0.0, 0.5, 0.75, 1.0])
        specs["tau"] = Arg(PY, "tau", bad=(*BAD_TAU, ("tensor", torch.tensor(0.5))))
    else:
        args["options"] = OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))]
        specs["options"] = Arg(PY, "options", bad=BAD_OPTIONS)
    grads = ("quality",) if isinstance(quality, torch.Tensor) and target != "hard_gate" else ()
    return Case(target, lambda a: fn(**a), args, specs, dtype, grad_args=grads)


# Sequences and sequence-level losses (E11–E13) ------------------------------------------------

BAD_NORMALIZE = (("unknown string", "avg"), ("wrong case", "SUM"), ("None", None))


def _count_bad(local: int) -> tuple[tuple[str, object], ...]:
    return (("smaller than local", local - 1), ("float", float(local)), ("bool", True), ("str", str(local)))


def _token_specs(mask: torch.Tensor, student: str, teacher: str, mask_name: str) -> dict[str, Arg]:
    peers = (student, teacher, mask_name)
    return {
        student: Arg(TOKEN, student, peers=peers, used=mask),
        teacher: Arg(TOKEN, teacher, peers=peers, used=mask),
        mask_name: Arg(MASK, mask_name, peers=peers, rows_need_token=True),
    }


def build_sequence_log_ratio(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    b, n = gen.int(1, 3), gen.int(1, 4)
    mask = gen.mask(b, n)
    args: dict[str, Any] = {
        "student_token_logp": gen.token_logp((b, n), dtype),
        "teacher_token_logp": gen.token_logp((b, n), dtype),
        "mask": mask,
        "normalize": gen.choice(["sum", "mean"]),
    }
    specs = _token_specs(mask, "student_token_logp", "teacher_token_logp", "mask")
    specs["normalize"] = Arg(PY, "normalize", bad=BAD_NORMALIZE)

    def run(a: dict[str, Any]) -> Any:
        return askd_ref.sequence_log_ratio(
            a["student_token_logp"], a["teacher_token_logp"], a["mask"], normalize=a["normalize"]
        )

    return Case(target, run, args, specs, dtype, grad_args=("student_token_logp",))


def build_token_log_probs(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    b, n, v = gen.int(1, 2), gen.int(2, 4), gen.int(2, 6)
    ids = torch.randint(v, (b, n), generator=gen.g)
    largest = int(ids.max())
    args: dict[str, Any] = {
        "logits": (gen.randn((b, n, v)) * 3).to(dtype),
        "input_ids": ids,
        "response_mask": gen.rand((b, n)) < 0.6,
    }
    peers = ("logits", "input_ids", "response_mask")
    specs = {
        "logits": Arg(
            LOGITS,
            "logits",
            peers=peers,
            shape_ok=lambda s: len(s) == 3 and s[:2] == (b, n) and s[2] > largest,
        ),
        "input_ids": Arg(IDS, "input_ids", peers=peers, vocab=v),
        "response_mask": Arg(MASK, "response_mask", peers=peers),
    }
    return Case(target, lambda a: askd_ref.token_log_probs(**a), args, specs, dtype, grad_args=("logits",))


def build_sequence_loss(target: str, gen: Gen) -> Case:
    fn = getattr(askd_ref, target)
    dtype = gen.dtype()
    b, n = gen.int(1, 3), gen.int(1, 4)
    mask = gen.mask(b, n)
    student = gen.token_logp((b, n), dtype)
    args: dict[str, Any] = {
        "student_token_logp": student,
        "teacher_token_logp": gen.token_logp((b, n), dtype),
        "mask": mask,
    }
    specs = _token_specs(mask, "student_token_logp", "teacher_token_logp", "mask")
    args["quality"], specs["quality"] = _unit_param(gen, "quality", dtype, lambda s: s in ((), (b,)), (b,))
    args["options"] = OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))]
    specs["options"] = Arg(PY, "options", bad=BAD_OPTIONS)
    if gen.flag():
        args["num_samples"] = b + gen.int(0, 3)
        specs["num_samples"] = Arg(PY, "num_samples", bad=_count_bad(b))
    if target == "sgo_loss" and gen.flag():
        total = (student.double() * mask).sum(-1)
        args["behaviour_logp"] = (total + (gen.rand((b,)) - 0.5) * 0.6).to(dtype)
        specs["behaviour_logp"] = Arg(REAL, "behaviour_logp", shape_ok=lambda s: s == (b,))
    return Case(target, lambda a: fn(**a), args, specs, dtype, grad_args=("student_token_logp",))


# Batch losses (E14, E15, §6 baselines) ---------------------------------------------------------

BATCH_FIELDS = (
    "mask",
    "is_tgo",
    "quality",
    "student_token_logp",
    "teacher_token_logp",
    "student_logp",
    "teacher_logp",
    "behaviour_logp",
    "group",
)
METHOD_OF = {
    "askd_loss": "askd",
    "dense_askd_loss": "askd-dense",
    "seqkd_loss": "seqkd",
    "kd_loss": "kd",
    "rkl_loss": "rkl",
    "gkd_loss": "gkd",
    "distillm_loss": "distillm",
    "distillm2_loss": "distillm2",
    "advantage_kd_loss": "advantage_kd",
}
DENSE = ("student_logp", "teacher_logp")
#: Which rows of which batch field each method reads ("all", "tgo" or "sgo"); others are ignored.
READS: dict[str, dict[str, str]] = {
    "askd": {
        "student_token_logp": "all",
        "teacher_token_logp": "all",
        "quality": "all",
        "behaviour_logp": "sgo",
    },
    "askd-dense": {"student_logp": "all", "teacher_logp": "all", "quality": "all"},
    "seqkd": {"student_token_logp": "tgo"},
    "kd": {"student_logp": "tgo", "teacher_logp": "tgo"},
    "rkl": {"student_logp": "sgo", "teacher_logp": "sgo"},
    "gkd": {"student_logp": "all", "teacher_logp": "all"},
    "distillm": {"student_logp": "all", "teacher_logp": "all"},
    "distillm2": {"student_logp": "all", "teacher_logp": "all"},
    "advantage_kd": {
        "student_logp": "tgo",
        "teacher_logp": "tgo",
        "student_token_logp": "sgo",
        "quality": "sgo",
        "group": "sgo",
    },
}


def _make_batch(a: dict[str, Any]) -> askd_ref.DistillBatch:
    return askd_ref.DistillBatch(**{k: a[k] for k in BATCH_FIELDS if k in a})


def build_batch_loss(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    method = gen.choice(askd_ref.METHODS) if target == "compute_loss" else METHOD_OF[target]
    b, n, v = gen.int(2, 4), gen.int(1, 3), gen.int(2, 5)
    mask = gen.mask(b, n)
    is_tgo = gen.rand((b,)) < 0.5
    is_tgo[0], is_tgo[1] = True, False  # both kinds present: every method has something to train on
    student_tok = gen.token_logp((b, n), dtype)
    args: dict[str, Any] = {
        "mask": mask,
        "is_tgo": is_tgo,
        "quality": gen.rand((b,)).to(dtype),
        "student_token_logp": student_tok,
        "teacher_token_logp": gen.token_logp((b, n), dtype),
        "student_logp": gen.logp((b, n, v), dtype, 1.5),
        "teacher_logp": gen.logp((b, n, v), dtype),
        "group": torch.randint(2, (b,), generator=gen.g),
    }
    reads = dict(READS[method])
    if method in ("askd", "askd-dense") or target == "compute_loss":
        options = OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))]
        args["options"] = options
        if method == "askd" and options is not None and options.lambda_dense > 0:
            reads.update({k: "all" for k in (*DENSE, "quality")})
    if method == "askd" and gen.flag():
        total = (student_tok.double() * mask).sum(-1)
        args["behaviour_logp"] = (total + (gen.rand((b,)) - 0.5) * 0.6).to(dtype)
    rows = {"all": torch.ones(b, dtype=torch.bool), "tgo": is_tgo, "sgo": ~is_tgo}
    specs: dict[str, Arg] = {}
    for name in BATCH_FIELDS:
        if name not in args:
            continue
        row_use = rows[reads[name]] if name in reads else torch.zeros(b, dtype=torch.bool)
        if name in ("student_token_logp", "teacher_token_logp"):
            used: torch.Tensor | None = row_use[:, None] & mask
        elif name in DENSE:
            used = (row_use[:, None] & mask)[..., None].expand(b, n, v)
        else:
            used = row_use
        peers = tuple(f for f in BATCH_FIELDS if f != name)
        kind = {"mask": MASK, "is_tgo": FLAGS, "group": IDS, "quality": UNIT, "behaviour_logp": REAL}.get(
            name
        )
        if kind is None:
            kind = LOGP if name in DENSE else TOKEN
        if_none = "raise" if name in reads or name in ("mask", "is_tgo") else "same"
        specs[name] = Arg(
            kind,
            name,
            peers=peers,
            used=None if name in ("mask", "is_tgo") else used,
            if_none="" if name == "behaviour_logp" else if_none,
            rows_need_token=(name == "mask"),
            vocab=2**31 - 1 if name == "group" else 0,
        )
    n_t, n_s = int(is_tgo.sum()), int((~is_tgo).sum())
    for count, local in (("num_tgo", n_t), ("num_sgo", n_s)):
        if gen.flag():
            args[count] = local + gen.int(0, 2)
            specs[count] = Arg(PY, count, bad=_count_bad(local))
    if "options" in args:
        specs["options"] = Arg(PY, "options", bad=BAD_OPTIONS)
    extra: list[str] = []
    if target == "gkd_loss" and gen.flag():
        args["beta"] = gen.unit_float()
        specs["beta"] = Arg(PY, "beta", bad=PY_BAD[UNIT])
        extra.append("beta")
    if target in ("distillm_loss", "distillm2_loss") and gen.flag():
        args["alpha"] = gen.unit_float()
        specs["alpha"] = Arg(PY, "alpha", bad=PY_BAD[UNIT])
        extra.append("alpha")
    if target == "advantage_kd_loss" and gen.flag():
        args["eps_a"] = gen.choice([1e-4, 1e-8, 1.0])
        specs["eps_a"] = Arg(
            PY, "eps", bad=(("zero", 0.0), ("negative", -1e-4), ("py nan", NAN), ("str", "x"))
        )
        extra.append("eps_a")
    keys = [k for k in ("options", "num_tgo", "num_sgo", *extra) if k in args]
    if target == "compute_loss":
        args["method"] = method
        specs["method"] = Arg(PY, "method", bad=(("unknown method", "askd2"), ("None", None)))

        def run(a: dict[str, Any]) -> Any:
            return askd_ref.compute_loss(a["method"], _make_batch(a), **{k: a[k] for k in keys if k in a})

    else:
        fn = getattr(askd_ref, target)

        def run(a: dict[str, Any]) -> Any:
            return fn(_make_batch(a), **{k: a[k] for k in keys if k in a})

    return Case(target, run, args, specs, dtype, grad_args=("student_token_logp", "student_logp"))


def build_group_advantages(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    b = gen.int(1, 5)
    args: dict[str, Any] = {
        "quality": gen.rand((b,)).to(dtype),
        "group": torch.randint(3, (b,), generator=gen.g),
        "eps": gen.choice([1e-4, 1e-8, 1.0]),
    }
    specs = {
        "quality": Arg(UNIT, "quality", peers=("group",), shape_ok=lambda s: s == (b,)),
        "group": Arg(IDS, "group", peers=("quality",), vocab=2**31 - 1),
        "eps": Arg(
            PY, "eps", bad=(("zero", 0.0), ("negative", -1.0), ("py nan", NAN), ("py inf", INF), ("str", "x"))
        ),
    }
    # No gradient check: A is not differentiable in r where a group's dispersion is 0 (T12).
    return Case(target, lambda a: askd_ref.group_advantages(**a), args, specs, dtype)


def build_options(target: str, gen: Gen) -> Case:
    lo = gen.choice([1e-6, 0.1, 0.3])
    hi = gen.choice([h for h in (0.3, 0.9, 1 - 1e-6) if h >= lo])
    tau_lo = gen.choice([0.0, 0.5])
    tau_hi = gen.choice([0.75, 1.0])
    args: dict[str, Any] = {
        "normalize": gen.choice(["mean", "sum"]),
        "mixture_grad": gen.choice(["full", "stop"]),
        "gate": gen.choice(["soft", "hard", "none"]),
        "sgo_pullup": gen.choice(["fixed", "adaptive"]),
        "schedule": gen.choice(["linear", "logit"]),
        "alpha_lo": lo,
        "alpha_hi": hi,
        "tau_lo": tau_lo,
        "tau_hi": tau_hi,
        "tau": gen.choice([0.0, 0.75, 1.0]),
        "lambda_tgo": 1.0,
        "lambda_sgo": gen.choice([0.0, 1.0]),
        "lambda_dense": gen.choice([0.0, 0.5]),
        "is_clip_eps": gen.choice([0.2, 0.5]),
    }
    common = (("nan", NAN), ("inf", INF), ("bool", True), ("str", "0.5"), ("None", None))
    specs = {name: Arg(PY, name, bad=BAD_CHOICE) for name in list(args)[:5]}
    specs.update(
        {
            "alpha_lo": Arg(
                PY, "alpha_lo", bad=(*common, ("zero", 0.0), ("above alpha_hi", min(hi * 1.5, 2.0)))
            ),
            "alpha_hi": Arg(PY, "alpha_hi", bad=(*common, ("one", 1.0), ("below alpha_lo", lo / 2))),
            "tau_lo": Arg(PY, "tau_lo", bad=(*common, ("negative", -0.1), ("not below tau_hi", tau_hi))),
            "tau_hi": Arg(PY, "tau_hi", bad=(*common, ("above 1", 1.5), ("not above tau_lo", tau_lo))),
            "tau": Arg(PY, "tau", bad=(*common, ("negative", -0.1), ("above 1", 1.5))),
            "is_clip_eps": Arg(PY, "is_clip_eps", bad=(*common, ("zero", 0.0), ("one", 1.0))),
        }
    )
    for name in ("lambda_tgo", "lambda_sgo", "lambda_dense"):
        specs[name] = Arg(PY, name, bad=(*common, ("negative", -1.0)))
    return Case(target, lambda a: askd_ref.ASKDOptions(**a), args, specs, torch.float64)


# Chunked heads (askd_ref.chunked): hidden states and output projections instead of log-probs --

BAD_CHUNK = (("zero", 0), ("negative", -1), ("float", 2.0), ("bool", True), ("str", "2"))


def _weight_ok(
    vocab: int, hidden: int, largest_id: int, free_vocab: bool
) -> Callable[[tuple[int, ...]], bool]:
    """Valid weight shapes: (vocab, hidden), or any larger vocabulary when nothing else pins it."""
    return lambda s: (
        s == (vocab, hidden) or (free_vocab and len(s) == 2 and s[1] == hidden and s[0] > largest_id)
    )


def build_chunked_token_log_probs(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    b, n, h, v = gen.int(1, 3), gen.int(1, 3), gen.int(1, 4), gen.int(2, 6)
    mask = gen.rand((b, n)) < 0.7
    ids = torch.randint(v, (b, n), generator=gen.g)
    largest = int(ids[mask].max()) if bool(mask.any()) else -1
    args: dict[str, Any] = {
        "hidden": gen.randn((b, n, h)).to(dtype),
        "weight": gen.randn((v, h)).to(dtype),
        "target_ids": ids,
        "mask": mask,
        "chunk_size": gen.choice([1, 2, 3, 64]),
    }
    peers = ("hidden", "weight", "target_ids", "mask", "bias")
    specs = {
        "hidden": Arg(REAL, "hidden", peers=peers, used=mask[..., None].expand(b, n, h)),
        "weight": Arg(REAL, "weight", peers=peers, shape_ok=_weight_ok(v, h, largest, True)),
        "target_ids": Arg(IDS, "target_ids", peers=peers, used=mask, vocab=v),
        "mask": Arg(MASK, "mask", peers=peers),
        "chunk_size": Arg(PY, "chunk_size", bad=BAD_CHUNK),
    }
    if gen.flag():
        args["bias"] = gen.randn((v,)).to(dtype)
        specs["bias"] = Arg(REAL, "bias", peers=peers)  # validated like weight, tokens or not
        specs["weight"].shape_ok = None

    def run(a: dict[str, Any]) -> Any:
        return askd_ref.chunked_token_log_probs(
            a["hidden"],
            a["weight"],
            a["target_ids"],
            a["mask"],
            bias=a.get("bias"),
            chunk_size=a["chunk_size"],
        )

    return Case(target, run, args, specs, dtype, grad_args=("hidden", "weight"))


def build_chunked_loss(target: str, gen: Gen) -> Case:
    dtype = gen.dtype()
    method = gen.choice(askd_ref.METHODS)
    b, n, v = gen.int(2, 4), gen.int(1, 3), gen.int(2, 5)
    hs, ht = gen.int(1, 4), gen.int(1, 4)
    mask = gen.mask(b, n)
    is_tgo = gen.rand((b,)) < 0.5
    is_tgo[0], is_tgo[1] = True, False
    ids = torch.randint(v, (b, n), generator=gen.g)
    needs_teacher = method != "seqkd"
    args: dict[str, Any] = {
        "method": method,
        "student_hidden": gen.randn((b, n, hs)).to(dtype),
        "student_weight": gen.randn((v, hs)).to(dtype),
        "target_ids": ids,
        "mask": mask,
        "is_tgo": is_tgo,
        "quality": gen.rand((b,)).to(dtype),
        "group": torch.randint(2, (b,), generator=gen.g),
        "chunk_size": gen.choice([1, 2, 5, 4096]),
        "kernel": gen.choice(kernels(dtype)),
        "options": OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))],
    }
    reads = dict(READS[method])
    if method == "askd" and args["options"] is not None and args["options"].lambda_dense > 0:
        reads.update({k: "all" for k in (*DENSE, "quality")})
    rows = {"all": torch.ones(b, dtype=torch.bool), "tgo": is_tgo, "sgo": ~is_tgo}
    head_rows = torch.zeros(b, dtype=torch.bool)
    for name in ("student_logp", "student_token_logp"):
        if name in reads:
            head_rows |= rows[reads[name]]
    head_used = (head_rows[:, None] & mask)[..., None]
    heads = (
        "student_hidden",
        "student_weight",
        "student_bias",
        "teacher_hidden",
        "teacher_weight",
        "teacher_bias",
    )
    everyone = (*BATCH_FIELDS, *heads, "target_ids")
    peers = tuple(everyone)
    specs: dict[str, Arg] = {
        "method": Arg(PY, "method", bad=(("unknown method", "askd2"), ("None", None))),
        "student_hidden": Arg(REAL, "student_hidden", peers=peers, used=head_used.expand(b, n, hs)),
        "student_weight": Arg(
            REAL,
            "student_weight",
            peers=peers,
            shape_ok=_weight_ok(v, hs, int(ids[mask].max()), not needs_teacher),
        ),
        "target_ids": Arg(IDS, "target_ids", peers=peers, used=mask, vocab=v),
        "chunk_size": Arg(PY, "chunk_size", bad=BAD_CHUNK),
        "kernel": Arg(PY, "kernel", bad=BAD_CHOICE),
        "options": Arg(PY, "options", bad=BAD_OPTIONS),
    }
    if needs_teacher:
        args["teacher_hidden"] = gen.randn((b, n, ht)).to(dtype)
        args["teacher_weight"] = gen.randn((v, ht)).to(dtype)
        specs["teacher_hidden"] = Arg(
            REAL, "teacher_hidden", peers=peers, used=head_used.expand(b, n, ht), if_none="raise"
        )
        specs["teacher_weight"] = Arg(REAL, "teacher_weight", peers=peers, if_none="raise")
    if method == "askd" and gen.flag():
        total = (gen.token_logp((b, n), torch.float64) * mask).sum(-1)
        args["behaviour_logp"] = total.to(dtype)
    for role in ("student", "teacher") if needs_teacher else ("student",):
        if gen.flag():
            args[f"{role}_bias"] = gen.randn((v,)).to(dtype)
            specs[f"{role}_bias"] = Arg(REAL, f"{role}_bias", peers=peers)
            specs["student_weight"].shape_ok = None
    for name in ("mask", "is_tgo", "quality", "behaviour_logp", "group"):
        if name not in args:
            continue
        row_use = rows[reads[name]] if name in reads else torch.zeros(b, dtype=torch.bool)
        kind = {"mask": MASK, "is_tgo": FLAGS, "group": IDS, "quality": UNIT, "behaviour_logp": REAL}[name]
        if_none = "raise" if name in reads or name in ("mask", "is_tgo") else "same"
        specs[name] = Arg(
            kind,
            name,
            peers=peers,
            used=None if name in ("mask", "is_tgo") else row_use,
            if_none="" if name in ("behaviour_logp", "mask", "is_tgo") else if_none,
            rows_need_token=(name == "mask"),
            vocab=2**31 - 1 if name == "group" else 0,
        )
    n_t, n_s = int(is_tgo.sum()), int((~is_tgo).sum())
    for count, local in (("num_tgo", n_t), ("num_sgo", n_s)):
        if gen.flag():
            args[count] = local + gen.int(0, 2)
            specs[count] = Arg(PY, count, bad=_count_bad(local))

    def run(a: dict[str, Any]) -> Any:
        return askd_ref.chunked_loss(a["method"], **{k: x for k, x in a.items() if k != "method"})

    return Case(target, run, args, specs, dtype, grad_args=("student_hidden", "student_weight"))


BUILDERS: dict[str, Callable[[str, Gen], Case]] = {
    **{name: build_divergence for name in DIVERGENCE_PARAMS},
    "tgo_coefficient": build_coefficient,
    "sgo_coefficient": build_coefficient,
    "clipped_sgo_coefficient": build_coefficient,
    "soft_gate": build_gate,
    "hard_gate": build_gate,
    "quality_gate": build_gate,
    "tgo_alpha": build_gate,
    "sgo_alpha": build_gate,
    "sequence_log_ratio": build_sequence_log_ratio,
    "token_log_probs": build_token_log_probs,
    "tgo_loss": build_sequence_loss,
    "sgo_loss": build_sequence_loss,
    **{name: build_batch_loss for name in (*METHOD_OF, "compute_loss")},
    "group_advantages": build_group_advantages,
    "ASKDOptions": build_options,
    "chunked_token_log_probs": build_chunked_token_log_probs,
    "chunked_loss": build_chunked_loss,
}
TARGETS = sorted(BUILDERS)
TENSOR_TARGETS = [t for t in TARGETS if t != "ASKDOptions"]

#: Modules whose public names are the loss math (spec §10) and its chunked form: every name they
#: export must have a fuzz target here or be listed below. The trainer, generation and evaluation
#: entry points (models, configs, files) are outside this fuzzer's scope.
FUZZED_MODULES = {
    "askd_ref._validation",
    "askd_ref.divergences",
    "askd_ref.coefficients",
    "askd_ref.schedules",
    "askd_ref.sequence",
    "askd_ref.losses",
    "askd_ref.baselines",
    "askd_ref.methods",
    "askd_ref.options",
    "askd_ref.chunked",
}
#: Public names that take tensors but are exercised through other targets, and names that take none.
COVERED_ELSEWHERE = {"DistillBatch": "every batch-loss target builds one from the fuzzed fields"}
NO_TENSORS = {"LOSS_FUNCTIONS", "METHODS", "LossOutput", "is_validation_enabled", "set_validation"}
NO_TENSORS |= {"validation_disabled"}


def test_every_public_name_is_fuzzed_or_listed() -> None:
    """Adding a public loss-math function without a fuzz target fails here."""
    exported = {name for name, module in askd_ref._EXPORTS.items() if module in FUZZED_MODULES}
    assert exported == set(TARGETS) | set(COVERED_ELSEWHERE) | NO_TENSORS
    spec_section_10 = {
        *("forward_kl", "reverse_kl", "skew_forward_kl", "skew_reverse_kl", "generalized_jsd"),
        *("tgo_coefficient", "sgo_coefficient", "clipped_sgo_coefficient", "soft_gate", "hard_gate"),
        *("tgo_alpha", "sgo_alpha", "ASKDOptions", "sequence_log_ratio"),
        *("tgo_loss", "sgo_loss", "askd_loss", "dense_askd_loss", "seqkd_loss", "kd_loss", "rkl_loss"),
        *("gkd_loss", "distillm_loss", "distillm2_loss", "advantage_kd_loss"),
    }
    assert spec_section_10 <= set(TARGETS)


# ---------------------------------------------------------------------------------------------
# Faults
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Fault:
    name: str
    value: object
    expect: str  # "raise" (ValueError/TypeError naming one of ``names``) or "same"
    names: tuple[str, ...]


def _fill(kind: str, shape: tuple[int, ...], dtype: torch.dtype, gen: Gen) -> torch.Tensor:
    """A tensor of ``shape`` with values that would be valid for ``kind`` (only the shape is off)."""
    if kind == LOGP:
        return gen.logp(shape, dtype) if shape and shape[-1] > 0 else torch.zeros(shape, dtype=dtype)
    if kind == TOKEN:
        return gen.token_logp(shape, dtype)
    if kind in (LOGITS, REAL):
        return gen.randn(shape).to(dtype)
    if kind == UNIT:
        return torch.full(shape, 0.5, dtype=dtype)
    if kind in (MASK, FLAGS):
        return torch.ones(shape, dtype=torch.bool)
    return torch.zeros(shape, dtype=torch.long)


def _invalid_shapes(arg: Arg, shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    candidates = [(*shape[:-1], shape[-1] + 1)] if shape else [(2,)]
    candidates += [(shape[0] + 1, *shape[1:])] if shape else [(1, 2)]
    candidates += [(2, *shape), shape[1:], (3, 4, 5, 6)]
    out = []
    for c in candidates:
        valid = arg.shape_ok(c) if arg.shape_ok is not None else c == shape
        if not valid and c not in out:
            out.append(c)
    return out


def _as_tensor(arg: Arg, value: object, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    return torch.tensor(value, dtype=dtype)


def _faults(arg: Arg, value: object, case: Case, gen: Gen) -> list[str]:
    """The fault names that apply to ``arg`` (drawn from by the test)."""
    if arg.kind == PY:
        return [label for label, _ in arg.bad]
    names: list[str] = []
    if arg.kind in (UNIT, REAL):
        names += [label for label, _ in PY_BAD[arg.kind] if not (arg.if_none and label == "py None")]
    if arg.if_none:
        names.append("None")
    names += ["python list", "meta device", "empty"]
    if arg.kind in FLOAT_KINDS:
        names += ["dtype int64", "dtype bool", "dtype complex64", "nan", "+inf"]
        names += {
            LOGP: ["-inf row", "not normalised"],
            TOKEN: ["-inf", "positive log-prob"],
            LOGITS: ["-inf row"],
            REAL: ["-inf"],
            UNIT: ["-inf", "below 0", "above 1"],
        }[arg.kind]
        if arg.used is not None and bool(arg.used.any()) and not bool(arg.used.all()):
            names.append("nan where unused")
    elif arg.kind in (MASK, FLAGS):
        names += ["dtype int64", "dtype float32"]
        if arg.rows_need_token:
            names.append("all-masked row")
    else:
        names += ["dtype float32", "dtype bool", "dtype complex64"]
        if arg.kind == IDS and arg.vocab < 2**31 - 1:
            names.append("out of vocabulary")
    if _invalid_shapes(arg, tuple(_as_tensor(arg, value, case.dtype).shape)):
        names.append("shape")
    return names


def _put(x: torch.Tensor, index: tuple[int, ...], value: float) -> torch.Tensor:
    y = x.detach().clone()
    y[index] = value
    return y


def make_fault(name: str, arg: Arg, value: object, case: Case, gen: Gen) -> Fault:
    """Apply the fault ``name`` to ``value``; say what the call must do."""
    own = (arg.label,)
    structural = (arg.label, *arg.peers)
    for label, bad in arg.bad or PY_BAD.get(arg.kind, ()):
        if label == name:
            return Fault(name, bad, "raise", own)
    if name == "None":
        return Fault(name, None, arg.if_none, own)
    x = _as_tensor(arg, value, case.dtype)
    shape = tuple(x.shape)
    if name == "python list":
        return Fault(name, x.tolist() if x.ndim else [x.item()], "raise", own)
    if name == "meta device":
        return Fault(name, x.to("meta"), "raise", own)
    if name == "empty":
        empty = (0,) if not shape else (*shape[:-1], 0) if gen.flag() else (0, *shape[1:])
        return Fault(name, _fill(arg.kind, empty, x.dtype, gen), "raise", structural)
    if name == "shape":
        new = gen.choice(_invalid_shapes(arg, shape))
        return Fault(name, _fill(arg.kind, new, x.dtype, gen), "raise", structural)
    if name.startswith("dtype "):
        dtype = getattr(torch, name.removeprefix("dtype "))
        return Fault(name, x.detach().to(dtype), "raise", own)
    if name == "out of vocabulary":  # at a used position; where no position is used, nothing may change
        bad_id = gen.choice([-1, arg.vocab])
        used_ids = torch.ones_like(x, dtype=torch.bool) if arg.used is None else arg.used
        if bool(used_ids.any()):
            return Fault(name, _put(x, gen.position(used_ids), bad_id), "raise", own)
        return Fault(name, _put(x, gen.position(torch.ones_like(used_ids)), bad_id), "same", own)
    if name == "all-masked row":
        y = x.clone()
        y[gen.int(0, shape[0] - 1)] = False
        return Fault(name, y, "raise", structural)
    # Value faults: at a used position they must raise; where nothing is used, change nothing.
    used = torch.ones(shape, dtype=torch.bool) if arg.used is None else arg.used
    if name == "nan where unused":
        return Fault(name, _put(x, gen.position(~used), NAN), "same", own)
    expect = "raise" if bool(used.any()) else "same"
    where = used if bool(used.any()) else torch.ones(shape, dtype=torch.bool)
    if name == "not normalised":
        return Fault(name, x + 3.0, expect, own)
    if name == "-inf row":
        pos = gen.position(where)
        y = x.detach().clone()
        y[pos[:-1]] = -INF
        return Fault(name, y, expect, own)
    fill = {"nan": NAN, "+inf": INF, "-inf": -INF, "positive log-prob": 0.5, "below 0": -0.25, "above 1": 1.5}
    return Fault(name, _put(x, gen.position(where), fill[name]), expect, own)


# ---------------------------------------------------------------------------------------------
# Running calls and comparing results
# ---------------------------------------------------------------------------------------------


def _outputs(result: Any) -> list[torch.Tensor]:
    """The tensors of a result, in a fixed order (LossOutput: loss, then diagnostics by key)."""
    if isinstance(result, askd_ref.LossOutput):
        diags = [torch.tensor(result.diagnostics[k], dtype=torch.float64) for k in sorted(result.diagnostics)]
        return [result.loss, *diags]
    if isinstance(result, tuple):
        return [r for r in result if isinstance(r, torch.Tensor)]
    if isinstance(result, torch.Tensor):
        return [result]
    return []


def _signature(result: Any) -> Any:
    if isinstance(result, askd_ref.LossOutput):
        return (sorted(result.diagnostics), result.sample_count)
    return type(result).__name__


def _same(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype, quantity: str, what: str) -> bool:
    """True if bitwise equal; else assert closeness within the table's tolerance and return False."""
    a, b = a.detach(), b.detach()
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} vs {b.dtype}"
    if torch.equal(a, b):
        return True
    assert_close(
        a.float() if a.dtype == torch.bool else a,
        b.float() if b.dtype == torch.bool else b,
        tolerance(dtype, quantity),
        what=what,
    )
    return False


def _message_names(exc: BaseException, names: tuple[str, ...]) -> bool:
    return any(n in str(exc) for n in names)


#: Gaps found by this fuzzer in modules outside the core it may fix (reported, not yet fixed).
#: Each entry is strict: while the gap exists the fault is counted as "known gap"; once the call
#: raises a named ValueError/TypeError the test fails and asks for the entry to be removed.
KNOWN_GAPS: dict[tuple[str, str, str], str] = {}


def check_fault(case: Case, arg_name: str, fault: Fault) -> str:
    """Run the corrupted call; return the outcome key for the counts (asserts on failure)."""
    args = dict(case.args)
    args[arg_name] = fault.value
    if fault.name == "None" and arg_name in BATCH_FIELDS:
        del args[arg_name]
    where = f"{case.target}: fault {fault.name!r} on {arg_name}"
    error: ValueError | TypeError | None = None
    other: Exception | None = None
    try:
        result = case.run(args)
    except (ValueError, TypeError) as exc:
        error = exc
    except Exception as exc:
        other = exc
    gap = KNOWN_GAPS.get((case.target, arg_name, fault.name))
    if gap is not None and fault.expect == "raise":
        named = error is not None and _message_names(error, fault.names)
        assert not named, f"{where}: the known gap {gap!r} is fixed; remove it from KNOWN_GAPS"
        return "known gap"
    if other is not None:
        pytest.fail(f"{where} raised {type(other).__name__} (not ValueError/TypeError): {other}")
    if error is not None:
        assert fault.expect == "raise", f"{where} should change nothing but raised {error!r}"
        assert _message_names(error, fault.names), f"{where}: message does not name {fault.names}: {error}"
        return type(error).__name__
    assert fault.expect == "same", f"{where} returned {result!r} instead of raising"
    original = case.run(dict(case.args))
    assert _signature(result) == _signature(original), where
    for i, (got, want) in enumerate(zip(_outputs(result), _outputs(original), strict=True)):
        assert torch.equal(got.detach(), want.detach()), f"{where}: output {i} changed: {got} vs {want}"
    return "unchanged"


def invalid_body(target: str, data: st.DataObject) -> None:
    """One generated valid call, then every applicable fault on every argument, one at a time."""
    gen = Gen(data)
    case = BUILDERS[target](target, gen)
    COUNTS[target]["valid calls generated (invalid-input test)"] += 1
    for arg_name in sorted(case.specs):
        arg = case.specs[arg_name]
        for fault_name in _faults(arg, case.args[arg_name], case, gen):
            fault = make_fault(fault_name, arg, case.args[arg_name], case, gen)
            outcome = check_fault(case, arg_name, fault)
            COUNTS[target]["inputs"] += 1
            COUNTS[target]["faults injected"] += 1
            COUNTS[target][f"outcome {outcome}"] += 1
            COUNTS[target][f"fault {fault_name} -> {outcome}"] += 1
            PAIRS_INJECTED[target].add(f"{arg_name}: {fault_name}")


@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=CI_EXAMPLES["invalid"])
@given(data=st.data())
def test_invalid_input_is_named(target: str, data: st.DataObject) -> None:
    invalid_body(target, data)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
@settings(max_examples=CI_EXAMPLES["invalid"] * SLOW_FACTOR)
@given(data=st.data())
def test_invalid_input_is_named_long(target: str, data: st.DataObject) -> None:
    invalid_body(target, data)


# ---------------------------------------------------------------------------------------------
# Layout: non-contiguous and broadcast tensors
# ---------------------------------------------------------------------------------------------


def _strided(x: torch.Tensor) -> torch.Tensor:
    """A non-contiguous copy of ``x`` (every other element of a wider buffer)."""
    if x.ndim == 0 or x.numel() <= 1:
        return x
    base = torch.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
    base[..., ::2] = x.detach()
    out = base[..., ::2]
    assert not out.is_contiguous()
    return out


def _evaluate(case: Case, args: dict[str, Any]) -> tuple[str, list[torch.Tensor]]:
    """(error or "", outputs + gradients of their sum w.r.t. the grad args)."""
    args = dict(args)
    leaves = []
    for name in case.grad_args:
        if isinstance(args.get(name), torch.Tensor):
            args[name] = args[name].detach().requires_grad_()
            leaves.append(args[name])
    try:
        result = case.run(args)
    except (ValueError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}", []
    outs = _outputs(result)
    differentiable = [o for o in outs if o.requires_grad]
    grads: list[torch.Tensor] = []
    if differentiable and leaves:
        total = torch.stack([o.double().sum() for o in differentiable]).sum()
        got = torch.autograd.grad(total, leaves, allow_unused=True)
        grads = [torch.zeros_like(leaf) if g is None else g for leaf, g in zip(leaves, got, strict=True)]
    return "", [o.detach() for o in outs] + [g.contiguous() for g in grads]


def layout_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    case = BUILDERS[target](target, gen)
    tensors = [k for k, v in case.args.items() if isinstance(v, torch.Tensor) and v.numel() > 1]
    transform = gen.choice(["non-contiguous", "expanded"] if tensors else ["non-contiguous"])
    contiguous = dict(case.args)
    strided = dict(case.args)
    if transform == "non-contiguous":
        for k in tensors:
            strided[k] = _strided(case.args[k])
    else:
        k = gen.choice(tensors)
        x = case.args[k]
        dims = [d for d in range(x.ndim) if x.shape[d] > 1]
        d = gen.choice(dims)
        strided[k] = x.narrow(d, 0, 1).expand(x.shape)
        assert strided[k].stride(d) == 0
        contiguous[k] = strided[k].contiguous()
    err_a, out_a = _evaluate(case, strided)
    err_b, out_b = _evaluate(case, contiguous)
    assert err_a == err_b, f"{target} ({transform}): {err_a!r} vs contiguous {err_b!r}"
    if err_a:
        COUNTS[target][f"layout {transform} -> same error"] += 1
    else:
        n_values = len(out_b) - len(
            [k for k in case.grad_args if isinstance(contiguous.get(k), torch.Tensor)]
        )
        bitwise = all(
            _same(a, b, case.dtype, "value" if i < n_values else "grad", f"{target} ({transform}) output {i}")
            for i, (a, b) in enumerate(zip(out_a, out_b, strict=True))
        )
        COUNTS[target][
            f"layout {transform} -> {'bitwise equal' if bitwise else 'equal within tolerance'}"
        ] += 1
    COUNTS[target]["inputs"] += 1


@pytest.mark.parametrize("target", TENSOR_TARGETS)
@settings(max_examples=CI_EXAMPLES["layout"])
@given(data=st.data())
def test_layout_does_not_change_results(target: str, data: st.DataObject) -> None:
    layout_body(target, data)


@pytest.mark.slow
@pytest.mark.parametrize("target", TENSOR_TARGETS)
@settings(max_examples=CI_EXAMPLES["layout"] * SLOW_FACTOR)
@given(data=st.data())
def test_layout_does_not_change_results_long(target: str, data: st.DataObject) -> None:
    layout_body(target, data)


# ---------------------------------------------------------------------------------------------
# Valid extremes
# ---------------------------------------------------------------------------------------------

EXTREME_LOGITS = torch.tensor([0.0, 1.0, -1.0, 30.0, -30.0, 1e4, -1e4], dtype=torch.float64)
EXTREME_WEIGHTS = (0.0, 1e-6, 0.1, 0.5, 1 - 1e-6, 1.0)


def _extreme_logits(gen: Gen, shape: tuple[int, ...], masked: torch.Tensor, fill: float) -> torch.Tensor:
    """Logits drawn from {0, ±1, ±30, ±1e4}; ``masked`` ids (shared by both models) set to ``fill``."""
    z = EXTREME_LOGITS[torch.randint(len(EXTREME_LOGITS), shape, generator=gen.g)]
    return z.masked_fill(masked, fill)


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def _compute(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to(torch.promote_types(x.dtype, torch.float32))


def extreme_divergence_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    fn = getattr(askd_ref, target)
    dtype = gen.dtype()
    rows, vocab = gen.int(1, 3), gen.int(2, 8)
    fill = gen.choice([-INF, "finfo.min"])
    fill_value = torch.finfo(dtype).min if fill == "finfo.min" else -INF
    masked = gen.rand((vocab,)) < 0.3
    masked[gen.int(0, vocab - 1)] = False  # at least one id both models can use
    masked = masked.expand(rows, vocab)
    teacher_only = (gen.rand((rows, vocab)) < 0.2) & ~masked if gen.flag() else torch.zeros_like(masked)
    zt = _extreme_logits(gen, (rows, vocab), masked, fill_value).masked_fill(teacher_only, -INF).to(dtype)
    zt[torch.arange(rows), torch.argmax((~(masked | teacher_only)).int(), -1)] = 0.0  # a finite logit per row
    zs = _extreme_logits(gen, (rows, vocab), masked, fill_value).to(dtype).requires_grad_()
    t = torch.log_softmax(zt, -1)
    s = torch.log_softmax(zs, -1)
    kwargs: dict[str, Any] = {}
    param = DIVERGENCE_PARAMS[target]
    weight = gen.choice(EXTREME_WEIGHTS)
    if param is not None:
        kwargs[param] = weight
    if target.startswith("skew"):
        kwargs["mixture_grad"] = gen.choice(["full", "stop"])
    value = fn(teacher_logp=t, student_logp=s, **kwargs)
    (grad,) = torch.autograd.grad(value.sum(), zs)
    # Support as the implementation's dtype sees it: mass exp(log p) > 0, log-prob > −inf.
    tc, sc = _compute(t), _compute(s)
    fkl_ok = ~((tc.exp() > 0) & torch.isneginf(sc)).any(-1)
    rkl_ok = ~((sc.exp() > 0) & torch.isneginf(tc)).any(-1)
    finite_expected = {
        "forward_kl": fkl_ok,
        "reverse_kl": rkl_ok,
        "skew_forward_kl": fkl_ok | (weight > 0),
        "skew_reverse_kl": rkl_ok | (weight > 0),
        "generalized_jsd": torch.ones(rows, dtype=torch.bool),
    }[target]
    what = f"{target}({kwargs}) {dtype}, teacher {zt.tolist()}, student {zs.tolist()}: {value.tolist()}"
    assert not bool(torch.isnan(value).any()), f"NaN value: {what}"
    assert bool(torch.isfinite(value[finite_expected]).all()), f"non-finite in-domain value: {what}"
    assert bool(torch.isposinf(value[~finite_expected]).all()), f"out-of-domain value is not +inf: {what}"
    # ≥ 0 up to rounding: the value row's atol of the compute dtype (float32 for half inputs);
    # the slow run measured −1.2e-8 (float32) at worst, from a sum of terms of both signs.
    floor = -tolerance(_compute(value).dtype, "value").atol
    assert float(value.detach().min()) >= floor, f"negative divergence below {floor}: {what}"
    if param is not None and weight > 0 and target != "generalized_jsd":
        # T7: SKL_α ≤ log(1/α) for normalised p; a half log_softmax leaves Σp = 1 + O(2^-8), and the
        # bound scales with the mass of the first argument (p for SKL, q for SRKL).
        first = tc if target == "skew_forward_kl" else sc
        mass = first.double().exp().sum(-1).clamp_min(1.0)
        bound = math.log(1 / weight) * mass * (1 + 1e-5) + 1e-6
        assert bool((value.detach().double() <= bound).all()), f"T7 bound {bound.tolist()} broken: {what}"
    rows_ok = finite_expected
    assert _finite(grad[rows_ok]), f"non-finite gradient {grad.tolist()}: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target][
        f"extreme finite ({fill} masks)" if bool(rows_ok.all()) else "extreme +inf out of domain"
    ] += 1


def extreme_coefficient_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.choice([torch.float64, torch.float32, torch.bfloat16, torch.float16])
    limit = 700.0 if dtype == torch.float64 else 80.0
    big = float(torch.finfo(dtype).max)
    # Every special Δ against every special α (or quality corner), plus random interior points.
    values = [0.0, 1e-30, -1e-30, 1e-8, -1e-8, limit, -limit, limit / 2, -limit / 2, 1e4, -1e4, big, -big]
    values += [float(gen.draw(st.floats(-limit, limit))) for _ in range(gen.int(1, 4))]
    options = OPTION_PRESETS[gen.choice([k for k in OPTION_PRESETS if k != "None"])]
    if target == "clipped_sgo_coefficient":
        second = [0.0, options.tau_lo, options.tau, options.tau_hi, 1.0, float(gen.draw(st.floats(0, 1)))]
    else:
        # (Subnormal α is not drawn: with Δ beyond the §3 limits, α·expm1(log u) overflows there;
        # docs/reliability.md lists it as a known limit.)
        second = [*EXTREME_WEIGHTS, float(gen.draw(st.floats(1e-30, 1)))]
    grid_d, grid_s = torch.meshgrid(
        torch.tensor(values, dtype=torch.float64), torch.tensor(second, dtype=torch.float64), indexing="ij"
    )
    delta = grid_d.reshape(-1).to(dtype).requires_grad_()
    if target == "clipped_sgo_coefficient":
        quality = grid_s.reshape(-1).to(dtype)
        out = askd_ref.clipped_sgo_coefficient(delta, quality, options=options)
        (g_delta,) = torch.autograd.grad(out.sum(), delta)
        g_alpha = torch.zeros(())
        alpha = None
    else:
        alpha = grid_s.reshape(-1).to(dtype).requires_grad_()
        kwargs = {"mixture_grad": gen.choice(["full", "stop"])} if target == "sgo_coefficient" else {}
        out = getattr(askd_ref, target)(delta, alpha, **kwargs)
        g_delta, g_alpha = torch.autograd.grad(out.sum(), (delta, alpha))
        # ∂/∂α at α ∈ {0, 1} exactly is undefined (0·∞ in autograd, documented); inside, the
        # T4 bounds (≤ 1/(4α(1−α)) for w, ≤ max(1/α, 1/(1−α)) + 1 for c̃, c_det) must fit the
        # dtype of α's gradient, else its overflow to ±inf is the honest answer.
        a = alpha.detach().double()
        bound = torch.maximum(1 / a, 1 / (1 - a)) + 1
        interior = (a > 0) & (a < 1) & (bound < torch.finfo(dtype).max / 4)
        g_alpha = g_alpha[interior]
    alphas = None if alpha is None else alpha.tolist()
    what = f"{target} dtype {dtype}, Δ {delta.tolist()}, α {alphas}: {out.tolist()}"
    assert _finite(out), f"non-finite value: {what}"
    assert _finite(g_delta), f"non-finite ∂/∂Δ {g_delta.tolist()}: {what}"
    assert _finite(g_alpha), f"non-finite ∂/∂α {g_alpha.tolist()}: {what}"
    if target == "tgo_coefficient":
        assert bool(((out >= 0) & (out <= 1)).all()), f"w outside [0, 1] (T3): {what}"
    if target == "sgo_coefficient" and alpha is not None:
        a = _compute(alpha).double()
        cap = torch.where(a > 0, -torch.log(a), torch.full_like(a, INF))
        if kwargs["mixture_grad"] == "full":
            cap = cap - (1 - a)
        slack = 1e-5 * cap.abs() + 1e-6
        assert bool((out.detach().double() <= cap + slack).all()), (
            f"coefficient above its T3 cap {cap}: {what}"
        )
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite"] += 1


def extreme_gate_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.dtype()
    options = OPTION_PRESETS[gen.choice([k for k in OPTION_PRESETS if k != "None"])]
    corners = [0.0, 1e-30, 1e-7, options.tau_lo, options.tau_hi, options.tau, 1 - 1e-7, 1.0]
    quality = torch.tensor([gen.choice(corners) for _ in range(gen.int(1, 6))], dtype=torch.float64)
    quality = quality.to(dtype).requires_grad_()
    if target == "soft_gate":
        out = askd_ref.soft_gate(quality, options.tau_lo, options.tau_hi)
    elif target == "hard_gate":
        out = askd_ref.hard_gate(quality, options.tau)
    else:
        out = getattr(askd_ref, target)(quality, options=options)
    what = f"{target}({quality.tolist()}, {options}) dtype {dtype}: {out.tolist()}"
    assert _finite(out), what
    slope = 1 / (options.tau_hi - options.tau_lo)  # the soft gate's Lipschitz constant (T4)
    if out.requires_grad and slope < torch.finfo(dtype).max / 4:  # else ∂h/∂r overflows the dtype
        (g,) = torch.autograd.grad(out.sum(), quality)
        assert _finite(g), f"non-finite gradient: {what}"
    lo, hi = (options.alpha_lo, options.alpha_hi) if target.endswith("alpha") else (0.0, 1.0)
    eps = 4 * torch.finfo(out.dtype).eps
    assert bool(((out >= lo * (1 - eps)) & (out <= hi * (1 + eps))).all()), f"outside [{lo}, {hi}]: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite"] += 1


TOKEN_EXTREMES = (0.0, -1e-30, -1e-8, -1.0, -30.0, -80.0, -1e4)


def extreme_sequence_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.dtype()
    b, n = gen.int(1, 3), gen.int(1, 4)
    mask = gen.mask(b, n)

    def tokens() -> torch.Tensor:
        return torch.tensor([[gen.choice(TOKEN_EXTREMES) for _ in range(n)] for _ in range(b)]).to(dtype)

    s, t = tokens().double().to(dtype).requires_grad_(), tokens()
    options = OPTION_PRESETS[gen.choice([k for k in OPTION_PRESETS if k not in ("None", "dense")])]
    quality = torch.tensor([gen.choice([0.0, options.tau_lo, options.tau_hi, 1.0]) for _ in range(b)]).to(
        dtype
    )
    if target == "sequence_log_ratio":
        out: Any = askd_ref.sequence_log_ratio(s, t, mask, normalize=options.normalize)
        outs = [out]
    else:
        kwargs: dict[str, Any] = {}
        if target == "sgo_loss" and gen.flag():  # off-policy, behaviour ≈ the student's own Σ log q
            kwargs["behaviour_logp"] = (s.detach().double() * mask).sum(-1) + (gen.rand((b,)) - 0.5) * 0.2
        fn = askd_ref.tgo_loss if target == "tgo_loss" else askd_ref.sgo_loss
        result = fn(
            student_token_logp=s, teacher_token_logp=t, mask=mask, quality=quality, options=options, **kwargs
        )
        outs = _outputs(result)
    (g,) = torch.autograd.grad(outs[0].sum(), s)
    values = [o.tolist() for o in outs]
    what = f"{target} {dtype}, s {s.tolist()}, t {t.tolist()}, mask {mask.tolist()}: {values}"
    assert all(_finite(o) for o in outs), f"non-finite output: {what}"
    assert _finite(g), f"non-finite gradient {g.tolist()}: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite"] += 1


def extreme_token_log_probs_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.dtype()
    b, n, v = gen.int(1, 2), gen.int(2, 4), gen.int(2, 6)
    masked = gen.rand((b, n, v)) < 0.3
    masked[..., 0] = False
    fill = gen.choice([-INF, float(torch.finfo(dtype).min), float(torch.finfo(dtype).max)])
    z = _extreme_logits(gen, (b, n, v), masked, fill).to(dtype).requires_grad_()
    ids = torch.randint(v, (b, n), generator=gen.g)
    out, _ = askd_ref.token_log_probs(z, ids, gen.rand((b, n)) < 0.6)
    (g,) = torch.autograd.grad(out.sum(), z)
    what = f"token_log_probs({z.tolist()}, {ids.tolist()}) dtype {dtype}: {out.tolist()}"
    assert not bool(torch.isnan(out).any()), f"NaN: {what}"
    assert bool((out <= 0).all()), f"positive log-prob: {what}"
    assert _finite(g), f"non-finite gradient: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite or -inf (zero-probability token)"] += 1


def extreme_batch_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.dtype()
    method = gen.choice(askd_ref.METHODS) if target == "compute_loss" else METHOD_OF[target]
    b, n, v = gen.int(2, 4), gen.int(1, 3), gen.int(2, 6)
    fill = gen.choice([-INF, float(torch.finfo(dtype).min)])
    masked = gen.rand((v,)) < 0.3
    masked[0] = False
    masked = masked.expand(b, n, v)
    zs = _extreme_logits(gen, (b, n, v), masked, fill).to(dtype).requires_grad_()
    zt = _extreme_logits(gen, (b, n, v), masked, fill).to(dtype)
    student, teacher = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
    allowed = torch.nonzero(~masked[0, 0]).squeeze(-1)
    ids = allowed[torch.randint(len(allowed), (b, n), generator=gen.g)]
    mask = gen.mask(b, n)
    is_tgo = gen.rand((b,)) < 0.5
    is_tgo[0], is_tgo[1] = True, False
    options = OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))]
    s_tok = student.gather(-1, ids[..., None]).squeeze(-1)
    batch = askd_ref.DistillBatch(
        mask=mask,
        is_tgo=is_tgo,
        quality=torch.tensor([gen.choice([0.0, 0.5, 0.75, 1.0]) for _ in range(b)]).to(dtype),
        student_token_logp=s_tok,
        teacher_token_logp=teacher.gather(-1, ids[..., None]).squeeze(-1),
        student_logp=student,
        teacher_logp=teacher,
        group=torch.randint(2, (b,), generator=gen.g),
    )
    out = askd_ref.compute_loss(method, batch, options=options)
    (g,) = torch.autograd.grad(out.loss, zs)
    what = f"{method} dtype {dtype} fill {fill}: loss {out.loss}, diagnostics {out.diagnostics}"
    assert _finite(out.loss), f"non-finite loss: {what}"
    assert all(math.isfinite(x) for x in out.diagnostics.values()), f"non-finite diagnostic: {what}"
    assert _finite(g), f"non-finite gradient w.r.t. the student logits: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target][f"extreme finite ({'-inf' if fill == -INF else 'finfo.min'} masks)"] += 1


def extreme_group_body(target: str, data: st.DataObject) -> None:
    gen = Gen(data)
    dtype = gen.dtype()
    b = gen.int(1, 6)
    quality = torch.tensor([gen.choice([0.0, 1e-30, 0.5, 1 - 1e-7, 1.0]) for _ in range(b)]).to(dtype)
    group = torch.randint(2, (b,), generator=gen.g)
    out = askd_ref.group_advantages(quality, group, gen.choice([1e-4, 1e-12, 1.0]))
    assert _finite(out), f"group_advantages({quality.tolist()}, {group.tolist()}): {out.tolist()}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite"] += 1


def kernels(dtype: torch.dtype) -> list[str]:
    """The chunked kernels that run ``dtype``: ``"compiled"`` for float32 work (float32 and half
    inputs on CPU) where a C compiler is present."""
    return ["fused", "core"] + (["compiled"] if dtype != torch.float64 and compiled.has_compiler() else [])


HIDDEN_EXTREMES = torch.tensor([0.0, 1.0, -1.0, 100.0, -100.0], dtype=torch.float64)


def extreme_chunked_body(target: str, data: st.DataObject) -> None:
    """Hidden states and weights in {0, ±1, ±100} (logits up to ±2e4), biases masked at finfo.min.

    (fp16 draws from {0, ±0.1, ±10}, see below.)
    """
    gen = Gen(data)
    dtype = gen.dtype()
    b, n, h, v = gen.int(2, 3), gen.int(1, 3), gen.int(1, 2), gen.int(2, 6)

    # fp16: ±10 instead of ±100 (logits ±2e4 give true gradients beyond fp16's 65504, an honest
    # overflow of the half gradient, not a library defect)
    choices = HIDDEN_EXTREMES / 10 if dtype == torch.float16 else HIDDEN_EXTREMES

    def pick(shape: tuple[int, ...]) -> torch.Tensor:
        return choices[torch.randint(len(choices), shape, generator=gen.g)].to(dtype)

    masked = gen.rand((v,)) < 0.3
    masked[0] = False
    bias = torch.zeros(v, dtype=torch.float64).masked_fill(masked, float(torch.finfo(dtype).min)).to(dtype)
    allowed = torch.nonzero(~masked).squeeze(-1)
    ids = allowed[torch.randint(len(allowed), (b, n), generator=gen.g)]
    mask = gen.mask(b, n)
    hidden = pick((b, n, h)).requires_grad_()
    weight = pick((v, h))
    if target == "chunked_token_log_probs":
        out = askd_ref.chunked_token_log_probs(hidden, weight, ids, mask, bias=bias, chunk_size=gen.int(1, 4))
        outs = [out]
        what = f"chunked_token_log_probs {dtype}: {out.tolist()}"
    else:
        method = gen.choice(askd_ref.METHODS)
        is_tgo = gen.rand((b,)) < 0.5
        is_tgo[0], is_tgo[1] = True, False
        result = askd_ref.chunked_loss(
            method,
            student_hidden=hidden,
            student_weight=weight,
            student_bias=bias,
            teacher_hidden=pick((b, n, h)),
            teacher_weight=pick((v, h)),
            teacher_bias=bias,
            target_ids=ids,
            mask=mask,
            is_tgo=is_tgo,
            quality=torch.tensor([gen.choice([0.0, 0.5, 0.75, 1.0]) for _ in range(b)]).to(dtype),
            group=torch.randint(2, (b,), generator=gen.g),
            options=OPTION_PRESETS[gen.choice(sorted(OPTION_PRESETS))],
            chunk_size=gen.int(1, 4),
            kernel=gen.choice(kernels(dtype)),
        )
        outs = _outputs(result)
        what = f"chunked_loss {method} {dtype}: {result}"
    # allow_unused: when every coefficient underflows to 0 (askd with w = 0 and ĉ = 0) chunked_loss
    # returns a loss not connected to the hidden states; the gradient is then 0, as in the full path.
    (g,) = torch.autograd.grad(outs[0].sum(), hidden, allow_unused=True)
    g = torch.zeros_like(hidden) if g is None else g
    assert all(_finite(o) for o in outs), f"non-finite output: {what}"
    assert _finite(g), f"non-finite gradient: {what}"
    COUNTS[target]["inputs"] += 1
    COUNTS[target]["extreme finite (finfo.min bias masks)"] += 1


EXTREMES: dict[str, Callable[[str, st.DataObject], None]] = {
    **{name: extreme_divergence_body for name in DIVERGENCE_PARAMS},
    **{
        name: extreme_coefficient_body
        for name in ("tgo_coefficient", "sgo_coefficient", "clipped_sgo_coefficient")
    },
    **{
        name: extreme_gate_body
        for name in ("soft_gate", "hard_gate", "quality_gate", "tgo_alpha", "sgo_alpha")
    },
    **{name: extreme_sequence_body for name in ("sequence_log_ratio", "tgo_loss", "sgo_loss")},
    "token_log_probs": extreme_token_log_probs_body,
    **{name: extreme_batch_body for name in (*METHOD_OF, "compute_loss")},
    "group_advantages": extreme_group_body,
    "chunked_token_log_probs": extreme_chunked_body,
    "chunked_loss": extreme_chunked_body,
}


def test_every_tensor_target_has_extremes() -> None:
    assert sorted(EXTREMES) == TENSOR_TARGETS


@pytest.mark.parametrize("target", sorted(EXTREMES))
@settings(max_examples=CI_EXAMPLES["extreme"])
@given(data=st.data())
def test_valid_extremes_are_finite(target: str, data: st.DataObject) -> None:
    EXTREMES[target](target, data)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(EXTREMES))
@settings(max_examples=CI_EXAMPLES["extreme"] * SLOW_FACTOR)
@given(data=st.data())
def test_valid_extremes_are_finite_long(target: str, data: st.DataObject) -> None:
    EXTREMES[target](target, data)
