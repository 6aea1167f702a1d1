"""``askd bench quality``: every method on the toy task, several seeds, equal budgets, paired tests.

Protocol (one teacher, trained once, shared by all seeds):

* for each seed: a student initialised and briefly SFT-trained with that seed, and TGOs sampled
  from the teacher for the distillation prompts with that seed — the **same start and data for
  every method** of the seed;
* every method of :data:`askd_ref.METHODS` (and every sweep variant of ASKD) is distilled from
  that start with the same prompts, TGOs, optimizer steps, batch size (prompts per step),
  learning rate and SGO regime — the **equal step and sample budget**; methods that do not use
  SGOs (``seqkd``, ``kd``) simply do not generate them;
* every result is the greedy exact-match accuracy on the same held-out problems.

Comparisons of ASKD against each baseline are paired: per seed (paired t over seeds) and per
problem (exact McNemar on the pooled (seed, problem) outcomes). Each finished run is cached as
JSON under ``<out>/runs/`` (atomically) so an interrupted benchmark resumes where it stopped.
"""

import dataclasses
import json
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from askd_ref.io import atomic_open, atomic_write_json, atomic_write_text
from askd_ref.methods import METHODS
from askd_ref.options import ASKDOptions
from askd_ref.toy.demo import environment
from askd_ref.toy.pipeline import (
    ToySettings,
    ToySetup,
    distill,
    make_setup,
    teacher_outputs,
    train_student_sft,
    train_teacher,
)
from askd_ref.toy.stats import mcnemar, paired_t

