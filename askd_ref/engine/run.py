"""``askd distill --config FILE.yaml``: a distillation run described by one YAML file.

Schema (unknown keys are errors naming the key; ``docs/engine.md`` and ``configs/recipes/``
have complete examples)::

    teacher: Qwen/Qwen2.5-1.5B-Instruct   # local directory or hub id (passed to from_pretrained)
    student: Qwen/Qwen2.5-0.5B            # local directory or hub id
    tokenizer: null                       # default: the student's; must equal the teacher's
    data:
      train: [tgo.jsonl]                  # spec §8 sample files (TGOs; SGOs for sgo.regime offline)
      eval: test-prompts.jsonl            # optional: evaluated after training
      skip_bad_lines: false
      max_prompts: null                   # optional cap on training prompts
    method: askd                          # askd | askd-dense | seqkd | kd | rkl | gkd | distillm | ...
    options: {alpha_lo: 0.1, alpha_hi: 0.9, gate: soft}     # ASKDOptions fields (spec §9)
    quality: exact_match                  # quality signal name, or null
    quality_kwargs: {}
    sgo: {regime: on_policy, per_prompt: 1, temperature: 1.0, top_p: 1.0,
          max_new_tokens: 256, batch_size: 16, lmbda: null}   # lmbda: GKD's on-policy fraction
    loss: {path: chunked, chunk_size: 256, kernel: fused, temperature: 1.0, reduction: sample,
           alpha: null, beta: null, loss_type: null, eps_a: null, gradual_beta: false}
    device: cuda                          # cpu | cuda[:N]
    dtype: bf16                           # fp32 | bf16 | fp16: mixed precision (student weights fp32)
    teacher_dtype: null                   # dtype of the frozen teacher's weights (default: dtype)
    eval: {max_new_tokens: 256, batch_size: 32}
    training: {output_dir: runs/x, learning_rate: 1.0e-5, max_steps: 200, ...}  # TrainingArguments
    peft: {r: 16, lora_alpha: 32, target_modules: all-linear, merge: true}      # optional LoRA
    log_samples: {every: 50, count: 2}    # TGOs/SGOs with quality, Δ, α, coefficient → samples.jsonl

``training`` takes any :class:`transformers.TrainingArguments` field; ``output_dir`` is required.
``peft`` (optional, needs the ``peft`` extra) takes any ``peft.LoraConfig`` field and ``merge``
(default true): the student trains a LoRA adapter, ``<output_dir>/final`` holds the adapter and,
with ``merge``, ``<output_dir>/final-merged`` the merged model.
The final student and tokenizer are saved to ``<output_dir>/final``; metrics (train loss, and the
eval accuracy when ``data.eval`` is set) to ``<output_dir>/metrics.json`` (atomically).
"""

import contextlib
import dataclasses
import difflib
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_type_hints

from askd_ref.cli.commands._errors import RunInterrupted, UsageError, launch_rank
from askd_ref.engine.paths import check_model_path, last_checkpoint, resolve_model_path
from askd_ref.options import ASKDOptions

__all__ = ["DistillRunConfig", "end_distributed", "load_run_config", "run_distill"]

class _Unset:
    """The value of a run-file key that is absent (``None`` is a value a key can take)."""

    def __repr__(self) -> str:
        return "<unset>"


_UNSET: Any = _Unset()


@dataclasses.dataclass(frozen=True)
class _Sets:
    """Annotation of a run-file key that sets the :class:`ASKDConfig` field ``name``."""

    name: str


