"""The one dtype → tolerance table of askd-ref (tests, checks, conformance and benchmarks).

Comparisons are ``|actual − expected| ≤ atol + rtol·|expected|``, elementwise. Each row says
what the comparison is between and why the numbers are what they are. A test that needs
something else must use :func:`override` and give its reason, so every exception is visible.

* ``float64``: implementation vs the float64 NumPy reference (``askd_ref.porting.reference``) on the
  same inputs. Both are exact formulas evaluated in double precision, written differently;
  1e-10 relative is the bar of the core issue, 1e-12 absolute absorbs values near 0.
* ``float32``: float32 implementation vs the float64 reference evaluated on the float32
  inputs (upcast). Float32 unit roundoff is 6e-8; log-sum-exps over a vocabulary and sums over
  tokens lose a few hundred ulps.
* ``bfloat16`` / ``float16``: half-precision inputs are computed in float32 (spec §2), so
  *values* keep float32 accuracy against the reference evaluated on the rounded inputs; the
  *gradients* come back in the input dtype and carry its rounding (unit roundoff 2^-8 for
  bf16, 2^-11 for fp16), hence the separate gradient rows.
* ``value_e2e`` / ``grad_e2e`` / ``grad_e2e_fp32`` (bf16, fp16): the end-to-end path from half
  *logits*, against float64 from the same rounded logits. A half log_softmax rounds every
  log-prob (relative 2^-8 in bf16), so p = exp(log p) is off by up to 2^-8·|log p| (≈ 12 % at
  |log p| = 32, the tail of a 151936-word vocabulary); gradients w.r.t. the logits are compared
  after dividing by their largest entry (``atol`` is a fraction of it, ``rtol`` 0), since most
  entries are ~1/V. With a float32 log_softmax only the final cast of ∂L/∂z rounds
  (``grad_e2e_fp32``). ``docs/reliability.md`` has the measured errors and the derivation.
"""

import dataclasses

import numpy as np

__all__ = ["TOLERANCES", "Tolerance", "assert_close", "override", "tolerance"]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """An (rtol, atol) pair, with the reason it exists."""

    rtol: float
    atol: float
    reason: str = ""


#: (dtype name, quantity) → tolerance. ``quantity`` is ``"value"`` or ``"grad"``.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "value"): Tolerance(1e-10, 1e-12, "double vs double, different formulas"),
    ("float64", "grad"): Tolerance(1e-10, 1e-12, "double vs double, different formulas"),
    ("float32", "value"): Tolerance(2e-5, 1e-6, "fp32 log-sum-exp and token sums"),
    ("float32", "grad"): Tolerance(2e-5, 1e-6, "fp32 log-sum-exp and token sums"),
    ("bfloat16", "value"): Tolerance(2e-5, 1e-6, "computed in fp32 from the rounded inputs"),
    ("bfloat16", "grad"): Tolerance(1.6e-2, 1e-5, "gradient returned in bf16 (2^-8 roundoff)"),
    ("float16", "value"): Tolerance(2e-5, 1e-6, "computed in fp32 from the rounded inputs"),
    ("float16", "grad"): Tolerance(2e-3, 1e-5, "gradient returned in fp16 (2^-11 roundoff)"),
    # End to end from half logits (tests/test_half_precision.py, docs/reliability.md): "value_e2e"
    # compares the loss, "grad_e2e*" compare ∂L/∂logits divided by its largest reference entry.
    ("bfloat16", "value_e2e"): Tolerance(2**-8 * 16, 1e-6, "bf16 log_softmax: 2^-8 × |log p| ≤ 16"),
    ("float16", "value_e2e"): Tolerance(2**-11 * 16, 1e-6, "fp16 log_softmax: 2^-11 × |log p| ≤ 16"),
    ("bfloat16", "grad_e2e"): Tolerance(0.0, 2**-8 * 128, "bf16 log_softmax: exp(log p) errs 2^-8·32, ×4"),
    ("float16", "grad_e2e"): Tolerance(0.0, 2**-11 * 128, "fp16 log_softmax: exp(log p) errs 2^-11·32, ×4"),
    ("bfloat16", "grad_e2e_fp32"): Tolerance(0.0, 2**-7, "fp32 log_softmax, ∂L/∂z cast to bf16: 2·2^-8"),
    ("float16", "grad_e2e_fp32"): Tolerance(0.0, 2**-10, "fp32 log_softmax, ∂L/∂z cast to fp16: 2·2^-11"),
}


def _dtype_name(dtype: object) -> str:
    name = str(dtype)
    return name.removeprefix("torch.")


def tolerance(dtype: object, quantity: str = "value") -> Tolerance:
    """The table entry for ``dtype`` (a torch or NumPy dtype, or its name) and ``quantity``.

    >>> tolerance("float64").rtol
    1e-10
    """
    key = (_dtype_name(dtype), quantity)
    if key not in TOLERANCES:
        raise KeyError(f"no tolerance for dtype {key[0]!r} and quantity {quantity!r}")
    return TOLERANCES[key]


def override(
    base: Tolerance, *, rtol: float | None = None, atol: float | None = None, reason: str
) -> Tolerance:
    """A deliberate exception to the table; ``reason`` is mandatory and shows up in failures."""
    if not reason.strip():
        raise ValueError("a tolerance override needs a reason")
    return Tolerance(base.rtol if rtol is None else rtol, base.atol if atol is None else atol, reason)


def assert_close(actual: object, expected: object, tol: Tolerance, *, what: str = "") -> None:
    """Assert elementwise closeness; the message gives the worst element, its error and the rule.

    Both arguments are converted with ``np.asarray`` (torch tensors: detach/cpu/float64 first).
    NaN never equals anything; equal infinities compare equal.
    """
    a = _to_numpy(actual)
    e = _to_numpy(expected)
    if a.shape != e.shape:
        raise AssertionError(f"{what}: shape {a.shape} != expected {e.shape}")
    both_inf = np.isinf(a) & np.isinf(e) & (np.sign(a) == np.sign(e))
    err = np.where(both_inf, 0.0, np.abs(a - e))
    bound = tol.atol + tol.rtol * np.abs(np.where(np.isinf(e), 0.0, e))
    bad = ~(err <= bound)
    if bad.any():
        i = np.unravel_index(int(np.argmax(np.where(bad, err - bound, -np.inf))), a.shape) if a.ndim else ()
        rel = err[i] / max(abs(float(e[i])), 1e-300)
        raise AssertionError(
            f"{what}: {int(bad.sum())}/{a.size} elements differ; worst at {tuple(int(j) for j in i)}: "
            f"actual {float(a[i])!r}, expected {float(e[i])!r}, abs err {float(err[i]):.3g}, "
            f"rel err {rel:.3g} (rtol={tol.rtol:g}, atol={tol.atol:g}; {tol.reason})"
        )


def _to_numpy(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)
