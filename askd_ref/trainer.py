"""Alias of :mod:`askd_ref.engine.trainer` (the TRL-shaped ``ASKDTrainer``).

The code lives in ``askd_ref/engine/``: the trainer in ``trainer.py``, ``ASKDConfig`` in
``config.py``, prompt items and their collation in ``items.py``; this module keeps
``from askd_ref.trainer import ASKDTrainer, ASKDConfig`` working.
"""

from askd_ref.engine.trainer import (
    METHOD_NEEDS,
    ASKDConfig,
    ASKDTrainer,
    MethodNeeds,
    PromptDataset,
    PromptItem,
    Response,
    prompt_items_from_records,
    prompt_items_from_samples,
)

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
