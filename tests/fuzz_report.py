"""Run the reliability tests for real and print the tables of ``docs/reliability.md``.

    python tests/fuzz_report.py                 # CI-sized fuzzing (what `make test` runs)
    python tests/fuzz_report.py --long          # the slow-marked run (10x the examples)
    python tests/fuzz_report.py --json out.json # also keep the raw counts and errors

1. Runs ``tests/test_fuzz_api.py`` under pytest with ``ASKD_FUZZ_REPORT`` set, so the module
   writes its counts (inputs generated per function, faults injected, outcomes), and turns them
   into a Markdown table. A failing test fails this script (counts from a red run are no report).
2. Measures the bf16/fp16 end-to-end errors of every loss over the grid of
   ``tests/test_half_precision.py`` (the same ``run`` function the tests assert on) and prints
   the worst error per dtype and method, next to the tolerance rows they are checked against.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_fuzz(long: bool) -> dict[str, Any]:
    """Run the fuzz module under pytest; return the counts it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "counts.json"
        marker = "slow" if long else "not slow"
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            str(HERE / "test_fuzz_api.py"),
            "-q",
            "-m",
            marker,
            "-p",
            "no:cacheprovider",
        ]
        env = {**os.environ, "ASKD_FUZZ_REPORT": str(out)}
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"the fuzz tests failed (exit {proc.returncode}); no report from a failing run")
        data: dict[str, Any] = json.loads(out.read_text())
    data["seconds"] = seconds
    data["run"] = "long (-m slow)" if long else "CI (-m 'not slow')"
    return data


def fuzz_table(data: dict[str, Any]) -> str:
    counts: dict[str, dict[str, int]] = data["counts"]
    pairs: dict[str, list[str]] = data["fault_pairs"]
    header = (
        "| function | valid calls | faults injected | distinct arg×fault | ValueError | TypeError "
        "| ignored as documented | known gap | layout cases (bitwise / tol / same error) | valid extremes |"
    )
    lines = [header, "|" + "---|" * 10]
    totals: defaultdict[str, int] = defaultdict(int)
    for target in sorted(counts):
        c = counts[target]
        layout = [
            sum(v for k, v in c.items() if k.startswith("layout") and k.endswith(end))
            for end in ("bitwise equal", "equal within tolerance", "same error")
        ]
        extremes = sum(v for k, v in c.items() if k.startswith("extreme"))
        row = {
            "valid": c.get("valid calls generated (invalid-input test)", 0),
            "faults": c.get("faults injected", 0),
            "pairs": len(pairs.get(target, [])),
            "ValueError": c.get("outcome ValueError", 0),
            "TypeError": c.get("outcome TypeError", 0),
            "unchanged": c.get("outcome unchanged", 0),
            "gap": c.get("outcome known gap", 0),
            "layout": sum(layout),
            "extremes": extremes,
        }
        for key, value in row.items():
            totals[key] += value
        lines.append(
            f"| `{target}` | {row['valid']} | {row['faults']} | {row['pairs']} | {row['ValueError']} "
            f"| {row['TypeError']} | {row['unchanged']} | {row['gap']} "
            f"| {layout[0]} / {layout[1]} / {layout[2]} | {extremes} |"
        )
    lines.append(
        f"| **total** | {totals['valid']} | {totals['faults']} | {totals['pairs']} | {totals['ValueError']} "
        f"| {totals['TypeError']} | {totals['unchanged']} | {totals['gap']} | {totals['layout']} "
        f"| {totals['extremes']} |"
    )
    return "\n".join(lines)


def fault_kind_table(data: dict[str, Any]) -> str:
    """Outcomes per fault kind, summed over functions."""
    by_fault: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
    for c in data["counts"].values():
        for key, value in c.items():
            if key.startswith("fault ") and " -> " in key:
                fault, outcome = key.removeprefix("fault ").rsplit(" -> ", 1)
                by_fault[fault][outcome] += value
    lines = [
        "| fault | injected | ValueError | TypeError | ignored as documented | known gap |",
        "|---|---|---|---|---|---|",
    ]
    for fault in sorted(by_fault, key=lambda f: -sum(by_fault[f].values())):
        o = by_fault[fault]
        lines.append(
            f"| {fault} | {sum(o.values())} | {o['ValueError']} | {o['TypeError']} | {o['unchanged']} "
            f"| {o['known gap']} |"
        )
    return "\n".join(lines)


def half_precision(progress: bool = True) -> dict[str, Any]:
    """Worst errors per dtype and method over the grid of tests/test_half_precision.py."""
    import torch
    from tqdm import tqdm

    sys.path.insert(0, str(HERE))
    import test_half_precision as half

    torch.set_num_threads(1)
    jobs = [
        (case, dtype, shape) for case in half.CASES for dtype in half.HALF_DTYPES for shape in half.SHAPES
    ]
    worst: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for case, dtype, shape in tqdm(jobs, desc="bf16/fp16 grid", disable=not progress):
        label = half._label(case)
        e_half = half.run(*case, dtype, shape).errors()
        e_up = half.run(*case, dtype, shape, upcast=True).errors()
        key = str(dtype).removeprefix("torch.")
        current = worst[key].setdefault(label, {})
        values = {
            "loss_rel (half log_softmax)": e_half.loss_rel,
            "dz/max (half log_softmax)": e_half.grad_abs_scaled,
            "dz/max (fp32 log_softmax)": e_up.grad_abs_scaled,
            "loss_rel (on rounded log-probs)": e_half.logp_loss_rel,
            "dlogp/max (on rounded log-probs)": e_half.logp_grad_abs_scaled,
        }
        for name, value in values.items():
            if value > current.get(name, -1.0):
                current[name] = value
                current[f"{name} at"] = float(shape[-1])
    return worst


