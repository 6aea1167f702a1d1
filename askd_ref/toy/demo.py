"""``askd demo``: the main job, end to end on the embedded toy task in a few minutes of CPU.

1. A teacher (tiny Llama) is trained from scratch on solutions with a systematic flaw (a dropped
   carry on 17 % of problems) until it reproduces its data; it is right on ≈ 83 % of problems,
   and its sampled outputs (TGOs) vary in quality.
2. A smaller student is initialised by brief SFT on reference solutions (to ≈ 30 % or more).
3. From that same start, the student is distilled with ASKD and with DistiLLM-2 — same prompts,
   TGOs, SGO regime, optimizer steps, batch size and learning rate.
4. Every model is evaluated by greedy decoding on ``n_eval`` held-out problems (exact match).

Guards: a stage that misses its target (teacher not fitted within its step cap or outside its
accuracy band, student not at its target) stops the run with :class:`~askd_ref.toy.pipeline.StageMissed`
(``askd demo`` exits 1 with one line saying what to try); with ``allow_miss`` the run continues and
``results.json`` and the plot are marked invalid.

Outputs in ``--out``: ``results.json`` (``teacher_accuracy``, ``student_accuracy_before``,
``methods`` → {name: accuracy}, plus standard errors, paired McNemar comparisons against the SFT
start, timings, the settings, per stage whether its target was reached (``stages``, ``valid``),
the expected ranges and whether each result lies in them (``expected``, ``checks``), and the
float environment (``environment``: CPU model, torch CPU capability, threads, versions)),
``results.png`` (accuracies with 95 % intervals, and the
students' on-policy sample accuracy during distillation), the TGO file ``data/tgo.jsonl`` and the
models as ``save_pretrained`` directories with the tokenizer (``teacher/``, ``student-sft/``,
``student-<method>/``).
"""

import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from askd_ref.engine.data import Sample, write_samples
from askd_ref.io import atomic_open, atomic_write_json
from askd_ref.toy.pipeline import (
    DistillResult,
    StageMissed,
    ToySettings,
    ToySetup,
    distill,
    make_setup,
    teacher_outputs,
    train_student_sft,
    train_teacher,
)
from askd_ref.toy.stats import mcnemar

__all__ = ["DEMO_METHODS", "environment", "expected_ranges", "plot_results", "run_demo"]

#: The methods the demo compares (ASKD first).
DEMO_METHODS: tuple[str, ...] = ("askd", "distillm2")


def environment() -> dict[str, Any]:
    """What the floating-point results depend on: CPU, torch's CPU kernels, threads, versions."""
    import importlib.metadata

    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        version = importlib.metadata.version("askd-ref")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout without install
        version = "unknown"
    return {
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "askd_ref": version,
        "platform": platform.platform(),
        "argv": sys.argv[1:],
    }


def expected_ranges(settings: ToySettings) -> dict[str, Any]:
    """The ranges a valid demo run lands in (checked, printed beside the numbers, in README)."""
    lo, hi = settings.teacher_band
    return {
        "teacher_accuracy": [lo, hi],
        "student_accuracy_before": [settings.student_target or 0.0, 0.70],
        "askd_gain_min": settings.min_gain,
    }


