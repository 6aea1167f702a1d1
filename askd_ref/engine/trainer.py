"""``ASKDTrainer``: a thin :class:`transformers.Trainer` adapter around the askd-ref losses.

Per optimizer step, for each prompt of the micro-batch the trainer

1. takes its teacher-generated outputs (TGOs, from the data) and its student-generated outputs
   (SGOs): sampled now from the current student (``sgo_regime="on_policy"``, E12), taken from a
   pool sampled at the start of the epoch (``"batched"``, DistiLLM-2 style, E13 with the stored
   behaviour log-probs), or read from the data (``"offline"``, E13);
2. scores every sample with the quality signal (spec §5) unless the data already carries a
   quality;
3. runs the teacher (eval mode, no gradient) and the student — through the (DDP-)wrapped model
   so gradient hooks fire — on prompt+response, slices padded vocabulary heads to the shared
   tokenizer vocabulary (spec §8), masks prompt, padding and post-EOS positions;
4. calls the askd-ref loss of ``config.method`` — :func:`askd_ref.compute_loss` on a
   :class:`askd_ref.DistillBatch` (``loss_path="full"``) or the chunked entry point of
   :mod:`askd_ref.chunked`, which never materialises ``(batch, seq, vocab)`` logits
   (``loss_path="chunked"``, the default) — with the *global* sample counts.

Reduction (E14): every loss divides its per-sample sum by the number of TGOs / SGOs in the
whole optimizer step — all gradient-accumulation micro-batches on all ranks. The counts are
known before any forward (TGOs per prompt in the data, ``sgo_per_prompt`` SGOs per prompt), so
:meth:`ASKDTrainer.get_batch_samples` sums them over the accumulation window and all-reduces
them over ranks. With ``reduction="token"`` the token-level terms divide by the number of TGO /
SGO response tokens of the whole step instead; on-policy SGOs of the window are then sampled in
:meth:`ASKDTrainer.get_batch_samples`, before the first micro-batch, so that their lengths are
known (the student does not change within the window and every sample has its own seed, so
the samples are the ones the micro-batches would have drawn). DDP averages gradients over
ranks, so each rank's loss is multiplied by the world size (as TRL does). The result: one step
with gradient accumulation and/or data parallelism has the gradient of one large batch holding
all its samples (tested).
"""

import contextlib
import dataclasses
import math
import os
import shutil
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler
from transformers import Trainer, TrainerCallback

from askd_ref.engine.data import Sample
from askd_ref.engine.forward import hidden_states, sequence_logprobs, shared_vocab_size
from askd_ref.engine.generation import generate, sample_seed
from askd_ref.engine.tokens import TokenBatch, encode_prompt, encode_response, pad_batch, render_chat_prompts
from askd_ref.io import atomic_write_json
from askd_ref.losses import REDUCTIONS, DistillBatch, LossOutput
from askd_ref.methods import (
    METHOD_NEEDS,
    METHODS,
    MethodNeeds,
    MethodSpec,
    check_method_params,
    compute_loss,
    method_spec,
)
from askd_ref.options import ASKDOptions
from askd_ref.quality import QualitySignal, get_signal, is_teacher_likelihood, validate_scores

__all__ = [
    "METHOD_NEEDS",
    "ASKDConfig",
    "ASKDTrainer",
    "MethodNeeds",
    "PromptDataset",
    "PromptItem",
    "Response",
    "prompt_items_from_records",
    "prompt_items_from_samples",
]

SGORegime = Literal["on_policy", "batched", "offline", "none"]
LossPath = Literal["chunked", "full"]