__all__ = [
    "BENCH_SETTINGS",
    "GATE_SWEEP",
    "LR_SWEEP",
    "SWEEP",
    "SWEEPS",
    "SWEEP_PAIRS",
    "Variant",
    "main_variants",
    "run_bench",
    "write_experiments_doc",
]


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration of the benchmark: a method, ASKD options and trainer overrides."""

    name: str
    method: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    note: str = ""
    lr: float | None = None
    """Distillation learning rate (``None``: the settings' ``distill_lr``)."""

    def key(self) -> str:
        return self.name.replace(" ", "_").replace("/", "-").replace("=", "").replace(",", "")


#: The benchmark's settings: the demo's task, models, data and distillation budget (200 steps;
#: ``askd bench quality --steps`` changes it).
BENCH_SETTINGS = ToySettings()


def main_variants(methods: Sequence[str] = METHODS) -> list[Variant]:
    """Every method with its defaults (ASKD with the §9 defaults)."""
    return [Variant(m, m) for m in methods]


#: The §9 options that plausibly move results, each changed alone from the ASKD defaults
#: (α_lo = 0.1, α_hi = 0.9, soft gate, fixed pull-up, mean normalisation, full mixture
#: gradient, on-policy SGOs).
SWEEP: tuple[Variant, ...] = (
    Variant("askd alpha_lo=0.05", "askd", {"alpha_lo": 0.05}, note="stronger learning of good TGOs"),
    Variant("askd alpha_lo=0.3", "askd", {"alpha_lo": 0.3}, note="weaker learning of good TGOs"),
    Variant("askd alpha_hi=0.5", "askd", {"alpha_hi": 0.5}, note="bad TGOs learned more"),
    Variant("askd alpha const 0.1", "askd", {"alpha_lo": 0.1, "alpha_hi": 0.1}, note="no quality in α"),
    Variant("askd gate=hard", "askd", {"gate": "hard"}, note="h(r) = 1{r ≥ 0.75}"),
    Variant("askd gate=none", "askd", {"gate": "none"}, note="no clip of the push-down"),
    Variant("askd pullup=adaptive", "askd", {"sgo_pullup": "adaptive"}),
    Variant("askd normalize=sum", "askd", {"normalize": "sum"}),
    Variant("askd mixture_grad=stop", "askd", {"mixture_grad": "stop"}),
    Variant("askd batched SGOs", "askd", overrides={"sgo_regime": "batched"}, note="per-epoch pool, E13"),
    Variant("distillm2 batched SGOs", "distillm2", overrides={"sgo_regime": "batched"}),
    Variant("askd 4 SGOs/prompt", "askd", overrides={"sgo_per_prompt": 4}, note="groups of 4 samples"),
    Variant(
        "advantage_kd 4 SGOs/prompt",
        "advantage_kd",
        overrides={"sgo_per_prompt": 4},
        note="with 1 SGO per prompt every group advantage is 0 and advantage_kd reduces to kd",
    ),
)

#: A 3-point learning-rate sweep (with the default 1e-3) for ASKD and DistiLLM-2, so that their
#: ranking does not hinge on one shared rate.
LR_SWEEP: tuple[Variant, ...] = tuple(
    Variant(f"{m} lr={lr:g}", m, lr=lr, note="learning-rate sweep")
    for m in ("askd", "distillm2")
    for lr in (5e-4, 2e-3)
)

#: The variants where a graded quality signal matters: the gates and the continuous schedule.
GATE_SWEEP: tuple[Variant, ...] = (
    Variant("askd gate=hard", "askd", {"gate": "hard"}, note="h(r) = 1{r ≥ 0.75}"),
    Variant("askd gate=none", "askd", {"gate": "none"}, note="no clip of the push-down"),
    Variant("askd alpha const 0.1", "askd", {"alpha_lo": 0.1, "alpha_hi": 0.1}, note="no quality in α"),
)

#: Named sweeps for ``askd bench quality --sweep``.
SWEEPS: dict[str, tuple[Variant, ...]] = {"options": SWEEP, "lr": LR_SWEEP, "gates": GATE_SWEEP}

#: Equal-budget pairs among the sweep variants (the first minus the second is reported).
SWEEP_PAIRS: tuple[tuple[str, str], ...] = (
    ("askd batched SGOs", "distillm2 batched SGOs"),
    ("askd 4 SGOs/prompt", "advantage_kd 4 SGOs/prompt"),
)


def _run_one(setup: ToySetup, variant: Variant, *, device: str, dtype: str, progress: bool) -> dict[str, Any]:
    opts = ASKDOptions(**dict(variant.options))
    res = distill(
        setup,
        variant.method,
        options=opts,
        overrides=dict(variant.overrides),
        device=device,
        dtype=dtype,
        progress=progress,
        lr=variant.lr,
    )
    curve = [
        {"step": h["step"], "sgo_accuracy": h.get("quality/sgo_mean"), "loss": h["loss"]}
        for h in res.log_history
        if "loss" in h
    ]
    return {
        "variant": variant.name,
        "method": variant.method,
        "options": dict(variant.options),
        "overrides": dict(variant.overrides),
        "lr": variant.lr,
        "seed": setup.seed,
        "accuracy": res.eval.accuracy,
        "stderr": res.eval.stderr,
        "n_eval": res.eval.n,
        "scores": "".join("1" if s >= 0.5 else "0" for s in res.eval.scores),
        "seconds": res.seconds,
        "curve": curve,
    }


def run_bench(
    out: str | os.PathLike[str],
    *,
    settings: ToySettings | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    methods: Sequence[str] = METHODS,
    sweep: Sequence[Variant] = SWEEP,
    device: str = "cpu",
    dtype: str = "fp32",
    progress: bool = True,
    docs: str | os.PathLike[str] | None = None,
    figure: str | os.PathLike[str] | None = None,
    echo: Callable[[str], None] = print,
    allow_miss: bool = False,
) -> dict[str, Any]:
    """Run (or resume) the benchmark; write ``quality-bench.json`` and ``quality-bench.png``.

    The teacher and every seed's student pass the pipeline's stage guards
    (:class:`~askd_ref.toy.pipeline.StageMissed` stops the benchmark) unless ``allow_miss``.

    With ``docs``, the measured section of that Markdown file is (re)written and the plot is
    copied to ``figure`` (default: ``docs/figures/experiments-quality.png`` next to ``docs``).
    """
    s = settings or BENCH_SETTINGS
    out_dir = Path(out)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)
    if "askd" not in methods:
        raise ValueError("the benchmark compares ASKD against the baselines; methods must include 'askd'")
    variants = [*main_variants(methods), *sweep]
    t0 = time.perf_counter()
    _check_settings_file(runs_dir, s)
    teacher = _Teacher(make_setup(s, seed=0, split_seed=0), runs_dir / "teacher.json", device, dtype,
                       progress, allow_miss, echo)
    records: list[dict[str, Any]] = []
    starts: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        starts[seed] = _run_seed(teacher, seed, variants, runs_dir)
        for v in variants:
            records.append(json.loads((runs_dir / f"seed{seed}-{v.key()}.json").read_text(encoding="utf-8")))
    if not teacher.file.exists():
        teacher.train()
    teacher_info = json.loads(teacher.file.read_text(encoding="utf-8"))
    summary = summarise(records, starts, [v.name for v in main_variants(methods)], [v.name for v in sweep])
    summary["teacher_accuracy"] = teacher_info["accuracy"]
    summary["teacher_steps"] = teacher_info["steps"]
    summary["settings"] = dataclasses.asdict(s)
    summary["seeds"] = list(seeds)
    summary["variants"] = [dataclasses.asdict(v) for v in variants]
    summary["device"] = device
    summary["dtype"] = dtype
    summary["environment"] = environment()
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out_dir / "quality-bench.json", summary)
    plot_bench(summary, out_dir / "quality-bench.png")
    if docs is not None:
        suffix = "" if s.quality == "exact_match" else f"-{s.quality.replace('_', '-')}"
        fig = (
            Path(figure)
            if figure is not None
            else Path(docs).parent / "figures" / f"experiments-quality{suffix}.png"
        )
        plot_bench(summary, fig)
        write_experiments_doc(summary, docs, os.path.relpath(fig, Path(docs).parent))
    return summary


