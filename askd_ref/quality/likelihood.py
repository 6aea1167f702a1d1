"""Teacher-likelihood quality (spec §5): r = exp(mean_t log p(y_t | c_t)), the teacher's per-token
geometric-mean probability of the response. Needs no verifier or reward model: the default for
instruction data.

The signal takes either a teacher causal LM (a local directory or a loaded model) and its
tokenizer, or nothing, in which case each sample must carry precomputed teacher token log-probs
in ``Sample.extra["teacher_token_logprobs"]`` (a list of floats, one per response token).

Tokenisation (model path): ``prompt`` with the tokenizer's special tokens (e.g. BOS), then
``response`` without, then the EOS token (``append_eos=True``, default: the teacher's
probability of stopping is part of the response, and an empty response is still scored). The two
parts are tokenised separately and concatenated, as generation produces them. A padded
vocabulary head is sliced to the tokenizer's vocabulary (spec §8) before the softmax.
"""

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from askd_ref.engine.data import Sample
from askd_ref.quality import validate_scores
from askd_ref.sequence import token_log_probs

__all__ = ["TeacherLikelihood", "likelihood_from_token_logprobs"]

#: How far above 0 a log-probability may be before it is an error (rounding in half precision).
_LOGP_SLACK = 1e-3


def likelihood_from_token_logprobs(
    token_logp: Float[Tensor, "batch seq"], mask: Bool[Tensor, "batch seq"]
) -> Float[Tensor, " batch"]:
    """r = exp(Σ_t m_t ℓp_t / Σ_t m_t) per row, computed in float64.

    ``-inf`` entries are allowed (r = 0); NaN, +inf or values above 0 (beyond rounding) on
    masked-in positions, and rows without any masked-in token, are ``ValueError``.

    >>> import torch
    >>> lp = torch.log(torch.tensor([[0.5, 0.125, 0.9], [0.25, 1.0, 1.0]]))
    >>> likelihood_from_token_logprobs(lp, torch.tensor([[True, True, False], [True, False, False]]))
    tensor([0.2500, 0.2500], dtype=torch.float64)
    """
    if not isinstance(token_logp, Tensor) or not token_logp.is_floating_point():
        raise TypeError("token_logp must be a floating-point tensor")
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise TypeError("mask must be a bool tensor")
    if token_logp.ndim != 2 or mask.shape != token_logp.shape:
        raise ValueError(
            f"token_logp and mask must both have shape (batch, seq), got {tuple(token_logp.shape)} "
            f"and {tuple(mask.shape)}"
        )
    lp = token_logp.detach().to(torch.float64)
    counts = mask.sum(dim=-1)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"mask selects no token in row(s) {empty}; the likelihood of nothing is undefined")
    bad = (mask & (lp.isnan() | (lp > _LOGP_SLACK))).any(dim=-1).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"token_logp has NaN or positive log-probabilities in row(s) {bad}")
    total = torch.where(mask, lp, torch.zeros_like(lp)).sum(dim=-1)
    return torch.exp(torch.clamp(total / counts, max=0.0))


