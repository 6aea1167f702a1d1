"""How the chunk size moves the time of a chunked loss pass, against the projection floor.

Runs one forward + backward of an ``askd bench loss`` chunked row (default ``askd_chunked``) at
several chunk sizes and the ``floor`` row on the same inputs, in one process, passes interleaved
round by round (order reversed every other round, the first round a warm-up that is not kept),
and prints the median time of each with its ratio to the floor. Interleaving lets every variant
see the same machine state, so the ratios are steadier than runs in separate processes.

``--matmuls`` adds, per chunk size, the four projection matmuls of the chunked path alone (student
and teacher logits of each chunk into preallocated buffers, the chunk's contribution to ∂L/∂hidden
and ∂L/∂weight, with the teacher's logits standing in for the logit gradient), timed forward and
backward separately: what the chunk size does to the matmuls, without the element-wise work.

    python scripts/chunk_sizes.py [--tokens 2048] [--vocab 151936] [--chunks 256 512 1024]
                                  [--passes 4] [--matmuls]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from askd_ref.bench import loss as bench


def projection_matmuls(x: bench.Inputs, chunk: int) -> tuple[float, float]:
    """Seconds in the forward (two projections) and backward (two gradient) matmuls of all chunks."""
    tokens, vocab = x.hs.shape[0], x.ws.shape[0]
    s_buf, t_buf = torch.empty(chunk, vocab), torch.empty(chunk, vocab)
    g_hidden = torch.empty(tokens, x.hs.shape[1])
    g_weight: torch.Tensor | None = None
    fwd = bwd = 0.0
    with torch.no_grad():
        hs, ws = x.hs.detach(), x.ws.detach()
        for c0 in range(0, tokens, chunk):
            c1 = min(tokens, c0 + chunk)
            s, t = s_buf[: c1 - c0], t_buf[: c1 - c0]
            t0 = time.perf_counter()
            torch.mm(hs[c0:c1], ws.t(), out=s)
            torch.mm(x.ht[c0:c1], x.wt.t(), out=t)
            t1 = time.perf_counter()
            torch.mm(t, ws, out=g_hidden[c0:c1])
            if g_weight is None:
                g_weight = torch.mm(t.t(), hs[c0:c1])
            else:
                g_weight.addmm_(t.t(), hs[c0:c1])
            fwd, bwd = fwd + t1 - t0, bwd + time.perf_counter() - t1
    return fwd, bwd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    impls = sorted(bench.CHUNKED_IMPLS & set(bench.STEPS))
    parser.add_argument("--impl", default="askd_chunked", choices=impls)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=151936)
    parser.add_argument("--chunks", type=int, nargs="+", default=[256, 512, 1024])
    parser.add_argument("--passes", type=int, default=4)
    parser.add_argument("--matmuls", action="store_true", help="also time the projection matmuls alone")
    args = parser.parse_args()
    cfg = bench.BenchConfig(tokens=args.tokens, vocab=args.vocab)
    x = bench.make_inputs(cfg)
    variants = {
        f"{args.impl} chunk {c}": dataclasses.replace(x, cfg=dataclasses.replace(cfg, chunk_size=c))
        for c in args.chunks
    }
    variants["floor"] = x
    steps = {name: bench.STEPS["floor" if name == "floor" else args.impl] for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    split: dict[int, list[tuple[float, float]]] = {c: [] for c in args.chunks} if args.matmuls else {}
    for k in range(args.passes + 1):  # round 0 warms up and is not kept
        order = list(variants) if k % 2 else list(reversed(variants))
        for name in order:
            bench._clear(x)
            t0 = time.perf_counter()
            steps[name](variants[name])
            if k:
                times[name].append(time.perf_counter() - t0)
        for c in split if k % 2 else reversed(list(split)):
            fwd_bwd = projection_matmuls(x, c)
            if k:
                split[c].append(fwd_bwd)
    floor = statistics.median(times["floor"])
    print(f"{args.tokens} x {args.vocab}, {args.passes} interleaved passes each")
    for name, ts in times.items():
        med = statistics.median(ts)
        passes = " ".join(f"{t:.2f}" for t in ts)
        print(f"{name:28s} median {med:7.2f} s  / floor {med / floor:.3f}  passes {passes}")
    for c, runs in split.items():
        fwd, bwd = (statistics.median(r[i] for r in runs) for i in (0, 1))
        total = statistics.median(f + b for f, b in runs)
        label = f"matmuls alone, chunk {c}"
        print(f"{label:28s} median {total:7.2f} s  (forward {fwd:.2f} s, backward {bwd:.2f} s)")


if __name__ == "__main__":
    main()
