"""``askd demo``: the main job on the embedded toy task (see :mod:`askd_ref.toy.demo`)."""

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="train a teacher and a student on the toy task, distil with ASKD and DistiLLM-2",
        description=(
            "Train an imperfect teacher from scratch (on data with a systematic flaw), a smaller student by "
            "brief SFT, then distil with ASKD and DistiLLM-2 from the same start; writes results.json, "
            "results.png and the models. A stage that misses its target stops the run (exit 1). "
            "With --matrix, run the demo over seeds x float environments and check every cell."
        ),
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/demo, or runs/demo-matrix)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"),
                   help="fp32 (default); bf16/fp16 need a GPU")
    p.add_argument("--seed", type=int, default=0, help="seed of everything random (default: 0)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default 1: the tiny models are overhead-bound, and one thread "
        "is not slowed by other processes sharing the cores)",
    )
    p.add_argument("--quality", default="exact_match", choices=("exact_match", "digit_credit"),
                   help="quality signal of the distillation: exact_match (r in {0,1}, default) or "
                   "digit_credit (graded partial credit)")
    p.add_argument("--preset", default="demo", choices=("demo", "smoke"),
                   help="demo (default): the full run; smoke: the same stages and guards with fewer "
                   "evaluation problems and a short distillation (a quick check of a machine)")
    p.add_argument("--allow-miss", action="store_true",
                   help="continue when a stage misses its target; results are marked invalid")
    p.add_argument("--no-models", action="store_true", help="do not save the models (default: save them)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--matrix", action="store_true",
                   help="run the demo over --seeds seeds x 3 float environments (default kernels, "
                   "ATEN_CPU_CAPABILITY=avx2, 2 threads), one process per cell, and check each cell")
    p.add_argument("--seeds", type=int, default=5, help="with --matrix: seeds 0..N-1 (default: 5)")
    p.add_argument("--docs", default=None,
                   help="with --matrix: also write the table into this Markdown file's MATRIX section")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.threads < 1:
        raise SystemExit("askd demo: --threads must be >= 1")
    if args.matrix:
        return _matrix(args)
    import dataclasses

    import torch
    import transformers

    from askd_ref.toy.demo import run_demo
    from askd_ref.toy.pipeline import PRESETS, StageMissed

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    settings = dataclasses.replace(PRESETS[args.preset], quality=args.quality)
    try:
        run_demo(
            args.out or "runs/demo",
            settings=settings,
            seed=args.seed,
            device=args.device,
            dtype=args.dtype,
            progress=not args.no_progress,
            save_models=not args.no_models,
            allow_miss=args.allow_miss,
        )
    except StageMissed as err:
        print(f"askd demo: {err}", flush=True)
        return 1
    except ValueError as err:
        raise SystemExit(f"askd demo: {err}") from None
    return 0


def _matrix(args: argparse.Namespace) -> int:
    from askd_ref.toy.matrix import run_matrix

    if args.seeds < 1:
        raise SystemExit("askd demo: --seeds must be >= 1")
    extra = ["--quality", args.quality, "--preset", args.preset]
    if args.device != "cpu" or args.dtype != "fp32":
        raise SystemExit("askd demo: --matrix measures CPU float environments; use --device cpu --dtype fp32")
    out = args.out or "runs/demo-matrix"
    cells = run_matrix(out, seeds=range(args.seeds), extra_args=extra, docs=args.docs)
    failed = [c for c in cells if not c.passed]
    if failed:
        print(f"askd demo --matrix: {len(failed)} of {len(cells)} cells FAILED the acceptance", flush=True)
        return 1
    return 0
