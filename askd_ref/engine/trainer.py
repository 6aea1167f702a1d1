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
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Sampler
from transformers import Trainer, TrainerCallback

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.forward import hidden_states, sequence_logprobs, shared_vocab_size
from askd_ref.engine.generation import generate, sample_seed
from askd_ref.engine.items import (
    EpochShuffleSampler,
    PromptDataset,
    PromptItem,
    Response,
    collate_items,
    is_hf_dataset,
    prompt_items_from_records,
)
from askd_ref.engine.tokens import TokenBatch, encode_prompt, encode_response, pad_batch
from askd_ref.io import atomic_write_json
from askd_ref.losses import DistillBatch, LossOutput
from askd_ref.methods import compute_loss
from askd_ref.quality import QualitySignal, get_signal, is_teacher_likelihood, validate_scores

__all__ = ["ASKDTrainer"]


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
        if is_hf_dataset(train_dataset):
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
            data_collator=collate_items,
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
        if needs.quality and self.quality_signal is None and not is_teacher_likelihood(config.quality):
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
                kernel=cfg.loss_kernel,
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
