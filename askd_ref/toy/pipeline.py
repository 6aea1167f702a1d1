"""The toy distillation pipeline shared by ``askd demo`` and ``askd bench quality``.

1. :func:`train_teacher` — a small Llama trained from scratch by SFT on solutions with a
   systematic flaw (:class:`~askd_ref.toy.task.CarryFlaw`), until it reproduces its own training
   data on unseen dev problems (``teacher_fit_target``). It is imperfect by its data — right on
   ≈ 83 % of problems — not by being stopped early, so its accuracy does not depend on when a
   loss plateau ends (which varies with the CPU's floating-point reduction order).
2. :func:`train_student_sft` — a smaller Llama, briefly SFT-trained on reference solutions until
   its dev accuracy reaches ``student_target`` (the common starting point of every method).
3. :func:`teacher_outputs` — TGOs sampled from the teacher for the distillation prompts.
4. :func:`distill` — :class:`~askd_ref.trainer.ASKDTrainer` with one method from that start, with
   the same prompts, TGOs, steps and batch size for every method.
5. :func:`evaluate` — greedy accuracy on the held-out problems (exact match).

Every stage is deterministic given :class:`ToySettings`, a seed and a float environment (CPU
capability, threads). Each stage with a stopping rule records a :class:`StageRecord`; one that
misses its target raises :class:`StageMissed` (one line: the stage, the target, what was reached,
what to try) unless the caller allows misses, in which case the record says so and the results
are marked invalid.
"""

import copy
import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.data import Prompt
from askd_ref.engine.evaluate import EvalResult, evaluate_model
from askd_ref.engine.generation import generate
from askd_ref.engine.items import PromptItem, Response
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.methods import METHOD_NEEDS
from askd_ref.options import ASKDOptions
from askd_ref.quality import QualitySignal, get_signal
from askd_ref.quality.math import ExactMatch
from askd_ref.toy.models import Check, problem_batches, sft_train, tiny_llama
from askd_ref.toy.task import CarryFlaw, Problem, ProblemPool, ToyTask
from askd_ref.toy.tokenizer import build_tokenizer

__all__ = [
    "PRESETS",
    "SMOKE_SETTINGS",
    "DistillResult",
    "ModelSize",
    "StageMissed",
    "StageRecord",
    "ToySettings",
    "ToySetup",
    "distill",
    "evaluate",
    "make_setup",
    "prompt_items",
    "teacher_outputs",
    "train_student_sft",
    "train_teacher",
]


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """Size of a tiny Llama."""

    hidden_size: int
    num_layers: int
    num_heads: int


@dataclasses.dataclass(frozen=True)
class ToySettings:
    """Every knob of the toy pipeline (defaults: the ``askd demo`` configuration)."""

    width: int = 2
    """Digits per operand of the addition task."""
    n_eval: int = 1000
    """Held-out evaluation problems (greedy decoding, scored by exact match)."""
    n_dev: int = 200
    """Dev problems for the SFT stopping rules: drawn from the training pool and then removed
    from it, so they measure accuracy on unseen problems."""
    flaw: CarryFlaw = CarryFlaw()  # noqa: RUF009  (frozen dataclass: an immutable default)
    """The systematic error in the teacher's training data (sets the teacher's accuracy)."""
    teacher: ModelSize = ModelSize(64, 2, 4)
    teacher_max_steps: int = 3000
    """Step cap of the teacher's SFT; reaching it without the target stops the run."""
    teacher_lr: float = 3e-3
    teacher_fit_target: float = 0.97
    """The teacher trains until its greedy answers on the dev problems match its (flawed)
    training data on this fraction of them: it has learned its data, flaw included."""
    teacher_check_every: int = 50
    teacher_min_steps: int = 200
    teacher_band: tuple[float, float] = (0.75, 0.90)
    """Expected held-out accuracy of a teacher that has learned its data (1 − the flaw's share,
    0.83, up to the fit target's slack); outside it the stage is reported as missed."""
    student: ModelSize = ModelSize(32, 2, 4)
    student_sft_steps: int = 2000
    """Step cap of the student's SFT; reaching it without the target stops the run."""
    student_lr: float = 3e-3
    student_target: float | None = 0.3
    """The student's SFT stops once its dev accuracy reaches this (``None``: run all steps,
    no stopping rule)."""
    student_min_steps: int = 150
    """First step at which the student's stopping rule is checked."""
    student_check_every: int = 25
    sft_batch_size: int = 64
    n_prompts: int = 512
    """Distinct distillation prompts (from the training pool)."""
    tgo_per_prompt: int = 1
    tgo_temperature: float = 1.0
    """Sampling temperature of the teacher's outputs (1: the teacher's own distribution)."""
    quality: str = "exact_match"
    """Quality signal of the distillation (``"exact_match"``: r ∈ {0, 1}; ``"digit_credit"``:
    graded partial credit). Evaluation always uses exact match."""
    distill_steps: int = 200
    distill_batch_size: int = 32
    """Prompts per optimizer step (each brings its TGOs and ``sgo_per_prompt`` SGOs)."""
    distill_lr: float = 1e-3
    sgo_per_prompt: int = 1
    sgo_regime: str = "on_policy"
    sgo_temperature: float = 1.0
    loss_path: str = "chunked"
    max_new_tokens: int = 12
    warmup_steps: int = 10
    min_gain: float | None = 0.10
    """Smallest accepted gain of ASKD over the SFT start (checked and printed by the demo;
    ``None``: not checked, e.g. for the short smoke preset)."""