@dataclasses.dataclass(frozen=True)
class _Section:
    """A run-file mapping whose dataclass fields are its keys (absent keys stay ``_UNSET``)."""

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key)
        return default if value is _UNSET else value

    def given(self) -> dict[str, Any]:
        """The keys present in the file, with their values."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in values.items() if v is not _UNSET}

    def askd_fields(self) -> dict[str, Any]:
        """The present keys that set :class:`ASKDConfig` fields, under the field names."""
        hints = get_type_hints(type(self), include_extras=True)
        targets = {k: m.name for k, h in hints.items() for m in getattr(h, "__metadata__", ())}
        return {targets[k]: v for k, v in self.given().items() if k in targets}


@dataclasses.dataclass(frozen=True)
class _RunFile(_Section):
    teacher: Any = _UNSET
    student: Any = _UNSET
    tokenizer: Any = _UNSET
    data: Any = _UNSET
    method: Any = _UNSET
    options: Any = _UNSET
    quality: Any = _UNSET
    quality_kwargs: Any = _UNSET
    sgo: Any = _UNSET
    loss: Any = _UNSET
    device: Any = _UNSET
    dtype: Any = _UNSET
    teacher_dtype: Any = _UNSET
    eval: Any = _UNSET
    training: Any = _UNSET
    peft: Any = _UNSET
    log_samples: Any = _UNSET


@dataclasses.dataclass(frozen=True)
class _DataSection(_Section):
    train: Any = _UNSET
    eval: Any = _UNSET
    skip_bad_lines: Any = _UNSET
    max_prompts: Any = _UNSET


@dataclasses.dataclass(frozen=True)
class _SgoSection(_Section):
    regime: Annotated[Any, _Sets("sgo_regime")] = _UNSET
    per_prompt: Annotated[Any, _Sets("sgo_per_prompt")] = _UNSET
    temperature: Annotated[Any, _Sets("temperature")] = _UNSET  # sampling τ; loss.temperature is the loss τ
    top_p: Annotated[Any, _Sets("top_p")] = _UNSET
    max_new_tokens: Annotated[Any, _Sets("max_new_tokens")] = _UNSET
    batch_size: Annotated[Any, _Sets("generation_batch_size")] = _UNSET
    lmbda: Annotated[Any, _Sets("lmbda")] = _UNSET


@dataclasses.dataclass(frozen=True)
class _LossSection(_Section):
    path: Annotated[Any, _Sets("loss_path")] = _UNSET
    chunk_size: Annotated[Any, _Sets("chunk_size")] = _UNSET
    kernel: Annotated[Any, _Sets("loss_kernel")] = _UNSET
    temperature: Annotated[Any, _Sets("loss_temperature")] = _UNSET
    reduction: Annotated[Any, _Sets("reduction")] = _UNSET
    alpha: Annotated[Any, _Sets("alpha")] = _UNSET
    beta: Annotated[Any, _Sets("beta")] = _UNSET
    loss_type: Annotated[Any, _Sets("loss_type")] = _UNSET
    eps_a: Annotated[Any, _Sets("eps_a")] = _UNSET
    gradual_beta: Annotated[Any, _Sets("gradual_beta")] = _UNSET


@dataclasses.dataclass(frozen=True)
class _EvalSection(_Section):
    max_new_tokens: Any = _UNSET
    batch_size: Any = _UNSET
    temperature: Any = _UNSET


@dataclasses.dataclass(frozen=True)
class _LogSamplesSection(_Section):
    every: Annotated[Any, _Sets("log_samples_every")] = _UNSET
    count: Annotated[Any, _Sets("log_samples_count")] = _UNSET


_S = TypeVar("_S", bound=_Section)


def _unknown_keys(found: Any, allowed: set[str], where: str, section: str | None = None) -> None:
    """Raise :class:`UsageError` for keys outside ``allowed``, with the closest allowed key."""
    unknown = sorted(set(found) - allowed, key=str)
    if not unknown:
        return
    key = unknown[0]
    close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
    hint = f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(sorted(allowed))}"
    place = f"in '{section}'" if section else "at the top level"
    more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
    raise UsageError(f"{where}: unknown key '{key}' {place}{more}; {hint}")


def _read(cls: type[_S], value: Any, where: str, name: str | None = None) -> _S:
    """The mapping ``value`` (section ``name``, or the top level) as ``cls``; unknown keys raise."""
    if not isinstance(value, Mapping):
        raise UsageError(f"{where}: '{name}' must be a mapping, got {type(value).__name__}")
    _unknown_keys(value, {f.name for f in dataclasses.fields(cls)}, where, name)
    return cls(**value)


@dataclasses.dataclass(frozen=True)
class DistillRunConfig:
    """A parsed ``askd distill`` YAML file (see the module docstring for the schema)."""

    teacher: str
    student: str
    train_files: tuple[str, ...]
    training: Mapping[str, Any]
    askd: Any
    """The :class:`askd_ref.engine.config.ASKDConfig`."""
    tokenizer: str | None = None
    eval_file: str | None = None
    skip_bad_lines: bool = False
    max_prompts: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    teacher_dtype: str | None = None
    eval_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str | None = None
    """The run file this was read from (named in the resume command after an interruption)."""
    peft: Mapping[str, Any] | None = None
    """The ``peft:`` block (``LoraConfig`` fields and ``merge``), or ``None``."""


def _lora_config(block: Mapping[str, Any], where: str) -> Any:
    """A ``peft.LoraConfig`` (task CAUSAL_LM) from the ``peft:`` block, errors naming the file."""
    try:
        import peft
    except ImportError:
        raise ValueError(
            f"{where}: the 'peft' block needs the peft package (pip install 'askd-ref[peft]')"
        ) from None
    fields = {k: v for k, v in block.items() if k != "merge"}
    fields.setdefault("task_type", "CAUSAL_LM")
    try:
        return peft.LoraConfig(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: peft: {err}") from None


def load_run_config(path: str | os.PathLike[str]) -> DistillRunConfig:
    """Read and validate a YAML run file.

    Relative data paths, ``output_dir`` and relative local model paths are resolved against the
    file's directory (hub ids ``org/name`` are kept). The structure (key names, with the closest
    valid name for a typo; types; model directories that do not exist) is checked before any
    heavy import, so a wrong file is reported in well under a second. Errors are
    :class:`~askd_ref.cli.commands._errors.UsageError` naming the file and the key.
    """
    where = os.fspath(path)
    raw = _read_yaml(where)
    for key in ("teacher", "student", "data", "training"):
        if getattr(raw, key) is _UNSET:
            raise UsageError(f"{where}: missing required key '{key}'")
    base = str(Path(where).resolve().parent)
    teacher, student = _model(raw, "teacher", base, where), _model(raw, "student", base, where)
    tokenizer = None if raw.get("tokenizer") is None else _model(raw, "tokenizer", base, where)
    data = _read(_DataSection, raw.data or {}, where, "data")
    train = data.get("train")
    if isinstance(train, str):
        train = [train]
    if not train or not isinstance(train, list):
        raise UsageError(f"{where}: data.train must be a file or a non-empty list of files")
    train_files = tuple(_resolve(p, base, where) for p in train)
    eval_file = None if data.get("eval") is None else _resolve(data.get("eval"), base, where)
    sections = (
        _read(_SgoSection, raw.get("sgo") or {}, where, "sgo"),
        _read(_LossSection, raw.get("loss") or {}, where, "loss"),
    )
    ev = _read(_EvalSection, raw.get("eval") or {}, where, "eval").given()
    _check_top_values(raw, where)
    askd = _askd_config(raw, sections, where)
    peft_block = _peft_block(raw.get("peft"), where)
    out_dir = str(raw.training["output_dir"])
    resolved_out = out_dir if os.path.isabs(out_dir) else _resolve(out_dir, base, where)
    training = {**raw.training, "output_dir": resolved_out}
    return DistillRunConfig(
        teacher=teacher,
        student=student,
        tokenizer=tokenizer,
        train_files=train_files,
        eval_file=eval_file,
        skip_bad_lines=bool(data.get("skip_bad_lines", False)),
        max_prompts=data.get("max_prompts"),
        training=training,
        askd=askd,
        device=str(raw.get("device", "cpu")),
        dtype=str(raw.get("dtype", "fp32")),
        teacher_dtype=None if raw.get("teacher_dtype") is None else str(raw.teacher_dtype),
        eval_settings=ev,
        source=where,
        peft=peft_block,
    )


def _read_yaml(where: str) -> _RunFile:
    """The run file's top level (``UsageError`` for a missing file, bad YAML or unknown keys)."""
    import yaml

    if not os.path.isfile(where):
        raise UsageError(f"run file {where!r} does not exist")
    with open(where, encoding="utf-8") as f:
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise UsageError(f"{where}:{line} is not valid YAML ({getattr(err, 'problem', err)})") from None
    if not isinstance(raw, Mapping):
        raise UsageError(f"{where}: the top level must be a mapping of keys such as teacher, student, data")
    return _read(_RunFile, raw, where)


