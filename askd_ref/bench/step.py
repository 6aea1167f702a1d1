"""The step benchmark: where the time of one :class:`~askd_ref.engine.trainer.ASKDTrainer` step goes.

A step of the on-policy trainer is split into phases, timed from outside the trainer:

================== ==============================================================================
``generation``     SGO sampling from the current student (``ASKDTrainer._sample_sgos``)
``quality``        scoring the samples (``ASKDTrainer._score``)
``teacher_forward`` the teacher's forward passes (forward hooks on the teacher module)
``student_forward`` the student's forward passes outside generation (forward hooks)
``loss``           :func:`askd_ref.chunked_loss` / :func:`askd_ref.compute_loss` forward (for the
                   chunked path this includes the output projections, chunk by chunk)
``backward``       ``accelerator.backward`` (student trunk, head and loss together)
``optimizer``      between the ``on_pre_optimizer_step`` and ``on_optimizer_step`` callbacks
``other``          the rest of the step (tokenising, padding, the trainer's own bookkeeping)
================== ==============================================================================

The instrumentation (:class:`StepTimer`) only reads the clock around calls: it wraps two trainer
methods and ``accelerator.backward`` on the trainer *instance*, patches the module attributes
``askd_ref.chunked.chunked_loss`` and ``askd_ref.engine.trainer.compute_loss`` with timing wrappers
that call the originals with the same arguments, and adds forward hooks that return nothing, so
the trainer computes exactly what it computes without it (``tests/test_bench_step.py`` checks the
trained parameters are bit-identical). On CUDA every clock read is preceded by
``torch.cuda.synchronize()``.

Models: ``toy`` (the toy pipeline's teacher and student shapes over the character tokenizer) and
``qwen0.5b`` (two randomly initialised ``Qwen2ForCausalLM`` of Qwen2.5-0.5B's published shape:
hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate 4864, vocabulary 151936, tied
embeddings; a synthetic word-level tokenizer of that vocabulary size, so the output projection
and the loss run over the full 151936 rows). No weights are downloaded.

:func:`generation_throughput` compares askd-ref's sampler (:func:`askd_ref.engine.generation.generate`,
which also returns the behaviour log-probability log μ the off-policy estimators need) with
``model.generate`` at the same temperature, top-p and length.
"""

import dataclasses
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from transformers import (
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
    TrainerCallback,
    TrainingArguments,
)

from askd_ref.bench.loss import describe_device

__all__ = [
    "PHASES",
    "QWEN05_SHAPE",
    "StepTimer",
    "build_models",
    "generation_throughput",
    "run_step_bench",
]

#: The phases of a step, in the order of the table.
PHASES: tuple[str, ...] = (
    "generation",
    "quality",
    "teacher_forward",
    "student_forward",
    "loss",
    "backward",
    "optimizer",
    "other",
)

#: Qwen2.5-0.5B's published configuration (``config.json`` of ``Qwen/Qwen2.5-0.5B``).
QWEN05_SHAPE: dict[str, Any] = {
    "hidden_size": 896,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "intermediate_size": 4864,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
}


