"""The loss benchmark: its peer implementations compute what they claim, and its outputs."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from askd_ref import DistillBatch, compiled, compute_loss
from askd_ref.bench import loss as bench
from askd_ref.cli import main
from askd_ref.cli.commands.bench_loss import _parse_sizes
from askd_ref.porting.tolerances import assert_close, tolerance

F64 = tolerance(torch.float64)
F64_GRAD = tolerance(torch.float64, "grad")


def _logits(rows: int = 4, seq: int = 6, vocab: int = 11, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    zs = torch.randn(rows, seq, vocab, generator=g, dtype=torch.float64, requires_grad=True)
    zt = 2.0 * torch.randn(rows, seq, vocab, generator=g, dtype=torch.float64)
    return zs, zt


def _library(
    method: str, zs: torch.Tensor, zt: torch.Tensor, mask: torch.Tensor, is_tgo: torch.Tensor
) -> torch.Tensor:
    batch = DistillBatch(
        mask=mask,
        is_tgo=is_tgo,
        student_logp=torch.log_softmax(zs, -1),
        teacher_logp=torch.log_softmax(zt, -1),
    )
    return compute_loss(method, batch).loss


def test_distillm2_naive_equals_the_library_distillm2_baseline() -> None:
    """Two independent formulations of DistiLLM-2's loss: the stacked full-logit one and ours."""
    zs, zt = _logits()
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, :2] = False
    is_tgo = torch.tensor([True, False, True, False])
    naive = bench.distillm2_naive_loss(zs, zt, mask, is_tgo)
    (g_naive,) = torch.autograd.grad(naive, zs)
    ours = _library("distillm2", zs, zt, mask, is_tgo)
    (g_ours,) = torch.autograd.grad(ours, zs)
    assert_close(naive, ours, F64, what="distillm2 value")
    assert_close(g_naive, g_ours, F64_GRAD, what="distillm2 gradient")


def test_trl_gkd_equals_the_library_gkd_baseline_on_equal_lengths() -> None:
    """TRL's token mean equals our per-sample token mean when every row has the same length."""
    zs, zt = _logits(seed=1)
    labels = torch.randint(0, 11, (4, 6))
    trl_loss = bench._trl_generalized_jsd()(zs, zt, labels=labels, beta=0.5)
    (g_trl,) = torch.autograd.grad(trl_loss, zs)
    ours = _library(
        "gkd", zs, zt, torch.ones(4, 6, dtype=torch.bool), torch.tensor([True, False, True, False])
    )
    (g_ours,) = torch.autograd.grad(ours, zs)
    assert_close(trl_loss, ours, F64, what="GJSD value")
    assert_close(g_trl, g_ours, F64_GRAD, what="GJSD gradient")


TINY = bench.BenchConfig(tokens=64, vocab=97, hidden=8, seq_len=16)


HAVE_LIGER = bench.liger_available()
NO_LIGER = "liger-kernel is not importable (pip install --no-deps liger-kernel)"
HAVE_CC = compiled.has_compiler()
NO_CC = "no C compiler ($CC, cc, gcc, clang) for kernel='compiled'"


@pytest.mark.parametrize("impl", sorted(bench.STEPS))
def test_every_implementation_runs_forward_and_backward(impl: str) -> None:
    if impl.startswith("liger") and not HAVE_LIGER:
        pytest.skip(NO_LIGER)
    if impl == "liger_jsd_compiled":
        pytest.skip("torch.compile takes tens of seconds; its value is checked by the slow test below")
    x = bench.make_inputs(TINY)
    loss = bench.STEPS[impl](x)
    assert bool(torch.isfinite(loss))
    assert x.hs.grad is not None
    assert x.hs.grad.shape == x.hs.shape
    assert x.ws.grad is not None
    assert x.ws.grad.shape == x.ws.shape
    assert bool(x.ws.grad.abs().sum() > 0)


def test_chunked_and_full_askd_rows_compute_the_same_loss() -> None:
    a = bench.make_inputs(TINY)
    b = bench.make_inputs(TINY)
    la, lb = bench.STEPS["askd_chunked"](a), bench.STEPS["askd_full"](b)
    assert_close(la, lb, tolerance(torch.float32), what="askd-dense loss")
    assert a.hs.grad is not None
    assert b.hs.grad is not None
    assert_close(a.hs.grad, b.hs.grad, tolerance(torch.float32, "grad"), what="hidden gradient")


