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
them over ranks. DDP averages gradients over ranks, so each rank's loss is multiplied by the
world size (as TRL does). The result: one step with gradient accumulation and/or data
parallelism has the gradient of one large batch holding all its samples (tested).
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

from askd_ref.baselines import METHODS, compute_loss
from askd_ref.data import Sample
from askd_ref.engine.forward import hidden_states, sequence_logprobs, shared_vocab_size
from askd_ref.engine.tokens import TokenBatch, encode_prompt, encode_response, pad_batch
from askd_ref.generation import generate
from askd_ref.io import atomic_write_json
from askd_ref.losses import DistillBatch, LossOutput
from askd_ref.options import ASKDOptions
from askd_ref.quality import QualitySignal

__all__ = [
    "METHOD_NEEDS",
    "ASKDConfig",
    "ASKDTrainer",
    "MethodNeeds",
    "PromptDataset",
    "PromptItem",
    "Response",
    "prompt_items_from_samples",
]

SGORegime = Literal["on_policy", "batched", "offline", "none"]
LossPath = Literal["chunked", "full"]


@dataclasses.dataclass(frozen=True)
class MethodNeeds:
    """What a method's loss reads: which sample kinds, which log-probs, whether quality."""

    tgo: bool
    sgo: bool
    full: bool
    """Full-vocabulary log-probs of teacher and student."""
    token: bool
    """Token log-probs of the sampled tokens (student; teacher too when ``teacher_token``)."""
    teacher_token: bool
    quality: bool


