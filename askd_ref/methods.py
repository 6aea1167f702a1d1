"""The training methods, one entry each: what a method computes and what it reads.

Every method of :func:`compute_loss`, :func:`~askd_ref.chunked_loss` and the trainer is one
:class:`MethodSpec` in :data:`REGISTRY`:

* ``loss`` — the full-logit loss function (:mod:`askd_ref.losses`, :mod:`askd_ref.baselines`);
* ``needs`` — what the trainer must compute for it (:class:`MethodNeeds`);
* ``dense_terms`` — its full-vocabulary terms as :class:`DenseTerm` rows (a divergence on the
  TGO, SGO or all rows, with its parameter and weight), which the chunked path evaluates with its
  per-chunk kernels;
* ``sequence`` — its sequence-level part (:class:`SequenceTerm`), computed on token log-probs;
* ``params`` — its parameters beyond the batch and the counts, with defaults and checks.

Adding a method is one entry here (plus its loss function); adding a parameter is one
:class:`MethodParam` (plus the keyword of the loss function). :data:`LOSS_FUNCTIONS`,
:data:`METHODS`, :data:`METHOD_PARAMS` and :data:`METHOD_NEEDS` are views of the registry.
"""

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeAlias

from torch import Tensor

from askd_ref._reduce import Reduction
from askd_ref._validation import check_unit_float
from askd_ref.baselines import (
    ADVANTAGE_KD_EPS_A,
    DISTILLM2_ALPHA,
    DISTILLM2_BETA,
    DISTILLM2_LOSS_TYPE,
    DISTILLM_ALPHA,
    GKD_BETA,
    advantage_kd_loss,
    advantage_sgo_term,
    check_distillm2_beta,
    check_loss_type,
    distillm2_gradual_beta,
    distillm2_loss,
    distillm_loss,
    gkd_loss,
    kd_loss,
    rkl_loss,
    seqkd_loss,
)
from askd_ref.divergences import Divergence
from askd_ref.losses import DistillBatch, LossOutput, askd_loss, dense_askd_loss
from askd_ref.options import ASKDOptions, resolve_options

__all__ = [
    "LOSS_FUNCTIONS",
    "METHODS",
    "METHOD_NEEDS",
    "METHOD_PARAMS",
    "REGISTRY",
    "DenseTerm",
    "LossContext",
    "MethodNeeds",
    "MethodParam",
    "MethodSpec",
    "SequenceTerm",
    "check_method_params",
    "compute_loss",
    "method_spec",
]

LossFn = Callable[..., LossOutput]
#: Which rows a term reads: teacher-generated, student-generated, or both.
Rows: TypeAlias = Literal["tgo", "sgo", "all"]


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


@dataclasses.dataclass(frozen=True)
class MethodParam:
    """One parameter of a method: its keyword, default and check (returns the clean value)."""

    name: str
    default: object
    check: Callable[[str, object], object]


@dataclasses.dataclass(frozen=True)
class DenseTerm:
    """One full-vocabulary term: Σ over ``rows`` of a token-pooled divergence, normalised.

    The weight of a row's token sum is ``weight`` / (token count under ``"sample"`` reduction,
    1 under ``"token"``) / (N of the rows, or M under ``"token"``); ``"all"`` rows divide by
    N_T + N_S. ``adaptive`` terms are E15's: α from the row's quality (α_T(r) on TGOs, α_S(r)
    on SGOs), the SGO term gated by 1 − h(r), scaled by λ_T / λ_S and pooled by
    ``options.normalize``; ``param`` is then unused.
    """

    rows: Rows
    divergence: Divergence
    key: str
    """Diagnostic: the token mean of the divergence over the term's tokens."""
    param: float = 0.0
    """α of the skew divergences, β of JSD_β."""
    weight: float = 1.0
    adaptive: bool = False


@dataclasses.dataclass(frozen=True)
class LossContext:
    """The settings of one loss call, as the sequence-level terms read them."""

    options: ASKDOptions
    params: Mapping[str, Any]
    """The method's parameters, defaults filled in."""
    num_tgo: int | None
    num_sgo: int | None
    n_tgo: int
    n_sgo: int
    reduction: Reduction
    num_tgo_tokens: int | None
    num_sgo_tokens: int | None


