"""``askd demo``: the main job on the embedded toy task (see :mod:`askd_ref.toy.demo`)."""

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a teacher and a student on the toy task, distil with ASKD and DistiLLM-2",
        description=(
            "Train an imperfect teacher from scratch, a smaller student by brief SFT, then distil with "
            "ASKD and DistiLLM-2 from the same start; writes results.json, results.png and the models."
        ),
    )
    p.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="bf16/fp16 need a GPU")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default: 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the tiny models are overhead-bound, and one thread "
        "is not slowed by other processes sharing the cores)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    import transformers

    from askd_ref.toy.demo import run_demo

    if args.threads < 1:
        raise SystemExit("askd demo: --threads must be >= 1")
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        run_demo(
            args.out, seed=args.seed, device=args.device, dtype=args.dtype, progress=not args.no_progress
        )
    except ValueError as err:
        raise SystemExit(f"askd demo: {err}") from None
    return 0
