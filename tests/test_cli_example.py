"""The CPU quick start works as printed: ``askd example`` then the commands it prints, and the
README's Python ``ASKDTrainer`` example, run on the folder it writes (shortened budgets)."""

import re
import shlex
from pathlib import Path

import pytest
import yaml

from askd_ref.cli import main
from askd_ref.cli.commands.example import next_steps, write_example

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    root = tmp_path_factory.mktemp("quickstart") / "demo-run"
    # capped far below their targets: the stages' guards are tested in test_demo.py; here only the path
    write_example(
        root, teacher_steps=5, student_steps=5, train_prompts=8, test_prompts=4,
        progress=False, allow_miss=True,
    )
    return root


def test_example_writes_models_data_and_a_valid_run_file(example):
    from askd_ref.engine.run import load_run_config

    for name in ("teacher", "student"):
        assert (example / name / "config.json").is_file()
        assert (example / name / "tokenizer.json").is_file()
    assert len((example / "train-prompts.jsonl").read_text().splitlines()) == 8
    assert len((example / "test-prompts.jsonl").read_text().splitlines()) == 4
    cfg = load_run_config(example / "run.yaml")
    assert cfg.teacher == str(example / "teacher")
    assert cfg.device == "cpu"


def test_example_refuses_a_non_empty_folder(example, capsys):
    assert main(["example", str(example)]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err


def test_printed_commands_and_the_readme_python_example_run(example, capsys, monkeypatch):
    lines = [ln.strip() for ln in next_steps(example).splitlines()[1:]]
    assert [ln.split()[1] for ln in lines] == ["generate", "distill", "eval", "eval", "eval"]
    run = yaml.safe_load((example / "run.yaml").read_text())
    run["training"]["max_steps"] = 2  # the printed run trains 200 steps; the test needs only the path
    (example / "run.yaml").write_text(yaml.safe_dump(run))
    for line in lines[:3]:
        argv = shlex.split(line)
        assert argv[0] == "askd"
        assert main([*argv[1:], "--no-progress"]) == 0, line
    out = capsys.readouterr().out
    assert "wrote 8 teacher samples for 8 prompts" in out
    assert "askd: 2 steps, train loss" in out
    assert "exact_match" in out
    assert (example / "out" / "final" / "config.json").is_file()

    text = README.read_text(encoding="utf-8")
    block = re.search(r"README-PYTHON-EXAMPLE.*?```python\n(.*?)```", text, flags=re.S)
    assert block is not None
    code = block.group(1)
    assert code.count("max_steps=200") == 1
    code = code.replace("max_steps=200", "max_steps=2")
    monkeypatch.chdir(example.parent)  # the example's paths are relative: demo-run/...
    exec(compile(code, "README.md", "exec"), {})
    assert (example / "python" / "final" / "config.json").is_file()
    assert len(code.strip().splitlines()) <= 20