#: A sequence-level part: (loss term, diagnostics) from a batch with token log-probs, or
#: ``None`` when the batch holds none of its rows.
SequenceFn = Callable[[DistillBatch, LossContext], "tuple[Tensor, Mapping[str, float]] | None"]


@dataclasses.dataclass(frozen=True)
class SequenceTerm:
    """The sequence-level part of a method, computed on student (and teacher) token log-probs."""

    rows: Rows
    teacher_tokens: bool
    """Whether it reads the teacher's token log-probs too."""
    loss: SequenceFn
    first: bool = False
    """Whether it comes before the dense terms (in the diagnostics, as the full-logit loss)."""


DenseTermsFn = Callable[[Mapping[str, Any], ASKDOptions], tuple[DenseTerm, ...]]


def _no_dense(params: Mapping[str, Any], options: ASKDOptions) -> tuple[DenseTerm, ...]:
    return ()


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """Everything askd-ref knows about one training method."""

    name: str
    loss: LossFn
    needs: MethodNeeds
    dense_terms: DenseTermsFn = _no_dense
    sequence: SequenceTerm | None = None
    params: tuple[MethodParam, ...] = ()
    takes_options: bool = False
    """Whether the loss reads :class:`~askd_ref.ASKDOptions` (and always needs quality)."""
    beta_schedule: Callable[[int, int], float] | None = None
    """A schedule β(step, max_steps) of the ``beta`` parameter (``gradual_beta``)."""

    @property
    def needs_teacher(self) -> bool:
        """Whether the loss reads the teacher at all."""
        return self.needs.full or self.needs.teacher_token

    def needs_with(self, options: ASKDOptions) -> MethodNeeds:
        """:attr:`needs` under ``options`` (``askd`` with a dense term needs full log-probs)."""
        if not self.needs.full and self.dense_terms(self.defaults(), options):
            return dataclasses.replace(self.needs, full=True)
        return self.needs

    def defaults(self) -> dict[str, Any]:
        """The default of every parameter."""
        return {p.name: p.default for p in self.params}


def _check_eps_a(name: str, value: object) -> float:
    """ε_A > 0, finite; ``ValueError`` naming it."""
    message = f"{name} must be a positive finite float, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(message)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(message)
    return float(value)


def _askd_dense(options: ASKDOptions, scale: float) -> tuple[DenseTerm, ...]:
    """E15's two terms: SKL_{α_T(r)} on TGOs, gated SRKL_{α_S(r)} on SGOs."""
    return (
        DenseTerm("tgo", Divergence.SKL, "dense/tgo_skl", weight=scale, adaptive=True),
        DenseTerm(
            "sgo", Divergence.srkl(options.mixture_grad), "dense/sgo_srkl", weight=scale, adaptive=True
        ),
    )


def _distillm2_terms(params: Mapping[str, Any], options: ASKDOptions) -> tuple[DenseTerm, ...]:
    alpha, beta = params["alpha"], params["beta"]
    if params["loss_type"] == "distillm_v1":
        tgo = DenseTerm("tgo", Divergence.SRKL_STOP, "distillm2/tgo_srkl", alpha, 2.0 - beta)
    else:
        tgo = DenseTerm("tgo", Divergence.SKL, "distillm2/skl", alpha, 2.0 - beta)
    return tgo, DenseTerm("sgo", Divergence.SRKL_STOP, "distillm2/srkl", alpha, beta)


def _askd_sequence(batch: DistillBatch, ctx: LossContext) -> tuple[Tensor, Mapping[str, float]]:
    opts = dataclasses.replace(ctx.options, lambda_dense=0.0)
    out = askd_loss(batch, options=opts, num_tgo=ctx.num_tgo, num_sgo=ctx.num_sgo)
    return out.loss, out.diagnostics


def _seqkd_sequence(batch: DistillBatch, ctx: LossContext) -> tuple[Tensor, Mapping[str, float]]:
    out = seqkd_loss(
        batch,
        num_tgo=ctx.num_tgo,
        num_sgo=ctx.num_sgo,
        reduction=ctx.reduction,
        num_tgo_tokens=ctx.num_tgo_tokens,
        num_sgo_tokens=ctx.num_sgo_tokens,
    )
    return out.loss, out.diagnostics