class TeacherLikelihood:
    """Quality r = exp(mean_t log p(y_t|c_t)) under the teacher (module doc).

    Args:
        model: the teacher (a directory/hub id for ``AutoModelForCausalLM``, or a loaded model);
            ``None`` reads precomputed log-probs from ``Sample.extra[logprob_key]``.
        tokenizer: required with a loaded model; loaded from ``model`` when that is a path.
        logprob_key: where precomputed teacher token log-probs live in ``Sample.extra``.
        append_eos: score the EOS token after the response as well.
        batch_size, device, dtype: inference settings.
    """

    name: str = "teacher_likelihood"

    def __init__(
        self,
        model: str | os.PathLike[str] | Any | None = None,
        tokenizer: Any | None = None,
        *,
        logprob_key: str = "teacher_token_logprobs",
        append_eos: bool = True,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.model: Any | None = None
        self.tokenizer = tokenizer
        if model is not None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            loaded: Any = model
            if isinstance(model, str | os.PathLike):
                path = os.fspath(model)
                kwargs: dict[str, Any] = {} if dtype is None else {"dtype": dtype}
                loaded = AutoModelForCausalLM.from_pretrained(path, **kwargs)
                if self.tokenizer is None:
                    self.tokenizer = AutoTokenizer.from_pretrained(path)
            elif dtype is not None:
                loaded = loaded.to(dtype)
            if self.tokenizer is None:
                raise ValueError("tokenizer is required when model is a loaded model, not a path")
            if append_eos and self.tokenizer.eos_token_id is None:
                raise ValueError("append_eos=True but the tokenizer has no eos token")
            self.model = loaded.to(device).eval()
        elif tokenizer is not None:
            raise ValueError("a tokenizer without a model: pass the teacher model too")
        self.logprob_key = logprob_key
        self.append_eos = append_eos
        self.batch_size = batch_size
        self.device = torch.device(device)

    def _where(self, i: int, sample: Sample) -> str:
        return f"quality signal {self.name!r}: sample {i} (prompt {sample.prompt[:40]!r})"

    def _precomputed(self, samples: Sequence[Sample]) -> list[float]:
        out: list[float] = []
        for i, sample in enumerate(samples):
            values = sample.extra.get(self.logprob_key)
            if values is None:
                raise ValueError(
                    f"{self._where(i, sample)} has no extra[{self.logprob_key!r}]; pass a teacher model "
                    "or precomputed teacher token log-probs"
                )
            if not isinstance(values, list | tuple) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(
                    f"{self._where(i, sample)}: extra[{self.logprob_key!r}] must be a list of numbers"
                )
            if not values:
                raise ValueError(f"{self._where(i, sample)}: extra[{self.logprob_key!r}] is empty")
            lp = torch.tensor([list(map(float, values))], dtype=torch.float64)
            try:
                everything = torch.ones_like(lp, dtype=torch.bool)
                out.append(float(likelihood_from_token_logprobs(lp, everything)[0]))
            except ValueError as err:
                raise ValueError(f"{self._where(i, sample)}: {err}") from None
        return out

    def _encode(self, i: int, sample: Sample) -> tuple[list[int], int]:
        tok = self.tokenizer
        assert tok is not None
        # the trainer's convention: BOS added unless the (chat-rendered) prompt starts with it
        bos = getattr(tok, "bos_token", None)
        has_bos = isinstance(bos, str) and bool(bos) and sample.prompt.startswith(bos)
        prompt_ids = list(tok(sample.prompt, add_special_tokens=not has_bos)["input_ids"])
        response_ids = list(tok(sample.response, add_special_tokens=False)["input_ids"])
        if self.append_eos:
            response_ids.append(int(tok.eos_token_id))
        if not prompt_ids:
            raise ValueError(f"{self._where(i, sample)}: the prompt has no tokens to condition on")
        if not response_ids:
            raise ValueError(f"{self._where(i, sample)}: the response has no tokens (use append_eos=True)")
        return prompt_ids + response_ids, len(prompt_ids)

    @torch.inference_mode()
    def _from_model(self, samples: Sequence[Sample]) -> list[float]:
        assert self.model is not None
        assert self.tokenizer is not None
        vocab = len(self.tokenizer)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out: list[float] = []
        for start in range(0, len(samples), self.batch_size):
            batch = samples[start : start + self.batch_size]
            encoded = [self._encode(start + j, s) for j, s in enumerate(batch)]
            width = max(len(ids) for ids, _ in encoded)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            response = torch.zeros((len(batch), width), dtype=torch.bool)
            for row, (seq, n_prompt) in enumerate(encoded):
                ids[row, : len(seq)] = torch.tensor(seq)
                attention[row, : len(seq)] = 1
                response[row, n_prompt : len(seq)] = True
            ids, attention = ids.to(self.device), attention.to(self.device)
            response = response.to(self.device)
            logits = self.model(input_ids=ids, attention_mask=attention).logits
            if logits.shape[-1] < vocab:
                raise ValueError(
                    f"the teacher's head has {logits.shape[-1]} logits but the tokenizer has {vocab} tokens"
                )
            lp, mask = token_log_probs(logits[..., :vocab].float(), ids, response)
            out.extend(float(v) for v in likelihood_from_token_logprobs(lp, mask).cpu())
        return out

    def score(self, samples: Sequence[Sample]) -> list[float]:
        values = self._precomputed(samples) if self.model is None else self._from_model(samples)
        for i, (sample, v) in enumerate(zip(samples, values, strict=True)):
            if math.isnan(v):
                raise ValueError(f"{self._where(i, sample)}: the teacher gave a NaN likelihood")
        return validate_scores(self.name, samples, values)
