"""``askd eval``: accuracy (or pass rate) of a model on a held-out prompt file with a quality signal."""

import argparse
from typing import Any

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
    p.add_argument("--model", required=True, help="local directory or hub id")
    p.add_argument("--tokenizer", default=None, help="default: --model")
    p.add_argument("--prompts", required=True, help="JSONL prompt file with reference answers or tests")
    p.add_argument("--quality", default="exact_match", help="quality signal name (default exact_match)")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--out", default=None, help="write the result (and per-prompt scores) as JSON here")
    p.add_argument("--skip-bad-lines", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from askd_ref.data import read_prompts
    from askd_ref.engine.evaluate import evaluate_model
    from askd_ref.engine.loading import load_causal_lm, load_tokenizer
    from askd_ref.io import atomic_write_json
    from askd_ref.quality import get_signal

    try:
        prompts = read_prompts(args.prompts, skip_bad_lines=args.skip_bad_lines)
        if args.skip_bad_lines and prompts.num_skipped:
            print(prompts.skipped_report())
        if not prompts:
            raise ValueError(f"{args.prompts} holds no prompts")
        signal = get_signal(args.quality)
        tokenizer = load_tokenizer(args.tokenizer or args.model)
        model = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
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
        )
    except ValueError as err:
        raise SystemExit(f"askd eval: {err}") from None
    print(
        f"{args.model}: {signal.name} {result.accuracy:.4f} ± {1.96 * result.stderr:.4f} (95% CI) "
        f"on n = {result.n} prompts"
    )
    if args.out:
        payload = {"model": args.model, "prompts": args.prompts, "quality": signal.name}
        payload.update(result.to_dict(with_items=True))
        atomic_write_json(args.out, payload)
    return 0