#: A reduced configuration for a quick check of the stages and their guards (``askd demo
#: --preset smoke``, the CI pipeline test): the demo's task, models, stopping rules and targets,
#: with fewer evaluation problems and a short distillation (whose gain is not checked).
SMOKE_SETTINGS = ToySettings(n_eval=400, n_prompts=64, distill_steps=10, min_gain=None)

#: The named presets of ``askd demo --preset``.
PRESETS: dict[str, ToySettings] = {"demo": ToySettings(), "smoke": SMOKE_SETTINGS}


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """The outcome of one stage's stopping rule (written to ``results.json``)."""

    stage: str
    metric: str
    """What the rule reads (e.g. ``"dev fit to its training data"``)."""
    target: float
    value: float
    """The last value the rule read (at ``steps``)."""
    steps: int
    cap: int
    reached: bool
    """Whether the rule's target was reached within the cap (and any band held)."""
    note: str = ""


class StageMissed(RuntimeError):
    """A stage with a stopping rule missed its target: the run's results would not be valid.

    The message is one line naming the stage, the target, what was reached and what to try.
    """

    def __init__(self, record: StageRecord, hint: str) -> None:
        self.record = record
        super().__init__(
            f"{record.stage}: target not reached — {record.metric} {record.value:.3f} after "
            f"{record.steps} of {record.cap} steps, target {record.target:.3f}"
            f"{'; ' + record.note if record.note else ''}. Try: {hint}"
        )


@dataclasses.dataclass
class ToySetup:
    """What every method of one seed shares: tokenizer, teacher, SFT student, data."""

    settings: ToySettings
    seed: int
    tokenizer: Any
    task: ToyTask
    pool: ProblemPool
    eval_problems: list[Problem]
    teacher: Any = None
    teacher_eval: EvalResult | None = None
    teacher_steps: int = 0
    student: Any = None
    student_steps: int = 0
    student_eval: EvalResult | None = None
    items: list[PromptItem] = dataclasses.field(default_factory=list)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    stages: dict[str, StageRecord] = dataclasses.field(default_factory=dict)
    """Stopping-rule outcomes by stage name (``"teacher"``, ``"student"``)."""


def make_setup(settings: ToySettings, *, seed: int = 0, split_seed: int | None = None) -> ToySetup:
    """Tokenizer, task and the held-out split (nothing trained yet).

    ``split_seed`` (default ``seed``) fixes the held-out problems; the benchmark keeps it at 0
    for every seed so that all seeds are evaluated on the same problems the teacher never saw.
    """
    task = ToyTask(width=settings.width)
    pool, eval_problems = task.split(seed=seed if split_seed is None else split_seed, n_eval=settings.n_eval)
    return ToySetup(settings, seed, build_tokenizer(), task, pool, eval_problems)


