"""Alias of :mod:`askd_ref.engine.trainer` (the TRL-shaped ``ASKDTrainer``) and its companions.

The code lives in ``askd_ref/engine/``: the trainer in ``trainer.py``, ``ASKDConfig`` in
``config.py``, prompt items and their collation in ``items.py`` (the method needs table in
``askd_ref/methods.py``); this module keeps ``from askd_ref.trainer import ASKDTrainer, ASKDConfig``
and the other names it always exported working.
"""

from askd_ref.engine.config import ASKDConfig
from askd_ref.engine.items import (
    PromptDataset,
    PromptItem,
    Response,
    prompt_items_from_records,
    prompt_items_from_samples,
)
from askd_ref.engine.trainer import ASKDTrainer
from askd_ref.methods import METHOD_NEEDS, MethodNeeds

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