def seed_sweep(seeds: int, progress: bool = True) -> dict[str, dict[str, tuple[float, int]]]:
    """Worst ∂L/∂z error (÷ max) through a half log_softmax at vocab 151936 over ``seeds`` seeds."""
    import torch
    from tqdm import tqdm

    sys.path.insert(0, str(HERE))
    import test_half_precision as half

    torch.set_num_threads(1)
    shape = half.SHAPES[-1]
    jobs = [(case, dtype, seed) for case in half.CASES for dtype in half.HALF_DTYPES for seed in range(seeds)]
    worst: dict[str, dict[str, tuple[float, int]]] = defaultdict(dict)
    for case, dtype, seed in tqdm(jobs, desc=f"seeds at vocab {shape[-1]}", disable=not progress):
        err = half.run(*case, dtype, shape, seed).errors().grad_abs_scaled
        key, label = str(dtype).removeprefix("torch."), half._label(case)
        if err > worst[key].get(label, (-1.0, 0))[0]:
            worst[key][label] = (err, seed)
    return worst


def seed_table(worst: dict[str, dict[str, tuple[float, int]]], seeds: int) -> str:
    methods = list(next(iter(worst.values())))
    lines = ["| dtype | " + " | ".join(f"`{m}`" for m in methods) + " |", "|---|" + "---|" * len(methods)]
    for dtype, row in worst.items():
        lines.append(
            f"| {dtype} | " + " | ".join(f"{row[m][0]:.2g} (seed {row[m][1]})" for m in methods) + " |"
        )
    return (
        f"Worst ∂L/∂z error ÷ max over seeds 0–{seeds - 1}, half log_softmax, vocab 151936:\n\n"
        + "\n".join(lines)
    )


def half_table(worst: dict[str, Any]) -> str:
    from askd_ref.porting.tolerances import tolerance

    cols = [
        "loss_rel (half log_softmax)",
        "dz/max (half log_softmax)",
        "dz/max (fp32 log_softmax)",
        "loss_rel (on rounded log-probs)",
        "dlogp/max (on rounded log-probs)",
    ]
    lines = []
    for dtype, methods in worst.items():
        tol = [
            tolerance(dtype, "value_e2e").rtol,
            tolerance(dtype, "grad_e2e").atol,
            tolerance(dtype, "grad_e2e_fp32").atol,
            tolerance(dtype, "value").rtol,
        ]
        lines.append(f"**{dtype}** (worst over the shapes; vocabulary of the worst case in brackets)\n")
        lines.append("| method | " + " | ".join(cols) + " |")
        lines.append("|---|" + "---|" * len(cols))
        for method, v in methods.items():
            cells = [f"{v[c]:.1e} [{int(v[c + ' at'])}]" for c in cols]
            lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
        lines.append(
            f"| tolerance row | value_e2e rtol {tol[0]:.3g} | grad_e2e atol {tol[1]:.3g} "
            f"| grad_e2e_fp32 atol {tol[2]:.3g} | value rtol {tol[3]:.3g} | grad (elementwise, unscaled) |\n"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--long", action="store_true", help="run the slow-marked fuzzing (10x examples)")
    parser.add_argument("--skip-half", action="store_true", help="skip the bf16/fp16 measurements")
    parser.add_argument("--json", type=Path, help="also write the raw counts and errors here (atomically)")
    parser.add_argument("--seeds", type=int, default=0, help="also sweep this many seeds at vocab 151936")
    parser.add_argument("--skip-fuzz", action="store_true", help="skip the fuzz run")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    result: dict[str, Any] = {}
    if not args.skip_fuzz:
        data = run_fuzz(args.long)
        print(
            f"\n## Fuzzing: {data['run']}, {data['seconds']:.0f} s wall, hypothesis {data['hypothesis']}, "
            f"torch {data['torch']}, profile {data['profile']}\n"
        )
        print(fuzz_table(data))
        print("\n### Outcomes per fault kind\n")
        print(fault_kind_table(data))
        result["fuzz"] = data
    if not args.skip_half:
        worst = half_precision()
        print("\n## bf16 / fp16 end to end\n")
        print(half_table(worst))
        result["half_precision"] = worst
    if args.seeds:
        sweep = seed_sweep(args.seeds)
        print("\n" + seed_table(sweep, args.seeds))
        result["seed_sweep"] = sweep
    if args.json:
        from askd_ref.io import atomic_write_json

        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
