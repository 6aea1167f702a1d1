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
import statistics
from collections.abc import Sequence
from typing import Any

from askd_ref.bench import loss as bench
from askd_ref.io import atomic_write_json

#: Every configuration of the full benchmark but 16384 × 151936 (about half an hour here).
DEFAULT_SIZES = "1024x32768,4096x32768,16384x32768,1024x151936,4096x151936"
#: Confidence of the upper bound of the median per-round ratio.
CONFIDENCE = bench.CONFIDENCE


def measure(
    tokens: int,
    vocab: int,
    passes: int,
    kernels: Sequence[bench.BenchKernel] = ("fused",),
    liger: bool = True,
) -> dict[str, Any]:
    """Interleaved passes of the bounded rows at one configuration, the askd-ref rows once per
    chunked kernel: times and ratios (:func:`askd_ref.bench.loss.interleaved_times`)."""
    cfg = bench.BenchConfig(tokens=tokens, vocab=vocab, kernel=kernels[0])
    return bench.interleaved_times(cfg, passes, kernels, liger=liger)


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
        "rows of the kernels after the first are named e.g. askd_chunked[compiled]",
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