def test_blocked_floor_makes_the_same_projections_as_one_block() -> None:
    """The floor in token blocks (how it fits memory at 16384 tokens) gives the gradients of one block."""
    cfg = bench.BenchConfig(tokens=64, vocab=97, hidden=8, seq_len=16)
    whole, blocked = bench.make_inputs(cfg), bench.make_inputs(cfg)
    bench._floor(whole, block=64)
    bench._floor(blocked, block=24)  # 24 + 24 + 16: a ragged last block
    for name in ("hs", "ws"):
        g_whole, g_blocked = getattr(whole, name).grad, getattr(blocked, name).grad
        assert g_whole is not None
        assert g_blocked is not None
        assert_close(g_blocked, g_whole, tolerance(torch.float32, "grad"), what=f"floor ∂/∂{name}")
    assert whole.hs.grad is not None
    expected = (whole.ht @ whole.wt.T) @ whole.ws.detach()  # ∂/∂hs of Σ (hs·wsᵀ) ⊙ (ht·wtᵀ)
    assert_close(whole.hs.grad, expected, tolerance(torch.float32, "grad"), what="floor ∂/∂hs by hand")


def test_worker_reports_every_pass_and_the_peak() -> None:
    result = bench.worker_run(TINY, "floor", 2)
    assert len(result["times_s"]) == 2
    assert all(t > 0 for t in result["times_s"])
    assert result["peak_mb"] >= result["base_mb"] > 0


def _record(
    impl: str, time_s: float, peak_mb: float, tokens: int = 4096, vocab: int = 32768
) -> dict[str, object]:
    return {
        "tokens": tokens,
        "hidden": 512,
        "vocab": vocab,
        "impl": impl,
        "time_s": time_s,
        "peak_mb": peak_mb,
        "device": "cpu",
    }


def test_ratios_and_acceptance_checks() -> None:
    records = [
        _record("askd_chunked", 6.0, 1000.0),
        _record("askd_full", 20.0, 8000.0),
        _record("distillm2_naive", 15.0, 5000.0),
        _record("trl_gkd", 5.0, 3000.0),
        _record("floor", 4.0, 1500.0),
    ]
    r = bench.ratios(records)["4096x32768"]
    assert r["time a/floor"] == pytest.approx(1.5)
    assert r["memory a/distillm2_naive"] == pytest.approx(0.2)
    checks = {(c["quantity"], c["ratio"]): c for c in bench.check_targets(records)}
    present = {r["impl"] for r in records}
    assert len(checks) == sum(n in present and d in present for (_, n, d) in bench.TARGETS)
    assert len(checks) == 5
    assert checks[("peak_mb", "askd_chunked/distillm2_naive")]["met"]
    assert not checks[("peak_mb", "askd_chunked/trl_gkd")]["met"]  # 1000/3000 > 0.25
    assert not checks[("time_s", "askd_chunked/trl_gkd")]["met"]  # 6/5 > 1.0
    assert not checks[("time_s", "askd_chunked/floor")]["met"]  # 1.5 > 1.10
    table = bench._markdown(
        records, [{"tokens": 4096, "vocab": 151936, "impl": "trl_gkd", "reason": "too big"}]
    )
    assert "| 4096 | 32768 | floor | 4.00 | 1500 | 1.50 | 0.67 |" in table
    assert "not run: too big" in table


