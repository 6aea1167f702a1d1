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

With ``--kernels fused compiled`` the askd-ref rows run once per chunked kernel, interleaved with
the others, and each gets its ratios (``askd_chunked[compiled]`` / ``floor``, ...).

Each ratio is reported three ways: the ratio of the rows' median times; the median of the
per-round ratios (the two passes of a round run seconds apart, so machine drift between rounds
cancels); and a distribution-free 95 % upper confidence bound of that median
(``askd_ref.bench.loss.median_upper_bound``, the sign test's order statistic; it needs 5 rounds
or more, 9 and 15 give the 8th and 12th smallest). A bound counts as shown when that upper
confidence bound is within it, which treats the rounds as independent draws.

    python scripts/bound_ratios.py [--sizes 1024x32768,1024x151936] [--passes 3] [--json FILE]
                                   [--kernels fused compiled] [--no-liger]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from askd_ref.bench import loss as bench
from askd_ref.io import atomic_write_json

#: Every configuration of the full benchmark but 16384 × 151936 (about half an hour here).
DEFAULT_SIZES = "1024x32768,4096x32768,16384x32768,1024x151936,4096x151936"
#: Confidence of the upper bound of the median per-round ratio.
CONFIDENCE = 0.95


def _row(impl: str, kernel: str) -> str:
    """The name of an askd-ref row run with ``kernel``: plain for the default kernel."""
    return impl if kernel == "fused" else f"{impl}[{kernel}]"


def measure(
    tokens: int, vocab: int, passes: int, kernels: Sequence[str] = ("fused",), liger: bool = True
) -> dict[str, Any]:
    """Interleaved passes of the bounded rows at one configuration, the askd-ref rows once per
    chunked kernel: times and ratios."""
    cfg = bench.BenchConfig(tokens=tokens, vocab=vocab)
    x = bench.make_inputs(cfg)
    # The same tensors, with the kernel of each askd-ref row in its configuration.
    xs = {k: dataclasses.replace(x, cfg=dataclasses.replace(cfg, kernel=k)) for k in kernels}
    steps: dict[str, Callable[[], Any]] = {}
    for k, xk in xs.items():
        steps[_row("askd_chunked", k)] = lambda xk=xk: bench.STEPS["askd_chunked"](xk)
    steps["floor"] = lambda: bench.STEPS["floor"](x)
    ratios_of = [(_row("askd_chunked", k), "floor") for k in kernels]
    if liger and bench.liger_available():
        small = bench.make_inputs(dataclasses.replace(cfg, tokens=cfg.seq_len, vocab=min(vocab, 1024)))
        bench.check_liger_value(small, bench.STEPS["liger_jsd_compiled"](small))
        for k, xk in xs.items():
            steps[_row("askd_chunked_gkd", k)] = lambda xk=xk: bench.STEPS["askd_chunked_gkd"](xk)
        steps["liger_jsd_compiled"] = lambda: bench.STEPS["liger_jsd_compiled"](x)
        ratios_of += [(_row("askd_chunked_gkd", k), "liger_jsd_compiled") for k in kernels]
    impls = list(steps)
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    first: dict[str, float] = {}
    for k in range(passes + 1):
        for impl in impls if k % 2 else reversed(impls):
            bench._clear(x)
            t0 = time.perf_counter()
            steps[impl]()
            seconds = time.perf_counter() - t0
            if k:
                times[impl].append(seconds)
            else:
                first[impl] = seconds
    medians = {impl: statistics.median(ts) for impl, ts in times.items()}
    ratios = {}
    for num, den in ratios_of:
        bound = bench.TARGETS[("time_s", num.split("[")[0], den)]
        value = medians[num] / medians[den]
        # The same ratio round by round: the two passes of one round run within seconds of each
        # other, the passes behind two medians possibly minutes apart, so this one is less moved
        # by the machine's drift.
        per_round = [a / b for a, b in zip(times[num], times[den], strict=True)]
        paired = statistics.median(per_round)
        # A distribution-free 95 % upper confidence bound of that median (sign test; None below 5
        # rounds): the bound is shown to hold when it is within the bound.
        upper = bench.median_upper_bound(per_round, CONFIDENCE)
        ratios[f"{num}/{den}"] = {
            "value": value,
            "paired": paired,
            "paired_upper": upper,
            "confidence": CONFIDENCE,
            "bound": bound,
            "met": value <= bound,
            "shown": upper is not None and upper <= bound,
        }
    return {
        "tokens": tokens,
        "vocab": vocab,
        "kernels": list(kernels),
        "times_s": times,
        "warmup_s": first,
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="tokens x vocab, comma-separated")
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--json", help="write the environment, every pass and the ratios here")
    parser.add_argument("--no-liger", action="store_true", help="only askd_chunked / floor")
    parser.add_argument(
        "--kernels",
        nargs="+",
        choices=["fused", "compiled"],
        default=["fused"],
        help="chunked_loss kernels of the askd-ref rows, each its own row (default: fused); "
        "rows of a kernel other than fused are named e.g. askd_chunked[compiled]",
    )
    args = parser.parse_args()
    env_before = bench._environment("cpu")
    results = []
    for size in args.sizes.split(","):
        tokens, vocab = (int(v) for v in size.split("x"))
        r = measure(tokens, vocab, args.passes, args.kernels, liger=not args.no_liger)
        results.append(r)
        print(f"{tokens} x {vocab}, {args.passes} interleaved passes each (s):")
        for impl, ts in r["times_s"].items():
            passes = " / ".join(f"{t:.2f}" for t in ts)
            print(f"  {impl:26s} median {statistics.median(ts):7.2f}  passes {passes}")
        for name, q in r["ratios"].items():
            verdict = "met" if q["met"] else "NOT MET"
            if q["paired_upper"] is None:
                shown = f"too few rounds for a {CONFIDENCE:.0%} upper bound (5 at least)"
            else:
                holds = "within the bound" if q["shown"] else "NOT within the bound"
                shown = f"{CONFIDENCE:.0%} upper bound {q['paired_upper']:.3f}, {holds}"
            print(
                f"  time {name}: {q['value']:.3f} (bound {q['bound']}) {verdict}; "
                f"median of the {args.passes} per-round ratios {q['paired']:.3f}, {shown}",
                flush=True,
            )
    load_after = bench._environment("cpu")["load_average_1_5_15"]
    if args.json:
        record = {"environment": env_before, "load_after": load_after, "results": results}
        atomic_write_json(args.json, record)
    print(f"load average before {env_before['load_average_1_5_15']}, after {load_after}")


if __name__ == "__main__":
    main()