@dataclasses.dataclass(frozen=True)
class ASKDConfig:
    """What to distil and how (everything that is not a ``TrainingArguments`` field).

    >>> ASKDConfig().method, ASKDConfig().sgo_regime, ASKDConfig().loss_path
    ('askd', 'on_policy', 'chunked')
    """

    method: str = "askd"
    """Training method: ``"askd"`` (E11–E14), ``"askd-dense"`` (E15) or a §6 baseline — any name
    of :data:`askd_ref.METHODS`."""

    options: ASKDOptions = dataclasses.field(default_factory=ASKDOptions)
    """The §9 options of ASKD (used by ``askd`` and ``askd-dense``; baselines have fixed
    parameters)."""

    quality: str | None = "exact_match"
    """Name of the quality signal (:func:`askd_ref.quality.get_signal`) scoring samples that
    carry no quality; ``"teacher_likelihood"`` is computed from the trainer's own teacher pass
    (no extra forward). ``None``: no scoring (only for methods that do not use quality, or data
    that is pre-scored). A signal object passed to :class:`ASKDTrainer` overrides this."""

    quality_kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Constructor arguments of the quality signal (e.g. ``timeout`` for unit tests)."""

    sgo_regime: SGORegime = "on_policy"
    """Where SGOs come from: ``"on_policy"`` — sampled from the current student at every step
    (E12); ``"batched"`` — sampled for every prompt at the start of each epoch and reused during
    the epoch with importance ratios from the stored behaviour log-probs (E13, DistiLLM-2's
    batched on-policy data); ``"offline"`` — the ``source="student"`` records of the data
    (E13; they must carry ``behaviour_logprob``); ``"none"`` — no SGOs (TGO-only methods)."""

    sgo_per_prompt: int = 1
    """SGOs sampled per prompt (``on_policy`` and ``batched``)."""

    temperature: float = 1.0
    """Sampling temperature of SGO generation (1 keeps E13's ratio at 1 for fresh samples)."""

    top_p: float = 1.0
    """Nucleus size of SGO generation."""

    max_new_tokens: int = 64
    """Length limit of a generated SGO (EOS included)."""

    generation_batch_size: int = 64
    """Sequences per forward during SGO generation."""

    loss_path: LossPath = "chunked"
    """``"chunked"``: losses from final hidden states and the output projection, chunk by chunk
    (:mod:`askd_ref.chunked`; no ``(batch, seq, vocab)`` logits); ``"full"``: materialise
    log-probs and call :func:`askd_ref.compute_loss`. Both give the same loss and gradients
    (tested)."""

    chunk_size: int = 256
    """Token positions per chunk on the chunked path."""

    loss_temperature: float = 1.0
    """τ of the loss: student and teacher logits are divided by τ before every log-softmax of
    the loss (no τ² factor; TRL's and Liger-Kernel's ``temperature``). ``temperature`` above is
    the sampling temperature of SGO generation, a different thing."""

    reduction: str = "sample"
    """Reduction of the token-level loss terms: ``"sample"`` (token mean per sample, then the
    mean over samples) or ``"token"`` (one token mean over all loss positions of the optimizer
    step, with global counts over accumulation and ranks; TRL's, Liger's and DistiLLM's)."""

    alpha: float | None = None
    """α of ``distillm`` / ``distillm2`` (``None``: 0.1)."""

    beta: float | None = None
    """β of ``gkd`` (JSD_β; ``None``: 0.5) or DistiLLM-2's term weight of ``distillm2``
    ((2 − β)·TGO term + β·SGO term; ``None``: 1)."""

    loss_type: str | None = None
    """``distillm2`` only: ``"distillm_v2"`` (default) or ``"distillm_v1"`` (SRKL on TGOs too)."""

    eps_a: float | None = None
    """ε_A of ``advantage_kd`` (``None``: 1e-4)."""

    gradual_beta: bool = False
    """``distillm2`` only: DistiLLM-2's schedule β = 1 + 0.5·min(1, 2·step/max_steps) of the term
    weight, recomputed every optimizer step (excludes a fixed ``beta``)."""

    log_samples_every: int = 0
    """Every this many optimizer steps (0: never), write a few of the step's TGOs and SGOs with
    their quality, Δ, α and coefficient (w for TGOs, ĉ for SGOs) to
    ``<output_dir>/samples.jsonl`` and, when a TensorBoard callback is active, as TensorBoard
    text (tag ``samples``)."""

    log_samples_count: int = 2
    """How many TGOs and how many SGOs :attr:`log_samples_every` writes each time."""

    lmbda: float | None = None
    """GKD's on-policy fraction λ ∈ [0, 1] (``sgo_regime="on_policy"``, methods that train on both
    kinds): each optimizer step trains on freshly sampled SGOs with probability λ and on the
    data's TGOs otherwise (a draw from ``(seed, step)``, the same on every rank and on resume).
    ``None``: every step trains on both kinds."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.options, ASKDOptions):
            raise TypeError(f"options must be an ASKDOptions, got {type(self.options).__name__}")
        if self.sgo_regime not in ("on_policy", "batched", "offline", "none"):
            raise ValueError(
                f"sgo_regime must be 'on_policy', 'batched', 'offline' or 'none', got {self.sgo_regime!r}"
            )
        if self.loss_path not in ("chunked", "full"):
            raise ValueError(f"loss_path must be 'chunked' or 'full', got {self.loss_path!r}")
        positive = (
            "sgo_per_prompt", "max_new_tokens", "generation_batch_size", "chunk_size", "log_samples_count",
        )
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        t = self.temperature
        if isinstance(t, bool) or not (isinstance(t, int | float) and t > 0 and math.isfinite(t)):
            raise ValueError(f"temperature must be a positive finite float, got {self.temperature!r}")
        if not (isinstance(self.top_p, int | float) and 0 < self.top_p <= 1):
            raise ValueError(f"top_p must lie in (0, 1], got {self.top_p!r}")
        needs = self.needs
        if needs.sgo and self.sgo_regime == "none":
            raise ValueError(f"method {self.method!r} trains on SGOs; sgo_regime='none' gives it none")
        if self.quality is not None and not isinstance(self.quality, str):
            raise TypeError(f"quality must be a signal name or None, got {type(self.quality).__name__}")
        lt = self.loss_temperature
        if isinstance(lt, bool) or not (isinstance(lt, int | float) and lt > 0 and math.isfinite(lt)):
            raise ValueError(f"loss_temperature must be a positive finite float, got {lt!r}")
        every = self.log_samples_every
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"log_samples_every must be a non-negative int, got {every!r}")
        if self.reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be 'sample' or 'token', got {self.reduction!r}")
        check_method_params(
            self.method, alpha=self.alpha, beta=self.beta, loss_type=self.loss_type, eps_a=self.eps_a
        )
        if self.gradual_beta and self.spec.beta_schedule is None:
            raise ValueError(f"gradual_beta is DistiLLM-2's schedule (method distillm2), not {self.method!r}")
        if self.gradual_beta and self.beta is not None:
            raise ValueError("gradual_beta sets beta at every step; do not also give a fixed beta")
        if self.lmbda is not None:
            lm = self.lmbda
            if isinstance(lm, bool) or not (isinstance(lm, int | float) and 0 <= lm <= 1):
                raise ValueError(f"lmbda must lie in [0, 1], got {lm!r}")
            if self.sgo_regime != "on_policy":
                raise ValueError(
                    "lmbda is the on-policy fraction; it needs sgo_regime='on_policy', "
                    f"got {self.sgo_regime!r}"
                )
            if not (needs.tgo and needs.sgo):
                raise ValueError(
                    f"lmbda chooses between TGO and SGO steps; method {self.method!r} trains on one kind"
                )

    def method_params(self, step: int = 0, max_steps: int = 1) -> dict[str, Any]:
        """The method parameters given to the loss at optimizer step ``step`` of ``max_steps``."""
        params = check_method_params(
            self.method, alpha=self.alpha, beta=self.beta, loss_type=self.loss_type, eps_a=self.eps_a
        )
        schedule = self.spec.beta_schedule
        if self.gradual_beta and schedule is not None:
            params["beta"] = schedule(step, max(max_steps, 1))
        return params

    @property
    def spec(self) -> MethodSpec:
        """The registry entry of the method (:mod:`askd_ref.methods`)."""
        return method_spec(self.method)

    @property
    def needs(self) -> MethodNeeds:
        """:data:`METHOD_NEEDS` of the method (``askd`` with a dense term needs full log-probs)."""
        return self.spec.needs_with(self.options)


@dataclasses.dataclass(frozen=True)
class Response:
    """One response to a prompt, as the trainer uses it."""

    text: str
    """The response text (for quality scoring)."""
    token_ids: tuple[int, ...] | None = None
    """Exact response token ids (EOS included when complete); ``None`` → tokenise ``text`` + EOS."""
    quality: float | None = None
    """Pre-computed quality r ∈ [0, 1], or ``None`` to score with the signal."""
    behaviour_logprob: float | None = None
    """Σ_t log μ(y_t|c_t) under the policy that sampled it (off-policy SGOs, E13)."""


@dataclasses.dataclass(frozen=True)
class PromptItem:
    """A prompt with its TGOs (and offline SGOs): one row of the training dataset."""

    index: int
    """Stable position in the dataset (seeds SGO sampling; groups samples of one prompt)."""
    prompt: str
    reference: str | None = None
    tests: str | None = None
    tgos: tuple[Response, ...] = ()
    sgos: tuple[Response, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def sample(self, response: Response, source: Literal["teacher", "student"]) -> Sample:
        """The spec §8 record of one of this prompt's responses (for quality signals)."""
        return Sample(
            prompt=self.prompt,
            response=response.text,
            source=source,
            quality=response.quality,
            reference=self.reference,
            tests=self.tests,
            behaviour_logprob=response.behaviour_logprob,
            extra=dict(self.extra),
        )


def _response_from_sample(sample: Sample) -> Response:
    ids = sample.extra.get("response_ids")
    if ids is not None:
        ok = isinstance(ids, list | tuple) and all(type(i) is int for i in ids)
        if not ok:
            raise ValueError(f"extra['response_ids'] of prompt {sample.prompt[:40]!r} must be a list of ints")
        token_ids: tuple[int, ...] | None = tuple(ids)
    else:
        token_ids = None
    return Response(
        text=sample.response,
        token_ids=token_ids,
        quality=sample.quality,
        behaviour_logprob=sample.behaviour_logprob,
    )


def prompt_items_from_samples(samples: Sequence[Sample]) -> list[PromptItem]:
    """Group spec §8 samples by prompt text (first-appearance order) into :class:`PromptItem` rows.

    ``source="teacher"`` records become TGOs, ``source="student"`` records offline SGOs. Samples
    of one prompt must agree on ``reference`` and ``tests``.

    >>> items = prompt_items_from_samples([Sample("1+1=", "2", "teacher", reference="2"),
    ...                                    Sample("1+1=", "3", "student", reference="2")])
    >>> len(items), len(items[0].tgos), len(items[0].sgos)
    (1, 1, 1)
    """
    order: list[str] = []
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if not isinstance(s, Sample):
            raise TypeError(f"samples must be Sample records, got {type(s).__name__}")
        if s.prompt not in groups:
            order.append(s.prompt)
            groups[s.prompt] = []
        groups[s.prompt].append(s)
    items: list[PromptItem] = []
    for index, prompt in enumerate(order):
        group = groups[prompt]
        first = group[0]
        for s in group[1:]:
            if s.reference != first.reference or s.tests != first.tests:
                raise ValueError(f"samples of prompt {prompt[:40]!r} disagree on their reference or tests")
        items.append(
            PromptItem(
                index=index,
                prompt=prompt,
                reference=first.reference,
                tests=first.tests,
                tgos=tuple(_response_from_sample(s) for s in group if s.source == "teacher"),
                sgos=tuple(_response_from_sample(s) for s in group if s.source == "student"),
                extra={k: v for k, v in first.extra.items() if k not in ("response_ids", "finished")},
            )
        )
    return items


def prompt_items_from_records(records: Any, tokenizer: Any) -> list[PromptItem]:
    """:class:`PromptItem` rows from an iterable of record dicts (e.g. a ``datasets.Dataset``).

    Each row is read as a spec §8 record (:meth:`askd_ref.engine.data.Sample.from_record`; columns that
    are ``None`` in a row count as absent and a missing ``source`` means ``"teacher"``); chat
    rows (``messages``) get their prompts rendered with ``tokenizer``'s chat template; then the
    rows are grouped by prompt (:func:`prompt_items_from_samples`).
    """
    samples: list[Sample] = []
    for i, row in enumerate(records):
        if not isinstance(row, Mapping):
            raise TypeError(f"row {i} of the training data must be a mapping, got {type(row).__name__}")
        record = {k: v for k, v in row.items() if v is not None}
        record.setdefault("source", "teacher")
        try:
            samples.append(Sample.from_record(record))
        except ValueError as err:
            raise ValueError(f"row {i} of the training data: {err}") from None
    return prompt_items_from_samples(render_chat_prompts(samples, tokenizer))


def _is_hf_dataset(obj: object) -> bool:
    """A ``datasets.Dataset`` (checked without importing ``datasets`` when it is not loaded)."""
    import sys

    module = sys.modules.get("datasets")
    return module is not None and isinstance(obj, module.Dataset)


class PromptDataset(Dataset[PromptItem]):
    """A list of :class:`PromptItem` as a torch dataset (indices must be 0..n−1 in order)."""

    def __init__(self, items: Sequence[PromptItem]) -> None:
        items = list(items)
        if not items:
            raise ValueError("the training data holds no prompts")
        for i, item in enumerate(items):
            if not isinstance(item, PromptItem):
                raise TypeError(f"item {i} must be a PromptItem, got {type(item).__name__}")
            if item.index != i:
                raise ValueError(f"item {i} has index {item.index}; PromptItem.index must equal its position")
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> PromptItem:
        return self.items[i]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)``.

    Every process builds the same order (accelerate then deals batches out), and a resumed run
    rebuilds it exactly; ``set_epoch`` is called by the Trainer at each epoch.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


