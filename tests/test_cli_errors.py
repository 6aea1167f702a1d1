"""Every ``askd`` command shares one error path: one line naming the problem and the fix.

Exit code 2 for usage errors (a wrong argument or run-file entry), 1 for run-time ones, the
traceback only with ``--debug``; missing local model directories are reported at once without a
hub lookup; a run file is checked before torch or transformers is imported.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from askd_ref.cli import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps({"prompt": "1+1=", "reference": "2"}) + "\n")
    return str(path)


def _one_line(capsys, start):
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(start), err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_missing_prompt_file_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    code = main(["eval", "--model", str(tmp_path / "model"), "--prompts", str(tmp_path / "nope.jsonl")])
    assert code == 2
    err = _one_line(capsys, "askd eval: error: --prompts")
    assert "nope.jsonl" in err


def test_unknown_device_is_a_usage_error(tmp_path, prompts, capsys):
    (tmp_path / "model").mkdir()
    argv = ["generate", "--model", str(tmp_path / "model"), "--prompts", prompts, "--out", "x", "--source"]
    assert main([*argv, "teacher", "--device", "gpu"]) == 2
    err = _one_line(capsys, "askd generate: error: --device")
    assert "'gpu'" in err
    assert "cpu, cuda" in err


def test_misspelled_local_model_is_named_with_a_suggestion(tmp_path, prompts, capsys, monkeypatch):
    (tmp_path / "student").mkdir()
    monkeypatch.chdir(tmp_path)
    # a hub lookup here would fail the test: the path must be rejected before from_pretrained
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["eval", "--model", "./studnet", "--prompts", prompts]) == 2
    err = _one_line(capsys, "askd eval: error: --model")
    assert "'./studnet' does not exist" in err
    assert "did you mean './student'?" in err
    assert main(["eval", "--model", "studnet", "--prompts", prompts]) == 2  # bare name, not in the hub cache
    assert "did you mean 'student'?" in _one_line(capsys, "askd eval: error: --model")


def test_debug_prints_the_traceback(tmp_path, prompts, capsys):
    (tmp_path / "model").mkdir()
    argv = ["eval", "--model", str(tmp_path / "model"), "--prompts", prompts, "--device", "gpu", "--debug"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("askd eval: error: --device")


def test_unexpected_errors_exit_1_and_point_to_debug(monkeypatch, capsys):
    import askd_ref.cli.commands.vectors as vectors

    def boom(args):
        raise KeyError("oops")

    monkeypatch.setattr(vectors, "run", boom)
    assert main(["vectors", "--out", "x.json"]) == 1
    err = _one_line(capsys, "askd vectors: error: KeyError")
    assert "rerun with --debug" in err


def test_missing_optional_extra_names_the_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "trl", None)  # as if TRL were not installed
    assert main(["bench", "loss", "--out", str(tmp_path), "--quick"]) == 1
    err = _one_line(capsys, "askd bench loss: error:")
    assert "pip install 'askd-ref[bench]'" in err


def test_bad_jsonl_line_names_the_cli_option(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "1+1=", "reference": "2"}\n{"prompt": \n')
    assert main(["eval", "--model", str(tmp_path / "model"), "--prompts", str(bad)]) == 1
    err = _one_line(capsys, "askd eval: error:")
    assert "line 2" in err
    assert "--skip-bad-lines" in err
    assert "skip_bad_lines=True" not in err


def _run_file(tmp_path, **overrides):
    for name in ("teacher", "student"):
        (tmp_path / "models" / name).mkdir(parents=True, exist_ok=True)
    (tmp_path / "train.jsonl").write_text("")
    cfg = {
        "teacher": "models/teacher",
        "student": "models/student",
        "data": {"train": "train.jsonl"},
        "training": {"output_dir": "out"},
        **overrides,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_run_file_model_paths_resolve_against_the_file(tmp_path, monkeypatch):
    from askd_ref.engine.run import load_run_config

    path = _run_file(tmp_path, tokenizer="./models/student")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_run_config(path)
    assert cfg.teacher == str(tmp_path / "models" / "teacher")
    assert cfg.student == str(tmp_path / "models" / "student")
    assert cfg.tokenizer == str(tmp_path / "models" / "student")
    assert cfg.training["output_dir"] == str(tmp_path / "out")
    hub = _run_file(tmp_path, teacher="Qwen/Qwen2.5-0.5B")
    assert load_run_config(hub).teacher == "Qwen/Qwen2.5-0.5B"  # a hub id stays a hub id


def test_run_file_is_checked_before_heavy_imports(tmp_path):
    """A typo in the run file, and a misspelled model directory, are reported without torch."""
    typo = _run_file(tmp_path / "a", sgoo={"regime": "on_policy"})
    missing = _run_file(tmp_path / "b", student="models/studnet")
    script = textwrap.dedent(
        f"""
        import sys
        from askd_ref.cli import main
        codes = [main(["distill", "--config", path]) for path in ({str(typo)!r}, {str(missing)!r})]
        heavy = sorted(m for m in ("torch", "transformers", "accelerate") if m in sys.modules)
        print(codes, heavy)
        """
    )
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-c", script]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip() == "[2, 2] []", proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert "unknown key 'sgoo' at the top level; did you mean 'sgo'?" in lines[0]
    assert "student directory" in lines[1]
    assert "models/studnet' does not exist; did you mean" in lines[1]
    assert lines[1].endswith("models/student'?")


def test_run_file_loss_kernel_reaches_the_config(tmp_path):
    from askd_ref.cli.commands._errors import UsageError
    from askd_ref.engine.run import load_run_config

    cfg = load_run_config(_run_file(tmp_path, loss={"path": "chunked", "kernel": "compiled"}))
    assert cfg.askd.loss_kernel == "compiled"
    assert load_run_config(_run_file(tmp_path)).askd.loss_kernel == "fused"
    with pytest.raises((UsageError, ValueError), match="loss_kernel must be"):
        load_run_config(_run_file(tmp_path, loss={"kernel": "triton"}))
