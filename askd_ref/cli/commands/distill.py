"""``askd distill --config FILE.yaml``: distil a teacher into a student (see :mod:`askd_ref.engine.run`)."""

import argparse
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "distill",
        help="distil a teacher into a student with ASKD or a baseline (YAML config)",
        description=(
            "Train a student with ASKDTrainer as described by a YAML file: teacher and student (local "
            "directory or hub id), data files, method, options, quality signal, SGO regime, device, dtype "
            "and TrainingArguments. Works under `accelerate launch` (DDP)."
        ),
    )
    p.add_argument("--config", required=True, help="YAML run file (see docs/engine.md)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=None,
        metavar="CHECKPOINT",
        help="continue from the last complete checkpoint in output_dir, or from the CHECKPOINT folder "
        "(default: start fresh)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="delete the checkpoints and final model an earlier run left in output_dir, then start fresh "
        "(default: refuse to start when there are any)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: show them)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from askd_ref.engine.run import load_run_config, run_distill

    config = load_run_config(args.config)
    run_distill(
        config, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress, announce=True
    )
    return 0