def _resolve(p: object, base: str, where: str) -> str:
    """A data path, relative to the run file's directory."""
    if not isinstance(p, str):
        raise UsageError(f"{where}: a data path must be a string, got {p!r}")
    q = Path(os.path.expanduser(p))
    return str(q if q.is_absolute() else Path(base) / q)


def _model(raw: _RunFile, key: str, base: str, where: str) -> str:
    """A model directory (checked to exist) or hub id."""
    value = getattr(raw, key)
    if not isinstance(value, str) or not value:
        raise UsageError(f"{where}: '{key}' must be a model directory or hub id, got {value!r}")
    resolved = resolve_model_path(value, base)
    try:
        check_model_path(resolved, what=f"{key}")
    except (FileNotFoundError, ValueError) as err:
        raise UsageError(f"{where}: {err}") from None
    return resolved


def _check_top_values(raw: _RunFile, where: str) -> None:
    """``options`` (ASKDOptions field names), ``training`` (with output_dir), the dtypes."""
    options_raw = raw.get("options") or {}
    if not isinstance(options_raw, Mapping):
        raise UsageError(f"{where}: 'options' must be a mapping of ASKDOptions fields")
    _unknown_keys(options_raw, {f.name for f in dataclasses.fields(ASKDOptions)}, where, "options")
    if not isinstance(raw.training, Mapping) or "output_dir" not in raw.training:
        raise UsageError(f"{where}: 'training' must be a mapping with an output_dir")
    for key in ("dtype", "teacher_dtype"):
        value = raw.get(key)
        if value is not None and value not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"{where}: '{key}' must be one of fp32, bf16, fp16, got {value!r}")