class StepTimer(TrainerCallback):
    """Per-step phase times of an :class:`~askd_ref.engine.trainer.ASKDTrainer` (see the module docstring).

    Use as a context manager around ``trainer.train()`` after :meth:`attach`; ``steps`` then holds
    one ``{phase: seconds}`` dict per optimizer step, with ``total`` and ``other``.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.steps: list[dict[str, float]] = []
        self._current: dict[str, float] = defaultdict(float)
        self._step_t0 = 0.0
        self._opt_t0 = 0.0
        self._in_generation = False
        self._undo: list[Callable[[], None]] = []
        self._starts: dict[int, float] = {}

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def _timed(self, phase: str, fn: Callable[..., Any], *, generation: bool = False) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = self._now()
            if generation:
                self._in_generation = True
            try:
                return fn(*args, **kwargs)
            finally:
                if generation:
                    self._in_generation = False
                self._current[phase] += self._now() - t0

        return wrapper

    def _hook_module(self, module: torch.nn.Module, phase: str) -> None:
        def pre(mod: torch.nn.Module, args: Any) -> None:
            if not self._in_generation:
                self._starts[id(mod)] = self._now()

        def post(mod: torch.nn.Module, args: Any, output: Any) -> None:
            t0 = self._starts.pop(id(mod), None)
            if t0 is not None:
                self._current[phase] += self._now() - t0

        handles = (module.register_forward_pre_hook(pre), module.register_forward_hook(post))
        self._undo.extend(h.remove for h in handles)

    def attach(self, trainer: Any, teacher: torch.nn.Module | None, student: torch.nn.Module) -> "StepTimer":
        """Instrument ``trainer`` (an :class:`~askd_ref.engine.trainer.ASKDTrainer`) and its two models."""
        import askd_ref.chunked
        import askd_ref.engine.trainer

        def undo_attr(obj: Any, name: str) -> Callable[[], None]:
            return lambda: delattr(obj, name)

        def undo_set(obj: Any, name: str, value: Any) -> Callable[[], None]:
            return lambda: setattr(obj, name, value)

        for name, phase, gen in (("_sample_sgos", "generation", True), ("_score", "quality", False)):
            setattr(trainer, name, self._timed(phase, getattr(trainer, name), generation=gen))
            self._undo.append(undo_attr(trainer, name))
        accelerator = trainer.accelerator
        accelerator.backward = self._timed("backward", accelerator.backward)
        self._undo.append(undo_attr(accelerator, "backward"))
        for module, attr in ((askd_ref.chunked, "chunked_loss"), (askd_ref.engine.trainer, "compute_loss")):
            original = getattr(module, attr)
            setattr(module, attr, self._timed("loss", original))
            self._undo.append(undo_set(module, attr, original))
        if teacher is not None:
            self._hook_module(teacher, "teacher_forward")
        self._hook_module(student, "student_forward")
        trainer.add_callback(self)
        return self

    def detach(self) -> None:
        """Undo every wrapper and hook (in reverse order)."""
        while self._undo:
            self._undo.pop()()

    def __enter__(self) -> "StepTimer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    # ---- TrainerCallback ----------------------------------------------------------------------

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._current = defaultdict(float)
        self._step_t0 = self._now()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._opt_t0 = self._now()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._current["optimizer"] += self._now() - self._opt_t0

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        total = self._now() - self._step_t0
        row = {p: self._current.get(p, 0.0) for p in PHASES if p != "other"}
        row["other"] = total - sum(row.values())
        row["total"] = total
        self.steps.append(row)


# ----------------------------------------------------------------------------------------------
# Models.
# ----------------------------------------------------------------------------------------------


def wide_tokenizer(vocab_size: int) -> Any:
    """The toy character tokenizer padded with filler tokens ``<v…>`` to ``vocab_size`` entries.

    Prompts encode exactly as with :func:`askd_ref.toy.build_tokenizer`; sampled filler ids decode
    to their names. It lets a randomly initialised model of a real vocabulary size run end to end.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors

    from askd_ref.toy.tokenizer import ALPHABET, SPECIAL_TOKENS

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in ALPHABET:
        vocab[ch] = len(vocab)
    if vocab_size < len(vocab):
        raise ValueError(f"vocab_size must be at least {len(vocab)}, got {vocab_size}")
    for i in range(len(vocab), vocab_size):
        vocab[f"<v{i}>"] = i
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        padding_side="left",
        model_max_length=4096,
        clean_up_tokenization_spaces=False,
    )


