"""Reward-model signal (spec §5) on a tiny random local model: loading, raw rewards, group normalisation."""

import math
import string
from pathlib import Path
from typing import Any

import pytest
import torch
from tokenizers import Regex, Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

from askd_ref.engine.data import Sample
from askd_ref.quality import QualitySignal, get_signal
from askd_ref.quality.reward_model import RewardModelSignal, normalize_in_groups


def _char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for ch in sorted(set(string.printable)):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    fast.chat_template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    return fast


def _tiny_rm(num_labels: int = 1, seed: int = 0) -> LlamaForSequenceClassification:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(_char_tokenizer()),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        num_labels=num_labels,
        pad_token_id=0,
    )
    return LlamaForSequenceClassification(cfg).eval()


@pytest.fixture(scope="module")
def rm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rm")
    _tiny_rm().save_pretrained(d)
    _char_tokenizer().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def loaded(rm_dir: Path) -> tuple[Any, PreTrainedTokenizerFast]:
    """The saved model loaded once (signals built from it skip from_pretrained)."""
    return LlamaForSequenceClassification.from_pretrained(rm_dir).eval(), _char_tokenizer()


SAMPLES = [
    Sample("2+2=", "4", "student"),
    Sample("2+2=", "five", "student"),
    Sample("2+2=", "22", "student"),
    Sample("3*3=", "9", "teacher"),
    Sample("3*3=", "nine!", "student"),
    Sample("1-1=", "0", "student"),  # a group of one
]


def _manual_reward(model: Any, text: str) -> float:
    ids = _char_tokenizer()(text, return_tensors="pt")
    with torch.no_grad():
        return float(model(**ids).logits[0, 0])


def test_loads_from_a_local_directory_and_matches_a_manual_forward(rm_dir: Path) -> None:
    signal = RewardModelSignal(rm_dir, batch_size=4)
    assert isinstance(signal, QualitySignal)
    raw = signal.raw_rewards(SAMPLES)
    reference = LlamaForSequenceClassification.from_pretrained(rm_dir).eval()
    # one unpadded forward per text, independent of the batching and padding of raw_rewards
    for s, r in zip(SAMPLES, raw, strict=True):
        assert r == pytest.approx(_manual_reward(reference, s.prompt + s.response), abs=1e-5)
    assert len(set(raw)) == len(raw)  # the random head does distinguish the answers


def test_minmax_normalisation_within_prompt_groups(rm_dir: Path) -> None:
    signal = get_signal("reward_model", model=rm_dir)
    raw = signal.raw_rewards(SAMPLES)  # type: ignore[attr-defined]
    scores = signal.score(SAMPLES)
    for group in ([0, 1, 2], [3, 4]):
        vals = [raw[i] for i in group]
        lo, hi = min(vals), max(vals)
        for i in group:
            assert scores[i] == pytest.approx((raw[i] - lo) / (hi - lo))
        assert max(scores[i] for i in group) == 1.0
        assert min(scores[i] for i in group) == 0.0
    assert scores[5] == 0.5  # group of one
    # permuting the batch permutes the scores: groups, not positions, matter
    perm = [4, 2, 5, 0, 3, 1]
    assert signal.score([SAMPLES[i] for i in perm]) == pytest.approx([scores[i] for i in perm])


def test_zscore_sigmoid(loaded: tuple[Any, Any]) -> None:
    signal = RewardModelSignal(*loaded, normalize="zscore_sigmoid")
    raw = signal.raw_rewards(SAMPLES)
    scores = signal.score(SAMPLES)
    g = [raw[0], raw[1], raw[2]]
    mean = sum(g) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in g) / 3)
    for i in range(3):
        assert scores[i] == pytest.approx(1 / (1 + math.exp(-(raw[i] - mean) / std)))
    assert scores[5] == 0.5
    assert all(0.0 < s < 1.0 for s in scores)


def test_constant_group_gets_half(loaded: tuple[Any, Any]) -> None:
    same = [Sample("p", "same answer", "student")] * 3
    assert RewardModelSignal(*loaded).score(same) == [0.5, 0.5, 0.5]
    assert RewardModelSignal(*loaded, normalize="zscore_sigmoid").score(same) == [0.5, 0.5, 0.5]


def test_normalize_in_groups_edge_cases() -> None:
    assert normalize_in_groups([], []) == []
    assert normalize_in_groups([1.0, 1.0 + 1e-9], ["a", "a"]) == [0.5, 0.5]  # within atol
    assert normalize_in_groups([1.0, 1.0 + 1e-9], ["a", "a"], atol=0.0) == [0.0, 1.0]
    assert normalize_in_groups([-1e9, 0.0, 1e9], [1, 1, 1]) == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="raw score 1 is nan"):
        normalize_in_groups([0.0, float("nan")], ["a", "a"])
    with pytest.raises(ValueError, match="same length"):
        normalize_in_groups([0.0], ["a", "b"])
    with pytest.raises(ValueError, match="method must be"):
        normalize_in_groups([0.0], ["a"], "rank")  # type: ignore[arg-type]


def test_custom_group_key_and_input_formats(loaded: tuple[Any, Any]) -> None:
    by_source = RewardModelSignal(*loaded, group_key=lambda s: s.source)
    scores = by_source.score(SAMPLES)
    teacher = [i for i, s in enumerate(SAMPLES) if s.source == "teacher"]
    assert [scores[i] for i in teacher] == [0.5]  # the only teacher sample is alone in its group
    for fmt in ("pair", "chat"):
        sig = RewardModelSignal(*loaded, input_format=fmt)  # type: ignore[arg-type]
        out = sig.score(SAMPLES)
        assert all(0.0 <= v <= 1.0 for v in out)
    chat_raw = RewardModelSignal(*loaded, input_format="chat").raw_rewards(SAMPLES[:1])
    assert chat_raw[0] == pytest.approx(_manual_reward(loaded[0], "<user>2+2=<assistant>4"), abs=1e-5)


def test_loaded_model_label_index_and_errors(loaded: tuple[Any, Any]) -> None:
    tok = _char_tokenizer()
    two = _tiny_rm(num_labels=2)
    with pytest.raises(ValueError, match="has 2 labels; pass label_index"):
        RewardModelSignal(two, tok)
    with pytest.raises(ValueError, match="label_index must be in"):
        RewardModelSignal(two, tok, label_index=2)
    sig = RewardModelSignal(two, tok, label_index=1)
    with torch.no_grad():
        expected = float(two(**tok("2+2=4", return_tensors="pt")).logits[0, 1])
    assert sig.raw_rewards(SAMPLES[:1])[0] == pytest.approx(expected, abs=1e-5)
    with pytest.raises(ValueError, match="tokenizer is required"):
        RewardModelSignal(two)
    with pytest.raises(ValueError, match="normalize must be"):
        RewardModelSignal(*loaded, normalize="rank")  # type: ignore[arg-type]


def test_nan_reward_names_the_sample() -> None:
    model = _tiny_rm()
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    sig = RewardModelSignal(model, _char_tokenizer())
    with pytest.raises(ValueError, match=r"returned nan for sample 0 \(prompt '2\+2='\)"):
        sig.score(SAMPLES)