def test_other_configurations_check_only_the_bounds_that_hold_everywhere() -> None:
    """Away from 4096 × 32768 the memory bounds against the full-logit rows do not apply."""
    big = 16384, 151936
    records = [
        _record("askd_chunked", 50.0, 2000.0, *big),
        _record("floor", 46.0, 9000.0, *big),
        _record("trl_gkd", 10.0, 1000.0, *big),  # would fail time a/d and memory a/d if checked
        _record("askd_chunked_gkd", 50.0, 2000.0, *big),
        _record("liger_jsd_compiled", 70.0, 1900.0, *big),
    ]
    checks = {(c["quantity"], c["ratio"]): c for c in bench.check_targets(records, *big)}
    assert set(checks) == {(q, f"{n}/{d}") for q, n, d in bench.EVERY_CONFIG_TARGETS}
    assert checks[("time_s", "askd_chunked/floor")]["met"]  # 50/46 = 1.087
    assert not checks[("peak_mb", "askd_chunked_gkd/liger_jsd_compiled")]["met"]  # 2000/1900 > 1.0
    assert checks[("time_s", "askd_chunked_gkd/liger_jsd_compiled")]["met"]  # 50/70 = 0.71
    assert bench.configs_of([*records, *_records_4096()]) == [(4096, 32768), big]


def _records_4096() -> list[dict[str, object]]:
    return [_record("askd_chunked", 4.0, 1000.0), _record("floor", 3.8, 1700.0)]


def test_parse_sizes() -> None:
    assert _parse_sizes("1024x32768, 8192X128256") == [(1024, 32768), (8192, 128256)]
    with pytest.raises(ValueError, match="TOKENSxVOCAB"):
        _parse_sizes("1024*32768")


