"""Reward-model quality (spec §5): a sequence-classification model's score, normalised per prompt group.

**Raw reward.** Any local ``AutoModelForSequenceClassification`` (a directory, or a loaded model
plus tokenizer) scores each sample's text; the raw reward is the logit ``logits[label_index]``
(``label_index=None`` requires ``num_labels == 1``, the usual reward head). The text is
``prompt + response`` (``input_format="concat"``, default), the tokenizer's text pair
``(prompt, response)`` (``"pair"``, for cross-encoder style models), or the tokenizer's chat
template over a user/assistant turn (``"chat"``).

**Normalisation within each prompt's group.** Samples with the same group key (by default the
same ``prompt`` string) form a group, and raw rewards are mapped to [0, 1] inside it, so that
only the *ranking among answers to one prompt* matters, not the reward model's offset per prompt:

- ``"minmax"`` (default): r = (s − min) / (max − min) over the group; the best answer gets 1,
  the worst 0.
- ``"zscore_sigmoid"``: r = σ((s − mean) / std) with the population std (ddof = 0); keeps
  relative gaps, never reaches exactly 0 or 1.

A group of one sample, or a group whose spread (max − min for ``minmax``, std for
``zscore_sigmoid``) is at most ``atol`` (default 1e-6, so float noise is not blown up to the
full range), gets 0.5 for every member: the model expresses no preference. Scores therefore
depend on which samples are scored together: score a prompt's whole group in one call.
A NaN or infinite raw reward is a ``ValueError`` naming the sample.
"""

import math
import os
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import torch

from askd_ref.engine.data import Sample
from askd_ref.quality import validate_scores

__all__ = ["RewardModelSignal", "normalize_in_groups"]

Normalization = Literal["minmax", "zscore_sigmoid"]
InputFormat = Literal["concat", "pair", "chat"]


def normalize_in_groups(
    raw: Sequence[float],
    groups: Sequence[Hashable],
    method: Normalization = "minmax",
    *,
    atol: float = 1e-6,
) -> list[float]:
    """Map ``raw`` scores to [0, 1] within each group (see the module doc for the two methods).

    >>> normalize_in_groups([1.0, 3.0, 2.0, 5.0], ["a", "a", "a", "b"])
    [0.0, 1.0, 0.5, 0.5]
    >>> [round(v, 4) for v in normalize_in_groups([0.0, 2.0], ["a", "a"], "zscore_sigmoid")]
    [0.2689, 0.7311]
    """
    if method not in ("minmax", "zscore_sigmoid"):
        raise ValueError(f"method must be 'minmax' or 'zscore_sigmoid', got {method!r}")
    if len(raw) != len(groups):
        raise ValueError(f"raw ({len(raw)}) and groups ({len(groups)}) must have the same length")
    if not (math.isfinite(atol) and atol >= 0):
        raise ValueError(f"atol must be a finite number >= 0, got {atol!r}")
    for i, v in enumerate(raw):
        if not math.isfinite(v):
            raise ValueError(f"raw score {i} is {v!r}; expected a finite number")
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    out = [0.5] * len(raw)
    for idx in members.values():
        vals = [float(raw[i]) for i in idx]
        if method == "minmax":
            lo, hi = min(vals), max(vals)
            if hi - lo > atol:
                for i, v in zip(idx, vals, strict=True):
                    out[i] = (v - lo) / (hi - lo)
        else:
            mean = math.fsum(vals) / len(vals)
            std = math.sqrt(math.fsum((v - mean) ** 2 for v in vals) / len(vals))
            if std > atol:
                for i, v in zip(idx, vals, strict=True):
                    out[i] = 1.0 / (1.0 + math.exp(-(v - mean) / std))
    return out


