"""Golden vectors (issue 4): regeneration, format, coverage, and independent checks of the numbers.

* ``askd vectors`` regenerates the committed ``vectors/askd-v1.json`` within 1e-12 relative;
* the file is canonical (``dumps`` of its parse is the file itself), small, and versioned;
* it covers every spec §10 function, the §9 option combinations and the endpoints;
* its coefficient and divergence values/gradients agree with 40-digit mpmath evaluations of the
  spec formulas (independent of both torch and ``askd_ref.porting.reference``), and its loss cases agree
  with each other where the spec says they must (gradient accumulation, the DistiLLM-2
  equivalence of §4).
"""

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mpmath as mp
import numpy as np
import pytest

from askd_ref import cli
from askd_ref.porting import vectors as gv
from askd_ref.porting.conformance import (
    FORMAT,
    FUNCTIONS,
    SCHEMA_VERSION,
    BatchSpec,
    OptionsSpec,
    decode,
    encode,
)
from askd_ref.porting.tolerances import override, tolerance

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "vectors" / "askd-v1.json"
COMMITTED_V2 = ROOT / "vectors" / "askd-v2.json"
REGEN_TOL = override(
    tolerance("float64"), rtol=1e-12, atol=1e-15, reason="regeneration of the committed golden vectors"
)
F64 = tolerance("float64", "value")