def _advantage_sequence(batch: DistillBatch, ctx: LossContext) -> tuple[Tensor, Mapping[str, float]] | None:
    return advantage_sgo_term(batch, ctx.n_sgo, ctx.params["eps_a"], check_quality=True)


def _needs(tgo: bool, sgo: bool, full: bool, token: bool, teacher_token: bool, quality: bool) -> MethodNeeds:
    return MethodNeeds(tgo=tgo, sgo=sgo, full=full, token=token, teacher_token=teacher_token, quality=quality)


_ALPHA_DISTILLM = MethodParam("alpha", DISTILLM_ALPHA, check_unit_float)
_ALPHA_DISTILLM2 = MethodParam("alpha", DISTILLM2_ALPHA, check_unit_float)

#: Every training method by name, ASKD first: ASKD (E11–E14), its dense variant (E15) and the
#: §6 baselines.
REGISTRY: dict[str, MethodSpec] = {
    spec.name: spec
    for spec in (
        MethodSpec(
            "askd",
            askd_loss,
            _needs(True, True, False, True, True, True),
            dense_terms=lambda p, o: _askd_dense(o, o.lambda_dense) if o.lambda_dense > 0 else (),
            sequence=SequenceTerm("all", True, _askd_sequence, first=True),
            takes_options=True,
        ),
        MethodSpec(
            "askd-dense",
            dense_askd_loss,
            _needs(True, True, True, False, False, True),
            dense_terms=lambda p, o: _askd_dense(o, 1.0),
            takes_options=True,
        ),
        MethodSpec(
            "seqkd",
            seqkd_loss,
            _needs(True, False, False, True, False, False),
            sequence=SequenceTerm("tgo", False, _seqkd_sequence),
        ),
        MethodSpec(
            "kd",
            kd_loss,
            _needs(True, False, True, False, False, False),
            dense_terms=lambda p, o: (DenseTerm("tgo", Divergence.FKL, "kd/fkl"),),
        ),
        MethodSpec(
            "rkl",
            rkl_loss,
            _needs(False, True, True, False, False, False),
            dense_terms=lambda p, o: (DenseTerm("sgo", Divergence.RKL, "rkl/rkl"),),
        ),
        MethodSpec(
            "gkd",
            gkd_loss,
            _needs(True, True, True, False, False, False),
            dense_terms=lambda p, o: (DenseTerm("all", Divergence.GJSD, "gkd/jsd", p["beta"]),),
            params=(MethodParam("beta", GKD_BETA, check_unit_float),),
        ),
        MethodSpec(
            "distillm",
            distillm_loss,
            _needs(True, True, True, False, False, False),
            dense_terms=lambda p, o: (DenseTerm("all", Divergence.SRKL_FULL, "distillm/srkl", p["alpha"]),),
            params=(_ALPHA_DISTILLM,),
        ),
        MethodSpec(
            "distillm2",
            distillm2_loss,
            _needs(True, True, True, False, False, False),
            dense_terms=_distillm2_terms,
            params=(
                _ALPHA_DISTILLM2,
                MethodParam("beta", DISTILLM2_BETA, lambda name, value: check_distillm2_beta(value)),
                MethodParam("loss_type", DISTILLM2_LOSS_TYPE, lambda name, value: check_loss_type(value)),
            ),
            beta_schedule=distillm2_gradual_beta,
        ),
        MethodSpec(
            "advantage_kd",
            advantage_kd_loss,
            _needs(True, True, True, True, False, True),
            dense_terms=lambda p, o: (DenseTerm("tgo", Divergence.FKL, "advantage_kd/fkl"),),
            sequence=SequenceTerm("sgo", False, _advantage_sequence),
            params=(MethodParam("eps_a", ADVANTAGE_KD_EPS_A, _check_eps_a),),
        ),
    )
}

#: Every training method's full-logit loss by name (a view of :data:`REGISTRY`).
LOSS_FUNCTIONS: dict[str, LossFn] = {name: spec.loss for name, spec in REGISTRY.items()}

