"""``askd generate``: sample TGO or SGO files from a prompt file with a given model.

Each output line is a spec §8 sample record with ``behaviour_logprob`` (Σ_t log μ(y_t|c_t) under
the sampler actually used, for E13) and, in its extra fields, the exact ``response_ids`` and
``finished`` (see :func:`askd_ref.engine.generation.generate_samples`). With ``--quality`` each sample is
scored and its ``quality`` written.
"""

import argparse
from typing import Any

from askd_ref.cli.commands._model_io import add_model_arguments, load_prompts_and_model

__all__ = ["register"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "generate",
        help="sample teacher (TGO) or student (SGO) outputs for a prompt file",
        description="Sample responses for every prompt of a JSONL prompt file and write spec §8 samples.",
    )
    add_model_arguments(p, temperature=1.0, temperature_help="sampling temperature; 0 = greedy")
    p.add_argument("--out", required=True, help="output JSONL sample file (written atomically)")
    p.add_argument("--source", required=True, choices=("teacher", "student"), help="TGO or SGO file")
    p.add_argument("--n", type=int, default=1, help="samples per prompt (default 1)")
    p.add_argument("--quality", default=None, help="score samples with this signal (e.g. exact_match)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from askd_ref.engine.data import write_samples
    from askd_ref.engine.generation import generate_samples

    prompts, tokenizer, model = load_prompts_and_model(args)
    samples = generate_samples(
        model,
        tokenizer,
        prompts,
        source=args.source,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        desc=f"generate {args.source} outputs",
    )
    if args.quality:
        from askd_ref.quality import get_signal, validate_scores

        signal = get_signal(args.quality)
        scores = validate_scores(signal.name, samples, signal.score(samples))
        samples = [dataclasses.replace(s, quality=q) for s, q in zip(samples, scores, strict=True)]
    count = write_samples(args.out, samples)
    mean_q = ""
    if args.quality:
        mean_q = f", mean quality {sum(s.quality or 0.0 for s in samples) / len(samples):.3f}"
    print(f"wrote {count} {args.source} samples for {len(prompts)} prompts to {args.out}{mean_q}")
    return 0
