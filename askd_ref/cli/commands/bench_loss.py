"""``askd bench loss``: speed and memory of askd-ref's chunked loss against the full-logit peers.

::

    askd bench loss --out runs/bench-loss --quick # 4096 tokens, vocab 32768 (~6 minutes)
    askd bench loss --out runs/bench-loss         # {1024,4096,16384} tokens x vocab {32768,151936}

When ``liger-kernel`` is importable, the rows ``askd_chunked_gkd``, ``liger_jsd`` (eager) and
``liger_jsd_compiled`` (``torch.compile``) compare the same generalised JSD with Liger-Kernel's
chunked loss (``--no-liger`` skips them).

Writes ``loss-bench.json`` (one record per configuration and implementation:
``tokens, hidden, vocab, impl, time_s, peak_mb, device, kernel``, plus ``compile_s`` for a
compiled row), ``loss-bench-details.json`` (every repeat, baseline memory, ratios, the acceptance
checks, the environment and load average), ``loss-bench.md`` (the table) and
``loss-bench.png`` (the plot). What each implementation computes and how time and memory are
measured: :mod:`askd_ref.bench.loss` and ``docs/benchmarks.md``.
"""

import argparse
import json
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``bench loss``."""
    parser = subparsers.add_parser(
        "loss",
        help="loss forward+backward time and peak memory: askd chunked vs full-logit, DistiLLM-2, TRL GKD",
        description=(
            "Forward+backward time and peak memory of askd-ref's chunked loss against full-logit\n"
            "implementations (askd full, DistiLLM-2, TRL's GKD loss).\n\n"
            "  askd bench loss --out runs/bench-loss --quick # 4096 tokens, vocab 32768 (~6 minutes)\n"
            "  askd bench loss --out runs/bench-loss         # {1024,4096,16384} tokens x vocab\n"
            "                                                # {32768,151936}\n\n"
            "Writes loss-bench.json, loss-bench-details.json, loss-bench.md (the table) and\n"
            "loss-bench.png (the plot) into --out; docs/benchmarks.md explains the measurements.\n"
            "Needs TRL: pip install 'askd-ref[bench]'."
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4096 tokens and vocab 32768 only, fewer passes, no extra rows, and 5 interleaved rounds "
        "of the bounded time ratios (see --rounds)",
    )
    parser.add_argument(
        "--sizes",
        default=None,
        help="comma-separated TOKENSxVOCAB configurations instead of the default set, e.g. 8192x128256",
    )
    parser.add_argument("--hidden", type=int, default=512, help="hidden size of both models")
    parser.add_argument("--seq-len", type=int, default=512, help="tokens per sequence")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default="float32",
        help="dtype of hidden states and weights",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed passes per implementation (default 3; --quick: 3 for askd_chunked, floor, "
        "askd_chunked_gkd and liger_jsd_compiled, else 1)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="chunk size of askd_chunked (default: the library's default)",
    )
    _add_row_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _add_row_arguments(parser: argparse.ArgumentParser) -> None:
    """Which rows run and how: ``--kernel``, ``--rounds``, ``--no-extras``, ``--no-liger``, ``--impls``."""
    parser.add_argument(
        "--kernel",
        choices=["auto", "fused", "compiled"],
        default="auto",
        help="chunked_loss kernel of the askd-ref rows: fused (eager torch, chunked_loss's default and "
        "the reference), compiled (the C row kernel, float32 work on CPU, built at first use) or auto "
        "(the default: compiled on CPU when a C compiler builds it, else fused)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="also measure askd_chunked/floor and askd_chunked_gkd/liger_jsd_compiled with their passes "
        "interleaved in one process over this many rounds per configuration, and check those time "
        "bounds on the median per-round ratio (default 5 with --quick, else 0: off)",
    )
    parser.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the extra askd_seq_chunked row (always skipped by --quick)",
    )
    parser.add_argument(
        "--no-liger",
        action="store_true",
        help="skip the Liger rows (askd_chunked_gkd, liger_jsd, liger_jsd_compiled); "
        "they run by default when liger-kernel is importable",
    )
    parser.add_argument(
        "--impls",
        default=None,
        help="comma-separated implementations to run instead of the default set, e.g. askd_chunked,floor",
    )


def run(args: argparse.Namespace) -> int:
    """Run the benchmark, print the table and the acceptance checks."""
    import importlib.util

    from askd_ref.cli.commands._errors import UsageError, missing_extra

    if importlib.util.find_spec("trl") is None:  # TRL's GKD loss is one of the compared rows
        raise missing_extra(ModuleNotFoundError("No module named 'trl'", name="trl"), "askd bench loss")
    from askd_ref.bench.loss import run_loss_bench, target_lines

    try:
        sizes = None if args.sizes is None else _parse_sizes(args.sizes)
        records = run_loss_bench(
            args.out,
            quick=args.quick,
            sizes=sizes,
            hidden=args.hidden,
            seq_len=args.seq_len,
            device=args.device,
            dtype=args.dtype,
            repeats=args.repeats,
            chunk_size=args.chunk_size,
            kernel=args.kernel,
            extras=not (args.no_extras or args.quick),
            liger=False if args.no_liger else None,
            only=None if args.impls is None else [i.strip() for i in args.impls.split(",") if i.strip()],
            rounds=args.rounds,
            progress=not args.quiet,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    details = json.loads((args.out / "loss-bench-details.json").read_text(encoding="utf-8"))
    print((args.out / "loss-bench.md").read_text(encoding="utf-8"))
    kernel = details["kernel"]
    print(f"askd-ref rows: kernel {kernel['ran']} ({kernel['why']})")
    print("\n".join(target_lines(records, details.get("interleaved"))))
    print(f"wrote {args.out / 'loss-bench.json'} and {args.out / 'loss-bench.png'}")
    return 0


def _parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        tokens, sep, vocab = item.strip().lower().partition("x")
        if not sep or not tokens.isdigit() or not vocab.isdigit():
            raise ValueError(f"--sizes: expected TOKENSxVOCAB items such as 4096x32768, got {item!r}")
        sizes.append((int(tokens), int(vocab)))
    return sizes
