"""Sampling responses from a causal LM, with the behaviour log-probability of each sample (E13).

:func:`generate` samples ``n`` responses per prompt (temperature, top-p, max new tokens), stops a
row at EOS, and returns for each response its text, its exact token ids and

    log μ(y) = Σ_t log μ(y_t | c_t),

the log-probability of the sampled tokens under the distribution they were *actually drawn
from*: the model's softmax over the shared vocabulary (spec §8), divided by the temperature and
truncated to the top-p nucleus, renormalised. At temperature 1 and top-p 1 this is the model's
own log-probability, computed the way the trainer computes it (float32 log-softmax of the logits
sliced to the tokenizer vocabulary), so the off-policy importance ratio of E13 is exactly 1 for a
sample scored by the policy that drew it (up to the rounding difference between a cached
incremental forward and a full forward). With another temperature or top-p, log μ is the
log-probability under the tempered/truncated sampler, which is what an unbiased importance ratio
needs. Greedy decoding (``temperature=0``) has no density: ``behaviour_logprob`` is ``None``.

Randomness is per sample, not per batch: the uniforms that choose the tokens of response ``k``
of prompt ``i`` come from a generator seeded with ``(seed, prompt_ids[i], k)``. The samples
therefore do not depend on how prompts are batched or sharded across processes (only on the
model), which makes data-parallel runs reproduce single-process runs.
"""

import dataclasses
import hashlib
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from askd_ref.engine.data import Prompt, Sample
from askd_ref.engine.forward import shared_vocab_size
from askd_ref.engine.tokens import encode_prompt

__all__ = ["Generation", "generate", "generate_samples", "sample_seed"]


@dataclasses.dataclass(frozen=True)
class Generation:
    """One sampled response.

    Attributes:
        prompt_index: position of the prompt in the ``prompts`` argument.
        sample_index: which of the ``n`` samples of that prompt (0-based).
        prompt: the prompt text.
        text: the decoded response, special tokens (EOS) removed.
        token_ids: the sampled response token ids, EOS included when ``finished``.
        behaviour_logprob: Σ_t log μ(y_t|c_t) over ``token_ids`` (``None`` for greedy decoding).
        finished: whether the response ended with EOS (else it hit ``max_new_tokens``).
    """

    prompt_index: int
    sample_index: int
    prompt: str
    text: str
    token_ids: tuple[int, ...]
    behaviour_logprob: float | None
    finished: bool


def sample_seed(seed: int | str, prompt_id: int | str, sample_index: int) -> int:
    """The 63-bit seed of the generator for one response (a hash of the three keys).

    >>> sample_seed(0, 3, 1) == sample_seed(0, 3, 1) != sample_seed(0, 3, 2)
    True
    """
    digest = hashlib.sha256(f"askd-sample:{seed}:{prompt_id}:{sample_index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _check_sampling(temperature: float, top_p: float, max_new_tokens: int, n: int, batch_size: int) -> None:
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not (
        math.isfinite(temperature) and temperature >= 0
    ):
        raise ValueError(f"temperature must be a finite float >= 0 (0 = greedy), got {temperature!r}")
    if isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p!r}")
    for name, value in (("max_new_tokens", max_new_tokens), ("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def _choose(
    logits: Tensor, uniforms: Tensor, temperature: float, top_p: float
) -> tuple[Tensor, Tensor | None]:
    """Tokens drawn by inverse CDF with the given uniforms, and their log μ (None when greedy)."""
    if temperature == 0:
        return logits.argmax(-1), None
    logp = F.log_softmax(logits / temperature if temperature != 1 else logits, dim=-1)
    if top_p < 1:
        sorted_logp, order = logp.sort(dim=-1, descending=True)
        probs = sorted_logp.exp().double()
        before = probs.cumsum(-1) - probs  # mass strictly before each token
        keep_sorted = before < top_p
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        logp = logp.masked_fill(~keep, -math.inf)
        logp = logp - torch.logsumexp(logp, dim=-1, keepdim=True)
    probs = logp.double().exp()
    cdf = probs.cumsum(-1)
    target = uniforms.double().unsqueeze(-1) * cdf[:, -1:]
    tokens = torch.searchsorted(cdf, target).squeeze(-1).clamp(max=logits.shape[-1] - 1)
    # never land on a zero-probability token (possible only through rounding at the edges)
    bad = probs.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) <= 0
    if bool(bad.any()):
        tokens = torch.where(bad, probs.argmax(-1), tokens)
    return tokens, logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)


