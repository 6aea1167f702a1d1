"""``askd bench step``: where the time of one ASKDTrainer step goes, and SGO generation speed.

::

    askd bench step --out runs/bench-step                      # toy models and Qwen2.5-0.5B's shape
    askd bench step --out runs/bench-step --models toy         # the toy models only (seconds)
    askd bench step --out runs/bench-step --device cuda --bf16 # on a GPU, bf16 autocast

One on-policy ASKD step (chunked loss, SGD) split into SGO generation, quality scoring, teacher
forward, student forward, loss, backward, optimizer and the rest, as the median over the timed
steps after the warm-up ones; and generated tokens per second of askd-ref's sampler against
``model.generate`` with the same sampling. Writes ``step-bench.json`` (every step, the settings,
the machine's load average at start and end) and ``step-bench.md`` (the tables). What is timed
and how: :mod:`askd_ref.bench.step` and ``docs/benchmarks.md``.
"""

import argparse
import sys
from pathlib import Path


def register(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add ``bench step``."""
    parser = subparsers.add_parser(
        "step",
        help="time of one trainer step by phase (generation, forwards, loss, backward, optimizer)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument(
        "--models", default="toy,qwen0.5b", help="comma-separated: toy, qwen0.5b (default both)"
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (TrainingArguments(bf16=True))")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed first steps (default 1)")
    parser.add_argument("--prompts", type=int, default=None, help="prompts per step (default: toy 4, qwen 2)")
    parser.add_argument("--sgo-per-prompt", type=int, default=2, help="SGOs per prompt (default 2)")
    parser.add_argument(
        "--max-new-tokens", type=int, default=None, help="SGO length limit (default: toy 16, qwen 8)"
    )
    parser.add_argument("--layers", type=int, default=None, help="decoder layers of both models (dry runs)")
    parser.add_argument("--no-generation", action="store_true", help="skip the generation throughput")
    parser.set_defaults(func=run)


def _positive(name: str, value: int | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def run(args: argparse.Namespace) -> int:
    """Run the step benchmark and print its tables."""
    from askd_ref.bench.step import StepSettings, run_step_bench

    try:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        for m in models:
            if m not in ("toy", "qwen0.5b"):
                raise ValueError(f"--models: expected toy and/or qwen0.5b, got {m!r}")
        _positive("--steps", args.steps)
        _positive("--warmup", args.warmup, 0)
        _positive("--prompts", args.prompts)
        _positive("--sgo-per-prompt", args.sgo_per_prompt)
        _positive("--max-new-tokens", args.max_new_tokens)
        _positive("--layers", args.layers)
        defaults = {"toy": (4, 16), "qwen0.5b": (2, 8)}
        settings = {
            m: StepSettings(
                prompts=args.prompts or defaults[m][0],
                sgo_per_prompt=args.sgo_per_prompt,
                max_new_tokens=args.max_new_tokens or defaults[m][1],
                steps=args.steps,
                warmup=args.warmup,
                bf16=args.bf16,
            )
            for m in models
        }
        run_step_bench(
            args.out,
            models=models,
            settings=settings,
            device=args.device,
            layers=args.layers,
            generation=not args.no_generation,
        )
    except ValueError as exc:
        print(f"askd bench step: {exc}", file=sys.stderr)
        return 2
    print((args.out / "step-bench.md").read_text(encoding="utf-8"))
    print(f"wrote {args.out / 'step-bench.json'}")
    return 0