@pytest.fixture(scope="module")
def committed() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(COMMITTED.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def cases(committed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: {k: decode(v) for k, v in c.items()} for c in committed["cases"]}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vectors") / "askd-v1.json"
    assert cli.main(["vectors", "--out", str(out), "--version", "1", "--quiet"]) == 0
    return out


def test_askd_vectors_reproduces_the_committed_file(regenerated: Path, committed: dict[str, Any]) -> None:
    fresh = json.loads(regenerated.read_text(encoding="utf-8"))
    diffs = gv.diff_vectors(fresh, committed, REGEN_TOL)
    assert not diffs, (
        f"{len(diffs)} differences beyond rtol=1e-12/atol=1e-15 between `askd vectors` and {COMMITTED}; "
        f"first ones: {diffs[:8]}. If the numerics changed on purpose, regenerate with "
        "`askd vectors --out vectors/askd-v1.json` and say why in the commit."
    )


def test_check_flag_passes_and_names_a_tampered_case(
    regenerated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(regenerated.read_text(encoding="utf-8"))
    monkeypatch.setattr(
        gv, "generate", lambda progress=False, version=1: copy.deepcopy(data)
    )  # no regeneration
    assert cli.main(["vectors", "--check", str(regenerated), "--quiet"]) == 0
    assert "reproduced" in capsys.readouterr().out
    tampered = copy.deepcopy(data)
    case = next(c for c in tampered["cases"] if c["name"] == "sgo_coefficient/grid/full")
    case["expected"]["value"]["data"][3] *= 1 + 1e-10  # beyond 1e-12 relative
    bad = tmp_path / "tampered.json"
    bad.write_text(gv.dumps(tampered), encoding="utf-8")
    assert cli.main(["vectors", "--check", str(bad), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "[sgo_coefficient/grid/full].expected.value.data[3]" in out


def test_cli_needs_an_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["vectors"]) == 2
    assert "--out" in capsys.readouterr().err


def test_file_is_canonical_small_and_versioned(committed: dict[str, Any]) -> None:
    text = COMMITTED.read_text(encoding="utf-8")
    assert gv.dumps(committed) == text, "the committed file is not in the canonical `dumps` layout"
    assert len(text.encode()) < 2_000_000, f"vectors file is {len(text.encode())} bytes (aim < 2 MB)"
    assert committed["format"] == FORMAT
    assert committed["schema_version"] == 1
    assert committed["dtype"] == "float64"
    assert committed["tolerance"]["rtol"] == tolerance("float64").rtol
    names = [c["name"] for c in committed["cases"]]
    assert len(names) == len(set(names))


def test_encode_decode_round_trip() -> None:
    values = [
        np.array([[0.1, -np.inf], [np.inf, -0.0]]),
        np.array([True, False]),
        np.array([3, -1], dtype=np.int64),
        np.array(2.5),
        -math.inf,
        0.1,
        7,
        "stop",
        None,
        OptionsSpec({"gate": "hard", "tau": 0.3}),
        BatchSpec({"mask": np.ones((1, 2), dtype=bool)}),
    ]
    for v in values:
        text = json.dumps(encode(v), allow_nan=False)  # strict JSON: no bare inf/NaN
        back = decode(json.loads(text))
        if isinstance(v, np.ndarray):
            assert isinstance(back, np.ndarray)
            assert back.dtype == v.dtype
            assert back.shape == v.shape
            np.testing.assert_array_equal(back, v)
        elif isinstance(v, (OptionsSpec, BatchSpec)):
            assert type(back) is type(v)
            assert set(back.fields) == set(v.fields)
        else:
            assert back == v
            assert type(back) is type(v)


def test_every_function_and_gradient_is_covered(cases: dict[str, dict[str, Any]]) -> None:
    functions = {c["function"] for c in cases.values()}
    assert functions == set(FUNCTIONS), f"functions without cases: {set(FUNCTIONS) - functions}"
    for name, info in FUNCTIONS.items():
        recorded = {k for c in cases.values() if c["function"] == name for k in c["expected"].get("grad", {})}
        assert recorded == set(info.grad_args), f"{name}: gradients for {recorded}, want {info.grad_args}"
    losses = [c for c in cases.values() if FUNCTIONS[c["function"]].kind == "loss"]
    assert all(c["expected"]["diagnostics"] for c in losses)
    assert all("sample_count" in c["expected"] for c in losses)


def test_endpoints_and_special_inputs_are_covered(cases: dict[str, dict[str, Any]]) -> None:
    tags = {t for c in cases.values() for t in c["tags"]}
    assert {
        "ordinary",
        "endpoint",
        "options",
        "masked",
        "neg_inf",
        "large_delta",
        "off_policy",
        "accumulation",
        "broadcast",
        "kink",
    } <= tags
    skew_alphas = {
        c["kwargs"]["alpha"]
        for c in cases.values()
        if c["function"] == "skew_reverse_kl" and isinstance(c["kwargs"]["alpha"], float)
    }
    assert {0.0, 1e-6, 0.999999, 1.0} <= skew_alphas
    exact = cases["tgo_coefficient/alpha_exact_0_1"]["args"]
    assert set(np.unique(exact[1])) == {0.0, 1.0}
    deltas = set(cases["sgo_coefficient/grid/full"]["args"][0].ravel())
    assert {-700.0, 0.0, 700.0} <= deltas
    r = set(cases["clipped_sgo_coefficient/grid/full,hard,fixed,linear"]["args"][1].ravel())
    assert {0.0, 0.5, 0.75, 1.0} <= r  # r ∈ {0, τ_lo, τ (hard), 1}
    assert 0.0 in set(cases["clipped_sgo_coefficient/with_delta_0/full,soft,fixed,linear"]["args"][0].ravel())
    neg_inf = [c for c in cases.values() if "neg_inf" in c["tags"]]
    assert len(neg_inf) >= 10
    assert any(c["function"] == "dense_askd_loss" for c in neg_inf)
    assert any("infinite_value" in c["tags"] for c in cases.values())  # +inf encoded, gradient omitted


def test_option_combinations_are_covered(cases: dict[str, dict[str, Any]]) -> None:
    def combos(function: str, fields: tuple[str, ...]) -> set[tuple[Any, ...]]:
        out = set()
        for c in cases.values():
            opts = c["kwargs"].get("options")
            if c["function"] == function and isinstance(opts, OptionsSpec):
                out.add(tuple(opts.fields[f] for f in fields))
        return out

    e9 = ("mixture_grad", "gate", "sgo_pullup", "schedule")
    assert len(combos("clipped_sgo_coefficient", e9)) == 2 * 3 * 2 * 2
    assert len(combos("sgo_loss", ("normalize", *e9))) == 2 * 2 * 3 * 2 * 2
    for fn in ("askd_loss", "dense_askd_loss", "tgo_loss"):
        assert len(combos(fn, ("normalize", "schedule", "alpha_lo", "alpha_hi"))) >= 3, fn


# --------------------------------------------------------------------------------------------
# Independent checks: 40-digit mpmath from the spec formulas (not torch, not the reference)
# --------------------------------------------------------------------------------------------

DPS = 40  # digits for the mpmath checks (set per test with mp.workdps, never globally)


def _w(d: Any, a: Any) -> Any:  # E5, written as in the spec: (1−α)e^Δ / (α + (1−α)e^Δ)
    return (1 - a) * mp.exp(d) / (a + (1 - a) * mp.exp(d))


def _c(d: Any, a: Any, stop: bool) -> Any:  # E6 / E7
    u = 1 / (a + (1 - a) * mp.exp(-d))
    return mp.log(u) if stop else mp.log(u) - a * (u - 1)


def _agree(got: float, true: Any, what: str) -> None:
    t = float(true)
    assert abs(got - t) <= F64.atol + F64.rtol * abs(t), f"{what}: vectors {got!r}, mpmath {t!r}"


@pytest.mark.parametrize("function", ["tgo_coefficient", "sgo_coefficient"])
def test_coefficient_vectors_match_mpmath(cases: dict[str, dict[str, Any]], function: str) -> None:
    with mp.workdps(DPS):
        checked = _check_coefficients(cases, function)
    assert checked > 100


def _check_coefficients(cases: dict[str, dict[str, Any]], function: str) -> int:
    checked = 0
    for c in cases.values():
        if c["function"] != function:
            continue
        stop = c["kwargs"].get("mixture_grad") == "stop"
        f: Callable[[Any, Any], Any] = (
            _w if function == "tgo_coefficient" else (lambda d, a, stop=stop: _c(d, a, stop))
        )
        shape = np.shape(c["expected"]["value"])
        d_arr, a_arr = (np.broadcast_to(np.asarray(x, dtype=float), shape) for x in c["args"])
        for idx in np.ndindex(shape):
            d, a = mp.mpf(float(d_arr[idx])), mp.mpf(float(a_arr[idx]))
            where = f"{c['name']} at {idx} (Δ={float(d)}, α={float(a)})"
            _agree(float(np.asarray(c["expected"]["value"])[idx]), f(d, a), where + " value")
            grads = c["expected"].get("grad", {})
            if "delta" in grads:
                _agree(float(grads["delta"][idx]), mp.diff(lambda x, f=f, a=a: f(x, a), d), where + " ∂/∂Δ")
            if "alpha" in grads:
                _agree(float(grads["alpha"][idx]), mp.diff(lambda x, f=f, d=d: f(d, x), a), where + " ∂/∂α")
            checked += 1
    return checked


def _kl(x: list[Any], m: list[Any]) -> Any:
    total = mp.mpf(0)
    for xi, mi in zip(x, m, strict=True):
        if xi == 0:
            continue
        if mi == 0:
            return mp.inf
        total += xi * mp.log(xi / mi)
    return total


def _skl(p: list[Any], q: list[Any], a: Any, stop: bool) -> tuple[Any, list[Any] | None]:
    """SKL_α value and ∂/∂z: g_k = −p_k ρ_k + q_k Σ p ρ, ρ = (1−α)q/m (distillm.md §1.5)."""
    m = [a * pi + (1 - a) * qi for pi, qi in zip(p, q, strict=True)]
    rho = [(1 - a) * qi / mi if mi != 0 else mp.mpf(0) for qi, mi in zip(q, m, strict=True)]
    s = sum(pi * ri for pi, ri in zip(p, rho, strict=True))
    grad = [mp.mpf(0)] * len(p) if stop else [-pi * ri + qi * s for pi, ri, qi in zip(p, rho, q, strict=True)]
    return _kl(p, m), grad


def _srkl(p: list[Any], q: list[Any], a: Any, stop: bool) -> tuple[Any, list[Any] | None]:
    """SRKL_α value and ∂/∂z: g_k = q_k(h_k − Σ q h), h = log(q/m̃) − α q/m̃ (full) or log(q/m̃) (stop)."""
    m = [(1 - a) * pi + a * qi for pi, qi in zip(p, q, strict=True)]
    h = []
    for qi, mi in zip(q, m, strict=True):
        if qi == 0:
            h.append(mp.mpf(0))
        elif mi == 0:
            return mp.inf, None
        else:
            h.append(mp.log(qi / mi) - (0 if stop else a * qi / mi))
    s = sum(qi * hi for qi, hi in zip(q, h, strict=True))
    return _kl(q, m), [qi * (hi - s) for qi, hi in zip(q, h, strict=True)]


def _divergence(fn: str, p: list[Any], q: list[Any], a: Any, stop: bool) -> tuple[Any, list[Any] | None]:
    if fn == "forward_kl":
        return _skl(p, q, mp.mpf(0), False)
    if fn == "reverse_kl":
        return _srkl(p, q, mp.mpf(0), False)
    if fn == "skew_forward_kl":
        return _skl(p, q, a, stop)
    if fn == "skew_reverse_kl":
        return _srkl(p, q, a, stop)
    # E4: JSD_β = β·SKL_β + (1−β)·SRKL_{1−β} (both with full gradients); zero-weight terms are 0
    v1, g1 = _skl(p, q, a, False) if a != 0 else (mp.mpf(0), [mp.mpf(0)] * len(p))
    v2, g2 = _srkl(p, q, 1 - a, False) if a != 1 else (mp.mpf(0), [mp.mpf(0)] * len(p))
    value = a * v1 + (1 - a) * v2
    if g1 is None or g2 is None:
        return value, None
    return value, [a * x + (1 - a) * y for x, y in zip(g1, g2, strict=True)]


def test_divergence_vectors_match_mpmath(cases: dict[str, dict[str, Any]]) -> None:
    with mp.workdps(DPS):
        checked = _check_divergences(cases)
    assert checked > 150


def _check_divergences(cases: dict[str, dict[str, Any]]) -> int:
    checked = 0
    names = ("forward_kl", "reverse_kl", "skew_forward_kl", "skew_reverse_kl", "generalized_jsd")
    for c in cases.values():
        if c["function"] not in names:
            continue
        kw = c["kwargs"]
        t, s = kw["teacher_logp"], kw["student_logp"]
        par = np.broadcast_to(np.asarray(kw.get("alpha", kw.get("beta", 0.0)), dtype=float), t.shape[:-1])
        value = np.asarray(c["expected"]["value"])
        grad = c["expected"].get("grad", {}).get("student_logits")
        for idx in np.ndindex(t.shape[:-1]):
            p = [mp.exp(mp.mpf(float(x))) if np.isfinite(x) else mp.mpf(0) for x in t[idx]]
            q = [mp.exp(mp.mpf(float(x))) if np.isfinite(x) else mp.mpf(0) for x in s[idx]]
            v, g = _divergence(c["function"], p, q, mp.mpf(float(par[idx])), kw.get("mixture_grad") == "stop")
            where = f"{c['name']} at {idx}"
            if mp.isinf(v):
                assert value[idx] == math.inf, f"{where}: vectors {value[idx]!r}, mpmath +inf"
                assert grad is None, f"{where}: a gradient is recorded where the value is +inf"
                continue
            _agree(float(value[idx]), v, where + " value")
            if grad is not None:
                assert g is not None
                for k, gk in enumerate(g):
                    _agree(float(grad[(*idx, k)]), gk, f"{where} ∂/∂z_{k}")
            checked += 1
    return checked


# --------------------------------------------------------------------------------------------
# Consistency between loss cases (what the spec says must hold)
# --------------------------------------------------------------------------------------------


def test_micro_batches_with_global_counts_add_up_to_the_full_batch(cases: dict[str, dict[str, Any]]) -> None:
    full = cases["askd_loss/options=None"]
    a = cases["askd_loss/accumulation/micro_a_of_6"]
    b = cases["askd_loss/accumulation/micro_b_of_6"]
    total = a["expected"]["value"] + b["expected"]["value"]
    _agree(total, mp.mpf(full["expected"]["value"]), "E14 loss of micro-batches a + b")
    grad = np.zeros_like(full["expected"]["grad"]["student_token_logp"])
    grad[[0, 3, 4]] = a["expected"]["grad"]["student_token_logp"]
    grad[[1, 2, 5]] = b["expected"]["grad"]["student_token_logp"]
    np.testing.assert_allclose(grad, full["expected"]["grad"]["student_token_logp"], rtol=1e-12, atol=1e-15)


def test_dense_askd_with_distillm2_settings_equals_distillm2(cases: dict[str, dict[str, Any]]) -> None:
    dense = cases["dense_askd_loss/distillm2_equivalent"]["expected"]
    d2 = cases["distillm2_loss/askd_batch"]["expected"]
    _agree(dense["value"], mp.mpf(d2["value"]), "dense ASKD (α = 0.1, no gate, stop) vs distillm2")
    np.testing.assert_allclose(
        dense["grad"]["student_logits"], d2["grad"]["student_logits"], rtol=1e-12, atol=1e-15
    )


# --------------------------------------------------------------------------------------------
# Schema v2: the version-1 cases plus the underflow, overflow and kink cases
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def committed_v2() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(COMMITTED_V2.read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def new_v2_cases(committed_v2: dict[str, Any], committed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    old = {c["name"] for c in committed["cases"]}
    return {
        c["name"]: {k: decode(v) for k, v in c.items()} for c in committed_v2["cases"] if c["name"] not in old
    }


def test_v2_reproduces_is_canonical_and_extends_v1(
    tmp_path: Path, committed_v2: dict[str, Any], committed: dict[str, Any]
) -> None:
    text = COMMITTED_V2.read_text(encoding="utf-8")
    assert gv.dumps(committed_v2) == text
    assert len(text.encode()) < 2_000_000
    assert committed_v2["schema_version"] == SCHEMA_VERSION == 2
    out = tmp_path / "askd-v2.json"
    assert cli.main(["vectors", "--out", str(out), "--quiet"]) == 0  # the newest version by default
    diffs = gv.diff_vectors(json.loads(out.read_text(encoding="utf-8")), committed_v2, REGEN_TOL)
    assert not diffs, f"`askd vectors` does not reproduce {COMMITTED_V2}: {diffs[:8]}"
    # the first cases are the version-1 cases: same names, inputs, tags, notes; numbers within 1e-12
    n1 = len(committed["cases"])
    head = {**committed_v2, "schema_version": 1, "cases": committed_v2["cases"][:n1]}
    assert not gv.diff_vectors(head, committed, REGEN_TOL)


def test_v2_new_cases_say_what_they_catch(new_v2_cases: dict[str, dict[str, Any]]) -> None:
    assert len(new_v2_cases) >= 25
    assert all(c.get("catches") or c["function"] == "sequence_log_ratio" for c in new_v2_cases.values())
    kink = [c for c in new_v2_cases.values() if "kink" in c["tags"]]
    assert kink
    assert all(c["one_sided"] == {"delta": "right"} and "delta" in c["expected"]["grad"] for c in kink)
    assert all("one_sided" not in c for c in new_v2_cases.values() if "kink" not in c["tags"])
    # what the cases are for: log-probs below the float64 exp underflow, |Δ| beyond its overflow
    low = min(
        float(np.min(c["kwargs"]["teacher_logp"])) for c in new_v2_cases.values() if "underflow" in c["tags"]
    )
    assert low < -745
    deltas = np.asarray(new_v2_cases["tgo_coefficient/huge_delta"]["args"][0])
    assert deltas.max() >= 710
    assert deltas.min() <= -710
    assert 0.0 in set(np.asarray(kink[0]["args"][0]).ravel())


def test_v2_coefficient_and_divergence_cases_match_mpmath(new_v2_cases: dict[str, dict[str, Any]]) -> None:
    with mp.workdps(DPS):
        assert _check_coefficients(new_v2_cases, "tgo_coefficient") >= 30
        assert _check_coefficients(new_v2_cases, "sgo_coefficient") >= 60
        assert _check_divergences(new_v2_cases) >= 30


def _c_hat(d: Any, r: Any, f: dict[str, Any]) -> Any:
    """E9 in mpmath, from the spec text (E8 gate, E10 schedule, E6/E7 coefficient)."""
    lo, hi = mp.mpf(f["alpha_lo"]), mp.mpf(f["alpha_hi"])
    if f["schedule"] == "linear":
        a_s = lo + (hi - lo) * r
    else:
        lg = lambda a: mp.log(a / (1 - a))  # noqa: E731
        a_s = 1 / (1 + mp.exp(-(lg(lo) + (lg(hi) - lg(lo)) * r)))
    if f["gate"] == "soft":
        h = min(max((r - mp.mpf(f["tau_lo"])) / (mp.mpf(f["tau_hi"]) - mp.mpf(f["tau_lo"])), 0), 1)
    else:
        h = mp.mpf(1) if (f["gate"] == "hard" and r >= mp.mpf(f["tau"])) else mp.mpf(0)
    stop = f["mixture_grad"] == "stop"
    c_s = _c(d, a_s, stop)
    if f["sgo_pullup"] == "adaptive":
        return c_s - h * max(c_s, 0)
    return min(_c(d, lo, stop), 0) + (1 - h) * max(c_s, 0)


def test_v2_clipped_coefficient_cases_match_mpmath_with_the_right_derivative_at_the_kink(
    new_v2_cases: dict[str, dict[str, Any]],
) -> None:
    defaults = gv._options().fields
    checked = 0
    with mp.workdps(DPS):
        for c in new_v2_cases.values():
            if c["function"] != "clipped_sgo_coefficient":
                continue
            opts = c["kwargs"]["options"]
            fields = defaults if opts is None else opts.fields
            d_arr, r_arr = (np.asarray(x, dtype=float) for x in c["args"])
            value, grad = np.asarray(c["expected"]["value"]), c["expected"]["grad"]["delta"]
            for idx in np.ndindex(value.shape):
                d, r = mp.mpf(float(d_arr[idx])), mp.mpf(float(r_arr[idx]))
                f = lambda x, r=r, fields=fields: _c_hat(x, r, fields)  # noqa: E731
                where = f"{c['name']} at {idx} (Δ={float(d)}, r={float(r)})"
                _agree(float(value[idx]), f(d), where + " value")
                # Δ = 0: the right derivative (forward differences only see Δ ≥ 0)
                slope = mp.diff(f, d, direction=1) if d == 0 else mp.diff(f, d)
                _agree(float(grad[idx]), slope, where + " ∂/∂Δ")
                checked += 1
    assert checked >= 200
