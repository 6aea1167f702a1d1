"""``askd demo``: the main job, end to end on the embedded toy task in a few minutes of CPU.

1. A teacher (tiny Llama) is trained from scratch until its dev accuracy reaches 80 %; it stays
   imperfect, and its sampled outputs (TGOs) are right only part of the time.
2. A smaller student is initialised by brief SFT on reference solutions.
3. From that same start, the student is distilled with ASKD and with DistiLLM-2 — same prompts,
   TGOs, SGO regime, optimizer steps, batch size and learning rate.
4. Every model is evaluated by greedy decoding on ``n_eval`` held-out problems (exact match).

Outputs in ``--out``: ``results.json`` (``teacher_accuracy``, ``student_accuracy_before``,
``methods`` → {name: accuracy}, plus standard errors, paired McNemar comparisons against the SFT
start, timings and the settings), ``results.png`` (accuracies with 95 % intervals, and the
students' on-policy sample accuracy during distillation), the TGO file ``data/tgo.jsonl`` and the
models as ``save_pretrained`` directories with the tokenizer (``teacher/``, ``student-sft/``,
``student-<method>/``).
"""

import dataclasses
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from askd_ref.data import Sample, write_samples
from askd_ref.io import atomic_open, atomic_write_json
from askd_ref.toy.pipeline import (
    DistillResult,
    ToySettings,
    distill,
    make_setup,
    teacher_outputs,
    train_student_sft,
    train_teacher,
)
from askd_ref.toy.stats import mcnemar

__all__ = ["DEMO_METHODS", "plot_results", "run_demo"]

#: The methods the demo compares (ASKD first).
DEMO_METHODS: tuple[str, ...] = ("askd", "distillm2")


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
) -> dict[str, Any]:
    """Run the demo and write its files into ``out``; return the ``results.json`` content."""
    check_device(device, dtype)
    s = settings or ToySettings()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    torch.manual_seed(seed)
    setup = make_setup(s, seed=seed)

    def say(msg: str) -> None:
        if echo:
            print(msg, flush=True)

    say(f"[1/4] teacher: Llama d={s.teacher.hidden_size} L={s.teacher.num_layers}, SFT from scratch")
    train_teacher(setup, teacher_seed=seed, device=device, dtype=dtype, progress=progress)
    assert setup.teacher_eval is not None
    say(f"      {setup.teacher_steps} steps, held-out accuracy {setup.teacher_eval.accuracy:.3f}")
    say(f"[2/4] student: Llama d={s.student.hidden_size} L={s.student.num_layers}, brief SFT")
    train_student_sft(setup, device=device, dtype=dtype, progress=progress)
    assert setup.student_eval is not None
    say(f"      {setup.student_steps} steps, held-out accuracy {setup.student_eval.accuracy:.3f}")
    say(f"[3/4] teacher outputs for {s.n_prompts} distillation prompts")
    teacher_outputs(setup, progress=progress)
    tgo_quality = [r.quality for it in setup.items for r in it.tgos if r.quality is not None]
    tgo_accuracy = sum(tgo_quality) / len(tgo_quality)
    say(f"      TGO exact-match accuracy {tgo_accuracy:.3f} (sampled at temperature {s.tgo_temperature})")
    write_samples(
        out_dir / "data" / "tgo.jsonl",
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
        _save_model(setup.teacher, setup.tokenizer, out_dir / "teacher")
        _save_model(setup.student, setup.tokenizer, out_dir / "student-sft")
    runs: dict[str, DistillResult] = {}
    for i, method in enumerate(methods):
        say(f"[4/4] distillation {i + 1}/{len(methods)}: {method} ({s.distill_steps} steps)")
        run = distill(setup, method, device=device, dtype=dtype, progress=progress)
        runs[method] = run
        say(f"      held-out accuracy {run.eval.accuracy:.3f} ({run.seconds:.0f} s)")
        if save_models:
            _save_model(run.model, setup.tokenizer, out_dir / f"student-{method}")
    before = setup.student_eval
    results: dict[str, Any] = {
        "teacher_accuracy": setup.teacher_eval.accuracy,
        "student_accuracy_before": before.accuracy,
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
            "total_s": round(time.perf_counter() - t_start, 2),
        },
        "settings": dataclasses.asdict(s),
        "seed": seed,
        "device": device,
        "dtype": dtype,
        "torch_threads": torch.get_num_threads(),
    }
    atomic_write_json(out_dir / "results.json", results)
    plot_results(results, out_dir / "results.png")
    say("")
    say(format_table(results))
    say(f"\nwrote {out_dir / 'results.json'}, {out_dir / 'results.png'} and the models; "
        f"total {results['timings_s']['total_s']:.0f} s")
    return results


def format_table(results: dict[str, Any]) -> str:
    """The printed table: accuracy ± 1.96·se per model, and the gain over the SFT start."""
    n = results["n_eval"]
    se = results["stderr"]
    before = results["student_accuracy_before"]
    lines = [
        f"Held-out accuracy (greedy, exact match, n = {n}; ± is the 95% interval)",
        f"{'model':<28}{'accuracy':>16}{'vs SFT start':>28}",
        f"{'teacher':<28}{results['teacher_accuracy']:>9.3f} ± {1.96 * se['teacher']:.3f}",
        f"{'student before (SFT)':<28}{before:>9.3f} ± {1.96 * se['student_before']:.3f}",
    ]
    for m, acc in results["methods"].items():
        p = results["paired_vs_sft"][m]
        lo, hi = p["ci95"]
        gain = f"{acc - before:+.3f} [{lo:+.3f}, {hi:+.3f}] p={p['p_value']:.1g}"
        lines.append(f"{'student after ' + m:<28}{acc:>9.3f} ± {1.96 * se[m]:.3f}  {gain:>26}")
    return "\n".join(lines)


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
