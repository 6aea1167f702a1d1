"""The bounded time ratios of ``askd bench loss``, measured with the passes interleaved in one process.

``askd bench loss`` runs every (configuration, implementation) in its own fresh worker, which
keeps the peak-memory measurements apart but lets the machine's state drift between the rows it
compares: on a shared 2-core machine single-process timings move by 15–25 % between runs. This
script measures only the time ratios with a bound at every configuration, ``askd_chunked`` /
``floor`` (≤ 1.10) and ``askd_chunked_gkd`` / ``liger_jsd_compiled`` (≤ 0.8), with the four rows
in one process on the same inputs, passes interleaved round by round (order reversed every other
round; round 0 warms up, compiles Liger at the full-size shapes and is not kept), so that every
row sees the same machine state. Peak memory is not measured here (one process holds every
row's buffers); it comes from ``askd bench loss``.

Liger's loss is checked equal to askd-ref's ``gkd`` loss first, as in ``askd bench loss``.
Without liger-kernel only askd_chunked / floor is measured.

    python scripts/bound_ratios.py [--sizes 1024x32768,1024x151936] [--passes 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from typing import Any

from askd_ref.bench import loss as bench
from askd_ref.io import atomic_write_json

#: Every configuration of the full benchmark but 16384 × 151936 (about half an hour here).
DEFAULT_SIZES = "1024x32768,4096x32768,16384x32768,1024x151936,4096x151936"
RATIOS = (("askd_chunked", "floor"), ("askd_chunked_gkd", "liger_jsd_compiled"))


def measure(tokens: int, vocab: int, passes: int) -> dict[str, Any]:
    """Interleaved passes of the bounded rows at one configuration: times and ratios."""
    cfg = bench.BenchConfig(tokens=tokens, vocab=vocab)
    impls = ["askd_chunked", "floor"]
    if bench.liger_available():
        impls += ["askd_chunked_gkd", "liger_jsd_compiled"]
        small = bench.make_inputs(dataclasses.replace(cfg, tokens=cfg.seq_len, vocab=min(vocab, 1024)))
        bench.check_liger_value(small, bench.STEPS["liger_jsd_compiled"](small))
    x = bench.make_inputs(cfg)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    first: dict[str, float] = {}
    for k in range(passes + 1):
        for impl in impls if k % 2 else reversed(impls):
            bench._clear(x)
            t0 = time.perf_counter()
            bench.STEPS[impl](x)
            seconds = time.perf_counter() - t0
            if k:
                times[impl].append(seconds)
            else:
                first[impl] = seconds
    medians = {impl: statistics.median(ts) for impl, ts in times.items()}
    ratios = {}
    for num, den in RATIOS:
        if num in medians and den in medians:
            bound = bench.TARGETS[("time_s", num, den)]
            value = medians[num] / medians[den]
            ratios[f"{num}/{den}"] = {"value": value, "bound": bound, "met": value <= bound}
    return {"tokens": tokens, "vocab": vocab, "times_s": times, "warmup_s": first, "ratios": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="tokens x vocab, comma-separated")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", help="write the environment, every pass and the ratios here")
    args = parser.parse_args()
    env_before = bench._environment("cpu")
    results = []
    for size in args.sizes.split(","):
        tokens, vocab = (int(v) for v in size.split("x"))
        r = measure(tokens, vocab, args.passes)
        results.append(r)
        print(f"{tokens} x {vocab}, {args.passes} interleaved passes each (s):")
        for impl, ts in r["times_s"].items():
            passes = " / ".join(f"{t:.2f}" for t in ts)
            print(f"  {impl:20s} median {statistics.median(ts):7.2f}  passes {passes}")
        for name, q in r["ratios"].items():
            verdict = "met" if q["met"] else "NOT MET"
            print(f"  time {name}: {q['value']:.3f} (bound {q['bound']}) {verdict}", flush=True)
    load_after = bench._environment("cpu")["load_average_1_5_15"]
    if args.json:
        record = {"environment": env_before, "load_after": load_after, "results": results}
        atomic_write_json(args.json, record)
    print(f"load average before {env_before['load_average_1_5_15']}, after {load_after}")


if __name__ == "__main__":
    main()