@torch.no_grad()
def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    max_new_tokens: int = 64,
    seed: int | str = 0,
    prompt_ids: Sequence[int | str] | None = None,
    batch_size: int = 64,
    vocab_size: int | None = None,
    progress: bool = False,
    desc: str = "generate",
) -> list[Generation]:
    """Sample ``n`` responses for each prompt (see the module docstring for log μ and seeding).

    Args:
        model: a causal LM (``transformers`` interface; KV cache used). Put in eval mode for the
            call and restored afterwards.
        tokenizer: its tokenizer (needs EOS and pad tokens).
        prompts: prompt texts.
        n: responses per prompt.
        temperature: softmax temperature; ``0`` means greedy decoding.
        top_p: nucleus size (1 = no truncation).
        max_new_tokens: length limit per response (EOS included).
        seed: sampling seed; with ``prompt_ids`` it fixes every sample.
        prompt_ids: stable ids of the prompts used for seeding (default: their positions).
        batch_size: sequences per forward pass.
        vocab_size: the shared vocabulary (default ``len(tokenizer)``); logits beyond it (padded
            heads) are never sampled.
        progress: show a tqdm progress bar.

    Returns:
        ``len(prompts) * n`` :class:`Generation` records, prompt-major (all samples of prompt 0,
        then prompt 1, …).

    Example:
        >>> from askd_ref.toy import build_tokenizer, tiny_llama
        >>> tok = build_tokenizer(); m = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2)
        >>> g = generate(m, tok, ["12+34="], n=2, max_new_tokens=5, seed=0)
        >>> len(g), g[0].sample_index, g[1].sample_index, len(g[0].token_ids) <= 5
        (2, 0, 1, True)
        >>> g == generate(m, tok, ["12+34="], n=2, max_new_tokens=5, seed=0)
        True
    """
    _check_sampling(temperature, top_p, max_new_tokens, n, batch_size)
    if isinstance(prompts, str):
        raise TypeError("prompts must be a sequence of strings, not one string")
    ids_for_seed: Sequence[int | str] = list(range(len(prompts))) if prompt_ids is None else prompt_ids
    if len(ids_for_seed) != len(prompts):
        raise ValueError(f"prompt_ids has {len(ids_for_seed)} entries for {len(prompts)} prompts")
    vocab = shared_vocab_size(tokenizer, model=model) if vocab_size is None else int(vocab_size)
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; generation needs one to stop")
    pad = eos if pad is None else pad
    device = next(model.parameters()).device
    jobs = [(i, k) for i in range(len(prompts)) for k in range(n)]
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    results: list[Generation] = []
    was_training = bool(model.training)
    model.eval()
    try:
        bar = tqdm(total=len(jobs), desc=desc, disable=not progress, leave=False)
        for start in range(0, len(jobs), batch_size):
            chunk = jobs[start : start + batch_size]
            results.extend(
                _generate_chunk(
                    model, tokenizer, prompts, encoded, ids_for_seed, chunk, device, vocab, eos, pad,
                    temperature, top_p, max_new_tokens, seed,
                )
            )
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
    return results


def _generate_chunk(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    encoded: Sequence[list[int]],
    ids_for_seed: Sequence[int | str],
    chunk: Sequence[tuple[int, int]],
    device: torch.device,
    vocab: int,
    eos: int,
    pad: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    seed: int | str,
) -> list[Generation]:
    rows = len(chunk)
    input_ids, attention = _left_padded([encoded[i] for i, _ in chunk], pad)
    uniforms = _uniforms(seed, [(ids_for_seed[i], k) for i, k in chunk], max_new_tokens)
    input_ids, attention, uniforms = input_ids.to(device), attention.to(device), uniforms.to(device)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attention, position_ids=positions, use_cache=True)
    cache_arg = _cache_argument(model)
    past = _returned_cache(out)
    tokens_out = torch.full((rows, max_new_tokens), pad, dtype=torch.long, device=device)
    logp_out = torch.zeros((rows, max_new_tokens), dtype=torch.float64, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    position = positions[:, -1:]
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :vocab]
        logits = logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32)
        tok, logp = _choose(logits, uniforms[:, t], temperature, top_p)
        active = ~finished
        tokens_out[:, t] = torch.where(active, tok, torch.full_like(tok, pad))
        if logp is not None:
            logp_out[:, t] = torch.where(active, logp.double(), torch.zeros_like(logp_out[:, t]))
        lengths += active.long()
        finished = finished | (active & (tok == eos))
        if bool(finished.all()) or t == max_new_tokens - 1:
            break
        attention = torch.cat([attention, torch.ones((rows, 1), dtype=attention.dtype, device=device)], dim=1)
        position = position + 1
        out = model(
            input_ids=tokens_out[:, t : t + 1],
            attention_mask=attention,
            position_ids=position,
            use_cache=True,
            **{cache_arg: past},
        )
        past = _returned_cache(out)
    outputs = (tokens_out.cpu(), logp_out.cpu(), lengths.cpu(), finished.cpu())
    return _generations(tokenizer, prompts, chunk, *outputs, temperature)


