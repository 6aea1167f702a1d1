"""ASKDTrainer under ``accelerate launch`` with 2 CPU processes (DDP, gloo) == one process.

The worker below trains the same tiny student on the same 8 prompts for 2 SGD steps, once per
configuration. One process with 4 prompts per step and two processes with 2 prompts each see the
same samples (accelerate deals consecutive batches of the shared permutation to the ranks; SGO
sampling is seeded per prompt, not per rank), so with global sample counts and the world-size
factor that undoes DDP's gradient averaging, losses and parameters must agree to float32
rounding.

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

from askd_ref.tolerances import assert_close, tolerance

WORKER = textwrap.dedent(
    """
    import json, sys
    import torch
    torch.set_num_threads(1)
    import transformers
    transformers.logging.set_verbosity_error()
    from transformers import TrainingArguments
    from askd_ref.toy import ToyTask, build_tokenizer, tiny_llama
    from askd_ref.trainer import ASKDConfig, ASKDTrainer, PromptItem, Response

    out, batch = sys.argv[1], int(sys.argv[2])
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
    for method, regime, path, extra in (("askd", "on_policy", "chunked", {}), ("askd", "batched", "full", {}),
                                        ("distillm2", "on_policy", "chunked", {}),
                                        ("distillm2", "on_policy", "full", token)):
        student = tiny_llama(tok, hidden_size=16, num_layers=1, num_heads=2, seed=12)
        args = TrainingArguments(
            output_dir=f"{out}/run-{method}-{regime}-{path}", per_device_train_batch_size=batch, max_steps=2,
            learning_rate=0.1, optim="sgd", lr_scheduler_type="constant", max_grad_norm=0.0,
            logging_steps=1, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True, seed=0,
            ddp_backend="gloo" if int(__import__("os").environ.get("WORLD_SIZE", "1")) > 1 else None,
        )
        cfg = ASKDConfig(method=method, sgo_regime=regime, loss_path=path, max_new_tokens=6, sgo_per_prompt=2,
                         **extra)
        trainer = ASKDTrainer(model=student, teacher=teacher, args=args, config=cfg, train_dataset=items,
                              processing_class=tok)
        trainer.train()
        if trainer.is_world_process_zero():
            results[f"{method}/{regime}/{path}" + ("/token" if extra else "")] = {
                "world_size": trainer.accelerator.num_processes,
                "losses": [h["loss"] for h in trainer.state.log_history if "loss" in h],
                "params": {n: p.detach().tolist() for n, p in student.named_parameters()},
            }
    if results:
        with open(f"{out}/result.json", "w") as f:
            json.dump(results, f)
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        # Shut the gloo group down explicitly: exiting with it alive can abort a rank at teardown
        # ("terminate called without an active exception") after all the work is done.
        dist.barrier()
        dist.destroy_process_group()
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
    for key in one:
        assert one[key]["world_size"] == 1
        assert two[key]["world_size"] == 2, "the accelerate run did not use 2 processes"
        assert len(one[key]["losses"]) == 2
        assert one[key]["losses"] == pytest.approx(two[key]["losses"], rel=tol.rtol, abs=tol.atol), key
        for name, value in one[key]["params"].items():
            a, b = torch.tensor(value), torch.tensor(two[key]["params"][name])
            assert_close(b, a, tol, what=f"{key}: parameter {name}, 2 processes vs 1")
        assert one[key]["losses"][0] != one[key]["losses"][1]  # training actually moved the student