def _askd_config(raw: _RunFile, sections: tuple[_SgoSection, _LossSection], where: str) -> Any:
    """The :class:`~askd_ref.engine.config.ASKDConfig` of the run file (errors name the file)."""
    from askd_ref.engine.config import ASKDConfig  # imports torch: after the structural checks

    try:
        askd_fields: dict[str, Any] = {
            "method": raw.get("method", "askd"),
            "options": ASKDOptions(**(raw.get("options") or {})),
            "quality": raw.get("quality", "exact_match"),
            "quality_kwargs": dict(raw.get("quality_kwargs") or {}),
        }
        for section in sections:
            askd_fields.update(section.askd_fields())
        samples = _read(_LogSamplesSection, raw.get("log_samples") or {}, where, "log_samples")
        askd_fields.update(samples.askd_fields())
        return ASKDConfig(**askd_fields)
    except UsageError:
        raise
    except (TypeError, ValueError) as err:
        raise UsageError(f"{where}: {err}") from None


def _peft_block(peft_block: Any, where: str) -> dict[str, Any] | None:
    """The ``peft:`` block, validated as a ``LoraConfig`` now (not after the models load)."""
    if peft_block is None:
        return None
    if not isinstance(peft_block, Mapping):
        raise UsageError(f"{where}: 'peft' must be a mapping of LoraConfig fields")
    if not isinstance(peft_block.get("merge", True), bool):
        raise UsageError(f"{where}: peft.merge must be true or false")
    try:
        _lora_config(peft_block, where)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return dict(peft_block)


