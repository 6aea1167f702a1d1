"""Alias of :mod:`askd_ref.engine.data` (the spec §8 sample and prompt files).

The code lives in ``askd_ref/engine/data.py``;
this module keeps ``from askd_ref.data import read_samples, write_samples`` working.
"""

from askd_ref.engine.data import (
    BadLine,
    BadLinesSkipped,
    Prompt,
    RecordList,
    Sample,
    Source,
    check_messages,
    read_prompts,
    read_samples,
    write_samples,
)

__all__ = [
    "BadLine",
    "BadLinesSkipped",
    "Prompt",
    "RecordList",
    "Sample",
    "Source",
    "check_messages",
    "read_prompts",
    "read_samples",
    "write_samples",
]
