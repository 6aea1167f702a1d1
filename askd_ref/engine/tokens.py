"""Tokenisation and padding of prompt–response pairs (spec §8), shared by trainer, generation and eval.

Convention, the same everywhere in askd-ref (and in :mod:`askd_ref.quality.likelihood`): the
prompt is tokenised *with* the tokenizer's special tokens (e.g. BOS) — unless its text already
starts with the BOS token, as a chat template renders it, so BOS is never doubled — the response
*without*, and the two id lists are concatenated; a complete response ends with the EOS token, which is a
response token (the student learns when to stop). Responses produced by
:func:`askd_ref.engine.generation.generate` keep their exact token ids, so a re-tokenisation never
changes what was sampled (the behaviour log-prob of E13 refers to those ids).
"""

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "TokenBatch",
    "encode_prompt",
    "encode_response",
    "pad_batch",
    "render_chat_prompt",
    "render_chat_prompts",
]


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of ``prompt`` with the tokenizer's special tokens (BOS).

    A prompt whose text already begins with the BOS token (a rendered chat template) is
    tokenised without special tokens, so it keeps exactly one BOS.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    bos = getattr(tokenizer, "bos_token", None)
    has_bos = isinstance(bos, str) and bool(bos) and prompt.startswith(bos)
    ids = tokenizer(prompt, add_special_tokens=not has_bos)["input_ids"]
    if not ids:
        raise ValueError(f"prompt {prompt[:40]!r} encodes to no tokens")
    return [int(i) for i in ids]


def render_chat_prompt(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> str:
    """The prompt text of a chat: the tokenizer's chat template with the generation prompt added."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "chat data (messages) needs a tokenizer with a chat_template; this tokenizer has none"
        )
    text = tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False)
    if not isinstance(text, str):  # pragma: no cover - transformers returns str with tokenize=False
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def render_chat_prompts(samples: Sequence[Any], tokenizer: Any) -> list[Any]:
    """Samples read from chat records (``extra["messages"]``) with their prompts rendered.

    Each such sample's prompt becomes :func:`render_chat_prompt` of its messages before the final
    assistant message; other samples are returned unchanged. ``samples``:
    :class:`askd_ref.engine.data.Sample` records.
    """
    from askd_ref.engine.data import check_messages

    out: list[Any] = []
    for s in samples:
        messages = s.extra.get("messages")
        if messages is None:
            out.append(s)
            continue
        chat = check_messages(messages)
        if chat[-1]["role"] != "assistant" or chat[-1]["content"] != s.response:
            out.append(s)  # a 'messages' field that is not this sample's chat: leave it alone
            continue
        out.append(dataclasses.replace(s, prompt=render_chat_prompt(tokenizer, chat[:-1])))
    return out


def encode_response(tokenizer: Any, response: str, *, add_eos: bool = True) -> list[int]:
    """Token ids of ``response`` without special tokens, followed by EOS when ``add_eos``."""
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    ids = [int(i) for i in tokenizer(response, add_special_tokens=False)["input_ids"]]
    if add_eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("the tokenizer has no EOS token; responses need one to end")
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise ValueError("response encodes to no tokens (empty response and add_eos=False)")
    return ids


@dataclasses.dataclass(frozen=True)
class TokenBatch:
    """Prompt+response sequences, right-padded to one length.

    Attributes:
        input_ids: ``(batch, seq)`` token ids (padding positions hold ``pad_id``).
        attention_mask: ``(batch, seq)`` long, 1 on real tokens.
        response_mask: ``(batch, seq)`` bool, True on response tokens (EOS included); prompt,
            padding and anything after the response are False.
    """

    input_ids: Tensor
    attention_mask: Tensor
    response_mask: Tensor

    def to(self, device: torch.device | str) -> "TokenBatch":
        return TokenBatch(
            self.input_ids.to(device), self.attention_mask.to(device), self.response_mask.to(device)
        )

    @property
    def shifted_mask(self) -> Tensor:
        """``response_mask[:, 1:]``: True where position t's logits predict a response token."""
        return self.response_mask[:, 1:]


def pad_batch(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], *, pad_id: int
) -> TokenBatch:
    """Concatenate each prompt with its response and right-pad to the longest sequence.

    >>> b = pad_batch([[1, 5], [1]], [[7, 2], [8, 9, 2]], pad_id=0)
    >>> b.input_ids.tolist(), b.response_mask.int().tolist()
    ([[1, 5, 7, 2], [1, 8, 9, 2]], [[0, 0, 1, 1], [0, 1, 1, 1]])
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    if not prompts:
        raise ValueError("pad_batch needs at least one sequence")
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if not p:
            raise ValueError(f"prompt {i} has no tokens (a causal LM needs context to score the first token)")
        if not r:
            raise ValueError(f"response {i} has no tokens")
    length = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    n = len(prompts)
    ids = torch.full((n, length), int(pad_id), dtype=torch.long)
    attn = torch.zeros((n, length), dtype=torch.long)
    resp = torch.zeros((n, length), dtype=torch.bool)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        k, m = len(p), len(r)
        ids[i, : k + m] = torch.tensor([*p, *r], dtype=torch.long)
        attn[i, : k + m] = 1
        resp[i, k : k + m] = True
    return TokenBatch(ids, attn, resp)
