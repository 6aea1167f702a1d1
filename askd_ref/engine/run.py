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
    loss: {path: chunked, chunk_size: 256, temperature: 1.0, reduction: sample,
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

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from askd_ref.options import ASKDOptions

__all__ = ["DistillRunConfig", "load_run_config", "run_distill"]

_TOP_KEYS = {
    "teacher", "student", "tokenizer", "data", "method", "options", "quality", "quality_kwargs",
    "sgo", "loss", "device", "dtype", "teacher_dtype", "eval", "training", "peft", "log_samples",
}
_DATA_KEYS = {"train", "eval", "skip_bad_lines", "max_prompts"}
_SGO_KEYS = {"regime", "per_prompt", "temperature", "top_p", "max_new_tokens", "batch_size", "lmbda"}
_LOSS_KEYS = {
    "path", "chunk_size", "temperature", "reduction", "alpha", "beta", "loss_type", "eps_a", "gradual_beta",
}
_EVAL_KEYS = {"max_new_tokens", "batch_size", "temperature"}


def _section(cfg: Mapping[str, Any], name: str, keys: set[str], where: str) -> dict[str, Any]:
    value = cfg.get(name) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: '{name}' must be a mapping, got {type(value).__name__}")
    unknown = sorted(set(value) - keys)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} in '{name}'; expected some of {sorted(keys)}")
    return dict(value)


@dataclasses.dataclass(frozen=True)
class DistillRunConfig:
    """A parsed ``askd distill`` YAML file (see the module docstring for the schema)."""

    teacher: str
    student: str
    train_files: tuple[str, ...]
    training: Mapping[str, Any]
    askd: Any
    """The :class:`askd_ref.trainer.ASKDConfig`."""
    tokenizer: str | None = None
    eval_file: str | None = None
    skip_bad_lines: bool = False
    max_prompts: int | None = None
    device: str = "cpu"
    dtype: str = "fp32"
    teacher_dtype: str | None = None
    eval_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
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
    """Read and validate a YAML run file; relative data paths are resolved against its directory."""
    import yaml

    from askd_ref.trainer import ASKDConfig

    where = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: the top level must be a mapping")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(_TOP_KEYS)}")
    for key in ("teacher", "student", "data", "training"):
        if key not in raw:
            raise ValueError(f"{where}: missing required key '{key}'")
    base = Path(where).resolve().parent

    def resolve(p: str) -> str:
        if not isinstance(p, str):
            raise ValueError(f"{where}: a data path must be a string, got {p!r}")
        q = Path(os.path.expanduser(p))
        return str(q if q.is_absolute() else base / q)

    data = _section(raw, "data", _DATA_KEYS, where)
    train = data.get("train")
    if isinstance(train, str):
        train = [train]
    if not train or not isinstance(train, list):
        raise ValueError(f"{where}: data.train must be a file or a non-empty list of files")
    sgo = _section(raw, "sgo", _SGO_KEYS, where)
    loss = _section(raw, "loss", _LOSS_KEYS, where)
    ev = _section(raw, "eval", _EVAL_KEYS, where)
    options_raw = raw.get("options") or {}
    if not isinstance(options_raw, Mapping):
        raise ValueError(f"{where}: 'options' must be a mapping of ASKDOptions fields")
    option_fields = {f.name for f in dataclasses.fields(ASKDOptions)}
    bad = sorted(set(options_raw) - option_fields)
    if bad:
        raise ValueError(f"{where}: unknown option(s) {bad}; ASKDOptions fields are {sorted(option_fields)}")
    training = raw["training"]
    if not isinstance(training, Mapping) or "output_dir" not in training:
        raise ValueError(f"{where}: 'training' must be a mapping with an output_dir")
    askd_fields: dict[str, Any] = {
        "method": raw.get("method", "askd"),
        "options": ASKDOptions(**options_raw),
        "quality": raw.get("quality", "exact_match"),
        "quality_kwargs": dict(raw.get("quality_kwargs") or {}),
    }
    renames = (
        ("regime", "sgo_regime"),
        ("per_prompt", "sgo_per_prompt"),
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_new_tokens", "max_new_tokens"),
        ("batch_size", "generation_batch_size"),
        ("lmbda", "lmbda"),
    )
    for src, dst in renames:
        if src in sgo:
            askd_fields[dst] = sgo[src]
    # loss.temperature is the loss τ (ASKDConfig.loss_temperature); sgo.temperature samples
    samples_block = _section(raw, "log_samples", {"every", "count"}, where)
    if "every" in samples_block:
        askd_fields["log_samples_every"] = samples_block["every"]
    if "count" in samples_block:
        askd_fields["log_samples_count"] = samples_block["count"]
    loss_renames = {"path": "loss_path", "temperature": "loss_temperature"}
    for key, value in loss.items():
        askd_fields[loss_renames.get(key, key)] = value
    try:
        askd = ASKDConfig(**askd_fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where}: {err}") from None
    peft_block = raw.get("peft")
    if peft_block is not None:
        if not isinstance(peft_block, Mapping):
            raise ValueError(f"{where}: 'peft' must be a mapping of LoraConfig fields")
        if not isinstance(peft_block.get("merge", True), bool):
            raise ValueError(f"{where}: peft.merge must be true or false")
        _lora_config(peft_block, where)  # validate now, not after the models are loaded
        peft_block = dict(peft_block)
    out_dir = training["output_dir"]
    training = {**training, "output_dir": resolve(out_dir) if not os.path.isabs(out_dir) else out_dir}
    return DistillRunConfig(
        teacher=str(raw["teacher"]),
        student=str(raw["student"]),
        tokenizer=None if raw.get("tokenizer") is None else str(raw["tokenizer"]),
        train_files=tuple(resolve(p) for p in train),
        eval_file=None if data.get("eval") is None else resolve(data["eval"]),
        skip_bad_lines=bool(data.get("skip_bad_lines", False)),
        max_prompts=data.get("max_prompts"),
        training=training,
        askd=askd,
        device=str(raw.get("device", "cpu")),
        dtype=str(raw.get("dtype", "fp32")),
        teacher_dtype=None if raw.get("teacher_dtype") is None else str(raw["teacher_dtype"]),
        eval_settings=ev,
        peft=peft_block,
    )


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
    unknown = sorted(set(out) - fields)
    if unknown:
        raise ValueError(f"training: unknown TrainingArguments field(s) {unknown}")
    return out


