"""Conformance runner: check any implementation of the spec §10 names against the golden vectors.

Needs only Python and NumPy (it never imports torch)::

    python -m askd_ref.conformance --impl MODULE_OR_FILE [--vectors vectors/askd-v2.json]

runs every golden case of ``vectors/askd-v2.json`` (the newest file, written by ``askd vectors``,
described in ``vectors/SCHEMA.md``; ``askd-v1.json`` stays readable) against the module, prints
a pass/fail table per function with the worst relative error, lists each failing case by
function and case name, and exits non-zero on any failure.

The protocol a module implements (``docs/porting.md`` walks through a port):

* **Values.** For each case the runner calls ``impl.<function>(*args, **kwargs)`` with NumPy
  arrays (float64, bool, int64), Python floats/ints/strings and ``None``; positional and
  keyword-only arguments follow the spec §10 signatures. Results are array-likes converted with
  ``np.asarray(x, dtype=float64)`` (NumPy, JAX, CuPy-on-host, or torch tensors without grad).
  Losses return an object with a ``loss`` attribute (a scalar; a bare scalar is accepted too),
  ``sample_count`` (int) and ``diagnostics`` (mapping name → float, the keys of
  :class:`askd_ref.LossOutput`); absent ones are reported "not provided".
* **Options and batches.** ``options`` arguments are built as ``impl.ASKDOptions(**fields)``
  (all §9 fields, explicitly), ``batch`` arguments as ``impl.DistillBatch(**fields)`` (the
  fields that are set, as NumPy arrays). A module without these names receives a
  :class:`types.SimpleNamespace` holding the same fields (absent batch fields as ``None``).
* **Gradients** are ∂(Σ output)/∂x: the elementwise derivative for the coefficients, the
  per-position gradient for the divergences, the gradient of the scalar loss for losses. ``x``
  is named by the §10 parameter (``delta``, ``alpha``, ``student_token_logp``) or is
  ``student_logits``, the logits z with ``student_logp = log_softmax(z)`` (take z =
  ``student_logp``; the gradient only depends on the softmax). The runner looks, in order, for

  1. a ``grad`` mapping on a loss result (``result.grad["student_logits"]``);
  2. a function ``impl.<function>_grad(*args, **kwargs)`` returning a mapping name → array, a
     tuple in the order of :data:`FUNCTIONS` ``[name].grad_args`` (``tgo_coefficient_grad`` →
     ``(∂/∂Δ, ∂/∂α)``), or one array when there is one gradient argument;
  3. a hook ``impl.value_and_grad(function, args, kwargs, wrt)`` returning
     ``(value, {name: array})``. ``args`` and ``kwargs`` are fresh copies of what the value
     call received (the module's own ``ASKDOptions``/``DistillBatch``), ``wrt`` a sorted tuple
     of the names still missing; ``value`` is ignored, extra keys in the mapping are ignored,
     ``NotImplementedError`` means "not provided" and any other exception fails the checks.

  Without any of them the case's gradients are reported "not provided".
* **Not provided fails.** A gradient, diagnostic or ``sample_count`` the vectors hold and the
  port does not return is a failure of the run unless ``--values-only`` is given, which accepts
  a port that checks values only, and says so in the result line.
* **Subsets.** A missing function, or a call raising ``NotImplementedError`` (say, for an
  option combination a port does not support), is reported "not implemented", not failed.
  ``--strict`` turns "not implemented" into failures as well.

Comparison: ``|actual − expected| ≤ atol + rtol·|expected|`` elementwise, equal infinities
equal, NaN never, with (rtol, atol) from :mod:`askd_ref.porting.tolerances` (the ``float64`` row by
default; ``--dtype float32`` uses the float32 row for a port that computes in float32). The
reported relative error is ``|actual − expected| / max(|expected|, atol/rtol)``, so a check
passes when it is at most about rtol.

Example:
    >>> import numpy as np
    >>> r = compare(np.array([1.0, 2.0 + 1e-9]), np.array([1.0, 2.0]), tolerance("float64"))
    >>> r.ok, f"{r.rel_err:.1e}"
    (False, '5.0e-10')
    >>> decode(encode(np.array([0.5, -np.inf]))).tolist()
    [0.5, -inf]
"""

