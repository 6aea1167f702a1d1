"""The embedded toy task: tokenizer, problems, tiny models, SFT (all fast, CPU)."""

import random

import pytest
import torch

from askd_ref.engine.data import Sample
from askd_ref.quality.math import ExactMatch
from askd_ref.toy import ALPHABET, Problem, ToyTask, build_tokenizer, sft_train, tiny_llama
from askd_ref.toy.models import problem_batches
from askd_ref.toy.stats import mcnemar, paired_t


def test_tokenizer_is_a_bijection_on_the_alphabet_and_round_trips_through_save(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer()
    rng = random.Random(0)
    strings = ["".join(rng.choice(ALPHABET) for _ in range(rng.randrange(0, 30))) for _ in range(200)]
    for s in strings:
        ids = tok(s, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(s)  # one token per character
        assert tok.decode(ids) == s
    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for s in strings[:50]:
        assert loaded(s)["input_ids"] == tok(s)["input_ids"]
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 0)


def test_tokenizer_rejects_duplicate_alphabet():
    with pytest.raises(ValueError, match="duplicate"):
        build_tokenizer("aa")


def test_problem_solution_is_correct_and_scored_by_exact_match():
    rng = random.Random(1)
    signal = ExactMatch()
    for _ in range(300):
        width = rng.choice([1, 2, 3])
        p = Problem(rng.randrange(10**width), rng.randrange(10**width), width=width)
        working, answer = p.solution.split(">")
        assert working == answer[::-1]
        assert int(answer) == p.a + p.b
        assert len(answer) == width + 1
        assert signal.score([p.to_sample()]) == [1.0]
        wrong = p.to_sample(f"{working}>{int(answer) + 1:0{width + 1}d}")
        assert signal.score([wrong]) == [0.0]


def test_problem_validation():
    with pytest.raises(ValueError, match="a must be"):
        Problem(100, 1, width=2)
    with pytest.raises(ValueError, match="width"):
        Problem(1, 1, width=0)


def test_split_is_deterministic_and_disjoint():
    task = ToyTask(width=2)
    pool, test = task.split(seed=3, n_eval=300)
    pool2, test2 = task.split(seed=3, n_eval=300)
    assert [p.prompt for p in test] == [p.prompt for p in test2]
    assert len({p.prompt for p in test}) == 300
    held = {p.prompt for p in test}
    draws = pool.draw(5000, seed=0)
    assert not held & {p.prompt for p in draws}
    assert [p.prompt for p in draws[:20]] == [p.prompt for p in pool2.draw(20, seed=0)]
    distinct = pool.distinct(500, seed=1)
    assert len({p.prompt for p in distinct}) == 500
    assert not held & {p.prompt for p in distinct}
    assert task.split(seed=4, n_eval=300)[1] != test


def test_tiny_llama_is_seeded_and_sft_learns_something():
    tok = build_tokenizer()
    a = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=5)
    b = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=5)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    pool, _ = ToyTask().split(seed=0, n_eval=10)
    losses = sft_train(a, tok, problem_batches(pool, 32, seed=0), steps=60, lr=1e-2, warmup=5, progress=False)
    assert len(losses) == 60
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, f"SFT loss did not fall: {first:.3f} -> {last:.3f} over 60 steps"


def test_sft_stop_rule_ends_training_early():
    tok = build_tokenizer()
    m = tiny_llama(tok, hidden_size=8, num_layers=1, num_heads=2)
    pool, _ = ToyTask().split(seed=0, n_eval=10)
    losses = sft_train(
        m,
        tok,
        problem_batches(pool, 4, seed=0),
        steps=50,
        lr=1e-3,
        progress=False,
        stop=lambda step: step >= 10,
        check_every=5,
    )
    assert len(losses) == 10


def test_paired_statistics_against_scipy():
    from scipy import stats

    a = [0.81, 0.79, 0.85, 0.80]
    b = [0.78, 0.77, 0.80, 0.81]
    r = paired_t(a, b)
    ref = stats.ttest_rel(a, b)
    assert r.p_value == pytest.approx(float(ref.pvalue), rel=1e-12)
    x = [1] * 30 + [0] * 10 + [1] * 5 + [0] * 55
    y = [1] * 30 + [1] * 2 + [0] * 8 + [0] * 5 + [0] * 55
    m = mcnemar(x, y)
    assert (m.only_a, m.only_b) == (5, 2)
    assert m.p_value == pytest.approx(float(stats.binomtest(2, 7, 0.5).pvalue), rel=1e-12)
    assert m.difference == pytest.approx(3 / 100)


def test_sample_roundtrip_of_problem():
    p = Problem(7, 85)
    s = p.to_sample("0>0", "student")
    assert isinstance(s, Sample)
    assert s.source == "student"
    assert s.reference == "92"


def test_carry_flaw_share_by_enumerating_every_problem():
    from askd_ref.toy.task import CarryFlaw

    flaw = CarryFlaw()
    for width in (1, 2):
        problems = [Problem(a, b, width=width) for a in range(10**width) for b in range(10**width)]
        wrong = [p for p in problems if p.flawed_solution(flaw) != p.solution]
        assert len(wrong) / len(problems) == flaw.affected_fraction() == 0.17
        # exactly the problems whose units digits sum to 10 or 11, and the error is one dropped carry
        assert all((p.a % 10 + p.b % 10) in (10, 11) for p in wrong)
        assert all(p.flawed_answer(flaw) == p.answer - 10 for p in wrong)
    assert Problem(47, 63).flawed_solution(None) == Problem(47, 63).solution
    with pytest.raises(ValueError, match="units_sums"):
        CarryFlaw((9,))


def _digit_credit_by_hand(problem, response):
    """Independent reference: pad both strings to a common length and count equal characters."""
    expected = problem.solution
    n = max(len(expected), len(response))
    a, b = expected.ljust(n, "\0"), response.ljust(n, "\1")
    return sum(a[i] == b[i] for i in range(n)) / n


def test_digit_credit_against_a_reference_written_differently():
    import random

    from askd_ref.engine.data import Sample
    from askd_ref.quality import get_signal
    from askd_ref.quality.math import ExactMatch
    from askd_ref.toy.quality import digit_credit
    from askd_ref.toy.task import CarryFlaw

    rng = random.Random(0)
    signal = get_signal("digit_credit")
    values = set()
    for _ in range(500):
        p = Problem(rng.randrange(100), rng.randrange(100))
        kind = rng.randrange(4)
        if kind == 0:
            response = p.solution
        elif kind == 1:
            response = p.flawed_solution(CarryFlaw((10, 11, 12, 13, 14, 15, 16, 17, 18)))
        elif kind == 2:
            response = "".join(rng.choice("0123456789>") for _ in range(rng.randrange(0, 10)))
        else:
            s = list(p.solution)
            s[rng.randrange(len(s))] = rng.choice("0123456789")
            response = "".join(s)
        r = digit_credit(p.prompt, response)
        assert r == pytest.approx(_digit_credit_by_hand(p, response), abs=1e-15)
        assert (r == 1.0) == (response == p.solution)
        values.add(round(r, 6))
        [via_signal] = signal.score([Sample(p.prompt, response, "teacher")])
        assert via_signal == r
        # exact match is never 1 where the whole solution earns less than the answer's share
        [em] = ExactMatch().score([Sample(p.prompt, response, "teacher", reference=p.reference)])
        if em == 1.0 and response.count(">") == 1 and len(response) == len(p.solution):
            assert r >= 4 / 7
    assert len(values) >= 8  # graded: r takes many values
    with pytest.raises(ValueError, match="not a toy problem"):
        digit_credit("what is 2+2?", "4")
