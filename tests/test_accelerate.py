"""ASKDTrainer under ``accelerate launch`` with 2 CPU processes (DDP, gloo) == one process.

The worker below trains the same tiny student on the same 8 prompts for 2 SGD steps, once per
configuration. One process with 4 prompts per step and two processes with 2 prompts each see the
same samples (accelerate deals consecutive batches of the shared permutation to the ranks; SGO
sampling is seeded per prompt, not per rank), so with global sample counts and the world-size
factor that undoes DDP's gradient averaging, losses and parameters must agree to float32
rounding. The train loss Trainer reports at the end is the global one too (also when no log
happened before the end), the held-out evaluation is split over the ranks and gathered to the
one-process result, and after ``end_distributed`` no process-group thread is left running (the
threads that, alive at interpreter exit, used to abort a rank with "terminate called without an
active exception").

Launch flags: ``accelerate launch --cpu`` starts a single process unless MPI is configured;
``--multi_gpu --num_processes 2`` starts two torchrun workers, and ``TrainingArguments(use_cpu=True)``
then joins them with the gloo backend (no GPU involved).
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from askd_ref.porting.tolerances import assert_close, tolerance

WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    from accelerate.utils import gather_object
    from transformers import TrainingArguments
    from askd_ref.engine.evaluate import evaluate_model_sharded
    from askd_ref.engine.run import end_distributed
    from askd_ref.quality.math import ExactMatch
    from askd_ref.toy import ToyTask, build_tokenizer, tiny_llama
    from askd_ref.engine.config import ASKDConfig
    from askd_ref.engine.items import PromptItem, Response
    from askd_ref.engine.trainer import ASKDTrainer

    out, batch = sys.argv[1], int(sys.argv[2])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    tok = build_tokenizer()
    teacher = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=11)
    _, problems = ToyTask().split(seed=7, n_eval=8)
    items = [
        PromptItem(index=i, prompt=p.prompt, reference=p.reference,
                   tgos=(Response(p.solution if i % 3 else p.solution[::-1]),))
        for i, p in enumerate(problems)
    ]
    results = {}
    token = dict(reduction="token", beta=1.3, loss_temperature=1.5)  # global token counts over ranks
    # logging_steps > max_steps: no log before the end, so Trainer's train_loss is all remainder,
    # which it does not all-reduce (ASKDTrainer.log does)
    runs = (("askd", "on_policy", "chunked", 1, {}), ("askd", "batched", "full", 1, {}),
            ("distillm2", "on_policy", "chunked", 1, {}), ("distillm2", "on_policy", "full", 1, token),
            ("askd", "on_policy", "full", 10, {}))
    for method, regime, path, log_every, extra in runs:
        student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=12)
        args = TrainingArguments(
            output_dir=f"{out}/run-{method}-{regime}-{path}", per_device_train_batch_size=batch, max_steps=2,
            learning_rate=0.1, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
            logging_steps=log_every, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
            seed=0, ddp_backend="gloo" if world > 1 else None,
        )
        cfg = ASKDConfig(method=method, sgo_regime=regime, loss_path=path, max_new_tokens=6, sgo_per_prompt=2,
                         **extra)
        trainer = ASKDTrainer(model=student, teacher=teacher, args=args, config=cfg, train_dataset=items,
                              processing_class=tok)
        output = trainer.train()
        if trainer.is_world_process_zero():
            results[f"{method}/{regime}/{path}/log{log_every}" + ("/token" if extra else "")] = {
                "world_size": trainer.accelerator.num_processes,
                "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
                "train_loss": output.metrics["train_loss"],
                "params": {n: p.detach().tolist() for n, p in student.named_parameters()},
            }
    # evaluation split over the ranks (sampled, seeded per prompt; batch 1 so no padding differs)
    ev = evaluate_model_sharded(
        teacher, tok, [p.to_prompt() for p in problems], ExactMatch(), rank=trainer.accelerator.process_index,
        world_size=world, gather=gather_object, max_new_tokens=6, temperature=1.0, seed=3, batch_size=1,
    )
    shard = gather_object([len(range(trainer.accelerator.process_index, len(problems), world))])
    end_distributed(trainer)
    # the cause of the old teardown abort: process-group threads still running at interpreter exit
    if os.path.isdir("/proc/self/task"):
        names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
        alive = [n for n in names if "gloo" in n]
        assert not alive, f"rank {os.environ.get('RANK')}: {alive} still running after end_distributed"
    if results:
        results["eval"] = {**ev.to_dict(with_items=True), "shards": shard}
        with open(f"{out}/result.json", "w") as f:
            json.dump(results, f)
    """
)


def _free_port():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd, cwd, timeout=420):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


