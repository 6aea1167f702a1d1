"""``askd example DIR``: a tiny local teacher/student pair, data and a run file for a CPU quick start.

Nothing is downloaded: both models are small Llamas built from a ``transformers`` config with a
character tokenizer for two-digit additions (:mod:`askd_ref.toy`), saved with
``save_pretrained``. The teacher gets a short supervised fine-tuning so that its outputs mean
something, the student a shorter one. The folder
then holds everything ``askd generate``, ``askd distill`` and ``askd eval`` need, and the
commands to run are printed.
"""

import argparse
import json
import os
from pathlib import Path
from typing import Any

from askd_ref.commands._errors import UsageError

__all__ = ["register", "write_example"]

RUN_FILE = """\
# A CPU-sized ASKD run on the toy addition task (written by `askd example`).
# Relative paths are relative to this file.
teacher: teacher
student: student
data:
  train: [tgo.jsonl]            # written by the `askd generate --source teacher` step
  eval: test-prompts.jsonl
method: askd
quality: exact_match
sgo: {regime: on_policy, per_prompt: 1, max_new_tokens: 12, batch_size: 32}
loss: {path: chunked}
device: cpu
dtype: fp32
eval: {max_new_tokens: 12, batch_size: 64}
training:
  output_dir: out
  max_steps: 60
  per_device_train_batch_size: 16
  learning_rate: 2.0e-4
  lr_scheduler_type: constant
  logging_steps: 10
  save_strategy: steps
  save_steps: 20
  save_total_limit: 2
  seed: 0
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "example",
        help="write a tiny local teacher/student pair, data and a run file (CPU quick start)",
        description=(
            "Write into DIR a tiny teacher and student (small Llamas built locally, nothing downloaded; "
            "both briefly fine-tuned on two-digit additions, the student less), training and test prompts "
            "and a run file, so that askd generate, askd distill and askd eval run on a CPU in minutes. "
            "The commands to run next are printed."
        ),
    )
    p.add_argument("dir", metavar="DIR", help="folder to create (must not exist or be empty)")
    p.add_argument("--teacher-steps", type=int, default=800, help="fine-tuning steps of the teacher")
    p.add_argument("--student-steps", type=int, default=600, help="fine-tuning steps of the student")
    p.add_argument("--train-prompts", type=int, default=64, help="number of training prompts")
    p.add_argument("--test-prompts", type=int, default=64, help="number of held-out test prompts")
    p.add_argument("--seed", type=int, default=0, help="seed of the models and the data")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (default: show it)")
    p.set_defaults(func=run)


def write_example(
    directory: str | os.PathLike[str],
    *,
    teacher_steps: int = 800,
    student_steps: int = 600,
    train_prompts: int = 64,
    test_prompts: int = 64,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the example folder (see the module docstring) and return its path."""
    from askd_ref.toy import ToyTask, build_tokenizer, tiny_llama
    from askd_ref.toy.models import problem_batches, sft_train

    root = Path(directory)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UsageError(f"DIR {str(root)!r} exists and is not an empty folder; choose a new one")
    for name, value in (
        ("--teacher-steps", teacher_steps),
        ("--student-steps", student_steps),
        ("--train-prompts", train_prompts),
        ("--test-prompts", test_prompts),
    ):
        least = 0 if name.endswith("-steps") else 1
        if value < least:
            raise UsageError(f"{name} must be >= {least}, got {value}")
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    pool, test = ToyTask(width=2).split(seed=seed, n_eval=test_prompts)
    teacher = tiny_llama(tokenizer, hidden_size=48, num_layers=2, num_heads=4, seed=seed)
    if teacher_steps:
        batches = problem_batches(pool, 64, seed=f"example-{seed}")
        warmup = min(50, teacher_steps // 5)
        sft_train(
            teacher,
            tokenizer,
            batches,
            steps=teacher_steps,
            lr=2e-3,
            warmup=warmup,
            seed=seed,
            progress=progress,
            desc="example: fine-tune the teacher",
        )
    student = tiny_llama(tokenizer, hidden_size=32, num_layers=2, num_heads=4, seed=seed + 1)
    if student_steps:  # a student that already answers some prompts, as after a short SFT
        sft_train(
            student,
            tokenizer,
            problem_batches(pool, 64, seed=f"example-student-{seed}"),
            steps=student_steps,
            lr=3e-3,
            warmup=min(50, student_steps // 5),
            seed=seed + 1,
            progress=progress,
            desc="example: fine-tune the student",
        )
    for name, model in (("teacher", teacher), ("student", student)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    train = pool.draw(train_prompts, seed=f"example-train-{seed}")
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
            f"--n 2 --temperature 0.7 --max-new-tokens 12 --quality exact_match --out {d}/tgo.jsonl",
            f"  askd distill --config {d}/run.yaml",
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
    )
    print(next_steps(root))
    return 0