def build_models(name: str, *, layers: int | None = None) -> tuple[Any, Any, Any]:
    """(tokenizer, teacher, student) of the benchmark model ``name`` (``toy`` or ``qwen0.5b``).

    ``layers`` overrides the number of decoder layers of both models (tests, dry runs).
    """
    if name == "toy":
        from askd_ref.toy import build_tokenizer, tiny_llama
        from askd_ref.toy.pipeline import ToySettings

        tok: Any = build_tokenizer()
        s = ToySettings()
        teacher: Any = tiny_llama(
            tok,
            hidden_size=s.teacher.hidden_size,
            num_layers=layers or s.teacher.num_layers,
            num_heads=s.teacher.num_heads,
            seed=1,
        )
        student: Any = tiny_llama(
            tok,
            hidden_size=s.student.hidden_size,
            num_layers=layers or s.student.num_layers,
            num_heads=s.student.num_heads,
            seed=2,
        )
        return tok, teacher, student
    if name == "qwen0.5b":
        shape = dict(QWEN05_SHAPE)
        if layers is not None:
            shape["num_hidden_layers"] = layers
        tok = wide_tokenizer(int(shape["vocab_size"]))
        config = Qwen2Config(
            **shape,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            teacher = Qwen2ForCausalLM(config)
            torch.manual_seed(2)
            student = Qwen2ForCausalLM(config)
        return tok, teacher, student
    raise ValueError(f"model must be 'toy' or 'qwen0.5b', got {name!r}")


def _items(n: int, seed: int = 7) -> list[Any]:
    from askd_ref.engine.items import PromptItem, Response
    from askd_ref.toy import ToyTask

    _, problems = ToyTask().split(seed=seed, n_eval=n)
    return [
        PromptItem(index=i, prompt=p.prompt, reference=p.reference, tgos=(Response(text=p.solution),))
        for i, p in enumerate(problems)
    ]


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """One step-benchmark configuration: prompts per step, SGOs per prompt, lengths, precision."""

    prompts: int = 4
    sgo_per_prompt: int = 2
    max_new_tokens: int = 16
    method: str = "askd"
    loss_path: Literal["chunked", "full"] = "chunked"
    steps: int = 3
    warmup: int = 1
    bf16: bool = False
    seed: int = 0


def make_trainer(
    tok: Any, teacher: Any, student: Any, settings: StepSettings, out_dir: Path, device: str, *, steps: int
) -> Any:
    """An on-policy :class:`~askd_ref.engine.trainer.ASKDTrainer` for ``steps`` optimizer steps (SGD)."""
    from askd_ref.engine.config import ASKDConfig
    from askd_ref.engine.trainer import ASKDTrainer

    cfg = ASKDConfig(
        method=settings.method,
        sgo_regime="on_policy",
        loss_path=settings.loss_path,
        sgo_per_prompt=settings.sgo_per_prompt,
        max_new_tokens=settings.max_new_tokens,
        quality="exact_match",
    )
    args = TrainingArguments(
        output_dir=str(out_dir),
        per_device_train_batch_size=settings.prompts,
        learning_rate=1e-3,
        lr_scheduler_type="constant",
        optim="sgd",
        max_grad_norm=0.0,
        max_steps=steps,
        logging_steps=10**9,
        save_strategy="no",
        report_to=[],
        use_cpu=device == "cpu",
        bf16=settings.bf16,
        disable_tqdm=True,
        seed=settings.seed,
    )
    return ASKDTrainer(
        model=student,
        teacher=teacher,
        args=args,
        config=cfg,
        train_dataset=_items(settings.prompts * steps),
        processing_class=tok,
    )


def time_steps(
    tok: Any, teacher: Any, student: Any, settings: StepSettings, out_dir: Path, device: str
) -> list[dict[str, float]]:
    """Phase times of ``settings.warmup + settings.steps`` trainer steps (warm-up ones included)."""
    trainer = make_trainer(
        tok, teacher, student, settings, out_dir, device, steps=settings.warmup + settings.steps
    )
    from askd_ref.toy.pipeline import quiet_trainer_output

    quiet_trainer_output(trainer, progress=False)
    with StepTimer(torch.device(device)).attach(trainer, trainer.teacher, trainer.model) as timer:
        trainer.train()
    return timer.steps


# ----------------------------------------------------------------------------------------------
# Generation throughput.
# ----------------------------------------------------------------------------------------------


def _hf_generate(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    n: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> int:
    """``model.generate`` with the same sampling; returns the number of generated tokens (EOS kept)."""
    from askd_ref.engine.tokens import encode_prompt

    device = next(model.parameters()).device
    encoded = [encode_prompt(tok, p) for p in prompts]
    width = max(len(e) for e in encoded)
    pad = tok.pad_token_id
    ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded], device=device)
    attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=attn,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=0,
                max_new_tokens=max_new_tokens,
                num_return_sequences=n,
                pad_token_id=pad,
                eos_token_id=tok.eos_token_id,
            )
    finally:
        model.train(was_training)
    new = out[:, width:]
    count = 0
    for row in new.tolist():
        for t in row:
            count += 1
            if t == tok.eos_token_id:
                break
    return count


