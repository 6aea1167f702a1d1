"""The documented short names keep working after the package was split into layers.

``askd_ref.trainer`` and ``askd_ref.data`` (imported by TRL users and the README) and the
``python -m`` entry points ``askd_ref.conformance``, ``askd_ref.porting_tables``,
``askd_ref.quality.sandbox_probe`` and ``askd_ref.cli`` are thin aliases of the modules under
``askd_ref/engine``, ``askd_ref/porting`` and ``askd_ref/cli``: the same objects, the same commands.
"""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Alias → the modules that define what it re-exports.
ALIASES = {
    "askd_ref.trainer": (
        "askd_ref.engine.trainer", "askd_ref.engine.config", "askd_ref.engine.items", "askd_ref.methods"
    ),
    "askd_ref.data": ("askd_ref.engine.data",),
    "askd_ref.conformance": ("askd_ref.porting.conformance",),
    "askd_ref.porting_tables": ("askd_ref.porting.tables",),
    "askd_ref.quality.sandbox_probe": ("askd_ref.cli.sandbox_probe",),
}

#: What ``askd_ref.trainer`` exported before the trainer moved to ``askd_ref/engine``.
TRAINER_NAMES = {
    "METHOD_NEEDS", "ASKDConfig", "ASKDTrainer", "MethodNeeds", "PromptDataset", "PromptItem",
    "Response", "prompt_items_from_records", "prompt_items_from_samples",
}


@pytest.mark.parametrize(("alias", "targets"), sorted(ALIASES.items()))
def test_alias_reexports_the_same_objects(alias: str, targets: tuple[str, ...]) -> None:
    short = importlib.import_module(alias)
    reals = [importlib.import_module(t) for t in targets]
    assert short.__all__, alias
    for name in short.__all__:
        obj = getattr(short, name)
        assert any(getattr(real, name, None) is obj for real in reals), f"{alias}.{name}"
    missing = sorted(set(getattr(reals[0], "__all__", ())) - set(short.__all__))
    assert not missing, f"{alias} does not re-export {missing}"


def test_trainer_alias_keeps_its_names() -> None:
    import askd_ref.trainer

    assert set(askd_ref.trainer.__all__) == TRAINER_NAMES


@pytest.mark.parametrize(
    ("module", "args", "expect"),
    [
        ("askd_ref.conformance", ["--help"], "--impl"),
        ("askd_ref.porting_tables", ["--check"], ""),
        ("askd_ref.quality.sandbox_probe", ["--help"], "--out"),
        ("askd_ref.cli", ["--help"], "distill"),
    ],
)
def test_documented_entry_point_runs(module: str, args: list[str], expect: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expect in proc.stdout