#: Method names in a stable order (ASKD first).
METHODS: tuple[str, ...] = tuple(REGISTRY)

#: The parameters each baseline takes beyond the batch and the counts (the ASKD methods take
#: ``options``): :func:`compute_loss`, :func:`~askd_ref.chunked_loss` and the trainer accept them
#: under these keywords; ``None`` leaves the default of the loss function.
METHOD_PARAMS: dict[str, tuple[str, ...]] = {
    name: tuple(p.name for p in spec.params) for name, spec in REGISTRY.items() if spec.params
}

#: Per method, what its loss needs (``askd`` with ``lambda_dense > 0`` additionally needs full
#: log-probs; see :meth:`MethodSpec.needs_with`).
METHOD_NEEDS: dict[str, MethodNeeds] = {name: spec.needs for name, spec in REGISTRY.items()}


def method_spec(method: object) -> MethodSpec:
    """The :class:`MethodSpec` of ``method``; ``ValueError`` naming :data:`METHODS` otherwise.

    >>> method_spec("gkd").defaults()
    {'beta': 0.5}
    """
    if not isinstance(method, str) or method not in REGISTRY:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return REGISTRY[method]


def check_method_params(method: str, **params: Any) -> dict[str, Any]:
    """The given (not ``None``) method parameters, validated; an error names a foreign one.

    >>> check_method_params("gkd", beta=0.9, alpha=None)
    {'beta': 0.9}
    >>> check_method_params("kd", beta=0.9)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: method 'kd' takes no parameter 'beta' (gkd: beta; distillm: alpha; ...)
    """
    given = {k: v for k, v in params.items() if v is not None}
    allowed = {p.name: p for p in REGISTRY[method].params} if method in REGISTRY else {}
    for name in given:
        if name not in allowed:
            table = "; ".join(f"{m}: {', '.join(p)}" for m, p in METHOD_PARAMS.items())
            raise ValueError(f"method {method!r} takes no parameter {name!r} ({table})")
    return {name: allowed[name].check(name, value) for name, value in given.items()}


def compute_loss(
    method: str,
    batch: DistillBatch,
    *,
    options: ASKDOptions | None = None,
    num_tgo: int | None = None,
    num_sgo: int | None = None,
    reduction: Reduction = "sample",
    num_tgo_tokens: int | None = None,
    num_sgo_tokens: int | None = None,
    alpha: float | None = None,
    beta: float | None = None,
    loss_type: str | None = None,
    eps_a: float | None = None,
) -> LossOutput:
    """Dispatch to the loss of ``method`` (one of :data:`METHODS`) with one call signature.

    ``options`` is used by ``askd`` and ``askd-dense``; the baselines take their parameters of
    :data:`METHOD_PARAMS` (``None``: the spec defaults α = 0.1, β = 0.5 for ``gkd``, β = 1 for
    ``distillm2``, ε_A = 1e-4). ``reduction`` and the token counts apply to the token-level
    terms (see :mod:`askd_ref.baselines`).

    Example:
        >>> import torch
        >>> lp = torch.log_softmax(torch.randn(1, 2, 5), -1)
        >>> b = DistillBatch(mask=torch.ones(1, 2, dtype=torch.bool), is_tgo=torch.tensor([True]),
        ...                  student_logp=lp, teacher_logp=lp)
        >>> float(compute_loss("kd", b).loss)
        0.0
    """
    spec = method_spec(method)
    resolve_options(options)  # a wrong type raises even for the baselines, which ignore options
    params = check_method_params(method, alpha=alpha, beta=beta, loss_type=loss_type, eps_a=eps_a)
    counts: dict[str, Any] = {"num_tgo": num_tgo, "num_sgo": num_sgo}
    if reduction != "sample" or num_tgo_tokens is not None or num_sgo_tokens is not None:
        counts.update(reduction=reduction, num_tgo_tokens=num_tgo_tokens, num_sgo_tokens=num_sgo_tokens)
    if spec.takes_options:
        return spec.loss(batch, options=options, **counts)
    return spec.loss(batch, **params, **counts)