class RewardModelSignal:
    """Quality r = a reward model's score of (prompt, response), normalised within the prompt's group.

    Args:
        model: a local directory (or hub id already in the cache) of an
            ``AutoModelForSequenceClassification``, or a loaded ``PreTrainedModel``.
        tokenizer: required with a loaded model; loaded from ``model`` when that is a path.
        normalize: ``"minmax"`` (default) or ``"zscore_sigmoid"`` (module doc).
        input_format: ``"concat"`` (default), ``"pair"`` or ``"chat"`` (module doc).
        label_index: which logit is the reward; ``None`` requires a single-logit head.
        group_key: maps a sample to its group; default: its ``prompt``.
        batch_size, max_length, device, dtype: inference settings (``max_length`` truncates).
        atol: spread at or below which a group is treated as constant (→ 0.5).
    """

    name: str = "reward_model"

    def __init__(
        self,
        model: str | os.PathLike[str] | Any,
        tokenizer: Any | None = None,
        *,
        normalize: Normalization = "minmax",
        input_format: InputFormat = "concat",
        label_index: int | None = None,
        group_key: Callable[[Sample], Hashable] | None = None,
        batch_size: int = 8,
        max_length: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
        atol: float = 1e-6,
    ) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if normalize not in ("minmax", "zscore_sigmoid"):
            raise ValueError(f"normalize must be 'minmax' or 'zscore_sigmoid', got {normalize!r}")
        if input_format not in ("concat", "pair", "chat"):
            raise ValueError(f"input_format must be 'concat', 'pair' or 'chat', got {input_format!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(model, str | os.PathLike):
            path = os.fspath(model)
            kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
            loaded = AutoModelForSequenceClassification.from_pretrained(path, **kwargs)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(path)
        else:
            loaded = model
            if tokenizer is None:
                raise ValueError("tokenizer is required when model is a loaded model, not a path")
            if dtype is not None:
                loaded = loaded.to(dtype)
        num_labels = int(loaded.config.num_labels)
        if label_index is None:
            if num_labels != 1:
                raise ValueError(
                    f"the reward model has {num_labels} labels; "
                    "pass label_index to say which logit is the reward"
                )
            label_index = 0
        elif not 0 <= label_index < num_labels:
            raise ValueError(f"label_index must be in [0, {num_labels}), got {label_index}")
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token_id is None:
                raise ValueError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(loaded.config, "pad_token_id", None) is None:
            loaded.config.pad_token_id = tokenizer.pad_token_id
        self.model = loaded.to(device).eval()
        self.tokenizer = tokenizer
        self.normalize: Normalization = normalize
        self.input_format: InputFormat = input_format
        self.label_index = label_index
        self.group_key: Callable[[Sample], Hashable] = group_key if group_key is not None else _prompt_key
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = torch.device(device)
        self.atol = atol

    def _encode(self, batch: Sequence[Sample]) -> Any:
        kw: dict[str, Any] = {
            "return_tensors": "pt",
            "padding": True,
            "truncation": self.max_length is not None,
            "max_length": self.max_length,
        }
        if self.input_format == "pair":
            return self.tokenizer([s.prompt for s in batch], [s.response for s in batch], **kw)
        if self.input_format == "chat":
            texts = [
                self.tokenizer.apply_chat_template(
                    [{"role": "user", "content": s.prompt}, {"role": "assistant", "content": s.response}],
                    tokenize=False,
                )
                for s in batch
            ]
            return self.tokenizer(texts, add_special_tokens=False, **kw)
        return self.tokenizer([s.prompt + s.response for s in batch], **kw)

    @torch.inference_mode()
    def raw_rewards(self, samples: Sequence[Sample]) -> list[float]:
        """The unnormalised reward of each sample (the chosen logit, as float)."""
        out: list[float] = []
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start : start + self.batch_size]
            enc = self._encode(batch).to(self.device)
            logits = self.model(**enc).logits
            out.extend(float(v) for v in logits[:, self.label_index].float().cpu())
        for i, (sample, v) in enumerate(zip(samples, out, strict=True)):
            if not math.isfinite(v):
                raise ValueError(
                    f"quality signal {self.name!r}: the reward model returned {v!r} for sample {i} "
                    f"(prompt {sample.prompt[:40]!r})"
                )
        return out

    def score(self, samples: Sequence[Sample]) -> list[float]:
        raw = self.raw_rewards(samples)
        groups = [self.group_key(s) for s in samples]
        scores = normalize_in_groups(raw, groups, self.normalize, atol=self.atol)
        return validate_scores(self.name, samples, scores)


def _prompt_key(sample: Sample) -> Hashable:
    return sample.prompt
