"""``askd demo --matrix``: the demo over seeds × floating-point environments, with its acceptance.

A training outcome that depends on floating-point reduction order is not a result. The matrix
runs the whole demo in a fresh process per cell — the environment variable
``ATEN_CPU_CAPABILITY`` only takes effect before torch is imported — for every seed and each of

* ``default``: torch's own choice of CPU kernels (e.g. AVX-512 where the CPU has it), 1 thread;
* ``avx2``: ``ATEN_CPU_CAPABILITY=avx2``, 1 thread;
* ``threads2``: default kernels, 2 threads (a different reduction split);

and checks each cell: every stage reached its target (teacher fitted within its cap, held-out
accuracy inside its band; student at its target), ASKD ≥ student-before + 0.10, and the demo's
compute ≤ 5 minutes. Compute is the demo process's CPU time (user + system, all threads): unlike
wall time it does not grow when other processes share the cores, and it is an upper bound of the
wall time of a single-threaded run on a quiet machine (both are in the table). Cells are cached
(``<out>/cells/<env>-seed<k>/results.json``), so an interrupted matrix resumes. The table goes
to ``<out>/matrix.json``, ``<out>/matrix.md`` and, with ``docs``, between the ``MATRIX`` markers
of that Markdown file.
"""

import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from askd_ref.io import atomic_write_json, atomic_write_text

__all__ = ["ENVIRONMENTS", "MAX_SECONDS", "Cell", "FloatEnv", "accept", "run_matrix"]

#: Demo compute allowed per cell (seconds), the acceptance bound on a 2-core machine.
MAX_SECONDS: float = 300.0


@dataclasses.dataclass(frozen=True)
class FloatEnv:
    """One floating-point environment: CPU kernels and thread count."""

    name: str
    capability: str | None
    """Value of ``ATEN_CPU_CAPABILITY`` (``None``: unset, torch's own choice)."""
    threads: int


#: The three environments of the matrix.
ENVIRONMENTS: tuple[FloatEnv, ...] = (
    FloatEnv("default", None, 1),
    FloatEnv("avx2", "avx2", 1),
    FloatEnv("threads2", None, 2),
)


@dataclasses.dataclass(frozen=True)
class Cell:
    """One demo run of the matrix and its acceptance."""

    env: str
    seed: int
    results: Mapping[str, Any]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures


def accept(results: Mapping[str, Any], *, min_gain: float, max_seconds: float = MAX_SECONDS) -> list[str]:
    """Why a demo run fails the acceptance (empty: it passes).

    >>> ok = {"valid": True, "student_accuracy_before": 0.4, "methods": {"askd": 0.6},
    ...       "checks": {"teacher_in_band": True}, "timings_s": {"total_s": 90.0, "cpu_s": 85.0}}
    >>> accept(ok, min_gain=0.1)
    []
    >>> accept({**ok, "methods": {"askd": 0.45}}, min_gain=0.1)
    ['askd gain +0.050 < +0.10']
    """
    out: list[str] = []
    if not results.get("valid", False):
        missed = [k for k, v in results.get("stages", {}).items() if not v.get("reached")]
        out.append(f"stage missed: {', '.join(missed) or results.get('error', 'unknown')}")
    if not results.get("checks", {}).get("teacher_in_band", False) and results.get("valid", False):
        out.append("teacher outside its band")
    methods = results.get("methods", {})
    before = results.get("student_accuracy_before")
    if "askd" in methods and before is not None:
        gain = methods["askd"] - before
        if gain < min_gain:
            out.append(f"askd gain {gain:+.3f} < +{min_gain:.2f}")
    elif results.get("valid", False):
        out.append("no askd result")
    timings = results.get("timings_s", {})
    seconds = timings.get("cpu_s", timings.get("total_s"))
    if seconds is not None and seconds > max_seconds:
        out.append(f"compute {seconds:.0f} s > {max_seconds:.0f} s")
    return out


def _run_cell(
    env: FloatEnv, seed: int, out: Path, *, extra_args: Sequence[str], echo: bool
) -> dict[str, Any]:
    """Run ``askd demo`` for one cell in a fresh process (the capability is read at torch import)."""
    cell_env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if env.capability is not None:
        cell_env["ATEN_CPU_CAPABILITY"] = env.capability
    cmd = [
        sys.executable, "-m", "askd_ref.cli", "demo", "--out", str(out), "--seed", str(seed),
        "--threads", str(env.threads), "--no-progress", "--no-models", *extra_args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=cell_env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    (out / "log.txt").parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "log.txt", proc.stdout + proc.stderr)
    path = out / "results.json"
    if path.exists():
        with open(path, encoding="utf-8") as f:
            results: dict[str, Any] = json.load(f)
    else:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        results = {"valid": False, "error": f"exit {proc.returncode}: {tail[0]}"}
    results["exit_code"] = proc.returncode
    results["wall_s"] = round(wall, 1)
    atomic_write_json(path, results)
    if echo:
        print(f"  {env.name:<9} seed {seed}: exit {proc.returncode}, {wall:.0f} s", flush=True)
    return results


