"""Conformance runner: both implementations pass, wrong ports fail naming function and case.

The wrong ports below are the porting mistakes of ``docs/porting.md``, each injected into an
otherwise correct implementation (the NumPy reference); every one must FAIL the runner on the
golden case the guide names for it, with a message that says the function and the case.
"""

import dataclasses
import fnmatch
import math
import re
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from askd_ref.porting import conformance as cf
from askd_ref.porting import reference as ref
from askd_ref.porting import vectors as gv
from askd_ref.porting.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "numpy_port.py"
PORTING = ROOT / "docs" / "porting.md"


@pytest.fixture(scope="module")
def vectors() -> dict[str, Any]:
    return cf.load_vectors()  # the newest file, askd-v2.json


@pytest.fixture(scope="module")
def vectors_v1() -> dict[str, Any]:
    return cf.load_vectors(cf.default_vectors_path(1))


def test_torch_adapter_passes_every_case_with_every_check(vectors: dict[str, Any]) -> None:
    from askd_ref.porting import conformance_torch

    report = cf.run_conformance(conformance_torch, vectors, strict=True)
    assert report.ok, cf.format_report(report)
    assert len(report.results) == len(vectors["cases"])
    assert not report.not_provided
    assert not report.not_implemented


def test_numpy_reference_passes(vectors_v1: dict[str, Any]) -> None:
    vectors = vectors_v1
    report = cf.run_conformance(ref, vectors, values_only=True)
    assert report.ok, cf.format_report(report)
    assert not report.failed
    assert not report.not_implemented
    # every value, gradient and diagnostic is checked, except the reference's missing
    # sequence_log_ratio_grad (reported, not silently passed)
    missing = {(r.function, c.what) for r, c in report.not_provided}
    assert missing <= {("sequence_log_ratio", "grad[student_token_logp]")}, missing
    checked_grads = sum(
        c.what.startswith("grad[") and c.status == cf.PASS for r in report.results for c in r.checks
    )
    assert checked_grads > 250


#: The v2 checks the probability-space reference fails: KL as Σ p·log(p/q) on probabilities
#: (by design, its docstring says so) and its sgo/srkl_estimate diagnostic, computed as
#: log(1/(α + (1−α)e^{−Δ})) in floats.
REFERENCE_V2_FAILURES = {
    ("forward_kl/underflow", "value"),
    ("reverse_kl/underflow", "value"),
    ("reverse_kl/underflow", "grad[student_logits]"),
    ("skew_forward_kl/underflow/alpha=0/full", "value"),
    ("skew_forward_kl/underflow/alpha=0/full", "grad[student_logits]"),
    ("skew_forward_kl/underflow/alpha=0/stop", "value"),
    ("skew_reverse_kl/underflow/alpha=0/full", "value"),
    ("skew_reverse_kl/underflow/alpha=0/full", "grad[student_logits]"),
    ("skew_reverse_kl/underflow/alpha=0/stop", "value"),
    ("skew_reverse_kl/underflow/alpha=0/stop", "grad[student_logits]"),
    ("sgo_loss/huge_delta/sum", "diagnostics[sgo/srkl_estimate]"),
}