def _check_settings_file(runs_dir: Path, s: ToySettings) -> None:
    """Record the settings of a new run directory; refuse to resume one made with other settings."""
    settings_file = runs_dir / "settings.json"
    fingerprint = json.loads(json.dumps(dataclasses.asdict(s)))
    if settings_file.exists():
        if json.loads(settings_file.read_text(encoding="utf-8")) != fingerprint:
            raise ValueError(f"{runs_dir} holds runs made with other settings; use a new --out directory")
    else:
        atomic_write_json(settings_file, fingerprint)


@dataclasses.dataclass
class _Teacher:
    """The benchmark's one teacher, trained on first need (a resumed benchmark may need none)."""

    setup: ToySetup
    file: Path
    device: str
    dtype: str
    progress: bool
    allow_miss: bool
    echo: Callable[[str], None]

    def train(self) -> ToySetup:
        t, s = self.setup, self.setup.settings
        if t.teacher is not None:
            return t
        self.echo(f"teacher: training once (d={s.teacher.hidden_size}, L={s.teacher.num_layers})")
        record = train_teacher(
            t, teacher_seed=0, device=self.device, dtype=self.dtype, progress=self.progress,
            allow_miss=self.allow_miss,
        )
        assert t.teacher_eval is not None
        atomic_write_json(
            self.file,
            {
                "accuracy": t.teacher_eval.accuracy,
                "steps": t.teacher_steps,
                "stage": dataclasses.asdict(record),
            },
        )
        self.echo(f"teacher: {t.teacher_steps} steps, held-out accuracy {t.teacher_eval.accuracy:.3f}")
        return t


