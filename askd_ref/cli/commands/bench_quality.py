"""``askd bench quality``: every method on the toy task over seeds, paired tests, option sweep.

Registered into the ``askd bench`` group by :mod:`askd_ref.cli.commands.bench` (``register`` takes
the group's sub-parsers). See :mod:`askd_ref.bench.quality` for the protocol.
"""

import argparse
from typing import Any

__all__ = ["register"]


def register(bench_subparsers: Any) -> None:
    p = bench_subparsers.add_parser(
        "quality",
        help="accuracy of every distillation method on the toy task (seeds, paired tests, option sweep)",
        description=(
            "Train one teacher; per seed, one SFT student and one TGO set; distil with every method and "
            "every ASKD option variant under equal step and sample budgets; report mean ± std accuracy and "
            "paired comparisons of askd against each baseline. Finished runs are cached in OUT/runs, so an "
            "interrupted benchmark resumes."
        ),
    )
    p.add_argument(
        "--out", required=True, help="output directory (quality-bench.json, quality-bench.png, runs/)"
    )
    p.add_argument("--seeds", type=int, default=6, help="number of seeds, 0..N-1 (default 6)")
    p.add_argument("--methods", default=None, help="comma-separated subset of methods (default: all)")
    p.add_argument(
        "--sweep",
        default="lr",
        help="comma-separated sweeps to run besides the methods: options (the §9 option sweep), lr "
        "(3-point learning-rate sweep of askd and distillm2), gates (gate and schedule variants), or none "
        "(default: lr)",
    )
    p.add_argument(
        "--quality",
        default="exact_match",
        choices=("exact_match", "digit_credit"),
        help="quality signal of the distillation: exact_match (r in {0,1}, default) or digit_credit (graded)",
    )
    p.add_argument(
        "--steps", type=int, default=None, help="distillation steps per run (default 200, as in the demo)"
    )
    p.add_argument("--docs", default=None, help="also rewrite the measured section of this Markdown file")
    p.add_argument("--figure", default=None, help="where the docs plot goes (default docs/figures/...)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    import transformers

    from askd_ref.bench.quality import BENCH_SETTINGS, SWEEPS, run_bench
    from askd_ref.methods import METHODS
    from askd_ref.toy.demo import check_device
    from askd_ref.toy.pipeline import StageMissed

    torch.set_num_threads(max(1, args.threads))
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    methods = (
        METHODS if args.methods is None else tuple(m.strip() for m in args.methods.split(",") if m.strip())
    )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"askd bench quality: unknown method(s) {unknown}; choose from {METHODS}")
    if args.seeds < 1:
        raise SystemExit("askd bench quality: --seeds must be >= 1")
    names = [n.strip() for n in args.sweep.split(",") if n.strip() and n.strip() != "none"]
    bad = [n for n in names if n not in SWEEPS]
    if bad:
        raise SystemExit(f"askd bench quality: unknown sweep(s) {bad}; choose from {sorted(SWEEPS)} or none")
    sweep = [v for n in names for v in SWEEPS[n]]
    if len({v.name for v in sweep}) != len(sweep):
        sweep = list({v.name: v for v in sweep}.values())
    settings = dataclasses.replace(BENCH_SETTINGS, quality=args.quality)
    if args.steps is not None:
        if args.steps < 1:
            raise SystemExit("askd bench quality: --steps must be >= 1")
        settings = dataclasses.replace(settings, distill_steps=args.steps)
    try:
        check_device(args.device, args.dtype)
        summary = run_bench(
            args.out,
            settings=settings,
            seeds=tuple(range(args.seeds)),
            methods=methods,
            sweep=sweep,
            device=args.device,
            dtype=args.dtype,
            progress=not args.no_progress,
            docs=args.docs,
            figure=args.figure,
        )
    except StageMissed as err:
        print(f"askd bench quality: {err}", flush=True)
        return 1
    except ValueError as err:
        raise SystemExit(f"askd bench quality: {err}") from None
    t = summary["table"]
    print(f"\n{'variant':<28}{'mean':>8}{'std':>8}")
    for name in [*summary["main"], *summary["sweep"]]:
        print(f"{name:<28}{t[name]['mean']:>8.3f}{t[name]['std']:>8.3f}")
    print(f"\nwrote {args.out}/quality-bench.json and quality-bench.png")
    return 0
