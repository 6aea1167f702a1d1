"""askd-ref: the reference implementation of ASKD as specified by askd-ref.

ASKD (Zhang et al., AAAI 2026) is knowledge distillation with an RL-style update, a skew KL
whose skewness adapts to sample quality, and a clip on high-quality student outputs. The
paper's equations are not public: what this package computes is the reconstruction of
``ASKD-SPEC.md`` (restated in ``docs/method.md``), with every open choice a named option of
:class:`ASKDOptions`. Labels E1–E15 and T1–T12 refer to that specification.
"""

from askd_ref._validation import is_validation_enabled, set_validation, validation_disabled
from askd_ref.baselines import (
    LOSS_FUNCTIONS,
    METHODS,
    advantage_kd_loss,
    compute_loss,
    distillm2_loss,
    distillm_loss,
    gkd_loss,
    group_advantages,
    kd_loss,
    rkl_loss,
    seqkd_loss,
)
from askd_ref.coefficients import clipped_sgo_coefficient, sgo_coefficient, tgo_coefficient
from askd_ref.divergences import (
    forward_kl,
    generalized_jsd,
    reverse_kl,
    skew_forward_kl,
    skew_reverse_kl,
)
from askd_ref.losses import (
    DistillBatch,
    LossOutput,
    askd_loss,
    dense_askd_loss,
    sgo_loss,
    tgo_loss,
)
from askd_ref.options import ASKDOptions
from askd_ref.schedules import hard_gate, quality_gate, sgo_alpha, soft_gate, tgo_alpha
from askd_ref.sequence import sequence_log_ratio, token_log_probs

__version__ = "0.1.0"

__all__ = [
    "LOSS_FUNCTIONS",
    "METHODS",
    "ASKDOptions",
    "DistillBatch",
    "LossOutput",
    "advantage_kd_loss",
    "askd_loss",
    "clipped_sgo_coefficient",
    "compute_loss",
    "dense_askd_loss",
    "distillm2_loss",
    "distillm_loss",
    "forward_kl",
    "generalized_jsd",
    "gkd_loss",
    "group_advantages",
    "hard_gate",
    "is_validation_enabled",
    "kd_loss",
    "quality_gate",
    "reverse_kl",
    "rkl_loss",
    "seqkd_loss",
    "sequence_log_ratio",
    "set_validation",
    "sgo_alpha",
    "sgo_coefficient",
    "sgo_loss",
    "skew_forward_kl",
    "skew_reverse_kl",
    "soft_gate",
    "tgo_alpha",
    "tgo_coefficient",
    "tgo_loss",
    "token_log_probs",
    "validation_disabled",
]
