"""What each element-wise operation of the chunked kernels costs on one row block.

Times the operations the fused kernels are built from on one ``(rows × vocab)`` float32 block
(default 8 × 32768, the 1 MiB block of the chunked path at that vocabulary), each applied in place
or into a preallocated output, median of 5 rounds of ``--repeat`` calls, in microseconds per block.
It shows which operations set the cost of the element-wise work on a CPU: on the benchmark CPU
``torch.exp`` and ``torch.log`` go through MKL's vector math library and cost several times
``torch.exp2`` (hence ``exp(x) = exp2(x·log₂e)`` in the kernels), and ``torch.log`` costs about
as much as ``torch.logaddexp``, so a mixture formed in probability space (one ``log``) saves no
time over one formed in log space (one ``logaddexp``).

    python scripts/elementwise_ops.py [--rows 8] [--vocab 32768] [--repeat 500]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--repeat", type=int, default=500)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    shape = (args.rows, args.vocab)
    z = torch.randn(shape, generator=g) * 3  # logits
    u = torch.rand(shape, generator=g) + 0.1  # positive values (probabilities, mixtures)
    col = torch.full((args.rows, 1), 0.1).log()  # a per-row constant column, as log α
    out = torch.empty(shape)
    ops: dict[str, Callable[[], object]] = {
        "log_softmax": lambda: torch.log_softmax(z, -1, out=out),
        "exp": lambda: torch.exp(z, out=out),
        "exp2": lambda: torch.exp2(z, out=out),
        "mul + exp2 (the kernels' exp)": lambda: torch.mul(z, 1.4426950408889634, out=out).exp2_(),
        "log": lambda: torch.log(u, out=out),
        "log1p": lambda: torch.log1p(u, out=out),
        "logaddexp with a column": lambda: torch.logaddexp(z, col, out=out),
        "mul": lambda: torch.mul(z, u, out=out),
        "sub a column": lambda: torch.sub(z, col, out=out),
        "row sum": lambda: z.sum(-1),
    }
    threads = torch.get_num_threads()
    print(f"one {args.rows} x {args.vocab} float32 block, torch {torch.__version__}, {threads} threads")
    for name, op in ops.items():
        op()
        rounds = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(args.repeat):
                op()
            rounds.append((time.perf_counter() - t0) / args.repeat * 1e6)
        print(f"{name:32s} {statistics.median(rounds):8.1f} us")


if __name__ == "__main__":
    main()
