"""``scripts/gpu-check.sh``: its plan parses and its targets exist (fast), and its CPU dry run (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from askd_ref.bench.plan import validate

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu-check.sh"


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_plan_of_the_gpu_run_is_valid(tmp_path: Path) -> None:
    proc = _run("--plan", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [s["name"] for s in plan] == ["env", "tests", "loss", "step"]
    assert sum(s["limit_s"] for s in plan) <= 8 * 60  # the whole run fits in 8 minutes
    loss = plan[2]["argv"]
    assert loss[loss.index("--device") + 1] == "cuda"
    assert "--no-liger" not in loss
    step = plan[3]["argv"]
    assert "--bf16" in step
    assert "0 problems" in proc.stdout


def test_plan_validation_catches_bad_arguments_and_missing_tests() -> None:
    problems = validate(
        [
            {
                "name": "loss",
                "argv": ["python", "-m", "askd_ref.cli", "bench", "loss", "--out", "x", "--bogus"],
            },
            {"name": "step", "argv": ["python", "-m", "askd_ref.cli", "bench", "step", "--out", "x"]},
            {
                "name": "t",
                "argv": ["python", "-m", "pytest", "tests/test_bench_gpu.py::nope", "tests/none.py"],
            },
        ],
        ROOT,
    )
    assert len(problems) == 3
    assert "unrecognized arguments: --bogus" in problems[0]
    assert "no test function 'nope'" in problems[1]
    assert "tests/none.py does not exist" in problems[2]


def test_usage_error_without_directory() -> None:
    proc = _run(timeout=30)
    assert proc.returncode == 2
    assert "usage" in proc.stderr


@pytest.mark.slow
def test_dry_run_writes_every_output_on_cpu(tmp_path: Path) -> None:
    proc = _run("--dry-run", str(tmp_path), timeout=900)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert proc.returncode == 0, (tmp_path / "gpu-check.log").read_text()[-3000:]
    assert summary["dry_run"] is True
    assert [s["name"] for s in summary["steps"]] == ["env", "tests", "loss", "step"]
    assert all(s["exit_code"] == 0 for s in summary["steps"])
    for f in ("env.json", "tests.xml", "loss/loss-bench.json", "step/step-bench.json", "gpu-check.log"):
        assert (tmp_path / f).is_file(), f