def evaluate(setup: ToySetup, model: Any, *, progress: bool = False, desc: str = "eval") -> EvalResult:
    """Greedy exact-match accuracy of ``model`` on the held-out problems."""
    return evaluate_model(
        model,
        setup.tokenizer,
        [p.to_prompt() for p in setup.eval_problems],
        ExactMatch(),
        max_new_tokens=setup.settings.max_new_tokens,
        progress=progress,
        desc=desc,
    )


def _autocast(dtype: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)


def _accuracy(model: Any, setup: ToySetup, prompts: Sequence[Prompt]) -> float:
    """Greedy exact-match accuracy on ``prompts`` (a stopping rule's check); leaves ``model`` training."""
    acc = evaluate_model(
        model, setup.tokenizer, prompts, ExactMatch(), max_new_tokens=setup.settings.max_new_tokens
    ).accuracy
    model.train()
    return acc


def _finish_stage(setup: ToySetup, record: StageRecord, hint: str, *, allow_miss: bool) -> StageRecord:
    setup.stages[record.stage] = record
    if not record.reached and not allow_miss:
        raise StageMissed(record, hint)
    return record


@dataclasses.dataclass(frozen=True)
class _SFTStage:
    """One SFT stage with a stopping rule: what differs between the teacher and the student."""

    desc: str
    size: ModelSize
    init_seed: int
    dev: list[Prompt]
    """Unseen problems the rule reads (their references: what the stage should reproduce)."""
    batches: Callable[[int], list[tuple[str, str]]]
    cap: int
    lr: float
    target: float | None
    min_steps: int
    check_every: int
    metric_name: str
    train_seed: int


def _sft_stage(
    setup: ToySetup, stage: _SFTStage, *, device: str, dtype: str, progress: bool
) -> tuple[Any, int, float]:
    """Build a fresh tiny Llama and SFT-train it until ``stage.target`` (checked on ``stage.dev``
    every ``check_every`` steps from ``min_steps`` on) or the cap.

    Returns the model (in eval mode), the steps taken and the rule's last reading.
    """
    model = tiny_llama(
        setup.tokenizer,
        hidden_size=stage.size.hidden_size,
        num_layers=stage.size.num_layers,
        num_heads=stage.size.num_heads,
        seed=stage.init_seed,
    )
    last = [0.0]

    def rule(step: int) -> Check:
        if stage.target is None or step < stage.min_steps:
            return Check(last[0], False)
        last[0] = _accuracy(model, setup, stage.dev)
        return Check(last[0], last[0] >= stage.target)

    losses = sft_train(
        model,
        setup.tokenizer,
        stage.batches,
        steps=stage.cap,
        lr=stage.lr,
        device=device,
        autocast_dtype=_autocast(dtype),
        seed=stage.train_seed,
        progress=progress,
        desc=stage.desc,
        stop=rule,
        check_every=stage.check_every,
        metric_name=stage.metric_name,
    )
    return model, len(losses), last[0]


_HINT = "another --seed, or --allow-miss to continue with the results marked invalid"


