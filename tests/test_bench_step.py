"""The step benchmark: its instrumentation changes nothing, accounts for the whole step, and its CLI."""

import copy
import json
from pathlib import Path

import pytest
import torch

import askd_ref.chunked
import askd_ref.engine.trainer
from askd_ref.bench import step as bench
from askd_ref.cli import main
from askd_ref.toy import build_tokenizer

SMALL = bench.StepSettings(prompts=2, sgo_per_prompt=2, max_new_tokens=6, steps=2, warmup=0)


@pytest.fixture(scope="module")
def toy() -> tuple[object, torch.nn.Module, torch.nn.Module]:
    return bench.build_models("toy", layers=1)


def _train(toy, tmp_path: Path, timed: bool) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    tok, teacher, student = toy
    student = copy.deepcopy(student)
    trainer = bench.make_trainer(tok, teacher, student, SMALL, tmp_path / f"t{timed}", "cpu", steps=2)
    if not timed:
        trainer.train()
        return student, []
    with bench.StepTimer(torch.device("cpu")).attach(trainer, trainer.teacher, trainer.model) as timer:
        trainer.train()
    return student, timer.steps


def test_timer_leaves_training_bit_identical_and_accounts_for_the_step(toy, tmp_path: Path) -> None:
    original_chunked, original_compute = askd_ref.chunked.chunked_loss, askd_ref.engine.trainer.compute_loss
    plain, _ = _train(toy, tmp_path, timed=False)
    timed, steps = _train(toy, tmp_path, timed=True)
    for (name, a), b in zip(plain.named_parameters(), timed.parameters(), strict=True):
        assert torch.equal(a, b), f"parameter {name} differs with the timer attached"
    assert not any(torch.equal(a, b) for a, b in zip(plain.parameters(), toy[2].parameters(), strict=True))
    # every wrapper and hook is gone again
    assert askd_ref.chunked.chunked_loss is original_chunked
    assert askd_ref.engine.trainer.compute_loss is original_compute
    assert not timed._forward_hooks
    assert not timed._forward_pre_hooks
    assert len(steps) == 2
    for row in steps:
        for phase in ("generation", "teacher_forward", "student_forward", "loss", "backward", "optimizer"):
            assert row[phase] > 0, phase
        assert sum(row[p] for p in bench.PHASES) == pytest.approx(row["total"], rel=1e-9)
        assert row["other"] >= -1e-6


def test_student_forwards_of_generation_are_not_counted_as_student_forward(toy, tmp_path: Path) -> None:
    """With generation many times longer, student_forward stays one trunk pass per step."""
    tok, teacher, student = toy
    trainer = bench.make_trainer(
        tok, teacher, copy.deepcopy(student), SMALL, tmp_path / "calls", "cpu", steps=1
    )
    calls = {"student": 0}
    trainer.model.register_forward_pre_hook(lambda m, a: calls.__setitem__("student", calls["student"] + 1))
    with bench.StepTimer(torch.device("cpu")).attach(trainer, trainer.teacher, trainer.model) as timer:
        trainer.train()
    assert calls["student"] > 2  # generation ran the student once per new token
    (row,) = timer.steps
    assert row["student_forward"] < row["generation"]


def test_wide_tokenizer_has_the_size_and_encodes_prompts_like_the_toy_one() -> None:
    wide, toy_tok = bench.wide_tokenizer(1000), build_tokenizer()
    assert len(wide) == 1000
    assert wide("12+34=")["input_ids"] == toy_tok("12+34=")["input_ids"]
    assert wide.decode([999]) == "<v999>"
    with pytest.raises(ValueError, match="vocab_size"):
        bench.wide_tokenizer(10)


def test_cli_toy_writes_phases_and_generation(tmp_path: Path) -> None:
    out = tmp_path / "step"
    argv = ["bench", "step", "--out", str(out), "--models", "toy", "--layers", "1", "--steps", "1"]
    assert main([*argv, "--warmup", "0", "--prompts", "2", "--max-new-tokens", "4"]) == 0
    r = json.loads((out / "step-bench.json").read_text())
    toy = r["models"]["toy"]
    assert set(toy["median_s"]) == {*bench.PHASES, "total"}
    assert toy["generation"]["askd_generate"] > 0
    assert toy["generation"]["hf_generate"] > 0
    assert r["load_average_start"]
    assert "| toy |" in (out / "step-bench.md").read_text()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [("--models", "llama", "--models"), ("--steps", "0", "--steps"), ("--layers", "0", "--layers")],
)
def test_cli_rejects_bad_arguments(tmp_path: Path, flag: str, value: str, message: str, capsys) -> None:
    assert main(["bench", "step", "--out", str(tmp_path), flag, value]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_qwen_shape_model_is_qwen25_05b_and_steps(tmp_path: Path) -> None:
    tok, teacher, student = bench.build_models("qwen0.5b", layers=1)
    cfg = student.config
    assert (cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads) == (896, 14, 2)
    assert (cfg.intermediate_size, cfg.vocab_size, cfg.tie_word_embeddings) == (4864, 151936, True)
    assert len(tok) == 151936
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()
    s = bench.StepSettings(prompts=1, sgo_per_prompt=1, max_new_tokens=2, steps=1, warmup=0)
    steps = bench.time_steps(tok, teacher, student, s, tmp_path, "cpu")
    assert steps[0]["loss"] > 0
