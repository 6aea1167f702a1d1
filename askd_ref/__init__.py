"""askd-ref: the reference implementation of ASKD as specified by askd-ref.

ASKD (Zhang et al., AAAI 2026) is knowledge distillation with an RL-style update, a skew KL
whose skewness adapts to sample quality, and a clip on high-quality student outputs. The
paper's equations are not public: what this package computes is the reconstruction of
``ASKD-SPEC.md`` (restated in ``docs/method.md``), with every open choice a named option of
:class:`ASKDOptions`. Labels E1–E15 and T1–T12 refer to that specification.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from askd_ref._validation import is_validation_enabled, set_validation, validation_disabled
    from askd_ref.baselines import (
        advantage_kd_loss,
        distillm2_loss,
        distillm_loss,
        gkd_loss,
        group_advantages,
        kd_loss,
        rkl_loss,
        seqkd_loss,
    )
    from askd_ref.chunked import chunked_loss, chunked_token_log_probs
    from askd_ref.coefficients import clipped_sgo_coefficient, sgo_coefficient, tgo_coefficient
    from askd_ref.divergences import (
        forward_kl,
        generalized_jsd,
        reverse_kl,
        skew_forward_kl,
        skew_reverse_kl,
    )
    from askd_ref.engine.config import ASKDConfig
    from askd_ref.engine.evaluate import EvalResult, evaluate_model
    from askd_ref.engine.generation import Generation, generate, generate_samples
    from askd_ref.engine.items import PromptItem, Response, prompt_items_from_samples
    from askd_ref.engine.trainer import ASKDTrainer
    from askd_ref.losses import (
        DistillBatch,
        LossOutput,
        askd_loss,
        dense_askd_loss,
        sgo_loss,
        tgo_loss,
    )
    from askd_ref.methods import LOSS_FUNCTIONS, METHODS, compute_loss
    from askd_ref.options import ASKDOptions
    from askd_ref.schedules import hard_gate, quality_gate, sgo_alpha, soft_gate, tgo_alpha
    from askd_ref.sequence import sequence_log_ratio, token_log_probs

__version__ = "0.1.0"

#: Public name → defining module. Imports are lazy (PEP 562) so that the NumPy-only modules
#: (``askd_ref.porting.reference``, ``askd_ref.porting.conformance``) can be used without importing torch.
_EXPORTS: dict[str, str] = {
    "ASKDOptions": "askd_ref.options",
    "DistillBatch": "askd_ref.losses",
    "LOSS_FUNCTIONS": "askd_ref.methods",
    "LossOutput": "askd_ref.losses",
    "METHODS": "askd_ref.methods",
    "advantage_kd_loss": "askd_ref.baselines",
    "askd_loss": "askd_ref.losses",
    "chunked_loss": "askd_ref.chunked",
    "chunked_token_log_probs": "askd_ref.chunked",
    "clipped_sgo_coefficient": "askd_ref.coefficients",
    "compute_loss": "askd_ref.methods",
    "dense_askd_loss": "askd_ref.losses",
    "distillm2_loss": "askd_ref.baselines",
    "distillm_loss": "askd_ref.baselines",
    "forward_kl": "askd_ref.divergences",
    "generalized_jsd": "askd_ref.divergences",
    "gkd_loss": "askd_ref.baselines",
    "group_advantages": "askd_ref.baselines",
    "hard_gate": "askd_ref.schedules",
    "is_validation_enabled": "askd_ref._validation",
    "kd_loss": "askd_ref.baselines",
    "quality_gate": "askd_ref.schedules",
    "reverse_kl": "askd_ref.divergences",
    "rkl_loss": "askd_ref.baselines",
    "seqkd_loss": "askd_ref.baselines",
    "sequence_log_ratio": "askd_ref.sequence",
    "set_validation": "askd_ref._validation",
    "sgo_alpha": "askd_ref.schedules",
    "sgo_coefficient": "askd_ref.coefficients",
    "sgo_loss": "askd_ref.losses",
    "skew_forward_kl": "askd_ref.divergences",
    "skew_reverse_kl": "askd_ref.divergences",
    "soft_gate": "askd_ref.schedules",
    "tgo_alpha": "askd_ref.schedules",
    "tgo_coefficient": "askd_ref.coefficients",
    "tgo_loss": "askd_ref.losses",
    "token_log_probs": "askd_ref.sequence",
    "validation_disabled": "askd_ref._validation",
    "ASKDConfig": "askd_ref.engine.config",
    "ASKDTrainer": "askd_ref.engine.trainer",
    "PromptItem": "askd_ref.engine.items",
    "Response": "askd_ref.engine.items",
    "prompt_items_from_samples": "askd_ref.engine.items",
    "Generation": "askd_ref.engine.generation",
    "generate": "askd_ref.engine.generation",
    "generate_samples": "askd_ref.engine.generation",
    "EvalResult": "askd_ref.engine.evaluate",
    "evaluate_model": "askd_ref.engine.evaluate",
}

__all__ = [
    "LOSS_FUNCTIONS",
    "METHODS",
    "ASKDConfig",
    "ASKDOptions",
    "ASKDTrainer",
    "DistillBatch",
    "EvalResult",
    "Generation",
    "LossOutput",
    "PromptItem",
    "Response",
    "advantage_kd_loss",
    "askd_loss",
    "chunked_loss",
    "chunked_token_log_probs",
    "clipped_sgo_coefficient",
    "compute_loss",
    "dense_askd_loss",
    "distillm2_loss",
    "distillm_loss",
    "evaluate_model",
    "forward_kl",
    "generalized_jsd",
    "generate",
    "generate_samples",
    "gkd_loss",
    "group_advantages",
    "hard_gate",
    "is_validation_enabled",
    "kd_loss",
    "prompt_items_from_samples",
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



def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'askd_ref' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
