"""``askd distill`` never loses work.

An output_dir holding an earlier run is refused unless ``--resume`` or ``--overwrite``; the first
Ctrl-C finishes the step, saves a checkpoint and exits 130 with the exact resume command (a
second one aborts); ``--resume`` names the checkpoint it continues from and loads it without the
tied-head "missing keys" warning; ``save_total_limit`` keeps exactly that many checkpoints.
"""

import os
import signal

import pytest
import yaml

from askd_ref.cli import main
from askd_ref.cli.commands._errors import RunInterrupted, report
from askd_ref.engine.data import Sample, write_samples
from askd_ref.engine.run import load_run_config, run_distill
from askd_ref.toy import build_tokenizer, tiny_llama


@pytest.fixture
def run_file(tmp_path):
    tok = build_tokenizer()
    for name, seed in (("teacher", 1), ("student", 2)):
        model = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=seed)
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    samples = [
        Sample(prompt=f"{a}+{a}=", response=str(2 * a), source="teacher", reference=str(2 * a))
        for a in (1, 2)
    ]
    samples += [
        Sample(prompt=f"{a}+{a}=", response="7", source="teacher", reference=str(2 * a)) for a in (3, 4)
    ]
    write_samples(tmp_path / "train.jsonl", samples)
    cfg = {
        "teacher": "teacher",
        "student": "student",
        "data": {"train": "train.jsonl"},
        "method": "seqkd",
        "sgo": {"max_new_tokens": 4},
        "training": {
            "output_dir": "out",
            "max_steps": 6,
            "per_device_train_batch_size": 2,
            "save_strategy": "steps",
            "save_steps": 1,
            "save_total_limit": 2,
            "learning_rate": 1e-2,
        },
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _checkpoints(out):
    names = [n for n in os.listdir(out) if n.startswith("checkpoint-")]
    return sorted(names, key=lambda n: int(n.split("-")[1]))


def test_save_total_limit_is_exact_and_reruns_are_refused(run_file, capsys):
    out = run_file.parent / "out"
    assert main(["distill", "--config", str(run_file), "--no-progress"]) == 0
    assert _checkpoints(out) == ["checkpoint-5", "checkpoint-6"]  # save_total_limit: 2, every step saved
    capsys.readouterr()
    before = {n: os.path.getmtime(out / n) for n in os.listdir(out)}
    assert main(["distill", "--config", str(run_file), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "already holds checkpoint-5, checkpoint-6, final" in err
    assert f"askd distill --config {run_file} --resume" in err
    assert f"askd distill --config {run_file} --overwrite" in err
    assert {n: os.path.getmtime(out / n) for n in os.listdir(out)} == before  # nothing touched
    assert main(["distill", "--config", str(run_file), "--no-progress", "--overwrite"]) == 0
    assert "--overwrite: deleted checkpoint-5, checkpoint-6, final" in capsys.readouterr().out
    assert _checkpoints(out) == ["checkpoint-5", "checkpoint-6"]


def test_ctrl_c_saves_and_resume_continues_from_it(run_file, capfd):
    from transformers import TrainerCallback

    class CtrlCAt(TrainerCallback):
        def __init__(self, steps):
            self.steps = steps

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in self.steps:
                os.kill(os.getpid(), signal.SIGINT)

    config = load_run_config(run_file)
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN in a background job, the default handler otherwise
    with pytest.raises(RunInterrupted) as info:
        run_distill(config, progress=False, callbacks=[CtrlCAt({3})])
    out = run_file.parent / "out"
    assert _checkpoints(out) == ["checkpoint-2", "checkpoint-3"]
    assert not (out / "final").exists()
    capfd.readouterr()
    assert report(info.value, "distill", debug=False) == 130
    err = capfd.readouterr().err.strip()
    assert err.splitlines()[-1] == (
        f"askd distill: interrupted: stopped after step 3, checkpoint saved to {out}/checkpoint-3; "
        f"continue with: askd distill --config {run_file} --resume"
    )
    assert signal.getsignal(signal.SIGINT) == before  # the handler is restored

    assert main(["distill", "--config", str(run_file), "--no-progress", "--resume"]) == 0
    captured = capfd.readouterr()
    assert f"resuming from {out}/checkpoint-3" in captured.out
    assert "missing keys" not in captured.err  # the tied lm_head is restored with the embedding
    assert _checkpoints(out) == ["checkpoint-5", "checkpoint-6"]
    assert (out / "final").is_dir()


def test_second_ctrl_c_aborts_without_saving(run_file):
    from transformers import TrainerCallback

    class TwoCtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as info:
        run_distill(load_run_config(run_file), progress=False, callbacks=[TwoCtrlC()])
    assert signal.getsignal(signal.SIGINT) == before
    assert not isinstance(info.value, RunInterrupted)
    assert _checkpoints(run_file.parent / "out") == ["checkpoint-1"]  # step 2 was not saved


def test_resume_without_a_checkpoint_is_a_usage_error(run_file, capsys):
    assert main(["distill", "--config", str(run_file), "--resume"]) == 2
    assert "--resume: no complete checkpoint-N folder in" in capsys.readouterr().err


def test_a_launchers_duplicate_sigint_is_the_same_ctrl_c(monkeypatch):
    """Under ``accelerate launch`` a Ctrl-C reaches each worker twice within milliseconds (the
    terminal's SIGINT to the process group, and the launcher's forwarded copy): that pair is one
    stop request; a later second SIGINT still aborts. Without a launcher, a second SIGINT aborts."""
    from askd_ref.engine.run import LAUNCHER_DUPLICATE_S, _InterruptState

    monkeypatch.setenv("WORLD_SIZE", "2")
    state = _InterruptState()
    state.on_sigint()
    state.on_sigint()  # the forwarded copy: ignored
    assert state.requested
    state.first_at -= LAUNCHER_DUPLICATE_S  # a Ctrl-C pressed again later
    with pytest.raises(KeyboardInterrupt):
        state.on_sigint()

    monkeypatch.delenv("WORLD_SIZE")
    state = _InterruptState()
    state.on_sigint()
    with pytest.raises(KeyboardInterrupt):
        state.on_sigint()


def test_only_the_main_process_reports_a_saved_interrupt(monkeypatch, capsys):
    err = RunInterrupted("stopped after step 3, checkpoint saved to out/checkpoint-3")
    monkeypatch.setenv("RANK", "1")
    assert report(err, "distill", debug=False) == 130
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("RANK", "0")
    assert report(err, "distill", debug=False) == 130
    assert "interrupted: stopped after step 3" in capsys.readouterr().err
