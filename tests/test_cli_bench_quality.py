"""``askd bench quality`` on a shrunken configuration: outputs, docs section, resumable cache."""

import json

import pytest

from askd_ref.toy.bench import BEGIN, END, SWEEP, run_bench
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
    )
    assert {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("seed*.json")} == stamps  # all cached


def test_bench_quality_cli_is_registered_and_validates():
    from askd_ref.cli import build_parser, main

    args = build_parser().parse_args(["bench", "quality", "--out", "x", "--seeds", "3", "--no-sweep"])
    assert args.seeds == 3
    assert args.no_sweep
    with pytest.raises(SystemExit, match="unknown method"):
        main(["bench", "quality", "--out", "x", "--methods", "askd,ppo"])
    with pytest.raises(SystemExit, match="--seeds"):
        main(["bench", "quality", "--out", "x", "--seeds", "0"])