def run_distill(
    config: DistillRunConfig, *, resume: str | bool | None = None, progress: bool = True
) -> dict[str, Any]:
    """Load models and data, train with :class:`~askd_ref.trainer.ASKDTrainer`, save, evaluate."""
    from transformers import TrainingArguments

    from askd_ref.data import read_samples
    from askd_ref.engine.evaluate import evaluate_model
    from askd_ref.engine.forward import check_same_tokenizer
    from askd_ref.engine.loading import load_causal_lm, load_tokenizer, resolve_device, torch_dtype
    from askd_ref.io import atomic_write_json
    from askd_ref.trainer import ASKDTrainer, prompt_items_from_samples

    device = resolve_device(config.device)
    torch_dtype(config.dtype)
    if device.type == "cpu" and config.dtype != "fp32":
        raise ValueError(f"dtype {config.dtype} needs a GPU; use fp32 on CPU")
    tokenizer = load_tokenizer(config.tokenizer or config.student)
    if config.tokenizer is None:
        check_same_tokenizer(load_tokenizer(config.teacher), tokenizer)
    samples: list[Any] = []
    for path in config.train_files:
        part = read_samples(path, skip_bad_lines=config.skip_bad_lines)
        if config.skip_bad_lines and part.num_skipped:
            print(part.skipped_report())
        samples.extend(part)
    from askd_ref.engine.tokens import render_chat_prompts

    items = prompt_items_from_samples(render_chat_prompts(samples, tokenizer))  # chat records: template
    if config.max_prompts is not None:
        items = items[: int(config.max_prompts)]
    if not items:
        raise ValueError(f"no training prompts in {list(config.train_files)}")
    student = load_causal_lm(config.student, device=str(device), dtype="fp32")
    teacher = None
    if config.askd.method != "seqkd":
        teacher_dtype = config.teacher_dtype or config.dtype
        teacher = load_causal_lm(config.teacher, device=str(device), dtype=teacher_dtype)
    training = dict(config.training)
    training.setdefault("report_to", [])
    training.setdefault("save_strategy", "no")
    training["use_cpu"] = device.type == "cpu"
    training["bf16"] = config.dtype == "bf16"
    training["fp16"] = config.dtype == "fp16"
    training["disable_tqdm"] = not progress
    args = TrainingArguments(**_portable_training_args(training))
    trainer = ASKDTrainer(
        model=student,
        teacher=teacher,
        args=args,
        config=config.askd,
        train_dataset=items,
        processing_class=tokenizer,
        peft_config=None if config.peft is None else _lora_config(config.peft, "peft"),
    )
    result = trainer.train(resume_from_checkpoint=resume)
    output_dir = str(training["output_dir"])
    final = os.path.join(output_dir, "final")
    trainer.save_model(final)
    tokenizer.save_pretrained(final)
    if config.peft is not None and config.peft.get("merge", True):
        merged = os.path.join(output_dir, "final-merged")
        trainer.save_merged_model(merged)
        tokenizer.save_pretrained(merged)
    metrics: dict[str, Any] = {
        "method": config.askd.method,
        "train_loss": result.training_loss,
        "global_step": trainer.state.global_step,
        "prompts": len(items),
        "log_history": trainer.state.log_history,
    }
    if config.eval_file is not None:
        from askd_ref.data import read_prompts
        from askd_ref.quality import get_signal

        if config.askd.quality is None or config.askd.quality in ("teacher_likelihood", "likelihood"):
            raise ValueError("data.eval needs a verifying quality signal (e.g. exact_match or unit_tests)")
        prompts = read_prompts(config.eval_file, skip_bad_lines=config.skip_bad_lines)
        signal = get_signal(config.askd.quality, **dict(config.askd.quality_kwargs))
        ev = config.eval_settings
        res = evaluate_model(
            trainer.accelerator.unwrap_model(trainer.model),
            tokenizer,
            prompts,
            signal,
            max_new_tokens=int(ev.get("max_new_tokens", config.askd.max_new_tokens)),
            batch_size=int(ev.get("batch_size", 32)),
            temperature=float(ev.get("temperature", 0.0)),
            progress=progress,
        )
        metrics["eval"] = res.to_dict()
    if trainer.is_world_process_zero():
        atomic_write_json(os.path.join(output_dir, "metrics.json"), metrics)
    return metrics