import argparse
import dataclasses
import fnmatch
import importlib
import importlib.util
import json
import math
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from askd_ref.porting.tolerances import TOLERANCES, Tolerance, tolerance

__all__ = [
    "FORMAT",
    "FUNCTIONS",
    "SCHEMA_VERSION",
    "SCHEMA_VERSIONS",
    "BatchSpec",
    "CaseResult",
    "Check",
    "Comparison",
    "FunctionInfo",
    "OptionsSpec",
    "Report",
    "compare",
    "decode",
    "default_vectors_path",
    "encode",
    "format_report",
    "load_impl",
    "load_vectors",
    "main",
    "materialise",
    "run_case",
    "run_conformance",
]

#: Identifies a golden-vector file.
FORMAT = "askd-golden-vectors"
#: The newest schema version (``vectors/SCHEMA.md`` states the policy and the changelog).
SCHEMA_VERSION = 2
#: Every schema version this runner reads: ``askd-v1.json`` stays readable next to ``askd-v2.json``.
SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)


@dataclasses.dataclass(frozen=True)
class FunctionInfo:
    """What the runner needs to know about one §10 name.

    Attributes:
        label: the spec label (E1 … E15, §6, §9).
        kind: ``"array"`` (tensor-valued), ``"loss"`` (a loss result) or ``"options"``.
        grad_args: gradient arguments in the order a tuple-valued ``<name>_grad`` returns them.
    """

    label: str
    kind: str
    grad_args: tuple[str, ...] = ()


_DIV = ("student_logits",)
_TOK = ("student_token_logp",)

#: Every §10 name the vectors cover, in spec order.
FUNCTIONS: dict[str, FunctionInfo] = {
    "ASKDOptions": FunctionInfo("§9", "options"),
    "forward_kl": FunctionInfo("E1", "array", _DIV),
    "reverse_kl": FunctionInfo("E1", "array", _DIV),
    "skew_forward_kl": FunctionInfo("E2", "array", _DIV),
    "skew_reverse_kl": FunctionInfo("E3", "array", _DIV),
    "generalized_jsd": FunctionInfo("E4", "array", _DIV),
    "tgo_coefficient": FunctionInfo("E5", "array", ("delta", "alpha")),
    "sgo_coefficient": FunctionInfo("E6/E7", "array", ("delta", "alpha")),
    "soft_gate": FunctionInfo("E8", "array"),
    "hard_gate": FunctionInfo("E8", "array"),
    "quality_gate": FunctionInfo("E8", "array"),
    "clipped_sgo_coefficient": FunctionInfo("E9", "array", ("delta",)),
    "tgo_alpha": FunctionInfo("E10", "array"),
    "sgo_alpha": FunctionInfo("E10", "array"),
    "sequence_log_ratio": FunctionInfo("§1", "array", _TOK),
    "tgo_loss": FunctionInfo("E11", "loss", _TOK),
    "sgo_loss": FunctionInfo("E12/E13", "loss", _TOK),
    "askd_loss": FunctionInfo("E14", "loss", ("student_token_logp", "student_logits")),
    "dense_askd_loss": FunctionInfo("E15", "loss", _DIV),
    "seqkd_loss": FunctionInfo("§6", "loss", _TOK),
    "kd_loss": FunctionInfo("§6", "loss", _DIV),
    "rkl_loss": FunctionInfo("§6", "loss", _DIV),
    "gkd_loss": FunctionInfo("§6", "loss", _DIV),
    "distillm_loss": FunctionInfo("§6", "loss", _DIV),
    "distillm2_loss": FunctionInfo("§6", "loss", _DIV),
    "advantage_kd_loss": FunctionInfo("§6", "loss", ("student_logits", "student_token_logp")),
}

# --------------------------------------------------------------------------------------------
# JSON codec (shared with the generator, askd_ref.porting.vectors)
# --------------------------------------------------------------------------------------------