def test_numpy_reference_on_v2_fails_only_where_probabilities_underflow(vectors: dict[str, Any]) -> None:
    report = cf.run_conformance(ref, vectors, values_only=True)
    failed = {(r.case, c.what) for r in report.failed for c in r.failures()}
    assert failed == REFERENCE_V2_FAILURES, cf.format_report(report)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = (
        "import sys, askd_ref.porting.conformance as c\n"
        "rc = c.main(sys.argv[1:])\n"
        "print('TORCH_IMPORTED=' + str('torch' in sys.modules))\n"
        "sys.exit(rc)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )


def test_runner_cli_needs_no_torch_and_passes_the_reference() -> None:
    proc = _run_cli(
        "--impl", "askd_ref.porting.reference", "--vectors", "vectors/askd-v1.json", "--values-only"
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "RESULT: PASS (values only)" in proc.stdout
    assert "TORCH_IMPORTED=False" in proc.stdout, "the conformance runner (or the reference) imported torch"


def test_example_port_passes_the_functions_it_implements(vectors: dict[str, Any]) -> None:
    port = cf.load_impl(str(EXAMPLE))
    report = cf.run_conformance(port, vectors)
    assert report.ok, cf.format_report(report)
    by_fn = report.by_function()
    for name in ("tgo_coefficient", "sgo_coefficient", "clipped_sgo_coefficient"):
        assert all(r.status == cf.PASS for r in by_fn[name]), name
    # analytic gradients of E5, E6 and E9 (the right derivative at the kink) are all checked
    for name in ("tgo_coefficient", "sgo_coefficient", "clipped_sgo_coefficient"):
        assert all(c.status == cf.PASS for r in by_fn[name] for c in r.checks), name
    assert not report.not_provided
    others = [
        r
        for r in report.results
        if r.function not in ("tgo_coefficient", "sgo_coefficient", "clipped_sgo_coefficient")
    ]
    assert others
    assert all(r.status == cf.NOT_IMPLEMENTED for r in others)
    text = cf.format_report(report)
    assert re.search(r"forward_kl\s+E1\s+8\s+0\s+0\s+8\s+0\s+-\s+not implemented", text), text
    strict = cf.run_conformance(port, vectors, strict=True)
    assert not strict.ok


def test_example_port_cli_exit_codes() -> None:
    proc = _run_cli("--impl", str(EXAMPLE.relative_to(ROOT)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "not implemented" in proc.stdout
    assert "TORCH_IMPORTED=False" in proc.stdout
    strict = _run_cli("--impl", str(EXAMPLE.relative_to(ROOT)), "--strict")
    assert strict.returncode == 1
    assert "RESULT: FAIL (strict)" in strict.stdout


def test_the_example_is_about_ten_lines_per_function() -> None:
    code = [ln for ln in EXAMPLE.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    body = code[code.index(next(ln for ln in code if ln.startswith("def tgo_coefficient("))) :]
    body = body[: body.index(next(ln for ln in body if ln.startswith("def tgo_coefficient_grad")))]
    assert len(body) <= 25, f"the E5/E6/E9 port grew to {len(body)} lines"


# --------------------------------------------------------------------------------------------
# Deliberately wrong ports
# --------------------------------------------------------------------------------------------


def _port(name: str, **overrides: Any) -> types.ModuleType:
    """The reference with some names replaced (the rest still correct)."""
    module = types.ModuleType(f"wrong_port_{name}")
    for key in dir(ref):
        if not key.startswith("__"):
            setattr(module, key, getattr(ref, key))
    for key, value in overrides.items():
        setattr(module, key, value)
    return module


def _uncentred() -> types.ModuleType:
    """c = log u + 1 − αu: the exact per-sample gradient coefficient before centring (E6)."""

    def sgo(delta: Any, alpha: Any, *, mixture_grad: str = "full") -> Any:
        c = ref.sgo_coefficient(delta, alpha, mixture_grad=mixture_grad)
        return c + (1 - np.asarray(alpha)) if mixture_grad == "full" else c

    return _port("uncentred", sgo_coefficient=sgo)


def _alpha_on_student() -> types.ModuleType:
    """SKL with the mixture (1−α)p + αq, i.e. α on the wrong distribution (E2)."""

    def skl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        return ref.skew_forward_kl(
            teacher_logp=teacher_logp,
            student_logp=student_logp,
            alpha=1 - np.asarray(alpha),
            mixture_grad=mixture_grad,
        )

    def skl_grad(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        return ref.skew_forward_kl_grad(
            teacher_logp=teacher_logp,
            student_logp=student_logp,
            alpha=1 - np.asarray(alpha),
            mixture_grad=mixture_grad,
        )

    return _port("alpha_on_student", skew_forward_kl=skl, skew_forward_kl_grad=skl_grad)


def _cross_entropy_skl() -> types.ModuleType:
    """DistiLLM's −Σ p log m instead of the divergence (E2 value = SKL + H(p))."""

    def skl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        t = np.asarray(teacher_logp)
        entropy = -np.sum(np.where(np.isneginf(t), 0.0, np.exp(t) * np.where(np.isneginf(t), 0.0, t)), -1)
        return (
            ref.skew_forward_kl(
                teacher_logp=t, student_logp=student_logp, alpha=alpha, mixture_grad=mixture_grad
            )
            + entropy
        )

    return _port("cross_entropy", skew_forward_kl=skl)


def _swap_normalize(options: Any) -> Any:
    opts = options or ref.ASKDOptions()
    return dataclasses.replace(opts, normalize="sum" if opts.normalize == "mean" else "mean")


def _mean_sum_swap() -> types.ModuleType:
    """normalize='mean' computed as a sum and vice versa (Δ, S and the gradient spread)."""

    def tgo(**kw: Any) -> Any:
        return ref.tgo_loss(**{**kw, "options": _swap_normalize(kw.get("options"))})

    def slr(student_token_logp: Any, teacher_token_logp: Any, mask: Any, *, normalize: str) -> Any:
        return ref.sequence_log_ratio(
            student_token_logp, teacher_token_logp, mask, normalize="sum" if normalize == "mean" else "mean"
        )

    return _port("mean_sum_swap", tgo_loss=tgo, sequence_log_ratio=slr)


def _roles_swapped() -> types.ModuleType:
    """forward_kl computing KL(q‖p): teacher and student roles swapped (F.kl_div's order)."""

    def fkl(*, teacher_logp: Any, student_logp: Any) -> Any:
        return ref.reverse_kl(teacher_logp=teacher_logp, student_logp=student_logp)

    return _port("roles_swapped", forward_kl=fkl, forward_kl_grad=ref.reverse_kl_grad)


def _stop_full_swapped() -> types.ModuleType:
    """SRKL's 'full' gradient computed with the mixture detached ('stop')."""

    def grad(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        return ref.skew_reverse_kl_grad(
            teacher_logp=teacher_logp,
            student_logp=student_logp,
            alpha=alpha,
            mixture_grad="stop" if mixture_grad == "full" else "full",
        )

    return _port("stop_full_swapped", skew_reverse_kl_grad=grad)


def _negate(out: Any) -> Any:
    return dataclasses.replace(out, loss=-out.loss, grad={k: -v for k, v in out.grad.items()})


def _sign_flipped() -> types.ModuleType:
    """The surrogate +sg(w)·S on TGOs instead of −sg(w)·S."""
    return _port("sign_flipped", tgo_loss=lambda **kw: _negate(ref.tgo_loss(**kw)))


def _local_counts() -> types.ModuleType:
    """askd_loss that ignores the global counts (mean per micro-batch, TRL #4719)."""

    def askd(batch: Any, *, options: Any = None, num_tgo: Any = None, num_sgo: Any = None) -> Any:
        return ref.askd_loss(batch, options=options)

    return _port("local_counts", askd_loss=askd)


def _beta_on_student() -> types.ModuleType:
    """JSD with M = (1−β)p + βq (TRL PR #3043's swapped mixture weights)."""

    def jsd(*, teacher_logp: Any, student_logp: Any, beta: Any) -> Any:
        return ref.generalized_jsd(
            teacher_logp=teacher_logp, student_logp=student_logp, beta=1 - np.asarray(beta)
        )

    return _port("beta_on_student", generalized_jsd=jsd)


def _jsd_endpoints_as_kl() -> types.ModuleType:
    """TRL's special case: JSD at β = 0 returns KL(p‖q) instead of 0."""

    def jsd(*, teacher_logp: Any, student_logp: Any, beta: Any) -> Any:
        out = ref.generalized_jsd(teacher_logp=teacher_logp, student_logp=student_logp, beta=beta)
        fkl = ref.forward_kl(teacher_logp=teacher_logp, student_logp=student_logp)
        return np.where(np.asarray(beta) == 0.0, fkl, out)

    return _port("jsd_endpoints", generalized_jsd=jsd)


def _adaptive_pullup_by_default() -> types.ModuleType:
    """E9 pull-up taken at α_S(r) instead of the fixed α_lo (the 'adaptive' variant as default)."""

    def clipped(delta: Any, quality: Any, *, options: Any = None) -> Any:
        opts = dataclasses.replace(options or ref.ASKDOptions(), sgo_pullup="adaptive")
        return ref.clipped_sgo_coefficient(delta, quality, options=opts)

    return _port("adaptive_pullup", clipped_sgo_coefficient=clipped)


def _behaviour_ignored() -> types.ModuleType:
    """Off-policy SGOs trained as if on-policy (no importance ratio, E13)."""

    def sgo(**kw: Any) -> Any:
        kw.pop("behaviour_logp", None)
        return ref.sgo_loss(**kw)

    return _port("behaviour_ignored", sgo_loss=sgo)


def _sample_std_advantages() -> types.ModuleType:
    """Group advantages normalised by the sample std (n − 1) instead of the population std."""

    def advantages(quality: Any, group: Any, eps: float = 1e-4) -> Any:
        r, g = np.asarray(quality, dtype=float), np.asarray(group)
        out = np.empty_like(r)
        for gid in np.unique(g):
            idx = g == gid
            std = float(np.std(r[idx], ddof=1)) if idx.sum() > 1 else 0.0
            out[idx] = (r[idx] - r[idx].mean()) / (std + eps)
        return out

    def loss(batch: Any, **kw: Any) -> Any:
        with mock.patch.object(ref, "group_advantages", advantages):
            return ref.advantage_kd_loss(batch, **kw)

    return _port("sample_std", advantage_kd_loss=loss)


def _advantages_over_all_rows() -> types.ModuleType:
    """Group statistics over every row of a prompt (TGOs included) instead of its SGOs only."""

    def loss(batch: Any, **kw: Any) -> Any:
        everyone = ref.group_advantages(batch.quality, batch.group)
        sgo_rows = ~np.asarray(batch.is_tgo)
        with mock.patch.object(ref, "group_advantages", return_value=everyone[sgo_rows]):
            return ref.advantage_kd_loss(batch, **kw)

    return _port("all_rows", advantage_kd_loss=loss)


#: (mistake, wrong port, function, the golden case docs/porting.md says catches it)
WRONG_PORTS: list[tuple[str, Callable[[], types.ModuleType], str, str]] = [
    ("uncentred c", _uncentred, "sgo_coefficient", "sgo_coefficient/grid/full"),
    (
        "alpha on the wrong distribution",
        _alpha_on_student,
        "skew_forward_kl",
        "skew_forward_kl/ordinary/alpha=0.1/full",
    ),
    (
        "cross-entropy form of SKL",
        _cross_entropy_skl,
        "skew_forward_kl",
        "skew_forward_kl/identical/alpha=0.1/full",
    ),
    ("mean vs sum (sequence)", _mean_sum_swap, "sequence_log_ratio", "sequence_log_ratio/ordinary/mean"),
    ("mean vs sum (loss)", _mean_sum_swap, "tgo_loss", "tgo_loss/mean"),
    ("teacher/student roles swapped", _roles_swapped, "forward_kl", "forward_kl/ordinary"),
    (
        "stop vs full mixture gradient",
        _stop_full_swapped,
        "skew_reverse_kl",
        "skew_reverse_kl/ordinary/alpha=0.1/full",
    ),
    ("surrogate sign", _sign_flipped, "tgo_loss", "tgo_loss/options=None"),
    (
        "local instead of global counts",
        _local_counts,
        "askd_loss",
        "askd_loss/accumulation/num_tgo=8,num_sgo=5",
    ),
    ("beta on the student in JSD", _beta_on_student, "generalized_jsd", "generalized_jsd/ordinary/beta=0.1"),
    (
        "JSD endpoints special-cased to KL",
        _jsd_endpoints_as_kl,
        "generalized_jsd",
        "generalized_jsd/ordinary/beta=0",
    ),
    (
        "pull-up at alpha_S instead of alpha_lo",
        _adaptive_pullup_by_default,
        "clipped_sgo_coefficient",
        "clipped_sgo_coefficient/grid/full,soft,fixed,linear",
    ),
    ("off-policy ratio ignored", _behaviour_ignored, "sgo_loss", "sgo_loss/off_policy/mean,full,soft"),
    (
        "sample std in group advantages",
        _sample_std_advantages,
        "advantage_kd_loss",
        "advantage_kd_loss/ordinary",
    ),
    (
        "group advantages over all rows",
        _advantages_over_all_rows,
        "advantage_kd_loss",
        "advantage_kd_loss/ordinary",
    ),
]


@pytest.mark.parametrize(
    ("mistake", "build", "function", "case"), WRONG_PORTS, ids=[w[0] for w in WRONG_PORTS]
)
def test_wrong_port_fails_naming_function_and_case(
    vectors: dict[str, Any], mistake: str, build: Callable[[], types.ModuleType], function: str, case: str
) -> None:
    report = cf.run_conformance(build(), vectors, functions=[function])
    assert not report.ok, f"the {mistake!r} port passed"
    failed = {r.case for r in report.failed}
    assert case in failed, f"{case} did not catch {mistake!r}; failing cases: {sorted(failed)}"
    text = cf.format_report(report, max_failures=10_000)
    assert re.search(rf"^FAIL {re.escape(function)} \[{re.escape(case)}\] ", text, re.M), text
    assert "RESULT: FAIL" in text


# --------------------------------------------------------------------------------------------
# Deliberately wrong ports that float64 forgives at the version-1 inputs (vectors v2)
# --------------------------------------------------------------------------------------------


def _on(base: Any, name: str, **overrides: Any) -> types.ModuleType:
    """``base`` (a module) with some names replaced."""
    module = types.ModuleType(f"wrong_port_{name}")
    for key in dir(base):
        if not key.startswith("__"):
            setattr(module, key, getattr(base, key))
    for key, value in overrides.items():
        setattr(module, key, value)
    return module


def _torch_port(name: str, **overrides: Any) -> types.ModuleType:
    from askd_ref.porting import conformance_torch

    return _on(conformance_torch, name, **overrides)


def _numpy_example(name: str, **overrides: Any) -> types.ModuleType:
    port = cf.load_impl(str(EXAMPLE))  # a fresh module: its functions see the overrides
    for key, value in overrides.items():
        setattr(port, key, value)
    port.__name__ = f"wrong_port_{name}"
    return port


def _kl_terms(x: Any, log_m: Any) -> Any:
    """Σ_v e^{x_v}(x_v − log m_v), with the usual guard for −inf (masked) entries."""
    x = np.asarray(x, dtype=float)
    return np.sum(np.where(np.isneginf(x), 0.0, np.exp(x) * (x - log_m)), -1)


def _divergence_port(name: str, log_mix: Callable[[Any, Any, Any], Any]) -> types.ModuleType:
    """SKL, SRKL (and JSD) with log m from ``log_mix(first, other, weight of first)``."""

    def col(a: Any) -> Any:
        return np.asarray(a, dtype=float)[..., None]

    def skl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        return _kl_terms(teacher_logp, log_mix(teacher_logp, student_logp, col(alpha)))

    def srkl(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
        return _kl_terms(student_logp, log_mix(student_logp, teacher_logp, col(alpha)))

    def jsd(*, teacher_logp: Any, student_logp: Any, beta: Any) -> Any:
        b = np.asarray(beta, dtype=float)
        log_m = log_mix(teacher_logp, student_logp, col(beta))
        return b * _kl_terms(teacher_logp, log_m) + (1 - b) * _kl_terms(student_logp, log_m)

    return _torch_port(name, skew_forward_kl=skl, skew_reverse_kl=srkl, generalized_jsd=jsd)


def _probability_space_mixture() -> types.ModuleType:
    """m = αp + (1−α)q formed from exponentiated log-probs, log m = log(m)."""
    return _divergence_port(
        "probability_space",
        lambda x, y, a: np.log(a * np.exp(np.asarray(x)) + (1 - a) * np.exp(np.asarray(y))),
    )


def _naive_log_mixture() -> types.ModuleType:
    """log m = x + log(a + (1−a)·exp(y − x)) for the mixtures (JSD left correct)."""
    port = _divergence_port(
        "naive_log_mixture",
        lambda x, y, a: np.asarray(x) + np.log(a + (1 - a) * np.exp(np.asarray(y) - np.asarray(x))),
    )
    from askd_ref.porting import conformance_torch

    port.generalized_jsd = conformance_torch.generalized_jsd  # type: ignore[attr-defined]

    def sgo(delta: Any, alpha: Any, *, mixture_grad: str = "full") -> Any:
        log_u = -np.log(alpha + (1 - np.asarray(alpha)) * np.exp(-np.asarray(delta)))
        return log_u if mixture_grad == "stop" else log_u - alpha * np.expm1(log_u)

    port.sgo_coefficient = sgo  # type: ignore[attr-defined]
    example = _numpy_example("naive_log_coefficient", sgo_coefficient=sgo)
    port.clipped_sgo_coefficient = example.clipped_sgo_coefficient  # type: ignore[attr-defined]
    port.clipped_sgo_coefficient_grad = example.clipped_sgo_coefficient_grad  # type: ignore[attr-defined]
    return port


def _kl_ratio_in_probabilities() -> types.ModuleType:
    """KL as Σ p·log(p/q) on probabilities: the reference's own plain KL (it works in p-space)."""

    def skew(reference_fn: Callable[..., Any], plain: Callable[..., Any]) -> Callable[..., Any]:
        def fn(*, teacher_logp: Any, student_logp: Any, alpha: Any, mixture_grad: str = "full") -> Any:
            if np.all(np.asarray(alpha) == 0.0):
                return plain(teacher_logp=teacher_logp, student_logp=student_logp)
            return reference_fn(
                teacher_logp=teacher_logp, student_logp=student_logp, alpha=alpha, mixture_grad=mixture_grad
            )

        return fn

    from askd_ref.porting import conformance_torch as ct

    return _torch_port(
        "kl_ratio",
        forward_kl=ref.forward_kl,
        reverse_kl=ref.reverse_kl,
        skew_forward_kl=skew(ct.skew_forward_kl, ref.forward_kl),
        skew_reverse_kl=skew(ct.skew_reverse_kl, ref.reverse_kl),
    )


def _naive_w(delta: Any, alpha: Any) -> Any:
    e = np.exp(np.asarray(delta, dtype=float))
    return (1 - np.asarray(alpha)) * e / (alpha + (1 - np.asarray(alpha)) * e)


def _naive_u_coefficient(delta: Any, alpha: Any, *, mixture_grad: str = "full") -> Any:
    u = 1 / (alpha + (1 - np.asarray(alpha)) * np.exp(-np.asarray(delta, dtype=float)))
    return np.log(u) if mixture_grad == "stop" else np.log(u) - alpha * (u - 1)


def _naive_w_port() -> types.ModuleType:
    """w = (1−α)e^Δ/(α + (1−α)e^Δ) in floats, in E5 and in the TGO loss."""

    def tgo(**kw: Any) -> Any:
        with mock.patch.object(ref, "tgo_coefficient", _naive_w):
            return ref.tgo_loss(**kw)

    return _port("naive_w", tgo_coefficient=_naive_w, tgo_loss=tgo)


def _naive_u_port() -> types.ModuleType:
    """u = 1/(α + (1−α)e^{−Δ}) in floats, then log u: in E6/E7, E9 and the SGO loss."""
    example = _numpy_example("naive_u", sgo_coefficient=_naive_u_coefficient)

    def sgo(**kw: Any) -> Any:
        with mock.patch.object(ref, "clipped_sgo_coefficient", example.clipped_sgo_coefficient):
            return ref.sgo_loss(**kw)

    return _port(
        "naive_u",
        sgo_coefficient=_naive_u_coefficient,
        clipped_sgo_coefficient=example.clipped_sgo_coefficient,
        clipped_sgo_coefficient_grad=example.clipped_sgo_coefficient_grad,
        sgo_loss=sgo,
    )


def _kink_port(name: str, left: float, right: float) -> types.ModuleType:
    """∂ĉ/∂Δ at Δ = 0 as ``left``·(left derivative) + ``right``·(right derivative) of each branch.

    (0, 1) is the right derivative askd-ref records; (1, 0) the left one; (0.5, 0.5) what
    ``jnp.maximum``/``jnp.minimum`` give at a tie; (1, 1) what ``torch.clamp`` gives.
    """
    port = _numpy_example(name)

    def grad(delta: Any, quality: Any, *, options: Any = None) -> Any:
        o, d = options or port.DEFAULTS, np.asarray(delta, dtype=float)
        a_s, h = port.alpha_s_and_gate(np.asarray(quality, dtype=float), o)
        dc_s = port.sgo_coefficient_grad(d, a_s, mixture_grad=o.mixture_grad)[0]
        on = np.where(d > 0, 1.0, np.where(d < 0, 0.0, right))  # weight of the max(c, 0) branch
        push_down = on * dc_s
        if o.sgo_pullup == "adaptive":
            return dc_s - h * push_down
        dc_lo = port.sgo_coefficient_grad(d, np.full_like(d, o.alpha_lo), mixture_grad=o.mixture_grad)[0]
        return np.where(d < 0, 1.0, np.where(d > 0, 0.0, left)) * dc_lo + (1 - h) * push_down

    port.clipped_sgo_coefficient_grad = grad  # type: ignore[attr-defined]
    return port


#: (mistake as vectors v2 names it in ``catches``, wrong port, functions it replaces)
V2_WRONG_PORTS: list[tuple[str, Callable[[], types.ModuleType], tuple[str, ...]]] = [
    (
        gv.PROBABILITY_SPACE,
        _probability_space_mixture,
        ("skew_forward_kl", "skew_reverse_kl", "generalized_jsd"),
    ),
    (
        gv.NAIVE_LOG_MIXTURE,
        _naive_log_mixture,
        ("skew_forward_kl", "skew_reverse_kl", "sgo_coefficient", "clipped_sgo_coefficient"),
    ),
    (
        gv.KL_RATIO_IN_PROBABILITIES,
        _kl_ratio_in_probabilities,
        ("forward_kl", "reverse_kl", "skew_forward_kl", "skew_reverse_kl"),
    ),
    (gv.NAIVE_W, _naive_w_port, ("tgo_coefficient", "tgo_loss")),
    (gv.NAIVE_U, _naive_u_port, ("sgo_coefficient", "clipped_sgo_coefficient", "sgo_loss")),
    (gv.KINK_TIE_SPLIT, lambda: _kink_port("kink_tie_split", 0.5, 0.5), ("clipped_sgo_coefficient",)),
    (gv.KINK_CLAMP_SUM, lambda: _kink_port("kink_clamp_sum", 1.0, 1.0), ("clipped_sgo_coefficient",)),
    (gv.KINK_LEFT, lambda: _kink_port("kink_left", 1.0, 0.0), ("clipped_sgo_coefficient",)),
]


@pytest.mark.parametrize(
    ("mistake", "build", "functions"),
    V2_WRONG_PORTS,
    ids=[f"{w[0]}-{i}" for i, w in enumerate(V2_WRONG_PORTS)],
)
def test_v2_wrong_port_passes_v1_and_fails_every_case_that_claims_to_catch_it(
    vectors: dict[str, Any],
    vectors_v1: dict[str, Any],
    mistake: str,
    build: Callable[[], types.ModuleType],
    functions: tuple[str, ...],
) -> None:
    port = build()
    old = cf.run_conformance(port, vectors_v1, functions=functions)
    assert old.ok, f"the {mistake!r} port already fails version 1:\n" + cf.format_report(old)
    claims = [c for c in vectors["cases"] if mistake in c.get("catches", ())]
    assert claims, f"no v2 case claims to catch {mistake!r}"
    assert {c["function"] for c in claims} <= set(functions)
    report = cf.run_conformance(port, vectors, functions=functions)
    failed = {r.case: r for r in report.failed}
    missed = sorted(c["name"] for c in claims if c["name"] not in failed)
    assert not missed, f"cases that claim to catch {mistake!r} but pass the wrong port: {missed}"
    # the port's own mistake fails, not something the base port gets wrong
    for c in claims:
        whats = {chk.what for chk in failed[c["name"]].failures()}
        assert whats & {"value", "grad[delta]", "grad[student_logits]"}, (c["name"], whats)
    text = cf.format_report(report, max_failures=10_000)
    for c in claims:
        assert re.search(rf"^FAIL {re.escape(c['function'])} \[{re.escape(c['name'])}\] ", text, re.M)


def test_every_v2_catch_claim_has_a_wrong_port(vectors: dict[str, Any]) -> None:
    claimed = {m for c in vectors["cases"] for m in c.get("catches", ())}
    assert claimed == {w[0] for w in V2_WRONG_PORTS}


def test_a_port_without_gradients_fails_unless_values_only(vectors: dict[str, Any], tmp_path: Path) -> None:
    values = types.ModuleType("values_only_port")
    values.tgo_coefficient = ref.tgo_coefficient  # type: ignore[attr-defined]
    values.tgo_loss = lambda **kw: ref.tgo_loss(**kw).loss  # type: ignore[attr-defined]
    report = cf.run_conformance(values, vectors, functions=["tgo_coefficient", "tgo_loss"])
    assert not report.failed
    assert report.not_provided
    assert not report.ok
    text = cf.format_report(report)
    assert "FAIL (not provided)" in text
    assert "RESULT: FAIL" in text
    relaxed = cf.run_conformance(values, vectors, functions=["tgo_coefficient", "tgo_loss"], values_only=True)
    assert relaxed.ok
    assert "RESULT: PASS (values only)" in cf.format_report(relaxed)
    source = tmp_path / "values_port.py"
    source.write_text(EXAMPLE.read_text().split("# Optional: analytic gradients")[0])
    proc = _run_cli("--impl", str(source))
    assert proc.returncode == 1, proc.stdout
    assert "a failure without --values-only" in proc.stdout
    proc = _run_cli("--impl", str(source), "--values-only")
    assert proc.returncode == 0, proc.stdout
    assert "RESULT: PASS (values only)" in proc.stdout


def test_wrong_port_file_fails_on_the_command_line(tmp_path: Path) -> None:
    source = EXAMPLE.read_text()
    centred = "log_u - alpha * np.expm1(log_u)"
    assert centred in source
    wrong = tmp_path / "uncentred_port.py"
    wrong.write_text(source.replace(centred, "log_u + 1 - alpha * np.exp(log_u)"))
    proc = _run_cli("--impl", str(wrong), "--functions", "sgo_coefficient")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL sgo_coefficient [sgo_coefficient/grid/full] value:" in proc.stdout
    assert re.search(r"sgo_coefficient\s+E6/E7\s+\d+\s+\d+\s+[1-9]", proc.stdout), proc.stdout


def test_porting_guide_names_only_real_cases_and_every_wrong_port(vectors: dict[str, Any]) -> None:
    text = PORTING.read_text(encoding="utf-8")
    names = {c["name"] for c in vectors["cases"]}
    mentioned = set(re.findall(r"`([a-z_0-9]+/[^`\s]+)`", text))
    mentioned = {m for m in mentioned if m.split("/")[0] in cf.FUNCTIONS}
    assert len(mentioned) > 30, "docs/porting.md names too few golden cases"
    dangling = sorted(m for m in mentioned if not fnmatch.filter(names, m))
    assert not dangling, f"docs/porting.md names cases (or patterns) that match nothing: {dangling}"
    for _, _, _, case in WRONG_PORTS:
        assert f"`{case}`" in text, f"docs/porting.md does not name the catching case {case}"


# --------------------------------------------------------------------------------------------
# Protocol details
# --------------------------------------------------------------------------------------------


def test_protocol_statuses(vectors: dict[str, Any]) -> None:
    def broken(delta: Any, alpha: Any) -> Any:
        raise RuntimeError("boom")

    def partial(delta: Any, alpha: Any, *, mixture_grad: str = "full") -> Any:
        if mixture_grad == "stop":
            raise NotImplementedError
        return ref.sgo_coefficient(delta, alpha, mixture_grad=mixture_grad)

    port = types.ModuleType("statuses")
    port.tgo_coefficient = broken  # type: ignore[attr-defined]
    port.sgo_coefficient = partial  # type: ignore[attr-defined]
    report = cf.run_conformance(port, vectors, functions=["tgo_coefficient", "sgo_coefficient"])
    by_fn = report.by_function()
    assert all(r.status == cf.FAIL for r in by_fn["tgo_coefficient"])
    assert "RuntimeError: boom" in by_fn["tgo_coefficient"][0].checks[0].detail
    sgo = {r.case: r for r in by_fn["sgo_coefficient"]}
    assert sgo["sgo_coefficient/grid/stop"].status == cf.NOT_IMPLEMENTED
    full = sgo["sgo_coefficient/grid/full"]
    assert full.status == cf.PASS
    assert {c.what: c.status for c in full.checks} == {
        "value": cf.PASS,
        "grad[alpha]": cf.NOT_PROVIDED,
        "grad[delta]": cf.NOT_PROVIDED,
    }


def test_value_and_grad_hook_is_used(vectors: dict[str, Any]) -> None:
    calls: list[tuple[str, tuple[str, ...]]] = []

    def value_and_grad(name: str, args: Any, kwargs: Any, wrt: tuple[str, ...]) -> Any:
        calls.append((name, tuple(wrt)))
        d_grad, a_grad = ref.tgo_coefficient_grad(*args)
        return ref.tgo_coefficient(*args), {"delta": d_grad, "alpha": a_grad}

    port = types.ModuleType("hooked")
    port.tgo_coefficient = ref.tgo_coefficient  # type: ignore[attr-defined]
    port.value_and_grad = value_and_grad  # type: ignore[attr-defined]
    report = cf.run_conformance(port, vectors, functions=["tgo_coefficient"], strict=True)
    assert report.ok, cf.format_report(report)
    assert ("tgo_coefficient", ("alpha", "delta")) in calls


def test_options_and_batches_without_classes_arrive_as_namespaces(vectors: dict[str, Any]) -> None:
    seen: list[Any] = []

    def askd_loss(batch: Any, *, options: Any = None, num_tgo: Any = None, num_sgo: Any = None) -> Any:
        seen.append((batch, options))
        opts = None if options is None else ref.ASKDOptions(**vars(options))
        fields = {k: v for k, v in vars(batch).items() if v is not None}
        return ref.askd_loss(ref.DistillBatch(**fields), options=opts, num_tgo=num_tgo, num_sgo=num_sgo)

    port = types.ModuleType("no_classes")
    port.askd_loss = askd_loss  # type: ignore[attr-defined]
    report = cf.run_conformance(port, vectors, functions=["askd_loss"], strict=True)
    assert report.ok, cf.format_report(report)
    assert all(isinstance(b, types.SimpleNamespace) for b, _ in seen)
    assert any(isinstance(o, types.SimpleNamespace) for _, o in seen)


def test_compare_rules() -> None:
    tol = tolerance("float64")
    assert cf.compare(np.array([math.inf, -math.inf, 1.0]), np.array([math.inf, -math.inf, 1.0]), tol).ok
    assert not cf.compare(np.array([-math.inf]), np.array([math.inf]), tol).ok
    assert not cf.compare(np.array([math.nan]), np.array([0.0]), tol).ok
    assert cf.compare(np.array([1e-13]), np.array([0.0]), tol).ok  # absolute floor 1e-12
    shape = cf.compare(np.zeros(3), np.zeros((1, 3)), tol)
    assert not shape.ok
    assert "shape" in shape.detail
    assert not cf.compare("not a number", np.zeros(1), tol).ok
    assert cf.compare(0.5, np.array(0.5), tol).ok  # a Python float for a 0-d value


def test_load_vectors_rejects_other_versions(tmp_path: Path) -> None:
    bad = tmp_path / "v2.json"
    bad.write_text('{"format": "askd-golden-vectors", "schema_version": 3, "cases": []}')
    with pytest.raises(ValueError, match="schema_version 3"):
        cf.load_vectors(bad)
    with pytest.raises(FileNotFoundError, match="askd vectors --out"):
        cf.load_vectors(tmp_path / "missing.json")
    assert cf.main(["--impl", "askd_ref.porting.reference", "--vectors", str(bad)]) == 2
