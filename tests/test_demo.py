"""``askd demo``: files and keys on a shrunken configuration (fast); the real run is ``heavy``."""

import json
import os
import subprocess
import sys

import pytest
import torch

from askd_ref.data import read_samples
from askd_ref.toy.demo import check_device, run_demo
from askd_ref.toy.pipeline import ModelSize, ToySettings

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

    res = run_demo(tmp_path / "demo", settings=TINY, progress=False)
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
    assert 0.7 <= data["teacher_accuracy"] <= 0.9
    for method, acc in data["methods"].items():
        p = data["paired_vs_sft"][method]
        assert acc > data["student_accuracy_before"], method
        assert p["ci95"][0] > 0, f"{method}: gain not significant on n = {data['n_eval']}"