def _save_model(model: Any, tokenizer: Any, path: Path) -> None:
    """``save_pretrained`` into a temporary sibling, then rename (a directory appears complete)."""
    tmp = path.with_name(f".{path.name}.tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if path.exists():
        import shutil

        shutil.rmtree(path)
    os.replace(tmp, path)


def check_device(device: str, dtype: str) -> None:
    """Validate ``--device``/``--dtype`` (bf16/fp16 need a GPU; cuda must be available)."""
    if dtype not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"dtype must be fp32, bf16 or fp16, got {dtype!r}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    elif device != "cpu":
        raise ValueError(f"device must be 'cpu' or 'cuda[:N]', got {device!r}")
    if device == "cpu" and dtype != "fp32":
        raise ValueError(f"dtype {dtype} is for GPUs; use fp32 on CPU")


@dataclasses.dataclass
class _Run:
    """What one ``run_demo`` call carries between its steps."""

    setup: ToySetup
    out_dir: Path
    env: dict[str, Any]
    device: str
    dtype: str
    progress: bool
    echo: bool
    allow_miss: bool
    t_start: float = dataclasses.field(default_factory=time.perf_counter)
    cpu_start: float = dataclasses.field(default_factory=time.process_time)
    load_start: float | None = dataclasses.field(default_factory=lambda: _load())

    def say(self, msg: str) -> None:
        if self.echo:
            print(msg, flush=True)

    def stage(self, fn: Any, **kwargs: Any) -> None:
        """Run a stage with a stopping rule; on a miss write a ``results.json`` saying so, then raise."""
        setup = self.setup
        try:
            record = fn(
                setup, device=self.device, dtype=self.dtype, progress=self.progress,
                allow_miss=self.allow_miss, **kwargs,
            )
        except StageMissed as err:
            failed = {"valid": False, "error": str(err), **_common(setup, setup.seed, self.env)}
            failed["timings_s"] = {k: round(v, 2) for k, v in setup.timings.items()}
            atomic_write_json(self.out_dir / "results.json", failed)
            raise
        if record is not None and not record.reached:
            self.say(f"      !!! {record.stage} MISSED its target; continuing (--allow-miss), "
                     "results INVALID")


def run_demo(
    out: str | os.PathLike[str],
    *,
    settings: ToySettings | None = None,
    methods: Sequence[str] = DEMO_METHODS,
    seed: int = 0,
    device: str = "cpu",
    dtype: str = "fp32",
    progress: bool = True,
    save_models: bool = True,
    echo: bool = True,
    allow_miss: bool = False,
) -> dict[str, Any]:
    """Run the demo and write its files into ``out``; return the ``results.json`` content.

    A stage that misses its target raises :class:`~askd_ref.toy.pipeline.StageMissed` after
    writing a ``results.json`` that records the miss (``valid: false``), unless ``allow_miss``:
    then the run goes on and its results are marked invalid.
    """
    check_device(device, dtype)
    s = settings or ToySettings()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    run = _Run(make_setup(s, seed=seed), out_dir, {}, device, dtype, progress, echo, allow_miss)
    torch.manual_seed(seed)
    run.env = environment()
    _train_pair(run)
    tgo_accuracy = _teacher_outputs(run, save_models=save_models)
    runs: dict[str, DistillResult] = {}
    for i, method in enumerate(methods):
        run.say(f"[4/4] distillation {i + 1}/{len(methods)}: {method} ({s.distill_steps} steps)")
        result = distill(run.setup, method, device=device, dtype=dtype, progress=progress)
        runs[method] = result
        run.say(f"      held-out accuracy {result.eval.accuracy:.3f} ({result.seconds:.0f} s)")
        if save_models:
            _save_model(result.model, run.setup.tokenizer, out_dir / f"student-{method}")
    results = _results(run, runs, tgo_accuracy)
    atomic_write_json(out_dir / "results.json", results)
    plot_results(results, out_dir / "results.png")
    _report(run, results)
    return results


def _train_pair(run: _Run) -> None:
    """Stages 1 and 2: the teacher and the student's SFT, each with its stopping rule."""
    setup, s = run.setup, run.setup.settings
    lo, hi = s.teacher_band
    run.say(f"[1/4] teacher: Llama d={s.teacher.hidden_size} L={s.teacher.num_layers}, SFT from scratch on "
            f"flawed data until dev fit ≥ {s.teacher_fit_target} (cap {s.teacher_max_steps} steps)")
    run.stage(train_teacher, teacher_seed=setup.seed)
    assert setup.teacher_eval is not None
    run.say(f"      {setup.teacher_steps} steps, held-out accuracy {setup.teacher_eval.accuracy:.3f} "
            f"(expected {lo:.2f}–{hi:.2f})")
    run.say(f"[2/4] student: Llama d={s.student.hidden_size} L={s.student.num_layers}, SFT until dev "
            f"accuracy ≥ {s.student_target} (cap {s.student_sft_steps} steps)")
    run.stage(train_student_sft)
    assert setup.student_eval is not None
    exp_s = expected_ranges(s)["student_accuracy_before"]
    run.say(f"      {setup.student_steps} steps, held-out accuracy {setup.student_eval.accuracy:.3f} "
            f"(expected {exp_s[0]:.2f}–{exp_s[1]:.2f})")


def _teacher_outputs(run: _Run, *, save_models: bool) -> float:
    """Stage 3: sample and score the TGOs, write them (and the trained pair); their accuracy."""
    setup, s = run.setup, run.setup.settings
    run.say(f"[3/4] teacher outputs for {s.n_prompts} distillation prompts")
    teacher_outputs(setup, progress=run.progress)
    tgo_quality = [r.quality for it in setup.items for r in it.tgos if r.quality is not None]
    tgo_accuracy = sum(tgo_quality) / len(tgo_quality)
    run.say(f"      TGO exact-match accuracy {tgo_accuracy:.3f} (sampled at temperature {s.tgo_temperature})")
    write_samples(
        run.out_dir / "data" / "tgo.jsonl",
        [
            Sample(
                prompt=it.prompt,
                response=r.text,
                source="teacher",
                quality=r.quality,
                reference=it.reference,
                extra={"response_ids": list(r.token_ids or ())},
            )
            for it in setup.items
            for r in it.tgos
        ],
    )
    if save_models:
        _save_model(setup.teacher, setup.tokenizer, run.out_dir / "teacher")
        _save_model(setup.student, setup.tokenizer, run.out_dir / "student-sft")
    return tgo_accuracy


def _checks(setup: ToySetup, runs: dict[str, DistillResult]) -> dict[str, bool]:
    """Whether each result lies in its expected range (``results.json`` ``checks``)."""
    s = setup.settings
    assert setup.teacher_eval is not None
    assert setup.student_eval is not None
    lo, hi = s.teacher_band
    exp_s = expected_ranges(s)["student_accuracy_before"]
    before = setup.student_eval.accuracy
    return {
        "teacher_in_band": lo <= setup.teacher_eval.accuracy <= hi,
        "student_in_range": exp_s[0] <= before <= exp_s[1],
        **{
            f"{m}_gain_at_least_{s.min_gain:.2f}": r.eval.accuracy >= before + s.min_gain
            for m, r in runs.items()
            if m == "askd" and s.min_gain is not None
        },
    }


def _results(run: _Run, runs: dict[str, DistillResult], tgo_accuracy: float) -> dict[str, Any]:
    """The ``results.json`` content of a finished run."""
    setup, s = run.setup, run.setup.settings
    assert setup.teacher_eval is not None
    assert setup.student_eval is not None
    before = setup.student_eval
    results: dict[str, Any] = {
        "methods": {m: r.eval.accuracy for m, r in runs.items()},
        "n_eval": before.n,
        "stderr": {
            "teacher": setup.teacher_eval.stderr,
            "student_before": before.stderr,
            **{m: r.eval.stderr for m, r in runs.items()},
        },
        "tgo_accuracy": tgo_accuracy,
        "paired_vs_sft": {
            m: dataclasses.asdict(mcnemar(r.eval.scores, before.scores)) for m, r in runs.items()
        },
        "paired_askd_vs": {
            m: dataclasses.asdict(mcnemar(runs["askd"].eval.scores, r.eval.scores))
            for m, r in runs.items()
            if m != "askd" and "askd" in runs
        },
        "curves": {
            m: [
                {"step": h["step"], "sgo_accuracy": h.get("quality/sgo_mean"), "loss": h["loss"]}
                for h in r.log_history
                if "loss" in h
            ]
            for m, r in runs.items()
        },
        "steps": {
            "teacher_sft": setup.teacher_steps,
            "student_sft": setup.student_steps,
            "distill": s.distill_steps,
        },
        "timings_s": {
            **{k: round(v, 2) for k, v in setup.timings.items()},
            **{f"distill_{m}_s": round(r.seconds, 2) for m, r in runs.items()},
            "total_s": round(time.perf_counter() - run.t_start, 2),
            "cpu_s": round(time.process_time() - run.cpu_start, 2),
        },
        "device": run.device,
        "dtype": run.dtype,
        "torch_threads": torch.get_num_threads(),
        "valid": all(v.reached for v in setup.stages.values()),
        "checks": _checks(setup, runs),
        **_common(setup, setup.seed, run.env),
    }
    results["environment"]["load_average_1min"] = [run.load_start, _load()]
    return results


def _report(run: _Run, results: dict[str, Any]) -> None:
    """The closing lines: the table, loud notes on an invalid run or a result out of range."""
    run.say("")
    run.say(format_table(results))
    if not results["valid"]:
        run.say("\n!!! INVALID RUN: a stage missed its target (see 'stages' in results.json)")
    missed = [k for k, ok in results["checks"].items() if not ok]
    if missed:
        run.say(f"\n!!! outside the expected ranges: {', '.join(missed)} (see 'checks' in results.json)")
    run.say(f"\nwrote {run.out_dir / 'results.json'}, {run.out_dir / 'results.png'} and the models; "
            f"total {results['timings_s']['total_s']:.0f} s")


def format_table(results: dict[str, Any]) -> str:
    """The printed table: accuracy ± 1.96·se per model, the gain over the SFT start, and the
    range a valid run is expected in."""
    n = results["n_eval"]
    se = results["stderr"]
    before = results["student_accuracy_before"]
    exp = results.get("expected", {})
    t_lo, t_hi = exp.get("teacher_accuracy", (float("nan"), float("nan")))
    s_lo, s_hi = exp.get("student_accuracy_before", (float("nan"), float("nan")))
    min_gain = exp.get("askd_gain_min")
    lines = [
        f"Held-out accuracy (greedy, exact match, n = {n}; ± is the 95% interval)",
        f"{'model':<26}{'accuracy':>16}{'vs SFT start':>32}   expected",
        f"{'teacher':<26}{results['teacher_accuracy']:>9.3f} ± {1.96 * se['teacher']:.3f}{'':>32}   "
        f"{t_lo:.2f}–{t_hi:.2f}",
        f"{'student before (SFT)':<26}{before:>9.3f} ± {1.96 * se['student_before']:.3f}{'':>32}   "
        f"{s_lo:.2f}–{s_hi:.2f}",
    ]
    for m, acc in results["methods"].items():
        p = results["paired_vs_sft"][m]
        lo, hi = p["ci95"]
        gain = f"{acc - before:+.3f} [{lo:+.3f}, {hi:+.3f}] p={p['p_value']:.1g}"
        want = f"gain ≥ +{min_gain:.2f}" if m == "askd" and min_gain is not None else "(comparison)"
        lines.append(f"{'student after ' + m:<26}{acc:>9.3f} ± {1.96 * se[m]:.3f}  {gain:>30}   {want}")
    return "\n".join(lines)


def _load() -> float | None:
    """The 1-minute load average (CPU contention makes the timings of a run incomparable)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _common(setup: ToySetup, seed: int, env: dict[str, Any]) -> dict[str, Any]:
    """What ``results.json`` records whether or not the run finished: stages, settings, seed,
    expected ranges, environment, and the accuracies measured so far (``None`` before)."""
    s = setup.settings
    return {
        "teacher_accuracy": setup.teacher_eval.accuracy if setup.teacher_eval is not None else None,
        "student_accuracy_before": setup.student_eval.accuracy if setup.student_eval is not None else None,
        "stages": {k: dataclasses.asdict(v) for k, v in setup.stages.items()},
        "settings": dataclasses.asdict(s),
        "seed": seed,
        "expected": expected_ranges(s),
        "environment": dict(env),
    }


def plot_results(results: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Bar chart of the accuracies (95 % intervals) and the distillation curves, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["teacher", "student (SFT)", *[f"{m}" for m in results["methods"]]]
    values = [results["teacher_accuracy"], results["student_accuracy_before"], *results["methods"].values()]
    se = results["stderr"]
    errs = [1.96 * se["teacher"], 1.96 * se["student_before"], *[1.96 * se[m] for m in results["methods"]]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    colors = ["#555555", "#999999", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    ax1.bar(names, values, yerr=errs, capsize=4, color=colors[: len(names)])
    for i, (v, e) in enumerate(zip(values, errs, strict=True)):
        ax1.text(i, v + e + 0.015, f"{v:.3f}", ha="center", fontsize=9)
    ax1.set_ylim(0, 1.08)
    ax1.set_ylabel(f"held-out accuracy (n = {results['n_eval']}, 95% CI)")
    ax1.set_title("Toy task: teacher, SFT start, distilled students")
    if not results.get("valid", True):
        fig.suptitle("INVALID RUN: a stage missed its target (see results.json 'stages')", color="red",
                     fontsize=13, fontweight="bold")
    for i, (m, curve) in enumerate(results["curves"].items()):
        xs = [c["step"] for c in curve if c["sgo_accuracy"] is not None]
        ys = [c["sgo_accuracy"] for c in curve if c["sgo_accuracy"] is not None]
        if xs:
            ax2.plot(xs, ys, label=m, color=colors[2 + i])
    ax2.axhline(results["tgo_accuracy"], color="#555555", linestyle="--", label="teacher samples (TGO)")
    ax2.set_xlabel("distillation step")
    ax2.set_ylabel("accuracy of sampled outputs (T = 1)")
    ax2.set_title("On-policy student samples during distillation")
    ax2.set_ylim(0, 1)
    ax2.legend(loc="upper right")
    fig.tight_layout()
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``results.json`` written by :func:`run_demo`."""
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data