@pytest.mark.skipif(
    shutil.which("accelerate") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
    reason="accelerate CLI not installed",
)
def test_two_process_ddp_matches_one_process(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    single.mkdir()
    ddp.mkdir()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _run([sys.executable, str(worker), str(single), "4"], cwd=repo)
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        accelerate = shutil.which("accelerate") or "accelerate"
    _run(
        [
            accelerate,
            "launch",
            "--multi_gpu",
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
            str(ddp),
            "2",
        ],
        cwd=repo,
    )
    one = json.loads((single / "result.json").read_text())
    two = json.loads((ddp / "result.json").read_text())
    tol = tolerance(torch.float32, "grad")
    assert one.keys() == two.keys()
    ev1, ev2 = one.pop("eval"), two.pop("eval")
    for key in one:
        assert one[key]["world_size"] == 1
        assert two[key]["world_size"] == 2, "the accelerate run did not use 2 processes"
        logged = one[key]["losses"]
        assert one[key]["losses"] == pytest.approx(two[key]["losses"], rel=tol.rtol, abs=tol.atol), key
        # metrics["train_loss"] is the global mean over steps, not rank 0's own
        train_loss = one[key]["train_loss"]
        assert train_loss == pytest.approx(two[key]["train_loss"], rel=tol.rtol, abs=tol.atol), key
        if "/log1/" in key + "/":
            assert len(logged) == 2
            assert one[key]["train_loss"] == pytest.approx(sum(logged) / 2, rel=1e-6)
            assert logged[0] != logged[1]  # training actually moved the student
        else:
            assert logged == []  # no log before the end: the whole train_loss is the un-gathered remainder
        for name, value in one[key]["params"].items():
            a, b = torch.tensor(value), torch.tensor(two[key]["params"][name])
            assert_close(b, a, tol, what=f"{key}: parameter {name}, 2 processes vs 1")
    # sharded evaluation: each rank generated only its share, the gathered result is the one-process one
    assert ev1["shards"] == [8]
    assert ev2["shards"] == [4, 4]
    assert ev2["n"] == 8
    assert ev2["scores"] == ev1["scores"]
    assert ev2["responses"] == ev1["responses"]
    assert ev2["accuracy"] == ev1["accuracy"]


@pytest.mark.skipif(
    shutil.which("accelerate") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
    reason="accelerate CLI not installed",
)
def test_askd_distill_under_two_processes_reports_once(tmp_path):
    """``askd distill`` under ``accelerate launch``: one summary line, global numbers, exit 0."""
    _toy_run(tmp_path, {"max_steps": 2}, evaluate=True)
    cmd, env = _distill_under_two_processes(tmp_path / "run.yaml")
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = [line for line in proc.stdout.splitlines() if "steps, train loss" in line]
    assert len(summary) == 1, proc.stdout  # only the main process prints
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["eval"]["n"] == 4  # gathered from both ranks
    logged = [h["loss"] for h in metrics["log_history"] if "loss" in h]
    ends = [h["train_loss"] for h in metrics["log_history"] if "train_loss" in h]
    assert ends == [metrics["train_loss"]]
    if logged:  # every step logged: the final train loss is their mean
        assert metrics["train_loss"] == pytest.approx(sum(logged) / len(logged), rel=1e-6)
    assert f"train loss {metrics['train_loss']:.4f}" in summary[0]


def _distill_under_two_processes(run_file):
    """The ``accelerate launch`` command (2 CPU workers) of ``askd distill`` and its environment."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    accelerate = os.path.join(os.path.dirname(sys.executable), "accelerate")
    if not os.path.exists(accelerate):
        accelerate = shutil.which("accelerate") or "accelerate"
    launch = [accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
    cmd = [*launch, "-m", "askd_ref.cli", "distill", "--config", str(run_file), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": repo}
    return cmd, env


def _toy_run(tmp_path, training, *, evaluate=False):
    """A tiny teacher/student pair, 8 TGOs (and 4 eval prompts) and a run file in ``tmp_path``."""
    import yaml

    from askd_ref.engine.data import write_samples
    from askd_ref.toy import ToyTask, build_tokenizer, tiny_llama

    tok = build_tokenizer()
    for name, seed in (("teacher", 11), ("student", 12)):
        model = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=seed)
        model.save_pretrained(tmp_path / name)
        tok.save_pretrained(tmp_path / name)
    _, problems = ToyTask().split(seed=7, n_eval=12)
    write_samples(
        tmp_path / "tgo.jsonl",
        [p.to_sample(None if i % 3 else p.solution[::-1]) for i, p in enumerate(problems[:8])],
    )
    run = {
        "teacher": "teacher",
        "student": "student",
        "data": {"train": "tgo.jsonl"},
        "method": "askd",
        "sgo": {"max_new_tokens": 6},
        "training": {"output_dir": "out", "per_device_train_batch_size": 2, "seed": 0, **training},
    }
    if evaluate:
        with open(tmp_path / "eval.jsonl", "w", encoding="utf-8") as f:
            for p in problems[8:]:
                f.write(json.dumps({"prompt": p.prompt, "reference": p.reference}) + "\n")
        run["data"]["eval"] = "eval.jsonl"
        run["eval"] = {"max_new_tokens": 6, "batch_size": 1}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    return tmp_path / "run.yaml"


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("accelerate") is None
    and not os.path.exists(os.path.join(os.path.dirname(sys.executable), "accelerate")),
    reason="accelerate CLI not installed",
)
def test_ctrl_c_in_the_terminal_of_a_two_process_run_saves_a_checkpoint(tmp_path):
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group: the launcher and
    both workers. The launcher forwards it, so each worker gets it twice; the run still stops
    after one step, saves a checkpoint, and exits 130 with one resume line."""
    import signal

    run_file = _toy_run(
        tmp_path, {"max_steps": 100000, "logging_steps": 1, "save_strategy": "steps", "save_steps": 10**6}
    )
    cmd, env = _distill_under_two_processes(run_file)
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # its own process group, as in a terminal
    )
    lines = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until training runs (a logged step), then press Ctrl-C
            lines.append(line)
            if line.startswith("{'loss'") and sum(ln.startswith("{'loss'") for ln in lines) >= 3:
                os.killpg(proc.pid, signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # pragma: no cover - only on a hang
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = "".join(lines) + rest
    assert proc.returncode == 130, output[-3000:]
    checkpoints = [p for p in os.listdir(tmp_path / "out") if p.startswith("checkpoint-")]
    assert len(checkpoints) == 1, (checkpoints, output[-3000:])
    resume = [ln for ln in output.splitlines() if "continue with: askd distill" in ln]
    assert len(resume) == 1, output[-3000:]  # only the main process reports
    assert checkpoints[0] in resume[0]
