"""``askd eval``: accuracy (or pass rate) of a model on a held-out prompt file with a quality signal."""

import argparse
from typing import Any

from askd_ref.cli.commands._model_io import add_model_arguments, load_prompts_and_model

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "eval",
        help="accuracy / pass rate of a model on held-out prompts under a quality signal",
        description=(
            "Generate one response per prompt (greedy unless --temperature > 0), score it with the "
            "quality signal and report the mean (accuracy for exact match, pass rate for unit tests)."
        ),
    )
    add_model_arguments(p, temperature=0.0, temperature_help="0 = greedy (default)")
    p.add_argument("--quality", default="exact_match", help="quality signal name (default exact_match)")
    p.add_argument("--out", default=None, help="write the result (and per-prompt scores) as JSON here")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from askd_ref.engine.evaluate import evaluate_model
    from askd_ref.io import atomic_write_json
    from askd_ref.quality import get_signal

    signal = get_signal(args.quality)
    prompts, tokenizer, model = load_prompts_and_model(args)
    result = evaluate_model(
        model,
        tokenizer,
        prompts,
        signal,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_p=args.top_p,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        desc=f"eval: generate and score ({signal.name})",
    )
    print(
        f"{args.model}: {signal.name} {result.accuracy:.4f} ± {1.96 * result.stderr:.4f} (95% CI) "
        f"on n = {result.n} prompts"
    )
    if args.out:
        payload = {"model": args.model, "prompts": args.prompts, "quality": signal.name}
        payload.update(result.to_dict(with_items=True))
        atomic_write_json(args.out, payload)
    return 0
