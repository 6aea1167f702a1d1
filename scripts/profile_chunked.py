"""Where the time of one chunked loss pass goes: matmuls against everything else.

Runs one forward + backward of a ``askd bench loss`` row (default ``askd_chunked`` at 4096 tokens,
vocab 32768) under ``torch.profiler`` after a warm-up pass, prints the operators by self CPU
time and the share of the projection matmuls (``aten::mm``, ``aten::addmm_``) in the total.

    python scripts/profile_chunked.py [--impl askd_chunked] [--tokens 4096] [--vocab 32768]
                                      [--kernel fused|compiled]

The compiled kernel runs as one ctypes call, not an operator: its time is in the self CPU time of
``_ChunkedHeads`` (the autograd Function around the chunk loop), among "everything else". The
script also prints the pass's wall time and the part of it no recorded event accounts for.
"""

from __future__ import annotations

import argparse
import time

from torch.profiler import ProfilerActivity, profile

from askd_ref.bench import loss as bench

MATMULS = ("aten::mm", "aten::addmm_", "aten::addmm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", default="askd_chunked", choices=sorted(bench.STEPS))
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--kernel", default="fused", choices=["fused", "compiled"])
    parser.add_argument("--rows", type=int, default=15, help="operators to list")
    args = parser.parse_args()
    x = bench.make_inputs(bench.BenchConfig(tokens=args.tokens, vocab=args.vocab, kernel=args.kernel))
    step = bench.STEPS[args.impl]
    step(x)  # warm-up
    bench._clear(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        step(x)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in MATMULS)
    print(
        f"{args.impl} at {args.tokens} x {args.vocab}: self CPU {total / 1e6:.2f} s, "
        f"matmuls {mm / 1e6:.2f} s ({mm / total:.1%}), everything else {(total - mm) / 1e6:.2f} s "
        f"({1 - mm / total:.1%})"
    )
    print(
        f"wall {wall:.2f} s, of which outside every recorded event: {wall - total / 1e6:.2f} s "
        "(the compiled kernel's C call is in _ChunkedHeads' self time)"
    )


if __name__ == "__main__":
    main()
