"""What each element-wise operation of the chunked kernels costs on one row block.

Times the operations the fused kernels are built from on one ``(rows × vocab)`` float32 block
(default 8 × 32768, the 1 MiB block of the chunked path at that vocabulary), each applied in place
or into a preallocated output, median of 5 rounds of ``--repeat`` calls, in microseconds per block.
It shows which operations set the cost of the element-wise work on a CPU: on the benchmark CPU
``torch.exp`` and ``torch.log`` go through MKL's vector math library and cost several times
``torch.exp2`` (hence ``exp(x) = exp2(x·log₂e)`` in the kernels), and ``torch.log`` costs about
as much as ``torch.logaddexp``, so a mixture formed in probability space (one ``log``) saves no
time over one formed in log space (one ``logaddexp``), and neither does ``softplus``
(log(α + eˣ) = log α + softplus(x − log α)).

    python scripts/elementwise_ops.py [--rows 8] [--vocab 32768] [--repeat 500]

``--blocks R [R ...]`` instead times the whole element-wise work of one chunk of ``--chunk``
tokens (both log-softmaxes, the token gathers and a fused kernel, ``--divergence``) in row blocks
of each size R, rounds interleaved, and names the block the chunked path picks
(``askd_ref.chunked._block_rows``): how the block size, and the thread count through it, moves
that cost.

    python scripts/elementwise_ops.py --blocks 1 2 4 8 [--chunk 1024] [--vocab 151936]
                                      [--divergence SKL] [--repeat 5]

``--inductor`` times the same chunk's element-wise work, in the chunked path's row blocks, through
the eager fused kernel and through ``torch.compile`` (inductor) of the same block computation
written as one function (both log-softmaxes, the divergence values and the logit gradient, for
SKL, SRKL or the generalised JSD), rounds interleaved. The compiled block is checked against the
eager kernel first; the compile time is printed apart. It answers whether torch.compile of the
kernels would pay on the machine at hand.

    python scripts/elementwise_ops.py --inductor [--chunk 1024] [--vocab 151936]
                                      [--divergence SKL] [--repeat 5]

``--c-kernel`` times the same chunk's element-wise work through the eager fused kernel (the chunked
path's row blocks) and through the C row kernel of ``kernel="compiled"`` (``askd_ref.compiled``,
the whole chunk in one call), rounds interleaved, after checking that the two give the same
token log-probs, values and logit gradients (float32 rows of the tolerance table).

    python scripts/elementwise_ops.py --c-kernel [--chunk 1024] [--vocab 151936]
                                      [--divergence SKL] [--repeat 5]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch
from torch import Tensor

from askd_ref import chunked
from askd_ref.divergences import Divergence


@dataclasses.dataclass(frozen=True)
class ChunkInputs:
    """One chunk's seeded logits and per-token columns, with the two chunk buffers the work
    consumes (``reset`` restores the logits into them)."""

    zs: Tensor  # (chunk, vocab) student logits
    zt: Tensor  # (chunk, vocab) teacher logits
    a: Tensor  # (chunk, 1) α (β) in [0.1, 0.9]
    la: Tensor  # (chunk, 1) log α
    l1a: Tensor  # (chunk, 1) log(1 − α)
    w: Tensor  # (chunk, 1) loss weights
    ids: Tensor  # (chunk, 1) target ids
    s: Tensor  # (chunk, vocab) buffer, the student logits before each run
    t: Tensor  # (chunk, vocab) buffer, the teacher logits before each run

    @staticmethod
    def make(chunk: int, vocab: int) -> ChunkInputs:
        g = torch.Generator().manual_seed(0)
        zs, zt = torch.randn(chunk, vocab, generator=g) * 2, torch.randn(chunk, vocab, generator=g) * 2
        a = torch.rand(chunk, 1, generator=g) * 0.8 + 0.1
        w, ids = torch.rand(chunk, 1, generator=g), torch.randint(0, vocab, (chunk, 1), generator=g)
        buffers = torch.empty_like(zs), torch.empty_like(zt)
        return ChunkInputs(zs, zt, a, a.log(), torch.log1p(-a), w, ids, *buffers)

    def reset(self) -> None:
        self.s.copy_(self.zs)
        self.t.copy_(self.zt)


K = TypeVar("K", bound=Hashable)


def interleaved(runs: dict[K, Callable[[], float]], repeat: int) -> dict[K, list[float]]:
    """``repeat`` rounds of every run (each returns its seconds), in alternating order, after a
    warm-up round that is not kept."""
    names = list(runs)
    times: dict[K, list[float]] = {name: [] for name in names}
    for k in range(repeat + 1):
        for name in names if k % 2 else reversed(names):
            elapsed = runs[name]()
            if k:
                times[name].append(elapsed)
    return times


def _passes(name: str, ts: list[float]) -> str:
    passes = " ".join(f"{t * 1e3:.1f}" for t in ts)
    return f"{name} median {statistics.median(ts) * 1e3:8.1f} ms  passes {passes}"


def chunk_work(rows: int, x_in: ChunkInputs, divergence: Divergence) -> Callable[[], float]:
    """A callable that runs the element-wise work of one chunk in blocks of ``rows`` and returns
    its seconds (the logits are restored from a copy first, outside the timing)."""
    chunk, vocab = x_in.zs.shape
    s, t, ids = x_in.s, x_in.t, x_in.ids
    x, y = torch.empty(rows, vocab), torch.empty(rows, vocab)

    def run() -> float:
        x_in.reset()
        t0 = time.perf_counter()
        for b0 in range(0, chunk, rows):
            b1 = min(chunk, b0 + rows)
            sb = torch.log_softmax(s[b0:b1], -1, out=s[b0:b1])
            tb = torch.log_softmax(t[b0:b1], -1, out=t[b0:b1])
            sb.gather(1, ids[b0:b1])
            tb.gather(1, ids[b0:b1])
            n, blk = b1 - b0, slice(b0, b1)
            params = (x_in.a[blk], x_in.la[blk], x_in.l1a[blk], x_in.w[blk])
            chunked._fused_kernel(int(divergence), sb, tb, x[:n], y[:n], *params, True)
        return time.perf_counter() - t0

    return run


def blocks_main(args: argparse.Namespace) -> None:
    """``--blocks``: one chunk's element-wise work per block size, rounds interleaved."""
    divergence = Divergence[args.divergence]
    x_in = ChunkInputs.make(args.chunk, args.vocab)
    times = interleaved({r: chunk_work(r, x_in, divergence) for r in args.blocks}, args.repeat)
    picked = chunked._block_rows(args.vocab, torch.float32)
    print(
        f"element-wise work of one {args.chunk} x {args.vocab} float32 chunk ({args.divergence}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; chunked path's block: {picked} rows"
    )
    for r, ts in times.items():
        print(_passes(f"block {r:4d} rows ({r * args.vocab * 4 / 2**20:6.2f} MiB)", ts))