def _run_seed(teacher: _Teacher, seed: int, variants: Sequence[Variant], runs_dir: Path) -> dict[str, Any]:
    """One seed: its SFT start and every variant not yet on disk (each run saved as it ends)."""
    pending = [v for v in variants if not (runs_dir / f"seed{seed}-{v.key()}.json").exists()]
    start_file = runs_dir / f"seed{seed}-start.json"
    if pending or not start_file.exists():
        t = teacher.train()
        setup = make_setup(t.settings, seed=seed, split_seed=0)
        setup.teacher, setup.teacher_eval, setup.teacher_steps = t.teacher, t.teacher_eval, t.teacher_steps
        kwargs: dict[str, Any] = {
            "device": teacher.device, "dtype": teacher.dtype, "progress": teacher.progress,
        }
        train_student_sft(setup, allow_miss=teacher.allow_miss, **kwargs)
        teacher_outputs(setup, progress=teacher.progress)
        assert setup.student_eval is not None
        tgo_q = [r.quality for it in setup.items for r in it.tgos if r.quality is not None]
        atomic_write_json(
            start_file,
            {
                "seed": seed,
                "student_sft_accuracy": setup.student_eval.accuracy,
                "student_sft_steps": setup.student_steps,
                "stage": {k: dataclasses.asdict(v) for k, v in setup.stages.items()},
                "student_sft_scores": "".join("1" if x >= 0.5 else "0" for x in setup.student_eval.scores),
                "tgo_accuracy": sum(tgo_q) / len(tgo_q),
            },
        )
        teacher.echo(f"seed {seed}: SFT start {setup.student_eval.accuracy:.3f}; {len(pending)} runs to do")
        for i, v in enumerate(pending):
            rec = _run_one(setup, v, **kwargs)
            atomic_write_json(runs_dir / f"seed{seed}-{v.key()}.json", rec)
            done = f"{rec['accuracy']:.3f} ({rec['seconds']:.0f} s)"
            teacher.echo(f"  [{i + 1}/{len(pending)}] {v.name}: {done}")
    start: dict[str, Any] = json.loads(start_file.read_text(encoding="utf-8"))
    return start


