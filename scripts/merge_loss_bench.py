"""Merge ``askd bench loss`` output directories into one table, figure and details file.

A full run of the benchmark takes over an hour on a 2-core CPU. When only some rows change (a
new kernel for the chunked rows, say), rerunning those rows with ``--impls`` and merging the new
records over the earlier ones keeps the rows that did not change as they were measured. Later
directories win: a (tokens, vocab, impl) record of a later run replaces the earlier one, and so
do that record's passes in the details. Ratios, target checks, the markdown table and the plot
are recomputed from the merged records with the benchmark's own functions; every run's
environment (load average included) is kept under ``runs``, named by ``--label`` (an input that
is itself a merge keeps its runs, each named ``"<label>: <its run>"``).

    python scripts/merge_loss_bench.py RUN1 RUN2 [...] --label "first" --label "chunked again" --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from askd_ref.bench import loss as bench
from askd_ref.io import atomic_write_json, atomic_write_text


def merge(runs: list[Path], labels: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records and details of ``runs`` merged in order (later wins per tokens, vocab, impl)."""
    if len(labels) != len(runs):
        raise ValueError(f"--label: expected one per run ({len(runs)}), got {len(labels)}")
    records: dict[tuple[int, int, str], dict[str, Any]] = {}
    results: dict[tuple[int, int], dict[str, Any]] = {}
    configs: dict[tuple[int, int], dict[str, Any]] = {}
    skipped: dict[tuple[int, int, str], dict[str, Any]] = {}
    repeats: dict[str, int] = {}
    environments: dict[str, Any] = {}
    for run, label in zip(runs, labels, strict=True):
        details = json.loads((run / "loss-bench-details.json").read_text())
        if "runs" in details:  # an earlier merge: keep its runs' environments under this label
            for sub, env in details["runs"].items():
                environments[f"{label}: {sub}"] = env
        else:
            environments[label] = {"dir": run.name, **details["environment"]}
        repeats.update(details["repeats"])
        for r in json.loads((run / "loss-bench.json").read_text()):
            key = (r["tokens"], r["vocab"], r["impl"])
            records[key] = {"run": label, **r}
            skipped.pop(key, None)
        for c in details["configs"]:
            cfg = c["config"]
            key2 = (cfg["tokens"], cfg["vocab"])
            configs[key2] = cfg
            results.setdefault(key2, {}).update(c["results"])
        for s in details["skipped"]:
            key = (s["tokens"], s["vocab"], s["impl"])
            if key not in records:
                skipped[key] = s
    merged = bench.sorted_records(list(records.values()))
    out: dict[str, Any] = {
        "configs": [{"config": configs[k], "results": results[k]} for k in sorted(configs)],
        "repeats": repeats,
        "runs": environments,
        "skipped": list(skipped.values()),
        "ratios": bench.ratios(merged),
        "targets_4096x32768": bench.check_targets(merged),
        "targets": {f"{t}x{v}": bench.check_targets(merged, t, v) for t, v in bench.configs_of(merged)},
    }
    return merged, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="askd bench loss outputs, earliest first")
    parser.add_argument("--label", action="append", required=True, help="what each run was (one per run)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="askd bench loss, merged runs")
    args = parser.parse_args()
    records, details = merge(args.runs, args.label)
    atomic_write_json(args.out / "loss-bench.json", records)
    atomic_write_json(args.out / "loss-bench-details.json", details)
    atomic_write_text(args.out / "loss-bench.md", bench._markdown(records, details["skipped"]))
    bench._plot(records, args.out / "loss-bench.png", args.title)
    print(bench._markdown(records, details["skipped"]))
    for key, checks in details["targets"].items():
        for c in checks:
            verdict = "met" if c["met"] else "NOT MET"
            print(f"{key} {c['quantity']} {c['ratio']}: {c['value']:.3f} (bound {c['bound']}) {verdict}")


if __name__ == "__main__":
    main()
