"""The rows of the training data: a prompt with its responses, grouped from spec §8 samples.

:class:`PromptItem` (a prompt with its TGOs and offline SGOs, each a :class:`Response`) is what
:class:`~askd_ref.engine.trainer.ASKDTrainer` trains on; :func:`prompt_items_from_samples` and
:func:`prompt_items_from_records` build them from sample files or ``datasets`` rows;
:class:`PromptDataset`, :class:`EpochShuffleSampler` and :func:`collate_items` feed them to the
``transformers`` data loader.
"""

import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset, Sampler

from askd_ref.engine.data import Sample
from askd_ref.engine.tokens import render_chat_prompts

__all__ = [
    "EpochShuffleSampler",
    "PromptDataset",
    "PromptItem",
    "Response",
    "collate_items",
    "is_hf_dataset",
    "prompt_items_from_records",
    "prompt_items_from_samples",
]


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


def is_hf_dataset(obj: object) -> bool:
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


def collate_items(items: list[PromptItem]) -> dict[str, Any]:
    """The data collator of :class:`PromptDataset` batches: the items, untouched (the trainer
    tokenises them per step, after sampling SGOs)."""
    return {"items": items}
