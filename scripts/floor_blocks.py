"""Is the blocked projection floor as fast as the floor in one block?

``askd bench loss`` projects the floor in blocks of at most ``FLOOR_BLOCK`` (4096) tokens so that it
fits memory at 16384 tokens. This script times both at a size where one block still fits
(default 16384 tokens, vocab 32768: three 2 GiB logit tensors), passes interleaved in one process,
and prints the medians and their ratio. A ratio near 1 means the blocks do not flatter the floor
(a slower floor would make ``askd_chunked / floor`` look better than it is).

    python scripts/floor_blocks.py [--tokens 16384] [--vocab 32768] [--passes 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

from askd_ref.bench import loss as bench


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    x = bench.make_inputs(bench.BenchConfig(tokens=args.tokens, vocab=args.vocab))
    blocks = {"one block": args.tokens, f"blocks of {bench.FLOOR_BLOCK}": bench.FLOOR_BLOCK}
    times: dict[str, list[float]] = {name: [] for name in blocks}
    for k in range(args.passes + 1):  # the first round warms up and is not kept
        for name, block in blocks.items():
            bench._clear(x)
            t0 = time.perf_counter()
            bench._floor(x, block=block)
            if k:
                times[name].append(time.perf_counter() - t0)
    medians = {name: statistics.median(ts) for name, ts in times.items()}
    for name, ts in times.items():
        print(f"{name:16s} median {medians[name]:.2f} s  passes {' '.join(f'{t:.2f}' for t in ts)}")
    one, blocked = medians.values()
    print(f"{args.tokens} x {args.vocab}: blocked / one block = {blocked / one:.3f}")


if __name__ == "__main__":
    main()
