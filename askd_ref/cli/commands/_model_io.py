"""What ``askd generate`` and ``askd eval`` share: the model/prompt/sampling arguments and loading."""

import argparse
import os
from typing import Any

from askd_ref.cli.commands._errors import UsageError

__all__ = ["add_model_arguments", "check_model_arguments", "load_prompts_and_model"]


def add_model_arguments(p: argparse.ArgumentParser, *, temperature: float, temperature_help: str) -> None:
    """The arguments that choose the model, the prompt file and how to sample from the model."""
    p.add_argument("--model", required=True, help="local directory or hub id of the causal LM")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory or hub id (default: --model)")
    p.add_argument("--prompts", required=True, help="JSONL prompt file (prompt, optional reference/tests)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="response length cap in tokens")
    p.add_argument("--temperature", type=float, default=temperature, help=temperature_help)
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus size (default 1 = off)")
    p.add_argument(
        "--seed", type=int, default=0, help="sampling seed (each response is seeded by it and its prompt)"
    )
    p.add_argument("--batch-size", type=int, default=32, help="prompts per generation batch")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "bf16", "fp16"), help="model weight precision")
    p.add_argument("--skip-bad-lines", action="store_true", help="skip malformed prompt lines (counted)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")


def load_prompts_and_model(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """Read the prompt file (reporting skipped lines) and load the tokenizer and the model.

    Raises ``ValueError`` naming the file when it holds no prompts.
    """
    from askd_ref.engine.data import read_prompts
    from askd_ref.engine.loading import load_causal_lm, load_tokenizer

    check_model_arguments(args)
    prompts = read_prompts(args.prompts, skip_bad_lines=args.skip_bad_lines)
    if args.skip_bad_lines and prompts.num_skipped:
        print(prompts.skipped_report())
    if not prompts:
        raise ValueError(f"{args.prompts} holds no prompts")
    tokenizer = load_tokenizer(args.tokenizer or args.model)
    model = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    return prompts, tokenizer, model


def check_model_arguments(args: argparse.Namespace) -> None:
    """Check the arguments :func:`add_model_arguments` adds before anything is loaded.

    Raises :class:`UsageError` naming the option: a missing prompt file, a local model or
    tokenizer directory that does not exist (never sent to the hub), a device that is not
    available, or a non-positive count.
    """
    from askd_ref.engine.loading import resolve_device
    from askd_ref.engine.paths import check_model_path

    if not os.path.isfile(args.prompts):
        raise UsageError(f"--prompts: no such file {args.prompts!r}")
    for option, value in (("--model", args.model), ("--tokenizer", args.tokenizer)):
        if value is not None:
            try:
                check_model_path(value)
            except (FileNotFoundError, ValueError) as err:
                raise UsageError(f"{option}: {err}") from None
    try:
        resolve_device(args.device)
    except ValueError as err:
        raise UsageError(f"--device: {err}") from None
    for option in ("max_new_tokens", "batch_size", "n"):
        value = getattr(args, option, None)
        if value is not None and value < 1:
            raise UsageError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.temperature < 0 or not 0 < args.top_p <= 1:
        got = f"got {args.temperature} and {args.top_p}"
        raise UsageError(f"need --temperature >= 0 and 0 < --top-p <= 1, {got}")
