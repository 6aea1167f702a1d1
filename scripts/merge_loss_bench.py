"""Merge ``askd bench loss`` output directories into one table, figure and details file.

A full run of the benchmark takes over an hour on a 2-core CPU. When only some rows change (a
new kernel for the chunked rows, say), rerunning those rows with ``--impls`` and merging the new
records over the earlier ones keeps the rows that did not change as they were measured. Later
directories win: a (tokens, vocab, impl) record of a later run replaces the earlier one, and so
do that record's passes in the details. Ratios, target checks, the markdown table and the plot
are recomputed from the merged records and written by the benchmark's own ``write_results``;
every run's environment (load average included) is kept under ``runs``, named by ``--label``
(an input that is itself a merge keeps its runs, each named ``"<label>: <its run>"``).

    python scripts/merge_loss_bench.py RUN1 RUN2 [...] --label "first" --label "chunked again" --out DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from askd_ref.bench import loss as bench


def merge(
    runs: list[Path], labels: list[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """Records, skipped rows and details of ``runs`` merged in order (later wins per tokens,
    vocab, impl); :func:`askd_ref.bench.loss.write_results` adds the ratios and target checks."""
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
    details_out: dict[str, Any] = {
        "configs": [{"config": configs[k], "results": results[k]} for k in sorted(configs)],
        "repeats": repeats,
        "runs": environments,
    }
    return list(records.values()), list(skipped.values()), details_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="askd bench loss outputs, earliest first")
    parser.add_argument("--label", action="append", required=True, help="what each run was (one per run)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--title", default="askd bench loss, merged runs")
    args = parser.parse_args()
    records, skipped, details = merge(args.runs, args.label)
    records = bench.write_results(args.out, records, skipped, details, args.title)
    print((args.out / "loss-bench.md").read_text(encoding="utf-8"))
    print("\n".join(bench.target_lines(records)))


if __name__ == "__main__":
    main()