def run_matrix(
    out: str | os.PathLike[str],
    *,
    seeds: Sequence[int] = (0, 1, 2, 3, 4),
    environments: Sequence[FloatEnv] = ENVIRONMENTS,
    extra_args: Sequence[str] = (),
    docs: str | os.PathLike[str] | None = None,
    min_gain: float = 0.10,
    echo: bool = True,
) -> list[Cell]:
    """Run (or resume) the matrix; write ``matrix.json``/``matrix.md`` and optionally the docs table."""
    root = Path(out)
    cells: list[Cell] = []
    total = len(seeds) * len(environments)
    for i, (env, seed) in enumerate((e, s) for e in environments for s in seeds):
        cell_dir = root / "cells" / f"{env.name}-seed{seed}"
        cached = cell_dir / "results.json"
        if cached.exists():
            with open(cached, encoding="utf-8") as f:
                results = json.load(f)
            if echo:
                print(f"[{i + 1}/{total}] {env.name} seed {seed}: cached", flush=True)
        else:
            if echo:
                print(f"[{i + 1}/{total}] {env.name} seed {seed}: running", flush=True)
            results = _run_cell(env, seed, cell_dir, extra_args=extra_args, echo=echo)
        cells.append(Cell(env.name, seed, results, tuple(accept(results, min_gain=min_gain))))
    table = matrix_markdown(cells, min_gain=min_gain)
    atomic_write_json(
        root / "matrix.json",
        {
            "cells": [
                {"env": c.env, "seed": c.seed, "passed": c.passed, "failures": list(c.failures),
                 "results": {k: v for k, v in c.results.items() if k != "curves"}}
                for c in cells
            ],
            "all_passed": all(c.passed for c in cells),
        },
    )
    atomic_write_text(root / "matrix.md", table + "\n")
    if docs is not None:
        replace_section(docs, "MATRIX", table)
    if echo:
        print("\n" + table, flush=True)
    return cells


def matrix_markdown(cells: Sequence[Cell], *, min_gain: float) -> str:
    """The matrix table (one row per cell) with the environment it was measured in."""
    first = next((c.results.get("environment") for c in cells if c.results.get("environment")), None) or {}
    lines = [
        f"Measured by `askd demo --matrix` on {first.get('cpu_model', 'unknown CPU')} "
        f"({first.get('cpu_count', '?')} cores; torch {first.get('torch', '?')}, transformers "
        f"{first.get('transformers', '?')}, Python {first.get('python', '?')}). Acceptance per cell: every "
        f"stage reached its target, teacher inside its band, askd ≥ student before + {min_gain:.2f}, compute "
        f"≤ {MAX_SECONDS / 60:.0f} min of CPU time. \"load\": the machine's 1-minute load average at the "
        "start and end of the cell (2 cores: above 2, other work shared them and wall times grew).",
        "",
        "| env | CPU kernels | threads | seed | teacher (steps) | student before (steps) | askd | distillm2 "
        "| askd gain | CPU (s) | wall (s) | load | pass |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        r = c.results
        env = r.get("environment", {})
        steps = r.get("steps", {})
        methods = r.get("methods", {})
        before = r.get("student_accuracy_before")

        def f(v: Any) -> str:
            return "—" if v is None else f"{v:.3f}"

        gain = methods.get("askd") - before if "askd" in methods and before is not None else None
        lines.append(
            f"| {c.env} | {env.get('torch_cpu_capability', '?')} | {env.get('torch_threads', '?')} "
            f"| {c.seed} "
            f"| {f(r.get('teacher_accuracy'))} ({steps.get('teacher_sft', '—')}) "
            f"| {f(before)} ({steps.get('student_sft', '—')}) | {f(methods.get('askd'))} "
            f"| {f(methods.get('distillm2'))} | {'—' if gain is None else f'{gain:+.3f}'} "
            f"| {r.get('timings_s', {}).get('cpu_s', '—')} | {r.get('timings_s', {}).get('total_s', '—')} "
            f"| {_load(env)} | {'yes' if c.passed else 'NO: ' + '; '.join(c.failures)} |"
        )
    passed = sum(c.passed for c in cells)
    lines += ["", f"{passed}/{len(cells)} cells pass."]
    return "\n".join(lines)


def _load(env: Mapping[str, Any]) -> str:
    """The 1-minute load average at the start and end of a run (how shared the cores were)."""
    load = env.get("load_average_1min") or [None, None]
    return "–".join("?" if v is None else f"{v:.1f}" for v in load)


def replace_section(path: str | os.PathLike[str], name: str, body: str) -> None:
    """Replace the text between ``<!-- BEGIN {name} -->`` and ``<!-- END {name} -->`` in ``path``."""
    text = Path(path).read_text(encoding="utf-8")
    begin = f"<!-- BEGIN {name}: written by a command; do not edit by hand -->"
    end = f"<!-- END {name} -->"
    if begin not in text or end not in text:
        raise ValueError(f"{path} has no '{begin}' … '{end}' section to replace")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, f"{head}{begin}\n\n{body}\n\n{end}{tail}")
