"""FSDP through accelerate on CPU processes: accelerate does not shard there, so a run that asks for
FSDP stops with an error instead of silently training unsharded (2 gloo processes, and 1).

Each rank writes its outcome to its own file: the two processes share one stdout pipe, and their
prints can interleave within a line ("REFUSED:REFUSED: ...")."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from tests.test_accelerate import _free_port

WORKER = textwrap.dedent(
    """
    import os
    import pathlib
    import sys
    from transformers import TrainingArguments
    from askd_ref.toy import build_tokenizer, tiny_llama
    from askd_ref.engine.config import ASKDConfig
    from askd_ref.engine.items import PromptItem, Response
    from askd_ref.engine.trainer import ASKDTrainer

    tok = build_tokenizer()
    args = TrainingArguments(output_dir=sys.argv[1], use_cpu=True, report_to=[], max_steps=1,
                             ddp_backend="gloo")
    items = [PromptItem(index=i, prompt=f"{i}+1=", tgos=(Response(str(i + 1)),)) for i in range(4)]
    try:
        ASKDTrainer(model=tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2),
                    teacher=tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1), args=args,
                    config=ASKDConfig(method="kd", sgo_regime="none", quality=None), train_dataset=items,
                    processing_class=tok)
    except ValueError as err:
        outcome = f"REFUSED: {err}"
    else:
        outcome = "NOT REFUSED"
    pathlib.Path(sys.argv[2], f"rank{os.environ['RANK']}.txt").write_text(outcome)
    """
)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate"))
    and shutil.which("accelerate") is None,
    reason="accelerate CLI not installed",
)
def test_fsdp_launch_on_cpu_processes_is_refused(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        accelerate = shutil.which("accelerate") or "accelerate"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [
        accelerate,
        "launch",
        "--use_fsdp",
        "--fsdp_version",
        "2",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(worker),
        str(tmp_path / "out"),
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    outcomes = {p.name: p.read_text() for p in tmp_path.glob("rank*.txt")}
    assert sorted(outcomes) == ["rank0.txt", "rank1.txt"], (outcomes, proc.stdout[-3000:])  # both ranks
    for name, text in outcomes.items():
        assert text.startswith("REFUSED: FSDP was requested"), (name, text)
        assert "MULTI_CPU" in text, (name, text)


def test_fsdp_requested_but_inactive_is_refused_in_process(tmp_path, monkeypatch):
    from transformers import TrainingArguments

    from askd_ref.engine.config import ASKDConfig
    from askd_ref.engine.items import PromptItem, Response
    from askd_ref.engine.trainer import ASKDTrainer
    from askd_ref.toy import build_tokenizer, tiny_llama

    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    tok = build_tokenizer()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[], max_steps=1)
    items = [PromptItem(index=i, prompt=f"{i}+1=", tgos=(Response(str(i + 1)),)) for i in range(2)]
    with pytest.raises(ValueError, match="FSDP was requested"):
        ASKDTrainer(
            model=tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=2),
            teacher=tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=1),
            args=args,
            config=ASKDConfig(method="kd", sgo_regime="none", quality=None),
            train_dataset=items,
            processing_class=tok,
        )
