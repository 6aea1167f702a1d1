"""``askd demo``: files and keys on a shrunken configuration (fast); the real run is ``heavy``."""

import json
import os
import subprocess
import sys

import pytest
import torch

from askd_ref.engine.data import read_samples
from askd_ref.toy.demo import check_device, run_demo
from askd_ref.toy.pipeline import ModelSize, StageMissed, ToySettings

TINY = ToySettings(
    n_eval=60,
    n_dev=20,
    teacher=ModelSize(16, 1, 2),
    teacher_max_steps=30,
    teacher_min_steps=10,
    teacher_check_every=10,
    student=ModelSize(8, 1, 2),
    student_sft_steps=20,
    n_prompts=16,
    distill_steps=4,
    distill_batch_size=4,
)



def test_demo_writes_results_plot_data_and_models(tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # The tiny models cannot reach the stages' targets: allow_miss continues and marks the run.
    res = run_demo(tmp_path / "demo", settings=TINY, progress=False, allow_miss=True)
    out = tmp_path / "demo"
    data = json.loads((out / "results.json").read_text())
    assert data == json.loads(json.dumps(res))
    assert set(data["methods"]) == {"askd", "distillm2"}
    for key in ("teacher_accuracy", "student_accuracy_before"):
        assert 0.0 <= data[key] <= 1.0
    assert data["n_eval"] == 60
    assert (out / "results.png").stat().st_size > 10_000
    assert len(read_samples(out / "data" / "tgo.jsonl")) == 16
    for name in ("teacher", "student-sft", "student-askd", "student-distillm2"):
        model = AutoModelForCausalLM.from_pretrained(out / name)
        tok = AutoTokenizer.from_pretrained(out / name)
        assert model.config.vocab_size == len(tok)
    assert not [p for p in os.listdir(out) if p.startswith(".")]  # no temporary leftovers
    printed = capsys.readouterr().out
    assert "student after askd" in printed
    assert "teacher" in printed
    # The misses are recorded and shouted, and the environment is recorded.
    assert data["valid"] is False
    reached = {k: v["reached"] for k, v in data["stages"].items()}
    assert reached == {"teacher SFT": False, "student SFT": False}
    assert "INVALID RUN" in printed
    assert "MISSED" in printed
    env = data["environment"]
    keys = ("cpu_model", "torch_cpu_capability", "torch_threads", "python", "torch", "transformers")
    keys += ("askd_ref",)
    for key in keys:
        assert env[key] not in (None, ""), key
    assert env["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert data["expected"]["teacher_accuracy"] == list(TINY.teacher_band)
    assert set(data["checks"]) == {"teacher_in_band", "student_in_range", "askd_gain_at_least_0.10"}


def test_a_missed_stage_stops_the_run_with_one_message_and_records_it(tmp_path):
    with pytest.raises(StageMissed) as info:
        run_demo(tmp_path / "demo", settings=TINY, progress=False, save_models=False, echo=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith("teacher SFT: target not reached")
    assert "dev fit to its training data" in msg
    assert "target 0.970" in msg
    assert "of 30 steps" in msg
    assert "Try:" in msg
    assert "--allow-miss" in msg
    data = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert data["valid"] is False
    assert data["error"] == msg
    assert data["stages"]["teacher SFT"]["reached"] is False
    assert "methods" not in data


def test_cli_exits_1_on_a_missed_stage(tmp_path, monkeypatch, capsys):
    import dataclasses

    import askd_ref.toy.pipeline as pipeline
    from askd_ref.cli import main

    monkeypatch.setitem(pipeline.PRESETS, "demo", dataclasses.replace(TINY))
    code = main(["demo", "--out", str(tmp_path / "d"), "--no-progress", "--no-models"])
    out = capsys.readouterr().out
    assert code == 1
    assert "askd demo: teacher SFT: target not reached" in out


def test_device_checks():
    with pytest.raises(ValueError, match="fp32 on CPU"):
        check_device("cpu", "bf16")
    with pytest.raises(ValueError, match="device must be"):
        check_device("tpu", "fp32")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            check_device("cuda", "bf16")


def test_demo_cli_help():
    from askd_ref.cli import build_parser

    args = build_parser().parse_args(["demo", "--out", "x", "--device", "cpu", "--threads", "1"])
    assert args.out == "x"
    assert args.func is not None


@pytest.mark.heavy
def test_full_demo_improves_the_student(tmp_path):
    """The real ``askd demo`` (about 2 minutes on 2 cores): the student improves over its SFT start."""
    proc = subprocess.run(
        [sys.executable, "-m", "askd_ref.cli", "demo", "--out", str(tmp_path / "demo"), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "demo" / "results.json").read_text())
    assert data["valid"], data["stages"]
    assert all(data["checks"].values()), data["checks"]
    for method, acc in data["methods"].items():
        p = data["paired_vs_sft"][method]
        assert acc > data["student_accuracy_before"], method
        assert p["ci95"][0] > 0, f"{method}: gain not significant on n = {data['n_eval']}"
