"""Teacher-likelihood signal (spec §5): exp(mean log p) from a tiny local teacher or precomputed log-probs."""

import math
import string
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from askd_ref.engine.data import Sample
from askd_ref.quality import QualitySignal, get_signal
from askd_ref.quality.likelihood import TeacherLikelihood, likelihood_from_token_logprobs


def _char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in sorted(set(string.printable)):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )


def _tiny_lm(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        eos_token_id=1,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # make the distribution far from uniform so the checks have teeth
        model.lm_head.weight.mul_(20.0)
    return model


SAMPLES = [
    Sample("12+7=", "19", "teacher"),
    Sample("12+7=", "20 is my guess", "student"),
    Sample("a", "", "student"),  # empty response: only the EOS is scored
    Sample("longer prompt here, ", "x", "student"),
]


def _manual(model: Any, tok: PreTrainedTokenizerFast, s: Sample, *, append_eos: bool = True) -> float:
    """Unbatched, loop-based exp(mean log p) written independently of the signal."""
    p = tok(s.prompt)["input_ids"]
    r = tok(s.response, add_special_tokens=False)["input_ids"] + ([tok.eos_token_id] if append_eos else [])
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0, :, : len(tok)].double(), dim=-1)
    terms = [float(logp[len(p) + k - 1, tok_id]) for k, tok_id in enumerate(r)]
    return math.exp(sum(terms) / len(terms))


def test_matches_an_unbatched_loop_and_is_batch_independent() -> None:
    tok = _char_tokenizer()
    model = _tiny_lm(len(tok))
    signal = TeacherLikelihood(model, tok, batch_size=3)
    assert isinstance(signal, QualitySignal)
    scores = signal.score(SAMPLES)
    expected = [_manual(model, tok, s) for s in SAMPLES]
    assert scores == pytest.approx(expected, rel=1e-5)
    assert TeacherLikelihood(model, tok, batch_size=1).score(SAMPLES) == pytest.approx(scores, rel=1e-5)
    assert len({round(v, 6) for v in scores}) == len(scores)
    assert all(0.0 < v < 1.0 for v in scores)
    no_eos = TeacherLikelihood(model, tok, append_eos=False).score(SAMPLES[:2])
    assert no_eos == pytest.approx([_manual(model, tok, s, append_eos=False) for s in SAMPLES[:2]], rel=1e-5)


def test_uniform_teacher_gives_one_over_vocab() -> None:
    tok = _char_tokenizer()
    model = _tiny_lm(len(tok))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    assert TeacherLikelihood(model, tok).score(SAMPLES) == pytest.approx([1 / len(tok)] * len(SAMPLES))


def test_padded_vocabulary_head_is_sliced() -> None:
    tok = _char_tokenizer()
    padded = _tiny_lm(len(tok) + 28)  # a head larger than the tokenizer, as in 151936 vs 152064
    with torch.no_grad():
        padded.lm_head.weight[len(tok) :].fill_(5.0)  # mass the sliced head must not see
    scores = TeacherLikelihood(padded, tok).score(SAMPLES)
    assert scores == pytest.approx([_manual(padded, tok, s) for s in SAMPLES], rel=1e-5)
    small = _tiny_lm(len(tok) - 1)
    with pytest.raises(ValueError, match="head has"):
        TeacherLikelihood(small, tok).score(SAMPLES[:1])


def test_loads_from_a_directory(tmp_path: Path) -> None:
    tok = _char_tokenizer()
    model = _tiny_lm(len(tok))
    model.save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    signal = get_signal("likelihood", model=tmp_path)
    assert signal.score(SAMPLES) == pytest.approx([_manual(model, tok, s) for s in SAMPLES], rel=1e-5)


def test_precomputed_log_probs() -> None:
    lp = [math.log(0.5), math.log(0.125)]
    samples = [
        Sample("p", "r", "teacher", extra={"teacher_token_logprobs": lp}),
        Sample("p", "r", "teacher", extra={"teacher_token_logprobs": [0.0, 0.0, 0.0]}),
        Sample("p", "r", "teacher", extra={"teacher_token_logprobs": [float("-inf"), -1.0]}),
        Sample("p", "r", "teacher", extra={"lp": [-1.0]}),
    ]
    signal = TeacherLikelihood()
    assert signal.score(samples[:3]) == pytest.approx([0.25, 1.0, 0.0])
    assert TeacherLikelihood(logprob_key="lp").score(samples[3:]) == pytest.approx([math.exp(-1.0)])
    with pytest.raises(ValueError, match=r"sample 3 \(prompt 'p'\) has no extra\['teacher_token_logprobs'\]"):
        signal.score(samples)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([], "is empty"),
        ([-1.0, float("nan")], "NaN or positive"),
        ([0.5], "NaN or positive"),
        (["x"], "must be a list of numbers"),
        (-1.0, "must be a list of numbers"),
    ],
)
def test_precomputed_errors_name_the_sample(values: object, message: str) -> None:
    samples = [Sample("ok", "r", "student", extra={"teacher_token_logprobs": [-0.1]}),
               Sample("bad one", "r", "student", extra={"teacher_token_logprobs": values})]
    with pytest.raises(ValueError, match=r"sample 1 \(prompt 'bad one'\).*" + message):
        TeacherLikelihood().score(samples)


def test_model_path_errors() -> None:
    tok = _char_tokenizer()
    model = _tiny_lm(len(tok))
    with pytest.raises(ValueError, match="response has no tokens"):
        TeacherLikelihood(model, tok, append_eos=False).score([Sample("p", "", "student")])
    with pytest.raises(ValueError, match="prompt has no tokens"):
        TeacherLikelihood(model, tok).score([Sample("", "x", "student")])
    with pytest.raises(ValueError, match="tokenizer is required"):
        TeacherLikelihood(model)
    with pytest.raises(ValueError, match="without a model"):
        TeacherLikelihood(None, tok)


def test_likelihood_from_token_logprobs_checks() -> None:
    lp = torch.log(torch.tensor([[0.5, 0.5], [0.1, 0.2]]))
    mask = torch.tensor([[True, True], [True, False]])
    assert likelihood_from_token_logprobs(lp, mask).tolist() == pytest.approx([0.5, 0.1])
    with pytest.raises(ValueError, match=r"row\(s\) \[1\]"):
        likelihood_from_token_logprobs(lp, torch.tensor([[True, True], [False, False]]))
    with pytest.raises(ValueError, match="shape"):
        likelihood_from_token_logprobs(lp, mask[:1])
    with pytest.raises(TypeError, match="bool"):
        likelihood_from_token_logprobs(lp, mask.float())  # type: ignore[arg-type]
    # masked-out garbage is ignored
    garbage = torch.tensor([[math.log(0.5), float("nan")]])
    assert likelihood_from_token_logprobs(garbage, torch.tensor([[True, False]])).item() == pytest.approx(0.5)