def _final_sgo(runs: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean on-policy sample accuracy over the last three logged steps (None without SGOs)."""
    vals = [c["sgo_accuracy"] for r in runs for c in r["curve"][-3:] if c["sgo_accuracy"] is not None]
    return statistics.fmean(vals) if vals else None


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(
    records: Sequence[Mapping[str, Any]],
    starts: Mapping[int, Mapping[str, Any]],
    main: Sequence[str],
    sweep: Sequence[str],
) -> dict[str, Any]:
    """Mean ± std per variant and paired comparisons of ``askd`` against every other variant."""
    by: dict[str, dict[int, Mapping[str, Any]]] = {}
    for r in records:
        by.setdefault(r["variant"], {})[int(r["seed"])] = r
    seeds = sorted(starts)
    table: dict[str, Any] = {}
    for name in [*main, *sweep]:
        accs = [by[name][sd]["accuracy"] for sd in seeds]
        mean, std = _mean_std(accs)
        table[name] = {
            "method": by[name][seeds[0]]["method"],
            "mean": mean,
            "std": std,
            "per_seed": accs,
            "final_sgo_accuracy": _final_sgo([by[name][sd] for sd in seeds]),
            "seconds": statistics.fmean([by[name][sd]["seconds"] for sd in seeds]),
        }
    sft = [starts[sd]["student_sft_accuracy"] for sd in seeds]
    comparisons: dict[str, Any] = {}
    ref = "askd"
    for name in [*main, *sweep]:
        if name == ref:
            continue
        a = [by[ref][sd]["accuracy"] for sd in seeds]
        b = [by[name][sd]["accuracy"] for sd in seeds]
        pt = paired_t(a, b)
        pooled_a = [float(c) for sd in seeds for c in by[ref][sd]["scores"]]
        pooled_b = [float(c) for sd in seeds for c in by[name][sd]["scores"]]
        mc = mcnemar(pooled_a, pooled_b)
        spread = max(table[ref]["std"], table[name]["std"])
        comparisons[name] = {
            "mean_difference": pt.mean,
            "std_difference": pt.std,
            "ci95": list(pt.ci95),
            "paired_t_p": pt.p_value,
            "askd_wins": pt.wins,
            "seeds": pt.k,
            "mcnemar_pooled": dataclasses.asdict(mc),
            "above_by_more_than_spread": pt.mean > spread,
        }
    pairs: dict[str, Any] = {}
    for first, second in SWEEP_PAIRS:
        if first in by and second in by and all(sd in by[first] and sd in by[second] for sd in seeds):
            pt = paired_t(
                [by[first][sd]["accuracy"] for sd in seeds], [by[second][sd]["accuracy"] for sd in seeds]
            )
            mc = mcnemar(
                [float(c) for sd in seeds for c in by[first][sd]["scores"]],
                [float(c) for sd in seeds for c in by[second][sd]["scores"]],
            )
            pairs[f"{first} - {second}"] = {
                "first": first,
                "second": second,
                "mean_difference": pt.mean,
                "ci95": list(pt.ci95),
                "paired_t_p": pt.p_value,
                "first_wins": pt.wins,
                "mcnemar_pooled": dataclasses.asdict(mc),
            }
    return {
        "table": table,
        "comparisons_askd_minus": comparisons,
        "sweep_pairs": pairs,
        "student_sft": {"mean": _mean_std(sft)[0], "std": _mean_std(sft)[1], "per_seed": sft},
        "tgo_accuracy": statistics.fmean([starts[sd]["tgo_accuracy"] for sd in seeds]),
        "main": list(main),
        "sweep": list(sweep),
        "n_eval": int(by[ref][seeds[0]]["n_eval"]),
    }


def plot_bench(summary: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Two panels: every method (mean ± std over seeds, dots per seed) and the ASKD option sweep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = summary["table"]
    main, sweep = summary["main"], summary["sweep"]
    height = max(4.5, 0.32 * (len(sweep) + 2))
    ncols = 3 if sweep else 2
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, height), squeeze=False)
    ax = axes[0][0]
    xs = range(len(main))
    means = [table[m]["mean"] for m in main]
    stds = [table[m]["std"] for m in main]
    colors = ["#1f77b4" if m.startswith("askd") else "#999999" for m in main]
    ax.bar(xs, means, yerr=stds, capsize=4, color=colors)
    for i, m in enumerate(main):
        ax.plot([i] * len(table[m]["per_seed"]), table[m]["per_seed"], "k.", markersize=5)
    sft = summary["student_sft"]["mean"]
    ax.axhline(sft, color="#d62728", linestyle=":", label=f"SFT start ({sft:.3f})")
    ax.axhline(
        summary["teacher_accuracy"],
        color="#555555",
        linestyle="--",
        label=f"teacher ({summary['teacher_accuracy']:.3f})",
    )
    ax.set_xticks(list(xs))
    ax.set_xticklabels(main, rotation=35, ha="right")
    lo = min(min(means) - max(stds) - 0.05, sft - 0.05)
    ax.set_ylim(max(0.0, lo), 1.0)
    ax.set_ylabel(
        f"held-out accuracy (n = {summary['n_eval']}), mean ± std over {len(summary['seeds'])} seeds"
    )
    ax.set_title("Every method, equal budgets")
    ax.legend(loc="lower right", fontsize=8)
    axd = axes[0][1]
    others = [m for m in main if m != "askd"]
    comp = summary["comparisons_askd_minus"]
    for i, m in enumerate(others):
        diffs = [a - b for a, b in zip(table["askd"]["per_seed"], table[m]["per_seed"], strict=True)]
        axd.plot(diffs, [i] * len(diffs), "o", color="#1f77b4", markersize=5)
        lo, hi = comp[m]["ci95"]
        axd.plot([lo, hi], [i, i], color="#555555", linewidth=1)
        axd.plot([comp[m]["mean_difference"]], [i], "|", color="k", markersize=12)
    axd.axvline(0.0, color="#d62728", linewidth=1)
    axd.set_yticks(range(len(others)))
    axd.set_yticklabels(others)
    axd.invert_yaxis()
    axd.set_xlabel("askd − method, per seed (dots); mean and 95% t interval")
    axd.set_title("Paired differences (same start, data and seeds)")
    if sweep:
        ax2 = axes[0][2]
        names = ["askd", *sweep]
        ys = range(len(names))
        ax2.barh(
            list(ys),
            [table[n]["mean"] for n in names],
            xerr=[table[n]["std"] for n in names],
            capsize=3,
            color=["#1f77b4", *["#aec7e8"] * len(sweep)],
        )
        for i, n in enumerate(names):
            ax2.plot(table[n]["per_seed"], [i] * len(table[n]["per_seed"]), "k.", markersize=5)
        ax2.axvline(table["askd"]["mean"], color="#1f77b4", linestyle="--", linewidth=1)
        ax2.set_yticks(list(ys))
        ax2.set_yticklabels(["askd (defaults)", *sweep], fontsize=8)
        ax2.invert_yaxis()
        vals = [table[n]["mean"] for n in names]
        ax2.set_xlim(max(0.0, min(vals) - 0.1), min(1.0, max(vals) + 0.08))
        ax2.set_xlabel("held-out accuracy, mean ± std over seeds")
        ax2.set_title("ASKD options (§9), one change at a time")
    fig.tight_layout()
    with atomic_open(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)


BEGIN = "<!-- BEGIN MEASURED: written by `askd bench quality`; do not edit by hand -->"
END = "<!-- END MEASURED -->"


def _markers(quality: str) -> tuple[str, str]:
    """The markers of the measured section of one quality regime (exact match keeps the original)."""
    if quality == "exact_match":
        return BEGIN, END
    tag = f"MEASURED {quality}"
    begin = f"<!-- BEGIN {tag}: written by `askd bench quality`; do not edit by hand -->"
    return begin, f"<!-- END {tag} -->"


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 1e-3 else f"{p:.0e}"


def measured_markdown(summary: Mapping[str, Any], figure: str) -> str:
    """The measured section of ``docs/experiments.md``: settings, tables, plot."""
    quality = summary["settings"].get("quality", "exact_match")
    begin, end = _markers(quality)
    lines = [begin, "", _settings_paragraph(summary), ""]
    lines += _methods_table(summary)
    lines += _sweep_table(summary)
    lines += _pairs_table(summary)
    lines += ["", f"![Quality benchmark, {quality}]({figure})", "", end]
    return "\n".join(lines)


def _settings_paragraph(summary: Mapping[str, Any]) -> str:
    """What was measured, on what, with which budget (one paragraph)."""
    s = summary["settings"]
    k = len(summary["seeds"])
    quality = s.get("quality", "exact_match")
    tgo = (
        f"its sampled outputs (TGOs, T = {s['tgo_temperature']}) are correct "
        f"{summary['tgo_accuracy']:.3f} of the time"
        if quality == "exact_match"
        else f"its sampled outputs (TGOs, T = {s['tgo_temperature']}) have mean quality r = "
        f"{summary['tgo_accuracy']:.3f} ({quality})"
    )
    env = summary.get("environment") or {}
    return (
        f"Measured by `askd bench quality` ({k} seeds: {summary['seeds']}; device {summary['device']}, "
        f"{summary['dtype']}; {env.get('cpu_model', 'CPU')}, torch {env.get('torch', '?')} with "
        f"{env.get('torch_cpu_capability', '?')} kernels, {env.get('torch_threads', '?')} thread(s)). "
        f"Quality signal of the distillation: **{quality}**. Teacher: {s['teacher']['hidden_size']}-wide "
        f"{s['teacher']['num_layers']}-layer "
        f"Llama trained on flawed solutions until it reproduces them, {summary['teacher_steps']} SFT steps, "
        f"held-out accuracy {summary['teacher_accuracy']:.3f}; {tgo}. Student: "
        f"{s['student']['hidden_size']}-wide {s['student']['num_layers']}-layer Llama, "
        f"SFT start {summary['student_sft']['mean']:.3f} ± {summary['student_sft']['std']:.3f}. Budget per "
        f"method: {s['distill_steps']} optimizer steps × {s['distill_batch_size']} prompts "
        f"({s['tgo_per_prompt']} TGO + {s['sgo_per_prompt']} SGO each), {s['n_prompts']} distinct prompts, "
        f"AdamW lr {s['distill_lr']} (cosine), SGOs {s['sgo_regime']} at T = {s['sgo_temperature']}. "
        f"Accuracy: greedy exact match on n = {summary['n_eval']} held-out problems."
    )


def _methods_table(summary: Mapping[str, Any]) -> list[str]:
    """Every method against ASKD, paired over seeds."""
    t = summary["table"]
    c = summary["comparisons_askd_minus"]
    lines = [
        "### Every method",
        "",
        "| method | accuracy mean ± std | per seed | askd − method (paired, 95% CI) | paired t p | "
        "McNemar p (pooled) | askd wins | beyond spread |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in summary["main"]:
        row = t[name]
        seeds = ", ".join(f"{x:.3f}" for x in row["per_seed"])
        if name == "askd":
            lines.append(
                f"| **askd** | **{row['mean']:.3f} ± {row['std']:.3f}** | {seeds} | — | — | — | — | — |"
            )
            continue
        cmp_ = c[name]
        lo, hi = cmp_["ci95"]
        lines.append(
            f"| {name} | {row['mean']:.3f} ± {row['std']:.3f} | {seeds} | {cmp_['mean_difference']:+.3f} "
            f"[{lo:+.3f}, {hi:+.3f}] | {_fmt_p(cmp_['paired_t_p'])} | "
            f"{_fmt_p(cmp_['mcnemar_pooled']['p_value'])} | {cmp_['askd_wins']}/{cmp_['seeds']} | "
            f"{'yes' if cmp_['above_by_more_than_spread'] else 'no'} |"
        )
    return [
        *lines,
        "",
        f"SFT start (all methods): {summary['student_sft']['mean']:.3f} ± "
        f"{summary['student_sft']['std']:.3f}. "
        '"beyond spread": the mean paired difference exceeds the larger of the two seed standard '
        "deviations. McNemar pools the (seed, problem) outcomes of both methods.",
    ]


def _sweep_table(summary: Mapping[str, Any]) -> list[str]:
    """One change at a time from the ASKD defaults (empty without a sweep)."""
    if not summary["sweep"]:
        return []
    t = summary["table"]
    c = summary["comparisons_askd_minus"]
    lines = [
        "",
        "### Sweeps: one change at a time from the defaults (ASKD options of §9, learning rates)",
        "",
        "| variant | accuracy mean ± std | per seed | variant − askd defaults (paired, 95% CI) "
        "| paired t p |",
        "|---|---|---|---|---|",
        f"| askd (defaults) | {t['askd']['mean']:.3f} ± {t['askd']['std']:.3f} | "
        + ", ".join(f"{x:.3f}" for x in t["askd"]["per_seed"])
        + " | — | — |",
    ]
    for name in summary["sweep"]:
        row = t[name]
        cmp_ = c[name]
        lo, hi = cmp_["ci95"]
        lines.append(
            f"| {name} | {row['mean']:.3f} ± {row['std']:.3f} | "
            + ", ".join(f"{x:.3f}" for x in row["per_seed"])
            + f" | {-cmp_['mean_difference']:+.3f} [{-hi:+.3f}, {-lo:+.3f}] | "
            + f"{_fmt_p(cmp_['paired_t_p'])} |"
        )
    return lines


def _pairs_table(summary: Mapping[str, Any]) -> list[str]:
    """Equal-budget pairs among the sweep's variants (empty without them)."""
    if not summary.get("sweep_pairs"):
        return []
    k = len(summary["seeds"])
    lines = [
        "",
        "Equal-budget pairs among the variants (first − second, paired over seeds):",
        "",
        "| pair | difference (95% CI) | paired t p | McNemar p (pooled) | first wins |",
        "|---|---|---|---|---|",
    ]
    for pr in summary["sweep_pairs"].values():
        lo, hi = pr["ci95"]
        lines.append(
            f"| {pr['first']} − {pr['second']} | {pr['mean_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}] | "
            f"{_fmt_p(pr['paired_t_p'])} | {_fmt_p(pr['mcnemar_pooled']['p_value'])} | "
            f"{pr['first_wins']}/{k} |"
        )
    return lines


_DOC_HEAD = """# Experiments: the quality benchmark on the toy task

The section between the markers is written by `askd bench quality --out DIR --docs docs/experiments.md`;
the reading after it is written by hand from those numbers.

"""


def write_experiments_doc(summary: Mapping[str, Any], path: str | os.PathLike[str], figure: str) -> None:
    """Replace the measured section of ``path`` (create the file if needed), keeping the rest."""
    block = measured_markdown(summary, figure)
    begin, end = _markers(summary["settings"].get("quality", "exact_match"))
    p = Path(path)
    if p.exists():
        text = p.read_text(encoding="utf-8")
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            text = head + block + tail
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        text = _DOC_HEAD + block + "\n"
    atomic_write_text(p, text)