def _block_fn(divergence: Divergence) -> Callable[..., tuple[Tensor, Tensor]]:
    """One row block's divergence values and logit gradient from its logits, written plainly for
    ``torch.compile``: the formulas of the fused kernels (``askd_ref.chunked._fused_kernel``)."""

    def skl(zs: Tensor, zt: Tensor, a: Tensor, la: Tensor, l1a: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
        p, q = lt.exp(), ls.exp()
        x = ls - lt + l1a  # log((1−α)q/p)
        y = torch.logaddexp(x, la)  # log(m/p)
        pr = p * torch.exp(x - y)
        return -(p * y).sum(-1), w * (q * pr.sum(-1, keepdim=True) - pr)

    def srkl(zs: Tensor, zt: Tensor, a: Tensor, la: Tensor, l1a: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
        q = ls.exp()
        y = torch.logaddexp(lt - ls + l1a, la)  # log(m/q)
        g = y + a * torch.exp(-y)
        return -(q * y).sum(-1), w * q * ((q * g).sum(-1, keepdim=True) - g)

    def gjsd(zs: Tensor, zt: Tensor, a: Tensor, la: Tensor, l1a: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        ls, lt = torch.log_softmax(zs, -1), torch.log_softmax(zt, -1)
        p, q = lt.exp(), ls.exp()
        y = torch.logaddexp(lt - ls + la, l1a)  # log(M/q)
        yq = (q * y).sum(-1, keepdim=True)
        value = a * (p * (lt - ls - y)).sum(-1, keepdim=True) - (1 - a) * yq
        return value.view(-1), (1 - a) * w * q * (yq - y)

    fns = {Divergence.SKL: skl, Divergence.SRKL_FULL: srkl, Divergence.GJSD: gjsd}
    if divergence not in fns:
        raise SystemExit(f"--inductor covers {', '.join(d.name for d in fns)}, not {divergence.name}")
    return fns[divergence]


def inductor_main(args: argparse.Namespace) -> None:
    """``--inductor``: one chunk's element-wise work, eager fused kernel against torch.compile."""
    divergence = Divergence[args.divergence]
    rows = min(args.chunk, chunked._block_rows(args.vocab, torch.float32))
    if args.chunk % rows:
        raise SystemExit(f"--chunk must be a multiple of the block ({rows} rows): one shape, one compile")
    x_in = ChunkInputs.make(args.chunk, args.vocab)
    s, t, a, la, l1a, w = x_in.s, x_in.t, x_in.a, x_in.la, x_in.l1a, x_in.w
    x, y = torch.empty(rows, args.vocab), torch.empty(rows, args.vocab)
    grad = torch.empty_like(s)
    compiled = torch.compile(_block_fn(divergence), dynamic=False, fullgraph=True)

    def eager(b: slice) -> Tensor:
        sb = torch.log_softmax(s[b], -1, out=s[b])
        tb = torch.log_softmax(t[b], -1, out=t[b])
        return chunked._fused_kernel(int(divergence), sb, tb, x, y, a[b], la[b], l1a[b], w[b], True)

    def fused(b: slice) -> Tensor:
        value, gz = compiled(s[b], t[b], a[b], la[b], l1a[b], w[b])
        grad[b] = gz
        return value

    first = slice(0, rows)
    x_in.reset()
    t0 = time.perf_counter()
    v_compiled = fused(first)
    compile_s = time.perf_counter() - t0
    v_eager = eager(first)
    err = max(float((v_eager - v_compiled).abs().max()), float((s[first] - grad[first]).abs().max()))
    if err > 1e-5:
        raise SystemExit(f"compiled block differs from the eager kernel by {err:.2e}")

    def timed(step: Callable[[slice], Tensor]) -> Callable[[], float]:
        def run() -> float:
            x_in.reset()
            t0 = time.perf_counter()
            for b0 in range(0, args.chunk, rows):
                step(slice(b0, b0 + rows))
            return time.perf_counter() - t0

        return run

    times = interleaved({"eager": timed(eager), "compiled": timed(fused)}, args.repeat)
    print(
        f"element-wise work of one {args.chunk} x {args.vocab} float32 chunk ({args.divergence}) in "
        f"{rows}-row blocks, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"compile {compile_s:.1f} s, max |difference| {err:.1e}"
    )
    for name, ts in times.items():
        print(_passes(f"{name:8s}", ts))
    ratio = statistics.median(times["compiled"]) / statistics.median(times["eager"])
    print(f"compiled / eager: {ratio:.3f}")


def c_kernel_main(args: argparse.Namespace) -> None:
    """``--c-kernel``: one chunk's element-wise work, eager fused kernel against the C kernel."""
    from askd_ref import compiled
    from askd_ref.porting.tolerances import assert_close, tolerance

    divergence = Divergence[args.divergence]
    x_in = ChunkInputs.make(args.chunk, args.vocab)
    rows = chunked._block_rows(args.vocab, torch.float32)
    eager_run = chunk_work(rows, x_in, divergence)
    n = args.chunk
    outs = [torch.empty(n) for _ in range(3)]  # token log-probs (student, teacher), values
    cols = [v.view(-1) for v in (x_in.ids, x_in.a, x_in.la, x_in.l1a, x_in.w)]

    def c_run() -> float:
        x_in.reset()
        t0 = time.perf_counter()
        compiled.rows(int(divergence), x_in.s, x_in.t, *cols, True, *outs)
        return time.perf_counter() - t0

    t0 = time.perf_counter()
    compiled.load()
    build_s = time.perf_counter() - t0
    # Check: the eager kernel in one block over the first rows, against the C kernel's rows.
    m = min(n, 8)
    s, t = torch.log_softmax(x_in.zs[:m], -1), torch.log_softmax(x_in.zt[:m], -1)
    ids = x_in.ids[:m]
    tok = s.gather(1, ids).view(-1), t.gather(1, ids).view(-1)
    params = (x_in.a[:m], x_in.la[:m], x_in.l1a[:m], x_in.w[:m])
    scratch = torch.empty_like(s), torch.empty_like(s)
    values = chunked._fused_kernel(int(divergence), s, t, *scratch, *params, True)
    c_run()
    for what, mine, ref in (
        ("student token log-probs", outs[0][:m], tok[0]),
        ("teacher token log-probs", outs[1][:m], tok[1]),
        ("values", outs[2][:m], values),
        ("logit gradients", x_in.s[:m], s),
    ):
        quantity = "grad" if what == "logit gradients" else "value"
        assert_close(mine, ref, tolerance(torch.float32, quantity), what=f"C kernel {what}")
    times = interleaved({"eager": eager_run, "c": c_run}, args.repeat)
    print(
        f"element-wise work of one {n} x {args.vocab} float32 chunk ({args.divergence}), torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads; eager in blocks of {rows} rows; "
        f"C kernel load/build {build_s:.2f} s; values and gradients checked"
    )
    print(_passes("eager fused kernel", times["eager"]))
    print(_passes("C kernel          ", times["c"]))
    ratio = statistics.median(times["c"]) / statistics.median(times["eager"])
    print(f"C kernel / eager: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=32768)
    parser.add_argument("--repeat", type=int, help="calls per round (500), or rounds with --blocks (5)")
    parser.add_argument("--blocks", type=int, nargs="+", help="time one chunk's element-wise work per block")
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--divergence", default="SKL", choices=[d.name for d in Divergence])
    parser.add_argument("--inductor", action="store_true", help="eager kernel against torch.compile")
    parser.add_argument("--c-kernel", action="store_true", help="eager kernel against kernel='compiled'")
    args = parser.parse_args()
    if args.c_kernel:
        args.repeat = args.repeat or 5
        c_kernel_main(args)
        return
    if args.inductor:
        args.repeat = args.repeat or 5
        inductor_main(args)
        return
    if args.blocks:
        args.repeat = args.repeat or 5
        blocks_main(args)
        return
    args.repeat = args.repeat or 500
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
        "softplus (allocates its output)": lambda: torch.nn.functional.softplus(z),
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