@pytest.mark.slow
def test_cli_writes_records_table_and_plot(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "loss", "--out", str(out), "--sizes", "64x97", "--hidden", "8", "--seq-len", "16"]
    code = main([*argv, "--repeats", "1", "--quiet", "--no-extras", "--no-liger"])
    assert code == 0
    records = json.loads((out / "loss-bench.json").read_text())
    assert [r["impl"] for r in records] == list(bench.IMPLS)
    for r in records:
        assert set(r) == {"tokens", "hidden", "vocab", "impl", "time_s", "peak_mb", "device", "kernel"}
        assert r["kernel"] == bench.resolve_kernel("auto", "cpu")[0]  # the default, --kernel auto
        assert (r["tokens"], r["hidden"], r["vocab"]) == (64, 8, 97)
        assert r["time_s"] > 0
        assert r["peak_mb"] > 0
    details = json.loads((out / "loss-bench-details.json").read_text())
    assert details["environment"]["trl"]
    assert (out / "loss-bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "askd_chunked" in (out / "loss-bench.md").read_text()


@pytest.mark.skipif(not HAVE_CC, reason=NO_CC)
def test_cli_runs_the_askd_rows_with_the_compiled_kernel(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = ["bench", "loss", "--out", str(out), "--sizes", "64x97", "--hidden", "8", "--seq-len", "16"]
    code = main([*argv, "--repeats", "1", "--quiet", "--impls", "askd_chunked,floor", "--kernel", "compiled"])
    assert code == 0
    records = json.loads((out / "loss-bench.json").read_text())
    assert [r["impl"] for r in records] == ["askd_chunked", "floor"]
    assert {r["kernel"] for r in records} == {"compiled"}
    assert "kernel compiled" in (out / "loss-bench.md").read_text()


@pytest.mark.skipif(not HAVE_CC, reason=NO_CC)
def test_compiled_kernel_rows_and_values() -> None:
    """The askd-ref rows compute the same loss and gradient with either kernel."""
    a = bench.make_inputs(TINY)
    b = bench.make_inputs(dataclasses.replace(TINY, kernel="compiled"))
    for impl in ("askd_chunked", "askd_chunked_gkd"):
        la, lb = bench.STEPS[impl](a), bench.STEPS[impl](b)
        assert_close(lb, la, tolerance(torch.float32), what=f"{impl} loss")
    assert a.hs.grad is not None
    assert b.hs.grad is not None
    assert_close(b.hs.grad, a.hs.grad, tolerance(torch.float32, "grad"), what="hidden gradient")
    with pytest.raises(ValueError, match="kernel must be 'fused' or 'compiled'"):
        dataclasses.replace(TINY, kernel="core")


def _gkd_reference_f64(x: bench.Inputs, beta: float) -> torch.Tensor:
    """JSD_β per token from float64 full logits, the library's full-logit ``gkd_loss``."""
    from askd_ref.baselines import gkd_loss

    shape = (x.rows, x.cfg.seq_len, x.cfg.vocab)
    zs = (x.hs.detach().double() @ x.ws.detach().double().T).view(shape)
    zt = (x.ht.double() @ x.wt.double().T).view(shape)
    batch = DistillBatch(
        mask=x.mask,
        is_tgo=x.is_tgo,
        student_logp=torch.log_softmax(zs, -1),
        teacher_logp=torch.log_softmax(zt, -1),
    )
    return gkd_loss(batch, beta=beta).loss


@pytest.mark.skipif(not HAVE_LIGER, reason=NO_LIGER)
def test_liger_eager_jsd_equals_askd_gkd_value_and_gradient() -> None:
    """Liger's fused-linear JSD (β = 0.5, no CE) = chunked_loss("gkd") = the float64 full-logit GJSD."""
    a, b = bench.make_inputs(TINY), bench.make_inputs(TINY)
    la = bench.STEPS["askd_chunked_gkd"](a)
    lb = bench.STEPS["liger_jsd"](b)
    assert bench.check_liger_value(bench.make_inputs(TINY), lb) >= 0.0
    assert_close(lb, la, tolerance(torch.float32), what="Liger vs askd-ref gkd value")
    assert_close(la.double(), _gkd_reference_f64(a, 0.5), tolerance(torch.float32), what="gkd vs float64")
    for name in ("hs", "ws"):
        ga, gb = getattr(a, name).grad, getattr(b, name).grad
        assert ga is not None
        assert gb is not None
        assert_close(gb, ga, tolerance(torch.float32, "grad"), what=f"Liger vs askd-ref gradient of {name}")


@pytest.mark.skipif(not HAVE_LIGER, reason=NO_LIGER)
def test_liger_beta_weights_the_teacher_as_askd_ref_does() -> None:
    """At an asymmetric β (0.3) Liger's JSD_β equals askd-ref's JSD_β, not JSD_{1−β}."""
    x = bench.make_inputs(TINY)
    got = bench.liger_jsd_loss(x, compiled=False, beta=0.3).detach().double()
    same = _gkd_reference_f64(x, 0.3)
    swapped = _gkd_reference_f64(x, 0.7)
    assert_close(got, same, tolerance(torch.float32), what="Liger β = 0.3 vs askd-ref β = 0.3")
    assert abs(float(same - swapped)) > 100 * abs(float(got - same))  # the test can tell them apart


@pytest.mark.skipif(not HAVE_LIGER, reason=NO_LIGER)
def test_liger_value_check_rejects_a_different_loss() -> None:
    x = bench.make_inputs(TINY)
    wrong = bench.liger_jsd_loss(x, compiled=False, beta=0.3).detach()
    with pytest.raises(AssertionError, match="Liger JSD vs askd-ref gkd"):
        bench.check_liger_value(x, wrong)


def test_liger_rows_fail_clearly_when_requested_without_liger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "liger_available", lambda: False)
    with pytest.raises(ValueError, match="liger=True"):
        bench.run_loss_bench(tmp_path, sizes=[(64, 97)], hidden=8, seq_len=16, liger=True, progress=False)


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_LIGER, reason=NO_LIGER)
def test_liger_compiled_worker_checks_value_and_reports_compile_time() -> None:
    result = bench.worker_run(TINY, "liger_jsd_compiled", 1)
    assert result["value_check_abs_diff"] >= 0.0
    assert result["first_pass_s"] > 0
    assert "compile_s" in result