def generation_throughput(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    n: int = 2,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 16,
    repeats: int = 3,
) -> dict[str, Any]:
    """Generated tokens per second: askd-ref's
    :func:`~askd_ref.engine.generation.generate` vs ``model.generate``.

    Both sample ``n`` responses per prompt at the same temperature, top-p (top-k off) and
    length, in one batch; one untimed warm-up call each, then ``repeats`` alternating timed
    calls; the median rate is reported.
    """
    from askd_ref.engine.generation import generate

    def ours() -> int:
        gens = generate(
            model,
            tok,
            prompts,
            n=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            seed=0,
            batch_size=len(prompts) * n,
        )
        return sum(len(g.token_ids) for g in gens)

    def theirs() -> int:
        return _hf_generate(model, tok, prompts, n, temperature, top_p, max_new_tokens)

    cuda = next(model.parameters()).device.type == "cuda"
    rates: dict[str, list[float]] = {"askd_generate": [], "hf_generate": []}
    for fn in (ours, theirs):
        fn()
    for _ in range(repeats):
        for name, fn in (("askd_generate", ours), ("hf_generate", theirs)):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            tokens = fn()
            if cuda:
                torch.cuda.synchronize()
            rates[name].append(tokens / (time.perf_counter() - t0))
    result: dict[str, Any] = {k: statistics.median(v) for k, v in rates.items()}
    result["all_tokens_per_s"] = rates
    result["ratio_askd_over_hf"] = result["askd_generate"] / result["hf_generate"]
    return result


# ----------------------------------------------------------------------------------------------
# The driver.
# ----------------------------------------------------------------------------------------------


def _summary(steps: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = (*PHASES, "total")
    return {k: statistics.median(s[k] for s in steps) for k in keys}


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"load average (1, 5, 15 min) at start: {results['load_average_start']}, "
        f"at end: {results['load_average_end']}; device: {results['device']}",
        "",
        "| model | " + " | ".join(PHASES) + " | total (s) |",
        "|---|" + "---:|" * (len(PHASES) + 1),
    ]
    for name, r in results["models"].items():
        med = r["median_s"]
        cells = [f"{med[p]:.3f} ({100 * med[p] / med['total']:.0f}%)" for p in PHASES]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {med['total']:.3f} |")
    lines += [
        "",
        "| model | askd generate (tok/s) | model.generate (tok/s) | askd / HF |",
        "|---|---:|---:|---:|",
    ]
    for name, r in results["models"].items():
        g = r.get("generation")
        if g:
            lines.append(
                f"| {name} | {g['askd_generate']:.1f} | {g['hf_generate']:.1f} "
                f"| {g['ratio_askd_over_hf']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def run_step_bench(
    out_dir: Path,
    *,
    models: Sequence[str] = ("toy", "qwen0.5b"),
    settings: StepSettings | dict[str, StepSettings] | None = None,
    device: str = "cpu",
    layers: int | None = None,
    generation: bool = True,
    generation_repeats: int = 3,
) -> dict[str, Any]:
    """Time trainer steps per model, and generation throughput; write ``step-bench.json`` and ``.md``.

    ``settings``: one :class:`StepSettings` for every model, or one per model name (default:
    ``StepSettings()`` for the toy models, 2 prompts × 2 SGOs of 8 new tokens for qwen0.5b).
    """
    from askd_ref.io import atomic_write_json, atomic_write_text

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch.cuda.is_available() is False")
    defaults = {
        "toy": StepSettings(),
        "qwen0.5b": StepSettings(prompts=2, sgo_per_prompt=2, max_new_tokens=8),
    }
    out_dir = Path(out_dir)
    results: dict[str, Any] = {
        "load_average_start": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        "device": describe_device(device),
        "torch": torch.__version__,
        "models": {},
    }
    for name in models:
        if isinstance(settings, dict):
            s = settings[name]
        else:
            s = settings if settings is not None else defaults.get(name, StepSettings())
        tok, teacher, student = build_models(name, layers=layers)
        teacher.to(device)
        student.to(device)
        steps = time_steps(tok, teacher, student, s, out_dir / f"trainer-{name}", device)
        entry: dict[str, Any] = {
            "settings": dataclasses.asdict(s),
            "parameters_student": sum(p.numel() for p in student.parameters()),
            "vocab": len(tok),
            "steps_s": steps,
            "median_s": _summary(steps[s.warmup :] or steps),
        }
        if generation:
            prompts = [it.prompt for it in _items(s.prompts)]
            entry["generation"] = generation_throughput(
                student,
                tok,
                prompts,
                n=s.sgo_per_prompt,
                max_new_tokens=s.max_new_tokens,
                repeats=generation_repeats,
            )
        results["models"][name] = entry
        del tok, teacher, student
    results["load_average_end"] = " ".join(f"{v:.2f}" for v in os.getloadavg())
    atomic_write_json(out_dir / "step-bench.json", results)
    atomic_write_text(out_dir / "step-bench.md", _markdown(results))
    return results