def train_teacher(
    setup: ToySetup,
    *,
    teacher_seed: int = 0,
    device: str = "cpu",
    dtype: str = "fp32",
    progress: bool = True,
    allow_miss: bool = False,
) -> StageRecord:
    """Train the teacher from scratch on flawed solutions until it reproduces its data.

    The stopping rule reads the dev *fit*: the fraction of unseen dev problems on which the
    teacher's greedy answer equals its (flawed) training data's answer. Once it reaches
    ``teacher_fit_target`` the teacher has learned the task and the flaw; its held-out accuracy
    is then ≈ 1 − the flaw's share and must lie in ``teacher_band``. Missing either raises
    :class:`StageMissed` unless ``allow_miss``; the stage's record is returned (and kept in
    ``setup.stages``).
    """
    s = setup.settings
    t0 = time.perf_counter()
    dev_problems = setup.pool.distinct(s.n_dev, seed=f"dev-{teacher_seed}")
    train_pool = setup.pool.without(dev_problems)  # the stopping rule sees unseen problems only
    stage = _SFTStage(
        desc="teacher sft",
        size=s.teacher,
        init_seed=1000 + teacher_seed,
        dev=[Prompt(prompt=p.prompt, reference=str(p.flawed_answer(s.flaw))) for p in dev_problems],
        batches=problem_batches(train_pool, s.sft_batch_size, seed=f"teacher-{teacher_seed}", flaw=s.flaw),
        cap=s.teacher_max_steps,
        lr=s.teacher_lr,
        target=s.teacher_fit_target,
        min_steps=s.teacher_min_steps,
        check_every=s.teacher_check_every,
        metric_name="dev fit",
        train_seed=teacher_seed,
    )
    trained = _sft_stage(setup, stage, device=device, dtype=dtype, progress=progress)
    setup.teacher, setup.teacher_steps, fit = trained
    setup.timings["teacher_train_s"] = time.perf_counter() - t0
    setup.teacher_eval = evaluate(setup, setup.teacher, progress=progress, desc="eval teacher")
    fitted = fit >= s.teacher_fit_target
    lo, hi = s.teacher_band
    acc = setup.teacher_eval.accuracy
    in_band = lo <= acc <= hi
    note = "" if in_band or not fitted else f"held-out accuracy {acc:.3f} outside the band [{lo}, {hi}]"
    record = StageRecord(
        "teacher SFT", "dev fit to its training data", s.teacher_fit_target, fit,
        setup.teacher_steps, s.teacher_max_steps, fitted and in_band, note,
    )
    return _finish_stage(
        setup, record, f"a larger step cap (ToySettings.teacher_max_steps), {_HINT}", allow_miss=allow_miss
    )


def train_student_sft(
    setup: ToySetup,
    *,
    device: str = "cpu",
    dtype: str = "fp32",
    progress: bool = True,
    allow_miss: bool = False,
) -> StageRecord | None:
    """Initialise the student and train it briefly on reference solutions.

    Stops once its dev accuracy reaches ``student_target``; reaching the step cap first raises
    :class:`StageMissed` unless ``allow_miss``. Returns the stage's record (``None`` when
    ``student_target`` is ``None``: a fixed number of steps, no rule).
    """
    s = setup.settings
    t0 = time.perf_counter()
    dev_problems = setup.pool.distinct(s.n_dev, seed=f"dev-student-{setup.seed}")
    train_pool = setup.pool.without(dev_problems)
    stage = _SFTStage(
        desc="student sft",
        size=s.student,
        init_seed=2000 + setup.seed,
        dev=[p.to_prompt() for p in dev_problems],
        batches=problem_batches(train_pool, s.sft_batch_size, seed=f"student-{setup.seed}"),
        cap=s.student_sft_steps,
        lr=s.student_lr,
        target=s.student_target,
        min_steps=s.student_min_steps,
        check_every=s.student_check_every,
        metric_name="dev acc",
        train_seed=setup.seed,
    )
    trained = _sft_stage(setup, stage, device=device, dtype=dtype, progress=progress)
    setup.student, setup.student_steps, acc = trained
    setup.timings["student_sft_s"] = time.perf_counter() - t0
    setup.student_eval = evaluate(setup, setup.student, progress=progress, desc="eval student (SFT)")
    if s.student_target is None:
        return None
    record = StageRecord(
        "student SFT", "dev accuracy", s.student_target, acc, setup.student_steps, s.student_sft_steps,
        acc >= s.student_target,
    )
    return _finish_stage(
        setup, record, f"a larger step cap (ToySettings.student_sft_steps), {_HINT}", allow_miss=allow_miss
    )


def teacher_outputs(setup: ToySetup, *, progress: bool = True) -> None:
    """Sample the TGOs of the distillation prompts from the teacher and score them."""
    s = setup.settings
    t0 = time.perf_counter()
    problems = setup.pool.distinct(s.n_prompts, seed=f"prompts-{setup.seed}")
    gens = generate(
        setup.teacher,
        setup.tokenizer,
        [p.prompt for p in problems],
        n=s.tgo_per_prompt,
        temperature=s.tgo_temperature,
        max_new_tokens=s.max_new_tokens,
        seed=f"tgo-{setup.seed}",
        progress=progress,
        desc="teacher outputs",
    )
    setup.items = prompt_items(problems, gens, s.tgo_per_prompt, signal=get_signal(s.quality))
    setup.timings["tgo_generation_s"] = time.perf_counter() - t0