def test_memory_prediction_scales_chunked_rows_with_the_vocabulary_only() -> None:
    """A chunked row at 16384 tokens is predicted from 1024 tokens without a 16× blow-up; a
    full-logit row is, and is skipped."""
    base = (bench.memory_scale("liger_jsd_compiled", 1024, 32768), 1800.0, 640.0)
    size = bench.memory_scale("liger_jsd_compiled", 16384, 32768)
    assert bench._over_budget(base, size, budget=4000.0) is None
    full = (bench.memory_scale("trl_gkd", 4096, 32768), 9350.0, 640.0)
    reason = bench._over_budget(full, bench.memory_scale("trl_gkd", 16384, 32768), budget=16000.0)
    assert reason is not None
    assert "predicted peak 34.6 GiB" in reason
    assert bench.memory_scale("floor", 16384, 151936) == bench.FLOOR_BLOCK * 151936


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        ("floor_blocks.py", "--tokens 512 --vocab 97 --passes 1", "512 x 97: blocked / one block = "),
        ("profile_chunked.py", "--tokens 512 --vocab 97", "askd_chunked at 512 x 97: self CPU "),
        pytest.param(
            "profile_chunked.py",
            "--tokens 512 --vocab 97 --kernel compiled",
            "of which outside every recorded event",
            marks=pytest.mark.skipif(not HAVE_CC, reason=NO_CC),
        ),
        (
            "chunk_sizes.py",
            "--tokens 512 --vocab 97 --passes 1 --chunks 16 64 --matmuls",
            "matmuls alone, chunk 64",
        ),
        ("elementwise_ops.py", "--rows 2 --vocab 97 --repeat 2", "logaddexp with a column"),
        ("elementwise_ops.py", "--blocks 1 4 --chunk 8 --vocab 97 --repeat 1", "block    4 rows"),
        pytest.param(
            "elementwise_ops.py",
            "--c-kernel --chunk 8 --vocab 97 --repeat 1 --divergence SRKL_FULL",
            "C kernel / eager: ",
            marks=pytest.mark.skipif(not HAVE_CC, reason=NO_CC),
        ),
        ("bound_ratios.py", "--sizes 512x97 --passes 1", "time askd_chunked/floor: "),
        pytest.param(
            "bound_ratios.py",
            "--sizes 512x97 --passes 1 --kernels fused compiled",
            "time askd_chunked[compiled]/floor: ",
            marks=pytest.mark.skipif(not HAVE_CC, reason=NO_CC),
        ),
    ],
)
def test_benchmark_scripts_run_at_a_tiny_size(
    script: str, args: str, expected: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scripts behind numbers in docs/benchmarks.md run and print their result line."""
    import runpy

    path = Path(__file__).parents[1] / "scripts" / script
    monkeypatch.setattr("sys.argv", [str(path), *args.split()])
    runpy.run_path(str(path), run_name="__main__")
    assert expected in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.parametrize("divergence", ["SKL", "SRKL_FULL", "GJSD"])
def test_inductor_elementwise_comparison_runs_at_a_tiny_size(
    divergence: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``elementwise_ops.py --inductor`` compiles the block function, checks it against the eager
    fused kernel (it exits on a difference) and prints the ratio (slow: inductor compiles C++)."""
    import runpy

    path = Path(__file__).parents[1] / "scripts" / "elementwise_ops.py"
    argv = f"--inductor --chunk 8 --vocab 97 --repeat 1 --divergence {divergence}".split()
    monkeypatch.setattr("sys.argv", [str(path), *argv])
    runpy.run_path(str(path), run_name="__main__")
    assert "compiled / eager: " in capsys.readouterr().out


def _fake_run(path: Path, times: dict[str, float], skipped: tuple[str, ...] = ()) -> Path:
    """A minimal ``askd bench loss`` output directory at 64 × 97 with the given row times."""
    records = [
        {"tokens": 64, "vocab": 97, "hidden": 8, "impl": impl, "time_s": t, "peak_mb": 100.0, "device": "cpu"}
        for impl, t in times.items()
    ]
    cfg = {"tokens": 64, "vocab": 97}
    details = {
        "configs": [{"config": cfg, "results": {impl: {"times_s": [t]} for impl, t in times.items()}}],
        "repeats": {impl: 1 for impl in times},
        "environment": {"load_average_1_5_15": path.name},
        "skipped": [{"tokens": 64, "vocab": 97, "impl": impl, "reason": "too big"} for impl in skipped],
    }
    path.mkdir()
    (path / "loss-bench.json").write_text(json.dumps(records))
    (path / "loss-bench-details.json").write_text(json.dumps(details))
    return path


def test_merge_script_takes_later_rows_over_earlier_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """scripts/merge_loss_bench.py: a later run's row replaces the earlier one (record, passes,
    a skip), rows only the earlier run has stay, ratios are recomputed, both environments kept."""
    import runpy

    old = {"askd_chunked": 2.0, "floor": 1.0, "trl_gkd": 4.0}
    first = _fake_run(tmp_path / "first", old, skipped=("askd_full",))
    second = _fake_run(tmp_path / "second", {"askd_chunked": 1.0, "floor": 1.25, "askd_full": 5.0})
    out = tmp_path / "merged"
    path = Path(__file__).parents[1] / "scripts" / "merge_loss_bench.py"
    argv = [str(path), str(first), str(second), "--label", "old", "--label", "new", "--out", str(out)]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(path), run_name="__main__")
    printed = capsys.readouterr().out
    assert "64x97 time_s   askd_chunked/floor                     0.800 (bound 1.1): met" in printed
    records = {r["impl"]: r for r in json.loads((out / "loss-bench.json").read_text())}
    assert {i: (r["time_s"], r["run"]) for i, r in records.items()} == {
        "askd_chunked": (1.0, "new"),
        "askd_full": (5.0, "new"),
        "trl_gkd": (4.0, "old"),
        "floor": (1.25, "new"),
    }
    details = json.loads((out / "loss-bench-details.json").read_text())
    assert details["skipped"] == []
    assert details["configs"][0]["results"]["askd_chunked"]["times_s"] == [1.0]
    assert details["ratios"]["64x97"]["time a/trl_gkd"] == 0.25
    assert set(details["runs"]) == {"old", "new"}
    assert (out / "loss-bench.png").stat().st_size > 0
    monkeypatch.setattr("sys.argv", [str(path), str(first), str(second), "--label", "old", "--out", str(out)])
    with pytest.raises(ValueError, match="one per run"):
        runpy.run_path(str(path), run_name="__main__")