_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


@dataclasses.dataclass(frozen=True)
class OptionsSpec:
    """An ``ASKDOptions`` argument as stored in the vectors: every §9 field, explicitly."""

    fields: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class BatchSpec:
    """A ``DistillBatch`` argument as stored in the vectors: the fields that are set."""

    fields: dict[str, np.ndarray]


def _encode_float(x: float) -> Any:
    if math.isfinite(x):
        return float(x)
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _decode_float(x: Any) -> float:
    if isinstance(x, str):
        if x not in _NONFINITE:
            raise ValueError(f"bad float encoding {x!r}; expected a number, 'inf', '-inf' or 'nan'")
        return _NONFINITE[x]
    return float(x)


def encode(value: Any) -> Any:
    """Python/NumPy value → JSON-ready object (floats repr-exact, non-finite values as strings).

    Arrays become ``{"type": "array", "dtype", "shape", "data"}`` with ``data`` flat in C order;
    float entries are numbers or ``"inf"``/``"-inf"``/``"nan"``. A non-finite scalar float is
    ``{"type": "float", "value": "inf"}``. :class:`OptionsSpec` and :class:`BatchSpec` become
    ``{"type": "options"|"batch", "fields": {...}}``; dicts, lists, strings, ints, bools, None
    pass through.

    >>> encode(np.array([[True, False]]))
    {'type': 'array', 'dtype': 'bool', 'shape': [1, 2], 'data': [True, False]}
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else {"type": "float", "value": _encode_float(x)}
    if isinstance(value, np.ndarray):
        flat = value.ravel(order="C")
        data: list[Any]
        if value.dtype == np.bool_:
            dtype, data = "bool", [bool(v) for v in flat]
        elif np.issubdtype(value.dtype, np.integer):
            dtype, data = "int64", [int(v) for v in flat]
        elif np.issubdtype(value.dtype, np.floating):
            dtype, data = "float64", [_encode_float(float(v)) for v in flat]
        else:
            raise TypeError(f"cannot encode an array of dtype {value.dtype}")
        return {"type": "array", "dtype": dtype, "shape": list(value.shape), "data": data}
    if isinstance(value, OptionsSpec):
        return {"type": "options", "fields": {k: encode(v) for k, v in value.fields.items()}}
    if isinstance(value, BatchSpec):
        return {"type": "batch", "fields": {k: encode(v) for k, v in value.fields.items()}}
    if isinstance(value, Mapping):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    raise TypeError(f"cannot encode {type(value).__name__} {value!r}")


_DTYPES = {"float64": np.float64, "bool": np.bool_, "int64": np.int64}


def decode(obj: Any) -> Any:
    """Inverse of :func:`encode`: arrays → ``np.ndarray``, options/batches → specs."""
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if not isinstance(obj, dict):
        return obj
    kind = obj.get("type")
    if kind == "array":
        dtype = obj["dtype"]
        if dtype not in _DTYPES:
            raise ValueError(f"unknown array dtype {dtype!r} in the vectors")
        data = [_decode_float(v) for v in obj["data"]] if dtype == "float64" else obj["data"]
        return np.array(data, dtype=_DTYPES[dtype]).reshape(obj["shape"])
    if kind == "float":
        return _decode_float(obj["value"])
    if kind == "options":
        return OptionsSpec({k: decode(v) for k, v in obj["fields"].items()})
    if kind == "batch":
        return BatchSpec({k: decode(v) for k, v in obj["fields"].items()})
    return {k: decode(v) for k, v in obj.items()}


def default_vectors_path(version: int = SCHEMA_VERSION) -> Path:
    """``vectors/askd-v<version>.json`` of the source tree this module lives in (default the newest)."""
    if version not in SCHEMA_VERSIONS:
        raise ValueError(f"unknown vectors version {version!r}; expected one of {SCHEMA_VERSIONS}")
    return Path(__file__).resolve().parents[2] / "vectors" / f"askd-v{version}.json"


def load_vectors(path: str | Path | None = None) -> dict[str, Any]:
    """Read a golden-vector file (raw JSON), checking its format and schema version."""
    p = default_vectors_path() if path is None else Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(
            f"no golden-vector file at {p}; generate one with `askd vectors --out {p}`"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{p} is not a golden-vector file (format must be {FORMAT!r})")
    version = data.get("schema_version")
    if version not in SCHEMA_VERSIONS:
        raise ValueError(
            f"{p} has schema_version {version!r}; this runner reads versions {list(SCHEMA_VERSIONS)} "
            "(see vectors/SCHEMA.md for the versioning policy)"
        )
    if not isinstance(data.get("cases"), list):
        raise ValueError(f"{p} has no list of cases")
    return data


def materialise(value: Any, impl: Any) -> Any:
    """Turn decoded arguments into what ``impl`` receives (fresh array copies, its own classes)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, OptionsSpec):
        fields = {k: materialise(v, impl) for k, v in value.fields.items()}
        ctor = getattr(impl, "ASKDOptions", None)
        return ctor(**fields) if ctor is not None else types.SimpleNamespace(**fields)
    if isinstance(value, BatchSpec):
        fields = {k: materialise(v, impl) for k, v in value.fields.items()}
        ctor = getattr(impl, "DistillBatch", None)
        if ctor is not None:
            return ctor(**fields)
        names = (
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
        return types.SimpleNamespace(**{n: fields.get(n) for n in names})
    if isinstance(value, list):
        return [materialise(v, impl) for v in value]
    if isinstance(value, dict):
        return {k: materialise(v, impl) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Comparison:
    """Outcome of one elementwise comparison."""

    ok: bool
    rel_err: float
    detail: str = ""


def _as_float_array(x: Any) -> np.ndarray:
    if hasattr(x, "detach") and callable(x.detach):  # a torch tensor that still requires grad
        x = x.detach()
    if hasattr(x, "cpu") and callable(x.cpu) and not isinstance(x, np.ndarray):
        x = x.cpu()
    return np.asarray(x, dtype=np.float64)


def compare(actual: Any, expected: Any, tol: Tolerance) -> Comparison:
    """Compare ``actual`` with ``expected`` elementwise under ``tol`` (see the module docstring)."""
    try:
        a = _as_float_array(actual)
    except (TypeError, ValueError) as exc:
        return Comparison(False, math.inf, f"result is not array-like ({type(actual).__name__}: {exc})")
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        return Comparison(False, math.inf, f"shape {a.shape} != expected {e.shape}")
    if e.size == 0:
        return Comparison(True, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        same_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
        err = np.where(same_inf, 0.0, np.abs(a - e))
        err = np.where(np.isnan(err), np.inf, err)
        bound = tol.atol + tol.rtol * np.where(np.isinf(e), 0.0, np.abs(e))
        floor = tol.atol / tol.rtol if tol.rtol > 0 else tol.atol
        rel = err / np.maximum(np.where(np.isinf(e), 1.0, np.abs(e)), floor)
    bad = err > bound
    worst_rel = float(rel.max())
    if not bad.any():
        return Comparison(True, worst_rel)
    excess = np.where(bad, rel, -np.inf)
    i = np.unravel_index(int(np.argmax(excess)), e.shape) if e.ndim else ()
    where = f" at index {tuple(int(j) for j in i)}" if e.ndim else ""
    return Comparison(
        False,
        worst_rel,
        f"{int(bad.sum())}/{e.size} elements differ; worst{where}: actual {float(a[i])!r}, "
        f"expected {float(e[i])!r}, rel err {float(rel[i]):.3g} (rtol={tol.rtol:g}, atol={tol.atol:g})",
    )


# --------------------------------------------------------------------------------------------
# Running cases
# --------------------------------------------------------------------------------------------

PASS, FAIL, NOT_IMPLEMENTED, NOT_PROVIDED = "pass", "fail", "not implemented", "not provided"


@dataclasses.dataclass(frozen=True)
class Check:
    """One compared quantity of a case: ``value``, ``grad[...]``, ``diagnostics[...]``, …"""

    what: str
    status: str
    rel_err: float = 0.0
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class CaseResult:
    """All checks of one golden case."""

    function: str
    case: str
    checks: tuple[Check, ...]

    @property
    def status(self) -> str:
        statuses = {c.status for c in self.checks}
        if FAIL in statuses:
            return FAIL
        if any(c.status == NOT_IMPLEMENTED and c.what == "value" for c in self.checks):
            return NOT_IMPLEMENTED
        return PASS

    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]


def _describe_exception(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


def _grads_from_result(name: str, out: Any, wanted: Sequence[str]) -> dict[str, Any]:
    grad = getattr(out, "grad", None) if FUNCTIONS[name].kind == "loss" else None
    if isinstance(grad, Mapping):
        return {k: grad[k] for k in wanted if k in grad}
    return {}


def _grads_from_function(
    name: str, fn: Callable[..., Any], args: list[Any], kwargs: dict[str, Any], wanted: Sequence[str]
) -> dict[str, Any]:
    result = fn(*args, **kwargs)
    order = FUNCTIONS[name].grad_args
    if isinstance(result, Mapping):
        return {k: result[k] for k in wanted if k in result}
    if isinstance(result, tuple):
        if len(result) != len(order):
            raise ValueError(
                f"{name}_grad returned a tuple of {len(result)}, expected {len(order)} in the order {order}"
            )
        return {k: v for k, v in zip(order, result, strict=True) if k in wanted}
    if len(order) == 1:
        return {order[0]: result} if order[0] in wanted else {}
    raise ValueError(f"{name}_grad returned one array; expected a mapping or a tuple in the order {order}")


def run_case(impl: Any, case: Mapping[str, Any], tol_value: Tolerance, tol_grad: Tolerance) -> CaseResult:
    """Run one decoded golden case against ``impl``; every check carries its own status."""
    name: str = case["function"]
    cname: str = case["name"]
    expected: Mapping[str, Any] = case["expected"]
    info = FUNCTIONS.get(name)
    if info is None:
        return CaseResult(name, cname, (Check("value", FAIL, math.inf, f"unknown function {name!r}"),))
    if info.kind == "options":
        return _run_options_case(impl, name, cname, expected, tol_value)
    checks: list[Check] = []
    fn = getattr(impl, name, None)
    if fn is None:
        return CaseResult(name, cname, (Check("value", NOT_IMPLEMENTED),))
    raw_args: list[Any] = case.get("args", [])
    raw_kwargs: dict[str, Any] = case.get("kwargs", {})
    try:
        with np.errstate(all="ignore"):
            out = fn(*materialise(raw_args, impl), **materialise(raw_kwargs, impl))
    except NotImplementedError:
        return CaseResult(name, cname, (Check("value", NOT_IMPLEMENTED),))
    except Exception as exc:
        return CaseResult(name, cname, (Check("value", FAIL, math.inf, _describe_exception(exc)),))

    if info.kind == "loss":
        checks.extend(_loss_checks(out, expected, tol_value))
    else:
        c = compare(out, expected["value"], tol_value)
        checks.append(Check("value", PASS if c.ok else FAIL, c.rel_err, c.detail))

    wanted: list[str] = sorted(expected.get("grad", {}))
    if wanted:
        checks.extend(_check_grads(impl, name, out, raw_args, raw_kwargs, wanted, expected["grad"], tol_grad))
    return CaseResult(name, cname, tuple(checks))


def _run_options_case(
    impl: Any, name: str, cname: str, expected: Mapping[str, Any], tol_value: Tolerance
) -> CaseResult:
    """The defaults of ``impl.ASKDOptions()`` against the case's fields."""
    checks: list[Check] = []
    ctor = getattr(impl, "ASKDOptions", None)
    if ctor is None:
        return CaseResult(name, cname, (Check("value", NOT_IMPLEMENTED),))
    try:
        opts = ctor()
    except Exception as exc:
        return CaseResult(name, cname, (Check("value", FAIL, math.inf, _describe_exception(exc)),))
    want: OptionsSpec = expected["value"]
    for field, value in sorted(want.fields.items()):
        what = f"field[{field}]"
        if not hasattr(opts, field):
            checks.append(Check(what, FAIL, math.inf, f"ASKDOptions() has no field {field!r}"))
        elif isinstance(value, str) or isinstance(getattr(opts, field), str):
            got = getattr(opts, field)
            ok = got == value
            checks.append(
                Check(
                    what,
                    PASS if ok else FAIL,
                    0.0 if ok else math.inf,
                    "" if ok else f"default {got!r}, expected {value!r}",
                )
            )
        else:
            c = compare(getattr(opts, field), value, tol_value)
            checks.append(Check(what, PASS if c.ok else FAIL, c.rel_err, c.detail))
    return CaseResult(name, cname, tuple(checks))


def _loss_checks(out: Any, expected: Mapping[str, Any], tol_value: Tolerance) -> list[Check]:
    """Value, sample count and diagnostics of a loss output."""
    checks: list[Check] = []
    value = getattr(out, "loss", out)
    c = compare(value, expected["value"], tol_value)
    checks.append(Check("value", PASS if c.ok else FAIL, c.rel_err, c.detail))
    if "sample_count" in expected:
        got_count = getattr(out, "sample_count", None)
        if got_count is None:
            checks.append(Check("sample_count", NOT_PROVIDED))
        else:
            ok = int(got_count) == int(expected["sample_count"])
            checks.append(
                Check(
                    "sample_count",
                    PASS if ok else FAIL,
                    0.0 if ok else math.inf,
                    "" if ok else f"{got_count!r}, expected {expected['sample_count']!r}",
                )
            )
    diags = getattr(out, "diagnostics", None)
    for key, want_value in sorted(expected.get("diagnostics", {}).items()):
        what = f"diagnostics[{key}]"
        if not isinstance(diags, Mapping):
            checks.append(Check(what, NOT_PROVIDED))
        elif key not in diags:
            checks.append(Check(what, FAIL, math.inf, f"diagnostic {key!r} missing"))
        else:
            c = compare(diags[key], want_value, tol_value)
            checks.append(Check(what, PASS if c.ok else FAIL, c.rel_err, c.detail))
    return checks


def _check_grads(
    impl: Any,
    name: str,
    out: Any,
    raw_args: list[Any],
    raw_kwargs: dict[str, Any],
    wanted: Sequence[str],
    expected: Mapping[str, Any],
    tol: Tolerance,
) -> list[Check]:
    error: str | None = None
    got = _grads_from_result(name, out, wanted)
    missing = [k for k in wanted if k not in got]
    grad_fn = getattr(impl, f"{name}_grad", None)
    if missing and grad_fn is not None:
        try:
            with np.errstate(all="ignore"):
                more = _grads_from_function(
                    name, grad_fn, materialise(raw_args, impl), materialise(raw_kwargs, impl), missing
                )
            got.update(more)
        except NotImplementedError:
            pass
        except Exception as exc:
            error = f"{name}_grad raised {_describe_exception(exc)}"
        missing = [k for k in wanted if k not in got]
    hook = getattr(impl, "value_and_grad", None)
    if missing and error is None and hook is not None:
        try:
            with np.errstate(all="ignore"):
                _, more = hook(
                    name, materialise(raw_args, impl), materialise(raw_kwargs, impl), tuple(missing)
                )
            got.update({k: v for k, v in dict(more).items() if k in missing})
        except NotImplementedError:
            pass
        except Exception as exc:
            error = f"value_and_grad raised {_describe_exception(exc)}"
    checks: list[Check] = []
    for key in wanted:
        what = f"grad[{key}]"
        if error is not None and key not in got:
            checks.append(Check(what, FAIL, math.inf, error))
        elif key not in got:
            checks.append(Check(what, NOT_PROVIDED))
        else:
            c = compare(got[key], expected[key], tol)
            checks.append(Check(what, PASS if c.ok else FAIL, c.rel_err, c.detail))
    return checks


@dataclasses.dataclass(frozen=True)
class Report:
    """Results of a conformance run."""

    impl: str
    vectors: str
    dtype: str
    results: tuple[CaseResult, ...]
    strict: bool = False
    values_only: bool = False

    def by_function(self) -> dict[str, list[CaseResult]]:
        """Results grouped by function, in the order of :data:`FUNCTIONS`."""
        out: dict[str, list[CaseResult]] = {}
        for r in self.results:
            out.setdefault(r.function, []).append(r)
        order = list(FUNCTIONS)
        return dict(sorted(out.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == FAIL]

    @property
    def not_implemented(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == NOT_IMPLEMENTED]

    @property
    def not_provided(self) -> list[tuple[CaseResult, Check]]:
        return [(r, c) for r in self.results for c in r.checks if c.status == NOT_PROVIDED]

    @property
    def ok(self) -> bool:
        """No failed check; no "not provided" check unless ``values_only``; under ``strict`` also
        no "not implemented" case (and, unless ``values_only``, no "not provided" check)."""
        if self.failed:
            return False
        if self.not_provided and not self.values_only:
            return False
        return not (self.strict and self.not_implemented)


def run_conformance(
    impl: Any,
    vectors: Mapping[str, Any],
    *,
    functions: Iterable[str] | None = None,
    cases: str | None = None,
    dtype: str = "float64",
    strict: bool = False,
    values_only: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Report:
    """Run the golden cases of ``vectors`` (as :func:`load_vectors` returns them) on ``impl``.

    Args:
        impl: a module (or any object) exposing the §10 names.
        vectors: the raw golden-vector JSON object.
        functions: only these function names (default all).
        cases: only cases whose name matches this ``fnmatch`` pattern.
        dtype: the row of :data:`askd_ref.porting.tolerances.TOLERANCES` to compare with.
        strict: count "not implemented" cases as failures in :attr:`Report.ok`.
        values_only: accept "not provided" gradients, diagnostics and sample counts (by default
            a check the vectors hold and the port does not provide fails the run).
        progress: called with ``(done, total)`` after each case.
    """
    wanted = None if functions is None else set(functions)
    if wanted is not None and (unknown := wanted - set(FUNCTIONS)):
        raise ValueError(f"unknown function(s) {sorted(unknown)}; expected names from {list(FUNCTIONS)}")
    tol_value, tol_grad = tolerance(dtype, "value"), tolerance(dtype, "grad")
    selected = [
        c
        for c in vectors["cases"]
        if (wanted is None or c["function"] in wanted)
        and (cases is None or fnmatch.fnmatch(c["name"], cases))
    ]
    results: list[CaseResult] = []
    for i, raw in enumerate(selected):
        case = {k: decode(v) for k, v in raw.items()}
        results.append(run_case(impl, case, tol_value, tol_grad))
        if progress is not None:
            progress(i + 1, len(selected))
    impl_name = getattr(impl, "__name__", type(impl).__name__)
    return Report(str(impl_name), "", dtype, tuple(results), strict, values_only)


def _fmt_err(x: float) -> str:
    return "-" if x == 0.0 else ("inf" if math.isinf(x) else f"{x:.1e}")


def format_report(report: Report, *, max_failures: int = 50) -> str:
    """The per-function table, then every failing case (function, case, check, why)."""
    header = (
        f"{'function':<24} {'spec':<7} {'cases':>5} {'pass':>5} {'fail':>5} {'n/impl':>6} "
        f"{'grad n/p':>8} {'worst rel err':>13}  status"
    )
    source = f" against {report.vectors}" if report.vectors else ""
    lines = [
        f"conformance of {report.impl}{source} (tolerance row {report.dtype!r})",
        header,
        "-" * len(header),
    ]
    for name, results in report.by_function().items():
        n_pass = sum(r.status == PASS for r in results)
        n_fail = sum(r.status == FAIL for r in results)
        n_ni = sum(r.status == NOT_IMPLEMENTED for r in results)
        n_np = sum(c.status == NOT_PROVIDED for r in results for c in r.checks)
        worst = max((c.rel_err for r in results for c in r.checks if c.status in (PASS, FAIL)), default=0.0)
        if n_fail:
            status = "FAIL"
        elif n_ni == len(results):
            status = "not implemented"
        elif n_ni:
            status = "partial"
        elif n_np:
            status = "pass (values only)" if report.values_only else "FAIL (not provided)"
        else:
            status = "pass"
        label = FUNCTIONS[name].label if name in FUNCTIONS else "?"
        lines.append(
            f"{name:<24} {label:<7} {len(results):>5} {n_pass:>5} {n_fail:>5} {n_ni:>6} {n_np:>8} "
            f"{_fmt_err(worst):>13}  {status}"
        )
    failed = report.failed
    n_checks_np = len(report.not_provided)
    lines.append("-" * len(header))
    lines.append(
        f"{len(report.results)} cases: {len(report.results) - len(failed) - len(report.not_implemented)} "
        f"passed, {len(failed)} failed, {len(report.not_implemented)} not implemented; "
        f"{n_checks_np} gradient/diagnostic checks not provided"
        + ("" if not n_checks_np or report.values_only else " (a failure without --values-only)")
    )
    if failed:
        lines.append("")
        lines.append("FAILURES (function [case] check: why)")
        shown = 0
        for r in failed:
            for c in r.failures():
                if shown < max_failures:
                    lines.append(f"FAIL {r.function} [{r.case}] {c.what}: {c.detail}")
                shown += 1
        if shown > max_failures:
            lines.append(f"... and {shown - max_failures} more failing checks")
    modes = [m for m, on in (("strict", report.strict), ("values only", report.values_only)) if on]
    lines.append("RESULT: " + ("PASS" if report.ok else "FAIL") + (f" ({', '.join(modes)})" if modes else ""))
    return "\n".join(lines)


def load_impl(spec: str) -> types.ModuleType:
    """Import ``spec``: a dotted module name, or a path to a ``.py`` file."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"--impl {spec}: no such file")
        mod_name = f"_askd_conformance_impl_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(mod_name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ImportError(f"cannot import {spec}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[mod_name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``python -m askd_ref.conformance``); returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m askd_ref.conformance",
        description="Check an implementation of the ASKD spec §10 names against the golden vectors.",
    )
    parser.add_argument(
        "--impl", required=True, help="module exposing the §10 names: a dotted name or a path to a .py file"
    )
    parser.add_argument(
        "--vectors", default=None, help="golden-vector file (default the newest, vectors/askd-v2.json)"
    )
    parser.add_argument("--functions", default=None, help="comma-separated function names (default all)")
    parser.add_argument("--cases", default=None, help="fnmatch pattern on case names, e.g. 'sgo_loss/*'")
    dtypes = sorted({d for d, _ in TOLERANCES})
    parser.add_argument(
        "--dtype",
        default="float64",
        choices=dtypes,
        help="tolerance row of askd_ref.porting.tolerances (default float64)",
    )
    parser.add_argument("--strict", action="store_true", help="count 'not implemented' cases as failures")
    parser.add_argument(
        "--values-only",
        action="store_true",
        help="accept a port that provides no gradients (or diagnostics, sample counts): check values only",
    )
    parser.add_argument("--max-failures", type=int, default=50, help="failing checks to list (default 50)")
    args = parser.parse_args(argv)
    try:
        vectors = load_vectors(args.vectors)
        impl = load_impl(args.impl)
        functions = (
            None if args.functions is None else [f.strip() for f in args.functions.split(",") if f.strip()]
        )
        report = run_conformance(
            impl,
            vectors,
            functions=functions,
            cases=args.cases,
            dtype=args.dtype,
            strict=args.strict,
            values_only=args.values_only,
        )
        report = dataclasses.replace(
            report, impl=args.impl, vectors=str(args.vectors or default_vectors_path())
        )
    except (OSError, ValueError, ImportError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, max_failures=args.max_failures))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