#: Per method of :data:`askd_ref.METHODS`, what its loss needs (``askd`` with ``lambda_dense > 0``
#: additionally needs full log-probs; see :meth:`ASKDConfig.needs`).
METHOD_NEEDS: dict[str, MethodNeeds] = {
    "askd": MethodNeeds(tgo=True, sgo=True, full=False, token=True, teacher_token=True, quality=True),
    "askd-dense": MethodNeeds(tgo=True, sgo=True, full=True, token=False, teacher_token=False, quality=True),
    "seqkd": MethodNeeds(tgo=True, sgo=False, full=False, token=True, teacher_token=False, quality=False),
    "kd": MethodNeeds(tgo=True, sgo=False, full=True, token=False, teacher_token=False, quality=False),
    "rkl": MethodNeeds(tgo=False, sgo=True, full=True, token=False, teacher_token=False, quality=False),
    "gkd": MethodNeeds(tgo=True, sgo=True, full=True, token=False, teacher_token=False, quality=False),
    "distillm": MethodNeeds(tgo=True, sgo=True, full=True, token=False, teacher_token=False, quality=False),
    "distillm2": MethodNeeds(tgo=True, sgo=True, full=True, token=False, teacher_token=False, quality=False),
    "advantage_kd": MethodNeeds(tgo=True, sgo=True, full=True, token=True, teacher_token=False, quality=True),
}


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
        for name in ("sgo_per_prompt", "max_new_tokens", "generation_batch_size", "chunk_size"):
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

    @property
    def needs(self) -> MethodNeeds:
        """:data:`METHOD_NEEDS` of the method (``askd`` with a dense term needs full log-probs)."""
        base = METHOD_NEEDS[self.method]
        if self.method == "askd" and self.options.lambda_dense > 0:
            return dataclasses.replace(base, full=True)
        return base


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
        train_dataset: a :class:`PromptDataset` or a sequence of :class:`PromptItem`.
        processing_class: the shared tokenizer.
        quality_signal: a :class:`~askd_ref.quality.QualitySignal` overriding ``config.quality``.
        **kwargs: passed to :class:`transformers.Trainer` (callbacks, optimizers, …).
    """

    loss_is_scaled_for_ga = True

    def __init__(
        self,
        model: Any,
        teacher: Any,
        args: Any,
        config: ASKDConfig,
        train_dataset: PromptDataset | Sequence[PromptItem],
        processing_class: Any,
        quality_signal: QualitySignal | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(config, ASKDConfig):
            raise TypeError(f"config must be an ASKDConfig, got {type(config).__name__}")
        if processing_class is None:
            raise ValueError("processing_class (the shared tokenizer) is required")
        if teacher is None and config.method != "seqkd":
            raise ValueError(f"method {config.method!r} needs a teacher model")
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
        self._window_counts: tuple[int, int] | None = None
        self._diag_sums: dict[str, float] = defaultdict(float)
        self._diag_counts: dict[str, int] = defaultdict(int)
        if needs.sgo and config.sgo_regime == "batched":
            self.add_callback(_EpochPoolCallback(self))

    # ---- set-up helpers -------------------------------------------------------------------

    def _build_signal(self) -> QualitySignal | None:
        name = self.askd_config.quality
        if name is None or name in ("teacher_likelihood", "likelihood"):
            return None
        from askd_ref.quality import get_signal

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
        return self._sample_sgos(items, f"step{self.state.global_step}")

    def _num_sgos(self, item: PromptItem) -> int:
        regime = self.askd_config.sgo_regime
        if regime == "offline":
            return len(item.sgos)
        if regime == "batched" and self._pool_epoch is not None:
            return len(self._pool[item.index])
        return self.askd_config.sgo_per_prompt

    # ---- global counts ---------------------------------------------------------------------

    def get_batch_samples(self, epoch_iterator: Any, num_batches: int, device: Any) -> tuple[list[Any], None]:
        """Prefetch the accumulation window and compute the GLOBAL TGO/SGO counts of this step."""
        batches: list[Any] = []
        for _ in range(num_batches):
            try:
                batches.append(next(epoch_iterator))
            except StopIteration:
                break
        needs = self.askd_config.needs
        n_t = sum(len(it.tgos) for b in batches for it in b["items"]) if needs.tgo else 0
        n_s = sum(self._num_sgos(it) for b in batches for it in b["items"]) if needs.sgo else 0
        counts = torch.tensor([n_t, n_s], dtype=torch.long, device=self.args.device)
        if self.world_size > 1:
            counts = self.accelerator.reduce(counts, reduction="sum")
        self._window_counts = (int(counts[0]), int(counts[1]))
        return batches, None

    # ---- the loss ----------------------------------------------------------------------------

    def _rows(self, items: Sequence[PromptItem]) -> list[_Row]:
        needs = self.askd_config.needs
        rows: list[_Row] = []
        tok = self.tokenizer

        def ids_of(r: Response) -> tuple[int, ...]:
            return r.token_ids if r.token_ids is not None else tuple(encode_response(tok, r.text))

        if needs.tgo:
            for it in items:
                for j, r in enumerate(it.tgos):
                    q = r.quality if r.quality is not None else self._tgo_quality.get((it.index, j))
                    rows.append(_Row(it, r, True, ids_of(r), q))
        if needs.sgo:
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
        from askd_ref.quality import validate_scores

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
        rows = self._rows(items)
        # inside the training loop: the counts of the whole step (get_batch_samples); otherwise local
        counts = self._window_counts if model.training else None
        out = self.loss_from_rows(model, rows, counts)
        self._record(out.diagnostics, rows)
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

    def loss_from_rows(
        self, model: Any, rows: Sequence[_Row], counts: tuple[int, int] | None = None
    ) -> LossOutput:
        """Forward teacher and student on ``rows`` and return the method's :class:`LossOutput`.

        ``counts`` = (global TGOs, global SGOs) of the optimizer step; ``None``: the rows' own
        counts (a loss of these rows alone).
        """
        cfg = self.askd_config
        needs = cfg.needs
        if counts is None:
            counts = (sum(r.is_tgo for r in rows), sum(not r.is_tgo for r in rows))
        n_t, n_s = counts
        batch = self._token_batch(rows)
        mask = batch.shifted_mask
        unscored = any(r.quality is None for r in rows)
        if needs.quality and unscored and cfg.quality not in ("teacher_likelihood", "likelihood"):
            raise ValueError("some samples have no quality and no quality signal is configured")
        teacher_lik = cfg.quality in ("teacher_likelihood", "likelihood") and self.quality_signal is None
        is_tgo = torch.tensor([r.is_tgo for r in rows], dtype=torch.bool, device=batch.input_ids.device)
        group = torch.tensor([r.item.index for r in rows], dtype=torch.long, device=batch.input_ids.device)
        behaviour = None
        if cfg.sgo_regime in ("batched", "offline") and needs.sgo and not all(r.is_tgo for r in rows):
            behaviour = torch.tensor(
                [0.0 if r.is_tgo else float(r.response.behaviour_logprob or 0.0) for r in rows],
                dtype=torch.float64 if _model_dtype(model) == torch.float64 else torch.float32,
                device=batch.input_ids.device,
            )
        if cfg.loss_path == "chunked":
            return self._chunked_loss(model, rows, batch, is_tgo, group, behaviour, n_t, n_s, teacher_lik)
        teacher_token = teacher_full = None
        if self.teacher is not None and (needs.full or needs.teacher_token or teacher_lik):
            with torch.no_grad():
                t_tok, t_full = sequence_logprobs(self.teacher, batch, self.vocab_size, full=needs.full)
            teacher_token, teacher_full = t_tok, t_full
        q_tensor = self._quality_tensor(rows, teacher_token, mask, teacher_lik, batch.input_ids.device)
        s_tok, s_full = sequence_logprobs(model, batch, self.vocab_size, full=needs.full)
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
            return compute_loss(
                cfg.method,
                dbatch,
                options=cfg.options,
                num_tgo=n_t if needs.tgo else None,
                num_sgo=n_s if needs.sgo else None,
            )

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
        n_t: int,
        n_s: int,
        teacher_lik: bool,
    ) -> LossOutput:
        from askd_ref.chunked import chunked_loss, chunked_token_log_probs

        cfg = self.askd_config
        needs = cfg.needs
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
                options=cfg.options,
                num_tgo=n_t if needs.tgo else None,
                num_sgo=n_s if needs.sgo else None,
                chunk_size=cfg.chunk_size,
            )

    # ---- diagnostics -------------------------------------------------------------------------

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


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Disable any enclosing autocast: models run in mixed precision, losses never do."""
    return torch.autocast(device_type=device.type, enabled=False)


def _head(model: Any, vocab: int) -> tuple[Tensor, Tensor | None]:
    """The output projection (weight, bias) of ``model``, sliced to the shared vocabulary."""
    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise ValueError("the model has no output projection (get_output_embeddings() is None)")
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