@pytest.mark.parametrize("n", [5, 6, 9, 15, 21, 40])
def test_median_upper_bound_is_the_sign_test_order_statistic(n: int) -> None:
    """The bound is x₍ₖ₎ for the smallest k with P(Bin(n, ½) ≤ k − 1) ≥ 0.95 (scipy's binomial)."""
    from scipy import stats

    k = bench.median_upper_bound([float(i) for i in range(1, n + 1)])
    assert k is not None
    k = int(k)
    assert stats.binom.cdf(k - 1, n, 0.5) >= 0.95
    assert stats.binom.cdf(k - 2, n, 0.5) < 0.95


def test_median_upper_bound_covers_the_median_at_its_rate() -> None:
    """Monte Carlo over a skewed law (lognormal, median 1): the median exceeds the bound of 15
    draws at the exact rate P(Bin(15, ½) ≥ 12) = 0.01758. Seed 0, 40000 trials; the band is ±5
    binomial standard deviations (false-failure rate below 1e-6); a failure prints the count."""
    from scipy import stats

    rng = torch.Generator().manual_seed(0)
    trials, n = 40_000, 15
    draws = torch.randn(trials, n, generator=rng, dtype=torch.float64).exp()
    misses = sum(bench.median_upper_bound(row.tolist()) < 1.0 for row in draws)  # type: ignore[operator]
    rate = float(stats.binom.sf(11, n, 0.5))
    sd = (rate * (1 - rate) / trials) ** 0.5
    assert abs(misses / trials - rate) <= 5 * sd, (
        f"{misses} misses in {trials} trials, expected {rate * trials:.0f}"
    )


def test_median_upper_bound_needs_enough_values_and_a_probability() -> None:
    assert bench.median_upper_bound([3.0, 5.0, 1.0, 4.0, 2.0]) == 5.0  # in any order
    assert bench.median_upper_bound([1.0, 2.0, 3.0, 4.0]) is None  # 1 − 2⁻⁴ < 0.95
    assert bench.median_upper_bound([1.0, 2.0, 3.0, 4.0], confidence=0.9) == 4.0
    with pytest.raises(ValueError, match="confidence"):
        bench.median_upper_bound([1.0] * 9, confidence=1.0)


# ----------------------------------------------------------------------------------------------
# The kernel choice and the interleaved ratios.
# ----------------------------------------------------------------------------------------------


