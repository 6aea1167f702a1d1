"""``askd bench quality`` on a shrunken configuration: outputs, docs section, resumable cache."""

import json

import pytest

from askd_ref.bench.quality import BEGIN, END, LR_SWEEP, SWEEP, run_bench
from askd_ref.toy.pipeline import ModelSize, ToySettings

TINY = ToySettings(
    n_eval=40,
    n_dev=20,
    teacher=ModelSize(16, 1, 2),
    teacher_max_steps=20,
    teacher_min_steps=10,
    teacher_check_every=10,
    student=ModelSize(8, 1, 2),
    student_sft_steps=10,
    n_prompts=16,
    distill_steps=3,
    distill_batch_size=4,
)



def test_bench_outputs_docs_and_resume(tmp_path):
    out, docs = tmp_path / "bench", tmp_path / "docs" / "experiments.md"
    docs.parent.mkdir()
    docs.write_text(
        "# Experiments\n\nHand-written intro.\n\n" + BEGIN + "\nold\n" + END + "\n\nReading kept.\n"
    )
    sweep = [v for v in SWEEP if v.name in ("askd gate=none", "askd batched SGOs", "distillm2 batched SGOs")]
    summary = run_bench(
        out,
        settings=TINY,
        seeds=(0, 1),
        methods=("askd", "kd", "distillm2"),
        sweep=sweep,
        progress=False,
        docs=docs,
        echo=lambda _: None,
        allow_miss=True,  # the tiny models miss the stages' targets
    )
    data = json.loads((out / "quality-bench.json").read_text())
    assert data["main"] == ["askd", "kd", "distillm2"]
    assert set(data["comparisons_askd_minus"]) == {"kd", "distillm2", *[v.name for v in sweep]}
    assert len(data["table"]["kd"]["per_seed"]) == 2
    assert "askd batched SGOs - distillm2 batched SGOs" in data["sweep_pairs"]
    assert (out / "quality-bench.png").stat().st_size > 10_000
    assert (docs.parent / "figures" / "experiments-quality.png").exists()
    text = docs.read_text()
    assert text.startswith("# Experiments\n\nHand-written intro.")
    assert text.rstrip().endswith("Reading kept.")
    assert "old" not in text
    assert "| **askd** |" in text
    assert summary["n_eval"] == 40
    runs = sorted((out / "runs").glob("seed*.json"))
    assert len(runs) == 2 * (1 + 3 + 3)  # start + methods + sweep, per seed
    stamps = {p.name: p.stat().st_mtime_ns for p in runs}
    run_bench(
        out,
        settings=TINY,
        seeds=(0, 1),
        methods=("askd", "kd", "distillm2"),
        sweep=sweep,
        progress=False,
        echo=lambda _: None,
        allow_miss=True,
    )
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("seed*.json")} == stamps  # all cached


def test_bench_quality_cli_is_registered_and_validates():
    from askd_ref.cli import build_parser, main

    args = build_parser().parse_args(["bench", "quality", "--out", "x", "--seeds", "3", "--sweep", "none"])
    assert args.seeds == 3
    assert args.sweep == "none"
    assert build_parser().parse_args(["bench", "quality", "--out", "x"]).seeds == 6
    with pytest.raises(SystemExit, match="unknown sweep"):
        main(["bench", "quality", "--out", "x", "--sweep", "lr,colours"])
    with pytest.raises(SystemExit, match="unknown method"):
        main(["bench", "quality", "--out", "x", "--methods", "askd,ppo"])
    with pytest.raises(SystemExit, match="--seeds"):
        main(["bench", "quality", "--out", "x", "--seeds", "0"])


def test_graded_regime_and_learning_rate_sweep_write_their_own_section(tmp_path):
    import dataclasses

    out, docs = tmp_path / "bench", tmp_path / "experiments.md"
    docs.write_text("# Experiments\n\n" + BEGIN + "\nexact-match section kept\n" + END + "\n")
    settings = dataclasses.replace(TINY, quality="digit_credit")
    summary = run_bench(
        out, settings=settings, seeds=(0,), methods=("askd",), sweep=LR_SWEEP[:1], progress=False,
        docs=docs, echo=lambda _: None, allow_miss=True,
    )
    run = json.loads((out / "runs" / f"seed0-{LR_SWEEP[0].key()}.json").read_text())
    assert run["lr"] == LR_SWEEP[0].lr == 5e-4
    text = docs.read_text()
    assert "exact-match section kept" in text  # the exact-match section is not touched
    assert "<!-- BEGIN MEASURED digit_credit" in text
    assert "**digit_credit**" in text
    assert (tmp_path / "figures" / "experiments-quality-digit-credit.png").exists()
    assert summary["environment"]["torch_cpu_capability"]