def prompt_items(
    problems: Sequence[Problem], gens: Sequence[Any], per_prompt: int, *, signal: QualitySignal | None = None
) -> list[PromptItem]:
    """Prompt rows with their TGOs, quality-scored by ``signal`` (default exact match)."""
    signal = signal or ExactMatch()
    items: list[PromptItem] = []
    for i, p in enumerate(problems):
        mine = gens[i * per_prompt : (i + 1) * per_prompt]
        samples = [p.to_sample(g.text, "teacher") for g in mine]
        scores = signal.score(samples)
        tgos = tuple(
            Response(text=g.text, token_ids=g.token_ids, quality=q) for g, q in zip(mine, scores, strict=True)
        )
        items.append(PromptItem(index=i, prompt=p.prompt, reference=p.reference, tgos=tgos))
    return items


@dataclasses.dataclass
class DistillResult:
    """One distillation run."""

    method: str
    model: Any
    eval: EvalResult
    log_history: list[dict[str, Any]]
    seconds: float


def distill(
    setup: ToySetup,
    method: str,
    *,
    options: ASKDOptions | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str = "cpu",
    dtype: str = "fp32",
    output_dir: str | None = None,
    progress: bool = True,
    evaluate_after: bool = True,
    lr: float | None = None,
) -> DistillResult:
    """Distil the teacher into a copy of the SFT student with ``method`` (same budget for all).

    ``overrides`` replaces fields of the :class:`ASKDConfig` built from the settings (e.g.
    ``{"sgo_regime": "batched"}``); ``lr`` replaces ``settings.distill_lr``.
    """
    from transformers import TrainingArguments

    s = setup.settings
    t0 = time.perf_counter()
    student = copy.deepcopy(setup.student)
    fields: dict[str, Any] = {
        "method": method,
        "options": options or ASKDOptions(),
        "quality": s.quality,
        "sgo_regime": s.sgo_regime if METHOD_NEEDS[method].sgo else "none",
        "sgo_per_prompt": s.sgo_per_prompt,
        "temperature": s.sgo_temperature,
        "max_new_tokens": s.max_new_tokens,
        "loss_path": s.loss_path,
        "generation_batch_size": 256,
    }
    fields.update(overrides or {})
    config = ASKDConfig(**fields)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=output_dir or os.path.join(tmp, "run"),
            per_device_train_batch_size=s.distill_batch_size,
            max_steps=s.distill_steps,
            learning_rate=s.distill_lr if lr is None else lr,
            lr_scheduler_type="cosine",
            warmup_steps=s.warmup_steps,
            weight_decay=0.0,
            logging_steps=10,
            save_strategy="no",
            report_to=[],
            seed=setup.seed if seed is None else seed,
            use_cpu=device == "cpu",
            bf16=dtype == "bf16",
            fp16=dtype == "fp16",
            disable_tqdm=not progress,
            dataloader_num_workers=0,
        )
        trainer = ASKDTrainer(
            model=student,
            teacher=setup.teacher,
            args=args,
            config=config,
            train_dataset=setup.items,
            processing_class=setup.tokenizer,
        )
        quiet_trainer_output(trainer, progress=progress)
        trainer.train()
        history = list(trainer.state.log_history)
    student.eval()
    seconds = time.perf_counter() - t0
    result = evaluate(setup, student, progress=progress, desc=f"eval {method}") if evaluate_after else None
    assert result is not None or not evaluate_after
    return DistillResult(method, student, result if result is not None else _empty_eval(), history, seconds)


def quiet_trainer_output(trainer: Any, *, progress: bool) -> None:
    """Keep a trainer's tqdm bar (when ``progress``) but stop it printing every log dict."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class _BarOnly(ProgressCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            return None

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(_BarOnly())


def _empty_eval() -> EvalResult:
    return EvalResult(accuracy=float("nan"), n=0, stderr=float("nan"), scores=(), responses=())