def test_auto_kernel_is_the_compiled_one_where_it_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bench.resolve_kernel("fused", "cpu") == ("fused", "asked for")
    assert bench.resolve_kernel("auto", "cuda:0")[0] == "fused"
    with pytest.raises(ValueError, match="CPU only"):
        bench.resolve_kernel("compiled", "cuda")
    with pytest.raises(ValueError, match="kernel must be one of"):
        bench.resolve_kernel("core", "cpu")

    def unavailable() -> None:
        raise compiled.CompiledKernelUnavailable("kernel='compiled': no C compiler found\nmore")

    if HAVE_CC:
        assert bench.resolve_kernel("auto", "cpu")[0] == "compiled"
    monkeypatch.setattr(compiled, "load", unavailable)
    kernel, why = bench.resolve_kernel("auto", "cpu")
    assert kernel == "fused"
    assert why == "auto: the compiled kernel is unavailable (kernel='compiled': no C compiler found)"
    with pytest.raises(ValueError, match="no C compiler found"):
        bench.resolve_kernel("compiled", "cpu")


def _expected_ratio(result: dict[str, object], num: str, den: str) -> tuple[float, float, float]:
    """Median per-round ratio, ratio of medians and the 5-round upper bound (the largest
    per-round ratio), recomputed from the passes with plain loops."""
    times = result["times_s"]
    assert isinstance(times, dict)
    per_round = sorted(a / b for a, b in zip(times[num], times[den], strict=True))
    n = len(per_round)
    median = per_round[n // 2] if n % 2 else (per_round[n // 2 - 1] + per_round[n // 2]) / 2
    a, b = sorted(times[num]), sorted(times[den])
    return median, a[n // 2] / b[n // 2], per_round[-1]


def test_interleaved_times_keeps_every_round_and_pairs_them() -> None:
    result = bench.interleaved_times(TINY, 5, liger=False)
    assert result["rounds"] == 5
    assert result["kernels"] == ["fused"]
    assert set(result["times_s"]) == {"askd_chunked", "floor"}
    assert all(len(ts) == 5 and min(ts) > 0 for ts in result["times_s"].values())
    assert set(result["warmup_s"]) == {"askd_chunked", "floor"}
    ((name, q),) = result["ratios"].items()
    assert name == "askd_chunked/floor"
    paired, of_medians, largest = _expected_ratio(result, "askd_chunked", "floor")
    assert q["paired"] == pytest.approx(paired, rel=1e-12)
    assert q["value"] == pytest.approx(of_medians, rel=1e-12)
    assert q["paired_upper"] == pytest.approx(largest, rel=1e-12)  # n = 5: x₍₅₎ at 1 − 2⁻⁵
    assert q["bound"] == bench.TARGETS[("time_s", "askd_chunked", "floor")]
    assert q["shown"] == (largest <= q["bound"])
    assert q["met"] == (of_medians <= q["bound"])
    few = bench.interleaved_times(TINY, 2, liger=False)["ratios"]["askd_chunked/floor"]
    assert few["paired_upper"] is None
    assert not few["shown"]
    with pytest.raises(ValueError, match="rounds must be >= 1"):
        bench.interleaved_times(TINY, 0)
    with pytest.raises(ValueError, match="kernels must be some of"):
        bench.interleaved_times(TINY, 1, ["core"])  # type: ignore[list-item]


@pytest.mark.skipif(not HAVE_CC, reason=NO_CC)
def test_interleaved_times_runs_one_askd_row_per_kernel() -> None:
    result = bench.interleaved_times(TINY, 1, ["fused", "compiled"], liger=HAVE_LIGER)
    rows = {"askd_chunked", "askd_chunked[compiled]", "floor"}
    ratios = {"askd_chunked/floor", "askd_chunked[compiled]/floor"}
    if HAVE_LIGER:
        rows |= {"askd_chunked_gkd", "askd_chunked_gkd[compiled]", "liger_jsd_compiled"}
        ratios |= {"askd_chunked_gkd/liger_jsd_compiled", "askd_chunked_gkd[compiled]/liger_jsd_compiled"}
    assert set(result["times_s"]) == rows
    assert set(result["ratios"]) == ratios
    assert bench.row_name("askd_chunked", "compiled", "compiled") == "askd_chunked"


def test_time_checks_use_the_interleaved_median_where_there_is_one() -> None:
    records = [
        _record("askd_chunked", 6.0, 1000.0),
        _record("floor", 4.0, 1500.0),
        _record("askd_chunked_gkd", 3.0, 900.0),
        _record("liger_jsd_compiled", 4.0, 1000.0),
    ]
    paired = {
        "rounds": 5,
        "ratios": {
            "askd_chunked/floor": {"paired": 1.05, "paired_upper": 1.12, "confidence": 0.95, "shown": False},
        },
    }
    checks = {(c["quantity"], c["ratio"]): c for c in bench.check_targets(records, interleaved=paired)}
    a_e = checks[("time_s", "askd_chunked/floor")]
    assert a_e["method"] == "interleaved"
    assert (a_e["value"], a_e["workers_value"], a_e["upper"], a_e["rounds"]) == (1.05, 1.5, 1.12, 5)
    assert a_e["met"]
    assert not a_e["shown"]
    g_l = checks[("time_s", "askd_chunked_gkd/liger_jsd_compiled")]  # not interleaved: the workers' ratio
    assert "method" not in g_l
    assert g_l["value"] == 0.75
    assert g_l["met"]
    assert "method" not in checks[("peak_mb", "askd_chunked_gkd/liger_jsd_compiled")]  # memory: workers only
    lines = bench.target_lines(records, {"4096x32768": paired})
    line = next(x for x in lines if "askd_chunked/floor" in x)
    assert "1.050 (bound 1.1): met; median of 5 interleaved per-round ratios" in line
    assert "95% upper bound 1.120, NOT within the bound; separate workers 1.500" in line


def test_driver_adds_the_interleaved_ratios_and_skips_them_beyond_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The driver's extra worker: its ratios in the details, the checks and the table; skipped,
    with the reason, when the rows it holds at once would not fit."""
    kwargs = {"sizes": [(64, 97)], "hidden": 8, "seq_len": 16, "repeats": 1, "progress": False}
    only = ["askd_chunked", "floor"]
    records = bench.run_loss_bench(tmp_path / "a", only=only, rounds=5, kernel="fused", **kwargs)  # type: ignore[arg-type]
    details = json.loads((tmp_path / "a" / "loss-bench-details.json").read_text())
    assert details["kernel"] == {"asked": "fused", "ran": "fused", "why": "asked for"}
    result = details["interleaved"]["64x97"]
    assert result["rounds"] == 5
    assert set(result["ratios"]) == {"askd_chunked/floor"}
    (check,) = [c for c in details["targets"]["64x97"] if c["ratio"] == "askd_chunked/floor"]
    assert check["method"] == "interleaved"
    assert check["value"] == pytest.approx(_expected_ratio(result, "askd_chunked", "floor")[0], rel=1e-12)
    assert check["workers_value"] == pytest.approx(records[0]["time_s"] / records[1]["time_s"], rel=1e-12)
    assert "| 64 | 97 | askd_chunked/floor | 5 |" in (tmp_path / "a" / "loss-bench.md").read_text()

    # The rows' workers faked (no processes): 40 MB each above a 30 MB baseline, 60 MB free.
    fake = {"times_s": [1.0], "peak_mb": 70.0, "base_mb": 30.0}
    monkeypatch.setattr(bench, "_spawn", lambda *args: dict(fake))
    monkeypatch.setattr(bench, "_spawn_interleaved", lambda *args: pytest.fail("ran beyond memory"))
    monkeypatch.setattr(bench, "_available_mb", lambda: 60.0 / 0.7)
    bench.run_loss_bench(tmp_path / "b", only=only, rounds=5, kernel="fused", **kwargs)  # type: ignore[arg-type]
    details = json.loads((tmp_path / "b" / "loss-bench-details.json").read_text())
    assert details["interleaved"] == {}
    (skip,) = details["skipped"]
    assert skip["impl"] == "interleaved ratios"
    assert skip["reason"] == "predicted peak 0.11 GiB > 0.06 GiB"  # 30 + 2 × 40 = 110 MB > 60 MB
    assert all("method" not in c for c in details["targets"]["64x97"])
    with pytest.raises(ValueError, match="rounds must be >= 0"):
        bench.run_loss_bench(tmp_path / "c", only=only, rounds=-1, **kwargs)  # type: ignore[arg-type]
