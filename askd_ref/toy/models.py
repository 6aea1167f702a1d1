"""Tiny Llama-config causal LMs for the toy task, and a plain supervised (SFT) training loop.

Nothing is downloaded: models are built from a :class:`transformers.LlamaConfig` with fresh
weights (seeded), and saved with ``save_pretrained`` together with the character tokenizer.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import LlamaConfig, LlamaForCausalLM

from askd_ref.engine.forward import sequence_logprobs
from askd_ref.engine.tokens import encode_prompt, encode_response, pad_batch

__all__ = ["Check", "problem_batches", "sft_train", "tiny_llama"]


@dataclasses.dataclass(frozen=True)
class Check:
    """What a stopping rule saw at one check: the metric it reads, and whether training may stop."""

    value: float
    """The metric the rule compares with its target (shown in the progress bar)."""
    done: bool
    """``True`` ends training."""


def tiny_llama(
    tokenizer: Any,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    intermediate_size: int | None = None,
    max_positions: int = 128,
    seed: int = 0,
) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` over ``tokenizer``'s vocabulary (seeded).

    ``intermediate_size`` defaults to ``4 * hidden_size``; the embedding and output head are
    tied (fewer parameters for the tiny sizes used here).

    >>> from askd_ref.toy import build_tokenizer
    >>> m = tiny_llama(build_tokenizer(), hidden_size=16, num_layers=1, num_heads=2)
    >>> m.config.vocab_size, sum(p.numel() for p in m.parameters())  # 52·16 + 4·16² + 3·16·64 + 3·16
    (52, 4976)
    """
    for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers), ("num_heads", num_heads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be divisible by num_heads={num_heads}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def sft_train(
    model: Any,
    tokenizer: Any,
    next_batch: Callable[[int], Sequence[tuple[str, str]]],
    *,
    steps: int,
    lr: float,
    warmup: int = 50,
    weight_decay: float = 0.0,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    seed: int = 0,
    progress: bool = True,
    desc: str = "sft",
    stop: Callable[[int], "bool | Check"] | None = None,
    check_every: int = 0,
    metric_name: str = "metric",
) -> list[float]:
    """Supervised fine-tuning on (prompt, response) pairs: token-mean NLL of the responses (+EOS).

    Args:
        model: a causal LM (trained in place).
        tokenizer: its tokenizer.
        next_batch: ``step ↦ [(prompt, response), …]``, the batch of that step (deterministic).
        steps: maximal number of optimizer steps.
        lr: peak AdamW learning rate (linear warm-up over ``warmup`` steps, cosine decay to 0).
        device, autocast_dtype: where to train; ``autocast_dtype`` (e.g. ``torch.bfloat16``)
            runs forwards under autocast.
        seed: torch seed for anything random in the model (none in a dropout-free Llama).
        stop: optional ``step ↦ bool | Check`` called every ``check_every`` steps; ``True`` (or a
            :class:`Check` with ``done``) ends training early (e.g. when a held-out accuracy
            reaches a target). A :class:`Check`'s value is shown in the progress bar as
            ``metric_name``.

    Returns:
        The loss of every step taken.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    model.to(device)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)

    def schedule(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, warmup))
        return warm * 0.5 * (1.0 + math.cos(math.pi * step / steps))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    vocab = len(tokenizer)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    shown: dict[str, str] = {}
    # The toy pools are small (≈ 10⁴ problems) and every step re-draws from them: encoding is
    # deterministic, so each string is tokenized once (a quarter of a tiny model's step otherwise).
    prompt_ids: dict[str, list[int]] = {}
    response_ids: dict[str, list[int]] = {}

    def ids(cache: dict[str, list[int]], encode: Callable[[Any, str], list[int]], text: str) -> list[int]:
        if text not in cache:
            cache[text] = encode(tokenizer, text)
        return cache[text]

    for step in bar:
        pairs = next_batch(step)
        batch = pad_batch(
            [ids(prompt_ids, encode_prompt, p) for p, _ in pairs],
            [ids(response_ids, encode_response, r) for _, r in pairs],
            pad_id=tokenizer.pad_token_id,
        ).to(device)
        with torch.autocast(
            device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32,
            enabled=autocast_dtype is not None,
        ):
            token_logp, _ = sequence_logprobs(model, batch, vocab)
        mask = batch.shifted_mask
        per_sample = -(token_logp * mask).sum(-1) / mask.sum(-1)
        loss = per_sample.mean()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step % 20 == 0:
            shown["loss"] = f"{losses[-1]:.3f}"
            bar.set_postfix(shown)
        if stop is not None and check_every > 0 and (step + 1) % check_every == 0:
            check = stop(step + 1)
            if isinstance(check, Check):
                shown[metric_name] = f"{check.value:.3f}"
                bar.set_postfix(shown)
                check = check.done
            if check:
                break
    model.eval()
    return losses


def problem_batches(
    pool: Any, batch_size: int, *, seed: int | str, flaw: Any = None
) -> Callable[[int], list[tuple[str, str]]]:
    """``step ↦ batch`` of (prompt, solution) pairs drawn from a toy problem pool.

    The solutions are the reference ones, or, with ``flaw`` (a :class:`~askd_ref.toy.task.CarryFlaw`),
    written with that systematic error (the teacher's training data).
    """

    def next_batch(step: int) -> list[tuple[str, str]]:
        return [(p.prompt, p.flawed_solution(flaw)) for p in pool.draw(batch_size, seed=f"{seed}-{step}")]

    return next_batch
