"""``ASKDConfig``: what to distil and how — the method, its options and parameters, where SGOs
come from, the quality signal, the loss path and reduction (everything that is not a
``TrainingArguments`` field). Validated once, at construction; :class:`~askd_ref.engine.trainer.ASKDTrainer`
reads it.
"""

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, get_args

from askd_ref.chunked import Kernel
from askd_ref.losses import REDUCTIONS
from askd_ref.methods import METHODS, MethodNeeds, MethodSpec, check_method_params, method_spec
from askd_ref.options import ASKDOptions

__all__ = ["ASKDConfig", "LossKernel", "LossPath", "SGORegime"]

SGORegime = Literal["on_policy", "batched", "offline", "none"]
LossPath = Literal["chunked", "full"]
#: The chunked path's kernels (:data:`askd_ref.chunked.Kernel`).
LossKernel = Kernel


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

    loss_kernel: LossKernel = "fused"
    """The chunked path's per-chunk kernel (:func:`askd_ref.chunked_loss`'s ``kernel``):
    ``"fused"`` (eager torch, any device), ``"compiled"`` (a C kernel built at first use, float32
    work on CPU only: a few percent faster per loss on the benchmark CPU) or ``"core"`` (autograd
    through the library's divergences, the slow reference)."""

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
        if self.loss_kernel not in get_args(LossKernel):
            raise ValueError(f"loss_kernel must be 'fused', 'compiled' or 'core', got {self.loss_kernel!r}")
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