def _left_padded(encoded: Sequence[list[int]], pad: int) -> tuple[Tensor, Tensor]:
    """Token ids left-padded with ``pad`` to the longest prompt, and the attention mask."""
    width = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), width), pad, dtype=torch.long)
    attention = torch.zeros((len(encoded), width), dtype=torch.long)
    for r, ids in enumerate(encoded):
        input_ids[r, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attention[r, width - len(ids) :] = 1
    return input_ids, attention


def _uniforms(seed: int | str, keys: Sequence[tuple[int | str, int]], steps: int) -> Tensor:
    """One float64 uniform per step for each (prompt id, sample index), seeded by that pair."""
    return torch.stack(
        [
            torch.rand(
                steps,
                generator=torch.Generator().manual_seed(sample_seed(seed, prompt_id, k)),
                dtype=torch.float64,
            )
            for prompt_id, k in keys
        ]
    )


def _generations(
    tokenizer: Any,
    prompts: Sequence[str],
    chunk: Sequence[tuple[int, int]],
    tokens_cpu: Tensor,
    logp_cpu: Tensor,
    lengths_cpu: Tensor,
    finished_cpu: Tensor,
    temperature: float,
) -> list[Generation]:
    """One :class:`Generation` per row of the chunk, with its decoded text (EOS dropped)."""
    gens: list[Generation] = []
    for r, (i, k) in enumerate(chunk):
        m = int(lengths_cpu[r])
        token_ids = tuple(int(x) for x in tokens_cpu[r, :m])
        done = bool(finished_cpu[r])
        text_ids = list(token_ids[:-1]) if done else list(token_ids)
        gens.append(
            Generation(
                prompt_index=i,
                sample_index=k,
                prompt=prompts[i],
                text=tokenizer.decode(text_ids, skip_special_tokens=True),
                token_ids=token_ids,
                behaviour_logprob=None if temperature == 0 else float(logp_cpu[r, :m].sum()),
                finished=done,
            )
        )
    return gens


def _cache_argument(model: Any) -> str:
    """``"cache"`` (transformers ≥ 5.2x) or ``"past_key_values"`` (older), whichever forward takes."""
    import inspect

    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _returned_cache(out: Any) -> Any:
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.get("past_key_values")


def generate_samples(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[Prompt],
    *,
    source: Literal["teacher", "student"],
    **sampling: Any,
) -> list[Sample]:
    """:func:`generate` for prompt records, returning spec §8 :class:`~askd_ref.engine.data.Sample` records.

    Each sample carries the prompt's reference/tests/extra fields, ``behaviour_logprob`` (None
    for greedy decoding), and in ``extra`` the exact ``response_ids`` (list of ints, EOS
    included when finished) and ``finished``, so a trainer reading the file scores exactly the
    sampled tokens. ``sampling`` is passed to :func:`generate`.
    """
    if source not in ("teacher", "student"):
        raise ValueError(f"source must be 'teacher' or 'student', got {source!r}")
    gens = generate(model, tokenizer, [p.prompt for p in prompts], **sampling)
    samples: list[Sample] = []
    for g in gens:
        base = prompts[g.prompt_index]
        extra = dict(base.extra)
        extra["response_ids"] = list(g.token_ids)
        extra["finished"] = g.finished
        samples.append(
            Sample(
                prompt=base.prompt,
                response=g.text,
                source=source,
                reference=base.reference,
                tests=base.tests,
                behaviour_logprob=g.behaviour_logprob,
                extra=extra,
            )
        )
    return samples