def _collate(items: list[PromptItem]) -> dict[str, Any]:
    return {"items": items}


@dataclasses.dataclass(frozen=True)
class _Row:
    item: PromptItem
    response: Response
    is_tgo: bool
    ids: tuple[int, ...]
    quality: float | None


class _EpochPoolCallback(TrainerCallback):
    """Refreshes the batched-SGO pool at the start of each epoch."""

    def __init__(self, trainer: "ASKDTrainer") -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
        self.trainer._prepare_epoch(math.floor(float(state.epoch or 0.0) + 1e-9))
        return control


_POOL_FILE = "askd_sgo_pool.json"


class ASKDTrainer(Trainer):
    """:class:`transformers.Trainer` for ASKD and the §6 baselines (see the module docstring).

    Args:
        model: the student (a causal LM); trained.
        teacher: the teacher causal LM; moved to the training device, put in eval mode, frozen.
        args: :class:`transformers.TrainingArguments` (batch size = prompts per device;
            ``remove_unused_columns`` is forced off).
        config: :class:`ASKDConfig`.
        train_dataset: a :class:`PromptDataset`, a sequence of :class:`PromptItem`, or a
            :class:`datasets.Dataset` whose rows are spec §8 records — ``prompt``/``response`` or
            chat ``messages`` columns, optional ``source`` (default ``"teacher"``), ``quality``,
            ``reference``, ``tests``, ``behaviour_logprob`` (see
            :func:`prompt_items_from_records`).
        processing_class: the shared tokenizer.
        quality_signal: a :class:`~askd_ref.quality.QualitySignal` overriding ``config.quality``.
        peft_config: a ``peft`` config (e.g. ``LoraConfig``): the student is wrapped with
            ``peft.get_peft_model`` and only its adapter weights train; checkpoints and
            :meth:`save_model` hold the adapter, :meth:`save_merged_model` writes the merged
            model. The teacher is never wrapped. Needs the ``peft`` extra.
        **kwargs: passed to :class:`transformers.Trainer` (callbacks, optimizers, …).
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: Any,
        teacher: Any,
        args: Any,
        config: ASKDConfig,
        train_dataset: PromptDataset | Sequence[PromptItem] | Any,
        processing_class: Any,
        quality_signal: QualitySignal | None = None,
        peft_config: Any = None,
        **kwargs: Any,
    ) -> None:
        if peft_config is not None:
            model = _apply_peft(model, peft_config, teacher)
        if not isinstance(config, ASKDConfig):
            raise TypeError(f"config must be an ASKDConfig, got {type(config).__name__}")
        if processing_class is None:
            raise ValueError("processing_class (the shared tokenizer) is required")
        if teacher is None and config.spec.needs_teacher:
            raise ValueError(f"method {config.method!r} needs a teacher model")
        if _is_hf_dataset(train_dataset):
            train_dataset = prompt_items_from_records(train_dataset, processing_class)
        dataset = train_dataset if isinstance(train_dataset, PromptDataset) else PromptDataset(train_dataset)
        self.askd_config = config
        self.tokenizer = processing_class
        heads = {"student": model} if teacher is None else {"student": model, "teacher": teacher}
        self.vocab_size = shared_vocab_size(processing_class, **heads)
        needs = config.needs
        if needs.tgo:
            for item in dataset.items:
                if not item.tgos:
                    raise ValueError(
                        f"prompt {item.index} ({item.prompt[:40]!r}) has no teacher-generated output; "
                        f"method {config.method!r} trains on TGOs"
                    )
        if needs.sgo and config.sgo_regime == "offline":
            for item in dataset.items:
                if not item.sgos:
                    raise ValueError(f"prompt {item.index} ({item.prompt[:40]!r}) has no offline SGO")
                if any(r.behaviour_logprob is None for r in item.sgos):
                    raise ValueError(
                        f"an offline SGO of prompt {item.index} ({item.prompt[:40]!r}) has no "
                        "behaviour_logprob (E13 needs it; write SGO files with `askd generate`)"
                    )
        if args.remove_unused_columns:
            args.remove_unused_columns = False
        super().__init__(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=_collate,
            processing_class=processing_class,
            **kwargs,
        )
        self.prompt_dataset = dataset
        _check_fsdp_active(self)
        self.teacher = teacher
        if teacher is not None:
            self.teacher = teacher.to(self.args.device)
            self.teacher.eval()
            self.teacher.requires_grad_(False)
        self.quality_signal = quality_signal if quality_signal is not None else self._build_signal()
        if needs.quality and self.quality_signal is None and config.quality != "teacher_likelihood":
            missing = [
                it.index for it in dataset.items for r in (*it.tgos, *it.sgos) if r.quality is None
            ] or ([0] if config.sgo_regime in ("on_policy", "batched") else [])
            if missing:
                raise ValueError(f"method {config.method!r} needs quality, but config.quality is None")
        self._tgo_quality: dict[tuple[int, int], float] = {}
        self._pool: dict[int, tuple[Response, ...]] = {}
        self._pool_epoch: int | None = None
        self._window_counts: tuple[int, int, int, int] | None = None
        self._window_kinds: tuple[bool, bool] = (True, True)
        self._window_sgos: dict[int, tuple[Response, ...]] = {}
        self._samples_logged_step: int | None = None
        self._diag_sums: dict[str, float] = defaultdict(float)
        self._diag_counts: dict[str, int] = defaultdict(int)
        if needs.sgo and config.sgo_regime == "batched":
            self.add_callback(_EpochPoolCallback(self))

    # ---- set-up helpers -------------------------------------------------------------------

    def _build_signal(self) -> QualitySignal | None:
        name = self.askd_config.quality
        if name is None or is_teacher_likelihood(name):
            return None
        return get_signal(name, **dict(self.askd_config.quality_kwargs))

    def _get_train_sampler(self, train_dataset: Any = None) -> Sampler[int]:
        return EpochShuffleSampler(len(self.prompt_dataset), int(self.args.seed))

    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    # ---- SGO sources ------------------------------------------------------------------------

    def _sample_sgos(self, items: Sequence[PromptItem], key: str) -> dict[int, tuple[Response, ...]]:
        """Sample ``sgo_per_prompt`` responses per item from the current student."""
        cfg = self.askd_config
        student = self.accelerator.unwrap_model(self.model_wrapped)
        gens = generate(
            student,
            self.tokenizer,
            [it.prompt for it in items],
            n=cfg.sgo_per_prompt,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            max_new_tokens=cfg.max_new_tokens,
            seed=f"{self.args.seed}-{key}",
            prompt_ids=[it.index for it in items],
            batch_size=cfg.generation_batch_size,
            vocab_size=self.vocab_size,
        )
        out: dict[int, list[Response]] = defaultdict(list)
        for g in gens:
            out[items[g.prompt_index].index].append(
                Response(text=g.text, token_ids=g.token_ids, behaviour_logprob=g.behaviour_logprob)
            )
        return {k: tuple(v) for k, v in out.items()}

    def _prepare_epoch(self, epoch: int) -> None:
        """Batched regime: sample the SGO pool of ``epoch`` (all prompts), unless already loaded."""
        if self._pool_epoch == epoch and self._pool:
            return
        items = self.prompt_dataset.items
        rank, world = int(self.accelerator.process_index), self.world_size
        mine = [it for it in items if it.index % world == rank]
        local = self._sample_sgos(mine, f"epoch{epoch}") if mine else {}
        if world > 1:
            from accelerate.utils import gather_object

            merged: dict[int, tuple[Response, ...]] = {}
            for part in gather_object([local]):
                merged.update(part)
            local = merged
        self._pool = local
        self._pool_epoch = epoch

    def _sgos_for(self, items: Sequence[PromptItem]) -> dict[int, tuple[Response, ...]]:
        regime = self.askd_config.sgo_regime
        if regime == "offline":
            return {it.index: it.sgos for it in items}
        if regime == "batched":
            if self._pool_epoch is None:
                self._prepare_epoch(0)
            return {it.index: self._pool[it.index] for it in items}
        if self._window_sgos and all(it.index in self._window_sgos for it in items):
            return {it.index: self._window_sgos[it.index] for it in items}  # sampled for the window
        return self._sample_sgos(items, f"step{self.state.global_step}")

    def _num_sgos(self, item: PromptItem) -> int:
        regime = self.askd_config.sgo_regime
        if regime == "offline":
            return len(item.sgos)
        if regime == "batched" and self._pool_epoch is not None:
            return len(self._pool[item.index])
        return self.askd_config.sgo_per_prompt

    # ---- global counts ---------------------------------------------------------------------

    def _step_kinds(self, step: int) -> tuple[bool, bool]:
        """(TGOs, SGOs) trained on at optimizer step ``step``: both, unless ``lmbda`` draws one.

        The draw u ∈ [0, 1) hashes ``(seed, step)``: the same on every rank and after a resume.
        """
        lmbda = self.askd_config.lmbda
        if lmbda is None:
            return True, True
        u = sample_seed(int(self.args.seed), "lmbda", step) / 2.0**63
        return (False, True) if u < lmbda else (True, False)

    def _ids_of(self, response: Response) -> tuple[int, ...]:
        if response.token_ids is not None:
            return response.token_ids
        return tuple(encode_response(self.tokenizer, response.text))

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list[Any], None]:
        """Prefetch the accumulation window and compute the GLOBAL TGO/SGO counts of this step.

        With ``reduction="token"`` also the global TGO/SGO token counts (on-policy SGOs of the
        window are sampled here for that).
        """
        batches: list[Any] = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        cfg = self.askd_config
        needs = cfg.needs
        kinds = self._step_kinds(int(self.state.global_step))
        use_t, use_s = needs.tgo and kinds[0], needs.sgo and kinds[1]
        items = [it for b in batches for it in b["items"]]
        n_t = sum(len(it.tgos) for it in items) if use_t else 0
        n_s = sum(self._num_sgos(it) for it in items) if use_s else 0
        m_t = m_s = 0
        self._window_sgos = {}
        if cfg.reduction == "token" and items:
            if use_t:
                m_t = sum(len(self._ids_of(r)) for it in items for r in it.tgos)
            if use_s:
                sgos = self._sgos_for(items)
                if cfg.sgo_regime == "on_policy":
                    self._window_sgos = sgos
                m_s = sum(len(self._ids_of(r)) for it in items for r in sgos[it.index])
        counts = torch.tensor([n_t, n_s, m_t, m_s], dtype=torch.long, device=self.args.device)
        if self.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._window_counts = (int(counts[0]), int(counts[1]), int(counts[2]), int(counts[3]))
        self._window_kinds = kinds
        return batches, None

    # ---- the loss ----------------------------------------------------------------------------

    def _rows(self, items: Sequence[PromptItem], kinds: tuple[bool, bool] = (True, True)) -> list[_Row]:
        needs = self.askd_config.needs
        rows: list[_Row] = []
        ids_of = self._ids_of
        if needs.tgo and kinds[0]:
            for it in items:
                for j, r in enumerate(it.tgos):
                    q = r.quality if r.quality is not None else self._tgo_quality.get((it.index, j))
                    rows.append(_Row(it, r, True, ids_of(r), q))
        if needs.sgo and kinds[1]:
            sgos = self._sgos_for(items)
            for it in items:
                for r in sgos[it.index]:
                    rows.append(_Row(it, r, False, ids_of(r), r.quality))
        self._score(rows)
        return rows

    def _score(self, rows: list[_Row]) -> None:
        signal = self.quality_signal
        if signal is None:
            return
        todo = [i for i, row in enumerate(rows) if row.quality is None]
        if not todo:
            return
        samples = [
            rows[i].item.sample(rows[i].response, "teacher" if rows[i].is_tgo else "student") for i in todo
        ]
        scores = signal.score(samples)
        scores = validate_scores(signal.name, samples, scores)
        for i, q in zip(todo, scores, strict=True):
            row = rows[i]
            rows[i] = dataclasses.replace(row, quality=q)
            if row.is_tgo:
                j = row.item.tgos.index(row.response)
                self._tgo_quality[(row.item.index, j)] = q

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """The askd-ref loss of this micro-batch, normalised by the global counts, × world size."""
        items: list[PromptItem] = inputs["items"]
        # inside the training loop: the kinds and counts of the whole step (get_batch_samples);
        # otherwise both kinds and local counts
        training = bool(model.training)
        rows = self._rows(items, self._window_kinds if training else (True, True))
        counts = self._window_counts if training else None
        out = self.loss_from_rows(model, rows, counts)
        diagnostics = dict(out.diagnostics)
        if self.askd_config.gradual_beta:
            diagnostics["distillm2/beta"] = float(self._method_params()["beta"])
        if self.askd_config.lmbda is not None and training:
            diagnostics["lmbda/on_policy_step"] = float(not self._window_kinds[0])
        self._record(diagnostics, rows)
        every = self.askd_config.log_samples_every
        step = int(self.state.global_step)
        if training and every and step % every == 0 and self._samples_logged_step != step:
            self._samples_logged_step = step
            if self.is_world_process_zero():
                self._log_samples(model, rows, step)
        loss = out.loss * self.world_size
        return (loss, {"diagnostics": out.diagnostics}) if return_outputs else loss

    def _token_batch(self, rows: Sequence[_Row]) -> TokenBatch:
        unique = {r.item.index: r.item for r in rows}
        prompts = {i: encode_prompt(self.tokenizer, it.prompt) for i, it in unique.items()}
        pad = self.tokenizer.pad_token_id
        pad = self.tokenizer.eos_token_id if pad is None else pad
        return pad_batch([prompts[r.item.index] for r in rows], [r.ids for r in rows], pad_id=pad).to(
            self.args.device
        )

    def _method_params(self) -> dict[str, Any]:
        return self.askd_config.method_params(int(self.state.global_step), int(self.state.max_steps or 1))

    def _loss_kwargs(self, n_t: int, n_s: int, m_t: int | None, m_s: int | None) -> dict[str, Any]:
        """Counts, reduction and method parameters for :func:`compute_loss` / ``chunked_loss``."""
        cfg = self.askd_config
        needs = cfg.needs
        kw: dict[str, Any] = {
            "options": cfg.options,
            "num_tgo": n_t if needs.tgo else None,
            "num_sgo": n_s if needs.sgo else None,
            **self._method_params(),
        }
        if cfg.reduction == "token":
            kw["reduction"] = "token"
            kw["num_tgo_tokens"] = m_t if needs.tgo else None
            kw["num_sgo_tokens"] = m_s if needs.sgo else None
        return kw

    def loss_from_rows(
        self, model: Any, rows: Sequence[_Row], counts: tuple[int, ...] | None = None
    ) -> LossOutput:
        """Forward teacher and student on ``rows`` and return the method's :class:`LossOutput`.

        ``counts`` = (global TGOs, global SGOs[, global TGO tokens, global SGO tokens]) of the
        optimizer step; ``None``: the rows' own counts (a loss of these rows alone).
        """
        cfg = self.askd_config
        needs = cfg.needs
        if counts is None:
            counts = (sum(r.is_tgo for r in rows), sum(not r.is_tgo for r in rows))
        n_t, n_s = counts[0], counts[1]
        m_t = counts[2] if len(counts) > 2 else None
        m_s = counts[3] if len(counts) > 3 else None
        tau = float(cfg.loss_temperature)
        batch = self._token_batch(rows)
        mask = batch.shifted_mask
        unscored = any(r.quality is None for r in rows)
        if needs.quality and unscored and not is_teacher_likelihood(cfg.quality):
            raise ValueError("some samples have no quality and no quality signal is configured")
        teacher_lik = is_teacher_likelihood(cfg.quality) and self.quality_signal is None
        is_tgo = torch.tensor([r.is_tgo for r in rows], dtype=torch.bool, device=batch.input_ids.device)
        group = torch.tensor([r.item.index for r in rows], dtype=torch.long, device=batch.input_ids.device)
        behaviour = None
        if cfg.sgo_regime in ("batched", "offline") and needs.sgo and not all(r.is_tgo for r in rows):
            behaviour = torch.tensor(
                [0.0 if r.is_tgo else float(r.response.behaviour_logprob or 0.0) for r in rows],
                dtype=torch.float64 if _model_dtype(model) == torch.float64 else torch.float32,
                device=batch.input_ids.device,
            )
        loss_kw = self._loss_kwargs(n_t, n_s, m_t, m_s)
        if cfg.loss_path == "chunked":
            return self._chunked_loss(model, rows, batch, is_tgo, group, behaviour, teacher_lik, loss_kw)
        teacher_token = teacher_full = quality_token = None
        if self.teacher is not None and (needs.full or needs.teacher_token or teacher_lik):
            with torch.no_grad():
                t_tok, t_full = sequence_logprobs(
                    self.teacher, batch, self.vocab_size, full=needs.full, temperature=tau
                )
                # the teacher-likelihood quality is a property of the teacher, at τ = 1
                quality_token = t_tok
                if teacher_lik and tau != 1.0:
                    quality_token = sequence_logprobs(self.teacher, batch, self.vocab_size)[0]
            teacher_token, teacher_full = t_tok, t_full
        q_tensor = self._quality_tensor(rows, quality_token, mask, teacher_lik, batch.input_ids.device)
        s_tok, s_full = sequence_logprobs(model, batch, self.vocab_size, full=needs.full, temperature=tau)
        dbatch = DistillBatch(
            mask=mask,
            is_tgo=is_tgo,
            quality=q_tensor,
            student_token_logp=s_tok if needs.token else None,
            teacher_token_logp=teacher_token if needs.teacher_token else None,
            student_logp=s_full,
            teacher_logp=teacher_full,
            behaviour_logp=behaviour,
            group=group,
        )
        with _no_autocast(batch.input_ids.device):  # the loss math stays fp32 under mixed precision
            return compute_loss(cfg.method, dbatch, **loss_kw)

    def _quality_tensor(
        self, rows: Sequence[_Row], teacher_token: Tensor | None, mask: Tensor, teacher_lik: bool, device: Any
    ) -> Tensor | None:
        if teacher_lik:
            if teacher_token is None:
                raise ValueError("teacher-likelihood quality needs the teacher's token log-probs")
            from askd_ref.quality.likelihood import likelihood_from_token_logprobs

            lik = likelihood_from_token_logprobs(teacher_token.detach(), mask)
            given = torch.tensor(
                [math.nan if r.quality is None else r.quality for r in rows],
                dtype=torch.float64,
                device=device,
            )
            return torch.where(torch.isnan(given), lik, given).to(torch.float32)
        if any(r.quality is None for r in rows):
            return None
        return torch.tensor([float(r.quality or 0.0) for r in rows], dtype=torch.float32, device=device)

    def _chunked_loss(
        self,
        model: Any,
        rows: Sequence[_Row],
        batch: TokenBatch,
        is_tgo: Tensor,
        group: Tensor,
        behaviour: Tensor | None,
        teacher_lik: bool,
        loss_kw: dict[str, Any],
    ) -> LossOutput:
        from askd_ref.chunked import chunked_loss, chunked_token_log_probs

        cfg = self.askd_config
        vocab = self.vocab_size
        mask = batch.shifted_mask
        targets = batch.input_ids[:, 1:]
        teacher_h = teacher_w = teacher_b = None
        teacher_token = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_h = hidden_states(self.teacher, batch)[:, :-1]
                teacher_w, teacher_b = _head(self.teacher, vocab)
                if teacher_lik:
                    teacher_token = chunked_token_log_probs(
                        teacher_h, teacher_w, targets, mask, bias=teacher_b, chunk_size=cfg.chunk_size
                    )
        q_tensor = self._quality_tensor(rows, teacher_token, mask, teacher_lik, batch.input_ids.device)
        student_h = hidden_states(model, batch)[:, :-1]
        student_w, student_b = _head(self.accelerator.unwrap_model(model), vocab)
        with _no_autocast(batch.input_ids.device):  # projections and losses in fp32 (chunked)
            return chunked_loss(
                cfg.method,
                student_hidden=student_h,
                student_weight=student_w,
                student_bias=student_b,
                teacher_hidden=teacher_h,
                teacher_weight=teacher_w,
                teacher_bias=teacher_b,
                target_ids=targets,
                mask=mask,
                is_tgo=is_tgo,
                quality=q_tensor,
                behaviour_logp=behaviour,
                group=group,
                chunk_size=cfg.chunk_size,
                temperature=float(cfg.loss_temperature),
                **loss_kw,
            )

    # ---- diagnostics -------------------------------------------------------------------------

    def sample_report(self, model: Any, rows: Sequence[_Row]) -> list[dict[str, Any]]:
        """Per row: kind, prompt, response (text, ids), quality, Δ, α, coefficient (w on TGOs, ĉ on SGOs).

        Δ is the pooled log-ratio of student to teacher (``options.normalize``, loss temperature)
        from a no-gradient forward of both models; α and the coefficient follow from Δ and the
        quality (None without a teacher or a quality).
        """
        from askd_ref.coefficients import clipped_sgo_coefficient, tgo_coefficient
        from askd_ref.schedules import sgo_alpha, tgo_alpha
        from askd_ref.sequence import pool

        cfg = self.askd_config
        opts = cfg.options
        batch = self._token_batch(rows)
        mask = batch.shifted_mask
        delta: list[float | None] = [None] * len(rows)
        if self.teacher is not None:
            tau = float(cfg.loss_temperature)
            with torch.no_grad(), _no_autocast(batch.input_ids.device):
                s_tok, _ = sequence_logprobs(model, batch, self.vocab_size, temperature=tau)
                t_tok, _ = sequence_logprobs(self.teacher, batch, self.vocab_size, temperature=tau)
                d = pool(torch.where(mask, s_tok - t_tok, 0.0).double(), mask, opts.normalize)
            delta = [float(x) for x in d]
        out: list[dict[str, Any]] = []
        for row, dl in zip(rows, delta, strict=True):
            entry: dict[str, Any] = {
                "kind": "tgo" if row.is_tgo else "sgo",
                "prompt": row.item.prompt,
                "response": row.response.text,
                "response_ids": list(row.ids),
                "quality": row.quality,
                "delta": dl,
                "alpha": None,
                "coefficient": None,
            }
            if row.quality is not None:
                r = torch.tensor(float(row.quality), dtype=torch.float64)
                alpha = tgo_alpha(r, options=opts) if row.is_tgo else sgo_alpha(r, options=opts)
                entry["alpha"] = float(alpha)
                if dl is not None:
                    dt = torch.tensor(dl, dtype=torch.float64)
                    if row.is_tgo:
                        coef = tgo_coefficient(dt, alpha)
                    else:
                        coef = clipped_sgo_coefficient(dt, r, options=opts)
                    entry["coefficient"] = float(coef)
            out.append(entry)
        return out

    def _log_samples(self, model: Any, rows: Sequence[_Row], step: int) -> None:
        k = self.askd_config.log_samples_count
        pick = [r for r in rows if r.is_tgo][:k] + [r for r in rows if not r.is_tgo][:k]
        if not pick:
            return
        entries = self.sample_report(model, pick)
        import json

        out_dir = str(self.args.output_dir)
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "samples.jsonl"), "a", encoding="utf-8") as f:
            for e in entries:
                f.write(json.dumps({"step": step, **e}, ensure_ascii=False) + "\n")
        for cb in self.callback_handler.callbacks:
            writer = getattr(cb, "tb_writer", None) if type(cb).__name__ == "TensorBoardCallback" else None
            if writer is not None:
                text = "\n\n".join(_sample_markdown(e) for e in entries)
                writer.add_text("samples", text, global_step=step)

    def _record(self, diagnostics: Mapping[str, float], rows: Sequence[_Row]) -> None:
        for k, v in diagnostics.items():
            if math.isfinite(v):
                self._diag_sums[k] += float(v)
                self._diag_counts[k] += 1
        for kind, flag in (("tgo", True), ("sgo", False)):
            qs = [r.quality for r in rows if r.is_tgo == flag and r.quality is not None]
            if qs:
                self._diag_sums[f"quality/{kind}_mean"] += sum(qs) / len(qs)
                self._diag_counts[f"quality/{kind}_mean"] += 1
            lens = [len(r.ids) for r in rows if r.is_tgo == flag]
            if lens:
                self._diag_sums[f"length/{kind}_mean"] += sum(lens) / len(lens)
                self._diag_counts[f"length/{kind}_mean"] += 1

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the loss diagnostics averaged since the last log (and over ranks) to training logs."""
        if "loss" in logs and self._diag_counts:
            local = {k: (self._diag_sums[k], self._diag_counts[k]) for k in self._diag_counts}
            parts = [local]
            if self.world_size > 1:
                from accelerate.utils import gather_object

                parts = gather_object([local])
            sums: dict[str, float] = defaultdict(float)
            counts: dict[str, int] = defaultdict(int)
            for part in parts:
                for k, (s, c) in part.items():
                    sums[k] += s
                    counts[k] += c
            for k in sorted(sums):
                logs[k] = sums[k] / counts[k]
            self._diag_sums.clear()
            self._diag_counts.clear()
        if "train_loss" in logs and self.world_size > 1:
            # Trainer sums the all-reduced loss of every logged window plus this rank's own loss
            # since the last log; that total is G + r_k with G shared, so the mean over ranks is
            # the global train loss (logs is the TrainOutput's metrics dict, updated in place).
            from accelerate.utils import gather_object

            logs["train_loss"] = sum(gather_object([float(logs["train_loss"])])) / self.world_size
        super().log(logs, start_time)

    # ---- checkpoints -------------------------------------------------------------------------

    def save_merged_model(self, output_dir: str) -> None:
        """Write the student with its adapter merged into the base weights (a plain model).

        The trainer's own model keeps its adapter (a copy is merged). Without PEFT this is
        :meth:`save_model`.
        """
        model = self.accelerator.unwrap_model(self.model)
        if not hasattr(model, "merge_and_unload"):
            self.save_model(output_dir)
            return
        import copy

        merged = copy.deepcopy(model).merge_and_unload()
        if self.args.should_save:
            merged.save_pretrained(output_dir)
        self.accelerator.wait_for_everyone()

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        """Write the checkpoint into ``tmp-checkpoint-N`` and rename it to ``checkpoint-N`` when complete.

        A crash mid-save leaves at most a ``tmp-`` directory, which resumption ignores; the SGO
        pool of the batched regime is saved with the checkpoint so a resumed epoch reuses it.
        """
        import transformers.trainer as trainer_module

        step = self.state.global_step
        run_dir = self._get_output_dir(trial=trial)
        namespace = vars(trainer_module)
        original = namespace["PREFIX_CHECKPOINT_DIR"]
        staging = os.path.join(run_dir, f"tmp-{original}-{step}")
        final = os.path.join(run_dir, f"{original}-{step}")
        if self.args.should_save and os.path.isdir(staging):
            shutil.rmtree(staging)
        self.accelerator.wait_for_everyone()
        namespace["PREFIX_CHECKPOINT_DIR"] = f"tmp-{original}"
        try:
            super()._save_checkpoint(model, trial)
        finally:
            namespace["PREFIX_CHECKPOINT_DIR"] = original
        if self.args.should_save and self._pool_epoch is not None:
            atomic_write_json(
                os.path.join(staging, _POOL_FILE),
                {
                    "epoch": self._pool_epoch,
                    "pool": {
                        str(k): [dataclasses.asdict(r) for r in v] for k, v in sorted(self._pool.items())
                    },
                },
            )
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            _fsync_tree(staging)
            if os.path.isdir(final):
                trash = f"{final}.old"
                os.replace(final, trash)
                os.replace(staging, final)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(staging, final)
            _rotate_checkpoints(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
            with contextlib.suppress(OSError):
                fd = os.open(run_dir, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        self.accelerator.wait_for_everyone()

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """Leave out a tied output head from the "missing keys" warning after loading a checkpoint.

        A checkpoint stores a head tied to the input embedding once, under the embedding's name,
        so ``lm_head.weight`` is reported missing although loading the embedding restored it.
        """
        from types import SimpleNamespace

        model: Any = self.model
        head, emb = model.get_output_embeddings(), model.get_input_embeddings()
        missing = list(load_result.missing_keys)
        if head is not None and emb is not None and head.weight is emb.weight:
            tied = {n for n, p in model.named_parameters(remove_duplicate=False) if p is head.weight}
            loaded = [k for k in tied if k not in missing]
            if loaded:  # the shared tensor itself was in the checkpoint under one of its names
                missing = [k for k in missing if k not in tied]
        result = SimpleNamespace(missing_keys=missing, unexpected_keys=list(load_result.unexpected_keys))
        super()._issue_warnings_after_load(result)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = os.path.join(resume_from_checkpoint, _POOL_FILE)
        if os.path.isfile(path):
            import json

            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            self._pool = {
                int(k): tuple(
                    Response(
                        text=r["text"],
                        token_ids=None if r["token_ids"] is None else tuple(r["token_ids"]),
                        quality=r["quality"],
                        behaviour_logprob=r["behaviour_logprob"],
                    )
                    for r in v
                )
                for k, v in data["pool"].items()
            }
            self._pool_epoch = int(data["epoch"])


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.4g}"


def _sample_markdown(e: Mapping[str, Any]) -> str:
    """One logged sample as TensorBoard markdown."""
    head = (
        f"**{e['kind'].upper()}** quality {_fmt(e['quality'])} · Δ {_fmt(e['delta'])} · "
        f"α {_fmt(e['alpha'])} · coefficient {_fmt(e['coefficient'])}"
    )
    return f"{head}\n\n    {e['prompt']!r}\n    → {e['response']!r}"


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Disable any enclosing autocast: models run in mixed precision, losses never do."""
    return torch.autocast(device_type=device.type, enabled=False)


def _check_fsdp_active(trainer: Any) -> None:
    """Refuse a run that asked for FSDP but that accelerate is not sharding (it would train unsharded).

    accelerate (1.16) turns FSDP on only for multi-GPU-type backends: on CPU processes (gloo) a
    ``--use_fsdp`` launch or ``TrainingArguments(fsdp=...)`` leaves the run in plain data parallel.
    """
    requested = getattr(trainer.args, "fsdp_plugin_args", None) is not None or (
        os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"
    )
    if requested and not trainer.is_fsdp_enabled:
        raise ValueError(
            "FSDP was requested (TrainingArguments.fsdp or `accelerate launch --use_fsdp`) but "
            f"accelerate did not enable it for this {trainer.accelerator.state.distributed_type} run: "
            "it shards only on GPU-type backends, not on CPU processes. Drop the FSDP settings (the "
            "run is then data parallel) or run on GPUs"
        )


def _apply_peft(model: Any, peft_config: Any, teacher: Any) -> Any:
    """``peft.get_peft_model(model, peft_config)``, refusing a model that is already wrapped."""
    try:
        import peft
    except ImportError:  # pragma: no cover - depends on the environment
        raise ImportError("peft_config needs the peft package: pip install 'askd-ref[peft]'") from None
    if not isinstance(peft_config, peft.PeftConfig):
        raise TypeError(
            f"peft_config must be a peft.PeftConfig (e.g. LoraConfig), got {type(peft_config).__name__}"
        )
    if isinstance(model, peft.PeftModel):
        raise ValueError(
            "the student is already a PeftModel; pass the base model with peft_config, or no peft_config"
        )
    if teacher is not None and teacher is model:
        raise ValueError("teacher and student are the same object; the adapter would change the teacher")
    return peft.get_peft_model(model, peft_config)


def _head(model: Any, vocab: int) -> tuple[Tensor, Tensor | None]:
    """The output projection (weight, bias) of ``model``, sliced to the shared vocabulary."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise ValueError("the model has no output projection (get_output_embeddings() is None)")
    if hasattr(head, "base_layer"):
        raise ValueError(
            "the output projection carries a PEFT adapter, which the chunked loss path (it reads "
            "lm_head.weight) would ignore; leave lm_head out of target_modules or use loss_path='full'"
        )
    bias = getattr(head, "bias", None)
    return head.weight[:vocab], (None if bias is None else bias[:vocab])


def _model_dtype(model: Any) -> torch.dtype:
    try:
        return next(model.parameters()).dtype  # type: ignore[no-any-return]
    except (StopIteration, AttributeError):
        return torch.float32


def _rotate_checkpoints(run_dir: str, limit: int | None, best: str | None) -> None:
    """Keep the newest ``limit`` complete ``checkpoint-N`` folders (and the best one); delete older.

    Runs after the newest checkpoint is renamed into place, so it is counted: exactly ``limit``
    remain (``limit + 1`` when the best checkpoint is not among the newest).
    """
    import re

    if not limit or limit <= 0:
        return
    steps = []
    for name in os.listdir(run_dir):
        m = re.fullmatch(r"checkpoint-(\d+)", name)
        if m and os.path.isdir(os.path.join(run_dir, name)):
            steps.append((int(m.group(1)), os.path.join(run_dir, name)))
    ordered = [path for _, path in sorted(steps)]
    keep = set(ordered[-limit:])
    if best is not None:
        keep.add(os.path.join(run_dir, os.path.basename(os.path.normpath(best))))
    for path in ordered:
        if path not in keep:
            shutil.rmtree(path, ignore_errors=True)


def _fsync_tree(path: str) -> None:
    """fsync every file under ``path`` (and the directories), so a rename publishes durable data."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        with contextlib.suppress(OSError):
            fd = os.open(root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
