"""``askd example DIR``: a tiny local teacher/student pair, data and a run file for a CPU quick start.

Nothing is downloaded: both models are small Llamas built from a ``transformers`` config with a
character tokenizer for two-digit additions (:mod:`askd_ref.toy`), saved with
``save_pretrained``. They are the teacher and the SFT student of ``askd demo`` (same stages,
stopping rules and guards, same seed): the teacher is trained on solutions with a systematic
dropped carry until it reproduces them (right on ≈ 83 % of problems), the student by SFT until
it answers 30 % of unseen problems. The folder then holds everything ``askd generate``,
``askd distill`` and ``askd eval`` need, with the demo's distillation settings in the run file,
and the commands to run are printed.
"""

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from askd_ref.cli.commands._errors import UsageError

__all__ = ["register", "write_example"]

RUN_FILE = """\
# A CPU-sized ASKD run on the toy addition task (written by `askd example`): the distillation
# settings of `askd demo`. Relative paths are relative to this file.
teacher: teacher
student: student
data:
  train: [tgo.jsonl]            # written by the `askd generate --source teacher` step
  eval: test-prompts.jsonl
method: askd
quality: exact_match
sgo: {regime: on_policy, per_prompt: 1, max_new_tokens: 12, batch_size: 256}
loss: {path: chunked}
device: cpu
dtype: fp32
eval: {max_new_tokens: 12, batch_size: 256}
training:
  output_dir: out
  max_steps: 200
  per_device_train_batch_size: 32
  learning_rate: 1.0e-3
  lr_scheduler_type: cosine
  warmup_steps: 10
  logging_steps: 20
  save_strategy: steps
  save_steps: 50
  save_total_limit: 2
  seed: 0
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "example",
        help="write a tiny local teacher/student pair, data and a run file (CPU quick start)",
        description=(
            "Write into DIR the teacher and SFT student of askd demo (small Llamas built locally, nothing "
            "downloaded, trained to their targets in about a minute), training and test prompts and a run "
            "file, so that askd generate, askd distill and askd eval run on a CPU in minutes. The commands "
            "to run next are printed."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder to create (must not exist or be empty)")
    p.add_argument(
        "--teacher-steps", type=int, default=3000,
        help="step cap of the teacher's fine-tuning; it stops once it reproduces its data (default: 3000)",
    )
    p.add_argument(
        "--student-steps", type=int, default=2000,
        help="step cap of the student's fine-tuning; it stops at 30%% dev accuracy (default: 2000)",
    )
    p.add_argument("--train-prompts", type=int, default=512, help="number of training prompts (default: 512)")
    p.add_argument(
        "--test-prompts", type=int, default=500,
        help="number of held-out test prompts (default: 500, at most 1000)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the models and the data (default: 0)")
    p.add_argument(
        "--allow-miss", action="store_true",
        help="write the models even if a stage misses its target (default: stop with an error)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")
    p.set_defaults(func=run)


def write_example(
    directory: str | os.PathLike[str],
    *,
    teacher_steps: int = 3000,
    student_steps: int = 2000,
    train_prompts: int = 512,
    test_prompts: int = 500,
    seed: int = 0,
    progress: bool = True,
    allow_miss: bool = False,
) -> Path:
    """Write the example folder (see the module docstring) and return its path.

    A stage that misses its target raises :class:`askd_ref.toy.pipeline.StageMissed` (one line
    saying what to try) unless ``allow_miss``; nothing is written then.
    """
    from askd_ref.toy.pipeline import ToySettings, make_setup, train_student_sft, train_teacher

    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"DIR {str(root)!r} exists and is not an empty folder; choose a new one")
    settings = ToySettings()
    for name, value, most in (
        ("--teacher-steps", teacher_steps, None),
        ("--student-steps", student_steps, None),
        ("--train-prompts", train_prompts, None),
        ("--test-prompts", test_prompts, settings.n_eval),
    ):
        if value < 1 or (most is not None and value > most):
            bound = f"between 1 and {most}" if most is not None else ">= 1"
            raise UsageError(f"{name} must be {bound}, got {value}")
    settings = dataclasses.replace(settings, teacher_max_steps=teacher_steps, student_sft_steps=student_steps)
    setup = make_setup(settings, seed=seed)  # the demo's split: the test prompts are its held-out problems
    train_teacher(setup, teacher_seed=seed, progress=progress, allow_miss=allow_miss)
    train_student_sft(setup, progress=progress, allow_miss=allow_miss)
    root.mkdir(parents=True, exist_ok=True)
    if not progress:
        import transformers

        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # shard bar
    for name, model in (("teacher", setup.teacher), ("student", setup.student)):
        model.save_pretrained(root / name)
        setup.tokenizer.save_pretrained(root / name)
    train = setup.pool.distinct(train_prompts, seed=f"prompts-{seed}")  # the demo's distillation prompts
    test = setup.eval_problems[:test_prompts]
    for file, problems in (("train-prompts.jsonl", train), ("test-prompts.jsonl", test)):
        with open(root / file, "w", encoding="utf-8") as f:
            for problem in problems:
                f.write(json.dumps({"prompt": problem.prompt, "reference": problem.reference}) + "\n")
    (root / "run.yaml").write_text(RUN_FILE, encoding="utf-8")
    return root


def next_steps(root: Path) -> str:
    """The commands that run the example, one per line."""
    d = str(root)
    return "\n".join(
        [
            f"wrote a tiny teacher and student, prompts and a run file to {d}; next:",
            f"  askd generate --model {d}/teacher --prompts {d}/train-prompts.jsonl --source teacher "
            f"--n 1 --temperature 1.0 --max-new-tokens 12 --quality exact_match --out {d}/tgo.jsonl",
            f"  askd distill --config {d}/run.yaml",
            f"  askd eval --model {d}/student --prompts {d}/test-prompts.jsonl --max-new-tokens 12",
            f"  askd eval --model {d}/out/final --prompts {d}/test-prompts.jsonl --max-new-tokens 12",
            f"  askd eval --model {d}/teacher --prompts {d}/test-prompts.jsonl --max-new-tokens 12",
        ]
    )


def run(args: argparse.Namespace) -> int:
    root = write_example(
        args.dir,
        teacher_steps=args.teacher_steps,
        student_steps=args.student_steps,
        train_prompts=args.train_prompts,
        test_prompts=args.test_prompts,
        seed=args.seed,
        progress=not args.no_progress,
        allow_miss=args.allow_miss,
    )
    print(next_steps(root))
    return 0