def _portable_training_args(training: Mapping[str, Any]) -> dict[str, Any]:
    """Rename the TrainingArguments fields transformers renamed, to whichever this version has.

    ``gradient_checkpointing`` ↔ ``activation_checkpointing`` (renamed in transformers 5) and
    ``warmup_ratio`` → ``warmup_steps`` (5 takes a float < 1 as a ratio).
    """
    import inspect

    from transformers import TrainingArguments

    fields = set(inspect.signature(TrainingArguments.__init__).parameters)
    out = dict(training)
    if "gradient_checkpointing" in out and "activation_checkpointing" in fields:
        out.setdefault("activation_checkpointing", out.pop("gradient_checkpointing"))
    if "activation_checkpointing" in out and "activation_checkpointing" not in fields:
        out.setdefault("gradient_checkpointing", out.pop("activation_checkpointing"))
    if "warmup_ratio" in out and "warmup_ratio" not in fields:
        out.setdefault("warmup_steps", out.pop("warmup_ratio"))
    _unknown_keys(out, fields, "run file", "training")
    return out


def run_distill(
    config: DistillRunConfig,
    *,
    resume: str | bool | None = None,
    overwrite: bool = False,
    progress: bool = True,
    announce: bool = False,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Load models and data, train with :class:`~askd_ref.engine.trainer.ASKDTrainer`, save, evaluate.

    Under ``accelerate launch`` every process runs this: the train loss in the returned metrics
    (and ``metrics.json``, written by the main process) is the all-reduced one, the evaluation is
    split across the processes and gathered, and the process group is shut down at the end
    (:func:`end_distributed`). With ``announce`` the main process prints a one-line summary.

    No work is lost: an ``output_dir`` that holds checkpoints or a ``final`` model from an
    earlier run is refused unless ``resume`` (continue from the last complete checkpoint, or
    from the one given; the one used is printed) or ``overwrite`` (delete them first) is set.
    The first Ctrl-C (SIGINT) lets the current step finish, saves a checkpoint and raises
    :class:`~askd_ref.cli.commands._errors.RunInterrupted` carrying the exact resume command; a
    second one aborts at once. ``callbacks`` are extra ``TrainerCallback``s.
    """
    output_dir = str(config.training["output_dir"])
    command = f"askd distill --config {config.source or 'RUN_FILE'}"
    resume = _check_output_dir(output_dir, resume, overwrite, command)
    for key, file in [("data.train", f) for f in config.train_files] + [("data.eval", config.eval_file)]:
        if file is not None and not os.path.isfile(file):
            raise UsageError(f"{key} file {file!r} does not exist")
    from askd_ref.engine.loading import load_causal_lm
    from askd_ref.engine.trainer import ASKDTrainer
    from askd_ref.io import atomic_write_json

    device = _check_device(config)
    tokenizer = _load_run_tokenizer(config)
    items = _load_items(config, tokenizer)
    student = load_causal_lm(config.student, device=str(device), dtype="fp32")
    teacher = None
    if config.askd.spec.needs_teacher:
        teacher_dtype = config.teacher_dtype or config.dtype
        teacher = load_causal_lm(config.teacher, device=str(device), dtype=teacher_dtype)
    trainer = ASKDTrainer(
        model=student,
        teacher=teacher,
        args=_training_arguments(config, device, progress),
        config=config.askd,
        train_dataset=items,
        processing_class=tokenizer,
        callbacks=list(callbacks),
        peft_config=None if config.peft is None else _lora_config(config.peft, "peft"),
    )
    stop = _InterruptState()
    trainer.add_callback(_stop_callback(trainer, stop))
    with stop.catching_sigint():
        result = trainer.train(resume_from_checkpoint=resume)
    if stop.stopped_at is not None:
        checkpoint = os.path.join(output_dir, f"checkpoint-{stop.stopped_at}")
        end_distributed(trainer)
        raise RunInterrupted(
            f"stopped after step {stop.stopped_at}, checkpoint saved to {checkpoint}; "
            f"continue with: {command} --resume"
        )
    final = _save_final(config, trainer, tokenizer, output_dir)
    metrics: dict[str, Any] = {
        "method": config.askd.method,
        # all-reduced over the processes (ASKDTrainer.log); TrainOutput.training_loss is this rank's
        "train_loss": float(result.metrics["train_loss"]),
        "global_step": trainer.state.global_step,
        "prompts": len(items),
        "world_size": trainer.world_size,
        "log_history": trainer.state.log_history,
    }
    if config.eval_file is not None:
        metrics["eval"] = _evaluate(config, trainer, tokenizer, progress)
    if trainer.is_world_process_zero():
        atomic_write_json(os.path.join(output_dir, "metrics.json"), metrics)
    main = trainer.is_world_process_zero()
    end_distributed(trainer)
    if main and announce:
        line = f"{metrics['method']}: {metrics['global_step']} steps, train loss {metrics['train_loss']:.4f}"
        if "eval" in metrics:
            line += f"; eval accuracy {metrics['eval']['accuracy']:.4f} (n = {metrics['eval']['n']})"
        print(line + f"; saved to {final}")
    return metrics


def _check_device(config: DistillRunConfig) -> Any:
    """The run's torch device; ``UsageError`` for an unknown one or half precision on CPU."""
    from askd_ref.engine.loading import resolve_device

    try:
        device = resolve_device(config.device)
    except ValueError as err:
        raise UsageError(f"device: {err}") from None
    if device.type == "cpu" and config.dtype != "fp32":
        raise UsageError(f"dtype {config.dtype} needs a GPU; use dtype: fp32 on CPU")
    return device


def _load_run_tokenizer(config: DistillRunConfig) -> Any:
    """The shared tokenizer (the student's by default, then checked to equal the teacher's)."""
    from askd_ref.engine.forward import check_same_tokenizer
    from askd_ref.engine.loading import load_tokenizer

    tokenizer = load_tokenizer(config.tokenizer or config.student)
    if config.tokenizer is None:
        check_same_tokenizer(load_tokenizer(config.teacher), tokenizer)
    return tokenizer


def _load_items(config: DistillRunConfig, tokenizer: Any) -> list[Any]:
    """The training prompts with their samples (chat records rendered with the template)."""
    from askd_ref.engine.data import read_samples
    from askd_ref.engine.items import prompt_items_from_samples
    from askd_ref.engine.tokens import render_chat_prompts

    samples: list[Any] = []
    for path in config.train_files:
        part = read_samples(path, skip_bad_lines=config.skip_bad_lines)
        if config.skip_bad_lines and part.num_skipped and launch_rank() == 0:
            print(part.skipped_report())
        samples.extend(part)
    items = prompt_items_from_samples(render_chat_prompts(samples, tokenizer))  # chat records: template
    if config.max_prompts is not None:
        items = items[: int(config.max_prompts)]
    if not items:
        raise ValueError(f"no training prompts in {list(config.train_files)}")
    return items


def _training_arguments(config: DistillRunConfig, device: Any, progress: bool) -> Any:
    """``TrainingArguments`` from the ``training:`` block, the device and the precision."""
    from transformers import TrainingArguments

    training = dict(config.training)
    training.setdefault("report_to", [])
    training.setdefault("save_strategy", "no")
    training["use_cpu"] = device.type == "cpu"
    training["bf16"] = config.dtype == "bf16"
    training["fp16"] = config.dtype == "fp16"
    training["disable_tqdm"] = not progress
    return TrainingArguments(**_portable_training_args(training))


def _save_final(config: DistillRunConfig, trainer: Any, tokenizer: Any, output_dir: str) -> str:
    """Save the student (and, with ``peft.merge``, the merged model) with the tokenizer."""
    final = os.path.join(output_dir, "final")
    trainer.save_model(final)
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(final)
    if config.peft is not None and config.peft.get("merge", True):
        merged = os.path.join(output_dir, "final-merged")
        trainer.save_merged_model(merged)
        if trainer.is_world_process_zero():
            tokenizer.save_pretrained(merged)
    return final


def _evaluate(config: DistillRunConfig, trainer: Any, tokenizer: Any, progress: bool) -> dict[str, Any]:
    """Accuracy on the ``data.eval`` prompts, split across the processes and gathered."""
    from accelerate.utils import gather_object

    from askd_ref.engine.data import read_prompts
    from askd_ref.engine.evaluate import evaluate_model_sharded
    from askd_ref.quality import get_signal, is_teacher_likelihood

    assert config.eval_file is not None
    if config.askd.quality is None or is_teacher_likelihood(config.askd.quality):
        raise ValueError("data.eval needs a verifying quality signal (e.g. exact_match or unit_tests)")
    prompts = read_prompts(config.eval_file, skip_bad_lines=config.skip_bad_lines)
    signal = get_signal(config.askd.quality, **dict(config.askd.quality_kwargs))
    ev = config.eval_settings
    res = evaluate_model_sharded(
        trainer.accelerator.unwrap_model(trainer.model),
        tokenizer,
        prompts,
        signal,
        rank=trainer.accelerator.process_index,
        world_size=trainer.world_size,
        gather=gather_object,
        max_new_tokens=int(ev.get("max_new_tokens", config.askd.max_new_tokens)),
        batch_size=int(ev.get("batch_size", 32)),
        temperature=float(ev.get("temperature", 0.0)),
        progress=progress and trainer.is_world_process_zero(),
        desc="eval (held-out prompts)",
    )
    result: dict[str, Any] = res.to_dict()
    return result


def _existing_work(output_dir: str) -> list[str]:
    """Names of the checkpoints and final model an earlier run left in ``output_dir``."""
    if not os.path.isdir(output_dir):
        return []
    found = [n for n in os.listdir(output_dir) if re.fullmatch(r"checkpoint-\d+", n) or n == "final"]
    return sorted(found, key=lambda n: (n == "final", int(n.rpartition("-")[2]) if n != "final" else 0))


def _check_output_dir(
    output_dir: str, resume: str | bool | None, overwrite: bool, command: str
) -> str | None:
    """Refuse to overwrite an earlier run's work; resolve ``resume`` to the checkpoint folder used."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other; choose one")
    main = launch_rank() == 0
    if not resume:
        found = _existing_work(output_dir)
        if found and not overwrite:
            shown = ", ".join(found[-3:]) if len(found) <= 3 else f"{len(found)} entries up to {found[-1]}"
            raise UsageError(
                f"output_dir {output_dir} already holds {shown} from an earlier run; "
                f"continue it with: {command} --resume, or start over with: {command} --overwrite"
            )
        if found and main:
            for name in found + [n for n in os.listdir(output_dir) if n.startswith("tmp-checkpoint-")]:
                shutil.rmtree(os.path.join(output_dir, name), ignore_errors=True)
            print(f"--overwrite: deleted {', '.join(found)} in {output_dir}", flush=True)
        return None
    if resume is True:
        checkpoint = last_checkpoint(output_dir)
        if checkpoint is None:
            raise UsageError(
                f"--resume: no complete checkpoint-N folder in {output_dir}; run without --resume"
            )
    else:
        checkpoint = str(resume)
        if not os.path.isfile(os.path.join(checkpoint, "trainer_state.json")):
            raise UsageError(f"--resume: {checkpoint!r} is not a complete checkpoint folder")
    if main:
        print(f"resuming from {checkpoint}", flush=True)
    return checkpoint


#: Under a launcher, a SIGINT this soon after the first is the same Ctrl-C delivered twice: once
#: from the terminal to the process group, once forwarded by ``accelerate launch``/``torchrun``.
LAUNCHER_DUPLICATE_S = 1.0


class _InterruptState:
    """What the SIGINT handler and the stop callback share."""

    def __init__(self) -> None:
        self.requested = False
        self.stopped_at: int | None = None
        self.first_at = 0.0

    def on_sigint(self) -> bool:
        """First SIGINT: request a stop (returns ``True``). Second: ``KeyboardInterrupt`` (abort
        at once).

        Under a launcher (``WORLD_SIZE`` set) a second SIGINT within ``LAUNCHER_DUPLICATE_S``
        of the first is the launcher's forwarded copy of the same Ctrl-C and is ignored
        (returns ``False``).
        """
        now = time.monotonic()
        if self.requested:
            if "WORLD_SIZE" in os.environ and now - self.first_at < LAUNCHER_DUPLICATE_S:
                return False
            raise KeyboardInterrupt
        self.requested = True
        self.first_at = now
        return True

    @contextlib.contextmanager
    def catching_sigint(self) -> Iterator[None]:
        """Install :meth:`on_sigint` as the SIGINT handler for the duration (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            if self.on_sigint() and launch_rank() == 0:
                note = (
                    "stopping after this step and saving a checkpoint (Ctrl-C again to abort without saving)"
                )
                print(f"\n{note}", file=sys.stderr, flush=True)

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _stop_callback(trainer: Any, interrupt: _InterruptState) -> Any:
    """A ``TrainerCallback``: after a step during which a stop was requested, save and stop.

    It also labels Trainer's progress bar with the method being trained.

    Under several processes the request is all-reduced at every step end, so every rank stops
    (and saves) after the same step even if only some received the signal.
    """
    from transformers import TrainerCallback

    class StopOnInterrupt(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            for callback in trainer.callback_handler.callbacks:  # label Trainer's progress bar
                bar = getattr(callback, "training_bar", None)
                if bar is not None and hasattr(bar, "set_description"):
                    bar.set_description(f"train ({trainer.askd_config.method})")
            return control

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            requested = interrupt.requested
            if trainer.world_size > 1:
                import torch
                import torch.distributed as dist

                flag = torch.tensor([float(requested)], device=trainer.accelerator.device)
                dist.all_reduce(flag, op=dist.ReduceOp.MAX)
                requested = bool(flag.item())
            if requested and interrupt.stopped_at is None:
                control.should_save = True
                control.should_training_stop = True
                interrupt.stopped_at = int(state.global_step)
            return control

    return StopOnInterrupt()


def end_distributed(trainer: Any = None) -> None:
    """Drop the DDP wrapper of ``trainer`` and shut the process group down; every rank calls it.

    ``torch.distributed.destroy_process_group()`` alone is not enough after a ``Trainer`` ran under
    DDP: the wrapped model (``trainer.model_wrapped``, and the accelerator's list of prepared
    models) keeps the process group, and so its worker threads (``pt_gloo_runloop``,
    ``gloo_tcp_loop``), alive until interpreter shutdown, which then destroys them in no defined
    order and can abort a rank with "terminate called without an active exception" after all the
    work is done. Releasing the wrapper first makes ``destroy_process_group`` join those threads
    here. The unwrapped ``trainer.model`` stays usable. A no-op in a single process.
    """
    import gc

    import torch.distributed as dist

    if trainer is not None:
        trainer.model_wrapped = trainer.model
        trainer.accelerator.free_memory()
    gc.collect()
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
