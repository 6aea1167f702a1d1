"""Sampling: behaviour log-probs consistent with the trainer's log-probs, per-sample seeding, EOS."""

import math

import pytest
import torch

from askd_ref.engine.data import Prompt, read_samples
from askd_ref.engine.forward import sequence_logprobs
from askd_ref.engine.generation import generate, generate_samples
from askd_ref.engine.tokens import encode_prompt, pad_batch
from askd_ref.toy import ToyTask, build_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    m = tiny_llama(tok, hidden_size=32, num_layers=2, num_heads=4, seed=3)
    with torch.no_grad():  # make EOS reasonably likely so some rows stop early
        m.lm_head.weight[tok.eos_token_id] *= 0  # tied: also the EOS embedding
        m.lm_head.weight[tok.eos_token_id] += 0.5 * m.lm_head.weight[tok.convert_tokens_to_ids(">")]
    return m


@pytest.fixture(scope="module")
def prompts():
    _, problems = ToyTask().split(seed=0, n_eval=40)
    return [p.prompt for p in problems]


def _recompute(model, tok, prompts, gens, temperature=1.0):
    """Σ_t log softmax(logits / T)[y_t] by a full (non-cached) forward, as the trainer computes it."""
    batch = pad_batch(
        [encode_prompt(tok, prompts[g.prompt_index]) for g in gens],
        [list(g.token_ids) for g in gens],
        pad_id=0,
    )
    if temperature == 1.0:
        lp, _ = sequence_logprobs(model, batch, len(tok))
    else:
        with torch.no_grad():
            logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[
                :, :-1, : len(tok)
            ]
        full = torch.log_softmax(logits.float() / temperature, -1)
        lp = full.gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return (lp * batch.shifted_mask).sum(-1).double()


def test_behaviour_logprob_equals_the_students_own_logprob_at_temperature_one(model, tok, prompts):
    gens = generate(model, tok, prompts, n=3, temperature=1.0, max_new_tokens=10, seed=0, batch_size=16)
    assert len(gens) == 3 * len(prompts)
    beh = torch.tensor([g.behaviour_logprob for g in gens], dtype=torch.float64)
    ref = _recompute(model, tok, prompts, gens)
    # a cached incremental forward vs one full forward: float32 rounding only
    assert torch.allclose(beh, ref, atol=1e-4, rtol=0), f"max |Δ| {float((beh - ref).abs().max()):.2e}"
    assert any(g.finished for g in gens)
    assert any(not g.finished for g in gens)


def test_behaviour_logprob_at_other_temperature_is_the_tempered_distribution(model, tok, prompts):
    gens = generate(model, tok, prompts[:10], n=2, temperature=0.7, max_new_tokens=8, seed=1)
    beh = torch.tensor([g.behaviour_logprob for g in gens], dtype=torch.float64)
    ref = _recompute(model, tok, prompts[:10], gens, temperature=0.7)
    assert torch.allclose(beh, ref, atol=1e-4, rtol=0)


def test_top_p_renormalises_over_the_nucleus(tok):
    from askd_ref.engine.generation import _choose

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    u = torch.tensor([0.99], dtype=torch.float64)
    token, logp = _choose(logits, u, temperature=1.0, top_p=0.7)
    assert int(token) == 1  # the nucleus is {0, 1}; u = 0.99 lands on its last token
    assert float(logp) == pytest.approx(math.log(0.3 / 0.8), abs=1e-6)


def test_samples_do_not_depend_on_batching_or_order(model, tok, prompts):
    a = generate(model, tok, prompts, n=2, max_new_tokens=8, seed=5, batch_size=64)
    rev = list(reversed(prompts))
    ids = list(reversed(range(len(prompts))))
    b = generate(model, tok, rev, n=2, max_new_tokens=8, seed=5, batch_size=7, prompt_ids=ids)
    by_key = {(g.prompt_index, g.sample_index): g.token_ids for g in a}
    assert all(by_key[(len(prompts) - 1 - g.prompt_index, g.sample_index)] == g.token_ids for g in b)
    c = generate(model, tok, prompts, n=2, max_new_tokens=8, seed=6)
    assert [g.token_ids for g in c] != [g.token_ids for g in a]


def test_eos_stops_a_row_and_nothing_follows_it(model, tok, prompts):
    gens = generate(model, tok, prompts, n=4, max_new_tokens=12, seed=2)
    eos = tok.eos_token_id
    for g in gens:
        if g.finished:
            assert g.token_ids[-1] == eos
            assert eos not in g.token_ids[:-1]
            assert tok.eos_token not in g.text
        else:
            assert eos not in g.token_ids
            assert len(g.token_ids) == 12


def test_greedy_has_no_behaviour_logprob_and_is_deterministic(model, tok, prompts):
    g1 = generate(model, tok, prompts[:5], temperature=0.0, max_new_tokens=6, seed=0)
    g2 = generate(model, tok, prompts[:5], temperature=0.0, max_new_tokens=6, seed=99)
    assert all(g.behaviour_logprob is None for g in g1)
    assert [g.token_ids for g in g1] == [g.token_ids for g in g2]


def test_padded_head_is_never_sampled(tok, prompts):
    m = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2)
    m.resize_token_embeddings(len(tok) + 8)
    with torch.no_grad():
        m.lm_head.weight[len(tok) :] = 50.0  # padded rows would dominate if they were not sliced
    gens = generate(m, tok, prompts[:8], n=2, max_new_tokens=5, seed=0)
    assert all(t < len(tok) for g in gens for t in g.token_ids)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"temperature": -1.0}, "temperature"),
        ({"top_p": 0.0}, "top_p"),
        ({"n": 0}, "n must"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_bad_sampling_arguments_raise(model, tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(model, tok, ["1+1="], **kwargs)


def test_generate_samples_records_and_cli(model, tok, tmp_path):
    from askd_ref.cli import main
    from askd_ref.engine.data import write_samples
    from askd_ref.toy import Problem

    recs = generate_samples(
        model, tok, [Prompt("12+34=", reference="46")], source="student", n=2, max_new_tokens=6
    )
    assert len(recs) == 2
    assert all(r.source == "student" and r.reference == "46" for r in recs)
    assert all(isinstance(r.extra["response_ids"], list) and r.behaviour_logprob is not None for r in recs)
    model_dir = tmp_path / "m"
    model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    prompts_file = tmp_path / "prompts.jsonl"
    write_samples(
        prompts_file, [Problem(a, 3).to_sample() for a in (1, 22, 47)]
    )  # a sample file is a prompt file
    out = tmp_path / "sgo.jsonl"
    code = main(
        [
            "generate",
            "--model",
            str(model_dir),
            "--prompts",
            str(prompts_file),
            "--out",
            str(out),
            "--source",
            "student",
            "--n",
            "2",
            "--max-new-tokens",
            "6",
            "--quality",
            "exact_match",
            "--no-progress",
        ]
    )
    assert code == 0
    written = read_samples(out)
    assert len(written) == 6
    assert all(s.quality in (0.0, 1.0) and s.behaviour_logprob is not None for s in written)
    assert written[0].extra["response_ids"]
    assert isinstance(written[0].extra["finished"], bool)
